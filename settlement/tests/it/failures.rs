//! Failure paths, each forced through the fault seam: what is answered, what is applied.

use std::sync::Arc;
use std::time::Duration;

use settlement::batch::{Options, Unavailable};
use settlement::fault::{Effect, Point, Trigger};

use crate::{behind_a_stalled_batch, fixture, ok, options, OPENING_MINOR};

#[tokio::test]
async fn a_failed_write_leaves_wallet_ledger_and_rounds_unchanged() {
    let f = fixture().await;
    let settler = f.settler(options()).await;
    let before = (f.wallet(1).await, f.rows().await);
    // Fails after the writes were sent, before COMMIT; fires for every attempt and split.
    settler
        .faults()
        .add(Point::Write, Effect::Fail, Trigger::Always, 100);
    let answer = settler.settle(f.bet(1, "w-1", 500)).await;
    assert_eq!(answer.unwrap_err(), Unavailable::Storage);
    assert_eq!((f.wallet(1).await, f.rows().await), before);
    // The next batch is whole again.
    settler.faults().clear();
    assert_eq!(
        ok(&settler.settle(f.bet(1, "w-1", 500)).await),
        OPENING_MINOR - 500
    );
    f.assert_no_drift().await;
    settler.drain().await;
}

#[tokio::test]
async fn a_poisoned_command_fails_alone_and_its_neighbours_are_answered() {
    let f = fixture().await;
    let settler = Arc::new(f.settler(options()).await);
    settler.faults().add(
        Point::Write,
        Effect::Fail,
        Trigger::Tx("poison".into()),
        100,
    );
    let players: Vec<u32> = (2..=9).collect();
    let batch = players
        .iter()
        .map(|&p| {
            f.bet(
                p,
                &if p == 5 {
                    "poison".into()
                } else {
                    format!("n-{p}")
                },
                100,
            )
        })
        .collect();
    let (first, answers) = behind_a_stalled_batch(&settler, f.bet(1, "first", 1), batch).await;
    ok(&first);
    for (player, answer) in players.into_iter().zip(answers) {
        if player == 5 {
            assert_eq!(answer.unwrap_err(), Unavailable::Storage);
            assert_eq!(f.wallet(player).await, (OPENING_MINOR, 1));
        } else {
            assert_eq!(ok(&answer), OPENING_MINOR - 100, "player {player}");
            assert_eq!(f.wallet(player).await, (OPENING_MINOR - 100, 2));
        }
    }
    // One stall, then the whole batch, its half and quarter and eighth holding the poison.
    assert!(
        settler.faults().fired() >= 4,
        "fired {}",
        settler.faults().fired()
    );
    f.assert_no_drift().await;
    settler.drain().await;
}

/// Issue 33 (3): a command whose data the database refuses (a data exception, not a failure of
/// the storage) was answered "retry" on every attempt, forever. Alone, it is final; its
/// neighbours are answered as usual.
#[tokio::test]
async fn a_command_whose_data_the_database_refuses_gets_a_final_answer() {
    let f = fixture().await;
    let settler = Arc::new(f.settler(options()).await);
    settler.faults().add(
        Point::Write,
        Effect::BadData,
        Trigger::Tx("bad-data".into()),
        100,
    );
    let batch = vec![f.bet(2, "bad-data", 100), f.bet(3, "fine", 100)];
    let (first, answers) = behind_a_stalled_batch(&settler, f.bet(1, "first", 1), batch).await;
    ok(&first);
    let mut answers = answers.into_iter();
    assert_eq!(
        answers.next().unwrap().unwrap_err(),
        Unavailable::Unstorable
    );
    assert_eq!(ok(&answers.next().unwrap()), OPENING_MINOR - 100);
    assert_eq!(f.wallet(2).await, (OPENING_MINOR, 1));
    // A retry fails the same way, and says so the same way.
    let again = settler.settle(f.bet(2, "bad-data", 100)).await;
    assert_eq!(again.unwrap_err(), Unavailable::Unstorable);
    // A storage failure of a command alone stays retryable.
    settler.faults().clear();
    settler
        .faults()
        .add(Point::Write, Effect::Fail, Trigger::Always, 1);
    let failed = settler.settle(f.bet(2, "other", 100)).await;
    assert_eq!(failed.unwrap_err(), Unavailable::Storage);
    f.assert_no_drift().await;
    settler.drain().await;
}

#[tokio::test]
async fn conflicts_and_deadlocks_retry_the_batch_whole() {
    let f = fixture().await;
    let settler = f.settler(options()).await;
    settler
        .faults()
        .add(Point::Prefetch, Effect::Deadlock, Trigger::Always, 1);
    settler
        .faults()
        .add(Point::Write, Effect::Conflict, Trigger::Always, 1);
    assert_eq!(
        ok(&settler.settle(f.bet(1, "c-1", 700)).await),
        OPENING_MINOR - 700
    );
    assert_eq!(settler.faults().fired(), 2);
    assert_eq!(f.wallet(1).await, (OPENING_MINOR - 700, 2));
    // Conflicts that never stop are retried a bounded number of times, then refused.
    settler
        .faults()
        .add(Point::Write, Effect::Conflict, Trigger::Always, 1_000);
    assert_eq!(
        settler.settle(f.bet(1, "c-2", 1)).await.unwrap_err(),
        Unavailable::Storage
    );
    assert_eq!(f.wallet(1).await, (OPENING_MINOR - 700, 2));
    f.assert_no_drift().await;
    settler.drain().await;
}

#[tokio::test]
async fn a_lost_connection_fails_the_batch_whole_and_the_lane_reconnects() {
    let f = fixture().await;
    let settler = Arc::new(f.settler(options()).await);
    settler.faults().add(
        Point::Write,
        Effect::Disconnect,
        Trigger::Tx("n-2".into()),
        100,
    );
    let batch = (2..=5u32)
        .map(|p| f.bet(p, &format!("n-{p}"), 100))
        .collect();
    let (first, answers) = behind_a_stalled_batch(&settler, f.bet(1, "first", 1), batch).await;
    ok(&first);
    for answer in answers {
        assert_eq!(answer.unwrap_err(), Unavailable::Storage);
    }
    // The storage failure was not taken for a poisoned command: no split, one firing.
    assert_eq!(settler.faults().fired(), 2);
    for player in 2..=5u32 {
        assert_eq!(f.wallet(player).await, (OPENING_MINOR, 1));
    }
    // A new connection; the provider's retry settles.
    settler.faults().clear();
    assert_eq!(
        ok(&settler.settle(f.bet(2, "n-2", 100)).await),
        OPENING_MINOR - 100
    );
    f.assert_no_drift().await;
    settler.drain().await;
}

#[tokio::test]
async fn an_answer_lost_after_commit_is_replayed_to_the_retry() {
    let f = fixture().await;
    let settler = f.settler(options()).await;
    settler
        .faults()
        .add(Point::AfterCommit, Effect::Disconnect, Trigger::Always, 1);
    // Committed, but the lane never heard: the caller is told to retry.
    assert_eq!(
        settler.settle(f.bet(1, "lost", 250)).await.unwrap_err(),
        Unavailable::Storage
    );
    assert_eq!(f.wallet(1).await, (OPENING_MINOR - 250, 2));
    let retry = settler.settle(f.bet(1, "lost", 250)).await.unwrap();
    assert!(retry.duplicate, "{retry:?}");
    assert_eq!(retry.balance_minor, OPENING_MINOR - 250);
    assert_eq!(f.wallet(1).await, (OPENING_MINOR - 250, 2));
    f.assert_no_drift().await;
    settler.drain().await;
}

#[tokio::test]
async fn a_caller_answered_at_its_deadline_is_not_applied_by_a_later_retry() {
    let f = fixture().await;
    let settler = f
        .settler(Options {
            deadline: Duration::from_millis(300),
            ..options()
        })
        .await;
    // Each attempt stalls 200 ms; the first two conflict, so the second ends past the
    // deadline. A third attempt would commit: it must never be made.
    settler
        .faults()
        .add(Point::Prefetch, Effect::StallMs(200), Trigger::Always, 3);
    settler
        .faults()
        .add(Point::Write, Effect::Conflict, Trigger::Always, 2);
    assert_eq!(
        settler.settle(f.bet(1, "late", 100)).await.unwrap_err(),
        Unavailable::Deadline
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    // At most two attempts (stall + conflict each), then dropped.
    assert!(
        settler.faults().fired() <= 4,
        "fired {}",
        settler.faults().fired()
    );
    assert_eq!(f.wallet(1).await, (OPENING_MINOR, 1));
    // The provider's own retry is safe to apply.
    settler.faults().clear();
    assert_eq!(
        ok(&settler.settle(f.bet(1, "late", 100)).await),
        OPENING_MINOR - 100
    );
    f.assert_no_drift().await;
    settler.drain().await;
}

#[tokio::test]
async fn a_command_queued_past_its_deadline_is_answered_without_being_applied() {
    let f = fixture().await;
    let settler = Arc::new(
        f.settler(Options {
            deadline: Duration::from_millis(200),
            ..options()
        })
        .await,
    );
    settler
        .faults()
        .add(Point::Prefetch, Effect::StallMs(500), Trigger::Always, 1);
    let first = tokio::spawn({
        let (settler, bet) = (settler.clone(), f.bet(1, "slow", 1));
        async move { settler.settle(bet).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let queued = settler.settle(f.bet(2, "queued", 1)).await;
    assert_eq!(queued.unwrap_err(), Unavailable::Deadline);
    // The stalled batch's caller gave up too, but that batch was already running: it may
    // commit, and then its retry gets the stored answer.
    assert_eq!(first.await.unwrap().unwrap_err(), Unavailable::Deadline);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(f.wallet(2).await, (OPENING_MINOR, 1));
    let retry = settler.settle(f.bet(1, "slow", 1)).await.unwrap();
    assert_eq!(retry.balance_minor, OPENING_MINOR - 1);
    f.assert_no_drift().await;
    settler.drain().await;
}

#[tokio::test]
async fn a_full_queue_answers_overloaded_at_once() {
    let f = fixture().await;
    let settler = Arc::new(
        f.settler(Options {
            queue_len_max: 1,
            ..options()
        })
        .await,
    );
    settler
        .faults()
        .add(Point::Prefetch, Effect::StallMs(500), Trigger::Always, 1);
    let running = tokio::spawn({
        let (settler, bet) = (settler.clone(), f.bet(1, "running", 1));
        async move { settler.settle(bet).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let queued = tokio::spawn({
        let (settler, bet) = (settler.clone(), f.bet(2, "queued", 1));
        async move { settler.settle(bet).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = std::time::Instant::now();
    let refused = settler.settle(f.bet(3, "refused", 1)).await;
    assert_eq!(refused.unwrap_err(), Unavailable::Overloaded);
    assert!(started.elapsed() < Duration::from_millis(100));
    ok(&running.await.unwrap());
    ok(&queued.await.unwrap());
    assert_eq!(f.wallet(3).await, (OPENING_MINOR, 1));
    f.assert_no_drift().await;
    settler.drain().await;
}
