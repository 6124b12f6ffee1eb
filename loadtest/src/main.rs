//! Open-loop load generator: signed native callbacks at a constant arrival rate, latencies in
//! an HDR histogram measured from each request's *intended* send time (so a stalled server
//! cannot hide its stall: coordinated omission safe), a summary of statuses and percentiles.
//!
//! Targets loopback only and stops by itself. Without `--target` it starts the `gateway` binary
//! built next to it on a throwaway data folder with enough demo players.
#![allow(clippy::float_arithmetic)] // rates and percentiles, never money

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use http_body_util::{BodyExt, Full};
use mix::Shape;

mod drive;
mod mix;
mod tally;

use drive::*;

/// Printed on standard error when the schedule begins (after the set-up).
const CLOCK_STARTS: &str = "loadtest: the clock starts";

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// The realistic mix of signed money callbacks.
    Callbacks,
    /// `GET /ready`: the HTTP ceiling (no signature, no database).
    Ping,
    /// `POST /api/auth/login` of random demo players (`--password`): the REST module's
    /// Argon2-bound login rate (raise the gateway's login rate limits for it).
    Logins,
    /// `GET /api/admin/reports/{ggr,rtp,rounds,players}` of the last 30 days by day, provider
    /// and game, in turn, as the demo admin (`--admin-password`, `--admin-totp`): what the
    /// back office's reports cost over the ledger present.
    Reports,
}

/// Open-loop load of signed provider callbacks against a gateway on this machine.
#[derive(Debug, Parser)]
struct Args {
    /// A running gateway (loopback only). Without it, one is started from `--gateway-bin`.
    /// Given more than once (several gateways on one database), the connections are spread
    /// over them in turn, so every gateway gets callbacks for every player.
    #[arg(long)]
    target: Vec<String>,
    /// With several targets, send each player's calls to one of them, as a balancer that
    /// hashes on the player id would (here: player number modulo the number of targets).
    #[arg(long)]
    route_by_player: bool,
    /// Requests per second offered (constant arrival rate).
    #[arg(long, default_value_t = 5_000)]
    rate: u64,
    /// Seconds measured, after the warm-up.
    #[arg(long, default_value_t = 20)]
    duration: u64,
    /// Seconds of load before measuring starts.
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// Seconds the run waits for open requests after the schedule ended; those still open
    /// then are counted unanswered.
    #[arg(long, default_value_t = 30)]
    drain: u64,
    /// Players addressed: player-1 ... player-N must exist (the demo seeds 1000; a gateway
    /// this tool starts itself seeds N).
    #[arg(long, default_value_t = 1_000)]
    players: u32,
    /// HTTP/1.1 keep-alive connections, each carrying one request at a time. When all are
    /// busy, requests wait for one and the wait counts in their latency (not in service time).
    #[arg(long, default_value_t = 1_024)]
    connections: usize,
    /// Runtime threads of the generator.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    #[arg(long, value_enum, default_value_t = Mode::Callbacks)]
    mode: Mode,
    /// The shape of the callbacks (`--mode callbacks`): see `loadtest --help` for each.
    #[arg(long, value_enum, default_value_t = Shape::BetWin)]
    mix: Shape,
    /// Share of the every-dialect mix's calls that are Hub88-style, in percent: they are
    /// RSA-signed before the clock starts (about 1-2 ms of a core each), so the share bounds
    /// the generator's set-up time, not the measured part.
    #[arg(long, default_value_t = 4)]
    hub88_percent: u32,
    /// The provider to load: `demo` (native), another demo provider by code (`demo-pp`,
    /// `demo-evo`, `demo-hub88`, `demo-ss`), or `CODE:DIALECT` with `--secret`.
    #[arg(long, default_value = "demo")]
    provider: String,
    /// The secret (or token) of a `CODE:DIALECT` provider, or of a native `--provider CODE`.
    #[arg(long, default_value = "demo-secret")]
    secret: String,
    /// The private key Hub88-style providers sign with.
    #[arg(long, default_value = "config/keys/demo-hub88-provider.pem")]
    hub88_key: PathBuf,
    /// Share of requests that repeat an earlier request (a provider retry), in percent.
    #[arg(long, default_value_t = 10)]
    duplicate_percent: u32,
    /// Gateway binary to start when no `--target` is given (default: next to this binary).
    #[arg(long)]
    gateway_bin: Option<PathBuf>,
    /// Extra `KEY=VALUE` environment for the started gateway (e.g.
    /// GATEWAY__SETTLEMENT__BATCH_LEN_MAX=1).
    #[arg(long = "gateway-env")]
    gateway_env: Vec<String>,
    /// The demo players' password (`--mode logins`).
    #[arg(long, default_value = "demo-player-password")]
    password: String,
    /// The demo admin's password and TOTP secret (`--mode reports`).
    #[arg(long, default_value = "demo-admin-password")]
    admin_password: String,
    #[arg(long, default_value = "JBSWY3DPEHPK3PXP")]
    admin_totp: String,
    /// The reports asked (`--mode reports`), comma-separated.
    #[arg(long, default_value = "ggr,rtp,rounds,players")]
    reports: String,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
    /// Also print the measured part second by second (by intended send time): answered,
    /// p50, p99 and max latency, so a tail can be lined up with what the target did then.
    #[arg(long)]
    timeline: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.rate == 0 || args.duration == 0 || args.connections == 0 {
        bail!("--rate, --duration and --connections must be > 0");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let mut started = None;
    let addrs = if args.target.is_empty() {
        let gateway = StartedGateway::start(&args)?;
        let addr = gateway.addr;
        started = Some(gateway);
        vec![addr]
    } else {
        args.target
            .iter()
            .map(|t| loopback_addr(t))
            .collect::<anyhow::Result<Vec<_>>>()?
    };
    let result = drive(&args, &addrs).await;
    if let Some(gateway) = started {
        gateway.stop()?;
    }
    let summary = result?;
    if args.json {
        println!("{}", summary.to_json(&args));
    } else {
        summary.print(&args);
    }
    // `--mode ping` answers `/ready`: no callbacks to judge.
    let problem = match args.mode {
        Mode::Callbacks => refusals_problem(&summary.tally.statuses),
        Mode::Ping => None,
        Mode::Logins => logins_problem(&summary.tally.statuses),
        Mode::Reports => reports_problem(&summary.tally.statuses),
    };
    if let Some(problem) = problem {
        // A run whose answers are mostly refusals measured the refusal path, not settlement.
        eprintln!("\nloadtest: THIS RUN MEASURED NOTHING USEFUL: {problem}");
        std::process::exit(3);
    }
    Ok(())
}

/// Reports not answered 200: a run of refusals measured nothing.
fn reports_problem(statuses: &std::collections::BTreeMap<String, u64>) -> Option<String> {
    let ok = statuses.get("200 OK").copied().unwrap_or(0);
    (ok == 0 || ok < statuses.values().sum::<u64>())
        .then(|| format!("reports not all answered 200: {statuses:?}"))
}

/// Logs in as the admin (password and a TOTP code) and answers the access token. A code is
/// accepted once, so a run right after another tries the next step's code (the gateway
/// accepts one step of clock skew) and, when both were spent, waits for the next step.
async fn admin_token(addr: SocketAddr, args: &Args) -> anyhow::Result<String> {
    let mut refusals = Vec::new();
    for attempt in 0..3 {
        if attempt > 0 {
            let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
            tokio::time::sleep(Duration::from_secs(30 - now % 30 + 1)).await;
        }
        if let Some(token) = admin_login(addr, args, &mut refusals).await? {
            return Ok(token);
        }
    }
    bail!("admin login refused: {refusals:?}")
}

/// One try with this step's code and the next one's.
async fn admin_login(
    addr: SocketAddr,
    args: &Args,
    refusals: &mut Vec<String>,
) -> anyhow::Result<Option<String>> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    for at in [now, now + 30] {
        let code = rest::auth::totp::code_at(&args.admin_totp, at).context("--admin-totp")?;
        let body = serde_json::json!({
            "username": "admin",
            "password": args.admin_password,
            "totp_code": code,
        });
        let mut sender = connect(addr).await?;
        let request = http::Request::post("/api/auth/login")
            .header(http::header::HOST, "loadtest")
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.to_string())))?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let answer: serde_json::Value =
            serde_json::from_slice(&response.into_body().collect().await?.to_bytes())?;
        if let Some(token) = answer["data"]["access_token"].as_str() {
            return Ok(Some(token.to_string()));
        }
        refusals.push(format!("{status}: {answer}"));
    }
    Ok(None)
}

/// Logins that were refused for a reason other than load: wrong password or players, or the
/// gateway's rate limits (a measurement of 429s measures nothing).
fn logins_problem(statuses: &std::collections::BTreeMap<String, u64>) -> Option<String> {
    let total: u64 = statuses.values().sum();
    let set_up = [
        "401 INVALID_CREDENTIALS",
        "429 RATE_LIMITED",
        "404 NOT_FOUND",
    ]
    .iter()
    .map(|label| statuses.get(*label).copied().unwrap_or(0))
    .sum::<u64>();
    if total == 0 {
        return Some("no request was answered".into());
    }
    (set_up * 100 >= total).then(|| {
        format!(
            "{set_up} of {total} logins were refused (credentials, rate limits or REST off): \
             {statuses:?}"
        )
    })
}

/// Refusals that mean the run was set up wrong (players that do not exist, a wrong secret or
/// provider), so it measured the refusal path instead of settlement. `503 TEMPORARY_ERROR`
/// (overload) is a result, not a set-up error: reported, never failed on.
fn refusals_problem(statuses: &std::collections::BTreeMap<String, u64>) -> Option<String> {
    let total: u64 = statuses.values().sum();
    if total == 0 {
        return Some("no request was answered".into());
    }
    let count = |label: &str| statuses.get(label).copied().unwrap_or(0);
    let unknown = count("200 UNKNOWN_PLAYER");
    if unknown * 100 >= total {
        return Some(format!(
            "{unknown} of {total} answers were UNKNOWN_PLAYER: --players is larger than the \
             players the gateway has (the demo seeds player-1 ... player-1000)"
        ));
    }
    let unsigned = count("401 INVALID_SIGNATURE");
    if unsigned > 0 {
        return Some(format!(
            "{unsigned} of {total} answers were INVALID_SIGNATURE: check --provider and --secret"
        ));
    }
    let sum = |prefix: &str| -> u64 {
        statuses
            .iter()
            .filter(|(label, _)| label.starts_with(prefix))
            .map(|(_, n)| n)
            .sum()
    };
    let refused: u64 = statuses
        .iter()
        .filter(|(label, _)| label.contains(" REFUSED"))
        .map(|(_, n)| n)
        .sum();
    if refused > 0 {
        return Some(format!(
            "{refused} of {total} requests were refused (signature or syntax): check --provider, \
             --secret and --hub88-key: {statuses:?}"
        ));
    }
    // 412 is the SoftSwiss-style dialect's business refusal, not a refusal of the request.
    let client_errors = sum("4") - sum("412 ");
    if client_errors * 100 >= total {
        return Some(format!(
            "{client_errors} of {total} answers refused the request itself: {statuses:?}"
        ));
    }
    let answered = sum("200 ") + sum("412 ");
    let ok = count("200 OK");
    if ok * 2 < answered {
        return Some(format!(
            "only {ok} of {answered} business answers were OK: {statuses:?}"
        ));
    }
    None
}

/// Only 127.0.0.0/8 and ::1: this tool never sends load anywhere else.
fn loopback_addr(target: &str) -> anyhow::Result<SocketAddr> {
    let rest = target
        .strip_prefix("http://")
        .context("--target must be an http:// URL")?;
    let host_port = rest.split('/').next().unwrap_or(rest);
    let addr = host_port
        .to_socket_addrs()
        .with_context(|| format!("resolve {host_port}"))?
        .next()
        .context("no address")?;
    let loopback = match addr.ip() {
        IpAddr::V4(ip) => ip.is_loopback(),
        IpAddr::V6(ip) => ip.is_loopback(),
    };
    if !loopback {
        bail!("refusing to load {addr}: only loopback targets (127.0.0.0/8, ::1) are allowed");
    }
    Ok(addr)
}

/// A gateway started for this run (the binary beside this one, or `--gateway-bin`), on a
/// throwaway data folder with enough demo players.
struct StartedGateway {
    gateway: harness::launch::Launched,
    addr: SocketAddr,
    _data: tempfile::TempDir,
}

impl StartedGateway {
    fn start(args: &Args) -> anyhow::Result<StartedGateway> {
        let bin = match &args.gateway_bin {
            Some(bin) => bin.clone(),
            None => std::env::current_exe()?.with_file_name("gateway"),
        };
        let data = tempfile::Builder::new()
            .prefix("loadtest-")
            .tempdir_in(std::env::temp_dir())?;
        let mut env = vec![(
            "GATEWAY__DEMO__PLAYERS".to_string(),
            args.players.to_string(),
        )];
        for pair in &args.gateway_env {
            let (k, v) = pair
                .split_once('=')
                .context("--gateway-env takes KEY=VALUE")?;
            env.push((k.to_string(), v.to_string()));
        }
        let config = workspace_file("config/demo.toml");
        let gateway = harness::launch::Launched::start(&bin, &config, data.path(), &env)?;
        let addr = gateway.addr();
        eprintln!("loadtest: started gateway {} at {addr}", bin.display());
        Ok(StartedGateway {
            gateway,
            addr,
            _data: data,
        })
    }

    fn stop(self) -> anyhow::Result<()> {
        self.gateway.stop()
    }
}

fn workspace_file(path: &str) -> PathBuf {
    let here = PathBuf::from(path);
    if here.exists() {
        return here;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

/// The provider `--provider` names, in its dialect (native unless a demo code or
/// `CODE:DIALECT` says otherwise).
fn provider_of(args: &Args) -> anyhow::Result<sim::dialect::Provider> {
    let key = workspace_file(&args.hub88_key.display().to_string());
    match args.provider.split_once(':') {
        Some((code, dialect)) => {
            let kind = sim::dialect::Kind::parse(dialect)
                .with_context(|| format!("unknown dialect {dialect:?}"))?;
            sim::dialect::Provider::new(code, kind, &args.secret, Some(&key))
        }
        None if sim::dialect::DEMO
            .iter()
            .any(|(c, _, _)| *c == args.provider) =>
        {
            sim::dialect::Provider::demo(&args.provider, &key)
        }
        None => sim::dialect::Provider::new(
            &args.provider,
            sim::dialect::Kind::Native,
            &args.secret,
            None,
        ),
    }
    .map_err(anyhow::Error::msg)
}

#[cfg(test)]
mod tests {
    use super::{drive, refusals_problem, Args};
    use crate::tally::Tally;
    use clap::Parser;

    /// The timeline takes each second's answers from every connection's tally, in order.
    #[test]
    fn the_timeline_gives_each_seconds_percentiles_over_every_connection() {
        let (mut a, mut b) = (Tally::new(), Tally::new());
        // Second 0: 1..=100 ms, split over two connections; second 2: one slow answer.
        for ms in 1..=100u32 {
            let tally = if ms % 2 == 0 { &mut a } else { &mut b };
            tally.answers.push((0, ms * 1000));
        }
        b.answers.push((2, 250_000));
        a.merge(b);
        assert_eq!(
            a.timeline(),
            vec![(0, 100, 50.0, 99.0, 100.0), (2, 1, 250.0, 250.0, 250.0)]
        );
    }

    /// A target that accepts connections and never answers: the run still ends, `--drain`
    /// seconds after its schedule, with every measured request counted unanswered.
    #[tokio::test]
    async fn a_target_that_never_answers_ends_the_run_with_its_requests_unanswered() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                open.push(stream);
            }
        });
        let args = Args::parse_from([
            "loadtest",
            "--mode",
            "ping",
            "--rate",
            "200",
            "--duration",
            "1",
            "--warmup",
            "0",
            "--drain",
            "1",
            "--connections",
            "8",
        ]);
        let started = std::time::Instant::now();
        let summary = drive(&args, &[addr]).await.unwrap();
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        assert_eq!(summary.sent, 200);
        assert_eq!(summary.tally.completed, 0);
        assert_eq!(summary.unanswered + summary.unsent, 200);
        assert!(summary.unanswered > 0);
        held.abort();
    }

    fn check(statuses: &[(&str, u64)], expect_problem: bool) {
        let map = statuses.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        assert_eq!(
            refusals_problem(&map).is_some(),
            expect_problem,
            "{statuses:?}"
        );
    }

    #[test]
    fn runs_that_measure_refusals_are_called_out() {
        check(&[("200 OK", 950), ("200 INSUFFICIENT_FUNDS", 50)], false);
        check(&[("200 OK", 40), ("200 UNKNOWN_PLAYER", 5960)], true);
        check(&[("200 OK", 990), ("200 UNKNOWN_PLAYER", 10)], true);
        check(&[("200 OK", 999), ("401 INVALID_SIGNATURE", 1)], true);
        check(&[("200 OK", 10), ("503 TEMPORARY_ERROR", 90)], false);
        check(&[("200 OK", 10), ("200 INSUFFICIENT_FUNDS", 90)], true);
        check(&[("200 OK", 90), ("404 UNKNOWN_PROVIDER", 10)], true);
        check(&[("200 OK", 90), ("412 100", 10)], false);
        check(&[("200 OK", 99), ("401 REFUSED missing", 1)], true);
        check(&[], true);
    }
}
