//! The REST module's accounts and security over real HTTP and PostgreSQL: registration,
//! login, refresh-token rotation and reuse, logout, forged and expired tokens, TOTP, rate
//! limits, and the role × route matrix of the back office.

use std::time::Instant;

use base64::Engine;
use gateway::test_util::{
    start_gateway, totp_code, Answer, TestGateway, ADMIN_PASSWORD, ADMIN_TOTP, JWT_TEST_KEY,
    PLAYER_PASSWORD, REST_ON,
};
use hmac::{Hmac, Mac};
use http::{Method, StatusCode};
use serde_json::{json, Value};

async fn gateway() -> TestGateway {
    start_gateway(REST_ON).await
}

fn post(path: &str) -> (Method, &str) {
    (Method::POST, path)
}

/// Asserts a refusal's status and code, and answers its body.
pub fn refused(a: &gateway::test_util::Answer, status: StatusCode, code: &str) -> Value {
    let body = a.json();
    assert_eq!(
        (a.status, body["code"].as_str()),
        (status, Some(code)),
        "{body}"
    );
    assert_eq!(body["success"], false);
    assert_eq!(body["status"], status.as_u16());
    body
}

pub fn data(a: &gateway::test_util::Answer, status: StatusCode) -> Value {
    let body = a.json();
    assert_eq!(a.status, status, "{body}");
    assert_eq!(body["success"], true, "{body}");
    body["data"].clone()
}

#[tokio::test]
async fn register_login_me_refresh_and_logout() {
    let gw = gateway().await;
    let (m, p) = post("/api/auth/register");
    let alice = json!({"username": "alice", "email": "Alice@Example.com", "password": "correct horse battery"});
    let account = data(
        &gw.api(m.clone(), p, None, Some(alice.clone())).await,
        StatusCode::CREATED,
    );
    assert_eq!(account["username"], "alice");
    assert_eq!(account["email"], "alice@example.com");
    assert_eq!(account["role"], "player");
    // The new player has an empty EUR wallet, and no ledger row (nothing moved).
    assert_eq!(gw.balance("alice").await, 0);
    assert_eq!(gw.ledger_len("alice").await, 0);

    // Taken username, taken email, bad fields (each named), unknown field, not JSON.
    let again = json!({"username": "alice", "email": "other@example.com", "password": "correct horse battery"});
    refused(
        &gw.api(m.clone(), p, None, Some(again)).await,
        StatusCode::CONFLICT,
        "USERNAME_TAKEN",
    );
    let same_mail = json!({"username": "alicia", "email": "alice@example.com", "password": "correct horse battery"});
    refused(
        &gw.api(m.clone(), p, None, Some(same_mail)).await,
        StatusCode::CONFLICT,
        "EMAIL_TAKEN",
    );
    let bad = json!({"username": "A!", "email": "nope", "password": "short"});
    let body = refused(
        &gw.api(m.clone(), p, None, Some(bad)).await,
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
    );
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["username", "email", "password"]);
    let extra = json!({"username": "bob", "email": "bob@example.com", "password": "correct horse battery", "role": "admin"});
    let body = refused(
        &gw.api(m.clone(), p, None, Some(extra)).await,
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
    );
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("unknown field"),
        "{body}"
    );
    let garbage = gw
        .request(
            m.clone(),
            p,
            &[("Content-Type", "application/json".into())],
            "{not json",
        )
        .await;
    refused(&garbage, StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
    let no_type = gw.request(m.clone(), p, &[], alice.to_string()).await;
    refused(
        &no_type,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "UNSUPPORTED_MEDIA_TYPE",
    );

    // Login by username and by email.
    let by_name = gw.login_with("alice", "correct horse battery", None).await;
    assert_eq!(by_name["token_type"], "Bearer");
    assert_eq!(by_name["expires_in"], 900);
    let by_mail = json!({"email": "ALICE@example.com", "password": "correct horse battery"});
    let tokens = data(
        &gw.api(Method::POST, "/api/auth/login", None, Some(by_mail))
            .await,
        StatusCode::OK,
    );
    let access = tokens["access_token"].as_str().unwrap();
    let me = data(
        &gw.api(Method::GET, "/api/auth/me", Some(access), None)
            .await,
        StatusCode::OK,
    );
    assert_eq!(
        (me["username"].as_str(), me["role"].as_str()),
        (Some("alice"), Some("player"))
    );

    // Refresh rotates: the new pair works, the old refresh token is spent.
    let first = tokens["refresh_token"].as_str().unwrap().to_string();
    let refresh = |t: &str| {
        gw.api(
            Method::POST,
            "/api/auth/refresh",
            None,
            Some(json!({"refresh_token": t})),
        )
    };
    let rotated = data(&refresh(&first).await, StatusCode::OK);
    let second = rotated["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(first, second);
    let access2 = rotated["access_token"].as_str().unwrap().to_string();
    data(
        &gw.api(Method::GET, "/api/auth/me", Some(&access2), None)
            .await,
        StatusCode::OK,
    );
    // Reuse of the spent token revokes the whole family: the rotated refresh token and every
    // access token of the session stop working.
    refused(
        &refresh(&first).await,
        StatusCode::UNAUTHORIZED,
        "REFRESH_TOKEN_REUSED",
    );
    refused(
        &refresh(&second).await,
        StatusCode::UNAUTHORIZED,
        "SESSION_REVOKED",
    );
    refused(
        &gw.api(Method::GET, "/api/auth/me", Some(&access2), None)
            .await,
        StatusCode::UNAUTHORIZED,
        "SESSION_REVOKED",
    );
    refused(
        &refresh("made-up").await,
        StatusCode::UNAUTHORIZED,
        "REFRESH_TOKEN_INVALID",
    );
    // The other login (by name) is another session, untouched.
    let other = by_name["access_token"].as_str().unwrap();
    data(
        &gw.api(Method::GET, "/api/auth/me", Some(other), None).await,
        StatusCode::OK,
    );

    // Logout ends that session's access and refresh tokens.
    data(
        &gw.api(Method::POST, "/api/auth/logout", Some(other), None)
            .await,
        StatusCode::OK,
    );
    refused(
        &gw.api(Method::GET, "/api/auth/me", Some(other), None).await,
        StatusCode::UNAUTHORIZED,
        "SESSION_REVOKED",
    );
    let its_refresh = by_name["refresh_token"].as_str().unwrap();
    refused(
        &refresh(its_refresh).await,
        StatusCode::UNAUTHORIZED,
        "SESSION_REVOKED",
    );
    refused(
        &gw.api(Method::GET, "/api/auth/me", None, None).await,
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
    );
    gw.finish().await;
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A JWT with this header and claims, signed HS256 with `key` (or HS512).
fn jwt(header: &Value, claims: &Value, key: &[u8], hs512: bool) -> String {
    let signing_input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let signature = if hs512 {
        let mut mac = Hmac::<sha2::Sha512>::new_from_slice(key).unwrap();
        mac.update(signing_input.as_bytes());
        mac.finalize().into_bytes().to_vec()
    } else {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
        mac.update(signing_input.as_bytes());
        mac.finalize().into_bytes().to_vec()
    };
    format!("{signing_input}.{}", b64(&signature))
}

#[tokio::test]
async fn forged_expired_and_tampered_access_tokens_are_refused() {
    let gw = gateway().await;
    let real = gw.player_token("player-1").await;
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(real.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    let hs256 = json!({"alg": "HS256", "typ": "JWT"});
    // Our own construction with the right key passes: the refusals below are about the change.
    let ours = jwt(&hs256, &claims, JWT_TEST_KEY, false);
    data(
        &gw.api(Method::GET, "/api/auth/me", Some(&ours), None).await,
        StatusCode::OK,
    );

    let gw_ref = &gw;
    let me = |t: String| async move {
        gw_ref
            .api(Method::GET, "/api/auth/me", Some(&t), None)
            .await
    };
    let none = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "typ": "JWT"}).to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    refused(&me(none).await, StatusCode::UNAUTHORIZED, "TOKEN_INVALID");
    let hs512 = jwt(
        &json!({"alg": "HS512", "typ": "JWT"}),
        &claims,
        JWT_TEST_KEY,
        true,
    );
    refused(&me(hs512).await, StatusCode::UNAUTHORIZED, "TOKEN_INVALID");
    let wrong_key = jwt(
        &hs256,
        &claims,
        b"another-key-of-at-least-32-bytes!!",
        false,
    );
    refused(
        &me(wrong_key).await,
        StatusCode::UNAUTHORIZED,
        "TOKEN_INVALID",
    );
    let mut expired = claims.clone();
    expired["iat"] = json!(gateway::test_util::now_s() - 3600);
    expired["exp"] = json!(gateway::test_util::now_s() - 60);
    refused(
        &me(jwt(&hs256, &expired, JWT_TEST_KEY, false)).await,
        StatusCode::UNAUTHORIZED,
        "TOKEN_EXPIRED",
    );
    // Claims changed under the original signature: a player making itself admin.
    let mut promoted = claims.clone();
    promoted["role"] = json!("admin");
    promoted["mfa"] = json!(true);
    let parts: Vec<&str> = real.split('.').collect();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64(promoted.to_string().as_bytes()),
        parts[2]
    );
    refused(
        &me(tampered.clone()).await,
        StatusCode::UNAUTHORIZED,
        "TOKEN_INVALID",
    );
    let admin_route = gw
        .api(Method::GET, "/api/admin/players", Some(&tampered), None)
        .await;
    refused(&admin_route, StatusCode::UNAUTHORIZED, "TOKEN_INVALID");
    // A token without an expiry is refused.
    let mut no_exp = claims.clone();
    no_exp.as_object_mut().unwrap().remove("exp");
    refused(
        &me(jwt(&hs256, &no_exp, JWT_TEST_KEY, false)).await,
        StatusCode::UNAUTHORIZED,
        "TOKEN_INVALID",
    );
    gw.finish().await;
}

#[tokio::test]
async fn unknown_user_and_wrong_password_get_the_same_answer_after_similar_work() {
    let gw = gateway().await;
    let attempt = |user: &'static str| {
        let gw = &gw;
        async move {
            let started = Instant::now();
            let a = gw
                .api(
                    Method::POST,
                    "/api/auth/login",
                    None,
                    Some(json!({"username": user, "password": "not the password"})),
                )
                .await;
            (started.elapsed(), a)
        }
    };
    let mut unknown = Vec::new();
    let mut wrong = Vec::new();
    for _ in 0..5 {
        let (t, a) = attempt("nobody-here").await;
        let body = refused(&a, StatusCode::UNAUTHORIZED, "INVALID_CREDENTIALS");
        unknown.push(t);
        let (t, b) = attempt("player-1").await;
        let other = refused(&b, StatusCode::UNAUTHORIZED, "INVALID_CREDENTIALS");
        assert_eq!(body, other, "the same body, word for word");
        wrong.push(t);
    }
    // Both verify an Argon2id hash: the fastest unknown-user attempt takes at least half the
    // fastest wrong-password one (minimums: other tests' load only ever adds time; without
    // the decoy an unknown user would be answered in about a millisecond).
    let (u, w) = (*unknown.iter().min().unwrap(), *wrong.iter().min().unwrap());
    assert!(u * 2 >= w, "unknown user {u:?} vs wrong password {w:?}");
    gw.finish().await;
}

#[tokio::test]
async fn totp_is_required_where_enabled_and_a_code_is_accepted_once() {
    let gw = gateway().await;
    // The demo admin has 2FA on: no code, a wrong code, then a good code once.
    let login = |body: Value| gw.api(Method::POST, "/api/auth/login", None, Some(body));
    let without = json!({"username": "admin", "password": ADMIN_PASSWORD});
    refused(
        &login(without).await,
        StatusCode::UNAUTHORIZED,
        "TOTP_REQUIRED",
    );
    let wrong = json!({"username": "admin", "password": ADMIN_PASSWORD, "totp_code": "000000"});
    let a = login(wrong).await;
    if a.status == StatusCode::OK {
        panic!("000000 happened to be the code; run again");
    }
    refused(&a, StatusCode::UNAUTHORIZED, "TOTP_INVALID");
    let code = totp_code(ADMIN_TOTP, 0);
    let good = json!({"username": "admin", "password": ADMIN_PASSWORD, "totp_code": code});
    let tokens = data(&login(good.clone()).await, StatusCode::OK);
    assert_eq!(tokens["second_factor"], true);
    // The same code again (same step): refused, even with the right password.
    refused(&login(good).await, StatusCode::UNAUTHORIZED, "TOTP_INVALID");
    // An earlier step than the last accepted one is refused too.
    let older = json!({"username": "admin", "password": ADMIN_PASSWORD, "totp_code": totp_code(ADMIN_TOTP, -1)});
    refused(
        &login(older).await,
        StatusCode::UNAUTHORIZED,
        "TOTP_INVALID",
    );
    // Staff cannot turn 2FA off.
    let admin = tokens["access_token"].as_str().unwrap();
    let off = json!({"password": ADMIN_PASSWORD, "code": totp_code(ADMIN_TOTP, 1)});
    refused(
        &gw.api(
            Method::POST,
            "/api/auth/2fa/disable",
            Some(admin),
            Some(off),
        )
        .await,
        StatusCode::FORBIDDEN,
        "SECOND_FACTOR_MANDATORY",
    );

    // A player turns 2FA on: set-up, a wrong code, the right code (previous step), then
    // logins need a code (this step), and turning it off needs password and a later code.
    let player = gw.player_token("player-2").await;
    let setup = totp_setup(&gw, &player).await;
    let secret = setup["secret"].as_str().unwrap().to_string();
    assert!(setup["otpauth_uri"]
        .as_str()
        .unwrap()
        .starts_with("otpauth://totp/"));
    let enable = |code: String| totp_enable(&gw, &player, code);
    // Issue 33 (12): enabling asks for the password too (a stolen token alone cannot bind an
    // authenticator to the account).
    let no_password = gw
        .api(
            Method::POST,
            "/api/auth/2fa/enable",
            Some(&player),
            Some(json!({"password": "not my password!", "code": totp_code(&secret, 0)})),
        )
        .await;
    refused(
        &no_password,
        StatusCode::UNAUTHORIZED,
        "INVALID_CREDENTIALS",
    );
    let bad = if totp_code(&secret, -1) == "123456" {
        "654321"
    } else {
        "123456"
    };
    refused(
        &enable(bad.into()).await,
        StatusCode::UNAUTHORIZED,
        "TOTP_INVALID",
    );
    assert_eq!(
        data(&enable(totp_code(&secret, -1)).await, StatusCode::OK)["totp_enabled"],
        true
    );
    refused(
        &enable(totp_code(&secret, 0)).await,
        StatusCode::CONFLICT,
        "TOTP_ALREADY_ENABLED",
    );
    let plain = json!({"username": "player-2", "password": PLAYER_PASSWORD});
    refused(
        &login(plain).await,
        StatusCode::UNAUTHORIZED,
        "TOTP_REQUIRED",
    );
    let with_code = gw
        .login_with("player-2", PLAYER_PASSWORD, Some(totp_code(&secret, 0)))
        .await;
    assert_eq!(with_code["second_factor"], true);
    let disable = |body: Value| {
        gw.api(
            Method::POST,
            "/api/auth/2fa/disable",
            Some(&player),
            Some(body),
        )
    };
    let wrong_password = json!({"password": "not my password!", "code": totp_code(&secret, 1)});
    refused(
        &disable(wrong_password).await,
        StatusCode::UNAUTHORIZED,
        "INVALID_CREDENTIALS",
    );
    let reused = json!({"password": PLAYER_PASSWORD, "code": totp_code(&secret, 0)});
    refused(
        &disable(reused).await,
        StatusCode::UNAUTHORIZED,
        "TOTP_INVALID",
    );
    let off = json!({"password": PLAYER_PASSWORD, "code": totp_code(&secret, 1)});
    assert_eq!(
        data(&disable(off).await, StatusCode::OK)["totp_enabled"],
        false
    );
    gw.player_token("player-2").await;
    gw.finish().await;
}

#[tokio::test]
async fn staff_need_a_second_factor_login_for_the_back_office() {
    let gw = gateway().await;
    let hash = rest::auth::password::hash_now("support-password-long");
    gw.sql(&format!(
        "INSERT INTO accounts (username, password_hash, role) VALUES ('helpdesk', '{hash}', 'support')"
    ))
    .await;
    let token = gw
        .login_with("helpdesk", "support-password-long", None)
        .await;
    assert_eq!(token["second_factor"], false);
    let token = token["access_token"].as_str().unwrap();
    let a = gw.api(Method::GET, "/api/admin/players", Some(token), None);
    refused(&a.await, StatusCode::FORBIDDEN, "SECOND_FACTOR_REQUIRED");
    gw.finish().await;
}

/// Starts 2FA set-up for the holder of `token`: the secret and its `otpauth://` URI.
async fn totp_setup(gw: &TestGateway, token: &str) -> Value {
    let a = gw.api(Method::POST, "/api/auth/2fa/setup", Some(token), None);
    data(&a.await, StatusCode::OK)
}

/// Turns 2FA on for the player holding `token` with `code` (and the player's password).
async fn totp_enable(gw: &TestGateway, token: &str, code: String) -> Answer {
    let body = json!({"password": PLAYER_PASSWORD, "code": code});
    gw.api(
        Method::POST,
        "/api/auth/2fa/enable",
        Some(token),
        Some(body),
    )
    .await
}

/// A REST gateway with these `[rest.rate_limits]` lines.
async fn with_limits(limits: &str) -> TestGateway {
    start_gateway(&format!("{REST_ON}\n[rest.rate_limits]\n{limits}")).await
}

#[tokio::test]
async fn brute_force_is_slowed_with_429_and_retry_after() {
    let gw = gateway().await;
    // Logged in before the address runs out of login attempts below.
    let player = gw.player_token("player-4").await;
    // Per account: 10 attempts a minute, then 429 (even with the right password).
    for _ in 0..10 {
        let a = gw
            .api(
                Method::POST,
                "/api/auth/login",
                None,
                Some(json!({"username": "player-3", "password": "guess guess guess"})),
            )
            .await;
        refused(&a, StatusCode::UNAUTHORIZED, "INVALID_CREDENTIALS");
    }
    let right = json!({"username": "player-3", "password": PLAYER_PASSWORD});
    let a = gw
        .api(Method::POST, "/api/auth/login", None, Some(right))
        .await;
    refused(&a, StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED");
    let wait: u64 = a.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "Retry-After {wait}");
    // Per address: 30 a minute across accounts; the 12 above count too.
    let mut limited = 0;
    for i in 0..25 {
        let a = gw
            .api(
                Method::POST,
                "/api/auth/login",
                None,
                Some(json!({"username": format!("nobody-{i}"), "password": "guess guess guess"})),
            )
            .await;
        if a.status == StatusCode::TOO_MANY_REQUESTS {
            limited += 1;
        }
    }
    assert!(limited >= 5, "the address limit held back {limited} of 25");
    // Registration per address: 10 a minute.
    let mut statuses = Vec::new();
    for i in 0..11 {
        let body = json!({"username": format!("new-{i}"), "email": format!("new{i}@example.com"), "password": "correct horse battery"});
        statuses.push(
            gw.api(Method::POST, "/api/auth/register", None, Some(body))
                .await
                .status,
        );
    }
    assert_eq!(statuses[..10], [StatusCode::CREATED; 10]);
    assert_eq!(statuses[10], StatusCode::TOO_MANY_REQUESTS);
    // 2FA attempts per account.
    let mut last = StatusCode::OK;
    for _ in 0..11 {
        last = gw
            .api(
                Method::POST,
                "/api/auth/2fa/enable",
                Some(&player),
                Some(json!({"password": PLAYER_PASSWORD, "code": "000000"})),
            )
            .await
            .status;
    }
    assert_eq!(last, StatusCode::TOO_MANY_REQUESTS);
    gw.finish().await;
}

/// Issue 33 (12): the rate limits alone let a patient guesser try codes for weeks; ten wrong
/// codes in a row lock the second factor, the right code included, and the count survives the
/// refused request's rolled-back transaction.
#[tokio::test]
async fn ten_wrong_codes_in_a_row_lock_the_second_factor() {
    let gw = with_limits("second_factor_per_account = 100\nsecond_factor_per_ip = 100\n").await;
    let player = gw.player_token("player-3").await;
    let setup = totp_setup(&gw, &player).await;
    let secret = setup["secret"].as_str().unwrap().to_string();
    let enable = |code: String| totp_enable(&gw, &player, code);
    let wrong = (0..100_000)
        .map(|n| format!("{n:06}"))
        .find(|c| (-1..=1).all(|step| totp_code(&secret, step) != *c))
        .unwrap();
    for _ in 0..rest::auth::TOTP_FAILURES_MAX {
        refused(
            &enable(wrong.clone()).await,
            StatusCode::UNAUTHORIZED,
            "TOTP_INVALID",
        );
    }
    refused(
        &enable(totp_code(&secret, 0)).await,
        StatusCode::FORBIDDEN,
        "TOTP_LOCKED",
    );
    gw.finish().await;
}

/// Creates a staff account with 2FA on and answers a second-factor access token for it.
pub async fn staff_token(gw: &TestGateway, username: &str, role: &str) -> String {
    staff_token_at(gw, username, role, 0).await
}

/// As [`staff_token`], logging in with the code of `offset_steps` (an earlier step leaves the
/// later ones of the window for step-up codes).
pub async fn staff_token_at(
    gw: &TestGateway,
    username: &str,
    role: &str,
    offset_steps: i64,
) -> String {
    let hash = rest::auth::password::hash_now("staff-password-long");
    gw.sql(&format!(
        "INSERT INTO accounts (username, password_hash, role, totp_secret, totp_enabled)
         VALUES ('{username}', '{hash}', '{role}', '{ADMIN_TOTP}', true)"
    ))
    .await;
    let code = totp_code(ADMIN_TOTP, offset_steps);
    let data = gw
        .login_with(username, "staff-password-long", Some(code))
        .await;
    data["access_token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn every_admin_route_is_checked_against_the_role_table() {
    let gw = gateway().await;
    let admin = gw.admin_token(0).await;
    let manager = staff_token(&gw, "manager-1", "manager").await;
    let support = staff_token(&gw, "support-1", "support").await;
    let player = gw.player_token("player-1").await;
    let tokens = [
        ("admin", &admin),
        ("manager", &manager),
        ("support", &support),
        ("player", &player),
    ];
    // Ledger transaction 1, for the routes about one transaction.
    crate::money_path::accepted(
        &gw,
        "bet",
        crate::money_path::bet("player-1", "t1", "1.00", "r1"),
    )
    .await;
    let staff_routes: Vec<_> = rest::routes::ROUTES
        .iter()
        .filter_map(|r| match r.access {
            rest::routes::Access::Staff(roles) => Some((r.method.clone(), r.path, roles)),
            rest::routes::Access::Handler => None,
        })
        .collect();
    assert!(staff_routes.len() > 10);
    for (method, template, allowed) in staff_routes {
        let path = template.replace("{id}", "1").replace("{report}", "ggr");
        let anonymous = gw.api(method.clone(), &path, None, None).await;
        refused(&anonymous, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
        for (role, token) in &tokens {
            let body = (method != Method::GET).then(|| json!({}));
            let a = gw.api(method.clone(), &path, Some(token), body).await;
            let may = allowed.iter().any(|r| r.as_str() == *role);
            if may {
                // Past the role check: a success, or the handler's own answer to an empty body.
                assert!(
                    a.status.is_success() || a.status == StatusCode::BAD_REQUEST,
                    "{role} on {method} {template}: {:?}",
                    a.json()
                );
            } else {
                refused(&a, StatusCode::FORBIDDEN, "FORBIDDEN");
            }
        }
    }
    // An admin route nobody listed is refused to everyone (none exists: 404 for all).
    let a = gw
        .api(Method::GET, "/api/admin/nothing-here", Some(&admin), None)
        .await;
    refused(&a, StatusCode::NOT_FOUND, "NOT_FOUND");
    gw.finish().await;
}

#[tokio::test]
async fn openapi_document_is_served() {
    let gw = gateway().await;
    let a = gw.get("/openapi.json").await;
    assert_eq!(a.status, StatusCode::OK);
    let doc = a.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert!(doc["paths"]["/api/auth/login"]["post"].is_object());
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    // Unknown routes and methods get the envelope too.
    refused(
        &gw.get("/api/nothing").await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
    refused(
        &gw.api(Method::DELETE, "/api/auth/login", None, None).await,
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
    );
    // REST requests are counted by route template and status.
    let metrics = String::from_utf8(gw.get("/metrics").await.body.to_vec()).unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("wallet_rest_requests_total{")
                && l.contains(r#"route="/openapi.json""#)
                && l.contains(r#"status="200""#)),
        "no REST request counter in /metrics"
    );
    gw.finish().await;
}

#[tokio::test]
async fn an_oversized_body_is_refused() {
    let gw = gateway().await;
    let big = json!({"username": "x".repeat(70_000), "email": "a@b.co", "password": "correct horse battery"});
    let a = gw
        .api(Method::POST, "/api/auth/register", None, Some(big))
        .await;
    refused(&a, StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE");
    gw.finish().await;
}

#[tokio::test]
async fn second_factor_attempts_are_limited_per_address_too() {
    let gw = with_limits("second_factor_per_ip = 3\n").await;
    let mut statuses = Vec::new();
    for player in ["player-5", "player-6"] {
        let token = gw.player_token(player).await;
        for _ in 0..2 {
            let a = gw
                .api(Method::POST, "/api/auth/2fa/setup", Some(&token), None)
                .await;
            statuses.push(a.status);
        }
    }
    // Two accounts, each far under its own limit: the address's third attempt is its last.
    assert_eq!(
        statuses,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    gw.finish().await;
}

#[tokio::test]
async fn every_route_that_needs_a_login_refuses_anonymous_and_garbage_tokens() {
    let gw = gateway().await;
    let doc = gw.get("/openapi.json").await.json();
    let mut checked = 0;
    for (template, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            if operation["security"].is_null() {
                continue;
            }
            let path = template
                .replace("{id}", "1")
                .replace("{game_id}", "slot-1")
                .replace("{report}", "ggr")
                .replace("{psp}", "psp");
            let method: Method = method.to_uppercase().parse().unwrap();
            let body = (method != Method::GET).then(|| json!({}));
            let anonymous = gw.api(method.clone(), &path, None, body.clone()).await;
            refused(&anonymous, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
            let garbage = gw
                .api(method.clone(), &path, Some("not.a.token"), body)
                .await;
            refused(&garbage, StatusCode::UNAUTHORIZED, "TOKEN_INVALID");
            checked += 1;
        }
    }
    assert!(checked >= 14, "only {checked} protected routes described");
    // 2FA set-up while it is on already is refused, and changes nothing.
    let admin = gw.admin_token(0).await;
    let again = gw
        .api(Method::POST, "/api/auth/2fa/setup", Some(&admin), None)
        .await;
    refused(&again, StatusCode::CONFLICT, "TOTP_ALREADY_ENABLED");
    gw.admin_token(1).await;
    gw.finish().await;
}

/// Issue 33 (11): a login held a pooled connection while it waited for a hashing slot, so a
/// flood of logins (from rotating addresses; here the limits are lifted) took every connection
/// and starved the other routes, `/health` included. The flood now waits without one.
#[tokio::test]
async fn a_login_flood_leaves_health_and_balances_fast() {
    let gw = with_limits("login_per_ip = 100000\nlogin_per_account = 100000\n").await;
    let player = gw.player_token("player-1").await;
    let flood = futures_util::future::join_all((0..300).map(|i| {
        let body =
            json!({"username": format!("player-{}", 1 + i % 5), "password": "not the password"});
        gw.api(Method::POST, "/api/auth/login", None, Some(body))
    }));
    let probes = async {
        // Let the flood fill the hashing queue first.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let mut slowest = std::time::Duration::ZERO;
        for _ in 0..10 {
            let started = Instant::now();
            assert_eq!(gw.get("/health").await.status, StatusCode::OK);
            let balance = gw
                .api(Method::GET, "/api/user/balance", Some(&player), None)
                .await;
            assert_eq!(balance.status, StatusCode::OK);
            slowest = slowest.max(started.elapsed());
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        slowest
    };
    let (answers, slowest) = tokio::join!(flood, probes);
    // Refused (or, on a machine busy with other tests, timed out waiting for a hash), never let in.
    assert!(answers.iter().all(|a| a.status != StatusCode::OK));
    assert!(
        slowest < std::time::Duration::from_secs(1),
        "/health and a balance took {slowest:?} during the flood"
    );
    gw.finish().await;
}
