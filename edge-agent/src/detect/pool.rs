//! [`DetectorPool`]: several detector sessions serving several cameras fairly.
//!
//! Each worker is an OS thread owning one [`Detector`] (inference blocks, so it does not belong
//! on the async runtime). Workers pull from the cameras' [`LatestFrame`] slots, scanning them
//! round-robin from a shared cursor that moves past every camera served, so a busy camera cannot
//! starve a quiet one and no camera is served twice in a row while another has a frame waiting.
//!
//! Queue policies:
//! - input: the cameras' latest-frame slots; a frame not taken before the next arrives is
//!   replaced and counted in that slot's `skipped`;
//! - output: a bounded channel; when it is full the worker waits (backpressure), and meanwhile
//!   the slots keep only the newest frame, so waiting never queues stale video.
//!
//! A worker with nothing to do sleeps [`IDLE_POLL`]: at camera rates (5 fps = 200 ms between
//! frames) that adds at most a few per cent of a frame interval in latency, and keeps the pool
//! free of a wake-up channel every producer would have to know about.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use protocol::Detection;
use tokio::sync::mpsc;

use super::{DetectError, Detector, DetectorOptions, Model};
use crate::frame::{Frame, LatestFrame};

/// How long an idle worker sleeps before looking at the slots again.
pub const IDLE_POLL: Duration = Duration::from_millis(5);

/// A camera's frame with what was found in it.
#[derive(Debug)]
pub struct Detected {
    pub frame: Frame,
    pub detections: Vec<Detection>,
    /// Time the detector spent on this frame (letterbox, inference, output decoding).
    pub detect_ms: f64,
    /// Why detection failed on this frame (`detections` is then empty). Failed frames are still
    /// handed on, so a consumer that reorders frames by `seq` never waits for one forever.
    pub error: Option<String>,
}

/// Counters of one camera in the pool.
#[derive(Debug, Default)]
pub struct CameraCounters {
    /// Frames the detector processed.
    pub detected: AtomicU64,
    /// Frames the detector failed on (logged; the next frame is tried as usual).
    pub failed: AtomicU64,
}

/// One camera the pool serves.
#[derive(Debug, Clone)]
pub struct PoolCamera {
    pub id: Arc<str>,
    pub slot: LatestFrame,
    pub counters: Arc<CameraCounters>,
}

impl PoolCamera {
    pub fn new(id: impl Into<Arc<str>>, slot: LatestFrame) -> Self {
        Self {
            id: id.into(),
            slot,
            counters: Arc::default(),
        }
    }
}

/// Owns the worker threads. Dropping the pool stops and joins them.
#[derive(Debug)]
pub struct DetectorPool {
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
}

impl DetectorPool {
    /// Builds `sessions` detectors (all before any thread starts, so a bad model or library is
    /// reported here, not in a worker) and starts serving `cameras`, sending results to `out`.
    /// Workers stop when [`Self::stop`] is called, when `out` is closed, or when every camera's
    /// slot is finished.
    pub fn start(
        model: &Arc<Model>,
        opts: &DetectorOptions,
        sessions: usize,
        cameras: Vec<PoolCamera>,
        out: mpsc::Sender<Detected>,
    ) -> Result<Self, DetectError> {
        let detectors = (0..sessions.max(1))
            .map(|_| Detector::new(model.clone(), opts))
            .collect::<Result<Vec<_>, _>>()?;
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Shared {
            cameras,
            cursor: AtomicUsize::new(0),
            stop: stop.clone(),
        });
        let workers = detectors
            .into_iter()
            .enumerate()
            .map(|(i, detector)| {
                let (shared, out) = (shared.clone(), out.clone());
                std::thread::Builder::new()
                    .name(format!("detector-{i}"))
                    .spawn(move || worker(detector, &shared, &out))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| DetectError::SessionOptions(format!("starting a worker thread: {e}")))?;
        Ok(Self { stop, workers })
    }

    /// Asks the workers to stop after their current frame.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Waits for the workers to finish (after [`Self::stop`], a closed output, or the end of
    /// every camera).
    pub fn join(mut self) {
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

impl Drop for DetectorPool {
    fn drop(&mut self) {
        self.stop();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

#[derive(Debug)]
struct Shared {
    cameras: Vec<PoolCamera>,
    cursor: AtomicUsize,
    stop: Arc<AtomicBool>,
}

impl Shared {
    /// The next frame in round-robin order, with its camera's index.
    fn next_frame(&self) -> Option<(usize, Frame)> {
        let n = self.cameras.len();
        // Claiming the start position atomically spreads concurrent workers over different
        // cameras; the cursor then moves past whichever camera was served.
        let start = self.cursor.fetch_add(1, Ordering::Relaxed);
        (0..n).find_map(|k| {
            let i = (start + k) % n;
            let frame = self.cameras[i].slot.take()?;
            self.cursor.store(i + 1, Ordering::Relaxed);
            Some((i, frame))
        })
    }

    fn all_finished(&self) -> bool {
        self.cameras.iter().all(|c| c.slot.is_finished())
    }
}

fn worker(mut detector: Detector, shared: &Shared, out: &mpsc::Sender<Detected>) {
    while !shared.stop.load(Ordering::Relaxed) {
        let Some((i, frame)) = shared.next_frame() else {
            if shared.all_finished() {
                return;
            }
            std::thread::sleep(IDLE_POLL);
            continue;
        };
        let camera = &shared.cameras[i];
        let t = Instant::now();
        match detector.detect_frame(&frame.image) {
            Ok(found) => {
                camera.counters.detected.fetch_add(1, Ordering::Relaxed);
                let detected = Detected {
                    frame,
                    detections: found.detections,
                    detect_ms: t.elapsed().as_secs_f64() * 1000.0,
                    error: None,
                };
                if out.blocking_send(detected).is_err() {
                    return; // nobody listens any more
                }
            }
            Err(error) => {
                camera.counters.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(message = "Detection failed; frame skipped.", camera = %camera.id, seq = frame.seq, %error);
                let failed = Detected {
                    frame,
                    detections: Vec::new(),
                    detect_ms: t.elapsed().as_secs_f64() * 1000.0,
                    error: Some(error.to_string()),
                };
                if out.blocking_send(failed).is_err() {
                    return;
                }
            }
        }
    }
}
