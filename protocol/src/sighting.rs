//! [`SightingBatch`]: tag sightings an agent forwards on `{prefix}/site/{site}/sighting`, from
//! which the hub draws e-bike trajectories.
//!
//! A sighting merges the reads of one tag by one reader close together in time (first and last
//! read, count, best RSSI), so the link carries one record per pass rather than every read.
//! Batches have a ULID so a batch resent after a reconnect can be recognised.

use serde::{Deserialize, Serialize};

use crate::time::UtcMillis;

/// One batch of sightings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SightingBatch {
    /// Wire schema version ([`crate::SCHEMA_VERSION`]).
    pub schema: u32,
    /// ULID made on the agent.
    pub id: String,
    /// The site (edge box) id.
    pub site: String,
    /// At most [`crate::limits::MAX_SIGHTINGS_PER_BATCH`].
    pub sightings: Vec<TagSighting>,
}

/// One tag heard by one reader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagSighting {
    /// The reader's id in the agent's config.
    pub reader: String,
    /// Tag id, upper-case hex.
    pub tag: String,
    /// What the tag is fitted to.
    pub kind: TagKind,
    /// First read.
    pub first: UtcMillis,
    /// Last read.
    pub last: UtcMillis,
    /// Reads merged into this sighting.
    pub reads: u32,
    /// Best (strongest) RSSI of those reads, dBm.
    pub rssi: i16,
}

/// What a tag is fitted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TagKind {
    /// An e-bike's tag.
    Bike,
    /// An owner's key tag.
    Key,
}
