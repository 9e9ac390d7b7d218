//! MQTT framing for the gateway: packet boundaries in both directions (a packet larger than
//! its limit is refused from its header, before its body is buffered), and the few packets the
//! gateway writes itself (CONNACK refusals, PUBACKs for refused alerts, DISCONNECT with a
//! reason). Decoding what is inside a client's packet is [`super::codec`]'s.

use bytes::{Bytes, BytesMut};

pub use super::codec::Version;

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
    #[error("remaining length is not in its shortest form")]
    LengthNotMinimal,
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
            // MQTT 5 §1.5.5 (and 3.1.1 §2.2.3 by its algorithm): the shortest encoding only;
            // a padded length is one more way for two parsers to disagree.
            if i > 2 && b == 0 {
                return Err(FrameError::LengthNotMinimal);
            }
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

/// The protocol level of a CONNECT frame, read without decoding the rest (to answer a
/// malformed CONNECT in its own protocol version).
pub fn connect_level(frame: &Frame) -> Option<u8> {
    let body = frame.body();
    let name_len = usize::from(u16::from_be_bytes([*body.first()?, *body.get(1)?]));
    body.get(2 + name_len).copied()
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
        Version::V311 => connack_refused_v311(if bad_credentials { 4 } else { 5 }),
        Version::V5 => connack_refused_v5(if bad_credentials { 0x86 } else { 0x87 }),
    }
}

/// CONNACK with a 3.1.1 return code (1 protocol version, 2 identifier rejected, 3 server
/// unavailable, 4 bad credentials, 5 not authorised).
pub fn connack_refused_v311(code: u8) -> Bytes {
    Bytes::from(vec![0x20, 2, 0, code])
}

/// CONNACK with an MQTT 5 reason code and an empty property block.
pub fn connack_refused_v5(reason: u8) -> Bytes {
    Bytes::from(vec![0x20, 3, 0, reason, 0])
}

/// CONNACK saying the server is full (v4 rc 3 server unavailable / v5 0x89 server busy).
pub fn connack_busy(version: Version) -> Bytes {
    match version {
        Version::V311 => connack_refused_v311(3),
        Version::V5 => connack_refused_v5(0x89),
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
    pub const QUOTA_EXCEEDED: u8 = 0x97;
    pub const PAYLOAD_FORMAT_INVALID: u8 = 0x99;
    pub const UNSPECIFIED: u8 = 0x80;
    pub const PROTOCOL_ERROR: u8 = 0x82;
    pub const QOS_NOT_SUPPORTED: u8 = 0x9B;
    pub const TOPIC_ALIAS_INVALID: u8 = 0x94;
}

#[cfg(test)]
mod tests {
    use super::*;
    // The test kit's hand-made MQTT, written apart from the codec so each checks the other.
    use testkit::mqtt_wire::{packet, string};

    fn frame_of(bytes: &[u8]) -> Frame {
        let mut b = BytesMut::from(bytes);
        split_frame(&mut b, 1 << 20).unwrap().unwrap()
    }

    #[test]
    fn a_padded_remaining_length_is_refused() {
        let mut buf = BytesMut::from(&[0xC0u8, 0x80, 0x00][..]);
        assert_eq!(
            split_frame(&mut buf, 100).unwrap_err(),
            FrameError::LengthNotMinimal
        );
    }

    #[test]
    fn the_level_of_a_connect_is_read_without_decoding_it() {
        let mut body = string("MQTT");
        body.push(5);
        body.push(0xff); // nonsense flags: the level is still known
        assert_eq!(connect_level(&frame_of(&packet(0x10, &body))), Some(5));
        assert_eq!(connect_level(&frame_of(&packet(0x10, &[0, 9]))), None);
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
