//! The in-memory dedup index: answers provider retries without touching the database, and
//! coalesces concurrent duplicates onto the first one's settlement.
//!
//! Lock-striped: keys hash to one of `SHARDS` small maps, each behind its own `std` mutex that
//! is held only for a map operation, never across an `.await` (waiters park on a `watch`
//! channel instead). Bounded in entries and in bytes: the oldest finished entries are evicted
//! first. A miss proves nothing: the database's `UNIQUE (provider_id, provider_tx_id)` stays the
//! judge, and the stored answer it replays is exactly what this index would have given.

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use settlement::batch::Unavailable;
use settlement::command::{Fingerprint, ProviderId};
use settlement::Answer;
use tokio::sync::watch;

const SHARDS: usize = 64;
/// Bytes an entry costs beyond its key: the answer, map and queue overhead (an estimate).
const ENTRY_OVERHEAD_BYTES: usize = 160;

type Key = (ProviderId, Box<str>);
type Outcome = Option<Result<Answer, Unavailable>>;

enum Entry {
    /// Being settled now; later arrivals with the same fingerprint wait for its outcome.
    InFlight {
        fingerprint: Fingerprint,
        done: watch::Receiver<Outcome>,
    },
    /// Committed: the stored answer, replayed to retries.
    Done {
        fingerprint: Fingerprint,
        answer: Answer,
    },
}

#[derive(Default)]
struct Shard {
    map: HashMap<Key, Entry>,
    /// Insertion order of finished entries, for eviction.
    order: VecDeque<Key>,
    bytes: usize,
}

/// Counters the metrics endpoint reports.
#[derive(Debug, Default)]
pub struct Counters {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub coalesced: AtomicU64,
    pub evicted: AtomicU64,
}

/// The index's counters at one moment, for metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct Snapshot {
    pub hits: u64,
    pub misses: u64,
    pub coalesced: u64,
    pub evicted: u64,
    pub entries: usize,
}

pub struct Index {
    shards: Vec<Mutex<Shard>>,
    hasher: std::collections::hash_map::RandomState,
    entries_max_per_shard: usize,
    bytes_max_per_shard: usize,
    pub counters: Counters,
}

/// What a lookup found.
pub enum Lookup<'a> {
    /// A committed answer for this key and fingerprint (marked duplicate).
    Answered(Answer),
    /// The same callback is being settled right now: await its outcome.
    Wait(watch::Receiver<Outcome>),
    /// Not known here (or known with another fingerprint): settle it, then `finish` the claim.
    Settle(Claim<'a>),
}

/// The right (and duty) to report a key's outcome to its waiters.
pub struct Claim<'a> {
    index: &'a Index,
    key: Option<Key>,
    done: Option<watch::Sender<Outcome>>,
    fingerprint: Fingerprint,
}

impl Index {
    pub fn new(entries_max: usize, bytes_max: usize) -> Index {
        Index {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            hasher: Default::default(),
            entries_max_per_shard: (entries_max / SHARDS).max(1),
            bytes_max_per_shard: (bytes_max / SHARDS).max(ENTRY_OVERHEAD_BYTES),
            counters: Counters::default(),
        }
    }

    fn shard(&self, key: &Key) -> &Mutex<Shard> {
        &self.shards[(self.hasher.hash_one(key) as usize) % SHARDS]
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).map.len()).sum()
    }

    /// Counters and size now.
    pub fn snapshot(&self) -> Snapshot {
        let c = &self.counters;
        Snapshot {
            hits: c.hits.load(Ordering::Relaxed),
            misses: c.misses.load(Ordering::Relaxed),
            coalesced: c.coalesced.load(Ordering::Relaxed),
            evicted: c.evicted.load(Ordering::Relaxed),
            entries: self.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Looks `key` up, claiming it when nobody is settling it.
    pub fn begin(&self, provider: ProviderId, tx: &str, fingerprint: Fingerprint) -> Lookup<'_> {
        let key: Key = (provider, tx.into());
        let mut shard = lock(self.shard(&key));
        match shard.map.get(&key) {
            Some(Entry::Done {
                fingerprint: f,
                answer,
            }) if *f == fingerprint => {
                self.counters.hits.fetch_add(1, Ordering::Relaxed);
                let mut answer = answer.clone();
                answer.duplicate = true;
                return Lookup::Answered(answer);
            }
            Some(Entry::InFlight {
                fingerprint: f,
                done,
            }) if *f == fingerprint => {
                self.counters.coalesced.fetch_add(1, Ordering::Relaxed);
                return Lookup::Wait(done.clone());
            }
            // A different payload under a known id: the database answers the mismatch.
            Some(_) => {
                self.counters.misses.fetch_add(1, Ordering::Relaxed);
                return Lookup::Settle(Claim {
                    index: self,
                    key: None,
                    done: None,
                    fingerprint,
                });
            }
            None => {}
        }
        self.counters.misses.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = watch::channel(None);
        shard.map.insert(
            key.clone(),
            Entry::InFlight {
                fingerprint,
                done: rx,
            },
        );
        Lookup::Settle(Claim {
            index: self,
            key: Some(key),
            done: Some(tx),
            fingerprint,
        })
    }

    fn evict(&self, shard: &mut Shard) {
        while shard.order.len() > self.entries_max_per_shard
            || shard.bytes > self.bytes_max_per_shard
        {
            let Some(oldest) = shard.order.pop_front() else {
                break;
            };
            shard.bytes = shard
                .bytes
                .saturating_sub(oldest.1.len() + ENTRY_OVERHEAD_BYTES);
            if matches!(shard.map.get(&oldest), Some(Entry::Done { .. })) {
                shard.map.remove(&oldest);
                self.counters.evicted.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl Claim<'_> {
    /// Reports the claimed key's outcome: waiters get it; a committed, stored answer stays for
    /// retries; anything else is forgotten so the next attempt settles afresh.
    pub fn finish(mut self, outcome: &Result<Answer, Unavailable>) {
        let Some(key) = self.key.take() else {
            return;
        };
        let index = self.index;
        let stored = match outcome {
            Ok(a)
                if a.operator_tx_id.is_some() && a.code != settlement::Code::DuplicateMismatch =>
            {
                Some(a)
            }
            _ => None,
        };
        {
            let mut shard = lock(index.shard(&key));
            match stored {
                Some(answer) => {
                    let mut answer = answer.clone();
                    answer.duplicate = false;
                    shard.bytes += key.1.len() + ENTRY_OVERHEAD_BYTES;
                    shard.map.insert(
                        key.clone(),
                        Entry::Done {
                            fingerprint: self.fingerprint,
                            answer,
                        },
                    );
                    shard.order.push_back(key);
                    index.evict(&mut shard);
                }
                None => {
                    shard.map.remove(&key);
                }
            }
        }
        if let Some(done) = self.done.take() {
            let _ = done.send(Some(outcome.clone()));
        }
    }
}

impl Drop for Claim<'_> {
    /// A claim dropped without `finish` (the request was cancelled): forget the key and release
    /// the waiters with a retryable outcome; the provider's retry settles afresh.
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            lock(self.index.shard(&key)).map.remove(&key);
        }
        if let Some(done) = self.done.take() {
            let _ = done.send(Some(Err(Unavailable::Deadline)));
        }
    }
}

/// Awaits a coalesced outcome; a claim holder that vanished counts as retryable.
pub async fn wait(mut rx: watch::Receiver<Outcome>) -> Result<Answer, Unavailable> {
    match rx.wait_for(Option::is_some).await {
        Ok(outcome) => match outcome.as_ref() {
            Some(Ok(answer)) => {
                let mut answer = answer.clone();
                answer.duplicate = true;
                Ok(answer)
            }
            Some(Err(e)) => Err(*e),
            None => Err(Unavailable::Deadline),
        },
        Err(_) => Err(Unavailable::Deadline),
    }
}

fn lock(shard: &Mutex<Shard>) -> std::sync::MutexGuard<'_, Shard> {
    // A panic while holding a shard lock leaves plain data behind; keep serving.
    shard.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests;
