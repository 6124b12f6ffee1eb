//! A private PostgreSQL cluster started from the machine's own server binaries.
//!
//! The gateway uses it when no `DATABASE_URL` is given, and every test binary uses it for a
//! throwaway database. The cluster listens on a unix socket only, in a directory that only the
//! server's user can enter, so "trust" authentication reaches nobody else.
//!
//! Lifecycle, in order:
//! 1. [`Binaries::locate`] finds `initdb` and `postgres` (PATH, `pg_config --bindir`, the usual
//!    distribution folders) or fails with one line naming the package to install.
//! 2. [`Cluster::start`] runs `initdb` on first use, stops a server left behind by a killed
//!    supervisor (stale `postmaster.pid` whose process still runs), starts `postgres` as a child,
//!    and waits until `postmaster.pid` says `ready`.
//! 3. [`Cluster::stop`] (also on drop) asks for a fast shutdown and waits for the exit.
//!
//! [`Supervised`] wraps a cluster for a long-running process: when the server exits on its
//! own it is started again (crash recovery), with back-off and a log line per attempt.
//!
//! The server is spawned from a dedicated thread that lives exactly as long as the server, with
//! the parent-death signal set to SIGINT: when the supervising process dies, even by SIGKILL,
//! the kernel asks PostgreSQL for a fast shutdown, so no server is left running behind a dead
//! gateway or test binary. PostgreSQL refuses to run as root, so when the process is root the
//! server runs as an unprivileged user (`postgres` by default) that owns the data folder.

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::{Pid, User};

pub mod wal;

/// The port number only names the socket file; nothing listens on TCP.
const SOCKET_PORT: u16 = 5432;
/// Unix socket paths are limited to 107 bytes; leave room for `/.s.PGSQL.5432.lock`.
const SOCKET_DIR_LEN_MAX: usize = 80;
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "PostgreSQL server binaries (initdb, postgres) not found on PATH, via pg_config or in \
         /usr/lib/postgresql/*/bin: install them (Debian/Ubuntu: apt-get install postgresql) \
         or set DATABASE_URL to an existing server"
    )]
    BinariesMissing,
    #[error("running as root but the unprivileged user {user:?} for PostgreSQL does not exist: create it (useradd --system {user}) or set embedded.run_as_user")]
    UserMissing { user: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{0} (server log: {1})")]
    Server(String, PathBuf),
}

fn io_error(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// Where the PostgreSQL server programs live.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub bindir: PathBuf,
}

impl Binaries {
    /// Finds a folder holding both `initdb` and `postgres`.
    pub fn locate() -> Result<Binaries, Error> {
        let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
        let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
            .map(|path| std::env::split_paths(&path).collect())
            .unwrap_or_default();
        if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
            if out.status.success() {
                let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
                candidates.push(PathBuf::from(dir));
            }
        }
        // Debian and Ubuntu keep server binaries off PATH; prefer the newest major version.
        if let Ok(entries) = fs::read_dir("/usr/lib/postgresql") {
            let mut versions: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
                .collect();
            versions.sort_by_key(|p| std::cmp::Reverse(major_version(p)));
            candidates.extend(versions);
        }
        candidates.extend(["/usr/pgsql/bin", "/usr/local/pgsql/bin"].map(PathBuf::from));
        candidates
            .into_iter()
            .find(|dir| has_both(dir))
            .map(|bindir| Binaries { bindir })
            .ok_or(Error::BinariesMissing)
    }

    fn program(&self, name: &str) -> Command {
        Command::new(self.bindir.join(name))
    }

    /// Whether the server was built with LZ4 (`--with-lz4`, as `pg_config` beside it says), so
    /// `wal_compression = lz4` is a value it accepts.
    pub fn has_lz4(&self) -> bool {
        self.program("pg_config")
            .arg("--configure")
            .output()
            .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains("--with-lz4"))
    }
}

fn major_version(bin: &Path) -> u32 {
    bin.parent()
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str())
        .and_then(|n| n.split('.').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// How to start a cluster.
#[derive(Debug, Clone)]
pub struct Options {
    /// The folder that holds everything: `pg/` (PGDATA), `run/` (socket), `postgres.log`.
    pub dir: PathBuf,
    /// The user the server runs as when this process is root.
    pub run_as_user: String,
    /// `initdb` without fsync and a server with `fsync=off`: for throwaway test clusters only.
    pub throwaway: bool,
    /// Extra `postgresql.conf` settings passed as `-c name=value`.
    pub settings: Vec<(String, String)>,
}

impl Options {
    pub fn new(dir: impl Into<PathBuf>) -> Options {
        Options {
            dir: dir.into(),
            run_as_user: "postgres".to_string(),
            throwaway: false,
            settings: Vec::new(),
        }
    }
}

/// A running server. Stopped by [`Cluster::stop`] or on drop.
#[derive(Debug)]
pub struct Cluster {
    pgdata: PathBuf,
    socket_dir: PathBuf,
    log_path: PathBuf,
    superuser: String,
    pid: Pid,
    exited: Mutex<Option<mpsc::Receiver<()>>>,
}

/// The superuser created by `initdb`; connections come through the private socket only.
pub const SUPERUSER: &str = "wallet";

impl Cluster {
    /// Initialises (first run), recovers (stale server) and starts the cluster; blocks until it
    /// accepts connections.
    pub fn start(options: &Options) -> Result<Cluster, Error> {
        let binaries = Binaries::locate()?;
        let dir = absolute(&options.dir)?;
        let owner = server_user(&options.run_as_user)?;
        let pgdata = dir.join("pg");
        let log_path = dir.join("postgres.log");
        fs::create_dir_all(&dir).map_err(io_error(format!("create {}", dir.display())))?;
        let socket_dir = socket_dir_for(&dir);
        for folder in [&pgdata, &socket_dir] {
            fs::create_dir_all(folder).map_err(io_error(format!("create {}", folder.display())))?;
            fs::set_permissions(folder, fs::Permissions::from_mode(0o700))
                .map_err(io_error(format!("chmod {}", folder.display())))?;
        }
        if let Some(user) = &owner {
            for path in [&dir, &pgdata, &socket_dir] {
                chown(path, user)?;
            }
        }

        if !pgdata.join("PG_VERSION").is_file() {
            init(
                &binaries,
                &pgdata,
                owner.as_ref(),
                options.throwaway,
                &log_path,
            )?;
        }
        stop_leftover_server(&pgdata)?;

        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io_error(format!("open {}", log_path.display())))?;
        if let Some(user) = &owner {
            chown(&log_path, user)?;
        }
        let mut command = binaries.program("postgres");
        command
            .arg("-D")
            .arg(&pgdata)
            .arg("-p")
            .arg(SOCKET_PORT.to_string())
            .arg("-c")
            .arg("listen_addresses=")
            .arg("-c")
            .arg(format!("unix_socket_directories={}", socket_dir.display()))
            .arg("-c")
            .arg("unix_socket_permissions=0700");
        if options.throwaway {
            command.args(["-c", "fsync=off", "-c", "full_page_writes=off"]);
        }
        for (name, value) in &options.settings {
            command.arg("-c").arg(format!("{name}={value}"));
        }
        command
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(io_error("dup log"))?)
            .stderr(log);
        as_user(&mut command, owner.as_ref());
        die_with_parent(&mut command);

        let (pid, exited) = spawn_supervised(command)?;
        let cluster = Cluster {
            pgdata,
            socket_dir,
            log_path,
            superuser: SUPERUSER.to_string(),
            pid,
            exited: Mutex::new(Some(exited)),
        };
        cluster.wait_ready()?;
        tracing::info!(pid = pid.as_raw(), socket = %cluster.socket_dir.display(), "embedded PostgreSQL ready");
        Ok(cluster)
    }

    /// The directory holding the server's unix socket (the `host` of a connection).
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    pub fn port(&self) -> u16 {
        SOCKET_PORT
    }

    pub fn superuser(&self) -> &str {
        &self.superuser
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// A libpq-style connection string for `dbname`.
    pub fn connection_string(&self, dbname: &str) -> String {
        format!(
            "host={} port={} user={} dbname={}",
            self.socket_dir.display(),
            SOCKET_PORT,
            self.superuser,
            dbname
        )
    }

    fn wait_ready(&self) -> Result<(), Error> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if self.has_exited(Duration::ZERO) {
                return Err(self.server_error("PostgreSQL exited during start-up"));
            }
            if postmaster_status(&self.pgdata).as_deref() == Some("ready") {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(self.server_error("PostgreSQL did not become ready within 60 s"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the server has exited (waiting up to `wait` for it). Once it has, the pid is
    /// forgotten, so a later `stop` never signals a pid the system may have handed on.
    fn has_exited(&self, wait: Duration) -> bool {
        let mut guard = self.exited.lock().unwrap_or_else(|e| e.into_inner());
        let exited = match guard.as_ref() {
            None => true,
            Some(rx) => !matches!(rx.recv_timeout(wait), Err(mpsc::RecvTimeoutError::Timeout)),
        };
        if exited {
            *guard = None;
        }
        exited
    }

    fn server_error(&self, what: &str) -> Error {
        Error::Server(
            format!("{what}; last log lines:\n{}", tail(&self.log_path, 15)),
            self.log_path.clone(),
        )
    }

    /// Fast shutdown (SIGINT: roll back open transactions, checkpoint, exit) and wait for it.
    pub fn stop(&self) -> Result<(), Error> {
        let mut guard = self.exited.lock().unwrap_or_else(|e| e.into_inner());
        let Some(exited) = guard.take() else {
            return Ok(());
        };
        let _ = kill(self.pid, Signal::SIGINT);
        if exited.recv_timeout(STOP_TIMEOUT).is_ok() {
            tracing::info!("embedded PostgreSQL stopped");
            return Ok(());
        }
        // Immediate shutdown: crash recovery replays the WAL at next start; nothing is lost.
        let _ = kill(self.pid, Signal::SIGQUIT);
        let _ = exited.recv_timeout(STOP_TIMEOUT);
        Err(Error::Server(
            "PostgreSQL did not stop within 30 s; sent SIGQUIT".into(),
            self.log_path.clone(),
        ))
    }
}

/// A cluster kept running: whenever its server exits on its own (a crash, an operator's
/// `pg_ctl stop -m immediate`, the OOM killer), it is started again on the same data, where
/// PostgreSQL's crash recovery replays the WAL, so every committed transaction is back. Starts
/// are retried with a growing pause, with a log line per attempt, until one succeeds or the
/// supervisor is stopped. Clients reconnect to the same socket.
#[derive(Debug)]
pub struct Supervised {
    shared: std::sync::Arc<Shared>,
    watcher: Mutex<Option<std::thread::JoinHandle<()>>>,
}

#[derive(Debug)]
struct Shared {
    options: Options,
    cluster: Mutex<Option<Cluster>>,
    stopping: std::sync::atomic::AtomicBool,
    restarts: std::sync::atomic::AtomicU64,
    /// Connection details, the same for every incarnation.
    socket_dir: PathBuf,
    superuser: String,
    /// The data folder (PGDATA), the same for every incarnation.
    pgdata: PathBuf,
}

/// How often the watcher looks at the server.
const WATCH_INTERVAL: Duration = Duration::from_millis(100);
/// Pauses between restart attempts: doubling from the first to the last.
const RESTART_PAUSE_FIRST: Duration = Duration::from_millis(250);
const RESTART_PAUSE_MAX: Duration = Duration::from_secs(8);

impl Supervised {
    /// Starts the cluster (errors of this first start are returned) and watches it.
    pub fn start(options: Options) -> Result<Supervised, Error> {
        let cluster = Cluster::start(&options)?;
        let shared = std::sync::Arc::new(Shared {
            socket_dir: cluster.socket_dir.clone(),
            superuser: cluster.superuser.clone(),
            pgdata: cluster.pgdata.clone(),
            options,
            cluster: Mutex::new(Some(cluster)),
            stopping: std::sync::atomic::AtomicBool::new(false),
            restarts: std::sync::atomic::AtomicU64::new(0),
        });
        let watched = shared.clone();
        let watcher = std::thread::Builder::new()
            .name("pgembed-watch".into())
            .spawn(move || watched.watch())
            .map_err(io_error("spawn watcher thread"))?;
        Ok(Supervised {
            shared,
            watcher: Mutex::new(Some(watcher)),
        })
    }

    /// A libpq-style connection string for `dbname`.
    pub fn connection_string(&self, dbname: &str) -> String {
        format!(
            "host={} port={} user={} dbname={}",
            self.shared.socket_dir.display(),
            SOCKET_PORT,
            self.shared.superuser,
            dbname
        )
    }

    /// The server's WAL folder (`pg_wal` in the data folder), for [`wal::write_ahead`].
    pub fn wal_dir(&self) -> PathBuf {
        self.shared.pgdata.join("pg_wal")
    }

    /// Restarts after the server exited on its own.
    pub fn restarts(&self) -> u64 {
        self.shared
            .restarts
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The running server's process id (none while it is being restarted).
    pub fn server_pid(&self) -> Option<i32> {
        let guard = self
            .shared
            .cluster
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        guard.as_ref().map(|c| c.pid.as_raw())
    }

    /// Stops watching, then stops the server (fast shutdown).
    pub fn stop(&self) -> Result<(), Error> {
        self.shared
            .stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let watcher = self
            .watcher
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(watcher) = watcher {
            let _ = watcher.join();
        }
        let cluster = self
            .shared
            .cluster
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        match cluster {
            Some(cluster) => cluster.stop(),
            None => Ok(()),
        }
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            tracing::warn!(error = %e, "stopping embedded PostgreSQL");
        }
    }
}

impl Shared {
    fn stopping(&self) -> bool {
        self.stopping.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn watch(&self) {
        while !self.stopping() {
            std::thread::sleep(WATCH_INTERVAL);
            let exited = {
                let guard = self.cluster.lock().unwrap_or_else(|e| e.into_inner());
                guard.as_ref().is_some_and(|c| c.has_exited(Duration::ZERO))
            };
            if exited && !self.stopping() {
                tracing::error!(
                    log = %self.options.dir.join("postgres.log").display(),
                    "embedded PostgreSQL exited on its own; restarting it"
                );
                self.restart();
            }
        }
    }

    /// Starts the server again, retrying with a growing pause until it runs or we stop.
    fn restart(&self) {
        let mut pause = RESTART_PAUSE_FIRST;
        let mut attempt = 1u32;
        while !self.stopping() {
            tracing::warn!(
                attempt,
                "starting embedded PostgreSQL again (crash recovery)"
            );
            match Cluster::start(&self.options) {
                Ok(cluster) => {
                    *self.cluster.lock().unwrap_or_else(|e| e.into_inner()) = Some(cluster);
                    self.restarts
                        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    tracing::warn!(attempt, "embedded PostgreSQL is back");
                    return;
                }
                Err(e) => {
                    tracing::error!(attempt, error = %e, pause_ms = pause.as_millis() as u64, "embedded PostgreSQL did not start");
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(RESTART_PAUSE_MAX);
                    attempt += 1;
                }
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            tracing::warn!(error = %e, "stopping embedded PostgreSQL");
        }
    }
}

/// Spawns `command` from a thread that lives as long as the child (the parent-death signal is
/// tied to the spawning thread) and reports the child's exit on the returned channel.
fn spawn_supervised(mut command: Command) -> Result<(Pid, mpsc::Receiver<()>), Error> {
    let (pid_tx, pid_rx) = mpsc::channel();
    let (exit_tx, exit_rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("pgembed-supervisor".into())
        .spawn(move || match command.spawn() {
            Err(e) => {
                let _ = pid_tx.send(Err(e));
            }
            Ok(mut child) => {
                let pid = Pid::from_raw(child.id() as i32);
                let _ = pid_tx.send(Ok(pid));
                let status = child.wait();
                tracing::debug!(?status, "PostgreSQL exited");
                let _ = exit_tx.send(());
            }
        })
        .map_err(io_error("spawn supervisor thread"))?;
    let pid = pid_rx
        .recv()
        .map_err(|_| Error::Server("supervisor thread died".into(), PathBuf::new()))?
        .map_err(io_error("spawn postgres"))?;
    Ok((pid, exit_rx))
}

#[allow(unsafe_code)]
fn die_with_parent(command: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec and only calls prctl(2) and
    // getppid(2), both async-signal-safe; it allocates nothing.
    unsafe {
        command.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Some(Signal::SIGINT)).map_err(std::io::Error::from)?;
            // The parent may have died between fork and prctl: then nobody would signal us.
            if nix::unistd::getppid() == Pid::from_raw(1) {
                return Err(std::io::Error::other("supervisor exited"));
            }
            Ok(())
        });
    }
}

fn init(
    binaries: &Binaries,
    pgdata: &Path,
    owner: Option<&User>,
    throwaway: bool,
    log_path: &Path,
) -> Result<(), Error> {
    let mut command = binaries.program("initdb");
    command
        .arg("-D")
        .arg(pgdata)
        .args([
            "--username",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
        ])
        .current_dir("/");
    if throwaway {
        command.arg("--no-sync");
    }
    as_user(&mut command, owner);
    let out = command.output().map_err(io_error("run initdb"))?;
    if !out.status.success() {
        let _ = fs::write(log_path, [&out.stdout[..], &out.stderr[..]].concat());
        return Err(Error::Server(
            format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            log_path.to_path_buf(),
        ));
    }
    Ok(())
}

/// A server still running on this data folder was left by a supervisor that died before its
/// parent-death signal could act (or is still shutting down): stop it before starting anew.
fn stop_leftover_server(pgdata: &Path) -> Result<(), Error> {
    let Some(pid) = postmaster_pid(pgdata) else {
        return Ok(());
    };
    if !is_postgres_process(pid) {
        // A stale pid file of a dead server: PostgreSQL removes it itself at start.
        return Ok(());
    }
    tracing::warn!(
        pid = pid.as_raw(),
        "stopping a PostgreSQL server left from an earlier run"
    );
    let _ = kill(pid, Signal::SIGINT);
    let deadline = Instant::now() + STOP_TIMEOUT;
    while is_postgres_process(pid) {
        if Instant::now() > deadline {
            let _ = kill(pid, Signal::SIGQUIT);
            std::thread::sleep(Duration::from_secs(1));
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn is_postgres_process(pid: Pid) -> bool {
    if kill(pid, None).is_err() {
        return false;
    }
    // Pids are reused: only a process that is a postgres server counts.
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|cmdline| String::from_utf8_lossy(&cmdline).contains("postgres"))
        .unwrap_or(false)
}

fn postmaster_lines(pgdata: &Path) -> Vec<String> {
    fs::File::open(pgdata.join("postmaster.pid"))
        .map(|f| BufReader::new(f).lines().map_while(Result::ok).collect())
        .unwrap_or_default()
}

fn postmaster_pid(pgdata: &Path) -> Option<Pid> {
    let lines = postmaster_lines(pgdata);
    lines.first()?.trim().parse().ok().map(Pid::from_raw)
}

/// Line 8 of `postmaster.pid` is the server status (`starting`, `ready`, `stopping`).
fn postmaster_status(pgdata: &Path) -> Option<String> {
    postmaster_lines(pgdata)
        .get(7)
        .map(|s| s.trim().to_string())
}

fn server_user(name: &str) -> Result<Option<User>, Error> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    match User::from_name(name) {
        Ok(Some(user)) => Ok(Some(user)),
        _ => Err(Error::UserMissing {
            user: name.to_string(),
        }),
    }
}

fn as_user(command: &mut Command, owner: Option<&User>) {
    if let Some(user) = owner {
        command.uid(user.uid.as_raw()).gid(user.gid.as_raw());
    }
}

fn chown(path: &Path, user: &User) -> Result<(), Error> {
    std::os::unix::fs::chown(path, Some(user.uid.as_raw()), Some(user.gid.as_raw()))
        .map_err(io_error(format!("chown {}", path.display())))
}

fn absolute(path: &Path) -> Result<PathBuf, Error> {
    std::path::absolute(path).map_err(io_error(format!("resolve {}", path.display())))
}

/// `<dir>/run` when short enough for a unix socket path, else a folder in the temp dir named
/// after `dir` (so the same data folder always gets the same socket folder).
/// How a tool reaches the cluster of data folder `dir` while the process that supervises it
/// runs (its unix socket; nothing is started or stopped).
pub fn running_connection_string(dir: &Path, dbname: &str) -> String {
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    format!(
        "host={} port={} user={} dbname={}",
        socket_dir_for(&dir).display(),
        SOCKET_PORT,
        SUPERUSER,
        dbname
    )
}

fn socket_dir_for(dir: &Path) -> PathBuf {
    let preferred = dir.join("run");
    if preferred.as_os_str().len() <= SOCKET_DIR_LEN_MAX {
        return preferred;
    }
    let hash = dir
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
        });
    std::env::temp_dir().join(format!("pgembed-{hash:016x}"))
}

fn tail(path: &Path, n: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests;
