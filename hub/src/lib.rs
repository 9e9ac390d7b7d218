//! The hub: receives alerts, finds the grid cell they happened in and the person on duty there,
//! and escalates what nobody handles.
//!
//! Module map (see ARCHITECTURE.md for the data flow):
//! - [`gateway`]: the public MQTT listeners: credentials, topic ACLs, alerts stored before the
//!   broker acknowledges them.
//! - [`broker`]: the embedded rumqttd behind the gateway.
//! - [`link`]: the hub's own MQTT client (embedded or external broker).
//! - [`ingest`]: decode, validate and store alerts idempotently, group-committed; refused
//!   payloads to the quarantine.
//! - [`trust`]: what a site may file, and how far its positions are believed.
//! - [`store`]: the sled database.
//! - [`disk`]: the data directory's free space; below `[storage] min_free_mb` new alerts are
//!   deferred (the agents keep them), never written into a full disk.
//! - [`health`]: the hub's own health as a case (the disk-low episode), raised by the hub.
//! - [`grid`]: grid cells and the point → deepest cell lookup (pure).
//! - [`demo`]: the repository's published demo secrets, recognised by value so `hub run`
//!   refuses them without `--demo`.
//! - [`secret_file`]: secret files written owner-only (0600); a signing key others can read
//!   is refused.
//! - [`metrics`]: counters of everything received, refused and dropped, and the hub's one
//!   prometheus-client registry that `/metrics` encodes.
//! - [`retention`]: how long each kind of record is kept; the sweeper that removes the rest.
//! - [`sms`]: case notifications by SMS (Aliyun, Tencent Cloud), receipts pulled onto the case.
//! - [`watchlist`]: who sees and changes a watchlist entry, which sites it reaches (pure).

pub mod api;
pub mod book;
pub mod broker;
pub mod case;
pub mod config;
pub mod demo;
pub mod disk;
pub mod dispatch;
pub mod gateway;
pub mod grid;
pub mod health;
pub mod ingest;
pub mod link;
pub mod live;
pub mod metrics;
pub mod outbound;
pub mod push;
pub mod random;
pub mod registry;
pub mod reload;
pub mod retention;
pub mod roster;
pub mod secret_file;
pub mod service;
pub mod sms;
pub mod store;
pub mod tail;
pub mod trust;
pub mod users;
pub mod watchlist;
pub mod webhook;
pub mod workapp;
