//! Free space on the hub's data directory ([`DiskGuard`]): below `[storage] min_free_mb` the
//! hub stops acknowledging new alerts instead of letting the disk fill.
//!
//! A full disk used to kill the hub: sled failed mid-write, the hub exited, and it could not
//! even reopen its store to restart. Now a monitor reads the filesystem's free space every
//! second; while it is below the threshold, ingest answers new alerts "deferred" without
//! writing them (the gateway tells an MQTT 5 agent 0x97 quota exceeded, and closes a 3.1.1
//! agent's connection, which has no negative acknowledgement): the agents keep them in their
//! outboxes and send them again. Everything already stored keeps working (dashboard, timers,
//! notifications and actions write small records, which the margin leaves room for). When
//! space returns, past the threshold plus a 5 % hysteresis (so a disk hovering at the line does
//! not flap), alerts are accepted again by themselves.
//!
//! Something else may still fill the disk to the last byte (logs, another program), and sled
//! cannot even open a store then. So the guard keeps a reserve: `data_dir/reserve`, a file of
//! `[storage] reserve_mb` real bytes, written while space is plentiful. When the free space
//! falls under half the reserve — at start, or while running — the file is deleted, which gives
//! the store room to open and the running hub room for its small writes; it is written again
//! once the free space is back above the threshold plus the reserve.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio::sync::watch;

use crate::metrics::HubMetrics;

/// The default threshold: the larger of this and [`DEFAULT_MIN_FREE_PERCENT`] of the
/// filesystem. 2 GiB is hours of alerts with snapshots for a county, time for someone to act.
pub const DEFAULT_MIN_FREE_BYTES: u64 = 2 << 30;
pub const DEFAULT_MIN_FREE_PERCENT: u64 = 5;
/// How often the free space is read.
pub const PROBE_EVERY: Duration = Duration::from_secs(1);
/// Default size of the reserve file: enough for sled to open and for hours of case updates.
pub const DEFAULT_RESERVE_BYTES: u64 = 64 << 20;
/// The reserve file, in the data directory.
pub const RESERVE_FILE: &str = "reserve";

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("cannot read the free space of {path}: {source}")]
    Probe {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The threshold for a filesystem of `total` bytes: the configured one, else the default.
pub fn min_free(total: u64, configured: Option<u64>) -> u64 {
    configured.unwrap_or_else(|| DEFAULT_MIN_FREE_BYTES.max(total / 100 * DEFAULT_MIN_FREE_PERCENT))
}

/// Whether new alerts are refused after seeing `free` bytes, given the previous state. Low
/// below the threshold; back only at the threshold plus 5 %.
pub fn next_low(was_low: bool, free: u64, min_free: u64) -> bool {
    if was_low {
        free < min_free.saturating_add(min_free / 20)
    } else {
        free < min_free
    }
}

/// Free (available to the hub's user) and total bytes of the filesystem holding `path`.
pub fn probe(path: &Path) -> Result<(u64, u64), DiskError> {
    let s = rustix::fs::statvfs(path).map_err(|e| DiskError::Probe {
        path: path.to_path_buf(),
        source: e.into(),
    })?;
    Ok((
        s.f_bavail.saturating_mul(s.f_frsize),
        s.f_blocks.saturating_mul(s.f_frsize),
    ))
}

/// Shared view of the data directory's free space: read by ingest on every batch, written by
/// the monitor.
#[derive(Debug)]
pub struct DiskGuard {
    dir: PathBuf,
    configured: Option<u64>,
    reserve_bytes: u64,
    low: AtomicBool,
    free: AtomicU64,
    min_free: AtomicU64,
    /// Told each time intake stops or resumes (not every probe): the dispatcher opens the
    /// hub-health case on the one and notes the recovery on the other ([`crate::health`]).
    changes: watch::Sender<bool>,
}

impl DiskGuard {
    /// A guard for `dir`, checked once now (so a hub starting on a full disk refuses alerts
    /// from its first connection, and its reserve is released before the store opens).
    pub fn new(
        dir: &Path,
        configured_min_free: Option<u64>,
        reserve_bytes: u64,
        metrics: &HubMetrics,
    ) -> Arc<Self> {
        let guard = Arc::new(Self {
            dir: dir.to_path_buf(),
            configured: configured_min_free,
            reserve_bytes,
            low: AtomicBool::new(false),
            free: AtomicU64::new(0),
            min_free: AtomicU64::new(configured_min_free.unwrap_or(DEFAULT_MIN_FREE_BYTES)),
            changes: watch::channel(false).0,
        });
        guard.check(metrics);
        guard
    }

    /// Whether new alerts may be stored now.
    pub fn accepting(&self) -> bool {
        !self.low.load(Relaxed)
    }

    pub fn free_bytes(&self) -> u64 {
        self.free.load(Relaxed)
    }

    pub fn min_free_bytes(&self) -> u64 {
        self.min_free.load(Relaxed)
    }

    /// The data directory watched.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether intake is stopped (true) or not, changing only when that does.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.changes.subscribe()
    }

    /// Reads the free space and updates the state, the metrics and the log, then releases or
    /// rewrites the reserve as the space calls for. A failed read changes nothing (and is
    /// logged): a probe error is not evidence of a full disk.
    pub fn check(&self, metrics: &HubMetrics) {
        let (free, total) = match probe(&self.dir) {
            Ok(space) => space,
            Err(e) => {
                tracing::warn!(error = %e, "free space unknown; alert intake unchanged");
                return;
            }
        };
        let reserve = self.dir.join(RESERVE_FILE);
        let held = reserve.exists();
        if held && free < self.reserve_bytes / 2 {
            match std::fs::remove_file(&reserve) {
                Ok(()) => {
                    tracing::error!(
                        dir = %self.dir.display(),
                        free_bytes = free,
                        reserve_bytes = self.reserve_bytes,
                        "the disk is full: released the reserve so the store can go on"
                    );
                    // Measured again: the reserve's bytes are free now (and it is gone, so
                    // this does not come back here).
                    return self.check(metrics);
                }
                Err(e) => tracing::error!(error = %e, "cannot release the disk reserve"),
            }
        }
        self.observe(free, total, metrics);
        let min = self.min_free_bytes();
        if !held
            && self.reserve_bytes > 0
            && self.accepting()
            && free >= min.saturating_add(self.reserve_bytes)
        {
            match write_reserve(&reserve, self.reserve_bytes) {
                Ok(()) => tracing::info!(bytes = self.reserve_bytes, "disk reserve written"),
                Err(e) => {
                    let _ = std::fs::remove_file(&reserve);
                    tracing::warn!(error = %e, "cannot write the disk reserve");
                }
            }
        }
    }

    fn observe(&self, free: u64, total: u64, metrics: &HubMetrics) {
        let min = min_free(total, self.configured);
        let was = self.low.load(Relaxed);
        let low = next_low(was, free, min);
        self.free.store(free, Relaxed);
        self.min_free.store(min, Relaxed);
        self.low.store(low, Relaxed);
        metrics.disk(free, min, low);
        self.changes
            .send_if_modified(|was_low| std::mem::replace(was_low, low) != low);
        match (was, low) {
            (false, true) => tracing::error!(
                dir = %self.dir.display(),
                free_bytes = free,
                min_free_bytes = min,
                "the hub's disk is nearly full: new alerts are deferred (the agents keep them) \
                 until space returns; free space or raise the disk"
            ),
            (true, false) => tracing::warn!(
                dir = %self.dir.display(),
                free_bytes = free,
                min_free_bytes = min,
                "disk space is back: alerts are accepted again"
            ),
            _ => {}
        }
    }

    /// Re-checks every [`PROBE_EVERY`] until `stop` turns true.
    pub fn spawn_monitor(
        self: Arc<Self>,
        metrics: Arc<HubMetrics>,
        mut stop: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PROBE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        let guard = self.clone();
                        let m = metrics.clone();
                        // statvfs is a syscall that can block on a sick disk.
                        let _ = tokio::task::spawn_blocking(move || guard.check(&m)).await;
                    }
                    _ = stop.changed() => {
                        if *stop.borrow() {
                            return;
                        }
                    }
                }
            }
        })
    }
}

/// Allocates `bytes` for real (a sparse file would reserve nothing) in a temporary file, synced,
/// then renamed into place: a reserve is whole or absent. `fallocate` takes the blocks without
/// writing them (instant, and every hub start makes one); a filesystem without it gets zeros.
fn write_reserve(path: &Path, bytes: u64) -> std::io::Result<()> {
    use std::io::Write as _;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    let allocated = rustix::fs::fallocate(&f, rustix::fs::FallocateFlags::empty(), 0, bytes);
    let written = match allocated {
        Ok(()) => Ok(()),
        Err(e) if e == rustix::io::Errno::OPNOTSUPP => {
            let chunk = vec![0u8; 1 << 20];
            let mut left = bytes;
            let mut result = Ok(());
            while left > 0 && result.is_ok() {
                let n = left.min(chunk.len() as u64) as usize;
                result = f.write_all(&chunk[..n]);
                left -= n as u64;
            }
            result
        }
        Err(e) => Err(e.into()),
    };
    if let Err(e) = written.and_then(|()| f.sync_all()) {
        drop(f);
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    #[test]
    fn the_default_threshold_is_the_larger_of_2_gib_and_5_percent() {
        assert_eq!(min_free(10 * GIB, None), 2 * GIB);
        assert_eq!(min_free(1000 * GIB, None), 50 * GIB);
        assert_eq!(min_free(1000 * GIB, Some(GIB)), GIB, "configured wins");
    }

    #[test]
    fn intake_stops_below_the_threshold_and_resumes_5_percent_above_it() {
        let min = 100 * GIB;
        assert!(
            !next_low(false, min, min),
            "at the threshold: still accepting"
        );
        assert!(next_low(false, min - 1, min));
        assert!(next_low(true, min, min), "hysteresis: not back at the line");
        assert!(next_low(true, min + 5 * GIB - 1, min));
        assert!(!next_low(true, min + 5 * GIB, min));
    }

    #[test]
    fn the_guard_reads_the_real_filesystem_and_renders_its_gauges() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = std::sync::Arc::new(HubMetrics::default());
        // A threshold no disk meets, then one every disk meets.
        let huge = DiskGuard::new(dir.path(), Some(u64::MAX), 0, &metrics);
        assert!(!huge.accepting());
        assert!(metrics.render().contains("hub_disk_low 1"));
        let tiny = DiskGuard::new(dir.path(), Some(1), 1 << 20, &metrics);
        assert!(tiny.accepting());
        assert!(tiny.free_bytes() > 1);
        let text = metrics.render();
        assert!(text.contains("hub_disk_low 0"), "{text}");
        assert!(text.contains("hub_disk_min_free_bytes 1\n"), "{text}");
        let reserve = std::fs::metadata(dir.path().join(RESERVE_FILE)).unwrap();
        assert_eq!(
            reserve.len(),
            1 << 20,
            "the reserve is written when there is room"
        );
    }
}
