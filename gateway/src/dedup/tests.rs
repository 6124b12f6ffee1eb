//! The dedup index alone: hits, coalescing, mismatches, bounds, cancellation.

use super::*;
use settlement::Code;

const P: ProviderId = ProviderId(1);

fn fp(n: u8) -> Fingerprint {
    Fingerprint([n; 16])
}

fn answer(id: i64) -> Answer {
    Answer {
        code: Code::Ok,
        currency: settlement::money::Currency::from_code("EUR"),
        balance_minor: 100,
        bonus_minor: 0,
        operator_tx_id: Some(id),
        duplicate: false,
        money_moved: false,
    }
}

fn claim<'a>(index: &'a Index, tx: &str, f: Fingerprint) -> Claim<'a> {
    match index.begin(P, tx, f) {
        Lookup::Settle(claim) => claim,
        _ => panic!("expected a claim for {tx}"),
    }
}

#[test]
fn a_committed_answer_is_replayed_as_a_duplicate() {
    let index = Index::new(1000, 1 << 20);
    claim(&index, "t1", fp(1)).finish(&Ok(answer(7)));
    match index.begin(P, "t1", fp(1)) {
        Lookup::Answered(a) => {
            assert_eq!(a.operator_tx_id, Some(7));
            assert!(a.duplicate);
        }
        _ => panic!("expected a hit"),
    }
    // Another provider's same id is another key.
    assert!(matches!(
        index.begin(ProviderId(2), "t1", fp(1)),
        Lookup::Settle(_)
    ));
    assert_eq!(index.counters.hits.load(Ordering::Relaxed), 1);
}

#[test]
fn a_different_payload_goes_to_the_database() {
    let index = Index::new(1000, 1 << 20);
    claim(&index, "t1", fp(1)).finish(&Ok(answer(7)));
    let Lookup::Settle(other) = index.begin(P, "t1", fp(2)) else {
        panic!("a mismatch must not be answered from memory");
    };
    // Its claim owns nothing: finishing it leaves the stored answer alone.
    other.finish(&Ok(answer(8)));
    assert!(
        matches!(index.begin(P, "t1", fp(1)), Lookup::Answered(a) if a.operator_tx_id == Some(7))
    );
}

#[test]
fn retryable_outcomes_and_unstored_answers_are_forgotten() {
    let index = Index::new(1000, 1 << 20);
    claim(&index, "t1", fp(1)).finish(&Err(Unavailable::Storage));
    let mut unknown_player = answer(0);
    unknown_player.operator_tx_id = None;
    unknown_player.code = Code::UnknownPlayer;
    claim(&index, "t2", fp(1)).finish(&Ok(unknown_player));
    assert!(index.is_empty());
}

#[tokio::test]
async fn concurrent_duplicates_wait_for_the_first() {
    let index = Index::new(1000, 1 << 20);
    let first = claim(&index, "t1", fp(1));
    let Lookup::Wait(rx) = index.begin(P, "t1", fp(1)) else {
        panic!("expected to coalesce");
    };
    let waiter = tokio::spawn(wait(rx));
    first.finish(&Ok(answer(9)));
    let got = waiter.await.unwrap().unwrap();
    assert_eq!(got.operator_tx_id, Some(9));
    assert!(got.duplicate);
    assert_eq!(index.counters.coalesced.load(Ordering::Relaxed), 1);
}

/// Twins share the one channel the first of them made, and hear an outcome that is not kept
/// (the key is forgotten) as well as a stored one.
#[tokio::test]
async fn every_twin_hears_an_outcome_that_is_not_kept() {
    let index = Index::new(1000, 1 << 20);
    let first = claim(&index, "t1", fp(1));
    let twins: Vec<_> = (0..2)
        .map(|_| match index.begin(P, "t1", fp(1)) {
            Lookup::Wait(rx) => tokio::spawn(wait(rx)),
            _ => panic!("expected to coalesce"),
        })
        .collect();
    first.finish(&Err(Unavailable::Storage));
    for twin in twins {
        assert_eq!(twin.await.unwrap(), Err(Unavailable::Storage));
    }
    assert!(index.is_empty());
    assert_eq!(index.counters.coalesced.load(Ordering::Relaxed), 2);
}

#[tokio::test]
async fn a_cancelled_claim_releases_its_waiters_and_the_key() {
    let index = Index::new(1000, 1 << 20);
    let first = claim(&index, "t1", fp(1));
    let Lookup::Wait(rx) = index.begin(P, "t1", fp(1)) else {
        panic!("expected to coalesce");
    };
    drop(first);
    assert_eq!(wait(rx).await, Err(Unavailable::Deadline));
    assert!(matches!(index.begin(P, "t1", fp(1)), Lookup::Settle(_)));
}

#[test]
fn entries_and_bytes_are_bounded_oldest_first() {
    let index = Index::new(SHARDS * 4, usize::MAX);
    for i in 0..10_000 {
        claim(&index, &format!("t{i}"), fp(1)).finish(&Ok(answer(i)));
    }
    assert!(index.len() <= SHARDS * 4, "{} entries", index.len());
    assert!(index.counters.evicted.load(Ordering::Relaxed) >= 10_000 - (SHARDS * 4) as u64);
    assert!(matches!(
        index.begin(P, "t9999", fp(1)),
        Lookup::Answered(_)
    ));

    let small = Index::new(usize::MAX, SHARDS * (ENTRY_OVERHEAD_BYTES + 10) * 2);
    for i in 0..10_000 {
        claim(&small, &format!("t{i:08}"), fp(1)).finish(&Ok(answer(i)));
    }
    assert!(small.len() <= SHARDS * 2, "{} entries", small.len());
}

/// Every key is found again after its shard's table has grown many times over (a table that
/// rehashed an entry differently from the lookup's hash would lose it here).
#[test]
fn keys_survive_the_tables_growing() {
    let index = Index::new(1_000_000, 1 << 30);
    for n in 0..20_000 {
        claim(&index, &format!("tx-{n}"), fp(1)).finish(&Ok(answer(n)));
    }
    assert_eq!(index.len(), 20_000);
    for n in 0..20_000 {
        match index.begin(P, &format!("tx-{n}"), fp(1)) {
            Lookup::Answered(a) => assert_eq!(a.operator_tx_id, Some(n)),
            _ => panic!("tx-{n} lost"),
        }
    }
}
