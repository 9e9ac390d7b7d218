//! Multi-object tracking for one camera: stable ids for the objects a detector reports frame
//! after frame.
//!
//! [`Tracker`] is the owner type. Each frame it gets a timestamp and the frame's
//! [`protocol::Detection`]s and matches them greedily by IoU to the tracks it holds, only between
//! labels that are the same or in the same configured group (a detector often calls one vehicle a
//! `car` in one frame and a `truck` in the next). It is pure: no I/O, no clock.
//!
//! Invariants:
//! - Track ids start at 1 and increase monotonically; an id is never reused, so anything keyed by
//!   a [`TrackId`] (alert latches, cooldowns) cannot be confused by a later object.
//! - Time never runs backwards inside a tracker: a timestamp earlier than the previous frame's is
//!   treated as the previous one (zero elapsed time), so a clock step cannot make durations
//!   negative.
//! - A track is only *confirmed* after [`TrackerConfig::min_hits`] matches; rules ignore
//!   unconfirmed tracks, which filters one-frame false positives.
//! - Everything a track remembers is bounded: the score ring, the point history and the label
//!   votes (at most one entry per label of its group).

pub mod config;
pub mod object;
pub mod tracker;

pub use config::{StationaryConfig, TrackerConfig};
pub use object::{Track, TrackPoint};
pub use tracker::{Tracker, TrackerFrame};

/// A point in time: milliseconds since the Unix epoch, UTC.
///
/// A plain integer rather than a newtype because it only ever flows in from the caller (frame
/// capture time) and back out in alert events; the rules only subtract timestamps. Callers should
/// pass capture times from a monotonic-enough source; see the module invariants for what happens
/// when time steps back.
pub type Timestamp = i64;

/// Identifier of a track, unique within one [`Tracker`] (see the module invariants).
pub type TrackId = u64;

/// Errors of the tracking module.
#[derive(Debug, thiserror::Error)]
pub enum TrackError {
    /// The tracker configuration has problems; every one is listed with its field path.
    #[error("tracker config is invalid:\n  {}", .errors.join("\n  "))]
    InvalidConfig { errors: Vec<String> },
}
