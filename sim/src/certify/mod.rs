//! `sim certify`: a provider's certification suite run against any wallet that speaks one of
//! our dialects — ours or an operator's own. It talks HTTP only, learns balances through the
//! dialect's balance call, moves small amounts and leaves every balance where it found it
//! (each scenario checks that it did). The scenarios live in `scenarios.rs`, the wire and its
//! recording in `session.rs`, the certificate's formats in `report.rs`.

pub mod report;
mod scenarios;
mod session;

use std::time::{Duration, Instant};

pub use scenarios::{Id, Scenario, SCENARIOS};
pub use session::Exchange;

use crate::client::Client;
use crate::dialect::{Kind, Provider};
use session::{money, Session};

/// What to certify and against what.
#[derive(Debug, Clone)]
pub struct Options {
    /// The wallet: `http://host:port` (callbacks under `/api/provider-callback/{code}/`) or
    /// `http://host:port/path` (callbacks under `/path/`).
    pub target: String,
    pub providers: Vec<Provider>,
    /// Players with funds; provider `i` plays with player `i % len`. Providers that share a
    /// player run one after another, so no scenario sees another's money move.
    pub players: Vec<String>,
    /// How long a call may stay without a final answer (it is retried meanwhile).
    pub patience: Duration,
    /// Unique to this run: every id the kit sends carries it.
    pub tag: String,
}

/// One scenario's result for one provider.
#[derive(Debug)]
pub struct Outcome {
    pub provider: String,
    pub kind: Kind,
    pub scenario: &'static Scenario,
    pub player: String,
    pub result: Result<(), String>,
    pub exchanges: Vec<Exchange>,
    pub elapsed: Duration,
    /// The player's balance before and after, when the balance call answered.
    pub before: Option<i64>,
    pub after: Option<i64>,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.result.is_ok()
    }

    /// The console line: `PASS demo-pp pragmatic duplicate-bet-same-answer 41 ms`.
    pub fn line(&self) -> String {
        let verdict = match (&self.result, self.scenario.mandatory) {
            (Ok(()), _) => "PASS",
            (Err(_), true) => "FAIL",
            (Err(_), false) => "FAIL (advisory)",
        };
        let mut line = format!(
            "{verdict} {} {} {} {} ms",
            self.provider,
            self.kind.name(),
            self.scenario.name,
            self.elapsed.as_millis()
        );
        if let Err(reason) = &self.result {
            line.push_str(": ");
            line.push_str(reason);
        }
        line
    }
}

/// Every outcome of a run.
#[derive(Debug)]
pub struct Certificate {
    pub target: String,
    pub outcomes: Vec<Outcome>,
    pub elapsed: Duration,
}

impl Certificate {
    pub fn passed(&self) -> usize {
        self.outcomes.iter().filter(|o| o.passed()).count()
    }

    pub fn failed(&self) -> usize {
        self.outcomes.len() - self.passed()
    }

    /// Every mandatory scenario passed.
    pub fn certified(&self) -> bool {
        self.outcomes
            .iter()
            .all(|o| o.passed() || !o.scenario.mandatory)
    }

    /// The last line: `N passed, M failed`.
    pub fn summary(&self) -> String {
        format!("{} passed, {} failed", self.passed(), self.failed())
    }
}

/// Runs every scenario that applies to each provider's dialect.
pub async fn run(options: &Options) -> Result<Certificate, String> {
    if options.providers.is_empty() {
        return Err("no provider to certify".into());
    }
    if options.players.is_empty() {
        return Err("no player to certify with".into());
    }
    let started = Instant::now();
    // Providers sharing a player run in turn; different players run at once.
    let mut groups: Vec<(String, Vec<Provider>)> = Vec::new();
    for (i, provider) in options.providers.iter().enumerate() {
        let player = &options.players[i % options.players.len()];
        match groups.iter_mut().find(|(p, _)| p == player) {
            Some((_, providers)) => providers.push(provider.clone()),
            None => groups.push((player.clone(), vec![provider.clone()])),
        }
    }
    let mut tasks = Vec::new();
    for (player, providers) in groups {
        let options = options.clone();
        tasks.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            for provider in providers {
                outcomes.extend(certify_provider(&options, provider, &player).await?);
            }
            Ok::<_, String>(outcomes)
        }));
    }
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.extend(task.await.map_err(|e| e.to_string())??);
    }
    // In the order the providers were given, scenarios in table order.
    let order = |o: &Outcome| options.providers.iter().position(|p| p.code == o.provider);
    outcomes.sort_by_key(|o| order(o));
    Ok(Certificate {
        target: options.target.clone(),
        outcomes,
        elapsed: started.elapsed(),
    })
}

async fn certify_provider(
    options: &Options,
    provider: Provider,
    player: &str,
) -> Result<Vec<Outcome>, String> {
    let code = provider.code.clone();
    let kind = provider.kind;
    let client = Client::to_url(&options.target, provider)?;
    let mut outcomes = Vec::new();
    for (n, scenario) in SCENARIOS.iter().enumerate() {
        if !(scenario.applies)(kind) {
            continue;
        }
        let mut session = Session::new(
            client.clone(),
            player.to_string(),
            // The player too: one provider given twice (two players) must not share ids.
            format!("{}-{player}-{n}", options.tag),
            options.patience,
        );
        let started = Instant::now();
        let before = session.balance().await;
        // Generous: a scenario makes a dozen calls, each allowed the patience.
        let limit = options.patience * 4 + Duration::from_secs(10);
        let mut result = match &before {
            Err(e) => Err(format!("the balance call before the scenario: {e}")),
            Ok(opening) => {
                match tokio::time::timeout(
                    limit,
                    scenarios::play(scenario.id, &mut session, *opening),
                )
                .await
                {
                    Ok(result) => result,
                    Err(_) => Err(format!("did not finish in {} s", limit.as_secs())),
                }
            }
        };
        let after = session.balance().await.ok();
        if let (Ok(()), Ok(b), Some(a)) = (&result, &before, after) {
            if a != *b {
                result = Err(format!(
                    "left the balance at {} (it was {})",
                    money(a),
                    money(*b)
                ));
            }
        }
        outcomes.push(Outcome {
            provider: code.clone(),
            kind,
            scenario,
            player: player.to_string(),
            result,
            exchanges: session.exchanges,
            elapsed: started.elapsed(),
            before: before.ok(),
            after,
        });
    }
    Ok(outcomes)
}
