//! The fuzz targets' bodies: each module's `run(data)` feeds one input to a parser that reads
//! bytes from the network or from files people hand the hub, and panics if a property its doc
//! states is broken (beyond not panicking).
//!
//! Two drivers run them. `cargo xtask fuzz` builds `fuzz/` with cargo-fuzz, one libFuzzer
//! binary per module, for coverage-guided runs of minutes to hours. `cargo test` runs
//! `tests/corpus.rs`: every input of the committed corpus (`fuzz/corpus/<target>/`, the seeds
//! and every crash ever found) and a fixed number of mutations of them, so a regression fails
//! the ordinary test run without the instrumented build (about ten minutes of CI's two cores).
//!
//! [`TARGETS`] lists them; both drivers and the test check it against the modules.

// A target reports a broken property by panicking: that is what libFuzzer and the corpus test
// catch.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod digest_challenge;
pub mod gateway_packet;
pub mod geojson;
pub mod mjpeg;
pub mod protocol;
pub mod roster_csv;
pub mod tag_read;

/// A target's entry point.
pub type Run = fn(&[u8]);

/// Every target by name (its module and its corpus directory), with its entry point.
pub const TARGETS: &[(&str, Run)] = &[
    ("digest_challenge", digest_challenge::run),
    ("gateway_packet", gateway_packet::run),
    ("geojson", geojson::run),
    ("mjpeg", mjpeg::run),
    ("protocol", protocol::run),
    ("roster_csv", roster_csv::run),
    ("tag_read", tag_read::run),
];
