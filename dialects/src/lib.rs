//! The wire formats of game providers, one file per dialect: each checks a callback's
//! credentials on its raw bytes, decodes its body into a `settlement` command, and renders the
//! core's outcomes (answers and refusals) in its own terms, deciding which are final and which
//! ask for a retry. A dialect only translates: no money rule, no SQL, no dedup (those live in
//! `settlement` and in the gateway's callback pipeline).
//!
//! Also here, because providers and the tools that play them share them: the [`Kind`] of a
//! dialect, the runtime [`Provider`] (credentials, allowlist, policy), the native signature
//! (`signature`), the native wire types (`wire`) and each dialect's `sign`.

use std::net::IpAddr;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use settlement::batch::Unavailable;
use settlement::command::{Answer, Command, PlayerRef};

pub mod evolution;
pub mod hub88;
mod kind;
pub mod native;
pub mod pragmatic;
mod provider;
pub mod response;
pub mod signature;
pub mod softswiss;
pub mod wire;

pub use kind::Kind;
pub use provider::{same_ip, Provider};

use crate::response::Body;
use crate::signature::Secret;
use crate::Kind as DialectKind;

/// Why a callback was refused before anything was settled. Each dialect renders every case
/// in its own terms; `status` and `outcome` are the native (and default) rendering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The provider is configured but switched off (a final refusal).
    Disabled,
    /// The caller's address is not on the provider's allowlist.
    ForbiddenSource(IpAddr),
    /// The path names no action of the dialect.
    UnknownAction(String),
    /// Callbacks are POSTs.
    MethodNotAllowed(http::Method),
    BodyTooLarge,
    /// The body did not arrive within the request timeout.
    BodyTimeout,
    BodyUnreadable,
    /// The body (or a field of it) is not what the dialect accepts.
    Malformed {
        field: &'static str,
        reason: String,
    },
    /// Credentials missing or wrong.
    Signature(crate::signature::Refusal),
    /// Could not be settled now; retry.
    Unavailable(Unavailable),
    /// The same transaction is being settled by a concurrent twin; retry (for dialects that
    /// answer twins at once instead of holding them).
    InFlight,
}

impl Refusal {
    /// A settlement that gave no answer: retryable, but for a request whose data the
    /// database refuses (final, as a malformed request is).
    pub fn unsettled(unavailable: settlement::batch::Unavailable) -> Refusal {
        match unavailable {
            settlement::batch::Unavailable::Unstorable => {
                Refusal::malformed("request", unavailable.to_string())
            }
            other => Refusal::Unavailable(other),
        }
    }

    pub fn malformed(field: &'static str, reason: impl Into<String>) -> Refusal {
        Refusal::Malformed {
            field,
            reason: reason.into(),
        }
    }

    /// The HTTP status of the native rendering.
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::Disabled | Refusal::ForbiddenSource(_) => StatusCode::FORBIDDEN,
            Refusal::UnknownAction(_) => StatusCode::NOT_FOUND,
            Refusal::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Refusal::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Refusal::BodyUnreadable | Refusal::Malformed { .. } => StatusCode::BAD_REQUEST,
            Refusal::Signature(_) => StatusCode::UNAUTHORIZED,
            Refusal::Unavailable(_) | Refusal::InFlight => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The status code of the native rendering, also the `outcome` metric label.
    pub fn outcome(&self) -> &'static str {
        match self {
            Refusal::Disabled | Refusal::ForbiddenSource(_) => "FORBIDDEN",
            Refusal::UnknownAction(_)
            | Refusal::MethodNotAllowed(_)
            | Refusal::BodyTooLarge
            | Refusal::BodyTimeout
            | Refusal::BodyUnreadable
            | Refusal::Malformed { .. } => "MALFORMED_REQUEST",
            Refusal::Signature(_) => "INVALID_SIGNATURE",
            Refusal::Unavailable(_) | Refusal::InFlight => "TEMPORARY_ERROR",
        }
    }

    /// Why, for the `reason` metric label and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Disabled => "disabled",
            Refusal::ForbiddenSource(_) => "forbidden_source",
            Refusal::UnknownAction(_) => "unknown_action",
            Refusal::MethodNotAllowed(_) => "method_not_allowed",
            Refusal::BodyTooLarge => "body_too_large",
            Refusal::BodyTimeout => "body_timeout",
            Refusal::BodyUnreadable => "body_unreadable",
            Refusal::Malformed { .. } => "malformed",
            Refusal::Signature(s) => s.as_str(),
            Refusal::Unavailable(u) => u.as_str(),
            Refusal::InFlight => "in_flight",
        }
    }

    /// The message sent to the caller.
    pub fn message(&self) -> String {
        match self {
            Refusal::Disabled => "provider disabled".into(),
            Refusal::ForbiddenSource(_) => "source address not allowed".into(),
            Refusal::UnknownAction(action) => format!("unknown action {action:?}"),
            Refusal::MethodNotAllowed(method) => format!("callbacks are POST, not {method}"),
            Refusal::BodyTooLarge => "body too large".into(),
            Refusal::BodyTimeout => "body not received in time".into(),
            Refusal::BodyUnreadable => "body could not be read".into(),
            Refusal::Malformed { field: "", reason } => reason.clone(),
            Refusal::Malformed { field, reason } => format!("{field}: {reason}"),
            Refusal::Signature(s) => s.to_string(),
            Refusal::Unavailable(u) => u.to_string(),
            Refusal::InFlight => "the same transaction is being settled; retry".into(),
        }
    }
}

/// A wire id that must be there and fit (1 to 128 bytes).
pub(crate) fn id<T>(value: Option<T>, field: &'static str) -> Result<T, Refusal> {
    value.ok_or_else(|| Refusal::malformed(field, "must be 1 to 128 bytes"))
}

/// A wire id that may be absent, and must fit when present.
pub(crate) fn optional<T>(
    value: Option<Option<T>>,
    field: &'static str,
) -> Result<Option<T>, Refusal> {
    value.map(|v| id(v, field)).transpose()
}

/// The wallet currency a call names, or the provider's own when it names none; `None` for a
/// code the gateway does not settle (the dialect answers `Decoded::UnsupportedCurrency`).
pub(crate) fn wallet_currency(
    given: Option<&str>,
    provider: &Provider,
) -> Option<settlement::money::Currency> {
    match given {
        None => Some(provider.currency),
        Some(code) => settlement::money::Currency::from_code(code),
    }
}

/// A JSON body, or a malformed refusal saying why not.
pub(crate) fn json_body<'a, T: serde::Deserialize<'a>>(body: &'a [u8]) -> Result<T, Refusal> {
    serde_json::from_slice(body).map_err(|e| Refusal::malformed("body", e.to_string()))
}

/// A signature check's verdict.
pub(crate) fn verified(ok: bool) -> Result<(), Refusal> {
    if ok {
        Ok(())
    } else {
        Err(Refusal::Signature(crate::signature::Refusal::Mismatch))
    }
}

/// Whether `check` accepts any of the provider's secrets (current, previous); an empty secret
/// never does.
pub(crate) fn any_secret(
    provider: &Provider,
    check: impl Fn(&[u8]) -> bool,
) -> Result<(), Refusal> {
    verified(
        provider
            .secrets
            .iter()
            .map(Secret::as_bytes)
            .filter(|s| !s.is_empty())
            .any(check),
    )
}

/// A callback as received, after its body was read.
#[derive(Debug)]
pub struct Inbound<'a, A> {
    pub action: &'a A,
    pub headers: &'a HeaderMap,
    /// The query string, if any.
    pub query: Option<&'a str>,
    /// The raw bytes, exactly as received (what signatures cover).
    pub body: &'a Bytes,
    pub now_s: i64,
}

/// What a dialect made of a callback.
#[derive(Debug)]
pub enum Decoded<E> {
    /// A command to settle, and what the answer must echo.
    Command(Command, E),
    /// The actions of one multi-action callback: one player's, settled all or nothing.
    Unit(Vec<Command>, E),
    /// A well-formed currency the gateway does not settle: answered `CURRENCY_MISMATCH` with
    /// the player's default wallet (looked up when the player id is well-formed).
    UnsupportedCurrency { player: Option<PlayerRef>, echo: E },
}

impl<E> Decoded<E> {
    /// Whether it would take a new bet (a disabled provider's calls may not).
    pub fn has_bet(&self) -> bool {
        let bet = |c: &Command| matches!(c.action, settlement::command::Action::Bet { .. });
        match self {
            Decoded::Command(command, _) => bet(command),
            Decoded::Unit(commands, _) => commands.iter().any(bet),
            Decoded::UnsupportedCurrency { .. } => false,
        }
    }

    /// What the answer echoes, when the call is refused after decoding.
    pub fn into_echo(self) -> Option<E> {
        match self {
            Decoded::Command(_, echo)
            | Decoded::Unit(_, echo)
            | Decoded::UnsupportedCurrency { echo, .. } => Some(echo),
        }
    }
}

/// What the pipeline asks a dialect to render.
#[derive(Debug)]
pub enum Outcome<'a, E> {
    /// A business answer (settled, replayed from the dedup index, or a currency refusal).
    Answered(&'a Answer, &'a E),
    /// Refused before settlement; `echo` when the body had been decoded.
    Refused(&'a Refusal, Option<&'a E>),
}

/// One wire format.
pub trait Dialect: Send + Sync + 'static {
    /// The dialect's actions, parsed once from the path.
    type Action: Copy + Send + Sync + std::fmt::Debug;
    /// What an answer must echo from its request (ids, request uuids, ...).
    type Echo: Send + Sync + std::fmt::Debug;

    /// How `verify` checks a callback's credentials, in a few words (shown in traces).
    const CREDENTIALS: &'static str;

    fn kind(&self) -> DialectKind;

    /// The action named by the rest of the path (after the provider code).
    fn action(&self, path: &str) -> Option<Self::Action>;

    /// The action as a metric label.
    fn action_label(&self, action: Self::Action) -> &'static str;

    /// Whether a concurrent duplicate waits for its twin's outcome (the default) or is told
    /// at once to retry (`Refusal::InFlight`).
    fn waits_for_twins(&self) -> bool {
        true
    }

    /// Checks the callback's credentials on the raw bytes as received, before anything is
    /// parsed or looked up.
    fn verify(
        &self,
        provider: &Provider,
        inbound: &Inbound<'_, Self::Action>,
    ) -> Result<(), Refusal>;

    /// For a dialect whose signature covers a call's parameters but not its method: the
    /// signature, so the gateway can refuse it on a call to another method (`signed`).
    fn unbound_signature(&self, _inbound: &Inbound<'_, Self::Action>) -> Option<[u8; 16]> {
        None
    }

    /// Decodes the body into the core command.
    fn decode(
        &self,
        provider: &Provider,
        inbound: &Inbound<'_, Self::Action>,
    ) -> Result<Decoded<Self::Echo>, Refusal>;

    /// The request's path and query as a trace keeps it: a credential that is the shared
    /// secret itself (not a signature over the request) is blanked. Default: as received.
    fn redact_target<'a>(&self, target: &'a str) -> std::borrow::Cow<'a, str> {
        std::borrow::Cow::Borrowed(target)
    }

    /// The request's body as a trace keeps it: a signature carried in the body is blanked
    /// (a support agent who reads traces must not be able to send one again). Default: as
    /// received.
    fn redact_body<'a>(&self, body: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
        std::borrow::Cow::Borrowed(body)
    }

    /// The inverse of `redact_target` for a replay: the request was verified when it
    /// arrived, so its blanked credential is put back as the provider's current one.
    fn restore_target<'a>(
        &self,
        _provider: &Provider,
        target: &'a str,
    ) -> std::borrow::Cow<'a, str> {
        std::borrow::Cow::Borrowed(target)
    }

    /// Whether a replay's answer says what the original answer said. Default: the same bytes.
    fn same_answer(&self, original: &[u8], replayed: &[u8]) -> bool {
        original == replayed
    }

    /// Renders an outcome: HTTP status, headers and body in the dialect's terms.
    fn render(&self, outcome: Outcome<'_, Self::Echo>) -> http::Response<Body>;

    /// Renders the answers of a unit (one per action, in order), for dialects that decode
    /// multi-action callbacks; the others never see one.
    fn render_unit(&self, answers: &[Answer], echo: &Self::Echo) -> http::Response<Body> {
        match answers.first() {
            Some(first) => self.render(Outcome::Answered(first, echo)),
            None => self.render(Outcome::Refused(
                &Refusal::malformed("actions", "none"),
                Some(echo),
            )),
        }
    }
}
