//! The configuration's plain sections (`[server]`, `[database]`, `[embedded]`, `[settlement]`,
//! `[dedup]`, `[trace]`, `[retention]`, `[log]`, `[demo]`), each with its defaults.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use serde::Deserialize;

use super::secrets::resolve_url;

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Server {
    pub listen: SocketAddr,
    /// When set, `GET /metrics` is served here alone (an admin network) and not on `listen`.
    pub metrics_listen: Option<SocketAddr>,
    pub body_bytes_max: usize,
    pub header_read_timeout_ms: u64,
    /// Whole request (headers + body) must arrive within this time.
    pub request_timeout_ms: u64,
    pub shutdown_grace_ms: u64,
    pub connections_max: usize,
    /// Request headers accepted per request; more are refused (431).
    pub headers_max: usize,
    /// Bytes the connection may buffer for a request head (request line and headers).
    pub header_bytes_max: usize,
    /// Reverse proxies whose `X-Forwarded-For` is believed: when the peer is one of them, the
    /// caller's address (for provider allowlists) is the right-most forwarded address that is
    /// not itself a trusted proxy. Empty: the peer address is the caller.
    pub trusted_proxies: Vec<IpAddr>,
    /// Threads of the async runtime (HTTP, lanes, jobs); 0: chosen by [`Server::runtime_threads`]
    /// (one per core, half the cores beside the embedded cluster).
    pub worker_threads: usize,
}

impl Server {
    /// The async runtime's threads on a box of `cores`: `worker_threads` when set; else one per
    /// core, but half the cores (at least one) when the embedded cluster runs beside the
    /// gateway, whose backends spend more CPU per callback than the gateway does. On two
    /// shared cores one thread cost the gateway 12-18 % less CPU per callback than two, at the
    /// same service time, for 6 % less throughput when saturated (docs/performance-budget.md).
    pub fn runtime_threads(&self, cores: usize, embedded_database: bool) -> usize {
        match self.worker_threads {
            0 if embedded_database => (cores / 2).max(1),
            0 => cores.max(1),
            set => set,
        }
    }
}

impl Default for Server {
    fn default() -> Self {
        Server {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            metrics_listen: None,
            body_bytes_max: 64 * 1024,
            header_read_timeout_ms: 5_000,
            request_timeout_ms: 10_000,
            shutdown_grace_ms: 10_000,
            connections_max: 10_000,
            headers_max: 100,
            header_bytes_max: 16 * 1024,
            trusted_proxies: Vec::new(),
            worker_threads: 0,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Database {
    /// Empty: start the embedded cluster. `DATABASE_URL` in the environment wins over this.
    pub url: String,
    pub url_env: String,
    pub url_file: String,
    /// Pool for health checks, seeding and (later) the REST module; settlement lanes hold
    /// connections of their own.
    pub pool_size_max: usize,
    pub connect_timeout_ms: u64,
    /// Database name inside the embedded cluster.
    pub embedded_dbname: String,
}

impl Default for Database {
    fn default() -> Self {
        Database {
            url: String::new(),
            url_env: "DATABASE_URL".into(),
            url_file: String::new(),
            pool_size_max: 8,
            connect_timeout_ms: 5_000,
            embedded_dbname: "wallet".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Embedded {
    /// Overridden by `--data-dir`.
    pub data_dir: PathBuf,
    /// The unprivileged user the server runs as when the gateway runs as root.
    pub run_as_user: String,
    /// Extra `postgresql.conf` settings (`name = "value"`, numbers and booleans too).
    pub settings: std::collections::BTreeMap<String, toml::Value>,
    /// WAL kept ready ahead of the segment being written, in MB (whole 16 MB segments; 0:
    /// none). A start that finds fewer segments in `pg_wal` (a new cluster) fills the
    /// difference and checkpoints, and `min_wal_size` (unless `settings` names it) keeps that
    /// many for reuse; while the gateway runs, it writes each missing segment of the window
    /// itself, outside the server's WAL write lock. Without it, every new segment is
    /// zero-filled while the WAL write lock is held, and each lane's commit waits for it: at
    /// 7,500 callbacks/s, a 50-100 ms stall every two seconds until PostgreSQL's first
    /// checkpoint completes and recycles segments (near minute 28 with the defaults).
    pub wal_preallocate_mb: u64,
}

impl Embedded {
    /// The settings as PostgreSQL reads them: strings bare, numbers and booleans as written.
    pub fn settings_text(&self) -> Vec<(String, String)> {
        self.settings
            .iter()
            .map(|(k, v)| {
                let text = match v {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), text)
            })
            .collect()
    }
}

impl Default for Embedded {
    fn default() -> Self {
        Embedded {
            data_dir: PathBuf::from("./data"),
            run_as_user: "postgres".into(),
            settings: Default::default(),
            wal_preallocate_mb: 1024,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Settlement {
    /// Settlement lanes (each one writer connection); players are partitioned over them.
    pub lanes: usize,
    pub batch_len_max: usize,
    pub batch_wait_max_us: u64,
    /// A lane lingers up to `batch_wait_max_us` for more commands once its previous batch held
    /// at least this many (steady load): fewer, longer batches, less CPU per callback.
    pub batch_linger_from: usize,
    /// Commands waiting per lane before callbacks get a retryable answer.
    pub queue_len_max: usize,
    /// A callback not settled within this time gets a retryable answer.
    pub callback_deadline_ms: u64,
    /// How long a lane leaves a callback for later batches while another transaction holds
    /// its wallet (another gateway on the same database, the REST module) before a batch
    /// waits for the wallet. 0: every batch waits for its wallets (one gateway alone never
    /// needs more).
    pub busy_wallet_patience_ms: u64,
}

impl Default for Settlement {
    fn default() -> Self {
        Settlement {
            lanes: 2,
            batch_len_max: 512,
            batch_wait_max_us: 2_000,
            batch_linger_from: 8,
            queue_len_max: 8_192,
            callback_deadline_ms: 2_000,
            busy_wallet_patience_ms: 50,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Dedup {
    /// Committed answers kept in memory for retries; the oldest go first.
    pub entries_max: usize,
    /// Memory the index may use (an estimate per entry).
    pub bytes_max: usize,
}

impl Default for Dedup {
    fn default() -> Self {
        Dedup {
            entries_max: 1_000_000,
            bytes_max: 256 * 1024 * 1024,
        }
    }
}

/// Raw callbacks kept for the back office's trace and replay (see `trace`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Trace {
    /// Store each callback that names a transaction: bytes and headers as received, the
    /// answer sent, the batch and timings. Written after the answer, off the commit path.
    pub enabled: bool,
    /// Records waiting for the writer; when full, new ones are dropped (and counted).
    pub queue_len_max: usize,
    /// Records the writer stores in one segment (one row, one statement), at most.
    pub batch_len_max: usize,
    /// How long the writer gathers records before storing a segment (unless `batch_len_max`
    /// are there first): fewer, larger segments cost less per record.
    pub linger_ms: u64,
}

impl Default for Trace {
    fn default() -> Self {
        Trace {
            enabled: true,
            queue_len_max: 65_536,
            batch_len_max: 4_000,
            linger_ms: 250,
        }
    }
}

/// How long the ledger and the kept callbacks stay (see `settlement::partitions`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Retention {
    /// `gateway prune` drops the days (daily partitions) older than this; never fewer than 7.
    pub days: u32,
    /// Daily partitions are created this many days ahead (at start and every hour).
    pub partitions_ahead_days: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            days: 120,
            partitions_ahead_days: 3,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Log {
    /// `tracing` filter directives, e.g. `info` or `gateway=debug,info`.
    pub level: String,
    /// `text` or `json`.
    pub format: String,
}

impl Default for Log {
    fn default() -> Self {
        Log {
            level: "info".into(),
            format: "text".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Demo {
    /// Seed demo players at start (idempotent: existing players are left alone).
    pub enabled: bool,
    pub players: u32,
    pub player_prefix: String,
    pub currency: String,
    pub opening_balance: String,
    /// REST logins seeded with the demo (when `rest.enabled`): an admin with 2FA on, and
    /// every demo player. Public values, printed at start.
    pub admin_username: String,
    pub admin_password: String,
    pub admin_totp_secret: String,
    pub player_password: String,
}

impl Default for Demo {
    fn default() -> Self {
        Demo {
            enabled: false,
            players: 1000,
            player_prefix: "player-".into(),
            currency: "EUR".into(),
            opening_balance: "1000.00".into(),
            admin_username: "admin".into(),
            admin_password: "demo-admin-password".into(),
            admin_totp_secret: "JBSWY3DPEHPK3PXP".into(),
            player_password: "demo-player-password".into(),
        }
    }
}

/// A batch may overshoot `batch_len_max` by one unit (a multi-action callback).
pub(crate) fn settlement_batch_len_limit() -> usize {
    settlement::apply::BATCH_LEN_MAX - settlement::apply::UNIT_LEN_MAX
}

impl Database {
    /// The external database URL, if any: environment variable, then file, then inline.
    pub fn resolve_url(&self) -> Result<Option<String>, String> {
        let url = resolve_url(&self.url, &self.url_env, &self.url_file)
            .map_err(|e| format!("database.url{e}"))?;
        if let Some(url) = &url {
            if url.parse::<tokio_postgres::Config>().is_err() {
                return Err("database.url is not a PostgreSQL connection string".into());
            }
        }
        Ok(url)
    }
}
