//! The wallet gateway: provider callbacks over hyper, verified, decoded by dialect and settled
//! by the `settlement` crate; plus health and readiness endpoints.

pub mod app;
pub mod config;
pub mod dedup;
pub mod metrics;
pub mod provider;
pub mod server;
pub mod signature;
pub mod state;

#[cfg(any(test, feature = "test-util"))]
pub mod test_util;
