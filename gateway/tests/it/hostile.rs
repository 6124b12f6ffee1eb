//! Hostile HTTP against the binary, one attack at a time, each while a probe of legitimate
//! signed callbacks runs on its own keep-alive connections: bodies over the limit, deep JSON
//! nesting, huge numbers and strings, duplicate keys, invalid UTF-8 (all correctly signed, so
//! they reach the decoder), slowloris, slow bodies, connection floods, header floods. Every
//! hostile request is refused within a bound, the probe keeps succeeding, the gateway does not
//! crash and its memory stays bounded.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway::test_util::{now_s, TestClient};
use http::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::foundation::{sigterm, start_binary};
use crate::money_path::bet;

const SECRET: &[u8] = b"demo-secret";

fn signature(body: &[u8]) -> String {
    gateway::signature::sign_native(SECRET, now_s(), body)
}

/// A raw HTTP/1.1 request on a fresh connection; the status code, or 0 when the connection
/// closed without one; and how long the answer took.
async fn raw(addr: SocketAddr, head: String, body: &[u8]) -> (u16, Duration) {
    let started = Instant::now();
    let Ok(mut stream) = TcpStream::connect(addr).await else {
        return (0, started.elapsed());
    };
    if stream.write_all(head.as_bytes()).await.is_err() {
        return (0, started.elapsed());
    }
    let _ = stream.write_all(body).await;
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buf))
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or(0);
    let status = std::str::from_utf8(&buf[..n.min(12)])
        .ok()
        .and_then(|s| s.get(9..12)?.parse().ok())
        .unwrap_or(0);
    (status, started.elapsed())
}

/// A signed native bet with this exact body.
fn signed_bet_head(body: &[u8]) -> String {
    format!(
        "POST /api/provider-callback/demo/bet HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         X-Signature: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        signature(body),
        body.len()
    )
}

#[derive(Default)]
struct Probe {
    ok: AtomicU64,
    failed: AtomicU64,
}

/// Legitimate signed bets (1 cent) from 8 keep-alive callers, until `stop`.
async fn probe(addr: SocketAddr, probe: Arc<Probe>, stop: Arc<tokio::sync::Notify>) {
    let client = Arc::new(TestClient::new(addr));
    let mut callers = Vec::new();
    for caller in 0..8 {
        let (client, probe) = (client.clone(), probe.clone());
        callers.push(tokio::spawn(async move {
            for n in 0u64.. {
                let tx = format!("probe-{caller}-{n}-{}", now_s());
                let body =
                    serde_json::to_vec(&bet(&format!("player-{}", caller + 1), &tx, "0.01", &tx))
                        .unwrap();
                let answer = client
                    .try_request(
                        Method::POST,
                        "/api/provider-callback/demo/bet",
                        &[
                            ("X-Signature", signature(&body)),
                            ("Content-Type", "application/json".into()),
                        ],
                        body,
                    )
                    .await;
                let ok = answer.is_ok_and(|a| a.status == 200 && a.json()["status"] == "OK");
                if ok { &probe.ok } else { &probe.failed }.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    stop.notified().await;
    for caller in callers {
        caller.abort();
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// One attack's result: hostile requests and their statuses, the slowest refusal.
struct Attack {
    name: &'static str,
    statuses: Vec<u16>,
    slowest: Duration,
}

async fn many(
    addr: SocketAddr,
    n: usize,
    make: impl Fn(usize) -> (String, Vec<u8>),
) -> (Vec<u16>, Duration) {
    // At most this many at once: more would overflow the listen backlog, a limit of the
    // kernel (SYN retries), not of the gateway.
    let at_once = Arc::new(tokio::sync::Semaphore::new(256));
    let mut tasks = Vec::new();
    for i in 0..n {
        let (head, body) = make(i);
        let permit = at_once.clone().acquire_owned().await.unwrap();
        tasks.push(tokio::spawn(async move {
            let answer = raw(addr, head, &body).await;
            drop(permit);
            answer
        }));
    }
    gather(tasks).await
}

/// Each task's status, and the slowest task's time.
async fn gather(tasks: Vec<tokio::task::JoinHandle<(u16, Duration)>>) -> (Vec<u16>, Duration) {
    let mut statuses = Vec::new();
    let mut slowest = Duration::ZERO;
    for task in tasks {
        let (status, took) = task.await.unwrap();
        statuses.push(status);
        slowest = slowest.max(took);
    }
    (statuses, slowest)
}

/// Connections that send a request head one byte a second and never finish it.
async fn slowloris(addr: SocketAddr, n: usize, slow_body: bool) -> (Vec<u16>, Duration) {
    let mut tasks = Vec::new();
    for _ in 0..n {
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            let Ok(mut stream) = TcpStream::connect(addr).await else {
                return (0, started.elapsed());
            };
            let head: &[u8] = if slow_body {
                b"POST /api/provider-callback/demo/bet HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{"
            } else {
                b"POST /api/provider-callback/demo/bet HTTP/1.1\r\nHost: x\r\n"
            };
            if stream.write_all(head).await.is_err() {
                return (0, started.elapsed());
            }
            let mut buf = [0u8; 512];
            loop {
                tokio::select! {
                    read = stream.read(&mut buf) => {
                        let n = read.unwrap_or(0);
                        let status = std::str::from_utf8(&buf[..n.min(12)]).ok()
                            .and_then(|s| s.get(9..12)?.parse().ok()).unwrap_or(0);
                        return (status, started.elapsed());
                    }
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {
                        if stream.write_all(b"x").await.is_err() {
                            return (0, started.elapsed());
                        }
                        if started.elapsed() > Duration::from_secs(40) {
                            return (1, started.elapsed());
                        }
                    }
                }
            }
        }));
    }
    gather(tasks).await
}

#[test]
fn hostile_http_is_refused_in_bounded_time_while_callbacks_keep_succeeding() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = start_binary(dir.path());
    let addr: SocketAddr = gw.addr.parse().unwrap();
    let pid = gw.child.id();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let rss_before = rss_kib(pid);
    let mut results = Vec::new();
    runtime.block_on(async {
        type Maker = Box<dyn Fn(usize) -> (String, Vec<u8>) + Send + Sync>;
        let signed = |f: fn(usize) -> Vec<u8>| -> Maker {
            Box::new(move |i| {
                let body = f(i);
                (signed_bet_head(&body), body)
            })
        };
        let attacks: Vec<(&'static str, usize, Maker, &[u16])> = vec![
            (
                "body over the limit (announced)",
                200,
                Box::new(|_| {
                    (
                        "POST /api/provider-callback/demo/bet HTTP/1.1\r\nHost: x\r\n\
                         Content-Length: 10000000\r\nConnection: close\r\n\r\n"
                            .to_string(),
                        vec![b'a'; 70_000],
                    )
                }),
                // 0: the connection closed after the refusal, before the client read it.
                &[413, 0],
            ),
            (
                "body over the limit (chunked)",
                200,
                Box::new(|_| {
                    let chunk = vec![b'a'; 70_000];
                    let mut body = format!("{:x}\r\n", chunk.len()).into_bytes();
                    body.extend_from_slice(&chunk);
                    body.extend_from_slice(b"\r\n0\r\n\r\n");
                    (
                        "POST /api/provider-callback/demo/bet HTTP/1.1\r\nHost: x\r\n\
                         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                            .to_string(),
                        body,
                    )
                }),
                &[413, 0],
            ),
            (
                "deep JSON nesting (signed)",
                200,
                signed(|_| {
                    let mut b = "[".repeat(30_000).into_bytes();
                    b.extend(std::iter::repeat_n(b']', 30_000));
                    b
                }),
                &[400],
            ),
            (
                "huge numbers and strings (signed)",
                200,
                signed(|i| {
                    let n = "9".repeat(20_000);
                    let s = "p".repeat(20_000);
                    format!(
                        r#"{{"player_id":"{s}","currency":"EUR","amount":"{n}","transaction_id":"h-{i}","round_id":"r","amount2":{n}}}"#
                    )
                    .into_bytes()
                }),
                &[400],
            ),
            (
                "duplicate keys (signed)",
                200,
                signed(|i| {
                    format!(
                        r#"{{"player_id":"player-1","currency":"EUR","amount":"1.00","amount":"0.01","transaction_id":"d-{i}","round_id":"r"}}"#
                    )
                    .into_bytes()
                }),
                &[400],
            ),
            (
                "invalid UTF-8 (signed)",
                200,
                signed(|_| {
                    let mut b = br#"{"player_id":"player-1","currency":"EUR","amount":"1.00","transaction_id":""#.to_vec();
                    b.extend_from_slice(&[0xff, 0xfe, 0xc3, 0x28]);
                    b.extend_from_slice(br#"","round_id":"r"}"#);
                    b
                }),
                &[400],
            ),
            (
                "header flood (20 KiB of headers)",
                200,
                Box::new(|_| {
                    let mut head =
                        "POST /api/provider-callback/demo/bet HTTP/1.1\r\nHost: x\r\n".to_string();
                    for n in 0..200 {
                        head.push_str(&format!("X-Flood-{n}: {}\r\n", "v".repeat(100)));
                    }
                    head.push_str("Content-Length: 0\r\nConnection: close\r\n\r\n");
                    (head, Vec::new())
                }),
                &[431],
            ),
            (
                "unsigned garbage",
                500,
                Box::new(|i| {
                    let body = vec![b'{'; 1000 + i % 7];
                    (
                        format!(
                            "POST /api/provider-callback/demo/bet HTTP/1.1\r\nHost: x\r\n\
                             Content-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        ),
                        body,
                    )
                }),
                &[401],
            ),
            (
                "connection flood (open, request, close)",
                3000,
                Box::new(|_| {
                    (
                        "GET /ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_string(),
                        Vec::new(),
                    )
                }),
                &[200],
            ),
        ];
        for (name, n, make, expected) in attacks {
            let p = Arc::new(Probe::default());
            let stop = Arc::new(tokio::sync::Notify::new());
            let probing = tokio::spawn(probe(addr, p.clone(), stop.clone()));
            tokio::time::sleep(Duration::from_millis(300)).await;
            let (statuses, slowest) = many(addr, n, make).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            stop.notify_one();
            probing.await.unwrap();
            let wrong: Vec<_> = statuses.iter().filter(|s| !expected.contains(s)).collect();
            assert!(wrong.is_empty(), "{name}: unexpected statuses {wrong:?}");
            results.push((
                Attack {
                    name,
                    statuses,
                    slowest,
                },
                p,
            ));
        }
        // Slow clients hold a connection each until the head timeout (5 s) or the request
        // timeout (10 s) closes it.
        for (name, n, slow_body) in [
            ("slowloris (2,000 connections, a head byte a second)", 2000, false),
            ("slow bodies (500 connections, a body byte a second)", 500, true),
        ] {
            let p = Arc::new(Probe::default());
            let stop = Arc::new(tokio::sync::Notify::new());
            let probing = tokio::spawn(probe(addr, p.clone(), stop.clone()));
            tokio::time::sleep(Duration::from_millis(300)).await;
            let (statuses, slowest) = slowloris(addr, n, slow_body).await;
            stop.notify_one();
            probing.await.unwrap();
            assert!(
                statuses.iter().all(|s| *s != 1),
                "{name}: a slow connection was still open after 40 s"
            );
            results.push((
                Attack {
                    name,
                    statuses,
                    slowest,
                },
                p,
            ));
        }
    });
    let rss_after = rss_kib(pid);
    eprintln!("hostile: gateway RSS {rss_before} KiB before, {rss_after} KiB after");
    for (attack, p) in &results {
        let ok = p.ok.load(Ordering::Relaxed);
        let failed = p.failed.load(Ordering::Relaxed);
        let mut counts = std::collections::BTreeMap::new();
        for s in &attack.statuses {
            *counts.entry(*s).or_insert(0) += 1;
        }
        eprintln!(
            "hostile: {}: {} requests {counts:?}, slowest answer {:.0} ms; probe {ok} ok, {failed} failed",
            attack.name,
            attack.statuses.len(),
            attack.slowest.as_secs_f64() * 1e3
        );
        assert!(ok > 0, "{}: the probe sent nothing", attack.name);
        assert!(
            failed * 1000 <= ok + failed,
            "{}: probe success below 99.9 % ({ok} ok, {failed} failed)",
            attack.name
        );
        assert!(
            attack.slowest < Duration::from_secs(15),
            "{}: a hostile request held on for {:?}",
            attack.name,
            attack.slowest
        );
    }
    // Still alive, and memory came back within bounds (the dedup index holds the probe's
    // answers; everything the attacks brought was released).
    assert!(gw.child.try_wait().unwrap().is_none(), "the gateway died");
    assert!(
        rss_after < rss_before + 200 * 1024,
        "RSS grew from {rss_before} to {rss_after} KiB"
    );
    sigterm(&gw.child);
    assert!(gw.child.wait().unwrap().success());
}
