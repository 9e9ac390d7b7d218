//! [`Engine`]: the rules of one camera, its tracker and its alert lifecycle, driven one frame at
//! a time.

use protocol::Detection;

use super::config::{EngineConfig, RuleUpdate};
use super::crowd::CrowdRule;
use super::lifecycle::{AlertEvent, FrameRef, Lifecycle, RuleMeta, Signal};
use super::line::{LineCounts, LineRule};
use super::loiter::LoiterRule;
use super::schedule::{ActiveHours, TimeOfDay};
use super::zone::ZoneRule;
use super::{FrameContext, RuleFilter, RulesError};
use crate::track::{Timestamp, Track, TrackError, TrackId, Tracker};

/// One rule of any kind.
#[derive(Debug, Clone)]
pub(super) enum Rule {
    Zone(ZoneRule),
    Line(LineRule),
    Loiter(LoiterRule),
    Crowd(CrowdRule),
}

impl Rule {
    fn meta(&self) -> &RuleMeta {
        match self {
            Rule::Zone(r) => &r.meta,
            Rule::Line(r) => &r.meta,
            Rule::Loiter(r) => &r.meta,
            Rule::Crowd(r) => &r.meta,
        }
    }

    /// The parameters a [`RuleUpdate`] can change, as compiled: identity with severity and
    /// cooldown, and the label and score filter.
    fn params(&self) -> (&RuleMeta, &RuleFilter) {
        match self {
            Rule::Zone(r) => (&r.meta, &r.filter),
            Rule::Line(r) => (&r.meta, &r.filter),
            Rule::Loiter(r) => (&r.meta, &r.filter),
            Rule::Crowd(r) => (&r.meta, &r.filter),
        }
    }

    fn params_mut(&mut self) -> (&mut RuleMeta, &mut RuleFilter) {
        match self {
            Rule::Zone(r) => (&mut r.meta, &mut r.filter),
            Rule::Line(r) => (&mut r.meta, &mut r.filter),
            Rule::Loiter(r) => (&mut r.meta, &mut r.filter),
            Rule::Crowd(r) => (&mut r.meta, &mut r.filter),
        }
    }

    fn evaluate(&mut self, ctx: &FrameContext<'_>) -> Vec<Signal> {
        match self {
            Rule::Zone(r) => r.evaluate(ctx),
            Rule::Line(r) => r.evaluate(ctx),
            Rule::Loiter(r) => r.evaluate(ctx),
            Rule::Crowd(r) => r.evaluate(ctx),
        }
    }

    fn forget(&mut self, id: TrackId) {
        match self {
            Rule::Zone(r) => r.forget(id),
            Rule::Line(r) => r.forget(id),
            Rule::Loiter(r) => r.forget(id),
            Rule::Crowd(r) => r.forget(id),
        }
    }
}

/// A rule with the hours it applies.
#[derive(Debug, Clone)]
pub(super) struct CompiledRule {
    pub(super) rule: Rule,
    pub(super) hours: ActiveHours,
}

/// The alerting core of one camera: owns its tracker, its rules and their lifecycle.
///
/// Pure: it never reads a clock or does I/O, so feeding the same frames gives the same events,
/// which is what lets replay tune zones on recorded footage.
#[derive(Debug)]
pub struct Engine {
    /// The configuration the engine runs, parameter updates included; updates are applied to
    /// it first so config and engine cannot disagree.
    config: EngineConfig,
    min_score: f32,
    tracker: Tracker,
    rules: Vec<CompiledRule>,
    lifecycle: Lifecycle,
}

impl Engine {
    /// Builds the engine, or fails listing every problem of `config` with its path.
    pub fn new(config: &EngineConfig) -> Result<Self, RulesError> {
        let rules = config
            .compile()
            .map_err(|errors| RulesError::InvalidConfig { errors })?;
        let tracker = Tracker::new(config.tracker.clone()).map_err(|e| match e {
            // Unreachable after compile, which checks the tracker too; kept total anyway.
            TrackError::InvalidConfig { errors } => RulesError::InvalidConfig {
                errors: errors.into_iter().map(|e| format!("tracker.{e}")).collect(),
            },
        })?;
        Ok(Self {
            config: config.clone(),
            min_score: config.min_score,
            tracker,
            rules,
            lifecycle: Lifecycle::new(),
        })
    }

    /// Processes one frame: `frame_seq` is the caller's sequence number for the frame (echoed in
    /// events so the caller can find the frame's snapshot), `timestamp` its capture time,
    /// `time_of_day` the local wall-clock time of day at capture (for active hours), and
    /// `detections` what the detector found in it.
    ///
    /// Returns this frame's alert events: first the ends of incidents whose tracks were dropped,
    /// then each rule's events in config order.
    pub fn process(
        &mut self,
        frame_seq: u64,
        timestamp: Timestamp,
        time_of_day: TimeOfDay,
        detections: &[Detection],
    ) -> Vec<AlertEvent> {
        let kept: Vec<Detection> = detections
            .iter()
            .filter(|d| d.score >= self.min_score)
            .cloned()
            .collect();
        let tracked = self.tracker.update(timestamp, &kept);
        let frame = FrameRef {
            frame_seq,
            timestamp: tracked.timestamp,
        };

        let mut events = Vec::new();
        for gone in tracked.removed {
            for r in &mut self.rules {
                r.rule.forget(gone.id());
            }
            events.extend(self.lifecycle.track_removed(gone, frame));
        }
        for r in &mut self.rules {
            let ctx = FrameContext {
                frame,
                active: r.hours.contains(time_of_day),
                tracks: tracked.tracks,
            };
            let signals = r.rule.evaluate(&ctx);
            events.extend(self.lifecycle.apply(r.rule.meta(), frame, signals));
        }
        events
    }

    /// Changes the common parameters (severity, threshold, cooldown, active hours) of the rule
    /// `update.rule`, validated like the configuration; on refusal every problem is listed and
    /// the engine is unchanged.
    ///
    /// Tracks, zone memberships, line counts and open incidents are kept: the change applies
    /// from the next frame on. An incident already open keeps the severity it started with, so
    /// its Start, Updates and End agree; the new cooldown applies from its End.
    pub fn update_params(&mut self, update: &RuleUpdate) -> Result<(), RulesError> {
        let refused = |errors| RulesError::InvalidUpdate {
            rule: update.rule.clone(),
            errors,
        };
        let (config, compiled) = self.config.updated(update).map_err(refused)?;
        let fresh = compiled.iter().find(|r| r.rule.meta().id == update.rule);
        let live = self
            .rules
            .iter_mut()
            .find(|r| r.rule.meta().id == update.rule);
        // Both exist when `updated` succeeded (it found the rule, and the engine was compiled
        // from the same config); kept total rather than panicking.
        let (Some(fresh), Some(live)) = (fresh, live) else {
            return Err(refused(vec![format!(
                "rule: no rule has id {:?}",
                update.rule
            )]));
        };
        let (meta, filter) = fresh.rule.params();
        let (live_meta, live_filter) = live.rule.params_mut();
        live_meta.clone_from(meta);
        live_filter.clone_from(filter);
        live.hours = fresh.hours.clone();
        self.config = config;
        Ok(())
    }

    /// The configuration the engine runs, with every parameter update applied.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The live tracks after the last frame.
    pub fn tracks(&self) -> &[Track] {
        self.tracker.tracks()
    }

    /// Crossings counted so far by the line rule `rule_id`, or `None` if there is no such line
    /// rule.
    pub fn line_counts(&self, rule_id: &str) -> Option<LineCounts> {
        self.rules.iter().find_map(|r| match &r.rule {
            Rule::Line(l) if l.meta.id == rule_id => Some(l.counts()),
            _ => None,
        })
    }

    /// Number of incidents currently open (started and not yet ended).
    pub fn open_incidents(&self) -> usize {
        self.lifecycle.open_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{Crossing, Phase, Severity};

    const FRAME_MS: Timestamp = 200;

    /// A 20x40 person box with its bottom-centre (the feet) at (x, y).
    fn person(x: f32, y: f32, score: f32) -> Detection {
        Detection {
            label: "person".into(),
            score,
            box_xyxy: [x - 10.0, y - 40.0, x + 10.0, y],
        }
    }

    /// A 100x60 car box with its bottom-centre at (x, y).
    fn van(x: f32, y: f32) -> Detection {
        Detection {
            label: "car".into(),
            score: 0.8,
            box_xyxy: [x - 50.0, y - 60.0, x + 50.0, y],
        }
    }

    fn config(toml_text: &str) -> EngineConfig {
        toml::from_str(toml_text).expect("test config parses")
    }

    /// Drives an engine at 5 fps from a given local time of day.
    struct Sim {
        engine: Engine,
        seq: u64,
        now: Timestamp,
        start_of_day_s: u32,
        events: Vec<AlertEvent>,
    }

    impl Sim {
        fn new(toml_text: &str) -> Self {
            Self::at(toml_text, 12 * 3600)
        }

        fn at(toml_text: &str, start_of_day_s: u32) -> Self {
            Self {
                engine: Engine::new(&config(toml_text)).expect("valid config"),
                seq: 0,
                now: 1_700_000_000_000,
                start_of_day_s,
                events: Vec::new(),
            }
        }

        fn time_of_day(&self) -> TimeOfDay {
            let elapsed_s = (self.now - 1_700_000_000_000) / 1000;
            TimeOfDay::from_seconds(self.start_of_day_s + elapsed_s as u32)
        }

        /// One frame; returns its events and keeps them in `events` too.
        fn step(&mut self, dets: &[Detection]) -> Vec<AlertEvent> {
            let tod = self.time_of_day();
            let ev = self.engine.process(self.seq, self.now, tod, dets);
            self.seq += 1;
            self.now += FRAME_MS;
            self.events.extend(ev.clone());
            ev
        }

        fn phases(&self) -> Vec<(String, Phase)> {
            self.events
                .iter()
                .map(|e| (e.rule_id.clone(), e.phase))
                .collect()
        }
    }

    fn start(rule: &str) -> (String, Phase) {
        (rule.to_string(), Phase::Start)
    }

    fn end(rule: &str) -> (String, Phase) {
        (rule.to_string(), Phase::End)
    }

    /// The zone is the rectangle x 200..400, y 100..300.
    const ZONE: &str = r#"
        [[zones]]
        id = "cordon"
        severity = "major"
        labels = ["person"]
        polygon = [[200, 100], [400, 100], [400, 300], [200, 300]]
        inertia_frames = 3
    "#;

    #[test]
    fn a_person_walking_through_a_zone_gives_one_start_after_inertia_and_one_end_after_leaving() {
        let mut sim = Sim::new(ZONE);
        // Feet at y=200, walking right 8 px per frame from x=100: first inside at x=204
        // (frame 13), outside again at x=404 (frame 38).
        for i in 0..50 {
            sim.step(&[person(100.0 + 8.0 * i as f32, 200.0, 0.9)]);
        }
        assert_eq!(sim.phases(), [start("cordon"), end("cordon")]);
        let (s, e) = (&sim.events[0], &sim.events[1]);
        assert_eq!(s.frame_seq, 15, "third consecutive frame inside");
        assert_eq!(s.track_id, Some(1));
        assert_eq!(s.label.as_deref(), Some("person"));
        assert_eq!(s.severity, crate::rules::Severity::Major);
        assert_eq!(s.best.frame_seq, 15);
        assert_eq!(e.frame_seq, 40, "third consecutive frame outside");
        assert_eq!(e.started_at, s.timestamp);
        assert_eq!(e.ended_at, Some(e.timestamp));
        assert_eq!(sim.engine.open_incidents(), 0);
    }

    #[test]
    fn jitter_at_the_zone_edge_neither_starts_early_nor_refires() {
        // No cooldown: what stops a second alert for the same person is the per-track latch.
        let mut sim = Sim::new(&format!("{ZONE}\ncooldown_ms = 0"));
        // Feet around the left edge x=200: two frames in, one out, for 20 s.
        let edge = |i: usize| if i % 3 == 2 { 197.0 } else { 203.0 };
        for i in 0..100 {
            sim.step(&[person(edge(i), 200.0, 0.9)]);
        }
        assert!(sim.events.is_empty(), "never three frames in a row inside");
        // Steps in properly, then jitters at the edge again (one in, two out), leaves, comes
        // back and jitters some more.
        for x in [210.0, 214.0, 218.0, 214.0, 210.0, 206.0] {
            sim.step(&[person(x, 200.0, 0.9)]);
        }
        let edge_out = |i: usize| if i.is_multiple_of(3) { 203.0 } else { 197.0 };
        for i in 0..60 {
            sim.step(&[person(edge_out(i), 200.0, 0.9)]);
        }
        for x in [
            195.0, 190.0, 186.0, 190.0, 195.0, 200.0, 204.0, 208.0, 212.0, 216.0,
        ] {
            sim.step(&[person(x, 200.0, 0.9)]);
        }
        for i in 0..60 {
            sim.step(&[person(edge(i) + 10.0, 200.0, 0.9)]);
        }
        assert_eq!(sim.phases(), [start("cordon"), end("cordon")]);
        assert_eq!(sim.engine.tracks().len(), 1, "one person throughout");
    }

    #[test]
    fn a_parked_van_alerts_once_and_never_again_while_parked() {
        let cfg = r#"
            [tracker.stationary]
            window_ms = 10000
            [[zones]]
            id = "no-parking"
            labels = ["car"]
            cooldown_ms = 0
            polygon = [[300, 100], [700, 100], [700, 400], [300, 400]]
            [[zones]]
            id = "night-watch"
            labels = ["car"]
            polygon = [[300, 100], [700, 100], [700, 400], [300, 400]]
            active_hours = ["20:00-06:00"]
        "#;
        // 19:59:00 local.
        let mut sim = Sim::at(cfg, 19 * 3600 + 59 * 60);
        // Drives in from x=100 at 20 px per frame and parks at x=500 (frame 20, 4 s).
        for i in 0..=20 {
            sim.step(&[van(100.0 + 20.0 * i as f32, 300.0)]);
        }
        let parked_at = sim.now - FRAME_MS;
        assert_eq!(sim.phases(), [start("no-parking")]);
        // Parked for 5 minutes with detector jitter, every 7th frame missed, and a 20 s gap
        // while a bus stands in front of it. The night rule opens at 20:00 meanwhile.
        for i in 0..1500 {
            let bus = (600..700).contains(&i);
            if bus || i % 7 == 3 {
                sim.step(&[]);
            } else {
                let jitter = [0.0, 2.0, -1.0, 3.0][i % 4];
                sim.step(&[van(500.0 + jitter, 300.0 + jitter / 2.0)]);
            }
        }
        assert_eq!(sim.phases(), [start("no-parking"), end("no-parking")]);
        let ended = &sim.events[1];
        assert_eq!(
            ended.ended_at,
            Some(parked_at + 10_000),
            "the incident ends when the van is judged stationary"
        );
        let tracks = sim.engine.tracks();
        assert_eq!(tracks.len(), 1);
        assert_eq!(tracks[0].id(), 1, "same van, same id, after the bus");
        assert!(tracks[0].is_stationary());
        // It drives off through the zone: moving again and inside, but it already alerted.
        for i in 1..=15 {
            sim.step(&[van(500.0 + 20.0 * i as f32, 300.0)]);
        }
        assert_eq!(sim.events.len(), 2, "{:#?}", &sim.events[2..]);
    }

    /// A horizontal line at y=200 from x=0 to x=600; side A is above it.
    const LINES: &str = r#"
        [[lines]]
        id = "path"
        start = [0, 200]
        end = [600, 200]
        direction = "either"
        [[lines]]
        id = "downwards"
        start = [0, 200]
        end = [600, 200]
        direction = "a_to_b"
    "#;

    #[test]
    fn line_crossings_are_counted_per_direction_and_filtered_by_direction() {
        let mut sim = Sim::new(LINES);
        // Person 1 walks down at x=100, person 2 walks up at x=400, 5 px per frame.
        for i in 0..20 {
            let d = 5.0 * i as f32;
            sim.step(&[person(100.0, 150.0 + d, 0.9), person(400.0, 250.0 - d, 0.9)]);
        }
        let path = sim.engine.line_counts("path").expect("line rule");
        assert_eq!((path.a_to_b, path.b_to_a), (1, 1));
        let down = sim.engine.line_counts("downwards").expect("line rule");
        assert_eq!(
            (down.a_to_b, down.b_to_a),
            (1, 1),
            "counts ignore the filter"
        );
        let alerts: Vec<(&str, Phase, Option<Crossing>, Option<TrackId>)> = sim
            .events
            .iter()
            .map(|e| (e.rule_id.as_str(), e.phase, e.direction, e.track_id))
            .collect();
        // Both cross between y=195 and y=205, in the same frame.
        assert_eq!(
            alerts,
            [
                ("path", Phase::Start, Some(Crossing::AToB), Some(1)),
                ("path", Phase::End, Some(Crossing::AToB), Some(1)),
                ("path", Phase::Start, Some(Crossing::BToA), Some(2)),
                ("path", Phase::End, Some(Crossing::BToA), Some(2)),
                ("downwards", Phase::Start, Some(Crossing::AToB), Some(1)),
                ("downwards", Phase::End, Some(Crossing::AToB), Some(1)),
            ]
        );
    }

    #[test]
    fn touching_the_line_and_going_back_is_not_a_crossing() {
        let mut sim = Sim::new(LINES);
        // Down to exactly y=200, then back up.
        let ys = (0..=10).map(|i| 150.0 + 5.0 * i as f32);
        for y in ys.clone().chain(ys.rev()) {
            sim.step(&[person(100.0, y, 0.9)]);
        }
        // Standing on the line with 1 px jitter (inside the 2 px dead band).
        for i in 0..30_u32 {
            sim.step(&[person(
                100.0,
                if i.is_multiple_of(2) { 199.0 } else { 201.0 },
                0.9,
            )]);
        }
        // Walking down past the line's right end at x=650.
        for i in 0..20 {
            sim.step(&[person(650.0, 150.0 + 5.0 * i as f32, 0.9)]);
        }
        assert!(sim.events.is_empty(), "{:#?}", sim.events);
        let c = sim.engine.line_counts("path").expect("line rule");
        assert_eq!((c.a_to_b, c.b_to_a), (0, 0));
    }

    #[test]
    fn stepping_onto_the_line_and_then_across_counts_once() {
        let mut sim = Sim::new(LINES);
        for y in [170.0, 180.0, 190.0, 200.0, 200.0, 201.0, 210.0, 220.0] {
            sim.step(&[person(100.0, y, 0.9)]);
        }
        let c = sim.engine.line_counts("path").expect("line rule");
        assert_eq!((c.a_to_b, c.b_to_a), (1, 0));
    }

    #[test]
    fn loitering_fires_only_after_the_duration() {
        let mut sim = Sim::new(
            r#"
            [[loiters]]
            id = "bench"
            polygon = [[200, 100], [400, 100], [400, 300], [200, 300]]
            min_duration_ms = 10000
            "#,
        );
        // Walks in (first inside at frame 2, x=202) and paces slowly inside for 15 s.
        let mut first_inside = None;
        for i in 0..80 {
            let x = if i < 10 {
                192.0 + 5.0 * i as f32
            } else {
                237.0 + [0.0, 3.0, 6.0, 3.0][i % 4]
            };
            if first_inside.is_none() && x > 200.0 {
                first_inside = Some(sim.now);
            }
            let ev = sim.step(&[person(x, 200.0, 0.9)]);
            let elapsed = sim.now - FRAME_MS - first_inside.unwrap_or(sim.now);
            if elapsed < 10_000 {
                assert!(ev.is_empty(), "fired after only {elapsed} ms");
            }
        }
        assert_eq!(sim.phases(), [start("bench")]);
        assert_eq!(
            Some(sim.events[0].timestamp),
            first_inside.map(|t| t + 10_000)
        );
        // Leaves.
        for i in 0..10 {
            sim.step(&[person(237.0 - 8.0 * i as f32, 200.0, 0.9)]);
        }
        assert_eq!(sim.phases(), [start("bench"), end("bench")]);
    }

    const CROWD: &str = r#"
        [[crowds]]
        id = "gathering"
        labels = ["person"]
        polygon = [[100, 100], [500, 100], [500, 400], [100, 400]]
        more_than = 2
        min_duration_ms = 5000
        cooldown_ms = 60000
    "#;

    /// People standing at x = 150, 250, 350, ... (feet at y=300), with 1 px jitter.
    fn group(n: usize, i: usize) -> Vec<Detection> {
        let j = if i.is_multiple_of(2) { 0.0 } else { 1.0 };
        (0..n)
            .map(|k| person(150.0 + 100.0 * k as f32 + j, 300.0, 0.9))
            .collect()
    }

    #[test]
    fn a_crowd_fires_when_more_than_n_stay_for_the_duration_and_ends_when_they_disperse() {
        let mut sim = Sim::new(CROWD);
        // Two people are not a crowd.
        for i in 0..100 {
            sim.step(&group(2, i));
        }
        assert!(sim.events.is_empty());
        // A third joins: confirmed and inside after 3 frames, then 5 s.
        let joined = sim.now;
        for i in 0..100 {
            sim.step(&group(3, i));
        }
        assert_eq!(sim.phases(), [start("gathering")]);
        let s = &sim.events[0];
        assert_eq!(s.timestamp, joined + 2 * FRAME_MS + 5_000);
        assert_eq!(s.count, Some(3));
        assert_eq!(s.track_id, None);
        assert_eq!(s.label.as_deref(), Some("person"));
        // Two walk away (their tracks are dropped); the incident ends.
        for i in 0..20 {
            sim.step(&group(1, i));
        }
        assert_eq!(sim.phases(), [start("gathering"), end("gathering")]);
    }

    #[test]
    fn cooldown_suppresses_a_second_crowd_start_until_it_has_passed() {
        let mut sim = Sim::new(CROWD);
        for i in 0..50 {
            sim.step(&group(3, i));
        }
        for i in 0..10 {
            sim.step(&group(2, i));
        }
        assert_eq!(sim.phases(), [start("gathering"), end("gathering")]);
        let ended_at = sim.events[1].ended_at.expect("end time");
        // They regather at once and stay; the crowd is back for well over 5 s, but only after
        // the 60 s cooldown may a new incident start.
        let mut restarted = None;
        for i in 0..400 {
            let ev = sim.step(&group(3, i));
            if ev.iter().any(|e| e.phase == Phase::Start) {
                restarted = Some(sim.now - FRAME_MS);
                break;
            }
        }
        assert_eq!(restarted, Some(ended_at + 60_000));
    }

    #[test]
    fn a_track_with_a_low_median_score_does_not_alert() {
        let mut sim = Sim::new(ZONE);
        // Detections at 0.4 pass min_score (0.3) and are tracked, but the median stays under
        // the zone's threshold (0.5).
        for i in 0..40 {
            sim.step(&[person(150.0 + 5.0 * i as f32, 200.0, 0.4)]);
        }
        assert!(sim.events.is_empty());
        assert_eq!(sim.engine.tracks().len(), 1, "tracked nonetheless");
    }

    #[test]
    fn one_low_score_in_three_does_not_stop_a_track_from_alerting() {
        let mut sim = Sim::new(ZONE);
        for i in 0..40_u32 {
            let score = if i.is_multiple_of(3) { 0.35 } else { 0.9 };
            sim.step(&[person(150.0 + 5.0 * i as f32, 200.0, score)]);
        }
        let starts_and_ends: Vec<_> = sim
            .phases()
            .into_iter()
            .filter(|(_, p)| *p != Phase::Update)
            .collect();
        assert_eq!(starts_and_ends, [start("cordon")]);
    }

    #[test]
    fn detections_below_min_score_are_not_even_tracked() {
        let mut sim = Sim::new(ZONE);
        for i in 0..40 {
            sim.step(&[person(150.0 + 5.0 * i as f32, 200.0, 0.2)]);
        }
        assert!(sim.events.is_empty());
        assert!(sim.engine.tracks().is_empty());
    }

    #[test]
    fn the_best_scoring_frame_of_an_incident_is_reported() {
        let mut sim = Sim::new(ZONE);
        let scores = [0.6, 0.6, 0.6, 0.6, 0.7, 0.95, 0.8, 0.6];
        for (i, s) in scores.iter().enumerate() {
            sim.step(&[person(250.0 + 4.0 * i as f32, 200.0, *s)]);
        }
        // Walks out of the right edge (x=400) at 8 px per frame.
        for i in 0..25 {
            sim.step(&[person(286.0 + 8.0 * i as f32, 200.0, 0.6)]);
        }
        let summary: Vec<(Phase, u64)> = sim
            .events
            .iter()
            .map(|e| (e.phase, e.best.frame_seq))
            .collect();
        // Start on frame 2; better frames 4 and 5 each send an update.
        assert_eq!(
            summary[..3],
            [(Phase::Start, 2), (Phase::Update, 4), (Phase::Update, 5)]
        );
        let last = sim.events.last().expect("events");
        assert_eq!(last.phase, Phase::End);
        assert_eq!(last.best.frame_seq, 5);
        assert_eq!(last.best.score, 0.95);
    }

    #[test]
    fn a_person_who_vanishes_inside_a_zone_ends_when_the_track_is_dropped() {
        let mut sim = Sim::new(ZONE);
        for i in 0..5 {
            sim.step(&[person(250.0 + 4.0 * i as f32, 200.0, 0.9)]);
        }
        let last_seen = sim.now - FRAME_MS;
        assert_eq!(sim.phases(), [start("cordon")]);
        // The default tracker keeps a track through 5 missed frames.
        for _ in 0..5 {
            assert!(sim.step(&[]).is_empty());
        }
        let ev = sim.step(&[]);
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].phase, Phase::End);
        assert_eq!(ev[0].ended_at, Some(last_seen));
    }

    const NIGHT_ZONE: &str = r#"
        [[zones]]
        id = "night"
        polygon = [[200, 100], [400, 100], [400, 300], [200, 300]]
        active_hours = ["20:00-06:00"]
    "#;

    /// Walks into the zone and stays there, for `frames` frames.
    fn walk_in_and_stay(sim: &mut Sim, frames: usize) {
        for i in 0..frames {
            let x = 190.0 + 5.0 * (i.min(10) as f32) + (i % 2) as f32;
            sim.step(&[person(x, 200.0, 0.9)]);
        }
    }

    #[test]
    fn a_night_rule_is_silent_at_noon() {
        let mut sim = Sim::at(NIGHT_ZONE, 12 * 3600);
        walk_in_and_stay(&mut sim, 100);
        assert!(sim.events.is_empty());
    }

    #[test]
    fn a_night_rule_fires_just_before_midnight_and_stays_open_past_it() {
        // 23:59:58.
        let mut sim = Sim::at(NIGHT_ZONE, 24 * 3600 - 2);
        walk_in_and_stay(&mut sim, 100);
        assert_eq!(sim.phases(), [start("night")]);
        assert_eq!(sim.engine.open_incidents(), 1, "still open at 00:00:18");
    }

    #[test]
    fn a_night_rule_ends_its_incident_when_the_window_closes_at_six() {
        // 05:59:55.
        let mut sim = Sim::at(NIGHT_ZONE, 6 * 3600 - 5);
        walk_in_and_stay(&mut sim, 100);
        assert_eq!(sim.phases(), [start("night"), end("night")]);
        let e = &sim.events[1];
        // The first frame at or after 06:00:00 is 5 s after the start.
        assert_eq!(e.frame_seq, 25);
    }

    #[test]
    fn a_person_already_inside_when_the_night_window_opens_alerts_at_once() {
        // 19:59:50.
        let mut sim = Sim::at(NIGHT_ZONE, 20 * 3600 - 10);
        walk_in_and_stay(&mut sim, 100);
        assert_eq!(sim.phases(), [start("night")]);
        assert_eq!(sim.events[0].frame_seq, 50, "first frame at 20:00:00");
    }

    #[test]
    fn config_validation_reports_every_problem_with_its_path() {
        let cfg = config(
            r#"
            min_score = 1.5
            [tracker]
            min_hits = 0
            [[zones]]
            id = "a"
            polygon = [[0, 0], [10, 10]]
            inertia_frames = 0
            active_hours = ["20:00-6:00"]
            [[lines]]
            id = "a"
            start = [5, 5]
            end = [5, 5]
            threshold = 2.0
            [[loiters]]
            id = ""
            polygon = [[0, 0], [10, 0], [20, 0]]
            min_duration_ms = -1
            [[crowds]]
            id = "ok-crowd"
            polygon = [[0, 0], [10, 0], [10, 10]]
            more_than = 3
            min_duration_ms = 0
            labels = [""]
            "#,
        );
        let errors = cfg.validate();
        assert_eq!(
            errors,
            [
                "min_score: must be within [0, 1], got 1.5",
                "tracker.min_hits: must be at least 1",
                "zones[0].active_hours[0]: \"20:00-6:00\" is not HH:MM-HH:MM (e.g. \"20:00-06:00\")",
                "zones[0].polygon: needs at least 3 points, got 2",
                "zones[0].inertia_frames: must be at least 1",
                "lines[0].id: \"a\" is already used by zones[0]",
                "lines[0].threshold: must be within [0, 1], got 2",
                "lines[0].end: must be at least 1 pixel away from start",
                "loiters[0].id: must not be empty",
                "loiters[0].polygon: encloses no area (all points on one line?)",
                "loiters[0].min_duration_ms: must not be negative, got -1",
                "crowds[0].labels[0]: must not be empty",
            ]
        );
        match Engine::new(&cfg) {
            Err(RulesError::InvalidConfig { errors: e }) => assert_eq!(e, errors),
            other => panic!("expected an invalid config, got {other:?}"),
        }
    }

    #[test]
    fn unknown_config_keys_are_rejected() {
        let err = toml::from_str::<EngineConfig>(
            r#"
            [[zones]]
            id = "a"
            polygon = [[0, 0], [10, 0], [10, 10]]
            intertia_frames = 3
            "#,
        )
        .expect_err("typo accepted");
        assert!(err.to_string().contains("intertia_frames"), "{err}");
    }

    #[test]
    fn the_documented_example_config_is_valid() {
        let cfg = config(
            r#"
            min_score = 0.3

            [[zones]]
            id = "cordon"
            severity = "major"
            labels = ["person"]
            polygon = [[100, 300], [400, 300], [400, 470], [100, 470]]
            inertia_frames = 3
            active_hours = ["20:00-06:00"]

            [[lines]]
            id = "path"
            start = [0, 250]
            end = [640, 250]
            direction = "either"

            [[loiters]]
            id = "bench"
            polygon = [[500, 300], [640, 300], [640, 480], [500, 480]]
            min_duration_ms = 60000

            [[crowds]]
            id = "square"
            polygon = [[0, 0], [640, 0], [640, 480], [0, 480]]
            more_than = 5
            min_duration_ms = 10000
            "#,
        );
        assert_eq!(cfg.validate(), Vec::<String>::new());
        assert!(Engine::new(&cfg).is_ok());
    }

    fn update(rule: &str) -> RuleUpdate {
        RuleUpdate {
            rule: rule.into(),
            ..RuleUpdate::default()
        }
    }

    #[test]
    fn a_lowered_threshold_lets_an_already_tracked_person_alert() {
        let mut sim = Sim::new(ZONE);
        // Median 0.4 is under the zone's threshold (0.5): inside, tracked, silent.
        for i in 0..20 {
            sim.step(&[person(250.0 + i as f32, 200.0, 0.4)]);
        }
        assert!(sim.events.is_empty());
        sim.engine
            .update_params(&RuleUpdate {
                threshold: Some(0.35),
                ..update("cordon")
            })
            .expect("valid update");
        let ev = sim.step(&[person(270.0, 200.0, 0.4)]);
        assert_eq!(sim.phases(), [start("cordon")], "alerts on the next frame");
        assert_eq!(
            ev[0].track_id,
            Some(1),
            "the same track: tracks were not reset"
        );
        assert_eq!(sim.engine.config().zones[0].threshold, 0.35);
    }

    #[test]
    fn a_new_severity_applies_to_new_incidents_while_the_open_one_keeps_its_own() {
        let mut sim = Sim::new(&format!(
            "{ZONE}
cooldown_ms = 0"
        ));
        for i in 0..5 {
            sim.step(&[person(250.0 + 4.0 * i as f32, 200.0, 0.9)]);
        }
        assert_eq!(sim.phases(), [start("cordon")]);
        sim.engine
            .update_params(&RuleUpdate {
                severity: Some(Severity::Critical),
                ..update("cordon")
            })
            .expect("valid update");
        assert_eq!(sim.engine.open_incidents(), 1, "the open incident survives");
        // The first person leaves (track dropped after 5 missed frames); a second comes in.
        for _ in 0..6 {
            sim.step(&[]);
        }
        for i in 0..5 {
            sim.step(&[person(250.0 + 4.0 * i as f32, 200.0, 0.9)]);
        }
        let summary: Vec<(Phase, Severity)> =
            sim.events.iter().map(|e| (e.phase, e.severity)).collect();
        assert_eq!(
            summary,
            [
                (Phase::Start, Severity::Major),
                (Phase::End, Severity::Major),
                (Phase::Start, Severity::Critical),
            ]
        );
    }

    #[test]
    fn a_shorter_cooldown_lets_a_crowd_restart_sooner() {
        let mut sim = Sim::new(CROWD);
        sim.engine
            .update_params(&RuleUpdate {
                cooldown_ms: Some(10_000),
                ..update("gathering")
            })
            .expect("valid update");
        for i in 0..50 {
            sim.step(&group(3, i));
        }
        for i in 0..10 {
            sim.step(&group(2, i));
        }
        let ended_at = sim.events[1].ended_at.expect("end time");
        let mut restarted = None;
        for i in 0..400 {
            if sim
                .step(&group(3, i))
                .iter()
                .any(|e| e.phase == Phase::Start)
            {
                restarted = Some(sim.now - FRAME_MS);
                break;
            }
        }
        assert_eq!(restarted, Some(ended_at + 10_000));
    }

    #[test]
    fn new_active_hours_wake_a_night_rule_at_noon() {
        let mut sim = Sim::at(NIGHT_ZONE, 12 * 3600);
        walk_in_and_stay(&mut sim, 50);
        assert!(sim.events.is_empty());
        sim.engine
            .update_params(&RuleUpdate {
                active_hours: Some(vec!["11:00-13:00".into()]),
                ..update("night")
            })
            .expect("valid update");
        // Still standing inside: the next frame alerts.
        sim.step(&[person(240.0, 200.0, 0.9)]);
        assert_eq!(sim.phases(), [start("night")]);
    }

    #[test]
    fn an_update_of_an_unknown_rule_is_refused() {
        let mut sim = Sim::new(ZONE);
        let err = sim
            .engine
            .update_params(&RuleUpdate {
                threshold: Some(0.6),
                ..update("nope")
            })
            .expect_err("unknown rule accepted");
        match err {
            RulesError::InvalidUpdate { rule, errors } => {
                assert_eq!(rule, "nope");
                assert_eq!(
                    errors,
                    ["rule: no rule has id \"nope\" (this camera has: cordon)"]
                );
            }
            other => panic!("{other}"),
        }
    }

    #[test]
    fn a_bad_update_is_refused_with_every_problem_and_changes_nothing() {
        let mut sim = Sim::new(ZONE);
        let before = sim.engine.config().clone();
        let err = sim
            .engine
            .update_params(&RuleUpdate {
                severity: Some(Severity::Critical),
                threshold: Some(1.5),
                cooldown_ms: Some(-1),
                active_hours: Some(vec!["8-9".into()]),
                ..update("cordon")
            })
            .expect_err("bad update accepted");
        match err {
            RulesError::InvalidUpdate { errors, .. } => assert_eq!(
                errors,
                [
                    "zones[0].threshold: must be within [0, 1], got 1.5",
                    "zones[0].active_hours[0]: \"8-9\" is not HH:MM-HH:MM (e.g. \"20:00-06:00\")",
                    "zones[0].cooldown_ms: must not be negative, got -1",
                ]
            ),
            other => panic!("{other}"),
        }
        assert_eq!(sim.engine.config(), &before);
        // Still the old severity (and threshold, and hours) in behaviour, not just in config.
        for i in 0..5 {
            sim.step(&[person(250.0 + 4.0 * i as f32, 200.0, 0.9)]);
        }
        assert_eq!(sim.phases(), [start("cordon")]);
        assert_eq!(sim.events[0].severity, Severity::Major);
    }

    #[test]
    fn the_config_update_reaches_every_rule_kind_and_merges_field_by_field() {
        let mut cfg = config(&format!("{ZONE}{LINES}{CROWD}"));
        cfg.apply_update(&RuleUpdate {
            severity: Some(Severity::Info),
            ..update("downwards")
        })
        .expect("line update");
        let mut merged = RuleUpdate {
            threshold: Some(0.7),
            cooldown_ms: Some(5),
            ..update("gathering")
        };
        merged.merge(&RuleUpdate {
            cooldown_ms: Some(9),
            active_hours: Some(vec![]),
            ..update("gathering")
        });
        cfg.apply_update(&merged).expect("crowd update");
        assert_eq!(cfg.lines[1].severity, Severity::Info);
        assert_eq!(
            cfg.lines[0].severity,
            Severity::default(),
            "only the named rule"
        );
        let crowd = &cfg.crowds[0];
        assert_eq!(
            (crowd.threshold, crowd.cooldown_ms, crowd.active_hours.len()),
            (0.7, 9, 0)
        );
        assert_eq!(cfg.rule_ids(), ["cordon", "path", "downwards", "gathering"]);
    }

    #[test]
    fn alert_events_serialise_with_snake_case_enums() {
        let mut sim = Sim::new(LINES);
        for i in 0..20 {
            sim.step(&[person(100.0, 150.0 + 5.0 * i as f32, 0.9)]);
        }
        let json = serde_json::to_value(&sim.events[0]).expect("serialises");
        assert_eq!(json["phase"], "start");
        assert_eq!(json["rule_kind"], "line");
        assert_eq!(json["direction"], "a_to_b");
        assert_eq!(json["severity"], "minor");
    }
}
