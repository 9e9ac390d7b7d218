//! Tracker configuration: typed fields, defaults in [`TrackerConfig::default`], unknown keys
//! rejected, and a [`TrackerConfig::validate`] that reports every problem at once.

use serde::Deserialize;

use super::Timestamp;

/// How the tracker matches, confirms, ages out and classifies tracks.
///
/// Every field has a default (see [`Default`]), so `[tracker]` may be omitted from a config.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrackerConfig {
    /// Minimum IoU between a track's last box and a detection for them to be the same object.
    /// At 5 fps a walking person's consecutive boxes overlap by about 0.5; lower it for fast
    /// objects or low frame rates.
    pub iou_threshold: f32,
    /// Matches needed before a track is confirmed and may take part in rules.
    pub min_hits: u32,
    /// A moving track that has not been matched for more than this many consecutive frames is
    /// dropped.
    pub max_missed_frames: u32,
    /// A moving track that has not been matched for longer than this is dropped (whichever of
    /// the frame and time limits comes first). The time limit matters when frames are skipped
    /// because inference was busy.
    pub max_age_ms: Timestamp,
    /// A *stationary* track is kept this long without a match, ignoring the limits above: a
    /// parked van hidden by a passing bus is still there, and if it came back under a new id it
    /// would be a new object to the rules and alert again.
    pub stationary_max_age_ms: Timestamp,
    /// Groups of labels that may match each other, e.g. `[["car", "truck", "bus"]]`. A track's
    /// label is the one it was matched with most often.
    pub label_groups: Vec<Vec<String>>,
    /// How many recent detection scores a track keeps for its median score.
    pub score_window: usize,
    /// How many recent bottom-centre points a track keeps.
    pub history_len: usize,
    /// When a track counts as stationary.
    pub stationary: StationaryConfig,
}

/// When a confirmed track counts as stationary (a parked vehicle), so rules can ignore it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StationaryConfig {
    /// Labels that can be stationary. People are not in the default list on purpose: someone
    /// standing still in a zone is exactly what a loitering rule is for. An empty list turns
    /// stationary marking off.
    pub labels: Vec<String>,
    /// The box centre must stay near one spot for at least this long.
    pub window_ms: Timestamp,
    /// "Near" means within this fraction of the box size (the square root of its area) of the
    /// spot, which makes the test independent of how far the object is from the camera.
    pub max_move_fraction: f32,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self {
            iou_threshold: 0.3,
            min_hits: 3,
            max_missed_frames: 5,
            max_age_ms: 2_000,
            stationary_max_age_ms: 60_000,
            label_groups: vec![
                vec!["car".into(), "truck".into(), "bus".into()],
                vec!["bicycle".into(), "motorcycle".into()],
            ],
            score_window: 10,
            history_len: 32,
            stationary: StationaryConfig::default(),
        }
    }
}

impl Default for StationaryConfig {
    fn default() -> Self {
        Self {
            labels: ["car", "truck", "bus", "motorcycle", "bicycle"]
                .map(String::from)
                .to_vec(),
            window_ms: 30_000,
            max_move_fraction: 0.1,
        }
    }
}

impl TrackerConfig {
    /// Every problem with this configuration, each prefixed with its field path (relative to
    /// the tracker table; callers prepend where the table sits, e.g. `tracker.`). Empty when
    /// the configuration is usable.
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if !(self.iou_threshold > 0.0 && self.iou_threshold <= 1.0) {
            errors.push(format!(
                "iou_threshold: must be within (0, 1], got {}",
                self.iou_threshold
            ));
        }
        if self.min_hits == 0 {
            errors.push("min_hits: must be at least 1".to_string());
        }
        for (field, v) in [
            ("max_age_ms", self.max_age_ms),
            ("stationary_max_age_ms", self.stationary_max_age_ms),
            ("stationary.window_ms", self.stationary.window_ms),
        ] {
            if v < 0 {
                errors.push(format!("{field}: must not be negative, got {v}"));
            }
        }
        if self.score_window == 0 {
            errors.push("score_window: must be at least 1".to_string());
        }
        if self.history_len < 2 {
            errors.push(format!(
                "history_len: must be at least 2 (a path needs two points), got {}",
                self.history_len
            ));
        }
        for (i, group) in self.label_groups.iter().enumerate() {
            if group.len() < 2 {
                errors.push(format!(
                    "label_groups[{i}]: a group needs at least 2 labels, got {}",
                    group.len()
                ));
            }
            for (j, label) in group.iter().enumerate() {
                if label.trim().is_empty() {
                    errors.push(format!("label_groups[{i}][{j}]: must not be empty"));
                }
                let elsewhere = self.label_groups[..i].iter().any(|g| g.contains(label));
                if elsewhere {
                    errors.push(format!(
                        "label_groups[{i}][{j}]: {label:?} is already in an earlier group; \
                         a label may be in one group only"
                    ));
                }
            }
        }
        for (j, label) in self.stationary.labels.iter().enumerate() {
            if label.trim().is_empty() {
                errors.push(format!("stationary.labels[{j}]: must not be empty"));
            }
        }
        let f = self.stationary.max_move_fraction;
        if !(f.is_finite() && f > 0.0) {
            errors.push(format!(
                "stationary.max_move_fraction: must be a positive number, got {f}"
            ));
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_config_is_valid() {
        assert_eq!(TrackerConfig::default().validate(), Vec::<String>::new());
    }

    #[test]
    fn validation_lists_every_problem_with_its_path() {
        let c = TrackerConfig {
            iou_threshold: 0.0,
            min_hits: 0,
            max_age_ms: -1,
            history_len: 1,
            label_groups: vec![vec!["car".into()], vec!["car".into(), "bus".into()]],
            ..TrackerConfig::default()
        };
        let errors = c.validate();
        for path in [
            "iou_threshold:",
            "min_hits:",
            "max_age_ms:",
            "history_len:",
            "label_groups[0]:",
            "label_groups[1][0]:",
        ] {
            assert!(
                errors.iter().any(|e| e.starts_with(path)),
                "no error for {path} in {errors:#?}"
            );
        }
        assert_eq!(errors.len(), 6, "{errors:#?}");
    }
}
