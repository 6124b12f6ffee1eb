//! The native signature header on arbitrary input: never a panic, never accepted without the
//! right key (the fuzzer does not know it), and a header we signed always verifies.
#![no_main]

use dialects::signature::{sign_native, verify_native};
use libfuzzer_sys::fuzz_target;

const SECRET: &[u8] = b"fuzz-secret-0123456789";
const NOW: i64 = 1_700_000_000;

fuzz_target!(|data: &[u8]| {
    let split = data.first().copied().unwrap_or(0) as usize;
    let rest = data.get(1..).unwrap_or_default();
    let at = split.min(rest.len());
    let (header, body) = rest.split_at(at);
    let secrets = vec![SECRET.to_vec()];
    assert!(
        verify_native(Some(header), body, &secrets, NOW, 300).is_err(),
        "a header the fuzzer made up verified"
    );
    let signed = sign_native(SECRET, NOW, body);
    assert!(verify_native(Some(signed.as_bytes()), body, &secrets, NOW, 300).is_ok());
});
