//! `/api/user/...`: a player's own balance, ledger history, rounds, responsible-gaming limits
//! and self-exclusion. Every query is scoped to the caller's player id; nothing in a path,
//! query or cursor can name another player.

use std::sync::Arc;

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::PlayerCaller;
use crate::envelope::{
    decode_cursor, ok, page_len, time_param, ApiError, ApiResult, Body, Code, Ok, Page, Query,
};
use crate::handlers::ledger::{self, Search, Transaction};
use crate::handlers::{decimal, parse_amount};
use crate::Rest;
use settlement::rg;

#[derive(Debug, Serialize, ToSchema)]
pub struct Wallet {
    pub currency: String,
    /// Real money, decimal in the currency's units.
    pub balance: String,
    /// Promotional money.
    pub bonus: String,
    pub balance_minor: i64,
    pub bonus_minor: i64,
}

#[utoipa::path(get, path = "/api/user/balance", tag = "player", security(("bearer" = [])),
    responses((status = 200, description = "every wallet of the caller", body = Vec<Wallet>),
              (status = 401, description = "no valid access token", body = crate::envelope::ErrorBody),
              (status = 403, description = "not a player account", body = crate::envelope::ErrorBody)))]
pub async fn balance(
    State(rest): State<Arc<Rest>>,
    who: PlayerCaller,
) -> ApiResult<Ok<Vec<Wallet>>> {
    let client = rest.pool.get().await?;
    ok(wallets_of(&**client, who.player).await?)
}

/// Every wallet of `player`, by currency.
pub async fn wallets_of(
    client: &impl tokio_postgres::GenericClient,
    player: i64,
) -> Result<Vec<Wallet>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT currency, balance, bonus FROM wallets WHERE player_id = $1 ORDER BY currency",
            &[&player],
        )
        .await?;
    Result::Ok(
        rows.iter()
            .map(|r| {
                let currency: String = r.get(0);
                let (balance, bonus): (i64, i64) = (r.get(1), r.get(2));
                Wallet {
                    balance: decimal(balance, &currency),
                    bonus: decimal(bonus, &currency),
                    currency,
                    balance_minor: balance,
                    bonus_minor: bonus,
                }
            })
            .collect(),
    )
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct TransactionFilter {
    /// bet, win, rollback, deposit or adjustment.
    pub kind: Option<String>,
    /// From this time on (RFC 3339, inclusive).
    pub from: Option<String>,
    /// Before this time (RFC 3339, exclusive).
    pub to: Option<String>,
    /// One round's rows.
    pub round: Option<String>,
    pub cursor: Option<String>,
    /// Page size, 1–200 (50).
    pub limit: Option<u32>,
}

#[utoipa::path(get, path = "/api/user/transactions", tag = "player", security(("bearer" = [])),
    params(TransactionFilter),
    responses((status = 200, description = "the caller's ledger rows, newest first", body = Page<Transaction>),
              (status = 400, description = "a bad filter or cursor", body = crate::envelope::ErrorBody)))]
pub async fn transactions(
    State(rest): State<Arc<Rest>>,
    who: PlayerCaller,
    Query(f): Query<TransactionFilter>,
) -> ApiResult<Ok<Page<Transaction>>> {
    let search = Search {
        player: Some(who.player),
        round: f.round,
        kind: f.kind,
        from: f.from,
        to: f.to,
        cursor: f.cursor,
        limit: f.limit,
        ..Search::default()
    };
    ok(ledger::search(&**rest.pool.get().await?, search).await?)
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RoundFilter {
    /// Started from this time on (RFC 3339).
    pub from: Option<String>,
    /// Started before this time (RFC 3339).
    pub to: Option<String>,
    /// Only closed (true) or open (false) rounds.
    pub closed: Option<bool>,
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Round {
    pub provider: String,
    pub round_id: String,
    pub game_id: Option<String>,
    pub closed: bool,
    pub currency: Option<String>,
    /// Staked by accepted bets, won by accepted wins, and returned by rollbacks.
    pub bet: String,
    pub win: String,
    pub refunded: String,
    pub created_at: String,
    pub closed_at: Option<String>,
    /// For the cursor only.
    #[serde(skip)]
    pub provider_id: i32,
}

#[utoipa::path(get, path = "/api/user/rounds", tag = "player", security(("bearer" = [])),
    params(RoundFilter),
    responses((status = 200, description = "the caller's rounds, newest first, with their totals", body = Page<Round>),
              (status = 400, description = "a bad filter or cursor", body = crate::envelope::ErrorBody)))]
pub async fn rounds(
    State(rest): State<Arc<Rest>>,
    who: PlayerCaller,
    Query(f): Query<RoundFilter>,
) -> ApiResult<Ok<Page<Round>>> {
    let from = time_param("from", f.from.as_deref())?;
    let to = time_param("to", f.to.as_deref())?;
    let len = page_len(f.limit)?;
    let after = decode_cursor(f.cursor.as_deref(), |c| {
        let mut parts = c.splitn(3, '|');
        let time = parts.next()?;
        humantime::parse_rfc3339_weak(time).ok()?;
        let provider = parts.next()?.parse::<i32>().ok()?;
        Some((time.to_string(), provider, parts.next()?.to_string()))
    })?;
    let (after_time, after_provider, after_round) = match after {
        Some((t, p, r)) => (Some(t), Some(p), Some(r)),
        None => (None, None, None),
    };
    let client = rest.pool.get().await?;
    // Walked through the player's ledger rows by time (`transactions_player_time`), newest
    // first: a round is listed at the rows written with it, in the transaction that opened it
    // (the same `now()` as its `rounds` row), and found by its key. `rounds` itself has no
    // index led by the player (its key leads with the round: migration 0020). The player's rows
    // are read by that index (walked by time under the page's limit, or read whole and sorted
    // for a player with few) and each candidate round is probed by its full key.
    let rows = client
        .query(
            &format!(
                "SELECT p.code, r.round_id, r.game_id, r.closed, {}, {}, r.provider_id,
                        s.currency, coalesce(s.bet, 0)::bigint, coalesce(s.win, 0)::bigint,
                        coalesce(s.refunded, 0)::bigint
                 FROM (SELECT DISTINCT ON (t.created_at, t.provider_id, t.round_id)
                              t.created_at, t.provider_id, t.round_id
                       FROM transactions t
                       WHERE t.player_id = $1 AND t.round_id IS NOT NULL
                         AND t.provider_id IS NOT NULL
                         AND ($2::text IS NULL OR t.created_at >= $2::timestamptz)
                         AND ($3::text IS NULL OR t.created_at < $3::timestamptz)
                         AND ($5::text IS NULL OR t.created_at <= $5::timestamptz)
                         AND ($5::text IS NULL OR (t.created_at, t.provider_id, t.round_id)
                                                   < ($5::timestamptz, $6::int, $7::text))
                       ORDER BY t.created_at DESC, t.provider_id DESC, t.round_id DESC) c
                 JOIN rounds r ON r.provider_id = c.provider_id AND r.round_id = c.round_id
                              AND r.player_id = $1 AND r.created_at = c.created_at
                 JOIN providers p ON p.id = r.provider_id
                 CROSS JOIN LATERAL (
                     SELECT min(t.currency) AS currency,
                            sum(t.amount) FILTER (WHERE t.kind = 'bet') AS bet,
                            sum(t.amount) FILTER (WHERE t.kind = 'win') AS win,
                            sum(t.real_delta + t.bonus_delta) FILTER (WHERE t.kind = 'rollback') AS refunded
                     FROM transactions t
                     WHERE t.provider_id = r.provider_id AND t.player_id = r.player_id
                       AND t.round_id = r.round_id AND t.outcome = 'OK') s
                 WHERE ($4::bool IS NULL OR r.closed = $4)
                 ORDER BY c.created_at DESC, c.provider_id DESC, c.round_id DESC
                 LIMIT $8",
                crate::rfc3339!("r.created_at"),
                crate::rfc3339!("r.closed_at"),
            ),
            &[&who.player, &from, &to, &f.closed, &after_time, &after_provider, &after_round, &(len + 1)],
        )
        .await?;
    let items = rows
        .iter()
        .map(|r| {
            let currency: Option<String> = r.get(7);
            let unit = currency.clone().unwrap_or_default();
            Round {
                provider: r.get(0),
                round_id: r.get(1),
                game_id: r.get(2),
                closed: r.get(3),
                created_at: r.get(4),
                closed_at: r.get(5),
                provider_id: r.get(6),
                bet: decimal(r.get(8), &unit),
                win: decimal(r.get(9), &unit),
                refunded: decimal(r.get(10), &unit),
                currency,
            }
        })
        .collect();
    ok(Page::of(items, len, |r| {
        format!("{}|{}|{}", r.created_at, r.provider_id, r.round_id)
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LimitView {
    pub currency: String,
    /// loss, wager or max_bet.
    pub kind: String,
    /// day, week, month (bet for max_bet).
    pub period: String,
    /// The limit in force (decimal).
    pub amount: String,
    /// A raised or removed limit waiting for its cooling-off period to end.
    pub pending: Option<PendingLimit>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PendingLimit {
    /// The coming amount; absent when the limit is being removed.
    pub amount: Option<String>,
    pub effective_at: String,
}

#[utoipa::path(get, path = "/api/user/limits", tag = "player", security(("bearer" = [])),
    responses((status = 200, description = "the caller's limits in force, with pending raises", body = Vec<LimitView>)))]
pub async fn limits(
    State(rest): State<Arc<Rest>>,
    who: PlayerCaller,
) -> ApiResult<Ok<Vec<LimitView>>> {
    let client = rest.pool.get().await?;
    ok(read_limits(&**client, who.player, None).await?)
}

pub async fn read_limits(
    client: &impl tokio_postgres::GenericClient,
    player: i64,
    only: Option<(&str, &str, &str)>,
) -> ApiResult<Vec<LimitView>> {
    let (currency, kind, period) =
        only.map_or((None, None, None), |(c, k, p)| (Some(c), Some(k), Some(p)));
    let rows = client
        .query(
            &format!(
                "SELECT currency, kind, period, amount, next_amount,
                        extract(epoch FROM next_from)::bigint, {},
                        extract(epoch FROM now())::bigint
                 FROM rg_limits WHERE player_id = $1
                   AND ($2::text IS NULL OR (currency, kind, period) = ($2, $3::text, $4::text))
                 ORDER BY currency, kind, period",
                crate::rfc3339!("next_from")
            ),
            &[&player, &currency, &kind, &period],
        )
        .await?;
    Result::Ok(
        rows.iter()
            .filter_map(|r| {
                let currency: String = r.get(0);
                let next_from: Option<i64> = r.get(5);
                let stored = rg::Stored {
                    amount: r.get(3),
                    next: next_from.map(|from| (r.get(4), from)),
                };
                let now: i64 = r.get(7);
                let amount = rg::in_force(Some(stored), now)?;
                let pending = stored
                    .next
                    .filter(|(_, from)| *from > now)
                    .map(|(next, _)| PendingLimit {
                        amount: next.map(|n| decimal(n, &currency)),
                        effective_at: r.get(6),
                    });
                Some(LimitView {
                    amount: decimal(amount, &currency),
                    kind: r.get(1),
                    period: r.get(2),
                    pending,
                    currency,
                })
            })
            .collect(),
    )
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetLimit {
    /// loss, wager or max_bet.
    pub kind: String,
    /// day, week or month; omit (or `bet`) for max_bet.
    pub period: Option<String>,
    /// The wallet's currency (default: the only or first wallet's).
    pub currency: Option<String>,
    /// Decimal string; `null` removes the limit (after the cooling-off period).
    pub amount: Option<String>,
}

#[utoipa::path(put, path = "/api/user/limits", tag = "player", security(("bearer" = [])), request_body = SetLimit,
    responses((status = 200, description = "the limit now: a decrease is in force at once, an increase or removal is pending for 24 h", body = Vec<LimitView>),
              (status = 400, description = "invalid kind, period, currency or amount", body = crate::envelope::ErrorBody)))]
pub async fn set_limit(
    State(rest): State<Arc<Rest>>,
    who: PlayerCaller,
    Body(req): Body<SetLimit>,
) -> ApiResult<Ok<Vec<LimitView>>> {
    let period = match (req.kind.as_str(), req.period.as_deref()) {
        ("max_bet", None | Some("bet")) => "bet",
        ("max_bet", Some(_)) => return Err(ApiError::field("period", "max_bet has no period")),
        ("loss" | "wager", Some(p @ ("day" | "week" | "month"))) => p,
        ("loss" | "wager", _) => return Err(ApiError::field("period", "day, week or month")),
        _ => return Err(ApiError::field("kind", "loss, wager or max_bet")),
    };
    let mut client = rest.pool.get().await?;
    let tx = client.transaction().await?;
    // The wallet first, as every writer of a wallet locks it before anything of its player:
    // writing a wager or loss limit counts the player's play again under that lock (the
    // trigger of migration 0018), and a lane or a withdrawal holding the wallet may wait for
    // the player's row.
    let currency: String = tx
        .query_opt(
            "SELECT currency FROM wallets WHERE player_id = $1
               AND ($2::text IS NULL OR currency = $2)
             ORDER BY created_at, currency LIMIT 1 FOR UPDATE",
            &[&who.player, &req.currency],
        )
        .await?
        .map(|r| r.get(0))
        .ok_or_else(|| ApiError::field("currency", "you have no wallet in this currency"))?;
    let wanted = match &req.amount {
        Some(text) => Some(parse_amount("amount", text, &currency)?),
        None => None,
    };
    // Serialises changes of one player's limit (the row, or the player for a first one).
    tx.execute(
        "SELECT 1 FROM players WHERE id = $1 FOR UPDATE",
        &[&who.player],
    )
    .await?;
    let row = tx
        .query_opt(
            "SELECT amount, next_amount, extract(epoch FROM next_from)::bigint,
                    extract(epoch FROM now())::bigint
             FROM rg_limits WHERE player_id = $1 AND currency = $2 AND kind = $3 AND period = $4",
            &[&who.player, &currency, &req.kind, &period],
        )
        .await?;
    let now: i64 = tx
        .query_one("SELECT extract(epoch FROM now())::bigint", &[])
        .await?
        .get(0);
    let stored = row.map(|r| rg::Stored {
        amount: r.get(0),
        next: r.get::<_, Option<i64>>(2).map(|from| (r.get(1), from)),
    });
    match rg::change(stored, wanted, now) {
        rg::Change::Delete => {
            tx.execute(
                "DELETE FROM rg_limits WHERE player_id = $1 AND currency = $2 AND kind = $3 AND period = $4",
                &[&who.player, &currency, &req.kind, &period],
            )
            .await?;
        }
        rg::Change::Store(s) => {
            let (next_amount, next_from) = s.next.unzip();
            tx.execute(
                "INSERT INTO rg_limits (player_id, currency, kind, period, amount, next_amount, next_from)
                 VALUES ($1, $2, $3, $4, $5, $6, to_timestamp($7::bigint))
                 ON CONFLICT (player_id, currency, kind, period) DO UPDATE
                 SET amount = excluded.amount, next_amount = excluded.next_amount,
                     next_from = excluded.next_from, updated_at = now()",
                &[&who.player, &currency, &req.kind, &period, &s.amount, &next_amount.flatten(), &next_from],
            )
            .await?;
        }
    }
    let view = read_limits(&*tx, who.player, Some((&currency, &req.kind, period))).await?;
    tx.commit().await?;
    ok(view)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SelfExclusion {
    /// Days to exclude oneself for, 1–3650. Cannot be undone or shortened.
    pub days: u32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Excluded {
    pub self_excluded_until: String,
}

#[utoipa::path(post, path = "/api/user/self-exclusion", tag = "player", security(("bearer" = [])), request_body = SelfExclusion,
    responses((status = 200, description = "excluded: bets are refused (PLAYER_BLOCKED) until then; wins and rollbacks still apply", body = Excluded),
              (status = 400, description = "days out of range", body = crate::envelope::ErrorBody),
              (status = 409, description = "EXCLUSION_CANNOT_BE_SHORTENED", body = crate::envelope::ErrorBody)))]
pub async fn self_exclude(
    State(rest): State<Arc<Rest>>,
    who: PlayerCaller,
    Body(req): Body<SelfExclusion>,
) -> ApiResult<Ok<Excluded>> {
    if !(1..=3650).contains(&req.days) {
        return Err(ApiError::field("days", "between 1 and 3650"));
    }
    let mut client = rest.pool.get().await?;
    let tx = client.transaction().await?;
    let row = tx
        .query_one(
            "SELECT extract(epoch FROM self_excluded_until)::bigint, extract(epoch FROM now())::bigint
             FROM players WHERE id = $1 FOR UPDATE",
            &[&who.player],
        )
        .await?;
    let (current, now): (Option<i64>, i64) = (row.get(0), row.get(1));
    let until = now + i64::from(req.days) * 24 * 60 * 60;
    if let Some(why) = rg::exclusion_refused(current, until, now) {
        return Err(ApiError::conflict(Code::ExclusionCannotBeShortened, why));
    }
    let row = tx
        .query_one(
            &format!(
                "UPDATE players SET self_excluded_until = to_timestamp($2::bigint) WHERE id = $1
                 RETURNING {}",
                crate::rfc3339!("self_excluded_until")
            ),
            &[&who.player, &until],
        )
        .await?;
    tx.commit().await?;
    ok(Excluded {
        self_excluded_until: row.get(0),
    })
}
