//! The answer shapes every `/api/` route shares: `{"success": true, "data": ...}`, the error
//! envelope with a stable code and field errors, the body and query extractors that refuse
//! malformed input and unknown fields, and opaque cursors for lists.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// A refusal: HTTP status, stable machine code, a sentence, and the fields at fault.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: Code,
    pub message: String,
    pub errors: Vec<FieldError>,
    /// Seconds to wait, for 429 (`Retry-After`).
    pub retry_after_s: Option<u64>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// The error envelope as it is sent (for the OpenAPI document).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Always `false`.
    pub success: bool,
    pub status: u16,
    /// Stable code, e.g. `VALIDATION_ERROR`, `INVALID_CREDENTIALS`, `RATE_LIMITED`.
    pub code: Code,
    pub message: String,
    pub errors: Vec<FieldError>,
}

/// Every stable code an `/api/` refusal carries: clients branch on these, so they are a closed
/// set, written once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Code {
    AccountBanned,
    BodyRejected,
    Busy,
    CodeTaken,
    ConfiguredInFile,
    CurrencyMismatch,
    DuplicateMismatch,
    EmailTaken,
    ExclusionCannotBeShortened,
    Forbidden,
    FourEyes,
    IdempotencyKeyReused,
    InsufficientFunds,
    InvalidCredentials,
    InvalidSignature,
    MethodNotAllowed,
    NotFound,
    NotPending,
    NotTraced,
    PayloadTooLarge,
    PlayersOnly,
    PlayerBlocked,
    RateLimited,
    RefreshTokenExpired,
    RefreshTokenInvalid,
    RefreshTokenReused,
    ReplayFailed,
    RequestTimeout,
    RoundsOpen,
    SecondFactorMandatory,
    SecondFactorRequired,
    ServiceUnavailable,
    SessionRevoked,
    TokenExpired,
    TokenInvalid,
    TotpAlreadyEnabled,
    TotpInvalid,
    TotpLocked,
    TotpNotEnabled,
    TotpNotSetUp,
    TotpRequired,
    Unauthorized,
    UnknownPlayer,
    UnsupportedMediaType,
    UsernameTaken,
    ValidationError,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, code: Code, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            errors: Vec::new(),
            retry_after_s: None,
        }
    }

    /// 400 with one field at fault.
    pub fn field(field: &str, message: impl Into<String>) -> ApiError {
        ApiError::fields(vec![FieldError {
            field: field.to_string(),
            message: message.into(),
        }])
    }

    /// 400 with every field at fault.
    pub fn fields(errors: Vec<FieldError>) -> ApiError {
        ApiError {
            errors,
            ..ApiError::new(
                StatusCode::BAD_REQUEST,
                Code::ValidationError,
                "the request is not valid",
            )
        }
    }

    pub fn unauthorized(code: Code, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, code, message)
    }

    pub fn forbidden(code: Code, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, code, message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, Code::NotFound, message)
    }

    pub fn conflict(code: Code, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, code, message)
    }

    pub fn rate_limited(retry_after_s: u64) -> ApiError {
        ApiError {
            retry_after_s: Some(retry_after_s.max(1)),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                Code::RateLimited,
                "too many attempts; try again later",
            )
        }
    }

    /// 500/503 for failures of ours; the detail goes to the log, not to the client.
    pub fn internal(what: &str, error: &dyn std::fmt::Display) -> ApiError {
        tracing::error!(error = %error, "{what}");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            Code::ServiceUnavailable,
            "the service cannot answer now; try again",
        )
    }
}

/// Database errors are ours, never the client's.
impl From<tokio_postgres::Error> for ApiError {
    fn from(e: tokio_postgres::Error) -> ApiError {
        // The server's own words (the driver's Display says only "db error").
        match e.as_db_error() {
            Some(db) => {
                let detail = format!("{} ({})", db.message(), db.code().code());
                ApiError::internal("database", &detail)
            }
            None => ApiError::internal("database", &e),
        }
    }
}

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(e: deadpool_postgres::PoolError) -> ApiError {
        ApiError::internal("database pool", &e)
    }
}

impl ApiError {
    /// The error envelope, fields in the documented order.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            success: false,
            status: self.status.as_u16(),
            code: self.code,
            message: self.message.clone(),
            errors: self.errors.clone(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = self.body();
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(s) = self.retry_after_s {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        response
    }
}

/// A success: `{"success": true, "data": ...}` with 200 (or [`Ok::created`]'s 201).
#[derive(Debug)]
pub struct Ok<T>(pub StatusCode, pub T);

pub fn ok<T: Serialize>(data: T) -> ApiResult<Ok<T>> {
    Result::Ok(Ok(StatusCode::OK, data))
}

pub fn created<T: Serialize>(data: T) -> ApiResult<Ok<T>> {
    Result::Ok(Ok(StatusCode::CREATED, data))
}

/// The success envelope as sent: `success` first, then `data`.
#[derive(Serialize)]
struct Success<T> {
    success: bool,
    data: T,
}

impl<T: Serialize> IntoResponse for Ok<T> {
    fn into_response(self) -> Response {
        let body = Success {
            success: true,
            data: self.1,
        };
        (self.0, axum::Json(body)).into_response()
    }
}

/// A JSON body of `T` (declare `T` with `deny_unknown_fields`): a body that is not JSON, not
/// the right shape, or has unknown fields is a 400 naming the field.
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if !json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                Code::UnsupportedMediaType,
                "send the body as application/json",
            ));
        }
        let bytes = bytes::Bytes::from_request(request, state)
            .await
            .map_err(|e| {
                let code = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    Code::PayloadTooLarge
                } else {
                    Code::BodyRejected
                };
                ApiError::new(e.status(), code, e.body_text())
            })?;
        decode(&bytes).map(Body)
    }
}

/// Decodes `bytes` as `T`, naming the field of the first error.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| field_error(e.path().to_string(), e.inner().to_string()))?;
    de.end()
        .map_err(|e| field_error(".".into(), e.to_string()))?;
    Result::Ok(value)
}

fn field_error(path: String, message: String) -> ApiError {
    // serde_path_to_error names the top level ".".
    let field = if path == "." { "body".into() } else { path };
    ApiError::field(&field, message)
}

/// Query parameters as `T` (declare `T` with `deny_unknown_fields`).
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(Query)
            .map_err(|e| field_error(e.path().to_string(), e.inner().to_string()))
    }
}

/// How many items a list answers at most, and by default.
pub const PAGE_MAX: u32 = 200;
pub const PAGE_DEFAULT: u32 = 50;

/// The page size asked for, checked.
pub fn page_len(limit: Option<u32>) -> ApiResult<i64> {
    match limit.unwrap_or(PAGE_DEFAULT) {
        n @ 1..=PAGE_MAX => Result::Ok(i64::from(n)),
        _ => Err(ApiError::field(
            "limit",
            format!("between 1 and {PAGE_MAX}"),
        )),
    }
}

/// A page of a list: the items and the cursor of the next page (absent on the last).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// `rows` were fetched with one more than `len` to learn whether a next page exists;
    /// `key` gives the cursor of an item.
    pub fn of(mut rows: Vec<T>, len: i64, key: impl Fn(&T) -> String) -> Page<T> {
        let more = rows.len() as i64 > len;
        rows.truncate(usize::try_from(len).unwrap_or(0));
        let next_cursor = if more {
            rows.last().map(|last| encode_cursor(&key(last)))
        } else {
            None
        };
        Page {
            items: rows,
            next_cursor,
        }
    }
}

/// Cursors are opaque to clients (base64url of the position); they carry no authority: every
/// list query is still scoped to the caller.
pub fn encode_cursor(position: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(position)
}

/// The position in `cursor`, checked by `parse`.
pub fn decode_cursor<P>(
    cursor: Option<&str>,
    parse: impl Fn(&str) -> Option<P>,
) -> ApiResult<Option<P>> {
    let Some(cursor) = cursor else {
        return Result::Ok(None);
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| parse(&s))
        .map(Some)
        .ok_or_else(|| ApiError::field("cursor", "not a cursor this list gave"))
}

/// An RFC 3339 time from a query parameter, as PostgreSQL-ready text.
pub fn time_param(field: &str, value: Option<&str>) -> ApiResult<Option<String>> {
    match value {
        None => Result::Ok(None),
        // In UTC, said so: a time without its zone would be read in the database session's.
        Some(v) if v.ends_with(['Z', 'z']) && humantime::parse_rfc3339_weak(v).is_ok() => {
            Result::Ok(Some(v.to_string()))
        }
        Some(_) => Err(ApiError::field(
            field,
            "an RFC 3339 time in UTC, e.g. 2026-01-31T12:00:00Z",
        )),
    }
}
