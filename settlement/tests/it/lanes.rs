//! Lanes over their whole life: what they run with, drain at shutdown, a restart with nothing
//! in memory, and two settlers (two gateway instances) on one database.

use std::sync::Arc;
use std::time::Duration;

use settlement::batch::{Options, Settler, Unavailable};
use settlement::fault::{Effect, Point, Trigger};

use crate::{fixture, ok, options, OPENING_MINOR, PLAYERS};

#[tokio::test]
async fn lanes_commit_synchronously_whatever_the_role_and_database_say() {
    let f = fixture().await;
    let admin = f.db.connect().await;
    let role = format!("lax_{}", f.db.name);
    admin
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN;
             GRANT ALL ON ALL TABLES IN SCHEMA public TO {role};
             GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role};
             ALTER ROLE {role} SET synchronous_commit = off;
             ALTER DATABASE {db} SET synchronous_commit = off;",
            db = f.db.name
        ))
        .await
        .expect("lax role");
    let mut config = f.db.config.clone();
    config.user(&role);
    // The role's own sessions really run without waiting for the WAL flush...
    let (plain, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    let row = plain
        .query_one("SHOW synchronous_commit", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "off");
    // ...but the lanes set it back for themselves, and still settle.
    let settler = Settler::start(
        config,
        Options {
            lanes: 2,
            ..options()
        },
    )
    .await
    .expect("settler");
    for value in settler.show("synchronous_commit").await {
        assert_eq!(value.as_deref(), Ok("on"));
    }
    assert_eq!(
        ok(&settler.settle(f.bet(1, "s-1", 10)).await),
        OPENING_MINOR - 10
    );
    settler.drain().await;
}

#[tokio::test]
async fn drain_settles_everything_queued_then_refuses() {
    let f = fixture().await;
    let settler = Arc::new(
        f.settler(Options {
            lanes: 2,
            ..options()
        })
        .await,
    );
    settler
        .faults()
        .add(Point::Prefetch, Effect::StallMs(300), Trigger::Always, 2);
    let mut tasks = Vec::new();
    for i in 0..60u32 {
        let bet = f.bet(1 + i % PLAYERS, &format!("d-{i}"), 10);
        let settler = settler.clone();
        tasks.push(tokio::spawn(async move { settler.settle(bet).await }));
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    settler.drain().await;
    for task in tasks {
        ok(&task.await.unwrap());
    }
    let (ledger, _) = f.rows().await;
    assert_eq!(ledger, i64::from(PLAYERS) + 60);
    assert_eq!(
        settler.settle(f.bet(1, "after", 1)).await.unwrap_err(),
        Unavailable::ShuttingDown
    );
    f.assert_no_drift().await;
}

#[tokio::test]
async fn a_retry_after_a_restart_gets_the_original_answer_from_the_database() {
    let f = fixture().await;
    let first = f.settler(options()).await;
    let original = first.settle(f.bet(1, "r-1", 300)).await.unwrap();
    let win = first.settle(f.win(1, "r-1w", 50, "r-1")).await.unwrap();
    first.drain().await;
    // A new settler (a restarted gateway) with nothing cached.
    let second = f.settler(options()).await;
    let replay = second.settle(f.bet(1, "r-1", 300)).await.unwrap();
    assert!(replay.duplicate);
    assert_eq!(
        (replay.code, replay.balance_minor, replay.operator_tx_id),
        (
            original.code,
            original.balance_minor,
            original.operator_tx_id
        )
    );
    let replay = second.settle(f.win(1, "r-1w", 50, "r-1")).await.unwrap();
    assert!(replay.duplicate);
    assert_eq!(replay.balance_minor, win.balance_minor);
    assert_eq!(f.wallet(1).await, (OPENING_MINOR - 300 + 50, 3));
    f.assert_no_drift().await;
    second.drain().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_settlers_on_one_database_interleave_without_drift() {
    let f = fixture().await;
    let a = Arc::new(
        f.settler(Options {
            lanes: 2,
            ..options()
        })
        .await,
    );
    let b = Arc::new(
        f.settler(Options {
            lanes: 2,
            ..options()
        })
        .await,
    );
    let rounds = 30u32;
    let mut tasks = Vec::new();
    for player in 1..=PLAYERS {
        // Each player's round: a bet through one instance, its win through the other, and the
        // same calls again through the opposite instances at the same time (retries that
        // land on another gateway).
        let (a, b) = (a.clone(), b.clone());
        let commands: Vec<_> = (0..rounds)
            .map(|r| {
                let bet = format!("p{player}-{r}");
                (
                    f.bet(player, &bet, 7),
                    f.win(player, &format!("{bet}-w"), 3, &bet),
                )
            })
            .collect();
        tasks.push(tokio::spawn(async move {
            for (r, (bet, win)) in commands.into_iter().enumerate() {
                let (first, second) = if r % 2 == 0 { (&a, &b) } else { (&b, &a) };
                let (x, y) = tokio::join!(first.settle(bet.clone()), second.settle(bet));
                // Both OK: one applied, the other the stored answer replayed.
                assert_eq!(ok(&x), ok(&y));
                let (x, y) = tokio::join!(second.settle(win.clone()), first.settle(win));
                ok(&x);
                ok(&y);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    for player in 1..=PLAYERS {
        let (balance, rows) = f.wallet(player).await;
        assert_eq!(
            balance,
            OPENING_MINOR - i64::from(rounds) * (7 - 3),
            "player {player}"
        );
        assert_eq!(rows, 1 + 2 * i64::from(rounds), "player {player}");
    }
    f.assert_no_drift().await;
    a.drain().await;
    b.drain().await;
}
