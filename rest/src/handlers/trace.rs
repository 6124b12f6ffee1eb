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
use crate::envelope::{ok, ApiError, ApiResult, Body, Code, Ok};
use crate::handlers::ledger::{transaction_of, Transaction, TX_SELECT};
use crate::handlers::{decimal, path_id, reason_of};
use crate::segments::{self, Traced};
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

/// How far a first application's arrival may lie before its transaction row's `created_at`
/// (the batch's start): its wait in the lane's queue and any retries of its batch, with room
/// to spare (answers past the callback deadline are refusals, which are keyed).
const FIRST_WAIT_MAX: Duration = Duration::from_secs(60);

/// How far the gateway's clock may run ahead of the database's (`received_at` is the
/// gateway's, `created_at` the database's; one clock when PostgreSQL is embedded).
const CLOCK_SKEW_MAX: Duration = Duration::from_secs(5);

/// Segments decoded in search of a first application, nearest in time first, at most.
const TIME_SEARCH_MAX: i64 = 64;

/// Segments fetched per round trip while searching by time.
const TIME_SEARCH_CHUNK: usize = 4;

/// Every kept callback that named transaction `tx` of provider `provider_id`, oldest first. A
/// damaged segment is skipped (and logged), never an error for the whole trace.
///
/// Two paths, as the writer stores them (`segments::located_by_time`): retries, refusals and
/// replays through the segments whose keys hold the id's key; the first application, which
/// carries no key, through the segments whose time range holds `created_at`, the row's batch
/// start, nearest first, until it is found.
async fn kept_callbacks(
    client: &tokio_postgres::Client,
    provider_id: i32,
    tx: &str,
    created_at: SystemTime,
) -> Result<Vec<Traced<'static>>, tokio_postgres::Error> {
    let names_it =
        |r: &Traced<'_>| r.provider_id == provider_id && r.tx_ids.iter().any(|t| t == tx);
    let rows = client
        .query(
            "SELECT id, data FROM callback_segments WHERE tx_keys @> ARRAY[$1::bigint]",
            &[&segments::tx_key(provider_id, tx)],
        )
        .await?;
    let mut kept: Vec<Traced<'static>> = rows
        .iter()
        .flat_map(|row| decoded(row).into_iter().filter(|r| names_it(r)))
        .collect();
    if !kept.iter().any(segments::located_by_time) {
        let near: Vec<i64> = client
            .query(
                "SELECT id FROM callback_segments
                  WHERE first_at BETWEEN $1 AND $2 AND last_at >= $3
                  ORDER BY abs(extract(epoch FROM first_at - $4)) LIMIT $5",
                &[
                    &(created_at - 2 * FIRST_WAIT_MAX),
                    &(created_at + CLOCK_SKEW_MAX),
                    &(created_at - FIRST_WAIT_MAX),
                    &created_at,
                    &TIME_SEARCH_MAX,
                ],
            )
            .await?
            .iter()
            .map(|row| row.get(0))
            .collect();
        'search: for ids in near.chunks(TIME_SEARCH_CHUNK) {
            let rows = client
                .query(
                    "SELECT id, data FROM callback_segments WHERE id = ANY($1)",
                    &[&ids],
                )
                .await?;
            for row in &rows {
                let first = decoded(row)
                    .into_iter()
                    .find(|r| segments::located_by_time(r) && names_it(r));
                if let Some(first) = first {
                    kept.push(first);
                    break 'search;
                }
            }
        }
    }
    kept.sort_by_key(|r| r.received_at);
    Result::Ok(kept)
}

/// The records of a `(id, data)` row of `callback_segments`; none (logged) if it is damaged.
fn decoded(row: &tokio_postgres::Row) -> Vec<Traced<'static>> {
    segments::decode(row.get(1)).unwrap_or_else(|why| {
        let segment: i64 = row.get(0);
        tracing::warn!(segment, error = %why, "trace segment does not decode; skipped");
        Vec::new()
    })
}

/// The provider's code, for the desk's messages (the desk finds the provider by the stored
/// target, as the pipeline does); `#id` if the provider row is gone.
async fn provider_code(
    client: &tokio_postgres::Client,
    provider_id: i32,
) -> Result<String, tokio_postgres::Error> {
    let row = client
        .query_opt("SELECT code FROM providers WHERE id = $1", &[&provider_id])
        .await?;
    Result::Ok(row.map_or_else(|| format!("#{provider_id}"), |r| r.get(0)))
}

fn stored_of(provider: &str, r: &Traced<'_>) -> StoredCallback {
    StoredCallback {
        provider: provider.to_string(),
        received_at: r.received_at,
        peer: r.peer.to_string(),
        method: r.method.to_string(),
        target: r.target.to_string(),
        headers: r.headers.to_string(),
        body: r.body.to_vec(),
        answer: r.answer.to_vec(),
    }
}

fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_micros(at).to_string()
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
            "SELECT balance_before, bonus_before, provider_id, created_at
               FROM transactions WHERE id = $1",
            &[&id],
        )
        .await?;
    let transaction = transaction_of(&row);
    let balance_before = decimal(before.get(0), &transaction.currency);
    let bonus_before = decimal(before.get(1), &transaction.currency);
    let provider_id: Option<i32> = before.get(2);
    let mut requests = Vec::new();
    if let (Some(provider_id), Some(tx)) = (provider_id, &transaction.provider_tx_id) {
        let kept = kept_callbacks(&client, provider_id, tx, before.get(3)).await?;
        let provider = match kept.is_empty() {
            true => String::new(),
            false => provider_code(&client, provider_id).await?,
        };
        let desk = rest.desk.get();
        for r in &kept {
            let stored = stored_of(&provider, r);
            let (decoded, decode_error) = match desk.map(|d| d.decode(&stored)) {
                Some(Result::Ok(command)) => (Some(command), None),
                Some(Err(why)) => (None, Some(why)),
                None => (None, Some("the callback pipeline is not attached".into())),
            };
            requests.push(TracedRequest {
                received_at: rfc3339(r.received_at),
                origin: r.origin.to_string(),
                peer: stored.peer.clone(),
                caller_ip: r.caller_ip.to_string(),
                method: stored.method.clone(),
                target: stored.target.clone(),
                headers: stored.headers.lines().map(str::to_string).collect(),
                body_base64: base64::engine::general_purpose::STANDARD.encode(&stored.body),
                body: String::from_utf8(stored.body.clone()).ok(),
                signature: SignatureCheck {
                    verified: true,
                    scheme: r.signature.to_string(),
                },
                decoded,
                decode_error,
                status: r.status,
                answer: String::from_utf8_lossy(&stored.answer).into_owned(),
                outcome: r.outcome.to_string(),
                answered_by: r.answered_by.to_string(),
                duplicate: r.duplicate,
                batch: r.lane.map(|lane| BatchMark {
                    lane,
                    batch: r.batch.unwrap_or_default(),
                    len: r.batch_len.unwrap_or_default(),
                }),
                timings_us: Timings {
                    read_body: r.read_us,
                    verify: r.verify_us,
                    queued: r.queued_us,
                    commit: r.commit_us,
                    total: r.total_us,
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
            "SELECT provider_id, provider_tx_id, created_at FROM transactions WHERE id = $1",
            &[&id],
        )
        .await?
        .ok_or_else(|| ApiError::not_found("no such transaction"))?;
    let (provider_id, tx): (Option<i32>, Option<String>) = (ids.get(0), ids.get(1));
    let not_traced = || {
        ApiError::conflict(
            Code::NotTraced,
            "no stored callback settled this transaction (a back-office row, or tracing was off)",
        )
    };
    let (Some(provider_id), Some(tx)) = (provider_id, tx) else {
        return Err(not_traced());
    };
    // The request whose answer came from the commit that wrote the row (not a retry's).
    let kept = kept_callbacks(&client, provider_id, &tx, ids.get(2)).await?;
    let original = kept
        .iter()
        .filter(|r| r.origin == "provider")
        // The first application first (`false` sorts before `true`), then the earliest.
        .min_by_key(|r| (r.answered_by != "batch" || r.duplicate, r.received_at))
        .ok_or_else(not_traced)?;
    let stored = stored_of(&provider_code(&client, provider_id).await?, original);
    drop(client);
    let original_status = original.status;
    let desk = rest.desk.get().ok_or_else(|| {
        ApiError::new(
            http::StatusCode::SERVICE_UNAVAILABLE,
            Code::ReplayFailed,
            "the callback pipeline is not attached",
        )
    })?;
    let replayed = desk.replay(stored.clone()).await.map_err(|why| {
        ApiError::new(
            http::StatusCode::SERVICE_UNAVAILABLE,
            Code::ReplayFailed,
            why,
        )
    })?;
    let answer = Replay {
        received_at: rfc3339(original.received_at),
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
    fn times_are_rfc3339_to_the_microsecond() {
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_micros(1_700_000_000_123_456);
        assert_eq!(rfc3339(at), "2023-11-14T22:13:20.123456Z");
    }
}
