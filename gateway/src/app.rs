//! Start-up and shutdown of the whole gateway: database (embedded or external), migrations,
//! providers and demo seeding, settlement lanes, the HTTP server; then the reverse on shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::config::Config;
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
        let defaults = [
            ("shared_buffers", "512MB"),
            ("wal_buffers", "64MB"),
            ("max_wal_size", "8GB"),
            ("checkpoint_timeout", "15min"),
            ("max_connections", "200"),
        ];
        let mut settings: std::collections::BTreeMap<String, String> = defaults
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
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

/// A started gateway: its address, and the handle that stops it.
pub struct Running {
    pub addr: SocketAddr,
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
    let state = State::prepare(config.clone(), &database).await?;

    let listener = TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("bind {}", config.server.listen))?;
    let addr = listener.local_addr()?;
    let (shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
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
        state: shared,
        database: shared_database,
        shutdown,
        task,
    })
}
