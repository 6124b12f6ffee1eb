//! The checkers run after the play: each wallet against the model and against its ledger, no
//! transaction applied twice, one final answer per transaction id, money conserved from the
//! database alone, plus the violations the workers recorded.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::model::PlayerModel;
use crate::*;

/// Connects, retrying for up to a minute while the database is (re)starting.
pub(crate) async fn connect_patiently(
    database: &tokio_postgres::Config,
) -> anyhow::Result<(
    tokio_postgres::Client,
    tokio_postgres::Connection<tokio_postgres::Socket, tokio_postgres::tls::NoTlsStream>,
)> {
    let give_up = Instant::now() + Duration::from_secs(60);
    loop {
        match database.connect(tokio_postgres::NoTls).await {
            Ok(connected) => return Ok(connected),
            Err(e) if Instant::now() > give_up => return Err(e.into()),
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

pub(crate) async fn check(
    db: &tokio_postgres::Client,
    options: &Options,
    models: &[PlayerModel],
    openings: &HashMap<String, i64>,
    seen: &[Seen],
    violations: Vec<String>,
) -> anyhow::Result<Vec<(String, Result<(), String>)>> {
    let names: Vec<&str> = models.iter().map(|m| m.name.as_str()).collect();
    let rows = db
        .query(
            "SELECT p.external_id, w.balance + w.bonus,
                    (SELECT coalesce(sum(t.real_delta + t.bonus_delta), 0)::bigint FROM transactions t
                      WHERE t.player_id = p.id AND t.currency = 'EUR'),
                    (SELECT count(*) FROM transactions t
                      WHERE t.player_id = p.id AND t.provider_tx_id LIKE $2
                        AND (t.real_delta <> 0 OR t.bonus_delta <> 0)),
                    (SELECT coalesce(sum(t.real_delta + t.bonus_delta), 0)::bigint FROM transactions t
                      WHERE t.player_id = p.id AND t.currency = 'EUR' AND t.provider_tx_id LIKE $2)
             FROM players p JOIN wallets w ON w.player_id = p.id AND w.currency = 'EUR'
             WHERE p.external_id = ANY($1)",
            &[&names, &format!("%sim-{}-%", options.tag)],
        )
        .await?;
    let db_state: HashMap<String, (i64, i64, i64)> = rows
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3))))
        .collect();
    // (e) from the database alone: balances now against balances at the start plus the
    // money this run's ledger rows moved.
    let (mut held, mut run_moved) = (0i128, 0i128);
    for r in &rows {
        held += i128::from(r.get::<_, i64>(1));
        run_moved += i128::from(r.get::<_, i64>(4));
    }
    let opening: i128 = models
        .iter()
        .map(|m| i128::from(openings.get(&m.name).copied().unwrap_or(0)))
        .sum();
    let first = |problems: Vec<String>| -> Result<(), String> {
        match problems.first() {
            None => Ok(()),
            Some(p) => Err(format!("{p} (and {} more)", problems.len() - 1)),
        }
    };
    let mut a = Vec::new();
    let mut b = Vec::new();
    let mut c = Vec::new();
    for m in models {
        let Some(&(balance, ledger, money_rows)) = db_state.get(&m.name) else {
            a.push(format!("player {} has no wallet", m.name));
            continue;
        };
        if balance != m.balance {
            a.push(format!(
                "player {}: database balance {balance}, model {}",
                m.name, m.balance
            ));
        }
        if balance != ledger {
            b.push(format!(
                "player {}: balance {balance}, ledger sum {ledger}",
                m.name
            ));
        }
        let rows = money_rows as u64;
        if rows < m.money_rows || rows > m.money_rows + m.uncertain_rows {
            c.push(format!(
                "player {}: {rows} ledger rows moved money, the model allows {} to {}",
                m.name,
                m.money_rows,
                m.money_rows + m.uncertain_rows
            ));
        }
    }
    let mut by_tx: HashMap<(&str, &[u8]), &Seen> = HashMap::new();
    let mut d = Vec::new();
    for s in seen {
        let key = (s.tx.as_str(), s.payload.as_slice());
        match by_tx.get(&key) {
            None => {
                by_tx.insert(key, s);
            }
            Some(first) => {
                if (&first.status, &first.balance, &first.operator_tx_id)
                    != (&s.status, &s.balance, &s.operator_tx_id)
                {
                    d.push(format!(
                        "transaction {}: answered {first:?} and later {s:?}",
                        s.tx
                    ));
                }
            }
        }
    }
    let e = if held == opening + run_moved {
        Ok(())
    } else {
        Err(format!(
            "players hold {held}; they held {opening} at the start and this run's ledger rows moved {run_moved}"
        ))
    };
    Ok(vec![
        ("answers_match_model".to_string(), first(violations)),
        ("a_balance_equals_model".to_string(), first(a)),
        ("b_balance_equals_ledger".to_string(), first(b)),
        ("c_no_double_application".to_string(), first(c)),
        ("d_retries_same_answer".to_string(), first(d)),
        ("e_money_conserved".to_string(), e),
    ])
}
