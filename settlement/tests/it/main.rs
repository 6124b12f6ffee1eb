//! The settlement lanes against a real PostgreSQL, with failures forced through the fault seam:
//! what a batch does when a statement fails, a conflict or a deadlock strikes, the connection
//! dies, a deadline passes or the queue is full; drain at shutdown; a settler restarted with
//! nothing in memory; two settlers (two gateways) on one database.

mod failures;
mod lanes;
mod model;
mod plans;

use std::sync::Arc;
use std::time::Duration;

use settlement::batch::{Options, Settler, Unavailable};
use settlement::command::{
    Action, Answer, Command, GameId, Money, PlayerRef, ProviderId, ProviderTxId, RoundId,
};
use settlement::fault::{Effect, Point, Trigger};
use settlement::money::Currency;
use settlement::test_util::{fresh_database, TestDb};
use settlement::{Code, Policy};

/// Players `player-1 ..= player-<PLAYERS>` with EUR 1,000.00 each.
pub const PLAYERS: u32 = 20;
pub const OPENING_MINOR: i64 = 100_000;

pub struct Fixture {
    pub db: TestDb,
    pub provider: ProviderId,
}

/// A fresh database with one provider and the seeded players.
pub async fn fixture() -> Fixture {
    let db = fresh_database().await;
    let client = db.connect().await;
    let provider = settlement::store::upsert_provider(&client, "p", "native", true)
        .await
        .expect("provider");
    settlement::store::seed_demo_players(&client, "player-", PLAYERS, "EUR", OPENING_MINOR)
        .await
        .expect("players");
    Fixture {
        db,
        provider: ProviderId(provider),
    }
}

pub fn options() -> Options {
    Options {
        lanes: 1,
        batch_len_max: 512,
        batch_wait_max: Duration::ZERO,
        linger_from: 1,
        queue_len_max: 1024,
        deadline: Duration::from_secs(10),
        busy_patience: Duration::from_millis(50),
        transaction_timeout: Duration::from_secs(20),
    }
}

impl Fixture {
    pub async fn settler(&self, options: Options) -> Settler {
        Settler::start(self.db.config.clone(), options)
            .await
            .expect("settler starts")
    }

    fn command(&self, player: u32, action: Action) -> Command {
        Command::new(
            self.provider,
            Policy::default(),
            PlayerRef::new(format!("player-{player}")).expect("player"),
            action,
        )
    }

    pub fn bet(&self, player: u32, tx: &str, amount_minor: i64) -> Command {
        self.command(
            player,
            Action::Bet {
                money: money(tx, amount_minor, &format!("r-{tx}")),
                session: None,
            },
        )
    }

    pub fn win(&self, player: u32, tx: &str, amount_minor: i64, bet: &str) -> Command {
        self.command(
            player,
            Action::Win {
                money: money(tx, amount_minor, &format!("r-{bet}")),
                bet_tx: Some(ProviderTxId::new(bet).expect("id")),
            },
        )
    }

    /// The player's EUR balance and the number of its ledger rows.
    pub async fn wallet(&self, player: u32) -> (i64, i64) {
        let client = self.db.connect().await;
        let row = client
            .query_one(
                "SELECT w.balance, (SELECT count(*) FROM transactions t WHERE t.player_id = p.id)
                 FROM players p JOIN wallets w ON w.player_id = p.id AND w.currency = 'EUR'
                 WHERE p.external_id = $1",
                &[&format!("player-{player}")],
            )
            .await
            .expect("wallet");
        (row.get(0), row.get(1))
    }

    /// Ledger rows and rounds of the whole database.
    pub async fn rows(&self) -> (i64, i64) {
        let client = self.db.connect().await;
        let row = client
            .query_one(
                "SELECT (SELECT count(*) FROM transactions), (SELECT count(*) FROM rounds)",
                &[],
            )
            .await
            .expect("counts");
        (row.get(0), row.get(1))
    }

    /// Every wallet equals the sum of its ledger rows.
    pub async fn assert_no_drift(&self) {
        settlement::test_util::assert_ledger_matches(&self.db.connect().await).await;
    }
}

fn money(tx: &str, amount_minor: i64, round: &str) -> Money {
    Money {
        tx: ProviderTxId::new(tx).expect("id"),
        currency: Currency::from_code("EUR").expect("EUR"),
        amount_minor,
        round: RoundId::new(round).expect("round"),
        game: GameId::new("g").expect("game"),
        round_closed: false,
    }
}

/// An OK answer's balance.
pub fn ok(result: &Result<Answer, Unavailable>) -> i64 {
    match result {
        Ok(answer) if answer.code == Code::Ok => answer.balance_minor,
        other => panic!("expected OK, got {other:?}"),
    }
}

/// Settles `first` in a batch held up by a stall failpoint while `rest` queue behind it, so the
/// lane takes all of `rest` as its next batch. Returns the answers of `first` and of `rest`.
pub async fn behind_a_stalled_batch(
    settler: &Arc<Settler>,
    first: Command,
    rest: Vec<Command>,
) -> (
    Result<Answer, Unavailable>,
    Vec<Result<Answer, Unavailable>>,
) {
    settler
        .faults()
        .add(Point::Prefetch, Effect::StallMs(300), Trigger::Always, 1);
    let first = tokio::spawn({
        let settler = settler.clone();
        async move { settler.settle(first).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let rest: Vec<_> = rest
        .into_iter()
        .map(|command| {
            let settler = settler.clone();
            tokio::spawn(async move { settler.settle(command).await })
        })
        .collect();
    let first = first.await.expect("task");
    let mut answers = Vec::new();
    for task in rest {
        answers.push(task.await.expect("task"));
    }
    (first, answers)
}
