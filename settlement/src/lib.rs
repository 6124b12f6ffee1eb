//! The money core: exact amounts, the pure callback state machine, the group-commit batcher and
//! the only SQL of the wallet path.

pub mod money;
pub mod schema;
pub mod store;

#[cfg(any(test, feature = "test-util"))]
pub mod test_util;
