//! One lane: its connection (statements prepared, player ids cached), its loop (take what
//! queued, linger when the load is steady, settle), and what it does when a batch fails:
//! retry whole on conflicts, fail whole on a lost connection and reconnect, split in halves
//! otherwise until the failing command is alone. `Units` is a batch as the lane settles it.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::*;
use crate::command::{Action, Answer, Command};
use crate::fault::{Faults, Plant};
use crate::store::{self, PlayerIds, Statements};

pub(super) struct Connection {
    pub(super) client: tokio_postgres::Client,
    pub(super) statements: Statements,
    pub(super) player_ids: PlayerIds,
}

impl Connection {
    pub(super) async fn open(
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

pub(super) struct Lane {
    pub(super) index: usize,
    pub(super) pg: tokio_postgres::Config,
    pub(super) connection: Option<Connection>,
    /// After a failed connect, batches fail fast until then instead of each trying again.
    pub(super) reconnect_at: Instant,
    pub(super) batch_len_max: usize,
    pub(super) batch_wait_max: Duration,
    pub(super) linger_from: usize,
    pub(super) faults: Arc<Faults>,
    /// Batches this lane has committed.
    pub(super) batches: u64,
    /// Units a batch left for later (their wallets were held elsewhere), in arrival order:
    /// the next batch begins with them.
    pub(super) deferred: Vec<Job>,
    pub(super) busy_patience: Duration,
    pub(super) transaction_timeout: Duration,
}

/// Pause between connection attempts while the database is unreachable.
pub(super) const RECONNECT_PAUSE: Duration = Duration::from_millis(200);

/// Whole-batch retries after a conflict (unique key raced, serialization, deadlock).
pub(super) const CONFLICT_RETRIES_MAX: u32 = 3;

/// With only units left for later to settle, the lane gives the wallets' holder this long to
/// commit (or new work this long to arrive) before trying again.
pub(super) const BUSY_PAUSE: Duration = Duration::from_millis(2);

impl Lane {
    pub(super) async fn run(mut self, mut rx: mpsc::Receiver<Message>) {
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
            if drain.is_none() {
                drain = self.gather(&mut rx, &mut jobs, linger).await;
            }
            last_len = jobs.iter().map(|j: &Job| j.commands.len()).sum();
            self.settle(&mut jobs).await;
            if let Some(done) = drain {
                self.drain(&mut jobs).await;
                let _ = done.send(());
                break 'lanes;
            }
        }
        tracing::debug!(lane = self.index, "settlement lane stopped");
    }

    /// Takes what has queued up, up to `batch_len_max` commands; when `linger`, waits up to
    /// `batch_wait_max` for more. Returns a drain request met on the way (it ends the batch).
    async fn gather(
        &mut self,
        rx: &mut mpsc::Receiver<Message>,
        jobs: &mut Vec<Job>,
        linger: bool,
    ) -> Option<oneshot::Sender<()>> {
        let linger_until = Instant::now() + self.batch_wait_max;
        let mut len: usize = jobs.iter().map(|j: &Job| j.commands.len()).sum();
        while len < self.batch_len_max {
            let next = match rx.try_recv() {
                Ok(message) => message,
                Err(_) if linger => match tokio::time::timeout_at(linger_until, rx.recv()).await {
                    Ok(Some(message)) => message,
                    _ => break,
                },
                Err(_) => break,
            };
            match next {
                Message::Job(job) => {
                    len += job.commands.len();
                    jobs.push(job);
                }
                Message::Drain(done) => return Some(done),
                #[cfg(any(test, feature = "test-util"))]
                Message::Show(setting, reply) => {
                    let _ = reply.send(self.show(setting).await);
                }
            }
        }
        None
    }

    /// Before the lane stops: units left for later are settled too (waited for once their
    /// patience is over, so this ends).
    async fn drain(&mut self, jobs: &mut Vec<Job>) {
        while !self.deferred.is_empty() {
            tokio::time::sleep(BUSY_PAUSE).await;
            jobs.append(&mut self.deferred);
            self.settle(jobs).await;
        }
    }

    #[cfg(any(test, feature = "test-util"))]
    pub(super) async fn show(&mut self, setting: &str) -> Result<String, String> {
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
    pub(super) async fn settle(&mut self, jobs: &mut Vec<Job>) {
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
    /// A player with a unit left for later keeps its order: its later units wait too (only
    /// after a split can both halves hold one player's units).
    fn defer_behind_deferred(&mut self, units: &mut Units) {
        if self.deferred.is_empty() {
            return;
        }
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

    /// A committed batch: its units left out as busy go to the deferred list, the others
    /// are answered.
    fn answer(&mut self, mut units: Units, outcome: store::Outcome, started: Instant) {
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
    }

    pub(super) async fn settle_or_split(&mut self, mut units: Units, split_retry: bool) {
        let mut conflicts = 0;
        loop {
            let dropped = units.drop_abandoned(Instant::now());
            if dropped > 0 {
                metrics::counter!("wallet_deadline_expired_total").increment(dropped as u64);
            }
            self.defer_behind_deferred(&mut units);
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
                Ok(outcome) => return self.answer(units, outcome, started),
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
    pub(super) async fn connect(&mut self) -> Result<(), store::Error> {
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

    pub(super) async fn settle_once(
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
pub(super) struct Units {
    pub(super) commands: Vec<Command>,
    pub(super) lens: Vec<usize>,
    pub(super) tickets: Vec<Ticket>,
}

impl Units {
    pub(super) fn push(&mut self, job: Job) {
        self.lens.push(job.commands.len());
        self.commands.extend(job.commands);
        self.tickets.push(job.ticket);
    }

    pub(super) fn is_empty(&self) -> bool {
        self.tickets.is_empty()
    }

    /// Unit `i`'s player (a unit is one player's).
    pub(super) fn player(&self, i: usize) -> &str {
        let at: usize = self.lens[..i].iter().sum();
        self.commands[at].player.as_str()
    }

    /// Whether each unit's wallets are waited for: it was first left for later `patience` ago
    /// or more, so a player busy elsewhere is never starved; with no patience, always.
    pub(super) fn patient(&self, now: Instant, patience: Duration) -> Vec<bool> {
        self.tickets
            .iter()
            .map(|t| patience.is_zero() || t.deferred_at.is_some_and(|at| now >= at + patience))
            .collect()
    }

    /// Takes out the units at `indexes` (ascending), in order.
    pub(super) fn take(&mut self, indexes: &[usize]) -> Vec<Job> {
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
    pub(super) fn drop_abandoned(&mut self, now: Instant) -> usize {
        if !self.tickets.iter().any(|t| t.abandoned(now)) {
            return 0;
        }
        let old = std::mem::take(self);
        let mut commands = old.commands.into_iter();
        let mut dropped = 0;
        for (len, ticket) in old.lens.into_iter().zip(old.tickets) {
            let unit: UnitCommands = commands.by_ref().take(len).collect();
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
    pub(super) fn answer(self, answers: Vec<Answer>, settled: Settled, started: Instant) {
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

    pub(super) fn refuse(self, why: Unavailable) {
        for ticket in self.tickets {
            let _ = ticket.reply.send(Err(why));
        }
    }

    /// Newest unit first (the planted `LaneReorder` bug).
    pub(super) fn reverse(&mut self) {
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
    pub(super) fn split_off_half(&mut self) -> Units {
        let at = self.tickets.len() / 2;
        let commands_at: usize = self.lens[..at].iter().sum();
        Units {
            commands: self.commands.split_off(commands_at),
            lens: self.lens.split_off(at),
            tickets: self.tickets.split_off(at),
        }
    }
}
