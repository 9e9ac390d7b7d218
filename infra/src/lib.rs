//! What both daemons share that is not the wire protocol (that is `protocol`):
//!
//! - [`config`]: a daemon's TOML config taken key by key, every problem reported at once and
//!   unknown keys named.
//! - [`metrics`]: `/metrics` through prometheus-client: a registry per daemon whose collectors
//!   read the daemon's counters on each scrape.
//! - [`sled_store`]: opening a sled database while a just-dropped handle still holds its lock,
//!   and the schema version every store keeps in its `meta` tree.
//! - [`tls`]: rustls configurations (ring provider) from PEM files, with errors that name the
//!   config field and the file.

pub mod config;
pub mod metrics;
pub mod sled_store;
pub mod tls;
