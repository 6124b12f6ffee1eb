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
pub mod client;
pub mod dialect;
pub mod model;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use client::{Attempt, Client, Send};
use dialect::{Encoded, OpKind};
use model::{Op, PlayerModel};

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

/// The run's outcome: checker results and the first offence of each failed checker.
#[derive(Debug)]
pub struct Report {
    pub seed: u64,
    pub attempts: u64,
    pub operations: u64,
    pub elapsed: Duration,
    /// Attempts whose outcome the client never learnt (transport error, timeout): each was
    /// resolved afterwards by a retry's final answer or by a rollback, or is a violation.
    pub unknown: u64,
    pub retries: u64,
    /// Final answers to callbacks with a transaction id: `OK`, and business refusals.
    pub finals_ok: u64,
    pub finals_refused: u64,
    pub faults: BTreeMap<&'static str, u64>,
    pub checks: Vec<(String, Result<(), String>)>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|(_, r)| r.is_ok())
    }

    pub fn summary(&self) -> String {
        let secs = self.elapsed.as_secs_f64().max(0.001);
        let faults: Vec<String> = self
            .faults
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let checks: Vec<String> = self
            .checks
            .iter()
            .map(|(name, r)| format!("{name}={}", if r.is_ok() { "ok" } else { "FAILED" }))
            .collect();
        format!(
            "sim seed {}: {} callbacks ({} operations) in {:.1} s, {:.0}/s; final answers: {} OK, \
             {} refused; unknown outcomes {} (then resolved), retries {}; faults: {}; checks: {}",
            self.seed,
            self.attempts,
            self.operations,
            secs,
            self.attempts as f64 / secs,
            self.finals_ok,
            self.finals_refused,
            self.unknown,
            self.retries,
            faults.join(" "),
            checks.join(" ")
        )
    }
}

/// Small deterministic generator (xorshift64*), one per worker, seeded from the run's seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 >= 1.0 - p
    }
}

struct Worker {
    client: Client,
    options: Arc<Options>,
    counts: Arc<Counts>,
    budget: Arc<AtomicU64>,
    deadline: Option<Instant>,
    rng: Rng,
    seen: Vec<Seen>,
    violations: Violations,
}

const PATIENCE: Duration = Duration::from_secs(10);

/// How long an operation is retried.
#[derive(Debug, Clone, Copy)]
enum Until {
    /// A few attempts, then the provider gives up (bets: it then rolls them back).
    Attempts(u32),
    /// Until final, or `Options::final_within` has passed (a violation).
    Final,
}

impl Worker {
    fn out_of_budget(&self) -> bool {
        self.budget.load(Ordering::Relaxed) == 0
            || self.deadline.is_some_and(|d| Instant::now() > d)
    }

    async fn attempt(&mut self, encoded: &Encoded, send: Send, patience: Duration) -> Attempt {
        self.counts.attempts.fetch_add(1, Ordering::Relaxed);
        let _ = self
            .budget
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| b.checked_sub(1));
        self.client.attempt(encoded, send, patience).await
    }

    /// Broken variants providers (or attackers) send: each must be refused.
    async fn maybe_inject_garbage(&mut self, encoded: &Encoded) {
        let faults = self.options.faults;
        for (rate, send, kind) in [
            (faults.bad_signature, Send::WrongSecret, "bad_signature"),
            (faults.stale_timestamp, Send::Stale, "stale_timestamp"),
            (faults.malformed, Send::Malformed, "malformed"),
        ] {
            if self.rng.chance(rate) {
                self.counts.fault(kind);
                // No answer at all (the gateway restarting, a timeout) is not an answer: asked
                // again, like a provider would, until one comes.
                let started = Instant::now();
                let mut answer = self.attempt(encoded, send, PATIENCE).await;
                while matches!(answer, Attempt::Unknown(_))
                    && started.elapsed() < self.options.final_within
                {
                    self.counts.unknown.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    answer = self.attempt(encoded, send, PATIENCE).await;
                }
                match answer {
                    Attempt::Refused(..) => {}
                    other => self.violations.0.push(format!(
                        "{kind} on {}: expected a refusal, got {other:?}",
                        encoded.path
                    )),
                }
            }
        }
    }

    /// Sends until a final answer, with back-off, recording each final answer for checker
    /// (d); `None` if none came within `until` (for `Until::Final`, a violation).
    async fn until_final(
        &mut self,
        encoded: &Encoded,
        until: Until,
    ) -> Option<gateway::provider::wire::Response> {
        let (action, body, tx) = (&encoded.path, &encoded.body, encoded.tx.as_deref());
        let started = Instant::now();
        for attempt in 0u32.. {
            let give_up = match until {
                Until::Attempts(n) => attempt >= n,
                Until::Final => attempt > 0 && started.elapsed() > self.options.final_within,
            };
            if give_up {
                if let Until::Final = until {
                    self.violations.0.push(format!(
                        "{action} never got a final answer within {:?} ({attempt} attempts): {}",
                        self.options.final_within,
                        String::from_utf8_lossy(body)
                    ));
                }
                return None;
            }
            if attempt > 0 {
                self.counts.retries.fetch_add(1, Ordering::Relaxed);
                let backoff = Duration::from_millis((5u64 << attempt.min(6)).min(200));
                tokio::time::sleep(backoff).await;
            }
            let patience = if self.rng.chance(self.options.faults.client_timeout) {
                self.counts.fault("client_timeout");
                Duration::from_micros(200)
            } else {
                PATIENCE
            };
            match self.attempt(encoded, Send::Signed, patience).await {
                Attempt::Final(response) => {
                    if let Some(tx) = tx {
                        self.seen.push(seen(tx, body, &response));
                    }
                    return Some(response);
                }
                Attempt::Refused(status, what) => {
                    self.violations.0.push(format!(
                        "{action} refused with HTTP {status} ({what}): {}",
                        String::from_utf8_lossy(body)
                    ));
                    return None;
                }
                Attempt::Unknown(_) => {
                    self.counts.unknown.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        None
    }

    /// Sends a callback again after its final answer, like a provider that lost the answer;
    /// the answer must be the same (checker (d)).
    async fn maybe_retry_late(&mut self, encoded: &Encoded) {
        if encoded.tx.is_none() || !self.rng.chance(self.options.faults.late_retry) {
            return;
        }
        self.counts.fault("late_retry");
        self.counts.retries.fetch_add(1, Ordering::Relaxed);
        self.until_final(encoded, Until::Final).await;
    }

    /// One operation: expected answer from the model, sent (with faults) until final, compared.
    async fn perform(
        &mut self,
        model: &mut PlayerModel,
        op: &Op,
        until: Until,
    ) -> Option<gateway::provider::wire::Response> {
        self.counts.operations.fetch_add(1, Ordering::Relaxed);
        let encoded = self.client.provider().encode(&model.name, op);
        let (tx, body) = (encoded.tx.clone(), encoded.body.clone());
        self.maybe_inject_garbage(&encoded).await;
        let response = if self.rng.chance(self.options.faults.concurrent_duplicate) {
            self.counts.fault("concurrent_duplicate");
            self.counts.attempts.fetch_add(2, Ordering::Relaxed);
            let client = self.client.clone();
            let (a, b) = tokio::join!(
                client.attempt(&encoded, Send::Signed, PATIENCE),
                client.attempt(&encoded, Send::Signed, PATIENCE)
            );
            match (a, b) {
                (Attempt::Final(a), Attempt::Final(b)) => {
                    if (&a.status, &a.balance, &a.operator_transaction_id)
                        != (&b.status, &b.balance, &b.operator_transaction_id)
                    {
                        self.violations.0.push(format!(
                            "concurrent duplicates of {tx:?} answered differently: {a:?} vs {b:?}"
                        ));
                    }
                    if let Some(tx) = &tx {
                        self.seen.push(seen(tx, &body, &a));
                        self.seen.push(seen(tx, &body, &b));
                    }
                    Some(a)
                }
                // Not both answered: settle it the ordinary way (a retry).
                _ => self.until_final(&encoded, until).await,
            }
        } else {
            self.until_final(&encoded, until).await
        };
        let response = response?;
        self.maybe_retry_late(&encoded).await;
        let (want_core, want_balance) = model.apply(op);
        let want_status = self.client.provider().expect(encoded.op, want_core);
        let want_balance = gateway_balance(want_balance);
        if response.status != want_status
            || response.balance.as_deref() != Some(want_balance.as_str())
        {
            self.violations.0.push(format!(
                "player {} {op:?}: expected {want_status} balance {want_balance}, got {} balance {:?}",
                model.name, response.status, response.balance
            ));
        }
        Some(response)
    }

    /// One game round for `model`'s player.
    async fn play_round(&mut self, model: &mut PlayerModel, round_no: u64) {
        let faults = self.options.faults;
        let round = format!("sim-{}-{}-r{round_no}", self.options.tag, model.name);
        let bets = 1 + self.rng.below(3);
        let mut rolled_back = Vec::new();
        for k in 0..bets {
            let tx = format!("{round}-b{k}");
            let amount = 1 + self.rng.below(5_000) as i64;
            let bet = Op::Bet {
                tx: tx.clone(),
                amount,
                round: round.clone(),
            };
            if self.rng.chance(faults.rollback_first) {
                self.counts.fault("rollback_first");
                let rollback = Op::Rollback {
                    tx: format!("{tx}-x"),
                    reference: tx.clone(),
                };
                self.perform(model, &rollback, Until::Final).await;
                self.perform(model, &bet, Until::Final).await;
                continue;
            }
            // A bet is retried a few times; then, like a provider whose player has gone, the
            // bet is reversed with a rollback that may overtake the bet itself.
            if self
                .perform(model, &bet, Until::Attempts(4))
                .await
                .is_none()
            {
                self.counts.fault("abandoned_bet");
                let provider = self.client.provider().clone();
                let encoded = provider.encode(
                    &model.name,
                    &Op::Rollback {
                        tx: format!("{tx}-x"),
                        reference: tx.clone(),
                    },
                );
                self.counts.operations.fetch_add(1, Ordering::Relaxed);
                // Whichever came first, the bet or its rollback: done, or tombstoned.
                let done = [
                    provider.expect(OpKind::Rollback, "OK"),
                    provider.expect(OpKind::Rollback, "TRANSACTION_NOT_FOUND"),
                ];
                match self.until_final(&encoded, Until::Final).await {
                    Some(r) if done.contains(&r.status) => model.bet_abandoned(&tx, &round),
                    other => self
                        .violations
                        .0
                        .push(format!("rollback of abandoned bet {tx}: {other:?}")),
                }
                continue;
            }
            if self.rng.chance(faults.mismatch) {
                self.counts.fault("mismatch");
                let provider = self.client.provider().clone();
                let mut encoded = provider.encode(
                    &model.name,
                    &Op::Bet {
                        tx: tx.clone(),
                        amount: amount + 1,
                        round: round.clone(),
                    },
                );
                // Its answer is not stored (it reports the balance now): not compared by id.
                encoded.tx = None;
                self.counts.operations.fetch_add(1, Ordering::Relaxed);
                let want = provider.expect(OpKind::Bet, "DUPLICATE_MISMATCH");
                match self.until_final(&encoded, Until::Final).await {
                    Some(r)
                        if r.status == want
                            && r.balance == Some(gateway_balance(model.balance)) => {}
                    other => self
                        .violations
                        .0
                        .push(format!("mismatched duplicate of {tx}: {other:?}")),
                }
            }
            if self.rng.chance(0.1) {
                let rollback = Op::Rollback {
                    tx: format!("{tx}-x"),
                    reference: tx.clone(),
                };
                self.perform(model, &rollback, Until::Final).await;
                rolled_back.push(tx);
            }
        }
        let provider = self.client.provider().clone();
        if let Some(bet) = rolled_back.first() {
            // Only dialects whose wins name their bet can pay a rolled-back one.
            if provider.wins_name_bets() && self.rng.chance(faults.win_after_rollback) {
                self.counts.fault("win_after_rollback");
                let win = Op::Win {
                    tx: format!("{round}-wr"),
                    amount: 100,
                    round: round.clone(),
                    bet: Some(bet.clone()),
                    promo: false,
                };
                self.perform(model, &win, Until::Final).await;
            }
        }
        if self.rng.chance(0.6) {
            let amount = if self.rng.chance(0.3) {
                0
            } else {
                self.rng.below(10_000) as i64
            };
            let open = model.open_bets(&round);
            let name_one = provider.wins_need_named_bets() || self.rng.chance(0.5);
            let named = if provider.wins_name_bets() && !open.is_empty() && name_one {
                Some(open[0].clone())
            } else {
                None
            };
            // Dialects that need a named bet, or wait for one, get no win the round cannot take.
            let payable = (named.is_some() || !provider.wins_need_named_bets())
                && (!provider.wins_wait_for_bets() || model.has_applied_bet(&round))
                && (named.is_some() || model.unnamed_win_is_certain(&round));
            if payable {
                let win = Op::Win {
                    tx: format!("{round}-w"),
                    amount,
                    round: round.clone(),
                    bet: named,
                    promo: false,
                };
                self.perform(model, &win, Until::Final).await;
            }
        }
        if self.rng.chance(0.05) {
            let promo = Op::Win {
                tx: format!("{round}-promo"),
                amount: 500,
                round: format!("{round}-promo"),
                bet: None,
                promo: true,
            };
            self.perform(model, &promo, Until::Final).await;
        }
        if provider.ends_rounds() && self.rng.chance(0.7) {
            self.perform(
                model,
                &Op::EndRound {
                    round: round.clone(),
                },
                Until::Final,
            )
            .await;
        }
    }
}

fn seen(tx: &str, payload: &[u8], r: &gateway::provider::wire::Response) -> Seen {
    Seen {
        tx: tx.to_string(),
        payload: payload.to_vec(),
        status: r.status.clone(),
        balance: r.balance.clone(),
        operator_tx_id: r.operator_transaction_id.clone(),
    }
}

/// EUR minor units as the native dialect writes them.
fn gateway_balance(minor: i64) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

/// Connects, retrying for up to a minute while the database is (re)starting.
async fn connect_patiently(
    database: &tokio_postgres::Config,
) -> anyhow::Result<(
    tokio_postgres::Client,
    tokio_postgres::Connection<tokio_postgres::Socket, tokio_postgres::tls::NoTlsStream>,
)> {
    let give_up = Instant::now() + Duration::from_secs(60);
    loop {
        match database.connect(tokio_postgres::NoTls).await {
            Ok(connected) => return Ok(connected),
            Err(e) if Instant::now() > give_up => return Err(e.into()),
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

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
            rng: Rng(options.seed ^ (w as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1),
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

async fn check(
    db: &tokio_postgres::Client,
    options: &Options,
    models: &[PlayerModel],
    openings: &HashMap<String, i64>,
    seen: &[Seen],
    violations: Vec<String>,
) -> anyhow::Result<Vec<(String, Result<(), String>)>> {
    let names: Vec<&str> = models.iter().map(|m| m.name.as_str()).collect();
    let rows = db
        .query(
            "SELECT p.external_id, w.balance + w.bonus,
                    (SELECT coalesce(sum(t.real_delta + t.bonus_delta), 0)::bigint FROM transactions t
                      WHERE t.player_id = p.id AND t.currency = 'EUR'),
                    (SELECT count(*) FROM transactions t
                      WHERE t.player_id = p.id AND t.provider_tx_id LIKE $2
                        AND (t.real_delta <> 0 OR t.bonus_delta <> 0)),
                    (SELECT coalesce(sum(t.real_delta + t.bonus_delta), 0)::bigint FROM transactions t
                      WHERE t.player_id = p.id AND t.currency = 'EUR' AND t.provider_tx_id LIKE $2)
             FROM players p JOIN wallets w ON w.player_id = p.id AND w.currency = 'EUR'
             WHERE p.external_id = ANY($1)",
            &[&names, &format!("%sim-{}-%", options.tag)],
        )
        .await?;
    let db_state: HashMap<String, (i64, i64, i64)> = rows
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3))))
        .collect();
    // (e) from the database alone: balances now against balances at the start plus the
    // money this run's ledger rows moved.
    let (mut held, mut run_moved) = (0i128, 0i128);
    for r in &rows {
        held += i128::from(r.get::<_, i64>(1));
        run_moved += i128::from(r.get::<_, i64>(4));
    }
    let opening: i128 = models
        .iter()
        .map(|m| i128::from(openings.get(&m.name).copied().unwrap_or(0)))
        .sum();
    let first = |problems: Vec<String>| -> Result<(), String> {
        match problems.first() {
            None => Ok(()),
            Some(p) => Err(format!("{p} (and {} more)", problems.len() - 1)),
        }
    };
    let mut a = Vec::new();
    let mut b = Vec::new();
    let mut c = Vec::new();
    for m in models {
        let Some(&(balance, ledger, money_rows)) = db_state.get(&m.name) else {
            a.push(format!("player {} has no wallet", m.name));
            continue;
        };
        if balance != m.balance {
            a.push(format!(
                "player {}: database balance {balance}, model {}",
                m.name, m.balance
            ));
        }
        if balance != ledger {
            b.push(format!(
                "player {}: balance {balance}, ledger sum {ledger}",
                m.name
            ));
        }
        let rows = money_rows as u64;
        if rows < m.money_rows || rows > m.money_rows + m.uncertain_rows {
            c.push(format!(
                "player {}: {rows} ledger rows moved money, the model allows {} to {}",
                m.name,
                m.money_rows,
                m.money_rows + m.uncertain_rows
            ));
        }
    }
    let mut by_tx: HashMap<(&str, &[u8]), &Seen> = HashMap::new();
    let mut d = Vec::new();
    for s in seen {
        let key = (s.tx.as_str(), s.payload.as_slice());
        match by_tx.get(&key) {
            None => {
                by_tx.insert(key, s);
            }
            Some(first) => {
                if (&first.status, &first.balance, &first.operator_tx_id)
                    != (&s.status, &s.balance, &s.operator_tx_id)
                {
                    d.push(format!(
                        "transaction {}: answered {first:?} and later {s:?}",
                        s.tx
                    ));
                }
            }
        }
    }
    let e = if held == opening + run_moved {
        Ok(())
    } else {
        Err(format!(
            "players hold {held}; they held {opening} at the start and this run's ledger rows moved {run_moved}"
        ))
    };
    Ok(vec![
        ("answers_match_model".to_string(), first(violations)),
        ("a_balance_equals_model".to_string(), first(a)),
        ("b_balance_equals_ledger".to_string(), first(b)),
        ("c_no_double_application".to_string(), first(c)),
        ("d_retries_same_answer".to_string(), first(d)),
        ("e_money_conserved".to_string(), e),
    ])
}
