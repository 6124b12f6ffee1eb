//! Shared fixtures for the criterion benchmarks in `benches/`: a prefetched world and batches
//! of commands shaped like real traffic.

use settlement::apply::{Player, Wallet, World};
use settlement::command::{
    Action, Command, GameId, Money, PlayerRef, Policy, ProviderId, ProviderTxId, RoundId,
};
use settlement::money::Currency;

pub const PROVIDER: ProviderId = ProviderId(1);

/// `players` players with EUR 1000.00 each, and ids reserved for `ids` rows.
pub fn world(players: usize, ids: usize) -> World {
    let eur = Currency::from_code("EUR").expect("EUR");
    let mut world = World::default();
    for i in 0..players {
        world.players.insert(
            PlayerRef::new(format!("player-{}", i + 1)).expect("id"),
            Player {
                id: i as i64 + 1,
                blocked: false,
                wallets: vec![Wallet {
                    currency: eur,
                    balance_minor: 100_000,
                    bonus_minor: 0,
                    needs_reconciliation: false,
                    changed: false,
                }],
                limits: Vec::new(),
            },
        );
    }
    world.ids = (1..=ids as i64).rev().collect();
    world
}

/// A bet, then (for every other bet) a win naming it: `len` commands over `players` players.
pub fn batch(len: usize, players: usize, run: u64) -> Vec<Command> {
    let eur = Currency::from_code("EUR").expect("EUR");
    (0..len)
        .map(|i| {
            let player = PlayerRef::new(format!("player-{}", 1 + i % players)).expect("id");
            let bet_id = format!("r{run}-b{}", i - i % 2);
            let money = |tx: String| Money {
                tx: ProviderTxId::new(tx).expect("tx"),
                currency: eur,
                amount_minor: 150,
                round: RoundId::new(format!("r{run}-round{}", i - i % 2)).expect("round"),
                game: GameId::new("slot-1").expect("game"),
                round_closed: false,
            };
            let action = if i % 2 == 0 {
                Action::Bet {
                    money: money(bet_id),
                    session: None,
                }
            } else {
                Action::Win {
                    money: money(format!("r{run}-w{i}")),
                    bet_tx: ProviderTxId::new(bet_id),
                }
            };
            Command::new(PROVIDER, Policy::default(), player, action)
        })
        .collect()
}
