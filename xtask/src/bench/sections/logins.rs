//! A section of `cargo xtask bench`: logins.
#![allow(clippy::float_arithmetic)] // rates and percentiles, never money

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::Context;
use serde_json::Value;

use crate::bench::harness::*;
use crate::bench::ladder::*;

/// Callbacks offered while REST logins run beside them.
pub(crate) const CALLBACKS_BESIDE_LOGINS: u64 = 5_000;

/// The REST module's logins: the Argon2id-bound login rate (one hashing slot, so hashing never
/// takes more than one of the two cores), then callbacks at 5,000/s alone, with logins running
/// beside them, and alone again (the spread of the two alone runs is the noise). Markdown.
pub(crate) fn logins_section(root: &Path, step_s: u64) -> anyhow::Result<String> {
    let env = [
        ("GATEWAY__REST__RATE_LIMITS__LOGIN_PER_IP", "1000000000"),
        (
            "GATEWAY__REST__RATE_LIMITS__LOGIN_PER_ACCOUNT",
            "1000000000",
        ),
        ("GATEWAY__REST__HASH_CONCURRENCY", "1"),
    ];
    let gw = Gateway::start(&root.join("logins"), &env)?;
    settle_down();
    loadtest(&gw, CALLBACKS_BESIDE_LOGINS, 20, &[])?;
    let logins_args = ["--mode", "logins", "--connections", "64"];
    let mut login_log = String::new();
    let best = ladder(
        &gw,
        &[10, 20, 40, 60, 80, 120],
        step_s,
        &logins_args,
        &mut login_log,
    )?;
    let best_logins = best.as_ref().map_or(0, |(r, _)| *r);
    let beside = (best_logins / 2).max(10);
    let duration = step_s * 2;
    let alone = loadtest(&gw, CALLBACKS_BESIDE_LOGINS, duration, &[])?;
    // The login generator runs over the whole callback run (its 3 s warm-up included).
    let login_child = Command::new("target/release/loadtest")
        .args([
            "--target",
            &gw.url,
            "--json",
            "--players",
            &PLAYERS.to_string(),
        ])
        .args([
            "--rate",
            &beside.to_string(),
            "--duration",
            &(duration + 2).to_string(),
        ])
        .args(["--warmup", "3"])
        .args(logins_args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("start the login generator")?;
    let with_logins = loadtest(&gw, CALLBACKS_BESIDE_LOGINS, duration, &[])?;
    let login_out = login_child.wait_with_output()?;
    let login_report: Value = serde_json::from_slice(&login_out.stdout).context("login JSON")?;
    let alone_again = loadtest(&gw, CALLBACKS_BESIDE_LOGINS, duration, &[])?;
    gw.stop()?;

    let mut w = String::new();
    writeln!(w, "\n## REST logins beside callbacks\n")?;
    writeln!(w, "`POST /api/auth/login` of random demo players: Argon2id (m = 19 MiB, t = 2, p = 1) with `rest.hash_concurrency = 1`, so hashing never holds more than one of the two cores. Login rate ladder ({step_s} s a step; pass: all answered, no 5xx, p99 <= {P99_MAX_MS} ms):\n")?;
    writeln!(
        w,
        "{}",
        LADDER_HEADER.replacen("offered/s", "logins/s offered", 1)
    )?;
    w.push_str(&login_log);
    writeln!(w, "\nHighest login rate passing: {best_logins}/s.\n")?;
    writeln!(w, "Callbacks at {CALLBACKS_BESIDE_LOGINS}/s for {duration} s on the same gateway: alone, with {beside} logins/s beside them, alone again.\n")?;
    writeln!(w, "| run | achieved/s | p50 ms | p99 ms | p99.9 ms | errors | gateway + PostgreSQL CPU µs per callback |\n|---|---|---|---|---|---|---|")?;
    for (label, run) in [
        ("alone", &alone),
        ("with logins", &with_logins),
        ("alone again", &alone_again),
    ] {
        let cpu =
            run.cpu_s.get("gateway").unwrap_or(&0.0) + run.cpu_s.get("postgres").unwrap_or(&0.0);
        let per = cpu / (run.achieved() * run.wall_s).max(1.0) * 1e6;
        writeln!(
            w,
            "| {label} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {per:.0} |",
            run.achieved(),
            run.p("p50"),
            run.p("p99"),
            run.p("p99.9"),
            run.errors()
        )?;
    }
    let lp = |q: &str| {
        login_report["latency_ms"][q]
            .as_f64()
            .unwrap_or(f64::INFINITY)
    };
    writeln!(
        w,
        "\nThe logins meanwhile: achieved {:.1}/s, p50 {:.1} ms, p99 {:.1} ms, answers {}. (The CPU per callback with logins running includes the gateway's hashing.)",
        login_report["achieved_rate"].as_f64().unwrap_or(0.0),
        lp("p50"),
        lp("p99"),
        login_report["statuses"]
    )?;
    Ok(w)
}
