//! What a simulation run reports: counts, faults injected, and each checker's verdict with its
//! first offence; `summary` is the line `sim` prints.
#![allow(clippy::float_arithmetic)] // rates in the summary, never money

use std::collections::BTreeMap;
use std::time::Duration;

/// The run's outcome: checker results and the first offence of each failed checker.
#[derive(Debug)]
pub struct Report {
    pub seed: u64,
    pub attempts: u64,
    pub operations: u64,
    pub elapsed: Duration,
    /// Attempts whose outcome the client never learnt (transport error, timeout): each was
    /// resolved afterwards by a retry's final answer or by a rollback, or is a violation.
    pub unknown: u64,
    pub retries: u64,
    /// Final answers to callbacks with a transaction id: `OK`, and business refusals.
    pub finals_ok: u64,
    pub finals_refused: u64,
    pub faults: BTreeMap<&'static str, u64>,
    pub checks: Vec<(String, Result<(), String>)>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|(_, r)| r.is_ok())
    }

    pub fn summary(&self) -> String {
        let secs = self.elapsed.as_secs_f64().max(0.001);
        let faults: Vec<String> = self
            .faults
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let checks: Vec<String> = self
            .checks
            .iter()
            .map(|(name, r)| format!("{name}={}", if r.is_ok() { "ok" } else { "FAILED" }))
            .collect();
        format!(
            "sim seed {}: {} callbacks ({} operations) in {:.1} s, {:.0}/s; final answers: {} OK, \
             {} refused; unknown outcomes {} (then resolved), retries {}; faults: {}; checks: {}",
            self.seed,
            self.attempts,
            self.operations,
            secs,
            self.attempts as f64 / secs,
            self.finals_ok,
            self.finals_refused,
            self.unknown,
            self.retries,
            faults.join(" "),
            checks.join(" ")
        )
    }
}
