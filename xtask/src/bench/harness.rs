//! The bench's processes: a release gateway on its own embedded cluster, `loadtest` runs and
//! their tallies, `psql` against the cluster, CPU and memory of the processes.
#![allow(clippy::float_arithmetic)] // rates and percentiles, never money

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::Value;

pub(crate) const PLAYERS: u32 = 100_000;

pub(crate) const P99_MAX_MS: f64 = 50.0;

/// A release gateway on its own embedded cluster, with the bench's demo players.
pub(crate) struct Gateway {
    launched: harness::launch::Launched,
    pub(crate) url: String,
    pub(crate) socket_dir: PathBuf,
}

impl Gateway {
    pub(crate) fn start(data: &Path, env: &[(&str, &str)]) -> anyhow::Result<Gateway> {
        Gateway::start_from(
            Path::new("target/release/gateway"),
            Path::new("config/demo.toml"),
            data,
            env,
        )
    }

    /// Another build's gateway, reading the configuration it understands.
    pub(crate) fn start_from(
        bin: &Path,
        config: &Path,
        data: &Path,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Gateway> {
        std::fs::create_dir_all(data)?;
        let mut vars = vec![
            ("GATEWAY__DEMO__PLAYERS".to_string(), PLAYERS.to_string()),
            ("RUST_LOG".to_string(), "warn".to_string()),
        ];
        vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let launched = harness::launch::Launched::start(bin, config, data, &vars)?;
        Ok(Gateway {
            url: launched.url(),
            launched,
            socket_dir: std::path::absolute(data.join("run"))?,
        })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.launched.pid()
    }

    pub(crate) fn metrics(&self) -> anyhow::Result<String> {
        http_get(&self.url, "/metrics")
    }

    pub(crate) fn stop(self) -> anyhow::Result<()> {
        self.launched.stop()?;
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

/// Lets the machine go quiet before measuring: the previous cluster's dirty pages are written
/// out first (otherwise their write-back lands in the next run's fsyncs).
pub(crate) fn settle_down() {
    let _ = Command::new("sync").status();
    std::thread::sleep(Duration::from_secs(10));
}

pub(crate) fn http_get(base: &str, path: &str) -> anyhow::Result<String> {
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
pub(crate) fn cpu_ticks(pids: &[u32]) -> u64 {
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

pub(crate) fn postgres_pids() -> Vec<u32> {
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

pub(crate) fn rss_mib(pids: &[u32]) -> f64 {
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
pub(crate) struct Run {
    pub(crate) report: Value,
    pub(crate) cpu_s: BTreeMap<&'static str, f64>,
    pub(crate) wall_s: f64,
}

impl Run {
    pub(crate) fn p(&self, q: &str) -> f64 {
        self.report["latency_ms"][q]
            .as_f64()
            .unwrap_or(f64::INFINITY)
    }

    pub(crate) fn count(&self, prefix: &str) -> u64 {
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
    pub(crate) fn errors(&self) -> u64 {
        self.report["transport_errors"].as_u64().unwrap_or(0)
            + self.count("5")
            + self.report["unsent"].as_u64().unwrap_or(0)
            + self.report["unanswered"].as_u64().unwrap_or(0)
    }

    pub(crate) fn achieved(&self) -> f64 {
        self.report["achieved_rate"].as_f64().unwrap_or(0.0)
    }

    /// Answers per second that were not a 5xx (retryable refusals under overload excluded).
    pub(crate) fn answered_rate(&self) -> f64 {
        let completed = self.report["completed"].as_u64().unwrap_or(0);
        let good = completed.saturating_sub(self.count("5"));
        self.achieved() * good as f64 / completed.max(1) as f64
    }

    /// CPU microseconds of `party` (gateway, postgres, loadtest) per callback answered over
    /// the measured part of the run.
    pub(crate) fn cpu_us_per_callback(&self, party: &str) -> f64 {
        let callbacks = (self.achieved() * self.wall_s).max(1.0);
        self.cpu_s.get(party).copied().unwrap_or(0.0) * 1e6 / callbacks
    }

    /// The cells most tables share: achieved/s, p50 ms, p99 ms, errors, then the gateway's and
    /// PostgreSQL's CPU µs per callback.
    pub(crate) fn cpu_cells(&self) -> String {
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
    pub(crate) fn passes(&self) -> bool {
        let completed = self.report["completed"].as_u64().unwrap_or(0);
        let sent = self.report["sent"].as_u64().unwrap_or(1);
        completed == sent && self.errors() == 0 && self.p("p99") <= P99_MAX_MS
    }
}

pub(crate) fn loadtest(
    gateway: &Gateway,
    rate: u64,
    duration_s: u64,
    extra: &[&str],
) -> anyhow::Result<Run> {
    loadtest_many(&[gateway], PLAYERS, rate, duration_s, extra)
}

/// A loadtest run over several gateways on one database (the generator's connections spread
/// over them in turn) addressing `players`; the gateways' CPU is counted together.
pub(crate) fn loadtest_many(
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
pub(crate) fn loadtest_from(
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

/// An offered rate past what the box can settle: what is answered is the throughput.
pub(crate) const SATURATING_RATE: u64 = 25_000;

/// Runs `sql` on the gateway's embedded database; answers the first column of the first row.
pub(crate) fn psql(gateway: &Gateway, sql: &str) -> anyhow::Result<String> {
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

/// Deletes the stopped clusters under `root`, if any, and lets the deletion reach the disk.
pub(crate) fn remove_clusters(root: &Path) {
    if root.exists() {
        let _ = std::fs::remove_dir_all(root);
        settle_down();
    }
}
