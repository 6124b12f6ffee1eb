//! The money core.
