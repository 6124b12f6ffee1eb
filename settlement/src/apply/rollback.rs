//! Rollbacks (design §4): the transaction they name decides the case. Unknown: a tombstone, so
//! the late transaction is refused (or another player's: not this player's to reverse). A bet:
//! its stake comes back unless a win settled it. A win: taken back only where the provider's
//! policy allows it, and never below zero unless the policy allows that too. Anything already
//! reversed, or refused in the first place, gives nothing (more) back.

use super::{Row, TxKind, TxState, World};
use crate::command::{Answer, Code, Command, GameId, ProviderTxId, RoundId, TombstoneAnswer};

impl World {
    pub(super) fn rollback(
        &mut self,
        c: &Command,
        player_id: i64,
        tx: &ProviderTxId,
        reference: &ProviderTxId,
        round: &Option<RoundId>,
        game: &Option<GameId>,
    ) -> Answer {
        let ref_key = (c.provider, reference.clone());
        let target = self
            .txs
            .get(&ref_key)
            .filter(|t| t.player_id == player_id)
            .cloned();
        let currency = match &target {
            Some(t) => t.currency,
            None => match self.players[&c.player].wallets.first() {
                Some(w) => w.currency,
                None => return self.current(&c.player, None, Code::CurrencyMismatch),
            },
        };
        let base = Row {
            round: round
                .clone()
                .or_else(|| target.as_ref().and_then(|t| t.round.clone())),
            game: game
                .clone()
                .or_else(|| target.as_ref().and_then(|t| t.game.clone())),
            reference: Some(reference.clone()),
            ..Row::refusal(TxKind::Rollback, Code::Ok, currency, 0)
        };
        let refused = |base: Row| Row {
            outcome: Code::RollbackNotPermitted,
            ..base
        };
        let Some(target) = target else {
            if self.pruned.contains(&ref_key) {
                // Pruned: it was settled or reversed (a day holding an open bet is kept).
                return self.record(c, tx, refused(base));
            }
            return self.rollback_unknown(c, tx, reference, base);
        };
        match (target.kind, target.state) {
            // A failed bet or a reversed one: nothing (more) to give back.
            (TxKind::Bet, _) if target.outcome != Code::Ok => self.record(c, tx, base),
            (TxKind::Bet | TxKind::Win, Some(TxState::RolledBack)) => self.record(c, tx, base),
            (TxKind::Bet, Some(TxState::Settled)) => self.record(c, tx, refused(base)),
            (TxKind::Bet, _) => self.rollback_bet(c, player_id, tx, reference, &target, base),
            (TxKind::Win, _) if c.policy.win_rollback_allowed && target.outcome == Code::Ok => {
                self.rollback_win(c, tx, reference, &target, base)
            }
            _ => self.record(c, tx, refused(base)),
        }
    }

    /// The named transaction is not this player's: unknown (tombstoned, so its late arrival is
    /// refused) or another player's (refused, nothing tombstoned).
    fn rollback_unknown(
        &mut self,
        c: &Command,
        tx: &ProviderTxId,
        reference: &ProviderTxId,
        base: Row,
    ) -> Answer {
        let ref_key = (c.provider, reference.clone());
        if self.txs.contains_key(&ref_key) {
            let row = Row {
                outcome: Code::TransactionNotFound,
                ..base
            };
            return self.record(c, tx, row);
        }
        self.tombstones.insert(ref_key);
        let outcome = if c.policy.tombstone_answer == TombstoneAnswer::NotFound {
            Code::TransactionNotFound
        } else {
            Code::Ok
        };
        self.record(c, tx, Row { outcome, ..base })
    }

    /// An open bet: its stake (real and bonus) comes back, its limits' use is undone, and it
    /// leaves its round's open bets.
    fn rollback_bet(
        &mut self,
        c: &Command,
        player_id: i64,
        tx: &ProviderTxId,
        reference: &ProviderTxId,
        target: &super::Tx,
        base: Row,
    ) -> Answer {
        let row = Row {
            amount_minor: target.amount_minor,
            real_delta: -target.real_delta,
            bonus_delta: -target.bonus_delta,
            ..base
        };
        // The stake is no longer wagered, and what it lost comes back.
        let refund = -(target.real_delta + target.bonus_delta);
        let answer = self.reverse(c, tx, reference, row, -target.amount_minor, -refund);
        if let Some(round_id) = &target.round {
            if let Some(round) = self
                .rounds
                .get_mut(&(c.provider, player_id, round_id.clone()))
            {
                round.open_bets.retain(|b| b != reference);
                round.bets_rolled_back = true;
            }
        }
        answer
    }

    /// An applied win, where the policy lets wins be reversed: its real money is taken back,
    /// refused when that would go below zero unless the policy allows a negative balance.
    fn rollback_win(
        &mut self,
        c: &Command,
        tx: &ProviderTxId,
        reference: &ProviderTxId,
        target: &super::Tx,
        base: Row,
    ) -> Answer {
        let currency = base.currency;
        let wallet = self.players[&c.player].wallet(currency);
        let balance = wallet.map_or(0, |w| w.balance_minor);
        if balance < target.real_delta && !c.policy.negative_balance_allowed {
            let row = Row {
                outcome: Code::RollbackNotPermitted,
                ..base
            };
            return self.record(c, tx, row);
        }
        let row = Row {
            amount_minor: target.amount_minor,
            real_delta: -target.real_delta,
            ..base
        };
        // What the win paid counts as lost again.
        self.reverse(c, tx, reference, row, 0, target.real_delta)
    }

    /// Records the reversing row, moves the player's limit use by `wagered` and `lost` in the
    /// row's currency, and marks the reversed transaction rolled back.
    fn reverse(
        &mut self,
        c: &Command,
        tx: &ProviderTxId,
        reference: &ProviderTxId,
        row: Row,
        wagered: i64,
        lost: i64,
    ) -> Answer {
        let currency = row.currency;
        let answer = self.record(c, tx, row);
        let player = self.players.get_mut(&c.player).expect("player present");
        player.use_limits(currency, wagered, lost);
        self.txs
            .get_mut(&(c.provider, reference.clone()))
            .expect("target present")
            .set_state(TxState::RolledBack);
        answer
    }
}
