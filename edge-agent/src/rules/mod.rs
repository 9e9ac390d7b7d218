//! Alert rules of one camera, as pure code: detections, a timestamp and the local time of day
//! in; alert events out. No I/O, no clock, no time zones.
//!
//! Per frame, [`Engine::process`] runs the stages in this order:
//! 1. score filter, stage one: detections below `min_score` are dropped;
//! 2. the [`crate::track::Tracker`] matches the rest to tracks;
//! 3. incidents of tracks the tracker dropped end;
//! 4. each rule, in config order (zones, lines, loiters, crowds), says for which subjects its
//!    condition holds ([`lifecycle::Signal`]); stage two of the score filter (a track's median
//!    score against the rule's `threshold`), labels, stationary objects and active hours are
//!    applied here;
//! 5. the [`lifecycle::Lifecycle`] turns signals into Start / Update / End events, with
//!    cooldowns, one alert per incident and the best frame of each.
//!
//! Invariants: every Start is followed, in the same or a later frame, by exactly one End for the
//! same rule and subject; events come out in a deterministic order for a given input; memory is
//! bounded by the number of live tracks times the number of rules.

pub mod config;
pub mod crowd;
pub mod engine;
pub mod geometry;
pub mod lifecycle;
pub mod line;
pub mod loiter;
pub mod schedule;
pub mod zone;

pub use config::{
    CrowdRuleConfig, EngineConfig, LineDirection, LineRuleConfig, LoiterRuleConfig, RuleUpdate,
    ZoneRuleConfig,
};
pub use engine::Engine;
pub use geometry::{Crossing, Line, Point, Polygon, Side};
pub use lifecycle::{AlertEvent, BestFrame, Phase, RuleKind, Severity};
pub use line::LineCounts;
pub use schedule::{ActiveHours, TimeOfDay, TimeWindow};

use crate::track::Track;
use lifecycle::FrameRef;

/// Errors of the rules module.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// The rule configuration has problems; every one is listed with its path.
    #[error("rule config is invalid:\n  {}", .errors.join("\n  "))]
    InvalidConfig { errors: Vec<String> },
    /// A parameter update was refused and the engine is unchanged; every problem is listed.
    #[error("update of rule {rule:?} refused:\n  {}", .errors.join("\n  "))]
    InvalidUpdate { rule: String, errors: Vec<String> },
}

/// The label filter and second-stage score filter every rule has.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RuleFilter {
    /// Empty means every label.
    labels: Vec<String>,
    threshold: f32,
}

impl RuleFilter {
    pub(crate) fn new(labels: Vec<String>, threshold: f32) -> Self {
        Self { labels, threshold }
    }

    fn matches_label(&self, t: &Track) -> bool {
        self.labels.is_empty() || self.labels.iter().any(|l| l == t.label())
    }

    fn passes_score(&self, t: &Track) -> bool {
        t.median_score() >= self.threshold
    }

    /// The signal of a track for which a per-track rule holds this frame: it may open an
    /// incident only in a frame where the track was actually detected and passes the score
    /// filter.
    fn track_signal(&self, t: &Track) -> lifecycle::Signal {
        lifecycle::Signal {
            subject: lifecycle::Subject::Track(t.id()),
            observation: lifecycle::Observation::of_track(t),
            may_start: t.updated() && self.passes_score(t),
            instant: false,
        }
    }
}

/// What a rule gets to see of one frame.
#[derive(Debug, Clone, Copy)]
struct FrameContext<'a> {
    frame: FrameRef,
    /// Whether the rule's active hours include this frame's local time of day.
    active: bool,
    tracks: &'a [Track],
}
