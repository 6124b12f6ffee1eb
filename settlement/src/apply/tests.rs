//! The state machine without a database: tiny cases through one `check`, and a property test
//! of `apply` against an independent reference model over random callback sequences.

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestRunner};

use super::*;
use crate::command::{
    Action, Code, Command, GameId, Money, PlayerRef, Policy, ProviderId, ProviderTxId, RoundId,
};
use crate::money::Currency;
use crate::test_util::model::{op, resolve, seed, to_command, Model};

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
    Command::new(
        PROVIDER,
        Policy::default(),
        PlayerRef::new(player).unwrap(),
        action,
    )
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

/// Issue 33 (9): a bet pruned with its day (its key kept, its row gone) is settled or reversed
/// and no longer known: a win naming it is refused for good, not paid as a win without its bet
/// nor asked to wait for a bet that cannot come.
#[test]
fn a_win_naming_a_pruned_bet_is_refused_for_good() {
    for policy in [Policy::default(), Policy::strict()] {
        let mut w = world(1);
        w.pruned
            .insert((PROVIDER, ProviderTxId::new("old-bet").unwrap()));
        let mut late = win("p0", "late-win", 500, "r", Some("old-bet"));
        late.policy = policy;
        let answers = apply(&mut w, &[late]);
        assert_eq!(answers[0].code, Code::TransactionNotFound, "{policy:?}");
        assert_eq!(answers[0].balance_minor, OPENING);
        assert_ledger_matches(&w);
    }
}

/// Issue 33 (12): a win naming no bet settled its round's open bets whatever their currency.
#[test]
fn a_win_naming_no_bet_settles_only_bets_in_its_currency() {
    let usd = Currency::from_code("USD").unwrap();
    let mut w = world(1);
    let p0 = PlayerRef::new("p0").unwrap();
    w.players.get_mut(&p0).unwrap().wallets.push(Wallet {
        currency: usd,
        balance_minor: OPENING,
        bonus_minor: 0,
        needs_reconciliation: false,
        changed: false,
    });
    let in_usd = |c: Command| {
        let action = match c.action {
            Action::Bet { mut money, session } => {
                money.currency = usd;
                Action::Bet { money, session }
            }
            Action::Win { mut money, bet_tx } => {
                money.currency = usd;
                Action::Win { money, bet_tx }
            }
            other => other,
        };
        Command::new(c.provider, c.policy, c.player, action)
    };
    let answers = apply(
        &mut w,
        &[
            in_usd(bet("p0", "b-usd", 100, "r")),
            win("p0", "w-eur", 500, "r", None),
            in_usd(win("p0", "w-usd", 300, "r", None)),
        ],
    );
    let codes: Vec<Code> = answers.iter().map(|a| a.code).collect();
    assert_eq!(codes, [Code::Ok, Code::CurrencyMismatch, Code::Ok]);
    let bet = &w.txs[&(PROVIDER, ProviderTxId::new("b-usd").unwrap())];
    assert_eq!(bet.state, Some(TxState::Settled));
    let wallets = &w.players[&p0].wallets;
    assert_eq!(
        (wallets[0].balance_minor, wallets[1].balance_minor),
        (OPENING, OPENING - 100 + 300)
    );
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
    // A rollback that came first binds a later win of that id too, named bet or not.
    check(
        &[rollback("p0", "x", "tw"), win("p0", "tw", 50, "r", None)],
        &[(Ok, 1000), (TransactionRolledBack, 1000)],
    );
    check(
        &[
            bet("p0", "b", 100, "r"),
            rollback("p0", "x", "tw"),
            win("p0", "tw", 50, "r", Some("b")),
        ],
        &[(Ok, 900), (Ok, 900), (TransactionRolledBack, 900)],
    );
}

#[test]
fn a_unit_applies_whole_or_not_at_all() {
    let mut w = world(2);
    // A bet and its win in one unit, then a lone bet.
    let commands = [
        bet("p0", "u1-b", 300, "r1"),
        win("p0", "u1-w", 500, "r1", Some("u1-b")),
        bet("p1", "lone", 100, "r1"),
    ];
    let answers = apply_units(&mut w, &commands, &[2, 1]);
    let got: Vec<(Code, i64)> = answers.iter().map(|a| (a.code, a.balance_minor)).collect();
    assert_eq!(got, [(Code::Ok, 700), (Code::Ok, 1_200), (Code::Ok, 900)]);
    // A unit whose second bet cannot be paid: nothing of it happens, every action says why.
    let refused = [
        bet("p0", "u2-a", 1_000, "r2"),
        bet("p0", "u2-b", 1_000, "r2"),
    ];
    let answers = apply_units(&mut w, &refused, &[2]);
    for a in &answers {
        assert_eq!(
            (a.code, a.balance_minor, a.operator_tx_id),
            (Code::InsufficientFunds, 1_200, None)
        );
    }
    assert!(!w.txs.keys().any(|(_, tx)| tx.as_str().starts_with("u2")));
    // Its retry is judged afresh (nothing was stored), and the first unit replays.
    let answers = apply_units(&mut w, &commands[..2], &[2]);
    assert!(answers.iter().all(|a| a.duplicate && a.code == Code::Ok));
    assert_ledger_matches(&w);
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

#[test]
fn apply_agrees_with_the_reference_model() {
    let seed = seed("APPLY_SEED", "apply model");
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
        crate::test_util::model::policy(),
    );
    let result = runner.run(&strategy, |(ops, cuts, policy)| {
        let ops = resolve(&ops);
        let commands: Vec<Command> = ops
            .iter()
            .map(|op| to_command(op, PROVIDER, policy))
            .collect();
        let mut model = Model::new(OPENING, policy);
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
