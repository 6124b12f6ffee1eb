//! `[[providers]]`: each game provider's code, dialect, credentials, allowlist and policy, and the
//! rules they must meet (a known dialect, a valid code, an allowlist where the dialect's
//! signatures can be replayed).

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde::Deserialize;

use super::*;

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Provider {
    pub code: String,
    /// Required.
    pub dialect: Option<Dialect>,
    pub enabled: bool,
    pub secret: String,
    pub secret_env: String,
    pub secret_file: String,
    /// Accepted too while providers move to a rotated secret.
    pub previous_secret: String,
    pub previous_secret_env: String,
    pub previous_secret_file: String,
    /// Source addresses allowed to call; empty allows any (outside demo mode, only for
    /// dialects whose signature binds the call: see `Dialect::binds_call`).
    pub allow_ips: Vec<IpAddr>,
    /// Signed timestamps older or newer than this are refused (native dialect).
    pub signature_window_s: u64,
    /// PEM public key (SPKI) the provider's RSA signatures are checked with (hub88 dialect),
    /// and the previous one, also accepted during a rotation.
    pub public_key_file: String,
    pub previous_public_key_file: String,
    /// The wallet currency of calls that name none (the Pragmatic-style dialect's).
    pub currency: String,
    /// Game launch URL handed to players (`POST /api/games/{game_id}/launch`), with
    /// `{token}`, `{game_id}`, `{currency}` and `{player}` filled in. Empty: none.
    pub launch_url: String,
    pub policy: settlement::Policy,
}

impl Default for Provider {
    fn default() -> Self {
        Provider {
            code: String::new(),
            dialect: None,
            enabled: true,
            secret: String::new(),
            secret_env: String::new(),
            secret_file: String::new(),
            previous_secret: String::new(),
            previous_secret_env: String::new(),
            previous_secret_file: String::new(),
            allow_ips: Vec::new(),
            signature_window_s: 300,
            public_key_file: String::new(),
            previous_public_key_file: String::new(),
            currency: "EUR".into(),
            launch_url: String::new(),
            policy: settlement::Policy::default(),
        }
    }
}

pub use dialects::Kind as Dialect;

/// Takes out `providers[i].dialect` values that name no dialect, reporting each, so the rest of
/// the file is still read and checked (serde would stop at the first bad enum value).
pub(crate) fn take_unknown_dialects(
    root: &mut toml::Table,
    problems: &mut Vec<Problem>,
) -> BTreeSet<usize> {
    let mut taken = BTreeSet::new();
    let Some(toml::Value::Array(providers)) = root.get_mut("providers") else {
        return taken;
    };
    for (i, provider) in providers.iter_mut().enumerate() {
        let Some(table) = provider.as_table_mut() else {
            continue;
        };
        let known = match table.get("dialect") {
            None => continue,
            Some(toml::Value::String(name)) => Dialect::ALL.iter().any(|d| d.as_str() == name),
            Some(_) => false,
        };
        if !known {
            let value = table
                .remove("dialect")
                .unwrap_or(toml::Value::Boolean(false));
            let names: Vec<&str> = Dialect::ALL.iter().map(|d| d.as_str()).collect();
            let key = format!("providers[{i}].dialect");
            problems.push(Problem::new(
                ProblemKind::Invalid,
                &key,
                format!("{key} {value} is not one of {}", names.join(", ")),
            ));
            taken.insert(i);
        }
    }
    taken
}

/// The widest window a signed timestamp may have around now: a captured native call can be
/// replayed within it, so it stays short.
pub const SIGNATURE_WINDOW_S_MAX: u64 = 3600;

/// Why a provider of `dialect` may not run with these addresses, if it may not: outside demo
/// mode, a dialect whose signature binds neither the call's moment nor its method needs an
/// allowlist, or any captured call could be replayed from anywhere (a disabled provider still
/// settles what it began, so it needs one too).
pub fn allowlist_missing(
    dialect: Option<Dialect>,
    allow_ips: &[IpAddr],
    demo_enabled: bool,
) -> Option<String> {
    let dialect = dialect?;
    (!demo_enabled && !dialect.binds_call() && allow_ips.is_empty()).then(|| {
        format!(
            "required outside demo mode for the {} dialect: its signature binds neither the \
             time nor the method of a call, so a captured call could be replayed from anywhere",
            dialect.as_str()
        )
    })
}

pub(crate) fn valid_code(code: &str) -> bool {
    let b = code.as_bytes();
    !b.is_empty()
        && b.len() <= 32
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'-')
}
