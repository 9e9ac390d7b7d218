//! The agent as a whole: its configuration file and the running pipeline.
//!
//! - [`config`]: [`AgentConfig`], one TOML file for the box, every problem reported at once.
//! - [`runtime`]: [`Agent`], which wires camera sources, the detector pool, per-camera rule
//!   engines, tag readers and tag rules together, live or as a deterministic replay; `core`
//!   (private) is its single decision task. The messages and counters it shares with the
//!   uplink and the tools are `crate::pipeline`, the camera kinds `crate::source`.
//! - [`alerts`]: [`AlertFactory`], which turns rule, health and tag decisions into wire alerts
//!   with snapshots.

pub mod alerts;
pub mod config;
mod core;
pub mod runtime;

pub use alerts::AlertFactory;
pub use config::{AgentConfig, ConfigError};
pub use runtime::{Agent, AgentError, Mode};
