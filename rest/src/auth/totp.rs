//! RFC 6238 codes (SHA-1, 6 digits, 30 s, one step of clock skew either way) with the step
//! that matched, so a code is accepted once: the caller stores the step and refuses any step
//! not after it.

use totp_rs::{Algorithm, Secret, TOTP};

const DIGITS: usize = 6;
const STEP_S: u64 = 30;
/// Bytes of a new secret (160 bits, RFC 4226's recommendation).
const SECRET_BYTES: usize = 20;
pub const ISSUER: &str = "Wallet Gateway";

fn totp(secret: Vec<u8>, account: &str) -> TOTP {
    // Unchecked: seeded secrets (the demo's) may be shorter than 128 bits.
    TOTP::new_unchecked(
        Algorithm::SHA1,
        DIGITS,
        1,
        STEP_S,
        secret,
        Some(ISSUER.into()),
        account.into(),
    )
}

/// A new base32 secret.
pub fn new_secret() -> String {
    use rand::RngCore;
    let mut raw = vec![0u8; SECRET_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    Secret::Raw(raw).to_encoded().to_string()
}

/// The `otpauth://` URI an authenticator app scans.
pub fn uri(secret_b32: &str, account: &str) -> Option<String> {
    let bytes = Secret::Encoded(secret_b32.into()).to_bytes().ok()?;
    Some(totp(bytes, account).get_url())
}

/// The time step `code` belongs to at second `now` (within one step either way), if any.
pub fn matching_step(secret_b32: &str, code: &str, now: u64) -> Option<i64> {
    if code.len() != DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let bytes = Secret::Encoded(secret_b32.into()).to_bytes().ok()?;
    let totp = totp(bytes, "");
    let current = now / STEP_S;
    [current.saturating_sub(1), current, current + 1]
        .into_iter()
        .find(|step| {
            let expected = totp.generate(step * STEP_S);
            subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), code.as_bytes()).into()
        })
        .and_then(|step| i64::try_from(step).ok())
}

/// The code of second `now` (tests and the demo's documentation).
pub fn code_at(secret_b32: &str, now: u64) -> Option<String> {
    let bytes = Secret::Encoded(secret_b32.into()).to_bytes().ok()?;
    Some(totp(bytes, "").generate(now))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_6238_vector_and_steps() {
        // RFC 6238 appendix B, SHA-1 key "12345678901234567890", T = 59 s: 94287082 (8
        // digits); the 6-digit code is its last six.
        let secret = Secret::Raw(b"12345678901234567890".to_vec())
            .to_encoded()
            .to_string();
        assert_eq!(code_at(&secret, 59).unwrap(), "287082");
        assert_eq!(matching_step(&secret, "287082", 59), Some(1));
        // One step of skew either way, not two.
        assert_eq!(matching_step(&secret, "287082", 89), Some(1));
        assert_eq!(matching_step(&secret, "287082", 120), None);
        assert_eq!(matching_step(&secret, "28708", 59), None);
        assert_eq!(matching_step(&secret, "28708a", 59), None);
    }

    #[test]
    fn demo_secret_and_new_secrets_work() {
        let code = code_at("JBSWY3DPEHPK3PXP", 1_000_000).unwrap();
        assert_eq!(
            matching_step("JBSWY3DPEHPK3PXP", &code, 1_000_000),
            Some(33_333)
        );
        let fresh = new_secret();
        assert_eq!(fresh.len(), 32);
        assert!(uri(&fresh, "alice").unwrap().starts_with("otpauth://totp/"));
    }
}
