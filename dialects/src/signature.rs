//! Callback signatures, checked on the raw bytes as received, before anything is parsed.
//!
//! Native dialect: `X-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
//! The timestamp must lie within the provider's window of now (both ways), so a captured
//! request cannot be replayed later; every configured secret (current, then previous) is tried,
//! and every comparison is constant-time.

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("signature header missing")]
    Missing,
    #[error("signature header malformed")]
    Malformed,
    #[error("signature timestamp outside the allowed window")]
    Stale,
    #[error("signature does not match")]
    Mismatch,
    /// A signature that covers the parameters but not the method, seen before on a call to
    /// another method (a captured call posted elsewhere).
    #[error("signature already used for another method")]
    OtherMethod,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Missing => "missing",
            Refusal::Malformed => "malformed",
            Refusal::Stale => "stale",
            Refusal::Mismatch => "mismatch",
            Refusal::OtherMethod => "other_method",
        }
    }
}

/// A provider's shared secret with its HMAC-SHA256 key schedule made once: the padded key's
/// two blocks are hashed when the secret is loaded, so a callback's check starts from a copy
/// of that state instead of hashing them again.
#[derive(Clone)]
pub struct Secret {
    bytes: Vec<u8>,
    /// `None` for an empty secret, which is public knowledge and never accepted.
    mac: Option<HmacSha256>,
}

impl Secret {
    pub fn new(bytes: Vec<u8>) -> Secret {
        Secret {
            mac: keyed(&bytes),
            bytes,
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// A fresh HMAC-SHA256 keyed with this secret (none for an empty one).
    pub fn mac(&self) -> Option<HmacSha256> {
        self.mac.clone()
    }
}

impl From<Vec<u8>> for Secret {
    fn from(bytes: Vec<u8>) -> Secret {
        Secret::new(bytes)
    }
}

/// Never the secret itself, in logs or panics.
impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({} bytes)", self.bytes.len())
    }
}

/// What a native signature can be checked with: a [`Secret`] (keyed once), or raw secret
/// bytes where the check is rare (payment providers' webhooks).
pub trait MacKey {
    /// HMAC-SHA256 keyed with the secret; `None` for an empty one.
    fn mac(&self) -> Option<HmacSha256>;
}

impl MacKey for Secret {
    fn mac(&self) -> Option<HmacSha256> {
        Secret::mac(self)
    }
}

impl MacKey for Vec<u8> {
    fn mac(&self) -> Option<HmacSha256> {
        keyed(self)
    }
}

fn keyed(secret: &[u8]) -> Option<HmacSha256> {
    (!secret.is_empty())
        .then(|| HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length"))
}

/// Checks a native `X-Signature` header against `body`.
pub fn verify_native(
    header: Option<&[u8]>,
    body: &[u8],
    secrets: &[impl MacKey],
    now_s: i64,
    window_s: u64,
) -> Result<(), Refusal> {
    let header = header.ok_or(Refusal::Missing)?;
    let header = std::str::from_utf8(header).map_err(|_| Refusal::Malformed)?;
    // Two passes over the header rather than a list of its signatures, so checking one
    // allocates nothing: the first checks its shape and finds the timestamp.
    let mut timestamp = None;
    let mut signed = false;
    for part in header.split(',') {
        let (key, value) = part.trim().split_once('=').ok_or(Refusal::Malformed)?;
        match key {
            "t" if timestamp.is_none() => timestamp = Some(value),
            "t" => return Err(Refusal::Malformed),
            "v1" if value.len() % 2 == 0 && value.bytes().all(|b| b.is_ascii_hexdigit()) => {
                signed = true;
            }
            "v1" => return Err(Refusal::Malformed),
            // Unknown schemes are skipped, so providers can add stronger ones later.
            _ => {}
        }
    }
    let timestamp_text = timestamp.ok_or(Refusal::Malformed)?;
    if timestamp_text.is_empty() || !timestamp_text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Refusal::Malformed);
    }
    let t: i64 = timestamp_text.parse().map_err(|_| Refusal::Malformed)?;
    if !signed {
        return Err(Refusal::Malformed);
    }
    if now_s.abs_diff(t) > window_s {
        return Err(Refusal::Stale);
    }
    // The second pass compares each `v1` of a MAC's length (any other length cannot match).
    let signatures = header.split(',').filter_map(|part| {
        let value = part.trim().strip_prefix("v1=")?;
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(value, &mut bytes).ok()?;
        Some(bytes)
    });
    // An empty key is public knowledge: configuration refuses it, and so does this check.
    for key in secrets.iter().filter_map(MacKey::mac) {
        let mac = native_mac(key, timestamp_text, body);
        for signature in signatures.clone() {
            if mac.clone().verify_slice(&signature).is_ok() {
                return Ok(());
            }
        }
    }
    Err(Refusal::Mismatch)
}

fn native_mac(mut mac: HmacSha256, timestamp: &str, body: &[u8]) -> HmacSha256 {
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The native `X-Signature` value for `body` at time `t` (what providers, tests and the
/// simulator send).
pub fn sign_native(secret: &[u8], t: i64, body: &[u8]) -> String {
    let key = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    let mac = native_mac(key, &t.to_string(), body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn check(header: Option<&str>, body: &[u8], expect: Result<(), Refusal>) {
        let secrets = [b"current".to_vec(), b"previous".to_vec()];
        let got = verify_native(header.map(str::as_bytes), body, &secrets, NOW, 300);
        assert_eq!(got, expect, "header {header:?}");
    }

    /// A secret keyed once checks exactly as its bytes do; an empty one never matches, and
    /// neither shows its bytes in a log.
    #[test]
    fn a_secret_keyed_once_checks_as_its_bytes_do() {
        let body = br#"{"a":1}"#;
        let header = sign_native(b"current-secret", NOW, body);
        let keyed = [
            Secret::new(b"other".to_vec()),
            b"current-secret".to_vec().into(),
        ];
        let check =
            |secrets: &[Secret]| verify_native(Some(header.as_bytes()), body, secrets, NOW, 300);
        assert_eq!(check(&keyed), Ok(()));
        assert_eq!(check(&keyed[..1]), Err(Refusal::Mismatch));
        assert_eq!(check(&[Secret::new(Vec::new())]), Err(Refusal::Mismatch));
        assert_eq!(format!("{:?}", keyed[1]), "Secret(14 bytes)");
    }

    #[test]
    fn accepts_current_and_previous_secrets() {
        let body = br#"{"a":1}"#;
        check(Some(&sign_native(b"current", NOW, body)), body, Ok(()));
        check(
            Some(&sign_native(b"previous", NOW - 299, body)),
            body,
            Ok(()),
        );
        check(
            Some(&sign_native(b"current", NOW + 300, body)),
            body,
            Ok(()),
        );
    }

    #[test]
    fn refuses_everything_else() {
        let body = br#"{"a":1}"#;
        let good = sign_native(b"current", NOW, body);
        check(None, body, Err(Refusal::Missing));
        check(Some(""), body, Err(Refusal::Malformed));
        check(Some("garbage"), body, Err(Refusal::Malformed));
        check(Some("t=abc,v1=00"), body, Err(Refusal::Malformed));
        check(Some("t=-5,v1=00"), body, Err(Refusal::Malformed));
        check(Some(&format!("t={NOW}")), body, Err(Refusal::Malformed));
        check(
            Some(&format!("t={NOW},v1=zz")),
            body,
            Err(Refusal::Malformed),
        );
        check(
            Some(&format!("t={NOW},t={NOW},v1=00")),
            body,
            Err(Refusal::Malformed),
        );
        check(Some(&good), br#"{"a":2}"#, Err(Refusal::Mismatch));
        check(
            Some(&sign_native(b"wrong", NOW, body)),
            body,
            Err(Refusal::Mismatch),
        );
        check(
            Some(&sign_native(b"current", NOW - 301, body)),
            body,
            Err(Refusal::Stale),
        );
        check(
            Some(&sign_native(b"current", NOW + 301, body)),
            body,
            Err(Refusal::Stale),
        );
        // The timestamp is part of what is signed: moving it breaks the signature.
        let moved = good.replace(&format!("t={NOW}"), &format!("t={}", NOW + 1));
        check(Some(&moved), body, Err(Refusal::Mismatch));
    }

    #[test]
    fn an_empty_secret_never_verifies() {
        let body = br#"{"a":1}"#;
        let forged = sign_native(b"", NOW, body);
        let got = verify_native(Some(forged.as_bytes()), body, &[Vec::new()], NOW, 300);
        assert_eq!(got, Err(Refusal::Mismatch));
    }

    #[test]
    fn extra_schemes_and_several_signatures_are_tolerated() {
        let body = b"x";
        let good = sign_native(b"current", NOW, body);
        let v1 = good.split(",v1=").nth(1).unwrap();
        check(
            Some(&format!("t={NOW},v0=abcd,v1=00ff,v1={v1}")),
            body,
            Ok(()),
        );
    }
}
