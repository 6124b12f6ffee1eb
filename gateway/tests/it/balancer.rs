//! The balancer rule operators get in `deploy/haproxy/haproxy.cfg` keeps each player on one
//! gateway: a real HAProxy in front of two gateway binaries on one database sends every
//! dialect's calls for a player to the same gateway, and different players to both.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use gateway::test_util::{demo_hub88_private_key, now_s, Answer, TestClient};
use http::{Method, StatusCode};
use serde_json::json;

use crate::deploy::deploy;
use crate::foundation::{http_get, start_binary, start_binary_with, wait_until};

/// HAProxy from the PATH or Debian's place for it (`cargo xtask test` installs Debian's
/// `haproxy` package when it is missing).
fn haproxy() -> PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("haproxy"))
        .find(|file| file.is_file())
        .expect(
            "haproxy not found: `cargo xtask test` installs it (Debian's `haproxy` package), \
             or install it yourself",
        )
}

/// Stops the proxy however the test ends.
struct Proxy(Child);

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Callbacks a gateway has answered, summed over provider, action and outcome.
fn callbacks_answered(addr: &str) -> u64 {
    let (status, metrics) = http_get(addr, "/metrics");
    assert_eq!(status, 200);
    metrics
        .lines()
        .filter(|line| line.starts_with("wallet_callbacks_total{"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// A balance call for `player` in each demo provider's dialect (`config/demo.toml`'s secrets),
/// each answered 200 by whichever gateway the proxy chose.
async fn balance_in_every_dialect(client: &TestClient, player: &str) {
    let native = client
        .native(
            "demo",
            "demo-secret",
            "balance",
            json!({"player_id": player, "currency": "EUR"}),
        )
        .await;
    let params = [("userId", player)];
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.extend_pairs(params);
    form.append_pair(
        "hash",
        &gateway::provider::pragmatic::sign(&params, b"demo-pp-secret"),
    );
    let pragmatic = client
        .request(
            Method::POST,
            "/api/provider-callback/demo-pp/balance.html",
            &[(
                "Content-Type",
                "application/x-www-form-urlencoded".to_string(),
            )],
            form.finish(),
        )
        .await;
    let evolution = client
        .evo_as(
            "demo-evo",
            "balance",
            json!({"userId": player, "uuid": format!("q-{}", now_s())}).to_string(),
            Some("demo-evo-token"),
        )
        .await;
    let hub88 = client
        .hub88_as(
            "demo-hub88",
            "user/balance",
            &json!({"user": player, "request_uuid": "q"}),
            &demo_hub88_private_key(),
        )
        .await;
    let body = serde_json::to_vec(&json!({"user_id": player, "currency": "EUR",
        "game": "ss-slot", "game_id": format!("balance-{player}"), "finished": false,
        "actions": []}))
    .unwrap();
    let signature = gateway::provider::softswiss::sign(&body, b"demo-ss-secret");
    let softswiss = client
        .request(
            Method::POST,
            "/api/provider-callback/demo-ss/play",
            &[
                ("Content-Type", "application/json".to_string()),
                ("X-REQUEST-SIGN", signature),
            ],
            body,
        )
        .await;
    let answers: [(&str, Answer); 5] = [
        ("native", native),
        ("pragmatic", pragmatic),
        ("evolution", evolution),
        ("hub88", hub88),
        ("softswiss", softswiss),
    ];
    for (dialect, answer) in answers {
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "{dialect} for {player}: {:?}",
            answer.body
        );
    }
}

#[test]
fn the_shipped_balancer_rule_keeps_each_player_on_one_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let first = start_binary(&dir.path().join("a"));
    let url = format!(
        "host={} port=5432 user=wallet dbname=wallet",
        dir.path().join("a/run").display()
    );
    let second = start_binary_with(&dir.path().join("b"), &[("DATABASE_URL", &url)]);
    let listen = {
        let probe = TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap()
    };
    let _proxy = Proxy(
        Command::new(haproxy())
            .arg("-f")
            .arg(deploy("haproxy/haproxy.cfg"))
            // In the foreground, and no check of the configuration's own user or chroot.
            .arg("-db")
            .env("CALLBACKS_LISTEN", listen.to_string())
            .env("GATEWAY_A", &first.addr)
            .env("GATEWAY_B", &second.addr)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start haproxy"),
    );
    wait_until("haproxy listens", || TcpStream::connect(listen).is_ok());

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = TestClient::new(listen);
    let mut on = [0, 0];
    for n in 1..=12 {
        let player = format!("player-{n}");
        let before = [
            callbacks_answered(&first.addr),
            callbacks_answered(&second.addr),
        ];
        runtime.block_on(balance_in_every_dialect(&client, &player));
        let after = [
            callbacks_answered(&first.addr),
            callbacks_answered(&second.addr),
        ];
        let took = [after[0] - before[0], after[1] - before[1]];
        assert!(
            took == [5, 0] || took == [0, 5],
            "{player}'s five calls were split over the gateways: {took:?}"
        );
        on[usize::from(took[1] == 5)] += 1;
    }
    assert!(
        on[0] > 0 && on[1] > 0,
        "every player went to one gateway: {on:?} (a rule that never spreads balances nothing)"
    );
}
