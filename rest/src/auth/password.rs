//! Password hashing with Argon2id at OWASP's parameters, on threads of its own at a lower
//! priority and bounded in concurrency (each hash holds 19 MiB and ~20 ms of a core), and the
//! policy a new password must meet.

use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

use crate::envelope::{ApiError, ApiResult, Code};

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

/// Hashes and verifies passwords on its own threads, one per slot, at a lower scheduling
/// priority (nice 10) than the callback path: logins use the CPU callbacks leave, and a burst
/// of logins cannot take more than `slots` cores.
#[derive(Clone)]
pub struct Hasher {
    slots: Arc<Semaphore>,
    jobs: mpsc::Sender<Job>,
    /// Verified against when the account does not exist, so an unknown user costs the same
    /// time as a wrong password.
    decoy: Arc<String>,
}

type Job = Box<dyn FnOnce() + Send>;

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hasher").finish_non_exhaustive()
    }
}

/// The hashing threads' priority: nice 10 on Linux (the crate maps 22 of 0..99 to it).
fn lower_this_threads_priority() {
    let priority = thread_priority::ThreadPriorityValue::try_from(22u8)
        .map(thread_priority::ThreadPriority::Crossplatform);
    if let Err(e) = priority.map(thread_priority::set_current_thread_priority) {
        tracing::debug!(error = ?e, "password hashing keeps the default priority");
    }
}

impl Hasher {
    /// `slots` hashes may run at once (one per core is the useful most).
    pub fn new(slots: usize) -> Hasher {
        let slots = slots.max(1);
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..slots {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("password-hash-{i}"))
                .spawn(move || {
                    lower_this_threads_priority();
                    loop {
                        // The lock is held only while waiting for the next job.
                        let job = match queue.lock().map(|q| q.recv()) {
                            Ok(Ok(job)) => job,
                            _ => return,
                        };
                        job();
                    }
                })
                .expect("start a password hashing thread");
        }
        let decoy = hash_now("a password nobody has, for timing only");
        Hasher {
            slots: Arc::new(Semaphore::new(slots)),
            jobs,
            decoy: Arc::new(decoy),
        }
    }

    /// The PHC string of `password` with a fresh salt.
    pub async fn hash(&self, password: String) -> ApiResult<String> {
        self.run(move || hash_now(&password)).await
    }

    /// Whether `password` matches `phc`; with `phc` absent, spends the same effort on the
    /// decoy and answers `false`.
    pub async fn verify(&self, password: String, phc: Option<String>) -> ApiResult<bool> {
        let decoy = self.decoy.clone();
        self.run(move || {
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

    /// Runs `work` on a hashing thread once a slot is free (waiting at most [`SLOT_WAIT`]).
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> ApiResult<T> {
        let permit = tokio::time::timeout(SLOT_WAIT, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| busy())?
            .map_err(|_| busy())?;
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = done.send(work());
            drop(permit);
        });
        self.jobs
            .send(job)
            .map_err(|e| ApiError::internal("password hashing threads", &e))?;
        result
            .await
            .map_err(|e| ApiError::internal("password hashing job", &e))
    }
}

fn busy() -> ApiError {
    ApiError {
        retry_after_s: Some(1),
        ..ApiError::new(
            http::StatusCode::SERVICE_UNAVAILABLE,
            Code::Busy,
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

    /// The nice value of this process's thread named `name` (Linux `/proc`).
    fn niceness_of(name: &str) -> Option<i64> {
        for task in std::fs::read_dir("/proc/self/task").ok()? {
            let dir = task.ok()?.path();
            let comm = std::fs::read_to_string(dir.join("comm")).ok()?;
            if comm.trim() == name {
                let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
                // After the parenthesised command: state is field 3, nice field 19.
                let after = stat.rsplit_once(')')?.1;
                return after.split_whitespace().nth(16)?.parse().ok();
            }
        }
        None
    }

    #[tokio::test]
    async fn hashing_runs_on_threads_of_lower_priority() {
        let hasher = Hasher::new(1);
        hasher.hash("correct horse battery".into()).await.unwrap();
        assert_eq!(niceness_of("password-hash-0"), Some(10));
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
