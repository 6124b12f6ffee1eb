//! What the back office asks of the callback pipeline, which the gateway owns: decode a stored
//! callback, send it through the pipeline again, and read the gateway's own metrics. The gateway hands an implementation in
//! after start-up (`Api::attach_desk`); this crate never depends on the gateway.

use std::future::Future;
use std::pin::Pin;
use std::time::SystemTime;

/// A callback as the trace kept it (a record of `callback_segments`, see `segments`).
#[derive(Debug, Clone)]
pub struct StoredCallback {
    pub provider: String,
    pub received_at: SystemTime,
    /// The TCP peer, `ip:port`.
    pub peer: String,
    pub method: String,
    /// Path and query as kept (a credential that is the secret itself is blanked).
    pub target: String,
    /// "name: value" lines.
    pub headers: String,
    pub body: Vec<u8>,
    /// The answer sent then.
    pub answer: Vec<u8>,
}

/// A replay's outcome: what the pipeline answered now.
#[derive(Debug, Clone)]
pub struct Replayed {
    pub status: u16,
    pub answer: Vec<u8>,
    /// The native status code (`OK`, `INSUFFICIENT_FUNDS`, `TEMPORARY_ERROR`, ...).
    pub outcome: String,
    /// The pipeline's answer was a stored one (dedup index or ledger), not a new application.
    pub duplicate: bool,
    /// `dedup_index`, `batch`, `twin` or `refused`.
    pub answered_by: String,
    /// The dialect's judgement that the replayed answer says what the original said (the
    /// native dialect's `duplicate` flag aside).
    pub same_answer: bool,
}

/// A boxed future, so the trait stays object-safe.
pub type Pending<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

pub trait CallbackDesk: Send + Sync + std::fmt::Debug {
    /// The core command(s) the stored bytes decode to, for people (the dialect as configured
    /// now decodes them); `Err` says why they do not decode.
    fn decode(&self, stored: &StoredCallback) -> Result<String, String>;

    /// Sends the stored request through the whole pipeline again (signature checked as of its
    /// arrival, dedup, settlement, rendering); `Err` when it cannot be sent (its provider is
    /// gone, the stored request no longer parses).
    fn replay(&self, stored: StoredCallback) -> Pending<'_, Result<Replayed, String>>;

    /// The gateway's own metrics in the Prometheus text format (what `/metrics` serves), for
    /// the console's live view.
    fn metrics(&self) -> String;
}
