//! Large ledgers for the sections that need them: history partitions, seeded rows, and a wait
//! for the report rollups to catch up.
#![allow(clippy::float_arithmetic)] // rates and percentiles, never money

use std::time::{Duration, Instant};

use anyhow::bail;

use crate::bench::harness::*;

/// Waits until the report job has folded every ledger row older than an hour.
pub(crate) fn wait_for_rollups(gw: &Gateway) -> anyhow::Result<()> {
    let started = Instant::now();
    while psql(
        gw,
        "SELECT last_id >= (SELECT max(id) FROM transactions
                            WHERE created_at < now() - interval '1 hour')
         FROM report_watermark",
    )? != "t"
    {
        if started.elapsed() > Duration::from_secs(1_800) {
            bail!("the rollups did not catch up within 30 minutes");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    Ok(())
}

/// Creates the ledger's partitions for the `days` days before today (UTC): one a day, or one
/// for them all. SQL for `psql`.
pub(crate) fn history_partitions_sql(days: u32, daily: bool) -> String {
    let (step, name) = match daily {
        true => (1, "'transactions_p' || to_char(d, 'YYYYMMDD')"),
        false => (days, "'transactions_history'"),
    };
    format!(
        "DO $$
         DECLARE d date;
         BEGIN
             FOR i IN 0..{last} BY {step} LOOP
                 d := (now() AT TIME ZONE 'UTC')::date - {days} + i;
                 EXECUTE format('CREATE TABLE %I PARTITION OF transactions
                                 FOR VALUES FROM (%L) TO (%L) WITH (fillfactor = 90)',
                                {name}, d::text || ' 00:00+00',
                                (d + {step})::text || ' 00:00+00');
             END LOOP;
         END $$",
        last = days - 1
    )
}

/// Rows `(first, last]` of a history of `total` ledger rows spread evenly over the `days` days
/// before today: bets and wins of the demo provider by every demo player in turn, 50 games,
/// each pair one round with its key rows and its closed `rounds` row, as the lanes write them.
/// A round's win pays its bet back, so every wallet still equals its ledger. SQL for `psql`.
pub(crate) fn seed_ledger_sql(first: u64, last: u64, total: u64, days: u32) -> String {
    format!(
        "WITH rows AS (
             INSERT INTO transactions (provider_id, provider_tx_id, kind, outcome, state,
                 player_id, currency, round_id, game_id, amount, real_delta, bonus_delta,
                 balance_before, balance_after, bonus_before, bonus_after, created_at)
             SELECT pr.id, 'seed-' || g, CASE WHEN g % 2 = 0 THEN 'bet' ELSE 'win' END,
                    'OK', CASE WHEN g % 2 = 0 THEN 'settled' END,
                    pl.first + (g / 2) % {PLAYERS}, 'EUR', 'seed-r-' || (g / 2),
                    'game-' || (g / 2) % 50, 100 + (g / 2) % 1000,
                    CASE WHEN g % 2 = 0 THEN -1 ELSE 1 END * (100 + (g / 2) % 1000), 0,
                    0, CASE WHEN g % 2 = 0 THEN -1 ELSE 1 END * (100 + (g / 2) % 1000), 0, 0,
                    date_trunc('day', now(), 'UTC') - interval '{days} days'
                        + interval '{days} days' * (g / 2 * 2) / {total}
             FROM generate_series({first} + 1, {last}) AS g,
                  (SELECT id FROM providers WHERE code = 'demo') AS pr,
                  (SELECT min(id) AS first FROM players) AS pl
             RETURNING provider_id, provider_tx_id, id, created_at, kind, player_id, round_id,
                       game_id
         ), keys AS (
             INSERT INTO transaction_keys (provider_id, provider_tx_id, id, created_at, player_id)
             SELECT provider_id, provider_tx_id, id, created_at, player_id FROM rows
         )
         INSERT INTO rounds (provider_id, player_id, round_id, game_id, closed, created_at,
                             closed_at)
         SELECT provider_id, player_id, round_id, game_id, true, created_at, created_at
         FROM rows WHERE kind = 'bet'"
    )
}
