//! The SoftSwiss-style dialect over real HTTP and PostgreSQL: HMAC signatures on the raw body,
//! multi-action `/play` calls applied atomically, rollbacks before their actions.

use http::StatusCode;
use serde_json::{json, Value};

use crate::money_path::{gateway, START};

fn play(player: &str, round: &str, finished: bool, actions: Value) -> Value {
    json!({"user_id": player, "currency": "EUR", "game": "ss-slot", "game_id": round,
           "finished": finished, "actions": actions})
}

#[tokio::test]
async fn signatures_are_hmac_over_the_raw_body() {
    let gw = gateway().await;
    let body = play(
        "player-1",
        "r1",
        false,
        json!([{"action": "bet", "action_id": "a1", "amount": 150}]),
    );
    let a = gw.ss("play", &body).await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    assert_eq!(a.json()["balance"], START - 150);
    let raw = serde_json::to_vec(&play(
        "player-1",
        "r1",
        false,
        json!([{"action": "bet", "action_id": "a2", "amount": 150}]),
    ))
    .unwrap();
    let good = gateway::provider::softswiss::sign(&raw, b"ss-secret-for-tests");
    let mut padded = raw.clone();
    padded.push(b'\n');
    for (sig, sent) in [
        (
            Some(gateway::provider::softswiss::sign(
                &raw,
                b"a-wrong-auth-token!",
            )),
            raw.clone(),
        ),
        (Some(good), padded),
        (None, raw),
    ] {
        let headers: Vec<(&str, String)> = sig.map(|s| ("X-REQUEST-SIGN", s)).into_iter().collect();
        let answer = gw
            .request(
                http::Method::POST,
                "/api/provider-callback/ss/play",
                &headers,
                sent,
            )
            .await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN);
        assert_eq!(answer.json()["code"], 403);
    }
    assert_eq!(gw.balance("player-1").await, START - 150);
    gw.finish().await;
}

#[tokio::test]
async fn a_multi_action_play_is_applied_whole_or_not_at_all() {
    let gw = gateway().await;
    let both = play(
        "player-1",
        "r1",
        false,
        json!([{"action": "bet", "action_id": "b1", "amount": 1000},
               {"action": "win", "action_id": "w1", "amount": 2500}]),
    );
    let a = gw.ss("play", &both).await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    let a = a.json();
    assert_eq!(a["balance"], START - 1000 + 2500);
    assert_eq!(a["game_id"], "r1");
    let txs = a["transactions"].as_array().unwrap();
    assert_eq!(txs.len(), 2);
    assert_eq!(txs[0]["action_id"], "b1");
    assert_ne!(txs[0]["tx_id"], "");
    // The same call again replays the same transactions.
    let again = gw.ss("play", &both).await.json();
    assert_eq!(again["transactions"][0]["tx_id"], txs[0]["tx_id"]);
    assert_eq!(again["transactions"][1]["tx_id"], txs[1]["tx_id"]);
    // A call whose second bet cannot be paid: nothing of it happens.
    let too_much = play(
        "player-1",
        "r2",
        false,
        json!([{"action": "bet", "action_id": "b2", "amount": 500},
               {"action": "bet", "action_id": "b3", "amount": 10_000_000}]),
    );
    let refused = gw.ss("play", &too_much).await;
    assert_eq!(refused.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(refused.json()["code"], 100);
    assert_eq!(refused.json()["balance"], START + 1500);
    assert_eq!(gw.balance("player-1").await, START + 1500);
    assert_eq!(gw.ledger_len("player-1").await, 3);
    // Reusing an action id with other data refuses the whole call.
    let reused = play(
        "player-1",
        "r3",
        false,
        json!([{"action": "bet", "action_id": "b4", "amount": 100},
               {"action": "bet", "action_id": "b1", "amount": 999}]),
    );
    let refused = gw.ss("play", &reused).await;
    assert_eq!(
        (refused.status, refused.json()["code"].clone()),
        (StatusCode::PRECONDITION_FAILED, json!(400))
    );
    assert_eq!(gw.balance("player-1").await, START + 1500);
    gw.finish().await;
}

#[tokio::test]
async fn rollbacks_before_their_actions_finished_rounds_and_balance() {
    let gw = gateway().await;
    let rollback = json!({"user_id": "player-1", "currency": "EUR", "game": "ss-slot", "game_id": "r1",
        "actions": [{"action": "rollback", "action_id": "rb1", "original_action_id": "late"}]});
    let a = gw.ss("rollback", &rollback).await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    assert_eq!(a.json()["transactions"][0]["tx_id"], "");
    let late = play(
        "player-1",
        "r1",
        false,
        json!([{"action": "bet", "action_id": "late", "amount": 100}]),
    );
    let refused = gw.ss("play", &late).await;
    assert_eq!(refused.status, StatusCode::PRECONDITION_FAILED);
    // A rollback of an applied bet gives it back, with a transaction id.
    gw.ss(
        "play",
        &play(
            "player-1",
            "r2",
            false,
            json!([{"action": "bet", "action_id": "b2", "amount": 300}]),
        ),
    )
    .await;
    let rollback = json!({"user_id": "player-1", "currency": "EUR", "game": "ss-slot", "game_id": "r2",
        "actions": [{"action": "rollback", "action_id": "rb2", "original_action_id": "b2"}]});
    let a = gw.ss("rollback", &rollback).await.json();
    assert_ne!(a["transactions"][0]["tx_id"], "");
    assert_eq!(gw.balance("player-1").await, START);
    // finished closes the round: a later bet in it is refused.
    let last = play(
        "player-1",
        "r3",
        true,
        json!([{"action": "bet", "action_id": "b3", "amount": 100},
        {"action": "win", "action_id": "w3", "amount": 0}]),
    );
    assert_eq!(gw.ss("play", &last).await.status, StatusCode::OK);
    let after = play(
        "player-1",
        "r3",
        false,
        json!([{"action": "bet", "action_id": "b4", "amount": 100}]),
    );
    assert_eq!(
        gw.ss("play", &after).await.status,
        StatusCode::PRECONDITION_FAILED
    );
    // No actions: the balance.
    let balance = gw
        .ss(
            "play",
            &json!({"user_id": "player-1", "currency": "EUR", "game": "ss-slot"}),
        )
        .await;
    assert_eq!(balance.json()["balance"], START - 100);
    gw.finish().await;
}

#[tokio::test]
async fn blocked_players_cannot_bet_but_wins_and_rollbacks_apply() {
    let gw = gateway().await;
    let bet = play(
        "player-2",
        "r1",
        false,
        json!([{"action": "bet", "action_id": "b1", "amount": 400}]),
    );
    assert_eq!(gw.ss("play", &bet).await.status, StatusCode::OK);
    let bet2 = play(
        "player-2",
        "r2",
        false,
        json!([{"action": "bet", "action_id": "b2", "amount": 100}]),
    );
    assert_eq!(gw.ss("play", &bet2).await.status, StatusCode::OK);
    gw.sql("UPDATE players SET status = 'banned' WHERE external_id = 'player-2'")
        .await;
    let refused = gw
        .ss(
            "play",
            &play(
                "player-2",
                "r3",
                false,
                json!([{"action": "bet", "action_id": "b3", "amount": 1}]),
            ),
        )
        .await;
    assert_eq!(
        (refused.status, refused.json()["code"].clone()),
        (StatusCode::PRECONDITION_FAILED, json!(110))
    );
    let win = play(
        "player-2",
        "r1",
        true,
        json!([{"action": "win", "action_id": "w1", "amount": 900}]),
    );
    assert_eq!(gw.ss("play", &win).await.status, StatusCode::OK);
    let rollback = json!({"user_id": "player-2", "currency": "EUR", "game": "ss-slot", "game_id": "r2",
        "actions": [{"action": "rollback", "action_id": "rb2", "original_action_id": "b2"}]});
    assert_eq!(gw.ss("rollback", &rollback).await.status, StatusCode::OK);
    assert_eq!(gw.balance("player-2").await, START - 400 + 900);
    gw.finish().await;
}

#[tokio::test]
async fn a_win_for_a_rolled_back_round_is_refused() {
    let gw = gateway().await;
    let bet = play(
        "player-1",
        "r1",
        false,
        json!([{"action": "bet", "action_id": "b1", "amount": 300}]),
    );
    assert_eq!(gw.ss("play", &bet).await.status, StatusCode::OK);
    let rollback = json!({"user_id": "player-1", "currency": "EUR", "game": "ss-slot", "game_id": "r1",
        "actions": [{"action": "rollback", "action_id": "rb1", "original_action_id": "b1"}]});
    assert_eq!(gw.ss("rollback", &rollback).await.status, StatusCode::OK);
    let win = play(
        "player-1",
        "r1",
        true,
        json!([{"action": "win", "action_id": "w1", "amount": 900}]),
    );
    let refused = gw.ss("play", &win).await;
    assert_eq!(
        (refused.status, refused.json()["code"].clone()),
        (StatusCode::PRECONDITION_FAILED, json!(400))
    );
    assert_eq!(gw.balance("player-1").await, START);
    gw.finish().await;
}
