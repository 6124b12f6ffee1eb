//! Configuration: a TOML file, overridden by `GATEWAY__SECTION__KEY` environment variables,
//! checked whole (every unknown or invalid key reported at once), then shared as `Arc<Config>`.
//!
//! `config/gateway.toml` documents every key with its default. Secrets can be given inline (for
//! demos), or by naming an environment variable (`*_env`) or a file (`*_file`) to read them from.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Environment variables with this prefix override file keys: `GATEWAY__SERVER__LISTEN`.
pub const ENV_PREFIX: &str = "GATEWAY__";

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Config {
    pub server: Server,
    pub database: Database,
    pub embedded: Embedded,
    pub settlement: Settlement,
    pub dedup: Dedup,
    pub trace: Trace,
    pub retention: Retention,
    pub log: Log,
    pub demo: Demo,
    pub rest: Rest,
    pub providers: Vec<Provider>,
    pub payment_providers: Vec<PaymentProvider>,
}

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
    /// Threads of the async runtime (HTTP, lanes, jobs); 0: one per core. One costs a little
    /// less CPU per callback beside a PostgreSQL on few cores, but caps the gateway at a core.
    pub worker_threads: usize,
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
    /// WAL kept ready for writing, in MB (whole 16 MB segments; 0: none). A start that finds
    /// fewer segments in `pg_wal` (a new cluster) fills the difference and checkpoints, and
    /// `min_wal_size` (unless `settings` names it) keeps that many for reuse. Without it, every new
    /// segment is zero-filled while the WAL write lock is held, and each lane's commit waits
    /// for it: at 7,500 callbacks/s, a 50-100 ms stall every two seconds until PostgreSQL
    /// recycles segments on its own (after its first checkpoints, minutes later).
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

/// The REST module under `/api/` (players and the back office).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Rest {
    /// Off: `/api/` answers 404 and the gateway serves callbacks only.
    pub enabled: bool,
    /// HS256 key of access tokens, at least 32 bytes (inline, or `_env` / `_file`).
    pub jwt_secret: String,
    pub jwt_secret_env: String,
    pub jwt_secret_file: String,
    /// Access token lifetime, at most 900 s.
    pub access_token_ttl_s: u64,
    pub refresh_token_ttl_s: u64,
    /// Password hashes computed at once (Argon2id, 19 MiB each); 0: one per core.
    pub hash_concurrency: usize,
    pub game_session_ttl_s: u64,
    /// Currency of a registered player's first wallet.
    pub currency: String,
    /// Back-office adjustments above this many whole units of the wallet's currency need a
    /// second admin's approval (currencies not in `adjustment_approval_above_in`)...
    pub adjustment_approval_above: u64,
    /// ...and per currency, as a decimal in its units (`{ BTC = "0.02", EUR = "1000" }`):
    /// a whole unit of one currency is not one of another.
    pub adjustment_approval_above_in: std::collections::BTreeMap<String, String>,
    /// The report rollups fold ledger rows older than `report_settle_s` every
    /// `report_fold_interval_s`: reports are that fresh.
    pub report_fold_interval_s: u64,
    pub report_settle_s: u64,
    /// Attempts per minute before 429 (`Retry-After`).
    pub rate_limits: rest::auth::RateLimits,
}

impl Default for Rest {
    fn default() -> Self {
        Rest {
            enabled: false,
            jwt_secret: String::new(),
            jwt_secret_env: String::new(),
            jwt_secret_file: String::new(),
            access_token_ttl_s: 900,
            refresh_token_ttl_s: 30 * 24 * 60 * 60,
            hash_concurrency: 0,
            game_session_ttl_s: 4 * 60 * 60,
            currency: "EUR".into(),
            adjustment_approval_above: 1000,
            adjustment_approval_above_in: std::collections::BTreeMap::new(),
            report_fold_interval_s: 5,
            report_settle_s: 60,
            rate_limits: rest::auth::RateLimits::default(),
        }
    }
}

/// A payment provider whose signed webhooks (`POST /api/payments/webhook/{code}`, signed like
/// the native dialect) credit deposits.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct PaymentProvider {
    pub code: String,
    pub secret: String,
    pub secret_env: String,
    pub secret_file: String,
    /// Also accepted while the payment provider moves to a rotated secret.
    pub previous_secret: String,
    pub previous_secret_env: String,
    pub previous_secret_file: String,
    pub signature_window_s: u64,
}

impl Default for PaymentProvider {
    fn default() -> Self {
        PaymentProvider {
            code: String::new(),
            secret: String::new(),
            secret_env: String::new(),
            secret_file: String::new(),
            previous_secret: String::new(),
            previous_secret_env: String::new(),
            previous_secret_file: String::new(),
            signature_window_s: 300,
        }
    }
}

impl PaymentProvider {
    /// Current secret first, then the previous one; `Err` names what is wrong.
    pub fn secrets(&self, demo_enabled: bool) -> Result<Vec<Vec<u8>>, String> {
        let mut secrets = Vec::new();
        for (key, inline, env, file) in [
            ("secret", &self.secret, &self.secret_env, &self.secret_file),
            (
                "previous_secret",
                &self.previous_secret,
                &self.previous_secret_env,
                &self.previous_secret_file,
            ),
        ] {
            let resolved = resolve_secret(inline, env, file).map_err(|e| format!("{key}{e}"))?;
            match resolved {
                None if key == "secret" => {
                    return Err("one of secret, secret_env, secret_file is required".into())
                }
                None => {}
                Some(secret) => {
                    if let Some(why) =
                        weak_secret(key, secret.as_bytes(), SECRET_BYTES_MIN, demo_enabled)
                    {
                        return Err(why);
                    }
                    secrets.push(secret.into_bytes());
                }
            }
        }
        Ok(secrets)
    }
}

impl Rest {
    /// The access-token key, resolved; `Err` says why it cannot be used.
    pub fn jwt_key(&self, demo_enabled: bool) -> Result<Vec<u8>, String> {
        let key = "rest.jwt_secret";
        let secret = resolve_secret(
            &self.jwt_secret,
            &self.jwt_secret_env,
            &self.jwt_secret_file,
        )
        .map_err(|e| format!("{key}{e}"))?
        .ok_or_else(|| {
            "rest: one of jwt_secret, jwt_secret_env, jwt_secret_file is required when rest.enabled"
                .to_string()
        })?;
        match weak_secret(
            key,
            secret.as_bytes(),
            rest::auth::token::KEY_BYTES_MIN,
            demo_enabled,
        ) {
            Some(why) => Err(why),
            None => Ok(secret.into_bytes()),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Provider {
    pub code: String,
    /// Required.
    pub dialect: Option<Dialect>,
    pub enabled: bool,
    pub secret: String,
    pub secret_env: String,
    pub secret_file: String,
    /// Accepted too while providers move to a rotated secret.
    pub previous_secret: String,
    pub previous_secret_env: String,
    pub previous_secret_file: String,
    /// Source addresses allowed to call; empty allows any (outside demo mode, only for
    /// dialects whose signature binds the call: see `Dialect::binds_call`).
    pub allow_ips: Vec<IpAddr>,
    /// Signed timestamps older or newer than this are refused (native dialect).
    pub signature_window_s: u64,
    /// PEM public key (SPKI) the provider's RSA signatures are checked with (hub88 dialect),
    /// and the previous one, also accepted during a rotation.
    pub public_key_file: String,
    pub previous_public_key_file: String,
    /// The wallet currency of calls that name none (the Pragmatic-style dialect's).
    pub currency: String,
    /// Game launch URL handed to players (`POST /api/games/{game_id}/launch`), with
    /// `{token}`, `{game_id}`, `{currency}` and `{player}` filled in. Empty: none.
    pub launch_url: String,
    pub policy: settlement::Policy,
}

impl Default for Provider {
    fn default() -> Self {
        Provider {
            code: String::new(),
            dialect: None,
            enabled: true,
            secret: String::new(),
            secret_env: String::new(),
            secret_file: String::new(),
            previous_secret: String::new(),
            previous_secret_env: String::new(),
            previous_secret_file: String::new(),
            allow_ips: Vec::new(),
            signature_window_s: 300,
            public_key_file: String::new(),
            previous_public_key_file: String::new(),
            currency: "EUR".into(),
            launch_url: String::new(),
            policy: settlement::Policy::default(),
        }
    }
}

/// A provider's wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dialect {
    /// Ours: JSON, `X-Signature` HMAC-SHA256 with a timestamp (README).
    Native,
    /// Form-encoded `<method>.html` calls signed with an MD5 `hash` parameter.
    Pragmatic,
    /// JSON calls with a static `authToken` query parameter.
    Evolution,
    /// JSON calls signed with RSA-SHA256 (`X-Hub88-Signature`), checked with a public key.
    Hub88,
    /// JSON `/play` batches of actions applied atomically, `X-REQUEST-SIGN` HMAC-SHA256.
    Softswiss,
}

impl Dialect {
    pub const ALL: [Dialect; 5] = [
        Dialect::Native,
        Dialect::Pragmatic,
        Dialect::Evolution,
        Dialect::Hub88,
        Dialect::Softswiss,
    ];

    /// Dialects that verify with the provider's public key instead of a shared secret.
    pub fn uses_public_key(self) -> bool {
        self == Dialect::Hub88
    }

    /// Whether the dialect's signature binds a call to its moment (a signed timestamp checked
    /// against a window) or to its method. One that binds neither can be replayed, or posted
    /// to another method, by whoever captured a call: outside demo mode its providers must
    /// name the addresses they call from (`allow_ips`).
    pub fn binds_call(self) -> bool {
        self == Dialect::Native
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::Native => "native",
            Dialect::Pragmatic => "pragmatic",
            Dialect::Evolution => "evolution",
            Dialect::Hub88 => "hub88",
            Dialect::Softswiss => "softswiss",
        }
    }
}

/// Takes out `providers[i].dialect` values that name no dialect, reporting each, so the rest of
/// the file is still read and checked (serde would stop at the first bad enum value).
fn take_unknown_dialects(root: &mut toml::Table, problems: &mut Vec<Problem>) -> BTreeSet<usize> {
    let mut taken = BTreeSet::new();
    let Some(toml::Value::Array(providers)) = root.get_mut("providers") else {
        return taken;
    };
    for (i, provider) in providers.iter_mut().enumerate() {
        let Some(table) = provider.as_table_mut() else {
            continue;
        };
        let known = match table.get("dialect") {
            None => continue,
            Some(toml::Value::String(name)) => Dialect::ALL.iter().any(|d| d.as_str() == name),
            Some(_) => false,
        };
        if !known {
            let value = table
                .remove("dialect")
                .unwrap_or(toml::Value::Boolean(false));
            let names: Vec<&str> = Dialect::ALL.iter().map(|d| d.as_str()).collect();
            let key = format!("providers[{i}].dialect");
            problems.push(Problem::new(
                ProblemKind::Invalid,
                &key,
                format!("{key} {value} is not one of {}", names.join(", ")),
            ));
            taken.insert(i);
        }
    }
    taken
}

/// PostgreSQL settings that would let a commit be acknowledged before it is on disk (or leave
/// torn pages after a crash). The embedded cluster keeps PostgreSQL's safe defaults for them,
/// and the lanes set `synchronous_commit = on` on their own connections.
pub const DURABILITY_SETTINGS: &[&str] = &["fsync", "synchronous_commit", "full_page_writes"];

/// Everything wrong with a configuration, reported together.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration {}:\n  - {}", .path.display(), lines(.problems))]
pub struct Invalid {
    pub path: PathBuf,
    pub problems: Vec<Problem>,
}

fn lines(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n  - ")
}

impl Config {
    /// Reads `path`, applies environment overrides, refuses unknown keys and validates.
    pub fn load(path: &Path) -> Result<Config, Invalid> {
        let invalid = |problems: Vec<Problem>| Invalid {
            path: path.to_path_buf(),
            problems,
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            let message = format!("cannot read the file: {e}");
            invalid(vec![Problem::new(ProblemKind::Invalid, "", message)])
        })?;
        let env: Vec<(String, String)> = std::env::vars().collect();
        let folder = path.parent().unwrap_or(Path::new("."));
        Config::from_toml_in(&text, &env, folder).map_err(invalid)
    }

    /// Parses `text` with `env` overrides; the whole check without touching the process.
    /// Relative key files are taken from the working folder.
    pub fn from_toml(text: &str, env: &[(String, String)]) -> Result<Config, Vec<Problem>> {
        Config::from_toml_in(text, env, Path::new("."))
    }

    /// As [`Config::from_toml`], with relative key files (`public_key_file`) taken from
    /// `folder`, the configuration file's own.
    pub fn from_toml_in(
        text: &str,
        env: &[(String, String)],
        folder: &Path,
    ) -> Result<Config, Vec<Problem>> {
        let syntax = |message: String| Problem::new(ProblemKind::Syntax, "", message);
        let mut root: toml::Table = text.parse().map_err(|e| vec![syntax(format!("{e}"))])?;
        let mut problems = Vec::new();
        for (name, raw) in env {
            if let Some(path) = name.strip_prefix(ENV_PREFIX) {
                if let Err(p) = override_key(&mut root, path, raw) {
                    problems.push(Problem::new(
                        ProblemKind::Invalid,
                        name,
                        format!("{name}: {p}"),
                    ));
                }
            }
        }
        let bad_dialects = take_unknown_dialects(&mut root, &mut problems);
        let mut unknown = BTreeSet::new();
        let config: Result<Config, _> =
            serde_ignored::deserialize(toml::Value::Table(root), |key| {
                unknown.insert(key.to_string());
            });
        problems.extend(unknown.into_iter().map(|k| {
            let message = format!("unknown key `{k}`");
            Problem::new(ProblemKind::UnknownKey, &k, message)
        }));
        match config {
            Err(e) => {
                problems.push(syntax(e.to_string()));
                Err(problems)
            }
            Ok(mut config) => {
                for provider in &mut config.providers {
                    for file in [
                        &mut provider.public_key_file,
                        &mut provider.previous_public_key_file,
                    ] {
                        if !file.is_empty() && Path::new(file.as_str()).is_relative() {
                            *file = folder.join(&*file).display().to_string();
                        }
                    }
                }
                let already = |p: &Problem| {
                    p.kind == ProblemKind::Required
                        && bad_dialects
                            .iter()
                            .any(|i| p.key == format!("providers[{i}].dialect"))
                };
                problems.extend(config.problems().into_iter().filter(|p| !already(p)));
                if problems.is_empty() {
                    Ok(config)
                } else {
                    Err(problems)
                }
            }
        }
    }

    /// Checks of `[rest]` (and of the demo logins it seeds), when the module is on.
    fn rest_problems(&self) -> Vec<Problem> {
        use ProblemKind::{Invalid, Range};
        let mut p = Vec::new();
        let r = &self.rest;
        if !r.enabled {
            if !self.payment_providers.is_empty() {
                let message = "payment_providers need the REST module (rest.enabled)".to_string();
                p.push(Problem::new(Invalid, "payment_providers", message));
            }
            return p;
        }
        let mut codes = BTreeSet::new();
        for (i, psp) in self.payment_providers.iter().enumerate() {
            let at = format!("payment_providers[{i}]");
            if !valid_code(&psp.code) || !codes.insert(psp.code.clone()) {
                let message =
                    format!("{at}.code must be unique and match [a-z0-9][a-z0-9_-]{{0,31}}");
                p.push(Problem::new(Invalid, &format!("{at}.code"), message));
            }
            if let Err(why) = psp.secrets(self.demo.enabled) {
                p.push(Problem::new(
                    ProblemKind::Secret,
                    &format!("{at}.secret"),
                    format!("{at}.{why}"),
                ));
            }
            if psp.signature_window_s == 0 {
                p.push(Problem::new(
                    Range,
                    &format!("{at}.signature_window_s"),
                    format!("{at}.signature_window_s must be > 0"),
                ));
            }
        }
        let range = |p: &mut Vec<Problem>, key: &str, ok: bool, rule: &str| {
            if !ok {
                p.push(Problem::new(Range, key, format!("{key} must be {rule}")));
            }
        };
        if let Err(why) = r.jwt_key(self.demo.enabled) {
            p.push(Problem::new(ProblemKind::Secret, "rest.jwt_secret", why));
        }
        range(
            &mut p,
            "rest.access_token_ttl_s",
            (1..=rest::auth::token::ACCESS_TTL_MAX.as_secs()).contains(&r.access_token_ttl_s),
            "between 1 and 900",
        );
        range(
            &mut p,
            "rest.refresh_token_ttl_s",
            r.refresh_token_ttl_s > 0,
            "> 0",
        );
        range(
            &mut p,
            "rest.game_session_ttl_s",
            r.game_session_ttl_s > 0,
            "> 0",
        );
        range(
            &mut p,
            "rest.report_fold_interval_s",
            r.report_fold_interval_s > 0,
            "> 0",
        );
        range(
            &mut p,
            "rest.adjustment_approval_above",
            r.adjustment_approval_above <= 1_000_000_000_000,
            "at most 1000000000000 (whole units)",
        );
        range(
            &mut p,
            "rest.report_settle_s",
            r.report_settle_s >= 2,
            ">= 2: the lanes' transactions are cut at half of it (at most 20 s), so a fold never \
             passes rows that a later commit still adds below them",
        );
        for (code, amount) in &r.adjustment_approval_above_in {
            let key = format!("rest.adjustment_approval_above_in.{code}");
            let parsed = settlement::money::Currency::from_code(code)
                .ok_or_else(|| format!("{key}: {code:?} is not a known currency"))
                .and_then(|c| {
                    settlement::money::parse_minor(amount, c.exponent)
                        .map_err(|e| format!("{key}: {amount:?}: {e}"))
                });
            if let Err(message) = parsed {
                p.push(Problem::new(Invalid, &key, message));
            }
        }
        let l = &r.rate_limits;
        range(
            &mut p,
            "rest.rate_limits",
            [
                l.login_per_ip,
                l.login_per_account,
                l.register_per_ip,
                l.second_factor_per_ip,
                l.second_factor_per_account,
            ]
            .iter()
            .all(|n| *n > 0),
            "> 0 for every limit",
        );
        if settlement::money::Currency::from_code(&r.currency).is_none() {
            p.push(Problem::new(
                Invalid,
                "rest.currency",
                format!("rest.currency {:?} is not a known currency", r.currency),
            ));
        }
        if self.demo.enabled && rest::auth::totp::code_at(&self.demo.admin_totp_secret, 0).is_none()
        {
            p.push(Problem::new(
                Invalid,
                "demo.admin_totp_secret",
                "demo.admin_totp_secret must be base32".to_string(),
            ));
        }
        p
    }

    /// Semantic checks; each problem names its key.
    fn problems(&self) -> Vec<Problem> {
        use ProblemKind::{Duplicate, Durability, Invalid, Range, Required};
        let mut p = Vec::new();
        let mut range = |key: &str, ok: bool, rule: &str| {
            if !ok {
                p.push(Problem::new(Range, key, format!("{key} must be {rule}")));
            }
        };
        let s = &self.server;
        range(
            "server.body_bytes_max",
            (1..=16 * 1024 * 1024).contains(&s.body_bytes_max),
            "between 1 and 16777216",
        );
        range(
            "server.header_read_timeout_ms",
            s.header_read_timeout_ms > 0,
            "> 0",
        );
        range("server.request_timeout_ms", s.request_timeout_ms > 0, "> 0");
        range("server.connections_max", s.connections_max > 0, "> 0");
        range(
            "server.worker_threads",
            s.worker_threads <= 1024,
            "between 0 (one per core) and 1024",
        );
        range(
            "server.headers_max",
            (8..=1024).contains(&s.headers_max),
            "between 8 and 1024",
        );
        // hyper needs at least 8 KiB of read buffer.
        range(
            "server.header_bytes_max",
            (8192..=1024 * 1024).contains(&s.header_bytes_max),
            "between 8192 and 1048576",
        );
        range(
            "database.pool_size_max",
            self.database.pool_size_max > 0,
            "> 0",
        );
        let st = &self.settlement;
        range(
            "settlement.lanes",
            (1..=64).contains(&st.lanes),
            "between 1 and 64",
        );
        range(
            "settlement.batch_len_max",
            (1..=settlement_batch_len_limit()).contains(&st.batch_len_max),
            &format!("between 1 and {}", settlement_batch_len_limit()),
        );
        range("settlement.queue_len_max", st.queue_len_max > 0, "> 0");
        range(
            "settlement.callback_deadline_ms",
            st.callback_deadline_ms > 0,
            "> 0",
        );
        range(
            "settlement.busy_wallet_patience_ms",
            st.busy_wallet_patience_ms < st.callback_deadline_ms,
            "below settlement.callback_deadline_ms",
        );
        range(
            "embedded.wal_preallocate_mb",
            self.embedded.wal_preallocate_mb <= 65_536,
            "<= 65536 (64 GB)",
        );
        range(
            "dedup.entries_max and dedup.bytes_max",
            self.dedup.entries_max > 0 && self.dedup.bytes_max > 0,
            "> 0",
        );
        range("trace.queue_len_max", self.trace.queue_len_max > 0, "> 0");
        range(
            "trace.batch_len_max",
            (1..=100_000).contains(&self.trace.batch_len_max),
            "between 1 and 100000",
        );
        range(
            "trace.linger_ms",
            self.trace.linger_ms <= 10_000,
            "at most 10000",
        );
        range(
            "retention.days",
            self.retention.days >= settlement::partitions::RETENTION_DAYS_MIN,
            &format!(
                "at least {} (a pruned transaction's retry would be applied again)",
                settlement::partitions::RETENTION_DAYS_MIN
            ),
        );
        range(
            "retention.partitions_ahead_days",
            (1..=60).contains(&self.retention.partitions_ahead_days),
            "between 1 and 60",
        );
        range(
            "log.format",
            ["text", "json"].contains(&self.log.format.as_str()),
            "`text` or `json`",
        );
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            p.push(Problem::new(
                Invalid,
                "log.level",
                format!("log.level: {e}"),
            ));
        }
        if self.demo.enabled {
            match settlement::money::Currency::from_code(&self.demo.currency) {
                None => p.push(Problem::new(
                    Invalid,
                    "demo.currency",
                    format!("demo.currency: unknown currency {:?}", self.demo.currency),
                )),
                Some(c) => {
                    if let Err(e) =
                        settlement::money::parse_minor(&self.demo.opening_balance, c.exponent)
                    {
                        let key = "demo.opening_balance";
                        p.push(Problem::new(Invalid, key, format!("{key}: {e}")));
                    }
                }
            }
        }
        p.extend(self.rest_problems());
        for key in self.embedded.settings.keys() {
            if DURABILITY_SETTINGS.contains(&key.to_ascii_lowercase().as_str()) {
                let key = format!("embedded.settings.{key}");
                p.push(Problem::new(
                    Durability,
                    &key,
                    format!(
                        "{key}: durability settings cannot be overridden \
                         (every acknowledged callback must survive a crash)"
                    ),
                ));
            }
        }
        if let Err(e) = self.database.resolve_url() {
            p.push(Problem::new(Invalid, "database.url", e));
        }
        let mut codes = BTreeSet::new();
        for (i, provider) in self.providers.iter().enumerate() {
            let at = format!("providers[{i}]");
            let code_key = format!("{at}.code");
            if !valid_code(&provider.code) {
                let message = format!("{code_key} must match [a-z0-9][a-z0-9_-]{{0,31}}");
                p.push(Problem::new(Invalid, &code_key, message));
            } else if !codes.insert(provider.code.clone()) {
                let message = format!("{code_key} {:?} is used twice", provider.code);
                p.push(Problem::new(Duplicate, &code_key, message));
            }
            if provider.dialect.is_none() {
                let key = format!("{at}.dialect");
                p.push(Problem::new(Required, &key, format!("{key} is required")));
            }
            let current = resolve_secret(
                &provider.secret,
                &provider.secret_env,
                &provider.secret_file,
            );
            let previous = resolve_secret(
                &provider.previous_secret,
                &provider.previous_secret_env,
                &provider.previous_secret_file,
            );
            let keyed = provider.dialect.is_some_and(Dialect::uses_public_key);
            if keyed {
                let key = format!("{at}.public_key_file");
                match provider.public_keys() {
                    Err(e) => p.push(Problem::new(Invalid, &key, format!("{at}.{e}"))),
                    Ok(keys) if !self.demo.enabled && keys.iter().any(is_public_demo_key) => p
                        .push(Problem::new(
                            ProblemKind::Secret,
                            &key,
                            format!(
                                "{key} holds the demo's public key, whose private half is \
                                 published: accepted only with demo.enabled = true"
                            ),
                        )),
                    Ok(_) => {}
                }
            }
            for (key, resolved) in [("secret", current), ("previous_secret", previous)] {
                let full = format!("{at}.{key}");
                match resolved {
                    Err(e) => p.push(Problem::new(
                        ProblemKind::Secret,
                        &full,
                        format!("{full}{e}"),
                    )),
                    Ok(None) if key == "secret" && !keyed => p.push(Problem::new(
                        Required,
                        &full,
                        format!("{at}: one of secret, secret_env, secret_file is required"),
                    )),
                    Ok(None) => {}
                    Ok(Some(secret)) => p.extend(
                        weak_secret(
                            &full,
                            secret.as_bytes(),
                            SECRET_BYTES_MIN,
                            self.demo.enabled,
                        )
                        .map(|why| Problem::new(ProblemKind::Secret, &full, why)),
                    ),
                }
            }
            if settlement::money::Currency::from_code(&provider.currency).is_none() {
                let key = format!("{at}.currency");
                let message = format!("{key} {:?} is not a known currency", provider.currency);
                p.push(Problem::new(Invalid, &key, message));
            }
            if !(1..=SIGNATURE_WINDOW_S_MAX).contains(&provider.signature_window_s) {
                let key = format!("{at}.signature_window_s");
                let message = format!("{key} must be 1..={SIGNATURE_WINDOW_S_MAX}");
                p.push(Problem::new(Range, &key, message));
            }
            if let Some(why) =
                allowlist_missing(provider.dialect, &provider.allow_ips, self.demo.enabled)
            {
                let key = format!("{at}.allow_ips");
                p.push(Problem::new(Required, &key, format!("{key}: {why}")));
            }
        }
        p
    }
}

/// What kind of problem a configuration has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// Not TOML, or a value of the wrong type or an unknown variant.
    Syntax,
    /// A key nothing reads.
    UnknownKey,
    /// A number or choice outside what is allowed.
    Range,
    /// Something that must be given is missing.
    Required,
    /// A value that cannot be used (a malformed code, an unknown currency, a bad URL or key).
    Invalid,
    /// A secret that is missing, unreadable or too weak.
    Secret,
    /// A setting that would weaken durability.
    Durability,
    /// A value that must be unique is used twice.
    Duplicate,
}

/// One thing wrong with a configuration: its kind, the key it is about, and the message an
/// operator reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub kind: ProblemKind,
    pub key: String,
    pub message: String,
}

impl Problem {
    pub fn new(kind: ProblemKind, key: &str, message: impl Into<String>) -> Problem {
        Problem {
            kind,
            key: key.to_string(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The widest window a signed timestamp may have around now: a captured native call can be
/// replayed within it, so it stays short.
pub const SIGNATURE_WINDOW_S_MAX: u64 = 3600;

/// Why a provider of `dialect` may not run with these addresses, if it may not: outside demo
/// mode, a dialect whose signature binds neither the call's moment nor its method needs an
/// allowlist, or any captured call could be replayed from anywhere (a disabled provider still
/// settles what it began, so it needs one too).
pub fn allowlist_missing(
    dialect: Option<Dialect>,
    allow_ips: &[IpAddr],
    demo_enabled: bool,
) -> Option<String> {
    let dialect = dialect?;
    (!demo_enabled && !dialect.binds_call() && allow_ips.is_empty()).then(|| {
        format!(
            "required outside demo mode for the {} dialect: its signature binds neither the \
             time nor the method of a call, so a captured call could be replayed from anywhere",
            dialect.as_str()
        )
    })
}

/// A batch may overshoot `batch_len_max` by one unit (a multi-action callback).
fn settlement_batch_len_limit() -> usize {
    settlement::apply::BATCH_LEN_MAX - settlement::apply::UNIT_LEN_MAX
}

fn valid_code(code: &str) -> bool {
    let b = code.as_bytes();
    !b.is_empty()
        && b.len() <= 32
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'-')
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

/// Sets `a__b__c` (lower-cased) in the table tree; the value is read as TOML when it parses
/// (numbers, booleans, arrays), else as a string.
fn override_key(root: &mut toml::Table, path: &str, raw: &str) -> Result<(), String> {
    let keys: Vec<String> = path.split("__").map(|k| k.to_ascii_lowercase()).collect();
    if keys.iter().any(|k| k.is_empty()) {
        return Err("empty key segment".into());
    }
    let value = format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    let (last, parents) = keys.split_last().ok_or("empty key")?;
    let mut table = root;
    for key in parents {
        let entry = table
            .entry(key.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = entry
            .as_table_mut()
            .ok_or_else(|| format!("`{key}` is not a table"))?;
    }
    table.insert(last.clone(), value);
    Ok(())
}

mod secrets;
use secrets::{is_public_demo_key, resolve_secret, resolve_url};
pub use secrets::{weak_secret, DEMO_JWT_SECRET, PUBLIC_DEMO_SECRETS, SECRET_BYTES_MIN};

#[cfg(test)]
mod tests;
