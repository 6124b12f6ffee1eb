//! Starts real clusters from the machine's binaries: the supervisor is the thing under test.

use super::*;

fn throwaway(dir: &Path) -> Options {
    Options {
        throwaway: true,
        ..Options::new(dir)
    }
}

#[test]
fn starts_stops_and_restarts_on_the_same_data() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(&throwaway(dir.path())).unwrap();
    let pid = cluster.pid;
    assert!(cluster.socket_dir().join(".s.PGSQL.5432").exists());
    assert_eq!(postmaster_status(&cluster.pgdata).as_deref(), Some("ready"));
    cluster.stop().unwrap();
    assert!(!is_postgres_process(pid), "server still running after stop");
    assert!(!cluster.pgdata.join("postmaster.pid").exists());
    drop(cluster);

    let version_before = fs::metadata(dir.path().join("pg/PG_VERSION"))
        .unwrap()
        .modified()
        .unwrap();
    let again = Cluster::start(&throwaway(dir.path())).unwrap();
    let version_after = fs::metadata(dir.path().join("pg/PG_VERSION"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(
        version_before, version_after,
        "second start must reuse the data, not initdb"
    );
    drop(again);
}

#[test]
fn a_server_left_running_is_stopped_and_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let first = Cluster::start(&throwaway(dir.path())).unwrap();
    let old_pid = first.pid;
    // Forget the handle as a killed supervisor would: its server keeps running.
    std::mem::forget(first);
    assert!(is_postgres_process(old_pid));
    let second = Cluster::start(&throwaway(dir.path())).unwrap();
    assert_ne!(second.pid, old_pid);
    assert!(
        !is_postgres_process(old_pid),
        "the leftover server must be stopped"
    );
    drop(second);
}

#[test]
fn long_folders_get_a_short_socket_folder() {
    let short = socket_dir_for(Path::new("/srv/gw"));
    assert_eq!(short, PathBuf::from("/srv/gw/run"));
    let deep = PathBuf::from(format!("/{}", "x".repeat(120)));
    let chosen = socket_dir_for(&deep);
    assert!(chosen.as_os_str().len() <= SOCKET_DIR_LEN_MAX, "{chosen:?}");
    assert_eq!(
        chosen,
        socket_dir_for(&deep),
        "the same folder maps to the same socket folder"
    );
}

#[test]
fn major_version_orders_distribution_folders() {
    assert_eq!(major_version(Path::new("/usr/lib/postgresql/15/bin")), 15);
    assert_eq!(major_version(Path::new("/usr/lib/postgresql/9.6/bin")), 9);
    assert_eq!(major_version(Path::new("/nowhere")), 0);
}

#[test]
fn a_supervised_cluster_comes_back_after_an_immediate_stop() {
    let dir = tempfile::tempdir().unwrap();
    let supervised = Supervised::start(throwaway(dir.path())).unwrap();
    let first = supervised.server_pid().unwrap();
    // What `pg_ctl stop -m immediate` does: SIGQUIT to the postmaster.
    kill(Pid::from_raw(first), Signal::SIGQUIT).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while supervised.restarts() == 0 {
        assert!(Instant::now() < deadline, "not restarted within 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    let second = supervised.server_pid().unwrap();
    assert_ne!(first, second);
    assert!(is_postgres_process(Pid::from_raw(second)));
    assert_eq!(
        postmaster_status(&dir.path().join("pg")).as_deref(),
        Some("ready")
    );
    supervised.stop().unwrap();
    assert!(
        !is_postgres_process(Pid::from_raw(second)),
        "still running after stop"
    );
}
