//! The batch's writes, in one pipeline before COMMIT: the new ledger rows with their keys, the
//! changed wallets, the state of stored rows the batch changed, new rounds and closed ones.
//! Each statement takes one array per column (`unnest`); its parameters are one struct of
//! arrays right below its text, fields in the statement's order, and a test checks the names
//! against the statement's column list, so a column cannot slip.

use std::borrow::Cow;
use std::time::SystemTime;

use tokio_postgres::{Client, Statement};

use super::prefetch::RowTimes;
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

/// The wallets the batch changed, to their new totals.
pub const UPDATE_WALLETS: &str = "UPDATE wallets w SET balance = u.balance, bonus = u.bonus,
         needs_reconciliation = u.needs_reconciliation
     FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], $5::bool[])
          AS u(player_id, currency, balance, bonus, needs_reconciliation)
     WHERE w.player_id = u.player_id AND w.currency = u.currency";

/// The parameters of [`UPDATE_WALLETS`].
#[derive(Default)]
struct WalletRows<'a> {
    player_id: Vec<i64>,
    currency: Vec<&'a str>,
    balance: Vec<i64>,
    bonus: Vec<i64>,
    needs_reconciliation: Vec<bool>,
}

impl WalletRows<'_> {
    #[cfg(test)]
    const COLUMNS: &'static [&'static str] = &[
        "player_id",
        "currency",
        "balance",
        "bonus",
        "needs_reconciliation",
    ];

    fn params(&self) -> Params<'_> {
        vec![
            &self.player_id,
            &self.currency,
            &self.balance,
            &self.bonus,
            &self.needs_reconciliation,
        ]
    }
}

/// The state of stored rows the batch changed (a bet settled or rolled back, a win rolled
/// back), each addressed by `(id, created_at)` (one partition), on one side (`>=` or `<`) of
/// the recent partitions' start, so only those are opened.
macro_rules! update_states {
    ($side:literal) => {
        concat!(
            "UPDATE transactions t SET state = u.state
             FROM unnest($1::bigint[], $2::timestamptz[], $3::text[]) AS u(id, created_at, state)
             WHERE t.id = u.id AND t.created_at = u.created_at AND t.created_at ",
            $side,
            " ",
            recent_start!()
        )
    };
}

/// State changes of recent rows.
pub const UPDATE_STATES: &str = update_states!(">=");

/// State changes of older rows (read by the prefetch's second trip).
pub const UPDATE_OLD_STATES: &str = update_states!("<");

/// The parameters of [`UPDATE_STATES`] and [`UPDATE_OLD_STATES`].
#[derive(Default)]
struct StateRows<'a> {
    id: Vec<i64>,
    created_at: Vec<SystemTime>,
    state: Vec<&'a str>,
}

impl StateRows<'_> {
    #[cfg(test)]
    const COLUMNS: &'static [&'static str] = &["id", "created_at", "state"];

    fn params(&self) -> Params<'_> {
        vec![&self.id, &self.created_at, &self.state]
    }
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

/// Stored rounds this batch closed (the only change a stored round sees).
pub const CLOSE_ROUNDS: &str =
    "UPDATE rounds r SET closed = true, closed_at = coalesce(r.closed_at, now())
     FROM unnest($1::int[], $2::bigint[], $3::text[]) AS u(provider_id, player_id, round_id)
     WHERE r.provider_id = u.provider_id AND r.player_id = u.player_id
       AND r.round_id = u.round_id";

/// The parameters of [`CLOSE_ROUNDS`].
#[derive(Default)]
struct ClosedRounds<'a> {
    provider_id: Vec<i32>,
    player_id: Vec<i64>,
    round_id: Vec<&'a str>,
}

impl ClosedRounds<'_> {
    #[cfg(test)]
    const COLUMNS: &'static [&'static str] = &["provider_id", "player_id", "round_id"];

    fn params(&self) -> Params<'_> {
        vec![&self.provider_id, &self.player_id, &self.round_id]
    }
}

/// The wallet path's writes, prepared once per connection.
pub struct Writes {
    insert_ledger: Statement,
    update_wallets: Statement,
    update_states: Statement,
    update_old_states: Statement,
    insert_rounds: Statement,
    close_rounds: Statement,
}

impl Writes {
    pub(super) async fn prepare(client: &Client) -> Result<Writes, tokio_postgres::Error> {
        let (insert_ledger, update_wallets, update_states, update_old_states) = tokio::try_join!(
            client.prepare(INSERT_LEDGER),
            client.prepare(UPDATE_WALLETS),
            client.prepare(UPDATE_STATES),
            client.prepare(UPDATE_OLD_STATES),
        )?;
        let (insert_rounds, close_rounds) =
            tokio::try_join!(client.prepare(INSERT_ROUNDS), client.prepare(CLOSE_ROUNDS),)?;
        Ok(Writes {
            insert_ledger,
            update_wallets,
            update_states,
            update_old_states,
            insert_rounds,
            close_rounds,
        })
    }
}

/// Sends the batch's writes (statements with no rows are not sent). Every changed stored row
/// has its time in `row_times` (checked by the caller before the writes).
pub(super) async fn write(
    tx: &Client,
    s: &Writes,
    world: &World,
    row_times: &RowTimes,
    no_dedup: bool,
) -> Result<(), tokio_postgres::Error> {
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
    for player in world.players.values() {
        for wallet in player.wallets.iter().filter(|w| w.changed) {
            wallets.player_id.push(player.id);
            wallets.currency.push(wallet.currency.code());
            wallets.balance.push(wallet.balance_minor);
            wallets.bonus.push(wallet.bonus_minor);
            wallets
                .needs_reconciliation
                .push(wallet.needs_reconciliation);
        }
    }

    let (mut states, mut old_states) = (StateRows::default(), StateRows::default());
    for t in world.txs.values().filter(|t| t.state_changed) {
        if let (Some(state), Some(time)) = (t.state, row_times.get(&t.id)) {
            let rows = if time.old {
                &mut old_states
            } else {
                &mut states
            };
            rows.id.push(t.id);
            rows.created_at.push(time.at);
            rows.state.push(state.as_str());
        }
    }

    let mut new_rounds = NewRounds::default();
    let mut closed_rounds = ClosedRounds::default();
    for ((provider, player_id, round_id), round) in world.rounds.iter().filter(|(_, r)| r.changed) {
        if round.stored {
            closed_rounds.provider_id.push(provider.0);
            closed_rounds.player_id.push(*player_id);
            closed_rounds.round_id.push(round_id.as_str());
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

    let (ledger_params, wallet_params, state_params, old_state_params) = (
        ledger.params(),
        wallets.params(),
        states.params(),
        old_states.params(),
    );
    let (new_round_params, closed_round_params) = (new_rounds.params(), closed_rounds.params());
    // One pipeline, sent in this order (`biased`); statements with no rows are not sent.
    tokio::try_join!(
        biased;
        execute_unless(tx, ledger.id.is_empty(), &s.insert_ledger, &ledger_params),
        execute_unless(tx, wallets.player_id.is_empty(), &s.update_wallets, &wallet_params),
        execute_unless(tx, states.id.is_empty(), &s.update_states, &state_params),
        execute_unless(
            tx,
            old_states.id.is_empty(),
            &s.update_old_states,
            &old_state_params
        ),
        execute_unless(
            tx,
            new_rounds.provider_id.is_empty(),
            &s.insert_rounds,
            &new_round_params
        ),
        execute_unless(
            tx,
            closed_rounds.provider_id.is_empty(),
            &s.close_rounds,
            &closed_round_params
        ),
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
            (UPDATE_STATES, StateRows::COLUMNS),
            (UPDATE_OLD_STATES, StateRows::COLUMNS),
            (INSERT_ROUNDS, NewRounds::COLUMNS),
            (CLOSE_ROUNDS, ClosedRounds::COLUMNS),
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
