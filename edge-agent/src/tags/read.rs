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
//! Choice: `time` is parsed by a small RFC 3339 parser here ([`parse_rfc3339_ms`]) rather than
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

/// Parses an RFC 3339 date-time (`YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`) to ms since the epoch.
/// Fractions beyond milliseconds are truncated. Returns `None` for anything else.
pub fn parse_rfc3339_ms(s: &str) -> Option<Timestamp> {
    let b = s.as_bytes();
    let num = |from: usize, to: usize| -> Option<i64> {
        let digits = b.get(from..to)?;
        digits.iter().try_fold(0i64, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
        })
    };
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, minute, second) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let mut i = 19;
    let mut millis = 0;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 3 {
                millis = millis * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        let digits = i - start;
        if digits == 0 {
            return None;
        }
        for _ in digits..3 {
            millis *= 10;
        }
    }
    let offset_min = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let (oh, om) = (num(i + 1, i + 3)?, num(i + 4, i + 6)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let m = oh * 60 + om;
            if *sign == b'-' { -m } else { m }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = ((days * 24 + hour) * 60 + minute) * 60 + second - offset_min * 60;
    Some(secs * 1000 + millis)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

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

    #[test]
    fn rfc3339_parses_epoch_offsets_and_fractions() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339_ms("1970-01-01T08:00:00.5+08:00"), Some(500));
        assert_eq!(parse_rfc3339_ms("1969-12-31T23:59:59.999999Z"), Some(-1));
        assert_eq!(
            parse_rfc3339_ms("2024-02-29T12:00:00-01:30"),
            Some(1_709_213_400_000)
        );
    }

    #[test]
    fn rfc3339_rejects_malformed_times() {
        for bad in [
            "2026-11-22",
            "2026-11-22T08:00:00",
            "2026-13-01T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "2026-11-22T24:00:00Z",
            "2026-11-22T08:00:60Z",
            "2026-11-22T08:00:00.Z",
            "2026-11-22T08:00:00+0800",
            "2026-11-22T08:00:00Zjunk",
        ] {
            assert_eq!(parse_rfc3339_ms(bad), None, "{bad}");
        }
    }
}
