//! Exact parsing and formatting of wire amounts.

use super::*;

fn check(text: &str, exponent: u8, expect: Result<i64, AmountError>) {
    assert_eq!(
        parse_minor(text, exponent),
        expect,
        "parse {text:?} with exponent {exponent}"
    );
}

#[test]
fn parses_exact_decimals() {
    check("0", 2, Ok(0));
    check("12", 2, Ok(1200));
    check("12.3", 2, Ok(1230));
    check("12.34", 2, Ok(1234));
    check("12.340", 2, Ok(1234));
    check("0.01", 2, Ok(1));
    check("1000", 0, Ok(1000));
    check("1.234", 3, Ok(1234));
    check("0.00000001", 8, Ok(1));
    check("92233720368547758.07", 2, Ok(i64::MAX));
}

#[test]
fn refuses_what_is_not_exact() {
    check("", 2, Err(AmountError::Empty));
    check("-1", 2, Err(AmountError::Negative));
    check("-0.01", 2, Err(AmountError::Negative));
    check("+1", 2, Err(AmountError::NotDecimal));
    check("1e3", 2, Err(AmountError::NotDecimal));
    check("1E3", 2, Err(AmountError::NotDecimal));
    check("NaN", 2, Err(AmountError::NotDecimal));
    check("Infinity", 2, Err(AmountError::NotDecimal));
    check(" 1", 2, Err(AmountError::NotDecimal));
    check("1.", 2, Err(AmountError::NotDecimal));
    check(".5", 2, Err(AmountError::NotDecimal));
    check("1.2.3", 2, Err(AmountError::NotDecimal));
    check("0x10", 2, Err(AmountError::NotDecimal));
    check("1,5", 2, Err(AmountError::NotDecimal));
    check("1.001", 2, Err(AmountError::TooPrecise(2)));
    check("1.5", 0, Err(AmountError::TooPrecise(0)));
    check("92233720368547758.08", 2, Err(AmountError::Overflow));
    check("99999999999999999999999", 2, Err(AmountError::Overflow));
}

#[test]
fn formats_with_the_currency_exponent() {
    assert_eq!(format_minor(1234, 2), "12.34");
    assert_eq!(format_minor(5, 2), "0.05");
    assert_eq!(format_minor(0, 2), "0.00");
    assert_eq!(format_minor(-5, 2), "-0.05");
    assert_eq!(format_minor(1000, 0), "1000");
    assert_eq!(format_minor(1, 8), "0.00000001");
    assert_eq!(format_minor(i64::MIN, 2), "-92233720368547758.08");
}

#[test]
fn format_then_parse_round_trips() {
    for exponent in [0u8, 2, 3, 8] {
        for minor in [0i64, 1, 9, 10, 99, 100, 12345, 1_000_000_007, i64::MAX] {
            assert_eq!(
                parse_minor(&format_minor(minor, exponent), exponent),
                Ok(minor)
            );
        }
    }
}

#[test]
fn currencies_know_their_exponents() {
    assert_eq!(Currency::from_code("EUR").map(|c| c.exponent), Some(2));
    assert_eq!(Currency::from_code("JPY").map(|c| c.exponent), Some(0));
    assert_eq!(Currency::from_code("KWD").map(|c| c.exponent), Some(3));
    assert_eq!(Currency::from_code("BTC").map(|c| c.exponent), Some(8));
    assert_eq!(Currency::from_code("eur"), None);
    assert_eq!(Currency::from_code("XXX"), None);
    assert_eq!(Currency::from_code("EUR").unwrap().code(), "EUR");
    assert_eq!(Currency::new("TOOLONG", 2), None);
}
