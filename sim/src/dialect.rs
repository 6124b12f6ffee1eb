//! The simulated providers' wire formats: how each dialect encodes a model operation, signs
//! an attempt (afresh each time), breaks one on purpose, and how its answers read back as a
//! common reply (the dialect's status, the balance in EUR as `"12.34"`, the operator's id).
//!
//! The simulator assumes the demo providers' policies (see `config/demo.toml`): the
//! Evolution-style provider answers a rollback of an unknown bet `BET_DOES_NOT_EXIST`, the
//! Pragmatic-style one asks for a retry when a result comes before any bet of its round.

use std::time::{SystemTime, UNIX_EPOCH};

use dialects::wire::Response;
use serde_json::json;
use serde_json::value::RawValue;

use crate::model::Op;

/// Which wire format a simulated provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Native,
    Pragmatic,
    Evolution,
    Hub88,
    SoftSwiss,
}

impl Kind {
    pub fn parse(name: &str) -> Option<Kind> {
        Some(match name {
            "native" => Kind::Native,
            "pragmatic" => Kind::Pragmatic,
            "evolution" => Kind::Evolution,
            "hub88" => Kind::Hub88,
            "softswiss" => Kind::SoftSwiss,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Native => "native",
            Kind::Pragmatic => "pragmatic",
            Kind::Evolution => "evolution",
            Kind::Hub88 => "hub88",
            Kind::SoftSwiss => "softswiss",
        }
    }
}

/// The demo providers of `config/demo.toml`: code, dialect, secret or token (the Hub88-style
/// one signs with the private key beside its public one in `config/keys/`).
pub const DEMO: [(&str, Kind, &str); 5] = [
    ("demo", Kind::Native, "demo-secret"),
    ("demo-pp", Kind::Pragmatic, "demo-pp-secret"),
    ("demo-evo", Kind::Evolution, "demo-evo-token"),
    ("demo-hub88", Kind::Hub88, ""),
    ("demo-ss", Kind::SoftSwiss, "demo-ss-secret"),
];

/// One simulated provider: its code, dialect and credentials.
#[derive(Clone)]
pub struct Provider {
    pub code: String,
    pub kind: Kind,
    /// The shared secret or token (unused by Hub88-style providers).
    pub secret: Vec<u8>,
    /// The private key Hub88-style providers sign with.
    pub hub88_key: Option<rsa::RsaPrivateKey>,
    /// The currency its calls name (two decimals; EUR unless set with [`Provider::in_currency`]).
    pub currency: String,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Provider({} {:?})", self.code, self.kind)
    }
}

/// What a model operation is on the wire, before it is signed.
#[derive(Debug, Clone)]
pub struct Encoded {
    /// The path after `/api/provider-callback/{code}/`.
    pub path: String,
    pub body: Vec<u8>,
    /// The transaction id the answers are compared by (checker d).
    pub tx: Option<String>,
    pub op: OpKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Bet,
    Win,
    Rollback,
    EndRound,
    Balance,
}

/// How an attempt is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Send {
    Signed,
    WrongSecret,
    /// A signature from an hour ago (native); a wrong one where signatures carry no time.
    Stale,
    Malformed,
}

/// A request ready to send.
pub struct Signed {
    pub path_and_query: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

/// What one attempt produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// A final answer, normalized: the dialect's status, the balance as `"12.34"`.
    Final(Response),
    /// A refusal of the request itself (signature, syntax): final too.
    Refused(u16, String),
    /// No answer, a timeout, or a retryable answer: outcome unknown.
    Unknown(String),
}

pub(crate) fn euros(minor: i64) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

/// Minor units of a decimal text such as `998.5` or `998.50` (EUR).
pub(crate) fn minor_of(text: &str) -> Option<i64> {
    settlement::money::parse_minor(text, 2).ok()
}

impl Provider {
    /// A provider of dialect `kind` with this secret (and, for Hub88-style, the PEM private
    /// key file it signs with).
    pub fn new(
        code: &str,
        kind: Kind,
        secret: &str,
        hub88_key_file: Option<&std::path::Path>,
    ) -> Result<Provider, String> {
        let hub88_key = match (kind, hub88_key_file) {
            (Kind::Hub88, Some(file)) => {
                let pem = std::fs::read_to_string(file)
                    .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
                Some(dialects::hub88::private_key_from_pem(&pem)?)
            }
            (Kind::Hub88, None) => {
                return Err(format!("{code}: a Hub88-style provider needs a key"))
            }
            _ => None,
        };
        Ok(Provider {
            code: code.to_string(),
            kind,
            secret: secret.as_bytes().to_vec(),
            hub88_key,
            currency: "EUR".to_string(),
        })
    }

    /// The same provider naming `currency` in its calls.
    pub fn in_currency(mut self, currency: &str) -> Provider {
        self.currency = currency.to_string();
        self
    }

    /// A demo provider by code.
    pub fn demo(code: &str, hub88_key_file: &std::path::Path) -> Result<Provider, String> {
        let (code, kind, secret) = DEMO
            .iter()
            .find(|(c, _, _)| *c == code)
            .ok_or_else(|| format!("{code} is not a demo provider"))?;
        Provider::new(code, *kind, secret, Some(hub88_key_file))
    }

    /// Wins name the bet they pay (otherwise they settle the round's open bets).
    pub fn wins_name_bets(&self) -> bool {
        matches!(self.kind, Kind::Native | Kind::Hub88 | Kind::Evolution)
    }

    /// Wins must name a bet (promotions aside).
    pub fn wins_need_named_bets(&self) -> bool {
        self.kind == Kind::Evolution
    }

    /// A win must not come before any applied bet of its round (it would be told to retry).
    pub fn wins_wait_for_bets(&self) -> bool {
        self.kind == Kind::Pragmatic
    }

    /// The dialect has a call that ends a round.
    pub fn ends_rounds(&self) -> bool {
        matches!(self.kind, Kind::Native | Kind::Pragmatic | Kind::SoftSwiss)
    }

    /// A rollback of an unknown transaction answers "not found" (still tombstoned).
    pub fn tombstone_not_found(&self) -> bool {
        self.kind == Kind::Evolution
    }

    /// The dialect's status for the core status the model predicts.
    pub fn expect(&self, op: OpKind, core: &str) -> String {
        let code = match self.kind {
            Kind::Native => core,
            Kind::Pragmatic => match core {
                "OK" => "0",
                "INSUFFICIENT_FUNDS" => "1",
                "UNKNOWN_PLAYER" => "2",
                "ROUND_CLOSED" => "3",
                _ => "120",
            },
            Kind::Evolution => match (core, op) {
                ("OK", _) => "OK",
                ("INSUFFICIENT_FUNDS", _) => "INSUFFICIENT_FUNDS",
                ("UNKNOWN_PLAYER", _) => "INVALID_SID",
                ("DUPLICATE_MISMATCH", OpKind::Bet) => "BET_ALREADY_EXIST",
                ("TRANSACTION_ROLLED_BACK", OpKind::Bet) => "FINAL_ERROR_ACTION_FAILED",
                ("TRANSACTION_NOT_FOUND", _) => "BET_DOES_NOT_EXIST",
                ("ROUND_CLOSED", _) => "FINAL_ERROR_ACTION_FAILED",
                _ => "BET_ALREADY_SETTLED",
            },
            Kind::Hub88 => match core {
                "OK" => "RS_OK",
                "INSUFFICIENT_FUNDS" => "RS_ERROR_NOT_ENOUGH_MONEY",
                "UNKNOWN_PLAYER" => "RS_ERROR_INVALID_TOKEN",
                "TRANSACTION_ROLLED_BACK" => "RS_ERROR_TRANSACTION_ROLLED_BACK",
                "DUPLICATE_MISMATCH" => "RS_ERROR_DUPLICATE_TRANSACTION",
                "TRANSACTION_NOT_FOUND" => "RS_ERROR_TRANSACTION_DOES_NOT_EXIST",
                _ => "RS_ERROR_UNKNOWN",
            },
            Kind::SoftSwiss => match core {
                "OK" => "OK",
                "INSUFFICIENT_FUNDS" => "100",
                "UNKNOWN_PLAYER" => "101",
                _ => "400",
            },
        };
        code.to_string()
    }

    /// A model operation on the wire, unsigned.
    pub fn encode(&self, player: &str, op: &Op) -> Encoded {
        let (kind, tx) = match op {
            Op::Bet { tx, .. } => (OpKind::Bet, Some(tx.clone())),
            Op::Win { tx, .. } => (OpKind::Win, Some(tx.clone())),
            Op::Rollback { tx, .. } => (OpKind::Rollback, Some(tx.clone())),
            Op::EndRound { .. } => (OpKind::EndRound, None),
            Op::Balance => (OpKind::Balance, None),
        };
        let currency = self.currency.as_str();
        let (path, body) = match self.kind {
            Kind::Native => native(player, currency, op),
            Kind::Pragmatic => pragmatic(player, op),
            Kind::Evolution => evolution(player, currency, op),
            Kind::Hub88 => hub88(player, currency, op),
            Kind::SoftSwiss => softswiss(player, currency, op),
        };
        Encoded {
            path,
            body,
            tx,
            op: kind,
        }
    }

    /// Signs (or breaks) `encoded` for one attempt.
    pub fn sign(&self, encoded: &Encoded, send: Send) -> Signed {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let wrong = send == Send::WrongSecret || (send == Send::Stale && self.kind != Kind::Native);
        let secret: &[u8] = if wrong {
            b"not-the-secret-at-all"
        } else {
            &self.secret
        };
        let body = match (send, self.kind) {
            // A form cut short is still a form (of other values): drop the player instead.
            (Send::Malformed, Kind::Pragmatic) => String::from_utf8_lossy(&encoded.body)
                .split('&')
                .filter(|pair| !pair.starts_with("userId="))
                .collect::<Vec<_>>()
                .join("&")
                .into_bytes(),
            // JSON cut short is not JSON.
            (Send::Malformed, _) => encoded.body[..encoded.body.len() / 2].to_vec(),
            _ => encoded.body.clone(),
        };
        let mut path_and_query = encoded.path.clone();
        let mut headers = Vec::new();
        let body = match self.kind {
            Kind::Native => {
                let t = if send == Send::Stale {
                    now - 3_600
                } else {
                    now
                };
                headers.push(("x-signature", dialects::wire::sign_native(secret, t, &body)));
                body
            }
            Kind::Pragmatic => {
                let text = String::from_utf8_lossy(&body).into_owned();
                let params: Vec<(String, String)> = form_urlencoded::parse(text.as_bytes())
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect();
                let pairs: Vec<(&str, &str)> = params
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                let hash = dialects::pragmatic::sign(&pairs, secret);
                format!("{text}&hash={hash}").into_bytes()
            }
            Kind::Evolution => {
                let token = String::from_utf8_lossy(secret).into_owned();
                path_and_query = format!("{path_and_query}?authToken={token}");
                body
            }
            Kind::Hub88 => {
                let key = self
                    .hub88_key
                    .as_ref()
                    .expect("a Hub88-style provider has a key");
                let mut signature = dialects::hub88::sign(&body, key);
                if wrong {
                    // Valid base64 of the right length, but not this body's signature.
                    signature = dialects::hub88::sign(b"something else", key);
                }
                headers.push(("x-hub88-signature", signature));
                body
            }
            Kind::SoftSwiss => {
                headers.push(("x-request-sign", dialects::softswiss::sign(&body, secret)));
                body
            }
        };
        Signed {
            path_and_query,
            headers,
            body,
        }
    }

    /// Reads an answer.
    pub fn classify(&self, status: u16, body: &[u8]) -> Attempt {
        let text = String::from_utf8_lossy(body).into_owned();
        let refused = |what: String| Attempt::Refused(status, what);
        let unknown = |what: String| Attempt::Unknown(what);
        if status >= 500 && self.kind != Kind::SoftSwiss {
            return unknown(format!("HTTP {status}"));
        }
        match self.kind {
            Kind::Native => {
                let parsed: Option<Response> = serde_json::from_slice(body).ok();
                match (status, parsed) {
                    (200, Some(r)) => Attempt::Final(r),
                    (s, Some(r)) => Attempt::Refused(s, r.status),
                    _ => refused(text),
                }
            }
            Kind::Pragmatic => {
                #[derive(serde::Deserialize)]
                struct Reply<'a> {
                    error: u16,
                    #[serde(default, rename = "transactionId")]
                    transaction_id: Option<String>,
                    #[serde(default, borrow)]
                    cash: Option<&'a RawValue>,
                    #[serde(default, borrow)]
                    bonus: Option<&'a RawValue>,
                }
                let Ok(reply) = serde_json::from_slice::<Reply<'_>>(body) else {
                    return refused(text);
                };
                match reply.error {
                    100 => unknown("error 100".into()),
                    5 | 7 => refused(format!("error {}", reply.error)),
                    code => {
                        let cash = reply.cash.and_then(|c| minor_of(c.get()));
                        let bonus = reply.bonus.and_then(|b| minor_of(b.get())).unwrap_or(0);
                        Attempt::Final(normalized(
                            code.to_string(),
                            cash.map(|c| c + bonus),
                            reply.transaction_id,
                        ))
                    }
                }
            }
            Kind::Evolution => {
                #[derive(serde::Deserialize)]
                struct Reply<'a> {
                    status: String,
                    #[serde(default, borrow)]
                    balance: Option<&'a RawValue>,
                    #[serde(default, borrow)]
                    bonus: Option<&'a RawValue>,
                }
                let Ok(reply) = serde_json::from_slice::<Reply<'_>>(body) else {
                    return refused(text);
                };
                match reply.status.as_str() {
                    "TEMPORARY_ERROR" | "OPERATION_IN_PROCESS" => unknown(reply.status),
                    "INVALID_TOKEN_ID" | "INVALID_PARAMETER" => refused(reply.status),
                    _ => {
                        let balance = reply.balance.and_then(|b| minor_of(b.get()));
                        let bonus = reply.bonus.and_then(|b| minor_of(b.get())).unwrap_or(0);
                        Attempt::Final(normalized(reply.status, balance.map(|b| b + bonus), None))
                    }
                }
            }
            Kind::Hub88 => {
                #[derive(serde::Deserialize)]
                struct Reply {
                    status: String,
                    #[serde(default)]
                    balance: Option<i64>,
                }
                let Ok(reply) = serde_json::from_slice::<Reply>(body) else {
                    return refused(text);
                };
                match reply.status.as_str() {
                    "RS_ERROR_TIMEOUT" => unknown(reply.status),
                    "RS_ERROR_INVALID_SIGNATURE"
                    | "RS_ERROR_WRONG_SYNTAX"
                    | "RS_ERROR_WRONG_TYPES" => refused(reply.status),
                    _ => Attempt::Final(normalized(
                        reply.status,
                        reply.balance.map(|b| b / 1_000),
                        None,
                    )),
                }
            }
            Kind::SoftSwiss => {
                #[derive(serde::Deserialize)]
                struct Reply {
                    #[serde(default)]
                    balance: Option<i64>,
                    #[serde(default)]
                    code: Option<u16>,
                    #[serde(default)]
                    transactions: Vec<Processed>,
                }
                #[derive(serde::Deserialize)]
                struct Processed {
                    tx_id: String,
                }
                let Ok(reply) = serde_json::from_slice::<Reply>(body) else {
                    return if status >= 500 {
                        unknown(text)
                    } else {
                        refused(text)
                    };
                };
                match status {
                    200 => Attempt::Final(normalized(
                        "OK".into(),
                        reply.balance,
                        reply.transactions.first().map(|t| t.tx_id.clone()),
                    )),
                    412 => Attempt::Final(normalized(
                        reply.code.unwrap_or(0).to_string(),
                        reply.balance,
                        None,
                    )),
                    s if s >= 500 => unknown(format!("HTTP {s}")),
                    _ => refused(text),
                }
            }
        }
    }
}

fn normalized(status: String, balance_minor: Option<i64>, id: Option<String>) -> Response {
    Response {
        status,
        balance: balance_minor.map(euros),
        currency: None,
        transaction_id: None,
        operator_transaction_id: id,
        duplicate: None,
        message: None,
    }
}

fn to_json(value: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&value).unwrap_or_default()
}

fn native(player: &str, currency: &str, op: &Op) -> (String, Vec<u8>) {
    let (action, body) = match op {
        Op::Bet { tx, amount, round } => (
            "bet",
            json!({"player_id": player, "currency": currency, "amount": euros(*amount),
                "transaction_id": tx, "round_id": round, "game_id": "sim-slot"}),
        ),
        Op::Win {
            tx,
            amount,
            round,
            bet,
            ..
        } => {
            let mut body = json!({"player_id": player, "currency": currency, "amount": euros(*amount),
                "transaction_id": tx, "round_id": round, "game_id": "sim-slot"});
            if let Some(bet) = bet {
                body["bet_transaction_id"] = json!(bet);
            }
            ("win", body)
        }
        Op::Rollback { tx, reference } => (
            "rollback",
            json!({"player_id": player, "transaction_id": tx, "reference_transaction_id": reference}),
        ),
        Op::Balance => ("balance", json!({"player_id": player})),
        Op::EndRound { round } => (
            "end-round",
            json!({"player_id": player, "round_id": round, "game_id": "sim-slot"}),
        ),
    };
    (action.to_string(), to_json(body))
}

fn form(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut f = form_urlencoded::Serializer::new(String::new());
    f.extend_pairs(pairs.iter().copied());
    f.finish().into_bytes()
}

fn pragmatic(player: &str, op: &Op) -> (String, Vec<u8>) {
    let money = |method: &str, reference: &str, amount: i64, round: &str| {
        let amount = euros(amount);
        (
            format!("{method}.html"),
            form(&[
                ("userId", player),
                ("gameId", "sim-slot"),
                ("roundId", round),
                ("amount", &amount),
                ("reference", reference),
                ("providerId", "sim"),
                ("timestamp", "1700000000000"),
            ]),
        )
    };
    match op {
        Op::Bet { tx, amount, round } => money("bet", tx, *amount, round),
        Op::Win {
            tx,
            amount,
            round,
            promo,
            ..
        } => money(
            if *promo { "promoWin" } else { "result" },
            tx,
            *amount,
            round,
        ),
        Op::Rollback { reference, .. } => (
            "refund.html".into(),
            form(&[
                ("userId", player),
                ("reference", reference),
                ("providerId", "sim"),
            ]),
        ),
        Op::Balance => ("balance.html".into(), form(&[("userId", player)])),
        Op::EndRound { round } => (
            "endRound.html".into(),
            form(&[
                ("userId", player),
                ("gameId", "sim-slot"),
                ("roundId", round),
            ]),
        ),
    }
}

fn evolution(player: &str, currency: &str, op: &Op) -> (String, Vec<u8>) {
    let call = |action: &str, id: &str, ref_id: &str, amount: i64, round: &str| {
        // The amount as a JSON number, written exactly.
        let text = format!(
            r#"{{"sid":"sim","userId":"{player}","uuid":"{id}","currency":"{currency}","game":{{"id":"{round}","type":"sim","details":{{"table":{{"id":"sim-table"}}}}}},"transaction":{{"id":"{id}","refId":"{ref_id}","amount":{}}}}}"#,
            euros(amount)
        );
        (action.to_string(), text.into_bytes())
    };
    match op {
        Op::Bet { tx, amount, round } => call("debit", tx, tx, *amount, round),
        Op::Win {
            tx,
            amount,
            round,
            bet: Some(bet),
            promo: false,
        } => call("credit", tx, bet, *amount, round),
        Op::Win {
            tx, amount, round, ..
        } => call("promo_payout", tx, tx, *amount, round),
        Op::Rollback { tx, reference } => call("cancel", tx, reference, 0, "sim-cancel"),
        Op::EndRound { .. } | Op::Balance => ("balance".into(), to_json(json!({"userId": player}))),
    }
}

fn hub88(player: &str, currency: &str, op: &Op) -> (String, Vec<u8>) {
    let body = |tx: &str, amount: i64, round: &str, reference: Option<&str>| {
        let mut body = json!({"user": player, "token": "sim", "request_uuid": tx,
            "game_code": "sim-slot", "currency": currency, "transaction_uuid": tx,
            "round": round, "round_closed": false, "amount": amount * 1_000});
        if let Some(reference) = reference {
            body["reference_transaction_uuid"] = json!(reference);
        }
        to_json(body)
    };
    match op {
        Op::Bet { tx, amount, round } => ("transaction/bet".into(), body(tx, *amount, round, None)),
        Op::Win {
            tx,
            amount,
            round,
            bet,
            ..
        } => (
            "transaction/win".into(),
            body(tx, *amount, round, bet.as_deref()),
        ),
        Op::Rollback { tx, reference } => (
            "transaction/rollback".into(),
            body(tx, 0, "sim-rollback", Some(reference)),
        ),
        Op::EndRound { .. } | Op::Balance => (
            "user/balance".into(),
            to_json(json!({"user": player, "request_uuid": "sim"})),
        ),
    }
}

fn softswiss(player: &str, currency: &str, op: &Op) -> (String, Vec<u8>) {
    let play = |round: &str, finished: bool, actions: serde_json::Value| {
        to_json(
            json!({"user_id": player, "currency": currency, "game": "sim-slot",
            "game_id": round, "finished": finished, "actions": actions}),
        )
    };
    match op {
        Op::Bet { tx, amount, round } => (
            "play".into(),
            play(
                round,
                false,
                json!([{"action": "bet", "action_id": tx, "amount": amount}]),
            ),
        ),
        Op::Win {
            tx, amount, round, ..
        } => (
            "play".into(),
            play(
                round,
                false,
                json!([{"action": "win", "action_id": tx, "amount": amount}]),
            ),
        ),
        Op::Rollback { tx, reference } => (
            "rollback".into(),
            to_json(
                json!({"user_id": player, "currency": currency, "game": "sim-slot",
                "actions": [{"action": "rollback", "action_id": tx, "original_action_id": reference}]}),
            ),
        ),
        Op::EndRound { round } => ("play".into(), play(round, true, json!([]))),
        Op::Balance => (
            "play".into(),
            to_json(json!({"user_id": player, "currency": currency, "game": "sim-slot"})),
        ),
    }
}
