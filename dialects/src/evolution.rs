//! The Evolution-style dialect: `POST .../{check,balance,debit,credit,cancel,promo_payout}`
//! with a static `authToken` query parameter, JSON bodies, answers
//! `{"status", "balance", "bonus", "uuid"}` with balances as JSON numbers.
//!
//! Choices written down here (the public documentation is behind a login):
//! - The token is compared in constant time with the provider's secrets (current, previous);
//!   a missing or wrong token is HTTP 401 `INVALID_TOKEN_ID`, and so are a disabled provider
//!   and a source address off the allowlist. Every other answer is HTTP 200 with its status.
//! - Amounts are JSON numbers in currency units, parsed exactly from the JSON text (never
//!   through a float): more decimals than the currency has, exponents or signs are
//!   `INVALID_PARAMETER`.
//! - `transaction.refId` names one bet: a debit is keyed by it, so a second debit with the same
//!   `refId` and other data is `BET_ALREADY_EXIST` (the same debit again replays its answer).
//!   Its credit is keyed `credit:<refId>` and its cancel `cancel:<refId>`, so one bet is
//!   settled or cancelled once: a repeated credit or cancel replays its answer, one with other
//!   data is `BET_ALREADY_SETTLED`.
//! - The round is `game.id`; the game is `game.details.table.id`, else `game.type`.
//! - `sid` is the game session of debits (checked when the provider's policy asks for
//!   sessions); credits, cancels and promotional payouts never look at it.
//! - A credit or cancel with no debit is `BET_DOES_NOT_EXIST` (the provider's policy should not
//!   allow wins without a bet); the cancel is stored as a tombstone, and a later debit of that
//!   `refId` is `FINAL_ERROR_ACTION_FAILED` with no money moved. `promo_payout` needs no bet.
//! - A concurrent duplicate still in flight is answered `OPERATION_IN_PROCESS` (retry) rather
//!   than waited for.
//! - Codes for states Evolution has no word for: unknown player or session `INVALID_SID`;
//!   blocked player, limits, closed round `FINAL_ERROR_ACTION_FAILED`; a currency the wallet
//!   does not hold `INVALID_PARAMETER`; storage, overload, deadline, a win before its bet
//!   `TEMPORARY_ERROR`.

use http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use settlement::command::{
    Action, Answer, GameId, Money, PlayerRef, ProviderTxId, RoundId, SessionToken,
};
use settlement::money;
use settlement::Code;
use std::borrow::Cow;
use subtle::ConstantTimeEq;

use super::{
    any_secret, id, json_body, wallet_currency, Decoded, Dialect, Inbound, Outcome, Refusal,
};
use crate::response::{json, Body};
use crate::signature;
use crate::Kind as DialectKind;
use crate::Provider;

/// The Evolution-style dialect.
#[derive(Debug, Clone, Copy, Default)]
pub struct Evolution;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvoAction {
    Check,
    Balance,
    Debit,
    Credit,
    Cancel,
    PromoPayout,
}

impl EvoAction {
    pub const ALL: [EvoAction; 6] = [
        EvoAction::Check,
        EvoAction::Balance,
        EvoAction::Debit,
        EvoAction::Credit,
        EvoAction::Cancel,
        EvoAction::PromoPayout,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EvoAction::Check => "check",
            EvoAction::Balance => "balance",
            EvoAction::Debit => "debit",
            EvoAction::Credit => "credit",
            EvoAction::Cancel => "cancel",
            EvoAction::PromoPayout => "promo_payout",
        }
    }
}

/// What an answer echoes: the action (codes depend on it) and the request's `uuid`.
#[derive(Debug, Clone)]
pub struct EvoEcho {
    action: EvoAction,
    uuid: Option<String>,
}

/// A request body (fields the gateway does not use are ignored).
#[derive(Debug, Deserialize)]
struct Request<'a> {
    #[serde(rename = "userId")]
    user_id: String,
    /// The game session: checked on debits when the provider's policy asks for sessions.
    #[serde(default)]
    sid: Option<String>,
    #[serde(default)]
    uuid: Option<String>,
    #[serde(default)]
    currency: Option<String>,
    #[serde(default)]
    game: Option<Game>,
    #[serde(default, borrow)]
    transaction: Option<Transaction<'a>>,
}

#[derive(Debug, Deserialize)]
struct Game {
    #[serde(default)]
    id: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    details: Option<GameDetails>,
}

#[derive(Debug, Deserialize)]
struct GameDetails {
    #[serde(default)]
    table: Option<Table>,
}

#[derive(Debug, Deserialize)]
struct Table {
    #[serde(default)]
    id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Transaction<'a> {
    id: String,
    #[serde(rename = "refId")]
    ref_id: String,
    #[serde(borrow)]
    amount: &'a RawValue,
}

/// The query parameter carrying the token.
pub const TOKEN_PARAM: &str = "authToken";

/// What a trace keeps in place of the token.
const REDACTED_TOKEN: &str = "[redacted]";

fn query_has_token(query: &str) -> bool {
    form_urlencoded::parse(query.as_bytes()).any(|(k, _)| k == TOKEN_PARAM)
}

/// The query with every token parameter's value replaced by `token`, other pairs as given.
fn with_token(query: &str, token: &str) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        out.append_pair(&k, if k == TOKEN_PARAM { token } else { &v });
    }
    out.finish()
}

impl Dialect for Evolution {
    type Action = EvoAction;
    type Echo = EvoEcho;
    const CREDENTIALS: &'static str =
        "shared token (authToken query parameter), compared in constant time";

    fn kind(&self) -> DialectKind {
        DialectKind::Evolution
    }

    fn action(&self, path: &str) -> Option<EvoAction> {
        EvoAction::ALL.into_iter().find(|a| a.as_str() == path)
    }

    fn action_label(&self, action: EvoAction) -> &'static str {
        action.as_str()
    }

    /// The token is the shared secret itself: a trace never keeps it.
    fn redact_target<'a>(&self, target: &'a str) -> Cow<'a, str> {
        match target.split_once('?') {
            Some((path, query)) if query_has_token(query) => {
                Cow::Owned(format!("{path}?{}", with_token(query, REDACTED_TOKEN)))
            }
            _ => Cow::Borrowed(target),
        }
    }

    fn restore_target<'a>(&self, provider: &Provider, target: &'a str) -> Cow<'a, str> {
        let current = provider
            .secrets
            .first()
            .map(|s| String::from_utf8_lossy(s.as_bytes()).into_owned())
            .unwrap_or_default();
        match target.split_once('?') {
            Some((path, query)) if query_has_token(query) => {
                Cow::Owned(format!("{path}?{}", with_token(query, &current)))
            }
            _ => Cow::Borrowed(target),
        }
    }

    /// Concurrent twins are told to come back, not held.
    fn waits_for_twins(&self) -> bool {
        false
    }

    fn verify(&self, provider: &Provider, inbound: &Inbound<'_, EvoAction>) -> Result<(), Refusal> {
        let token = inbound
            .query
            .map(|q| form_urlencoded::parse(q.as_bytes()))
            .and_then(|mut pairs| pairs.find(|(k, _)| k == TOKEN_PARAM))
            .map(|(_, v)| v.into_owned())
            .ok_or(Refusal::Signature(signature::Refusal::Missing))?;
        any_secret(provider, |secret| {
            bool::from(secret.ct_eq(token.as_bytes()))
        })
    }

    fn decode(
        &self,
        provider: &Provider,
        inbound: &Inbound<'_, EvoAction>,
    ) -> Result<Decoded<EvoEcho>, Refusal> {
        let action = *inbound.action;
        let request: Request<'_> = json_body(inbound.body)?;
        let echo = EvoEcho {
            action,
            uuid: request.uuid.clone(),
        };
        let player = id(PlayerRef::new(request.user_id), "userId")?;
        let mut promotion = false;
        let Some(currency) = wallet_currency(request.currency.as_deref(), provider) else {
            return Ok(Decoded::UnsupportedCurrency {
                player: Some(player),
                echo,
            });
        };
        if matches!(action, EvoAction::Check | EvoAction::Balance) {
            let balance = Action::Balance {
                currency: request.currency.as_ref().map(|_| currency),
            };
            return Ok(Decoded::Command(provider.command(player, balance), echo));
        }
        let transaction = request
            .transaction
            .ok_or_else(|| Refusal::malformed("transaction", "missing"))?;
        let game = request
            .game
            .ok_or_else(|| Refusal::malformed("game", "missing"))?;
        let round = id(game.id.clone().and_then(RoundId::new), "game.id")?;
        let game_id = game
            .details
            .and_then(|d| d.table)
            .and_then(|t| t.id)
            .or(game.kind)
            .unwrap_or_else(|| "evolution".into());
        let amount_minor = money::parse_minor(transaction.amount.get(), currency.exponent)
            .map_err(|e| Refusal::malformed("transaction.amount", e.to_string()))?;
        let ref_id = transaction.ref_id;
        let money = |tx: Option<ProviderTxId>| -> Result<Money, Refusal> {
            Ok(Money {
                tx: id(tx, "transaction.refId")?,
                currency,
                amount_minor,
                round: round.clone(),
                game: id(GameId::new(game_id.clone()), "game")?,
                round_closed: false,
            })
        };
        // transaction.id is the provider's id of this one call; refId names the bet.
        let _ = id(ProviderTxId::new(transaction.id), "transaction.id")?;
        let action = match action {
            EvoAction::Debit => Action::Bet {
                money: money(ProviderTxId::new(ref_id))?,
                session: request.sid.and_then(SessionToken::new),
            },
            // Credits, promotional payouts and cancels carry the bet's refId, not an id of
            // their own: theirs is derived from it, whole at any length (`derived`).
            EvoAction::Credit => Action::Win {
                money: money(ProviderTxId::derived("credit:", &ref_id, ""))?,
                bet_tx: Some(id(ProviderTxId::new(ref_id), "transaction.refId")?),
            },
            EvoAction::PromoPayout => {
                promotion = true;
                Action::Win {
                    money: money(ProviderTxId::derived("promo:", &ref_id, ""))?,
                    bet_tx: None,
                }
            }
            EvoAction::Cancel => Action::Rollback {
                tx: id(
                    ProviderTxId::derived("cancel:", &ref_id, ""),
                    "transaction.refId",
                )?,
                reference: id(ProviderTxId::new(ref_id), "transaction.refId")?,
                round: Some(round),
                game: GameId::new(game_id),
            },
            EvoAction::Check | EvoAction::Balance => unreachable!("answered above"),
        };
        let mut command = provider.command(player, action);
        // Promotional payouts have no bet.
        command.policy.wins_without_bet_allowed |= promotion;
        Ok(Decoded::Command(command, echo))
    }

    fn render(&self, outcome: Outcome<'_, EvoEcho>) -> http::Response<Body> {
        match outcome {
            Outcome::Answered(answer, echo) => json(
                StatusCode::OK,
                &reply(
                    status(answer.code, echo.action),
                    Some(answer),
                    echo.uuid.clone(),
                ),
            ),
            Outcome::Refused(refusal, echo) => {
                let uuid = echo.and_then(|e| e.uuid.clone());
                let (http_status, status) = match refusal {
                    Refusal::Signature(_) | Refusal::Disabled | Refusal::ForbiddenSource(_) => {
                        (StatusCode::UNAUTHORIZED, "INVALID_TOKEN_ID")
                    }
                    Refusal::Unavailable(_) | Refusal::BodyTimeout => {
                        (StatusCode::OK, "TEMPORARY_ERROR")
                    }
                    Refusal::InFlight => (StatusCode::OK, "OPERATION_IN_PROCESS"),
                    Refusal::UnknownAction(_)
                    | Refusal::MethodNotAllowed(_)
                    | Refusal::BodyTooLarge
                    | Refusal::BodyUnreadable
                    | Refusal::Malformed { .. } => (StatusCode::OK, "INVALID_PARAMETER"),
                };
                json(http_status, &reply(status, None, uuid))
            }
        }
    }
}

#[derive(Debug, Serialize)]
struct Reply {
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    balance: Option<Box<RawValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bonus: Option<Box<RawValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uuid: Option<String>,
}

fn reply(status: &'static str, answer: Option<&Answer>, uuid: Option<String>) -> Reply {
    let number =
        |minor: i64, exponent: u8| RawValue::from_string(money::format_minor(minor, exponent)).ok();
    let wallet = answer.and_then(|a| a.currency.map(|c| (a, c)));
    Reply {
        status,
        balance: wallet.and_then(|(a, c)| number(a.balance_minor, c.exponent)),
        bonus: wallet.and_then(|(a, c)| number(a.bonus_minor, c.exponent)),
        uuid,
    }
}

fn status(code: Code, action: EvoAction) -> &'static str {
    match (code, action) {
        (Code::Ok, _) => "OK",
        (Code::InsufficientFunds, _) => "INSUFFICIENT_FUNDS",
        (Code::UnknownPlayer | Code::InvalidSession, _) => "INVALID_SID",
        (Code::CurrencyMismatch, _) => "INVALID_PARAMETER",
        (Code::DuplicateMismatch, EvoAction::Debit) => "BET_ALREADY_EXIST",
        (Code::DuplicateMismatch, _) => "BET_ALREADY_SETTLED",
        (Code::TransactionRolledBack, EvoAction::Debit) => "FINAL_ERROR_ACTION_FAILED",
        (Code::TransactionRolledBack | Code::RollbackNotPermitted, _) => "BET_ALREADY_SETTLED",
        (Code::TransactionNotFound, _) => "BET_DOES_NOT_EXIST",
        (Code::BetNotSeen, _) => "TEMPORARY_ERROR",
        (Code::PlayerBlocked | Code::LimitExceeded | Code::RoundClosed, _) => {
            "FINAL_ERROR_ACTION_FAILED"
        }
    }
}
