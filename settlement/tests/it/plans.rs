//! Every lane statement keeps its plan whatever the statistics say: planned as a generic plan
//! (as the lanes run them: `store::LANE_SESSION`) on empty tables never analyzed, on empty
//! tables analyzed, and on tables of a few hundred thousand rows analyzed, every read of a
//! wallet-path table is an index probe on the batch's keys (or a row address), never a scan
//! whose cost grows with the table, and no plan is compiled by JIT at every execution. The
//! plans are read as JSON.

use serde_json::Value;
use settlement::store::{update_states, COLUMNS, LANE_SESSION, STATEMENTS};
use settlement::test_util::fresh_database;
use tokio_postgres::Client;

/// The tables (and the ledger's partitions) whose size grows with traffic or players.
const WATCHED: &[&str] = &[
    "transactions",
    "transaction_keys",
    "rounds",
    "wallets",
    "players",
    "game_sessions",
    "rg_limits",
    "rg_usage",
];

fn watched(relation: &str) -> bool {
    WATCHED.iter().any(|t| {
        relation == *t
            || relation
                .strip_prefix(t)
                .is_some_and(|rest| rest.starts_with('_') && *t == "transactions")
    })
}

/// A value of each parameter type the statements take (three elements for arrays, so the
/// `unnest`s of one statement line up).
fn literal(parameter_type: &str) -> String {
    match parameter_type {
        "integer" => "3".into(),
        "integer[]" => "ARRAY[1, 2, 3]::int[]".into(),
        "bigint[]" => "ARRAY[1, 2, 3]::bigint[]".into(),
        // Texts that are also row addresses (`ctid`), for the statements that take those.
        "text[]" => "ARRAY['(0,1)', '(0,2)', '(0,3)']::text[]".into(),
        "text" => "'settled'".into(),
        "boolean[]" => "ARRAY[true, false, true]".into(),
        "bytea[]" => r"ARRAY['\x00'::bytea, '\x01', '\x02']".into(),
        "timestamp with time zone[]" => "ARRAY[now(), now(), now()]".into(),
        other => panic!("no literal for parameter type {other}: add one"),
    }
}

/// The generic plan of `statement` on `client` (whose session is a lane's), as JSON.
async fn generic_plan(client: &Client, name: &str, statement: &str) -> Value {
    let prepared = format!("plan_{}", name.to_lowercase());
    client
        .batch_execute(&format!("PREPARE {prepared} AS {statement}"))
        .await
        .unwrap_or_else(|e| panic!("prepare {name}: {e:?}"));
    let types: Vec<String> = client
        .query_one(
            "SELECT parameter_types::text[] FROM pg_prepared_statements WHERE name = $1",
            &[&prepared],
        )
        .await
        .expect("parameter types")
        .get(0);
    let arguments: Vec<String> = types.iter().map(|t| literal(t)).collect();
    let explain = format!(
        "EXPLAIN (FORMAT JSON) EXECUTE {prepared}({})",
        arguments.join(", ")
    );
    // The plan comes back as `json`, read as text.
    let text = client
        .simple_query(&explain)
        .await
        .unwrap_or_else(|e| panic!("explain {name}: {e:?}"))
        .into_iter()
        .find_map(|message| match message {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
            _ => None,
        })
        .expect("a plan");
    client
        .batch_execute(&format!("DEALLOCATE {prepared}"))
        .await
        .expect("deallocate");
    let plan: Value = serde_json::from_str(&text).expect("plan JSON");
    plan[0].clone()
}

/// What is wrong with one plan node, if anything.
fn judge(node: &Value) -> Option<String> {
    let kind = node["Node Type"].as_str().unwrap_or_default();
    let relation = node["Relation Name"].as_str();
    let keyed = |field: &str| {
        node[field]
            .as_str()
            // Equality with the batch's keys: `x = $1`, `x = ANY ($1)`, `x = k.x`; a range
            // alone (`created_at >= ...`) bounds nothing that the batch brings.
            .is_some_and(|cond| cond.contains(" = "))
    };
    match (kind, relation) {
        ("ModifyTable", _) => None,
        (_, Some(relation)) if watched(relation) => match kind {
            "Index Scan" | "Index Only Scan" if keyed("Index Cond") => None,
            "Tid Scan" if keyed("TID Cond") => None,
            // Its bitmap index scans below are judged on their own.
            "Bitmap Heap Scan" => None,
            _ => Some(format!(
                "{kind} of {relation} without an index condition on the keys \
                 (index cond {:?}, filter {:?})",
                node["Index Cond"].as_str(),
                node["Filter"].as_str()
            )),
        },
        ("Bitmap Index Scan", _) if !keyed("Index Cond") => Some(format!(
            "Bitmap Index Scan of {} without an equality on the keys",
            node["Index Name"]
        )),
        _ => None,
    }
}

/// Every problem in a plan tree.
fn problems(node: &Value, found: &mut Vec<String>) {
    if let Some(problem) = judge(node) {
        found.push(problem);
    }
    for child in node["Plans"].as_array().into_iter().flatten() {
        problems(child, found);
    }
}

/// Plans every lane statement and returns what is wrong, statement by statement.
async fn check_every_statement(client: &Client, state: &str) -> Vec<String> {
    let partition: String = client
        .query_one(
            "SELECT inhrelid::regclass::text FROM pg_inherits
             WHERE inhparent = 'transactions'::regclass ORDER BY 1 LIMIT 1",
            &[],
        )
        .await
        .expect("a ledger partition")
        .get(0);
    let states = update_states(&partition);
    let mut wrong = Vec::new();
    let every = STATEMENTS
        .iter()
        .copied()
        .chain([("UPDATE_STATES", states.as_str())]);
    for (name, statement) in every {
        let plan = generic_plan(client, name, statement).await;
        let mut found = Vec::new();
        if plan.get("JIT").is_some() {
            found.push("compiled by JIT at every execution".to_string());
        }
        let plan = &plan["Plan"];
        problems(plan, &mut found);
        for problem in found {
            wrong.push(format!("{state}: {name}: {problem}\n{plan:#}"));
        }
    }
    wrong
}

/// A few hundred thousand rows in every watched table, as weeks of traffic leave them.
async fn fill(client: &Client) {
    client
        .batch_execute(
            "INSERT INTO providers (code, dialect) VALUES ('plans', 'native');
             INSERT INTO players (external_id)
                 SELECT 'pl-' || g FROM generate_series(1, 200000) g;
             INSERT INTO wallets (player_id, currency, balance) SELECT id, 'EUR', 1000 FROM players;
             INSERT INTO transactions (id, provider_id, provider_tx_id, kind, outcome, state,
                     player_id, currency, round_id, game_id, amount, real_delta,
                     balance_before, balance_after, bonus_before, bonus_after)
                 SELECT nextval('transactions_id_seq'), 1, 'tx-' || g, 'bet', 'OK',
                        CASE WHEN g % 3 = 0 THEN 'open' ELSE 'settled' END,
                        1 + g % 200000, 'EUR', 'r-' || g, 'g', 1, -1, 1001, 1000, 0, 0
                 FROM generate_series(1, 300000) g;
             INSERT INTO transaction_keys (provider_id, provider_tx_id, id, created_at,
                                           player_id, reference_tx_id)
                 SELECT provider_id, provider_tx_id, id, created_at, player_id,
                        CASE WHEN id % 10 = 0 THEN 'ref-' || id END
                 FROM transactions;
             INSERT INTO rounds (provider_id, player_id, round_id, game_id, closed)
                 SELECT 1, 1 + g % 200000, 'r-' || g, 'g', g % 3 <> 0
                 FROM generate_series(1, 300000) g;
             INSERT INTO game_sessions (token, player_id, currency, expires_at)
                 SELECT 'tok-' || g, g, 'EUR', now() + interval '1 hour'
                 FROM generate_series(1, 100000) g;
             INSERT INTO rg_limits (player_id, currency, kind, period, amount)
                 SELECT g, 'EUR', 'loss', 'day', 100000 FROM generate_series(1, 50000) g;",
        )
        .await
        .expect("fill the tables");
}

#[tokio::test]
async fn every_lane_statement_probes_indexes_by_key_on_empty_and_full_tables() {
    let db = fresh_database().await;
    let client = db.connect().await;
    // Every plan would be worth compiling, but for the lanes' own settings.
    client
        .batch_execute("SET jit_above_cost = 0")
        .await
        .expect("jit");
    client.batch_execute(LANE_SESSION).await.expect("session");
    let mut wrong = check_every_statement(&client, "empty, never analyzed").await;
    client.batch_execute("ANALYZE").await.expect("analyze");
    wrong.extend(check_every_statement(&client, "empty, analyzed").await);
    fill(&client).await;
    client.batch_execute("ANALYZE").await.expect("analyze");
    wrong.extend(check_every_statement(&client, "full, analyzed").await);
    assert!(
        wrong.is_empty(),
        "{} plans read a table without probing it by key:\n{}",
        wrong.len(),
        wrong.join("\n\n")
    );
}

/// The prefetch reads rows by named positions (`tx::outcome`, ...): each list must be the
/// prepared statement's own columns, name for name, so a column added or moved in the SQL
/// without its decoder fails here and not as a wrong value at run time.
#[tokio::test]
async fn every_read_is_decoded_by_the_names_of_its_columns() {
    let db = fresh_database().await;
    let client = db.connect().await;
    for (name, parts) in COLUMNS {
        let statement = STATEMENTS
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| *s)
            .unwrap_or_else(|| panic!("{name} is not a lane statement"));
        let prepared = client.prepare(statement).await.expect("prepare");
        let columns: Vec<&str> = prepared.columns().iter().map(|c| c.name()).collect();
        let decoded: Vec<&str> = parts.iter().flat_map(|p| p.iter().copied()).collect();
        assert_eq!(columns, decoded, "{name}");
    }
    let decoded: Vec<&str> = COLUMNS.iter().map(|(n, _)| *n).collect();
    for (name, statement) in STATEMENTS {
        if statement.trim_start().starts_with("SELECT") && *name != "RESERVE_IDS" {
            assert!(
                decoded.contains(name),
                "{name} reads rows but has no column list"
            );
        }
    }
}

#[tokio::test]
async fn a_partition_that_began_receiving_rows_gets_statistics_once() {
    let db = fresh_database().await;
    let client = db.connect().await;
    // A new database: nothing has rows, so nothing needs statistics.
    let none = settlement::partitions::analyze_new(&client)
        .await
        .expect("analyze");
    assert!(none.is_empty(), "{none:?}");
    fill(&client).await;
    let analyzed = settlement::partitions::analyze_new(&client)
        .await
        .expect("analyze");
    let today: String = client
        .query_one(
            "SELECT tableoid::regclass::text FROM transactions LIMIT 1",
            &[],
        )
        .await
        .expect("today's partition")
        .get(0);
    for table in [today.as_str(), "rounds", "transaction_keys", "wallets"] {
        assert!(
            analyzed.iter().any(|name| name == table),
            "{table} not in {analyzed:?}"
        );
    }
    let stats: f32 = client
        .query_one(
            &format!("SELECT reltuples FROM pg_class WHERE oid = '{today}'::regclass"),
            &[],
        )
        .await
        .expect("reltuples")
        .get(0);
    assert!(stats > 100_000.0, "{stats}");
    // Once is enough: autovacuum keeps them from there.
    let again = settlement::partitions::analyze_new(&client)
        .await
        .expect("analyze");
    assert!(again.is_empty(), "{again:?}");
}
