//! Provider registry and dialect dispatch: `/api/provider-callback/{provider}/...` finds the
//! provider by code and hands the rest of the path to its dialect.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use settlement::command::{Policy, ProviderId};

use crate::config::Config;

pub mod native;
pub mod wire;

/// One configured provider, ready for the hot path.
#[derive(Debug)]
pub struct Provider {
    pub id: ProviderId,
    pub code: String,
    pub dialect: String,
    pub enabled: bool,
    /// Current secret first, then the previous one.
    pub secrets: Vec<Vec<u8>>,
    pub allow_ips: Vec<IpAddr>,
    pub signature_window_s: u64,
    pub policy: Policy,
}

impl Provider {
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
                dialect: p.dialect.clone(),
                enabled: p.enabled,
                secrets: p.secrets()?,
                allow_ips: p.allow_ips.clone(),
                signature_window_s: p.signature_window_s,
            };
            by_code.insert(p.code.clone(), Arc::new(provider));
        }
        Ok(Registry { by_code })
    }

    pub fn get(&self, code: &str) -> Option<&Arc<Provider>> {
        self.by_code.get(code)
    }
}

/// Every provider callback path starts with this, followed by the provider code.
pub const CALLBACK_PREFIX: &str = "/api/provider-callback/";

/// Finds the provider named in the path and lets its dialect answer.
pub async fn handle(
    state: &Arc<crate::state::State>,
    peer: std::net::SocketAddr,
    request: http::Request<hyper::body::Incoming>,
) -> http::Response<crate::server::Body> {
    let rest = &request.uri().path()[CALLBACK_PREFIX.len()..];
    let code = rest.split('/').next().unwrap_or_default();
    let Some(provider) = state.providers.get(code).cloned() else {
        return crate::server::json(
            http::StatusCode::NOT_FOUND,
            &serde_json::json!({"status": "UNKNOWN_PROVIDER", "message": "no such provider"}),
        );
    };
    let caller = caller_ip(
        peer.ip(),
        request.headers(),
        &state.config.server.trusted_proxies,
    );
    if !provider.enabled || !provider.allows(caller) {
        return crate::server::json(
            http::StatusCode::FORBIDDEN,
            &serde_json::json!({"status": "FORBIDDEN", "message": "provider disabled or source address not allowed"}),
        );
    }
    let action = rest[code.len()..].trim_start_matches('/').to_string();
    match provider.dialect.as_str() {
        "native" => native::handle(state, &provider, &action, request).await,
        other => crate::server::json(
            http::StatusCode::NOT_IMPLEMENTED,
            &serde_json::json!({"status": "TEMPORARY_ERROR", "message": format!("dialect {other} not available")}),
        ),
    }
}

#[cfg(test)]
mod tests;
