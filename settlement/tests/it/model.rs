//! The reference-model property test through SQL: the same random callback sequences and
//! random provider policies as the pure test of `apply`, settled by a real lane in random
//! batch cuts, so each batch's prefetch rebuilds the world from what earlier batches committed.

use proptest::test_runner::{Config, RngSeed, TestRunner};
use settlement::batch::Settler;
use settlement::command::{Command, ProviderId};
use settlement::test_util::fresh_database;
use settlement::test_util::model::{op, policy, resolve, seed, to_command, Model};

use crate::options;

const OPENING: i64 = 1_000;

#[test]
fn settle_through_sql_agrees_with_the_reference_model() {
    let seed = seed("SETTLE_SEED", "settle model");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut runner = TestRunner::new(Config {
        cases: 24,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (
        proptest::collection::vec(op(), 1..60),
        proptest::collection::vec(1usize..10, 1..6),
        policy(),
    );
    let result = runner.run(&strategy, |(ops, cuts, policy)| {
        let ops = resolve(&ops);
        let mut model = Model::new(OPENING, policy);
        let expected: Vec<_> = ops.iter().map(|op| model.step(op)).collect();
        let (answers, balances) = runtime.block_on(async {
            let db = fresh_database().await;
            let client = db.connect().await;
            let provider = settlement::store::upsert_provider(&client, "m", "native", true)
                .await
                .unwrap();
            // Players p0, p1, p2 as the model names them; p3 does not exist.
            client
                .batch_execute(&format!(
                    "INSERT INTO players (external_id) VALUES ('p0'), ('p1'), ('p2');
                     INSERT INTO wallets (player_id, currency, balance)
                         SELECT id, 'EUR', {OPENING} FROM players;
                     INSERT INTO transactions (kind, outcome, player_id, currency, amount,
                         real_delta, balance_before, balance_after, bonus_before, bonus_after)
                         SELECT 'deposit', 'OK', id, 'EUR', {OPENING}, {OPENING}, 0, {OPENING}, 0, 0
                         FROM players;"
                ))
                .await
                .unwrap();
            let commands: Vec<Command> = ops
                .iter()
                .map(|op| to_command(op, ProviderId(provider), policy))
                .collect();
            let settler = Settler::start(db.config.clone(), options()).await.unwrap();
            // Each cut is one batch: queued together and committed before the next.
            let mut answers = Vec::new();
            let mut rest = &commands[..];
            let mut cut = cuts.iter().cycle();
            while !rest.is_empty() {
                let n = (*cut.next().unwrap()).min(rest.len());
                let batch: Vec<_> = rest[..n]
                    .iter()
                    .map(|c| settler.settle(c.clone()))
                    .collect();
                for answer in futures_join_in_order(batch).await {
                    answers.push(answer.expect("settled"));
                }
                rest = &rest[n..];
            }
            settler.drain().await;
            let rows = client
                .query(
                    "SELECT p.external_id, w.balance FROM players p
                     JOIN wallets w ON w.player_id = p.id ORDER BY p.external_id",
                    &[],
                )
                .await
                .unwrap();
            let balances: Vec<(String, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
            let mismatches = settlement::store::ledger_mismatches(&client).await.unwrap();
            assert!(mismatches.is_empty(), "{mismatches:?}");
            (answers, balances)
        });
        for (i, (answer, want)) in answers.iter().zip(&expected).enumerate() {
            let got = (answer.code, answer.balance_minor, answer.duplicate);
            proptest::prop_assert_eq!(got, *want, "command {} {:?} ({:?})", i, ops[i], policy);
        }
        for (name, balance) in balances {
            let p: u8 = name[1..].parse().unwrap();
            proptest::prop_assert_eq!(balance, model.balance[&p], "{}", name);
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("seed {seed}: {e}");
    }
}

/// Polls every future from the start (so all are queued before the lane takes its batch) and
/// returns their outputs in order.
async fn futures_join_in_order<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => *output = Some(value),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().map(|o| o.expect("ready")).collect()
}
