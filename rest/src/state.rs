//! The module's shared state: what the gateway configures it with (`Options`), the handles
//! every handler reaches through `State<Arc<Rest>>`, and the client address the gateway hands in.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;

use crate::auth::password::Hasher;
use crate::auth::token::Keys;
use crate::auth::{Limiters, RateLimits};
use crate::desk;

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
