//! The audit log: who did what to which target, the state before and after, why, from where
//! and under which correlation id. Written by every back-office mutation in the same
//! transaction as the change; the table refuses UPDATE, DELETE and TRUNCATE.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde_json::Value;
use tokio_postgres::GenericClient;

use crate::auth::Caller;
use crate::envelope::ApiError;
use crate::{ClientIp, Rest};

/// Who is acting, and from where: the caller, its address and the request's correlation id.
#[derive(Debug, Clone)]
pub struct Actor {
    pub caller: Caller,
    pub ip: String,
    pub correlation_id: Option<String>,
}

impl FromRequestParts<std::sync::Arc<Rest>> for Actor {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        rest: &std::sync::Arc<Rest>,
    ) -> Result<Actor, ApiError> {
        let caller = Caller::from_request_parts(parts, rest).await?;
        let ip = parts
            .extensions
            .get::<ClientIp>()
            .map(|ClientIp(ip)| ip.to_string())
            .unwrap_or_default();
        let correlation_id = parts
            .headers
            .get("x-correlation-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Ok(Actor {
            caller,
            ip,
            correlation_id,
        })
    }
}

/// One audit row.
#[derive(Debug)]
pub struct Entry<'a> {
    pub action: &'a str,
    pub target_kind: &'a str,
    pub target_id: String,
    pub before: Value,
    pub after: Value,
    pub reason: &'a str,
}

/// Appends `entry` by `actor`, inside the caller's transaction.
pub async fn record(
    client: &impl GenericClient,
    actor: &Actor,
    entry: Entry<'_>,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "INSERT INTO audit_log (actor_id, actor_role, action, target_kind, target_id,
                                    before, after, reason, ip, correlation_id)
             VALUES ($1, $2, $3, $4, $5, $6::text::jsonb, $7::text::jsonb, $8, $9, $10)",
            &[
                &actor.caller.account,
                &actor.caller.role.as_str(),
                &entry.action,
                &entry.target_kind,
                &entry.target_id,
                &entry.before.to_string(),
                &entry.after.to_string(),
                &entry.reason,
                &actor.ip,
                &actor.correlation_id,
            ],
        )
        .await
        .map(drop)
}
