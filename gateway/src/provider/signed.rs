//! Which method each recently verified signature was made for, for dialects whose signature
//! covers a call's parameters but not its method (Pragmatic-style: a bet's signed parameters
//! also verify as a refund). A signature met again under another method is refused.
//!
//! The memory is bounded and in process: it stops the replay of a call seen by this gateway
//! since it started (the oldest are forgotten first, past `CAPACITY`). What stops a replay
//! from anywhere is the allowlist such dialects need outside demo mode
//! (`config::allowlist_missing`).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// Signatures remembered (about 60 bytes each): at 10,000 calls a second of one such
/// dialect, the last minute and a half.
pub const CAPACITY: usize = 1 << 20;

type Key = (i32, [u8; 16]);

/// Recently verified signatures and the method (action label) each was made for.
#[derive(Debug)]
pub struct SignedCalls {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    method: HashMap<Key, &'static str>,
    order: VecDeque<Key>,
}

impl SignedCalls {
    pub fn new(capacity: usize) -> SignedCalls {
        SignedCalls {
            capacity,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Notes that `provider`'s signature `digest` signed a `method` call; `Err` with the
    /// method it signed before, if another.
    pub fn note(
        &self,
        provider: i32,
        digest: [u8; 16],
        method: &'static str,
    ) -> Result<(), &'static str> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let key = (provider, digest);
        if let Some(first) = inner.method.get(&key) {
            return if *first == method { Ok(()) } else { Err(first) };
        }
        if inner.order.len() >= self.capacity {
            if let Some(oldest) = inner.order.pop_front() {
                inner.method.remove(&oldest);
            }
        }
        inner.method.insert(key, method);
        inner.order.push_back(key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::SignedCalls;

    #[test]
    fn a_signature_signs_one_method_of_one_provider() {
        let signed = SignedCalls::new(2);
        assert_eq!(signed.note(1, [7; 16], "bet"), Ok(()));
        // A retry of the same call.
        assert_eq!(signed.note(1, [7; 16], "bet"), Ok(()));
        // The same parameters posted to another method.
        assert_eq!(signed.note(1, [7; 16], "refund"), Err("bet"));
        // Another provider's signature is its own.
        assert_eq!(signed.note(2, [7; 16], "refund"), Ok(()));
        // Bounded: the oldest is forgotten first.
        assert_eq!(signed.note(1, [8; 16], "bet"), Ok(()));
        assert_eq!(signed.note(1, [7; 16], "refund"), Ok(()));
    }
}
