//! The Hub88-style dialect: `POST .../user/info`, `/user/balance`, `/transaction/bet`,
//! `/transaction/win`, `/transaction/rollback`, JSON bodies signed with RSA-SHA256
//! (PKCS#1 v1.5) over the raw body in `X-Hub88-Signature` (base64), checked with the
//! provider's public key; answers `{"user", "status", "request_uuid", "currency", "balance"}`.
//!
//! Choices written down here:
//! - Amounts and balances are integers in 1/100,000 of the currency unit. An amount that does
//!   not come to whole minor units (EUR: a multiple of 1,000) is `RS_ERROR_WRONG_TYPES`.
//! - `transaction_uuid` is the idempotency key; a reused one with other data is
//!   `RS_ERROR_DUPLICATE_TRANSACTION`. A win names its bet by `reference_transaction_uuid`
//!   (optional: promotional wins have none); a rollback names the transaction it reverses.
//! - `token` is the game session of bets (checked only when the provider's policy asks for
//!   sessions); wins and rollbacks never look at it.
//! - HTTP 200 for every answer but a bad signature (401 `RS_ERROR_INVALID_SIGNATURE`). Storage,
//!   overload, deadlines and a win before its bet are `RS_ERROR_TIMEOUT`: the provider retries
//!   wins and rollbacks, and rolls a bet back.
//! - Codes for states Hub88 has no word for: unknown player `RS_ERROR_INVALID_TOKEN`; a closed
//!   round, a rollback that is not permitted, a disabled provider or a forbidden address
//!   `RS_ERROR_UNKNOWN`; malformed bodies `RS_ERROR_WRONG_SYNTAX`.

use base64::Engine;
use http::StatusCode;
use rsa::pkcs1v15::{Signature, SigningKey};
use rsa::signature::{SignatureEncoding, Signer, Verifier};
use serde::{Deserialize, Serialize};
use settlement::command::{
    Action, Answer, GameId, Money, PlayerRef, ProviderTxId, RoundId, SessionToken,
};
use settlement::money::Currency;
use settlement::Code;
use sha2::Sha256;

use super::{
    id, json_body, verified, wallet_currency, Decoded, Dialect, Inbound, Outcome, Refusal,
};
use crate::response::{json, Body};
use crate::signature;
use crate::Kind as DialectKind;
use crate::Provider;

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "x-hub88-signature";

/// Amounts on the wire are in this fraction of the currency unit.
const SCALE_EXPONENT: u8 = 5;

/// The Hub88-style dialect.
#[derive(Debug, Clone, Copy, Default)]
pub struct Hub88;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hub88Action {
    Info,
    Balance,
    Bet,
    Win,
    Rollback,
}

impl Hub88Action {
    pub const ALL: [Hub88Action; 5] = [
        Hub88Action::Info,
        Hub88Action::Balance,
        Hub88Action::Bet,
        Hub88Action::Win,
        Hub88Action::Rollback,
    ];

    /// The path after the provider code.
    pub fn path(self) -> &'static str {
        match self {
            Hub88Action::Info => "user/info",
            Hub88Action::Balance => "user/balance",
            Hub88Action::Bet => "transaction/bet",
            Hub88Action::Win => "transaction/win",
            Hub88Action::Rollback => "transaction/rollback",
        }
    }
}

/// What an answer echoes.
#[derive(Debug, Clone)]
pub struct Hub88Echo {
    user: String,
    request_uuid: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Request {
    user: String,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    request_uuid: Option<String>,
    #[serde(default)]
    game_code: Option<String>,
    #[serde(default)]
    currency: Option<String>,
    #[serde(default)]
    transaction_uuid: Option<String>,
    #[serde(default)]
    reference_transaction_uuid: Option<String>,
    #[serde(default)]
    round: Option<String>,
    #[serde(default)]
    round_closed: Option<bool>,
    #[serde(default)]
    amount: Option<i64>,
}

/// Signs `body` as a Hub88-style provider does (tests, `sim` and `loadtest` use the demo
/// provider's private key): the `X-Hub88-Signature` value.
pub fn sign(body: &[u8], private_key: &rsa::RsaPrivateKey) -> String {
    let signing = SigningKey::<Sha256>::new(private_key.clone());
    let signature = signing.sign(body);
    base64::engine::general_purpose::STANDARD.encode(signature.to_bytes())
}

/// Reads a PKCS#8 PEM private key (the demo provider's, for signing test traffic).
pub fn private_key_from_pem(pem: &str) -> Result<rsa::RsaPrivateKey, String> {
    use rsa::pkcs8::DecodePrivateKey;
    rsa::RsaPrivateKey::from_pkcs8_pem(pem).map_err(|e| e.to_string())
}

/// Minor units from an amount in 1/100,000 of the unit; `None` unless exact.
fn to_minor(amount: i64, currency: Currency) -> Option<i64> {
    if currency.exponent <= SCALE_EXPONENT {
        let factor = 10i64.pow(u32::from(SCALE_EXPONENT - currency.exponent));
        (amount % factor == 0).then_some(amount / factor)
    } else {
        amount.checked_mul(10i64.pow(u32::from(currency.exponent - SCALE_EXPONENT)))
    }
}

/// An amount in 1/100,000 of the unit from minor units (saturating, for display).
fn from_minor(minor: i64, currency: Currency) -> i64 {
    if currency.exponent <= SCALE_EXPONENT {
        minor.saturating_mul(10i64.pow(u32::from(SCALE_EXPONENT - currency.exponent)))
    } else {
        minor / 10i64.pow(u32::from(currency.exponent - SCALE_EXPONENT))
    }
}

impl Dialect for Hub88 {
    type Action = Hub88Action;
    type Echo = Hub88Echo;
    const CREDENTIALS: &'static str =
        "RSA-SHA256 over the body (X-Hub88-Signature) with the provider's public key";

    fn kind(&self) -> DialectKind {
        DialectKind::Hub88
    }

    fn action(&self, path: &str) -> Option<Hub88Action> {
        Hub88Action::ALL.into_iter().find(|a| a.path() == path)
    }

    fn action_label(&self, action: Hub88Action) -> &'static str {
        action.path()
    }

    fn verify(
        &self,
        provider: &Provider,
        inbound: &Inbound<'_, Hub88Action>,
    ) -> Result<(), Refusal> {
        let header = inbound
            .headers
            .get(SIGNATURE_HEADER)
            .ok_or(Refusal::Signature(signature::Refusal::Missing))?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(header.as_bytes())
            .map_err(|_| Refusal::Signature(signature::Refusal::Malformed))?;
        let signature = Signature::try_from(bytes.as_slice())
            .map_err(|_| Refusal::Signature(signature::Refusal::Malformed))?;
        let ok = provider
            .public_keys
            .iter()
            .any(|key| key.verify(inbound.body, &signature).is_ok());
        verified(ok)
    }

    fn decode(
        &self,
        provider: &Provider,
        inbound: &Inbound<'_, Hub88Action>,
    ) -> Result<Decoded<Hub88Echo>, Refusal> {
        let request: Request = json_body(inbound.body)?;
        let echo = Hub88Echo {
            user: request.user.clone(),
            request_uuid: request.request_uuid.clone(),
        };
        let player = id(PlayerRef::new(request.user), "user")?;
        let Some(currency) = wallet_currency(request.currency.as_deref(), provider) else {
            return Ok(Decoded::UnsupportedCurrency {
                player: Some(player),
                echo,
            });
        };
        let command = |action| provider.command(player.clone(), action);
        let action = *inbound.action;
        if matches!(action, Hub88Action::Info | Hub88Action::Balance) {
            let currency = request.currency.as_ref().map(|_| currency);
            return Ok(Decoded::Command(
                command(Action::Balance { currency }),
                echo,
            ));
        }
        let tx = id(
            request.transaction_uuid.clone().and_then(ProviderTxId::new),
            "transaction_uuid",
        )?;
        let reference = request
            .reference_transaction_uuid
            .clone()
            .map(|r| id(ProviderTxId::new(r), "reference_transaction_uuid"))
            .transpose()?;
        let money = || -> Result<Money, Refusal> {
            let amount = request
                .amount
                .ok_or_else(|| Refusal::malformed("amount", "missing"))?;
            if amount < 0 {
                return Err(Refusal::malformed("amount", "negative"));
            }
            Ok(Money {
                tx: tx.clone(),
                currency,
                amount_minor: to_minor(amount, currency).ok_or_else(|| {
                    Refusal::malformed("amount", "not a whole number of minor units")
                })?,
                round: id(request.round.clone().and_then(RoundId::new), "round")?,
                game: id(request.game_code.clone().and_then(GameId::new), "game_code")?,
                round_closed: request.round_closed.unwrap_or(false),
            })
        };
        let action = match action {
            Hub88Action::Bet => Action::Bet {
                money: money()?,
                session: request
                    .token
                    .clone()
                    .map(|t| id(SessionToken::new(t), "token"))
                    .transpose()?,
            },
            Hub88Action::Win => Action::Win {
                money: money()?,
                bet_tx: reference,
            },
            Hub88Action::Rollback => Action::Rollback {
                tx: tx.clone(),
                reference: reference
                    .ok_or_else(|| Refusal::malformed("reference_transaction_uuid", "missing"))?,
                round: request.round.clone().and_then(RoundId::new),
                game: request.game_code.clone().and_then(GameId::new),
            },
            Hub88Action::Info | Hub88Action::Balance => unreachable!("answered above"),
        };
        Ok(Decoded::Command(command(action), echo))
    }

    fn render(&self, outcome: Outcome<'_, Hub88Echo>) -> http::Response<Body> {
        match outcome {
            Outcome::Answered(answer, echo) => json(
                StatusCode::OK,
                &reply(status(answer.code), Some(answer), Some(echo)),
            ),
            Outcome::Refused(refusal, echo) => {
                let (http_status, status) = match refusal {
                    Refusal::Signature(_) => {
                        (StatusCode::UNAUTHORIZED, "RS_ERROR_INVALID_SIGNATURE")
                    }
                    Refusal::Unavailable(_) | Refusal::InFlight | Refusal::BodyTimeout => {
                        (StatusCode::OK, "RS_ERROR_TIMEOUT")
                    }
                    Refusal::Malformed {
                        field: "amount", ..
                    } => (StatusCode::OK, "RS_ERROR_WRONG_TYPES"),
                    Refusal::UnknownAction(_)
                    | Refusal::MethodNotAllowed(_)
                    | Refusal::BodyTooLarge
                    | Refusal::BodyUnreadable
                    | Refusal::Malformed { .. } => (StatusCode::OK, "RS_ERROR_WRONG_SYNTAX"),
                    Refusal::Disabled | Refusal::ForbiddenSource(_) => {
                        (StatusCode::OK, "RS_ERROR_UNKNOWN")
                    }
                };
                json(http_status, &reply(status, None, echo))
            }
        }
    }
}

#[derive(Debug, Serialize)]
struct Reply {
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<String>,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_uuid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    currency: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    balance: Option<i64>,
}

fn reply(status: &'static str, answer: Option<&Answer>, echo: Option<&Hub88Echo>) -> Reply {
    let wallet = answer.and_then(|a| a.currency.map(|c| (a, c)));
    Reply {
        user: echo.map(|e| e.user.clone()),
        status,
        request_uuid: echo.and_then(|e| e.request_uuid.clone()),
        currency: wallet.map(|(_, c)| c.code().to_string()),
        balance: wallet.map(|(a, c)| from_minor(a.playable_minor(), c)),
    }
}

fn status(code: Code) -> &'static str {
    match code {
        Code::Ok => "RS_OK",
        Code::InsufficientFunds => "RS_ERROR_NOT_ENOUGH_MONEY",
        Code::UnknownPlayer => "RS_ERROR_INVALID_TOKEN",
        Code::CurrencyMismatch => "RS_ERROR_WRONG_CURRENCY",
        Code::InvalidSession => "RS_ERROR_TOKEN_EXPIRED",
        Code::PlayerBlocked => "RS_ERROR_USER_DISABLED",
        Code::LimitExceeded => "RS_ERROR_LIMIT_REACHED",
        Code::TransactionRolledBack => "RS_ERROR_TRANSACTION_ROLLED_BACK",
        Code::DuplicateMismatch => "RS_ERROR_DUPLICATE_TRANSACTION",
        Code::TransactionNotFound => "RS_ERROR_TRANSACTION_DOES_NOT_EXIST",
        Code::BetNotSeen => "RS_ERROR_TIMEOUT",
        Code::RoundClosed | Code::RollbackNotPermitted => "RS_ERROR_UNKNOWN",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_scale_exactly() {
        let eur = Currency::from_code("EUR").unwrap();
        let jpy = Currency::from_code("JPY").unwrap();
        let btc = Currency::from_code("BTC").unwrap();
        assert_eq!(to_minor(150_000, eur), Some(150));
        assert_eq!(to_minor(150_001, eur), None);
        assert_eq!(to_minor(300_000, jpy), Some(3));
        assert_eq!(to_minor(1, btc), Some(1_000));
        assert_eq!(to_minor(i64::MAX, btc), None);
        assert_eq!(from_minor(150, eur), 150_000);
        assert_eq!(from_minor(1_000, btc), 1);
    }
}
