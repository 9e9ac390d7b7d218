//! The hub daemon. Its ingest, grid, roster, escalation and dashboard arrive with their own
//! issues; until then the binary only says what it is, so the systemd unit and the workspace
//! have a real target to point at.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!(
        "hub {} (wire schema v{}): not yet functional; see the project's open issues",
        env!("CARGO_PKG_VERSION"),
        protocol::SCHEMA_VERSION
    );
    ExitCode::from(2)
}
