//! Integration tests of the gateway: the real server over real HTTP against a real PostgreSQL.

mod balancer;
mod browser;
mod concurrency;
mod console;
mod deploy;
mod drain;
mod evolution;
mod foundation;
mod hostile;
mod hub88;
mod money_path;
mod native_input;
mod pragmatic;
mod recovery;
mod rest_admin;
mod rest_auth;
mod rest_bet_path;
mod rest_payments;
mod rest_player;
mod rest_providers;
mod rest_trace;
mod retention;
mod softswiss;
