//! Checks of received messages beyond what the types enforce, and the `decode_*` functions
//! that every receiver uses: size limit, schema version, JSON, then these checks.
//!
//! Validation lists every problem at once as `field.path: message`, so whoever broke a sender
//! sees all of it from one rejected message instead of fixing one field per round trip.

use std::collections::HashSet;
use std::fmt::Display;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::SCHEMA_VERSION;
use crate::alert::{Alert, AlertKind, AlertPhase, AlertSource};
use crate::command::{Command, CommandBody, CommandReply};
use crate::limits::{
    MAX_ALERT_BYTES, MAX_COMMAND_BYTES, MAX_DETECTIONS, MAX_SIGHTING_BATCH_BYTES,
    MAX_SIGHTINGS_PER_BATCH, MAX_SNAPSHOT_JPEG_BYTES, MAX_STATUS_BYTES,
};
use crate::sighting::SightingBatch;
use crate::status::Status;
use crate::topics::validate_id;

/// Everything wrong with one message, each as `field.path: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", problems.join("; "))]
pub struct ValidationError {
    pub problems: Vec<String>,
}

/// Why a received payload was refused. `what` names the message kind (`alert`, `status`, ...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("{what}: payload of {size} bytes > {max} bytes")]
    TooLarge {
        what: &'static str,
        size: usize,
        max: usize,
    },
    /// Not JSON, or not of the expected shape; `detail` starts with the JSON path concerned.
    #[error("{what}: bad JSON: {detail}")]
    Json { what: &'static str, detail: String },
    #[error("{what}: schema: version {found} is not supported (this build reads {supported})")]
    UnknownSchema {
        what: &'static str,
        found: u32,
        supported: u32,
    },
    #[error("{what}: invalid: {error}")]
    Invalid {
        what: &'static str,
        error: ValidationError,
    },
}

/// Size limit, schema peek, JSON with the path of any error, then [`Alert::validate`].
pub fn decode_alert(payload: &[u8]) -> Result<Alert, DecodeError> {
    decode("alert", MAX_ALERT_BYTES, payload, Alert::validate)
}

/// Size limit, schema peek, JSON with the path of any error, then [`Status::validate`].
pub fn decode_status(payload: &[u8]) -> Result<Status, DecodeError> {
    decode("status", MAX_STATUS_BYTES, payload, Status::validate)
}

/// Size limit, schema peek, JSON with the path of any error, then [`SightingBatch::validate`].
pub fn decode_sightings(payload: &[u8]) -> Result<SightingBatch, DecodeError> {
    decode(
        "sighting batch",
        MAX_SIGHTING_BATCH_BYTES,
        payload,
        SightingBatch::validate,
    )
}

/// Size limit, schema peek, JSON with the path of any error, then [`CommandReply::validate`].
pub fn decode_command_reply(payload: &[u8]) -> Result<CommandReply, DecodeError> {
    decode(
        "command reply",
        MAX_COMMAND_BYTES,
        payload,
        CommandReply::validate,
    )
}

fn decode<T: DeserializeOwned>(
    what: &'static str,
    max: usize,
    payload: &[u8],
    validate: impl Fn(&T) -> Result<(), ValidationError>,
) -> Result<T, DecodeError> {
    if payload.len() > max {
        return Err(DecodeError::TooLarge {
            what,
            size: payload.len(),
            max,
        });
    }
    let value = parse_json::<T>(payload).map_err(|e| match e {
        ParseError::UnknownSchema { found, supported } => DecodeError::UnknownSchema {
            what,
            found,
            supported,
        },
        ParseError::Json { detail } => DecodeError::Json { what, detail },
    })?;
    validate(&value).map_err(|error| DecodeError::Invalid { what, error })?;
    Ok(value)
}

/// Why [`parse_json`] failed.
pub(crate) enum ParseError {
    UnknownSchema {
        found: u32,
        supported: u32,
    },
    /// The JSON path, then serde_json's message (path left out for errors at the root).
    Json {
        detail: String,
    },
}

/// Parses JSON after peeking at its `schema` field, so that a message of another version gets
/// a clear "unknown schema" instead of whichever field error its new shape happens to cause.
pub(crate) fn parse_json<T: DeserializeOwned>(payload: &[u8]) -> Result<T, ParseError> {
    /// Reads only `schema`; serde skips every other field without building it.
    #[derive(Deserialize)]
    struct Peek {
        schema: Option<u32>,
    }
    // A payload without a readable u32 schema falls through to the full parse, which then
    // names the problem with its path.
    if let Ok(Peek {
        schema: Some(found),
    }) = serde_json::from_slice::<Peek>(payload)
        && found != SCHEMA_VERSION
    {
        return Err(ParseError::UnknownSchema {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    let de = &mut serde_json::Deserializer::from_slice(payload);
    serde_path_to_error::deserialize(de).map_err(|e| ParseError::Json {
        detail: json_detail(&e),
    })
}

/// `path: message`, or just the message for errors at the root (syntax errors, wrong top type).
pub(crate) fn json_detail(e: &serde_path_to_error::Error<serde_json::Error>) -> String {
    let path = e.path().to_string();
    if path == "." {
        e.inner().to_string()
    } else {
        format!("{path}: {}", e.inner())
    }
}

/// Collects problems while checking one message.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn add(&mut self, field: impl Display, message: impl Display) {
        self.0.push(format!("{field}: {message}"));
    }

    fn schema(&mut self, schema: u32) {
        if schema != SCHEMA_VERSION {
            self.add(
                "schema",
                format!("version {schema} is not supported (this build reads {SCHEMA_VERSION})"),
            );
        }
    }

    fn id(&mut self, field: &str, value: &str) {
        if let Err(e) = validate_id(field, value) {
            self.0.extend(e.problems);
        }
    }

    fn ulid(&mut self, field: &str, value: &str) {
        // Only the canonical (upper-case) spelling: ids are compared as strings for
        // idempotency, so a lower-case twin of an id must not pass as a different one.
        let canonical = ulid::Ulid::from_string(value).is_ok_and(|u| u.to_string() == value);
        if !canonical {
            self.add(field, format!("{value:?} is not a ULID"));
        }
    }

    fn non_empty(&mut self, field: impl Display, value: &str) {
        if value.is_empty() {
            self.add(field, "empty");
        }
    }

    fn unit(&mut self, field: impl Display, value: f32) {
        // `contains` is false for NaN, so NaN is reported too.
        if !(0.0..=1.0).contains(&value) {
            self.add(field, format!("{value} outside 0..=1"));
        }
    }

    fn non_negative(&mut self, field: impl Display, value: f32) {
        if !(value.is_finite() && value >= 0.0) {
            self.add(field, format!("{value} is not a finite number >= 0"));
        }
    }

    fn finish(self) -> Result<(), ValidationError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ValidationError { problems: self.0 })
        }
    }
}

fn kind_name(kind: AlertKind) -> &'static str {
    match kind {
        AlertKind::Zone => "zone",
        AlertKind::Line => "line",
        AlertKind::Loiter => "loiter",
        AlertKind::Crowd => "crowd",
        AlertKind::CameraOffline => "camera_offline",
        AlertKind::Watchlist => "watchlist",
        AlertKind::PossibleTheft => "possible_theft",
        AlertKind::Patrol => "patrol",
        AlertKind::HubHealth => "hub_health",
        AlertKind::SiteHealth => "site_health",
    }
}

impl Alert {
    /// Checks everything the types do not, listing every problem.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let mut p = Problems::default();
        p.schema(self.schema);
        p.ulid("id", &self.id);
        p.ulid("incident", &self.incident);
        if self.phase == AlertPhase::Start && self.incident != self.id {
            p.add("incident", "a start alert's incident must be its own id");
        }
        p.id("site", &self.site);
        let tag_kind = matches!(self.kind, AlertKind::Watchlist | AlertKind::PossibleTheft);
        // Kinds only the hub raises, about itself or about a site.
        let hub_kind = matches!(self.kind, AlertKind::HubHealth | AlertKind::SiteHealth);
        let kind = kind_name(self.kind);
        match &self.source {
            AlertSource::Camera(id) => {
                p.id("source.camera", id);
                if tag_kind || self.kind == AlertKind::Patrol {
                    p.add("source", format!("a {kind} alert comes from a reader"));
                }
            }
            AlertSource::Reader(id) => {
                p.id("source.reader", id);
                if !tag_kind && !hub_kind {
                    p.add("source", format!("a {kind} alert comes from a camera"));
                }
            }
            AlertSource::Person(id) => {
                p.id("source.person", id);
                if self.kind != AlertKind::Patrol && !hub_kind {
                    p.add(
                        "source",
                        format!("a {kind} alert does not come from a person"),
                    );
                }
            }
            AlertSource::Hub(part) => {
                p.id("source.hub", part);
                if !hub_kind {
                    p.add(
                        "source",
                        format!("a {kind} alert does not come from the hub"),
                    );
                }
            }
        }
        if self.kind == AlertKind::Patrol && !matches!(self.source, AlertSource::Person(_)) {
            p.add("source", "a patrol report comes from a person");
        }
        if hub_kind && !matches!(self.source, AlertSource::Hub(_)) {
            p.add("source", format!("a {kind} alert comes from the hub"));
        }
        p.non_empty("rule", &self.rule);
        if self.time < self.started_at {
            p.add("time", "before started_at");
        }
        match (self.phase, self.ended_at) {
            (AlertPhase::Start, Some(_)) => p.add("ended_at", "set on a start alert"),
            (AlertPhase::End, None) => p.add("ended_at", "missing on an end alert"),
            (_, Some(ended)) if ended < self.started_at => p.add("ended_at", "before started_at"),
            _ => {}
        }
        if let Some(loc) = self.location {
            if !(-90.0..=90.0).contains(&loc.lat) {
                p.add("location.lat", format!("{} outside -90..=90", loc.lat));
            }
            if !(-180.0..=180.0).contains(&loc.lon) {
                p.add("location.lon", format!("{} outside -180..=180", loc.lon));
            }
        }
        if let Some(label) = &self.label {
            p.non_empty("label", label);
        }
        if let Some(score) = self.score {
            p.unit("score", score);
        }
        if let Some(direction) = &self.direction
            && !matches!(direction.as_str(), "a_to_b" | "b_to_a")
        {
            p.add(
                "direction",
                format!("{direction:?} is not a_to_b or b_to_a"),
            );
        }
        if self.detections.len() > MAX_DETECTIONS {
            p.add(
                "detections",
                format!("{} > {MAX_DETECTIONS}", self.detections.len()),
            );
        }
        for (i, d) in self.detections.iter().enumerate() {
            p.non_empty(format_args!("detections[{i}].label"), &d.label);
            p.unit(format_args!("detections[{i}].score"), d.score);
            let [x1, y1, x2, y2] = d.box_xyxy;
            if !d.box_xyxy.iter().all(|v| v.is_finite()) {
                p.add(
                    format_args!("detections[{i}].box_xyxy"),
                    "not all finite numbers",
                );
            } else if x2 < x1 || y2 < y1 {
                p.add(
                    format_args!("detections[{i}].box_xyxy"),
                    format!(
                        "[{x1}, {y1}, {x2}, {y2}] is not [x1, y1, x2, y2] with x1 <= x2, y1 <= y2"
                    ),
                );
            }
        }
        match &self.tag {
            Some(tag) => {
                p.non_empty("tag.id", &tag.id);
                p.id("tag.reader", &tag.reader);
                for (i, key) in tag.keys.iter().enumerate() {
                    p.non_empty(format_args!("tag.keys[{i}]"), key);
                }
            }
            None if tag_kind => p.add("tag", format!("missing on a {kind} alert")),
            None => {}
        }
        if let Some(model) = &self.model {
            p.non_empty("model.id", &model.id);
            let hex = model.sha256.len() == 64
                && model
                    .sha256
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
            if !hex {
                p.add("model.sha256", "not 64 lower-case hex digits");
            }
        }
        if let Some(snap) = &self.snapshot {
            p.id("snapshot.camera", &snap.camera);
            if snap.width == 0 || snap.height == 0 {
                p.add(
                    "snapshot",
                    format!("size {}x{} is empty", snap.width, snap.height),
                );
            }
            if snap.jpeg.len() > MAX_SNAPSHOT_JPEG_BYTES {
                p.add(
                    "snapshot.jpeg",
                    format!("{} bytes > {MAX_SNAPSHOT_JPEG_BYTES}", snap.jpeg.len()),
                );
            }
            if !snap.jpeg.starts_with(&[0xff, 0xd8]) {
                p.add(
                    "snapshot.jpeg",
                    "does not start with a JPEG SOI marker (FF D8)",
                );
            }
        }
        p.finish()
    }
}

impl Status {
    /// Checks everything the types do not, listing every problem.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let mut p = Problems::default();
        p.schema(self.schema);
        p.id("site", &self.site);
        if let Some(h) = &self.health {
            p.non_empty("health.version", &h.version);
            let mut seen = HashSet::new();
            for (i, c) in h.cameras.iter().enumerate() {
                let field = format!("health.cameras[{i}]");
                p.id(&format!("{field}.id"), &c.id);
                if !seen.insert(c.id.as_str()) {
                    p.add(
                        format_args!("{field}.id"),
                        format!("{:?} listed twice", c.id),
                    );
                }
                p.non_negative(format_args!("{field}.fps"), c.fps);
                p.non_negative(format_args!("{field}.skipped_fps"), c.skipped_fps);
                p.non_negative(format_args!("{field}.inference_ms"), c.inference_ms);
            }
            let mut seen = HashSet::new();
            for (i, r) in h.readers.iter().enumerate() {
                let field = format!("health.readers[{i}].id");
                p.id(&field, &r.id);
                if !seen.insert(r.id.as_str()) {
                    p.add(field, format!("{:?} listed twice", r.id));
                }
            }
        }
        p.finish()
    }
}

impl SightingBatch {
    /// Checks everything the types do not, listing every problem.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let mut p = Problems::default();
        p.schema(self.schema);
        p.ulid("id", &self.id);
        p.id("site", &self.site);
        if self.sightings.len() > MAX_SIGHTINGS_PER_BATCH {
            p.add(
                "sightings",
                format!("{} > {MAX_SIGHTINGS_PER_BATCH}", self.sightings.len()),
            );
        }
        for (i, s) in self.sightings.iter().enumerate() {
            p.id(&format!("sightings[{i}].reader"), &s.reader);
            p.non_empty(format_args!("sightings[{i}].tag"), &s.tag);
            if s.last < s.first {
                p.add(format_args!("sightings[{i}].last"), "before first");
            }
            if s.reads == 0 {
                p.add(
                    format_args!("sightings[{i}].reads"),
                    "0; a sighting has at least one read",
                );
            }
        }
        p.finish()
    }
}

impl Command {
    /// Checks the site id and the body's fields, listing every problem. Whether the command is
    /// for this site, new (`seq`) and fresh (`issued_at`) is for the receiving agent to check.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let mut p = Problems::default();
        p.schema(self.schema);
        p.id("site", &self.site);
        match &self.body {
            CommandBody::WatchAdd { tag, case_ref, .. } => {
                p.non_empty("body.tag", tag);
                p.non_empty("body.case_ref", case_ref);
            }
            CommandBody::WatchRemove { tag } => p.non_empty("body.tag", tag),
            CommandBody::PairSet { bike, keys, .. } => {
                p.non_empty("body.bike", bike);
                for (i, key) in keys.iter().enumerate() {
                    p.non_empty(format_args!("body.keys[{i}]"), key);
                }
            }
            CommandBody::PairRemove { bike } | CommandBody::PairArm { bike, .. } => {
                p.non_empty("body.bike", bike);
            }
            CommandBody::RuleParams(r) => {
                p.id("body.camera", &r.camera);
                p.id("body.rule", &r.rule);
                if let Some(t) = r.threshold {
                    p.unit("body.threshold", t);
                }
                if let Some(ms) = r.cooldown_ms
                    && ms < 0
                {
                    p.add("body.cooldown_ms", format!("{ms} < 0"));
                }
                for (i, h) in r.active_hours.iter().flatten().enumerate() {
                    p.non_empty(format_args!("body.active_hours[{i}]"), h);
                }
            }
        }
        p.finish()
    }
}

impl CommandReply {
    /// Checks the schema and site id.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let mut p = Problems::default();
        p.schema(self.schema);
        p.id("site", &self.site);
        p.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::{Location, ModelRef, Snapshot, TagInfo};
    use crate::command::RuleParams;
    use crate::sighting::{TagKind, TagSighting};
    use crate::status::{
        AgentState, CameraHealth, Health, OutboxHealth, ReaderHealth, SeverityCounts, UplinkHealth,
    };
    use crate::{Detection, Severity, UtcMillis};

    const ID: &str = "01KAQ5X3M0AAAAAAAAAAAAAAAA";

    fn alert() -> Alert {
        Alert {
            schema: SCHEMA_VERSION,
            id: ID.into(),
            incident: ID.into(),
            phase: AlertPhase::Start,
            site: "site-1".into(),
            source: AlertSource::Camera("cam1".into()),
            kind: AlertKind::Zone,
            severity: Severity::Major,
            rule: "gate".into(),
            time: UtcMillis(2_000),
            started_at: UtcMillis(1_000),
            ended_at: None,
            location: Some(Location {
                lon: 103.3,
                lat: 25.6,
            }),
            track: Some(3),
            label: Some("person".into()),
            score: Some(0.8),
            direction: None,
            count: None,
            detections: vec![Detection {
                label: "person".into(),
                score: 0.8,
                box_xyxy: [1.0, 2.0, 30.0, 40.0],
            }],
            tag: None,
            model: Some(ModelRef {
                id: "yolox_nano".into(),
                sha256: "a".repeat(64),
            }),
            detail: None,
            snapshot: Some(Snapshot {
                camera: "cam1".into(),
                time: UtcMillis(2_000),
                width: 64,
                height: 48,
                jpeg: vec![0xff, 0xd8, 0xff, 0xd9],
            }),
        }
    }

    fn status() -> Status {
        Status {
            schema: SCHEMA_VERSION,
            site: "site-1".into(),
            state: AgentState::Online,
            time: UtcMillis(5_000),
            health: Some(Health {
                version: "0.1.0".into(),
                started_at: UtcMillis(0),
                uptime_s: 5,
                cameras: vec![CameraHealth {
                    id: "cam1".into(),
                    online: true,
                    fps: 5.0,
                    skipped_fps: 0.0,
                    inference_ms: 20.0,
                    alerts: 0,
                    failures: 0,
                }],
                readers: vec![ReaderHealth {
                    id: "r1".into(),
                    reads: 1,
                    bad: 0,
                    dropped: 0,
                }],
                outbox: OutboxHealth {
                    depth: 0,
                    bytes: 0,
                    max_bytes: 1 << 30,
                    oldest: None,
                    evicted: SeverityCounts::default(),
                    dropped: SeverityCounts::default(),
                    expired: 0,
                    corrupt: 0,
                    quarantined: 0,
                    held: 0,
                    held_bytes: 0,
                    held_dropped: SeverityCounts::default(),
                    append_failures: 0,
                },
                uplink: UplinkHealth {
                    connected: true,
                    reconnects: 0,
                    published: 0,
                    acked: 0,
                    sightings_dropped: 0,
                },
                disk_free_bytes: None,
            }),
        }
    }

    fn sighting() -> TagSighting {
        TagSighting {
            reader: "r1".into(),
            tag: "0A1B".into(),
            kind: TagKind::Bike,
            first: UtcMillis(1_000),
            last: UtcMillis(1_500),
            reads: 3,
            rssi: -60,
        }
    }

    fn batch() -> SightingBatch {
        SightingBatch {
            schema: SCHEMA_VERSION,
            id: ID.into(),
            site: "site-1".into(),
            sightings: vec![sighting()],
        }
    }

    fn problems<T>(result: Result<T, DecodeError>) -> Vec<String> {
        match result {
            Err(DecodeError::Invalid { error, .. }) => error.problems,
            Err(other) => panic!("not Invalid: {other}"),
            Ok(_) => panic!("accepted"),
        }
    }

    #[test]
    fn valid_messages_decode() {
        let a = alert();
        assert_eq!(decode_alert(&serde_json::to_vec(&a).unwrap()).unwrap(), a);
        let s = status();
        assert_eq!(decode_status(&serde_json::to_vec(&s).unwrap()).unwrap(), s);
        let b = batch();
        assert_eq!(
            decode_sightings(&serde_json::to_vec(&b).unwrap()).unwrap(),
            b
        );
    }

    #[test]
    fn too_large_is_refused_before_parsing_and_names_size_and_max() {
        let payload = vec![b'x'; MAX_ALERT_BYTES + 1];
        let err = decode_alert(&payload).unwrap_err();
        assert_eq!(
            err,
            DecodeError::TooLarge {
                what: "alert",
                size: MAX_ALERT_BYTES + 1,
                max: MAX_ALERT_BYTES
            }
        );
        assert_eq!(
            err.to_string(),
            "alert: payload of 1048577 bytes > 1048576 bytes"
        );
        let err = decode_status(&vec![b' '; MAX_STATUS_BYTES + 1]).unwrap_err();
        assert!(matches!(err, DecodeError::TooLarge { what: "status", .. }));
        let err = decode_sightings(&vec![b' '; MAX_SIGHTING_BATCH_BYTES + 1]).unwrap_err();
        assert!(matches!(err, DecodeError::TooLarge { .. }));
    }

    #[test]
    fn unknown_schema_wins_over_field_errors() {
        // A version-2 message may have any shape; the error must be about the version.
        let err = decode_alert(br#"{"schema":2,"renamed":true}"#).unwrap_err();
        assert_eq!(
            err,
            DecodeError::UnknownSchema {
                what: "alert",
                found: 2,
                supported: SCHEMA_VERSION
            }
        );
        assert_eq!(
            err.to_string(),
            "alert: schema: version 2 is not supported (this build reads 1)"
        );
        assert!(matches!(
            decode_status(br#"{"schema":0}"#),
            Err(DecodeError::UnknownSchema { found: 0, .. })
        ));
    }

    #[test]
    fn json_errors_carry_the_path() {
        let json = serde_json::to_string(&alert())
            .unwrap()
            .replace(r#""score":0.8,"box"#, r#""score":"high","box"#);
        match decode_alert(json.as_bytes()) {
            Err(DecodeError::Json { what, detail }) => {
                assert_eq!(what, "alert");
                assert!(
                    detail.starts_with("detections[0].score: invalid type"),
                    "{detail}"
                );
            }
            other => panic!("{other:?}"),
        }
        let mut s = serde_json::to_value(status()).unwrap();
        s["health"]["cameras"][0]["colour"] = "red".into();
        match decode_status(s.to_string().as_bytes()) {
            Err(DecodeError::Json { detail, .. }) => {
                assert!(
                    detail.starts_with("health.cameras[0].colour: unknown field `colour`"),
                    "{detail}"
                );
            }
            other => panic!("{other:?}"),
        }
        // Not JSON at all: no path, serde_json's position.
        match decode_sightings(b"{oops") {
            Err(DecodeError::Json { detail, .. }) => {
                assert!(detail.contains("line 1 column 2"), "{detail}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_alert_problem_is_listed() {
        let mut a = alert();
        a.id = "x".into();
        a.site = "a b".into();
        a.rule = String::new();
        a.score = Some(1.5);
        a.time = UtcMillis(500);
        a.ended_at = Some(UtcMillis(0));
        a.direction = Some("up".into());
        a.location = Some(Location {
            lon: 200.0,
            lat: -91.0,
        });
        a.detections = vec![a.detections[0].clone(); 300];
        a.detections[3].score = f32::NAN;
        a.detections[4].box_xyxy = [10.0, 0.0, 5.0, 1.0];
        a.model = Some(ModelRef {
            id: "m".into(),
            sha256: "ABC".into(),
        });
        if let Some(s) = &mut a.snapshot {
            s.jpeg = vec![0; 600_000];
        }
        // Directly: JSON has no NaN (serde_json writes null), so this alert could not be sent.
        let got = a.validate().unwrap_err().problems;
        let want = [
            r#"id: "x" is not a ULID"#,
            "incident: a start alert's incident must be its own id",
            r#"site: "a b" contains ' '; ids are 1..=64 chars of [A-Za-z0-9_.-]"#,
            "rule: empty",
            "time: before started_at",
            "ended_at: set on a start alert",
            "location.lat: -91 outside -90..=90",
            "location.lon: 200 outside -180..=180",
            "score: 1.5 outside 0..=1",
            r#"direction: "up" is not a_to_b or b_to_a"#,
            "detections: 300 > 256",
            "detections[3].score: NaN outside 0..=1",
            "detections[4].box_xyxy: [10, 0, 5, 1] is not [x1, y1, x2, y2] with x1 <= x2, y1 <= y2",
            "model.sha256: not 64 lower-case hex digits",
            "snapshot.jpeg: 600000 bytes > 524288",
            "snapshot.jpeg: does not start with a JPEG SOI marker (FF D8)",
        ];
        assert_eq!(got, want);
        // The same problems come back through decode_alert once the alert is sendable.
        a.detections[3].score = 2.0;
        let decoded = problems(decode_alert(&serde_json::to_vec(&a).unwrap()));
        assert_eq!(decoded[11], "detections[3].score: 2 outside 0..=1");
        assert_eq!(decoded.len(), want.len());
    }

    #[test]
    fn alert_shape_follows_kind_and_phase() {
        let mut a = alert();
        a.kind = AlertKind::Watchlist;
        a.phase = AlertPhase::End;
        a.incident = "01KAQ5X3M0BBBBBBBBBBBBBBBB".into();
        a.ended_at = Some(UtcMillis(500));
        a.schema = 1;
        assert_eq!(
            a.validate().unwrap_err().problems,
            [
                "source: a watchlist alert comes from a reader",
                "ended_at: before started_at",
                "tag: missing on a watchlist alert",
            ]
        );
        a.source = AlertSource::Reader("r1".into());
        a.ended_at = Some(UtcMillis(1_500));
        a.tag = Some(TagInfo {
            id: String::new(),
            reader: "r/1".into(),
            rssi: None,
            case_ref: None,
            note: None,
            keys: vec![String::new()],
        });
        a.snapshot = None;
        a.id = ID.to_lowercase();
        let problems = a.validate().unwrap_err().problems;
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems[0].starts_with("id: "), "{problems:?}");
        assert!(problems[1].starts_with("tag.id: empty"), "{problems:?}");
        assert!(problems[2].starts_with("tag.reader: "), "{problems:?}");
        assert!(
            problems[3].starts_with("tag.keys[0]: empty"),
            "{problems:?}"
        );
        a.phase = AlertPhase::Start;
        a.ended_at = None;
        a.id = a.incident.clone();
        a.tag = Some(TagInfo {
            id: "AB".into(),
            reader: "r1".into(),
            rssi: Some(-50),
            case_ref: Some("c".into()),
            note: None,
            keys: Vec::new(),
        });
        a.validate().unwrap();
    }

    #[test]
    fn a_hub_health_alert_comes_from_the_hub_and_only_it_does() {
        let mut a = alert();
        a.snapshot = None;
        a.kind = AlertKind::HubHealth;
        a.source = AlertSource::Hub("disk".into());
        a.validate().unwrap();
        a.source = AlertSource::Reader("r1".into());
        assert_eq!(
            a.validate().unwrap_err().problems,
            ["source: a hub_health alert comes from the hub"]
        );
        a.kind = AlertKind::Zone;
        a.source = AlertSource::Hub("disk".into());
        assert_eq!(
            a.validate().unwrap_err().problems,
            ["source: a zone alert does not come from the hub"]
        );
        // The wire form: `{"hub": "disk"}`, `"hub_health"`.
        a.kind = AlertKind::HubHealth;
        let json = serde_json::to_value(&a).unwrap();
        assert_eq!(json["source"], serde_json::json!({"hub": "disk"}));
        assert_eq!(json["kind"], "hub_health");
    }

    #[test]
    fn every_status_problem_is_listed() {
        let mut s = status();
        s.site = String::new();
        if let Some(h) = &mut s.health {
            h.cameras.push(h.cameras[0].clone());
            h.cameras[1].fps = -1.0;
            h.cameras[0].inference_ms = f32::INFINITY;
            h.readers[0].id = "r#".into();
        }
        // Directly: JSON has no infinity (serde_json writes null).
        let got = s.validate().unwrap_err().problems;
        assert_eq!(
            got,
            [
                "site: empty",
                "health.cameras[0].inference_ms: inf is not a finite number >= 0",
                r#"health.cameras[1].id: "cam1" listed twice"#,
                "health.cameras[1].fps: -1 is not a finite number >= 0",
                r#"health.readers[0].id: "r#" contains '#'; ids are 1..=64 chars of [A-Za-z0-9_.-]"#,
            ]
        );
    }

    #[test]
    fn every_sighting_problem_is_listed() {
        let mut b = batch();
        b.id = "01KAQ5X3M0AAAAAAAAAAAAAAAU".into(); // 'U' is not Crockford base-32
        b.sightings = vec![sighting(); MAX_SIGHTINGS_PER_BATCH + 1];
        b.sightings[1].last = UtcMillis(0);
        b.sightings[2].reads = 0;
        b.sightings[2].tag = String::new();
        b.sightings[3].reader = String::new();
        let got = problems(decode_sightings(&serde_json::to_vec(&b).unwrap()));
        assert_eq!(
            got,
            [
                r#"id: "01KAQ5X3M0AAAAAAAAAAAAAAAU" is not a ULID"#,
                "sightings: 2001 > 2000",
                "sightings[1].last: before first",
                "sightings[2].tag: empty",
                "sightings[2].reads: 0; a sighting has at least one read",
                "sightings[3].reader: empty",
            ]
        );
    }

    #[test]
    fn every_command_problem_is_listed() {
        let mut c = Command {
            schema: 2,
            site: "x/y".into(),
            seq: 1,
            issued_at: UtcMillis(0),
            body: CommandBody::RuleParams(RuleParams {
                camera: String::new(),
                rule: "a b".into(),
                severity: None,
                threshold: Some(-0.1),
                cooldown_ms: Some(-5),
                active_hours: Some(vec!["08:00-18:00".into(), String::new()]),
            }),
        };
        let got = c.validate().unwrap_err();
        assert_eq!(
            got.problems,
            [
                "schema: version 2 is not supported (this build reads 1)",
                r#"site: "x/y" contains '/'; ids are 1..=64 chars of [A-Za-z0-9_.-]"#,
                "body.camera: empty",
                r#"body.rule: "a b" contains ' '; ids are 1..=64 chars of [A-Za-z0-9_.-]"#,
                "body.threshold: -0.1 outside 0..=1",
                "body.cooldown_ms: -5 < 0",
                "body.active_hours[1]: empty",
            ]
        );
        assert!(got.to_string().contains("body.camera: empty; body.rule"));
        c.schema = SCHEMA_VERSION;
        c.site = "s".into();
        c.body = CommandBody::PairSet {
            bike: String::new(),
            keys: vec!["K1".into(), String::new()],
            armed: true,
        };
        assert_eq!(
            c.validate().unwrap_err().problems,
            ["body.bike: empty", "body.keys[1]: empty"]
        );
        c.body = CommandBody::WatchAdd {
            tag: String::new(),
            case_ref: String::new(),
            note: String::new(),
        };
        assert_eq!(
            c.validate().unwrap_err().problems,
            ["body.tag: empty", "body.case_ref: empty"]
        );
    }

    #[test]
    fn command_replies_decode() {
        let reply = CommandReply {
            schema: SCHEMA_VERSION,
            site: "s".into(),
            seq: None,
            outcome: crate::ReplyOutcome::BadSignature,
            detail: Some("signature: does not verify".into()),
            time: UtcMillis(0),
        };
        let json = serde_json::to_vec(&reply).unwrap();
        assert_eq!(decode_command_reply(&json).unwrap(), reply);
    }
}
