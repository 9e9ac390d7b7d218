//! E-bike RFID tag readers: reads in, sightings and tag alerts out.
//!
//! ```text
//! TcpReader / UdpReader ──TagRead──▶ Deduplicator ──Sighting──▶ TagRules ──TagAlert──▶
//!   (reader.rs, I/O)     bounded mpsc,  (dedup.rs, pure)          (rules.rs, pure)
//! MqttReader ──────────▶ backpressure                 └──▶ SightingBatcher ──▶ hub (sightings)
//!   (mqtt.rs, I/O)
//! ```
//!
//! - [`read`]: the one documented read format and its parser ([`read::parse_read`]).
//! - [`reader`]: the TCP and UDP adapters ([`reader::TcpReader`], [`reader::UdpReader`]) and
//!   their counters.
//! - [`mqtt`]: the MQTT adapter ([`mqtt::MqttReader`]): subscribes to a topic filter on a broker
//!   the readers publish to, one record or several JSON lines per payload; reconnects with
//!   jittered back-off and shares the readers' counters and backpressure policy.
//! - [`dedup`]: repeat reads collapse into [`dedup::Sighting`]s ([`dedup::Deduplicator`]).
//! - [`rules`]: watchlist and possible-theft rules with cooldowns ([`rules::TagRules`]).
//! - [`config`]: the watchlist and pairings, loaded from TOML or JSON and validated.
//! - [`batch`]: sightings batched for the hub's trajectory search ([`batch::SightingBatcher`]).
//!
//! Time in the core is [`crate::track::Timestamp`] (ms since the epoch) and is always the
//! agent's receive time, never the reader's clock.

pub mod batch;
pub mod config;
pub mod dedup;
pub mod mqtt;
pub mod read;
pub mod reader;
pub mod rules;

pub use batch::SightingBatcher;
pub use config::{Pairing, TagConfig, TagConfigError, WatchEntry};
pub use dedup::{Deduplicator, Sighting};
pub use mqtt::{
    ConnectionCounters, ConnectionSnapshot, MqttReader, MqttReaderConfig, MqttReaderError, Secret,
};
pub use read::{ReadError, TagKind, TagRead, parse_read};
pub use reader::{CounterSnapshot, ReaderCounters, TcpReader, UdpReader};
pub use rules::{TagAlert, TagRuleError, TagRuleKind, TagRuleUpdate, TagRules};
