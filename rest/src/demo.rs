//! Demo accounts for `config/demo.toml`: an admin with a known password and TOTP secret, and
//! a login for every demo player. Public values, seeded only when the demo is on.

use tokio_postgres::GenericClient;

use crate::auth::password::Hasher;
use crate::envelope::ApiError;

/// The demo's accounts.
#[derive(Debug, Clone)]
pub struct Demo {
    pub admin_username: String,
    pub admin_password: String,
    pub admin_totp_secret: String,
    /// Players whose external id starts with this get a login (their username).
    pub player_prefix: String,
    pub player_password: String,
}

/// Creates the demo accounts that are missing (idempotent); returns how many it created.
/// The players' accounts share one hash of the one public demo password: hashing it a
/// thousand times over would only slow the start.
pub async fn seed(
    client: &impl GenericClient,
    hasher: &Hasher,
    demo: &Demo,
) -> Result<u64, SeedError> {
    let missing: i64 = client
        .query_one(
            "SELECT count(*) FROM players p
             WHERE starts_with(p.external_id, $1)
               AND NOT EXISTS (SELECT 1 FROM accounts a WHERE a.player_id = p.id)",
            &[&demo.player_prefix],
        )
        .await?
        .get(0);
    let mut created = 0;
    if missing > 0 {
        let hash = hasher.hash(demo.player_password.clone()).await?;
        created += client
            .execute(
                "INSERT INTO accounts (username, password_hash, role, player_id)
                 SELECT p.external_id, $2, 'player', p.id FROM players p
                 WHERE starts_with(p.external_id, $1)
                   AND NOT EXISTS (SELECT 1 FROM accounts a WHERE a.player_id = p.id)
                 ORDER BY p.id
                 ON CONFLICT DO NOTHING",
                &[&demo.player_prefix, &hash],
            )
            .await?;
    }
    let admin_exists = client
        .query_opt(
            "SELECT 1 FROM accounts WHERE username = $1",
            &[&demo.admin_username],
        )
        .await?
        .is_some();
    if !admin_exists {
        let hash = hasher.hash(demo.admin_password.clone()).await?;
        created += client
            .execute(
                "INSERT INTO accounts (username, password_hash, role, totp_secret, totp_enabled)
                 VALUES ($1, $2, 'admin', $3, true) ON CONFLICT DO NOTHING",
                &[&demo.admin_username, &hash, &demo.admin_totp_secret],
            )
            .await?;
    }
    Ok(created)
}

#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("database: {0}")]
    Database(#[from] tokio_postgres::Error),
    #[error("password hashing: {}", .0.message)]
    Hashing(ApiError),
}

impl From<ApiError> for SeedError {
    fn from(e: ApiError) -> SeedError {
        SeedError::Hashing(e)
    }
}
