//! What the project's tools (`sim`, `loadtest`, `cargo xtask bench` and `chaos`) each wrote for
//! themselves, written once: starting a `gateway` binary and learning its address
//! ([`launch`]), a seeded generator whose runs replay ([`rng`]), and reading Prometheus text
//! ([`prom`]). No dependency on the gateway's code: the tools talk to it as its users do.

pub mod launch;
pub mod prom;
pub mod rng;
