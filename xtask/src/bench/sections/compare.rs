//! A section of `cargo xtask bench`: compare.
#![allow(clippy::float_arithmetic)] // rates and percentiles, never money

use std::fmt::Write as _;
use std::path::Path;

use crate::bench::harness::*;
use crate::bench::probes::*;

/// Turns of each build in [`compare_section`].
pub(crate) const COMPARE_TURNS: usize = 3;

/// This build against another one (and the configuration it reads): fresh clusters in turn,
/// this one first, [`COMPARE_TURNS`] each; each warmed up, run at 10,000/s (CPU of the
/// gateway and every PostgreSQL process per callback, batch sizes), then saturated. Markdown.
pub(crate) fn compare_section(
    root: &Path,
    step_s: u64,
    other_bin: &Path,
    other_config: &Path,
) -> anyhow::Result<String> {
    let builds = [
        (
            "this build",
            Path::new("target/release/gateway"),
            Path::new("config/demo.toml"),
        ),
        ("compared build", other_bin, other_config),
    ];
    let mut w = String::new();
    writeln!(
        w,
        "\n## Before/after: this build (`config/demo.toml`) and `{}` (`{}`)\n",
        other_bin.display(),
        other_config.display()
    )?;
    writeln!(w, "Each build on a fresh cluster in turn (this one first), {COMPARE_TURNS} times each: warm-up at 5,000/s for 10 s, then 10,000/s for {} s (CPU per callback over the measured part, mean commands per batch), then {SATURATING_RATE}/s offered for {step_s} s (answers that were not a 5xx, per second).\n", step_s * 2)?;
    writeln!(w, "| build | turn | achieved/s | p50 ms | p99 ms | errors | gateway µs/callback | PostgreSQL µs/callback | commands/batch | saturated: answered/s |\n|---|---|---|---|---|---|---|---|---|---|")?;
    let mut cpu_us = [Vec::new(), Vec::new()];
    let mut answered = [Vec::new(), Vec::new()];
    for turn in 0..COMPARE_TURNS * 2 {
        let which = turn % 2;
        let (label, bin, config) = builds[which];
        let gw = Gateway::start_from(bin, config, &root.join(format!("compare-{turn}")), &[])?;
        settle_down();
        loadtest(&gw, 5_000, 10, &[])?;
        let before = gw.metrics()?;
        let run = loadtest(&gw, 10_000, step_s * 2, &[])?;
        let after = gw.metrics()?;
        settle_down();
        let saturated = loadtest(&gw, SATURATING_RATE, step_s, &[])?;
        gw.stop()?;
        let per_batch = metric(&after, "wallet_batch_size_sum")
            .saturating_sub(metric(&before, "wallet_batch_size_sum"))
            as f64
            / (metric(&after, "wallet_batch_size_count")
                .saturating_sub(metric(&before, "wallet_batch_size_count"))
                .max(1)) as f64;
        let per = |party: &str| run.cpu_us_per_callback(party);
        cpu_us[which].push(per("gateway") + per("postgres"));
        answered[which].push(saturated.answered_rate());
        writeln!(
            w,
            "| {label} | {} | {} | {per_batch:.1} | {:.0} |",
            turn / 2 + 1,
            run.cpu_cells(),
            saturated.answered_rate(),
        )?;
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let (this_cpu, other_cpu) = (mean(&cpu_us[0]), mean(&cpu_us[1]));
    let (this_sat, other_sat) = (mean(&answered[0]), mean(&answered[1]));
    writeln!(w, "\n| means of {COMPARE_TURNS} | gateway + PostgreSQL µs/callback | saturated answered/s |\n|---|---|---|")?;
    writeln!(w, "| compared build | {other_cpu:.1} | {other_sat:.0} |")?;
    writeln!(
        w,
        "| this build | {this_cpu:.1} ({:+.1} %) | {this_sat:.0} ({:+.1} %) |",
        (this_cpu / other_cpu - 1.0) * 100.0,
        (this_sat / other_sat - 1.0) * 100.0
    )?;
    Ok(w)
}
