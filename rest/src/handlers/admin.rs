//! `/api/admin/...`: the back office. Every route here is behind `auth::enforce_rbac` (the
//! role × route table and a second-factor login).

use std::sync::Arc;

use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::envelope::{decode_cursor, ok, page_len, ApiError, ApiResult, Ok, Page, Query};
use crate::handlers::path_id;
use crate::handlers::user::{wallets_of, Wallet};
use crate::Rest;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PlayerSearch {
    /// Usernames (external ids) starting with this.
    pub username: Option<String>,
    /// active, suspended or banned.
    pub status: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PlayerSummary {
    pub id: i64,
    /// The id providers know the player by (the login username).
    pub username: String,
    pub status: String,
    pub self_excluded_until: Option<String>,
    pub created_at: String,
}

#[utoipa::path(get, path = "/api/admin/players", tag = "admin", security(("bearer" = [])),
    params(PlayerSearch),
    responses((status = 200, description = "players, by id", body = Page<PlayerSummary>),
              (status = 401, description = "no valid access token", body = crate::envelope::ErrorBody),
              (status = 403, description = "role not allowed, or no second factor", body = crate::envelope::ErrorBody)))]
pub async fn players(
    State(rest): State<Arc<Rest>>,
    Query(q): Query<PlayerSearch>,
) -> ApiResult<Ok<Page<PlayerSummary>>> {
    if let Some(status) = &q.status {
        if !["active", "suspended", "banned"].contains(&status.as_str()) {
            return Err(ApiError::field("status", "active, suspended or banned"));
        }
    }
    let len = page_len(q.limit)?;
    let after = decode_cursor(q.cursor.as_deref(), |c| c.parse::<i64>().ok())?;
    let prefix = q.username.map(|u| {
        // A prefix match: LIKE's own wildcards in the input match themselves.
        let escaped = u
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        format!("{escaped}%")
    });
    let client = rest.pool.get().await?;
    let rows = client
        .query(
            &format!(
                "SELECT id, external_id, status, {}, {} FROM players
                 WHERE ($1::text IS NULL OR external_id LIKE $1)
                   AND ($2::text IS NULL OR status = $2)
                   AND ($3::bigint IS NULL OR id > $3)
                 ORDER BY id LIMIT $4",
                crate::rfc3339!("self_excluded_until"),
                crate::rfc3339!("created_at")
            ),
            &[&prefix, &q.status, &after, &(len + 1)],
        )
        .await?;
    let items = rows
        .iter()
        .map(|r| PlayerSummary {
            id: r.get(0),
            username: r.get(1),
            status: r.get(2),
            self_excluded_until: r.get(3),
            created_at: r.get(4),
        })
        .collect();
    ok(Page::of(items, len, |p| p.id.to_string()))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PlayerDetail {
    #[serde(flatten)]
    pub player: PlayerSummary,
    pub wallets: Vec<Wallet>,
}

#[utoipa::path(get, path = "/api/admin/players/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = i64, Path, description = "player id")),
    responses((status = 200, description = "one player with wallets", body = PlayerDetail),
              (status = 404, description = "no such player", body = crate::envelope::ErrorBody)))]
pub async fn player(
    State(rest): State<Arc<Rest>>,
    Path(id): Path<String>,
) -> ApiResult<Ok<PlayerDetail>> {
    let id = path_id(&id)?;
    let client = rest.pool.get().await?;
    let row = client
        .query_opt(
            &format!(
                "SELECT id, external_id, status, {}, {} FROM players WHERE id = $1",
                crate::rfc3339!("self_excluded_until"),
                crate::rfc3339!("created_at")
            ),
            &[&id],
        )
        .await?
        .ok_or_else(|| ApiError::not_found("no such player"))?;
    let wallets = wallets_of(&**client, id).await?;
    ok(PlayerDetail {
        player: PlayerSummary {
            id: row.get(0),
            username: row.get(1),
            status: row.get(2),
            self_excluded_until: row.get(3),
            created_at: row.get(4),
        },
        wallets,
    })
}
