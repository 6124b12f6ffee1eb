//! Money in and out over real HTTP and PostgreSQL: a signed deposit webhook credited once per
//! payment id, and withdrawals reserved at once, then approved or rejected (funds back).

use gateway::test_util::{now_s, start_gateway, Answer, TestGateway, PSP_SECRET, REST_ON};
use http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::money_path::START;
use crate::rest_auth::{data, refused, staff_token};

/// A player's withdrawal request.
async fn withdraw(gw: &TestGateway, token: &str, body: Value) -> Answer {
    let path = "/api/user/withdrawals";
    gw.api(Method::POST, path, Some(token), Some(body)).await
}

/// player-1's balance and number of deposit rows.
async fn deposits(gw: &TestGateway) -> (i64, i64) {
    let rows = ledger_rows(gw, "player-1", "deposit").await;
    (gw.balance("player-1").await, rows)
}

async fn ledger_rows(gw: &TestGateway, player: &str, kind: &str) -> i64 {
    gw.value(
        "SELECT count(*) FROM transactions t JOIN players p ON p.id = t.player_id
             WHERE p.external_id = $1 AND t.kind = $2",
        &[&player, &kind],
    )
    .await
}

async fn webhook(
    gw: &TestGateway,
    psp: &str,
    body: &Value,
    secret: &str,
    t: i64,
) -> gateway::test_util::Answer {
    let bytes = body.to_string();
    let signature = gateway::signature::sign_native(secret.as_bytes(), t, bytes.as_bytes());
    let headers = [
        ("Content-Type", "application/json".to_string()),
        ("X-Signature", signature),
    ];
    gw.request(
        Method::POST,
        &format!("/api/payments/webhook/{psp}"),
        &headers,
        bytes,
    )
    .await
}

#[tokio::test]
async fn a_signed_deposit_is_credited_once_per_payment_id() {
    let gw = start_gateway(REST_ON).await;
    let notice = json!({"payment_id": "pay-1", "player_id": "player-1", "currency": "EUR", "amount": "25.00"});
    // Refusals first: nothing moves.
    refused(
        &webhook(&gw, "psp", &notice, "not-the-secret-at-all", now_s()).await,
        StatusCode::UNAUTHORIZED,
        "INVALID_SIGNATURE",
    );
    refused(
        &webhook(&gw, "psp", &notice, PSP_SECRET, now_s() - 3600).await,
        StatusCode::UNAUTHORIZED,
        "INVALID_SIGNATURE",
    );
    refused(
        &webhook(&gw, "nope", &notice, PSP_SECRET, now_s()).await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
    let unknown =
        json!({"payment_id": "pay-2", "player_id": "nobody", "currency": "EUR", "amount": "1.00"});
    refused(
        &webhook(&gw, "psp", &unknown, PSP_SECRET, now_s()).await,
        StatusCode::NOT_FOUND,
        "UNKNOWN_PLAYER",
    );
    let usd = json!({"payment_id": "pay-3", "player_id": "player-1", "currency": "USD", "amount": "1.00"});
    refused(
        &webhook(&gw, "psp", &usd, PSP_SECRET, now_s()).await,
        StatusCode::CONFLICT,
        "CURRENCY_MISMATCH",
    );
    let float =
        json!({"payment_id": "pay-4", "player_id": "player-1", "currency": "EUR", "amount": 1.5});
    refused(
        &webhook(&gw, "psp", &float, PSP_SECRET, now_s()).await,
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
    );
    assert_eq!(deposits(&gw).await, (START, 1));

    let first = data(
        &webhook(&gw, "psp", &notice, PSP_SECRET, now_s()).await,
        StatusCode::OK,
    );
    assert_eq!(first["duplicate"], false);
    assert_eq!(gw.balance("player-1").await, START + 2500);
    let again = data(
        &webhook(&gw, "psp", &notice, PSP_SECRET, now_s()).await,
        StatusCode::OK,
    );
    assert_eq!(
        (again["duplicate"].clone(), again["ledger_id"].clone()),
        (json!(true), first["ledger_id"].clone())
    );
    let mut changed = notice.clone();
    changed["amount"] = json!("26.00");
    refused(
        &webhook(&gw, "psp", &changed, PSP_SECRET, now_s()).await,
        StatusCode::CONFLICT,
        "DUPLICATE_MISMATCH",
    );
    // Seed deposit + this one.
    assert_eq!(deposits(&gw).await, (START + 2500, 2));
    gw.finish().await;
}

/// Issue 33 (12): a retried withdrawal request reserved the funds twice.
#[tokio::test]
async fn a_withdrawal_retried_with_its_key_reserves_once() {
    let gw = start_gateway(REST_ON).await;
    let player = gw.player_token("player-3").await;
    let ask = |amount: &str, key: &str| {
        let body = json!({"amount": amount, "idempotency_key": key});
        withdraw(&gw, &player, body)
    };
    let first = data(&ask("100.00", "w-1").await, StatusCode::CREATED);
    let again = data(&ask("100.00", "w-1").await, StatusCode::OK);
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["balance_after"], "900.00");
    refused(
        &ask("20.00", "w-1").await,
        StatusCode::CONFLICT,
        "IDEMPOTENCY_KEY_REUSED",
    );
    assert_eq!(gw.balance("player-3").await, START - 10_000);
    assert_eq!(ledger_rows(&gw, "player-3", "withdrawal").await, 1);
    gw.finish().await;
}

#[tokio::test]
async fn withdrawals_reserve_funds_and_a_rejection_returns_them() {
    let gw = start_gateway(REST_ON).await;
    let player = gw.player_token("player-2").await;
    let ask = |amount: &str| withdraw(&gw, &player, json!({"amount": amount}));
    refused(
        &ask("1000.01").await,
        StatusCode::CONFLICT,
        "INSUFFICIENT_FUNDS",
    );
    refused(&ask("0").await, StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
    let first = data(&ask("100.00").await, StatusCode::CREATED);
    assert_eq!(
        (first["state"].as_str(), first["balance_after"].as_str()),
        (Some("pending"), Some("900.00"))
    );
    let second = data(&ask("50.00").await, StatusCode::CREATED);
    assert_eq!(gw.balance("player-2").await, START - 15_000);

    let manager = staff_token(&gw, "manager-1", "manager").await;
    let decide = |id: &Value, verb: &str| {
        let (gw, manager) = (&gw, manager.clone());
        let path = format!("/api/admin/withdrawals/{id}/{verb}");
        async move {
            gw.api(
                Method::POST,
                &path,
                Some(&manager),
                Some(json!({"reason": "checked"})),
            )
            .await
        }
    };
    let rejected = data(&decide(&first["id"], "reject").await, StatusCode::OK);
    assert_eq!(
        (
            rejected["state"].as_str(),
            rejected["balance_after"].as_str()
        ),
        (Some("rejected"), Some("950.00"))
    );
    refused(
        &decide(&first["id"], "approve").await,
        StatusCode::CONFLICT,
        "NOT_PENDING",
    );
    let approved = data(&decide(&second["id"], "approve").await, StatusCode::OK);
    assert_eq!(approved["state"], "approved");
    assert_eq!(gw.balance("player-2").await, START - 5_000);
    // Reserve, reserve, refund: three withdrawal rows in the ledger; two decisions audited.
    assert_eq!(ledger_rows(&gw, "player-2", "withdrawal").await, 3);
    let client = gw.db.connect().await;
    let audited: i64 = client
        .query_one(
            "SELECT count(*) FROM audit_log WHERE target_kind = 'withdrawal'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(audited, 2);
    refused(
        &decide(&json!(999_999), "approve").await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
    gw.finish().await;
}
