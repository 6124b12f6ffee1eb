//! The native dialect (ours, documented in the README): JSON bodies, `X-Signature` HMAC over
//! the raw body, decimal-string amounts, answers `{"status", "balance", "currency", ...}`.
//!
//! Choices written down here: amounts must be JSON strings (numbers are refused as malformed,
//! since binary floats cannot carry money exactly); unknown body fields are ignored, duplicate
//! ones refused; a well-formed currency code we do not settle answers CURRENCY_MISMATCH; the
//! answer's `balance` is real plus bonus money.

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, StatusCode};
use settlement::batch::Unavailable;
use settlement::command::{
    Action, Answer, Command, GameId, Money, PlayerRef, ProviderTxId, RoundId, SessionToken,
};
use settlement::fault::Plant;
use settlement::money::{self, Currency};
use settlement::Code;

use super::wire::{self, BalanceRequest, EndRoundRequest, MoneyRequest, Response, RollbackRequest};
use super::Provider;
use crate::dedup::{self, Lookup};
use crate::server::{self, Body, BodyError};
use crate::signature;
use crate::state::State;

/// A refusal before settlement: status, code, message.
struct Refused(StatusCode, &'static str, String);

fn malformed(message: impl Into<String>) -> Refused {
    Refused(StatusCode::BAD_REQUEST, "MALFORMED_REQUEST", message.into())
}

pub async fn handle(
    state: &Arc<State>,
    provider: &Provider,
    action: &str,
    request: http::Request<hyper::body::Incoming>,
) -> http::Response<Body> {
    let started = std::time::Instant::now();
    let (status, response) = answer(state, provider, action, request, started).await;
    let action_label = if wire::ACTIONS.contains(&action) {
        action.to_string()
    } else {
        "unknown".to_string()
    };
    metrics::counter!(
        "wallet_callbacks_total",
        "provider" => provider.code.clone(),
        "action" => action_label.clone(),
        "outcome" => response.status.clone(),
    )
    .increment(1);
    metrics::histogram!("wallet_callback_seconds", "provider" => provider.code.clone(), "action" => action_label)
        .record(started.elapsed().as_secs_f64());
    render(status, response)
}

async fn answer(
    state: &Arc<State>,
    provider: &Provider,
    action: &str,
    request: http::Request<hyper::body::Incoming>,
    started: std::time::Instant,
) -> (StatusCode, Response) {
    if request.method() != Method::POST {
        return refusal(Refused(
            StatusCode::METHOD_NOT_ALLOWED,
            "MALFORMED_REQUEST",
            "callbacks are POST".into(),
        ));
    }
    if !wire::ACTIONS.contains(&action) {
        return refusal(Refused(
            StatusCode::NOT_FOUND,
            "MALFORMED_REQUEST",
            format!("unknown action {action:?}"),
        ));
    }
    let signature = request
        .headers()
        .get(wire::SIGNATURE_HEADER)
        .map(|v| v.as_bytes().to_vec());
    let body = match server::read_body(state, request).await {
        Ok(body) => body,
        Err(BodyError::TooLarge) => {
            return refusal(Refused(
                StatusCode::PAYLOAD_TOO_LARGE,
                "MALFORMED_REQUEST",
                "body too large".into(),
            ))
        }
        Err(BodyError::Timeout) => {
            return refusal(Refused(
                StatusCode::REQUEST_TIMEOUT,
                "MALFORMED_REQUEST",
                "body not received in time".into(),
            ))
        }
        Err(BodyError::Broken) => return refusal(malformed("body could not be read")),
    };
    if let Err(refused) = signature::verify_native(
        signature.as_deref(),
        &body,
        &provider.secrets,
        now_s(),
        provider.signature_window_s,
    ) {
        tracing::info!(provider = %provider.code, reason = refused.as_str(), "signature refused");
        metrics::counter!(
            "wallet_signature_failures_total",
            "provider" => provider.code.clone(),
            "reason" => refused.as_str(),
        )
        .increment(1);
        return refusal(Refused(
            StatusCode::UNAUTHORIZED,
            "INVALID_SIGNATURE",
            refused.to_string(),
        ));
    }
    let (command, echo_tx) = match decode(provider, action, &body) {
        Ok(Decoded::Command(command, echo_tx)) => (command, echo_tx),
        Ok(Decoded::UnsupportedCurrency(code, player)) => {
            // Final, and answered with the player's default wallet when there is one, so the
            // provider sees which currency the player plays in.
            let mut response = Response {
                status: Code::CurrencyMismatch.as_str().into(),
                currency: Some(code),
                message: Some("currency not supported".into()),
                ..empty()
            };
            if let Some(balance) = player {
                if let Ok(answer) = state.settler.settle(balance).await {
                    if let Some(currency) = answer.currency {
                        response.currency = Some(currency.code().to_string());
                        response.balance = Some(money::format_minor(
                            answer.playable_minor(),
                            currency.exponent,
                        ));
                    }
                }
            }
            return (StatusCode::OK, response);
        }
        Err(refused) => return refusal(refused),
    };
    match settle(state, command, started).await {
        Ok(answer) => (StatusCode::OK, answer_to_wire(&answer, echo_tx)),
        Err(unavailable) => {
            // Overloaded, deadline, storage or shutdown: the on-call engineer needs which.
            metrics::counter!("wallet_unavailable_total", "reason" => unavailable.as_str())
                .increment(1);
            refusal(Refused(
                StatusCode::SERVICE_UNAVAILABLE,
                "TEMPORARY_ERROR",
                unavailable.to_string(),
            ))
        }
    }
}

/// Through the dedup index for calls with a transaction id: a known answer is replayed, a
/// concurrent twin is awaited, anything else is settled (and its answer remembered).
async fn settle(
    state: &State,
    command: Command,
    started: std::time::Instant,
) -> Result<Answer, Unavailable> {
    let Some(tx) = command.tx() else {
        return state.settler.settle(command).await;
    };
    // Planted bugs (test builds only; always false otherwise), read here and nowhere else
    // in the gateway.
    let faults = state.settler.faults();
    if faults.planted(Plant::NoDedup) {
        return state.settler.settle(command).await;
    }
    let altered_retry_answer = faults.planted(Plant::AlteredRetryAnswer);
    match state
        .dedup
        .begin(command.provider, tx.as_str(), command.fingerprint())
    {
        Lookup::Answered(answer) => {
            // The index's promise: a retry costs no database work, from request to answer.
            metrics::histogram!("wallet_dedup_hit_seconds").record(started.elapsed().as_secs_f64());
            Ok(answer)
        }
        Lookup::Wait(outcome) => dedup::wait(outcome).await,
        Lookup::Settle(claim) => {
            let outcome = state.settler.settle(command).await;
            if altered_retry_answer {
                let mut kept = outcome.clone();
                if let Ok(answer) = &mut kept {
                    answer.balance_minor += 1;
                }
                claim.finish(&kept);
                return outcome;
            }
            claim.finish(&outcome);
            outcome
        }
    }
}

/// Decodes a native body into the core command (`None` when refused): what every callback
/// does after its signature checked out. Public for benchmarks and tools.
pub fn decode_command(provider: &Provider, action: &str, body: &Bytes) -> Option<Command> {
    match decode(provider, action, body) {
        Ok(Decoded::Command(command, _)) => Some(command),
        _ => None,
    }
}

enum Decoded {
    /// The command and the provider's transaction id to echo.
    Command(Command, Option<String>),
    /// A well-formed currency code we do not settle, and a balance call for the player (when
    /// the player id is well-formed) to find the default wallet.
    UnsupportedCurrency(String, Option<Command>),
}

fn decode(provider: &Provider, action: &str, body: &Bytes) -> Result<Decoded, Refused> {
    fn parse<'a, T: serde::Deserialize<'a>>(body: &'a [u8]) -> Result<T, Refused> {
        serde_json::from_slice(body).map_err(|e| malformed(format!("body: {e}")))
    }
    let command = |player: &str, action: Action| -> Result<Command, Refused> {
        Ok(Command {
            provider: provider.id,
            policy: provider.policy,
            player: id(PlayerRef::new(player), "player_id")?,
            action,
        })
    };
    match action {
        "bet" | "win" => {
            let request: MoneyRequest = parse(body)?;
            let Some(currency) = currency(&request.currency)? else {
                let balance = command(&request.player_id, Action::Balance { currency: None });
                return Ok(Decoded::UnsupportedCurrency(request.currency, balance.ok()));
            };
            let amount_minor = money::parse_minor(&request.amount, currency.exponent)
                .map_err(|e| malformed(format!("amount: {e}")))?;
            let money = Money {
                tx: id(
                    ProviderTxId::new(request.transaction_id.clone()),
                    "transaction_id",
                )?,
                currency,
                amount_minor,
                round: id(RoundId::new(request.round_id), "round_id")?,
                game: id(GameId::new(request.game_id), "game_id")?,
                round_closed: request.round_closed.unwrap_or(false),
            };
            let action = if action == "bet" {
                if request.bet_transaction_id.is_some() {
                    return Err(malformed("bet_transaction_id is for wins"));
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
            Ok(Decoded::Command(
                command(&request.player_id, action)?,
                Some(request.transaction_id),
            ))
        }
        "rollback" => {
            let request: RollbackRequest = parse(body)?;
            let action = Action::Rollback {
                tx: id(
                    ProviderTxId::new(request.transaction_id.clone()),
                    "transaction_id",
                )?,
                reference: id(
                    ProviderTxId::new(request.reference_transaction_id),
                    "reference_transaction_id",
                )?,
                round: optional(request.round_id.map(RoundId::new), "round_id")?,
                game: optional(request.game_id.map(GameId::new), "game_id")?,
            };
            Ok(Decoded::Command(
                command(&request.player_id, action)?,
                Some(request.transaction_id),
            ))
        }
        "end-round" => {
            let request: EndRoundRequest = parse(body)?;
            let action = Action::EndRound {
                round: id(RoundId::new(request.round_id), "round_id")?,
                game: optional(request.game_id.map(GameId::new), "game_id")?,
            };
            Ok(Decoded::Command(command(&request.player_id, action)?, None))
        }
        _ => {
            let request: BalanceRequest = parse(body)?;
            let currency = match request.currency {
                None => None,
                Some(code) => match currency(&code)? {
                    Some(c) => Some(c),
                    None => {
                        let balance =
                            command(&request.player_id, Action::Balance { currency: None });
                        return Ok(Decoded::UnsupportedCurrency(code, balance.ok()));
                    }
                },
            };
            let action = Action::Balance { currency };
            Ok(Decoded::Command(command(&request.player_id, action)?, None))
        }
    }
}

fn id<T>(value: Option<T>, field: &str) -> Result<T, Refused> {
    value.ok_or_else(|| malformed(format!("{field} must be 1 to 128 bytes")))
}

fn optional<T>(value: Option<Option<T>>, field: &str) -> Result<Option<T>, Refused> {
    value.map(|v| id(v, field)).transpose()
}

/// `Ok(None)` for a well-formed code we do not settle; malformed for anything else.
fn currency(code: &str) -> Result<Option<Currency>, Refused> {
    let well_formed = (3..=5).contains(&code.len())
        && code
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    if !well_formed {
        return Err(malformed("currency must be an upper-case currency code"));
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

fn refusal(Refused(status, code, message): Refused) -> (StatusCode, Response) {
    (
        status,
        Response {
            status: code.into(),
            message: Some(message),
            ..empty()
        },
    )
}

fn render(status: StatusCode, response: Response) -> http::Response<Body> {
    server::json(status, &response)
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
