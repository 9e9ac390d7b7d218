//! The one documented tag-read format, and its parser.
//!
//! Every transport carries the same record: one JSON object per line (TCP) or per datagram
//! (UDP), at most [`MAX_LINE_BYTES`] bytes:
//!
//! ```json
//! {"reader":"r1","tag":"E2801160600002084A5B3C1D","kind":"bike","rssi":-61,"time":"2026-11-22T08:00:00.123Z"}
//! ```
//!
//! | field | type | rule |
//! | --- | --- | --- |
//! | `reader` | string | 1..=64 bytes of `A-Z a-z 0-9 _ - . :` |
//! | `tag` | string | 1..=64 hex digits (EPC); stored upper-case so matching ignores case |
//! | `kind` | `"bike"` or `"key"` | what the tag is fitted to, as the reader reports it |
//! | `rssi` | integer dBm | -127..=0 |
//! | `time` | string, optional | RFC 3339 with `Z` or `±HH:MM` offset, up to ms precision |
//!
//! Unknown fields are rejected. Reader clocks are often wrong, so the agent stamps every read
//! with its own receive time ([`TagRead::received_ms`]) and only that time drives dedup and
//! rules; the reader's `time`, when given, is kept alongside for forensics.
//!
//! Choice: `time` is parsed by the small RFC 3339 parser in `protocol::time` rather than
//! stored as a string or parsed with chrono: it is ~50 lines, rejects garbage at the edge, and
//! the core deals only in [`Timestamp`] integers. Leap seconds (`:60`) are rejected.

use serde::Deserialize;

use crate::track::Timestamp;

/// Longest accepted record, in bytes, not counting the line terminator.
pub const MAX_LINE_BYTES: usize = 1024;
/// Longest accepted tag id (hex digits). EPC-96 is 24; 64 leaves room for longer TIDs.
pub const MAX_TAG_LEN: usize = 64;
/// Longest accepted reader id.
pub const MAX_READER_LEN: usize = 64;
/// Accepted RSSI range, dBm.
pub const RSSI_RANGE: std::ops::RangeInclusive<i16> = -127..=0;

/// What a tag is fitted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TagKind {
    /// The anti-theft tag on the vehicle.
    Bike,
    /// The tag the owner carries (key fob).
    Key,
}

/// One validated read, stamped with the agent's receive time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagRead {
    /// Reader id as sent.
    pub reader: String,
    /// Tag id, upper-case hex.
    pub tag: String,
    /// What the reader says the tag is.
    pub kind: TagKind,
    /// Signal strength, dBm.
    pub rssi: i16,
    /// When the agent received the read; the only time the core uses.
    pub received_ms: Timestamp,
    /// The reader's own `time`, if it sent one (not trusted; see the module docs).
    pub reader_time_ms: Option<Timestamp>,
}

/// Why a record was rejected. `line` is the 1-based line number on a TCP connection, or the
/// 1-based datagram number from a UDP peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// The record is longer than [`MAX_LINE_BYTES`].
    #[error("line {line}: {len} bytes exceeds the {max}-byte limit")]
    Oversized {
        /// Line or datagram number.
        line: u64,
        /// Its length in bytes (for TCP, at least this long).
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not JSON, not an object of the documented shape, or an unknown/missing field.
    #[error("line {line}, byte {offset}: {message}")]
    Syntax {
        /// Line or datagram number.
        line: u64,
        /// 0-based byte offset within the record where the parser gave up.
        offset: usize,
        /// The parser's message (names the field when it is an unknown/missing field).
        message: String,
    },
    /// Well-formed, but a field's value is out of range.
    #[error("line {line}: field `{field}`: {problem}")]
    Invalid {
        /// Line or datagram number.
        line: u64,
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireRead {
    reader: String,
    tag: String,
    kind: TagKind,
    rssi: i16,
    #[serde(default)]
    time: Option<String>,
}

/// Parses and validates one record (without its line terminator). `line` numbers the record in
/// errors; `received_ms` is the agent's receive time.
pub fn parse_read(bytes: &[u8], line: u64, received_ms: Timestamp) -> Result<TagRead, ReadError> {
    if bytes.len() > MAX_LINE_BYTES {
        return Err(ReadError::Oversized {
            line,
            len: bytes.len(),
            max: MAX_LINE_BYTES,
        });
    }
    let wire: WireRead = serde_json::from_slice(bytes).map_err(|e| ReadError::Syntax {
        line,
        offset: byte_offset(bytes, e.line(), e.column()),
        message: e.to_string(),
    })?;
    let invalid = |field, problem: String| ReadError::Invalid {
        line,
        field,
        problem,
    };
    if let Err(p) = check_reader_id(&wire.reader) {
        return Err(invalid("reader", p));
    }
    let tag = normalize_tag(&wire.tag).map_err(|p| invalid("tag", p))?;
    if !RSSI_RANGE.contains(&wire.rssi) {
        return Err(invalid(
            "rssi",
            format!(
                "{} dBm is outside {}..={}",
                wire.rssi,
                RSSI_RANGE.start(),
                RSSI_RANGE.end()
            ),
        ));
    }
    let reader_time_ms = match wire.time {
        None => None,
        Some(t) => Some(parse_rfc3339_ms(&t).ok_or_else(|| {
            invalid(
                "time",
                format!("{t:?} is not an RFC 3339 time like 2026-11-22T08:00:00.123Z"),
            )
        })?),
    };
    Ok(TagRead {
        reader: wire.reader,
        tag,
        kind: wire.kind,
        rssi: wire.rssi,
        received_ms,
        reader_time_ms,
    })
}

/// serde_json reports 1-based line and column (in bytes); turn that into a 0-based offset.
fn byte_offset(bytes: &[u8], line: usize, column: usize) -> usize {
    let mut start = 0;
    for _ in 1..line {
        match bytes[start..].iter().position(|&b| b == b'\n') {
            Some(p) => start += p + 1,
            None => break,
        }
    }
    (start + column.saturating_sub(1)).min(bytes.len())
}

/// Checks a reader id: 1..=[`MAX_READER_LEN`] bytes of `A-Z a-z 0-9 _ - . :`.
pub fn check_reader_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("must not be empty".into());
    }
    if id.len() > MAX_READER_LEN {
        return Err(format!(
            "{} bytes is longer than {MAX_READER_LEN}",
            id.len()
        ));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':')))
    {
        return Err(format!("contains {c:?}; allowed are A-Z a-z 0-9 _ - . :"));
    }
    Ok(())
}

/// Validates a tag id (1..=[`MAX_TAG_LEN`] hex digits) and returns it upper-cased, the form
/// every map in this module is keyed by.
pub fn normalize_tag(tag: &str) -> Result<String, String> {
    if tag.is_empty() {
        return Err("must not be empty".into());
    }
    if tag.len() > MAX_TAG_LEN {
        return Err(format!(
            "{} characters is longer than {MAX_TAG_LEN}",
            tag.len()
        ));
    }
    if let Some(c) = tag.chars().find(|c| !c.is_ascii_hexdigit()) {
        return Err(format!("contains {c:?}; a tag id is hex digits"));
    }
    Ok(tag.to_ascii_uppercase())
}

pub use protocol::time::parse_rfc3339_ms;

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"reader":"r1","tag":"e2801160600002084a5b3c1d","kind":"bike","rssi":-61,"time":"2026-11-22T08:00:00.123Z"}"#;

    #[test]
    fn a_documented_line_parses_with_upper_case_tag_and_both_times() {
        let r = parse_read(GOOD.as_bytes(), 1, 42).unwrap();
        assert_eq!(r.reader, "r1");
        assert_eq!(r.tag, "E2801160600002084A5B3C1D");
        assert_eq!(r.kind, TagKind::Bike);
        assert_eq!(r.rssi, -61);
        assert_eq!(r.received_ms, 42);
        assert_eq!(r.reader_time_ms, Some(1_795_334_400_123));
    }

    #[test]
    fn time_is_optional() {
        let r = parse_read(
            br#"{"reader":"r1","tag":"AB","kind":"key","rssi":-70}"#,
            1,
            7,
        )
        .unwrap();
        assert_eq!(r.reader_time_ms, None);
        assert_eq!(r.kind, TagKind::Key);
    }

    #[test]
    fn an_unknown_field_is_rejected_by_name() {
        let e = parse_read(
            br#"{"reader":"r1","tag":"AB","kind":"key","rssi":-70,"antenna":2}"#,
            3,
            0,
        )
        .unwrap_err();
        assert!(matches!(e, ReadError::Syntax { line: 3, .. }), "{e}");
        assert!(e.to_string().contains("antenna"), "{e}");
    }

    #[test]
    fn broken_json_reports_the_byte_offset() {
        let e = parse_read(br#"{"reader":"r1","tag":}"#, 5, 0).unwrap_err();
        match e {
            ReadError::Syntax { line, offset, .. } => {
                assert_eq!(line, 5);
                assert_eq!(offset, 21);
            }
            other => panic!("{other}"),
        }
    }

    #[test]
    fn out_of_range_fields_are_named() {
        let cases: [(&[u8], &str); 5] = [
            (
                br#"{"reader":"","tag":"AB","kind":"key","rssi":-70}"#,
                "reader",
            ),
            (
                br#"{"reader":"r 1","tag":"AB","kind":"key","rssi":-70}"#,
                "reader",
            ),
            (
                br#"{"reader":"r1","tag":"XYZ","kind":"key","rssi":-70}"#,
                "tag",
            ),
            (
                br#"{"reader":"r1","tag":"AB","kind":"key","rssi":5}"#,
                "rssi",
            ),
            (
                br#"{"reader":"r1","tag":"AB","kind":"key","rssi":-5,"time":"yesterday"}"#,
                "time",
            ),
        ];
        for (line, want) in cases {
            match parse_read(line, 1, 0) {
                Err(ReadError::Invalid { field, .. }) => assert_eq!(field, want),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn a_tag_longer_than_the_limit_is_invalid() {
        let line = format!(
            r#"{{"reader":"r1","tag":"{}","kind":"bike","rssi":-1}}"#,
            "A".repeat(MAX_TAG_LEN + 1)
        );
        assert!(matches!(
            parse_read(line.as_bytes(), 1, 0),
            Err(ReadError::Invalid { field: "tag", .. })
        ));
    }

    #[test]
    fn a_record_over_the_size_limit_is_oversized() {
        let big = vec![b' '; MAX_LINE_BYTES + 1];
        assert!(matches!(
            parse_read(&big, 9, 0),
            Err(ReadError::Oversized { line: 9, .. })
        ));
    }
}
