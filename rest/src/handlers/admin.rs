//! `/api/admin/...`: the back office. Every route here is behind `auth::enforce_rbac` (the
//! role × route table and a second-factor login); every mutation writes one audit row in its
//! own transaction.

use std::sync::Arc;

use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use serde_json::Value;

use crate::audit::{self, Actor};
use crate::envelope::{
    decode_cursor, ok, page_len, time_param, ApiError, ApiResult, Body, Ok, Page, Query,
};
use crate::handlers::ledger::{self, transaction_of, Search, Transaction, TX_SELECT};
use crate::handlers::user::{read_limits, wallets_of, LimitView, Wallet};
use crate::handlers::{decimal, path_id, reason_of};
use crate::reports::PlayerSet;
use crate::Rest;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PlayerSearch {
    /// Usernames (external ids) starting with this.
    pub username: Option<String>,
    /// The login's email address, exactly (any case).
    pub email: Option<String>,
    /// active, suspended or banned.
    pub status: Option<String>,
    /// Created from this time on (RFC 3339).
    pub created_from: Option<String>,
    /// Created before this time (RFC 3339).
    pub created_to: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PlayerSummary {
    pub id: i64,
    /// The id providers know the player by (the login username).
    pub username: String,
    pub email: Option<String>,
    pub status: String,
    pub status_reason: Option<String>,
    pub self_excluded_until: Option<String>,
    pub created_at: String,
}

/// The columns of [`summary_of`]; `pl` is `players`, `a` its account (if any).
const PLAYER_SELECT: &str = concat!(
    "SELECT pl.id, pl.external_id, a.email, pl.status, pl.status_reason, ",
    crate::rfc3339!("pl.self_excluded_until"),
    ", ",
    crate::rfc3339!("pl.created_at"),
    " FROM players pl LEFT JOIN accounts a ON a.player_id = pl.id"
);

fn summary_of(r: &tokio_postgres::Row) -> PlayerSummary {
    PlayerSummary {
        id: r.get(0),
        username: r.get(1),
        email: r.get(2),
        status: r.get(3),
        status_reason: r.get(4),
        self_excluded_until: r.get(5),
        created_at: r.get(6),
    }
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
    let from = time_param("created_from", q.created_from.as_deref())?;
    let to = time_param("created_to", q.created_to.as_deref())?;
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
    let email = q.email.map(|e| e.trim().to_lowercase());
    let client = rest.pool.get().await?;
    let rows = client
        .query(
            &format!(
                "{PLAYER_SELECT}
                 WHERE ($1::text IS NULL OR pl.external_id LIKE $1)
                   AND ($2::text IS NULL OR pl.status = $2)
                   AND ($3::bigint IS NULL OR pl.id > $3)
                   AND ($4::text IS NULL OR a.email = $4)
                   AND ($5::text IS NULL OR pl.created_at >= $5::timestamptz)
                   AND ($6::text IS NULL OR pl.created_at < $6::timestamptz)
                 ORDER BY pl.id LIMIT $7"
            ),
            &[&prefix, &q.status, &after, &email, &from, &to, &(len + 1)],
        )
        .await?;
    let items = rows.iter().map(summary_of).collect();
    ok(Page::of(items, len, |p| p.id.to_string()))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PlayerDetail {
    #[serde(flatten)]
    pub player: PlayerSummary,
    pub wallets: Vec<Wallet>,
    pub limits: Vec<LimitView>,
    /// The newest ledger rows (20).
    pub recent_transactions: Vec<Transaction>,
    /// The newest logins (20).
    pub logins: Vec<Login>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Login {
    pub at: String,
    pub ip: Option<String>,
    pub second_factor: bool,
    pub revoked_at: Option<String>,
    pub revoked_reason: Option<String>,
}

const RECENT: i64 = 20;

#[utoipa::path(get, path = "/api/admin/players/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = i64, Path, description = "player id")),
    responses((status = 200, description = "one player: wallets, limits, exclusion, recent activity, login history", body = PlayerDetail),
              (status = 404, description = "no such player", body = crate::envelope::ErrorBody)))]
pub async fn player(
    State(rest): State<Arc<Rest>>,
    Path(id): Path<String>,
) -> ApiResult<Ok<PlayerDetail>> {
    let id = path_id(&id)?;
    let client = rest.pool.get().await?;
    let row = client
        .query_opt(&format!("{PLAYER_SELECT} WHERE pl.id = $1"), &[&id])
        .await?
        .ok_or_else(|| ApiError::not_found("no such player"))?;
    let wallets = wallets_of(&**client, id).await?;
    let limits = read_limits(&**client, id, None).await?;
    let recent_transactions = client
        .query(
            &format!(
                "{TX_SELECT} WHERE t.player_id = $1 ORDER BY t.created_at DESC, t.id DESC LIMIT $2"
            ),
            &[&id, &RECENT],
        )
        .await?
        .iter()
        .map(transaction_of)
        .collect();
    let logins = client
        .query(
            &format!(
                "SELECT {}, s.ip, s.mfa, {}, s.revoked_reason
                 FROM auth_sessions s JOIN accounts a ON a.id = s.account_id
                 WHERE a.player_id = $1 ORDER BY s.id DESC LIMIT $2",
                crate::rfc3339!("s.created_at"),
                crate::rfc3339!("s.revoked_at")
            ),
            &[&id, &RECENT],
        )
        .await?
        .iter()
        .map(|r| Login {
            at: r.get(0),
            ip: r.get(1),
            second_factor: r.get(2),
            revoked_at: r.get(3),
            revoked_reason: r.get(4),
        })
        .collect();
    ok(PlayerDetail {
        player: summary_of(&row),
        wallets,
        limits,
        recent_transactions,
        logins,
    })
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetStatus {
    /// active, suspended or banned. Suspended and banned players' bets are refused
    /// (`PLAYER_BLOCKED`); wins and rollbacks still apply. Banning also ends their logins.
    pub status: String,
    /// Why (1–500 characters), kept in the audit log.
    pub reason: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StatusChanged {
    pub id: i64,
    pub status: String,
    pub previous: String,
    /// Login sessions ended by this change.
    pub sessions_revoked: u64,
}

/// Ends every live login session of `player`'s account; answers how many.
async fn revoke_player_sessions(
    client: &impl tokio_postgres::GenericClient,
    player: i64,
    why: &str,
) -> Result<u64, tokio_postgres::Error> {
    client
        .execute(
            "UPDATE auth_sessions s SET revoked_at = now(), revoked_reason = $2
             FROM accounts a
             WHERE a.player_id = $1 AND s.account_id = a.id AND s.revoked_at IS NULL",
            &[&player, &why],
        )
        .await
}

#[utoipa::path(put, path = "/api/admin/players/{id}/status", tag = "admin", security(("bearer" = [])),
    params(("id" = i64, Path, description = "player id")), request_body = SetStatus,
    responses((status = 200, description = "the status changed (and was audited)", body = StatusChanged),
              (status = 400, description = "bad status or reason", body = crate::envelope::ErrorBody),
              (status = 404, description = "no such player", body = crate::envelope::ErrorBody)))]
pub async fn set_status(
    State(rest): State<Arc<Rest>>,
    actor: Actor,
    Path(id): Path<String>,
    Body(req): Body<SetStatus>,
) -> ApiResult<Ok<StatusChanged>> {
    let id = path_id(&id)?;
    if !["active", "suspended", "banned"].contains(&req.status.as_str()) {
        return Err(ApiError::field("status", "active, suspended or banned"));
    }
    let reason = reason_of(&req.reason)?;
    let mut client = rest.pool.get().await?;
    let tx = client.transaction().await?;
    let previous: String = tx
        .query_opt(
            "SELECT status FROM players WHERE id = $1 FOR UPDATE",
            &[&id],
        )
        .await?
        .ok_or_else(|| ApiError::not_found("no such player"))?
        .get(0);
    tx.execute(
        "UPDATE players SET status = $2, status_reason = $3, status_changed_at = now() WHERE id = $1",
        &[&id, &req.status, &reason],
    )
    .await?;
    let sessions_revoked = if req.status == "banned" {
        revoke_player_sessions(&*tx, id, "banned").await?
    } else {
        0
    };
    audit::record(
        &*tx,
        &actor,
        audit::Entry {
            action: "player.status",
            target_kind: "player",
            target_id: id.to_string(),
            before: serde_json::json!({"status": previous}),
            after: serde_json::json!({"status": req.status, "sessions_revoked": sessions_revoked}),
            reason,
        },
    )
    .await?;
    tx.commit().await?;
    ok(StatusChanged {
        id,
        status: req.status,
        previous,
        sessions_revoked,
    })
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ForceLogout {
    /// Why (1–500 characters), kept in the audit log.
    pub reason: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LoggedOutSessions {
    pub sessions_revoked: u64,
}

#[utoipa::path(post, path = "/api/admin/players/{id}/logout", tag = "admin", security(("bearer" = [])),
    params(("id" = i64, Path, description = "player id")), request_body = ForceLogout,
    responses((status = 200, description = "every login of the player ended (access and refresh tokens refused from now on)", body = LoggedOutSessions),
              (status = 404, description = "no such player", body = crate::envelope::ErrorBody)))]
pub async fn force_logout(
    State(rest): State<Arc<Rest>>,
    actor: Actor,
    Path(id): Path<String>,
    Body(req): Body<ForceLogout>,
) -> ApiResult<Ok<LoggedOutSessions>> {
    let id = path_id(&id)?;
    let reason = reason_of(&req.reason)?;
    let mut client = rest.pool.get().await?;
    let tx = client.transaction().await?;
    tx.query_opt("SELECT 1 FROM players WHERE id = $1 FOR UPDATE", &[&id])
        .await?
        .ok_or_else(|| ApiError::not_found("no such player"))?;
    let sessions_revoked = revoke_player_sessions(&*tx, id, "forced logout").await?;
    audit::record(
        &*tx,
        &actor,
        audit::Entry {
            action: "player.logout",
            target_kind: "player",
            target_id: id.to_string(),
            before: Value::Null,
            after: serde_json::json!({"sessions_revoked": sessions_revoked}),
            reason,
        },
    )
    .await?;
    tx.commit().await?;
    ok(LoggedOutSessions { sessions_revoked })
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditSearch {
    /// The acting account's id.
    pub actor: Option<i64>,
    /// e.g. `player.status`.
    pub action: Option<String>,
    /// e.g. `player`, with `target_id`.
    pub target_kind: Option<String>,
    pub target_id: Option<String>,
    /// From this time on (RFC 3339).
    pub from: Option<String>,
    /// Before this time (RFC 3339).
    pub to: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditRow {
    pub id: i64,
    pub at: String,
    pub actor_id: Option<i64>,
    pub actor_role: Option<String>,
    pub action: String,
    pub target_kind: Option<String>,
    pub target_id: Option<String>,
    #[schema(value_type = Object)]
    pub before: Value,
    #[schema(value_type = Object)]
    pub after: Value,
    pub reason: Option<String>,
    pub ip: Option<String>,
    pub correlation_id: Option<String>,
}

#[utoipa::path(get, path = "/api/admin/audit-log", tag = "admin", security(("bearer" = [])),
    params(AuditSearch),
    responses((status = 200, description = "audit rows, newest first", body = Page<AuditRow>),
              (status = 400, description = "a bad filter or cursor", body = crate::envelope::ErrorBody)))]
pub async fn audit_log(
    State(rest): State<Arc<Rest>>,
    Query(q): Query<AuditSearch>,
) -> ApiResult<Ok<Page<AuditRow>>> {
    let from = time_param("from", q.from.as_deref())?;
    let to = time_param("to", q.to.as_deref())?;
    let len = page_len(q.limit)?;
    let before_id = decode_cursor(q.cursor.as_deref(), |c| c.parse::<i64>().ok())?;
    let client = rest.pool.get().await?;
    let rows = client
        .query(
            &format!(
                "SELECT id, {}, actor_id, actor_role, action, target_kind, target_id,
                        coalesce(before, 'null')::text, coalesce(after, 'null')::text, reason, ip,
                        correlation_id
                 FROM audit_log
                 WHERE ($1::bigint IS NULL OR actor_id = $1)
                   AND ($2::text IS NULL OR action = $2)
                   AND ($3::text IS NULL OR target_kind = $3)
                   AND ($4::text IS NULL OR target_id = $4)
                   AND ($5::text IS NULL OR at >= $5::timestamptz)
                   AND ($6::text IS NULL OR at < $6::timestamptz)
                   AND ($7::bigint IS NULL OR id < $7)
                 ORDER BY id DESC LIMIT $8",
                crate::rfc3339!("at")
            ),
            &[
                &q.actor,
                &q.action,
                &q.target_kind,
                &q.target_id,
                &from,
                &to,
                &before_id,
                &(len + 1),
            ],
        )
        .await?;
    let json = |text: String| serde_json::from_str(&text).unwrap_or(Value::Null);
    let items = rows
        .iter()
        .map(|r| AuditRow {
            id: r.get(0),
            at: r.get(1),
            actor_id: r.get(2),
            actor_role: r.get(3),
            action: r.get(4),
            target_kind: r.get(5),
            target_id: r.get(6),
            before: json(r.get(7)),
            after: json(r.get(8)),
            reason: r.get(9),
            ip: r.get(10),
            correlation_id: r.get(11),
        })
        .collect();
    ok(Page::of(items, len, |a| a.id.to_string()))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ReconciliationRange {
    /// Provider totals from this time on (RFC 3339; default: 24 hours ago).
    pub from: Option<String>,
    /// ...and before this time (RFC 3339; default: now).
    pub to: Option<String>,
}

#[utoipa::path(get, path = "/api/admin/reconciliation", tag = "admin", security(("bearer" = [])),
    params(ReconciliationRange),
    responses((status = 200, description = "wallets against their ledger (`balanced`, `wallet_mismatches`), rounds left open, tombstones never matched, flagged wallets, provider totals over the range (minor units)", body = Object),
              (status = 400, description = "a bad time", body = crate::envelope::ErrorBody)))]
pub async fn reconciliation(
    State(rest): State<Arc<Rest>>,
    Query(q): Query<ReconciliationRange>,
) -> ApiResult<Ok<settlement::reconcile::Report>> {
    let from = time_param("from", q.from.as_deref())?;
    let to = time_param("to", q.to.as_deref())?;
    let client = rest.pool.get().await?;
    let (from, to) = match (from, to) {
        (Some(from), Some(to)) => (from, to),
        (from, to) => {
            let row = client
                .query_one("SELECT (now() - interval '1 day')::text, now()::text", &[])
                .await?;
            (from.unwrap_or(row.get(0)), to.unwrap_or(row.get(1)))
        }
    };
    ok(settlement::reconcile::report(&**client, &from, &to).await?)
}

#[utoipa::path(get, path = "/api/admin/transactions", tag = "admin", security(("bearer" = [])),
    params(Search),
    responses((status = 200, description = "ledger rows, newest first", body = Page<Transaction>),
              (status = 400, description = "a bad filter or cursor; a search needs a player or a provider and its transaction id", body = crate::envelope::ErrorBody)))]
pub async fn transactions(
    State(rest): State<Arc<Rest>>,
    Query(q): Query<Search>,
) -> ApiResult<Ok<Page<Transaction>>> {
    // Every search starts from an indexed key: a player (player + time, or a player's round)
    // or a provider transaction id (the unique key); a scan of the whole ledger is not offered.
    if q.player.is_none() && q.provider_tx_id.is_none() {
        return Err(ApiError::field(
            "player",
            "give player (with round, if any) or provider_tx_id",
        ));
    }
    if q.provider_tx_id.is_some() && q.provider.is_none() {
        return Err(ApiError::field("provider", "needed with provider_tx_id"));
    }
    ok(ledger::search(&**rest.pool.get().await?, q).await?)
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    /// First day (YYYY-MM-DD, UTC; default: 30 days ago).
    pub from: Option<String>,
    /// Last day, included (default: today).
    pub to: Option<String>,
    /// day, provider or game (default: day).
    pub group_by: Option<String>,
    /// One provider's code.
    pub provider: Option<String>,
    pub currency: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReportRow {
    /// The day, the provider's code, or `provider/game`.
    pub group: String,
    /// Absent in the players report (players are counted across currencies).
    pub currency: Option<String>,
    /// Decimal amounts in the currency's units.
    pub bets: Option<String>,
    pub wins: Option<String>,
    /// Returned by rollbacks.
    pub refunds: Option<String>,
    /// bets - wins - refunds.
    pub ggr: Option<String>,
    /// GGR less the stakes paid with bonus money.
    pub ngr: Option<String>,
    /// wins / bets in percent, two decimals (absent without bets).
    pub rtp_percent: Option<String>,
    pub bet_count: Option<i64>,
    pub rounds: Option<i64>,
    /// Distinct players who bet.
    pub players: Option<i64>,
}

fn valid_day(field: &str, day: Option<&str>) -> ApiResult<Option<String>> {
    match day {
        None => Result::Ok(None),
        Some(d) => {
            let b = d.as_bytes();
            let shaped = b.len() == 10
                && b[4] == b'-'
                && b[7] == b'-'
                && b.iter()
                    .enumerate()
                    .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
            if shaped && humantime::parse_rfc3339_weak(&format!("{d}T00:00:00Z")).is_ok() {
                Result::Ok(Some(d.to_string()))
            } else {
                Err(ApiError::field(field, "a day, YYYY-MM-DD"))
            }
        }
    }
}

#[utoipa::path(get, path = "/api/admin/reports/{report}", tag = "admin", security(("bearer" = [])),
    params(("report" = String, Path, description = "ggr, rtp, rounds or players"), ReportQuery),
    responses((status = 200, description = "rows by group (and currency), from the per-day rollups; as fresh as the rollup job", body = Vec<ReportRow>),
              (status = 400, description = "bad report, days or grouping", body = crate::envelope::ErrorBody)))]
pub async fn report(
    State(rest): State<Arc<Rest>>,
    Path(report): Path<String>,
    Query(q): Query<ReportQuery>,
) -> ApiResult<Ok<Vec<ReportRow>>> {
    if !["ggr", "rtp", "rounds", "players"].contains(&report.as_str()) {
        return Err(ApiError::not_found("reports: ggr, rtp, rounds, players"));
    }
    let group = match q.group_by.as_deref().unwrap_or("day") {
        "day" => "d.day::text",
        "provider" => "p.code",
        "game" => "p.code || '/' || d.game_id",
        _ => return Err(ApiError::field("group_by", "day, provider or game")),
    };
    let from = valid_day("from", q.from.as_deref())?;
    let to = valid_day("to", q.to.as_deref())?;
    let client = rest.pool.get().await?;
    let range = "d.day >= coalesce($1::text::date, (now() AT TIME ZONE 'UTC')::date - 30)
                 AND d.day <= coalesce($2::text::date, (now() AT TIME ZONE 'UTC')::date)
                 AND ($3::text IS NULL OR p.code = $3)";
    if report == "players" {
        // One set per day, provider and game, in group order: each group's sets are unioned
        // and counted (a player active on several days or games counts once).
        let rows = client
            .query(
                &format!(
                    "SELECT {group}, d.players
                     FROM report_player_sets d JOIN providers p ON p.id = d.provider_id
                     WHERE {range} ORDER BY 1"
                ),
                &[&from, &to, &q.provider],
            )
            .await?;
        let mut counted: Vec<(String, PlayerSet)> = Vec::new();
        for row in &rows {
            let group: String = row.get(0);
            let set = PlayerSet::decode(row.get(1))
                .map_err(|e| ApiError::internal("players report", &e))?;
            match counted.last_mut() {
                Some((last, union)) if *last == group => union.union_with(&set),
                _ => counted.push((group, set)),
            }
        }
        let items = counted
            .into_iter()
            .map(|(group, set)| ReportRow {
                group,
                currency: None,
                bets: None,
                wins: None,
                refunds: None,
                ggr: None,
                ngr: None,
                rtp_percent: None,
                bet_count: None,
                rounds: None,
                players: Some(i64::try_from(set.len()).unwrap_or(i64::MAX)),
            })
            .collect();
        return ok(items);
    }
    let rows = client
        .query(
            &format!(
                "SELECT {group}, d.currency, sum(d.bets)::bigint, sum(d.bonus_bets)::bigint,
                        sum(d.wins)::bigint, sum(d.refunds)::bigint, sum(d.bet_count)::bigint,
                        sum(d.rounds)::bigint,
                        (round(100 * sum(d.wins)::numeric / nullif(sum(d.bets), 0), 2))::text
                 FROM report_daily d JOIN providers p ON p.id = d.provider_id
                 WHERE {range} AND ($4::text IS NULL OR d.currency = $4)
                 GROUP BY 1, 2 ORDER BY 1, 2"
            ),
            &[&from, &to, &q.provider, &q.currency],
        )
        .await?;
    let items = rows
        .iter()
        .map(|r| {
            let currency: String = r.get(1);
            let (bets, bonus, wins, refunds): (i64, i64, i64, i64) =
                (r.get(2), r.get(3), r.get(4), r.get(5));
            let ggr = bets.saturating_sub(wins).saturating_sub(refunds);
            let money = |v: i64| Some(decimal(v, &currency));
            ReportRow {
                group: r.get(0),
                bets: money(bets),
                wins: money(wins),
                refunds: money(refunds),
                ggr: money(ggr),
                ngr: money(ggr.saturating_sub(bonus)),
                rtp_percent: r.get(8),
                bet_count: Some(r.get(6)),
                rounds: Some(r.get(7)),
                players: None,
                currency: Some(currency),
            }
        })
        .collect();
    ok(items)
}
