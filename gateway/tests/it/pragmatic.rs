//! The Pragmatic-style dialect over real HTTP and PostgreSQL: the `hash` over every received
//! parameter, numeric codes (final and retry) always with HTTP 200, `reference` as the
//! idempotency key, refunds before bets, results before bets, and the calls that move no money.

use gateway::test_util::{TestGateway, PP_SECRET};
use http::StatusCode;
use serde_json::Value;

use crate::money_path::{gateway, START};

/// The JSON answer of a call that must be HTTP 200 (Pragmatic always is).
fn body(answer: &gateway::test_util::Answer) -> Value {
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    answer.json()
}

fn money<'a>(
    player: &'a str,
    reference: &'a str,
    amount: &'a str,
    round: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("userId", player),
        ("gameId", "vs20"),
        ("roundId", round),
        ("amount", amount),
        ("reference", reference),
        ("providerId", "PragmaticPlay"),
        ("timestamp", "1700000000000"),
    ]
}

async fn call(gw: &TestGateway, method: &str, params: &[(&str, &str)]) -> Value {
    body(&gw.pp(method, params).await)
}

#[tokio::test]
async fn the_hash_covers_every_received_parameter_in_any_order() {
    let gw = gateway().await;
    let mut params = money("player-1", "b1", "1.50", "r1");
    // A parameter the gateway does not know is still signed over.
    params.push(("roundDetails", "spin=1&lines=20"));
    let a = call(&gw, "bet", &params).await;
    assert_eq!(a["error"], 0, "{a}");
    assert_eq!(a["description"], "Success");
    assert_eq!(a["currency"], "EUR");
    // Exact decimals, as JSON numbers.
    let text = String::from_utf8(
        gw.pp("balance", &[("userId", "player-1")])
            .await
            .body
            .to_vec(),
    )
    .unwrap();
    assert!(text.contains(r#""cash":998.50"#), "{text}");
    assert!(text.contains(r#""bonus":0.00"#), "{text}");

    // The same parameters in another order verify.
    let mut reordered = money("player-1", "b2", "1.00", "r1");
    reordered.reverse();
    assert_eq!(call(&gw, "bet", &reordered).await["error"], 0);

    // Refused, always with HTTP 200 and code 5, moving nothing: a wrong secret, a tampered or
    // added parameter, no hash, two hashes.
    let sign = |params: &[(&str, &str)], secret: &str| {
        gateway::provider::pragmatic::sign(params, secret.as_bytes())
    };
    let form = |params: &[(&str, &str)], hash: &str| {
        let mut f = form_urlencoded::Serializer::new(String::new());
        f.extend_pairs(params.iter().copied());
        f.append_pair("hash", hash);
        f.finish()
    };
    let p3 = money("player-1", "b3", "1.00", "r1");
    let good = sign(&p3, PP_SECRET);
    let mut tampered = p3.clone();
    tampered[3] = ("amount", "0.01");
    let mut added = p3.clone();
    added.push(("bonusCode", "x"));
    let bodies = [
        form(&p3, &sign(&p3, "not-the-secret-at-all")),
        form(&tampered, &good),
        form(&added, &good),
        {
            let mut f = form_urlencoded::Serializer::new(String::new());
            f.extend_pairs(p3.iter().copied());
            f.finish()
        },
        format!("{}&hash={good}", form(&p3, &good)),
    ];
    for sent in bodies {
        let a = body(&gw.pp_raw("bet", sent.clone()).await);
        assert_eq!(a["error"], 5, "{sent}: {a}");
    }
    assert_eq!(gw.balance("player-1").await, START - 250);
    gw.finish().await;
}

#[tokio::test]
async fn codes_map_the_state_machine() {
    let gw = gateway().await;
    assert_eq!(
        call(&gw, "bet", &money("nobody", "u1", "1.00", "r1")).await["error"],
        2
    );
    assert_eq!(
        call(&gw, "bet", &money("player-1", "i1", "5000.00", "r1")).await["error"],
        1
    );
    let a = call(&gw, "bet", &money("player-1", "bad", "1.001", "r1")).await;
    assert_eq!(a["error"], 7, "{a}");
    assert_eq!(
        call(
            &gw,
            "authenticate",
            &[("userId", "player-1"), ("token", "t")]
        )
        .await["error"],
        0
    );
    assert_eq!(
        call(&gw, "nope", &[("userId", "player-1")]).await["error"],
        7
    );
    // A currency the wallet does not hold.
    let mut usd = money("player-1", "c1", "1.00", "r1");
    usd.push(("currency", "USD"));
    assert_eq!(call(&gw, "bet", &usd).await["error"], 7);
    // Blocked players cannot bet, but results and refunds still apply.
    let ok = call(&gw, "bet", &money("player-2", "p2-b1", "2.00", "r1")).await;
    assert_eq!(ok["error"], 0);
    gw.sql("UPDATE players SET status = 'suspended' WHERE external_id = 'player-2'")
        .await;
    assert_eq!(
        call(&gw, "bet", &money("player-2", "p2-b2", "1.00", "r2")).await["error"],
        6
    );
    assert_eq!(
        call(&gw, "result", &money("player-2", "p2-w1", "3.00", "r1")).await["error"],
        0
    );
    assert_eq!(gw.balance("player-2").await, START + 100);
    gw.finish().await;
}

#[tokio::test]
async fn a_repeated_reference_replays_and_other_data_is_final() {
    let gw = gateway().await;
    let first = call(&gw, "bet", &money("player-1", "d1", "2.00", "r1")).await;
    call(&gw, "bet", &money("player-1", "d2", "1.00", "r1")).await;
    let again = call(&gw, "bet", &money("player-1", "d1", "2.00", "r1")).await;
    assert_eq!(again["transactionId"], first["transactionId"]);
    assert_eq!(again["cash"], first["cash"]);
    assert_eq!(
        call(&gw, "bet", &money("player-1", "d1", "9.00", "r1")).await["error"],
        120
    );
    assert_eq!(gw.balance("player-1").await, START - 300);
    gw.finish().await;
}

#[tokio::test]
async fn a_refund_before_its_bet_succeeds_empty_and_the_late_bet_is_final() {
    let gw = gateway().await;
    let params = money("player-1", "late", "4.00", "r1");
    let refund = call(
        &gw,
        "refund",
        &[
            ("userId", "player-1"),
            ("reference", "late"),
            ("roundId", "r1"),
        ],
    )
    .await;
    assert_eq!(
        (refund["error"].clone(), refund["transactionId"].clone()),
        (0.into(), "".into())
    );
    assert_eq!(call(&gw, "bet", &params).await["error"], 120);
    // A refund of an applied bet gives the money back, once.
    call(&gw, "bet", &money("player-1", "b2", "3.00", "r2")).await;
    let r = call(
        &gw,
        "refund",
        &[("userId", "player-1"), ("reference", "b2")],
    )
    .await;
    assert_eq!(r["error"], 0);
    assert_ne!(r["transactionId"], "");
    let again = call(
        &gw,
        "refund",
        &[("userId", "player-1"), ("reference", "b2")],
    )
    .await;
    assert_eq!(again["transactionId"], r["transactionId"]);
    assert_eq!(gw.balance("player-1").await, START);
    gw.finish().await;
}

#[tokio::test]
async fn results_wait_for_their_bets_and_settle_multi_bet_rounds() {
    let gw = gateway().await;
    // Before any bet of its round: retry (100), nothing stored.
    let early = money("player-1", "w1", "5.00", "r1");
    assert_eq!(call(&gw, "result", &early).await["error"], 100);
    assert_eq!(gw.ledger_len("player-1").await, 1);
    call(&gw, "bet", &money("player-1", "b1", "1.00", "r1")).await;
    call(&gw, "bet", &money("player-1", "b2", "2.00", "r1")).await;
    // The retry now settles both bets of the round.
    assert_eq!(call(&gw, "result", &early).await["error"], 0);
    assert_eq!(gw.balance("player-1").await, START - 300 + 500);
    // Settled bets cannot be refunded.
    assert_eq!(
        call(
            &gw,
            "refund",
            &[("userId", "player-1"), ("reference", "b1")]
        )
        .await["error"],
        120
    );
    let end = call(
        &gw,
        "endRound",
        &[
            ("userId", "player-1"),
            ("gameId", "vs20"),
            ("roundId", "r1"),
        ],
    )
    .await;
    assert_eq!(end["error"], 0);
    assert_eq!(
        call(&gw, "bet", &money("player-1", "b3", "1.00", "r1")).await["error"],
        3
    );
    gw.finish().await;
}

#[tokio::test]
async fn bonus_win_moves_no_money_and_promo_win_needs_no_bet() {
    let gw = gateway().await;
    let bonus = call(&gw, "bonusWin", &money("player-1", "bw1", "50.00", "r1")).await;
    assert_eq!(bonus["error"], 0);
    assert_eq!(gw.balance("player-1").await, START);
    assert_eq!(gw.ledger_len("player-1").await, 1);
    let promo = call(
        &gw,
        "promoWin",
        &money("player-1", "pw1", "7.00", "promo-1"),
    )
    .await;
    assert_eq!(promo["error"], 0, "{promo}");
    assert_eq!(gw.balance("player-1").await, START + 700);
    gw.finish().await;
}

#[tokio::test]
async fn a_result_for_a_refunded_round_is_final() {
    let gw = gateway().await;
    call(&gw, "bet", &money("player-1", "b1", "2.00", "r1")).await;
    call(
        &gw,
        "refund",
        &[("userId", "player-1"), ("reference", "b1")],
    )
    .await;
    assert_eq!(
        call(&gw, "result", &money("player-1", "w1", "5.00", "r1")).await["error"],
        120
    );
    assert_eq!(gw.balance("player-1").await, START);
    gw.finish().await;
}

#[tokio::test]
async fn ids_that_are_not_printable_text_are_malformed_for_good() {
    let gw = gateway().await;
    // `%FF` is not UTF-8 (the form decodes it to the replacement character, which the hash
    // then covers), `%00` and `%0A` are control characters: code 7, final, nothing moved.
    for (raw, decoded) in [
        ("b%FF1", "b\u{fffd}1"),
        ("b%001", "b\u{0}1"),
        ("b%0A1", "b\n1"),
    ] {
        let params = money("player-1", decoded, "1.00", "r1");
        let hash = gateway::provider::pragmatic::sign(&params, PP_SECRET.as_bytes());
        let mut f = form_urlencoded::Serializer::new(String::new());
        f.extend_pairs(params.iter().filter(|(k, _)| *k != "reference").copied());
        let sent = format!("{}&reference={raw}&hash={hash}", f.finish());
        let a = body(&gw.pp_raw("bet", sent.clone()).await);
        assert_eq!(a["error"], 7, "{sent}: {a}");
    }
    assert_eq!(gw.balance("player-1").await, START);
    gw.finish().await;
}

#[tokio::test]
async fn a_reference_at_the_longest_still_refunds() {
    let gw = gateway().await;
    // 128 bytes: the longest id accepted; the refund's own key (`<reference>:refund`) is made
    // from it and must not push it past the limit.
    let reference = "r".repeat(128);
    let params = money("player-1", &reference, "2.00", "round-long");
    assert_eq!(call(&gw, "bet", &params).await["error"], 0);
    let refund = [
        ("userId", "player-1"),
        ("reference", reference.as_str()),
        ("providerId", "PragmaticPlay"),
    ];
    assert_eq!(call(&gw, "refund", &refund).await["error"], 0);
    assert_eq!(call(&gw, "refund", &refund).await["error"], 0, "a retry");
    assert_eq!(gw.balance("player-1").await, START);
    gw.finish().await;
}

/// Issue 33 (2): the hash covers the parameters but not the method, so a captured bet's
/// signed parameters, posted unchanged to `refund.html`, verified and refunded the bet.
#[tokio::test]
async fn a_bet_replayed_as_a_refund_refunds_nothing() {
    let gw = gateway().await;
    let bet = money("player-1", "captured", "2.00", "r1");
    assert_eq!(call(&gw, "bet", &bet).await["error"], 0);
    // The very same signed body, to another method: refused as a signature not made for it.
    let replayed = call(&gw, "refund", &bet).await;
    assert_eq!(replayed["error"], 5, "{replayed}");
    // A retry of the bet itself still replays its answer.
    assert_eq!(call(&gw, "bet", &bet).await["error"], 0);
    // A parameter only other methods are documented with is refused, whatever its hash.
    let mut with_jackpot = vec![("userId", "player-1"), ("reference", "captured")];
    with_jackpot.push(("jackpotContribution", "0.01"));
    let foreign = call(&gw, "refund", &with_jackpot).await;
    assert_eq!(foreign["error"], 7, "{foreign}");
    assert_eq!(gw.balance("player-1").await, START - 200);
    // A refund the provider signed for the refund method does refund.
    let refund = call(
        &gw,
        "refund",
        &[("userId", "player-1"), ("reference", "captured")],
    )
    .await;
    assert_eq!(refund["error"], 0, "{refund}");
    assert_eq!(gw.balance("player-1").await, START);
    gw.finish().await;
}
