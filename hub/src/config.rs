//! The hub's TOML config ([`HubConfig`]): typed, unknown keys refused, and every problem in
//! every section listed at once ([`infra::config::Sections`], shared with the agent: each section is parsed on its own so one bad section does not
//! hide another's problems). Relative paths resolve against the config file's directory.
//!
//! Loading also checks what the config points at: the grid file must import, the roster must
//! load against that grid, every site's registered cell must exist, the escalation policy must
//! validate, the credentials file must parse. `hub validate` prints the lot.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use infra::config::Sections;
use serde::Deserialize;

use crate::case::Policy;
use crate::grid::CoordSystem;

/// The whole hub config.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Where the hub keeps its store, the imported grid and roster (default /var/lib/hub).
    pub data_dir: PathBuf,
    /// MQTT topic prefix (default `se/v1`).
    pub topic_prefix: String,
    pub grid: GridSection,
    pub roster: RosterSection,
    pub broker: BrokerSection,
    /// Registered sites: id → where the site is (its cell, for alerts without a location).
    pub sites: BTreeMap<String, SiteSection>,
    pub escalation: Policy,
    pub registry: RegistrySection,
    pub push: PushSection,
    pub commands: CommandsSection,
    pub metrics: Option<MetricsSection>,
    /// The dashboard and its API; absent: no HTTP listener.
    pub http: Option<HttpSection>,
    /// What a site's alerts are trusted with.
    pub ingest: IngestSection,
    /// The data directory's limits.
    pub storage: StorageSection,
    /// How long stored records are kept (see [`crate::retention`]).
    pub retention: RetentionSection,
    /// `[[routing]]`: alerts sent to departments as well as their cell
    /// ([`crate::case::RoutingRule`]).
    pub routing: Vec<crate::case::RoutingRule>,
    /// `[ranking]`: the weights of the 红黑榜.
    pub ranking: RankingSection,
    /// Text messages ([`crate::sms`]); absent: no SMS.
    pub sms: Option<crate::sms::SmsConfig>,
    /// Personal work-app messages ([`crate::workapp`]); absent: none.
    pub work_app: Option<crate::workapp::WorkAppConfig>,
}

/// `[ranking]`: how the 红黑榜 (red and black lists of `GET /api/v1/stats`) weighs each share
/// of a cell's or department's cases. A score is the weighted sum of the shares acknowledged
/// without climbing, resolved and satisfied, minus the weighted shares overdue and
/// supervised; best first on the red list, worst first on the black.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RankingSection {
    pub on_time: f64,
    pub resolved: f64,
    pub satisfied: f64,
    pub overdue: f64,
    pub supervised: f64,
    /// Entries on each list.
    pub size: usize,
}

impl Default for RankingSection {
    fn default() -> Self {
        Self {
            on_time: 0.4,
            resolved: 0.2,
            satisfied: 0.1,
            overdue: 0.2,
            supervised: 0.1,
            size: 5,
        }
    }
}

impl RankingSection {
    /// Every problem, `ranking.field: problem`.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (name, w) in [
            ("on_time", self.on_time),
            ("resolved", self.resolved),
            ("satisfied", self.satisfied),
            ("overdue", self.overdue),
            ("supervised", self.supervised),
        ] {
            if !(0.0..=100.0).contains(&w) {
                out.push(format!("ranking.{name}: {w} is outside 0..=100"));
            }
        }
        if !(1..=100).contains(&self.size) {
            out.push(format!("ranking.size: {} is outside 1..=100", self.size));
        }
        out
    }
}

/// `[retention]`: how long each kind of record is kept, and how the sweeper works. Days are
/// counted from when the record was stored (a closed case: from when it was closed).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionSection {
    /// Alert snapshots (JPEG).
    pub snapshots_days: u32,
    /// Photos people attached (resolutions, patrol reports).
    pub photos_days: u32,
    /// Alerts as the sites sent them.
    pub alerts_days: u32,
    /// Closed cases, counted from their closing (an open case is never swept).
    pub closed_cases_days: u32,
    /// Tag sightings (trajectories).
    pub sightings_days: u32,
    /// Seconds between sweeps.
    pub sweep_every_s: u64,
    /// Most records removed per kind per sweep; what is left goes at the next sweep.
    pub max_per_tick: usize,
}

impl Default for RetentionSection {
    fn default() -> Self {
        Self {
            snapshots_days: 90,
            photos_days: 90,
            alerts_days: 365,
            closed_cases_days: 1095,
            sightings_days: 30,
            sweep_every_s: 60,
            max_per_tick: 2000,
        }
    }
}

/// Longest retention accepted, days (a century: anything longer is a typo).
pub const MAX_RETENTION_DAYS: u32 = 36_500;
/// Longest time between sweeps accepted, seconds (a day).
pub const MAX_SWEEP_EVERY_S: u64 = 86_400;
/// Most records per kind per sweep accepted: a sweep must stay short.
pub const MAX_PER_TICK: usize = 100_000;

impl RetentionSection {
    /// Every problem, each naming its field.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (name, days) in [
            ("snapshots_days", self.snapshots_days),
            ("photos_days", self.photos_days),
            ("alerts_days", self.alerts_days),
            ("closed_cases_days", self.closed_cases_days),
            ("sightings_days", self.sightings_days),
        ] {
            if !(1..=MAX_RETENTION_DAYS).contains(&days) {
                out.push(format!(
                    "retention.{name}: {days} is outside 1..={MAX_RETENTION_DAYS}"
                ));
            }
        }
        // A snapshot is shown with its alert; kept longer, it would be kept for nobody.
        if self.snapshots_days > self.alerts_days {
            out.push(format!(
                "retention.snapshots_days: {} is longer than retention.alerts_days ({}); a \
                 snapshot is only reachable through its alert",
                self.snapshots_days, self.alerts_days
            ));
        }
        if !(1..=MAX_SWEEP_EVERY_S).contains(&self.sweep_every_s) {
            out.push(format!(
                "retention.sweep_every_s: {} is outside 1..={MAX_SWEEP_EVERY_S}",
                self.sweep_every_s
            ));
        }
        if !(1..=MAX_PER_TICK).contains(&self.max_per_tick) {
            out.push(format!(
                "retention.max_per_tick: {} is outside 1..={MAX_PER_TICK}",
                self.max_per_tick
            ));
        }
        out
    }
}

/// `[storage]`: how the hub treats its data directory.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSection {
    /// Below this many MiB free on the data directory's filesystem new alerts are deferred
    /// (see [`crate::disk`]). Default: the larger of 2 GiB and 5 % of the filesystem.
    #[serde(default)]
    pub min_free_mb: Option<u64>,
    /// MiB kept aside in `data_dir/reserve` and released when the disk is full, so the store
    /// can still open and write (see [`crate::disk`]). Default 64; 0: no reserve.
    #[serde(default)]
    pub reserve_mb: Option<u64>,
}

impl StorageSection {
    pub fn min_free_bytes(&self) -> Option<u64> {
        self.min_free_mb.map(|mb| mb.saturating_mul(1 << 20))
    }

    pub fn reserve_bytes(&self) -> u64 {
        self.reserve_mb
            .map_or(crate::disk::DEFAULT_RESERVE_BYTES, |mb| {
                mb.saturating_mul(1 << 20)
            })
    }
}

/// What the hub trusts in a site's alerts (see [`crate::trust`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestSection {
    /// An alert's position farther than this (metres) from its site's registered location
    /// (or, for a site without one, from its cell's bounds) is not trusted: the alert is filed
    /// in the site's cell and the case is flagged. `[sites.<id>] max_distance_m` overrides it.
    #[serde(default = "default_max_site_distance")]
    pub max_site_distance_m: f64,
}

fn default_max_site_distance() -> f64 {
    2000.0
}

impl Default for IngestSection {
    fn default() -> Self {
        Self {
            max_site_distance_m: default_max_site_distance(),
        }
    }
}

/// Bounds of a position radius: below 10 m a GPS fix's own error trips it; above 100 km a
/// site could file in the next county.
pub const SITE_DISTANCE_RANGE_M: std::ops::RangeInclusive<f64> = 10.0..=100_000.0;

/// The dashboard and the HTTP API (`/api/v1`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    pub listen: SocketAddr,
    /// Dashboard users: logins, roles, cells and argon2 password hashes (`hub user add`).
    pub users: PathBuf,
    /// How long a login lasts (browser session or app token), hours.
    #[serde(default = "default_session_hours")]
    pub session_hours: u64,
    /// Mark the session cookie `Secure` (set when the hub is served over HTTPS by a proxy).
    #[serde(default)]
    pub secure_cookie: bool,
    /// An XYZ raster tile server on the local network (`http://tiles.lan/{z}/{x}/{y}.png`);
    /// without one the map is drawn from the grid's own outlines only.
    pub tile_url: Option<String>,
    /// The dashboard's title.
    #[serde(default = "default_title")]
    pub title: String,
    /// Reverse proxies (addresses or CIDR blocks) whose `X-Forwarded-For` is believed. From
    /// any other peer the socket address is the client: a header anyone can set must not pick
    /// whose login attempts are counted.
    #[serde(default)]
    pub trusted_proxies: Vec<Cidr>,
    /// How long an app (bearer) token lasts unless its request asks for less, days.
    #[serde(default = "default_token_days")]
    pub token_days: u32,
}

/// The longest an app token may be asked to last, days: a lost phone's token must die on its
/// own eventually.
pub const MAX_TOKEN_DAYS: u32 = 365;

fn default_session_hours() -> u64 {
    12
}
fn default_token_days() -> u32 {
    30
}

/// An IP network: `10.0.0.0/8`, `fd00::/8`, or one address (`192.0.2.7`, a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        fn masked(bits: u128, width: u8, prefix: u8) -> u128 {
            if prefix == 0 {
                0
            } else {
                bits >> (width - prefix)
            }
        }
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                masked(u32::from(n).into(), 32, self.prefix)
                    == masked(u32::from(a).into(), 32, self.prefix)
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                masked(n.into(), 128, self.prefix) == masked(a.into(), 128, self.prefix)
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (a, p) = s.split_once('/').map_or((s, None), |(a, p)| (a, Some(p)));
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or CIDR block"))?;
        let addr = addr.to_canonical();
        let width = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => width,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= width)
                .ok_or_else(|| format!("{s:?}: the prefix length must be 0..={width}"))?,
        };
        Ok(Self { addr, prefix })
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}
fn default_title() -> String {
    "综治中心 · 雪亮工程".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GridSection {
    /// The GeoJSON hierarchy to start from; `hub import-grids` replaces it with an imported
    /// copy under `data_dir`, which then wins.
    pub file: PathBuf,
    /// `wgs84` or `gcj02`: how the file's coordinates are declared.
    #[serde(default = "default_crs")]
    pub crs: String,
}

fn default_crs() -> String {
    "wgs84".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RosterSection {
    /// Directory with people.csv, duty.csv, overrides.csv, backups.csv; `hub import-roster`
    /// replaces it with an imported copy under `data_dir`.
    pub dir: PathBuf,
    /// Local time of the duty shifts, minutes east of UTC (China: 480).
    #[serde(default = "default_utc_offset")]
    pub utc_offset_minutes: i32,
}

fn default_utc_offset() -> i32 {
    480
}

/// Embedded rumqttd behind the gateway, or an external broker.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerSection {
    /// `embedded` (default) or `external`.
    #[serde(default = "default_mode")]
    pub mode: String,
    /// Plain MQTT listeners of the gateway (embedded mode).
    #[serde(default = "default_listen")]
    pub listen: Vec<SocketAddr>,
    /// TLS listeners of the gateway (embedded mode); needs `[broker.tls]`.
    #[serde(default)]
    pub tls_listen: Vec<SocketAddr>,
    pub tls: Option<ServerTls>,
    /// Per-device credentials (`hub credential add` writes it).
    pub credentials: PathBuf,
    /// Most simultaneous client connections; the gateway stops accepting beyond it.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Connections still waiting to authenticate, in all. When full, the oldest pending one
    /// makes room for a new one (see `gateway::admission`).
    #[serde(default = "default_preauth_pool")]
    pub preauth_pool: usize,
    /// Connections waiting to authenticate from one source address.
    #[serde(default = "default_preauth_per_address")]
    pub preauth_per_address: usize,
    /// External broker (external mode).
    pub external: Option<ExternalBroker>,
}

fn default_mode() -> String {
    "embedded".into()
}
fn default_listen() -> Vec<SocketAddr> {
    vec![SocketAddr::from(([0, 0, 0, 0], 1883))]
}
fn default_max_connections() -> usize {
    10_000
}
fn default_preauth_pool() -> usize {
    1024
}
// Sites behind one carrier NAT share an address; a few dozen reconnecting at once must not
// push each other out.
fn default_preauth_per_address() -> usize {
    32
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// When set, clients must also present a certificate this CA signed.
    pub client_ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalBroker {
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    pub username: String,
    /// File holding the password (kept out of the config).
    pub password_file: PathBuf,
    /// MQTT client id; unique per hub (the persistent session is keyed by it).
    pub client_id: String,
    /// Shared-subscription group: hubs in one group split the alerts.
    #[serde(default = "default_group")]
    pub group: String,
    /// CA for TLS to the broker; plain TCP when absent.
    pub ca_file: Option<PathBuf>,
}

fn default_port() -> u16 {
    1883
}
fn default_group() -> String {
    "hub".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteSection {
    /// The site's grid cell code: where its alerts go when they carry no location.
    pub cell: String,
    /// A display name.
    #[serde(default)]
    pub name: String,
    /// Where the site is (WGS-84), for the map, tag trajectories and the check of its
    /// alerts' positions.
    pub location: Option<protocol::alert::Location>,
    /// This site's own position radius, metres (default `[ingest] max_site_distance_m`).
    pub max_distance_m: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrySection {
    /// A site silent this long is offline.
    #[serde(default = "default_offline_after")]
    pub offline_after_s: u64,
    /// A site's clock further than this from the hub's opens a site-health case, and its
    /// alerts stamped further than this from their receipt are filed at receipt time.
    #[serde(default = "default_clock_tolerance")]
    pub clock_tolerance_s: u64,
}

fn default_offline_after() -> u64 {
    180
}

fn default_clock_tolerance() -> u64 {
    60
}

impl Default for RegistrySection {
    fn default() -> Self {
        Self {
            offline_after_s: default_offline_after(),
            clock_tolerance_s: default_clock_tolerance(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushSection {
    /// Chat-bot webhooks, each attached to a cell: it hears every notification at that cell.
    #[serde(default)]
    pub webhooks: Vec<crate::push::WebhookRoute>,
    /// Base URL of the dashboard, for links in notifications.
    pub dashboard_url: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandsSection {
    /// The hub's Ed25519 signing key (base64), made by `hub keygen`.
    pub signing_key_file: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    pub listen: SocketAddr,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read hub config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("hub config {path} has {} problem(s):\n  {}", errors.len(), errors.join("\n  "))]
    Invalid { path: PathBuf, errors: Vec<String> },
}

impl HubConfig {
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

    /// Parses and checks the config's own fields (not the files it points at; see
    /// [`crate::service::Loaded`] for those). Every problem is returned.
    pub fn from_toml_str(text: &str, base: &Path) -> Result<Self, Vec<String>> {
        let mut s = Sections::parse(text)?;
        let data_dir = s.or_else::<PathBuf>("data_dir", || PathBuf::from("/var/lib/hub"));
        let topic_prefix = s.or_else::<String>("topic_prefix", || {
            protocol::topics::DEFAULT_PREFIX.to_owned()
        });
        let grid = s.required::<GridSection>("grid", "section [grid] names the grid file");
        let roster = s.required::<RosterSection>("roster", "section [roster] names its directory");
        let broker =
            s.required::<BrokerSection>("broker", "section [broker] says where sites connect");
        let sites = s.or_default::<BTreeMap<String, SiteSection>>("sites");
        let escalation = s.or_default::<Policy>("escalation");
        let registry = s.or_default::<RegistrySection>("registry");
        let push = s.or_default::<PushSection>("push");
        let commands =
            s.required::<CommandsSection>("commands", "section [commands] names the signing key");
        let metrics = s.optional::<MetricsSection>("metrics");
        let mut http = s.optional::<HttpSection>("http");
        let ingest = s.or_default::<IngestSection>("ingest");
        let storage = s.or_default::<StorageSection>("storage");
        let retention = s.or_default::<RetentionSection>("retention");
        let routing = s.or_default::<Vec<crate::case::RoutingRule>>("routing");
        let ranking = s.or_default::<RankingSection>("ranking");
        let mut sms = s.optional::<crate::sms::SmsConfig>("sms");
        let mut work_app = s.optional::<crate::workapp::WorkAppConfig>("work_app");
        // Invalid sections fall back to their defaults above (their problem is recorded), so the
        // checks below still run and report theirs too.
        let mut errors = Vec::new();
        errors.extend(retention.problems());
        if storage.min_free_mb == Some(0) {
            errors.push(
                "storage.min_free_mb: must be at least 1 (a hub that fills its disk to the last \
                 byte cannot reopen its store)"
                    .into(),
            );
        }
        let range = |v: f64| SITE_DISTANCE_RANGE_M.contains(&v);
        if !range(ingest.max_site_distance_m) {
            errors.push(format!(
                "ingest.max_site_distance_m: {} is outside {}..={}",
                ingest.max_site_distance_m,
                SITE_DISTANCE_RANGE_M.start(),
                SITE_DISTANCE_RANGE_M.end()
            ));
        }
        if let Some(h) = &http {
            if h.session_hours == 0 {
                errors.push("http.session_hours: must be at least 1".into());
            }
            if !(1..=MAX_TOKEN_DAYS).contains(&h.token_days) {
                errors.push(format!(
                    "http.token_days: {} is outside 1..={MAX_TOKEN_DAYS}",
                    h.token_days
                ));
            }
            if let Some(t) = &h.tile_url
                && !(t.contains("{z}") && t.contains("{x}") && t.contains("{y}"))
            {
                errors.push(format!(
                    "http.tile_url: {t:?} must contain {{z}}, {{x}} and {{y}}"
                ));
            }
        }

        if let Err(e) = protocol::Topics::new(&topic_prefix) {
            errors.push(format!("topic_prefix: {e}"));
        }
        if let Some(g) = &grid
            && g.crs.parse::<CoordSystem>().is_err()
        {
            errors.push(format!("grid.crs: {:?} is not wgs84 or gcj02", g.crs));
        }
        if let Some(b) = &broker {
            match b.mode.as_str() {
                "embedded" => {
                    if b.listen.is_empty() && b.tls_listen.is_empty() {
                        errors.push(
                            "broker.listen: the embedded broker needs at least one listener".into(),
                        );
                    }
                    if !b.tls_listen.is_empty() && b.tls.is_none() {
                        errors.push(
                            "broker.tls: tls_listen is set but [broker.tls] is missing".into(),
                        );
                    }
                }
                "external" => {
                    if b.external.is_none() {
                        errors.push(
                            "broker.external: mode = \"external\" needs [broker.external]".into(),
                        );
                    }
                }
                other => errors.push(format!(
                    "broker.mode: {other:?} is not embedded or external"
                )),
            }
            if b.max_connections == 0 {
                errors.push("broker.max_connections: must be at least 1".into());
            }
            if b.preauth_pool == 0 {
                errors.push("broker.preauth_pool: must be at least 1".into());
            }
            if b.preauth_per_address == 0 || b.preauth_per_address > b.preauth_pool {
                errors.push(
                    "broker.preauth_per_address: must be at least 1 and at most broker.preauth_pool"
                        .into(),
                );
            }
        }
        for (id, site) in &sites {
            if let Err(e) = protocol::validate_id("site", id) {
                errors.push(format!("sites.{id}: {e}"));
            }
            // Patrol reports are filed under this pseudo-site; a real site of that name
            // would blur which alerts came from people.
            if id == crate::trust::PATROL_SITE {
                errors.push(format!(
                    "sites.{id}: the name is reserved for patrol reports"
                ));
            }
            if id == crate::trust::HUB_SITE {
                errors.push(format!(
                    "sites.{id}: the name is reserved for the hub's own health alerts"
                ));
            }
            if let Some(d) = site.max_distance_m
                && !range(d)
            {
                errors.push(format!(
                    "sites.{id}.max_distance_m: {d} is outside {}..={}",
                    SITE_DISTANCE_RANGE_M.start(),
                    SITE_DISTANCE_RANGE_M.end()
                ));
            }
            if let Some(l) = site.location
                && !((-180.0..=180.0).contains(&l.lon) && (-90.0..=90.0).contains(&l.lat))
            {
                errors.push(format!("sites.{id}.location: lon/lat out of range"));
            }
        }
        if let Err(e) = escalation.validate() {
            for p in e.0 {
                errors.push(format!("escalation.{p}"));
            }
        }
        for (i, w) in push.webhooks.iter().enumerate() {
            for p in w.problems() {
                errors.push(format!("push.webhooks[{i}]: {p}"));
            }
        }
        errors.extend(ranking.problems());
        for (i, r) in routing.iter().enumerate() {
            for p in r.problems() {
                errors.push(format!("routing[{i}].{p}"));
            }
        }
        if let Some(c) = &sms {
            errors.extend(c.problems().into_iter().map(|p| format!("sms.{p}")));
        }
        if let Some(c) = &work_app {
            errors.extend(c.problems().into_iter().map(|p| format!("work_app.{p}")));
        }
        if registry.offline_after_s == 0 {
            errors.push("registry.offline_after_s: must be at least 1".into());
        }
        if !(1..=86_400).contains(&registry.clock_tolerance_s) {
            errors.push(format!(
                "registry.clock_tolerance_s: {} is outside 1..=86400",
                registry.clock_tolerance_s
            ));
        }
        s.errors(errors);
        let (mut grid, mut roster, mut broker, mut commands) =
            s.finish_with((|| Some((grid?, roster?, broker?, commands?)))())?;
        let r = |p: &mut PathBuf| *p = resolve(base, p);
        r(&mut grid.file);
        r(&mut roster.dir);
        r(&mut broker.credentials);
        r(&mut commands.signing_key_file);
        if let Some(h) = &mut http {
            r(&mut h.users);
        }
        if let Some(c) = &mut sms {
            r(&mut c.secret_file);
        }
        if let Some(c) = &mut work_app {
            r(&mut c.secret_file);
        }
        if let Some(t) = &mut broker.tls {
            r(&mut t.cert_file);
            r(&mut t.key_file);
            if let Some(c) = &mut t.client_ca_file {
                r(c);
            }
        }
        if let Some(e) = &mut broker.external {
            r(&mut e.password_file);
            if let Some(c) = &mut e.ca_file {
                r(c);
            }
        }
        Ok(Self {
            data_dir: resolve(base, &data_dir),
            topic_prefix,
            grid,
            roster,
            broker,
            sites,
            escalation,
            registry,
            push,
            commands,
            metrics,
            http,
            ingest,
            storage,
            retention,
            routing,
            ranking,
            sms,
            work_app,
        })
    }

    /// The imported grid under `data_dir` if any, else the configured file (and its CRS).
    pub fn grid_source(&self) -> (PathBuf, CoordSystem) {
        let imported = self.data_dir.join("grid.geojson");
        if imported.exists() {
            (imported, CoordSystem::Wgs84)
        } else {
            let crs = self.grid.crs.parse().unwrap_or(CoordSystem::Wgs84);
            (self.grid.file.clone(), crs)
        }
    }

    /// The imported roster under `data_dir` if any, else the configured directory.
    pub fn roster_source(&self) -> PathBuf {
        let imported = self.data_dir.join("roster");
        if imported.join("people.csv").exists() {
            imported
        } else {
            self.roster.dir.clone()
        }
    }
}

fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        data_dir = "state"
        [grid]
        file = "wuding.geojson"
        [roster]
        dir = "roster"
        [broker]
        listen = ["127.0.0.1:1883"]
        credentials = "credentials.toml"
        [sites.wd-demo-001]
        cell = "532329101001-G01-M01"
        [commands]
        signing_key_file = "hub.key"
    "#;

    #[test]
    fn a_good_config_resolves_paths_against_its_directory() {
        let c = HubConfig::from_toml_str(GOOD, Path::new("/etc/hub")).unwrap();
        assert_eq!(c.data_dir, Path::new("/etc/hub/state"));
        assert_eq!(c.grid.file, Path::new("/etc/hub/wuding.geojson"));
        assert_eq!(c.broker.credentials, Path::new("/etc/hub/credentials.toml"));
        assert_eq!(c.sites["wd-demo-001"].cell, "532329101001-G01-M01");
        assert_eq!(c.registry.offline_after_s, 180);
        assert_eq!(c.registry.clock_tolerance_s, 60);
        assert_eq!(c.topic_prefix, "se/v1");
    }

    #[test]
    fn every_problem_in_every_section_is_listed_at_once() {
        let text = r#"
            colour = "blue"
            [grid]
            file = "g.geojson"
            crs = "bd09"
            [roster]
            dir = "r"
            shifts = 3
            [broker]
            mode = "cluster"
            credentials = "c.toml"
            [sites."bad site"]
            cell = "x"
            [escalation.critical]
            ack = { grid = "10" }
            [ingest]
            max_site_distance_m = 0.5
            radius = 3
        "#;
        let errors = HubConfig::from_toml_str(text, Path::new(".")).unwrap_err();
        let all = errors.join("\n");
        for needle in [
            "colour: unknown key",
            "grid.crs",
            "roster.shifts",
            "broker.mode",
            "sites.bad site",
            "escalation",
            "commands: missing",
            "ingest.radius",
        ] {
            assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
        }
        assert!(errors.len() >= 7, "{all}");
    }

    #[test]
    fn retention_defaults_apply_and_nonsense_is_refused_by_field() {
        let c = HubConfig::from_toml_str(GOOD, Path::new(".")).unwrap();
        assert_eq!(c.retention, RetentionSection::default());
        assert_eq!(c.retention.closed_cases_days, 1095);
        let with = |r: &str| {
            HubConfig::from_toml_str(&format!("{GOOD}\n[retention]\n{r}"), Path::new("."))
        };
        let c = with("sightings_days = 7\nmax_per_tick = 10").unwrap();
        assert_eq!(c.retention.sightings_days, 7);
        assert_eq!(c.retention.max_per_tick, 10);
        assert_eq!(c.retention.alerts_days, 365, "the rest keep their defaults");
        for (bad, needle) in [
            ("alerts_days = 0", "retention.alerts_days: 0 is outside"),
            ("closed_cases_days = 0", "retention.closed_cases_days: 0"),
            (
                "sightings_days = 100000",
                "retention.sightings_days: 100000",
            ),
            ("photos_days = -1", "retention.photos_days"),
            (
                "snapshots_days = 400",
                "retention.snapshots_days: 400 is longer",
            ),
            ("sweep_every_s = 0", "retention.sweep_every_s"),
            ("max_per_tick = 0", "retention.max_per_tick"),
            ("keep_forever = true", "retention.keep_forever"),
        ] {
            let all = with(bad).unwrap_err().join("\n");
            assert!(all.contains(needle), "{bad}: {all}");
        }
        // Several problems at once, each named.
        let all = with("alerts_days = 0\nsightings_days = 0")
            .unwrap_err()
            .join("\n");
        assert!(
            all.contains("alerts_days") && all.contains("sightings_days"),
            "{all}"
        );
    }

    #[test]
    fn sms_is_optional_its_secret_path_resolves_and_its_problems_name_their_fields() {
        let c = HubConfig::from_toml_str(GOOD, Path::new(".")).unwrap();
        assert!(c.sms.is_none());
        let with = |sms: &str| {
            HubConfig::from_toml_str(&format!("{GOOD}\n[sms]\n{sms}"), Path::new("/etc/hub"))
        };
        let base = "provider = \"tencent\"\nsign_name = \"s\"\ntemplate_id = \"1\"\n\
                    key_id = \"AKID\"\nsecret_file = \"sms.secret\"\n";
        let c = with(&format!("{base}sdk_app_id = \"1400\"")).unwrap();
        let sms = c.sms.unwrap();
        assert_eq!(sms.secret_file, Path::new("/etc/hub/sms.secret"));
        assert_eq!(sms.region(), "ap-guangzhou");
        let all = with(&format!("{base}poll_interval_s = 0"))
            .unwrap_err()
            .join("\n");
        assert!(
            all.contains("sms.sdk_app_id:") && all.contains("sms.poll_interval_s:"),
            "{all}"
        );
        let all = with(&format!("{base}sdk_app_id = \"1\"\nsecret = \"x\""))
            .unwrap_err()
            .join("\n");
        assert!(all.contains("sms") && all.contains("secret"), "{all}");
    }

    #[test]
    fn trusted_proxies_are_typed_networks_and_token_days_are_bounded() {
        let with = |http: &str| {
            HubConfig::from_toml_str(
                &format!("{GOOD}\n[http]\nlisten = \"127.0.0.1:0\"\nusers = \"u.toml\"\n{http}"),
                Path::new("."),
            )
        };
        let c = with(r#"trusted_proxies = ["10.1.0.0/16", "::1", "192.0.2.7"]"#).unwrap();
        let h = c.http.unwrap();
        assert_eq!(h.token_days, 30);
        let [net, v6, one] = h.trusted_proxies[..] else {
            panic!("{:?}", h.trusted_proxies)
        };
        assert!(net.contains("10.1.200.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        // An IPv4 peer seen as IPv4-mapped IPv6 is the same peer.
        assert!(net.contains("::ffff:10.1.0.9".parse().unwrap()));
        assert!(v6.contains("::1".parse().unwrap()));
        assert!(!v6.contains("127.0.0.1".parse().unwrap()));
        assert!(one.contains("192.0.2.7".parse().unwrap()));
        assert!(!one.contains("192.0.2.8".parse().unwrap()));
        assert!(
            with("trusted_proxies = []")
                .unwrap()
                .http
                .unwrap()
                .trusted_proxies
                .is_empty()
        );
        for (bad, needle) in [
            (r#"trusted_proxies = ["10.0.0.0/33"]"#, "prefix length"),
            (r#"trusted_proxies = ["proxy.lan"]"#, "not an IP address"),
            ("trusted_proxy = []", "trusted_proxy"),
            ("token_days = 0", "http.token_days"),
            ("token_days = 366", "http.token_days"),
        ] {
            let all = with(bad).unwrap_err().join("\n");
            assert!(all.contains(needle), "{bad}: {all}");
        }
    }
}
