//! The operator's files in `deploy/`: the Grafana dashboard is a well-formed dashboard JSON
//! model whose every query names metrics the gateway exports after a short load, the alert
//! rules name only exported metrics, and promtool accepts the rules, their unit tests and the
//! scrape configuration.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use gateway::test_util::{start_gateway, REST_ON};
use http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::money_path::bet;

pub fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(file)
}

/// Every `wallet_...` name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("wallet_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

/// Checks the parts of Grafana's dashboard JSON model an import relies on; answers every
/// query's expression.
fn checked_dashboard(dashboard: &Value) -> Vec<String> {
    for key in ["title", "uid"] {
        assert!(
            dashboard[key].as_str().is_some_and(|s| !s.is_empty()),
            "{key}"
        );
    }
    assert!(dashboard["schemaVersion"].as_u64().unwrap() >= 30);
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    assert!(variables
        .iter()
        .any(|v| v["name"] == "datasource" && v["type"] == "datasource"));
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 10);
    let mut ids = BTreeSet::new();
    let mut exprs = Vec::new();
    for panel in panels {
        let title = panel["title"].as_str().unwrap();
        assert!(
            ids.insert(panel["id"].as_u64().unwrap()),
            "duplicate id: {title}"
        );
        let grid = &panel["gridPos"];
        let (x, w) = (grid["x"].as_u64().unwrap(), grid["w"].as_u64().unwrap());
        assert!(
            grid["h"].as_u64().unwrap() > 0 && grid["y"].is_u64(),
            "{title}"
        );
        assert!(w > 0 && x + w <= 24, "{title}: outside the 24-column grid");
        match panel["type"].as_str().unwrap() {
            "row" => continue,
            "timeseries" | "stat" | "gauge" | "bargauge" | "table" => {}
            other => panic!("{title}: panel type {other}"),
        }
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title}: no query");
        for target in targets {
            assert!(target["refId"].is_string(), "{title}");
            let expr = target["expr"].as_str().unwrap();
            assert!(!metric_names(expr).is_empty(), "{title}: {expr}");
            exprs.push(expr.to_string());
        }
    }
    exprs
}

/// Sample names in a Prometheus text exposition.
fn exported(metrics: &str) -> BTreeSet<String> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn the_dashboard_and_the_alerts_name_only_metrics_the_gateway_exports() {
    let gw = start_gateway(REST_ON).await;
    // A short load touching every family: a bet and its retry (dedup), a bad signature, a
    // REST request, the trace writer.
    let body = bet("player-1", "d-1", "1.00", "r-1");
    for _ in 0..2 {
        assert_eq!(gw.demo("bet", body.clone()).await.status, StatusCode::OK);
    }
    let forged = gw
        .native("demo", "not-the-secret-of-demo", "bet", body.clone())
        .await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
    let a = gw
        .api(
            Method::POST,
            "/api/auth/login",
            None,
            Some(json!({"username": "nobody", "password": "wrong-password-123"})),
        )
        .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    gw.flush_trace().await;
    let metrics = String::from_utf8(gw.get("/metrics").await.body.to_vec()).unwrap();
    let exported = exported(&metrics);

    let text = std::fs::read_to_string(deploy("grafana/wallet-gateway.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&text).unwrap();
    let exprs = checked_dashboard(&dashboard);
    let mut referenced: BTreeSet<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();
    let rules = std::fs::read_to_string(deploy("prometheus/alerts.yml")).unwrap();
    referenced.extend(metric_names(&rules));
    assert!(referenced.len() >= 20, "{referenced:?}");
    let missing: Vec<_> = referenced.difference(&exported).collect();
    assert!(
        missing.is_empty(),
        "referenced but not exported: {missing:?}"
    );
    // And the other way: every metric family the gateway exports has a panel.
    let families: BTreeSet<String> = exported
        .iter()
        .map(|n| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| n.strip_suffix(s))
                .unwrap_or(n)
                .to_string()
        })
        .filter(|n| n.starts_with("wallet_"))
        .collect();
    let shown: BTreeSet<String> = exprs
        .iter()
        .flat_map(|e| metric_names(e))
        .map(|n| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| n.strip_suffix(s))
                .unwrap_or(&n)
                .to_string()
        })
        .collect();
    let unshown: Vec<_> = families.difference(&shown).collect();
    assert!(unshown.is_empty(), "exported but on no panel: {unshown:?}");
    gw.finish().await;
}

fn promtool() -> PathBuf {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("promtool"))
        .find(|p| p.exists());
    found.unwrap_or_else(|| {
        panic!(
            "promtool not found: `cargo xtask test` installs it (Debian's `prometheus` \
             package), or install it yourself"
        )
    })
}

fn promtool_ok(args: &[&str]) {
    let out = Command::new(promtool())
        .args(args)
        .current_dir(deploy("prometheus"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool {args:?}:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_alert_rules_and_the_scrape_configuration_pass_promtool() {
    promtool_ok(&["check", "rules", "alerts.yml"]);
    promtool_ok(&["test", "rules", "alerts.test.yml"]);
    promtool_ok(&["check", "config", "prometheus.yml"]);
}
