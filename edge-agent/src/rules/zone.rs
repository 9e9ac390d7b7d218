//! Zones: which tracks are inside a polygon (with inertia), and the "entered zone" rule.

use std::collections::BTreeMap;

use super::geometry::{Point, Polygon};
use super::lifecycle::{RuleMeta, Signal};
use super::{FrameContext, RuleFilter};
use crate::track::{Timestamp, Track, TrackId};

/// Inside/outside state of one track for one zone.
///
/// The state changes only after `inertia` consecutive detections on the other side, so a
/// bottom-centre jittering across the edge neither enters nor leaves. Frames in which the track
/// was not detected do not count either way: a missed detection is not evidence of anything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Membership {
    inside: bool,
    inside_run: u32,
    outside_run: u32,
    run_start: Timestamp,
    inside_since: Timestamp,
    parked: bool,
}

impl Membership {
    /// Records one detection of the track, inside the zone or not.
    pub fn observe(&mut self, inside_now: bool, now: Timestamp, inertia: u32) {
        if inside_now {
            if self.inside_run == 0 {
                self.run_start = now;
            }
            self.inside_run = self.inside_run.saturating_add(1);
            self.outside_run = 0;
            if !self.inside && self.inside_run >= inertia {
                self.inside = true;
                // Dwell time counts from the first detection of the run that put it inside.
                self.inside_since = self.run_start;
            }
        } else {
            self.outside_run = self.outside_run.saturating_add(1);
            self.inside_run = 0;
            if self.inside && self.outside_run >= inertia {
                self.inside = false;
                self.parked = false;
            }
        }
    }

    /// Whether the track counts as inside.
    pub fn is_inside(&self) -> bool {
        self.inside
    }

    /// When the current stay inside began (meaningful only while inside).
    pub fn inside_since(&self) -> Timestamp {
        self.inside_since
    }

    /// Whether the track has been stationary during its current stay inside. Such a track
    /// never alerts for this zone until it has left it, even once it moves again: a parked van
    /// pulling out did not *enter* the zone, and its dwell time is not loitering.
    pub fn parked_here(&self) -> bool {
        self.parked
    }
}

/// A polygon and the membership of every live track in it: the part zone, loiter and crowd
/// rules share.
#[derive(Debug, Clone)]
pub struct ZoneArea {
    polygon: Polygon,
    min_area: f32,
    inertia: u32,
    members: BTreeMap<TrackId, Membership>,
}

impl ZoneArea {
    /// A zone; tracks with boxes smaller than `min_area` count as outside.
    pub fn new(polygon: Polygon, min_area: f32, inertia: u32) -> Self {
        Self {
            polygon,
            min_area,
            inertia,
            members: BTreeMap::new(),
        }
    }

    /// Updates membership from the tracks detected in this frame.
    pub fn observe(&mut self, tracks: &[Track], now: Timestamp) {
        for t in tracks {
            if t.updated() {
                let inside = t.area() >= self.min_area
                    && self.polygon.contains(Point::from(t.bottom_centre()));
                self.members
                    .entry(t.id())
                    .or_default()
                    .observe(inside, now, self.inertia);
            }
            if let Some(m) = self.members.get_mut(&t.id())
                && m.inside
                && t.is_stationary()
            {
                m.parked = true;
            }
        }
    }

    /// The membership of a track, if it was ever detected while this zone existed.
    pub fn membership(&self, id: TrackId) -> Option<&Membership> {
        self.members.get(&id)
    }

    /// Whether a track counts as inside.
    pub fn is_inside(&self, id: TrackId) -> bool {
        self.membership(id).is_some_and(Membership::is_inside)
    }

    /// Whether a track counts as inside and has not been parked during this stay.
    pub fn is_inside_unparked(&self, id: TrackId) -> bool {
        self.membership(id)
            .is_some_and(|m| m.is_inside() && !m.parked_here())
    }

    /// Forgets a track the tracker dropped.
    pub fn forget(&mut self, id: TrackId) {
        self.members.remove(&id);
    }
}

/// "Entered zone": holds for a confirmed, non-stationary track of a matching label that counts
/// as inside and has not been parked during this stay; may start once its median score passes
/// the threshold, in a frame where it was detected.
#[derive(Debug, Clone)]
pub struct ZoneRule {
    /// The rule's identity for the lifecycle.
    pub meta: RuleMeta,
    pub(super) filter: RuleFilter,
    pub(super) area: ZoneArea,
}

impl ZoneRule {
    pub(super) fn evaluate(&mut self, ctx: &FrameContext<'_>) -> Vec<Signal> {
        self.area.observe(ctx.tracks, ctx.frame.timestamp);
        if !ctx.active {
            return Vec::new();
        }
        ctx.tracks
            .iter()
            .filter(|t| {
                // A parked vehicle is not an intrusion, and ending its incident when it parks
                // is what keeps it from re-alerting later (the latch keeps it from restarting).
                t.is_confirmed()
                    && !t.is_stationary()
                    && self.filter.matches_label(t)
                    && self.area.is_inside_unparked(t.id())
            })
            .map(|t| self.filter.track_signal(t))
            .collect()
    }

    pub(super) fn forget(&mut self, id: TrackId) {
        self.area.forget(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(m: &mut Membership, pattern: &str) -> String {
        pattern
            .chars()
            .enumerate()
            .map(|(i, c)| {
                m.observe(c == 'i', i as Timestamp, 3);
                if m.is_inside() { 'I' } else { '.' }
            })
            .collect()
    }

    #[test]
    fn membership_needs_inertia_consecutive_frames_to_enter_and_to_leave() {
        let mut m = Membership::default();
        assert_eq!(run(&mut m, "ooiiiiiooiooo"), "....IIIIIIII.");
        // Entered on the third inside frame (index 4); dwell counts from index 2.
        let mut m = Membership::default();
        run(&mut m, "ooiii");
        assert_eq!(m.inside_since(), 2);
    }

    #[test]
    fn jitter_across_the_edge_changes_nothing() {
        let mut m = Membership::default();
        assert_eq!(run(&mut m, "iioiioiioiio"), "............");
        let mut m = Membership::default();
        assert_eq!(run(&mut m, "iiiooiooiooi"), "..IIIIIIIIII");
    }
}
