//! The ladder: rising offered rates until p99 breaks, each step repeated, the disk probed in its
//! own window before and after each step (never during it).
#![allow(clippy::float_arithmetic)] // rates and percentiles, never money

use std::path::Path;

use crate::bench::harness::*;
use crate::bench::probes::*;

/// Highest rate of `ladder` that passes; stops at the first failure past a pass.
pub(crate) fn ladder(
    gateway: &Gateway,
    ladder: &[u64],
    step_s: u64,
    extra: &[&str],
    log: &mut String,
) -> anyhow::Result<Option<(u64, Run)>> {
    ladder_many(
        &[gateway],
        PLAYERS,
        ladder,
        step_s,
        extra,
        LADDER_REPEATS,
        log,
    )
}

/// WAL the main section's cluster writes ahead (`embedded.wal_preallocate_mb`), and how.
pub(crate) const MAIN_WAL_ENV: &str = "GATEWAY__EMBEDDED__WAL_PREALLOCATE_MB";
pub(crate) const MAIN_WAL_MB: &str = "4096";

/// Runs of each step of the main ladders; a step's row and verdict are its median run's (by
/// p99), so one run that met a disk stall neither passes nor fails a step alone.
pub(crate) const LADDER_REPEATS: usize = 3;

/// The columns of a ladder's rows (see [`ladder_many`]).
pub(crate) const LADDER_HEADER: &str = "| offered/s | achieved/s | p50 ms | p99 ms | p99 ms of each run | p99.9 ms | max ms | errors | disk sync just before and after each run: p99 / max ms, writes over 50 ms | verdict |\n|---|---|---|---|---|---|---|---|---|---|";

/// Seconds the disk is probed before and after each ladder run, in a window of its own: a
/// probe beside the run would add as many fsyncs as the lanes' own commits and measure itself.
pub(crate) const PROBE_WINDOW_S: u64 = 2;

/// [`ladder`] over several gateways on one database, addressing `players`: each step run
/// `repeats` times, the disk probed ([`disk_probe`]) for `PROBE_WINDOW_S` just before and just
/// after each run, never beside it (a step whose windows met a sync over 50 ms is marked), the
/// step judged on its median run by p99.
pub(crate) fn ladder_many(
    gateways: &[&Gateway],
    players: u32,
    ladder: &[u64],
    step_s: u64,
    extra: &[&str],
    repeats: usize,
    log: &mut String,
) -> anyhow::Result<Option<(u64, Run)>> {
    let probe_dir = gateways[0]
        .socket_dir
        .parent()
        .unwrap_or(Path::new("target"))
        .join("probe");
    let mut best = None;
    let mut failures = 0;
    for &rate in ladder {
        let mut runs = Vec::new();
        let mut probes = Vec::new();
        for _ in 0..repeats.max(1) {
            probes.push(disk_probe(&probe_dir, PROBE_WINDOW_S)?);
            runs.push(loadtest_many(gateways, players, rate, step_s, extra)?);
            probes.push(disk_probe(&probe_dir, PROBE_WINDOW_S)?);
        }
        let each: Vec<String> = runs.iter().map(|r| format!("{:.1}", r.p("p99"))).collect();
        let disk_p99 = probes.iter().map(|p| p.p99_ms).fold(0.0, f64::max);
        let disk_max = probes.iter().map(|p| p.max_ms).fold(0.0, f64::max);
        let stalls: usize = probes.iter().map(|p| p.over_50ms).sum();
        runs.sort_by(|a, b| a.p("p99").total_cmp(&b.p("p99")));
        let run = runs.swap_remove(runs.len() / 2);
        let verdict = match (run.passes(), stalls > 0) {
            (true, _) => "pass",
            (false, true) => "fail (disk stall)",
            (false, false) => "fail",
        };
        let line = format!(
            "| {rate} | {:.0} | {:.2} | {:.2} | {} | {:.2} | {:.2} | {} | {disk_p99:.1} / {disk_max:.0}, {stalls} | {verdict} |",
            run.achieved(),
            run.p("p50"),
            run.p("p99"),
            each.join(", "),
            run.p("p99.9"),
            run.p("max"),
            run.errors()
        );
        eprintln!("bench: {line}");
        log.push_str(&line);
        log.push('\n');
        if run.passes() {
            best = Some((rate, run));
            failures = 0;
        } else {
            // One noisy step does not end the ladder; two failing steps in a row do.
            failures += 1;
            if failures == 2 {
                break;
            }
        }
    }
    Ok(best)
}
