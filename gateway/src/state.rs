//! The handles every request shares: configuration, the database pool, the provider registry
//! and the readiness flag.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};

use crate::app::Database;
use crate::config::Config;
use crate::provider::Registry;
use settlement::batch::{self, Settler};

pub struct State {
    pub config: Arc<Config>,
    pub pool: Pool,
    pub providers: Registry,
    pub settler: Settler,
    pub dedup: crate::dedup::Index,
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    ready: AtomicBool,
}

impl State {
    /// Migrates the database, registers the configured providers, seeds the demo players and
    /// builds the shared handles.
    pub async fn prepare(config: Arc<Config>, database: &Database) -> anyhow::Result<Arc<State>> {
        let manager = Manager::from_config(
            database.config.clone(),
            tokio_postgres::NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(config.database.pool_size_max)
            .wait_timeout(Some(Duration::from_millis(
                config.database.connect_timeout_ms,
            )))
            .create_timeout(Some(Duration::from_millis(
                config.database.connect_timeout_ms,
            )))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .context("database pool")?;

        let mut client = pool.get().await.context("connect to the database")?;
        let applied = settlement::schema::migrate(&mut client)
            .await
            .context("apply migrations")?;
        if !applied.is_empty() {
            tracing::info!(?applied, "migrations applied");
        }

        let mut ids = HashMap::new();
        for provider in &config.providers {
            let id = settlement::store::upsert_provider(
                &**client,
                &provider.code,
                &provider.dialect,
                provider.enabled,
            )
            .await
            .with_context(|| format!("register provider {}", provider.code))?;
            ids.insert(provider.code.clone(), id);
        }
        let providers = Registry::build(&config, &ids).map_err(anyhow::Error::msg)?;

        let demo = &config.demo;
        if demo.enabled {
            let currency =
                settlement::money::Currency::from_code(&demo.currency).context("demo.currency")?;
            let opening = settlement::money::parse_minor(&demo.opening_balance, currency.exponent)?;
            let created = settlement::store::seed_demo_players(
                &**client,
                &demo.player_prefix,
                demo.players,
                currency.code(),
                opening,
            )
            .await
            .context("seed demo players")?;
            if created > 0 {
                settlement::store::analyze(&**client)
                    .await
                    .context("analyze after seeding")?;
            }
            tracing::info!(created, total = demo.players, "demo players ready");
        }
        drop(client);

        let st = &config.settlement;
        let settler = Settler::start(
            database.config.clone(),
            batch::Options {
                lanes: st.lanes,
                batch_len_max: st.batch_len_max,
                batch_wait_max: Duration::from_micros(st.batch_wait_max_us),
                queue_len_max: st.queue_len_max,
                deadline: Duration::from_millis(st.callback_deadline_ms),
            },
        )
        .await
        .context("open settlement connections")?;

        Ok(Arc::new(State {
            config: config.clone(),
            pool,
            providers,
            settler,
            dedup: crate::dedup::Index::new(config.dedup.entries_max, config.dedup.bytes_max),
            metrics: crate::metrics::install(),
            ready: AtomicBool::new(true),
        }))
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Called once the listener has closed and open requests are done: settles what is still
    /// queued through a last commit, then closes the pool.
    pub async fn shutdown(&self) {
        self.ready.store(false, Ordering::Release);
        self.settler.drain().await;
        self.pool.close();
    }

    /// Marks the gateway not ready (shutdown has begun).
    pub fn draining(&self) {
        self.ready.store(false, Ordering::Release);
    }

    /// `true` when the database answers a trivial query within a second.
    pub async fn database_up(&self) -> bool {
        let check = async {
            let client = self.pool.get().await.ok()?;
            client.simple_query("SELECT 1").await.ok()
        };
        matches!(
            tokio::time::timeout(Duration::from_secs(1), check).await,
            Ok(Some(_))
        )
    }
}
