//! Decimal amounts: parsing never panics, and what parses formats back to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use settlement::money::{format_minor, parse_minor};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for exponent in [0u8, 2, 3, 8] {
        if let Ok(minor) = parse_minor(text, exponent) {
            let formatted = format_minor(minor, exponent);
            assert_eq!(
                parse_minor(&formatted, exponent),
                Ok(minor),
                "{text:?} -> {formatted}"
            );
        }
    }
});
