//! `/api/admin/providers`: game providers managed through the back office — created with a
//! dialect, secret, currency, allowlist and policy; changed, enabled or disabled; their secret
//! rotated with the old one accepted until a deadline. Whoever holds a provider's secret can
//! sign wins, so creating one, rotating its secret and changing its policy wait for a second
//! admin (`provider_changes`); new providers start with the strict policy. The gateway takes
//! changes up at once (and every few seconds from other gateways). Secrets are never
//! answered. Providers of the configuration file are listed but managed in the file.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use settlement::{ManagedProvider, Policy};
use utoipa::ToSchema;

use tokio_postgres::GenericClient;

use crate::audit::{self, Actor};
use crate::envelope::{ok, ApiError, ApiResult, Body, Code, Ok};
use crate::handlers::provider_changes::{self as changes, Change, ProviderChange};
use crate::Rest;

/// The shortest provider secret accepted (as for configured providers).
const SECRET_BYTES_MIN: usize = 16;
/// The longest a rotated-out secret may stay valid.
const PREVIOUS_VALID_MAX_S: u64 = 30 * 24 * 60 * 60;

#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderView {
    pub code: String,
    pub dialect: String,
    pub enabled: bool,
    /// Managed here (`true`) or in the configuration file.
    pub managed: bool,
    /// The managed settings, secrets left out (null for a provider of the file).
    pub settings: Option<PublicSettings>,
}

/// A managed provider's settings as they are shown: its secrets left out.
#[derive(Debug, Serialize, ToSchema)]
pub struct PublicSettings {
    pub currency: String,
    #[schema(value_type = Vec<String>)]
    pub allow_ips: Vec<IpAddr>,
    #[schema(value_type = Object)]
    pub policy: Policy,
    pub signature_window_s: u64,
    /// A rotated-out secret is still accepted, until `previous_until` (Unix seconds).
    pub previous_secret_set: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_until: Option<i64>,
}

impl PublicSettings {
    fn of(m: &ManagedProvider) -> PublicSettings {
        PublicSettings {
            currency: m.currency.clone(),
            allow_ips: m.allow_ips.clone(),
            policy: m.policy,
            signature_window_s: m.signature_window_s,
            previous_secret_set: m.previous_secret.is_some(),
            previous_until: m.previous_until,
        }
    }
}

/// The stored settings of a row of [`SELECT`], if it is a managed provider.
fn stored(row: &tokio_postgres::Row) -> Option<ManagedProvider> {
    let managed: Option<String> = row.get(3);
    managed.and_then(|m| serde_json::from_str(&m).ok())
}

fn view(row: &tokio_postgres::Row) -> ProviderView {
    let managed = stored(row);
    ProviderView {
        code: row.get(0),
        dialect: row.get(1),
        enabled: row.get(2),
        managed: managed.is_some(),
        settings: managed.as_ref().map(PublicSettings::of),
    }
}

const SELECT: &str = "SELECT code, dialect, enabled, managed::text FROM providers";

#[utoipa::path(get, path = "/api/admin/providers", tag = "admin", security(("bearer" = [])),
    responses((status = 200, description = "every provider, secrets left out", body = Vec<ProviderView>)))]
pub async fn list(State(rest): State<Arc<Rest>>) -> ApiResult<Ok<Vec<ProviderView>>> {
    let client = rest.pool.get().await?;
    let rows = client
        .query(&format!("{SELECT} ORDER BY code"), &[])
        .await?;
    ok(rows.iter().map(view).collect())
}

/// A policy object, checked: only the policy's own keys.
fn policy(value: Option<Value>) -> ApiResult<Option<Policy>> {
    let Some(value) = value else {
        return Result::Ok(None);
    };
    let parsed: Policy = serde_json::from_value(value.clone())
        .map_err(|e| ApiError::field("policy", e.to_string()))?;
    let known = serde_json::to_value(parsed).unwrap_or(Value::Null);
    if let (Value::Object(given), Value::Object(known)) = (&value, &known) {
        if let Some(key) = given.keys().find(|k| !known.contains_key(*k)) {
            return Err(ApiError::field("policy", format!("unknown key `{key}`")));
        }
    }
    Result::Ok(Some(parsed))
}

fn check_secret(secret: &str) -> ApiResult<()> {
    if secret.len() < SECRET_BYTES_MIN {
        return Err(ApiError::field(
            "secret",
            format!("at least {SECRET_BYTES_MIN} bytes"),
        ));
    }
    Result::Ok(())
}

fn check_window(rest: &Rest, window: u64) -> ApiResult<()> {
    if !(1..=rest.options.signature_window_s_max).contains(&window) {
        let max = rest.options.signature_window_s_max;
        return Err(ApiError::field("signature_window_s", format!("1..={max}")));
    }
    Result::Ok(())
}

/// A provider of a dialect whose signature binds neither a call's time nor its method needs
/// an allowlist outside demo mode (a captured call could be replayed).
fn check_allowlist(rest: &Rest, dialect: &str, ips: &[IpAddr]) -> ApiResult<()> {
    if ips.is_empty() && rest.options.allowlist_required.iter().any(|d| d == dialect) {
        return Err(ApiError::field(
            "allow_ips",
            format!(
                "required for the {dialect} dialect outside demo mode: its signature binds \
                 neither the time nor the method of a call"
            ),
        ));
    }
    Result::Ok(())
}

fn check_currency(currency: &str) -> ApiResult<()> {
    settlement::money::Currency::from_code(currency)
        .map(drop)
        .ok_or_else(|| ApiError::field("currency", "a known currency"))
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProvider {
    /// Path segment of its callbacks: `[a-z0-9][a-z0-9_-]{0,31}`.
    pub code: String,
    /// native, pragmatic, evolution or softswiss (shared-secret dialects).
    pub dialect: String,
    /// At least 16 bytes; never answered again.
    pub secret: String,
    /// Wallet currency of calls that name none (default EUR).
    pub currency: Option<String>,
    /// Addresses allowed to call (empty: any; required outside demo mode for dialects whose
    /// signature binds neither the time nor the method of a call).
    #[schema(value_type = Option<Vec<String>>)]
    pub allow_ips: Option<Vec<IpAddr>>,
    /// The provider's money rules (keys of `[providers.policy]`), over the strict policy a
    /// new provider starts with (no win without its bet).
    #[schema(value_type = Object)]
    pub policy: Option<Value>,
    /// Signed timestamps further than this from now are refused (default 300, at most 3600).
    pub signature_window_s: Option<u64>,
}

fn valid_code(code: &str) -> bool {
    let b = code.as_bytes();
    (1..=32).contains(&b.len())
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'-')
}

/// A provider's answer: in force at once, or waiting for a second admin.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum ProviderAnswer {
    Applied(ProviderView),
    Pending(ProviderChange),
}

/// Checks a creation request; the settings it would store.
fn planned_settings(rest: &Rest, req: &CreateProvider) -> ApiResult<ManagedProvider> {
    if !valid_code(&req.code) {
        return Err(ApiError::field("code", "[a-z0-9][a-z0-9_-]{0,31}"));
    }
    if !rest.options.managed_dialects.contains(&req.dialect) {
        return Err(ApiError::field(
            "dialect",
            format!("one of {}", rest.options.managed_dialects.join(", ")),
        ));
    }
    check_secret(&req.secret)?;
    let currency = req.currency.clone().unwrap_or_else(|| "EUR".into());
    check_currency(&currency)?;
    let window = req
        .signature_window_s
        .unwrap_or(ManagedProvider::WINDOW_S_DEFAULT);
    check_window(rest, window)?;
    let allow_ips = req.allow_ips.clone().unwrap_or_default();
    check_allowlist(rest, &req.dialect, &allow_ips)?;
    let mut strict = serde_json::to_value(Policy::strict()).unwrap_or(Value::Null);
    if let (Value::Object(strict), Some(Value::Object(given))) = (&mut strict, &req.policy) {
        strict.extend(given.clone());
    }
    let policy = policy(Some(strict))?.unwrap_or_else(Policy::strict);
    Result::Ok(ManagedProvider {
        secret: req.secret.clone(),
        previous_secret: None,
        previous_until: None,
        allow_ips,
        currency,
        policy,
        signature_window_s: window,
    })
}

#[utoipa::path(post, path = "/api/admin/providers", tag = "admin", security(("bearer" = [])),
    request_body = CreateProvider,
    responses((status = 202, description = "checked, and waiting for a second admin (POST /api/admin/provider-changes/{id}/approve)", body = ProviderChange),
              (status = 400, description = "invalid fields", body = crate::envelope::ErrorBody),
              (status = 409, description = "CODE_TAKEN", body = crate::envelope::ErrorBody)))]
pub async fn create(
    State(rest): State<Arc<Rest>>,
    actor: Actor,
    Body(req): Body<CreateProvider>,
) -> ApiResult<Ok<ProviderAnswer>> {
    planned_settings(&rest, &req)?;
    let mut client = rest.pool.get().await?;
    let tx = client.transaction().await?;
    let taken = tx
        .query_opt("SELECT 1 FROM providers WHERE code = $1", &[&req.code])
        .await?
        .is_some();
    if taken {
        return Err(ApiError::conflict(
            Code::CodeTaken,
            "a provider with this code exists",
        ));
    }
    let change = changes::request(
        &*tx,
        &actor,
        &req.code,
        Change::Create(req.clone()),
        "created",
    )
    .await?;
    tx.commit().await?;
    Result::Ok(Ok(StatusCode::ACCEPTED, ProviderAnswer::Pending(change)))
}

/// Creates the provider `req` asks for (checked again: a second admin approved it now).
pub(crate) async fn apply_create(
    rest: &Rest,
    tx: &impl GenericClient,
    actor: &Actor,
    req: &CreateProvider,
) -> ApiResult<ProviderView> {
    let managed = planned_settings(rest, req)?;
    let row = tx
        .query_opt(
            "INSERT INTO providers (code, dialect, enabled, managed)
             VALUES ($1, $2, true, $3::text::jsonb)
             ON CONFLICT (code) DO NOTHING
             RETURNING code, dialect, enabled, managed::text",
            &[&req.code, &req.dialect, &json_text(&managed)],
        )
        .await?
        .ok_or_else(|| ApiError::conflict(Code::CodeTaken, "a provider with this code exists"))?;
    let created = view(&row);
    audit::record(
        tx,
        actor,
        audit::Entry {
            action: "provider.create",
            target_kind: "provider",
            target_id: req.code.clone(),
            before: Value::Null,
            after: json!({"dialect": req.dialect, "settings": created.settings}),
            reason: "created",
        },
    )
    .await?;
    Result::Ok(created)
}

/// Locks managed provider `code`: its row as a view and its stored settings.
async fn managed_locked(
    tx: &impl GenericClient,
    code: &str,
) -> ApiResult<(ProviderView, ManagedProvider)> {
    let row = tx
        .query_opt(&format!("{SELECT} WHERE code = $1 FOR UPDATE"), &[&code])
        .await?
        .ok_or_else(|| ApiError::not_found("no such provider"))?;
    let Some(settings) = stored(&row) else {
        return Err(ApiError::conflict(
            Code::ConfiguredInFile,
            "this provider is managed in the configuration file",
        ));
    };
    Result::Ok((view(&row), settings))
}

/// A managed provider's state after a change.
struct Next {
    enabled: bool,
    settings: ManagedProvider,
}

/// Settings as the `managed` column stores them.
fn json_text(settings: &ManagedProvider) -> String {
    serde_json::to_string(settings).unwrap_or_default()
}

/// Stores `next` for the provider of `before` and audits the change (the caller commits and
/// tells the gateway).
async fn store(
    tx: &impl GenericClient,
    actor: &Actor,
    action: &str,
    before: ProviderView,
    next: Next,
    reason: &str,
) -> ApiResult<ProviderView> {
    let row = tx
        .query_one(
            "UPDATE providers SET enabled = $2, managed = $3::text::jsonb, updated_at = now()
             WHERE code = $1 RETURNING code, dialect, enabled, managed::text",
            &[&before.code, &next.enabled, &json_text(&next.settings)],
        )
        .await?;
    let after = view(&row);
    audit::record(
        tx,
        actor,
        audit::Entry {
            action,
            target_kind: "provider",
            target_id: before.code.clone(),
            before: json!({"enabled": before.enabled, "settings": before.settings}),
            after: json!({"enabled": after.enabled, "settings": after.settings}),
            reason,
        },
    )
    .await?;
    Result::Ok(after)
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProvider {
    /// A disabled provider takes no new bets; what it began still settles.
    pub enabled: Option<bool>,
    /// Changes only while none of the provider's rounds is open (`ROUNDS_OPEN`).
    pub currency: Option<String>,
    /// Replaces the list (empty: any address, where the dialect allows it).
    #[schema(value_type = Option<Vec<String>>)]
    pub allow_ips: Option<Vec<IpAddr>>,
    /// A new policy waits for a second admin (the rest of the change with it).
    #[schema(value_type = Object)]
    pub policy: Option<Value>,
    /// 1 to the configuration's `signature_window_s_max` seconds.
    pub signature_window_s: Option<u64>,
    /// Why (kept in the audit log).
    pub reason: String,
}

#[utoipa::path(put, path = "/api/admin/providers/{code}", tag = "admin", security(("bearer" = [])),
    params(("code" = String, Path, description = "provider code")), request_body = UpdateProvider,
    responses((status = 200, description = "changed and in force", body = ProviderView),
              (status = 202, description = "a policy change: waiting for a second admin", body = ProviderChange),
              (status = 404, description = "no such provider", body = crate::envelope::ErrorBody),
              (status = 409, description = "CONFIGURED_IN_FILE, or ROUNDS_OPEN for a currency change while rounds are open", body = crate::envelope::ErrorBody)))]
pub async fn update(
    State(rest): State<Arc<Rest>>,
    actor: Actor,
    Path(code): Path<String>,
    Body(req): Body<UpdateProvider>,
) -> ApiResult<Ok<ProviderAnswer>> {
    let reason = crate::handlers::reason_of(&req.reason)?.to_string();
    let mut client = rest.pool.get().await?;
    let tx = client.transaction().await?;
    if req.policy.is_some() {
        // Checked now as it would be applied, so a refusal comes at once.
        let (before, settings) = managed_locked(&*tx, &code).await?;
        check_currency_change(&*tx, &code, &settings, &req).await?;
        updated(&rest, &before, settings, &req)?;
        let change = changes::request(&*tx, &actor, &code, Change::Update(req), &reason).await?;
        tx.commit().await?;
        return Result::Ok(Ok(StatusCode::ACCEPTED, ProviderAnswer::Pending(change)));
    }
    let after = apply_update(&rest, &*tx, &actor, &code, &req).await?;
    tx.commit().await?;
    rest.options.providers_changed.notify_one();
    Result::Ok(Ok(StatusCode::OK, ProviderAnswer::Applied(after)))
}

/// `before` with `req` applied, checked.
fn updated(
    rest: &Rest,
    before: &ProviderView,
    mut settings: ManagedProvider,
    req: &UpdateProvider,
) -> ApiResult<Next> {
    if let Some(c) = &req.currency {
        check_currency(c)?;
        settings.currency = c.clone();
    }
    if let Some(window) = req.signature_window_s {
        check_window(rest, window)?;
        settings.signature_window_s = window;
    }
    if let Some(ips) = &req.allow_ips {
        settings.allow_ips = ips.clone();
    }
    if let Some(p) = policy(req.policy.clone())? {
        settings.policy = p;
    }
    check_allowlist(rest, &before.dialect, &settings.allow_ips)?;
    Result::Ok(Next {
        enabled: req.enabled.unwrap_or(before.enabled),
        settings,
    })
}

/// A provider's wallet currency (of calls that name none) may change only while none of its
/// rounds is open: a win settling a bet taken in the old currency would be paid in the new.
async fn check_currency_change(
    tx: &impl GenericClient,
    code: &str,
    settings: &ManagedProvider,
    req: &UpdateProvider,
) -> ApiResult<()> {
    let Some(next) = &req.currency else {
        return Result::Ok(());
    };
    if settings.currency == *next {
        return Result::Ok(());
    }
    let open: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM rounds r JOIN providers p ON p.id = r.provider_id
                            WHERE p.code = $1 AND NOT r.closed)",
            &[&code],
        )
        .await?
        .get(0);
    if open {
        return Err(ApiError::conflict(
            Code::RoundsOpen,
            "the currency changes once none of this provider's rounds is open",
        ));
    }
    Result::Ok(())
}

/// Applies `req` to managed provider `code` (the caller commits and tells the gateway).
pub(crate) async fn apply_update(
    rest: &Rest,
    tx: &impl GenericClient,
    actor: &Actor,
    code: &str,
    req: &UpdateProvider,
) -> ApiResult<ProviderView> {
    let reason = crate::handlers::reason_of(&req.reason)?;
    let (before, settings) = managed_locked(tx, code).await?;
    check_currency_change(tx, code, &settings, req).await?;
    let next = updated(rest, &before, settings, req)?;
    store(tx, actor, "provider.update", before, next, reason).await
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSecret {
    /// The new secret (at least 16 bytes); never answered again.
    pub secret: String,
    /// How long the old secret is still accepted after the rotation is approved (0 to 30
    /// days).
    pub previous_valid_for_s: u64,
    pub reason: String,
}

fn check_rotation(req: &RotateSecret) -> ApiResult<&str> {
    let reason = crate::handlers::reason_of(&req.reason)?;
    check_secret(&req.secret)?;
    if req.previous_valid_for_s > PREVIOUS_VALID_MAX_S {
        return Err(ApiError::field("previous_valid_for_s", "at most 30 days"));
    }
    Result::Ok(reason)
}

#[utoipa::path(post, path = "/api/admin/providers/{code}/rotate-secret", tag = "admin", security(("bearer" = [])),
    params(("code" = String, Path, description = "provider code")), request_body = RotateSecret,
    responses((status = 202, description = "checked, and waiting for a second admin; once approved the new secret is in force, the old one until the deadline", body = ProviderChange),
              (status = 404, description = "no such provider", body = crate::envelope::ErrorBody),
              (status = 409, description = "CONFIGURED_IN_FILE", body = crate::envelope::ErrorBody)))]
pub async fn rotate(
    State(rest): State<Arc<Rest>>,
    actor: Actor,
    Path(code): Path<String>,
    Body(req): Body<RotateSecret>,
) -> ApiResult<Ok<ProviderAnswer>> {
    let reason = check_rotation(&req)?.to_string();
    let mut client = rest.pool.get().await?;
    let tx = client.transaction().await?;
    managed_locked(&*tx, &code).await?;
    let change = changes::request(&*tx, &actor, &code, Change::RotateSecret(req), &reason).await?;
    tx.commit().await?;
    Result::Ok(Ok(StatusCode::ACCEPTED, ProviderAnswer::Pending(change)))
}

/// Rotates managed provider `code`'s secret (the caller commits and tells the gateway).
pub(crate) async fn apply_rotate(
    tx: &impl GenericClient,
    actor: &Actor,
    code: &str,
    req: &RotateSecret,
) -> ApiResult<ProviderView> {
    let reason = check_rotation(req)?;
    let (before, mut settings) = managed_locked(tx, code).await?;
    let now: i64 = tx
        .query_one("SELECT extract(epoch FROM now())::bigint", &[])
        .await?
        .get(0);
    let old = std::mem::replace(&mut settings.secret, req.secret.clone());
    settings.previous_secret = Some(old);
    let valid_for = i64::try_from(req.previous_valid_for_s).unwrap_or(0);
    settings.previous_until = Some(now + valid_for);
    let next = Next {
        enabled: before.enabled,
        settings,
    };
    store(tx, actor, "provider.rotate_secret", before, next, reason).await
}
