//! `/api/admin/provider-changes`: changes to game providers that wait for a second admin (four
//! eyes), as large adjustments do. Whoever holds a provider's secret can sign wins, so one
//! admin alone may not create a provider, rotate its secret or change its policy: the request
//! is checked and kept (`provider_changes`), and another admin, with a fresh TOTP code,
//! approves it; it is checked again and applied in the approval's transaction. One audit row
//! each: the request (by the requester) and the change itself (by the approver).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio_postgres::GenericClient;
use utoipa::ToSchema;

use crate::audit::{self, Actor};
use crate::envelope::{ok, ApiError, ApiResult, Body, Code, Ok};
use crate::handlers::adjustments::{step_up, ApproveRequest};
use crate::handlers::path_id;
use crate::handlers::providers::{
    apply_create, apply_rotate, apply_update, CreateProvider, ProviderView, RotateSecret,
    UpdateProvider,
};
use crate::Rest;

/// A change waiting for (or given) a second admin's approval. Secrets are never answered.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderChange {
    pub id: i64,
    pub code: String,
    /// create, rotate_secret or update.
    pub action: String,
    /// pending_approval or applied.
    pub state: String,
    pub reason: String,
    pub requested_by: i64,
    pub approved_by: Option<i64>,
    /// RFC 3339.
    pub created_at: String,
}

/// What a change does, as requested (stored as `request`, tagged by `action`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Change {
    Create(CreateProvider),
    RotateSecret(RotateSecret),
    Update(UpdateProvider),
}

impl Change {
    fn forget_secret(&mut self) {
        match self {
            Change::Create(req) => req.secret.clear(),
            Change::RotateSecret(req) => req.secret.clear(),
            Change::Update(_) => {}
        }
    }

    fn action(&self) -> &'static str {
        match self {
            Change::Create(_) => "create",
            Change::RotateSecret(_) => "rotate_secret",
            Change::Update(_) => "update",
        }
    }
}

const SELECT: &str = concat!(
    "SELECT id, code, action, state, reason, requested_by, approved_by, ",
    crate::rfc3339!("created_at"),
    " FROM provider_changes"
);

fn change_of(row: &tokio_postgres::Row) -> ProviderChange {
    ProviderChange {
        id: row.get(0),
        code: row.get(1),
        action: row.get(2),
        state: row.get(3),
        reason: row.get(4),
        requested_by: row.get(5),
        approved_by: row.get(6),
        created_at: row.get(7),
    }
}

/// Keeps `change` of provider `code` for a second admin, and audits the request.
pub(crate) async fn request(
    tx: &impl GenericClient,
    actor: &Actor,
    code: &str,
    change: Change,
    reason: &str,
) -> ApiResult<ProviderChange> {
    let action = change.action();
    let stored =
        serde_json::to_string(&change).map_err(|e| ApiError::internal("provider change", &e))?;
    let row = tx
        .query_one(
            &format!(
                "WITH c AS (
                     INSERT INTO provider_changes (code, action, request, reason, state, requested_by)
                     VALUES ($1, $2, $3::text::jsonb, $4, 'pending_approval', $5) RETURNING *
                 ) {}",
                SELECT.replace("FROM provider_changes", "FROM c")
            ),
            &[&code, &action, &stored, &reason, &actor.caller.account],
        )
        .await?;
    let pending = change_of(&row);
    audit::record(
        tx,
        actor,
        audit::Entry {
            action: "provider.change_requested",
            target_kind: "provider",
            target_id: code.to_string(),
            before: Value::Null,
            after: json!({"change": pending.id, "action": action, "state": "pending_approval"}),
            reason,
        },
    )
    .await?;
    Result::Ok(pending)
}

#[utoipa::path(get, path = "/api/admin/provider-changes", tag = "admin", security(("bearer" = [])),
    responses((status = 200, description = "changes waiting for approval, then the latest applied (100 at most)", body = Vec<ProviderChange>)))]
pub async fn list(State(rest): State<Arc<Rest>>) -> ApiResult<Ok<Vec<ProviderChange>>> {
    let client = rest.pool.get().await?;
    let rows = client
        .query(
            &format!(
                "{SELECT} ORDER BY state = 'pending_approval' DESC, created_at DESC LIMIT 100"
            ),
            &[],
        )
        .await?;
    ok(rows.iter().map(change_of).collect())
}

#[utoipa::path(post, path = "/api/admin/provider-changes/{id}/approve", tag = "admin", security(("bearer" = [])),
    params(("id" = i64, Path, description = "change id")), request_body = ApproveRequest,
    responses((status = 200, description = "approved and in force", body = ProviderView),
              (status = 400, description = "no longer valid as it stands (checked again)", body = crate::envelope::ErrorBody),
              (status = 403, description = "FOUR_EYES: the requester cannot approve", body = crate::envelope::ErrorBody),
              (status = 404, description = "no such change", body = crate::envelope::ErrorBody),
              (status = 409, description = "NOT_PENDING, or CODE_TAKEN", body = crate::envelope::ErrorBody)))]
pub async fn approve(
    State(rest): State<Arc<Rest>>,
    actor: Actor,
    Path(id): Path<String>,
    Body(req): Body<ApproveRequest>,
) -> ApiResult<Ok<ProviderView>> {
    let id = path_id(&id)?;
    let mut client = rest.pool.get().await?;
    let tx = client.transaction().await?;
    let row = tx
        .query_opt(
            "SELECT code, request::text, state, requested_by
             FROM provider_changes WHERE id = $1 FOR UPDATE",
            &[&id],
        )
        .await?
        .ok_or_else(|| ApiError::not_found("no such change"))?;
    let (code, request, state, requested_by): (String, String, String, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    if state != "pending_approval" {
        return Err(ApiError::conflict(
            Code::NotPending,
            "this change is not waiting for approval",
        ));
    }
    if requested_by == actor.caller.account {
        return Err(ApiError::forbidden(
            Code::FourEyes,
            "another admin must approve your request",
        ));
    }
    step_up(&rest, &*tx, &actor, &req.totp_code).await?;
    let change: Change =
        serde_json::from_str(&request).map_err(|e| ApiError::internal("provider change", &e))?;
    let view = match &change {
        Change::Create(req) => apply_create(&rest, &*tx, &actor, req).await?,
        Change::RotateSecret(req) => apply_rotate(&*tx, &actor, &code, req).await?,
        Change::Update(req) => apply_update(&rest, &*tx, &actor, &code, req).await?,
    };
    // Applied: the secret it carried is in the provider's settings now, and nowhere else.
    let mut kept = change.clone();
    kept.forget_secret();
    let kept =
        serde_json::to_string(&kept).map_err(|e| ApiError::internal("provider change", &e))?;
    tx.execute(
        "UPDATE provider_changes
         SET state = 'applied', approved_by = $2, applied_at = now(), request = $3::text::jsonb
         WHERE id = $1",
        &[&id, &actor.caller.account, &kept],
    )
    .await?;
    tx.commit().await?;
    rest.options.providers_changed.notify_one();
    Result::Ok(Ok(StatusCode::OK, view))
}
