//! Start-up and shutdown of the whole gateway: database (embedded or external), migrations,
//! providers and demo seeding, settlement lanes, the HTTP server; then the reverse on shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use std::collections::HashMap;

use anyhow::Context;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use settlement::batch::{self, Settler};
use tokio::net::TcpListener;

use crate::config::Config;
use crate::registry::Registry;
use crate::server;
use crate::state::State;

/// What the command line (or a test) adds to the configuration.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
}

/// The database the gateway talks to, and the embedded cluster behind it if there is one.
pub struct Database {
    pub config: tokio_postgres::Config,
    /// Kept alive (and restarted whenever it exits on its own) until shutdown; dropping it
    /// stops the cluster.
    pub embedded: Option<pgembed::Supervised>,
}

impl Database {
    /// The external server of `DATABASE_URL` / `database.url`, else the embedded cluster
    /// (initialised on first use), with the gateway's database created if missing.
    pub async fn open(config: &Config, data_dir: PathBuf) -> anyhow::Result<Database> {
        if let Some(url) = config.database.resolve_url().map_err(anyhow::Error::msg)? {
            let mut pg: tokio_postgres::Config = url.parse().context("database url")?;
            pg.connect_timeout(Duration::from_millis(config.database.connect_timeout_ms));
            tracing::info!("using the external PostgreSQL server");
            return Ok(Database {
                config: pg,
                embedded: None,
            });
        }
        let mut options = pgembed::Options::new(data_dir);
        options.run_as_user = config.embedded.run_as_user.clone();
        // Defaults sized for a write-heavy ledger on one machine; `[embedded.settings]` wins.
        // Durability is not a setting: configuration refuses overrides of it, and the command
        // line (which beats postgresql.conf and ALTER SYSTEM) pins it on.
        let shared_buffers = format!("{}MB", shared_buffers_mb());
        let defaults = [
            ("shared_buffers", shared_buffers.as_str()),
            ("wal_buffers", "64MB"),
            ("max_wal_size", "8GB"),
            ("checkpoint_timeout", "15min"),
            ("max_connections", "200"),
            // Short statements, run often: compiling one costs more than running it.
            ("jit", "off"),
            // Clean shared buffers ahead of the lanes, so a lane seldom writes one out itself
            // to make room (the ledger outgrows shared_buffers within minutes at full load).
            ("bgwriter_delay", "50ms"),
            ("bgwriter_lru_maxpages", "1000"),
            ("bgwriter_lru_multiplier", "4.0"),
        ];
        let mut settings: std::collections::BTreeMap<String, String> = defaults
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        // After a checkpoint every page's first change is written whole to the WAL; compressed,
        // the commits that wait for those writes wait less (LZ4 where the server has it).
        let lz4 = pgembed::Binaries::locate().is_ok_and(|b| b.has_lz4());
        settings.insert(
            "wal_compression".into(),
            if lz4 { "lz4" } else { "pglz" }.into(),
        );
        let preallocate_mb = config.embedded.wal_preallocate_mb;
        if preallocate_mb > 0 {
            // Checkpoints keep this much WAL for reuse instead of deleting it (see below).
            settings.insert(
                "min_wal_size".into(),
                format!("{}MB", preallocate_mb.max(32)),
            );
        }
        settings.extend(config.embedded.settings_text());
        for name in crate::config::DURABILITY_SETTINGS {
            settings.insert(name.to_string(), "on".to_string());
        }
        options.settings = settings.into_iter().collect();
        let cluster = tokio::task::spawn_blocking(move || pgembed::Supervised::start(options))
            .await
            .context("embedded PostgreSQL start-up task")??;
        let admin_config: tokio_postgres::Config = cluster.connection_string("postgres").parse()?;
        let (admin, connection) = admin_config.connect(tokio_postgres::NoTls).await?;
        let driver = tokio::spawn(connection);
        settlement::schema::ensure_database(&admin, &config.database.embedded_dbname).await?;
        preallocate_wal(&admin, preallocate_mb).await?;
        drop(admin);
        let _ = driver.await;
        let pg = cluster
            .connection_string(&config.database.embedded_dbname)
            .parse()?;
        Ok(Database {
            config: pg,
            embedded: Some(cluster),
        })
    }
}

/// Fills the embedded cluster's `pg_wal` up to `mb` of segments when it holds fewer (a new
/// cluster), so the lanes' commits write into segments that exist instead of waiting, under
/// the WAL write lock, for each new one to be zero-filled (see `Embedded::wal_preallocate_mb`).
/// Each switch ends a segment and the message after it starts the next: first through the
/// segments already there ahead of the current one (recycled ones), then into new ones, which
/// PostgreSQL creates zero-filled as it would under load. The checkpoint then turns the
/// segments behind it into future ones (`min_wal_size` keeps them). Returns the new segments.
pub async fn preallocate_wal(admin: &tokio_postgres::Client, mb: u64) -> anyhow::Result<i64> {
    // The segment size, the segments there, and those of them ahead of the one being written.
    const SEGMENTS: &str = "SELECT pg_size_bytes(current_setting('wal_segment_size')), count(*), \
          count(*) FILTER (WHERE name > pg_walfile_name(pg_current_wal_insert_lsn())) \
        FROM pg_ls_waldir() WHERE name ~ '^[0-9A-F]{24}$'";
    let row = admin.query_one(SEGMENTS, &[]).await?;
    let (segment_bytes, present, ahead): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    let wanted = i64::try_from(mb * 1024 * 1024).unwrap_or(i64::MAX) / segment_bytes.max(1);
    let missing = wanted - present;
    if missing <= 0 {
        return Ok(0);
    }
    tracing::info!(
        segments = missing,
        "writing WAL ahead (a start that finds fewer segments than embedded.wal_preallocate_mb)"
    );
    let started = std::time::Instant::now();
    admin
        .batch_execute(&format!(
            "DO $$ BEGIN FOR i IN 1..{switches} LOOP \
               PERFORM pg_logical_emit_message(false, 'wallet-gateway', 'WAL preallocation'); \
               PERFORM pg_switch_wal(); \
             END LOOP; END $$",
            switches = ahead + missing
        ))
        .await
        .context("preallocate WAL")?;
    admin
        .batch_execute("CHECKPOINT")
        .await
        .context("checkpoint after preallocating WAL")?;
    let kept: i64 = admin.query_one(SEGMENTS, &[]).await?.get(1);
    tracing::info!(
        segments = missing,
        kept,
        seconds = started.elapsed().as_secs_f64(),
        "WAL preallocated"
    );
    if kept < wanted {
        tracing::warn!(
            kept,
            wanted,
            "the checkpoint removed WAL written ahead: min_wal_size or max_wal_size in \
             [embedded.settings] is below embedded.wal_preallocate_mb"
        );
    }
    Ok(missing)
}

/// How often the embedded cluster's window of WAL ahead is looked at.
const WAL_AHEAD_EVERY: Duration = Duration::from_secs(1);
/// Most segments written in one look: 32 MB a second, several times the WAL the lanes write
/// at full load, without a burst that would hold the disk from their commits' syncs.
const WAL_AHEAD_PER_LOOK: usize = 2;

/// Keeps `mb` of WAL segments ready ahead of the one being written, for as long as the gateway
/// runs, by writing the missing ones itself (`pgembed::wal`). The start's preallocation lasts
/// only minutes under load, and PostgreSQL recycles segments into future ones only when a
/// checkpoint completes (the first one near minute 28 with the defaults): in between, each new
/// segment would be zero-filled under the WAL write lock while every commit waits, a stall
/// every few seconds. Once checkpoints recycle, the window is full and this writes nothing.
async fn keep_wal_ahead(pool: Pool, pg_wal: PathBuf, mb: u64) {
    const WHERE: &str = "SELECT pg_size_bytes(current_setting('wal_segment_size')), \
        pg_walfile_name(pg_current_wal_insert_lsn())";
    let mut every = tokio::time::interval(WAL_AHEAD_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        every.tick().await;
        if pool.is_closed() {
            return; // the gateway stopped
        }
        let position = match pool.get().await {
            Ok(client) => client
                .query_one(WHERE, &[])
                .await
                .map_err(anyhow::Error::from),
            Err(error) => Err(anyhow::Error::from(error)),
        };
        let dir = pg_wal.clone();
        let written = match position {
            Ok(row) => {
                let (segment_bytes, current): (i64, String) = (row.get(0), row.get(1));
                let segment_bytes = u64::try_from(segment_bytes).unwrap_or(0).max(1);
                tokio::task::spawn_blocking(move || -> std::io::Result<usize> {
                    let window = mb * 1024 * 1024 / segment_bytes;
                    let mut written = 0;
                    for name in pgembed::wal::names_after(&current, segment_bytes, window) {
                        if written == WAL_AHEAD_PER_LOOK {
                            break;
                        }
                        if pgembed::wal::write_ahead(&dir, &name, segment_bytes)? {
                            written += 1;
                        }
                    }
                    Ok(written)
                })
                .await
                .map_err(anyhow::Error::from)
                .and_then(|r| r.map_err(anyhow::Error::from))
            }
            Err(error) => Err(error),
        };
        match written {
            Ok(n) => {
                metrics::counter!("wallet_wal_segments_written_ahead_total").increment(n as u64);
                if failing {
                    tracing::info!("WAL written ahead again");
                }
                failing = false;
            }
            Err(error) => {
                if !failing {
                    tracing::warn!(%error, "writing WAL ahead failed; retrying every second");
                }
                failing = true;
            }
        }
    }
}

/// A started gateway: its address, and the handle that stops it.
pub struct Running {
    pub addr: SocketAddr,
    /// Where `GET /metrics` is served, when `server.metrics_listen` is set.
    pub metrics_addr: Option<SocketAddr>,
    /// The shared handles, for tests and tools that look inside a running gateway.
    pub state: Arc<State>,
    database: Arc<Database>,
    shutdown: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Begins graceful shutdown and waits until everything has stopped.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        self.task.await.context("gateway task")?
    }

    /// Waits until the gateway stops by itself (after `shutdown_signal` fired).
    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await.context("gateway task")?
    }

    /// The database the gateway talks to (and its embedded cluster, if any).
    pub fn database(&self) -> &Database {
        &self.database
    }

    /// A sender that triggers graceful shutdown.
    pub fn shutdown_handle(&self) -> tokio::sync::watch::Sender<bool> {
        self.shutdown.clone()
    }
}

/// Opens the database, prepares it, binds the listener and serves in a background task.
pub async fn start(config: Config, overrides: Overrides) -> anyhow::Result<Running> {
    let mut config = config;
    if let Some(listen) = overrides.listen {
        config.server.listen = listen;
    }
    let data_dir = overrides
        .data_dir
        .unwrap_or_else(|| config.embedded.data_dir.clone());
    let config = Arc::new(config);
    let database = Arc::new(Database::open(&config, data_dir).await?);
    let state = prepare_state(config.clone(), &database).await?;
    if let (Some(cluster), mb @ 1..) = (&database.embedded, config.embedded.wal_preallocate_mb) {
        tokio::spawn(keep_wal_ahead(state.pool.clone(), cluster.wal_dir(), mb));
    }

    let listener = TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("bind {}", config.server.listen))?;
    let addr = listener.local_addr()?;
    let (shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
    let metrics_addr = match config.server.metrics_listen {
        Some(at) => {
            let metrics = TcpListener::bind(at)
                .await
                .with_context(|| format!("bind server.metrics_listen {at}"))?;
            let bound = metrics.local_addr()?;
            tokio::spawn(server::serve_metrics(
                metrics,
                Arc::downgrade(&state),
                shutdown_rx.clone(),
            ));
            Some(bound)
        }
        None => None,
    };
    let shared = state.clone();
    let shared_database = database.clone();
    let task = tokio::spawn(async move {
        server::serve(listener, state.clone(), shutdown_rx).await;
        state.shutdown().await;
        drop(state);
        if database.embedded.is_some() {
            tokio::task::spawn_blocking(move || match &database.embedded {
                Some(cluster) => cluster.stop(),
                None => Ok(()),
            })
            .await
            .context("stop task")??;
        }
        Ok(())
    });
    Ok(Running {
        addr,
        metrics_addr,
        state: shared,
        database: shared_database,
        shutdown,
        task,
    })
}

/// A quarter of the machine's memory, between 512 MB and 2 GB: the randomly written indexes
/// (idempotency keys, rounds, the ledger's by-round index) outgrow 512 MB within half an hour
/// at full load, and a lane that must write a page out to make room waits for it.
fn shared_buffers_mb() -> u64 {
    let total_kb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(0);
    (total_kb / 1024 / 4).clamp(512, 2048)
}

/// A start refused for what it found, not for a failure: the binary exits 64, as for an
/// invalid configuration.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// Migrates the database, registers the configured providers, seeds the demo players and
/// builds the shared handles.
async fn prepare_state(config: Arc<Config>, database: &Database) -> anyhow::Result<Arc<State>> {
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
        // A migration may have moved rows: statistics of the wallet path's tables afresh.
        settlement::store::analyze(&**client)
            .await
            .context("analyze after migrations")?;
    }
    // Today's partitions and the next days' exist before the first write.
    let ahead = config.retention.partitions_ahead_days;
    let created = settlement::partitions::create_ahead(&mut client, ahead)
        .await
        .context("create partitions")?;
    if !created.is_empty() {
        tracing::info!(?created, "partitions created");
    }
    settlement::partitions::spawn_job(pool.clone(), ahead);

    let mut ids = HashMap::new();
    for provider in &config.providers {
        let dialect = provider.dialect.map_or("", |d| d.as_str());
        let id = settlement::store::upsert_provider(
            &**client,
            &provider.code,
            dialect,
            provider.enabled,
        )
        .await
        .with_context(|| format!("register provider {}", provider.code))?;
        ids.insert(provider.code.clone(), id);
    }
    let providers = Registry::build(&config, &ids).map_err(anyhow::Error::msg)?;

    let demo = &config.demo;
    if !demo.enabled
        && settlement::store::demo_seeded_at(&**client)
            .await?
            .is_some()
    {
        return Err(Refused(
            "this database was seeded by demo mode: it holds the demo's public logins (admin \
             password and TOTP secret) and its players' demo money. Production needs a database \
             of its own: another --data-dir (or embedded.data_dir), or database.url"
                .into(),
        )
        .into());
    }
    if demo.enabled {
        settlement::store::mark_demo_seeded(&**client)
            .await
            .context("mark the database as the demo's")?;
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
    let providers_changed = Arc::new(tokio::sync::Notify::new());
    let api = if config.rest.enabled {
        let mut options = rest_options(&config)?;
        options.providers_changed = providers_changed.clone();
        let api = rest::Api::new(pool.clone(), options);
        if demo.enabled {
            let seeded = rest::demo::seed(&**client, &api.rest().hasher, &demo_accounts(&config))
                .await
                .context("seed demo accounts")?;
            tracing::info!(seeded, "demo accounts ready");
        }
        api.spawn_upkeep();
        Some(api)
    } else {
        None
    };
    drop(client);

    let st = &config.settlement;
    let settler = Settler::start(
        database.config.clone(),
        batch::Options {
            lanes: st.lanes,
            batch_len_max: st.batch_len_max,
            batch_wait_max: Duration::from_micros(st.batch_wait_max_us),
            linger_from: st.batch_linger_from,
            queue_len_max: st.queue_len_max,
            deadline: Duration::from_millis(st.callback_deadline_ms),
            busy_patience: Duration::from_millis(st.busy_wallet_patience_ms),
            // Below the reports' settle time (the configuration keeps it at 2 s or more).
            transaction_timeout: Duration::from_secs(
                (config.rest.report_settle_s / 2)
                    .clamp(1, settlement::store::LANE_TRANSACTION_S_MAX),
            ),
        },
    )
    .await
    .context("open settlement connections")?;
    #[cfg(feature = "test-util")]
    plant_from_env(settler.faults())?;

    let base = Arc::new(providers);
    let state = Arc::new(State {
        config: config.clone(),
        pool,
        providers: std::sync::RwLock::new(base.clone()),
        providers_changed: providers_changed.clone(),
        settler,
        dedup: crate::dedup::Index::new(config.dedup.entries_max, config.dedup.bytes_max),
        signed: crate::provider::signed::SignedCalls::new(crate::provider::signed::CAPACITY),
        trace: crate::trace::Tracer::start(database.config.clone(), &config.trace),
        metrics: {
            let handle = crate::metrics::install();
            crate::metrics::register_known_series();
            handle
        },
        callback_metrics: crate::metrics::CallbackHandles::default(),
        ready: std::sync::atomic::AtomicBool::new(true),
        api,
    });
    if let Some(api) = &state.api {
        api.attach_desk(Arc::new(crate::provider::replay::Desk(Arc::downgrade(
            &state,
        ))));
    }
    reload_providers(&state, &base)
        .await
        .context("load the providers managed through the back office")?;
    tokio::spawn(keep_providers_current(Arc::downgrade(&state), base));
    Ok(state)
}

/// How often the managed providers are read again even when nobody said they changed (another
/// gateway's back office, a rotated secret's deadline).
const PROVIDERS_RELOAD_EVERY: Duration = Duration::from_secs(5);

/// Reads the managed providers again whenever the REST module says they changed, and every
/// few seconds, until the gateway is gone.
async fn keep_providers_current(state: std::sync::Weak<State>, base: Arc<Registry>) {
    loop {
        let Some(changed) = state.upgrade().map(|s| s.providers_changed.clone()) else {
            return;
        };
        tokio::select! {
            _ = changed.notified() => {}
            _ = tokio::time::sleep(PROVIDERS_RELOAD_EVERY) => {}
        }
        let Some(state) = state.upgrade() else {
            return;
        };
        if state.pool.is_closed() {
            return; // stopping
        }
        if let Err(e) = reload_providers(&state, &base).await {
            tracing::warn!(error = %e, "managed providers not reloaded; keeping the current ones");
        }
    }
}

/// Swaps in the configuration's providers plus the managed ones stored now.
async fn reload_providers(state: &State, base: &Registry) -> anyhow::Result<()> {
    let client = state.pool.get().await?;
    let rows = client
        .query(
            "SELECT id, code, dialect, enabled, managed::text, extract(epoch FROM now())::bigint
             FROM providers WHERE managed IS NOT NULL",
            &[],
        )
        .await?;
    let now = rows.first().map_or(0, |r| r.get::<_, i64>(5));
    let managed: Vec<crate::registry::ManagedRow> = rows
        .iter()
        .filter_map(|r| {
            Some(crate::registry::ManagedRow {
                id: r.get(0),
                code: r.get(1),
                dialect: r.get(2),
                enabled: r.get(3),
                managed: serde_json::from_str(r.get::<_, &str>(4)).ok()?,
            })
        })
        .collect();
    let next = Arc::new(base.with_managed(&managed, now, state.config.demo.enabled));
    *state.providers.write().unwrap_or_else(|e| e.into_inner()) = next;
    Ok(())
}

/// The REST module's settings from `[rest]` (checked by the configuration already).
fn rest_options(config: &Config) -> anyhow::Result<rest::Options> {
    let r = &config.rest;
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    Ok(rest::Options {
        jwt_key: r.jwt_key(config.demo.enabled).map_err(anyhow::Error::msg)?,
        access_ttl: Duration::from_secs(r.access_token_ttl_s),
        refresh_ttl: Duration::from_secs(r.refresh_token_ttl_s),
        hash_slots: if r.hash_concurrency == 0 {
            cores
        } else {
            r.hash_concurrency
        },
        rate_limits: r.rate_limits,
        game_session_ttl: Duration::from_secs(r.game_session_ttl_s),
        currency: r.currency.clone(),
        adjustment_approval_above: r.adjustment_approval_above,
        adjustment_approval_above_in: r.adjustment_approval_above_in.clone(),
        providers: config
            .providers
            .iter()
            .map(|p| rest::ProviderInfo {
                code: p.code.clone(),
                enabled: p.enabled,
                currency: p.currency.clone(),
                launch_url: (!p.launch_url.is_empty()).then(|| p.launch_url.clone()),
            })
            .collect(),
        payment_providers: config
            .payment_providers
            .iter()
            .map(|p| {
                Ok(rest::PaymentProvider {
                    code: p.code.clone(),
                    secrets: p.secrets(config.demo.enabled).map_err(anyhow::Error::msg)?,
                    signature_window_s: p.signature_window_s,
                })
            })
            .collect::<anyhow::Result<_>>()?,
        providers_changed: Arc::new(tokio::sync::Notify::new()),
        managed_dialects: crate::config::Dialect::ALL
            .into_iter()
            .filter(|d| !d.uses_public_key())
            .map(|d| d.as_str().to_string())
            .collect(),
        allowlist_required: crate::config::Dialect::ALL
            .into_iter()
            .filter(|d| {
                crate::config::allowlist_missing(Some(*d), &[], config.demo.enabled).is_some()
            })
            .map(|d| d.as_str().to_string())
            .collect(),
        signature_window_s_max: crate::config::SIGNATURE_WINDOW_S_MAX,
        verify_signature: |header, body, secrets, now, window| {
            crate::signature::verify_native(header, body, secrets, now, window).is_ok()
        },
        report_fold_interval: Duration::from_secs(r.report_fold_interval_s),
        report_settle_after: Duration::from_secs(r.report_settle_s),
        body_bytes_max: config.server.body_bytes_max,
        request_timeout: Duration::from_millis(config.server.request_timeout_ms),
    })
}

/// The demo's REST logins (public values of the operational contract).
pub fn demo_accounts(config: &Config) -> rest::demo::Demo {
    let d = &config.demo;
    rest::demo::Demo {
        admin_username: d.admin_username.clone(),
        admin_password: d.admin_password.clone(),
        admin_totp_secret: d.admin_totp_secret.clone(),
        player_prefix: d.player_prefix.clone(),
        player_password: d.player_password.clone(),
    }
}

/// Test builds only: plants the bugs named in `WALLET_PLANTS` (comma-separated, e.g.
/// `async-commit`), so a fault campaign can show its checkers catch them.
#[cfg(feature = "test-util")]
fn plant_from_env(faults: &settlement::fault::Faults) -> anyhow::Result<()> {
    use settlement::fault::Plant;
    let names = std::env::var("WALLET_PLANTS").unwrap_or_default();
    for name in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let plant = Plant::from_name(name).with_context(|| {
            let known: Vec<&str> = Plant::ALL.iter().map(|p| p.name()).collect();
            format!(
                "WALLET_PLANTS: unknown bug {name:?} (known: {})",
                known.join(", ")
            )
        })?;
        tracing::warn!(bug = plant.name(), "planted bug switched on (test build)");
        faults.plant(plant, true);
    }
    Ok(())
}
