//! What is wrong with a configuration: every problem at once, each naming its key, and the
//! semantic checks that find them (the durability settings no configuration may override).

use std::collections::BTreeSet;

use super::secrets::{is_public_demo_key, resolve_secret};
use super::*;

/// PostgreSQL settings that would let a commit be acknowledged before it is on disk (or leave
/// torn pages after a crash). The embedded cluster keeps PostgreSQL's safe defaults for them,
/// and the lanes set `synchronous_commit = on` on their own connections.
pub const DURABILITY_SETTINGS: &[&str] = &["fsync", "synchronous_commit", "full_page_writes"];

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

impl Config {
    /// Semantic checks; each problem names its key.
    pub(crate) fn problems(&self) -> Vec<Problem> {
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
