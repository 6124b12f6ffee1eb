//! Retention by time: the ledger (`transactions`) and the kept callbacks (`callback_segments`)
//! are partitioned by day (UTC, migration 0011). Partitions are created ahead of time (the
//! gateway does it at start and every hour, so a write never finds its day missing), and
//! `gateway prune` drops those whose every row is older than the retention, archiving them
//! first when asked. A dropped ledger day leaves its per-wallet totals in `ledger_pruned`
//! (reconciliation adds them back) and takes its idempotency keys along.
//!
//! The rule that decides (which days to create, which partitions may go) is pure, below; the
//! rest runs it under one advisory lock, so gateways and the prune command never race.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio_postgres::Client;

/// The partitioned tables: name, partition column, fill factor of new partitions.
pub const TABLES: &[Table] = &[
    Table {
        name: "transactions",
        fillfactor: 90,
    },
    Table {
        name: "callback_segments",
        fillfactor: 100,
    },
];

#[derive(Debug, Clone, Copy)]
pub struct Table {
    pub name: &'static str,
    pub fillfactor: u8,
}

/// Seconds in a (UTC) day.
const DAY: i64 = 86_400;

/// Taken by every creation and pruning transaction.
const PARTITIONS_LOCK: i64 = 0x7061_7274_6974; // "partit"

/// The least retention accepted: providers retry and roll back for days, and a pruned
/// transaction's retry would be taken for a new one.
pub const RETENTION_DAYS_MIN: u32 = 7;

/// One partition: rows with `from <= created_at < to` (Unix seconds; `from` is `None` for the
/// initial partition, which starts at MINVALUE; `to` is `None` for MAXVALUE).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub name: String,
    pub from: Option<i64>,
    pub to: Option<i64>,
}

impl Partition {
    fn holds(&self, at: i64) -> bool {
        self.from.is_none_or(|f| f <= at) && self.to.is_none_or(|t| at < t)
    }
}

/// The days (Unix day numbers) whose partitions are missing for today and the `ahead` days
/// after it. Days before today are never created: no row can be written there any more.
pub fn days_to_create(existing: &[Partition], now_s: i64, ahead: u32) -> Vec<i64> {
    let today = now_s.div_euclid(DAY);
    (today..=today + i64::from(ahead))
        .filter(|day| !existing.iter().any(|p| p.holds(day * DAY)))
        .collect()
}

/// The start of the oldest day that is kept: rows created before it are older than the
/// retention.
pub fn cutoff(now_s: i64, retention_days: u32) -> i64 {
    (now_s.div_euclid(DAY) - i64::from(retention_days)) * DAY
}

/// The partitions every row of which is older than the retention (oldest first): those that
/// end at or before the cutoff. A partition that reaches past it is kept whole.
pub fn prunable(existing: &[Partition], now_s: i64, retention_days: u32) -> Vec<Partition> {
    let cutoff = cutoff(now_s, retention_days);
    let mut out: Vec<Partition> = existing
        .iter()
        .filter(|p| p.to.is_some_and(|t| t <= cutoff))
        .cloned()
        .collect();
    out.sort_by_key(|p| p.to);
    out
}

/// `2026-11-24` for a Unix day number.
fn day_text(day: i64) -> String {
    let secs = u64::try_from(day * DAY).unwrap_or(0);
    let mut text = humantime::format_rfc3339(UNIX_EPOCH + Duration::from_secs(secs)).to_string();
    text.truncate(10);
    text
}

/// `transactions_p20261124` for the table and day.
fn partition_name(table: &str, day: i64) -> String {
    format!("{table}_p{}", day_text(day).replace('-', ""))
}

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The partitions of `table` and their bounds, as PostgreSQL states them.
pub async fn list(
    client: &impl tokio_postgres::GenericClient,
    table: &str,
) -> Result<Vec<Partition>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT c.relname::text,
                    extract(epoch FROM (regexp_match(b, 'FROM \\(''([^'']+)''\\)'))[1]::timestamptz)::bigint,
                    extract(epoch FROM (regexp_match(b, 'TO \\(''([^'']+)''\\)'))[1]::timestamptz)::bigint
             FROM pg_inherits i
             JOIN pg_class c ON c.oid = i.inhrelid
             CROSS JOIN LATERAL pg_get_expr(c.relpartbound, c.oid) AS b
             WHERE i.inhparent = $1::text::regclass
             ORDER BY 3 NULLS LAST",
            &[&table],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Partition {
            name: r.get(0),
            from: r.get(1),
            to: r.get(2),
        })
        .collect())
}

/// Creates the missing partitions of every partitioned table for today and `ahead` days
/// after; answers the names created.
pub async fn create_ahead(
    client: &mut Client,
    ahead: u32,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&PARTITIONS_LOCK])
        .await?;
    let now = now_s();
    let mut created = Vec::new();
    for table in TABLES {
        let existing = list(&tx, table.name).await?;
        for day in days_to_create(&existing, now, ahead) {
            let name = partition_name(table.name, day);
            tx.batch_execute(&format!(
                "CREATE TABLE {name} PARTITION OF {} \
                 FOR VALUES FROM ('{} 00:00:00+00') TO ('{} 00:00:00+00') \
                 WITH (fillfactor = {})",
                table.name,
                day_text(day),
                day_text(day + 1),
                table.fillfactor
            ))
            .await?;
            created.push(name);
        }
    }
    tx.commit().await?;
    Ok(created)
}

/// Keeps the partitions `ahead` days ahead every hour until the process ends (and deletes the
/// limits' day totals no period reads any more, [`FORGET_OLD_USAGE`]), and every minute takes
/// statistics of tables that have rows but none yet ([`analyze_new`]); a failure is logged and
/// tried again the next time (there are `ahead` days of slack).
pub fn spawn_job(pool: deadpool_postgres::Pool, ahead: u32) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(STATISTICS_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ticks: u64 = 0;
        loop {
            every.tick().await;
            if pool.is_closed() {
                return; // the gateway stopped
            }
            let mut client = match pool.get().await {
                Ok(client) => client,
                Err(error) => {
                    tracing::warn!(%error, "partitions: no connection; retrying");
                    continue;
                }
            };
            match analyze_new(&**client).await {
                Ok(names) if !names.is_empty() => {
                    tracing::info!(?names, "statistics taken of tables that had none")
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "partitions: analyze failed; retrying"),
            }
            ticks += 1;
            if (ticks - 1) % CREATE_EVERY_TICKS != 0 {
                continue;
            }
            match create_ahead(&mut client, ahead).await {
                Ok(names) if !names.is_empty() => tracing::info!(?names, "partitions created"),
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, "partitions: creation failed; retrying in an hour")
                }
            }
            if let Err(error) = client.execute(FORGET_OLD_USAGE, &[]).await {
                tracing::warn!(%error, "limits' old day totals not deleted; retrying in an hour");
            }
        }
    })
}

/// Day totals of limited players (`rg_usage`) from before the earliest day a limit's period can
/// start now (this month or this week): no limit reads them again.
pub const FORGET_OLD_USAGE: &str = "DELETE FROM rg_usage
     WHERE day < (least(date_trunc('month', now() AT TIME ZONE 'UTC'),
                        date_trunc('week', now() AT TIME ZONE 'UTC')))::date";

/// How often the job looks for tables without statistics (a new day's partition that began
/// receiving rows); partitions are created ahead every `CREATE_EVERY_TICKS` of these (an hour).
const STATISTICS_EVERY: Duration = Duration::from_secs(60);
const CREATE_EVERY_TICKS: u64 = 60;

/// The wallet path's tables and every partition of the partitioned ones that hold rows but
/// were never analyzed (by anyone, autovacuum included), analyzed now; their names. The lanes'
/// statements do not depend on statistics (`store::STATEMENTS`), but the back office's and the
/// reports' queries do, and autovacuum takes a minute or more to look at a new partition.
pub async fn analyze_new(
    client: &impl tokio_postgres::GenericClient,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT s.relid::regclass::text FROM pg_stat_user_tables s
             WHERE s.last_analyze IS NULL AND s.last_autoanalyze IS NULL
               AND s.n_mod_since_analyze > 0
               AND (s.relname IN ('players', 'wallets', 'rounds', 'transaction_keys')
                    OR s.relid IN (SELECT inhrelid FROM pg_inherits
                                   WHERE inhparent IN ('transactions'::regclass,
                                                       'callback_segments'::regclass)))
             ORDER BY 1",
            &[],
        )
        .await?;
    let names: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    for name in &names {
        // The name comes from the catalog, quoted as an identifier by `regclass`.
        client.batch_execute(&format!("ANALYZE {name}")).await?;
    }
    Ok(names)
}

/// What pruning did (or, dry, would do) to one partition.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Pruned {
    pub table: String,
    pub partition: String,
    /// Rows it held.
    pub rows: i64,
    /// Where its rows were written first (CSV with a header), if archived.
    pub archive: Option<PathBuf>,
    /// Bets still open in it (ledger partitions). A partition holding any is kept whole: a
    /// refund or win of one of them must find it, not a tombstone.
    pub open_bets: i64,
    /// Whether it was dropped (false: a dry run, or open bets held it).
    pub dropped: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    #[error("database: {0}")]
    Database(#[from] tokio_postgres::Error),
    #[error("archive {path}: {source}")]
    Archive {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("retention of {0} days refused: at least {RETENTION_DAYS_MIN}")]
    Retention(u32),
}

/// Drops every partition older than `retention_days` (see [`prunable`]) that holds no open
/// bet, oldest first, one transaction each: its rows copied to `archive` first (if given), its
/// ledger totals added to `ledger_pruned`, the closed rounds older than it deleted; its
/// idempotency keys are kept, so none of its transactions is ever settled again. `dry_run`
/// only reports. Never touches a row younger than the retention.
pub async fn prune(
    client: &mut Client,
    retention_days: u32,
    archive: Option<&Path>,
    dry_run: bool,
) -> Result<Vec<Pruned>, PruneError> {
    if retention_days < RETENTION_DAYS_MIN {
        return Err(PruneError::Retention(retention_days));
    }
    let now = now_s();
    let mut done = Vec::new();
    for table in TABLES {
        for partition in prunable(&list(&*client, table.name).await?, now, retention_days) {
            done.push(prune_one(client, table.name, &partition, archive, dry_run).await?);
        }
    }
    Ok(done)
}

async fn prune_one(
    client: &mut Client,
    table: &str,
    partition: &Partition,
    archive: Option<&Path>,
    dry_run: bool,
) -> Result<Pruned, PruneError> {
    let name = &partition.name;
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&PARTITIONS_LOCK])
        .await?;
    // Dropping waits for the batches using the table; a long wait would hold them up behind it.
    tx.batch_execute("SET LOCAL lock_timeout = '5s'").await?;
    let rows: i64 = tx
        .query_one(&format!("SELECT count(*) FROM {name}"), &[])
        .await?
        .get(0);
    let open_bets: i64 = if table == "transactions" {
        tx.query_one(
            &format!("SELECT count(*) FROM {name} WHERE kind = 'bet' AND state = 'open'"),
            &[],
        )
        .await?
        .get(0)
    } else {
        0
    };
    let mut pruned = Pruned {
        table: table.to_string(),
        partition: name.clone(),
        rows,
        archive: None,
        open_bets,
        dropped: false,
    };
    if open_bets > 0 {
        tracing::warn!(
            partition = %name,
            open_bets,
            "partition kept: it holds open bets (settle or refund them, then prune again)"
        );
        return Ok(pruned);
    }
    if dry_run {
        return Ok(pruned);
    }
    if let Some(dir) = archive {
        let path = dir.join(format!("{name}.csv"));
        copy_out(&tx, name, &path).await?;
        pruned.archive = Some(path);
    }
    if table == "transactions" {
        keep_ledger_totals(&tx, partition).await?;
    }
    tx.batch_execute(&format!("DROP TABLE {name}")).await?;
    tx.commit().await?;
    pruned.dropped = true;
    tracing::info!(table, partition = %name, rows, "partition pruned");
    Ok(pruned)
}

/// Before a ledger partition goes: its per-wallet totals are added to `ledger_pruned` (so
/// reconciliation stays exact) and its closed rounds are deleted.
async fn keep_ledger_totals(
    tx: &tokio_postgres::Transaction<'_>,
    partition: &Partition,
) -> Result<(), PruneError> {
    let name = &partition.name;
    let to = partition
        .to
        .map(|t| UNIX_EPOCH + Duration::from_secs(u64::try_from(t).unwrap_or(0)));
    tx.execute(
        &format!(
            "INSERT INTO ledger_pruned AS l (player_id, currency, real_delta, bonus_delta, rows,
                                             through)
             SELECT player_id, currency, sum(real_delta), sum(bonus_delta), count(*), $1
             FROM {name} GROUP BY player_id, currency
             ON CONFLICT (player_id, currency) DO UPDATE SET
                 real_delta = l.real_delta + excluded.real_delta,
                 bonus_delta = l.bonus_delta + excluded.bonus_delta,
                 rows = l.rows + excluded.rows,
                 through = greatest(l.through, excluded.through)"
        ),
        &[&to],
    )
    .await?;
    // The day's idempotency keys stay: a retry or a replay of one of its transactions
    // finds its key without a ledger row and is refused for good, never settled again.
    tx.execute(
        "DELETE FROM rounds WHERE closed AND created_at < $1",
        &[&to],
    )
    .await?;
    Ok(())
}

/// Writes the partition's rows to `path` as CSV with a header (a file that exists is refused:
/// an archive is never overwritten).
async fn copy_out(
    tx: &tokio_postgres::Transaction<'_>,
    name: &str,
    path: &Path,
) -> Result<(), PruneError> {
    use futures_util::StreamExt;
    use std::io::Write;
    let archive_error = |source| PruneError::Archive {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(archive_error)?;
    let stream = tx
        .copy_out(&format!("COPY {name} TO STDOUT (FORMAT csv, HEADER)"))
        .await?;
    let mut stream = std::pin::pin!(stream);
    while let Some(chunk) = stream.next().await {
        file.write_all(&chunk?).map_err(archive_error)?;
    }
    file.sync_all().map_err(archive_error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(name: &str, from: Option<i64>, to: Option<i64>) -> Partition {
        Partition {
            name: name.into(),
            from,
            to,
        }
    }

    // 2026-11-23 12:00 UTC.
    const NOW: i64 = 1_795_392_000 + 12 * 3_600;

    #[test]
    fn days_and_names_are_utc() {
        assert_eq!(day_text(NOW.div_euclid(DAY)), "2026-11-23");
        assert_eq!(
            partition_name("transactions", NOW / DAY + 1),
            "transactions_p20261124"
        );
        assert_eq!(cutoff(NOW, 120), (NOW / DAY - 120) * DAY);
    }

    #[test]
    fn missing_days_from_today_on_are_created_and_covered_ones_are_not() {
        let today = NOW / DAY;
        // The initial partition reaches to tomorrow; one day after it exists already.
        let existing = [
            part("initial", None, Some((today + 1) * DAY)),
            part("p2", Some((today + 2) * DAY), Some((today + 3) * DAY)),
        ];
        assert_eq!(
            days_to_create(&existing, NOW, 3),
            [today + 1, today + 3],
            "today is covered, a gap is filled"
        );
        assert_eq!(days_to_create(&[], NOW, 0), [today]);
        // After a long stop: the past is not created, only today on.
        let stale = [part(
            "old",
            Some((today - 9) * DAY),
            Some((today - 8) * DAY),
        )];
        assert_eq!(days_to_create(&stale, NOW, 1), [today, today + 1]);
    }

    #[test]
    fn only_partitions_wholly_older_than_the_retention_are_pruned() {
        let cut = cutoff(NOW, 120);
        let existing = [
            part("younger", Some(cut), Some(cut + DAY)),
            part("straddles", Some(cut - 3_600), Some(cut + 3_600)),
            part("just_older", Some(cut - DAY), Some(cut)),
            part("initial", None, Some(cut - DAY)),
            part("open_ended", Some(cut - 2 * DAY), None),
        ];
        let names: Vec<String> = prunable(&existing, NOW, 120)
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(names, ["initial", "just_older"], "oldest first");
        // A row at the cutoff itself is as old as the retention, not older: kept.
        assert!(existing[0].holds(cut));
    }
}
