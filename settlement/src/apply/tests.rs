//! The state machine without a database: tiny cases through one `check`, and a property test
//! of `apply` against an independent reference model over random callback sequences.

use std::collections::{HashMap, HashSet};

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestRunner};

use super::*;
use crate::command::{
    Action, Code, Command, GameId, Money, PlayerRef, Policy, ProviderId, ProviderTxId, RoundId,
};
use crate::money::Currency;

const PROVIDER: ProviderId = ProviderId(1);
const OPENING: i64 = 1_000;

fn eur() -> Currency {
    Currency::from_code("EUR").unwrap()
}

fn world(players: usize) -> World {
    let mut world = World::default();
    for i in 0..players {
        world.players.insert(
            PlayerRef::new(format!("p{i}")).unwrap(),
            Player {
                id: i as i64 + 1,
                blocked: false,
                wallets: vec![Wallet {
                    currency: eur(),
                    balance_minor: OPENING,
                    bonus_minor: 0,
                    needs_reconciliation: false,
                    changed: false,
                }],
                limits: Vec::new(),
            },
        );
    }
    world.ids = (1..=100_000).rev().collect();
    world
}

fn money(tx: &str, amount: i64, round: &str) -> Money {
    Money {
        tx: ProviderTxId::new(tx).unwrap(),
        currency: eur(),
        amount_minor: amount,
        round: RoundId::new(round).unwrap(),
        game: GameId::new("g").unwrap(),
        round_closed: false,
    }
}

fn command(player: &str, action: Action) -> Command {
    Command {
        provider: PROVIDER,
        policy: Policy::default(),
        player: PlayerRef::new(player).unwrap(),
        action,
    }
}

fn bet(player: &str, tx: &str, amount: i64, round: &str) -> Command {
    command(
        player,
        Action::Bet {
            money: money(tx, amount, round),
            session: None,
        },
    )
}

fn win(player: &str, tx: &str, amount: i64, round: &str, bet_tx: Option<&str>) -> Command {
    command(
        player,
        Action::Win {
            money: money(tx, amount, round),
            bet_tx: bet_tx.map(|b| ProviderTxId::new(b).unwrap()),
        },
    )
}

fn rollback(player: &str, tx: &str, reference: &str) -> Command {
    command(
        player,
        Action::Rollback {
            tx: ProviderTxId::new(tx).unwrap(),
            reference: ProviderTxId::new(reference).unwrap(),
            round: None,
            game: None,
        },
    )
}

fn end_round(player: &str, round: &str) -> Command {
    command(
        player,
        Action::EndRound {
            round: RoundId::new(round).unwrap(),
            game: None,
        },
    )
}

/// Applies `commands` one batch at a time; checks each answer's code and balance.
fn check(commands: &[Command], expect: &[(Code, i64)]) {
    let mut w = world(2);
    let answers = apply(&mut w, commands);
    let got: Vec<(Code, i64)> = answers.iter().map(|a| (a.code, a.balance_minor)).collect();
    assert_eq!(got, expect);
    assert_ledger_matches(&w);
}

/// Every wallet equals its opening balance plus the deltas of its rows.
fn assert_ledger_matches(w: &World) {
    for player in w.players.values() {
        let moved: i64 = w
            .txs
            .values()
            .filter(|t| t.player_id == player.id)
            .map(|t| t.real_delta + t.bonus_delta)
            .sum();
        assert_eq!(
            player.wallets[0].balance_minor,
            OPENING + moved,
            "player {}",
            player.id
        );
    }
}

#[test]
fn tiny_cases() {
    use Code::*;
    check(&[bet("p0", "b", 100, "r")], &[(Ok, 900)]);
    check(&[bet("p0", "b", 1001, "r")], &[(InsufficientFunds, 1000)]);
    check(
        &[bet("p0", "b", 100, "r"), bet("p0", "b", 100, "r")],
        &[(Ok, 900), (Ok, 900)],
    );
    check(
        &[bet("p0", "b", 100, "r"), bet("p0", "b", 99, "r")],
        &[(Ok, 900), (DuplicateMismatch, 900)],
    );
    check(&[bet("ghost", "b", 1, "r")], &[(UnknownPlayer, 0)]);
    check(
        &[rollback("p0", "x", "b"), bet("p0", "b", 100, "r")],
        &[(Ok, 1000), (TransactionRolledBack, 1000)],
    );
    check(
        &[bet("p0", "b", 100, "r"), rollback("p0", "x", "b")],
        &[(Ok, 900), (Ok, 1000)],
    );
    check(
        &[
            bet("p0", "b", 100, "r"),
            rollback("p0", "x", "b"),
            rollback("p0", "y", "b"),
        ],
        &[(Ok, 900), (Ok, 1000), (Ok, 1000)],
    );
    check(
        &[
            bet("p0", "b", 100, "r"),
            win("p0", "w", 50, "r", None),
            rollback("p0", "x", "b"),
        ],
        &[(Ok, 900), (Ok, 950), (RollbackNotPermitted, 950)],
    );
    check(
        &[
            bet("p0", "b", 100, "r"),
            rollback("p0", "x", "b"),
            win("p0", "w", 50, "r", Some("b")),
        ],
        &[(Ok, 900), (Ok, 1000), (TransactionRolledBack, 1000)],
    );
    check(
        &[
            bet("p0", "b", 100, "r"),
            end_round("p0", "r"),
            bet("p0", "c", 1, "r"),
        ],
        &[(Ok, 900), (Ok, 900), (RoundClosed, 900)],
    );
    check(&[win("p0", "w", 5, "jackpot", None)], &[(Ok, 1005)]);
    check(
        &[bet("p0", "b", 100, "r"), rollback("p1", "x", "b")],
        &[(Ok, 900), (TransactionNotFound, 1000)],
    );
    check(
        &[win("p0", "w", 5, "r", None), rollback("p0", "x", "w")],
        &[(Ok, 1005), (RollbackNotPermitted, 1005)],
    );
}

#[test]
fn bets_spend_real_money_first_unless_bonus_first() {
    let mut w = world(1);
    w.players.values_mut().next().unwrap().wallets[0].bonus_minor = 300;
    let a = apply(&mut w, &[bet("p0", "b", 1_100, "r")]);
    assert_eq!(a[0].code, Code::Ok);
    assert_eq!((a[0].balance_minor, a[0].bonus_minor), (0, 200));
    // The rollback gives each kind of money back where it came from.
    let a = apply(&mut w, &[rollback("p0", "x", "b")]);
    assert_eq!((a[0].balance_minor, a[0].bonus_minor), (1_000, 300));

    let mut bonus_first = bet("p0", "c", 400, "r");
    bonus_first.policy.bonus_first = true;
    let a = apply(&mut w, &[bonus_first]);
    assert_eq!((a[0].balance_minor, a[0].bonus_minor), (900, 0));
    let a = apply(&mut w, &[bet("p0", "d", 901, "r")]);
    assert_eq!(a[0].code, Code::InsufficientFunds);
}

#[test]
fn money_is_conserved_or_apply_panics() {
    // A world whose reserved ids ran out must not answer: the invariant stops the batch.
    let mut w = world(1);
    w.ids.clear();
    let result = std::panic::catch_unwind(move || apply(&mut w, &[bet("p0", "b", 1, "r")]));
    assert!(result.is_err());
}

// ---- The reference model -------------------------------------------------------------------

/// One random callback: indices into small pools so ids, rounds and players collide often.
#[derive(Debug, Clone)]
enum Op {
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

fn op() -> impl Strategy<Value = Op> {
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

fn to_command(op: &Op) -> Command {
    let p = |i: u8| format!("p{i}");
    let t = |i: u8| format!("t{i}");
    let r = |i: u8| format!("r{i}");
    match op {
        Op::Bet {
            player,
            tx,
            amount,
            round,
        } => bet(&p(*player), &t(*tx), *amount, &r(*round)),
        Op::Win {
            player,
            tx,
            amount,
            round,
            bet,
        } => win(
            &p(*player),
            &t(*tx),
            *amount,
            &r(*round),
            bet.map(t).as_deref(),
        ),
        Op::Rollback {
            player,
            tx,
            reference,
        } => rollback(&p(*player), &t(*tx), &t(*reference)),
        Op::EndRound { player, round } => end_round(&p(*player), &r(*round)),
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
    amount: i64,
    round: u8,
    payload: String,
    code: Code,
    balance_after: i64,
    state: MState,
}

/// The §4 rules written plainly, one callback at a time, with none of `apply`'s structures.
#[derive(Default)]
struct Model {
    balance: HashMap<u8, i64>,
    txs: HashMap<u8, MTx>,
    tombstones: HashSet<u8>,
    closed: HashSet<(u8, u8)>,
    rounds_seen: HashSet<(u8, u8)>,
}

impl Model {
    fn new() -> Model {
        Model {
            balance: (0..3).map(|p| (p, OPENING)).collect(),
            ..Model::default()
        }
    }

    /// (code, balance, duplicate)
    fn step(&mut self, op: &Op) -> (Code, i64, bool) {
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
                self.record(tx, player, true, amount, round, payload, code, delta, state)
            }
            Op::Win {
                amount,
                round,
                tx,
                bet,
                ..
            } => {
                if let Some(b) = bet {
                    let rolled_back = match self.txs.get(&b) {
                        Some(t) if t.player == player && t.is_bet => {
                            t.state == MState::RolledBack || t.code == Code::TransactionRolledBack
                        }
                        _ => self.tombstones.contains(&b),
                    };
                    if rolled_back {
                        return self.record(
                            tx,
                            player,
                            false,
                            amount,
                            round,
                            payload,
                            Code::TransactionRolledBack,
                            0,
                            MState::Done,
                        );
                    }
                    if let Some(t) = self.txs.get_mut(&b) {
                        if t.player == player && t.is_bet && t.state == MState::Open {
                            t.state = MState::Settled;
                        }
                    }
                } else {
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
                self.record(
                    tx,
                    player,
                    false,
                    amount,
                    round,
                    payload,
                    Code::Ok,
                    amount,
                    MState::Done,
                )
            }
            Op::Rollback { tx, reference, .. } => {
                let target = self.txs.get(&reference).cloned();
                let (code, delta) = match target {
                    None => {
                        self.tombstones.insert(reference);
                        (Code::Ok, 0)
                    }
                    Some(t) if t.player != player => (Code::TransactionNotFound, 0),
                    Some(t) if t.is_bet && t.code != Code::Ok => (Code::Ok, 0),
                    Some(t) if t.is_bet && t.state == MState::RolledBack => (Code::Ok, 0),
                    Some(t) if t.is_bet && t.state == MState::Settled => {
                        (Code::RollbackNotPermitted, 0)
                    }
                    Some(t) if t.is_bet => {
                        self.txs.get_mut(&reference).unwrap().state = MState::RolledBack;
                        (Code::Ok, t.amount)
                    }
                    Some(_) => (Code::RollbackNotPermitted, 0),
                };
                self.record(tx, player, false, 0, 0, payload, code, delta, MState::Done)
            }
            Op::EndRound { round, .. } => {
                self.closed.insert((player, round));
                (Code::Ok, balance, false)
            }
            Op::Repeat(_) => unreachable!(),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &mut self,
        tx: u8,
        player: u8,
        is_bet: bool,
        amount: i64,
        round: u8,
        payload: String,
        code: Code,
        delta: i64,
        state: MState,
    ) -> (Code, i64, bool) {
        let balance = self.balance.get_mut(&player).unwrap();
        *balance += delta;
        let balance_after = *balance;
        self.txs.insert(
            tx,
            MTx {
                player,
                is_bet,
                amount,
                round,
                payload,
                code,
                balance_after,
                state,
            },
        );
        (code, balance_after, false)
    }
}

/// Resolves `Repeat(i)` to the i-th earlier concrete op (or drops it when there is none).
fn resolve(ops: &[Op]) -> Vec<Op> {
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

fn seed() -> u64 {
    let seed = std::env::var("APPLY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    println!("apply model seed: {seed} (replay with APPLY_SEED={seed})");
    seed
}

#[test]
fn apply_agrees_with_the_reference_model() {
    let seed = seed();
    let config = Config {
        cases: 400,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let strategy = (
        proptest::collection::vec(op(), 1..80),
        proptest::collection::vec(1usize..12, 1..8),
    );
    let result = runner.run(&strategy, |(ops, cuts)| {
        let ops = resolve(&ops);
        let commands: Vec<Command> = ops.iter().map(to_command).collect();
        let mut model = Model::new();
        let expected: Vec<(Code, i64, bool)> = ops.iter().map(|op| model.step(op)).collect();

        // The same commands in batches of random sizes: batch boundaries must not matter.
        let mut w = world(3);
        let mut answers = Vec::new();
        let mut rest = &commands[..];
        let mut cut = cuts.iter().cycle();
        while !rest.is_empty() {
            let n = (*cut.next().unwrap()).min(rest.len());
            answers.extend(apply(&mut w, &rest[..n]));
            rest = &rest[n..];
        }
        for (i, (answer, want)) in answers.iter().zip(&expected).enumerate() {
            let got = (answer.code, answer.balance_minor, answer.duplicate);
            prop_assert_eq!(got, *want, "command {} {:?}", i, ops[i]);
        }
        for p in 0..3u8 {
            let player = &w.players[&PlayerRef::new(format!("p{p}")).unwrap()];
            prop_assert_eq!(player.wallets[0].balance_minor, model.balance[&p]);
        }
        assert_ledger_matches(&w);
        Ok(())
    });
    if let Err(e) = result {
        panic!("seed {seed}: {e}");
    }
}
