//! A section of `cargo xtask bench`: partitions.
#![allow(clippy::float_arithmetic)] // rates and percentiles, never money

use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use crate::bench::harness::*;
use crate::bench::probes::*;
use crate::bench::seed::*;

/// Ledger rows of history for the partitions section.
pub(crate) const HISTORY_ROWS: u64 = 3_000_000;

/// Retention's partitions on the hot path: the same 30 days of history ({HISTORY_ROWS} ledger
/// rows, their keys and rounds) in one partition or in 30 daily ones, fresh clusters in turn,
/// twice each way; each warmed up, run at 10,000/s (CPU per callback) and saturated. Markdown.
pub(crate) fn partitions_section(root: &Path, step_s: u64) -> anyhow::Result<String> {
    let mut turns = Vec::new();
    let mut statements = Vec::new();
    for (turn, daily) in [false, true, false, true].into_iter().enumerate() {
        let gw = Gateway::start(
            &root.join(format!("partitions-{turn}")),
            &[
                ("GATEWAY__REST__REPORT_FOLD_INTERVAL_S", "1"),
                STATEMENT_STATS,
            ],
        )?;
        let seeding = Instant::now();
        psql(&gw, &history_partitions_sql(30, daily))?;
        psql(&gw, &seed_ledger_sql(0, HISTORY_ROWS, HISTORY_ROWS, 30))?;
        // Vacuumed as autovacuum would have, day by day: not inside the measured runs.
        psql(&gw, "VACUUM (ANALYZE)")?;
        let seeded_s = seeding.elapsed().as_secs_f64();
        // The report job folds the history into the rollups (as it would have, day by day):
        // timed apart, and not inside the runs.
        let folding = Instant::now();
        wait_for_rollups(&gw)?;
        let folded_s = folding.elapsed().as_secs_f64();
        psql(&gw, "CHECKPOINT")?;
        let partitions: u64 = psql(
            &gw,
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'transactions'::regclass",
        )?
        .parse()?;
        settle_down();
        loadtest_many(&[&gw], PLAYERS, 5_000, 10, &[])?;
        let at_10k = loadtest_many(&[&gw], PLAYERS, 10_000, step_s, &[])?;
        let per = |party: &str| at_10k.cpu_us_per_callback(party);
        let cpu = (per("gateway"), per("postgres"));
        settle_down();
        psql(
            &gw,
            "CREATE EXTENSION IF NOT EXISTS pg_stat_statements; SELECT pg_stat_statements_reset()",
        )?;
        let saturated = loadtest_many(&[&gw], PLAYERS, SATURATING_RATE, step_s, &[])?;
        statements.push(top_statements(&gw)?);
        gw.stop()?;
        turns.push((
            daily,
            partitions,
            (seeded_s, folded_s),
            cpu,
            at_10k,
            saturated,
        ));
    }
    let mut w = String::new();
    writeln!(w, "\n## Daily partitions on the hot path\n")?;
    writeln!(w, "The ledger holds 30 days of history before today's traffic: {HISTORY_ROWS} rows (bets and wins of {PLAYERS} players, with their keys and closed rounds) in **one** partition for the 30 days, or in **30 daily** partitions; today's partition and {} days ahead are the gateway's own in both. Fresh clusters in turn, twice each way; the history vacuumed and analyzed (as autovacuum would have done day by day), the report job's fold of it waited for (and timed) and a checkpoint taken before the runs; each warmed up (5,000/s for 10 s), then 10,000/s for {step_s} s (CPU of gateway + every PostgreSQL process per callback), then {SATURATING_RATE}/s offered for {step_s} s (what is answered is the throughput). Target: 30 daily partitions not slower than one.\n", 3)?;
    writeln!(w, "| turn | history in | ledger partitions | seeding s | report fold of the history s | gateway µs/callback | PostgreSQL µs/callback | p99 ms at 10,000/s | saturated: answered/s | its p99 ms |\n|---|---|---|---|---|---|---|---|---|---|")?;
    for (turn, (daily, partitions, (seeded_s, folded_s), (gw_us, pg_us), at_10k, saturated)) in
        turns.iter().enumerate()
    {
        let layout = if *daily {
            "30 daily partitions"
        } else {
            "one partition"
        };
        writeln!(
            w,
            "| {} | {layout} | {partitions} | {seeded_s:.0} | {folded_s:.0} | {gw_us:.1} | {pg_us:.1} | {:.1} | {:.0} | {:.0} |",
            turn + 1,
            at_10k.p("p99"),
            saturated.answered_rate(),
            saturated.p("p99"),
        )?;
    }
    let mean = |daily: bool| {
        let rates: Vec<f64> = turns
            .iter()
            .filter(|t| t.0 == daily)
            .map(|t| t.5.answered_rate())
            .collect();
        rates.iter().sum::<f64>() / rates.len().max(1) as f64
    };
    let (one, thirty) = (mean(false), mean(true));
    writeln!(
        w,
        "\nSaturated throughput, mean of two: one partition {one:.0}/s, 30 daily partitions {thirty:.0}/s ({:+.1} %).",
        (thirty / one - 1.0) * 100.0
    )?;
    writeln!(w, "\nWhere PostgreSQL's time went in each saturated run (`pg_stat_statements`, the statements that took most of it in turn 1, µs per call and thousands of calls per turn):\n")?;
    writeln!(
        w,
        "| statement | {} |\n|---|{}",
        (1..=statements.len())
            .map(|t| format!("turn {t} µs | calls k"))
            .collect::<Vec<_>>()
            .join(" | "),
        "---|---|".repeat(statements.len())
    )?;
    for (query, _) in statements.first().into_iter().flatten() {
        let cells: Vec<String> = statements
            .iter()
            .map(|turn| match turn.iter().find(|(q, _)| q == query) {
                Some((_, (mean_us, calls))) => format!("{mean_us:.1} | {:.1}", calls / 1e3),
                None => "- | -".to_string(),
            })
            .collect();
        writeln!(w, "| `{query}` | {} |", cells.join(" | "))?;
    }
    Ok(w)
}
