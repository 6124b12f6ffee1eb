//! An independent reference model of the §4 rules, for property tests of `apply` (pure) and
//! of `store::settle` (through SQL): random callback sequences over small pools of players,
//! ids and rounds, so collisions, retries and reorderings are common. It keeps none of
//! `apply`'s structures; each rule is written plainly, one callback at a time.

use std::collections::{HashMap, HashSet};

use proptest::prelude::*;

use crate::command::{
    Action, Code, Command, GameId, Money, PlayerRef, Policy, ProviderId, ProviderTxId, RoundId,
    TombstoneAnswer,
};
use crate::money::Currency;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bet,
    Win,
    Rollback,
}

fn money(tx: &str, amount: i64, round: &str) -> Money {
    Money {
        tx: ProviderTxId::new(tx).expect("tx id"),
        currency: Currency::from_code("EUR").expect("EUR"),
        amount_minor: amount,
        round: RoundId::new(round).expect("round id"),
        game: GameId::new("g").expect("game id"),
        round_closed: false,
    }
}

/// A random policy: every combination of the rules that change answers.
pub fn policy() -> impl Strategy<Value = Policy> {
    (
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(not_found, win_rollback, negative, wins_without_bet, wait)| Policy {
                tombstone_answer: if not_found {
                    TombstoneAnswer::NotFound
                } else {
                    TombstoneAnswer::Ok
                },
                win_rollback_allowed: win_rollback,
                negative_balance_allowed: negative,
                wins_without_bet_allowed: wins_without_bet,
                wins_wait_for_bet: wait,
                ..Policy::default()
            },
        )
}

/// One random callback: indices into small pools so ids, rounds and players collide often.
#[derive(Debug, Clone)]
pub enum Op {
    Bet {
        player: u8,
        tx: u8,
        amount: i64,
        round: u8,
    },
    Win {
        player: u8,
        tx: u8,
        amount: i64,
        round: u8,
        bet: Option<u8>,
    },
    Rollback {
        player: u8,
        tx: u8,
        reference: u8,
    },
    EndRound {
        player: u8,
        round: u8,
    },
    /// Repeat an earlier op exactly (a provider retry).
    Repeat(usize),
}

/// A random op (players 0-2 exist, 3 does not).
pub fn op() -> impl Strategy<Value = Op> {
    let player = 0u8..4; // p3 does not exist
    let tx = 0u8..24;
    let round = 0u8..4;
    prop_oneof![
        4 => (player.clone(), tx.clone(), 0i64..400, round.clone())
            .prop_map(|(player, tx, amount, round)| Op::Bet { player, tx, amount, round }),
        3 => (player.clone(), tx.clone(), 0i64..300, round.clone(), proptest::option::of(tx.clone()))
            .prop_map(|(player, tx, amount, round, bet)| Op::Win { player, tx, amount, round, bet }),
        3 => (player.clone(), tx.clone(), tx.clone())
            .prop_map(|(player, tx, reference)| Op::Rollback { player, tx, reference }),
        1 => (player, round).prop_map(|(player, round)| Op::EndRound { player, round }),
        2 => (0usize..64).prop_map(Op::Repeat),
    ]
}

/// The core command of a (resolved) op, for `provider` under `policy`.
pub fn to_command(op: &Op, provider: ProviderId, policy: Policy) -> Command {
    let command = |player: u8, action: Action| {
        Command::new(
            provider,
            policy,
            PlayerRef::new(format!("p{player}")).expect("player id"),
            action,
        )
    };
    let p = |i: u8| i;
    let t = |i: u8| format!("t{i}");
    let r = |i: u8| format!("r{i}");
    match op {
        Op::Bet {
            player,
            tx,
            amount,
            round,
        } => command(
            p(*player),
            Action::Bet {
                money: money(&t(*tx), *amount, &r(*round)),
                session: None,
            },
        ),
        Op::Win {
            player,
            tx,
            amount,
            round,
            bet,
        } => command(
            p(*player),
            Action::Win {
                money: money(&t(*tx), *amount, &r(*round)),
                bet_tx: bet.map(|b| ProviderTxId::new(t(b)).expect("tx id")),
            },
        ),
        Op::Rollback {
            player,
            tx,
            reference,
        } => command(
            p(*player),
            Action::Rollback {
                tx: ProviderTxId::new(t(*tx)).expect("tx id"),
                reference: ProviderTxId::new(t(*reference)).expect("tx id"),
                round: None,
                game: None,
            },
        ),
        Op::EndRound { player, round } => command(
            p(*player),
            Action::EndRound {
                round: RoundId::new(r(*round)).expect("round id"),
                game: None,
            },
        ),
        Op::Repeat(_) => unreachable!("resolved before"),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum MState {
    Open,
    Settled,
    RolledBack,
    Done,
}

#[derive(Debug, Clone)]
struct MTx {
    player: u8,
    is_bet: bool,
    is_win: bool,
    amount: i64,
    round: u8,
    payload: String,
    code: Code,
    balance_after: i64,
    state: MState,
}

/// The §4 rules written plainly, one callback at a time, with none of `apply`'s structures.
#[derive(Default)]
pub struct Model {
    policy: Policy,
    pub balance: HashMap<u8, i64>,
    txs: HashMap<u8, MTx>,
    tombstones: HashSet<u8>,
    closed: HashSet<(u8, u8)>,
    rounds_seen: HashSet<(u8, u8)>,
}

impl Model {
    /// Players 0, 1 and 2 with `opening` each, under `policy`.
    pub fn new(opening: i64, policy: Policy) -> Model {
        Model {
            policy,
            balance: (0..3).map(|p| (p, opening)).collect(),
            ..Model::default()
        }
    }

    /// (code, balance, duplicate)
    pub fn step(&mut self, op: &Op) -> (Code, i64, bool) {
        let payload = format!("{op:?}");
        let (player, tx) = match op {
            Op::Bet { player, tx, .. }
            | Op::Win { player, tx, .. }
            | Op::Rollback { player, tx, .. } => (*player, Some(*tx)),
            Op::EndRound { player, .. } => (*player, None),
            Op::Repeat(_) => unreachable!(),
        };
        if let Some(tx) = tx {
            if let Some(known) = self.txs.get(&tx) {
                if known.payload == payload {
                    return (known.code, known.balance_after, true);
                }
                let balance = self.balance.get(&player).copied().unwrap_or(0);
                return (Code::DuplicateMismatch, balance, false);
            }
        }
        let Some(&balance) = self.balance.get(&player) else {
            // Ending a round is never refused, not even for a player nobody knows.
            if let Op::EndRound { .. } = op {
                return (Code::Ok, 0, false);
            }
            return (Code::UnknownPlayer, 0, false);
        };
        match *op {
            Op::Bet {
                amount, round, tx, ..
            } => {
                let code = if self.tombstones.contains(&tx) {
                    Code::TransactionRolledBack
                } else if self.closed.contains(&(player, round)) {
                    Code::RoundClosed
                } else if amount > balance {
                    Code::InsufficientFunds
                } else {
                    Code::Ok
                };
                let (state, delta) = if code == Code::Ok {
                    (MState::Open, -amount)
                } else {
                    (MState::Done, 0)
                };
                if code == Code::Ok {
                    self.rounds_seen.insert((player, round));
                }
                let bet = Recorded::new(Kind::Bet, (tx, player, round), amount, payload, code);
                self.record(Recorded {
                    delta,
                    state,
                    ..bet
                })
            }
            Op::Win {
                amount,
                round,
                tx,
                bet,
                ..
            } => {
                let bet_rolled_back = bet.is_some_and(|b| match self.txs.get(&b) {
                    Some(t) if t.player == player && t.is_bet => {
                        t.state == MState::RolledBack || t.code == Code::TransactionRolledBack
                    }
                    Some(_) => false,
                    None => self.tombstones.contains(&b),
                });
                // Its bet was rolled back, a rollback named this win itself before it came, or
                // (naming no bet) its round's applied bets were all rolled back, none open,
                // none paid: cancelled, never paid.
                let cancelled = bet_rolled_back
                    || self.tombstones.contains(&tx)
                    || (bet.is_none() && self.round_cancelled(player, round));
                if cancelled {
                    let code = Code::TransactionRolledBack;
                    return self.refused_win((tx, player, round), amount, payload, code);
                }
                if let Some(b) = bet {
                    let seen = self
                        .txs
                        .get(&b)
                        .is_some_and(|t| t.player == player && t.is_bet && t.code == Code::Ok);
                    if !seen && !self.policy.wins_without_bet_allowed {
                        return self.refused_win(
                            (tx, player, round),
                            amount,
                            payload,
                            self.no_bet(),
                        );
                    }
                    if let Some(t) = self.txs.get_mut(&b) {
                        if t.player == player && t.is_bet && t.state == MState::Open {
                            t.state = MState::Settled;
                        }
                    }
                } else {
                    if !self.rounds_seen.contains(&(player, round))
                        && !self.policy.wins_without_bet_allowed
                    {
                        return self.refused_win(
                            (tx, player, round),
                            amount,
                            payload,
                            self.no_bet(),
                        );
                    }
                    for t in self.txs.values_mut() {
                        if t.player == player
                            && t.is_bet
                            && t.round == round
                            && t.state == MState::Open
                        {
                            t.state = MState::Settled;
                        }
                    }
                }
                self.rounds_seen.insert((player, round));
                let paid = Recorded::new(Kind::Win, (tx, player, round), amount, payload, Code::Ok);
                self.record(Recorded {
                    delta: amount,
                    ..paid
                })
            }
            Op::Rollback { tx, reference, .. } => {
                let target = self.txs.get(&reference).cloned();
                let policy = self.policy;
                let (code, delta) = match target {
                    None => {
                        self.tombstones.insert(reference);
                        match policy.tombstone_answer {
                            TombstoneAnswer::Ok => (Code::Ok, 0),
                            TombstoneAnswer::NotFound => (Code::TransactionNotFound, 0),
                        }
                    }
                    Some(t) if t.player != player => (Code::TransactionNotFound, 0),
                    Some(t) if t.is_bet && t.code != Code::Ok => (Code::Ok, 0),
                    Some(t) if (t.is_bet || t.is_win) && t.state == MState::RolledBack => {
                        (Code::Ok, 0)
                    }
                    Some(t) if t.is_bet && t.state == MState::Settled => {
                        (Code::RollbackNotPermitted, 0)
                    }
                    Some(t) if t.is_bet => {
                        self.txs.get_mut(&reference).unwrap().state = MState::RolledBack;
                        (Code::Ok, t.amount)
                    }
                    Some(t) if t.is_win && policy.win_rollback_allowed && t.code == Code::Ok => {
                        if balance < t.amount && !policy.negative_balance_allowed {
                            (Code::RollbackNotPermitted, 0)
                        } else {
                            self.txs.get_mut(&reference).unwrap().state = MState::RolledBack;
                            (Code::Ok, -t.amount)
                        }
                    }
                    Some(_) => (Code::RollbackNotPermitted, 0),
                };
                self.record(Recorded {
                    tx,
                    player,
                    kind: Kind::Rollback,
                    amount: 0,
                    round: 0,
                    payload,
                    code,
                    delta,
                    state: MState::Done,
                })
            }
            Op::EndRound { round, .. } => {
                self.closed.insert((player, round));
                self.rounds_seen.insert((player, round));
                (Code::Ok, balance, false)
            }
            Op::Repeat(_) => unreachable!(),
        }
    }

    /// What a win whose bet was not seen is answered when wins need a bet: for now (the
    /// policy waits for the bet), or for good.
    fn no_bet(&self) -> Code {
        if self.policy.wins_wait_for_bet {
            Code::BetNotSeen
        } else {
            Code::TransactionNotFound
        }
    }

    /// A round whose applied bets were all rolled back (none open, none paid) was cancelled: a
    /// win naming no bet cannot pay it.
    fn round_cancelled(&self, player: u8, round: u8) -> bool {
        let bets: Vec<&MTx> = self
            .txs
            .values()
            .filter(|t| t.player == player && t.is_bet && t.round == round && t.code == Code::Ok)
            .collect();
        !bets.iter().any(|t| t.state == MState::Open)
            && bets.iter().any(|t| t.state == MState::RolledBack)
            && !bets.iter().any(|t| t.state == MState::Settled)
    }

    /// A win (transaction, player, round) refused with `code`, moving nothing: stored, or
    /// not remembered at all when it is to be retried (`BET_NOT_SEEN`).
    fn refused_win(
        &mut self,
        key: (u8, u8, u8),
        amount: i64,
        payload: String,
        code: Code,
    ) -> (Code, i64, bool) {
        if code == Code::BetNotSeen {
            return (code, self.balance[&key.1], false);
        }
        self.record(Recorded::new(Kind::Win, key, amount, payload, code))
    }

    fn record(&mut self, r: Recorded) -> (Code, i64, bool) {
        let balance = self.balance.get_mut(&r.player).unwrap();
        *balance += r.delta;
        let balance_after = *balance;
        self.txs.insert(
            r.tx,
            MTx {
                player: r.player,
                is_bet: r.kind == Kind::Bet,
                is_win: r.kind == Kind::Win,
                amount: r.amount,
                round: r.round,
                payload: r.payload,
                code: r.code,
                balance_after,
                state: r.state,
            },
        );
        (r.code, balance_after, false)
    }
}

/// A transaction the model records: its answer and what it moved.
struct Recorded {
    tx: u8,
    player: u8,
    kind: Kind,
    amount: i64,
    round: u8,
    payload: String,
    code: Code,
    delta: i64,
    state: MState,
}

impl Recorded {
    /// A call of `kind` (transaction, player, round) answered with `code`, done, moving
    /// nothing (yet).
    fn new(kind: Kind, key: (u8, u8, u8), amount: i64, payload: String, code: Code) -> Recorded {
        let (tx, player, round) = key;
        Recorded {
            tx,
            player,
            kind,
            amount,
            round,
            payload,
            code,
            delta: 0,
            state: MState::Done,
        }
    }
}

/// Resolves `Repeat(i)` to the i-th earlier concrete op (or drops it when there is none).
pub fn resolve(ops: &[Op]) -> Vec<Op> {
    let mut out: Vec<Op> = Vec::new();
    for op in ops {
        match op {
            Op::Repeat(i) if !out.is_empty() => out.push(out[i % out.len()].clone()),
            Op::Repeat(_) => {}
            other => out.push(other.clone()),
        }
    }
    out
}

/// The seed of a randomized test: `env_var` when set (to replay a failure), else a fresh one.
/// Printed first, so a failing run can be replayed.
pub fn seed(env_var: &str, what: &str) -> u64 {
    let seed = std::env::var(env_var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    println!("{what} seed: {seed} (replay with {env_var}={seed})");
    seed
}
