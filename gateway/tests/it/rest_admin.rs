//! The back office over real HTTP and PostgreSQL: player status and forced logout, each
//! mutation audited exactly once in its own transaction, refusals audited never, and an audit
//! log the application's own database role cannot change.

use gateway::test_util::{
    start_gateway, totp_code, TestGateway, ADMIN_TOTP, PLAYER_PASSWORD, REST_ON,
};
use http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::money_path::{bet, win, START};
use crate::rest_auth::{data, refused, staff_token, staff_token_at};

async fn audit_rows(gw: &TestGateway) -> i64 {
    gw.value("SELECT count(*) FROM audit_log", &[]).await
}

async fn player_id(gw: &TestGateway, name: &str) -> i64 {
    gw.value("SELECT id FROM players WHERE external_id = $1", &[&name])
        .await
}

fn status_of(a: &gateway::test_util::Answer) -> Value {
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.json());
    a.json()["status"].clone()
}

#[tokio::test]
async fn a_suspended_player_cannot_bet_but_is_paid_and_the_change_is_audited_once() {
    let gw = start_gateway(REST_ON).await;
    let manager = staff_token(&gw, "manager-1", "manager").await;
    let id = player_id(&gw, "player-1").await;
    assert_eq!(
        status_of(&gw.demo("bet", bet("player-1", "b1", "10.00", "r1")).await),
        "OK"
    );
    let path = format!("/api/admin/players/{id}/status");
    let set = |body: Value| {
        let (gw, path, manager) = (&gw, path.clone(), manager.clone());
        async move {
            let headers = [
                ("Authorization", format!("Bearer {manager}")),
                ("Content-Type", "application/json".to_string()),
                ("X-Correlation-ID", "case-42".to_string()),
            ];
            gw.request(Method::PUT, &path, &headers, body.to_string())
                .await
        }
    };
    // Refusals change nothing and write no audit row.
    refused(
        &set(json!({"status": "frozen", "reason": "x"})).await,
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
    );
    refused(
        &set(json!({"status": "suspended", "reason": "  "})).await,
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
    );
    refused(
        &set(json!({"status": "suspended"})).await,
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
    );
    let nobody = gw
        .api(
            Method::PUT,
            "/api/admin/players/999999/status",
            Some(&manager),
            Some(json!({"status": "banned", "reason": "x"})),
        )
        .await;
    refused(&nobody, StatusCode::NOT_FOUND, "NOT_FOUND");
    assert_eq!(audit_rows(&gw).await, 0);

    let changed = data(
        &set(json!({"status": "suspended", "reason": "chargeback under review"})).await,
        StatusCode::OK,
    );
    assert_eq!(
        (changed["status"].as_str(), changed["previous"].as_str()),
        (Some("suspended"), Some("active"))
    );
    assert_eq!(audit_rows(&gw).await, 1);
    assert_eq!(
        status_of(&gw.demo("bet", bet("player-1", "b2", "1.00", "r2")).await),
        "PLAYER_BLOCKED"
    );
    assert_eq!(
        status_of(&gw.demo("win", win("player-1", "w1", "4.00", "r1")).await),
        "OK"
    );
    assert_eq!(gw.balance("player-1").await, START - 1000 + 400);

    let admin = gw.admin_token(0).await;
    let log = data(
        &gw.api(
            Method::GET,
            "/api/admin/audit-log?action=player.status",
            Some(&admin),
            None,
        )
        .await,
        StatusCode::OK,
    );
    let row = &log["items"][0];
    assert_eq!(row["actor_role"], "manager");
    assert_eq!(row["target_kind"], "player");
    assert_eq!(row["target_id"], id.to_string());
    assert_eq!(row["before"], json!({"status": "active"}));
    assert_eq!(row["after"]["status"], "suspended");
    assert_eq!(row["reason"], "chargeback under review");
    assert_eq!(row["ip"], "127.0.0.1");
    assert_eq!(row["correlation_id"], "case-42");

    // Back to active: bets again, a second audit row.
    data(
        &set(json!({"status": "active", "reason": "review done"})).await,
        StatusCode::OK,
    );
    assert_eq!(audit_rows(&gw).await, 2);
    assert_eq!(
        status_of(&gw.demo("bet", bet("player-1", "b3", "1.00", "r3")).await),
        "OK"
    );
    gw.finish().await;
}

#[tokio::test]
async fn banning_ends_logins_and_refuses_new_ones_and_support_can_force_a_logout() {
    let gw = start_gateway(REST_ON).await;
    let admin = gw.admin_token(0).await;
    let two = player_id(&gw, "player-2").await;
    let token = gw.player_token("player-2").await;
    let banned = gw
        .api(
            Method::PUT,
            &format!("/api/admin/players/{two}/status"),
            Some(&admin),
            Some(json!({"status": "banned", "reason": "fraud"})),
        )
        .await;
    assert_eq!(data(&banned, StatusCode::OK)["sessions_revoked"], 1);
    refused(
        &gw.api(Method::GET, "/api/user/balance", Some(&token), None)
            .await,
        StatusCode::UNAUTHORIZED,
        "SESSION_REVOKED",
    );
    let login = json!({"username": "player-2", "password": PLAYER_PASSWORD});
    refused(
        &gw.api(Method::POST, "/api/auth/login", None, Some(login))
            .await,
        StatusCode::FORBIDDEN,
        "ACCOUNT_BANNED",
    );

    let support = staff_token(&gw, "support-1", "support").await;
    let three = player_id(&gw, "player-3").await;
    let first = gw.player_token("player-3").await;
    let second = gw.player_token("player-3").await;
    let out = gw
        .api(
            Method::POST,
            &format!("/api/admin/players/{three}/logout"),
            Some(&support),
            Some(json!({"reason": "lost phone"})),
        )
        .await;
    assert_eq!(data(&out, StatusCode::OK)["sessions_revoked"], 2);
    for t in [&first, &second] {
        refused(
            &gw.api(Method::GET, "/api/auth/me", Some(t), None).await,
            StatusCode::UNAUTHORIZED,
            "SESSION_REVOKED",
        );
    }
    // Support may not change a status; the refusal is not audited.
    let before = audit_rows(&gw).await;
    let denied = gw
        .api(
            Method::PUT,
            &format!("/api/admin/players/{three}/status"),
            Some(&support),
            Some(json!({"status": "banned", "reason": "x"})),
        )
        .await;
    refused(&denied, StatusCode::FORBIDDEN, "FORBIDDEN");
    assert_eq!(audit_rows(&gw).await, before);
    assert_eq!(before, 2);
    // The log pages newest first.
    let page = data(
        &gw.api(
            Method::GET,
            "/api/admin/audit-log?limit=1",
            Some(&admin),
            None,
        )
        .await,
        StatusCode::OK,
    );
    assert_eq!(page["items"][0]["action"], "player.logout");
    let cursor = page["next_cursor"].as_str().unwrap();
    let next = data(
        &gw.api(
            Method::GET,
            &format!("/api/admin/audit-log?limit=1&cursor={cursor}"),
            Some(&admin),
            None,
        )
        .await,
        StatusCode::OK,
    );
    assert_eq!(next["items"][0]["action"], "player.status");
    assert_eq!(next["next_cursor"], Value::Null);
    gw.finish().await;
}

#[tokio::test]
async fn the_applications_database_role_cannot_change_or_remove_audit_rows() {
    let gw = start_gateway(REST_ON).await;
    let admin = gw.admin_token(0).await;
    let id = player_id(&gw, "player-4").await;
    gw.api(
        Method::POST,
        &format!("/api/admin/players/{id}/logout"),
        Some(&admin),
        Some(json!({"reason": "test"})),
    )
    .await;
    assert_eq!(audit_rows(&gw).await, 1);
    // The gateway's own connection settings: the same role the application uses.
    let client = gw.db.connect().await;
    for statement in [
        "UPDATE audit_log SET reason = 'rewritten'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
    ] {
        let e = client.batch_execute(statement).await.expect_err(statement);
        assert_eq!(
            e.code(),
            Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
            "{statement}: {e}"
        );
    }
    assert_eq!(audit_rows(&gw).await, 1);
    gw.finish().await;
}

/// Ledger rows of kind `adjustment` for `player`, and their sum.
async fn adjustment_rows(gw: &TestGateway, player: &str) -> (i64, i64) {
    let client = gw.db.connect().await;
    let row = client
        .query_one(
            "SELECT count(*), coalesce(sum(real_delta), 0)::bigint FROM transactions t
             JOIN players p ON p.id = t.player_id
             WHERE p.external_id = $1 AND t.kind = 'adjustment'",
            &[&player],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

fn adjustment(amount: &str, direction: &str, key: &str, code: String) -> Value {
    json!({"currency": "EUR", "amount": amount, "direction": direction, "reason": "goodwill",
           "idempotency_key": key, "totp_code": code})
}

#[tokio::test]
async fn adjustments_move_money_once_with_a_ledger_and_an_audit_row() {
    let gw = start_gateway(REST_ON).await;
    let manager = staff_token_at(&gw, "manager-1", "manager", -1).await;
    let one = player_id(&gw, "player-1").await;
    let path = format!("/api/admin/players/{one}/adjustments");
    let post = |body: Value| gw.api(Method::POST, &path, Some(&manager), Some(body));
    // A wrong code and bad fields change nothing.
    let wrong = if totp_code(ADMIN_TOTP, 0) == "111111" {
        "222222"
    } else {
        "111111"
    };
    refused(
        &post(adjustment("50.00", "credit", "k1", wrong.into())).await,
        StatusCode::UNAUTHORIZED,
        "TOTP_INVALID",
    );
    for (body, field) in [
        (
            adjustment("0.00", "credit", "k1", totp_code(ADMIN_TOTP, 0)),
            "amount",
        ),
        (
            adjustment("1.001", "credit", "k1", totp_code(ADMIN_TOTP, 0)),
            "amount",
        ),
        (
            adjustment("1.00", "gift", "k1", totp_code(ADMIN_TOTP, 0)),
            "direction",
        ),
    ] {
        let a = refused(
            &post(body).await,
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        );
        assert_eq!(a["errors"][0]["field"], field);
    }
    assert_eq!(
        (
            audit_rows(&gw).await,
            adjustment_rows(&gw, "player-1").await
        ),
        (0, (0, 0))
    );

    let credit = data(
        &post(adjustment(
            "50.00",
            "credit",
            "k1",
            totp_code(ADMIN_TOTP, 0),
        ))
        .await,
        StatusCode::CREATED,
    );
    assert_eq!(
        (credit["state"].as_str(), credit["balance_after"].as_str()),
        (Some("applied"), Some("1050.00"))
    );
    assert_eq!(gw.balance("player-1").await, START + 5000);
    assert_eq!(audit_rows(&gw).await, 1);
    // The retry answers the first outcome: no second ledger row, no second audit row.
    let retry = data(
        &post(adjustment("50.00", "credit", "k1", "000000".into())).await,
        StatusCode::OK,
    );
    assert_eq!(
        (retry["id"].clone(), retry["duplicate"].clone()),
        (credit["id"].clone(), json!(true))
    );
    refused(
        &post(adjustment(
            "60.00",
            "credit",
            "k1",
            totp_code(ADMIN_TOTP, 1),
        ))
        .await,
        StatusCode::CONFLICT,
        "IDEMPOTENCY_KEY_REUSED",
    );
    let debit = data(
        &post(adjustment("60.00", "debit", "k2", totp_code(ADMIN_TOTP, 1))).await,
        StatusCode::CREATED,
    );
    assert_eq!(debit["delta"], "-60.00");
    assert_eq!(gw.balance("player-1").await, START + 5000 - 6000);
    assert_eq!(adjustment_rows(&gw, "player-1").await, (2, -1000));
    assert_eq!(audit_rows(&gw).await, 2);

    // Never below zero: a debit past the balance is refused and leaves nothing behind.
    let manager2 = staff_token_at(&gw, "manager-2", "manager", -1).await;
    let reg =
        json!({"username": "zed", "email": "zed@example.com", "password": "correct horse battery"});
    gw.api(Method::POST, "/api/auth/register", None, Some(reg))
        .await;
    let zed = player_id(&gw, "zed").await;
    let broke = gw
        .api(
            Method::POST,
            &format!("/api/admin/players/{zed}/adjustments"),
            Some(&manager2),
            Some(adjustment("1.00", "debit", "k3", totp_code(ADMIN_TOTP, 0))),
        )
        .await;
    refused(&broke, StatusCode::CONFLICT, "INSUFFICIENT_FUNDS");
    assert_eq!(
        (gw.balance("zed").await, adjustment_rows(&gw, "zed").await),
        (0, (0, 0))
    );
    assert_eq!(audit_rows(&gw).await, 2);
    let client = gw.db.connect().await;
    let kept: i64 = client
        .query_one("SELECT count(*) FROM adjustments", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(kept, 2);
    gw.finish().await;
}

#[tokio::test]
async fn large_adjustments_wait_for_another_admin() {
    let gw = start_gateway(REST_ON).await;
    let manager = staff_token_at(&gw, "manager-1", "manager", -1).await;
    let admin = gw.admin_token(-1).await;
    let two = player_id(&gw, "player-2").await;
    let request = gw
        .api(
            Method::POST,
            &format!("/api/admin/players/{two}/adjustments"),
            Some(&manager),
            Some(adjustment(
                "1500.00",
                "credit",
                "big-1",
                totp_code(ADMIN_TOTP, 0),
            )),
        )
        .await;
    let pending = data(&request, StatusCode::ACCEPTED);
    assert_eq!(
        (pending["state"].as_str(), &pending["ledger_id"]),
        (Some("pending_approval"), &Value::Null)
    );
    assert_eq!(gw.balance("player-2").await, START);
    let id = pending["id"].as_i64().unwrap();
    let approve = |token: &str, code: String| {
        let (gw, token) = (&gw, token.to_string());
        async move {
            gw.api(
                Method::POST,
                &format!("/api/admin/adjustments/{id}/approve"),
                Some(&token),
                Some(json!({"totp_code": code})),
            )
            .await
        }
    };
    // A manager may not approve (role table); the admin may, with a fresh code.
    refused(
        &approve(&manager, totp_code(ADMIN_TOTP, 1)).await,
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
    );
    let applied = data(
        &approve(&admin, totp_code(ADMIN_TOTP, 0)).await,
        StatusCode::OK,
    );
    assert_eq!(applied["state"], "applied");
    assert_eq!(applied["balance_after"], "2500.00");
    assert_eq!(gw.balance("player-2").await, START + 150_000);
    refused(
        &approve(&admin, totp_code(ADMIN_TOTP, 1)).await,
        StatusCode::CONFLICT,
        "NOT_PENDING",
    );
    // The requester never approves their own request.
    let own = gw
        .api(
            Method::POST,
            &format!("/api/admin/players/{two}/adjustments"),
            Some(&admin),
            Some(adjustment(
                "2000.00",
                "debit",
                "big-2",
                totp_code(ADMIN_TOTP, 1),
            )),
        )
        .await;
    let own_id = data(&own, StatusCode::ACCEPTED)["id"].as_i64().unwrap();
    let four_eyes = gw
        .api(
            Method::POST,
            &format!("/api/admin/adjustments/{own_id}/approve"),
            Some(&admin),
            Some(json!({"totp_code": "000000"})),
        )
        .await;
    refused(&four_eyes, StatusCode::FORBIDDEN, "FOUR_EYES");
    // request, approve, request: three audit rows.
    assert_eq!(audit_rows(&gw).await, 3);
    gw.finish().await;
}

/// Issue 33 (8): ten adjustments just under the threshold moved ten times it without a second
/// admin; and the threshold was one number of whole units for every currency.
#[tokio::test]
async fn split_adjustments_and_per_currency_thresholds_wait_for_another_admin() {
    let gw = start_gateway(&format!(
        "{REST_ON}\n[rest.adjustment_approval_above_in]\nEUR = \"100.00\"\n"
    ))
    .await;
    let first = staff_token_at(&gw, "manager-1", "manager", -1).await;
    let second = staff_token_at(&gw, "manager-2", "manager", -1).await;
    let two = player_id(&gw, "player-2").await;
    let request = |token: &str, amount: &'static str, key: &'static str, offset: i64| {
        let (gw, token) = (&gw, token.to_string());
        async move {
            gw.api(
                Method::POST,
                &format!("/api/admin/players/{two}/adjustments"),
                Some(&token),
                Some(adjustment(
                    amount,
                    "credit",
                    key,
                    totp_code(ADMIN_TOTP, offset),
                )),
            )
            .await
        }
    };
    // Under the threshold, alone: applied. Under it, but with what the same staff member
    // moved alone today in that currency: waits.
    data(
        &request(&first, "60.00", "eur-1", 0).await,
        StatusCode::CREATED,
    );
    let split = data(
        &request(&first, "60.00", "eur-2", 1).await,
        StatusCode::ACCEPTED,
    );
    assert_eq!(split["state"], "pending_approval");
    // EUR's own threshold (100.00), not the 1000 whole units of the other currencies.
    let over = data(
        &request(&second, "150.00", "eur-3", 0).await,
        StatusCode::ACCEPTED,
    );
    assert_eq!(over["state"], "pending_approval");
    assert_eq!(gw.balance("player-2").await, START + 6_000);
    gw.finish().await;
}

#[tokio::test]
async fn player_search_and_detail_show_what_support_needs() {
    let gw = start_gateway(REST_ON).await;
    let reg = json!({"username": "yara", "email": "Yara@Example.com", "password": "correct horse battery"});
    data(
        &gw.api(Method::POST, "/api/auth/register", None, Some(reg))
            .await,
        StatusCode::CREATED,
    );
    let token = gw.player_token("player-5").await;
    let limit = json!({"kind": "wager", "period": "week", "amount": "300.00"});
    gw.api(Method::PUT, "/api/user/limits", Some(&token), Some(limit))
        .await;
    assert_eq!(
        status_of(&gw.demo("bet", bet("player-5", "b1", "7.00", "r1")).await),
        "OK"
    );
    let support = staff_token(&gw, "support-1", "support").await;
    let get = |path: String| {
        let (gw, support) = (&gw, support.clone());
        async move { gw.api(Method::GET, &path, Some(&support), None).await }
    };
    let by_mail = data(
        &get("/api/admin/players?email=YARA@example.com".into()).await,
        StatusCode::OK,
    );
    assert_eq!(by_mail["items"].as_array().unwrap().len(), 1);
    assert_eq!(by_mail["items"][0]["username"], "yara");
    let none = data(
        &get("/api/admin/players?created_from=2999-01-01T00:00:00Z".into()).await,
        StatusCode::OK,
    );
    assert_eq!(none["items"], json!([]));
    let all = data(
        &get("/api/admin/players?created_to=2999-01-01T00:00:00Z&limit=200".into()).await,
        StatusCode::OK,
    );
    assert_eq!(all["items"].as_array().unwrap().len(), 11);
    refused(
        &get("/api/admin/players?created_from=soon".into()).await,
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
    );

    let five = player_id(&gw, "player-5").await;
    let detail = data(
        &get(format!("/api/admin/players/{five}")).await,
        StatusCode::OK,
    );
    assert_eq!(detail["wallets"][0]["balance"], "993.00");
    assert_eq!(detail["limits"][0]["kind"], "wager");
    let recent: Vec<&str> = detail["recent_transactions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["kind"].as_str().unwrap())
        .collect();
    assert_eq!(recent, ["bet", "deposit"]);
    assert_eq!(detail["logins"].as_array().unwrap().len(), 1);
    assert_eq!(detail["logins"][0]["ip"], "127.0.0.1");
    gw.finish().await;
}

#[tokio::test]
async fn reconciliation_reports_the_ledger_over_http_and_from_the_command_line() {
    let gw = start_gateway(REST_ON).await;
    assert_eq!(
        status_of(&gw.demo("bet", bet("player-1", "b1", "10.00", "r1")).await),
        "OK"
    );
    assert_eq!(
        status_of(&gw.demo("win", win("player-1", "w1", "4.00", "r1")).await),
        "OK"
    );
    // A rollback of a transaction that never comes: a tombstone nothing matches.
    let ghost = json!({"player_id": "player-2", "transaction_id": "x1", "reference_transaction_id": "never"});
    assert_eq!(status_of(&gw.demo("rollback", ghost).await), "OK");
    let manager = staff_token(&gw, "manager-1", "manager").await;
    let get = |query: &str| {
        let (gw, manager, path) = (
            &gw,
            manager.clone(),
            format!("/api/admin/reconciliation{query}"),
        );
        async move { gw.api(Method::GET, &path, Some(&manager), None).await }
    };
    let report = data(&get("").await, StatusCode::OK);
    assert_eq!(report["balanced"], true);
    assert_eq!(report["unmatched_tombstones"], 1);
    assert_eq!(
        report["unmatched_tombstone_samples"][0]["missing_tx_id"],
        "never"
    );
    let demo = report["provider_totals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["provider"] == "demo")
        .unwrap()
        .clone();
    assert_eq!(
        (
            demo["bets"].as_i64(),
            demo["wins"].as_i64(),
            demo["net"].as_i64()
        ),
        (Some(1000), Some(400), Some(600))
    );
    let past = data(
        &get("?from=2000-01-01T00:00:00Z&to=2000-01-02T00:00:00Z").await,
        StatusCode::OK,
    );
    assert_eq!(past["provider_totals"], json!([]));
    refused(
        &get("?from=yesterday").await,
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
    );

    // The command line reads the same database.
    let cli = |gw: &TestGateway| {
        std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
            .args([
                "--config",
                concat!(env!("CARGO_MANIFEST_DIR"), "/../config/gateway.toml"),
                "reconcile",
            ])
            .env("DATABASE_URL", gw.db.url())
            .env("RUST_LOG", "error")
            .output()
            .unwrap()
    };
    let out = cli(&gw);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["balanced"], true);
    // A wallet changed behind the ledger's back is found by both, and the command fails.
    gw.sql("UPDATE wallets SET balance = balance + 1 WHERE player_id = (SELECT id FROM players WHERE external_id = 'player-9')").await;
    let report = data(&get("").await, StatusCode::OK);
    assert_eq!(report["balanced"], false);
    assert_eq!(
        report["wallet_mismatches"][0]["balance"].as_i64(),
        report["wallet_mismatches"][0]["ledger_sum"]
            .as_i64()
            .map(|s| s + 1)
    );
    let out = cli(&gw);
    assert_eq!(out.status.code(), Some(1));
    // Not `finish`: the ledger check would (rightly) fail on the planted mismatch.
    gw.stop().await;
}

#[tokio::test]
async fn transactions_are_found_by_player_provider_id_and_round() {
    let gw = start_gateway(REST_ON).await;
    assert_eq!(
        status_of(&gw.demo("bet", bet("player-1", "b1", "10.00", "r1")).await),
        "OK"
    );
    assert_eq!(
        status_of(&gw.demo("win", win("player-1", "w1", "3.00", "r1")).await),
        "OK"
    );
    assert_eq!(
        status_of(&gw.demo("bet", bet("player-1", "b2", "5000.00", "r2")).await),
        "INSUFFICIENT_FUNDS"
    );
    assert_eq!(
        status_of(&gw.demo("bet", bet("player-2", "c1", "1.00", "r1")).await),
        "OK"
    );
    let support = staff_token(&gw, "support-1", "support").await;
    let find = |query: &str| {
        let (gw, support, path) = (
            &gw,
            support.clone(),
            format!("/api/admin/transactions?{query}"),
        );
        async move { gw.api(Method::GET, &path, Some(&support), None).await }
    };
    let ids = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["provider_tx_id"].as_str().unwrap_or("-").to_string())
            .collect()
    };
    let one = player_id(&gw, "player-1").await;
    assert_eq!(
        ids(&data(&find(&format!("player={one}")).await, StatusCode::OK)),
        ["b2", "w1", "b1", "-"]
    );
    assert_eq!(
        ids(&data(
            &find("provider=demo&provider_tx_id=w1").await,
            StatusCode::OK
        )),
        ["w1"]
    );
    assert_eq!(
        ids(&data(
            &find(&format!("provider=demo&round=r1&player={one}")).await,
            StatusCode::OK
        )),
        ["w1", "b1"]
    );
    refused(
        &find("provider=demo&round=r1").await,
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
    );
    assert_eq!(
        ids(&data(
            &find(&format!("player={one}&outcome=INSUFFICIENT_FUNDS")).await,
            StatusCode::OK
        )),
        ["b2"]
    );
    assert_eq!(
        ids(&data(
            &find(&format!("player={one}&kind=win")).await,
            StatusCode::OK
        )),
        ["w1"]
    );
    refused(
        &find("kind=bet").await,
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
    );
    refused(
        &find("provider_tx_id=w1").await,
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
    );
    gw.finish().await;
}

#[tokio::test]
async fn reports_come_from_rollups_the_job_keeps_current() {
    let config = REST_ON.replace(
        "[rest]\nenabled = true",
        "[rest]\nenabled = true\nreport_fold_interval_s = 1\nreport_settle_s = 2",
    );
    let gw = start_gateway(&config).await;
    // slot-1: two rounds by player-1 (one with two bets), a win; slot-2: player-2, rolled back.
    for (action, body) in [
        ("bet", bet("player-1", "b1", "10.00", "r1")),
        ("bet", bet("player-1", "b2", "5.00", "r1")),
        ("win", win("player-1", "w1", "12.00", "r1")),
        ("bet", bet("player-1", "b3", "3.00", "r2")),
    ] {
        assert_eq!(status_of(&gw.demo(action, body).await), "OK");
    }
    let mut other = bet("player-2", "c1", "20.00", "r9");
    other["game_id"] = json!("slot-2");
    assert_eq!(status_of(&gw.demo("bet", other).await), "OK");
    let undo =
        json!({"player_id": "player-2", "transaction_id": "x1", "reference_transaction_id": "c1"});
    assert_eq!(status_of(&gw.demo("rollback", undo).await), "OK");
    let admin = gw.admin_token(0).await;
    let get = |path: &str| {
        let (gw, admin, path) = (&gw, admin.clone(), path.to_string());
        async move { gw.api(Method::GET, &path, Some(&admin), None).await }
    };
    // The job folds within a couple of seconds.
    let mut by_game = Value::Null;
    for _ in 0..50 {
        by_game = data(
            &get("/api/admin/reports/ggr?group_by=game").await,
            StatusCode::OK,
        );
        if by_game.as_array().is_some_and(|rows| rows.len() == 2) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let rows = by_game.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{by_game}");
    let slot1 = rows.iter().find(|r| r["group"] == "demo/slot-1").unwrap();
    assert_eq!(
        (
            slot1["bets"].as_str(),
            slot1["wins"].as_str(),
            slot1["ggr"].as_str(),
            slot1["rtp_percent"].as_str()
        ),
        (Some("18.00"), Some("12.00"), Some("6.00"), Some("66.67"))
    );
    assert_eq!(
        (slot1["bet_count"].as_i64(), slot1["rounds"].as_i64()),
        (Some(3), Some(2))
    );
    let slot2 = rows.iter().find(|r| r["group"] == "demo/slot-2").unwrap();
    assert_eq!(
        (slot2["refunds"].as_str(), slot2["ggr"].as_str()),
        (Some("20.00"), Some("0.00"))
    );
    let by_provider = data(
        &get("/api/admin/reports/rtp?group_by=provider").await,
        StatusCode::OK,
    );
    assert_eq!(by_provider[0]["group"], "demo");
    assert_eq!(by_provider[0]["ggr"], "6.00");
    let players = data(
        &get("/api/admin/reports/players?group_by=game").await,
        StatusCode::OK,
    );
    assert_eq!(
        players,
        json!([
            {"group": "demo/slot-1", "currency": null, "bets": null, "wins": null, "refunds": null, "ggr": null,
             "ngr": null, "rtp_percent": null, "bet_count": null, "rounds": null, "players": 1},
            {"group": "demo/slot-2", "currency": null, "bets": null, "wins": null, "refunds": null, "ggr": null,
             "ngr": null, "rtp_percent": null, "bet_count": null, "rounds": null, "players": 1},
        ])
    );
    let rounds = data(&get("/api/admin/reports/rounds").await, StatusCode::OK);
    assert_eq!(rounds[0]["rounds"], 3);
    let past = data(
        &get("/api/admin/reports/ggr?from=2000-01-01&to=2000-01-31").await,
        StatusCode::OK,
    );
    assert_eq!(past, json!([]));
    refused(
        &get("/api/admin/reports/ggr?from=2000-13-01").await,
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
    );
    refused(
        &get("/api/admin/reports/ggr?group_by=week").await,
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
    );
    refused(
        &get("/api/admin/reports/profit").await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
    let by_provider = data(
        &get("/api/admin/reports/players?group_by=provider").await,
        StatusCode::OK,
    );
    assert_eq!(by_provider[0]["players"], 2, "{by_provider}");
    // Further bets are folded once, not again with the earlier ones: player-2's first bet on
    // slot-1 opens a round and joins slot-1's stored set of players (it does not replace it);
    // player-1's second bet in r2, whose first bet an earlier fold counted, opens none.
    for body in [
        bet("player-2", "c2", "2.00", "r8"),
        bet("player-1", "b4", "1.00", "r2"),
    ] {
        assert_eq!(status_of(&gw.demo("bet", body).await), "OK");
    }
    let mut slot1 = Value::Null;
    for _ in 0..50 {
        let rows = data(
            &get("/api/admin/reports/ggr?group_by=game").await,
            StatusCode::OK,
        );
        slot1 = rows
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["group"] == "demo/slot-1")
            .unwrap()
            .clone();
        if slot1["bets"] == "21.00" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(
        (&slot1["bets"], &slot1["bet_count"], &slot1["rounds"]),
        (&json!("21.00"), &json!(5), &json!(3)),
        "{slot1}"
    );
    let players = data(
        &get("/api/admin/reports/players?group_by=game").await,
        StatusCode::OK,
    );
    let counts: Vec<(&str, i64)> = players
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["group"].as_str().unwrap(), r["players"].as_i64().unwrap()))
        .collect();
    assert_eq!(counts, [("demo/slot-1", 2), ("demo/slot-2", 1)]);
    let by_provider = data(
        &get("/api/admin/reports/players?group_by=provider").await,
        StatusCode::OK,
    );
    assert_eq!(by_provider[0]["players"], 2, "{by_provider}");
    gw.finish().await;
}
