//! The batch's writes, in one pipeline before COMMIT: the new ledger rows with their keys, the
//! changed wallets, the state of stored rows the batch changed, new rounds and closed ones, and
//! the day's totals of players with a wager or loss limit.
//! Stored rows are changed by the address the batch's prefetch read them at (`ctid`), never by
//! a join of the batch's keys with the table, which a generic plan made on empty statistics
//! would invert into a scan.
//! Each statement takes one array per column (`unnest`); its parameters are one struct of
//! arrays right below its text, fields in the statement's order, and a test checks the names
//! against the statement's column list, so a column cannot slip.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use tokio_postgres::{Client, Statement};

use super::prefetch::Addresses;
use super::{execute_unless, Params};
use crate::apply::{Tx, TxKey, TxState, World};
use crate::command::{GameId, ProviderTxId, RoundId};

/// New ledger rows and their keys in one statement; both take the transaction's `now()` as
/// `created_at` (the ledger's default), which the key points at. A provider transaction id
/// already keyed fails the batch (unique violation), which is retried and then finds the row.
pub const INSERT_LEDGER: &str = "WITH rows AS (
         SELECT * FROM unnest($1::bigint[], $2::int[], $3::text[], $4::text[], $5::text[],
             $6::text[], $7::bigint[], $8::text[], $9::text[], $10::text[], $11::bigint[],
             $12::bigint[], $13::bigint[], $14::bigint[], $15::bigint[], $16::bigint[],
             $17::bigint[], $18::text[], $19::bytea[])
             AS u(id, provider_id, provider_tx_id, kind, outcome, state, player_id, currency,
                  round_id, game_id, amount, real_delta, bonus_delta, balance_before,
                  balance_after, bonus_before, bonus_after, reference_tx_id, fingerprint)
     ), keys AS (
         INSERT INTO transaction_keys (provider_id, provider_tx_id, id, created_at, player_id,
                                       reference_tx_id)
         SELECT provider_id, provider_tx_id, id, now(), player_id,
                CASE WHEN kind = 'rollback' THEN reference_tx_id END
         FROM rows WHERE provider_id IS NOT NULL
     )
     INSERT INTO transactions (id, provider_id, provider_tx_id, kind, outcome, state, player_id,
         currency, round_id, game_id, amount, real_delta, bonus_delta, balance_before,
         balance_after, bonus_before, bonus_after, reference_tx_id, fingerprint)
     SELECT * FROM rows";

/// The parameters of [`INSERT_LEDGER`].
#[derive(Default)]
struct LedgerRows<'a> {
    id: Vec<i64>,
    provider_id: Vec<i32>,
    provider_tx_id: Vec<Cow<'a, str>>,
    kind: Vec<&'a str>,
    outcome: Vec<&'a str>,
    state: Vec<Option<&'a str>>,
    player_id: Vec<i64>,
    currency: Vec<&'a str>,
    round_id: Vec<Option<&'a str>>,
    game_id: Vec<Option<&'a str>>,
    amount: Vec<i64>,
    real_delta: Vec<i64>,
    bonus_delta: Vec<i64>,
    balance_before: Vec<i64>,
    balance_after: Vec<i64>,
    bonus_before: Vec<i64>,
    bonus_after: Vec<i64>,
    reference_tx_id: Vec<Option<&'a str>>,
    fingerprint: Vec<Option<&'a [u8]>>,
}

impl<'a> LedgerRows<'a> {
    #[cfg(test)]
    const COLUMNS: &'static [&'static str] = &[
        "id",
        "provider_id",
        "provider_tx_id",
        "kind",
        "outcome",
        "state",
        "player_id",
        "currency",
        "round_id",
        "game_id",
        "amount",
        "real_delta",
        "bonus_delta",
        "balance_before",
        "balance_after",
        "bonus_before",
        "bonus_after",
        "reference_tx_id",
        "fingerprint",
    ];

    fn push(&mut self, (provider, provider_tx): &'a TxKey, t: &'a Tx) {
        self.id.push(t.id);
        self.provider_id.push(provider.0);
        // Borrowed: no allocation per ledger row (only the planted test bug rewrites it).
        self.provider_tx_id.push(provider_tx.as_str().into());
        self.kind.push(t.kind.as_str());
        self.outcome.push(t.outcome.as_str());
        self.state.push(t.state.map(TxState::as_str));
        self.player_id.push(t.player_id);
        self.currency.push(t.currency.code());
        self.round_id.push(t.round.as_ref().map(RoundId::as_str));
        self.game_id.push(t.game.as_ref().map(GameId::as_str));
        self.amount.push(t.amount_minor);
        self.real_delta.push(t.real_delta);
        self.bonus_delta.push(t.bonus_delta);
        self.balance_before.push(t.balance_after - t.real_delta);
        self.balance_after.push(t.balance_after);
        self.bonus_before.push(t.bonus_after - t.bonus_delta);
        self.bonus_after.push(t.bonus_after);
        self.reference_tx_id
            .push(t.reference.as_ref().map(ProviderTxId::as_str));
        self.fingerprint
            .push(t.fingerprint.as_ref().map(|f| &f.0[..]));
    }

    fn params(&self) -> Params<'_> {
        vec![
            &self.id,
            &self.provider_id,
            &self.provider_tx_id,
            &self.kind,
            &self.outcome,
            &self.state,
            &self.player_id,
            &self.currency,
            &self.round_id,
            &self.game_id,
            &self.amount,
            &self.real_delta,
            &self.bonus_delta,
            &self.balance_before,
            &self.balance_after,
            &self.bonus_before,
            &self.bonus_after,
            &self.reference_tx_id,
            &self.fingerprint,
        ]
    }
}

/// The wallets the batch changed, to their new totals, each by the address its lock read it
/// at: a TID scan per wallet is the only plan (no index path exists for `ctid`, and the lanes
/// price scans out), so no statistics can turn the update into a scan of `wallets`.
pub const UPDATE_WALLETS: &str = "UPDATE wallets w SET balance = u.balance, bonus = u.bonus,
         needs_reconciliation = u.needs_reconciliation
     FROM unnest($1::text[]::tid[], $2::bigint[], $3::bigint[], $4::bool[])
          AS u(ctid, balance, bonus, needs_reconciliation)
     WHERE w.ctid = u.ctid";

/// The parameters of [`UPDATE_WALLETS`].
#[derive(Default)]
struct WalletRows<'a> {
    ctid: Vec<&'a str>,
    balance: Vec<i64>,
    bonus: Vec<i64>,
    needs_reconciliation: Vec<bool>,
}

impl WalletRows<'_> {
    #[cfg(test)]
    const COLUMNS: &'static [&'static str] = &["ctid", "balance", "bonus", "needs_reconciliation"];

    fn params(&self) -> Params<'_> {
        vec![
            &self.ctid,
            &self.balance,
            &self.bonus,
            &self.needs_reconciliation,
        ]
    }
}

/// A new state for stored ledger rows of one partition, by the addresses the prefetch read
/// them at. The partitioned ledger cannot be updated by address through its parent (an
/// address names a row of one partition), and an update through the parent by key would join
/// the keys with every recent partition, which empty statistics invert into scans; so the
/// statement names its partition and is prepared once per partition a lane meets (`Writes`).
/// `partition` comes from the catalog (`tableoid::regclass`), quoted as an identifier.
pub fn update_states(partition: &str) -> String {
    format!("UPDATE ONLY {partition} SET state = $1::text WHERE ctid = ANY($2::text[]::tid[])")
}

/// Rounds the prefetch did not find. No ON CONFLICT: the lane owns the player, so a conflict
/// means another gateway opened the round meanwhile, and the batch is retried (its prefetch
/// then finds the round).
pub const INSERT_ROUNDS: &str =
    "INSERT INTO rounds (provider_id, player_id, round_id, game_id, closed, closed_at)
     SELECT provider_id, player_id, round_id, game_id, closed, CASE WHEN closed THEN now() END
     FROM unnest($1::int[], $2::bigint[], $3::text[], $4::text[], $5::bool[])
          AS u(provider_id, player_id, round_id, game_id, closed)";

/// The parameters of [`INSERT_ROUNDS`].
#[derive(Default)]
struct NewRounds<'a> {
    provider_id: Vec<i32>,
    player_id: Vec<i64>,
    round_id: Vec<&'a str>,
    game_id: Vec<Option<&'a str>>,
    closed: Vec<bool>,
}

impl NewRounds<'_> {
    #[cfg(test)]
    const COLUMNS: &'static [&'static str] =
        &["provider_id", "player_id", "round_id", "game_id", "closed"];

    fn params(&self) -> Params<'_> {
        vec![
            &self.provider_id,
            &self.player_id,
            &self.round_id,
            &self.game_id,
            &self.closed,
        ]
    }
}

/// Stored rounds this batch closed (the only change a stored round sees), by the addresses
/// the prefetch read them at: a TID scan, no join.
pub const CLOSE_ROUNDS: &str =
    "UPDATE rounds SET closed = true, closed_at = coalesce(closed_at, now())
     WHERE ctid = ANY($1::text[]::tid[])";

/// This batch's play of the players with a wager or loss limit, added to their totals of the
/// day (the transaction's, as the ledger rows' `created_at`): an insert by key, or an update of
/// the row that key finds. One row per (player, currency) in a batch.
pub const ADD_USAGE: &str = "INSERT INTO rg_usage (player_id, currency, day, wagered, lost)
     SELECT player_id, currency, (now() AT TIME ZONE 'UTC')::date, wagered, lost
     FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bigint[])
          AS u(player_id, currency, wagered, lost)
     ON CONFLICT (player_id, currency, day) DO UPDATE
     SET wagered = rg_usage.wagered + excluded.wagered, lost = rg_usage.lost + excluded.lost";

/// The parameters of [`ADD_USAGE`].
#[derive(Default)]
struct UsageRows<'a> {
    player_id: Vec<i64>,
    currency: Vec<&'a str>,
    wagered: Vec<i64>,
    lost: Vec<i64>,
}

impl UsageRows<'_> {
    #[cfg(test)]
    const COLUMNS: &'static [&'static str] = &["player_id", "currency", "wagered", "lost"];

    fn params(&self) -> Params<'_> {
        vec![&self.player_id, &self.currency, &self.wagered, &self.lost]
    }
}

/// The wallet path's writes, prepared once per connection.
pub struct Writes {
    insert_ledger: Statement,
    update_wallets: Statement,
    insert_rounds: Statement,
    close_rounds: Statement,
    add_usage: Statement,
    /// [`update_states`] by partition, prepared when the lane first changes a row there.
    update_states: Mutex<HashMap<String, Statement>>,
}

/// Partitions whose state statement a connection keeps before it starts over (a year of days
/// that saw late rollbacks is far less; dropped partitions' statements go with the rest).
const PARTITION_STATEMENTS_MAX: usize = 512;

impl Writes {
    pub(super) async fn prepare(client: &Client) -> Result<Writes, tokio_postgres::Error> {
        let (insert_ledger, update_wallets, insert_rounds, close_rounds, add_usage) = tokio::try_join!(
            client.prepare(INSERT_LEDGER),
            client.prepare(UPDATE_WALLETS),
            client.prepare(INSERT_ROUNDS),
            client.prepare(CLOSE_ROUNDS),
            client.prepare(ADD_USAGE),
        )?;
        Ok(Writes {
            insert_ledger,
            update_wallets,
            insert_rounds,
            close_rounds,
            add_usage,
            update_states: Mutex::new(HashMap::new()),
        })
    }

    fn states_in(&self) -> std::sync::MutexGuard<'_, HashMap<String, Statement>> {
        self.update_states
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Prepares the state statement of every partition in `partitions` not prepared yet (one
    /// more round trip, the first time a lane changes a row in a partition).
    pub(super) async fn prepare_partitions<'p>(
        &self,
        client: &Client,
        partitions: impl Iterator<Item = &'p str>,
    ) -> Result<(), tokio_postgres::Error> {
        let missing: BTreeSet<&str> = {
            let known = self.states_in();
            partitions.filter(|p| !known.contains_key(*p)).collect()
        };
        for partition in missing {
            let statement = client.prepare(&update_states(partition)).await?;
            let mut known = self.states_in();
            if known.len() >= PARTITION_STATEMENTS_MAX {
                known.clear();
            }
            known.insert(partition.to_string(), statement);
        }
        Ok(())
    }
}

/// A stored row the batch changed but did not read (so it has no address): a bug.
#[derive(Debug)]
pub(super) struct Unread(pub(super) String);

/// The batch's writes as statement parameters, gathered (and every address checked) before
/// anything is sent.
/// Per (partition, new state): the state statement, the state, the rows' addresses.
type StateChanges<'w> = Vec<(Statement, &'w str, Vec<&'w str>)>;

pub(super) struct Planned<'w> {
    ledger: LedgerRows<'w>,
    wallets: WalletRows<'w>,
    /// One execution per (partition, new state): its statement, the state, the addresses.
    states: StateChanges<'w>,
    new_rounds: NewRounds<'w>,
    closed_rounds: Vec<&'w str>,
    usage: UsageRows<'w>,
}

impl<'w> Planned<'w> {
    /// Every changed stored row must have been read by this batch (its address is known), and
    /// every partition's state statement prepared (`Writes::prepare_partitions`).
    pub(super) fn new(
        world: &'w World,
        addresses: &'w Addresses,
        writes: &Writes,
        no_dedup: bool,
    ) -> Result<Planned<'w>, Unread> {
        // New ledger rows, in creation order.
        let mut ledger = LedgerRows::default();
        for key in &world.created {
            ledger.push(key, &world.txs[key]);
        }
        if no_dedup {
            // The planted bug must not trip over the unique key it pretends is not there.
            for (tx, id) in ledger.provider_tx_id.iter_mut().zip(&ledger.id) {
                *tx = format!("{tx}~{id}").into();
            }
        }

        let mut wallets = WalletRows::default();
        let mut usage = UsageRows::default();
        for player in world.players.values() {
            for (currency, wagered, lost) in player.limit_use() {
                usage.player_id.push(player.id);
                usage.currency.push(currency.code());
                usage.wagered.push(wagered);
                usage.lost.push(lost);
            }
            for wallet in player.wallets.iter().filter(|w| w.changed) {
                let ctid = addresses
                    .wallets
                    .get(&(player.id, wallet.currency))
                    .ok_or_else(|| Unread(format!("wallet of player {} not locked", player.id)))?;
                wallets.ctid.push(ctid);
                wallets.balance.push(wallet.balance_minor);
                wallets.bonus.push(wallet.bonus_minor);
                wallets
                    .needs_reconciliation
                    .push(wallet.needs_reconciliation);
            }
        }

        let states = state_changes(world, addresses, writes)?;

        let mut new_rounds = NewRounds::default();
        let mut closed_rounds = Vec::new();
        for (key, round) in world.rounds.iter().filter(|(_, r)| r.changed) {
            let (provider, player_id, round_id) = key;
            if round.stored {
                let ctid = addresses
                    .rounds
                    .get(key)
                    .ok_or_else(|| Unread(format!("round {round_id:?} closed but not read")))?;
                closed_rounds.push(ctid.as_str());
            } else {
                new_rounds.provider_id.push(provider.0);
                new_rounds.player_id.push(*player_id);
                new_rounds.round_id.push(round_id.as_str());
                new_rounds
                    .game_id
                    .push(round.game.as_ref().map(GameId::as_str));
                new_rounds.closed.push(round.closed);
            }
        }
        Ok(Planned {
            ledger,
            wallets,
            states,
            new_rounds,
            closed_rounds,
            usage,
        })
    }
}

/// One execution per (partition, new state) of the stored ledger rows whose state changed:
/// its statement, the state, the rows' addresses.
fn state_changes<'w>(
    world: &'w World,
    addresses: &'w Addresses,
    writes: &Writes,
) -> Result<StateChanges<'w>, Unread> {
    let mut by_partition: BTreeMap<(&str, &str), Vec<&str>> = BTreeMap::new();
    for t in world.txs.values().filter(|t| t.state_changed) {
        let address = addresses.txs.get(&t.id).ok_or_else(|| {
            Unread(format!(
                "ledger row {} changed state but was not read",
                t.id
            ))
        })?;
        let state = t.state.map_or("", TxState::as_str);
        by_partition
            .entry((address.partition.as_str(), state))
            .or_default()
            .push(address.ctid.as_str());
    }
    let known = writes.states_in();
    let mut states = Vec::with_capacity(by_partition.len());
    for ((partition, state), ctids) in by_partition {
        let statement = known
            .get(partition)
            .ok_or_else(|| Unread(format!("no state statement for {partition}")))?;
        states.push((statement.clone(), state, ctids));
    }
    Ok(states)
}

/// Sends the batch's writes, in one pipeline in this order (`biased`); statements with no rows
/// are not sent.
pub(super) async fn send(
    tx: &Client,
    s: &Writes,
    p: &Planned<'_>,
) -> Result<(), tokio_postgres::Error> {
    let (ledger_params, wallet_params, new_round_params) =
        (p.ledger.params(), p.wallets.params(), p.new_rounds.params());
    let closed_round_params: Params<'_> = vec![&p.closed_rounds];
    let usage_params = p.usage.params();
    let state_params: Vec<Params<'_>> = p
        .states
        .iter()
        .map(|(_, state, ctids)| -> Params<'_> { vec![state, ctids] })
        .collect();
    let states = futures_util::future::try_join_all(
        p.states
            .iter()
            .zip(&state_params)
            .map(|((statement, _, _), params)| tx.execute(statement, params)),
    );
    tokio::try_join!(
        biased;
        execute_unless(tx, p.ledger.id.is_empty(), &s.insert_ledger, &ledger_params),
        execute_unless(tx, p.wallets.ctid.is_empty(), &s.update_wallets, &wallet_params),
        states,
        execute_unless(
            tx,
            p.new_rounds.provider_id.is_empty(),
            &s.insert_rounds,
            &new_round_params
        ),
        execute_unless(
            tx,
            p.closed_rounds.is_empty(),
            &s.close_rounds,
            &closed_round_params
        ),
        execute_unless(tx, p.usage.player_id.is_empty(), &s.add_usage, &usage_params),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The column list a statement gives its `unnest` arrays (`AS u(...)`).
    fn unnest_columns(statement: &str) -> Vec<String> {
        let from = statement.find("AS u(").expect("an `AS u(...)` list") + "AS u(".len();
        let to = from + statement[from..].find(')').expect("closed");
        statement[from..to]
            .split(',')
            .map(|c| c.trim().to_string())
            .collect()
    }

    #[test]
    fn every_struct_of_arrays_matches_its_statement_column_for_column() {
        for (statement, columns) in [
            (INSERT_LEDGER, LedgerRows::COLUMNS),
            (UPDATE_WALLETS, WalletRows::COLUMNS),
            (INSERT_ROUNDS, NewRounds::COLUMNS),
            (ADD_USAGE, UsageRows::COLUMNS),
        ] {
            assert_eq!(unnest_columns(statement), columns, "{statement}");
            // One `$n` parameter per column, in order.
            for n in 1..=columns.len() {
                assert!(
                    statement.contains(&format!("${n}::")),
                    "${n} in {statement}"
                );
            }
            assert!(!statement.contains(&format!("${}::", columns.len() + 1)));
        }
    }

    #[test]
    fn the_ledger_insert_writes_the_columns_it_unnests_in_the_same_order() {
        let insert = &INSERT_LEDGER[INSERT_LEDGER.find("INSERT INTO transactions (").unwrap()..];
        let list = &insert["INSERT INTO transactions (".len()..insert.find(')').unwrap()];
        let written: Vec<&str> = list.split(',').map(str::trim).collect();
        assert_eq!(written, LedgerRows::COLUMNS);
    }
}
