//! The MQTT tag reader against a real mosquitto started by each test on a free loopback port:
//! a simulated reader publishes good, malformed and over-long records; the broker is killed
//! and restarted; the adapter is shut down while idle, blocked and backing off.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use edge_agent::tags::{
    ConnectionCounters, ConnectionSnapshot, CounterSnapshot, MqttReader, MqttReaderConfig,
    ReaderCounters, Secret, TagKind, TagRead,
};
use edge_agent::track::Timestamp;
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use testkit::mosquitto::Mosquitto;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};

const WAIT: Duration = Duration::from_secs(5);
/// How quickly `run` must return after shutdown is requested.
const PROMPT: Duration = Duration::from_millis(500);
const T0: Timestamp = 1_795_334_400_000; // 2026-11-22T08:00:00Z

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT_ID.fetch_add(1, Ordering::Relaxed)
    )
}

fn line(reader: &str, tag: &str, kind: &str) -> String {
    format!(r#"{{"reader":"{reader}","tag":"{tag}","kind":"{kind}","rssi":-61}}"#)
}

fn oversized(len: usize) -> String {
    let pad = "x".repeat(len);
    format!(r#"{{"reader":"r1","tag":"AA","kind":"bike","rssi":-61,"pad":"{pad}"}}"#)
}

fn config(port: u16) -> MqttReaderConfig {
    MqttReaderConfig {
        host: "127.0.0.1".to_string(),
        port,
        client_id: unique("reader"),
        topic: "readers/+/reads".to_string(),
        qos: 1,
        keep_alive_s: 5,
        backoff_min_ms: 50,
        backoff_max_ms: 400,
        ..MqttReaderConfig::default()
    }
}

fn fixed_clock() -> Timestamp {
    T0
}

/// A running adapter and its handles.
struct Running {
    client_id: String,
    reads: Arc<ReaderCounters>,
    link: Arc<ConnectionCounters>,
    rx: mpsc::Receiver<TagRead>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

fn spawn_reader(config: MqttReaderConfig, clock: fn() -> Timestamp, capacity: usize) -> Running {
    let client_id = config.client_id.clone();
    let reader = MqttReader::new(config).unwrap().with_clock(clock);
    let (reads, link) = (reader.counters(), reader.connection_counters());
    let (tx, rx) = mpsc::channel(capacity);
    let (stop, shutdown) = watch::channel(false);
    let task = tokio::spawn(reader.run(tx, shutdown));
    Running {
        client_id,
        reads,
        link,
        rx,
        stop,
        task,
    }
}

impl Running {
    async fn recv_n(&mut self, n: usize) -> Vec<TagRead> {
        let mut out = Vec::new();
        for _ in 0..n {
            let got = timeout(WAIT, self.rx.recv()).await;
            out.push(
                got.unwrap_or_else(|_| panic!("after {out:?}: no read"))
                    .unwrap(),
            );
        }
        out
    }

    async fn wait_link(&self, what: &str, want: impl Fn(ConnectionSnapshot) -> bool) {
        let link = &self.link;
        wait_until(what, || want(link.snapshot()), || link.snapshot()).await;
    }

    async fn wait_reads(&self, what: &str, want: impl Fn(CounterSnapshot) -> bool) {
        let reads = &self.reads;
        wait_until(what, || want(reads.snapshot()), || reads.snapshot()).await;
    }

    /// Requests shutdown and asserts that `run` returns within [`PROMPT`].
    async fn stop_promptly(self) {
        let asked = Instant::now();
        self.stop.send_replace(true);
        timeout(PROMPT, self.task)
            .await
            .unwrap_or_else(|_| panic!("run still going {PROMPT:?} after shutdown"))
            .unwrap();
        eprintln!("stopped in {:?}", asked.elapsed());
    }
}

/// Polls `cond` every few ms until it holds; panics after [`WAIT`] showing `state()`.
async fn wait_until<S: std::fmt::Debug>(
    what: &str,
    cond: impl Fn() -> bool,
    state: impl Fn() -> S,
) {
    let waited = timeout(WAIT, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    if waited.is_err() {
        panic!("waiting for {what}: still {:?}", state());
    }
}

/// A simulated tag reader publishing over its own rumqttc client.
struct Publisher {
    client: AsyncClient,
    acks: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Publisher {
    async fn connect(port: u16) -> Self {
        let mut options = MqttOptions::new(unique("publisher"), "127.0.0.1", port);
        options
            .set_keep_alive(Duration::from_secs(5))
            .set_max_packet_size(256 * 1024, 256 * 1024);
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        let acks = Arc::new(AtomicU64::new(0));
        let (ready, connected) = oneshot::channel();
        let counted = Arc::clone(&acks);
        let task = tokio::spawn(async move {
            let mut ready = Some(ready);
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                        if let Some(ready) = ready.take() {
                            let _ = ready.send(());
                        }
                    }
                    Ok(Event::Incoming(Incoming::PubAck(_))) => {
                        counted.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        timeout(WAIT, connected).await.unwrap().unwrap();
        Self { client, acks, task }
    }

    async fn publish(&self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.send(topic, payload, false).await;
    }

    async fn send(&self, topic: &str, payload: impl Into<Vec<u8>>, retain: bool) {
        self.client
            .publish(topic, QoS::AtLeastOnce, retain, payload)
            .await
            .unwrap();
    }

    /// Waits until the broker has acknowledged `n` publishes in all.
    async fn wait_acked(&self, n: u64) {
        let acks = &self.acks;
        wait_until(
            "PUBACKs",
            || acks.load(Ordering::Relaxed) >= n,
            || acks.load(Ordering::Relaxed),
        )
        .await;
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn tags(reads: &[TagRead]) -> Vec<&str> {
    reads.iter().map(|r| r.tag.as_str()).collect()
}

static ORDER_NOW: AtomicI64 = AtomicI64::new(T0);

#[tokio::test]
async fn reads_published_by_readers_arrive_parsed_in_order_with_the_agents_receive_time() {
    let broker = Mosquitto::start().await;
    let mut reader = spawn_reader(
        config(broker.port()),
        || ORDER_NOW.load(Ordering::Relaxed),
        16,
    );
    reader
        .wait_link("subscription", |s| s.subscribed == 1)
        .await;

    let publisher = Publisher::connect(broker.port()).await;
    publisher
        .publish("readers/r1/reads", line("r1", "a1", "bike"))
        .await;
    publisher
        .publish(
            "readers/r2/reads",
            r#"{"reader":"r2","tag":"A2","kind":"key","rssi":-70,"time":"2026-11-22T07:59:00Z"}"#,
        )
        .await;
    // Outside the topic filter: never delivered (it would count as malformed if it were).
    publisher.publish("readers/r1/status", "online").await;
    publisher
        .publish("readers/r1/reads", line("r1", "A3", "bike"))
        .await;
    let reads = reader.recv_n(3).await;
    assert_eq!(tags(&reads), ["A1", "A2", "A3"]);
    assert_eq!(reads[0].reader, "r1");
    assert_eq!(reads[1].reader, "r2");
    assert_eq!(reads[1].kind, TagKind::Key);
    assert_eq!(reads[1].rssi, -70);
    assert!(reads.iter().all(|r| r.received_ms == T0), "{reads:?}");
    // The reader's own clock is kept, but only for forensics.
    assert_eq!(reads[1].reader_time_ms, Some(T0 - 60_000));

    // Stamped on receipt: a later read gets the clock's later time.
    ORDER_NOW.store(T0 + 5_000, Ordering::Relaxed);
    publisher
        .publish("readers/r1/reads", line("r1", "A4", "bike"))
        .await;
    let later = reader.recv_n(1).await;
    assert_eq!(later[0].received_ms, T0 + 5_000);

    assert!(reader.rx.try_recv().is_err());
    assert_eq!(
        reader.reads.snapshot(),
        CounterSnapshot {
            received: 4,
            ..CounterSnapshot::default()
        }
    );
    reader.stop_promptly().await;
}

#[tokio::test]
async fn a_payload_of_three_lines_with_a_malformed_middle_delivers_the_other_two() {
    let broker = Mosquitto::start().await;
    let mut reader = spawn_reader(config(broker.port()), fixed_clock, 16);
    reader
        .wait_link("subscription", |s| s.subscribed == 1)
        .await;

    let publisher = Publisher::connect(broker.port()).await;
    let payload = format!(
        "{}\r\n{{\"reader\":\"r1\",\"tag\":}}\n{}\n",
        line("r1", "B1", "bike"),
        line("r1", "B3", "key"),
    );
    publisher.publish("readers/r1/reads", payload).await;
    let reads = reader.recv_n(2).await;
    assert_eq!(tags(&reads), ["B1", "B3"]);
    assert!(reads.iter().all(|r| r.received_ms == T0));
    reader
        .wait_reads("malformed count", |s| s.malformed == 1)
        .await;
    assert_eq!(
        reader.reads.snapshot(),
        CounterSnapshot {
            received: 2,
            malformed: 1,
            ..CounterSnapshot::default()
        }
    );
    reader.stop_promptly().await;
}

#[tokio::test]
async fn an_oversized_record_is_counted_and_skipped() {
    let broker = Mosquitto::start().await;
    let mut reader = spawn_reader(config(broker.port()), fixed_clock, 16);
    reader
        .wait_link("subscription", |s| s.subscribed == 1)
        .await;

    let publisher = Publisher::connect(broker.port()).await;
    // Inside a batch, between good records...
    let batch = format!(
        "{}\n{}\n{}",
        line("r1", "C1", "bike"),
        oversized(1_100),
        line("r1", "C2", "bike"),
    );
    publisher.publish("readers/r1/reads", batch).await;
    // ... and alone.
    publisher
        .publish("readers/r1/reads", oversized(5_000))
        .await;
    publisher
        .publish("readers/r1/reads", line("r1", "C3", "bike"))
        .await;
    let reads = reader.recv_n(3).await;
    assert_eq!(tags(&reads), ["C1", "C2", "C3"]);
    assert_eq!(
        reader.reads.snapshot(),
        CounterSnapshot {
            received: 3,
            oversized: 2,
            ..CounterSnapshot::default()
        }
    );
    // Oversized records cost nothing but themselves: still the first connection.
    assert_eq!(reader.link.snapshot().connected, 1);
    reader.stop_promptly().await;
}

#[tokio::test]
async fn a_publish_over_the_packet_limit_costs_a_reconnect_not_the_reader() {
    let broker = Mosquitto::start().await;
    let mut reader = spawn_reader(config(broker.port()), fixed_clock, 16);
    reader
        .wait_link("subscription", |s| s.subscribed == 1)
        .await;

    let publisher = Publisher::connect(broker.port()).await;
    let huge = vec![b'x'; edge_agent::tags::mqtt::MAX_PACKET_BYTES + 1];
    publisher.publish("readers/r1/reads", huge).await;
    reader
        .wait_link("resubscription", |s| s.subscribed == 2)
        .await;
    let link = reader.link.snapshot();
    assert_eq!((link.connected, link.failures), (2, 1), "{link:?}");
    assert_eq!(reader.reads.snapshot().oversized, 1);

    publisher
        .publish("readers/r1/reads", line("r1", "D1", "bike"))
        .await;
    assert_eq!(tags(&reader.recv_n(1).await), ["D1"]);
    reader.stop_promptly().await;
}

#[tokio::test]
async fn the_reader_reconnects_with_back_off_after_the_broker_restarts() {
    let mut broker = Mosquitto::start().await;
    let mut reader = spawn_reader(config(broker.port()), fixed_clock, 16);
    reader
        .wait_link("subscription", |s| s.subscribed == 1)
        .await;
    {
        let publisher = Publisher::connect(broker.port()).await;
        publisher
            .publish("readers/r1/reads", line("r1", "E1", "bike"))
            .await;
        assert_eq!(tags(&reader.recv_n(1).await), ["E1"]);
    }

    broker.kill().await;
    reader
        .wait_link("lost connection", |s| s.failures >= 1)
        .await;
    let before = reader.link.snapshot();
    // The outage itself: long enough that a hot loop would make thousands of attempts.
    let outage = Duration::from_secs(1);
    tokio::time::sleep(outage).await;
    let during = reader.link.snapshot();
    let attempts = during.attempts - before.attempts;
    // Back-off 50 ms doubling to 400 ms, jittered down by up to half: at most ~9 in 1 s.
    assert!(
        (2..=12).contains(&attempts),
        "{attempts} connection attempts in {outage:?}: {before:?} → {during:?}"
    );
    assert_eq!(during.connected, 1);

    broker.restart().await;
    let restarted = Instant::now();
    reader
        .wait_link("reconnect and resubscribe", |s| {
            s.connected == 2 && s.subscribed == 2
        })
        .await;
    // The back-off is capped at 400 ms, so the reader is back within about that.
    assert!(
        restarted.elapsed() < Duration::from_millis(1_500),
        "{:?}",
        restarted.elapsed()
    );

    let publisher = Publisher::connect(broker.port()).await;
    publisher
        .publish("readers/r1/reads", line("r1", "E2", "key"))
        .await;
    assert_eq!(tags(&reader.recv_n(1).await), ["E2"]);
    reader.stop_promptly().await;
}

#[tokio::test]
async fn shutdown_of_a_connected_idle_reader_is_prompt_and_disconnects_cleanly() {
    let broker = Mosquitto::start().await;
    let reader = spawn_reader(config(broker.port()), fixed_clock, 16);
    reader
        .wait_link("subscription", |s| s.subscribed == 1)
        .await;
    let client_id = reader.client_id.clone();
    reader.stop_promptly().await;
    // mosquitto logs exactly "Client <id> disconnected." for a DISCONNECT packet, and "closed
    // its connection." when the socket just goes away.
    let clean = format!("Client {client_id} disconnected.");
    wait_until(
        "a clean DISCONNECT in the broker log",
        || broker.log().contains(&clean),
        || broker.log(),
    )
    .await;
}

#[tokio::test]
async fn run_ends_when_the_pipeline_is_gone() {
    let broker = Mosquitto::start().await;
    let reader = spawn_reader(config(broker.port()), fixed_clock, 16);
    reader
        .wait_link("subscription", |s| s.subscribed == 1)
        .await;
    drop(reader.rx);
    timeout(PROMPT, reader.task)
        .await
        .unwrap_or_else(|_| panic!("run still going {PROMPT:?} after the receiver went away"))
        .unwrap();
}

#[tokio::test]
async fn shutdown_is_prompt_while_blocked_on_a_full_channel() {
    let broker = Mosquitto::start().await;
    let reader = spawn_reader(config(broker.port()), fixed_clock, 1);
    reader
        .wait_link("subscription", |s| s.subscribed == 1)
        .await;
    let publisher = Publisher::connect(broker.port()).await;
    let batch: Vec<String> = (0..5)
        .map(|i| line("r1", &format!("F{i}"), "bike"))
        .collect();
    publisher
        .publish("readers/r1/reads", batch.join("\n"))
        .await;
    // One read fills the channel, the next waits in `send`: backpressure, nothing dropped.
    reader
        .wait_reads("a blocked send", |s| s.received == 2)
        .await;
    assert_eq!(reader.reads.snapshot().dropped, 0);
    reader.stop_promptly().await;
}

#[tokio::test]
async fn shutdown_is_prompt_while_backing_off_from_an_unreachable_broker() {
    // Start and kill a broker, so the port is known to be closed.
    let mut broker = Mosquitto::start().await;
    broker.kill().await;
    let reader = spawn_reader(
        MqttReaderConfig {
            backoff_min_ms: 20_000,
            backoff_max_ms: 60_000,
            ..config(broker.port())
        },
        fixed_clock,
        16,
    );
    reader
        .wait_link("a failed attempt", |s| s.failures == 1)
        .await;
    let link = reader.link.snapshot();
    assert_eq!((link.attempts, link.connected), (1, 0), "{link:?}");
    reader.stop_promptly().await;
}

#[tokio::test]
async fn retained_reads_replayed_on_subscribe_are_skipped() {
    let broker = Mosquitto::start().await;
    let publisher = Publisher::connect(broker.port()).await;
    publisher
        .send("readers/r1/reads", line("r1", "01D", "bike"), true)
        .await;
    publisher.wait_acked(1).await;

    let mut reader = spawn_reader(config(broker.port()), fixed_clock, 16);
    reader
        .wait_link("the retained replay", |s| s.retained == 1)
        .await;
    publisher
        .publish("readers/r1/reads", line("r1", "6A", "bike"))
        .await;
    assert_eq!(tags(&reader.recv_n(1).await), ["6A"]);
    assert!(reader.rx.try_recv().is_err());
    assert_eq!(reader.reads.snapshot().received, 1);
    reader.stop_promptly().await;
}

#[tokio::test]
async fn credentials_from_the_config_are_used_and_a_wrong_password_is_retried_with_back_off() {
    let broker = Mosquitto::start_with_user("agent", "s3cret").await;
    let with = |password: &str| MqttReaderConfig {
        username: Some("agent".to_string()),
        password: Some(Secret::new(password)),
        ..config(broker.port())
    };

    let mut good = spawn_reader(with("s3cret"), fixed_clock, 16);
    good.wait_link("subscription", |s| s.subscribed == 1).await;
    let mut options = MqttOptions::new(unique("publisher"), "127.0.0.1", broker.port());
    options.set_credentials("agent", "s3cret");
    let (client, mut eventloop) = AsyncClient::new(options, 8);
    let publisher = tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    client
        .publish(
            "readers/r9/reads",
            QoS::AtLeastOnce,
            false,
            line("r9", "A9", "key"),
        )
        .await
        .unwrap();
    assert_eq!(tags(&good.recv_n(1).await), ["A9"]);
    publisher.abort();
    good.stop_promptly().await;

    let bad = spawn_reader(with("wrong"), fixed_clock, 16);
    bad.wait_link("refusals", |s| s.failures >= 2).await;
    let link = bad.link.snapshot();
    assert_eq!(link.connected, 0, "{link:?}");
    bad.stop_promptly().await;
}
