//! [`Track`]: what the tracker knows about one object.

use std::collections::VecDeque;

use protocol::Detection;

use super::config::TrackerConfig;
use super::{Timestamp, TrackId};

/// A bottom-centre point of a track's box, at the time it was observed, in frame pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrackPoint {
    /// When the detection was made.
    pub timestamp: Timestamp,
    /// Horizontal pixel coordinate (0 at the left edge of the frame).
    pub x: f32,
    /// Vertical pixel coordinate (0 at the top edge, growing downwards).
    pub y: f32,
}

/// One tracked object.
///
/// Built and updated only by [`super::Tracker`]; read-only for everyone else.
#[derive(Debug, Clone)]
pub struct Track {
    id: TrackId,
    label: String,
    /// How often each label was matched; `label` is the most frequent one. Bounded by the size
    /// of the label's group.
    label_votes: Vec<(String, u32)>,
    box_xyxy: [f32; 4],
    score: f32,
    first_seen: Timestamp,
    last_seen: Timestamp,
    hits: u32,
    missed: u32,
    confirmed: bool,
    updated: bool,
    scores: VecDeque<f32>,
    history: VecDeque<TrackPoint>,
    /// Where the box centre was when the object last moved, and since when it has stayed near
    /// there. Comparing against one anchor (not frame to frame) means slow drift still adds up
    /// to movement while jitter around the spot does not.
    anchor: [f32; 2],
    anchor_since: Timestamp,
    stationary: bool,
}

impl Track {
    pub(super) fn new(id: TrackId, det: &Detection, now: Timestamp, cfg: &TrackerConfig) -> Self {
        let mut t = Self {
            id,
            label: det.label.clone(),
            label_votes: Vec::new(),
            box_xyxy: det.box_xyxy,
            score: det.score,
            first_seen: now,
            last_seen: now,
            hits: 0,
            missed: 0,
            confirmed: false,
            updated: true,
            scores: VecDeque::with_capacity(cfg.score_window),
            history: VecDeque::with_capacity(cfg.history_len),
            anchor: centre(&det.box_xyxy),
            anchor_since: now,
            stationary: false,
        };
        t.observe(det, now, cfg);
        t
    }

    /// Records a matched detection.
    pub(super) fn observe(&mut self, det: &Detection, now: Timestamp, cfg: &TrackerConfig) {
        self.box_xyxy = det.box_xyxy;
        self.score = det.score;
        self.last_seen = now;
        self.hits = self.hits.saturating_add(1);
        self.missed = 0;
        self.updated = true;
        if self.hits >= cfg.min_hits {
            self.confirmed = true;
        }
        self.vote(&det.label);
        push_bounded(&mut self.scores, det.score, cfg.score_window);
        let [x, y] = self.bottom_centre();
        push_bounded(
            &mut self.history,
            TrackPoint {
                timestamp: now,
                x,
                y,
            },
            cfg.history_len,
        );
        self.update_stationary(now, cfg);
    }

    /// Records a frame in which nothing matched this track. The box, score and stationary flag
    /// stay as last seen: a missed detection says nothing about where the object went.
    pub(super) fn mark_missed(&mut self) {
        self.missed = self.missed.saturating_add(1);
        self.updated = false;
    }

    fn vote(&mut self, label: &str) {
        match self.label_votes.iter_mut().find(|(l, _)| l == label) {
            Some((_, n)) => *n += 1,
            None => self.label_votes.push((label.to_string(), 1)),
        }
        // Ties keep the current label, so the label only changes on a clear majority.
        let current = self
            .label_votes
            .iter()
            .find(|(l, _)| *l == self.label)
            .map_or(0, |(_, n)| *n);
        if let Some((best, n)) = self.label_votes.iter().max_by_key(|(_, n)| *n)
            && *n > current
        {
            self.label = best.clone();
        }
    }

    fn update_stationary(&mut self, now: Timestamp, cfg: &TrackerConfig) {
        let c = centre(&self.box_xyxy);
        let size = self.area().sqrt();
        let moved = (c[0] - self.anchor[0]).hypot(c[1] - self.anchor[1]);
        if moved > cfg.stationary.max_move_fraction * size {
            self.anchor = c;
            self.anchor_since = now;
            self.stationary = false;
        } else if self.confirmed
            && cfg.stationary.labels.contains(&self.label)
            && now - self.anchor_since >= cfg.stationary.window_ms
        {
            self.stationary = true;
        }
    }

    /// The track's id (see [`TrackId`]).
    pub fn id(&self) -> TrackId {
        self.id
    }

    /// The label this track was matched with most often.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The box of the last matched detection, `[x1, y1, x2, y2]` in frame pixels.
    pub fn box_xyxy(&self) -> [f32; 4] {
        self.box_xyxy
    }

    /// Area of the current box in square pixels.
    pub fn area(&self) -> f32 {
        let [x1, y1, x2, y2] = self.box_xyxy;
        (x2 - x1).max(0.0) * (y2 - y1).max(0.0)
    }

    /// The bottom-centre of the current box, `[x, y]`: where a standing person's feet or a
    /// vehicle's wheels touch the ground, which is what zones and lines are drawn against.
    pub fn bottom_centre(&self) -> [f32; 2] {
        let [x1, _, x2, y2] = self.box_xyxy;
        [(x1 + x2) / 2.0, y2]
    }

    /// Score of the last matched detection.
    pub fn score(&self) -> f32 {
        self.score
    }

    /// The recent detection scores, oldest first (at most
    /// [`TrackerConfig::score_window`]).
    pub fn recent_scores(&self) -> impl Iterator<Item = f32> + '_ {
        self.scores.iter().copied()
    }

    /// Median of the recent detection scores. The median, not the mean, so one lucky or
    /// unlucky frame does not decide whether a track may alert.
    pub fn median_score(&self) -> f32 {
        let mut s: Vec<f32> = self.scores.iter().copied().collect();
        s.sort_by(f32::total_cmp);
        match s.len() {
            0 => 0.0,
            n if n % 2 == 1 => s[n / 2],
            n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
        }
    }

    /// When the track was created.
    pub fn first_seen(&self) -> Timestamp {
        self.first_seen
    }

    /// When the track was last matched.
    pub fn last_seen(&self) -> Timestamp {
        self.last_seen
    }

    /// How many detections were matched to this track in all.
    pub fn hits(&self) -> u32 {
        self.hits
    }

    /// Consecutive frames without a match, up to now (0 if matched this frame).
    pub fn missed_frames(&self) -> u32 {
        self.missed
    }

    /// Whether the track has had [`TrackerConfig::min_hits`] matches. Once confirmed, always
    /// confirmed.
    pub fn is_confirmed(&self) -> bool {
        self.confirmed
    }

    /// Whether a detection was matched to this track in the frame just processed. When false,
    /// the track is coasting: its box is where the object was last seen.
    pub fn updated(&self) -> bool {
        self.updated
    }

    /// Whether this is a confirmed track of a stationary-capable label whose box centre has
    /// stayed within [`super::StationaryConfig::max_move_fraction`] of its size for at least
    /// [`super::StationaryConfig::window_ms`] (a parked vehicle). Cleared as soon as it moves.
    pub fn is_stationary(&self) -> bool {
        self.stationary
    }

    /// Recent bottom-centre points, oldest first (at most [`TrackerConfig::history_len`]).
    pub fn history(&self) -> impl ExactSizeIterator<Item = &TrackPoint> + '_ {
        self.history.iter()
    }
}

fn centre(b: &[f32; 4]) -> [f32; 2] {
    [(b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0]
}

fn push_bounded<T>(ring: &mut VecDeque<T>, value: T, cap: usize) {
    while ring.len() >= cap.max(1) {
        ring.pop_front();
    }
    ring.push_back(value);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(label: &str, score: f32, b: [f32; 4]) -> Detection {
        Detection {
            label: label.into(),
            score,
            box_xyxy: b,
        }
    }

    #[test]
    fn median_of_an_even_number_of_scores_is_the_mean_of_the_middle_two() {
        let cfg = TrackerConfig::default();
        let b = [0.0, 0.0, 10.0, 10.0];
        let mut t = Track::new(1, &det("person", 0.9, b), 0, &cfg);
        for s in [0.1, 0.5, 0.3] {
            t.observe(&det("person", s, b), 0, &cfg);
        }
        // Sorted: 0.1 0.3 0.5 0.9.
        assert!((t.median_score() - 0.4).abs() < 1e-6);
    }

    #[test]
    fn score_ring_and_history_are_bounded() {
        let cfg = TrackerConfig {
            score_window: 3,
            history_len: 4,
            ..TrackerConfig::default()
        };
        let mut t = Track::new(1, &det("person", 0.1, [0.0, 0.0, 10.0, 10.0]), 0, &cfg);
        for i in 1..10 {
            let x = i as f32;
            t.observe(&det("person", 0.1 * x, [x, 0.0, x + 10.0, 10.0]), i, &cfg);
        }
        assert_eq!(t.recent_scores().count(), 3);
        assert_eq!(t.history().len(), 4);
        assert_eq!(t.history().last().map(|p| p.x), Some(14.0));
        assert_eq!(t.history().next().map(|p| p.timestamp), Some(6));
    }

    #[test]
    fn label_follows_a_clear_majority_only() {
        let cfg = TrackerConfig::default();
        let b = [0.0, 0.0, 10.0, 10.0];
        let mut t = Track::new(1, &det("car", 0.9, b), 0, &cfg);
        t.observe(&det("truck", 0.9, b), 0, &cfg);
        assert_eq!(t.label(), "car", "a tie keeps the current label");
        t.observe(&det("truck", 0.9, b), 0, &cfg);
        assert_eq!(t.label(), "truck");
    }
}
