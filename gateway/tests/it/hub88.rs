//! The Hub88-style dialect over real HTTP and PostgreSQL: RSA signatures on the raw body,
//! ×100,000 amounts, `transaction_uuid` idempotency, rollbacks before bets, token rules.

use gateway::test_util::{hub88_private_key, TestGateway};
use http::StatusCode;
use serde_json::{json, Value};

use crate::money_path::{gateway, START};

fn tx(player: &str, id: &str, amount: i64, round: &str, reference: Option<&str>) -> Value {
    let mut body = json!({"user": player, "token": "tok", "request_uuid": format!("rq-{id}"),
        "game_code": "slot-88", "currency": "EUR", "transaction_uuid": id, "round": round,
        "round_closed": false, "amount": amount, "is_free": false});
    if let Some(r) = reference {
        body["reference_transaction_uuid"] = json!(r);
    }
    body
}

/// Sends a signed call and checks the status it is answered with.
async fn answers(gw: &TestGateway, path: &str, body: Value, status: &str) {
    assert_eq!(ok(gw, path, body).await["status"], status, "{path}");
}

async fn ok(gw: &TestGateway, path: &str, body: Value) -> Value {
    let answer = gw.hub88(path, &body, &hub88_private_key()).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    answer.json()
}

#[tokio::test]
async fn signatures_are_rsa_over_the_raw_body() {
    let gw = gateway().await;
    let body = tx("player-1", "b1", 150_000, "r1", None);
    let a = ok(&gw, "transaction/bet", body.clone()).await;
    assert_eq!(
        (
            a["status"].clone(),
            a["balance"].clone(),
            a["request_uuid"].clone(),
            a["user"].clone()
        ),
        (
            json!("RS_OK"),
            json!(99_850_000),
            json!("rq-b1"),
            json!("player-1")
        )
    );
    // Another key, other bytes than signed, no signature, garbage: 401, nothing moves.
    let other_key = rsa::RsaPrivateKey::new(&mut rsa_rng(), 1024).expect("key");
    let b2 = tx("player-1", "b2", 100_000, "r1", None);
    let refused = gw.hub88("transaction/bet", &b2, &other_key).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(refused.json()["status"], "RS_ERROR_INVALID_SIGNATURE");
    let raw = serde_json::to_vec(&b2).unwrap();
    let signature = gateway::provider::hub88::sign(&raw, &hub88_private_key());
    let mut padded = raw.clone();
    padded.push(b' ');
    for (sig, sent) in [
        (Some(signature.clone()), padded),
        (None, raw.clone()),
        (Some("bm90IGEgc2lnbmF0dXJl".to_string()), raw.clone()),
    ] {
        let headers: Vec<(&str, String)> =
            sig.map(|s| ("X-Hub88-Signature", s)).into_iter().collect();
        let answer = gw
            .request(
                http::Method::POST,
                "/api/provider-callback/hub88/transaction/bet",
                &headers,
                sent,
            )
            .await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(gw.balance("player-1").await, START - 150);
    gw.finish().await;
}

/// Randomness for a throwaway test key.
fn rsa_rng() -> impl rsa::rand_core::CryptoRngCore {
    rsa::rand_core::OsRng
}

#[tokio::test]
async fn amounts_duplicates_and_the_state_machine() {
    let gw = gateway().await;
    // Not a whole number of cents.
    let a = ok(
        &gw,
        "transaction/bet",
        tx("player-1", "odd", 150_001, "r1", None),
    )
    .await;
    assert_eq!(a["status"], "RS_ERROR_WRONG_TYPES");
    let request = tx("nobody", "n1", 1_000, "r1", None);
    answers(&gw, "transaction/bet", request, "RS_ERROR_INVALID_TOKEN").await;
    let request = tx("player-1", "big", 500_000_000, "r1", None);
    answers(&gw, "transaction/bet", request, "RS_ERROR_NOT_ENOUGH_MONEY").await;
    let bet = tx("player-1", "b1", 1_000_000, "r1", None);
    ok(&gw, "transaction/bet", bet.clone()).await;
    // The same again replays; the same id with other data is a duplicate transaction.
    answers(&gw, "transaction/bet", bet, "RS_OK").await;
    let changed = tx("player-1", "b1", 2_000_000, "r1", None);
    answers(
        &gw,
        "transaction/bet",
        changed,
        "RS_ERROR_DUPLICATE_TRANSACTION",
    )
    .await;
    // Two bets in the round; one rolled back, the other won.
    ok(
        &gw,
        "transaction/bet",
        tx("player-1", "b2", 500_000, "r1", None),
    )
    .await;
    let rollback = tx("player-1", "rb1", 1_000_000, "r1", Some("b1"));
    answers(&gw, "transaction/rollback", rollback, "RS_OK").await;
    let win_rolled = tx("player-1", "w1", 3_000_000, "r1", Some("b1"));
    answers(
        &gw,
        "transaction/win",
        win_rolled,
        "RS_ERROR_TRANSACTION_ROLLED_BACK",
    )
    .await;
    let win = tx("player-1", "w2", 2_000_000, "r1", Some("b2"));
    answers(&gw, "transaction/win", win, "RS_OK").await;
    assert_eq!(gw.balance("player-1").await, START - 500 + 2_000);
    let info = ok(
        &gw,
        "user/balance",
        json!({"user": "player-1", "request_uuid": "q"}),
    )
    .await;
    assert_eq!(info["balance"], json!((START - 500 + 2_000) * 1_000));
    gw.finish().await;
}

#[tokio::test]
async fn rollback_before_bet_expired_tokens_and_blocked_players() {
    let gw = gateway().await;
    let rollback = tx("player-1", "rb-early", 100_000, "r1", Some("late"));
    let a = ok(&gw, "transaction/rollback", rollback).await;
    assert_eq!(
        (a["status"].clone(), a["balance"].clone()),
        (json!("RS_OK"), json!(START * 1_000))
    );
    let late = tx("player-1", "late", 100_000, "r1", None);
    answers(
        &gw,
        "transaction/bet",
        late,
        "RS_ERROR_TRANSACTION_ROLLED_BACK",
    )
    .await;
    // Blocked: bets refused; wins and rollbacks applied, whatever the token says.
    ok(
        &gw,
        "transaction/bet",
        tx("player-2", "p2b1", 200_000, "r2", None),
    )
    .await;
    ok(
        &gw,
        "transaction/bet",
        tx("player-2", "p2b2", 300_000, "r3", None),
    )
    .await;
    gw.sql("UPDATE players SET status = 'suspended' WHERE external_id = 'player-2'")
        .await;
    let request = tx("player-2", "p2b3", 100_000, "r4", None);
    answers(&gw, "transaction/bet", request, "RS_ERROR_USER_DISABLED").await;
    let mut win = tx("player-2", "p2w1", 900_000, "r2", Some("p2b1"));
    win["token"] = json!("expired-long-ago");
    answers(&gw, "transaction/win", win, "RS_OK").await;
    let rollback = tx("player-2", "p2rb", 300_000, "r3", Some("p2b2"));
    answers(&gw, "transaction/rollback", rollback, "RS_OK").await;
    assert_eq!(gw.balance("player-2").await, START - 200 + 900);
    gw.finish().await;
}

#[tokio::test]
async fn a_stale_token_refuses_bets_but_never_wins_or_rollbacks() {
    let gw = gateway().await;
    gw.sessions_live_and_stale("player-1").await;
    let key = hub88_private_key();
    let call = |path: &'static str, body: Value| {
        let key = key.clone();
        let gw = &gw;
        async move { gw.hub88_as("hub88s", path, &body, &key).await.json() }
    };
    let mut bet = tx("player-1", "s1", 100_000, "r1", None);
    bet["token"] = json!("live");
    assert_eq!(call("transaction/bet", bet).await["status"], "RS_OK");
    let mut stale_bet = tx("player-1", "s2", 100_000, "r1", None);
    stale_bet["token"] = json!("stale");
    assert_eq!(
        call("transaction/bet", stale_bet).await["status"],
        "RS_ERROR_TOKEN_EXPIRED"
    );
    let mut win = tx("player-1", "s3", 500_000, "r1", Some("s1"));
    win["token"] = json!("stale");
    assert_eq!(call("transaction/win", win).await["status"], "RS_OK");
    assert_eq!(gw.balance("player-1").await, START - 100 + 500);
    gw.finish().await;
}
