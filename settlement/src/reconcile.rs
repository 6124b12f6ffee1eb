//! Reconciliation: what an operator checks against the ledger. Wallets whose balance differs
//! from the sum of their ledger rows (must be none; rows pruned by retention count through
//! their per-wallet totals in `ledger_pruned`), rounds left open, rollbacks whose
//! transaction never arrived (tombstones never matched), wallets flagged after a balance went
//! below zero by policy, and each provider's totals over a time range. Read-only.

use serde::Serialize;
use tokio_postgres::GenericClient;

/// How many examples each list carries at most (counts are always whole).
pub const SAMPLES: i64 = 100;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct WalletMismatch {
    pub player_id: i64,
    pub currency: String,
    pub balance: i64,
    /// Remaining ledger rows plus the pruned ones' total.
    pub ledger_sum: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct OpenRound {
    pub provider: String,
    pub player_id: i64,
    pub round_id: String,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Tombstone {
    pub provider: String,
    pub player_id: i64,
    /// The rollback's own id, and the transaction it named that never came.
    pub rollback_tx_id: Option<String>,
    pub missing_tx_id: String,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct FlaggedWallet {
    pub player_id: i64,
    pub currency: String,
    pub balance: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProviderTotals {
    pub provider: String,
    pub currency: String,
    /// Applied ledger rows in the range.
    pub transactions: i64,
    /// Minor units staked, won and returned by rollbacks (net of reversed wins).
    pub bets: i64,
    pub wins: i64,
    pub rollbacks: i64,
    /// bets - wins - rollbacks: what the operator kept.
    pub net: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `true` when no wallet differs from its ledger.
    pub balanced: bool,
    pub wallet_mismatches: Vec<WalletMismatch>,
    /// Rounds still open an hour after they started.
    pub open_rounds: i64,
    pub open_round_samples: Vec<OpenRound>,
    pub unmatched_tombstones: i64,
    pub unmatched_tombstone_samples: Vec<Tombstone>,
    pub flagged_wallets: Vec<FlaggedWallet>,
    /// Over `[from, to)` (RFC 3339 text as given; PostgreSQL parses it).
    pub from: String,
    pub to: String,
    pub provider_totals: Vec<ProviderTotals>,
}

const TIME: &str = "to_char(%s AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')";

fn time(column: &str) -> String {
    TIME.replace("%s", column)
}

/// The whole report; `from` and `to` are timestamps PostgreSQL accepts.
pub async fn report(
    client: &impl GenericClient,
    from: &str,
    to: &str,
) -> Result<Report, tokio_postgres::Error> {
    let wallet_mismatches = wallet_mismatches(client).await?;
    let (open_rounds, open_round_samples) = open_rounds(client).await?;
    let (unmatched_tombstones, unmatched_tombstone_samples) = unmatched_tombstones(client).await?;
    Ok(Report {
        balanced: wallet_mismatches.is_empty(),
        wallet_mismatches,
        open_rounds,
        open_round_samples,
        unmatched_tombstones,
        unmatched_tombstone_samples,
        flagged_wallets: flagged_wallets(client).await?,
        from: from.to_string(),
        to: to.to_string(),
        provider_totals: provider_totals(client, from, to).await?,
    })
}

/// Wallets whose balance differs from their ledger.
async fn wallet_mismatches(
    client: &impl GenericClient,
) -> Result<Vec<WalletMismatch>, tokio_postgres::Error> {
    let wallet_mismatches: Vec<WalletMismatch> = crate::store::ledger_mismatches(client)
        .await?
        .into_iter()
        .map(
            |(player_id, currency, balance, ledger_sum)| WalletMismatch {
                player_id,
                currency,
                balance,
                ledger_sum,
            },
        )
        .collect();
    Ok(wallet_mismatches)
}

/// Rounds still open an hour after they started: how many, and the oldest.
async fn open_rounds(
    client: &impl GenericClient,
) -> Result<(i64, Vec<OpenRound>), tokio_postgres::Error> {
    let open_rounds: i64 = client
        .query_one(
            "SELECT count(*) FROM rounds WHERE NOT closed AND created_at < now() - interval '1 hour'",
            &[],
        )
        .await?
        .get(0);
    let open_round_samples = client
        .query(
            &format!(
                "SELECT p.code, r.player_id, r.round_id, {}
                 FROM rounds r JOIN providers p ON p.id = r.provider_id
                 WHERE NOT r.closed AND r.created_at < now() - interval '1 hour'
                 ORDER BY r.created_at LIMIT $1",
                time("r.created_at")
            ),
            &[&SAMPLES],
        )
        .await?
        .iter()
        .map(|r| OpenRound {
            provider: r.get(0),
            player_id: r.get(1),
            round_id: r.get(2),
            created_at: r.get(3),
        })
        .collect();
    Ok((open_rounds, open_round_samples))
}

/// Rollbacks naming a transaction that is not in the ledger at all: how many, and the first.
async fn unmatched_tombstones(
    client: &impl GenericClient,
) -> Result<(i64, Vec<Tombstone>), tokio_postgres::Error> {
    // A rollback naming a transaction that is not in the ledger (as its own id) at all.
    let unmatched = "FROM transactions t JOIN providers p ON p.id = t.provider_id
        WHERE t.kind = 'rollback' AND t.reference_tx_id IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM transaction_keys b
                          WHERE b.provider_id = t.provider_id
                            AND b.provider_tx_id = t.reference_tx_id)";
    let unmatched_tombstones: i64 = client
        .query_one(&format!("SELECT count(*) {unmatched}"), &[])
        .await?
        .get(0);
    let unmatched_tombstone_samples = client
        .query(
            &format!(
                "SELECT p.code, t.player_id, t.provider_tx_id, t.reference_tx_id, {} {unmatched}
                 ORDER BY t.id LIMIT $1",
                time("t.created_at")
            ),
            &[&SAMPLES],
        )
        .await?
        .iter()
        .map(|r| Tombstone {
            provider: r.get(0),
            player_id: r.get(1),
            rollback_tx_id: r.get(2),
            missing_tx_id: r.get(3),
            created_at: r.get(4),
        })
        .collect();
    Ok((unmatched_tombstones, unmatched_tombstone_samples))
}

/// Wallets flagged for reconciliation.
async fn flagged_wallets(
    client: &impl GenericClient,
) -> Result<Vec<FlaggedWallet>, tokio_postgres::Error> {
    let flagged_wallets = client
        .query(
            "SELECT player_id, currency, balance FROM wallets WHERE needs_reconciliation
             ORDER BY player_id, currency",
            &[],
        )
        .await?
        .iter()
        .map(|r| FlaggedWallet {
            player_id: r.get(0),
            currency: r.get(1),
            balance: r.get(2),
        })
        .collect();
    Ok(flagged_wallets)
}

/// Per provider and currency over `[from, to)`: transactions, bets, wins, rollbacks, net.
async fn provider_totals(
    client: &impl GenericClient,
    from: &str,
    to: &str,
) -> Result<Vec<ProviderTotals>, tokio_postgres::Error> {
    let provider_totals = client
        .query(
            "SELECT p.code, t.currency, count(*),
                    coalesce(sum(t.amount) FILTER (WHERE t.kind = 'bet'), 0)::bigint,
                    coalesce(sum(t.amount) FILTER (WHERE t.kind = 'win'), 0)::bigint,
                    coalesce(sum(t.real_delta + t.bonus_delta) FILTER (WHERE t.kind = 'rollback'), 0)::bigint
             FROM transactions t JOIN providers p ON p.id = t.provider_id
             WHERE t.outcome = 'OK'
               AND t.created_at >= $1::text::timestamptz AND t.created_at < $2::text::timestamptz
             GROUP BY p.code, t.currency ORDER BY p.code, t.currency",
            &[&from, &to],
        )
        .await?
        .iter()
        .map(|r| {
            let (bets, wins, rollbacks): (i64, i64, i64) = (r.get(3), r.get(4), r.get(5));
            ProviderTotals {
                provider: r.get(0),
                currency: r.get(1),
                transactions: r.get(2),
                bets,
                wins,
                rollbacks,
                net: bets.saturating_sub(wins).saturating_sub(rollbacks),
            }
        })
        .collect();
    Ok(provider_totals)
}
