//! The in-memory hot path of one callback: signature check, native decoding, and `apply` over
//! a batch (the dedup index has its own benchmark, in the gateway crate).

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion};
use dialects::native::{decode_command, NativeAction};
use dialects::signature::{sign_native, verify_native};
use dialects::Provider;
use settlement::command::Policy;

const BODY: &[u8] = br#"{"player_id":"player-4711","currency":"EUR","amount":"1.50","transaction_id":"tx-0123456789","round_id":"round-0123456789","game_id":"slot-1"}"#;

fn signature(c: &mut Criterion) {
    let secrets = vec![b"demo-secret".to_vec(), b"old-secret".to_vec()];
    let now = 1_800_000_000;
    let header = sign_native(b"demo-secret", now, BODY);
    c.bench_function("signature: verify native HMAC-SHA256 (150 B body)", |b| {
        b.iter(|| verify_native(Some(black_box(header.as_bytes())), BODY, &secrets, now, 300))
    });
    let previous = sign_native(b"old-secret", now, BODY);
    c.bench_function("signature: verify with the previous secret", |b| {
        b.iter(|| {
            verify_native(
                Some(black_box(previous.as_bytes())),
                BODY,
                &secrets,
                now,
                300,
            )
        })
    });
}

fn decoding(c: &mut Criterion) {
    let provider = Provider {
        id: settlement::command::ProviderId(1),
        code: "demo".into(),
        dialect: dialects::Kind::Native,
        enabled: true,
        secrets: vec![b"demo-secret".to_vec().into()],
        public_keys: Vec::new(),
        allow_ips: Vec::new(),
        signature_window_s: 300,
        currency: settlement::money::Currency::from_code("EUR").expect("EUR"),
        policy: Policy::default(),
    };
    let body = Bytes::from_static(BODY);
    c.bench_function("native: decode a bet into a command", |b| {
        b.iter(|| decode_command(&provider, NativeAction::Bet, black_box(&body)).expect("valid"))
    });
}

fn apply(c: &mut Criterion) {
    for len in [64usize, 512] {
        c.bench_function(&format!("apply: batch of {len} bets and wins"), |b| {
            b.iter_batched(
                || (benches::world(10_000, len), benches::batch(len, 10_000, 0)),
                // Hand the world back so its drop is not timed.
                |(mut world, commands)| {
                    let answers = settlement::apply::apply(&mut world, &commands);
                    (world, answers)
                },
                BatchSize::SmallInput,
            )
        });
    }
}

criterion_group!(hot_path, signature, decoding, apply);
criterion_main!(hot_path);
