//! Hand-made MQTT bytes for tests: the one place tests build and read raw packets, so a test
//! that attacks a parser (the hub's gateway) or stands in for a broker (`fake_mqtt5`) does
//! not carry its own copy of the wire format. Written from the specification (MQTT 3.1.1 §2.2,
//! MQTT 5 §1.5), independently of the hub's codec, so the two check each other.

use tokio::io::{AsyncRead, AsyncReadExt};

/// CONNECT flags (MQTT 3.1.1 §3.1.2.3).
pub const USER: u8 = 0x80;
pub const PASS: u8 = 0x40;
pub const WILL_RETAIN: u8 = 0x20;
pub const WILL: u8 = 0x04;
pub const CLEAN: u8 = 0x02;

/// A variable byte integer in its shortest form.
pub fn varint(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            return out;
        }
    }
}

/// The variable byte integer at the start of `b`: its value and its length in bytes, or `None`
/// when `b` ends first or it runs past four bytes.
pub fn read_varint(b: &[u8]) -> Option<(usize, usize)> {
    let mut v = 0usize;
    for (i, &byte) in b.iter().take(4).enumerate() {
        v |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// A whole packet: `first` (type and flags), the remaining length, `body`.
pub fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![first];
    v.extend(varint(body.len()));
    v.extend_from_slice(body);
    v
}

/// A length-prefixed string or binary field (u16 big-endian length, then the bytes).
pub fn string(x: impl AsRef<[u8]>) -> Vec<u8> {
    let x = x.as_ref();
    let mut v = (x.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(x);
    v
}

/// A CONNECT variable header up to and including the keep alive (30 s): protocol name,
/// `level` (4 = 3.1.1, 5 = MQTT 5) and `flags`. A v5 caller appends the property block.
pub fn connect_head(level: u8, flags: u8) -> Vec<u8> {
    let mut b = string("MQTT");
    b.push(level);
    b.push(flags);
    b.extend_from_slice(&[0, 30]);
    b
}

/// A well-formed v5 CONNECT with a clean start, no properties, `user` and `password`.
pub fn connect_v5(client_id: &str, user: &str, password: &str) -> Vec<u8> {
    let mut b = connect_head(5, USER | PASS | CLEAN);
    b.push(0);
    b.extend(string(client_id));
    b.extend(string(user));
    b.extend(string(password));
    packet(0x10, &b)
}

/// Reads one packet (first byte, body), or `None` when the stream ends first, the remaining
/// length runs past four bytes or the body would exceed `max` bytes.
pub async fn read_packet<R: AsyncRead + Unpin>(r: &mut R, max: usize) -> Option<(u8, Vec<u8>)> {
    let first = r.read_u8().await.ok()?;
    let mut len = 0usize;
    for i in 0..4 {
        let b = r.read_u8().await.ok()?;
        len |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            if len > max {
                return None;
            }
            let mut body = vec![0; len];
            r.read_exact(&mut body).await.ok()?;
            return Some((first, body));
        }
    }
    None
}
