//! The route handlers: each translates a request into SQL of the module's own tables (or a
//! `settlement` call for anything that touches a wallet) and the answer into the envelope.
//! Decisions about money and limits are `settlement`'s.

pub mod adjustments;
pub mod admin;
pub mod auth;
pub mod games;
pub mod ledger;
pub mod live;
pub mod payments;
pub mod provider_changes;
pub mod providers;
pub mod trace;
pub mod user;

use axum::http::StatusCode;

use crate::envelope::{ApiError, ApiResult, Code};

pub async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        Code::MethodNotAllowed,
        "method not allowed on this route",
    )
}

/// SQL that renders a timestamptz as RFC 3339 UTC text, e.g. `2026-11-23T05:40:00.123456Z`.
#[macro_export]
macro_rules! rfc3339 {
    ($column:literal) => {
        concat!(
            "to_char(",
            $column,
            " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
        )
    };
}

/// A money amount as a decimal string in `currency`'s units (its exponent from the currency
/// table; 2 for a code the table does not know).
pub fn decimal(minor: i64, currency: &str) -> String {
    let exponent = settlement::money::Currency::from_code(currency).map_or(2, |c| c.exponent);
    settlement::money::format_minor(minor, exponent)
}

/// An amount the client sent as a decimal string, exact, in `currency`'s units.
pub fn parse_amount(field: &str, text: &str, currency: &str) -> ApiResult<i64> {
    let currency = settlement::money::Currency::from_code(currency)
        .ok_or_else(|| ApiError::field("currency", "unknown currency"))?;
    settlement::money::parse_minor(text, currency.exponent)
        .map_err(|e| ApiError::field(field, e.to_string()))
}

/// A player id in a path.
pub fn path_id(text: &str) -> ApiResult<i64> {
    text.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::field("id", "a positive integer"))
}

/// The reason a back-office change gives (kept with it and in the audit log): 1–500
/// characters once trimmed.
pub fn reason_of(reason: &str) -> ApiResult<&str> {
    let reason = reason.trim();
    if (1..=500).contains(&reason.chars().count()) {
        Result::Ok(reason)
    } else {
        Err(ApiError::field("reason", "1 to 500 characters"))
    }
}
