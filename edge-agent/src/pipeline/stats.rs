//! [`AgentStats`]: the agent's counters, written by the running pipeline and read, while it
//! runs, by the status heartbeat and `/metrics`.
//!
//! Atomics rather than messages: readers want the numbers now, at their own pace, and must not
//! slow the core down. Each counter is an independent statistic, so relaxed ordering is enough.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::detect::pool::CameraCounters;
use crate::frame::LatestFrame;
use crate::tags::ReaderCounters;

/// Counters of one camera, readable while the agent runs.
#[derive(Debug)]
pub struct CameraStats {
    /// The camera's id.
    pub id: Arc<str>,
    /// The camera's latest-frame slot: frames put and replaced are counted there.
    slot: LatestFrame,
    /// The detector pool's counters for this camera: failed detections.
    pool: Arc<CameraCounters>,
    /// Frames whose detections went through the rules.
    pub processed: AtomicU64,
    /// Live: results dropped because a newer frame of the camera had been handled.
    pub late: AtomicU64,
    /// Total detector time, microseconds.
    pub detect_us: AtomicU64,
    /// Alerts raised for this camera (rules and health).
    pub alerts: AtomicU64,
    /// Source failures (ffmpeg exits, stalls, HTTP errors).
    pub failures: AtomicU64,
    /// Whether the camera is delivering (false between its offline and online events).
    pub online: AtomicBool,
}

impl CameraStats {
    /// Zeroed counters of camera `id`, reading frame counts from its `slot` and detection
    /// failures from its `pool` counters; the camera starts online.
    pub fn new(id: Arc<str>, slot: LatestFrame, pool: Arc<CameraCounters>) -> Self {
        Self {
            id,
            slot,
            pool,
            processed: AtomicU64::new(0),
            late: AtomicU64::new(0),
            detect_us: AtomicU64::new(0),
            alerts: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            online: AtomicBool::new(true),
        }
    }

    /// A copy of the counters now.
    pub fn snapshot(&self) -> CameraSnapshot {
        let slot = self.slot.stats();
        let processed = self.processed.load(Ordering::Relaxed);
        CameraSnapshot {
            id: self.id.to_string(),
            frames: slot.put,
            skipped: slot.skipped,
            detect_failed: self.pool.failed.load(Ordering::Relaxed),
            processed,
            late: self.late.load(Ordering::Relaxed),
            // Per processed frame; a camera that processed nothing yet shows 0, not NaN.
            detect_ms: self.detect_us.load(Ordering::Relaxed) as f64
                / 1000.0
                / processed.max(1) as f64,
            alerts: self.alerts.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
        }
    }
}

/// A copy of one camera's counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CameraSnapshot {
    pub id: String,
    /// Frames the source delivered.
    pub frames: u64,
    /// Frames replaced in the slot before the detector took them.
    pub skipped: u64,
    /// Frames the detector failed on.
    pub detect_failed: u64,
    /// See [`CameraStats::processed`].
    pub processed: u64,
    /// See [`CameraStats::late`].
    pub late: u64,
    /// Mean detector time per processed frame, ms.
    pub detect_ms: f64,
    pub alerts: u64,
    pub failures: u64,
}

/// Counters of the whole agent.
#[derive(Debug, Default)]
pub struct AgentStats {
    pub cameras: Vec<Arc<CameraStats>>,
    pub readers: Vec<Arc<ReaderCounters>>,
    /// A name per entry of `readers` (see `TagReaderConfig::name`), unique.
    pub reader_names: Vec<String>,
    /// Tag alerts raised.
    pub tag_alerts: AtomicU64,
    /// Sightings handed on in batches.
    pub sightings: AtomicU64,
    /// Snapshots that could not be encoded.
    pub snapshot_failures: AtomicU64,
}

impl AgentStats {
    /// Every camera's counters now.
    pub fn cameras(&self) -> Vec<CameraSnapshot> {
        self.cameras.iter().map(|c| c.snapshot()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{Frame, RgbFrame};

    fn frame(seq: u64) -> Frame {
        Frame {
            camera: Arc::from("cam"),
            seq,
            pts_ms: 0,
            wall_ms: 0,
            image: RgbFrame::default(),
        }
    }

    #[test]
    fn a_snapshot_reads_the_slot_the_pool_and_the_cores_counters() {
        let slot = LatestFrame::new();
        let pool = Arc::new(CameraCounters::default());
        let stats = CameraStats::new(Arc::from("gate"), slot.clone(), pool.clone());
        // Three frames put, two of them replaced before anyone took them.
        for seq in 0..3 {
            slot.put(frame(seq));
        }
        pool.failed.fetch_add(1, Ordering::Relaxed);
        stats.processed.fetch_add(4, Ordering::Relaxed);
        stats.late.fetch_add(2, Ordering::Relaxed);
        stats.detect_us.fetch_add(10_000, Ordering::Relaxed);
        stats.alerts.fetch_add(5, Ordering::Relaxed);
        stats.failures.fetch_add(6, Ordering::Relaxed);
        assert_eq!(
            stats.snapshot(),
            CameraSnapshot {
                id: "gate".into(),
                frames: 3,
                skipped: 2,
                detect_failed: 1,
                processed: 4,
                late: 2,
                // 10 ms of detector time over 4 processed frames.
                detect_ms: 2.5,
                alerts: 5,
                failures: 6,
            }
        );
    }

    #[test]
    fn a_camera_that_processed_nothing_has_a_mean_detect_time_of_zero() {
        let stats = CameraStats::new(Arc::from("idle"), LatestFrame::new(), Arc::default());
        let s = stats.snapshot();
        assert_eq!((s.processed, s.detect_ms), (0, 0.0));
        assert!(
            stats.online.load(Ordering::Relaxed),
            "a camera starts online"
        );
    }

    #[test]
    fn the_agents_snapshot_lists_every_camera_in_order() {
        let agent = AgentStats {
            cameras: ["a", "b", "c"]
                .into_iter()
                .map(|id| {
                    Arc::new(CameraStats::new(
                        Arc::from(id),
                        LatestFrame::new(),
                        Arc::default(),
                    ))
                })
                .collect(),
            ..AgentStats::default()
        };
        agent.cameras[1].alerts.fetch_add(1, Ordering::Relaxed);
        let ids: Vec<(String, u64)> = agent
            .cameras()
            .into_iter()
            .map(|c| (c.id, c.alerts))
            .collect();
        assert_eq!(ids, [("a".into(), 0), ("b".into(), 1), ("c".into(), 0)]);
    }
}
