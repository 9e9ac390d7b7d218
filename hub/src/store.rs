//! The hub's disk, owned by [`Store`]: one sled database (`{data_dir}/store`), the blob
//! files (`{data_dir}/blobs`, [`Blobs`]: snapshots and photos, content-addressed) and the case
//! log (`{data_dir}/cases`, see [`Cases`]).
//!
//! Trees:
//! - `alerts`, `alert_times`: the alerts acknowledged, snapshots taken out as blobs, and
//!   their retention index, owned by [`Alerts`].
//! - `blobs`: what sled knows of each blob file (length, kind, last reference), owned by
//!   [`Blobs`].
//! - `work`: the cases' indexes, owned by [`Cases`] (the dispatcher writes them in atomic
//!   batches; the cases themselves are in the case log, `{data_dir}/cases/`), and
//!   `p/{alert id}`, an alert stored but not yet filed into a case (written by [`Alerts`] in
//!   the same transaction as the alert, so a crash between storing and filing is recovered at
//!   start).
//! - `sites`: site id → the registry's record (last status, last heartbeat), owned by
//!   [`Sites`].
//! - `sightings`: tag sightings for trajectories, with a stored-time index for retention,
//!   owned by [`Sightings`].
//! - `sessions`: SHA-256 of a dashboard session or app token → who and until when, owned by
//!   [`SessionStore`].
//! - `photos`: a photo people attached (resolution, patrol report) → its case, author, time
//!   and blob, owned by [`Photos`].
//! - `quarantine`: alert payloads the hub refused, owned by [`Quarantine`] (its keys and
//!   encoding are private to it).
//! - `watchlist`: watchlisted tags with their scope, and the audit log of their changes, owned
//!   by [`Watchlist`].
//! - `meta`: schema version, and the last command sequence number issued
//!   ([`Store::command_seq`]).

mod alerts;
mod blobs;
mod case_log;
mod cases;
mod photos;
mod quarantine;
mod sessions;
mod sightings;
mod sites;
mod watchlist;

use std::path::{Path, PathBuf};

use sled::transaction::TransactionError;

pub use alerts::{AlertSweep, Alerts, AlertsRetention, SnapshotRef, StoredAlert};
pub use blobs::{BlobId, BlobKind, BlobMeta, BlobSweep, Blobs, BlobsOfKind};
pub use case_log::{LogStats, SEGMENT_BYTES};
pub use cases::{CaseWrites, Cases, ClosedEntry, Filed, SilenceAction, SilenceAudit, StoredCase};
pub use photos::{PhotoMeta, Photos};
pub use quarantine::{
    Inserted, NewQuarantined, Quarantine, QuarantineEntry, QuarantineId, Quarantined,
};
pub use sessions::{Session, SessionKey, SessionStore, SessionSweep, Via};
pub use sightings::{SightingRecord, Sightings};
pub use sites::Sites;
pub use watchlist::{AuditQuery, WatchAction, WatchAudit, WatchEntry, WatchScope, Watchlist};

/// The on-disk layout version; a store written by another version is refused, not guessed at.
/// 2: snapshots and photos are blob files. 3: cases are in the case log, not in sled. A store
/// of 1 or 2 is read as it is (its records stay readable, see [`Alerts`] and [`Photos`]; its
/// cases are moved to the log, see [`Cases`]) and marked 3 when opened, so that an older hub,
/// which would find no cases, no longer opens it.
pub const STORE_SCHEMA: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the hub store at {path}: {source}")]
    Open { path: PathBuf, source: sled::Error },
    #[error("the hub store at {path} has schema {found}, this hub reads {STORE_SCHEMA}")]
    Schema { path: PathBuf, found: String },
    #[error("hub store {op}: {source}")]
    Io {
        op: &'static str,
        source: sled::Error,
    },
    #[error("hub store: cannot {op} {path}: {source}")]
    File {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("hub store: record {key} in {tree} is corrupt: {why}")]
    Corrupt {
        tree: &'static str,
        key: String,
        why: String,
    },
}

fn io(op: &'static str) -> impl FnOnce(sled::Error) -> StoreError {
    move |source| StoreError::Io { op, source }
}

/// The store's transactions never abort; only a storage error fails them.
fn tx_err(op: &'static str) -> impl FnOnce(TransactionError<()>) -> StoreError {
    move |e| match e {
        TransactionError::Storage(source) => StoreError::Io { op, source },
        TransactionError::Abort(()) => StoreError::Corrupt {
            tree: op,
            key: String::new(),
            why: "transaction aborted without a reason".into(),
        },
    }
}

/// Owner of the hub's sled database.
#[derive(Debug, Clone)]
pub struct Store {
    db: sled::Db,
    path: PathBuf,
    alerts: Alerts,
    blobs: Blobs,
    photos: Photos,
    /// The `work` tree's cases, indexes and pending markers (see [`Cases`]).
    cases: Cases,
    sites: Sites,
    sightings: Sightings,
    sessions: SessionStore,
    quarantine: Quarantine,
    watchlist: Watchlist,
    meta: sled::Tree,
}

pub const PENDING: &[u8] = b"p/";

/// `meta` key of [`Store::command_seq`].
const CMD_SEQ: &str = "cmd_seq";

pub fn pending_key(id: &str) -> Vec<u8> {
    [PENDING, id.as_bytes()].concat()
}

impl Store {
    /// Opens (or creates) the store under `data_dir`: sled in `store/`, blobs in `blobs/`.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let path = data_dir.join("store");
        let dir = path.as_path();
        let db = open_db(dir).map_err(|source| StoreError::Open {
            path: path.clone(),
            source,
        })?;
        let tree = |name: &str| {
            db.open_tree(name).map_err(|source| StoreError::Open {
                path: path.clone(),
                source,
            })
        };
        // The schema first: nothing of a store this hub cannot read is touched.
        let meta = tree("meta")?;
        check_schema(&db, &meta, &path)?;
        let work = tree("work")?;
        // When entries of a pre-scope watchlist were moved (their audit record's time), and
        // the latest stored time given to sightings of a store older than their index.
        let migrated_at = protocol::UtcMillis::now();
        let blobs = Blobs::open(&db, &data_dir.join("blobs"))?;
        Ok(Self {
            watchlist: Watchlist::open(&db, &work, migrated_at)?,
            alerts: Alerts::open(
                tree("alerts")?,
                tree("alert_times")?,
                work.clone(),
                blobs.clone(),
            )?,
            photos: Photos::new(tree("photos")?, blobs.clone()),
            blobs,
            cases: Cases::open(work, &data_dir.join("cases"))?,
            sites: Sites::new(tree("sites")?),
            sightings: Sightings::open(&db, migrated_at)?,
            sessions: SessionStore::new(tree("sessions")?),
            meta,
            quarantine: Quarantine::open(&db)?,
            db,
            path,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Refused alert payloads.
    pub fn quarantine(&self) -> &Quarantine {
        &self.quarantine
    }

    pub fn watchlist(&self) -> &Watchlist {
        &self.watchlist
    }

    /// The alerts acknowledged.
    pub fn alerts(&self) -> &Alerts {
        &self.alerts
    }

    /// Snapshot and photo files.
    pub fn blobs(&self) -> &Blobs {
        &self.blobs
    }

    pub fn photos(&self) -> &Photos {
        &self.photos
    }

    /// Tag sightings.
    pub fn sightings(&self) -> &Sightings {
        &self.sightings
    }

    /// Makes everything written so far durable: the case log, then sled (whose index
    /// entries may name cases in the log).
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.cases.sync()?;
        self.flush_alerts().await
    }

    /// Makes what sled holds durable (alerts, blobs' metadata, pending markers, indexes), not
    /// the case log, which only the dispatcher writes and syncs: ingest's flush, which must
    /// not wait for the dispatcher's case writes.
    pub async fn flush_alerts(&self) -> Result<(), StoreError> {
        self.db.flush_async().await.map(|_| ()).map_err(io("flush"))
    }

    pub fn flush_blocking(&self) -> Result<(), StoreError> {
        self.cases.sync()?;
        self.db.flush().map(|_| ()).map_err(io("flush"))
    }

    /// Ids of alerts stored but not yet filed into a case, in key order.
    pub fn pending_ids(&self) -> Result<Vec<String>, StoreError> {
        self.cases.pending_ids()
    }

    /// The site registry's records.
    pub fn sites(&self) -> &Sites {
        &self.sites
    }

    /// Cases and their indexes.
    pub fn cases(&self) -> &Cases {
        &self.cases
    }

    /// Dashboard sessions and app tokens.
    pub fn sessions(&self) -> &SessionStore {
        &self.sessions
    }

    /// The last sequence number a signed command was issued with (0: none yet). Kept as
    /// decimal text, as hubs before this owner wrote it; an unreadable value reads as 0 (the
    /// next number is time-based anyway).
    pub fn command_seq(&self) -> Result<u64, StoreError> {
        Ok(self
            .meta
            .get(CMD_SEQ)
            .map_err(io("read meta"))?
            .and_then(|v| std::str::from_utf8(&v).ok()?.parse().ok())
            .unwrap_or(0))
    }

    pub fn set_command_seq(&self, seq: u64) -> Result<(), StoreError> {
        self.meta
            .insert(CMD_SEQ, seq.to_string().as_bytes())
            .map_err(io("write meta"))?;
        Ok(())
    }
}

/// Checks (or, in a new store, writes) the schema version; a store of 1 or 2 is marked 3
/// (see [`STORE_SCHEMA`]).
fn check_schema(db: &sled::Db, meta: &sled::Tree, path: &Path) -> Result<(), StoreError> {
    use infra::sled_store::{SchemaError, Versioned};
    let err = |e: SchemaError| match e {
        SchemaError::Read(source) => StoreError::Io {
            op: "read schema",
            source,
        },
        SchemaError::Write(source) => StoreError::Io {
            op: "write schema",
            source,
        },
        SchemaError::BadValue { len } => StoreError::Schema {
            path: path.to_path_buf(),
            found: format!("a {len}-byte value that is not a version"),
        },
        // A hub store is never counted: its trees are created empty, and the cases'
        // move (schema 3) checks what it finds itself.
        SchemaError::Missing { records } => StoreError::Schema {
            path: path.to_path_buf(),
            found: format!("none, with {records} records"),
        },
    };
    match infra::sled_store::open_version(db, meta, STORE_SCHEMA, || 0).map_err(err)? {
        Versioned::Created | Versioned::Found(STORE_SCHEMA) => Ok(()),
        Versioned::Found(1 | 2) => {
            infra::sled_store::write_version(db, meta, STORE_SCHEMA).map_err(err)
        }
        Versioned::Found(v) => Err(StoreError::Schema {
            path: path.to_path_buf(),
            found: v.to_string(),
        }),
    }
}

/// sled's file lock is let go by its background flusher shortly after the last handle is
/// dropped, so reopening a store in the same process right after closing it (tests, a
/// command run after `hub run` returned) can find it still held for a few milliseconds. The
/// open is retried for a while; another live process holding the store still gets the
/// error, only later.
fn open_db(dir: &Path) -> Result<sled::Db, sled::Error> {
    let config = sled::Config::new()
        .path(dir)
        // Writes are made durable by explicit flushes after each batch; the background
        // flush only bounds what an unflushed batch could lose, which is nothing acked.
        .flush_every_ms(Some(1000));
    infra::sled_store::open_waiting(&config, std::time::Duration::from_secs(3))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(id: &str, jpeg: Option<&[u8]>) -> std::sync::Arc<protocol::Alert> {
        let mut a = crate::case::testkit::alert_at(
            id,
            protocol::Severity::Major,
            protocol::UtcMillis(1_700_000_000_000),
        );
        a.snapshot = jpeg.map(|j| protocol::alert::Snapshot {
            camera: "gate-east".into(),
            time: a.time,
            width: 4,
            height: 2,
            jpeg: j.to_vec(),
        });
        std::sync::Arc::new(a)
    }

    /// A store in `dir` holding alert `01A` with `jpeg` as its snapshot.
    fn store_with_one(dir: &Path, jpeg: &[u8]) -> Store {
        let store = Store::open(dir).unwrap();
        store
            .alerts()
            .insert(&[alert("01A", Some(jpeg))], protocol::UtcMillis(1))
            .unwrap();
        store
    }

    fn blob_path(dir: &Path, id: BlobId) -> PathBuf {
        dir.join("blobs").join(&id.to_hex()[..2]).join(id.to_hex())
    }

    #[test]
    fn the_same_alert_id_is_stored_once_and_marked_pending_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let at = protocol::UtcMillis(1_700_000_000_500);
        let a = alert("01A", Some(b"\xFF\xD8\xFFsnap-a"));
        let b = alert("01B", None);
        let alerts = store.alerts();
        assert_eq!(alerts.insert(&[a.clone(), b], at).unwrap(), [true, true]);
        let again = alert("01A", Some(b"\xFF\xD8\xFFother"));
        assert_eq!(alerts.insert(&[again], at).unwrap(), [false]);
        let stored = alerts.get("01A").unwrap().unwrap();
        assert_eq!(stored.received, Some(at));
        assert_eq!(stored.alert.snapshot, None, "the JPEG is not in the record");
        assert_eq!(
            protocol::Alert {
                snapshot: a.snapshot.clone(),
                ..stored.alert.clone()
            },
            *a
        );
        let jpeg = alerts.snapshot_jpeg(&stored).unwrap().unwrap();
        assert_eq!(jpeg, b"\xFF\xD8\xFFsnap-a");
        // Only the first alert's JPEG was written: the refused resend left nothing behind.
        assert_eq!(store.blobs().bytes(BlobKind::Snapshot), jpeg.len() as u64);
        assert_eq!(store.blobs().collect_all_orphans().unwrap().blobs, 0);
        assert_eq!(store.pending_ids().unwrap(), ["01A", "01B"]);
        assert_eq!(alerts.count(), 2);
    }

    #[test]
    fn expired_alerts_and_blobs_are_removed_with_their_files_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let day = 86_400_000;
        let t0 = protocol::UtcMillis(1_700_000_000_000);
        let old = alert("01OLD", Some(b"\xFF\xD8\xFFold"));
        let new = alert("01NEW", Some(b"\xFF\xD8\xFFnew"));
        store.alerts().insert(&[old], t0).unwrap();
        store
            .alerts()
            .insert(&[new], protocol::UtcMillis(t0.0 + 10 * day))
            .unwrap();
        let old_blob = store
            .alerts()
            .get("01OLD")
            .unwrap()
            .unwrap()
            .snapshot
            .unwrap()
            .blob;
        let path = blob_path(dir.path(), old_blob);
        assert!(path.exists());
        let cutoff = protocol::UtcMillis(t0.0 + 5 * day);
        // Kept (an open case's): stepped over, nothing removed.
        let kept = store
            .blobs()
            .expire_before(BlobKind::Snapshot, cutoff, 10, &|id| id == old_blob)
            .unwrap();
        assert_eq!((kept.blobs, kept.more), (0, false));
        assert!(path.exists());
        let swept = store
            .blobs()
            .expire_before(BlobKind::Snapshot, cutoff, 10, &|_| false)
            .unwrap();
        assert_eq!((swept.blobs, swept.bytes, swept.more), (1, 6, false));
        assert!(!path.exists(), "the expired blob's file is gone");
        assert_eq!(store.blobs().bytes(BlobKind::Snapshot), 6);
        // The alert outlives its snapshot: the record says there was one; the bytes are gone.
        let stored = store.alerts().get("01OLD").unwrap().unwrap();
        assert!(stored.snapshot.is_some());
        assert_eq!(store.alerts().snapshot_jpeg(&stored).unwrap(), None);
        let before = store.alerts().bytes();
        let kept = store
            .alerts()
            .expire_before(cutoff, 10, &|id| id == "01OLD")
            .unwrap();
        assert_eq!(kept.alerts, 0);
        let swept = store
            .alerts()
            .expire_before(cutoff, 10, &|_| false)
            .unwrap();
        assert_eq!(swept.alerts, 1);
        assert!(store.alerts().bytes() < before);
        assert!(store.alerts().get("01OLD").unwrap().is_none());
        assert!(store.alerts().get("01NEW").unwrap().is_some());
    }

    #[test]
    fn an_orphan_blob_file_is_collected_and_a_recorded_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_one(dir.path(), b"\xFF\xD8\xFFkept");
        // A file written by a batch that crashed before its transaction.
        let mut files = store.blobs().begin();
        let orphan = files.put(b"\xFF\xD8\xFForphan").unwrap();
        drop(files);
        let path = blob_path(dir.path(), orphan);
        assert!(path.exists());
        let swept = store.blobs().collect_all_orphans().unwrap();
        assert_eq!((swept.blobs, swept.bytes), (1, 9));
        assert!(!path.exists());
        let kept = store.alerts().get("01A").unwrap().unwrap();
        assert!(store.alerts().snapshot_jpeg(&kept).unwrap().is_some());
    }

    #[test]
    fn a_torn_leftover_under_a_blobs_name_is_written_again_before_it_is_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let jpeg = b"\xFF\xD8\xFFleftover";
        // A crash after the rename and before any sync left the right length, wrong bytes.
        let id = BlobId::of(jpeg);
        let path = blob_path(dir.path(), id);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, vec![0u8; jpeg.len()]).unwrap();
        store
            .alerts()
            .insert(&[alert("01A", Some(jpeg))], protocol::UtcMillis(1))
            .unwrap();
        let s = store.alerts().get("01A").unwrap().unwrap();
        assert_eq!(
            store.alerts().snapshot_jpeg(&s).unwrap().unwrap(),
            jpeg.to_vec()
        );
    }

    #[test]
    fn a_blob_whose_file_was_altered_is_refused_not_served() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_one(dir.path(), b"\xFF\xD8\xFForiginal");
        let s = store.alerts().get("01A").unwrap().unwrap();
        let id = s.snapshot.as_ref().unwrap().blob;
        let path = blob_path(dir.path(), id);
        std::fs::write(&path, b"\xFF\xD8\xFFaltered").unwrap();
        let err = store.alerts().snapshot_jpeg(&s).unwrap_err().to_string();
        assert!(
            err.contains(&id.to_hex()) && err.contains("SHA-256"),
            "{err}"
        );
    }

    #[test]
    fn a_store_of_schema_2_has_its_cases_moved_to_the_log_and_is_marked_3() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store.meta.insert("schema", &b"2"[..]).unwrap();
            let work = store.db.open_tree("work").unwrap();
            work.insert("c/C-01OLD", &br#"{"as":"an older hub kept it"}"#[..])
                .unwrap();
            store.flush_blocking().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            infra::sled_store::read_version(&store.meta).unwrap(),
            Some(3)
        );
        assert_eq!(store.cases().log_stats().cases, 1);
        assert!(
            store
                .db
                .open_tree("work")
                .unwrap()
                .get("c/C-01OLD")
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_store_of_schema_1_is_read_and_marked_3() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store.meta.insert("schema", &b"1"[..]).unwrap();
            // An alert as a hub before blobs kept it: the agent's JSON, snapshot inline.
            let a = alert("01LEGACY", Some(b"\xFF\xD8\xFFinline"));
            store
                .alerts
                .alerts_tree()
                .insert("01LEGACY", serde_json::to_vec(&*a).unwrap())
                .unwrap();
            store.flush_blocking().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            infra::sled_store::read_version(&store.meta).unwrap(),
            Some(3)
        );
        let s = store.alerts().get("01LEGACY").unwrap().unwrap();
        assert_eq!(s.received, None);
        assert_eq!(
            store.alerts().snapshot_jpeg(&s).unwrap().unwrap(),
            b"\xFF\xD8\xFFinline"
        );
    }

    #[test]
    fn a_store_held_by_a_live_handle_is_refused_not_waited_for_forever() {
        let dir = tempfile::tempdir().unwrap();
        let _held = Store::open(dir.path()).unwrap();
        let err = Store::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("could not acquire lock"), "{err}");
    }

    #[test]
    fn a_store_of_another_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store.meta.insert("schema", &b"99"[..]).unwrap();
            store.flush_blocking().unwrap();
        }
        let err = Store::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("schema 99"), "{err}");
    }

    #[test]
    fn the_command_sequence_survives_a_restart_and_reads_what_older_hubs_wrote() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            assert_eq!(store.command_seq().unwrap(), 0, "none issued yet");
            store.set_command_seq(1_733_000_000_123).unwrap();
            store.flush_blocking().unwrap();
        }
        {
            let store = Store::open(dir.path()).unwrap();
            assert_eq!(store.command_seq().unwrap(), 1_733_000_000_123);
            // Garbage reads as none (the next number is time-based anyway), not as an error.
            store.meta.insert(CMD_SEQ, &b"x"[..]).unwrap();
            assert_eq!(store.command_seq().unwrap(), 0);
            store.meta.insert(CMD_SEQ, &b"42"[..]).unwrap();
            assert_eq!(store.command_seq().unwrap(), 42);
        }
    }

    #[test]
    fn expiring_alerts_takes_the_markers_of_muted_ones_and_leaves_those_of_filed_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (muted, filed) = (alert("01MUTED", None), alert("01FILED", None));
        store
            .alerts()
            .insert(&[muted.clone(), filed.clone()], protocol::UtcMillis(1_000))
            .unwrap();
        let case = crate::case::CaseId::for_alert(&filed.id);
        let mut w = CaseWrites::default();
        w.file(&muted.id, &Filed::Muted("silenced by S-1".into()));
        w.file(&filed.id, &Filed::Case(case.clone()));
        store.cases().apply(w, "test").unwrap();

        let s = store
            .alerts()
            .expire_before(protocol::UtcMillis(2_000), 10, &|_| false)
            .unwrap();
        assert_eq!(s.alerts, 2);
        assert_eq!(
            store.cases().filed(&muted.id).unwrap(),
            None,
            "muted marker left behind"
        );
        assert_eq!(
            store.cases().filed(&filed.id).unwrap(),
            Some(Filed::Case(case))
        );
    }
}
