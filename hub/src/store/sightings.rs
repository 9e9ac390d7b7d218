//! Tag sightings ([`Sightings`]): where and when a tag was read, for its trajectory, kept
//! `[retention] sightings_days` after the hub stored them.
//!
//! Tree `sightings` (the encoding is private to this module):
//! - `{tag}/{first ms BE}{site}/{reader}` → the sighting's JSON. Tags are ids
//!   (`[A-Za-z0-9_.-]`), so a tag's sightings are one key range in time order.
//! - `\0{stored ms BE}{the sighting's key}` → empty: the time index retention walks. Stored
//!   time is the hub's, not the sighting's own: a site's clock (or a box in the wrong hands)
//!   cannot date a sighting so it is never swept, or swept at once.
//! - `\0` alone: the index is complete (written once the sightings of an older store, which
//!   had no index, are indexed at open).
//!
//! No id starts with `\0`, so the index never falls inside a tag's range.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use protocol::UtcMillis;
use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::retention::{Expiring, RetentionError, Swept};

/// One stored tag sighting, for a tag's trajectory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SightingRecord {
    pub tag: String,
    pub site: String,
    pub reader: String,
    pub first: UtcMillis,
    pub last: UtcMillis,
    pub reads: u32,
    pub rssi: i16,
}

const INDEX: u8 = 0;
/// Index entries written per batch when indexing an older store.
const MIGRATE_CHUNK: usize = 10_000;

/// Owner of the `sightings` tree. Cheap to clone; clones share their byte count.
#[derive(Debug, Clone)]
pub struct Sightings {
    tree: sled::Tree,
    size: std::sync::Arc<Size>,
}

/// The tree's bytes (keys and values, index included): counted once by a scan on the first
/// [`Expiring::bytes`] (on the sweeper's thread, not at start), then kept by adding every
/// change since open. Writes racing that first scan may be counted twice or not at all; it
/// is a gauge, and sled's own overhead is not in it either.
#[derive(Debug, Default)]
struct Size {
    /// Net bytes written since open.
    delta: AtomicI64,
    /// (bytes counted by the scan, `delta` when it was taken), once taken.
    base: Mutex<Option<(u64, i64)>>,
}

fn io(op: &'static str) -> impl FnOnce(sled::Error) -> StoreError {
    move |source| StoreError::Io { op, source }
}

fn record_key(s: &SightingRecord) -> Vec<u8> {
    let mut k = Vec::with_capacity(s.tag.len() + s.site.len() + s.reader.len() + 10);
    k.extend_from_slice(s.tag.as_bytes());
    k.push(b'/');
    k.extend_from_slice(&(s.first.0.max(0) as u64).to_be_bytes());
    k.extend_from_slice(s.site.as_bytes());
    k.push(b'/');
    k.extend_from_slice(s.reader.as_bytes());
    k
}

fn index_key(stored: UtcMillis, record: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + record.len());
    k.push(INDEX);
    k.extend_from_slice(&(stored.0.max(0) as u64).to_be_bytes());
    k.extend_from_slice(record);
    k
}

fn ms_be(at: UtcMillis) -> [u8; 8] {
    (at.0.max(0) as u64).to_be_bytes()
}

impl Sightings {
    /// Opens the tree; sightings of a store written before the index existed are indexed
    /// now, dated by their own `last` time (never later than `now`).
    pub(super) fn open(db: &sled::Db, now: UtcMillis) -> Result<Self, StoreError> {
        let tree = db.open_tree("sightings").map_err(io("open sightings"))?;
        let s = Self {
            tree,
            size: Default::default(),
        };
        if s.tree.get([INDEX]).map_err(io("read sightings"))?.is_none() {
            s.index_all(now)?;
        }
        Ok(s)
    }

    fn index_all(&self, now: UtcMillis) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        let mut n = 0usize;
        let mut total = 0usize;
        for kv in self.tree.range([INDEX + 1]..) {
            let (k, v) = kv.map_err(io("scan sightings"))?;
            let last = serde_json::from_slice::<SightingRecord>(&v).map_or(now, |r| r.last);
            batch.insert(index_key(UtcMillis(last.0.min(now.0)), &k), &[][..]);
            n += 1;
            total += 1;
            if n == MIGRATE_CHUNK {
                self.tree
                    .apply_batch(std::mem::take(&mut batch))
                    .map_err(io("index sightings"))?;
                n = 0;
            }
        }
        batch.insert(&[INDEX][..], &[][..]);
        self.tree
            .apply_batch(batch)
            .map_err(io("index sightings"))?;
        if total > 0 {
            tracing::info!(
                sightings = total,
                "sightings of an older store indexed for retention"
            );
        }
        Ok(())
    }

    /// Stores a batch of sightings received at `stored` (one atomic batch). A sighting
    /// received again (a resend) replaces the stored one and keeps its first stored time.
    pub fn insert(&self, records: &[SightingRecord], stored: UtcMillis) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        let mut delta = 0i64;
        let mut seen = std::collections::HashSet::new();
        for r in records {
            let Ok(v) = serde_json::to_vec(r) else {
                continue;
            };
            let k = record_key(r);
            let old = self.tree.get(&k).map_err(io("read sighting"))?;
            match old {
                Some(old) => delta -= old.len() as i64,
                None if seen.contains(&k) => {}
                None => {
                    let ik = index_key(stored, &k);
                    delta += ik.len() as i64 + k.len() as i64;
                    batch.insert(ik, &[][..]);
                }
            }
            delta += v.len() as i64;
            batch.insert(k.clone(), v);
            seen.insert(k);
        }
        self.tree
            .apply_batch(batch)
            .map_err(io("store sightings"))?;
        self.size.delta.fetch_add(delta, Ordering::Relaxed);
        Ok(())
    }

    /// A tag's sightings with `first` in `[from, to)`, in time order.
    pub fn trajectory(
        &self,
        tag: &str,
        from: UtcMillis,
        to: UtcMillis,
    ) -> Result<Vec<SightingRecord>, StoreError> {
        let mut prefix = tag.as_bytes().to_vec();
        prefix.push(b'/');
        let start = [&prefix[..], &ms_be(from)].concat();
        let end = [&prefix[..], &ms_be(to)].concat();
        let mut out = Vec::new();
        for kv in self.tree.range(start..end) {
            let (_, v) = kv.map_err(io("scan sightings"))?;
            if let Ok(r) = serde_json::from_slice(&v) {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// Sightings stored (walks the tree: for tests and tools, not for a hot path).
    pub fn len(&self) -> usize {
        self.tree.range([INDEX + 1]..).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Expiring for Sightings {
    /// Oldest stored first, through the time index: a call reads about `max` index entries
    /// and their records, however many sightings are kept.
    fn expire_before(&self, cutoff: UtcMillis, max: usize) -> Result<Swept, RetentionError> {
        let start = index_key(UtcMillis(0), &[]);
        let end = index_key(cutoff, &[]);
        let mut batch = sled::Batch::default();
        let mut swept = Swept::default();
        let mut seen = 0usize;
        let mut freed = 0u64;
        for k in self.tree.range(start..end).keys().take(max) {
            let k = k.map_err(io("scan sightings index"))?;
            seen += 1;
            let record = k.get(9..).unwrap_or_default();
            if let Some(v) = self.tree.get(record).map_err(io("read sighting"))? {
                swept.records += 1;
                swept.bytes += (record.len() + v.len()) as u64;
                batch.remove(record);
            }
            freed += k.len() as u64;
            batch.remove(k);
        }
        self.tree
            .apply_batch(batch)
            .map_err(io("expire sightings"))?;
        freed += swept.bytes;
        self.size.delta.fetch_sub(freed as i64, Ordering::Relaxed);
        swept.more = seen == max;
        Ok(swept)
    }

    fn bytes(&self) -> Result<u64, RetentionError> {
        let mut base = self.size.base.lock().unwrap_or_else(|p| p.into_inner());
        let (counted, at) = match *base {
            Some(b) => b,
            None => {
                let at = self.size.delta.load(Ordering::Relaxed);
                let mut n = 0u64;
                for kv in self.tree.iter() {
                    let (k, v) = kv.map_err(io("scan sightings"))?;
                    n += (k.len() + v.len()) as u64;
                }
                *base = Some((n, at));
                (n, at)
            }
        };
        let since = self.size.delta.load(Ordering::Relaxed) - at;
        Ok(counted.saturating_add_signed(since))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(tag: &str, reader: &str, first: i64) -> SightingRecord {
        SightingRecord {
            tag: tag.into(),
            site: "s1".into(),
            reader: reader.into(),
            first: UtcMillis(first),
            last: UtcMillis(first + 500),
            reads: 3,
            rssi: -60,
        }
    }

    fn open(dir: &std::path::Path) -> Sightings {
        // The store's opener: it waits for sled's lock, which a handle just dropped lets go
        // of only shortly after.
        let db = crate::store::open_db(dir).unwrap();
        Sightings::open(&db, UtcMillis(1_000_000)).unwrap()
    }

    #[test]
    fn expiry_goes_by_stored_time_bounded_and_keeps_the_rest_and_the_count() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        // Stored at 1000: dated far in the future by the site, still swept by stored time.
        s.insert(
            &[rec("T1", "r1", 10), rec("T1", "r2", 9_000_000_000_000)],
            UtcMillis(1_000),
        )
        .unwrap();
        s.insert(&[rec("T2", "r1", 20)], UtcMillis(2_000)).unwrap();
        s.insert(&[rec("T1", "r3", 30)], UtcMillis(5_000)).unwrap();
        let before = s.bytes().unwrap();
        assert!(before > 0);
        assert_eq!(s.len(), 4);
        let first = s.expire_before(UtcMillis(3_000), 2).unwrap();
        assert_eq!((first.records, first.more), (2, true));
        let second = s.expire_before(UtcMillis(3_000), 2).unwrap();
        assert_eq!((second.records, second.more), (1, false));
        assert_eq!(s.len(), 1);
        let left = s
            .trajectory("T1", UtcMillis(0), UtcMillis(i64::MAX))
            .unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].reader, "r3");
        assert!(
            s.trajectory("T2", UtcMillis(0), UtcMillis(i64::MAX))
                .unwrap()
                .is_empty()
        );
        // The running total matches a fresh count of what is left.
        let fresh = |s: &Sightings| -> u64 {
            s.tree
                .iter()
                .map(|kv| kv.map(|(k, v)| (k.len() + v.len()) as u64).unwrap())
                .sum()
        };
        assert_eq!(s.bytes().unwrap(), fresh(&s));
        // What was swept is the records' keys and values (the index is not counted in it).
        let gone: u64 = [
            rec("T1", "r1", 10),
            rec("T1", "r2", 9_000_000_000_000),
            rec("T2", "r1", 20),
        ]
        .iter()
        .map(|r| (record_key(r).len() + serde_json::to_vec(r).unwrap().len()) as u64)
        .sum();
        assert_eq!(first.bytes + second.bytes, gone);
    }

    #[test]
    fn a_resend_keeps_its_first_stored_time_and_one_index_entry() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        s.insert(
            &[rec("T1", "r1", 10), rec("T1", "r1", 10)],
            UtcMillis(1_000),
        )
        .unwrap();
        s.insert(&[rec("T1", "r1", 10)], UtcMillis(9_000)).unwrap();
        assert_eq!(s.len(), 1);
        let swept = s.expire_before(UtcMillis(2_000), 10).unwrap();
        assert_eq!((swept.records, swept.more), (1, false));
        assert!(s.is_empty());
        assert_eq!(s.tree.len(), 1, "only the index-complete marker is left");
    }

    #[test]
    fn sightings_of_a_store_without_the_index_are_indexed_at_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = crate::store::open_db(dir.path()).unwrap();
            let tree = db.open_tree("sightings").unwrap();
            let r = rec("T1", "r1", 500);
            tree.insert(record_key(&r), serde_json::to_vec(&r).unwrap())
                .unwrap();
            db.flush().unwrap();
        }
        let s = open(dir.path());
        assert_eq!(s.expire_before(UtcMillis(1_000), 10).unwrap().records, 0);
        // Dated by its `last` (1000): due once the cutoff passes it.
        assert_eq!(s.expire_before(UtcMillis(1_001), 10).unwrap().records, 1);
    }
}
