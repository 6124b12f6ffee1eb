//! Open-loop load generator (design §10). Not built yet: it arrives with the throughput issue;
//! until then the binary says so and fails.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!("loadtest: not implemented yet (see the throughput issue); nothing was run");
    ExitCode::from(2)
}
