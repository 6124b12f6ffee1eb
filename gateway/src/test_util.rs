//! Test harness: the real gateway, in-process, listening on 127.0.0.1:0 against a fresh
//! database of the per-process throwaway cluster, and a small HTTP client to talk to it.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::app::{self, Overrides, Running};
use crate::config::Config;
pub use settlement::test_util::{fresh_database, TestDb};

/// Providers every test gateway knows, on top of the test's own configuration.
pub const TEST_PROVIDERS: &str = concat!(
    r#"
[[providers]]
code = "demo"
dialect = "native"
secret = "demo-secret-for-tests"
previous_secret = "old-demo-secret-for-tests"
launch_url = "https://games.example.com/{game_id}?token={token}&cur={currency}&p={player}"

[[providers]]
code = "strict"
dialect = "native"
secret = "strict-secret-for-tests"
policy = { session_required = true, tombstone_answer = "not_found", win_rollback_allowed = true, negative_balance_allowed = true, wins_without_bet_allowed = false }

[[providers]]
code = "pp"
dialect = "pragmatic"
allow_ips = ["127.0.0.1", "::1"]
secret = "pp-secret-for-tests"
policy = { wins_without_bet_allowed = false, wins_wait_for_bet = true }

[[providers]]
code = "evo"
dialect = "evolution"
allow_ips = ["127.0.0.1", "::1"]
secret = "evo-token-for-tests"
policy = { tombstone_answer = "not_found", wins_without_bet_allowed = false }

[[providers]]
code = "evos"
dialect = "evolution"
allow_ips = ["127.0.0.1", "::1"]
secret = "evo-token-for-tests"
policy = { session_required = true, tombstone_answer = "not_found", wins_without_bet_allowed = false }

[[providers]]
code = "ss"
dialect = "softswiss"
allow_ips = ["127.0.0.1", "::1"]
secret = "ss-secret-for-tests"

[[providers]]
code = "hub88"
dialect = "hub88"
allow_ips = ["127.0.0.1", "::1"]
public_key_file = ""#,
    env!("CARGO_MANIFEST_DIR"),
    r#"/tests/keys/test-hub88-provider.pub.pem"

[[providers]]
code = "hub88s"
dialect = "hub88"
allow_ips = ["127.0.0.1", "::1"]
public_key_file = ""#,
    env!("CARGO_MANIFEST_DIR"),
    r#"/tests/keys/test-hub88-provider.pub.pem"
policy = { session_required = true }
"#
);

/// The private key of the test Hub88-style providers `hub88` and `hub88s` (PKCS#8 PEM). The
/// demo's key pair is refused outside demo mode, so test gateways have a pair of their own.
pub const TEST_HUB88_KEY_FILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/keys/test-hub88-provider.pem"
);

/// The test Hub88-style providers' private key (it signs test traffic).
pub fn hub88_private_key() -> rsa::RsaPrivateKey {
    private_key(TEST_HUB88_KEY_FILE)
}

/// The demo Hub88-style provider's private key (`config/demo.toml`'s `demo-hub88`).
pub fn demo_hub88_private_key() -> rsa::RsaPrivateKey {
    private_key(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../config/keys/demo-hub88-provider.pem"
    ))
}

fn private_key(path: &str) -> rsa::RsaPrivateKey {
    let pem = std::fs::read_to_string(path).expect("hub88 key");
    crate::provider::hub88::private_key_from_pem(&pem).expect("PKCS#8 key")
}

/// The REST module on, with a test key, and demo players with logins: prepend to a test's
/// configuration (it opens the `[rest]` and `[demo]` tables; add keys to `[demo]` after it).
pub const REST_ON: &str = "[rest]
enabled = true
jwt_secret = \"jwt-secret-for-tests-0123456789abcdef\"
[[payment_providers]]
code = \"psp\"
secret = \"psp-secret-for-tests\"
[demo]
enabled = true
players = 10
";

/// The webhook secret of payment provider `psp` in [`REST_ON`].
pub const PSP_SECRET: &str = "psp-secret-for-tests";

/// The test key of access tokens in [`REST_ON`].
pub const JWT_TEST_KEY: &[u8] = b"jwt-secret-for-tests-0123456789abcdef";

/// The demo admin's TOTP secret and the demo passwords.
pub const ADMIN_TOTP: &str = "JBSWY3DPEHPK3PXP";
pub const ADMIN_PASSWORD: &str = "demo-admin-password";
pub const PLAYER_PASSWORD: &str = "demo-player-password";

/// The TOTP code of `secret` at `offset_steps` 30-second steps from now.
pub fn totp_code(secret: &str, offset_steps: i64) -> String {
    let at = (now_s() + offset_steps * 30).max(0) as u64;
    rest::auth::totp::code_at(secret, at).expect("base32 secret")
}

/// The token of the test provider `evo` (Evolution-style).
pub const EVO_TOKEN: &str = "evo-token-for-tests";

/// The secret of the test provider `pp` (Pragmatic-style).
pub const PP_SECRET: &str = "pp-secret-for-tests";

/// A running gateway and the database behind it; its [`TestClient`] methods talk to it.
pub struct TestGateway {
    pub addr: SocketAddr,
    pub db: TestDb,
    running: Option<Running>,
    client: TestClient,
}

impl std::ops::Deref for TestGateway {
    type Target = TestClient;

    fn deref(&self) -> &TestClient {
        &self.client
    }
}

/// An HTTP client for one gateway address (keep-alive connections, signed callbacks).
#[derive(Clone)]
pub struct TestClient {
    addr: SocketAddr,
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
}

impl TestClient {
    pub fn new(addr: SocketAddr) -> TestClient {
        TestClient {
            addr,
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }
}

/// An answer as the test sees it.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
}

/// Starts a gateway with `extra_toml` (on top of [`TEST_PROVIDERS`] and defaults) on a fresh
/// database.
pub async fn start_gateway(extra_toml: &str) -> TestGateway {
    start_gateway_on(fresh_database().await, extra_toml).await
}

/// Starts a gateway with `extra_toml` on `db` (a second gateway on one database: pass
/// `first.db.clone()`).
pub async fn start_gateway_on(db: TestDb, extra_toml: &str) -> TestGateway {
    let text = format!("{extra_toml}\n{TEST_PROVIDERS}");
    let mut config = Config::from_toml(&text, &[])
        .unwrap_or_else(|problems| panic!("test config: {problems:?}"));
    config.database.url = db.url();
    config.database.url_env = String::new();
    let overrides = Overrides {
        listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        data_dir: None,
    };
    let running = app::start(config, overrides).await.expect("start gateway");
    TestGateway {
        addr: running.addr,
        db,
        client: TestClient::new(running.addr),
        running: Some(running),
    }
}

impl TestClient {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Sends one request and reads the whole answer.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: impl Into<Bytes>,
    ) -> Answer {
        self.try_request(method, path, headers, body)
            .await
            .expect("send request")
    }

    /// [`TestClient::request`], answering transport failures (refused, reset) as `Err`.
    pub async fn try_request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: impl Into<Bytes>,
    ) -> Result<Answer, String> {
        let mut builder = Request::builder().method(method).uri(self.url(path));
        for (name, value) in headers {
            builder = builder.header(*name, value);
        }
        let request = builder.body(Full::new(body.into())).expect("request");
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| e.to_string())?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.request(Method::GET, path, &[], Bytes::new()).await
    }

    /// A REST call: `token` as bearer, `body` as JSON.
    pub async fn api(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> Answer {
        let mut headers = Vec::new();
        if let Some(token) = token {
            headers.push(("Authorization", format!("Bearer {token}")));
        }
        let body = match body {
            Some(json) => {
                headers.push(("Content-Type", "application/json".to_string()));
                Bytes::from(json.to_string())
            }
            None => Bytes::new(),
        };
        self.request(method, path, &headers, body).await
    }

    /// Logs in (with `totp_code` when given) and answers the login's `data`; panics unless
    /// the login succeeds.
    pub async fn login_with(
        &self,
        username: &str,
        password: &str,
        totp_code: Option<String>,
    ) -> serde_json::Value {
        let mut body = serde_json::json!({"username": username, "password": password});
        if let Some(code) = totp_code {
            body["totp_code"] = serde_json::json!(code);
        }
        let a = self
            .api(Method::POST, "/api/auth/login", None, Some(body))
            .await;
        assert_eq!(a.status, StatusCode::OK, "login {username}: {:?}", a.json());
        a.json()["data"].clone()
    }

    /// An access token of the demo player `username`.
    pub async fn player_token(&self, username: &str) -> String {
        let data = self.login_with(username, PLAYER_PASSWORD, None).await;
        data["access_token"].as_str().expect("token").to_string()
    }

    /// An access token of the demo admin, logged in with a TOTP code of `offset_steps`.
    pub async fn admin_token(&self, offset_steps: i64) -> String {
        let code = totp_code(ADMIN_TOTP, offset_steps);
        let data = self.login_with("admin", ADMIN_PASSWORD, Some(code)).await;
        data["access_token"].as_str().expect("token").to_string()
    }
}

impl TestGateway {
    /// The settlement fault seam of this gateway: failpoints and planted bugs.
    /// Where `GET /metrics` is served apart (`server.metrics_listen`), if it is.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.running.as_ref().and_then(|r| r.metrics_addr)
    }

    pub fn faults(&self) -> std::sync::Arc<settlement::fault::Faults> {
        let running = self.running.as_ref().expect("gateway running");
        running.state.settler.faults().clone()
    }

    /// Waits until every trace record queued so far is in the database.
    pub async fn flush_trace(&self) {
        let running = self.running.as_ref().expect("gateway running");
        running.state.trace.flush().await;
    }

    /// Graceful shutdown; waits until the gateway has stopped.
    pub async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            running.stop().await.expect("gateway stops cleanly");
        }
    }
}

/// Unix seconds now.
pub fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

impl TestClient {
    /// A native callback signed with `secret` at time `t`.
    pub async fn native_signed(
        &self,
        provider: &str,
        action: &str,
        body: &[u8],
        signature: Option<String>,
    ) -> Answer {
        let headers: Vec<(&str, String)> = signature
            .into_iter()
            .map(|s| ("X-Signature", s))
            .chain([("Content-Type", "application/json".to_string())])
            .collect();
        self.request(
            Method::POST,
            &format!("/api/provider-callback/{provider}/{action}"),
            &headers,
            Bytes::copy_from_slice(body),
        )
        .await
    }

    /// A Pragmatic-style call to provider `pp`: `params` form-encoded in the order given, with
    /// a correct `hash` appended.
    pub async fn pp(&self, method: &str, params: &[(&str, &str)]) -> Answer {
        let hash = crate::provider::pragmatic::sign(params, PP_SECRET.as_bytes());
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.extend_pairs(params.iter().copied());
        form.append_pair("hash", &hash);
        self.pp_raw(method, form.finish()).await
    }

    /// A Pragmatic-style call to provider `pp` with this exact body.
    pub async fn pp_raw(&self, method: &str, body: String) -> Answer {
        self.request(
            Method::POST,
            &format!("/api/provider-callback/pp/{method}.html"),
            &[(
                "Content-Type",
                "application/x-www-form-urlencoded".to_string(),
            )],
            body,
        )
        .await
    }

    /// An Evolution-style call to provider `evo` with the right token.
    pub async fn evo(&self, action: &str, body: serde_json::Value) -> Answer {
        self.evo_with_token(action, body.to_string(), Some(EVO_TOKEN))
            .await
    }

    /// An Evolution-style call with this exact body text (numbers as written) and token.
    pub async fn evo_with_token(&self, action: &str, body: String, token: Option<&str>) -> Answer {
        self.evo_as("evo", action, body, token).await
    }

    /// An Evolution-style call to the Evolution-style provider `provider`.
    pub async fn evo_as(
        &self,
        provider: &str,
        action: &str,
        body: String,
        token: Option<&str>,
    ) -> Answer {
        let query = token.map_or(String::new(), |t| format!("?authToken={t}"));
        self.request(
            Method::POST,
            &format!("/api/provider-callback/{provider}/{action}{query}"),
            &[("Content-Type", "application/json".to_string())],
            body,
        )
        .await
    }

    /// A Hub88-style call to provider `hub88` at `path` (e.g. `transaction/bet`), signed with
    /// `key` (the demo provider's, or another to be refused).
    pub async fn hub88(
        &self,
        path: &str,
        body: &serde_json::Value,
        key: &rsa::RsaPrivateKey,
    ) -> Answer {
        self.hub88_as("hub88", path, body, key).await
    }

    /// A Hub88-style call to the Hub88-style provider `provider`.
    pub async fn hub88_as(
        &self,
        provider: &str,
        path: &str,
        body: &serde_json::Value,
        key: &rsa::RsaPrivateKey,
    ) -> Answer {
        let body = serde_json::to_vec(body).expect("json");
        let signature = crate::provider::hub88::sign(&body, key);
        self.json_call(provider, path, ("X-Hub88-Signature", signature), body)
            .await
    }

    /// A JSON body posted to `provider`'s callback `path` with one signature header.
    async fn json_call(
        &self,
        provider: &str,
        path: &str,
        signature: (&str, String),
        body: Vec<u8>,
    ) -> Answer {
        let target = format!("/api/provider-callback/{provider}/{path}");
        let headers = [("Content-Type", "application/json".to_string()), signature];
        self.request(Method::POST, &target, &headers, body).await
    }

    /// A SoftSwiss-style call to provider `ss` at `path` (`play` or `rollback`), signed.
    pub async fn ss(&self, path: &str, body: &serde_json::Value) -> Answer {
        let body = serde_json::to_vec(body).expect("json");
        let signature = crate::provider::softswiss::sign(&body, b"ss-secret-for-tests");
        self.json_call("ss", path, ("X-REQUEST-SIGN", signature), body)
            .await
    }

    /// A native callback to provider `demo`, correctly signed now.
    pub async fn demo(&self, action: &str, body: serde_json::Value) -> Answer {
        self.native("demo", "demo-secret-for-tests", action, body)
            .await
    }

    /// A native callback correctly signed now with `secret`.
    pub async fn native(
        &self,
        provider: &str,
        secret: &str,
        action: &str,
        body: serde_json::Value,
    ) -> Answer {
        let body = serde_json::to_vec(&body).expect("json");
        let signature = crate::signature::sign_native(secret.as_bytes(), now_s(), &body);
        self.native_signed(provider, action, &body, Some(signature))
            .await
    }
}

impl TestGateway {
    /// The first column of the one row `sql` answers.
    pub async fn value<T>(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> T
    where
        T: for<'a> tokio_postgres::types::FromSql<'a>,
    {
        let client = self.db.connect().await;
        let row = client.query_one(sql, params).await;
        row.unwrap_or_else(|e| panic!("{sql}: {e}")).get(0)
    }

    /// The player's EUR balance (real money) in minor units.
    pub async fn balance(&self, player: &str) -> i64 {
        self.value(
            "SELECT w.balance FROM wallets w JOIN players p ON p.id = w.player_id
             WHERE p.external_id = $1 AND w.currency = 'EUR'",
            &[&player],
        )
        .await
    }

    /// Ledger rows for the player (seed deposit included).
    pub async fn ledger_len(&self, player: &str) -> i64 {
        let client = self.db.connect().await;
        client
            .query_one(
                "SELECT count(*) FROM transactions t JOIN players p ON p.id = t.player_id
                 WHERE p.external_id = $1",
                &[&player],
            )
            .await
            .expect("count")
            .get(0)
    }

    /// Game sessions `live` (an hour left) and `stale` (expired) for `player`, any game, EUR.
    pub async fn sessions_live_and_stale(&self, player: &str) {
        let client = self.db.connect().await;
        client
            .execute(
                "INSERT INTO game_sessions (token, player_id, currency, game_id, expires_at)
                 SELECT s.token, p.id, 'EUR', NULL, now() + s.remaining
                 FROM players p, (VALUES ('live', interval '1 hour'),
                                         ('stale', interval '-1 second')) AS s(token, remaining)
                 WHERE p.external_id = $1",
                &[&player],
            )
            .await
            .expect("sessions");
    }

    /// Runs SQL against the gateway's database (test set-up: sessions, statuses, limits).
    pub async fn sql(&self, statement: &str) {
        let client = self.db.connect().await;
        client.batch_execute(statement).await.expect("test SQL");
    }

    /// Asserts every wallet equals the sum of its ledger rows, then stops the gateway.
    pub async fn finish(self) {
        settlement::test_util::assert_ledger_matches(&self.db.connect().await).await;
        self.stop().await;
    }
}
