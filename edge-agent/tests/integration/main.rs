//! The agent's integration tests, one module per subject, linked into one test binary.
//!
//! One binary rather than one per file: every test binary links the whole crate and its
//! dependencies and compiles the generic code it uses from them again, so one binary per file
//! (32 in the two crates) cost CI minutes of its two cores for nothing. Run one subject with
//! `cargo test -p edge-agent --test integration outbox::`.

mod common;

mod agent;
mod agent_e2e;
mod camera_http;
mod cli;
mod ffmpeg_source;
mod outbox;
mod pool;
mod reference;
mod tag_mqtt;
mod tag_readers;
mod uplink;
