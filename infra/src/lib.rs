//! What both daemons share that is not the wire protocol (that is `protocol`):
//!
//! - [`sled_store`]: opening a sled database while a just-dropped handle still holds its lock,
//!   and the schema version every store keeps in its `meta` tree.
//! - [`tls`]: rustls configurations (ring provider) from PEM files, with errors that name the
//!   config field and the file.

pub mod sled_store;
pub mod tls;
