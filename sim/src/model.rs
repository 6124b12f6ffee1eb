//! The simulator's own model of one player's wallet under the design §4 rules (demo provider
//! policy), written plainly. Each player is driven by one worker at a time, so the model can
//! say, before a callback is sent, exactly which answer and balance it must get.

use std::collections::{HashMap, HashSet};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BetState {
    Open,
    Settled,
    RolledBack,
    /// Refused when it arrived (no money moved).
    Failed,
}

#[derive(Debug, Clone)]
struct Bet {
    amount: i64,
    round: String,
    state: BetState,
    /// Refused because a rollback had tombstoned it.
    tombstoned: bool,
    /// Abandoned: its answer never came and its rollback may have overtaken it, so whether it
    /// was ever applied is unknown.
    abandoned: bool,
}

/// A money operation as the model sees it.
#[derive(Debug, Clone)]
pub enum Op {
    Bet {
        tx: String,
        amount: i64,
        round: String,
    },
    Win {
        tx: String,
        amount: i64,
        round: String,
        bet: Option<String>,
        /// A promotional payout: no bet, its own round.
        promo: bool,
    },
    Rollback {
        tx: String,
        reference: String,
    },
    EndRound {
        round: String,
    },
    /// A balance call (the load generator's; the simulator plays none).
    Balance,
}

#[derive(Debug, Clone)]
pub struct PlayerModel {
    pub name: String,
    pub opening: i64,
    pub balance: i64,
    bets: HashMap<String, Bet>,
    wins: HashSet<String>,
    tombstones: HashSet<String>,
    closed: HashSet<String>,
    /// Ledger rows this player's operations must have moved money with.
    pub money_rows: u64,
    /// Rows that may or may not exist (an abandoned bet and its rollback: both or neither).
    pub uncertain_rows: u64,
    /// The provider answers a rollback of an unknown transaction TRANSACTION_NOT_FOUND.
    pub tombstone_not_found: bool,
    /// The provider's wins need their bet: one naming a bet that was refused or never seen is
    /// TRANSACTION_NOT_FOUND (promotional wins excepted).
    pub wins_need_bet: bool,
}

impl PlayerModel {
    pub fn new(name: String, opening: i64) -> PlayerModel {
        PlayerModel {
            name,
            opening,
            balance: opening,
            bets: HashMap::new(),
            wins: HashSet::new(),
            tombstones: HashSet::new(),
            closed: HashSet::new(),
            money_rows: 0,
            uncertain_rows: 0,
            tombstone_not_found: false,
            wins_need_bet: false,
        }
    }

    /// Applies `op` to the model; returns the status and balance the gateway must answer.
    pub fn apply(&mut self, op: &Op) -> (&'static str, i64) {
        match op {
            Op::Bet { tx, amount, round } => {
                let (status, state) = if self.tombstones.contains(tx) {
                    ("TRANSACTION_ROLLED_BACK", BetState::Failed)
                } else if self.closed.contains(round) {
                    ("ROUND_CLOSED", BetState::Failed)
                } else if *amount > self.balance {
                    ("INSUFFICIENT_FUNDS", BetState::Failed)
                } else {
                    ("OK", BetState::Open)
                };
                if state == BetState::Open {
                    self.balance -= amount;
                    self.money_rows += u64::from(*amount != 0);
                }
                let tombstoned = status == "TRANSACTION_ROLLED_BACK";
                self.bets.insert(
                    tx.clone(),
                    Bet {
                        amount: *amount,
                        round: round.clone(),
                        state,
                        tombstoned,
                        abandoned: false,
                    },
                );
                (status, self.balance)
            }
            Op::Win {
                tx,
                amount,
                round,
                bet,
                promo,
            } => {
                if self.tombstones.contains(tx) {
                    // A rollback named this win before it came: cancelled, never paid.
                    return ("TRANSACTION_ROLLED_BACK", self.balance);
                }
                if let Some(b) = bet {
                    let rolled_back = match self.bets.get(b) {
                        Some(bet) => bet.state == BetState::RolledBack || bet.tombstoned,
                        None => self.tombstones.contains(b),
                    };
                    if rolled_back {
                        return ("TRANSACTION_ROLLED_BACK", self.balance);
                    }
                    let seen = self
                        .bets
                        .get(b)
                        .is_some_and(|bet| bet.state != BetState::Failed);
                    if self.wins_need_bet && !seen && !promo {
                        return ("TRANSACTION_NOT_FOUND", self.balance);
                    }
                    if let Some(bet) = self.bets.get_mut(b) {
                        if bet.state == BetState::Open {
                            bet.state = BetState::Settled;
                        }
                    }
                } else {
                    // A round whose applied bets were all rolled back (none open, none paid)
                    // was cancelled: a win naming no bet cannot pay it.
                    let applied = || {
                        self.bets
                            .values()
                            .filter(|b| b.round == *round && !b.tombstoned)
                    };
                    let cancelled = !promo
                        && !applied().any(|b| b.state == BetState::Open)
                        && applied().any(|b| b.state == BetState::RolledBack)
                        && !applied().any(|b| b.state == BetState::Settled);
                    if cancelled {
                        return ("TRANSACTION_ROLLED_BACK", self.balance);
                    }
                    for bet in self.bets.values_mut() {
                        if bet.round == *round && bet.state == BetState::Open {
                            bet.state = BetState::Settled;
                        }
                    }
                }
                self.balance += amount;
                self.money_rows += u64::from(*amount != 0);
                self.wins.insert(tx.clone());
                ("OK", self.balance)
            }
            Op::Rollback { reference, .. } => {
                if self.wins.contains(reference) {
                    return ("ROLLBACK_NOT_PERMITTED", self.balance);
                }
                match self.bets.get_mut(reference) {
                    None => {
                        self.tombstones.insert(reference.clone());
                        let status = if self.tombstone_not_found {
                            "TRANSACTION_NOT_FOUND"
                        } else {
                            "OK"
                        };
                        (status, self.balance)
                    }
                    Some(bet) => match bet.state {
                        BetState::Failed | BetState::RolledBack => ("OK", self.balance),
                        BetState::Settled => ("ROLLBACK_NOT_PERMITTED", self.balance),
                        BetState::Open => {
                            bet.state = BetState::RolledBack;
                            self.balance += bet.amount;
                            self.money_rows += u64::from(bet.amount != 0);
                            ("OK", self.balance)
                        }
                    },
                }
            }
            Op::EndRound { round } => {
                self.closed.insert(round.clone());
                ("OK", self.balance)
            }
            Op::Balance => ("OK", self.balance),
        }
    }

    /// A bet whose answer never came, reversed by a rollback: whichever of the two the gateway
    /// saw first, the bet ends with no money moved and cannot be settled.
    pub fn bet_abandoned(&mut self, tx: &str, round: &str) {
        self.uncertain_rows += 2;
        self.tombstones.insert(tx.to_string());
        self.bets.insert(
            tx.to_string(),
            Bet {
                amount: 0,
                round: round.to_string(),
                state: BetState::RolledBack,
                tombstoned: true,
                abandoned: true,
            },
        );
    }

    /// Whether the model can tell what a win naming no bet gets in `round`: not when the round
    /// has no open bet and a bet whose rollback may or may not have found it applied.
    pub fn unnamed_win_is_certain(&self, round: &str) -> bool {
        let bets = || self.bets.values().filter(|b| b.round == round);
        bets().any(|b| b.state == BetState::Open) || !bets().any(|b| b.abandoned)
    }

    /// Whether a bet of `round` was applied (so the round exists), whatever became of it.
    pub fn has_applied_bet(&self, round: &str) -> bool {
        self.bets.values().any(|b| {
            b.round == round
                && !b.tombstoned
                && matches!(
                    b.state,
                    BetState::Open | BetState::Settled | BetState::RolledBack
                )
        })
    }

    /// An applied bet still open (a candidate for a rollback or a named win).
    pub fn open_bets(&self, round: &str) -> Vec<String> {
        let mut open: Vec<String> = self
            .bets
            .iter()
            .filter(|(_, b)| b.round == round && b.state == BetState::Open)
            .map(|(tx, _)| tx.clone())
            .collect();
        open.sort();
        open
    }
}
