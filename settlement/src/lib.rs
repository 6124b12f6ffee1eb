//! The money core: exact amounts, the pure callback state machine, the group-commit batcher and
//! the only SQL of the wallet path.

pub mod money;
pub mod partitions;
pub mod reconcile;
pub mod rg;
pub mod schema;
pub mod store;

pub mod adjust;
pub mod apply;
pub mod batch;
pub mod command;
pub mod fault;
#[cfg(any(test, feature = "test-util"))]
pub mod test_util;

pub use command::{Action, Answer, Code, Command, ManagedProvider, Policy, TombstoneAnswer};
