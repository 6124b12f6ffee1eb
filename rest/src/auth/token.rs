//! Access tokens (JWT, HS256 with the configured key, the algorithm pinned, ≤ 15 minutes) and
//! refresh tokens (opaque random strings, stored only as their SHA-256).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::auth::Role;

/// The longest an access token may live (configuration refuses more).
pub const ACCESS_TTL_MAX: Duration = Duration::from_secs(15 * 60);
/// The shortest signing key accepted (RFC 7518 §3.2: at least the hash's size).
pub const KEY_BYTES_MIN: usize = 32;
/// Who issues and who reads our tokens.
const ISSUER: &str = "wallet-gateway";

/// What an access token says.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// The account id.
    pub sub: String,
    pub role: Role,
    /// The login session; revoked sessions' tokens are refused.
    pub sid: i64,
    /// Whether this login passed a second factor.
    pub mfa: bool,
    pub iat: u64,
    pub exp: u64,
    pub iss: String,
}

/// Signs and checks access tokens with one key.
#[derive(Clone)]
pub struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    pub access_ttl: Duration,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("access_ttl", &self.access_ttl)
            .finish_non_exhaustive()
    }
}

impl Keys {
    /// `secret` must hold at least [`KEY_BYTES_MIN`] bytes and `access_ttl` at most
    /// [`ACCESS_TTL_MAX`] (the configuration checks both before start).
    pub fn new(secret: &[u8], access_ttl: Duration) -> Keys {
        assert!(secret.len() >= KEY_BYTES_MIN && access_ttl <= ACCESS_TTL_MAX);
        // Only HS256: a token naming another algorithm (`none`, RS256 with our key as a
        // "public key", ...) is refused before its signature is looked at.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "iat", "sub", "iss"]);
        validation.set_issuer(&[ISSUER]);
        validation.leeway = 5;
        Keys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            access_ttl,
        }
    }

    /// A signed access token for `account`.
    pub fn issue(&self, account: i64, role: Role, sid: i64, mfa: bool) -> String {
        let iat = now_s();
        let claims = Claims {
            sub: account.to_string(),
            role,
            sid,
            mfa,
            iat,
            exp: iat + self.access_ttl.as_secs(),
            iss: ISSUER.into(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing cannot fail")
    }

    /// The claims of a valid, unexpired token of ours.
    pub fn check(&self, token: &str) -> Result<Claims, TokenError> {
        match jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation) {
            Ok(data) => Ok(data.claims),
            Err(e) => match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => Err(TokenError::Expired),
                _ => Err(TokenError::Invalid),
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    Expired,
    Invalid,
}

pub fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A new refresh token (256 random bits, base64url) and the hash stored for it.
pub fn new_refresh() -> (String, Vec<u8>) {
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
    let hash = refresh_hash(&token);
    (token, hash)
}

/// What the database keeps of a refresh token.
pub fn refresh_hash(token: &str) -> Vec<u8> {
    sha2::Sha256::digest(token.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn keys() -> Keys {
        Keys::new(KEY, Duration::from_secs(600))
    }

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    #[test]
    fn its_own_tokens_pass() {
        let token = keys().issue(7, Role::Player, 3, false);
        let claims = keys().check(&token).unwrap();
        assert_eq!(
            (claims.sub.as_str(), claims.role, claims.sid),
            ("7", Role::Player, 3)
        );
        assert_eq!(claims.exp - claims.iat, 600);
    }

    #[test]
    fn alg_none_another_algorithm_wrong_key_and_tampering_fail() {
        let token = keys().issue(7, Role::Player, 3, false);
        let parts: Vec<&str> = token.split('.').collect();
        let claims = parts[1];
        // alg=none, no signature.
        let none = format!("{}.{}.", b64(br#"{"alg":"none","typ":"JWT"}"#), claims);
        assert_eq!(keys().check(&none), Err(TokenError::Invalid));
        // HS512 with the right key.
        let mut c: Claims = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(claims)
                .unwrap(),
        )
        .unwrap();
        let hs512 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &c,
            &EncodingKey::from_secret(KEY),
        )
        .unwrap();
        assert_eq!(keys().check(&hs512), Err(TokenError::Invalid));
        // Another key.
        let other = Keys::new(b"another key of thirty-two bytes!", Duration::from_secs(60));
        assert_eq!(
            keys().check(&other.issue(7, Role::Player, 3, false)),
            Err(TokenError::Invalid)
        );
        // Claims changed under the old signature.
        c.role = Role::Admin;
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            b64(&serde_json::to_vec(&c).unwrap()),
            parts[2]
        );
        assert_eq!(keys().check(&forged), Err(TokenError::Invalid));
        // Expired.
        c.role = Role::Player;
        c.iat = now_s() - 3600;
        c.exp = now_s() - 60;
        let expired = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &c,
            &EncodingKey::from_secret(KEY),
        )
        .unwrap();
        assert_eq!(keys().check(&expired), Err(TokenError::Expired));
    }

    #[test]
    fn refresh_tokens_are_random_and_stored_hashed() {
        let (a, ha) = new_refresh();
        let (b, _) = new_refresh();
        assert_ne!(a, b);
        assert_eq!(ha, refresh_hash(&a));
        assert_eq!(ha.len(), 32);
    }
}
