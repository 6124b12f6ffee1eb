//! The player's REST endpoints over real HTTP and PostgreSQL: balance, history with filters
//! and cursors, limits, self-exclusion, game launch, and that no id in a path, query or cursor
//! reaches another player's data.

use gateway::test_util::{start_gateway, Answer, TestGateway, REST_ON};
use http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::money_path::{bet, rollback, win};

async fn gateway() -> TestGateway {
    start_gateway(REST_ON).await
}

fn data(a: &Answer) -> Value {
    let body = a.json();
    assert!(a.status.is_success(), "{body}");
    assert_eq!(body["success"], true);
    body["data"].clone()
}

fn refused(a: &Answer, status: StatusCode, code: &str) -> Value {
    let body = a.json();
    assert_eq!(
        (a.status, body["code"].as_str()),
        (status, Some(code)),
        "{body}"
    );
    body
}

async fn status(gw: &TestGateway, action: &str, body: Value) -> String {
    let a = gw.demo(action, body).await;
    assert_eq!(a.status, StatusCode::OK);
    a.json()["status"].as_str().unwrap().to_string()
}

/// Every item of a list, page after page by its cursors, from `first` (a path with a query).
async fn walk(gw: &TestGateway, token: &str, first: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut path = first.to_string();
    loop {
        let page = data(&gw.api(Method::GET, &path, Some(token), None).await);
        items.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("{first}&cursor={c}"),
            None => return items,
        }
    }
}

/// One text field of every item of a page.
fn column<'a>(page: &'a Value, key: &str) -> Vec<&'a str> {
    let items = page["items"].as_array().unwrap().iter();
    items.map(|t| t[key].as_str().unwrap()).collect()
}

/// Sends a demo call that must be accepted.
async fn settled(gw: &TestGateway, action: &str, body: Value) {
    assert_eq!(status(gw, action, body).await, "OK", "{action}");
}

#[tokio::test]
async fn balance_history_and_rounds_with_filters_and_cursors() {
    let gw = gateway().await;
    settled(&gw, "bet", bet("player-1", "b1", "10.00", "r1")).await;
    settled(&gw, "win", win("player-1", "w1", "25.50", "r1")).await;
    settled(&gw, "bet", bet("player-1", "b2", "5.00", "r2")).await;
    settled(&gw, "rollback", rollback("player-1", "x2", "b2")).await;
    assert_eq!(
        status(&gw, "bet", bet("player-1", "b3", "2000.00", "r3")).await,
        "INSUFFICIENT_FUNDS"
    );
    let token = gw.player_token("player-1").await;
    let get = |path: &str| {
        let path = path.to_string();
        let (gw, token) = (&gw, &token);
        async move { gw.api(Method::GET, &path, Some(token), None).await }
    };

    let wallets = data(&get("/api/user/balance").await);
    assert_eq!(
        wallets,
        json!([{"currency": "EUR", "balance": "1015.50", "bonus": "0.00", "balance_minor": 101550, "bonus_minor": 0}])
    );

    // Newest first: the refused bet, rollback, bet, win, bet, seed deposit.
    let all = data(&get("/api/user/transactions").await);
    let kinds = column(&all, "kind");
    assert_eq!(kinds, ["bet", "rollback", "bet", "win", "bet", "deposit"]);
    assert_eq!(all["items"][0]["outcome"], "INSUFFICIENT_FUNDS");
    assert_eq!(all["items"][3]["amount"], "25.50");
    assert_eq!(all["items"][3]["balance_after"], "1015.50");
    assert_eq!(all["items"][3]["provider"], "demo");
    assert_eq!(all["next_cursor"], Value::Null);

    let bets = data(&get("/api/user/transactions?kind=bet").await);
    assert_eq!(bets["items"].as_array().unwrap().len(), 3);
    let round = data(&get("/api/user/transactions?round=r1").await);
    let ids = column(&round, "provider_tx_id");
    assert_eq!(ids, ["w1", "b1"]);
    let future = data(&get("/api/user/transactions?from=2999-01-01T00:00:00Z").await);
    assert_eq!(future["items"], json!([]));
    let past = data(&get("/api/user/transactions?to=2000-01-01T00:00:00Z").await);
    assert_eq!(past["items"], json!([]));

    // Pages of two walk the same six rows, in order, without repeats.
    let walked: Vec<i64> = walk(&gw, &token, "/api/user/transactions?limit=2")
        .await
        .iter()
        .map(|t| t["id"].as_i64().unwrap())
        .collect();
    let expected: Vec<i64> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_i64().unwrap())
        .collect();
    assert_eq!(walked, expected);

    // Rounds with their totals; the refused bet's round has nothing accepted.
    let rounds = data(&get("/api/user/rounds").await);
    let items = rounds["items"].as_array().unwrap();
    let r1 = items.iter().find(|r| r["round_id"] == "r1").unwrap();
    assert_eq!(
        (r1["bet"].as_str(), r1["win"].as_str()),
        (Some("10.00"), Some("25.50"))
    );
    let r2 = items.iter().find(|r| r["round_id"] == "r2").unwrap();
    assert_eq!(r2["refunded"], "5.00");
    let walked: Vec<String> = walk(&gw, &token, "/api/user/rounds?limit=1")
        .await
        .iter()
        .map(|r| r["round_id"].as_str().unwrap().to_string())
        .collect();
    let listed: Vec<String> = items
        .iter()
        .map(|r| r["round_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(walked, listed);

    // Bad filters are named.
    for (query, field) in [
        ("kind=loan", "kind"),
        ("from=yesterday", "from"),
        // Issue 33 (12): a time without its zone would be read in the session's zone.
        ("from=2026-01-31T12:00:00", "from"),
        ("to=2026-01-31%2012:00:00", "to"),
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("cursor=%21%21", "cursor"),
        ("player_id=2", "player_id"),
    ] {
        let a = get(&format!("/api/user/transactions?{query}")).await;
        let body = refused(&a, StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
        let named = body["errors"][0]["field"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let message = body["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(named == field || message.contains(field), "{query}: {body}");
    }
    gw.finish().await;
}

/// A player's rounds are found through the player's ledger rows (migration 0020: `rounds` has
/// no index led by the player), each listed once, at its opening, whatever rows follow it:
/// several bets, a win that closes it, two rows written by one call.
#[tokio::test]
async fn rounds_are_listed_once_each_newest_first_whatever_their_rows() {
    let gw = gateway().await;
    settled(&gw, "bet", bet("player-2", "a1", "1.00", "ra")).await;
    settled(&gw, "bet", bet("player-2", "a2", "2.00", "ra")).await;
    let mut closing = win("player-2", "a3", "7.00", "ra");
    closing["round_closed"] = json!(true);
    settled(&gw, "win", closing).await;
    // One SoftSwiss-style call: a bet and its win, two ledger rows of one transaction.
    let both = json!({"user_id": "player-2", "currency": "EUR", "game": "ss-slot",
                      "game_id": "rb", "finished": false,
                      "actions": [{"action": "bet", "action_id": "b1", "amount": 300},
                                  {"action": "win", "action_id": "b2", "amount": 100}]});
    let a = gw.ss("play", &both).await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    settled(&gw, "bet", bet("player-2", "c1", "4.00", "rc")).await;
    // Another player's round in between is not the caller's.
    settled(&gw, "bet", bet("player-3", "d1", "1.00", "rd")).await;

    let token = gw.player_token("player-2").await;
    let get = |path: &str| {
        let path = path.to_string();
        let (gw, token) = (&gw, &token);
        async move { data(&gw.api(Method::GET, &path, Some(token), None).await) }
    };
    let all = get("/api/user/rounds").await;
    assert_eq!(column(&all, "round_id"), ["rc", "rb", "ra"]);
    let ra = &all["items"][2];
    assert_eq!(
        (&ra["bet"], &ra["win"], &ra["closed"]),
        (&json!("3.00"), &json!("7.00"), &json!(true))
    );
    let rb = &all["items"][1];
    assert_eq!((&rb["bet"], &rb["win"]), (&json!("3.00"), &json!("1.00")));
    assert_eq!(
        column(&get("/api/user/rounds?closed=true").await, "round_id"),
        ["ra"]
    );
    assert_eq!(
        column(&get("/api/user/rounds?closed=false").await, "round_id"),
        ["rc", "rb"]
    );
    // From a round's start on: it and the newer ones.
    let from = all["items"][1]["created_at"]
        .as_str()
        .unwrap()
        .replace('+', "%2B");
    assert_eq!(
        column(
            &get(&format!("/api/user/rounds?from={from}")).await,
            "round_id"
        ),
        ["rc", "rb"]
    );
    let walked: Vec<String> = walk(&gw, &token, "/api/user/rounds?limit=1")
        .await
        .iter()
        .map(|r| r["round_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(walked, ["rc", "rb", "ra"]);
    gw.finish().await;
}

#[tokio::test]
async fn no_player_can_reach_another_players_data() {
    let gw = gateway().await;
    settled(&gw, "bet", bet("player-1", "b1", "10.00", "secret-round")).await;
    settled(&gw, "bet", bet("player-2", "c1", "1.00", "own-round")).await;
    let one = gw.player_token("player-1").await;
    let two = gw.player_token("player-2").await;
    let get = |path: &str, token: &str| {
        let path = path.to_string();
        let token = token.to_string();
        let gw = &gw;
        async move { gw.api(Method::GET, &path, Some(&token), None).await }
    };
    // Player 2 filtering by player 1's round sees nothing.
    let seen = data(&get("/api/user/transactions?round=secret-round", &two).await);
    assert_eq!(seen["items"], json!([]));
    // Player 1's cursor in player 2's hands pages player 2's rows only.
    let page = data(&get("/api/user/transactions?limit=1", &one).await);
    let cursor = page["next_cursor"].as_str().unwrap();
    let theirs = data(&get(&format!("/api/user/transactions?cursor={cursor}"), &two).await);
    for t in theirs["items"].as_array().unwrap() {
        assert_ne!(t["round_id"], "secret-round", "{t}");
    }
    let rounds = data(&get("/api/user/rounds", &two).await);
    assert!(rounds["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["round_id"] == "own-round"));
    // Ids of other players through the back office: 403 for a player, whatever the id.
    for id in ["1", "2", "3", "999"] {
        let a = get(&format!("/api/admin/players/{id}"), &two).await;
        refused(&a, StatusCode::FORBIDDEN, "FORBIDDEN");
    }
    refused(
        &get("/api/admin/players", &two).await,
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
    );
    // A staff token on the player routes: 403 (staff have no wallet).
    let admin = gw.admin_token(0).await;
    refused(
        &get("/api/user/balance", &admin).await,
        StatusCode::FORBIDDEN,
        "PLAYERS_ONLY",
    );
    // The admin sees both players through the back office.
    let listed = data(&get("/api/admin/players?username=player-", &admin).await);
    assert_eq!(listed["items"].as_array().unwrap().len(), 10);
    let detail = data(&get("/api/admin/players/1", &admin).await);
    assert_eq!(detail["username"], "player-1");
    assert_eq!(detail["wallets"][0]["balance"], "990.00");
    refused(
        &get("/api/admin/players/0", &admin).await,
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
    );
    refused(
        &get("/api/admin/players/99999", &admin).await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
    gw.finish().await;
}

#[tokio::test]
async fn limits_tighten_at_once_and_loosen_after_a_day() {
    let gw = gateway().await;
    let token = gw.player_token("player-1").await;
    let put = |body: Value| gw.api(Method::PUT, "/api/user/limits", Some(&token), Some(body));
    let set = data(&put(json!({"kind": "loss", "period": "day", "amount": "50.00"})).await);
    assert_eq!(
        set,
        json!([{"currency": "EUR", "kind": "loss", "period": "day", "amount": "50.00", "pending": null}])
    );
    // Raising waits 24 h: 50.00 stays in force, 80.00 is pending.
    let raised = data(&put(json!({"kind": "loss", "period": "day", "amount": "80.00"})).await);
    assert_eq!(raised[0]["amount"], "50.00");
    assert_eq!(raised[0]["pending"]["amount"], "80.00");
    let effective = raised[0]["pending"]["effective_at"].as_str().unwrap();
    let at = humantime::parse_rfc3339_weak(effective).unwrap();
    let wait = at
        .duration_since(std::time::SystemTime::now())
        .unwrap()
        .as_secs();
    assert!((86_000..=86_400).contains(&wait), "effective in {wait} s");
    // Lowering applies at once and drops the pending raise.
    let lowered = data(&put(json!({"kind": "loss", "period": "day", "amount": "30.00"})).await);
    assert_eq!(
        (lowered[0]["amount"].as_str(), &lowered[0]["pending"]),
        (Some("30.00"), &Value::Null)
    );
    // Removing is a loosening: pending.
    let removed = data(&put(json!({"kind": "loss", "period": "day", "amount": null})).await);
    assert_eq!(removed[0]["amount"], "30.00");
    assert_eq!(removed[0]["pending"]["amount"], Value::Null);
    data(&put(json!({"kind": "max_bet", "amount": "5.00"})).await);
    let all = data(
        &gw.api(Method::GET, "/api/user/limits", Some(&token), None)
            .await,
    );
    assert_eq!(all.as_array().unwrap().len(), 2);
    for (body, field) in [
        (json!({"kind": "loss", "amount": "1.00"}), "period"),
        (
            json!({"kind": "loss", "period": "year", "amount": "1.00"}),
            "period",
        ),
        (
            json!({"kind": "max_bet", "period": "day", "amount": "1.00"}),
            "period",
        ),
        (
            json!({"kind": "deposit", "period": "day", "amount": "1.00"}),
            "kind",
        ),
        (
            json!({"kind": "loss", "period": "day", "amount": "1.001"}),
            "amount",
        ),
        (
            json!({"kind": "loss", "period": "day", "amount": "-1"}),
            "amount",
        ),
        (
            json!({"kind": "loss", "period": "day", "amount": 1}),
            "amount",
        ),
        (
            json!({"kind": "loss", "period": "day", "amount": "1.00", "currency": "USD"}),
            "currency",
        ),
    ] {
        let body = refused(
            &put(body.clone()).await,
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        );
        assert_eq!(body["errors"][0]["field"], field, "{body}");
    }
    gw.finish().await;
}

#[tokio::test]
async fn self_exclusion_cannot_be_shortened_and_blocks_game_launch() {
    let gw = gateway().await;
    let token = gw.player_token("player-1").await;
    let exclude = |days: Value| {
        gw.api(
            Method::POST,
            "/api/user/self-exclusion",
            Some(&token),
            Some(json!({"days": days})),
        )
    };
    let launch = || {
        gw.api(
            Method::POST,
            "/api/games/slot-1/launch",
            Some(&token),
            Some(json!({"provider": "demo"})),
        )
    };
    // Before: a launch works.
    let session = data(&launch().await);
    assert_eq!(session["currency"], "EUR");
    assert!(session["launch_url"]
        .as_str()
        .unwrap()
        .starts_with("https://games.example.com/slot-1?token="));
    assert!(session["launch_url"]
        .as_str()
        .unwrap()
        .ends_with("&cur=EUR&p=player-1"));
    refused(
        &exclude(json!(0)).await,
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
    );
    refused(
        &exclude(json!(3651)).await,
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
    );
    refused(
        &exclude(json!("7")).await,
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
    );
    let until = data(&exclude(json!(30)).await)["self_excluded_until"].clone();
    refused(
        &exclude(json!(1)).await,
        StatusCode::CONFLICT,
        "EXCLUSION_CANNOT_BE_SHORTENED",
    );
    let longer = data(&exclude(json!(60)).await)["self_excluded_until"].clone();
    assert!(longer.as_str() > until.as_str());
    refused(&launch().await, StatusCode::FORBIDDEN, "PLAYER_BLOCKED");
    gw.finish().await;
}

#[tokio::test]
async fn game_launch_refuses_unknown_providers_games_and_currencies() {
    let gw = gateway().await;
    let token = gw.player_token("player-1").await;
    let launch = |game: &str, body: Value| {
        let path = format!("/api/games/{game}/launch");
        let gw = &gw;
        let token = token.clone();
        async move { gw.api(Method::POST, &path, Some(&token), Some(body)).await }
    };
    refused(
        &launch("slot-1", json!({"provider": "nope"})).await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
    refused(
        &launch("bad%20id", json!({"provider": "demo"})).await,
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
    );
    refused(
        &launch("slot-1", json!({"provider": "demo", "currency": "USD"})).await,
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
    );
    // No launch URL configured: the session still comes, without a URL.
    let s = data(&launch("slot-1", json!({"provider": "strict"})).await);
    assert_eq!(s["launch_url"], Value::Null);
    assert_eq!(s["session_token"].as_str().unwrap().len(), 43);
    refused(
        &gw.api(
            Method::POST,
            "/api/games/slot-1/launch",
            None,
            Some(json!({"provider": "demo"})),
        )
        .await,
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
    );
    gw.finish().await;
}
