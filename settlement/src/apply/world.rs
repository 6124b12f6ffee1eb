//! The world a batch's state machine works on: what the prefetch read (players with their
//! wallets and limits, stored transactions, tombstones, rounds, sessions) and what `apply`
//! changed in it for the store to write. Types only, with the small rules that belong to them.

use std::collections::{HashMap, HashSet};

use crate::command::{
    Answer, Code, Fingerprint, GameId, PlayerRef, ProviderId, ProviderTxId, RoundId, SessionToken,
};
use crate::money::Currency;

/// A map that lives for one batch. Hashed with foldhash (seeded per process) rather than std's
/// SipHash: its keys are bounded by the batch, so ids crafted to collide could cost at most a
/// batch's worth of probes, and the batch's look-ups are on every callback's path.
pub type BatchMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
/// A set that lives for one batch ([`BatchMap`]'s hasher).
pub type BatchSet<K> = HashSet<K, foldhash::fast::RandomState>;

pub type TxKey = (ProviderId, ProviderTxId);
pub type RoundKey = (ProviderId, i64, RoundId);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxKind {
    Bet,
    Win,
    Rollback,
    /// Non-provider movements (seed deposits, adjustments) never enter a batch's world.
    Other,
}

impl TxKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TxKind::Bet => "bet",
            TxKind::Win => "win",
            TxKind::Rollback => "rollback",
            TxKind::Other => "other",
        }
    }

    /// A stored row's kind: the provider kinds, or `Other` for the ledger's non-provider kinds
    /// (`deposit`, `adjustment`, `withdrawal`); anything else is refused (`None`), never guessed.
    pub fn parse(text: &str) -> Option<TxKind> {
        match text {
            "bet" => Some(TxKind::Bet),
            "win" => Some(TxKind::Win),
            "rollback" => Some(TxKind::Rollback),
            "deposit" | "adjustment" | "withdrawal" => Some(TxKind::Other),
            _ => None,
        }
    }
}

/// Life of a bet (`Open` -> `Settled` | `RolledBack`) or of a win (`None` -> `RolledBack`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxState {
    Open,
    Settled,
    RolledBack,
}

impl TxState {
    pub fn as_str(self) -> &'static str {
        match self {
            TxState::Open => "open",
            TxState::Settled => "settled",
            TxState::RolledBack => "rolled_back",
        }
    }

    pub fn parse(text: &str) -> Option<TxState> {
        match text {
            "open" => Some(TxState::Open),
            "settled" => Some(TxState::Settled),
            "rolled_back" => Some(TxState::RolledBack),
            _ => None,
        }
    }
}

/// A ledger row with a provider transaction id: loaded by the prefetch or created by `apply`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tx {
    pub id: i64,
    pub kind: TxKind,
    pub outcome: Code,
    pub state: Option<TxState>,
    pub player_id: i64,
    pub currency: Currency,
    pub round: Option<RoundId>,
    pub game: Option<GameId>,
    pub amount_minor: i64,
    pub real_delta: i64,
    pub bonus_delta: i64,
    pub balance_after: i64,
    pub bonus_after: i64,
    pub reference: Option<ProviderTxId>,
    pub fingerprint: Option<Fingerprint>,
    /// Created by this batch: to insert.
    pub is_new: bool,
    /// An existing row whose `state` this batch changed: to update.
    pub state_changed: bool,
}

impl Tx {
    /// The answer originally given for this transaction id, replayed for a retry.
    pub(super) fn stored_answer(&self) -> Answer {
        Answer {
            code: self.outcome,
            currency: Some(self.currency),
            balance_minor: self.balance_after,
            bonus_minor: self.bonus_after,
            operator_tx_id: Some(self.id),
            duplicate: true,
            money_moved: self.real_delta != 0 || self.bonus_delta != 0,
        }
    }

    pub(super) fn set_state(&mut self, state: TxState) {
        if self.state != Some(state) {
            self.state = Some(state);
            self.state_changed |= !self.is_new;
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wallet {
    pub currency: Currency,
    pub balance_minor: i64,
    pub bonus_minor: i64,
    pub needs_reconciliation: bool,
    pub changed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    MaxBet,
    Wager,
    Loss,
}

/// A responsible-gaming limit with its use in the current period (from the prefetch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    pub currency: Currency,
    pub kind: LimitKind,
    pub amount_minor: i64,
    /// Use in the period, this batch's included.
    pub used_minor: i64,
    /// This batch's share of `used_minor`, added to the player's day total when it commits.
    pub added_minor: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Player {
    pub id: i64,
    /// Suspended, banned or self-excluded at the batch's time.
    pub blocked: bool,
    /// In creation order: the first is the default for calls that name no currency.
    pub wallets: Vec<Wallet>,
    pub limits: Vec<Limit>,
}

impl Player {
    pub(super) fn wallet(&self, currency: Currency) -> Option<&Wallet> {
        self.wallets.iter().find(|w| w.currency == currency)
    }

    pub(super) fn wallet_mut(&mut self, currency: Currency) -> Option<&mut Wallet> {
        self.wallets.iter_mut().find(|w| w.currency == currency)
    }

    pub(super) fn limit_refuses(&self, currency: Currency, amount: i64) -> bool {
        self.limits
            .iter()
            .filter(|l| l.currency == currency)
            .any(|l| match l.kind {
                LimitKind::MaxBet => amount > l.amount_minor,
                LimitKind::Wager | LimitKind::Loss => {
                    l.used_minor.saturating_add(amount) > l.amount_minor
                }
            })
    }

    /// Counts money staked (`wagered`) and lost (`lost`, negative for money won back).
    pub(super) fn use_limits(&mut self, currency: Currency, wagered: i64, lost: i64) {
        for limit in self.limits.iter_mut().filter(|l| l.currency == currency) {
            let add = match limit.kind {
                LimitKind::MaxBet => continue,
                LimitKind::Wager => wagered,
                LimitKind::Loss => lost,
            };
            limit.used_minor = limit.used_minor.saturating_add(add);
            limit.added_minor = limit.added_minor.saturating_add(add);
        }
    }

    /// This batch's (wagered, lost) in each currency where the player has a wager or loss
    /// limit and the batch moved either, to add to the day's totals (`rg_usage`); a kind
    /// without a limit counts 0 (its totals are counted again from the ledger when such a limit
    /// is written). Limits of one kind (a day's and a month's) share their batch's share.
    pub fn limit_use(&self) -> Vec<(&Currency, i64, i64)> {
        let mut rows: Vec<(&Currency, i64, i64)> = Vec::new();
        for limit in &self.limits {
            let at = match rows.iter().position(|r| *r.0 == limit.currency) {
                Some(at) => at,
                None if limit.kind == LimitKind::MaxBet => continue,
                None => {
                    rows.push((&limit.currency, 0, 0));
                    rows.len() - 1
                }
            };
            match limit.kind {
                LimitKind::MaxBet => {}
                LimitKind::Wager => rows[at].1 = limit.added_minor,
                LimitKind::Loss => rows[at].2 = limit.added_minor,
            }
        }
        rows.retain(|&(_, wagered, lost)| wagered != 0 || lost != 0);
        rows
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Round {
    pub closed: bool,
    pub game: Option<GameId>,
    /// Bets of this round not yet settled or rolled back, in arrival order.
    pub open_bets: Vec<ProviderTxId>,
    /// Some bet of this round was rolled back, and some was settled by a win. Known for the
    /// rounds of wins that name no bet (the prefetch reads their bets), and kept by `apply`.
    pub bets_rolled_back: bool,
    pub bets_settled: bool,
    /// New, or closed by this batch: to write.
    pub changed: bool,
    /// Read from the database (a change is an update there); false for a round this batch
    /// opened (an insert).
    pub stored: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub player_id: i64,
    pub currency: Currency,
    pub game: Option<GameId>,
    /// Not expired at the batch's time.
    pub live: bool,
}

/// Everything a batch reads, prefetched (and locked) in one transaction, then changed by `apply`.
#[derive(Debug, Default, Clone)]
pub struct World {
    pub players: BatchMap<PlayerRef, Player>,
    pub txs: BatchMap<TxKey, Tx>,
    /// Ids named by a rollback that arrived before them.
    pub tombstones: BatchSet<TxKey>,
    /// Ids whose ledger rows were pruned with their day (their keys are kept): never settled
    /// again, whatever comes with them.
    pub pruned: BatchSet<TxKey>,
    pub rounds: BatchMap<RoundKey, Round>,
    pub sessions: BatchMap<SessionToken, Session>,
    /// Ledger row ids reserved for this batch, used from the back.
    pub ids: Vec<i64>,
    /// Keys of the rows this batch created, in creation order.
    pub created: Vec<TxKey>,
}

#[cfg(test)]
mod tests {
    use super::{Limit, LimitKind, Player, TxKind};
    use crate::money::Currency;

    /// One row of day totals per currency with a wager or loss limit, however many limits
    /// (a day's and a month's) count it; none where the batch moved nothing, or only a
    /// maximum bet limits the player.
    #[test]
    fn a_batchs_limit_use_is_one_row_per_limited_currency() {
        let eur = Currency::from_code("EUR").unwrap();
        let usd = Currency::from_code("USD").unwrap();
        let gbp = Currency::from_code("GBP").unwrap();
        let limit = |currency, kind| Limit {
            currency,
            kind,
            amount_minor: 1_000_000,
            used_minor: 100,
            added_minor: 0,
        };
        let mut player = Player {
            id: 7,
            blocked: false,
            wallets: Vec::new(),
            limits: vec![
                limit(eur, LimitKind::MaxBet),
                limit(eur, LimitKind::Wager),
                limit(eur, LimitKind::Wager),
                limit(eur, LimitKind::Loss),
                limit(usd, LimitKind::Loss),
                limit(gbp, LimitKind::MaxBet),
            ],
        };
        assert!(player.limit_use().is_empty(), "nothing played");
        player.use_limits(eur, 500, 500);
        player.use_limits(eur, 0, -200);
        player.use_limits(usd, 300, 300);
        player.use_limits(gbp, 50, 50);
        let rows = player.limit_use();
        assert_eq!(rows, [(&eur, 500, 300), (&usd, 0, 300)]);
        assert!(player
            .limits
            .iter()
            .filter(|l| l.kind == LimitKind::Wager)
            .all(|l| l.used_minor == 600));
    }

    /// A stored kind the code does not know is refused, never taken for a non-provider row.
    #[test]
    fn stored_kinds_parse_or_are_refused() {
        assert_eq!(TxKind::parse("bet"), Some(TxKind::Bet));
        assert_eq!(TxKind::parse("win"), Some(TxKind::Win));
        assert_eq!(TxKind::parse("rollback"), Some(TxKind::Rollback));
        for other in ["deposit", "adjustment", "withdrawal"] {
            assert_eq!(TxKind::parse(other), Some(TxKind::Other), "{other}");
        }
        assert_eq!(TxKind::parse("bonus"), None);
        assert_eq!(TxKind::parse(""), None);
    }
}
