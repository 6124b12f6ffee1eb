//! The native dialect's front door: signatures, malformed and oversized input. Every refusal
//! gets its status and code, and moves no money.

use gateway::provider::wire::sign_native;
use gateway::test_util::{now_s, start_gateway, TestGateway};
use http::StatusCode;
use serde_json::json;

use crate::money_path::{bet, gateway, START};

async fn assert_untouched(gw: &TestGateway) {
    assert_eq!(gw.balance("player-1").await, START);
    assert_eq!(gw.ledger_len("player-1").await, 1, "only the seed deposit");
}

#[tokio::test]
async fn signatures_are_checked_on_the_raw_bytes() {
    let gw = gateway().await;
    let body = serde_json::to_vec(&bet("player-1", "b1", "1.00", "r1")).unwrap();
    let other = serde_json::to_vec(&bet("player-1", "b1", "100.00", "r1")).unwrap();
    let now = now_s();
    let cases: Vec<(&str, Option<String>, &[u8])> = vec![
        ("missing", None, &body),
        ("garbage", Some("nonsense".into()), &body),
        (
            "wrong secret",
            Some(sign_native(b"guess", now, &body)),
            &body,
        ),
        (
            "other bytes",
            Some(sign_native(b"demo-secret-for-tests", now, &other)),
            &body,
        ),
        (
            "stale",
            Some(sign_native(b"demo-secret-for-tests", now - 305, &body)),
            &body,
        ),
        (
            "future",
            Some(sign_native(b"demo-secret-for-tests", now + 305, &body)),
            &body,
        ),
        (
            "other provider's secret",
            Some(sign_native(b"strict-secret-for-tests", now, &body)),
            &body,
        ),
    ];
    for (what, signature, sent) in cases {
        let a = gw.native_signed("demo", "bet", sent, signature).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(a.json()["status"], "INVALID_SIGNATURE", "{what}");
    }
    // Whitespace added after signing changes the bytes: refused.
    let mut padded = body.clone();
    padded.push(b' ');
    let a = gw
        .native_signed(
            "demo",
            "bet",
            &padded,
            Some(sign_native(b"demo-secret-for-tests", now, &body)),
        )
        .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_untouched(&gw).await;

    // Rotation: the previous secret is still accepted, and the current one of course.
    let a = gw
        .native_signed(
            "demo",
            "bet",
            &body,
            Some(sign_native(b"old-demo-secret-for-tests", now, &body)),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json()["status"], "OK");
    let body2 = serde_json::to_vec(&bet("player-1", "b2", "1.00", "r1")).unwrap();
    let a = gw
        .native_signed(
            "demo",
            "bet",
            &body2,
            Some(sign_native(b"demo-secret-for-tests", now - 295, &body2)),
        )
        .await;
    assert_eq!(a.json()["status"], "OK");
    assert_eq!(gw.balance("player-1").await, START - 200);
    gw.finish().await;
}

#[tokio::test]
async fn malformed_bodies_are_refused_with_400() {
    let gw = gateway().await;
    let mut cases: Vec<(String, Vec<u8>)> = vec![
        ("broken json".into(), b"{\"player_id\": ".to_vec()),
        ("not an object".into(), b"[1,2,3]".to_vec()),
        ("empty".into(), Vec::new()),
        ("not utf-8".into(), vec![0xff, 0xfe, b'{']),
    ];
    for field in [
        "player_id",
        "currency",
        "amount",
        "transaction_id",
        "round_id",
        "game_id",
    ] {
        let mut body = bet("player-1", "b1", "1.00", "r1");
        body.as_object_mut().unwrap().remove(field);
        cases.push((
            format!("missing {field}"),
            serde_json::to_vec(&body).unwrap(),
        ));
    }
    for amount in [
        "1.001",
        "-1.00",
        "1e2",
        "1E2",
        "NaN",
        "Infinity",
        "",
        " 1",
        "1.",
        ".5",
        "0x10",
        "92233720368547758.08",
        "99999999999999999999999",
    ] {
        let body = bet("player-1", "b1", amount, "r1");
        cases.push((
            format!("amount {amount:?}"),
            serde_json::to_vec(&body).unwrap(),
        ));
    }
    let mut number = bet("player-1", "b1", "1.00", "r1");
    number["amount"] = json!(1.0);
    cases.push((
        "amount as a JSON number".into(),
        serde_json::to_vec(&number).unwrap(),
    ));
    let mut long = bet("player-1", "b1", "1.00", "r1");
    long["transaction_id"] = json!("x".repeat(129));
    cases.push(("129-byte id".into(), serde_json::to_vec(&long).unwrap()));
    // Ids are printable text: a control character (PostgreSQL refuses `\0` outright, so it
    // would fail in storage on every retry) or a replacement character is malformed.
    for (field, id) in [
        ("transaction_id", "b\u{0}1"),
        ("transaction_id", "b\u{1}1"),
        ("round_id", "r\n1"),
        ("player_id", "player-1\u{7f}"),
        ("game_id", "g\u{fffd}"),
    ] {
        let mut body = bet("player-1", "b1", "1.00", "r1");
        body[field] = json!(id);
        cases.push((
            format!("{field} {id:?}"),
            serde_json::to_vec(&body).unwrap(),
        ));
    }
    let mut empty = bet("player-1", "b1", "1.00", "r1");
    empty["round_id"] = json!("");
    cases.push(("empty round id".into(), serde_json::to_vec(&empty).unwrap()));
    let mut lower = bet("player-1", "b1", "1.00", "r1");
    lower["currency"] = json!("eur");
    cases.push((
        "lower-case currency".into(),
        serde_json::to_vec(&lower).unwrap(),
    ));
    cases.push((
        "duplicate key".into(),
        br#"{"player_id":"player-1","player_id":"player-2","currency":"EUR","amount":"1.00","transaction_id":"b1","round_id":"r1","game_id":"g"}"#.to_vec(),
    ));
    let mut bet_ref = bet("player-1", "b1", "1.00", "r1");
    bet_ref["bet_transaction_id"] = json!("b0");
    cases.push((
        "bet naming a bet".into(),
        serde_json::to_vec(&bet_ref).unwrap(),
    ));

    let n = cases.len();
    for (what, body) in cases {
        let signature = sign_native(b"demo-secret-for-tests", now_s(), &body);
        let a = gw
            .native_signed("demo", "bet", &body, Some(signature))
            .await;
        assert_eq!(
            a.status,
            StatusCode::BAD_REQUEST,
            "{what}: {:?}",
            String::from_utf8_lossy(&a.body)
        );
        assert_eq!(a.json()["status"], "MALFORMED_REQUEST", "{what}");
    }
    assert!(n >= 34, "{n} cases");
    assert_untouched(&gw).await;
    gw.finish().await;
}

#[tokio::test]
async fn oversized_bodies_get_413_and_unknown_actions_404() {
    let gw = gateway().await;
    let mut big = bet("player-1", "b1", "1.00", "r1");
    big["padding"] = json!("x".repeat(70 * 1024));
    let body = serde_json::to_vec(&big).unwrap();
    let a = gw
        .native_signed(
            "demo",
            "bet",
            &body,
            Some(sign_native(b"demo-secret-for-tests", now_s(), &body)),
        )
        .await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    let body = serde_json::to_vec(&bet("player-1", "b1", "1.00", "r1")).unwrap();
    let a = gw
        .native_signed(
            "demo",
            "deposit",
            &body,
            Some(sign_native(b"demo-secret-for-tests", now_s(), &body)),
        )
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    let a = gw
        .request(
            http::Method::GET,
            "/api/provider-callback/demo/bet",
            &[],
            "",
        )
        .await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_untouched(&gw).await;
    gw.finish().await;
}

#[tokio::test]
async fn request_heads_are_bounded_in_count_and_bytes() {
    let gw = start_gateway("").await;
    let path = "/api/provider-callback/demo/balance";
    let many: Vec<(String, String)> = (0..150)
        .map(|i| (format!("x-flood-{i}"), "1".into()))
        .collect();
    let many: Vec<(&str, String)> = many.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    let answer = raw_status(gw.addr, path, &many).await;
    assert_eq!(answer, 431, "150 headers");
    let big = [("x-big", "a".repeat(20 * 1024))];
    let answer = raw_status(gw.addr, path, &big).await;
    assert_eq!(answer, 431, "a 20 KiB header");
    // The gateway is still serving.
    assert_eq!(gw.get("/ready").await.status, StatusCode::OK);
    gw.stop().await;
}

/// Sends a request head over a plain socket and reads the answer's status code.
async fn raw_status(addr: std::net::SocketAddr, path: &str, headers: &[(&str, String)]) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut head = format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    // The gateway may answer and close before reading all of a flood; that is fine.
    let _ = stream.write_all(head.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        stream.read_to_end(&mut answer),
    )
    .await;
    let text = String::from_utf8_lossy(&answer);
    text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// A provider that shuts its side of the connection once its request is sent (a half-close)
/// still gets its answer: the callback is settled and answered, not dropped when the gateway
/// sees the end of the request stream.
#[tokio::test]
async fn a_caller_that_half_closes_after_its_request_gets_its_answer() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let gw = gateway().await;
    let body = serde_json::to_vec(&bet("player-1", "half-1", "1.00", "r-half")).unwrap();
    let signature = sign_native(b"demo-secret-for-tests", now_s(), &body);
    let mut stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let head = format!(
        "POST /api/provider-callback/demo/bet HTTP/1.1\r\nHost: x\r\n\
         Content-Type: application/json\r\nX-Signature: {signature}\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body).await.unwrap();
    stream.shutdown().await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut answer),
    )
    .await
    .expect("answered within 10 s")
    .expect("read");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 200"), "{text:?}");
    assert!(text.contains("\"balance\":\"999.00\""), "{text:?}");
    assert_eq!(gw.balance("player-1").await, START - 100);
    gw.stop().await;
}
