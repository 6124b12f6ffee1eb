//! Every dialect's credential check and decoder on arbitrary bytes: never a panic, and what
//! decodes into a command carries ids that fit (1 to 128 bytes). The first byte picks the
//! dialect (low three bits) and the action (the rest), the next the split between query string
//! and body.
#![no_main]

use std::sync::OnceLock;

use bytes::Bytes;
use dialects::{evolution, hub88, native, pragmatic, softswiss, Decoded, Dialect, Inbound};
use dialects::{Kind, Provider};
use libfuzzer_sys::fuzz_target;
use rsa::pkcs8::DecodePublicKey;
use settlement::command::{Policy, ProviderId};
use settlement::money::Currency;

/// The fuzzed providers, by code: one per dialect (the Hub88-style one with the test key).
fn providers() -> &'static [Provider] {
    static PROVIDERS: OnceLock<Vec<Provider>> = OnceLock::new();
    PROVIDERS.get_or_init(|| {
        let pem = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../gateway/tests/keys/test-hub88-provider.pub.pem"
        ))
        .expect("test public key");
        let key = rsa::RsaPublicKey::from_public_key_pem(&pem).expect("PEM public key");
        [
            ("native", Kind::Native),
            ("evo", Kind::Evolution),
            ("pp", Kind::Pragmatic),
            ("ss", Kind::Softswiss),
            ("hub88", Kind::Hub88),
        ]
        .into_iter()
        .enumerate()
        .map(|(i, (code, dialect))| Provider {
            id: ProviderId(i as i32 + 1),
            code: code.to_string(),
            dialect,
            enabled: true,
            secrets: vec![b"fuzz-secret-0123456789".to_vec().into()],
            public_keys: match dialect {
                Kind::Hub88 => vec![rsa::pkcs1v15::VerifyingKey::new(key.clone())],
                _ => Vec::new(),
            },
            allow_ips: vec!["127.0.0.1".parse().expect("address")],
            signature_window_s: 300,
            currency: Currency::from_code("EUR").expect("EUR"),
            policy: Policy::default(),
        })
        .collect()
    })
}

fn run<D: Dialect>(dialect: &D, code: &str, paths: &[&str], pick: u8, query: &str, body: &Bytes) {
    let provider = providers()
        .iter()
        .find(|p| p.code == code)
        .expect("provider");
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
    dialects::wire::ACTIONS.to_vec()
}
