//! `cargo xtask bench`: the performance report. Builds release binaries, starts the gateway
//! (embedded PostgreSQL, synchronous_commit on) with 100,000 demo players, drives it with the
//! open-loop `loadtest` on the same machine, and writes `docs/performance.md`: the disk's
//! sync-write latency, HTTP ceiling, highest sustained callback rate with p99 <= 50 ms,
//! latencies at half of it, the same with `batch_len_max = 1`, pgbench ceilings for the batch
//! SQL, 2x overload, batch sizes, CPU split and memory.
#![allow(clippy::float_arithmetic)] // rates and percentiles, never money

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context};

mod harness;
mod ladder;
mod probes;
mod sections;
mod seed;

use harness::*;
use ladder::*;
use probes::*;
use sections::*;

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
        name: "rates",
        title: "Rates over a bounded pool of connections",
        in_full: false,
        run: rates_section,
    },
    Section {
        name: "mixes",
        title: "Traffic mixes from a fresh database, overload, a day's rollover and a soak",
        in_full: false,
        run: sections::mixes::section,
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
