//! Golden files: the exact JSON of each wire message, checked in under `tests/golden/`.
//!
//! A change to a wire type that changes its JSON shows up here as a diff of a file, which is
//! where a reviewer should see it (and decide whether it needs a schema bump). Each value is
//! built in code, serialised and compared byte for byte with its file, and each file is parsed
//! back (through the receivers' `decode_*` where there is one) to the same value.
//!
//! After an intended change: `UPDATE_GOLDEN=1 cargo test -p protocol --test golden`.

// The helpers outside #[test] fns are test code too; a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::fmt::Debug;
use std::path::PathBuf;

use protocol::alert::{Location, ModelRef, Snapshot, TagInfo};
use protocol::{
    AgentState, Alert, AlertKind, AlertPhase, AlertSource, CameraHealth, Command, CommandBody,
    CommandReply, Detection, Health, OutboxHealth, ReaderHealth, ReplyOutcome, RuleParams,
    SCHEMA_VERSION, Severity, SeverityCounts, SightingBatch, SignedCommand, SigningKey, Status,
    TagKind, TagSighting, UplinkHealth, UtcMillis,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// 2026-11-22T08:00:00.123Z
const T0: i64 = 1_795_334_400_123;
const SITE: &str = "wuding-0001";
const ALERT_ID: &str = "01KAQ5X3MV0000000000000001";
const WATCH_ID: &str = "01KAQ5X3MV0000000000000002";
const BATCH_ID: &str = "01KAQ5X3MV0000000000000003";
/// The public key of [`test_key`], base64: pins the key derivation as well as the signature.
const TEST_PUBLIC_KEY: &str = "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=";

/// A fixed key for the signed golden (Ed25519 signing is deterministic). Test use only.
fn test_key() -> SigningKey {
    let mut seed = [0u8; 32];
    for (i, b) in seed.iter_mut().enumerate() {
        *b = i as u8;
    }
    SigningKey::from_bytes(&seed)
}

/// Compares `value`'s pretty JSON with the golden file (or writes it under `UPDATE_GOLDEN`),
/// then parses the file back and returns its text.
fn check<T: Serialize + DeserializeOwned + PartialEq + Debug>(name: &str, value: &T) -> String {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests", "golden", name]
        .iter()
        .collect();
    let text = serde_json::to_string_pretty(value).unwrap() + "\n";
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &text).unwrap();
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}\nto create it: UPDATE_GOLDEN=1 cargo test -p protocol --test golden",
            path.display()
        )
    });
    assert!(
        on_disk == text,
        "{} differs from what the code serialises.\n--- file\n{on_disk}--- code\n{text}\
         If the change is intended (and the schema version considered), regenerate with\n  \
         UPDATE_GOLDEN=1 cargo test -p protocol --test golden",
        path.display()
    );
    let back: T = serde_json::from_str(&on_disk).unwrap();
    assert_eq!(&back, value, "{name} parses back to a different value");
    on_disk
}

fn zone_start() -> Alert {
    Alert {
        schema: SCHEMA_VERSION,
        id: ALERT_ID.into(),
        incident: ALERT_ID.into(),
        phase: AlertPhase::Start,
        site: SITE.into(),
        source: AlertSource::Camera("gate-east".into()),
        kind: AlertKind::Zone,
        severity: Severity::Major,
        rule: "night-yard".into(),
        time: UtcMillis(T0),
        started_at: UtcMillis(T0),
        ended_at: None,
        location: Some(Location {
            lon: 102.403_25,
            lat: 25.532_1,
        }),
        track: Some(17),
        label: Some("person".into()),
        score: Some(0.875),
        direction: None,
        count: None,
        detections: vec![
            Detection {
                label: "person".into(),
                score: 0.875,
                box_xyxy: [120.5, 64.0, 180.25, 300.0],
            },
            Detection {
                label: "person".into(),
                score: 0.5,
                box_xyxy: [400.0, 80.0, 440.0, 210.0],
            },
        ],
        tag: None,
        model: Some(ModelRef {
            id: "yolox_nano".into(),
            sha256: "0123456789abcdef".repeat(4),
        }),
        detail: None,
        snapshot: Some(Snapshot {
            camera: "gate-east".into(),
            time: UtcMillis(T0),
            width: 640,
            height: 360,
            jpeg: vec![0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 0xff, 0xd9],
        }),
    }
}

fn watchlist() -> Alert {
    Alert {
        schema: SCHEMA_VERSION,
        id: WATCH_ID.into(),
        incident: WATCH_ID.into(),
        phase: AlertPhase::Start,
        site: SITE.into(),
        source: AlertSource::Reader("reader-north".into()),
        kind: AlertKind::Watchlist,
        severity: Severity::Major,
        rule: "watchlist".into(),
        time: UtcMillis(T0 + 1_000),
        started_at: UtcMillis(T0 + 1_000),
        ended_at: None,
        location: Some(Location {
            lon: 102.404,
            lat: 25.533,
        }),
        track: None,
        label: None,
        score: None,
        direction: None,
        count: None,
        detections: Vec::new(),
        tag: Some(TagInfo {
            id: "E2000017221101441890ABCD".into(),
            reader: "reader-north".into(),
            rssi: Some(-61),
            case_ref: Some("WD-2026-0042".into()),
            note: Some("stolen 2026-11-20, red frame".into()),
            keys: Vec::new(),
        }),
        model: None,
        detail: None,
        snapshot: None,
    }
}

fn online() -> Status {
    let mut evicted = SeverityCounts::default();
    evicted.add(Severity::Info, 3);
    Status {
        schema: SCHEMA_VERSION,
        site: SITE.into(),
        state: AgentState::Online,
        time: UtcMillis(T0 + 60_000),
        health: Some(Health {
            version: "0.1.0".into(),
            started_at: UtcMillis(T0 - 3_600_000),
            uptime_s: 3_660,
            cameras: vec![CameraHealth {
                id: "gate-east".into(),
                online: true,
                fps: 5.0,
                skipped_fps: 20.0,
                inference_ms: 31.5,
                alerts: 4,
                failures: 1,
            }],
            readers: vec![ReaderHealth {
                id: "reader-north".into(),
                reads: 12_345,
                bad: 2,
                dropped: 0,
            }],
            outbox: OutboxHealth {
                depth: 2,
                bytes: 81_920,
                max_bytes: 1 << 30,
                oldest: Some(UtcMillis(T0)),
                evicted,
                dropped: SeverityCounts::default(),
                expired: 0,
                corrupt: 0,
                quarantined: 1,
                held: 0,
                held_bytes: 0,
                held_dropped: SeverityCounts::default(),
                append_failures: 0,
            },
            uplink: UplinkHealth {
                connected: true,
                reconnects: 1,
                published: 6,
                acked: 4,
                sightings_dropped: 0,
            },
            disk_free_bytes: Some(52_428_800_000),
        }),
    }
}

fn offline() -> Status {
    Status {
        schema: SCHEMA_VERSION,
        site: SITE.into(),
        state: AgentState::Offline,
        time: UtcMillis(T0 - 3_600_000),
        health: None,
    }
}

fn sightings() -> SightingBatch {
    SightingBatch {
        schema: SCHEMA_VERSION,
        id: BATCH_ID.into(),
        site: SITE.into(),
        sightings: vec![
            TagSighting {
                reader: "reader-north".into(),
                tag: "E2000017221101441890ABCD".into(),
                kind: TagKind::Bike,
                first: UtcMillis(T0),
                last: UtcMillis(T0 + 2_400),
                reads: 9,
                rssi: -58,
            },
            TagSighting {
                reader: "reader-north".into(),
                tag: "E20000172211014418900001".into(),
                kind: TagKind::Key,
                first: UtcMillis(T0 + 100),
                last: UtcMillis(T0 + 100),
                reads: 1,
                rssi: -72,
            },
        ],
    }
}

fn watch_add() -> Command {
    Command {
        schema: SCHEMA_VERSION,
        site: SITE.into(),
        seq: 41,
        issued_at: UtcMillis(T0),
        body: CommandBody::WatchAdd {
            tag: "E2000017221101441890ABCD".into(),
            case_ref: "WD-2026-0042".into(),
            note: "stolen 2026-11-20, red frame".into(),
        },
    }
}

fn rule_params() -> Command {
    Command {
        schema: SCHEMA_VERSION,
        site: SITE.into(),
        seq: 42,
        issued_at: UtcMillis(T0 + 5_000),
        body: CommandBody::RuleParams(RuleParams {
            camera: "gate-east".into(),
            rule: "night-yard".into(),
            severity: Some(Severity::Critical),
            threshold: Some(0.45),
            cooldown_ms: Some(60_000),
            active_hours: Some(vec!["22:00-06:00".into()]),
        }),
    }
}

#[test]
fn alert_zone_start() {
    let text = check("alert_zone_start.json", &zone_start());
    assert_eq!(
        protocol::decode_alert(text.as_bytes()).unwrap(),
        zone_start()
    );
}

#[test]
fn alert_watchlist() {
    let text = check("alert_watchlist.json", &watchlist());
    assert_eq!(
        protocol::decode_alert(text.as_bytes()).unwrap(),
        watchlist()
    );
}

#[test]
fn status_online() {
    let text = check("status_online.json", &online());
    assert_eq!(protocol::decode_status(text.as_bytes()).unwrap(), online());
}

#[test]
fn status_offline() {
    let text = check("status_offline.json", &offline());
    assert_eq!(protocol::decode_status(text.as_bytes()).unwrap(), offline());
}

#[test]
fn sighting_batch() {
    let text = check("sighting_batch.json", &sightings());
    assert_eq!(
        protocol::decode_sightings(text.as_bytes()).unwrap(),
        sightings()
    );
}

#[test]
fn command_watch_add() {
    check("command_watch_add.json", &watch_add());
    watch_add().validate().unwrap();
}

#[test]
fn command_rule_params() {
    check("command_rule_params.json", &rule_params());
    rule_params().validate().unwrap();
}

#[test]
fn signed_command() {
    let key = test_key();
    assert_eq!(
        protocol::encode_verifying_key(&key.verifying_key()),
        TEST_PUBLIC_KEY
    );
    let text = check(
        "signed_command.json",
        &SignedCommand::sign(&watch_add(), &key),
    );
    let public = protocol::parse_verifying_key(TEST_PUBLIC_KEY).unwrap();
    let signed = SignedCommand::from_slice(text.as_bytes()).unwrap();
    assert_eq!(signed.verify(&public).unwrap(), watch_add());
}

#[test]
fn command_reply() {
    let reply = CommandReply {
        schema: SCHEMA_VERSION,
        site: SITE.into(),
        seq: Some(41),
        outcome: ReplyOutcome::Applied,
        detail: None,
        time: UtcMillis(T0 + 250),
    };
    let text = check("command_reply.json", &reply);
    assert_eq!(
        protocol::decode_command_reply(text.as_bytes()).unwrap(),
        reply
    );
}
