//! The dedup index on the callback's hot path: a new transaction (miss, claim, finish), a
//! retry answered from memory, and the same with a second thread contending for the shards.

use std::sync::Arc;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use gateway::dedup::{Index, Lookup};
use settlement::command::{Fingerprint, ProviderId};

const PROVIDER: ProviderId = ProviderId(1);

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
            if let Lookup::Settle(claim) = index.begin(PROVIDER, &tx, Fingerprint([1; 16])) {
                claim.finish(&Ok(answer.clone()));
            }
        })
    });
    // Claimed and finished just before, so the run above has not evicted it.
    if let Lookup::Settle(claim) = index.begin(PROVIDER, "retried", Fingerprint([1; 16])) {
        claim.finish(&Ok(answer.clone()));
    }
    assert!(matches!(
        index.begin(PROVIDER, "retried", Fingerprint([1; 16])),
        Lookup::Answered(_)
    ));
    c.bench_function("dedup: hit (retry answered from memory)", |b| {
        b.iter(|| {
            matches!(
                index.begin(PROVIDER, black_box("retried"), Fingerprint([1; 16])),
                Lookup::Answered(_)
            )
        })
    });
    // Two threads hammering the same 64 keys: shard locks under contention.
    let shared = Arc::new(Index::new(1_000_000, 256 << 20));
    for k in 0..64 {
        if let Lookup::Settle(claim) =
            shared.begin(PROVIDER, &format!("hot-{k}"), Fingerprint([1; 16]))
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
                    let _ =
                        shared.begin(PROVIDER, &format!("hot-{}", k % 64), Fingerprint([1; 16]));
                    k += 1;
                }
            })
        };
        let mut k = 0;
        b.iter(|| {
            k += 1;
            matches!(
                shared.begin(PROVIDER, &format!("hot-{}", k % 64), Fingerprint([1; 16])),
                Lookup::Answered(_)
            )
        });
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        other.join().expect("contender thread");
    });
}

criterion_group!(dedup_index, dedup);
criterion_main!(dedup_index);
