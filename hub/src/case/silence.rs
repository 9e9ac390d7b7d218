//! Silences (planned quiet, e.g. maintenance) and inhibition (alerts implied by a bigger
//! problem). Both are decided before a case is opened: a silenced or inhibited alert is stored
//! and shown in the feed as such, but opens no case and notifies nobody.

use protocol::{Alert, AlertKind, AlertSource, UtcMillis};
use serde::{Deserialize, Serialize};

/// An operator's silence of a site, or of one camera of it, for a time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Silence {
    /// Id (given by the caller).
    pub id: String,
    /// The site it covers.
    pub site: String,
    /// `None`: every source of the site (cameras and readers); `Some`: only this camera.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub camera: Option<String>,
    /// Start, inclusive.
    pub from: UtcMillis,
    /// End, exclusive.
    pub until: UtcMillis,
    /// Why (shown with every alert it mutes).
    pub reason: String,
    /// Who set it.
    pub created_by: String,
}

impl Silence {
    /// Whether it is in force at `now`.
    pub fn active_at(&self, now: UtcMillis) -> bool {
        self.from <= now && now < self.until
    }

    /// Whether it covers the source of `alert`, at any time.
    pub fn covers(&self, alert: &Alert) -> bool {
        self.site == alert.site
            && match (&self.camera, &alert.source) {
                (None, _) => true,
                (Some(c), AlertSource::Camera(a)) => c == a,
                (
                    Some(_),
                    AlertSource::Reader(_) | AlertSource::Person(_) | AlertSource::Hub(_),
                ) => false,
            }
    }

    /// Every problem, `field: problem`, for the API to refuse a bad silence.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (field, value) in [
            ("id", &self.id),
            ("site", &self.site),
            ("reason", &self.reason),
            ("created_by", &self.created_by),
        ] {
            if value.trim().is_empty() {
                out.push(format!("{field}: empty"));
            }
        }
        if self.camera.as_ref().is_some_and(|c| c.trim().is_empty()) {
            out.push("camera: empty (leave it out to silence the whole site)".to_owned());
        }
        if self.until <= self.from {
            out.push(format!(
                "until: {} is not after from ({})",
                self.until, self.from
            ));
        }
        out
    }
}

/// The silence that mutes `alert` at `now`, if any: same site, covering its source, in force
/// (`from <= now < until`). With several, the one that lasts longest, so the feed can say
/// until when the alert stays muted.
///
/// Judged at `now`, the hub's time, rather than at the alert's time: a silence is about what
/// operators want to hear now, and agents' clocks and delayed deliveries make alert times
/// a poor guide to that.
pub fn silenced_by<'a>(
    silences: &'a [Silence],
    alert: &Alert,
    now: UtcMillis,
) -> Option<&'a Silence> {
    silences
        .iter()
        .filter(|s| s.active_at(now) && s.covers(alert))
        .max_by_key(|s| s.until)
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

    fn silence(id: &str, site: &str, camera: Option<&str>, from: i64, until: i64) -> Silence {
        Silence {
            id: id.into(),
            site: site.into(),
            camera: camera.map(str::to_owned),
            from: at_min(from),
            until: at_min(until),
            reason: "road works".into(),
            created_by: "operator-chen".into(),
        }
    }

    fn from(source: AlertSource) -> Alert {
        let mut a = alert(Severity::Major);
        a.source = source;
        a
    }

    #[test]
    fn site_silence_covers_every_camera() {
        let silences = [silence("S1", SITE, None, 0, 60)];
        for source in [
            AlertSource::Camera("gate-east".into()),
            AlertSource::Camera("gate-west".into()),
            AlertSource::Reader("reader-north".into()),
        ] {
            let hit = silenced_by(&silences, &from(source.clone()), at_min(30));
            assert_eq!(hit.map(|s| s.id.as_str()), Some("S1"), "{source:?}");
        }
    }

    #[test]
    fn camera_silence_covers_only_that_camera() {
        let silences = [silence("S1", SITE, Some("gate-east"), 0, 60)];
        let now = at_min(30);
        assert!(
            silenced_by(
                &silences,
                &from(AlertSource::Camera("gate-east".into())),
                now
            )
            .is_some()
        );
        assert!(
            silenced_by(
                &silences,
                &from(AlertSource::Camera("gate-west".into())),
                now
            )
            .is_none()
        );
        assert!(
            silenced_by(
                &silences,
                &from(AlertSource::Reader("gate-east".into())),
                now
            )
            .is_none(),
            "a reader with the camera's name is another device"
        );
    }

    #[test]
    fn expired_future_and_other_site_silences_do_not_match() {
        let silences = [
            silence("past", SITE, None, 0, 10),
            silence("future", SITE, None, 40, 60),
            silence("elsewhere", "wuding-0002", None, 0, 60),
        ];
        let a = alert(Severity::Major);
        assert!(
            silenced_by(&silences, &a, at_min(10)).is_none(),
            "until is exclusive"
        );
        assert!(silenced_by(&silences, &a, at_min(30)).is_none());
        assert_eq!(
            silenced_by(&silences, &a, at_min(40)).map(|s| s.id.as_str()),
            Some("future"),
            "from is inclusive"
        );
    }

    #[test]
    fn of_several_silences_the_longest_lasting_is_reported() {
        let silences = [
            silence("short", SITE, None, 0, 20),
            silence("long", SITE, Some("gate-east"), 0, 90),
        ];
        let hit = silenced_by(&silences, &alert(Severity::Major), at_min(5));
        assert_eq!(hit.map(|s| s.id.as_str()), Some("long"));
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
        let mut s = silence("", SITE, Some(" "), 10, 10);
        s.reason = String::new();
        assert_eq!(
            s.problems(),
            [
                "id: empty",
                "reason: empty",
                "camera: empty (leave it out to silence the whole site)",
                "until: 2026-11-22T08:10:00.000Z is not after from (2026-11-22T08:10:00.000Z)",
            ]
        );
    }
}
