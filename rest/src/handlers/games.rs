//! `POST /api/games/{game_id}/launch`: a provider session token bound to the player, the
//! currency and the game, with an expiry, and the provider's launch URL carrying it. Bets of
//! providers whose policy requires sessions are refused (`INVALID_SESSION`) without a live one.

use std::sync::Arc;

use axum::extract::{Path, State};
use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::PlayerCaller;
use crate::envelope::{created, ApiError, ApiResult, Body, Code, Ok};
use crate::Rest;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LaunchRequest {
    /// The provider's code, e.g. `demo`.
    pub provider: String,
    /// The wallet to play from (default: the provider's currency).
    pub currency: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Launch {
    /// Passed to the provider, which sends it back on the game's callbacks.
    pub session_token: String,
    pub expires_at: String,
    pub provider: String,
    pub game_id: String,
    pub currency: String,
    /// The provider's launch URL with the token filled in (absent when the provider has none
    /// configured).
    pub launch_url: Option<String>,
}

fn valid_game_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b))
}

/// Percent-encodes `value` for a URL query or path segment.
fn encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

#[utoipa::path(post, path = "/api/games/{game_id}/launch", tag = "player", security(("bearer" = [])),
    params(("game_id" = String, Path, description = "the provider's game id")),
    request_body = LaunchRequest,
    responses((status = 201, description = "a game session", body = Launch),
              (status = 400, description = "bad game id or currency", body = crate::envelope::ErrorBody),
              (status = 403, description = "PLAYER_BLOCKED: suspended, banned or self-excluded", body = crate::envelope::ErrorBody),
              (status = 404, description = "no such provider", body = crate::envelope::ErrorBody)))]
pub async fn launch(
    State(rest): State<Arc<Rest>>,
    who: PlayerCaller,
    Path(game_id): Path<String>,
    Body(req): Body<LaunchRequest>,
) -> ApiResult<Ok<Launch>> {
    if !valid_game_id(&game_id) {
        return Err(ApiError::field("game_id", "1 to 64 of A-Z a-z 0-9 _ . : -"));
    }
    let provider = rest
        .options
        .providers
        .iter()
        .find(|p| p.code == req.provider && p.enabled)
        .ok_or_else(|| ApiError::not_found("no such provider"))?;
    let currency = req.currency.unwrap_or_else(|| provider.currency.clone());
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
    let ttl = i64::try_from(rest.options.game_session_ttl.as_secs()).unwrap_or(i64::MAX);
    let client = rest.pool.get().await?;
    let row = client
        .query_one(
            &format!(
                "WITH p AS (
                     SELECT pl.external_id,
                            pl.status <> 'active' OR coalesce(pl.self_excluded_until > now(), false)
                                AS blocked,
                            EXISTS (SELECT 1 FROM wallets w
                                    WHERE w.player_id = pl.id AND w.currency = $3) AS has_wallet
                     FROM players pl WHERE pl.id = $2
                 ), s AS (
                     INSERT INTO game_sessions (token, player_id, currency, game_id, expires_at)
                     SELECT $1, $2, $3, $4, now() + make_interval(secs => $5::bigint)
                     FROM p WHERE NOT p.blocked AND p.has_wallet
                     RETURNING {}
                 )
                 SELECT p.external_id, p.blocked, p.has_wallet, (SELECT * FROM s) FROM p",
                crate::rfc3339!("expires_at")
            ),
            &[&token, &who.player, &currency, &game_id, &ttl],
        )
        .await?;
    let (external_id, blocked, has_wallet): (String, bool, bool) =
        (row.get(0), row.get(1), row.get(2));
    if blocked {
        return Err(ApiError::forbidden(
            Code::PlayerBlocked,
            "this account may not play now (suspended, banned or self-excluded)",
        ));
    }
    if !has_wallet {
        return Err(ApiError::field(
            "currency",
            "you have no wallet in this currency",
        ));
    }
    let launch_url = provider.launch_url.as_ref().map(|template| {
        template
            .replace("{token}", &encode(&token))
            .replace("{game_id}", &encode(&game_id))
            .replace("{currency}", &encode(&currency))
            .replace("{player}", &encode(&external_id))
    });
    created(Launch {
        session_token: token,
        expires_at: row.get(3),
        provider: provider.code.clone(),
        game_id,
        currency,
        launch_url,
    })
}
