//! The native dialect (ours, documented in the README): JSON bodies, `X-Signature` HMAC over
//! the raw body, decimal-string amounts, answers `{"status", "balance", "currency", ...}`.
//!
//! Choices written down here: amounts must be JSON strings (numbers are refused as malformed,
//! since binary floats cannot carry money exactly); unknown body fields are ignored, duplicate
//! ones refused; a well-formed currency code we do not settle answers CURRENCY_MISMATCH; the
//! answer's `balance` is real plus bonus money; a disabled provider or a forbidden source gets
//! 403 `FORBIDDEN`, an unknown action 404 and a method other than POST 405, both
//! `MALFORMED_REQUEST`.

use bytes::Bytes;
use http::StatusCode;
use settlement::command::{
    Action, Answer, Command, GameId, Money, PlayerRef, ProviderTxId, RoundId, SessionToken,
};
use settlement::money::{self, Currency};
use settlement::Code;

use super::wire::{self, BalanceRequest, EndRoundRequest, MoneyRequest, Response, RollbackRequest};
use super::{id, json_body, optional, Decoded, Dialect, Inbound, Outcome, Refusal};
use crate::response::{json, Body};
use crate::signature;
use crate::Kind as DialectKind;
use crate::Provider;

/// The native dialect.
#[derive(Debug, Clone, Copy, Default)]
pub struct Native;

/// The native actions: the last path segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NativeAction {
    Balance,
    Bet,
    Win,
    Rollback,
    EndRound,
}

impl NativeAction {
    pub fn parse(path: &str) -> Option<NativeAction> {
        Some(match path {
            "balance" => NativeAction::Balance,
            "bet" => NativeAction::Bet,
            "win" => NativeAction::Win,
            "rollback" => NativeAction::Rollback,
            "end-round" => NativeAction::EndRound,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            NativeAction::Balance => "balance",
            NativeAction::Bet => "bet",
            NativeAction::Win => "win",
            NativeAction::Rollback => "rollback",
            NativeAction::EndRound => "end-round",
        }
    }
}

impl Dialect for Native {
    type Action = NativeAction;
    /// The provider's transaction id, echoed in the answer.
    type Echo = Option<String>;
    const CREDENTIALS: &'static str =
        "HMAC-SHA256 over timestamp and body (X-Signature), within the time window";

    fn kind(&self) -> DialectKind {
        DialectKind::Native
    }

    /// The same answer, except that a replay says `"duplicate": true`.
    fn same_answer(&self, original: &[u8], replayed: &[u8]) -> bool {
        let parse = |bytes: &[u8]| {
            serde_json::from_slice::<wire::Response>(bytes)
                .ok()
                .map(|r| wire::Response {
                    duplicate: None,
                    ..r
                })
        };
        matches!((parse(original), parse(replayed)), (Some(a), Some(b)) if a == b)
    }

    fn action(&self, path: &str) -> Option<NativeAction> {
        NativeAction::parse(path)
    }

    fn action_label(&self, action: NativeAction) -> &'static str {
        action.as_str()
    }

    fn verify(
        &self,
        provider: &Provider,
        inbound: &Inbound<'_, NativeAction>,
    ) -> Result<(), Refusal> {
        let header = inbound
            .headers
            .get(wire::SIGNATURE_HEADER)
            .map(|v| v.as_bytes());
        signature::verify_native(
            header,
            inbound.body,
            &provider.secrets,
            inbound.now_s,
            provider.signature_window_s,
        )
        .map_err(Refusal::Signature)
    }

    fn decode(
        &self,
        provider: &Provider,
        inbound: &Inbound<'_, NativeAction>,
    ) -> Result<Decoded<Option<String>>, Refusal> {
        decode(provider, *inbound.action, inbound.body)
    }

    fn render(&self, outcome: Outcome<'_, Option<String>>) -> http::Response<Body> {
        match outcome {
            // A win before its bet, under a policy that waits for it: retry, nothing stored.
            Outcome::Answered(answer, _) if answer.code == Code::BetNotSeen => json(
                StatusCode::SERVICE_UNAVAILABLE,
                &Response {
                    status: "TEMPORARY_ERROR".into(),
                    message: Some("the bet of this win has not arrived yet".into()),
                    ..answer_to_wire(answer, None)
                },
            ),
            Outcome::Answered(answer, echo) => {
                json(StatusCode::OK, &answer_to_wire(answer, echo.clone()))
            }
            Outcome::Refused(refusal, _) => json(
                refusal.status(),
                &Response {
                    status: refusal.outcome().into(),
                    message: Some(refusal.message()),
                    ..empty()
                },
            ),
        }
    }
}

/// Decodes a native body into the core command (`None` when refused): what every callback
/// does after its signature checked out. Public for benchmarks and tools.
pub fn decode_command(provider: &Provider, action: NativeAction, body: &Bytes) -> Option<Command> {
    match decode(provider, action, body) {
        Ok(Decoded::Command(command, _)) => Some(command),
        _ => None,
    }
}

fn malformed(field: &'static str, reason: impl Into<String>) -> Refusal {
    Refusal::malformed(field, reason)
}

fn decode(
    provider: &Provider,
    action: NativeAction,
    body: &Bytes,
) -> Result<Decoded<Option<String>>, Refusal> {
    let command = |player: &str, action: Action| -> Result<Command, Refusal> {
        Ok(provider.command(id(PlayerRef::new(player), "player_id")?, action))
    };
    let unsupported = |player: &str, echo: Option<String>| Decoded::UnsupportedCurrency {
        player: PlayerRef::new(player),
        echo,
    };
    match action {
        NativeAction::Bet | NativeAction::Win => {
            let request: MoneyRequest = json_body(body)?;
            let echo = Some(request.transaction_id.clone());
            let Some(currency) = currency(&request.currency)? else {
                return Ok(unsupported(&request.player_id, echo));
            };
            let amount_minor = money::parse_minor(&request.amount, currency.exponent)
                .map_err(|e| malformed("amount", e.to_string()))?;
            let money = Money {
                tx: id(ProviderTxId::new(request.transaction_id), "transaction_id")?,
                currency,
                amount_minor,
                round: id(RoundId::new(request.round_id), "round_id")?,
                game: id(GameId::new(request.game_id), "game_id")?,
                round_closed: request.round_closed.unwrap_or(false),
            };
            let action = if action == NativeAction::Bet {
                if request.bet_transaction_id.is_some() {
                    return Err(malformed("bet_transaction_id", "is for wins"));
                }
                Action::Bet {
                    money,
                    session: optional(
                        request.session_token.map(SessionToken::new),
                        "session_token",
                    )?,
                }
            } else {
                Action::Win {
                    money,
                    bet_tx: optional(
                        request.bet_transaction_id.map(ProviderTxId::new),
                        "bet_transaction_id",
                    )?,
                }
            };
            Ok(Decoded::Command(command(&request.player_id, action)?, echo))
        }
        NativeAction::Rollback => {
            let request: RollbackRequest = json_body(body)?;
            let echo = Some(request.transaction_id.clone());
            let action = Action::Rollback {
                tx: id(ProviderTxId::new(request.transaction_id), "transaction_id")?,
                reference: id(
                    ProviderTxId::new(request.reference_transaction_id),
                    "reference_transaction_id",
                )?,
                round: optional(request.round_id.map(RoundId::new), "round_id")?,
                game: optional(request.game_id.map(GameId::new), "game_id")?,
            };
            Ok(Decoded::Command(command(&request.player_id, action)?, echo))
        }
        NativeAction::EndRound => {
            let request: EndRoundRequest = json_body(body)?;
            let action = Action::EndRound {
                round: id(RoundId::new(request.round_id), "round_id")?,
                game: optional(request.game_id.map(GameId::new), "game_id")?,
            };
            Ok(Decoded::Command(command(&request.player_id, action)?, None))
        }
        NativeAction::Balance => {
            let request: BalanceRequest = json_body(body)?;
            let currency = match request.currency {
                None => None,
                Some(code) => match currency(&code)? {
                    Some(c) => Some(c),
                    None => return Ok(unsupported(&request.player_id, None)),
                },
            };
            let action = Action::Balance { currency };
            Ok(Decoded::Command(command(&request.player_id, action)?, None))
        }
    }
}

/// `Ok(None)` for a well-formed code we do not settle; malformed for anything else.
fn currency(code: &str) -> Result<Option<Currency>, Refusal> {
    let well_formed = (3..=5).contains(&code.len())
        && code
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    if !well_formed {
        return Err(malformed("currency", "must be an upper-case currency code"));
    }
    Ok(Currency::from_code(code))
}

fn answer_to_wire(answer: &Answer, echo_tx: Option<String>) -> Response {
    Response {
        status: answer.code.as_str().into(),
        balance: answer
            .currency
            .map(|c| money::format_minor(answer.playable_minor(), c.exponent)),
        currency: answer.currency.map(|c| c.code().to_string()),
        transaction_id: echo_tx,
        operator_transaction_id: answer.operator_tx_id.map(|id| id.to_string()),
        duplicate: Some(answer.duplicate),
        message: None,
    }
}

fn empty() -> Response {
    Response {
        status: String::new(),
        balance: None,
        currency: None,
        transaction_id: None,
        operator_transaction_id: None,
        duplicate: None,
        message: None,
    }
}
