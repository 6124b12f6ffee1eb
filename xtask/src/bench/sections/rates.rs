//! `cargo xtask bench --only rates`: the rates a provider with a bounded pool of keep-alive
//! connections gets. A ladder with 128 connections from 10,000/s up, 15,000/s held a minute,
//! and 10,000/s over 64 connections; each run with the gateway's and PostgreSQL's CPU per
//! callback and the service time (request sent to answer read), so a batch's latency shows
//! as the ceiling it puts on a pool: 128 connections answered in 6.4 ms each carry 20,000/s.
#![allow(clippy::float_arithmetic)] // rates and percentiles, never money

use std::fmt::Write as _;
use std::path::Path;

use crate::bench::harness::*;
use crate::bench::ladder::*;

/// The pool the ladder and the held run use, and the smaller one.
const CONNECTIONS: &str = "128";
const FEW_CONNECTIONS: &str = "64";
const RATES: [u64; 6] = [10_000, 12_500, 15_000, 17_500, 20_000, 22_500];
const HELD_RATE: u64 = 15_000;
const HELD_S: u64 = 60;
const FEW_RATE: u64 = 10_000;

pub(crate) fn rates_section(root: &Path, step_s: u64) -> anyhow::Result<String> {
    let gw = Gateway::start(&root.join("rates"), &[(MAIN_WAL_ENV, MAIN_WAL_MB)])?;
    settle_down();
    // Unmeasured warm-up: buffer cache, autovacuum of the fresh tables, the dedup index.
    loadtest(&gw, 5_000, 30, &["--connections", CONNECTIONS])?;
    let pool = ["--connections", CONNECTIONS];
    let mut log = String::new();
    let best = ladder(&gw, &RATES, step_s, &pool, &mut log)?;
    settle_down();
    let held = loadtest(&gw, HELD_RATE, HELD_S, &pool)?;
    settle_down();
    let few = loadtest(&gw, FEW_RATE, step_s, &["--connections", FEW_CONNECTIONS])?;
    gw.stop()?;

    let mut out = String::new();
    writeln!(
        out,
        "\n## Rates over a bounded pool of connections\n\nOne gateway (`config/demo.toml`'s \
         settings, the bench's {PLAYERS} players, {MAIN_WAL_MB} MB of WAL written ahead), \
         warmed up at 5,000/s for 30 s. The ladder: {step_s} s a run, {LADDER_REPEATS} runs a \
         step over {CONNECTIONS} keep-alive connections, the disk probed in windows of its own \
         before and after each run; a step passes with every request answered, no 5xx and p99 \
         ≤ {P99_MAX_MS:.0} ms. A pool of N connections answered in t ms each carries at most \
         N/t requests a second, so the service time sets the ceiling.\n"
    )?;
    writeln!(out, "{LADDER_HEADER}")?;
    out.push_str(&log);
    writeln!(
        out,
        "\nHighest passing step: {}.\n",
        best.map_or("none".to_string(), |(rate, _)| format!("{rate}/s"))
    )?;
    writeln!(
        out,
        "| run | connections | achieved/s | p50 ms | p99 ms | errors | gateway µs/cb | PostgreSQL µs/cb | service p50 ms | service p99 ms | verdict |\n|---|---|---|---|---|---|---|---|---|---|---|"
    )?;
    for (what, connections, run) in [
        (format!("{HELD_RATE}/s held {HELD_S} s"), CONNECTIONS, &held),
        (
            format!("{FEW_RATE}/s for {step_s} s"),
            FEW_CONNECTIONS,
            &few,
        ),
    ] {
        writeln!(
            out,
            "| {what} | {connections} | {} | {:.2} | {:.2} | {} |",
            run.cpu_cells(),
            service_ms(run, "p50"),
            service_ms(run, "p99"),
            if run.passes() { "pass" } else { "**fail**" }
        )?;
    }
    Ok(out)
}

/// Request sent to answer read, without the wait for a free connection.
fn service_ms(run: &Run, q: &str) -> f64 {
    run.report["service_ms"][q].as_f64().unwrap_or(f64::NAN)
}
