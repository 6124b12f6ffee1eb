//! The handles every request shares: configuration, the database pool, the provider registry,
//! the settlement lanes, the dedup index, the trace writer, the metrics handle and the readiness flag. Built by
//! `app` at start-up.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use settlement::batch::Settler;

use crate::config::Config;
use crate::registry::Registry;

pub struct State {
    pub config: Arc<Config>,
    pub pool: Pool,
    /// The providers in force: the configuration's, plus those managed through the back
    /// office (swapped whole when they change; see `app::keep_providers_current`).
    pub providers: std::sync::RwLock<Arc<Registry>>,
    /// Notified by the REST module when a managed provider changed.
    pub providers_changed: Arc<tokio::sync::Notify>,
    pub settler: Settler,
    pub dedup: crate::dedup::Index,
    /// Signatures that do not bind their method, with the method each was seen on.
    pub signed: crate::provider::signed::SignedCalls,
    /// Callbacks as received and answered, for the back office (see `trace`).
    pub trace: crate::trace::Tracer,
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    /// The callbacks' metric handles, made once per label set.
    pub callback_metrics: crate::metrics::CallbackHandles,
    pub ready: AtomicBool,
    /// The REST module under `/api/`, when `rest.enabled`.
    pub api: Option<rest::Api>,
}

impl State {
    /// The provider with this code, as configured now.
    pub fn provider(&self, code: &str) -> Option<Arc<crate::registry::Provider>> {
        let registry = self.providers.read().unwrap_or_else(|e| e.into_inner());
        registry.get(code).cloned()
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Called once the listener has closed and open requests are done: settles what is still
    /// queued through a last commit, then closes the pool.
    pub async fn shutdown(&self) {
        self.ready.store(false, Ordering::Release);
        self.settler.drain().await;
        self.trace.flush().await;
        self.pool.close();
    }

    /// Marks the gateway not ready (shutdown has begun).
    pub fn draining(&self) {
        self.ready.store(false, Ordering::Release);
    }

    /// Gauges sampled now, for `/metrics` (the database is asked, within a second).
    pub async fn gauges(&self) -> crate::metrics::Gauges {
        let database_up = self.database_up().await;
        let pool = self.pool.status();
        crate::metrics::Gauges {
            queue_depths: self.settler.queue_depths(),
            queue_capacity: self.config.settlement.queue_len_max,
            database_up,
            pool_size: pool.size,
            pool_available: pool.available,
            dedup: self.dedup.snapshot(),
        }
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
