//! `cargo xtask bench`: the performance report. Builds release binaries, starts the gateway
//! (embedded PostgreSQL, synchronous_commit on) with 100,000 demo players, drives it with the
//! open-loop `loadtest` on the same machine, and writes `docs/performance.md`: the disk's
//! sync-write latency, HTTP ceiling, highest sustained callback rate with p99 <= 50 ms,
//! latencies at half of it, the same with `batch_len_max = 1`, pgbench ceilings for the batch
//! SQL, 2x overload, batch sizes, CPU split and memory.
#![allow(clippy::float_arithmetic)] // rates and percentiles, never money

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::Value;

mod mixes;

const PLAYERS: u32 = 100_000;

/// What the runs so far taught about reading the report (kept with the generator so every
/// report carries it).
const NOTES: &str = r"
## Reading these numbers

- The three processes share 2 cores, and the machine runs out of CPU before PostgreSQL or HTTP
  do. Per callback at 10,000/s: PostgreSQL about 76 µs (from `pg_stat_statements`, tmpfs: the
  ledger rows with their idempotency keys 26 µs, the lookups by key 9 µs, the wallet lock 8 µs
  and update 8 µs, the rounds' lookup and insert 10 µs, the players' state 5 µs, the bet's state
  update when its win arrives 4 µs), the gateway about 58 µs (about 22 µs of it is HTTP alone,
  measured with `GET /ready`), the generator about 30 µs: some 165 µs of CPU per callback, so
  about 12,000/s at 100 % of both cores (`docs/performance-budget.md` has the breakdown).
- Near 10,000/s about 80 % of both cores is busy, so anything else that wakes up (autovacuum of
  the ledger, seen running during a bad step; WAL segment creation, seen as `WALInitWrite`
  waits; backends writing out dirty buffers) overloads the machine for a moment, and the queue
  takes a while to drain. Repeated 15 s steps at one rate range from p99 13 ms to 250 ms.
- The disk stalls, whatever runs on it. The report's first measurement (8 KiB write then
  `fdatasync`, 1,000 a second, nothing else running) has shown, across this machine's runs,
  a p50 near 0.15 ms but 5 to 30 writes in 20-30 s taking over 50 ms, up to 490 ms; the same
  probe at 200 writes a second still met a 90 ms stall. Every commit waits for its WAL flush
  (`synchronous_commit = on`), so a stall holds up every callback in flight at that moment, at
  any rate: a callback arriving during a stall waits at least for the rest of it, so once the
  parts of stalls lying more than 50 ms before their end add up to over 1 % of a run, no design
  that acknowledges after a durable commit keeps that run's p99 under 50 ms. This is why even
  a 2,500/s step, or `batch_len_max = 1` at 500/s, can miss p99 <= 50 ms.
- The two pgbench ceilings: the whole batch runs the lanes' statements in their order (ledger
  ids, player and wallet reads with the lock, lookups of ledger rows, rollbacks and rounds by
  key, limits, then the writes) for 64 new bets a transaction; the other runs the writes
  alone. The gateway is compared with the whole batch, which is the SQL it sends. pgbench runs
  while the gateway is idle: PostgreSQL and pgbench have both cores to themselves.
- Duplicates: the dedup index answers a retry inside the gateway in microseconds (the in-gateway
  p99 in the headline); end to end at the generator a duplicate waits for CPU like any request.
- Overload: the generator's fixed pool of keep-alive connections bounds how many requests reach
  the gateway at once; beyond it requests wait in the generator, which the provider's-eye
  latency counts and the service time does not. The gateway's own time stays well under its
  2 s deadline; a larger fleet of connections would fill its bounded queues, and those answer
  `TEMPORARY_ERROR` at once.
";
const P99_MAX_MS: f64 = 50.0;

pub struct Options {
    /// Seconds per step of a rate ladder.
    pub step_s: u64,
    /// Seconds of the sustained run at the best rate.
    pub sustained_s: u64,
    /// Also run a soak at the best rate for this many seconds (0: none).
    pub soak_s: u64,
    /// Another gateway build (and the configuration it reads) to compare with this one at
    /// 10,000/s, fresh clusters in turn, in the same run.
    pub compare: Option<(PathBuf, PathBuf)>,
    /// Run only this section (a name of [`SECTIONS`]) and write `docs/bench/NAME.md`.
    pub only: Option<&'static str>,
    /// Clusters in `/dev/shm` (with `--only`): a CPU comparison without the disk's stalls
    /// swinging batch sizes between turns; its latencies say nothing about a real disk.
    pub tmpfs: bool,
}

impl Options {
    pub fn parse(args: &[String]) -> anyhow::Result<Options> {
        let mut options = Options {
            step_s: 15,
            sustained_s: 60,
            soak_s: 0,
            compare: None,
            only: None,
            tmpfs: false,
        };
        let mut compare_config = PathBuf::from("config/demo.toml");
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = || -> anyhow::Result<u64> {
                it.next()
                    .context("missing value")?
                    .parse()
                    .context("not a number")
            };
            match arg.as_str() {
                "--step" => options.step_s = value()?,
                "--sustained" => options.sustained_s = value()?,
                "--soak" => options.soak_s = value()?,
                "--only" => {
                    let name = it.next().map(String::as_str).unwrap_or("");
                    options.only = match SECTIONS.iter().find(|s| s.name == name) {
                        Some(section) => Some(section.name),
                        None if name == COMPARE => Some(COMPARE),
                        None => bail!("--only takes one of {}, not {name:?}", section_names()),
                    };
                }
                "--compare" => {
                    let bin = it.next().context("--compare needs a gateway binary")?;
                    options.compare = Some((PathBuf::from(bin), PathBuf::new()));
                }
                "--tmpfs" => options.tmpfs = true,
                "--compare-config" => {
                    compare_config =
                        PathBuf::from(it.next().context("--compare-config needs a path")?);
                }
                other => bail!(
                    "unknown bench option {other} (--step S, --sustained S, --soak S, \
                     --compare GATEWAY_BIN, --compare-config PATH, --tmpfs, --only {})",
                    section_names()
                ),
            }
        }
        if let Some((_, config)) = &mut options.compare {
            *config = compare_config;
        }
        if options.tmpfs && options.only.is_none() {
            bail!("--tmpfs is for one section (--only): the full report measures the real disk");
        }
        if options.only == Some(COMPARE) && options.compare.is_none() {
            bail!("--only {COMPARE} needs --compare GATEWAY_BIN");
        }
        Ok(options)
    }
}

struct Gateway {
    child: Child,
    url: String,
    socket_dir: PathBuf,
}

impl Gateway {
    fn start(data: &Path, env: &[(&str, &str)]) -> anyhow::Result<Gateway> {
        Gateway::start_from(
            Path::new("target/release/gateway"),
            Path::new("config/demo.toml"),
            data,
            env,
        )
    }

    /// Another build's gateway, reading the configuration it understands.
    fn start_from(
        bin: &Path,
        config: &Path,
        data: &Path,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Gateway> {
        std::fs::create_dir_all(data)?;
        let mut command = Command::new(bin);
        command
            .arg("--config")
            .arg(config)
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .env("GATEWAY__DEMO__PLAYERS", PLAYERS.to_string())
            .env("RUST_LOG", "warn")
            .env_remove("DATABASE_URL")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("start {}", bin.display()))?;
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .with_context(|| format!("gateway did not start: {line:?}"))?
            .to_string();
        Ok(Gateway {
            child,
            url: format!("http://{addr}"),
            socket_dir: std::path::absolute(data.join("run"))?,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn metrics(&self) -> anyhow::Result<String> {
        http_get(&self.url, "/metrics")
    }

    fn stop(mut self) -> anyhow::Result<()> {
        Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()?;
        let status = self.child.wait()?;
        if !status.success() {
            bail!("gateway exited with {status}");
        }
        // A cluster in memory (`--tmpfs`) goes at once: there is no write-back to wait for,
        // and twenty of them would not fit.
        if let Some(data) = self
            .socket_dir
            .parent()
            .filter(|d| d.starts_with("/dev/shm"))
        {
            let _ = std::fs::remove_dir_all(data);
        }
        Ok(())
    }
}

impl Drop for Gateway {
    /// A bench that fails half-way leaves no gateway (nor, by its parent-death signal, its
    /// PostgreSQL) behind; after `stop` this finds the child already reaped.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Lets the machine go quiet before measuring: the previous cluster's dirty pages are written
/// out first (otherwise their write-back lands in the next run's fsyncs).
fn settle_down() {
    let _ = Command::new("sync").status();
    std::thread::sleep(Duration::from_secs(10));
}

fn http_get(base: &str, path: &str) -> anyhow::Result<String> {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    Ok(text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default())
}

/// CPU seconds (user + system) of a process and, for PostgreSQL, of all its processes.
fn cpu_ticks(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .map(|stat| {
            let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
            let fields: Vec<&str> = after.split_whitespace().collect();
            let utime: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0);
            let stime: u64 = fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
            utime + stime
        })
        .sum()
}

fn postgres_pids() -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .map(|c| c.trim() == "postgres")
                .unwrap_or(false)
        })
        .collect()
}

fn rss_mib(pids: &[u32]) -> f64 {
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .filter_map(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .sum::<f64>()
        / 1024.0
}

/// One loadtest run and the CPU each party used during it.
struct Run {
    report: Value,
    cpu_s: BTreeMap<&'static str, f64>,
    wall_s: f64,
}

impl Run {
    fn p(&self, q: &str) -> f64 {
        self.report["latency_ms"][q]
            .as_f64()
            .unwrap_or(f64::INFINITY)
    }

    fn count(&self, prefix: &str) -> u64 {
        self.report["statuses"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter(|(k, _)| k.starts_with(prefix))
                    .map(|(_, v)| v.as_u64().unwrap_or(0))
                    .sum()
            })
            .unwrap_or(0)
    }

    /// Transport errors, 5xx answers, requests the generator never got to send and requests
    /// still unanswered 30 s after the schedule ended.
    fn errors(&self) -> u64 {
        self.report["transport_errors"].as_u64().unwrap_or(0)
            + self.count("5")
            + self.report["unsent"].as_u64().unwrap_or(0)
            + self.report["unanswered"].as_u64().unwrap_or(0)
    }

    fn achieved(&self) -> f64 {
        self.report["achieved_rate"].as_f64().unwrap_or(0.0)
    }

    /// Answers per second that were not a 5xx (retryable refusals under overload excluded).
    fn answered_rate(&self) -> f64 {
        let completed = self.report["completed"].as_u64().unwrap_or(0);
        let good = completed.saturating_sub(self.count("5"));
        self.achieved() * good as f64 / completed.max(1) as f64
    }

    /// CPU microseconds of `party` (gateway, postgres, loadtest) per callback answered over
    /// the measured part of the run.
    fn cpu_us_per_callback(&self, party: &str) -> f64 {
        let callbacks = (self.achieved() * self.wall_s).max(1.0);
        self.cpu_s.get(party).copied().unwrap_or(0.0) * 1e6 / callbacks
    }

    /// The cells most tables share: achieved/s, p50 ms, p99 ms, errors, then the gateway's and
    /// PostgreSQL's CPU µs per callback.
    fn cpu_cells(&self) -> String {
        format!(
            "{:.0} | {:.2} | {:.2} | {} | {:.1} | {:.1}",
            self.achieved(),
            self.p("p50"),
            self.p("p99"),
            self.errors(),
            self.cpu_us_per_callback("gateway"),
            self.cpu_us_per_callback("postgres")
        )
    }

    /// Sustained: every request answered without errors, p99 within the target.
    fn passes(&self) -> bool {
        let completed = self.report["completed"].as_u64().unwrap_or(0);
        let sent = self.report["sent"].as_u64().unwrap_or(1);
        completed == sent && self.errors() == 0 && self.p("p99") <= P99_MAX_MS
    }
}

fn loadtest(gateway: &Gateway, rate: u64, duration_s: u64, extra: &[&str]) -> anyhow::Result<Run> {
    loadtest_many(&[gateway], PLAYERS, rate, duration_s, extra)
}

/// A loadtest run over several gateways on one database (the generator's connections spread
/// over them in turn) addressing `players`; the gateways' CPU is counted together.
fn loadtest_many(
    gateways: &[&Gateway],
    players: u32,
    rate: u64,
    duration_s: u64,
    extra: &[&str],
) -> anyhow::Result<Run> {
    loadtest_from(gateways, players, rate, duration_s, 3, extra)
}

/// The same with `warmup_s` seconds of load before the measured part (0: measured from the
/// first request, as a fresh gateway taken straight to its rate is).
fn loadtest_from(
    gateways: &[&Gateway],
    players: u32,
    rate: u64,
    duration_s: u64,
    warmup_s: u64,
    extra: &[&str],
) -> anyhow::Result<Run> {
    let mut command = Command::new("target/release/loadtest");
    for gateway in gateways {
        command.args(["--target", &gateway.url]);
    }
    let mut child = command
        .args(["--json", "--players", &players.to_string()])
        .args([
            "--rate",
            &rate.to_string(),
            "--duration",
            &duration_s.to_string(),
        ])
        .args(["--warmup", &warmup_s.to_string()])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("start target/release/loadtest")?;
    // Measure CPU over the measured part of the run: from the warm-up's end after the
    // generator's set-up (connections, calls signed ahead), which it says on standard error
    // (passed on here).
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().context("loadtest stderr")?;
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line == "loadtest: the clock starts" {
                let _ = started_tx.send(());
            } else {
                eprintln!("{line}");
            }
        }
    });
    let _ = started_rx.recv_timeout(Duration::from_secs(120));
    std::thread::sleep(Duration::from_millis(warmup_s * 1_000 + 300));
    let pg = postgres_pids();
    let parties = [
        ("gateway", gateways.iter().map(|g| g.pid()).collect()),
        ("postgres", pg.clone()),
        ("loadtest", vec![child.id()]),
    ];
    let before: Vec<u64> = parties.iter().map(|(_, p)| cpu_ticks(p)).collect();
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(duration_s.saturating_sub(1).max(1)));
    let after: Vec<u64> = parties.iter().map(|(_, p)| cpu_ticks(p)).collect();
    let wall_s = started.elapsed().as_secs_f64();
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("loadtest failed at {rate}/s");
    }
    let report: Value = serde_json::from_slice(&out.stdout).context("loadtest JSON")?;
    let hz = 100.0;
    let cpu_s = parties
        .iter()
        .zip(before.iter().zip(&after))
        .map(|((name, _), (b, a))| (*name, a.saturating_sub(*b) as f64 / hz))
        .collect();
    Ok(Run {
        report,
        cpu_s,
        wall_s,
    })
}

/// Callbacks offered while REST logins run beside them.
const CALLBACKS_BESIDE_LOGINS: u64 = 5_000;

/// The REST module's logins: the Argon2id-bound login rate (one hashing slot, so hashing never
/// takes more than one of the two cores), then callbacks at 5,000/s alone, with logins running
/// beside them, and alone again (the spread of the two alone runs is the noise). Markdown.
fn logins_section(root: &Path, step_s: u64) -> anyhow::Result<String> {
    let env = [
        ("GATEWAY__REST__RATE_LIMITS__LOGIN_PER_IP", "1000000000"),
        (
            "GATEWAY__REST__RATE_LIMITS__LOGIN_PER_ACCOUNT",
            "1000000000",
        ),
        ("GATEWAY__REST__HASH_CONCURRENCY", "1"),
    ];
    let gw = Gateway::start(&root.join("logins"), &env)?;
    settle_down();
    loadtest(&gw, CALLBACKS_BESIDE_LOGINS, 20, &[])?;
    let logins_args = ["--mode", "logins", "--connections", "64"];
    let mut login_log = String::new();
    let best = ladder(
        &gw,
        &[10, 20, 40, 60, 80, 120],
        step_s,
        &logins_args,
        &mut login_log,
    )?;
    let best_logins = best.as_ref().map_or(0, |(r, _)| *r);
    let beside = (best_logins / 2).max(10);
    let duration = step_s * 2;
    let alone = loadtest(&gw, CALLBACKS_BESIDE_LOGINS, duration, &[])?;
    // The login generator runs over the whole callback run (its 3 s warm-up included).
    let login_child = Command::new("target/release/loadtest")
        .args([
            "--target",
            &gw.url,
            "--json",
            "--players",
            &PLAYERS.to_string(),
        ])
        .args([
            "--rate",
            &beside.to_string(),
            "--duration",
            &(duration + 2).to_string(),
        ])
        .args(["--warmup", "3"])
        .args(logins_args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("start the login generator")?;
    let with_logins = loadtest(&gw, CALLBACKS_BESIDE_LOGINS, duration, &[])?;
    let login_out = login_child.wait_with_output()?;
    let login_report: Value = serde_json::from_slice(&login_out.stdout).context("login JSON")?;
    let alone_again = loadtest(&gw, CALLBACKS_BESIDE_LOGINS, duration, &[])?;
    gw.stop()?;

    let mut w = String::new();
    writeln!(w, "\n## REST logins beside callbacks\n")?;
    writeln!(w, "`POST /api/auth/login` of random demo players: Argon2id (m = 19 MiB, t = 2, p = 1) with `rest.hash_concurrency = 1`, so hashing never holds more than one of the two cores. Login rate ladder ({step_s} s a step; pass: all answered, no 5xx, p99 <= {P99_MAX_MS} ms):\n")?;
    writeln!(
        w,
        "{}",
        LADDER_HEADER.replacen("offered/s", "logins/s offered", 1)
    )?;
    w.push_str(&login_log);
    writeln!(w, "\nHighest login rate passing: {best_logins}/s.\n")?;
    writeln!(w, "Callbacks at {CALLBACKS_BESIDE_LOGINS}/s for {duration} s on the same gateway: alone, with {beside} logins/s beside them, alone again.\n")?;
    writeln!(w, "| run | achieved/s | p50 ms | p99 ms | p99.9 ms | errors | gateway + PostgreSQL CPU µs per callback |\n|---|---|---|---|---|---|---|")?;
    for (label, run) in [
        ("alone", &alone),
        ("with logins", &with_logins),
        ("alone again", &alone_again),
    ] {
        let cpu =
            run.cpu_s.get("gateway").unwrap_or(&0.0) + run.cpu_s.get("postgres").unwrap_or(&0.0);
        let per = cpu / (run.achieved() * run.wall_s).max(1.0) * 1e6;
        writeln!(
            w,
            "| {label} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {per:.0} |",
            run.achieved(),
            run.p("p50"),
            run.p("p99"),
            run.p("p99.9"),
            run.errors()
        )?;
    }
    let lp = |q: &str| {
        login_report["latency_ms"][q]
            .as_f64()
            .unwrap_or(f64::INFINITY)
    };
    writeln!(
        w,
        "\nThe logins meanwhile: achieved {:.1}/s, p50 {:.1} ms, p99 {:.1} ms, answers {}. (The CPU per callback with logins running includes the gateway's hashing.)",
        login_report["achieved_rate"].as_f64().unwrap_or(0.0),
        lp("p50"),
        lp("p99"),
        login_report["statuses"]
    )?;
    Ok(w)
}

/// The rate the trace's cost is measured at (CPU per callback, turn by turn).
const TRACE_RATE: u64 = 10_000;

/// An offered rate past what the box can settle: what is answered is the throughput.
const SATURATING_RATE: u64 = 25_000;

/// What keeping raw callbacks costs (`trace.enabled`): fresh clusters in turn, off and on three
/// times (the saturated rate moves by a few per cent from run to run), each warmed up and then run at 10,000/s (CPU per callback of gateway + PostgreSQL, the trace
/// writer's connection included) and then saturated (throughput); then a rate ladder each way.
/// Markdown.
fn trace_section(root: &Path, step_s: u64) -> anyhow::Result<String> {
    let mut turns = Vec::new();
    for (turn, on) in [false, true, false, true, false, true]
        .into_iter()
        .enumerate()
    {
        let flag = if on { "true" } else { "false" };
        let gw = Gateway::start(
            &root.join(format!("trace-{turn}")),
            &[("GATEWAY__TRACE__ENABLED", flag)],
        )?;
        settle_down();
        loadtest(&gw, 5_000, 10, &[])?;
        let before = gw.metrics()?;
        let wal_before = wal_lsn(&gw)?;
        let run = loadtest(&gw, TRACE_RATE, step_s * 2, &[])?;
        let wal = wal_lsn(&gw)?.saturating_sub(wal_before);
        let after = gw.metrics()?;
        let answered = metric(&after, "wallet_callback_seconds_count")
            .saturating_sub(metric(&before, "wallet_callback_seconds_count"));
        let kept = metric(&after, "wallet_trace_records_total")
            .saturating_sub(metric(&before, "wallet_trace_records_total"));
        let dropped = metric(&after, "wallet_trace_dropped_total{reason=\"queue_full\"}")
            + metric(&after, "wallet_trace_dropped_total{reason=\"storage\"}");
        settle_down();
        let saturated = loadtest(&gw, SATURATING_RATE, step_s * 2, &[])?;
        gw.stop()?;
        let wal_per_callback = wal as f64 / answered.max(1) as f64;
        turns.push((on, run, kept, dropped, wal_per_callback, saturated));
    }
    let mut ladders = Vec::new();
    for on in [false, true] {
        let flag = if on { "true" } else { "false" };
        let gw = Gateway::start(
            &root.join(format!("trace-ladder-{flag}")),
            &[("GATEWAY__TRACE__ENABLED", flag)],
        )?;
        settle_down();
        loadtest(&gw, 5_000, 20, &[])?;
        let mut log = String::new();
        let best = ladder(
            &gw,
            &[
                6_000, 7_000, 8_000, 9_000, 10_000, 11_000, 12_000, 13_000, 14_000,
            ],
            step_s,
            &[],
            &mut log,
        )?;
        gw.stop()?;
        ladders.push((on, best.map_or(0, |(r, _)| r), log));
    }

    let mut w = String::new();
    writeln!(
        w,
        "\n## Keeping raw callbacks for trace and replay (`trace.enabled`)\n"
    )?;
    writeln!(w, "Every callback that names a transaction is kept (bytes and headers as received, the answer, batch and timings) by one writer off the commit path, as zstd-compressed segments of up to `trace.batch_len_max` records gathered for up to `trace.linger_ms` (one row each; a first application is found by time, only retries, refusals and replays are GIN-indexed by transaction key). Fresh clusters in turn (off, on, three times), each warmed up at 5,000/s, then {TRACE_RATE}/s for {} s; CPU of the gateway and every PostgreSQL process (the writer's connection included) per answered callback.\n", step_s * 2)?;
    writeln!(w, "| trace | achieved/s | p50 ms | p99 ms | errors | gateway µs/callback | PostgreSQL µs/callback | total µs/callback | WAL bytes/callback | records kept | dropped |\n|---|---|---|---|---|---|---|---|---|---|---|")?;
    let mut totals = [Vec::new(), Vec::new()];
    let mut saturated = [Vec::new(), Vec::new()];
    for (on, run, kept, dropped, wal, saturating) in &turns {
        saturated[*on as usize].push(saturating);
        let per = |party: &str| run.cpu_us_per_callback(party);
        let total = per("gateway") + per("postgres");
        totals[*on as usize].push(total);
        writeln!(
            w,
            "| {} | {} | {total:.1} | {wal:.0} | {kept} | {dropped} |",
            if *on { "on" } else { "off" },
            run.cpu_cells(),
        )?;
    }
    let mean = |v: &Vec<f64>| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let (off, on) = (mean(&totals[0]), mean(&totals[1]));
    // On a CPU-bound box the rate is inversely proportional to the CPU per callback.
    let cost = 100.0 * (1.0 - off / on.max(1e-9));
    writeln!(w, "\nMean CPU per callback: off {off:.1} µs, on {on:.1} µs: keeping raw callbacks costs {cost:.1} % of the throughput the CPU allows (target: at most 10 %).\n")?;
    writeln!(w, "Throughput: the same gateways, each then offered {SATURATING_RATE}/s for {} s (more than two cores settle), counting answers that were not a 5xx:\n", step_s * 2)?;
    writeln!(
        w,
        "| trace | answered/s | 5xx | p50 ms | p99 ms |\n|---|---|---|---|---|"
    )?;
    for (on, .., run) in &turns {
        writeln!(
            w,
            "| {} | {:.0} | {} | {:.1} | {:.1} |",
            if *on { "on" } else { "off" },
            run.answered_rate(),
            run.count("5"),
            run.p("p50"),
            run.p("p99"),
        )?;
    }
    let mean_rate =
        |v: &Vec<&Run>| v.iter().map(|r| r.answered_rate()).sum::<f64>() / v.len().max(1) as f64;
    let (rate_off, rate_on) = (mean_rate(&saturated[0]), mean_rate(&saturated[1]));
    writeln!(w, "\nMean throughput: off {rate_off:.0}/s, on {rate_on:.0}/s: keeping raw callbacks costs {:.1} % of it (target: at most 10 %). Latency under overload is the queue's, not a service level.\n", 100.0 * (1.0 - rate_on / rate_off.max(1e-9)))?;
    for (on, best, log) in &ladders {
        writeln!(
            w,
            "Rate ladder with trace {} ({step_s} s a run, {LADDER_REPEATS} runs a step, median by p99; highest passing: {best}/s):\n",
            if *on { "on" } else { "off" }
        )?;
        writeln!(w, "{LADDER_HEADER}")?;
        w.push_str(log);
        w.push('\n');
    }
    let (best_off, best_on) = (ladders[0].1, ladders[1].1);
    if best_off > 0 {
        writeln!(w, "Highest passing rate: off {best_off}/s, on {best_on}/s ({:+.1} %; one ladder each way).", 100.0 * (best_on as f64 / best_off as f64 - 1.0))?;
    }
    Ok(w)
}

/// Highest rate of `ladder` that passes; stops at the first failure past a pass.
fn ladder(
    gateway: &Gateway,
    ladder: &[u64],
    step_s: u64,
    extra: &[&str],
    log: &mut String,
) -> anyhow::Result<Option<(u64, Run)>> {
    ladder_many(
        &[gateway],
        PLAYERS,
        ladder,
        step_s,
        extra,
        LADDER_REPEATS,
        log,
    )
}

/// WAL the main section's cluster writes ahead (`embedded.wal_preallocate_mb`), and how.
const MAIN_WAL_ENV: &str = "GATEWAY__EMBEDDED__WAL_PREALLOCATE_MB";
const MAIN_WAL_MB: &str = "4096";

/// Runs of each step of the main ladders; a step's row and verdict are its median run's (by
/// p99), so one run that met a disk stall neither passes nor fails a step alone.
const LADDER_REPEATS: usize = 3;

/// The columns of a ladder's rows (see [`ladder_many`]).
const LADDER_HEADER: &str = "| offered/s | achieved/s | p50 ms | p99 ms | p99 ms of each run | p99.9 ms | max ms | errors | disk sync just before and after each run: p99 / max ms, writes over 50 ms | verdict |\n|---|---|---|---|---|---|---|---|---|---|";

/// Seconds the disk is probed before and after each ladder run, in a window of its own: a
/// probe beside the run would add as many fsyncs as the lanes' own commits and measure itself.
const PROBE_WINDOW_S: u64 = 2;

/// [`ladder`] over several gateways on one database, addressing `players`: each step run
/// `repeats` times, the disk probed ([`disk_probe`]) for `PROBE_WINDOW_S` just before and just
/// after each run, never beside it (a step whose windows met a sync over 50 ms is marked), the
/// step judged on its median run by p99.
fn ladder_many(
    gateways: &[&Gateway],
    players: u32,
    ladder: &[u64],
    step_s: u64,
    extra: &[&str],
    repeats: usize,
    log: &mut String,
) -> anyhow::Result<Option<(u64, Run)>> {
    let probe_dir = gateways[0]
        .socket_dir
        .parent()
        .unwrap_or(Path::new("target"))
        .join("probe");
    let mut best = None;
    let mut failures = 0;
    for &rate in ladder {
        let mut runs = Vec::new();
        let mut probes = Vec::new();
        for _ in 0..repeats.max(1) {
            probes.push(disk_probe(&probe_dir, PROBE_WINDOW_S)?);
            runs.push(loadtest_many(gateways, players, rate, step_s, extra)?);
            probes.push(disk_probe(&probe_dir, PROBE_WINDOW_S)?);
        }
        let each: Vec<String> = runs.iter().map(|r| format!("{:.1}", r.p("p99"))).collect();
        let disk_p99 = probes.iter().map(|p| p.p99_ms).fold(0.0, f64::max);
        let disk_max = probes.iter().map(|p| p.max_ms).fold(0.0, f64::max);
        let stalls: usize = probes.iter().map(|p| p.over_50ms).sum();
        runs.sort_by(|a, b| a.p("p99").total_cmp(&b.p("p99")));
        let run = runs.swap_remove(runs.len() / 2);
        let verdict = match (run.passes(), stalls > 0) {
            (true, _) => "pass",
            (false, true) => "fail (disk stall)",
            (false, false) => "fail",
        };
        let line = format!(
            "| {rate} | {:.0} | {:.2} | {:.2} | {} | {:.2} | {:.2} | {} | {disk_p99:.1} / {disk_max:.0}, {stalls} | {verdict} |",
            run.achieved(),
            run.p("p50"),
            run.p("p99"),
            each.join(", "),
            run.p("p99.9"),
            run.p("max"),
            run.errors()
        );
        eprintln!("bench: {line}");
        log.push_str(&line);
        log.push('\n');
        if run.passes() {
            best = Some((rate, run));
            failures = 0;
        } else {
            // One noisy step does not end the ladder; two failing steps in a row do.
            failures += 1;
            if failures == 2 {
                break;
            }
        }
    }
    Ok(best)
}

/// Players both gateways take callbacks for in the several-gateways section: few enough that
/// one player's calls often reach both gateways at once.
const SHARED_PLAYERS: u32 = 1_000;

/// Several gateways on one PostgreSQL, as an operator would run them: gateway A runs the
/// database, gateway B connects to it. Compared, fresh clusters, same run, each setup twice in
/// turn (A B C D A B C D): one gateway alone; two gateways whose connections both take
/// callbacks for the same 1,000 players; the same with batches that wait for held wallets
/// (`busy_wallet_patience_ms = 0`); two gateways each taking its own players' callbacks (as a
/// balancer hashing on the player id would send them). Each: the CPU per callback at
/// 10,000/s, a rate ladder, then saturated. Markdown.
fn instances_section(root: &Path, step_s: u64) -> anyhow::Result<String> {
    let rates = [
        5_000, 6_500, 8_000, 10_000, 12_000, 14_000, 16_000, 18_000, 20_000,
    ];
    type Env<'a> = &'a [(&'a str, &'a str)];
    const ONE_LANE: (&str, &str) = ("GATEWAY__SETTLEMENT__LANES", "1");
    // Two gateways run one lane each: as many lanes in all as one gateway runs, so each
    // lane's batches are as large as one gateway's (the per-batch cost is the database's).
    let setups: [(&str, usize, Env, &[&str]); 4] = [
        ("one gateway (2 lanes)", 1, &[], &[]),
        (
            "two gateways (1 lane each), players shared",
            2,
            &[ONE_LANE],
            &[],
        ),
        (
            "two gateways (1 lane each), players shared, waiting for held wallets",
            2,
            &[
                ONE_LANE,
                ("GATEWAY__SETTLEMENT__BUSY_WALLET_PATIENCE_MS", "0"),
            ],
            &[],
        ),
        (
            "two gateways (1 lane each), each player on one gateway",
            2,
            &[ONE_LANE],
            &["--route-by-player"],
        ),
    ];
    let mut turns = Vec::new();
    for (turn, setup) in (0..2).flat_map(|_| 0..setups.len()).enumerate() {
        let (_, count, env, extra) = setups[setup];
        let first = Gateway::start(&root.join(format!("instances-{turn}-a")), env)?;
        let url = format!(
            "host={} user=wallet dbname=wallet",
            first.socket_dir.display()
        );
        let mut env_b = env.to_vec();
        env_b.push(("DATABASE_URL", &url));
        let second = match count {
            2 => Some(Gateway::start(
                &root.join(format!("instances-{turn}-b")),
                &env_b,
            )?),
            _ => None,
        };
        let gateways: Vec<&Gateway> = std::iter::once(&first).chain(second.as_ref()).collect();
        settle_down();
        loadtest_many(&gateways, SHARED_PLAYERS, 5_000, 10, extra)?;
        let at_10k = loadtest_many(&gateways, SHARED_PLAYERS, 10_000, step_s, extra)?;
        let per = |party: &str| at_10k.cpu_us_per_callback(party);
        let cpu = (per("gateway"), per("postgres"));
        let mut log = String::new();
        let best = ladder_many(
            &gateways,
            SHARED_PLAYERS,
            &rates,
            step_s,
            extra,
            1,
            &mut log,
        )?;
        settle_down();
        let saturated = loadtest_many(&gateways, SHARED_PLAYERS, SATURATING_RATE, step_s, extra)?;
        // A counter summed over the gateways.
        let total = |line: &str| -> u64 {
            gateways
                .iter()
                .map(|g| g.metrics().map(|m| metric(&m, line)).unwrap_or(0))
                .sum()
        };
        let deferrals = total("wallet_busy_wallet_deferrals_total");
        let conflicts = total("wallet_batch_failures_total{kind=\"conflict\"}");
        if let Some(second) = second {
            second.stop()?;
        }
        first.stop()?;
        turns.push(InstancesTurn {
            setup,
            cpu_us: cpu,
            best,
            ladder_log: log,
            saturated,
            deferrals,
            conflicts,
        });
    }

    let mut w = String::new();
    writeln!(w, "\n## Several gateways on one database\n")?;
    writeln!(w, "Gateway A runs the embedded PostgreSQL, gateway B connects to it (`DATABASE_URL`). With players shared, the generator's connections go to A and B in turn, so both take callbacks for the same {SHARED_PLAYERS} players (one player's bet, win and retries reach both, and a retry often finds the other gateway's dedup index empty). Each lane locks its batch's wallets with `SKIP LOCKED`: a wallet the other gateway holds is left for the lane's next batch instead of waited for (after `settlement.busy_wallet_patience_ms`, 50 ms by default, the batch waits for it); the third setup's batches always wait (`busy_wallet_patience_ms = 0`). The last sends each player's calls to one gateway (`loadtest --route-by-player`, as a balancer hashing on the player id would). Fresh clusters, each setup twice, in turn; CPU per callback at 10,000/s for {step_s} s (all gateways, every PostgreSQL process); a ladder of {step_s} s steps (one run a step, the disk probed for 2 s just before and after each run, never beside it; pass: all answered, no 5xx, p99 <= {P99_MAX_MS} ms); then {SATURATING_RATE}/s offered for {step_s} s.\n")?;
    writeln!(w, "| turn | setup | gateway µs/callback | PostgreSQL µs/callback | highest passing | its p99 ms | saturated: answered/s | its p99 ms | held wallets skipped | batch conflicts |\n|---|---|---|---|---|---|---|---|---|---|")?;
    for (n, turn) in turns.iter().enumerate() {
        let (rate, p99) = turn
            .best
            .as_ref()
            .map_or((0, f64::NAN), |(r, run)| (*r, run.p("p99")));
        writeln!(
            w,
            "| {} | {} | {:.1} | {:.1} | {rate}/s | {p99:.1} | {:.0} | {:.0} | {} | {} |",
            n + 1,
            setups[turn.setup].0,
            turn.cpu_us.0,
            turn.cpu_us.1,
            turn.saturated.answered_rate(),
            turn.saturated.p("p99"),
            turn.deferrals,
            turn.conflicts,
        )?;
    }
    writeln!(w, "\n| setup | gateway + PostgreSQL µs/callback (mean of two) | highest passing (mean of two) | saturated answered/s (mean of two) | against one gateway |\n|---|---|---|---|---|")?;
    let mean = |setup: usize, f: &dyn Fn(&InstancesTurn) -> f64| {
        let v: Vec<f64> = turns.iter().filter(|t| t.setup == setup).map(f).collect();
        v.iter().sum::<f64>() / v.len().max(1) as f64
    };
    let saturated = |t: &InstancesTurn| t.saturated.answered_rate();
    for (setup, (label, ..)) in setups.iter().enumerate() {
        writeln!(
            w,
            "| {label} | {:.1} | {:.0}/s | {:.0} | {:+.1} % |",
            mean(setup, &|t| t.cpu_us.0 + t.cpu_us.1),
            mean(setup, &|t| t.best.as_ref().map_or(0.0, |(r, _)| *r as f64)),
            mean(setup, &saturated),
            (mean(setup, &saturated) / mean(0, &saturated).max(1.0) - 1.0) * 100.0
        )?;
    }
    for (n, turn) in turns.iter().enumerate() {
        writeln!(w, "\nLadder, turn {}, {}:\n", n + 1, setups[turn.setup].0)?;
        writeln!(w, "{LADDER_HEADER}")?;
        w.push_str(&turn.ladder_log);
    }
    Ok(w)
}

/// One turn of [`instances_section`].
struct InstancesTurn {
    /// Index into the section's setups.
    setup: usize,
    /// CPU µs per callback at 10,000/s: the gateways, every PostgreSQL process.
    cpu_us: (f64, f64),
    best: Option<(u64, Run)>,
    ladder_log: String,
    saturated: Run,
    /// Units left for a later batch because another transaction held their wallet.
    deferrals: u64,
    conflicts: u64,
}

/// Ledger rows seeded for the reports section.
const REPORT_ROWS: u64 = 10_000_000;

/// Runs `sql` on the gateway's embedded database; answers the first column of the first row.
fn psql(gateway: &Gateway, sql: &str) -> anyhow::Result<String> {
    let out = Command::new("psql")
        .arg("-h")
        .arg(&gateway.socket_dir)
        .args([
            "-U",
            "wallet",
            "-d",
            "wallet",
            "-v",
            "ON_ERROR_STOP=1",
            "-Atc",
            sql,
        ])
        .output()
        .context("run psql (Debian: apt-get install postgresql-client)")?;
    if !out.status.success() {
        bail!("psql: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The back office's reports over a ledger of 10,000,000 rows: seeded in ten slices (bets and
/// wins of the demo provider over the last 30 days, 50 games, every demo player), each folded
/// into the rollups by the gateway's own job before the next; then `loadtest --mode reports`
/// asks every report by day, provider and game in turn over HTTP. Markdown.
fn reports_section(root: &Path, step_s: u64) -> anyhow::Result<String> {
    let gw = Gateway::start(
        &root.join("reports"),
        &[("GATEWAY__REST__REPORT_FOLD_INTERVAL_S", "1")],
    )?;
    psql(&gw, &history_partitions_sql(30, true))?;
    // Seeded in slices of a tenth, oldest first, each folded before the next is written: the
    // job then folds rows still in memory, as it does in service (every few seconds), rather
    // than a cold backlog of the whole table.
    let slices = 10;
    let per_slice = REPORT_ROWS / slices;
    let (mut seeded_s, mut folded_s) = (0.0, 0.0);
    for slice in 0..slices {
        let seeding = Instant::now();
        psql(
            &gw,
            &seed_ledger_sql(slice * per_slice, (slice + 1) * per_slice, REPORT_ROWS, 30),
        )?;
        // As after any bulk load: statistics first, so the fold's plan knows the table's size.
        psql(&gw, "ANALYZE transactions")?;
        seeded_s += seeding.elapsed().as_secs_f64();
        let folding = Instant::now();
        wait_for_rollups(&gw)?;
        folded_s += folding.elapsed().as_secs_f64();
    }
    let rows: u64 = psql(&gw, "SELECT count(*) FROM transactions")?.parse()?;
    let sets = psql(
        &gw,
        "SELECT count(*) || ' sets of players, ' || pg_size_pretty(sum(octet_length(players)))
         FROM report_player_sets",
    )?;
    // Each report on its own, a request a second over 4 connections (a report that takes
    // seconds still gets answered within the run), by day, provider and game in turn.
    let mut runs = Vec::new();
    for report in ["ggr", "rtp", "rounds", "players"] {
        let run = loadtest_many(
            &[&gw],
            PLAYERS,
            1,
            step_s,
            &[
                "--mode",
                "reports",
                "--reports",
                report,
                "--connections",
                "4",
            ],
        )?;
        runs.push((report, run));
    }
    gw.stop()?;

    let mut w = String::new();
    writeln!(w, "\n## Reports over {rows} ledger rows\n")?;
    writeln!(w, "{REPORT_ROWS} ledger rows (bets and wins of the demo provider over the last 30 days, 50 games, {PLAYERS} players, with their keys and rounds, in 30 daily partitions) seeded by `INSERT ... generate_series` in ten slices, oldest first ({seeded_s:.0} s of inserts and `ANALYZE`), each folded into the rollups by the gateway's own job (every second here, `rest.report_fold_interval_s`) before the next ({folded_s:.0} s of folding in all). Then `loadtest --mode reports --reports NAME`: a request a second for {step_s} s over 4 connections, the report of the last 30 days by day, provider and game in turn, over HTTP with an admin token. Target: under 200 ms. Active players: {sets} (one per day, provider and game).\n")?;
    writeln!(
        w,
        "| report | requests | p50 ms | p99 ms | max ms | answers |\n|---|---|---|---|---|---|"
    )?;
    for (report, run) in &runs {
        writeln!(
            w,
            "| {report} | {} | {:.2} | {:.2} | {:.2} | {} |",
            run.report["completed"],
            run.p("p50"),
            run.p("p99"),
            run.p("max"),
            run.report["statuses"]
        )?;
    }
    Ok(w)
}

/// Waits until the report job has folded every ledger row older than an hour.
fn wait_for_rollups(gw: &Gateway) -> anyhow::Result<()> {
    let started = Instant::now();
    while psql(
        gw,
        "SELECT last_id >= (SELECT max(id) FROM transactions
                            WHERE created_at < now() - interval '1 hour')
         FROM report_watermark",
    )? != "t"
    {
        if started.elapsed() > Duration::from_secs(1_800) {
            bail!("the rollups did not catch up within 30 minutes");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    Ok(())
}

/// Creates the ledger's partitions for the `days` days before today (UTC): one a day, or one
/// for them all. SQL for `psql`.
fn history_partitions_sql(days: u32, daily: bool) -> String {
    let (step, name) = match daily {
        true => (1, "'transactions_p' || to_char(d, 'YYYYMMDD')"),
        false => (days, "'transactions_history'"),
    };
    format!(
        "DO $$
         DECLARE d date;
         BEGIN
             FOR i IN 0..{last} BY {step} LOOP
                 d := (now() AT TIME ZONE 'UTC')::date - {days} + i;
                 EXECUTE format('CREATE TABLE %I PARTITION OF transactions
                                 FOR VALUES FROM (%L) TO (%L) WITH (fillfactor = 90)',
                                {name}, d::text || ' 00:00+00',
                                (d + {step})::text || ' 00:00+00');
             END LOOP;
         END $$",
        last = days - 1
    )
}

/// Rows `(first, last]` of a history of `total` ledger rows spread evenly over the `days` days
/// before today: bets and wins of the demo provider by every demo player in turn, 50 games,
/// each pair one round with its key rows and its closed `rounds` row, as the lanes write them.
/// A round's win pays its bet back, so every wallet still equals its ledger. SQL for `psql`.
fn seed_ledger_sql(first: u64, last: u64, total: u64, days: u32) -> String {
    format!(
        "WITH rows AS (
             INSERT INTO transactions (provider_id, provider_tx_id, kind, outcome, state,
                 player_id, currency, round_id, game_id, amount, real_delta, bonus_delta,
                 balance_before, balance_after, bonus_before, bonus_after, created_at)
             SELECT pr.id, 'seed-' || g, CASE WHEN g % 2 = 0 THEN 'bet' ELSE 'win' END,
                    'OK', CASE WHEN g % 2 = 0 THEN 'settled' END,
                    pl.first + (g / 2) % {PLAYERS}, 'EUR', 'seed-r-' || (g / 2),
                    'game-' || (g / 2) % 50, 100 + (g / 2) % 1000,
                    CASE WHEN g % 2 = 0 THEN -1 ELSE 1 END * (100 + (g / 2) % 1000), 0,
                    0, CASE WHEN g % 2 = 0 THEN -1 ELSE 1 END * (100 + (g / 2) % 1000), 0, 0,
                    date_trunc('day', now(), 'UTC') - interval '{days} days'
                        + interval '{days} days' * (g / 2 * 2) / {total}
             FROM generate_series({first} + 1, {last}) AS g,
                  (SELECT id FROM providers WHERE code = 'demo') AS pr,
                  (SELECT min(id) AS first FROM players) AS pl
             RETURNING provider_id, provider_tx_id, id, created_at, kind, player_id, round_id,
                       game_id
         ), keys AS (
             INSERT INTO transaction_keys (provider_id, provider_tx_id, id, created_at, player_id)
             SELECT provider_id, provider_tx_id, id, created_at, player_id FROM rows
         )
         INSERT INTO rounds (provider_id, player_id, round_id, game_id, closed, created_at,
                             closed_at)
         SELECT provider_id, player_id, round_id, game_id, true, created_at, created_at
         FROM rows WHERE kind = 'bet'"
    )
}

/// The embedded PostgreSQL loads `pg_stat_statements` (the sections that time statements).
const STATEMENT_STATS: (&str, &str) = (
    "GATEWAY__EMBEDDED__SETTINGS__SHARED_PRELOAD_LIBRARIES",
    "pg_stat_statements",
);

/// A step of the write path: the schema and configuration before it (SQL run on a fresh
/// cluster of this build after its migrations, environment overrides) and after it.
struct Step {
    name: &'static str,
    undo_sql: &'static str,
    before_env: &'static [(&'static str, &'static str)],
    after_env: &'static [(&'static str, &'static str)],
}

/// The lanes' linger before the linger steps: only from half of `batch_len_max`, up to 1 ms.
const OLD_LINGER: &[(&str, &str)] = &[
    ("GATEWAY__SETTLEMENT__BATCH_LINGER_FROM", "256"),
    ("GATEWAY__SETTLEMENT__BATCH_WAIT_MAX_US", "1000"),
];

const WRITE_STEPS: &[Step] = &[
    Step {
        name: "the ledger's index on (provider, reference) dropped (migration 0013: every read \
               by reference goes through `transaction_keys`)",
        undo_sql:
            "CREATE INDEX transactions_reference ON transactions (provider_id, reference_tx_id)
                   WHERE reference_tx_id IS NOT NULL",
        before_env: &[],
        after_env: &[],
    },
    Step {
        name: "one settlement lane instead of two (`settlement.lanes`): batches twice as long",
        undo_sql: "",
        before_env: &[("GATEWAY__SETTLEMENT__LANES", "2")],
        after_env: &[("GATEWAY__SETTLEMENT__LANES", "1")],
    },
    Step {
        name: "two lanes that linger up to 1 ms once their previous batch held 8 commands \
               (`settlement.batch_linger_from` 8, was half of `batch_len_max`: 256)",
        undo_sql: "",
        before_env: OLD_LINGER,
        after_env: &[
            ("GATEWAY__SETTLEMENT__BATCH_LINGER_FROM", "8"),
            ("GATEWAY__SETTLEMENT__BATCH_WAIT_MAX_US", "1000"),
        ],
    },
    Step {
        name: "the same linger up to 2 ms (`settlement.batch_wait_max_us` 2000): the defaults \
               since this step",
        undo_sql: "",
        before_env: OLD_LINGER,
        after_env: &[
            ("GATEWAY__SETTLEMENT__BATCH_LINGER_FROM", "8"),
            ("GATEWAY__SETTLEMENT__BATCH_WAIT_MAX_US", "2000"),
        ],
    },
    Step {
        name: "one runtime worker thread beside the embedded PostgreSQL \
               (`server.worker_threads` 1, against the default of one per core: 2 here)",
        undo_sql: "",
        before_env: &[("GATEWAY__SERVER__WORKER_THREADS", "0")],
        after_env: &[("GATEWAY__SERVER__WORKER_THREADS", "1")],
    },
    Step {
        name: "a candidate, not the default: linger up to 5 ms (`settlement.batch_wait_max_us` \
               5000, against the default 2000) on the real disk",
        undo_sql: "",
        before_env: &[],
        after_env: &[("GATEWAY__SETTLEMENT__BATCH_WAIT_MAX_US", "5000")],
    },
];

/// Each step of the write path (schema or configuration) measured in one run: a fresh cluster
/// with the step undone, then one as it is, twice each way; warmed up, then 10,000/s (CPU of
/// gateway and every PostgreSQL process per callback, and the ledger insert's µs per row from
/// `pg_stat_statements`), then saturated. Markdown.
fn steps_section(root: &Path, step_s: u64) -> anyhow::Result<String> {
    let mut w = String::new();
    writeln!(w, "\n## The write path, step by step\n")?;
    writeln!(w, "Each step of the write path (its schema or its configuration), measured in this run: a fresh cluster of this build with the step undone (`before`: SQL after the migrations, or settings), then one as it is (`after`), twice each way; each warmed up (5,000/s for 10 s), then 10,000/s for {step_s} s: CPU of the gateway and of every PostgreSQL process per callback, and the ledger insert's time per row and per batch (`pg_stat_statements`, wall time); then {SATURATING_RATE}/s offered for {step_s} s (answers that were not a 5xx, per second).\n")?;
    writeln!(w, "| step | schema | turn | achieved/s | p99 ms | gateway µs/callback | PostgreSQL µs/callback | ledger insert µs/row | µs/batch | rows/batch | saturated: answered/s |\n|---|---|---|---|---|---|---|---|---|---|---|")?;
    let mut means = Vec::new();
    for (n, step) in WRITE_STEPS.iter().enumerate() {
        let mut cpu_us = [Vec::new(), Vec::new()];
        let mut answered = [Vec::new(), Vec::new()];
        for (turn, after) in [false, true, false, true].into_iter().enumerate() {
            let mut env = vec![STATEMENT_STATS];
            env.extend_from_slice(if after {
                step.after_env
            } else {
                step.before_env
            });
            let gw = Gateway::start(&root.join(format!("step-{n}-{turn}")), &env)?;
            if !after && !step.undo_sql.is_empty() {
                psql(&gw, step.undo_sql)?;
            }
            psql(&gw, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements")?;
            settle_down();
            loadtest(&gw, 5_000, 10, &[])?;
            psql(&gw, "SELECT pg_stat_statements_reset()")?;
            let run = loadtest(&gw, 10_000, step_s, &[])?;
            let insert = psql(
                &gw,
                "SELECT total_exec_time * 1000 / greatest(rows, 1),
                        total_exec_time * 1000 / greatest(calls, 1),
                        rows::float8 / greatest(calls, 1)
                 FROM pg_stat_statements
                 WHERE query LIKE 'WITH rows AS%INSERT INTO transactions%'
                 ORDER BY calls DESC LIMIT 1",
            )?;
            settle_down();
            let saturated = loadtest(&gw, SATURATING_RATE, step_s, &[])?;
            gw.stop()?;
            let cells: Vec<f64> = insert
                .split('|')
                .map(|c| c.parse().unwrap_or(f64::NAN))
                .collect();
            let per = |party: &str| run.cpu_us_per_callback(party);
            cpu_us[usize::from(after)].push(per("gateway") + per("postgres"));
            answered[usize::from(after)].push(saturated.answered_rate());
            writeln!(
                w,
                "| {} | {} | {} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0} | {:.1} | {:.0} |",
                n + 1,
                if after { "after" } else { "before" },
                turn + 1,
                run.achieved(),
                run.p("p99"),
                per("gateway"),
                per("postgres"),
                cells.first().copied().unwrap_or(f64::NAN),
                cells.get(1).copied().unwrap_or(f64::NAN),
                cells.get(2).copied().unwrap_or(f64::NAN),
                saturated.answered_rate(),
            )?;
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        means.push((
            step.name,
            (mean(&cpu_us[0]), mean(&cpu_us[1])),
            (mean(&answered[0]), mean(&answered[1])),
        ));
    }
    writeln!(w, "\n| step | gateway + PostgreSQL µs/callback before (mean of two) | after | change | saturated answered/s before | after | change |\n|---|---|---|---|---|---|---|")?;
    for (n, (step, (before, after), (sat_before, sat_after))) in means.iter().enumerate() {
        writeln!(
            w,
            "| {}. {step} | {before:.1} | {after:.1} | {:+.1} % | {sat_before:.0} | {sat_after:.0} | {:+.1} % |",
            n + 1,
            (after / before - 1.0) * 100.0,
            (sat_after / sat_before - 1.0) * 100.0
        )?;
    }
    Ok(w)
}

/// Turns of each build in [`compare_section`].
const COMPARE_TURNS: usize = 3;

/// This build against another one (and the configuration it reads): fresh clusters in turn,
/// this one first, [`COMPARE_TURNS`] each; each warmed up, run at 10,000/s (CPU of the
/// gateway and every PostgreSQL process per callback, batch sizes), then saturated. Markdown.
fn compare_section(
    root: &Path,
    step_s: u64,
    other_bin: &Path,
    other_config: &Path,
) -> anyhow::Result<String> {
    let builds = [
        (
            "this build",
            Path::new("target/release/gateway"),
            Path::new("config/demo.toml"),
        ),
        ("compared build", other_bin, other_config),
    ];
    let mut w = String::new();
    writeln!(
        w,
        "\n## Before/after: this build (`config/demo.toml`) and `{}` (`{}`)\n",
        other_bin.display(),
        other_config.display()
    )?;
    writeln!(w, "Each build on a fresh cluster in turn (this one first), {COMPARE_TURNS} times each: warm-up at 5,000/s for 10 s, then 10,000/s for {} s (CPU per callback over the measured part, mean commands per batch), then {SATURATING_RATE}/s offered for {step_s} s (answers that were not a 5xx, per second).\n", step_s * 2)?;
    writeln!(w, "| build | turn | achieved/s | p50 ms | p99 ms | errors | gateway µs/callback | PostgreSQL µs/callback | commands/batch | saturated: answered/s |\n|---|---|---|---|---|---|---|---|---|---|")?;
    let mut cpu_us = [Vec::new(), Vec::new()];
    let mut answered = [Vec::new(), Vec::new()];
    for turn in 0..COMPARE_TURNS * 2 {
        let which = turn % 2;
        let (label, bin, config) = builds[which];
        let gw = Gateway::start_from(bin, config, &root.join(format!("compare-{turn}")), &[])?;
        settle_down();
        loadtest(&gw, 5_000, 10, &[])?;
        let before = gw.metrics()?;
        let run = loadtest(&gw, 10_000, step_s * 2, &[])?;
        let after = gw.metrics()?;
        settle_down();
        let saturated = loadtest(&gw, SATURATING_RATE, step_s, &[])?;
        gw.stop()?;
        let per_batch = metric(&after, "wallet_batch_size_sum")
            .saturating_sub(metric(&before, "wallet_batch_size_sum"))
            as f64
            / (metric(&after, "wallet_batch_size_count")
                .saturating_sub(metric(&before, "wallet_batch_size_count"))
                .max(1)) as f64;
        let per = |party: &str| run.cpu_us_per_callback(party);
        cpu_us[which].push(per("gateway") + per("postgres"));
        answered[which].push(saturated.answered_rate());
        writeln!(
            w,
            "| {label} | {} | {} | {per_batch:.1} | {:.0} |",
            turn / 2 + 1,
            run.cpu_cells(),
            saturated.answered_rate(),
        )?;
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let (this_cpu, other_cpu) = (mean(&cpu_us[0]), mean(&cpu_us[1]));
    let (this_sat, other_sat) = (mean(&answered[0]), mean(&answered[1]));
    writeln!(w, "\n| means of {COMPARE_TURNS} | gateway + PostgreSQL µs/callback | saturated answered/s |\n|---|---|---|")?;
    writeln!(w, "| compared build | {other_cpu:.1} | {other_sat:.0} |")?;
    writeln!(
        w,
        "| this build | {this_cpu:.1} ({:+.1} %) | {this_sat:.0} ({:+.1} %) |",
        (this_cpu / other_cpu - 1.0) * 100.0,
        (this_sat / other_sat - 1.0) * 100.0
    )?;
    Ok(w)
}

/// Ledger rows of history for the partitions section.
const HISTORY_ROWS: u64 = 3_000_000;

/// Retention's partitions on the hot path: the same 30 days of history ({HISTORY_ROWS} ledger
/// rows, their keys and rounds) in one partition or in 30 daily ones, fresh clusters in turn,
/// twice each way; each warmed up, run at 10,000/s (CPU per callback) and saturated. Markdown.
fn partitions_section(root: &Path, step_s: u64) -> anyhow::Result<String> {
    let mut turns = Vec::new();
    let mut statements = Vec::new();
    for (turn, daily) in [false, true, false, true].into_iter().enumerate() {
        let gw = Gateway::start(
            &root.join(format!("partitions-{turn}")),
            &[
                ("GATEWAY__REST__REPORT_FOLD_INTERVAL_S", "1"),
                STATEMENT_STATS,
            ],
        )?;
        let seeding = Instant::now();
        psql(&gw, &history_partitions_sql(30, daily))?;
        psql(&gw, &seed_ledger_sql(0, HISTORY_ROWS, HISTORY_ROWS, 30))?;
        // Vacuumed as autovacuum would have, day by day: not inside the measured runs.
        psql(&gw, "VACUUM (ANALYZE)")?;
        let seeded_s = seeding.elapsed().as_secs_f64();
        // The report job folds the history into the rollups (as it would have, day by day):
        // timed apart, and not inside the runs.
        let folding = Instant::now();
        wait_for_rollups(&gw)?;
        let folded_s = folding.elapsed().as_secs_f64();
        psql(&gw, "CHECKPOINT")?;
        let partitions: u64 = psql(
            &gw,
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'transactions'::regclass",
        )?
        .parse()?;
        settle_down();
        loadtest_many(&[&gw], PLAYERS, 5_000, 10, &[])?;
        let at_10k = loadtest_many(&[&gw], PLAYERS, 10_000, step_s, &[])?;
        let per = |party: &str| at_10k.cpu_us_per_callback(party);
        let cpu = (per("gateway"), per("postgres"));
        settle_down();
        psql(
            &gw,
            "CREATE EXTENSION IF NOT EXISTS pg_stat_statements; SELECT pg_stat_statements_reset()",
        )?;
        let saturated = loadtest_many(&[&gw], PLAYERS, SATURATING_RATE, step_s, &[])?;
        statements.push(top_statements(&gw)?);
        gw.stop()?;
        turns.push((
            daily,
            partitions,
            (seeded_s, folded_s),
            cpu,
            at_10k,
            saturated,
        ));
    }
    let mut w = String::new();
    writeln!(w, "\n## Daily partitions on the hot path\n")?;
    writeln!(w, "The ledger holds 30 days of history before today's traffic: {HISTORY_ROWS} rows (bets and wins of {PLAYERS} players, with their keys and closed rounds) in **one** partition for the 30 days, or in **30 daily** partitions; today's partition and {} days ahead are the gateway's own in both. Fresh clusters in turn, twice each way; the history vacuumed and analyzed (as autovacuum would have done day by day), the report job's fold of it waited for (and timed) and a checkpoint taken before the runs; each warmed up (5,000/s for 10 s), then 10,000/s for {step_s} s (CPU of gateway + every PostgreSQL process per callback), then {SATURATING_RATE}/s offered for {step_s} s (what is answered is the throughput). Target: 30 daily partitions not slower than one.\n", 3)?;
    writeln!(w, "| turn | history in | ledger partitions | seeding s | report fold of the history s | gateway µs/callback | PostgreSQL µs/callback | p99 ms at 10,000/s | saturated: answered/s | its p99 ms |\n|---|---|---|---|---|---|---|---|---|---|")?;
    for (turn, (daily, partitions, (seeded_s, folded_s), (gw_us, pg_us), at_10k, saturated)) in
        turns.iter().enumerate()
    {
        let layout = if *daily {
            "30 daily partitions"
        } else {
            "one partition"
        };
        writeln!(
            w,
            "| {} | {layout} | {partitions} | {seeded_s:.0} | {folded_s:.0} | {gw_us:.1} | {pg_us:.1} | {:.1} | {:.0} | {:.0} |",
            turn + 1,
            at_10k.p("p99"),
            saturated.answered_rate(),
            saturated.p("p99"),
        )?;
    }
    let mean = |daily: bool| {
        let rates: Vec<f64> = turns
            .iter()
            .filter(|t| t.0 == daily)
            .map(|t| t.5.answered_rate())
            .collect();
        rates.iter().sum::<f64>() / rates.len().max(1) as f64
    };
    let (one, thirty) = (mean(false), mean(true));
    writeln!(
        w,
        "\nSaturated throughput, mean of two: one partition {one:.0}/s, 30 daily partitions {thirty:.0}/s ({:+.1} %).",
        (thirty / one - 1.0) * 100.0
    )?;
    writeln!(w, "\nWhere PostgreSQL's time went in each saturated run (`pg_stat_statements`, the statements that took most of it in turn 1, µs per call and thousands of calls per turn):\n")?;
    writeln!(
        w,
        "| statement | {} |\n|---|{}",
        (1..=statements.len())
            .map(|t| format!("turn {t} µs | calls k"))
            .collect::<Vec<_>>()
            .join(" | "),
        "---|---|".repeat(statements.len())
    )?;
    for (query, _) in statements.first().into_iter().flatten() {
        let cells: Vec<String> = statements
            .iter()
            .map(|turn| match turn.iter().find(|(q, _)| q == query) {
                Some((_, (mean_us, calls))) => format!("{mean_us:.1} | {:.1}", calls / 1e3),
                None => "- | -".to_string(),
            })
            .collect();
        writeln!(w, "| `{query}` | {} |", cells.join(" | "))?;
    }
    Ok(w)
}

/// Ledger rows of history for the scale section.
const SCALE_ROWS: u64 = 10_000_000;

/// The write path with data: the same ladder and saturated run on a fresh cluster with an
/// empty ledger, then on one holding [`SCALE_ROWS`] rows of history (30 daily partitions, with
/// keys and closed rounds, vacuumed, folded by the report job, checkpointed). Target: the
/// throughput with data within 10 % of the empty ledger's. Markdown.
fn scale_section(root: &Path, step_s: u64) -> anyhow::Result<String> {
    let rates = [5_000, 7_500, 10_000, 12_500, 15_000, 17_500, 20_000];
    let mut turns = Vec::new();
    for (turn, rows) in [0, SCALE_ROWS].into_iter().enumerate() {
        let gw = Gateway::start(&root.join(format!("scale-{turn}")), &[])?;
        let seeding = Instant::now();
        if rows > 0 {
            psql(&gw, &history_partitions_sql(30, true))?;
            // Ten slices, oldest first: no statement holds the whole history at once.
            let slices = 10;
            for slice in 0..slices {
                let (first, last) = (slice * rows / slices, (slice + 1) * rows / slices);
                psql(&gw, &seed_ledger_sql(first, last, rows, 30))?;
            }
            psql(&gw, "VACUUM (ANALYZE)")?;
            wait_for_rollups(&gw)?;
            psql(&gw, "CHECKPOINT")?;
        }
        let prepared_s = seeding.elapsed().as_secs_f64();
        let size = psql(
            &gw,
            "SELECT count(*) || ' rows, ' || pg_size_pretty(
                 (SELECT sum(pg_total_relation_size(relid))
                  FROM pg_partition_tree('transactions')))
             FROM transactions",
        )?;
        settle_down();
        loadtest(&gw, 5_000, 10, &[])?;
        let mut log = String::new();
        let best = ladder_many(&[&gw], PLAYERS, &rates, step_s, &[], 1, &mut log)?;
        settle_down();
        let saturated = loadtest(&gw, SATURATING_RATE, step_s, &[])?;
        gw.stop()?;
        turns.push(ScaleTurn {
            rows,
            prepared_s,
            size,
            best,
            ladder_log: log,
            saturated,
        });
    }
    let mut w = String::new();
    writeln!(w, "\n## The write path with {SCALE_ROWS} ledger rows\n")?;
    writeln!(w, "The same runs on a fresh cluster with an empty ledger, then on one holding {SCALE_ROWS} ledger rows of history (bets and wins of {PLAYERS} players over 30 days in 30 daily partitions, with their keys and closed rounds; seeded by `INSERT ... generate_series` in ten slices, vacuumed and analyzed, folded by the report job, checkpointed): warmed up (5,000/s for 10 s), a ladder of {step_s} s steps (one run a step, the disk probed for 2 s just before and after each run, never beside it; pass: all answered, no 5xx, p99 <= {P99_MAX_MS} ms), then {SATURATING_RATE}/s offered for {step_s} s. Target: throughput with the history within 10 % of the empty ledger's.\n")?;
    writeln!(w, "| ledger before the runs | seeding, vacuum and fold s | highest passing | its p99 ms | saturated: answered/s | its p99 ms |\n|---|---|---|---|---|---|")?;
    for turn in &turns {
        let (rate, p99) = turn
            .best
            .as_ref()
            .map_or((0, f64::NAN), |(r, run)| (*r, run.p("p99")));
        writeln!(
            w,
            "| {} | {:.0} | {rate}/s | {p99:.1} | {:.0} | {:.0} |",
            turn.size,
            turn.prepared_s,
            turn.saturated.answered_rate(),
            turn.saturated.p("p99"),
        )?;
    }
    let saturated: Vec<f64> = turns.iter().map(|t| t.saturated.answered_rate()).collect();
    writeln!(
        w,
        "\nSaturated throughput with the history: {:+.1} % of the empty ledger's.",
        (saturated[1] / saturated[0].max(1.0) - 1.0) * 100.0
    )?;
    for turn in &turns {
        writeln!(w, "\nLadder, {} rows of history:\n", turn.rows)?;
        writeln!(w, "{LADDER_HEADER}")?;
        w.push_str(&turn.ladder_log);
    }
    Ok(w)
}

/// One turn of [`scale_section`].
struct ScaleTurn {
    /// Ledger rows of history seeded before the runs.
    rows: u64,
    /// Seconds spent seeding, vacuuming, folding and checkpointing.
    prepared_s: f64,
    /// The ledger's rows and size on disk, as text.
    size: String,
    best: Option<(u64, Run)>,
    ladder_log: String,
    saturated: Run,
}

/// The statements that took most of PostgreSQL's time since the last reset: their text's start
/// (whitespace folded), mean µs per call and calls.
fn top_statements(gw: &Gateway) -> anyhow::Result<Vec<(String, (f64, f64))>> {
    let rows = psql(
        gw,
        "SELECT left(translate(regexp_replace(query, '\\s+', ' ', 'g'), '|', '/'), 60), total_exec_time * 1000 / calls,
                calls
         FROM pg_stat_statements WHERE calls > 0 ORDER BY total_exec_time DESC LIMIT 14",
    )?;
    rows.lines()
        .map(|line| {
            let mut cells = line.split('|');
            let query = cells.next().unwrap_or_default().replace('`', "'");
            let mean: f64 = cells.next().unwrap_or_default().parse()?;
            let calls: f64 = cells.next().unwrap_or_default().parse()?;
            Ok((query, (mean, calls)))
        })
        .collect()
}

/// Bucket counts of a Prometheus histogram, as `(le, cumulative count)` in bucket order.
fn histogram(metrics: &str, name: &str) -> Vec<(String, f64)> {
    let mut buckets: Vec<(f64, String, f64)> = metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}_bucket{{")))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?.to_string();
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            let v: f64 = l.rsplit(' ').next()?.parse().ok()?;
            Some((bound, le, v))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Series of several label sets (providers, dialects) are summed bucket by bucket.
    let mut summed: Vec<(String, f64)> = Vec::new();
    for (_, le, v) in buckets {
        match summed.last_mut() {
            Some((last, total)) if *last == le => *total += v,
            _ => summed.push((le, v)),
        }
    }
    summed
}

/// The upper bound of the bucket holding quantile `q` of the samples recorded between two
/// scrapes of histogram `name` (`None` without samples).
fn quantile_bound(before: &str, after: &str, name: &str, q: f64) -> Option<String> {
    let earlier: BTreeMap<String, f64> = histogram(before, name).into_iter().collect();
    let delta: Vec<(String, f64)> = histogram(after, name)
        .into_iter()
        .map(|(le, v)| {
            let d = v - earlier.get(&le).copied().unwrap_or(0.0);
            (le, d)
        })
        .collect();
    let total = delta.last()?.1;
    if total <= 0.0 {
        return None;
    }
    delta
        .into_iter()
        .find(|(_, cumulative)| *cumulative >= q * total)
        .map(|(le, _)| le)
}

fn metric(metrics: &str, line_prefix: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(line_prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// `sql` with its parameters `$1`, `$2`, ... replaced by pgbench variables (`-M prepared`
/// binds each as a parameter again), so pgbench runs the lanes' own statement text.
fn bind(sql: &str, vars: &[&str]) -> String {
    let mut out = sql.to_string();
    // From the highest: `$1` must not take the front of `$10`.
    for (n, var) in vars.iter().enumerate().rev() {
        out = out.replace(&format!("${}", n + 1), &format!(":{var}"));
    }
    assert!(!out.contains('$'), "a parameter left unbound in {out}");
    out
}

/// pgbench's view of one batch of 64 bets by players `:base` on, built from the lanes' own
/// statements (`settlement::store`, the same text they prepare, so the two cannot drift), in
/// their order: ledger ids, the wallet lock, players, the lookups by key (ledger rows, rollbacks
/// naming them, rounds, limits), then the writes. The keys are new, as a bet's are. The
/// `\gset` lines only build the arrays the lanes would send (one small query each). With
/// `reads` false: the lock and the writes alone.
fn pgbench_batch_script(reads: bool) -> String {
    use settlement::store::{
        INSERT_LEDGER, INSERT_ROUNDS, LIMITS, LOCK_WALLETS, LOOKUP_TXS, PLAYERS, RESERVE_IDS,
        ROUNDS, TOMBSTONES, UPDATE_WALLETS,
    };
    let mut script = String::from(
        "\\set base random(1, 99000)\n\\set n 64\nBEGIN;\n\
         SELECT array_agg(p)::text AS players\n\
         FROM generate_series(:base::int, :base::int + :n::int - 1) AS p \\gset\n",
    );
    let mut sql = |text: String| {
        script.push_str(&text);
        script.push_str(if text.ends_with("\\gset") {
            "\n"
        } else {
            ";\n"
        });
    };
    sql(format!(
        "SELECT x::text AS ids FROM ({}) AS s(x) \\gset",
        bind(RESERVE_IDS, &["n"])
    ));
    sql(bind(LOCK_WALLETS, &["players"]));
    if reads {
        sql(bind(PLAYERS, &["players"]));
        sql(
            "SELECT array_agg(1)::text AS providers, array_agg('pgb-' || id)::text AS tx_ids,
                    array_agg(p)::text AS round_players
             FROM unnest(:ids::bigint[], :players::bigint[]) AS u(id, p) \\gset"
                .to_string(),
        );
        sql(bind(LOOKUP_TXS, &["providers", "tx_ids"]));
        sql(bind(TOMBSTONES, &["providers", "tx_ids"]));
        sql(bind(ROUNDS, &["providers", "round_players", "tx_ids"]));
        sql(bind(LIMITS, &["players"]));
    }
    let ledger: Vec<String> = (1..=19).map(|n| format!("l{n}")).collect();
    sql("SELECT array_agg(id)::text AS l1, array_agg(1)::text AS l2,
                array_agg('pgb-' || id)::text AS l3, array_agg('bet'::text)::text AS l4,
                array_agg('OK'::text)::text AS l5, array_agg('open'::text)::text AS l6,
                array_agg(p)::text AS l7, array_agg('EUR'::text)::text AS l8,
                array_agg('pgb-' || id)::text AS l9, array_agg('slot-1'::text)::text AS l10,
                array_agg(1)::text AS l11, array_agg(-1)::text AS l12, array_agg(0)::text AS l13,
                array_agg(1000)::text AS l14, array_agg(999)::text AS l15,
                array_agg(0)::text AS l16, array_agg(0)::text AS l17,
                array_agg(NULL::text)::text AS l18,
                array_agg(decode(repeat('ab', 16), 'hex'))::text AS l19
         FROM unnest(:ids::bigint[], :players::bigint[]) AS u(id, p) \\gset"
        .to_string());
    sql(bind(
        INSERT_LEDGER,
        &ledger.iter().map(String::as_str).collect::<Vec<_>>(),
    ));
    sql(
        "SELECT array_agg(ctid::text)::text AS w1, array_agg(balance - 1)::text AS w2,
                array_agg(bonus)::text AS w3, array_agg(needs_reconciliation)::text AS w4
         FROM wallets WHERE player_id = ANY(:players::bigint[]) \\gset"
            .to_string(),
    );
    sql(bind(UPDATE_WALLETS, &["w1", "w2", "w3", "w4"]));
    sql(
        "SELECT array_agg(1)::text AS r1, array_agg('pgb-' || id)::text AS r3,
                array_agg('slot-1'::text)::text AS r4, array_agg(false)::text AS r5
         FROM unnest(:ids::bigint[]) AS u(id) \\gset"
            .to_string(),
    );
    sql(bind(INSERT_ROUNDS, &["r1", "players", "r3", "r4", "r5"]));
    script.push_str("COMMIT;\n");
    script
}

/// Synchronous write latency of the disk under the data folder, measured the way a commit
/// uses it: an 8 KiB write then `fdatasync`, 1,000 a second (about what the lanes' commits
/// ask at 10,000 callbacks/s). A commit cannot be acknowledged faster than this.
struct DiskProbe {
    writes: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    over_50ms: usize,
    stalled_s: f64,
}

fn disk_probe(dir: &Path, seconds: u64) -> anyhow::Result<DiskProbe> {
    use std::os::unix::fs::FileExt as _;
    const BLOCK: u64 = 8192;
    const SPAN: u64 = 16 << 20;
    std::fs::create_dir_all(dir)?;
    let path = dir.join("disk-probe");
    let file = std::fs::File::create(&path)?;
    file.set_len(SPAN)?;
    file.sync_all()?;
    let block = vec![0x5a_u8; BLOCK as usize];
    let mut latencies = Vec::new();
    let started = Instant::now();
    let end = Duration::from_secs(seconds);
    let mut offset = 0;
    for i in 0_u32.. {
        let due = Duration::from_millis(u64::from(i));
        if due >= end {
            break;
        }
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
        let write = Instant::now();
        file.write_all_at(&block, offset)?;
        file.sync_data()?;
        latencies.push(write.elapsed().as_secs_f64() * 1000.0);
        offset = (offset + BLOCK) % SPAN;
    }
    drop(file);
    let _ = std::fs::remove_file(&path);
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    Ok(DiskProbe {
        writes: latencies.len(),
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        max_ms: at(1.0),
        over_50ms: latencies.iter().filter(|&&ms| ms > 50.0).count(),
        stalled_s: latencies.iter().filter(|&&ms| ms > 20.0).sum::<f64>() / 1000.0,
    })
}

/// Rows a second that pgbench gets through with `script` (64 rows per transaction, 2 clients).
/// The cluster's current WAL position, in bytes.
fn wal_lsn(gateway: &Gateway) -> anyhow::Result<u64> {
    let lsn = psql(
        gateway,
        "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint",
    )?;
    lsn.parse()
        .with_context(|| format!("psql answered {lsn:?}"))
}

fn pgbench(gateway: &Gateway, name: &str, script: &str, seconds: u64) -> anyhow::Result<f64> {
    let path = std::env::temp_dir().join(format!("wallet-{name}.pgbench"));
    std::fs::write(&path, script)?;
    let out = Command::new("pgbench")
        .args([
            "-n",
            "-M",
            "prepared",
            "-c",
            "2",
            "-j",
            "2",
            "-T",
            &seconds.to_string(),
        ])
        .arg("-h")
        .arg(&gateway.socket_dir)
        .args(["-U", "wallet", "-f"])
        .arg(&path)
        .arg("wallet")
        .output()
        .context("run pgbench (Debian: apt-get install postgresql-client)")?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        bail!(
            "pgbench {name} failed: {}{}",
            text,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let tps: f64 = text
        .lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l.split_whitespace().nth(2)?.parse().ok())
        .context("pgbench tps")?;
    Ok(tps * 64.0)
}

/// The kernel's CPU pressure (`/proc/pressure/cpu`) over 10 s with nothing of the bench
/// running: above a few percent, the machine's cores were busy with something else (another
/// guest on the host), and every figure of the run is lower for it.
fn cpu_pressure() -> String {
    std::thread::sleep(Duration::from_secs(10));
    let text = std::fs::read_to_string("/proc/pressure/cpu").unwrap_or_default();
    let avg10 = text
        .lines()
        .find(|l| l.starts_with("some"))
        .and_then(|l| l.split_whitespace().find_map(|f| f.strip_prefix("avg10=")));
    match avg10 {
        Some(share) => format!(
            "CPU pressure with the machine idle before the runs: some task waited for a core \
             {share} % of 10 s (`/proc/pressure/cpu`; near 0 on a quiet machine)."
        ),
        None => "CPU pressure: not available here (`/proc/pressure/cpu`).".to_string(),
    }
}

/// A section `--only NAME` runs alone, into `docs/bench/NAME.md`.
struct Section {
    name: &'static str,
    title: &'static str,
    /// Whether the full `cargo xtask bench` has it too (in `docs/performance.md`).
    in_full: bool,
    run: fn(&Path, u64) -> anyhow::Result<String>,
}

/// In the full run's order.
const SECTIONS: &[Section] = &[
    Section {
        name: "logins",
        title: "REST logins beside callbacks",
        in_full: true,
        run: logins_section,
    },
    Section {
        name: "trace",
        title: "Keeping raw callbacks for trace and replay: what it costs",
        in_full: true,
        run: trace_section,
    },
    Section {
        name: "instances",
        title: "Several gateways on one database",
        in_full: true,
        run: instances_section,
    },
    Section {
        name: "steps",
        title: "The write path, step by step",
        in_full: true,
        run: steps_section,
    },
    Section {
        name: "scale",
        title: "The write path with 10,000,000 ledger rows",
        in_full: true,
        run: scale_section,
    },
    Section {
        name: "reports",
        title: "Back-office reports on a large ledger",
        in_full: false,
        run: reports_section,
    },
    Section {
        name: "partitions",
        title: "Retention's daily partitions on the hot path",
        in_full: false,
        run: partitions_section,
    },
    Section {
        name: "mixes",
        title: "Traffic mixes from a fresh database, overload, a day's rollover and a soak",
        in_full: false,
        run: mixes::section,
    },
];

/// Runs the sections the full report has, in order. A section that fails (a loadtest that
/// could not drain, a gateway that would not start) says so in the report and the run goes
/// on: an hour of measurements is not thrown away for one of them.
fn full_sections(sections: &[Section], root: &Path, step_s: u64) -> Vec<String> {
    sections
        .iter()
        .filter(|s| s.in_full)
        .map(|s| {
            // The clusters of the sections before are deleted first (all of them held more than
            // the disk had free for the scale section's ten million rows), and written out
            // before this one measures anything.
            remove_clusters(root);
            (s.run)(root, step_s).unwrap_or_else(|e| {
                eprintln!("bench: section {} failed: {e:#}", s.name);
                unfinished_section(s.title, &e)
            })
        })
        .collect()
}

/// Deletes the stopped clusters under `root`, if any, and lets the deletion reach the disk.
fn remove_clusters(root: &Path) {
    if root.exists() {
        let _ = std::fs::remove_dir_all(root);
        settle_down();
    }
}

/// What the full report says of a section that failed half-way (its figures are lost).
fn unfinished_section(title: &str, error: &anyhow::Error) -> String {
    format!(
        "\n## {title}\n\nThis section did not finish in this run: {error:#}. The sections \
         after it ran as usual.\n"
    )
}

/// The section `--only` runs with `--compare GATEWAY_BIN`: this build against another.
const COMPARE: &str = "compare";

/// Writes a section run alone (`--only`) as its own report; `header` is when the run started,
/// the CPU pressure before it and the tmpfs note.
fn write_alone(
    path: &str,
    title: &str,
    produced_by: &str,
    (started, idle_pressure, tmpfs_note): (Instant, &str, &str),
    section: &str,
) -> anyhow::Result<()> {
    let report = format!(
        "# {title}\n\nProduced by {produced_by}. Total time: {:.0} s. \
         {idle_pressure}{tmpfs_note}\n\n{section}",
        started.elapsed().as_secs_f64()
    );
    std::fs::create_dir_all("docs")?;
    std::fs::write(path, report)?;
    eprintln!("bench: wrote {path}");
    Ok(())
}

/// The names `--only` takes, for messages.
fn section_names() -> String {
    SECTIONS
        .iter()
        .map(|s| s.name)
        .chain([COMPARE])
        .map(|name| format!("`{name}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn run(options: &Options) -> anyhow::Result<()> {
    let mut build = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    build.args(["build", "--release", "-p", "gateway", "-p", "loadtest"]);
    if !build.status()?.success() {
        bail!("release build failed");
    }
    // A folder per gateway start, all removed at the end: deleting a large cluster while the
    // next one runs would put the filesystem's write-back into the measured fsyncs.
    let root = PathBuf::from(match options.tmpfs {
        true => "/dev/shm/wallet-bench",
        false => "target/bench-data",
    });
    let _ = std::fs::remove_dir_all(&root);
    let started = Instant::now();
    let tmpfs_flag = if options.tmpfs { " --tmpfs" } else { "" };
    let tmpfs_note = match options.tmpfs {
        true => {
            " Clusters on tmpfs (`--tmpfs`): CPU per callback without the disk's stalls; \
                 latencies here say nothing about a real disk."
        }
        false => "",
    };
    if let Some(Section {
        name,
        title,
        in_full,
        run,
    }) = SECTIONS.iter().find(|s| Some(s.name) == options.only)
    {
        let idle_pressure = cpu_pressure();
        let section = run(&root, options.step_s)?;
        let _ = std::fs::remove_dir_all(&root);
        let also = match in_full {
            true => "; the full `cargo xtask bench` puts the same section in `docs/performance.md`",
            false => "",
        };
        let produced_by = format!(
            "`cargo xtask bench --only {name}{tmpfs_flag}` (overwritten by each run{also})"
        );
        let path = format!("docs/bench/{name}.md");
        let header = (started, idle_pressure.as_str(), tmpfs_note);
        return write_alone(&path, title, &produced_by, header, &section);
    }
    if let (Some(COMPARE), Some((bin, config))) = (options.only, &options.compare) {
        let idle_pressure = cpu_pressure();
        let section = compare_section(&root, options.step_s, bin, config)?;
        let _ = std::fs::remove_dir_all(&root);
        // Named after the compared binary, so each baseline's report is kept.
        let stem = bin
            .file_stem()
            .map_or("other".into(), |s| s.to_string_lossy());
        let path = format!("docs/bench/{COMPARE}-{stem}.md");
        let produced_by = format!(
            "`cargo xtask bench --only {COMPARE} --compare {} --compare-config {}{tmpfs_flag}` \
             (overwritten by each run against a binary of that name)",
            bin.display(),
            config.display()
        );
        let title = format!("This build against `{stem}`");
        let header = (started, idle_pressure.as_str(), tmpfs_note);
        return write_alone(&path, &title, &produced_by, header, &section);
    }
    let mut report = String::new();
    let machine = format!(
        "{} cores, {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(
                |c| c.lines().find(|l| l.starts_with("model name")).map(|l| l
                    .split(':')
                    .nth(1)
                    .unwrap_or("")
                    .trim()
                    .to_string())
            )
            .unwrap_or_default()
    );

    // 0. The disk every commit waits for.
    let idle_pressure = cpu_pressure();
    let disk = disk_probe(&root, 20)?;
    eprintln!(
        "bench: disk: {} sync writes, p99 {:.2} ms, max {:.0} ms, {} over 50 ms",
        disk.writes, disk.p99_ms, disk.max_ms, disk.over_50ms
    );

    // 1. HTTP ceiling: /ready, no signature, no database.
    let gw = Gateway::start(&root.join("http"), &[])?;
    let mut http_log = String::new();
    let http = ladder(
        &gw,
        &[10_000, 20_000, 30_000, 40_000, 50_000],
        options.step_s.min(10),
        &["--mode", "ping"],
        &mut http_log,
    )?;

    // 2. pgbench ceilings of the batch SQL on the same cluster (gateway idle): the whole
    // batch (the ceiling the gateway is compared with) and its writes alone.
    let pg_rows_per_s = pgbench(&gw, "batch", &pgbench_batch_script(true), 20)?;
    settle_down();
    let pg_write_rows_per_s = pgbench(&gw, "writes", &pgbench_batch_script(false), 20)?;
    eprintln!(
        "bench: pgbench ceilings: whole batch {pg_rows_per_s:.0} rows/s, writes alone {pg_write_rows_per_s:.0} rows/s"
    );
    gw.stop()?;

    // 3. The gateway: ladder, sustained run at the best rate, half rate, overload.
    // Its ladder, sustained and overload runs write about 3 GB of WAL on one cluster: written
    // ahead, as a cluster past its first checkpoints has them recycled (with the default 1 GB,
    // the steps after it would wait for new zero-filled segments: performance-budget.md).
    let gw = Gateway::start(&root.join("main"), &[(MAIN_WAL_ENV, MAIN_WAL_MB)])?;
    settle_down();
    // Unmeasured warm-up: buffer cache, autovacuum of the fresh tables, the dedup index.
    loadtest(&gw, 5_000, 30, &[])?;
    let mut ladder_log = String::new();
    let rates = [
        2_500, 5_000, 7_500, 10_000, 12_500, 15_000, 17_500, 20_000, 25_000, 30_000,
    ];
    let best = ladder(&gw, &rates, options.step_s, &[], &mut ladder_log)?;
    let best_rate = best.as_ref().map(|(r, _)| *r).unwrap_or(0);
    let metrics_before = gw.metrics()?;
    let sustained = if best_rate > 0 {
        Some(loadtest(&gw, best_rate, options.sustained_s, &[])?)
    } else {
        None
    };
    let metrics_after = gw.metrics()?;
    let rss_gateway = rss_mib(&[gw.pid()]);
    let rss_postgres = rss_mib(&postgres_pids());
    let half = if best_rate > 0 {
        Some(loadtest(&gw, best_rate / 2, options.step_s * 2, &[])?)
    } else {
        None
    };
    let at_10k = loadtest(&gw, 10_000, options.step_s * 2, &[])?;
    let overload_rate = (best_rate * 2).max(5_000);
    let overload = loadtest(&gw, overload_rate, options.step_s, &[])?;
    let recovery = loadtest(&gw, (best_rate / 2).max(1_000), options.step_s, &[])?;
    let soak = if options.soak_s > 0 && best_rate > 0 {
        Some(loadtest(&gw, best_rate, options.soak_s, &[])?)
    } else {
        None
    };
    let final_metrics = gw.metrics()?;
    gw.stop()?;

    // 4. The classic design: one transaction per callback.
    let gw = Gateway::start(
        &root.join("single"),
        &[("GATEWAY__SETTLEMENT__BATCH_LEN_MAX", "1")],
    )?;
    settle_down();
    let mut single_log = String::new();
    let single = ladder(
        &gw,
        &[500, 1_000, 1_500, 2_000, 3_000, 4_000, 5_000, 6_000, 8_000],
        options.step_s,
        &[],
        &mut single_log,
    )?;
    let single_rate = single.as_ref().map(|(r, _)| *r).unwrap_or(0);
    gw.stop()?;

    // 5. The sections the full run has: REST logins beside callbacks, raw callbacks kept
    // for trace or not, several gateways, the write path's steps, the ledger at scale.
    let sections = full_sections(SECTIONS, &root, options.step_s);

    // 6. Before/after: this build and another one, fresh clusters in turn.
    let compared = match &options.compare {
        Some((bin, config)) => Some(compare_section(&root, options.step_s, bin, config)?),
        None => None,
    };
    let _ = std::fs::remove_dir_all(&root);

    // The report.
    let w = &mut report;
    writeln!(w, "# Performance report\n")?;
    writeln!(w, "Produced by `cargo xtask bench` (this file is overwritten by each run) on {machine}, with the")?;
    writeln!(w, "gateway, its embedded PostgreSQL 15 (`synchronous_commit = on`, callbacks acknowledged only after")?;
    writeln!(w, "commit) and the load generator on the same machine. {PLAYERS} players; open-loop constant arrival")?;
    writeln!(w, "rate; latency measured from each request's intended send time (coordinated-omission safe); mix:")?;
    writeln!(w, "bets 45 %, wins naming a recent bet 31.5 %, rollbacks 4.5 %, balance 9 %, exact repeats of recent")?;
    writeln!(w, "requests 10 %. \"Sustained\" means every request answered, no 5xx, p99 <= {P99_MAX_MS} ms.")?;
    writeln!(
        w,
        "Total time of this run: {:.0} s.\n",
        started.elapsed().as_secs_f64()
    )?;

    writeln!(w, "This report measures one traffic shape (bet-win) on a warmed-up gateway. Every `loadtest --mix` from a fresh database straight to 9,000/s, offered load above capacity, a new day's partition mid-run and a 30-minute soak: `docs/bench/mixes.md` (`cargo xtask bench --only mixes`).\n")?;
    writeln!(w, "## Headline\n")?;
    writeln!(w, "| measure | value |\n|---|---|")?;
    writeln!(
        w,
        "| highest sustained callback rate (step of {} s) | {best_rate}/s |",
        options.step_s
    )?;
    if let Some(s) = &sustained {
        writeln!(w, "| the same rate held {} s | achieved {:.0}/s, p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, errors {} |", options.sustained_s, s.achieved(), s.p("p50"), s.p("p99"), s.p("p99.9"), s.errors())?;
    }
    if let Some(h) = &half {
        writeln!(w, "| at half that rate ({}/s) | p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms |", best_rate / 2, h.p("p50"), h.p("p90"), h.p("p99"), h.p("p99.9"), h.p("max"))?;
    }
    writeln!(w, "| at 10,000/s offered | achieved {:.0}/s, p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, errors {} |", at_10k.achieved(), at_10k.p("p50"), at_10k.p("p99"), at_10k.p("p99.9"), at_10k.errors())?;
    let single_text = if single_rate > 0 {
        format!("{single_rate}/s")
    } else {
        "no step passed (see its ladder)".to_string()
    };
    writeln!(
        w,
        "| `batch_len_max = 1` (one transaction per callback) | {single_text} |"
    )?;
    let ratio = if single_rate > 0 && best_rate > 0 {
        format!("{:.1}x", best_rate as f64 / single_rate as f64)
    } else {
        "n/a: a side with no passing step".to_string()
    };
    writeln!(
        w,
        "| group commit vs one transaction per callback | {ratio} |"
    )?;
    writeln!(w, "| pgbench ceiling of the lanes' batch SQL (64 bets per transaction: reads, lock, writes; 2 clients) | {pg_rows_per_s:.0} rows/s |")?;
    writeln!(w, "| pgbench ceiling of the batch's writes alone (no reads) | {pg_write_rows_per_s:.0} rows/s |")?;
    writeln!(
        w,
        "| gateway vs the whole-batch ceiling | {:.0} % |",
        100.0 * best_rate as f64 / pg_rows_per_s.max(1.0)
    )?;
    writeln!(
        w,
        "| HTTP ceiling (`GET /ready`, same generator) | {}/s |",
        http.as_ref().map(|(r, _)| *r).unwrap_or(0)
    )?;
    writeln!(w, "| the CPU before the runs | {idle_pressure} |")?;
    writeln!(w, "| the disk's synchronous writes (8 KiB + `fdatasync`, 1,000/s for 20 s, nothing else running) | p50 {:.2} ms, p99 {:.2} ms, max {:.0} ms; {} of {} over 50 ms, {:.2} s in all spent in writes over 20 ms |", disk.p50_ms, disk.p99_ms, disk.max_ms, disk.over_50ms, disk.writes, disk.stalled_s)?;
    if let Some(s) = &sustained {
        writeln!(
            w,
            "| duplicates, end to end at the generator | {} requests, p50 {:.2} ms, p99 {:.2} ms |",
            s.report["duplicates"],
            s.report["duplicate_latency_ms"]["p50"],
            s.report["duplicate_latency_ms"]["p99"]
        )?;
        let hits = metric(&metrics_after, "wallet_dedup_total{result=\"hit\"}")
            - metric(&metrics_before, "wallet_dedup_total{result=\"hit\"}");
        let settled = metric(&metrics_after, "wallet_batch_size_sum")
            - metric(&metrics_before, "wallet_batch_size_sum");
        let p99 = quantile_bound(
            &metrics_before,
            &metrics_after,
            "wallet_dedup_hit_seconds",
            0.99,
        )
        .map_or("-".to_string(), |le| format!("<= {le} s"));
        writeln!(w, "| duplicates answered by the dedup index, in the gateway (request to answer) | {hits} answers, p99 {p99}; meanwhile {settled} commands reached PostgreSQL (both counted over the run and its warm-up) |")?;
    }
    let conflicts = metric(&final_metrics, "wallet_batch_failures_total");
    writeln!(
        w,
        "| batch failures (deadlock, serialization, conflict, other) over all runs | {conflicts} |"
    )?;

    if let Some(compared) = &compared {
        w.push_str(compared);
    }

    writeln!(
        w,
        "\n## Rate ladder (gateway, {} s per run, {LADDER_REPEATS} runs a step)\n\nEach step is run {LADDER_REPEATS} times; the disk is probed (1,000 synced 8 KiB writes a second) for {PROBE_WINDOW_S} s just before and just after each run, in windows of its own: a probe beside the run would add as many fsyncs as the lanes' own commits at these rates, and the ladder would measure the probe as much as the gateway. The row and the verdict are the median run's by p99, every run's p99 is shown, and a failing step whose windows met a sync over 50 ms says so. The cluster wrote {MAIN_WAL_MB} MB of WAL ahead before the warm-up (`embedded.wal_preallocate_mb`; the default is 1024), as much as these runs write, so no step waits for a new segment to be zero-filled, as none does on a cluster that has run its first checkpoints.\n",
        options.step_s
    )?;
    writeln!(w, "{LADDER_HEADER}")?;
    w.push_str(&ladder_log);
    writeln!(
        w,
        "\n## One transaction per callback (`batch_len_max = 1`)\n"
    )?;
    writeln!(w, "{LADDER_HEADER}")?;
    w.push_str(&single_log);
    writeln!(w, "\n## HTTP ceiling (`GET /ready`)\n")?;
    writeln!(w, "{LADDER_HEADER}")?;
    w.push_str(&http_log);

    if let Some(s) = &sustained {
        writeln!(
            w,
            "\n## Where the CPU went (sustained run at {best_rate}/s)\n"
        )?;
        writeln!(
            w,
            "| process | CPU seconds over {:.0} s | cores |\n|---|---|---|",
            s.wall_s
        )?;
        for (name, cpu) in &s.cpu_s {
            writeln!(w, "| {name} | {cpu:.1} | {:.2} |", cpu / s.wall_s)?;
        }
        writeln!(w, "\nResident memory after it: gateway {rss_gateway:.0} MiB, PostgreSQL (all processes, shared buffers counted per process) {rss_postgres:.0} MiB.")?;
        writeln!(w, "\n## Batch sizes during the sustained run\n")?;
        let before: BTreeMap<String, f64> = histogram(&metrics_before, "wallet_batch_size")
            .into_iter()
            .collect();
        let after = histogram(&metrics_after, "wallet_batch_size");
        writeln!(w, "| batch size <= | batches |\n|---|---|")?;
        let mut previous = 0.0;
        for (le, count) in &after {
            let cumulative = count - before.get(le).copied().unwrap_or(0.0);
            writeln!(w, "| {le} | {:.0} |", cumulative - previous)?;
            previous = cumulative;
        }
        writeln!(w, "\nStatuses: {}", s.report["statuses"])?;
    }
    writeln!(w, "\n## 2x overload and recovery\n")?;
    writeln!(w, "Offered {overload_rate}/s for {} s: achieved {:.0}/s, answered {} of {} requests, never sent (generator backlog full) {}, unanswered 30 s after the schedule ended {}, transport errors {}, `503 TEMPORARY_ERROR` {}; from the intended send time p99 {:.0} ms, max {:.0} ms; the gateway's own time (request on the wire to answer, the generator's connection wait excluded) p99 {:.0} ms, max {:.0} ms.", options.step_s, overload.achieved(), overload.report["completed"], overload.report["sent"], overload.report["unsent"], overload.report["unanswered"].as_u64().unwrap_or(0), overload.report["transport_errors"], overload.count("503"), overload.p("p99"), overload.p("max"), overload.report["service_ms"]["p99"].as_f64().unwrap_or(0.0), overload.report["service_ms"]["max"].as_f64().unwrap_or(0.0))?;
    writeln!(
        w,
        "Then {}/s for {} s: p50 {:.2} ms, p99 {:.2} ms, errors {}.",
        (best_rate / 2).max(1_000),
        options.step_s,
        recovery.p("p50"),
        recovery.p("p99"),
        recovery.errors()
    )?;
    if let Some(s) = &soak {
        writeln!(w, "\n## Soak\n\n{}/s for {} s: p99 {:.2} ms, p99.9 {:.2} ms, errors {}, batch failures {conflicts}.", best_rate, options.soak_s, s.p("p99"), s.p("p99.9"), s.errors())?;
    }
    for section in &sections {
        w.push_str(section);
    }
    w.push_str(NOTES);
    writeln!(w, "\n## Reproduce\n\n```sh\ncargo xtask bench                 # this report\ncargo xtask bench --soak 600      # plus a 10-minute soak at the best rate\ncargo bench -p benches            # criterion micro-benchmarks of the hot paths\n```")?;
    std::fs::create_dir_all("docs")?;
    std::fs::write("docs/performance.md", &report)?;
    eprintln!("bench: wrote docs/performance.md");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgbench_runs_the_lanes_statements_with_every_parameter_bound() {
        for reads in [true, false] {
            let script = pgbench_batch_script(reads);
            assert!(script.contains(&bind(
                settlement::store::UPDATE_WALLETS,
                &["w1", "w2", "w3", "w4"]
            )));
            assert!(!script.contains('$'), "{script}");
            assert_eq!(
                script.contains("transaction_keys tk"),
                reads,
                "the lookups only with the reads"
            );
            assert!(script.starts_with("\\set base") && script.ends_with("COMMIT;\n"));
        }
        assert_eq!(
            bind(
                "$1 $10 $2",
                &["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"]
            ),
            ":a :j :b"
        );
    }

    #[test]
    fn a_failed_section_names_itself_and_its_whole_error() {
        let error = anyhow::anyhow!("requests still open 30 s after the schedule ended")
            .context("loadtest failed at 25000/s");
        let text = unfinished_section("The write path, step by step", &error);
        assert!(
            text.starts_with("\n## The write path, step by step\n"),
            "{text}"
        );
        assert!(
            text.contains("loadtest failed at 25000/s: requests still open 30 s"),
            "{text}"
        );
    }

    #[test]
    fn a_failed_section_leaves_the_sections_after_it_in_the_report() {
        fn fails(_: &Path, _: u64) -> anyhow::Result<String> {
            anyhow::bail!("loadtest failed at 25000/s")
        }
        fn works(_: &Path, step_s: u64) -> anyhow::Result<String> {
            Ok(format!("\n## Second\n\n{step_s} s steps\n"))
        }
        let sections = [
            Section {
                name: "first",
                title: "First",
                in_full: true,
                run: fails,
            },
            Section {
                name: "second",
                title: "Second",
                in_full: true,
                run: works,
            },
            Section {
                name: "alone",
                title: "Alone",
                in_full: false,
                run: works,
            },
        ];
        let texts = full_sections(&sections, Path::new("unused"), 15);
        assert_eq!(texts.len(), 2, "{texts:?}");
        assert!(texts[0].contains("## First") && texts[0].contains("loadtest failed"));
        assert_eq!(texts[1], "\n## Second\n\n15 s steps\n");
    }
}
