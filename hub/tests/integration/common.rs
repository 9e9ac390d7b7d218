//! Shared set-up for the hub's integration tests: a config over the Wuding example grid and
//! roster in a temporary directory, test credentials, valid alerts, and MQTT clients.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hub::config::HubConfig;
use hub::dispatch::SystemClock;
use hub::gateway::auth::sha256_hex;
use hub::push::Notification;
use hub::service::{Loaded, RunningHub};
use protocol::{Alert, Severity, UtcMillis};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};
use tempfile::TempDir;
use tokio::sync::mpsc;

use testkit::certs::{make_ca, make_leaf};
// Not every test binary uses each of these.
#[allow(unused_imports)]
pub use testkit::{eventually, free_port, repo, wait_port};

pub const SITE: &str = "wd-demo-001";
/// Inside micro-grid 532329101001-G01-M01.
pub const DEMO_LON: f64 = 102.4040;
pub const DEMO_LAT: f64 = 25.5300;
pub const M01: &str = "532329101001-G01-M01";

pub fn token(id: &str) -> String {
    format!("test-token-{id}")
}

/// A hub directory: config, credentials (sites s-*, service `svc`, people of the roster) and
/// a signing key. `extra` is appended to the config (e.g. an `[escalation]` table).
pub struct HubDir {
    pub dir: TempDir,
    pub config_path: PathBuf,
}

pub fn hub_dir(broker: &str, extra: &str) -> HubDir {
    let dir = tempfile::tempdir().unwrap();
    let mut creds = String::new();
    for (kind, id) in [
        ("site", SITE),
        ("site", "wd-other-002"),
        ("service", "svc"),
        ("person", "p-lina"),
    ] {
        creds.push_str(&format!(
            "[[credential]]\nkind = \"{kind}\"\nid = \"{id}\"\ntoken_sha256 = \"{}\"\n",
            sha256_hex(token(id).as_bytes())
        ));
    }
    std::fs::write(dir.path().join("credentials.toml"), creds).unwrap();
    std::fs::write(dir.path().join("users.toml"), users_toml()).unwrap();
    let key = protocol::SigningKey::from_bytes(&[7u8; 32]);
    write_key(
        &dir.path().join("signing.key"),
        &protocol::command::encode_signing_key(&key),
    );
    let grid = repo().join("configs/hub/wuding.geojson");
    let roster = repo().join("configs/hub/roster");
    // The default threshold is 5 % of the host's disk: a test must not start deferring
    // alerts because the machine running it is short of space (disk tests set their own).
    let storage = if extra.contains("[storage]") {
        ""
    } else {
        "[storage]\nmin_free_mb = 16\n"
    };
    let config = format!(
        r#"
data_dir = "state"
[grid]
file = "{}"
[roster]
dir = "{}"
[broker]
credentials = "credentials.toml"
{broker}
[sites.{SITE}]
cell = "{M01}"
[sites.wd-other-002]
cell = "532329102001-G01"
[commands]
signing_key_file = "signing.key"
{storage}[http]
listen = "127.0.0.1:0"
users = "users.toml"
{extra}
"#,
        grid.display(),
        roster.display()
    );
    let config_path = dir.path().join("hub.toml");
    std::fs::write(&config_path, config).unwrap();
    HubDir { dir, config_path }
}

/// Writes a signing key file as `hub keygen` does: readable by its owner only (the hub
/// refuses a key others can read).
pub fn write_key(path: &Path, text: &str) {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let _ = std::fs::remove_file(path);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .unwrap();
}

/// Dashboard users of the test hub: (login, role, cells, roster person). Each one's password
/// is [`password`]`(login)`.
pub const USERS: &[(&str, &str, &[&str], Option<&str>)] = &[
    ("admin", "admin", &[], None),
    // County governance centre: sees everything in the county.
    ("op-county", "operator", &["532329"], Some("p-huangtao")),
    // 狮山镇 (township of M01) and 高桥镇 (another township).
    (
        "op-shishan",
        "operator",
        &["532329101"],
        Some("p-luozhengyu"),
    ),
    ("op-other", "operator", &["532329102"], Some("p-yangjie")),
    // Grid members: micro-grid M01 (on duty there 17:00-21:00) and a grid of the other township.
    ("m-m01", "member", &[M01], Some("p-zhouguiying")),
    // The traffic police's duty officer (a department of the example roster).
    ("m-jj", "member", &["D-JJ"], Some("p-liujing")),
    (
        "m-other",
        "member",
        &["532329102001-G01"],
        Some("p-lixiaomei"),
    ),
];

pub fn password(login: &str) -> String {
    format!("pw-{login}-2026")
}

/// The users file, hashed once per test binary (argon2 is slow on purpose).
pub fn users_toml() -> String {
    static TEXT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TEXT.get_or_init(|| {
        let mut out = String::new();
        for (login, role, cells, person) in USERS {
            let cells: Vec<String> = cells.iter().map(|c| format!("{c:?}")).collect();
            out.push_str(&format!(
                "[[user]]\nlogin = {login:?}\nname = {login:?}\nrole = {role:?}\ncells = [{}]\n{}password = {:?}\n\n",
                cells.join(", "),
                person.map(|p| format!("person = {p:?}\n")).unwrap_or_default(),
                hub::users::hash_password(&password(login)).unwrap(),
            ));
        }
        out
    })
    .clone()
}

pub const EMBEDDED: &str = "mode = \"embedded\"\nlisten = [\"127.0.0.1:0\"]";

pub fn load(config_path: &Path) -> Loaded {
    let config = HubConfig::load(config_path).unwrap();
    Loaded::load(config).unwrap_or_else(|e| panic!("{}", e.join("\n")))
}

pub async fn start_hub(config_path: &Path) -> RunningHub {
    hub::service::start(load(config_path), Arc::new(SystemClock))
        .await
        .unwrap()
}

/// A clock the test moves: it starts where it is told and advances only when told.
#[derive(Debug)]
pub struct TestClock(std::sync::atomic::AtomicI64);

impl TestClock {
    /// Starting at the real time now.
    pub fn starting_now() -> Arc<Self> {
        Arc::new(Self(std::sync::atomic::AtomicI64::new(UtcMillis::now().0)))
    }

    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn ms(&self) -> i64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl hub::dispatch::Clock for TestClock {
    fn now(&self) -> UtcMillis {
        UtcMillis(self.ms())
    }
}

/// A hub on the test's own clock (escalation, sessions, retention).
pub async fn start_hub_on(config_path: &Path, clock: Arc<TestClock>) -> RunningHub {
    hub::service::start(load(config_path), clock).await.unwrap()
}

/// The value of one sample in a Prometheus text exposition (`name` with its labels, as
/// rendered), if present.
/// The example roster (configs/hub/roster) checked against the example grid, as the test hub
/// loads it: who the hub will find on duty.
pub fn example_roster() -> hub::roster::Roster {
    let grid = hub::grid::geojson::import_str(
        &std::fs::read_to_string(repo().join("configs/hub/wuding.geojson")).unwrap(),
        hub::grid::CoordSystem::Wgs84,
    )
    .unwrap();
    let index = hub::grid::GridIndex::new(grid);
    hub::roster::Roster::load_dir(repo().join("configs/hub/roster"), &|c| {
        index.find(c).is_some()
    })
    .unwrap()
}

pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// A valid alert of `site`, now; `n` makes the id and the track unique.
pub fn alert(site: &str, n: u64, severity: Severity, location: Option<(f64, f64)>) -> Alert {
    let b = testkit::AlertBuilder::new(site, n).severity(severity);
    match location {
        Some((lon, lat)) => b.location(lon, lat),
        None => b,
    }
    .build()
}

/// An MQTT 5 client logged in as `user`; its event loop runs in a task and incoming
/// publishes (topic, payload) come out of the receiver. Acks are counted in `acks`.
pub struct Client {
    pub client: AsyncClient,
    pub rx: mpsc::UnboundedReceiver<(String, Vec<u8>)>,
    pub acks: Arc<std::sync::atomic::AtomicU64>,
    pub connack: Arc<std::sync::Mutex<Option<String>>>,
    pub disconnected: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn client(port: u16, id: &str, user: &str, pass: &str) -> Client {
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(30))
        .set_credentials(user, pass)
        .set_max_packet_size(Some(2 * 1024 * 1024));
    let (client, events) = AsyncClient::new(o, 10_000);
    spawn_loop(client, events)
}

fn spawn_loop(client: AsyncClient, mut events: EventLoop) -> Client {
    let (tx, rx) = mpsc::unbounded_channel();
    let acks = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let connack = Arc::new(std::sync::Mutex::new(None));
    let disconnected = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (a, c, d) = (acks.clone(), connack.clone(), disconnected.clone());
    let task = tokio::spawn(async move {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let topic = String::from_utf8_lossy(&p.topic).into_owned();
                    let _ = tx.send((topic, p.payload.to_vec()));
                }
                Ok(Event::Incoming(Packet::PubAck(_))) => {
                    a.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    *c.lock().unwrap() = Some(format!("{:?}", ack.code));
                }
                Ok(Event::Incoming(Packet::Disconnect(_))) => {
                    d.store(true, std::sync::atomic::Ordering::SeqCst);
                }
                Ok(_) => {}
                Err(e) => {
                    d.store(true, std::sync::atomic::Ordering::SeqCst);
                    *c.lock().unwrap() = Some(format!("error: {e}"));
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    });
    Client {
        client,
        rx,
        acks,
        connack,
        disconnected,
        task,
    }
}

impl Client {
    pub async fn subscribe(&self, filter: &str) {
        self.client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .unwrap();
        // Let the SUBACK come back before the test publishes.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    pub async fn publish_alert(&self, a: &Alert) {
        let topic = format!("se/v1/site/{}/alert", a.site);
        self.client
            .publish(
                topic,
                QoS::AtLeastOnce,
                false,
                serde_json::to_vec(a).unwrap(),
            )
            .await
            .unwrap();
    }

    pub async fn wait_acks(&self, n: u64, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        while self.acks.load(std::sync::atomic::Ordering::SeqCst) < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "only {} of {n} PUBACKs within {within:?}",
                self.acks.load(std::sync::atomic::Ordering::SeqCst)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The next signed command published to this client (subscribed to a site's `cmd`
    /// topic), verified with the test hub's signing key (`[7; 32]`), with its topic; `None`
    /// if none comes within `within`. Panics on a payload that is not a valid signed command.
    pub async fn next_command(
        &mut self,
        within: Duration,
    ) -> Option<(String, protocol::command::Command)> {
        let (topic, payload) = tokio::time::timeout(within, self.rx.recv()).await.ok()??;
        let key = protocol::SigningKey::from_bytes(&[7u8; 32]).verifying_key();
        let cmd = protocol::command::SignedCommand::from_slice(&payload)
            .unwrap_or_else(|e| panic!("not a signed command on {topic}: {e}"))
            .verify(&key)
            .unwrap_or_else(|e| panic!("a command on {topic} not signed with the hub's key: {e}"));
        Some((topic, cmd))
    }

    /// The next notification, with the person it was for.
    pub async fn next_notification(&mut self, within: Duration) -> Option<(String, Notification)> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let (topic, payload) = tokio::time::timeout(left, self.rx.recv()).await.ok()??;
            if let Some(person) = topic
                .strip_prefix("se/v1/person/")
                .and_then(|r| r.strip_suffix("/notify"))
            {
                let n: Notification = serde_json::from_slice(&payload).unwrap();
                return Some((person.to_owned(), n));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Gateway tests: clients of either MQTT version that never reconnect, so a refusal or a
// disconnect by the gateway stays visible; TLS material; more credentials; status messages.

/// Appends a credential (token [`token`]`(id)`) to a hub directory's credentials file; call
/// before [`start_hub`].
pub fn add_credential(dir: &HubDir, kind: &str, id: &str) {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.dir.path().join("credentials.toml"))
        .unwrap();
    write!(
        f,
        "[[credential]]\nkind = \"{kind}\"\nid = \"{id}\"\ntoken_sha256 = \"{}\"\n",
        sha256_hex(token(id).as_bytes())
    )
    .unwrap();
}

/// MQTT protocol version of a test client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    V5,
    V311,
}

/// Where a test client's connection is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnState {
    Connecting,
    Connected,
    /// Ended before a successful CONNACK: the error (e.g. the refusal's return code).
    Refused(String),
    /// Ended after a successful CONNACK: the error (server DISCONNECT, I/O error, …).
    Closed(String),
}

/// How to connect a [`Mqtt`] client.
#[derive(Debug, Clone)]
pub struct Spec {
    pub proto: Proto,
    pub port: u16,
    pub id: String,
    pub login: Option<(String, String)>,
    /// Last will: topic and payload, sent QoS 1 and retained.
    pub will: Option<(String, Vec<u8>)>,
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl Spec {
    pub fn new(proto: Proto, port: u16, id: &str) -> Self {
        Self {
            proto,
            port,
            id: id.to_owned(),
            login: None,
            will: None,
            tls: None,
        }
    }

    pub fn login(mut self, user: &str, pass: &str) -> Self {
        self.login = Some((user.to_owned(), pass.to_owned()));
        self
    }

    pub fn will(mut self, topic: &str, payload: Vec<u8>) -> Self {
        self.will = Some((topic.to_owned(), payload));
        self
    }

    pub fn tls(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    /// Starts the client's event loop; it connects once and never reconnects.
    pub fn start(self) -> Mqtt {
        const MAX: usize = 2 * 1024 * 1024;
        let transport = self
            .tls
            .clone()
            .map(|c| rumqttc::Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(c)));
        let (tx, rx) = mpsc::unbounded_channel();
        let acks = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let subacks = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let reasons = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (state_tx, state) = tokio::sync::watch::channel(ConnState::Connecting);
        let (a, s) = (acks.clone(), subacks.clone());
        let r = reasons.clone();
        let (handle, task) = match self.proto {
            Proto::V5 => {
                let mut o = MqttOptions::new(&self.id, "127.0.0.1", self.port);
                o.set_keep_alive(Duration::from_secs(30))
                    .set_max_packet_size(Some(MAX as u32));
                if let Some((u, p)) = &self.login {
                    o.set_credentials(u, p);
                }
                if let Some((topic, payload)) = &self.will {
                    o.set_last_will(rumqttc::v5::mqttbytes::v5::LastWill::new(
                        topic,
                        payload.clone(),
                        QoS::AtLeastOnce,
                        true,
                        None,
                    ));
                }
                if let Some(t) = transport {
                    o.set_transport(t);
                }
                let (client, mut events) = AsyncClient::new(o, 1000);
                let task = tokio::spawn(async move {
                    loop {
                        match events.poll().await {
                            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                                state_tx.send_replace(ConnState::Connected);
                            }
                            Ok(Event::Incoming(Packet::Publish(p))) => {
                                let topic = String::from_utf8_lossy(&p.topic).into_owned();
                                let _ = tx.send((topic, p.payload.to_vec()));
                            }
                            Ok(Event::Incoming(Packet::PubAck(p))) => {
                                r.lock()
                                    .unwrap()
                                    .push((p.pkid, puback_reason_code(&p.reason)));
                                a.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            }
                            Ok(Event::Incoming(Packet::SubAck(_))) => {
                                s.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            }
                            Ok(_) => {}
                            Err(e) => {
                                end(&state_tx, e.to_string());
                                return;
                            }
                        }
                    }
                });
                (Handle::V5(client), task)
            }
            Proto::V311 => {
                let mut o = rumqttc::MqttOptions::new(&self.id, "127.0.0.1", self.port);
                o.set_keep_alive(Duration::from_secs(30))
                    .set_max_packet_size(MAX, MAX);
                if let Some((u, p)) = &self.login {
                    o.set_credentials(u, p);
                }
                if let Some((topic, payload)) = &self.will {
                    o.set_last_will(rumqttc::LastWill::new(
                        topic,
                        payload.clone(),
                        rumqttc::QoS::AtLeastOnce,
                        true,
                    ));
                }
                if let Some(t) = transport {
                    o.set_transport(t);
                }
                let (client, mut events) = rumqttc::AsyncClient::new(o, 1000);
                let task = tokio::spawn(async move {
                    loop {
                        match events.poll().await {
                            Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => {
                                state_tx.send_replace(ConnState::Connected);
                            }
                            Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                                let _ = tx.send((p.topic.clone(), p.payload.to_vec()));
                            }
                            Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(p))) => {
                                // MQTT 3.1.1 has no reason codes: every PUBACK is a success.
                                r.lock().unwrap().push((p.pkid, 0));
                                a.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            }
                            Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))) => {
                                s.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            }
                            Ok(_) => {}
                            Err(e) => {
                                end(&state_tx, e.to_string());
                                return;
                            }
                        }
                    }
                });
                (Handle::V311(client), task)
            }
        };
        Mqtt {
            handle,
            rx,
            acks,
            subacks,
            puback_reasons: reasons,
            state,
            task,
        }
    }
}

/// The MQTT 5 reason code of a PUBACK as on the wire.
fn puback_reason_code(r: &rumqttc::v5::mqttbytes::v5::PubAckReason) -> u8 {
    use rumqttc::v5::mqttbytes::v5::PubAckReason as R;
    match r {
        R::Success => 0x00,
        R::NoMatchingSubscribers => 0x10,
        R::UnspecifiedError => 0x80,
        R::ImplementationSpecificError => 0x83,
        R::NotAuthorized => 0x87,
        R::TopicNameInvalid => 0x90,
        R::PacketIdentifierInUse => 0x91,
        R::QuotaExceeded => 0x97,
        R::PayloadFormatInvalid => 0x99,
    }
}

fn end(state: &tokio::sync::watch::Sender<ConnState>, why: String) {
    state.send_modify(|s| {
        *s = match s {
            ConnState::Connecting => ConnState::Refused(why),
            _ => ConnState::Closed(why),
        }
    });
}

enum Handle {
    V5(AsyncClient),
    V311(rumqttc::AsyncClient),
}

/// A test client of either MQTT version. It never reconnects: once the gateway refuses or
/// drops it, it stays refused or closed.
pub struct Mqtt {
    handle: Handle,
    /// Incoming publishes: (topic, payload).
    pub rx: mpsc::UnboundedReceiver<(String, Vec<u8>)>,
    /// PUBACKs received.
    pub acks: Arc<std::sync::atomic::AtomicU64>,
    /// SUBACKs received.
    pub subacks: Arc<std::sync::atomic::AtomicU64>,
    /// (packet id, reason code) of every PUBACK received, in order (always 0 under 3.1.1).
    pub puback_reasons: Arc<std::sync::Mutex<Vec<(u16, u8)>>>,
    state: tokio::sync::watch::Receiver<ConnState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Mqtt {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Mqtt {
    pub fn state(&self) -> ConnState {
        self.state.borrow().clone()
    }

    /// The connection's fate once it is decided (connected, refused or closed); `Connecting`
    /// if still undecided after `within`.
    pub async fn settled(&self, within: Duration) -> ConnState {
        let mut rx = self.state.clone();
        let _ = tokio::time::timeout(within, rx.wait_for(|s| !matches!(s, ConnState::Connecting)))
            .await;
        self.state()
    }

    /// Panics unless the client is connected within `within`.
    pub async fn connected(&self, within: Duration) {
        let s = self.settled(within).await;
        assert_eq!(s, ConnState::Connected, "client not connected");
    }

    /// How the connection ended, if it ended (refused or closed) within `within`.
    pub async fn ended(&self, within: Duration) -> Option<ConnState> {
        let mut rx = self.state.clone();
        let _ = tokio::time::timeout(
            within,
            rx.wait_for(|s| matches!(s, ConnState::Refused(_) | ConnState::Closed(_))),
        )
        .await;
        match self.state() {
            s @ (ConnState::Refused(_) | ConnState::Closed(_)) => Some(s),
            _ => None,
        }
    }

    /// Queues a QoS 1 publish; false if the client's event loop has already ended.
    pub async fn publish(&self, topic: &str, payload: Vec<u8>, retain: bool) -> bool {
        match &self.handle {
            Handle::V5(c) => c
                .publish(topic, QoS::AtLeastOnce, retain, payload)
                .await
                .is_ok(),
            Handle::V311(c) => c
                .publish(topic, rumqttc::QoS::AtLeastOnce, retain, payload)
                .await
                .is_ok(),
        }
    }

    pub async fn publish_alert(&self, a: &Alert) -> bool {
        let topic = format!("se/v1/site/{}/alert", a.site);
        self.publish(&topic, serde_json::to_vec(a).unwrap(), false)
            .await
    }

    /// Queues a QoS 1 subscription (the SUBACK is not awaited: see [`Self::wait_subacks`]).
    pub async fn subscribe(&self, filter: &str) {
        let queued = match &self.handle {
            Handle::V5(c) => c.subscribe(filter, QoS::AtLeastOnce).await.is_ok(),
            Handle::V311(c) => c.subscribe(filter, rumqttc::QoS::AtLeastOnce).await.is_ok(),
        };
        assert!(
            queued,
            "subscribe {filter}: the client has ended: {:?}",
            self.state()
        );
    }

    async fn wait_count(
        counter: &std::sync::atomic::AtomicU64,
        what: &str,
        n: u64,
        within: Duration,
    ) {
        let ok = eventually(within, || {
            counter.load(std::sync::atomic::Ordering::SeqCst) >= n
        })
        .await;
        assert!(
            ok,
            "only {} of {n} {what} within {within:?}",
            counter.load(std::sync::atomic::Ordering::SeqCst)
        );
    }

    pub async fn wait_acks(&self, n: u64, within: Duration) {
        Self::wait_count(&self.acks, "PUBACKs", n, within).await;
    }

    pub async fn wait_subacks(&self, n: u64, within: Duration) {
        Self::wait_count(&self.subacks, "SUBACKs", n, within).await;
    }

    pub fn acks(&self) -> u64 {
        self.acks.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The reason codes of the PUBACKs received so far, in order.
    pub fn puback_reasons(&self) -> Vec<u8> {
        self.puback_reasons
            .lock()
            .unwrap()
            .iter()
            .map(|(_, r)| *r)
            .collect()
    }

    /// The next incoming publish, within `within`.
    pub async fn next_publish(&mut self, within: Duration) -> Option<(String, Vec<u8>)> {
        tokio::time::timeout(within, self.rx.recv())
            .await
            .ok()
            .flatten()
    }

    /// Kills the client without a DISCONNECT (as a box losing power would): the event loop
    /// and its socket are dropped, so the connection closes with no goodbye.
    pub async fn kill(mut self) {
        self.task.abort();
        let task = std::mem::replace(&mut self.task, tokio::spawn(async {}));
        let _ = task.await;
    }
}

/// Test TLS material: a CA, a server certificate for 127.0.0.1 and a client certificate it
/// signed, as PEM files.
pub struct Pki {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

pub fn make_pki(dir: &Path) -> Pki {
    use rcgen::ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
    let write = |name: &str, pem: &str| {
        let p = dir.join(name);
        std::fs::write(&p, pem).unwrap();
        p
    };
    let (ca, issuer) = make_ca("hub test CA");
    let (server_cert, server_key) = make_leaf(&issuer, &["127.0.0.1", "localhost"], ServerAuth);
    let (client_cert, client_key) = make_leaf(&issuer, &["wd-demo-001"], ClientAuth);
    Pki {
        ca: write("ca.pem", &ca.pem()),
        server_cert: write("server.pem", &server_cert),
        server_key: write("server.key", &server_key),
        client_cert: write("client.pem", &client_cert),
        client_key: write("client.key", &client_key),
    }
}

/// A rustls client config (ring provider) trusting `ca`, with a client certificate if given.
pub fn client_tls(ca: &Path, client: Option<(&Path, &Path)>) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = PrivateKeyDer::from_pem_file(key).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

/// A valid `online` status of `site` with health (the golden file's), stamped now.
pub fn status_online(site: &str) -> protocol::Status {
    let text =
        std::fs::read_to_string(repo().join("protocol/tests/golden/status_online.json")).unwrap();
    let mut s: protocol::Status = serde_json::from_str(&text).unwrap();
    s.site = site.to_owned();
    s.time = UtcMillis::now();
    s
}

/// The `offline` status an agent leaves as its last will.
pub fn status_offline(site: &str) -> protocol::Status {
    protocol::Status {
        schema: protocol::SCHEMA_VERSION,
        site: site.to_owned(),
        state: protocol::AgentState::Offline,
        time: UtcMillis::now(),
        health: None,
    }
}

/// A dashboard client: logs in for a session cookie and sends the CSRF token, or uses a bearer
/// token.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
    pub cookie: Option<String>,
    pub csrf: Option<String>,
    pub bearer: Option<String>,
}

/// A response: status, headers and the body as JSON (`Null` when it is not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub bytes: Vec<u8>,
    pub json: serde_json::Value,
}

impl Api {
    pub fn anonymous(hub: &RunningHub) -> Self {
        Self::anonymous_at(hub.http_addr.expect("the test hub serves HTTP"))
    }

    /// An anonymous client of the API at `addr` (a hub running as its own process).
    pub fn anonymous_at(addr: std::net::SocketAddr) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Self {
            base: format!("http://{addr}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            cookie: None,
            csrf: None,
            bearer: None,
        }
    }

    /// An anonymous client of the API at `addr` whose connections come from `source` (any
    /// 127.0.0.0/8 address is this host: tests play many clients with them).
    pub fn anonymous_from(addr: std::net::SocketAddr, source: std::net::IpAddr) -> Self {
        let mut api = Self::anonymous_at(addr);
        api.http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .local_address(source)
            .build()
            .unwrap();
        api
    }

    /// A login attempt (`POST /api/v1/auth/login`), with extra headers.
    pub async fn try_login(&self, login: &str, password: &str, headers: &[(&str, &str)]) -> Reply {
        let mut rb = self
            .request(reqwest::Method::POST, "/api/v1/auth/login")
            .header("content-type", "application/json")
            .body(
                serde_json::to_vec(&serde_json::json!({"username": login, "password": password}))
                    .unwrap(),
            );
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        Self::send(rb).await
    }

    /// Logged in as a test user (see [`USERS`]) with a session cookie.
    pub async fn login(hub: &RunningHub, login: &str) -> Self {
        Self::anonymous(hub).logged_in(login).await
    }

    /// This client, logged in as a test user with a session cookie.
    pub async fn logged_in(self, login: &str) -> Self {
        let mut api = self;
        let r = api
            .post(
                "/api/v1/auth/login",
                &serde_json::json!({"username": login, "password": password(login)}),
            )
            .await;
        assert_eq!(r.status, 200, "login {login}: {:?}", r.json);
        let set = r
            .headers
            .get("set-cookie")
            .expect("login sets the session cookie")
            .to_str()
            .unwrap();
        api.cookie = Some(set.split(';').next().unwrap().to_owned());
        api.csrf = Some(r.json["csrf"].as_str().unwrap().to_owned());
        api
    }

    /// Logged in as a test user with an app (bearer) token.
    pub async fn bearer(hub: &RunningHub, login: &str) -> Self {
        let mut api = Self::anonymous(hub);
        let r = api
            .post(
                "/api/v1/auth/tokens",
                &serde_json::json!({"username": login, "password": password(login), "label": "test"}),
            )
            .await;
        assert_eq!(r.status, 201, "token {login}: {:?}", r.json);
        api.bearer = Some(r.json["token"].as_str().unwrap().to_owned());
        api
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut rb = self.http.request(method, format!("{}{path}", self.base));
        if let Some(c) = &self.cookie {
            rb = rb.header("cookie", c);
        }
        if let Some(t) = &self.csrf {
            rb = rb.header("x-csrf-token", t);
        }
        if let Some(b) = &self.bearer {
            rb = rb.header("authorization", format!("Bearer {b}"));
        }
        rb
    }

    pub async fn send(rb: reqwest::RequestBuilder) -> Reply {
        let r = rb.send().await.unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let bytes = r.bytes().await.unwrap().to_vec();
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        Reply {
            status,
            headers,
            bytes,
            json,
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        Self::send(self.request(reqwest::Method::GET, path)).await
    }

    pub async fn post(&self, path: &str, body: &serde_json::Value) -> Reply {
        Self::send(
            self.request(reqwest::Method::POST, path)
                .header("content-type", "application/json")
                .body(serde_json::to_vec(body).unwrap()),
        )
        .await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        Self::send(self.request(reqwest::Method::DELETE, path)).await
    }

    /// Polls `GET path` until `ok` holds for the JSON, for up to `within`.
    pub async fn wait_for(
        &self,
        path: &str,
        within: Duration,
        ok: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let end = std::time::Instant::now() + within;
        loop {
            let r = self.get(path).await;
            if r.status == 200 && ok(&r.json) {
                return r.json;
            }
            if std::time::Instant::now() > end {
                panic!(
                    "GET {path}: condition not met within {within:?}; last: {:?}",
                    r.json
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A real JPEG from the shared sample frames, with the size it declares.
pub fn sample_jpeg() -> Vec<u8> {
    testkit::shared_bytes("samples/frames/000000001000.jpg")
}

/// Starts the real `hub` binary (`hub run -c config`), its log appended to `log`. Killed when
/// the handle drops.
pub fn spawn_hub(config: &Path, log: &Path) -> tokio::process::Child {
    spawn_hub_with(config, log, &[])
}

/// [`spawn_hub`] with more arguments after the config (`--demo`, `--listen`, …).
pub fn spawn_hub_with(config: &Path, log: &Path, args: &[&str]) -> tokio::process::Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    tokio::process::Command::new(env!("CARGO_BIN_EXE_hub"))
        .args(["run", "-c"])
        .arg(config)
        .args(args)
        .env("RUST_LOG", "info,rumqttd=off")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Runs the real `hub` binary with `args` and waits (up to 60 s, then kills it and fails)
/// for it to exit: for commands that must refuse, where a hub that wrongly starts would
/// otherwise run forever.
pub fn run_hub_to_exit(args: &[&std::ffi::OsStr]) -> std::process::Output {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hub"))
        .args(args)
        .env("RUST_LOG", "warn,rumqttd=off")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let end = std::time::Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > end {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "hub {args:?} did not exit within 60 s; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// A copy of the demo hub (`configs/hub/`: its committed signing key, demo credentials and
/// demo users) in a temporary directory, with its state there too.
pub fn demo_hub_dir() -> HubDir {
    let dir = tempfile::tempdir().unwrap();
    let from = repo().join("configs/hub");
    for entry in std::fs::read_dir(&from).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    std::fs::create_dir(dir.path().join("roster")).unwrap();
    for entry in std::fs::read_dir(from.join("roster")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(
            &path,
            dir.path().join("roster").join(path.file_name().unwrap()),
        )
        .unwrap();
    }
    let config_path = dir.path().join("hub.toml");
    let text = std::fs::read_to_string(&config_path).unwrap();
    let text = text.replace(
        "data_dir = \"../../.cache/hub-data\"",
        "data_dir = \"state\"",
    );
    assert!(
        text.contains("data_dir = \"state\""),
        "the demo's data_dir moved"
    );
    std::fs::write(&config_path, text).unwrap();
    HubDir { dir, config_path }
}

/// Waits (up to `within`) until the file at `log` contains `needle`; its text then.
pub async fn wait_for_log(log: &Path, needle: &str, within: Duration) -> String {
    let end = std::time::Instant::now() + within;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        assert!(
            std::time::Instant::now() < end,
            "{needle:?} not in {} within {within:?}:\n{text}",
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Points the hub directory's HTTP listener at `listen` (a hub process whose address the test
/// must know).
pub fn set_http_listen(dir: &HubDir, listen: std::net::SocketAddr) {
    let text = std::fs::read_to_string(&dir.config_path).unwrap();
    let text = text.replacen(
        "[http]\nlisten = \"127.0.0.1:0\"",
        &format!("[http]\nlisten = \"{listen}\""),
        1,
    );
    assert!(text.contains(&format!("listen = \"{listen}\"")));
    std::fs::write(&dir.config_path, text).unwrap();
}

/// A process's resident set size in bytes (`VmRSS` of /proc/PID/status).
pub fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status");
    kb * 1024
}

/// Stops a hub process with SIGTERM and waits (up to 10 s) for it to exit.
pub async fn stop_hub(hub: &mut tokio::process::Child) {
    let pid = hub.id().expect("the hub is running");
    tokio::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), hub.wait())
        .await
        .expect("hub stops on SIGTERM")
        .unwrap();
}

/// A local webhook endpoint: every JSON body POSTed to `http://{addr}/hook` is kept, and
/// answered 200.
pub struct HookReceiver {
    pub addr: std::net::SocketAddr,
    pub bodies: Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
}

pub async fn webhook_receiver() -> HookReceiver {
    let bodies: Arc<std::sync::Mutex<Vec<serde_json::Value>>> = Arc::default();
    let b = bodies.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: String| {
            let b = b.clone();
            async move {
                b.lock()
                    .unwrap()
                    .push(serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body)));
                (axum::http::StatusCode::OK, "{\"errcode\":0}")
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    HookReceiver { addr, bodies }
}

impl HookReceiver {
    /// Waits (up to `within`) for a body that `ok` accepts.
    pub async fn wait_for(
        &self,
        within: Duration,
        ok: impl Fn(&serde_json::Value) -> bool,
    ) -> Option<serde_json::Value> {
        let end = std::time::Instant::now() + within;
        loop {
            if let Some(b) = self.bodies.lock().unwrap().iter().find(|b| ok(b)) {
                return Some(b.clone());
            }
            if std::time::Instant::now() > end {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// One reader's sighting of `tag` at `site`, five seconds from `first`, as an agent sends it.
pub async fn publish_sightings(site_client: &Client, site: &str, tag: &str, first: i64) {
    use protocol::sighting::{SightingBatch, TagKind, TagSighting};
    let batch = SightingBatch {
        schema: protocol::SCHEMA_VERSION,
        id: format!("01KAQ5X3MV{:016}", first.rem_euclid(10_i64.pow(16))),
        site: site.into(),
        sightings: vec![TagSighting {
            reader: "r1".into(),
            tag: tag.into(),
            kind: TagKind::Bike,
            first: UtcMillis(first),
            last: UtcMillis(first + 5_000),
            reads: 4,
            rssi: -61,
        }],
    };
    let before = site_client.acks.load(std::sync::atomic::Ordering::SeqCst);
    site_client
        .client
        .publish(
            format!("se/v1/site/{site}/sighting"),
            rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
            false,
            serde_json::to_vec(&batch).unwrap(),
        )
        .await
        .unwrap();
    site_client
        .wait_acks(before + 1, Duration::from_secs(10))
        .await;
}

/// Gives `dir` a roster of its own: the example one with M01 staffed all day by 周桂英 and 张伟
/// and a `channels` column in people.csv, `channels` giving each listed person theirs
/// (`sms`, `work_app;sms` …; the others blank: the app alone).
pub fn with_channels(dir: &HubDir, channels: &[(&str, &str)]) {
    let roster = dir.dir.path().join("roster");
    std::fs::create_dir(&roster).unwrap();
    // This crate's own example roster: `repo()` is wherever testkit was built from, which may
    // be another checkout sharing the target directory.
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/hub/roster");
    // Every file but people.csv (rewritten below) as it is.
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap();
        if name != "people.csv" {
            std::fs::copy(&path, roster.join(name)).unwrap();
        }
    }
    let duty = std::fs::read_to_string(roster.join("duty.csv"))
        .unwrap()
        .replace(
            &format!("{M01},p-zhouguiying,daily,17:00,21:00"),
            &format!("{M01},p-zhouguiying,daily,00:00,24:00\n{M01},p-zhangwei,daily,00:00,24:00"),
        );
    std::fs::write(roster.join("duty.csv"), duty).unwrap();
    let people: String = std::fs::read_to_string(src.join("people.csv"))
        .unwrap()
        .lines()
        .map(|l| {
            if l.trim().is_empty() || l.starts_with('#') {
                format!("{l}\n")
            } else if l.starts_with("id,") {
                format!("{l},channels\n")
            } else {
                let theirs = channels
                    .iter()
                    .find(|(p, _)| l.starts_with(&format!("{p},")))
                    .map_or("", |(_, c)| *c);
                format!("{l},{theirs}\n")
            }
        })
        .collect();
    std::fs::write(roster.join("people.csv"), people).unwrap();
    let cfg = std::fs::read_to_string(&dir.config_path).unwrap().replace(
        &format!("dir = \"{}\"", repo().join("configs/hub/roster").display()),
        "dir = \"roster\"",
    );
    std::fs::write(&dir.config_path, cfg).unwrap();
}

/// The case's deliveries as the API shows them (none while it is not filed).
pub async fn deliveries(api: &Api, case: &hub::case::CaseId) -> Vec<serde_json::Value> {
    let r = api.get(&format!("/api/v1/cases/{case}")).await;
    if r.status == 404 {
        return Vec::new();
    }
    assert_eq!(r.status, 200, "{:?}", r.json);
    r.json["deliveries"].as_array().cloned().unwrap_or_default()
}

/// The deliveries of `ds` on `channel` to `person`.
pub fn deliveries_by<'a>(
    ds: &'a [serde_json::Value],
    channel: &str,
    person: &str,
) -> Vec<&'a serde_json::Value> {
    ds.iter()
        .filter(|d| d["channel"] == channel && d["target"]["person"] == person)
        .collect()
}
