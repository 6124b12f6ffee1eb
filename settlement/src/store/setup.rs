//! Set-up and checks outside the wallet path: providers from configuration, demo players with
//! their opening deposits, a player created by the REST module, planner statistics after bulk
//! seeding, and the ledger check (every wallet equals its ledger).

use tokio_postgres::GenericClient;

/// Creates or updates a provider row from configuration; returns its id.
pub async fn upsert_provider(
    client: &impl GenericClient,
    code: &str,
    dialect: &str,
    enabled: bool,
) -> Result<i32, tokio_postgres::Error> {
    let row = client
        .query_one(
            "INSERT INTO providers (code, dialect, enabled) VALUES ($1, $2, $3)
             ON CONFLICT (code) DO UPDATE SET dialect = EXCLUDED.dialect, enabled = EXCLUDED.enabled
             RETURNING id",
            &[&code, &dialect, &enabled],
        )
        .await?;
    Ok(row.get(0))
}

/// Creates players `<prefix>1 ..= <prefix><count>` that do not exist yet, each with a wallet in
/// `currency` opened by a deposit of `opening_minor` (a ledger row, like every balance change).
/// Existing players are left alone, so this is safe at every start. Returns how many were new.
pub async fn seed_demo_players(
    client: &impl GenericClient,
    prefix: &str,
    count: u32,
    currency: &str,
    opening_minor: i64,
) -> Result<u64, tokio_postgres::Error> {
    let count = i32::try_from(count).unwrap_or(i32::MAX);
    client
        .execute(
            "WITH new_players AS (
                 INSERT INTO players (external_id)
                 SELECT $1 || g FROM generate_series(1, $2::int) AS g
                 ORDER BY g
                 ON CONFLICT (external_id) DO NOTHING
                 RETURNING id
             ), new_wallets AS (
                 INSERT INTO wallets (player_id, currency, balance)
                 SELECT id, $3, $4 FROM new_players
                 RETURNING player_id
             )
             INSERT INTO transactions (kind, outcome, player_id, currency, amount, real_delta,
                                       balance_before, balance_after, bonus_before, bonus_after)
             SELECT 'deposit', 'OK', player_id, $3, $4, $4, 0, $4, 0, 0 FROM new_wallets",
            &[&prefix, &count, &currency, &opening_minor],
        )
        .await
}

/// Marks the database as seeded by the demo (`demo_seeded`), idempotently.
pub async fn mark_demo_seeded(client: &impl GenericClient) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "INSERT INTO demo_seeded (only_row) VALUES (true) ON CONFLICT DO NOTHING",
            &[],
        )
        .await
        .map(drop)
}

/// When the demo seeded this database, if it did: its public logins and its players' money
/// are in it.
pub async fn demo_seeded_at(
    client: &impl GenericClient,
) -> Result<Option<std::time::SystemTime>, tokio_postgres::Error> {
    let row = client
        .query_opt("SELECT seeded_at FROM demo_seeded", &[])
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// Creates a player known by `external_id` with an empty wallet in `currency` (an empty
/// wallet needs no ledger row: its balance is the sum of none). `None` when the external id is
/// taken.
pub async fn create_player(
    client: &impl GenericClient,
    external_id: &str,
    currency: &str,
) -> Result<Option<i64>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "WITH new_player AS (
                 INSERT INTO players (external_id) VALUES ($1)
                 ON CONFLICT (external_id) DO NOTHING
                 RETURNING id
             ), new_wallet AS (
                 INSERT INTO wallets (player_id, currency) SELECT id, $2 FROM new_player
             )
             SELECT id FROM new_player",
            &[&external_id, &currency],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// Refreshes planner statistics after bulk seeding or a migration (fresh tables look empty
/// to the planner). The lanes' statements keep their plans whatever the statistics say; the
/// back office's and the reports' queries are the ones that need them current.
pub async fn analyze(client: &impl GenericClient) -> Result<(), tokio_postgres::Error> {
    client
        .batch_execute("ANALYZE players, wallets, transactions, transaction_keys, rounds")
        .await
}

/// Wallets whose balance (or bonus) differs from the sum of their ledger rows (with what
/// pruning took out of the ledger, `ledger_pruned`): must be empty.
pub async fn ledger_mismatches(
    client: &impl GenericClient,
) -> Result<Vec<(i64, String, i64, i64)>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT w.player_id, w.currency, w.balance,
                    (coalesce(t.real, 0) + coalesce(p.real_delta, 0))::bigint
             FROM wallets w
             LEFT JOIN (SELECT player_id, currency, sum(real_delta) AS real, sum(bonus_delta) AS bonus
                        FROM transactions GROUP BY player_id, currency) t
               ON t.player_id = w.player_id AND t.currency = w.currency
             LEFT JOIN ledger_pruned p ON p.player_id = w.player_id AND p.currency = w.currency
             WHERE w.balance <> coalesce(t.real, 0) + coalesce(p.real_delta, 0)
                OR w.bonus <> coalesce(t.bonus, 0) + coalesce(p.bonus_delta, 0)
             ORDER BY w.player_id, w.currency",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect())
}
