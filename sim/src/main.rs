//! Provider simulator (design §10): plays signed rounds with faults and checks for zero drift.
//! Not built yet: it arrives with its own issue; until then the binary says so and fails.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!("sim: not implemented yet (see the simulator issue); nothing was run");
    ExitCode::from(2)
}
