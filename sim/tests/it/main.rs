//! The simulator against the real gateway and PostgreSQL: a run with every fault kind on must
//! show zero drift, and the same run against a planted bug must fail its checkers.

use gateway::test_util::start_gateway;
use settlement::fault::Plant;
use sim::{Faults, Options};

fn options(seed: u64, tag: &str, callbacks: u64) -> Options {
    Options {
        seed,
        tag: tag.to_string(),
        callbacks,
        concurrency: 16,
        duration: None,
        players: 100,
        provider: "demo".into(),
        secret: "demo-secret-for-tests".into(),
        faults: Faults::all(0.05),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulation_shows_no_drift_and_a_planted_bug_is_caught() {
    let seed = std::env::var("SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_u64);
    println!("sim seed: {seed} (replay with SIM_SEED={seed})");
    let gw = start_gateway("[demo]\nenabled = true\nplayers = 100\n").await;

    let report = sim::run(
        gw.addr,
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

    // The same play with the database's dedup switched off: the checkers must notice.
    gw.faults().plant(Plant::NoDedup, true);
    let planted = sim::run(
        gw.addr,
        gw.db.config.clone(),
        options(seed, "planted", 4_000),
    )
    .await;
    gw.faults().plant(Plant::NoDedup, false);
    let planted = planted.expect("simulation runs");
    println!("{}", planted.summary());
    assert!(
        !planted.passed(),
        "the checkers missed a planted double application"
    );
    let failed: Vec<&str> = planted
        .checks
        .iter()
        .filter(|(_, r)| r.is_err())
        .map(|(n, _)| n.as_str())
        .collect();
    assert!(failed.contains(&"a_balance_equals_model"), "{failed:?}");
    gw.stop().await;
}
