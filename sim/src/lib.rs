//! The provider simulator: plays game rounds concurrently over real signed HTTP, behaves like
//! real providers (every attempt re-signed, retries with back-off, wins and rollbacks retried
//! until final, a rollback when a bet's answer never came), injects faults, records a history
//! of every attempt and checks it, Jepsen-style, against its own model and the database:
//!
//! (a) each wallet equals the model, (b) each wallet equals the sum of its ledger rows,
//! (c) no transaction applied twice, (d) every final answer to one transaction id (and
//! payload) is the same one, however often and however late it was asked, (e) money is
//! conserved: the players hold their balances at the start plus what this run's ledger rows
//! moved, computed from the database alone; plus every final answer matches the model, and
//! every callback reaches a final answer within the run (one that never does is a violation,
//! not a dropped operation).
//!
//! Per player, one worker drives one operation at a time (concurrent duplicates of that one
//! operation excepted), so the model knows each answer before it arrives.
#![allow(clippy::float_arithmetic)] // rates in the summary, never money

pub mod certify;
mod check;
pub mod client;
pub mod dialect;
pub mod model;
mod report;
mod worker;

pub use report::Report;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use check::*;
use client::Client;
use model::PlayerModel;
use worker::*;

/// Fault rates (0.0 to 1.0), per operation.
#[derive(Debug, Clone, Copy)]
pub struct Faults {
    /// The same callback sent twice at once.
    pub concurrent_duplicate: f64,
    /// A bet's id reused with another amount (must be DUPLICATE_MISMATCH, no money).
    pub mismatch: f64,
    /// A rollback sent before its bet.
    pub rollback_first: f64,
    /// A win naming a bet that was rolled back.
    pub win_after_rollback: f64,
    pub bad_signature: f64,
    pub stale_timestamp: f64,
    pub malformed: f64,
    /// An attempt whose answer the client does not wait for (outcome unknown, then retried).
    pub client_timeout: f64,
    /// A callback sent again after its final answer came (a provider that lost the answer).
    pub late_retry: f64,
}

impl Faults {
    pub fn none() -> Faults {
        Faults {
            concurrent_duplicate: 0.0,
            mismatch: 0.0,
            rollback_first: 0.0,
            win_after_rollback: 0.0,
            bad_signature: 0.0,
            stale_timestamp: 0.0,
            malformed: 0.0,
            client_timeout: 0.0,
            late_retry: 0.0,
        }
    }

    pub fn all(rate: f64) -> Faults {
        Faults {
            concurrent_duplicate: rate,
            mismatch: rate,
            rollback_first: rate,
            win_after_rollback: rate,
            bad_signature: rate,
            stale_timestamp: rate,
            malformed: rate,
            client_timeout: rate,
            late_retry: rate,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    pub seed: u64,
    /// Tag in every id, so runs against one database never collide.
    pub tag: String,
    pub callbacks: u64,
    pub concurrency: usize,
    pub duration: Option<Duration>,
    pub players: u32,
    /// The providers played through; worker `w` (and so each of its players) uses provider
    /// `w % len`, so a mixed run drives every dialect at once.
    pub providers: Vec<dialect::Provider>,
    pub faults: Faults,
    /// How long a win, rollback or end of round may take to get a final answer.
    pub final_within: Duration,
}

/// Counters of what was sent.
#[derive(Debug, Default)]
pub struct Counts {
    pub attempts: AtomicU64,
    pub operations: AtomicU64,
    pub retries: AtomicU64,
    pub unknown: AtomicU64,
    pub faults: BTreeMap<&'static str, AtomicU64>,
}

impl Counts {
    fn new() -> Counts {
        let mut faults = BTreeMap::new();
        for kind in [
            "concurrent_duplicate",
            "mismatch",
            "rollback_first",
            "win_after_rollback",
            "bad_signature",
            "stale_timestamp",
            "malformed",
            "client_timeout",
            "late_retry",
            "abandoned_bet",
        ] {
            faults.insert(kind, AtomicU64::new(0));
        }
        Counts {
            faults,
            ..Counts::default()
        }
    }

    fn fault(&self, kind: &'static str) {
        if let Some(c) = self.faults.get(kind) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A final answer to one transaction id and payload, kept for checker (d).
#[derive(Debug, Clone)]
struct Seen {
    tx: String,
    payload: Vec<u8>,
    status: String,
    balance: Option<String>,
    operator_tx_id: Option<String>,
}

/// What a worker found wrong while playing (answers that contradict the model).
#[derive(Debug, Default)]
struct Violations(Vec<String>);

/// Plays the simulation against the gateway at `addrs` (several gateways on one database:
/// each attempt goes to the next in turn) and checks it against `database`.
pub async fn run(
    addrs: &[std::net::SocketAddr],
    database: tokio_postgres::Config,
    options: Options,
) -> anyhow::Result<Report> {
    let started = Instant::now();
    let (db, connection) = database.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let names: Vec<String> = (1..=options.players)
        .map(|i| format!("player-{i}"))
        .collect();
    let rows = db
        .query(
            "SELECT p.external_id, w.balance + w.bonus FROM players p JOIN wallets w ON w.player_id = p.id
             WHERE p.external_id = ANY($1) AND w.currency = 'EUR'",
            &[&names],
        )
        .await?;
    let openings: HashMap<String, i64> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    if openings.len() != names.len() {
        anyhow::bail!(
            "only {} of the {} players have an EUR wallet",
            openings.len(),
            names.len()
        );
    }

    let options = Arc::new(options);
    let counts = Arc::new(Counts::new());
    let budget = Arc::new(AtomicU64::new(options.callbacks));
    let deadline = options.duration.map(|d| Instant::now() + d);
    let workers = options.concurrency.max(1).min(names.len());
    let mut tasks = Vec::new();
    if options.providers.is_empty() {
        anyhow::bail!("no provider to play through");
    }
    for w in 0..workers {
        let provider = options.providers[w % options.providers.len()].clone();
        let mut models: Vec<PlayerModel> = names
            .iter()
            .enumerate()
            .filter(|(i, _)| i % workers == w)
            .map(|(_, n)| {
                let mut model = PlayerModel::new(n.clone(), openings[n]);
                model.tombstone_not_found = provider.tombstone_not_found();
                model.wins_need_bet = provider.wins_need_named_bets();
                model
            })
            .collect();
        let mut worker = Worker {
            client: Client::spread(addrs, provider),
            options: options.clone(),
            counts: counts.clone(),
            budget: budget.clone(),
            deadline,
            rng: harness::rng::Rng::new(
                options.seed ^ (w as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1,
            ),
            seen: Vec::new(),
            violations: Violations::default(),
        };
        tasks.push(tokio::spawn(async move {
            let mut round_no = 0u64;
            'play: loop {
                for model in models.iter_mut() {
                    if worker.out_of_budget() {
                        break 'play;
                    }
                    worker.play_round(model, round_no).await;
                }
                round_no += 1;
            }
            (models, worker.seen, worker.violations)
        }));
    }
    let mut models = Vec::new();
    let mut seen = Vec::new();
    let mut violations = Vec::new();
    for task in tasks {
        let (m, s, v) = task.await?;
        models.extend(m);
        seen.extend(s);
        violations.extend(v.0);
    }
    let elapsed = started.elapsed();
    let finals_ok = seen.iter().filter(|s| s.status == "OK").count() as u64;
    let finals_refused = seen.len() as u64 - finals_ok;
    // A fresh connection for the checks: the one of the start may have been cut by a fault
    // campaign (a database restart) while the play went on.
    drop(db);
    let (db, connection) = connect_patiently(&database).await?;
    tokio::spawn(connection);
    let checks = check(&db, &options, &models, &openings, &seen, violations).await?;
    Ok(Report {
        seed: options.seed,
        attempts: counts.attempts.load(Ordering::Relaxed),
        operations: counts.operations.load(Ordering::Relaxed),
        elapsed,
        unknown: counts.unknown.load(Ordering::Relaxed),
        retries: counts.retries.load(Ordering::Relaxed),
        finals_ok,
        finals_refused,
        faults: counts
            .faults
            .iter()
            .map(|(k, v)| (*k, v.load(Ordering::Relaxed)))
            .collect(),
        checks,
    })
}
