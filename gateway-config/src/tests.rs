//! Loading, overriding and refusing configurations.

use super::*;

/// Every problem's message, one a line.
fn messages(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

const PROVIDER: &str = r#"
[[providers]]
code = "demo"
dialect = "native"
secret = "s3cret-s3cret-s3cret"
"#;

#[test]
fn shipped_configs_load() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../config");
    for name in ["gateway.toml", "demo.toml"] {
        if let Err(invalid) = Config::load(Path::new(&format!("{root}/{name}"))) {
            panic!("{invalid}");
        }
    }
}

#[test]
fn empty_file_gives_the_defaults() {
    let config = Config::from_toml("", &[]).unwrap();
    assert_eq!(config.server.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(config.settlement.lanes, 2);
    assert_eq!(config.server.worker_threads, 0, "one per core");
    assert!(config.providers.is_empty());
}

#[test]
fn environment_overrides_file_keys() {
    let text = format!("[server]\nlisten = \"127.0.0.1:9000\"\n{PROVIDER}");
    let config = Config::from_toml(
        &text,
        &env(&[
            ("GATEWAY__SERVER__LISTEN", "0.0.0.0:7000"),
            ("GATEWAY__SETTLEMENT__LANES", "4"),
            ("GATEWAY__SERVER__WORKER_THREADS", "1"),
            ("GATEWAY__LOG__LEVEL", "debug"),
            ("UNRELATED", "x"),
        ]),
    )
    .unwrap();
    assert_eq!(config.server.listen.to_string(), "0.0.0.0:7000");
    assert_eq!(config.settlement.lanes, 4);
    assert_eq!(config.server.worker_threads, 1);
    assert_eq!(config.log.level, "debug");
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = r#"
[server]
listen = "127.0.0.1:1"
bogus = 1
worker_threads = 5000
[settlement]
lanes = 0
batch_len_max = 100000
[log]
format = "xml"
[nonsense]
x = 1

[[providers]]
code = "Bad Code"
dialect = "klingon"
extra = true

[[providers]]
code = "ok"
dialect = "native"
"#;
    let problems = Config::from_toml(text, &[]).unwrap_err();
    let all = messages(&problems);
    for expected in [
        "unknown key `server.bogus`",
        "unknown key `nonsense`",
        "unknown key `providers.0.extra`",
        "settlement.lanes",
        "settlement.batch_len_max",
        "server.worker_threads",
        "log.format",
        "providers[0].code",
        "providers[0].dialect",
        "providers[1]: one of secret",
    ] {
        assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
    }
    // Typed: each problem says its kind and the key it is about.
    let has =
        |kind: ProblemKind, key: &str| problems.iter().any(|p| p.kind == kind && p.key == key);
    assert!(has(ProblemKind::UnknownKey, "server.bogus"), "{problems:?}");
    assert!(has(ProblemKind::Range, "settlement.lanes"), "{problems:?}");
    assert!(
        has(ProblemKind::Range, "server.worker_threads"),
        "{problems:?}"
    );
    assert!(
        has(ProblemKind::Invalid, "providers[0].dialect"),
        "{problems:?}"
    );
    assert!(
        has(ProblemKind::Required, "providers[1].secret"),
        "{problems:?}"
    );
}

#[test]
fn secrets_come_from_env_or_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secret");
    std::fs::write(&file, "from-file-from-file\n").unwrap();
    let text = format!(
        "[[providers]]\ncode = \"p\"\ndialect = \"native\"\nsecret_file = \"{}\"\nprevious_secret = \"old-secret-old-secret\"\n",
        file.display()
    );
    let config = Config::from_toml(&text, &[]).unwrap();
    assert_eq!(
        config.providers[0].secrets().unwrap(),
        vec![
            b"from-file-from-file".to_vec(),
            b"old-secret-old-secret".to_vec()
        ]
    );
    let missing = text.replace("secret\"", "nope\"");
    let problems = Config::from_toml(&missing, &[]).unwrap_err();
    assert!(
        messages(&problems).contains("secret_file: cannot read"),
        "{problems:?}"
    );
}

#[test]
fn duplicate_provider_codes_are_refused() {
    let text = format!("{PROVIDER}{PROVIDER}");
    let problems = Config::from_toml(&text, &[]).unwrap_err();
    assert!(messages(&problems).contains("used twice"), "{problems:?}");
}

#[test]
fn a_provider_policy_is_read_into_the_core_policy() {
    let with = |policy: &str| format!("{PROVIDER}[providers.policy]\n{policy}\n");
    let config = Config::from_toml(
        &with("tombstone_answer = \"not_found\"\nwin_rollback_allowed = true"),
        &[],
    )
    .unwrap();
    assert_eq!(
        config.providers[0].policy,
        settlement::Policy {
            tombstone_answer: settlement::TombstoneAnswer::NotFound,
            win_rollback_allowed: true,
            ..settlement::Policy::default()
        }
    );
    let problems = Config::from_toml(&with("tombstone_answer = \"maybe\""), &[]).unwrap_err();
    assert!(
        messages(&problems).contains("expected `ok` or `not_found`"),
        "{problems:?}"
    );
}

fn provider_with(keys: &str) -> String {
    format!("[[providers]]\ncode = \"p\"\ndialect = \"native\"\n{keys}\n")
}

/// Issue 33 (2): outside demo mode, a dialect whose signature binds neither a call's time nor
/// its method runs only with an allowlist; the signature window has an upper bound.
#[test]
fn replayable_dialects_need_an_allowlist_outside_demo_mode() {
    let with = |dialect: &str, keys: &str| {
        format!(
            "[[providers]]\ncode = \"p\"\ndialect = \"{dialect}\"\n\
             secret = \"0123456789abcdef\"\n{keys}\n"
        )
    };
    for dialect in ["pragmatic", "evolution", "softswiss"] {
        let problems = Config::from_toml(&with(dialect, ""), &[]).unwrap_err();
        assert!(
            problems
                .iter()
                .any(|p| p.kind == ProblemKind::Required && p.key == "providers[0].allow_ips"),
            "{dialect}: {problems:?}"
        );
        Config::from_toml(&with(dialect, "allow_ips = [\"10.1.2.3\"]"), &[]).unwrap();
        // A disabled provider still settles what it began: it needs one too. The demo not.
        assert!(Config::from_toml(&with(dialect, "enabled = false"), &[]).is_err());
        Config::from_toml(
            &format!("[demo]\nenabled = true\n{}", with(dialect, "")),
            &[],
        )
        .unwrap();
    }
    // The native signature binds the time of the call.
    Config::from_toml(&with("native", ""), &[]).unwrap();
    let problems =
        Config::from_toml(&with("native", "signature_window_s = 86400"), &[]).unwrap_err();
    assert!(
        messages(&problems).contains("providers[0].signature_window_s must be 1..=3600"),
        "{problems:?}"
    );
}

/// Issue 33 (12): the report rollups count a ledger row once it is `report_settle_s` old; the
/// lanes' transactions are cut at half of it (at most 20 s), so it must leave room for that.
#[test]
fn the_report_settle_time_leaves_room_for_a_lane_transaction() {
    let rest = "[rest]\nenabled = true\njwt_secret = \"0123456789abcdef0123456789abcdef\"\n";
    let problems = Config::from_toml(&format!("{rest}report_settle_s = 1\n"), &[]).unwrap_err();
    assert!(
        problems
            .iter()
            .any(|p| p.kind == ProblemKind::Range && p.key == "rest.report_settle_s"),
        "{problems:?}"
    );
    Config::from_toml(&format!("{rest}report_settle_s = 2\n"), &[]).unwrap();
}

/// Issue 33 (6): the demo's Hub88 key pair is published whole; its public key verifies only
/// in demo mode.
#[test]
fn the_demo_hub88_key_is_refused_outside_demo_mode() {
    let keys = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/keys");
    let with = |file: &str| {
        format!(
            "[[providers]]\ncode = \"h\"\ndialect = \"hub88\"\nallow_ips = [\"10.1.2.3\"]\n\
             public_key_file = \"{file}\"\n"
        )
    };
    let demo_key = with(&format!("{keys}/demo-hub88-provider.pub.pem"));
    let problems = Config::from_toml(&demo_key, &[]).unwrap_err();
    assert!(
        problems.iter().any(|p| p.kind == ProblemKind::Secret
            && p.key == "providers[0].public_key_file"
            && p.message.contains("demo.enabled")),
        "{problems:?}"
    );
    Config::from_toml(&format!("[demo]\nenabled = true\n{demo_key}"), &[]).unwrap();
    let own = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../gateway/tests/keys/test-hub88-provider.pub.pem"
    );
    Config::from_toml(&with(own), &[]).unwrap();
}

#[test]
fn empty_or_short_secrets_refuse_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let empty_file = dir.path().join("empty");
    std::fs::write(&empty_file, "\n").unwrap();
    let long = "a-long-enough-secret";
    let cases = [
        ("secret = \"\"".to_string(), "providers[0]: one of secret"),
        (
            format!("secret_file = \"{}\"", empty_file.display()),
            "providers[0].secret_file: ",
        ),
        (
            "secret_env = \"GATEWAY_TEST_UNSET_SECRET\"".to_string(),
            "providers[0].secret_env: environment variable GATEWAY_TEST_UNSET_SECRET",
        ),
        (
            "secret = \"short\"".to_string(),
            "providers[0].secret is 5 bytes",
        ),
        (
            format!("secret = \"{long}\"\nprevious_secret = \"old\""),
            "providers[0].previous_secret is 3 bytes",
        ),
        (
            format!(
                "secret = \"{long}\"\nprevious_secret_file = \"{}\"",
                empty_file.display()
            ),
            "providers[0].previous_secret_file: ",
        ),
        // A public demo value outside demo mode.
        (
            "secret = \"demo-secret\"".to_string(),
            "public demo value, accepted only with demo.enabled",
        ),
    ];
    for (keys, expected) in cases {
        let problems = Config::from_toml(&provider_with(&keys), &[]).unwrap_err();
        let all = messages(&problems);
        assert!(all.contains(expected), "{keys}: {expected:?} not in {all}");
    }
    // 16 bytes is enough; public demo values pass only while the demo is on.
    Config::from_toml(&provider_with("secret = \"0123456789abcdef\""), &[]).unwrap();
    let demo = format!(
        "[demo]\nenabled = true\n{}",
        provider_with("secret = \"demo-secret\"")
    );
    Config::from_toml(&demo, &[]).unwrap();
    let demo_short = demo.replace("\"demo-secret\"", "\"demo-secre\"");
    assert!(Config::from_toml(&demo_short, &[]).is_err());
}

#[test]
fn the_rest_module_refuses_to_start_without_a_strong_jwt_key() {
    let key = "0123456789abcdef0123456789abcdef";
    let rest = |keys: &str| format!("[rest]\nenabled = true\n{keys}\n{PROVIDER}");
    let empty_file = tempfile::NamedTempFile::new().unwrap();
    let cases = [
        (String::new(), "rest: one of jwt_secret"),
        (
            "jwt_secret = \"0123456789abcdef\"".into(),
            "rest.jwt_secret is 16 bytes; at least 32",
        ),
        (
            format!("jwt_secret_file = \"{}\"", empty_file.path().display()),
            "rest.jwt_secret_file: ",
        ),
        (
            "jwt_secret_env = \"GATEWAY_TEST_UNSET_JWT_KEY\"".into(),
            "rest.jwt_secret_env: environment variable GATEWAY_TEST_UNSET_JWT_KEY is unset",
        ),
        (
            format!("jwt_secret = \"{}\"", crate::DEMO_JWT_SECRET),
            "public demo value",
        ),
        (
            format!("jwt_secret = \"{key}\"\naccess_token_ttl_s = 901"),
            "rest.access_token_ttl_s must be between 1 and 900",
        ),
        (
            format!("jwt_secret = \"{key}\"\ncurrency = \"XXX1\""),
            "rest.currency",
        ),
        (
            format!("jwt_secret = \"{key}\"\n[rest.rate_limits]\nlogin_per_ip = 0"),
            "rest.rate_limits must be > 0",
        ),
    ];
    for (keys, expected) in cases {
        let problems = Config::from_toml(&rest(&keys), &[]).unwrap_err();
        let all = messages(&problems);
        assert!(all.contains(expected), "{keys}: {expected:?} not in {all}");
    }
    Config::from_toml(&rest(&format!("jwt_secret = \"{key}\"")), &[]).unwrap();
    // Off (the default), no key is needed.
    Config::from_toml(PROVIDER, &[]).unwrap();
    // The demo's public key, with the demo on.
    let demo = format!(
        "[demo]\nenabled = true\n{}",
        rest(&format!("jwt_secret = \"{}\"", crate::DEMO_JWT_SECRET))
    );
    Config::from_toml(&demo, &[]).unwrap();
}

#[test]
fn durability_settings_cannot_be_overridden() {
    let text = format!(
        "[embedded.settings]\nfsync = false\nsynchronous_commit = \"off\"\nFull_Page_Writes = \"off\"\nwork_mem = \"8MB\"\n{PROVIDER}"
    );
    let problems = Config::from_toml(&text, &[]).unwrap_err();
    let all = messages(&problems);
    for key in ["fsync", "synchronous_commit", "Full_Page_Writes"] {
        assert!(
            all.contains(&format!("embedded.settings.{key}: durability")),
            "{key} not refused: {all}"
        );
    }
    assert!(!all.contains("work_mem"), "{all}");
    assert_eq!(problems.len(), 3, "{all}");
}

#[test]
fn the_runtime_leaves_the_embedded_cluster_half_the_cores_unless_told() {
    let mut server = Server::default();
    assert_eq!(server.runtime_threads(2, true), 1);
    assert_eq!(server.runtime_threads(1, true), 1);
    assert_eq!(server.runtime_threads(8, true), 4);
    assert_eq!(server.runtime_threads(2, false), 2);
    assert_eq!(server.runtime_threads(8, false), 8);
    server.worker_threads = 3;
    assert_eq!(server.runtime_threads(2, true), 3);
    assert_eq!(server.runtime_threads(8, false), 3);
}
