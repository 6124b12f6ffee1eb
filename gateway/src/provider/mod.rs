//! Provider callbacks: `/api/provider-callback/{provider}/...` finds the provider by code and
//! runs the one callback pipeline (`callback`) with the provider's dialect.
//!
//! A dialect only translates: it checks credentials on the raw bytes, decodes the body into a
//! core command, and renders core outcomes (answers and refusals) in its own format, deciding
//! which are final and which ask for a retry. Money rules live in `settlement`; dedup,
//! settling, metrics and the retryable mapping live in `callback`, once for every dialect.

use std::sync::Arc;

use http::StatusCode;

use crate::http::{json, Body};
use crate::registry::Provider;
use crate::state::State;

pub mod callback;
pub mod replay;
pub mod signed;

pub use dialects::{
    evolution, hub88, native, pragmatic, softswiss, wire, Decoded, Dialect, Inbound, Outcome,
    Refusal,
};

/// Every provider callback path starts with this, followed by the provider code.
pub const CALLBACK_PREFIX: &str = "/api/provider-callback/";

/// Runs `$body` with `$d` bound to the dialect value of `$kind` (each dialect is its own type).
macro_rules! with_dialect {
    ($kind:expr, |$d:ident| $body:expr) => {
        match $kind {
            $crate::config::Dialect::Native => {
                let $d = $crate::provider::native::Native;
                $body
            }
            $crate::config::Dialect::Evolution => {
                let $d = $crate::provider::evolution::Evolution;
                $body
            }
            $crate::config::Dialect::Hub88 => {
                let $d = $crate::provider::hub88::Hub88;
                $body
            }
            $crate::config::Dialect::Softswiss => {
                let $d = $crate::provider::softswiss::SoftSwiss;
                $body
            }
            $crate::config::Dialect::Pragmatic => {
                let $d = $crate::provider::pragmatic::Pragmatic;
                $body
            }
        }
    };
}
pub(crate) use with_dialect;

/// Finds the provider named in the path and runs the callback pipeline with its dialect.
pub async fn handle(
    state: &Arc<State>,
    peer: std::net::SocketAddr,
    request: http::Request<hyper::body::Incoming>,
) -> http::Response<Body> {
    let Some((provider, path)) = provider_of(state, request.uri().path()) else {
        return unknown_provider();
    };
    let arrival = callback::Arrival::now(peer);
    with_dialect!(provider.dialect, |d| callback::handle(
        state, &provider, &d, &path, arrival, request
    )
    .await
    .kept(state))
}

/// The provider named by a callback path, and the rest of the path after its code.
fn provider_of(state: &State, path: &str) -> Option<(Arc<Provider>, String)> {
    let rest = path.strip_prefix(CALLBACK_PREFIX)?;
    let code = rest.split('/').next().unwrap_or_default();
    let provider = state.provider(code)?;
    let path = rest[code.len()..].trim_start_matches('/').to_string();
    Some((provider, path))
}

fn unknown_provider() -> http::Response<Body> {
    json(
        StatusCode::NOT_FOUND,
        &serde_json::json!({"status": "UNKNOWN_PROVIDER", "message": "no such provider"}),
    )
}
