//! [`inspect`]: what an outbox on disk holds, without changing it (for `edge-agent check`).
//!
//! sled has no read-only mode: opening a store may recover its log, write a snapshot or create
//! trees. So `inspect` copies the store's directory to a private temporary directory and opens
//! the copy; the original is only read. This also works while an agent holds the store's lock;
//! a copy taken during a write is what a crash at that instant would have left, which sled
//! recovers like any crash.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::record;
use super::store::{Trees, open_db, open_trees, quarantined_alert, read_schema};
use super::{OutboxError, QuarantinedAlert, SeverityCounts};

/// What an outbox holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxReport {
    /// The store inspected.
    pub path: PathBuf,
    /// The schema version stored; `None` for a store that was never opened for writing.
    pub schema_version: Option<u32>,
    /// Deliverable alerts.
    pub count: usize,
    /// Key + record bytes of every record, corrupt and quarantined ones included.
    pub bytes: u64,
    /// Deliverable alerts per severity.
    pub per_severity: SeverityCounts,
    /// Stored times of the oldest and newest deliverable alert, ms since the epoch.
    pub oldest_ms: Option<i64>,
    pub newest_ms: Option<i64>,
    /// Lowest and highest seq stored (corrupt records included).
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// Seqs of corrupt records (bad header or JSON), with what is wrong.
    pub corrupt: Vec<(u64, String)>,
    /// Alerts the hub refused for good, oldest first (never sent; see the module doc of
    /// [`crate::outbox`]).
    pub quarantined: Vec<QuarantinedAlert>,
}

impl std::fmt::Display for OutboxReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let opt = |v: Option<i64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
        writeln!(f, "outbox {}", self.path.display())?;
        match self.schema_version {
            Some(v) => writeln!(f, "  schema version: {v}")?,
            None => writeln!(f, "  schema version: none (never opened for writing)")?,
        }
        writeln!(f, "  alerts: {} ({} bytes)", self.count, self.bytes)?;
        let s = &self.per_severity;
        writeln!(
            f,
            "  by severity: info={} minor={} major={} critical={}",
            s.info, s.minor, s.major, s.critical
        )?;
        writeln!(
            f,
            "  stored: oldest_ms={} newest_ms={}",
            opt(self.oldest_ms),
            opt(self.newest_ms)
        )?;
        if let (Some(a), Some(b)) = (self.first_seq, self.last_seq) {
            writeln!(f, "  seq: {a}..={b}")?;
        }
        writeln!(f, "  corrupt: {}", self.corrupt.len())?;
        for (seq, reason) in &self.corrupt {
            writeln!(f, "    seq {seq}: {reason}")?;
        }
        writeln!(f, "  quarantined: {}", self.quarantined.len())?;
        for q in &self.quarantined {
            match &q.unreadable {
                None => writeln!(
                    f,
                    "    seq {} id {} {:?} reason 0x{:02x} ({}) quarantined_ms={} stored_ms={}",
                    q.seq, q.id, q.severity, q.reason_code, q.reason, q.quarantined_ms, q.stored_ms
                )?,
                Some(problem) => writeln!(f, "    seq {} unreadable: {problem}", q.seq)?,
            }
        }
        Ok(())
    }
}

/// Reports what the outbox at `path` holds, parsing every record, without creating or changing
/// anything at `path`. Refuses an unknown schema version like [`super::Outbox::open`].
pub fn inspect(path: impl AsRef<Path>) -> Result<OutboxReport, OutboxError> {
    let path = path.as_ref().to_path_buf();
    // sled keeps its data in `<dir>/db`; without it there is nothing to inspect, and opening
    // would create a store.
    if !path.join("db").is_file() {
        return Err(OutboxError::NotFound { path });
    }
    let copy = TempCopy::new(&path)?;
    let report = inspect_copy(&copy.dir, &path);
    drop(copy);
    report
}

fn inspect_copy(copy: &Path, path: &Path) -> Result<OutboxReport, OutboxError> {
    let db = open_db(copy, path)?;
    let Trees {
        meta,
        alerts,
        quarantine,
    } = open_trees(&db, path)?;
    let mut report = OutboxReport {
        path: path.to_path_buf(),
        schema_version: read_schema(&meta, path)?,
        count: 0,
        bytes: 0,
        per_severity: SeverityCounts::default(),
        oldest_ms: None,
        newest_ms: None,
        first_seq: None,
        last_seq: None,
        corrupt: Vec::new(),
        quarantined: Vec::new(),
    };
    for item in alerts.iter() {
        let (key, value) = item.map_err(|source| OutboxError::Storage {
            path: path.to_path_buf(),
            op: "reading the alerts",
            source,
        })?;
        report.bytes += (key.len() + value.len()) as u64;
        let Some(seq) = record::seq_of(&key) else {
            continue;
        };
        report.first_seq.get_or_insert(seq);
        report.last_seq = Some(seq);
        match record::decode(&value) {
            Ok((h, _)) => {
                report.count += 1;
                report.per_severity.add(h.severity, 1);
                report.oldest_ms =
                    Some(report.oldest_ms.map_or(h.stored_ms, |o| o.min(h.stored_ms)));
                report.newest_ms =
                    Some(report.newest_ms.map_or(h.stored_ms, |n| n.max(h.stored_ms)));
            }
            Err(reason) => report.corrupt.push((seq, reason)),
        }
    }
    for item in quarantine.iter() {
        let (key, value) = item.map_err(|source| OutboxError::Storage {
            path: path.to_path_buf(),
            op: "reading the quarantine",
            source,
        })?;
        report.bytes += (key.len() + value.len()) as u64;
        if let Some(seq) = record::seq_of(&key) {
            report.quarantined.push(quarantined_alert(seq, &value));
        }
    }
    Ok(report)
}

/// A private copy of a store's directory, removed on drop.
struct TempCopy {
    dir: PathBuf,
}

impl TempCopy {
    fn new(src: &Path) -> Result<Self, OutboxError> {
        // pid + time + a per-process counter: unique across processes and concurrent calls.
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!(
            "edge-agent-outbox-inspect-{}-{nanos}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let copy = Self { dir };
        copy_dir(src, &copy.dir).map_err(|source| OutboxError::Io {
            path: src.to_path_buf(),
            op: "copying the store for inspection",
            source,
        })?;
        Ok(copy)
    }
}

impl Drop for TempCopy {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_dir_all(&self.dir) {
            tracing::warn!(
                message = "Could not remove the outbox inspection copy.",
                dir = %self.dir.display(),
                %error,
            );
        }
    }
}

fn copy_dir(src: &Path, dst: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dst)?;
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let to = dst.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &to)?;
        } else {
            std::fs::copy(entry.path(), to)?;
        }
    }
    Ok(())
}
