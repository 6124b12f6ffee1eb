//! The only SQL of the wallet path, and of the set-up it needs (providers, demo players).
//! Nothing outside this module writes wallets or the ledger.
//!
//! One batch is one transaction: prefetch (locking the batch's wallets in player-id order) ->
//! pure `apply` -> bulk writes with `unnest` arrays -> commit. Statements are prepared once per
//! connection and pipelined.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap, HashSet};

use tokio_postgres::{Client, GenericClient, Row, Statement};

use crate::apply::{
    self, Limit, LimitKind, Player, Round, Session, Tx, TxKind, TxState, Wallet, World,
};
use crate::command::{
    Action, Answer, Code, Command, Fingerprint, GameId, PlayerRef, ProviderTxId, RoundId,
    SessionToken,
};
use crate::fault::{Faults, Plant, Point};
use crate::money::Currency;

/// Creates or updates a provider row from configuration; returns its id.
pub async fn upsert_provider(
    client: &impl GenericClient,
    code: &str,
    dialect: &str,
    enabled: bool,
) -> Result<i32, tokio_postgres::Error> {
    let row = client
        .query_one(
            "INSERT INTO providers (code, dialect, enabled) VALUES ($1, $2, $3)
             ON CONFLICT (code) DO UPDATE SET dialect = EXCLUDED.dialect, enabled = EXCLUDED.enabled
             RETURNING id",
            &[&code, &dialect, &enabled],
        )
        .await?;
    Ok(row.get(0))
}

/// Creates players `<prefix>1 ..= <prefix><count>` that do not exist yet, each with a wallet in
/// `currency` opened by a deposit of `opening_minor` (a ledger row, like every balance change).
/// Existing players are left alone, so this is safe at every start. Returns how many were new.
pub async fn seed_demo_players(
    client: &impl GenericClient,
    prefix: &str,
    count: u32,
    currency: &str,
    opening_minor: i64,
) -> Result<u64, tokio_postgres::Error> {
    let count = i32::try_from(count).unwrap_or(i32::MAX);
    client
        .execute(
            "WITH new_players AS (
                 INSERT INTO players (external_id)
                 SELECT $1 || g FROM generate_series(1, $2::int) AS g
                 ORDER BY g
                 ON CONFLICT (external_id) DO NOTHING
                 RETURNING id
             ), new_wallets AS (
                 INSERT INTO wallets (player_id, currency, balance)
                 SELECT id, $3, $4 FROM new_players
                 RETURNING player_id
             )
             INSERT INTO transactions (kind, outcome, player_id, currency, amount, real_delta,
                                       balance_before, balance_after, bonus_before, bonus_after)
             SELECT 'deposit', 'OK', player_id, $3, $4, $4, 0, $4, 0, 0 FROM new_wallets",
            &[&prefix, &count, &currency, &opening_minor],
        )
        .await
}

/// Creates a player known by `external_id` with an empty wallet in `currency` (an empty
/// wallet needs no ledger row: its balance is the sum of none). `None` when the external id is
/// taken.
pub async fn create_player(
    client: &impl GenericClient,
    external_id: &str,
    currency: &str,
) -> Result<Option<i64>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "WITH new_player AS (
                 INSERT INTO players (external_id) VALUES ($1)
                 ON CONFLICT (external_id) DO NOTHING
                 RETURNING id
             ), new_wallet AS (
                 INSERT INTO wallets (player_id, currency) SELECT id, $2 FROM new_player
             )
             SELECT id FROM new_player",
            &[&external_id, &currency],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// Refreshes planner statistics after bulk seeding (fresh tables look empty to the planner).
pub async fn analyze(client: &impl GenericClient) -> Result<(), tokio_postgres::Error> {
    client
        .batch_execute("ANALYZE players, wallets, transactions, rounds")
        .await
}

/// Wallets whose balance (or bonus) differs from the sum of their ledger rows (with what
/// pruning took out of the ledger, `ledger_pruned`): must be empty.
pub async fn ledger_mismatches(
    client: &impl GenericClient,
) -> Result<Vec<(i64, String, i64, i64)>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT w.player_id, w.currency, w.balance,
                    (coalesce(t.real, 0) + coalesce(p.real_delta, 0))::bigint
             FROM wallets w
             LEFT JOIN (SELECT player_id, currency, sum(real_delta) AS real, sum(bonus_delta) AS bonus
                        FROM transactions GROUP BY player_id, currency) t
               ON t.player_id = w.player_id AND t.currency = w.currency
             LEFT JOIN ledger_pruned p ON p.player_id = w.player_id AND p.currency = w.currency
             WHERE w.balance <> coalesce(t.real, 0) + coalesce(p.real_delta, 0)
                OR w.bonus <> coalesce(t.bonus, 0) + coalesce(p.bonus_delta, 0)
             ORDER BY w.player_id, w.currency",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect())
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

const TX_COLUMNS: &str = "t.provider_id, t.provider_tx_id, t.id, t.kind, t.outcome, t.state, \
     t.player_id, t.currency, t.round_id, t.game_id, t.amount, t.real_delta, t.bonus_delta, \
     t.balance_after, t.bonus_after, t.reference_tx_id, t.fingerprint, t.created_at";

/// The wallet path's statements, prepared once per connection.
pub struct Statements {
    resolve: Statement,
    ids: Statement,
    players: Statement,
    wallets: Statement,
    wallets_skip: Statement,
    wallet_keys: Statement,
    txs: Statement,
    tombstones: Statement,
    rounds: Statement,
    open_bets: Statement,
    sessions: Statement,
    limits: Statement,
    insert_txs: Statement,
    update_wallets: Statement,
    update_states: Statement,
    insert_rounds: Statement,
    close_rounds: Statement,
}

impl Statements {
    /// Lookups by the batch's keys are written as `LATERAL (... OFFSET 0)` so the plan always
    /// walks the keys and probes an index per key: generic plans are made from statistics that
    /// may say a partial index is nearly empty, and would then scan it whole for every batch.
    ///
    /// The ledger is partitioned by day (`partitions`): a row is fetched by its key's
    /// `(id, created_at)` and a round's bets from the round's start on, so each lookup reads
    /// one partition (the others are pruned while the statement runs).
    pub async fn prepare(client: &Client) -> Result<Statements, tokio_postgres::Error> {
        let txs = format!(
            "SELECT {TX_COLUMNS} FROM unnest($1::int[], $2::text[]) AS k(p, x)
             CROSS JOIN LATERAL (SELECT t.* FROM transaction_keys tk
                 JOIN transactions t ON t.id = tk.id AND t.created_at = tk.created_at
                 WHERE tk.provider_id = k.p AND tk.provider_tx_id = k.x OFFSET 0) t"
        );
        // A round's rows are never older than its `rounds` row: the bet that opened the round
        // wrote it in the same transaction (the same `now()`).
        let open_bets = format!(
            "SELECT {TX_COLUMNS} FROM unnest($1::int[], $2::bigint[], $3::text[]) AS k(p, pl, r)
             JOIN rounds r ON r.provider_id = k.p AND r.player_id = k.pl AND r.round_id = k.r
             CROSS JOIN LATERAL (SELECT * FROM transactions t
                 WHERE t.provider_id = k.p AND t.player_id = k.pl AND t.round_id = k.r
                   AND t.created_at >= r.created_at
                   AND t.kind = 'bet' AND t.state IS NOT NULL OFFSET 0) t
             ORDER BY t.id"
        );
        let resolve = client
            .prepare("SELECT id, external_id FROM players WHERE external_id = ANY($1::text[])")
            .await?;
        let (ids, players, wallets, txs, tombstones, rounds, open_bets, sessions, limits) = tokio::try_join!(
            client.prepare(
                "SELECT coalesce(array_agg(nextval('transactions_id_seq')), '{}')
                 FROM generate_series(1, $1::int)"
            ),
            client.prepare(
                "SELECT id, status <> 'active' OR coalesce(self_excluded_until > now(), false)
                 FROM players WHERE id = ANY($1::bigint[])"
            ),
            // The lock: every writer of a wallet locks its rows in (player_id, currency) order,
            // so batches never deadlock each other or the REST module.
            client.prepare(
                "SELECT player_id, currency, balance, bonus, needs_reconciliation, created_at
                 FROM wallets WHERE player_id = ANY($1::bigint[])
                 ORDER BY player_id, currency
                 FOR UPDATE"
            ),
            client.prepare(&txs),
            // Only rollbacks' keys carry a reference.
            client.prepare(
                "SELECT DISTINCT t.provider_id, t.reference_tx_id
                 FROM unnest($1::int[], $2::text[]) AS k(p, x)
                 CROSS JOIN LATERAL (SELECT * FROM transaction_keys t
                     WHERE t.provider_id = k.p AND t.reference_tx_id = k.x OFFSET 0) t"
            ),
            client.prepare(
                "SELECT r.provider_id, r.player_id, r.round_id, r.closed, r.game_id
                 FROM unnest($1::int[], $2::bigint[], $3::text[]) AS k(p, pl, r)
                 CROSS JOIN LATERAL (SELECT * FROM rounds r
                     WHERE r.provider_id = k.p AND r.player_id = k.pl AND r.round_id = k.r
                     OFFSET 0) r"
            ),
            client.prepare(&open_bets),
            client.prepare(
                "SELECT token, player_id, currency, game_id, expires_at > now()
                 FROM game_sessions WHERE token = ANY($1::text[])"
            ),
            // A limit's amount in force: a raised one only once its cooling-off is over
            // (`rg::in_force`, the same rule in Rust).
            client.prepare(
                "SELECT l.player_id, l.currency, l.kind, l.amount,
                        CASE WHEN l.kind = 'max_bet' THEN 0 ELSE coalesce((
                            SELECT sum(CASE
                                WHEN l.kind = 'wager' AND t.kind = 'bet' THEN t.amount
                                WHEN l.kind = 'wager' AND t.kind = 'rollback'
                                     AND t.real_delta + t.bonus_delta > 0 THEN -t.amount
                                WHEN l.kind = 'loss' THEN -(t.real_delta + t.bonus_delta)
                                ELSE 0 END)
                            FROM transactions t
                            WHERE t.player_id = l.player_id AND t.currency = l.currency
                              AND t.kind IN ('bet', 'win', 'rollback') AND t.outcome = 'OK'
                              AND t.created_at >= date_trunc(l.period, now() AT TIME ZONE 'UTC')
                                                  AT TIME ZONE 'UTC'
                        ), 0) END::bigint
                 FROM (SELECT player_id, currency, kind, period,
                              CASE WHEN next_from <= now() THEN next_amount ELSE amount END
                                  AS amount
                       FROM rg_limits WHERE player_id = ANY($1::bigint[])) l
                 WHERE l.amount IS NOT NULL"
            ),
        )?;
        // Another gateway on the same database may hold some of the batch's wallets: those
        // are skipped rather than waited for (their players' commands wait for a later batch,
        // see `prefetch`), so a batch never queues behind another's commit and fsync.
        let (wallets_skip, wallet_keys) = tokio::try_join!(
            client.prepare(
                "SELECT player_id, currency, balance, bonus, needs_reconciliation, created_at
                 FROM wallets WHERE player_id = ANY($1::bigint[])
                 ORDER BY player_id, currency
                 FOR UPDATE SKIP LOCKED"
            ),
            client.prepare(
                "SELECT player_id, currency FROM wallets WHERE player_id = ANY($1::bigint[])"
            ),
        )?;
        let (insert_txs, update_wallets, update_states, insert_rounds, close_rounds) = tokio::try_join!(
            // The ledger rows and their keys in one statement; both take the transaction's
            // `now()` as `created_at` (the ledger's default), which the key points at. A
            // provider transaction id already keyed fails the batch (unique violation), which
            // is retried and then finds the row.
            client.prepare(
                "WITH rows AS (
                     SELECT * FROM unnest($1::bigint[], $2::int[], $3::text[], $4::text[],
                         $5::text[], $6::text[], $7::bigint[], $8::text[], $9::text[], $10::text[],
                         $11::bigint[], $12::bigint[], $13::bigint[], $14::bigint[], $15::bigint[],
                         $16::bigint[], $17::bigint[], $18::text[], $19::bytea[])
                         AS u(id, provider_id, provider_tx_id, kind, outcome, state, player_id,
                              currency, round_id, game_id, amount, real_delta, bonus_delta,
                              balance_before, balance_after, bonus_before, bonus_after,
                              reference_tx_id, fingerprint)
                 ), keys AS (
                     INSERT INTO transaction_keys (provider_id, provider_tx_id, id, created_at,
                                                   player_id, reference_tx_id)
                     SELECT provider_id, provider_tx_id, id, now(), player_id,
                            CASE WHEN kind = 'rollback' THEN reference_tx_id END
                     FROM rows WHERE provider_id IS NOT NULL
                 )
                 INSERT INTO transactions (id, provider_id, provider_tx_id, kind, outcome, state,
                     player_id, currency, round_id, game_id, amount, real_delta, bonus_delta,
                     balance_before, balance_after, bonus_before, bonus_after, reference_tx_id,
                     fingerprint)
                 SELECT * FROM rows"
            ),
            client.prepare(
                "UPDATE wallets w SET balance = u.b, bonus = u.bo, needs_reconciliation = u.f
                 FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], $5::bool[])
                      AS u(p, c, b, bo, f)
                 WHERE w.player_id = u.p AND w.currency = u.c"
            ),
            client.prepare(
                "UPDATE transactions t SET state = u.s
                 FROM unnest($1::bigint[], $2::timestamptz[], $3::text[]) AS u(id, c, s)
                 WHERE t.id = u.id AND t.created_at = u.c"
            ),
            // Rounds the prefetch did not find. No ON CONFLICT: the lane owns the player, so
            // a conflict means another gateway opened the round meanwhile, and the batch is
            // retried (its prefetch then finds the round).
            client.prepare(
                "INSERT INTO rounds (provider_id, player_id, round_id, game_id, closed, closed_at)
                 SELECT p, pl, rid, g, c, CASE WHEN c THEN now() END
                 FROM unnest($1::int[], $2::bigint[], $3::text[], $4::text[], $5::bool[])
                      AS u(p, pl, rid, g, c)"
            ),
            client.prepare(
                "UPDATE rounds r SET closed = true, closed_at = coalesce(r.closed_at, now())
                 FROM unnest($1::int[], $2::bigint[], $3::text[]) AS u(p, pl, rid)
                 WHERE r.provider_id = u.p AND r.player_id = u.pl AND r.round_id = u.rid"
            ),
        )?;
        Ok(Statements {
            resolve,
            ids,
            players,
            wallets,
            wallets_skip,
            wallet_keys,
            txs,
            tombstones,
            rounds,
            open_bets,
            sessions,
            limits,
            insert_txs,
            update_wallets,
            update_states,
            insert_rounds,
            close_rounds,
        })
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

/// Runs one batch as one transaction; the answers are valid only because this returned `Ok`
/// after the commit. A unit's wallets are locked without waiting (held elsewhere: the unit is
/// `busy`, left for a later batch) unless the unit is `patient` (one entry per unit), whose
/// wallets are waited for, before any other lock. `split_retry` says the batch is half of one
/// that failed (only a planted bug reads it).
#[allow(clippy::too_many_arguments)]
pub async fn settle(
    client: &mut Client,
    statements: &Statements,
    player_ids: &mut PlayerIds,
    commands: &[Command],
    units: &[usize],
    patient: &[bool],
    faults: &Faults,
    split_retry: bool,
) -> Result<Outcome, Error> {
    let n = commands.len();
    player_ids
        .resolve(client, statements, commands)
        .await
        .map_err(Error::database(n))?;
    let result = settle_in_transaction(
        client,
        statements,
        player_ids,
        commands,
        units,
        patient,
        faults,
        split_retry,
    )
    .await;
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
#[allow(clippy::too_many_arguments)]
async fn settle_in_transaction(
    client: &Client,
    statements: &Statements,
    player_ids: &PlayerIds,
    commands: &[Command],
    units: &[usize],
    patient: &[bool],
    faults: &Faults,
    split_retry: bool,
) -> Result<Outcome, Error> {
    let n = commands.len();
    let prefetch_fault = faults.sql(Point::Prefetch, commands);
    let async_commit = faults
        .planted(Plant::AsyncCommit)
        .then_some("SET LOCAL synchronous_commit = off");
    let (begun, planted, fault, world) = tokio::join!(
        biased;
        client.batch_execute("BEGIN"),
        failpoint(client, async_commit),
        failpoint(client, prefetch_fault.as_deref()),
        prefetch(client, statements, player_ids, commands, units, patient)
    );
    begun.map_err(Error::database(n))?;
    planted.map_err(Error::database(n))?;
    fault.map_err(Error::database(n))?;
    let Fetched {
        mut world,
        busy: busy_players,
        row_times,
    } = world?;
    let (commands, units, busy) = without_busy(commands, units, &busy_players);
    let (commands, units) = (&commands[..], &units[..]);
    if faults.planted(Plant::TombstonesOff) {
        world.tombstones.clear();
    }
    let no_dedup = faults.skips_dedup(split_retry);
    if no_dedup {
        let own: std::collections::HashSet<(i32, &str)> = commands
            .iter()
            .filter_map(|c| Some((c.provider.0, c.tx()?.as_str())))
            .collect();
        world
            .txs
            .retain(|k, _| !own.contains(&(k.0 .0, k.1.as_str())));
    }
    let answers = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        apply::apply_units(&mut world, commands, units)
    }))
    .map_err(|panic| {
        let what = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        Error::Invariant(what)
    })?;
    // A state update addresses its row by (id, created_at): every changed row was read here.
    if let Some(t) = world
        .txs
        .values()
        .find(|t| t.state_changed && !row_times.contains_key(&t.id))
    {
        return Err(Error::Invariant(format!(
            "ledger row {} changed state but was not read",
            t.id
        )));
    }
    let write_fault = faults.sql(Point::Write, commands);
    let after_commit_fault = faults.sql(Point::AfterCommit, commands);
    let finish = async {
        tokio::join!(
            biased;
            write(client, statements, &world, &row_times, no_dedup),
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
        return Ok(Outcome { answers, busy });
    }
    let (written, fault, committed, after_commit) = finish.await;
    written.map_err(Error::database(n))?;
    fault.map_err(Error::database(n))?;
    committed.map_err(Error::database(n))?;
    after_commit.map_err(Error::database(n))?;
    Ok(Outcome { answers, busy })
}

/// The batch without the units of `busy` players (whose wallets another transaction holds),
/// and the indexes of the units left out. Borrows the batch when nobody is busy (the rule).
fn without_busy<'c>(
    commands: &'c [Command],
    units: &'c [usize],
    busy: &HashSet<&str>,
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

/// Keys the prefetch needs, gathered from the batch (borrowed from its commands).
#[derive(Default)]
struct Wanted<'a> {
    players: BTreeSet<&'a str>,
    txs: BTreeSet<(i32, &'a str)>,
    tombstones: BTreeSet<(i32, &'a str)>,
    rounds: BTreeSet<(i32, &'a str, &'a str)>,
    open_bet_rounds: BTreeSet<(i32, &'a str, &'a str)>,
    sessions: BTreeSet<&'a str>,
}

fn wanted(commands: &[Command]) -> Wanted<'_> {
    let mut w = Wanted::default();
    for c in commands {
        let p = c.provider.0;
        let player = c.player.as_str();
        w.players.insert(player);
        if let Some(tx) = c.tx() {
            w.txs.insert((p, tx.as_str()));
        }
        match &c.action {
            Action::Bet { money, session } => {
                w.tombstones.insert((p, money.tx.as_str()));
                w.rounds.insert((p, player, money.round.as_str()));
                if let Some(s) = session {
                    w.sessions.insert(s.as_str());
                }
            }
            Action::Win { money, bet_tx } => {
                let round = (p, player, money.round.as_str());
                match bet_tx {
                    Some(bet) => {
                        w.txs.insert((p, bet.as_str()));
                        w.tombstones.insert((p, bet.as_str()));
                    }
                    None => {
                        w.open_bet_rounds.insert(round);
                    }
                }
                w.rounds.insert(round);
            }
            Action::Rollback { reference, .. } => {
                w.txs.insert((p, reference.as_str()));
            }
            Action::EndRound { round, .. } => {
                w.rounds.insert((p, player, round.as_str()));
            }
            Action::Balance { .. } => {}
        }
    }
    w
}

fn split2<'a>(keys: &BTreeSet<(i32, &'a str)>) -> (Vec<i32>, Vec<&'a str>) {
    keys.iter().copied().unzip()
}

/// Round keys as query arrays, by player id; rounds of unknown players are left out.
fn round_keys<'a>(
    keys: &BTreeSet<(i32, &'a str, &'a str)>,
    player_ids: &PlayerIds,
) -> (Vec<i32>, Vec<i64>, Vec<&'a str>) {
    let mut providers = Vec::new();
    let mut players = Vec::new();
    let mut rounds = Vec::new();
    for &(provider, external, round) in keys {
        if let Some(id) = player_ids.get(external) {
            providers.push(provider);
            players.push(id);
            rounds.push(round);
        }
    }
    (providers, players, rounds)
}

/// Player ids by external id, cached per lane: an external id never changes hands, so only
/// players not seen before cost a lookup (one query before the batch's transaction).
#[derive(Debug, Default)]
pub struct PlayerIds {
    by_ref: HashMap<String, i64>,
}

/// Cached player ids per lane before the cache starts over.
const PLAYER_IDS_MAX: usize = 4_000_000;

impl PlayerIds {
    async fn resolve(
        &mut self,
        client: &Client,
        s: &Statements,
        commands: &[Command],
    ) -> Result<(), tokio_postgres::Error> {
        let missing: BTreeSet<&str> = commands
            .iter()
            .map(|c| c.player.as_str())
            .filter(|p| !self.by_ref.contains_key(*p))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        if self.by_ref.len() + missing.len() > PLAYER_IDS_MAX {
            self.by_ref.clear();
        }
        let missing: Vec<&str> = missing.into_iter().collect();
        for row in client.query(&s.resolve, &[&missing]).await? {
            self.by_ref.insert(row.get(1), row.get(0));
        }
        Ok(())
    }

    /// Loads every player id up to the cache's bound (at lane start, so the first batches do
    /// not each pay a lookup).
    pub async fn warm(&mut self, client: &Client) -> Result<(), tokio_postgres::Error> {
        let limit = PLAYER_IDS_MAX as i64;
        let rows = client
            .query(
                "SELECT id, external_id FROM players ORDER BY id LIMIT $1",
                &[&limit],
            )
            .await?;
        for row in rows {
            self.by_ref.insert(row.get(1), row.get(0));
        }
        Ok(())
    }

    fn get(&self, player: &str) -> Option<i64> {
        self.by_ref.get(player).copied()
    }
}

/// Reads the batch's world, its wallets locked. Returns it with the players left out as busy:
/// a wallet of theirs exists but another transaction holds it (only for units not `patient`:
/// their wallets are locked with `SKIP LOCKED`, then listed without a lock; patient units'
/// wallets are waited for, first, in (player, currency) order, so two batches that both wait
/// never deadlock and a batch that waits holds nothing another waiter needs).
async fn prefetch<'c>(
    tx: &Client,
    s: &Statements,
    player_ids: &PlayerIds,
    commands: &'c [Command],
    units: &[usize],
    patient: &[bool],
) -> Result<Fetched<'c>, Error> {
    let n = commands.len();
    let want = wanted(commands);
    // Players that exist, by id; unknown ones stay out of the world (UNKNOWN_PLAYER).
    let mut id_to_ref: HashMap<i64, PlayerRef> = HashMap::new();
    for external in &want.players {
        if let Some(id) = player_ids.get(external) {
            if let Some(r) = PlayerRef::new(external.to_string()) {
                id_to_ref.insert(id, r);
            }
        }
    }
    let mut players: Vec<i64> = id_to_ref.keys().copied().collect();
    players.sort_unstable();
    // Players with a patient unit are waited for; the others are skipped when held.
    let mut waited: BTreeSet<i64> = BTreeSet::new();
    let mut at = 0;
    for (&len, &patient) in units.iter().zip(patient) {
        if patient {
            waited.extend(
                commands[at..at + len]
                    .iter()
                    .filter_map(|c| player_ids.get(c.player.as_str())),
            );
        }
        at += len;
    }
    let skipped: Vec<i64> = players
        .iter()
        .copied()
        .filter(|p| !waited.contains(p))
        .collect();
    let waited: Vec<i64> = waited.into_iter().collect();
    let ids_needed = i32::try_from(apply::ids_needed(commands)).unwrap_or(i32::MAX);
    let (tx_p, tx_x) = split2(&want.txs);
    let (tomb_p, tomb_x) = split2(&want.tombstones);
    let (round_p, round_pl, round_r) = round_keys(&want.rounds, player_ids);
    let (open_p, open_pl, open_r) = round_keys(&want.open_bet_rounds, player_ids);
    let sessions: Vec<&str> = want.sessions.iter().copied().collect();

    let by_players: Params = vec![&players];
    let by_waited: Params = vec![&waited];
    let by_skipped: Params = vec![&skipped];
    let by_count: Params = vec![&ids_needed];
    let by_txs: Params = vec![&tx_p, &tx_x];
    let by_tombs: Params = vec![&tomb_p, &tomb_x];
    let by_rounds: Params = vec![&round_p, &round_pl, &round_r];
    let by_open: Params = vec![&open_p, &open_pl, &open_r];
    let by_sessions: Params = vec![&sessions];

    // One pipeline; the lock comes first, so every read after it sees what the lock's previous
    // holder committed. Queries with nothing to look up are not sent.
    let (
        waited_rows,
        skipped_rows,
        skipped_keys,
        player_rows,
        id_row,
        tx_rows,
        tomb_rows,
        round_rows,
        open_rows,
        session_rows,
        limit_rows,
    ) = tokio::try_join!(
        biased;
        query_unless(tx, waited.is_empty(), &s.wallets, &by_waited),
        query_unless(tx, skipped.is_empty(), &s.wallets_skip, &by_skipped),
        query_unless(tx, skipped.is_empty(), &s.wallet_keys, &by_skipped),
        query_unless(tx, players.is_empty(), &s.players, &by_players),
        tx.query_one(&s.ids, &by_count),
        query_unless(tx, tx_p.is_empty(), &s.txs, &by_txs),
        query_unless(tx, tomb_p.is_empty(), &s.tombstones, &by_tombs),
        query_unless(tx, round_p.is_empty(), &s.rounds, &by_rounds),
        query_unless(tx, open_p.is_empty(), &s.open_bets, &by_open),
        query_unless(tx, sessions.is_empty(), &s.sessions, &by_sessions),
        query_unless(tx, players.is_empty(), &s.limits, &by_players),
    )
    .map_err(Error::database(n))?;

    let mut world = World::default();
    for row in &player_rows {
        let id: i64 = row.get(0);
        let player_ref = id_to_ref.get(&id).ok_or_else(|| invariant("player id"))?;
        world.players.insert(
            player_ref.clone(),
            Player {
                id,
                blocked: row.get(1),
                wallets: Vec::new(),
                limits: Vec::new(),
            },
        );
    }
    // Locked in (player, currency) order; kept in creation order, since the first wallet is
    // the player's default.
    let locked: HashSet<(i64, &str)> = skipped_rows
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let busy: HashSet<&'c str> = skipped_keys
        .iter()
        .filter(|row| !locked.contains(&(row.get(0), row.get(1))))
        .filter_map(|row| id_to_ref.get(&row.get::<_, i64>(0)))
        .filter_map(|r| want.players.get(r.as_str()).copied())
        .collect();
    let mut created_at = HashMap::new();
    for row in waited_rows.iter().chain(&skipped_rows) {
        let player_id: i64 = row.get(0);
        let player = id_to_ref
            .get(&player_id)
            .and_then(|r| world.players.get_mut(r))
            .ok_or_else(|| invariant("wallet without player"))?;
        let code: &str = row.get(1);
        let Some(currency) = Currency::from_code(code) else {
            // A wallet in a currency this build does not know (added by hand, or by a newer
            // version): invisible here, so only calls in that currency are refused, never the
            // player's other calls (the dialect cannot decode that currency either).
            tracing::warn!(
                player_id,
                currency = code,
                "wallet in an unknown currency ignored"
            );
            continue;
        };
        created_at.insert(
            (player_id, currency),
            row.get::<_, std::time::SystemTime>(5),
        );
        player.wallets.push(Wallet {
            currency,
            balance_minor: row.get(2),
            bonus_minor: row.get(3),
            needs_reconciliation: row.get(4),
            changed: false,
        });
    }
    for player in world.players.values_mut() {
        if player.wallets.len() > 1 {
            let id = player.id;
            let created = |w: &Wallet| created_at[&(id, w.currency)];
            player.wallets.sort_by(|a, b| {
                (created(a), a.currency.code()).cmp(&(created(b), b.currency.code()))
            });
        }
    }
    for row in &limit_rows {
        let player_id: i64 = row.get(0);
        let Some(player) = id_to_ref
            .get(&player_id)
            .and_then(|r| world.players.get_mut(r))
        else {
            continue;
        };
        let kind = match row.get::<_, &str>(2) {
            "max_bet" => LimitKind::MaxBet,
            "wager" => LimitKind::Wager,
            _ => LimitKind::Loss,
        };
        // A limit in an unknown currency can only limit calls that cannot arrive.
        let Some(currency) = Currency::from_code(row.get(1)) else {
            continue;
        };
        player.limits.push(Limit {
            currency,
            kind,
            amount_minor: row.get(3),
            used_minor: row.get(4),
        });
    }
    world.ids = id_row.get::<_, Vec<i64>>(0);
    world.ids.reverse();
    let mut row_times = RowTimes::new();
    for row in tx_rows.iter().chain(&open_rows) {
        let (key, tx) = tx_from_row(row)?;
        row_times.insert(tx.id, row.get(17));
        world.txs.insert(key, tx);
    }
    for row in &tomb_rows {
        let p: i32 = row.get(0);
        let x: String = row.get(1);
        if let Some(x) = ProviderTxId::new(x) {
            world.tombstones.insert((crate::command::ProviderId(p), x));
        }
    }
    for row in &round_rows {
        let p: i32 = row.get(0);
        let player_id: i64 = row.get(1);
        let round_id =
            RoundId::new(row.get::<_, String>(2)).ok_or_else(|| invariant("round id"))?;
        world.rounds.insert(
            (crate::command::ProviderId(p), player_id, round_id),
            Round {
                closed: row.get(3),
                game: row.get::<_, Option<String>>(4).and_then(GameId::new),
                open_bets: Vec::new(),
                bets_rolled_back: false,
                bets_settled: false,
                changed: false,
                stored: true,
            },
        );
    }
    // The applied bets of the rounds of wins that name none, in id order, onto their rounds:
    // open ones to settle, and whether any was rolled back or settled (rows without a round
    // row cannot exist: the bet that opened the round created it).
    for row in &open_rows {
        let (key, tx) = tx_from_row(row)?;
        if let Some(round_id) = &tx.round {
            if let Some(round) = world
                .rounds
                .get_mut(&(key.0, tx.player_id, round_id.clone()))
            {
                match tx.state {
                    Some(TxState::Open) => round.open_bets.push(key.1.clone()),
                    Some(TxState::RolledBack) => round.bets_rolled_back = true,
                    Some(TxState::Settled) => round.bets_settled = true,
                    None => {}
                }
            }
        }
    }
    for row in &session_rows {
        let token: String = row.get(0);
        let Some(token) = SessionToken::new(token) else {
            continue;
        };
        world.sessions.insert(
            token,
            Session {
                player_id: row.get(1),
                currency: currency(row.get(2))?,
                game: row.get::<_, Option<String>>(3).and_then(GameId::new),
                live: row.get(4),
            },
        );
    }
    Ok(Fetched {
        world,
        busy,
        row_times,
    })
}

/// When each stored ledger row the batch read was created, by id: with the id, the address of
/// its partition for a state update.
type RowTimes = HashMap<i64, std::time::SystemTime>;

/// What the prefetch read: the batch's world, the players left out as busy, and the stored
/// rows' times.
struct Fetched<'c> {
    world: World,
    busy: HashSet<&'c str>,
    row_times: RowTimes,
}

/// Statement parameters, gathered before a pipeline so they outlive it.
type Params<'a> = Vec<&'a (dyn tokio_postgres::types::ToSql + Sync)>;

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

fn invariant(what: &str) -> Error {
    Error::Invariant(format!("prefetch: {what}"))
}

fn currency(code: &str) -> Result<Currency, Error> {
    Currency::from_code(code)
        .ok_or_else(|| Error::Invariant(format!("unknown currency {code} in the database")))
}

fn tx_from_row(row: &Row) -> Result<(apply::TxKey, Tx), Error> {
    let provider = crate::command::ProviderId(row.get(0));
    let provider_tx =
        ProviderTxId::new(row.get::<_, String>(1)).ok_or_else(|| invariant("tx id"))?;
    let outcome: &str = row.get(4);
    let fingerprint = row
        .get::<_, Option<&[u8]>>(16)
        .and_then(|b| <[u8; 16]>::try_from(b).ok().map(Fingerprint));
    let tx = Tx {
        id: row.get(2),
        kind: TxKind::parse(row.get(3)),
        outcome: Code::parse(outcome).ok_or_else(|| invariant("outcome code"))?,
        state: row.get::<_, Option<&str>>(5).and_then(TxState::parse),
        player_id: row.get(6),
        currency: currency(row.get(7))?,
        round: row.get::<_, Option<String>>(8).and_then(RoundId::new),
        game: row.get::<_, Option<String>>(9).and_then(GameId::new),
        amount_minor: row.get(10),
        real_delta: row.get(11),
        bonus_delta: row.get(12),
        balance_after: row.get(13),
        bonus_after: row.get(14),
        reference: row.get::<_, Option<String>>(15).and_then(ProviderTxId::new),
        fingerprint,
        is_new: false,
        state_changed: false,
    };
    Ok(((provider, provider_tx), tx))
}

async fn write(
    tx: &Client,
    s: &Statements,
    world: &World,
    row_times: &RowTimes,
    no_dedup: bool,
) -> Result<(), tokio_postgres::Error> {
    // New ledger rows, in creation order.
    let created: Vec<(&apply::TxKey, &Tx)> = world
        .created
        .iter()
        .map(|key| (key, &world.txs[key]))
        .collect();
    let ids: Vec<i64> = created.iter().map(|(_, t)| t.id).collect();
    let providers: Vec<i32> = created.iter().map(|(k, _)| k.0 .0).collect();
    // Borrowed ids: no allocation per ledger row (only the planted test bug rewrites them).
    #[allow(unused_mut)]
    let mut provider_txs: Vec<std::borrow::Cow<'_, str>> =
        created.iter().map(|(k, _)| k.1.as_str().into()).collect();
    if no_dedup {
        // The planted bug must not trip over the unique key it pretends is not there.
        for (tx, (_, t)) in provider_txs.iter_mut().zip(&created) {
            *tx = format!("{tx}~{}", t.id).into();
        }
    }
    let kinds: Vec<&str> = created.iter().map(|(_, t)| t.kind.as_str()).collect();
    let outcomes: Vec<&str> = created.iter().map(|(_, t)| t.outcome.as_str()).collect();
    let states: Vec<Option<&str>> = created
        .iter()
        .map(|(_, t)| t.state.map(TxState::as_str))
        .collect();
    let player_ids: Vec<i64> = created.iter().map(|(_, t)| t.player_id).collect();
    let currencies: Vec<&str> = created.iter().map(|(_, t)| t.currency.code()).collect();
    let rounds: Vec<Option<&str>> = created
        .iter()
        .map(|(_, t)| t.round.as_ref().map(RoundId::as_str))
        .collect();
    let games: Vec<Option<&str>> = created
        .iter()
        .map(|(_, t)| t.game.as_ref().map(GameId::as_str))
        .collect();
    let amounts: Vec<i64> = created.iter().map(|(_, t)| t.amount_minor).collect();
    let real: Vec<i64> = created.iter().map(|(_, t)| t.real_delta).collect();
    let bonus: Vec<i64> = created.iter().map(|(_, t)| t.bonus_delta).collect();
    let balance_before: Vec<i64> = created
        .iter()
        .map(|(_, t)| t.balance_after - t.real_delta)
        .collect();
    let balance_after: Vec<i64> = created.iter().map(|(_, t)| t.balance_after).collect();
    let bonus_before: Vec<i64> = created
        .iter()
        .map(|(_, t)| t.bonus_after - t.bonus_delta)
        .collect();
    let bonus_after: Vec<i64> = created.iter().map(|(_, t)| t.bonus_after).collect();
    let references: Vec<Option<&str>> = created
        .iter()
        .map(|(_, t)| t.reference.as_ref().map(ProviderTxId::as_str))
        .collect();
    let fingerprints: Vec<Option<&[u8]>> = created
        .iter()
        .map(|(_, t)| t.fingerprint.as_ref().map(|f| &f.0[..]))
        .collect();

    // Changed wallets.
    let mut w_player = Vec::new();
    let mut w_currency = Vec::new();
    let mut w_balance = Vec::new();
    let mut w_bonus = Vec::new();
    let mut w_flag = Vec::new();
    for player in world.players.values() {
        for wallet in player.wallets.iter().filter(|w| w.changed) {
            w_player.push(player.id);
            w_currency.push(wallet.currency.code());
            w_balance.push(wallet.balance_minor);
            w_bonus.push(wallet.bonus_minor);
            w_flag.push(wallet.needs_reconciliation);
        }
    }

    // State changes of rows that existed before the batch.
    let mut state_ids = Vec::new();
    let mut state_times = Vec::new();
    let mut state_values = Vec::new();
    for t in world.txs.values().filter(|t| t.state_changed) {
        // Every changed row has its time (checked before the writes).
        if let (Some(state), Some(at)) = (t.state, row_times.get(&t.id)) {
            state_ids.push(t.id);
            state_times.push(*at);
            state_values.push(state.as_str());
        }
    }

    // New rounds, and stored ones this batch closed (the only change a stored round sees).
    let mut r_provider = Vec::new();
    let mut r_player = Vec::new();
    let mut r_round = Vec::new();
    let mut r_game = Vec::new();
    let mut r_closed = Vec::new();
    let mut c_provider = Vec::new();
    let mut c_player = Vec::new();
    let mut c_round = Vec::new();
    for ((provider, player_id, round_id), round) in world.rounds.iter().filter(|(_, r)| r.changed) {
        if round.stored {
            c_provider.push(provider.0);
            c_player.push(*player_id);
            c_round.push(round_id.as_str());
        } else {
            r_provider.push(provider.0);
            r_player.push(*player_id);
            r_round.push(round_id.as_str());
            r_game.push(round.game.as_ref().map(GameId::as_str));
            r_closed.push(round.closed);
        }
    }

    let ledger_rows: Params = vec![
        &ids,
        &providers,
        &provider_txs,
        &kinds,
        &outcomes,
        &states,
        &player_ids,
        &currencies,
        &rounds,
        &games,
        &amounts,
        &real,
        &bonus,
        &balance_before,
        &balance_after,
        &bonus_before,
        &bonus_after,
        &references,
        &fingerprints,
    ];
    let wallet_rows: Params = vec![&w_player, &w_currency, &w_balance, &w_bonus, &w_flag];
    let state_rows: Params = vec![&state_ids, &state_times, &state_values];
    let new_rounds: Params = vec![&r_provider, &r_player, &r_round, &r_game, &r_closed];
    let closed_rounds: Params = vec![&c_provider, &c_player, &c_round];
    // One pipeline, sent in this order (`biased`); statements with no rows are not sent.
    tokio::try_join!(
        biased;
        execute_unless(tx, ids.is_empty(), &s.insert_txs, &ledger_rows),
        execute_unless(tx, w_player.is_empty(), &s.update_wallets, &wallet_rows),
        execute_unless(tx, state_ids.is_empty(), &s.update_states, &state_rows),
        execute_unless(tx, r_provider.is_empty(), &s.insert_rounds, &new_rounds),
        execute_unless(tx, c_provider.is_empty(), &s.close_rounds, &closed_rounds),
    )?;
    Ok(())
}
