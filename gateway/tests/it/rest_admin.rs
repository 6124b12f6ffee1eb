//! The back office over real HTTP and PostgreSQL: player status and forced logout, each
//! mutation audited exactly once in its own transaction, refusals audited never, and an audit
//! log the application's own database role cannot change.

use gateway::test_util::{start_gateway, TestGateway, PLAYER_PASSWORD, REST_ON};
use http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::money_path::{bet, win, START};
use crate::rest_auth::{data, refused, staff_token};

async fn audit_rows(gw: &TestGateway) -> i64 {
    let client = gw.db.connect().await;
    client
        .query_one("SELECT count(*) FROM audit_log", &[])
        .await
        .unwrap()
        .get(0)
}

async fn player_id(gw: &TestGateway, name: &str) -> i64 {
    let client = gw.db.connect().await;
    client
        .query_one("SELECT id FROM players WHERE external_id = $1", &[&name])
        .await
        .unwrap()
        .get(0)
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
