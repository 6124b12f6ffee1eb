//! The foundation: health, routing, the binary's life cycle with its embedded cluster,
//! concurrent migrations, configuration refusal.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gateway::app::{self, Overrides};
use gateway::config::Config;
use gateway::test_util::{start_gateway, TEST_PROVIDERS};
use http::StatusCode;
use settlement::test_util::{connect, empty_database, TestDb};

#[tokio::test]
async fn health_reports_the_database() {
    let gw = start_gateway("").await;
    let health = gw.get("/health").await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.json()["database"], "up");
    assert!(health.headers.contains_key("x-correlation-id"));
    assert_eq!(gw.get("/ready").await.status, StatusCode::OK);
    assert_eq!(gw.get("/nowhere").await.status, StatusCode::NOT_FOUND);
    gw.stop().await;
}

/// Issue 33 (12): `/metrics` can be kept off the listener providers and players reach.
#[tokio::test]
async fn metrics_can_be_served_on_a_listener_of_their_own() {
    let gw = start_gateway("[server]\nmetrics_listen = \"127.0.0.1:0\"\n").await;
    assert_eq!(gw.get("/metrics").await.status, StatusCode::NOT_FOUND);
    let admin = gateway::test_util::TestClient::new(gw.metrics_addr().expect("metrics address"));
    let metrics = admin.get("/metrics").await;
    assert_eq!(metrics.status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&metrics.body).contains("wallet_"));
    assert_eq!(admin.get("/health").await.status, StatusCode::NOT_FOUND);
    gw.stop().await;
}

#[tokio::test]
async fn correlation_id_is_echoed() {
    let gw = start_gateway("").await;
    let answer = gw
        .request(
            http::Method::GET,
            "/health",
            &[("X-Correlation-ID", "abc-123".to_string())],
            "",
        )
        .await;
    assert_eq!(answer.headers["x-correlation-id"], "abc-123");
    gw.stop().await;
}

/// Log lines written into a shared buffer.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// One thread, so the thread-local log subscriber sees every task of the gateway.
#[tokio::test(flavor = "current_thread")]
async fn every_log_line_of_a_request_carries_its_correlation_id() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_env_filter("info")
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let gw = start_gateway("").await;
    let body = br#"{"player_id":"player-1","currency":"EUR","amount":"1.00","transaction_id":"t","round_id":"r","game_id":"g"}"#;
    let answer = gw
        .request(
            http::Method::POST,
            "/api/provider-callback/demo/bet",
            &[
                ("X-Correlation-ID", "corr-7f3a".to_string()),
                ("X-Signature", "t=1,v1=00".to_string()),
            ],
            &body[..],
        )
        .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    gw.stop().await;
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let refused: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("signature refused"))
        .collect();
    assert_eq!(refused.len(), 1, "{logs}");
    assert!(refused[0].contains("correlation_id=corr-7f3a"), "{logs}");
}

/// A provider that only 10.9.8.7 may call.
const FENCED: &str = r#"
[[providers]]
code = "fenced"
dialect = "native"
secret = "fenced-secret-fenced"
allow_ips = ["10.9.8.7"]
"#;

#[tokio::test]
async fn unknown_provider_is_404_and_disallowed_ip_is_403() {
    let gw = start_gateway(FENCED).await;
    let post = http::Method::POST;
    let path = "/api/provider-callback/fenced/bet";
    let answer = gw
        .request(post.clone(), "/api/provider-callback/nobody/bet", &[], "{}")
        .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    let answer = gw.request(post.clone(), path, &[], "{}").await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    // Claiming the allowed address is not enough without a trusted proxy in front.
    let forged = [("X-Forwarded-For", "10.9.8.7".to_string())];
    let answer = gw.request(post, path, &forged, "{}").await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    gw.stop().await;

    // Behind a trusted proxy (here the test itself, on loopback), the forwarded address counts.
    let gw = start_gateway(&format!(
        "[server]\ntrusted_proxies = [\"127.0.0.1\"]\n{FENCED}"
    ))
    .await;
    let path = "/api/provider-callback/fenced/bet";
    let answer = gw.request(http::Method::POST, path, &forged, "{}").await;
    // Past the allowlist: refused for its missing signature, not for its address.
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    let other = [("X-Forwarded-For", "10.9.8.7, 192.0.2.1".to_string())];
    let answer = gw.request(http::Method::POST, path, &other, "{}").await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    let answer = gw.request(http::Method::POST, path, &[], "{}").await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    gw.stop().await;
}

/// The configuration `toml` on database `db`.
fn config_on(db: &TestDb, toml: &str) -> Config {
    let mut config = Config::from_toml(toml, &[]).unwrap();
    config.database.url = db.url();
    config.database.url_env = String::new();
    config
}

#[tokio::test]
async fn two_gateways_starting_at_once_migrate_once() {
    let db = empty_database().await;
    let config = || config_on(&db, TEST_PROVIDERS);
    let overrides = || Overrides {
        listen: Some(([127, 0, 0, 1], 0).into()),
        data_dir: None,
    };
    let (a, b) = tokio::join!(
        app::start(config(), overrides()),
        app::start(config(), overrides())
    );
    let (a, b) = (
        a.expect("first gateway starts"),
        b.expect("second gateway starts"),
    );
    let rows = db.connect().await;
    let rows = rows.query(
        "SELECT name, count(*) FROM schema_migrations GROUP BY name",
        &[],
    );
    let rows = rows.await.unwrap();
    assert_eq!(rows.len(), settlement::schema::MIGRATIONS.len());
    for row in rows {
        assert_eq!(
            row.get::<_, i64>(1),
            1,
            "migration {} recorded once",
            row.get::<_, String>(0)
        );
    }
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

#[tokio::test]
async fn demo_seeding_is_idempotent() {
    let db = empty_database().await;
    let config = config_on(
        &db,
        &format!("[demo]\nenabled = true\nplayers = 25\n{TEST_PROVIDERS}"),
    );
    for _ in 0..2 {
        let running = app::start(config.clone(), Overrides::default_listen())
            .await
            .unwrap();
        running.stop().await.unwrap();
    }
    let client = db.connect().await;
    let row = client
        .query_one(
            "SELECT count(*), sum(balance)::bigint FROM wallets WHERE currency = 'EUR'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 25);
    assert_eq!(row.get::<_, i64>(1), 25 * 100_000);
    let deposits: i64 = client
        .query_one(
            "SELECT count(*) FROM transactions WHERE kind = 'deposit'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        deposits, 25,
        "one seed deposit per player, not one per start"
    );
    assert!(settlement::store::ledger_mismatches(&client)
        .await
        .unwrap()
        .is_empty());
}

/// Issue 33 (6): a production start on a database the demo used ran with the demo's public
/// admin password, TOTP secret and players' free money. Outside demo mode it is refused (the
/// binary exits 64), and the database is left as it was.
#[tokio::test]
async fn a_production_start_refuses_a_database_the_demo_seeded() {
    let db = empty_database().await;
    let with = |toml: &str| {
        let mut config = Config::from_toml(&format!("{toml}\n{TEST_PROVIDERS}"), &[]).unwrap();
        config.database.url = db.url();
        config.database.url_env = String::new();
        config
    };
    // A production gateway on its own database starts (and again).
    let running = app::start(with(""), Overrides::default_listen())
        .await
        .unwrap();
    running.stop().await.unwrap();
    let demo_mode = with("[demo]\nenabled = true\nplayers = 3");
    let demo = app::start(demo_mode, Overrides::default_listen());
    demo.await.unwrap().stop().await.unwrap();
    let refused = match app::start(with(""), Overrides::default_listen()).await {
        Ok(running) => {
            running.stop().await.unwrap();
            panic!("a production start on the demo's database was accepted")
        }
        Err(e) => e,
    };
    assert!(
        refused.downcast_ref::<app::Refused>().is_some(),
        "{refused:#}"
    );
    assert!(
        format!("{refused:#}").contains("seeded by demo mode"),
        "{refused:#}"
    );
    // The demo itself still starts on it.
    let demo_mode = with("[demo]\nenabled = true\nplayers = 3");
    let demo = app::start(demo_mode, Overrides::default_listen());
    demo.await.unwrap().stop().await.unwrap();
}

trait DefaultListen {
    fn default_listen() -> Self;
}

impl DefaultListen for Overrides {
    fn default_listen() -> Self {
        Overrides {
            listen: Some(([127, 0, 0, 1], 0).into()),
            data_dir: None,
        }
    }
}

/// The binary as an operator runs it.
pub struct Binary {
    pub child: Child,
    pub addr: String,
}

impl Drop for Binary {
    /// A test that fails half-way leaves no gateway behind (nor, by its parent-death signal,
    /// its PostgreSQL); after a clean stop this finds the child already reaped.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn workspace_file(path: &str) -> String {
    format!("{}/../{path}", env!("CARGO_MANIFEST_DIR"))
}

pub fn start_binary(data_dir: &Path) -> Binary {
    start_binary_with(data_dir, &[])
}

/// [`start_binary`] with `env` (e.g. `DATABASE_URL`: a second gateway on the first's database).
pub fn start_binary_with(data_dir: &Path, env: &[(&str, &str)]) -> Binary {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gateway"));
    command
        .args(["--config", &workspace_file("config/demo.toml")])
        .args(["--listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "warn")
        // Four segments, not a GB: the path is the product's, the disk and seconds the tests'.
        .env("GATEWAY__EMBEDDED__WAL_PREALLOCATE_MB", "64");
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn gateway binary");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let line = lines
        .next()
        .expect("gateway printed nothing")
        .expect("read stdout");
    let addr = line
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    Binary { child, addr }
}

pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let status = text[9..12].parse().unwrap();
    let body = text
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    (status, body)
}

pub fn postmaster_pid(data_dir: &Path) -> Option<i32> {
    std::fs::read_to_string(data_dir.join("pg/postmaster.pid"))
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

pub fn process_alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn sigterm(child: &Child) {
    nix_kill(child.id() as i32, "TERM");
}

fn nix_kill(pid: i32, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn binary_runs_stops_restarts_and_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path();

    // First start: initialises the cluster, migrates, seeds.
    let mut gw = start_binary(data_dir);
    let (status, body) = http_get(&gw.addr, "/health");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"database\":\"up\""), "{body}");
    let pg_pid = postmaster_pid(data_dir).expect("embedded postgres is running");
    assert!(process_alive(pg_pid));

    // SIGTERM: the gateway exits 0 and its PostgreSQL is gone.
    sigterm(&gw.child);
    let exit = gw.child.wait().unwrap();
    assert!(exit.success(), "exit status {exit:?}");
    wait_until("postgres stops", || !process_alive(pg_pid));
    assert!(
        postmaster_pid(data_dir).is_none(),
        "clean shutdown removes postmaster.pid"
    );

    // Second start reuses the data folder.
    let mut gw = start_binary(data_dir);
    assert_eq!(http_get(&gw.addr, "/health").0, 200);
    let pg_pid = postmaster_pid(data_dir).unwrap();

    // kill -9: no chance to clean up. The next start must still work.
    nix_kill(gw.child.id() as i32, "KILL");
    gw.child.wait().unwrap();
    let mut gw = start_binary(data_dir);
    assert_eq!(http_get(&gw.addr, "/health").0, 200);
    assert!(!process_alive(pg_pid), "the old server was replaced");
    let players: i64 = {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let config: tokio_postgres::Config = format!(
                "host={} port=5432 user=wallet dbname=wallet",
                data_dir.join("run").display()
            )
            .parse()
            .unwrap();
            let client = connect(&config).await;
            client
                .query_one("SELECT count(*) FROM players", &[])
                .await
                .unwrap()
                .get(0)
        })
    };
    assert_eq!(
        players, 1000,
        "demo players seeded once across three starts"
    );
    let pg_pid = postmaster_pid(data_dir).unwrap();
    sigterm(&gw.child);
    assert!(gw.child.wait().unwrap().success());
    wait_until("postgres stops", || !process_alive(pg_pid));
}

#[test]
fn invalid_configuration_exits_64_listing_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[server]\nwhat = 1\n[settlement]\nlanes = 0\n[embedded.settings]\nfsync = \"off\"\n\
         [[providers]]\ncode = \"x\"\ndialect = \"nope\"\nsecret = \"s\"\n\
         [[providers]]\ncode = \"y\"\ndialect = \"native\"\nsecret_file = \"/dev/null\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "server.what",
        "settlement.lanes",
        "providers[0].dialect",
        "providers[0].secret is 1 bytes",
        "providers[1].secret_file: /dev/null is empty",
        "embedded.settings.fsync: durability",
    ] {
        assert!(
            stderr.contains(expected),
            "{expected} missing from:\n{stderr}"
        );
    }
}

/// A new embedded cluster gets its WAL segments ahead of the load, once: a start that finds
/// them there writes none, and a start with a larger setting tops up the difference.
#[tokio::test]
async fn a_new_embedded_cluster_gets_its_wal_ahead_once() {
    let dir = tempfile::tempdir().unwrap();
    let start = |mb: u64| {
        let mut config = Config::from_toml(TEST_PROVIDERS, &[]).unwrap();
        config.database.url_env = String::new();
        config.embedded.wal_preallocate_mb = mb;
        let overrides = Overrides {
            listen: Some(([127, 0, 0, 1], 0).into()),
            data_dir: Some(dir.path().to_path_buf()),
        };
        async move {
            app::start(config, overrides)
                .await
                .expect("embedded gateway")
        }
    };
    let count = "SELECT count(*) FROM pg_ls_waldir() WHERE name ~ '^[0-9A-F]{24}$'";
    let superuser = |running: &app::Running| {
        let cluster = running.database().embedded.as_ref().expect("embedded");
        cluster.connection_string("postgres").parse().unwrap()
    };

    let running = start(64).await;
    let admin = connect(&superuser(&running)).await;
    let segments: i64 = admin.query_one(count, &[]).await.unwrap().get(0);
    assert!(
        segments >= 4,
        "64 MB is four 16 MB segments, found {segments}"
    );
    let min_wal_size: String = admin
        .query_one("SHOW min_wal_size", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        min_wal_size, "64MB",
        "checkpoints keep what was preallocated"
    );
    assert_eq!(app::preallocate_wal(&admin, 64).await.unwrap(), 0);
    drop(admin);
    running.stop().await.unwrap();

    let running = start(160).await;
    let admin = connect(&superuser(&running)).await;
    let segments: i64 = admin.query_one(count, &[]).await.unwrap().get(0);
    assert!(segments >= 10, "topped up to 160 MB, found {segments}");
    drop(admin);
    running.stop().await.unwrap();
}

/// Once the load has used the start's reserve, the gateway writes the next segments itself
/// (no checkpoint runs here to recycle any), and the server writes its WAL into those files in
/// place, as it does into recycled ones.
#[tokio::test]
async fn the_wal_window_is_kept_ahead_after_the_reserve_is_used() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::from_toml(TEST_PROVIDERS, &[]).unwrap();
    config.database.url_env = String::new();
    config.embedded.wal_preallocate_mb = 64;
    let overrides = Overrides {
        listen: Some(([127, 0, 0, 1], 0).into()),
        data_dir: Some(dir.path().to_path_buf()),
    };
    let running = app::start(config, overrides)
        .await
        .expect("embedded gateway");
    let cluster = running.database().embedded.as_ref().expect("embedded");
    let admin = connect(&cluster.connection_string("postgres").parse().unwrap()).await;
    let pg_wal = cluster.wal_dir();
    const AHEAD: &str = "SELECT name FROM pg_ls_waldir() WHERE name ~ '^[0-9A-F]{24}$' \
          AND name > pg_walfile_name(pg_current_wal_insert_lsn()) ORDER BY name";
    let switch = |times: u32| {
        format!(
            "DO $$ BEGIN FOR i IN 1..{times} LOOP \
               PERFORM pg_logical_emit_message(false, 'test', 'use a segment'); \
               PERFORM pg_switch_wal(); \
             END LOOP; END $$"
        )
    };
    // Eight segments: the four of the reserve and four more.
    admin.batch_execute(&switch(8)).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let ahead = loop {
        let ahead: Vec<String> = admin
            .query(AHEAD, &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        if ahead.len() >= 4 || std::time::Instant::now() > deadline {
            break ahead;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        ahead.len() >= 4,
        "64 MB (four segments) ahead again within 20 s, found {ahead:?}"
    );
    let inode = |name: &str| {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(pg_wal.join(name)).unwrap().ino()
    };
    let before: Vec<u64> = ahead[..2].iter().map(|n| inode(n)).collect();
    // Right after a switch the insert position is the first byte of the next segment, which
    // `pg_walfile_name` names as the previous one: three switches write into the first two.
    admin.batch_execute(&switch(3)).await.unwrap();
    for (name, before) in ahead[..2].iter().zip(before) {
        assert_eq!(inode(name), before, "{name} was written in place");
        let mut head = [0u8; 2];
        use std::io::Read;
        std::fs::File::open(pg_wal.join(name))
            .unwrap()
            .read_exact(&mut head)
            .unwrap();
        assert_ne!(head, [0, 0], "{name} starts with a WAL page header");
    }
    let written = running.state.metrics.render();
    assert!(
        written
            .lines()
            .any(|l| l.starts_with("wallet_wal_segments_written_ahead_total")
                && !l.ends_with(" 0")),
        "the segments ahead were written by the gateway:\n{written}"
    );
    drop(admin);
    running.stop().await.unwrap();
}
