//! Every dialect's credential check and decoder on arbitrary bytes: never a panic, and what
//! decodes into a command carries ids that fit (1 to 128 bytes). The first byte picks the
//! dialect (low three bits) and the action (the rest), the next the split between query string
//! and body.
#![no_main]

use std::collections::HashMap;
use std::sync::OnceLock;

use bytes::Bytes;
use gateway::config::Config;
use gateway::provider::{
    evolution, hub88, native, pragmatic, softswiss, Decoded, Dialect, Inbound,
};
use gateway::registry::{Provider, Registry};
use libfuzzer_sys::fuzz_target;

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let text = format!(
            r#"
[[providers]]
code = "native"
dialect = "native"
secret = "fuzz-secret-0123456789"

[[providers]]
code = "evo"
dialect = "evolution"
allow_ips = ["127.0.0.1"]
secret = "fuzz-secret-0123456789"

[[providers]]
code = "pp"
dialect = "pragmatic"
allow_ips = ["127.0.0.1"]
secret = "fuzz-secret-0123456789"

[[providers]]
code = "ss"
dialect = "softswiss"
allow_ips = ["127.0.0.1"]
secret = "fuzz-secret-0123456789"

[[providers]]
code = "hub88"
dialect = "hub88"
allow_ips = ["127.0.0.1"]
public_key_file = "{}/../gateway/tests/keys/test-hub88-provider.pub.pem"
"#,
            env!("CARGO_MANIFEST_DIR")
        );
        let config = Config::from_toml(&text, &[]).expect("fuzz configuration");
        let ids: HashMap<String, i32> = ["native", "evo", "pp", "ss", "hub88"]
            .iter()
            .enumerate()
            .map(|(i, c)| (c.to_string(), i as i32 + 1))
            .collect();
        Registry::build(&config, &ids).expect("fuzz registry")
    })
}

fn run<D: Dialect>(dialect: &D, code: &str, paths: &[&str], pick: u8, query: &str, body: &Bytes) {
    let provider: &Provider = registry().get(code).expect("provider");
    let Some(action) = dialect.action(paths[pick as usize % paths.len()]) else {
        panic!("a known path names no action");
    };
    let mut headers = http::HeaderMap::new();
    headers.insert(
        "x-signature",
        http::HeaderValue::from_static("t=1700000000,v1=00"),
    );
    headers.insert("x-hub88-signature", http::HeaderValue::from_static("AAAA"));
    headers.insert("x-request-sign", http::HeaderValue::from_static("00ff"));
    let inbound = Inbound {
        action: &action,
        headers: &headers,
        query: Some(query),
        body,
        now_s: 1_700_000_000,
    };
    let _ = dialect.verify(provider, &inbound);
    let fits = |id: &str| (1..=128).contains(&id.len());
    match dialect.decode(provider, &inbound) {
        Ok(Decoded::Command(command, _)) => {
            assert!(fits(command.player.as_str()));
            if let Some(tx) = command.tx() {
                assert!(fits(tx.as_str()));
            }
        }
        Ok(Decoded::Unit(commands, _)) => {
            assert!(!commands.is_empty());
            for command in &commands {
                assert!(fits(command.player.as_str()));
            }
        }
        Ok(Decoded::UnsupportedCurrency { .. }) | Err(_) => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let [pick, split, rest @ ..] = data else {
        return;
    };
    let at = (*split as usize).min(rest.len());
    let query = String::from_utf8_lossy(&rest[..at]).into_owned();
    let body = Bytes::copy_from_slice(&rest[at..]);
    let action = pick >> 3;
    match (pick & 7) % 5 {
        0 => run(
            &native::Native,
            "native",
            &native_paths(),
            action,
            &query,
            &body,
        ),
        1 => {
            let paths: Vec<&str> = evolution::EvoAction::ALL
                .iter()
                .map(|a| a.as_str())
                .collect();
            run(&evolution::Evolution, "evo", &paths, action, &query, &body)
        }
        2 => {
            let paths: Vec<String> = pragmatic::PpMethod::ALL
                .iter()
                .map(|m| format!("{}.html", m.as_str()))
                .collect();
            let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
            run(&pragmatic::Pragmatic, "pp", &paths, action, &query, &body)
        }
        3 => run(
            &softswiss::SoftSwiss,
            "ss",
            &["play", "rollback"],
            action,
            &query,
            &body,
        ),
        _ => {
            let paths: Vec<&str> = hub88::Hub88Action::ALL.iter().map(|a| a.path()).collect();
            run(&hub88::Hub88, "hub88", &paths, action, &query, &body)
        }
    }
});

fn native_paths() -> Vec<&'static str> {
    gateway::provider::wire::ACTIONS.to_vec()
}
