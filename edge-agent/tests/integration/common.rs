//! The agent's own test fixtures: running the `edge-agent` binary built for the tests. What
//! every crate's tests share (brokers, certificates, alerts, ports) is the `testkit` crate.

#![allow(dead_code, clippy::expect_used)]

use std::process::{Command, Output};

/// Runs `edge-agent ARGS` (warnings and errors logged) and waits for it.
pub fn edge_agent(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run edge-agent")
}

/// Output bytes as text (lossy).
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
