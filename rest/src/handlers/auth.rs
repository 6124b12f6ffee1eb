//! `/api/auth/...`: registration, login (password, then a TOTP code where 2FA is on), rotating
//! refresh tokens with reuse detection, logout, the caller's own account, and 2FA set-up.

use std::sync::Arc;

use axum::extract::State;
use axum::Extension;
use serde::{Deserialize, Serialize};
use tokio_postgres::error::SqlState;
use utoipa::ToSchema;

use crate::auth::token::{new_refresh, now_s, refresh_hash};
use crate::auth::TOTP_FAILURES_MAX;
use crate::auth::{password, totp, Caller, Limit, Role};
use crate::envelope::{created, ok, ApiError, ApiResult, Body, Code, FieldError, Ok};
use crate::{ClientIp, Rest};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// 3–64 characters: lower-case letters, digits, `_`, `.`, `-`; starts with a letter or
    /// digit. Becomes the player id providers see.
    pub username: String,
    pub email: String,
    /// 12–128 characters, not containing the username.
    pub password: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Account {
    pub id: i64,
    pub username: String,
    pub email: Option<String>,
    pub role: Role,
    pub player_id: Option<i64>,
    pub totp_enabled: bool,
    pub created_at: String,
}

fn valid_username(name: &str) -> bool {
    let bytes = name.as_bytes();
    (3..=64).contains(&bytes.len())
        && bytes[0].is_ascii_lowercase() | bytes[0].is_ascii_digit()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(b))
}

fn valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    email.len() <= 254
        && !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !email.contains(char::is_whitespace)
        && !domain.contains('@')
}

#[utoipa::path(post, path = "/api/auth/register", tag = "auth", request_body = RegisterRequest,
    responses((status = 201, description = "account created", body = Account),
              (status = 400, description = "invalid fields", body = crate::envelope::ErrorBody),
              (status = 409, description = "username or email taken", body = crate::envelope::ErrorBody),
              (status = 429, description = "too many registrations from this address", body = crate::envelope::ErrorBody)))]
pub async fn register(
    State(rest): State<Arc<Rest>>,
    Extension(ClientIp(ip)): Extension<ClientIp>,
    Body(req): Body<RegisterRequest>,
) -> ApiResult<Ok<Account>> {
    rest.limiters.check_ip(Limit::RegisterIp, ip)?;
    let username = req.username.trim().to_string();
    let email = req.email.trim().to_lowercase();
    let mut errors = Vec::new();
    if !valid_username(&username) {
        errors.push(FieldError {
            field: "username".into(),
            message: "3 to 64 of a-z, 0-9, _ . -, starting with a letter or digit".into(),
        });
    }
    if !valid_email(&email) {
        errors.push(FieldError {
            field: "email".into(),
            message: "an email address".into(),
        });
    }
    if let Some(why) = password::policy_refuses(&req.password, &username) {
        errors.push(FieldError {
            field: "password".into(),
            message: why,
        });
    }
    if !errors.is_empty() {
        return Err(ApiError::fields(errors));
    }
    let hash = rest.hasher.hash(req.password).await?;
    let mut client = rest.pool.get().await?;
    let tx = client.transaction().await?;
    let player = settlement::store::create_player(&*tx, &username, &rest.options.currency)
        .await?
        .ok_or_else(taken_username)?;
    let inserted = tx
        .query_one(
            &format!(
                "INSERT INTO accounts (username, email, password_hash, role, player_id)
                 VALUES ($1, $2, $3, 'player', $4)
                 RETURNING id, {}",
                crate::rfc3339!("created_at")
            ),
            &[&username, &email, &hash, &player],
        )
        .await;
    let row = match inserted {
        Result::Ok(row) => row,
        Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
            let on_email = e
                .as_db_error()
                .and_then(|d| d.constraint())
                .is_some_and(|c| c.contains("email"));
            return Err(if on_email {
                ApiError::conflict(Code::EmailTaken, "an account with this email exists")
            } else {
                taken_username()
            });
        }
        Err(e) => return Err(e.into()),
    };
    tx.commit().await?;
    created(Account {
        id: row.get(0),
        username,
        email: Some(email),
        role: Role::Player,
        player_id: Some(player),
        totp_enabled: false,
        created_at: row.get(1),
    })
}

fn taken_username() -> ApiError {
    ApiError::conflict(Code::UsernameTaken, "this username is taken")
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// The username, or the email address (one of `username` and `email`).
    pub username: Option<String>,
    pub email: Option<String>,
    pub password: String,
    /// The current code of the authenticator app, when 2FA is on.
    pub totp_code: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Tokens {
    pub access_token: String,
    /// Opaque; each is accepted once by `/api/auth/refresh`, which answers a new one.
    pub refresh_token: String,
    pub token_type: &'static str,
    /// Seconds the access token lives.
    pub expires_in: u64,
    pub role: Role,
    /// This login passed a second factor.
    pub second_factor: bool,
}

#[utoipa::path(post, path = "/api/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, description = "logged in", body = Tokens),
              (status = 403, description = "ACCOUNT_BANNED", body = crate::envelope::ErrorBody),
              (status = 401, description = "INVALID_CREDENTIALS, TOTP_REQUIRED or TOTP_INVALID", body = crate::envelope::ErrorBody),
              (status = 429, description = "too many attempts (Retry-After)", body = crate::envelope::ErrorBody)))]
pub async fn login(
    State(rest): State<Arc<Rest>>,
    Extension(ClientIp(ip)): Extension<ClientIp>,
    Body(req): Body<LoginRequest>,
) -> ApiResult<Ok<Tokens>> {
    let (column, login) = match (&req.username, &req.email) {
        (Some(u), None) if u.contains('@') => ("email", u.trim().to_lowercase()),
        (Some(u), None) => ("username", u.trim().to_lowercase()),
        (None, Some(e)) => ("email", e.trim().to_lowercase()),
        _ => {
            return Err(ApiError::field(
                "username",
                "send one of username and email",
            ))
        }
    };
    if login.is_empty() || login.len() > 254 || req.password.len() > 4 * password::LENGTH_MAX {
        return Err(invalid_credentials());
    }
    rest.limiters.check_ip(Limit::LoginIp, ip)?;
    rest.limiters.check(Limit::LoginAccount, &login)?;
    // The connection goes back to the pool before the hash: a flood of logins waiting for a
    // hashing slot must not hold every connection the other routes need.
    let account = rest
        .pool
        .get()
        .await?
        .query_opt(
            &format!(
                "SELECT a.id, a.password_hash, a.role, a.totp_enabled, a.totp_secret,
                        coalesce(p.status = 'banned', false)
                 FROM accounts a LEFT JOIN players p ON p.id = a.player_id
                 WHERE a.{column} = $1"
            ),
            &[&login],
        )
        .await?;
    let phc = account.as_ref().map(|a| a.get::<_, String>(1));
    // Unknown account or wrong password: the same answer after the same work.
    if !rest.hasher.verify(req.password, phc).await? {
        return Err(invalid_credentials());
    }
    let client = rest.pool.get().await?;
    let account = account.expect("verified against a stored hash");
    let id: i64 = account.get(0);
    let role = Role::parse(account.get(2))
        .ok_or_else(|| ApiError::internal("account role", &"unknown role"))?;
    if account.get::<_, bool>(5) {
        return Err(ApiError::forbidden(
            Code::AccountBanned,
            "this account is banned; contact support",
        ));
    }
    let totp_enabled: bool = account.get(3);
    let mfa = if totp_enabled {
        let Some(code) = req.totp_code.as_deref() else {
            return Err(ApiError::unauthorized(
                Code::TotpRequired,
                "this account uses 2FA: send totp_code",
            ));
        };
        second_factor_attempt(&rest, ip, id)?;
        let secret: String = account.get(4);
        accept_code(&rest, &**client, id, &secret, code).await?;
        true
    } else {
        false
    };
    let tokens = start_session(&rest, &**client, id, role, mfa, &ip.to_string()).await?;
    ok(tokens)
}

/// A second-factor attempt counts against the caller's address and the account.
pub(crate) fn second_factor_attempt(
    rest: &Rest,
    ip: std::net::IpAddr,
    account: i64,
) -> ApiResult<()> {
    rest.limiters.check_ip(Limit::SecondFactorIp, ip)?;
    rest.limiters
        .check(Limit::SecondFactor, &account.to_string())
}

fn invalid_credentials() -> ApiError {
    ApiError::unauthorized(Code::InvalidCredentials, "wrong username or password")
}

/// How long [`TOTP_FAILURES_MAX`] wrong codes in a row lock an account's second factor.
const TOTP_LOCK: &str = "15 minutes";

/// Accepts `code` for `account` once: its time step must be later than the last accepted.
/// [`TOTP_FAILURES_MAX`] wrong codes in a row lock the second factor for [`TOTP_LOCK`]; the
/// count is kept on a connection of its own, so a caller's transaction that rolls back on the
/// refusal does not forget it.
pub(crate) async fn accept_code(
    rest: &Rest,
    client: &impl tokio_postgres::GenericClient,
    account: i64,
    secret: &str,
    code: &str,
) -> ApiResult<()> {
    let locked = client
        .query_opt(
            "SELECT 1 FROM totp_failures WHERE account_id = $1 AND locked_until > now()",
            &[&account],
        )
        .await?
        .is_some();
    if locked {
        return Err(ApiError::forbidden(
            Code::TotpLocked,
            "too many wrong codes: the second factor is locked for a while",
        ));
    }
    let invalid =
        || ApiError::unauthorized(Code::TotpInvalid, "the code is wrong or was used already");
    let accepted = match totp::matching_step(secret, code.trim(), now_s()) {
        None => 0,
        Some(step) => {
            client
                .execute(
                    "UPDATE accounts SET totp_last_step = $2
                     WHERE id = $1 AND (totp_last_step IS NULL OR totp_last_step < $2)",
                    &[&account, &step],
                )
                .await?
        }
    };
    if accepted == 1 {
        client
            .execute(
                "DELETE FROM totp_failures WHERE account_id = $1",
                &[&account],
            )
            .await?;
        return Result::Ok(());
    }
    rest.pool
        .get()
        .await?
        .execute(
            &format!(
                "INSERT INTO totp_failures AS f (account_id, failures) VALUES ($1, 1)
                 ON CONFLICT (account_id) DO UPDATE SET
                     failures = f.failures + 1,
                     locked_until = CASE WHEN f.failures + 1 >= $2
                                         THEN now() + interval '{TOTP_LOCK}'
                                         ELSE f.locked_until END"
            ),
            &[&account, &TOTP_FAILURES_MAX],
        )
        .await?;
    Err(invalid())
}

/// A new login session with its first refresh token, and an access token for it.
async fn start_session(
    rest: &Rest,
    client: &impl tokio_postgres::GenericClient,
    account: i64,
    role: Role,
    mfa: bool,
    ip: &str,
) -> ApiResult<Tokens> {
    let (refresh, hash) = new_refresh();
    let ttl = refresh_ttl_s(rest);
    let row = client
        .query_one(
            "WITH s AS (
                 INSERT INTO auth_sessions (account_id, ip, mfa) VALUES ($1, $2, $3) RETURNING id
             ), r AS (
                 INSERT INTO refresh_tokens (token_hash, session_id, expires_at)
                 SELECT $4, id, now() + make_interval(secs => $5::bigint) FROM s
             )
             SELECT id FROM s",
            &[&account, &ip, &mfa, &hash, &ttl],
        )
        .await?;
    Result::Ok(tokens(rest, account, role, row.get(0), mfa, refresh))
}

fn refresh_ttl_s(rest: &Rest) -> i64 {
    i64::try_from(rest.options.refresh_ttl.as_secs()).unwrap_or(i64::MAX)
}

fn tokens(
    rest: &Rest,
    account: i64,
    role: Role,
    session: i64,
    mfa: bool,
    refresh: String,
) -> Tokens {
    Tokens {
        access_token: rest.keys.issue(account, role, session, mfa),
        refresh_token: refresh,
        token_type: "Bearer",
        expires_in: rest.keys.access_ttl.as_secs(),
        role,
        second_factor: mfa,
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

#[utoipa::path(post, path = "/api/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses((status = 200, description = "new access and refresh tokens; the old refresh token is spent", body = Tokens),
              (status = 401, description = "REFRESH_TOKEN_INVALID, REFRESH_TOKEN_EXPIRED, SESSION_REVOKED, or REFRESH_TOKEN_REUSED (the whole session is revoked)", body = crate::envelope::ErrorBody)))]
pub async fn refresh(
    State(rest): State<Arc<Rest>>,
    Body(req): Body<RefreshRequest>,
) -> ApiResult<Ok<Tokens>> {
    let hash = refresh_hash(req.refresh_token.trim());
    let mut client = rest.pool.get().await?;
    let tx = client.transaction().await?;
    let row = tx
        .query_opt(
            "SELECT r.session_id, r.spent_at IS NOT NULL, r.expires_at > now(),
                    s.revoked_at IS NULL, s.mfa, a.id, a.role
             FROM refresh_tokens r
             JOIN auth_sessions s ON s.id = r.session_id
             JOIN accounts a ON a.id = s.account_id
             WHERE r.token_hash = $1
             FOR UPDATE OF r, s",
            &[&hash],
        )
        .await?
        .ok_or_else(|| {
            ApiError::unauthorized(Code::RefreshTokenInvalid, "this refresh token is not known")
        })?;
    let session: i64 = row.get(0);
    let (spent, live, session_live, mfa): (bool, bool, bool, bool) =
        (row.get(1), row.get(2), row.get(3), row.get(4));
    if !session_live {
        return Err(revoked());
    }
    if spent {
        // A spent token again: it was stolen, or the client is confused. Either way the
        // session (every token of the family, and its access tokens) ends now.
        revoke(&*tx, session, "refresh token reused").await?;
        tx.commit().await?;
        return Err(ApiError::unauthorized(
            Code::RefreshTokenReused,
            "this refresh token was used already; the session is revoked, log in again",
        ));
    }
    if !live {
        return Err(ApiError::unauthorized(
            Code::RefreshTokenExpired,
            "the refresh token has expired; log in again",
        ));
    }
    let account: i64 = row.get(5);
    let role = Role::parse(row.get(6)).ok_or_else(|| ApiError::internal("role", &"unknown"))?;
    let (next, next_hash) = new_refresh();
    let ttl = refresh_ttl_s(&rest);
    tx.execute(
        "WITH spent AS (UPDATE refresh_tokens SET spent_at = now() WHERE token_hash = $1)
         INSERT INTO refresh_tokens (token_hash, session_id, expires_at)
         VALUES ($2, $3, now() + make_interval(secs => $4::bigint))",
        &[&hash, &next_hash, &session, &ttl],
    )
    .await?;
    tx.commit().await?;
    ok(tokens(&rest, account, role, session, mfa, next))
}

fn revoked() -> ApiError {
    ApiError::unauthorized(Code::SessionRevoked, "this login has ended; log in again")
}

/// Ends a login session: its refresh tokens and access tokens are refused from now on.
pub async fn revoke(
    client: &impl tokio_postgres::GenericClient,
    session: i64,
    reason: &str,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "UPDATE auth_sessions SET revoked_at = now(), revoked_reason = $2
             WHERE id = $1 AND revoked_at IS NULL",
            &[&session, &reason],
        )
        .await
        .map(drop)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LoggedOut {
    pub logged_out: bool,
}

#[utoipa::path(post, path = "/api/auth/logout", tag = "auth", security(("bearer" = [])),
    responses((status = 200, description = "the session and its tokens are revoked", body = LoggedOut),
              (status = 401, description = "no valid access token", body = crate::envelope::ErrorBody)))]
pub async fn logout(State(rest): State<Arc<Rest>>, caller: Caller) -> ApiResult<Ok<LoggedOut>> {
    let client = rest.pool.get().await?;
    revoke(&**client, caller.session, "logout").await?;
    ok(LoggedOut { logged_out: true })
}

#[utoipa::path(get, path = "/api/auth/me", tag = "auth", security(("bearer" = [])),
    responses((status = 200, description = "the caller's account", body = Account),
              (status = 401, description = "no valid access token", body = crate::envelope::ErrorBody)))]
pub async fn me(State(rest): State<Arc<Rest>>, caller: Caller) -> ApiResult<Ok<Account>> {
    let client = rest.pool.get().await?;
    let row = client
        .query_one(
            &format!(
                "SELECT username, email, totp_enabled, {} FROM accounts WHERE id = $1",
                crate::rfc3339!("created_at")
            ),
            &[&caller.account],
        )
        .await?;
    ok(Account {
        id: caller.account,
        username: row.get(0),
        email: row.get(1),
        role: caller.role,
        player_id: caller.player,
        totp_enabled: row.get(2),
        created_at: row.get(3),
    })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TotpSetup {
    /// Base32 secret, for typing in by hand.
    pub secret: String,
    /// `otpauth://totp/...`, for an authenticator app (as text or a QR code).
    pub otpauth_uri: String,
}

#[utoipa::path(post, path = "/api/auth/2fa/setup", tag = "auth", security(("bearer" = [])),
    responses((status = 200, description = "a new secret, in force once enabled with a code", body = TotpSetup),
              (status = 409, description = "2FA is on already", body = crate::envelope::ErrorBody),
              (status = 429, description = "too many attempts", body = crate::envelope::ErrorBody)))]
pub async fn totp_setup(
    State(rest): State<Arc<Rest>>,
    Extension(ClientIp(ip)): Extension<ClientIp>,
    caller: Caller,
) -> ApiResult<Ok<TotpSetup>> {
    second_factor_attempt(&rest, ip, caller.account)?;
    let secret = totp::new_secret();
    let client = rest.pool.get().await?;
    let row = client
        .query_opt(
            "UPDATE accounts SET totp_secret = $2, totp_last_step = NULL
             WHERE id = $1 AND NOT totp_enabled RETURNING username",
            &[&caller.account, &secret],
        )
        .await?
        .ok_or_else(|| ApiError::conflict(Code::TotpAlreadyEnabled, "2FA is on already"))?;
    let username: String = row.get(0);
    let otpauth_uri = totp::uri(&secret, &username)
        .ok_or_else(|| ApiError::internal("otpauth uri", &"secret not base32"))?;
    ok(TotpSetup {
        secret,
        otpauth_uri,
    })
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TotpEnableRequest {
    /// The account's password: whoever holds a stolen access token cannot bind their own
    /// authenticator to the account.
    pub password: String,
    /// The authenticator's current 6-digit code.
    pub code: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TotpState {
    pub totp_enabled: bool,
}

#[utoipa::path(post, path = "/api/auth/2fa/enable", tag = "auth", security(("bearer" = [])), request_body = TotpEnableRequest,
    responses((status = 200, description = "2FA is on; log in again with a code for a second-factor session", body = TotpState),
              (status = 401, description = "INVALID_CREDENTIALS or TOTP_INVALID", body = crate::envelope::ErrorBody),
              (status = 403, description = "TOTP_LOCKED after 10 wrong codes in a row (15 minutes)", body = crate::envelope::ErrorBody),
              (status = 409, description = "no set-up pending, or on already", body = crate::envelope::ErrorBody),
              (status = 429, description = "too many attempts", body = crate::envelope::ErrorBody)))]
pub async fn totp_enable(
    State(rest): State<Arc<Rest>>,
    Extension(ClientIp(ip)): Extension<ClientIp>,
    caller: Caller,
    Body(req): Body<TotpEnableRequest>,
) -> ApiResult<Ok<TotpState>> {
    second_factor_attempt(&rest, ip, caller.account)?;
    let mut client = rest.pool.get().await?;
    let tx = client.transaction().await?;
    let row = tx
        .query_one(
            "SELECT totp_enabled, totp_secret, password_hash FROM accounts WHERE id = $1
             FOR UPDATE",
            &[&caller.account],
        )
        .await?;
    if !rest.hasher.verify(req.password, Some(row.get(2))).await? {
        return Err(invalid_credentials());
    }
    let (enabled, secret): (bool, Option<String>) = (row.get(0), row.get(1));
    let secret = match (enabled, secret) {
        (false, Some(secret)) => secret,
        (true, _) => {
            return Err(ApiError::conflict(
                Code::TotpAlreadyEnabled,
                "2FA is on already",
            ))
        }
        (false, None) => {
            return Err(ApiError::conflict(
                Code::TotpNotSetUp,
                "call /api/auth/2fa/setup first",
            ))
        }
    };
    accept_code(&rest, &*tx, caller.account, &secret, &req.code).await?;
    tx.execute(
        "UPDATE accounts SET totp_enabled = true WHERE id = $1",
        &[&caller.account],
    )
    .await?;
    tx.commit().await?;
    ok(TotpState { totp_enabled: true })
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TotpDisableRequest {
    pub password: String,
    pub code: String,
}

#[utoipa::path(post, path = "/api/auth/2fa/disable", tag = "auth", security(("bearer" = [])), request_body = TotpDisableRequest,
    responses((status = 200, description = "2FA is off", body = TotpState),
              (status = 401, description = "INVALID_CREDENTIALS or TOTP_INVALID", body = crate::envelope::ErrorBody),
              (status = 403, description = "SECOND_FACTOR_MANDATORY: staff accounts keep 2FA", body = crate::envelope::ErrorBody),
              (status = 429, description = "too many attempts", body = crate::envelope::ErrorBody)))]
pub async fn totp_disable(
    State(rest): State<Arc<Rest>>,
    Extension(ClientIp(ip)): Extension<ClientIp>,
    caller: Caller,
    Body(req): Body<TotpDisableRequest>,
) -> ApiResult<Ok<TotpState>> {
    second_factor_attempt(&rest, ip, caller.account)?;
    if caller.role.needs_second_factor() {
        return Err(ApiError::forbidden(
            Code::SecondFactorMandatory,
            "staff accounts cannot turn 2FA off",
        ));
    }
    let client = rest.pool.get().await?;
    let row = client
        .query_one(
            "SELECT password_hash, totp_enabled, totp_secret FROM accounts WHERE id = $1",
            &[&caller.account],
        )
        .await?;
    if !rest.hasher.verify(req.password, Some(row.get(0))).await? {
        return Err(invalid_credentials());
    }
    let (enabled, secret): (bool, Option<String>) = (row.get(1), row.get(2));
    let secret = match (enabled, secret) {
        (true, Some(secret)) => secret,
        _ => {
            return Err(ApiError::conflict(
                Code::TotpNotEnabled,
                "2FA is off already",
            ))
        }
    };
    accept_code(&rest, &**client, caller.account, &secret, &req.code).await?;
    client
        .execute(
            "UPDATE accounts SET totp_enabled = false, totp_secret = NULL WHERE id = $1",
            &[&caller.account],
        )
        .await?;
    ok(TotpState {
        totp_enabled: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_and_emails() {
        assert!(valid_username("player-1"));
        assert!(valid_username("a.b_c"));
        assert!(!valid_username("ab"));
        assert!(!valid_username("Alice"));
        assert!(!valid_username("-lead"));
        assert!(!valid_username("sp ace"));
        assert!(valid_email("a@b.co"));
        assert!(!valid_email("a@b"));
        assert!(!valid_email("@b.co"));
        assert!(!valid_email("a b@c.co"));
        assert!(!valid_email("a@b@c.co"));
    }
}
