//! Money moved by the operator rather than a game provider (back-office adjustments, payment
//! deposits, withdrawals and their refunds): each credits or debits a wallet's real money with
//! a ledger row of its kind in the same transaction, and never takes a balance below zero. The
//! rule is pure (`adjusted`); `store::adjust` is its one writer.

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
