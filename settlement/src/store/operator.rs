//! The operator's money movements (adjustments, deposits, withdrawals) written to a wallet:
//! the one place outside the lanes that writes a wallet and the ledger, under the same wallet
//! lock, applying `adjust::adjusted`.

use tokio_postgres::GenericClient;

use crate::adjust::{adjusted, Applied, Kind, Refusal};

/// Applies `delta` minor units to `player`'s `currency` wallet inside the caller's
/// transaction: locks the wallet, checks the rule, writes the ledger row (of `kind`,
/// `reference` kept in `reference_tx_id`) and the new balance.
pub async fn adjust(
    tx: &impl GenericClient,
    kind: Kind,
    player: i64,
    currency: &str,
    delta: i64,
    reference: &str,
) -> Result<Result<Applied, Refusal>, tokio_postgres::Error> {
    let Some(wallet) = tx
        .query_opt(
            "SELECT balance, bonus FROM wallets WHERE player_id = $1 AND currency = $2 FOR UPDATE",
            &[&player, &currency],
        )
        .await?
    else {
        return Ok(Err(Refusal::NoWallet));
    };
    let (before, bonus): (i64, i64) = (wallet.get(0), wallet.get(1));
    let after = match adjusted(before, delta) {
        Ok(after) => after,
        Err(refusal) => return Ok(Err(refusal)),
    };
    // A debit of i64::MIN never gets here (no balance covers it).
    let amount = delta.checked_abs().unwrap_or(i64::MAX);
    let row = tx
        .query_one(
            "WITH w AS (
                 UPDATE wallets SET balance = $4 WHERE player_id = $1 AND currency = $2
             )
             INSERT INTO transactions (kind, outcome, player_id, currency, amount, real_delta,
                                       balance_before, balance_after, bonus_before, bonus_after,
                                       reference_tx_id)
             VALUES ($9, 'OK', $1, $2, $5, $6, $3, $4, $7, $7, $8)
             RETURNING id",
            &[
                &player,
                &currency,
                &before,
                &after,
                &amount,
                &delta,
                &bonus,
                &reference,
                &kind.as_str(),
            ],
        )
        .await?;
    Ok(Ok(Applied {
        ledger_id: row.get(0),
        balance_before: before,
        balance_after: after,
    }))
}
