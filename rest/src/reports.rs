//! Reports for the back office (GGR, NGR, RTP, rounds, active players by provider, game and
//! day) read per-day rollups, never the ledger, so they answer in milliseconds on tens of
//! millions of ledger rows. The rollups are kept current by a job, not by the settlement
//! path (whose statements stay as they are): every `fold_interval` it folds ledger rows that
//! are settled — older than `settle_after`, longer than any batch may stay open, so no row
//! with a smaller id can still appear — into `report_daily` and `report_player_sets`, and
//! moves the watermark, all in one transaction. One gateway folds at a time (an advisory
//! lock), so several instances never count a row twice. Reports are as fresh as
//! `settle_after` plus `fold_interval`.
//!
//! Active players are kept as one set of player ids per day, provider and game (a 64-bit
//! roaring bitmap, [`PlayerSet`]): the fold unions each step's players into the day's sets, and
//! the players report unions the sets of a range and counts them, exactly, without reading a
//! row per player.

use std::collections::HashMap;
use std::time::Duration;

use deadpool_postgres::Pool;

/// Advisory lock held by the folding transaction.
const FOLD_LOCK: i64 = 0x7265_706f_7274; // "report"
/// Ledger ids folded per transaction at most (a backlog is folded in steps).
const FOLD_IDS_MAX: i64 = 2_000_000;

/// Folds settled ledger rows into the rollups; answers how many ledger ids it covered (0 when
/// another gateway holds the lock or nothing is settled yet).
pub async fn fold(pool: &Pool, settle_after: Duration) -> Result<i64, FoldError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let locked: bool = tx
        .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&FOLD_LOCK])
        .await?
        .get(0);
    if !locked {
        return Ok(0);
    }
    // No JIT: a fold's plan spans every ledger partition (twice, with the rollbacks' lookup),
    // and compiling it took 5.4 of a fold's 5.6 s with 34 partitions (auto_explain), for a
    // statement that runs a few milliseconds' worth of rows.
    // Memory for the step's sorts (first bets by round, totals by day and game): with the
    // default 4 MB a fold of 30 s of ledger at 7,500 callbacks/s (219,071 rows) spilled 26 MB
    // of sorts to disk and took 1.3 s of a core beside the lanes (`EXPLAIN ANALYZE`).
    tx.batch_execute("SET LOCAL jit = off; SET LOCAL work_mem = '64MB'")
        .await?;
    let settle_s = i64::try_from(settle_after.as_secs()).unwrap_or(i64::MAX);
    // `folded_at`: no folded row is younger (ids say nothing about time: imported or moved
    // rows may be anywhere, so the ranges below are by id alone).
    let mark = tx
        .query_one(
            "SELECT last_id, coalesce(last_at, '-infinity')::text
             FROM report_watermark FOR UPDATE",
            &[],
        )
        .await?;
    let (from, folded_at): (i64, String) = (mark.get(0), mark.get(1));
    // The newest settled row: walked down the primary key from the newest row.
    let newest: Option<i64> = tx
        .query_opt(
            "SELECT id FROM transactions
             WHERE id > $1 AND created_at < now() - make_interval(secs => $2::bigint)
             ORDER BY id DESC LIMIT 1",
            &[&from, &settle_s],
        )
        .await?
        .map(|r| r.get(0));
    let Some(newest) = newest else {
        return Ok(0);
    };
    let to = newest.min(from.saturating_add(FOLD_IDS_MAX));
    // Rounds: a round counts once, on the day, game and currency of its first applied bet.
    // Each round with a bet in this step is checked once, at its first bet here; it is new
    // unless an applied bet of it was folded before. A round opened after the newest folded
    // row's time has no such bet (its bets are never older than its `rounds` row), so only
    // older rounds are searched for one, from the round's start on (the partitions that can
    // hold it). A rollback's game is its transaction's, found through its key.
    tx.execute(
        "WITH r AS (
             SELECT t.id, t.kind, t.provider_id, t.player_id, t.round_id, t.currency, t.amount,
                    t.real_delta, t.bonus_delta, (t.created_at AT TIME ZONE 'UTC')::date AS day,
                    coalesce(t.game_id, (SELECT b.game_id FROM transaction_keys k
                                         JOIN transactions b
                                           ON b.id = k.id AND b.created_at = k.created_at
                                         WHERE k.provider_id = t.provider_id
                                           AND k.provider_tx_id = t.reference_tx_id), '') AS game
             FROM transactions t
             WHERE t.id > $1 AND t.id <= $2 AND t.outcome = 'OK' AND t.provider_id IS NOT NULL
               AND t.kind IN ('bet', 'win', 'rollback')
         ), first_bets AS (
             SELECT DISTINCT ON (provider_id, player_id, round_id)
                    day, provider_id, player_id, round_id, game, currency
             FROM r WHERE kind = 'bet' AND round_id IS NOT NULL
             ORDER BY provider_id, player_id, round_id, id
         ), new_rounds AS (
             SELECT f.day, f.provider_id, f.game, f.currency, count(*) AS rounds
             FROM first_bets f
             LEFT JOIN rounds ro USING (provider_id, player_id, round_id)
             WHERE ro.created_at > $3::text::timestamptz OR NOT EXISTS (
                 SELECT 1 FROM transactions e
                 WHERE e.provider_id = f.provider_id AND e.player_id = f.player_id
                   AND e.round_id = f.round_id AND e.kind = 'bet' AND e.outcome = 'OK'
                   AND e.id <= $1
                   AND e.created_at >= coalesce(ro.created_at, '-infinity'))
             GROUP BY 1, 2, 3, 4
         ), money AS (
             SELECT day, provider_id, game, currency,
                    coalesce(sum(amount) FILTER (WHERE kind = 'bet'), 0) AS bets,
                    coalesce(sum(-bonus_delta) FILTER (WHERE kind = 'bet'), 0) AS bonus_bets,
                    coalesce(sum(amount) FILTER (WHERE kind = 'win'), 0) AS wins,
                    coalesce(sum(real_delta + bonus_delta) FILTER (WHERE kind = 'rollback'), 0)
                        AS refunds,
                    count(*) FILTER (WHERE kind = 'bet') AS bet_count
             FROM r GROUP BY 1, 2, 3, 4
         )
         INSERT INTO report_daily AS d (day, provider_id, game_id, currency, bets, bonus_bets,
                                        wins, refunds, bet_count, rounds)
         SELECT day, provider_id, game, currency, bets, bonus_bets, wins, refunds, bet_count,
                coalesce(n.rounds, 0)
         FROM money LEFT JOIN new_rounds n USING (day, provider_id, game, currency)
         ON CONFLICT (day, provider_id, game_id, currency) DO UPDATE SET
             bets = d.bets + excluded.bets, bonus_bets = d.bonus_bets + excluded.bonus_bets,
             wins = d.wins + excluded.wins, refunds = d.refunds + excluded.refunds,
             bet_count = d.bet_count + excluded.bet_count, rounds = d.rounds + excluded.rounds",
        &[&from, &to, &folded_at],
    )
    .await?;
    fold_player_sets(&tx, from, to).await?;
    // The newest creation time folded so far (never moving back).
    tx.execute(
        "UPDATE report_watermark SET last_id = $2, last_at = greatest(
             last_at, (SELECT max(created_at) FROM transactions
                       WHERE id > $1 AND id <= $2))",
        &[&from, &to],
    )
    .await?;
    tx.commit().await?;
    Ok(to - from)
}

/// Unions the players who bet in ledger ids `(from, to]` into their day's sets: one query for
/// the new ids by set, one for the sets they touch, one upsert of the unions.
async fn fold_player_sets(
    tx: &tokio_postgres::Transaction<'_>,
    from: i64,
    to: i64,
) -> Result<(), FoldError> {
    let fresh = tx
        .query(
            "SELECT (t.created_at AT TIME ZONE 'UTC')::date::text, t.provider_id,
                    coalesce(t.game_id, ''), array_agg(DISTINCT t.player_id)
             FROM transactions t
             WHERE t.id > $1 AND t.id <= $2 AND t.outcome = 'OK' AND t.kind = 'bet'
               AND t.provider_id IS NOT NULL
             GROUP BY 1, 2, 3",
            &[&from, &to],
        )
        .await?;
    if fresh.is_empty() {
        return Ok(());
    }
    let days: Vec<String> = fresh.iter().map(|r| r.get(0)).collect();
    let providers: Vec<i32> = fresh.iter().map(|r| r.get(1)).collect();
    let games: Vec<String> = fresh.iter().map(|r| r.get(2)).collect();
    let stored = tx
        .query(
            "SELECT s.day::text, s.provider_id, s.game_id, s.players
             FROM report_player_sets s
             JOIN unnest($1::text[]::date[], $2::int[], $3::text[]) AS k (day, provider_id, game_id)
               USING (day, provider_id, game_id)",
            &[&days, &providers, &games],
        )
        .await?;
    let mut before: HashMap<(&str, i32, &str), &[u8]> = stored
        .iter()
        .map(|s| ((s.get(0), s.get(1), s.get(2)), s.get(3)))
        .collect();
    let mut sets = Vec::with_capacity(fresh.len());
    for row in &fresh {
        let key = (row.get(0), row.get(1), row.get(2));
        let mut set = match before.remove(&key) {
            Some(bytes) => PlayerSet::decode(bytes)?,
            None => PlayerSet::default(),
        };
        set.insert_all(&row.get::<_, Vec<i64>>(3))?;
        sets.push(set.encode());
    }
    tx.execute(
        "INSERT INTO report_player_sets AS s (day, provider_id, game_id, players)
         SELECT * FROM unnest($1::text[]::date[], $2::int[], $3::text[], $4::bytea[])
         ON CONFLICT (day, provider_id, game_id) DO UPDATE SET players = excluded.players",
        &[&days, &providers, &games, &sets],
    )
    .await?;
    Ok(())
}

/// A set of player ids: a 64-bit roaring bitmap, stored in its portable serialization.
#[derive(Debug, Default)]
pub struct PlayerSet(roaring::RoaringTreemap);

impl PlayerSet {
    /// Reads a stored set; every length in it is checked, and nothing may follow it.
    pub fn decode(mut bytes: &[u8]) -> Result<PlayerSet, SetError> {
        let set =
            roaring::RoaringTreemap::deserialize_from(&mut bytes).map_err(SetError::Malformed)?;
        if !bytes.is_empty() {
            return Err(SetError::Trailing(bytes.len()));
        }
        Ok(PlayerSet(set))
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.0.serialized_size());
        self.0
            .serialize_into(&mut out)
            .expect("writing to a Vec cannot fail");
        out
    }

    /// Adds player ids (never negative: they come from a sequence).
    pub fn insert_all(&mut self, ids: &[i64]) -> Result<(), SetError> {
        for &id in ids {
            let id = u64::try_from(id).map_err(|_| SetError::NegativeId(id))?;
            self.0.insert(id);
        }
        Ok(())
    }

    pub fn union_with(&mut self, other: &PlayerSet) {
        self.0 |= &other.0;
    }

    pub fn len(&self) -> u64 {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SetError {
    #[error("a stored player set is malformed: {0}")]
    Malformed(std::io::Error),
    #[error("a stored player set is followed by {0} stray bytes")]
    Trailing(usize),
    #[error("player id {0} is negative")]
    NegativeId(i64),
}

#[derive(Debug, thiserror::Error)]
pub enum FoldError {
    #[error("database: {0}")]
    Database(#[from] tokio_postgres::Error),
    #[error("database pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error(transparent)]
    Set(#[from] SetError),
}

/// Folds every `interval` until the process ends; a failed fold is logged and retried.
pub fn spawn_job(
    pool: Pool,
    interval: Duration,
    settle_after: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(interval);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            if pool.is_closed() {
                return; // the gateway stopped
            }
            // A backlog is folded in steps, back to back.
            loop {
                match fold(&pool, settle_after).await {
                    Ok(n) if n >= FOLD_IDS_MAX => continue,
                    Ok(_) => break,
                    Err(_) if pool.is_closed() => return,
                    Err(e) => {
                        tracing::warn!(error = %e, "report rollups: fold failed; retrying later");
                        break;
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_survive_storage_and_count_a_player_once_across_unions() {
        let mut monday = PlayerSet::default();
        monday.insert_all(&[7, 3, 7, 1 << 40]).unwrap();
        let mut tuesday = PlayerSet::decode(&PlayerSet::default().encode()).unwrap();
        assert!(tuesday.is_empty());
        tuesday.insert_all(&[3, 9]).unwrap();
        let mut both = PlayerSet::decode(&monday.encode()).unwrap();
        assert_eq!(both.len(), 3);
        both.union_with(&PlayerSet::decode(&tuesday.encode()).unwrap());
        assert_eq!(both.len(), 4, "3 played both days and counts once");
    }

    #[test]
    fn malformed_or_negative_input_is_refused() {
        let mut set = PlayerSet::default();
        set.insert_all(&[1, 2, 3]).unwrap();
        let bytes = set.encode();
        assert!(PlayerSet::decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(PlayerSet::decode(b"not a set").is_err());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(
            PlayerSet::decode(&longer),
            Err(SetError::Trailing(1))
        ));
        assert!(matches!(
            set.insert_all(&[-1]),
            Err(SetError::NegativeId(-1))
        ));
    }
}
