//! The native dialect's wire format: request bodies, the answer, and signing. The simulator,
//! the load generator and tests build callbacks with these types only.

use serde::{Deserialize, Serialize};

pub use crate::signature::sign_native;

/// Header carrying the native signature.
pub const SIGNATURE_HEADER: &str = "x-signature";

/// Body of `bet` and `win`. Amounts are decimal strings in the wallet currency's units.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MoneyRequest {
    pub player_id: String,
    pub currency: String,
    pub amount: String,
    pub transaction_id: String,
    pub round_id: String,
    pub game_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round_closed: Option<bool>,
    /// Win only: the bet this win settles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bet_transaction_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RollbackRequest {
    pub player_id: String,
    pub transaction_id: String,
    pub reference_transaction_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub game_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EndRoundRequest {
    pub player_id: String,
    pub round_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub game_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BalanceRequest {
    pub player_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
}

/// Every native answer, business or not.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Response {
    pub status: String,
    /// Real plus bonus money, as a decimal string; absent when no wallet is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balance: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_transaction_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The native actions, as the last path segment names them.
pub const ACTIONS: [&str; 5] = ["balance", "bet", "win", "rollback", "end-round"];
