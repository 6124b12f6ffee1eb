//! The one callback pipeline every dialect runs through: allowlist → action → read body →
//! verify → decode → dedup → settle → metrics → render, each exactly once. Dialects only
//! translate (see `Dialect`); everything here is the same for all of them.

use std::sync::Arc;
use std::time::Instant;

use settlement::command::{Action, Answer, Command};
use settlement::fault::Plant;
use settlement::Code;

use super::{Decoded, Dialect, Inbound, Outcome, Refusal};
use crate::dedup::{self, Lookup};
use crate::http::{read_body, Body, BodyError};
use crate::registry::{caller_ip, Provider};
use crate::state::State;

/// Runs one callback for `provider` in `dialect`; `path` is what follows the provider code.
pub async fn run<D: Dialect>(
    state: &Arc<State>,
    provider: &Provider,
    dialect: &D,
    path: &str,
    peer: std::net::SocketAddr,
    request: http::Request<hyper::body::Incoming>,
) -> http::Response<Body> {
    let started = Instant::now();
    let action = dialect.action(path);
    let (outcome, response) = match answer(state, provider, dialect, action, peer, request).await {
        Ok((answers, echo)) if answers.len() == 1 => (
            answers[0].code.as_str(),
            dialect.render(Outcome::Answered(&answers[0], &echo)),
        ),
        Ok((answers, echo)) => (
            // A unit is answered whole: OK, or the refusal every action shares.
            answers.first().map_or("OK", |a| a.code.as_str()),
            dialect.render_unit(&answers, &echo),
        ),
        Err((refusal, echo)) => {
            refused(provider, &refusal);
            (
                refusal.outcome(),
                dialect.render(Outcome::Refused(&refusal, echo.as_ref())),
            )
        }
    };
    let action_label = action.map_or("unknown", |a| dialect.action_label(a));
    metrics::counter!(
        "wallet_callbacks_total",
        "provider" => provider.code.clone(),
        "dialect" => dialect.kind().as_str(),
        "action" => action_label,
        "outcome" => outcome,
    )
    .increment(1);
    metrics::histogram!(
        "wallet_callback_seconds",
        "provider" => provider.code.clone(),
        "action" => action_label,
    )
    .record(started.elapsed().as_secs_f64());
    response
}

type Failure<E> = (Refusal, Option<E>);

async fn answer<D: Dialect>(
    state: &Arc<State>,
    provider: &Provider,
    dialect: &D,
    action: Option<D::Action>,
    peer: std::net::SocketAddr,
    request: http::Request<hyper::body::Incoming>,
) -> Result<(Vec<Answer>, D::Echo), Failure<D::Echo>> {
    let started = Instant::now();
    let refuse = |refusal| (refusal, None);
    if !provider.enabled {
        return Err(refuse(Refusal::Disabled));
    }
    let caller = caller_ip(
        peer.ip(),
        request.headers(),
        &state.config.server.trusted_proxies,
    );
    if !provider.allows(caller) {
        return Err(refuse(Refusal::ForbiddenSource(caller)));
    }
    if request.method() != http::Method::POST {
        return Err(refuse(Refusal::MethodNotAllowed(request.method().clone())));
    }
    let Some(action) = action else {
        let path = request.uri().path().to_string();
        return Err(refuse(Refusal::UnknownAction(path)));
    };
    let (parts, body) = request.into_parts();
    let body = read_body(&state.config.server, &parts.headers, body)
        .await
        .map_err(|e| {
            refuse(match e {
                BodyError::TooLarge => Refusal::BodyTooLarge,
                BodyError::Timeout => Refusal::BodyTimeout,
                BodyError::Broken => Refusal::BodyUnreadable,
            })
        })?;
    let inbound = Inbound {
        action: &action,
        headers: &parts.headers,
        query: parts.uri.query(),
        body: &body,
        now_s: now_s(),
    };
    dialect.verify(provider, &inbound).map_err(refuse)?;
    match dialect.decode(provider, &inbound).map_err(refuse)? {
        Decoded::Command(command, echo) => {
            let seam = Seam {
                provider: &provider.code,
                dialect: dialect.kind().as_str(),
                wait_for_twin: dialect.waits_for_twins(),
            };
            match settle(state, command, started, seam).await {
                Ok(answer) => Ok((vec![answer], echo)),
                Err(refusal) => Err((refusal, Some(echo))),
            }
        }
        // Units skip the dedup index: a retry of a unit is answered from the database, where
        // each known action replays its stored answer.
        Decoded::Unit(commands, echo) => match state.settler.settle_unit(commands).await {
            Ok(answers) => Ok((answers, echo)),
            Err(unavailable) => Err((Refusal::Unavailable(unavailable), Some(echo))),
        },
        Decoded::UnsupportedCurrency { player, echo } => {
            Ok((vec![currency_mismatch(state, provider, player).await], echo))
        }
    }
}

/// `CURRENCY_MISMATCH`, final, with the player's default wallet when there is one, so the
/// provider sees which currency the player plays in.
async fn currency_mismatch(
    state: &State,
    provider: &Provider,
    player: Option<settlement::command::PlayerRef>,
) -> Answer {
    let mut answer = Answer {
        code: Code::CurrencyMismatch,
        currency: None,
        balance_minor: 0,
        bonus_minor: 0,
        operator_tx_id: None,
        duplicate: false,
        money_moved: false,
    };
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
) -> Result<Answer, Refusal> {
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
) -> Result<Answer, Option<Refusal>> {
    let unavailable = |u| Some(Refusal::Unavailable(u));
    let Some(tx) = command.tx() else {
        return state.settler.settle(command).await.map_err(unavailable);
    };
    // Planted bugs (test builds only; always false otherwise), read here and nowhere else
    // in the gateway.
    let faults = state.settler.faults();
    if faults.planted(Plant::NoDedup) {
        return state.settler.settle(command).await.map_err(unavailable);
    }
    let altered_retry_answer = faults.planted(Plant::AlteredRetryAnswer);
    match state
        .dedup
        .begin(command.provider, tx.as_str(), command.fingerprint())
    {
        Lookup::Answered(answer) => {
            // The index's promise: a retry costs no database work, from request to answer.
            metrics::histogram!(
                "wallet_dedup_hit_seconds",
                "provider" => seam.provider.to_string(),
                "dialect" => seam.dialect,
            )
            .record(started.elapsed().as_secs_f64());
            Ok(answer)
        }
        Lookup::Wait(_) if !seam.wait_for_twin => Err(None),
        Lookup::Wait(outcome) => dedup::wait(outcome).await.map_err(unavailable),
        Lookup::Settle(claim) => {
            let outcome = state.settler.settle(command).await;
            if altered_retry_answer {
                let mut kept = outcome.clone();
                if let Ok(answer) = &mut kept {
                    answer.balance_minor += 1;
                }
                claim.finish(&kept);
                return outcome.map_err(unavailable);
            }
            claim.finish(&outcome);
            outcome.map_err(unavailable)
        }
    }
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
