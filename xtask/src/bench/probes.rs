//! What the bench reads besides the load generator: Prometheus text, `pg_stat_statements`, the
//! disk's sync-write latency, WAL position, pgbench on the lanes' own statements, CPU pressure.
#![allow(clippy::float_arithmetic)] // rates and percentiles, never money

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::bench::harness::*;

/// The embedded PostgreSQL loads `pg_stat_statements` (the sections that time statements).
pub(crate) const STATEMENT_STATS: (&str, &str) = (
    "GATEWAY__EMBEDDED__SETTINGS__SHARED_PRELOAD_LIBRARIES",
    "pg_stat_statements",
);

/// The statements that took most of PostgreSQL's time since the last reset: their text's start
/// (whitespace folded), mean µs per call and calls.
pub(crate) fn top_statements(gw: &Gateway) -> anyhow::Result<Vec<(String, (f64, f64))>> {
    let rows = psql(
        gw,
        "SELECT left(translate(regexp_replace(query, '\\s+', ' ', 'g'), '|', '/'), 60), total_exec_time * 1000 / calls,
                calls
         FROM pg_stat_statements WHERE calls > 0 ORDER BY total_exec_time DESC LIMIT 14",
    )?;
    rows.lines()
        .map(|line| {
            let mut cells = line.split('|');
            let query = cells.next().unwrap_or_default().replace('`', "'");
            let mean: f64 = cells.next().unwrap_or_default().parse()?;
            let calls: f64 = cells.next().unwrap_or_default().parse()?;
            Ok((query, (mean, calls)))
        })
        .collect()
}

pub(crate) use harness::prom::histogram;

/// The upper bound of the bucket holding quantile `q` of the samples recorded between two
/// scrapes of histogram `name` (`None` without samples).
pub(crate) fn quantile_bound(before: &str, after: &str, name: &str, q: f64) -> Option<String> {
    let earlier: BTreeMap<String, f64> = histogram(before, name).into_iter().collect();
    let delta: Vec<(String, f64)> = histogram(after, name)
        .into_iter()
        .map(|(le, v)| {
            let d = v - earlier.get(&le).copied().unwrap_or(0.0);
            (le, d)
        })
        .collect();
    let total = delta.last()?.1;
    if total <= 0.0 {
        return None;
    }
    delta
        .into_iter()
        .find(|(_, cumulative)| *cumulative >= q * total)
        .map(|(le, _)| le)
}

/// A counter or gauge summed over its label sets.
pub(crate) fn metric(metrics: &str, line_prefix: &str) -> u64 {
    harness::prom::sum(metrics, line_prefix)
}

/// `sql` with its parameters `$1`, `$2`, ... replaced by pgbench variables (`-M prepared`
/// binds each as a parameter again), so pgbench runs the lanes' own statement text.
pub(crate) fn bind(sql: &str, vars: &[&str]) -> String {
    let mut out = sql.to_string();
    // From the highest: `$1` must not take the front of `$10`.
    for (n, var) in vars.iter().enumerate().rev() {
        out = out.replace(&format!("${}", n + 1), &format!(":{var}"));
    }
    assert!(!out.contains('$'), "a parameter left unbound in {out}");
    out
}

/// pgbench's view of one batch of 64 bets by players `:base` on, built from the lanes' own
/// statements (`settlement::store`, the same text they prepare, so the two cannot drift), in
/// their order: ledger ids, the wallet lock, players, the lookups by key (ledger rows, rollbacks
/// naming them, rounds, limits), then the writes. The keys are new, as a bet's are. The
/// `\gset` lines only build the arrays the lanes would send (one small query each). With
/// `reads` false: the lock and the writes alone.
pub(crate) fn pgbench_batch_script(reads: bool) -> String {
    use settlement::store::{
        INSERT_LEDGER, INSERT_ROUNDS, LIMITS, LOCK_WALLETS, LOOKUP_TXS, PLAYERS, RESERVE_IDS,
        ROUNDS, TOMBSTONES, UPDATE_WALLETS,
    };
    let mut script = String::from(
        "\\set base random(1, 99000)\n\\set n 64\nBEGIN;\n\
         SELECT array_agg(p)::text AS players\n\
         FROM generate_series(:base::int, :base::int + :n::int - 1) AS p \\gset\n",
    );
    let mut sql = |text: String| {
        script.push_str(&text);
        script.push_str(if text.ends_with("\\gset") {
            "\n"
        } else {
            ";\n"
        });
    };
    sql(format!(
        "SELECT x::text AS ids FROM ({}) AS s(x) \\gset",
        bind(RESERVE_IDS, &["n"])
    ));
    sql(bind(LOCK_WALLETS, &["players"]));
    if reads {
        sql(bind(PLAYERS, &["players"]));
        sql(
            "SELECT array_agg(1)::text AS providers, array_agg('pgb-' || id)::text AS tx_ids,
                    array_agg(p)::text AS round_players
             FROM unnest(:ids::bigint[], :players::bigint[]) AS u(id, p) \\gset"
                .to_string(),
        );
        sql(bind(LOOKUP_TXS, &["providers", "tx_ids"]));
        sql(bind(TOMBSTONES, &["providers", "tx_ids"]));
        sql(bind(ROUNDS, &["providers", "round_players", "tx_ids"]));
        sql(bind(LIMITS, &["players"]));
    }
    let ledger: Vec<String> = (1..=19).map(|n| format!("l{n}")).collect();
    sql("SELECT array_agg(id)::text AS l1, array_agg(1)::text AS l2,
                array_agg('pgb-' || id)::text AS l3, array_agg('bet'::text)::text AS l4,
                array_agg('OK'::text)::text AS l5, array_agg('open'::text)::text AS l6,
                array_agg(p)::text AS l7, array_agg('EUR'::text)::text AS l8,
                array_agg('pgb-' || id)::text AS l9, array_agg('slot-1'::text)::text AS l10,
                array_agg(1)::text AS l11, array_agg(-1)::text AS l12, array_agg(0)::text AS l13,
                array_agg(1000)::text AS l14, array_agg(999)::text AS l15,
                array_agg(0)::text AS l16, array_agg(0)::text AS l17,
                array_agg(NULL::text)::text AS l18,
                array_agg(decode(repeat('ab', 16), 'hex'))::text AS l19
         FROM unnest(:ids::bigint[], :players::bigint[]) AS u(id, p) \\gset"
        .to_string());
    sql(bind(
        INSERT_LEDGER,
        &ledger.iter().map(String::as_str).collect::<Vec<_>>(),
    ));
    sql(
        "SELECT array_agg(ctid::text)::text AS w1, array_agg(balance - 1)::text AS w2,
                array_agg(bonus)::text AS w3, array_agg(needs_reconciliation)::text AS w4
         FROM wallets WHERE player_id = ANY(:players::bigint[]) \\gset"
            .to_string(),
    );
    sql(bind(UPDATE_WALLETS, &["w1", "w2", "w3", "w4"]));
    sql(
        "SELECT array_agg(1)::text AS r1, array_agg('pgb-' || id)::text AS r3,
                array_agg('slot-1'::text)::text AS r4, array_agg(false)::text AS r5
         FROM unnest(:ids::bigint[]) AS u(id) \\gset"
            .to_string(),
    );
    sql(bind(INSERT_ROUNDS, &["r1", "players", "r3", "r4", "r5"]));
    script.push_str("COMMIT;\n");
    script
}

/// Synchronous write latency of the disk under the data folder, measured the way a commit
/// uses it: an 8 KiB write then `fdatasync`, 1,000 a second (about what the lanes' commits
/// ask at 10,000 callbacks/s). A commit cannot be acknowledged faster than this.
pub(crate) struct DiskProbe {
    pub(crate) writes: usize,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) max_ms: f64,
    pub(crate) over_50ms: usize,
    pub(crate) stalled_s: f64,
}

pub(crate) fn disk_probe(dir: &Path, seconds: u64) -> anyhow::Result<DiskProbe> {
    use std::os::unix::fs::FileExt as _;
    const BLOCK: u64 = 8192;
    const SPAN: u64 = 16 << 20;
    std::fs::create_dir_all(dir)?;
    let path = dir.join("disk-probe");
    let file = std::fs::File::create(&path)?;
    file.set_len(SPAN)?;
    file.sync_all()?;
    let block = vec![0x5a_u8; BLOCK as usize];
    let mut latencies = Vec::new();
    let started = Instant::now();
    let end = Duration::from_secs(seconds);
    let mut offset = 0;
    for i in 0_u32.. {
        let due = Duration::from_millis(u64::from(i));
        if due >= end {
            break;
        }
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
        let write = Instant::now();
        file.write_all_at(&block, offset)?;
        file.sync_data()?;
        latencies.push(write.elapsed().as_secs_f64() * 1000.0);
        offset = (offset + BLOCK) % SPAN;
    }
    drop(file);
    let _ = std::fs::remove_file(&path);
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    Ok(DiskProbe {
        writes: latencies.len(),
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        max_ms: at(1.0),
        over_50ms: latencies.iter().filter(|&&ms| ms > 50.0).count(),
        stalled_s: latencies.iter().filter(|&&ms| ms > 20.0).sum::<f64>() / 1000.0,
    })
}

/// Rows a second that pgbench gets through with `script` (64 rows per transaction, 2 clients).
/// The cluster's current WAL position, in bytes.
pub(crate) fn wal_lsn(gateway: &Gateway) -> anyhow::Result<u64> {
    let lsn = psql(
        gateway,
        "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint",
    )?;
    lsn.parse()
        .with_context(|| format!("psql answered {lsn:?}"))
}

pub(crate) fn pgbench(
    gateway: &Gateway,
    name: &str,
    script: &str,
    seconds: u64,
) -> anyhow::Result<f64> {
    let path = std::env::temp_dir().join(format!("wallet-{name}.pgbench"));
    std::fs::write(&path, script)?;
    let out = Command::new("pgbench")
        .args([
            "-n",
            "-M",
            "prepared",
            "-c",
            "2",
            "-j",
            "2",
            "-T",
            &seconds.to_string(),
        ])
        .arg("-h")
        .arg(&gateway.socket_dir)
        .args(["-U", "wallet", "-f"])
        .arg(&path)
        .arg("wallet")
        .output()
        .context("run pgbench (Debian: apt-get install postgresql-client)")?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        bail!(
            "pgbench {name} failed: {}{}",
            text,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let tps: f64 = text
        .lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l.split_whitespace().nth(2)?.parse().ok())
        .context("pgbench tps")?;
    Ok(tps * 64.0)
}

/// The kernel's CPU pressure (`/proc/pressure/cpu`) over 10 s with nothing of the bench
/// running: above a few percent, the machine's cores were busy with something else (another
/// guest on the host), and every figure of the run is lower for it.
pub(crate) fn cpu_pressure() -> String {
    std::thread::sleep(Duration::from_secs(10));
    let text = std::fs::read_to_string("/proc/pressure/cpu").unwrap_or_default();
    let avg10 = text
        .lines()
        .find(|l| l.starts_with("some"))
        .and_then(|l| l.split_whitespace().find_map(|f| f.strip_prefix("avg10=")));
    match avg10 {
        Some(share) => format!(
            "CPU pressure with the machine idle before the runs: some task waited for a core \
             {share} % of 10 s (`/proc/pressure/cpu`; near 0 on a quiet machine)."
        ),
        None => "CPU pressure: not available here (`/proc/pressure/cpu`).".to_string(),
    }
}
