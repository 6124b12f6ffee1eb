//! A section of `cargo xtask bench`: reports.
#![allow(clippy::float_arithmetic)] // rates and percentiles, never money

use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use crate::bench::harness::*;
use crate::bench::seed::*;

/// Ledger rows seeded for the reports section.
pub(crate) const REPORT_ROWS: u64 = 10_000_000;

/// The back office's reports over a ledger of 10,000,000 rows: seeded in ten slices (bets and
/// wins of the demo provider over the last 30 days, 50 games, every demo player), each folded
/// into the rollups by the gateway's own job before the next; then `loadtest --mode reports`
/// asks every report by day, provider and game in turn over HTTP. Markdown.
pub(crate) fn reports_section(root: &Path, step_s: u64) -> anyhow::Result<String> {
    let gw = Gateway::start(
        &root.join("reports"),
        &[("GATEWAY__REST__REPORT_FOLD_INTERVAL_S", "1")],
    )?;
    psql(&gw, &history_partitions_sql(30, true))?;
    // Seeded in slices of a tenth, oldest first, each folded before the next is written: the
    // job then folds rows still in memory, as it does in service (every few seconds), rather
    // than a cold backlog of the whole table.
    let slices = 10;
    let per_slice = REPORT_ROWS / slices;
    let (mut seeded_s, mut folded_s) = (0.0, 0.0);
    for slice in 0..slices {
        let seeding = Instant::now();
        psql(
            &gw,
            &seed_ledger_sql(slice * per_slice, (slice + 1) * per_slice, REPORT_ROWS, 30),
        )?;
        // As after any bulk load: statistics first, so the fold's plan knows the table's size.
        psql(&gw, "ANALYZE transactions")?;
        seeded_s += seeding.elapsed().as_secs_f64();
        let folding = Instant::now();
        wait_for_rollups(&gw)?;
        folded_s += folding.elapsed().as_secs_f64();
    }
    let rows: u64 = psql(&gw, "SELECT count(*) FROM transactions")?.parse()?;
    let sets = psql(
        &gw,
        "SELECT count(*) || ' sets of players, ' || pg_size_pretty(sum(octet_length(players)))
         FROM report_player_sets",
    )?;
    // Each report on its own, a request a second over 4 connections (a report that takes
    // seconds still gets answered within the run), by day, provider and game in turn.
    let mut runs = Vec::new();
    for report in ["ggr", "rtp", "rounds", "players"] {
        let run = loadtest_many(
            &[&gw],
            PLAYERS,
            1,
            step_s,
            &[
                "--mode",
                "reports",
                "--reports",
                report,
                "--connections",
                "4",
            ],
        )?;
        runs.push((report, run));
    }
    gw.stop()?;

    let mut w = String::new();
    writeln!(w, "\n## Reports over {rows} ledger rows\n")?;
    writeln!(w, "{REPORT_ROWS} ledger rows (bets and wins of the demo provider over the last 30 days, 50 games, {PLAYERS} players, with their keys and rounds, in 30 daily partitions) seeded by `INSERT ... generate_series` in ten slices, oldest first ({seeded_s:.0} s of inserts and `ANALYZE`), each folded into the rollups by the gateway's own job (every second here, `rest.report_fold_interval_s`) before the next ({folded_s:.0} s of folding in all). Then `loadtest --mode reports --reports NAME`: a request a second for {step_s} s over 4 connections, the report of the last 30 days by day, provider and game in turn, over HTTP with an admin token. Target: under 200 ms. Active players: {sets} (one per day, provider and game).\n")?;
    writeln!(
        w,
        "| report | requests | p50 ms | p99 ms | max ms | answers |\n|---|---|---|---|---|---|"
    )?;
    for (report, run) in &runs {
        writeln!(
            w,
            "| {report} | {} | {:.2} | {:.2} | {:.2} | {} |",
            run.report["completed"],
            run.p("p50"),
            run.p("p99"),
            run.p("max"),
            run.report["statuses"]
        )?;
    }
    Ok(w)
}
