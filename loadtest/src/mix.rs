//! The traffic mixes: what a provider may send, as sequences of signed callbacks. Each mix is a
//! shape of rounds (how bets, wins and rollbacks of a round follow each other, which ids they
//! name, how often calls are retried) over one provider, or over every demo provider; the
//! operations are encoded and signed by the simulator's dialects (`sim::dialect`), the same
//! code the simulator checks the gateway with.
#![allow(clippy::float_arithmetic)] // shares of calls, never money

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use clap::ValueEnum;
use sim::dialect::{OpKind, Provider, Send};
use sim::model::Op;

/// The shapes of traffic `--mix` offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shape {
    /// Bets on new rounds, wins naming their bet (where the dialect names bets), rollbacks
    /// of recent bets, balance calls.
    BetWin,
    /// Wins name only their round (no bet id, where the dialect allows it): the gateway finds
    /// the round's open bets. Rounds stay open for a while (a win comes about a second after
    /// the round's first bet), some take more bets meanwhile, a quarter never get a win.
    RoundOnly,
    /// Two to four bets on a round, then one win for the whole round.
    MultiBet,
    /// Rollbacks before their bets (a tombstone: the bet that comes later is refused) and
    /// after them (a refund), among bets and wins.
    Refunds,
    /// The bet-win shape with 30 % of calls repeating an earlier call, in any order.
    RetriesHeavy,
    /// The bet-win shape over all five demo providers (`demo`, `demo-pp`, `demo-evo`,
    /// `demo-hub88`, `demo-ss`), Hub88-style calls at `--hub88-percent` (RSA signing is the
    /// generator's own cost: those calls are signed before the clock starts).
    EveryDialect,
}

impl Shape {
    pub fn name(self) -> &'static str {
        match self {
            Shape::BetWin => "bet-win",
            Shape::RoundOnly => "round-only",
            Shape::MultiBet => "multi-bet",
            Shape::Refunds => "refunds",
            Shape::RetriesHeavy => "retries-heavy",
            Shape::EveryDialect => "every-dialect",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Bet,
    Win,
    Rollback,
    Duplicate,
    Balance,
    Ping,
    Login,
    Report,
}

/// One request. Native calls are signed when sent (their signature carries the time); other
/// dialects' are signed once, when made.
#[derive(Clone)]
pub struct Call {
    /// The player the call is for (`--route-by-player`); 0 when it names none.
    pub player: u32,
    pub path: Arc<str>,
    pub body: Bytes,
    /// The provider of a non-native call, its signed headers, and how to read its answer.
    pub dialect: Option<(Arc<Provider>, Headers, OpKind)>,
}

/// Headers of a signed dialect call.
pub type Headers = Arc<[(&'static str, String)]>;

/// A provider the mix sends as: native calls are left to be signed at send time.
struct Target {
    provider: Arc<Provider>,
    /// Share of the calls, in percent (every-dialect), else 100.
    percent: u32,
}

/// A call made but not signed yet.
struct Planned {
    kind: Kind,
    target: usize,
    player: u32,
    op: Op,
}

/// What the recent calls left to refer to.
#[derive(Clone, Copy)]
struct Bet {
    target: usize,
    player: u32,
    id: u64,
    round: u64,
}

/// Calls remembered for retries, bets for wins and rollbacks.
const RECENT: usize = 4_096;
/// Round-only: a win goes to one of the oldest open rounds once this many are open (at 9,000
/// calls a second about a second after the round began). The first wins come at once, while
/// the tables are still nearly empty: the bound grows with the calls made until it gets here.
const OPEN_ROUNDS_MIN: usize = 3_000;
/// Multi-bet: rounds collecting their bets at once.
const BUILDING: usize = 256;

/// Makes the calls of one mix, deterministically from its seed.
pub struct Mix {
    shape: Shape,
    targets: Vec<Target>,
    players: u32,
    duplicate_percent: u32,
    rng: harness::rng::Rng,
    next_id: u64,
    run: u64,
    recent_bets: Vec<Bet>,
    recent_requests: Vec<(Kind, Call)>,
    /// Round-only: rounds with bets and no win yet, oldest first.
    open_rounds: VecDeque<Bet>,
    /// Multi-bet: rounds taking their bets, with how many they have and want.
    building: Vec<(Bet, u32, u32)>,
    /// Refunds: bets whose rollback went first, due after the call of that number.
    late_bets: VecDeque<(u64, Bet)>,
    calls: u64,
    /// Every-dialect: Hub88-style calls signed before the run, taken in order.
    presigned: VecDeque<(Kind, Call)>,
}

impl Mix {
    /// `provider` is the single provider (`--provider`) unless the shape is every-dialect,
    /// which takes the five demo providers (`hub88_key` signs the Hub88-style one).
    pub fn new(
        shape: Shape,
        provider: Provider,
        players: u32,
        duplicate_percent: u32,
        hub88_percent: u32,
        hub88_key: &std::path::Path,
        seed: u64,
    ) -> Result<Mix, String> {
        let targets = if shape == Shape::EveryDialect {
            let others = (100 - hub88_percent.min(100)) / 4;
            sim::dialect::DEMO
                .iter()
                .map(|(code, kind, _)| {
                    let percent = if *kind == sim::dialect::Kind::Hub88 {
                        hub88_percent.min(100)
                    } else {
                        others
                    };
                    Ok(Target {
                        provider: Arc::new(Provider::demo(code, hub88_key)?),
                        percent,
                    })
                })
                .collect::<Result<Vec<_>, String>>()?
        } else {
            vec![Target {
                provider: Arc::new(provider),
                percent: 100,
            }]
        };
        Ok(Mix {
            shape,
            targets,
            players,
            duplicate_percent: if shape == Shape::RetriesHeavy {
                30
            } else {
                duplicate_percent
            },
            rng: harness::rng::Rng::new(seed | 1),
            next_id: 0,
            run: seed % 1_000_000_007,
            recent_bets: Vec::new(),
            recent_requests: Vec::new(),
            open_rounds: VecDeque::new(),
            building: Vec::new(),
            late_bets: VecDeque::new(),
            calls: 0,
            presigned: VecDeque::new(),
        })
    }

    pub fn next_u32(&mut self, below: u32) -> u32 {
        ((self.rng.next_u64() >> 32) % u64::from(below.max(1))) as u32
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn tx(&self, letter: char, id: u64) -> String {
        format!("lt{}-{letter}{id}", self.run)
    }

    /// The next call of the mix.
    pub fn next(&mut self) -> (Kind, Call) {
        self.calls += 1;
        if self.next_u32(100) < self.duplicate_percent && !self.recent_requests.is_empty() {
            let i = self.next_u32(self.recent_requests.len() as u32) as usize;
            let (_, call) = self.recent_requests[i].clone();
            return (Kind::Duplicate, call);
        }
        let target = self.pick_target();
        if self.targets[target].provider.kind == sim::dialect::Kind::Hub88 {
            if let Some((kind, call)) = self.presigned.pop_front() {
                self.remember(kind, &call);
                return (kind, call);
            }
        }
        let planned = self.plan(target);
        let (kind, call) = self.sign(planned);
        self.remember(kind, &call);
        (kind, call)
    }

    /// Signs Hub88-style calls for `calls` calls of the run ahead of time, on every core
    /// (every-dialect only; RSA signing would otherwise hold the schedule back). They come
    /// from a mix of their own, so they never wait on this one's state.
    pub fn presign(&mut self, calls: u64) {
        let Some(hub88) = self
            .targets
            .iter()
            .position(|t| t.provider.kind == sim::dialect::Kind::Hub88)
        else {
            return;
        };
        let count = (calls * u64::from(self.targets[hub88].percent)).div_ceil(100) + 100;
        let provider = (*self.targets[hub88].provider).clone();
        let seed = self.rng.next_u64();
        let mut own = Mix::new(
            Shape::BetWin,
            provider,
            self.players,
            0,
            0,
            std::path::Path::new(""),
            seed,
        )
        .expect("a single-provider mix");
        own.run = self.run ^ 0x4855_4238;
        let planned: Vec<Planned> = (0..count).map(|_| own.plan(0)).collect();
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let chunk = planned.len().div_ceil(threads).max(1);
        let signed: Vec<Vec<(Kind, Call)>> = std::thread::scope(|scope| {
            let handles: Vec<_> = planned
                .chunks(chunk)
                .map(|part| scope.spawn(|| part.iter().map(|p| own.sign_ref(p)).collect()))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("signing thread"))
                .collect()
        });
        self.presigned = signed.into_iter().flatten().collect();
    }

    fn pick_target(&mut self) -> usize {
        if self.targets.len() == 1 {
            return 0;
        }
        let total: u32 = self.targets.iter().map(|t| t.percent).sum();
        let mut roll = self.next_u32(total.max(1));
        for (i, t) in self.targets.iter().enumerate() {
            if roll < t.percent {
                return i;
            }
            roll -= t.percent;
        }
        0
    }

    fn remember(&mut self, kind: Kind, call: &Call) {
        if kind != Kind::Balance {
            let entry = (kind, call.clone());
            if self.recent_requests.len() < RECENT {
                self.recent_requests.push(entry);
            } else {
                let slot = self.next_u32(RECENT as u32) as usize;
                self.recent_requests[slot] = entry;
            }
        }
    }

    fn remember_bet(&mut self, bet: Bet) {
        if self.recent_bets.len() < RECENT {
            self.recent_bets.push(bet);
        } else {
            self.recent_bets[(bet.id as usize) % RECENT] = bet;
        }
    }

    /// A recent bet of `target`'s, if any.
    fn recent_bet(&mut self, target: usize) -> Option<Bet> {
        for _ in 0..8 {
            if self.recent_bets.is_empty() {
                return None;
            }
            let i = self.next_u32(self.recent_bets.len() as u32) as usize;
            let bet = self.recent_bets[i];
            if bet.target == target {
                return Some(bet);
            }
        }
        None
    }

    fn bet_op(&mut self, bet: Bet) -> Planned {
        let amount = i64::from(1 + self.next_u32(200));
        let op = Op::Bet {
            tx: self.tx('b', bet.id),
            amount,
            round: self.tx('r', bet.round),
        };
        self.remember_bet(bet);
        Planned {
            kind: Kind::Bet,
            target: bet.target,
            player: bet.player,
            op,
        }
    }

    /// A bet of a random player that opens a round of its own (not sent yet).
    fn fresh_bet(&mut self, target: usize) -> Bet {
        let player = 1 + self.next_u32(self.players);
        let id = self.id();
        Bet {
            target,
            player,
            id,
            round: id,
        }
    }

    /// A bet that opens a new round, and the bet (for the shapes that come back to it).
    fn new_round(&mut self, target: usize) -> (Planned, Bet) {
        let bet = self.fresh_bet(target);
        (self.bet_op(bet), bet)
    }

    fn new_bet(&mut self, target: usize) -> Planned {
        self.new_round(target).0
    }

    /// A win of `bet`'s round: naming the bet where the dialect names bets and `name_bet`
    /// says so (or where the dialect cannot do without).
    fn win_op(&mut self, bet: Bet, name_bet: bool) -> Planned {
        let provider = &self.targets[bet.target].provider;
        let named = (name_bet && provider.wins_name_bets()) || provider.wins_need_named_bets();
        let id = self.id();
        let op = Op::Win {
            tx: self.tx('w', id),
            amount: i64::from(self.next_u32(400)),
            round: self.tx('r', bet.round),
            bet: named.then(|| self.tx('b', bet.id)),
            promo: false,
        };
        Planned {
            kind: Kind::Win,
            target: bet.target,
            player: bet.player,
            op,
        }
    }

    fn rollback_op(&mut self, bet: Bet) -> Planned {
        let id = self.id();
        Planned {
            kind: Kind::Rollback,
            target: bet.target,
            player: bet.player,
            op: Op::Rollback {
                tx: self.tx('x', id),
                reference: self.tx('b', bet.id),
            },
        }
    }

    fn balance_op(&mut self, target: usize) -> Planned {
        Planned {
            kind: Kind::Balance,
            target,
            player: 1 + self.next_u32(self.players),
            op: Op::Balance,
        }
    }

    /// The next operation of the shape, for `target`.
    fn plan(&mut self, target: usize) -> Planned {
        let roll = self.next_u32(100);
        match self.shape {
            Shape::BetWin | Shape::RetriesHeavy | Shape::EveryDialect => {
                let recent = if roll < 90 {
                    self.recent_bet(target)
                } else {
                    None
                };
                match recent {
                    Some(bet) if (50..85).contains(&roll) => self.win_op(bet, true),
                    Some(bet) if (85..90).contains(&roll) => self.rollback_op(bet),
                    _ if roll >= 90 => self.balance_op(target),
                    _ => self.new_bet(target),
                }
            }
            Shape::RoundOnly => self.plan_round_only(target, roll),
            Shape::MultiBet => self.plan_multi_bet(target, roll),
            Shape::Refunds => self.plan_refunds(target, roll),
        }
    }

    fn plan_round_only(&mut self, target: usize, roll: u32) -> Planned {
        // A win of a round no bet opened (a jackpot or a promotion, paid as the policy allows
        // wins without a bet): the first call, while every table is empty, and 1 % after.
        let provider = &self.targets[target].provider;
        let unopened_wins = !provider.wins_wait_for_bets() && !provider.wins_need_named_bets();
        if unopened_wins && (self.calls == 1 || roll == 89) {
            let (player, id) = (1 + self.next_u32(self.players), self.id());
            return Planned {
                kind: Kind::Win,
                target,
                player,
                op: Op::Win {
                    tx: self.tx('w', id),
                    amount: i64::from(1 + self.next_u32(400)),
                    round: self.tx('r', id),
                    bet: None,
                    promo: false,
                },
            };
        }
        if roll >= 90 {
            return self.balance_op(target);
        }
        if (80..85).contains(&roll) {
            if let Some(bet) = self.recent_bet(target) {
                return self.rollback_op(bet);
            }
        }
        let open_min = OPEN_ROUNDS_MIN.min(1 + self.calls as usize / 10);
        if (45..80).contains(&roll) && self.open_rounds.len() >= open_min {
            // One of the oldest open rounds gets its win, naming no bet.
            let i = self.next_u32(64) as usize;
            if let Some(bet) = self.open_rounds.remove(i) {
                return self.win_op(bet, false);
            }
        }
        if roll < 15 && !self.open_rounds.is_empty() {
            // Another bet on a round that is still open (the same player's).
            let i = self.next_u32(self.open_rounds.len() as u32) as usize;
            let round = self.open_rounds[i];
            let id = self.id();
            let planned = self.bet_op(Bet { id, ..round });
            // Its win names the newest bet where a win must name one.
            self.open_rounds[i].id = id;
            return planned;
        }
        let (planned, bet) = self.new_round(target);
        // A quarter of the rounds never get a win (left open for good).
        if self.next_u32(4) != 0 {
            self.open_rounds.push_back(bet);
        }
        planned
    }

    fn plan_multi_bet(&mut self, target: usize, roll: u32) -> Planned {
        if roll >= 92 {
            return self.balance_op(target);
        }
        if roll >= 89 {
            if let Some(bet) = self.recent_bet(target) {
                return self.rollback_op(bet);
            }
        }
        if self.building.len() < BUILDING || roll < 10 {
            let (planned, bet) = self.new_round(target);
            let wanted = 2 + self.next_u32(3);
            if self.building.len() < BUILDING * 2 {
                self.building.push((bet, 1, wanted));
            }
            return planned;
        }
        let i = self.next_u32(self.building.len() as u32) as usize;
        let (round, placed, wanted) = self.building[i];
        if placed < wanted {
            let id = self.id();
            let planned = self.bet_op(Bet { id, ..round });
            self.building[i] = (Bet { id, ..round }, placed + 1, wanted);
            planned
        } else {
            self.building.swap_remove(i);
            self.win_op(round, false)
        }
    }

    fn plan_refunds(&mut self, target: usize, roll: u32) -> Planned {
        if let Some(&(due, bet)) = self.late_bets.front() {
            if due <= self.calls && bet.target == target {
                self.late_bets.pop_front();
                return self.bet_op(bet);
            }
        }
        match roll {
            0..35 => self.new_bet(target),
            35..55 => match self.recent_bet(target) {
                Some(bet) => self.win_op(bet, true),
                None => self.new_bet(target),
            },
            55..70 => match self.recent_bet(target) {
                Some(bet) => self.rollback_op(bet),
                None => self.new_bet(target),
            },
            70..85 => {
                // The rollback of a bet that has not been sent yet; the bet follows later.
                let bet = self.fresh_bet(target);
                let due = self.calls + 50 + u64::from(self.next_u32(500));
                self.late_bets.push_back((due, bet));
                self.rollback_op(bet)
            }
            _ => self.balance_op(target),
        }
    }

    fn sign(&self, planned: Planned) -> (Kind, Call) {
        self.sign_ref(&planned)
    }

    fn sign_ref(&self, planned: &Planned) -> (Kind, Call) {
        let provider = &self.targets[planned.target].provider;
        let encoded = provider.encode(&format!("player-{}", planned.player), &planned.op);
        let call = if provider.kind == sim::dialect::Kind::Native {
            Call {
                player: planned.player,
                path: format!("/api/provider-callback/{}/{}", provider.code, encoded.path).into(),
                body: Bytes::from(encoded.body),
                dialect: None,
            }
        } else {
            let signed = provider.sign(&encoded, Send::Signed);
            Call {
                player: planned.player,
                path: format!(
                    "/api/provider-callback/{}/{}",
                    provider.code, signed.path_and_query
                )
                .into(),
                body: Bytes::from(signed.body),
                dialect: Some((provider.clone(), signed.headers.into(), encoded.op)),
            }
        };
        (planned.kind, call)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn native() -> Provider {
        Provider::new("demo", sim::dialect::Kind::Native, "demo-secret", None).unwrap()
    }

    fn bodies(shape: Shape, n: usize) -> Vec<(Kind, String)> {
        let mut mix = Mix::new(shape, native(), 100, 0, 0, std::path::Path::new(""), 7).unwrap();
        (0..n)
            .map(|_| {
                let (kind, call) = mix.next();
                (kind, String::from_utf8_lossy(&call.body).into_owned())
            })
            .collect()
    }

    #[test]
    fn round_only_wins_name_no_bet_and_come_after_their_rounds_bets() {
        let calls = bodies(Shape::RoundOnly, 20_000);
        let wins: Vec<&String> = calls
            .iter()
            .filter(|(k, _)| *k == Kind::Win)
            .map(|(_, b)| b)
            .collect();
        assert!(wins.len() > 3_000, "{}", wins.len());
        assert!(wins.iter().all(|b| !b.contains("bet_transaction_id")));
        // Every win's round had a bet before it.
        let round_of = |body: &str| {
            let round = body.split(r#""round_id":""#).nth(1).unwrap();
            round[..round.find('"').unwrap()].to_string()
        };
        // Every win's round had a bet before it, but the jackpots of rounds no bet opened:
        // the first call, and about 1 % after.
        let mut bet_rounds = std::collections::HashSet::new();
        let mut unopened = Vec::new();
        for (i, (kind, body)) in calls.iter().enumerate() {
            match kind {
                Kind::Bet => {
                    bet_rounds.insert(round_of(body));
                }
                Kind::Win if !bet_rounds.contains(&round_of(body)) => unopened.push(i),
                _ => {}
            }
        }
        assert_eq!(unopened.first(), Some(&0), "a jackpot comes first");
        assert!(
            (100..=400).contains(&unopened.len()),
            "{} wins of unopened rounds",
            unopened.len()
        );
    }

    #[test]
    fn multi_bet_rounds_take_several_bets_then_one_win() {
        let calls = bodies(Shape::MultiBet, 20_000);
        let mut bets_per_round = std::collections::HashMap::<String, u32>::new();
        for (kind, body) in &calls {
            if *kind == Kind::Bet {
                let round = body.split(r#""round_id":""#).nth(1).unwrap();
                *bets_per_round
                    .entry(round[..round.find('"').unwrap()].to_string())
                    .or_default() += 1;
            }
        }
        let several = bets_per_round.values().filter(|n| **n >= 2).count();
        assert!(
            several * 2 > bets_per_round.len(),
            "{several} of {}",
            bets_per_round.len()
        );
    }

    #[test]
    fn refunds_send_rollbacks_before_their_bets() {
        let calls = bodies(Shape::Refunds, 20_000);
        let mut early = 0;
        for (i, (kind, body)) in calls.iter().enumerate() {
            if *kind == Kind::Rollback {
                let reference = body
                    .split(r#""reference_transaction_id":""#)
                    .nth(1)
                    .unwrap();
                let reference = &reference[..reference.find('"').unwrap()];
                let tx = format!(r#""transaction_id":"{reference}""#);
                let before = calls[..i].iter().any(|(_, b)| b.contains(&tx));
                let after = calls[i..].iter().any(|(_, b)| b.contains(&tx));
                if !before && after {
                    early += 1;
                }
            }
        }
        assert!(early > 1_000, "{early}");
    }

    #[test]
    fn retries_heavy_repeats_three_calls_in_ten() {
        let mut mix = Mix::new(
            Shape::RetriesHeavy,
            native(),
            100,
            10,
            0,
            std::path::Path::new(""),
            3,
        )
        .unwrap();
        let repeats = (0..10_000)
            .filter(|_| mix.next().0 == Kind::Duplicate)
            .count();
        assert!((2_700..3_300).contains(&repeats), "{repeats}");
    }
}
