//! A section of `cargo xtask bench`: steps.
#![allow(clippy::float_arithmetic)] // rates and percentiles, never money

use std::fmt::Write as _;
use std::path::Path;

use crate::bench::harness::*;
use crate::bench::probes::*;

/// A step of the write path: the schema and configuration before it (SQL run on a fresh
/// cluster of this build after its migrations, environment overrides) and after it.
pub(crate) struct Step {
    pub(crate) name: &'static str,
    pub(crate) undo_sql: &'static str,
    pub(crate) before_env: &'static [(&'static str, &'static str)],
    pub(crate) after_env: &'static [(&'static str, &'static str)],
}

/// The lanes' linger before the linger steps: only from half of `batch_len_max`, up to 1 ms.
pub(crate) const OLD_LINGER: &[(&str, &str)] = &[
    ("GATEWAY__SETTLEMENT__BATCH_LINGER_FROM", "256"),
    ("GATEWAY__SETTLEMENT__BATCH_WAIT_MAX_US", "1000"),
];

pub(crate) const WRITE_STEPS: &[Step] = &[
    Step {
        name: "the ledger's index on (provider, reference) dropped (migration 0013: every read \
               by reference goes through `transaction_keys`)",
        undo_sql:
            "CREATE INDEX transactions_reference ON transactions (provider_id, reference_tx_id)
                   WHERE reference_tx_id IS NOT NULL",
        before_env: &[],
        after_env: &[],
    },
    Step {
        name: "one settlement lane instead of two (`settlement.lanes`): batches twice as long",
        undo_sql: "",
        before_env: &[("GATEWAY__SETTLEMENT__LANES", "2")],
        after_env: &[("GATEWAY__SETTLEMENT__LANES", "1")],
    },
    Step {
        name: "two lanes that linger up to 1 ms once their previous batch held 8 commands \
               (`settlement.batch_linger_from` 8, was half of `batch_len_max`: 256)",
        undo_sql: "",
        before_env: OLD_LINGER,
        after_env: &[
            ("GATEWAY__SETTLEMENT__BATCH_LINGER_FROM", "8"),
            ("GATEWAY__SETTLEMENT__BATCH_WAIT_MAX_US", "1000"),
        ],
    },
    Step {
        name: "the same linger up to 2 ms (`settlement.batch_wait_max_us` 2000): the defaults \
               since this step",
        undo_sql: "",
        before_env: OLD_LINGER,
        after_env: &[
            ("GATEWAY__SETTLEMENT__BATCH_LINGER_FROM", "8"),
            ("GATEWAY__SETTLEMENT__BATCH_WAIT_MAX_US", "2000"),
        ],
    },
    Step {
        name: "one runtime worker thread beside the embedded PostgreSQL \
               (`server.worker_threads` 1, the default here: half the cores; against 2, \
               one per core here)",
        undo_sql: "",
        before_env: &[("GATEWAY__SERVER__WORKER_THREADS", "2")],
        after_env: &[("GATEWAY__SERVER__WORKER_THREADS", "1")],
    },
    Step {
        name: "a candidate, not the default: linger up to 5 ms (`settlement.batch_wait_max_us` \
               5000, against the default 2000) on the real disk",
        undo_sql: "",
        before_env: &[],
        after_env: &[("GATEWAY__SETTLEMENT__BATCH_WAIT_MAX_US", "5000")],
    },
];

/// Each step of the write path (schema or configuration) measured in one run: a fresh cluster
/// with the step undone, then one as it is, twice each way; warmed up, then 10,000/s (CPU of
/// gateway and every PostgreSQL process per callback, and the ledger insert's µs per row from
/// `pg_stat_statements`), then saturated. Markdown.
pub(crate) fn steps_section(root: &Path, step_s: u64) -> anyhow::Result<String> {
    let mut w = String::new();
    writeln!(w, "\n## The write path, step by step\n")?;
    writeln!(w, "Each step of the write path (its schema or its configuration), measured in this run: a fresh cluster of this build with the step undone (`before`: SQL after the migrations, or settings), then one as it is (`after`), twice each way; each warmed up (5,000/s for 10 s), then 10,000/s for {step_s} s: CPU of the gateway and of every PostgreSQL process per callback, and the ledger insert's time per row and per batch (`pg_stat_statements`, wall time); then {SATURATING_RATE}/s offered for {step_s} s (answers that were not a 5xx, per second).\n")?;
    writeln!(w, "| step | schema | turn | achieved/s | p99 ms | gateway µs/callback | PostgreSQL µs/callback | ledger insert µs/row | µs/batch | rows/batch | saturated: answered/s |\n|---|---|---|---|---|---|---|---|---|---|---|")?;
    let mut means = Vec::new();
    for (n, step) in WRITE_STEPS.iter().enumerate() {
        let mut cpu_us = [Vec::new(), Vec::new()];
        let mut answered = [Vec::new(), Vec::new()];
        for (turn, after) in [false, true, false, true].into_iter().enumerate() {
            let mut env = vec![STATEMENT_STATS];
            env.extend_from_slice(if after {
                step.after_env
            } else {
                step.before_env
            });
            let gw = Gateway::start(&root.join(format!("step-{n}-{turn}")), &env)?;
            if !after && !step.undo_sql.is_empty() {
                psql(&gw, step.undo_sql)?;
            }
            psql(&gw, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements")?;
            settle_down();
            loadtest(&gw, 5_000, 10, &[])?;
            psql(&gw, "SELECT pg_stat_statements_reset()")?;
            let run = loadtest(&gw, 10_000, step_s, &[])?;
            let insert = psql(
                &gw,
                "SELECT total_exec_time * 1000 / greatest(rows, 1),
                        total_exec_time * 1000 / greatest(calls, 1),
                        rows::float8 / greatest(calls, 1)
                 FROM pg_stat_statements
                 WHERE query LIKE 'WITH rows AS%INSERT INTO transactions%'
                 ORDER BY calls DESC LIMIT 1",
            )?;
            settle_down();
            let saturated = loadtest(&gw, SATURATING_RATE, step_s, &[])?;
            gw.stop()?;
            let cells: Vec<f64> = insert
                .split('|')
                .map(|c| c.parse().unwrap_or(f64::NAN))
                .collect();
            let per = |party: &str| run.cpu_us_per_callback(party);
            cpu_us[usize::from(after)].push(per("gateway") + per("postgres"));
            answered[usize::from(after)].push(saturated.answered_rate());
            writeln!(
                w,
                "| {} | {} | {} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0} | {:.1} | {:.0} |",
                n + 1,
                if after { "after" } else { "before" },
                turn + 1,
                run.achieved(),
                run.p("p99"),
                per("gateway"),
                per("postgres"),
                cells.first().copied().unwrap_or(f64::NAN),
                cells.get(1).copied().unwrap_or(f64::NAN),
                cells.get(2).copied().unwrap_or(f64::NAN),
                saturated.answered_rate(),
            )?;
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        means.push((
            step.name,
            (mean(&cpu_us[0]), mean(&cpu_us[1])),
            (mean(&answered[0]), mean(&answered[1])),
        ));
    }
    writeln!(w, "\n| step | gateway + PostgreSQL µs/callback before (mean of two) | after | change | saturated answered/s before | after | change |\n|---|---|---|---|---|---|---|")?;
    for (n, (step, (before, after), (sat_before, sat_after))) in means.iter().enumerate() {
        writeln!(
            w,
            "| {}. {step} | {before:.1} | {after:.1} | {:+.1} % | {sat_before:.0} | {sat_after:.0} | {:+.1} % |",
            n + 1,
            (after / before - 1.0) * 100.0,
            (sat_after / sat_before - 1.0) * 100.0
        )?;
    }
    Ok(w)
}
