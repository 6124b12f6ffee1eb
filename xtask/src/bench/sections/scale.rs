//! A section of `cargo xtask bench`: scale.
#![allow(clippy::float_arithmetic)] // rates and percentiles, never money

use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use crate::bench::harness::*;
use crate::bench::ladder::*;
use crate::bench::seed::*;

/// Ledger rows of history for the scale section.
pub(crate) const SCALE_ROWS: u64 = 10_000_000;

/// The write path with data: the same ladder and saturated run on a fresh cluster with an
/// empty ledger, then on one holding [`SCALE_ROWS`] rows of history (30 daily partitions, with
/// keys and closed rounds, vacuumed, folded by the report job, checkpointed). Target: the
/// throughput with data within 10 % of the empty ledger's. Markdown.
pub(crate) fn scale_section(root: &Path, step_s: u64) -> anyhow::Result<String> {
    let rates = [5_000, 7_500, 10_000, 12_500, 15_000, 17_500, 20_000];
    let mut turns = Vec::new();
    for (turn, rows) in [0, SCALE_ROWS].into_iter().enumerate() {
        let gw = Gateway::start(&root.join(format!("scale-{turn}")), &[])?;
        let seeding = Instant::now();
        if rows > 0 {
            psql(&gw, &history_partitions_sql(30, true))?;
            // Ten slices, oldest first: no statement holds the whole history at once.
            let slices = 10;
            for slice in 0..slices {
                let (first, last) = (slice * rows / slices, (slice + 1) * rows / slices);
                psql(&gw, &seed_ledger_sql(first, last, rows, 30))?;
            }
            psql(&gw, "VACUUM (ANALYZE)")?;
            wait_for_rollups(&gw)?;
            psql(&gw, "CHECKPOINT")?;
        }
        let prepared_s = seeding.elapsed().as_secs_f64();
        let size = psql(
            &gw,
            "SELECT count(*) || ' rows, ' || pg_size_pretty(
                 (SELECT sum(pg_total_relation_size(relid))
                  FROM pg_partition_tree('transactions')))
             FROM transactions",
        )?;
        settle_down();
        loadtest(&gw, 5_000, 10, &[])?;
        let mut log = String::new();
        let best = ladder_many(&[&gw], PLAYERS, &rates, step_s, &[], 1, &mut log)?;
        settle_down();
        let saturated = loadtest(&gw, SATURATING_RATE, step_s, &[])?;
        gw.stop()?;
        turns.push(ScaleTurn {
            rows,
            prepared_s,
            size,
            best,
            ladder_log: log,
            saturated,
        });
    }
    let mut w = String::new();
    writeln!(w, "\n## The write path with {SCALE_ROWS} ledger rows\n")?;
    writeln!(w, "The same runs on a fresh cluster with an empty ledger, then on one holding {SCALE_ROWS} ledger rows of history (bets and wins of {PLAYERS} players over 30 days in 30 daily partitions, with their keys and closed rounds; seeded by `INSERT ... generate_series` in ten slices, vacuumed and analyzed, folded by the report job, checkpointed): warmed up (5,000/s for 10 s), a ladder of {step_s} s steps (one run a step, the disk probed for 2 s just before and after each run, never beside it; pass: all answered, no 5xx, p99 <= {P99_MAX_MS} ms), then {SATURATING_RATE}/s offered for {step_s} s. Target: throughput with the history within 10 % of the empty ledger's.\n")?;
    writeln!(w, "| ledger before the runs | seeding, vacuum and fold s | highest passing | its p99 ms | saturated: answered/s | its p99 ms |\n|---|---|---|---|---|---|")?;
    for turn in &turns {
        let (rate, p99) = turn
            .best
            .as_ref()
            .map_or((0, f64::NAN), |(r, run)| (*r, run.p("p99")));
        writeln!(
            w,
            "| {} | {:.0} | {rate}/s | {p99:.1} | {:.0} | {:.0} |",
            turn.size,
            turn.prepared_s,
            turn.saturated.answered_rate(),
            turn.saturated.p("p99"),
        )?;
    }
    let saturated: Vec<f64> = turns.iter().map(|t| t.saturated.answered_rate()).collect();
    writeln!(
        w,
        "\nSaturated throughput with the history: {:+.1} % of the empty ledger's.",
        (saturated[1] / saturated[0].max(1.0) - 1.0) * 100.0
    )?;
    for turn in &turns {
        writeln!(w, "\nLadder, {} rows of history:\n", turn.rows)?;
        writeln!(w, "{LADDER_HEADER}")?;
        w.push_str(&turn.ladder_log);
    }
    Ok(w)
}

/// One turn of [`scale_section`].
pub(crate) struct ScaleTurn {
    /// Ledger rows of history seeded before the runs.
    pub(crate) rows: u64,
    /// Seconds spent seeding, vacuuming, folding and checkpointing.
    pub(crate) prepared_s: f64,
    /// The ledger's rows and size on disk, as text.
    pub(crate) size: String,
    pub(crate) best: Option<(u64, Run)>,
    pub(crate) ladder_log: String,
    pub(crate) saturated: Run,
}
