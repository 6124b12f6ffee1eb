//! A section of `cargo xtask bench`: instances.
#![allow(clippy::float_arithmetic)] // rates and percentiles, never money

use std::fmt::Write as _;
use std::path::Path;

use crate::bench::harness::*;
use crate::bench::ladder::*;
use crate::bench::probes::*;

/// Players both gateways take callbacks for in the several-gateways section: few enough that
/// one player's calls often reach both gateways at once.
pub(crate) const SHARED_PLAYERS: u32 = 1_000;

/// Several gateways on one PostgreSQL, as an operator would run them: gateway A runs the
/// database, gateway B connects to it. Compared, fresh clusters, same run, each setup twice in
/// turn (A B C D A B C D): one gateway alone; two gateways whose connections both take
/// callbacks for the same 1,000 players; the same with batches that wait for held wallets
/// (`busy_wallet_patience_ms = 0`); two gateways each taking its own players' callbacks (as a
/// balancer hashing on the player id would send them). Each: the CPU per callback at
/// 10,000/s, a rate ladder, then saturated. Markdown.
pub(crate) fn instances_section(root: &Path, step_s: u64) -> anyhow::Result<String> {
    let rates = [
        5_000, 6_500, 8_000, 10_000, 12_000, 14_000, 16_000, 18_000, 20_000,
    ];
    type Env<'a> = &'a [(&'a str, &'a str)];
    const ONE_LANE: (&str, &str) = ("GATEWAY__SETTLEMENT__LANES", "1");
    // Two gateways run one lane each: as many lanes in all as one gateway runs, so each
    // lane's batches are as large as one gateway's (the per-batch cost is the database's).
    let setups: [(&str, usize, Env, &[&str]); 4] = [
        ("one gateway (2 lanes)", 1, &[], &[]),
        (
            "two gateways (1 lane each), players shared",
            2,
            &[ONE_LANE],
            &[],
        ),
        (
            "two gateways (1 lane each), players shared, waiting for held wallets",
            2,
            &[
                ONE_LANE,
                ("GATEWAY__SETTLEMENT__BUSY_WALLET_PATIENCE_MS", "0"),
            ],
            &[],
        ),
        (
            "two gateways (1 lane each), each player on one gateway",
            2,
            &[ONE_LANE],
            &["--route-by-player"],
        ),
    ];
    let mut turns = Vec::new();
    for (turn, setup) in (0..2).flat_map(|_| 0..setups.len()).enumerate() {
        let (_, count, env, extra) = setups[setup];
        let first = Gateway::start(&root.join(format!("instances-{turn}-a")), env)?;
        let url = format!(
            "host={} user=wallet dbname=wallet",
            first.socket_dir.display()
        );
        let mut env_b = env.to_vec();
        env_b.push(("DATABASE_URL", &url));
        let second = match count {
            2 => Some(Gateway::start(
                &root.join(format!("instances-{turn}-b")),
                &env_b,
            )?),
            _ => None,
        };
        let gateways: Vec<&Gateway> = std::iter::once(&first).chain(second.as_ref()).collect();
        settle_down();
        loadtest_many(&gateways, SHARED_PLAYERS, 5_000, 10, extra)?;
        let at_10k = loadtest_many(&gateways, SHARED_PLAYERS, 10_000, step_s, extra)?;
        let per = |party: &str| at_10k.cpu_us_per_callback(party);
        let cpu = (per("gateway"), per("postgres"));
        let mut log = String::new();
        let best = ladder_many(
            &gateways,
            SHARED_PLAYERS,
            &rates,
            step_s,
            extra,
            1,
            &mut log,
        )?;
        settle_down();
        let saturated = loadtest_many(&gateways, SHARED_PLAYERS, SATURATING_RATE, step_s, extra)?;
        // A counter summed over the gateways.
        let total = |line: &str| -> u64 {
            gateways
                .iter()
                .map(|g| g.metrics().map(|m| metric(&m, line)).unwrap_or(0))
                .sum()
        };
        let deferrals = total("wallet_busy_wallet_deferrals_total");
        let conflicts = total("wallet_batch_failures_total{kind=\"conflict\"}");
        if let Some(second) = second {
            second.stop()?;
        }
        first.stop()?;
        turns.push(InstancesTurn {
            setup,
            cpu_us: cpu,
            best,
            ladder_log: log,
            saturated,
            deferrals,
            conflicts,
        });
    }

    let mut w = String::new();
    writeln!(w, "\n## Several gateways on one database\n")?;
    writeln!(w, "Gateway A runs the embedded PostgreSQL, gateway B connects to it (`DATABASE_URL`). With players shared, the generator's connections go to A and B in turn, so both take callbacks for the same {SHARED_PLAYERS} players (one player's bet, win and retries reach both, and a retry often finds the other gateway's dedup index empty). Each lane locks its batch's wallets with `SKIP LOCKED`: a wallet the other gateway holds is left for the lane's next batch instead of waited for (after `settlement.busy_wallet_patience_ms`, 50 ms by default, the batch waits for it); the third setup's batches always wait (`busy_wallet_patience_ms = 0`). The last sends each player's calls to one gateway (`loadtest --route-by-player`, as a balancer hashing on the player id would). Fresh clusters, each setup twice, in turn; CPU per callback at 10,000/s for {step_s} s (all gateways, every PostgreSQL process); a ladder of {step_s} s steps (one run a step, the disk probed for 2 s just before and after each run, never beside it; pass: all answered, no 5xx, p99 <= {P99_MAX_MS} ms); then {SATURATING_RATE}/s offered for {step_s} s.\n")?;
    writeln!(w, "| turn | setup | gateway µs/callback | PostgreSQL µs/callback | highest passing | its p99 ms | saturated: answered/s | its p99 ms | held wallets skipped | batch conflicts |\n|---|---|---|---|---|---|---|---|---|---|")?;
    for (n, turn) in turns.iter().enumerate() {
        let (rate, p99) = turn
            .best
            .as_ref()
            .map_or((0, f64::NAN), |(r, run)| (*r, run.p("p99")));
        writeln!(
            w,
            "| {} | {} | {:.1} | {:.1} | {rate}/s | {p99:.1} | {:.0} | {:.0} | {} | {} |",
            n + 1,
            setups[turn.setup].0,
            turn.cpu_us.0,
            turn.cpu_us.1,
            turn.saturated.answered_rate(),
            turn.saturated.p("p99"),
            turn.deferrals,
            turn.conflicts,
        )?;
    }
    writeln!(w, "\n| setup | gateway + PostgreSQL µs/callback (mean of two) | highest passing (mean of two) | saturated answered/s (mean of two) | against one gateway |\n|---|---|---|---|---|")?;
    let mean = |setup: usize, f: &dyn Fn(&InstancesTurn) -> f64| {
        let v: Vec<f64> = turns.iter().filter(|t| t.setup == setup).map(f).collect();
        v.iter().sum::<f64>() / v.len().max(1) as f64
    };
    let saturated = |t: &InstancesTurn| t.saturated.answered_rate();
    for (setup, (label, ..)) in setups.iter().enumerate() {
        writeln!(
            w,
            "| {label} | {:.1} | {:.0}/s | {:.0} | {:+.1} % |",
            mean(setup, &|t| t.cpu_us.0 + t.cpu_us.1),
            mean(setup, &|t| t.best.as_ref().map_or(0.0, |(r, _)| *r as f64)),
            mean(setup, &saturated),
            (mean(setup, &saturated) / mean(0, &saturated).max(1.0) - 1.0) * 100.0
        )?;
    }
    for (n, turn) in turns.iter().enumerate() {
        writeln!(w, "\nLadder, turn {}, {}:\n", n + 1, setups[turn.setup].0)?;
        writeln!(w, "{LADDER_HEADER}")?;
        w.push_str(&turn.ladder_log);
    }
    Ok(w)
}

/// One turn of [`instances_section`].
pub(crate) struct InstancesTurn {
    /// Index into the section's setups.
    pub(crate) setup: usize,
    /// CPU µs per callback at 10,000/s: the gateways, every PostgreSQL process.
    pub(crate) cpu_us: (f64, f64),
    pub(crate) best: Option<(u64, Run)>,
    pub(crate) ladder_log: String,
    pub(crate) saturated: Run,
    /// Units left for a later batch because another transaction held their wallet.
    pub(crate) deferrals: u64,
    pub(crate) conflicts: u64,
}
