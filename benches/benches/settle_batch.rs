//! One settlement batch end to end against a real PostgreSQL (a throwaway cluster): prefetch,
//! apply, bulk write, commit — what one lane does per batch.

use criterion::{criterion_group, criterion_main, Criterion};
use settlement::batch::{Options, Settler};

fn settle_batch(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let (settler, players) = runtime.block_on(async {
        let db = settlement::test_util::fresh_database().await;
        let client = db.connect().await;
        settlement::store::upsert_provider(&client, "bench", "native", true)
            .await
            .expect("provider");
        let players = 10_000;
        settlement::store::seed_demo_players(&client, "player-", players, "EUR", 10_000_000)
            .await
            .expect("players");
        let options = Options {
            lanes: 1,
            batch_len_max: 4032,
            batch_wait_max: std::time::Duration::ZERO,
            linger_from: 1,
            queue_len_max: 100_000,
            deadline: std::time::Duration::from_secs(30),
            busy_patience: std::time::Duration::from_millis(50),
            transaction_timeout: std::time::Duration::from_secs(20),
        };
        (
            Settler::start(db.config.clone(), options)
                .await
                .expect("settler"),
            players as usize,
        )
    });
    let settler = std::sync::Arc::new(settler);
    let mut run = 0u64;
    for len in [1usize, 64, 512] {
        c.bench_function(
            &format!("settle: {len} commands through one lane, committed"),
            |b| {
                b.iter(|| {
                    run += 1;
                    let commands = benches::batch(len, players, run);
                    runtime.block_on(async {
                        // Queued together: the lane commits them in as few batches as it can.
                        let settles: Vec<_> = commands
                            .into_iter()
                            .map(|command| {
                                let settler = settler.clone();
                                tokio::spawn(async move { settler.settle(command).await })
                            })
                            .collect();
                        for s in settles {
                            s.await.expect("task").expect("settled");
                        }
                    })
                })
            },
        );
    }
    runtime.block_on(settler.drain());
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = settle_batch
}
criterion_main!(benches);
