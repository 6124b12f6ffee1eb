//! The callback state machine (design §4), pure: no IO, no clock. A batch's prefetched state
//! (`World`) goes in with the batch's commands; answers come out and the world records what to
//! write (new ledger rows, changed wallets, bet states and rounds). Everything a later command
//! in the batch must see, an earlier one has already changed in the world, so one batch behaves
//! exactly like the same commands one by one.

mod rollback;
mod world;

pub use world::{
    BatchMap, BatchSet, Limit, LimitKind, Player, Round, RoundKey, Session, Tx, TxKey, TxKind,
    TxState, Wallet, World,
};

use crate::command::{
    Action, Answer, Code, Command, GameId, Money, PlayerRef, ProviderTxId, RoundId, SessionToken,
};
use crate::money::Currency;

/// Most commands in one batch (and one transaction).
pub const BATCH_LEN_MAX: usize = 4_096;
const _: () = assert!(
    BATCH_LEN_MAX <= 65_535,
    "batch positions fit the write arrays"
);

/// Applies `commands` in order, each on its own; returns one answer each.
pub fn apply(world: &mut World, commands: &[Command]) -> Vec<Answer> {
    apply_units(world, commands, &vec![1; commands.len()])
}

/// Most commands in one unit (one multi-action callback).
pub const UNIT_LEN_MAX: usize = 64;

/// Applies `commands` in order; `units` says how many consecutive commands form one unit (a
/// multi-action callback, one player's), applied all or nothing: when any of its commands is
/// answered other than `OK`, the world goes back to before the unit, and every command of the
/// unit answers that refusal with the balance as it stands (nothing of it is stored, so a retry
/// is judged afresh). Returns one answer per command.
pub fn apply_units(world: &mut World, commands: &[Command], units: &[usize]) -> Vec<Answer> {
    assert!(commands.len() <= BATCH_LEN_MAX, "batch too long");
    assert_eq!(
        units.iter().sum::<usize>(),
        commands.len(),
        "units cover the batch"
    );
    assert!(
        units.iter().all(|n| (1..=UNIT_LEN_MAX).contains(n)),
        "unit sizes in range"
    );
    let total_before = world.total_minor();
    let created_before = world.created.len();
    let mut answers = Vec::with_capacity(commands.len());
    let mut rest = commands;
    for &len in units {
        let (unit, tail) = rest.split_at(len);
        rest = tail;
        if let [command] = unit {
            answers.push(world.apply_one(command));
            continue;
        }
        assert!(
            unit.iter().all(|c| c.player == unit[0].player),
            "a unit is one player's"
        );
        // Cloning the batch's world is the simple undo; units are rare (one dialect's batched
        // actions) and small.
        let before = world.clone();
        let unit_answers: Vec<Answer> = unit.iter().map(|c| world.apply_one(c)).collect();
        match unit_answers.iter().find(|a| a.code != Code::Ok) {
            None => answers.extend(unit_answers),
            Some(refused) => {
                let code = refused.code;
                *world = before;
                answers.extend(
                    unit.iter()
                        .map(|c| world.current(&c.player, c.currency(), code)),
                );
            }
        }
    }
    let moved: i128 = world.created[created_before..]
        .iter()
        .map(|key| {
            let tx = &world.txs[key];
            i128::from(tx.real_delta) + i128::from(tx.bonus_delta)
        })
        .sum();
    assert_eq!(
        world.total_minor(),
        total_before + moved,
        "money is conserved: wallets moved exactly by the new ledger rows"
    );
    answers
}

/// The rows a money command would create, before the wallet is touched.
struct Row {
    kind: TxKind,
    outcome: Code,
    currency: Currency,
    amount_minor: i64,
    real_delta: i64,
    bonus_delta: i64,
    round: Option<RoundId>,
    game: Option<GameId>,
    reference: Option<ProviderTxId>,
    state: Option<TxState>,
}

impl Row {
    fn refusal(kind: TxKind, outcome: Code, currency: Currency, amount_minor: i64) -> Row {
        Row {
            kind,
            outcome,
            currency,
            amount_minor,
            real_delta: 0,
            bonus_delta: 0,
            round: None,
            game: None,
            reference: None,
            state: None,
        }
    }

    fn of_money(mut self, money: &Money) -> Row {
        self.round = Some(money.round.clone());
        self.game = Some(money.game.clone());
        self
    }
}

impl World {
    fn total_minor(&self) -> i128 {
        self.players
            .values()
            .flat_map(|p| &p.wallets)
            .map(|w| i128::from(w.balance_minor) + i128::from(w.bonus_minor))
            .sum()
    }

    fn apply_one(&mut self, c: &Command) -> Answer {
        if let Some(tx) = c.tx() {
            if let Some(existing) = self.txs.get(&(c.provider, tx.clone())) {
                if existing.fingerprint == Some(c.fingerprint()) {
                    return existing.stored_answer();
                }
                let currency = match &c.action {
                    Action::Bet { money, .. } | Action::Win { money, .. } => Some(money.currency),
                    _ => None,
                };
                return self.current(&c.player, currency, Code::DuplicateMismatch);
            }
            if self.pruned.contains(&(c.provider, tx.clone())) {
                // Settled longer ago than the ledger keeps: its answer is gone, its id is not.
                return self.current(&c.player, None, Code::DuplicateMismatch);
            }
        }
        let Some(player) = self.players.get(&c.player) else {
            // Ending a round is never refused (§4: end_round answers OK whatever the state).
            if let Action::EndRound { .. } = c.action {
                return Answer {
                    code: Code::Ok,
                    ..unknown_player()
                };
            }
            return unknown_player();
        };
        let player_id = player.id;
        match &c.action {
            Action::Bet { money, session } => self.bet(c, player_id, money, session.as_ref()),
            Action::Win { money, bet_tx } => self.win(c, player_id, money, bet_tx.as_ref()),
            Action::Rollback {
                tx,
                reference,
                round,
                game,
            } => self.rollback(c, player_id, tx, reference, round, game),
            Action::EndRound { round, game } => {
                let key = (c.provider, player_id, round.clone());
                let round = self.round_mut(key, game.as_ref());
                if !round.closed {
                    round.closed = true;
                    round.changed = true;
                }
                self.current(&c.player, None, Code::Ok)
            }
            Action::Balance { currency } => {
                if let Some(currency) = currency {
                    if self.players[&c.player].wallet(*currency).is_none() {
                        return self.current(&c.player, None, Code::CurrencyMismatch);
                    }
                }
                self.current(&c.player, *currency, Code::Ok)
            }
        }
    }

    fn bet(
        &mut self,
        c: &Command,
        player_id: i64,
        money: &Money,
        session: Option<&SessionToken>,
    ) -> Answer {
        let refuse = |outcome| {
            Row::refusal(TxKind::Bet, outcome, money.currency, money.amount_minor).of_money(money)
        };
        let player = &self.players[&c.player];
        let Some(wallet) = player.wallet(money.currency) else {
            return self.record(c, &money.tx, self.currency_mismatch(c, TxKind::Bet, money));
        };
        let round_key = (c.provider, player_id, money.round.clone());
        let refusal = if self.tombstones.contains(&(c.provider, money.tx.clone())) {
            Some(Code::TransactionRolledBack)
        } else if c.policy.session_required && !self.session_fits(session, player_id, money) {
            Some(Code::InvalidSession)
        } else if player.blocked {
            Some(Code::PlayerBlocked)
        } else if self.rounds.get(&round_key).is_some_and(|r| r.closed) {
            Some(Code::RoundClosed)
        } else if player.limit_refuses(money.currency, money.amount_minor) {
            Some(Code::LimitExceeded)
        } else if i128::from(money.amount_minor)
            > i128::from(wallet.balance_minor) + i128::from(wallet.bonus_minor)
        {
            Some(Code::InsufficientFunds)
        } else {
            None
        };
        if let Some(code) = refusal {
            return self.record(c, &money.tx, refuse(code));
        }
        // Split the stake between real and bonus money, in the order the policy says.
        let amount = money.amount_minor;
        let (from_bonus, from_real) = if c.policy.bonus_first {
            let b = amount.min(wallet.bonus_minor);
            (b, amount - b)
        } else {
            let r = amount.min(wallet.balance_minor.max(0));
            (amount - r, r)
        };
        let row = Row {
            real_delta: -from_real,
            bonus_delta: -from_bonus,
            state: Some(TxState::Open),
            ..refuse(Code::Ok)
        };
        let answer = self.record(c, &money.tx, row);
        let player = self.players.get_mut(&c.player).expect("player present");
        player.use_limits(money.currency, amount, amount);
        let round = self.round_mut(round_key, Some(&money.game));
        round.open_bets.push(money.tx.clone());
        // Only a new round or a closing one is written; open bets are derived from the ledger.
        if money.round_closed && !round.closed {
            round.closed = true;
            round.changed = true;
        }
        answer
    }

    fn session_fits(&self, token: Option<&SessionToken>, player_id: i64, money: &Money) -> bool {
        let Some(session) = token.and_then(|t| self.sessions.get(t)) else {
            return false;
        };
        session.live
            && session.player_id == player_id
            && session.currency == money.currency
            && session.game.as_ref().is_none_or(|g| *g == money.game)
    }

    fn win(
        &mut self,
        c: &Command,
        player_id: i64,
        money: &Money,
        bet_tx: Option<&ProviderTxId>,
    ) -> Answer {
        let refuse = |outcome| {
            Row::refusal(TxKind::Win, outcome, money.currency, money.amount_minor).of_money(money)
        };
        let wallet = self.players[&c.player].wallet(money.currency);
        let Some(wallet) = wallet else {
            return self.record(c, &money.tx, self.currency_mismatch(c, TxKind::Win, money));
        };
        // Its own id was named by a rollback before it came (a tombstone): the provider's
        // books say this win was cancelled, so it never pays.
        if self.tombstones.contains(&(c.provider, money.tx.clone())) {
            return self.record(c, &money.tx, refuse(Code::TransactionRolledBack));
        }
        let round_key = (c.provider, player_id, money.round.clone());
        // Which bets this win settles: the one it names, else its round's open bets.
        let settles = match bet_tx {
            Some(bet_tx) => self.named_bet(c, player_id, money, bet_tx),
            None => self.round_bets(c, money, &round_key),
        };
        let settles = match settles {
            Ok(settles) => settles,
            Err(refusal) => return self.record(c, &money.tx, refuse(refusal)),
        };
        // "No bet seen": the named bet is unknown (or failed), or a win naming no bet comes for
        // a round nothing has touched.
        let bet_seen = match bet_tx {
            Some(_) => !settles.is_empty(),
            None => self.rounds.contains_key(&round_key),
        };
        if !bet_seen && !c.policy.wins_without_bet_allowed {
            if c.policy.wins_wait_for_bet {
                // Not stored: the retry is judged afresh, and settles once the bet is in.
                return self.current(&c.player, Some(money.currency), Code::BetNotSeen);
            }
            return self.record(c, &money.tx, refuse(Code::TransactionNotFound));
        }
        if wallet
            .balance_minor
            .checked_add(money.amount_minor)
            .is_none()
        {
            // A credit past i64::MAX minor units: refuse rather than wrap.
            return self.record(c, &money.tx, refuse(Code::LimitExceeded));
        }
        let row = Row {
            real_delta: money.amount_minor,
            ..refuse(Code::Ok)
        };
        let answer = self.record(c, &money.tx, row);
        let player = self.players.get_mut(&c.player).expect("player present");
        player.use_limits(money.currency, 0, -money.amount_minor);
        self.settle_bets(c, money, round_key, &settles);
        answer
    }

    /// The bet a win names, if it settles one: refused when it was rolled back (or never
    /// came, tombstoned), is in another currency, or was pruned; none when unknown, another
    /// player's, or failed.
    fn named_bet(
        &self,
        c: &Command,
        player_id: i64,
        money: &Money,
        bet_tx: &ProviderTxId,
    ) -> Result<Vec<ProviderTxId>, Code> {
        let key = (c.provider, bet_tx.clone());
        match self.txs.get(&key) {
            Some(bet) if bet.player_id == player_id && bet.kind == TxKind::Bet => {
                let rolled_back = bet.state == Some(TxState::RolledBack)
                    || bet.outcome == Code::TransactionRolledBack;
                if rolled_back {
                    return Err(Code::TransactionRolledBack);
                }
                if bet.currency != money.currency {
                    // Paying a bet out in another currency would mint money.
                    return Err(Code::CurrencyMismatch);
                }
                Ok(if bet.outcome == Code::Ok {
                    vec![bet_tx.clone()]
                } else {
                    Vec::new()
                })
            }
            // Rolled back before it ever arrived. Only an id never seen can be a tombstone:
            // the database keeps no tombstone flag, it finds rollbacks naming the id, and a
            // refused rollback of an existing transaction names one too.
            None if self.tombstones.contains(&key) => Err(Code::TransactionRolledBack),
            // Pruned with its day: settled or reversed long ago, which is no longer known;
            // refused for good rather than paid, or asked to wait forever.
            None if self.pruned.contains(&key) => Err(Code::TransactionNotFound),
            // Unknown, or not this player's bet: no bet seen.
            _ => Ok(Vec::new()),
        }
    }

    /// The open bets of a win's round, when the win names none: refused when every bet of the
    /// round was rolled back (a cancelled round), or when all its open bets are in another
    /// currency.
    fn round_bets(
        &self,
        c: &Command,
        money: &Money,
        round_key: &RoundKey,
    ) -> Result<Vec<ProviderTxId>, Code> {
        let round = self.rounds.get(round_key);
        let cancelled =
            round.is_some_and(|r| r.open_bets.is_empty() && r.bets_rolled_back && !r.bets_settled);
        if cancelled {
            return Err(Code::TransactionRolledBack);
        }
        let open = round.map(|r| r.open_bets.clone()).unwrap_or_default();
        // Only bets in the win's currency: paying a bet out in another would mint money. A
        // round whose open bets are all in another currency refuses it, as a win naming such a
        // bet is refused.
        let (same, other): (Vec<ProviderTxId>, Vec<ProviderTxId>) =
            open.into_iter().partition(|b| {
                self.txs
                    .get(&(c.provider, b.clone()))
                    .is_none_or(|bet| bet.currency == money.currency)
            });
        if same.is_empty() && !other.is_empty() {
            return Err(Code::CurrencyMismatch);
        }
        Ok(same)
    }

    /// After a paid win: the bets it settles are marked settled (on their own rounds), and its
    /// round loses them from its open bets (and closes when the win says so).
    fn settle_bets(
        &mut self,
        c: &Command,
        money: &Money,
        round_key: RoundKey,
        settles: &[ProviderTxId],
    ) {
        for bet in settles {
            if let Some(tx) = self.txs.get_mut(&(c.provider, bet.clone())) {
                if tx.state == Some(TxState::Open) {
                    tx.set_state(TxState::Settled);
                }
                // Marked on the bet's own round (a win may name a bet of another round).
                let bet_round = tx.round.clone().map(|r| (c.provider, tx.player_id, r));
                if let Some(round) = bet_round.and_then(|k| self.rounds.get_mut(&k)) {
                    round.bets_settled = true;
                }
            }
        }
        let round = self.round_mut(round_key, Some(&money.game));
        round.open_bets.retain(|b| !settles.contains(b));
        // Only a new round or a closing one is written; open bets are derived from the ledger.
        if money.round_closed && !round.closed {
            round.closed = true;
            round.changed = true;
        }
    }

    /// The row of a bet or win in a currency the player has no wallet in: refused, recorded
    /// against the player's default wallet (so the answer carries a balance the provider can
    /// show), moving nothing. The request's own currency and amount stay in its fingerprint.
    fn currency_mismatch(&self, c: &Command, kind: TxKind, money: &Money) -> Row {
        match self.players[&c.player].wallets.first() {
            Some(default) => Row::refusal(kind, Code::CurrencyMismatch, default.currency, 0),
            None => Row::refusal(
                kind,
                Code::CurrencyMismatch,
                money.currency,
                money.amount_minor,
            ),
        }
        .of_money(money)
    }

    fn round_mut(&mut self, key: RoundKey, game: Option<&GameId>) -> &mut Round {
        self.rounds.entry(key).or_insert_with(|| Round {
            closed: false,
            game: game.cloned(),
            open_bets: Vec::new(),
            bets_rolled_back: false,
            bets_settled: false,
            changed: true,
            stored: false,
        })
    }

    /// The player's current balance in `currency` (or the first wallet) with `code`; no row.
    fn current(&self, player: &PlayerRef, currency: Option<Currency>, code: Code) -> Answer {
        let Some(player) = self.players.get(player) else {
            return Answer {
                code,
                ..unknown_player()
            };
        };
        let wallet = match currency {
            Some(c) => player.wallet(c),
            None => player.wallets.first(),
        };
        Answer {
            code,
            currency: wallet.map(|w| w.currency).or(currency),
            balance_minor: wallet.map_or(0, |w| w.balance_minor),
            bonus_minor: wallet.map_or(0, |w| w.bonus_minor),
            operator_tx_id: None,
            duplicate: false,
            money_moved: false,
        }
    }

    /// Appends the ledger row for `tx`, moves the wallet by its deltas, answers.
    fn record(&mut self, c: &Command, tx: &ProviderTxId, row: Row) -> Answer {
        let id = self
            .ids
            .pop()
            .expect("ids reserved for every command of the batch");
        let player = self.players.get_mut(&c.player).expect("player present");
        let player_id = player.id;
        let (balance_after, bonus_after) = match player.wallet_mut(row.currency) {
            Some(wallet) => {
                wallet.balance_minor = wallet
                    .balance_minor
                    .checked_add(row.real_delta)
                    .expect("credits are checked for overflow before recording");
                wallet.bonus_minor += row.bonus_delta;
                assert!(wallet.bonus_minor >= 0, "bonus never goes negative");
                if wallet.balance_minor < 0 {
                    assert!(
                        c.policy.negative_balance_allowed,
                        "negative balance without policy"
                    );
                    wallet.needs_reconciliation = true;
                }
                wallet.changed |= row.real_delta != 0 || row.bonus_delta != 0;
                (wallet.balance_minor, wallet.bonus_minor)
            }
            None => {
                assert!(
                    row.real_delta == 0 && row.bonus_delta == 0,
                    "money moved without a wallet"
                );
                (0, 0)
            }
        };
        let record = Tx {
            id,
            kind: row.kind,
            outcome: row.outcome,
            state: row.state,
            player_id,
            currency: row.currency,
            round: row.round,
            game: row.game,
            amount_minor: row.amount_minor,
            real_delta: row.real_delta,
            bonus_delta: row.bonus_delta,
            balance_after,
            bonus_after,
            reference: row.reference,
            fingerprint: Some(c.fingerprint()),
            is_new: true,
            state_changed: false,
        };
        let key = (c.provider, tx.clone());
        self.txs.insert(key.clone(), record);
        self.created.push(key);
        Answer {
            code: row.outcome,
            currency: Some(row.currency),
            balance_minor: balance_after,
            bonus_minor: bonus_after,
            operator_tx_id: Some(id),
            duplicate: false,
            money_moved: row.real_delta != 0 || row.bonus_delta != 0,
        }
    }
}

fn unknown_player() -> Answer {
    Answer::bare(Code::UnknownPlayer)
}

/// How many ledger ids a batch may consume: one per command that carries a transaction id.
pub fn ids_needed(commands: &[Command]) -> usize {
    commands.iter().filter(|c| c.tx().is_some()).count()
}

#[cfg(test)]
mod tests;
