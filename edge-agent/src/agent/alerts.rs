//! [`AlertFactory`]: turns the decisions of the pure cores (rule events, camera health, tag
//! alerts) into wire [`Alert`]s with snapshots.
//!
//! Policy, per incident (see `protocol::alert`):
//! - a rule's `Start` event → a `start` alert at once, with that frame's snapshot;
//! - `Update` events (a better frame) → no alert; the frame is kept as the incident's best;
//! - `End` → an `end` alert, carrying the best frame's snapshot when it is not the start frame
//!   (the hub already has that one);
//! - line crossings are moments: the `start` alert only;
//! - a camera's `Offline` → a `start` alert of kind `camera_offline`; its `Online` → the `end`;
//! - tag alerts are moments, with the covering camera's frame nearest in time, if any.
//!
//! No I/O and no clock: times come with the inputs. Encoding snapshots is CPU work done here.

use std::collections::HashMap;
use std::sync::Arc;

use protocol::alert::{IdGenerator, Location, ModelRef, Snapshot, TagInfo};
use protocol::{Alert, AlertKind, AlertPhase, AlertSource, Detection, Severity, UtcMillis};
use tracing::warn;

use crate::frame::RgbFrame;
use crate::rules::lifecycle::Subject;
use crate::rules::{AlertEvent, Crossing, Phase, RuleKind};
use crate::snapshot::{draw_boxes, encode_bounded};
use crate::tags::TagAlert;
use crate::track::{Timestamp, TrackId};

/// Box outline width in snapshots, pixels.
const BOX_THICKNESS: u32 = 2;

/// An incident that has started and not ended.
#[derive(Debug)]
struct Open {
    id: String,
    started_at: Timestamp,
    start_seq: u64,
    /// The best frame so far, with the boxes to draw on it, if it is not the start frame.
    best: Option<(Arc<RgbFrame>, Timestamp, Vec<Detection>)>,
}

/// Counters of what the factory made and failed to make.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AlertCounters {
    /// Alerts made.
    pub alerts: u64,
    /// Snapshots that could not be encoded (the alert went out without one).
    pub snapshot_failures: u64,
}

/// Makes the alerts of one site. One per agent; cameras are addressed by their id.
#[derive(Debug)]
pub struct AlertFactory {
    site: String,
    ids: IdGenerator,
    model: Option<ModelRef>,
    max_snapshot_bytes: usize,
    locations: HashMap<Arc<str>, Location>,
    /// (camera, rule id, subject) → open incident.
    open: HashMap<(Arc<str>, String, Subject), Open>,
    /// Camera → its open camera-offline incident.
    offline: HashMap<Arc<str>, Open>,
    counters: AlertCounters,
}

impl AlertFactory {
    /// A factory for `site`; `salt` makes ids unique across runs (random for a live agent,
    /// fixed for a deterministic replay).
    pub fn new(site: &str, salt: u64, model: Option<ModelRef>, max_snapshot_bytes: usize) -> Self {
        Self {
            site: site.to_string(),
            ids: IdGenerator::with_salt(salt),
            model,
            max_snapshot_bytes,
            locations: HashMap::new(),
            open: HashMap::new(),
            offline: HashMap::new(),
            counters: AlertCounters::default(),
        }
    }

    /// Sets where a camera is, for its alerts.
    pub fn set_location(&mut self, camera: Arc<str>, location: Location) {
        self.locations.insert(camera, location);
    }

    /// What has been made so far.
    pub fn counters(&self) -> AlertCounters {
        self.counters
    }

    /// Incidents open now (rules and camera health).
    pub fn open_incidents(&self) -> usize {
        self.open.len() + self.offline.len()
    }

    /// The alerts for one processed frame's rule events. `frame` is the frame the events were
    /// produced in (captured at `at`).
    pub fn on_frame(
        &mut self,
        camera: &Arc<str>,
        frame: &Arc<RgbFrame>,
        at: Timestamp,
        events: Vec<AlertEvent>,
    ) -> Vec<Alert> {
        let mut out = Vec::new();
        for ev in events {
            let key = (camera.clone(), ev.rule_id.clone(), subject(&ev));
            match ev.phase {
                Phase::Start => {
                    let id = self.ids.make(
                        at,
                        &[
                            camera,
                            &ev.rule_id,
                            &subject_text(&ev),
                            &ev.frame_seq.to_string(),
                        ],
                    );
                    let detections = event_detections(&ev);
                    let snapshot = self.snapshot(camera, frame, at, &detections);
                    let mut alert = self.detection_alert(camera, &ev, &id, &id, AlertPhase::Start);
                    alert.detections = detections;
                    alert.snapshot = snapshot;
                    out.push(alert);
                    if ev.rule_kind != RuleKind::Line {
                        self.open.insert(
                            key,
                            Open {
                                id,
                                started_at: ev.started_at,
                                start_seq: ev.frame_seq,
                                best: None,
                            },
                        );
                    }
                }
                Phase::Update => {
                    if let Some(open) = self.open.get_mut(&key)
                        && ev.best.frame_seq == ev.frame_seq
                        && ev.frame_seq != open.start_seq
                    {
                        open.best = Some((frame.clone(), at, event_detections(&ev)));
                    }
                }
                Phase::End => {
                    let Some(open) = self.open.remove(&key) else {
                        continue; // a line crossing's End: the moment was already reported
                    };
                    let id = self.ids.make(
                        at,
                        &[camera, &ev.rule_id, &subject_text(&ev), "end", &open.id],
                    );
                    let mut alert =
                        self.detection_alert(camera, &ev, &id, &open.id, AlertPhase::End);
                    alert.started_at = UtcMillis(open.started_at);
                    alert.ended_at = Some(UtcMillis(ev.ended_at.unwrap_or(at)));
                    if let Some((best, best_at, detections)) = open.best {
                        alert.snapshot = self.snapshot(camera, &best, best_at, &detections);
                        alert.score = detections.first().map(|d| d.score);
                        alert.detections = detections;
                    }
                    out.push(alert);
                }
            }
        }
        out
    }

    /// A camera went dark: the `start` alert of its camera-offline incident, once per outage.
    pub fn camera_offline(
        &mut self,
        camera: &Arc<str>,
        since_ms: Timestamp,
        now_ms: Timestamp,
        reason: &str,
    ) -> Option<Alert> {
        if self.offline.contains_key(camera) {
            return None;
        }
        let id = self
            .ids
            .make(now_ms, &[camera, "camera_offline", &since_ms.to_string()]);
        let mut alert = self.base(
            AlertSource::Camera(camera.to_string()),
            AlertKind::CameraOffline,
            Severity::Major,
            "camera_offline",
            &id,
            &id,
            AlertPhase::Start,
            now_ms,
            since_ms,
        );
        alert.location = self.locations.get(camera).copied();
        alert.detail = Some(offline_detail(reason));
        self.offline.insert(
            camera.clone(),
            Open {
                id,
                started_at: since_ms,
                start_seq: 0,
                best: None,
            },
        );
        Some(alert)
    }

    /// A camera is back: the `end` alert of its open camera-offline incident, if any.
    pub fn camera_online(
        &mut self,
        camera: &Arc<str>,
        now_ms: Timestamp,
        offline_for_ms: i64,
    ) -> Option<Alert> {
        let open = self.offline.remove(camera)?;
        let id = self.ids.make(now_ms, &[camera, "camera_online", &open.id]);
        let mut alert = self.base(
            AlertSource::Camera(camera.to_string()),
            AlertKind::CameraOffline,
            Severity::Major,
            "camera_offline",
            &id,
            &open.id,
            AlertPhase::End,
            now_ms,
            open.started_at,
        );
        alert.location = self.locations.get(camera).copied();
        alert.ended_at = Some(UtcMillis(now_ms));
        alert.detail = Some(format!("back after {offline_for_ms} ms without frames"));
        Some(alert)
    }

    /// A tag alert, with `frame` (camera id, capture time, image) from a camera covering the
    /// reader, when one was found.
    pub fn tag_alert(
        &mut self,
        alert: &TagAlert,
        frame: Option<(&Arc<str>, Timestamp, &Arc<RgbFrame>)>,
    ) -> Alert {
        let at = alert.at_ms();
        let (kind, rule, severity, tag) = match alert {
            TagAlert::Watchlist {
                tag,
                reader,
                rssi,
                case_ref,
                note,
                ..
            } => (
                AlertKind::Watchlist,
                "watchlist",
                Severity::Major,
                TagInfo {
                    id: tag.clone(),
                    reader: reader.clone(),
                    rssi: Some(*rssi),
                    case_ref: Some(case_ref.clone()),
                    note: (!note.is_empty()).then(|| note.clone()),
                    keys: Vec::new(),
                },
            ),
            TagAlert::PossibleTheft {
                bike, reader, keys, ..
            } => (
                AlertKind::PossibleTheft,
                "possible_theft",
                Severity::Major,
                TagInfo {
                    id: bike.clone(),
                    reader: reader.clone(),
                    rssi: None,
                    case_ref: None,
                    note: None,
                    keys: keys.clone(),
                },
            ),
        };
        let id = self.ids.make(at, &[rule, &tag.id, &tag.reader]);
        let mut out = self.base(
            AlertSource::Reader(tag.reader.clone()),
            kind,
            severity,
            rule,
            &id,
            &id,
            AlertPhase::Start,
            at,
            at,
        );
        if let Some((camera, frame_at, image)) = frame {
            out.location = self.locations.get(camera).copied();
            out.snapshot = self.snapshot(camera, image, frame_at, &[]);
        }
        out.tag = Some(tag);
        out
    }

    fn detection_alert(
        &mut self,
        camera: &Arc<str>,
        ev: &AlertEvent,
        id: &str,
        incident: &str,
        phase: AlertPhase,
    ) -> Alert {
        let kind = match ev.rule_kind {
            RuleKind::Zone => AlertKind::Zone,
            RuleKind::Line => AlertKind::Line,
            RuleKind::Loiter => AlertKind::Loiter,
            RuleKind::Crowd => AlertKind::Crowd,
        };
        let mut alert = self.base(
            AlertSource::Camera(camera.to_string()),
            kind,
            ev.severity,
            &ev.rule_id,
            id,
            incident,
            phase,
            ev.timestamp,
            ev.started_at,
        );
        alert.location = self.locations.get(camera).copied();
        alert.track = ev.track_id;
        alert.label = ev.label.clone();
        alert.score = Some(ev.score);
        alert.direction = ev.direction.map(|d| {
            match d {
                Crossing::AToB => "a_to_b",
                Crossing::BToA => "b_to_a",
            }
            .to_string()
        });
        alert.count = ev.count;
        alert.model = self.model.clone();
        alert
    }

    #[allow(clippy::too_many_arguments)] // every field of the envelope, named at each call
    fn base(
        &mut self,
        source: AlertSource,
        kind: AlertKind,
        severity: Severity,
        rule: &str,
        id: &str,
        incident: &str,
        phase: AlertPhase,
        time: Timestamp,
        started_at: Timestamp,
    ) -> Alert {
        self.counters.alerts += 1;
        Alert {
            schema: protocol::SCHEMA_VERSION,
            id: id.to_string(),
            incident: incident.to_string(),
            phase,
            site: self.site.clone(),
            source,
            kind,
            severity,
            rule: rule.to_string(),
            time: UtcMillis(time),
            started_at: UtcMillis(started_at),
            ended_at: None,
            location: None,
            track: None,
            label: None,
            score: None,
            direction: None,
            count: None,
            detections: Vec::new(),
            tag: None,
            model: None,
            detail: None,
            snapshot: None,
        }
    }

    /// The frame with `boxes` drawn, as a bounded JPEG; `None` (counted, logged) if it cannot be
    /// encoded, because an alert without a picture beats no alert.
    fn snapshot(
        &mut self,
        camera: &Arc<str>,
        frame: &Arc<RgbFrame>,
        at: Timestamp,
        boxes: &[Detection],
    ) -> Option<Snapshot> {
        let encoded = if boxes.is_empty() {
            encode_bounded(frame, self.max_snapshot_bytes)
        } else {
            let mut drawn = RgbFrame::clone(frame);
            draw_boxes(&mut drawn, boxes, BOX_THICKNESS);
            encode_bounded(&drawn, self.max_snapshot_bytes)
        };
        match encoded {
            Ok(s) => Some(Snapshot {
                camera: camera.to_string(),
                time: UtcMillis(at),
                width: s.width,
                height: s.height,
                jpeg: s.jpeg,
            }),
            Err(error) => {
                self.counters.snapshot_failures += 1;
                warn!(message = "Snapshot failed; alert sent without one.", camera = %camera, %error);
                None
            }
        }
    }
}

fn subject(ev: &AlertEvent) -> Subject {
    match ev.track_id {
        Some(t) => Subject::Track(t),
        None => Subject::Zone,
    }
}

fn subject_text(ev: &AlertEvent) -> String {
    ev.track_id
        .map_or_else(|| "zone".to_string(), |t: TrackId| t.to_string())
}

/// The boxes an event is about.
fn event_detections(ev: &AlertEvent) -> Vec<Detection> {
    ev.box_xyxy
        .map(|b| Detection {
            label: ev.label.clone().unwrap_or_default(),
            score: ev.score,
            box_xyxy: b,
        })
        .into_iter()
        .collect()
}

/// Most characters of a camera-offline reason the hub accepts in `detail` (its limit, 4,096).
const MAX_DETAIL_CHARS: usize = 4096;

/// A camera's last error (ffmpeg's stderr tail, an HTTP error) as the hub accepts it: no
/// control characters but newlines and tabs, at most [`MAX_DETAIL_CHARS`], the end kept since
/// the last lines say most. Otherwise the hub would refuse the whole alert.
fn offline_detail(reason: &str) -> String {
    let clean: Vec<char> = reason
        .chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                ' '
            } else {
                c
            }
        })
        .collect();
    if clean.len() <= MAX_DETAIL_CHARS {
        return clean.into_iter().collect();
    }
    let mut out = String::from("…");
    out.extend(&clean[clean.len() - (MAX_DETAIL_CHARS - 1)..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offline_reason_is_cut_to_the_hubs_limit_keeping_its_end_and_loses_control_characters() {
        assert_eq!(offline_detail("a\rb\u{1b}[31mc\nd\te"), "a b [31mc\nd\te");
        let long = format!("{}END", "x".repeat(10_000));
        let d = offline_detail(&long);
        assert_eq!(d.chars().count(), MAX_DETAIL_CHARS);
        assert!(d.starts_with('…') && d.ends_with("END"));
    }
}
