//! Which wire format a provider speaks (`dialect = "..."` in the configuration).

use serde::Deserialize;

/// A provider's wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Ours: JSON, `X-Signature` HMAC-SHA256 with a timestamp (README).
    Native,
    /// Form-encoded `<method>.html` calls signed with an MD5 `hash` parameter.
    Pragmatic,
    /// JSON calls with a static `authToken` query parameter.
    Evolution,
    /// JSON calls signed with RSA-SHA256 (`X-Hub88-Signature`), checked with a public key.
    Hub88,
    /// JSON `/play` batches of actions applied atomically, `X-REQUEST-SIGN` HMAC-SHA256.
    Softswiss,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Native,
        Kind::Pragmatic,
        Kind::Evolution,
        Kind::Hub88,
        Kind::Softswiss,
    ];

    /// Dialects that verify with the provider's public key instead of a shared secret.
    pub fn uses_public_key(self) -> bool {
        self == Kind::Hub88
    }

    /// Whether the dialect's signature binds a call to its moment (a signed timestamp checked
    /// against a window) or to its method. One that binds neither can be replayed, or posted
    /// to another method, by whoever captured a call: outside demo mode its providers must
    /// name the addresses they call from (`allow_ips`).
    pub fn binds_call(self) -> bool {
        self == Kind::Native
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Native => "native",
            Kind::Pragmatic => "pragmatic",
            Kind::Evolution => "evolution",
            Kind::Hub88 => "hub88",
            Kind::Softswiss => "softswiss",
        }
    }
}
