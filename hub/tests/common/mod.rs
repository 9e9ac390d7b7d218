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
use protocol::alert::Location;
use protocol::{Alert, AlertKind, AlertPhase, AlertSource, Severity, UtcMillis};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};
use tempfile::TempDir;
use tokio::sync::mpsc;

pub const SITE: &str = "wd-demo-001";
/// Inside micro-grid 532329101001-G01-M01.
pub const DEMO_LON: f64 = 102.4040;
pub const DEMO_LAT: f64 = 25.5300;
pub const M01: &str = "532329101001-G01-M01";

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

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
    let key = protocol::SigningKey::from_bytes(&[7u8; 32]);
    std::fs::write(
        dir.path().join("signing.key"),
        protocol::command::encode_signing_key(&key),
    )
    .unwrap();
    let grid = repo().join("configs/hub/wuding.geojson");
    let roster = repo().join("configs/hub/roster");
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
{extra}
"#,
        grid.display(),
        roster.display()
    );
    let config_path = dir.path().join("hub.toml");
    std::fs::write(&config_path, config).unwrap();
    HubDir { dir, config_path }
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

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A valid alert of `site`; `n` makes the id and the track unique.
pub fn alert(site: &str, n: u64, severity: Severity, location: Option<(f64, f64)>) -> Alert {
    let t = UtcMillis(now_ms());
    let id = format!("01KAQ5X3MV{n:016}");
    Alert {
        schema: protocol::SCHEMA_VERSION,
        incident: id.clone(),
        id,
        phase: AlertPhase::Start,
        site: site.to_owned(),
        source: AlertSource::Camera("cam-1".into()),
        kind: AlertKind::Zone,
        severity,
        rule: "night-yard".into(),
        time: t,
        started_at: t,
        ended_at: None,
        location: location.map(|(lon, lat)| Location { lon, lat }),
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
    }
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
