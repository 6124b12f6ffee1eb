//! The REST module for players and admins, mounted by the gateway under `/api/` (and
//! `/openapi.json`): accounts and login (Argon2id, JWT access tokens, rotating refresh tokens,
//! TOTP), roles, the player's own wallet, history, limits and game launch, and the back office.
//! It shares the database with the callback path and never writes a wallet or the ledger but
//! through `settlement`.

pub mod audit;
pub mod auth;
pub mod console;
pub mod demo;
pub mod desk;
pub mod envelope;
mod handlers;
pub mod openapi;
pub mod reports;
pub mod routes;
pub mod segments;
mod state;

pub use state::{ClientIp, Options, PaymentProvider, ProviderInfo, Rest, VerifySignature};

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use bytes::Bytes;
use deadpool_postgres::Pool;
use http_body_util::BodyExt;
use tower::ServiceExt;

use crate::auth::password::Hasher;
use crate::auth::token::Keys;
use crate::auth::Limiters;
use crate::envelope::{ApiError, Code};

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
        let router = routes::router(rest.clone());
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
                    Code::RequestTimeout,
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
