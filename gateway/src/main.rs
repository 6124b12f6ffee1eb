//! The `gateway` binary: parse the command line, load the configuration (exit 64 when invalid),
//! start, and shut down gracefully on SIGINT/SIGTERM.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use gateway::app::{self, Overrides};
use gateway::config::Config;

/// glibc's allocator spent a fifth of the gateway's CPU under load (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Seamless-wallet gateway for online casinos.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Configuration file (TOML).
    #[arg(long, default_value = "config/gateway.toml")]
    config: PathBuf,
    /// Address to listen on (overrides server.listen); port 0 picks a free port.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Folder of the embedded PostgreSQL cluster (overrides embedded.data_dir).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Tool>,
}

/// Tools that read the gateway's database instead of serving.
#[derive(Debug, clap::Subcommand)]
enum Tool {
    /// Prints the reconciliation report as JSON (wallets against their ledger, open rounds,
    /// unmatched tombstones, flagged wallets, provider totals) and exits 1 when a wallet
    /// differs from its ledger. Reads `DATABASE_URL` / `database.url`, else the embedded
    /// cluster of `--data-dir` while its gateway runs.
    Reconcile {
        /// Provider totals from this time on (RFC 3339; default: 24 hours ago).
        #[arg(long)]
        from: Option<String>,
        /// ...and before this time (RFC 3339; default: now).
        #[arg(long)]
        to: Option<String>,
    },
    /// Drops the daily partitions of the ledger and of the kept callbacks whose every row is
    /// older than `retention.days` (never a younger row), oldest first; prints what it did as
    /// JSON. Each ledger day leaves its per-wallet totals for reconciliation. Same database as
    /// `reconcile`.
    Prune {
        /// Write each partition's rows to DIR/<partition>.csv before dropping it.
        #[arg(long, value_name = "DIR")]
        archive: Option<PathBuf>,
        /// Only list what would be dropped.
        #[arg(long)]
        dry_run: bool,
    },
}

/// sysexits.h EX_CONFIG-adjacent EX_USAGE: the configuration was refused.
const EXIT_CONFIG: u8 = 64;

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match Config::load(&args.config) {
        Ok(config) => config,
        Err(invalid) => {
            eprintln!("{invalid}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    init_logging(&config);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let embedded = matches!(config.database.resolve_url(), Ok(None));
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.worker_threads(config.server.runtime_threads(cores, embedded));
    let runtime = match runtime.enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| config.embedded.data_dir.clone());
    match args.command {
        Some(Tool::Reconcile { from, to }) => {
            return match runtime.block_on(reconcile(&config, &data_dir, from, to)) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::FAILURE,
                Err(e) => {
                    eprintln!("gateway reconcile: {e:#}");
                    ExitCode::from(2)
                }
            };
        }
        Some(Tool::Prune { archive, dry_run }) => {
            return match runtime.block_on(prune(&config, &data_dir, archive, dry_run)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("gateway prune: {e:#}");
                    ExitCode::from(2)
                }
            };
        }
        None => {}
    }
    let overrides = Overrides {
        listen: args.listen,
        data_dir: args.data_dir,
    };
    match runtime.block_on(run(config, overrides)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<app::Refused>().is_some() => {
            eprintln!("gateway: {e:#}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("gateway: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config, overrides: Overrides) -> anyhow::Result<()> {
    // Hooked before the port is announced: a SIGTERM that follows the "listening" line at once
    // must drain, not kill with the default action.
    let stop = stop_signals()?;
    let running = app::start(config, overrides).await?;
    // Tests and tools read this exact line to find the chosen port.
    println!("listening on http://{}", running.addr);
    if config_demo_logins(&running) {
        let d = &running.state.config.demo;
        // Written, not `println!`: a reader that took the line above and closed the pipe
        // must not take the gateway down.
        let _ = writeln!(
            std::io::stdout(),
            "demo logins (public values): admin `{}` / `{}` with TOTP secret {}; players \
             {}1..{}{} / `{}`",
            d.admin_username,
            d.admin_password,
            d.admin_totp_secret,
            d.player_prefix,
            d.player_prefix,
            d.players,
            d.player_password
        );
    }
    let shutdown = running.shutdown_handle();
    tokio::spawn(async move {
        stop.await;
        tracing::info!("shutdown requested: draining");
        let _ = shutdown.send(true);
    });
    running.wait().await?;
    tracing::info!("stopped");
    Ok(())
}

/// `gateway reconcile`: the report on stdout; `Ok(false)` when a wallet differs from its ledger.
async fn reconcile(
    config: &Config,
    data_dir: &std::path::Path,
    from: Option<String>,
    to: Option<String>,
) -> anyhow::Result<bool> {
    use anyhow::Context;
    let client = connect(config, data_dir).await?;
    let window = client
        .query_one(
            "SELECT coalesce($1::text::timestamptz, now() - interval '1 day')::text,
                    coalesce($2::text::timestamptz, now())::text",
            &[&from, &to],
        )
        .await
        .context("--from / --to")?;
    let (from, to): (String, String) = (window.get(0), window.get(1));
    let report = settlement::reconcile::report(&client, &from, &to).await?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(report.balanced)
}

/// `gateway prune`: what it dropped (or would drop), as JSON on stdout.
async fn prune(
    config: &Config,
    data_dir: &std::path::Path,
    archive: Option<PathBuf>,
    dry_run: bool,
) -> anyhow::Result<()> {
    let mut client = connect(config, data_dir).await?;
    let pruned = settlement::partitions::prune(
        &mut client,
        config.retention.days,
        archive.as_deref(),
        dry_run,
    )
    .await?;
    let out = serde_json::json!({
        "retention_days": config.retention.days,
        "dry_run": dry_run,
        "pruned": pruned,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

/// The tools' connection: `DATABASE_URL` / `database.url`, else the running embedded cluster.
async fn connect(
    config: &Config,
    data_dir: &std::path::Path,
) -> anyhow::Result<tokio_postgres::Client> {
    use anyhow::Context;
    let url = match config.database.resolve_url().map_err(anyhow::Error::msg)? {
        Some(url) => url,
        None => pgembed::running_connection_string(data_dir, &config.database.embedded_dbname),
    };
    let pg: tokio_postgres::Config = url.parse().context("database url")?;
    let (client, connection) = pg
        .connect(tokio_postgres::NoTls)
        .await
        .context("connect (is the gateway running on this --data-dir, or DATABASE_URL set?)")?;
    tokio::spawn(connection);
    Ok(client)
}

/// Whether this gateway seeded the demo's REST logins.
fn config_demo_logins(running: &app::Running) -> bool {
    let config = &running.state.config;
    config.demo.enabled && config.rest.enabled
}

/// A future that completes on SIGTERM or Ctrl-C; the handlers are installed when this returns.
fn stop_signals() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = interrupt.recv() => {}
        }
    })
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log.level));
    // Colours only for a person at a terminal; log files and shippers get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if config.log.format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}
