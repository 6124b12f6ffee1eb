//! Forward-only migrations from `migrations/`, applied in order at start and recorded in
//! `schema_migrations`; an advisory lock makes concurrent starts apply each one exactly once.

use tokio_postgres::Client;

/// Every migration, in order. `migrations_dir_matches_this_list` keeps this true.
pub const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_create_wallets",
        include_str!("../../migrations/0001_create_wallets.sql"),
    ),
    (
        "0002_accounts",
        include_str!("../../migrations/0002_accounts.sql"),
    ),
    (
        "0003_audit_and_player_status",
        include_str!("../../migrations/0003_audit_and_player_status.sql"),
    ),
    (
        "0004_adjustments",
        include_str!("../../migrations/0004_adjustments.sql"),
    ),
    (
        "0005_payments",
        include_str!("../../migrations/0005_payments.sql"),
    ),
    (
        "0006_report_rollups",
        include_str!("../../migrations/0006_report_rollups.sql"),
    ),
    (
        "0007_managed_providers",
        include_str!("../../migrations/0007_managed_providers.sql"),
    ),
    (
        "0008_callback_segments",
        include_str!("../../migrations/0008_callback_segments.sql"),
    ),
    (
        "0009_trace_keys_for_exceptions",
        include_str!("../../migrations/0009_trace_keys_for_exceptions.sql"),
    ),
    (
        "0010_player_sets",
        include_str!("../../migrations/0010_player_sets.sql"),
    ),
    (
        "0011_time_partitions",
        include_str!("../../migrations/0011_time_partitions.sql"),
    ),
    (
        "0012_report_watermark_time",
        include_str!("../../migrations/0012_report_watermark_time.sql"),
    ),
    (
        "0013_drop_ledger_reference_index",
        include_str!("../../migrations/0013_drop_ledger_reference_index.sql"),
    ),
    (
        "0014_demo_seeded",
        include_str!("../../migrations/0014_demo_seeded.sql"),
    ),
    (
        "0015_provider_changes",
        include_str!("../../migrations/0015_provider_changes.sql"),
    ),
    (
        "0016_adjustment_and_withdrawal_keys",
        include_str!("../../migrations/0016_adjustment_and_withdrawal_keys.sql"),
    ),
    (
        "0017_totp_lockout",
        include_str!("../../migrations/0017_totp_lockout.sql"),
    ),
    (
        "0018_rg_usage",
        include_str!("../../migrations/0018_rg_usage.sql"),
    ),
    (
        "0019_ledger_round_index_order",
        include_str!("../../migrations/0019_ledger_round_index_order.sql"),
    ),
    (
        "0020_rounds_key_round_first",
        include_str!("../../migrations/0020_rounds_key_round_first.sql"),
    ),
];

/// Taken with `pg_advisory_xact_lock` so two gateways starting at once apply in turn.
const MIGRATION_LOCK_KEY: i64 = 0x7761_6c6c_6574; // "wallet"

/// Applies the migrations not yet recorded; returns the names it applied.
pub async fn migrate(client: &mut Client) -> Result<Vec<&'static str>, tokio_postgres::Error> {
    migrate_through(client, MIGRATIONS.len()).await
}

/// Applies the first `count` migrations not yet recorded (upgrade tests stop before a
/// migration, write data in the old shape, then migrate the rest).
pub async fn migrate_through(
    client: &mut Client,
    count: usize,
) -> Result<Vec<&'static str>, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await?;
    // Under the lock: `IF NOT EXISTS` alone is not safe against a concurrent create.
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             name text PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .await?;
    let applied: Vec<String> = tx
        .query("SELECT name FROM schema_migrations", &[])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut newly = Vec::new();
    for (name, sql) in &MIGRATIONS[..count.min(MIGRATIONS.len())] {
        if applied.iter().any(|a| a == name) {
            continue;
        }
        tx.batch_execute(sql).await?;
        tx.execute("INSERT INTO schema_migrations (name) VALUES ($1)", &[name])
            .await?;
        tracing::info!(migration = name, "applied");
        newly.push(*name);
    }
    tx.commit().await?;
    Ok(newly)
}

/// Creates database `name` if it does not exist (embedded clusters start with none).
pub async fn ensure_database(admin: &Client, name: &str) -> Result<(), tokio_postgres::Error> {
    let exists = admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await?
        .is_some();
    if !exists {
        let sql = format!("CREATE DATABASE {}", quote_ident(name));
        match admin.batch_execute(&sql).await {
            Ok(()) => {}
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Quotes an SQL identifier (doubling embedded quotes).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_dir_matches_this_list() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".sql"))
            .map(|n| n.trim_end_matches(".sql").to_string())
            .collect();
        on_disk.sort();
        let listed: Vec<String> = MIGRATIONS.iter().map(|(n, _)| n.to_string()).collect();
        assert_eq!(
            on_disk, listed,
            "every file in migrations/ is listed, in order"
        );
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("wallet"), "\"wallet\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
