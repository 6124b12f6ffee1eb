//! The wallet gateway: provider callbacks over hyper, verified, decoded by dialect and settled
//! by the `settlement` crate; plus health and readiness endpoints.
//!
//! Modules depend one way: `app` (start-up) → `server` (accept, routes) → `provider`
//! (callback pipeline, dialects) → `http`, `state` → `registry`, `config`, `dedup`, `metrics`,
//! `signature`.

pub mod app;
pub use gateway_config as config;
pub mod dedup;
pub mod http;
pub mod metrics;
pub mod provider;
pub mod registry;
pub mod server;
pub use dialects::signature;
pub mod state;
pub mod trace;

#[cfg(any(test, feature = "test-util"))]
pub mod test_util;
