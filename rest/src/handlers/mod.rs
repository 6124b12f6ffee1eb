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

/// The query of a back-office queue (adjustments, withdrawals), paged by id.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct QueueSearch {
    /// The items in this state (default: those waiting for a decision).
    pub state: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

impl QueueSearch {
    /// The state asked for (the first of `states` when none is), the page length and the last
    /// id shown.
    pub fn page(&self, states: &[&str]) -> ApiResult<(String, i64, Option<i64>)> {
        let state = self.state.as_deref().unwrap_or(states[0]);
        if !states.contains(&state) {
            return Err(ApiError::field("state", states.join(", ")));
        }
        let after = crate::envelope::decode_cursor(self.cursor.as_deref(), |c| c.parse().ok())?;
        Result::Ok((
            state.to_string(),
            crate::envelope::page_len(self.limit)?,
            after,
        ))
    }
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
