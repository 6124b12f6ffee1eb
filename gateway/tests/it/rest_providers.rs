//! Providers managed through the back office over real HTTP and PostgreSQL: created and in
//! force without a restart, disabled and enabled, a secret rotated with the old one accepted
//! until its deadline, secrets never answered nor audited.

use std::time::{Duration, Instant};

use gateway::test_util::{start_gateway, totp_code, Answer, TestGateway, ADMIN_TOTP, REST_ON};
use http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::money_path::{bet, rollback, win};
use crate::rest_auth::{data, refused, staff_token_at};

const SECRET: &str = "acme-secret-0123456789";
const NEXT_SECRET: &str = "acme-next-secret-0123456789";

async fn acme_bet(gw: &TestGateway, secret: &str, tx: &str) -> Answer {
    gw.native("acme", secret, "bet", bet("player-1", tx, "1.00", "r1"))
        .await
}

/// Polls `check` until it holds (the gateway takes changes up at once, or within its reload
/// period for deadlines).
async fn eventually(mut check: impl AsyncFnMut() -> bool, within: Duration) -> bool {
    let started = Instant::now();
    while started.elapsed() < within {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// Approves the pending `change` as admin `second` with the TOTP code of `offset_steps` (the
/// requester `first` may not: FOUR_EYES); the provider as it is then.
async fn approve(
    gw: &TestGateway,
    first: &str,
    second: &str,
    change: &Value,
    offset_steps: i64,
) -> Value {
    let path = format!("/api/admin/provider-changes/{}/approve", change["id"]);
    let code = |offset| json!({"totp_code": totp_code(ADMIN_TOTP, offset)});
    let own = gw
        .api(Method::POST, &path, Some(first), Some(code(offset_steps)))
        .await;
    refused(&own, StatusCode::FORBIDDEN, "FOUR_EYES");
    let approved = gw
        .api(Method::POST, &path, Some(second), Some(code(offset_steps)))
        .await;
    data(&approved, StatusCode::OK)
}

#[tokio::test]
async fn a_provider_created_in_the_back_office_takes_callbacks_without_a_restart() {
    let gw = start_gateway(REST_ON).await;
    let admin = gw.admin_token(0).await;
    let api = |method: Method, path: &str, body: Option<Value>| {
        let (gw, admin, path) = (&gw, admin.clone(), path.to_string());
        async move { gw.api(method, &path, Some(&admin), body).await }
    };
    assert_eq!(
        acme_bet(&gw, SECRET, "a0").await.status,
        StatusCode::NOT_FOUND
    );
    for (body, field) in [
        (
            json!({"code": "Acme", "dialect": "native", "secret": SECRET}),
            "code",
        ),
        (
            json!({"code": "acme", "dialect": "hub88", "secret": SECRET}),
            "dialect",
        ),
        (
            json!({"code": "acme", "dialect": "native", "secret": "short"}),
            "secret",
        ),
        (
            json!({"code": "acme", "dialect": "native", "secret": SECRET, "policy": {"free_money": true}}),
            "policy",
        ),
        (
            json!({"code": "acme", "dialect": "native", "secret": SECRET, "currency": "XXXX"}),
            "currency",
        ),
        (
            json!({"code": "acme", "dialect": "native", "secret": SECRET, "signature_window_s": 86400}),
            "signature_window_s",
        ),
    ] {
        let a = refused(
            &api(Method::POST, "/api/admin/providers", Some(body)).await,
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        );
        assert_eq!(a["errors"][0]["field"], field);
    }
    let create = json!({"code": "acme", "dialect": "native", "secret": SECRET,
                        "policy": {"session_required": false}, "allow_ips": ["127.0.0.1"]});
    // Four eyes (issue 33, 7): whoever holds a provider's secret can sign wins, so a
    // provider one admin creates waits for another admin.
    let pending = data(
        &api(Method::POST, "/api/admin/providers", Some(create.clone())).await,
        StatusCode::ACCEPTED,
    );
    assert_eq!(
        (pending["state"].as_str(), pending["action"].as_str()),
        (Some("pending_approval"), Some("create"))
    );
    assert!(!pending.to_string().contains(SECRET), "{pending}");
    assert_eq!(
        acme_bet(&gw, SECRET, "a0").await.status,
        StatusCode::NOT_FOUND
    );
    let second = staff_token_at(&gw, "admin-2", "admin", -1).await;
    let created = approve(&gw, &admin, &second, &pending, 0).await;
    assert!(created["settings"].get("secret").is_none(), "{created}");
    assert_eq!(created["settings"]["allow_ips"], json!(["127.0.0.1"]));
    // Created with the strict policy, the request's keys over it.
    assert_eq!(
        created["settings"]["policy"]["wins_without_bet_allowed"],
        false
    );
    refused(
        &api(Method::POST, "/api/admin/providers", Some(create)).await,
        StatusCode::CONFLICT,
        "CODE_TAKEN",
    );
    let taken = json!({"code": "demo", "dialect": "native", "secret": SECRET});
    refused(
        &api(Method::POST, "/api/admin/providers", Some(taken)).await,
        StatusCode::CONFLICT,
        "CODE_TAKEN",
    );

    assert!(
        eventually(
            async || acme_bet(&gw, SECRET, "a1").await.json()["status"] == "OK",
            Duration::from_secs(3)
        )
        .await
    );
    let listed = data(
        &api(Method::GET, "/api/admin/providers", None).await,
        StatusCode::OK,
    );
    let acme = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["code"] == "acme")
        .unwrap()
        .clone();
    assert_eq!(
        (
            acme["managed"].clone(),
            acme["settings"]["previous_secret_set"].clone()
        ),
        (json!(true), json!(false))
    );
    let demo = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["code"] == "demo")
        .unwrap()
        .clone();
    assert_eq!(demo["managed"], false);
    let in_file = api(
        Method::PUT,
        "/api/admin/providers/demo",
        Some(json!({"enabled": false, "reason": "x"})),
    )
    .await;
    refused(&in_file, StatusCode::CONFLICT, "CONFIGURED_IN_FILE");

    // Disabled: new bets are refused for good, but what it already took keeps settling (a
    // win and a rollback of bets placed before), so no player's money stays in flight.
    for tx in ["before-1", "before-2"] {
        assert_eq!(acme_bet(&gw, SECRET, tx).await.json()["status"], "OK");
    }
    let off = api(
        Method::PUT,
        "/api/admin/providers/acme",
        Some(json!({"enabled": false, "reason": "incident"})),
    )
    .await;
    assert_eq!(data(&off, StatusCode::OK)["enabled"], false);
    assert!(
        eventually(
            async || acme_bet(&gw, SECRET, "a2").await.json()["status"] != "OK",
            Duration::from_secs(3)
        )
        .await
    );
    let bet_refused = acme_bet(&gw, SECRET, "a2b").await;
    assert_eq!(
        (bet_refused.status, bet_refused.json()["status"].clone()),
        (StatusCode::FORBIDDEN, json!("FORBIDDEN"))
    );
    let mut paid = win("player-1", "w-before-1", "2.50", "r1");
    paid["bet_transaction_id"] = json!("before-1");
    let paid = gw.native("acme", SECRET, "win", paid).await;
    assert_eq!(paid.json()["status"], "OK", "{:?}", paid.json());
    let refunded = gw
        .native(
            "acme",
            SECRET,
            "rollback",
            rollback("player-1", "x-before-2", "before-2"),
        )
        .await;
    assert_eq!(refunded.json()["status"], "OK", "{:?}", refunded.json());
    let ended = gw
        .native(
            "acme",
            SECRET,
            "end-round",
            json!({"player_id": "player-1", "round_id": "r-end", "game_id": "slot-1"}),
        )
        .await;
    assert_eq!(ended.json()["status"], "OK", "{:?}", ended.json());
    let on = api(
        Method::PUT,
        "/api/admin/providers/acme",
        Some(json!({"enabled": true, "reason": "resolved"})),
    )
    .await;
    assert_eq!(data(&on, StatusCode::OK)["enabled"], true);
    // Issue 33 (12): its rounds are open, so its currency stays.
    let other_currency = api(
        Method::PUT,
        "/api/admin/providers/acme",
        Some(json!({"currency": "USD", "reason": "new market"})),
    )
    .await;
    refused(&other_currency, StatusCode::CONFLICT, "ROUNDS_OPEN");
    assert!(
        eventually(
            async || acme_bet(&gw, SECRET, "a3").await.json()["status"] == "OK",
            Duration::from_secs(3)
        )
        .await
    );

    // Rotation: the new secret at once, the old one until its deadline (2 s), then refused.
    let rotate =
        json!({"secret": NEXT_SECRET, "previous_valid_for_s": 2, "reason": "yearly rotation"});
    let pending = data(
        &api(
            Method::POST,
            "/api/admin/providers/acme/rotate-secret",
            Some(rotate),
        )
        .await,
        StatusCode::ACCEPTED,
    );
    let rotated = approve(&gw, &admin, &second, &pending, 1).await;
    assert_eq!(rotated["settings"]["previous_secret_set"], true);
    assert!(
        eventually(
            async || acme_bet(&gw, NEXT_SECRET, "a4").await.json()["status"] == "OK",
            Duration::from_secs(3)
        )
        .await
    );
    let old = acme_bet(&gw, SECRET, "a5").await;
    assert_eq!(
        old.json()["status"],
        "OK",
        "the old secret holds until its deadline"
    );
    assert!(
        eventually(
            async || acme_bet(&gw, SECRET, "a6").await.status == StatusCode::UNAUTHORIZED,
            Duration::from_secs(10)
        )
        .await
    );

    // A policy change waits too; the rest of the same request with it.
    let loosen = json!({"policy": {"wins_without_bet_allowed": true}, "enabled": false,
                        "reason": "promotions"});
    let pending = data(
        &api(Method::PUT, "/api/admin/providers/acme", Some(loosen)).await,
        StatusCode::ACCEPTED,
    );
    assert_eq!(pending["action"], "update");
    let listed = data(
        &api(Method::GET, "/api/admin/provider-changes", None).await,
        StatusCode::OK,
    );
    assert_eq!(listed[0]["id"], pending["id"]);
    assert_eq!(listed[0]["state"], "pending_approval");
    assert_eq!(
        acme_bet(&gw, NEXT_SECRET, "a7").await.json()["status"],
        "OK"
    );

    // Seven changes audited (requested, then applied by the approver, for each of the two
    // approved changes; disable and enable; the policy change requested), none with a secret
    // in it, nor in any change kept.
    let client = gw.db.connect().await;
    let kept: Vec<String> = client
        .query("SELECT request::text FROM provider_changes", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(kept.len(), 3);
    assert!(
        kept.iter()
            .all(|r| !r.contains(SECRET) && !r.contains(NEXT_SECRET)),
        "{kept:?}"
    );
    let rows: Vec<String> = client
        .query(
            "SELECT row_to_json(a)::text FROM audit_log a WHERE target_kind = 'provider'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(rows.len(), 7);
    assert!(
        rows.iter()
            .all(|r| !r.contains(SECRET) && !r.contains(NEXT_SECRET)),
        "{rows:?}"
    );
    gw.finish().await;
}
