//! [`Connection`]: one MQTT connection to the broker, MQTT 5 or 3.1.1 behind one interface.
//!
//! rumqttc has two separate client stacks (`rumqttc` for 3.1.1, `rumqttc::v5`); the uplink
//! needs only a few things from either, so this module maps both onto [`Ev`].
//!
//! Each connection is used once: when it fails, the uplink drops it and makes a new one. A
//! fresh client has no state from the last session, so rumqttc never replays publishes on its
//! own; the outbox is the only source of what is resent, and the packet-id → outbox-entry map
//! of a connection is exact from its first publish.
//!
//! rumqttc's event loop runs in a task of its own that forwards its events over a channel.
//! `EventLoop::poll` is not cancel-safe while it connects (the half-made connection lives in
//! the dropped future), and the uplink waits for events in a `select!` with its input, timers
//! and command results: polling rumqttc there directly dropped a connection after CONNECT was
//! sent whenever another branch won (the first `expire` tick always does), so the broker
//! published the `offline` last will at a normal start, and alerts arriving faster than a
//! (TLS) handshake could keep the uplink from ever connecting. A channel receive is
//! cancel-safe. Dropping the [`Connection`] stops the task and closes the socket.

use std::sync::Arc;
use std::time::Duration;

use rumqttc::v5::mqttbytes::v5::{
    ConnectReturnCode as ConnectReturnCode5, Packet as Packet5, PubAckReason,
};
use rumqttc::{Outgoing, QoS, Transport};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::UplinkError;
use super::config::{MqttVersion, UplinkConfig};

/// Room in the request channel beyond the in-flight window: status, replies, subscriptions.
const EXTRA_REQUESTS: usize = 16;

/// What the uplink needs to know about a connection.
#[derive(Debug)]
pub enum Ev {
    /// The broker accepted the connection.
    Connected,
    /// The broker refused the connection (bad login, not authorised, ...).
    Refused(String),
    /// A publish left with this packet id (in the order the publishes were requested).
    Sent(u16),
    /// The broker acknowledged packet id; `Err` carries an MQTT 5 failure reason.
    Acked(u16, Result<(), Refusal>),
    /// A message on a subscribed topic.
    Message {
        topic: String,
        payload: Vec<u8>,
        retained: bool,
    },
    /// Anything else (pings, suback, ...).
    Other,
}

/// An MQTT 5 PUBACK failure: the reason code and the broker's reason string (or the code's
/// name when it sent none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: u8,
    pub text: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "0x{:02x} {}", self.code, self.text)
    }
}

/// The wire code of a PUBACK reason (MQTT 5.0, 3.4.2.1).
fn puback_code(r: &PubAckReason) -> u8 {
    match r {
        PubAckReason::Success => 0x00,
        PubAckReason::NoMatchingSubscribers => 0x10,
        PubAckReason::UnspecifiedError => 0x80,
        PubAckReason::ImplementationSpecificError => 0x83,
        PubAckReason::NotAuthorized => 0x87,
        PubAckReason::TopicNameInvalid => 0x90,
        PubAckReason::PacketIdentifierInUse => 0x91,
        PubAckReason::QuotaExceeded => 0x97,
        PubAckReason::PayloadFormatInvalid => 0x99,
    }
}

/// The last will: set before connecting, published by the broker if the connection dies.
#[derive(Debug, Clone)]
pub struct Will {
    pub topic: String,
    pub payload: Vec<u8>,
}

/// One connection attempt's client, and the events of its event loop (driven by a task).
pub struct Connection {
    client: Client,
    events: mpsc::Receiver<Result<Ev, UplinkError>>,
    driver: JoinHandle<()>,
}

/// The request side of either client stack.
enum Client {
    V311(rumqttc::AsyncClient),
    V5(rumqttc::v5::AsyncClient),
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.client {
            Client::V311(..) => "Connection::V311",
            Client::V5(..) => "Connection::V5",
        })
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // The event loop (and its socket) goes with the connection.
        self.driver.abort();
    }
}

impl Connection {
    /// A client for `config`, connecting in a task of its own (spawned here: call within the
    /// runtime). [`Connection::poll`] reports `Connected` or the failure.
    pub fn new(
        config: &UplinkConfig,
        client_id: &str,
        will: Will,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Self {
        let transport = match tls {
            Some(c) => Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(c)),
            None => Transport::tcp(),
        };
        let cap = usize::from(config.inflight) + EXTRA_REQUESTS;
        // Each publish makes two events (sent, acked); the task waits when the uplink lags.
        let (tx, events) = mpsc::channel(2 * cap);
        let keep_alive = Duration::from_secs(config.keep_alive_s);
        let max_packet = protocol::limits::MAX_PACKET_BYTES;
        match config.mqtt_version {
            MqttVersion::V311 => {
                let mut o = rumqttc::MqttOptions::new(client_id, &config.host, config.port);
                o.set_keep_alive(keep_alive)
                    .set_clean_session(true)
                    .set_max_packet_size(max_packet, max_packet)
                    .set_inflight(config.inflight)
                    .set_request_channel_capacity(cap)
                    .set_transport(transport)
                    .set_last_will(rumqttc::LastWill::new(
                        will.topic,
                        will.payload,
                        QoS::AtLeastOnce,
                        true,
                    ));
                if let Some(user) = &config.username {
                    let pass = config.password.as_ref().map(|p| p.expose()).unwrap_or("");
                    o.set_credentials(user, pass);
                }
                let (c, mut e) = rumqttc::AsyncClient::new(o, cap);
                let driver = tokio::spawn(async move {
                    loop {
                        let ev = e.poll().await.map(map_v311).map_err(lost);
                        if forward(&tx, ev).await.is_err() {
                            return;
                        }
                    }
                });
                Self {
                    client: Client::V311(c),
                    events,
                    driver,
                }
            }
            MqttVersion::V5 => {
                let mut o = rumqttc::v5::MqttOptions::new(client_id, &config.host, config.port);
                o.set_keep_alive(keep_alive)
                    .set_clean_start(true)
                    .set_max_packet_size(Some(max_packet as u32))
                    .set_outgoing_inflight_upper_limit(config.inflight)
                    .set_request_channel_capacity(cap)
                    .set_transport(transport)
                    .set_last_will(rumqttc::v5::mqttbytes::v5::LastWill::new(
                        will.topic,
                        will.payload,
                        rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
                        true,
                        None,
                    ));
                if let Some(user) = &config.username {
                    let pass = config.password.as_ref().map(|p| p.expose()).unwrap_or("");
                    o.set_credentials(user, pass);
                }
                let (c, mut e) = rumqttc::v5::AsyncClient::new(o, cap);
                let driver = tokio::spawn(async move {
                    loop {
                        let ev = e.poll().await.map(map_v5).map_err(lost);
                        if forward(&tx, ev).await.is_err() {
                            return;
                        }
                    }
                });
                Self {
                    client: Client::V5(c),
                    events,
                    driver,
                }
            }
        }
    }

    /// Queues a QoS 1 publish without waiting; `false` when the request channel is full.
    pub fn try_publish(&self, topic: &str, payload: Vec<u8>, retain: bool) -> bool {
        match &self.client {
            Client::V311(c) => c
                .try_publish(topic, QoS::AtLeastOnce, retain, payload)
                .is_ok(),
            Client::V5(c) => c
                .try_publish(
                    topic,
                    rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
                    retain,
                    payload,
                )
                .is_ok(),
        }
    }

    /// Queues a QoS 1 subscription.
    pub fn try_subscribe(&self, filter: &str) -> bool {
        match &self.client {
            Client::V311(c) => c.try_subscribe(filter, QoS::AtLeastOnce).is_ok(),
            Client::V5(c) => c
                .try_subscribe(filter, rumqttc::v5::mqttbytes::QoS::AtLeastOnce)
                .is_ok(),
        }
    }

    /// Asks for a clean DISCONNECT (the broker then does not publish the last will).
    pub fn try_disconnect(&self) {
        // A full channel means the connection is busy or gone; the caller drops it either way.
        let _ = match &self.client {
            Client::V311(c) => c.try_disconnect().map_err(|_| ()),
            Client::V5(c) => c.try_disconnect().map_err(|_| ()),
        };
    }

    /// The next event; an error means the connection is gone (drop it and reconnect).
    /// Cancel-safe: an event not yet received stays for the next call.
    pub async fn poll(&mut self) -> Result<Ev, UplinkError> {
        match self.events.recv().await {
            Some(ev) => ev,
            None => Err(UplinkError::Connection {
                detail: "event loop stopped".into(),
            }),
        }
    }
}

/// Hands an event to the uplink; `Err` when the driver should stop (the connection failed, or
/// the uplink dropped it).
async fn forward(
    tx: &mpsc::Sender<Result<Ev, UplinkError>>,
    ev: Result<Ev, UplinkError>,
) -> Result<(), ()> {
    let failed = ev.is_err();
    tx.send(ev).await.map_err(drop)?;
    if failed { Err(()) } else { Ok(()) }
}

fn lost(e: impl std::fmt::Display) -> UplinkError {
    UplinkError::Connection {
        detail: e.to_string(),
    }
}

fn map_v311(ev: rumqttc::Event) -> Ev {
    match ev {
        rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(a)) => {
            if a.code == rumqttc::ConnectReturnCode::Success {
                Ev::Connected
            } else {
                Ev::Refused(format!("{:?}", a.code))
            }
        }
        rumqttc::Event::Incoming(rumqttc::Packet::PubAck(a)) => Ev::Acked(a.pkid, Ok(())),
        rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)) => Ev::Message {
            topic: p.topic,
            payload: p.payload.to_vec(),
            retained: p.retain,
        },
        rumqttc::Event::Outgoing(Outgoing::Publish(pkid)) => Ev::Sent(pkid),
        _ => Ev::Other,
    }
}

fn map_v5(ev: rumqttc::v5::Event) -> Ev {
    match ev {
        rumqttc::v5::Event::Incoming(Packet5::ConnAck(a)) => {
            if a.code == ConnectReturnCode5::Success {
                Ev::Connected
            } else {
                Ev::Refused(format!("{:?}", a.code))
            }
        }
        rumqttc::v5::Event::Incoming(Packet5::PubAck(a)) => {
            // "No matching subscribers" is still the broker taking the message.
            let result = match a.reason {
                PubAckReason::Success | PubAckReason::NoMatchingSubscribers => Ok(()),
                other => Err(Refusal {
                    code: puback_code(&other),
                    text: a
                        .properties
                        .and_then(|p| p.reason_string)
                        .unwrap_or_else(|| format!("{other:?}")),
                }),
            };
            Ev::Acked(a.pkid, result)
        }
        rumqttc::v5::Event::Incoming(Packet5::Publish(p)) => Ev::Message {
            topic: String::from_utf8_lossy(&p.topic).into_owned(),
            payload: p.payload.to_vec(),
            retained: p.retain,
        },
        rumqttc::v5::Event::Outgoing(Outgoing::Publish(pkid)) => Ev::Sent(pkid),
        _ => Ev::Other,
    }
}

/// The rustls client config for `tls` (ring provider, the CA file's roots, optional client
/// certificate).
pub fn tls_config(
    tls: &super::config::TlsConfig,
) -> Result<Arc<rustls::ClientConfig>, UplinkError> {
    use infra::tls::PemFile;
    let identity = match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => Some((
            PemFile::new("tls.cert_file", cert),
            PemFile::new("tls.key_file", key),
        )),
        _ => None,
    };
    Ok(infra::tls::client_config(
        PemFile::new("tls.ca_file", &tls.ca_file),
        identity,
    )?)
}
