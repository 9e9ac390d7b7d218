//! [`AlertBuilder`]: a valid alert in one line, changed only where the test cares, so no test
//! spells out the alert's two dozen fields (and none breaks when a field is added).

use protocol::alert::{Location, Snapshot};
use protocol::{Alert, AlertKind, AlertPhase, AlertSource, Severity, UtcMillis};

/// A ULID-shaped alert id made from `n` (26 Crockford characters): distinct `n`, distinct ids.
pub fn ulid(n: u64) -> String {
    format!("01KAQ5X3MV{:016}", n % 10_u64.pow(16))
}

/// Builds a valid alert. [`AlertBuilder::new`] is a zone `start` alert, and each method
/// changes one thing; a field with no method is set on the built [`Alert`] itself.
#[derive(Debug, Clone)]
pub struct AlertBuilder {
    alert: Alert,
}

impl AlertBuilder {
    /// A zone `start` alert of `site`, now: camera `cam-1`, rule `night-yard`, a person (score
    /// 0.9) tracked as `n`, severity major, no location, no snapshot. Its id and incident are
    /// [`ulid`]`(n)`.
    pub fn new(site: &str, n: u64) -> Self {
        let t = UtcMillis::now();
        let id = ulid(n);
        Self {
            alert: Alert {
                schema: protocol::SCHEMA_VERSION,
                incident: id.clone(),
                id,
                phase: AlertPhase::Start,
                site: site.to_owned(),
                source: AlertSource::Camera("cam-1".into()),
                kind: AlertKind::Zone,
                severity: Severity::Major,
                rule: "night-yard".into(),
                time: t,
                started_at: t,
                ended_at: None,
                location: None,
                track: Some(n),
                label: Some("person".into()),
                score: Some(0.9),
                direction: None,
                count: None,
                detections: Vec::new(),
                tag: None,
                model: None,
                detail: None,
                snapshot: None,
            },
        }
    }

    /// Another id (and incident: still a `start`).
    pub fn id(mut self, id: &str) -> Self {
        id.clone_into(&mut self.alert.id);
        id.clone_into(&mut self.alert.incident);
        self
    }

    pub fn severity(mut self, severity: Severity) -> Self {
        self.alert.severity = severity;
        self
    }

    /// When it happened and when its incident started (a snapshot added later is taken then).
    pub fn at(mut self, t: UtcMillis) -> Self {
        self.alert.time = t;
        self.alert.started_at = t;
        self
    }

    /// Where the camera is (WGS-84 degrees).
    pub fn location(mut self, lon: f64, lat: f64) -> Self {
        self.alert.location = Some(Location { lon, lat });
        self
    }

    pub fn camera(mut self, camera: &str) -> Self {
        self.alert.source = AlertSource::Camera(camera.into());
        self
    }

    pub fn rule(mut self, rule: &str) -> Self {
        rule.clone_into(&mut self.alert.rule);
        self
    }

    pub fn kind(mut self, kind: AlertKind) -> Self {
        self.alert.kind = kind;
        self
    }

    /// A 640×360 snapshot of `jpeg` from the alert's camera, taken at the alert's time (call
    /// after [`Self::camera`] and [`Self::at`]).
    pub fn snapshot(mut self, jpeg: Vec<u8>) -> Self {
        let camera = match &self.alert.source {
            AlertSource::Camera(c) => c.clone(),
            _ => "cam-1".into(),
        };
        self.alert.snapshot = Some(Snapshot {
            camera,
            time: self.alert.time,
            width: 640,
            height: 360,
            jpeg,
        });
        self
    }

    pub fn build(self) -> Alert {
        self.alert
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_alert_is_valid_and_ids_differ_by_n() {
        let plain = AlertBuilder::new("wd-demo-001", 1).build();
        plain.validate().unwrap();
        let full = AlertBuilder::new("wd-demo-001", 2)
            .severity(Severity::Critical)
            .at(UtcMillis(1_795_334_400_000))
            .location(102.404, 25.53)
            .camera("gate")
            .rule("gate-zone")
            .snapshot(vec![0xFF, 0xD8, 0xFF, 0xD9])
            .build();
        full.validate().unwrap();
        assert_ne!(plain.id, full.id);
        assert_eq!(full.incident, full.id);
        let snap = full.snapshot.as_ref().unwrap();
        assert_eq!((snap.camera.as_str(), snap.time), ("gate", full.time));
        assert_eq!(ulid(7).len(), 26);
    }
}
