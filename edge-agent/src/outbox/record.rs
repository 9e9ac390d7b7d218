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
    use protocol::{AlertKind, AlertPhase, AlertSource, UtcMillis};

    fn alert(severity: Severity) -> Alert {
        Alert {
            schema: protocol::SCHEMA_VERSION,
            id: "01J00000000000000000000000".into(),
            incident: "01J00000000000000000000000".into(),
            phase: AlertPhase::Start,
            site: "site".into(),
            source: AlertSource::Camera("cam".into()),
            kind: AlertKind::Zone,
            severity,
            rule: "rule".into(),
            time: UtcMillis(5),
            started_at: UtcMillis(5),
            ended_at: None,
            location: None,
            track: None,
            label: None,
            score: None,
            direction: None,
            count: None,
            detections: Vec::new(),
            tag: None,
            model: None,
            detail: None,
            snapshot: None,
        }
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
    fn keys_sort_in_sequence_order() {
        assert!(key(255) < key(256));
        assert_eq!(seq_of(&key(u64::MAX)), Some(u64::MAX));
        assert_eq!(seq_of(b"short"), None);
    }
}
