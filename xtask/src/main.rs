//! Project tasks behind the README's two commands: `cargo xtask run` and `cargo xtask test`.
//! Both first make sure the PostgreSQL server binaries are there (installing them with apt-get
//! when running as root on Debian/Ubuntu), then hand over to cargo.

use std::process::{Command, ExitCode};

use anyhow::{bail, Context};

mod bench;

const USAGE: &str =
    "usage: cargo xtask <run [GATEWAY ARGS...] | test [CARGO TEST ARGS...] | ci | postgres>
  run       build and start the gateway on config/demo.toml (embedded PostgreSQL)
  test      run the whole test suite (unit and integration, real PostgreSQL)
  ci        formatting, lints and the test suite, as .ci/run does
  bench     the performance report (docs/performance.md) [--step S] [--sustained S] [--soak S]
            [--only logins: REST logins beside callbacks, docs/performance-logins.md]
            [--compare GATEWAY_BIN [--compare-config PATH]]
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
        "test" => ensure_postgres().and_then(|()| test(rest)),
        "ci" => ensure_postgres().and_then(|()| ci()),
        "postgres" => ensure_postgres(),
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

/// Finds the server binaries, or installs them when that is possible here.
fn ensure_postgres() -> anyhow::Result<()> {
    if pgembed::Binaries::locate().is_ok() {
        return Ok(());
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let apt = std::path::Path::new("/usr/bin/apt-get").exists();
    if !(root && apt) {
        bail!(
            "PostgreSQL server binaries not found. Install them, e.g. `sudo apt-get install -y \
             postgresql` (Debian/Ubuntu) or `sudo dnf install -y postgresql-server`, then run \
             this command again"
        );
    }
    eprintln!("xtask: installing PostgreSQL server binaries with apt-get");
    let mut update = Command::new("apt-get");
    update.arg("update");
    status(update)?;
    let mut install = Command::new("apt-get");
    install
        .args(["install", "-y", "--no-install-recommends", "postgresql"])
        .env("DEBIAN_FRONTEND", "noninteractive");
    status(install)?;
    pgembed::Binaries::locate().context("after installing postgresql")?;
    Ok(())
}
