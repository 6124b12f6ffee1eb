//! Prometheus metrics: the recorder (one per process), bucket choices, and the `/metrics`
//! rendering, which also samples gauges (queue depths, pool, dedup index) at scrape time.

use std::collections::HashMap;
use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use settlement::command::ProviderId;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder once; later gateways in the same process (tests) share it.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let seconds = [
                0.00002, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05,
                0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ];
            let sizes = [
                1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0,
            ];
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &seconds)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_size".into()), &sizes))
                .expect("bucket lists are non-empty");
            let handle = match builder.install_recorder() {
                Ok(handle) => handle,
                // Another recorder is installed (an embedding program's): render our own.
                Err(_) => PrometheusBuilder::new().build_recorder().handle(),
            };
            spawn_upkeep(handle.clone());
            handle
        })
        .clone()
}

/// Histogram samples wait in the recorder until they are folded into their buckets, which
/// only a scrape or an upkeep does: without this, a gateway nobody scrapes grows without bound
/// (and paid for fresh zeroed memory on every callback). A thread, not a task, so it outlives
/// any one runtime (tests start several).
fn spawn_upkeep(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || loop {
            std::thread::sleep(UPKEEP_EVERY);
            handle.run_upkeep();
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "no metrics upkeep thread; histograms fold only on scrape");
    }
}

const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Counters whose label values are known in advance, registered at zero so that alert
/// expressions over them (`rate(...) > 0`) have a series before the first event.
pub fn register_known_series() {
    for reason in ["overloaded", "deadline", "storage", "shutting_down"] {
        metrics::counter!("wallet_unavailable_total", "reason" => reason).increment(0);
    }
    for kind in [
        "connection",
        "conflict",
        "database",
        "invariant",
        "not_connected",
    ] {
        metrics::counter!("wallet_batch_failures_total", "kind" => kind).increment(0);
    }
    for reason in ["queue_full", "storage"] {
        metrics::counter!("wallet_trace_dropped_total", "reason" => reason).increment(0);
    }
    metrics::counter!("wallet_deadline_expired_total").increment(0);
    metrics::counter!("wallet_busy_wallet_deferrals_total").increment(0);
    metrics::counter!("wallet_trace_records_total").increment(0);
    metrics::counter!("wallet_wal_segments_written_ahead_total").increment(0);
}

/// Gauges sampled at scrape time by the caller (so this module needs no handles).
#[derive(Debug, Clone, Default)]
pub struct Gauges {
    pub queue_depths: Vec<usize>,
    /// Commands a lane's queue holds at most (the same for every lane).
    pub queue_capacity: usize,
    /// The database answered a trivial query within a second, just now.
    pub database_up: bool,
    pub pool_size: usize,
    pub pool_available: usize,
    pub dedup: crate::dedup::Snapshot,
}

/// The text exposition, with `gauges` set first.
pub fn render(handle: &PrometheusHandle, gauges: &Gauges) -> String {
    for (lane, depth) in gauges.queue_depths.iter().enumerate() {
        metrics::gauge!("wallet_settlement_queue_depth", "lane" => lane.to_string())
            .set(*depth as f64);
    }
    metrics::gauge!("wallet_settlement_queue_capacity").set(gauges.queue_capacity as f64);
    metrics::gauge!("wallet_database_up").set(if gauges.database_up { 1.0 } else { 0.0 });
    metrics::gauge!("wallet_db_pool_size").set(gauges.pool_size as f64);
    metrics::gauge!("wallet_db_pool_available").set(gauges.pool_available as f64);
    let d = &gauges.dedup;
    metrics::counter!("wallet_dedup_total", "result" => "hit").absolute(d.hits);
    metrics::counter!("wallet_dedup_total", "result" => "miss").absolute(d.misses);
    metrics::counter!("wallet_dedup_total", "result" => "coalesced").absolute(d.coalesced);
    metrics::counter!("wallet_dedup_evicted_total").absolute(d.evicted);
    metrics::gauge!("wallet_dedup_entries").set(d.entries as f64);
    handle.render()
}

/// The callbacks' metric handles, made once per label set and kept, so a callback neither
/// builds its labels (the provider's code copied) nor looks them up in the recorder's registry.
/// The label sets are bounded: providers times their actions times the outcome codes.
#[derive(Debug, Default)]
pub struct CallbackHandles {
    answered: std::sync::RwLock<HashMap<(i32, &'static str, &'static str), metrics::Counter>>,
    timers: std::sync::RwLock<HashMap<(i32, &'static str), metrics::Histogram>>,
    dedup_hits: std::sync::RwLock<HashMap<i32, metrics::Histogram>>,
}

/// What labels a callback's metrics: its provider, dialect and action.
#[derive(Debug, Clone, Copy)]
pub struct CallbackLabels<'a> {
    pub provider: ProviderId,
    pub code: &'a str,
    pub dialect: &'static str,
    pub action: &'static str,
}

impl CallbackHandles {
    /// `wallet_callbacks_total` for a callback answered with `outcome`.
    pub fn answered(&self, labels: CallbackLabels<'_>, outcome: &'static str) -> metrics::Counter {
        let key = (labels.provider.0, labels.action, outcome);
        cached(&self.answered, key, || {
            metrics::counter!(
                "wallet_callbacks_total",
                "provider" => labels.code.to_string(),
                "dialect" => labels.dialect,
                "action" => labels.action,
                "outcome" => outcome,
            )
        })
    }

    /// `wallet_callback_seconds` of a callback.
    pub fn timer(&self, labels: CallbackLabels<'_>) -> metrics::Histogram {
        cached(&self.timers, (labels.provider.0, labels.action), || {
            metrics::histogram!(
                "wallet_callback_seconds",
                "provider" => labels.code.to_string(),
                "action" => labels.action,
            )
        })
    }

    /// `wallet_dedup_hit_seconds` of a retry answered from the dedup index.
    pub fn dedup_hit(
        &self,
        provider: ProviderId,
        code: &str,
        dialect: &'static str,
    ) -> metrics::Histogram {
        cached(&self.dedup_hits, provider.0, || {
            metrics::histogram!(
                "wallet_dedup_hit_seconds",
                "provider" => code.to_string(),
                "dialect" => dialect,
            )
        })
    }
}

/// The handle under `key`, made by `make` the first time.
fn cached<K, H>(map: &std::sync::RwLock<HashMap<K, H>>, key: K, make: impl FnOnce() -> H) -> H
where
    K: std::hash::Hash + Eq,
    H: Clone,
{
    if let Some(handle) = map.read().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return handle.clone();
    }
    let mut map = map.write().unwrap_or_else(|e| e.into_inner());
    map.entry(key).or_insert_with(make).clone()
}
