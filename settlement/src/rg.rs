//! Responsible-gaming rules that are not a callback's: how a player's own change of a limit
//! takes effect (a tightening at once, a loosening after a cooling-off period) and how a
//! self-exclusion may change (only longer). Pure; the REST module asks, then writes.

use std::time::Duration;

/// How long a raised or removed limit waits before it is in force.
pub const COOLING_OFF: Duration = Duration::from_secs(24 * 60 * 60);

/// A limit as stored: the amount in force, and a pending change with the second it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    pub amount: i64,
    /// `Some((next, from))`: from second `from`, `next` (`None`: no limit) replaces `amount`.
    pub next: Option<(Option<i64>, i64)>,
}

/// The amount in force at second `now` (`None`: no limit). The prefetch SQL of the wallet
/// path computes the same (`CASE WHEN next_from <= now() ...`).
pub fn in_force(stored: Option<Stored>, now: i64) -> Option<i64> {
    let stored = stored?;
    match stored.next {
        Some((next, from)) if from <= now => next,
        _ => Some(stored.amount),
    }
}

/// What to write for a player's request to set a limit to `wanted` (`None`: remove it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Nothing stored any more (removing a limit that is not in force).
    Delete,
    /// Store this (a tighter limit in force at once, or the old one with a pending change).
    Store(Stored),
}

/// The rule: a limit that is lower than the one in force (or where none is) applies at once
/// and cancels any pending raise; a higher limit, or removing one, waits [`COOLING_OFF`] and
/// the limit in force holds meanwhile. Asking for the amount in force cancels a pending change.
pub fn change(stored: Option<Stored>, wanted: Option<i64>, now: i64) -> Change {
    let current = in_force(stored, now);
    let later = now.saturating_add(COOLING_OFF.as_secs() as i64);
    match (current, wanted) {
        (None, None) => Change::Delete,
        (None, Some(amount)) => Change::Store(Stored { amount, next: None }),
        (Some(current), Some(amount)) if amount <= current => {
            Change::Store(Stored { amount, next: None })
        }
        (Some(current), wanted) => Change::Store(Stored {
            amount: current,
            next: Some((wanted, later)),
        }),
    }
}

/// Why a self-exclusion until second `until` may not replace one until `current`.
pub fn exclusion_refused(current: Option<i64>, until: i64, now: i64) -> Option<&'static str> {
    match current {
        Some(current) if current > now && until < current => {
            Some("a self-exclusion cannot be shortened or lifted")
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 24 * 60 * 60;

    fn stored(amount: i64) -> Option<Stored> {
        Some(settled(amount))
    }

    #[test]
    fn a_first_limit_and_a_lower_one_apply_at_once() {
        assert_eq!(change(None, Some(500), 0), Change::Store(settled(500)));
        assert_eq!(
            change(stored(500), Some(100), 0),
            Change::Store(settled(100))
        );
    }

    #[test]
    fn a_higher_limit_or_removal_waits_a_day_and_the_old_one_holds() {
        let raised = change(stored(100), Some(900), 10);
        assert_eq!(
            raised,
            Change::Store(Stored {
                amount: 100,
                next: Some((Some(900), 10 + DAY))
            })
        );
        let Change::Store(raised) = raised else {
            unreachable!()
        };
        assert_eq!(in_force(Some(raised), 10 + DAY - 1), Some(100));
        assert_eq!(in_force(Some(raised), 10 + DAY), Some(900));
        let removed = change(stored(100), None, 10);
        let Change::Store(removed) = removed else {
            unreachable!()
        };
        assert_eq!(in_force(Some(removed), 10), Some(100));
        assert_eq!(in_force(Some(removed), 10 + DAY), None);
    }

    /// 100 in force, a raise to 900 waiting for its cooling-off until `DAY`.
    fn raise_pending() -> Option<Stored> {
        Some(Stored {
            amount: 100,
            next: Some((Some(900), DAY)),
        })
    }

    /// `amount` in force, nothing pending.
    fn settled(amount: i64) -> Stored {
        Stored { amount, next: None }
    }

    #[test]
    fn a_decrease_cancels_a_pending_raise() {
        let pending = raise_pending();
        assert_eq!(change(pending, Some(50), 5), Change::Store(settled(50)));
        // The amount in force again: the pending raise is dropped.
        assert_eq!(change(pending, Some(100), 5), Change::Store(settled(100)));
    }

    #[test]
    fn a_raise_once_in_force_is_the_base_of_the_next_change() {
        let pending = raise_pending();
        // After the cooling-off, 900 is in force: 500 is a decrease, at once.
        assert_eq!(
            change(pending, Some(500), DAY + 1),
            Change::Store(settled(500))
        );
        let removed = Some(Stored {
            amount: 100,
            next: Some((None, DAY)),
        });
        assert_eq!(change(removed, None, DAY + 1), Change::Delete);
    }

    #[test]
    fn exclusion_only_grows() {
        assert!(exclusion_refused(None, 100, 0).is_none());
        assert!(exclusion_refused(Some(100), 200, 0).is_none());
        assert!(exclusion_refused(Some(100), 50, 0).is_some());
        // An exclusion that has ended no longer binds.
        assert!(exclusion_refused(Some(100), 150, 120).is_none());
    }
}
