//! The tag rules, pure: sightings and the current time in, [`TagAlert`]s out. No I/O, no clock.
//!
//! - **Watchlist (布控)**: a sighting of a listed tag, at any reader, alerts at once.
//! - **Possible theft**: a sighting of an armed bike opens a *pending* decision unless one of its
//!   key tags was heard (at any reader of this box) at most `window_ms` before it. A key sighting
//!   within `window_ms` after it cancels the pending decision. [`TagRules::tick`] raises the
//!   alert once `window_ms` after the bike's sighting has passed without a key, plus a grace of
//!   one dedup window, because sightings reach the rules up to that late.
//! - **Cooldown**, per rule and tag: after an alert at time `t` (the sighting's first read), no
//!   alert of the same rule for the same tag for sightings before `t + cooldown_ms`, so a bike
//!   lingering in range does not re-alert every dedup window. While a bike's decision is
//!   pending, further sightings of it join that decision rather than open new ones.
//!
//! Which tag is a bike and which a key comes from the pairings, not from the `kind` the reader
//! reports: the pairing is the owner's registration and the reader's field is only a hint.
//!
//! The watchlist and pairings are local state the hub will update by command:
//! [`TagRules::apply`] takes one [`TagRuleUpdate`] and is idempotent, as at-least-once delivery
//! requires.
//!
//! Memory is bounded by the configuration: pending decisions by the number of pairings, key
//! times by the number of key tags, cooldowns by listed tags and pairings, and `tick` forgets
//! key times and cooldowns that can no longer matter.

use std::collections::{BTreeMap, BTreeSet};

use super::config::{Pairing, TagConfig, WatchEntry, pairing_problems, watch_entry_problems};
use super::dedup::Sighting;
use super::read::normalize_tag;
use crate::track::Timestamp;

/// Which tag rule raised an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TagRuleKind {
    /// A watchlisted tag was heard.
    Watchlist,
    /// An armed bike was heard without its key.
    PossibleTheft,
}

/// A decision of the tag rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagAlert {
    /// A watchlisted tag was heard.
    Watchlist {
        /// Tag id, upper-case hex.
        tag: String,
        /// The reader that heard it.
        reader: String,
        /// First read of the sighting, ms since the epoch (look camera frames up by this).
        at_ms: Timestamp,
        /// Strongest RSSI of the sighting, dBm.
        rssi: i16,
        /// From the watchlist entry.
        case_ref: String,
        /// From the watchlist entry.
        note: String,
    },
    /// An armed bike was heard and none of its keys within the window around it.
    PossibleTheft {
        /// The bike's tag id.
        bike: String,
        /// The reader that heard the bike (first sighting of the incident).
        reader: String,
        /// First read of the bike's sighting.
        at_ms: Timestamp,
        /// The key tags that were expected.
        keys: Vec<String>,
        /// The window the keys had, each side.
        window_ms: Timestamp,
    },
}

impl TagAlert {
    /// The rule that raised it.
    pub fn rule(&self) -> TagRuleKind {
        match self {
            Self::Watchlist { .. } => TagRuleKind::Watchlist,
            Self::PossibleTheft { .. } => TagRuleKind::PossibleTheft,
        }
    }

    /// The tag it is about (the bike for a theft).
    pub fn tag(&self) -> &str {
        match self {
            Self::Watchlist { tag, .. } => tag,
            Self::PossibleTheft { bike, .. } => bike,
        }
    }

    /// When the tag was heard.
    pub fn at_ms(&self) -> Timestamp {
        match self {
            Self::Watchlist { at_ms, .. } | Self::PossibleTheft { at_ms, .. } => *at_ms,
        }
    }
}

/// One change to the local watchlist or pairings (e.g. from a hub command).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagRuleUpdate {
    /// Add or replace a watchlist entry.
    Watch(WatchEntry),
    /// Remove a tag from the watchlist (no-op if absent).
    Unwatch {
        /// Tag id.
        tag: String,
    },
    /// Add or replace the pairing of a bike.
    Pair(Pairing),
    /// Remove a bike's pairing (no-op if absent).
    Unpair {
        /// Bike tag id.
        bike: String,
    },
    /// Arm or disarm a paired bike. Disarming drops its pending decision.
    Arm {
        /// Bike tag id.
        bike: String,
        /// New state.
        armed: bool,
    },
}

/// An update was refused; the rules are unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TagRuleError {
    /// The entry or pairing is invalid; each problem as `field: message`.
    #[error("invalid {what}: {}", .problems.join("; "))]
    Invalid {
        /// `watchlist entry` or `pairing`.
        what: &'static str,
        /// The problems.
        problems: Vec<String>,
    },
    /// `Arm` named a bike without a pairing.
    #[error("no pairing for bike tag {bike}")]
    UnknownBike {
        /// The bike tag id.
        bike: String,
    },
}

#[derive(Debug, Clone)]
struct PendingTheft {
    reader: String,
    first_ms: Timestamp,
    last_ms: Timestamp,
}

/// Owner of the watchlist, the pairings and the possible-theft decisions of one box.
#[derive(Debug)]
pub struct TagRules {
    watch_cooldown_ms: Timestamp,
    theft_window_ms: Timestamp,
    theft_cooldown_ms: Timestamp,
    /// How late a sighting may reach the rules after its last read (the dedup window).
    grace_ms: Timestamp,
    /// Normalised tag → entry (with normalised tag).
    watchlist: BTreeMap<String, WatchEntry>,
    /// Normalised bike tag → pairing (normalised tags).
    pairings: BTreeMap<String, Pairing>,
    /// Key tag → bikes it clears.
    key_index: BTreeMap<String, BTreeSet<String>>,
    /// Key tag → last time it was heard.
    key_heard: BTreeMap<String, Timestamp>,
    /// Bike tag → its undecided incident.
    pending: BTreeMap<String, PendingTheft>,
    /// (rule, tag) → time of the last alert.
    last_alert: BTreeMap<(TagRuleKind, String), Timestamp>,
}

impl TagRules {
    /// Builds the rules from a configuration, or returns every problem with its path.
    pub fn new(cfg: &TagConfig) -> Result<Self, Vec<String>> {
        cfg.validate()?;
        let mut rules = Self {
            watch_cooldown_ms: cfg.watchlist.cooldown_ms,
            theft_window_ms: cfg.theft.window_ms,
            theft_cooldown_ms: cfg.theft.cooldown_ms,
            grace_ms: cfg.dedup_window_ms,
            watchlist: BTreeMap::new(),
            pairings: BTreeMap::new(),
            key_index: BTreeMap::new(),
            key_heard: BTreeMap::new(),
            pending: BTreeMap::new(),
            last_alert: BTreeMap::new(),
        };
        for entry in &cfg.watchlist.tags {
            rules.insert_watch(entry);
        }
        for pairing in &cfg.theft.pairings {
            rules.insert_pairing(pairing);
        }
        rules.rebuild_key_index();
        Ok(rules)
    }

    /// Feeds one closed sighting; returns the alerts it raises at once (watchlist hits).
    /// Possible thefts come out of [`Self::tick`].
    pub fn observe(&mut self, s: &Sighting) -> Vec<TagAlert> {
        let mut alerts = Vec::new();
        if let Some(entry) = self.watchlist.get(&s.tag)
            && !self.cooling(TagRuleKind::Watchlist, &s.tag, s.first_ms)
        {
            alerts.push(TagAlert::Watchlist {
                tag: s.tag.clone(),
                reader: s.reader.clone(),
                at_ms: s.first_ms,
                rssi: s.best_rssi,
                case_ref: entry.case_ref.clone(),
                note: entry.note.clone(),
            });
            self.last_alert
                .insert((TagRuleKind::Watchlist, s.tag.clone()), s.first_ms);
        }
        if let Some(bikes) = self.key_index.get(&s.tag) {
            let heard = self.key_heard.entry(s.tag.clone()).or_insert(s.last_ms);
            *heard = (*heard).max(s.last_ms);
            let window = self.theft_window_ms;
            self.pending.retain(|bike, p| {
                !(bikes.contains(bike)
                    && s.first_ms <= p.last_ms + window
                    && s.last_ms >= p.first_ms - window)
            });
        }
        if let Some(pairing) = self.pairings.get(&s.tag)
            && pairing.armed
            && !self.pending.contains_key(&s.tag)
            && !self.cooling(TagRuleKind::PossibleTheft, &s.tag, s.first_ms)
        {
            let since = s.first_ms - self.theft_window_ms;
            let key_nearby = pairing
                .keys
                .iter()
                .any(|k| self.key_heard.get(k).is_some_and(|&t| t >= since));
            if !key_nearby {
                self.pending.insert(
                    s.tag.clone(),
                    PendingTheft {
                        reader: s.reader.clone(),
                        first_ms: s.first_ms,
                        last_ms: s.last_ms,
                    },
                );
            }
        }
        alerts
    }

    /// Decides every pending possible theft whose window (plus grace) has passed by `now_ms`,
    /// and forgets state that can no longer matter. Alerts come out in bike-tag order.
    pub fn tick(&mut self, now_ms: Timestamp) -> Vec<TagAlert> {
        let mut alerts = Vec::new();
        let wait = self.theft_window_ms + self.grace_ms;
        let due: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| now_ms >= p.last_ms + wait)
            .map(|(bike, _)| bike.clone())
            .collect();
        for bike in due {
            let Some(p) = self.pending.remove(&bike) else {
                continue;
            };
            let Some(pairing) = self.pairings.get(&bike) else {
                continue;
            };
            if !pairing.armed || self.cooling(TagRuleKind::PossibleTheft, &bike, p.first_ms) {
                continue;
            }
            alerts.push(TagAlert::PossibleTheft {
                bike: bike.clone(),
                reader: p.reader,
                at_ms: p.first_ms,
                keys: pairing.keys.clone(),
                window_ms: self.theft_window_ms,
            });
            self.last_alert
                .insert((TagRuleKind::PossibleTheft, bike), p.first_ms);
        }
        // A sighting reaching the rules from now on starts no earlier than `now - grace`, and
        // looks back `window` for keys; older key times are irrelevant.
        let key_horizon = now_ms - wait;
        self.key_heard.retain(|_, &mut t| t >= key_horizon);
        let (watch_cd, theft_cd, grace) = (
            self.watch_cooldown_ms,
            self.theft_cooldown_ms,
            self.grace_ms,
        );
        self.last_alert.retain(|(rule, _), &mut t| {
            let cooldown = match rule {
                TagRuleKind::Watchlist => watch_cd,
                TagRuleKind::PossibleTheft => theft_cd,
            };
            t + cooldown > now_ms - grace
        });
        alerts
    }

    /// Applies one update to the watchlist or pairings. Idempotent; on error nothing changes.
    pub fn apply(&mut self, update: TagRuleUpdate) -> Result<(), TagRuleError> {
        match update {
            TagRuleUpdate::Watch(entry) => {
                let problems = watch_entry_problems(&entry);
                if !problems.is_empty() {
                    return Err(invalid("watchlist entry", problems));
                }
                self.insert_watch(&entry);
            }
            TagRuleUpdate::Unwatch { tag } => {
                if let Ok(tag) = normalize_tag(&tag) {
                    self.watchlist.remove(&tag);
                }
            }
            TagRuleUpdate::Pair(pairing) => {
                let problems = pairing_problems(&pairing);
                if !problems.is_empty() {
                    return Err(invalid("pairing", problems));
                }
                let bike = self.insert_pairing(&pairing);
                if !pairing.armed {
                    self.pending.remove(&bike);
                }
                self.rebuild_key_index();
            }
            TagRuleUpdate::Unpair { bike } => {
                if let Ok(bike) = normalize_tag(&bike) {
                    self.pairings.remove(&bike);
                    self.pending.remove(&bike);
                    self.rebuild_key_index();
                }
            }
            TagRuleUpdate::Arm { bike, armed } => {
                let key = normalize_tag(&bike).unwrap_or_default();
                let Some(pairing) = self.pairings.get_mut(&key) else {
                    return Err(TagRuleError::UnknownBike { bike });
                };
                pairing.armed = armed;
                if !armed {
                    self.pending.remove(&key);
                }
            }
        }
        Ok(())
    }

    /// Whether `tag` is watchlisted.
    pub fn is_watched(&self, tag: &str) -> bool {
        normalize_tag(tag).is_ok_and(|t| self.watchlist.contains_key(&t))
    }

    /// The pairing of a bike, if any.
    pub fn pairing(&self, bike: &str) -> Option<&Pairing> {
        normalize_tag(bike).ok().and_then(|b| self.pairings.get(&b))
    }

    /// Number of undecided possible thefts.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    fn cooling(&self, rule: TagRuleKind, tag: &str, at_ms: Timestamp) -> bool {
        let cooldown = match rule {
            TagRuleKind::Watchlist => self.watch_cooldown_ms,
            TagRuleKind::PossibleTheft => self.theft_cooldown_ms,
        };
        self.last_alert
            .get(&(rule, tag.to_string()))
            .is_some_and(|&last| at_ms < last + cooldown)
    }

    /// Inserts an already validated entry.
    fn insert_watch(&mut self, entry: &WatchEntry) {
        let tag = normalize_tag(&entry.tag).unwrap_or_default();
        self.watchlist.insert(
            tag.clone(),
            WatchEntry {
                tag,
                ..entry.clone()
            },
        );
    }

    /// Inserts an already validated pairing; returns its normalised bike tag. The caller
    /// rebuilds the key index.
    fn insert_pairing(&mut self, pairing: &Pairing) -> String {
        let bike = normalize_tag(&pairing.bike).unwrap_or_default();
        let keys = pairing
            .keys
            .iter()
            .filter_map(|k| normalize_tag(k).ok())
            .collect();
        self.pairings.insert(
            bike.clone(),
            Pairing {
                bike: bike.clone(),
                keys,
                armed: pairing.armed,
            },
        );
        bike
    }

    fn rebuild_key_index(&mut self) {
        self.key_index.clear();
        for (bike, pairing) in &self.pairings {
            for key in &pairing.keys {
                self.key_index
                    .entry(key.clone())
                    .or_default()
                    .insert(bike.clone());
            }
        }
    }
}

fn invalid(what: &'static str, problems: Vec<(String, String)>) -> TagRuleError {
    TagRuleError::Invalid {
        what,
        problems: problems
            .into_iter()
            .map(|(field, message)| format!("{field}: {message}"))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tags::config::{TheftConfig, WatchlistConfig};
    use crate::tags::read::TagKind;

    const BIKE: &str = "B1CE";
    const KEY: &str = "CE1";
    const WANTED: &str = "BAD1";
    const WINDOW: Timestamp = 30_000;
    const GRACE: Timestamp = 2_000;

    fn rules(armed: bool) -> TagRules {
        TagRules::new(&TagConfig {
            dedup_window_ms: GRACE,
            watchlist: WatchlistConfig {
                cooldown_ms: 60_000,
                tags: vec![WatchEntry {
                    tag: WANTED.to_ascii_lowercase(),
                    case_ref: "WD-1".into(),
                    note: "stolen".into(),
                }],
            },
            theft: TheftConfig {
                window_ms: WINDOW,
                cooldown_ms: 600_000,
                pairings: vec![Pairing {
                    bike: BIKE.into(),
                    keys: vec!["0000".into(), KEY.into()],
                    armed,
                }],
            },
        })
        .unwrap()
    }

    fn sighting(reader: &str, tag: &str, kind: TagKind, at: Timestamp) -> Sighting {
        Sighting {
            reader: reader.into(),
            tag: tag.into(),
            kind,
            first_ms: at,
            last_ms: at + 500,
            reads: 3,
            best_rssi: -60,
        }
    }

    fn bike(at: Timestamp) -> Sighting {
        sighting("r1", BIKE, TagKind::Bike, at)
    }

    fn key(at: Timestamp) -> Sighting {
        sighting("r2", KEY, TagKind::Key, at)
    }

    /// Observes the sightings in order and ticks long after; returns every alert.
    fn run(rules: &mut TagRules, sightings: &[Sighting]) -> Vec<TagAlert> {
        let mut out = Vec::new();
        for s in sightings {
            out.extend(rules.observe(s));
            out.extend(rules.tick(s.last_ms));
        }
        out.extend(rules.tick(10_000_000));
        out
    }

    #[test]
    fn a_watchlisted_tag_alerts_with_its_tag_reader_time_and_case() {
        let mut r = rules(true);
        let alerts = r.observe(&sighting("gate-3", WANTED, TagKind::Bike, 1_000));
        assert_eq!(
            alerts,
            [TagAlert::Watchlist {
                tag: WANTED.into(),
                reader: "gate-3".into(),
                at_ms: 1_000,
                rssi: -60,
                case_ref: "WD-1".into(),
                note: "stolen".into(),
            }]
        );
    }

    #[test]
    fn watchlist_cooldown_suppresses_repeats_then_lets_one_through() {
        let mut r = rules(true);
        let hits = |r: &mut TagRules, at| r.observe(&sighting("r1", WANTED, TagKind::Bike, at));
        assert_eq!(hits(&mut r, 0).len(), 1);
        assert!(hits(&mut r, 2_000).is_empty());
        assert!(hits(&mut r, 59_999).is_empty());
        assert_eq!(hits(&mut r, 60_000).len(), 1);
    }

    #[test]
    fn an_armed_bike_without_its_key_raises_possible_theft_after_the_window() {
        let mut r = rules(true);
        assert!(r.observe(&bike(100_000)).is_empty());
        assert!(r.tick(100_500 + WINDOW + GRACE - 1).is_empty());
        let alerts = r.tick(100_500 + WINDOW + GRACE);
        assert_eq!(
            alerts,
            [TagAlert::PossibleTheft {
                bike: BIKE.into(),
                reader: "r1".into(),
                at_ms: 100_000,
                keys: vec!["0000".into(), KEY.into()],
                window_ms: WINDOW,
            }]
        );
        assert_eq!(r.pending_len(), 0);
    }

    #[test]
    fn no_alarm_when_the_key_passed_shortly_before() {
        let mut r = rules(true);
        assert!(run(&mut r, &[key(80_000), bike(100_000)]).is_empty());
    }

    #[test]
    fn no_alarm_when_the_key_passes_within_the_window_after() {
        let mut r = rules(true);
        assert!(run(&mut r, &[bike(100_000), key(125_000)]).is_empty());
    }

    #[test]
    fn a_key_outside_the_window_does_not_clear_the_bike() {
        let mut r = rules(true);
        let alerts = run(&mut r, &[key(10_000), bike(100_000), key(140_000)]);
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].rule(), TagRuleKind::PossibleTheft);
    }

    #[test]
    fn key_tags_match_case_insensitively() {
        let mut r = rules(true);
        let lower_key = sighting("r2", &KEY.to_ascii_lowercase(), TagKind::Key, 110_000);
        // Sightings carry normalised tags; the pairing was configured in another case.
        let key = Sighting {
            tag: lower_key.tag.to_ascii_uppercase(),
            ..lower_key
        };
        assert!(run(&mut r, &[bike(100_000), key]).is_empty());
    }

    #[test]
    fn theft_cooldown_suppresses_a_lingering_bike() {
        let mut r = rules(true);
        let mut sightings = Vec::new();
        for i in 0..100 {
            sightings.push(bike(100_000 + i * 2_000));
        }
        let alerts = run(&mut r, &sightings);
        assert_eq!(alerts.len(), 1, "{alerts:#?}");
        assert_eq!(alerts[0].at_ms(), 100_000);
    }

    #[test]
    fn a_disarmed_bike_never_alarms() {
        let mut r = rules(false);
        assert!(run(&mut r, &[bike(100_000), bike(800_000)]).is_empty());
    }

    #[test]
    fn disarming_drops_a_pending_decision() {
        let mut r = rules(true);
        r.observe(&bike(100_000));
        assert_eq!(r.pending_len(), 1);
        r.apply(TagRuleUpdate::Arm {
            bike: BIKE.to_ascii_lowercase(),
            armed: false,
        })
        .unwrap();
        assert!(run(&mut r, &[]).is_empty());
    }

    #[test]
    fn updates_add_and_remove_watchlist_tags_and_pairings() {
        let mut r = rules(true);
        r.apply(TagRuleUpdate::Watch(WatchEntry {
            tag: "abc".into(),
            case_ref: "WD-2".into(),
            note: String::new(),
        }))
        .unwrap();
        assert!(r.is_watched("ABC"));
        r.apply(TagRuleUpdate::Unwatch { tag: "ABC".into() })
            .unwrap();
        r.apply(TagRuleUpdate::Unwatch { tag: "ABC".into() })
            .unwrap();
        assert!(!r.is_watched("abc"));

        r.apply(TagRuleUpdate::Pair(Pairing {
            bike: "b2".into(),
            keys: vec!["c2".into()],
            armed: true,
        }))
        .unwrap();
        assert_eq!(
            r.pairing("B2").map(|p| p.keys.clone()),
            Some(vec!["C2".into()])
        );
        let ok = run(
            &mut r,
            &[
                sighting("r1", "B2", TagKind::Bike, 0),
                sighting("r1", "C2", TagKind::Key, 1_000),
            ],
        );
        assert!(ok.is_empty());
        r.apply(TagRuleUpdate::Unpair { bike: "B2".into() })
            .unwrap();
        assert!(r.pairing("b2").is_none());
        assert_eq!(
            r.apply(TagRuleUpdate::Arm {
                bike: "B2".into(),
                armed: true
            }),
            Err(TagRuleError::UnknownBike { bike: "B2".into() })
        );
    }

    #[test]
    fn an_invalid_update_is_refused_with_every_problem() {
        let mut r = rules(true);
        let err = r
            .apply(TagRuleUpdate::Pair(Pairing {
                bike: "zz".into(),
                keys: vec![],
                armed: true,
            }))
            .unwrap_err();
        match err {
            TagRuleError::Invalid { problems, .. } => assert_eq!(problems.len(), 2),
            other => panic!("{other}"),
        }
    }
}
