//! The simulator against the real gateway and PostgreSQL: a run with every fault kind on must
//! show zero drift, and the same play against each planted bug must fail its checkers. The
//! binary is also run as the README shows, against a running gateway and its database.

use std::time::Duration;

use gateway::test_util::{
    start_gateway, start_gateway_on, TestGateway, EVO_TOKEN, PP_SECRET, TEST_PROVIDERS,
};
use settlement::fault::{Effect, Plant, Point, Trigger};
use sim::dialect::{Kind, Provider};
use sim::{Faults, Options, Report};

use gateway::test_util::TEST_HUB88_KEY_FILE as HUB88_KEY;

mod certify;

/// The test gateway's native provider.
fn native() -> Provider {
    Provider::new("demo", Kind::Native, "demo-secret-for-tests", None).unwrap()
}

/// The test gateway's providers in every dialect.
fn every_dialect() -> Vec<Provider> {
    let key = std::path::Path::new(HUB88_KEY);
    vec![
        native(),
        Provider::new("pp", Kind::Pragmatic, PP_SECRET, None).unwrap(),
        Provider::new("evo", Kind::Evolution, EVO_TOKEN, None).unwrap(),
        Provider::new("hub88", Kind::Hub88, "", Some(key)).unwrap(),
        Provider::new("ss", Kind::SoftSwiss, "ss-secret-for-tests", None).unwrap(),
    ]
}

fn options(seed: u64, tag: &str, callbacks: u64) -> Options {
    Options {
        seed,
        tag: tag.to_string(),
        callbacks,
        concurrency: 16,
        duration: None,
        players: 100,
        providers: vec![native()],
        faults: Faults::all(0.05),
        final_within: Duration::from_secs(30),
    }
}

fn seed() -> u64 {
    let seed = std::env::var("SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_u64);
    println!("sim seed: {seed} (replay with SIM_SEED={seed})");
    seed
}

fn failed(report: &Report) -> Vec<&str> {
    report
        .checks
        .iter()
        .filter(|(_, r)| r.is_err())
        .map(|(n, _)| n.as_str())
        .collect()
}

/// Plays `callbacks` with `plant` on and returns the checkers that failed.
async fn planted_run(gw: &TestGateway, plant: Plant, seed: u64, callbacks: u64) -> Vec<String> {
    run_with(gw, Some(plant), None, seed, callbacks).await
}

/// Plays `callbacks` with `plant` (if any) on while, if `failing` names a point, one batch in
/// four fails there (a statement error: before COMMIT the batch rolls back, after it
/// the batch is durable but its lane sees an error); returns the checkers that failed.
async fn run_with(
    gw: &TestGateway,
    plant: Option<Plant>,
    failing: Option<Point>,
    seed: u64,
    callbacks: u64,
) -> Vec<String> {
    let name = plant.map_or("none", Plant::name);
    if let Some(plant) = plant {
        gw.faults().plant(plant, true);
    }
    // One batch in four fails at the point: steady failures, and a request left alone at the
    // end of a run (every batch then is its own) still gets through.
    if let Some(point) = failing {
        gw.faults()
            .add(point, Effect::Fail, Trigger::OneIn(4), u32::MAX);
    }
    let tag = format!("{name}-{failing:?}")
        .to_lowercase()
        .replace(['(', ')'], "");
    let report = sim::run(
        &[gw.addr],
        gw.db.config.clone(),
        Options {
            // A win that is never final is reported after this long.
            final_within: Duration::from_secs(if plant.is_some() { 2 } else { 30 }),
            ..options(seed, &tag, callbacks)
        },
    )
    .await;
    if failing.is_some() {
        gw.faults().clear();
    }
    if let Some(plant) = plant {
        gw.faults().plant(plant, false);
    }
    let report = report.expect("simulation runs");
    println!(
        "planted {name}, failing at {failing:?}: {}",
        report.summary()
    );
    for (check, result) in &report.checks {
        if let Err(first) = result {
            println!("  {check}: {first}");
        }
    }
    failed(&report).into_iter().map(str::to_string).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulation_shows_no_drift_and_planted_bugs_are_caught() {
    let seed = seed();
    let gw = start_gateway("[demo]\nenabled = true\nplayers = 100\n").await;

    let report = sim::run(
        &[gw.addr],
        gw.db.config.clone(),
        options(seed, "clean", 20_000),
    )
    .await
    .expect("simulation runs");
    println!("{}", report.summary());
    for (name, result) in &report.checks {
        assert!(result.is_ok(), "{name}: {result:?}");
    }
    assert!(report.attempts >= 20_000);
    for (kind, n) in &report.faults {
        if *kind != "abandoned_bet" {
            assert!(*n > 0, "fault {kind} was never injected");
        }
    }

    // Retries applied again (no dedup in the database or the index).
    let failed = planted_run(&gw, Plant::NoDedup, seed, 4_000).await;
    assert!(
        failed.iter().any(|f| f == "a_balance_equals_model"),
        "{failed:?}"
    );
    // Every win answered "retry later", forever: never final is a violation.
    let failed = planted_run(&gw, Plant::WinsUnavailable, seed, 1_500).await;
    assert!(
        failed.iter().any(|f| f == "answers_match_model"),
        "{failed:?}"
    );
    // A retry answered differently from the original.
    let failed = planted_run(&gw, Plant::AlteredRetryAnswer, seed, 4_000).await;
    assert!(
        failed.iter().any(|f| f == "d_retries_same_answer"),
        "{failed:?}"
    );
    // A rollback that leaves no tombstone: the bet sent after it is applied.
    let failed = planted_run(&gw, Plant::TombstonesOff, seed, 4_000).await;
    assert!(
        failed.iter().any(|f| f == "answers_match_model"),
        "{failed:?}"
    );
    gw.stop().await;
}

/// The bugs that only show when batches fail: each is run beside a control (the same
/// failures, no bug) that must pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_bugs_that_need_failing_batches_are_caught() {
    let seed = seed();
    let gw = start_gateway("[demo]\nenabled = true\nplayers = 100\n").await;

    // Batches failing before COMMIT: retried or refused, nothing acknowledged is lost...
    let failed = run_with(&gw, None, Some(Point::Write), seed, 4_000).await;
    assert!(failed.is_empty(), "control run failed: {failed:?}");
    // ...unless the answers left before the server said whether the batch committed.
    let failed = run_with(
        &gw,
        Some(Plant::AnswerBeforeCommit),
        Some(Point::Write),
        seed,
        4_000,
    )
    .await;
    assert!(
        failed.iter().any(|f| f == "a_balance_equals_model"),
        "{failed:?}"
    );

    // Batches that committed but whose lane saw an error: the halves find what is stored...
    let failed = run_with(&gw, None, Some(Point::AfterCommit), seed, 4_000).await;
    assert!(failed.is_empty(), "control run failed: {failed:?}");
    // ...unless the split assumes nothing committed and applies the halves again.
    let failed = run_with(
        &gw,
        Some(Plant::SplitReapplies),
        Some(Point::AfterCommit),
        seed,
        4_000,
    )
    .await;
    assert!(
        failed.iter().any(|f| f == "c_no_double_application"),
        "{failed:?}"
    );
    gw.stop().await;
}

/// Per-player arrival order: two callbacks of one player that wait in the same lane (held
/// by a stalled batch) are applied in the order they arrived, so each answer carries the
/// balance after itself and everything before it. A lane that takes newest first breaks it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lane_that_reorders_a_players_commands_is_caught() {
    let gw = start_gateway("[demo]\nenabled = true\nplayers = 10\n").await;
    assert_eq!(overlapping_pair(&gw, "kept").await, Ok(()));
    gw.faults().plant(Plant::LaneReorder, true);
    let reordered = overlapping_pair(&gw, "reordered").await;
    gw.faults().plant(Plant::LaneReorder, false);
    assert!(reordered.is_err(), "the reordering lane went unnoticed");
    println!("planted lane-reorder: {}", reordered.unwrap_err());
    gw.stop().await;
}

/// Sends a bet of 1 whose batch stalls for a second, then 150 ms later a bet of 100, then
/// 150 ms later a bet of 200, all for one player (so one lane): the two wait behind the stall
/// and are settled in one batch. Checks each answer's balance against arrival order.
async fn overlapping_pair(gw: &TestGateway, tag: &str) -> Result<(), String> {
    use sim::client::{Attempt, Client, Send};
    use sim::model::Op;
    let player = "player-3";
    let opening: i64 = gw
        .db
        .connect()
        .await
        .query_one(
            "SELECT w.balance + w.bonus FROM wallets w JOIN players p ON p.id = w.player_id
             WHERE p.external_id = $1 AND w.currency = 'EUR'",
            &[&player],
        )
        .await
        .expect("wallet")
        .get(0);
    let stall_tx = format!("overlap-{tag}-stall");
    gw.faults().add(
        Point::Prefetch,
        Effect::StallMs(1_000),
        Trigger::Tx(stall_tx.clone()),
        1,
    );
    let client = Client::new(gw.addr, native());
    let mut calls = Vec::new();
    for (k, (tx, amount)) in [
        (stall_tx, 1),
        (format!("overlap-{tag}-a"), 100),
        (format!("overlap-{tag}-b"), 200),
    ]
    .into_iter()
    .enumerate()
    {
        let client = client.clone();
        let op = Op::Bet {
            tx,
            amount,
            round: format!("overlap-{tag}"),
        };
        calls.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(150 * k as u64)).await;
            let encoded = client.provider().encode(player, &op);
            client
                .attempt(&encoded, Send::Signed, Duration::from_secs(5))
                .await
        }));
    }
    let mut expected = opening;
    for (call, amount) in calls.into_iter().zip([1, 100, 200]) {
        expected -= amount;
        let want = format!("{}.{:02}", expected / 100, expected % 100);
        match call.await.expect("call") {
            Attempt::Final(r) if r.status == "OK" && r.balance.as_deref() == Some(&want) => {}
            other => {
                return Err(format!(
                    "bet of {amount} answered {other:?}, arrival order says balance {want}"
                ))
            }
        }
    }
    Ok(())
}

/// The README's command: `sim --target URL --database-url "host=./data/run ..."` against a
/// gateway on an embedded cluster, run from the folder that holds `data/`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_checks_a_running_gateway_through_its_embedded_socket() {
    let workdir = tempfile::tempdir().unwrap();
    let data = workdir.path().join("data");
    let mut config = gateway::config::Config::from_toml(
        &format!("[demo]\nenabled = true\nplayers = 20\n{TEST_PROVIDERS}"),
        &[],
    )
    .unwrap();
    config.database.url_env = String::new();
    let running = gateway::app::start(
        config,
        gateway::app::Overrides {
            listen: Some(([127, 0, 0, 1], 0).into()),
            data_dir: Some(data),
        },
    )
    .await
    .expect("gateway on an embedded cluster");
    let sim = std::process::Command::new(env!("CARGO_BIN_EXE_sim"))
        .current_dir(workdir.path())
        .args(["--target", &format!("http://{}", running.addr)])
        .args([
            "--database-url",
            "host=./data/run user=wallet dbname=wallet",
        ])
        .args([
            "--provider",
            "demo:native",
            "--secret",
            "demo-secret-for-tests",
        ])
        .args(["--players", "20"])
        .args(["--callbacks", "1000", "--seed", "7"])
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&sim.stdout);
    println!("{stdout}{}", String::from_utf8_lossy(&sim.stderr));
    assert!(sim.status.success(), "sim failed: {:?}", sim.status);
    assert!(stdout.starts_with("sim seed: 7"), "{stdout}");
    assert!(stdout.contains("e_money_conserved=ok"), "{stdout}");
    running.stop().await.unwrap();
}

/// Every dialect at once, every fault on: the same checkers, zero drift.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dialect_mixed_shows_no_drift() {
    let seed = seed();
    let gw = start_gateway("[demo]\nenabled = true\nplayers = 100\n").await;
    let report = sim::run(
        &[gw.addr],
        gw.db.config.clone(),
        Options {
            providers: every_dialect(),
            ..options(seed, "mixed", 15_000)
        },
    )
    .await
    .expect("simulation runs");
    println!("{}", report.summary());
    for (name, result) in &report.checks {
        assert!(result.is_ok(), "{name}: {result:?}");
    }
    gw.stop().await;
}

/// Two gateways on one database, each attempt sent to the next in turn (one player's bet, win,
/// concurrent twins and retries land on both), every dialect, every fault: the same checkers,
/// zero drift.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_on_one_database_show_no_drift() {
    let seed = seed();
    let config = "[demo]\nenabled = true\nplayers = 100\n";
    let a = start_gateway(config).await;
    let b = start_gateway_on(a.db.clone(), config).await;
    let report = sim::run(
        &[a.addr, b.addr],
        a.db.config.clone(),
        Options {
            providers: every_dialect(),
            ..options(seed, "two", 15_000)
        },
    )
    .await
    .expect("simulation runs");
    println!("{}", report.summary());
    for gw in [&a, &b] {
        let metrics = String::from_utf8_lossy(&gw.get("/metrics").await.body).into_owned();
        for line in metrics.lines().filter(|l| {
            l.starts_with("wallet_busy_wallet_deferrals_total")
                || l.starts_with("wallet_batch_failures_total")
        }) {
            println!("{}: {line}", gw.addr);
        }
    }
    for (name, result) in &report.checks {
        assert!(result.is_ok(), "{name}: {result:?}");
    }
    b.stop().await;
    a.stop().await;
}
