//! HTTP helpers every route shares: the response body type, JSON answers, bounded body
//! reading and correlation ids. Depends on configuration only.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Request};
use http_body_util::{BodyExt, Limited};

use crate::config;

pub use dialects::response::{json, Body};

pub const CORRELATION_HEADER: &str = "x-correlation-id";

/// Why a request body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    TooLarge,
    Timeout,
    Broken,
}

/// Reads the whole body, refusing more than `body_bytes_max` (early, from Content-Length, when
/// the client announces it) and bodies slower than `request_timeout_ms`.
pub async fn read_body<B>(
    server: &config::Server,
    headers: &HeaderMap,
    body: B,
) -> Result<Bytes, BodyError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > server.body_bytes_max as u64) {
        return Err(BodyError::TooLarge);
    }
    let limited = Limited::new(body, server.body_bytes_max);
    let timeout = Duration::from_millis(server.request_timeout_ms);
    match tokio::time::timeout(timeout, limited.collect()).await {
        Err(_) => Err(BodyError::Timeout),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge),
        Ok(Err(_)) => Err(BodyError::Broken),
    }
}

/// The caller's `X-Correlation-ID` when it is sane, else a new one.
pub fn correlation_id<B>(request: &Request<B>) -> HeaderValue {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    // Read once: `std::process::id` is a system call every time (one per request, by strace).
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    if let Some(given) = request.headers().get(CORRELATION_HEADER) {
        let sane = given.len() <= 128
            && given
                .as_bytes()
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b));
        if sane && !given.is_empty() {
            return given.clone();
        }
    }
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    // Written on the stack: the header value is then the one allocation.
    let mut text = [0u8; 48];
    let mut cursor = std::io::Cursor::new(&mut text[..]);
    let written = std::io::Write::write_fmt(
        &mut cursor,
        format_args!("gw-{}-{n}", PID.get_or_init(std::process::id)),
    );
    let len = usize::try_from(cursor.position()).unwrap_or(0);
    written
        .ok()
        .and_then(|()| HeaderValue::from_bytes(&text[..len]).ok())
        .unwrap_or_else(|| HeaderValue::from_static("gw"))
}
