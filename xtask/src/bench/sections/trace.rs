//! A section of `cargo xtask bench`: trace.
#![allow(clippy::float_arithmetic)] // rates and percentiles, never money

use std::fmt::Write as _;
use std::path::Path;

use crate::bench::harness::*;
use crate::bench::ladder::*;
use crate::bench::probes::*;

/// The rate the trace's cost is measured at (CPU per callback, turn by turn).
pub(crate) const TRACE_RATE: u64 = 10_000;

/// What keeping raw callbacks costs (`trace.enabled`): fresh clusters in turn, off and on three
/// times (the saturated rate moves by a few per cent from run to run), each warmed up and then run at 10,000/s (CPU per callback of gateway + PostgreSQL, the trace
/// writer's connection included) and then saturated (throughput); then a rate ladder each way.
/// Markdown.
pub(crate) fn trace_section(root: &Path, step_s: u64) -> anyhow::Result<String> {
    let mut turns = Vec::new();
    for (turn, on) in [false, true, false, true, false, true]
        .into_iter()
        .enumerate()
    {
        let flag = if on { "true" } else { "false" };
        let gw = Gateway::start(
            &root.join(format!("trace-{turn}")),
            &[("GATEWAY__TRACE__ENABLED", flag)],
        )?;
        settle_down();
        loadtest(&gw, 5_000, 10, &[])?;
        let before = gw.metrics()?;
        let wal_before = wal_lsn(&gw)?;
        let run = loadtest(&gw, TRACE_RATE, step_s * 2, &[])?;
        let wal = wal_lsn(&gw)?.saturating_sub(wal_before);
        let after = gw.metrics()?;
        let answered = metric(&after, "wallet_callback_seconds_count")
            .saturating_sub(metric(&before, "wallet_callback_seconds_count"));
        let kept = metric(&after, "wallet_trace_records_total")
            .saturating_sub(metric(&before, "wallet_trace_records_total"));
        let dropped = metric(&after, "wallet_trace_dropped_total{reason=\"queue_full\"}")
            + metric(&after, "wallet_trace_dropped_total{reason=\"storage\"}");
        settle_down();
        let saturated = loadtest(&gw, SATURATING_RATE, step_s * 2, &[])?;
        gw.stop()?;
        let wal_per_callback = wal as f64 / answered.max(1) as f64;
        turns.push((on, run, kept, dropped, wal_per_callback, saturated));
    }
    let mut ladders = Vec::new();
    for on in [false, true] {
        let flag = if on { "true" } else { "false" };
        let gw = Gateway::start(
            &root.join(format!("trace-ladder-{flag}")),
            &[("GATEWAY__TRACE__ENABLED", flag)],
        )?;
        settle_down();
        loadtest(&gw, 5_000, 20, &[])?;
        let mut log = String::new();
        let best = ladder(
            &gw,
            &[
                6_000, 7_000, 8_000, 9_000, 10_000, 11_000, 12_000, 13_000, 14_000,
            ],
            step_s,
            &[],
            &mut log,
        )?;
        gw.stop()?;
        ladders.push((on, best.map_or(0, |(r, _)| r), log));
    }

    let mut w = String::new();
    writeln!(
        w,
        "\n## Keeping raw callbacks for trace and replay (`trace.enabled`)\n"
    )?;
    writeln!(w, "Every callback that names a transaction is kept (bytes and headers as received, the answer, batch and timings) by one writer off the commit path, as zstd-compressed segments of up to `trace.batch_len_max` records gathered for up to `trace.linger_ms` (one row each; a first application is found by time, only retries, refusals and replays are GIN-indexed by transaction key). Fresh clusters in turn (off, on, three times), each warmed up at 5,000/s, then {TRACE_RATE}/s for {} s; CPU of the gateway and every PostgreSQL process (the writer's connection included) per answered callback.\n", step_s * 2)?;
    writeln!(w, "| trace | achieved/s | p50 ms | p99 ms | errors | gateway µs/callback | PostgreSQL µs/callback | total µs/callback | WAL bytes/callback | records kept | dropped |\n|---|---|---|---|---|---|---|---|---|---|---|")?;
    let mut totals = [Vec::new(), Vec::new()];
    let mut saturated = [Vec::new(), Vec::new()];
    for (on, run, kept, dropped, wal, saturating) in &turns {
        saturated[*on as usize].push(saturating);
        let per = |party: &str| run.cpu_us_per_callback(party);
        let total = per("gateway") + per("postgres");
        totals[*on as usize].push(total);
        writeln!(
            w,
            "| {} | {} | {total:.1} | {wal:.0} | {kept} | {dropped} |",
            if *on { "on" } else { "off" },
            run.cpu_cells(),
        )?;
    }
    let mean = |v: &Vec<f64>| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let (off, on) = (mean(&totals[0]), mean(&totals[1]));
    // On a CPU-bound box the rate is inversely proportional to the CPU per callback.
    let cost = 100.0 * (1.0 - off / on.max(1e-9));
    writeln!(w, "\nMean CPU per callback: off {off:.1} µs, on {on:.1} µs: keeping raw callbacks costs {cost:.1} % of the throughput the CPU allows (target: at most 10 %).\n")?;
    writeln!(w, "Throughput: the same gateways, each then offered {SATURATING_RATE}/s for {} s (more than two cores settle), counting answers that were not a 5xx:\n", step_s * 2)?;
    writeln!(
        w,
        "| trace | answered/s | 5xx | p50 ms | p99 ms |\n|---|---|---|---|---|"
    )?;
    for (on, .., run) in &turns {
        writeln!(
            w,
            "| {} | {:.0} | {} | {:.1} | {:.1} |",
            if *on { "on" } else { "off" },
            run.answered_rate(),
            run.count("5"),
            run.p("p50"),
            run.p("p99"),
        )?;
    }
    let mean_rate =
        |v: &Vec<&Run>| v.iter().map(|r| r.answered_rate()).sum::<f64>() / v.len().max(1) as f64;
    let (rate_off, rate_on) = (mean_rate(&saturated[0]), mean_rate(&saturated[1]));
    writeln!(w, "\nMean throughput: off {rate_off:.0}/s, on {rate_on:.0}/s: keeping raw callbacks costs {:.1} % of it (target: at most 10 %). Latency under overload is the queue's, not a service level.\n", 100.0 * (1.0 - rate_on / rate_off.max(1e-9)))?;
    for (on, best, log) in &ladders {
        writeln!(
            w,
            "Rate ladder with trace {} ({step_s} s a run, {LADDER_REPEATS} runs a step, median by p99; highest passing: {best}/s):\n",
            if *on { "on" } else { "off" }
        )?;
        writeln!(w, "{LADDER_HEADER}")?;
        w.push_str(log);
        w.push('\n');
    }
    let (best_off, best_on) = (ladders[0].1, ladders[1].1);
    if best_off > 0 {
        writeln!(w, "Highest passing rate: off {best_off}/s, on {best_on}/s ({:+.1} %; one ladder each way).", 100.0 * (best_on as f64 / best_off as f64 - 1.0))?;
    }
    Ok(w)
}
