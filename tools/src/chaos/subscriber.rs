//! [`Subscriber`]: the in-process MQTT client that counts what arrives.
//!
//! MQTT 3.1.1 with `clean_session = false` and a fixed client id, so the broker keeps the
//! subscription and queues QoS 1 messages for it while it is disconnected, across broker
//! restarts (the broker persists sessions). It is started before the agent and kept alive for
//! the whole run: when the broker goes away, `rumqttc` reconnects on the next `poll`, which this
//! loop makes after a short sleep (so a broker that is down is not polled in a hot loop).
//! It subscribes again after every CONNACK in case the broker lost the session (counted: what
//! was queued for it is then gone, and the report says so).
//!
//! Every PUBLISH is counted when `poll` returns it. `rumqttc` sends the PUBACK as it reads the
//! packet, and events it has read but not yet returned survive a connection error (they are
//! returned after the reconnect), so a message acknowledged to the broker is always counted.

use std::collections::HashMap;
use std::time::Duration;

use protocol::Alert;
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS, SubscribeReasonCode};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, timeout};
use tracing::{debug, error, info, warn};

use super::{ALERT_TOPIC, ChaosError, make_alert};

/// The subscriber's fixed client id: its broker session outlives its connections.
const CLIENT_ID: &str = "chaos-subscriber";
/// Largest packet accepted either way: a 1 MiB snapshot is 1.4 MB of base64 plus the alert.
const MAX_PACKET_BYTES: usize = 2 << 20;
/// Pause after a failed connection attempt or a lost connection before polling again.
const RECONNECT_DELAY: Duration = Duration::from_millis(200);
/// Short, so a broker restart is noticed quickly even if the connection is not reset.
const KEEP_ALIVE: Duration = Duration::from_secs(5);
/// The first subscription must be acknowledged within this, before the agent starts.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(10);
/// Room for the SUBSCRIBE after each CONNACK and the final DISCONNECT.
const REQUEST_CAPACITY: usize = 16;

/// What the subscriber has seen so far, for the main loop.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Progress {
    /// PUBLISHes received, every copy.
    pub received: u64,
    /// Expected ids received at least once.
    pub distinct: u64,
    /// SUBACKs granting the subscription.
    pub subscribed: u64,
}

/// The ids the agent is told to emit, and how to rebuild each alert to check it.
#[derive(Debug)]
pub(super) struct Expected {
    site: String,
    base_ms: i64,
    snapshot_bytes: usize,
    index_of: HashMap<String, u64>,
}

impl Expected {
    pub(super) fn new(site: &str, base_ms: i64, count: u64, snapshot_bytes: usize) -> Self {
        Self {
            site: site.to_string(),
            base_ms,
            snapshot_bytes,
            index_of: (0..count)
                .map(|i| (super::alert_id(base_ms, i), i))
                .collect(),
        }
    }

    fn count(&self) -> usize {
        self.index_of.len()
    }
}

/// Per-id receive counts and everything that was wrong with a payload.
#[derive(Debug)]
pub(super) struct Tally {
    expected: Expected,
    /// Copies received per index.
    copies: Vec<u32>,
    pub received: u64,
    pub distinct: u64,
    pub malformed: u64,
    pub unexpected: u64,
    pub corrupt: u64,
    /// CONNACKs without the session after the first connection.
    pub sessions_lost: u64,
}

impl Tally {
    fn new(expected: Expected) -> Self {
        Self {
            copies: vec![0; expected.count()],
            expected,
            received: 0,
            distinct: 0,
            malformed: 0,
            unexpected: 0,
            corrupt: 0,
            sessions_lost: 0,
        }
    }

    /// Counts one payload from the alert topic.
    fn record(&mut self, payload: &[u8]) {
        self.received += 1;
        let alert: Alert = match serde_json::from_slice(payload) {
            Ok(a) => a,
            Err(e) => {
                self.malformed += 1;
                warn!(message = "Payload is not an alert.", error = %e, bytes = payload.len());
                return;
            }
        };
        let Some(&index) = self.expected.index_of.get(&alert.id) else {
            self.unexpected += 1;
            warn!(message = "Alert id was never sent.", id = %alert.id);
            return;
        };
        // Compared whole against what the agent was told to send: a resend from a half-written
        // outbox record would arrive with the right id and the wrong bytes.
        let sent = make_alert(
            &self.expected.site,
            self.expected.base_ms,
            index,
            self.expected.snapshot_bytes,
        );
        if alert != sent {
            self.corrupt += 1;
            error!(message = "Alert differs from what was sent.", id = %alert.id, index);
        }
        // Indices come from the map built over 0..count, so they are in range.
        if let Some(n) = usize::try_from(index)
            .ok()
            .and_then(|i| self.copies.get_mut(i))
        {
            if *n == 0 {
                self.distinct += 1;
            }
            *n = n.saturating_add(1);
        }
    }

    /// Copies of expected ids beyond the first.
    pub(super) fn duplicated(&self) -> u64 {
        self.copies
            .iter()
            .map(|&n| u64::from(n.saturating_sub(1)))
            .sum()
    }

    /// Indices never received, in order.
    pub(super) fn missing(&self) -> Vec<u64> {
        (0u64..)
            .zip(&self.copies)
            .filter(|&(_, &n)| n == 0)
            .map(|(i, _)| i)
            .collect()
    }
}

/// The running subscriber task.
#[derive(Debug)]
pub(super) struct Subscriber {
    progress: watch::Receiver<Progress>,
    stop: watch::Sender<bool>,
    task: JoinHandle<Tally>,
}

impl Subscriber {
    /// Connects, subscribes and returns once the broker granted the subscription.
    pub(super) async fn start(port: u16, expected: Expected) -> Result<Self, ChaosError> {
        let mut options = MqttOptions::new(CLIENT_ID, "127.0.0.1", port);
        options
            .set_clean_session(false)
            .set_keep_alive(KEEP_ALIVE)
            .set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES);
        let (client, events) = AsyncClient::new(options, REQUEST_CAPACITY);
        let (progress_tx, mut progress) = watch::channel(Progress::default());
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(run(
            client,
            events,
            Tally::new(expected),
            progress_tx,
            stop_rx,
        ));
        let subscribed = timeout(SUBSCRIBE_TIMEOUT, async {
            progress.wait_for(|p| p.subscribed > 0).await.map(|_| ())
        })
        .await;
        match subscribed {
            Ok(Ok(_)) => Ok(Self {
                progress,
                stop,
                task,
            }),
            Ok(Err(_)) => Err(ChaosError::Subscriber("its task ended".into())),
            Err(_) => {
                task.abort();
                Err(ChaosError::Subscriber(format!(
                    "no SUBACK for {ALERT_TOPIC} within {SUBSCRIBE_TIMEOUT:?}"
                )))
            }
        }
    }

    /// What it has seen so far.
    pub(super) fn progress(&self) -> Progress {
        *self.progress.borrow()
    }

    /// Disconnects and returns the tally.
    pub(super) async fn stop(self) -> Tally {
        self.stop.send_replace(true);
        match self.task.await {
            Ok(tally) => tally,
            Err(e) => {
                // Only a panic in the loop gets here; the report then shows nothing received.
                error!(message = "Subscriber task failed.", error = %e);
                Tally::new(Expected {
                    site: String::new(),
                    base_ms: 0,
                    snapshot_bytes: 0,
                    index_of: HashMap::new(),
                })
            }
        }
    }
}

async fn run(
    client: AsyncClient,
    mut events: rumqttc::EventLoop,
    mut tally: Tally,
    progress_tx: watch::Sender<Progress>,
    mut stop: watch::Receiver<bool>,
) -> Tally {
    let mut progress = Progress::default();
    let mut connected = false;
    let mut connacks = 0u64;
    loop {
        let event = tokio::select! {
            biased;
            _ = stop.changed() => break,
            e = events.poll() => e,
        };
        match event {
            Ok(Event::Incoming(Incoming::ConnAck(ack))) => {
                connacks += 1;
                connected = true;
                if connacks > 1 && !ack.session_present {
                    tally.sessions_lost += 1;
                    warn!(
                        message = "Broker lost the subscriber's session; what it queued is gone."
                    );
                }
                info!(
                    message = "Subscriber connected.",
                    session_present = ack.session_present
                );
                // Again on every connection: harmless when the session was kept, and needed
                // when it was not.
                if let Err(e) = client.try_subscribe(ALERT_TOPIC, QoS::AtLeastOnce) {
                    error!(message = "Cannot queue SUBSCRIBE.", error = %e);
                }
            }
            Ok(Event::Incoming(Incoming::SubAck(ack))) => {
                if ack
                    .return_codes
                    .iter()
                    .all(|c| matches!(c, SubscribeReasonCode::Success(_)))
                {
                    progress.subscribed += 1;
                    progress_tx.send_replace(progress);
                } else {
                    error!(message = "Subscription refused.", codes = ?ack.return_codes);
                }
            }
            Ok(Event::Incoming(Incoming::Publish(p))) => {
                if p.topic == ALERT_TOPIC {
                    tally.record(&p.payload);
                    progress.received = tally.received;
                    progress.distinct = tally.distinct;
                    progress_tx.send_replace(progress);
                } else {
                    debug!(message = "Publish on another topic ignored.", topic = %p.topic);
                }
            }
            Ok(_) => {}
            Err(e) => {
                if connected {
                    info!(message = "Subscriber lost the broker; reconnecting.", error = %e);
                }
                connected = false;
                sleep(RECONNECT_DELAY).await;
            }
        }
    }
    if connected {
        // Tidy, not needed: the broker goes away next anyway.
        let _ = client.try_disconnect();
        let deadline = Instant::now() + Duration::from_millis(500);
        while Instant::now() < deadline {
            match timeout(Duration::from_millis(100), events.poll()).await {
                Ok(Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect))) | Ok(Err(_)) => break,
                _ => {}
            }
        }
    }
    tally
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::super::{BASE_MS, SITE};
    use super::*;

    fn payload(index: u64, bytes: usize) -> Vec<u8> {
        serde_json::to_vec(&make_alert(SITE, BASE_MS, index, bytes)).unwrap()
    }

    #[test]
    fn every_kind_of_payload_is_counted_where_it_belongs() {
        let mut t = Tally::new(Expected::new(SITE, BASE_MS, 5, 100));
        t.record(&payload(0, 100));
        t.record(&payload(2, 100));
        t.record(&payload(2, 100));
        t.record(&payload(2, 100));
        t.record(b"not json");
        t.record(&payload(9, 100)); // never sent
        t.record(&payload(3, 99)); // right id, wrong snapshot
        assert_eq!(t.received, 7);
        assert_eq!(t.distinct, 3);
        assert_eq!(t.duplicated(), 2);
        assert_eq!(t.malformed, 1);
        assert_eq!(t.unexpected, 1);
        assert_eq!(t.corrupt, 1);
        assert_eq!(t.missing(), vec![1, 4]);
        // received = distinct + duplicated + malformed + unexpected
        assert_eq!(
            t.received,
            t.distinct + t.duplicated() + t.malformed + t.unexpected
        );
    }
}
