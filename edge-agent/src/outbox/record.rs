//! The on-disk record of one alert: a fixed 16-byte header, then the alert's JSON.
//!
//! ```text
//! offset  size  field
//!      0     2  magic  b"OB"
//!      2     1  record format version (RECORD_VERSION)
//!      3     1  severity: 0 info, 1 minor, 2 major, 3 critical
//!      4     8  stored_ms: i64 big-endian, the `now_ms` given to `append`
//!     12     4  json_len: u32 big-endian, must equal the bytes that follow
//!     16     …  the alert, `serde_json` of `protocol::Alert`
//! ```
//!
//! The header carries what eviction and expiry need, so neither parses JSON; `json_len` makes a
//! truncated or padded value a detectable corruption rather than a JSON error far away.

use protocol::{Alert, Severity};

/// First two bytes of every record.
const MAGIC: [u8; 2] = *b"OB";
/// Version of the record layout above. A record with another version is reported as corrupt
/// (the store's schema version gates whole-store changes; this one catches stray writes).
pub(crate) const RECORD_VERSION: u8 = 1;
/// Bytes before the JSON.
pub(crate) const HEADER_LEN: usize = 16;

/// What the header says about a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub severity: Severity,
    pub stored_ms: i64,
    pub json_len: u32,
}

/// Severity as the header byte and as an index into per-severity arrays (ordered like
/// [`Severity`]: lower index, lower severity).
pub(crate) fn severity_index(s: Severity) -> usize {
    match s {
        Severity::Info => 0,
        Severity::Minor => 1,
        Severity::Major => 2,
        Severity::Critical => 3,
    }
}

/// Inverse of [`severity_index`].
pub(crate) fn severity_from_index(i: usize) -> Option<Severity> {
    Some(match i {
        0 => Severity::Info,
        1 => Severity::Minor,
        2 => Severity::Major,
        3 => Severity::Critical,
        _ => return None,
    })
}

/// The full record for `alert` stored at `stored_ms`.
pub(crate) fn encode(alert: &Alert, stored_ms: i64) -> Result<Vec<u8>, serde_json::Error> {
    let json = serde_json::to_vec(alert)?;
    let mut out = Vec::with_capacity(HEADER_LEN + json.len());
    out.extend_from_slice(&MAGIC);
    out.push(RECORD_VERSION);
    // Indices are 0..=3, they fit a byte.
    out.push(severity_index(alert.severity) as u8);
    out.extend_from_slice(&stored_ms.to_be_bytes());
    // An alert is bounded far below 4 GiB by the protocol's snapshot cap; saturate rather than
    // wrap so an absurd one is caught as corrupt on read instead of being misread.
    out.extend_from_slice(&u32::try_from(json.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(&json);
    Ok(out)
}

/// Reads and checks the header of `value`. `Err` says what is wrong, for the corruption log.
pub(crate) fn decode_header(value: &[u8]) -> Result<Header, String> {
    if value.len() < HEADER_LEN {
        return Err(format!(
            "record is {} bytes, shorter than its {HEADER_LEN}-byte header",
            value.len()
        ));
    }
    if value[0..2] != MAGIC {
        return Err(format!("bad magic {:02x?}", &value[0..2]));
    }
    if value[2] != RECORD_VERSION {
        return Err(format!(
            "record version {} (this build reads {RECORD_VERSION})",
            value[2]
        ));
    }
    let severity = severity_from_index(usize::from(value[3]))
        .ok_or_else(|| format!("bad severity byte {}", value[3]))?;
    let mut ms = [0u8; 8];
    ms.copy_from_slice(&value[4..12]);
    let mut len = [0u8; 4];
    len.copy_from_slice(&value[12..16]);
    let json_len = u32::from_be_bytes(len);
    let actual = value.len() - HEADER_LEN;
    if usize::try_from(json_len).ok() != Some(actual) {
        return Err(format!(
            "header says {json_len} bytes of JSON, record holds {actual}"
        ));
    }
    Ok(Header {
        severity,
        stored_ms: i64::from_be_bytes(ms),
        json_len,
    })
}

/// Header and alert of a full record.
pub(crate) fn decode(value: &[u8]) -> Result<(Header, Alert), String> {
    let header = decode_header(value)?;
    let alert = serde_json::from_slice(&value[HEADER_LEN..])
        .map_err(|e| format!("alert JSON does not parse: {e}"))?;
    Ok((header, alert))
}

/// First two bytes of every quarantined value.
const QUARANTINE_MAGIC: [u8; 2] = *b"OQ";
/// Version of the quarantine prefix below.
const QUARANTINE_VERSION: u8 = 1;
/// Bytes of the quarantine prefix before the reason text.
const QUARANTINE_HEADER_LEN: usize = 14;
/// Longest reason text kept: the broker's reason string is the hub's choice, bounded here so a
/// hostile or broken hub cannot grow the store through it.
pub(crate) const MAX_REASON_BYTES: usize = 256;

/// What the quarantine prefix of a value says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct QuarantineHeader {
    /// The MQTT 5 PUBACK reason code the broker refused the alert with.
    pub reason_code: u8,
    /// When the alert was moved to the quarantine, ms since the epoch.
    pub quarantined_ms: i64,
    /// The reason's text (the broker's reason string, or the code's name).
    pub reason: String,
}

/// `reason` cut to at most [`MAX_REASON_BYTES`], at a character boundary.
pub(crate) fn bound_reason(reason: &str) -> &str {
    if reason.len() <= MAX_REASON_BYTES {
        return reason;
    }
    let mut end = MAX_REASON_BYTES;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

/// The quarantine tree's value for the outbox record `record`: a prefix, then the record
/// unchanged (so moving it back is cutting the prefix off).
///
/// ```text
/// offset  size  field
///      0     2  magic  b"OQ"
///      2     1  quarantine prefix version (QUARANTINE_VERSION)
///      3     1  reason code: the MQTT 5 PUBACK reason (0x99, 0x87, ...)
///      4     8  quarantined_ms: i64 big-endian
///     12     2  reason_len: u16 big-endian, at most MAX_REASON_BYTES
///     14     …  reason text, UTF-8
///      …     …  the outbox record, exactly as it was in `alerts`
/// ```
pub(crate) fn encode_quarantined(
    record: &[u8],
    reason_code: u8,
    quarantined_ms: i64,
    reason: &str,
) -> Vec<u8> {
    let reason = bound_reason(reason);
    let mut out = Vec::with_capacity(QUARANTINE_HEADER_LEN + reason.len() + record.len());
    out.extend_from_slice(&QUARANTINE_MAGIC);
    out.push(QUARANTINE_VERSION);
    out.push(reason_code);
    out.extend_from_slice(&quarantined_ms.to_be_bytes());
    // bound_reason keeps it far below u16::MAX.
    out.extend_from_slice(
        &u16::try_from(reason.len())
            .unwrap_or(u16::MAX)
            .to_be_bytes(),
    );
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(record);
    out
}

/// Splits a quarantine value into its prefix and the outbox record it holds (not checked:
/// see [`decode_header`]). `Err` says what is wrong with the prefix.
pub(crate) fn decode_quarantined(value: &[u8]) -> Result<(QuarantineHeader, &[u8]), String> {
    if value.len() < QUARANTINE_HEADER_LEN {
        return Err(format!(
            "quarantine value is {} bytes, shorter than its {QUARANTINE_HEADER_LEN}-byte prefix",
            value.len()
        ));
    }
    if value[0..2] != QUARANTINE_MAGIC {
        return Err(format!("bad quarantine magic {:02x?}", &value[0..2]));
    }
    if value[2] != QUARANTINE_VERSION {
        return Err(format!(
            "quarantine prefix version {} (this build reads {QUARANTINE_VERSION})",
            value[2]
        ));
    }
    let mut ms = [0u8; 8];
    ms.copy_from_slice(&value[4..12]);
    let reason_len = usize::from(u16::from_be_bytes([value[12], value[13]]));
    if reason_len > MAX_REASON_BYTES {
        return Err(format!(
            "quarantine reason of {reason_len} bytes (at most {MAX_REASON_BYTES})"
        ));
    }
    let rest = &value[QUARANTINE_HEADER_LEN..];
    if rest.len() < reason_len {
        return Err(format!(
            "quarantine reason of {reason_len} bytes, value holds {}",
            rest.len()
        ));
    }
    let reason = std::str::from_utf8(&rest[..reason_len])
        .map_err(|e| format!("quarantine reason is not UTF-8: {e}"))?
        .to_string();
    Ok((
        QuarantineHeader {
            reason_code: value[3],
            quarantined_ms: i64::from_be_bytes(ms),
            reason,
        },
        &rest[reason_len..],
    ))
}

/// Big-endian key of `seq`, so sled's byte order is sequence order.
pub(crate) fn key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

/// Sequence number of a key; `None` when the key is not 8 bytes.
pub(crate) fn seq_of(key: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(key).ok().map(u64::from_be_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::UtcMillis;

    fn alert(severity: Severity) -> Alert {
        testkit::AlertBuilder::new("site", 0)
            .severity(severity)
            .at(UtcMillis(5))
            .build()
    }

    #[test]
    fn record_round_trips_header_and_alert() {
        let a = alert(Severity::Major);
        let bytes = encode(&a, -42).unwrap();
        let (h, back) = decode(&bytes).unwrap();
        assert_eq!(h.severity, Severity::Major);
        assert_eq!(h.stored_ms, -42);
        assert_eq!(h.json_len as usize, bytes.len() - HEADER_LEN);
        assert_eq!(back, a);
    }

    #[test]
    fn damaged_records_say_what_is_wrong() {
        let good = encode(&alert(Severity::Info), 1).unwrap();
        assert!(decode_header(&good[..10]).unwrap_err().contains("shorter"));
        let mut magic = good.clone();
        magic[0] = b'X';
        assert!(decode_header(&magic).unwrap_err().contains("magic"));
        let mut version = good.clone();
        version[2] = 9;
        assert!(decode_header(&version).unwrap_err().contains("version 9"));
        let mut sev = good.clone();
        sev[3] = 7;
        assert!(decode_header(&sev).unwrap_err().contains("severity"));
        let truncated = &good[..good.len() - 1];
        assert!(
            decode_header(truncated)
                .unwrap_err()
                .contains("header says")
        );
        let mut json = good.clone();
        let last = json.len() - 1;
        json[last] = b'!';
        assert!(decode(&json).unwrap_err().contains("JSON"));
    }

    #[test]
    fn quarantined_value_round_trips_and_keeps_the_record_unchanged() {
        let record = encode(&alert(Severity::Critical), 7).unwrap();
        let value = encode_quarantined(&record, 0x99, 1_000, "payload format invalid");
        let (q, inner) = decode_quarantined(&value).unwrap();
        assert_eq!(q.reason_code, 0x99);
        assert_eq!(q.quarantined_ms, 1_000);
        assert_eq!(q.reason, "payload format invalid");
        assert_eq!(inner, record.as_slice());
        assert_eq!(decode(inner).unwrap().0.stored_ms, 7);
    }

    #[test]
    fn quarantine_reason_is_bounded_at_a_char_boundary_and_damage_is_named() {
        let long = "é".repeat(MAX_REASON_BYTES);
        let value = encode_quarantined(b"rec", 0x87, 0, &long);
        let (q, inner) = decode_quarantined(&value).unwrap();
        assert!(q.reason.len() <= MAX_REASON_BYTES && q.reason.len() >= MAX_REASON_BYTES - 1);
        assert_eq!(inner, b"rec");
        assert!(
            decode_quarantined(&value[..5])
                .unwrap_err()
                .contains("shorter")
        );
        let mut magic = value.clone();
        magic[1] = b'X';
        assert!(decode_quarantined(&magic).unwrap_err().contains("magic"));
        let mut len = value.clone();
        len[12] = 0xff;
        assert!(decode_quarantined(&len).unwrap_err().contains("reason of"));
    }

    #[test]
    fn keys_sort_in_sequence_order() {
        assert!(key(255) < key(256));
        assert_eq!(seq_of(&key(u64::MAX)), Some(u64::MAX));
        assert_eq!(seq_of(b"short"), None);
    }
}
