//! Money in and out: `POST /api/payments/webhook/{psp}` credits a deposit once per payment
//! provider's payment id (signed like the native dialect: `X-Signature` over the raw body);
//! `POST /api/user/withdrawals` reserves a player's funds at once; the back office approves or
//! rejects (a rejection returns the funds) from its queue (`GET /api/admin/withdrawals`). Every
//! movement is a ledger row through `settlement::store::adjust`; back-office decisions are audited.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use tokio_postgres::GenericClient;
use utoipa::ToSchema;

use crate::audit::{self, Actor};
use crate::auth::PlayerCaller;
use crate::envelope::{decode, ok, ApiError, ApiResult, Body, Code, Ok, Page, Query};
use crate::handlers::{decimal, parse_amount, path_id, reason_of, QueueSearch};
use crate::Rest;
use settlement::adjust::{Kind, Refusal};

fn refusal(refusal: Refusal) -> ApiError {
    match refusal {
        Refusal::InsufficientFunds => ApiError::conflict(
            Code::InsufficientFunds,
            "the amount is larger than the real balance",
        ),
        Refusal::Overflow => {
            ApiError::field("amount", "the balance would leave the range of amounts")
        }
        Refusal::NoWallet => {
            ApiError::conflict(Code::CurrencyMismatch, "no wallet in this currency")
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DepositNotice {
    /// The payment provider's own id of the payment: a repeat is answered, never credited twice.
    pub payment_id: String,
    /// The player's external id (username).
    pub player_id: String,
    pub currency: String,
    /// Decimal string in the currency's units, > 0.
    pub amount: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Deposit {
    pub deposit_id: i64,
    pub ledger_id: i64,
    pub currency: String,
    pub amount: String,
    /// `true` when this answers a repeat of an earlier notice.
    pub duplicate: bool,
}

#[utoipa::path(post, path = "/api/payments/webhook/{psp}", tag = "payments",
    params(("psp" = String, Path, description = "the payment provider's code")),
    request_body = DepositNotice,
    responses((status = 200, description = "credited (or, for a repeat, the first credit)", body = Deposit),
              (status = 401, description = "INVALID_SIGNATURE", body = crate::envelope::ErrorBody),
              (status = 404, description = "unknown payment provider, or UNKNOWN_PLAYER", body = crate::envelope::ErrorBody),
              (status = 409, description = "DUPLICATE_MISMATCH (same payment id, other content) or CURRENCY_MISMATCH", body = crate::envelope::ErrorBody)))]
pub async fn webhook(
    State(rest): State<Arc<Rest>>,
    Path(psp): Path<String>,
    headers: HeaderMap,
    raw: bytes::Bytes,
) -> ApiResult<Ok<Deposit>> {
    let provider = rest
        .options
        .payment_providers
        .iter()
        .find(|p| p.code == psp)
        .ok_or_else(|| ApiError::not_found("no such payment provider"))?;
    let signature = headers.get("x-signature").map(|v| v.as_bytes());
    let now = i64::try_from(crate::auth::token::now_s()).unwrap_or(i64::MAX);
    if !(rest.options.verify_signature)(
        signature,
        &raw,
        &provider.secrets,
        now,
        provider.signature_window_s,
    ) {
        return Err(ApiError::unauthorized(
            Code::InvalidSignature,
            "the X-Signature does not match",
        ));
    }
    let notice: DepositNotice = decode(&raw)?;
    if !(1..=128).contains(&notice.payment_id.len()) {
        return Err(ApiError::field("payment_id", "1 to 128 bytes"));
    }
    let amount = parse_amount("amount", &notice.amount, &notice.currency)?;
    if amount == 0 {
        return Err(ApiError::field("amount", "greater than zero"));
    }
    let mut client = rest.pool.get().await?;
    let tx = client.transaction().await?;
    // One notice at a time per payment: a concurrent repeat waits, then finds the first.
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1 || ':' || $2, 0))",
        &[&psp, &notice.payment_id],
    )
    .await?;
    let earlier = tx
        .query_opt(
            "SELECT d.id, d.ledger_id, p.external_id, d.currency, d.amount
             FROM deposits d JOIN players p ON p.id = d.player_id
             WHERE d.psp = $1 AND d.psp_payment_id = $2",
            &[&psp, &notice.payment_id],
        )
        .await?;
    if let Some(row) = earlier {
        let same = row.get::<_, String>(2) == notice.player_id
            && row.get::<_, String>(3) == notice.currency
            && row.get::<_, i64>(4) == amount;
        if !same {
            return Err(ApiError::conflict(
                Code::DuplicateMismatch,
                "this payment id was credited with other content",
            ));
        }
        return Result::Ok(Ok(
            StatusCode::OK,
            Deposit {
                deposit_id: row.get(0),
                ledger_id: row.get(1),
                amount: decimal(amount, &notice.currency),
                currency: notice.currency,
                duplicate: true,
            },
        ));
    }
    let player: i64 = tx
        .query_opt(
            "SELECT id FROM players WHERE external_id = $1",
            &[&notice.player_id],
        )
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, Code::UnknownPlayer, "no such player"))?
        .get(0);
    let reference = format!("deposit:{psp}:{}", notice.payment_id);
    let applied = settlement::store::adjust(
        &*tx,
        Kind::Deposit,
        player,
        &notice.currency,
        amount,
        &reference,
    )
    .await?
    .map_err(refusal)?;
    let id: i64 = tx
        .query_one(
            "INSERT INTO deposits (psp, psp_payment_id, player_id, currency, amount, ledger_id)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            &[
                &psp,
                &notice.payment_id,
                &player,
                &notice.currency,
                &amount,
                &applied.ledger_id,
            ],
        )
        .await?
        .get(0);
    tx.commit().await?;
    Result::Ok(Ok(
        StatusCode::OK,
        Deposit {
            deposit_id: id,
            ledger_id: applied.ledger_id,
            amount: decimal(amount, &notice.currency),
            currency: notice.currency,
            duplicate: false,
        },
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WithdrawalRequest {
    /// The wallet's currency (default: the first wallet's).
    pub currency: Option<String>,
    /// Decimal string, > 0.
    pub amount: String,
    /// The caller's own key (1–128 bytes): a retry with the same key answers the first
    /// withdrawal (200) instead of reserving the funds again.
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Withdrawal {
    pub id: i64,
    pub currency: String,
    pub amount: String,
    /// pending, approved or rejected.
    pub state: String,
    /// The real balance after the reservation (or after the refund of a rejection).
    pub balance_after: String,
}

#[utoipa::path(post, path = "/api/user/withdrawals", tag = "player", security(("bearer" = [])),
    request_body = WithdrawalRequest,
    responses((status = 201, description = "the funds are reserved (a ledger row) until the withdrawal is approved or rejected", body = Withdrawal),
              (status = 200, description = "a retry with the same idempotency key: the first withdrawal", body = Withdrawal),
              (status = 400, description = "bad amount or currency", body = crate::envelope::ErrorBody),
              (status = 409, description = "INSUFFICIENT_FUNDS", body = crate::envelope::ErrorBody)))]
pub async fn request(
    State(rest): State<Arc<Rest>>,
    who: PlayerCaller,
    Body(req): Body<WithdrawalRequest>,
) -> ApiResult<Ok<Withdrawal>> {
    let mut client = rest.pool.get().await?;
    let tx = client.transaction().await?;
    let currency: String = tx
        .query_opt(
            "SELECT currency FROM wallets WHERE player_id = $1 AND ($2::text IS NULL OR currency = $2)
             ORDER BY created_at, currency LIMIT 1",
            &[&who.player, &req.currency],
        )
        .await?
        .map(|r| r.get(0))
        .ok_or_else(|| ApiError::field("currency", "you have no wallet in this currency"))?;
    let amount = parse_amount("amount", &req.amount, &currency)?;
    if amount == 0 {
        return Err(ApiError::field("amount", "greater than zero"));
    }
    if let Some(key) = &req.idempotency_key {
        if !(1..=128).contains(&key.len()) {
            return Err(ApiError::field("idempotency_key", "1 to 128 bytes"));
        }
        // The player's wallets row serialises their withdrawals, so a concurrent retry waits
        // here and then finds the first.
        tx.execute(
            "SELECT 1 FROM wallets WHERE player_id = $1 AND currency = $2 FOR UPDATE",
            &[&who.player, &currency],
        )
        .await?;
        let earlier = tx
            .query_opt(
                "SELECT w.id, w.currency, w.amount, w.state, t.balance_after
                 FROM withdrawals w JOIN transactions t ON t.id = w.reserve_ledger_id
                 WHERE w.player_id = $1 AND w.idempotency_key = $2",
                &[&who.player, key],
            )
            .await?;
        if let Some(row) = earlier {
            let (id, was_currency, was_amount): (i64, String, i64) =
                (row.get(0), row.get(1), row.get(2));
            if was_currency != currency || was_amount != amount {
                return Err(ApiError::conflict(
                    Code::IdempotencyKeyReused,
                    "this idempotency key belongs to another withdrawal",
                ));
            }
            return Result::Ok(Ok(
                StatusCode::OK,
                Withdrawal {
                    id,
                    amount: decimal(amount, &currency),
                    balance_after: decimal(row.get(4), &currency),
                    state: row.get(3),
                    currency,
                },
            ));
        }
    }
    let id: i64 = tx
        .query_one(
            "SELECT nextval(pg_get_serial_sequence('withdrawals', 'id'))",
            &[],
        )
        .await?
        .get(0);
    let applied = settlement::store::adjust(
        &*tx,
        Kind::Withdrawal,
        who.player,
        &currency,
        -amount,
        &format!("withdrawal-{id}"),
    )
    .await?
    .map_err(refusal)?;
    tx.execute(
        "INSERT INTO withdrawals (id, player_id, currency, amount, state, reserve_ledger_id,
                                  idempotency_key)
         OVERRIDING SYSTEM VALUE VALUES ($1, $2, $3, $4, 'pending', $5, $6)",
        &[
            &id,
            &who.player,
            &currency,
            &amount,
            &applied.ledger_id,
            &req.idempotency_key,
        ],
    )
    .await?;
    tx.commit().await?;
    Result::Ok(Ok(
        StatusCode::CREATED,
        Withdrawal {
            id,
            amount: decimal(amount, &currency),
            balance_after: decimal(applied.balance_after, &currency),
            currency,
            state: "pending".into(),
        },
    ))
}

/// A withdrawal as the back office sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct WithdrawalRow {
    pub id: i64,
    pub player_id: i64,
    pub currency: String,
    pub amount: String,
    pub state: String,
    /// The decision's reason, once decided.
    pub reason: Option<String>,
    pub created_at: String,
    pub decided_at: Option<String>,
}

#[utoipa::path(get, path = "/api/admin/withdrawals", tag = "admin", security(("bearer" = [])),
    params(QueueSearch),
    responses((status = 200, description = "withdrawals in that state, oldest first", body = Page<WithdrawalRow>),
              (status = 400, description = "a bad state or cursor", body = crate::envelope::ErrorBody)))]
pub async fn list(
    State(rest): State<Arc<Rest>>,
    Query(q): Query<QueueSearch>,
) -> ApiResult<Ok<Page<WithdrawalRow>>> {
    let (state, len, after) = q.page(&["pending", "approved", "rejected"])?;
    let client = rest.pool.get().await?;
    let rows = client
        .query(
            &format!(
                "SELECT id, player_id, currency, amount, state, reason, {}, {}
                 FROM withdrawals WHERE state = $1 AND ($2::bigint IS NULL OR id > $2)
                 ORDER BY id LIMIT $3",
                crate::rfc3339!("created_at"),
                crate::rfc3339!("decided_at"),
            ),
            &[&state, &after, &(len + 1)],
        )
        .await?;
    let items = rows
        .iter()
        .map(|r| {
            let currency: String = r.get(2);
            WithdrawalRow {
                id: r.get(0),
                player_id: r.get(1),
                amount: decimal(r.get(3), &currency),
                currency,
                state: r.get(4),
                reason: r.get(5),
                created_at: r.get(6),
                decided_at: r.get(7),
            }
        })
        .collect();
    ok(Page::of(items, len, |w| w.id.to_string()))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    /// Why (1–500 characters), kept in the audit log.
    pub reason: String,
}

/// Locks pending withdrawal `id`: (player, currency, amount).
async fn pending(client: &impl GenericClient, id: i64) -> ApiResult<(i64, String, i64)> {
    let row = client
        .query_opt(
            "SELECT player_id, currency, amount, state FROM withdrawals WHERE id = $1 FOR UPDATE",
            &[&id],
        )
        .await?
        .ok_or_else(|| ApiError::not_found("no such withdrawal"))?;
    if row.get::<_, String>(3) != "pending" {
        return Err(ApiError::conflict(
            Code::NotPending,
            "this withdrawal was decided already",
        ));
    }
    Result::Ok((row.get(0), row.get(1), row.get(2)))
}

/// Approves (`refund` false) or rejects (`refund` true: the reserved funds go back).
async fn decide(
    rest: &Rest,
    actor: &Actor,
    id: &str,
    reason: &str,
    reject: bool,
) -> ApiResult<Ok<Withdrawal>> {
    let id = path_id(id)?;
    let reason = reason_of(reason)?;
    let mut client = rest.pool.get().await?;
    let tx = client.transaction().await?;
    let (player, currency, amount) = pending(&*tx, id).await?;
    let (state, refund, balance) = if reject {
        let applied = settlement::store::adjust(
            &*tx,
            Kind::Withdrawal,
            player,
            &currency,
            amount,
            &format!("withdrawal-{id}-refund"),
        )
        .await?
        .map_err(refusal)?;
        ("rejected", Some(applied.ledger_id), applied.balance_after)
    } else {
        let balance: i64 = tx
            .query_one(
                "SELECT balance FROM wallets WHERE player_id = $1 AND currency = $2",
                &[&player, &currency],
            )
            .await?
            .get(0);
        ("approved", None, balance)
    };
    tx.execute(
        "UPDATE withdrawals SET state = $2, refund_ledger_id = $3, decided_by = $4, reason = $5,
                decided_at = now()
         WHERE id = $1",
        &[&id, &state, &refund, &actor.caller.account, &reason],
    )
    .await?;
    audit::record(
        &*tx,
        actor,
        audit::Entry {
            action: if reject { "withdrawal.reject" } else { "withdrawal.approve" },
            target_kind: "withdrawal",
            target_id: id.to_string(),
            before: serde_json::json!({"state": "pending"}),
            after: serde_json::json!({"state": state, "player": player, "currency": currency, "amount": amount}),
            reason,
        },
    )
    .await?;
    tx.commit().await?;
    ok_withdrawal(id, &currency, amount, state, balance)
}

fn ok_withdrawal(
    id: i64,
    currency: &str,
    amount: i64,
    state: &str,
    balance: i64,
) -> ApiResult<Ok<Withdrawal>> {
    Result::Ok(Ok(
        StatusCode::OK,
        Withdrawal {
            id,
            currency: currency.to_string(),
            amount: decimal(amount, currency),
            state: state.to_string(),
            balance_after: decimal(balance, currency),
        },
    ))
}

#[utoipa::path(post, path = "/api/admin/withdrawals/{id}/approve", tag = "admin", security(("bearer" = [])),
    params(("id" = i64, Path, description = "withdrawal id")), request_body = Decision,
    responses((status = 200, description = "approved: the reserved funds leave for good", body = Withdrawal),
              (status = 404, description = "no such withdrawal", body = crate::envelope::ErrorBody),
              (status = 409, description = "NOT_PENDING", body = crate::envelope::ErrorBody)))]
pub async fn approve(
    State(rest): State<Arc<Rest>>,
    actor: Actor,
    Path(id): Path<String>,
    Body(req): Body<Decision>,
) -> ApiResult<Ok<Withdrawal>> {
    decide(&rest, &actor, &id, &req.reason, false).await
}

#[utoipa::path(post, path = "/api/admin/withdrawals/{id}/reject", tag = "admin", security(("bearer" = [])),
    params(("id" = i64, Path, description = "withdrawal id")), request_body = Decision,
    responses((status = 200, description = "rejected: the reserved funds are back in the wallet (a ledger row)", body = Withdrawal),
              (status = 404, description = "no such withdrawal", body = crate::envelope::ErrorBody),
              (status = 409, description = "NOT_PENDING", body = crate::envelope::ErrorBody)))]
pub async fn reject(
    State(rest): State<Arc<Rest>>,
    actor: Actor,
    Path(id): Path<String>,
    Body(req): Body<Decision>,
) -> ApiResult<Ok<Withdrawal>> {
    decide(&rest, &actor, &id, &req.reason, true).await
}
