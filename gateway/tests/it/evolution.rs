//! The Evolution-style dialect over real HTTP and PostgreSQL: the static token, exact JSON
//! number amounts, `refId` as the bet's key, cancels before debits, and the status mapping.

use gateway::test_util::TestGateway;
use http::StatusCode;
use serde_json::{json, Value};

use crate::money_path::{gateway, START};

/// A debit, credit or cancel body; `amount` is JSON text, sent as written.
fn call(player: &str, tx: &str, bet: &str, amount: &str, round: &str) -> String {
    format!(
        r#"{{"sid":"s","userId":"{player}","uuid":"u-{tx}","currency":"EUR",
            "game":{{"id":"{round}","type":"blackjack","details":{{"table":{{"id":"bj-1","vid":null}}}}}},
            "transaction":{{"id":"{tx}","refId":"{bet}","amount":{amount}}}}}"#
    )
}

/// Sends an Evolution call and checks the status it is answered with.
async fn answers(gw: &TestGateway, action: &str, body: impl ToString, status: &str) {
    assert_eq!(ok(gw, action, body).await["status"], status, "{action}");
}

async fn ok(gw: &TestGateway, action: &str, body: impl ToString) -> Value {
    let answer = gw
        .evo_with_token(
            action,
            body.to_string(),
            Some(gateway::test_util::EVO_TOKEN),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    answer.json()
}

#[tokio::test]
async fn the_token_is_checked_and_amounts_are_exact_json_numbers() {
    let gw = gateway().await;
    for token in [None, Some("wrong-token"), Some("")] {
        let answer = gw
            .evo_with_token("debit", call("player-1", "t1", "b1", "1.5", "r1"), token)
            .await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{token:?}");
        assert_eq!(answer.json()["status"], "INVALID_TOKEN_ID");
    }
    let a = ok(&gw, "debit", call("player-1", "t1", "b1", "1.5", "r1")).await;
    assert_eq!(
        (a["status"].clone(), a["uuid"].clone()),
        (json!("OK"), json!("u-t1"))
    );
    let text = String::from_utf8(
        gw.evo("balance", json!({"userId": "player-1", "uuid": "q"}))
            .await
            .body
            .to_vec(),
    )
    .unwrap();
    assert!(text.contains(r#""balance":998.50"#), "{text}");
    // More decimals than EUR has, an exponent, a negative amount, a string: refused.
    for amount in ["1.005", "1e2", "-1", r#""1.00""#] {
        let a = ok(&gw, "debit", call("player-1", "t2", "b2", amount, "r1")).await;
        assert_eq!(a["status"], "INVALID_PARAMETER", "{amount}");
    }
    assert_eq!(gw.balance("player-1").await, START - 150);
    gw.finish().await;
}

#[tokio::test]
async fn debits_credits_and_cancels_follow_the_bet_ref_id() {
    let gw = gateway().await;
    let debit = call("player-1", "t1", "bet-1", "10", "r1");
    answers(&gw, "debit", debit.clone(), "OK").await;
    // The same debit again replays; another debit of the same bet is refused.
    answers(&gw, "debit", debit, "OK").await;
    let other = call("player-1", "t9", "bet-1", "11", "r1");
    answers(&gw, "debit", other, "BET_ALREADY_EXIST").await;
    // Its credit, twice (a retransmission), then with other data.
    let credit = call("player-1", "t2", "bet-1", "25", "r1");
    answers(&gw, "credit", credit.clone(), "OK").await;
    answers(&gw, "credit", credit, "OK").await;
    let credit2 = call("player-1", "t3", "bet-1", "26", "r1");
    answers(&gw, "credit", credit2, "BET_ALREADY_SETTLED").await;
    // A settled bet cannot be cancelled.
    let cancel = call("player-1", "t4", "bet-1", "10", "r1");
    answers(&gw, "cancel", cancel, "BET_ALREADY_SETTLED").await;
    assert_eq!(gw.balance("player-1").await, START - 1000 + 2500);
    // A credit without its debit.
    let lonely = call("player-1", "t5", "bet-x", "5", "r2");
    answers(&gw, "credit", lonely, "BET_DOES_NOT_EXIST").await;
    // Cancel of a debit, then its credit: already settled.
    ok(&gw, "debit", call("player-1", "t6", "bet-2", "3", "r3")).await;
    let request = call("player-1", "t7", "bet-2", "3", "r3");
    answers(&gw, "cancel", request, "OK").await;
    let late_credit = call("player-1", "t8", "bet-2", "9", "r3");
    answers(&gw, "credit", late_credit, "BET_ALREADY_SETTLED").await;
    assert_eq!(gw.balance("player-1").await, START - 1000 + 2500);
    gw.finish().await;
}

#[tokio::test]
async fn a_cancel_before_its_debit_is_stored_and_the_late_debit_fails_for_good() {
    let gw = gateway().await;
    let cancel = call("player-1", "c1", "early", "4", "r1");
    answers(&gw, "cancel", cancel, "BET_DOES_NOT_EXIST").await;
    let debit = call("player-1", "d1", "early", "4", "r1");
    answers(&gw, "debit", debit, "FINAL_ERROR_ACTION_FAILED").await;
    assert_eq!(gw.balance("player-1").await, START);
    gw.finish().await;
}

#[tokio::test]
async fn status_mapping_blocked_players_and_promo_payouts() {
    let gw = gateway().await;
    let request = call("player-1", "t1", "big", "5000", "r1");
    answers(&gw, "debit", request, "INSUFFICIENT_FUNDS").await;
    answers(
        &gw,
        "check",
        json!({"userId": "nobody", "uuid": "x"}),
        "INVALID_SID",
    )
    .await;
    answers(
        &gw,
        "nope",
        json!({"userId": "player-1"}),
        "INVALID_PARAMETER",
    )
    .await;
    ok(&gw, "debit", call("player-2", "t2", "b2", "2", "r1")).await;
    gw.sql("UPDATE players SET status = 'banned' WHERE external_id = 'player-2'")
        .await;
    let request = call("player-2", "t3", "b3", "1", "r2");
    answers(&gw, "debit", request, "FINAL_ERROR_ACTION_FAILED").await;
    answers(&gw, "credit", call("player-2", "t4", "b2", "6", "r1"), "OK").await;
    assert_eq!(
        ok(
            &gw,
            "promo_payout",
            call("player-2", "t5", "promo-1", "1", "p1")
        )
        .await["status"],
        "OK"
    );
    assert_eq!(gw.balance("player-2").await, START - 200 + 600 + 100);
    gw.finish().await;
}

#[tokio::test]
async fn a_twin_still_in_flight_is_told_operation_in_process() {
    use settlement::fault::{Effect, Point, Trigger};
    let gw = gateway().await;
    // The first debit's batch is held up, so its twin arrives while it is in flight.
    gw.faults()
        .add(Point::Prefetch, Effect::StallMs(400), Trigger::Always, 1);
    let debit = call("player-1", "t1", "twin", "2", "r1");
    let (first, twin) = tokio::join!(ok(&gw, "debit", debit.clone()), async {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        ok(&gw, "debit", debit.clone()).await
    });
    assert_eq!(first["status"], "OK");
    assert_eq!(twin["status"], "OPERATION_IN_PROCESS");
    // Its retry gets the settled answer.
    answers(&gw, "debit", debit, "OK").await;
    assert_eq!(gw.balance("player-1").await, START - 200);
    gw.finish().await;
}

#[tokio::test]
async fn a_stale_sid_refuses_debits_but_never_credits() {
    let gw = gateway().await;
    gw.sessions_live_and_stale("player-1").await;
    let strict = |action: &'static str, body: String| {
        let gw = &gw;
        async move {
            gw.evo_as("evos", action, body, Some(gateway::test_util::EVO_TOKEN))
                .await
                .json()
        }
    };
    let with_sid =
        |sid: &str, body: String| body.replacen(r#""sid":"s""#, &format!(r#""sid":"{sid}""#), 1);
    let debit = with_sid("live", call("player-1", "t1", "b1", "2", "r1"));
    assert_eq!(strict("debit", debit).await["status"], "OK");
    let stale_debit = with_sid("stale", call("player-1", "t2", "b2", "2", "r1"));
    assert_eq!(strict("debit", stale_debit).await["status"], "INVALID_SID");
    let credit = with_sid("stale", call("player-1", "t3", "b1", "7", "r1"));
    assert_eq!(strict("credit", credit).await["status"], "OK");
    assert_eq!(gw.balance("player-1").await, START - 200 + 700);
    gw.finish().await;
}

#[tokio::test]
async fn a_ref_id_at_the_longest_still_credits_and_cancels() {
    let gw = gateway().await;
    // 128 bytes: the longest id accepted. The credit's and the cancel's own keys are made
    // from it (`credit:`, `cancel:`) and must not push it past the limit.
    let (bet_a, bet_b) = ("a".repeat(128), "b".repeat(128));
    let request = call("player-1", "t1", &bet_a, "10", "r1");
    answers(&gw, "debit", request, "OK").await;
    let credit = call("player-1", "t2", &bet_a, "25", "r1");
    answers(&gw, "credit", credit.clone(), "OK").await;
    assert_eq!(ok(&gw, "credit", credit).await["status"], "OK", "a retry");
    let request = call("player-1", "t3", &bet_b, "4", "r2");
    answers(&gw, "debit", request, "OK").await;
    let request = call("player-1", "t4", &bet_b, "4", "r2");
    answers(&gw, "cancel", request, "OK").await;
    assert_eq!(gw.balance("player-1").await, START - 1000 + 2500);
    gw.finish().await;
}
