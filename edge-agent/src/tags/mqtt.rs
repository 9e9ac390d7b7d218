//! [`MqttReader`]: tag readers that publish to an MQTT broker instead of connecting to us.
//!
//! The reader subscribes to one topic filter (e.g. `readers/+/reads`). Each PUBLISH payload
//! carries one record of the documented format ([`super::read`]), or several as JSON lines
//! (`\n`-separated, an optional `\r` before each `\n`, blank lines ignored). Every record is
//! parsed on its own with [`parse_read`], numbered by its line within the payload; a malformed
//! or over-long one is counted in the shared [`ReaderCounters`] and skipped, and the others in
//! the same payload still go through. All records of one payload are stamped with one receive
//! time, taken from the [`Clock`] when the payload arrives.
//!
//! Queue policy: **backpressure**, like TCP. A read is handed on with an awaited
//! `mpsc::Sender::send`; while it waits the event loop is not polled, so the broker's socket
//! fills and the broker queues for us (with QoS 1, up to its per-client queue limit, e.g.
//! mosquitto's `max_queued_messages`). No pings go out while we wait either: a pipeline stalled
//! for longer than 1.5 × `keep_alive_s` gets the connection dropped by the broker, and with a
//! clean session what it queued for us is lost; the reader then reconnects as below.
//!
//! Connection: `rumqttc`'s event loop reconnects on the next `poll` after an error, which in a
//! plain loop is a hot loop against a broker that is down. So after every failed attempt or
//! lost connection the reader sleeps a jittered exponential back-off (`backoff_min_ms` doubling
//! up to `backoff_max_ms`, reset by the next CONNACK). Sessions are clean, so the broker forgets
//! the subscription with the connection: the reader subscribes again after every CONNACK.
//! Connection state changes are logged and counted in [`ConnectionCounters`].
//!
//! Retained messages are skipped (counted in [`ConnectionCounters::retained`]): the broker
//! replays them on every subscribe, so a reader publishing with the retain flag would otherwise
//! produce its last read again, with a fresh receive time, after each reconnect.
//!
//! A PUBLISH larger than [`MAX_PACKET_BYTES`] is rejected by `rumqttc` before it is read, which
//! drops the connection; it is counted as oversized and the reader reconnects.
//!
//! Shutdown: the `watch<bool>` turning `true` (or its sender going away) is checked first in
//! every `select!`; a connected reader then sends DISCONNECT (bounded by
//! [`DISCONNECT_TIMEOUT`]) so the broker does not wait for the keep-alive to expire.
//!
//! Not done: TLS (the readers' broker is on the site network), persistent sessions.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, Incoming, MqttOptions, Outgoing, Publish, QoS,
    StateError, SubscribeReasonCode,
};
use serde::Deserialize;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use super::read::{MAX_LINE_BYTES, ReadError, TagRead, parse_read};
use super::reader::{Clock, ReaderCounters, system_clock};
use crate::backoff::Backoff;
pub use crate::secret::Secret;

/// Largest PUBLISH accepted (topic, packet id and payload): room for about 60 records at
/// [`MAX_LINE_BYTES`], several hundred typical ones. A reader batching more is misconfigured.
pub const MAX_PACKET_BYTES: usize = 64 * 1024;
/// How long a clean DISCONNECT may take at shutdown before the connection is just dropped.
pub const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest client id accepted (the MQTT string limit).
const MAX_CLIENT_ID_BYTES: usize = 65_535;
/// Longest topic filter accepted (the MQTT string limit).
const MAX_TOPIC_BYTES: usize = 65_535;
/// Requests queued from us to the event loop: only SUBSCRIBE and DISCONNECT, one at a time.
const REQUEST_CAPACITY: usize = 8;
/// At most one warning per kind of bad record per this interval; the counters keep the tally.
const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Where the MQTT tag reader connects and what it subscribes to.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttReaderConfig {
    /// Broker host name or IP address (plain MQTT over TCP; no TLS).
    pub host: String,
    /// Broker TCP port.
    pub port: u16,
    /// MQTT client id; must be unique on the broker, which drops the older of two clients with
    /// the same id. Default `edge-agent-tags-<host name>`: stable across restarts, so the
    /// broker's logs and ACLs can name the box. Set it when several boxes share a host name.
    pub client_id: String,
    /// Topic filter to subscribe to, e.g. `readers/+/reads` (`+` and `#` allowed as whole
    /// levels, `#` last).
    pub topic: String,
    /// Subscription QoS: 0 (at most once) or 1 (at least once: the broker keeps reads for us
    /// while the pipeline is slow). QoS 2 is not offered: repeats are collapsed by dedup anyway.
    pub qos: u8,
    /// User name, if the broker requires a login.
    pub username: Option<String>,
    /// Password for `username`; never logged.
    pub password: Option<Secret>,
    /// Seconds between keep-alive pings; a dead broker is noticed within about twice this.
    pub keep_alive_s: u64,
    /// First reconnect delay after a failure; doubles per consecutive failure (then jittered
    /// down by up to half).
    pub backoff_min_ms: u64,
    /// Cap on the reconnect delay.
    pub backoff_max_ms: u64,
}

impl Default for MqttReaderConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".to_string(),
            port: 1883,
            client_id: default_client_id(),
            topic: "readers/+/reads".to_string(),
            qos: 1,
            username: None,
            password: None,
            keep_alive_s: 15,
            backoff_min_ms: 500,
            backoff_max_ms: 30_000,
        }
    }
}

/// `edge-agent-tags-<host name>`, keeping only characters every broker accepts in a client id.
fn default_client_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(64)
        .collect();
    if host.is_empty() {
        "edge-agent-tags".to_string()
    } else {
        format!("edge-agent-tags-{host}")
    }
}

impl MqttReaderConfig {
    /// Every problem with this configuration, each as `field: message`. Empty when usable.
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.host.trim().is_empty() {
            errors.push("host: must not be empty".to_string());
        } else if self.host.contains("://") {
            errors.push(format!(
                "host: give a host name or address, not a URL, got {:?}",
                self.host
            ));
        } else if self.host.chars().any(char::is_whitespace) {
            errors.push(format!(
                "host: must not contain whitespace, got {:?}",
                self.host
            ));
        }
        if self.port == 0 {
            errors.push("port: must be within 1..=65535".to_string());
        }
        if self.client_id.is_empty() {
            errors.push("client_id: must not be empty".to_string());
        } else if self.client_id.len() > MAX_CLIENT_ID_BYTES {
            errors.push(format!(
                "client_id: {} bytes is longer than {MAX_CLIENT_ID_BYTES}",
                self.client_id.len()
            ));
        } else if self
            .client_id
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        {
            errors.push(format!(
                "client_id: must not contain whitespace or control characters, got {:?}",
                self.client_id
            ));
        }
        if let Err(problem) = check_topic_filter(&self.topic) {
            errors.push(format!("topic: {problem}"));
        }
        if self.qos > 1 {
            errors.push(format!("qos: must be 0 or 1, got {}", self.qos));
        }
        if self.username.as_ref().is_some_and(String::is_empty) {
            errors.push("username: must not be empty when given".to_string());
        }
        if self.password.is_some() && self.username.is_none() {
            // MQTT 3.1.1 sends a password only together with a user name.
            errors.push("password: needs a username".to_string());
        }
        if !(1..=u64::from(u16::MAX)).contains(&self.keep_alive_s) {
            // 0 would disable pings, and a half-open connection would then go unnoticed.
            errors.push(format!(
                "keep_alive_s: must be within 1..=65535, got {}",
                self.keep_alive_s
            ));
        }
        if self.backoff_min_ms == 0 {
            errors.push("backoff_min_ms: must be at least 1".to_string());
        }
        if self.backoff_max_ms < self.backoff_min_ms {
            errors.push(format!(
                "backoff_max_ms: must be at least backoff_min_ms ({}), got {}",
                self.backoff_min_ms, self.backoff_max_ms
            ));
        }
        errors
    }

    fn qos(&self) -> QoS {
        if self.qos == 0 {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        }
    }

    fn mqtt_options(&self) -> MqttOptions {
        let mut options = MqttOptions::new(&self.client_id, &self.host, self.port);
        options
            .set_keep_alive(Duration::from_secs(self.keep_alive_s))
            .set_clean_session(true)
            // Outgoing: only SUBSCRIBE and DISCONNECT, so the default limit is plenty.
            .set_max_packet_size(MAX_PACKET_BYTES, 10 * 1024);
        if let Some(username) = &self.username {
            let password = self.password.as_ref().map_or("", Secret::expose);
            options.set_credentials(username, password);
        }
        options
    }
}

/// Checks an MQTT topic filter: non-empty, no NUL, `+` and `#` only as whole levels, `#` only
/// as the last level.
pub fn check_topic_filter(filter: &str) -> Result<(), String> {
    if filter.is_empty() {
        return Err("must not be empty".to_string());
    }
    if filter.len() > MAX_TOPIC_BYTES {
        return Err(format!(
            "{} bytes is longer than {MAX_TOPIC_BYTES}",
            filter.len()
        ));
    }
    if filter.contains('\0') {
        return Err("must not contain NUL".to_string());
    }
    let levels: Vec<&str> = filter.split('/').collect();
    for (i, level) in levels.iter().enumerate() {
        if level.contains('#') && (*level != "#" || i + 1 != levels.len()) {
            return Err(format!(
                "{filter:?}: `#` must be a whole level and the last one"
            ));
        }
        if level.contains('+') && *level != "+" {
            return Err(format!("{filter:?}: `+` must be a whole level"));
        }
    }
    Ok(())
}

/// Errors of the MQTT tag reader.
#[derive(Debug, thiserror::Error)]
pub enum MqttReaderError {
    /// The configuration has problems; all of them are listed.
    #[error("MQTT tag reader config ({topic}): {}", problems.join("; "))]
    Config {
        /// The configured topic filter, naming the reader.
        topic: String,
        /// Every problem, as `field: message`.
        problems: Vec<String>,
    },
}

/// Connection bookkeeping of an [`MqttReader`]. Shared (`Arc`) so status reporting can read
/// it while the reader runs.
#[derive(Debug, Default)]
pub struct ConnectionCounters {
    /// Connection attempts (TCP connect plus MQTT CONNECT).
    pub attempts: AtomicU64,
    /// Attempts the broker accepted (CONNACK).
    pub connected: AtomicU64,
    /// Failed attempts plus established connections that were lost.
    pub failures: AtomicU64,
    /// Subscriptions the broker granted (SUBACK): one per connection when all is well.
    pub subscribed: AtomicU64,
    /// Retained publishes replayed by the broker on subscribe, skipped (see the module docs).
    pub retained: AtomicU64,
}

/// A copy of [`ConnectionCounters`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectionSnapshot {
    /// See [`ConnectionCounters::attempts`].
    pub attempts: u64,
    /// See [`ConnectionCounters::connected`].
    pub connected: u64,
    /// See [`ConnectionCounters::failures`].
    pub failures: u64,
    /// See [`ConnectionCounters::subscribed`].
    pub subscribed: u64,
    /// See [`ConnectionCounters::retained`].
    pub retained: u64,
}

impl ConnectionCounters {
    /// Reads every counter.
    pub fn snapshot(&self) -> ConnectionSnapshot {
        ConnectionSnapshot {
            attempts: self.attempts.load(Ordering::Relaxed),
            connected: self.connected.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            subscribed: self.subscribed.load(Ordering::Relaxed),
            retained: self.retained.load(Ordering::Relaxed),
        }
    }
}

/// Adds one and returns the new value.
fn bump(counter: &AtomicU64) -> u64 {
    counter.fetch_add(1, Ordering::Relaxed) + 1
}

/// Completes when shutdown is requested or the sender is gone.
async fn shutdown_requested(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|&stop| stop).await;
}

/// Subscribes to tag-reader publishes on an MQTT broker.
#[derive(Debug)]
pub struct MqttReader {
    config: MqttReaderConfig,
    counters: Arc<ReaderCounters>,
    connection: Arc<ConnectionCounters>,
    clock: Clock,
}

impl MqttReader {
    /// A reader for `config`, validated; nothing connects until [`MqttReader::run`].
    pub fn new(config: MqttReaderConfig) -> Result<Self, MqttReaderError> {
        let problems = config.validate();
        if !problems.is_empty() {
            return Err(MqttReaderError::Config {
                topic: config.topic,
                problems,
            });
        }
        Ok(Self {
            config,
            counters: Arc::default(),
            connection: Arc::default(),
            clock: system_clock,
        })
    }

    /// Replaces the receive clock.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The configuration.
    pub fn config(&self) -> &MqttReaderConfig {
        &self.config
    }

    /// The read counters, the same kind the TCP and UDP readers keep (`dropped` stays 0:
    /// this adapter applies backpressure).
    pub fn counters(&self) -> Arc<ReaderCounters> {
        Arc::clone(&self.counters)
    }

    /// The connection counters.
    pub fn connection_counters(&self) -> Arc<ConnectionCounters> {
        Arc::clone(&self.connection)
    }

    /// Connects, subscribes and forwards reads until shutdown, reconnecting with back-off.
    /// Returns early if the receiver of `tx` is gone. Disconnects cleanly on the way out.
    pub async fn run(self, tx: mpsc::Sender<TagRead>, mut shutdown: watch::Receiver<bool>) {
        let (client, mut eventloop) =
            AsyncClient::new(self.config.mqtt_options(), REQUEST_CAPACITY);
        let mut session = Session {
            backoff: Backoff::new(
                &self.config.client_id,
                self.config.backoff_min_ms,
                self.config.backoff_max_ms,
            ),
            malformed_log: LogLimit::default(),
            oversized_log: LogLimit::default(),
            reader: self,
            connected: false,
        };
        info!(
            message = "MQTT tag reader starting.",
            host = %session.reader.config.host,
            port = session.reader.config.port,
            client_id = %session.reader.config.client_id,
            topic = %session.reader.config.topic,
        );
        loop {
            if eventloop.network.is_none() {
                // `poll` connects first whenever there is no connection.
                bump(&session.reader.connection.attempts);
            }
            let polled = tokio::select! {
                biased;
                () = shutdown_requested(&mut shutdown) => break,
                // The pipeline is gone: nothing left to read for.
                () = tx.closed() => break,
                polled = eventloop.poll() => polled,
            };
            let flow = match polled {
                Ok(Event::Incoming(incoming)) => {
                    session
                        .incoming(incoming, &client, &tx, &mut shutdown)
                        .await
                }
                Ok(Event::Outgoing(_)) => Flow::Continue,
                Err(error) => {
                    let delay = session.failed(&error);
                    tokio::select! {
                        biased;
                        () = shutdown_requested(&mut shutdown) => break,
                        () = tokio::time::sleep(delay) => Flow::Continue,
                    }
                }
            };
            if let Flow::Stop = flow {
                break;
            }
        }
        disconnect(&client, &mut eventloop).await;
        info!(
            message = "MQTT tag reader stopped.",
            topic = %session.reader.config.topic,
        );
    }
}

/// Sends DISCONNECT if connected and waits (briefly) until it is written.
async fn disconnect(client: &AsyncClient, eventloop: &mut EventLoop) {
    if eventloop.network.is_none() || client.try_disconnect().is_err() {
        return;
    }
    let written = tokio::time::timeout(DISCONNECT_TIMEOUT, async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    if written.is_err() {
        debug!(message = "MQTT DISCONNECT timed out; dropping the connection.");
    }
}

/// What to do after one event.
enum Flow {
    Continue,
    Stop,
}

/// The state of one [`MqttReader::run`].
struct Session {
    reader: MqttReader,
    backoff: Backoff,
    /// Whether the last connection was established and not yet lost (for state-change logs).
    connected: bool,
    malformed_log: LogLimit,
    oversized_log: LogLimit,
}

impl Session {
    async fn incoming(
        &mut self,
        incoming: Incoming,
        client: &AsyncClient,
        tx: &mpsc::Sender<TagRead>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Flow {
        let config = &self.reader.config;
        match incoming {
            // rumqttc reports a refused CONNACK as an error, so this one was accepted.
            Incoming::ConnAck(_) => {
                bump(&self.reader.connection.connected);
                info!(
                    message = "MQTT tag reader connected.",
                    host = %config.host,
                    port = config.port,
                    client_id = %config.client_id,
                    failed_attempts = self.backoff.failures(),
                );
                self.connected = true;
                self.backoff.reset();
                // Clean session: the broker forgot our subscription with the last connection.
                if let Err(error) = client.try_subscribe(&config.topic, config.qos()) {
                    // Only possible if the request queue is full, which one SUBSCRIBE per
                    // CONNACK cannot do; log rather than lose the reason.
                    error!(
                        message = "Could not queue the MQTT subscription.",
                        topic = %config.topic,
                        %error,
                    );
                }
                Flow::Continue
            }
            Incoming::SubAck(ack) => {
                let granted = ack
                    .return_codes
                    .iter()
                    .all(|code| matches!(code, SubscribeReasonCode::Success(_)));
                if granted {
                    bump(&self.reader.connection.subscribed);
                    info!(
                        message = "MQTT tag reader subscribed.",
                        topic = %config.topic,
                        qos = config.qos,
                    );
                } else {
                    // Usually an ACL: nothing will arrive until an operator fixes it.
                    error!(
                        message = "MQTT broker refused the subscription; no tag reads will arrive.",
                        topic = %config.topic,
                        codes = ?ack.return_codes,
                    );
                }
                Flow::Continue
            }
            Incoming::Publish(publish) if publish.retain => {
                let retained = bump(&self.reader.connection.retained);
                debug!(
                    message = "Retained MQTT publish skipped.",
                    topic = %publish.topic,
                    retained,
                );
                Flow::Continue
            }
            Incoming::Publish(publish) => self.payload(&publish, tx, shutdown).await,
            _ => Flow::Continue,
        }
    }

    /// Parses and forwards every record of one payload.
    async fn payload(
        &mut self,
        publish: &Publish,
        tx: &mpsc::Sender<TagRead>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Flow {
        // One receive time per payload: its records arrived together.
        let received_ms = (self.reader.clock)();
        for (line, record) in records(&publish.payload) {
            match parse_read(record, line, received_ms) {
                Ok(read) => {
                    bump(&self.reader.counters.received);
                    // Backpressure: wait for room, but never past shutdown.
                    let sent = tokio::select! {
                        biased;
                        () = shutdown_requested(shutdown) => return Flow::Stop,
                        sent = tx.send(read) => sent,
                    };
                    if sent.is_err() {
                        return Flow::Stop;
                    }
                }
                Err(ReadError::Oversized { len, .. }) => {
                    let oversized = bump(&self.reader.counters.oversized);
                    if let Some(suppressed) = self.oversized_log.allow(Instant::now()) {
                        warn!(
                            message = "Over-long tag record skipped.",
                            topic = %publish.topic,
                            line,
                            len,
                            max = MAX_LINE_BYTES,
                            oversized,
                            suppressed,
                        );
                    }
                }
                Err(error) => {
                    let malformed = bump(&self.reader.counters.malformed);
                    if let Some(suppressed) = self.malformed_log.allow(Instant::now()) {
                        warn!(
                            message = "Malformed tag record skipped.",
                            topic = %publish.topic,
                            malformed,
                            suppressed,
                            %error,
                        );
                    }
                }
            }
        }
        Flow::Continue
    }

    /// Counts and logs a failed attempt or a lost connection; returns the delay before the
    /// next attempt.
    fn failed(&mut self, error: &ConnectionError) -> Duration {
        bump(&self.reader.connection.failures);
        if let ConnectionError::MqttState(StateError::Deserialization(
            rumqttc::Error::PayloadSizeLimitExceeded(len),
        )) = error
        {
            let oversized = bump(&self.reader.counters.oversized);
            warn!(
                message = "MQTT publish over the packet limit; the connection was dropped.",
                topic = %self.reader.config.topic,
                len,
                max = MAX_PACKET_BYTES,
                oversized,
            );
        }
        let delay = self.backoff.next_delay();
        let retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        let config = &self.reader.config;
        if std::mem::take(&mut self.connected) {
            warn!(
                message = "MQTT tag reader connection lost; reconnecting.",
                host = %config.host,
                port = config.port,
                %error,
                retry_in_ms,
            );
        } else if self.backoff.failures() == 1 {
            if let ConnectionError::ConnectionRefused(code) = error {
                // Bad credentials or a banned client id: an operator must act.
                error!(
                    message = "MQTT broker refused the tag reader; retrying.",
                    host = %config.host,
                    port = config.port,
                    client_id = %config.client_id,
                    code = ?code,
                    retry_in_ms,
                );
            } else {
                warn!(
                    message = "MQTT broker unreachable; retrying.",
                    host = %config.host,
                    port = config.port,
                    %error,
                    retry_in_ms,
                );
            }
        } else {
            // Still down: the state has not changed, so keep it out of the default log.
            debug!(
                message = "MQTT connection attempt failed.",
                host = %config.host,
                port = config.port,
                failures = self.backoff.failures(),
                %error,
                retry_in_ms,
            );
        }
        delay
    }
}

/// Splits a payload into records: `(1-based line number, record)` for each non-blank line,
/// without its `\n` or `\r\n` terminator.
fn records(payload: &[u8]) -> impl Iterator<Item = (u64, &[u8])> {
    payload
        .split(|&b| b == b'\n')
        .zip(1u64..)
        .map(|(line, n)| (n, line.strip_suffix(b"\r").unwrap_or(line)))
        .filter(|(_, line)| !line.iter().all(u8::is_ascii_whitespace))
}

/// Lets one warning through per [`LOG_INTERVAL`] and counts the ones held back, so a reader
/// stuck sending garbage cannot flood the log.
#[derive(Debug, Default)]
struct LogLimit {
    next_at: Option<Instant>,
    suppressed: u64,
}

impl LogLimit {
    /// `Some(warnings suppressed since the last one let through)` if this one may be logged.
    fn allow(&mut self, now: Instant) -> Option<u64> {
        if self.next_at.is_some_and(|at| now < at) {
            self.suppressed += 1;
            return None;
        }
        self.next_at = Some(now + LOG_INTERVAL);
        Some(std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn valid() -> MqttReaderConfig {
        MqttReaderConfig {
            client_id: "edge-1".to_string(),
            ..MqttReaderConfig::default()
        }
    }

    #[test]
    fn defaults_are_valid_and_documented_values() {
        let c = MqttReaderConfig::default();
        assert_eq!(c.validate(), Vec::<String>::new());
        assert_eq!(c.port, 1883);
        assert_eq!(c.qos, 1);
        assert_eq!(c.topic, "readers/+/reads");
        assert!(
            c.client_id.starts_with("edge-agent-tags"),
            "{}",
            c.client_id
        );
        // Derived from the host, so the same on every start.
        assert_eq!(c.client_id, MqttReaderConfig::default().client_id);
    }

    #[test]
    fn every_problem_is_reported_with_its_field() {
        let c = MqttReaderConfig {
            host: String::new(),
            port: 0,
            client_id: "has space".to_string(),
            topic: "readers/#/reads".to_string(),
            qos: 2,
            username: None,
            password: Some(Secret::new("pw")),
            keep_alive_s: 0,
            backoff_min_ms: 0,
            backoff_max_ms: 0,
        };
        let errors = c.validate();
        let fields: Vec<&str> = errors
            .iter()
            .map(|e| e.split(':').next().unwrap())
            .collect();
        assert_eq!(
            fields,
            [
                "host",
                "port",
                "client_id",
                "topic",
                "qos",
                "password",
                "keep_alive_s",
                "backoff_min_ms"
            ],
            "{errors:#?}"
        );
        let c = MqttReaderConfig {
            backoff_min_ms: 1000,
            backoff_max_ms: 10,
            host: "mqtt://broker".to_string(),
            username: Some(String::new()),
            ..valid()
        };
        let errors = c.validate();
        assert_eq!(errors.len(), 3, "{errors:#?}");
        assert!(
            errors[0].starts_with("host: give a host name"),
            "{errors:#?}"
        );
        assert!(errors[1].starts_with("username:"), "{errors:#?}");
        assert!(errors[2].starts_with("backoff_max_ms:"), "{errors:#?}");
    }

    #[test]
    fn topic_filters_follow_the_mqtt_wildcard_rules() {
        for good in [
            "readers/+/reads",
            "#",
            "readers/#",
            "+",
            "a//b",
            "/",
            "+/+/#",
        ] {
            assert_eq!(check_topic_filter(good), Ok(()), "{good}");
        }
        for bad in ["", "readers/#/x", "readers/r+/reads", "a#", "a/#b", "x\0y"] {
            assert!(check_topic_filter(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn config_parses_from_toml_and_rejects_unknown_keys() {
        let c: MqttReaderConfig = toml::from_str(
            "host = \"broker.local\"\ntopic = \"site/+/tags\"\nusername = \"agent\"\npassword = \"hunter2\"\n",
        )
        .unwrap();
        assert_eq!(c.host, "broker.local");
        assert_eq!(c.port, 1883);
        assert_eq!(c.password.as_ref().map(Secret::expose), Some("hunter2"));
        assert!(c.validate().is_empty(), "{:?}", c.validate());
        let e = toml::from_str::<MqttReaderConfig>("hots = \"x\"\n").unwrap_err();
        assert!(e.to_string().contains("hots"), "{e}");
    }

    #[test]
    fn the_password_never_shows_in_debug_output() {
        let c = MqttReaderConfig {
            username: Some("agent".to_string()),
            password: Some(Secret::new("hunter2")),
            ..valid()
        };
        let reader = MqttReader::new(c.clone()).unwrap();
        for shown in [format!("{c:?}"), format!("{reader:?}")] {
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("***"), "{shown}");
        }
    }

    #[test]
    fn a_reader_with_a_bad_config_is_refused_with_every_problem() {
        let e = MqttReader::new(MqttReaderConfig {
            qos: 5,
            port: 0,
            ..valid()
        })
        .unwrap_err();
        let MqttReaderError::Config { problems, .. } = &e;
        assert_eq!(problems.len(), 2, "{e}");
        assert!(e.to_string().contains("qos: must be 0 or 1"), "{e}");
    }

    #[test]
    fn records_are_numbered_by_line_without_terminators_or_blank_lines() {
        let got: Vec<(u64, &[u8])> = records(b"a\r\n\nb\n  \nc").collect();
        assert_eq!(
            got,
            [(1, &b"a"[..]), (3, &b"b"[..]), (5, &b"c"[..])].to_vec()
        );
        assert_eq!(records(b"").count(), 0);
        assert_eq!(records(b"one\n").collect::<Vec<_>>(), [(1, &b"one"[..])]);
    }

    #[test]
    fn warnings_are_rate_limited_and_report_what_was_held_back() {
        let mut limit = LogLimit::default();
        let t0 = Instant::now();
        assert_eq!(limit.allow(t0), Some(0));
        assert_eq!(limit.allow(t0 + Duration::from_secs(1)), None);
        assert_eq!(limit.allow(t0 + Duration::from_secs(2)), None);
        assert_eq!(limit.allow(t0 + LOG_INTERVAL), Some(2));
        assert_eq!(limit.allow(t0 + LOG_INTERVAL), None);
    }
}
