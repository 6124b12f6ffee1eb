//! One worker of the simulation: plays its players' rounds one operation at a time, like a
//! provider (attempts re-signed, back-off retries, rollbacks of bets whose answer never came),
//! injects the faults, and records every final answer and every violation it sees.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::client::{Attempt, Client, Send};
use crate::dialect::{Encoded, OpKind};
use crate::model::{Op, PlayerModel};
use crate::*;
use harness::rng::Rng;

pub(crate) struct Worker {
    pub(crate) client: Client,
    pub(crate) options: Arc<Options>,
    pub(crate) counts: Arc<Counts>,
    pub(crate) budget: Arc<AtomicU64>,
    pub(crate) deadline: Option<Instant>,
    pub(crate) rng: Rng,
    pub(crate) seen: Vec<Seen>,
    pub(crate) violations: Violations,
}

pub(crate) const PATIENCE: Duration = Duration::from_secs(10);

/// How long an operation is retried.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Until {
    /// A few attempts, then the provider gives up (bets: it then rolls them back).
    Attempts(u32),
    /// Until final, or `Options::final_within` has passed (a violation).
    Final,
}

impl Worker {
    pub(crate) fn out_of_budget(&self) -> bool {
        self.budget.load(Ordering::Relaxed) == 0
            || self.deadline.is_some_and(|d| Instant::now() > d)
    }

    pub(crate) async fn attempt(
        &mut self,
        encoded: &Encoded,
        send: Send,
        patience: Duration,
    ) -> Attempt {
        self.counts.attempts.fetch_add(1, Ordering::Relaxed);
        let _ = self
            .budget
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| b.checked_sub(1));
        self.client.attempt(encoded, send, patience).await
    }

    /// Broken variants providers (or attackers) send: each must be refused.
    pub(crate) async fn maybe_inject_garbage(&mut self, encoded: &Encoded) {
        let faults = self.options.faults;
        for (rate, send, kind) in [
            (faults.bad_signature, Send::WrongSecret, "bad_signature"),
            (faults.stale_timestamp, Send::Stale, "stale_timestamp"),
            (faults.malformed, Send::Malformed, "malformed"),
        ] {
            if self.rng.chance(rate) {
                self.counts.fault(kind);
                // No answer at all (the gateway restarting, a timeout) is not an answer: asked
                // again, like a provider would, until one comes.
                let started = Instant::now();
                let mut answer = self.attempt(encoded, send, PATIENCE).await;
                while matches!(answer, Attempt::Unknown(_))
                    && started.elapsed() < self.options.final_within
                {
                    self.counts.unknown.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    answer = self.attempt(encoded, send, PATIENCE).await;
                }
                match answer {
                    Attempt::Refused(..) => {}
                    other => self.violations.0.push(format!(
                        "{kind} on {}: expected a refusal, got {other:?}",
                        encoded.path
                    )),
                }
            }
        }
    }

    /// Sends until a final answer, with back-off, recording each final answer for checker
    /// (d); `None` if none came within `until` (for `Until::Final`, a violation).
    pub(crate) async fn until_final(
        &mut self,
        encoded: &Encoded,
        until: Until,
    ) -> Option<dialects::wire::Response> {
        let (action, body, tx) = (&encoded.path, &encoded.body, encoded.tx.as_deref());
        let started = Instant::now();
        for attempt in 0u32.. {
            let give_up = match until {
                Until::Attempts(n) => attempt >= n,
                Until::Final => attempt > 0 && started.elapsed() > self.options.final_within,
            };
            if give_up {
                if let Until::Final = until {
                    self.violations.0.push(format!(
                        "{action} never got a final answer within {:?} ({attempt} attempts): {}",
                        self.options.final_within,
                        String::from_utf8_lossy(body)
                    ));
                }
                return None;
            }
            if attempt > 0 {
                self.counts.retries.fetch_add(1, Ordering::Relaxed);
                let backoff = Duration::from_millis((5u64 << attempt.min(6)).min(200));
                tokio::time::sleep(backoff).await;
            }
            let patience = if self.rng.chance(self.options.faults.client_timeout) {
                self.counts.fault("client_timeout");
                Duration::from_micros(200)
            } else {
                PATIENCE
            };
            match self.attempt(encoded, Send::Signed, patience).await {
                Attempt::Final(response) => {
                    if let Some(tx) = tx {
                        self.seen.push(seen(tx, body, &response));
                    }
                    return Some(response);
                }
                Attempt::Refused(status, what) => {
                    self.violations.0.push(format!(
                        "{action} refused with HTTP {status} ({what}): {}",
                        String::from_utf8_lossy(body)
                    ));
                    return None;
                }
                Attempt::Unknown(_) => {
                    self.counts.unknown.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        None
    }

    /// Sends a callback again after its final answer, like a provider that lost the answer;
    /// the answer must be the same (checker (d)).
    pub(crate) async fn maybe_retry_late(&mut self, encoded: &Encoded) {
        if encoded.tx.is_none() || !self.rng.chance(self.options.faults.late_retry) {
            return;
        }
        self.counts.fault("late_retry");
        self.counts.retries.fetch_add(1, Ordering::Relaxed);
        self.until_final(encoded, Until::Final).await;
    }

    /// One operation: expected answer from the model, sent (with faults) until final, compared.
    pub(crate) async fn perform(
        &mut self,
        model: &mut PlayerModel,
        op: &Op,
        until: Until,
    ) -> Option<dialects::wire::Response> {
        self.counts.operations.fetch_add(1, Ordering::Relaxed);
        let encoded = self.client.provider().encode(&model.name, op);
        let (tx, body) = (encoded.tx.clone(), encoded.body.clone());
        self.maybe_inject_garbage(&encoded).await;
        let response = if self.rng.chance(self.options.faults.concurrent_duplicate) {
            self.counts.fault("concurrent_duplicate");
            self.counts.attempts.fetch_add(2, Ordering::Relaxed);
            let client = self.client.clone();
            let (a, b) = tokio::join!(
                client.attempt(&encoded, Send::Signed, PATIENCE),
                client.attempt(&encoded, Send::Signed, PATIENCE)
            );
            match (a, b) {
                (Attempt::Final(a), Attempt::Final(b)) => {
                    if (&a.status, &a.balance, &a.operator_transaction_id)
                        != (&b.status, &b.balance, &b.operator_transaction_id)
                    {
                        self.violations.0.push(format!(
                            "concurrent duplicates of {tx:?} answered differently: {a:?} vs {b:?}"
                        ));
                    }
                    if let Some(tx) = &tx {
                        self.seen.push(seen(tx, &body, &a));
                        self.seen.push(seen(tx, &body, &b));
                    }
                    Some(a)
                }
                // Not both answered: settle it the ordinary way (a retry).
                _ => self.until_final(&encoded, until).await,
            }
        } else {
            self.until_final(&encoded, until).await
        };
        let response = response?;
        self.maybe_retry_late(&encoded).await;
        let (want_core, want_balance) = model.apply(op);
        let want_status = self.client.provider().expect(encoded.op, want_core);
        let want_balance = gateway_balance(want_balance);
        if response.status != want_status
            || response.balance.as_deref() != Some(want_balance.as_str())
        {
            self.violations.0.push(format!(
                "player {} {op:?}: expected {want_status} balance {want_balance}, got {} balance {:?}",
                model.name, response.status, response.balance
            ));
        }
        Some(response)
    }

    /// One game round for `model`'s player.
    pub(crate) async fn play_round(&mut self, model: &mut PlayerModel, round_no: u64) {
        let faults = self.options.faults;
        let round = format!("sim-{}-{}-r{round_no}", self.options.tag, model.name);
        let bets = 1 + self.rng.below(3);
        let mut rolled_back = Vec::new();
        for k in 0..bets {
            let tx = format!("{round}-b{k}");
            let amount = 1 + self.rng.below(5_000) as i64;
            let bet = Op::Bet {
                tx: tx.clone(),
                amount,
                round: round.clone(),
            };
            if self.rng.chance(faults.rollback_first) {
                self.counts.fault("rollback_first");
                let rollback = Op::Rollback {
                    tx: format!("{tx}-x"),
                    reference: tx.clone(),
                };
                self.perform(model, &rollback, Until::Final).await;
                self.perform(model, &bet, Until::Final).await;
                continue;
            }
            // A bet is retried a few times; then, like a provider whose player has gone, the
            // bet is reversed with a rollback that may overtake the bet itself.
            if self
                .perform(model, &bet, Until::Attempts(4))
                .await
                .is_none()
            {
                self.counts.fault("abandoned_bet");
                let provider = self.client.provider().clone();
                let encoded = provider.encode(
                    &model.name,
                    &Op::Rollback {
                        tx: format!("{tx}-x"),
                        reference: tx.clone(),
                    },
                );
                self.counts.operations.fetch_add(1, Ordering::Relaxed);
                // Whichever came first, the bet or its rollback: done, or tombstoned.
                let done = [
                    provider.expect(OpKind::Rollback, "OK"),
                    provider.expect(OpKind::Rollback, "TRANSACTION_NOT_FOUND"),
                ];
                match self.until_final(&encoded, Until::Final).await {
                    Some(r) if done.contains(&r.status) => model.bet_abandoned(&tx, &round),
                    other => self
                        .violations
                        .0
                        .push(format!("rollback of abandoned bet {tx}: {other:?}")),
                }
                continue;
            }
            if self.rng.chance(faults.mismatch) {
                self.counts.fault("mismatch");
                let provider = self.client.provider().clone();
                let mut encoded = provider.encode(
                    &model.name,
                    &Op::Bet {
                        tx: tx.clone(),
                        amount: amount + 1,
                        round: round.clone(),
                    },
                );
                // Its answer is not stored (it reports the balance now): not compared by id.
                encoded.tx = None;
                self.counts.operations.fetch_add(1, Ordering::Relaxed);
                let want = provider.expect(OpKind::Bet, "DUPLICATE_MISMATCH");
                match self.until_final(&encoded, Until::Final).await {
                    Some(r)
                        if r.status == want
                            && r.balance == Some(gateway_balance(model.balance)) => {}
                    other => self
                        .violations
                        .0
                        .push(format!("mismatched duplicate of {tx}: {other:?}")),
                }
            }
            if self.rng.chance(0.1) {
                let rollback = Op::Rollback {
                    tx: format!("{tx}-x"),
                    reference: tx.clone(),
                };
                self.perform(model, &rollback, Until::Final).await;
                rolled_back.push(tx);
            }
        }
        let provider = self.client.provider().clone();
        if let Some(bet) = rolled_back.first() {
            // Only dialects whose wins name their bet can pay a rolled-back one.
            if provider.wins_name_bets() && self.rng.chance(faults.win_after_rollback) {
                self.counts.fault("win_after_rollback");
                let win = Op::Win {
                    tx: format!("{round}-wr"),
                    amount: 100,
                    round: round.clone(),
                    bet: Some(bet.clone()),
                    promo: false,
                };
                self.perform(model, &win, Until::Final).await;
            }
        }
        if self.rng.chance(0.6) {
            let amount = if self.rng.chance(0.3) {
                0
            } else {
                self.rng.below(10_000) as i64
            };
            let open = model.open_bets(&round);
            let name_one = provider.wins_need_named_bets() || self.rng.chance(0.5);
            let named = if provider.wins_name_bets() && !open.is_empty() && name_one {
                Some(open[0].clone())
            } else {
                None
            };
            // Dialects that need a named bet, or wait for one, get no win the round cannot take.
            let payable = (named.is_some() || !provider.wins_need_named_bets())
                && (!provider.wins_wait_for_bets() || model.has_applied_bet(&round))
                && (named.is_some() || model.unnamed_win_is_certain(&round));
            if payable {
                let win = Op::Win {
                    tx: format!("{round}-w"),
                    amount,
                    round: round.clone(),
                    bet: named,
                    promo: false,
                };
                self.perform(model, &win, Until::Final).await;
            }
        }
        if self.rng.chance(0.05) {
            let promo = Op::Win {
                tx: format!("{round}-promo"),
                amount: 500,
                round: format!("{round}-promo"),
                bet: None,
                promo: true,
            };
            self.perform(model, &promo, Until::Final).await;
        }
        if provider.ends_rounds() && self.rng.chance(0.7) {
            self.perform(
                model,
                &Op::EndRound {
                    round: round.clone(),
                },
                Until::Final,
            )
            .await;
        }
    }
}

pub(crate) fn seen(tx: &str, payload: &[u8], r: &dialects::wire::Response) -> Seen {
    Seen {
        tx: tx.to_string(),
        payload: payload.to_vec(),
        status: r.status.clone(),
        balance: r.balance.clone(),
        operator_tx_id: r.operator_transaction_id.clone(),
    }
}

/// EUR minor units as the native dialect writes them.
pub(crate) fn gateway_balance(minor: i64) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}
