//! Drain under load, as an operator's SIGTERM does it: the binary on its embedded database takes
//! signed bets from many concurrent callers, is told to stop in the middle, stops accepting,
//! answers what it took through a last commit, stops its database and exits 0. Afterwards every
//! bet answered `OK` is in the ledger, and every wallet equals its ledger.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gateway::test_util::{now_s, TestClient};
use http::Method;

use crate::foundation::{postmaster_pid, process_alive, sigterm, start_binary, wait_until};
use crate::money_path::bet;

/// Concurrent callers, as several provider servers would be.
const CALLERS: usize = 64;

#[derive(Debug, Default)]
struct Tally {
    /// Transaction ids answered `OK`.
    ok: Vec<String>,
    /// Answered `OK` after the SIGTERM: in flight when it came, and still settled.
    ok_after_sigterm: usize,
    /// Answered, but not `OK` (e.g. `TEMPORARY_ERROR` while shutting down).
    other: usize,
    transport_errors: usize,
    sent: usize,
}

#[test]
fn sigterm_under_load_answers_what_it_took_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path();
    let mut gw = start_binary(data_dir);
    let addr: SocketAddr = gw.addr.parse().unwrap();
    let pg_pid = postmaster_pid(data_dir).expect("embedded postgres");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let tally = Arc::new(Mutex::new(Tally::default()));
    let stopping = Arc::new(AtomicBool::new(false));
    runtime.block_on(async {
        let client = Arc::new(TestClient::new(addr));
        let mut callers = Vec::new();
        for caller in 0..CALLERS {
            let (client, tally, stopping) = (client.clone(), tally.clone(), stopping.clone());
            callers.push(tokio::spawn(async move {
                let give_up = Instant::now() + Duration::from_secs(30);
                for n in 0.. {
                    let tx = format!("drain-{caller}-{n}");
                    let player = format!("player-{}", (caller * 7 + n) % 1000 + 1);
                    let body = serde_json::to_vec(&bet(&player, &tx, "0.01", &tx)).unwrap();
                    let signature = gateway::signature::sign_native(b"demo-secret", now_s(), &body);
                    let answer = client
                        .try_request(
                            Method::POST,
                            "/api/provider-callback/demo/bet",
                            &[
                                ("X-Signature", signature),
                                ("Content-Type", "application/json".into()),
                            ],
                            body,
                        )
                        .await;
                    let after_sigterm = stopping.load(Ordering::Acquire);
                    let mut t = tally.lock().unwrap();
                    t.sent += 1;
                    match answer {
                        Ok(a) if a.status == 200 && a.json()["status"] == "OK" => {
                            t.ok.push(tx);
                            t.ok_after_sigterm += usize::from(after_sigterm);
                        }
                        Ok(_) => t.other += 1,
                        Err(_) => {
                            t.transport_errors += 1;
                            // The listener is closed: this caller is done.
                            if stopping.load(Ordering::Acquire) {
                                return;
                            }
                        }
                    }
                    drop(t);
                    if Instant::now() > give_up {
                        return;
                    }
                }
            }));
        }
        // Load first, then the operator's SIGTERM in the middle of it.
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        stopping.store(true, Ordering::Release);
        sigterm(&gw.child);
        for caller in callers {
            caller.await.unwrap();
        }
    });
    let exit = gw.child.wait().unwrap();
    assert!(exit.success(), "exit status {exit:?}");
    wait_until("postgres stops", || !process_alive(pg_pid));

    // The same data folder again: what was acknowledged is there.
    let mut gw = start_binary(data_dir);
    let tally = tally.lock().unwrap();
    let (in_ledger, mismatched_wallets) = runtime.block_on(async {
        let config: tokio_postgres::Config = format!(
            "host={} port=5432 user=wallet dbname=wallet",
            data_dir.join("run").display()
        )
        .parse()
        .unwrap();
        let client = settlement::test_util::connect(&config).await;
        let in_ledger: i64 = client
            .query_one(
                "SELECT count(*) FROM transactions
                 WHERE provider_tx_id = ANY($1) AND outcome = 'OK' AND kind = 'bet'",
                &[&tally.ok],
            )
            .await
            .unwrap()
            .get(0);
        let mismatched: i64 = client
            .query_one(
                "SELECT count(*) FROM wallets w
                 WHERE w.balance <> (SELECT coalesce(sum(t.real_delta), 0) FROM transactions t
                                     WHERE t.player_id = w.player_id AND t.currency = w.currency)",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        (in_ledger, mismatched)
    });
    eprintln!(
        "drain: {} sent, {} answered OK ({} of them after SIGTERM), {} other answers, \
         {} transport errors; {} of the OK bets in the ledger",
        tally.sent,
        tally.ok.len(),
        tally.ok_after_sigterm,
        tally.other,
        tally.transport_errors,
        in_ledger
    );
    assert!(tally.ok.len() > 100, "too little load to say anything");
    assert!(
        tally.ok_after_sigterm > 0,
        "nothing in flight at the SIGTERM was answered"
    );
    assert_eq!(
        in_ledger,
        tally.ok.len() as i64,
        "acknowledged but missing from the ledger"
    );
    assert_eq!(mismatched_wallets, 0, "a wallet differs from its ledger");
    sigterm(&gw.child);
    assert!(gw.child.wait().unwrap().success());
}
