//! Every row of the callback state machine (design §4) through the real gateway and database:
//! each test asserts the answer, the balance and the ledger, and ends with the ledger check
//! (each wallet equals the sum of its rows).

use gateway::test_util::{start_gateway, TestGateway};
use http::StatusCode;
use serde_json::{json, Value};

/// 20 demo players with EUR 1000.00 each.
pub async fn gateway() -> TestGateway {
    start_gateway("[demo]\nenabled = true\nplayers = 20\n").await
}

/// Sends a demo call that must be answered 200.
pub async fn accepted(gw: &TestGateway, action: &str, body: Value) {
    let a = gw.demo(action, body).await;
    assert_eq!(a.status, StatusCode::OK, "{action}: {:?}", a.json());
}

pub fn bet(player: &str, tx: &str, amount: &str, round: &str) -> Value {
    json!({"player_id": player, "currency": "EUR", "amount": amount, "transaction_id": tx,
           "round_id": round, "game_id": "slot-1"})
}

pub fn win(player: &str, tx: &str, amount: &str, round: &str) -> Value {
    bet(player, tx, amount, round)
}

pub fn rollback(player: &str, tx: &str, reference: &str) -> Value {
    json!({"player_id": player, "transaction_id": tx, "reference_transaction_id": reference})
}

/// Sends a demo call and checks the status it is answered with.
pub async fn answers(gw: &TestGateway, action: &str, body: Value, status: &str) {
    assert_eq!(
        ok(&gw.demo(action, body).await)["status"],
        status,
        "{action}"
    );
}

fn ok(answer: &gateway::test_util::Answer) -> Value {
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.json());
    answer.json()
}

pub const START: i64 = 100_000;

#[tokio::test]
async fn bet_debits_and_answers_the_new_balance() {
    let gw = gateway().await;
    let a = ok(&gw.demo("bet", bet("player-1", "b1", "12.34", "r1")).await);
    assert_eq!(a["status"], "OK");
    assert_eq!(a["balance"], "987.66");
    assert_eq!(a["currency"], "EUR");
    assert_eq!(a["transaction_id"], "b1");
    assert_eq!(a["duplicate"], false);
    assert!(a["operator_transaction_id"]
        .as_str()
        .unwrap()
        .parse::<i64>()
        .is_ok());
    assert_eq!(gw.balance("player-1").await, START - 1234);
    assert_eq!(gw.ledger_len("player-1").await, 2);
    gw.finish().await;
}

#[tokio::test]
async fn duplicate_with_same_payload_replays_the_stored_answer() {
    let gw = gateway().await;
    let first = ok(&gw.demo("bet", bet("player-1", "b1", "10.00", "r1")).await);
    // Another bet moves the balance; the retry must still answer the original balance.
    ok(&gw.demo("bet", bet("player-1", "b2", "5.00", "r1")).await);
    let retry = ok(&gw.demo("bet", bet("player-1", "b1", "10.00", "r1")).await);
    assert_eq!(retry["status"], "OK");
    assert_eq!(retry["duplicate"], true);
    assert_eq!(retry["balance"], first["balance"]);
    assert_eq!(
        retry["operator_transaction_id"],
        first["operator_transaction_id"]
    );
    assert_eq!(gw.balance("player-1").await, START - 1500);
    assert_eq!(gw.ledger_len("player-1").await, 3);
    gw.finish().await;
}

#[tokio::test]
async fn duplicate_with_other_payload_is_a_final_mismatch() {
    let gw = gateway().await;
    ok(&gw.demo("bet", bet("player-1", "b1", "10.00", "r1")).await);
    let a = ok(&gw.demo("bet", bet("player-1", "b1", "11.00", "r1")).await);
    assert_eq!(a["status"], "DUPLICATE_MISMATCH");
    // Same id as a win: also a mismatch, and no credit.
    let a = ok(&gw.demo("win", win("player-1", "b1", "10.00", "r1")).await);
    assert_eq!(a["status"], "DUPLICATE_MISMATCH");
    assert_eq!(gw.balance("player-1").await, START - 1000);
    assert_eq!(gw.ledger_len("player-1").await, 2);
    gw.finish().await;
}

#[tokio::test]
async fn bet_for_unknown_player_or_currency_moves_nothing() {
    let gw = gateway().await;
    let a = ok(&gw.demo("bet", bet("nobody", "b1", "1.00", "r1")).await);
    assert_eq!(a["status"], "UNKNOWN_PLAYER");
    let mut usd = bet("player-1", "b2", "1.00", "r1");
    usd["currency"] = json!("USD");
    let a = ok(&gw.demo("bet", usd.clone()).await);
    assert_eq!(a["status"], "CURRENCY_MISMATCH");
    // Final and stored: the retry gets the same answer.
    let again = ok(&gw.demo("bet", usd).await);
    assert_eq!(again["status"], "CURRENCY_MISMATCH");
    assert_eq!(again["duplicate"], true);
    let mut odd = bet("player-1", "b3", "1.00", "r1");
    odd["currency"] = json!("XYZ");
    answers(&gw, "bet", odd, "CURRENCY_MISMATCH").await;
    assert_eq!(gw.balance("player-1").await, START);
    gw.finish().await;
}

#[tokio::test]
async fn bet_needs_a_live_session_when_the_provider_says_so() {
    let gw = gateway().await;
    gw.sql(
        "INSERT INTO game_sessions (token, player_id, currency, game_id, expires_at)
         SELECT 'live', id, 'EUR', 'slot-1', now() + interval '1 hour' FROM players WHERE external_id = 'player-1';
         INSERT INTO game_sessions (token, player_id, currency, game_id, expires_at)
         SELECT 'expired', id, 'EUR', 'slot-1', now() - interval '1 second' FROM players WHERE external_id = 'player-1';
         INSERT INTO game_sessions (token, player_id, currency, game_id, expires_at)
         SELECT 'other', id, 'EUR', NULL, now() + interval '1 hour' FROM players WHERE external_id = 'player-2';",
    )
    .await;
    let strict = |body| gw.native("strict", "strict-secret-for-tests", "bet", body);
    let a = ok(&strict(bet("player-1", "s1", "1.00", "r1")).await);
    assert_eq!(a["status"], "INVALID_SESSION", "no token");
    for (i, token) in ["expired", "other", "unknown"].iter().enumerate() {
        let mut body = bet("player-1", &format!("s{}", i + 2), "1.00", "r1");
        body["session_token"] = json!(token);
        let a = ok(&strict(body).await);
        assert_eq!(a["status"], "INVALID_SESSION", "token {token}");
    }
    let mut body = bet("player-1", "s9", "1.00", "r1");
    body["session_token"] = json!("live");
    assert_eq!(ok(&strict(body).await)["status"], "OK");
    // Wins never need a session.
    let a = ok(&gw
        .native(
            "strict",
            "strict-secret-for-tests",
            "win",
            win("player-1", "w1", "2.00", "r1"),
        )
        .await);
    assert_eq!(a["status"], "OK");
    assert_eq!(gw.balance("player-1").await, START - 100 + 200);
    // The demo provider does not require sessions at all.
    answers(&gw, "bet", bet("player-1", "d1", "1.00", "r2"), "OK").await;
    gw.finish().await;
}

#[tokio::test]
async fn blocked_players_cannot_bet_but_still_win_and_get_rollbacks() {
    let gw = gateway().await;
    ok(&gw.demo("bet", bet("player-1", "b1", "10.00", "r1")).await);
    ok(&gw.demo("bet", bet("player-2", "b2", "10.00", "r2")).await);
    ok(&gw.demo("bet", bet("player-3", "b3", "10.00", "r3")).await);
    gw.sql(
        "UPDATE players SET status = 'suspended' WHERE external_id = 'player-1';
         UPDATE players SET status = 'banned' WHERE external_id = 'player-2';
         UPDATE players SET self_excluded_until = now() + interval '30 days' WHERE external_id = 'player-3';",
    )
    .await;
    for p in ["player-1", "player-2", "player-3"] {
        let a = ok(&gw
            .demo("bet", bet(p, &format!("x-{p}"), "1.00", "r9"))
            .await);
        assert_eq!(a["status"], "PLAYER_BLOCKED", "{p}");
    }
    // Wins and rollbacks are never blocked.
    answers(&gw, "win", win("player-1", "w1", "3.00", "r1"), "OK").await;
    answers(&gw, "rollback", rollback("player-2", "rb2", "b2"), "OK").await;
    // Balance is never blocked.
    let a = ok(&gw
        .demo(
            "balance",
            json!({"player_id": "player-3", "currency": "EUR"}),
        )
        .await);
    assert_eq!(a["status"], "OK");
    assert_eq!(a["balance"], "990.00");
    assert_eq!(gw.balance("player-1").await, START - 1000 + 300);
    assert_eq!(gw.balance("player-2").await, START);
    assert_eq!(gw.balance("player-3").await, START - 1000);
    gw.finish().await;
}

#[tokio::test]
async fn bets_over_a_responsible_gaming_limit_are_refused_and_stored() {
    let gw = gateway().await;
    gw.sql(
        "INSERT INTO rg_limits (player_id, currency, kind, period, amount)
         SELECT id, 'EUR', 'max_bet', 'bet', 5000 FROM players WHERE external_id = 'player-1';
         INSERT INTO rg_limits (player_id, currency, kind, period, amount)
         SELECT id, 'EUR', 'wager', 'day', 10000 FROM players WHERE external_id = 'player-2';
         INSERT INTO rg_limits (player_id, currency, kind, period, amount)
         SELECT id, 'EUR', 'loss', 'week', 3000 FROM players WHERE external_id = 'player-3';",
    )
    .await;
    // Max single bet 50.00.
    answers(&gw, "bet", bet("player-1", "a1", "50.00", "r1"), "OK").await;
    let a = ok(&gw.demo("bet", bet("player-1", "a2", "50.01", "r1")).await);
    assert_eq!(a["status"], "LIMIT_EXCEEDED");
    assert_eq!(a["balance"], "950.00");
    let retry = ok(&gw.demo("bet", bet("player-1", "a2", "50.01", "r1")).await);
    assert_eq!(
        (retry["status"].clone(), retry["duplicate"].clone()),
        (json!("LIMIT_EXCEEDED"), json!(true))
    );
    // Daily wager 100.00: 60 + 40 fits, one cent more does not.
    answers(&gw, "bet", bet("player-2", "c1", "60.00", "r2"), "OK").await;
    answers(&gw, "bet", bet("player-2", "c2", "40.00", "r2"), "OK").await;
    answers(
        &gw,
        "bet",
        bet("player-2", "c3", "0.01", "r2"),
        "LIMIT_EXCEEDED",
    )
    .await;
    // Weekly loss 30.00: a win gives room back.
    answers(&gw, "bet", bet("player-3", "d1", "30.00", "r3"), "OK").await;
    answers(
        &gw,
        "bet",
        bet("player-3", "d2", "1.00", "r3"),
        "LIMIT_EXCEEDED",
    )
    .await;
    answers(&gw, "win", win("player-3", "d3", "10.00", "r3"), "OK").await;
    answers(&gw, "bet", bet("player-3", "d4", "10.00", "r4"), "OK").await;
    assert_eq!(gw.balance("player-1").await, START - 5000);
    assert_eq!(gw.balance("player-2").await, START - 10000);
    assert_eq!(gw.balance("player-3").await, START - 3000 + 1000 - 1000);
    gw.finish().await;
}

/// A wager or loss limit's use is a running total per day that the lanes keep (`rg_usage`),
/// complete from the moment the limit is written: play before it is counted from the ledger
/// (the trigger of migration 0018), play after it by the lanes, batch by batch. The lanes'
/// totals (kept in Rust) and a recount from the ledger (in SQL) are two counts of one rule:
/// they must agree after every kind of play.
#[tokio::test]
async fn a_limits_use_kept_by_the_lanes_matches_a_recount_from_the_ledger() {
    let gw = gateway().await;
    // Play before any limit: 20.00 staked, 5.00 won back.
    answers(&gw, "bet", bet("player-4", "e1", "20.00", "r5"), "OK").await;
    answers(&gw, "win", win("player-4", "e2", "5.00", "r5"), "OK").await;
    gw.sql(
        "INSERT INTO rg_limits (player_id, currency, kind, period, amount)
         SELECT id, 'EUR', 'loss', 'day', 5000 FROM players WHERE external_id = 'player-4';
         INSERT INTO rg_limits (player_id, currency, kind, period, amount)
         SELECT id, 'EUR', 'wager', 'month', 100000 FROM players WHERE external_id = 'player-4';",
    )
    .await;
    // Lost so far 15.00 of 50.00: 35.01 more is refused, 35.00 fits.
    answers(
        &gw,
        "bet",
        bet("player-4", "e3", "35.01", "r6"),
        "LIMIT_EXCEEDED",
    )
    .await;
    answers(&gw, "bet", bet("player-4", "e4", "35.00", "r6"), "OK").await;
    // A bet rolled back gives its stake back to both limits; a win gives room back.
    answers(&gw, "rollback", rollback("player-4", "e5", "e4"), "OK").await;
    answers(&gw, "bet", bet("player-4", "e6", "30.00", "r7"), "OK").await;
    answers(&gw, "win", win("player-4", "e7", "12.00", "r7"), "OK").await;
    // Lost: 15 + 35 - 35 + 30 - 12 = 33.00 of 50.00: 17.01 more is over.
    answers(
        &gw,
        "bet",
        bet("player-4", "e8", "17.01", "r8"),
        "LIMIT_EXCEEDED",
    )
    .await;
    answers(&gw, "bet", bet("player-4", "e9", "17.00", "r8"), "OK").await;
    let totals = "SELECT coalesce(string_agg(u.day || ' wagered ' || u.wagered || ' lost ' \
                  || u.lost, ', ' ORDER BY u.day), 'none') \
                  FROM rg_usage u JOIN players p ON p.id = u.player_id \
                  WHERE p.external_id = 'player-4' AND u.currency = 'EUR'";
    let kept: String = gw.value(totals, &[]).await;
    assert!(kept.contains("wagered 6700 lost 5000"), "{kept}");
    gw.sql("SELECT rg_usage_recount(id, 'EUR') FROM players WHERE external_id = 'player-4'")
        .await;
    let recounted: String = gw.value(totals, &[]).await;
    assert_eq!(kept, recounted, "the lanes' totals against the ledger's");
    gw.finish().await;
}

#[tokio::test]
async fn bet_over_the_balance_is_insufficient_funds_with_the_balance() {
    let gw = gateway().await;
    let a = ok(&gw.demo("bet", bet("player-1", "b1", "1000.01", "r1")).await);
    assert_eq!(a["status"], "INSUFFICIENT_FUNDS");
    assert_eq!(a["balance"], "1000.00");
    let retry = ok(&gw.demo("bet", bet("player-1", "b1", "1000.01", "r1")).await);
    assert_eq!(retry["status"], "INSUFFICIENT_FUNDS");
    assert_eq!(retry["duplicate"], true);
    // The whole balance can be bet.
    let a = ok(&gw.demo("bet", bet("player-1", "b2", "1000.00", "r1")).await);
    assert_eq!(
        (a["status"].clone(), a["balance"].clone()),
        (json!("OK"), json!("0.00"))
    );
    assert_eq!(gw.balance("player-1").await, 0);
    assert_eq!(
        gw.ledger_len("player-1").await,
        3,
        "deposit, stored refusal, bet"
    );
    gw.finish().await;
}

#[tokio::test]
async fn rollback_before_its_bet_tombstones_the_bet() {
    let gw = gateway().await;
    let a = ok(&gw.demo("rollback", rollback("player-1", "rb1", "b1")).await);
    assert_eq!(a["status"], "OK");
    assert_eq!(a["balance"], "1000.00");
    let late = ok(&gw.demo("bet", bet("player-1", "b1", "10.00", "r1")).await);
    assert_eq!(late["status"], "TRANSACTION_ROLLED_BACK");
    let retry = ok(&gw.demo("bet", bet("player-1", "b1", "10.00", "r1")).await);
    assert_eq!(retry["status"], "TRANSACTION_ROLLED_BACK");
    assert_eq!(retry["duplicate"], true);
    // A win for the tombstoned bet is refused too.
    let mut w = win("player-1", "w1", "20.00", "r1");
    w["bet_transaction_id"] = json!("b1");
    answers(&gw, "win", w, "TRANSACTION_ROLLED_BACK").await;
    assert_eq!(gw.balance("player-1").await, START);
    gw.finish().await;
}

#[tokio::test]
async fn rollback_before_a_win_tombstones_the_win() {
    let gw = gateway().await;
    let a = ok(&gw
        .demo("rollback", rollback("player-1", "rb-tw", "tw"))
        .await);
    assert_eq!(a["status"], "OK");
    // The provider's books say `tw` was cancelled: the win of that id never pays, named bet
    // or not, first call or retry.
    let late = ok(&gw.demo("win", win("player-1", "tw", "20.00", "r-tw")).await);
    assert_eq!(late["status"], "TRANSACTION_ROLLED_BACK");
    let retry = ok(&gw.demo("win", win("player-1", "tw", "20.00", "r-tw")).await);
    assert_eq!(retry["status"], "TRANSACTION_ROLLED_BACK");
    assert_eq!(gw.balance("player-1").await, START);
    gw.finish().await;
}

#[tokio::test]
async fn rollback_of_an_unknown_transaction_may_answer_not_found_and_still_tombstones() {
    let gw = gateway().await;
    let strict = |action, body| gw.native("strict", "strict-secret-for-tests", action, body);
    let a = ok(&strict("rollback", rollback("player-1", "rb1", "b1")).await);
    assert_eq!(a["status"], "TRANSACTION_NOT_FOUND");
    let retry = ok(&strict("rollback", rollback("player-1", "rb1", "b1")).await);
    assert_eq!(retry["status"], "TRANSACTION_NOT_FOUND");
    assert_eq!(retry["duplicate"], true);
    gw.sql(
        "INSERT INTO game_sessions (token, player_id, currency, expires_at)
         SELECT 'live', id, 'EUR', now() + interval '1 hour' FROM players WHERE external_id = 'player-1';",
    )
    .await;
    let mut late = bet("player-1", "b1", "10.00", "r1");
    late["session_token"] = json!("live");
    assert_eq!(
        ok(&strict("bet", late).await)["status"],
        "TRANSACTION_ROLLED_BACK"
    );
    assert_eq!(gw.balance("player-1").await, START);
    gw.finish().await;
}

#[tokio::test]
async fn bet_in_a_closed_round_is_refused() {
    let gw = gateway().await;
    ok(&gw.demo("bet", bet("player-1", "b1", "1.00", "r1")).await);
    let end = ok(&gw
        .demo(
            "end-round",
            json!({"player_id": "player-1", "round_id": "r1", "game_id": "slot-1"}),
        )
        .await);
    assert_eq!(end["status"], "OK");
    answers(
        &gw,
        "bet",
        bet("player-1", "b2", "1.00", "r1"),
        "ROUND_CLOSED",
    )
    .await;
    // A bet flagged round_closed closes its round too.
    let mut last = bet("player-1", "b3", "1.00", "r2");
    last["round_closed"] = json!(true);
    answers(&gw, "bet", last, "OK").await;
    answers(
        &gw,
        "bet",
        bet("player-1", "b4", "1.00", "r2"),
        "ROUND_CLOSED",
    )
    .await;
    // Another player's round with the same id is a different round.
    answers(&gw, "bet", bet("player-2", "b5", "1.00", "r1"), "OK").await;
    // A win in a closed round is still credited.
    answers(&gw, "win", win("player-1", "w1", "5.00", "r1"), "OK").await;
    assert_eq!(gw.balance("player-1").await, START - 200 + 500);
    gw.finish().await;
}

#[tokio::test]
async fn win_credits_even_without_a_bet() {
    let gw = gateway().await;
    ok(&gw.demo("bet", bet("player-1", "b1", "10.00", "r1")).await);
    let a = ok(&gw.demo("win", win("player-1", "w1", "25.50", "r1")).await);
    assert_eq!(
        (a["status"].clone(), a["balance"].clone()),
        (json!("OK"), json!("1015.50"))
    );
    // Zero win, and a promo win with no bet at all.
    answers(&gw, "win", win("player-1", "w2", "0", "r1"), "OK").await;
    answers(
        &gw,
        "win",
        win("player-2", "promo", "5.00", "jackpot"),
        "OK",
    )
    .await;
    assert_eq!(gw.balance("player-1").await, START - 1000 + 2550);
    assert_eq!(gw.balance("player-2").await, START + 500);
    // A provider that refuses wins without a bet answers TRANSACTION_NOT_FOUND.
    let a = ok(&gw
        .native(
            "strict",
            "strict-secret-for-tests",
            "win",
            win("player-3", "promo", "5.00", "zz"),
        )
        .await);
    assert_eq!(a["status"], "TRANSACTION_NOT_FOUND");
    assert_eq!(gw.balance("player-3").await, START);
    gw.finish().await;
}

#[tokio::test]
async fn win_for_a_rolled_back_bet_is_refused() {
    let gw = gateway().await;
    ok(&gw.demo("bet", bet("player-1", "b1", "10.00", "r1")).await);
    ok(&gw.demo("rollback", rollback("player-1", "rb1", "b1")).await);
    let mut w = win("player-1", "w1", "20.00", "r1");
    w["bet_transaction_id"] = json!("b1");
    let a = ok(&gw.demo("win", w.clone()).await);
    assert_eq!(a["status"], "TRANSACTION_ROLLED_BACK");
    let retry = ok(&gw.demo("win", w).await);
    assert_eq!(
        (retry["status"].clone(), retry["duplicate"].clone()),
        (json!("TRANSACTION_ROLLED_BACK"), json!(true))
    );
    assert_eq!(gw.balance("player-1").await, START);
    gw.finish().await;
}

#[tokio::test]
async fn rollback_credits_back_an_open_bet_once() {
    let gw = gateway().await;
    ok(&gw.demo("bet", bet("player-1", "b1", "10.00", "r1")).await);
    let a = ok(&gw.demo("rollback", rollback("player-1", "rb1", "b1")).await);
    assert_eq!(
        (a["status"].clone(), a["balance"].clone()),
        (json!("OK"), json!("1000.00"))
    );
    // The same rollback again: replayed. Another rollback of the same bet: OK, no money.
    assert_eq!(
        ok(&gw.demo("rollback", rollback("player-1", "rb1", "b1")).await)["duplicate"],
        true
    );
    let a = ok(&gw.demo("rollback", rollback("player-1", "rb2", "b1")).await);
    assert_eq!(
        (a["status"].clone(), a["duplicate"].clone()),
        (json!("OK"), json!(false))
    );
    assert_eq!(gw.balance("player-1").await, START);
    assert_eq!(gw.ledger_len("player-1").await, 4);
    gw.finish().await;
}

#[tokio::test]
async fn rollback_of_a_failed_bet_is_ok_and_moves_nothing() {
    let gw = gateway().await;
    answers(
        &gw,
        "bet",
        bet("player-1", "b1", "5000.00", "r1"),
        "INSUFFICIENT_FUNDS",
    )
    .await;
    let a = ok(&gw.demo("rollback", rollback("player-1", "rb1", "b1")).await);
    assert_eq!(
        (a["status"].clone(), a["balance"].clone()),
        (json!("OK"), json!("1000.00"))
    );
    assert_eq!(gw.balance("player-1").await, START);
    gw.finish().await;
}

#[tokio::test]
async fn rollback_of_a_settled_bet_or_a_win_is_not_permitted() {
    let gw = gateway().await;
    ok(&gw.demo("bet", bet("player-1", "b1", "10.00", "r1")).await);
    ok(&gw.demo("win", win("player-1", "w1", "30.00", "r1")).await);
    answers(
        &gw,
        "rollback",
        rollback("player-1", "rb1", "b1"),
        "ROLLBACK_NOT_PERMITTED",
    )
    .await;
    answers(
        &gw,
        "rollback",
        rollback("player-1", "rb2", "w1"),
        "ROLLBACK_NOT_PERMITTED",
    )
    .await;
    // A win naming its bet settles exactly that bet.
    ok(&gw.demo("bet", bet("player-1", "b2", "1.00", "r2")).await);
    ok(&gw.demo("bet", bet("player-1", "b3", "1.00", "r2")).await);
    let mut w = win("player-1", "w2", "0", "r2");
    w["bet_transaction_id"] = json!("b2");
    ok(&gw.demo("win", w).await);
    answers(
        &gw,
        "rollback",
        rollback("player-1", "rb3", "b2"),
        "ROLLBACK_NOT_PERMITTED",
    )
    .await;
    answers(&gw, "rollback", rollback("player-1", "rb4", "b3"), "OK").await;
    assert_eq!(gw.balance("player-1").await, START - 1000 + 3000 - 100);
    gw.finish().await;
}

#[tokio::test]
async fn win_rollback_where_policy_allows_may_go_negative_and_flags_the_wallet() {
    let gw = gateway().await;
    let strict = |action, body| gw.native("strict", "strict-secret-for-tests", action, body);
    gw.sql(
        "INSERT INTO game_sessions (token, player_id, currency, expires_at)
         SELECT 'live', id, 'EUR', now() + interval '1 hour' FROM players WHERE external_id = 'player-1';",
    )
    .await;
    let mut b = bet("player-1", "b1", "1000.00", "r1");
    b["session_token"] = json!("live");
    assert_eq!(ok(&strict("bet", b).await)["status"], "OK");
    let mut w = win("player-1", "w1", "500.00", "r1");
    w["bet_transaction_id"] = json!("b1");
    assert_eq!(ok(&strict("win", w).await)["status"], "OK");
    // Spend some of the win, then the provider reverses the win.
    let mut b = bet("player-1", "b2", "400.00", "r2");
    b["session_token"] = json!("live");
    assert_eq!(ok(&strict("bet", b).await)["status"], "OK");
    let a = ok(&strict("rollback", rollback("player-1", "rb1", "w1")).await);
    assert_eq!(
        (a["status"].clone(), a["balance"].clone()),
        (json!("OK"), json!("-400.00"))
    );
    assert_eq!(gw.balance("player-1").await, -40_000);
    let client = gw.db.connect().await;
    let flagged: bool = client
        .query_one("SELECT needs_reconciliation FROM wallets w JOIN players p ON p.id = w.player_id WHERE p.external_id = 'player-1'", &[])
        .await
        .unwrap()
        .get(0);
    assert!(flagged);
    // Rolling the same win back again moves nothing.
    assert_eq!(
        ok(&strict("rollback", rollback("player-1", "rb2", "w1")).await)["status"],
        "OK"
    );
    assert_eq!(gw.balance("player-1").await, -40_000);
    gw.finish().await;
}

#[tokio::test]
async fn end_round_closes_idempotently_and_balance_answers() {
    let gw = gateway().await;
    ok(&gw.demo("bet", bet("player-1", "b1", "2.50", "r1")).await);
    let body = json!({"player_id": "player-1", "round_id": "r1", "game_id": "slot-1"});
    for _ in 0..2 {
        let a = ok(&gw.demo("end-round", body.clone()).await);
        assert_eq!(
            (a["status"].clone(), a["balance"].clone()),
            (json!("OK"), json!("997.50"))
        );
    }
    let client = gw.db.connect().await;
    let closed: bool = client
        .query_one("SELECT closed FROM rounds WHERE round_id = 'r1'", &[])
        .await
        .unwrap()
        .get(0);
    assert!(closed);
    let a = ok(&gw.demo("balance", json!({"player_id": "player-1"})).await);
    assert_eq!(
        (
            a["status"].clone(),
            a["balance"].clone(),
            a["currency"].clone()
        ),
        (json!("OK"), json!("997.50"), json!("EUR"))
    );
    let a = ok(&gw
        .demo(
            "balance",
            json!({"player_id": "player-1", "currency": "USD"}),
        )
        .await);
    assert_eq!(a["status"], "CURRENCY_MISMATCH");
    let a = ok(&gw.demo("balance", json!({"player_id": "ghost"})).await);
    assert_eq!(a["status"], "UNKNOWN_PLAYER");
    assert_eq!(gw.balance("player-1").await, START - 250);
    gw.finish().await;
}

/// Brief §4/§5: the answer names the player's wallet wherever one is known.
#[tokio::test]
async fn answers_carry_the_default_wallet_wherever_the_player_has_one() {
    let gw = gateway().await;
    // A wallet in a currency the player does not hold, or one the gateway does not know.
    for (tx, currency) in [("b-usd", "USD"), ("b-xyz", "XYZ")] {
        let mut body = bet("player-1", tx, "1.00", "r1");
        body["currency"] = json!(currency);
        let a = ok(&gw.demo("bet", body).await);
        assert_eq!(
            (
                a["status"].clone(),
                a["balance"].clone(),
                a["currency"].clone()
            ),
            (json!("CURRENCY_MISMATCH"), json!("1000.00"), json!("EUR")),
            "{currency}"
        );
    }
    let a = ok(&gw
        .demo(
            "balance",
            json!({"player_id": "player-1", "currency": "XYZ"}),
        )
        .await);
    assert_eq!(
        (a["status"].clone(), a["balance"].clone()),
        (json!("CURRENCY_MISMATCH"), json!("1000.00"))
    );
    let a = ok(&gw
        .demo("rollback", rollback("player-1", "rb-1", "never-seen"))
        .await);
    assert_eq!(
        (a["balance"].clone(), a["currency"].clone()),
        (json!("1000.00"), json!("EUR"))
    );
    // Ending a round is never refused, not even for a player nobody knows.
    let body = json!({"player_id": "nobody", "round_id": "r1", "game_id": "slot-1"});
    assert_eq!(ok(&gw.demo("end-round", body).await)["status"], "OK");
    assert_eq!(gw.balance("player-1").await, START);
    gw.finish().await;
}

#[tokio::test]
async fn the_default_wallet_is_the_first_created_and_wins_keep_their_bets_currency() {
    let gw = gateway().await;
    // player-1 opened EUR first; AUD (alphabetically first) and USD come later.
    gw.sql(
        "INSERT INTO wallets (player_id, currency, balance, created_at)
             SELECT id, c, 5000, now() + interval '1 second' FROM players, (VALUES ('AUD'), ('USD')) v(c)
             WHERE external_id = 'player-1';
         INSERT INTO transactions (kind, outcome, player_id, currency, amount, real_delta,
                                   balance_before, balance_after, bonus_before, bonus_after)
             SELECT 'deposit', 'OK', id, c, 5000, 5000, 0, 5000, 0, 0
             FROM players, (VALUES ('AUD'), ('USD')) v(c) WHERE external_id = 'player-1';",
    )
    .await;
    let a = ok(&gw.demo("balance", json!({"player_id": "player-1"})).await);
    assert_eq!(
        (a["currency"].clone(), a["balance"].clone()),
        (json!("EUR"), json!("1000.00"))
    );
    // A win naming a EUR bet cannot be paid in USD.
    ok(&gw
        .demo("bet", bet("player-1", "b-eur", "10.00", "r1"))
        .await);
    let mut usd_win = win("player-1", "w-usd", "30.00", "r1");
    usd_win["currency"] = json!("USD");
    usd_win["bet_transaction_id"] = json!("b-eur");
    let a = ok(&gw.demo("win", usd_win.clone()).await);
    assert_eq!(a["status"], "CURRENCY_MISMATCH");
    let a = ok(&gw.demo("win", usd_win).await);
    assert_eq!(
        (a["status"].clone(), a["duplicate"].clone()),
        (json!("CURRENCY_MISMATCH"), json!(true))
    );
    let client = gw.db.connect().await;
    let usd: i64 = client
        .query_one(
            "SELECT balance FROM wallets w JOIN players p ON p.id = w.player_id
             WHERE p.external_id = 'player-1' AND currency = 'USD'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(usd, 5000);
    gw.finish().await;
}

#[tokio::test]
async fn a_wallet_in_an_unknown_currency_refuses_only_calls_in_that_currency() {
    let gw = gateway().await;
    gw.sql(
        "INSERT INTO wallets (player_id, currency, balance)
             SELECT id, 'ZZZ', 0 FROM players WHERE external_id = 'player-2';",
    )
    .await;
    // The player's EUR play goes on, batched with other players' calls.
    let (a, b) = tokio::join!(
        gw.demo("bet", bet("player-2", "b-2", "3.00", "r1")),
        gw.demo("bet", bet("player-3", "b-3", "4.00", "r1")),
    );
    assert_eq!(ok(&a)["status"], "OK");
    assert_eq!(ok(&b)["status"], "OK");
    let mut zzz = bet("player-2", "b-z", "1.00", "r1");
    zzz["currency"] = json!("ZZZ");
    answers(&gw, "bet", zzz, "CURRENCY_MISMATCH").await;
    assert_eq!(gw.balance("player-2").await, START - 300);
    gw.finish().await;
}

#[tokio::test]
async fn a_win_naming_no_bet_cannot_pay_a_round_whose_bets_were_all_rolled_back() {
    let gw = gateway().await;
    ok(&gw.demo("bet", bet("player-1", "b1", "5.00", "r1")).await);
    ok(&gw.demo("rollback", rollback("player-1", "x1", "b1")).await);
    let a = ok(&gw.demo("win", win("player-1", "w1", "9.00", "r1")).await);
    assert_eq!(a["status"], "TRANSACTION_ROLLED_BACK");
    // Final and stored.
    let again = ok(&gw.demo("win", win("player-1", "w1", "9.00", "r1")).await);
    assert_eq!(
        (again["status"].clone(), again["duplicate"].clone()),
        (json!("TRANSACTION_ROLLED_BACK"), json!(true))
    );
    // A round with a bet still open pays, whatever else was rolled back in it.
    ok(&gw.demo("bet", bet("player-1", "b2", "1.00", "r2")).await);
    ok(&gw.demo("bet", bet("player-1", "b3", "2.00", "r2")).await);
    ok(&gw.demo("rollback", rollback("player-1", "x2", "b2")).await);
    answers(&gw, "win", win("player-1", "w2", "4.00", "r2"), "OK").await;
    assert_eq!(gw.balance("player-1").await, START - 200 + 400);
    gw.finish().await;
}
