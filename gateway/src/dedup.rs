//! The in-memory dedup index: answers provider retries without touching the database, and
//! coalesces concurrent duplicates onto the first one's settlement.
//!
//! Lock-striped: keys hash to one of `SHARDS` small tables, each behind its own `std` mutex that
//! is held only for a table operation, never across an `.await` (waiters park on a `watch`
//! channel instead, made by the first twin that waits: most keys never have one). A key is
//! hashed once per call (the claim keeps its hash for `finish`), and a new one is copied once
//! (the table, the eviction queue and the claim share it). Bounded in entries and in bytes: the
//! oldest finished entries are evicted first. A miss proves nothing: the database's
//! `UNIQUE (provider_id, provider_tx_id)` stays the judge, and the stored answer it replays is
//! exactly what this index would have given.

use std::collections::hash_map::RandomState;
use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use hashbrown::HashTable;

use settlement::batch::Unavailable;
use settlement::command::{Fingerprint, ProviderId};
use settlement::Answer;
use tokio::sync::watch;

const SHARDS: usize = 64;
/// Bytes an entry costs beyond its key: the answer, map and queue overhead (an estimate).
const ENTRY_OVERHEAD_BYTES: usize = 160;

type Key = (ProviderId, Arc<str>);
type Outcome = Option<Result<Answer, Unavailable>>;

enum Entry {
    /// Being settled now; later arrivals with the same fingerprint wait for its outcome on
    /// `done`, which the first of them makes (the claim's `finish` sends on it).
    InFlight {
        fingerprint: Fingerprint,
        done: Option<watch::Sender<Outcome>>,
    },
    /// Committed: the stored answer, replayed to retries.
    Done {
        fingerprint: Fingerprint,
        answer: Answer,
    },
}

#[derive(Default)]
struct Shard {
    table: HashTable<(Key, Entry)>,
    /// Insertion order of finished entries (with their hashes), for eviction.
    order: VecDeque<(u64, Key)>,
    bytes: usize,
}

impl Shard {
    /// The entry of `provider`'s `tx` under `hash`.
    fn find_mut(&mut self, hash: u64, provider: ProviderId, tx: &str) -> Option<&mut Entry> {
        let found = self
            .table
            .find_mut(hash, |(k, _)| k.0 == provider && *k.1 == *tx);
        found.map(|(_, entry)| entry)
    }

    /// Removes the entry of `key` under `hash` if `keep` says no to it, returning it.
    fn remove_unless(
        &mut self,
        hash: u64,
        key: &Key,
        keep: impl Fn(&Entry) -> bool,
    ) -> Option<Entry> {
        match self.table.find_entry(hash, |(k, _)| *k == *key) {
            Ok(found) if !keep(&found.get().1) => Some(found.remove().0 .1),
            _ => None,
        }
    }
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
    hasher: RandomState,
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
    hash: u64,
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

    /// The hash of a key, as its table stores it (`Arc<str>` hashes as its `str`).
    fn hash(&self, provider: ProviderId, tx: &str) -> u64 {
        self.hasher.hash_one((provider, tx))
    }

    /// The shard of a hash: bits the tables' own bucket index and tags leave alone (the low
    /// bits pick a bucket, the top seven are tags), so one shard's keys still spread over its
    /// table.
    fn shard(&self, hash: u64) -> &Mutex<Shard> {
        &self.shards[(hash >> 32) as usize % SHARDS]
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).table.len()).sum()
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
        let hash = self.hash(provider, tx);
        let mut shard = lock(self.shard(hash));
        match shard.find_mut(hash, provider, tx) {
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
                let done = done.get_or_insert_with(|| watch::channel(None).0);
                return Lookup::Wait(done.subscribe());
            }
            // A different payload under a known id: the database answers the mismatch.
            Some(_) => {
                self.counters.misses.fetch_add(1, Ordering::Relaxed);
                return Lookup::Settle(Claim {
                    index: self,
                    key: None,
                    hash,
                    fingerprint,
                });
            }
            None => {}
        }
        self.counters.misses.fetch_add(1, Ordering::Relaxed);
        let key: Key = (provider, tx.into());
        let entry = Entry::InFlight {
            fingerprint,
            done: None,
        };
        shard
            .table
            .insert_unique(hash, (key.clone(), entry), |(k, _)| self.hash(k.0, &k.1));
        Lookup::Settle(Claim {
            index: self,
            key: Some(key),
            hash,
            fingerprint,
        })
    }

    fn evict(&self, shard: &mut Shard) {
        while shard.order.len() > self.entries_max_per_shard
            || shard.bytes > self.bytes_max_per_shard
        {
            let Some((hash, oldest)) = shard.order.pop_front() else {
                break;
            };
            shard.bytes = shard
                .bytes
                .saturating_sub(oldest.1.len() + ENTRY_OVERHEAD_BYTES);
            let in_flight = |e: &Entry| matches!(e, Entry::InFlight { .. });
            if shard.remove_unless(hash, &oldest, in_flight).is_some() {
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
        let hash = self.hash;
        let waiters = {
            let mut shard = lock(index.shard(hash));
            match stored {
                Some(answer) => {
                    // The claim's own in-flight entry becomes the finished one, in place: only
                    // the claim removes an in-flight entry (eviction skips them), so it is there.
                    let slot = shard.table.find_mut(hash, |(k, _)| *k == key);
                    let waiters = slot.map(|slot| {
                        let mut answer = answer.clone();
                        answer.duplicate = false;
                        let done = Entry::Done {
                            fingerprint: self.fingerprint,
                            answer,
                        };
                        std::mem::replace(&mut slot.1, done)
                    });
                    if waiters.is_some() {
                        shard.bytes += key.1.len() + ENTRY_OVERHEAD_BYTES;
                        shard.order.push_back((hash, key));
                        index.evict(&mut shard);
                    }
                    waiters
                }
                None => shard.remove_unless(hash, &key, |_| false),
            }
        };
        release(waiters, Some(outcome.clone()));
    }
}

impl Drop for Claim<'_> {
    /// A claim dropped without `finish` (the request was cancelled): forget the key and release
    /// the waiters with a retryable outcome; the provider's retry settles afresh.
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            let waiters =
                lock(self.index.shard(self.hash)).remove_unless(self.hash, &key, |_| false);
            release(waiters, Some(Err(Unavailable::Deadline)));
        }
    }
}

/// Sends `outcome` to the twins waiting on a claim's in-flight entry, if any wait.
fn release(entry: Option<Entry>, outcome: Outcome) {
    if let Some(Entry::InFlight {
        done: Some(done), ..
    }) = entry
    {
        let _ = done.send(outcome);
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
