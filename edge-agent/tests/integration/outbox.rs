//! The durable alert outbox on real sled stores in temporary directories.

// Test helpers panic on a failed set-up step, like the tests themselves.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use edge_agent::outbox::{Outbox, OutboxConfig, OutboxError, SCHEMA_VERSION, inspect};
use protocol::{Alert, Severity, UtcMillis};
use testkit::AlertBuilder;

/// Size of each test alert's snapshot: a realistic camera JPEG.
const SNAPSHOT_BYTES: usize = 20_000;

/// An alert with every required field and a 20 KB snapshot; `n` makes its id unique.
fn alert(n: u32, severity: Severity) -> Alert {
    AlertBuilder::new("site-1", u64::from(n))
        .severity(severity)
        .at(UtcMillis(1_700_000_000_000 + i64::from(n)))
        .camera("gate")
        .rule("gate-zone")
        .snapshot(
            (0..SNAPSHOT_BYTES)
                .map(|i| (i * 31 + n as usize) as u8)
                .collect(),
        )
        .build()
}

fn store(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("outbox")
}

fn ids(pending: &[(u64, Alert)]) -> Vec<String> {
    pending.iter().map(|(_, a)| a.id.clone()).collect()
}

/// Bytes one test alert takes in the outbox (they are all the same size).
fn record_size() -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let mut o = Outbox::open(store(&dir), OutboxConfig::default()).unwrap();
    o.append(&alert(0, Severity::Info), 0).unwrap();
    o.bytes()
}

/// Every file under `dir` with its content.
fn snapshot_files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.insert(e.path(), std::fs::read(e.path()).unwrap());
            }
        }
    }
    out
}

#[test]
fn survives_close_and_reopen_with_sequence_continuing_and_order_kept() {
    let dir = tempfile::tempdir().unwrap();
    let first: Vec<u64> = {
        let mut o = Outbox::open(store(&dir), OutboxConfig::default()).unwrap();
        (0..5)
            .map(|n| o.append(&alert(n, Severity::Minor), 1_000).unwrap())
            .collect()
    };
    assert!(first.windows(2).all(|w| w[0] < w[1]), "{first:?}");

    let mut o = Outbox::open(store(&dir), OutboxConfig::default()).unwrap();
    assert_eq!(o.len(), 5);
    let next = o.append(&alert(5, Severity::Minor), 2_000).unwrap();
    assert!(
        next > first[4],
        "seq {next} after restart, last was {}",
        first[4]
    );

    let all = o.pending(None, 100).unwrap();
    assert_eq!(
        ids(&all),
        (0..6)
            .map(|n| alert(n, Severity::Minor).id)
            .collect::<Vec<_>>()
    );
    assert_eq!(all[5].1, alert(5, Severity::Minor));
    // Paging: after the third, at most two.
    let page = o.pending(Some(all[2].0), 2).unwrap();
    assert_eq!(
        page.iter().map(|p| p.0).collect::<Vec<_>>(),
        [all[3].0, all[4].0]
    );
    assert!(o.pending(Some(u64::MAX), 10).unwrap().is_empty());
}

#[test]
fn ack_deletes_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = {
        let mut o = Outbox::open(store(&dir), OutboxConfig::default()).unwrap();
        let a = o.append(&alert(1, Severity::Major), 0).unwrap();
        let b = o.append(&alert(2, Severity::Major), 0).unwrap();
        let one = o.bytes() / 2;
        assert!(o.ack(a).unwrap());
        assert!(!o.ack(a).unwrap(), "second ack of the same seq is a no-op");
        assert!(!o.ack(12_345_678).unwrap(), "unknown seq is a no-op");
        assert_eq!(o.len(), 1);
        assert_eq!(o.bytes(), one);
        (a, b)
    };
    // The deletion survives a restart (flushed on close).
    let mut o = Outbox::open(store(&dir), OutboxConfig::default()).unwrap();
    let left = o.pending(None, 10).unwrap();
    assert_eq!(left.iter().map(|p| p.0).collect::<Vec<_>>(), [b]);
    assert!(!o.ack(a).unwrap());
    assert!(o.ack(b).unwrap());
    assert!(o.is_empty());
    assert_eq!(o.bytes(), 0);
}

#[test]
fn full_outbox_evicts_lowest_severity_oldest_first_and_counts_it() {
    let size = record_size();
    let dir = tempfile::tempdir().unwrap();
    let config = OutboxConfig {
        max_bytes: 4 * size + size / 2,
        ..OutboxConfig::default()
    };
    let mut o = Outbox::open(store(&dir), config).unwrap();
    for (n, s) in [
        (1, Severity::Info),
        (2, Severity::Major),
        (3, Severity::Info),
        (4, Severity::Minor),
    ] {
        o.append(&alert(n, s), 0).unwrap();
    }
    assert_eq!(o.stats().evicted.total(), 0);

    o.append(&alert(5, Severity::Major), 0).unwrap(); // evicts info 1 (oldest info)
    o.append(&alert(6, Severity::Major), 0).unwrap(); // evicts info 3
    o.append(&alert(7, Severity::Critical), 0).unwrap(); // evicts minor 4
    o.append(&alert(8, Severity::Major), 0).unwrap(); // evicts major 2 (oldest major)

    let left = ids(&o.pending(None, 10).unwrap());
    let want: Vec<String> = [
        (5, Severity::Major),
        (6, Severity::Major),
        (7, Severity::Critical),
        (8, Severity::Major),
    ]
    .into_iter()
    .map(|(n, s)| alert(n, s).id)
    .collect();
    assert_eq!(left, want);
    let stats = o.stats();
    assert_eq!(stats.evicted.get(Severity::Info), 2);
    assert_eq!(stats.evicted.get(Severity::Minor), 1);
    assert_eq!(stats.evicted.get(Severity::Major), 1);
    assert_eq!(stats.evicted.get(Severity::Critical), 0);
    assert_eq!(stats.dropped.total(), 0);
    assert_eq!(stats.depth, 4);
    assert!(stats.bytes <= 4 * size + size / 2);
}

#[test]
fn new_lowest_severity_alert_is_dropped_when_nothing_lower_can_go() {
    let size = record_size();
    let dir = tempfile::tempdir().unwrap();
    let config = OutboxConfig {
        max_bytes: 3 * size + size / 2,
        ..OutboxConfig::default()
    };
    let mut o = Outbox::open(store(&dir), config).unwrap();
    let kept: Vec<u64> = (1..=3)
        .map(|n| o.append(&alert(n, Severity::Major), 0).unwrap())
        .collect();

    let err = o.append(&alert(9, Severity::Minor), 0).unwrap_err();
    assert!(
        matches!(
            err,
            OutboxError::Full {
                severity: Severity::Minor,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("dropped"), "{err}");
    let stats = o.stats();
    assert_eq!(stats.dropped.get(Severity::Minor), 1);
    assert_eq!(
        stats.evicted.total(),
        0,
        "nothing is evicted for an alert that is dropped"
    );
    assert_eq!(
        o.pending(None, 10)
            .unwrap()
            .iter()
            .map(|p| p.0)
            .collect::<Vec<_>>(),
        kept
    );
}

#[test]
fn alerts_older_than_the_ttl_expire_and_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let config = OutboxConfig {
        ttl_ms: 60_000,
        ..OutboxConfig::default()
    };
    let mut o = Outbox::open(store(&dir), config).unwrap();
    o.append(&alert(1, Severity::Critical), 0).unwrap();
    o.append(&alert(2, Severity::Info), 30_000).unwrap();
    assert_eq!(
        o.expire(60_000).unwrap(),
        0,
        "exactly ttl old is not older than ttl"
    );
    assert_eq!(o.expire(60_001).unwrap(), 1);
    assert_eq!(o.stats().oldest_ms, Some(30_000));
    // append expires too.
    o.append(&alert(3, Severity::Minor), 100_000).unwrap();
    let stats = o.stats();
    assert_eq!(stats.expired, 2);
    assert_eq!(stats.depth, 1);
    assert_eq!(
        ids(&o.pending(None, 10).unwrap()),
        [alert(3, Severity::Minor).id]
    );
}

#[test]
fn unknown_schema_version_is_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let path = store(&dir);
    drop(Outbox::open(&path, OutboxConfig::default()).unwrap());
    {
        let db = open_sled(&path);
        db.open_tree("meta")
            .unwrap()
            .insert("schema", &99u32.to_be_bytes())
            .unwrap();
        db.flush().unwrap();
    }
    let err = Outbox::open(&path, OutboxConfig::default()).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            OutboxError::UnknownSchema {
                found: 99,
                supported: SCHEMA_VERSION,
                ..
            }
        ),
        "{msg}"
    );
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("schema version 99"), "{msg}");
    assert!(
        msg.contains(&format!("reads version {SCHEMA_VERSION}")),
        "{msg}"
    );
    let err = inspect(&path).unwrap_err();
    assert!(
        matches!(err, OutboxError::UnknownSchema { found: 99, .. }),
        "{err}"
    );
}

#[test]
fn corrupt_records_are_skipped_counted_kept_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = store(&dir);
    let seqs: Vec<u64> = {
        let mut o = Outbox::open(&path, OutboxConfig::default()).unwrap();
        (1..=3)
            .map(|n| o.append(&alert(n, Severity::Minor), 5).unwrap())
            .collect()
    };
    // Garbage over the second alert; a good header with broken JSON after the third.
    let bad_json_seq = seqs[2] + 1;
    {
        let db = open_sled(&path);
        let alerts = db.open_tree("alerts").unwrap();
        alerts
            .insert(seqs[1].to_be_bytes(), &b"garbage"[..])
            .unwrap();
        let json = b"{not json";
        let mut value = b"OB\x01\x01".to_vec();
        value.extend_from_slice(&5i64.to_be_bytes());
        value.extend_from_slice(&(json.len() as u32).to_be_bytes());
        value.extend_from_slice(json);
        alerts.insert(bad_json_seq.to_be_bytes(), value).unwrap();
        db.flush().unwrap();
    }

    {
        let mut o = Outbox::open(&path, OutboxConfig::default()).unwrap();
        assert_eq!(o.stats().corrupt, 1, "the bad header is found on open");
        let good = o.pending(None, 10).unwrap();
        assert_eq!(
            good.iter().map(|p| p.0).collect::<Vec<_>>(),
            [seqs[0], seqs[2]]
        );
        assert_eq!(o.stats().corrupt, 2, "the bad JSON is found when read");
        assert_eq!(o.len(), 4, "corrupt records are kept");
        // New appends still go after everything, corrupt ones included.
        let next = o.append(&alert(4, Severity::Minor), 6).unwrap();
        assert!(next > bad_json_seq);
        assert_eq!(o.pending(Some(seqs[2]), 10).unwrap().len(), 1);
    }

    let report = inspect(&path).unwrap();
    let corrupt: Vec<u64> = report.corrupt.iter().map(|c| c.0).collect();
    assert_eq!(corrupt, [seqs[1], bad_json_seq], "{report}");
    assert_eq!(report.count, 3);
    assert_eq!(report.per_severity.get(Severity::Minor), 3);
    assert_eq!(report.schema_version, Some(SCHEMA_VERSION));
    let text = report.to_string();
    assert!(text.contains(&format!("seq {}: ", seqs[1])), "{text}");

    // Still on disk for whoever investigates.
    let db = open_sled(&path);
    let alerts = db.open_tree("alerts").unwrap();
    assert_eq!(
        alerts.get(seqs[1].to_be_bytes()).unwrap().as_deref(),
        Some(&b"garbage"[..])
    );
}

#[test]
fn inspect_does_not_create_or_change_anything() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothing-here");
    let err = inspect(&missing).unwrap_err();
    assert!(matches!(err, OutboxError::NotFound { .. }), "{err}");
    assert!(!missing.exists(), "inspect created {}", missing.display());

    let path = store(&dir);
    {
        let mut o = Outbox::open(&path, OutboxConfig::default()).unwrap();
        o.append(&alert(1, Severity::Critical), 10).unwrap();
        o.append(&alert(2, Severity::Info), 20).unwrap();
    }
    let before = snapshot_files(&path);
    let report = inspect(&path).unwrap();
    assert_eq!(snapshot_files(&path), before, "inspect changed the store");
    assert_eq!(report.count, 2);
    assert_eq!(report.per_severity.critical, 1);
    assert_eq!(report.per_severity.info, 1);
    assert_eq!((report.oldest_ms, report.newest_ms), (Some(10), Some(20)));
    assert!(report.bytes > 2 * SNAPSHOT_BYTES as u64);
    assert!(report.corrupt.is_empty());

    // A store never opened for writing has no schema key, and inspect does not add one.
    let raw = dir.path().join("raw");
    drop(open_sled(&raw));
    let report = inspect(&raw).unwrap();
    assert_eq!(report.schema_version, None);
    let db = open_sled(&raw);
    assert!(
        db.open_tree("meta")
            .unwrap()
            .get("schema")
            .unwrap()
            .is_none()
    );
}

#[test]
fn invalid_config_is_refused_with_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let config = OutboxConfig {
        max_bytes: 1,
        ttl_ms: 0,
        held_max_bytes: 1,
        held_max_alerts: 0,
    };
    let err = Outbox::open(store(&dir), config).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("max_bytes:")
            && msg.contains("ttl_ms:")
            && msg.contains("held_max_bytes:")
            && msg.contains("held_max_alerts:"),
        "{msg}"
    );
    assert!(!store(&dir).exists());
}

/// The raw value of `seq` in the store's tree `tree` (the store must be closed).
fn raw(path: &Path, tree: &str, seq: u64) -> Option<Vec<u8>> {
    let db = open_sled(path);
    let tree = db.open_tree(tree).unwrap();
    tree.get(seq.to_be_bytes()).unwrap().map(|v| v.to_vec())
}

#[test]
fn quarantine_moves_an_alert_out_of_the_queue_kept_whole_across_reopen_and_requeue() {
    let dir = tempfile::tempdir().unwrap();
    let path = store(&dir);
    let seqs: Vec<u64> = {
        let mut o = Outbox::open(&path, OutboxConfig::default()).unwrap();
        (1..=3)
            .map(|n| o.append(&alert(n, Severity::Major), 1_000).unwrap())
            .collect()
    };
    let record = raw(&path, "alerts", seqs[2]).unwrap();
    let before_bytes;
    {
        let mut o = Outbox::open(&path, OutboxConfig::default()).unwrap();
        before_bytes = o.bytes();
        let q = o
            .quarantine(seqs[2], 0x99, "not a valid alert", 5_000)
            .unwrap()
            .expect("the alert was in the queue");
        assert_eq!(q.seq, seqs[2]);
        assert_eq!(q.id, alert(3, Severity::Major).id);
        assert_eq!(
            (q.reason_code, q.reason.as_str()),
            (0x99, "not a valid alert")
        );
        assert_eq!((q.stored_ms, q.quarantined_ms), (1_000, 5_000));
        assert_eq!(q.unreadable, None);
        assert!(
            o.quarantine(seqs[2], 0x99, "again", 6_000)
                .unwrap()
                .is_none(),
            "a second move finds nothing in the queue"
        );
        // Out of the queue and the depth, still in the bytes (plus its prefix).
        assert_eq!(
            o.pending(None, 10)
                .unwrap()
                .iter()
                .map(|p| p.0)
                .collect::<Vec<_>>(),
            seqs[..2]
        );
        let stats = o.stats();
        assert_eq!((stats.depth, stats.quarantined), (2, 1));
        assert_eq!(o.len(), 2);
        let prefix = (14 + "not a valid alert".len()) as u64;
        assert_eq!(stats.bytes, before_bytes + prefix);
        assert_eq!(o.quarantined().unwrap(), vec![q]);
    }
    // On disk: only in the quarantine, holding the record byte for byte.
    assert_eq!(raw(&path, "alerts", seqs[2]), None);
    let value = raw(&path, "quarantine", seqs[2]).unwrap();
    assert!(value.ends_with(&record), "the record is kept unchanged");
    assert_eq!(&value[..4], b"OQ\x01\x99");

    {
        let mut o = Outbox::open(&path, OutboxConfig::default()).unwrap();
        let stats = o.stats();
        assert_eq!((stats.depth, stats.quarantined), (2, 1), "{stats:?}");
        assert_eq!(stats.oldest_ms, Some(1_000));
        assert_eq!(o.pending(None, 10).unwrap().len(), 2);
        // The quarantined seq was the highest: a new one still goes after it.
        let next = o.append(&alert(4, Severity::Major), 2_000).unwrap();
        assert!(next > seqs[2], "seq {next} reused below {}", seqs[2]);
        o.ack(next).unwrap();
    }

    let report = inspect(&path).unwrap();
    assert_eq!(report.count, 2);
    assert_eq!(report.quarantined.len(), 1);
    assert_eq!(report.quarantined[0].id, alert(3, Severity::Major).id);
    let text = report.to_string();
    assert!(text.contains("quarantined: 1"), "{text}");
    assert!(
        text.contains(&format!(
            "seq {} id {} Major reason 0x99 (not a valid alert) quarantined_ms=5000",
            seqs[2],
            alert(3, Severity::Major).id
        )),
        "{text}"
    );

    {
        let mut o = Outbox::open(&path, OutboxConfig::default()).unwrap();
        assert_eq!(o.requeue_quarantined().unwrap(), 1);
        assert_eq!(o.requeue_quarantined().unwrap(), 0);
        let stats = o.stats();
        assert_eq!((stats.depth, stats.quarantined), (3, 0));
        assert_eq!(stats.bytes, before_bytes);
    }
    assert_eq!(raw(&path, "quarantine", seqs[2]), None);
    assert_eq!(raw(&path, "alerts", seqs[2]), Some(record));
    let mut o = Outbox::open(&path, OutboxConfig::default()).unwrap();
    let all = o.pending(None, 10).unwrap();
    assert_eq!(all.iter().map(|p| p.0).collect::<Vec<_>>(), seqs);
    assert_eq!(all[2].1, alert(3, Severity::Major));
}

#[test]
fn quarantined_alerts_count_toward_the_cap_and_are_evicted_first_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    // (A critical record is 4 bytes larger: "critical" against "info" in its JSON.)
    let one = record_size();
    // Four records and two short quarantine prefixes (15 bytes each) fit, a fifth does not.
    let config = OutboxConfig {
        max_bytes: 4 * one + 100,
        ..OutboxConfig::default()
    };
    let mut o = Outbox::open(store(&dir), config).unwrap();
    let seqs: Vec<u64> = (1..=4)
        .map(|n| o.append(&alert(n, Severity::Critical), 10).unwrap())
        .collect();
    let before = o.bytes();
    o.quarantine(seqs[1], 0x87, "x", 20).unwrap().unwrap();
    o.quarantine(seqs[0], 0x99, "y", 30).unwrap().unwrap();
    assert_eq!(o.bytes(), before + 30, "two 15-byte prefixes");

    // An info alert evicts the oldest quarantined critical one, not a deliverable alert.
    let e = o.append(&alert(5, Severity::Info), 40).unwrap();
    let stats = o.stats();
    assert_eq!(stats.evicted.critical, 1, "{stats:?}");
    assert_eq!((stats.quarantine_evicted, stats.quarantined), (1, 1));
    assert_eq!(stats.dropped.total(), 0);
    let left: Vec<u64> = o.quarantined().unwrap().iter().map(|q| q.seq).collect();
    assert_eq!(left, [seqs[1]], "oldest (lowest seq) first");
    assert_eq!(
        o.pending(None, 10)
            .unwrap()
            .iter()
            .map(|p| p.0)
            .collect::<Vec<_>>(),
        [seqs[2], seqs[3], e]
    );

    // The next takes the last quarantined one; then the usual policy (lowest severity).
    o.append(&alert(6, Severity::Info), 50).unwrap();
    assert_eq!(o.stats().quarantined, 0);
    assert_eq!(o.stats().quarantine_evicted, 2);
    o.append(&alert(7, Severity::Info), 60).unwrap();
    let stats = o.stats();
    assert_eq!((stats.evicted.critical, stats.evicted.info), (2, 1));
    assert_eq!(stats.quarantine_evicted, 2);
    assert!(o.bytes() <= 4 * one + 100);
}

#[test]
fn quarantined_alerts_expire_by_the_same_ttl_counted() {
    let dir = tempfile::tempdir().unwrap();
    let config = OutboxConfig {
        ttl_ms: 60_000,
        ..OutboxConfig::default()
    };
    let mut o = Outbox::open(store(&dir), config).unwrap();
    let a = o.append(&alert(1, Severity::Critical), 0).unwrap();
    let b = o.append(&alert(2, Severity::Critical), 50_000).unwrap();
    o.quarantine(a, 0x99, "bad", 59_000).unwrap().unwrap();
    o.quarantine(b, 0x99, "bad", 59_000).unwrap().unwrap();
    // The age counts from when the alert was stored, not when it was quarantined.
    assert_eq!(o.expire(60_000).unwrap(), 0);
    assert_eq!(o.expire(60_001).unwrap(), 1);
    let stats = o.stats();
    assert_eq!((stats.expired, stats.quarantine_expired), (1, 1));
    assert_eq!(stats.quarantined, 1);
    assert_eq!(o.quarantined().unwrap()[0].seq, b);
    assert!(
        o.bytes() > SNAPSHOT_BYTES as u64,
        "the one left still counts"
    );
    assert_eq!(o.expire(110_001).unwrap(), 1);
    assert_eq!(o.stats().quarantined, 0);
    assert_eq!(o.bytes(), 0);
    assert!(o.is_empty());
}

#[test]
fn reopen_rereads_the_store_and_never_reuses_a_seq() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = Outbox::open(store(&dir), OutboxConfig::default()).unwrap();
    assert!(!o.needs_reopen());
    let seqs: Vec<u64> = (0..3)
        .map(|n| o.append(&alert(n, Severity::Minor), 1_000).unwrap())
        .collect();
    assert!(o.ack(seqs[2]).unwrap());
    let before = o.stats();
    // The in-memory sled handles are closed and the store opened again from disk (what the
    // uplink does after a storage failure, once the disk may take writes again).
    o.reopen().unwrap();
    assert!(!o.needs_reopen());
    assert_eq!(o.stats(), before, "the index re-read from disk differs");
    let ids: Vec<String> = o
        .pending(None, 10)
        .unwrap()
        .into_iter()
        .map(|(_, a)| a.id)
        .collect();
    assert_eq!(
        ids,
        vec![alert(0, Severity::Minor).id, alert(1, Severity::Minor).id]
    );
    // The acked seq 2 is no longer on disk; it must still never come back for another alert.
    let next = o.append(&alert(3, Severity::Minor), 1_000).unwrap();
    assert!(next > seqs[2], "seq {next} reused after {seqs:?}");
    assert_eq!(o.len(), 3);
}

/// Opens the outbox's sled database directly, waiting for the lock that an outbox just
/// dropped still holds (as the agent's own opens do).
fn open_sled(path: impl AsRef<std::path::Path>) -> sled::Db {
    edge_agent::sled_open::open_waiting(path.as_ref()).unwrap()
}
