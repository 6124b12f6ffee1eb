//! The batch's reads, in one pipeline behind BEGIN: the wallet lock first (in player-id order,
//! `SKIP LOCKED` for units that must not wait), then players, reserved ledger ids, stored
//! transactions and tombstones by key, rounds and their open bets, sessions and limits, turned
//! into the `World` that `apply` works on.

use std::collections::{BTreeSet, HashMap, HashSet};

use tokio_postgres::{Client, Row, Statement};

use super::{invariant, query_unless, Error, Params};
use crate::apply::{
    self, Limit, LimitKind, Player, Round, Session, Tx, TxKind, TxState, Wallet, World,
};
use crate::command::{
    Action, Code, Command, Fingerprint, GameId, PlayerRef, ProviderTxId, RoundId, SessionToken,
};
use crate::money::Currency;

/// The columns of a stored ledger row, as `tx_from_row` reads them, then the partition that
/// holds it and its address there (a state change is written to that partition by address).
macro_rules! tx_columns {
    () => {
        "t.provider_id, t.provider_tx_id, t.id, t.kind, t.outcome, t.state, t.player_id, \
         t.currency, t.round_id, t.game_id, t.amount, t.real_delta, t.bonus_delta, \
         t.balance_after, t.bonus_after, t.reference_tx_id, t.fingerprint, t.created_at, \
         t.tableoid::regclass::text, t.ctid::text"
    };
}

/// Where `tx_columns!` ends: the key's row address of [`LOOKUP_TXS`] follows, then the key.
const TX_COLUMNS: usize = 20;

// Lookups by the batch's keys are written as `LATERAL (... OFFSET 0)` so the plan always walks
// the keys and probes an index per key: generic plans are made from statistics that may say a
// table is empty (a fresh database, a new day's partition, a table analyzed right after it was
// created), and a plain join would then be inverted into a scan of the table with the keys as
// a filter, whose cost grows with every row written after the plan was made. A `LATERAL`
// subquery that names the key cannot be turned round: it is always the inner side, run once
// per key.
//
// The ledger is partitioned by day (`partitions`): a row is fetched by its key's
// `(id, created_at)` and a round's bets from the round's start on, so each lookup reads one
// partition (the others are pruned while the statement runs).

/// Player ids by external id (before the transaction, for players a lane has not seen).
pub const RESOLVE_PLAYERS: &str =
    "SELECT id, external_id FROM players WHERE external_id = ANY($1::text[])";

/// Ledger ids for the batch's new rows.
pub const RESERVE_IDS: &str = "SELECT coalesce(array_agg(nextval('transactions_id_seq')), '{}')
     FROM generate_series(1, $1::int)";

/// Players and whether they may bet now.
pub const PLAYERS: &str =
    "SELECT id, status <> 'active' OR coalesce(self_excluded_until > now(), false)
     FROM players WHERE id = ANY($1::bigint[])";

/// The lock: every writer of a wallet locks its rows in (player_id, currency) order, so
/// batches never deadlock each other or the REST module. A locked row stays where it is until
/// the transaction ends, so the batch's update finds it by its address (`ctid`).
pub const LOCK_WALLETS: &str =
    "SELECT player_id, currency, balance, bonus, needs_reconciliation, created_at,
            ctid::text
     FROM wallets WHERE player_id = ANY($1::bigint[])
     ORDER BY player_id, currency
     FOR UPDATE";

/// The lock without waiting: another gateway on the same database may hold some of the batch's
/// wallets; those are skipped (their players' commands wait for a later batch, see
/// `prefetch`), so a batch never queues behind another's commit and fsync.
pub const LOCK_WALLETS_SKIP: &str =
    "SELECT player_id, currency, balance, bonus, needs_reconciliation, created_at,
            ctid::text
     FROM wallets WHERE player_id = ANY($1::bigint[])
     ORDER BY player_id, currency
     FOR UPDATE SKIP LOCKED";

/// The wallets that exist, locked or not (a skipped one is busy, not missing).
pub const WALLET_KEYS: &str =
    "SELECT player_id, currency FROM wallets WHERE player_id = ANY($1::bigint[])";

/// Stored ledger rows by provider transaction id, through their keys: the row itself when it
/// is recent, else only its address (`id, created_at`; the row's own columns are NULL),
/// fetched by [`FETCH_OLD_TXS`]; then the key itself (a key whose row that finds neither was
/// pruned with its day).
pub const LOOKUP_TXS: &str = concat!(
    "SELECT ",
    tx_columns!(),
    ", tk.id, tk.created_at, k.p, k.x FROM unnest($1::int[], $2::text[]) AS k(p, x)
     CROSS JOIN LATERAL (SELECT * FROM transaction_keys tk
         WHERE tk.provider_id = k.p AND tk.provider_tx_id = k.x OFFSET 0) tk
     LEFT JOIN LATERAL (SELECT t.*, t.tableoid, t.ctid FROM transactions t
         WHERE t.id = tk.id AND t.created_at = tk.created_at AND t.created_at >= ",
    recent_start!(),
    " OFFSET 0) t ON true"
);

/// Older ledger rows by address (from [`LOOKUP_TXS`]); every partition may be read.
pub const FETCH_OLD_TXS: &str = concat!(
    "SELECT ",
    tx_columns!(),
    " FROM unnest($1::bigint[], $2::timestamptz[]) AS a(id, created_at)
     CROSS JOIN LATERAL (SELECT t.*, t.tableoid, t.ctid FROM transactions t
         WHERE t.id = a.id AND t.created_at = a.created_at OFFSET 0) t"
);

/// Rollbacks that named these ids before they came (only rollbacks' keys carry a reference).
pub const TOMBSTONES: &str = "SELECT DISTINCT t.provider_id, t.reference_tx_id
     FROM unnest($1::int[], $2::text[]) AS k(p, x)
     CROSS JOIN LATERAL (SELECT * FROM transaction_keys t
         WHERE t.provider_id = k.p AND t.reference_tx_id = k.x OFFSET 0) t";

/// Rounds by (provider, player, round id), whether they began before the recent partitions
/// (their bets then need [`OPEN_BETS_OLD`] too), and their address for closing them (only the
/// lane holding the player's wallet writes the player's rounds).
pub const ROUNDS: &str = concat!(
    "SELECT r.provider_id, r.player_id, r.round_id, r.closed, r.game_id, r.created_at < ",
    recent_start!(),
    ", r.ctid::text FROM unnest($1::int[], $2::bigint[], $3::text[]) AS k(p, pl, r)
     CROSS JOIN LATERAL (SELECT r.*, r.ctid FROM rounds r
         WHERE r.provider_id = k.p AND r.player_id = k.pl AND r.round_id = k.r
         OFFSET 0) r"
);

/// The applied bets of rounds whose win names no bet, in the partitions on one side (`>=` or
/// `<`) of the recent ones' start. A round's rows are never older than its `rounds` row: the
/// bet that opened the round wrote it in the same transaction (the same `now()`).
macro_rules! open_bets {
    ($side:literal) => {
        concat!(
            "SELECT ",
            tx_columns!(),
            " FROM unnest($1::int[], $2::bigint[], $3::text[]) AS k(p, pl, r)
             CROSS JOIN LATERAL (SELECT created_at FROM rounds r
                 WHERE r.provider_id = k.p AND r.player_id = k.pl AND r.round_id = k.r
                 OFFSET 0) r
             CROSS JOIN LATERAL (SELECT t.*, t.tableoid, t.ctid FROM transactions t
                 WHERE t.provider_id = k.p AND t.player_id = k.pl AND t.round_id = k.r
                   AND t.created_at >= r.created_at AND t.created_at ",
            $side,
            " ",
            recent_start!(),
            " AND t.kind = 'bet' AND t.state IS NOT NULL OFFSET 0) t"
        )
    };
}

/// Open bets in the recent partitions.
pub const OPEN_BETS: &str = open_bets!(">=");

/// Open bets in the older partitions, for rounds that began before the recent ones.
pub const OPEN_BETS_OLD: &str = open_bets!("<");

/// Launch sessions by token, and whether they are live.
pub const SESSIONS: &str = "SELECT token, player_id, currency, game_id, expires_at > now()
     FROM game_sessions WHERE token = ANY($1::text[])";

/// A limit's amount in force (a raised one only once its cooling-off is over, `rg::in_force`,
/// the same rule in Rust) and its use in the current period. The second bound on
/// `created_at` is the earliest any period can start (this month or this week): implied by
/// the first, but free of the row's period, so the ledger's older partitions are pruned when
/// the statement starts instead of opened for every batch.
pub const LIMITS: &str = "SELECT l.player_id, l.currency, l.kind, l.amount,
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
                  AND t.created_at >= least(date_trunc('month', now() AT TIME ZONE 'UTC'),
                                            date_trunc('week', now() AT TIME ZONE 'UTC'))
                                      AT TIME ZONE 'UTC'
            ), 0) END::bigint
     FROM (SELECT player_id, currency, kind, period,
                  CASE WHEN next_from <= now() THEN next_amount ELSE amount END AS amount
           FROM rg_limits WHERE player_id = ANY($1::bigint[])) l
     WHERE l.amount IS NOT NULL";

/// The wallet path's reads, prepared once per connection.
pub struct Reads {
    resolve: Statement,
    ids: Statement,
    players: Statement,
    wallets: Statement,
    wallets_skip: Statement,
    wallet_keys: Statement,
    txs: Statement,
    old_txs: Statement,
    tombstones: Statement,
    rounds: Statement,
    open_bets: Statement,
    old_open_bets: Statement,
    sessions: Statement,
    limits: Statement,
}

impl Reads {
    pub(super) async fn prepare(client: &Client) -> Result<Reads, tokio_postgres::Error> {
        let (resolve, ids, players, wallets, wallets_skip, wallet_keys) = tokio::try_join!(
            client.prepare(RESOLVE_PLAYERS),
            client.prepare(RESERVE_IDS),
            client.prepare(PLAYERS),
            client.prepare(LOCK_WALLETS),
            client.prepare(LOCK_WALLETS_SKIP),
            client.prepare(WALLET_KEYS),
        )?;
        let (txs, old_txs, tombstones, rounds, open_bets, old_open_bets, sessions, limits) = tokio::try_join!(
            client.prepare(LOOKUP_TXS),
            client.prepare(FETCH_OLD_TXS),
            client.prepare(TOMBSTONES),
            client.prepare(ROUNDS),
            client.prepare(OPEN_BETS),
            client.prepare(OPEN_BETS_OLD),
            client.prepare(SESSIONS),
            client.prepare(LIMITS),
        )?;
        Ok(Reads {
            resolve,
            ids,
            players,
            wallets,
            wallets_skip,
            wallet_keys,
            txs,
            old_txs,
            tombstones,
            rounds,
            open_bets,
            old_open_bets,
            sessions,
            limits,
        })
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
                // A rollback may have named the win itself before it came.
                w.tombstones.insert((p, money.tx.as_str()));
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
    pub(super) async fn resolve(
        &mut self,
        client: &Client,
        s: &Reads,
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
pub(super) async fn prefetch<'c>(
    tx: &Client,
    s: &Reads,
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
            if let Some(r) = PlayerRef::stored(external.to_string()) {
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
        recent_open_rows,
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

    // Rows and rounds older than the recent partitions (rare: a retry or a rollback days
    // later, a round left open since yesterday): one more round trip, only when there are any.
    let (old_ids, old_times): (Vec<i64>, Vec<std::time::SystemTime>) = tx_rows
        .iter()
        .filter(|r| r.get::<_, Option<i64>>(2).is_none())
        .map(|r| {
            (
                r.get::<_, i64>(TX_COLUMNS),
                r.get::<_, std::time::SystemTime>(TX_COLUMNS + 1),
            )
        })
        .unzip();
    // Old rounds whose open bets the batch needs (a win that names no bet).
    let open_keys: HashSet<(i32, i64, &str)> = open_p
        .iter()
        .zip(&open_pl)
        .zip(&open_r)
        .map(|((&p, &pl), &r)| (p, pl, r))
        .collect();
    let mut old_rounds: (Vec<i32>, Vec<i64>, Vec<&str>) = Default::default();
    for row in round_rows.iter().filter(|r| r.get::<_, bool>(5)) {
        let key: (i32, i64, &str) = (row.get(0), row.get(1), row.get(2));
        if let Some(&(p, pl, r)) = open_keys.get(&key) {
            old_rounds.0.push(p);
            old_rounds.1.push(pl);
            old_rounds.2.push(r);
        }
    }
    let by_address: Params = vec![&old_ids, &old_times];
    let by_old_rounds: Params = vec![&old_rounds.0, &old_rounds.1, &old_rounds.2];
    let (old_tx_rows, old_open_rows) = tokio::try_join!(
        biased;
        query_unless(tx, old_ids.is_empty(), &s.old_txs, &by_address),
        query_unless(tx, old_rounds.0.is_empty(), &s.old_open_bets, &by_old_rounds),
    )
    .map_err(Error::database(n))?;

    let mut world = World::default();
    // Keys whose ledger row is in no partition any more: pruned with their day.
    let found_old: HashSet<i64> = old_tx_rows.iter().map(|r| r.get::<_, i64>(2)).collect();
    for row in tx_rows
        .iter()
        .filter(|r| r.get::<_, Option<i64>>(2).is_none())
    {
        if !found_old.contains(&row.get::<_, i64>(TX_COLUMNS)) {
            let p: i32 = row.get(TX_COLUMNS + 2);
            if let Some(x) = ProviderTxId::stored(row.get::<_, String>(TX_COLUMNS + 3)) {
                world.pruned.insert((crate::command::ProviderId(p), x));
            }
        }
    }
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
    let mut addresses = Addresses::default();
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
        addresses
            .wallets
            .insert((player_id, currency), row.get::<_, String>(6));
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
    let recent = tx_rows
        .iter()
        .filter(|r| r.get::<_, Option<i64>>(2).is_some())
        .chain(&recent_open_rows);
    for row in recent.chain(&old_tx_rows).chain(&old_open_rows) {
        let (key, tx) = tx_from_row(row)?;
        addresses.txs.insert(
            tx.id,
            TxAddress {
                partition: row.get(18),
                ctid: row.get(19),
            },
        );
        world.txs.insert(key, tx);
    }
    for row in &tomb_rows {
        let p: i32 = row.get(0);
        let x: String = row.get(1);
        if let Some(x) = ProviderTxId::stored(x) {
            world.tombstones.insert((crate::command::ProviderId(p), x));
        }
    }
    for row in &round_rows {
        let p: i32 = row.get(0);
        let player_id: i64 = row.get(1);
        let round_id =
            RoundId::stored(row.get::<_, String>(2)).ok_or_else(|| invariant("round id"))?;
        let key = (crate::command::ProviderId(p), player_id, round_id);
        addresses.rounds.insert(key.clone(), row.get(6));
        world.rounds.insert(
            key,
            Round {
                closed: row.get(3),
                game: row.get::<_, Option<String>>(4).and_then(GameId::stored),
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
    let mut open_rows: Vec<&Row> = old_open_rows.iter().chain(&recent_open_rows).collect();
    open_rows.sort_by_key(|r| r.get::<_, i64>(2));
    for row in open_rows {
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
        let Some(token) = SessionToken::stored(token) else {
            continue;
        };
        world.sessions.insert(
            token,
            Session {
                player_id: row.get(1),
                currency: currency(row.get(2))?,
                game: row.get::<_, Option<String>>(3).and_then(GameId::stored),
                live: row.get(4),
            },
        );
    }
    Ok(Fetched {
        world,
        busy,
        addresses,
    })
}

/// Where the stored rows the batch read lie (`ctid`, as text), so that its writes reach each
/// by address: a TID scan, the one plan that no statistics can turn into a scan of the table.
/// The addresses stay valid until COMMIT: the wallets are locked, and a player's rounds and
/// ledger states are written only by the lane holding that player's wallet.
#[derive(Debug, Default)]
pub(super) struct Addresses {
    /// Ledger rows by id.
    pub(super) txs: HashMap<i64, TxAddress>,
    /// Locked wallets by (player id, currency).
    pub(super) wallets: HashMap<(i64, Currency), String>,
    pub(super) rounds: HashMap<apply::RoundKey, String>,
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
    pub(super) busy: HashSet<&'c str>,
    pub(super) addresses: Addresses,
}

fn currency(code: &str) -> Result<Currency, Error> {
    Currency::from_code(code)
        .ok_or_else(|| Error::Invariant(format!("unknown currency {code} in the database")))
}

fn tx_from_row(row: &Row) -> Result<(apply::TxKey, Tx), Error> {
    let provider = crate::command::ProviderId(row.get(0));
    let provider_tx =
        ProviderTxId::stored(row.get::<_, String>(1)).ok_or_else(|| invariant("tx id"))?;
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
        round: row.get::<_, Option<String>>(8).and_then(RoundId::stored),
        game: row.get::<_, Option<String>>(9).and_then(GameId::stored),
        amount_minor: row.get(10),
        real_delta: row.get(11),
        bonus_delta: row.get(12),
        balance_after: row.get(13),
        bonus_after: row.get(14),
        reference: row
            .get::<_, Option<String>>(15)
            .and_then(ProviderTxId::stored),
        fingerprint,
        is_new: false,
        state_changed: false,
    };
    Ok(((provider, provider_tx), tx))
}
