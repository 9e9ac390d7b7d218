//! [`Alert`]: what an agent raises, published on `{prefix}/site/{site}/alert`.
//!
//! One incident (a person in a zone, a camera gone dark, a watchlisted tag heard) gives a
//! `start` alert at once, so somebody can act, and, for incidents that last, an `end` alert when
//! it is over, carrying the incident's best snapshot. Both carry the same `incident` id (the
//! `start` alert's id), which is how the hub groups them. Moments (a line crossing, a tag
//! heard) have only a `start`.
//!
//! Ids are ULIDs made on the agent, so delivery is at-least-once and the hub's insert is
//! idempotent.

use serde::{Deserialize, Serialize};

use crate::Detection;
use crate::time::UtcMillis;

/// How urgent an alert is. Ordered: `Info < Minor < Major < Critical`.
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// For the record; nobody needs to act.
    Info,
    /// Someone should look when they can.
    #[default]
    Minor,
    /// Someone should look now.
    Major,
    /// Someone must act now.
    Critical,
}

/// What raised the alert.
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// An object entered a polygon zone.
    Zone,
    /// An object crossed a line.
    Line,
    /// An object stayed in a zone too long.
    Loiter,
    /// Too many objects in a zone for too long.
    Crowd,
    /// A camera delivered nothing for its configured time (tampering, cable, power).
    CameraOffline,
    /// A watchlisted (布控) tag was heard.
    Watchlist,
    /// An armed bike was heard without its owner's key tag.
    PossibleTheft,
    /// Reported by a grid member on patrol (巡查上报) through the hub, never by an agent.
    Patrol,
    /// The hub's own health (its data disk nearly full), raised by the hub itself, never by
    /// an agent: a site publishing one is refused.
    HubHealth,
    /// A site's health as the hub judges it (its clock far off the hub's), raised by the hub
    /// about that site, never by an agent: a site publishing one is refused.
    SiteHealth,
}

/// Where an alert is in its incident.
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertPhase {
    /// The incident began (or, for a moment, happened).
    Start,
    /// The incident is over.
    End,
}

/// Which device of the site the alert comes from.
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertSource {
    /// A camera, by its id in the agent's config.
    Camera(String),
    /// A tag reader, by its id.
    Reader(String),
    /// A person (patrol reports), by their roster id.
    Person(String),
    /// The hub itself (hub-health alerts), by the part that raised it (`disk`).
    Hub(String),
}

/// A WGS-84 position.
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Location {
    /// Longitude, degrees east.
    #[cfg_attr(feature = "utoipa", schema(minimum = -180, maximum = 180))]
    pub lon: f64,
    /// Latitude, degrees north.
    #[cfg_attr(feature = "utoipa", schema(minimum = -90, maximum = 90))]
    pub lat: f64,
}

/// The model that produced a detection alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelRef {
    /// The manifest's model name.
    pub id: String,
    /// sha256 of the model file, lower-case hex.
    pub sha256: String,
}

/// The tag an alert is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagInfo {
    /// Tag id, upper-case hex.
    pub id: String,
    /// The reader that heard it.
    pub reader: String,
    /// Strongest RSSI of the sighting, dBm, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rssi: Option<i16>,
    /// Watchlist: the case the listing belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case_ref: Option<String>,
    /// Watchlist: the operator's note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Possible theft: the key tags that were expected and not heard.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
}

/// A JPEG of the moment the alert is about, boxes drawn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The camera the frame is from (for tag alerts, the camera covering the reader).
    pub camera: String,
    /// When the frame was captured.
    pub time: UtcMillis,
    /// Pixel size of the JPEG.
    pub width: u32,
    pub height: u32,
    /// The JPEG, base64 (standard alphabet, padded).
    #[serde(with = "base64_bytes")]
    pub jpeg: Vec<u8>,
}

/// One alert. Optional fields are left out of the JSON when absent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Wire schema version ([`crate::SCHEMA_VERSION`]).
    pub schema: u32,
    /// ULID made on the agent.
    pub id: String,
    /// The id of the incident's `start` alert (equal to `id` for a `start`).
    pub incident: String,
    /// Start or end of the incident.
    pub phase: AlertPhase,
    /// The site (edge box) id.
    pub site: String,
    /// Camera or reader.
    pub source: AlertSource,
    /// What raised it.
    pub kind: AlertKind,
    /// How urgent.
    pub severity: Severity,
    /// The rule's id from the agent's config (`camera_offline` for camera health).
    pub rule: String,
    /// When it happened: the frame or read time of this event.
    pub time: UtcMillis,
    /// When the incident started.
    pub started_at: UtcMillis,
    /// `end` alerts: when the incident ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<UtcMillis>,
    /// Where the camera or reader is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// The tracked object's id within its camera.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track: Option<u64>,
    /// The object's label (`person`, `car`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The detection score behind the alert.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f32>,
    /// Line crossings: `a_to_b` or `b_to_a`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<String>,
    /// Crowd alerts: how many objects were counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// The objects the alert is about, in the snapshot's pixel coordinates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub detections: Vec<Detection>,
    /// Tag alerts: the tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<TagInfo>,
    /// Detection alerts: the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelRef>,
    /// Human-readable detail (camera offline: the last error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The best frame of the incident so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<Snapshot>,
}

mod base64_bytes {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = <&str>::deserialize(d)?;
        STANDARD
            .decode(text)
            .map_err(|e| serde::de::Error::custom(format!("snapshot.jpeg: not base64: {e}")))
    }
}

/// Makes ULIDs: 48 bits of milliseconds, then 80 bits that make the id unique.
///
/// The 80 bits are a hash of what the caller says makes the event unique plus a per-generator
/// salt: random for a live agent (so ids never repeat across restarts, when frame numbers and
/// track ids start again), fixed for replays (so replaying the same footage gives the same ids
/// and a diff of two runs shows only real differences).
#[derive(Debug, Clone)]
pub struct IdGenerator {
    salt: u64,
}

impl IdGenerator {
    /// A generator with this salt (use a random one for live alerts).
    pub fn with_salt(salt: u64) -> Self {
        Self { salt }
    }

    /// The ULID of an event at `time_ms` identified by `parts`.
    pub fn make(&self, time_ms: i64, parts: &[&str]) -> String {
        // Two FNV-1a-64 passes with different seeds give 128 bits; 80 are kept. Collisions
        // need the same millisecond and an 80-bit hash clash of distinct events.
        let hash = |seed: u64| {
            let mut h = 0xcbf2_9ce4_8422_2325_u64 ^ seed ^ self.salt;
            for p in parts {
                for b in p.bytes().chain(std::iter::once(0xff)) {
                    h ^= u64::from(b);
                    h = h.wrapping_mul(0x0000_0100_0000_01b3);
                }
            }
            h
        };
        let random = (u128::from(hash(1)) << 64 | u128::from(hash(2))) & ((1 << 80) - 1);
        let ms = u64::try_from(time_ms.max(0)).unwrap_or(0) & ((1 << 48) - 1);
        ulid::Ulid::from_parts(ms, random).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_time_and_differ_by_parts_and_salt() {
        let g = IdGenerator::with_salt(0);
        let a = g.make(1_000, &["cam", "zone", "1"]);
        let b = g.make(1_000, &["cam", "zone", "2"]);
        let later = g.make(2_000, &["cam", "zone", "1"]);
        assert_eq!(a.len(), 26);
        assert_ne!(a, b);
        assert!(a < later && b < later, "{a} {b} {later}");
        assert_eq!(a, g.make(1_000, &["cam", "zone", "1"]));
        assert_ne!(
            a,
            IdGenerator::with_salt(7).make(1_000, &["cam", "zone", "1"])
        );
        // Parts are delimited: ["ab", "c"] is not ["a", "bc"].
        assert_ne!(g.make(0, &["ab", "c"]), g.make(0, &["a", "bc"]));
    }

    #[test]
    fn snapshot_bytes_travel_as_base64() {
        let s = Snapshot {
            camera: "c".into(),
            time: UtcMillis(0),
            width: 1,
            height: 1,
            jpeg: vec![0xff, 0xd8, 0xff],
        };
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains(r#""jpeg":"/9j/""#), "{json}");
        assert_eq!(serde_json::from_str::<Snapshot>(&json).unwrap(), s);
        let bad = json.replace("/9j/", "!!");
        let err = serde_json::from_str::<Snapshot>(&bad).unwrap_err();
        assert!(err.to_string().contains("snapshot.jpeg"), "{err}");
    }
}
