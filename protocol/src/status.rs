//! [`Status`]: an agent's liveness and health, published retained on
//! `{prefix}/site/{site}/status`.
//!
//! The agent publishes `online` with [`Health`] periodically and registers an `offline` status
//! without health as its MQTT last will, so the retained message always tells the hub whether
//! the site is reachable, and what it last reported when it was.

use serde::{Deserialize, Serialize};

use crate::alert::Severity;
use crate::time::UtcMillis;

/// Whether the agent is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentState {
    /// Running and connected.
    Online,
    /// Gone: the broker published the last will, or the agent is stopping cleanly.
    Offline,
}

/// One status message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Status {
    /// Wire schema version ([`crate::SCHEMA_VERSION`]).
    pub schema: u32,
    /// The site (edge box) id.
    pub site: String,
    /// Online or offline.
    pub state: AgentState,
    /// When the status was made (for the last will: when the agent connected and registered it).
    pub time: UtcMillis,
    /// `None` in the last will and in a clean "going offline".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
}

/// What the agent reports about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Health {
    /// Agent version.
    pub version: String,
    /// When the agent process started.
    pub started_at: UtcMillis,
    /// Seconds since the start.
    pub uptime_s: u64,
    /// One entry per configured camera.
    pub cameras: Vec<CameraHealth>,
    /// One entry per configured tag reader.
    pub readers: Vec<ReaderHealth>,
    /// The alert outbox.
    pub outbox: OutboxHealth,
    /// The link to the hub.
    pub uplink: UplinkHealth,
    /// Free bytes on the outbox's filesystem, when it could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_free_bytes: Option<u64>,
}

/// One camera's pipeline.
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraHealth {
    /// The camera's id in the agent's config.
    pub id: String,
    /// Whether frames are arriving.
    pub online: bool,
    /// Frames processed per second over the last interval.
    pub fps: f32,
    /// Frames skipped (dropped by the latest-frame slot) per second.
    pub skipped_fps: f32,
    /// Mean detector milliseconds per processed frame over the interval.
    pub inference_ms: f32,
    /// Alerts raised since start.
    pub alerts: u64,
    /// Source failures since start.
    pub failures: u64,
}

/// One tag reader.
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReaderHealth {
    /// The reader's id in the agent's config.
    pub id: String,
    /// Reads accepted since start.
    pub reads: u64,
    /// Reads refused as malformed since start.
    pub bad: u64,
    /// Reads dropped (queue full) since start.
    pub dropped: u64,
}

/// The alert outbox: alerts on disk until the broker acknowledges them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxHealth {
    /// Alerts waiting.
    pub depth: u64,
    /// Bytes they take.
    pub bytes: u64,
    /// The configured cap on `bytes`.
    pub max_bytes: u64,
    /// When the oldest waiting alert was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest: Option<UtcMillis>,
    /// Stored alerts evicted to make room (outbox full), since start.
    pub evicted: SeverityCounts,
    /// Alerts never stored (outbox full and nothing could be evicted for them), since start.
    pub dropped: SeverityCounts,
    /// Alerts dropped for being older than the maximum age, since start.
    pub expired: u64,
    /// Records found unreadable and removed, since start.
    pub corrupt: u64,
    /// Alerts the hub refused for good (MQTT 5 PUBACK "payload format invalid" or "not
    /// authorised") and the agent keeps in its quarantine, never sending them again. Left out
    /// of the JSON when zero: a hub built before this field refuses unknown fields, and keeps
    /// accepting the status of every agent with nothing quarantined (a hub that refuses alerts
    /// this way knows the field).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub quarantined: u64,
    /// Disk pressure: alerts held in memory because the outbox could not store them (disk
    /// full, I/O error), appended again, oldest first, once the disk takes them. This and the
    /// three fields below are left out of the JSON when zero, for the reason given on
    /// `quarantined`: a hub built before them accepts the status of every agent whose disk is
    /// fine.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub held: u64,
    /// The JSON bytes of the `held` alerts.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub held_bytes: u64,
    /// Alerts lost because the in-memory hold was full (lowest severity first), since start.
    #[serde(default, skip_serializing_if = "SeverityCounts::is_zero")]
    pub held_dropped: SeverityCounts,
    /// Appends that failed for the disk (each attempt, retries included), since start.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub append_failures: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A counter per [`Severity`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeverityCounts {
    pub info: u64,
    pub minor: u64,
    pub major: u64,
    pub critical: u64,
}

impl SeverityCounts {
    /// The count of one severity.
    pub fn get(&self, severity: Severity) -> u64 {
        match severity {
            Severity::Info => self.info,
            Severity::Minor => self.minor,
            Severity::Major => self.major,
            Severity::Critical => self.critical,
        }
    }

    /// Adds `n` to one severity's count (saturating: a counter never wraps to a small value).
    pub fn add(&mut self, severity: Severity, n: u64) {
        let slot = match severity {
            Severity::Info => &mut self.info,
            Severity::Minor => &mut self.minor,
            Severity::Major => &mut self.major,
            Severity::Critical => &mut self.critical,
        };
        *slot = slot.saturating_add(n);
    }

    /// Whether every count is zero.
    pub fn is_zero(&self) -> bool {
        *self == Self::default()
    }

    /// All severities together.
    pub fn total(&self) -> u64 {
        self.info
            .saturating_add(self.minor)
            .saturating_add(self.major)
            .saturating_add(self.critical)
    }
}

/// The MQTT link to the hub.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UplinkHealth {
    /// Connected to the broker now.
    pub connected: bool,
    /// Reconnections since start.
    pub reconnects: u64,
    /// Alert publishes sent (resends included).
    pub published: u64,
    /// Alerts acknowledged by the broker.
    pub acked: u64,
    /// Sightings not sent (dropped while the link was down or its buffer full), since start.
    pub sightings_dropped: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_counts_add_get_and_total() {
        let mut c = SeverityCounts::default();
        c.add(Severity::Major, 2);
        c.add(Severity::Info, 1);
        c.add(Severity::Major, u64::MAX);
        assert_eq!(c.get(Severity::Major), u64::MAX);
        assert_eq!(c.get(Severity::Info), 1);
        assert_eq!(c.get(Severity::Critical), 0);
        assert_eq!(c.total(), u64::MAX);
        c.major = 3;
        assert_eq!(c.total(), 4);
    }

    fn outbox_health(quarantined: u64) -> OutboxHealth {
        OutboxHealth {
            depth: 1,
            bytes: 2,
            max_bytes: 3,
            oldest: None,
            evicted: SeverityCounts::default(),
            dropped: SeverityCounts::default(),
            expired: 0,
            corrupt: 0,
            quarantined,
            held: 0,
            held_bytes: 0,
            held_dropped: SeverityCounts::default(),
            append_failures: 0,
        }
    }

    /// The outbox part as an agent without the quarantine sent it (and as a hub without it
    /// expects it).
    const OLD_OUTBOX: &str = r#"{"depth":1,"bytes":2,"max_bytes":3,"evicted":{"info":0,"minor":0,"major":0,"critical":0},"dropped":{"info":0,"minor":0,"major":0,"critical":0},"expired":0,"corrupt":0}"#;

    #[test]
    fn quarantined_is_left_out_when_zero_and_defaults_when_absent() {
        // New agent, nothing quarantined: byte for byte what an old hub accepts.
        assert_eq!(
            serde_json::to_string(&outbox_health(0)).unwrap(),
            OLD_OUTBOX
        );
        // Old agent, new hub: the missing field reads as zero.
        assert_eq!(
            serde_json::from_str::<OutboxHealth>(OLD_OUTBOX).unwrap(),
            outbox_health(0)
        );
        let json = serde_json::to_string(&outbox_health(4)).unwrap();
        assert!(json.ends_with(r#","corrupt":0,"quarantined":4}"#), "{json}");
        assert_eq!(
            serde_json::from_str::<OutboxHealth>(&json).unwrap(),
            outbox_health(4)
        );
    }

    #[test]
    fn disk_pressure_fields_are_left_out_when_zero_and_round_trip_when_not() {
        // Nothing held: the JSON an old hub accepts (checked byte for byte above).
        assert!(
            !serde_json::to_string(&outbox_health(0))
                .unwrap()
                .contains("held")
        );
        let mut h = outbox_health(0);
        h.held = 3;
        h.held_bytes = 4_000;
        h.held_dropped.add(Severity::Info, 2);
        h.append_failures = 7;
        let json = serde_json::to_string(&h).unwrap();
        assert!(
            json.ends_with(
                r#","corrupt":0,"held":3,"held_bytes":4000,"held_dropped":{"info":2,"minor":0,"major":0,"critical":0},"append_failures":7}"#
            ),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<OutboxHealth>(&json).unwrap(), h);
    }

    #[test]
    fn last_will_has_no_health_and_refuses_unknown_fields() {
        let s = Status {
            schema: 1,
            site: "s".into(),
            state: AgentState::Offline,
            time: UtcMillis(0),
            health: None,
        };
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(
            json,
            r#"{"schema":1,"site":"s","state":"offline","time":"1970-01-01T00:00:00.000Z"}"#
        );
        assert_eq!(serde_json::from_str::<Status>(&json).unwrap(), s);
        let extra = json.replace(r#""site""#, r#""extra":1,"site""#);
        let err = serde_json::from_str::<Status>(&extra).unwrap_err();
        assert!(err.to_string().contains("extra"), "{err}");
    }
}
