//! Open-loop load generator: signed native callbacks at a constant arrival rate, latencies in
//! an HDR histogram measured from each request's *intended* send time (so a stalled server
//! cannot hide its stall: coordinated omission safe), a summary of statuses and percentiles.
//!
//! Targets loopback only and stops by itself. Without `--target` it starts the `gateway` binary
//! built next to it on a throwaway data folder with enough demo players.
#![allow(clippy::float_arithmetic)] // rates and percentiles, never money

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use gateway::provider::wire::{sign_native, SIGNATURE_HEADER};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use mix::{Call, Kind, Mix, Shape};
use sim::dialect::OpKind;
use tokio::time::Instant;

mod mix;

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

/// A gateway process started for this run, on a throwaway data folder.
struct StartedGateway {
    child: Child,
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
        let config = workspace_file("config/demo.toml");
        let mut command = Command::new(&bin);
        command
            .arg("--config")
            .arg(&config)
            .args(["--listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(data.path())
            .env("GATEWAY__DEMO__PLAYERS", args.players.to_string())
            .env_remove("DATABASE_URL")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if std::env::var_os("RUST_LOG").is_none() {
            command.env("RUST_LOG", "warn");
        }
        for pair in &args.gateway_env {
            let (k, v) = pair
                .split_once('=')
                .context("--gateway-env takes KEY=VALUE")?;
            command.env(k, v);
        }
        let mut child = command.spawn().with_context(|| {
            format!(
                "start {} (build it with cargo build --release)",
                bin.display()
            )
        })?;
        let stdout = child.stdout.take().context("gateway stdout")?;
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)?;
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .with_context(|| format!("gateway did not start: {line:?}"))?
            .parse()?;
        eprintln!("loadtest: started gateway {} at {addr}", bin.display());
        Ok(StartedGateway {
            child,
            addr,
            _data: data,
        })
    }

    fn stop(mut self) -> anyhow::Result<()> {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status()?;
        let status = self.child.wait()?;
        if !status.success() {
            bail!("gateway exited with {status}");
        }
        Ok(())
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

struct Job {
    intended: Instant,
    /// The measured second it was meant to go out in (0 for the first; 0 in the warm-up).
    second: u32,
    kind: Kind,
    call: Call,
    /// Measured (past the warm-up)?
    measured: bool,
}

/// What one worker saw.
struct Tally {
    /// From the intended send time: what a provider sees, queueing included.
    all: Histogram<u64>,
    duplicates: Histogram<u64>,
    /// From the moment the request went out on a connection: the target's own time.
    service: Histogram<u64>,
    statuses: std::collections::BTreeMap<String, u64>,
    transport_errors: u64,
    completed: u64,
    /// Measured requests on the wire when the run's hard stop came.
    unanswered: u64,
    /// When the last measured request was answered.
    last_answer: Option<Instant>,
    /// Every measured answer as (its `Job::second`, latency in µs): the `--timeline`.
    answers: Vec<(u32, u32)>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            all: Histogram::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds"),
            duplicates: Histogram::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds"),
            service: Histogram::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds"),
            statuses: Default::default(),
            transport_errors: 0,
            completed: 0,
            unanswered: 0,
            last_answer: None,
            answers: Vec::new(),
        }
    }

    fn merge(&mut self, other: Tally) {
        let _ = self.all.add(&other.all);
        let _ = self.duplicates.add(&other.duplicates);
        let _ = self.service.add(&other.service);
        for (k, v) in other.statuses {
            *self.statuses.entry(k).or_default() += v;
        }
        self.transport_errors += other.transport_errors;
        self.completed += other.completed;
        self.unanswered += other.unanswered;
        self.last_answer = self.last_answer.max(other.last_answer);
        self.answers.extend(other.answers);
    }

    /// Per measured second: (second, answered, p50, p99, max), latencies in ms.
    fn timeline(&self) -> Vec<(u32, usize, f64, f64, f64)> {
        self.windows(1)
    }

    /// The same per window of `seconds` (the window's number first): per minute for a soak.
    fn windows(&self, seconds: u32) -> Vec<(u32, usize, f64, f64, f64)> {
        let mut answers = self.answers.clone();
        answers.sort_unstable();
        answers
            .chunk_by(|a, b| a.0 / seconds == b.0 / seconds)
            .map(|window| {
                let mut latencies: Vec<u32> = window.iter().map(|a| a.1).collect();
                latencies.sort_unstable();
                let at = |q: f64| {
                    let i =
                        ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len());
                    f64::from(latencies[i - 1]) / 1000.0
                };
                (
                    window[0].0 / seconds,
                    latencies.len(),
                    at(0.50),
                    at(0.99),
                    at(1.0),
                )
            })
            .collect()
    }
}

struct Summary {
    tally: Tally,
    /// From the end of the warm-up to the last answer (at least the scheduled duration): an
    /// overloaded target that answers late does not get credit for the offered rate.
    measured_s: f64,
    /// Wall-clock time (Unix ms) the measured part began: second 0 of the `--timeline`.
    measured_from_unix_ms: u128,
    /// Requests scheduled in the measured part.
    sent: u64,
    /// Of those, never sent: the generator's backlog (10 s of requests) was full.
    unsent: u64,
    /// Of those, sent or queued but not answered `--drain` seconds after the schedule ended.
    unanswered: u64,
}

async fn drive(args: &Args, addrs: &[SocketAddr]) -> anyhow::Result<Summary> {
    let connections = args
        .connections
        .min(open_files_allowed().saturating_sub(64).max(1));
    let capacity = (args.rate as usize * 10).max(1_000);
    // One queue for all connections, or with `--route-by-player` one per target, its
    // connections taking only its players' calls.
    let queues = if args.route_by_player { addrs.len() } else { 1 };
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..queues)
        .map(|_| async_channel::bounded::<Job>(capacity))
        .unzip();
    // Each request's credential: the provider's secret, or the admin's bearer token.
    let secret: Arc<[u8]> = match args.mode {
        Mode::Reports => admin_token(addrs[0], args).await?.into_bytes().into(),
        _ => args.secret.clone().into_bytes().into(),
    };
    let reports: Vec<Arc<str>> = args
        .reports
        .split(',')
        .flat_map(|report| {
            ["day", "provider", "game"]
                .map(|by| Arc::from(format!("/api/admin/reports/{report}?group_by={by}")))
        })
        .collect();
    // Connections waiting for a job, less jobs handed out that no connection has taken yet
    // (below zero: requests are waiting for a connection).
    let idle = Arc::new(AtomicIsize::new(0));
    // Connected before the clock starts: opening a thousand connections is set-up, not load.
    let (ready_tx, ready_rx) = async_channel::bounded::<()>(connections);
    // Raised `--drain` seconds after the schedule ended: what is still open then is unanswered.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let workers: Vec<_> = (0..connections)
        .map(|i| {
            let ready = ready_tx.clone();
            tokio::spawn(worker(
                addrs[i % addrs.len()],
                rxs[i % queues].clone(),
                secret.clone(),
                idle.clone(),
                ready,
                stop_rx.clone(),
            ))
        })
        .collect();
    drop(ready_tx);
    let connected = tokio::time::timeout(Duration::from_secs(30), async {
        let mut n = 0;
        while ready_rx.recv().await.is_ok() {
            n += 1;
        }
        n
    })
    .await
    .context("connections not open after 30 s")?;
    if connected < connections {
        eprintln!("loadtest: {connected} of {connections} connections opened at the start");
    }
    let mut busy_at_times = false;
    let mut unsent = 0u64;
    let seed = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() as u64 | 1;
    let key = workspace_file(&args.hub88_key.display().to_string());
    let mut mix = Mix::new(
        args.mix,
        provider_of(args)?,
        args.players,
        args.duplicate_percent,
        args.hub88_percent,
        &key,
        seed,
    )
    .map_err(anyhow::Error::msg)?;
    if args.mode == Mode::Callbacks && args.mix == Shape::EveryDialect {
        let signing = std::time::Instant::now();
        mix.presign(args.rate * (args.warmup + args.duration));
        eprintln!(
            "loadtest: Hub88-style calls signed ahead in {:.1} s",
            signing.elapsed().as_secs_f64()
        );
    }
    // Set-up is over (connections open, calls signed ahead): a bench measuring CPU over the
    // run waits for this line.
    eprintln!("{CLOCK_STARTS}");
    let start = Instant::now() + Duration::from_millis(200);
    let measure_from = start + Duration::from_secs(args.warmup);
    let measured_from_unix_ms = (SystemTime::now() + (measure_from - Instant::now()))
        .duration_since(UNIX_EPOCH)?
        .as_millis();
    let total = args.rate * (args.warmup + args.duration);
    let ping: Arc<str> = "/ready".into();
    let login: Arc<str> = "/api/auth/login".into();
    let mut sent = 0u64;
    for i in 0..total {
        let intended = start + Duration::from_nanos(i * 1_000_000_000 / args.rate);
        if intended > Instant::now() {
            tokio::time::sleep_until(intended).await;
        }
        let (kind, call) = match args.mode {
            Mode::Ping => (
                Kind::Ping,
                Call {
                    player: 0,
                    path: ping.clone(),
                    body: Bytes::new(),
                    dialect: None,
                },
            ),
            Mode::Callbacks => mix.next(),
            Mode::Reports => (
                Kind::Report,
                Call {
                    player: 0,
                    path: reports[i as usize % reports.len()].clone(),
                    body: Bytes::new(),
                    dialect: None,
                },
            ),
            Mode::Logins => {
                let player = 1 + mix.next_u32(args.players);
                let body = serde_json::json!({
                    "username": format!("player-{player}"),
                    "password": args.password,
                });
                (
                    Kind::Login,
                    Call {
                        player,
                        path: login.clone(),
                        body: Bytes::from(body.to_string()),
                        dialect: None,
                    },
                )
            }
        };
        let job = Job {
            intended,
            second: intended.saturating_duration_since(measure_from).as_secs() as u32,
            kind,
            call,
            measured: intended >= measure_from,
        };
        let measured = job.measured;
        sent += u64::from(measured);
        // More than 10 s of requests already waiting for a connection: this one is never
        // sent, and counted as such (a target that stopped answering does not stall the run).
        if txs[job.call.player as usize % queues]
            .try_send(job)
            .is_err()
        {
            unsent += u64::from(measured);
            continue;
        }
        if idle.fetch_sub(1, Ordering::AcqRel) <= 0 && measured {
            busy_at_times = true;
        }
    }
    drop(txs);
    let mut tally = Tally::new();
    // A target that cannot drain its backlog `--drain` s after the schedule ended: the
    // connections stop then, the requests still open or still queued are counted unanswered
    // (and fail the run's judgement like the unsent ones), and the run ends with what it
    // measured.
    let hard_stop = Instant::now() + Duration::from_secs(args.drain);
    let stopper = tokio::spawn(async move {
        tokio::time::sleep_until(hard_stop).await;
        let _ = stop_tx.send(true);
    });
    for w in workers {
        match tokio::time::timeout_at(hard_stop + Duration::from_secs(10), w).await {
            Ok(Ok(t)) => tally.merge(t),
            Ok(Err(e)) => bail!("worker failed: {e}"),
            Err(_) => bail!("a connection did not stop 10 s after the run's hard stop"),
        }
    }
    stopper.abort();
    let mut unanswered = tally.unanswered;
    for rx in &rxs {
        while let Ok(job) = rx.try_recv() {
            unanswered += u64::from(job.measured);
        }
    }
    if unanswered > 0 {
        eprintln!(
            "loadtest: {unanswered} measured requests still unanswered {} s after the schedule ended (counted as such)",
            args.drain
        );
    }
    if busy_at_times {
        eprintln!("loadtest: all {connections} connections were busy at times: requests waited for one (counted in their latency, not in the service time)");
    }
    let answered_s = tally.last_answer.map_or(0.0, |t| {
        t.saturating_duration_since(measure_from).as_secs_f64()
    });
    Ok(Summary {
        tally,
        measured_s: answered_s.max(args.duration as f64),
        measured_from_unix_ms,
        sent,
        unsent,
        unanswered,
    })
}

/// The open-file limit, raised to the hard limit first (every connection is a descriptor).
fn open_files_allowed() -> usize {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 1024;
    };
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return usize::try_from(hard).unwrap_or(usize::MAX);
    }
    usize::try_from(soft).unwrap_or(usize::MAX)
}

async fn worker(
    addr: SocketAddr,
    jobs: async_channel::Receiver<Job>,
    secret: Arc<[u8]>,
    idle: Arc<AtomicIsize>,
    ready: async_channel::Sender<()>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Tally {
    let mut tally = Tally::new();
    let mut sender = connect(addr).await.ok();
    if sender.is_some() {
        let _ = ready.send(()).await;
    }
    drop(ready);
    loop {
        idle.fetch_add(1, Ordering::AcqRel);
        let job = tokio::select! {
            biased;
            _ = stop.wait_for(|stopped| *stopped) => break,
            job = jobs.recv() => job,
        };
        let Ok(job) = job else { break };
        let sent_at = Instant::now();
        let result = tokio::select! {
            biased;
            _ = stop.wait_for(|stopped| *stopped) => {
                tally.unanswered += u64::from(job.measured);
                break;
            }
            result = send(&mut sender, addr, &secret, &job) => result,
        };
        if !job.measured {
            continue;
        }
        let now = Instant::now();
        tally.last_answer = Some(now);
        let micros = now
            .saturating_duration_since(job.intended)
            .as_micros()
            .max(1) as u64;
        let service = now.saturating_duration_since(sent_at).as_micros().max(1) as u64;
        let _ = tally.service.record(service.min(120_000_000));
        let _ = tally.all.record(micros.min(120_000_000));
        tally
            .answers
            .push((job.second, micros.min(u64::from(u32::MAX)) as u32));
        if job.kind == Kind::Duplicate {
            let _ = tally.duplicates.record(micros.min(120_000_000));
        }
        tally.completed += 1;
        match result {
            Ok(status) => *tally.statuses.entry(status).or_default() += 1,
            Err(_) => {
                tally.transport_errors += 1;
                sender = None;
            }
        }
    }
    tally
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> anyhow::Result<Sender> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

async fn send(
    sender: &mut Option<Sender>,
    addr: SocketAddr,
    secret: &[u8],
    job: &Job,
) -> anyhow::Result<String> {
    if sender.as_ref().is_none_or(|s| s.is_closed()) {
        *sender = Some(connect(addr).await?);
    }
    let s = sender.as_mut().expect("connected");
    s.ready().await?;
    let call = &job.call;
    let request = if job.kind == Kind::Ping {
        http::Request::get(&*call.path)
            .header(http::header::HOST, "loadtest")
            .body(Full::new(Bytes::new()))?
    } else if job.kind == Kind::Report {
        let bearer = format!("Bearer {}", String::from_utf8_lossy(secret));
        http::Request::get(&*call.path)
            .header(http::header::HOST, "loadtest")
            .header(http::header::AUTHORIZATION, bearer)
            .body(Full::new(Bytes::new()))?
    } else if job.kind == Kind::Login {
        http::Request::post(&*call.path)
            .header(http::header::HOST, "loadtest")
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(call.body.clone()))?
    } else if let Some((provider, headers, _)) = &call.dialect {
        let content_type = if provider.kind == sim::dialect::Kind::Pragmatic {
            "application/x-www-form-urlencoded"
        } else {
            "application/json"
        };
        let mut request = http::Request::post(&*call.path)
            .header(http::header::HOST, "loadtest")
            .header(http::header::CONTENT_TYPE, content_type);
        for (name, value) in headers.iter() {
            request = request.header(*name, value);
        }
        request.body(Full::new(call.body.clone()))?
    } else {
        let t = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() as i64;
        http::Request::post(&*call.path)
            .header(http::header::HOST, "loadtest")
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, sign_native(secret, t, &call.body))
            .body(Full::new(call.body.clone()))?
    };
    let response = s.send_request(request).await?;
    let code = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok(match &call.dialect {
        Some((provider, _, op)) => dialect_label(provider, *op, code, &body),
        None => status_label(code, &body),
    })
}

/// A dialect's answer as a label: the core name for OK, unknown player and insufficient
/// funds (so summaries and the set-up check read the same in every dialect), else its own.
fn dialect_label(provider: &sim::dialect::Provider, op: OpKind, code: u16, body: &[u8]) -> String {
    match provider.classify(code, body) {
        sim::dialect::Attempt::Final(reply) => {
            let core = ["OK", "UNKNOWN_PLAYER", "INSUFFICIENT_FUNDS"]
                .into_iter()
                .find(|core| provider.expect(op, core) == reply.status);
            format!("{code} {}", core.unwrap_or(&reply.status))
        }
        sim::dialect::Attempt::Refused(_, what) => format!("{code} REFUSED {what}"),
        sim::dialect::Attempt::Unknown(what) => format!("{code} RETRY {what}"),
    }
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

/// `HTTP/200 OK`, `HTTP/503 TEMPORARY_ERROR`, ...: the HTTP status and the answer's status
/// (a REST answer's `code`; `OK` for its successes).
fn status_label(code: u16, body: &[u8]) -> String {
    let text = std::str::from_utf8(body).unwrap_or("");
    if text.starts_with(r#"{"success":true"#) || text.contains(r#""success":true"#) {
        return format!("{code} OK");
    }
    if let Some((_, rest)) = text.split_once(r#""code":""#) {
        return format!("{code} {}", rest.split('"').next().unwrap_or("-"));
    }
    let status = text
        .split_once(r#""status":""#)
        .and_then(|(_, rest)| rest.split('"').next())
        .unwrap_or("-");
    format!("{code} {status}")
}

impl Summary {
    fn percentiles_ms(h: &Histogram<u64>) -> [(String, f64); 6] {
        let q = |p: f64| h.value_at_quantile(p) as f64 / 1000.0;
        [
            ("p50".into(), q(0.50)),
            ("p90".into(), q(0.90)),
            ("p99".into(), q(0.99)),
            ("p99.9".into(), q(0.999)),
            ("max".into(), h.max() as f64 / 1000.0),
            ("mean".into(), h.mean() / 1000.0),
        ]
    }

    fn achieved(&self) -> f64 {
        self.tally.completed as f64 / self.measured_s
    }

    fn to_json(&self, args: &Args) -> serde_json::Value {
        let pct = |h: &Histogram<u64>| -> serde_json::Value {
            Self::percentiles_ms(h)
                .into_iter()
                .map(|(k, v)| (k, serde_json::json!(v)))
                .collect::<serde_json::Map<_, _>>()
                .into()
        };
        let mut summary = serde_json::json!({
            "mode": format!("{:?}", args.mode).to_lowercase(),
            "mix": args.mix.name(),
            "offered_rate": args.rate,
            "duration_s": args.duration,
            "sent": self.sent,
            "unsent": self.unsent,
            "unanswered": self.unanswered,
            "completed": self.tally.completed,
            "achieved_rate": self.achieved(),
            "latency_ms": pct(&self.tally.all),
            "duplicates": self.tally.duplicates.len(),
            "duplicate_latency_ms": pct(&self.tally.duplicates),
            "service_ms": pct(&self.tally.service),
            "statuses": self.tally.statuses,
            "transport_errors": self.tally.transport_errors,
        });
        if args.timeline {
            summary["measured_from_unix_ms"] = serde_json::json!(self.measured_from_unix_ms);
            summary["timeline"] = self
                .tally
                .timeline()
                .into_iter()
                .map(|(second, answered, p50, p99, max)| {
                    serde_json::json!({
                        "second": second,
                        "answered": answered,
                        "p50_ms": p50,
                        "p99_ms": p99,
                        "max_ms": max,
                    })
                })
                .collect();
            // Per minute and per five minutes (by intended send time), for soaks and
            // rollovers.
            for (key, seconds) in [("minutes", 60), ("five_minutes", 300)] {
                summary[key] = self
                    .tally
                    .windows(seconds)
                    .into_iter()
                    .map(|(window, answered, p50, p99, max)| {
                        serde_json::json!({
                            "window": window,
                            "answered": answered,
                            "p50_ms": p50,
                            "p99_ms": p99,
                            "max_ms": max,
                        })
                    })
                    .collect();
            }
        }
        summary
    }

    fn print(&self, args: &Args) {
        println!(
            "offered {}/s for {} s ({:?}, mix {}); sent {}, completed {}, achieved {:.0}/s",
            args.rate,
            args.duration,
            args.mode,
            args.mix.name(),
            self.sent,
            self.tally.completed,
            self.achieved()
        );
        let line = |name: &str, h: &Histogram<u64>| {
            let p: Vec<String> = Self::percentiles_ms(h)
                .iter()
                .map(|(k, v)| format!("{k} {v:.2}"))
                .collect();
            println!(
                "{name:<11} latency ms (from intended send): {}",
                p.join("  ")
            );
        };
        line("all", &self.tally.all);
        if !self.tally.duplicates.is_empty() {
            line("duplicates", &self.tally.duplicates);
        }
        let p: Vec<String> = Self::percentiles_ms(&self.tally.service)
            .iter()
            .map(|(k, v)| format!("{k} {v:.2}"))
            .collect();
        println!(
            "service     ms (from the request leaving): {}",
            p.join("  ")
        );
        for (status, n) in &self.tally.statuses {
            println!("  {status:<32} {n}");
        }
        println!(
            "  transport errors                 {}",
            self.tally.transport_errors
        );
        if self.unsent > 0 {
            println!("  never sent (10 s backlog full)   {}", self.unsent);
        }
        if self.unanswered > 0 {
            println!("  unanswered at the end of --drain {}", self.unanswered);
        }
        if args.timeline {
            println!(
                "second  answered   p50 ms   p99 ms   max ms  (by intended send time; second 0 began at Unix ms {})",
                self.measured_from_unix_ms
            );
            for (second, answered, p50, p99, max) in self.tally.timeline() {
                println!("{second:>6}  {answered:>8}  {p50:>7.2}  {p99:>7.2}  {max:>7.2}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{drive, refusals_problem, Args, Tally};
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
