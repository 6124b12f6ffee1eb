//! The only SQL of the wallet path, of the operator's adjustments (`operator`), and of the
//! set-up they need (providers, demo players). Nothing outside this module writes wallets or
//! the ledger.
//!
//! One batch is one transaction: prefetch (locking the batch's wallets in player-id order) ->
//! pure `apply` -> bulk writes with `unnest` arrays -> commit. Statements are prepared once per
//! connection and pipelined. `prefetch` holds the reads, `write` the writes (each statement's
//! text beside its struct of arrays), `setup` what runs outside batches.

/// The start of the ledger's recent partitions (yesterday and today, UTC, and the days
/// ahead). A statement that bounds a partitioned table by it is pruned when it starts (now()
/// is fixed for the transaction), so it opens those few partitions, whatever the retention
/// keeps; rows older than that (a retry or a rollback days later) take a second, rarer trip.
macro_rules! recent_start {
    () => {
        "(date_trunc('day', now(), 'UTC') - interval '1 day')"
    };
}

mod operator;
mod prefetch;
mod setup;
mod write;

pub use operator::adjust;
pub use prefetch::{
    PlayerIds, COLUMNS, LIMITS, LOCK_WALLETS, LOCK_WALLETS_SKIP, LOOKUP_TXS, OPEN_BETS, PLAYERS,
    RESERVE_IDS, RESOLVE_PLAYERS, ROUNDS, SESSIONS, TOMBSTONES, WALLET_KEYS,
};
pub use setup::{
    analyze, create_player, demo_seeded_at, ledger_mismatches, mark_demo_seeded, seed_demo_players,
    upsert_provider,
};
pub use write::{
    update_states, ADD_USAGE, CLOSE_ROUNDS, INSERT_LEDGER, INSERT_ROUNDS, UPDATE_WALLETS,
};

/// What every lane connection sets before it prepares its statements. Durability is the
/// gateway's to set, not the server's or the role's: an answer is sent only after COMMIT, so
/// COMMIT must wait for the WAL flush whatever the defaults. Every statement below is planned
/// once (a generic plan: planning per execution would cost more than running) and is written so
/// that its only sensible plan walks the batch's keys and probes an index per key (see
/// [`STATEMENTS`]); scans and hash or merge joins are priced out as well, since on a table the
/// statistics call empty a scan looks as cheap as a probe. JIT compilation is off: a plan
/// whose estimated cost crosses `jit_above_cost` (the limits' use, once a day's ledger holds
/// a few thousand rows a player) would be compiled again at every execution, tens of
/// milliseconds of CPU for a statement that runs in well under one.
pub const LANE_SESSION: &str = "SET synchronous_commit = on;
     SET jit = off;
     SET plan_cache_mode = force_generic_plan;
     SET enable_seqscan = off;
     SET enable_hashjoin = off;
     SET enable_mergejoin = off;";

/// The longest a lane's statement, or a pause in its transaction, may last
/// (`batch::Options::transaction_timeout` is capped at this), far beyond any batch. The report
/// rollups count a ledger row once it is older than their settle time, which must be longer
/// than a lane's transaction can stay open, or a batch committing late could add rows below
/// what a fold already passed.
pub const LANE_TRANSACTION_S_MAX: u64 = 20;

/// Every statement a lane prepares, by name. Each reaches a table only through an index
/// condition on keys the batch brings (a `LATERAL` probe per key, `= ANY` of the batch's ids,
/// or a row address), so no statistics can turn it into a scan whose cost grows with the
/// table; `tests/it/plans.rs` plans each as a generic plan on empty and on full tables and
/// reads the plans to hold that. The state update of stored ledger rows names its partition
/// ([`update_states`]) and is prepared per partition; the test plans it on one.
pub const STATEMENTS: &[(&str, &str)] = &[
    ("RESOLVE_PLAYERS", RESOLVE_PLAYERS),
    ("RESERVE_IDS", RESERVE_IDS),
    ("PLAYERS", PLAYERS),
    ("LOCK_WALLETS", LOCK_WALLETS),
    ("LOCK_WALLETS_SKIP", LOCK_WALLETS_SKIP),
    ("WALLET_KEYS", WALLET_KEYS),
    ("LOOKUP_TXS", LOOKUP_TXS),
    ("FETCH_OLD_TXS", prefetch::FETCH_OLD_TXS),
    ("TOMBSTONES", TOMBSTONES),
    ("ROUNDS", ROUNDS),
    ("OPEN_BETS", OPEN_BETS),
    ("OPEN_BETS_OLD", prefetch::OPEN_BETS_OLD),
    ("SESSIONS", SESSIONS),
    ("LIMITS", LIMITS),
    ("INSERT_LEDGER", INSERT_LEDGER),
    ("UPDATE_WALLETS", UPDATE_WALLETS),
    ("INSERT_ROUNDS", INSERT_ROUNDS),
    ("CLOSE_ROUNDS", CLOSE_ROUNDS),
    ("ADD_USAGE", ADD_USAGE),
];

use std::borrow::Cow;
use std::collections::HashSet;

use tokio_postgres::{Client, Row, Statement};

use crate::apply;
use crate::command::{Answer, Command};
use crate::fault::{Faults, Plant, Point};

/// The wallet path's statements, prepared once per connection.
pub struct Statements {
    reads: prefetch::Reads,
    writes: write::Writes,
}

impl Statements {
    pub async fn prepare(client: &Client) -> Result<Statements, tokio_postgres::Error> {
        let (reads, writes) = tokio::try_join!(
            prefetch::Reads::prepare(client),
            write::Writes::prepare(client)
        )?;
        Ok(Statements { reads, writes })
    }
}

/// Failures of a batch; the batch's transaction was rolled back, nothing was acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("batch of {n_commands} commands: {source}")]
    Database {
        n_commands: usize,
        source: tokio_postgres::Error,
    },
    #[error("invariant violated: {0}")]
    Invariant(String),
    /// The lane has no connection and waits before trying again.
    #[error("no database connection (reconnecting)")]
    NotConnected,
}

impl Error {
    pub(crate) fn database(n_commands: usize) -> impl FnOnce(tokio_postgres::Error) -> Error {
        move |source| Error::Database { n_commands, source }
    }

    /// Worth running the same batch again at once: a race with another writer (a unique key
    /// taken meanwhile by another lane or gateway instance), a serialization failure or a
    /// deadlock. The retry's prefetch sees the winner's row.
    pub fn could_retry(&self) -> bool {
        use tokio_postgres::error::SqlState;
        match self {
            Error::Database { source, .. } => matches!(
                source.code(),
                Some(c) if *c == SqlState::UNIQUE_VIOLATION
                    || *c == SqlState::T_R_SERIALIZATION_FAILURE
                    || *c == SqlState::T_R_DEADLOCK_DETECTED
            ),
            Error::Invariant(_) | Error::NotConnected => false,
        }
    }

    /// The database could not be reached, went away or is shutting down: nothing is wrong with
    /// the batch's commands, so the batch fails whole (it is never split to hunt a poisoned
    /// command) and the lane reconnects. Errors without a SQLSTATE come from the connection
    /// itself (refused, closed, I/O, timeout), not from a statement.
    pub fn is_connection(&self) -> bool {
        match self {
            Error::Database { source, .. } => {
                source.is_closed()
                    || source.code().is_none_or(|code| {
                        let code = code.code();
                        code.starts_with("08") // connection exception
                            || code.starts_with("57P") // admin or crash shutdown, cannot connect now
                            || code == "53300" // too many connections
                    })
            }
            Error::NotConnected => true,
            Error::Invariant(_) => false,
        }
    }

    /// The database refused the data itself (SQLSTATE class 22, data exception: a byte
    /// sequence invalid in the encoding, a value out of range; or 23514, a check
    /// constraint): a batch of one unit failing so would fail the same way on every retry.
    pub fn is_data(&self) -> bool {
        match self {
            Error::Database { source, .. } => source
                .code()
                .is_some_and(|c| c.code().starts_with("22") || c.code() == "23514"),
            Error::Invariant(_) | Error::NotConnected => false,
        }
    }

    /// A short label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Database { .. } if self.is_connection() => "connection",
            Error::Database { .. } if self.could_retry() => "conflict",
            Error::Database { .. } => "database",
            Error::Invariant(_) => "invariant",
            Error::NotConnected => "not_connected",
        }
    }
}

/// What a batch's transaction did: the answers of the units it settled (one per command, in
/// order) and the units it left alone because another transaction held a wallet of theirs.
#[derive(Debug)]
pub struct Outcome {
    pub answers: Vec<Answer>,
    /// Indexes of the units not settled (ascending); their players' rows were not written.
    pub busy: Vec<usize>,
}

/// One batch as the lane hands it over: every unit's commands back to back, each unit's
/// length, whether each unit waits for a wallet held elsewhere (`patient`) or is left for a
/// later batch, and whether the batch is half of one that failed (only a planted bug reads it).
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    pub commands: &'a [Command],
    pub units: &'a [usize],
    pub patient: &'a [bool],
    pub split_retry: bool,
}

/// Runs one batch as one transaction; the answers are valid only because this returned `Ok`
/// after the commit. A unit's wallets are locked without waiting (held elsewhere: the unit is
/// `busy`, left for a later batch) unless the unit is `patient`, whose wallets are waited for,
/// before any other lock.
pub async fn settle(
    client: &mut Client,
    statements: &Statements,
    player_ids: &mut PlayerIds,
    batch: Batch<'_>,
    faults: &Faults,
) -> Result<Outcome, Error> {
    let n = batch.commands.len();
    player_ids
        .resolve(client, &statements.reads, batch.commands)
        .await
        .map_err(Error::database(n))?;
    let result = settle_in_transaction(client, statements, player_ids, batch, faults).await;
    if result.is_err() && !client.is_closed() {
        // Ends the failed transaction (a no-op if COMMIT already turned into a rollback).
        client
            .batch_execute("ROLLBACK")
            .await
            .map_err(Error::database(n))?;
    }
    result
}

/// BEGIN travels with the prefetch and COMMIT with the writes: two round trips per batch.
///
/// The order of statements on the wire is the transaction: BEGIN, then the wallet lock, then
/// the reads; the writes, then COMMIT. tokio-postgres sends a statement when its future is
/// first polled, and a plain `join!` starts polling at a different branch each time, so it
/// could send COMMIT before the writes (each write would then commit on its own). Every join
/// here is `biased`: branches are first polled, and so sent, in the order written. Statements
/// pipelined on one connection run in the order sent, so every read after the lock sees what
/// the lock's previous holder committed; an error in any statement aborts the transaction and
/// the COMMIT behind it becomes a rollback, so nothing is acknowledged.
async fn settle_in_transaction(
    client: &Client,
    statements: &Statements,
    player_ids: &PlayerIds,
    batch: Batch<'_>,
    faults: &Faults,
) -> Result<Outcome, Error> {
    let prefetch::Fetched {
        mut world,
        busy: busy_players,
        addresses,
    } = begin_and_prefetch(client, statements, player_ids, batch, faults).await?;
    let (commands, units, busy) = without_busy(batch.commands, batch.units, &busy_players);
    let (commands, units) = (&commands[..], &units[..]);
    let no_dedup = planted_world(faults, &mut world, commands, batch.split_retry);
    let answers = apply_guarded(&mut world, commands, units)?;
    let n = batch.commands.len();
    let planned = plan_writes(client, statements, &world, &addresses, no_dedup, n).await?;
    write_and_commit(client, statements, &planned, faults, commands, n).await?;
    Ok(Outcome { answers, busy })
}

/// BEGIN and the prefetch in one pipeline, with the test builds' failpoint (and the planted
/// asynchronous commit) between them.
async fn begin_and_prefetch<'c>(
    client: &Client,
    statements: &Statements,
    player_ids: &PlayerIds,
    batch: Batch<'c>,
    faults: &Faults,
) -> Result<prefetch::Fetched<'c>, Error> {
    let n = batch.commands.len();
    let prefetch_fault = faults.sql(Point::Prefetch, batch.commands);
    let async_commit = faults
        .planted(Plant::AsyncCommit)
        .then_some("SET LOCAL synchronous_commit = off");
    let (begun, planted, fault, fetched) = tokio::join!(
        biased;
        client.batch_execute("BEGIN"),
        failpoint(client, async_commit),
        failpoint(client, prefetch_fault.as_deref()),
        prefetch::prefetch(client, &statements.reads, player_ids, batch)
    );
    begun.map_err(Error::database(n))?;
    planted.map_err(Error::database(n))?;
    fault.map_err(Error::database(n))?;
    fetched
}

/// What the planted bugs of test builds change in the world (nothing in other builds); returns
/// whether the batch skips the look-up of stored transactions.
fn planted_world(
    faults: &Faults,
    world: &mut apply::World,
    commands: &[Command],
    split_retry: bool,
) -> bool {
    if faults.planted(Plant::TombstonesOff) {
        world.tombstones.clear();
    }
    let no_dedup = faults.skips_dedup(split_retry);
    if no_dedup {
        let own: HashSet<(i32, &str)> = commands
            .iter()
            .filter_map(|c| Some((c.provider.0, c.tx()?.as_str())))
            .collect();
        world
            .txs
            .retain(|k, _| !own.contains(&(k.0 .0, k.1.as_str())));
    }
    no_dedup
}

/// `apply` with its assertions turned into an invariant error (the batch is then dropped
/// uncommitted).
fn apply_guarded(
    world: &mut apply::World,
    commands: &[Command],
    units: &[usize],
) -> Result<Vec<Answer>, Error> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        apply::apply_units(world, commands, units)
    }))
    .map_err(|panic| {
        let what = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        Error::Invariant(what)
    })
}

/// The batch's writes, planned: stored rows are written by the address the prefetch read them
/// at, so each changed row's partition needs its state statement, and every address must be
/// known before anything is sent.
async fn plan_writes<'w>(
    client: &Client,
    statements: &Statements,
    world: &'w apply::World,
    addresses: &'w prefetch::Addresses,
    no_dedup: bool,
    n: usize,
) -> Result<write::Planned<'w>, Error> {
    let partitions = world
        .txs
        .values()
        .filter(|t| t.state_changed)
        .filter_map(|t| addresses.txs.get(&t.id))
        .map(|a| a.partition.as_str());
    statements
        .writes
        .prepare_partitions(client, partitions)
        .await
        .map_err(Error::database(n))?;
    write::Planned::new(world, addresses, &statements.writes, no_dedup)
        .map_err(|write::Unread(what)| Error::Invariant(what))
}

/// The writes and COMMIT in one pipeline, with the test builds' failpoints before and after
/// COMMIT. Returns once COMMIT's outcome is known (or, under the planted
/// `AnswerBeforeCommit`, once everything is on the wire).
async fn write_and_commit(
    client: &Client,
    statements: &Statements,
    planned: &write::Planned<'_>,
    faults: &Faults,
    commands: &[Command],
    n: usize,
) -> Result<(), Error> {
    let write_fault = faults.sql(Point::Write, commands);
    let after_commit_fault = faults.sql(Point::AfterCommit, commands);
    let finish = async {
        tokio::join!(
            biased;
            write::send(client, &statements.writes, planned),
            failpoint(client, write_fault.as_deref()),
            client.batch_execute("COMMIT"),
            failpoint(client, after_commit_fault.as_deref())
        )
    };
    if faults.planted(Plant::AnswerBeforeCommit) {
        // One poll puts every statement on the wire; their outcome is never looked at.
        let mut finish = std::pin::pin!(finish);
        std::future::poll_fn(|cx| {
            let _ = std::future::Future::poll(finish.as_mut(), cx);
            std::task::Poll::Ready(())
        })
        .await;
        return Ok(());
    }
    let (written, fault, committed, after_commit) = finish.await;
    written.map_err(Error::database(n))?;
    fault.map_err(Error::database(n))?;
    committed.map_err(Error::database(n))?;
    after_commit.map_err(Error::database(n))?;
    Ok(())
}

/// The batch without the units of `busy` players (whose wallets another transaction holds),
/// and the indexes of the units left out. Borrows the batch when nobody is busy (the rule).
fn without_busy<'c>(
    commands: &'c [Command],
    units: &'c [usize],
    busy: &apply::BatchSet<&str>,
) -> (Cow<'c, [Command]>, Cow<'c, [usize]>, Vec<usize>) {
    if busy.is_empty() {
        return (Cow::Borrowed(commands), Cow::Borrowed(units), Vec::new());
    }
    let (mut kept, mut kept_units, mut left) = (Vec::new(), Vec::new(), Vec::new());
    let mut at = 0;
    for (i, &len) in units.iter().enumerate() {
        let unit = &commands[at..at + len];
        at += len;
        if unit.iter().any(|c| busy.contains(c.player.as_str())) {
            left.push(i);
        } else {
            kept.extend_from_slice(unit);
            kept_units.push(len);
        }
    }
    (Cow::Owned(kept), Cow::Owned(kept_units), left)
}

/// Runs a failpoint's statement, if one fired (test builds only; see `fault`).
async fn failpoint(client: &Client, sql: Option<&str>) -> Result<(), tokio_postgres::Error> {
    match sql {
        Some(sql) => client.batch_execute(sql).await,
        None => Ok(()),
    }
}

/// Statement parameters, gathered before a pipeline so they outlive it.
pub(crate) type Params<'a> = Vec<&'a (dyn tokio_postgres::types::ToSql + Sync)>;

/// Runs `statement` unless there is nothing to look up.
async fn query_unless(
    client: &Client,
    empty: bool,
    statement: &Statement,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Vec<Row>, tokio_postgres::Error> {
    if empty {
        return Ok(Vec::new());
    }
    client.query(statement, params).await
}

/// Runs `statement` unless there is nothing to write.
async fn execute_unless(
    client: &Client,
    empty: bool,
    statement: &Statement,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<u64, tokio_postgres::Error> {
    if empty {
        return Ok(0);
    }
    client.execute(statement, params).await
}

pub(super) fn invariant(what: &str) -> Error {
    Error::Invariant(format!("prefetch: {what}"))
}
