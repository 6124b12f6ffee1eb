//! The batch's world from the prefetch's rows: players and their wallets (with the busy ones
//! left out), limits, reserved ids, stored transactions with their addresses, tombstones,
//! rounds with their open bets, and sessions. A value the database should never hold (an
//! unknown transaction kind, limit kind or outcome) is an invariant error, never a guess.

use std::time::SystemTime;

use tokio_postgres::Row;

use super::plan::Plan;
use super::statements::{key, limit, player, round, session, tombstone, tx, wallet};
use super::{Addresses, Fetched, Rows, TxAddress};
use crate::apply::{
    self, BatchMap, BatchSet, Limit, LimitKind, Player, Round, Session, Tx, TxKind, TxState,
    Wallet, World,
};
use crate::command::{Code, Fingerprint, GameId, ProviderId, ProviderTxId, RoundId, SessionToken};
use crate::money::Currency;
use crate::store::{invariant, Error};

/// Builds the world in the order the rows depend on each other (players before their wallets
/// and limits, rounds before their open bets).
pub(super) fn world<'c>(plan: &Plan<'c>, rows: &Rows) -> Result<Fetched<'c>, Error> {
    let mut world = World::default();
    let mut addresses = Addresses::default();
    pruned(&mut world, rows);
    players(&mut world, plan, rows)?;
    let busy = busy(plan, rows);
    wallets(&mut world, &mut addresses, plan, rows)?;
    limits(&mut world, plan, rows)?;
    world.ids = rows.ids.get::<_, Vec<i64>>(0);
    world.ids.reverse();
    txs(&mut world, &mut addresses, rows)?;
    tombstones(&mut world, rows);
    rounds(&mut world, &mut addresses, rows)?;
    open_bets(&mut world, rows)?;
    sessions(&mut world, rows)?;
    Ok(Fetched {
        world,
        busy,
        addresses,
    })
}

/// Keys whose ledger row is in no partition any more: pruned with their day.
fn pruned(world: &mut World, rows: &Rows) {
    let found_old: BatchSet<i64> = rows
        .old_txs
        .iter()
        .map(|r| r.get::<_, i64>(tx::id))
        .collect();
    for row in rows
        .txs
        .iter()
        .filter(|r| r.get::<_, Option<i64>>(tx::id).is_none())
    {
        if !found_old.contains(&row.get::<_, i64>(key::key_id)) {
            let p: i32 = row.get(key::key_provider);
            if let Some(x) = ProviderTxId::stored(row.get::<_, String>(key::key_tx)) {
                world.pruned.insert((ProviderId(p), x));
            }
        }
    }
}

fn players(world: &mut World, plan: &Plan<'_>, rows: &Rows) -> Result<(), Error> {
    for row in &rows.players {
        let id: i64 = row.get(player::id);
        let player_ref = plan
            .id_to_ref
            .get(&id)
            .ok_or_else(|| invariant("player id"))?;
        world.players.insert(
            player_ref.clone(),
            Player {
                id,
                blocked: row.get(player::blocked),
                wallets: Vec::new(),
                limits: Vec::new(),
            },
        );
    }
    Ok(())
}

/// Players with a wallet another transaction holds (listed, not locked).
fn busy<'c>(plan: &Plan<'c>, rows: &Rows) -> BatchSet<&'c str> {
    let locked: BatchSet<(i64, &str)> = rows
        .skipped
        .iter()
        .map(|row| (row.get(wallet::player_id), row.get(wallet::currency)))
        .collect();
    rows.skipped_keys
        .iter()
        .filter(|row| !locked.contains(&(row.get(wallet::player_id), row.get(wallet::currency))))
        .filter_map(|row| plan.id_to_ref.get(&row.get::<_, i64>(wallet::player_id)))
        .filter_map(|r| plan.want.players.get(r.as_str()).copied())
        .collect()
}

/// Locked in (player, currency) order; kept in creation order, since the first wallet is the
/// player's default.
fn wallets(
    world: &mut World,
    addresses: &mut Addresses,
    plan: &Plan<'_>,
    rows: &Rows,
) -> Result<(), Error> {
    let mut created_at = BatchMap::default();
    for row in rows.waited.iter().chain(&rows.skipped) {
        let player_id: i64 = row.get(wallet::player_id);
        let player = plan
            .id_to_ref
            .get(&player_id)
            .and_then(|r| world.players.get_mut(r))
            .ok_or_else(|| invariant("wallet without player"))?;
        let code: &str = row.get(wallet::currency);
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
            row.get::<_, SystemTime>(wallet::created_at),
        );
        addresses
            .wallets
            .insert((player_id, currency), row.get::<_, String>(wallet::ctid));
        player.wallets.push(Wallet {
            currency,
            balance_minor: row.get(wallet::balance),
            bonus_minor: row.get(wallet::bonus),
            needs_reconciliation: row.get(wallet::needs_reconciliation),
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
    Ok(())
}

fn limits(world: &mut World, plan: &Plan<'_>, rows: &Rows) -> Result<(), Error> {
    for row in &rows.limits {
        let player_id: i64 = row.get(limit::player_id);
        let Some(player) = plan
            .id_to_ref
            .get(&player_id)
            .and_then(|r| world.players.get_mut(r))
        else {
            continue;
        };
        let kind = match row.get::<_, &str>(limit::kind) {
            "max_bet" => LimitKind::MaxBet,
            "wager" => LimitKind::Wager,
            "loss" => LimitKind::Loss,
            other => return Err(invariant(&format!("limit kind {other}"))),
        };
        // A limit in an unknown currency can only limit calls that cannot arrive.
        let Some(currency) = Currency::from_code(row.get(limit::currency)) else {
            continue;
        };
        player.limits.push(Limit {
            currency,
            kind,
            amount_minor: row.get(limit::amount),
            used_minor: row.get(limit::used),
            added_minor: 0,
        });
    }
    Ok(())
}

/// Stored ledger rows (recent and old, and the open bets of the rounds read), with where each
/// lies.
fn txs(world: &mut World, addresses: &mut Addresses, rows: &Rows) -> Result<(), Error> {
    let recent = rows
        .txs
        .iter()
        .filter(|r| r.get::<_, Option<i64>>(tx::id).is_some())
        .chain(&rows.recent_open_bets);
    for row in recent.chain(&rows.old_txs).chain(&rows.old_open_bets) {
        let (key, tx) = tx_from_row(row)?;
        addresses.txs.insert(
            tx.id,
            TxAddress {
                partition: row.get(tx::partition),
                ctid: row.get(tx::ctid),
            },
        );
        world.txs.insert(key, tx);
    }
    Ok(())
}

fn tombstones(world: &mut World, rows: &Rows) {
    for row in &rows.tombstones {
        let p: i32 = row.get(tombstone::provider_id);
        let x: String = row.get(tombstone::reference_tx_id);
        if let Some(x) = ProviderTxId::stored(x) {
            world.tombstones.insert((ProviderId(p), x));
        }
    }
}

fn rounds(world: &mut World, addresses: &mut Addresses, rows: &Rows) -> Result<(), Error> {
    for row in &rows.rounds {
        let p: i32 = row.get(round::provider_id);
        let player_id: i64 = row.get(round::player_id);
        let round_id = RoundId::stored(row.get::<_, String>(round::round_id))
            .ok_or_else(|| invariant("round id"))?;
        let key = (ProviderId(p), player_id, round_id);
        addresses.rounds.insert(key.clone(), row.get(round::ctid));
        world.rounds.insert(
            key,
            Round {
                closed: row.get(round::closed),
                game: row
                    .get::<_, Option<String>>(round::game_id)
                    .and_then(GameId::stored),
                open_bets: Vec::new(),
                bets_rolled_back: false,
                bets_settled: false,
                changed: false,
                stored: true,
            },
        );
    }
    Ok(())
}

/// The applied bets of the rounds of wins that name none, in id order, onto their rounds: open
/// ones to settle, and whether any was rolled back or settled (rows without a round row cannot
/// exist: the bet that opened the round created it).
fn open_bets(world: &mut World, rows: &Rows) -> Result<(), Error> {
    let mut open_rows: Vec<&Row> = rows
        .old_open_bets
        .iter()
        .chain(&rows.recent_open_bets)
        .collect();
    open_rows.sort_by_key(|r| r.get::<_, i64>(tx::id));
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
    Ok(())
}

fn sessions(world: &mut World, rows: &Rows) -> Result<(), Error> {
    for row in &rows.sessions {
        let token: String = row.get(session::token);
        let Some(token) = SessionToken::stored(token) else {
            continue;
        };
        world.sessions.insert(
            token,
            Session {
                player_id: row.get(session::player_id),
                currency: currency(row.get(session::currency))?,
                game: row
                    .get::<_, Option<String>>(session::game_id)
                    .and_then(GameId::stored),
                live: row.get(session::live),
            },
        );
    }
    Ok(())
}

fn currency(code: &str) -> Result<Currency, Error> {
    Currency::from_code(code)
        .ok_or_else(|| Error::Invariant(format!("unknown currency {code} in the database")))
}

fn tx_from_row(row: &Row) -> Result<(apply::TxKey, Tx), Error> {
    let provider = ProviderId(row.get(tx::provider_id));
    let provider_tx = ProviderTxId::stored(row.get::<_, String>(tx::provider_tx_id))
        .ok_or_else(|| invariant("tx id"))?;
    let outcome: &str = row.get(tx::outcome);
    let fingerprint = row
        .get::<_, Option<&[u8]>>(tx::fingerprint)
        .and_then(|b| <[u8; 16]>::try_from(b).ok().map(Fingerprint));
    let tx = Tx {
        id: row.get(tx::id),
        kind: TxKind::parse(row.get(tx::kind)).ok_or_else(|| invariant("transaction kind"))?,
        outcome: Code::parse(outcome).ok_or_else(|| invariant("outcome code"))?,
        state: row
            .get::<_, Option<&str>>(tx::state)
            .and_then(TxState::parse),
        player_id: row.get(tx::player_id),
        currency: currency(row.get(tx::currency))?,
        round: row
            .get::<_, Option<String>>(tx::round_id)
            .and_then(RoundId::stored),
        game: row
            .get::<_, Option<String>>(tx::game_id)
            .and_then(GameId::stored),
        amount_minor: row.get(tx::amount),
        real_delta: row.get(tx::real_delta),
        bonus_delta: row.get(tx::bonus_delta),
        balance_after: row.get(tx::balance_after),
        bonus_after: row.get(tx::bonus_after),
        reference: row
            .get::<_, Option<String>>(tx::reference_tx_id)
            .and_then(ProviderTxId::stored),
        fingerprint,
        is_new: false,
        state_changed: false,
    };
    Ok(((provider, provider_tx), tx))
}
