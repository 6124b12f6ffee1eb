//! Integration tests of the gateway: the real server over real HTTP against a real PostgreSQL.

mod foundation;
mod money_path;
