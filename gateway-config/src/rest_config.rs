//! `[rest]` and `[[payment_providers]]`: the REST module's settings, their secrets, and their
//! checks (made only when the module is on).

use std::collections::BTreeSet;

use serde::Deserialize;

use super::secrets::resolve_secret;
use super::*;

/// The REST module under `/api/` (players and the back office).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Rest {
    /// Off: `/api/` answers 404 and the gateway serves callbacks only.
    pub enabled: bool,
    /// HS256 key of access tokens, at least 32 bytes (inline, or `_env` / `_file`).
    pub jwt_secret: String,
    pub jwt_secret_env: String,
    pub jwt_secret_file: String,
    /// Access token lifetime, at most 900 s.
    pub access_token_ttl_s: u64,
    pub refresh_token_ttl_s: u64,
    /// Password hashes computed at once (Argon2id, 19 MiB each); 0: one per core.
    pub hash_concurrency: usize,
    pub game_session_ttl_s: u64,
    /// Currency of a registered player's first wallet.
    pub currency: String,
    /// Back-office adjustments above this many whole units of the wallet's currency need a
    /// second admin's approval (currencies not in `adjustment_approval_above_in`)...
    pub adjustment_approval_above: u64,
    /// ...and per currency, as a decimal in its units (`{ BTC = "0.02", EUR = "1000" }`):
    /// a whole unit of one currency is not one of another.
    pub adjustment_approval_above_in: std::collections::BTreeMap<String, String>,
    /// The report rollups fold ledger rows older than `report_settle_s` every
    /// `report_fold_interval_s`: reports are that fresh.
    pub report_fold_interval_s: u64,
    pub report_settle_s: u64,
    /// Attempts per minute before 429 (`Retry-After`).
    pub rate_limits: rest::auth::RateLimits,
}

impl Default for Rest {
    fn default() -> Self {
        Rest {
            enabled: false,
            jwt_secret: String::new(),
            jwt_secret_env: String::new(),
            jwt_secret_file: String::new(),
            access_token_ttl_s: 900,
            refresh_token_ttl_s: 30 * 24 * 60 * 60,
            hash_concurrency: 0,
            game_session_ttl_s: 4 * 60 * 60,
            currency: "EUR".into(),
            adjustment_approval_above: 1000,
            adjustment_approval_above_in: std::collections::BTreeMap::new(),
            report_fold_interval_s: 5,
            report_settle_s: 60,
            rate_limits: rest::auth::RateLimits::default(),
        }
    }
}

/// A payment provider whose signed webhooks (`POST /api/payments/webhook/{code}`, signed like
/// the native dialect) credit deposits.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct PaymentProvider {
    pub code: String,
    pub secret: String,
    pub secret_env: String,
    pub secret_file: String,
    /// Also accepted while the payment provider moves to a rotated secret.
    pub previous_secret: String,
    pub previous_secret_env: String,
    pub previous_secret_file: String,
    pub signature_window_s: u64,
}

impl Default for PaymentProvider {
    fn default() -> Self {
        PaymentProvider {
            code: String::new(),
            secret: String::new(),
            secret_env: String::new(),
            secret_file: String::new(),
            previous_secret: String::new(),
            previous_secret_env: String::new(),
            previous_secret_file: String::new(),
            signature_window_s: 300,
        }
    }
}

impl PaymentProvider {
    /// Current secret first, then the previous one; `Err` names what is wrong.
    pub fn secrets(&self, demo_enabled: bool) -> Result<Vec<Vec<u8>>, String> {
        let mut secrets = Vec::new();
        for (key, inline, env, file) in [
            ("secret", &self.secret, &self.secret_env, &self.secret_file),
            (
                "previous_secret",
                &self.previous_secret,
                &self.previous_secret_env,
                &self.previous_secret_file,
            ),
        ] {
            let resolved = resolve_secret(inline, env, file).map_err(|e| format!("{key}{e}"))?;
            match resolved {
                None if key == "secret" => {
                    return Err("one of secret, secret_env, secret_file is required".into())
                }
                None => {}
                Some(secret) => {
                    if let Some(why) =
                        weak_secret(key, secret.as_bytes(), SECRET_BYTES_MIN, demo_enabled)
                    {
                        return Err(why);
                    }
                    secrets.push(secret.into_bytes());
                }
            }
        }
        Ok(secrets)
    }
}

impl Rest {
    /// The access-token key, resolved; `Err` says why it cannot be used.
    pub fn jwt_key(&self, demo_enabled: bool) -> Result<Vec<u8>, String> {
        let key = "rest.jwt_secret";
        let secret = resolve_secret(
            &self.jwt_secret,
            &self.jwt_secret_env,
            &self.jwt_secret_file,
        )
        .map_err(|e| format!("{key}{e}"))?
        .ok_or_else(|| {
            "rest: one of jwt_secret, jwt_secret_env, jwt_secret_file is required when rest.enabled"
                .to_string()
        })?;
        match weak_secret(
            key,
            secret.as_bytes(),
            rest::auth::token::KEY_BYTES_MIN,
            demo_enabled,
        ) {
            Some(why) => Err(why),
            None => Ok(secret.into_bytes()),
        }
    }
}

impl Config {
    /// Checks of `[rest]` (and of the demo logins it seeds), when the module is on.
    pub(crate) fn rest_problems(&self) -> Vec<Problem> {
        use ProblemKind::{Invalid, Range};
        let mut p = Vec::new();
        let r = &self.rest;
        if !r.enabled {
            if !self.payment_providers.is_empty() {
                let message = "payment_providers need the REST module (rest.enabled)".to_string();
                p.push(Problem::new(Invalid, "payment_providers", message));
            }
            return p;
        }
        let mut codes = BTreeSet::new();
        for (i, psp) in self.payment_providers.iter().enumerate() {
            let at = format!("payment_providers[{i}]");
            if !valid_code(&psp.code) || !codes.insert(psp.code.clone()) {
                let message =
                    format!("{at}.code must be unique and match [a-z0-9][a-z0-9_-]{{0,31}}");
                p.push(Problem::new(Invalid, &format!("{at}.code"), message));
            }
            if let Err(why) = psp.secrets(self.demo.enabled) {
                p.push(Problem::new(
                    ProblemKind::Secret,
                    &format!("{at}.secret"),
                    format!("{at}.{why}"),
                ));
            }
            if psp.signature_window_s == 0 {
                p.push(Problem::new(
                    Range,
                    &format!("{at}.signature_window_s"),
                    format!("{at}.signature_window_s must be > 0"),
                ));
            }
        }
        let range = |p: &mut Vec<Problem>, key: &str, ok: bool, rule: &str| {
            if !ok {
                p.push(Problem::new(Range, key, format!("{key} must be {rule}")));
            }
        };
        if let Err(why) = r.jwt_key(self.demo.enabled) {
            p.push(Problem::new(ProblemKind::Secret, "rest.jwt_secret", why));
        }
        range(
            &mut p,
            "rest.access_token_ttl_s",
            (1..=rest::auth::token::ACCESS_TTL_MAX.as_secs()).contains(&r.access_token_ttl_s),
            "between 1 and 900",
        );
        range(
            &mut p,
            "rest.refresh_token_ttl_s",
            r.refresh_token_ttl_s > 0,
            "> 0",
        );
        range(
            &mut p,
            "rest.game_session_ttl_s",
            r.game_session_ttl_s > 0,
            "> 0",
        );
        range(
            &mut p,
            "rest.report_fold_interval_s",
            r.report_fold_interval_s > 0,
            "> 0",
        );
        range(
            &mut p,
            "rest.adjustment_approval_above",
            r.adjustment_approval_above <= 1_000_000_000_000,
            "at most 1000000000000 (whole units)",
        );
        range(
            &mut p,
            "rest.report_settle_s",
            r.report_settle_s >= 2,
            ">= 2: the lanes' transactions are cut at half of it (at most 20 s), so a fold never \
             passes rows that a later commit still adds below them",
        );
        for (code, amount) in &r.adjustment_approval_above_in {
            let key = format!("rest.adjustment_approval_above_in.{code}");
            let parsed = settlement::money::Currency::from_code(code)
                .ok_or_else(|| format!("{key}: {code:?} is not a known currency"))
                .and_then(|c| {
                    settlement::money::parse_minor(amount, c.exponent)
                        .map_err(|e| format!("{key}: {amount:?}: {e}"))
                });
            if let Err(message) = parsed {
                p.push(Problem::new(Invalid, &key, message));
            }
        }
        let l = &r.rate_limits;
        range(
            &mut p,
            "rest.rate_limits",
            [
                l.login_per_ip,
                l.login_per_account,
                l.register_per_ip,
                l.second_factor_per_ip,
                l.second_factor_per_account,
            ]
            .iter()
            .all(|n| *n > 0),
            "> 0 for every limit",
        );
        if settlement::money::Currency::from_code(&r.currency).is_none() {
            p.push(Problem::new(
                Invalid,
                "rest.currency",
                format!("rest.currency {:?} is not a known currency", r.currency),
            ));
        }
        if self.demo.enabled && rest::auth::totp::code_at(&self.demo.admin_totp_secret, 0).is_none()
        {
            p.push(Problem::new(
                Invalid,
                "demo.admin_totp_secret",
                "demo.admin_totp_secret must be base32".to_string(),
            ));
        }
        p
    }
}
