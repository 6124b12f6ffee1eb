//! The one callback pipeline every dialect runs through: allowlist → action → read body →
//! verify → decode → dedup → settle → metrics → render, each exactly once. Dialects only
//! translate (see `Dialect`); everything here is the same for all of them.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use dialects::{Decoded, Dialect, Inbound, Outcome, Refusal};
use http_body_util::BodyExt;
use settlement::command::{Action, Answer, Command};
use settlement::fault::Plant;
use settlement::Code;
use smallvec::{smallvec, SmallVec};

use crate::dedup::{self, Lookup};
use crate::http::{read_body, Body, BodyError};
use crate::metrics::CallbackLabels;
use crate::registry::{caller_ip, Provider};
use crate::state::State;
use crate::trace::{self, Origin, Via};

/// When and from where a callback arrived: now from the wire, or as recorded for a replay
/// (whose time checks then judge the request as of its arrival).
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    pub peer: std::net::SocketAddr,
    pub at: SystemTime,
    pub origin: Origin,
}

impl Arrival {
    pub fn now(peer: std::net::SocketAddr) -> Arrival {
        Arrival {
            peer,
            at: SystemTime::now(),
            origin: Origin::Provider,
        }
    }
}

/// What the pipeline learnt of a callback on its way, for its trace record.
#[derive(Debug, Default)]
struct Capture {
    /// A record will be made (tracing is on, or this is a replay): only then are transaction
    /// ids copied out of the command.
    wanted: bool,
    caller: Option<std::net::IpAddr>,
    body: Bytes,
    read: Duration,
    verify: Duration,
    tx_ids: trace::TxIds,
    via: Option<Via>,
}

/// A callback's answer as sent, and the trace record kept of it (when it named transactions).
#[derive(Debug)]
pub struct Handled {
    pub response: http::Response<Body>,
    pub record: Option<trace::Record>,
}

impl Handled {
    /// The answer, the trace record handed to the trace writer.
    pub fn kept(self, state: &State) -> http::Response<Body> {
        if let Some(record) = self.record {
            state.trace.keep(record);
        }
        self.response
    }
}

/// Runs one callback for `provider` in `dialect` (`path` is what follows the provider code),
/// returning the trace record (made only when tracing is on or for a replay) beside the answer.
pub async fn handle<D: Dialect, B>(
    state: &Arc<State>,
    provider: &Provider,
    dialect: &D,
    path: &str,
    arrival: Arrival,
    request: http::Request<B>,
) -> Handled
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let started = Instant::now();
    let action = dialect.action(path);
    let (parts, body) = request.into_parts();
    let mut capture = Capture {
        wanted: state.trace.is_on() || arrival.origin == Origin::Replay,
        ..Capture::default()
    };
    let to = To {
        state,
        provider,
        dialect,
    };
    let result = answer(&to, action, &arrival, &parts, body, &mut capture).await;
    let (outcome, duplicate, response) = match result {
        Ok((answers, echo)) if answers.len() == 1 => (
            answers[0].code.as_str(),
            answers[0].duplicate,
            dialect.render(Outcome::Answered(&answers[0], &echo)),
        ),
        Ok((answers, echo)) => (
            // A unit is answered whole: OK, or the refusal every action shares.
            answers.first().map_or("OK", |a| a.code.as_str()),
            answers.iter().any(|a| a.duplicate),
            dialect.render_unit(&answers, &echo),
        ),
        Err((refusal, echo)) => {
            refused(provider, &refusal);
            (
                refusal.outcome(),
                false,
                dialect.render(Outcome::Refused(&refusal, echo.as_ref())),
            )
        }
    };
    let labels = CallbackLabels {
        provider: provider.id,
        code: &provider.code,
        dialect: dialect.kind().as_str(),
        action: action.map_or("unknown", |a| dialect.action_label(a)),
    };
    let handles = &state.callback_metrics;
    handles.answered(labels, outcome).increment(1);
    handles
        .timer(labels)
        .record(started.elapsed().as_secs_f64());
    if capture.tx_ids.is_empty() {
        return Handled {
            response,
            record: None,
        };
    }
    // The answer's bytes, kept beside the request's (a full body yields one frame at once).
    let (head, body) = response.into_parts();
    let answer = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(never) => match never {},
    };
    let record = trace::Record {
        provider_id: provider.id.0,
        tx_ids: capture.tx_ids,
        // A replay is judged as of the original's arrival, but it happened now.
        received_at: match arrival.origin {
            Origin::Provider => arrival.at,
            Origin::Replay => SystemTime::now(),
        },
        origin: arrival.origin,
        peer: arrival.peer,
        caller_ip: capture.caller.unwrap_or(arrival.peer.ip()),
        method: parts.method.clone(),
        target: dialect
            .redact_target(parts.uri.path_and_query().map_or("", |p| p.as_str()))
            .into_owned(),
        headers: trace::header_lines(&parts.headers),
        // A copy: the request's bytes are a slice of the connection's read buffer, which a
        // kept slice would pin until its segment is written, so every next request on the
        // connection would read into a new 8 KiB buffer.
        body: Bytes::copy_from_slice(&dialect.redact_body(&capture.body)),
        signature: D::CREDENTIALS,
        status: head.status.as_u16(),
        answer: answer.clone(),
        outcome,
        via: capture.via.unwrap_or(Via::Refused),
        duplicate,
        read: capture.read,
        verify: capture.verify,
        total: started.elapsed(),
    };
    Handled {
        response: http::Response::from_parts(head, Body::new(answer)),
        record: Some(record),
    }
}

type Failure<E> = (Refusal, Option<E>);

/// Who answers a callback: the gateway's state, the provider and its dialect.
struct To<'a, D> {
    state: &'a Arc<State>,
    provider: &'a Provider,
    dialect: &'a D,
}

/// A callback's answers: one for most, kept inline.
type Answers = SmallVec<[Answer; 1]>;

async fn answer<D: Dialect, B>(
    to: &To<'_, D>,
    action: Option<D::Action>,
    arrival: &Arrival,
    parts: &http::request::Parts,
    body: B,
    capture: &mut Capture,
) -> Result<(Answers, D::Echo), Failure<D::Echo>>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (state, provider, dialect) = (to.state, to.provider, to.dialect);
    let started = Instant::now();
    let refuse = |refusal| (refusal, None);
    let caller = caller_ip(
        arrival.peer.ip(),
        &parts.headers,
        &state.config.server.trusted_proxies,
    );
    capture.caller = Some(caller);
    if !provider.allows(caller) {
        return Err(refuse(Refusal::ForbiddenSource(caller)));
    }
    if parts.method != http::Method::POST {
        return Err(refuse(Refusal::MethodNotAllowed(parts.method.clone())));
    }
    let Some(action) = action else {
        let path = parts.uri.path().to_string();
        return Err(refuse(Refusal::UnknownAction(path)));
    };
    let body = read_body(&state.config.server, &parts.headers, body)
        .await
        .map_err(|e| {
            refuse(match e {
                BodyError::TooLarge => Refusal::BodyTooLarge,
                BodyError::Timeout => Refusal::BodyTimeout,
                BodyError::Broken => Refusal::BodyUnreadable,
            })
        })?;
    let read_at = Instant::now();
    capture.read = read_at - started;
    let inbound = Inbound {
        action: &action,
        headers: &parts.headers,
        query: parts.uri.query(),
        body: &body,
        now_s: unix_s(arrival.at),
    };
    // A replay is a stored callback that settled a transaction, so it was verified when it
    // arrived; traces keep no signature (`trace::header_lines`, `Dialect::redact_body`), so it
    // is not verified again.
    if arrival.origin == Origin::Provider {
        dialect.verify(provider, &inbound).map_err(refuse)?;
    }
    if let Some(digest) = dialect
        .unbound_signature(&inbound)
        .filter(|_| arrival.origin == Origin::Provider)
    {
        let method = dialect.action_label(action);
        if state.signed.note(provider.id.0, digest, method).is_err() {
            let other = crate::signature::Refusal::OtherMethod;
            return Err(refuse(Refusal::Signature(other)));
        }
    }
    capture.verify = read_at.elapsed();
    let decoded = dialect.decode(provider, &inbound).map_err(refuse)?;
    capture.body = body;
    // A disabled provider (maintenance, an incident) takes no new bets; what it already took
    // keeps settling (wins, rollbacks, end of round, balance), or players' money would stay
    // in flight. A unit with a bet in it is refused whole (units are atomic).
    if !provider.enabled && decoded.has_bet() {
        return Err((Refusal::Disabled, decoded.into_echo()));
    }
    match decoded {
        Decoded::Command(command, echo) => {
            if let Some(tx) = command.tx().filter(|_| capture.wanted) {
                capture.tx_ids.push(tx.as_str().to_string());
            }
            let seam = Seam {
                provider: &provider.code,
                dialect: dialect.kind().as_str(),
                wait_for_twin: dialect.waits_for_twins(),
            };
            match settle(state, command, started, seam).await {
                Ok((answer, via)) => {
                    capture.via = Some(via);
                    Ok((smallvec![answer], echo))
                }
                Err(refusal) => Err((refusal, Some(echo))),
            }
        }
        // Units skip the dedup index: a retry of a unit is answered from the database, where
        // each known action replays its stored answer.
        Decoded::Unit(commands, echo) => {
            if capture.wanted {
                capture.tx_ids.extend(
                    commands
                        .iter()
                        .filter_map(|c| c.tx().map(|t| t.as_str().to_string())),
                );
            }
            match state.settler.settle_unit_traced(commands).await {
                Ok((answers, settled)) => {
                    capture.via = Some(Via::Batch(settled));
                    Ok((Answers::from_vec(answers), echo))
                }
                Err(unavailable) => Err((Refusal::unsettled(unavailable), Some(echo))),
            }
        }
        Decoded::UnsupportedCurrency { player, echo } => Ok((
            smallvec![currency_mismatch(state, provider, player).await],
            echo,
        )),
    }
}

/// `CURRENCY_MISMATCH`, final, with the player's default wallet when there is one, so the
/// provider sees which currency the player plays in.
async fn currency_mismatch(
    state: &State,
    provider: &Provider,
    player: Option<settlement::command::PlayerRef>,
) -> Answer {
    let mut answer = Answer::bare(Code::CurrencyMismatch);
    if let Some(player) = player {
        let balance = provider.command(player, Action::Balance { currency: None });
        if let Ok(wallet) = state.settler.settle(balance).await {
            answer.currency = wallet.currency;
            answer.balance_minor = wallet.balance_minor;
            answer.bonus_minor = wallet.bonus_minor;
        }
    }
    answer
}

/// Logs and counts a refusal where the on-call engineer looks for it.
fn refused(provider: &Provider, refusal: &Refusal) {
    match refusal {
        Refusal::Signature(reason) => {
            tracing::info!(provider = %provider.code, reason = reason.as_str(), "signature refused");
            metrics::counter!(
                "wallet_signature_failures_total",
                "provider" => provider.code.clone(),
                "reason" => reason.as_str(),
            )
            .increment(1);
        }
        Refusal::Unavailable(unavailable) => {
            // Overloaded, deadline, storage or shutdown: the on-call engineer needs which.
            metrics::counter!("wallet_unavailable_total", "reason" => unavailable.as_str())
                .increment(1);
        }
        Refusal::ForbiddenSource(ip) => {
            tracing::info!(provider = %provider.code, %ip, "source address not allowed");
        }
        _ => {}
    }
    metrics::counter!(
        "wallet_refusals_total",
        "provider" => provider.code.clone(),
        "reason" => refusal.reason(),
    )
    .increment(1);
}

/// Through the dedup index for calls with a transaction id: a known answer is replayed, a
/// concurrent twin is awaited, anything else is settled (and its answer remembered).
/// What the dedup step needs to know of the caller: labels, and whether twins wait.
#[derive(Clone, Copy)]
struct Seam<'a> {
    provider: &'a str,
    dialect: &'static str,
    wait_for_twin: bool,
}

async fn settle(
    state: &State,
    command: Command,
    started: Instant,
    seam: Seam<'_>,
) -> Result<(Answer, Via), Refusal> {
    settle_unless_known(state, command, started, seam)
        .await
        .map_err(|e| e.unwrap_or(Refusal::InFlight))
}

/// The dedup index's part; `Err(None)` for a twin in flight that is not waited for.
async fn settle_unless_known(
    state: &State,
    command: Command,
    started: Instant,
    seam: Seam<'_>,
) -> Result<(Answer, Via), Option<Refusal>> {
    let unavailable = |u| Some(Refusal::unsettled(u));
    let settle_now = |command| async {
        let (answer, settled) = state
            .settler
            .settle_traced(command)
            .await
            .map_err(unavailable)?;
        Ok((answer, Via::Batch(settled)))
    };
    if command.tx().is_none() {
        return settle_now(command).await;
    }
    // Planted bugs (test builds only; always false otherwise), read here and nowhere else
    // in the gateway.
    let faults = state.settler.faults();
    if faults.planted(Plant::NoDedup) {
        return settle_now(command).await;
    }
    let altered_retry_answer = faults.planted(Plant::AlteredRetryAnswer);
    let tx = command.tx().expect("checked above");
    match state
        .dedup
        .begin(command.provider, tx.as_str(), command.fingerprint())
    {
        Lookup::Answered(answer) => {
            // The index's promise: a retry costs no database work, from request to answer.
            let timer =
                state
                    .callback_metrics
                    .dedup_hit(command.provider, seam.provider, seam.dialect);
            timer.record(started.elapsed().as_secs_f64());
            Ok((answer, Via::Index))
        }
        Lookup::Wait(_) if !seam.wait_for_twin => Err(None),
        Lookup::Wait(outcome) => Ok((dedup::wait(outcome).await.map_err(unavailable)?, Via::Twin)),
        Lookup::Settle(claim) => {
            let (outcome, settled) = match state.settler.settle_traced(command).await {
                Ok((answer, settled)) => (Ok(answer), Some(settled)),
                Err(e) => (Err(e), None),
            };
            if altered_retry_answer {
                let mut kept = outcome.clone();
                if let Ok(answer) = &mut kept {
                    answer.balance_minor += 1;
                }
                claim.finish(&kept);
            } else {
                claim.finish(&outcome);
            }
            let answer = outcome.map_err(unavailable)?;
            Ok((
                answer,
                Via::Batch(settled.expect("an answer comes with its commit")),
            ))
        }
    }
}

fn unix_s(at: SystemTime) -> i64 {
    at.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
