//! Blobs ([`Blobs`]): the JPEGs the hub keeps (alert snapshots, photos people attach) as
//! files, content-addressed, outside sled. sled keeps only their metadata; a 40 KB snapshot in
//! sled's log was written about twice (log, then compaction), and kept forever.
//!
//! On disk: `{data_dir}/blobs/{first two hex digits}/{SHA-256, 64 hex digits}`, written under
//! `blobs/tmp/` and renamed into place, so a file under its name is always whole once synced.
//! Tree `blobs`: `h/{id, 32 bytes}` → [`BlobMeta`] (JSON); `t/{kind, 1 byte}{last ref ms BE, 8
//! bytes}{id}` → empty, the expiry index; `n/{kind}` → the kind's total bytes (u64 BE). The
//! encoding is private to this module.
//!
//! The invariant: **no metadata without its file**. A writer ([`Blobs::begin`]) writes the
//! files, syncs them ([`Batch::sync`]: one `syncfs`, which covers the files and the directory
//! entries of the renames), and only then records metadata, inside the caller's sled
//! transaction ([`Batch::record`]); expiry removes the metadata, flushes it, and only then the
//! files. A crash can therefore leave a file without metadata (written, never recorded; or
//! expired, not yet unlinked), never the reverse. Such orphans are collected a directory at a
//! time ([`Blobs::collect_orphans`]); `tmp/` is emptied at open. Writers and the collector
//! hold one lock, so a file a writer found already present (the same bytes stored before) is
//! never collected between its check and its record.
//!
//! Retention is by last reference: a blob expires when no alert or photo has named it for its
//! kind's retention period ([`Blobs::expire_before`]).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use protocol::UtcMillis;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sled::transaction::{ConflictableTransactionError, TransactionalTree};

use super::StoreError;
use crate::retention::{Expiring, RetentionError, Swept};

/// A blob's SHA-256: its name on disk and in records (lower-case hex in JSON and URLs).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobId([u8; 32]);

impl BlobId {
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    pub fn to_hex(self) -> String {
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
            s.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
        }
        s
    }

    /// Exactly 64 lower-case hex digits.
    pub fn parse_hex(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.len() != 64 {
            return None;
        }
        let nibble = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        let mut out = [0u8; 32];
        for (i, pair) in b.chunks_exact(2).enumerate() {
            out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
        }
        Some(Self(out))
    }
}

impl std::fmt::Display for BlobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl std::fmt::Debug for BlobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BlobId({})", self.to_hex())
    }
}

impl Serialize for BlobId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for BlobId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse_hex(&s).ok_or_else(|| serde::de::Error::custom("not a 64-digit hex SHA-256"))
    }
}

/// What a blob is kept as; each kind has its own retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, strum::IntoStaticStr)]
#[serde(rename_all = "snake_case")]
pub enum BlobKind {
    // Plural, unlike the serde name: the retention kind's name (`retention::Kind`), which
    // metrics label by.
    #[strum(serialize = "snapshots")]
    Snapshot,
    #[strum(serialize = "photos")]
    Photo,
}

impl BlobKind {
    pub const ALL: [Self; 2] = [Self::Snapshot, Self::Photo];

    fn byte(self) -> u8 {
        match self {
            Self::Snapshot => b's',
            Self::Photo => b'p',
        }
    }

    fn index(self) -> usize {
        match self {
            Self::Snapshot => 0,
            Self::Photo => 1,
        }
    }

    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// What sled knows of a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobMeta {
    /// The kind of its latest reference (whose retention applies).
    pub kind: BlobKind,
    pub len: u64,
    /// When an alert or photo last named it.
    pub last_ref: UtcMillis,
}

const META: u8 = b'h';
const EXPIRY: u8 = b't';
const TOTAL: u8 = b'n';

fn meta_key(id: BlobId) -> [u8; 33] {
    let mut k = [0u8; 33];
    k[0] = META;
    k[1..].copy_from_slice(&id.0);
    k
}

fn expiry_key(kind: BlobKind, at: UtcMillis, id: BlobId) -> [u8; 42] {
    let mut k = [0u8; 42];
    k[0] = EXPIRY;
    k[1] = kind.byte();
    k[2..10].copy_from_slice(&(at.0.max(0) as u64).to_be_bytes());
    k[10..].copy_from_slice(&id.0);
    k
}

fn total_key(kind: BlobKind) -> [u8; 2] {
    [TOTAL, kind.byte()]
}

fn io_err(op: &'static str, path: &Path, e: std::io::Error) -> StoreError {
    StoreError::File {
        op,
        path: path.to_path_buf(),
        source: e,
    }
}

/// Owner of the blob files and their metadata.
#[derive(Debug, Clone)]
pub struct Blobs {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    tree: sled::Tree,
    /// Held from a writer's first file to its recorded metadata, and by the collector and
    /// expiry around each removal (see the module's invariant).
    lock: Mutex<()>,
    /// Bytes per kind, mirrored from `n/` for `/metrics` without a read.
    bytes: [AtomicU64; 2],
    tmp_seq: AtomicU64,
    /// The next subdirectory (00..ff) the orphan collector looks at.
    next_dir: AtomicU64,
}

/// What one expiry or collection pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlobSweep {
    pub blobs: u64,
    pub bytes: u64,
    /// It stopped at its bound; more is due.
    pub more: bool,
}

impl Blobs {
    pub(super) fn open(db: &sled::Db, dir: &Path) -> Result<Self, StoreError> {
        let tree = db.open_tree("blobs").map_err(|source| StoreError::Open {
            path: dir.to_path_buf(),
            source,
        })?;
        let tmp = dir.join("tmp");
        std::fs::create_dir_all(&tmp).map_err(|e| io_err("create", &tmp, e))?;
        // A file under tmp/ is a write that never finished: nothing names it.
        for entry in std::fs::read_dir(&tmp).map_err(|e| io_err("list", &tmp, e))? {
            let path = entry.map_err(|e| io_err("list", &tmp, e))?.path();
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove an unfinished blob");
            }
        }
        let bytes = [AtomicU64::new(0), AtomicU64::new(0)];
        for kind in BlobKind::ALL {
            let v = tree
                .get(total_key(kind))
                .map_err(super::io("read blob totals"))?;
            bytes[kind.index()].store(v.as_deref().map_or(0, be_u64), Ordering::Relaxed);
        }
        Ok(Self {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                tree,
                lock: Mutex::new(()),
                bytes,
                tmp_seq: AtomicU64::new(0),
                next_dir: AtomicU64::new(0),
            }),
        })
    }

    pub(super) fn tree(&self) -> &sled::Tree {
        &self.inner.tree
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    fn path_of(&self, id: BlobId) -> PathBuf {
        let hex = id.to_hex();
        self.inner.dir.join(&hex[..2]).join(hex)
    }

    fn lock(&self) -> MutexGuard<'_, ()> {
        // A panic while holding it leaves nothing half-done that the lock protects (files are
        // whole or under tmp/, metadata is transactional).
        self.inner
            .lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts writing blobs; the lock is held until the batch is dropped (after its metadata
    /// is recorded).
    pub fn begin(&self) -> Batch<'_> {
        Batch {
            blobs: self,
            _guard: self.lock(),
            written: 0,
        }
    }

    /// A blob's bytes, checked against its name; `None` when it has expired (or never was).
    pub fn get(&self, id: BlobId) -> Result<Option<Vec<u8>>, StoreError> {
        if self
            .inner
            .tree
            .get(meta_key(id))
            .map_err(super::io("read blob"))?
            .is_none()
        {
            return Ok(None);
        }
        let path = self.path_of(id);
        let bytes = std::fs::read(&path).map_err(|e| io_err("read", &path, e))?;
        if BlobId::of(&bytes) != id {
            return Err(StoreError::Corrupt {
                tree: "blobs",
                key: path.display().to_string(),
                why: "the file's SHA-256 is not its name".into(),
            });
        }
        Ok(Some(bytes))
    }

    pub fn meta(&self, id: BlobId) -> Result<Option<BlobMeta>, StoreError> {
        self.inner
            .tree
            .get(meta_key(id))
            .map_err(super::io("read blob"))?
            .map(|v| decode_meta(id, &v))
            .transpose()
    }

    /// Bytes kept of `kind` (as recorded; the files' sizes).
    pub fn bytes(&self, kind: BlobKind) -> u64 {
        self.inner.bytes[kind.index()].load(Ordering::Relaxed)
    }

    /// Removes up to `max` blobs of `kind` last named before `cutoff`, but none `keep` names
    /// (an open case's: stepped over, so the scan reads at most `max` plus the kept): their
    /// metadata first (flushed), then their files.
    pub fn expire_before(
        &self,
        kind: BlobKind,
        cutoff: UtcMillis,
        max: usize,
        keep: &dyn Fn(BlobId) -> bool,
    ) -> Result<BlobSweep, StoreError> {
        let tree = &self.inner.tree;
        let start = expiry_key(kind, UtcMillis(0), BlobId([0; 32]));
        let end = expiry_key(kind, cutoff, BlobId([0; 32]));
        let _guard = self.lock();
        let mut due = Vec::new();
        let mut more = false;
        for k in tree.range(start..end).keys() {
            let k = k.map_err(super::io("scan blob expiry"))?;
            let mut id = [0u8; 32];
            id.copy_from_slice(&k[10..42]);
            if keep(BlobId(id)) {
                continue;
            }
            if due.len() == max {
                more = true;
                break;
            }
            due.push((k, BlobId(id)));
        }
        if due.is_empty() {
            return Ok(BlobSweep::default());
        }
        let freed = tree
            .transaction(|t| {
                let mut freed = 0u64;
                for (k, id) in &due {
                    t.remove(k.as_ref())?;
                    if let Some(v) = t.remove(&meta_key(*id)[..])? {
                        freed += decode_meta(*id, &v).map_or(0, |m| m.len);
                    }
                }
                add_total(t, kind, -(freed as i64))?;
                Ok::<_, ConflictableTransactionError<()>>(freed)
            })
            .map_err(super::tx_err("expire blobs"))?;
        tree.flush().map_err(super::io("flush blob expiry"))?;
        let mut d = Deltas::default();
        d.0[kind.index()] = -(freed as i64);
        self.committed(&d);
        for (_, id) in &due {
            let path = self.path_of(*id);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                // Left as an orphan; the collector retries.
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot remove an expired blob")
                }
            }
        }
        Ok(BlobSweep {
            blobs: due.len() as u64,
            bytes: freed,
            more,
        })
    }

    /// Removes the files of one subdirectory (of 256, taken in turn) that no metadata names:
    /// left by a crash between writing and recording, or between expiring and unlinking.
    pub fn collect_orphans(&self) -> Result<BlobSweep, StoreError> {
        let n = self.inner.next_dir.fetch_add(1, Ordering::Relaxed) % 256;
        let dir = self.inner.dir.join(format!("{n:02x}"));
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(BlobSweep::default());
            }
            Err(e) => return Err(io_err("list", &dir, e)),
        };
        let mut swept = BlobSweep::default();
        for entry in entries {
            let entry = entry.map_err(|e| io_err("list", &dir, e))?;
            let name = entry.file_name();
            let Some(id) = name.to_str().and_then(BlobId::parse_hex) else {
                continue;
            };
            let _guard = self.lock();
            if self
                .inner
                .tree
                .contains_key(meta_key(id))
                .map_err(super::io("read blob"))?
            {
                continue;
            }
            let len = entry.metadata().map_or(0, |m| m.len());
            match std::fs::remove_file(entry.path()) {
                Ok(()) => {
                    swept.blobs += 1;
                    swept.bytes += len;
                }
                Err(e) => {
                    tracing::warn!(path = %entry.path().display(), error = %e, "cannot remove an orphan blob")
                }
            }
        }
        if swept.blobs > 0 {
            tracing::info!(dir = %dir.display(), blobs = swept.blobs, bytes = swept.bytes, "orphan blobs collected");
        }
        Ok(swept)
    }

    /// Every subdirectory at once (at start and in tests).
    pub fn collect_all_orphans(&self) -> Result<BlobSweep, StoreError> {
        let mut total = BlobSweep::default();
        for _ in 0..256 {
            let s = self.collect_orphans()?;
            total.blobs += s.blobs;
            total.bytes += s.bytes;
        }
        Ok(total)
    }

    /// Applies a committed transaction's `Deltas` to the in-memory totals.
    pub fn committed(&self, deltas: &Deltas) {
        for kind in BlobKind::ALL {
            let d = deltas.0[kind.index()];
            let b = &self.inner.bytes[kind.index()];
            if d >= 0 {
                b.fetch_add(d as u64, Ordering::Relaxed);
            } else {
                let _ = b.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                    Some(v.saturating_sub(d.unsigned_abs()))
                });
            }
        }
    }
}

fn be_u64(v: &[u8]) -> u64 {
    v.try_into().map_or(0, u64::from_be_bytes)
}

fn decode_meta(id: BlobId, v: &[u8]) -> Result<BlobMeta, StoreError> {
    serde_json::from_slice(v).map_err(|e| StoreError::Corrupt {
        tree: "blobs",
        key: id.to_hex(),
        why: e.to_string(),
    })
}

fn add_total(
    t: &TransactionalTree,
    kind: BlobKind,
    delta: i64,
) -> Result<(), ConflictableTransactionError<()>> {
    if delta == 0 {
        return Ok(());
    }
    let key = total_key(kind);
    let now = t.get(key)?.as_deref().map_or(0, be_u64);
    let next = (now as i64).saturating_add(delta).max(0) as u64;
    t.insert(&key[..], &next.to_be_bytes()[..])?;
    Ok(())
}

/// Blobs being written: files first ([`Batch::put`]), synced ([`Batch::sync`]), then their
/// metadata recorded in the caller's transaction ([`Batch::record`]). Holds the blob lock.
#[derive(Debug)]
pub struct Batch<'a> {
    blobs: &'a Blobs,
    _guard: MutexGuard<'a, ()>,
    written: usize,
}

impl Batch<'_> {
    /// Writes `bytes` under their name unless a whole file of them is already there.
    pub fn put(&mut self, bytes: &[u8]) -> Result<BlobId, StoreError> {
        let id = BlobId::of(bytes);
        let path = self.blobs.path_of(id);
        // Content-addressed: a file already under this name is either the same bytes stored
        // before, or the leftover of a batch that crashed before its metadata (renamed, maybe
        // never synced, torn by a power cut). It is kept only if it still hashes to its name,
        // and synced with this batch all the same: its metadata is about to be written.
        if std::fs::metadata(&path).is_ok_and(|m| m.len() == bytes.len() as u64)
            && std::fs::read(&path).is_ok_and(|b| BlobId::of(&b) == id)
        {
            self.written += 1;
            return Ok(id);
        }
        let dir = self.blobs.inner.dir.clone();
        let parent = path.parent().unwrap_or(&dir);
        std::fs::create_dir_all(parent).map_err(|e| io_err("create", parent, e))?;
        let seq = self.blobs.inner.tmp_seq.fetch_add(1, Ordering::Relaxed);
        let tmp = dir
            .join("tmp")
            .join(format!("{}.{}.{seq}", id.to_hex(), std::process::id()));
        let written = File::create(&tmp)
            .and_then(|mut f| f.write_all(bytes))
            .map_err(|e| io_err("write", &tmp, e));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        std::fs::rename(&tmp, &path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io_err("rename", &path, e)
        })?;
        self.written += 1;
        Ok(id)
    }

    /// Makes every file put so far durable, with its directory entry: one `syncfs` for the
    /// batch rather than a file and a directory `fsync` per blob (hundreds per batch at full
    /// rate). It also flushes whatever else is dirty on that file system, sled's log included,
    /// which sled's own flush then finds done.
    pub fn sync(&mut self) -> Result<(), StoreError> {
        if self.written == 0 {
            return Ok(());
        }
        let dir = &self.blobs.inner.dir;
        let f = File::open(dir).map_err(|e| io_err("open", dir, e))?;
        rustix::fs::syncfs(&f).map_err(|e| io_err("sync", dir, e.into()))?;
        self.written = 0;
        Ok(())
    }

    /// Records (inside the caller's transaction on the `blobs` tree) that `id`, `len` bytes,
    /// was named at `at` as `kind`, adding the change in bytes per kind to `deltas` (handed to
    /// [`Blobs::committed`] once the transaction committed).
    pub fn record(
        t: &TransactionalTree,
        id: BlobId,
        kind: BlobKind,
        len: u64,
        at: UtcMillis,
        deltas: &mut Deltas,
    ) -> Result<(), ConflictableTransactionError<()>> {
        let old = match t.get(meta_key(id))? {
            Some(v) => serde_json::from_slice::<BlobMeta>(&v).ok(),
            None => None,
        };
        let last_ref = old.map_or(at, |o| UtcMillis(o.last_ref.0.max(at.0)));
        if let Some(o) = old {
            t.remove(&expiry_key(o.kind, o.last_ref, id)[..])?;
            if o.kind != kind {
                add_total(t, o.kind, -(o.len as i64))?;
                deltas.0[o.kind.index()] -= o.len as i64;
                add_total(t, kind, len as i64)?;
                deltas.0[kind.index()] += len as i64;
            }
        } else {
            add_total(t, kind, len as i64)?;
            deltas.0[kind.index()] += len as i64;
        }
        t.insert(&expiry_key(kind, last_ref, id)[..], &[][..])?;
        let meta = BlobMeta {
            kind,
            len,
            last_ref,
        };
        let json = serde_json::to_vec(&meta).unwrap_or_default();
        t.insert(&meta_key(id)[..], json)?;
        Ok(())
    }
}

/// Changes in bytes per kind made by a transaction, applied to the in-memory totals once it
/// committed (made inside the transaction's closure, which may run more than once, and
/// returned by it).
#[derive(Debug, Clone, Copy, Default)]
pub struct Deltas([i64; 2]);

/// One kind of blob as the retention sweeper sees it: those of open cases are kept.
#[derive(Debug, Clone)]
pub struct BlobsOfKind {
    pub blobs: Blobs,
    pub kind: BlobKind,
    pub pins: Arc<crate::retention::OpenCasePins>,
}

impl Expiring for BlobsOfKind {
    /// By last reference, through the expiry index; bytes are a running total. The snapshot
    /// sweep also collects one directory's orphans (a directory per tick, all 256 in turn).
    fn expire_before(&self, cutoff: UtcMillis, max: usize) -> Result<Swept, RetentionError> {
        let pins = self.pins.get()?;
        let s = self
            .blobs
            .expire_before(self.kind, cutoff, max, &|id| pins.blobs.contains(&id))?;
        if self.kind == BlobKind::Snapshot {
            self.blobs.collect_orphans()?;
        }
        Ok(Swept {
            records: s.blobs,
            bytes: s.bytes,
            more: s.more,
        })
    }

    fn bytes(&self) -> Result<u64, RetentionError> {
        Ok(self.blobs.bytes(self.kind))
    }
}
