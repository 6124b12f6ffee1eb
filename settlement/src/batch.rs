//! Group commit: settlement lanes, each a bounded queue and one database connection. Players
//! are partitioned over lanes (a wallet is only ever written by its lane, in arrival order);
//! a lane takes what has queued up while its previous batch committed (up to `batch_len_max`),
//! settles it in one transaction, and only then answers every waiting caller.
//!
//! Under light load a lone command is settled at once; under heavy load batches grow by
//! themselves because commands queue while a commit is in flight. `batch_wait_max` adds a short
//! linger only when the previous batch held at least `linger_from` commands (the load is
//! steady, so waiting a little fills the next batch instead of paying another batch's fixed
//! cost: its statements and its commit).

use std::collections::HashSet;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::apply::BATCH_LEN_MAX;
use crate::command::{Action, Answer, Command};
use crate::fault::{Faults, Plant};
use crate::store::{self, PlayerIds, Statements};

/// Lane settings (from the gateway's `[settlement]` configuration).
#[derive(Debug, Clone)]
pub struct Options {
    pub lanes: usize,
    pub batch_len_max: usize,
    pub batch_wait_max: Duration,
    /// A lane lingers (up to `batch_wait_max`) once its previous batch held this many commands.
    pub linger_from: usize,
    pub queue_len_max: usize,
    /// How long a caller waits for its answer before giving up with a retryable answer.
    pub deadline: Duration,
    /// How long a unit whose wallet another transaction holds (another gateway's lane, the
    /// REST module) is left for later batches before its batch waits for the wallet; zero:
    /// every batch waits for its wallets.
    pub busy_patience: Duration,
    /// A lane's statement, or a pause inside its transaction, longer than this ends the
    /// transaction (`statement_timeout`, `idle_in_transaction_session_timeout`); at most
    /// [`store::LANE_TRANSACTION_S_MAX`] seconds. The report rollups count on it (see there).
    pub transaction_timeout: Duration,
}

/// Why a command got no business answer; every case but `Unstorable` is retryable for the
/// provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    /// Settled alone, the unit still failed because the database refused its data (see
    /// `store::Error::is_data`): a retry would fail the same way, so the answer is final.
    #[error("the database refused the request's data; nothing was committed")]
    Unstorable,
    #[error("settlement queue full")]
    Overloaded,
    #[error("deadline passed before the command was settled")]
    Deadline,
    #[error("storage failed; nothing was committed")]
    Storage,
    #[error("shutting down")]
    ShuttingDown,
}

impl Unavailable {
    pub fn as_str(self) -> &'static str {
        match self {
            Unavailable::Overloaded => "overloaded",
            Unavailable::Deadline => "deadline",
            Unavailable::Storage => "storage",
            Unavailable::ShuttingDown => "shutting_down",
            Unavailable::Unstorable => "unstorable",
        }
    }
}

type Reply = oneshot::Sender<Result<(Vec<Answer>, Settled), Unavailable>>;

/// Which commit settled a unit, for traces: the lane, the lane's batch counter (since the
/// gateway started), how many commands the batch held, how long the unit queued before its
/// batch began and how long the batch's transaction took (BEGIN to COMMIT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settled {
    pub lane: u16,
    pub batch: u64,
    pub batch_len: u32,
    pub queued: Duration,
    pub commit: Duration,
}

/// One caller's unit: a command, or the actions of one multi-action callback (one player's,
/// applied all or nothing, in one batch).
struct Job {
    commands: Vec<Command>,
    ticket: Ticket,
}

/// Where and by when a command's caller waits for its answer.
struct Ticket {
    queued_at: Instant,
    deadline: Instant,
    reply: Reply,
    /// When a batch first left the unit for later: another transaction (another gateway's
    /// lane, or the REST module) held one of its wallets.
    deferred_at: Option<Instant>,
}

impl Ticket {
    /// The caller has been answered already (its deadline passed, so it was told to retry)
    /// or has gone away. Its command must not be applied by a retry it cannot see: it is
    /// left to the provider's own retry, which is safe to apply.
    fn abandoned(&self, now: Instant) -> bool {
        self.deadline <= now || self.reply.is_closed()
    }
}

enum Message {
    Job(Job),
    /// Settle everything queued before this, then stop.
    Drain(oneshot::Sender<()>),
    /// `SHOW <setting>` on the lane's connection (tests check what the lanes run with).
    #[cfg(any(test, feature = "test-util"))]
    Show(&'static str, oneshot::Sender<Result<String, String>>),
}

/// The handle callers settle through.
pub struct Settler {
    lanes: Vec<mpsc::Sender<Message>>,
    hasher: std::collections::hash_map::RandomState,
    deadline: Duration,
    tasks: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    faults: Arc<Faults>,
}

impl Settler {
    /// Connects one writer per lane (failing fast when the database is unreachable) and starts
    /// the lanes.
    pub async fn start(
        pg: tokio_postgres::Config,
        options: Options,
    ) -> Result<Settler, tokio_postgres::Error> {
        assert!(options.lanes >= 1, "at least one lane");
        assert!(
            (1..=BATCH_LEN_MAX - crate::apply::UNIT_LEN_MAX).contains(&options.batch_len_max),
            "batch_len_max in range"
        );
        let faults = Arc::new(Faults::default());
        let transaction_timeout = options.transaction_timeout.clamp(
            Duration::from_millis(100),
            Duration::from_secs(store::LANE_TRANSACTION_S_MAX),
        );
        let mut lanes = Vec::with_capacity(options.lanes);
        let mut tasks = Vec::with_capacity(options.lanes);
        for index in 0..options.lanes {
            let connection = Connection::open(&pg, transaction_timeout).await?;
            let (tx, rx) = mpsc::channel(options.queue_len_max);
            let lane = Lane {
                index,
                pg: pg.clone(),
                connection: Some(connection),
                reconnect_at: Instant::now(),
                batch_len_max: options.batch_len_max,
                batch_wait_max: options.batch_wait_max,
                linger_from: options.linger_from.max(1),
                faults: faults.clone(),
                batches: 0,
                deferred: Vec::new(),
                busy_patience: options.busy_patience,
                transaction_timeout,
            };
            tasks.push(tokio::spawn(lane.run(rx)));
            lanes.push(tx);
        }
        Ok(Settler {
            lanes,
            hasher: Default::default(),
            deadline: options.deadline,
            tasks: std::sync::Mutex::new(tasks),
            faults,
        })
    }

    /// The fault seam of this settler's lanes: failpoints and planted bugs in test builds,
    /// nothing otherwise (see `fault`).
    pub fn faults(&self) -> &Arc<Faults> {
        &self.faults
    }

    /// `SHOW <setting>` on every lane's connection, in lane order.
    #[cfg(any(test, feature = "test-util"))]
    pub async fn show(&self, setting: &'static str) -> Vec<Result<String, String>> {
        let mut values = Vec::new();
        for lane in &self.lanes {
            let (tx, rx) = oneshot::channel();
            let value = match lane.send(Message::Show(setting, tx)).await {
                Ok(()) => rx.await.unwrap_or_else(|_| Err("lane stopped".into())),
                Err(_) => Err("lane stopped".into()),
            };
            values.push(value);
        }
        values
    }

    /// Settles one command: the answer is returned only after the batch holding it committed.
    pub async fn settle(&self, command: Command) -> Result<Answer, Unavailable> {
        Ok(self.settle_traced(command).await?.0)
    }

    /// [`Settler::settle`], also telling which commit settled it.
    pub async fn settle_traced(&self, command: Command) -> Result<(Answer, Settled), Unavailable> {
        let (mut answers, settled) = self.settle_unit_traced(vec![command]).await?;
        Ok((answers.pop().expect("one answer per command"), settled))
    }

    /// Settles the commands of one multi-action callback as one unit: one player's, in order,
    /// in one batch, all or nothing (see `apply::apply_units`); one answer per command.
    pub async fn settle_unit(&self, commands: Vec<Command>) -> Result<Vec<Answer>, Unavailable> {
        Ok(self.settle_unit_traced(commands).await?.0)
    }

    /// [`Settler::settle_unit`], also telling which commit settled it.
    pub async fn settle_unit_traced(
        &self,
        commands: Vec<Command>,
    ) -> Result<(Vec<Answer>, Settled), Unavailable> {
        assert!(
            (1..=crate::apply::UNIT_LEN_MAX).contains(&commands.len()),
            "unit size in range"
        );
        assert!(
            commands.iter().all(|c| c.player == commands[0].player),
            "a unit is one player's"
        );
        let queued_at = Instant::now();
        let deadline = queued_at + self.deadline;
        let lane = self.lane_of(&commands[0]);
        let (reply, answer) = oneshot::channel();
        let job = Job {
            commands,
            ticket: Ticket {
                queued_at,
                deadline,
                reply,
                deferred_at: None,
            },
        };
        self.lanes[lane]
            .try_send(Message::Job(job))
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => Unavailable::Overloaded,
                mpsc::error::TrySendError::Closed(_) => Unavailable::ShuttingDown,
            })?;
        match tokio::time::timeout_at(deadline, answer).await {
            Ok(Ok(result)) => result,
            // The lane dropped the reply: it is stopping; nothing was acknowledged.
            Ok(Err(_)) => Err(Unavailable::ShuttingDown),
            // The batch may still commit; the provider's retry then gets the stored answer.
            Err(_) => Err(Unavailable::Deadline),
        }
    }

    /// Commands queued per lane right now.
    pub fn queue_depths(&self) -> Vec<usize> {
        self.lanes
            .iter()
            .map(|l| l.max_capacity() - l.capacity())
            .collect()
    }

    fn lane_of(&self, command: &Command) -> usize {
        (self.hasher.hash_one(&command.player) % self.lanes.len() as u64) as usize
    }

    /// Settles everything already queued, then stops the lanes; later calls get
    /// `ShuttingDown`.
    pub async fn drain(&self) {
        let mut done = Vec::new();
        for lane in &self.lanes {
            let (tx, rx) = oneshot::channel();
            if lane.send(Message::Drain(tx)).await.is_ok() {
                done.push(rx);
            }
        }
        for rx in done {
            let _ = rx.await;
        }
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for task in tasks {
            let _ = task.await;
        }
    }
}

struct Connection {
    client: tokio_postgres::Client,
    statements: Statements,
    player_ids: PlayerIds,
}

impl Connection {
    async fn open(
        pg: &tokio_postgres::Config,
        transaction_timeout: Duration,
    ) -> Result<Connection, tokio_postgres::Error> {
        let (client, driver) = pg.connect(tokio_postgres::NoTls).await?;
        tokio::spawn(async move {
            if let Err(e) = driver.await {
                tracing::warn!(error = %e, "settlement connection ended");
            }
        });
        client.batch_execute(crate::store::LANE_SESSION).await?;
        let ms = transaction_timeout.as_millis();
        client
            .batch_execute(&format!(
                "SET statement_timeout = {ms}; SET idle_in_transaction_session_timeout = {ms};"
            ))
            .await?;
        let statements = Statements::prepare(&client).await?;
        let mut player_ids = PlayerIds::default();
        player_ids.warm(&client).await?;
        Ok(Connection {
            client,
            statements,
            player_ids,
        })
    }
}

struct Lane {
    index: usize,
    pg: tokio_postgres::Config,
    connection: Option<Connection>,
    /// After a failed connect, batches fail fast until then instead of each trying again.
    reconnect_at: Instant,
    batch_len_max: usize,
    batch_wait_max: Duration,
    linger_from: usize,
    faults: Arc<Faults>,
    /// Batches this lane has committed.
    batches: u64,
    /// Units a batch left for later (their wallets were held elsewhere), in arrival order:
    /// the next batch begins with them.
    deferred: Vec<Job>,
    busy_patience: Duration,
    transaction_timeout: Duration,
}

/// Pause between connection attempts while the database is unreachable.
const RECONNECT_PAUSE: Duration = Duration::from_millis(200);

/// Whole-batch retries after a conflict (unique key raced, serialization, deadlock).
const CONFLICT_RETRIES_MAX: u32 = 3;

/// With only units left for later to settle, the lane gives the wallets' holder this long to
/// commit (or new work this long to arrive) before trying again.
const BUSY_PAUSE: Duration = Duration::from_millis(2);

impl Lane {
    async fn run(mut self, mut rx: mpsc::Receiver<Message>) {
        let mut last_len = 0;
        // Reused: a fresh `batch_len_max`-sized buffer per batch cost more than settling.
        let mut jobs = Vec::new();
        'lanes: loop {
            let mut drain = None;
            let first = if self.deferred.is_empty() {
                let Some(first) = rx.recv().await else { break };
                Some(first)
            } else {
                // What was left for later goes first, ahead of anything that arrived since;
                // alone, it waits a moment for its wallets' holder to commit.
                jobs.append(&mut self.deferred);
                match rx.is_empty() {
                    true => tokio::time::timeout(BUSY_PAUSE, rx.recv())
                        .await
                        .ok()
                        .flatten(),
                    false => None,
                }
            };
            match first {
                Some(Message::Job(job)) => jobs.push(job),
                Some(Message::Drain(done)) if jobs.is_empty() => {
                    let _ = done.send(());
                    break;
                }
                Some(Message::Drain(done)) => drain = Some(done),
                #[cfg(any(test, feature = "test-util"))]
                Some(Message::Show(setting, reply)) => {
                    let _ = reply.send(self.show(setting).await);
                    if jobs.is_empty() {
                        continue;
                    }
                }
                None => {}
            }
            let linger = last_len >= self.linger_from && !self.batch_wait_max.is_zero();
            let linger_until = Instant::now() + self.batch_wait_max;
            let mut len: usize = jobs.iter().map(|j: &Job| j.commands.len()).sum();
            while len < self.batch_len_max && drain.is_none() {
                let next = match rx.try_recv() {
                    Ok(message) => message,
                    Err(_) if linger => {
                        match tokio::time::timeout_at(linger_until, rx.recv()).await {
                            Ok(Some(message)) => message,
                            _ => break,
                        }
                    }
                    Err(_) => break,
                };
                match next {
                    Message::Job(job) => {
                        len += job.commands.len();
                        jobs.push(job);
                    }
                    Message::Drain(done) => {
                        drain = Some(done);
                        break;
                    }
                    #[cfg(any(test, feature = "test-util"))]
                    Message::Show(setting, reply) => {
                        let _ = reply.send(self.show(setting).await);
                    }
                }
            }
            last_len = len;
            self.settle(&mut jobs).await;
            if let Some(done) = drain {
                // Units left for later are settled before the lane stops (waited for once
                // their patience is over, so this ends).
                while !self.deferred.is_empty() {
                    tokio::time::sleep(BUSY_PAUSE).await;
                    jobs.append(&mut self.deferred);
                    self.settle(&mut jobs).await;
                }
                let _ = done.send(());
                break 'lanes;
            }
        }
        tracing::debug!(lane = self.index, "settlement lane stopped");
    }

    #[cfg(any(test, feature = "test-util"))]
    async fn show(&mut self, setting: &str) -> Result<String, String> {
        self.connect().await.map_err(|e| e.to_string())?;
        let connection = self.connection.as_ref().expect("connected above");
        let row = connection
            .client
            .query_one(&format!("SHOW {setting}"), &[])
            .await
            .map_err(|e| e.to_string())?;
        Ok(row.get(0))
    }

    /// Settles `jobs`, answering each.
    async fn settle(&mut self, jobs: &mut Vec<Job>) {
        let now = Instant::now();
        let queue_wait = metrics::histogram!("wallet_queue_wait_seconds");
        let mut units = Units::default();
        for job in jobs.drain(..) {
            queue_wait.record(now.duration_since(job.ticket.queued_at).as_secs_f64());
            if self.faults.planted(Plant::WinsUnavailable)
                && job
                    .commands
                    .iter()
                    .any(|c| matches!(c.action, Action::Win { .. }))
            {
                let _ = job.ticket.reply.send(Err(Unavailable::Storage));
                continue;
            }
            units.push(job);
        }
        if self.faults.planted(Plant::LaneReorder) {
            units.reverse();
        }
        self.settle_or_split(units, false).await;
    }

    /// Answers every unit. One transaction for the batch; after a conflict, the same batch
    /// again; after a storage failure, a retryable answer for all; after any other failure,
    /// halves (never splitting a unit), so one poisoned unit fails alone and never changes its
    /// neighbours' outcomes. Before every attempt, units whose callers were already answered
    /// are dropped. `split_retry`: these units are half of a batch that failed.
    async fn settle_or_split(&mut self, mut units: Units, split_retry: bool) {
        let mut conflicts = 0;
        loop {
            let dropped = units.drop_abandoned(Instant::now());
            if dropped > 0 {
                metrics::counter!("wallet_deadline_expired_total").increment(dropped as u64);
            }
            if !self.deferred.is_empty() {
                // A player with a unit left for later keeps its order: its later units wait too
                // (only after a split can both halves hold one player's units).
                let players: HashSet<&str> = self
                    .deferred
                    .iter()
                    .map(|job| job.commands[0].player.as_str())
                    .collect();
                let busy: Vec<usize> = (0..units.tickets.len())
                    .filter(|&i| players.contains(units.player(i)))
                    .collect();
                self.deferred.extend(units.take(&busy));
            }
            if units.is_empty() {
                return;
            }
            let started = Instant::now();
            let error = match self
                .settle_once(
                    &units.commands,
                    &units.lens,
                    &units.patient(Instant::now(), self.busy_patience),
                    split_retry,
                )
                .await
            {
                Ok(outcome) => {
                    self.batches += 1;
                    if !outcome.busy.is_empty() {
                        metrics::counter!("wallet_busy_wallet_deferrals_total")
                            .increment(outcome.busy.len() as u64);
                        let now = Instant::now();
                        for mut job in units.take(&outcome.busy) {
                            job.ticket.deferred_at.get_or_insert(now);
                            self.deferred.push(job);
                        }
                    }
                    let settled = Settled {
                        lane: self.index as u16,
                        batch: self.batches,
                        batch_len: units.commands.len() as u32,
                        queued: Duration::ZERO,
                        commit: started.elapsed(),
                    };
                    units.answer(outcome.answers, settled, started);
                    return;
                }
                Err(error) => error,
            };
            if error.is_connection() {
                tracing::warn!(lane = self.index, error = %error, "storage unavailable; batch not settled");
                self.connection = None;
                units.refuse(Unavailable::Storage);
                return;
            }
            if error.could_retry() && conflicts < CONFLICT_RETRIES_MAX {
                conflicts += 1;
                tracing::debug!(lane = self.index, error = %error, "batch conflict; retrying");
                continue;
            }
            tracing::warn!(lane = self.index, kind = error.kind(), error = %error, "batch failed");
            if units.tickets.len() == 1 {
                units.refuse(if error.is_data() {
                    Unavailable::Unstorable
                } else {
                    Unavailable::Storage
                });
                return;
            }
            let right = units.split_off_half();
            Box::pin(self.settle_or_split(units, true)).await;
            Box::pin(self.settle_or_split(right, true)).await;
            return;
        }
    }

    /// Opens the lane's connection if it has none (or it closed). While the database is
    /// unreachable, at most one attempt per [`RECONNECT_PAUSE`]: batches in between fail at
    /// once (their callers are told to retry) instead of each waiting for a connect.
    async fn connect(&mut self) -> Result<(), store::Error> {
        if self
            .connection
            .as_ref()
            .is_some_and(|c| !c.client.is_closed())
        {
            return Ok(());
        }
        self.connection = None;
        if Instant::now() < self.reconnect_at {
            return Err(store::Error::NotConnected);
        }
        match Connection::open(&self.pg, self.transaction_timeout).await {
            Ok(connection) => {
                tracing::info!(lane = self.index, "settlement connection open");
                self.connection = Some(connection);
                Ok(())
            }
            Err(e) => {
                self.reconnect_at = Instant::now() + RECONNECT_PAUSE;
                tracing::warn!(lane = self.index, error = %e, "settlement connection failed");
                Err(store::Error::Database {
                    n_commands: 0,
                    source: e,
                })
            }
        }
    }

    async fn settle_once(
        &mut self,
        commands: &[Command],
        units: &[usize],
        patient: &[bool],
        split_retry: bool,
    ) -> Result<store::Outcome, store::Error> {
        self.connect().await?;
        let connection = self.connection.as_mut().expect("connected above");
        let started = Instant::now();
        let batch = store::Batch {
            commands,
            units,
            patient,
            split_retry,
        };
        let result = store::settle(
            &mut connection.client,
            &connection.statements,
            &mut connection.player_ids,
            batch,
            &self.faults,
        )
        .await;
        match &result {
            Ok(_) => {
                metrics::histogram!("wallet_batch_size").record(commands.len() as f64);
                metrics::histogram!("wallet_batch_commit_seconds")
                    .record(started.elapsed().as_secs_f64());
            }
            Err(e) => {
                metrics::counter!("wallet_batch_failures_total", "kind" => e.kind()).increment(1)
            }
        }
        result
    }
}

/// A batch as the lane settles it: every unit's commands back to back (the slice the store
/// takes), each unit's length, and each unit's caller.
#[derive(Default)]
struct Units {
    commands: Vec<Command>,
    lens: Vec<usize>,
    tickets: Vec<Ticket>,
}

impl Units {
    fn push(&mut self, job: Job) {
        self.lens.push(job.commands.len());
        self.commands.extend(job.commands);
        self.tickets.push(job.ticket);
    }

    fn is_empty(&self) -> bool {
        self.tickets.is_empty()
    }

    /// Unit `i`'s player (a unit is one player's).
    fn player(&self, i: usize) -> &str {
        let at: usize = self.lens[..i].iter().sum();
        self.commands[at].player.as_str()
    }

    /// Whether each unit's wallets are waited for: it was first left for later `patience` ago
    /// or more, so a player busy elsewhere is never starved; with no patience, always.
    fn patient(&self, now: Instant, patience: Duration) -> Vec<bool> {
        self.tickets
            .iter()
            .map(|t| patience.is_zero() || t.deferred_at.is_some_and(|at| now >= at + patience))
            .collect()
    }

    /// Takes out the units at `indexes` (ascending), in order.
    fn take(&mut self, indexes: &[usize]) -> Vec<Job> {
        if indexes.is_empty() {
            return Vec::new();
        }
        let old = std::mem::take(self);
        let mut commands = old.commands.into_iter();
        let mut taken = Vec::with_capacity(indexes.len());
        for (i, (len, ticket)) in old.lens.into_iter().zip(old.tickets).enumerate() {
            let job = Job {
                commands: commands.by_ref().take(len).collect(),
                ticket,
            };
            if indexes.binary_search(&i).is_ok() {
                taken.push(job);
            } else {
                self.push(job);
            }
        }
        taken
    }

    /// Answers `Deadline` to units whose callers were already answered or went away, and
    /// drops them; returns how many.
    fn drop_abandoned(&mut self, now: Instant) -> usize {
        if !self.tickets.iter().any(|t| t.abandoned(now)) {
            return 0;
        }
        let old = std::mem::take(self);
        let mut commands = old.commands.into_iter();
        let mut dropped = 0;
        for (len, ticket) in old.lens.into_iter().zip(old.tickets) {
            let unit: Vec<Command> = commands.by_ref().take(len).collect();
            if ticket.abandoned(now) {
                let _ = ticket.reply.send(Err(Unavailable::Deadline));
                dropped += 1;
            } else {
                self.push(Job {
                    commands: unit,
                    ticket,
                });
            }
        }
        dropped
    }

    /// Sends each unit its answers (one per command, in order) and the commit's mark; the
    /// batch began at `started`.
    fn answer(self, answers: Vec<Answer>, settled: Settled, started: Instant) {
        let mut answers = answers.into_iter();
        for (len, ticket) in self.lens.into_iter().zip(self.tickets) {
            let settled = Settled {
                queued: started.saturating_duration_since(ticket.queued_at),
                ..settled
            };
            let _ = ticket
                .reply
                .send(Ok((answers.by_ref().take(len).collect(), settled)));
        }
    }

    fn refuse(self, why: Unavailable) {
        for ticket in self.tickets {
            let _ = ticket.reply.send(Err(why));
        }
    }

    /// Newest unit first (the planted `LaneReorder` bug).
    fn reverse(&mut self) {
        let old = std::mem::take(self);
        let mut commands = old.commands.into_iter();
        let mut jobs: Vec<Job> = Vec::with_capacity(old.tickets.len());
        for (len, ticket) in old.lens.into_iter().zip(old.tickets) {
            let commands = commands.by_ref().take(len).collect();
            jobs.push(Job { commands, ticket });
        }
        for job in jobs.into_iter().rev() {
            self.push(job);
        }
    }

    /// Keeps the first half of the units, returns the second.
    fn split_off_half(&mut self) -> Units {
        let at = self.tickets.len() / 2;
        let commands_at: usize = self.lens[..at].iter().sum();
        Units {
            commands: self.commands.split_off(commands_at),
            lens: self.lens.split_off(at),
            tickets: self.tickets.split_off(at),
        }
    }
}
