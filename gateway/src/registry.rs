//! The configured providers, ready for the hot path: code, database id, dialect, secrets,
//! allowlist and policy; and the caller's address behind trusted proxies.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use settlement::command::{Action, Command, PlayerRef, Policy, ProviderId};
use settlement::money::Currency;

use crate::config::{Config, Dialect};

/// One configured provider.
#[derive(Debug)]
pub struct Provider {
    pub id: ProviderId,
    pub code: String,
    pub dialect: Dialect,
    pub enabled: bool,
    /// Current secret first, then the previous one.
    pub secrets: Vec<Vec<u8>>,
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
        Command {
            provider: self.id,
            policy: self.policy,
            player,
            action,
        }
    }

    /// An empty allowlist allows every source address.
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.allow_ips.is_empty() || self.allow_ips.iter().any(|a| same_ip(*a, ip))
    }
}

/// IPv4 addresses may arrive mapped into IPv6 (`::ffff:a.b.c.d`) on dual-stack listeners.
fn same_ip(a: IpAddr, b: IpAddr) -> bool {
    a.to_canonical() == b.to_canonical()
}

/// The address a callback comes from, for allowlists. A connection from a trusted proxy
/// speaks for someone else: the caller is the right-most `X-Forwarded-For` address that is
/// not itself a trusted proxy (entries to its left could have been written by the caller).
/// A trusted proxy that forwards nothing usable is taken as the caller, and fails the
/// allowlist unless listed there.
pub fn caller_ip(peer: IpAddr, headers: &http::HeaderMap, trusted: &[IpAddr]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|t| same_ip(*t, ip));
    if !is_trusted(peer) {
        return peer;
    }
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    for entry in forwarded.iter().rev() {
        match entry.parse::<IpAddr>() {
            Ok(ip) if is_trusted(ip) => continue,
            Ok(ip) => return ip,
            // Garbage where an address should be: believe nothing further left.
            Err(_) => return peer,
        }
    }
    peer
}

#[derive(Debug, Default)]
pub struct Registry {
    by_code: HashMap<String, Arc<Provider>>,
}

impl Registry {
    /// Providers from configuration, with the database ids they were registered under.
    pub fn build(config: &Config, ids: &HashMap<String, i32>) -> Result<Registry, String> {
        let mut by_code = HashMap::new();
        for p in &config.providers {
            let id = *ids
                .get(&p.code)
                .ok_or_else(|| format!("provider {} has no database id", p.code))?;
            let provider = Provider {
                id: ProviderId(id),
                policy: p.policy,
                code: p.code.clone(),
                dialect: p
                    .dialect
                    .ok_or_else(|| format!("provider {} has no dialect", p.code))?,
                enabled: p.enabled,
                secrets: p.secrets()?,
                public_keys: match p.dialect {
                    Some(d) if d.uses_public_key() => p
                        .public_keys()?
                        .into_iter()
                        .map(rsa::pkcs1v15::VerifyingKey::new)
                        .collect(),
                    _ => Vec::new(),
                },
                allow_ips: p.allow_ips.clone(),
                signature_window_s: p.signature_window_s,
                currency: Currency::from_code(&p.currency)
                    .ok_or_else(|| format!("provider {} has an unknown currency", p.code))?,
            };
            by_code.insert(p.code.clone(), Arc::new(provider));
        }
        Ok(Registry { by_code })
    }

    pub fn get(&self, code: &str) -> Option<&Arc<Provider>> {
        self.by_code.get(code)
    }
}

#[cfg(test)]
mod tests;
