//! Project tasks behind the README's two commands: `cargo xtask run` and `cargo xtask test`.
//! Both first make sure the PostgreSQL server binaries are there (installing them with apt-get
//! when running as root on Debian/Ubuntu; `test` also `promtool`, `haproxy`, `chromium` and
//! `chromedriver`, for the alert rules', the balancer rule's and the console's browser tests), then
//! hand over to cargo.

use std::process::{Command, ExitCode};

use anyhow::{bail, Context};

mod bench;
mod chaos;

const USAGE: &str =
    "usage: cargo xtask <run [GATEWAY ARGS...] | test [CARGO TEST ARGS...] | ci | postgres>
  run       build and start the gateway on config/demo.toml (embedded PostgreSQL)
  test      run the whole test suite (unit and integration, real PostgreSQL)
  ci        formatting, lints and the test suite, as .ci/run does
  bench     the performance report (docs/performance.md) [--step S] [--sustained S] [--soak S]
            [--only NAME: one section alone into docs/bench/NAME.md; NAME is logins,
             trace, instances, steps, scale, reports or partitions; or compare, which needs
             --compare]
            [--compare GATEWAY_BIN [--compare-config PATH]: another build against this one,
             fresh clusters in turn; in the full report, or alone with --only compare, into
             docs/bench/compare-BIN'S NAME.md]
            [--tmpfs: with --only, clusters in /dev/shm: CPU without the disk's stalls]
  chaos     a fault campaign: sim against a gateway while it is killed, its PostgreSQL stopped,
            either paused and their connections cut [--minutes N, 10] [--seed S] [--debug]
            [--plant NAME: a test build with that bug, which the checkers must catch]
  fuzz      every fuzz target for a while (cargo-fuzz, stable, no sanitizer) [--seconds N, 60]
            [--minimize: fold what runs found into fuzz/corpus/<target>.tar.gz]
  postgres  only make sure the PostgreSQL server binaries are installed";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (task, rest) = match args.split_first() {
        Some((task, rest)) => (task.as_str(), rest),
        None => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = match task {
        "run" => ensure_postgres().and_then(|()| run(rest)),
        "test" => ensure_postgres()
            .and_then(|()| ensure_test_tools())
            .and_then(|()| test(rest)),
        "ci" => ensure_postgres()
            .and_then(|()| ensure_test_tools())
            .and_then(|()| ci()),
        "postgres" => ensure_postgres(),
        "fuzz" => fuzz(rest),
        "chaos" => ensure_postgres()
            .and_then(|()| chaos::Options::parse(rest))
            .and_then(|options| chaos::run(&options)),
        "bench" => ensure_postgres()
            .and_then(|()| bench::Options::parse(rest))
            .and_then(|options| bench::run(&options)),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn status(mut command: Command) -> anyhow::Result<()> {
    let shown = format!("{command:?}");
    let status = command.status().with_context(|| format!("start {shown}"))?;
    if !status.success() {
        bail!("{shown} failed ({status})");
    }
    Ok(())
}

fn run(rest: &[String]) -> anyhow::Result<()> {
    let mut command = cargo();
    command.args([
        "run",
        "--release",
        "--package",
        "gateway",
        "--bin",
        "gateway",
        "--",
    ]);
    if !rest.iter().any(|a| a == "--config") {
        command.args(["--config", "config/demo.toml"]);
    }
    command.args(rest);
    status(command)
}

fn test(rest: &[String]) -> anyhow::Result<()> {
    let mut command = cargo();
    command.args(["test", "--workspace"]).args(rest);
    status(command)
}

fn ci() -> anyhow::Result<()> {
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--", "--check"]);
    status(fmt)?;
    let mut clippy = cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
    status(clippy)?;
    test(&[])
}

/// The fuzz targets of `fuzz/`. Each keeps its corpus as one archive,
/// `fuzz/corpus/<target>.tar.gz` (coverage-minimized, so the repository holds a few files, not
/// thousands), and its regressions, inputs that once failed, in `fuzz/regressions/<target>/`.
const FUZZ_TARGETS: &[&str] = &["amount", "dialects", "signature", "config"];

/// Runs every fuzz target for `--seconds` (default 60) on its committed corpus and regressions,
/// installing cargo-fuzz first when it is missing. Stable Rust: `-s none` (no sanitizer; Rust's
/// own checks and the targets' assertions find the bugs). The corpus is unpacked into
/// `fuzz/target/corpus/<target>`, where new inputs go, so a run leaves the tree as it was.
/// `--minimize` instead runs `cargo fuzz cmin` on that folder (edges only, no hit counts) and
/// packs the result back into the archive: run it after a long fuzzing session to keep what
/// it found.
fn fuzz(rest: &[String]) -> anyhow::Result<()> {
    let (seconds, minimize) = match rest {
        [] => (60, false),
        [flag] if flag == "--minimize" => (0, true),
        [flag, n] if flag == "--seconds" => (n.parse().context("--seconds takes a number")?, false),
        _ => bail!("usage: cargo xtask fuzz [--seconds N | --minimize]"),
    };
    let installed = cargo()
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !installed {
        let mut install = cargo();
        install.args(["install", "cargo-fuzz", "--locked", "--version", "0.13.2"]);
        status(install)?;
    }
    let fuzz_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    for target in FUZZ_TARGETS {
        let archive = fuzz_dir.join(format!("corpus/{target}.tar.gz"));
        let work = fuzz_dir.join(format!("target/corpus/{target}"));
        if !work.exists() || !minimize {
            let _ = std::fs::remove_dir_all(&work);
            std::fs::create_dir_all(&work)?;
            let mut unpack = Command::new("tar");
            unpack.arg("-xzf").arg(&archive).arg("-C").arg(&work);
            status(unpack)?;
        }
        if minimize {
            eprintln!("xtask: minimizing the corpus of {target}");
            let mut cmin = cargo();
            cmin.current_dir(&fuzz_dir)
                .args(["fuzz", "cmin", "-s", "none", target])
                .arg(&work)
                .args(["--", "-use_counters=0"]);
            status(cmin)?;
            let mut pack = Command::new("sh");
            pack.arg("-c")
                .arg(
                    "tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
                     -C \"$1\" -cf - . | gzip -n -9 > \"$2\"",
                )
                .arg("pack")
                .arg(&work)
                .arg(&archive);
            status(pack)?;
            continue;
        }
        eprintln!("xtask: fuzzing {target} for {seconds} s");
        let mut run = cargo();
        run.current_dir(&fuzz_dir)
            .args(["fuzz", "run", "-s", "none", target])
            .arg(&work);
        let regressions = fuzz_dir.join(format!("regressions/{target}"));
        if regressions.is_dir() {
            run.arg(&regressions);
        }
        run.arg("--")
            .arg(format!("-max_total_time={seconds}"))
            .arg("-print_final_stats=1");
        status(run)?;
    }
    Ok(())
}

/// Finds the server binaries, or installs them when that is possible here.
fn ensure_postgres() -> anyhow::Result<()> {
    if pgembed::Binaries::locate().is_ok() {
        return Ok(());
    }
    apt_install(
        "postgresql",
        "PostgreSQL server binaries not found. Install them, e.g. `sudo apt-get install -y \
         postgresql` (Debian/Ubuntu) or `sudo dnf install -y postgresql-server`, then run \
         this command again",
    )?;
    pgembed::Binaries::locate().context("after installing postgresql")?;
    Ok(())
}

/// Programs the tests run beside the gateway: (program, an argument it answers, Debian's
/// package). `promtool` checks the alert rules; `haproxy` runs the shipped balancer rule;
/// Chromium and chromedriver drive the back-office console in a real browser.
const TEST_TOOLS: &[(&str, &str, &str)] = &[
    ("promtool", "--version", "prometheus"),
    ("haproxy", "-v", "haproxy"),
    ("chromium", "--version", "chromium"),
    ("chromedriver", "--version", "chromium-driver"),
];

/// Finds each of [`TEST_TOOLS`] (on the PATH or in `/usr/sbin`), or installs its package when
/// that is possible here.
fn ensure_test_tools() -> anyhow::Result<()> {
    for (program, arg, package) in TEST_TOOLS {
        let found = || {
            [program.to_string(), format!("/usr/sbin/{program}")]
                .iter()
                .any(|p| {
                    Command::new(p)
                        .arg(arg)
                        .output()
                        .is_ok_and(|o| o.status.success())
                })
        };
        if found() {
            continue;
        }
        apt_install(
            package,
            &format!(
                "{program} not found. Install it, e.g. `sudo apt-get install -y {package}` \
                 (Debian/Ubuntu), then run this command again"
            ),
        )?;
        if !found() {
            bail!("{program} still not found after installing {package}");
        }
    }
    Ok(())
}

/// `apt-get install PACKAGE` when running as root where apt-get exists; `otherwise` else.
fn apt_install(package: &str, otherwise: &str) -> anyhow::Result<()> {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let apt = std::path::Path::new("/usr/bin/apt-get").exists();
    if !(root && apt) {
        bail!("{otherwise}");
    }
    eprintln!("xtask: installing {package} with apt-get");
    let mut update = Command::new("apt-get");
    update.arg("update");
    status(update)?;
    let mut install = Command::new("apt-get");
    install
        .args(["install", "-y", "--no-install-recommends", package])
        .env("DEBIAN_FRONTEND", "noninteractive");
    status(install)
}
