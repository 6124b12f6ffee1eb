//! Money moved by the operator rather than a game provider (back-office adjustments, payment
//! deposits, withdrawals and their refunds): each credits or debits a wallet's real money with
//! a ledger row of its kind in the same transaction, and never takes a balance below zero. The
//! rule is pure (`adjusted`); `apply` is its one writer.

use tokio_postgres::GenericClient;

/// Why an adjustment was not applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A debit larger than the real balance.
    InsufficientFunds,
    /// The result would not fit in `i64` minor units.
    Overflow,
    /// The player has no wallet in this currency.
    NoWallet,
}

/// The real balance after adding `delta` to `balance` (negative: a debit), if allowed.
pub fn adjusted(balance: i64, delta: i64) -> Result<i64, Refusal> {
    let after = balance.checked_add(delta).ok_or(Refusal::Overflow)?;
    if after < 0 {
        return Err(Refusal::InsufficientFunds);
    }
    Ok(after)
}

/// What an applied adjustment wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    pub ledger_id: i64,
    pub balance_before: i64,
    pub balance_after: i64,
}

/// The ledger kinds of operator money movements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Adjustment,
    Deposit,
    /// A withdrawal's reservation (a debit) and, on rejection, its refund (a credit).
    Withdrawal,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Adjustment => "adjustment",
            Kind::Deposit => "deposit",
            Kind::Withdrawal => "withdrawal",
        }
    }
}

/// Applies `delta` minor units to `player`'s `currency` wallet inside the caller's
/// transaction: locks the wallet, checks the rule, writes the ledger row (of `kind`,
/// `reference` kept in `reference_tx_id`) and the new balance.
pub async fn apply(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_below_zero_never_past_the_range() {
        assert_eq!(adjusted(100, -100), Ok(0));
        assert_eq!(adjusted(100, -101), Err(Refusal::InsufficientFunds));
        assert_eq!(adjusted(100, 50), Ok(150));
        assert_eq!(adjusted(i64::MAX, 1), Err(Refusal::Overflow));
        assert_eq!(adjusted(0, i64::MIN), Err(Refusal::InsufficientFunds));
    }
}
