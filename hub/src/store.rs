//! The hub's disk: one sled database, owned by [`Store`].
//!
//! Trees:
//! - `alerts`: alert id → the alert's JSON exactly as the agent sent it (validated first).
//! - `work`: what the dispatcher owns, changed in atomic batches: `p/{alert id}` marks an
//!   alert stored but not yet filed into a case (written in the same transaction as the alert,
//!   so a crash between storing and filing is recovered at start), plus the dispatcher's case,
//!   index and deadline keys (see `dispatch`).
//! - `sites`: site id → the registry's record (last status, last heartbeat).
//! - `sightings`: tag sightings for trajectories, with a stored-time index for retention,
//!   owned by [`Sightings`].
//! - `sessions`: SHA-256 of a dashboard session or app token → who and until when.
//! - `photos`: `j/{id}` → a JPEG people attached (resolution, patrol report), `m/{id}` → its
//!   case, author and time.
//! - `quarantine`: alert payloads the hub refused, owned by [`Quarantine`] (its keys and
//!   encoding are private to it).
//! - `watchlist`: watchlisted tags with their scope, and the audit log of their changes, owned
//!   by [`Watchlist`].
//! - `meta`: schema version.

mod quarantine;
mod sightings;
mod watchlist;

use std::path::{Path, PathBuf};

use bytes::Bytes;
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

pub use quarantine::{
    Inserted, NewQuarantined, Quarantine, QuarantineEntry, QuarantineId, Quarantined,
};
pub use sightings::{SightingRecord, Sightings};
pub use watchlist::{AuditQuery, WatchAction, WatchAudit, WatchEntry, WatchScope, Watchlist};

/// The on-disk layout version; a store written by another version is refused, not guessed at.
pub const STORE_SCHEMA: u32 = 1;

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

/// Owner of the hub's sled database.
#[derive(Debug, Clone)]
pub struct Store {
    db: sled::Db,
    path: PathBuf,
    pub alerts: sled::Tree,
    pub work: sled::Tree,
    pub sites: sled::Tree,
    sightings: Sightings,
    /// Dashboard sessions and app tokens: SHA-256 of the token → the session's JSON.
    pub sessions: sled::Tree,
    /// Photos people attach (resolutions, patrol reports): `j/{id}` JPEG, `m/{id}` about it.
    pub photos: sled::Tree,
    quarantine: Quarantine,
    watchlist: Watchlist,
    meta: sled::Tree,
}

pub const PENDING: &[u8] = b"p/";

pub fn pending_key(id: &str) -> Vec<u8> {
    [PENDING, id.as_bytes()].concat()
}

impl Store {
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.to_path_buf();
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
        check_schema(&meta, &path)?;
        let work = tree("work")?;
        // When entries of a pre-scope watchlist were moved (their audit record's time), and
        // the latest stored time given to sightings of a store older than their index.
        let migrated_at = protocol::UtcMillis(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
        );
        Ok(Self {
            watchlist: Watchlist::open(&db, &work, migrated_at)?,
            alerts: tree("alerts")?,
            work,
            sites: tree("sites")?,
            sightings: Sightings::open(&db, migrated_at)?,
            sessions: tree("sessions")?,
            photos: tree("photos")?,
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

    /// Tag sightings.
    pub fn sightings(&self) -> &Sightings {
        &self.sightings
    }

    /// Stores each new alert with its pending marker in one transaction; an id already stored
    /// (a resend after a lost PUBACK) is left as it is. Returns, per input, whether it was new.
    /// Not durable until [`Store::flush`].
    pub fn insert_alerts(&self, batch: &[(String, Bytes)]) -> Result<Vec<bool>, StoreError> {
        let result = (&self.alerts, &self.work).transaction(|(alerts, work)| {
            let mut fresh = Vec::with_capacity(batch.len());
            for (id, raw) in batch {
                if alerts.get(id.as_bytes())?.is_some() {
                    fresh.push(false);
                    continue;
                }
                alerts.insert(id.as_bytes(), raw.as_ref())?;
                work.insert(pending_key(id), &[][..])?;
                fresh.push(true);
            }
            Ok::<_, ConflictableTransactionError<()>>(fresh)
        });
        match result {
            Ok(v) => Ok(v),
            Err(TransactionError::Storage(source)) => Err(StoreError::Io {
                op: "insert alerts",
                source,
            }),
            Err(TransactionError::Abort(())) => unreachable_abort(),
        }
    }

    /// Makes everything written so far durable.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.db.flush_async().await.map(|_| ()).map_err(io("flush"))
    }

    pub fn flush_blocking(&self) -> Result<(), StoreError> {
        self.db.flush().map(|_| ()).map_err(io("flush"))
    }

    pub fn alert(&self, id: &str) -> Result<Option<Bytes>, StoreError> {
        Ok(self
            .alerts
            .get(id.as_bytes())
            .map_err(io("read alert"))?
            .map(|v| Bytes::copy_from_slice(&v)))
    }

    pub fn alert_count(&self) -> usize {
        self.alerts.len()
    }

    /// Ids of alerts stored but not yet filed into a case, in key order.
    pub fn pending_ids(&self) -> Result<Vec<String>, StoreError> {
        self.work
            .scan_prefix(PENDING)
            .keys()
            .map(|k| {
                let k = k.map_err(io("scan pending"))?;
                Ok(String::from_utf8_lossy(&k[PENDING.len()..]).into_owned())
            })
            .collect()
    }

    pub fn meta_get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .meta
            .get(key)
            .map_err(io("read meta"))?
            .map(|v| v.to_vec()))
    }

    pub fn meta_set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.meta.insert(key, value).map_err(io("write meta"))?;
        Ok(())
    }
}

fn check_schema(meta: &sled::Tree, path: &Path) -> Result<(), StoreError> {
    match meta.get("schema").map_err(io("read schema"))? {
        None => {
            meta.insert("schema", STORE_SCHEMA.to_string().as_bytes())
                .map_err(io("write schema"))?;
            Ok(())
        }
        Some(v) if v.as_ref() == STORE_SCHEMA.to_string().as_bytes() => Ok(()),
        Some(v) => Err(StoreError::Schema {
            path: path.to_path_buf(),
            found: String::from_utf8_lossy(&v).into_owned(),
        }),
    }
}

/// sled's file lock is let go by its background flusher shortly after the last handle is
/// dropped, so reopening a store in the same process right after closing it (tests, a
/// command run after `hub run` returned) can find it still held for a few milliseconds. The
/// open is retried for a while; another live process holding the store still gets the
/// error, only later.
fn open_db(dir: &Path) -> Result<sled::Db, sled::Error> {
    const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        let opened = sled::Config::new()
            .path(dir)
            // Writes are made durable by explicit flushes after each batch; the background
            // flush only bounds what an unflushed batch could lose, which is nothing acked.
            .flush_every_ms(Some(1000))
            .open();
        match opened {
            // sled 0.34 reports the lock as an `Other` error with this text (config.rs); the
            // version is pinned, and a changed text only makes the error come sooner.
            Err(sled::Error::Io(e))
                if e.to_string().starts_with("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

/// The transaction closure never aborts; the type needs an abort type all the same.
fn unreachable_abort() -> Result<Vec<bool>, StoreError> {
    Err(StoreError::Corrupt {
        tree: "alerts",
        key: String::new(),
        why: "transaction aborted without a reason".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_alert_id_is_stored_once_and_marked_pending_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let a = ("01A".to_string(), Bytes::from_static(b"{\"v\":1}"));
        let b = ("01B".to_string(), Bytes::from_static(b"{\"v\":2}"));
        assert_eq!(store.insert_alerts(&[a.clone(), b]).unwrap(), [true, true]);
        let again = ("01A".to_string(), Bytes::from_static(b"{\"v\":9}"));
        assert_eq!(store.insert_alerts(&[again]).unwrap(), [false]);
        assert_eq!(store.alert("01A").unwrap().unwrap(), a.1);
        assert_eq!(store.pending_ids().unwrap(), ["01A", "01B"]);
        assert_eq!(store.alert_count(), 2);
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
}
