//! The hub's integration tests, one module per subject, linked into one test binary.
//!
//! One binary rather than one per file: every test binary links the whole crate and its
//! dependencies and compiles the generic code it uses from them again, so one binary per file
//! (32 in the two crates) cost CI minutes of its two cores for nothing. Run one subject with
//! `cargo test -p hub --test integration api_flow::`.

mod api_util;
mod common;

mod api_auth;
mod api_flow;
mod api_logins;
mod api_openapi;
mod dashboard_e2e;
mod disk_full;
mod gateway;
mod gcj02;
mod grid_import;
mod grid_locate;
mod hub_dispatch;
mod hub_external;
mod hub_kill;
mod hub_webhook_push;
mod reload;
mod retention;
mod roster;
mod secrets;
mod silences;
mod site_clock;
mod sms;
mod trust_boundary;
mod trust_ingest;
mod webhook;
mod work_app;
mod workflow;
mod wuding;
