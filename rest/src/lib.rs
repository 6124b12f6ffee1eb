//! The REST module for players and admins, mounted by the gateway under `/api/` (and
//! `/openapi.json`): accounts and login (Argon2id, JWT access tokens, rotating refresh tokens,
//! TOTP), roles, the player's own wallet, history, limits and game launch, and the back office.
//! It shares the database with the callback path and never writes a wallet or the ledger but
//! through `settlement`.

pub mod audit;
pub mod auth;
pub mod demo;
pub mod desk;
pub mod envelope;
mod handlers;
pub mod openapi;
pub mod reports;
pub mod segments;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::MethodRouter;
use axum::Router;
use bytes::Bytes;
use deadpool_postgres::Pool;
use http::Method;
use http_body_util::BodyExt;
use tower::ServiceExt;

use crate::auth::password::Hasher;
use crate::auth::token::Keys;
use crate::auth::{Limiters, RateLimits};
use crate::envelope::ApiError;

/// What the gateway configures the module with.
#[derive(Debug, Clone)]
pub struct Options {
    /// HS256 key of access tokens (≥ 32 bytes, checked by the configuration).
    pub jwt_key: Vec<u8>,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    /// Password hashes computed at once, at most.
    pub hash_slots: usize,
    pub rate_limits: RateLimits,
    /// How long a game launch's provider session lives.
    pub game_session_ttl: Duration,
    /// The currency of a registered player's first wallet.
    pub currency: String,
    /// Adjustments larger than this many whole units of the wallet's currency wait for a
    /// second admin's approval.
    pub adjustment_approval_above: u64,
    /// Per currency, a decimal in its units (checked by the configuration): overrides
    /// `adjustment_approval_above` for that currency.
    pub adjustment_approval_above_in: std::collections::BTreeMap<String, String>,
    pub providers: Vec<ProviderInfo>,
    /// Notified after a managed provider changed, so the gateway takes it up at once.
    pub providers_changed: Arc<tokio::sync::Notify>,
    /// Dialects a provider may be created with through the back office (shared-secret ones).
    pub managed_dialects: Vec<String>,
    /// Dialects whose providers may run only with an allowlist (`allow_ips`): their
    /// signatures bind neither a call's time nor its method. Empty in demo mode.
    pub allowlist_required: Vec<String>,
    /// The widest `signature_window_s` a provider may have.
    pub signature_window_s_max: u64,
    /// Payment providers whose signed webhooks credit deposits.
    pub payment_providers: Vec<PaymentProvider>,
    /// Checks an `X-Signature` header (native form) on a raw body with these secrets, at
    /// second `now` within a window of seconds: the gateway's own check, handed in.
    pub verify_signature: VerifySignature,
    /// How often the report rollups fold settled ledger rows, and how old a row must be to
    /// count as settled (see `reports`).
    pub report_fold_interval: Duration,
    pub report_settle_after: Duration,
    /// Largest request body accepted under `/api/`.
    pub body_bytes_max: usize,
    /// An `/api/` request's whole time, body included.
    pub request_timeout: Duration,
}

/// `(header, body, secrets, now_s, window_s) -> valid`.
pub type VerifySignature = fn(Option<&[u8]>, &[u8], &[Vec<u8>], i64, u64) -> bool;

/// A payment provider: its code (the webhook path) and webhook secrets (current, previous).
#[derive(Clone)]
pub struct PaymentProvider {
    pub code: String,
    pub secrets: Vec<Vec<u8>>,
    pub signature_window_s: u64,
}

impl std::fmt::Debug for PaymentProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaymentProvider")
            .field("code", &self.code)
            .finish_non_exhaustive()
    }
}

/// What game launch needs to know of a configured provider.
#[derive(Debug, Clone)]
pub struct ProviderInfo {
    pub code: String,
    pub enabled: bool,
    /// The provider's currency, used when a launch names none.
    pub currency: String,
    /// Template with `{token}`, `{game_id}`, `{currency}`, `{player}` placeholders.
    pub launch_url: Option<String>,
}

/// The module's shared handles.
#[derive(Debug)]
pub struct Rest {
    pub pool: Pool,
    pub keys: Keys,
    pub hasher: Hasher,
    pub limiters: Limiters,
    pub options: Options,
    /// The callback pipeline's trace and replay, once the gateway attached it.
    pub desk: std::sync::OnceLock<Arc<dyn desk::CallbackDesk>>,
}

/// The client's address (after the gateway's trusted-proxy rule), put in each request's
/// extensions by the gateway; rate limits are keyed by it.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

/// The mounted module: the router and what it was built with.
#[derive(Clone)]
pub struct Api {
    router: Router,
    rest: Arc<Rest>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").finish_non_exhaustive()
    }
}

/// `true` for the paths this module answers.
pub fn owns(path: &str) -> bool {
    path.starts_with("/api/") || path == "/api" || path == openapi::PATH
}

impl Api {
    pub fn new(pool: Pool, options: Options) -> Api {
        let rest = Arc::new(Rest {
            pool,
            keys: Keys::new(&options.jwt_key, options.access_ttl),
            hasher: Hasher::new(options.hash_slots),
            limiters: Limiters::new(options.rate_limits),
            options,
            desk: std::sync::OnceLock::new(),
        });
        let router = routes(rest.clone()).router;
        Api { router, rest }
    }

    pub fn rest(&self) -> &Arc<Rest> {
        &self.rest
    }

    /// Hands in the callback pipeline for trace and replay (once; later calls are ignored).
    pub fn attach_desk(&self, desk: Arc<dyn desk::CallbackDesk>) {
        let _ = self.rest.desk.set(desk);
    }

    /// Answers one request under `/api/`; the body is read within the request timeout.
    pub async fn serve<B>(&self, mut request: http::Request<B>, ip: IpAddr) -> http::Response<Bytes>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        request.extensions_mut().insert(ClientIp(ip));
        let timeout = self.rest.options.request_timeout;
        let answer = async {
            let response = self
                .router
                .clone()
                .oneshot(request.map(axum::body::Body::new))
                .await
                .unwrap_or_else(|never| match never {});
            let (parts, body) = response.into_parts();
            let bytes = body.collect().await.map(|c| c.to_bytes());
            (parts, bytes)
        };
        let (parts, bytes) = match tokio::time::timeout(timeout, answer).await {
            Ok((parts, Ok(bytes))) => (parts, bytes),
            Ok((_, Err(e))) => return plain(ApiError::internal("answer body", &e)),
            Err(_) => {
                return plain(ApiError::new(
                    http::StatusCode::REQUEST_TIMEOUT,
                    "REQUEST_TIMEOUT",
                    "the request took too long",
                ))
            }
        };
        http::Response::from_parts(parts, bytes)
    }

    /// Background upkeep: forgets idle rate-limit keys every minute, and keeps the report
    /// rollups current, until the process ends.
    pub fn spawn_upkeep(&self) -> tokio::task::JoinHandle<()> {
        let rest = self.rest.clone();
        reports::spawn_job(
            rest.pool.clone(),
            rest.options.report_fold_interval,
            rest.options.report_settle_after,
        );
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(60));
            loop {
                every.tick().await;
                rest.limiters.forget_idle();
            }
        })
    }
}

/// An error answered outside the router (timeout, unreadable answer).
fn plain(error: ApiError) -> http::Response<Bytes> {
    use axum::response::IntoResponse;
    let body = Bytes::from(serde_json::to_vec(&error.body()).unwrap_or_default());
    let (parts, _) = error.into_response().into_parts();
    http::Response::from_parts(parts, body)
}

/// The router, and every (method, path) it serves, recorded as they are added so a test can
/// hold the OpenAPI document to them.
pub struct Routes {
    pub router: Router,
    pub listed: Vec<(Method, &'static str)>,
}

struct Builder {
    public: Router<Arc<Rest>>,
    admin: Router<Arc<Rest>>,
    listed: Vec<(Method, &'static str)>,
}

impl Builder {
    fn add(
        mut self,
        method: Method,
        path: &'static str,
        handler: MethodRouter<Arc<Rest>>,
    ) -> Builder {
        self.listed.push((method, path));
        if path.starts_with("/api/admin/") {
            self.admin = self.admin.route(path, handler);
        } else {
            self.public = self.public.route(path, handler);
        }
        self
    }
}

/// Counts every routed request by method, route template and status, and times it
/// (`wallet_rest_requests_total`, `wallet_rest_request_duration_seconds`): labels come from
/// the route table, never from the request, so their number stays bounded.
async fn observe(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    let method = request.method().as_str().to_string();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_str().to_string();
    metrics::counter!("wallet_rest_requests_total", "method" => method, "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("wallet_rest_request_duration_seconds", "route" => route)
        .record(started.elapsed());
    response
}

/// Every route of the module.
pub fn routes(rest: Arc<Rest>) -> Routes {
    use axum::routing::{get, post, put};
    use handlers::{
        adjustments, admin, auth, games, payments, provider_changes, providers, trace, user,
    };
    let b = Builder {
        public: Router::new(),
        admin: Router::new(),
        listed: Vec::new(),
    };
    let b = b
        .add(Method::POST, "/api/auth/register", post(auth::register))
        .add(Method::POST, "/api/auth/login", post(auth::login))
        .add(Method::POST, "/api/auth/refresh", post(auth::refresh))
        .add(Method::POST, "/api/auth/logout", post(auth::logout))
        .add(Method::GET, "/api/auth/me", get(auth::me))
        .add(Method::POST, "/api/auth/2fa/setup", post(auth::totp_setup))
        .add(
            Method::POST,
            "/api/auth/2fa/enable",
            post(auth::totp_enable),
        )
        .add(
            Method::POST,
            "/api/auth/2fa/disable",
            post(auth::totp_disable),
        )
        .add(Method::GET, "/api/user/balance", get(user::balance))
        .add(
            Method::GET,
            "/api/user/transactions",
            get(user::transactions),
        )
        .add(Method::GET, "/api/user/rounds", get(user::rounds))
        .add(Method::GET, "/api/user/limits", get(user::limits))
        .add(Method::PUT, "/api/user/limits", put(user::set_limit))
        .add(
            Method::POST,
            "/api/user/self-exclusion",
            post(user::self_exclude),
        )
        .add(
            Method::POST,
            "/api/games/{game_id}/launch",
            post(games::launch),
        )
        .add(Method::GET, "/api/admin/players", get(admin::players))
        .add(Method::GET, "/api/admin/players/{id}", get(admin::player))
        .add(
            Method::PUT,
            "/api/admin/players/{id}/status",
            put(admin::set_status),
        )
        .add(
            Method::POST,
            "/api/admin/players/{id}/logout",
            post(admin::force_logout),
        )
        .add(Method::GET, "/api/admin/audit-log", get(admin::audit_log))
        .add(
            Method::POST,
            "/api/admin/players/{id}/adjustments",
            post(adjustments::create),
        )
        .add(
            Method::POST,
            "/api/admin/adjustments/{id}/approve",
            post(adjustments::approve),
        )
        .add(
            Method::GET,
            "/api/admin/reconciliation",
            get(admin::reconciliation),
        )
        .add(
            Method::POST,
            "/api/payments/webhook/{psp}",
            post(payments::webhook),
        )
        .add(
            Method::GET,
            "/api/admin/transactions",
            get(admin::transactions),
        )
        .add(
            Method::GET,
            "/api/admin/transactions/{id}/trace",
            get(trace::trace),
        )
        .add(
            Method::POST,
            "/api/admin/transactions/{id}/replay",
            post(trace::replay),
        )
        .add(
            Method::GET,
            "/api/admin/reports/{report}",
            get(admin::report),
        )
        .add(Method::GET, "/api/admin/providers", get(providers::list))
        .add(
            Method::POST,
            "/api/admin/providers",
            post(providers::create),
        )
        .add(
            Method::PUT,
            "/api/admin/providers/{code}",
            put(providers::update),
        )
        .add(
            Method::POST,
            "/api/admin/providers/{code}/rotate-secret",
            post(providers::rotate),
        )
        .add(
            Method::GET,
            "/api/admin/provider-changes",
            get(provider_changes::list),
        )
        .add(
            Method::POST,
            "/api/admin/provider-changes/{id}/approve",
            post(provider_changes::approve),
        )
        .add(
            Method::POST,
            "/api/user/withdrawals",
            post(payments::request),
        )
        .add(
            Method::POST,
            "/api/admin/withdrawals/{id}/approve",
            post(payments::approve),
        )
        .add(
            Method::POST,
            "/api/admin/withdrawals/{id}/reject",
            post(payments::reject),
        );
    let admin = b.admin.route_layer(axum::middleware::from_fn_with_state(
        rest.clone(),
        crate::auth::enforce_rbac,
    ));
    let body_max = rest.options.body_bytes_max;
    let router = b
        .public
        .merge(admin)
        .route(openapi::PATH, axum::routing::get(openapi::serve))
        .route_layer(axum::middleware::from_fn(observe))
        .fallback(handlers::not_found)
        .method_not_allowed_fallback(handlers::method_not_allowed)
        .layer(DefaultBodyLimit::max(body_max))
        .with_state(rest);
    Routes {
        router,
        listed: b.listed,
    }
}
