//! Retention by daily partitions (issue: operations): a transaction whose ledger row lives in a
//! partition weeks old is still a duplicate, still settles and still rolls back; `gateway
//! prune` drops only days older than the retention, archives them, and leaves reconciliation
//! balanced.

use gateway::test_util::{start_gateway, start_gateway_on, TestGateway};
use http::StatusCode;
use serde_json::{json, Value};

use crate::money_path::{bet, rollback, win, START};

const DEMO: &str = "[demo]\nenabled = true\nplayers = 5\n";

fn ok(answer: &gateway::test_util::Answer) -> Value {
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.json());
    answer.json()
}

/// Creates the daily partitions `days_ago` days back (UTC) of both partitioned tables.
async fn partition_days_ago(gw: &TestGateway, days_ago: &[i64]) {
    for days in days_ago {
        for table in ["transactions", "callback_segments"] {
            gw.sql(&format!(
                "DO $$
                 DECLARE d date := (now() AT TIME ZONE 'UTC')::date - {days};
                 BEGIN
                     EXECUTE format('CREATE TABLE %I PARTITION OF {table}
                                     FOR VALUES FROM (%L) TO (%L)',
                                    '{table}_p' || to_char(d, 'YYYYMMDD'),
                                    d::text || ' 00:00+00', (d + 1)::text || ' 00:00+00');
                 END $$"
            ))
            .await;
        }
    }
}

/// Moves the ledger rows of `txs` (provider transaction ids), their keys and their rounds
/// `days` days into the past: into that day's partition, as if they had arrived then.
async fn age(gw: &TestGateway, txs: &[&str], days: i64) {
    let list = txs
        .iter()
        .map(|t| format!("'{t}'"))
        .collect::<Vec<_>>()
        .join(", ");
    gw.sql(&format!(
        "UPDATE rounds r SET created_at = r.created_at - interval '{days} days'
         FROM transactions t
         WHERE t.provider_tx_id IN ({list}) AND r.provider_id = t.provider_id
           AND r.player_id = t.player_id AND r.round_id = t.round_id;
         UPDATE transactions SET created_at = created_at - interval '{days} days'
         WHERE provider_tx_id IN ({list});
         UPDATE transaction_keys SET created_at = created_at - interval '{days} days'
         WHERE provider_tx_id IN ({list});"
    ))
    .await;
}

async fn scalar(gw: &TestGateway, sql: &str) -> i64 {
    gw.db
        .connect()
        .await
        .query_one(sql, &[])
        .await
        .expect("query")
        .get(0)
}

#[tokio::test]
async fn a_transaction_from_last_month_is_still_a_duplicate_and_still_settles() {
    let gw = start_gateway(DEMO).await;
    partition_days_ago(&gw, &[40]).await;
    let first = ok(&gw
        .demo("bet", bet("player-1", "old-bet", "10.00", "r-old"))
        .await);
    ok(&gw
        .demo("bet", bet("player-2", "old-bet-2", "7.00", "r-old-2"))
        .await);
    ok(&gw
        .demo("rollback", rollback("player-3", "old-undo", "never-came"))
        .await);
    age(&gw, &["old-bet", "old-bet-2", "old-undo"], 40).await;
    assert_eq!(
        scalar(
            &gw,
            "SELECT count(*) FROM transactions t
             JOIN pg_class c ON c.oid = t.tableoid
             WHERE c.relname = 'transactions_p' || to_char(now() AT TIME ZONE 'UTC' - interval '40 days', 'YYYYMMDD')"
        )
        .await,
        3,
        "the rows live in last month's partition"
    );
    // A new gateway: nothing in memory, the database alone judges.
    let db = gw.db.clone();
    gw.stop().await;
    let gw = start_gateway_on(db, DEMO).await;

    let retry = ok(&gw
        .demo("bet", bet("player-1", "old-bet", "10.00", "r-old"))
        .await);
    assert_eq!(
        (&retry["status"], &retry["balance"], &retry["duplicate"]),
        (&json!("OK"), &first["balance"], &json!(true)),
        "the original answer, replayed"
    );
    crate::money_path::answers(
        &gw,
        "bet",
        bet("player-1", "old-bet", "11.00", "r-old"),
        "DUPLICATE_MISMATCH",
    )
    .await;
    // The old round's open bet is settled by a win today: its row, in last month's partition,
    // changes state.
    let won = ok(&gw
        .demo("win", win("player-1", "new-win", "25.00", "r-old"))
        .await);
    assert_eq!(won["status"], "OK");
    assert_eq!(gw.balance("player-1").await, START - 1000 + 2500);
    assert_eq!(
        scalar(
            &gw,
            "SELECT count(*) FROM transactions
             WHERE provider_tx_id = 'old-bet' AND state = 'settled'
               AND created_at < now() - interval '39 days'"
        )
        .await,
        1
    );
    // Last month's other bet is rolled back today.
    let undone = ok(&gw
        .demo("rollback", rollback("player-2", "new-undo", "old-bet-2"))
        .await);
    assert_eq!(undone["status"], "OK");
    assert_eq!(gw.balance("player-2").await, START);
    // Last month's rollback still stands as a tombstone: the transaction it named is refused.
    let late = ok(&gw
        .demo("bet", bet("player-3", "never-came", "5.00", "r-late"))
        .await);
    assert_eq!(late["status"], "TRANSACTION_ROLLED_BACK");
    assert_eq!(gw.balance("player-3").await, START);
    gw.finish().await;
}

fn cli(gw: &TestGateway, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args([
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/../config/gateway.toml"),
        ])
        .args(args)
        .env("DATABASE_URL", gw.db.url())
        .env("RUST_LOG", "error")
        .output()
        .expect("run gateway")
}

#[tokio::test]
async fn prune_drops_only_days_older_than_the_retention_and_keeps_the_books_balanced() {
    let gw = start_gateway(DEMO).await;
    // Default retention: 120 days. 200 and 121 days ago go; 119 days ago stays whole; 150
    // days ago is kept too (issue 33, 10): it holds a bet still open, which a refund must
    // still find.
    partition_days_ago(&gw, &[200, 150, 121, 119]).await;
    for (player, tx, days) in [
        ("player-1", "d200", 200),
        ("player-2", "d121", 121),
        ("player-3", "d119", 119),
        ("player-4", "d150", 150),
    ] {
        let round = format!("r-{tx}");
        ok(&gw.demo("bet", bet(player, tx, "10.00", &round)).await);
        if tx != "d150" {
            // Settled (the win is today's), so its old day holds no open bet.
            ok(&gw
                .demo("win", win(player, &format!("w-{tx}"), "1.00", &round))
                .await);
        }
        age(&gw, &[tx], days).await;
    }
    gw.sql(
        "INSERT INTO callback_segments (first_at, last_at, records, tx_keys, data)
         VALUES (now() - interval '200 days', now() - interval '200 days', 1, '{}', 'x'),
                (now() - interval '119 days', now() - interval '119 days', 1, '{}', 'y')",
    )
    .await;
    let rows_before = scalar(&gw, "SELECT count(*) FROM transactions").await;

    let dry = cli(&gw, &["prune", "--dry-run"]);
    assert!(
        dry.status.success(),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    let dry: Value = serde_json::from_slice(&dry.stdout).unwrap();
    assert_eq!(dry["pruned"].as_array().unwrap().len(), 6, "{dry}");
    assert_eq!(
        scalar(&gw, "SELECT count(*) FROM transactions").await,
        rows_before,
        "a dry run changes nothing"
    );

    let archive = tempfile::tempdir().unwrap();
    let out = cli(
        &gw,
        &["prune", "--archive", archive.path().to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let (dropped, kept): (Vec<&Value>, Vec<&Value>) = report["pruned"]
        .as_array()
        .unwrap()
        .iter()
        .partition(|p| p["dropped"] == true);
    assert_eq!(kept.len(), 1, "{report}");
    assert_eq!(
        (kept[0]["open_bets"].as_i64(), kept[0]["archive"].is_null()),
        (Some(1), true)
    );
    let mut pruned: Vec<(String, i64)> = dropped
        .iter()
        .map(|p| {
            (
                p["partition"]
                    .as_str()
                    .unwrap()
                    .split("_p")
                    .next()
                    .unwrap()
                    .to_string(),
                p["rows"].as_i64().unwrap(),
            )
        })
        .collect();
    pruned.sort();
    assert_eq!(
        pruned,
        [
            ("callback_segments".to_string(), 0),
            ("callback_segments".to_string(), 0),
            ("callback_segments".to_string(), 1),
            ("transactions".to_string(), 1),
            ("transactions".to_string(), 1),
        ]
    );
    // Each archive holds a header and the partition's rows.
    for p in &dropped {
        let text = std::fs::read_to_string(p["archive"].as_str().unwrap()).unwrap();
        assert_eq!(
            text.lines().count() as i64,
            1 + p["rows"].as_i64().unwrap(),
            "{text}"
        );
    }
    assert_eq!(
        scalar(&gw, "SELECT count(*) FROM transactions").await,
        rows_before - 2
    );
    assert_eq!(
        scalar(
            &gw,
            "SELECT count(*) FROM transaction_keys WHERE provider_tx_id IN ('d200', 'd121')"
        )
        .await,
        2,
        "the pruned days' keys are kept"
    );
    // Issue 33 (9): so a replay of a pruned day's call (a retry, or a captured request sent
    // again) is refused for good instead of settling again; a rollback of a pruned bet (it
    // was settled: a day holding an open one is kept) gives nothing back. A gateway started
    // afresh, so the answer comes from the database, not from the index of recent answers.
    let db = gw.db.clone();
    gw.stop().await;
    let gw = start_gateway_on(db, DEMO).await;
    let (one, two) = (gw.balance("player-1").await, gw.balance("player-2").await);
    crate::money_path::answers(
        &gw,
        "bet",
        bet("player-1", "d200", "10.00", "r-d200"),
        "DUPLICATE_MISMATCH",
    )
    .await;
    crate::money_path::answers(
        &gw,
        "rollback",
        rollback("player-2", "undo-d121", "d121"),
        "ROLLBACK_NOT_PERMITTED",
    )
    .await;
    assert_eq!(
        (gw.balance("player-1").await, gw.balance("player-2").await),
        (one, two)
    );
    assert_eq!(
        scalar(
            &gw,
            "SELECT count(*) FROM transactions t JOIN transaction_keys k USING (id, created_at)
             WHERE t.provider_tx_id = 'd119'"
        )
        .await,
        1,
        "119 days old: younger than the retention, untouched"
    );
    assert_eq!(
        scalar(
            &gw,
            "SELECT count(*) FROM callback_segments WHERE first_at < now() - interval '100 days'"
        )
        .await,
        1
    );
    // Balances still equal their ledger: what was pruned is carried in ledger_pruned.
    assert_eq!(
        scalar(
            &gw,
            "SELECT real_delta FROM ledger_pruned
             WHERE player_id = (SELECT id FROM players WHERE external_id = 'player-2')"
        )
        .await,
        -1000
    );
    let reconcile = cli(&gw, &["reconcile"]);
    assert!(
        reconcile.status.success(),
        "{}",
        String::from_utf8_lossy(&reconcile.stdout)
    );
    // The open bet of 150 days ago is still there to refund.
    let refunded = ok(&gw
        .demo("rollback", rollback("player-4", "undo-d150", "d150"))
        .await);
    assert_eq!(refunded["status"], "OK");
    assert_eq!(gw.balance("player-4").await, START);
    // Its day holds no open bet now: it goes; then nothing is left to prune.
    let again = cli(&gw, &["prune"]);
    let again: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(again["pruned"][0]["dropped"], true, "{again}");
    let last = cli(&gw, &["prune"]);
    let last: Value = serde_json::from_slice(&last.stdout).unwrap();
    assert_eq!(last["pruned"], json!([]));
    gw.finish().await;
}

#[tokio::test]
async fn a_retention_shorter_than_a_week_refuses_to_start() {
    let config = gateway::config::Config::from_toml("[retention]\ndays = 3\n", &[]);
    let problems = format!("{:?}", config.expect_err("refused"));
    assert!(problems.contains("retention.days"), "{problems}");
}

/// The fingerprint the gateway computes for the demo bet `bet(player, tx, amount, round)`.
fn bet_fingerprint(player: &str, tx: &str, amount_minor: i64, round: &str) -> String {
    use settlement::command::{
        Action, Command, GameId, Money, PlayerRef, ProviderId, ProviderTxId, RoundId,
    };
    let command = Command::new(
        ProviderId(0),
        settlement::Policy::default(),
        PlayerRef::new(player.to_string()).unwrap(),
        Action::Bet {
            money: Money {
                tx: ProviderTxId::new(tx).unwrap(),
                currency: settlement::money::Currency::from_code("EUR").unwrap(),
                amount_minor,
                round: RoundId::new(round).unwrap(),
                game: GameId::new("slot-1").unwrap(),
                round_closed: false,
            },
            session: None,
        },
    );
    command
        .fingerprint()
        .0
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn a_ledger_written_before_partitioning_keeps_judging_after_the_upgrade() {
    let db = settlement::test_util::empty_database().await;
    let mut client = db.connect().await;
    let before = settlement::schema::MIGRATIONS
        .iter()
        .position(|(name, _)| *name == "0011_time_partitions")
        .unwrap();
    settlement::schema::migrate_through(&mut client, before)
        .await
        .unwrap();
    // The old shape: player-1 with a deposit, an open bet in a round, and a rollback of a
    // transaction that never came (a tombstone); the balance equals the ledger.
    client
        .batch_execute(&format!(
            "INSERT INTO providers (code, dialect) VALUES ('demo', 'native');
             INSERT INTO players (external_id) VALUES ('player-1');
             INSERT INTO wallets (player_id, currency, balance)
                 SELECT id, 'EUR', 99000 FROM players;
             INSERT INTO transactions (kind, outcome, player_id, currency, amount, real_delta,
                                       balance_before, balance_after, bonus_before, bonus_after,
                                       created_at)
                 SELECT 'deposit', 'OK', id, 'EUR', 100000, 100000, 0, 100000, 0, 0,
                        now() - interval '3 days' FROM players;
             INSERT INTO transactions (provider_id, provider_tx_id, kind, outcome, state,
                                       player_id, currency, round_id, game_id, amount,
                                       real_delta, balance_before, balance_after, bonus_before,
                                       bonus_after, fingerprint, created_at)
                 SELECT pr.id, 'old-bet', 'bet', 'OK', 'open', pl.id, 'EUR', 'r-old', 'slot-1',
                        1000, -1000, 100000, 99000, 0, 0, '\\x{fp}', now() - interval '2 days'
                 FROM providers pr, players pl;
             INSERT INTO rounds (provider_id, player_id, round_id, game_id, created_at)
                 SELECT pr.id, pl.id, 'r-old', 'slot-1', now() - interval '2 days'
                 FROM providers pr, players pl;
             INSERT INTO transactions (provider_id, provider_tx_id, kind, outcome, player_id,
                                       currency, amount, balance_before, balance_after,
                                       bonus_before, bonus_after, reference_tx_id, created_at)
                 SELECT pr.id, 'old-undo', 'rollback', 'OK', pl.id, 'EUR', 0, 99000, 99000,
                        0, 0, 'never-came', now() - interval '1 day'
                 FROM providers pr, players pl;",
            fp = bet_fingerprint("player-1", "old-bet", 1000, "r-old")
        ))
        .await
        .unwrap();
    // The new gateway migrates: the old rows become one partition, their keys are copied.
    let gw = start_gateway_on(db.clone(), DEMO).await;
    assert_eq!(
        scalar(
            &gw,
            "SELECT count(*) FROM transactions t JOIN pg_class c ON c.oid = t.tableoid
             WHERE c.relname = 'transactions_initial' AND t.created_at < now() - interval '12 hours'"
        )
        .await,
        3
    );
    assert_eq!(
        scalar(&gw, "SELECT count(*) FROM transaction_keys").await,
        2
    );
    let retry = ok(&gw
        .demo("bet", bet("player-1", "old-bet", "10.00", "r-old"))
        .await);
    assert_eq!(
        (&retry["status"], &retry["balance"], &retry["duplicate"]),
        (&json!("OK"), &json!("990.00"), &json!(true))
    );
    let late = ok(&gw
        .demo("bet", bet("player-1", "never-came", "5.00", "r-2"))
        .await);
    assert_eq!(late["status"], "TRANSACTION_ROLLED_BACK");
    let won = ok(&gw
        .demo("win", win("player-1", "new-win", "4.00", "r-old"))
        .await);
    assert_eq!(won["balance"], "994.00");
    assert_eq!(
        scalar(
            &gw,
            "SELECT count(*) FROM transactions_initial
             WHERE provider_tx_id = 'old-bet' AND state = 'settled'"
        )
        .await,
        1,
        "the old partition's bet is settled in place"
    );
    gw.finish().await;
}
