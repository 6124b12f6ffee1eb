//! Who is calling and what they may do: roles, the one RBAC table every `/api/admin/...`
//! route is checked against, the caller extracted from a bearer token (whose login session
//! must still be live), and the rate limits on login, 2FA and registration.

pub mod password;
pub mod token;
pub mod totp;

use std::num::NonZeroU32;
use std::sync::Arc;

use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Serialize};

use crate::envelope::{ApiError, ApiResult, Code};
use crate::Rest;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Manager,
    Support,
    Player,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Admin, Role::Manager, Role::Support, Role::Player];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Manager => "manager",
            Role::Support => "support",
            Role::Player => "player",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == text)
    }

    /// Staff roles must log in with a second factor to use the back office.
    pub fn needs_second_factor(self) -> bool {
        self != Role::Player
    }
}

/// The rate limits' key for a caller's address: IPv4 as it is (also when mapped into IPv6),
/// IPv6 by its /64.
pub fn network_key(ip: std::net::IpAddr) -> String {
    match ip.to_canonical() {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

/// Consecutive wrong second-factor codes that lock an account's second factor (15 minutes).
pub const TOTP_FAILURES_MAX: i32 = 10;

/// The authenticated caller of a request.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub account: i64,
    pub role: Role,
    pub player: Option<i64>,
    pub session: i64,
    /// This login passed a second factor.
    pub mfa: bool,
}

impl FromRequestParts<Arc<Rest>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, rest: &Arc<Rest>) -> ApiResult<Caller> {
        if let Some(caller) = parts.extensions.get::<Caller>() {
            return Ok(*caller);
        }
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| {
                ApiError::unauthorized(
                    Code::Unauthorized,
                    "send Authorization: Bearer <access token>",
                )
            })?;
        let claims = rest.keys.check(token.trim()).map_err(|e| match e {
            token::TokenError::Expired => ApiError::unauthorized(
                Code::TokenExpired,
                "the access token has expired; refresh it",
            ),
            token::TokenError::Invalid => {
                ApiError::unauthorized(Code::TokenInvalid, "the access token is not valid")
            }
        })?;
        let account: i64 = claims.sub.parse().map_err(|_| {
            ApiError::unauthorized(Code::TokenInvalid, "the access token is not valid")
        })?;
        // The session must still be live (logout and refresh-token reuse revoke it), and the
        // role is the account's role now, not the one the token was issued with.
        let client = rest.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT a.role, a.player_id FROM auth_sessions s JOIN accounts a ON a.id = s.account_id
                 WHERE s.id = $1 AND s.account_id = $2 AND s.revoked_at IS NULL",
                &[&claims.sid, &account],
            )
            .await?
            .ok_or_else(|| {
                ApiError::unauthorized(Code::SessionRevoked, "this login has ended; log in again")
            })?;
        let role = Role::parse(row.get(0))
            .ok_or_else(|| ApiError::internal("account role", &"unknown role in the database"))?;
        let caller = Caller {
            account,
            role,
            player: row.get(1),
            session: claims.sid,
            mfa: claims.mfa,
        };
        parts.extensions.insert(caller);
        Ok(caller)
    }
}

/// A caller with a player account (the `/api/user/...` and game routes).
#[derive(Debug, Clone, Copy)]
pub struct PlayerCaller {
    pub caller: Caller,
    pub player: i64,
}

impl FromRequestParts<Arc<Rest>> for PlayerCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, rest: &Arc<Rest>) -> ApiResult<PlayerCaller> {
        let caller = Caller::from_request_parts(parts, rest).await?;
        match caller.player {
            Some(player) if caller.role == Role::Player => Ok(PlayerCaller { caller, player }),
            _ => Err(ApiError::forbidden(
                Code::PlayersOnly,
                "this route is for player accounts",
            )),
        }
    }
}

/// Middleware on every `/api/admin/...` route: the caller must hold a role the table allows
/// for this route and have logged in with a second factor.
pub async fn enforce_rbac(State(rest): State<Arc<Rest>>, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    let caller = match Caller::from_request_parts(&mut parts, &rest).await {
        Ok(caller) => caller,
        Err(e) => return e.into_response(),
    };
    let template = parts
        .extensions
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_default();
    let allowed = crate::routes::allowed_roles(&parts.method, &template).unwrap_or(&[]);
    if !allowed.contains(&caller.role) {
        return ApiError::forbidden(Code::Forbidden, "your role may not use this route")
            .into_response();
    }
    if !caller.mfa {
        return ApiError::forbidden(
            Code::SecondFactorRequired,
            "the back office needs a login with a TOTP code; enable 2FA and log in again",
        )
        .into_response();
    }
    next.run(Request::from_parts(parts, body)).await
}

/// Attempts per minute allowed, per client address and per account (`[rest.rate_limits]` of
/// the gateway's configuration).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default)]
pub struct RateLimits {
    pub login_per_ip: u32,
    pub login_per_account: u32,
    pub register_per_ip: u32,
    pub second_factor_per_ip: u32,
    pub second_factor_per_account: u32,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            login_per_ip: 30,
            login_per_account: 10,
            register_per_ip: 10,
            second_factor_per_ip: 30,
            second_factor_per_account: 10,
        }
    }
}

/// The keyed limiters (governor's GCRA): a key over its quota waits, and is told how long.
pub struct Limiters {
    login_ip: DefaultKeyedRateLimiter<String>,
    login_account: DefaultKeyedRateLimiter<String>,
    register_ip: DefaultKeyedRateLimiter<String>,
    second_factor_ip: DefaultKeyedRateLimiter<String>,
    second_factor: DefaultKeyedRateLimiter<String>,
}

impl std::fmt::Debug for Limiters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiters").finish_non_exhaustive()
    }
}

fn per_minute(n: u32) -> DefaultKeyedRateLimiter<String> {
    let n = NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
    RateLimiter::keyed(Quota::per_minute(n))
}

/// Which limit a request counts against.
#[derive(Debug, Clone, Copy)]
pub enum Limit {
    LoginIp,
    LoginAccount,
    RegisterIp,
    SecondFactorIp,
    SecondFactor,
}

impl Limiters {
    pub fn new(limits: RateLimits) -> Limiters {
        Limiters {
            login_ip: per_minute(limits.login_per_ip),
            login_account: per_minute(limits.login_per_account),
            register_ip: per_minute(limits.register_per_ip),
            second_factor_ip: per_minute(limits.second_factor_per_ip),
            second_factor: per_minute(limits.second_factor_per_account),
        }
    }

    /// Counts one attempt by `key`; 429 with `Retry-After` when over the limit.
    pub fn check(&self, limit: Limit, key: &str) -> ApiResult<()> {
        let limiter = match limit {
            Limit::LoginIp => &self.login_ip,
            Limit::LoginAccount => &self.login_account,
            Limit::RegisterIp => &self.register_ip,
            Limit::SecondFactorIp => &self.second_factor_ip,
            Limit::SecondFactor => &self.second_factor,
        };
        limiter.check_key(&key.to_string()).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            ApiError::rate_limited(wait.as_secs() + u64::from(wait.subsec_nanos() > 0))
        })
    }

    /// As [`Limiters::check`], keyed by the caller's network: an IPv4 address, or an IPv6
    /// address's /64 (one subscriber's whole block, which they can rotate through freely).
    pub fn check_ip(&self, limit: Limit, ip: std::net::IpAddr) -> ApiResult<()> {
        self.check(limit, &network_key(ip))
    }

    /// Forgets keys whose limit is back to full (bounds the memory held for past callers).
    pub fn forget_idle(&self) {
        for limiter in [
            &self.login_ip,
            &self.login_account,
            &self.register_ip,
            &self.second_factor_ip,
            &self.second_factor,
        ] {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::network_key;

    /// Issue 33 (11): one IPv6 subscriber holds a whole /64 and can rotate through it, so the
    /// rate limits count it as one caller; IPv4, mapped or not, is one address.
    #[test]
    fn callers_are_counted_by_address_or_ipv6_block() {
        let key = |ip: &str| network_key(ip.parse().unwrap());
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff:0:0:9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("203.0.113.9"), "203.0.113.9");
        assert_eq!(key("::ffff:203.0.113.9"), "203.0.113.9");
        assert_ne!(key("203.0.113.9"), key("203.0.113.10"));
    }
}
