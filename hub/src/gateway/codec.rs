//! Strict decoding of every packet an MQTT 3.1.1 or 5 client may send, and the encoding of
//! what the gateway forwards to the embedded broker.
//!
//! Why the gateway re-encodes instead of forwarding the client's bytes: the gateway decides
//! (who is connecting, which topic, which will) on its reading of a packet, and the broker
//! acts on its own. Two parsers disagree somewhere (a property block read by its declared
//! length here and by its contents there, a length prefix that wraps), and each disagreement is
//! a way past the checks. So the broker only ever receives packets this module wrote from the
//! fields the gateway checked, with an allowlist of properties: what the gateway did not
//! decide on does not reach the broker at all.
//!
//! Strict means: what MQTT 3.1.1 or 5.0 calls malformed or a protocol error is refused, naming
//! the packet, the field and the byte: reserved flag bits set, QoS 3, a Variable Byte Integer
//! not in its shortest form, a property the packet may not carry or carried twice, a property
//! block overrunning its declared length, strings that are not UTF-8 or contain U+0000, topic
//! names with wildcards, malformed topic filters, and trailing bytes after the last field.
//! Beyond the specification the gateway asks client ids of at most 128 bytes of
//! `[A-Za-z0-9_.-]`, refuses topic aliases (a topic it cannot see is a topic it cannot check)
//! and enhanced authentication (it authenticates with the CONNECT's username and password),
//! and passwords that are not UTF-8 text (tokens are text).

use bytes::{BufMut, Bytes, BytesMut};

use super::frame::Frame;

/// Longest client id the gateway accepts; the namespaced id forwarded upstream stays far below
/// the u16 length prefix.
pub const MAX_CLIENT_ID: usize = 128;

/// MQTT protocol level: 4 = 3.1.1, 5 = 5.0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V311,
    V5,
}

/// Why a packet is refused. Each names the packet, and where it can, the field and the byte
/// offset inside the packet's body (after the fixed header).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("{packet}: truncated at byte {at} reading {field}")]
    Truncated {
        packet: &'static str,
        field: &'static str,
        at: usize,
    },
    #[error("{packet}: {field} at byte {at} is not valid UTF-8 or contains U+0000")]
    BadString {
        packet: &'static str,
        field: &'static str,
        at: usize,
    },
    #[error("{packet}: {extra} unexpected bytes after the last field, at byte {at}")]
    Trailing {
        packet: &'static str,
        at: usize,
        extra: usize,
    },
    #[error("{packet}: {field} at byte {at}: {why}")]
    Malformed {
        packet: &'static str,
        field: &'static str,
        at: usize,
        why: &'static str,
    },
    #[error("{packet}: fixed header flags {flags:#06b} are reserved")]
    BadFlags { packet: &'static str, flags: u8 },
    #[error("{packet}: property {id:#04x} at byte {at} is not allowed in this packet")]
    PropertyNotAllowed {
        packet: &'static str,
        id: u8,
        at: usize,
    },
    #[error("{packet}: property {id:#04x} at byte {at} appears twice")]
    PropertyTwice {
        packet: &'static str,
        id: u8,
        at: usize,
    },
    #[error("{packet}: property {id:#04x} at byte {at} has an invalid value")]
    PropertyValue {
        packet: &'static str,
        id: u8,
        at: usize,
    },
    #[error("CONNECT: protocol {name:?} level {level} is not MQTT 3.1.1 (4) or 5")]
    UnsupportedProtocol { name: String, level: u8 },
    #[error(
        "CONNECT: client id of {len} bytes is not 1 to {MAX_CLIENT_ID} bytes of [A-Za-z0-9_.-]"
    )]
    ClientId { len: usize },
    #[error("{packet}: topic {topic:?}: {why}")]
    Topic {
        packet: &'static str,
        topic: String,
        why: &'static str,
    },
    #[error("PUBLISH: topic aliases are not accepted")]
    TopicAlias,
    #[error("CONNECT: enhanced authentication ({method:?}) is not supported")]
    AuthMethod { method: String },
    #[error("packet type {0} is not sent by clients")]
    NotFromClient(u8),
    #[error("the first packet is type {0}, not CONNECT")]
    NotConnect(u8),
    #[error("a second CONNECT on one connection")]
    SecondConnect,
}

impl CodecError {
    /// The MQTT 5 reason code a CONNACK or DISCONNECT carries for this refusal.
    pub fn reason_code(&self) -> u8 {
        match self {
            Self::UnsupportedProtocol { .. } => 0x84,
            Self::ClientId { .. } => 0x85,
            Self::AuthMethod { .. } => 0x8C,
            Self::Topic { packet, .. } if *packet == "SUBSCRIBE" || *packet == "UNSUBSCRIBE" => {
                0x8F
            }
            Self::Topic { .. } => 0x90,
            Self::TopicAlias => 0x94,
            Self::NotFromClient(_) | Self::SecondConnect | Self::NotConnect(_) => 0x82,
            _ => 0x81,
        }
    }
}

/// MQTT 5 properties the gateway reads. Only the ones marked "kept" are ever forwarded; the
/// others are decoded (so their syntax is checked) and then dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Properties {
    /// 0x01, kept on PUBLISH and will.
    pub payload_format: Option<u8>,
    /// 0x02, kept on PUBLISH and will.
    pub message_expiry: Option<u32>,
    /// 0x11, kept on CONNECT.
    pub session_expiry: Option<u32>,
    /// 0x18, kept on will.
    pub will_delay: Option<u32>,
    /// 0x21, kept on CONNECT.
    pub receive_maximum: Option<u16>,
    /// 0x22, kept on CONNECT.
    pub topic_alias_maximum: Option<u16>,
    /// 0x27, kept on CONNECT.
    pub maximum_packet_size: Option<u32>,
    /// 0x17, kept on CONNECT.
    pub request_problem_info: Option<u8>,
    /// 0x23: refused on PUBLISH.
    pub topic_alias: Option<u16>,
    /// 0x15: refused on CONNECT.
    pub auth_method: Option<String>,
    /// Dropped: 0x03 content type, 0x08 response topic, 0x09 correlation data, 0x0B
    /// subscription id, 0x16 auth data, 0x19 request response info, 0x1C server reference,
    /// 0x1F reason string, 0x26 user properties. Counted so tests can see they were read.
    pub dropped: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    pub topic: String,
    pub payload: Bytes,
    pub qos: u8,
    pub retain: bool,
    pub properties: Properties,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    pub version: Version,
    pub clean_start: bool,
    pub keep_alive: u16,
    pub properties: Properties,
    pub client_id: String,
    pub will: Option<Will>,
    pub username: Option<String>,
    pub password: Option<Bytes>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    pub dup: bool,
    pub qos: u8,
    pub retain: bool,
    pub topic: String,
    pub pkid: Option<u16>,
    pub properties: Properties,
    pub payload: Bytes,
}

/// PUBACK, PUBREC, PUBREL and PUBCOMP: a packet id and (MQTT 5) a reason code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    pub pkid: u16,
    pub reason: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriptionOptions {
    pub qos: u8,
    pub no_local: bool,
    pub retain_as_published: bool,
    pub retain_handling: u8,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    pub pkid: u16,
    pub filters: Vec<(String, SubscriptionOptions)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    pub pkid: u16,
    pub filters: Vec<String>,
}

/// Every packet a client may send (AUTH excepted: enhanced authentication is refused).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    Connect(Box<Connect>),
    Publish(Publish),
    PubAck(Ack),
    PubRec(Ack),
    PubRel(Ack),
    PubComp(Ack),
    Subscribe(Subscribe),
    Unsubscribe(Unsubscribe),
    PingReq,
    /// The reason code (0 under 3.1.1).
    Disconnect(u8),
}

const CONNECT: u8 = 1;
const PUBLISH: u8 = 3;
const PUBACK: u8 = 4;
const PUBREC: u8 = 5;
const PUBREL: u8 = 6;
const PUBCOMP: u8 = 7;
const SUBSCRIBE: u8 = 8;
const UNSUBSCRIBE: u8 = 10;
const PINGREQ: u8 = 12;
const DISCONNECT: u8 = 14;

/// Decodes the first packet of a connection, which must be a CONNECT.
pub fn decode_connect(frame: &Frame) -> Result<Connect, CodecError> {
    match frame.kind() {
        CONNECT if frame.first & 0x0f == 0 => decode_connect_body(frame.body()),
        CONNECT => Err(CodecError::BadFlags {
            packet: "CONNECT",
            flags: frame.first & 0x0f,
        }),
        other => Err(CodecError::NotConnect(other)),
    }
}

/// Decodes one whole client packet. `version` is the connection's (from its CONNECT); a
/// CONNECT is decoded by its own protocol level.
pub fn decode(frame: &Frame, version: Version) -> Result<Packet, CodecError> {
    let kind = frame.kind();
    let flags = frame.first & 0x0f;
    let body = frame.body();
    let expect_flags = |packet: &'static str, want: u8| {
        if flags == want {
            Ok(())
        } else {
            Err(CodecError::BadFlags { packet, flags })
        }
    };
    match kind {
        CONNECT => {
            expect_flags("CONNECT", 0)?;
            decode_connect_body(body).map(|c| Packet::Connect(Box::new(c)))
        }
        PUBLISH => {
            decode_publish(flags, body, &frame.bytes, frame.body_at, version).map(Packet::Publish)
        }
        PUBACK => {
            expect_flags("PUBACK", 0)?;
            decode_ack("PUBACK", body, version, PUBACK_REASONS).map(Packet::PubAck)
        }
        PUBREC => {
            expect_flags("PUBREC", 0)?;
            decode_ack("PUBREC", body, version, PUBACK_REASONS).map(Packet::PubRec)
        }
        PUBREL => {
            expect_flags("PUBREL", 0b0010)?;
            decode_ack("PUBREL", body, version, PUBREL_REASONS).map(Packet::PubRel)
        }
        PUBCOMP => {
            expect_flags("PUBCOMP", 0)?;
            decode_ack("PUBCOMP", body, version, PUBREL_REASONS).map(Packet::PubComp)
        }
        SUBSCRIBE => {
            expect_flags("SUBSCRIBE", 0b0010)?;
            decode_subscribe(body, version).map(Packet::Subscribe)
        }
        UNSUBSCRIBE => {
            expect_flags("UNSUBSCRIBE", 0b0010)?;
            decode_unsubscribe(body, version).map(Packet::Unsubscribe)
        }
        PINGREQ => {
            expect_flags("PINGREQ", 0)?;
            Reader::new("PINGREQ", body).end()?;
            Ok(Packet::PingReq)
        }
        DISCONNECT => {
            expect_flags("DISCONNECT", 0)?;
            decode_disconnect(body, version).map(Packet::Disconnect)
        }
        other => Err(CodecError::NotFromClient(other)),
    }
}

const PUBACK_REASONS: &[u8] = &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99];
const PUBREL_REASONS: &[u8] = &[0x00, 0x92];
const DISCONNECT_REASONS: &[u8] = &[
    0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x90, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99,
];

fn decode_connect_body(body: &[u8]) -> Result<Connect, CodecError> {
    const P: &str = "CONNECT";
    let mut r = Reader::new(P, body);
    let name = r.string("protocol name")?;
    let level = r.u8("protocol level")?;
    let version = match (name.as_str(), level) {
        ("MQTT", 4) => Version::V311,
        ("MQTT", 5) => Version::V5,
        _ => return Err(CodecError::UnsupportedProtocol { name, level }),
    };
    let flags_at = r.at;
    let flags = r.u8("connect flags")?;
    let bad = |why| CodecError::Malformed {
        packet: P,
        field: "connect flags",
        at: flags_at,
        why,
    };
    if flags & 0x01 != 0 {
        return Err(bad("the reserved bit is set"));
    }
    let has_will = flags & 0x04 != 0;
    let will_qos = (flags >> 3) & 0x03;
    let will_retain = flags & 0x20 != 0;
    let has_password = flags & 0x40 != 0;
    let has_username = flags & 0x80 != 0;
    if will_qos == 3 {
        return Err(bad("will QoS 3"));
    }
    if !has_will && (will_qos != 0 || will_retain) {
        return Err(bad("will QoS or retain without a will"));
    }
    if version == Version::V311 && has_password && !has_username {
        return Err(bad("a password without a username"));
    }
    let keep_alive = r.u16("keep alive")?;
    let properties = match version {
        Version::V5 => r.properties(CONNECT_PROPS)?,
        Version::V311 => Properties::default(),
    };
    if let Some(method) = &properties.auth_method {
        return Err(CodecError::AuthMethod {
            method: method.clone(),
        });
    }
    let client_id = r.string("client id")?;
    if client_id.is_empty()
        || client_id.len() > MAX_CLIENT_ID
        || !client_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
    {
        return Err(CodecError::ClientId {
            len: client_id.len(),
        });
    }
    let will = if has_will {
        let properties = match version {
            Version::V5 => r.properties(WILL_PROPS)?,
            Version::V311 => Properties::default(),
        };
        let topic = r.string("will topic")?;
        check_topic_name(P, &topic)?;
        let payload = Bytes::copy_from_slice(r.binary("will payload")?);
        Some(Will {
            topic,
            payload,
            qos: will_qos,
            retain: will_retain,
            properties,
        })
    } else {
        None
    };
    let username = if has_username {
        Some(r.string("username")?)
    } else {
        None
    };
    // MQTT calls the password binary data; the hub's tokens are text and rumqttd, which
    // checks them again, reads them as UTF-8, so anything else is refused here, clearly.
    let password = if has_password {
        Some(Bytes::from(r.string("password")?.into_bytes()))
    } else {
        None
    };
    r.end()?;
    Ok(Connect {
        version,
        clean_start: flags & 0x02 != 0,
        keep_alive,
        properties,
        client_id,
        will,
        username,
        password,
    })
}

fn decode_publish(
    flags: u8,
    body: &[u8],
    frame: &Bytes,
    body_at: usize,
    version: Version,
) -> Result<Publish, CodecError> {
    const P: &str = "PUBLISH";
    let qos = (flags >> 1) & 0x03;
    let dup = flags & 0x08 != 0;
    if qos == 3 {
        return Err(CodecError::BadFlags { packet: P, flags });
    }
    if qos == 0 && dup {
        // MQTT-3.3.1-2: DUP must be 0 for QoS 0.
        return Err(CodecError::BadFlags { packet: P, flags });
    }
    let mut r = Reader::new(P, body);
    let topic = r.string("topic")?;
    let pkid = if qos > 0 {
        let at = r.at;
        let id = r.u16("packet id")?;
        if id == 0 {
            return Err(CodecError::Malformed {
                packet: P,
                field: "packet id",
                at,
                why: "packet id 0",
            });
        }
        Some(id)
    } else {
        None
    };
    let properties = match version {
        Version::V5 => r.properties(PUBLISH_PROPS)?,
        Version::V311 => Properties::default(),
    };
    if properties.topic_alias.is_some() {
        return Err(CodecError::TopicAlias);
    }
    check_topic_name(P, &topic)?;
    // The payload shares the frame's buffer: alerts up to a megabyte are not copied.
    let payload = frame.slice(body_at + r.at..);
    Ok(Publish {
        dup,
        qos,
        retain: flags & 0x01 != 0,
        topic,
        pkid,
        properties,
        payload,
    })
}

fn decode_ack(
    packet: &'static str,
    body: &[u8],
    version: Version,
    reasons: &[u8],
) -> Result<Ack, CodecError> {
    let mut r = Reader::new(packet, body);
    let pkid = r.u16("packet id")?;
    let mut reason = 0;
    if version == Version::V5 && !r.rest().is_empty() {
        let at = r.at;
        reason = r.u8("reason code")?;
        if !reasons.contains(&reason) {
            return Err(CodecError::Malformed {
                packet,
                field: "reason code",
                at,
                why: "not a reason code of this packet",
            });
        }
        if !r.rest().is_empty() {
            r.properties(ACK_PROPS)?;
        }
    }
    r.end()?;
    Ok(Ack { pkid, reason })
}

fn decode_subscribe(body: &[u8], version: Version) -> Result<Subscribe, CodecError> {
    const P: &str = "SUBSCRIBE";
    let mut r = Reader::new(P, body);
    let pkid = r.u16("packet id")?;
    if version == Version::V5 {
        r.properties(SUBSCRIBE_PROPS)?;
    }
    let mut filters = Vec::new();
    while !r.rest().is_empty() {
        let filter = r.string("topic filter")?;
        let at = r.at;
        let o = r.u8("subscription options")?;
        let bad = |why| CodecError::Malformed {
            packet: P,
            field: "subscription options",
            at,
            why,
        };
        let options = match version {
            Version::V311 => {
                if o & 0xfc != 0 {
                    return Err(bad("reserved bits set"));
                }
                SubscriptionOptions {
                    qos: o,
                    no_local: false,
                    retain_as_published: false,
                    retain_handling: 0,
                }
            }
            Version::V5 => {
                if o & 0xc0 != 0 {
                    return Err(bad("reserved bits set"));
                }
                SubscriptionOptions {
                    qos: o & 0x03,
                    no_local: o & 0x04 != 0,
                    retain_as_published: o & 0x08 != 0,
                    retain_handling: (o >> 4) & 0x03,
                }
            }
        };
        if options.qos == 3 {
            return Err(bad("QoS 3"));
        }
        if options.retain_handling == 3 {
            return Err(bad("retain handling 3"));
        }
        check_topic_filter(P, &filter)?;
        if options.no_local && filter.starts_with("$share/") {
            return Err(bad("no local on a shared subscription"));
        }
        filters.push((filter, options));
    }
    if filters.is_empty() {
        return Err(CodecError::Malformed {
            packet: P,
            field: "topic filter",
            at: r.at,
            why: "no topic filter",
        });
    }
    Ok(Subscribe { pkid, filters })
}

fn decode_unsubscribe(body: &[u8], version: Version) -> Result<Unsubscribe, CodecError> {
    const P: &str = "UNSUBSCRIBE";
    let mut r = Reader::new(P, body);
    let pkid = r.u16("packet id")?;
    if version == Version::V5 {
        r.properties(UNSUBSCRIBE_PROPS)?;
    }
    let mut filters = Vec::new();
    while !r.rest().is_empty() {
        let filter = r.string("topic filter")?;
        check_topic_filter(P, &filter)?;
        filters.push(filter);
    }
    if filters.is_empty() {
        return Err(CodecError::Malformed {
            packet: P,
            field: "topic filter",
            at: r.at,
            why: "no topic filter",
        });
    }
    Ok(Unsubscribe { pkid, filters })
}

fn decode_disconnect(body: &[u8], version: Version) -> Result<u8, CodecError> {
    const P: &str = "DISCONNECT";
    let mut r = Reader::new(P, body);
    let mut reason = 0;
    if version == Version::V5 && !r.rest().is_empty() {
        let at = r.at;
        reason = r.u8("reason code")?;
        if !DISCONNECT_REASONS.contains(&reason) {
            return Err(CodecError::Malformed {
                packet: P,
                field: "reason code",
                at,
                why: "not a reason code a client may send",
            });
        }
        if !r.rest().is_empty() {
            r.properties(DISCONNECT_PROPS)?;
        }
    }
    r.end()?;
    Ok(reason)
}

/// A topic name (PUBLISH, will): 1 to 65,535 bytes, no wildcards.
pub fn check_topic_name(packet: &'static str, topic: &str) -> Result<(), CodecError> {
    let why = if topic.is_empty() {
        Some("empty")
    } else if topic.contains(['+', '#']) {
        Some("wildcards in a topic name")
    } else {
        None
    };
    match why {
        Some(why) => Err(CodecError::Topic {
            packet,
            topic: topic.to_owned(),
            why,
        }),
        None => Ok(()),
    }
}

/// A topic filter: not empty; `#` only as the whole last level; `+` only as a whole level;
/// a shared subscription `$share/{group}/{filter}` with a group free of wildcards and a filter.
pub fn check_topic_filter(packet: &'static str, filter: &str) -> Result<(), CodecError> {
    let err = |why| {
        Err(CodecError::Topic {
            packet,
            topic: filter.to_owned(),
            why,
        })
    };
    if filter.is_empty() {
        return err("empty");
    }
    let mut rest = filter;
    if let Some(shared) = filter.strip_prefix("$share/") {
        let Some((group, f)) = shared.split_once('/') else {
            return err("a shared subscription without a filter");
        };
        if group.is_empty() || group.contains(['+', '#']) {
            return err("a shared subscription's group is empty or has wildcards");
        }
        if f.is_empty() {
            return err("a shared subscription without a filter");
        }
        rest = f;
    }
    let levels: Vec<&str> = rest.split('/').collect();
    for (i, level) in levels.iter().enumerate() {
        if level.contains('#') && (*level != "#" || i + 1 != levels.len()) {
            return err("'#' is not the whole last level");
        }
        if level.contains('+') && *level != "+" {
            return err("'+' is not a whole level");
        }
    }
    Ok(())
}

// Which properties each packet may carry (MQTT 5.0 §2.2.2.2).
const CONNECT_PROPS: &[u8] = &[0x11, 0x21, 0x27, 0x22, 0x19, 0x17, 0x26, 0x15, 0x16];
const WILL_PROPS: &[u8] = &[0x18, 0x01, 0x02, 0x03, 0x08, 0x09, 0x26];
// 0x0B (subscription identifier) is server-to-client only on PUBLISH: a protocol error here.
const PUBLISH_PROPS: &[u8] = &[0x01, 0x02, 0x23, 0x08, 0x09, 0x26, 0x03];
const ACK_PROPS: &[u8] = &[0x1F, 0x26];
const SUBSCRIBE_PROPS: &[u8] = &[0x0B, 0x26];
const UNSUBSCRIBE_PROPS: &[u8] = &[0x26];
const DISCONNECT_PROPS: &[u8] = &[0x11, 0x1F, 0x26, 0x1C];

/// A cursor over a packet body that reports where it failed.
struct Reader<'a> {
    packet: &'static str,
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn new(packet: &'static str, buf: &'a [u8]) -> Self {
        Self { packet, buf, at: 0 }
    }

    fn truncated(&self, field: &'static str) -> CodecError {
        CodecError::Truncated {
            packet: self.packet,
            field,
            at: self.at,
        }
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, CodecError> {
        let b = *self.buf.get(self.at).ok_or_else(|| self.truncated(field))?;
        self.at += 1;
        Ok(b)
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, CodecError> {
        let b = self.take(2, field)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, CodecError> {
        let b = self.take(4, field)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], CodecError> {
        let end = self
            .at
            .checked_add(n)
            .ok_or_else(|| self.truncated(field))?;
        let s = self
            .buf
            .get(self.at..end)
            .ok_or_else(|| self.truncated(field))?;
        self.at = end;
        Ok(s)
    }

    fn binary(&mut self, field: &'static str) -> Result<&'a [u8], CodecError> {
        let n = self.u16(field)?;
        self.take(usize::from(n), field)
    }

    /// A UTF-8 string as MQTT defines it: valid UTF-8 without U+0000 (MQTT-1.5.4-1, -2).
    fn string(&mut self, field: &'static str) -> Result<String, CodecError> {
        let start = self.at;
        let b = self.binary(field)?;
        match std::str::from_utf8(b) {
            Ok(s) if !s.contains('\0') => Ok(s.to_owned()),
            _ => Err(CodecError::BadString {
                packet: self.packet,
                field,
                at: start,
            }),
        }
    }

    /// A Variable Byte Integer in its shortest form (MQTT 5 §1.5.5).
    fn varint(&mut self, field: &'static str) -> Result<usize, CodecError> {
        let start = self.at;
        let mut v = 0usize;
        for i in 0..4 {
            let b = self.u8(field)?;
            v |= usize::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                if i > 0 && b == 0 {
                    return Err(CodecError::Malformed {
                        packet: self.packet,
                        field,
                        at: start,
                        why: "variable byte integer not in its shortest form",
                    });
                }
                return Ok(v);
            }
        }
        Err(CodecError::Malformed {
            packet: self.packet,
            field,
            at: start,
            why: "variable byte integer longer than 4 bytes",
        })
    }

    /// Reads an MQTT 5 property block, checking each property against `allowed`, its value and
    /// that it stays inside the block's declared length.
    fn properties(&mut self, allowed: &[u8]) -> Result<Properties, CodecError> {
        let len = self.varint("property length")?;
        let start = self.at;
        let block = self.take(len, "properties")?;
        let mut r = Reader {
            packet: self.packet,
            buf: block,
            at: 0,
        };
        let mut p = Properties::default();
        let mut seen = [false; 64];
        while !r.rest().is_empty() {
            let at = start + r.at;
            let id_len_at = r.at;
            let id = r.varint("property id")?;
            let id = u8::try_from(id)
                .ok()
                .filter(|id| allowed.contains(id))
                .ok_or(CodecError::PropertyNotAllowed {
                    packet: self.packet,
                    id: id.min(255) as u8,
                    at,
                })?;
            if r.at - id_len_at != 1 {
                return Err(CodecError::PropertyNotAllowed {
                    packet: self.packet,
                    id,
                    at,
                });
            }
            if id != 0x26 {
                let slot = &mut seen[usize::from(id & 0x3f)];
                if *slot {
                    return Err(CodecError::PropertyTwice {
                        packet: self.packet,
                        id,
                        at,
                    });
                }
                *slot = true;
            }
            let bad = CodecError::PropertyValue {
                packet: self.packet,
                id,
                at,
            };
            // Offsets inside the block are reported relative to the packet body.
            let mut read = || -> Result<(), CodecError> {
                match id {
                    0x01 => p.payload_format = Some(bool_byte(r.u8("payload format")?, &bad)?),
                    0x02 => p.message_expiry = Some(r.u32("message expiry")?),
                    0x11 => p.session_expiry = Some(r.u32("session expiry")?),
                    0x18 => p.will_delay = Some(r.u32("will delay")?),
                    0x21 => {
                        let v = r.u16("receive maximum")?;
                        if v == 0 {
                            return Err(bad.clone());
                        }
                        p.receive_maximum = Some(v);
                    }
                    0x22 => p.topic_alias_maximum = Some(r.u16("topic alias maximum")?),
                    0x23 => {
                        let v = r.u16("topic alias")?;
                        if v == 0 {
                            return Err(bad.clone());
                        }
                        p.topic_alias = Some(v);
                    }
                    0x27 => {
                        let v = r.u32("maximum packet size")?;
                        if v == 0 {
                            return Err(bad.clone());
                        }
                        p.maximum_packet_size = Some(v);
                    }
                    0x17 => {
                        p.request_problem_info =
                            Some(bool_byte(r.u8("request problem info")?, &bad)?)
                    }
                    0x19 => {
                        bool_byte(r.u8("request response info")?, &bad)?;
                        p.dropped += 1;
                    }
                    0x15 => p.auth_method = Some(r.string("authentication method")?),
                    0x03 | 0x1F | 0x1C => {
                        r.string("string property")?;
                        p.dropped += 1;
                    }
                    0x08 => {
                        let t = r.string("response topic")?;
                        check_topic_name(r.packet, &t)?;
                        p.dropped += 1;
                    }
                    0x09 | 0x16 => {
                        r.binary("binary property")?;
                        p.dropped += 1;
                    }
                    0x0B => {
                        let v = r.varint("subscription identifier")?;
                        if v == 0 {
                            return Err(bad.clone());
                        }
                        p.dropped += 1;
                    }
                    0x26 => {
                        r.string("user property name")?;
                        r.string("user property value")?;
                        p.dropped += 1;
                    }
                    _ => return Err(bad.clone()),
                }
                Ok(())
            };
            read().map_err(|e| rebase(e, start))?;
        }
        Ok(p)
    }

    fn rest(&self) -> &'a [u8] {
        &self.buf[self.at.min(self.buf.len())..]
    }

    /// Every byte must have been read.
    fn end(&self) -> Result<(), CodecError> {
        let extra = self.buf.len().saturating_sub(self.at);
        if extra == 0 {
            Ok(())
        } else {
            Err(CodecError::Trailing {
                packet: self.packet,
                at: self.at,
                extra,
            })
        }
    }
}

fn bool_byte(v: u8, bad: &CodecError) -> Result<u8, CodecError> {
    if v <= 1 { Ok(v) } else { Err(bad.clone()) }
}

/// Offsets read inside a property block are relative to the block; make them relative to the
/// packet body like every other offset.
fn rebase(e: CodecError, by: usize) -> CodecError {
    match e {
        CodecError::Truncated { packet, field, at } => CodecError::Truncated {
            packet,
            field,
            at: at + by,
        },
        CodecError::BadString { packet, field, at } => CodecError::BadString {
            packet,
            field,
            at: at + by,
        },
        CodecError::Malformed {
            packet,
            field,
            at,
            why,
        } => CodecError::Malformed {
            packet,
            field,
            at: at + by,
            why,
        },
        other => other,
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding: what the gateway forwards upstream. Only the kept properties are written.

/// Writes `packet` as MQTT `version` into `out`.
pub fn encode(packet: &Packet, version: Version, out: &mut BytesMut) {
    let mut body = BytesMut::new();
    let first = match packet {
        Packet::Connect(c) => {
            encode_connect(c, &mut body);
            CONNECT << 4
        }
        Packet::Publish(p) => {
            // The payload (up to a megabyte) is copied once, straight into `out`.
            put_string(&mut body, &p.topic);
            if let Some(id) = p.pkid {
                body.put_u16(id);
            }
            if version == Version::V5 {
                let mut props = BytesMut::new();
                put_opt_u8(&mut props, 0x01, p.properties.payload_format);
                put_opt_u32(&mut props, 0x02, p.properties.message_expiry);
                put_props(&mut body, &props);
            }
            out.reserve(5 + body.len() + p.payload.len());
            out.put_u8((PUBLISH << 4) | (u8::from(p.dup) << 3) | (p.qos << 1) | u8::from(p.retain));
            put_varint(out, body.len() + p.payload.len());
            out.extend_from_slice(&body);
            out.extend_from_slice(&p.payload);
            return;
        }
        Packet::PubAck(a) => ack(&mut body, a, version, PUBACK << 4),
        Packet::PubRec(a) => ack(&mut body, a, version, PUBREC << 4),
        Packet::PubRel(a) => ack(&mut body, a, version, (PUBREL << 4) | 0b0010),
        Packet::PubComp(a) => ack(&mut body, a, version, PUBCOMP << 4),
        Packet::Subscribe(s) => {
            body.put_u16(s.pkid);
            if version == Version::V5 {
                body.put_u8(0);
            }
            for (f, o) in &s.filters {
                put_string(&mut body, f);
                body.put_u8(match version {
                    Version::V311 => o.qos,
                    Version::V5 => {
                        o.qos
                            | (u8::from(o.no_local) << 2)
                            | (u8::from(o.retain_as_published) << 3)
                            | (o.retain_handling << 4)
                    }
                });
            }
            (SUBSCRIBE << 4) | 0b0010
        }
        Packet::Unsubscribe(u) => {
            body.put_u16(u.pkid);
            if version == Version::V5 {
                body.put_u8(0);
            }
            for f in &u.filters {
                put_string(&mut body, f);
            }
            (UNSUBSCRIBE << 4) | 0b0010
        }
        Packet::PingReq => PINGREQ << 4,
        Packet::Disconnect(reason) => {
            if version == Version::V5 && *reason != 0 {
                body.put_u8(*reason);
                body.put_u8(0);
            }
            DISCONNECT << 4
        }
    };
    out.put_u8(first);
    put_varint(out, body.len());
    out.extend_from_slice(&body);
}

fn ack(body: &mut BytesMut, a: &Ack, version: Version, first: u8) -> u8 {
    body.put_u16(a.pkid);
    if version == Version::V5 && a.reason != 0 {
        body.put_u8(a.reason);
        // An empty property block, written out: some clients read it unconditionally.
        body.put_u8(0);
    }
    first
}

fn encode_connect(c: &Connect, body: &mut BytesMut) {
    put_string(body, "MQTT");
    body.put_u8(match c.version {
        Version::V311 => 4,
        Version::V5 => 5,
    });
    let mut flags = 0u8;
    if c.clean_start {
        flags |= 0x02;
    }
    if let Some(w) = &c.will {
        flags |= 0x04 | (w.qos << 3);
        if w.retain {
            flags |= 0x20;
        }
    }
    if c.password.is_some() {
        flags |= 0x40;
    }
    if c.username.is_some() {
        flags |= 0x80;
    }
    body.put_u8(flags);
    body.put_u16(c.keep_alive);
    if c.version == Version::V5 {
        let p = &c.properties;
        let mut props = BytesMut::new();
        put_opt_u32(&mut props, 0x11, p.session_expiry);
        put_opt_u16(&mut props, 0x21, p.receive_maximum);
        put_opt_u32(&mut props, 0x27, p.maximum_packet_size);
        put_opt_u16(&mut props, 0x22, p.topic_alias_maximum);
        put_opt_u8(&mut props, 0x17, p.request_problem_info);
        put_props(body, &props);
    }
    put_string(body, &c.client_id);
    if let Some(w) = &c.will {
        if c.version == Version::V5 {
            let mut props = BytesMut::new();
            put_opt_u32(&mut props, 0x18, w.properties.will_delay);
            put_opt_u8(&mut props, 0x01, w.properties.payload_format);
            put_opt_u32(&mut props, 0x02, w.properties.message_expiry);
            put_props(body, &props);
        }
        put_string(body, &w.topic);
        put_binary(body, &w.payload);
    }
    if let Some(u) = &c.username {
        put_string(body, u);
    }
    if let Some(p) = &c.password {
        put_binary(body, p);
    }
}

fn put_varint(out: &mut BytesMut, mut n: usize) {
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.put_u8(b);
        if n == 0 {
            break;
        }
    }
}

// Strings and binaries written here were read by the decoder through a u16 length, or are
// the namespaced client id (at most 128 + a principal label): they fit the prefix.
fn put_string(out: &mut BytesMut, s: &str) {
    put_binary(out, s.as_bytes());
}

fn put_binary(out: &mut BytesMut, b: &[u8]) {
    debug_assert!(b.len() <= usize::from(u16::MAX));
    out.put_u16(b.len() as u16);
    out.extend_from_slice(b);
}

fn put_props(out: &mut BytesMut, props: &[u8]) {
    put_varint(out, props.len());
    out.extend_from_slice(props);
}

fn put_opt_u8(out: &mut BytesMut, id: u8, v: Option<u8>) {
    if let Some(v) = v {
        out.put_u8(id);
        out.put_u8(v);
    }
}

fn put_opt_u16(out: &mut BytesMut, id: u8, v: Option<u16>) {
    if let Some(v) = v {
        out.put_u8(id);
        out.put_u16(v);
    }
}

fn put_opt_u32(out: &mut BytesMut, id: u8, v: Option<u32>) {
    if let Some(v) = v {
        out.put_u8(id);
        out.put_u32(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::frame::split_frame;
    // The test kit's hand-made MQTT, written apart from the codec so each checks the other.
    use testkit::mqtt_wire::{packet, string};

    fn frame_of(bytes: &[u8]) -> Frame {
        let mut b = BytesMut::from(bytes);
        let f = split_frame(&mut b, 1 << 20).unwrap().unwrap();
        assert!(b.is_empty(), "one whole packet");
        f
    }

    /// A v5 CONNECT with `props` as its property block (length included) and a will whose
    /// property block is `will_props`.
    fn connect_v5(props: &[u8], client_id: &str, will: Option<(&[u8], &str)>) -> Vec<u8> {
        let mut b = string("MQTT");
        b.push(5);
        b.push(0x80 | 0x40 | 0x02 | if will.is_some() { 0x04 | 0x20 } else { 0 });
        b.extend_from_slice(&[0, 30]);
        b.extend_from_slice(props);
        b.extend(string(client_id));
        if let Some((wp, topic)) = will {
            b.extend_from_slice(wp);
            b.extend(string(topic));
            b.extend(string("offline"));
        }
        b.extend(string("wd-0001"));
        b.extend(string("secret"));
        packet(0x10, &b)
    }

    #[test]
    fn a_connect_round_trips_through_the_encoder_keeping_only_allowed_properties() {
        // session expiry 60, a user property (dropped), receive maximum 10
        let props = [
            &[0x11, 0, 0, 0, 60][..],
            &[0x26, 0, 1, b'k', 0, 1, b'v'][..],
            &[0x21, 0, 10][..],
        ]
        .concat();
        let mut block = vec![props.len() as u8];
        block.extend(&props);
        let wp = [5u8, 0x18, 0, 0, 0, 5]; // will delay 5 s
        let raw = connect_v5(&block, "edge-1", Some((&wp, "se/v1/site/wd-0001/status")));
        let c = decode_connect(&frame_of(&raw)).unwrap();
        assert_eq!(c.client_id, "edge-1");
        assert_eq!(c.properties.session_expiry, Some(60));
        assert_eq!(c.properties.receive_maximum, Some(10));
        assert_eq!(c.properties.dropped, 1);
        let w = c.will.as_ref().unwrap();
        assert_eq!(
            (w.topic.as_str(), w.retain, w.qos),
            ("se/v1/site/wd-0001/status", true, 0)
        );
        assert_eq!(w.properties.will_delay, Some(5));
        assert_eq!(c.password.as_deref(), Some(&b"secret"[..]));

        let mut out = BytesMut::new();
        encode(&Packet::Connect(Box::new(c.clone())), Version::V5, &mut out);
        let again = decode_connect(&frame_of(&out)).unwrap();
        let mut expected = c;
        expected.properties.dropped = 0;
        assert_eq!(again, expected);
    }

    #[test]
    fn a_property_block_overrunning_its_declared_length_is_refused() {
        // Declares 2 bytes but the property (session expiry) needs 5: what rumqttd once read
        // past the block is now refused at the property.
        let raw = connect_v5(&[2, 0x11, 0, 0, 0, 60], "edge-1", None);
        let err = decode_connect(&frame_of(&raw)).unwrap_err();
        assert!(
            matches!(
                err,
                CodecError::Truncated {
                    field: "session expiry",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn duplicate_and_foreign_properties_are_refused_naming_the_id() {
        let twice = connect_v5(&[10, 0x11, 0, 0, 0, 1, 0x11, 0, 0, 0, 2], "c", None);
        assert!(matches!(
            decode_connect(&frame_of(&twice)).unwrap_err(),
            CodecError::PropertyTwice { id: 0x11, .. }
        ));
        // 0x23 topic alias belongs to PUBLISH, not CONNECT.
        let foreign = connect_v5(&[3, 0x23, 0, 1], "c", None);
        assert!(matches!(
            decode_connect(&frame_of(&foreign)).unwrap_err(),
            CodecError::PropertyNotAllowed { id: 0x23, .. }
        ));
        // User properties may repeat.
        let users = connect_v5(&[8, 0x26, 0, 0, 0, 0, 0x26, 0, 0], "c", None);
        assert!(
            decode_connect(&frame_of(&users)).is_err(),
            "second pair is truncated"
        );
        let users = connect_v5(&[10, 0x26, 0, 0, 0, 0, 0x26, 0, 0, 0, 0], "c", None);
        assert_eq!(
            decode_connect(&frame_of(&users))
                .unwrap()
                .properties
                .dropped,
            2
        );
    }

    #[test]
    fn trailing_bytes_after_the_password_are_refused() {
        let mut raw = connect_v5(&[0], "edge-1", None);
        raw.extend_from_slice(b"junk");
        raw[1] += 4;
        let err = decode_connect(&frame_of(&raw)).unwrap_err();
        assert!(
            matches!(err, CodecError::Trailing { extra: 4, .. }),
            "{err}"
        );
    }

    #[test]
    fn client_ids_are_1_to_128_bytes_of_a_small_alphabet() {
        for bad in ["", "a:b", "a/b", "a b", "é", &"x".repeat(129)] {
            let raw = connect_v5(&[0], bad, None);
            let err = decode_connect(&frame_of(&raw)).unwrap_err();
            assert!(matches!(err, CodecError::ClientId { .. }), "{bad:?}: {err}");
            assert_eq!(err.reason_code(), 0x85);
        }
        let ok = "A-z_0.9".to_owned() + &"x".repeat(121);
        assert_eq!(
            decode_connect(&frame_of(&connect_v5(&[0], &ok, None)))
                .unwrap()
                .client_id,
            ok
        );
    }

    #[test]
    fn reserved_bits_and_impossible_flag_combinations_are_refused() {
        let mut raw = connect_v5(&[0], "c", None);
        raw[9] |= 0x01; // reserved connect flag
        assert!(decode_connect(&frame_of(&raw)).is_err());
        let mut raw = connect_v5(&[0], "c", None);
        raw[9] |= 0x08; // will QoS without a will
        assert!(decode_connect(&frame_of(&raw)).is_err());
        let raw = connect_v5(&[0], "c", None);
        let mut bad_header = raw.clone();
        bad_header[0] = 0x11;
        assert!(matches!(
            decode_connect(&frame_of(&bad_header)).unwrap_err(),
            CodecError::BadFlags { .. }
        ));
        // PUBLISH QoS 3, and QoS 0 with DUP.
        let body = [string("a/b"), vec![0, 1]].concat();
        for first in [0x36u8, 0x38] {
            assert!(decode(&frame_of(&packet(first, &body)), Version::V311).is_err());
        }
        // SUBSCRIBE must have flags 0b0010.
        let sub = [vec![0, 1], string("a/#"), vec![1]].concat();
        assert!(decode(&frame_of(&packet(0x80, &sub)), Version::V311).is_err());
        assert!(decode(&frame_of(&packet(0x82, &sub)), Version::V311).is_ok());
    }

    #[test]
    fn strings_with_nul_or_bad_utf8_are_refused() {
        for topic in [&b"a\0b"[..], &[0xff, 0xfe][..]] {
            let mut body = (topic.len() as u16).to_be_bytes().to_vec();
            body.extend_from_slice(topic);
            let err = decode(&frame_of(&packet(0x30, &body)), Version::V311).unwrap_err();
            assert!(
                matches!(err, CodecError::BadString { field: "topic", .. }),
                "{err}"
            );
        }
    }

    #[test]
    fn publish_keeps_payload_and_allowed_properties_and_refuses_aliases_and_wildcards() {
        let body = [
            string("se/v1/site/s1/alert"),
            vec![0x12, 0x34],
            vec![7, 0x01, 1, 0x26, 0, 0, 0, 0],
            b"{}".to_vec(),
        ]
        .concat();
        let p = match decode(&frame_of(&packet(0x32, &body)), Version::V5).unwrap() {
            Packet::Publish(p) => p,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            (p.qos, p.pkid, p.payload.as_ref()),
            (1, Some(0x1234), &b"{}"[..])
        );
        assert_eq!(p.properties.payload_format, Some(1));
        let mut out = BytesMut::new();
        encode(&Packet::Publish(p.clone()), Version::V5, &mut out);
        let again = decode(&frame_of(&out), Version::V5).unwrap();
        let mut expected = p;
        expected.properties.dropped = 0;
        assert_eq!(again, Packet::Publish(expected));

        let alias = [string("a/b"), vec![0, 1], vec![3, 0x23, 0, 1]].concat();
        assert_eq!(
            decode(&frame_of(&packet(0x32, &alias)), Version::V5).unwrap_err(),
            CodecError::TopicAlias
        );
        let wild = [string("a/+"), vec![0, 1]].concat();
        assert_eq!(
            decode(&frame_of(&packet(0x32, &wild)), Version::V311)
                .unwrap_err()
                .reason_code(),
            0x90
        );
    }

    #[test]
    fn topic_filters_follow_the_wildcard_rules() {
        for ok in ["#", "a/#", "+/b/+", "$share/g/a/+", "a//b"] {
            assert!(check_topic_filter("SUBSCRIBE", ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a#",
            "a/#/b",
            "a+/b",
            "$share/g",
            "$share//a",
            "$share/g+/a",
            "$share/g/",
        ] {
            assert!(check_topic_filter("SUBSCRIBE", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn acks_ping_and_disconnect_are_checked_too() {
        assert_eq!(
            decode(&frame_of(&[0x40, 2, 0, 7]), Version::V311).unwrap(),
            Packet::PubAck(Ack { pkid: 7, reason: 0 })
        );
        // A 3.1.1 PUBACK has no reason code: a third byte is trailing.
        assert!(decode(&frame_of(&[0x40, 3, 0, 7, 0]), Version::V311).is_err());
        // A v5 PUBACK with an unknown reason code.
        assert!(decode(&frame_of(&[0x40, 3, 0, 7, 0x42]), Version::V5).is_err());
        assert_eq!(
            decode(&frame_of(&[0xC0, 0]), Version::V5).unwrap(),
            Packet::PingReq
        );
        assert!(decode(&frame_of(&[0xC0, 1, 0]), Version::V5).is_err());
        assert_eq!(
            decode(&frame_of(&[0xE0, 2, 0x04, 0]), Version::V5).unwrap(),
            Packet::Disconnect(4)
        );
        // AUTH and server-only packets.
        assert!(matches!(
            decode(&frame_of(&[0xF0, 0]), Version::V5).unwrap_err(),
            CodecError::NotFromClient(15)
        ));
        assert!(decode(&frame_of(&[0x20, 2, 0, 0]), Version::V5).is_err());
    }

    #[test]
    fn a_non_minimal_variable_byte_integer_in_properties_is_refused() {
        // Property length 0 written in two bytes.
        let raw = connect_v5(&[0x80, 0x00], "c", None);
        let err = decode_connect(&frame_of(&raw)).unwrap_err();
        assert!(
            matches!(
                err,
                CodecError::Malformed {
                    field: "property length",
                    ..
                }
            ),
            "{err}"
        );
    }
}
