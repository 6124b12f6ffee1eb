//! One scenario's conversation with the wallet: fresh ids, calls retried the way providers
//! retry them (until a final answer or the kit's patience runs out), the balance learned
//! through the dialect's own balance call, and every attempt kept for the report.

use std::time::{Duration, Instant};

use dialects::wire::Response;

use crate::client::{Attempt, Client, Send, Trip};
pub(crate) use crate::dialect::{euros as money, minor_of as minor};
use crate::dialect::{Encoded, Kind, OpKind, Provider};
use crate::model::Op;

/// One attempt, as the report shows it.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// What the scenario meant by it, e.g. `bet cert-…-1 (wrong secret)`.
    pub label: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub sent: String,
    /// `None` when no answer came (a timeout, a refused connection).
    pub status: Option<u16>,
    pub answer: String,
    pub elapsed: Duration,
}

impl Exchange {
    fn of(label: String, trip: &Trip) -> Exchange {
        let (status, answer) = match &trip.answer {
            Ok((status, body)) => (Some(*status), String::from_utf8_lossy(body).into_owned()),
            Err(why) => (None, why.clone()),
        };
        Exchange {
            label,
            path: trip.path.clone(),
            headers: trip
                .headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            sent: String::from_utf8_lossy(&trip.sent).into_owned(),
            status,
            answer,
            elapsed: trip.elapsed,
        }
    }
}

/// How long one attempt may wait for its answer.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// A scenario's conversation: its provider, player and the attempts made so far.
pub struct Session {
    client: Client,
    pub player: String,
    /// Unique to the run, so its ids never meet an earlier run's.
    tag: String,
    next: u32,
    /// How long a call may stay without a final answer (retried meanwhile).
    patience: Duration,
    pub exchanges: Vec<Exchange>,
}

impl Session {
    pub fn new(client: Client, player: String, tag: String, patience: Duration) -> Session {
        Session {
            client,
            player,
            tag,
            next: 0,
            patience,
            exchanges: Vec::new(),
        }
    }

    pub fn provider(&self) -> &Provider {
        self.client.provider()
    }

    pub fn kind(&self) -> Kind {
        self.provider().kind
    }

    /// A new id for a transaction or round, never used before by any run.
    pub fn id(&mut self, what: &str) -> String {
        self.next += 1;
        format!("cert-{}-{}-{what}", self.tag, self.next)
    }

    /// `op` for this session's player, on the wire.
    pub fn encode(&self, op: &Op) -> Encoded {
        self.provider().encode(&self.player, op)
    }

    /// One attempt, kept for the report.
    pub async fn once(&mut self, encoded: &Encoded, send: Send) -> Attempt {
        let trip = self.client.trip(encoded, send, ATTEMPT_TIMEOUT).await;
        self.exchanges
            .push(Exchange::of(label(encoded, send), &trip));
        trip.attempt
    }

    /// Attempts until a final answer (a refusal counts), as a provider retries; an error when
    /// none came within the patience.
    pub async fn until_final(&mut self, encoded: &Encoded) -> Result<Attempt, String> {
        let (exchanges, result) = until_final(&self.client, encoded, self.patience).await;
        self.exchanges.extend(exchanges);
        result
    }

    /// Sends `op` until final.
    pub async fn call(&mut self, op: &Op) -> Result<Attempt, String> {
        let encoded = self.encode(op);
        self.until_final(&encoded).await
    }

    /// Sends `op` and requires the dialect's OK; returns the answer.
    pub async fn ok(&mut self, op: &Op) -> Result<Response, String> {
        let encoded = self.encode(op);
        let answer = self.until_final(&encoded).await?;
        self.require_ok(encoded.op, &answer, &describe(&encoded))
            .cloned()
    }

    /// The answer, when it is the dialect's OK.
    pub fn require_ok<'a>(
        &self,
        op: OpKind,
        answer: &'a Attempt,
        what: &str,
    ) -> Result<&'a Response, String> {
        let ok = self.provider().expect(op, "OK");
        match answer {
            Attempt::Final(r) if r.status == ok => Ok(r),
            other => Err(format!("{what}: expected {ok}, got {}", show(other))),
        }
    }

    /// Sends every one of `encoded` at once, each until final; the answers in order.
    pub async fn at_once(&mut self, encoded: &[Encoded]) -> Vec<Result<Attempt, String>> {
        let tasks: Vec<_> = encoded
            .iter()
            .cloned()
            .map(|e| {
                let client = self.client.clone();
                let patience = self.patience;
                tokio::spawn(async move { until_final(&client, &e, patience).await })
            })
            .collect();
        let mut answers = Vec::new();
        for task in tasks {
            match task.await {
                Ok((exchanges, result)) => {
                    self.exchanges.extend(exchanges);
                    answers.push(result);
                }
                Err(e) => answers.push(Err(format!("task: {e}"))),
            }
        }
        answers
    }

    /// The player's balance in minor units, by the dialect's balance call.
    pub async fn balance(&mut self) -> Result<i64, String> {
        let encoded = self.encode(&Op::Balance);
        match self.until_final(&encoded).await? {
            Attempt::Final(r) => r
                .balance
                .as_deref()
                .and_then(minor)
                .ok_or_else(|| format!("balance call: no balance in {}", show_response(&r))),
            other => Err(format!("balance call: {}", show(&other))),
        }
    }

    /// Requires the balance to be `expected` (minor units) after `what`.
    pub async fn balance_is(&mut self, expected: i64, what: &str) -> Result<(), String> {
        let seen = self.balance().await?;
        if seen == expected {
            Ok(())
        } else {
            Err(format!(
                "after {what} the balance is {} (expected {}: {:+})",
                money(seen),
                money(expected),
                seen - expected
            ))
        }
    }
}

/// Attempts until final on `client`, with back-off; the attempts made and the final answer.
async fn until_final(
    client: &Client,
    encoded: &Encoded,
    patience: Duration,
) -> (Vec<Exchange>, Result<Attempt, String>) {
    let started = Instant::now();
    let mut exchanges = Vec::new();
    for attempt in 0u32.. {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis((10u64 << attempt.min(5)).min(250))).await;
        }
        let trip = client.trip(encoded, Send::Signed, ATTEMPT_TIMEOUT).await;
        exchanges.push(Exchange::of(label(encoded, Send::Signed), &trip));
        match trip.attempt {
            Attempt::Unknown(why) if started.elapsed() >= patience => {
                let what = describe(encoded);
                return (
                    exchanges,
                    Err(format!(
                        "{what}: no final answer in {:.1} s ({} attempts; last: {why})",
                        patience.as_secs_f32(),
                        attempt + 1
                    )),
                );
            }
            Attempt::Unknown(_) => {}
            answer => return (exchanges, Ok(answer)),
        }
    }
    unreachable!("the loop returns")
}

fn label(encoded: &Encoded, send: Send) -> String {
    let how = match send {
        Send::Signed => "",
        Send::WrongSecret => " (wrong secret)",
        Send::Stale => " (stale signature)",
        Send::Malformed => " (malformed)",
    };
    format!("{}{how}", describe(encoded))
}

/// `bet cert-…-3` or `balance`.
pub fn describe(encoded: &Encoded) -> String {
    let op = match encoded.op {
        OpKind::Bet => "bet",
        OpKind::Win => "win",
        OpKind::Rollback => "rollback",
        OpKind::EndRound => "end of round",
        OpKind::Balance => "balance",
    };
    match &encoded.tx {
        Some(tx) => format!("{op} {tx}"),
        None => format!("{op} ({})", encoded.path),
    }
}

/// An answer in a failure's reason.
pub fn show(answer: &Attempt) -> String {
    match answer {
        Attempt::Final(r) => show_response(r),
        Attempt::Refused(status, what) => format!("refused (HTTP {status}, {what})"),
        Attempt::Unknown(why) => format!("no final answer ({why})"),
    }
}

fn show_response(r: &Response) -> String {
    match &r.balance {
        Some(b) => format!("{} with balance {b}", r.status),
        None => r.status.clone(),
    }
}
