//! The uplink ([`Uplink`]) in-process against a real mosquitto started by each test, with a
//! real sled outbox in a temporary directory: broker outages (MQTT 5 and 3.1.1), the outbox's
//! byte cap and full-policy while the broker is down, the retained status, TLS with client
//! certificates made here with rcgen, and a password login. The hub's refusals: a fake MQTT 5
//! broker (`testkit::fake_mqtt5`) answers one chosen alert with a PUBACK failure reason, which
//! mosquitto cannot do for one alert among others on the same topic. A full disk: the outbox
//! on a small tmpfs (`testkit::tmpfs`, root only) filled by a ballast file.
//!
//! A test's hub is a rumqttc subscriber (QoS 1) that records every message. Where the broker is
//! killed, the subscriber must not miss what the uplink publishes after the restart before it
//! has subscribed again, so it keeps a persistent session (`clean_session = false`) on a broker
//! with persistence, and the test waits for the broker to have saved that session to disk
//! before killing it: the restarted broker then queues alerts for the subscriber whichever of
//! the two reconnects first, as a real hub's broker does.

// Test helpers panic on a failed set-up step, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{edge_agent, text};
use edge_agent::metrics::{MetricsSource, render};
use edge_agent::outbox::{Outbox, OutboxConfig, OutboxStats};
use edge_agent::pipeline::Output;
use edge_agent::secret::Secret;
use edge_agent::uplink::{
    HealthReporter, MqttVersion, TlsConfig, Uplink, UplinkConfig, UplinkError, UplinkStats,
};
use protocol::{AgentState, Alert, Severity, Status};
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use tempfile::TempDir;
use testkit::certs::{make_ca, make_leaf};
use testkit::emitted::{BASE_MS, alert_id, make_alert};
use testkit::fake_mqtt5::FakeMqtt5;
use testkit::mosquitto::Mosquitto;
use testkit::tmpfs;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, timeout};

/// Time of alert 0 (any fixed time: alert ids follow from it).
/// How long anything that should happen on a loopback broker may take.
const WAIT: Duration = Duration::from_secs(10);
/// Largest packet the test subscriber accepts.
const MAX_PACKET: usize = 4 << 20;
/// The outbox's smallest accepted byte cap.
const MIN_OUTBOX_BYTES: u64 = 64 << 10;

// ---------------------------------------------------------------------------------------------
// Helpers

fn alert_topic(site: &str) -> String {
    format!("se/v1/site/{site}/alert")
}

fn status_topic(site: &str) -> String {
    format!("se/v1/site/{site}/status")
}

/// Alert `i` of `site`, as `edge-agent emit` makes it, with `severity`.
fn alert(site: &str, i: u64, snapshot_bytes: usize, severity: Severity) -> Alert {
    let mut a = make_alert(site, BASE_MS, i, snapshot_bytes);
    a.severity = severity;
    a
}

/// An uplink config for a loopback broker with quick reconnects (tests must not wait 30 s).
fn fast_config(port: u16, version: MqttVersion) -> UplinkConfig {
    let mut c = UplinkConfig::new("127.0.0.1", port);
    c.mqtt_version = version;
    c.reconnect_min_ms = 50;
    c.reconnect_max_ms = 500;
    c.keep_alive_s = 5;
    c
}

/// Config lines for a broker that saves its state (sessions, retained messages) to `dir` after
/// every change, so a broker killed with SIGKILL comes back with the subscriber's session.
fn persistent_broker(dir: &Path) -> String {
    std::fs::create_dir_all(dir).unwrap();
    format!(
        "persistence true\n\
         persistence_location {}/\n\
         autosave_on_changes true\n\
         autosave_interval 1\n\
         max_queued_messages 100000\n",
        dir.display()
    )
}

/// Waits until the broker with [`persistent_broker`] `dir` has saved a database holding the
/// subscription to `topic` (topics are stored as plain bytes). An earlier save, made when the
/// client connected, does not have it.
async fn wait_saved(dir: &Path, topic: &str) {
    let db = dir.join("mosquitto.db");
    let saved =
        || std::fs::read(&db).is_ok_and(|b| b.windows(topic.len()).any(|w| w == topic.as_bytes()));
    wait_for("the broker to save the subscription", WAIT, saved, || {
        format!("{} without {topic}", db.display())
    })
    .await;
}

/// Polls `ready` every 10 ms until it holds; panics after `limit` with `state()`.
async fn wait_for(
    what: &str,
    limit: Duration,
    mut ready: impl FnMut() -> bool,
    state: impl Fn() -> String,
) {
    let deadline = Instant::now() + limit;
    while !ready() {
        if Instant::now() > deadline {
            panic!("waited {limit:?} for {what}; now: {}", state());
        }
        sleep(Duration::from_millis(10)).await;
    }
}

fn counters(s: &UplinkStats) -> String {
    let o = s.outbox();
    format!(
        "connected={} reconnects={} failures={} appended={} append_failed={} published={} \
         acked={} rejected={} status={} outbox.depth={} outbox.bytes={}",
        s.connected.load(Ordering::Relaxed),
        s.reconnects.load(Ordering::Relaxed),
        s.connection_failures.load(Ordering::Relaxed),
        s.appended.load(Ordering::Relaxed),
        s.append_failed.load(Ordering::Relaxed),
        s.published.load(Ordering::Relaxed),
        s.acked.load(Ordering::Relaxed),
        s.rejected.load(Ordering::Relaxed),
        s.status_published.load(Ordering::Relaxed),
        o.depth,
        o.bytes,
    )
}

fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

/// An [`Uplink`] running in a task, fed through its input channel.
struct Running {
    stats: Arc<UplinkStats>,
    tx: mpsc::Sender<Output>,
    task: JoinHandle<Result<OutboxStats, UplinkError>>,
}

impl Running {
    /// Opens (or reopens) the outbox at `outbox_dir` and starts an uplink on it.
    fn start(config: UplinkConfig, site: &str, outbox_dir: &Path, max_bytes: u64) -> Self {
        let outbox = open_outbox(outbox_dir, max_bytes);
        Self::start_with(config, site, outbox, max_bytes)
    }

    fn start_with(config: UplinkConfig, site: &str, outbox: Outbox, max_bytes: u64) -> Self {
        let disk = outbox.path().to_path_buf();
        let health = HealthReporter::new(protocol::UtcMillis::now().0, None, disk);
        let uplink = Uplink::new(config, site, outbox, max_bytes, health, None).unwrap();
        let stats = uplink.stats();
        let (tx, rx) = mpsc::channel(16);
        let task = tokio::spawn(uplink.run(rx));
        Self { stats, tx, task }
    }

    async fn send(&self, alert: Alert) {
        self.tx
            .send(Output::Alert(Box::new(alert)))
            .await
            .expect("uplink input open");
    }

    fn state(&self) -> String {
        counters(&self.stats)
    }

    /// Closes the input and waits for `run` to return (within `limit`); its final outbox state.
    async fn finish(self, limit: Duration) -> OutboxStats {
        let Self { stats, tx, task } = self;
        drop(tx);
        match timeout(limit, task).await {
            Ok(r) => r.expect("uplink task").expect("uplink run"),
            Err(_) => panic!(
                "uplink did not return within {limit:?} after its input closed; {}",
                counters(&stats)
            ),
        }
    }
}

/// Opens the outbox at `dir`. sled releases its file lock shortly after the last handle is
/// dropped (its background threads let go of the file), so a reopen right after an uplink
/// returned is retried for a moment.
fn open_outbox(dir: &Path, max_bytes: u64) -> Outbox {
    let config = OutboxConfig {
        max_bytes,
        ..OutboxConfig::default()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match Outbox::open(dir, config.clone()) {
            Ok(outbox) => return outbox,
            Err(e)
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("{e}"),
        }
    }
}

/// One message as the subscriber got it.
#[derive(Debug, Clone)]
struct Msg {
    topic: String,
    payload: Vec<u8>,
    retain: bool,
}

/// The hub's side: an MQTT 3.1.1 client subscribed (QoS 1) to some topics, recording every
/// message. It reconnects after a broker restart and subscribes again after every CONNACK.
struct Subscriber {
    msgs: Arc<Mutex<Vec<Msg>>>,
    subacks: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Subscriber {
    /// Connects as `client_id` (a persistent session when `persistent`) and returns once every
    /// topic is subscribed.
    async fn start(
        port: u16,
        client_id: &str,
        persistent: bool,
        login: Option<(&str, &str)>,
        topics: &[String],
    ) -> Self {
        let mut o = MqttOptions::new(client_id, "127.0.0.1", port);
        o.set_keep_alive(Duration::from_secs(5))
            .set_clean_session(!persistent)
            .set_max_packet_size(MAX_PACKET, MAX_PACKET);
        if let Some((user, password)) = login {
            o.set_credentials(user, password);
        }
        let (client, mut events) = AsyncClient::new(o, 16);
        let msgs = Arc::new(Mutex::new(Vec::new()));
        let subacks = Arc::new(AtomicU64::new(0));
        let task = {
            let (msgs, subacks, topics) = (msgs.clone(), subacks.clone(), topics.to_vec());
            tokio::spawn(async move {
                loop {
                    match events.poll().await {
                        Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                            for t in &topics {
                                client.try_subscribe(t, QoS::AtLeastOnce).unwrap();
                            }
                        }
                        Ok(Event::Incoming(Incoming::SubAck(_))) => {
                            subacks.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(Event::Incoming(Incoming::Publish(p))) => {
                            msgs.lock().unwrap().push(Msg {
                                topic: p.topic,
                                payload: p.payload.to_vec(),
                                retain: p.retain,
                            });
                        }
                        Ok(_) => {}
                        Err(_) => sleep(Duration::from_millis(50)).await,
                    }
                }
            })
        };
        let s = Self {
            msgs,
            subacks,
            task,
        };
        let want = topics.len() as u64;
        let subacks = s.subacks.clone();
        wait_for(
            "the subscriber's SUBACKs",
            WAIT,
            || get(&subacks) >= want,
            || format!("{} of {want}", get(&subacks)),
        )
        .await;
        s
    }

    fn messages(&self) -> Vec<Msg> {
        self.msgs.lock().unwrap().clone()
    }

    /// Every alert received on `site`'s alert topic (copies included), decoded and checked.
    fn alerts(&self, site: &str) -> Vec<Alert> {
        let topic = alert_topic(site);
        self.messages()
            .into_iter()
            .filter(|m| m.topic == topic)
            .map(|m| {
                assert!(!m.retain, "alerts are not retained");
                protocol::decode_alert(&m.payload).expect("a valid alert")
            })
            .collect()
    }

    /// The distinct alert ids received for `site`.
    fn ids(&self, site: &str) -> BTreeSet<String> {
        self.alerts(site).into_iter().map(|a| a.id).collect()
    }

    /// Every status received for `site`, decoded, with its retain flag.
    fn statuses(&self, site: &str) -> Vec<(Status, bool)> {
        let topic = status_topic(site);
        self.messages()
            .into_iter()
            .filter(|m| m.topic == topic)
            .map(|m| {
                let s = protocol::decode_status(&m.payload).expect("a valid status");
                (s, m.retain)
            })
            .collect()
    }
}

/// What a subscriber arriving now gets first on `site`'s status topic: the retained status.
async fn retained_status(port: u16, site: &str, login: Option<(&str, &str)>) -> Status {
    static N: AtomicU64 = AtomicU64::new(0);
    let id = format!("retained-{}", N.fetch_add(1, Ordering::Relaxed));
    let sub = Subscriber::start(port, &id, false, login, &[status_topic(site)]).await;
    wait_for(
        "the retained status",
        WAIT,
        || !sub.statuses(site).is_empty(),
        || "nothing".into(),
    )
    .await;
    let (status, retain) = sub.statuses(site).remove(0);
    assert!(
        retain,
        "the first status a new subscriber gets is the retained one"
    );
    assert_eq!(status.site, site);
    status
}

fn ids_of(site: &str, indices: impl IntoIterator<Item = u64>) -> BTreeSet<String> {
    indices
        .into_iter()
        .map(|i| {
            // `alert_id` must name what `make_alert` makes, or this test checks nothing.
            let id = alert_id(BASE_MS, i);
            assert_eq!(id, make_alert(site, BASE_MS, i, 0).id);
            id
        })
        .collect()
}

/// Checks every received alert against what was sent, byte for byte (decoded).
fn assert_intact(received: &[Alert], sent: impl Fn(u64) -> Alert) {
    for a in received {
        let i: u64 = a.detail.as_deref().unwrap().parse().unwrap();
        assert_eq!(*a, sent(i), "alert {i} arrived changed");
    }
}

// ---------------------------------------------------------------------------------------------
// a. Outage: nothing is lost while the broker is down.

/// Alerts delivered before the outage.
const ONLINE: u64 = 10;
/// Alerts raised while the broker is down.
const DURING_OUTAGE: u64 = 200;
const OUTAGE_SNAPSHOT: usize = 2_000;

async fn outage(version: MqttVersion, site: &str) {
    let work = TempDir::new().unwrap();
    let db = work.path().join("broker");
    let mut broker = Mosquitto::start_with_config(&persistent_broker(&db)).await;
    let hub = Subscriber::start(
        broker.port(),
        &format!("hub-{site}"),
        true,
        None,
        &[alert_topic(site)],
    )
    .await;
    wait_saved(&db, &alert_topic(site)).await;

    let up = Running::start(
        fast_config(broker.port(), version),
        site,
        &work.path().join("outbox"),
        OutboxConfig::default().max_bytes,
    );
    let make = |i| alert(site, i, OUTAGE_SNAPSHOT, Severity::Major);

    // Connected: delivered and deleted from the outbox.
    for i in 0..ONLINE {
        up.send(make(i)).await;
    }
    let want = ids_of(site, 0..ONLINE);
    wait_for(
        "the alerts sent while connected",
        WAIT,
        || hub.ids(site) == want,
        || up.state(),
    )
    .await;
    wait_for(
        "their acks",
        WAIT,
        || get(&up.stats.acked) >= ONLINE && up.stats.outbox().depth == 0,
        || up.state(),
    )
    .await;

    // Broker killed: alerts go to the outbox, nothing is acknowledged, reconnects fail.
    let failures_before = get(&up.stats.connection_failures);
    broker.kill().await;
    wait_for(
        "the uplink to notice the outage",
        WAIT,
        || !up.stats.connected.load(Ordering::Relaxed),
        || up.state(),
    )
    .await;
    for i in ONLINE..ONLINE + DURING_OUTAGE {
        up.send(make(i)).await;
    }
    wait_for(
        "every alert appended during the outage",
        WAIT,
        || get(&up.stats.appended) == ONLINE + DURING_OUTAGE,
        || up.state(),
    )
    .await;
    wait_for(
        "the lost connection and a failed reconnect",
        WAIT,
        || get(&up.stats.connection_failures) >= failures_before + 2,
        || up.state(),
    )
    .await;
    let during = up.stats.outbox();
    assert_eq!(
        during.depth as u64,
        DURING_OUTAGE,
        "outage alerts wait in the outbox; {}",
        up.state()
    );
    assert!(during.bytes > DURING_OUTAGE * OUTAGE_SNAPSHOT as u64);
    assert_eq!(get(&up.stats.acked), ONLINE, "nothing acked while down");
    assert!(!up.stats.connected.load(Ordering::Relaxed));
    assert_eq!(hub.ids(site), want, "nothing delivered while down");

    // Broker back: every alert arrives, the outbox empties.
    broker.restart().await;
    let all = ids_of(site, 0..ONLINE + DURING_OUTAGE);
    wait_for(
        "every alert after the restart",
        Duration::from_secs(15),
        || hub.ids(site) == all,
        || {
            format!(
                "{} of {} ids; {}",
                hub.ids(site).len(),
                all.len(),
                up.state()
            )
        },
    )
    .await;
    wait_for(
        "the outbox to empty",
        WAIT,
        || up.stats.outbox().depth == 0,
        || up.state(),
    )
    .await;
    assert!(get(&up.stats.reconnects) >= 1, "{}", up.state());
    assert!(get(&up.stats.acked) >= ONLINE + DURING_OUTAGE);
    assert!(get(&up.stats.published) >= ONLINE + DURING_OUTAGE);
    assert_eq!(get(&up.stats.append_failed), 0);
    assert_intact(&hub.alerts(site), make);

    let left = up.finish(WAIT).await;
    assert_eq!(left.depth, 0);
    // The acks reached the disk: a restart would not resend anything.
    assert!(open_outbox(&work.path().join("outbox"), MIN_OUTBOX_BYTES).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_alert_raised_during_a_broker_outage_arrives_after_it_mqtt5() {
    outage(MqttVersion::V5, "outage-v5").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_alert_raised_during_a_broker_outage_arrives_after_it_mqtt311() {
    outage(MqttVersion::V311, "outage-v311").await;
}

// ---------------------------------------------------------------------------------------------
// b. Outbox cap while the broker is down.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_outbox_evicts_low_severity_first_and_the_status_reports_it() {
    const SNAPSHOT: usize = 20_000;
    let site = "capped";
    let work = TempDir::new().unwrap();
    let db = work.path().join("broker");
    let mut broker = Mosquitto::start_with_config(&persistent_broker(&db)).await;
    let hub = Subscriber::start(
        broker.port(),
        "hub-capped",
        true,
        None,
        &[alert_topic(site)],
    )
    .await;
    wait_saved(&db, &alert_topic(site)).await;
    broker.kill().await;

    // Down from the start. Two 20 KB-snapshot alerts (~27 KB of JSON each) fit in 64 KiB,
    // three do not.
    let up = Running::start(
        fast_config(broker.port(), MqttVersion::V5),
        site,
        &work.path().join("outbox"),
        MIN_OUTBOX_BYTES,
    );
    let severities = [
        Severity::Info,     // 0: stored, then evicted for 2
        Severity::Info,     // 1: stored, then evicted for 3
        Severity::Critical, // 2: evicts 0 (lowest severity, oldest)
        Severity::Critical, // 3: evicts 1
        Severity::Minor,    // 4: only criticals left, nothing <= minor to evict: dropped
    ];
    let make = |i: u64| alert(site, i, SNAPSHOT, severities[i as usize]);
    for i in 0..2 {
        up.send(make(i)).await;
    }
    wait_for(
        "two alerts stored",
        WAIT,
        || get(&up.stats.appended) == 2 && up.stats.outbox().depth == 2,
        || up.state(),
    )
    .await;
    assert_eq!(
        up.stats.outbox().evicted.total(),
        0,
        "two fit: the test's sizes are wrong otherwise"
    );
    for i in 2..severities.len() as u64 {
        up.send(make(i)).await;
    }
    wait_for(
        "every alert handled",
        WAIT,
        || get(&up.stats.appended) + get(&up.stats.append_failed) == severities.len() as u64,
        || up.state(),
    )
    .await;
    assert_eq!(get(&up.stats.appended), 4, "{}", up.state());
    assert_eq!(get(&up.stats.append_failed), 1, "the minor one was dropped");
    let full = up.stats.outbox();
    assert_eq!(full.depth, 2);
    assert!(full.bytes <= MIN_OUTBOX_BYTES, "{full:?}");
    assert_eq!(full.evicted.get(Severity::Info), 2, "{full:?}");
    assert_eq!(full.evicted.total(), 2, "nothing but the infos evicted");
    assert_eq!(full.dropped.get(Severity::Minor), 1, "{full:?}");
    assert_eq!(full.dropped.total(), 1);
    assert_eq!(get(&up.stats.acked), 0);

    broker.restart().await;
    let survivors = ids_of(site, [2, 3]);
    wait_for(
        "the critical alerts",
        WAIT,
        || hub.ids(site) == survivors,
        || format!("{:?}; {}", hub.ids(site), up.state()),
    )
    .await;
    wait_for(
        "the outbox to empty",
        WAIT,
        || up.stats.outbox().depth == 0,
        || up.state(),
    )
    .await;
    let status = retained_status(broker.port(), site, None).await;
    assert_eq!(status.state, AgentState::Online);
    let health = status.health.expect("online status carries health");
    assert_eq!(health.outbox.max_bytes, MIN_OUTBOX_BYTES);
    assert_eq!(health.outbox.evicted.get(Severity::Info), 2, "{health:?}");
    assert_eq!(health.outbox.evicted.get(Severity::Critical), 0);
    assert_eq!(health.outbox.dropped.get(Severity::Minor), 1, "{health:?}");
    assert!(health.uplink.connected);

    // The evicted and the dropped never arrive.
    sleep(Duration::from_millis(300)).await;
    assert_eq!(hub.ids(site), survivors);
    assert_intact(&hub.alerts(site), make);
    assert_eq!(up.finish(WAIT).await.depth, 0);
}

// ---------------------------------------------------------------------------------------------
// c. Retained status.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retained_status_is_online_with_health_then_offline_after_a_clean_stop() {
    let site = "status";
    let work = TempDir::new().unwrap();
    let broker = Mosquitto::start().await;
    let hub = Subscriber::start(
        broker.port(),
        "hub-status",
        false,
        None,
        &[alert_topic(site), status_topic(site)],
    )
    .await;

    // Three alerts already waiting when the uplink starts.
    let max_bytes = 8 << 20;
    let mut outbox = open_outbox(&work.path().join("outbox"), max_bytes);
    for i in 0..3 {
        outbox
            .append(
                &alert(site, i, 1_000, Severity::Major),
                protocol::UtcMillis::now().0,
            )
            .unwrap();
    }
    let mut config = fast_config(broker.port(), MqttVersion::V5);
    config.heartbeat_s = 1;
    let up = Running::start_with(config, site, outbox, max_bytes);
    wait_for(
        "the waiting alerts delivered",
        WAIT,
        || hub.ids(site) == ids_of(site, 0..3) && up.stats.outbox().depth == 0,
        || up.state(),
    )
    .await;

    // A subscriber arriving now is told at once that the site is online, and how it is.
    let online = retained_status(broker.port(), site, None).await;
    assert_eq!(online.state, AgentState::Online);
    assert_eq!(online.schema, protocol::SCHEMA_VERSION);
    let health = online.health.expect("online status carries health");
    assert!(health.uplink.connected);
    assert_eq!(health.outbox.max_bytes, max_bytes);
    assert!(health.cameras.is_empty() && health.readers.is_empty());

    // The heartbeat keeps it current: depth 0, the three acked.
    wait_for(
        "a heartbeat with the outbox empty",
        Duration::from_secs(5),
        || {
            hub.statuses(site).iter().any(|(s, _)| {
                s.health
                    .as_ref()
                    .is_some_and(|h| h.outbox.depth == 0 && h.uplink.acked == 3)
            })
        },
        || format!("{:?}", hub.statuses(site)),
    )
    .await;
    let now = retained_status(broker.port(), site, None).await;
    let health = now.health.expect("health");
    assert_eq!(health.outbox.depth, 0);
    assert!(health.uplink.acked >= 3, "{health:?}");

    // Clean stop: the uplink says goodbye itself (not the last will, which is dated at connect).
    let stopped_at = protocol::UtcMillis::now().0;
    let left = up.finish(WAIT).await;
    assert_eq!(left.depth, 0);
    let offline = retained_status(broker.port(), site, None).await;
    assert_eq!(offline.state, AgentState::Offline);
    assert!(offline.health.is_none(), "{offline:?}");
    assert!(
        offline.time.0 >= stopped_at,
        "the offline status is the goodbye sent at the stop ({stopped_at}), not the will: \
         {offline:?}"
    );
    // The hub saw online (connect, heartbeats), then the one goodbye: never the last will.
    wait_for(
        "the hub to get the goodbye",
        WAIT,
        || {
            hub.statuses(site)
                .last()
                .is_some_and(|(s, _)| s.state == AgentState::Offline)
        },
        || format!("{:?}", hub.statuses(site)),
    )
    .await;
    let states: Vec<_> = hub.statuses(site).iter().map(|(s, _)| s.state).collect();
    assert_eq!(states.first(), Some(&AgentState::Online), "{states:?}");
    assert_eq!(
        states.iter().filter(|s| **s == AgentState::Offline).count(),
        1,
        "{states:?}"
    );
    assert_eq!(states.last(), Some(&AgentState::Offline), "{states:?}");
}

/// A start must not look like a crash to the hub: the broker publishes the `offline` last will
/// only for a connection that died, and each of these starts and stops cleanly. (The uplink
/// once dropped its first connection attempt right after sending CONNECT, because its first
/// `select!` had a timer ready; the broker then published the will before the `online`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starting_and_stopping_cleanly_never_publishes_the_last_will() {
    let site = "restarts";
    let work = TempDir::new().unwrap();
    let broker = Mosquitto::start().await;
    let hub = Subscriber::start(
        broker.port(),
        "hub-restarts",
        false,
        None,
        &[status_topic(site)],
    )
    .await;
    for cycle in 0..6 {
        let version = if cycle % 2 == 0 {
            MqttVersion::V5
        } else {
            MqttVersion::V311
        };
        let seen = hub.statuses(site).len();
        let new_states = || {
            hub.statuses(site)[seen..]
                .iter()
                .map(|(s, _)| s.state)
                .collect::<Vec<_>>()
        };
        let up = Running::start(
            fast_config(broker.port(), version),
            site,
            &work.path().join("outbox"),
            MIN_OUTBOX_BYTES,
        );
        wait_for(
            "online",
            WAIT,
            || new_states().contains(&AgentState::Online),
            || format!("cycle {cycle}: {:?}; {}", new_states(), up.state()),
        )
        .await;
        assert_eq!(get(&up.stats.connection_failures), 0, "{}", up.state());
        up.finish(WAIT).await;
        wait_for(
            "offline",
            WAIT,
            || new_states().last() == Some(&AgentState::Offline),
            || format!("cycle {cycle}: {:?}", new_states()),
        )
        .await;
        assert_eq!(
            new_states(),
            [AgentState::Online, AgentState::Offline],
            "cycle {cycle} ({version:?}): connect status, goodbye, and no will"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// d. TLS.

/// PEM files for the TLS test: a CA, a server certificate for 127.0.0.1 / localhost and a
/// client certificate signed by it, and a second CA that signed nothing.
struct Pki {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
    other_ca: PathBuf,
}

fn make_pki(dir: &Path) -> Pki {
    use rcgen::ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
    let write = |name: &str, pem: &str| {
        let p = dir.join(name);
        std::fs::write(&p, pem).unwrap();
        p
    };
    let (ca, issuer) = make_ca("edge test CA");
    let (server_cert, server_key) = make_leaf(&issuer, &["127.0.0.1", "localhost"], ServerAuth);
    let (client_cert, client_key) = make_leaf(&issuer, &["edge-tls"], ClientAuth);
    let (other, _) = make_ca("some other CA");
    Pki {
        ca: write("ca.pem", &ca.pem()),
        server_cert: write("server.pem", &server_cert),
        server_key: write("server.key", &server_key),
        client_cert: write("client.pem", &client_cert),
        client_key: write("client.key", &client_key),
        other_ca: write("other-ca.pem", &other.pem()),
    }
}

/// An uplink that must not get through: runs for a while, proves it failed repeatedly without
/// ever connecting or delivering, and returns with its alert still in the outbox.
async fn assert_cannot_connect(config: UplinkConfig, site: &str, dir: &Path, hub: &Subscriber) {
    let mut config = config;
    config.shutdown_drain_ms = 200;
    let up = Running::start(config, site, dir, MIN_OUTBOX_BYTES);
    up.send(alert(site, 0, 1_000, Severity::Critical)).await;
    wait_for(
        "repeated connection failures",
        Duration::from_secs(5),
        || get(&up.stats.connection_failures) >= 3,
        || up.state(),
    )
    .await;
    assert!(!up.stats.connected.load(Ordering::Relaxed));
    assert_eq!(get(&up.stats.reconnects), 0, "never connected");
    assert_eq!(get(&up.stats.published), 0, "{}", up.state());
    assert_eq!(get(&up.stats.acked), 0);
    let left = up.finish(Duration::from_secs(3)).await;
    assert_eq!(left.depth, 1, "the alert stays in the outbox");
    assert!(hub.alerts(site).is_empty(), "nothing delivered for {site}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_client_certificate_delivers_and_without_one_does_not_connect() {
    let work = TempDir::new().unwrap();
    let pki = make_pki(work.path());
    let tls_port = testkit::free_port();
    let broker = Mosquitto::start_with_config(&format!(
        "listener {tls_port} 127.0.0.1\n\
         cafile {}\n\
         certfile {}\n\
         keyfile {}\n\
         require_certificate true\n",
        pki.ca.display(),
        pki.server_cert.display(),
        pki.server_key.display(),
    ))
    .await;
    // The hub listens on the plain listener; the agents use TLS.
    let hub = Subscriber::start(
        broker.port(),
        "hub-tls",
        false,
        None,
        &["se/v1/site/+/alert".to_string()],
    )
    .await;
    let tls_config = |tls: TlsConfig, version| {
        let mut c = fast_config(tls_port, version);
        c.tls = Some(tls);
        c
    };
    let full = TlsConfig {
        ca_file: pki.ca.clone(),
        cert_file: Some(pki.client_cert.clone()),
        key_file: Some(pki.client_key.clone()),
    };

    for (site, version) in [("tls-v5", MqttVersion::V5), ("tls-v311", MqttVersion::V311)] {
        let up = Running::start(
            tls_config(full.clone(), version),
            site,
            &work.path().join(site),
            MIN_OUTBOX_BYTES,
        );
        let make = |i| alert(site, i, 1_000, Severity::Major);
        for i in 0..5 {
            up.send(make(i)).await;
        }
        wait_for(
            "the alerts over TLS",
            WAIT,
            || hub.ids(site) == ids_of(site, 0..5),
            || format!("{}\nbroker log:\n{}", up.state(), broker.log()),
        )
        .await;
        assert_intact(&hub.alerts(site), make);
        assert_eq!(get(&up.stats.connection_failures), 0);
        assert_eq!(up.finish(WAIT).await.depth, 0);
    }

    // No client certificate: the broker refuses the handshake.
    let no_cert = TlsConfig {
        cert_file: None,
        key_file: None,
        ..full.clone()
    };
    assert_cannot_connect(
        tls_config(no_cert, MqttVersion::V5),
        "tls-nocert",
        &work.path().join("nocert"),
        &hub,
    )
    .await;
    // A broker certificate from a CA the agent does not trust: the agent refuses it.
    let wrong_ca = TlsConfig {
        ca_file: pki.other_ca.clone(),
        ..full.clone()
    };
    assert_cannot_connect(
        tls_config(wrong_ca, MqttVersion::V5),
        "tls-wrongca",
        &work.path().join("wrongca"),
        &hub,
    )
    .await;
    // Plain MQTT to the TLS port: no connection either.
    assert_cannot_connect(
        fast_config(tls_port, MqttVersion::V5),
        "tls-plain",
        &work.path().join("plain"),
        &hub,
    )
    .await;
}

#[test]
fn a_ca_file_without_a_certificate_is_a_tls_error_naming_tls_ca_file() {
    let work = TempDir::new().unwrap();
    // A key is PEM, but not a certificate; an empty file is not either.
    let key_only = work.path().join("key-only.pem");
    std::fs::write(
        &key_only,
        rcgen::KeyPair::generate().unwrap().serialize_pem(),
    )
    .unwrap();
    let empty = work.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    for ca_file in [key_only, empty] {
        let mut config = UplinkConfig::new("127.0.0.1", 8883);
        config.tls = Some(TlsConfig {
            ca_file: ca_file.clone(),
            cert_file: None,
            key_file: None,
        });
        let dir = work.path().join(ca_file.file_stem().unwrap());
        let outbox = open_outbox(&dir, MIN_OUTBOX_BYTES);
        let health = HealthReporter::new(protocol::UtcMillis::now().0, None, dir);
        let err = Uplink::new(config, "site", outbox, MIN_OUTBOX_BYTES, health, None)
            .expect_err("a CA file without a certificate is refused");
        match &err {
            UplinkError::Tls(e) => {
                assert_eq!(e.field, "tls.ca_file");
                assert_eq!(e.path.as_deref(), Some(ca_file.as_path()), "names the file");
            }
            other => panic!("expected UplinkError::Tls, got {other:?}"),
        }
        assert!(err.to_string().contains("tls.ca_file"), "{err}");
    }
}

// ---------------------------------------------------------------------------------------------
// e. Login.

async fn login(version: MqttVersion, site: &str) {
    const USER: &str = "edge";
    const PASSWORD: &str = "right horse battery";
    let work = TempDir::new().unwrap();
    let broker = Mosquitto::start_with_user(USER, PASSWORD).await;
    let hub = Subscriber::start(
        broker.port(),
        &format!("hub-{site}"),
        false,
        Some((USER, PASSWORD)),
        &[alert_topic(site)],
    )
    .await;
    let outbox_dir = work.path().join("outbox");
    let with_password = |password: &str| {
        let mut c = fast_config(broker.port(), version);
        c.username = Some(USER.into());
        c.password = Some(Secret::new(password));
        c.shutdown_drain_ms = 200;
        c
    };
    let make = |i| alert(site, i, 1_000, Severity::Major);

    // Wrong password: refused again and again, counted; the alerts stay on disk.
    let up = Running::start(with_password("wrong"), site, &outbox_dir, MIN_OUTBOX_BYTES);
    for i in 0..2 {
        up.send(make(i)).await;
    }
    wait_for(
        "repeated refusals",
        Duration::from_secs(5),
        || get(&up.stats.connection_failures) >= 3,
        || up.state(),
    )
    .await;
    assert!(!up.stats.connected.load(Ordering::Relaxed));
    assert_eq!(get(&up.stats.reconnects), 0);
    assert_eq!(get(&up.stats.published), 0);
    assert_eq!(get(&up.stats.appended), 2);
    assert_eq!(up.finish(Duration::from_secs(3)).await.depth, 2);
    assert!(hub.alerts(site).is_empty());
    assert!(broker.log().contains("not authorised"), "{}", broker.log());

    // The next start, with the right password, delivers them: nothing was lost.
    let up = Running::start(with_password(PASSWORD), site, &outbox_dir, MIN_OUTBOX_BYTES);
    wait_for(
        "the alerts with the right password",
        WAIT,
        || hub.ids(site) == ids_of(site, 0..2) && up.stats.outbox().depth == 0,
        || up.state(),
    )
    .await;
    assert_eq!(get(&up.stats.connection_failures), 0);
    assert_intact(&hub.alerts(site), make);
    assert_eq!(up.finish(WAIT).await.depth, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_refused_and_counted_and_the_right_one_delivers_mqtt5() {
    login(MqttVersion::V5, "login-v5").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_refused_and_counted_and_the_right_one_delivers_mqtt311() {
    login(MqttVersion::V311, "login-v311").await;
}

// ---------------------------------------------------------------------------------------------
// f. Refusals: the hub's "never acceptable" PUBACK quarantines the alert.

/// Runs `edge-agent check --outbox DIR [extra]`, retrying while sled's lock of the uplink that
/// just stopped is still held (see [`open_outbox`]); stdout on success.
fn check_outbox(dir: &Path, extra: &[&str]) -> String {
    let dir = dir.to_str().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let mut args = vec!["check", "--outbox", dir];
        args.extend_from_slice(extra);
        let out = edge_agent(&args);
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        if out.status.success() {
            return stdout;
        }
        if !stderr.contains("could not acquire lock") || std::time::Instant::now() > deadline {
            panic!("edge-agent {args:?} failed: {stdout}\n{stderr}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The id in an alert payload.
fn id_of(payload: &[u8]) -> String {
    protocol::decode_alert(payload).expect("a valid alert").id
}

/// Alert 1 is answered 0x99 (payload format invalid) every time, alert 3 once with 0x97
/// (quota exceeded, a passing refusal): alert 1 goes to the quarantine and is never sent
/// again, also not after a reconnect; alert 3 stays and is delivered on the next connection;
/// the others are delivered and deleted. Status, metrics and `check` show the quarantined one,
/// and `check --requeue-quarantined` sends it on the next start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_the_hub_refuses_for_good_is_quarantined_not_resent_listed_and_requeued() {
    let site = "refused";
    let work = TempDir::new().unwrap();
    let dir = work.path().join("outbox");
    let broker = FakeMqtt5::start().await;
    let bad = alert_id(BASE_MS, 1);
    let flaky = alert_id(BASE_MS, 3);
    let quota_once = Arc::new(AtomicU64::new(0));
    {
        let (bad, flaky, quota_once) = (bad.clone(), flaky.clone(), quota_once.clone());
        let topic = alert_topic(site);
        broker.answer_with(move |t, payload| {
            if t != topic {
                return 0x00;
            }
            let id = id_of(payload);
            if id == bad {
                0x99
            } else if id == flaky && quota_once.fetch_add(1, Ordering::Relaxed) == 0 {
                0x97
            } else {
                0x00
            }
        });
    }
    let max_bytes = 8 << 20;
    let up = Running::start(
        fast_config(broker.port(), MqttVersion::V5),
        site,
        &dir,
        max_bytes,
    );
    for i in 0..5 {
        up.send(alert(site, i, 1_000, Severity::Major)).await;
    }
    let s = up.stats.clone();
    wait_for(
        "three delivered, one quarantined, one refused for now",
        WAIT,
        || {
            get(&s.acked) == 3
                && get(&s.quarantined[0]) == 1
                && get(&s.rejected) == 1
                && s.outbox().quarantined == 1
        },
        || up.state(),
    )
    .await;
    assert_eq!(get(&s.quarantined[1]), 0, "no 0x87 here");
    let outbox = s.outbox();
    assert_eq!(
        outbox.depth, 1,
        "only the passing refusal waits: {outbox:?}"
    );

    // A lost connection: the new one resends alert 3, never alert 1.
    broker.drop_connections();
    wait_for(
        "alert 3 delivered on the next connection",
        WAIT,
        || get(&s.acked) == 4 && s.outbox().depth == 0 && get(&s.reconnects) >= 1,
        || up.state(),
    )
    .await;
    let alerts: Vec<_> = broker
        .publishes()
        .into_iter()
        .filter(|p| p.topic == alert_topic(site))
        .collect();
    let sent_bad: Vec<_> = alerts.iter().filter(|p| id_of(&p.payload) == bad).collect();
    assert_eq!(sent_bad.len(), 1, "the quarantined alert was sent again");
    assert_eq!((sent_bad[0].conn, sent_bad[0].reason), (1, 0x99));
    let accepted: BTreeSet<String> = alerts
        .iter()
        .filter(|p| p.reason == 0)
        .map(|p| id_of(&p.payload))
        .collect();
    assert_eq!(accepted, ids_of(site, [0, 2, 3, 4]));
    assert!(
        alerts
            .iter()
            .any(|p| id_of(&p.payload) == flaky && p.conn == 2 && p.reason == 0),
        "alert 3 is resent on the second connection"
    );

    // The status sent at the reconnect counts it; so do the metrics.
    let quarantined_in_status = broker
        .publishes()
        .into_iter()
        .filter(|p| p.topic == status_topic(site) && p.conn == 2)
        .filter_map(|p| protocol::decode_status(&p.payload).unwrap().health)
        .map(|h| h.outbox.quarantined)
        .collect::<Vec<_>>();
    assert_eq!(
        quarantined_in_status.first(),
        Some(&1),
        "{quarantined_in_status:?}"
    );
    let metrics = render(&MetricsSource {
        agent: None,
        uplink: s.clone(),
        data_dir: work.path().to_path_buf(),
        started: std::time::Instant::now(),
    });
    assert!(
        metrics.contains("\nedge_outbox_quarantined 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("\nedge_uplink_quarantined_total{reason=\"payload_format_invalid\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("\nedge_uplink_rejected_total 1\n"),
        "{metrics}"
    );

    // The stop does not wait for it (it is not deliverable); it stays on disk.
    let left = up.finish(WAIT).await;
    assert_eq!((left.depth, left.quarantined), (0, 1), "{left:?}");

    // `check` lists it: id, reason (with the broker's reason string), time.
    let report = check_outbox(&dir, &[]);
    assert!(report.contains("alerts: 0 "), "{report}");
    assert!(report.contains("quarantined: 1\n"), "{report}");
    assert!(
        report.contains(&format!(
            "id {bad} Major reason 0x99 (fake broker: reason 0x99) quarantined_ms="
        )),
        "{report}"
    );

    // The installer requeues it; the next start sends it, and now the hub takes it.
    let report = check_outbox(&dir, &["--requeue-quarantined"]);
    assert!(report.contains("requeued 1 quarantined alerts"), "{report}");
    assert!(report.contains("alerts: 1 "), "{report}");
    assert!(report.contains("quarantined: 0\n"), "{report}");
    broker.answer_with(|_, _| 0x00);
    let up = Running::start(
        fast_config(broker.port(), MqttVersion::V5),
        site,
        &dir,
        max_bytes,
    );
    let s = up.stats.clone();
    wait_for(
        "the requeued alert delivered",
        WAIT,
        || get(&s.acked) == 1,
        || up.state(),
    )
    .await;
    let left = up.finish(WAIT).await;
    assert_eq!((left.depth, left.quarantined), (0, 0), "{left:?}");
    let last = broker
        .publishes()
        .into_iter()
        .rfind(|p| p.topic == alert_topic(site))
        .unwrap();
    assert_eq!(id_of(&last.payload), bad);
    assert_eq!(last.reason, 0);
    assert_eq!(
        protocol::decode_alert(&last.payload).unwrap(),
        alert(site, 1, 1_000, Severity::Major),
        "requeued unchanged"
    );
}

/// A real broker's refusal: mosquitto with an ACL that lets the site publish its status but not
/// its alerts answers every alert PUBACK 0x87 (not authorised). Each lands in the quarantine
/// (none lost, none resent in a loop), the hub never sees one, and the status counts them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_acl_refusing_the_alert_topic_quarantines_every_alert_with_0x87() {
    let site = "acl";
    let work = TempDir::new().unwrap();
    let acl = work.path().join("acl");
    std::fs::write(
        &acl,
        format!(
            "topic readwrite {}\ntopic read {}\n",
            status_topic(site),
            alert_topic(site)
        ),
    )
    .unwrap();
    let broker = Mosquitto::start_with_config(&format!("acl_file {}\n", acl.display())).await;
    let hub = Subscriber::start(
        broker.port(),
        "hub-acl",
        false,
        None,
        &[alert_topic(site), status_topic(site)],
    )
    .await;
    let mut config = fast_config(broker.port(), MqttVersion::V5);
    config.heartbeat_s = 1;
    let up = Running::start(config, site, &work.path().join("outbox"), 8 << 20);
    for i in 0..3 {
        up.send(alert(site, i, 1_000, Severity::Critical)).await;
    }
    let s = up.stats.clone();
    wait_for(
        "every alert quarantined",
        WAIT,
        || get(&s.quarantined[1]) == 3 && s.outbox().quarantined == 3,
        || format!("{}; broker log:\n{}", up.state(), broker.log()),
    )
    .await;
    wait_for(
        "a status counting them",
        WAIT,
        || {
            hub.statuses(site).iter().any(|(st, _)| {
                st.health
                    .as_ref()
                    .is_some_and(|h| h.outbox.quarantined == 3 && h.outbox.depth == 0)
            })
        },
        || format!("{:?}", hub.statuses(site)),
    )
    .await;
    assert_eq!(get(&s.quarantined[0]), 0);
    assert_eq!((get(&s.acked), get(&s.rejected)), (0, 0), "{}", up.state());
    assert_eq!(get(&s.published), 3, "sent once each: {}", up.state());
    assert!(hub.alerts(site).is_empty(), "the ACL let an alert through");
    let left = up.finish(WAIT).await;
    assert_eq!((left.depth, left.quarantined), (0, 3), "{left:?}");
}

// ---------------------------------------------------------------------------------------------
// A full disk degrades, never kills: failed appends are held in memory and retried.

/// Alerts raised while the outbox's filesystem is full.
const WHILE_FULL: u64 = 50;
/// Alerts delivered before the disk fills.
const BEFORE_FULL: u64 = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_raised_while_the_disk_is_full_are_held_and_arrive_once_space_returns() {
    let site = "disk-full";
    let work = TempDir::new().unwrap();
    let Some(disk) = tmpfs::Tmpfs::mount(&work.path().join("disk"), 8 << 20) else {
        return;
    };
    let broker = Mosquitto::start().await;
    let hub = Subscriber::start(
        broker.port(),
        "hub-disk-full",
        false,
        None,
        &[alert_topic(site), status_topic(site)],
    )
    .await;
    let mut config = fast_config(broker.port(), MqttVersion::V5);
    config.heartbeat_s = 1;
    // Opened before the disk fills (sled writes its files at open).
    let up = Running::start(
        config,
        site,
        &work.path().join("disk/outbox"),
        OutboxConfig::default().max_bytes,
    );
    let make = |i| alert(site, i, 2_000, Severity::Major);
    for i in 0..BEFORE_FULL {
        up.send(make(i)).await;
    }
    wait_for(
        "the alerts sent before the disk filled",
        WAIT,
        || hub.ids(site) == ids_of(site, 0..BEFORE_FULL) && get(&up.stats.acked) >= BEFORE_FULL,
        || up.state(),
    )
    .await;

    // Disk full: appends fail, the alerts are held in memory, the uplink keeps running.
    let ballast = disk.fill("ballast");
    let all = BEFORE_FULL + WHILE_FULL;
    for i in BEFORE_FULL..all {
        up.send(make(i)).await;
    }
    let s = up.stats.clone();
    wait_for(
        "every alert stored or held",
        WAIT,
        || get(&s.appended) + s.held().len as u64 == all,
        || format!("held={:?}; {}", s.held(), up.state()),
    )
    .await;
    let held = s.held().len as u64;
    assert!(
        held > 0 && get(&s.append_errors) > 0,
        "the full disk failed no append (ballast too small?): held={held}; {}",
        up.state()
    );
    assert!(s.held().bytes > held * 2_000, "{:?}", s.held());
    wait_for(
        "a status reporting the held alerts",
        WAIT,
        || {
            hub.statuses(site).iter().any(|(st, _)| {
                st.health.as_ref().is_some_and(|h| {
                    h.outbox.held == held && h.outbox.held_bytes > 0 && h.outbox.append_failures > 0
                })
            })
        },
        || format!("held={held}; last status: {:?}", hub.statuses(site).last()),
    )
    .await;
    let metrics = render(&MetricsSource {
        agent: None,
        uplink: s.clone(),
        data_dir: work.path().to_path_buf(),
        started: std::time::Instant::now(),
    });
    assert!(
        metrics.contains(&format!("\nedge_outbox_held {held}\n")),
        "{metrics}"
    );
    // Still up and connected after more retries against the full disk.
    sleep(Duration::from_millis(1_500)).await;
    assert!(!up.task.is_finished(), "the uplink stopped on a full disk");
    assert!(s.connected.load(Ordering::Relaxed), "{}", up.state());
    assert_eq!(
        s.held().len as u64,
        held,
        "held alerts stored on a full disk?"
    );

    // Space returns: the held alerts reach the outbox, then the broker; nothing is lost.
    std::fs::remove_file(&ballast).unwrap();
    let want = ids_of(site, 0..all);
    wait_for(
        "every alert at the broker's subscriber",
        Duration::from_secs(15),
        || hub.ids(site) == want,
        || {
            format!(
                "{} of {} ids; held={:?}; {}",
                hub.ids(site).len(),
                want.len(),
                s.held(),
                up.state()
            )
        },
    )
    .await;
    wait_for(
        "the hold and the outbox to empty",
        WAIT,
        || s.held().len == 0 && s.outbox().depth == 0,
        || format!("held={:?}; {}", s.held(), up.state()),
    )
    .await;
    // Held alerts went to the outbox oldest first: each id first arrived in raising order.
    let mut first = Vec::new();
    for a in hub.alerts(site) {
        if !first.contains(&a.id) {
            first.push(a.id);
        }
    }
    let in_order: Vec<String> = (0..all).map(|i| alert_id(BASE_MS, i)).collect();
    assert_eq!(first, in_order, "alerts arrived out of their order");
    assert_intact(&hub.alerts(site), make);
    assert_eq!(
        get(&s.append_failed),
        0,
        "an alert was lost: {}",
        up.state()
    );
    assert_eq!(s.held().dropped.total(), 0);
    assert_eq!(s.held().bytes, 0);
    assert_eq!(get(&s.appended), all, "{}", up.state());

    let left = up.finish(WAIT).await;
    assert_eq!(left.depth, 0, "{left:?}");
    drop(disk);
}
