//! Silences (planned quiet, e.g. maintenance) and inhibition (alerts implied by a bigger
//! problem). Both are decided before a case is opened: a silenced or inhibited alert is stored
//! and shown in the feed as such, but opens no case and notifies nobody.
//!
//! A silence matches on any combination of site, camera, rule, kind and cell (all given
//! matchers must hold; at least one is required, so no silence mutes the whole hub by
//! accident). The cell matcher needs where the alert's case would be located: the caller
//! (the dispatcher, which knows the grid) hands in that path, top cell first, so matching
//! stays pure.
//!
//! Stored form: the [`Silence`] as JSON. Silences of earlier hubs (`site` required, no other
//! matchers, no end or count) read as they are: every field added since has a default.

use std::fmt;

use protocol::{Alert, AlertKind, AlertSource, UtcMillis};
use serde::{Deserialize, Serialize};

use super::CellRef;

/// Longest reason, in characters (shown with every alert it mutes).
pub const MAX_REASON_CHARS: usize = 500;
/// Longest matcher value, in characters (site, camera, rule, cell codes are short ids).
const MAX_MATCHER_CHARS: usize = 128;

const PREFIX: &str = "S-";
/// Longest id part accepted from outside (a ULID is 26).
const MAX_ID_PART: usize = 64;

/// A silence's id: `S-` and a ULID made by the API. Typed, so it is never taken for a case or
/// alert id; one from outside (an API path) is checked by [`SilenceId::parse`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SilenceId(String);

impl SilenceId {
    /// The id of a new silence whose unique part (a ULID) is `ulid`.
    pub fn new(ulid: &str) -> Self {
        Self(format!("{PREFIX}{ulid}"))
    }

    /// An id from outside: `S-` then 1 to 64 ASCII letters, digits, `-` or `_`.
    pub fn parse(s: &str) -> Option<Self> {
        let rest = s.strip_prefix(PREFIX)?;
        let ok = !rest.is_empty()
            && rest.len() <= MAX_ID_PART
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        ok.then(|| Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SilenceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for SilenceId {
    /// For tests and stored silences of earlier hubs (whose ids were any caller's string).
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

/// An operator's silence: what it matches, for how long, why and who set it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Silence {
    pub id: SilenceId,
    /// Only alerts of this site.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// Only alerts from this camera (a reader or person of the same name is another source).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub camera: Option<String>,
    /// Only alerts of this rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Only alerts of this kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<AlertKind>,
    /// Only alerts whose case would be located in this cell (by code) or below it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cell: Option<String>,
    /// Start, inclusive.
    pub from: UtcMillis,
    /// Planned end, exclusive.
    pub until: UtcMillis,
    /// Why (shown with every alert it mutes).
    pub reason: String,
    /// Actor id of who set it.
    pub created_by: String,
    /// Ended early at (exclusive, like `until`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<UtcMillis>,
    /// Actor id of who ended it early.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_by: Option<String>,
    /// Alerts it muted (stored, no case).
    #[serde(default)]
    pub muted: u64,
}

impl Silence {
    /// When it stops muting: its planned end, or the moment it was ended early.
    pub fn end(&self) -> UtcMillis {
        match self.ended_at {
            Some(e) => e.min(self.until),
            None => self.until,
        }
    }

    /// Whether it is in force at `now`.
    pub fn active_at(&self, now: UtcMillis) -> bool {
        self.from <= now && now < self.end()
    }

    /// Whether it matches `alert`, at any time. `path`: the cells where the alert's case
    /// would be located, top first (only the cell matcher reads it).
    pub fn covers(&self, alert: &Alert, path: &[CellRef]) -> bool {
        let is = |m: &Option<String>, v: &str| m.as_deref().is_none_or(|m| m == v);
        is(&self.site, &alert.site)
            && is(&self.rule, &alert.rule)
            && self.kind.is_none_or(|k| k == alert.kind)
            && match (&self.camera, &alert.source) {
                (None, _) => true,
                (Some(c), AlertSource::Camera(a)) => c == a,
                (
                    Some(_),
                    AlertSource::Reader(_) | AlertSource::Person(_) | AlertSource::Hub(_),
                ) => false,
            }
            && self
                .cell
                .as_deref()
                .is_none_or(|c| path.iter().any(|p| p.code == c))
    }

    /// Whether the cell matcher is set (the caller then needs the alert's path).
    pub fn needs_path(&self) -> bool {
        self.cell.is_some()
    }

    /// Every problem as `(field, problem)`, for the API to refuse a bad silence.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let matchers = [
            ("site", &self.site),
            ("camera", &self.camera),
            ("rule", &self.rule),
            ("cell", &self.cell),
        ];
        if matchers.iter().all(|(_, m)| m.is_none()) && self.kind.is_none() {
            out.push((
                "matchers",
                "give at least one of site, camera, rule, kind, cell".to_owned(),
            ));
        }
        for (field, value) in matchers {
            match value {
                Some(v) if v.trim().is_empty() => {
                    out.push((field, "empty (leave it out to match any)".to_owned()));
                }
                Some(v) if v.chars().count() > MAX_MATCHER_CHARS => {
                    out.push((field, format!("longer than {MAX_MATCHER_CHARS} characters")));
                }
                _ => {}
            }
        }
        let reason = self.reason.trim();
        if reason.is_empty() {
            out.push((
                "reason",
                "empty: say why (shown with every muted alert)".into(),
            ));
        } else if reason.chars().count() > MAX_REASON_CHARS {
            out.push((
                "reason",
                format!("longer than {MAX_REASON_CHARS} characters"),
            ));
        }
        if self.created_by.trim().is_empty() {
            out.push(("created_by", "empty".to_owned()));
        }
        if self.until <= self.from {
            out.push((
                "until",
                format!("{} is not after from ({})", self.until, self.from),
            ));
        }
        out
    }
}

/// The silence that mutes `alert` at `now`, if any: matching it (`path` as for
/// [`Silence::covers`]), in force (`from <= now < end`). With several, the one that lasts
/// longest, so the feed can say until when the alert stays muted.
///
/// Judged at `now`, the hub's time, rather than at the alert's time: a silence is about what
/// operators want to hear now, and agents' clocks and delayed deliveries make alert times
/// a poor guide to that.
pub fn silenced_by<'a>(
    silences: &'a [Silence],
    alert: &Alert,
    path: &[CellRef],
    now: UtcMillis,
) -> Option<&'a Silence> {
    silences
        .iter()
        .filter(|s| s.active_at(now) && s.covers(alert, path))
        .max_by_key(|s| s.end())
}

/// Whether `alert` is implied by a bigger problem and should not open a case: a site that is
/// offline mutes its own `camera_offline` alerts, since its cameras look offline because the
/// whole site is (the site-offline status is what operators need to see).
pub fn inhibited(alert: &Alert, site_online: bool) -> bool {
    !site_online && alert.kind == AlertKind::CameraOffline
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;
    use protocol::Severity;

    /// A silence of `site` from minute `from` to minute `until`, no other matcher.
    fn silence(id: &str, site: Option<&str>, from: i64, until: i64) -> Silence {
        Silence {
            id: id.into(),
            site: site.map(str::to_owned),
            camera: None,
            rule: None,
            kind: None,
            cell: None,
            from: at_min(from),
            until: at_min(until),
            reason: "road works".into(),
            created_by: "operator-chen".into(),
            ended_at: None,
            ended_by: None,
            muted: 0,
        }
    }

    fn from(source: AlertSource) -> Alert {
        let mut a = alert(Severity::Major);
        a.source = source;
        a
    }

    fn hit<'a>(silences: &'a [Silence], a: &Alert, m: i64) -> Option<&'a str> {
        silenced_by(silences, a, &path(), at_min(m)).map(|s| s.id.as_str())
    }

    #[test]
    fn site_silence_covers_every_camera() {
        let silences = [silence("S1", Some(SITE), 0, 60)];
        for source in [
            AlertSource::Camera("gate-east".into()),
            AlertSource::Camera("gate-west".into()),
            AlertSource::Reader("reader-north".into()),
        ] {
            assert_eq!(
                hit(&silences, &from(source.clone()), 30),
                Some("S1"),
                "{source:?}"
            );
        }
        let mut elsewhere = alert(Severity::Major);
        elsewhere.site = "wuding-0002".into();
        assert_eq!(hit(&silences, &elsewhere, 30), None);
    }

    #[test]
    fn camera_silence_covers_only_that_camera() {
        let mut s = silence("S1", Some(SITE), 0, 60);
        s.camera = Some("gate-east".into());
        let silences = [s];
        assert_eq!(
            hit(
                &silences,
                &from(AlertSource::Camera("gate-east".into())),
                30
            ),
            Some("S1")
        );
        assert_eq!(
            hit(
                &silences,
                &from(AlertSource::Camera("gate-west".into())),
                30
            ),
            None
        );
        assert_eq!(
            hit(
                &silences,
                &from(AlertSource::Reader("gate-east".into())),
                30
            ),
            None,
            "a reader with the camera's name is another device"
        );
    }

    #[test]
    fn rule_silence_covers_only_that_rule_at_any_site() {
        let mut s = silence("S1", None, 0, 60);
        s.rule = Some("night-crossing".into());
        let silences = [s];
        let mut a = alert(Severity::Major);
        a.rule = "night-crossing".into();
        assert_eq!(hit(&silences, &a, 30), Some("S1"));
        a.site = "wuding-0002".into();
        assert_eq!(
            hit(&silences, &a, 30),
            Some("S1"),
            "no site matcher: any site"
        );
        a.rule = "zone-gate".into();
        assert_eq!(hit(&silences, &a, 30), None);
    }

    #[test]
    fn kind_silence_covers_only_that_kind() {
        let mut s = silence("S1", None, 0, 60);
        s.kind = Some(AlertKind::Line);
        let silences = [s];
        let mut a = alert(Severity::Info);
        a.kind = AlertKind::Line;
        assert_eq!(hit(&silences, &a, 30), Some("S1"));
        a.kind = AlertKind::Zone;
        assert_eq!(hit(&silences, &a, 30), None);
    }

    #[test]
    fn cell_silence_covers_alerts_located_in_the_cell_or_below() {
        let mut grid = silence("grid", None, 0, 60);
        grid.cell = Some(GRID.into());
        let silences = [grid];
        let a = alert(Severity::Major);
        // The micro-grid under GRID: covered.
        assert_eq!(hit(&silences, &a, 30), Some("grid"));
        // Located in another grid of the same village: not covered.
        assert_eq!(
            silenced_by(&silences, &a, &other_path(), at_min(30)).map(|s| s.id.as_str()),
            None
        );
        // No path known (nothing located): a cell silence cannot claim it.
        assert_eq!(silenced_by(&silences, &a, &[], at_min(30)), None);
        assert!(silences[0].needs_path());
        assert!(!silence("x", Some(SITE), 0, 1).needs_path());
    }

    #[test]
    fn every_given_matcher_must_hold() {
        let mut s = silence("S1", Some(SITE), 0, 60);
        s.camera = Some("gate-east".into());
        s.kind = Some(AlertKind::Zone);
        s.rule = Some("zone-gate".into());
        s.cell = Some(MICRO.into());
        let silences = [s];
        let mut a = alert(Severity::Major);
        a.kind = AlertKind::Zone;
        a.rule = "zone-gate".into();
        assert_eq!(hit(&silences, &a, 30), Some("S1"), "all five hold");
        let mut wrong_kind = a.clone();
        wrong_kind.kind = AlertKind::Line;
        assert_eq!(hit(&silences, &wrong_kind, 30), None);
        let mut wrong_rule = a.clone();
        wrong_rule.rule = "other".into();
        assert_eq!(hit(&silences, &wrong_rule, 30), None);
        let wrong_camera = {
            let mut x = a.clone();
            x.source = AlertSource::Camera("gate-west".into());
            x
        };
        assert_eq!(hit(&silences, &wrong_camera, 30), None);
        assert_eq!(
            silenced_by(&silences, &a, &other_path(), at_min(30)),
            None,
            "wrong cell"
        );
    }

    #[test]
    fn expired_future_and_other_site_silences_do_not_match() {
        let silences = [
            silence("past", Some(SITE), 0, 10),
            silence("future", Some(SITE), 40, 60),
            silence("elsewhere", Some("wuding-0002"), 0, 60),
        ];
        let a = alert(Severity::Major);
        assert_eq!(hit(&silences, &a, 10), None, "until is exclusive");
        assert_eq!(hit(&silences, &a, 30), None);
        assert_eq!(hit(&silences, &a, 40), Some("future"), "from is inclusive");
    }

    #[test]
    fn a_silence_ended_early_stops_muting_at_its_end() {
        let mut s = silence("S1", Some(SITE), 0, 60);
        s.ended_at = Some(at_min(20));
        s.ended_by = Some("operator-li".into());
        let silences = [s];
        let a = alert(Severity::Major);
        assert_eq!(hit(&silences, &a, 19), Some("S1"));
        assert_eq!(hit(&silences, &a, 20), None, "ended_at is exclusive");
        assert_eq!(hit(&silences, &a, 30), None);
        assert_eq!(silences[0].end(), at_min(20));
    }

    #[test]
    fn of_several_silences_the_longest_lasting_is_reported() {
        let mut long = silence("long", Some(SITE), 0, 90);
        long.camera = Some("gate-east".into());
        let mut ended = silence("ended", Some(SITE), 0, 120);
        ended.ended_at = Some(at_min(30));
        let silences = [silence("short", Some(SITE), 0, 20), long, ended];
        assert_eq!(hit(&silences, &alert(Severity::Major), 5), Some("long"));
    }

    #[test]
    fn a_silence_stored_by_an_earlier_hub_still_reads() {
        let old = r#"{"id":"S-1","site":"wuding-0001","camera":"gate-east",
            "from":"2026-11-22T08:00:00.000Z","until":"2026-11-22T09:00:00.000Z",
            "reason":"road works","created_by":"operator-chen"}"#;
        let s: Silence = serde_json::from_str(old).unwrap();
        assert_eq!(s.site.as_deref(), Some(SITE));
        assert_eq!(s.camera.as_deref(), Some("gate-east"));
        assert_eq!(
            (s.rule, s.kind, s.cell, s.ended_at, s.muted),
            (None, None, None, None, 0)
        );
        assert_eq!(s.until, at_min(60));
    }

    #[test]
    fn silence_ids_from_outside_are_checked() {
        assert_eq!(
            SilenceId::parse("S-01KAQ5X3MV0000000000000001").map(|i| i.to_string()),
            Some("S-01KAQ5X3MV0000000000000001".to_owned())
        );
        for bad in ["", "S-", "C-01KAQ5", "S-a/b", "S-a b"] {
            assert_eq!(SilenceId::parse(bad), None, "{bad:?}");
        }
        assert_eq!(SilenceId::parse(&format!("S-{}", "a".repeat(65))), None);
    }

    #[test]
    fn offline_site_inhibits_its_camera_offline_alerts() {
        let mut offline = alert(Severity::Major);
        offline.kind = AlertKind::CameraOffline;
        offline.rule = "camera_offline".into();
        assert!(inhibited(&offline, false));
        assert!(!inhibited(&offline, true));
        assert!(
            !inhibited(&alert(Severity::Major), false),
            "a person in a zone is news even from an offline site (delivered late)"
        );
    }

    #[test]
    fn a_silence_lists_every_problem() {
        let mut s = silence("S-1", None, 10, 10);
        s.reason = " ".into();
        s.created_by = String::new();
        let fields: Vec<&str> = s.problems().iter().map(|p| p.0).collect();
        assert_eq!(fields, ["matchers", "reason", "created_by", "until"]);
        assert_eq!(
            s.problems()[3].1,
            "2026-11-22T08:10:00.000Z is not after from (2026-11-22T08:10:00.000Z)"
        );

        let mut s = silence("S-1", Some(" "), 0, 10);
        s.camera = Some("c".repeat(129));
        s.reason = "r".repeat(501);
        let fields: Vec<&str> = s.problems().iter().map(|p| p.0).collect();
        assert_eq!(fields, ["site", "camera", "reason"]);

        let mut ok = silence("S-1", None, 0, 10);
        ok.kind = Some(AlertKind::Line);
        assert!(ok.problems().is_empty(), "{:?}", ok.problems());
    }
}
