//! Exact money: integer minor units, currencies with their exponents, and the one decimal
//! parser/formatter every dialect uses. No floats anywhere on this path.

use std::fmt;

/// A currency code with its exponent (number of minor-unit digits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency {
    code: [u8; 5],
    len: u8,
    pub exponent: u8,
}

/// Currencies we settle, with their ISO 4217 (or customary, for crypto) exponents.
const KNOWN: &[(&str, u8)] = &[
    ("EUR", 2),
    ("USD", 2),
    ("GBP", 2),
    ("CAD", 2),
    ("AUD", 2),
    ("NZD", 2),
    ("CHF", 2),
    ("SEK", 2),
    ("NOK", 2),
    ("DKK", 2),
    ("PLN", 2),
    ("CZK", 2),
    ("HUF", 2),
    ("RON", 2),
    ("BGN", 2),
    ("TRY", 2),
    ("BRL", 2),
    ("MXN", 2),
    ("ARS", 2),
    ("CLP", 0),
    ("COP", 2),
    ("PEN", 2),
    ("INR", 2),
    ("CNY", 2),
    ("HKD", 2),
    ("SGD", 2),
    ("THB", 2),
    ("PHP", 2),
    ("MYR", 2),
    ("IDR", 2),
    ("ZAR", 2),
    ("NGN", 2),
    ("KES", 2),
    ("UAH", 2),
    ("KZT", 2),
    ("JPY", 0),
    ("KRW", 0),
    ("VND", 0),
    ("ISK", 0),
    ("UGX", 0),
    ("KWD", 3),
    ("BHD", 3),
    ("OMR", 3),
    ("JOD", 3),
    ("TND", 3),
    ("BTC", 8),
    ("LTC", 8),
    ("BCH", 8),
    ("DOGE", 8),
    ("ETH", 8),
    ("USDT", 6),
    ("USDC", 6),
];

/// The exponents we can represent: 10^18 still fits an i64 scale factor.
pub const EXPONENT_MAX: u8 = 18;

impl Currency {
    /// A known currency by code (upper-case), or `None`.
    pub fn from_code(code: &str) -> Option<Currency> {
        let &(known, exponent) = KNOWN.iter().find(|(c, _)| *c == code)?;
        Currency::new(known, exponent)
    }

    /// Any 3-5 character upper-case alphanumeric code with an explicit exponent.
    pub fn new(code: &str, exponent: u8) -> Option<Currency> {
        let valid = (3..=5).contains(&code.len())
            && code
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
            && exponent <= EXPONENT_MAX;
        if !valid {
            return None;
        }
        let mut bytes = [0u8; 5];
        bytes[..code.len()].copy_from_slice(code.as_bytes());
        Some(Currency {
            code: bytes,
            len: code.len() as u8,
            exponent,
        })
    }

    pub fn code(&self) -> &str {
        // Only ASCII bytes are ever stored (checked in `new`).
        std::str::from_utf8(&self.code[..usize::from(self.len)]).unwrap_or("")
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("amount is empty")]
    Empty,
    #[error("amount is not a plain decimal number")]
    NotDecimal,
    #[error("amount is negative")]
    Negative,
    #[error("amount has more than {0} fractional digits")]
    TooPrecise(u8),
    #[error("amount is too large")]
    Overflow,
}

/// Parses a non-negative plain decimal (`"12"`, `"12.3"`, `"12.30"`) into minor units of a
/// currency with `exponent` digits. Refuses signs, exponents, spaces, `NaN`/`Infinity`, extra
/// fractional digits (even zeros beyond the exponent are refused only if non-zero) and overflow.
pub fn parse_minor(text: &str, exponent: u8) -> Result<i64, AmountError> {
    if text.is_empty() {
        return Err(AmountError::Empty);
    }
    if text.starts_with('-') {
        return Err(AmountError::Negative);
    }
    let (whole, fraction) = match text.split_once('.') {
        Some((w, f)) => (w, f),
        None => (text, ""),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(fraction) || text.ends_with('.') {
        return Err(AmountError::NotDecimal);
    }
    // Trailing zeros carry no value: "1.500" is 150 cents.
    let fraction = fraction.trim_end_matches('0');
    if fraction.len() > usize::from(exponent) {
        return Err(AmountError::TooPrecise(exponent));
    }
    let scale = 10i64
        .checked_pow(u32::from(exponent))
        .ok_or(AmountError::Overflow)?;
    let whole: i64 = whole.parse().map_err(|_| AmountError::Overflow)?;
    let mut fraction_minor: i64 = 0;
    for (i, b) in fraction.bytes().enumerate() {
        let place = 10i64.pow(u32::from(exponent) - 1 - i as u32);
        fraction_minor += i64::from(b - b'0') * place;
    }
    whole
        .checked_mul(scale)
        .and_then(|m| m.checked_add(fraction_minor))
        .ok_or(AmountError::Overflow)
}

/// Formats minor units as a plain decimal with exactly `exponent` fractional digits.
pub fn format_minor(minor: i64, exponent: u8) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    if exponent == 0 {
        return format!("{sign}{abs}");
    }
    let scale = 10u64.pow(u32::from(exponent));
    format!(
        "{sign}{}.{:0width$}",
        abs / scale,
        abs % scale,
        width = usize::from(exponent)
    )
}

#[cfg(test)]
mod tests;
