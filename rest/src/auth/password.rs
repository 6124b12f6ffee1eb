//! Password hashing with Argon2id at OWASP's parameters, off the async workers and bounded in
//! concurrency (each hash holds 19 MiB and tens of milliseconds of a core), and the policy a
//! new password must meet.

use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

use crate::envelope::{ApiError, ApiResult};

/// OWASP Password Storage Cheat Sheet: Argon2id, m = 19 MiB, t = 2, p = 1.
pub const MEMORY_KIB: u32 = 19 * 1024;
pub const ITERATIONS: u32 = 2;
pub const PARALLELISM: u32 = 1;

/// How long a request waits for a hashing slot before it is told to come back.
const SLOT_WAIT: Duration = Duration::from_secs(5);

/// Shortest and longest password accepted (ASVS 2.1.1, 2.1.2).
pub const LENGTH_MIN: usize = 12;
pub const LENGTH_MAX: usize = 128;

fn argon2() -> Argon2<'static> {
    let params =
        Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None).expect("OWASP parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes and verifies passwords, at most `slots` at a time.
#[derive(Clone)]
pub struct Hasher {
    slots: Arc<Semaphore>,
    /// Verified against when the account does not exist, so an unknown user costs the same
    /// time as a wrong password.
    decoy: Arc<String>,
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hasher").finish_non_exhaustive()
    }
}

impl Hasher {
    /// `slots` hashes may run at once (one per core is the useful most).
    pub fn new(slots: usize) -> Hasher {
        let decoy = hash_now("a password nobody has, for timing only");
        Hasher {
            slots: Arc::new(Semaphore::new(slots.max(1))),
            decoy: Arc::new(decoy),
        }
    }

    /// The PHC string of `password` with a fresh salt.
    pub async fn hash(&self, password: String) -> ApiResult<String> {
        self.blocking(move || hash_now(&password)).await
    }

    /// Whether `password` matches `phc`; with `phc` absent, spends the same effort on the
    /// decoy and answers `false`.
    pub async fn verify(&self, password: String, phc: Option<String>) -> ApiResult<bool> {
        let decoy = self.decoy.clone();
        self.blocking(move || {
            let known = phc.is_some();
            let phc = phc.unwrap_or_else(|| decoy.to_string());
            let matches = PasswordHash::new(&phc)
                .map(|parsed| {
                    argon2()
                        .verify_password(password.as_bytes(), &parsed)
                        .is_ok()
                })
                .unwrap_or(false);
            known && matches
        })
        .await
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> ApiResult<T> {
        let permit = tokio::time::timeout(SLOT_WAIT, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| busy())?
            .map_err(|_| busy())?;
        let result = tokio::task::spawn_blocking(move || {
            let result = work();
            drop(permit);
            result
        })
        .await;
        result.map_err(|e| ApiError::internal("password hashing task", &e))
    }
}

fn busy() -> ApiError {
    ApiError {
        retry_after_s: Some(1),
        ..ApiError::new(
            http::StatusCode::SERVICE_UNAVAILABLE,
            "BUSY",
            "too many logins at once; try again",
        )
    }
}

/// Argon2id of `password` with a fresh random salt, on this thread.
pub fn hash_now(password: &str) -> String {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .expect("hashing with valid parameters")
        .to_string()
}

/// Why `password` may not be used by `username`, if it may not.
pub fn policy_refuses(password: &str, username: &str) -> Option<String> {
    let chars = password.chars().count();
    if chars < LENGTH_MIN {
        return Some(format!("at least {LENGTH_MIN} characters"));
    }
    if chars > LENGTH_MAX {
        return Some(format!("at most {LENGTH_MAX} characters"));
    }
    if password.to_lowercase().contains(&username.to_lowercase()) {
        return Some("must not contain the username".into());
    }
    let lower = password.to_lowercase();
    if COMMON.iter().any(|c| lower == *c) {
        return Some("too common; choose another".into());
    }
    None
}

/// A few of the most common passwords of the policy's length (ASVS 2.1.7 asks for a breached
/// list; an operator can front registration with a larger one).
const COMMON: &[&str] = &[
    "123456789012",
    "password1234",
    "qwertyuiopas",
    "passwordpassword",
    "111111111111",
    "iloveyou1234",
    "administrator",
    "letmein12345",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy() {
        assert!(policy_refuses("short", "u").is_some());
        assert!(policy_refuses("alice-secret-words", "alice").is_some());
        assert!(policy_refuses("Password1234", "bob").is_some());
        assert!(policy_refuses(&"x".repeat(129), "bob").is_some());
        assert!(policy_refuses("correct horse battery", "bob").is_none());
    }

    #[tokio::test]
    async fn verifies_its_own_hashes_and_nothing_else() {
        let hasher = Hasher::new(1);
        let phc = hasher.hash("correct horse battery".into()).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(hasher
            .verify("correct horse battery".into(), Some(phc.clone()))
            .await
            .unwrap());
        assert!(!hasher.verify("wrong".into(), Some(phc)).await.unwrap());
        // Unknown account: the decoy is checked, and the answer is no even for its password.
        assert!(!hasher
            .verify("a password nobody has, for timing only".into(), None)
            .await
            .unwrap());
    }
}
