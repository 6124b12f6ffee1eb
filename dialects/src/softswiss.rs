//! The SoftSwiss-style dialect: `POST .../play` and `POST .../rollback`, JSON bodies signed
//! with `X-REQUEST-SIGN` = hex HMAC-SHA256 of the raw body under the provider's auth token.
//! `/play` without actions is a balance request; with `actions[]` (bets and wins, integer
//! amounts in minor units) it is one **unit**: applied all or nothing, in order, in one commit.
//!
//! Choices written down here:
//! - `action_id` is each action's idempotency key; a rollback's own `action_id` too, naming the
//!   action it reverses in `original_action_id`. Wins name no bet: they settle the round's
//!   (`game_id`) open bets. `finished: true` closes the round with the last action (or, with no
//!   actions, ends it).
//! - Success is HTTP 200 `{"balance", "game_id", "transactions": [{"action_id", "tx_id",
//!   "processed_at"}]}` with `balance` in minor units. A rollback that reversed nothing (the
//!   original action unknown, so it is tombstoned, or already reversed) has `tx_id: ""`.
//! - A refused unit changes nothing and answers HTTP 412 `{"code", "message", "balance"}`:
//!   100 not enough funds, 101 unknown player or session, 105 over a limit, 110 player
//!   disabled, 154 currency not held, and 400 for what has no code of its own (an `action_id`
//!   reused with other data, a bet after its rollback, a closed round, a rollback that is not
//!   permitted). A bad signature is HTTP 403 code 403; a malformed request HTTP 400 code 400;
//!   storage, overload or a deadline HTTP 503 code 503 (retry).
//! - At most 64 actions per call.

use http::StatusCode;
use serde::{Deserialize, Serialize};
use settlement::apply::UNIT_LEN_MAX;
use settlement::command::{Action, Answer, GameId, Money, PlayerRef, ProviderTxId, RoundId};
use settlement::Code;

use super::{
    id, json_body, verified, wallet_currency, Decoded, Dialect, Inbound, Outcome, Refusal,
};
use crate::response::{json, Body};
use crate::signature::{self, Secret};
use crate::Kind as DialectKind;
use crate::Provider;

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "x-request-sign";

/// The SoftSwiss-style dialect.
#[derive(Debug, Clone, Copy, Default)]
pub struct SoftSwiss;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SsAction {
    Play,
    Rollback,
}

impl SsAction {
    pub fn as_str(self) -> &'static str {
        match self {
            SsAction::Play => "play",
            SsAction::Rollback => "rollback",
        }
    }
}

/// What an answer echoes: the round and each action's id and kind.
#[derive(Debug, Clone)]
pub struct SsEcho {
    game_id: Option<String>,
    actions: Vec<(String, WireKind)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum WireKind {
    Bet,
    Win,
    Rollback,
}

#[derive(Debug, Deserialize)]
struct Request {
    user_id: String,
    currency: String,
    #[serde(default)]
    game: Option<String>,
    #[serde(default)]
    game_id: Option<String>,
    #[serde(default)]
    finished: Option<bool>,
    #[serde(default)]
    actions: Vec<WireAction>,
}

#[derive(Debug, Deserialize)]
struct WireAction {
    action: WireKind,
    action_id: String,
    #[serde(default)]
    amount: Option<i64>,
    #[serde(default)]
    original_action_id: Option<String>,
}

/// Signs `body` as a SoftSwiss-style provider does: the `X-REQUEST-SIGN` value.
pub fn sign(body: &[u8], secret: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes any key");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

impl Dialect for SoftSwiss {
    type Action = SsAction;
    type Echo = SsEcho;
    const CREDENTIALS: &'static str = "HMAC-SHA256 over the body (X-REQUEST-SIGN)";

    fn kind(&self) -> DialectKind {
        DialectKind::Softswiss
    }

    /// The same answer apart from each action's `processed_at`, which is the time of the
    /// answer (a retry's answer carries its own).
    fn same_answer(&self, original: &[u8], replayed: &[u8]) -> bool {
        let parse = |bytes: &[u8]| {
            let mut value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
            for tx in value["transactions"].as_array_mut()? {
                tx.as_object_mut()?.remove("processed_at");
            }
            Some(value)
        };
        matches!((parse(original), parse(replayed)), (Some(a), Some(b)) if a == b)
    }

    fn action(&self, path: &str) -> Option<SsAction> {
        match path {
            "play" => Some(SsAction::Play),
            "rollback" => Some(SsAction::Rollback),
            _ => None,
        }
    }

    fn action_label(&self, action: SsAction) -> &'static str {
        action.as_str()
    }

    fn verify(&self, provider: &Provider, inbound: &Inbound<'_, SsAction>) -> Result<(), Refusal> {
        use hmac::Mac;
        let header = inbound
            .headers
            .get(SIGNATURE_HEADER)
            .ok_or(Refusal::Signature(signature::Refusal::Missing))?;
        let given = hex::decode(header.as_bytes())
            .map_err(|_| Refusal::Signature(signature::Refusal::Malformed))?;
        // Each secret's HMAC key schedule was made when it was loaded; an empty one has none.
        verified(
            provider
                .secrets
                .iter()
                .filter_map(Secret::mac)
                .any(|mut mac| {
                    mac.update(inbound.body);
                    mac.verify_slice(&given).is_ok()
                }),
        )
    }

    fn decode(
        &self,
        provider: &Provider,
        inbound: &Inbound<'_, SsAction>,
    ) -> Result<Decoded<SsEcho>, Refusal> {
        let request: Request = json_body(inbound.body)?;
        if request.actions.len() > UNIT_LEN_MAX {
            return Err(Refusal::malformed(
                "actions",
                format!("more than {UNIT_LEN_MAX}"),
            ));
        }
        let echo = SsEcho {
            game_id: request.game_id.clone(),
            actions: request
                .actions
                .iter()
                .map(|a| (a.action_id.clone(), a.action))
                .collect(),
        };
        let player = id(PlayerRef::new(request.user_id.clone()), "user_id")?;
        let Some(currency) = wallet_currency(Some(&request.currency), provider) else {
            return Ok(Decoded::UnsupportedCurrency {
                player: Some(player),
                echo,
            });
        };
        let command = |action| provider.command(player.clone(), action);
        let round = || id(request.game_id.clone().and_then(RoundId::new), "game_id");
        let game = || id(request.game.clone().and_then(GameId::new), "game");
        let finished = request.finished.unwrap_or(false);
        if request.actions.is_empty() {
            if *inbound.action == SsAction::Play && finished {
                let end = Action::EndRound {
                    round: round()?,
                    game: request.game.clone().and_then(GameId::new),
                };
                return Ok(Decoded::Command(command(end), echo));
            }
            let balance = Action::Balance {
                currency: Some(currency),
            };
            return Ok(Decoded::Command(command(balance), echo));
        }
        let last = request.actions.len() - 1;
        let mut commands = Vec::with_capacity(request.actions.len());
        for (i, action) in request.actions.iter().enumerate() {
            let tx = id(ProviderTxId::new(action.action_id.clone()), "action_id")?;
            let core = match (*inbound.action, action.action) {
                (SsAction::Play, kind @ (WireKind::Bet | WireKind::Win)) => {
                    let amount = action
                        .amount
                        .ok_or_else(|| Refusal::malformed("amount", "missing"))?;
                    if amount < 0 {
                        return Err(Refusal::malformed("amount", "negative"));
                    }
                    let money = Money {
                        tx,
                        currency,
                        amount_minor: amount,
                        round: round()?,
                        game: game()?,
                        round_closed: finished && i == last,
                    };
                    if kind == WireKind::Bet {
                        Action::Bet {
                            money,
                            session: None,
                        }
                    } else {
                        Action::Win {
                            money,
                            bet_tx: None,
                        }
                    }
                }
                (SsAction::Rollback, WireKind::Rollback) => Action::Rollback {
                    tx,
                    reference: id(
                        action
                            .original_action_id
                            .clone()
                            .and_then(ProviderTxId::new),
                        "original_action_id",
                    )?,
                    round: request.game_id.clone().and_then(RoundId::new),
                    game: request.game.clone().and_then(GameId::new),
                },
                _ => {
                    return Err(Refusal::malformed(
                        "action",
                        "bets and wins go to /play, rollbacks to /rollback",
                    ))
                }
            };
            commands.push(command(core));
        }
        Ok(Decoded::Unit(commands, echo))
    }

    fn render(&self, outcome: Outcome<'_, SsEcho>) -> http::Response<Body> {
        match outcome {
            Outcome::Answered(answer, echo) => self.render_unit(std::slice::from_ref(answer), echo),
            Outcome::Refused(refusal, _) => {
                let (status, code) = match refusal {
                    Refusal::Signature(_) | Refusal::Disabled | Refusal::ForbiddenSource(_) => {
                        (StatusCode::FORBIDDEN, 403)
                    }
                    Refusal::Unavailable(_) | Refusal::InFlight | Refusal::BodyTimeout => {
                        (StatusCode::SERVICE_UNAVAILABLE, 503)
                    }
                    Refusal::UnknownAction(_) => (StatusCode::NOT_FOUND, 404),
                    Refusal::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, 405),
                    Refusal::BodyTooLarge | Refusal::BodyUnreadable | Refusal::Malformed { .. } => {
                        (StatusCode::BAD_REQUEST, 400)
                    }
                };
                json(
                    status,
                    &Failure {
                        code,
                        message: refusal.message(),
                        balance: None,
                    },
                )
            }
        }
    }

    fn render_unit(&self, answers: &[Answer], echo: &SsEcho) -> http::Response<Body> {
        let Some(first) = answers.first() else {
            return self.render(Outcome::Refused(
                &Refusal::malformed("actions", "none"),
                Some(echo),
            ));
        };
        let balance = first
            .currency
            .map(|_| answers.last().map_or(0, Answer::playable_minor));
        if let Some(refused) = answers.iter().find(|a| a.code != Code::Ok) {
            let (status, code) = match refused.code {
                Code::BetNotSeen => (StatusCode::SERVICE_UNAVAILABLE, 503),
                other => (StatusCode::PRECONDITION_FAILED, refusal_code(other)),
            };
            return json(
                status,
                &Failure {
                    code,
                    message: refused.code.as_str().into(),
                    balance: refused.currency.map(|_| refused.playable_minor()),
                },
            );
        }
        let processed_at =
            humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        let transactions = echo
            .actions
            .iter()
            .zip(answers)
            .map(|((action_id, kind), answer)| Processed {
                action_id: action_id.clone(),
                // A rollback that reversed nothing (its original unknown or already reversed).
                tx_id: if *kind == WireKind::Rollback && !answer.money_moved {
                    String::new()
                } else {
                    answer
                        .operator_tx_id
                        .map(|id| id.to_string())
                        .unwrap_or_default()
                },
                processed_at: processed_at.clone(),
            })
            .collect();
        json(
            StatusCode::OK,
            &Success {
                balance,
                game_id: echo.game_id.clone(),
                transactions,
            },
        )
    }
}

#[derive(Debug, Serialize)]
struct Success {
    #[serde(skip_serializing_if = "Option::is_none")]
    balance: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    game_id: Option<String>,
    transactions: Vec<Processed>,
}

#[derive(Debug, Serialize)]
struct Processed {
    action_id: String,
    tx_id: String,
    processed_at: String,
}

#[derive(Debug, Serialize)]
struct Failure {
    code: u16,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    balance: Option<i64>,
}

fn refusal_code(code: Code) -> u16 {
    match code {
        Code::InsufficientFunds => 100,
        Code::UnknownPlayer | Code::InvalidSession => 101,
        Code::LimitExceeded => 105,
        Code::PlayerBlocked => 110,
        Code::CurrencyMismatch => 154,
        Code::Ok
        | Code::DuplicateMismatch
        | Code::TransactionRolledBack
        | Code::RoundClosed
        | Code::RollbackNotPermitted
        | Code::TransactionNotFound
        | Code::BetNotSeen => 400,
    }
}
