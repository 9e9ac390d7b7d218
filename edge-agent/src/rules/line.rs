//! Line crossing: a track's bottom-centre passing through a segment, counted per direction.

use std::collections::BTreeMap;

use serde::Serialize;

use super::config::LineDirection;
use super::geometry::{Crossing, Line, Point, Side};
use super::lifecycle::{Observation, RuleMeta, Signal, Subject};
use super::{FrameContext, RuleFilter};
use crate::track::TrackId;

/// Crossings counted by a line rule since the engine started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LineCounts {
    /// Crossings from side A to side B.
    pub a_to_b: u64,
    /// Crossings from side B to side A.
    pub b_to_a: u64,
}

/// Where a track last was clearly on one side of the line.
#[derive(Debug, Clone, Copy)]
struct LastSide {
    side: Side,
    point: Point,
}

/// A crossing is a move from the last point clearly on one side to a point clearly on the
/// other, through the segment. Remembering the last *clear* side (not the last point) means a
/// track that steps onto the line and then across still counts once, and one that steps onto
/// it and back does not count.
#[derive(Debug, Clone)]
pub struct LineRule {
    /// The rule's identity for the lifecycle.
    pub meta: RuleMeta,
    pub(super) filter: RuleFilter,
    line: Line,
    direction: LineDirection,
    dead_band: f32,
    last: BTreeMap<TrackId, LastSide>,
    counts: LineCounts,
}

impl LineRule {
    pub(super) fn new(
        meta: RuleMeta,
        filter: RuleFilter,
        line: Line,
        direction: LineDirection,
        dead_band: f32,
    ) -> Self {
        Self {
            meta,
            filter,
            line,
            direction,
            dead_band,
            last: BTreeMap::new(),
            counts: LineCounts::default(),
        }
    }

    /// Crossings counted so far.
    pub fn counts(&self) -> LineCounts {
        self.counts
    }

    pub(super) fn evaluate(&mut self, ctx: &FrameContext<'_>) -> Vec<Signal> {
        let mut signals = Vec::new();
        for t in ctx.tracks.iter().filter(|t| t.updated()) {
            let p = Point::from(t.bottom_centre());
            let Some(side) = self.line.side_of(p, self.dead_band) else {
                continue;
            };
            // Sides are followed for every track, confirmed or not, so that the first crossing
            // after confirmation is judged from where the track really was.
            let prev = self.last.insert(t.id(), LastSide { side, point: p });
            let Some(prev) = prev else { continue };
            if prev.side == side || !self.line.passes_between_ends(prev.point, p) {
                continue;
            }
            let crossing = match prev.side {
                Side::A => Crossing::AToB,
                Side::B => Crossing::BToA,
            };
            if !(ctx.active
                && t.is_confirmed()
                && self.filter.matches_label(t)
                && self.filter.passes_score(t))
            {
                continue;
            }
            match crossing {
                Crossing::AToB => self.counts.a_to_b += 1,
                Crossing::BToA => self.counts.b_to_a += 1,
            }
            let wanted = match self.direction {
                LineDirection::Either => true,
                LineDirection::AToB => crossing == Crossing::AToB,
                LineDirection::BToA => crossing == Crossing::BToA,
            };
            if wanted {
                let mut observation = Observation::of_track(t);
                observation.direction = Some(crossing);
                signals.push(Signal {
                    subject: Subject::Track(t.id()),
                    observation,
                    may_start: true,
                    instant: true,
                });
            }
        }
        signals
    }

    pub(super) fn forget(&mut self, id: TrackId) {
        self.last.remove(&id);
    }
}
