//! Reports for the back office (GGR, NGR, RTP, rounds, active players by provider, game and
//! day) read per-day rollups, never the ledger, so they answer in milliseconds on tens of
//! millions of ledger rows. The rollups are kept current by a job, not by the settlement
//! path (whose statements stay as they are): every `fold_interval` it folds ledger rows that
//! are settled — older than `settle_after`, longer than any batch may stay open, so no row
//! with a smaller id can still appear — into `report_daily` and `report_players_daily`, and
//! moves the watermark, all in one transaction. One gateway folds at a time (an advisory
//! lock), so several instances never count a row twice. Reports are as fresh as
//! `settle_after` plus `fold_interval`.

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
    let from: i64 = tx
        .query_one("SELECT last_id FROM report_watermark FOR UPDATE", &[])
        .await?
        .get(0);
    let settle_s = i64::try_from(settle_after.as_secs()).unwrap_or(i64::MAX);
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
    tx.execute(
        "WITH r AS (
             SELECT t.id, t.kind, t.provider_id, t.player_id, t.round_id, t.currency, t.amount,
                    t.real_delta, t.bonus_delta, (t.created_at AT TIME ZONE 'UTC')::date AS day,
                    coalesce(t.game_id, (SELECT b.game_id FROM transactions b
                                         WHERE b.provider_id = t.provider_id
                                           AND b.provider_tx_id = t.reference_tx_id), '') AS game
             FROM transactions t
             WHERE t.id > $1 AND t.id <= $2 AND t.outcome = 'OK' AND t.provider_id IS NOT NULL
               AND t.kind IN ('bet', 'win', 'rollback')
         )
         INSERT INTO report_daily AS d (day, provider_id, game_id, currency, bets, bonus_bets,
                                        wins, refunds, bet_count, rounds)
         SELECT day, provider_id, game, currency,
                coalesce(sum(amount) FILTER (WHERE kind = 'bet'), 0),
                coalesce(sum(-bonus_delta) FILTER (WHERE kind = 'bet'), 0),
                coalesce(sum(amount) FILTER (WHERE kind = 'win'), 0),
                coalesce(sum(real_delta + bonus_delta) FILTER (WHERE kind = 'rollback'), 0),
                count(*) FILTER (WHERE kind = 'bet'),
                count(*) FILTER (WHERE kind = 'bet' AND round_id IS NOT NULL AND NOT EXISTS (
                    SELECT 1 FROM transactions e
                    WHERE e.provider_id = r.provider_id AND e.player_id = r.player_id
                      AND e.round_id = r.round_id AND e.kind = 'bet' AND e.outcome = 'OK'
                      AND e.id < r.id))
         FROM r GROUP BY day, provider_id, game, currency
         ON CONFLICT (day, provider_id, game_id, currency) DO UPDATE SET
             bets = d.bets + excluded.bets, bonus_bets = d.bonus_bets + excluded.bonus_bets,
             wins = d.wins + excluded.wins, refunds = d.refunds + excluded.refunds,
             bet_count = d.bet_count + excluded.bet_count, rounds = d.rounds + excluded.rounds",
        &[&from, &to],
    )
    .await?;
    tx.execute(
        "INSERT INTO report_players_daily (day, provider_id, game_id, player_id)
         SELECT DISTINCT (t.created_at AT TIME ZONE 'UTC')::date, t.provider_id,
                coalesce(t.game_id, ''), t.player_id
         FROM transactions t
         WHERE t.id > $1 AND t.id <= $2 AND t.outcome = 'OK' AND t.kind = 'bet'
           AND t.provider_id IS NOT NULL
         ON CONFLICT DO NOTHING",
        &[&from, &to],
    )
    .await?;
    tx.execute("UPDATE report_watermark SET last_id = $1", &[&to])
        .await?;
    tx.commit().await?;
    Ok(to - from)
}

#[derive(Debug, thiserror::Error)]
pub enum FoldError {
    #[error("database: {0}")]
    Database(#[from] tokio_postgres::Error),
    #[error("database pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
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
            // A backlog is folded in steps, back to back.
            loop {
                match fold(&pool, settle_after).await {
                    Ok(n) if n >= FOLD_IDS_MAX => continue,
                    Ok(_) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "report rollups: fold failed; retrying later");
                        break;
                    }
                }
            }
        }
    })
}
