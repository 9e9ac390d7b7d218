//! The alerts `edge-tools emit` sends: deterministic in every field, so a harness (the chaos
//! test's subscriber, the hub's kill test) knows every id before it is sent and can check
//! each received alert byte for byte, and so the agent's uplink tests and drain bench send
//! realistic, incompressible snapshots.

use protocol::alert::{IdGenerator, Snapshot};
use protocol::{Alert, AlertKind, AlertPhase, AlertSource, Severity, UtcMillis};

/// Time of alert 0 (2026-11-18T…Z) in the chaos test and the benches: fixed so a run's ids
/// are known before it starts.
pub const BASE_MS: i64 = 1_795_000_000_000;
/// The camera every emitted alert names.
const CAMERA: &str = "emit-cam";
/// The rule every emitted alert names.
const RULE: &str = "emit";
/// Snapshot pixel size (the agent's working width).
const SNAPSHOT_WIDTH: u32 = 640;
const SNAPSHOT_HEIGHT: u32 = 480;

/// The id of emitted alert `index`: time-ordered (alert `i` is at `base_ms + i`) and the same
/// in every run, so the harness knows every id before the agent sends it.
pub fn alert_id(base_ms: i64, index: u64) -> String {
    IdGenerator::with_salt(0).make(event_ms(base_ms, index), &["emit", &index.to_string()])
}

fn event_ms(base_ms: i64, index: u64) -> i64 {
    base_ms.saturating_add(i64::try_from(index).unwrap_or(i64::MAX))
}

/// Emitted alert `index`: a zone `start` (its own incident) from camera `emit-cam`, rule
/// `emit`, severity major, `detail` = the index, with a `snapshot_bytes` JPEG-shaped snapshot
/// (none when 0). Deterministic, so the subscriber can check every received alert byte for
/// byte.
pub fn make_alert(site: &str, base_ms: i64, index: u64, snapshot_bytes: usize) -> Alert {
    let id = alert_id(base_ms, index);
    let time = UtcMillis(event_ms(base_ms, index));
    Alert {
        schema: protocol::SCHEMA_VERSION,
        incident: id.clone(),
        id,
        phase: AlertPhase::Start,
        site: site.to_string(),
        source: AlertSource::Camera(CAMERA.to_string()),
        kind: AlertKind::Zone,
        severity: Severity::Major,
        rule: RULE.to_string(),
        time,
        started_at: time,
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
        detail: Some(index.to_string()),
        snapshot: (snapshot_bytes > 0).then(|| Snapshot {
            camera: CAMERA.to_string(),
            time,
            width: SNAPSHOT_WIDTH,
            height: SNAPSHOT_HEIGHT,
            jpeg: snapshot_jpeg(index, snapshot_bytes),
        }),
    }
}

/// `len` bytes (at least 4) shaped like a JPEG: SOI `FF D8`, filler, EOI `FF D9`. The filler is
/// pseudo-random per alert so the payload is as incompressible as a real snapshot and two
/// alerts never share one; it holds no `FF`, so the only markers are SOI and EOI and a reader
/// scanning for EOI finds the real end.
pub fn snapshot_jpeg(index: u64, len: usize) -> Vec<u8> {
    let len = len.max(4);
    let mut jpeg = Vec::with_capacity(len);
    jpeg.extend_from_slice(&[0xFF, 0xD8]);
    let mut state = index ^ 0x6a09_e667_f3bc_c908;
    while jpeg.len() < len - 2 {
        for b in splitmix64(&mut state).to_le_bytes() {
            // Skipped rather than remapped, so the other 255 values stay equally likely.
            if b != 0xFF && jpeg.len() < len - 2 {
                jpeg.push(b);
            }
        }
    }
    jpeg.extend_from_slice(&[0xFF, 0xD9]);
    jpeg
}

/// SplitMix64: a tiny well-mixed generator, enough for filler and outage lengths.
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_fixed_distinct_and_time_ordered() {
        let a = alert_id(BASE_MS, 0);
        assert_eq!(a, alert_id(BASE_MS, 0));
        assert_eq!(
            a,
            IdGenerator::with_salt(0).make(BASE_MS, &["emit", "0"]),
            "the contract's formula"
        );
        let ids: Vec<String> = (0..2000).map(|i| alert_id(BASE_MS, i)).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "time-ordered");
        assert_eq!(
            alert_id(BASE_MS, 5),
            IdGenerator::with_salt(0).make(BASE_MS + 5, &["emit", "5"])
        );
    }

    #[test]
    fn an_emitted_alert_is_a_zone_start_with_a_jpeg_shaped_snapshot() {
        let a = make_alert("chaos", BASE_MS, 42, 20_000);
        assert_eq!(a.id, alert_id(BASE_MS, 42));
        assert_eq!(a.incident, a.id);
        assert_eq!(a.phase, AlertPhase::Start);
        assert_eq!(a.kind, AlertKind::Zone);
        assert_eq!(a.severity, Severity::Major);
        assert_eq!(a.rule, "emit");
        assert_eq!(a.source, AlertSource::Camera("emit-cam".into()));
        assert_eq!(a.site, "chaos");
        assert_eq!(a.detail.as_deref(), Some("42"));
        assert_eq!(a.time, UtcMillis(BASE_MS + 42));
        assert_eq!(a.started_at, a.time);
        assert_eq!(a.schema, protocol::SCHEMA_VERSION);
        let s = a.snapshot.as_ref().unwrap();
        assert_eq!(
            (s.width, s.height, s.camera.as_str()),
            (640, 480, "emit-cam")
        );
        assert_eq!(s.jpeg.len(), 20_000);
        assert_eq!(&s.jpeg[..2], &[0xFF, 0xD8]);
        assert_eq!(&s.jpeg[s.jpeg.len() - 2..], &[0xFF, 0xD9]);
        assert!(
            !s.jpeg[2..s.jpeg.len() - 2].contains(&0xFF),
            "no marker inside"
        );
        // Deterministic, different per alert, and survives the wire.
        assert_eq!(a, make_alert("chaos", BASE_MS, 42, 20_000));
        let other = make_alert("chaos", BASE_MS, 43, 20_000);
        assert_ne!(s.jpeg, other.snapshot.unwrap().jpeg);
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<Alert>(&json).unwrap(), a);
        assert!(make_alert("chaos", BASE_MS, 1, 0).snapshot.is_none());
        assert_eq!(
            make_alert("chaos", BASE_MS, 1, 1).snapshot.unwrap().jpeg,
            vec![0xFF, 0xD8, 0xFF, 0xD9]
        );
    }

    #[test]
    fn snapshot_filler_does_not_compress_trivially() {
        let jpeg = snapshot_jpeg(7, 64 * 1024);
        let mut seen = [0u32; 256];
        for &b in &jpeg {
            seen[usize::from(b)] += 1;
        }
        // Close to uniform over 255 values: no byte value is more than twice its share.
        let share = jpeg.len() as u32 / 255;
        assert!(seen.iter().all(|&n| n < share * 2), "{seen:?}");
        assert!(seen[..255].iter().all(|&n| n > share / 2), "{seen:?}");
    }
}
