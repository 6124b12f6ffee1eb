//! Lanes over their whole life: what they run with, drain at shutdown, a restart with nothing
//! in memory, and two settlers (two gateway instances) on one database.

use std::sync::Arc;
use std::time::Duration;

use settlement::batch::{Options, Settler, Unavailable};
use settlement::fault::{Effect, Point, Trigger};

use crate::{fixture, ok, options, Fixture, OPENING_MINOR, PLAYERS};

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

/// Holds player `player`'s wallets in a transaction of its own (as another gateway's batch or
/// the REST module would) until the returned client commits.
async fn hold_wallet(f: &Fixture, player: u32) -> tokio_postgres::Client {
    let holder = f.db.connect().await;
    holder.batch_execute("BEGIN").await.unwrap();
    let held = holder
        .execute(
            "SELECT 1 FROM wallets w JOIN players p ON p.id = w.player_id
             WHERE p.external_id = $1 FOR UPDATE OF w",
            &[&format!("player-{player}")],
        )
        .await
        .unwrap();
    assert_eq!(held, 1);
    holder
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wallet_held_elsewhere_is_left_for_later_without_holding_up_the_lane() {
    let f = fixture().await;
    let settler = Arc::new(
        f.settler(Options {
            lanes: 1,
            busy_patience: Duration::from_secs(5),
            transaction_timeout: Duration::from_secs(20),
            ..options()
        })
        .await,
    );
    let holder = hold_wallet(&f, 1).await;
    let held = tokio::spawn({
        let (settler, bet) = (settler.clone(), f.bet(1, "held-1", 100));
        async move { settler.settle(bet).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Another player on the same (only) lane is settled meanwhile, more than once.
    for n in 0..3 {
        let other = tokio::time::timeout(
            Duration::from_secs(3),
            settler.settle(f.bet(2, &format!("free-{n}"), 100)),
        )
        .await
        .expect("the lane is not held up by player-1's wallet");
        assert_eq!(ok(&other), OPENING_MINOR - 100 * (n + 1));
    }
    assert!(!held.is_finished(), "applied while its wallet was held");
    assert_eq!(f.wallet(1).await, (OPENING_MINOR, 1));
    holder.batch_execute("COMMIT").await.unwrap();
    let held = held.await.unwrap();
    assert_eq!(ok(&held), OPENING_MINOR - 100);
    assert_eq!(f.wallet(1).await, (OPENING_MINOR - 100, 2));
    f.assert_no_drift().await;
    settler.drain().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wallet_held_past_the_patience_is_waited_for_in_order() {
    let f = fixture().await;
    let settler = Arc::new(
        f.settler(Options {
            lanes: 1,
            busy_patience: Duration::from_millis(100),
            transaction_timeout: Duration::from_secs(20),
            ..options()
        })
        .await,
    );
    let holder = hold_wallet(&f, 1).await;
    let started = std::time::Instant::now();
    // Two bets of the held player, queued in order: both wait, and are applied in that order.
    let first = tokio::spawn({
        let (settler, bet) = (settler.clone(), f.bet(1, "held-1", 100));
        async move { settler.settle(bet).await }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    let second = tokio::spawn({
        let (settler, bet) = (settler.clone(), f.bet(1, "held-2", 50));
        async move { settler.settle(bet).await }
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!first.is_finished() && !second.is_finished());
    holder.batch_execute("COMMIT").await.unwrap();
    assert_eq!(ok(&first.await.unwrap()), OPENING_MINOR - 100);
    assert_eq!(ok(&second.await.unwrap()), OPENING_MINOR - 150);
    assert!(started.elapsed() >= Duration::from_millis(400));
    f.assert_no_drift().await;
    settler.drain().await;
}

/// A lane lingers for more work (up to `batch_wait_max`) only once its previous batch held at
/// least `linger_from` commands: at low load a lone command is never held; under load the next
/// batch waits out the window to grow.
#[tokio::test]
async fn a_lane_lingers_only_after_a_batch_of_linger_from_commands() {
    let f = fixture().await;
    let window = Duration::from_millis(800);
    for (linger_from, lingers) in [(8, false), (1, true)] {
        let settler = f
            .settler(Options {
                batch_wait_max: window,
                linger_from,
                ..options()
            })
            .await;
        // A batch of one command: the next one lingers only if one is enough.
        ok(&settler
            .settle(f.bet(1, &format!("linger-{linger_from}-a"), 1))
            .await);
        let sent = std::time::Instant::now();
        ok(&settler
            .settle(f.bet(2, &format!("linger-{linger_from}-b"), 1))
            .await);
        let took = sent.elapsed();
        match lingers {
            true => assert!(took >= window * 9 / 10, "did not linger: {took:?}"),
            false => assert!(took < window / 2, "held a lone command: {took:?}"),
        }
        settler.drain().await;
    }
}
