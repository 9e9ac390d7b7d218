//! The agent's configuration file: one TOML file for the whole box.
//!
//! Typed structs with `///` on every field, unknown keys rejected, defaults in [`defaults`] (and
//! in each stage's own config module), and a load that reports **every** problem at once, each
//! with its path (`cameras[2].rules.zones[0].polygon: needs at least 3 points`).
//!
//! "Every problem at once" although serde stops at the first error: [`infra::config::Sections`]
//! (shared with the hub) parses the TOML table first (a syntax error is reported alone, with its
//! line and column), then deserialises each top-level section and each camera on its own, so a
//! typo in one camera does not hide a typo in another, and reports the keys the loader never
//! asked for as unknown. The semantic checks of every stage then run over everything that did
//! deserialise.
//!
//! Relative paths in the file (model manifest, tag-rule file, video files, pushed-JPEG
//! directories) are relative to the config file's directory, so a config and its footage can be
//! moved together.
//!
//! Example: `configs/vtest.toml`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use infra::config::Sections;
use serde::Deserialize;

use crate::outbox::OutboxConfig;
use crate::rules::{EngineConfig, TimeOfDay};
use crate::source::SourceConfig;
use crate::tags::TagConfig;
use crate::tags::mqtt::MqttReaderConfig;
use crate::tags::read::check_reader_id;
use crate::uplink::UplinkConfig;

/// Every default of the agent-level configuration, in one place. Stage configs (rules, sources,
/// tag rules) keep theirs in their own modules.
pub mod defaults {
    /// China Standard Time, UTC+8, no daylight saving: the local time active hours use.
    pub fn utc_offset_minutes() -> i32 {
        480
    }
    /// Two single-threaded sessions: on a 2-core box this beats one session with 2 threads.
    pub fn sessions() -> usize {
        2
    }
    /// See [`sessions`].
    pub fn threads_per_session() -> usize {
        1
    }
    /// Snapshots travel inside MQTT publishes and are stored by the hub.
    pub fn snapshot_max_bytes() -> usize {
        200_000
    }
    /// 5 s of history at 5 fps: enough to find the frame for a tag read that arrives late.
    pub fn ring_frames() -> usize {
        25
    }
    /// A tag read is matched to the nearest frame of the covering camera within this.
    pub fn tag_frame_tolerance_ms() -> i64 {
        1_500
    }
    /// Sighting batches for the hub close at this many sightings…
    pub fn sighting_batch_max() -> usize {
        200
    }
    /// …or this old.
    pub fn sighting_batch_max_age_ms() -> i64 {
        10_000
    }
    /// The packaged state directory (systemd `StateDirectory=edge-agent`).
    pub fn data_dir() -> std::path::PathBuf {
        std::path::PathBuf::from("/var/lib/edge-agent")
    }
}

/// The whole box.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// The site id (this box), unique in the hub: `A-Z a-z 0-9 _ - . :`, 1..=64 bytes.
    pub site: String,
    /// Offset of local time from UTC, minutes; rules' active hours are in local time.
    #[serde(default = "defaults::utc_offset_minutes")]
    pub utc_offset_minutes: i32,
    /// Where the box is; cameras without their own location inherit it.
    #[serde(default)]
    pub location: Option<LocationConfig>,
    /// The detector.
    #[serde(default)]
    pub model: ModelConfig,
    /// Alert snapshots and frame history.
    #[serde(default)]
    pub snapshot: SnapshotConfig,
    /// The cameras.
    #[serde(default)]
    pub cameras: Vec<CameraConfig>,
    /// Tag rules (watchlist, pairings) written inline. Exclusive with `tag_rules_file`.
    #[serde(default)]
    pub tag_rules: Option<TagConfig>,
    /// Tag rules loaded from a TOML or JSON file (the hub will update the same state by
    /// command). Exclusive with `tag_rules`.
    #[serde(default)]
    pub tag_rules_file: Option<PathBuf>,
    /// Tag readers.
    #[serde(default)]
    pub tag_readers: Vec<TagReaderConfig>,
    /// How tag sightings are batched for the hub's trajectory search.
    #[serde(default)]
    pub sightings: SightingsConfig,
    /// Where the agent keeps its state: the alert outbox (`outbox/`) and the hub's persisted
    /// commands (`commands/`).
    #[serde(default = "defaults::data_dir")]
    pub data_dir: PathBuf,
    /// Bounds of the alert outbox.
    #[serde(default)]
    pub outbox: OutboxConfig,
    /// The hub's broker. Without it alerts are kept in the outbox (up to its bounds) and
    /// nothing is sent.
    #[serde(default)]
    pub uplink: Option<UplinkConfig>,
    /// Prometheus `/metrics`; absent means not served.
    #[serde(default)]
    pub metrics: Option<MetricsConfig>,
}

/// The Prometheus endpoint.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// `address:port` to serve `GET /metrics` on; keep it on loopback or the site network.
    pub listen: String,
}

/// A WGS-84 position.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocationConfig {
    /// Longitude, degrees east, -180..=180.
    pub lon: f64,
    /// Latitude, degrees north, -90..=90.
    pub lat: f64,
}

/// The detector.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Model manifest. Default: `models/yolox_nano.toml` of the workspace the agent was built
    /// in (installed boxes set it).
    #[serde(default)]
    pub manifest: Option<PathBuf>,
    /// ONNX Runtime library; default: `$ORT_DYLIB_PATH`, then the set-up cache, then
    /// `/usr/lib/edge-agent/`.
    #[serde(default)]
    pub ort_library: Option<PathBuf>,
    /// Detector sessions, each on its own worker thread, shared fairly by all cameras.
    #[serde(default = "defaults::sessions")]
    pub sessions: usize,
    /// ONNX Runtime intra-op threads per session.
    #[serde(default = "defaults::threads_per_session")]
    pub threads_per_session: usize,
}

impl ModelConfig {
    /// The manifest to load: the configured one, else the build workspace's default.
    pub fn manifest_path(&self) -> PathBuf {
        self.manifest
            .clone()
            .unwrap_or_else(crate::detect::manifest::default_manifest_path)
    }
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            manifest: None,
            ort_library: None,
            sessions: defaults::sessions(),
            threads_per_session: defaults::threads_per_session(),
        }
    }
}

/// Alert snapshots and per-camera frame history.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotConfig {
    /// Largest snapshot JPEG, bytes; quality, then size, is lowered to fit.
    #[serde(default = "defaults::snapshot_max_bytes")]
    pub max_bytes: usize,
    /// Frames of history kept per camera, for tag alerts' snapshots.
    #[serde(default = "defaults::ring_frames")]
    pub ring_frames: usize,
    /// A tag read takes the covering camera's frame nearest in time, if within this.
    #[serde(default = "defaults::tag_frame_tolerance_ms")]
    pub tag_frame_tolerance_ms: i64,
}

impl Default for SnapshotConfig {
    fn default() -> Self {
        Self {
            max_bytes: defaults::snapshot_max_bytes(),
            ring_frames: defaults::ring_frames(),
            tag_frame_tolerance_ms: defaults::tag_frame_tolerance_ms(),
        }
    }
}

/// One camera.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraConfig {
    /// Unique on this box; reported with every alert. Same characters as the site id.
    pub id: String,
    /// Where the camera looks; default: the site's location.
    #[serde(default)]
    pub location: Option<LocationConfig>,
    /// Ids of the tag readers whose area this camera sees: their tag alerts take this camera's
    /// frame as snapshot.
    #[serde(default)]
    pub readers: Vec<String>,
    /// Where frames come from.
    pub source: SourceConfig,
    /// Alert rules and tracking.
    #[serde(default)]
    pub rules: EngineConfig,
}

/// A tag reader; `kind` chooses the transport. Every transport carries the one documented read
/// format (`crate::tags::read`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TagReaderConfig {
    /// JSON lines over TCP; the agent listens.
    Tcp(ListenConfig),
    /// One JSON record per UDP datagram; the agent listens.
    Udp(ListenConfig),
    /// Reads published to an MQTT broker; the agent subscribes.
    Mqtt(MqttReaderConfig),
}

impl TagReaderConfig {
    /// A name for status and metrics, an id of the wire protocol (`[A-Za-z0-9_.-]`, at most
    /// 64): `tcp_0.0.0.0_7001`, `mqtt_broker.local_1883`. Not unique by itself when two MQTT
    /// readers share a broker; the runtime appends the reader's index then.
    pub fn name(&self) -> String {
        let raw = match self {
            Self::Tcp(l) => format!("tcp_{}", l.listen),
            Self::Udp(l) => format!("udp_{}", l.listen),
            Self::Mqtt(m) => format!("mqtt_{}_{}", m.host, m.port),
        };
        raw.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                    c
                } else {
                    '_'
                }
            })
            .take(60)
            .collect()
    }
}

/// A socket the agent listens on.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenConfig {
    /// `address:port`, e.g. `0.0.0.0:7001`.
    pub listen: String,
}

/// Sighting batches for the hub.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SightingsConfig {
    /// A batch closes at this many sightings.
    #[serde(default = "defaults::sighting_batch_max")]
    pub batch_max: usize,
    /// A batch closes when its first sighting is this old.
    #[serde(default = "defaults::sighting_batch_max_age_ms")]
    pub batch_max_age_ms: i64,
}

impl Default for SightingsConfig {
    fn default() -> Self {
        Self {
            batch_max: defaults::sighting_batch_max(),
            batch_max_age_ms: defaults::sighting_batch_max_age_ms(),
        }
    }
}

/// Loading the configuration failed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("config {path}: cannot read: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file has problems; every one, each with its path.
    #[error("config {path} is invalid ({} problem{}):\n  {}", .errors.len(), if .errors.len() == 1 { "" } else { "s" }, .errors.join("\n  "))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// `path.to.field: problem`, one per problem.
        errors: Vec<String>,
    },
}

impl AgentConfig {
    /// Reads, parses and validates `path`, resolving relative paths against its directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::from_toml_str(&text, base).map_err(|errors| ConfigError::Invalid {
            path: path.to_path_buf(),
            errors,
        })
    }

    /// Parses and validates TOML text; relative paths resolve against `base`. Returns every
    /// problem on failure.
    pub fn from_toml_str(text: &str, base: &Path) -> Result<Self, Vec<String>> {
        let mut config = parse_sections(text)?;
        config.resolve_paths(base);
        let errors = config.problems();
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(errors)
        }
    }

    fn resolve_paths(&mut self, base: &Path) {
        for path in [&mut self.model.manifest, &mut self.model.ort_library]
            .into_iter()
            .chain([&mut self.tag_rules_file])
            .flatten()
        {
            *path = resolve(base, path);
        }
        for camera in &mut self.cameras {
            camera.source.resolve_paths(base);
        }
        self.data_dir = resolve(base, &self.data_dir);
        if let Some(u) = &mut self.uplink {
            u.resolve_paths(base);
        }
    }

    /// Every semantic problem, with its path. Also loads `tag_rules_file` to check it.
    fn problems(&mut self) -> Vec<String> {
        let mut errors = Vec::new();
        if let Err(e) = check_reader_id(&self.site) {
            errors.push(format!("site: {e}"));
        }
        if !(-14 * 60..=14 * 60).contains(&self.utc_offset_minutes) {
            errors.push(format!(
                "utc_offset_minutes: must be within [-840, 840], got {}",
                self.utc_offset_minutes
            ));
        }
        if let Some(l) = &self.location {
            location_problems("location", l, &mut errors);
        }
        if !(1..=16).contains(&self.model.sessions) {
            errors.push(format!(
                "model.sessions: must be within [1, 16], got {}",
                self.model.sessions
            ));
        }
        if !(1..=64).contains(&self.model.threads_per_session) {
            errors.push(format!(
                "model.threads_per_session: must be within [1, 64], got {}",
                self.model.threads_per_session
            ));
        }
        if let Some(m) = &self.model.manifest
            && !m.is_file()
        {
            errors.push(format!("model.manifest: {} is not a file", m.display()));
        }
        if self.snapshot.max_bytes > protocol::limits::MAX_SNAPSHOT_JPEG_BYTES {
            errors.push(format!(
                "snapshot.max_bytes: at most {} (the wire limit), got {}",
                protocol::limits::MAX_SNAPSHOT_JPEG_BYTES,
                self.snapshot.max_bytes
            ));
        }
        errors.extend(
            self.outbox
                .validate()
                .into_iter()
                .map(|e| format!("outbox.{e}")),
        );
        if let Some(u) = &self.uplink {
            errors.extend(u.validate().into_iter().map(|e| format!("uplink.{e}")));
        }
        if let Some(m) = &self.metrics
            && m.listen.parse::<SocketAddr>().is_err()
        {
            errors.push(format!(
                "metrics.listen: {:?} is not address:port (e.g. 127.0.0.1:9460)",
                m.listen
            ));
        }
        if self.snapshot.max_bytes < 10_000 {
            errors.push(format!(
                "snapshot.max_bytes: must be at least 10000, got {}",
                self.snapshot.max_bytes
            ));
        }
        if !(1..=1000).contains(&self.snapshot.ring_frames) {
            errors.push(format!(
                "snapshot.ring_frames: must be within [1, 1000], got {}",
                self.snapshot.ring_frames
            ));
        }
        if self.snapshot.tag_frame_tolerance_ms < 0 {
            errors.push("snapshot.tag_frame_tolerance_ms: must not be negative".into());
        }
        if self.cameras.is_empty() && self.tag_readers.is_empty() {
            errors.push("cameras: a box needs at least one camera or tag reader".into());
        }
        let mut ids: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, c) in self.cameras.iter_mut().enumerate() {
            let at = format!("cameras[{i}]");
            if let Err(e) = check_reader_id(&c.id) {
                errors.push(format!("{at}.id: {e}"));
            }
            if let Some(l) = &c.location {
                location_problems(&format!("{at}.location"), l, &mut errors);
            }
            for (k, r) in c.readers.iter().enumerate() {
                if let Err(e) = check_reader_id(r) {
                    errors.push(format!("{at}.readers[{k}]: {e}"));
                }
            }
            let field = c.source.camera_field();
            if !field.is_empty() && *field != c.id {
                errors.push(format!(
                    "{at}.source.camera: set from the camera's id; leave it out (got {field:?})"
                ));
            }
            *field = c.id.clone();
            errors.extend(
                c.source
                    .validate()
                    .into_iter()
                    .filter(|e| !e.starts_with("camera:"))
                    .map(|e| format!("{at}.source.{e}")),
            );
            errors.extend(
                c.rules
                    .validate()
                    .into_iter()
                    .map(|e| format!("{at}.rules.{e}")),
            );
        }
        for (i, c) in self.cameras.iter().enumerate() {
            if let Some(first) = ids.insert(&c.id, i) {
                errors.push(format!(
                    "cameras[{i}].id: {:?} is already the id of cameras[{first}]",
                    c.id
                ));
            }
        }
        match (&self.tag_rules, &self.tag_rules_file) {
            (Some(_), Some(_)) => errors.push(
                "tag_rules_file: give tag rules inline in [tag_rules] or in a file, not both"
                    .into(),
            ),
            (Some(rules), None) => {
                if let Err(e) = rules.validate() {
                    errors.extend(e.into_iter().map(|e| format!("tag_rules.{e}")));
                }
            }
            (None, Some(file)) => match TagConfig::load(file) {
                Ok(rules) => self.tag_rules = Some(rules),
                Err(e) => errors.push(format!("tag_rules_file: {e}")),
            },
            (None, None) => {}
        }
        for (i, r) in self.tag_readers.iter().enumerate() {
            match r {
                TagReaderConfig::Tcp(l) | TagReaderConfig::Udp(l) => {
                    if l.listen.parse::<SocketAddr>().is_err() {
                        errors.push(format!(
                            "tag_readers[{i}].listen: {:?} is not address:port (e.g. 0.0.0.0:7001)",
                            l.listen
                        ));
                    }
                }
                TagReaderConfig::Mqtt(m) => errors.extend(
                    m.validate()
                        .into_iter()
                        .map(|e| format!("tag_readers[{i}].{e}")),
                ),
            }
        }
        if self.sightings.batch_max == 0 {
            errors.push("sightings.batch_max: must be at least 1".into());
        }
        if self.sightings.batch_max_age_ms < 1 {
            errors.push("sightings.batch_max_age_ms: must be at least 1".into());
        }
        errors
    }

    /// The local time of day at `ms` (Unix ms, UTC), for rules' active hours.
    pub fn time_of_day(&self, ms: i64) -> TimeOfDay {
        let local_s = ms.div_euclid(1000) + i64::from(self.utc_offset_minutes) * 60;
        TimeOfDay::from_seconds(u32::try_from(local_s.rem_euclid(86_400)).unwrap_or(0))
    }

    /// The effective location of camera `index`.
    pub fn camera_location(&self, index: usize) -> Option<LocationConfig> {
        self.cameras
            .get(index)
            .and_then(|c| c.location)
            .or(self.location)
    }
}

fn location_problems(at: &str, l: &LocationConfig, errors: &mut Vec<String>) {
    if !(l.lon.is_finite() && (-180.0..=180.0).contains(&l.lon)) {
        errors.push(format!(
            "{at}.lon: must be within [-180, 180], got {}",
            l.lon
        ));
    }
    if !(l.lat.is_finite() && (-90.0..=90.0).contains(&l.lat)) {
        errors.push(format!("{at}.lat: must be within [-90, 90], got {}", l.lat));
    }
}

fn resolve(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

/// Deserialises each section (and each camera) on its own, collecting every error.
fn parse_sections(text: &str) -> Result<AgentConfig, Vec<String>> {
    let mut s = Sections::parse(text)?;
    let site = s.required("site", "every box needs a site id");
    let utc_offset_minutes = s.or_else("utc_offset_minutes", defaults::utc_offset_minutes);
    let location = s.optional("location");
    let model = s.or_default::<ModelConfig>("model");
    let snapshot = s.or_default::<SnapshotConfig>("snapshot");
    let cameras = s.each::<CameraConfig>("cameras");
    let tag_rules = s.optional("tag_rules");
    let tag_rules_file = s.optional("tag_rules_file");
    let tag_readers = s.or_default("tag_readers");
    let sightings = s.or_default::<SightingsConfig>("sightings");
    let data_dir = s.or_else("data_dir", defaults::data_dir);
    let outbox = s.or_default::<OutboxConfig>("outbox");
    let uplink = s.optional("uplink");
    let metrics = s.optional("metrics");
    // Only a missing or invalid site leaves nothing to build; every other problem is in `s`,
    // which refuses the file.
    let config = site.map(|site| AgentConfig {
        site,
        utc_offset_minutes,
        location,
        model,
        snapshot,
        cameras,
        tag_rules,
        tag_rules_file,
        tag_readers,
        sightings,
        data_dir,
        outbox,
        uplink,
        metrics,
    });
    s.finish_with(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
site = "wd-jc-001"
location = { lon = 102.404, lat = 25.531 }

[model]
sessions = 2

[[cameras]]
id = "plaza"
readers = ["r1"]
source = { kind = "ffmpeg", input = "video/vtest.avi", fps = 5, width = 640 }

[[cameras.rules.zones]]
id = "cordon"
polygon = [[0, 0], [100, 0], [100, 100]]

[[cameras]]
id = "gate"
location = { lon = 102.405, lat = 25.532 }
source = { kind = "ffmpeg", input = "rtsp://10.0.0.7/sub" }

[tag_rules.watchlist]
tags = [{ tag = "e2801160", case_ref = "WD-1" }]

[[tag_readers]]
kind = "tcp"
listen = "127.0.0.1:7001"
"#;

    fn errors(text: &str) -> Vec<String> {
        AgentConfig::from_toml_str(text, Path::new("/etc/edge-agent")).unwrap_err()
    }

    #[test]
    fn a_good_config_loads_with_defaults_and_resolved_paths() {
        let c = AgentConfig::from_toml_str(GOOD, Path::new("/etc/edge-agent")).unwrap();
        assert_eq!(c.site, "wd-jc-001");
        assert_eq!(c.utc_offset_minutes, 480);
        assert_eq!(c.cameras.len(), 2);
        let SourceConfig::Ffmpeg(f) = &c.cameras[0].source else {
            panic!("ffmpeg")
        };
        assert_eq!(f.input.expose(), "/etc/edge-agent/video/vtest.avi");
        assert_eq!(
            f.camera, "plaza",
            "the source's camera comes from the camera id"
        );
        let SourceConfig::Ffmpeg(g) = &c.cameras[1].source else {
            panic!("ffmpeg")
        };
        assert_eq!(
            g.input.expose(),
            "rtsp://10.0.0.7/sub",
            "URLs are not paths"
        );
        assert_eq!(c.cameras[0].rules.zones[0].id, "cordon");
        assert_eq!(c.snapshot.max_bytes, 200_000);
        assert_eq!(c.camera_location(0).map(|l| l.lon), Some(102.404));
        assert_eq!(c.camera_location(1).map(|l| l.lon), Some(102.405));
        assert!(c.tag_rules.is_some());
    }

    #[test]
    fn every_problem_is_reported_at_once_with_its_path() {
        let text = r#"
site = "bad site!"
colour = "blue"

[[cameras]]
id = "a"
source = { kind = "ffmpeg", input = "x.avi", fps = 0 }
[[cameras.rules.zones]]
id = "z"
polygon = [[0, 0], [1, 1]]

[[cameras]]
id = "a"
source = { kind = "ffmpeg", input = "y.avi", widht = 640 }

[[cameras]]
id = "c"
source = { kind = "carrier-pigeon" }

[snapshot]
max_bytes = 10
"#;
        let e = errors(text);
        let has = |needle: &str| e.iter().any(|x| x.contains(needle));
        assert!(has("colour: unknown key"), "{e:#?}");
        assert!(
            has("cameras[1].source.widht") || has("cameras[1].source: unknown field `widht`"),
            "{e:#?}"
        );
        assert!(has("cameras[2].source") && has("carrier-pigeon"), "{e:#?}");
        // Semantic problems are not reported while parse errors remain (their sections are
        // missing); fix the parse errors and all of them appear together.
        let fixed = text
            .replace("colour = \"blue\"\n", "")
            .replace(", widht = 640", "")
            .replace(
                "kind = \"carrier-pigeon\"",
                "kind = \"ffmpeg\", input = \"z.avi\"",
            );
        let e = errors(&fixed);
        let has = |needle: &str| e.iter().any(|x| x.contains(needle));
        assert!(has("site: contains ' '"), "{e:#?}");
        assert!(has("cameras[0].source.fps"), "{e:#?}");
        assert!(has("cameras[0].rules.zones[0].polygon"), "{e:#?}");
        assert!(
            has("cameras[1].id: \"a\" is already the id of cameras[0]"),
            "{e:#?}"
        );
        assert!(has("snapshot.max_bytes"), "{e:#?}");
        assert!(e.len() >= 5, "{e:#?}");
    }

    #[test]
    fn every_source_and_reader_kind_is_configurable() {
        let text = r#"
site = "s"
[[cameras]]
id = "snap"
source = { kind = "http", url = "http://10.0.0.9/ISAPI/Streaming/channels/102/picture", username = "admin", password = "pw", auth = "digest", fps = 2 }
[[cameras]]
id = "mj"
source = { kind = "mjpeg", url = "http://10.0.0.10/video.mjpg" }
[[cameras]]
id = "ftp"
source = { kind = "dir", path = "incoming/ftp", after_read = "move" }
[[tag_readers]]
kind = "mqtt"
host = "127.0.0.1"
topic = "readers/+/reads"
[[tag_readers]]
kind = "udp"
listen = "0.0.0.0:7002"
"#;
        let c = AgentConfig::from_toml_str(text, Path::new("/srv")).unwrap();
        assert!(matches!(&c.cameras[0].source, SourceConfig::Http(h) if h.camera == "snap"));
        assert!(matches!(&c.cameras[1].source, SourceConfig::Mjpeg(_)));
        let SourceConfig::Dir(d) = &c.cameras[2].source else {
            panic!("dir")
        };
        assert_eq!(d.path, Path::new("/srv/incoming/ftp"));
        assert!(matches!(c.tag_readers[0], TagReaderConfig::Mqtt(_)));
        // Each kind's own checks run, with the camera's path in front.
        let bad = text
            .replace("http://10.0.0.9", "ftp://10.0.0.9")
            .replace("readers/+/reads", "readers/#/reads");
        let e = AgentConfig::from_toml_str(&bad, Path::new("/srv")).unwrap_err();
        assert!(
            e.iter().any(|x| x.starts_with("cameras[0].source.url")),
            "{e:#?}"
        );
        assert!(
            e.iter().any(|x| x.starts_with("tag_readers[0].topic")),
            "{e:#?}"
        );
    }

    #[test]
    fn a_syntax_error_names_its_line() {
        let e = errors("site = \"x\"\n[[cameras]\n");
        assert_eq!(e.len(), 1, "{e:#?}");
        assert!(
            e[0].contains("TOML syntax") && e[0].contains("line 2"),
            "{e:#?}"
        );
    }

    #[test]
    fn a_missing_site_and_an_empty_box_are_refused() {
        let e = errors("");
        assert!(e.iter().any(|x| x.starts_with("site: missing")), "{e:#?}");
        let e = errors("site = \"s\"");
        assert!(
            e.iter()
                .any(|x| x.contains("at least one camera or tag reader")),
            "{e:#?}"
        );
    }

    #[test]
    fn tag_rules_inline_and_in_a_file_are_exclusive_and_the_file_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("tags.toml"),
            "[[watchlist.tags]]\ntag = \"zz\"\ncase_ref = \"c\"\n",
        )
        .unwrap();
        let text = "site = \"s\"\ntag_rules_file = \"tags.toml\"\n[[tag_readers]]\nkind = \"udp\"\nlisten = \"nonsense\"\n";
        let e = AgentConfig::from_toml_str(text, dir.path()).unwrap_err();
        assert!(
            e.iter()
                .any(|x| x.starts_with("tag_rules_file:") && x.contains("watchlist.tags[0].tag")),
            "{e:#?}"
        );
        assert!(
            e.iter().any(|x| x.starts_with("tag_readers[0].listen")),
            "{e:#?}"
        );
        let both = format!("{text}\n[tag_rules]\n");
        let e = AgentConfig::from_toml_str(&both, dir.path()).unwrap_err();
        assert!(e.iter().any(|x| x.contains("not both")), "{e:#?}");
    }

    #[test]
    fn local_time_of_day_uses_the_configured_offset() {
        let c = AgentConfig::from_toml_str(GOOD, Path::new("/")).unwrap();
        // 2026-11-22T14:30:00Z is 22:30 in China.
        let ms = protocol::time::parse_rfc3339_ms("2026-11-22T14:30:00Z").unwrap();
        assert_eq!(c.time_of_day(ms), TimeOfDay::from_hms(22, 30, 0));
        // Before the epoch still wraps into the day.
        assert_eq!(c.time_of_day(-1000), TimeOfDay::from_hms(7, 59, 59));
    }
}
