//! A ledger transaction's story (`/api/admin/transactions/{id}/trace`): every callback that
//! named it, as received and as answered (kept by the gateway's trace writer), the balance
//! before and after, and the commit that settled it; and its replay (`.../replay`) through the
//! callback pipeline, which must come back a duplicate with the original answer.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::{Path, State};
use base64::Engine;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::audit::{self, Actor};
use crate::desk::StoredCallback;
use crate::envelope::{ok, ApiError, ApiResult, Body, Ok};
use crate::handlers::user::{transaction_of, Transaction, TX_SELECT};
use crate::handlers::{decimal, path_id, reason_of};
use crate::Rest;

#[derive(Debug, Serialize, ToSchema)]
pub struct Trace {
    pub transaction: Transaction,
    /// Real and bonus money before the row (after is in `transaction`).
    pub balance_before: String,
    pub bonus_before: String,
    /// Every callback that named the transaction, oldest first (retries and replays too);
    /// empty for back-office rows, or when tracing was off.
    pub requests: Vec<TracedRequest>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TracedRequest {
    pub received_at: String,
    /// `provider` (from the wire) or `replay`.
    pub origin: String,
    /// The TCP peer, and the caller's address after the trusted-proxy rule.
    pub peer: String,
    pub caller_ip: String,
    pub method: String,
    /// Path and query as received (a credential that is the shared secret itself is blanked).
    pub target: String,
    /// "name: value", in arrival order (Authorization and Cookie blanked).
    pub headers: Vec<String>,
    /// The body exactly as received, base64.
    pub body_base64: String,
    /// The body as text, when it is UTF-8.
    pub body: Option<String>,
    pub signature: SignatureCheck,
    /// The core command the bytes decode to (decoded again now, by the provider's dialect).
    pub decoded: Option<String>,
    /// Why the bytes do not decode now, if they do not.
    pub decode_error: Option<String>,
    /// The answer sent: HTTP status, body and native outcome code.
    pub status: u16,
    pub answer: String,
    pub outcome: String,
    /// `batch` (settled by a commit), `dedup_index`, `twin` or `refused`.
    pub answered_by: String,
    pub duplicate: bool,
    /// The commit that settled it, when a batch did.
    pub batch: Option<BatchMark>,
    pub timings_us: Timings,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SignatureCheck {
    /// Every stored request passed its check (refused ones are not kept).
    pub verified: bool,
    pub scheme: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchMark {
    pub lane: i16,
    /// The lane's batch counter since its gateway started.
    pub batch: i64,
    /// Commands the batch held.
    pub len: i32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Timings {
    pub read_body: i32,
    pub verify: i32,
    /// In the lane's queue before its batch began.
    pub queued: Option<i32>,
    /// The batch's transaction, BEGIN to COMMIT.
    pub commit: Option<i32>,
    pub total: i32,
}

/// The columns of `callback_requests` [`stored_of`] reads, joined to the provider's code.
const REQUEST_SELECT: &str = "SELECT p.code, extract(epoch FROM r.received_at)::text,
        r.origin, r.peer, r.caller_ip, r.method, r.target, r.headers, r.body, r.signature,
        r.status, r.answer, r.outcome, r.answered_by, r.duplicate, r.lane, r.batch, r.batch_len,
        r.read_us, r.verify_us, r.queued_us, r.commit_us, r.total_us, ";

fn stored_of(r: &tokio_postgres::Row) -> StoredCallback {
    let epoch: String = r.get(1);
    let received_at = parse_epoch(&epoch);
    StoredCallback {
        provider: r.get(0),
        received_at,
        peer: r.get(3),
        method: r.get(5),
        target: r.get(6),
        headers: r.get(7),
        body: r.get(8),
        answer: r.get(11),
    }
}

/// `seconds.fraction` since the epoch, to the microsecond (as PostgreSQL keeps time).
fn parse_epoch(text: &str) -> SystemTime {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, "0"));
    let seconds: u64 = whole.parse().unwrap_or(0);
    let digits: String = fraction.chars().chain("000000".chars()).take(6).collect();
    let micros: u64 = digits.parse().unwrap_or(0);
    SystemTime::UNIX_EPOCH + Duration::from_secs(seconds) + Duration::from_micros(micros)
}

#[utoipa::path(get, path = "/api/admin/transactions/{id}/trace", tag = "admin", security(("bearer" = [])),
    params(("id" = i64, Path, description = "ledger transaction id")),
    responses((status = 200, description = "the ledger row, balance before and after, and every callback that named it as received and answered", body = Trace),
              (status = 404, description = "no such transaction", body = crate::envelope::ErrorBody)))]
pub async fn trace(State(rest): State<Arc<Rest>>, Path(id): Path<String>) -> ApiResult<Ok<Trace>> {
    let id = path_id(&id)?;
    let client = rest.pool.get().await?;
    let row = client
        .query_opt(&format!("{TX_SELECT} WHERE t.id = $1"), &[&id])
        .await?
        .ok_or_else(|| ApiError::not_found("no such transaction"))?;
    let before = client
        .query_one(
            "SELECT balance_before, bonus_before, provider_id FROM transactions WHERE id = $1",
            &[&id],
        )
        .await?;
    let transaction = transaction_of(&row);
    let balance_before = decimal(before.get(0), &transaction.currency);
    let bonus_before = decimal(before.get(1), &transaction.currency);
    let provider_id: Option<i32> = before.get(2);
    let mut requests = Vec::new();
    if let (Some(provider_id), Some(tx)) = (provider_id, &transaction.provider_tx_id) {
        let rows = client
            .query(
                &format!(
                    "{REQUEST_SELECT} {}
                     FROM callback_requests r JOIN providers p ON p.id = r.provider_id
                     WHERE r.provider_id = $1 AND r.provider_tx_id = $2
                     ORDER BY r.received_at",
                    crate::rfc3339!("r.received_at")
                ),
                &[&provider_id, tx],
            )
            .await?;
        let desk = rest.desk.get();
        for r in &rows {
            let stored = stored_of(r);
            let (decoded, decode_error) = match desk.map(|d| d.decode(&stored)) {
                Some(Result::Ok(command)) => (Some(command), None),
                Some(Err(why)) => (None, Some(why)),
                None => (None, Some("the callback pipeline is not attached".into())),
            };
            let lane: Option<i16> = r.get(15);
            requests.push(TracedRequest {
                received_at: r.get(23),
                origin: r.get(2),
                peer: stored.peer.clone(),
                caller_ip: r.get(4),
                method: stored.method.clone(),
                target: stored.target.clone(),
                headers: stored.headers.lines().map(str::to_string).collect(),
                body_base64: base64::engine::general_purpose::STANDARD.encode(&stored.body),
                body: String::from_utf8(stored.body.clone()).ok(),
                signature: SignatureCheck {
                    verified: true,
                    scheme: r.get(9),
                },
                decoded,
                decode_error,
                status: r.get::<_, i16>(10) as u16,
                answer: String::from_utf8_lossy(&stored.answer).into_owned(),
                outcome: r.get(12),
                answered_by: r.get(13),
                duplicate: r.get(14),
                batch: lane.map(|lane| BatchMark {
                    lane,
                    batch: r.get(16),
                    len: r.get(17),
                }),
                timings_us: Timings {
                    read_body: r.get(18),
                    verify: r.get(19),
                    queued: r.get(20),
                    commit: r.get(21),
                    total: r.get(22),
                },
            });
        }
    }
    ok(Trace {
        transaction,
        balance_before,
        bonus_before,
        requests,
    })
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// Why (kept in the audit log).
    pub reason: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Replay {
    /// The stored request sent again: the one whose answer settled the transaction.
    pub received_at: String,
    pub original_status: u16,
    pub original_answer: String,
    pub status: u16,
    pub answer: String,
    pub outcome: String,
    /// `dedup_index` or `batch` (the ledger answered it); `refused` when it did not get through.
    pub answered_by: String,
    /// The pipeline answered with the stored answer, applying nothing.
    pub duplicate: bool,
    /// The replayed answer says what the original said (the dialect's judgement).
    pub same_answer: bool,
}

#[utoipa::path(post, path = "/api/admin/transactions/{id}/replay", tag = "admin", security(("bearer" = [])),
    params(("id" = i64, Path, description = "ledger transaction id")), request_body = ReplayRequest,
    responses((status = 200, description = "the stored callback sent through the whole pipeline again (signature as of its arrival, dedup, settlement, rendering): a settled transaction comes back `duplicate` with `same_answer`", body = Replay),
              (status = 404, description = "no such transaction", body = crate::envelope::ErrorBody),
              (status = 409, description = "`NOT_TRACED`: no stored callback settled this transaction", body = crate::envelope::ErrorBody),
              (status = 503, description = "`REPLAY_FAILED`: the stored callback could not be sent (provider gone, unparsable)", body = crate::envelope::ErrorBody)))]
pub async fn replay(
    State(rest): State<Arc<Rest>>,
    actor: Actor,
    Path(id): Path<String>,
    Body(req): Body<ReplayRequest>,
) -> ApiResult<Ok<Replay>> {
    let id = path_id(&id)?;
    let reason = reason_of(&req.reason)?;
    let client = rest.pool.get().await?;
    let ids = client
        .query_opt(
            "SELECT provider_id, provider_tx_id FROM transactions WHERE id = $1",
            &[&id],
        )
        .await?
        .ok_or_else(|| ApiError::not_found("no such transaction"))?;
    let (provider_id, tx): (Option<i32>, Option<String>) = (ids.get(0), ids.get(1));
    let not_traced = || {
        ApiError::conflict(
            "NOT_TRACED",
            "no stored callback settled this transaction (a back-office row, or tracing was off)",
        )
    };
    let (Some(provider_id), Some(tx)) = (provider_id, tx) else {
        return Err(not_traced());
    };
    // The request whose answer came from the commit that wrote the row (not a retry's).
    let row = client
        .query_opt(
            &format!(
                "{REQUEST_SELECT} {}
                 FROM callback_requests r JOIN providers p ON p.id = r.provider_id
                 WHERE r.provider_id = $1 AND r.provider_tx_id = $2 AND r.origin = 'provider'
                 ORDER BY (r.answered_by = 'batch' AND NOT r.duplicate) DESC, r.received_at
                 LIMIT 1",
                crate::rfc3339!("r.received_at")
            ),
            &[&provider_id, &tx],
        )
        .await?
        .ok_or_else(not_traced)?;
    drop(client);
    let stored = stored_of(&row);
    let original_status = row.get::<_, i16>(10) as u16;
    let desk = rest.desk.get().ok_or_else(|| {
        ApiError::new(
            http::StatusCode::SERVICE_UNAVAILABLE,
            "REPLAY_FAILED",
            "the callback pipeline is not attached",
        )
    })?;
    let replayed = desk.replay(stored.clone()).await.map_err(|why| {
        ApiError::new(http::StatusCode::SERVICE_UNAVAILABLE, "REPLAY_FAILED", why)
    })?;
    let answer = Replay {
        received_at: row.get(23),
        original_status,
        original_answer: String::from_utf8_lossy(&stored.answer).into_owned(),
        status: replayed.status,
        answer: String::from_utf8_lossy(&replayed.answer).into_owned(),
        outcome: replayed.outcome,
        answered_by: replayed.answered_by,
        duplicate: replayed.duplicate,
        same_answer: replayed.same_answer,
    };
    let client = rest.pool.get().await?;
    audit::record(
        &**client,
        &actor,
        audit::Entry {
            action: "transaction.replay",
            target_kind: "transaction",
            target_id: id.to_string(),
            before: serde_json::Value::Null,
            after: serde_json::json!({
                "status": answer.status,
                "outcome": answer.outcome,
                "duplicate": answer.duplicate,
                "same_answer": answer.same_answer,
            }),
            reason,
        },
    )
    .await?;
    ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_keep_microseconds() {
        let at = parse_epoch("1700000000.123456");
        let since = at.duration_since(SystemTime::UNIX_EPOCH).unwrap();
        assert_eq!(since, Duration::new(1_700_000_000, 123_456_000));
        assert_eq!(
            parse_epoch("1700000000.5"),
            SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_500)
        );
        assert_eq!(
            parse_epoch("1700000000"),
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
        );
    }
}
