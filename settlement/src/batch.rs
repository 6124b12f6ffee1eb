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

use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::Duration;

use smallvec::SmallVec;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::apply::BATCH_LEN_MAX;
use crate::command::{Answer, Command};
use crate::fault::Faults;
use crate::store::{self};

mod lane;

use lane::*;

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

/// A unit's commands, and its answers: most units are one command, kept inline (no heap
/// buffer between a callback and its lane).
type UnitCommands = SmallVec<[Command; 1]>;
type UnitAnswers = SmallVec<[Answer; 1]>;

type Reply = oneshot::Sender<Result<(UnitAnswers, Settled), Unavailable>>;

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
    commands: UnitCommands,
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

// Nearly every message is a job: boxing it would add back the allocation its inline unit
// saves, so the queue's slots are the size of a job.
#[allow(clippy::large_enum_variant)]
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
        let (mut answers, settled) = self.settle_job(smallvec::smallvec![command]).await?;
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
        let (answers, settled) = self.settle_job(SmallVec::from_vec(commands)).await?;
        Ok((answers.into_vec(), settled))
    }

    /// Queues one unit on its player's lane and waits for its batch's commit (or the
    /// deadline).
    async fn settle_job(
        &self,
        commands: UnitCommands,
    ) -> Result<(UnitAnswers, Settled), Unavailable> {
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
