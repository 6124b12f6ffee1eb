//! What a batch needs from the database, gathered from its commands before anything is sent:
//! the players (waited for or skipped when busy), the keys of stored transactions, tombstones,
//! rounds and sessions, as the query arrays the statements take.

use std::collections::{BTreeSet, HashMap};
use std::time::SystemTime;

use tokio_postgres::{Client, Row};

use super::statements::{key, resolved, round, tx, Reads};
use crate::apply;
use crate::command::{Action, Command, PlayerRef};

/// The batch's keys as query arrays (borrowed from its commands).
pub(super) struct Plan<'c> {
    pub(super) want: Wanted<'c>,
    /// Players that exist, by id; unknown ones stay out of the world (UNKNOWN_PLAYER).
    pub(super) id_to_ref: apply::BatchMap<i64, PlayerRef>,
    pub(super) players: Vec<i64>,
    /// Players with a patient unit: their wallets are waited for.
    pub(super) waited: Vec<i64>,
    /// The others: skipped when another transaction holds their wallet.
    pub(super) skipped: Vec<i64>,
    pub(super) ids_needed: i32,
    pub(super) txs: (Vec<i32>, Vec<&'c str>),
    pub(super) tombstones: (Vec<i32>, Vec<&'c str>),
    pub(super) rounds: (Vec<i32>, Vec<i64>, Vec<&'c str>),
    /// Rounds whose open bets a win that names none settles.
    pub(super) open: (Vec<i32>, Vec<i64>, Vec<&'c str>),
    pub(super) sessions: Vec<&'c str>,
}

impl<'c> Plan<'c> {
    pub(super) fn new(
        player_ids: &PlayerIds,
        commands: &'c [Command],
        units: &[usize],
        patient: &[bool],
    ) -> Plan<'c> {
        let want = wanted(commands);
        let mut id_to_ref = apply::BatchMap::default();
        for external in &want.players {
            if let Some(id) = player_ids.get(external) {
                if let Some(r) = PlayerRef::stored(external.to_string()) {
                    id_to_ref.insert(id, r);
                }
            }
        }
        let mut players: Vec<i64> = id_to_ref.keys().copied().collect();
        players.sort_unstable();
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
        Plan {
            id_to_ref,
            players,
            waited: waited.into_iter().collect(),
            skipped,
            ids_needed: i32::try_from(apply::ids_needed(commands)).unwrap_or(i32::MAX),
            txs: split2(&want.txs),
            tombstones: split2(&want.tombstones),
            rounds: round_keys(&want.rounds, player_ids),
            open: round_keys(&want.open_bet_rounds, player_ids),
            sessions: want.sessions.iter().copied().collect(),
            want,
        }
    }

    /// Old rounds (their row says they began before the recent partitions) whose open bets
    /// the batch needs: a win that names no bet.
    pub(super) fn old_open_rounds<'r>(
        &self,
        round_rows: &'r [Row],
    ) -> (Vec<i32>, Vec<i64>, Vec<&'r str>) {
        let open_keys: apply::BatchSet<(i32, i64, &str)> = self
            .open
            .0
            .iter()
            .zip(&self.open.1)
            .zip(&self.open.2)
            .map(|((&p, &pl), &r)| (p, pl, r))
            .collect();
        let mut old: (Vec<i32>, Vec<i64>, Vec<&str>) = Default::default();
        for row in round_rows
            .iter()
            .filter(|r| r.get::<_, bool>(round::began_before_recent))
        {
            let key: (i32, i64, &str) = (
                row.get(round::provider_id),
                row.get(round::player_id),
                row.get(round::round_id),
            );
            if open_keys.contains(&key) {
                old.0.push(key.0);
                old.1.push(key.1);
                old.2.push(key.2);
            }
        }
        old
    }
}

/// The addresses (id, time) of looked-up keys whose ledger row is older than the recent
/// partitions (the lookup found the key but no recent row).
pub(super) fn old_tx_addresses(tx_rows: &[Row]) -> (Vec<i64>, Vec<SystemTime>) {
    tx_rows
        .iter()
        .filter(|r| r.get::<_, Option<i64>>(tx::id).is_none())
        .map(|r| {
            (
                r.get::<_, i64>(key::key_id),
                r.get::<_, SystemTime>(key::key_created_at),
            )
        })
        .unzip()
}

/// Keys the prefetch needs, gathered from the batch (borrowed from its commands).
#[derive(Default)]
pub(super) struct Wanted<'a> {
    pub(super) players: BTreeSet<&'a str>,
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
    pub(in crate::store) async fn resolve(
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
            self.by_ref
                .insert(row.get(resolved::external_id), row.get(resolved::id));
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
            self.by_ref
                .insert(row.get(resolved::external_id), row.get(resolved::id));
        }
        Ok(())
    }

    fn get(&self, player: &str) -> Option<i64> {
        self.by_ref.get(player).copied()
    }
}
