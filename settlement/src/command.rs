//! The core command every dialect decodes into, the answer every dialect encodes from, the
//! stable business codes, and the per-provider policy. One vocabulary for the whole money path.

use std::fmt;

use sha2::{Digest, Sha256};

use crate::money::Currency;

/// Longest id (transaction, round, game, player, session token) accepted from a provider.
pub const ID_BYTES_MAX: usize = 128;

/// The database id of a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProviderId(pub i32);

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// `None` when empty, longer than [`ID_BYTES_MAX`] bytes, or not printable text
            /// (a control character, or the replacement character that stands for bytes
            /// that were not UTF-8): such an id is malformed, refused when decoded, never
            /// left to fail in storage (PostgreSQL refuses `\0`) and be retried for ever.
            pub fn new(id: impl Into<String>) -> Option<$name> {
                let id = id.into();
                let printable = !id
                    .chars()
                    .any(|c| c.is_control() || c == char::REPLACEMENT_CHARACTER);
                (printable && !id.is_empty() && id.len() <= ID_BYTES_MAX).then_some($name(id))
            }

            /// An id read back from the database: stored before the printable rule, it is
            /// still the key it was stored under.
            pub fn stored(id: String) -> Option<$name> {
                (!id.is_empty() && id.len() <= ID_BYTES_MAX).then_some($name(id))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

string_id!(
    /// A provider's transaction id: with the provider, the idempotency key.
    ProviderTxId
);
impl ProviderTxId {
    /// An id the gateway makes from a provider's id for a call that brings none of its own
    /// (Evolution-style `credit:<refId>`, Pragmatic-style `<reference>:refund`). The
    /// provider's id is kept whole, so the call still has a key at the longest id a provider
    /// may send: past [`ID_BYTES_MAX`] it stands as the hex of its SHA-256, still one key per
    /// id. `None` when the provider's id itself is not a valid id.
    pub fn derived(prefix: &str, id: &str, suffix: &str) -> Option<ProviderTxId> {
        let own = ProviderTxId::new(id)?;
        let whole = format!("{prefix}{}{suffix}", own.as_str());
        if whole.len() <= ID_BYTES_MAX {
            return ProviderTxId::new(whole);
        }
        let digest: String = Sha256::digest(own.as_str().as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        ProviderTxId::new(format!("{prefix}sha256:{digest}{suffix}"))
    }
}

string_id!(
    /// The id a provider knows a player by (`players.external_id`).
    PlayerRef
);
string_id!(
    /// A provider's round id (one player's round).
    RoundId
);
string_id!(
    /// A provider's game id.
    GameId
);
string_id!(
    /// A game-launch session token.
    SessionToken
);

/// A money movement's wire data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Money {
    pub tx: ProviderTxId,
    pub currency: Currency,
    pub amount_minor: i64,
    pub round: RoundId,
    pub game: GameId,
    /// The round ends with this action.
    pub round_closed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Bet {
        money: Money,
        session: Option<SessionToken>,
    },
    Win {
        money: Money,
        /// The bet this win settles; without it, the win settles its round's open bets.
        bet_tx: Option<ProviderTxId>,
    },
    Rollback {
        tx: ProviderTxId,
        /// The transaction reversed (a bet, or a win where policy allows).
        reference: ProviderTxId,
        round: Option<RoundId>,
        game: Option<GameId>,
    },
    EndRound {
        round: RoundId,
        game: Option<GameId>,
    },
    Balance {
        currency: Option<Currency>,
    },
}

/// What a provider asked for, decoded from its dialect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub provider: ProviderId,
    pub policy: Policy,
    pub player: PlayerRef,
    pub action: Action,
    /// Of `player` and `action`, computed once by [`Command::new`]: the dedup index, the lane's
    /// duplicate check and the ledger row all read it. Private, so no command is built
    /// without it; a command with another player or action is a new `Command::new`, never
    /// an edit of those fields (nothing edits them; `policy` and `provider` are not hashed).
    fingerprint: Fingerprint,
}

impl Command {
    pub fn new(provider: ProviderId, policy: Policy, player: PlayerRef, action: Action) -> Command {
        Command {
            fingerprint: fingerprint(&player, &action),
            provider,
            policy,
            player,
            action,
        }
    }

    /// Hash of the semantic payload (kind, player, currency, amount, round, game, referenced
    /// transaction): a retry must carry the same one, else it is a mismatched duplicate.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// The currency the command names, if any.
    pub fn currency(&self) -> Option<crate::money::Currency> {
        match &self.action {
            Action::Bet { money, .. } | Action::Win { money, .. } => Some(money.currency),
            Action::Balance { currency } => *currency,
            Action::Rollback { .. } | Action::EndRound { .. } => None,
        }
    }

    /// The idempotency key's transaction id, for actions that have one.
    pub fn tx(&self) -> Option<&ProviderTxId> {
        match &self.action {
            Action::Bet { money, .. } | Action::Win { money, .. } => Some(&money.tx),
            Action::Rollback { tx, .. } => Some(tx),
            Action::EndRound { .. } | Action::Balance { .. } => None,
        }
    }
}

fn fingerprint(player: &PlayerRef, action: &Action) -> Fingerprint {
    let mut h = Sha256::new();
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u32).to_le_bytes());
        h.update(bytes);
    };
    field(player.as_str().as_bytes());
    match action {
        Action::Bet { money, .. } => {
            field(b"bet");
            money_fields(&mut field, money);
        }
        Action::Win { money, bet_tx } => {
            field(b"win");
            money_fields(&mut field, money);
            field(bet_tx.as_ref().map_or(&b""[..], |t| t.as_str().as_bytes()));
        }
        Action::Rollback {
            reference,
            round,
            game,
            ..
        } => {
            field(b"rollback");
            field(reference.as_str().as_bytes());
            field(round.as_ref().map_or(&b""[..], |r| r.as_str().as_bytes()));
            field(game.as_ref().map_or(&b""[..], |g| g.as_str().as_bytes()));
        }
        Action::EndRound { .. } | Action::Balance { .. } => field(b"-"),
    }
    let digest = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    Fingerprint(out)
}

fn money_fields(field: &mut impl FnMut(&[u8]), money: &Money) {
    field(money.currency.code().as_bytes());
    field(&money.amount_minor.to_le_bytes());
    field(money.round.as_str().as_bytes());
    field(money.game.as_str().as_bytes());
}

/// 128 bits of SHA-256 over the semantic payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 16]);

/// Business answers: all final (providers stop retrying). Stable strings, stored in the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    Ok,
    InsufficientFunds,
    UnknownPlayer,
    CurrencyMismatch,
    InvalidSession,
    PlayerBlocked,
    LimitExceeded,
    TransactionRolledBack,
    RoundClosed,
    RollbackNotPermitted,
    DuplicateMismatch,
    TransactionNotFound,
    /// A win came before its bet, under a policy that waits for the bet: nothing stored, the
    /// provider should retry. Dialects render it as their retryable answer.
    BetNotSeen,
}

impl Code {
    pub const ALL: [Code; 13] = [
        Code::Ok,
        Code::InsufficientFunds,
        Code::UnknownPlayer,
        Code::CurrencyMismatch,
        Code::InvalidSession,
        Code::PlayerBlocked,
        Code::LimitExceeded,
        Code::TransactionRolledBack,
        Code::RoundClosed,
        Code::RollbackNotPermitted,
        Code::DuplicateMismatch,
        Code::TransactionNotFound,
        Code::BetNotSeen,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Code::Ok => "OK",
            Code::InsufficientFunds => "INSUFFICIENT_FUNDS",
            Code::UnknownPlayer => "UNKNOWN_PLAYER",
            Code::CurrencyMismatch => "CURRENCY_MISMATCH",
            Code::InvalidSession => "INVALID_SESSION",
            Code::PlayerBlocked => "PLAYER_BLOCKED",
            Code::LimitExceeded => "LIMIT_EXCEEDED",
            Code::TransactionRolledBack => "TRANSACTION_ROLLED_BACK",
            Code::RoundClosed => "ROUND_CLOSED",
            Code::RollbackNotPermitted => "ROLLBACK_NOT_PERMITTED",
            Code::DuplicateMismatch => "DUPLICATE_MISMATCH",
            Code::TransactionNotFound => "TRANSACTION_NOT_FOUND",
            Code::BetNotSeen => "BET_NOT_SEEN",
        }
    }

    pub fn parse(text: &str) -> Option<Code> {
        Code::ALL.into_iter().find(|c| c.as_str() == text)
    }
}

/// The answer to one command: what every dialect renders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub code: Code,
    /// The wallet the answer speaks of; `None` when the player has none (or is unknown).
    pub currency: Option<Currency>,
    pub balance_minor: i64,
    pub bonus_minor: i64,
    /// The ledger row recorded for this transaction id, if any.
    pub operator_tx_id: Option<i64>,
    /// The original answer, replayed for a retry.
    pub duplicate: bool,
    /// The ledger row recorded for this transaction moved money (a refund of a bet never
    /// seen, for one, moves none; some dialects answer it differently).
    pub money_moved: bool,
}

impl Answer {
    /// An answer with `code` that names no wallet and moved nothing.
    pub fn bare(code: Code) -> Answer {
        Answer {
            code,
            currency: None,
            balance_minor: 0,
            bonus_minor: 0,
            operator_tx_id: None,
            duplicate: false,
            money_moved: false,
        }
    }

    /// Real plus bonus money: what the player can bet.
    pub fn playable_minor(&self) -> i64 {
        self.balance_minor.saturating_add(self.bonus_minor)
    }
}

/// The answer to a rollback of a transaction never seen (tombstoned either way).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TombstoneAnswer {
    #[default]
    Ok,
    /// TRANSACTION_NOT_FOUND, still final.
    NotFound,
}

/// Per-provider money rules (design §4), read as they are from each provider's `[policy]` in
/// the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(default)]
pub struct Policy {
    /// Bets need a live game session bound to the player (and currency, and game).
    pub session_required: bool,
    pub tombstone_answer: TombstoneAnswer,
    pub win_rollback_allowed: bool,
    /// A rolled-back win may take the balance below zero (the wallet gets flagged).
    pub negative_balance_allowed: bool,
    /// Wins naming no bet, or a bet never seen, are credited (promotions, jackpots).
    pub wins_without_bet_allowed: bool,
    /// When wins need a bet: a win whose bet has not been seen yet is answered `BET_NOT_SEEN`
    /// (retry later) and not stored, so the provider's retry settles once the bet arrives;
    /// otherwise it is refused for good (`TRANSACTION_NOT_FOUND`, stored).
    pub wins_wait_for_bet: bool,
    /// Bets spend bonus money before real money.
    pub bonus_first: bool,
}

impl Policy {
    /// The policy a provider created at run time starts with: no win is credited without its
    /// bet (one that comes first is asked to retry), so a provider's secret alone cannot
    /// create money.
    pub fn strict() -> Policy {
        Policy {
            wins_without_bet_allowed: false,
            wins_wait_for_bet: true,
            ..Policy::default()
        }
    }
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            session_required: false,
            tombstone_answer: TombstoneAnswer::Ok,
            win_rollback_allowed: false,
            negative_balance_allowed: false,
            wins_without_bet_allowed: true,
            wins_wait_for_bet: false,
            bonus_first: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_printable_text_of_at_most_128_bytes() {
        assert!(ProviderTxId::new("x".repeat(ID_BYTES_MAX)).is_some());
        for bad in [
            String::new(),
            "x".repeat(ID_BYTES_MAX + 1),
            "a\u{0}b".into(),
            "a\tb".into(),
            "a\u{7f}".into(),
            "a\u{fffd}".into(),
        ] {
            assert!(ProviderTxId::new(bad.clone()).is_none(), "{bad:?}");
        }
        // Read back from the database, an id is the key it was stored under.
        assert!(ProviderTxId::stored("a\tb".into()).is_some());
    }

    #[test]
    fn a_derived_id_keeps_the_providers_id_whole_at_any_length() {
        let short = ProviderTxId::derived("credit:", "b-1", "").unwrap();
        assert_eq!(short.as_str(), "credit:b-1");
        let longest = "b".repeat(ID_BYTES_MAX);
        let long = ProviderTxId::derived("credit:", &longest, "").unwrap();
        assert!(long.as_str().starts_with("credit:sha256:"), "{long}");
        assert!(long.as_str().len() <= ID_BYTES_MAX);
        // One key per id: the same id again, another id apart, another prefix apart.
        assert_eq!(
            ProviderTxId::derived("credit:", &longest, ""),
            Some(long.clone())
        );
        let other = "c".repeat(ID_BYTES_MAX);
        assert_ne!(
            ProviderTxId::derived("credit:", &other, ""),
            Some(long.clone())
        );
        assert_ne!(ProviderTxId::derived("cancel:", &longest, ""), Some(long));
        let refund = ProviderTxId::derived("", &longest, ":refund").unwrap();
        assert!(refund.as_str().ends_with(":refund") && refund.as_str().len() <= ID_BYTES_MAX);
        // The provider's id must be valid itself.
        assert!(ProviderTxId::derived("credit:", "", "").is_none());
        assert!(ProviderTxId::derived("credit:", &"b".repeat(ID_BYTES_MAX + 1), "").is_none());
    }
}

/// The stored settings of a provider managed through the back office (`providers.managed`,
/// JSON): written by the REST module, read by the gateway's registry, defined once so both read
/// the same fields with the same defaults.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct ManagedProvider {
    pub secret: String,
    /// The secret before the last rotation, accepted until `previous_until` (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_until: Option<i64>,
    #[serde(default)]
    pub allow_ips: Vec<std::net::IpAddr>,
    /// The wallet currency of calls that name none.
    pub currency: String,
    #[serde(default)]
    pub policy: Policy,
    #[serde(default = "ManagedProvider::default_window")]
    pub signature_window_s: u64,
}

impl ManagedProvider {
    /// The signature window of a provider that names none.
    pub const WINDOW_S_DEFAULT: u64 = 300;

    fn default_window() -> u64 {
        ManagedProvider::WINDOW_S_DEFAULT
    }
}
