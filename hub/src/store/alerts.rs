//! Stored alerts ([`Alerts`]): every alert the hub acknowledged, without its snapshot's JPEG,
//! which is a blob ([`super::Blobs`]) named by its SHA-256.
//!
//! Trees (encodings private to this module):
//! - `alerts`: alert id → `0x01`, then the [`Record`] as JSON (when it was received, the
//!   snapshot's facts and blob, the alert with no snapshot). A value starting with `{` is a
//!   record of a hub before blobs: the alert's JSON as the agent sent it, snapshot inline; it
//!   is read as it is (and has no time index, so only a sweep by id could expire it).
//! - `alert_times`: `t{received ms BE}{id}` → empty, the retention index; `n` → the bytes of
//!   all records (u64 BE), for `/metrics`.
//!
//! Storing a batch ([`Alerts::insert`]): the snapshots' files are written and synced first,
//! then one sled transaction writes each new alert's record, its time key, its pending marker
//! (`work`, `p/{id}`, for the dispatcher) and its blob's metadata. A crash before the
//! transaction leaves only orphan files; after it (before the caller's flush), the batch was
//! never acknowledged and the agent sends it again.

use std::sync::Arc;

use protocol::alert::Snapshot;
use protocol::{Alert, UtcMillis};
use serde::{Deserialize, Serialize};
use sled::Transactional;
use sled::transaction::ConflictableTransactionError;

use super::blobs::{Batch, BlobId, BlobKind, Blobs, Deltas};
use super::{Filed, StoreError, pending_key};
use crate::retention::{Expiring, RetentionError, Swept};

/// A snapshot's facts; its bytes are a blob (or, in a record of an older hub, inline).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRef {
    pub camera: String,
    pub time: UtcMillis,
    pub width: u32,
    pub height: u32,
    /// The JPEG's length in bytes.
    pub len: u64,
    pub blob: BlobId,
}

/// An alert as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredAlert {
    /// When the hub acknowledged it (unknown for a record of an older hub).
    pub received: Option<UtcMillis>,
    /// The alert, its `snapshot` taken out (see `snapshot`).
    pub alert: Alert,
    pub snapshot: Option<SnapshotRef>,
    /// A snapshot kept inline by an older hub (no blob).
    pub inline_jpeg: Option<Vec<u8>>,
}

#[derive(Serialize, Deserialize)]
struct Record {
    at: UtcMillis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    snap: Option<SnapshotRef>,
    alert: Alert,
}

const RECORD_V1: u8 = 0x01;
const TIME: u8 = b't';
const TOTAL: &[u8] = b"n";

fn time_key(at: UtcMillis, id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + id.len());
    k.push(TIME);
    k.extend_from_slice(&(at.0.max(0) as u64).to_be_bytes());
    k.extend_from_slice(id.as_bytes());
    k
}

/// Owner of the stored alerts.
#[derive(Debug, Clone)]
pub struct Alerts {
    alerts: sled::Tree,
    times: sled::Tree,
    work: sled::Tree,
    blobs: Blobs,
    bytes: Arc<std::sync::atomic::AtomicU64>,
}

/// What an expiry pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AlertSweep {
    pub alerts: u64,
    pub bytes: u64,
    pub more: bool,
}

impl Alerts {
    pub(super) fn open(
        alerts: sled::Tree,
        times: sled::Tree,
        work: sled::Tree,
        blobs: Blobs,
    ) -> Result<Self, StoreError> {
        let total = times
            .get(TOTAL)
            .map_err(super::io("read alert totals"))?
            .map_or(0, |v| v.as_ref().try_into().map_or(0, u64::from_be_bytes));
        Ok(Self {
            alerts,
            times,
            work,
            blobs,
            bytes: Arc::new(total.into()),
        })
    }

    /// Stores each alert not stored before with its pending marker, its snapshot a synced
    /// blob first; returns, per alert, whether it was new. `received` is the hub's time.
    pub fn insert(
        &self,
        batch: &[Arc<Alert>],
        received: UtcMillis,
    ) -> Result<Vec<bool>, StoreError> {
        // Resends are common (an agent whose ack was lost): their snapshots are not written
        // again. The transaction below decides what is new; this only saves the writes.
        let mut blob_ids: Vec<Option<BlobId>> = Vec::with_capacity(batch.len());
        let mut files = self.blobs.begin();
        for a in batch {
            let known = self
                .alerts
                .contains_key(a.id.as_bytes())
                .map_err(super::io("read alert"))?;
            blob_ids.push(match &a.snapshot {
                Some(s) if !known => Some(files.put(&s.jpeg)?),
                _ => None,
            });
        }
        files.sync()?;
        let mut records = Vec::with_capacity(batch.len());
        for (a, blob) in batch.iter().zip(&blob_ids) {
            records.push(encode(a, *blob, received)?);
        }
        let result = (&self.alerts, &self.times, &self.work, self.blobs.tree()).transaction(
            |(alerts, times, work, blobs)| {
                let mut deltas = Deltas::default();
                let mut fresh = Vec::with_capacity(batch.len());
                let mut added = 0u64;
                for ((a, blob), rec) in batch.iter().zip(&blob_ids).zip(&records) {
                    if alerts.get(a.id.as_bytes())?.is_some() {
                        fresh.push(false);
                        continue;
                    }
                    alerts.insert(a.id.as_bytes(), rec.as_slice())?;
                    times.insert(time_key(received, &a.id), &[][..])?;
                    work.insert(pending_key(&a.id), &[][..])?;
                    if let (Some(id), Some(s)) = (blob, &a.snapshot) {
                        Batch::record(
                            blobs,
                            *id,
                            BlobKind::Snapshot,
                            s.jpeg.len() as u64,
                            received,
                            &mut deltas,
                        )?;
                    }
                    added += rec.len() as u64;
                    fresh.push(true);
                }
                if added > 0 {
                    let now = times
                        .get(TOTAL)?
                        .map_or(0, |v| v.as_ref().try_into().map_or(0, u64::from_be_bytes));
                    times.insert(TOTAL, &(now + added).to_be_bytes()[..])?;
                }
                Ok::<_, ConflictableTransactionError<()>>((fresh, added, deltas))
            },
        );
        let (fresh, added, deltas) = result.map_err(super::tx_err("insert alerts"))?;
        drop(files);
        self.blobs.committed(&deltas);
        self.bytes
            .fetch_add(added, std::sync::atomic::Ordering::Relaxed);
        Ok(fresh)
    }

    pub fn get(&self, id: &str) -> Result<Option<StoredAlert>, StoreError> {
        let Some(v) = self
            .alerts
            .get(id.as_bytes())
            .map_err(super::io("read alert"))?
        else {
            return Ok(None);
        };
        decode(id, &v).map(Some)
    }

    pub fn contains(&self, id: &str) -> Result<bool, StoreError> {
        self.alerts
            .contains_key(id.as_bytes())
            .map_err(super::io("read alert"))
    }

    /// A snapshot's JPEG: its blob, or inline in an older record; `None` when it expired.
    pub fn snapshot_jpeg(&self, stored: &StoredAlert) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(j) = &stored.inline_jpeg {
            return Ok(Some(j.clone()));
        }
        match &stored.snapshot {
            Some(s) => self.blobs.get(s.blob),
            None => Ok(None),
        }
    }

    #[cfg(test)]
    pub(super) fn alerts_tree(&self) -> &sled::Tree {
        &self.alerts
    }

    pub fn count(&self) -> usize {
        self.alerts.len()
    }

    /// Bytes of the stored records (snapshots not included: they are blobs).
    pub fn bytes(&self) -> u64 {
        self.bytes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Removes up to `max` alerts received before `cutoff`, but none that `keep` names (an
    /// open case's: they stay, due, until it closes; the scan steps over them, so it reads at
    /// most `max` plus the kept). Their pending markers go too, and the marker of one that was
    /// muted (it belongs to no case, whose expiry would take it); the marker of one filed into a
    /// case stays until the case goes. Their snapshots' blobs expire by their own retention.
    pub fn expire_before(
        &self,
        cutoff: UtcMillis,
        max: usize,
        keep: &dyn Fn(&str) -> bool,
    ) -> Result<AlertSweep, StoreError> {
        let start = time_key(UtcMillis(0), "");
        let end = time_key(cutoff, "");
        let mut due = Vec::new();
        let mut more = false;
        for k in self.times.range(start..end).keys() {
            let k = k.map_err(super::io("scan alert times"))?;
            if keep(&String::from_utf8_lossy(&k[9..])) {
                continue;
            }
            if due.len() == max {
                more = true;
                break;
            }
            due.push(k);
        }
        if due.is_empty() {
            return Ok(AlertSweep::default());
        }
        let removed = (&self.alerts, &self.times, &self.work)
            .transaction(|(alerts, times, work)| {
                let mut bytes = 0u64;
                for k in &due {
                    let id = &k[9..];
                    times.remove(k.as_ref())?;
                    if let Some(v) = alerts.remove(id)? {
                        bytes += v.len() as u64;
                    }
                    work.remove([super::PENDING, id].concat())?;
                    let marker = super::cases::filed_key(id);
                    if let Some(v) = work.get(&marker)?
                        && matches!(Filed::decode(&v), Filed::Muted(_))
                    {
                        work.remove(marker)?;
                    }
                }
                let now = times
                    .get(TOTAL)?
                    .map_or(0, |v| v.as_ref().try_into().map_or(0, u64::from_be_bytes));
                times.insert(TOTAL, &now.saturating_sub(bytes).to_be_bytes()[..])?;
                Ok::<_, ConflictableTransactionError<()>>(bytes)
            })
            .map_err(super::tx_err("expire alerts"))?;
        let _ = self.bytes.fetch_update(
            std::sync::atomic::Ordering::Relaxed,
            std::sync::atomic::Ordering::Relaxed,
            |v| Some(v.saturating_sub(removed)),
        );
        Ok(AlertSweep {
            alerts: due.len() as u64,
            bytes: removed,
            more,
        })
    }
}

fn encode(a: &Alert, blob: Option<BlobId>, at: UtcMillis) -> Result<Vec<u8>, StoreError> {
    let snap = match (&a.snapshot, blob) {
        (Some(s), Some(blob)) => Some(SnapshotRef {
            camera: s.camera.clone(),
            time: s.time,
            width: s.width,
            height: s.height,
            len: s.jpeg.len() as u64,
            blob,
        }),
        _ => None,
    };
    // The alert without its JPEG: a copy of everything else (a few hundred bytes).
    let alert = Alert {
        snapshot: None,
        ..Alert::clone(a)
    };
    let mut out = vec![RECORD_V1];
    serde_json::to_writer(&mut out, &Record { at, snap, alert }).map_err(|e| {
        StoreError::Corrupt {
            tree: "alerts",
            key: a.id.clone(),
            why: format!("cannot encode: {e}"),
        }
    })?;
    Ok(out)
}

fn decode(id: &str, v: &[u8]) -> Result<StoredAlert, StoreError> {
    let corrupt = |why: String| StoreError::Corrupt {
        tree: "alerts",
        key: id.to_owned(),
        why,
    };
    match v.first() {
        Some(&RECORD_V1) => {
            let r: Record = serde_json::from_slice(&v[1..]).map_err(|e| corrupt(e.to_string()))?;
            Ok(StoredAlert {
                received: Some(r.at),
                alert: r.alert,
                snapshot: r.snap,
                inline_jpeg: None,
            })
        }
        Some(b'{') => {
            let mut alert: Alert = serde_json::from_slice(v).map_err(|e| corrupt(e.to_string()))?;
            let (snapshot, inline_jpeg) = match alert.snapshot.take() {
                Some(Snapshot {
                    camera,
                    time,
                    width,
                    height,
                    jpeg,
                }) => (
                    Some(SnapshotRef {
                        camera,
                        time,
                        width,
                        height,
                        len: jpeg.len() as u64,
                        blob: BlobId::of(&jpeg),
                    }),
                    Some(jpeg),
                ),
                None => (None, None),
            };
            Ok(StoredAlert {
                received: None,
                alert,
                snapshot,
                inline_jpeg,
            })
        }
        _ => Err(corrupt("unknown record format".into())),
    }
}

/// The alerts as the retention sweeper sees them: those of open cases are kept.
#[derive(Debug, Clone)]
pub struct AlertsRetention {
    pub alerts: Alerts,
    pub pins: Arc<crate::retention::OpenCasePins>,
}

impl Expiring for AlertsRetention {
    /// By the time the hub received them, through `alert_times`; bytes are a running total
    /// kept in the same transactions as the records.
    fn expire_before(&self, cutoff: UtcMillis, max: usize) -> Result<Swept, RetentionError> {
        let pins = self.pins.get()?;
        let s = self
            .alerts
            .expire_before(cutoff, max, &|id| pins.alerts.contains(id))?;
        Ok(Swept {
            records: s.alerts,
            bytes: s.bytes,
            more: s.more,
        })
    }

    fn bytes(&self) -> Result<u64, RetentionError> {
        Ok(self.alerts.bytes())
    }
}
