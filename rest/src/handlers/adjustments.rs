//! `/api/admin/players/{id}/adjustments`, `/api/admin/adjustments` (the queue) and
//! `/api/admin/adjustments/{id}/approve`: credits and debits by the back office. Each needs a fresh TOTP code (step-up) and an idempotency key;
//! above the currency's approval threshold (`rest.adjustment_approval_above_in`, else
//! `rest.adjustment_approval_above` whole units), counting what the same staff member moved
//! alone that day in that currency, a second admin approves before money moves. The
//! ledger row (through `settlement::store::adjust`) and the audit row commit together.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tokio_postgres::GenericClient;
use utoipa::ToSchema;

use crate::audit::{self, Actor};
use crate::envelope::{ok, ApiError, ApiResult, Body, Code, Ok, Page, Query};
use crate::handlers::auth::{accept_code, second_factor_attempt};
use crate::handlers::{decimal, parse_amount, path_id, reason_of, QueueSearch};
use crate::Rest;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdjustmentRequest {
    pub currency: String,
    /// Decimal string, > 0, in the currency's units.
    pub amount: String,
    /// credit or debit.
    pub direction: String,
    /// 1–500 characters, kept with the adjustment and in the audit log.
    pub reason: String,
    /// The caller's own key (1–128 bytes): a retry with the same key and request answers the
    /// first outcome instead of moving money again.
    pub idempotency_key: String,
    /// The acting staff member's current TOTP code (step-up).
    pub totp_code: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Adjustment {
    pub id: i64,
    pub player_id: i64,
    pub currency: String,
    /// Signed decimal: negative for a debit.
    pub delta: String,
    pub reason: String,
    /// pending_approval or applied.
    pub state: String,
    pub requested_by: i64,
    pub approved_by: Option<i64>,
    /// The ledger row, once applied.
    pub ledger_id: Option<i64>,
    /// Real balance after it, once applied.
    pub balance_after: Option<String>,
    /// `true` when this answers a retry of an earlier request.
    pub duplicate: bool,
}

fn adjustment_of(row: &tokio_postgres::Row, duplicate: bool) -> Adjustment {
    let currency: String = row.get(2);
    let balance_after: Option<i64> = row.get(9);
    Adjustment {
        id: row.get(0),
        player_id: row.get(1),
        delta: decimal(row.get(3), &currency),
        reason: row.get(4),
        state: row.get(5),
        requested_by: row.get(6),
        approved_by: row.get(7),
        ledger_id: row.get(8),
        balance_after: balance_after.map(|b| decimal(b, &currency)),
        currency,
        duplicate,
    }
}

const SELECT: &str = "SELECT a.id, a.player_id, a.currency, a.delta, a.reason, a.state,
        a.requested_by, a.approved_by, a.ledger_id, t.balance_after
    FROM adjustments a LEFT JOIN transactions t ON t.id = a.ledger_id";

/// Checks the acting account's TOTP code (accepted once).
pub(crate) async fn step_up(
    rest: &Rest,
    client: &impl GenericClient,
    actor: &Actor,
    code: &str,
) -> ApiResult<()> {
    let ip: std::net::IpAddr = actor
        .ip
        .parse()
        .unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
    second_factor_attempt(rest, ip, actor.caller.account)?;
    let secret: Option<String> = client
        .query_one(
            "SELECT totp_secret FROM accounts WHERE id = $1 AND totp_enabled",
            &[&actor.caller.account],
        )
        .await
        .map(|r| r.get(0))
        .unwrap_or(None);
    let secret = secret.ok_or_else(|| {
        ApiError::forbidden(
            Code::SecondFactorRequired,
            "money movements need 2FA on the acting account",
        )
    })?;
    accept_code(rest, client, actor.caller.account, &secret, code).await
}

/// Applies adjustment `id` (locked by the caller) and answers its row; refusals roll back.
async fn apply_locked(
    tx: &impl GenericClient,
    id: i64,
    player: i64,
    currency: &str,
    delta: i64,
) -> ApiResult<i64> {
    let reference = format!("adjustment-{id}");
    let kind = settlement::adjust::Kind::Adjustment;
    let applied = settlement::store::adjust(tx, kind, player, currency, delta, &reference)
        .await?
        .map_err(|refusal| match refusal {
            settlement::adjust::Refusal::InsufficientFunds => ApiError::conflict(
                Code::InsufficientFunds,
                "the debit is larger than the real balance",
            ),
            settlement::adjust::Refusal::Overflow => {
                ApiError::field("amount", "the balance would leave the range of amounts")
            }
            settlement::adjust::Refusal::NoWallet => {
                ApiError::field("currency", "the player has no wallet in this currency")
            }
        })?;
    tx.execute(
        "UPDATE adjustments SET state = 'applied', ledger_id = $2, applied_at = now() WHERE id = $1",
        &[&id, &applied.ledger_id],
    )
    .await?;
    Result::Ok(applied.balance_after)
}

#[utoipa::path(post, path = "/api/admin/players/{id}/adjustments", tag = "admin", security(("bearer" = [])),
    params(("id" = i64, Path, description = "player id")), request_body = AdjustmentRequest,
    responses((status = 201, description = "applied: ledger row and audit row written together", body = Adjustment),
              (status = 202, description = "above the approval threshold: waits for a second admin", body = Adjustment),
              (status = 200, description = "a retry with the same idempotency key: the first outcome", body = Adjustment),
              (status = 400, description = "invalid fields", body = crate::envelope::ErrorBody),
              (status = 401, description = "TOTP_INVALID", body = crate::envelope::ErrorBody),
              (status = 409, description = "INSUFFICIENT_FUNDS, or IDEMPOTENCY_KEY_REUSED with another request", body = crate::envelope::ErrorBody)))]
pub async fn create(
    State(rest): State<Arc<Rest>>,
    actor: Actor,
    Path(player): Path<String>,
    Body(req): Body<AdjustmentRequest>,
) -> ApiResult<Ok<Adjustment>> {
    let player = path_id(&player)?;
    let magnitude = parse_amount("amount", &req.amount, &req.currency)?;
    if magnitude == 0 {
        return Err(ApiError::field("amount", "greater than zero"));
    }
    let delta = match req.direction.as_str() {
        "credit" => magnitude,
        "debit" => -magnitude,
        _ => return Err(ApiError::field("direction", "credit or debit")),
    };
    let reason = reason_of(&req.reason)?;
    if !(1..=128).contains(&req.idempotency_key.len()) {
        return Err(ApiError::field("idempotency_key", "1 to 128 bytes"));
    }
    let threshold = match rest.options.adjustment_approval_above_in.get(&req.currency) {
        Some(amount) => parse_amount("amount", amount, &req.currency)?,
        None => parse_amount(
            "amount",
            &rest.options.adjustment_approval_above.to_string(),
            &req.currency,
        )?,
    };
    let mut client = rest.pool.get().await?;
    let tx = client.transaction().await?;
    // A retry of an earlier request answers its outcome (no new code needed: it was authorised).
    let earlier = tx
        .query_opt(
            &format!("{SELECT} WHERE a.idempotency_key = $1"),
            &[&req.idempotency_key],
        )
        .await?;
    if let Some(row) = earlier {
        let same = row.get::<_, i64>(1) == player
            && row.get::<_, String>(2) == req.currency
            && row.get::<_, i64>(3) == delta
            && row.get::<_, i64>(6) == actor.caller.account;
        if !same {
            return Err(ApiError::conflict(
                Code::IdempotencyKeyReused,
                "this idempotency key belongs to another request",
            ));
        }
        return Result::Ok(Ok(StatusCode::OK, adjustment_of(&row, true)));
    }
    step_up(&rest, &*tx, &actor, &req.totp_code).await?;
    let exists = tx
        .query_opt("SELECT 1 FROM players WHERE id = $1", &[&player])
        .await?;
    if exists.is_none() {
        return Err(ApiError::not_found("no such player"));
    }
    // Splitting does not get around the threshold: what this staff member moved today in this
    // currency without a second admin counts too (their account row serialises their requests).
    tx.execute(
        "SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE",
        &[&actor.caller.account],
    )
    .await?;
    let moved_today: i64 = tx
        .query_one(
            "SELECT coalesce(sum(abs(delta)), 0)::bigint FROM adjustments
             WHERE requested_by = $1 AND currency = $2 AND approved_by IS NULL
               AND state = 'applied' AND created_at >= date_trunc('day', now())",
            &[&actor.caller.account, &req.currency],
        )
        .await?
        .get(0);
    let pending = magnitude.saturating_add(moved_today) > threshold;
    // Written as pending; applying it (at once below the threshold) sets its ledger row.
    let id: i64 = tx
        .query_one(
            "INSERT INTO adjustments (idempotency_key, player_id, currency, delta, reason, state,
                                      requested_by)
             VALUES ($1, $2, $3, $4, $5, 'pending_approval', $6) RETURNING id",
            &[
                &req.idempotency_key,
                &player,
                &req.currency,
                &delta,
                &reason,
                &actor.caller.account,
            ],
        )
        .await
        .map_err(|e| {
            if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) {
                ApiError::conflict(Code::IdempotencyKeyReused, "this idempotency key is in use")
            } else {
                e.into()
            }
        })?
        .get(0);
    let (status, action, after) = if pending {
        (
            StatusCode::ACCEPTED,
            "adjustment.request",
            serde_json::json!({"state": "pending_approval"}),
        )
    } else {
        let balance = apply_locked(&*tx, id, player, &req.currency, delta).await?;
        (
            StatusCode::CREATED,
            "adjustment.apply",
            serde_json::json!({"state": "applied", "balance": balance}),
        )
    };
    audit::record(
        &*tx,
        &actor,
        audit::Entry {
            action,
            target_kind: "player",
            target_id: player.to_string(),
            before: serde_json::Value::Null,
            after: serde_json::json!({"adjustment": id, "currency": req.currency, "delta": delta, "result": after}),
            reason,
        },
    )
    .await?;
    let row = tx
        .query_one(&format!("{SELECT} WHERE a.id = $1"), &[&id])
        .await?;
    tx.commit().await?;
    Result::Ok(Ok(status, adjustment_of(&row, false)))
}

#[utoipa::path(get, path = "/api/admin/adjustments", tag = "admin", security(("bearer" = [])),
    params(QueueSearch),
    responses((status = 200, description = "adjustments in that state, newest first", body = Page<Adjustment>),
              (status = 400, description = "a bad state or cursor", body = crate::envelope::ErrorBody)))]
pub async fn list(
    State(rest): State<Arc<Rest>>,
    Query(q): Query<QueueSearch>,
) -> ApiResult<Ok<Page<Adjustment>>> {
    let (state, len, after) = q.page(&["pending_approval", "applied"])?;
    let client = rest.pool.get().await?;
    let rows = client
        .query(
            &format!(
                "{SELECT} WHERE a.state = $1 AND ($2::bigint IS NULL OR a.id < $2)
                 ORDER BY a.id DESC LIMIT $3"
            ),
            &[&state, &after, &(len + 1)],
        )
        .await?;
    let items = rows.iter().map(|r| adjustment_of(r, false)).collect();
    ok(Page::of(items, len, |a| a.id.to_string()))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveRequest {
    /// The approving admin's current TOTP code (step-up).
    pub totp_code: String,
}

#[utoipa::path(post, path = "/api/admin/adjustments/{id}/approve", tag = "admin", security(("bearer" = [])),
    params(("id" = i64, Path, description = "adjustment id")), request_body = ApproveRequest,
    responses((status = 200, description = "approved and applied", body = Adjustment),
              (status = 403, description = "FOUR_EYES: the requester cannot approve", body = crate::envelope::ErrorBody),
              (status = 404, description = "no such adjustment", body = crate::envelope::ErrorBody),
              (status = 409, description = "NOT_PENDING, or INSUFFICIENT_FUNDS", body = crate::envelope::ErrorBody)))]
pub async fn approve(
    State(rest): State<Arc<Rest>>,
    actor: Actor,
    Path(id): Path<String>,
    Body(req): Body<ApproveRequest>,
) -> ApiResult<Ok<Adjustment>> {
    let id = path_id(&id)?;
    let mut client = rest.pool.get().await?;
    let tx = client.transaction().await?;
    let row = tx
        .query_opt(
            "SELECT player_id, currency, delta, state, requested_by, reason
             FROM adjustments WHERE id = $1 FOR UPDATE",
            &[&id],
        )
        .await?
        .ok_or_else(|| ApiError::not_found("no such adjustment"))?;
    let (player, currency, delta, state, requested_by, reason): (
        i64,
        String,
        i64,
        String,
        i64,
        String,
    ) = (
        row.get(0),
        row.get(1),
        row.get(2),
        row.get(3),
        row.get(4),
        row.get(5),
    );
    if state != "pending_approval" {
        return Err(ApiError::conflict(
            Code::NotPending,
            "this adjustment is not waiting for approval",
        ));
    }
    if requested_by == actor.caller.account {
        return Err(ApiError::forbidden(
            Code::FourEyes,
            "another admin must approve your request",
        ));
    }
    step_up(&rest, &*tx, &actor, &req.totp_code).await?;
    let balance = apply_locked(&*tx, id, player, &currency, delta).await?;
    tx.execute(
        "UPDATE adjustments SET approved_by = $2 WHERE id = $1",
        &[&id, &actor.caller.account],
    )
    .await?;
    audit::record(
        &*tx,
        &actor,
        audit::Entry {
            action: "adjustment.approve",
            target_kind: "player",
            target_id: player.to_string(),
            before: serde_json::json!({"adjustment": id, "state": "pending_approval"}),
            after: serde_json::json!({"adjustment": id, "state": "applied", "delta": delta, "balance": balance}),
            reason: &reason,
        },
    )
    .await?;
    let row = tx
        .query_one(&format!("{SELECT} WHERE a.id = $1"), &[&id])
        .await?;
    tx.commit().await?;
    Result::Ok(Ok(StatusCode::OK, adjustment_of(&row, false)))
}
