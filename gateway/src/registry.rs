//! The configured providers, ready for the hot path: code, database id, dialect, secrets,
//! allowlist and policy; and the caller's address behind trusted proxies.
//!
//! Providers come from the configuration and from the back office (`providers.managed`). The
//! registry in force is swapped whole (`State::providers`) when the REST module says a managed
//! provider changed, and every 5 s (for changes made through another gateway, and a rotated
//! secret's deadline). A configured provider always wins over a stored one of the same code.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use settlement::command::{ManagedProvider, ProviderId};
use settlement::money::Currency;

use crate::config::Config;

use dialects::same_ip;
use dialects::signature::Secret;
pub use dialects::Provider;

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
                secrets: p.secrets()?.into_iter().map(Secret::new).collect(),
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

    /// This registry (the configuration's providers) plus the providers managed through the
    /// back office, as stored at second `now`: a previous secret past its deadline is dropped.
    /// A stored provider that cannot be used (unknown dialect, bad settings) is left out and
    /// logged; the configuration's providers always win over a stored one of the same code.
    /// Outside demo mode (`demo` false) a stored provider missing the allowlist its dialect
    /// needs is left out too (`config::allowlist_missing`).
    pub fn with_managed(&self, rows: &[ManagedRow], now: i64, demo: bool) -> Registry {
        let mut by_code = self.by_code.clone();
        for row in rows {
            if by_code.contains_key(&row.code) {
                continue;
            }
            match row.provider(now, demo) {
                Ok(provider) => {
                    by_code.insert(row.code.clone(), Arc::new(provider));
                }
                Err(e) => {
                    tracing::warn!(provider = %row.code, error = %e, "stored provider left out")
                }
            }
        }
        Registry { by_code }
    }
}

/// A provider as the back office stores it (`providers.managed`).
#[derive(Debug, Clone)]
pub struct ManagedRow {
    pub id: i32,
    pub code: String,
    pub dialect: String,
    pub enabled: bool,
    pub managed: serde_json::Value,
}

impl ManagedRow {
    fn provider(&self, now: i64, demo: bool) -> Result<Provider, String> {
        let dialect = crate::config::Dialect::ALL
            .into_iter()
            .find(|d| d.as_str() == self.dialect && !d.uses_public_key())
            .ok_or_else(|| format!("dialect {:?} cannot be managed here", self.dialect))?;
        let m: ManagedProvider =
            serde_json::from_value(self.managed.clone()).map_err(|e| e.to_string())?;
        let mut secrets = vec![Secret::new(m.secret.into_bytes())];
        if let (Some(previous), Some(until)) = (m.previous_secret, m.previous_until) {
            if now < until {
                secrets.push(Secret::new(previous.into_bytes()));
            }
        }
        if secrets
            .iter()
            .any(|s| s.as_bytes().len() < crate::config::SECRET_BYTES_MIN)
        {
            return Err("a secret is shorter than 16 bytes".into());
        }
        if let Some(why) = crate::config::allowlist_missing(Some(dialect), &m.allow_ips, demo) {
            return Err(format!("allow_ips {why}"));
        }
        if !(1..=crate::config::SIGNATURE_WINDOW_S_MAX).contains(&m.signature_window_s) {
            return Err("signature_window_s out of range".into());
        }
        Ok(Provider {
            id: ProviderId(self.id),
            code: self.code.clone(),
            dialect,
            enabled: self.enabled,
            secrets,
            public_keys: Vec::new(),
            allow_ips: m.allow_ips,
            signature_window_s: m.signature_window_s,
            currency: Currency::from_code(&m.currency).ok_or("unknown currency".to_string())?,
            policy: m.policy,
        })
    }
}

#[cfg(test)]
mod tests;
