//! Grouping alerts into cases: which alerts are "the same thing happening".
//!
//! The key is `site/rule/` plus what the rule fired about:
//!
//! - a tracked object: `camera:<id>/track:<n>` — track ids are only unique within a camera;
//! - a tag: `tag:<id>` — the same tag heard by two readers of the site is one case;
//! - otherwise the source: `camera:<id>` or `reader:<id>` (camera offline, crowds).
//!
//! Site, camera and reader ids cannot contain `/` (see [`protocol::validate_id`]); rule ids
//! and tag ids can in principle, so `%` and `/` in them are percent-escaped to keep keys
//! unambiguous.
//!
//! An alert joins an open case with its key when the alert's incident span
//! (`started_at ..= time`) comes within the window of the case's span (`first_alert_at ..=
//! last_alert_at`): a moment close to the last alert joins, and so does the `end` alert of a
//! long incident whose `start` the case already holds. The caller keeps the key → open-case
//! index and asks [`groups_with`] before [`Case::absorb`].

use protocol::{Alert, AlertSource, UtcMillis};

use super::model::{Case, MAX_ALERT_IDS};

/// The grouping key of alerts (see the module doc for the format).
#[derive(Debug, Clone, Copy)]
pub struct GroupKey;

impl GroupKey {
    /// The key of `alert`.
    pub fn of(alert: &Alert) -> String {
        let what = match (&alert.tag, alert.track, &alert.source) {
            (Some(tag), _, _) => format!("tag:{}", escape(&tag.id)),
            (None, Some(track), AlertSource::Camera(c)) => format!("camera:{c}/track:{track}"),
            (None, Some(track), AlertSource::Reader(r)) => format!("reader:{r}/track:{track}"),
            (None, None, AlertSource::Camera(c)) => format!("camera:{c}"),
            (None, None, AlertSource::Reader(r)) => format!("reader:{r}"),
            // Every patrol report is its own case: two things one member found are two jobs.
            (None, _, AlertSource::Person(p)) => format!("person:{p}/report:{}", alert.incident),
            // One case per episode of a hub condition: the next episode is news even while the
            // last one's case waits to be closed (the dispatcher keeps a restart from opening
            // a second case for one episode).
            (None, _, AlertSource::Hub(part)) => format!("hub:{part}/episode:{}", alert.incident),
        };
        format!("{}/{}/{what}", alert.site, escape(&alert.rule))
    }
}

fn escape(s: &str) -> String {
    s.replace('%', "%25").replace('/', "%2F")
}

/// Whether `alert` belongs in `case`: the case is not closed, the keys match, and the alert's
/// span comes within `window_ms` of the case's.
pub fn groups_with(case: &Case, alert: &Alert, window_ms: i64) -> bool {
    let starts = alert.started_at.min(alert.time);
    case.is_open()
        && case.key == GroupKey::of(alert)
        && starts.0 <= case.last_alert_at.0.saturating_add(window_ms)
        && alert.time.0 >= case.first_alert_at.0.saturating_sub(window_ms)
}

impl Case {
    /// Adds `alert` to the case: its id (the last [`MAX_ALERT_IDS`] are kept), the count, the
    /// time span, the highest severity. Returns `false`, changing nothing, for a closed case,
    /// an alert with another key, or an alert the case already holds (delivery is
    /// at-least-once).
    ///
    /// The window is the caller's check ([`groups_with`]). A higher severity does not move the
    /// running deadline; it applies from the next deadline on. Absorbing is not a transition
    /// and is not audited: the alert ids are the record.
    pub fn absorb(&mut self, alert: &Alert, now: UtcMillis) -> bool {
        if !self.is_open()
            || self.key != GroupKey::of(alert)
            || alert.id == self.first_alert
            || self.alert_ids.contains(&alert.id)
        {
            return false;
        }
        self.alert_ids.push_back(alert.id.clone());
        while self.alert_ids.len() > MAX_ALERT_IDS {
            self.alert_ids.pop_front();
        }
        self.count += 1;
        self.severity = self.severity.max(alert.severity);
        self.first_alert_at = self.first_alert_at.min(alert.time);
        self.last_alert_at = self.last_alert_at.max(alert.time);
        if self.location.is_none() {
            self.location = alert.location;
        }
        self.updated_at = now;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::super::{Action, Policy, Transition};
    use super::*;
    use protocol::{AlertPhase, Severity};

    #[test]
    fn group_key_is_site_rule_and_track_or_tag_or_source() {
        let mut a = alert(Severity::Major);
        assert_eq!(
            GroupKey::of(&a),
            "wuding-0001/night-yard/camera:gate-east/track:17"
        );
        a.track = None;
        assert_eq!(GroupKey::of(&a), "wuding-0001/night-yard/camera:gate-east");
        let tag: Alert = serde_json::from_value(serde_json::json!({
            "schema": 1, "id": "01KAQ5X3MV0000000000000002", "incident": "01KAQ5X3MV0000000000000002",
            "phase": "start", "site": "wuding-0001", "source": { "reader": "reader-north" },
            "kind": "watchlist", "severity": "major", "rule": "watch/list",
            "time": "2026-11-22T08:00:01.123Z", "started_at": "2026-11-22T08:00:01.123Z",
            "tag": { "id": "E2000017221101441890ABCD", "reader": "reader-north" }
        }))
        .unwrap();
        assert_eq!(
            GroupKey::of(&tag),
            "wuding-0001/watch%2Flist/tag:E2000017221101441890ABCD"
        );
    }

    #[test]
    fn track_ids_of_different_cameras_are_different_cases() {
        let a = alert(Severity::Major);
        let mut b = a.clone();
        b.source = AlertSource::Camera("gate-west".into());
        assert_ne!(GroupKey::of(&a), GroupKey::of(&b));
    }

    #[test]
    fn alerts_within_the_window_join_the_open_case_and_later_ones_do_not() {
        let (case, _) = open_critical(&duty_everywhere());
        let window = 10 * MIN;
        let near = alert_at("01KAQ5X3MV0000000000000010", Severity::Critical, at_min(9));
        let far = alert_at("01KAQ5X3MV0000000000000011", Severity::Critical, at_min(11));
        assert!(groups_with(&case, &near, window));
        assert!(!groups_with(&case, &far, window));
        let mut other_rule = near.clone();
        other_rule.rule = "loiter".into();
        assert!(!groups_with(&case, &other_rule, window));
    }

    #[test]
    fn end_alert_of_a_long_incident_joins_the_case_of_its_start() {
        let (case, _) = open_critical(&duty_everywhere());
        let mut end = alert_at("01KAQ5X3MV0000000000000012", Severity::Critical, at_min(45));
        end.phase = AlertPhase::End;
        end.started_at = T0;
        end.ended_at = Some(at_min(45));
        assert!(groups_with(&case, &end, 10 * MIN));
    }

    #[test]
    fn absorb_keeps_the_last_hundred_ids_counts_all_and_raises_severity() {
        let (mut case, _) = open_critical(&duty_everywhere());
        case.severity = Severity::Minor;
        for i in 0..150 {
            let sev = if i == 70 {
                Severity::Critical
            } else {
                Severity::Minor
            };
            let a = alert_at(&format!("A{i:03}"), sev, UtcMillis(T0.0 + i * 1000));
            assert!(case.absorb(&a, at_min(1)));
        }
        assert_eq!(case.count, 151);
        assert_eq!(case.alert_ids.len(), 100);
        assert_eq!(case.alert_ids.front().map(String::as_str), Some("A050"));
        assert_eq!(case.alert_ids.back().map(String::as_str), Some("A149"));
        assert_eq!(case.first_alert, ALERT_ID);
        assert_eq!(case.severity, Severity::Critical);
        assert_eq!(case.last_alert_at, UtcMillis(T0.0 + 149_000));
        assert_eq!(case.updated_at, at_min(1));
    }

    #[test]
    fn the_same_alert_delivered_twice_counts_once() {
        let (mut case, _) = open_critical(&duty_everywhere());
        assert!(!case.absorb(&alert(Severity::Critical), at_min(1)));
        let a = alert_at("A1", Severity::Critical, at_min(1));
        assert!(case.absorb(&a, at_min(1)));
        assert!(!case.absorb(&a, at_min(1)));
        assert_eq!(case.count, 2);
    }

    #[test]
    fn closed_case_never_absorbs() {
        let duty = duty_everywhere();
        let policy = Policy::default();
        let (mut case, _) = open_critical(&duty);
        for (action, who, note) in [
            (Action::Acknowledge, "micro-li", None),
            (Action::Resolve, "micro-li", Some("chased off")),
            (Action::Close, "operator-chen", None),
        ] {
            let mut t = Transition::new(action, who, at_min(1));
            t.note = note.map(str::to_owned);
            case.apply(t, &policy, &duty).unwrap();
        }
        let a = alert_at("A1", Severity::Critical, at_min(2));
        assert!(!groups_with(&case, &a, 10 * MIN));
        let before = case.clone();
        assert!(!case.absorb(&a, at_min(2)));
        assert_eq!(case, before);
    }
}
