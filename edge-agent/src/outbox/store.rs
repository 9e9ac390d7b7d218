//! [`Outbox`]: the owner of the outbox's sled database and its in-memory index.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use infra::sled_store::{self, Versioned};
use std::sync::atomic::{AtomicBool, Ordering};

use protocol::{Alert, Severity};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use tracing::{debug, error, info, warn};

use super::record::{self, severity_from_index, severity_index};
use super::{
    OutboxConfig, OutboxError, OutboxStats, QuarantinedAlert, SCHEMA_VERSION, SeverityCounts,
};

/// Name of the tree holding the schema version.
pub(super) const META_TREE: &str = "meta";
/// Name of the tree holding the alerts.
pub(super) const ALERTS_TREE: &str = "alerts";
/// Name of the tree holding the alerts the hub refused for good. Added without a schema bump:
/// an older agent opens only `meta` and `alerts` and never looks at it (it neither sends nor
/// counts the quarantined alerts, which is what this build does with them too, bar the count).
pub(super) const QUARANTINE_TREE: &str = "quarantine";

/// What the index keeps of a deliverable record: enough to evict and expire without reading it.
#[derive(Debug, Clone, Copy)]
struct Entry {
    stored_ms: i64,
    /// Key + record bytes.
    size: u64,
}

/// What the index keeps of a quarantined record.
#[derive(Debug, Clone, Copy)]
struct QEntry {
    /// When the alert was first stored (the TTL counts from here); `None` when the record is
    /// unreadable: then it never expires and is never evicted (kept for `check`).
    stored_ms: Option<i64>,
    severity: Severity,
    /// Key + quarantine value bytes.
    size: u64,
}

/// The outbox's trees.
pub(super) struct Trees {
    pub meta: sled::Tree,
    pub alerts: sled::Tree,
    pub quarantine: sled::Tree,
}

/// sled's error for a transaction that cannot abort (the closures here never do).
fn tx_error(e: TransactionError<()>) -> sled::Error {
    match e {
        TransactionError::Storage(e) => e,
        TransactionError::Abort(()) => sled::Error::Unsupported("transaction aborted".into()),
    }
}

/// The open sled database and the trees the outbox uses.
struct Handles {
    db: sled::Db,
    alerts: sled::Tree,
    quarantine: sled::Tree,
}

/// The durable alert outbox (see the module doc for the format and invariants).
///
/// Not shared: one owner (the uplink) appends, replays and acknowledges.
pub struct Outbox {
    path: PathBuf,
    config: OutboxConfig,
    /// `None` only between [`Outbox::reopen`] closing the store and opening it again.
    sled: Option<Handles>,
    /// A sled operation failed. sled then refuses every later write for good (its I/O error is
    /// sticky, even once the disk has room again), so the owner must [`Outbox::reopen`].
    /// Atomic only for interior mutability: the error helpers that set it run inside `&self`
    /// borrows (the outbox is never shared).
    broken: AtomicBool,
    /// Deliverable records per severity (index = [`severity_index`]), by seq: the first entry
    /// of a map is that severity's oldest.
    index: [BTreeMap<u64, Entry>; 4],
    /// Corrupt records by seq → size; kept on disk, never delivered or evicted.
    corrupt: BTreeMap<u64, u64>,
    /// Quarantined records by seq (seq order is age order).
    quarantined: BTreeMap<u64, QEntry>,
    /// Key + record bytes of every record, corrupt and quarantined ones included.
    bytes: u64,
    /// Highest seq handed out or found on disk.
    last_seq: Option<u64>,
    evicted: SeverityCounts,
    dropped: SeverityCounts,
    expired: u64,
    quarantine_evicted: u64,
    quarantine_expired: u64,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("path", &self.path)
            .field("config", &self.config)
            .field("len", &self.len())
            .field("quarantined", &self.quarantined.len())
            .field("bytes", &self.bytes)
            .finish_non_exhaustive()
    }
}

/// The schema version stored in `meta`, if any; another version than ours is an error.
pub(super) fn read_schema(meta: &sled::Tree, path: &Path) -> Result<Option<u32>, OutboxError> {
    match sled_store::read_version(meta).map_err(|source| OutboxError::Schema {
        path: path.to_path_buf(),
        source,
    })? {
        Some(found) => supported(found, path).map(Some),
        None => Ok(None),
    }
}

fn supported(found: u32, path: &Path) -> Result<u32, OutboxError> {
    if found != SCHEMA_VERSION {
        return Err(OutboxError::UnknownSchema {
            path: path.to_path_buf(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(found)
}

/// Opens the `meta`, `alerts` and `quarantine` trees of `db`.
pub(super) fn open_trees(db: &sled::Db, path: &Path) -> Result<Trees, OutboxError> {
    let open = |name: &str| {
        db.open_tree(name).map_err(|source| OutboxError::Storage {
            path: path.to_path_buf(),
            op: "opening a tree",
            source,
        })
    };
    Ok(Trees {
        meta: open(META_TREE)?,
        alerts: open(ALERTS_TREE)?,
        quarantine: open(QUARANTINE_TREE)?,
    })
}

/// Opens the sled database at `at` ([`crate::sled_open::open_waiting`]), errors naming `path`
/// (the outbox the caller means; `at` differs for `inspect`'s copy).
pub(super) fn open_db(at: &Path, path: &Path) -> Result<sled::Db, OutboxError> {
    crate::sled_open::open_waiting(at).map_err(|source| OutboxError::Open {
        path: path.to_path_buf(),
        source,
    })
}

/// Opens the sled database at `path` and its trees, checking (or, in an empty store, writing)
/// the schema version.
fn open_store(path: &Path) -> Result<Handles, OutboxError> {
    let db = open_db(path, path)?;
    let Trees {
        meta,
        alerts,
        quarantine,
    } = open_trees(&db, path)?;
    let records = || alerts.len() + quarantine.len();
    match sled_store::open_version(&db, &meta, SCHEMA_VERSION, records).map_err(|source| {
        OutboxError::Schema {
            path: path.to_path_buf(),
            source,
        }
    })? {
        Versioned::Created => {
            info!(message = "Outbox created.", path = %path.display(), schema = SCHEMA_VERSION);
        }
        Versioned::Found(found) => {
            supported(found, path)?;
        }
    }
    Ok(Handles {
        db,
        alerts,
        quarantine,
    })
}

impl Outbox {
    /// Opens (or creates) the outbox at `path`, checks its schema version and indexes its
    /// records (headers only). Corrupt records are logged and counted, not removed.
    pub fn open(path: impl AsRef<Path>, config: OutboxConfig) -> Result<Self, OutboxError> {
        let path = path.as_ref().to_path_buf();
        let errors = config.validate();
        if !errors.is_empty() {
            return Err(OutboxError::Config { path, errors });
        }
        let sled = open_store(&path)?;
        let mut outbox = Self {
            path,
            config,
            sled: Some(sled),
            broken: AtomicBool::new(false),
            index: Default::default(),
            corrupt: BTreeMap::new(),
            quarantined: BTreeMap::new(),
            bytes: 0,
            last_seq: None,
            evicted: SeverityCounts::default(),
            dropped: SeverityCounts::default(),
            expired: 0,
            quarantine_evicted: 0,
            quarantine_expired: 0,
        };
        outbox.load_index()?;
        outbox.load_quarantine()?;
        info!(
            message = "Outbox opened.",
            path = %outbox.path.display(),
            depth = outbox.len(),
            quarantined = outbox.quarantined.len(),
            bytes = outbox.bytes,
            corrupt = outbox.corrupt.len(),
        );
        Ok(outbox)
    }

    /// Whether a storage operation failed since the store was (re)opened: then every write
    /// fails until [`Outbox::reopen`] succeeds (sled keeps its first I/O error for good).
    pub fn needs_reopen(&self) -> bool {
        self.broken.load(Ordering::Relaxed) || self.sled.is_none()
    }

    /// Closes the sled database and opens it again, re-reading the index from disk; for after
    /// a storage failure (disk full) once the disk may take writes again. What was written but
    /// not flushed before the failure is gone (its append reported the failure); counters and
    /// the highest sequence number handed out are kept, so a seq is never reused for another
    /// alert while an old PUBACK for it may still arrive. On failure the store stays closed
    /// ([`OutboxError::Closed`] for every operation) until a later call succeeds.
    pub fn reopen(&mut self) -> Result<(), OutboxError> {
        // The old handles go first: the open waits (blocking, up to LOCK_WAIT; rare: after a
        // disk failure only) for sled to let go of their file lock.
        self.sled = None;
        self.broken.store(true, Ordering::Relaxed);
        self.sled = Some(open_store(&self.path)?);
        let last_seq = self.last_seq;
        self.index = Default::default();
        self.corrupt.clear();
        self.quarantined.clear();
        self.bytes = 0;
        self.last_seq = None;
        let loaded = self.load_index().and_then(|()| self.load_quarantine());
        self.last_seq = self.last_seq.max(last_seq);
        loaded?;
        self.broken.store(false, Ordering::Relaxed);
        info!(
            message = "Outbox reopened after a storage failure.",
            path = %self.path.display(),
            depth = self.len(),
            bytes = self.bytes,
        );
        Ok(())
    }

    /// The bounds it was opened with.
    pub fn config(&self) -> &OutboxConfig {
        &self.config
    }

    /// The sled handles, or [`OutboxError::Closed`] while a reopen is pending.
    fn h(&self) -> Result<&Handles, OutboxError> {
        self.sled.as_ref().ok_or_else(|| OutboxError::Closed {
            path: self.path.clone(),
        })
    }

    /// Reads every record's header into the index.
    fn load_index(&mut self) -> Result<(), OutboxError> {
        let alerts = self.h()?.alerts.clone();
        for item in alerts.iter() {
            let (key, value) = item.map_err(|source| self.storage("reading the alerts", source))?;
            let Some(seq) = record::seq_of(&key) else {
                // Not one of ours and not addressable by seq: leave it alone, say so.
                error!(
                    message = "Outbox holds a key that is not a sequence number; ignored.",
                    path = %self.path.display(),
                    key = ?key.as_ref(),
                );
                continue;
            };
            self.last_seq = Some(self.last_seq.map_or(seq, |l| l.max(seq)));
            let size = (key.len() + value.len()) as u64;
            self.bytes += size;
            match record::decode_header(&value) {
                Ok(h) => {
                    self.index[severity_index(h.severity)].insert(
                        seq,
                        Entry {
                            stored_ms: h.stored_ms,
                            size,
                        },
                    );
                }
                Err(reason) => self.note_corrupt(seq, size, &reason),
            }
        }
        Ok(())
    }

    /// Reads every quarantined record's prefix and header into the quarantine index.
    fn load_quarantine(&mut self) -> Result<(), OutboxError> {
        let quarantine = self.h()?.quarantine.clone();
        for item in quarantine.iter() {
            let (key, value) =
                item.map_err(|source| self.storage("reading the quarantine", source))?;
            let Some(seq) = record::seq_of(&key) else {
                error!(
                    message = "Outbox quarantine holds a key that is not a sequence number; ignored.",
                    path = %self.path.display(),
                    key = ?key.as_ref(),
                );
                continue;
            };
            self.last_seq = Some(self.last_seq.map_or(seq, |l| l.max(seq)));
            let size = (key.len() + value.len()) as u64;
            self.bytes += size;
            let entry = quarantine_entry(&value, size).unwrap_or_else(|reason| {
                error!(
                    message = "Unreadable quarantined outbox record; kept for inspection.",
                    path = %self.path.display(),
                    seq,
                    reason,
                );
                QEntry {
                    stored_ms: None,
                    severity: Severity::default(),
                    size,
                }
            });
            self.quarantined.insert(seq, entry);
        }
        Ok(())
    }

    /// Stores `alert`, received at `now_ms` (ms since the epoch), and returns its sequence
    /// number once it is flushed to disk. Expires old alerts first, then applies the
    /// full-policy; [`OutboxError::Full`] means the new alert was the one dropped (counted).
    pub fn append(&mut self, alert: &Alert, now_ms: i64) -> Result<u64, OutboxError> {
        self.expire(now_ms)?;
        let value = record::encode(alert, now_ms).map_err(|source| OutboxError::Encode {
            path: self.path.clone(),
            id: alert.id.clone(),
            source,
        })?;
        let size = (8 + value.len()) as u64;
        let sev = severity_index(alert.severity);

        // Plan the evictions before touching anything: if they cannot make room, nothing is
        // evicted and the new alert is dropped instead. Quarantined alerts go first, oldest
        // first, whatever their severity: they will not be sent without an installer's
        // requeue, and the hub keeps its own copy of every alert it refused.
        let need = (self.bytes + size).saturating_sub(self.config.max_bytes);
        let mut q_victims: Vec<(u64, QEntry)> = Vec::new();
        let mut victims: Vec<(usize, u64, u64)> = Vec::new();
        let mut freed = 0u64;
        'plan: {
            for (&seq, e) in &self.quarantined {
                if freed >= need {
                    break 'plan;
                }
                // An unreadable one is kept for inspection, like a corrupt alert.
                if e.stored_ms.is_some() {
                    q_victims.push((seq, *e));
                    freed += e.size;
                }
            }
            for s in 0..=sev {
                for (&seq, e) in &self.index[s] {
                    if freed >= need {
                        break 'plan;
                    }
                    victims.push((s, seq, e.size));
                    freed += e.size;
                }
            }
        }
        if freed < need {
            self.dropped.add(alert.severity, 1);
            error!(
                message = "Outbox full: new alert dropped.",
                path = %self.path.display(),
                alert = %alert.id,
                severity = ?alert.severity,
                size,
                bytes = self.bytes,
                max_bytes = self.config.max_bytes,
            );
            return Err(OutboxError::Full {
                path: self.path.clone(),
                id: alert.id.clone(),
                severity: alert.severity,
                size,
                bytes: self.bytes,
                max_bytes: self.config.max_bytes,
            });
        }

        let seq = self.next_seq()?;
        let mut batch = sled::Batch::default();
        for &(_, victim, _) in &victims {
            batch.remove(&record::key(victim));
        }
        batch.insert(&record::key(seq), value);
        let h = self.h()?;
        if q_victims.is_empty() {
            h.alerts
                .apply_batch(batch)
                .map_err(|source| self.record_err(seq, "inserting", source))?;
        } else {
            // Evictions from both trees and the insert: one transaction.
            let mut q_batch = sled::Batch::default();
            for &(victim, _) in &q_victims {
                q_batch.remove(&record::key(victim));
            }
            (&h.alerts, &h.quarantine)
                .transaction(|(a, q)| {
                    a.apply_batch(&batch)?;
                    q.apply_batch(&q_batch)?;
                    Ok::<_, ConflictableTransactionError<()>>(())
                })
                .map_err(|e| self.record_err(seq, "inserting", tx_error(e)))?;
        }
        for (victim, e) in q_victims {
            self.quarantined.remove(&victim);
            self.bytes = self.bytes.saturating_sub(e.size);
            self.evicted.add(e.severity, 1);
            self.quarantine_evicted += 1;
            error!(
                message = "Outbox full: quarantined alert evicted.",
                path = %self.path.display(),
                seq = victim,
                severity = ?e.severity,
                for_seq = seq,
            );
        }
        for (s, victim, vsize) in victims {
            self.index[s].remove(&victim);
            self.bytes = self.bytes.saturating_sub(vsize);
            let severity = severity_from_index(s).unwrap_or_default();
            self.evicted.add(severity, 1);
            error!(
                message = "Outbox full: alert evicted.",
                path = %self.path.display(),
                seq = victim,
                severity = ?severity,
                for_seq = seq,
            );
        }
        self.index[sev].insert(
            seq,
            Entry {
                stored_ms: now_ms,
                size,
            },
        );
        self.bytes += size;
        // The point of the outbox: on disk before anyone may try to publish it.
        self.h()?
            .db
            .flush()
            .map_err(|source| self.record_err(seq, "flushing", source))?;
        debug!(message = "Alert stored.", seq, alert = %alert.id, size);
        Ok(seq)
    }

    /// The next sequence number: sled's persistent id generator (monotonic across restarts,
    /// with gaps), floored above every seq on disk in case the generator ever lags.
    fn next_seq(&mut self) -> Result<u64, OutboxError> {
        let id = self
            .h()?
            .db
            .generate_id()
            .map_err(|source| self.storage("generating a sequence number", source))?;
        let seq = match self.last_seq {
            Some(last) => id.max(last + 1),
            None => id,
        };
        self.last_seq = Some(seq);
        Ok(seq)
    }

    /// Drops every alert stored more than `ttl_ms` before `now_ms`, counted; returns how many.
    ///
    /// Only each severity's oldest entries are looked at, so this is cheap on every append. A
    /// wall clock that stepped backwards can delay an entry's expiry behind a later-stored one
    /// that looks younger; it never expires one early.
    pub fn expire(&mut self, now_ms: i64) -> Result<usize, OutboxError> {
        let ttl = i64::try_from(self.config.ttl_ms).unwrap_or(i64::MAX);
        let cutoff = now_ms.saturating_sub(ttl);
        let mut victims = Vec::new();
        for (s, map) in self.index.iter().enumerate() {
            for (&seq, e) in map {
                if e.stored_ms >= cutoff {
                    break;
                }
                victims.push((s, seq, *e));
            }
        }
        let mut q_victims = Vec::new();
        for (&seq, e) in &self.quarantined {
            match e.stored_ms {
                Some(ms) if ms >= cutoff => break,
                Some(_) => q_victims.push((seq, *e)),
                // Unreadable: kept for inspection, and says nothing about the ones after it.
                None => {}
            }
        }
        if victims.is_empty() && q_victims.is_empty() {
            return Ok(0);
        }
        let mut batch = sled::Batch::default();
        for &(_, seq, _) in &victims {
            batch.remove(&record::key(seq));
        }
        let h = self.h()?;
        h.alerts
            .apply_batch(batch)
            .map_err(|source| self.storage("removing expired alerts", source))?;
        if !q_victims.is_empty() {
            let mut batch = sled::Batch::default();
            for &(seq, _) in &q_victims {
                batch.remove(&record::key(seq));
            }
            h.quarantine
                .apply_batch(batch)
                .map_err(|source| self.storage("removing expired quarantined alerts", source))?;
        }
        for &(seq, e) in &q_victims {
            self.quarantined.remove(&seq);
            self.bytes = self.bytes.saturating_sub(e.size);
            error!(
                message = "Quarantined alert expired.",
                path = %self.path.display(),
                seq,
                severity = ?e.severity,
                age_ms = e.stored_ms.map(|ms| now_ms.saturating_sub(ms)),
                ttl_ms = self.config.ttl_ms,
            );
        }
        self.quarantine_expired += q_victims.len() as u64;
        for &(s, seq, e) in &victims {
            self.index[s].remove(&seq);
            self.bytes = self.bytes.saturating_sub(e.size);
            error!(
                message = "Alert expired unacknowledged.",
                path = %self.path.display(),
                seq,
                severity = ?severity_from_index(s).unwrap_or_default(),
                age_ms = now_ms.saturating_sub(e.stored_ms),
                ttl_ms = self.config.ttl_ms,
            );
        }
        self.expired += (victims.len() + q_victims.len()) as u64;
        Ok(victims.len() + q_victims.len())
    }

    /// Up to `limit` deliverable alerts with a seq after `after` (all when `None`), oldest
    /// first. Corrupt records are skipped, counted and logged once, and stay on disk.
    pub fn pending(
        &mut self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<(u64, Alert)>, OutboxError> {
        self.scan(after, limit, |alert, _| alert)
    }

    /// Like [`Outbox::pending`], but each alert as its stored JSON, ready to publish. Every
    /// record is still parsed (a corrupt one must never leave), but not re-serialised.
    pub fn pending_payloads(
        &mut self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, OutboxError> {
        self.scan(after, limit, |_, json| json.to_vec())
    }

    /// The deliverable records after `after`, mapped by `f(alert, its JSON)`.
    fn scan<T>(
        &mut self,
        after: Option<u64>,
        limit: usize,
        f: impl Fn(Alert, &[u8]) -> T,
    ) -> Result<Vec<(u64, T)>, OutboxError> {
        let start = match after {
            None => 0,
            Some(a) => match a.checked_add(1) {
                Some(s) => s,
                None => return Ok(Vec::new()),
            },
        };
        let mut out = Vec::new();
        let mut newly_corrupt = Vec::new();
        for item in self.h()?.alerts.range(record::key(start)..) {
            if out.len() >= limit {
                break;
            }
            let (key, value) = item.map_err(|source| self.storage("reading the alerts", source))?;
            let Some(seq) = record::seq_of(&key) else {
                continue;
            };
            if self.corrupt.contains_key(&seq) {
                continue;
            }
            match record::decode(&value) {
                Ok((_, alert)) => out.push((seq, f(alert, &value[record::HEADER_LEN..]))),
                Err(reason) => newly_corrupt.push((seq, (key.len() + value.len()) as u64, reason)),
            }
        }
        for (seq, size, reason) in newly_corrupt {
            for map in &mut self.index {
                map.remove(&seq);
            }
            self.note_corrupt(seq, size, &reason);
        }
        Ok(out)
    }

    /// Deletes the alert `seq` (the broker acknowledged it). Idempotent: returns whether it was
    /// still there. Not flushed at once (see the module doc).
    pub fn ack(&mut self, seq: u64) -> Result<bool, OutboxError> {
        let old = self
            .h()?
            .alerts
            .remove(record::key(seq))
            .map_err(|source| self.record_err(seq, "deleting", source))?;
        let Some(old) = old else {
            return Ok(false);
        };
        for map in &mut self.index {
            map.remove(&seq);
        }
        if self.corrupt.remove(&seq).is_some() {
            warn!(message = "Corrupt outbox record deleted.", path = %self.path.display(), seq);
        }
        self.bytes = self.bytes.saturating_sub((8 + old.len()) as u64);
        Ok(true)
    }

    /// Moves the alert `seq` from the sending queue to the quarantine, with the broker's
    /// `reason_code` and `reason` (bounded to 256 bytes) and `now_ms` as the
    /// time: one sled transaction over both trees, flushed before this returns (the alert must
    /// not come back as deliverable after a crash and be refused again). `None` when `seq` is
    /// not in the sending queue (acked, evicted or quarantined already).
    ///
    /// The move grows the stored bytes by the quarantine prefix; a store at its cap stays over
    /// it by that much until the next append evicts.
    pub fn quarantine(
        &mut self,
        seq: u64,
        reason_code: u8,
        reason: &str,
        now_ms: i64,
    ) -> Result<Option<QuarantinedAlert>, OutboxError> {
        let key = record::key(seq);
        let reason = record::bound_reason(reason);
        let h = self.h()?;
        let moved = (&h.alerts, &h.quarantine)
            .transaction(|(a, q)| {
                let Some(old) = a.remove(&key)? else {
                    return Ok(None);
                };
                let value = record::encode_quarantined(&old, reason_code, now_ms, reason);
                q.insert(&key, value.as_slice())?;
                Ok::<_, ConflictableTransactionError<()>>(Some((old, value)))
            })
            .map_err(|e| self.record_err(seq, "quarantining", tx_error(e)))?;
        let Some((old, value)) = moved else {
            return Ok(None);
        };
        h.db.flush()
            .map_err(|source| self.record_err(seq, "flushing the quarantine", source))?;
        for map in &mut self.index {
            map.remove(&seq);
        }
        self.corrupt.remove(&seq);
        let size = (key.len() + value.len()) as u64;
        self.bytes = self.bytes.saturating_sub((key.len() + old.len()) as u64) + size;
        let entry = quarantine_entry(&value, size).unwrap_or(QEntry {
            stored_ms: None,
            severity: Severity::default(),
            size,
        });
        self.quarantined.insert(seq, entry);
        Ok(Some(quarantined_alert(seq, &value)))
    }

    /// Moves every readable quarantined alert back into the sending queue under its old seq
    /// (so it is sent in its age order), each move one transaction, flushed at the end; for
    /// an installer once the cause of the refusals is fixed. Returns how many moved; an
    /// unreadable one stays where it is.
    pub fn requeue_quarantined(&mut self) -> Result<usize, OutboxError> {
        let seqs: Vec<u64> = self
            .quarantined
            .iter()
            .filter(|(_, e)| e.stored_ms.is_some())
            .map(|(&seq, _)| seq)
            .collect();
        let mut moved = 0;
        for seq in seqs {
            let key = record::key(seq);
            let h = self.h()?;
            let back = (&h.alerts, &h.quarantine)
                .transaction(|(a, q)| {
                    let Some(value) = q.get(key)? else {
                        return Ok(None);
                    };
                    let Ok((_, inner)) = record::decode_quarantined(&value) else {
                        return Ok(None);
                    };
                    let Ok(header) = record::decode_header(inner) else {
                        return Ok(None);
                    };
                    q.remove(&key)?;
                    a.insert(&key, inner)?;
                    Ok::<_, ConflictableTransactionError<()>>(Some((
                        header,
                        inner.len(),
                        value.len(),
                    )))
                })
                .map_err(|e| self.record_err(seq, "requeueing", tx_error(e)))?;
            let Some((header, record_len, value_len)) = back else {
                continue;
            };
            self.quarantined.remove(&seq);
            let size = (key.len() + record_len) as u64;
            self.bytes = self
                .bytes
                .saturating_sub((key.len() + value_len) as u64)
                .saturating_add(size);
            self.index[severity_index(header.severity)].insert(
                seq,
                Entry {
                    stored_ms: header.stored_ms,
                    size,
                },
            );
            info!(message = "Quarantined alert requeued.", path = %self.path.display(), seq);
            moved += 1;
        }
        self.flush()?;
        Ok(moved)
    }

    /// Every quarantined alert, oldest first (an unreadable one with what is wrong).
    pub fn quarantined(&self) -> Result<Vec<QuarantinedAlert>, OutboxError> {
        let mut out = Vec::new();
        for item in self.h()?.quarantine.iter() {
            let (key, value) =
                item.map_err(|source| self.storage("reading the quarantine", source))?;
            if let Some(seq) = record::seq_of(&key) {
                out.push(quarantined_alert(seq, &value));
            }
        }
        Ok(out)
    }

    /// Flushes pending deletions to disk (appends are flushed already). For shutdown.
    pub fn flush(&self) -> Result<(), OutboxError> {
        self.h()?
            .db
            .flush()
            .map(drop)
            .map_err(|source| self.storage("flushing", source))
    }

    /// Records stored, corrupt ones included.
    pub fn len(&self) -> usize {
        self.index.iter().map(BTreeMap::len).sum::<usize>() + self.corrupt.len()
    }

    /// Whether no record is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Key + record bytes stored, corrupt ones included (what `max_bytes` bounds).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Where the outbox lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Depth, bytes and the counters since open.
    pub fn stats(&self) -> OutboxStats {
        OutboxStats {
            depth: self.len(),
            bytes: self.bytes,
            quarantined: self.quarantined.len(),
            quarantine_evicted: self.quarantine_evicted,
            quarantine_expired: self.quarantine_expired,
            evicted: self.evicted,
            dropped: self.dropped,
            expired: self.expired,
            corrupt: self.corrupt.len(),
            oldest_ms: self
                .index
                .iter()
                .filter_map(|m| m.first_key_value().map(|(_, e)| e.stored_ms))
                .min(),
        }
    }

    fn note_corrupt(&mut self, seq: u64, size: u64, reason: &str) {
        if self.corrupt.insert(seq, size).is_none() {
            error!(
                message = "Corrupt outbox record skipped and kept for inspection.",
                path = %self.path.display(),
                seq,
                reason,
            );
        }
    }

    fn storage(&self, op: &'static str, source: sled::Error) -> OutboxError {
        self.broken.store(true, Ordering::Relaxed);
        OutboxError::Storage {
            path: self.path.clone(),
            op,
            source,
        }
    }

    fn record_err(&self, seq: u64, op: &'static str, source: sled::Error) -> OutboxError {
        self.broken.store(true, Ordering::Relaxed);
        OutboxError::Record {
            path: self.path.clone(),
            seq,
            op,
            source,
        }
    }
}

/// The index entry of a quarantine value; `Err` says what is unreadable.
fn quarantine_entry(value: &[u8], size: u64) -> Result<QEntry, String> {
    let (_, inner) = record::decode_quarantined(value)?;
    let h = record::decode_header(inner)?;
    Ok(QEntry {
        stored_ms: Some(h.stored_ms),
        severity: h.severity,
        size,
    })
}

/// What a quarantine value says, for listing. A damaged one is listed with its problem.
pub(super) fn quarantined_alert(seq: u64, value: &[u8]) -> QuarantinedAlert {
    let parsed = record::decode_quarantined(value).and_then(|(q, inner)| {
        let (h, alert) = record::decode(inner)?;
        Ok((q, h, alert))
    });
    match parsed {
        Ok((q, h, alert)) => QuarantinedAlert {
            seq,
            id: alert.id,
            severity: h.severity,
            stored_ms: h.stored_ms,
            reason_code: q.reason_code,
            reason: q.reason,
            quarantined_ms: q.quarantined_ms,
            unreadable: None,
        },
        Err(problem) => {
            let q = record::decode_quarantined(value).ok().map(|(q, _)| q);
            QuarantinedAlert {
                seq,
                id: String::new(),
                severity: Severity::default(),
                stored_ms: 0,
                reason_code: q.as_ref().map_or(0, |q| q.reason_code),
                reason: q.as_ref().map(|q| q.reason.clone()).unwrap_or_default(),
                quarantined_ms: q.map_or(0, |q| q.quarantined_ms),
                unreadable: Some(problem),
            }
        }
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        // Acks and expiries are not flushed one by one; make them durable on the way out so
        // a clean restart does not resend what the broker already has.
        let Some(h) = &self.sled else {
            return;
        };
        if let Err(error) = h.db.flush() {
            warn!(message = "Outbox flush on close failed.", path = %self.path.display(), %error);
        }
    }
}
