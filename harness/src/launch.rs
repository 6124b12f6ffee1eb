//! Starting a `gateway` binary the way the tools do: a configuration, `--listen 127.0.0.1:0`,
//! a data folder for its embedded PostgreSQL, extra environment; the address is read from the
//! line it prints first (`listening on http://ADDR`), and what it prints after is drained so
//! it never blocks on a full pipe. Stopping is SIGTERM and a clean exit.

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context};

/// A running gateway started by a tool; killed if dropped before [`Launched::stop`].
#[derive(Debug)]
pub struct Launched {
    child: Child,
    addr: SocketAddr,
}

impl Launched {
    /// Starts `bin` with `config` on `data_dir`, `env` set on top of the tool's own (with
    /// `DATABASE_URL` removed, so the embedded cluster is used, and `RUST_LOG` at `warn` unless
    /// the tool's environment or `env` says otherwise).
    pub fn start(
        bin: &Path,
        config: &Path,
        data_dir: &Path,
        env: &[(String, String)],
    ) -> anyhow::Result<Launched> {
        let mut command = Command::new(bin);
        command
            .arg("--config")
            .arg(config)
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env_remove("DATABASE_URL")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if std::env::var_os("RUST_LOG").is_none() {
            command.env("RUST_LOG", "warn");
        }
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("start {} (build it first)", bin.display()))?;
        let stdout = child.stdout.take().context("gateway stdout")?;
        let mut reader = std::io::BufReader::new(stdout);
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let Some(addr) = line.trim().strip_prefix("listening on http://") else {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{} did not start: {line:?}", bin.display());
        };
        let addr = addr
            .parse()
            .with_context(|| format!("address in {line:?}"))?;
        std::thread::spawn(move || {
            let mut sink = String::new();
            while reader.read_line(&mut sink).is_ok_and(|n| n > 0) {
                sink.clear();
            }
        });
        Ok(Launched { child, addr })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then waits: an error unless the gateway exits cleanly (code 0).
    pub fn stop(mut self) -> anyhow::Result<()> {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        let status = self.child.wait()?;
        if !status.success() {
            bail!("gateway exited with {status}");
        }
        Ok(())
    }
}

impl Drop for Launched {
    /// A tool that fails half-way leaves no gateway (nor, by its parent-death signal, its
    /// PostgreSQL) behind; after `stop` this finds the child already reaped.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
