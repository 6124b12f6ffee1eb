//! The wallet path's fault seam: failpoints around prefetch, writes and COMMIT, and planted
//! bugs that prove the checkers can fail. It exists so failure paths are reached on purpose in
//! tests, never by luck.
//!
//! Test builds (`cfg(test)` or the `test-util` feature) get the real [`Faults`]: rules and
//! plants set per settler, through [`crate::batch::Settler::faults`]. Every other build gets a
//! zero-sized `Faults` whose every answer is "no fault", so production code reads the seam in
//! the same few places (`store::settle`, the lane, the gateway's callback path) without a
//! process-wide switch.
//!
//! A failpoint does not fake an error value: it sends a real statement that fails the way the
//! fault says (an exception with a chosen SQLSTATE, `pg_terminate_backend` on the lane's own
//! connection, `pg_sleep`), so the code that classifies errors is exercised for real.

/// Where in a batch's transaction a failpoint fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Point {
    /// After BEGIN, before the prefetch reads (and the wallet lock).
    Prefetch,
    /// After the batch's writes, before COMMIT: the writes are rolled back.
    Write,
    /// After COMMIT succeeded, before the lane hears of it: the batch is durable, but the lane
    /// sees an error (the "connection cut in the middle of COMMIT" case).
    AfterCommit,
}

/// What a failpoint does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// A plain statement error (SQLSTATE P0001): a poisoned batch, split to find the culprit.
    Fail,
    /// The database refuses a value of the batch's data (SQLSTATE 22021, a byte sequence
    /// invalid in the encoding): split to find the culprit, whose answer is then final.
    BadData,
    /// A serialization failure (40001): the batch is retried whole.
    Conflict,
    /// A deadlock (40P01): the batch is retried whole.
    Deadlock,
    /// The server ends the lane's connection (57P01, then closed): a storage failure.
    Disconnect,
    /// The statement takes this many milliseconds.
    StallMs(u32),
}

impl Effect {
    #[cfg_attr(not(any(test, feature = "test-util")), allow(dead_code))]
    fn sql(self) -> String {
        let raise = |code: &str| {
            format!("DO $$ BEGIN RAISE EXCEPTION 'failpoint' USING ERRCODE = '{code}'; END $$")
        };
        match self {
            Effect::Fail => raise("P0001"),
            Effect::BadData => raise("22021"),
            Effect::Conflict => raise("40001"),
            Effect::Deadlock => raise("40P01"),
            Effect::Disconnect => "SELECT pg_terminate_backend(pg_backend_pid())".into(),
            Effect::StallMs(ms) => format!("SELECT pg_sleep({ms} / 1000.0)"),
        }
    }
}

/// Planted bugs: each one breaks a promise the checkers must notice (the detection matrix is
/// in `docs/reliability.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Plant {
    /// The wallet path forgets every transaction id it has seen (no dedup in the database or
    /// in the gateway's index), so retries are applied again.
    NoDedup,
    /// Every win is answered "storage unavailable" (retryable), forever.
    WinsUnavailable,
    /// The gateway's index keeps a different answer than the one sent, so a retry is answered
    /// differently from the original.
    AlteredRetryAnswer,
    /// A batch is answered as soon as its writes and COMMIT are sent, before the server says
    /// whether they committed.
    AnswerBeforeCommit,
    /// Batches commit with `synchronous_commit = off`: acknowledged before the WAL is flushed.
    AsyncCommit,
    /// A rollback that finds no bet leaves no mark, so the late bet is applied.
    TombstonesOff,
    /// After a failed batch, the halves are retried as if the failure had rolled everything
    /// back (no look-up of stored transactions), which is wrong when it came after COMMIT.
    SplitReapplies,
    /// A lane takes its queued commands newest first, so a player's commands that wait
    /// together are applied out of arrival order.
    LaneReorder,
}

impl Plant {
    pub const ALL: [Plant; 8] = [
        Plant::NoDedup,
        Plant::WinsUnavailable,
        Plant::AlteredRetryAnswer,
        Plant::AnswerBeforeCommit,
        Plant::AsyncCommit,
        Plant::TombstonesOff,
        Plant::SplitReapplies,
        Plant::LaneReorder,
    ];

    /// The name used on command lines and in `WALLET_PLANTS` (`no-dedup`, `async-commit`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Plant::NoDedup => "no-dedup",
            Plant::WinsUnavailable => "wins-unavailable",
            Plant::AlteredRetryAnswer => "altered-retry-answer",
            Plant::AnswerBeforeCommit => "answer-before-commit",
            Plant::AsyncCommit => "async-commit",
            Plant::TombstonesOff => "tombstones-off",
            Plant::SplitReapplies => "split-reapplies",
            Plant::LaneReorder => "lane-reorder",
        }
    }

    pub fn from_name(name: &str) -> Option<Plant> {
        Plant::ALL.into_iter().find(|p| p.name() == name)
    }
}

#[cfg(any(test, feature = "test-util"))]
mod seam {
    use std::collections::HashSet;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Mutex;

    use super::{Effect, Plant, Point};
    use crate::command::Command;

    /// When a rule fires.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Trigger {
        /// Every batch that reaches the point.
        Always,
        /// Batches holding a command with this provider transaction id.
        Tx(String),
        /// One batch in this many that reach the point (the last of each run of them), so
        /// steady failures never single out one request retried alone.
        OneIn(u32),
    }

    #[derive(Debug)]
    struct Rule {
        point: Point,
        effect: Effect,
        trigger: Trigger,
        remaining: u32,
        /// Batches that reached the point (for `OneIn`).
        seen: u32,
    }

    /// Failpoint rules and planted bugs of one settler (test builds only).
    #[derive(Debug, Default)]
    pub struct Faults {
        rules: Mutex<Vec<Rule>>,
        plants: Mutex<HashSet<Plant>>,
        fired: AtomicU64,
    }

    impl Faults {
        /// Fires `effect` at `point` for the next `times` batches matching `trigger`.
        pub fn add(&self, point: Point, effect: Effect, trigger: Trigger, times: u32) {
            self.lock_rules().push(Rule {
                point,
                effect,
                trigger,
                remaining: times,
                seen: 0,
            });
        }

        /// Removes every rule (plants stay).
        pub fn clear(&self) {
            self.lock_rules().clear();
        }

        /// How many failpoints have fired so far.
        pub fn fired(&self) -> u64 {
            self.fired.load(Ordering::SeqCst)
        }

        pub fn plant(&self, plant: Plant, on: bool) {
            let mut plants = self.plants.lock().unwrap_or_else(|e| e.into_inner());
            if on {
                plants.insert(plant);
            } else {
                plants.remove(&plant);
            }
        }

        pub fn planted(&self, plant: Plant) -> bool {
            self.plants
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(&plant)
        }

        /// Whether a batch skips the look-up of stored transactions: always under `NoDedup`,
        /// and for the halves of a failed batch under `SplitReapplies`.
        pub(crate) fn skips_dedup(&self, split_retry: bool) -> bool {
            self.planted(Plant::NoDedup) || (split_retry && self.planted(Plant::SplitReapplies))
        }

        /// The statement to run at `point` for this batch, if a rule fires.
        pub(crate) fn sql(&self, point: Point, commands: &[Command]) -> Option<String> {
            let mut rules = self.lock_rules();
            let mut chosen = None;
            for (i, r) in rules.iter_mut().enumerate() {
                if r.point != point || r.remaining == 0 {
                    continue;
                }
                let fires = match &r.trigger {
                    Trigger::Always => true,
                    Trigger::Tx(tx) => commands
                        .iter()
                        .any(|c| c.tx().is_some_and(|t| t.as_str() == tx)),
                    Trigger::OneIn(n) => {
                        r.seen = r.seen.wrapping_add(1);
                        r.seen % (*n).max(1) == 0
                    }
                };
                if fires {
                    chosen = Some(i);
                    break;
                }
            }
            let rule = &mut rules[chosen?];
            rule.remaining -= 1;
            self.fired.fetch_add(1, Ordering::SeqCst);
            Some(rule.effect.sql())
        }

        fn lock_rules(&self) -> std::sync::MutexGuard<'_, Vec<Rule>> {
            self.rules.lock().unwrap_or_else(|e| e.into_inner())
        }
    }
}

#[cfg(not(any(test, feature = "test-util")))]
mod seam {
    use super::{Plant, Point};
    use crate::command::Command;

    /// Production builds: no rules, no plants.
    #[derive(Debug, Default)]
    pub struct Faults {
        _nothing: (),
    }

    impl Faults {
        #[inline(always)]
        pub fn planted(&self, _plant: Plant) -> bool {
            false
        }

        #[inline(always)]
        pub(crate) fn skips_dedup(&self, _split_retry: bool) -> bool {
            false
        }

        #[inline(always)]
        pub(crate) fn sql(&self, _point: Point, _commands: &[Command]) -> Option<String> {
            None
        }
    }
}

pub use seam::*;
