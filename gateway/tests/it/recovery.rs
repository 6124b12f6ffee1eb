//! The embedded database dies under load (what `pg_ctl stop -m immediate` does) and comes back:
//! callbacks are told to retry meanwhile, settle again after, and no money drifts.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway::app::{self, Overrides};
use gateway::config::Config;
use gateway::test_util::{TestClient, TEST_PROVIDERS};
use serde_json::json;

const PLAYERS: u32 = 4;
const BET_MINOR: i64 = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_database_comes_back_under_load_without_drift() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::from_toml(
        &format!("[demo]\nenabled = true\nplayers = {PLAYERS}\n{TEST_PROVIDERS}"),
        &[],
    )
    .unwrap();
    config.database.url_env = String::new();
    config.embedded.wal_preallocate_mb = 64;
    let running = app::start(
        config,
        Overrides {
            listen: Some(([127, 0, 0, 1], 0).into()),
            data_dir: Some(dir.path().to_path_buf()),
        },
    )
    .await
    .expect("gateway on an embedded cluster");
    let client = TestClient::new(running.addr);
    let stop = Arc::new(AtomicBool::new(false));
    let retryable = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for player in 1..=PLAYERS {
        let (client, stop, retryable) = (client.clone(), stop.clone(), retryable.clone());
        workers.push(tokio::spawn(async move {
            // Each bet is sent until it gets a final answer, as a provider would.
            let mut settled = 0i64;
            while !stop.load(Ordering::SeqCst) {
                let body = json!({"player_id": format!("player-{player}"), "currency": "EUR",
                    "amount": "1.00", "transaction_id": format!("p{player}-{settled}"),
                    "round_id": format!("p{player}-{settled}"), "game_id": "g"});
                loop {
                    let answer = client.demo("bet", body.clone()).await;
                    if answer.status == http::StatusCode::OK {
                        assert_eq!(answer.json()["status"], "OK", "{:?}", answer.json());
                        settled += 1;
                        break;
                    }
                    assert_eq!(answer.status, http::StatusCode::SERVICE_UNAVAILABLE);
                    assert_eq!(answer.json()["status"], "TEMPORARY_ERROR");
                    retryable.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            (player, settled)
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let supervised = running.database().embedded.as_ref().expect("embedded");
    let pid = supervised.server_pid().expect("server running");
    // `pg_ctl stop -m immediate` is SIGQUIT to the postmaster.
    let killed = std::process::Command::new("kill")
        .args(["-QUIT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let stopped_at = Instant::now();
    // Back within 15 s: restarted, and callbacks settle again.
    while supervised.restarts() == 0 {
        assert!(
            stopped_at.elapsed() < Duration::from_secs(15),
            "database not back in 15 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let body = json!({"player_id": "player-1", "currency": "EUR"});
    loop {
        let answer = client.demo("balance", body.clone()).await;
        if answer.status == http::StatusCode::OK {
            break;
        }
        assert!(
            stopped_at.elapsed() < Duration::from_secs(15),
            "callbacks not back in 15 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let recovered_in = stopped_at.elapsed();
    let health = client.get("/health").await;
    assert_eq!(health.json()["database"], "up");
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    let mut settled = Vec::new();
    for worker in workers {
        settled.push(worker.await.unwrap());
    }
    println!(
        "recovered in {recovered_in:?}; {} retryable answers meanwhile; settled {settled:?}",
        retryable.load(Ordering::SeqCst)
    );
    // Every bet answered OK was applied exactly once; nothing else moved.
    let db = running.state.pool.get().await.unwrap();
    for (player, n) in settled {
        assert!(n > 0);
        let balance: i64 = db
            .query_one(
                "SELECT w.balance FROM wallets w JOIN players p ON p.id = w.player_id
                 WHERE p.external_id = $1",
                &[&format!("player-{player}")],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(balance, 100_000 - n * BET_MINOR, "player-{player}");
    }
    assert!(settlement::store::ledger_mismatches(&**db)
        .await
        .unwrap()
        .is_empty());
    drop(db);
    running.stop().await.unwrap();
}
