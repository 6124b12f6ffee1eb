//! `cargo xtask chaos --minutes N --seed S`: a fault campaign. `sim` plays every dialect against
//! a gateway on a PostgreSQL cluster of our own, reached through a small TCP proxy of ours,
//! while this harness kills the gateway (SIGKILL, then starts it again: providers keep
//! retrying), stops PostgreSQL immediately (SIGQUIT to the postmaster, what `pg_ctl stop -m
//! immediate` sends; the supervisor starts it again and crash recovery replays the WAL), pauses
//! either process (SIGSTOP/SIGCONT), and cuts the gateway's database connections at the proxy,
//! also right after a COMMIT went through and before its answer came back. The last fifth of
//! the campaign has no faults: `sim` resolves every unknown outcome (retries until final,
//! rollbacks of bets never answered), then runs every checker.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

pub struct Options {
    pub minutes: u64,
    pub seed: u64,
    /// Use debug binaries (already built by the test suite) instead of release ones.
    pub debug: bool,
    /// A planted bug (`--plant NAME`, a test build of the gateway): the campaign must then
    /// fail a checker, and succeeds only if it does.
    pub plant: Option<String>,
}

impl Options {
    pub fn parse(args: &[String]) -> anyhow::Result<Options> {
        let mut options = Options {
            minutes: 10,
            seed: 1,
            debug: false,
            plant: None,
        };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            match arg.as_str() {
                "--minutes" => {
                    options.minutes = it.next().context("--minutes N")?.parse()?;
                }
                "--seed" => options.seed = it.next().context("--seed S")?.parse()?,
                "--debug" => options.debug = true,
                "--plant" => options.plant = Some(it.next().context("--plant NAME")?.clone()),
                other => bail!(
                    "unknown chaos option {other} (--minutes N, --seed S, --debug, --plant NAME)"
                ),
            }
        }
        if options.minutes < 1 {
            bail!("--minutes must be at least 1");
        }
        Ok(options)
    }
}

/// The gateway's database connections pass through here, so they can be cut.
struct Proxy {
    port: u16,
    live: Arc<Mutex<Vec<(TcpStream, UnixStream)>>>,
    /// Cut the next connection that sends a COMMIT, right after forwarding it.
    cut_after_commit: Arc<AtomicBool>,
    commit_cuts: Arc<AtomicU64>,
}

impl Proxy {
    fn start(socket: PathBuf) -> anyhow::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let live: Arc<Mutex<Vec<(TcpStream, UnixStream)>>> = Arc::default();
        let cut_after_commit = Arc::new(AtomicBool::new(false));
        let commit_cuts = Arc::new(AtomicU64::new(0));
        let (l, c, n) = (live.clone(), cut_after_commit.clone(), commit_cuts.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = UnixStream::connect(&socket) else {
                    continue; // the database is down: the client sees its connection close
                };
                let _ = client.set_nodelay(true);
                let (Ok(c1), Ok(c2), Ok(s1), Ok(s2)) = (
                    client.try_clone(),
                    client.try_clone(),
                    server.try_clone(),
                    server.try_clone(),
                ) else {
                    continue;
                };
                l.lock().unwrap().push((c1, s1));
                let (cut, cuts) = (c.clone(), n.clone());
                let (mut from_client, mut to_server) = (client, server);
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match from_client.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if to_server.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        let commit = buf[..n].windows(6).any(|w| w == b"COMMIT");
                        if commit && cut.swap(false, Ordering::AcqRel) {
                            // The COMMIT is on its way; its answer never comes back.
                            cuts.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                    }
                    let _ = from_client.shutdown(Shutdown::Both);
                    let _ = to_server.shutdown(Shutdown::Both);
                });
                let (mut from_server, mut to_client) = (s2, c2);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from_server, &mut to_client);
                    let _ = to_client.shutdown(Shutdown::Both);
                    let _ = from_server.shutdown(Shutdown::Both);
                });
            }
        });
        Ok(Proxy {
            port,
            live,
            cut_after_commit,
            commit_cuts,
        })
    }

    /// Cuts every connection open now; answers how many.
    fn cut_all(&self) -> usize {
        let mut live = self.live.lock().unwrap();
        let n = live.len();
        for (client, server) in live.drain(..) {
            let _ = client.shutdown(Shutdown::Both);
            let _ = server.shutdown(Shutdown::Both);
        }
        n
    }
}

fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status();
}

/// The processes whose parent is `pid` (a postmaster's backends and helpers).
fn children(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
        // pid (comm) state ppid ...
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
        if ppid == Some(pid) {
            found.push(child);
        }
    }
    found
}

struct Gateway {
    bin: PathBuf,
    port: u16,
    database_url: String,
    /// `WALLET_PLANTS` for a test build (empty: none).
    plants: String,
    log: PathBuf,
    child: Option<Child>,
}

impl Gateway {
    /// Starts the gateway (again), retrying while its database is unreachable.
    fn start(&mut self) -> anyhow::Result<Duration> {
        let began = Instant::now();
        loop {
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.log)?;
            let mut child = Command::new(&self.bin)
                .args(["--config", "config/demo.toml", "--listen"])
                .arg(format!("127.0.0.1:{}", self.port))
                .env("DATABASE_URL", &self.database_url)
                .env("WALLET_PLANTS", &self.plants)
                .env("RUST_LOG", "warn")
                .stdout(Stdio::piped())
                .stderr(log)
                .spawn()
                .with_context(|| format!("start {}", self.bin.display()))?;
            let mut line = String::new();
            let stdout = child.stdout.take().context("gateway stdout")?;
            let mut reader = BufReader::new(stdout);
            let _ = reader.read_line(&mut line);
            if line.starts_with("listening on") {
                // Keep reading what it prints, so it never blocks on a full pipe.
                std::thread::spawn(move || {
                    let mut sink = String::new();
                    while reader.read_line(&mut sink).is_ok_and(|n| n > 0) {
                        sink.clear();
                    }
                });
                self.child = Some(child);
                return Ok(began.elapsed());
            }
            let _ = child.kill();
            let _ = child.wait();
            if began.elapsed() > Duration::from_secs(120) {
                bail!(
                    "the gateway did not start within 120 s (see {})",
                    self.log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), "TERM");
            let status = child.wait()?;
            if !status.success() {
                bail!("the gateway exited with {status} at the end");
            }
        }
        Ok(())
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    GatewayKill,
    PostgresImmediateStop,
    ConnectionCut,
    CutAfterCommit,
    GatewayPause,
    PostgresPause,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::GatewayKill => "gateway SIGKILL + restart",
            Fault::PostgresImmediateStop => "PostgreSQL immediate stop",
            Fault::ConnectionCut => "connections cut",
            Fault::CutAfterCommit => "connection cut after COMMIT sent",
            Fault::GatewayPause => "gateway paused",
            Fault::PostgresPause => "PostgreSQL paused",
        }
    }
}

/// One round of the deck: shuffled by the seed, dealt again and again.
const DECK: [Fault; 12] = [
    Fault::GatewayKill,
    Fault::GatewayKill,
    Fault::GatewayKill,
    Fault::GatewayKill,
    Fault::PostgresImmediateStop,
    Fault::PostgresImmediateStop,
    Fault::ConnectionCut,
    Fault::ConnectionCut,
    Fault::CutAfterCommit,
    Fault::CutAfterCommit,
    Fault::GatewayPause,
    Fault::PostgresPause,
];

pub fn run(options: &Options) -> anyhow::Result<()> {
    let profile = if options.debug { "debug" } else { "release" };
    let mut build = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    build.args(["build", "-p", "gateway", "-p", "sim"]);
    if options.plant.is_some() {
        // The seam that plants bugs exists only in test builds.
        build.args(["--features", "gateway/test-util"]);
    }
    if !options.debug {
        build.arg("--release");
    }
    if !build.status()?.success() {
        bail!("{profile} build failed");
    }
    let target_dir = std::env::var_os("CARGO_TARGET_DIR").map_or("target".into(), PathBuf::from);
    let bin = |name: &str| target_dir.join(profile).join(name);
    let root = std::path::absolute("target/chaos")?;
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root)?;
    let mut rng = harness::rng::Rng::new(options.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    println!(
        "chaos: seed {}, {} minutes, {profile} binaries{}",
        options.seed,
        options.minutes,
        options
            .plant
            .as_ref()
            .map(|p| format!(", planted bug {p}"))
            .unwrap_or_default()
    );

    // PostgreSQL of our own, supervised: an immediate stop is followed by crash recovery.
    let mut pg_options = pgembed::Options::new(root.join("pg"));
    pg_options.settings = ["fsync", "synchronous_commit", "full_page_writes"]
        .iter()
        .map(|k| (k.to_string(), "on".to_string()))
        .collect();
    let cluster = pgembed::Supervised::start(pg_options).context("start PostgreSQL")?;
    let socket_dir = root.join("pg/run");
    let psql = Command::new("psql")
        .arg("-h")
        .arg(&socket_dir)
        .args([
            "-U",
            "wallet",
            "-d",
            "postgres",
            "-c",
            "CREATE DATABASE wallet",
        ])
        .output()
        .context("psql (Debian: apt-get install postgresql-client)")?;
    if !psql.status.success() {
        bail!("create database: {}", String::from_utf8_lossy(&psql.stderr));
    }
    let proxy = Proxy::start(socket_dir.join(".s.PGSQL.5432"))?;
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut gateway = Gateway {
        bin: bin("gateway"),
        port,
        database_url: format!(
            "host=127.0.0.1 port={} user=wallet dbname=wallet connect_timeout=2",
            proxy.port
        ),
        plants: options.plant.clone().unwrap_or_default(),
        log: root.join("gateway.log"),
        child: None,
    };
    gateway.start()?;

    let total = Duration::from_secs(options.minutes * 60);
    let faulty = total * 4 / 5;
    let sim_log = root.join("sim.log");
    let mut sim = Command::new(bin("sim"))
        .arg("--target")
        .arg(format!("http://127.0.0.1:{port}"))
        .arg("--database-url")
        .arg(format!(
            "host={} user=wallet dbname=wallet",
            socket_dir.display()
        ))
        .args(["--seed", &options.seed.to_string()])
        .args([
            "--callbacks",
            "1000000000",
            "--players",
            "1000",
            "--concurrency",
            "64",
        ])
        .args(["--provider", "demo,demo-pp,demo-evo,demo-ss"])
        .args(["--duration", &total.as_secs().to_string()])
        // Long enough to outlast a restart, a recovery and a pause in a row.
        .args(["--final-within-s", "120"])
        .stdout(std::fs::File::create(&sim_log)?)
        .stderr(Stdio::inherit())
        .spawn()
        .context("start sim")?;

    let started = Instant::now();
    let mut counts = std::collections::BTreeMap::<Fault, u64>::new();
    let mut cut_connections = 0usize;
    let mut restart_times = Vec::new();
    let mut deck = Vec::new();
    while started.elapsed() < faulty {
        std::thread::sleep(Duration::from_millis(rng.between(3_000, 6_000)));
        if started.elapsed() >= faulty {
            break;
        }
        if let Some(status) = sim.try_wait()? {
            bail!(
                "sim ended during the faults ({status}); see {}",
                sim_log.display()
            );
        }
        if deck.is_empty() {
            deck = DECK.to_vec();
            for i in (1..deck.len()).rev() {
                deck.swap(i, rng.between(0, i as u64) as usize);
            }
        }
        let fault = deck.pop().expect("dealt above");
        match fault {
            Fault::GatewayKill => {
                gateway.kill();
                std::thread::sleep(Duration::from_millis(rng.between(100, 1_500)));
                restart_times.push(gateway.start()?);
            }
            Fault::PostgresImmediateStop => {
                let Some(pid) = cluster.server_pid() else {
                    continue;
                };
                signal(pid as u32, "QUIT");
            }
            Fault::ConnectionCut => cut_connections += proxy.cut_all(),
            Fault::CutAfterCommit => proxy.cut_after_commit.store(true, Ordering::Release),
            Fault::GatewayPause => {
                let pid = gateway.pid();
                signal(pid, "STOP");
                std::thread::sleep(Duration::from_millis(rng.between(500, 3_000)));
                signal(pid, "CONT");
            }
            Fault::PostgresPause => {
                let Some(pid) = cluster.server_pid() else {
                    continue;
                };
                let mut pids = children(pid as u32);
                pids.push(pid as u32);
                for p in &pids {
                    signal(*p, "STOP");
                }
                std::thread::sleep(Duration::from_millis(rng.between(500, 3_000)));
                for p in &pids {
                    signal(*p, "CONT");
                }
            }
        }
        *counts.entry(fault).or_default() += 1;
        eprintln!(
            "chaos: {:>5.0} s  {}",
            started.elapsed().as_secs_f64(),
            fault.name()
        );
    }
    // Let an armed cut fire or lapse, then no more faults: sim settles every unknown outcome.
    proxy.cut_after_commit.store(false, Ordering::Release);
    eprintln!("chaos: faults over; sim resolves what is unknown and checks");
    let status = sim.wait()?;
    let sim_output = std::fs::read_to_string(&sim_log).unwrap_or_default();
    gateway.stop()?;
    cluster.stop().context("stop PostgreSQL")?;

    println!("chaos: faults injected over {:.0} s:", faulty.as_secs_f64());
    for (fault, n) in &counts {
        println!("  {:<36} {n}", fault.name());
    }
    println!(
        "  connections cut in all: {cut_connections} (plus {} right after a COMMIT was sent)",
        proxy.commit_cuts.load(Ordering::Relaxed)
    );
    println!(
        "  PostgreSQL restarts by its supervisor: {}",
        cluster.restarts()
    );
    if let Some(slowest) = restart_times.iter().max() {
        println!(
            "  gateway restarts: {}, slowest {:.1} s",
            restart_times.len(),
            slowest.as_secs_f64()
        );
    }
    for line in sim_output.lines() {
        println!("  {line}");
    }
    if let Some(plant) = &options.plant {
        if status.success() {
            bail!("planted bug {plant} was NOT detected: every checker passed");
        }
        println!("chaos: planted bug {plant} detected (sim exited with {status})");
        return Ok(());
    }
    if !status.success() {
        bail!(
            "sim found a violation ({status}); see {}",
            sim_log.display()
        );
    }
    println!("chaos: every checker passed");
    Ok(())
}
