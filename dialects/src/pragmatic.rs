//! The Pragmatic-style dialect: `POST .../<method>.html`, form-encoded parameters, a `hash`
//! parameter signing them, JSON answers with numeric `error` codes, always HTTP 200.
//!
//! Choices written down here (the public documentation is silent or varies):
//! - `hash` is the lowercase hex MD5 of every received parameter except `hash`, percent-decoded,
//!   as `k=v` joined by `&` in key order (repeated keys in the order received), with the
//!   secret appended. Parameters the gateway does not know are covered too, so a provider may
//!   add some without breaking signatures. The previous secret is accepted during a rotation.
//! - Calls name no currency: the wallet currency is the provider's `currency` setting.
//! - `reference` is the idempotency key of every money call. A refund has no id of its own: it
//!   is keyed `<reference>:refund`, so refunding the same bet twice is one refund.
//! - `result` and `jackpotWin` settle the round's open bets; one that comes before any bet of its
//!   round is answered 100 (retry) under the `wins_wait_for_bet` policy, and nothing is stored;
//!   one for a round whose bets were all refunded is 120 (final).
//!   `promoWin` needs no bet. `bonusWin` reports a free-round total and moves no money: it is
//!   answered with the balance, and no ledger row.
//! - A `result` carrying `promoWinAmount` (a second payout in the same call) is refused with 7
//!   until multi-action calls are supported, rather than dropping the promo payout.
//! - A refund that finds no bet succeeds with an empty `transactionId` and tombstones the bet,
//!   so the bet, if it comes later, is refused with 120.
//! - Codes: 0 OK; 1 insufficient funds; 2 player not found; 3 bet not allowed (limits, closed
//!   round); 4 invalid session; 5 invalid hash; 6 player blocked; 7 bad parameters (also a
//!   currency the wallet does not hold); 100 retry (storage, overload, deadline, a result before
//!   its bet, a body not received in time); 120 final (bet already refunded or settled, a
//!   duplicate reference with other data, a disabled provider or forbidden address).
//! - A repeated `reference` replays the original answer, balance included.
//! - The hash covers the parameters but not the method, so a captured bet would verify as a
//!   refund of itself. Three things stand in the way: a parameter that the documentation gives
//!   to other methods only is refused with 7 (a bet's `jackpotContribution` on a refund, a
//!   refund's nothing on a bet: see `PARAMETERS`; parameters no method is documented with are
//!   accepted, and signed, as above); a signature already seen on another method is refused
//!   with 5 (`signed`, in memory); and outside demo mode the provider must name its addresses
//!   (`allow_ips`), or the gateway does not start.

use bytes::Bytes;
use http::StatusCode;
use md5::{Digest, Md5};
use serde::Serialize;
use serde_json::value::RawValue;
use settlement::command::{Action, Answer, GameId, Money, PlayerRef, ProviderTxId, RoundId};
use settlement::money;
use settlement::Code;
use subtle::ConstantTimeEq;

use super::{
    any_secret, id, optional, wallet_currency, Decoded, Dialect, Inbound, Outcome, Refusal,
};
use crate::response::{json, Body};
use crate::signature;
use crate::Kind as DialectKind;
use crate::Provider;

/// The Pragmatic-style dialect.
#[derive(Debug, Clone, Copy, Default)]
pub struct Pragmatic;

/// The methods: `<method>.html` in the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PpMethod {
    Authenticate,
    Balance,
    Bet,
    Result,
    BonusWin,
    JackpotWin,
    PromoWin,
    Refund,
    EndRound,
}

impl PpMethod {
    pub const ALL: [PpMethod; 9] = [
        PpMethod::Authenticate,
        PpMethod::Balance,
        PpMethod::Bet,
        PpMethod::Result,
        PpMethod::BonusWin,
        PpMethod::JackpotWin,
        PpMethod::PromoWin,
        PpMethod::Refund,
        PpMethod::EndRound,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PpMethod::Authenticate => "authenticate",
            PpMethod::Balance => "balance",
            PpMethod::Bet => "bet",
            PpMethod::Result => "result",
            PpMethod::BonusWin => "bonusWin",
            PpMethod::JackpotWin => "jackpotWin",
            PpMethod::PromoWin => "promoWin",
            PpMethod::Refund => "refund",
            PpMethod::EndRound => "endRound",
        }
    }
}

/// What every money-moving method of a round names.
const MONEY: &[&str] = &["gameId", "roundId", "amount", "reference", "timestamp"];

/// The parameters each method is documented with (the Pragmatic Play integration API and its
/// published derivatives), besides `hash`, `userId`, `providerId`, `token`, `currency` and
/// `platform`, which any method may carry; each method's list in parts.
const PARAMETERS: [(PpMethod, &[&[&str]]); 9] = [
    (
        PpMethod::Authenticate,
        &[&[
            "gameId",
            "ipAddress",
            "chosenBalance",
            "launchingType",
            "previousToken",
        ]],
    ),
    (PpMethod::Balance, &[]),
    (
        PpMethod::Bet,
        &[
            MONEY,
            &[
                "roundDetails",
                "bonusCode",
                "language",
                "jackpotContribution",
            ],
            &["jackpotDetails", "jackpotId", "ipAddress"],
        ],
    ),
    (
        PpMethod::Result,
        &[
            MONEY,
            &[
                "roundDetails",
                "bonusCode",
                "promoWinAmount",
                "promoWinReference",
            ],
            &["promoCampaignID", "promoCampaignType"],
            &["specPrizeAmount", "specPrizeCode", "specPrizeType"],
        ],
    ),
    (
        PpMethod::BonusWin,
        &[
            MONEY,
            &["bonusCode", "requestId"],
            &["specPrizeAmount", "specPrizeCode", "specPrizeType"],
        ],
    ),
    (
        PpMethod::JackpotWin,
        &[MONEY, &["jackpotId", "jackpotDetails", "instanceId"]],
    ),
    (
        PpMethod::PromoWin,
        &[MONEY, &["campaignId", "campaignType", "dataType"]],
    ),
    (PpMethod::Refund, &[MONEY, &["roundDetails", "bonusCode"]]),
    (
        PpMethod::EndRound,
        &[&["gameId", "roundId", "roundDetails", "bonusCode", "win"]],
    ),
];

/// A parameter the documentation gives to other methods but not to `method`, if any.
fn foreign_parameter<'a>(
    method: PpMethod,
    params: impl IntoIterator<Item = &'a str>,
) -> Option<&'static str> {
    let own = PARAMETERS
        .iter()
        .find(|(m, _)| *m == method)
        .map_or(&[][..], |(_, parts)| *parts);
    params
        .into_iter()
        .filter(|key| !own.iter().any(|part| part.contains(key)))
        .find_map(|key| {
            PARAMETERS
                .iter()
                .flat_map(|(_, parts)| parts.iter().copied().flatten())
                .find(|known| **known == key)
                .copied()
        })
}

/// `body` with the value of every `hash` parameter replaced by `redacted`, every other byte
/// as received.
fn redact_hash(body: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    // The key as the signature check reads it (percent-decoded), so no spelling keeps it.
    let is_hash = |pair: &[u8]| {
        form_urlencoded::parse(pair)
            .next()
            .is_some_and(|(key, _)| key == HASH_PARAM)
    };
    if !body.split(|b| *b == b'&').any(is_hash) {
        return std::borrow::Cow::Borrowed(body);
    }
    let pairs: Vec<&[u8]> = body
        .split(|b| *b == b'&')
        .map(|pair| {
            if is_hash(pair) {
                &b"hash=redacted"[..]
            } else {
                pair
            }
        })
        .collect();
    std::borrow::Cow::Owned(pairs.join(&b'&'))
}

/// What an answer echoes: the method (refunds answer differently) and the call's reference.
#[derive(Debug, Clone)]
pub struct PpEcho {
    method: PpMethod,
}

/// The parameter carrying the signature.
pub const HASH_PARAM: &str = "hash";

/// Signs `params` (any order, without `hash`) as a Pragmatic-style provider does: the value of
/// the `hash` parameter to add.
pub fn sign(params: &[(&str, &str)], secret: &[u8]) -> String {
    hex::encode(digest(params.iter().copied(), secret))
}

fn digest<'a>(params: impl Iterator<Item = (&'a str, &'a str)>, secret: &[u8]) -> [u8; 16] {
    let mut sorted: Vec<(&str, &str)> = params.filter(|(k, _)| *k != HASH_PARAM).collect();
    // Stable: repeated keys keep the order they were received in.
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let mut md5 = Md5::new();
    for (i, (k, v)) in sorted.iter().enumerate() {
        if i > 0 {
            md5.update(b"&");
        }
        md5.update(k.as_bytes());
        md5.update(b"=");
        md5.update(v.as_bytes());
    }
    md5.update(secret);
    md5.finalize().into()
}

fn params(body: &Bytes) -> Vec<(String, String)> {
    form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

impl Dialect for Pragmatic {
    type Action = PpMethod;
    type Echo = PpEcho;
    const CREDENTIALS: &'static str =
        "MD5 over the sorted parameters and the secret (hash parameter)";

    fn kind(&self) -> DialectKind {
        DialectKind::Pragmatic
    }

    fn action(&self, path: &str) -> Option<PpMethod> {
        let method = path.strip_suffix(".html")?;
        PpMethod::ALL.into_iter().find(|m| m.as_str() == method)
    }

    fn action_label(&self, action: PpMethod) -> &'static str {
        action.as_str()
    }

    fn verify(&self, provider: &Provider, inbound: &Inbound<'_, PpMethod>) -> Result<(), Refusal> {
        let params = params(inbound.body);
        let mut hashes = params.iter().filter(|(k, _)| k == HASH_PARAM);
        let given = match (hashes.next(), hashes.next()) {
            (None, _) => return Err(Refusal::Signature(signature::Refusal::Missing)),
            (Some(_), Some(_)) => return Err(Refusal::Signature(signature::Refusal::Malformed)),
            (Some((_, v)), None) => {
                hex::decode(v).map_err(|_| Refusal::Signature(signature::Refusal::Malformed))?
            }
        };
        let pairs = || params.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        any_secret(provider, |secret| {
            bool::from(digest(pairs(), secret).ct_eq(&given[..]))
        })
    }

    fn redact_body<'a>(&self, body: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
        redact_hash(body)
    }

    fn unbound_signature(&self, inbound: &Inbound<'_, PpMethod>) -> Option<[u8; 16]> {
        let params = params(inbound.body);
        let (_, hash) = params.iter().find(|(k, _)| k == HASH_PARAM)?;
        hex::decode(hash).ok()?.try_into().ok()
    }

    fn decode(
        &self,
        provider: &Provider,
        inbound: &Inbound<'_, PpMethod>,
    ) -> Result<Decoded<PpEcho>, Refusal> {
        let method = *inbound.action;
        let params = params(inbound.body);
        if let Some(key) = foreign_parameter(method, params.iter().map(|(k, _)| k.as_str())) {
            let why = format!("not a parameter of {}", method.as_str());
            return Err(Refusal::malformed(key, why));
        }
        let get = |key: &'static str| -> Result<&str, Refusal> {
            let mut values = params.iter().filter(|(k, _)| k == key);
            match (values.next(), values.next()) {
                (Some((_, v)), None) => Ok(v.as_str()),
                (None, _) => Err(Refusal::malformed(key, "missing")),
                (Some(_), Some(_)) => Err(Refusal::malformed(key, "given twice")),
            }
        };
        let maybe = |key: &str| {
            params
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        let echo = PpEcho { method };
        let mut promotion = false;
        let player = id(PlayerRef::new(get("userId")?), "userId")?;
        let Some(currency) = wallet_currency(maybe("currency"), provider) else {
            return Ok(Decoded::UnsupportedCurrency {
                player: Some(player),
                echo,
            });
        };
        let money = |tx: &str| -> Result<Money, Refusal> {
            Ok(Money {
                tx: id(ProviderTxId::new(tx), "reference")?,
                currency,
                amount_minor: money::parse_minor(get("amount")?, currency.exponent)
                    .map_err(|e| Refusal::malformed("amount", e.to_string()))?,
                round: id(RoundId::new(get("roundId")?), "roundId")?,
                game: id(GameId::new(get("gameId")?), "gameId")?,
                round_closed: false,
            })
        };
        let action = match method {
            PpMethod::Authenticate | PpMethod::Balance | PpMethod::BonusWin => {
                Action::Balance { currency: None }
            }
            PpMethod::Bet => Action::Bet {
                money: money(get("reference")?)?,
                session: None,
            },
            PpMethod::Result | PpMethod::JackpotWin | PpMethod::PromoWin => {
                if params.iter().any(|(k, _)| k == "promoWinAmount") {
                    return Err(Refusal::malformed(
                        "promoWinAmount",
                        "a second payout in one call is not supported yet",
                    ));
                }
                promotion = method == PpMethod::PromoWin;
                Action::Win {
                    money: money(get("reference")?)?,
                    bet_tx: None,
                }
            }
            PpMethod::Refund => {
                let reference = get("reference")?;
                Action::Rollback {
                    tx: id(ProviderTxId::derived("", reference, ":refund"), "reference")?,
                    reference: id(ProviderTxId::new(reference), "reference")?,
                    round: optional(maybe("roundId").map(RoundId::new), "roundId")?,
                    game: optional(maybe("gameId").map(GameId::new), "gameId")?,
                }
            }
            PpMethod::EndRound => Action::EndRound {
                round: id(RoundId::new(get("roundId")?), "roundId")?,
                game: optional(maybe("gameId").map(GameId::new), "gameId")?,
            },
        };
        let mut command = provider.command(player, action);
        // Promotions have no bet.
        command.policy.wins_without_bet_allowed |= promotion;
        Ok(Decoded::Command(command, echo))
    }

    fn render(&self, outcome: Outcome<'_, PpEcho>) -> http::Response<Body> {
        let reply = match outcome {
            Outcome::Answered(answer, echo) => answered(answer, echo),
            Outcome::Refused(refusal, _) => Reply {
                error: refusal_code(refusal),
                description: refusal.message(),
                ..Reply::default()
            },
        };
        // Always 200: the code in the body says final or retry.
        json(StatusCode::OK, &reply)
    }
}

/// The answer body: `cash` and `bonus` are JSON numbers written from exact decimals.
#[derive(Debug, Default, Serialize)]
struct Reply {
    error: u16,
    description: String,
    #[serde(rename = "transactionId", skip_serializing_if = "Option::is_none")]
    transaction_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    currency: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cash: Option<Box<RawValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bonus: Option<Box<RawValue>>,
}

fn answered(answer: &Answer, echo: &PpEcho) -> Reply {
    let error = code(answer.code);
    let number =
        |minor: i64, exponent: u8| RawValue::from_string(money::format_minor(minor, exponent)).ok();
    let transaction_id = match (echo.method, answer.code) {
        // Nothing refunded (the bet was never seen, or had failed): success, no transaction.
        (PpMethod::Refund, Code::Ok) if !answer.money_moved => Some(String::new()),
        _ => answer.operator_tx_id.map(|id| id.to_string()),
    };
    Reply {
        error,
        description: if error == 0 {
            "Success".into()
        } else {
            answer.code.as_str().into()
        },
        transaction_id,
        currency: answer.currency.map(|c| c.code().to_string()),
        cash: answer
            .currency
            .and_then(|c| number(answer.balance_minor, c.exponent)),
        bonus: answer
            .currency
            .and_then(|c| number(answer.bonus_minor, c.exponent)),
    }
}

fn code(code: Code) -> u16 {
    match code {
        Code::Ok => 0,
        Code::InsufficientFunds => 1,
        Code::UnknownPlayer => 2,
        Code::LimitExceeded | Code::RoundClosed => 3,
        Code::InvalidSession => 4,
        Code::PlayerBlocked => 6,
        Code::CurrencyMismatch => 7,
        Code::BetNotSeen => 100,
        Code::TransactionRolledBack
        | Code::RollbackNotPermitted
        | Code::DuplicateMismatch
        | Code::TransactionNotFound => 120,
    }
}

fn refusal_code(refusal: &Refusal) -> u16 {
    match refusal {
        Refusal::Signature(_) => 5,
        Refusal::UnknownAction(_)
        | Refusal::MethodNotAllowed(_)
        | Refusal::BodyTooLarge
        | Refusal::BodyUnreadable
        | Refusal::Malformed { .. } => 7,
        Refusal::BodyTimeout | Refusal::Unavailable(_) | Refusal::InFlight => 100,
        Refusal::Disabled | Refusal::ForbiddenSource(_) => 120,
    }
}

#[cfg(test)]
mod tests {
    use super::redact_hash;

    /// Issue 33 (9): traces keep no signature, however the key is spelled; every other byte
    /// stays as received.
    #[test]
    fn the_hash_is_blanked_and_nothing_else_changes() {
        let kept = |body: &str| String::from_utf8(redact_hash(body.as_bytes()).into_owned());
        assert_eq!(
            kept("userId=p%201&hash=abc&amount=1.00").unwrap(),
            "userId=p%201&hash=redacted&amount=1.00"
        );
        assert_eq!(kept("h%61sh=abc&x=1").unwrap(), "hash=redacted&x=1");
        assert_eq!(kept("userId=p1&hashish=1").unwrap(), "userId=p1&hashish=1");
    }
}
