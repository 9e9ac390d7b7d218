//! A minimal MQTT 5 broker that answers each QoS 1 PUBLISH with a PUBACK reason code the test
//! chooses: the one fault a real broker cannot inject on demand (mosquitto refuses by topic
//! ACL, never one alert among others on the same topic). Everything else the uplink depends
//! on is real: the TCP connection, rumqttc's MQTT 5 encoding and decoding, the outbox on sled.
//!
//! It speaks just enough MQTT 5 for a publishing client: CONNECT → CONNACK (success),
//! PUBLISH QoS 0/1 (recorded; QoS 1 answered with the chosen reason, and a reason string
//! property when it is a failure), SUBSCRIBE → SUBACK (QoS 1 granted), PINGREQ → PINGRESP,
//! DISCONNECT. No routing, no retained store, no sessions. Packets are bounded at 8 MiB.
//!
//! `FakeMqtt5::start()` listens on a free loopback port; `answer_with(f)` sets the PUBACK
//! reason code for each publish (`f(topic, payload)`; default 0x00 success);
//! `drop_connections()` closes every open connection (a connection loss, as the client sees
//! it); `publishes()` is everything received, with the connection's number and the answer.

use std::sync::{Arc, Mutex};

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::mqtt_wire::{self, packet, read_varint, varint};

/// Largest packet accepted (the agent's own cap is below this).
const MAX_PACKET: usize = 8 << 20;

/// Chooses the PUBACK reason code of a publish from its topic and payload.
pub type Answer = Box<dyn Fn(&str, &[u8]) -> u8 + Send + Sync>;

/// One PUBLISH as received.
#[derive(Debug, Clone)]
pub struct Received {
    /// Which connection (1 for the first accepted) it came on.
    pub conn: u64,
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
    pub qos: u8,
    /// The PUBACK reason code it was answered with (QoS 1 only; 0 otherwise).
    pub reason: u8,
}

#[derive(Default)]
struct Shared {
    answer: Option<Answer>,
    received: Vec<Received>,
    connections: u64,
}

/// The running fake broker; stops (and closes its connections) when dropped.
pub struct FakeMqtt5 {
    port: u16,
    shared: Arc<Mutex<Shared>>,
    kick: watch::Sender<u64>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for FakeMqtt5 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeMqtt5")
            .field("port", &self.port)
            .finish()
    }
}

impl Drop for FakeMqtt5 {
    fn drop(&mut self) {
        self.task.abort();
        self.kick.send_modify(|g| *g += 1);
    }
}

impl FakeMqtt5 {
    /// Listens on a free loopback port and serves until dropped.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Mutex::new(Shared::default()));
        let (kick, _) = watch::channel(0u64);
        let task = {
            let (shared, kick) = (shared.clone(), kick.clone());
            tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let conn = {
                        let mut s = shared.lock().unwrap();
                        s.connections += 1;
                        s.connections
                    };
                    let (shared, mut kicked) = (shared.clone(), kick.subscribe());
                    tokio::spawn(async move {
                        tokio::select! {
                            _ = serve(stream, conn, &shared) => {}
                            _ = kicked.changed() => {}
                        }
                    });
                }
            })
        };
        Self {
            port,
            shared,
            kick,
            task,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// From now on, answer each QoS 1 publish with `f(topic, payload)` as its reason code.
    pub fn answer_with(&self, f: impl Fn(&str, &[u8]) -> u8 + Send + Sync + 'static) {
        self.shared.lock().unwrap().answer = Some(Box::new(f));
    }

    /// Closes every open connection (without DISCONNECT: a lost connection).
    pub fn drop_connections(&self) {
        self.kick.send_modify(|g| *g += 1);
    }

    /// Every publish received so far, in order.
    pub fn publishes(&self) -> Vec<Received> {
        self.shared.lock().unwrap().received.clone()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.lock().unwrap().connections
    }
}

/// Serves one connection until it closes or breaks the protocol.
async fn serve(mut stream: TcpStream, conn: u64, shared: &Mutex<Shared>) -> Option<()> {
    loop {
        let (first, body) = mqtt_wire::read_packet(&mut stream, MAX_PACKET).await?;
        let reply = match first >> 4 {
            // CONNECT: MQTT 5 only (protocol level 5 after the "MQTT" name).
            1 => {
                if body.get(6) != Some(&5) {
                    return None;
                }
                vec![0x20, 0x03, 0x00, 0x00, 0x00]
            }
            3 => on_publish(first, &body, conn, shared)?,
            // SUBSCRIBE: packet id, properties, then (filter, options) pairs.
            8 => {
                let pkid = body.get(0..2)?;
                let (props, n) = read_varint(body.get(2..)?)?;
                let mut rest = body.get(2 + n + props..)?;
                let mut grants = Vec::new();
                while !rest.is_empty() {
                    let len = usize::from(u16::from_be_bytes([*rest.first()?, *rest.get(1)?]));
                    rest = rest.get(2 + len + 1..)?;
                    grants.push(0x01);
                }
                let mut v = pkid.to_vec();
                v.push(0x00);
                v.extend_from_slice(&grants);
                packet(0x90, &v)
            }
            12 => vec![0xD0, 0x00],
            14 => return Some(()),
            _ => continue,
        };
        if reply.is_empty() {
            continue;
        }
        stream.write_all(&reply).await.ok()?;
    }
}

/// Records a PUBLISH; the PUBACK to send (empty for QoS 0).
fn on_publish(first: u8, body: &[u8], conn: u64, shared: &Mutex<Shared>) -> Option<Vec<u8>> {
    let qos = (first >> 1) & 0x03;
    let retain = first & 0x01 == 1;
    let len = usize::from(u16::from_be_bytes([*body.first()?, *body.get(1)?]));
    let topic = String::from_utf8(body.get(2..2 + len)?.to_vec()).ok()?;
    let mut at = 2 + len;
    let pkid = if qos > 0 {
        let p = body.get(at..at + 2)?.to_vec();
        at += 2;
        Some(p)
    } else {
        None
    };
    let (props, n) = read_varint(body.get(at..)?)?;
    let payload = body.get(at + n + props..)?.to_vec();
    let mut s = shared.lock().unwrap();
    let reason = match (&pkid, &s.answer) {
        (Some(_), Some(f)) => f(&topic, &payload),
        _ => 0,
    };
    s.received.push(Received {
        conn,
        topic,
        payload,
        retain,
        qos,
        reason,
    });
    let Some(pkid) = pkid else {
        return Some(Vec::new());
    };
    let mut v = pkid;
    if reason != 0 {
        // Reason code, then a reason string property (0x1F).
        let text = format!("fake broker: reason 0x{reason:02x}");
        v.push(reason);
        let mut props = vec![0x1F];
        props.extend_from_slice(&(text.len() as u16).to_be_bytes());
        props.extend_from_slice(text.as_bytes());
        v.extend_from_slice(&varint(props.len()));
        v.extend_from_slice(&props);
    }
    Some(packet(0x40, &v))
}
