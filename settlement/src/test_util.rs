//! Throwaway databases for tests: one embedded cluster per test process, a migrated template
//! database, and a fresh copy of it per test (`CREATE DATABASE ... TEMPLATE`, a file copy).
//!
//! With `WALLET_TEST_DATABASE_URL` set (a role allowed to create databases), tests use that
//! server instead of starting a cluster.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use tokio::sync::OnceCell;

use crate::schema;

pub mod model;

const TEMPLATE: &str = "wallet_template";

static CLUSTER: OnceLock<pgembed::Cluster> = OnceLock::new();
static TEMPLATE_READY: OnceCell<()> = OnceCell::const_new();
static NEXT_DB: AtomicU32 = AtomicU32::new(0);

/// A database of its own for one test, migrated, empty.
#[derive(Debug, Clone)]
pub struct TestDb {
    pub name: String,
    pub config: tokio_postgres::Config,
}

impl TestDb {
    pub async fn connect(&self) -> tokio_postgres::Client {
        connect(&self.config).await
    }
}

/// Connects and drives the connection on the current runtime.
pub async fn connect(config: &tokio_postgres::Config) -> tokio_postgres::Client {
    let (client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect to the test database");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

fn admin_config() -> tokio_postgres::Config {
    if let Ok(url) = std::env::var("WALLET_TEST_DATABASE_URL") {
        return url
            .parse()
            .expect("WALLET_TEST_DATABASE_URL is a connection string");
    }
    let cluster = CLUSTER.get_or_init(start_cluster);
    cluster
        .connection_string("postgres")
        .parse()
        .expect("cluster connection string")
}

fn start_cluster() -> pgembed::Cluster {
    let base = std::env::temp_dir().join("wallet-pgtest");
    remove_dead_clusters(&base);
    let dir = base.join(std::process::id().to_string());
    let _ = std::fs::remove_dir_all(&dir);
    let options = pgembed::Options {
        throwaway: true,
        settings: vec![("max_connections".into(), "200".into())],
        ..pgembed::Options::new(&dir)
    };
    pgembed::Cluster::start(&options).unwrap_or_else(|e| panic!("test cluster: {e}"))
}

/// Folders of test processes that are gone (their server stopped with them).
fn remove_dead_clusters(base: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let pid_alive = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|pid| PathBuf::from(format!("/proc/{pid}")).exists());
        if !pid_alive {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// A fresh, migrated database for one test.
pub async fn fresh_database() -> TestDb {
    let admin_config = admin_config();
    TEMPLATE_READY
        .get_or_init(|| async {
            let admin = connect(&admin_config).await;
            admin
                .batch_execute(&format!("DROP DATABASE IF EXISTS {TEMPLATE}"))
                .await
                .expect("drop old template");
            admin
                .batch_execute(&format!("CREATE DATABASE {TEMPLATE}"))
                .await
                .expect("create template");
            let mut config = admin_config.clone();
            config.dbname(TEMPLATE);
            let mut client = connect(&config).await;
            schema::migrate(&mut client)
                .await
                .expect("migrate template");
            // Partitions for today and the days after, as a gateway creates them at start.
            crate::partitions::create_ahead(&mut client, 3)
                .await
                .expect("create partitions");
        })
        .await;
    create_database(admin_config, "t", TEMPLATE).await
}

/// Creates `<prefix>_<pid>_<n>` as a copy of `template`.
async fn create_database(
    admin_config: tokio_postgres::Config,
    prefix: &str,
    template: &str,
) -> TestDb {
    let name = format!(
        "{prefix}_{}_{}",
        std::process::id(),
        NEXT_DB.fetch_add(1, Ordering::Relaxed)
    );
    let admin = connect(&admin_config).await;
    admin
        .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {template}"))
        .await
        .expect("create test database");
    let mut config = admin_config;
    config.dbname(&name);
    TestDb { name, config }
}

impl TestDb {
    /// A libpq-style connection string for this database (what `DATABASE_URL` would hold).
    pub fn url(&self) -> String {
        let mut parts = Vec::new();
        if let Some(host) = self.config.get_hosts().first() {
            match host {
                tokio_postgres::config::Host::Tcp(h) => parts.push(format!("host={h}")),
                tokio_postgres::config::Host::Unix(p) => {
                    parts.push(format!("host={}", p.display()))
                }
            }
        }
        if let Some(port) = self.config.get_ports().first() {
            parts.push(format!("port={port}"));
        }
        if let Some(user) = self.config.get_user() {
            parts.push(format!("user={user}"));
        }
        if let Some(password) = self.config.get_password() {
            parts.push(format!("password={}", String::from_utf8_lossy(password)));
        }
        parts.push(format!("dbname={}", self.name));
        parts.join(" ")
    }
}

/// A fresh database with no schema at all (for migration tests).
pub async fn empty_database() -> TestDb {
    create_database(admin_config(), "e", "template0").await
}

/// Asserts every wallet equals the sum of its ledger rows.
pub async fn assert_ledger_matches(client: &tokio_postgres::Client) {
    let mismatches = crate::store::ledger_mismatches(client)
        .await
        .expect("ledger check");
    assert!(
        mismatches.is_empty(),
        "wallets off their ledger: {mismatches:?}"
    );
}
