//! The ledger as the API shows it, written once for the player's own history, the back
//! office's search, a player's recent rows and a transaction's trace: the columns, the row
//! decoder, the cursor and the one search statement.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::envelope::{decode_cursor, page_len, time_param, ApiError, ApiResult, Page};
use crate::handlers::decimal;

#[derive(Debug, Serialize, ToSchema)]
pub struct Transaction {
    pub id: i64,
    pub kind: String,
    /// `OK`, or the refusal given to the provider.
    pub outcome: String,
    /// Bets: open, settled or rolled_back.
    pub state: Option<String>,
    pub provider: Option<String>,
    pub provider_tx_id: Option<String>,
    pub round_id: Option<String>,
    pub game_id: Option<String>,
    pub currency: String,
    pub amount: String,
    /// Signed change of real money, and of bonus money.
    pub real_delta: String,
    pub bonus_delta: String,
    pub balance_after: String,
    pub bonus_after: String,
    pub created_at: String,
}

/// The kinds a search may name.
const KINDS: &[&str] = &[
    "bet",
    "win",
    "rollback",
    "deposit",
    "adjustment",
    "withdrawal",
];

/// The ledger columns every history answer shows, for [`transaction_of`]; `t` is
/// `transactions`, joined to its provider.
pub const TX_SELECT: &str = concat!(
    "SELECT t.id, t.kind, t.outcome, t.state, p.code, t.provider_tx_id, t.round_id, t.game_id,
            t.currency, t.amount, t.real_delta, t.bonus_delta, t.balance_after, t.bonus_after, ",
    crate::rfc3339!("t.created_at"),
    " FROM transactions t LEFT JOIN providers p ON p.id = t.provider_id"
);

/// The position in a ledger list's cursor: (created_at, id) of the last row shown.
fn ledger_cursor(cursor: Option<&str>) -> ApiResult<(Option<String>, Option<i64>)> {
    let after = decode_cursor(cursor, |c| {
        let (time, id) = c.split_once('|')?;
        humantime::parse_rfc3339_weak(time).ok()?;
        Some((time.to_string(), id.parse::<i64>().ok()?))
    })?;
    Ok(after.unzip())
}

/// A page of [`TX_SELECT`] rows (fetched `len + 1`, newest first) with its next cursor.
fn ledger_page(rows: &[tokio_postgres::Row], len: i64) -> Page<Transaction> {
    let items = rows.iter().map(transaction_of).collect();
    Page::of(items, len, |t| format!("{}|{}", t.created_at, t.id))
}

/// A row of [`TX_SELECT`].
pub fn transaction_of(r: &tokio_postgres::Row) -> Transaction {
    let currency: String = r.get(8);
    let money = |i: usize| decimal(r.get(i), &currency);
    Transaction {
        id: r.get(0),
        kind: r.get(1),
        outcome: r.get(2),
        state: r.get(3),
        provider: r.get(4),
        provider_tx_id: r.get(5),
        round_id: r.get(6),
        game_id: r.get(7),
        amount: money(9),
        real_delta: money(10),
        bonus_delta: money(11),
        balance_after: money(12),
        bonus_after: money(13),
        created_at: r.get(14),
        currency,
    }
}

/// What a ledger search may name (the back office's query as it is); every field is optional
/// to the statement, and each caller fixes what its caller may not choose (a player's own
/// search fixes `player`).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct Search {
    /// The provider's code.
    pub provider: Option<String>,
    /// The provider's own transaction id (with `provider`: the unique key).
    pub provider_tx_id: Option<String>,
    /// Player id.
    pub player: Option<i64>,
    /// One round of the player's.
    pub round: Option<String>,
    /// bet, win, rollback, deposit, adjustment, withdrawal.
    pub kind: Option<String>,
    /// The answer given: `OK` or a refusal code such as `INSUFFICIENT_FUNDS`.
    pub outcome: Option<String>,
    /// From this time on (RFC 3339).
    pub from: Option<String>,
    /// Before this time (RFC 3339).
    pub to: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

/// One page of ledger rows, newest first.
pub async fn search(client: &tokio_postgres::Client, q: Search) -> ApiResult<Page<Transaction>> {
    if let Some(kind) = &q.kind {
        if !KINDS.contains(&kind.as_str()) {
            return Err(ApiError::field(
                "kind",
                format!("one of {}", KINDS.join(", ")),
            ));
        }
    }
    let from = time_param("from", q.from.as_deref())?;
    let to = time_param("to", q.to.as_deref())?;
    let len = page_len(q.limit)?;
    let (after_time, after_id) = ledger_cursor(q.cursor.as_deref())?;
    let rows = client
        .query(
            &format!(
                "{TX_SELECT}
                 WHERE ($1::text IS NULL OR p.code = $1)
                   AND ($2::text IS NULL OR t.provider_tx_id = $2)
                   AND ($3::bigint IS NULL OR t.player_id = $3)
                   AND ($4::text IS NULL OR t.round_id = $4)
                   AND ($5::text IS NULL OR t.kind = $5)
                   AND ($6::text IS NULL OR t.outcome = $6)
                   AND ($7::text IS NULL OR t.created_at >= $7::timestamptz)
                   AND ($8::text IS NULL OR t.created_at < $8::timestamptz)
                   AND ($9::text IS NULL OR (t.created_at, t.id) < ($9::timestamptz, $10::bigint))
                 ORDER BY t.created_at DESC, t.id DESC
                 LIMIT $11"
            ),
            &[
                &q.provider,
                &q.provider_tx_id,
                &q.player,
                &q.round,
                &q.kind,
                &q.outcome,
                &from,
                &to,
                &after_time,
                &after_id,
                &(len + 1),
            ],
        )
        .await?;
    Ok(ledger_page(&rows, len))
}
