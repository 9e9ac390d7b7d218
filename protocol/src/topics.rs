//! MQTT topic names, built in one place so the agent, the hub and the tests cannot disagree.
//!
//! Everything lives under a configurable prefix (default [`DEFAULT_PREFIX`]):
//! `{prefix}/site/{site}/{alert|status|sighting|cmd|cmd/reply}` and
//! `{prefix}/person/{person}/notify`. Ids that go into a topic level are checked with
//! [`validate_id`] wherever they enter the system (configs, decoded payloads), so the builders
//! here do not check them again.

use crate::validate::ValidationError;

/// The topic prefix used unless configured otherwise.
pub const DEFAULT_PREFIX: &str = "se/v1";

/// Longest id allowed in a topic level; keeps topics short and ids readable.
const MAX_ID_CHARS: usize = 64;

/// A prefix that is not usable in topic names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// The prefix is the empty string.
    #[error("topic prefix: empty")]
    Empty,
    /// MQTT wildcards are not allowed in topic names we publish on.
    #[error("topic prefix: {prefix:?} contains an MQTT wildcard ('+' or '#')")]
    Wildcard { prefix: String },
    /// MQTT forbids NUL in topic names.
    #[error("topic prefix: {prefix:?} contains a NUL character")]
    Nul { prefix: String },
    /// A leading '/' makes an empty first level, a trailing one an empty level before `site`.
    #[error("topic prefix: {prefix:?} starts or ends with '/'")]
    Slash { prefix: String },
    /// `a//b`: an empty level is legal MQTT but almost always a typo.
    #[error("topic prefix: {prefix:?} has an empty level")]
    EmptyLevel { prefix: String },
}

/// What a topic under `{prefix}/site/{site}/` carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TopicKind {
    /// `alert`: [`crate::Alert`], agent → hub.
    Alert,
    /// `status`: [`crate::Status`], agent → hub, retained.
    Status,
    /// `sighting`: [`crate::SightingBatch`], agent → hub.
    Sighting,
    /// `cmd`: [`crate::SignedCommand`], hub → agent.
    Cmd,
    /// `cmd/reply`: [`crate::CommandReply`], agent → hub.
    CmdReply,
}

impl TopicKind {
    /// The topic levels after `{prefix}/site/{site}/`.
    fn suffix(self) -> &'static str {
        match self {
            Self::Alert => "alert",
            Self::Status => "status",
            Self::Sighting => "sighting",
            Self::Cmd => "cmd",
            Self::CmdReply => "cmd/reply",
        }
    }

    const ALL: [Self; 5] = [
        Self::Alert,
        Self::Status,
        Self::Sighting,
        Self::Cmd,
        Self::CmdReply,
    ];
}

/// Topic names under one validated prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    prefix: String,
}

impl Default for Topics {
    fn default() -> Self {
        Self {
            prefix: DEFAULT_PREFIX.to_string(),
        }
    }
}

impl Topics {
    /// Validates the prefix: non-empty, no '+', '#', NUL, no leading or trailing '/', no empty
    /// level.
    pub fn new(prefix: &str) -> Result<Self, TopicError> {
        let owned = || prefix.to_string();
        if prefix.is_empty() {
            return Err(TopicError::Empty);
        }
        if prefix.contains(['+', '#']) {
            return Err(TopicError::Wildcard { prefix: owned() });
        }
        if prefix.contains('\0') {
            return Err(TopicError::Nul { prefix: owned() });
        }
        if prefix.starts_with('/') || prefix.ends_with('/') {
            return Err(TopicError::Slash { prefix: owned() });
        }
        if prefix.split('/').any(str::is_empty) {
            return Err(TopicError::EmptyLevel { prefix: owned() });
        }
        Ok(Self { prefix: owned() })
    }

    /// The prefix, without a trailing '/'.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn site_topic(&self, site: &str, kind: TopicKind) -> String {
        format!("{}/site/{site}/{}", self.prefix, kind.suffix())
    }

    /// `{prefix}/site/{site}/alert`
    pub fn alert(&self, site: &str) -> String {
        self.site_topic(site, TopicKind::Alert)
    }

    /// `{prefix}/site/{site}/status`
    pub fn status(&self, site: &str) -> String {
        self.site_topic(site, TopicKind::Status)
    }

    /// `{prefix}/site/{site}/sighting`
    pub fn sighting(&self, site: &str) -> String {
        self.site_topic(site, TopicKind::Sighting)
    }

    /// `{prefix}/site/{site}/cmd`
    pub fn cmd(&self, site: &str) -> String {
        self.site_topic(site, TopicKind::Cmd)
    }

    /// `{prefix}/site/{site}/cmd/reply`
    pub fn cmd_reply(&self, site: &str) -> String {
        self.site_topic(site, TopicKind::CmdReply)
    }

    /// `{prefix}/person/{person}/notify`
    pub fn notify(&self, person: &str) -> String {
        format!("{}/person/{person}/notify", self.prefix)
    }

    /// `{prefix}/site/+/alert`: every site's alerts, for the hub.
    pub fn all_alerts(&self) -> String {
        self.site_topic("+", TopicKind::Alert)
    }

    /// `{prefix}/site/+/status`
    pub fn all_status(&self) -> String {
        self.site_topic("+", TopicKind::Status)
    }

    /// `{prefix}/site/+/sighting`
    pub fn all_sightings(&self) -> String {
        self.site_topic("+", TopicKind::Sighting)
    }

    /// `{prefix}/site/+/cmd/reply`
    pub fn all_cmd_replies(&self) -> String {
        self.site_topic("+", TopicKind::CmdReply)
    }

    /// Parses `{prefix}/site/{site}/{kind...}` back into (site, kind); `None` for a topic that is
    /// not ours, including one whose site level is not a valid id (so a hub never files a
    /// message under a site it could not have configured).
    pub fn parse(&self, topic: &str) -> Option<(String, TopicKind)> {
        let rest = topic
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix("/site/")?;
        let (site, suffix) = rest.split_once('/')?;
        validate_id("site", site).ok()?;
        let kind = TopicKind::ALL.into_iter().find(|k| k.suffix() == suffix)?;
        Some((site.to_string(), kind))
    }
}

/// Site, camera, reader and person ids: 1..=64 chars of `[A-Za-z0-9_.-]`.
///
/// Ids end up in topic levels and file names, so the alphabet keeps out MQTT wildcards, '/',
/// spaces and anything that would need quoting. `field` names the id in the problem.
pub fn validate_id(field: &str, value: &str) -> Result<(), ValidationError> {
    let problem = if value.is_empty() {
        Some("empty".to_string())
    } else if value.chars().count() > MAX_ID_CHARS {
        Some(format!("{} chars > {MAX_ID_CHARS}", value.chars().count()))
    } else {
        let bad = value
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')));
        bad.map(|bad| {
            format!(
                "{value:?} contains {bad:?}; ids are 1..={MAX_ID_CHARS} chars of [A-Za-z0-9_.-]"
            )
        })
    };
    match problem {
        None => Ok(()),
        Some(p) => Err(ValidationError {
            problems: vec![format!("{field}: {p}")],
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_every_topic_under_the_prefix() {
        let t = Topics::default();
        assert_eq!(t.prefix(), "se/v1");
        assert_eq!(t.alert("s1"), "se/v1/site/s1/alert");
        assert_eq!(t.status("s1"), "se/v1/site/s1/status");
        assert_eq!(t.sighting("s1"), "se/v1/site/s1/sighting");
        assert_eq!(t.cmd("s1"), "se/v1/site/s1/cmd");
        assert_eq!(t.cmd_reply("s1"), "se/v1/site/s1/cmd/reply");
        assert_eq!(t.notify("p7"), "se/v1/person/p7/notify");
        assert_eq!(t.all_alerts(), "se/v1/site/+/alert");
        assert_eq!(t.all_status(), "se/v1/site/+/status");
        assert_eq!(t.all_sightings(), "se/v1/site/+/sighting");
        assert_eq!(t.all_cmd_replies(), "se/v1/site/+/cmd/reply");
        assert_eq!(Topics::new("a/b").unwrap().alert("x"), "a/b/site/x/alert");
    }

    #[test]
    fn refuses_bad_prefixes() {
        assert_eq!(Topics::new(""), Err(TopicError::Empty));
        for (bad, want) in [
            ("se/+", "wildcard"),
            ("se/#", "wildcard"),
            ("se\0x", "NUL"),
            ("/se", "starts or ends"),
            ("se/", "starts or ends"),
            ("se//v1", "empty level"),
        ] {
            let err = Topics::new(bad).unwrap_err().to_string();
            assert!(
                err.contains(want) && err.starts_with("topic prefix"),
                "{err}"
            );
        }
    }

    #[test]
    fn parses_its_own_topics_and_nothing_else() {
        let t = Topics::new("x/y").unwrap();
        for kind in TopicKind::ALL {
            let topic = t.site_topic("site-1", kind);
            assert_eq!(
                t.parse(&topic),
                Some(("site-1".to_string(), kind)),
                "{topic}"
            );
        }
        for other in [
            "se/v1/site/s/alert",
            "x/y/site/s/alarm",
            "x/y/site/s/cmd/reply/more",
            "x/y/site/s",
            "x/y/person/p/notify",
            "x/y/site//alert",
            "x/y/site/+/alert",
            "x/yz/site/s/alert",
        ] {
            assert_eq!(t.parse(other), None, "{other}");
        }
    }

    #[test]
    fn ids_are_short_and_topic_safe() {
        assert!(validate_id("site", "Site_1.a-b").is_ok());
        let long = "a".repeat(65);
        for (bad, want) in [
            ("", "site: empty"),
            (long.as_str(), "site: 65 chars > 64"),
            ("a/b", "site: \"a/b\" contains '/'"),
            ("a+", "contains '+'"),
            ("a b", "contains ' '"),
        ] {
            let err = validate_id("site", bad).unwrap_err();
            assert_eq!(err.problems.len(), 1);
            assert!(err.problems[0].contains(want), "{err}");
        }
    }
}
