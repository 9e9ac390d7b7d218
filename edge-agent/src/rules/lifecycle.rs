//! The alert lifecycle: turns "this rule's condition holds for this key now", frame after frame,
//! into one alert per incident.
//!
//! An incident is keyed by (rule, track) or, for crowd rules, (rule, zone). Its events are one
//! [`Phase::Start`], zero or more [`Phase::Update`]s and one [`Phase::End`]; every Start gets
//! exactly one End (also when the track disappears or the rule's active hours close).
//!
//! Rules report [`Signal`]s; [`Lifecycle`] decides, and is the only place that does:
//! - a Start needs a signal that may start (the rules' start conditions, e.g. the median score),
//!   no open incident, no cooldown for the key, and, for a track, no earlier alert of this rule
//!   for this track (the *latch*: a track alerts once per rule for as long as it lives, so a
//!   person pacing at a zone edge or a van parking and unparking does not re-alert);
//! - an open incident ends in the first frame its rule sends no signal for it;
//! - after an End the key is in cooldown for the rule's `cooldown_ms`. Track ids are never
//!   reused, so for track keys the latch already covers this; cooldown is what keeps a crowd
//!   that thins and regathers from alerting every few seconds;
//! - an Update is sent only when the incident's best frame improves (a higher count, or the same
//!   count and a higher score), so there are few of them and each one means "keep this frame's
//!   snapshot instead".

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::geometry::Crossing;
use crate::track::{Timestamp, Track, TrackId};

/// How urgent a rule's alerts are: the wire type, so config and alerts agree.
pub use protocol::Severity;

/// Which kind of rule raised an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    /// An object entered a polygon zone.
    Zone,
    /// An object crossed a line.
    Line,
    /// An object stayed in a zone too long.
    Loiter,
    /// Too many objects in a zone for too long.
    Crowd,
}

/// Where an event is in its incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The incident began; the first event of it.
    Start,
    /// The incident goes on and has a new best frame.
    Update,
    /// The incident is over; the last event of it.
    End,
}

/// What an incident is about, within its rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Subject {
    /// The rule's zone as a whole (crowd rules).
    Zone,
    /// One track.
    Track(TrackId),
}

/// The key of an incident: rule (by its index in the engine) and subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AlertKey {
    /// Index of the rule in its engine.
    pub rule: usize,
    /// What the incident is about.
    pub subject: Subject,
}

/// A processed frame: its sequence number (chosen by the caller, e.g. per camera) and time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FrameRef {
    /// The caller's frame sequence number.
    pub frame_seq: u64,
    /// The frame's capture time.
    pub timestamp: Timestamp,
}

/// The frame of an incident most worth a snapshot: the highest count (crowd), then the highest
/// score. Only frames in which the object was actually detected qualify.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BestFrame {
    /// Sequence number of that frame.
    pub frame_seq: u64,
    /// Capture time of that frame.
    pub timestamp: Timestamp,
    /// Detection score in that frame (crowd: mean score of the counted objects).
    pub score: f32,
    /// Crowd rules: how many objects were counted in that frame.
    pub count: Option<u32>,
}

impl BestFrame {
    fn rank(&self) -> (u32, f32) {
        (self.count.unwrap_or(0), self.score)
    }
}

/// What a rule saw of its subject in this frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// The track, for per-track rules.
    pub track_id: Option<TrackId>,
    /// The object's label (crowd: the most common label among the counted objects).
    pub label: Option<String>,
    /// The object's box (crowd: the box around all counted objects), frame pixels.
    pub box_xyxy: Option<[f32; 4]>,
    /// The detection score (crowd: the mean of the counted objects' scores).
    pub score: f32,
    /// Line rules: the crossing's direction.
    pub direction: Option<Crossing>,
    /// Crowd rules: how many objects are counted.
    pub count: Option<u32>,
    /// Whether the subject was detected in this frame, rather than carried over while the
    /// tracker coasts through a missed detection. Only fresh observations can be a best frame.
    pub fresh: bool,
}

impl Observation {
    /// What a per-track rule sees of `track` in this frame.
    pub fn of_track(track: &Track) -> Self {
        Self {
            track_id: Some(track.id()),
            label: Some(track.label().to_string()),
            box_xyxy: Some(track.box_xyxy()),
            score: track.score(),
            direction: None,
            count: None,
            fresh: track.updated(),
        }
    }
}

/// A rule's report for one subject in one frame: "my condition holds".
#[derive(Debug, Clone, PartialEq)]
pub struct Signal {
    /// What the condition holds for.
    pub subject: Subject,
    /// What the rule saw.
    pub observation: Observation,
    /// Whether this signal may open an incident. Conditions to *stay* open are looser than to
    /// start (e.g. the median score gates only the start), so an incident does not flicker.
    pub may_start: bool,
    /// The incident is a moment (a line crossing): Start and End are sent together.
    pub instant: bool,
}

/// A rule as the lifecycle needs to know it.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleMeta {
    /// Index of the rule in its engine; part of [`AlertKey`].
    pub index: usize,
    /// The rule's id from config.
    pub id: String,
    /// What kind of rule it is.
    pub kind: RuleKind,
    /// Severity of its alerts.
    pub severity: Severity,
    /// After an incident ends, no new one starts for the same key for this long.
    pub cooldown_ms: Timestamp,
}

/// One step of an incident, as handed to the caller.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertEvent {
    /// The rule's id from config.
    pub rule_id: String,
    /// What kind of rule it is.
    pub rule_kind: RuleKind,
    /// Start, update or end.
    pub phase: Phase,
    /// The rule's severity.
    pub severity: Severity,
    /// The track, for per-track rules.
    pub track_id: Option<TrackId>,
    /// The object's label (see [`Observation::label`]).
    pub label: Option<String>,
    /// The object's box in frame pixels (see [`Observation::box_xyxy`]).
    pub box_xyxy: Option<[f32; 4]>,
    /// The detection score in this frame (see [`Observation::score`]).
    pub score: f32,
    /// Line rules: the direction of the crossing.
    pub direction: Option<Crossing>,
    /// Crowd rules: how many objects are counted now.
    pub count: Option<u32>,
    /// The frame this event was produced in.
    pub frame_seq: u64,
    /// Capture time of that frame.
    pub timestamp: Timestamp,
    /// When the incident started.
    pub started_at: Timestamp,
    /// End events: when the incident ended. For a track that disappeared, the time it was last
    /// seen.
    pub ended_at: Option<Timestamp>,
    /// The incident's best frame so far. When its `frame_seq` is the frame just processed, the
    /// caller should keep that frame's snapshot for the alert.
    pub best: BestFrame,
}

#[derive(Debug, Clone)]
struct Incident {
    rule: RuleMeta,
    started_at: Timestamp,
    best: BestFrame,
    last: Observation,
}

/// Open incidents, cooldowns and latches of one engine. Pure state: no clock, no I/O.
#[derive(Debug, Default)]
pub struct Lifecycle {
    open: BTreeMap<AlertKey, Incident>,
    /// Key -> time until which no new incident may start for it.
    cooldown_until: BTreeMap<AlertKey, Timestamp>,
    /// (rule index, track) pairs that have alerted; cleared when the track is gone.
    latched: BTreeSet<(usize, TrackId)>,
}

impl Lifecycle {
    /// No incidents.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of incidents currently open.
    pub fn open_count(&self) -> usize {
        self.open.len()
    }

    /// Whether an incident is open for `key`.
    pub fn is_open(&self, key: &AlertKey) -> bool {
        self.open.contains_key(key)
    }

    /// Applies one rule's signals for one frame. `signals` must hold every subject whose
    /// condition holds in this frame: open incidents of the rule without a signal end.
    pub fn apply(
        &mut self,
        rule: &RuleMeta,
        frame: FrameRef,
        signals: Vec<Signal>,
    ) -> Vec<AlertEvent> {
        let now = frame.timestamp;
        self.cooldown_until.retain(|_, until| *until > now);
        let mut events = Vec::new();
        let mut held = BTreeSet::new();
        for signal in signals {
            let key = AlertKey {
                rule: rule.index,
                subject: signal.subject,
            };
            held.insert(key);
            let obs = signal.observation;
            if let Some(inc) = self.open.get_mut(&key) {
                let candidate = best_of(frame, &obs);
                if obs.fresh && candidate.rank() > inc.best.rank() {
                    inc.best = candidate;
                    events.push(event(inc, Phase::Update, frame, &obs, None));
                }
                inc.last = obs;
                continue;
            }
            if !signal.may_start || self.is_latched(&key) {
                continue;
            }
            if self.cooldown_until.contains_key(&key) {
                tracing::debug!(rule = %rule.id, subject = ?key.subject, "Start suppressed by cooldown.");
                continue;
            }
            let inc = Incident {
                rule: rule.clone(),
                started_at: now,
                best: best_of(frame, &obs),
                last: obs,
            };
            events.push(event(&inc, Phase::Start, frame, &inc.last, None));
            if let Subject::Track(id) = key.subject {
                self.latched.insert((rule.index, id));
            }
            if signal.instant {
                events.push(event(&inc, Phase::End, frame, &inc.last, Some(now)));
                self.start_cooldown(key, rule.cooldown_ms, now);
            } else {
                self.open.insert(key, inc);
            }
        }

        let lapsed: Vec<AlertKey> = self
            .open
            .keys()
            .filter(|k| k.rule == rule.index && !held.contains(k))
            .copied()
            .collect();
        for key in lapsed {
            if let Some(inc) = self.open.remove(&key) {
                events.push(event(&inc, Phase::End, frame, &inc.last, Some(now)));
                // The rule's current cooldown, not the one it had when the incident started:
                // a cooldown changed by a parameter update applies from the next End.
                self.start_cooldown(key, rule.cooldown_ms, now);
            }
        }
        events
    }

    /// Ends every open incident of a track the tracker dropped, and forgets its latches and
    /// cooldowns (its id will never come back).
    pub fn track_removed(&mut self, track: &Track, frame: FrameRef) -> Vec<AlertEvent> {
        let id = track.id();
        let keys: Vec<AlertKey> = self
            .open
            .keys()
            .filter(|k| k.subject == Subject::Track(id))
            .copied()
            .collect();
        let mut events = Vec::new();
        for key in keys {
            if let Some(inc) = self.open.remove(&key) {
                let mut last = Observation::of_track(track);
                last.fresh = false;
                events.push(event(
                    &inc,
                    Phase::End,
                    frame,
                    &last,
                    Some(track.last_seen()),
                ));
            }
        }
        self.latched.retain(|(_, t)| *t != id);
        self.cooldown_until
            .retain(|k, _| k.subject != Subject::Track(id));
        events
    }

    fn is_latched(&self, key: &AlertKey) -> bool {
        match key.subject {
            Subject::Track(id) => self.latched.contains(&(key.rule, id)),
            Subject::Zone => false,
        }
    }

    fn start_cooldown(&mut self, key: AlertKey, cooldown_ms: Timestamp, now: Timestamp) {
        if cooldown_ms > 0 {
            self.cooldown_until
                .insert(key, now.saturating_add(cooldown_ms));
        }
    }
}

fn best_of(frame: FrameRef, obs: &Observation) -> BestFrame {
    BestFrame {
        frame_seq: frame.frame_seq,
        timestamp: frame.timestamp,
        score: obs.score,
        count: obs.count,
    }
}

fn event(
    inc: &Incident,
    phase: Phase,
    frame: FrameRef,
    obs: &Observation,
    ended_at: Option<Timestamp>,
) -> AlertEvent {
    AlertEvent {
        rule_id: inc.rule.id.clone(),
        rule_kind: inc.rule.kind,
        phase,
        severity: inc.rule.severity,
        track_id: obs.track_id,
        label: obs.label.clone(),
        box_xyxy: obs.box_xyxy,
        score: obs.score,
        direction: obs.direction,
        count: obs.count,
        frame_seq: frame.frame_seq,
        timestamp: frame.timestamp,
        started_at: inc.started_at,
        ended_at,
        best: inc.best,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(cooldown_ms: Timestamp) -> RuleMeta {
        RuleMeta {
            index: 0,
            id: "crowd".into(),
            kind: RuleKind::Crowd,
            severity: Severity::Major,
            cooldown_ms,
        }
    }

    fn crowd(count: u32, score: f32) -> Signal {
        Signal {
            subject: Subject::Zone,
            observation: Observation {
                track_id: None,
                label: Some("person".into()),
                box_xyxy: None,
                score,
                direction: None,
                count: Some(count),
                fresh: true,
            },
            may_start: true,
            instant: false,
        }
    }

    fn track_signal(id: TrackId, score: f32, may_start: bool) -> Signal {
        Signal {
            subject: Subject::Track(id),
            observation: Observation {
                track_id: Some(id),
                label: Some("person".into()),
                box_xyxy: Some([0.0, 0.0, 1.0, 1.0]),
                score,
                direction: None,
                count: None,
                fresh: true,
            },
            may_start,
            instant: false,
        }
    }

    fn frame(seq: u64) -> FrameRef {
        FrameRef {
            frame_seq: seq,
            timestamp: seq as Timestamp * 1000,
        }
    }

    fn phases(events: &[AlertEvent]) -> Vec<Phase> {
        events.iter().map(|e| e.phase).collect()
    }

    #[test]
    fn a_held_condition_gives_one_start_and_one_end() {
        let mut lc = Lifecycle::new();
        let r = rule(0);
        let mut all = Vec::new();
        for seq in 0..5 {
            all.extend(lc.apply(&r, frame(seq), vec![crowd(3, 0.5)]));
        }
        all.extend(lc.apply(&r, frame(5), vec![]));
        assert_eq!(phases(&all), [Phase::Start, Phase::End]);
        assert_eq!(all[0].started_at, 0);
        assert_eq!(all[1].ended_at, Some(5000));
        assert_eq!(lc.open_count(), 0);
    }

    #[test]
    fn cooldown_suppresses_a_second_start_for_the_same_key_until_it_expires() {
        let mut lc = Lifecycle::new();
        let r = rule(10_000);
        assert_eq!(
            phases(&lc.apply(&r, frame(0), vec![crowd(3, 0.5)])),
            [Phase::Start]
        );
        assert_eq!(phases(&lc.apply(&r, frame(1), vec![])), [Phase::End]);
        // Ended at t=1 s; cooldown until t=11 s.
        for seq in 2..11 {
            assert!(
                lc.apply(&r, frame(seq), vec![crowd(3, 0.5)]).is_empty(),
                "seq {seq}"
            );
        }
        assert_eq!(
            phases(&lc.apply(&r, frame(11), vec![crowd(3, 0.5)])),
            [Phase::Start]
        );
    }

    #[test]
    fn updates_are_sent_only_when_the_best_frame_improves() {
        let mut lc = Lifecycle::new();
        let r = rule(0);
        let mut all = Vec::new();
        for (seq, (count, score)) in [(3, 0.5), (3, 0.4), (3, 0.6), (4, 0.3), (3, 0.9)]
            .into_iter()
            .enumerate()
        {
            all.extend(lc.apply(&r, frame(seq as u64), vec![crowd(count, score)]));
        }
        all.extend(lc.apply(&r, frame(9), vec![]));
        assert_eq!(
            phases(&all),
            [Phase::Start, Phase::Update, Phase::Update, Phase::End]
        );
        // Best is the frame with 4 people, even though a later frame scored higher.
        let end = &all[3];
        assert_eq!(end.best.frame_seq, 3);
        assert_eq!(end.best.count, Some(4));
        assert_eq!(end.count, Some(3), "the end reports the last count");
    }

    #[test]
    fn a_track_that_alerted_does_not_alert_again_for_that_rule_while_it_lives() {
        let mut lc = Lifecycle::new();
        let r = RuleMeta {
            kind: RuleKind::Zone,
            cooldown_ms: 0,
            ..rule(0)
        };
        let mut all = Vec::new();
        all.extend(lc.apply(&r, frame(0), vec![track_signal(7, 0.9, true)]));
        all.extend(lc.apply(&r, frame(1), vec![]));
        all.extend(lc.apply(&r, frame(2), vec![track_signal(7, 0.9, true)]));
        assert_eq!(phases(&all), [Phase::Start, Phase::End]);
        let other = RuleMeta {
            index: 1,
            ..r.clone()
        };
        assert_eq!(
            phases(&lc.apply(&other, frame(3), vec![track_signal(7, 0.9, true)])),
            [Phase::Start],
            "the latch is per rule"
        );
    }

    #[test]
    fn a_signal_that_may_not_start_keeps_an_open_incident_but_opens_none() {
        let mut lc = Lifecycle::new();
        let r = RuleMeta {
            kind: RuleKind::Zone,
            ..rule(0)
        };
        assert!(
            lc.apply(&r, frame(0), vec![track_signal(1, 0.9, false)])
                .is_empty()
        );
        assert_eq!(
            phases(&lc.apply(&r, frame(1), vec![track_signal(1, 0.9, true)])),
            [Phase::Start]
        );
        assert!(
            lc.apply(&r, frame(2), vec![track_signal(1, 0.5, false)])
                .is_empty()
        );
        assert!(lc.is_open(&AlertKey {
            rule: 0,
            subject: Subject::Track(1)
        }));
    }

    #[test]
    fn an_instant_incident_starts_and_ends_in_the_same_frame() {
        let mut lc = Lifecycle::new();
        let r = RuleMeta {
            kind: RuleKind::Line,
            ..rule(0)
        };
        let mut s = track_signal(1, 0.9, true);
        s.instant = true;
        s.observation.direction = Some(Crossing::AToB);
        let events = lc.apply(&r, frame(4), vec![s]);
        assert_eq!(phases(&events), [Phase::Start, Phase::End]);
        assert!(events.iter().all(|e| e.direction == Some(Crossing::AToB)));
        assert_eq!(events[1].ended_at, Some(4000));
        assert_eq!(lc.open_count(), 0);
    }
}
