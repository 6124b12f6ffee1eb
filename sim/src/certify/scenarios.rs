//! The certification scenarios: what a provider's certification checks against an operator's
//! wallet, each judged by the answers and by the balance the provider can observe through its
//! balance call. Every scenario leaves the player's balance where it found it (bets are won
//! back or rolled back), so a passing run changes no one's money.
//!
//! Where the providers' documents allow more than one answer, every documented one is taken:
//! an Evolution-style wallet may answer a repeated debit `BET_ALREADY_EXIST` instead of the
//! original answer, a SoftSwiss-style one may acknowledge a bet that its rollback came before
//! with no money moved. Money is never a matter of choice.

use dialects::wire::Response;

use super::session::{money, show, Session};
use crate::client::{Attempt, Send};
use crate::dialect::{Kind, OpKind};
use crate::model::Op;

/// A scenario of the kit.
#[derive(Debug)]
pub struct Scenario {
    pub id: Id,
    pub name: &'static str,
    /// Mandatory scenarios decide the exit code; advisory ones are reported only.
    pub mandatory: bool,
    /// What it checks, for the report and `--list`.
    pub checks: &'static str,
    pub applies: fn(Kind) -> bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Id {
    BetThenWin,
    DuplicateBet,
    DuplicateWin,
    DuplicateRollback,
    DuplicateMismatch,
    RollbackBeforeBet,
    WinAfterRollback,
    BetOverBalance,
    UnknownPlayer,
    BadSignature,
    StaleTimestamp,
    ConcurrentBets,
    BetRollbackRace,
    MultiAction,
    CurrencyMismatch,
    AmountPrecision,
    SubMinorAmount,
    Malformed,
    EndRoundTwice,
}

impl Scenario {
    /// `mandatory` or `advisory`, as the scenario is.
    pub fn label(&self, mandatory: &'static str, advisory: &'static str) -> &'static str {
        if self.mandatory {
            mandatory
        } else {
            advisory
        }
    }
}

fn every(_: Kind) -> bool {
    true
}

fn wins_name_bets(kind: Kind) -> bool {
    matches!(kind, Kind::Native | Kind::Evolution | Kind::Hub88)
}

fn names_currency(kind: Kind) -> bool {
    kind != Kind::Pragmatic
}

fn signs_time(kind: Kind) -> bool {
    kind == Kind::Native
}

fn batches_actions(kind: Kind) -> bool {
    kind == Kind::SoftSwiss
}

fn ends_rounds(kind: Kind) -> bool {
    matches!(kind, Kind::Native | Kind::Pragmatic | Kind::SoftSwiss)
}

/// Every scenario, in the order they run.
pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        id: Id::BetThenWin,
        name: "bet-then-win-settles",
        mandatory: true,
        checks:
            "a bet debits and a win credits exactly their amounts, in the answers and the balance",
        applies: every,
    },
    Scenario {
        id: Id::DuplicateBet,
        name: "duplicate-bet-same-answer",
        mandatory: true,
        checks: "a bet sent again gets the first answer back and debits once",
        applies: every,
    },
    Scenario {
        id: Id::DuplicateWin,
        name: "duplicate-win-same-answer",
        mandatory: true,
        checks: "a win sent again gets the first answer back and credits once",
        applies: every,
    },
    Scenario {
        id: Id::DuplicateRollback,
        name: "duplicate-rollback-idempotent",
        mandatory: true,
        checks: "a rollback sent again is answered and credits the bet back once",
        applies: every,
    },
    Scenario {
        id: Id::DuplicateMismatch,
        name: "duplicate-id-other-amount-refused",
        mandatory: true,
        checks: "a transaction id reused with another amount moves no money",
        applies: every,
    },
    Scenario {
        id: Id::RollbackBeforeBet,
        name: "rollback-before-bet-tombstone",
        mandatory: true,
        checks: "a rollback of a bet not yet seen is final, and the late bet then debits nothing",
        applies: every,
    },
    Scenario {
        id: Id::WinAfterRollback,
        name: "win-after-rollback-refused",
        mandatory: true,
        checks: "a win naming a rolled-back bet is refused and credits nothing",
        applies: wins_name_bets,
    },
    Scenario {
        id: Id::BetOverBalance,
        name: "bet-over-balance",
        mandatory: true,
        checks:
            "a bet above the balance is refused as insufficient funds, with the balance unchanged",
        applies: every,
    },
    Scenario {
        id: Id::UnknownPlayer,
        name: "unknown-player",
        mandatory: true,
        checks: "a bet for a player the wallet does not know is refused with the dialect's code",
        applies: every,
    },
    Scenario {
        id: Id::BadSignature,
        name: "bad-signature",
        mandatory: true,
        checks: "a wrongly signed bet is refused, moves no money and leaves no trace",
        applies: every,
    },
    Scenario {
        id: Id::StaleTimestamp,
        name: "stale-timestamp",
        mandatory: true,
        checks: "a bet signed an hour ago is refused and moves no money",
        applies: signs_time,
    },
    Scenario {
        id: Id::ConcurrentBets,
        name: "concurrent-identical-bets-debit-once",
        mandatory: true,
        checks: "eight copies of one bet sent at once debit it once, every answer alike",
        applies: every,
    },
    Scenario {
        id: Id::BetRollbackRace,
        name: "bet-rollback-race-net-zero",
        mandatory: true,
        checks: "a bet and its rollback racing each other leave the balance unchanged",
        applies: every,
    },
    Scenario {
        id: Id::MultiAction,
        name: "multi-action-atomic",
        mandatory: true,
        checks: "a call with several actions applies all of them or, when one fails, none",
        applies: batches_actions,
    },
    Scenario {
        id: Id::CurrencyMismatch,
        name: "currency-mismatch",
        mandatory: true,
        checks: "a bet in a currency the player's wallet is not in moves no money",
        applies: names_currency,
    },
    Scenario {
        id: Id::AmountPrecision,
        name: "amount-precision",
        mandatory: true,
        checks: "amounts that binary floating point cannot hold (0.07) move exactly that much",
        applies: every,
    },
    Scenario {
        id: Id::SubMinorAmount,
        name: "sub-minor-amount-refused",
        mandatory: false,
        checks: "an amount finer than the currency's minor unit is refused, moving nothing",
        applies: every,
    },
    Scenario {
        id: Id::Malformed,
        name: "malformed-request-refused",
        mandatory: false,
        checks: "a request cut short (or missing its player) is refused and moves no money",
        applies: every,
    },
    Scenario {
        id: Id::EndRoundTwice,
        name: "end-round-idempotent",
        mandatory: false,
        checks: "ending a settled round twice is answered OK both times",
        applies: ends_rounds,
    },
];

fn bet(tx: &str, amount: i64, round: &str) -> Op {
    Op::Bet {
        tx: tx.into(),
        amount,
        round: round.into(),
    }
}

fn win(tx: &str, amount: i64, round: &str, bet: &str) -> Op {
    Op::Win {
        tx: tx.into(),
        amount,
        round: round.into(),
        bet: Some(bet.into()),
        promo: false,
    }
}

fn rollback(tx: &str, reference: &str) -> Op {
    Op::Rollback {
        tx: tx.into(),
        reference: reference.into(),
    }
}

/// Plays `id`; `opening` is the balance before it. Every scenario ends where it started, so
/// the runner also checks the balance after it against `opening`.
pub async fn play(id: Id, s: &mut Session, opening: i64) -> Result<(), String> {
    match id {
        Id::BetThenWin => bet_then_win(s, opening).await,
        Id::DuplicateBet => duplicate_bet(s, opening).await,
        Id::DuplicateWin => duplicate_win(s, opening).await,
        Id::DuplicateRollback => duplicate_rollback(s, opening).await,
        Id::DuplicateMismatch => duplicate_mismatch(s, opening).await,
        Id::RollbackBeforeBet => rollback_before_bet(s, opening).await,
        Id::WinAfterRollback => win_after_rollback(s, opening).await,
        Id::BetOverBalance => bet_over_balance(s, opening).await,
        Id::UnknownPlayer => unknown_player(s).await,
        Id::BadSignature => refused_then_accepted(s, opening, Send::WrongSecret, true).await,
        Id::StaleTimestamp => refused_then_accepted(s, opening, Send::Stale, true).await,
        Id::Malformed => refused_then_accepted(s, opening, Send::Malformed, false).await,
        Id::ConcurrentBets => concurrent_bets(s, opening).await,
        Id::BetRollbackRace => bet_rollback_race(s, opening).await,
        Id::MultiAction => multi_action(s, opening).await,
        Id::CurrencyMismatch => currency_mismatch(s, opening).await,
        Id::AmountPrecision => amount_precision(s, opening).await,
        Id::SubMinorAmount => sub_minor_amount(s, opening).await,
        Id::EndRoundTwice => end_round_twice(s, opening).await,
    }
}

/// The balance an answer carries must be `expected` (answers without one pass).
fn answered_balance(r: &Response, expected: i64, what: &str) -> Result<(), String> {
    match r.balance.as_deref().map(super::session::minor) {
        None => Ok(()),
        Some(Some(b)) if b == expected => Ok(()),
        Some(_) => Err(format!(
            "{what} answered balance {}, expected {}",
            r.balance.as_deref().unwrap_or(""),
            money(expected)
        )),
    }
}

/// A bet of `amount` that must be accepted; returns its id.
async fn placed(s: &mut Session, round: &str, amount: i64, after: i64) -> Result<String, String> {
    let tx = s.id("bet");
    let r = s.ok(&bet(&tx, amount, round)).await?;
    answered_balance(&r, after, "the bet")?;
    Ok(tx)
}

/// Rolls `bet` back and checks the balance is `opening` again.
async fn undo(s: &mut Session, bet: &str, opening: i64) -> Result<(), String> {
    let tx = s.id("rollback");
    s.ok(&rollback(&tx, bet)).await?;
    s.balance_is(opening, "the rollback").await
}

async fn bet_then_win(s: &mut Session, opening: i64) -> Result<(), String> {
    let round = s.id("round");
    let b = placed(s, &round, 100, opening - 100).await?;
    s.balance_is(opening - 100, "a bet of 1.00").await?;
    let w = s.id("win");
    let r = s.ok(&win(&w, 100, &round, &b)).await?;
    answered_balance(&r, opening, "the win")?;
    s.balance_is(opening, "a win of 1.00").await?;
    if s.provider().ends_rounds() {
        s.ok(&Op::EndRound { round }).await?;
    }
    Ok(())
}

/// `again` is the first answer repeated (or, for an Evolution-style wallet, one of the
/// documented answers to a repeated call in `evolution`).
fn same_answer(
    kind: Kind,
    first: &Response,
    again: &Attempt,
    evolution: &[&str],
) -> Result<(), String> {
    match again {
        Attempt::Final(r) if kind == Kind::Evolution && evolution.contains(&r.status.as_str()) => {
            Ok(())
        }
        Attempt::Final(r)
            if r.status == first.status
                && r.balance == first.balance
                && (r.operator_transaction_id.is_none()
                    || first.operator_transaction_id.is_none()
                    || r.operator_transaction_id == first.operator_transaction_id) =>
        {
            Ok(())
        }
        other => Err(format!(
            "the repeated call got {}, the first {}",
            show(other),
            show(&Attempt::Final(first.clone()))
        )),
    }
}

async fn duplicate_bet(s: &mut Session, opening: i64) -> Result<(), String> {
    let (round, tx) = (s.id("round"), s.id("bet"));
    let e = s.encode(&bet(&tx, 100, &round));
    let first = s.until_final(&e).await?;
    let first = s.require_ok(OpKind::Bet, &first, "the bet")?.clone();
    let again = s.until_final(&e).await?;
    same_answer(s.kind(), &first, &again, &["BET_ALREADY_EXIST"])?;
    s.balance_is(opening - 100, "a bet of 1.00 sent twice")
        .await?;
    undo(s, &tx, opening).await
}

async fn duplicate_win(s: &mut Session, opening: i64) -> Result<(), String> {
    let round = s.id("round");
    let b = placed(s, &round, 100, opening - 100).await?;
    let w = s.id("win");
    let e = s.encode(&win(&w, 100, &round, &b));
    let first = s.until_final(&e).await?;
    let first = s.require_ok(OpKind::Win, &first, "the win")?.clone();
    let again = s.until_final(&e).await?;
    same_answer(s.kind(), &first, &again, &["OK"])?;
    s.balance_is(opening, "a bet of 1.00 and its win of 1.00 sent twice")
        .await
}

async fn duplicate_rollback(s: &mut Session, opening: i64) -> Result<(), String> {
    let round = s.id("round");
    let b = placed(s, &round, 100, opening - 100).await?;
    let rb = s.id("rollback");
    let e = s.encode(&rollback(&rb, &b));
    let first = s.until_final(&e).await?;
    let first = s
        .require_ok(OpKind::Rollback, &first, "the rollback")?
        .clone();
    let again = s.until_final(&e).await?;
    same_answer(s.kind(), &first, &again, &["OK", "BET_ALREADY_SETTLED"])?;
    s.balance_is(opening, "a bet and its rollback sent twice")
        .await
}

async fn duplicate_mismatch(s: &mut Session, opening: i64) -> Result<(), String> {
    let round = s.id("round");
    let b = placed(s, &round, 100, opening - 100).await?;
    let first = s.encode(&bet(&b, 100, &round));
    let first = s.until_final(&first).await?;
    let first = s
        .require_ok(OpKind::Bet, &first, "the bet repeated")?
        .clone();
    let other = s.call(&bet(&b, 200, &round)).await?;
    let ok = s.provider().expect(OpKind::Bet, "OK");
    if let Attempt::Final(r) = &other {
        if r.status == ok && same_answer(s.kind(), &first, &other, &[]).is_err() {
            return Err(format!(
                "the id reused with 2.00 was accepted as a new bet: {}",
                show(&other)
            ));
        }
    }
    s.balance_is(opening - 100, "a bet's id reused with another amount")
        .await?;
    undo(s, &b, opening).await
}

/// A final answer that takes no money: a refusal, or (`ok_allowed`) an OK that moved none.
fn not_taken(answer: &Attempt, ok: &str, ok_allowed: bool, what: &str) -> Result<(), String> {
    match answer {
        Attempt::Final(r) if r.status == ok && !ok_allowed => {
            Err(format!("{what} was accepted: {}", show(answer)))
        }
        Attempt::Final(_) | Attempt::Refused(..) => Ok(()),
        Attempt::Unknown(why) => Err(format!("{what}: no final answer ({why})")),
    }
}

async fn rollback_before_bet(s: &mut Session, opening: i64) -> Result<(), String> {
    let (round, rb, late) = (s.id("round"), s.id("rollback"), s.id("bet"));
    let first = s.call(&rollback(&rb, &late)).await?;
    let allowed = [
        s.provider().expect(OpKind::Rollback, "OK"),
        s.provider()
            .expect(OpKind::Rollback, "TRANSACTION_NOT_FOUND"),
    ];
    match &first {
        Attempt::Final(r) if allowed.contains(&r.status) => {}
        other => {
            return Err(format!(
                "a rollback of an unseen bet got {}, expected one of {allowed:?}",
                show(other)
            ))
        }
    }
    s.balance_is(opening, "a rollback of an unseen bet").await?;
    let answer = s.call(&bet(&late, 100, &round)).await?;
    // SoftSwiss-style wallets may acknowledge the late bet without taking it.
    let ok = s.provider().expect(OpKind::Bet, "OK");
    not_taken(&answer, &ok, s.kind() == Kind::SoftSwiss, "the late bet")?;
    s.balance_is(opening, "the bet arriving after its rollback")
        .await
}

async fn win_after_rollback(s: &mut Session, opening: i64) -> Result<(), String> {
    let round = s.id("round");
    let b = placed(s, &round, 100, opening - 100).await?;
    undo(s, &b, opening).await?;
    let w = s.id("win");
    let answer = s.call(&win(&w, 300, &round, &b)).await?;
    let ok = s.provider().expect(OpKind::Win, "OK");
    not_taken(
        &answer,
        &ok,
        false,
        "a win of 3.00 naming the rolled-back bet",
    )?;
    s.balance_is(opening, "a win naming a rolled-back bet")
        .await
}

async fn bet_over_balance(s: &mut Session, opening: i64) -> Result<(), String> {
    let (round, tx) = (s.id("round"), s.id("bet"));
    let answer = s.call(&bet(&tx, opening + 100, &round)).await?;
    let expected = s.provider().expect(OpKind::Bet, "INSUFFICIENT_FUNDS");
    match &answer {
        Attempt::Final(r) if r.status == expected => {
            answered_balance(r, opening, "the refusal")?;
        }
        other => {
            return Err(format!(
                "a bet of {} against {} got {}, expected {expected}",
                money(opening + 100),
                money(opening),
                show(other)
            ))
        }
    }
    s.balance_is(opening, "a bet over the balance").await
}

async fn unknown_player(s: &mut Session) -> Result<(), String> {
    let (round, tx) = (s.id("round"), s.id("bet"));
    let nobody = s.id("nobody");
    let e = s.provider().encode(&nobody, &bet(&tx, 100, &round));
    let answer = s.until_final(&e).await?;
    let documented: &[&str] = match s.kind() {
        Kind::Native => &["UNKNOWN_PLAYER"],
        Kind::Pragmatic => &["2"],
        Kind::Evolution => &["INVALID_SID", "INVALID_PARAMETER"],
        Kind::Hub88 => &[
            "RS_ERROR_INVALID_TOKEN",
            "RS_ERROR_INVALID_PARTNER",
            "RS_ERROR_UNKNOWN",
        ],
        Kind::SoftSwiss => &["101"],
    };
    match &answer {
        Attempt::Final(r) if documented.contains(&r.status.as_str()) => Ok(()),
        Attempt::Refused(_, what) if documented.contains(&what.as_str()) => Ok(()),
        other => Err(format!(
            "a bet for an unknown player got {}, expected one of {documented:?}",
            show(other)
        )),
    }
}

/// `send` (a broken attempt) must be refused, move nothing and leave no trace: the same bet
/// signed properly afterwards is taken (then rolled back). `must_refuse`: only a refusal will
/// do; otherwise any final answer that takes no money.
async fn refused_then_accepted(
    s: &mut Session,
    opening: i64,
    send: Send,
    must_refuse: bool,
) -> Result<(), String> {
    let (round, tx) = (s.id("round"), s.id("bet"));
    let e = s.encode(&bet(&tx, 100, &round));
    let mut answer = s.once(&e, send).await;
    let started = std::time::Instant::now();
    while matches!(answer, Attempt::Unknown(_)) && started.elapsed().as_secs() < 10 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        answer = s.once(&e, send).await;
    }
    let ok = s.provider().expect(OpKind::Bet, "OK");
    match &answer {
        Attempt::Refused(..) => {}
        Attempt::Final(r) if !must_refuse && r.status != ok => {}
        other => {
            return Err(format!(
                "the broken bet got {}, expected a refusal",
                show(other)
            ))
        }
    }
    s.balance_is(opening, "a broken bet").await?;
    s.ok(&bet(&tx, 100, &round)).await.map_err(|e| {
        format!("the same bet signed properly afterwards: {e} (did the broken one leave a trace?)")
    })?;
    s.balance_is(opening - 100, "the bet signed properly")
        .await?;
    undo(s, &tx, opening).await
}

async fn concurrent_bets(s: &mut Session, opening: i64) -> Result<(), String> {
    let (round, tx) = (s.id("round"), s.id("bet"));
    let e = s.encode(&bet(&tx, 100, &round));
    let answers = s.at_once(&vec![e; 8]).await;
    let ok = s.provider().expect(OpKind::Bet, "OK");
    let mut oks = 0;
    for answer in answers {
        match answer? {
            Attempt::Final(r) if r.status == ok => {
                answered_balance(&r, opening - 100, "a copy of the bet")?;
                oks += 1;
            }
            Attempt::Final(r) if s.kind() == Kind::Evolution && r.status == "BET_ALREADY_EXIST" => {
            }
            other => return Err(format!("a copy of the bet got {}", show(&other))),
        }
    }
    if oks == 0 {
        return Err("no copy of the bet was accepted".into());
    }
    s.balance_is(opening - 100, "eight copies of a bet of 1.00 at once")
        .await?;
    undo(s, &tx, opening).await
}

async fn bet_rollback_race(s: &mut Session, opening: i64) -> Result<(), String> {
    let (round, tx, rb) = (s.id("round"), s.id("bet"), s.id("rollback"));
    let b = s.encode(&bet(&tx, 100, &round));
    let r = s.encode(&rollback(&rb, &tx));
    let answers = s
        .at_once(&[b.clone(), r.clone(), b.clone(), r.clone(), b, r])
        .await;
    let mut bets: Vec<Attempt> = Vec::new();
    for (n, answer) in answers.into_iter().enumerate() {
        let answer = answer?;
        if n % 2 == 0 {
            bets.push(answer);
        }
    }
    // Status and balance alike (a repeat may be marked a duplicate).
    let seen: Vec<String> = bets.iter().map(show).collect();
    if s.kind() != Kind::Evolution && seen.windows(2).any(|w| w[0] != w[1]) {
        return Err(format!("copies of one bet got different answers: {seen:?}"));
    }
    s.balance_is(opening, "a bet racing its rollback").await
}

async fn multi_action(s: &mut Session, opening: i64) -> Result<(), String> {
    let round = s.id("round");
    let (b, w) = (s.id("bet"), s.id("win"));
    let play = |s: &Session, actions: serde_json::Value| crate::dialect::Encoded {
        path: "play".into(),
        body: serde_json::to_vec(&serde_json::json!({"user_id": s.player,
            "currency": s.provider().currency, "game": "sim-slot", "game_id": round,
            "finished": false, "actions": actions}))
        .unwrap_or_default(),
        tx: None,
        op: OpKind::Bet,
    };
    let both = play(
        s,
        serde_json::json!([{"action": "bet", "action_id": b, "amount": 100},
            {"action": "win", "action_id": w, "amount": 250}]),
    );
    let answer = s.until_final(&both).await?;
    let r = s.require_ok(
        OpKind::Bet,
        &answer,
        "a bet of 1.00 and a win of 2.50 in one call",
    )?;
    answered_balance(r, opening + 150, "the call")?;
    s.balance_is(opening + 150, "a bet of 1.00 and a win of 2.50 in one call")
        .await?;
    let (fits, too_much) = (s.id("bet"), s.id("bet"));
    let failing = play(
        s,
        serde_json::json!([{"action": "bet", "action_id": fits, "amount": 100},
            {"action": "bet", "action_id": too_much, "amount": opening + 1_000}]),
    );
    let answer = s.until_final(&failing).await?;
    let ok = s.provider().expect(OpKind::Bet, "OK");
    not_taken(
        &answer,
        &ok,
        false,
        "a call whose second bet is over the balance",
    )?;
    s.balance_is(
        opening + 150,
        "a call whose second bet could not be paid (the first must not stay)",
    )
    .await?;
    // Give the 1.50 back: a bet of 1.50 in the same round, then close it.
    let back = s.id("bet");
    s.ok(&bet(&back, 150, &round)).await?;
    s.ok(&Op::EndRound { round }).await?;
    s.balance_is(opening, "a bet of 1.50 that returns the win")
        .await
}

async fn currency_mismatch(s: &mut Session, opening: i64) -> Result<(), String> {
    let other = if s.provider().currency == "USD" {
        "EUR"
    } else {
        "USD"
    };
    let (round, tx) = (s.id("round"), s.id("bet"));
    let e = s
        .provider()
        .clone()
        .in_currency(other)
        .encode(&s.player, &bet(&tx, 100, &round));
    let answer = s.until_final(&e).await?;
    let ok = s.provider().expect(OpKind::Bet, "OK");
    not_taken(&answer, &ok, false, &format!("a bet of 1.00 in {other}"))?;
    s.balance_is(opening, &format!("a bet in {other}")).await
}

async fn amount_precision(s: &mut Session, opening: i64) -> Result<(), String> {
    let round = s.id("round");
    let b = placed(s, &round, 7, opening - 7).await?;
    s.balance_is(opening - 7, "a bet of 0.07").await?;
    let w = s.id("win");
    let r = s.ok(&win(&w, 7, &round, &b)).await?;
    answered_balance(&r, opening, "a win of 0.07")?;
    s.balance_is(opening, "a win of 0.07").await
}

/// The amount token of a bet of 0.07 in each dialect, and the same with a third decimal.
fn finer(kind: Kind) -> (&'static str, &'static str) {
    match kind {
        Kind::Native => (r#""amount":"0.07""#, r#""amount":"0.075""#),
        Kind::Pragmatic => ("amount=0.07", "amount=0.075"),
        Kind::Evolution => (r#""amount":0.07"#, r#""amount":0.075"#),
        Kind::Hub88 => (r#""amount":7000"#, r#""amount":7500"#),
        Kind::SoftSwiss => (r#""amount":7"#, r#""amount":7.5"#),
    }
}

async fn sub_minor_amount(s: &mut Session, opening: i64) -> Result<(), String> {
    let (round, tx) = (s.id("round"), s.id("bet"));
    let mut e = s.encode(&bet(&tx, 7, &round));
    let (from, to) = finer(s.kind());
    let text = String::from_utf8_lossy(&e.body).into_owned();
    if !text.contains(from) {
        return Err(format!("the kit could not find {from} in {text}"));
    }
    e.body = text.replacen(from, to, 1).into_bytes();
    let answer = s.until_final(&e).await?;
    let ok = s.provider().expect(OpKind::Bet, "OK");
    not_taken(&answer, &ok, false, "a bet of 0.075")?;
    s.balance_is(opening, "a bet of 0.075").await
}

async fn end_round_twice(s: &mut Session, opening: i64) -> Result<(), String> {
    let round = s.id("round");
    let b = placed(s, &round, 100, opening - 100).await?;
    let w = s.id("win");
    s.ok(&win(&w, 100, &round, &b)).await?;
    let end = Op::EndRound { round };
    s.ok(&end).await?;
    s.ok(&end)
        .await
        .map_err(|e| format!("the second end of round: {e}"))?;
    s.balance_is(opening, "a round ended twice").await
}
