//! Concurrent callbacks: identical retries racing each other, and a bet racing its rollback.

use std::sync::Arc;

use crate::money_path::{bet, gateway, rollback, START};

#[tokio::test]
async fn fifty_identical_bets_at_once_debit_once() {
    let gw = Arc::new(gateway().await);
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let gw = gw.clone();
        tasks.push(tokio::spawn(async move {
            gw.demo("bet", bet("player-1", "same", "7.00", "r1"))
                .await
                .json()
        }));
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    let first = &answers[0];
    for a in &answers {
        assert_eq!(a["status"], "OK");
        assert_eq!(a["balance"], "993.00");
        assert_eq!(
            a["operator_transaction_id"],
            first["operator_transaction_id"]
        );
    }
    let originals = answers.iter().filter(|a| a["duplicate"] == false).count();
    assert_eq!(originals, 1, "exactly one answer is the original");
    assert_eq!(gw.balance("player-1").await, START - 700);
    assert_eq!(gw.ledger_len("player-1").await, 2);
    Arc::into_inner(gw).unwrap().finish().await;
}

#[tokio::test]
async fn a_bet_and_its_rollback_at_once_net_zero_every_time() {
    let gw = Arc::new(gateway().await);
    for i in 0..500 {
        let player = format!("player-{}", 1 + i % 20);
        let (b, r) = tokio::join!(
            gw.demo(
                "bet",
                bet(&player, &format!("b{i}"), "3.00", &format!("r{i}"))
            ),
            gw.demo(
                "rollback",
                rollback(&player, &format!("rb{i}"), &format!("b{i}"))
            )
        );
        let (b, r) = (b.json(), r.json());
        assert_eq!(r["status"], "OK", "rollback {i}");
        // Whichever came first, the bet either stood and was reversed, or was refused.
        assert!(
            b["status"] == "OK" || b["status"] == "TRANSACTION_ROLLED_BACK",
            "bet {i}: {b}"
        );
    }
    for p in 1..=20 {
        assert_eq!(
            gw.balance(&format!("player-{p}")).await,
            START,
            "player-{p}"
        );
    }
    Arc::into_inner(gw).unwrap().finish().await;
}
