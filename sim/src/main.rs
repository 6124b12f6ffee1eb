//! The `sim` binary: prints its seed first, plays the simulation (against `--target`, or a
//! gateway it starts from the binary next to it on a throwaway data folder), prints a summary
//! and exits non-zero when any checker fails. `sim replay FILE.jsonl` replays recorded
//! callbacks; `sim certify` runs the certification kit (`sim::certify`) against any wallet.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use sim::client::{Attempt, Client};
use sim::dialect::Kind;
use sim::{Faults, Options};

/// Provider simulator: signed rounds with faults, checked for zero drift.
#[derive(Debug, Parser)]
struct Args {
    #[command(subcommand)]
    command: Option<Sub>,
    /// A running gateway (loopback). Without it, one is started. Given more than once
    /// (several gateways on one database), each attempt goes to the next in turn, so one
    /// player's calls and retries land on different gateways.
    #[arg(long, global = true)]
    target: Vec<String>,
    /// Its database, for the checkers (required with --target).
    #[arg(long, env = "DATABASE_URL")]
    database_url: Option<String>,
    /// Seed of the run; printed first, give it back to replay the same operations.
    #[arg(long)]
    seed: Option<u64>,
    /// Callbacks to send (every attempt counts).
    #[arg(long, default_value_t = 20_000)]
    callbacks: u64,
    /// Players played at once (each by one worker at a time).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Stop after this many seconds even if callbacks remain.
    #[arg(long)]
    duration: Option<u64>,
    /// Players used: player-1 ... player-N (the demo seeds 1000).
    #[arg(long, default_value_t = 200)]
    players: u32,
    /// Providers to play through, comma-separated: demo providers by code (`demo`, `demo-pp`,
    /// `demo-evo`, `demo-hub88`, `demo-ss`), `all` for the five of them, or
    /// `CODE:DIALECT` with `--secret` (dialects: native, pragmatic, evolution, hub88,
    /// softswiss). Players are shared out over them.
    #[arg(long, default_value = "demo", global = true)]
    provider: String,
    /// The secret (or token) of `CODE:DIALECT` providers.
    #[arg(long, default_value = "", global = true)]
    secret: String,
    /// The private key Hub88-style providers sign with.
    #[arg(
        long,
        default_value = "config/keys/demo-hub88-provider.pem",
        global = true
    )]
    hub88_key: PathBuf,
    /// Rate of every fault kind (0 to 1); the per-kind flags below override it.
    #[arg(long, default_value_t = 0.03)]
    fault_rate: f64,
    #[arg(long)]
    duplicate_rate: Option<f64>,
    #[arg(long)]
    mismatch_rate: Option<f64>,
    #[arg(long)]
    rollback_first_rate: Option<f64>,
    #[arg(long)]
    win_after_rollback_rate: Option<f64>,
    #[arg(long)]
    bad_signature_rate: Option<f64>,
    #[arg(long)]
    stale_rate: Option<f64>,
    #[arg(long)]
    malformed_rate: Option<f64>,
    #[arg(long)]
    timeout_rate: Option<f64>,
    #[arg(long)]
    late_retry_rate: Option<f64>,
    /// Seconds a win, rollback or end of round may take to get a final answer; longer is a
    /// violation.
    #[arg(long, default_value_t = 30)]
    final_within_s: u64,
}

#[derive(Debug, Subcommand)]
enum Sub {
    /// Replay recorded callbacks: one JSON object per line with `provider`, `action`,
    /// optional `headers` (an object), `body` (an object or a string), and optionally what
    /// was answered then: `http_status` and `response` (its `status`, `balance`, `currency`,
    /// `operator_transaction_id`). Any difference from a recorded answer, or a callback left
    /// without a final answer, makes the exit code 1.
    Replay {
        file: PathBuf,
        /// Sign every line afresh with --secret instead of sending its recorded signature.
        #[arg(long)]
        resign: bool,
    },
    /// Certify a wallet: every scenario of each provider's dialect, over HTTP only (balances by
    /// the dialect's balance call). A line per scenario, the last `N passed, M failed`; exit 0
    /// only when every mandatory scenario passed. Without --target a demo gateway is started.
    /// --target may name a path (`http://host:port/wallet/pp`) where the provider's calls go
    /// instead of `/api/provider-callback/{code}`.
    Certify {
        /// Players with funds in --currency, comma-separated; provider i plays with the i-th
        /// (in turn). Default: player-1000, player-999, ... one per provider (the demo's).
        #[arg(long, value_delimiter = ',')]
        players: Vec<String>,
        /// The currency of the players' wallets (two decimals).
        #[arg(long, default_value = "EUR")]
        currency: String,
        /// Seconds a call may go without a final answer (retried meanwhile).
        #[arg(long, default_value_t = 10)]
        patience_s: u64,
        /// Write a JUnit XML file (one suite per provider).
        #[arg(long)]
        junit: Option<PathBuf>,
        /// Write a markdown certificate (failed scenarios with every request and answer).
        #[arg(long)]
        report: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sim: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("sim: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: Args) -> anyhow::Result<bool> {
    if let Some(Sub::Certify { .. }) = &args.command {
        return certify(&args).await;
    }
    let (addrs, database, started) = match args.target.as_slice() {
        [_, ..] => {
            let addrs = args
                .target
                .iter()
                .map(|t| loopback(t))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let url = args.database_url.clone().context(
                "--target needs --database-url (or DATABASE_URL) for the checkers, e.g. \
                 \"host=$PWD/data/run user=wallet dbname=wallet\" for `cargo xtask run`",
            )?;
            (addrs, database_config(&url)?, None)
        }
        [] => {
            let players = if args.command.is_some() {
                1000
            } else {
                args.players.max(1000)
            };
            let gw = Started::start(players)?;
            (vec![gw.addr], gw.database()?, Some(gw))
        }
    };
    let result = match &args.command {
        Some(Sub::Replay { file, resign }) => replay(addrs[0], &args, file, *resign).await,
        Some(Sub::Certify { .. }) => unreachable!("certify returned above"),
        None => simulate(&addrs, database, &args).await,
    };
    if let Some(gw) = started {
        gw.stop()?;
    }
    result
}

async fn simulate(
    addrs: &[SocketAddr],
    database: tokio_postgres::Config,
    args: &Args,
) -> anyhow::Result<bool> {
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    println!("sim seed: {seed} (replay with --seed {seed})");
    let rate = |specific: Option<f64>| specific.unwrap_or(args.fault_rate).clamp(0.0, 1.0);
    let faults = Faults {
        concurrent_duplicate: rate(args.duplicate_rate),
        mismatch: rate(args.mismatch_rate),
        rollback_first: rate(args.rollback_first_rate),
        win_after_rollback: rate(args.win_after_rollback_rate),
        bad_signature: rate(args.bad_signature_rate),
        stale_timestamp: rate(args.stale_rate),
        malformed: rate(args.malformed_rate),
        client_timeout: rate(args.timeout_rate),
        late_retry: rate(args.late_retry_rate),
    };
    let tag = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis()
    );
    let options = Options {
        seed,
        tag,
        callbacks: args.callbacks,
        concurrency: args.concurrency,
        duration: args.duration.map(Duration::from_secs),
        players: args.players,
        providers: providers(args)?,
        faults,
        final_within: Duration::from_secs(args.final_within_s),
    };
    let report = sim::run(addrs, database, options).await?;
    for (name, result) in &report.checks {
        if let Err(first) = result {
            println!("FAILED {name}: {first}");
        }
    }
    println!("{}", report.summary());
    Ok(report.passed())
}

/// `sim certify`: against --target, or a demo gateway started for the run.
async fn certify(args: &Args) -> anyhow::Result<bool> {
    let Some(Sub::Certify {
        players,
        currency,
        patience_s,
        junit,
        report,
    }) = &args.command
    else {
        bail!("not a certify command");
    };
    let providers: Vec<_> = providers(args)?
        .into_iter()
        .map(|p| p.in_currency(currency))
        .collect();
    let players = if players.is_empty() {
        (0..providers.len())
            .map(|i| format!("player-{}", 1000 - i))
            .collect()
    } else {
        players.clone()
    };
    let (target, started) = match args.target.as_slice() {
        [] => {
            let gw = Started::start(1000)?;
            (format!("http://{}", gw.addr), Some(gw))
        }
        [one] => (one.clone(), None),
        _ => bail!("certify takes one --target"),
    };
    let tag = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis()
    );
    let options = sim::certify::Options {
        target,
        providers,
        players,
        patience: Duration::from_secs((*patience_s).max(1)),
        tag,
    };
    let result = sim::certify::run(&options).await;
    if let Some(gw) = started {
        gw.stop()?;
    }
    let cert = result.map_err(anyhow::Error::msg)?;
    for outcome in &cert.outcomes {
        println!("{}", outcome.line());
    }
    if let Some(path) = junit {
        std::fs::write(path, sim::certify::report::junit(&cert))
            .with_context(|| format!("write {}", path.display()))?;
    }
    if let Some(path) = report {
        let at = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        std::fs::write(path, sim::certify::report::markdown(&cert, &at))
            .with_context(|| format!("write {}", path.display()))?;
    }
    if !cert.certified() {
        println!("mandatory scenarios failed: not certified");
    }
    println!("{}", cert.summary());
    Ok(cert.certified())
}

async fn replay(
    addr: SocketAddr,
    args: &Args,
    file: &PathBuf,
    resign: bool,
) -> anyhow::Result<bool> {
    let text = std::fs::read_to_string(file).with_context(|| format!("read {}", file.display()))?;
    let mut statuses = std::collections::BTreeMap::<String, u64>::new();
    let mut mismatches = 0u64;
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let record: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("line {}", n + 1))?;
        let provider = record["provider"].as_str().unwrap_or(&args.provider);
        let action = record["action"].as_str().context("a line without action")?;
        let body = match &record["body"] {
            serde_json::Value::String(s) => s.clone().into_bytes(),
            other => serde_json::to_vec(other)?,
        };
        let secret = if args.secret.is_empty() {
            "demo-secret"
        } else {
            &args.secret
        };
        let native = sim::dialect::Provider::new(provider, Kind::Native, secret, None)
            .map_err(anyhow::Error::msg)?;
        let client = Client::new(addr, native);
        let attempt = if resign {
            let encoded = sim::dialect::Encoded {
                path: action.to_string(),
                body: body.clone(),
                tx: None,
                op: sim::dialect::OpKind::EndRound,
            };
            client
                .attempt(&encoded, sim::client::Send::Signed, Duration::from_secs(10))
                .await
        } else {
            let signature = record["headers"]
                .as_object()
                .and_then(|h| {
                    h.iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case("x-signature"))
                })
                .and_then(|(_, v)| v.as_str())
                .map(str::to_string);
            client
                .post(
                    &format!("/api/provider-callback/{provider}/{action}"),
                    signature,
                    body,
                    Duration::from_secs(10),
                )
                .await
        };
        let (label, problem) = match &attempt {
            Attempt::Final(r) => (
                format!("200 {}", r.status),
                differences(&record, 200, Some(r)),
            ),
            Attempt::Refused(code, status) => (
                format!("{code} {status}"),
                differences(&record, *code, None),
            ),
            Attempt::Unknown(why) => (
                format!("unknown ({why})"),
                Some("no final answer".to_string()),
            ),
        };
        println!("{}: {action} -> {label}", n + 1);
        *statuses.entry(label).or_default() += 1;
        if let Some(problem) = problem {
            println!("MISMATCH line {}: {problem}", n + 1);
            mismatches += 1;
        }
    }
    println!("replayed: {statuses:?}; mismatches: {mismatches}");
    Ok(mismatches == 0)
}

/// How an answer differs from the line's recorded `http_status` and `response` (the fields
/// it has: `status`, `balance`, `currency`, `operator_transaction_id`); a replay of a settled
/// callback must get its original answer back.
fn differences(
    record: &serde_json::Value,
    http_status: u16,
    response: Option<&dialects::wire::Response>,
) -> Option<String> {
    let mut problems = Vec::new();
    if let Some(want) = record["http_status"].as_u64() {
        if want != u64::from(http_status) {
            problems.push(format!("HTTP {http_status}, recorded {want}"));
        }
    }
    if let Some(recorded) = record["response"].as_object() {
        let got = response.map(|r| serde_json::to_value(r).unwrap_or_default());
        for field in ["status", "balance", "currency", "operator_transaction_id"] {
            let Some(want) = recorded.get(field) else {
                continue;
            };
            let have = got.as_ref().map(|g| g[field].clone()).unwrap_or_default();
            if &have != want {
                problems.push(format!("{field} {have}, recorded {want}"));
            }
        }
    }
    (!problems.is_empty()).then(|| problems.join("; "))
}

/// The providers of `--provider`.
fn providers(args: &Args) -> anyhow::Result<Vec<sim::dialect::Provider>> {
    let mut providers = Vec::new();
    for entry in args
        .provider
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        let codes: Vec<&str> = if entry == "all" {
            sim::dialect::DEMO.iter().map(|(c, _, _)| *c).collect()
        } else {
            vec![entry]
        };
        let key = if args.hub88_key.exists() {
            args.hub88_key.clone()
        } else {
            // Run from elsewhere than the repository's root: the demo key beside the sources.
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join(&args.hub88_key)
        };
        for code in codes {
            let provider = match code.split_once(':') {
                Some((code, dialect)) => {
                    let kind = Kind::parse(dialect)
                        .with_context(|| format!("unknown dialect {dialect:?}"))?;
                    sim::dialect::Provider::new(code, kind, &args.secret, Some(&key))
                }
                None => sim::dialect::Provider::demo(code, &key),
            };
            providers.push(provider.map_err(anyhow::Error::msg)?);
        }
    }
    Ok(providers)
}

/// Parses a connection string; a relative socket folder (`host=./data/run`, where
/// `cargo xtask run` keeps the embedded cluster's socket) is made absolute first, since a
/// libpq-style host is a socket folder only when it starts with `/`.
fn database_config(url: &str) -> anyhow::Result<tokio_postgres::Config> {
    let cwd = std::env::current_dir()?;
    absolute_socket_hosts(url, &cwd)
        .parse()
        .context("--database-url")
}

fn absolute_socket_hosts(url: &str, cwd: &std::path::Path) -> String {
    url.split_whitespace()
        .map(|part| match part.strip_prefix("host=") {
            Some(host) if host.starts_with('.') => format!("host={}", cwd.join(host).display()),
            _ => part.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn loopback(target: &str) -> anyhow::Result<SocketAddr> {
    let rest = target
        .strip_prefix("http://")
        .context("--target must be an http:// URL")?;
    let host = rest.split('/').next().unwrap_or(rest);
    let addr = host.to_socket_addrs()?.next().context("no address")?;
    if !addr.ip().is_loopback() {
        bail!("refusing {addr}: the simulator only targets loopback");
    }
    Ok(addr)
}

/// A gateway started for this run, on a throwaway data folder.
struct Started {
    gateway: harness::launch::Launched,
    addr: SocketAddr,
    data: tempfile::TempDir,
}

impl Started {
    fn start(players: u32) -> anyhow::Result<Started> {
        let bin = std::env::current_exe()?.with_file_name("gateway");
        let data = tempfile::Builder::new()
            .prefix("sim-")
            .tempdir_in(std::env::temp_dir())?;
        let mut config = PathBuf::from("config/demo.toml");
        if !config.exists() {
            config = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/demo.toml");
        }
        let env = [("GATEWAY__DEMO__PLAYERS".to_string(), players.to_string())];
        let gateway = harness::launch::Launched::start(&bin, &config, data.path(), &env)?;
        Ok(Started {
            addr: gateway.addr(),
            gateway,
            data,
        })
    }

    fn database(&self) -> anyhow::Result<tokio_postgres::Config> {
        Ok(format!(
            "host={} port=5432 user=wallet dbname=wallet",
            self.data.path().join("run").display()
        )
        .parse()?)
    }

    fn stop(self) -> anyhow::Result<()> {
        self.gateway.stop()
    }
}

#[cfg(test)]
mod tests {
    use super::absolute_socket_hosts;

    #[test]
    fn relative_socket_folders_become_absolute() {
        let cwd = std::path::Path::new("/srv/wallet");
        assert_eq!(
            absolute_socket_hosts("host=./data/run user=wallet dbname=wallet", cwd),
            "host=/srv/wallet/./data/run user=wallet dbname=wallet"
        );
        let unchanged = "host=/tmp/x port=5432 user=wallet dbname=wallet";
        assert_eq!(absolute_socket_hosts(unchanged, cwd), unchanged);
        assert_eq!(
            absolute_socket_hosts("host=localhost", cwd),
            "host=localhost"
        );
    }
}
