//! The certification kit can pass and can fail: every dialect of the real gateway passes it,
//! each planted bug that shows over HTTP fails a mandatory scenario, and a stand-in wallet
//! that applies retries again fails the duplicate scenarios through the binary, whose JUnit
//! file parses and whose report shows the failed exchanges.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use gateway::test_util::{start_gateway, TestGateway};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use settlement::fault::{Effect, Plant, Point, Trigger};
use sim::certify::{Certificate, Options};

use crate::every_dialect;

/// Certifies every dialect of `gw`, each provider `copies` times at once (with players of
/// its own: more players at once, more batches of several commands).
async fn certify(gw: &TestGateway, patience_s: u64, tag: &str, copies: usize) -> Certificate {
    let providers: Vec<_> = (0..copies).flat_map(|_| every_dialect()).collect();
    let options = Options {
        target: format!("http://{}", gw.addr),
        players: (1..=providers.len())
            .map(|i| format!("player-{i}"))
            .collect(),
        providers,
        patience: Duration::from_secs(patience_s),
        tag: format!(
            "{tag}-{:x}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis()
        ),
    };
    let cert = sim::certify::run(&options).await.expect("the kit runs");
    for o in cert.outcomes.iter().filter(|o| !o.passed()) {
        println!("  {}", o.line());
    }
    println!("{tag}: {}", cert.summary());
    cert
}

/// The mandatory scenarios that failed, as `provider scenario`.
fn mandatory_failures(cert: &Certificate) -> Vec<String> {
    cert.outcomes
        .iter()
        .filter(|o| !o.passed() && o.scenario.mandatory)
        .map(|o| format!("{} {}", o.provider, o.scenario.name))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dialect_passes_and_each_planted_bug_fails_a_mandatory_scenario() {
    let gw = start_gateway("[demo]\nenabled = true\nplayers = 10\n").await;
    let clean = certify(&gw, 10, "clean", 1).await;
    assert!(clean.certified(), "{:?}", mandatory_failures(&clean));
    assert_eq!(clean.failed(), 0, "advisory scenarios failed too");
    let kinds: std::collections::BTreeSet<&str> =
        clean.outcomes.iter().map(|o| o.kind.name()).collect();
    assert_eq!(kinds.len(), 5, "every dialect ran: {kinds:?}");

    // Bugs that show on any traffic; then bugs that show when batches fail, each beside a
    // control with the same failures and no bug, which must pass.
    let cases: [(Option<Plant>, Option<Point>); 8] = [
        (Some(Plant::NoDedup), None),
        (Some(Plant::AlteredRetryAnswer), None),
        (Some(Plant::TombstonesOff), None),
        (Some(Plant::WinsUnavailable), None),
        (None, Some(Point::Write)),
        (Some(Plant::AnswerBeforeCommit), Some(Point::Write)),
        (None, Some(Point::AfterCommit)),
        (Some(Plant::SplitReapplies), Some(Point::AfterCommit)),
    ];
    for (plant, failing) in cases {
        let name = format!("{}-{failing:?}", plant.map_or("control", Plant::name));
        // A bug that needs a failing batch of several commands may miss one run of the kit
        // (batches are formed by chance): those runs play each dialect twice at once, and a
        // bug gets three runs.
        let (copies, runs) = match (plant, failing) {
            (_, None) => (1, 1),
            (None, Some(_)) => (2, 1),
            (Some(_), Some(_)) => (2, 3),
        };
        let mut failures = Vec::new();
        for run in 1..=runs {
            if let Some(plant) = plant {
                gw.faults().plant(plant, true);
            }
            if let Some(point) = failing {
                gw.faults()
                    .add(point, Effect::Fail, Trigger::OneIn(3), u32::MAX);
            }
            let cert = certify(&gw, 2, &format!("{name}-{run}"), copies).await;
            gw.faults().clear();
            if let Some(plant) = plant {
                gw.faults().plant(plant, false);
            }
            failures = mandatory_failures(&cert);
            if !failures.is_empty() {
                break;
            }
        }
        match plant {
            None => assert!(failures.is_empty(), "control {name} failed: {failures:?}"),
            Some(_) => {
                assert!(!failures.is_empty(), "{name} went unnoticed");
                println!("{name} failed: {failures:?}");
            }
        }
    }
    gw.stop().await;
}

/// A stand-in wallet in the native dialect that checks signatures and money like a wallet
/// should, but has no idempotency: a retried bet or win is applied again.
#[derive(Default)]
struct Standin {
    balances: std::collections::HashMap<String, i64>,
    /// Bets by transaction id: amount, rolled back.
    bets: std::collections::HashMap<String, (i64, bool)>,
    /// Rollbacks that came before their bets.
    tombstones: std::collections::HashSet<String>,
}

const STANDIN_SECRET: &str = "standin-secret-0123456789";

impl Standin {
    fn answer(&mut self, action: &str, signature: Option<&str>, body: &[u8]) -> (u16, String) {
        let signed = signature.is_some_and(|s| {
            let t: i64 = s
                .split(',')
                .find_map(|p| p.strip_prefix("t="))
                .and_then(|t| t.parse().ok())
                .unwrap_or(0);
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64;
            (now - t).abs() <= 300
                && gateway::provider::wire::sign_native(STANDIN_SECRET.as_bytes(), t, body) == s
        });
        if !signed {
            return (401, r#"{"status":"INVALID_SIGNATURE"}"#.into());
        }
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
            return (400, r#"{"status":"MALFORMED_REQUEST"}"#.into());
        };
        let text = |k: &str| v[k].as_str().unwrap_or("").to_string();
        let player = text("player_id");
        let Some(balance) = self.balances.get(&player).copied() else {
            return (200, r#"{"status":"UNKNOWN_PLAYER"}"#.into());
        };
        let amount = match action {
            "bet" | "win" => match settlement::money::parse_minor(&text("amount"), 2) {
                Ok(a) if a >= 0 => a,
                _ => return (400, r#"{"status":"MALFORMED_REQUEST"}"#.into()),
            },
            _ => 0,
        };
        if matches!(action, "bet" | "win") && text("currency") != "EUR" {
            return (200, r#"{"status":"CURRENCY_MISMATCH"}"#.into());
        }
        let tx = text("transaction_id");
        let (status, balance) = match action {
            "bet" if self.tombstones.contains(&tx) => ("TRANSACTION_ROLLED_BACK", balance),
            "bet" if amount > balance => ("INSUFFICIENT_FUNDS", balance),
            "bet" => {
                self.bets.insert(tx, (amount, false));
                ("OK", balance - amount)
            }
            "win" => match self.bets.get(&text("bet_transaction_id")) {
                Some((_, true)) => ("TRANSACTION_ROLLED_BACK", balance),
                _ => ("OK", balance + amount),
            },
            "rollback" => match self.bets.get_mut(&text("reference_transaction_id")) {
                Some((amount, rolled_back @ false)) => {
                    *rolled_back = true;
                    ("OK", balance + *amount)
                }
                Some(_) => ("OK", balance),
                None => {
                    self.tombstones.insert(text("reference_transaction_id"));
                    ("OK", balance)
                }
            },
            _ => ("OK", balance),
        };
        self.balances.insert(player, balance);
        let shown = format!("{}.{:02}", balance / 100, balance % 100);
        (
            200,
            serde_json::json!({"status": status, "balance": shown, "currency": "EUR"}).to_string(),
        )
    }
}

/// Serves the stand-in on a free loopback port.
async fn serve_standin() -> SocketAddr {
    let wallet = Arc::new(Mutex::new(Standin::default()));
    wallet
        .lock()
        .unwrap()
        .balances
        .insert("standin-player".into(), 50_000);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let wallet = wallet.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    let wallet = wallet.clone();
                    async move {
                        let action = request
                            .uri()
                            .path()
                            .rsplit('/')
                            .next()
                            .unwrap_or("")
                            .to_string();
                        let signature = request
                            .headers()
                            .get("x-signature")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string);
                        let body = request.into_body().collect().await.unwrap().to_bytes();
                        let (status, text) =
                            wallet
                                .lock()
                                .unwrap()
                                .answer(&action, signature.as_deref(), &body);
                        Ok::<_, Infallible>(
                            hyper::Response::builder()
                                .status(status)
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from(text)))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// The binary against a wallet that applies retries again: exit 1, the duplicate scenarios
/// named; the JUnit file parses and agrees with the last line; the report shows the failed
/// scenarios' exchanges. The wallet's own callback path is given in the target URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_fails_a_wallet_that_applies_retries_again() {
    let addr = serve_standin().await;
    let dir = tempfile::tempdir().unwrap();
    let (junit, report) = (dir.path().join("junit.xml"), dir.path().join("report.md"));
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_sim"))
        .args(["certify", "--target", &format!("http://{addr}/wallet")])
        .args(["--provider", "standin:native", "--secret", STANDIN_SECRET])
        .args(["--players", "standin-player", "--patience-s", "2"])
        .arg("--junit")
        .arg(&junit)
        .arg("--report")
        .arg(&report)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    for scenario in [
        "duplicate-bet-same-answer",
        "duplicate-win-same-answer",
        "concurrent-identical-bets-debit-once",
    ] {
        assert!(
            stdout.contains(&format!("FAIL standin native {scenario}")),
            "{scenario} not failed: {stdout}"
        );
    }
    assert!(
        stdout.contains("PASS standin native bet-then-win-settles"),
        "{stdout}"
    );
    let last = stdout.lines().last().unwrap();
    let (passed, failed) = last
        .split_once(" passed, ")
        .and_then(|(p, f)| {
            Some((
                p.parse::<usize>().ok()?,
                f.strip_suffix(" failed")?.parse::<usize>().ok()?,
            ))
        })
        .unwrap_or_else(|| panic!("last line {last:?}"));
    assert!(failed >= 3, "{last}");

    let xml = std::fs::read_to_string(&junit).unwrap();
    let doc = roxmltree::Document::parse(&xml).expect("the JUnit file parses");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "testsuites");
    assert_eq!(
        root.attribute("failures"),
        Some(failed.to_string().as_str())
    );
    let cases: Vec<_> = root
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    assert_eq!(cases.len(), passed + failed);
    let failed_cases = cases
        .iter()
        .filter(|c| c.children().any(|n| n.has_tag_name("failure")))
        .count();
    assert_eq!(failed_cases, failed);

    let md = std::fs::read_to_string(&report).unwrap();
    assert!(md.contains("## Failed scenarios"), "{md}");
    assert!(
        md.contains("### standin · `duplicate-bet-same-answer`"),
        "{md}"
    );
    assert!(md.contains("POST /wallet/bet"), "{md}");
}

/// `sim certify --provider all` with no target: a demo gateway started from `config/demo.toml`,
/// every demo provider (Hub88-style RSA included) certified, exit 0, within a minute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_certifies_the_demo_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let junit = dir.path().join("junit.xml");
    let started = std::time::Instant::now();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_sim"))
        .args(["certify", "--provider", "all", "--junit"])
        .arg(&junit)
        .env_remove("DATABASE_URL")
        .output()
        .await
        .unwrap();
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.trim_end().ends_with(" passed, 0 failed"), "{stdout}");
    for code in ["demo ", "demo-pp ", "demo-evo ", "demo-hub88 ", "demo-ss "] {
        assert!(stdout.contains(&format!("PASS {code}")), "{code}: {stdout}");
    }
    assert!(elapsed < Duration::from_secs(60), "took {elapsed:?}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    let doc = roxmltree::Document::parse(&xml).expect("the JUnit file parses");
    assert_eq!(doc.root_element().attribute("failures"), Some("0"));
}
