//! [`Tracker`]: greedy IoU matching of detections to tracks, frame by frame.

use protocol::Detection;

use super::config::TrackerConfig;
use super::object::Track;
use super::{Timestamp, TrackError, TrackId};
use crate::detect::nms::iou;

/// Keeps the tracks of one camera and updates them with each frame's detections.
///
/// Matching is greedy by IoU, best pair first, between compatible labels only; there is no
/// motion model, so a track is matched against the box where it was last seen. That is enough
/// at detection rates of a few fps for people and vehicles in a city street, and keeps the
/// tracker explainable; an object that moves more than its own size between frames will get a
/// new id.
#[derive(Debug)]
pub struct Tracker {
    config: TrackerConfig,
    /// Live tracks, in creation (= id) order, so output order is deterministic.
    tracks: Vec<Track>,
    /// Tracks dropped by the last update, for callers that must close what they keyed on them.
    removed: Vec<Track>,
    next_id: TrackId,
    now: Option<Timestamp>,
}

/// The tracker's state after one frame.
#[derive(Debug, Clone, Copy)]
pub struct TrackerFrame<'a> {
    /// The frame's timestamp as the tracker used it (never earlier than the previous frame's).
    pub timestamp: Timestamp,
    /// Every live track, confirmed or not, in id order; [`Track::updated`] tells whether it was
    /// matched in this frame.
    pub tracks: &'a [Track],
    /// Tracks dropped in this frame because they went unmatched for too long, as last seen.
    pub removed: &'a [Track],
}

impl Tracker {
    /// A tracker with no tracks. Fails with every problem of `config` listed.
    pub fn new(config: TrackerConfig) -> Result<Self, TrackError> {
        let errors = config.validate();
        if !errors.is_empty() {
            return Err(TrackError::InvalidConfig { errors });
        }
        Ok(Self {
            config,
            tracks: Vec::new(),
            removed: Vec::new(),
            next_id: 1,
            now: None,
        })
    }

    /// The configuration this tracker was built with.
    pub fn config(&self) -> &TrackerConfig {
        &self.config
    }

    /// The live tracks after the last update, in id order.
    pub fn tracks(&self) -> &[Track] {
        &self.tracks
    }

    /// Takes one frame's detections (already score-filtered by the caller) and returns the
    /// updated tracks. Detections with a non-finite score or an empty or non-finite box are
    /// ignored: they cannot be matched meaningfully.
    pub fn update(&mut self, timestamp: Timestamp, detections: &[Detection]) -> TrackerFrame<'_> {
        let now = self.now.map_or(timestamp, |prev| prev.max(timestamp));
        self.now = Some(now);
        self.removed.clear();

        let dets: Vec<&Detection> = detections.iter().filter(|d| trackable(d)).collect();
        let matches = self.match_greedy(&dets);

        let mut det_used = vec![false; dets.len()];
        for (ti, track) in self.tracks.iter_mut().enumerate() {
            match matches[ti] {
                Some(di) => {
                    det_used[di] = true;
                    track.observe(dets[di], now, &self.config);
                }
                None => track.mark_missed(),
            }
        }

        let cfg = &self.config;
        let (keep, gone): (Vec<Track>, Vec<Track>) = std::mem::take(&mut self.tracks)
            .into_iter()
            .partition(|t| !expired(t, now, cfg));
        self.tracks = keep;
        self.removed = gone;

        for (di, det) in dets.iter().enumerate() {
            if !det_used[di] {
                let id = self.next_id;
                self.next_id += 1;
                self.tracks.push(Track::new(id, det, now, &self.config));
            }
        }

        TrackerFrame {
            timestamp: now,
            tracks: &self.tracks,
            removed: &self.removed,
        }
    }

    /// For each track (by index), the index of the detection it is matched with, if any.
    fn match_greedy(&self, dets: &[&Detection]) -> Vec<Option<usize>> {
        let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
        for (ti, track) in self.tracks.iter().enumerate() {
            for (di, det) in dets.iter().enumerate() {
                if !self.compatible(track.label(), &det.label) {
                    continue;
                }
                let v = iou(&track.box_xyxy(), &det.box_xyxy);
                if v >= self.config.iou_threshold {
                    pairs.push((v, ti, di));
                }
            }
        }
        // Best overlap first; ties broken by track age (older tracks first) then detection
        // order, so the result does not depend on the sort algorithm.
        pairs.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        let mut by_track = vec![None; self.tracks.len()];
        let mut det_taken = vec![false; dets.len()];
        for (_, ti, di) in pairs {
            if by_track[ti].is_none() && !det_taken[di] {
                by_track[ti] = Some(di);
                det_taken[di] = true;
            }
        }
        by_track
    }

    fn compatible(&self, a: &str, b: &str) -> bool {
        a == b
            || self
                .config
                .label_groups
                .iter()
                .any(|g| g.iter().any(|l| l == a) && g.iter().any(|l| l == b))
    }
}

fn trackable(d: &Detection) -> bool {
    let [x1, y1, x2, y2] = d.box_xyxy;
    d.score.is_finite() && d.box_xyxy.iter().all(|v| v.is_finite()) && x2 > x1 && y2 > y1
}

fn expired(t: &Track, now: Timestamp, cfg: &TrackerConfig) -> bool {
    if t.updated() {
        return false;
    }
    let unseen_for = now - t.last_seen();
    if t.is_stationary() {
        unseen_for > cfg.stationary_max_age_ms
    } else {
        t.missed_frames() > cfg.max_missed_frames || unseen_for > cfg.max_age_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME_MS: Timestamp = 200;

    fn det(label: &str, score: f32, b: [f32; 4]) -> Detection {
        Detection {
            label: label.into(),
            score,
            box_xyxy: b,
        }
    }

    /// A 20x40 person box whose bottom-centre is at (x, y).
    fn person(x: f32, y: f32) -> Detection {
        det("person", 0.9, [x - 10.0, y - 40.0, x + 10.0, y])
    }

    fn ids(frame: &TrackerFrame<'_>) -> Vec<TrackId> {
        frame.tracks.iter().map(Track::id).collect()
    }

    fn tracker(cfg: TrackerConfig) -> Tracker {
        Tracker::new(cfg).expect("valid config")
    }

    #[test]
    fn a_walking_person_keeps_one_id() {
        let mut t = tracker(TrackerConfig::default());
        for i in 0..20 {
            let f = t.update(i * FRAME_MS, &[person(100.0 + 5.0 * i as f32, 200.0)]);
            assert_eq!(ids(&f), vec![1]);
        }
        assert_eq!(t.tracks()[0].hits(), 20);
    }

    #[test]
    fn a_track_is_confirmed_after_min_hits() {
        let mut t = tracker(TrackerConfig {
            min_hits: 3,
            ..TrackerConfig::default()
        });
        let confirmed: Vec<bool> = (0..4)
            .map(|i| t.update(i * FRAME_MS, &[person(100.0, 200.0)]).tracks[0].is_confirmed())
            .collect();
        assert_eq!(confirmed, [false, false, true, true]);
    }

    #[test]
    fn tracker_keeps_the_id_across_a_one_frame_miss() {
        let mut t = tracker(TrackerConfig::default());
        t.update(0, &[person(100.0, 200.0)]);
        let f = t.update(FRAME_MS, &[]);
        assert_eq!(ids(&f), vec![1]);
        assert!(!f.tracks[0].updated(), "coasting track is not updated");
        assert_eq!(f.tracks[0].missed_frames(), 1);
        let f = t.update(2 * FRAME_MS, &[person(105.0, 200.0)]);
        assert_eq!(ids(&f), vec![1]);
        assert!(f.tracks[0].updated());
    }

    #[test]
    fn tracker_drops_a_track_after_max_missed_frames() {
        let mut t = tracker(TrackerConfig {
            max_missed_frames: 3,
            max_age_ms: 60_000,
            ..TrackerConfig::default()
        });
        t.update(0, &[person(100.0, 200.0)]);
        for i in 1..=3 {
            let f = t.update(i * FRAME_MS, &[]);
            assert_eq!(ids(&f), vec![1], "still alive after {i} misses");
        }
        let f = t.update(4 * FRAME_MS, &[]);
        assert!(f.tracks.is_empty());
        assert_eq!(f.removed.iter().map(Track::id).collect::<Vec<_>>(), [1]);
        // A person at the same spot afterwards is a new object.
        let f = t.update(5 * FRAME_MS, &[person(100.0, 200.0)]);
        assert_eq!(ids(&f), vec![2]);
        assert!(
            f.removed.is_empty(),
            "removed lists only this frame's drops"
        );
    }

    #[test]
    fn tracker_drops_a_track_unseen_for_longer_than_max_age_ms() {
        let mut t = tracker(TrackerConfig {
            max_missed_frames: 100,
            max_age_ms: 1_000,
            ..TrackerConfig::default()
        });
        t.update(0, &[person(100.0, 200.0)]);
        assert_eq!(ids(&t.update(1_000, &[])), vec![1]);
        let f = t.update(1_001, &[]);
        assert!(f.tracks.is_empty());
        assert_eq!(f.removed.len(), 1);
    }

    #[test]
    fn ids_increase_and_are_never_reused() {
        let mut t = tracker(TrackerConfig {
            max_missed_frames: 0,
            ..TrackerConfig::default()
        });
        let mut seen = Vec::new();
        for i in 0..5_i64 {
            // Alternate far-apart positions so nothing matches the previous frame.
            let x = if i % 2 == 0 { 100.0 } else { 400.0 };
            seen.extend(ids(&t.update(i * FRAME_MS, &[person(x, 200.0)])));
        }
        assert_eq!(seen, [1, 2, 3, 4, 5]);
    }

    #[test]
    fn two_people_passing_each_other_keep_their_ids() {
        let mut t = tracker(TrackerConfig::default());
        let mut last = Vec::new();
        for i in 0..10 {
            let d = 6.0 * i as f32;
            // Person 1 walks right along y=200, person 2 walks left along y=230: their boxes
            // overlap while passing, but each still overlaps its own previous box most.
            let f = t.update(
                i * FRAME_MS,
                &[person(200.0 - d, 230.0), person(100.0 + d, 200.0)],
            );
            last = f
                .tracks
                .iter()
                .map(|tr| (tr.id(), tr.bottom_centre()[1]))
                .collect();
        }
        assert_eq!(last, vec![(1, 230.0), (2, 200.0)]);
    }

    #[test]
    fn compatible_labels_match_but_unrelated_labels_do_not() {
        let mut t = tracker(TrackerConfig::default());
        let b = [100.0, 100.0, 200.0, 160.0];
        t.update(0, &[det("car", 0.9, b)]);
        let f = t.update(FRAME_MS, &[det("truck", 0.9, b)]);
        assert_eq!(ids(&f), vec![1], "car and truck are one group by default");
        let f = t.update(2 * FRAME_MS, &[det("person", 0.9, b)]);
        assert_eq!(ids(&f), vec![1, 2], "a person never continues a car track");
    }

    #[test]
    fn degenerate_detections_are_ignored() {
        let mut t = tracker(TrackerConfig::default());
        let f = t.update(
            0,
            &[
                det("person", 0.9, [10.0, 10.0, 10.0, 50.0]),
                det("person", f32::NAN, [10.0, 10.0, 20.0, 50.0]),
                det("person", 0.9, [f32::NAN, 10.0, 20.0, 50.0]),
            ],
        );
        assert!(f.tracks.is_empty());
    }

    #[test]
    fn time_going_backwards_counts_as_no_time_passing() {
        let mut t = tracker(TrackerConfig::default());
        t.update(10_000, &[person(100.0, 200.0)]);
        let f = t.update(5_000, &[person(100.0, 200.0)]);
        assert_eq!(f.timestamp, 10_000);
        assert_eq!(f.tracks[0].last_seen(), 10_000);
    }

    fn van(x: f32) -> Detection {
        det("car", 0.9, [x, 100.0, x + 100.0, 160.0])
    }

    #[test]
    fn a_van_that_stops_becomes_stationary_after_the_window_and_not_before() {
        let mut t = tracker(TrackerConfig {
            stationary: crate::track::StationaryConfig {
                window_ms: 10_000,
                max_move_fraction: 0.1,
                ..Default::default()
            },
            ..TrackerConfig::default()
        });
        // Drives in at 20 px per frame, then parks at x=300 with 2 px jitter (size is
        // sqrt(100*60) ~ 77 px, so the spot radius is ~7.7 px).
        let mut now = 0;
        for i in 0..10 {
            t.update(now, &[van(120.0 + 20.0 * i as f32)]);
            assert!(!t.tracks()[0].is_stationary(), "moving van at frame {i}");
            now += FRAME_MS;
        }
        let parked_at = now - FRAME_MS;
        let mut became = None;
        for i in 0..100_u32 {
            let jitter = if i.is_multiple_of(2) { 2.0 } else { -2.0 };
            let f = t.update(now, &[van(300.0 + jitter)]);
            if became.is_none() && f.tracks[0].is_stationary() {
                became = Some(now);
            }
            now += FRAME_MS;
        }
        assert_eq!(became, Some(parked_at + 10_000));
        // Driving off clears the flag at once.
        let f = t.update(now, &[van(320.0)]);
        assert!(!f.tracks[0].is_stationary());
    }

    #[test]
    fn a_standing_person_is_not_stationary_by_default() {
        let mut t = tracker(TrackerConfig::default());
        for i in 0..400 {
            t.update(i * FRAME_MS, &[person(100.0, 200.0)]);
        }
        assert!(!t.tracks()[0].is_stationary());
    }

    #[test]
    fn a_stationary_track_survives_a_long_occlusion_that_would_drop_a_moving_one() {
        let mut t = tracker(TrackerConfig {
            max_missed_frames: 5,
            max_age_ms: 2_000,
            stationary_max_age_ms: 60_000,
            stationary: crate::track::StationaryConfig {
                window_ms: 5_000,
                ..Default::default()
            },
            ..TrackerConfig::default()
        });
        let mut now = 0;
        while now <= 6_000 {
            t.update(now, &[van(300.0)]);
            now += FRAME_MS;
        }
        assert!(t.tracks()[0].is_stationary());
        // A bus hides it for 30 s.
        for _ in 0..150 {
            assert_eq!(t.update(now, &[]).tracks.len(), 1);
            now += FRAME_MS;
        }
        assert_eq!(ids(&t.update(now, &[van(301.0)])), vec![1]);
    }
}
