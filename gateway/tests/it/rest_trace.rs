//! Trace and replay over real HTTP and PostgreSQL, on a bet of every dialect: the trace shows
//! the bytes exactly as sent, the answer, the batch and timings, the balance before and after;
//! a replay goes through the whole pipeline and comes back a duplicate with the original
//! answer, moving no money, audited once.

use base64::Engine;
use gateway::test_util::{
    hub88_private_key, start_gateway, Answer, TestGateway, EVO_TOKEN, REST_ON,
};
use http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::rest_auth::{data, refused, staff_token};

/// One dialect's bet, as the test sent it.
struct Sent {
    dialect: &'static str,
    player: &'static str,
    /// The body bytes on the wire, as a trace keeps them (a signature in the body blanked).
    body: Vec<u8>,
    /// Multi-action callbacks skip the dedup index: their retries are answered by the ledger.
    unit: bool,
}

/// Sends one bet per dialect, each twice (the second a provider's retry), all answered 200.
async fn bets_of_every_dialect(gw: &TestGateway) -> Vec<Sent> {
    let mut sent = Vec::new();
    let native = crate::money_path::bet("player-1", "n-1", "1.50", "r-n");
    for _ in 0..2 {
        let a = gw.demo("bet", native.clone()).await;
        assert_eq!(a.status, StatusCode::OK, "{:?}", a.json());
    }
    sent.push(Sent {
        dialect: "native",
        player: "player-1",
        body: serde_json::to_vec(&native).unwrap(),
        unit: false,
    });

    let evo = r#"{"sid":"s","userId":"player-2","uuid":"u-e1","currency":"EUR",
        "game":{"id":"r-e","type":"blackjack","details":{"table":{"id":"bj-1","vid":null}}},
        "transaction":{"id":"e-1","refId":"eb-1","amount":2.25}}"#;
    for _ in 0..2 {
        let a = gw
            .evo_with_token("debit", evo.to_string(), Some(EVO_TOKEN))
            .await;
        assert_eq!(a.json()["status"], "OK", "{:?}", a.json());
    }
    sent.push(Sent {
        dialect: "evolution",
        player: "player-2",
        body: evo.as_bytes().to_vec(),
        unit: false,
    });

    let hub88 = json!({"user": "player-3", "token": "tok", "request_uuid": "rq-h1",
        "game_code": "slot-88", "currency": "EUR", "transaction_uuid": "h-1", "round": "r-h",
        "round_closed": false, "amount": 300_000, "is_free": false});
    for _ in 0..2 {
        let a = gw
            .hub88("transaction/bet", &hub88, &hub88_private_key())
            .await;
        assert_eq!(a.json()["status"], "RS_OK", "{:?}", a.json());
    }
    sent.push(Sent {
        dialect: "hub88",
        player: "player-3",
        body: serde_json::to_vec(&hub88).unwrap(),
        unit: false,
    });

    let ss = json!({"user_id": "player-4", "currency": "EUR", "game": "ss-slot",
        "game_id": "r-s", "finished": false,
        "actions": [{"action": "bet", "action_id": "s-1", "amount": 400}]});
    for _ in 0..2 {
        let a = gw.ss("play", &ss).await;
        assert_eq!(a.status, StatusCode::OK, "{:?}", a.json());
    }
    sent.push(Sent {
        dialect: "softswiss",
        player: "player-4",
        body: serde_json::to_vec(&ss).unwrap(),
        unit: true,
    });

    let pp = [
        ("userId", "player-5"),
        ("gameId", "vs20"),
        ("roundId", "r-p"),
        ("amount", "5.00"),
        ("reference", "p-1"),
        ("providerId", "PragmaticPlay"),
        ("timestamp", "1700000000000"),
    ];
    for _ in 0..2 {
        let a = gw.pp("bet", &pp).await;
        assert_eq!(a.json()["error"], 0, "{:?}", a.json());
    }
    // Issue 33 (9): kept without its signature, so a trace reader cannot send it again.
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.extend_pairs(pp.iter().copied());
    form.append_pair("hash", "redacted");
    sent.push(Sent {
        dialect: "pragmatic",
        player: "player-5",
        body: form.finish().into_bytes(),
        unit: false,
    });
    sent
}

/// The ledger id of `player`'s one bet.
async fn bet_id(gw: &TestGateway, player: &str) -> i64 {
    gw.value(
        "SELECT t.id FROM transactions t JOIN players p ON p.id = t.player_id
             WHERE p.external_id = $1 AND t.kind = 'bet'",
        &[&player],
    )
    .await
}

/// The trace of ledger transaction `id`, as the admin sees it (200 expected).
async fn trace_of(gw: &TestGateway, admin: &str, id: i64) -> Value {
    data(
        &gw.api(
            Method::GET,
            &format!("/api/admin/transactions/{id}/trace"),
            Some(admin),
            None,
        )
        .await,
        StatusCode::OK,
    )
}

/// Asks for transaction `id`'s replay as the holder of `token`.
async fn ask_replay(gw: &TestGateway, token: &str, id: i64, reason: &str) -> Answer {
    gw.api(
        Method::POST,
        &format!("/api/admin/transactions/{id}/replay"),
        Some(token),
        Some(json!({"reason": reason})),
    )
    .await
}

/// One accepted bet of player-1, its trace written; its ledger id.
async fn one_traced_bet(gw: &TestGateway) -> i64 {
    let bet = crate::money_path::bet("player-1", "t1", "1.00", "r1");
    crate::money_path::accepted(gw, "bet", bet).await;
    gw.flush_trace().await;
    bet_id(gw, "player-1").await
}

async fn ledger_and_balances(gw: &TestGateway) -> (i64, i64) {
    let client = gw.db.connect().await;
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM transactions), (SELECT sum(balance)::bigint FROM wallets)",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

async fn audit_count(gw: &TestGateway, action: &str, target: i64) -> i64 {
    gw.value(
        "SELECT count(*) FROM audit_log WHERE action = $1 AND target_id = $2",
        &[&action, &target.to_string()],
    )
    .await
}

fn body_of(request: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(request["body_base64"].as_str().unwrap())
        .unwrap()
}

#[tokio::test]
async fn callbacks_of_every_dialect_are_traced_and_replay_as_duplicates() {
    let gw = start_gateway(REST_ON).await;
    let admin = gw.admin_token(0).await;
    let sent = bets_of_every_dialect(&gw).await;
    gw.flush_trace().await;
    for s in &sent {
        let id = bet_id(&gw, s.player).await;
        let path = format!("/api/admin/transactions/{id}/trace");
        let trace = data(
            &gw.api(Method::GET, &path, Some(&admin), None).await,
            StatusCode::OK,
        );
        let requests = trace["requests"].as_array().unwrap();
        assert_eq!(requests.len(), 2, "{}: {trace:#}", s.dialect);
        let (first, retry) = (&requests[0], &requests[1]);
        // The bytes as sent, the headers, the check, the decoded command, the answer.
        assert_eq!(body_of(first), s.body, "{}", s.dialect);
        assert_eq!(first["origin"], "provider");
        assert_eq!(first["method"], "POST");
        assert!(first["target"]
            .as_str()
            .unwrap()
            .starts_with("/api/provider-callback/"));
        assert!(first["signature"]["verified"].as_bool().unwrap());
        assert!(!first["signature"]["scheme"].as_str().unwrap().is_empty());
        assert!(
            first["decoded"].as_str().unwrap().contains(s.player),
            "{}: {first:#}",
            s.dialect
        );
        assert_eq!(first["status"], 200);
        assert_eq!(first["outcome"], "OK");
        assert_eq!(first["answered_by"], "batch");
        assert_eq!(first["duplicate"], false);
        assert!(first["batch"]["len"].as_i64().unwrap() >= 1, "{first:#}");
        assert!(first["timings_us"]["total"].as_i64().unwrap() > 0);
        assert!(first["timings_us"]["commit"].as_i64().unwrap() > 0);
        assert!(first["headers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h.as_str().unwrap().starts_with("content-type: ")));
        // Signature headers are kept blanked (issue 33, 9).
        for h in first["headers"].as_array().unwrap() {
            let h = h.as_str().unwrap();
            for name in ["x-signature: ", "x-request-sign: ", "x-hub88-signature: "] {
                if let Some(value) = h.strip_prefix(name) {
                    assert_eq!(value, "[redacted]", "{}: {h}", s.dialect);
                }
            }
        }
        // The retry: the same bytes, answered with the stored answer.
        assert_eq!(body_of(retry), s.body);
        assert_eq!(retry["duplicate"], true, "{}: {retry:#}", s.dialect);
        let by = if s.unit { "batch" } else { "dedup_index" };
        assert_eq!(retry["answered_by"], by, "{}", s.dialect);
        // Balance before and after the row.
        let t = &trace["transaction"];
        let before: f64 = trace["balance_before"].as_str().unwrap().parse().unwrap();
        let after: f64 = t["balance_after"].as_str().unwrap().parse().unwrap();
        let amount: f64 = t["amount"].as_str().unwrap().parse().unwrap();
        assert!((before - amount - after).abs() < 1e-9, "{trace:#}");

        // Replay: a duplicate with the original answer; nothing moves; audited once.
        let money = ledger_and_balances(&gw).await;
        let replay = data(
            &ask_replay(&gw, &admin, id, "dispute 42").await,
            StatusCode::OK,
        );
        assert_eq!(replay["duplicate"], true, "{}: {replay:#}", s.dialect);
        assert_eq!(replay["same_answer"], true, "{}: {replay:#}", s.dialect);
        assert_eq!(replay["status"], replay["original_status"]);
        assert_eq!(replay["outcome"], "OK");
        assert_eq!(replay["answered_by"], by, "{}", s.dialect);
        assert_eq!(ledger_and_balances(&gw).await, money, "{}", s.dialect);
        assert_eq!(audit_count(&gw, "transaction.replay", id).await, 1);
        // The replay is part of the story now.
        gw.flush_trace().await;
        let trace = data(
            &gw.api(Method::GET, &path, Some(&admin), None).await,
            StatusCode::OK,
        );
        let requests = trace["requests"].as_array().unwrap();
        assert_eq!(requests.len(), 3, "{}", s.dialect);
        assert_eq!(requests[2]["origin"], "replay");
        assert_eq!(body_of(&requests[2]), s.body);
    }
    gw.finish().await;
}

/// First applications carry no index key (the writer keeps keys for the exceptions); each is
/// found by time among segments written around it, and a retry later is found by its key.
#[tokio::test]
async fn first_applications_are_found_by_time_and_retries_by_key() {
    let gw = start_gateway(REST_ON).await;
    let admin = gw.admin_token(0).await;
    let bets: Vec<Value> = (0..6)
        .map(|i| crate::money_path::bet("player-1", &format!("tt-{i}"), "0.10", &format!("rt-{i}")))
        .collect();
    for bet in &bets {
        let a = gw.demo("bet", bet.clone()).await;
        assert_eq!(a.status, StatusCode::OK, "{:?}", a.json());
        gw.flush_trace().await;
    }
    let client = gw.db.connect().await;
    let (segments, keys): (i64, i64) = client
        .query_one(
            "SELECT count(*), coalesce(sum(cardinality(tx_keys)), 0) FROM callback_segments",
            &[],
        )
        .await
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert!(segments >= 6, "one segment per flush, got {segments}");
    assert_eq!(keys, 0, "first applications are not keyed");
    // A retry of the third, a while later: keyed.
    let a = gw.demo("bet", bets[2].clone()).await;
    assert_eq!(a.status, StatusCode::OK);
    gw.flush_trace().await;
    for (i, bet) in bets.iter().enumerate() {
        let id: i64 = client
            .query_one(
                "SELECT id FROM transactions WHERE provider_tx_id = $1",
                &[&format!("tt-{i}")],
            )
            .await
            .unwrap()
            .get(0);
        let trace = trace_of(&gw, &admin, id).await;
        let requests = trace["requests"].as_array().unwrap();
        assert_eq!(
            requests.len(),
            if i == 2 { 2 } else { 1 },
            "tt-{i}: {trace:#}"
        );
        assert_eq!(body_of(&requests[0]), serde_json::to_vec(bet).unwrap());
        assert_eq!(requests[0]["duplicate"], false);
        if i == 2 {
            assert_eq!(requests[1]["duplicate"], true);
        }
    }
    gw.finish().await;
}

#[tokio::test]
async fn a_token_that_is_the_secret_is_never_stored_yet_the_replay_verifies() {
    let gw = start_gateway(REST_ON).await;
    let admin = gw.admin_token(0).await;
    let evo = r#"{"sid":"s","userId":"player-2","uuid":"u-e1","currency":"EUR",
        "game":{"id":"r-e","type":"blackjack","details":{"table":{"id":"bj-1","vid":null}}},
        "transaction":{"id":"e-1","refId":"eb-1","amount":1}}"#;
    let a = gw
        .evo_with_token("debit", evo.to_string(), Some(EVO_TOKEN))
        .await;
    assert_eq!(a.json()["status"], "OK");
    gw.flush_trace().await;
    let client = gw.db.connect().await;
    let mut records = 0;
    let mut stored = 0;
    for row in client
        .query("SELECT data FROM callback_segments", &[])
        .await
        .unwrap()
    {
        for r in rest::segments::decode(row.get(0)).expect("segments decode") {
            records += 1;
            let text = format!(
                "{} {} {}",
                r.target,
                r.headers,
                String::from_utf8_lossy(&r.body)
            );
            stored += usize::from(text.contains(EVO_TOKEN));
        }
    }
    assert!(records > 0, "nothing was kept");
    assert_eq!(stored, 0, "the token was stored");
    let id = bet_id(&gw, "player-2").await;
    let trace = trace_of(&gw, &admin, id).await;
    let target = trace["requests"][0]["target"].as_str().unwrap();
    assert!(target.contains("authToken=%5Bredacted%5D"), "{target}");
    let replay = data(&ask_replay(&gw, &admin, id, "check").await, StatusCode::OK);
    assert_eq!(replay["duplicate"], true, "{replay:#}");
    gw.finish().await;
}

#[tokio::test]
async fn trace_and_replay_refusals() {
    let gw = start_gateway(REST_ON).await;
    let admin = gw.admin_token(0).await;
    let support = staff_token(&gw, "support-1", "support").await;
    let id = one_traced_bet(&gw).await;
    // No such transaction; not an id.
    for (path, status, code) in [
        (
            "/api/admin/transactions/999999/trace",
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
        ),
        (
            "/api/admin/transactions/x/trace",
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        ),
    ] {
        let a = gw.api(Method::GET, path, Some(&admin), None).await;
        refused(&a, status, code);
    }
    let replay = |id: String, body: Value| {
        let path = format!("/api/admin/transactions/{id}/replay");
        let admin = admin.clone();
        let gw = &gw;
        async move { gw.api(Method::POST, &path, Some(&admin), Some(body)).await }
    };
    let a = replay("999999".into(), json!({"reason": "r"})).await;
    refused(&a, StatusCode::NOT_FOUND, "NOT_FOUND");
    // A reason is required; unknown fields are refused.
    let a = replay(id.to_string(), json!({})).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{:?}", a.json());
    let a = replay(id.to_string(), json!({"reason": "r", "x": 1})).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{:?}", a.json());
    // Support reads traces, never replays.
    let a = gw
        .api(
            Method::GET,
            &format!("/api/admin/transactions/{id}/trace"),
            Some(&support),
            None,
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
    let a = ask_replay(&gw, &support, id, "r").await;
    refused(&a, StatusCode::FORBIDDEN, "FORBIDDEN");
    // A back-office row has no callback to replay.
    let client = gw.db.connect().await;
    client
        .execute(
            "INSERT INTO transactions (kind, outcome, player_id, currency, amount, real_delta,
                                       balance_before, balance_after, bonus_before, bonus_after)
             SELECT 'adjustment', 'OK', id, 'EUR', 0, 0, 0, 0, 0, 0 FROM players LIMIT 1",
            &[],
        )
        .await
        .unwrap();
    let adjustment: i64 = client
        .query_one("SELECT max(id) FROM transactions", &[])
        .await
        .unwrap()
        .get(0);
    let a = replay(adjustment.to_string(), json!({"reason": "r"})).await;
    refused(&a, StatusCode::CONFLICT, "NOT_TRACED");
    // Refusals are not audited.
    assert_eq!(audit_count(&gw, "transaction.replay", id).await, 0);
    // The provider's row gone (the gateway still has it from its configuration): the trace is
    // still served, decoded by the provider the stored path names.
    client
        .execute(
            "DELETE FROM providers WHERE id = (SELECT provider_id FROM transactions WHERE id = $1)",
            &[&id],
        )
        .await
        .unwrap();
    let trace = trace_of(&gw, &admin, id).await;
    assert_eq!(trace["requests"].as_array().unwrap().len(), 1, "{trace}");
    assert!(trace["requests"][0]["decoded"].is_string(), "{trace}");
    gw.finish().await;
}

#[tokio::test]
async fn with_tracing_off_nothing_is_kept_and_replay_says_so() {
    let gw = start_gateway(&format!("{REST_ON}\n[trace]\nenabled = false\n")).await;
    let admin = gw.admin_token(0).await;
    let id = one_traced_bet(&gw).await;
    let trace = trace_of(&gw, &admin, id).await;
    assert_eq!(trace["requests"], json!([]));
    let a = ask_replay(&gw, &admin, id, "r").await;
    refused(&a, StatusCode::CONFLICT, "NOT_TRACED");
    gw.finish().await;
}
