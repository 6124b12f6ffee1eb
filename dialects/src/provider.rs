//! A provider as the hot path uses it: its database id, code, dialect, credentials (secrets
//! current and previous, public keys built once), allowlist, signature window, wallet currency
//! and policy.

use std::net::IpAddr;

use settlement::command::{Action, Command, PlayerRef, Policy, ProviderId};
use settlement::money::Currency;

use crate::signature::Secret;
use crate::Kind as Dialect;

/// One configured provider.
#[derive(Debug)]
pub struct Provider {
    pub id: ProviderId,
    pub code: String,
    pub dialect: Dialect,
    pub enabled: bool,
    /// Current secret first, then the previous one (each keyed once for HMAC).
    pub secrets: Vec<Secret>,
    /// RSA-SHA256 (PKCS#1 v1.5) verifiers for dialects that check signatures with the
    /// provider's public key (current first); built once, not per callback.
    pub public_keys: Vec<rsa::pkcs1v15::VerifyingKey<sha2::Sha256>>,
    pub allow_ips: Vec<IpAddr>,
    pub signature_window_s: u64,
    /// The wallet currency of calls that name none.
    pub currency: Currency,
    pub policy: Policy,
}

impl Provider {
    /// A core command of this provider (under its policy) for `player`.
    pub fn command(&self, player: PlayerRef, action: Action) -> Command {
        Command::new(self.id, self.policy, player, action)
    }

    /// An empty allowlist allows every source address.
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.allow_ips.is_empty() || self.allow_ips.iter().any(|a| same_ip(*a, ip))
    }
}

/// IPv4 addresses may arrive mapped into IPv6 (`::ffff:a.b.c.d`) on dual-stack listeners.
pub fn same_ip(a: IpAddr, b: IpAddr) -> bool {
    a.to_canonical() == b.to_canonical()
}
