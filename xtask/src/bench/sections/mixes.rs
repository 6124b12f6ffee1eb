//! `cargo xtask bench --only mixes`: the gateway as an operator meets it. Every traffic mix of
//! `loadtest --mix` on a **fresh** database (a new data folder, the demo's 1,000 players), taken
//! straight to the offered rate with no warm-up, three fresh starts each; then offered load
//! above capacity, a day's partition that starts receiving rows mid-run, and a soak. The disk
//! is probed in windows of its own before and after each run, never beside it.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use anyhow::Context;

use crate::bench::harness::*;
use crate::bench::probes::*;

/// Offered rate of each mix, from the first request.
const RATE: u64 = 9_000;
/// Seconds of each mix's run.
const RUN_S: u64 = 20;
/// Fresh starts per mix (the median is judged).
const TURNS: usize = 3;
/// The demo's own players: every call lands on one of them, as on a demo gateway.
const PLAYERS: u32 = 1_000;
const MIXES: [&str; 6] = [
    "bet-win",
    "round-only",
    "multi-bet",
    "refunds",
    "retries-heavy",
    "every-dialect",
];
/// Targets: achieved at least this share of offered, p99 at most this.
const ACHIEVED_MIN: f64 = 0.95;
const P99_MAX_MS: f64 = 100.0;
/// Offered to find the capacity (far above it), and the overload's multiple of it.
const SATURATING: u64 = 25_000;
const OVERLOAD: f64 = 1.5;
/// The day's rollover: rate, run length, and when the new partition begins (after the split).
const ROLLOVER_RATE: u64 = 7_500;
const ROLLOVER_S: u64 = 180;
const ROLLOVER_AFTER_S: u64 = 75;
/// The soak: rate, and its length unless `WALLET_BENCH_SOAK_S` says otherwise.
const SOAK_RATE: u64 = 5_000;
const SOAK_S: u64 = 1_800;

pub(crate) fn section(root: &Path, _step_s: u64) -> anyhow::Result<String> {
    let mut out = String::new();
    writeln!(
        out,
        "\n## Traffic mixes from a fresh database\n\nEach mix of `loadtest --mix` (see the \
         README) against a gateway started on a new data folder with `config/demo.toml` (its \
         {PLAYERS} players), taken straight to {RATE}/s for {RUN_S} s with no warm-up; \
         {TURNS} fresh starts per mix. CPU is µs per answered callback over the run, the \
         gateway process and every PostgreSQL process apart. The disk is probed for 2 s \
         (1,000 synced 8 KiB writes a second) before and after each run, in a window of its \
         own. Target: achieved ≥ {:.0} % of offered and p99 ≤ {P99_MAX_MS:.0} ms, median of \
         the {TURNS} starts. `every-dialect` sends 4 % of its calls as the Hub88-style provider \
         (signed before the clock starts), the rest evenly as the other four.\n",
        ACHIEVED_MIN * 100.0
    )?;
    writeln!(out, "| mix | start | achieved/s | p50 ms | p99 ms | max ms | errors | gateway µs/cb | PostgreSQL µs/cb | disk before: max ms, writes > 50 ms | disk after |\n|---|---|---|---|---|---|---|---|---|---|---|")?;
    let mut summary = String::from(
        "| mix | achieved/s (median) | p99 ms (median) | p99 of each start | gateway µs/cb | PostgreSQL µs/cb | verdict |\n|---|---|---|---|---|---|---|\n",
    );
    for mix in MIXES {
        let mut runs = Vec::new();
        for turn in 1..=TURNS {
            let (run, before, after) = fresh_run(root, mix, turn)?;
            writeln!(
                out,
                "| {mix} | {turn} | {:.0} | {:.2} | {:.2} | {:.1} | {} | {:.1} | {:.1} | {} | {} |",
                run.achieved(),
                run.p("p50"),
                run.p("p99"),
                run.p("max"),
                run.errors(),
                run.cpu_us_per_callback("gateway"),
                run.cpu_us_per_callback("postgres"),
                disk_cell(&before),
                disk_cell(&after),
            )?;
            runs.push(run);
        }
        let achieved = median(runs.iter().map(Run::achieved));
        let p99 = median(runs.iter().map(|r| r.p("p99")));
        let each: Vec<String> = runs.iter().map(|r| format!("{:.1}", r.p("p99"))).collect();
        let passes = achieved >= ACHIEVED_MIN * RATE as f64 && p99 <= P99_MAX_MS;
        writeln!(
            summary,
            "| {mix} | {achieved:.0} | {p99:.2} | {} | {:.1} | {:.1} | {} |",
            each.join(", "),
            median(runs.iter().map(|r| r.cpu_us_per_callback("gateway"))),
            median(runs.iter().map(|r| r.cpu_us_per_callback("postgres"))),
            if passes { "pass" } else { "**fail**" }
        )?;
    }
    writeln!(out, "\nBy mix:\n\n{summary}")?;
    out.push_str(&overload(root)?);
    out.push_str(&rollover(root)?);
    out.push_str(&soak(root)?);
    Ok(out)
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn disk_cell(probe: &DiskProbe) -> String {
    format!("{:.1}, {}", probe.max_ms, probe.over_50ms)
}

/// A gateway on a new data folder, the mix at `RATE` from its first request, the disk probed
/// before and after. The folder is deleted (and the deletion written out) afterwards.
fn fresh_run(root: &Path, mix: &str, turn: usize) -> anyhow::Result<(Run, DiskProbe, DiskProbe)> {
    let dir = root.join(format!("mix-{mix}-{turn}"));
    let _ = std::fs::remove_dir_all(&dir);
    let before = disk_probe(root, 2)?;
    let gw = Gateway::start(&dir, &[("GATEWAY__DEMO__PLAYERS", "1000")])?;
    let run = loadtest_from(&[&gw], PLAYERS, RATE, RUN_S, 0, &["--mix", mix]);
    gw.stop()?;
    let after = disk_probe(root, 2)?;
    let _ = std::fs::remove_dir_all(&dir);
    let _ = Command::new("sync").status();
    let run = run.with_context(|| format!("mix {mix}, start {turn}"))?;
    eprintln!(
        "bench: mix {mix} start {turn}: {:.0}/s, p99 {:.1} ms",
        run.achieved(),
        run.p("p99")
    );
    Ok((run, before, after))
}

/// The capacity (answered, not refused, at far more than it offered), then 1.5 times it
/// offered for 30 s: what is answered must stay near the capacity, every refusal must be the
/// retryable one, and the wallets must match their ledger afterwards.
fn overload(root: &Path) -> anyhow::Result<String> {
    let dir = root.join("overload");
    let gw = Gateway::start(&dir, &[("GATEWAY__DEMO__PLAYERS", "1000")])?;
    let saturated = loadtest_from(&[&gw], PLAYERS, SATURATING, RUN_S, 3, &["--mix", "bet-win"])?;
    let capacity = saturated.answered_rate();
    let offered = (capacity * OVERLOAD) as u64;
    let over = loadtest_from(&[&gw], PLAYERS, offered, 30, 0, &["--mix", "bet-win"])?;
    let reconcile = Command::new("target/release/gateway")
        .args(["--config", "config/demo.toml", "--data-dir"])
        .arg(&dir)
        .arg("reconcile")
        .env_remove("DATABASE_URL")
        .output()
        .context("gateway reconcile")?;
    gw.stop()?;
    let _ = std::fs::remove_dir_all(&dir);
    let refusals: Vec<String> = over.report["statuses"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| k.starts_with('5'))
                .map(|(k, v)| format!("{k}: {v}"))
                .collect()
        })
        .unwrap_or_default();
    let only_retryable = refusals
        .iter()
        .all(|r| r.starts_with("503 TEMPORARY_ERROR"));
    let held = over.answered_rate() >= 0.9 * capacity;
    let mut out = String::new();
    writeln!(
        out,
        "\n### Above capacity\n\nA fresh gateway (bet-win): {SATURATING}/s offered for {RUN_S} s \
         finds the capacity (answers that are not a refusal, per second); then {OVERLOAD}x that \
         offered for 30 s from a standing start. Target: answered ≥ 90 % of the capacity, \
         every refusal `503 TEMPORARY_ERROR`, `gateway reconcile` exit 0 afterwards.\n"
    )?;
    writeln!(out, "| run | offered/s | answered/s | p50 ms | p99 ms | refusals | gateway µs/cb | PostgreSQL µs/cb |\n|---|---|---|---|---|---|---|---|")?;
    for (name, rate, run) in [
        ("capacity", SATURATING, &saturated),
        ("overload", offered, &over),
    ] {
        writeln!(
            out,
            "| {name} | {rate} | {:.0} | {:.2} | {:.2} | {} | {:.1} | {:.1} |",
            run.answered_rate(),
            run.p("p50"),
            run.p("p99"),
            run.count("5"),
            run.cpu_us_per_callback("gateway"),
            run.cpu_us_per_callback("postgres"),
        )?;
    }
    writeln!(
        out,
        "\nOverload answered {:.0} % of the capacity ({}); refusals: {}; `gateway reconcile` \
         exit {} ({}).",
        100.0 * over.answered_rate() / capacity.max(1.0),
        if held { "pass" } else { "**fail**" },
        match (refusals.is_empty(), only_retryable) {
            (true, _) => "none (the generator's connections bound what is in flight, and \
                          the gateway answered all of it)"
                .to_string(),
            (false, true) => format!("{} (all retryable)", refusals.join(", ")),
            (false, false) => format!("{} (**not all retryable**)", refusals.join(", ")),
        },
        reconcile.status.code().unwrap_or(-1),
        if reconcile.status.success() {
            "no drift"
        } else {
            "**drift or failure**"
        },
    )?;
    Ok(out)
}

/// A new day's partition that starts receiving rows mid-run: today's partition is cut short
/// `ROLLOVER_AFTER_S` seconds ahead and a new, empty, never analyzed one takes the rest of the
/// day, so the lanes meet exactly what midnight brings them. Round-only (the most
/// plan-sensitive path: open bets of a round found by the round).
fn rollover(root: &Path) -> anyhow::Result<String> {
    let dir = root.join("rollover");
    let gw = Gateway::start(&dir, &[("GATEWAY__DEMO__PLAYERS", "1000")])?;
    let split = format!(
        "DO $$
         DECLARE
             day timestamptz := date_trunc('day', now(), 'UTC');
             cut timestamptz := now() + interval '{ROLLOVER_AFTER_S} seconds';
             part text := 'transactions_p' || to_char(now() AT TIME ZONE 'UTC', 'YYYYMMDD');
         BEGIN
             EXECUTE format('ALTER TABLE transactions DETACH PARTITION %I', part);
             EXECUTE format('ALTER TABLE transactions ATTACH PARTITION %I
                             FOR VALUES FROM (%L) TO (%L)', part, day, cut);
             EXECUTE format('CREATE TABLE %I PARTITION OF transactions
                             FOR VALUES FROM (%L) TO (%L) WITH (fillfactor = 90)',
                            part || '_rollover', cut, day + interval '1 day');
         END $$"
    );
    psql(&gw, &split).context("split today's partition")?;
    let run = loadtest_from(
        &[&gw],
        PLAYERS,
        ROLLOVER_RATE,
        ROLLOVER_S,
        0,
        &["--mix", "round-only", "--timeline"],
    )?;
    let new_rows = psql(
        &gw,
        "SELECT count(*) FROM transactions WHERE tableoid::regclass::text LIKE '%_rollover'",
    )?;
    gw.stop()?;
    let _ = std::fs::remove_dir_all(&dir);
    let mut out = String::new();
    writeln!(
        out,
        "\n### A new day's partition mid-run\n\nA fresh gateway; today's ledger partition is \
         cut {ROLLOVER_AFTER_S} s ahead and a new, empty partition (never analyzed) takes \
         the rest of the day; then round-only at {ROLLOVER_RATE}/s for {ROLLOVER_S} s, straight \
         away. The new partition received {new_rows} rows. Target: no minute's p99 over \
         {P99_MAX_MS:.0} ms.\n"
    )?;
    out.push_str(&minutes_table(&run)?);
    Ok(out)
}

/// Per-minute latency of a run with `--timeline`, and whether every minute met the target.
fn minutes_table(run: &Run) -> anyhow::Result<String> {
    let mut out =
        String::from("| minute | answered | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|\n");
    let mut worst: f64 = 0.0;
    for m in run.report["minutes"].as_array().into_iter().flatten() {
        let p99 = m["p99_ms"].as_f64().unwrap_or(f64::INFINITY);
        worst = worst.max(p99);
        writeln!(
            out,
            "| {} | {} | {:.2} | {p99:.2} | {:.1} |",
            m["window"],
            m["answered"],
            m["p50_ms"].as_f64().unwrap_or(0.0),
            m["max_ms"].as_f64().unwrap_or(0.0)
        )?;
    }
    writeln!(
        out,
        "\nWorst minute's p99 {worst:.2} ms ({}); achieved {:.0}/s, errors {}; gateway {:.1} \
         µs, PostgreSQL {:.1} µs a callback.",
        if worst <= P99_MAX_MS {
            "pass"
        } else {
            "**fail**"
        },
        run.achieved(),
        run.errors(),
        run.cpu_us_per_callback("gateway"),
        run.cpu_us_per_callback("postgres"),
    )?;
    Ok(out)
}

/// A fresh gateway at `SOAK_RATE` for half an hour (round-only: rounds left open pile up, as
/// they do in production): p99 per minute, and the last five minutes against the first five.
fn soak(root: &Path) -> anyhow::Result<String> {
    let seconds = std::env::var("WALLET_BENCH_SOAK_S")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(SOAK_S);
    let dir = root.join("soak");
    let gw = Gateway::start(&dir, &[("GATEWAY__DEMO__PLAYERS", "1000")])?;
    let run = loadtest_from(
        &[&gw],
        PLAYERS,
        SOAK_RATE,
        seconds,
        0,
        &["--mix", "round-only", "--timeline"],
    )?;
    gw.stop()?;
    let _ = std::fs::remove_dir_all(&dir);
    let fives: Vec<f64> = run.report["five_minutes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|w| w["p99_ms"].as_f64().unwrap_or(f64::INFINITY))
        .collect();
    let (first, last) = (
        fives.first().copied().unwrap_or(f64::NAN),
        fives.last().copied().unwrap_or(f64::NAN),
    );
    let mut out = String::new();
    writeln!(
        out,
        "\n### Soak\n\nA fresh gateway, round-only at {SOAK_RATE}/s for {seconds} s (set \
         `WALLET_BENCH_SOAK_S` for another length). p99 of the first five minutes {first:.2} \
         ms, of the last five {last:.2} ms ({}; target: within 20 %).\n",
        if last <= first * 1.2 {
            "pass"
        } else {
            "**fail**"
        }
    )?;
    out.push_str(&minutes_table(&run)?);
    Ok(out)
}
