//! What a player sets through the REST module binds the callback path: a bet over a loss
//! limit or by a self-excluded player is refused while wins still apply, and a launch's
//! session token is what a session-requiring provider's bets need, until it expires.

use std::time::Duration;

use gateway::test_util::{start_gateway, REST_ON};
use http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::money_path::{bet, win, START};

fn answer(a: &gateway::test_util::Answer) -> Value {
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.json());
    a.json()
}

#[tokio::test]
async fn a_loss_limit_set_by_the_player_refuses_bets_but_not_wins() {
    let gw = start_gateway(REST_ON).await;
    let token = gw.player_token("player-1").await;
    let limit = json!({"kind": "loss", "period": "day", "amount": "10.00"});
    let set = gw
        .api(Method::PUT, "/api/user/limits", Some(&token), Some(limit))
        .await;
    assert_eq!(set.status, StatusCode::OK);
    crate::money_path::answers(&gw, "bet", bet("player-1", "b1", "8.00", "r1"), "OK").await;
    let over = answer(&gw.demo("bet", bet("player-1", "b2", "5.00", "r1")).await);
    assert_eq!(over["status"], "LIMIT_EXCEEDED");
    // A win for the same player is applied, and gives room back under the loss limit.
    crate::money_path::answers(&gw, "win", win("player-1", "w1", "3.00", "r1"), "OK").await;
    crate::money_path::answers(&gw, "bet", bet("player-1", "b3", "5.00", "r2"), "OK").await;
    assert_eq!(gw.balance("player-1").await, START - 800 + 300 - 500);
    // A raise is not in force yet: the next bet over the old limit is still refused.
    let raise = json!({"kind": "loss", "period": "day", "amount": "500.00"});
    gw.api(Method::PUT, "/api/user/limits", Some(&token), Some(raise))
        .await;
    let still = answer(&gw.demo("bet", bet("player-1", "b4", "1.00", "r2")).await);
    assert_eq!(still["status"], "LIMIT_EXCEEDED");
    gw.finish().await;
}

#[tokio::test]
async fn a_self_excluded_player_cannot_bet_but_is_paid_wins() {
    let gw = start_gateway(REST_ON).await;
    crate::money_path::answers(&gw, "bet", bet("player-2", "b1", "10.00", "r1"), "OK").await;
    let token = gw.player_token("player-2").await;
    let a = gw
        .api(
            Method::POST,
            "/api/user/self-exclusion",
            Some(&token),
            Some(json!({"days": 7})),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
    let refused = answer(&gw.demo("bet", bet("player-2", "b2", "1.00", "r2")).await);
    assert_eq!(refused["status"], "PLAYER_BLOCKED");
    crate::money_path::answers(&gw, "win", win("player-2", "w1", "4.00", "r1"), "OK").await;
    assert_eq!(gw.balance("player-2").await, START - 1000 + 400);
    gw.finish().await;
}

#[tokio::test]
async fn a_launch_session_admits_bets_until_it_expires() {
    let config = format!("{REST_ON}\n");
    let config = config.replace(
        "[rest]\nenabled = true",
        "[rest]\nenabled = true\ngame_session_ttl_s = 2",
    );
    let gw = start_gateway(&config).await;
    let token = gw.player_token("player-3").await;
    let launch = gw
        .api(
            Method::POST,
            "/api/games/slot-1/launch",
            Some(&token),
            Some(json!({"provider": "strict"})),
        )
        .await;
    assert_eq!(launch.status, StatusCode::CREATED, "{:?}", launch.json());
    let session = launch.json()["data"]["session_token"]
        .as_str()
        .unwrap()
        .to_string();
    let strict = |tx: &str, session: &str| {
        let mut body = bet("player-3", tx, "1.00", "r1");
        body["session_token"] = json!(session);
        gw.native("strict", "strict-secret-for-tests", "bet", body)
    };
    assert_eq!(answer(&strict("s1", &session).await)["status"], "OK");
    // Bound to its game: another game's bet with the same token is refused.
    let mut other_game = bet("player-3", "s2", "1.00", "r1");
    other_game["session_token"] = json!(session);
    other_game["game_id"] = json!("slot-2");
    let a = answer(
        &gw.native("strict", "strict-secret-for-tests", "bet", other_game)
            .await,
    );
    assert_eq!(a["status"], "INVALID_SESSION");
    // Bound to its player: another player's bet with it is refused.
    let mut other_player = bet("player-4", "s3", "1.00", "r9");
    other_player["session_token"] = json!(session);
    let a = answer(
        &gw.native("strict", "strict-secret-for-tests", "bet", other_player)
            .await,
    );
    assert_eq!(a["status"], "INVALID_SESSION");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        answer(&strict("s4", &session).await)["status"],
        "INVALID_SESSION"
    );
    // Wins need no session.
    let w = answer(
        &gw.native(
            "strict",
            "strict-secret-for-tests",
            "win",
            win("player-3", "w1", "2.00", "r1"),
        )
        .await,
    );
    assert_eq!(w["status"], "OK");
    gw.finish().await;
}
