//! The batch's reads, in one pipeline behind BEGIN: the wallet lock first (in player-id order,
//! `SKIP LOCKED` for units that must not wait), then players, reserved ledger ids, stored
//! transactions and tombstones by key, rounds and their open bets, sessions and limits, turned
//! into the `World` that `apply` works on.
//!
//! Shaped like the write side: `statements.rs` holds every read as a `pub const` statement;
//! `plan.rs` gathers what the batch needs (keys as query arrays); [`read`] sends one pipeline
//! (and a second round trip only for rows older than the recent partitions); `assemble.rs`
//! turns the rows into the world.

mod assemble;
mod plan;
mod statements;

use tokio_postgres::{Client, Row};

pub use plan::PlayerIds;
pub use statements::*;

use super::{query_unless, Batch, Error, Params};
use crate::apply::{self, BatchMap, BatchSet, World};
use crate::money::Currency;
use plan::Plan;

/// Reads the batch's world, its wallets locked. Returns it with the players left out as busy:
/// a wallet of theirs exists but another transaction holds it (only for units not `patient`:
/// their wallets are locked with `SKIP LOCKED`, then listed without a lock; patient units'
/// wallets are waited for, first, in (player, currency) order, so two batches that both wait
/// never deadlock and a batch that waits holds nothing another waiter needs).
pub(super) async fn prefetch<'c>(
    tx: &Client,
    s: &Reads,
    player_ids: &PlayerIds,
    batch: Batch<'c>,
) -> Result<Fetched<'c>, Error> {
    let plan = Plan::new(player_ids, batch.commands, batch.units, batch.patient);
    let rows = read(tx, s, &plan)
        .await
        .map_err(Error::database(batch.commands.len()))?;
    assemble::world(&plan, &rows)
}

/// The rows of one prefetch, by statement.
pub(super) struct Rows {
    waited: Vec<Row>,
    skipped: Vec<Row>,
    skipped_keys: Vec<Row>,
    players: Vec<Row>,
    ids: Row,
    txs: Vec<Row>,
    tombstones: Vec<Row>,
    rounds: Vec<Row>,
    recent_open_bets: Vec<Row>,
    sessions: Vec<Row>,
    limits: Vec<Row>,
    /// Ledger rows older than the recent partitions, and open bets of old rounds.
    old_txs: Vec<Row>,
    old_open_bets: Vec<Row>,
}

/// One pipeline; the lock comes first, so every read after it sees what the lock's previous
/// holder committed. Queries with nothing to look up are not sent. Then, only when there are
/// any, rows and rounds older than the recent partitions (rare: a retry or a rollback days
/// later, a round left open since yesterday) in one more round trip.
async fn read(tx: &Client, s: &Reads, plan: &Plan<'_>) -> Result<Rows, tokio_postgres::Error> {
    let by_players: Params = vec![&plan.players];
    let by_waited: Params = vec![&plan.waited];
    let by_skipped: Params = vec![&plan.skipped];
    let by_count: Params = vec![&plan.ids_needed];
    let by_txs: Params = vec![&plan.txs.0, &plan.txs.1];
    let by_tombs: Params = vec![&plan.tombstones.0, &plan.tombstones.1];
    let by_rounds: Params = vec![&plan.rounds.0, &plan.rounds.1, &plan.rounds.2];
    let by_open: Params = vec![&plan.open.0, &plan.open.1, &plan.open.2];
    let by_sessions: Params = vec![&plan.sessions];
    let first = tokio::try_join!(
        biased;
        query_unless(tx, plan.waited.is_empty(), &s.wallets, &by_waited),
        query_unless(tx, plan.skipped.is_empty(), &s.wallets_skip, &by_skipped),
        query_unless(tx, plan.skipped.is_empty(), &s.wallet_keys, &by_skipped),
        query_unless(tx, plan.players.is_empty(), &s.players, &by_players),
        tx.query_one(&s.ids, &by_count),
        query_unless(tx, plan.txs.0.is_empty(), &s.txs, &by_txs),
        query_unless(tx, plan.tombstones.0.is_empty(), &s.tombstones, &by_tombs),
        query_unless(tx, plan.rounds.0.is_empty(), &s.rounds, &by_rounds),
        query_unless(tx, plan.open.0.is_empty(), &s.open_bets, &by_open),
        query_unless(tx, plan.sessions.is_empty(), &s.sessions, &by_sessions),
        query_unless(tx, plan.players.is_empty(), &s.limits, &by_players),
    )?;
    let (old_ids, old_times) = plan::old_tx_addresses(&first.5);
    let old_rounds = plan.old_open_rounds(&first.7);
    let by_address: Params = vec![&old_ids, &old_times];
    let by_old_rounds: Params = vec![&old_rounds.0, &old_rounds.1, &old_rounds.2];
    let (old_txs, old_open_bets) = tokio::try_join!(
        biased;
        query_unless(tx, old_ids.is_empty(), &s.old_txs, &by_address),
        query_unless(tx, old_rounds.0.is_empty(), &s.old_open_bets, &by_old_rounds),
    )?;
    Ok(Rows {
        waited: first.0,
        skipped: first.1,
        skipped_keys: first.2,
        players: first.3,
        ids: first.4,
        txs: first.5,
        tombstones: first.6,
        rounds: first.7,
        recent_open_bets: first.8,
        sessions: first.9,
        limits: first.10,
        old_txs,
        old_open_bets,
    })
}

/// Where the stored rows the batch read lie (`ctid`, as text), so that its writes reach each
/// by address: a TID scan, the one plan that no statistics can turn into a scan of the table.
/// The addresses stay valid until COMMIT: the wallets are locked, and a player's rounds and
/// ledger states are written only by the lane holding that player's wallet.
#[derive(Debug, Default)]
pub(super) struct Addresses {
    /// Ledger rows by id.
    pub(super) txs: BatchMap<i64, TxAddress>,
    /// Locked wallets by (player id, currency).
    pub(super) wallets: BatchMap<(i64, Currency), String>,
    pub(super) rounds: BatchMap<apply::RoundKey, String>,
}

/// A stored ledger row's partition (its name, as `regclass` writes it) and address there.
#[derive(Debug, Clone)]
pub(super) struct TxAddress {
    pub(super) partition: String,
    pub(super) ctid: String,
}

/// What the prefetch read: the batch's world, the players left out as busy, and where the rows
/// it may change lie.
pub(super) struct Fetched<'c> {
    pub(super) world: World,
    pub(super) busy: BatchSet<&'c str>,
    pub(super) addresses: Addresses,
}
