//! [`Overrides`]: what the hub has changed on this box, as the latest state per key, and how it
//! is laid over the configuration file at start-up.
//!
//! The configuration file stays the operator's; hub changes live beside it (in the
//! [`super::CommandStore`]) and win over it. A key is a watchlisted tag, a paired bike (its
//! pairing, and separately its arm state when the last word on it was an arm command), or a
//! (camera, rule) pair whose parameters are merged field by field. So the overrides are bounded
//! by the number of distinct keys ever changed, not by the number of commands.

use std::collections::BTreeMap;

use protocol::CommandBody;

use crate::rules::{EngineConfig, RuleUpdate};
use crate::tags::config::{pairing_problems, watch_entry_problems};
use crate::tags::read::normalize_tag;
use crate::tags::{Pairing, TagConfig, WatchEntry};

/// The latest hub change per key. Tag ids are normalised (upper-case hex).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    watchlist: BTreeMap<String, Option<WatchEntry>>,
    pairings: BTreeMap<String, Option<Pairing>>,
    armed: BTreeMap<String, bool>,
    rules: BTreeMap<(String, String), RuleUpdate>,
}

/// One key of the overrides with its new content: the unit the store writes.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Change {
    /// `None`: the tag was taken off the watchlist.
    Watch {
        tag: String,
        entry: Option<WatchEntry>,
    },
    /// `None`: the bike's pairing was removed.
    Pair {
        bike: String,
        pairing: Option<Pairing>,
    },
    /// `None` drops the arm override: a pairing command since carries its own arm state.
    Arm { bike: String, armed: Option<bool> },
    /// The merged parameters of one rule.
    Rule { camera: String, update: RuleUpdate },
}

impl Overrides {
    /// Watchlisted tag → its entry, or `None` if the hub removed it.
    pub fn watchlist(&self) -> &BTreeMap<String, Option<WatchEntry>> {
        &self.watchlist
    }

    /// Bike tag → its pairing, or `None` if the hub removed it.
    pub fn pairings(&self) -> &BTreeMap<String, Option<Pairing>> {
        &self.pairings
    }

    /// Bike tag → armed, for bikes whose last command was an arm command on a pairing the hub
    /// did not set (one from the configuration file).
    pub fn armed(&self) -> &BTreeMap<String, bool> {
        &self.armed
    }

    /// (camera, rule) → the parameters the hub set, merged over all its commands.
    pub fn rules(&self) -> &BTreeMap<(String, String), RuleUpdate> {
        &self.rules
    }

    /// Number of keys overridden.
    pub fn len(&self) -> usize {
        self.watchlist.len() + self.pairings.len() + self.armed.len() + self.rules.len()
    }

    /// Whether the hub has changed nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The keys `body` changes and their new content, or why it cannot be recorded (a tag id
    /// that is not one; the gate refuses those before they get here).
    pub(super) fn changes(&self, body: &CommandBody) -> Result<Vec<Change>, String> {
        let tag = |field: &str, t: &str| normalize_tag(t).map_err(|e| format!("{field}: {e}"));
        let changes = match body {
            CommandBody::WatchAdd {
                tag: t,
                case_ref,
                note,
            } => {
                let tag = tag("tag", t)?;
                let entry = WatchEntry {
                    tag: tag.clone(),
                    case_ref: case_ref.clone(),
                    note: note.clone(),
                };
                vec![Change::Watch {
                    tag,
                    entry: Some(entry),
                }]
            }
            CommandBody::WatchRemove { tag: t } => vec![Change::Watch {
                tag: tag("tag", t)?,
                entry: None,
            }],
            CommandBody::PairSet { bike, keys, armed } => {
                let bike = tag("bike", bike)?;
                let keys = keys
                    .iter()
                    .enumerate()
                    .map(|(i, k)| tag(&format!("keys[{i}]"), k))
                    .collect::<Result<_, _>>()?;
                let pairing = Pairing {
                    bike: bike.clone(),
                    keys,
                    armed: *armed,
                };
                vec![
                    Change::Pair {
                        bike: bike.clone(),
                        pairing: Some(pairing),
                    },
                    Change::Arm { bike, armed: None },
                ]
            }
            CommandBody::PairRemove { bike } => {
                let bike = tag("bike", bike)?;
                vec![
                    Change::Pair {
                        bike: bike.clone(),
                        pairing: None,
                    },
                    Change::Arm { bike, armed: None },
                ]
            }
            CommandBody::PairArm { bike, armed } => {
                let bike = tag("bike", bike)?;
                // A pairing the hub set carries the arm state itself: one key, not two.
                match self.pairings.get(&bike) {
                    Some(Some(p)) => vec![Change::Pair {
                        bike,
                        pairing: Some(Pairing {
                            armed: *armed,
                            ..p.clone()
                        }),
                    }],
                    _ => vec![Change::Arm {
                        bike,
                        armed: Some(*armed),
                    }],
                }
            }
            CommandBody::RuleParams(params) => {
                let (camera, update) = super::rule_update(params);
                let key = (camera.clone(), update.rule.clone());
                let mut merged = self.rules.get(&key).cloned().unwrap_or_default();
                merged.rule.clone_from(&update.rule);
                merged.merge(&update);
                vec![Change::Rule {
                    camera,
                    update: merged,
                }]
            }
        };
        Ok(changes)
    }

    /// Takes one change in.
    pub(super) fn commit(&mut self, change: Change) {
        match change {
            Change::Watch { tag, entry } => {
                self.watchlist.insert(tag, entry);
            }
            Change::Pair { bike, pairing } => {
                self.pairings.insert(bike, pairing);
            }
            Change::Arm {
                bike,
                armed: Some(armed),
            } => {
                self.armed.insert(bike, armed);
            }
            Change::Arm { bike, armed: None } => {
                self.armed.remove(&bike);
            }
            Change::Rule { camera, update } => {
                self.rules.insert((camera, update.rule.clone()), update);
            }
        }
    }

    /// Lays the hub's changes over the parts of a loaded configuration they change, before
    /// the agent is built from it: `tag_rules` (with `tag_rules_file` already read into it, as
    /// `AgentConfig::load` does) and each camera's rules, given as (camera id, rules) in the
    /// file's order. Watchlist entries and pairings are added, replaced or removed in
    /// `tag_rules`, arm states set, and rule parameters applied with
    /// [`EngineConfig::apply_update`] on their camera. The parts are passed rather than the
    /// whole configuration so that this module does not depend on the agent that owns it.
    ///
    /// An override that no longer applies (its camera or rule is gone from the file, its bike
    /// no longer paired, or it fails validation) is skipped and described in the returned
    /// warnings, so that an edited configuration file never stops the box from starting.
    pub fn apply_to<'a>(
        &self,
        tag_rules: &mut Option<TagConfig>,
        camera_rules: impl IntoIterator<Item = (&'a str, &'a mut EngineConfig)>,
    ) -> Vec<String> {
        let mut warnings = Vec::new();
        if !(self.watchlist.is_empty() && self.pairings.is_empty() && self.armed.is_empty()) {
            let tags = tag_rules.get_or_insert_with(TagConfig::default);
            self.apply_to_tags(tags, &mut warnings);
        }
        let mut cameras: Vec<(&str, &mut EngineConfig)> = camera_rules.into_iter().collect();
        for ((camera, rule), update) in &self.rules {
            let Some((_, rules)) = cameras.iter_mut().find(|(id, _)| *id == camera) else {
                warnings.push(format!(
                    "rule parameters of {camera}/{rule}: no camera {camera:?} any more; ignored"
                ));
                continue;
            };
            if let Err(errors) = rules.apply_update(update) {
                warnings.push(format!(
                    "rule parameters of {camera}/{rule}: no longer apply ({}); ignored",
                    errors.join("; ")
                ));
            }
        }
        warnings
    }

    fn apply_to_tags(&self, tags: &mut TagConfig, warnings: &mut Vec<String>) {
        let same = |id: &str, key: &str| normalize_tag(id).is_ok_and(|t| t == key);
        for (tag, entry) in &self.watchlist {
            if let Some(entry) = entry {
                let problems = watch_entry_problems(entry);
                if !problems.is_empty() {
                    warnings.push(format!(
                        "watchlist entry {tag}: {}; ignored",
                        join_problems(&problems)
                    ));
                    continue;
                }
            }
            // Remove-then-push replaces an entry however its tag was spelt in the file.
            tags.watchlist.tags.retain(|e| !same(&e.tag, tag));
            tags.watchlist.tags.extend(entry.clone());
        }
        for (bike, pairing) in &self.pairings {
            if let Some(pairing) = pairing {
                let problems = pairing_problems(pairing);
                if !problems.is_empty() {
                    warnings.push(format!(
                        "pairing of bike {bike}: {}; ignored",
                        join_problems(&problems)
                    ));
                    continue;
                }
            }
            tags.theft.pairings.retain(|p| !same(&p.bike, bike));
            tags.theft.pairings.extend(pairing.clone());
        }
        // After the pairings: an arm override exists only when it is newer than any pairing
        // command for the bike.
        for (bike, &armed) in &self.armed {
            match tags.theft.pairings.iter_mut().find(|p| same(&p.bike, bike)) {
                Some(p) => p.armed = armed,
                None => warnings.push(format!(
                    "arm state of bike {bike}: the bike is no longer paired; ignored"
                )),
            }
        }
    }
}

fn join_problems(problems: &[(String, String)]) -> String {
    let all: Vec<String> = problems.iter().map(|(f, m)| format!("{f}: {m}")).collect();
    all.join("; ")
}

#[cfg(test)]
mod tests {
    use protocol::{RuleParams, Severity};

    use super::*;

    /// The rules of camera `plaza`.
    const RULES: &str = r#"
[[zones]]
id = "cordon"
polygon = [[0, 0], [100, 0], [100, 100]]
"#;

    const TAG_RULES: &str = r#"
[watchlist]
tags = [{ tag = "aa01", case_ref = "WD-1" }, { tag = "BB02", case_ref = "WD-2" }]

[[theft.pairings]]
bike = "b1"
keys = ["c1"]
"#;

    /// The parts of a configuration the overrides change.
    struct Config {
        tag_rules: Option<TagConfig>,
        /// (camera id, its rules).
        cameras: Vec<(String, EngineConfig)>,
    }

    fn config() -> Config {
        let rules: EngineConfig = toml::from_str(RULES).expect("valid rules");
        assert!(rules.validate().is_empty());
        let tags: TagConfig = toml::from_str(TAG_RULES).expect("valid tag rules");
        assert_eq!(tags.validate(), Ok(()));
        Config {
            tag_rules: Some(tags),
            cameras: vec![("plaza".into(), rules)],
        }
    }

    fn apply(o: &Overrides, c: &mut Config) -> Vec<String> {
        o.apply_to(
            &mut c.tag_rules,
            c.cameras.iter_mut().map(|(id, rules)| (id.as_str(), rules)),
        )
    }

    fn record(o: &mut Overrides, body: CommandBody) {
        for change in o.changes(&body).expect("recordable") {
            o.commit(change);
        }
    }

    fn params(camera: &str, rule: &str) -> RuleParams {
        RuleParams {
            camera: camera.into(),
            rule: rule.into(),
            severity: None,
            threshold: None,
            cooldown_ms: None,
            active_hours: None,
        }
    }

    #[test]
    fn apply_to_puts_a_watchlist_entry_in_and_takes_one_out() {
        let mut o = Overrides::default();
        record(
            &mut o,
            CommandBody::WatchAdd {
                tag: "cc03".into(),
                case_ref: "WD-3".into(),
                note: "blue".into(),
            },
        );
        record(&mut o, CommandBody::WatchRemove { tag: "AA01".into() });
        let mut c = config();
        assert!(apply(&o, &mut c).is_empty());
        let tags = c.tag_rules.expect("tag rules");
        let listed: Vec<(&str, &str)> = tags
            .watchlist
            .tags
            .iter()
            .map(|e| (e.tag.as_str(), e.case_ref.as_str()))
            .collect();
        assert_eq!(listed, [("BB02", "WD-2"), ("CC03", "WD-3")]);
        assert_eq!(tags.validate(), Ok(()));
    }

    #[test]
    fn the_latest_word_on_a_key_wins_and_the_overrides_stay_one_per_key() {
        let mut o = Overrides::default();
        for i in 0..10 {
            let body = if i % 2 == 0 {
                CommandBody::WatchAdd {
                    tag: "cc03".into(),
                    case_ref: format!("WD-{i}"),
                    note: String::new(),
                }
            } else {
                CommandBody::WatchRemove { tag: "CC03".into() }
            };
            record(&mut o, body);
        }
        assert_eq!(o.len(), 1);
        assert_eq!(o.watchlist().get("CC03"), Some(&None));
    }

    #[test]
    fn arm_states_fold_into_hub_pairings_and_override_file_pairings() {
        let mut o = Overrides::default();
        // The file's bike B1: disarmed by the hub.
        record(
            &mut o,
            CommandBody::PairArm {
                bike: "b1".into(),
                armed: false,
            },
        );
        // A hub pairing, then disarmed: one key, in the pairing.
        record(
            &mut o,
            CommandBody::PairSet {
                bike: "b2".into(),
                keys: vec!["c2".into()],
                armed: true,
            },
        );
        record(
            &mut o,
            CommandBody::PairArm {
                bike: "B2".into(),
                armed: false,
            },
        );
        assert_eq!(o.armed().len(), 1, "{o:?}");
        assert_eq!(
            o.pairings().get("B2").cloned().flatten().map(|p| p.armed),
            Some(false)
        );
        // A bike the hub later unpairs: its arm override goes with it.
        record(
            &mut o,
            CommandBody::PairArm {
                bike: "b9".into(),
                armed: true,
            },
        );
        record(&mut o, CommandBody::PairRemove { bike: "b9".into() });
        assert!(!o.armed().contains_key("B9"));

        let mut c = config();
        assert!(apply(&o, &mut c).is_empty());
        let pairings = c.tag_rules.expect("tag rules").theft.pairings;
        let state: Vec<(&str, bool)> = pairings
            .iter()
            .map(|p| (p.bike.as_str(), p.armed))
            .collect();
        assert_eq!(state, [("b1", false), ("B2", false)]);
    }

    #[test]
    fn rule_parameters_merge_field_by_field_and_reach_the_camera() {
        let mut o = Overrides::default();
        record(
            &mut o,
            CommandBody::RuleParams(RuleParams {
                threshold: Some(0.7),
                severity: Some(Severity::Critical),
                ..params("plaza", "cordon")
            }),
        );
        record(
            &mut o,
            CommandBody::RuleParams(RuleParams {
                threshold: Some(0.8),
                ..params("plaza", "cordon")
            }),
        );
        let mut c = config();
        assert!(apply(&o, &mut c).is_empty());
        let zone = &c.cameras[0].1.zones[0];
        assert_eq!((zone.threshold, zone.severity), (0.8, Severity::Critical));
    }

    #[test]
    fn overrides_that_no_longer_apply_are_warnings_not_failures() {
        let mut o = Overrides::default();
        record(
            &mut o,
            CommandBody::RuleParams(RuleParams {
                threshold: Some(0.7),
                ..params("gone", "cordon")
            }),
        );
        record(
            &mut o,
            CommandBody::RuleParams(RuleParams {
                threshold: Some(0.7),
                ..params("plaza", "renamed")
            }),
        );
        record(
            &mut o,
            CommandBody::PairArm {
                bike: "dd".into(),
                armed: true,
            },
        );
        let mut c = config();
        let before = c.cameras.iter().map(|(_, r)| r.clone()).collect::<Vec<_>>();
        let warnings = apply(&o, &mut c);
        assert_eq!(
            warnings,
            [
                "arm state of bike DD: the bike is no longer paired; ignored",
                "rule parameters of gone/cordon: no camera \"gone\" any more; ignored",
                "rule parameters of plaza/renamed: no longer apply (rule: no rule has id \
                 \"renamed\" (this camera has: cordon)); ignored",
            ]
        );
        assert_eq!(
            c.cameras.iter().map(|(_, r)| r.clone()).collect::<Vec<_>>(),
            before
        );
    }

    #[test]
    fn a_tag_id_that_is_not_one_cannot_be_recorded() {
        let o = Overrides::default();
        let err = o
            .changes(&CommandBody::WatchRemove { tag: "xyz".into() })
            .expect_err("recorded");
        assert!(err.starts_with("tag:"), "{err}");
    }
}
