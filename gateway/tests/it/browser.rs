//! The back-office console driven in a real browser: headless Chromium through chromedriver
//! (WebDriver), against a real gateway and database. Each step waits for what a person would
//! see; a screenshot of every screen goes to `target/console-screenshots/` (not committed), and
//! the browser's console must stay free of errors. `cargo xtask test` installs `chromium` and
//! `chromium-driver` when they are missing.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use gateway::test_util::{
    start_gateway, totp_code, TestGateway, ADMIN_PASSWORD, ADMIN_TOTP, REST_ON,
};
use serde_json::{json, Value};

/// How long a step may take to show what it should.
const PATIENCE: Duration = Duration::from_secs(20);

/// A headless Chromium session on its own chromedriver.
struct Browser {
    client: Client,
    driver: Child,
    base: String,
    shots: PathBuf,
}

/// Chromedriver's log of the browser's console (`goog:loggingPrefs`).
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(json!({"type": "browser"}).to_string()),
        )
    }
}

impl Browser {
    async fn start(gw: &TestGateway, shots: &str) -> Browser {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let program = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let driver = Command::new(&program)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "{program}: {e}. The console's browser tests need Chromium and chromedriver; \
                     `cargo xtask test` installs them (Debian: apt-get install chromium \
                     chromium-driver)"
                )
            });
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                            "--disable-dev-shm-usage", "--window-size=1280,800"]}),
        );
        caps.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
        let url = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(client) => break client,
                Err(_) if started.elapsed() < PATIENCE => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("chromedriver did not start: {e}"),
            }
        };
        let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../target/console-screenshots")
            .join(shots);
        std::fs::create_dir_all(&shots).unwrap();
        Browser {
            client,
            driver,
            base: format!("http://{}/console/", gw.addr),
            shots,
        }
    }

    async fn open(&self, hash: &str) {
        self.client
            .goto(&format!("{}{hash}", self.base))
            .await
            .unwrap();
    }

    /// The first element matching `css`, once it is there.
    async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(PATIENCE)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css} never appeared: {e}"))
    }

    /// The text of `css` once it contains `wanted`.
    async fn text(&self, css: &str, wanted: &str) -> String {
        let started = Instant::now();
        loop {
            let text = match self.client.find(Locator::Css(css)).await {
                Ok(e) => e.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if text.contains(wanted) {
                return text;
            }
            if started.elapsed() > PATIENCE {
                let notice = self.notice().await;
                self.shot("failed").await;
                let errors = self.errors().await;
                panic!("{css} never said {wanted:?}: {text:?} (notice: {notice:?}; console: {errors:?})");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn notice(&self) -> String {
        match self.client.find(Locator::Id("notice")).await {
            Ok(e) => e.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// Types `value` into the field `name` of form `form`.
    async fn fill(&self, form: &str, name: &str, value: &str) {
        let input = self.find(&format!("{form} [name={name}]")).await;
        if input.tag_name().await.unwrap() == "select" {
            input.select_by_value(value).await.unwrap();
        } else {
            input.clear().await.unwrap();
            input.send_keys(value).await.unwrap();
        }
    }

    async fn submit(&self, form: &str) {
        self.find(&format!("{form} button[type=submit]"))
            .await
            .click()
            .await
            .unwrap();
    }

    async fn click(&self, css: &str) {
        self.find(css).await.click().await.unwrap();
    }

    async fn login(&self, username: &str, password: &str, code: &str) {
        self.open("#/login").await;
        self.fill("#login", "username", username).await;
        self.fill("#login", "password", password).await;
        self.fill("#login", "totp_code", code).await;
        self.submit("#login").await;
        self.find("#nav a[data-screen=players]").await;
    }

    async fn logout(&self) {
        self.click("#logout").await;
        self.find("#login").await;
    }

    async fn shot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
    }

    /// The browser console's errors since the last call.
    async fn errors(&self) -> Vec<String> {
        let log = self
            .client
            .issue_cmd(BrowserLog)
            .await
            .unwrap_or(Value::Null);
        log.as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["level"] == "SEVERE")
            .map(|e| e["message"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// Closes the browser and its driver; the browser's console must have logged no error
    /// but those `expected` allows.
    async fn finish(mut self, expected: impl Fn(&str) -> bool) {
        let errors: Vec<String> = self
            .errors()
            .await
            .into_iter()
            .filter(|e| !expected(e))
            .collect();
        let _ = self.client.close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        assert!(
            errors.is_empty(),
            "the browser console reported errors: {errors:#?}"
        );
    }
}

/// The previous step's TOTP code for a login (so that a later step-up, with the current
/// step's code, is a newer step), computed with at least 10 s left in the current step: the
/// gateway accepts one step either way, so a code computed in a step's last seconds would be two
/// steps old by the time the browser submits it.
async fn login_code() -> String {
    let into_step = gateway::test_util::now_s().rem_euclid(30);
    if into_step >= 20 {
        tokio::time::sleep(Duration::from_secs((31 - into_step) as u64)).await;
    }
    totp_code(ADMIN_TOTP, -1)
}

/// A staff account with the demo admin's TOTP secret.
async fn staff(gw: &TestGateway, username: &str, role: &str) {
    let hash = rest::auth::password::hash_now("staff-password-long");
    gw.sql(&format!(
        "INSERT INTO accounts (username, password_hash, role, totp_secret, totp_enabled)
         VALUES ('{username}', '{hash}', '{role}', '{ADMIN_TOTP}', true)"
    ))
    .await;
}

/// A REST gateway whose report rollups fold every second, with a provider managed in the back
/// office, one bet traced and one adjustment-worthy player.
async fn gateway() -> TestGateway {
    let config = REST_ON.replace(
        "[rest]\nenabled = true",
        "[rest]\nenabled = true\nreport_fold_interval_s = 1\nreport_settle_s = 2",
    );
    let gw = start_gateway(&config).await;
    gw.sql(
        r#"INSERT INTO providers (code, dialect, enabled, managed) VALUES ('console-native', 'native',
           true, '{"secret": "console-native-secret", "currency": "EUR", "policy": {}}')"#,
    )
    .await;
    crate::money_path::accepted(
        &gw,
        "bet",
        crate::money_path::bet("player-1", "b-1", "2.50", "r-1"),
    )
    .await;
    crate::money_path::accepted(
        &gw,
        "win",
        crate::money_path::win("player-1", "w-1", "4.00", "r-1"),
    )
    .await;
    gw.flush_trace().await;
    gw
}

#[tokio::test]
async fn an_admin_and_a_second_admin_work_through_every_screen() {
    let gw = gateway().await;
    staff(&gw, "admin-2", "admin").await;
    let player: i64 = gw
        .value("SELECT id FROM players WHERE external_id = 'player-1'", &[])
        .await;
    let b = Browser::start(&gw, "tour").await;

    // Log in with password and TOTP; find a player.
    b.login("admin", ADMIN_PASSWORD, &login_code().await).await;
    b.shot("01-players").await;
    b.fill("#player-search", "username", "player-1").await;
    b.submit("#player-search").await;
    b.text("#players", "player-1").await;
    b.click(&format!("#players a[href='#/players/{player}']"))
        .await;
    b.text("#wallets", "EUR").await;
    b.text("#recent-ledger", "win").await;
    b.shot("02-player").await;

    // An adjustment above the approval threshold waits for a second admin.
    b.fill("#adjustment-form", "amount", "5000.00").await;
    b.fill("#adjustment-form", "reason", "goodwill after outage")
        .await;
    b.fill("#adjustment-form", "totp_code", &totp_code(ADMIN_TOTP, 0))
        .await;
    b.submit("#adjustment-form").await;
    b.text("#adjustment-outcome", "waits for a second admin")
        .await;
    let before = gw.balance("player-1").await;
    // The requester's own queue: listed, but approving it is refused (four eyes).
    b.open("#/adjustments").await;
    b.text("#adjustment-queue", "goodwill after outage").await;
    b.shot("03-adjustments").await;
    b.logout().await;

    // The second admin approves it.
    b.login("admin-2", "staff-password-long", &login_code().await)
        .await;
    b.open("#/adjustments").await;
    b.text("#adjustment-queue", "goodwill after outage").await;
    b.fill("main", "approve_totp", &totp_code(ADMIN_TOTP, 0))
        .await;
    b.click("#adjustment-queue button[data-approve]").await;
    b.text("#notice", "applied").await;
    assert_eq!(gw.balance("player-1").await, before + 500_000);

    // A transaction's trace, and its replay.
    b.open("#/transactions").await;
    b.fill("#transaction-search", "player", &player.to_string())
        .await;
    b.fill("#transaction-search", "kind", "bet").await;
    b.submit("#transaction-search").await;
    b.click("#transactions tbody a").await;
    b.text("#request-0", "POST").await;
    b.text("#request-0", "Decoded command").await;
    b.shot("04-trace").await;
    b.fill("#replay-form", "reason", "provider dispute 17")
        .await;
    b.submit("#replay-form").await;
    b.text("#replay-outcome", "same answer: true").await;

    // A report as a chart and a table.
    b.open("#/reports").await;
    let started = Instant::now();
    loop {
        b.submit("#report-form").await;
        b.find("#report-table").await;
        if b.client
            .find(Locator::Css("#report-chart .uplot canvas"))
            .await
            .is_ok()
        {
            break;
        }
        assert!(started.elapsed() < PATIENCE, "no report rows were folded");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    b.text("#report-table", "EUR").await;
    b.shot("05-report").await;

    // Disable and enable a provider managed in the back office.
    b.open("#/providers").await;
    b.fill("main", "toggle_reason", "maintenance window").await;
    b.click("button[data-toggle=console-native]").await;
    b.text("span[data-provider=console-native]", "disabled")
        .await;
    let enabled: bool = gw
        .value(
            "SELECT enabled FROM providers WHERE code = 'console-native'",
            &[],
        )
        .await;
    assert!(!enabled);
    b.fill("main", "toggle_reason", "maintenance over").await;
    b.click("button[data-toggle=console-native]").await;
    b.text("span[data-provider=console-native]", "enabled")
        .await;
    b.shot("06-providers").await;

    // The rest of the screens load with the demo data.
    for (screen, shows) in [
        ("reconciliation", "#reconciliation-verdict"),
        ("withdrawals", "#withdrawal-queue"),
        ("audit", "#audit-log"),
        ("live", "#live-figures"),
    ] {
        b.open(&format!("#/{screen}")).await;
        b.find(shows).await;
        b.shot(&format!("07-{screen}")).await;
    }
    b.text("#live-figures", "callbacks/s").await;
    b.shot("08-live").await;
    // A narrow screen still shows the player search.
    b.client.set_window_size(420, 800).await.unwrap();
    b.open("#/players").await;
    b.text("#players", "player-1").await;
    b.shot("09-narrow").await;
    b.finish(|_| false).await;
    gw.finish().await;
}

#[tokio::test]
async fn support_staff_see_no_adjustments_and_the_api_refuses_them() {
    let gw = gateway().await;
    staff(&gw, "support-1", "support").await;
    let b = Browser::start(&gw, "support").await;
    b.login("support-1", "staff-password-long", &login_code().await)
        .await;
    let links: Vec<String> = {
        let mut names = Vec::new();
        for a in b.client.find_all(Locator::Css("#nav a")).await.unwrap() {
            names.push(a.attr("data-screen").await.unwrap().unwrap_or_default());
        }
        names
    };
    assert!(links.contains(&"players".to_string()), "{links:?}");
    assert!(!links.contains(&"adjustments".to_string()), "{links:?}");
    // Typed in by hand, the screen asks the API, which refuses.
    b.open("#/adjustments").await;
    b.text("#notice", "FORBIDDEN").await;
    b.shot("support-adjustments").await;
    b.open("#/players").await;
    b.text("#players", "player-1").await;
    // The refusal above is an answer (the browser logs the 403), not a script error.
    b.finish(|e| e.contains("403")).await;
    gw.finish().await;
}
