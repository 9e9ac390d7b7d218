//! Just enough MQTT framing for the gateway: packet boundaries in both directions, and the
//! fields of CONNECT, PUBLISH and SUBSCRIBE it must check. Everything else passes through as
//! the bytes the client sent, so the broker behind sees exactly what the client said.
//!
//! Why not a full codec (rumqttd's or rumqttc's): the gateway decides on four packet types and
//! must forward the rest byte for byte, including MQTT 5 properties it has no reason to
//! understand; a boundary parser plus three field readers is smaller than a decode/re-encode
//! round trip and cannot change what it forwards.

use bytes::{Bytes, BytesMut};

/// MQTT control packet types (the high nibble of the first byte).
pub mod kind {
    pub const CONNECT: u8 = 1;
    pub const PUBLISH: u8 = 3;
    pub const PUBACK: u8 = 4;
    pub const SUBSCRIBE: u8 = 8;
    pub const DISCONNECT: u8 = 14;
}

/// Why a byte stream is not MQTT the gateway accepts. Each names the packet and the byte.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("remaining length at byte {at} is longer than 4 bytes")]
    LengthTooLong { at: usize },
    #[error("{kind} packet of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        kind: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{packet}: truncated at byte {at} reading {field}")]
    Truncated {
        packet: &'static str,
        field: &'static str,
        at: usize,
    },
    #[error("{packet}: {field} at byte {at} is not UTF-8")]
    NotUtf8 {
        packet: &'static str,
        field: &'static str,
        at: usize,
    },
    #[error("CONNECT: protocol {name:?} level {level} is not MQTT 3.1.1 (4) or 5")]
    UnsupportedProtocol { name: String, level: u8 },
    #[error("the first packet is type {0}, not CONNECT")]
    NotConnect(u8),
}

/// One whole packet: its first byte and its complete bytes (header included).
#[derive(Debug, Clone)]
pub struct Frame {
    pub first: u8,
    pub bytes: Bytes,
    /// Offset of the variable header inside `bytes`.
    pub body_at: usize,
}

impl Frame {
    pub fn kind(&self) -> u8 {
        self.first >> 4
    }

    pub fn body(&self) -> &[u8] {
        &self.bytes[self.body_at..]
    }
}

/// Splits the next whole packet off `buf`, if it holds one. Packets larger than `max` are
/// refused from their header, before their body is buffered.
pub fn split_frame(buf: &mut BytesMut, max: usize) -> Result<Option<Frame>, FrameError> {
    if buf.is_empty() {
        return Ok(None);
    }
    let mut len: usize = 0;
    let mut shift = 0;
    let mut i = 1;
    loop {
        let Some(&b) = buf.get(i) else {
            return Ok(None);
        };
        len |= usize::from(b & 0x7f) << shift;
        i += 1;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
        if i > 4 {
            return Err(FrameError::LengthTooLong { at: i });
        }
    }
    if len > max {
        return Err(FrameError::TooLarge {
            kind: kind_name(buf[0] >> 4),
            len,
            max,
        });
    }
    if buf.len() < i + len {
        buf.reserve(i + len - buf.len());
        return Ok(None);
    }
    let first = buf[0];
    let bytes = buf.split_to(i + len).freeze();
    Ok(Some(Frame {
        first,
        bytes,
        body_at: i,
    }))
}

pub fn kind_name(kind: u8) -> &'static str {
    match kind {
        1 => "CONNECT",
        2 => "CONNACK",
        3 => "PUBLISH",
        4 => "PUBACK",
        5 => "PUBREC",
        6 => "PUBREL",
        7 => "PUBCOMP",
        8 => "SUBSCRIBE",
        9 => "SUBACK",
        10 => "UNSUBSCRIBE",
        11 => "UNSUBACK",
        12 => "PINGREQ",
        13 => "PINGRESP",
        14 => "DISCONNECT",
        15 => "AUTH",
        _ => "reserved",
    }
}

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

    fn truncated(&self, field: &'static str) -> FrameError {
        FrameError::Truncated {
            packet: self.packet,
            field,
            at: self.at,
        }
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, FrameError> {
        let b = *self.buf.get(self.at).ok_or_else(|| self.truncated(field))?;
        self.at += 1;
        Ok(b)
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, FrameError> {
        let hi = self.u8(field)?;
        let lo = self.u8(field)?;
        Ok(u16::from_be_bytes([hi, lo]))
    }

    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], FrameError> {
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

    fn binary(&mut self, field: &'static str) -> Result<&'a [u8], FrameError> {
        let n = self.u16(field)?;
        self.take(usize::from(n), field)
    }

    fn string(&mut self, field: &'static str) -> Result<&'a str, FrameError> {
        let start = self.at;
        let b = self.binary(field)?;
        std::str::from_utf8(b).map_err(|_| FrameError::NotUtf8 {
            packet: self.packet,
            field,
            at: start,
        })
    }

    fn varint(&mut self, field: &'static str) -> Result<usize, FrameError> {
        let mut v = 0usize;
        for i in 0..4 {
            let b = self.u8(field)?;
            v |= usize::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(FrameError::LengthTooLong { at: self.at })
    }

    /// Skips an MQTT 5 property block.
    fn skip_properties(&mut self, field: &'static str) -> Result<(), FrameError> {
        let n = self.varint(field)?;
        self.take(n, field).map(|_| ())
    }

    fn rest(&self) -> &'a [u8] {
        &self.buf[self.at.min(self.buf.len())..]
    }
}

/// MQTT protocol level: 4 = 3.1.1, 5 = 5.0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V311,
    V5,
}

/// The fields of a CONNECT the gateway decides on.
#[derive(Debug, Clone)]
pub struct Connect {
    pub version: Version,
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<Vec<u8>>,
    pub will_topic: Option<String>,
    /// Where the client id's length prefix starts and its bytes end, in the frame.
    client_id_span: (usize, usize),
}

impl Connect {
    /// The CONNECT with its client id replaced (everything else byte for byte). The gateway
    /// puts each client in its principal's namespace this way, so one device cannot take over
    /// another's session (MQTT lets a new connection with a client id evict the old one).
    pub fn with_client_id(&self, frame: &Frame, client_id: &str) -> Bytes {
        let (start, end) = self.client_id_span;
        let body_len = frame.bytes.len() - frame.body_at - (end - start) + 2 + client_id.len();
        let mut out = Vec::with_capacity(body_len + 5);
        out.push(frame.first);
        let mut n = body_len;
        loop {
            let mut b = (n % 128) as u8;
            n /= 128;
            if n > 0 {
                b |= 0x80;
            }
            out.push(b);
            if n == 0 {
                break;
            }
        }
        out.extend_from_slice(&frame.bytes[frame.body_at..start]);
        out.extend_from_slice(&(client_id.len() as u16).to_be_bytes());
        out.extend_from_slice(client_id.as_bytes());
        out.extend_from_slice(&frame.bytes[end..]);
        Bytes::from(out)
    }
}

pub fn parse_connect(frame: &Frame) -> Result<Connect, FrameError> {
    if frame.kind() != kind::CONNECT {
        return Err(FrameError::NotConnect(frame.kind()));
    }
    let mut r = Reader::new("CONNECT", frame.body());
    let name = r.string("protocol name")?.to_owned();
    let level = r.u8("protocol level")?;
    let version = match (name.as_str(), level) {
        ("MQTT", 4) => Version::V311,
        ("MQTT", 5) => Version::V5,
        _ => return Err(FrameError::UnsupportedProtocol { name, level }),
    };
    let flags = r.u8("connect flags")?;
    r.u16("keep alive")?;
    if version == Version::V5 {
        r.skip_properties("properties")?;
    }
    let client_id_start = frame.body_at + r.at;
    let client_id = r.string("client id")?.to_owned();
    let client_id_span = (client_id_start, frame.body_at + r.at);
    let mut will_topic = None;
    if flags & 0x04 != 0 {
        if version == Version::V5 {
            r.skip_properties("will properties")?;
        }
        will_topic = Some(r.string("will topic")?.to_owned());
        r.binary("will payload")?;
    }
    let username = if flags & 0x80 != 0 {
        Some(r.string("username")?.to_owned())
    } else {
        None
    };
    let password = if flags & 0x40 != 0 {
        Some(r.binary("password")?.to_vec())
    } else {
        None
    };
    Ok(Connect {
        version,
        client_id,
        username,
        password,
        will_topic,
        client_id_span,
    })
}

/// The fields of a PUBLISH the gateway decides on; the payload shares the frame's buffer.
#[derive(Debug, Clone)]
pub struct Publish {
    pub topic: String,
    pub qos: u8,
    pub pkid: Option<u16>,
    pub payload: Bytes,
}

pub fn parse_publish(frame: &Frame, version: Version) -> Result<Publish, FrameError> {
    let qos = (frame.first >> 1) & 0x03;
    let mut r = Reader::new("PUBLISH", frame.body());
    let topic = r.string("topic")?.to_owned();
    let pkid = if qos > 0 {
        Some(r.u16("packet id")?)
    } else {
        None
    };
    if version == Version::V5 {
        r.skip_properties("properties")?;
    }
    let start = frame.body_at + r.at;
    let payload = frame.bytes.slice(start.min(frame.bytes.len())..);
    debug_assert_eq!(payload.len(), r.rest().len());
    Ok(Publish {
        topic,
        qos,
        pkid,
        payload,
    })
}

/// The topic filters of a SUBSCRIBE.
pub fn parse_subscribe(frame: &Frame, version: Version) -> Result<Vec<String>, FrameError> {
    let mut r = Reader::new("SUBSCRIBE", frame.body());
    r.u16("packet id")?;
    if version == Version::V5 {
        r.skip_properties("properties")?;
    }
    let mut filters = Vec::new();
    while !r.rest().is_empty() {
        filters.push(r.string("topic filter")?.to_owned());
        r.u8("subscription options")?;
    }
    Ok(filters)
}

/// PUBACK for `pkid`; under MQTT 5 with a reason code when it is not success.
pub fn puback(pkid: u16, version: Version, reason: u8) -> Bytes {
    let [hi, lo] = pkid.to_be_bytes();
    if version == Version::V5 && reason != 0 {
        Bytes::from(vec![kind::PUBACK << 4, 3, hi, lo, reason])
    } else {
        Bytes::from(vec![kind::PUBACK << 4, 2, hi, lo])
    }
}

/// CONNACK refusing a connection: `bad_credentials` (v4 rc 4 / v5 0x86) or not authorised
/// (v4 rc 5 / v5 0x87).
pub fn connack_refused(version: Version, bad_credentials: bool) -> Bytes {
    match version {
        Version::V311 => Bytes::from(vec![0x20, 2, 0, if bad_credentials { 4 } else { 5 }]),
        Version::V5 => Bytes::from(vec![
            0x20,
            3,
            0,
            if bad_credentials { 0x86 } else { 0x87 },
            0,
        ]),
    }
}

/// A server DISCONNECT with a reason (MQTT 5 only; 3.1.1 servers just close). The empty
/// property block is written out (length 0) although MQTT 5 lets it be left off after a
/// reason code: rumqttc (the agents' client) waits for the property length and so never
/// decodes the short form, seeing only the connection close instead of the reason.
pub fn disconnect_v5(reason: u8) -> Bytes {
    Bytes::from(vec![kind::DISCONNECT << 4, 2, reason, 0])
}

/// MQTT 5 reason codes the gateway uses.
pub mod reason {
    pub const NOT_AUTHORIZED: u8 = 0x87;
    pub const TOPIC_NAME_INVALID: u8 = 0x90;
    pub const PACKET_TOO_LARGE: u8 = 0x95;
    pub const PAYLOAD_FORMAT_INVALID: u8 = 0x99;
    pub const UNSPECIFIED: u8 = 0x80;
    pub const PROTOCOL_ERROR: u8 = 0x82;
    pub const QOS_NOT_SUPPORTED: u8 = 0x9B;
    pub const TOPIC_ALIAS_INVALID: u8 = 0x94;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_of(bytes: &[u8]) -> Frame {
        let mut b = BytesMut::from(bytes);
        split_frame(&mut b, 1 << 20).unwrap().unwrap()
    }

    fn encode_len(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let mut b = (n % 128) as u8;
            n /= 128;
            if n > 0 {
                b |= 0x80;
            }
            out.push(b);
            if n == 0 {
                break;
            }
        }
    }

    fn packet(first: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![first];
        encode_len(body.len(), &mut v);
        v.extend_from_slice(body);
        v
    }

    fn string(s: &str) -> Vec<u8> {
        let mut v = (s.len() as u16).to_be_bytes().to_vec();
        v.extend_from_slice(s.as_bytes());
        v
    }

    #[test]
    fn frames_split_at_their_boundaries_and_wait_for_the_rest() {
        let a = packet(0xC0, &[]); // PINGREQ
        let b = packet(0x32, &[0, 1, b't', 0, 7, b'x']);
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&a);
        buf.extend_from_slice(&b[..3]);
        assert_eq!(
            split_frame(&mut buf, 100).unwrap().unwrap().bytes.as_ref(),
            &a
        );
        assert!(split_frame(&mut buf, 100).unwrap().is_none());
        buf.extend_from_slice(&b[3..]);
        let f = split_frame(&mut buf, 100).unwrap().unwrap();
        assert_eq!(f.bytes.as_ref(), &b);
        assert!(buf.is_empty());
    }

    #[test]
    fn an_oversized_packet_is_refused_from_its_header() {
        let mut buf = BytesMut::from(&[0x30u8, 0xff, 0xff, 0x7f][..]);
        let err = split_frame(&mut buf, 1000).unwrap_err();
        assert_eq!(
            err,
            FrameError::TooLarge {
                kind: "PUBLISH",
                len: 2_097_151,
                max: 1000
            }
        );
    }

    #[test]
    fn v5_publish_skips_properties_to_the_payload() {
        let mut body = string("se/v1/site/s1/alert");
        body.extend_from_slice(&[0x12, 0x34]); // pkid
        body.extend_from_slice(&[2, 0x01, 0x01]); // properties: payload format indicator
        body.extend_from_slice(b"{\"a\":1}");
        let f = frame_of(&packet(0x32, &body));
        let p = parse_publish(&f, Version::V5).unwrap();
        assert_eq!(p.topic, "se/v1/site/s1/alert");
        assert_eq!((p.qos, p.pkid), (1, Some(0x1234)));
        assert_eq!(p.payload.as_ref(), b"{\"a\":1}");
        // The same bytes read as 3.1.1 take the properties as payload: the version matters.
        let p4 = parse_publish(&f, Version::V311).unwrap();
        assert_eq!(&p4.payload[..3], &[2, 1, 1]);
    }

    #[test]
    fn connect_yields_credentials_and_will_topic() {
        let mut body = string("MQTT");
        body.push(5);
        body.push(0x80 | 0x40 | 0x04 | 0x02);
        body.extend_from_slice(&[0, 30]);
        body.push(0); // no properties
        body.extend(string("agent-1"));
        body.push(0); // no will properties
        body.extend(string("se/v1/site/s1/status"));
        body.extend(string("offline"));
        body.extend(string("s1"));
        body.extend(string("secret"));
        let c = parse_connect(&frame_of(&packet(0x10, &body))).unwrap();
        assert_eq!(c.version, Version::V5);
        assert_eq!(c.client_id, "agent-1");
        assert_eq!(c.username.as_deref(), Some("s1"));
        assert_eq!(c.password.as_deref(), Some(&b"secret"[..]));
        assert_eq!(c.will_topic.as_deref(), Some("se/v1/site/s1/status"));
    }

    #[test]
    fn a_rewritten_client_id_keeps_everything_else() {
        let mut body = string("MQTT");
        body.push(5);
        body.push(0x80 | 0x40 | 0x02);
        body.extend_from_slice(&[0, 30]);
        body.push(0);
        body.extend(string("agent-1"));
        body.extend(string("s1"));
        body.extend(string("secret"));
        let f = frame_of(&packet(0x10, &body));
        let c = parse_connect(&f).unwrap();
        let long = "site:s1:agent-1".repeat(10); // > 127 bytes: the length grows a byte
        let rewritten = c.with_client_id(&f, &long);
        let again = parse_connect(&frame_of(&rewritten)).unwrap();
        assert_eq!(again.client_id, long);
        assert_eq!(again.username.as_deref(), Some("s1"));
        assert_eq!(again.password.as_deref(), Some(&b"secret"[..]));
        assert_eq!(again.version, Version::V5);
    }

    #[test]
    fn truncated_connect_names_the_field_and_byte() {
        let mut body = string("MQTT");
        body.push(4);
        body.push(0x80);
        body.extend_from_slice(&[0, 30]);
        body.extend(string("c"));
        body.extend_from_slice(&[0, 9, b'x']); // username claims 9 bytes, has 1
        let err = parse_connect(&frame_of(&packet(0x10, &body))).unwrap_err();
        assert_eq!(
            err,
            FrameError::Truncated {
                packet: "CONNECT",
                field: "username",
                at: 15
            }
        );
    }

    #[test]
    fn mqtt_3_1_is_refused_by_name() {
        let mut body = string("MQIsdp");
        body.extend_from_slice(&[3, 0, 0, 30]);
        body.extend(string("c"));
        let err = parse_connect(&frame_of(&packet(0x10, &body))).unwrap_err();
        assert!(err.to_string().contains("MQIsdp"), "{err}");
    }

    #[test]
    fn subscribe_lists_every_filter() {
        let mut body = vec![0, 5];
        body.extend(string("a/#"));
        body.push(1);
        body.extend(string("b/+"));
        body.push(0);
        let f = frame_of(&packet(0x82, &body));
        assert_eq!(parse_subscribe(&f, Version::V311).unwrap(), ["a/#", "b/+"]);
    }

    #[test]
    fn puback_carries_a_reason_only_under_v5() {
        assert_eq!(
            puback(0x0102, Version::V311, 0x99).as_ref(),
            &[0x40, 2, 1, 2]
        );
        assert_eq!(
            puback(0x0102, Version::V5, 0x99).as_ref(),
            &[0x40, 3, 1, 2, 0x99]
        );
        assert_eq!(puback(7, Version::V5, 0).as_ref(), &[0x40, 2, 0, 7]);
    }

    #[test]
    fn disconnect_carries_its_reason_and_an_empty_property_block() {
        let d = disconnect_v5(reason::NOT_AUTHORIZED);
        assert_eq!(d.as_ref(), &[0xE0, 2, 0x87, 0]);
        let mut buf = BytesMut::from(d.as_ref());
        let f = split_frame(&mut buf, 16).unwrap().unwrap();
        assert_eq!((f.kind(), f.body()), (kind::DISCONNECT, &[0x87, 0][..]));
    }
}
