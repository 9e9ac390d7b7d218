//! Rule configuration of one camera: plain serde structs, unknown keys rejected, defaults in
//! [`defaults`], and a compile step that reports every problem at once with its path.
//!
//! Coordinates are frame pixels (see [`super::geometry`]); durations are milliseconds; times of
//! day are `"HH:MM-HH:MM"` local wall-clock windows, which may wrap over midnight.
//!
//! Example (TOML, as a camera's table):
//! ```toml
//! min_score = 0.3
//!
//! [[zones]]
//! id = "cordon"
//! severity = "major"
//! labels = ["person"]
//! polygon = [[100, 300], [400, 300], [400, 470], [100, 470]]
//! inertia_frames = 3
//! active_hours = ["20:00-06:00"]
//!
//! [[lines]]
//! id = "path"
//! start = [0, 250]
//! end = [640, 250]
//! direction = "either"
//!
//! [[loiters]]
//! id = "bench"
//! polygon = [[500, 300], [640, 300], [640, 480], [500, 480]]
//! min_duration_ms = 60000
//!
//! [[crowds]]
//! id = "square"
//! polygon = [[0, 0], [640, 0], [640, 480], [0, 480]]
//! more_than = 5
//! min_duration_ms = 10000
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;

use super::RuleFilter;
use super::crowd::CrowdRule;
use super::engine::{CompiledRule, Rule};
use super::geometry::{Line, Point, Polygon, polygon_problems};
use super::lifecycle::{RuleKind, RuleMeta, Severity};
use super::line::LineRule;
use super::loiter::LoiterRule;
use super::schedule::{ActiveHours, TimeWindow};
use super::zone::{ZoneArea, ZoneRule};
use crate::track::{Timestamp, TrackerConfig};

/// Every default of the rule configuration, in one place.
pub mod defaults {
    use crate::track::Timestamp;

    /// Detections below this score are dropped before tracking.
    pub fn min_score() -> f32 {
        0.3
    }
    /// A track's median score must reach this before it may alert.
    pub fn threshold() -> f32 {
        0.5
    }
    /// One minute between incidents of the same key.
    pub fn cooldown_ms() -> Timestamp {
        60_000
    }
    /// Three frames (0.6 s at 5 fps) in or out before a zone changes its mind.
    pub fn inertia_frames() -> u32 {
        3
    }
    /// Bottom-centre points within 2 px of a line are on it, not across it, so a person
    /// standing on the line with detector jitter is not counted back and forth.
    pub fn dead_band_px() -> f32 {
        2.0
    }
}

/// The rules of one camera, and how its detections are tracked.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    /// First stage of the score filter: detections scoring below this are dropped before
    /// tracking, so they neither create nor extend tracks.
    #[serde(default = "defaults::min_score")]
    pub min_score: f32,
    /// How detections are tracked.
    #[serde(default)]
    pub tracker: TrackerConfig,
    /// "Entered zone" rules.
    #[serde(default)]
    pub zones: Vec<ZoneRuleConfig>,
    /// Line-crossing rules.
    #[serde(default)]
    pub lines: Vec<LineRuleConfig>,
    /// Loitering rules.
    #[serde(default)]
    pub loiters: Vec<LoiterRuleConfig>,
    /// Crowd rules.
    #[serde(default)]
    pub crowds: Vec<CrowdRuleConfig>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            min_score: defaults::min_score(),
            tracker: TrackerConfig::default(),
            zones: Vec::new(),
            lines: Vec::new(),
            loiters: Vec::new(),
            crowds: Vec::new(),
        }
    }
}

/// Fires when an object enters a polygon zone: its box's bottom-centre has been inside for
/// `inertia_frames` consecutive detections. The incident ends when it has been outside as long,
/// when the track is lost, or when the object becomes stationary.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneRuleConfig {
    /// Unique among all rules of the camera; reported with every alert.
    pub id: String,
    /// Severity of its alerts.
    #[serde(default)]
    pub severity: Severity,
    /// Labels the rule applies to; empty means every label.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Second stage of the score filter: a track's median recent score must reach this before
    /// it may alert.
    #[serde(default = "defaults::threshold")]
    pub threshold: f32,
    /// Local time-of-day windows (`"HH:MM-HH:MM"`) in which the rule applies; empty means
    /// always.
    #[serde(default)]
    pub active_hours: Vec<String>,
    /// No new incident for the same key within this long after one ends.
    #[serde(default = "defaults::cooldown_ms")]
    pub cooldown_ms: Timestamp,
    /// The zone, at least 3 `[x, y]` frame-pixel points.
    pub polygon: Vec<[f32; 2]>,
    /// Boxes smaller than this (square pixels) do not count as inside: far-away or partial
    /// detections are where false positives live.
    #[serde(default)]
    pub min_area: f32,
    /// Consecutive detections inside (or outside) before the object counts as inside (or
    /// outside).
    #[serde(default = "defaults::inertia_frames")]
    pub inertia_frames: u32,
}

/// Which crossings of a line alert.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineDirection {
    /// From side A to side B only (see [`super::geometry::Side`]).
    AToB,
    /// From side B to side A only.
    BToA,
    /// Both directions.
    #[default]
    Either,
}

/// Fires when a track's bottom-centre crosses the segment `start`-`end` between two of its
/// detections. Crossings are counted per direction whatever `direction` says; `direction` only
/// chooses which ones alert.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineRuleConfig {
    /// Unique among all rules of the camera; reported with every alert.
    pub id: String,
    /// Severity of its alerts.
    #[serde(default)]
    pub severity: Severity,
    /// Labels the rule applies to; empty means every label.
    #[serde(default)]
    pub labels: Vec<String>,
    /// A track's median recent score must reach this before it may alert or be counted.
    #[serde(default = "defaults::threshold")]
    pub threshold: f32,
    /// Local time-of-day windows in which the rule applies; empty means always.
    #[serde(default)]
    pub active_hours: Vec<String>,
    /// No new incident for the same key within this long after one ends.
    #[serde(default = "defaults::cooldown_ms")]
    pub cooldown_ms: Timestamp,
    /// One end of the line, `[x, y]` frame pixels. Side A is on the left looking from `start`
    /// to `end` on screen.
    pub start: [f32; 2],
    /// The other end.
    pub end: [f32; 2],
    /// Which crossings alert.
    #[serde(default)]
    pub direction: LineDirection,
    /// Points closer than this to the line are on neither side.
    #[serde(default = "defaults::dead_band_px")]
    pub dead_band_px: f32,
}

/// Fires when an object has been inside a zone continuously for `min_duration_ms`, counted from
/// the first detection of the run of `inertia_frames` that put it inside.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoiterRuleConfig {
    /// Unique among all rules of the camera; reported with every alert.
    pub id: String,
    /// Severity of its alerts.
    #[serde(default)]
    pub severity: Severity,
    /// Labels the rule applies to; empty means every label.
    #[serde(default)]
    pub labels: Vec<String>,
    /// A track's median recent score must reach this before it may alert.
    #[serde(default = "defaults::threshold")]
    pub threshold: f32,
    /// Local time-of-day windows in which the rule applies; empty means always.
    #[serde(default)]
    pub active_hours: Vec<String>,
    /// No new incident for the same key within this long after one ends.
    #[serde(default = "defaults::cooldown_ms")]
    pub cooldown_ms: Timestamp,
    /// The zone, at least 3 `[x, y]` frame-pixel points.
    pub polygon: Vec<[f32; 2]>,
    /// Boxes smaller than this (square pixels) do not count as inside.
    #[serde(default)]
    pub min_area: f32,
    /// Consecutive detections inside (or outside) before the object counts as inside (or
    /// outside); brief steps out do not restart the clock.
    #[serde(default = "defaults::inertia_frames")]
    pub inertia_frames: u32,
    /// How long an object must stay inside.
    pub min_duration_ms: Timestamp,
}

/// Fires when more than `more_than` objects are inside a zone for at least `min_duration_ms`;
/// one incident per zone, ending when the count drops to `more_than` or below.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrowdRuleConfig {
    /// Unique among all rules of the camera; reported with every alert.
    pub id: String,
    /// Severity of its alerts.
    #[serde(default)]
    pub severity: Severity,
    /// Labels that count; empty means every label.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Only tracks whose median recent score reaches this are counted.
    #[serde(default = "defaults::threshold")]
    pub threshold: f32,
    /// Local time-of-day windows in which the rule applies; empty means always.
    #[serde(default)]
    pub active_hours: Vec<String>,
    /// No new incident within this long after one ends.
    #[serde(default = "defaults::cooldown_ms")]
    pub cooldown_ms: Timestamp,
    /// The zone, at least 3 `[x, y]` frame-pixel points.
    pub polygon: Vec<[f32; 2]>,
    /// Boxes smaller than this (square pixels) do not count.
    #[serde(default)]
    pub min_area: f32,
    /// Consecutive detections inside (or outside) before an object counts as inside (or
    /// outside).
    #[serde(default = "defaults::inertia_frames")]
    pub inertia_frames: u32,
    /// The rule fires when the count is greater than this.
    pub more_than: u32,
    /// How long the count must stay above `more_than`.
    pub min_duration_ms: Timestamp,
}

/// A change to the parameters every rule has (severity, threshold, cooldown, active hours), of
/// one rule named by id; e.g. from a hub command. `None` leaves a field as it is. The rule's
/// shape (polygon, line, labels, durations) is not changeable this way: changing it would
/// invalidate the rule's per-track state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuleUpdate {
    /// Id of the rule to change.
    pub rule: String,
    /// New severity of its alerts.
    pub severity: Option<Severity>,
    /// New second-stage score threshold.
    pub threshold: Option<f32>,
    /// New cooldown after an incident ends.
    pub cooldown_ms: Option<Timestamp>,
    /// New local time-of-day windows; an empty list means always.
    pub active_hours: Option<Vec<String>>,
}

impl RuleUpdate {
    /// Whether it sets no field at all.
    pub fn is_empty(&self) -> bool {
        self.severity.is_none()
            && self.threshold.is_none()
            && self.cooldown_ms.is_none()
            && self.active_hours.is_none()
    }

    /// Folds a later update of the same rule into this one, field by field: what `later` sets
    /// wins, what it leaves out stays. Applying the merged update equals applying both in turn.
    pub fn merge(&mut self, later: &RuleUpdate) {
        if later.severity.is_some() {
            self.severity = later.severity;
        }
        if later.threshold.is_some() {
            self.threshold = later.threshold;
        }
        if later.cooldown_ms.is_some() {
            self.cooldown_ms = later.cooldown_ms;
        }
        if later.active_hours.is_some() {
            self.active_hours.clone_from(&later.active_hours);
        }
    }
}

/// The common parameters of one rule config, borrowed mutably.
#[derive(Debug)]
struct CommonMut<'a> {
    severity: &'a mut Severity,
    threshold: &'a mut f32,
    cooldown_ms: &'a mut Timestamp,
    active_hours: &'a mut Vec<String>,
}

/// Borrows the updatable fields of any rule config. Every rule kind has all of them; a kind
/// that lacked one would not compile here, which is where refusing such updates would go.
macro_rules! common_mut {
    ($c:expr) => {
        CommonMut {
            severity: &mut $c.severity,
            threshold: &mut $c.threshold,
            cooldown_ms: &mut $c.cooldown_ms,
            active_hours: &mut $c.active_hours,
        }
    };
}

impl EngineConfig {
    /// Applies `update` to the rule it names, validated exactly as the whole configuration is
    /// ([`Self::validate`]). On refusal, returns every problem (with paths such as
    /// `zones[0].threshold`) and leaves `self` unchanged.
    pub fn apply_update(&mut self, update: &RuleUpdate) -> Result<(), Vec<String>> {
        let (updated, _) = self.updated(update)?;
        *self = updated;
        Ok(())
    }

    /// This configuration with `update` applied, and the rules compiled from it; the one place
    /// that knows which field of which rule an update changes. The engine takes the compiled
    /// rules' parameters from here so that it cannot disagree with the config.
    pub(super) fn updated(
        &self,
        update: &RuleUpdate,
    ) -> Result<(EngineConfig, Vec<CompiledRule>), Vec<String>> {
        let mut next = self.clone();
        let Some(common) = next.common_mut(&update.rule) else {
            return Err(vec![format!(
                "rule: no rule has id {:?} (this camera has: {})",
                update.rule,
                self.rule_ids().join(", ")
            )]);
        };
        if let Some(severity) = update.severity {
            *common.severity = severity;
        }
        if let Some(threshold) = update.threshold {
            *common.threshold = threshold;
        }
        if let Some(cooldown_ms) = update.cooldown_ms {
            *common.cooldown_ms = cooldown_ms;
        }
        if let Some(hours) = &update.active_hours {
            common.active_hours.clone_from(hours);
        }
        let rules = next.compile()?;
        Ok((next, rules))
    }

    /// Ids of every rule, in config order (zones, lines, loiters, crowds).
    pub fn rule_ids(&self) -> Vec<&str> {
        let zones = self.zones.iter().map(|c| c.id.as_str());
        let lines = self.lines.iter().map(|c| c.id.as_str());
        let loiters = self.loiters.iter().map(|c| c.id.as_str());
        let crowds = self.crowds.iter().map(|c| c.id.as_str());
        zones.chain(lines).chain(loiters).chain(crowds).collect()
    }

    /// The updatable fields of the first rule with this id (ids are unique in a valid config).
    fn common_mut(&mut self, id: &str) -> Option<CommonMut<'_>> {
        if let Some(c) = self.zones.iter_mut().find(|c| c.id == id) {
            return Some(common_mut!(c));
        }
        if let Some(c) = self.lines.iter_mut().find(|c| c.id == id) {
            return Some(common_mut!(c));
        }
        if let Some(c) = self.loiters.iter_mut().find(|c| c.id == id) {
            return Some(common_mut!(c));
        }
        self.crowds
            .iter_mut()
            .find(|c| c.id == id)
            .map(|c| common_mut!(c))
    }

    /// Every problem with this configuration, each with its path relative to this table
    /// (`zones[0].polygon: needs at least 3 points`; a caller embedding the table prepends its
    /// own path, e.g. `cameras[2].`). Empty when the configuration is usable.
    pub fn validate(&self) -> Vec<String> {
        match self.compile() {
            Ok(_) => Vec::new(),
            Err(errors) => errors,
        }
    }

    /// Checks everything and builds the rules, or returns every problem. One pass does both,
    /// so what is validated is exactly what is built.
    pub(super) fn compile(&self) -> Result<Vec<CompiledRule>, Vec<String>> {
        let mut errors = Vec::new();
        if !(0.0..=1.0).contains(&self.min_score) {
            errors.push(format!(
                "min_score: must be within [0, 1], got {}",
                self.min_score
            ));
        }
        errors.extend(
            self.tracker
                .validate()
                .into_iter()
                .map(|e| format!("tracker.{e}")),
        );
        // Rule id -> path of the rule that first used it.
        let mut ids = BTreeMap::new();
        let mut rules = Vec::new();

        for (i, c) in self.zones.iter().enumerate() {
            let mut p = Problems::new(&mut errors, format!("zones[{i}]"));
            let common = check_common(&mut p, &mut ids, common!(c));
            check_zone_shape(&mut p, &c.polygon, c.min_area, c.inertia_frames);
            if p.clean() {
                let rule = Rule::Zone(ZoneRule {
                    meta: common.meta(rules.len(), &c.id, RuleKind::Zone),
                    filter: common.filter,
                    area: ZoneArea::new(polygon(&c.polygon), c.min_area, c.inertia_frames),
                });
                rules.push(CompiledRule {
                    rule,
                    hours: common.hours,
                });
            }
        }
        for (i, c) in self.lines.iter().enumerate() {
            let mut p = Problems::new(&mut errors, format!("lines[{i}]"));
            let common = check_common(&mut p, &mut ids, common!(c));
            let ends = [("start", c.start), ("end", c.end)];
            for (field, v) in ends {
                if !v.iter().all(|x| x.is_finite()) {
                    p.add(field, "must be finite numbers");
                }
            }
            if (c.start[0] - c.end[0]).hypot(c.start[1] - c.end[1]) < 1.0 {
                p.add("end", "must be at least 1 pixel away from start");
            }
            if !(c.dead_band_px.is_finite() && c.dead_band_px >= 0.0) {
                p.add(
                    "dead_band_px",
                    format_args!("must be a number >= 0, got {}", c.dead_band_px),
                );
            }
            if p.clean() {
                let line = Line {
                    start: c.start.into(),
                    end: c.end.into(),
                };
                let rule = Rule::Line(LineRule::new(
                    common.meta(rules.len(), &c.id, RuleKind::Line),
                    common.filter,
                    line,
                    c.direction,
                    c.dead_band_px,
                ));
                rules.push(CompiledRule {
                    rule,
                    hours: common.hours,
                });
            }
        }
        for (i, c) in self.loiters.iter().enumerate() {
            let mut p = Problems::new(&mut errors, format!("loiters[{i}]"));
            let common = check_common(&mut p, &mut ids, common!(c));
            check_zone_shape(&mut p, &c.polygon, c.min_area, c.inertia_frames);
            check_duration(&mut p, "min_duration_ms", c.min_duration_ms);
            if p.clean() {
                let rule = Rule::Loiter(LoiterRule {
                    meta: common.meta(rules.len(), &c.id, RuleKind::Loiter),
                    filter: common.filter,
                    area: ZoneArea::new(polygon(&c.polygon), c.min_area, c.inertia_frames),
                    min_duration_ms: c.min_duration_ms,
                });
                rules.push(CompiledRule {
                    rule,
                    hours: common.hours,
                });
            }
        }
        for (i, c) in self.crowds.iter().enumerate() {
            let mut p = Problems::new(&mut errors, format!("crowds[{i}]"));
            let common = check_common(&mut p, &mut ids, common!(c));
            check_zone_shape(&mut p, &c.polygon, c.min_area, c.inertia_frames);
            check_duration(&mut p, "min_duration_ms", c.min_duration_ms);
            if p.clean() {
                let rule = Rule::Crowd(CrowdRule {
                    meta: common.meta(rules.len(), &c.id, RuleKind::Crowd),
                    filter: common.filter,
                    area: ZoneArea::new(polygon(&c.polygon), c.min_area, c.inertia_frames),
                    more_than: c.more_than,
                    min_duration_ms: c.min_duration_ms,
                    above_since: None,
                });
                rules.push(CompiledRule {
                    rule,
                    hours: common.hours,
                });
            }
        }

        if errors.is_empty() {
            Ok(rules)
        } else {
            Err(errors)
        }
    }
}

fn polygon(points: &[[f32; 2]]) -> Polygon {
    Polygon::new(points.iter().copied().map(Point::from).collect())
}

/// The fields every rule config has, borrowed.
#[derive(Debug, Clone, Copy)]
struct CommonFields<'a> {
    id: &'a str,
    severity: Severity,
    labels: &'a [String],
    threshold: f32,
    active_hours: &'a [String],
    cooldown_ms: Timestamp,
}

/// Borrows the common fields of any rule config (they have the same names in all of them).
macro_rules! common {
    ($c:expr) => {
        CommonFields {
            id: &$c.id,
            severity: $c.severity,
            labels: &$c.labels,
            threshold: $c.threshold,
            active_hours: &$c.active_hours,
            cooldown_ms: $c.cooldown_ms,
        }
    };
}
use common;

/// The common fields, converted (meaningful only if they had no problems).
#[derive(Debug, Clone)]
struct CommonChecked {
    severity: Severity,
    filter: RuleFilter,
    hours: ActiveHours,
    cooldown_ms: Timestamp,
}

impl CommonChecked {
    fn meta(&self, index: usize, id: &str, kind: RuleKind) -> RuleMeta {
        RuleMeta {
            index,
            id: id.to_string(),
            kind,
            severity: self.severity,
            cooldown_ms: self.cooldown_ms,
        }
    }
}

/// Collects one rule's problems under its path.
#[derive(Debug)]
struct Problems<'a> {
    errors: &'a mut Vec<String>,
    path: String,
    start: usize,
}

impl<'a> Problems<'a> {
    fn new(errors: &'a mut Vec<String>, path: String) -> Self {
        let start = errors.len();
        Self {
            errors,
            path,
            start,
        }
    }

    fn add(&mut self, field: &str, message: impl std::fmt::Display) {
        self.errors
            .push(format!("{}.{field}: {message}", self.path));
    }

    /// Whether this rule has had no problems so far.
    fn clean(&self) -> bool {
        self.errors.len() == self.start
    }
}

fn check_common(
    p: &mut Problems<'_>,
    ids: &mut BTreeMap<String, String>,
    c: CommonFields<'_>,
) -> CommonChecked {
    if c.id.trim().is_empty() {
        p.add("id", "must not be empty");
    } else if let Some(first) = ids.get(c.id) {
        p.add("id", format_args!("{:?} is already used by {first}", c.id));
    } else {
        ids.insert(c.id.to_string(), p.path.clone());
    }
    for (i, label) in c.labels.iter().enumerate() {
        if label.trim().is_empty() {
            p.add(&format!("labels[{i}]"), "must not be empty");
        }
    }
    if !(0.0..=1.0).contains(&c.threshold) {
        p.add(
            "threshold",
            format_args!("must be within [0, 1], got {}", c.threshold),
        );
    }
    let mut windows = Vec::new();
    for (i, s) in c.active_hours.iter().enumerate() {
        match TimeWindow::parse(s) {
            Ok(w) => windows.push(w),
            Err(e) => p.add(&format!("active_hours[{i}]"), e),
        }
    }
    if c.cooldown_ms < 0 {
        p.add(
            "cooldown_ms",
            format_args!("must not be negative, got {}", c.cooldown_ms),
        );
    }
    CommonChecked {
        severity: c.severity,
        filter: RuleFilter::new(c.labels.to_vec(), c.threshold),
        hours: ActiveHours::new(windows),
        cooldown_ms: c.cooldown_ms,
    }
}

fn check_zone_shape(p: &mut Problems<'_>, polygon: &[[f32; 2]], min_area: f32, inertia: u32) {
    for problem in polygon_problems(polygon) {
        p.add("polygon", problem);
    }
    if !(min_area.is_finite() && min_area >= 0.0) {
        p.add(
            "min_area",
            format_args!("must be a number >= 0, got {min_area}"),
        );
    }
    if inertia == 0 {
        p.add("inertia_frames", "must be at least 1");
    }
}

fn check_duration(p: &mut Problems<'_>, field: &str, ms: Timestamp) {
    if ms < 0 {
        p.add(field, format_args!("must not be negative, got {ms}"));
    }
}
