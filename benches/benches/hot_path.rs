//! The in-memory hot path of one callback: signature check, native decoding, the dedup index
//! (alone and contended), and `apply` over a batch.

use std::sync::Arc;

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion};
use gateway::dedup::{Index, Lookup};
use gateway::provider::native::{decode_command, NativeAction};
use gateway::registry::Provider;
use gateway::signature::{sign_native, verify_native};
use settlement::command::{Fingerprint, Policy};

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
        dialect: gateway::config::Dialect::Native,
        enabled: true,
        secrets: vec![b"demo-secret".to_vec()],
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

fn dedup(c: &mut Criterion) {
    let index = Index::new(1_000_000, 256 << 20);
    let answer = settlement::Answer {
        code: settlement::Code::Ok,
        currency: settlement::money::Currency::from_code("EUR"),
        balance_minor: 1,
        bonus_minor: 0,
        operator_tx_id: Some(1),
        duplicate: false,
        money_moved: false,
    };
    let mut n = 0u64;
    c.bench_function("dedup: miss, claim, finish (new transaction)", |b| {
        b.iter(|| {
            n += 1;
            let tx = format!("tx-{n}");
            if let Lookup::Settle(claim) = index.begin(benches::PROVIDER, &tx, Fingerprint([1; 16]))
            {
                claim.finish(&Ok(answer.clone()));
            }
        })
    });
    c.bench_function("dedup: hit (retry answered from memory)", |b| {
        b.iter(|| {
            matches!(
                index.begin(benches::PROVIDER, black_box("tx-1"), Fingerprint([1; 16])),
                Lookup::Answered(_)
            )
        })
    });
    // Two threads hammering the same 64 keys: shard locks under contention.
    let shared = Arc::new(Index::new(1_000_000, 256 << 20));
    for k in 0..64 {
        if let Lookup::Settle(claim) =
            shared.begin(benches::PROVIDER, &format!("hot-{k}"), Fingerprint([1; 16]))
        {
            claim.finish(&Ok(answer.clone()));
        }
    }
    c.bench_function("dedup: hit, contended by a second thread", |b| {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let other = {
            let (shared, stop) = (shared.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut k = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = shared.begin(
                        benches::PROVIDER,
                        &format!("hot-{}", k % 64),
                        Fingerprint([1; 16]),
                    );
                    k += 1;
                }
            })
        };
        let mut k = 0;
        b.iter(|| {
            k += 1;
            matches!(
                shared.begin(
                    benches::PROVIDER,
                    &format!("hot-{}", k % 64),
                    Fingerprint([1; 16])
                ),
                Lookup::Answered(_)
            )
        });
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        other.join().expect("contender thread");
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

criterion_group!(hot_path, signature, decoding, dedup, apply);
criterion_main!(hot_path);
