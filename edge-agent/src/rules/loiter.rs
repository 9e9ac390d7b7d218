//! Loitering: an object inside a zone continuously for longer than a duration.

use super::lifecycle::{RuleMeta, Signal};
use super::zone::ZoneArea;
use super::{FrameContext, RuleFilter};
use crate::track::{Timestamp, TrackId};

/// Holds for a confirmed, non-stationary track of a matching label that has counted as inside
/// for at least `min_duration_ms` and has not been parked during that stay. The stay survives missed detections (the tracker coasts) and
/// brief steps out shorter than the zone's inertia.
#[derive(Debug, Clone)]
pub struct LoiterRule {
    /// The rule's identity for the lifecycle.
    pub meta: RuleMeta,
    pub(super) filter: RuleFilter,
    pub(super) area: ZoneArea,
    pub(super) min_duration_ms: Timestamp,
}

impl LoiterRule {
    pub(super) fn evaluate(&mut self, ctx: &FrameContext<'_>) -> Vec<Signal> {
        let now = ctx.frame.timestamp;
        self.area.observe(ctx.tracks, now);
        if !ctx.active {
            return Vec::new();
        }
        ctx.tracks
            .iter()
            .filter(|t| {
                t.is_confirmed()
                    && !t.is_stationary()
                    && self.filter.matches_label(t)
                    && self.area.membership(t.id()).is_some_and(|m| {
                        m.is_inside()
                            && !m.parked_here()
                            && now - m.inside_since() >= self.min_duration_ms
                    })
            })
            .map(|t| self.filter.track_signal(t))
            .collect()
    }

    pub(super) fn forget(&mut self, id: TrackId) {
        self.area.forget(id);
    }
}
