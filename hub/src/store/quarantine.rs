//! The quarantine ([`Quarantine`]): alert payloads the hub refused, kept so nothing refused is
//! lost in silence. Admins list them, read the raw bytes, re-ingest one after a fix, or delete
//! it.
//!
//! Tree `quarantine`: key = the id (u64, big-endian, from sled's monotonic id generator, so
//! key order is arrival order), value = a 4-byte big-endian header length, the header as JSON,
//! then the kept raw bytes. The encoding is private to this module.
//!
//! Bounds:
//! - per record, the whole payload when it is no larger than the largest valid alert
//!   ([`protocol::limits::MAX_ALERT_BYTES`]), so anything that may become valid after a fix
//!   can be re-ingested; a larger payload can never be an alert, and only its first
//!   [`Quarantine::MAX_KEPT_OVERSIZE`] bytes are kept (with its full length and SHA-256);
//! - in total, [`Quarantine::MAX_RECORDS`] records and [`Quarantine::MAX_TOTAL_BYTES`] kept
//!   bytes. When full, the oldest records are dropped to make room (a flood of garbage must
//!   not stop the hub from quarantining the next refusal; the newest are the ones an admin
//!   acts on); each drop is counted in `/metrics`.
//!
//! Writes are not durable until the store is flushed; the ingest writer flushes them with the
//! alerts of the same batch.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use protocol::UtcMillis;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::StoreError;
use crate::ingest::RejectCode;

/// A quarantine record's id: decimal in the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct QuarantineId(pub u64);

impl std::fmt::Display for QuarantineId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl std::str::FromStr for QuarantineId {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(Self)
    }
}

/// What to quarantine: a refused payload as it arrived.
#[derive(Debug, Clone)]
pub struct NewQuarantined {
    /// The site of the topic it came on.
    pub site: String,
    /// When the hub refused it.
    pub at: UtcMillis,
    pub code: RejectCode,
    pub reason: String,
    pub raw: Bytes,
}

/// A record's facts, without the raw bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuarantineEntry {
    pub id: QuarantineId,
    pub site: String,
    /// When it was (last) refused.
    pub at: UtcMillis,
    pub code: RejectCode,
    pub reason: String,
    /// The payload's full length.
    pub len: u64,
    /// How many of its bytes are kept (less than `len` only for an oversized payload).
    pub kept: u64,
    /// SHA-256 of the full payload, lower-case hex.
    pub sha256: String,
}

impl QuarantineEntry {
    /// Whether only part of the payload was kept (it cannot be re-ingested).
    pub fn truncated(&self) -> bool {
        self.kept < self.len
    }
}

/// A record with its kept bytes.
#[derive(Debug, Clone)]
pub struct Quarantined {
    pub entry: QuarantineEntry,
    pub raw: Bytes,
}

/// What an insert did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inserted {
    /// The new records' ids, in input order.
    pub ids: Vec<QuarantineId>,
    /// Oldest records dropped to make room.
    pub evicted: u64,
}

#[derive(Debug, Default)]
struct Totals {
    records: u64,
    bytes: u64,
}

/// Owner of the `quarantine` tree. Cheap to clone; clones share their totals.
#[derive(Debug, Clone)]
pub struct Quarantine {
    tree: sled::Tree,
    db: sled::Db,
    /// Record count and kept bytes, kept in memory (sled's `len` walks the tree); every
    /// change holds this lock, so the totals never drift from the tree.
    totals: Arc<Mutex<Totals>>,
}

fn io(op: &'static str) -> impl FnOnce(sled::Error) -> StoreError {
    move |source| StoreError::Io { op, source }
}

fn corrupt(key: &[u8], why: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        tree: "quarantine",
        key: format!("{key:?}"),
        why: why.into(),
    }
}

impl Quarantine {
    /// Most records kept.
    pub const MAX_RECORDS: u64 = 10_000;
    /// Most raw bytes kept over all records.
    pub const MAX_TOTAL_BYTES: u64 = 256 * 1024 * 1024;
    /// Bytes kept of a payload larger than any valid alert.
    pub const MAX_KEPT_OVERSIZE: usize = 256 * 1024;

    pub(super) fn open(db: &sled::Db) -> Result<Self, StoreError> {
        let tree = db.open_tree("quarantine").map_err(io("open quarantine"))?;
        let mut totals = Totals::default();
        for kv in tree.iter() {
            let (k, v) = kv.map_err(io("scan quarantine"))?;
            let (entry, _) = decode(&k, &v)?;
            totals.records += 1;
            totals.bytes += entry.kept;
        }
        Ok(Self {
            tree,
            db: db.clone(),
            totals: Arc::new(Mutex::new(totals)),
        })
    }

    fn totals(&self) -> std::sync::MutexGuard<'_, Totals> {
        // A panic while holding the lock leaves totals that are at worst a record off.
        self.totals.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records kept now.
    pub fn len(&self) -> u64 {
        self.totals().records
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Raw bytes kept now.
    pub fn bytes(&self) -> u64 {
        self.totals().bytes
    }

    /// Adds records, dropping the oldest when the bounds need room. Not durable until the
    /// store is flushed.
    pub fn insert(&self, new: &[NewQuarantined]) -> Result<Inserted, StoreError> {
        let mut totals = self.totals();
        let mut out = Inserted::default();
        for n in new {
            let max = if n.raw.len() <= protocol::limits::MAX_ALERT_BYTES {
                n.raw.len()
            } else {
                Self::MAX_KEPT_OVERSIZE
            };
            let kept = n.raw.slice(..max);
            while totals.records > 0
                && (totals.records + 1 > Self::MAX_RECORDS
                    || totals.bytes + kept.len() as u64 > Self::MAX_TOTAL_BYTES)
            {
                let Some((k, v)) = self.tree.pop_min().map_err(io("evict quarantine"))? else {
                    break;
                };
                let (old, _) = decode(&k, &v)?;
                totals.records -= 1;
                totals.bytes -= old.kept;
                out.evicted += 1;
            }
            let id = QuarantineId(self.db.generate_id().map_err(io("quarantine id"))?);
            let entry = QuarantineEntry {
                id,
                site: n.site.clone(),
                at: n.at,
                code: n.code,
                reason: n.reason.clone(),
                len: n.raw.len() as u64,
                kept: kept.len() as u64,
                sha256: Sha256::digest(&n.raw)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect(),
            };
            self.tree
                .insert(id.0.to_be_bytes(), encode(&entry, &kept)?)
                .map_err(io("write quarantine"))?;
            totals.records += 1;
            totals.bytes += entry.kept;
            out.ids.push(id);
        }
        Ok(out)
    }

    /// Up to `limit` records, newest first, older than `before` when given.
    pub fn list(
        &self,
        before: Option<QuarantineId>,
        limit: usize,
    ) -> Result<Vec<QuarantineEntry>, StoreError> {
        let iter = match before {
            Some(b) => self.tree.range(..b.0.to_be_bytes()),
            None => self.tree.iter(),
        };
        iter.rev()
            .take(limit)
            .map(|kv| {
                let (k, v) = kv.map_err(io("scan quarantine"))?;
                decode(&k, &v).map(|(e, _)| e)
            })
            .collect()
    }

    /// One record with its bytes.
    pub fn get(&self, id: QuarantineId) -> Result<Option<Quarantined>, StoreError> {
        let Some(v) = self
            .tree
            .get(id.0.to_be_bytes())
            .map_err(io("read quarantine"))?
        else {
            return Ok(None);
        };
        let (entry, raw) = decode(&id.0.to_be_bytes(), &v)?;
        Ok(Some(Quarantined {
            entry,
            raw: Bytes::copy_from_slice(raw),
        }))
    }

    /// Records a new refusal of a record (a failed re-ingest); false if it is gone.
    pub fn refused_again(
        &self,
        id: QuarantineId,
        at: UtcMillis,
        code: RejectCode,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let _totals = self.totals();
        let key = id.0.to_be_bytes();
        let Some(v) = self.tree.get(key).map_err(io("read quarantine"))? else {
            return Ok(false);
        };
        let (mut entry, raw) = decode(&key, &v)?;
        entry.at = at;
        entry.code = code;
        entry.reason = reason.to_owned();
        self.tree
            .insert(key, encode(&entry, raw)?)
            .map_err(io("write quarantine"))?;
        Ok(true)
    }

    /// Deletes a record; false if it was not there. Not durable until the store is flushed.
    pub fn remove(&self, id: QuarantineId) -> Result<bool, StoreError> {
        let mut totals = self.totals();
        let key = id.0.to_be_bytes();
        match self.tree.remove(key).map_err(io("delete quarantine"))? {
            Some(v) => {
                let (old, _) = decode(&key, &v)?;
                totals.records -= 1;
                totals.bytes -= old.kept;
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

fn encode(entry: &QuarantineEntry, raw: &[u8]) -> Result<Vec<u8>, StoreError> {
    let head =
        serde_json::to_vec(entry).map_err(|e| corrupt(&entry.id.0.to_be_bytes(), e.to_string()))?;
    let mut v = Vec::with_capacity(4 + head.len() + raw.len());
    v.extend_from_slice(&(head.len() as u32).to_be_bytes());
    v.extend_from_slice(&head);
    v.extend_from_slice(raw);
    Ok(v)
}

fn decode<'a>(key: &[u8], v: &'a [u8]) -> Result<(QuarantineEntry, &'a [u8]), StoreError> {
    let (len, rest) = v
        .split_first_chunk::<4>()
        .ok_or_else(|| corrupt(key, "shorter than its header length"))?;
    let len = u32::from_be_bytes(*len) as usize;
    if rest.len() < len {
        return Err(corrupt(key, "shorter than its header"));
    }
    let (head, raw) = rest.split_at(len);
    let entry: QuarantineEntry =
        serde_json::from_slice(head).map_err(|e| corrupt(key, e.to_string()))?;
    if raw.len() as u64 != entry.kept {
        return Err(corrupt(key, "kept bytes differ from the header"));
    }
    Ok((entry, raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(site: &str, raw: &[u8]) -> NewQuarantined {
        NewQuarantined {
            site: site.into(),
            at: UtcMillis(5),
            code: RejectCode::Malformed,
            reason: "bad JSON".into(),
            raw: Bytes::copy_from_slice(raw),
        }
    }

    #[test]
    fn records_are_listed_newest_first_and_survive_a_reopen_with_their_totals() {
        let dir = tempfile::tempdir().unwrap();
        let ids = {
            let store = super::super::Store::open(dir.path()).unwrap();
            let q = store.quarantine();
            let ins = q
                .insert(&[new("s1", b"{not json"), new("s2", b"xx"), new("s1", b"yyy")])
                .unwrap();
            assert_eq!(ins.evicted, 0);
            store.flush_blocking().unwrap();
            ins.ids
        };
        let store = super::super::Store::open(dir.path()).unwrap();
        let q = store.quarantine();
        assert_eq!((q.len(), q.bytes()), (3, 9 + 2 + 3));
        let all = q.list(None, 10).unwrap();
        let listed: Vec<QuarantineId> = all.iter().map(|e| e.id).collect();
        assert_eq!(listed, [ids[2], ids[1], ids[0]]);
        assert_eq!(q.list(Some(ids[2]), 1).unwrap()[0].id, ids[1]);
        let got = q.get(ids[0]).unwrap().unwrap();
        assert_eq!(got.raw.as_ref(), b"{not json");
        assert_eq!(got.entry.site, "s1");
        assert_eq!(got.entry.len, 9);
        assert!(!got.entry.truncated());
        assert_eq!(
            got.entry.sha256,
            crate::gateway::auth::sha256_hex(b"{not json")
        );
        assert!(
            q.refused_again(ids[0], UtcMillis(9), RejectCode::NotAuthorized, "again")
                .unwrap()
        );
        let e = q.get(ids[0]).unwrap().unwrap().entry;
        assert_eq!(
            (e.code, e.reason.as_str(), e.at),
            (RejectCode::NotAuthorized, "again", UtcMillis(9))
        );
        assert!(q.remove(ids[1]).unwrap());
        assert!(!q.remove(ids[1]).unwrap());
        assert_eq!((q.len(), q.bytes()), (2, 9 + 3));
    }

    #[test]
    fn an_oversized_payload_keeps_its_head_length_and_digest() {
        let dir = tempfile::tempdir().unwrap();
        let store = super::super::Store::open(dir.path()).unwrap();
        let big = vec![b'x'; protocol::limits::MAX_ALERT_BYTES + 1];
        let ins = store.quarantine().insert(&[new("s1", &big)]).unwrap();
        let got = store.quarantine().get(ins.ids[0]).unwrap().unwrap();
        assert_eq!(got.raw.len(), Quarantine::MAX_KEPT_OVERSIZE);
        assert_eq!(got.entry.len, big.len() as u64);
        assert!(got.entry.truncated());
        assert_eq!(got.entry.sha256, crate::gateway::auth::sha256_hex(&big));
    }

    #[test]
    fn when_full_the_oldest_records_make_room() {
        let dir = tempfile::tempdir().unwrap();
        let store = super::super::Store::open(dir.path()).unwrap();
        let q = store.quarantine();
        let batch: Vec<NewQuarantined> = (0..Quarantine::MAX_RECORDS)
            .map(|i| new("s1", i.to_string().as_bytes()))
            .collect();
        let first = q.insert(&batch).unwrap();
        assert_eq!(q.len(), Quarantine::MAX_RECORDS);
        let more = q.insert(&[new("s9", b"a"), new("s9", b"b")]).unwrap();
        assert_eq!(more.evicted, 2);
        assert_eq!(q.len(), Quarantine::MAX_RECORDS);
        assert!(q.get(first.ids[0]).unwrap().is_none());
        assert!(q.get(first.ids[1]).unwrap().is_none());
        assert!(q.get(first.ids[2]).unwrap().is_some());
        assert_eq!(q.list(None, 1).unwrap()[0].id, more.ids[1]);
    }
}
