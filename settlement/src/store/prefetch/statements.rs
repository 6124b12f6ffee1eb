//! Every read of the wallet path as a `pub const` statement, prepared once per connection
//! ([`Reads`]). `settlement/tests/it/plans.rs` plans each one as a generic plan.

use tokio_postgres::{Client, Statement};

/// The columns of a stored ledger row ([`tx`]).
macro_rules! tx_columns {
    () => {
        "t.provider_id, t.provider_tx_id, t.id, t.kind, t.outcome, t.state, t.player_id, \
         t.currency, t.round_id, t.game_id, t.amount, t.real_delta, t.bonus_delta, \
         t.balance_after, t.bonus_after, t.reference_tx_id, t.fingerprint, t.created_at, \
         t.tableoid::regclass::text AS partition, t.ctid::text AS ctid"
    };
}

/// Named positions of a statement's columns: `tx::outcome` is where column `outcome` stands,
/// so rows are read by name at the cost of an index. `NAMES` lists them in order, and
/// `settlement/tests/it/plans.rs` holds each list to its prepared statement's columns
/// ([`COLUMNS`]), so a column cannot slip.
macro_rules! columns {
    ($(#[$m:meta])* $name:ident $(after $start:path)? { $($col:ident),* $(,)? }) => {
        $(#[$m])*
        #[allow(non_upper_case_globals, dead_code)] // every column is named, read or not
        pub mod $name {
            columns!(@at (0usize $(+ $start)?); $($col),*);
            /// Every column's name, in order.
            pub const NAMES: &[&str] = &[$(stringify!($col)),*];
            /// Where the next statement's columns would start.
            pub const END: usize = (0usize $(+ $start)?) + NAMES.len();
        }
    };
    (@at $i:expr; $col:ident $(, $rest:ident)*) => {
        pub const $col: usize = $i;
        columns!(@at ($i + 1); $($rest),*);
    };
    (@at $i:expr;) => {};
}

columns!(
    /// [`RESOLVE_PLAYERS`].
    resolved { id, external_id }
);
columns!(
    /// [`PLAYERS`].
    player { id, blocked }
);
columns!(
    /// [`LOCK_WALLETS`] and [`LOCK_WALLETS_SKIP`]; [`WALLET_KEYS`] has the first two.
    wallet { player_id, currency, balance, bonus, needs_reconciliation, created_at, ctid }
);
columns!(
    /// A stored ledger row (`tx_columns!`), then the partition that holds it and its address.
    tx {
        provider_id, provider_tx_id, id, kind, outcome, state, player_id, currency, round_id,
        game_id, amount, real_delta, bonus_delta, balance_after, bonus_after, reference_tx_id,
        fingerprint, created_at, partition, ctid,
    }
);
columns!(
    /// After [`tx`] in [`LOOKUP_TXS`]: the key's row address, then the key.
    key after super::tx::END { key_id, key_created_at, key_provider, key_tx }
);
columns!(
    /// [`TOMBSTONES`].
    tombstone { provider_id, reference_tx_id }
);
columns!(
    /// [`ROUNDS`].
    round { provider_id, player_id, round_id, closed, game_id, began_before_recent, ctid }
);
columns!(
    /// [`SESSIONS`].
    session { token, player_id, currency, game_id, live }
);
columns!(
    /// [`LIMITS`].
    limit { player_id, currency, kind, amount, used }
);

/// Each read's columns as its decoder reads them, by statement name (see [`super::STATEMENTS`]).
pub const COLUMNS: &[(&str, &[&[&str]])] = &[
    ("RESOLVE_PLAYERS", &[resolved::NAMES]),
    ("PLAYERS", &[player::NAMES]),
    ("LOCK_WALLETS", &[wallet::NAMES]),
    ("LOCK_WALLETS_SKIP", &[wallet::NAMES]),
    ("WALLET_KEYS", &[&[wallet::NAMES[0], wallet::NAMES[1]]]),
    ("LOOKUP_TXS", &[tx::NAMES, key::NAMES]),
    ("FETCH_OLD_TXS", &[tx::NAMES]),
    ("TOMBSTONES", &[tombstone::NAMES]),
    ("ROUNDS", &[round::NAMES]),
    ("OPEN_BETS", &[tx::NAMES]),
    ("OPEN_BETS_OLD", &[tx::NAMES]),
    ("SESSIONS", &[session::NAMES]),
    ("LIMITS", &[limit::NAMES]),
];

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
    "SELECT id, status <> 'active' OR coalesce(self_excluded_until > now(), false) AS blocked
     FROM players WHERE id = ANY($1::bigint[])";

/// The lock: every writer of a wallet locks its rows in (player_id, currency) order, so
/// batches never deadlock each other or the REST module. A locked row stays where it is until
/// the transaction ends, so the batch's update finds it by its address (`ctid`).
pub const LOCK_WALLETS: &str =
    "SELECT player_id, currency, balance, bonus, needs_reconciliation, created_at,
            ctid::text AS ctid
     FROM wallets WHERE player_id = ANY($1::bigint[])
     ORDER BY player_id, currency
     FOR UPDATE";

/// The lock without waiting: another gateway on the same database may hold some of the batch's
/// wallets; those are skipped (their players' commands wait for a later batch, see
/// `prefetch`), so a batch never queues behind another's commit and fsync.
pub const LOCK_WALLETS_SKIP: &str =
    "SELECT player_id, currency, balance, bonus, needs_reconciliation, created_at,
            ctid::text AS ctid
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
    ",
     tk.id AS key_id, tk.created_at AS key_created_at, k.p AS key_provider, k.x AS key_tx
     FROM unnest($1::int[], $2::text[]) AS k(p, x)
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
    " AS began_before_recent, r.ctid::text AS ctid FROM unnest($1::int[], $2::bigint[], $3::text[]) AS k(p, pl, r)
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
pub const SESSIONS: &str = "SELECT token, player_id, currency, game_id, expires_at > now() AS live
     FROM game_sessions WHERE token = ANY($1::text[])";

/// A limit's amount in force (a raised one only once its cooling-off is over, `rg::in_force`,
/// the same rule in Rust) and its use in the current period: a sum of the player's daily
/// totals (`rg_usage`, at most 31 rows by its key), kept by the lanes and counted again from the
/// ledger whenever a limit is written (migration 0018), never a sum over the period's ledger.
pub const LIMITS: &str = "SELECT l.player_id, l.currency, l.kind, l.amount,
            CASE WHEN l.kind = 'max_bet' THEN 0 ELSE coalesce((
                SELECT sum(CASE WHEN l.kind = 'wager' THEN u.wagered ELSE u.lost END)
                FROM rg_usage u
                WHERE u.player_id = l.player_id AND u.currency = l.currency
                  AND u.day >= (date_trunc(l.period, now() AT TIME ZONE 'UTC'))::date
            ), 0) END::bigint AS used
     FROM (SELECT player_id, currency, kind, period,
                  CASE WHEN next_from <= now() THEN next_amount ELSE amount END AS amount
           FROM rg_limits WHERE player_id = ANY($1::bigint[])) l
     WHERE l.amount IS NOT NULL";

/// The wallet path's reads, prepared once per connection.
pub struct Reads {
    pub(super) resolve: Statement,
    pub(super) ids: Statement,
    pub(super) players: Statement,
    pub(super) wallets: Statement,
    pub(super) wallets_skip: Statement,
    pub(super) wallet_keys: Statement,
    pub(super) txs: Statement,
    pub(super) old_txs: Statement,
    pub(super) tombstones: Statement,
    pub(super) rounds: Statement,
    pub(super) open_bets: Statement,
    pub(super) old_open_bets: Statement,
    pub(super) sessions: Statement,
    pub(super) limits: Statement,
}

impl Reads {
    pub(in crate::store) async fn prepare(client: &Client) -> Result<Reads, tokio_postgres::Error> {
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
