//! Tag-rule configuration: the watchlist, the bike ↔ key pairings and their timings. Plain serde
//! structs, unknown keys rejected, defaults in [`defaults`], and [`TagConfig::validate`]
//! reporting every problem at once with its path.
//!
//! Example (TOML; the same shape is accepted as JSON):
//! ```toml
//! dedup_window_ms = 2000
//!
//! [watchlist]
//! cooldown_ms = 300000
//! [[watchlist.tags]]
//! tag = "E2801160600002084A5B3C1D"
//! case_ref = "WD-2026-1187"
//! note = "reported stolen, red Yadea"
//!
//! [theft]
//! window_ms = 30000
//! cooldown_ms = 600000
//! [[theft.pairings]]
//! bike = "E28011606000020800000001"
//! keys = ["E28011606000020800000002"]
//! armed = true
//! ```
//!
//! Tag ids are compared case-insensitively (they are normalised to upper case).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::read::normalize_tag;
use crate::track::Timestamp;

/// Every default of the tag configuration, in one place.
pub mod defaults {
    use crate::track::Timestamp;

    /// Reads of one tag at one reader within 2 s are one sighting.
    pub fn dedup_window_ms() -> Timestamp {
        2_000
    }
    /// A watchlisted tag re-alerts at most every 5 minutes.
    pub fn watchlist_cooldown_ms() -> Timestamp {
        300_000
    }
    /// The owner's key must be heard within 30 s before or after the bike.
    pub fn theft_window_ms() -> Timestamp {
        30_000
    }
    /// A possible theft of one bike re-alerts at most every 10 minutes.
    pub fn theft_cooldown_ms() -> Timestamp {
        600_000
    }
    /// Pairings are armed unless they say otherwise.
    pub fn armed() -> bool {
        true
    }
}

/// The tag rules of one box.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagConfig {
    /// Reads of the same (reader, tag) within this long of the first are one sighting.
    #[serde(default = "defaults::dedup_window_ms")]
    pub dedup_window_ms: Timestamp,
    /// The watchlist (布控) rule.
    #[serde(default)]
    pub watchlist: WatchlistConfig,
    /// The possible-theft rule.
    #[serde(default)]
    pub theft: TheftConfig,
}

impl Default for TagConfig {
    fn default() -> Self {
        Self {
            dedup_window_ms: defaults::dedup_window_ms(),
            watchlist: WatchlistConfig::default(),
            theft: TheftConfig::default(),
        }
    }
}

/// Alerts when a listed tag is heard at any reader.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchlistConfig {
    /// No second alert for the same tag within this long of the last.
    #[serde(default = "defaults::watchlist_cooldown_ms")]
    pub cooldown_ms: Timestamp,
    /// The listed tags.
    #[serde(default)]
    pub tags: Vec<WatchEntry>,
}

impl Default for WatchlistConfig {
    fn default() -> Self {
        Self {
            cooldown_ms: defaults::watchlist_cooldown_ms(),
            tags: Vec::new(),
        }
    }
}

/// One watchlisted tag.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchEntry {
    /// Tag id (hex).
    pub tag: String,
    /// The police or governance case this listing belongs to; carried in every alert.
    pub case_ref: String,
    /// Free text for the operator.
    #[serde(default)]
    pub note: String,
}

/// Alerts when an armed bike is heard without any of its key tags nearby in time.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TheftConfig {
    /// A key heard within this long before or after the bike (at any reader of this box)
    /// means the owner is riding it.
    #[serde(default = "defaults::theft_window_ms")]
    pub window_ms: Timestamp,
    /// No second alert for the same bike within this long of the last.
    #[serde(default = "defaults::theft_cooldown_ms")]
    pub cooldown_ms: Timestamp,
    /// Bike ↔ key pairings.
    #[serde(default)]
    pub pairings: Vec<Pairing>,
}

impl Default for TheftConfig {
    fn default() -> Self {
        Self {
            window_ms: defaults::theft_window_ms(),
            cooldown_ms: defaults::theft_cooldown_ms(),
            pairings: Vec::new(),
        }
    }
}

/// A bike tag and the key tags of its owner(s).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pairing {
    /// The bike's tag id.
    pub bike: String,
    /// Key tags; hearing any one of them clears the bike.
    pub keys: Vec<String>,
    /// Only armed bikes can raise a possible-theft alert.
    #[serde(default = "defaults::armed")]
    pub armed: bool,
}

/// Loading a tag configuration failed.
#[derive(Debug, thiserror::Error)]
pub enum TagConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not TOML of the expected shape.
    #[error("{path}: {message}")]
    Parse {
        /// The file (or `<string>`).
        path: PathBuf,
        /// The parser's message, with the offending key or position.
        message: String,
    },
    /// The values are inconsistent; every problem, each with its path.
    #[error("{}", .0.join("; "))]
    Invalid(Vec<String>),
}

impl TagConfig {
    /// Parses TOML and validates it.
    pub fn from_toml_str(text: &str) -> Result<Self, TagConfigError> {
        let cfg: Self = toml::from_str(text).map_err(|e| TagConfigError::Parse {
            path: PathBuf::from("<string>"),
            message: e.to_string(),
        })?;
        cfg.validate().map_err(TagConfigError::Invalid)?;
        Ok(cfg)
    }

    /// Parses JSON and validates it.
    pub fn from_json_str(text: &str) -> Result<Self, TagConfigError> {
        let cfg: Self = serde_json::from_str(text).map_err(|e| TagConfigError::Parse {
            path: PathBuf::from("<string>"),
            message: e.to_string(),
        })?;
        cfg.validate().map_err(TagConfigError::Invalid)?;
        Ok(cfg)
    }

    /// Loads a file: JSON if its name ends in `.json`, TOML otherwise.
    pub fn load(path: &Path) -> Result<Self, TagConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| TagConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let parsed = if path.extension().is_some_and(|e| e == "json") {
            Self::from_json_str(&text)
        } else {
            Self::from_toml_str(&text)
        };
        parsed.map_err(|e| match e {
            TagConfigError::Parse { message, .. } => TagConfigError::Parse {
                path: path.to_path_buf(),
                message,
            },
            other => other,
        })
    }

    /// Every problem with this configuration, each as `path: message`.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        if self.dedup_window_ms < 1 {
            errors.push("dedup_window_ms: must be at least 1".to_string());
        }
        if self.watchlist.cooldown_ms < 0 {
            errors.push("watchlist.cooldown_ms: must not be negative".to_string());
        }
        let mut listed: BTreeMap<String, usize> = BTreeMap::new();
        for (i, entry) in self.watchlist.tags.iter().enumerate() {
            let path = format!("watchlist.tags[{i}]");
            for (field, problem) in watch_entry_problems(entry) {
                errors.push(format!("{path}.{field}: {problem}"));
            }
            if let Ok(tag) = normalize_tag(&entry.tag) {
                if let Some(first) = listed.get(&tag) {
                    errors.push(format!(
                        "{path}.tag: {tag} is already listed at watchlist.tags[{first}]"
                    ));
                } else {
                    listed.insert(tag, i);
                }
            }
        }
        if self.theft.window_ms < 1 {
            errors.push("theft.window_ms: must be at least 1".to_string());
        }
        if self.theft.cooldown_ms < 0 {
            errors.push("theft.cooldown_ms: must not be negative".to_string());
        }
        let mut bikes: BTreeMap<String, usize> = BTreeMap::new();
        for (i, pairing) in self.theft.pairings.iter().enumerate() {
            let path = format!("theft.pairings[{i}]");
            for (field, problem) in pairing_problems(pairing) {
                errors.push(format!("{path}.{field}: {problem}"));
            }
            if let Ok(bike) = normalize_tag(&pairing.bike) {
                if let Some(first) = bikes.get(&bike) {
                    errors.push(format!(
                        "{path}.bike: {bike} is already paired at theft.pairings[{first}]"
                    ));
                } else {
                    bikes.insert(bike, i);
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// Problems of one watchlist entry as (field, message); shared with runtime updates.
pub(crate) fn watch_entry_problems(entry: &WatchEntry) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Err(p) = normalize_tag(&entry.tag) {
        out.push(("tag".to_string(), p));
    }
    if entry.case_ref.trim().is_empty() {
        out.push(("case_ref".to_string(), "must not be empty".to_string()));
    }
    out
}

/// Problems of one pairing as (field, message); shared with runtime updates.
pub(crate) fn pairing_problems(pairing: &Pairing) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let bike = normalize_tag(&pairing.bike);
    if let Err(p) = &bike {
        out.push(("bike".to_string(), p.clone()));
    }
    if pairing.keys.is_empty() {
        out.push(("keys".to_string(), "needs at least one key tag".to_string()));
    }
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (j, key) in pairing.keys.iter().enumerate() {
        let field = format!("keys[{j}]");
        match normalize_tag(key) {
            Err(p) => out.push((field, p)),
            Ok(k) if bike.as_ref().is_ok_and(|b| *b == k) => {
                out.push((field, format!("{k} is the bike's own tag")));
            }
            Ok(k) => {
                if let Some(first) = seen.get(&k) {
                    out.push((field, format!("{k} repeats keys[{first}]")));
                } else {
                    seen.insert(k, j);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_loads() {
        let text = r#"
dedup_window_ms = 2000
[watchlist]
cooldown_ms = 300000
[[watchlist.tags]]
tag = "e2801160600002084a5b3c1d"
case_ref = "WD-2026-1187"
note = "reported stolen, red Yadea"
[theft]
window_ms = 30000
[[theft.pairings]]
bike = "E28011606000020800000001"
keys = ["E28011606000020800000002"]
"#;
        let cfg = TagConfig::from_toml_str(text).unwrap();
        assert_eq!(cfg.watchlist.tags.len(), 1);
        assert!(cfg.theft.pairings[0].armed);
        assert_eq!(cfg.theft.cooldown_ms, defaults::theft_cooldown_ms());
    }

    #[test]
    fn json_is_accepted_too() {
        let cfg = TagConfig::from_json_str(
            r#"{"theft":{"pairings":[{"bike":"AA","keys":["BB"],"armed":false}]}}"#,
        )
        .unwrap();
        assert!(!cfg.theft.pairings[0].armed);
        assert_eq!(cfg.dedup_window_ms, defaults::dedup_window_ms());
    }

    #[test]
    fn load_picks_json_or_toml_by_extension_and_names_the_file_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("tags.json");
        std::fs::write(&json, r#"{"dedup_window_ms": 500}"#).unwrap();
        assert_eq!(TagConfig::load(&json).unwrap().dedup_window_ms, 500);
        let toml = dir.path().join("tags.toml");
        std::fs::write(&toml, "dedup_window_ms = 700\n").unwrap();
        assert_eq!(TagConfig::load(&toml).unwrap().dedup_window_ms, 700);
        std::fs::write(&toml, "dedup_window_ms = \"soon\"\n").unwrap();
        let e = TagConfig::load(&toml).unwrap_err();
        assert!(
            e.to_string().starts_with(&toml.display().to_string()),
            "{e}"
        );
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_name() {
        let e = TagConfig::from_toml_str("[watchlist]\ncooldown = 5\n").unwrap_err();
        assert!(e.to_string().contains("cooldown"), "{e}");
    }

    #[test]
    fn validation_reports_every_problem_with_its_path() {
        let cfg = TagConfig {
            dedup_window_ms: 0,
            watchlist: WatchlistConfig {
                cooldown_ms: 1,
                tags: vec![
                    WatchEntry {
                        tag: "AA".into(),
                        case_ref: "c1".into(),
                        note: String::new(),
                    },
                    WatchEntry {
                        tag: "aa".into(),
                        case_ref: " ".into(),
                        note: String::new(),
                    },
                    WatchEntry {
                        tag: "not hex".into(),
                        case_ref: "c3".into(),
                        note: String::new(),
                    },
                ],
            },
            theft: TheftConfig {
                window_ms: 0,
                cooldown_ms: 1,
                pairings: vec![
                    Pairing {
                        bike: "B1".into(),
                        keys: vec![],
                        armed: true,
                    },
                    Pairing {
                        bike: "B2".into(),
                        keys: vec!["b2".into(), "C1".into(), "c1".into(), "".into()],
                        armed: true,
                    },
                ],
            },
        };
        let errors = cfg.validate().unwrap_err();
        let paths: Vec<&str> = errors
            .iter()
            .map(|e| e.split(':').next().unwrap_or(""))
            .collect();
        assert_eq!(
            paths,
            [
                "dedup_window_ms",
                "watchlist.tags[1].case_ref",
                "watchlist.tags[1].tag",
                "watchlist.tags[2].tag",
                "theft.window_ms",
                "theft.pairings[0].keys",
                "theft.pairings[1].keys[0]",
                "theft.pairings[1].keys[2]",
                "theft.pairings[1].keys[3]",
            ],
            "{errors:#?}"
        );
    }
}
