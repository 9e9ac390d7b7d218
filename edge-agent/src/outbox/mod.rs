//! The durable alert outbox: every alert the agent raises lives here, on disk, until the hub's
//! broker has acknowledged it. Owned by [`Outbox`]; [`inspect`] reads a store without changing
//! it (for `edge-agent check`).
//!
//! # Why the outbox, and why flush before publish
//!
//! An alert, once raised, must never be lost: not by a broker outage, a network cut, a power
//! loss or a `SIGKILL`. So [`Outbox::append`] writes the alert and *flushes* it to disk before it
//! returns, and the uplink publishes only alerts it read back from here; an alert is deleted
//! ([`Outbox::ack`]) only when the broker's PUBACK for it has arrived. The MQTT client is not the
//! source of truth: with rumqttc, `publish()` returning `Ok` means *queued*, unacknowledged QoS 1
//! publishes are dropped on reconnect when the broker kept no session, and its queue is in RAM.
//! After every reconnect the uplink resends everything still here, in order
//! ([`Outbox::pending`]); the hub's insert is idempotent by alert id, so delivery is
//! at-least-once.
//!
//! # On-disk format (schema version [`SCHEMA_VERSION`])
//!
//! A `sled` database (a directory) with three trees:
//!
//! - `meta`: key `schema` → the store's schema version, `u32` big-endian. Written on the first
//!   open of an empty store; a store with another version is refused with a message naming the
//!   path, the version found and the version supported, and a store holding alerts but no
//!   version is refused too (nothing is guessed).
//! - `alerts`: key = sequence number, `u64` big-endian (so byte order is age order); value = a
//!   16-byte record header (magic, record version, severity, stored time, JSON length; see
//!   `record.rs`) followed by the alert as `serde_json` of [`protocol::Alert`].
//! - `quarantine`: alerts the hub refused for good (see below), same key; value = a prefix
//!   (magic, version, MQTT 5 reason code, quarantined time, reason text; see `record.rs`)
//!   followed by the alert's `alerts` record unchanged. Added in schema version 1 without a
//!   bump: an older agent never opens this tree, so it neither sends nor misreads what is in it.
//!
//! # Quarantine
//!
//! An alert the hub answers with an MQTT 5 PUBACK reason meaning "never acceptable" (payload
//! format invalid, not authorised) is moved by [`Outbox::quarantine`] from `alerts` to
//! `quarantine` in one sled transaction, flushed. A quarantined alert is never sent, is not in
//! the depth ([`OutboxStats::depth`] counts the sending queue only; [`OutboxStats::quarantined`]
//! counts these), but its bytes count against `max_bytes` and it expires by the same TTL (age
//! since it was first stored), counted in `expired`. When the cap needs room, quarantined
//! alerts are evicted first, oldest first, whatever their severity or the new alert's (the hub
//! keeps its own copy of every alert it refused, and these are not sent again without an
//! installer), counted in `evicted` under their severity; the `quarantine_*` counters say how
//! many of those were quarantined ones. [`Outbox::requeue_quarantined`] moves them all back
//! under their old seqs (`edge-agent check --outbox DIR --requeue-quarantined`).
//!
//! # When the disk fails (full)
//!
//! A failed append (`ENOSPC`, an I/O error) does not lose the alert: the uplink keeps it in a
//! bounded in-memory [`Held`] queue (`held_max_bytes`, `held_max_alerts`; the same full-policy
//! as the store, drops counted per severity) and appends it again, oldest first and before any
//! newer alert, on each new alert and every second. sled keeps its first I/O error for good,
//! so the store is then closed and opened again ([`Outbox::reopen`], the index re-read from
//! disk) before the retry. Held alerts are in RAM only: a process that stops loses them.
//!
//! # Invariants
//!
//! - Sequence numbers only grow, also across restarts (sled's persistent id generator, floored
//!   at the highest stored key); they may skip values, never repeat one while it is stored.
//! - `append` returns only after the record is flushed; `ack` and `expire` deletions are not
//!   flushed at once (a deletion lost in a crash resends an alert, which at-least-once allows)
//!   and are flushed when the outbox is dropped or [`Outbox::flush`] is called.
//! - Bounds: `max_bytes` over key + record bytes (quarantine included) and `ttl_ms` since
//!   storing ([`OutboxConfig`]). Full-policy: evict quarantined alerts first (oldest first),
//!   then the lowest severity first, oldest first within a
//!   severity, only alerts of the new alert's severity or lower; if that cannot make room the
//!   new alert is dropped instead. Nothing is evicted unless the new alert then fits, and the
//!   evictions and the insert are one atomic sled batch. Every eviction, drop and expiry is
//!   counted ([`OutboxStats`]) and logged at ERROR (it is lost data).
//! - A corrupt record (bad header or JSON) is never delivered and never silently deleted: it is
//!   skipped, counted, logged with its seq and kept for [`inspect`] until an operator acts
//!   (or it is acked by seq). Its bytes count against the cap; it is never evicted.

mod config;
mod held;
mod inspect;
mod record;
mod store;

use std::path::PathBuf;

use protocol::Severity;

use serde::Serialize;

pub use config::OutboxConfig;
pub use held::{Held, HeldStats};
pub use inspect::{OutboxReport, inspect};
pub use store::Outbox;

/// Version of the on-disk layout described in the module doc. Bumped on any incompatible
/// change, with an upgrade step for the old one.
pub const SCHEMA_VERSION: u32 = 1;

/// Everything that can go wrong with the outbox, with the store's path and, where there is
/// one, the alert's sequence number.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("outbox {path}: invalid config: {}", errors.join("; "))]
    Config { path: PathBuf, errors: Vec<String> },
    #[error("outbox {path}: no outbox there (no sled `db` file)")]
    NotFound { path: PathBuf },
    #[error("outbox {path}: cannot open: {source}")]
    Open { path: PathBuf, source: sled::Error },
    #[error(
        "outbox {path}: schema version {found} is not supported (this agent reads version \
         {supported}); run an agent that knows it, or move the outbox aside"
    )]
    UnknownSchema {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    /// The schema version could not be read or written, is not a version, or is missing from
    /// a store that holds records (`infra::sled_store` says which).
    #[error("outbox {path}: {source}")]
    Schema {
        path: PathBuf,
        source: infra::sled_store::SchemaError,
    },
    #[error("outbox {path}: {op} failed: {source}")]
    Storage {
        path: PathBuf,
        op: &'static str,
        source: sled::Error,
    },
    #[error("outbox {path}: seq {seq}: {op} failed: {source}")]
    Record {
        path: PathBuf,
        seq: u64,
        op: &'static str,
        source: sled::Error,
    },
    #[error("outbox {path}: alert {id}: cannot serialise: {source}")]
    Encode {
        path: PathBuf,
        id: String,
        source: serde_json::Error,
    },
    /// The full-policy dropped the new alert: it did not fit even after evicting every alert of
    /// its severity or lower. Counted in [`OutboxStats::dropped`]; not an I/O failure.
    #[error(
        "outbox {path}: alert {id} ({severity:?}, {size} bytes) dropped: outbox full \
         ({bytes} of {max_bytes} bytes) with nothing of its severity or lower left to evict"
    )]
    Full {
        path: PathBuf,
        id: String,
        severity: Severity,
        size: u64,
        bytes: u64,
        max_bytes: u64,
    },
    /// The store was closed after a storage failure and could not be opened again yet (see
    /// [`Outbox::reopen`]); nothing can be read or written until it is.
    #[error("outbox {path}: closed after a storage failure; reopen pending")]
    Closed { path: PathBuf },
    #[error("outbox {path}: {op}: {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        source: std::io::Error,
    },
}

/// A count per alert severity (the wire type, so the status carries it as is).
pub use protocol::status::SeverityCounts;

/// One alert in the quarantine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantinedAlert {
    /// Its outbox sequence number (kept from the sending queue, and kept again on requeue).
    pub seq: u64,
    /// The alert's id (empty when unreadable).
    pub id: String,
    pub severity: Severity,
    /// When it was first stored, ms since the epoch (the TTL counts from here).
    pub stored_ms: i64,
    /// The MQTT 5 PUBACK reason code the broker refused it with.
    pub reason_code: u8,
    /// The broker's reason string, or the code's name.
    pub reason: String,
    /// When it was quarantined, ms since the epoch.
    pub quarantined_ms: i64,
    /// What is wrong with the stored value when it cannot be read (then kept, never evicted,
    /// expired or requeued).
    pub unreadable: Option<String>,
}

/// The outbox's state for the status heartbeat. Counters run since the outbox was opened.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OutboxStats {
    /// Records in the sending queue, corrupt ones included (not the quarantined ones).
    pub depth: usize,
    /// Bytes of key + record stored, corrupt and quarantined ones included.
    pub bytes: u64,
    /// Alerts in the quarantine (refused by the hub for good; kept, never sent).
    pub quarantined: usize,
    /// Of `evicted`: quarantined alerts evicted.
    pub quarantine_evicted: u64,
    /// Of `expired`: quarantined alerts expired.
    pub quarantine_expired: u64,
    /// Alerts evicted by the full-policy to make room for a more or equally severe one, and
    /// quarantined alerts evicted for any new one.
    pub evicted: SeverityCounts,
    /// New alerts the full-policy refused (nothing of their severity or lower left to evict).
    pub dropped: SeverityCounts,
    /// Alerts dropped unacknowledged after `ttl_ms`, quarantined ones included.
    pub expired: u64,
    /// Corrupt records found (kept on disk, never delivered).
    pub corrupt: usize,
    /// Stored time of the oldest deliverable alert, ms since the epoch.
    pub oldest_ms: Option<i64>,
}
