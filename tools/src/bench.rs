//! The `bench` subcommand: how fast detection runs on this machine, and how much of that speed
//! the whole pipeline keeps.
//!
//! All measurements use the same model and the same thread budget (`sessions × threads`, all
//! cores by default), one after the other, each for the same wall time:
//! - **bare ORT, one session on all cores**, spinning on (ONNX Runtime's default) and off: the
//!   speed a caller gets from `session.run` on a prepared tensor. The faster of the two is
//!   `ort_fps`, the baseline the pipeline is judged against.
//! - **bare ORT in the pipeline's shape**: every pipeline session running `session.run` at once;
//!   the ceiling inference alone would reach if decoding and preprocessing cost nothing.
//! - **pipeline**: every session's worker loops over the encoded frames held in memory: JPEG/PNG
//!   decode, letterbox into the tensor, run, decode output, NMS. File I/O is excluded (frames
//!   reach the detector in memory).
//!
//! `ratio = pipeline_fps / ort_fps`. ONNX Runtime's intra-op parallelism scales poorly on a
//! small model, so several single-threaded sessions, each decoding its own next frame while the
//! others infer, get more out of the cores than one session given them all.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use edge_agent::detect::{DetectError, Detector, DetectorOptions, Model, StageTimes};
use edge_agent::frame::{FrameDecoder, RgbFrame};

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("no frames to benchmark on")]
    NoFrames,
    #[error("frame {file}: {source}")]
    Frame { file: String, source: DetectError },
    #[error(transparent)]
    Detector(#[from] DetectError),
    #[error("a benchmark worker panicked")]
    WorkerPanicked,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Encoded frames, with the file names they came from.
    pub frames: Vec<(String, Vec<u8>)>,
    /// Wall time of each of the two measurements.
    pub duration: Duration,
    /// Number of sessions (each on its own worker thread).
    pub sessions: usize,
    /// Options for each detector, including its intra-op thread count.
    pub detector: DetectorOptions,
}

/// One bare-inference measurement.
#[derive(Debug, Clone, Copy)]
pub struct OrtFigure {
    pub sessions: usize,
    pub threads: usize,
    pub spinning: bool,
    pub fps: f64,
}

/// What was measured.
#[derive(Debug, Clone)]
pub struct BenchReport {
    pub sessions: usize,
    pub threads: usize,
    /// Bare-inference measurements: single session on all cores (spinning on, off), then the
    /// pipeline's own shape.
    pub ort: Vec<OrtFigure>,
    pub pipeline_fps: f64,
    /// Mean per-frame stage times in the pipeline measurement, in milliseconds.
    pub decode_ms: f64,
    pub preprocess_ms: f64,
    pub inference_ms: f64,
    pub postprocess_ms: f64,
}

impl BenchReport {
    /// The best single-session figure on all cores: the baseline.
    pub fn ort_fps(&self) -> f64 {
        self.ort
            .iter()
            .filter(|f| f.sessions == 1)
            .map(|f| f.fps)
            .fold(0.0, f64::max)
    }

    pub fn ratio(&self) -> f64 {
        self.pipeline_fps / self.ort_fps()
    }

    /// Letterbox-and-tensor time over inference time.
    pub fn preprocess_share(&self) -> f64 {
        self.preprocess_ms / self.inference_ms
    }

    /// The summary line the issue tracker and scripts read; always printed last.
    pub fn summary_line(&self) -> String {
        format!(
            "pipeline_fps={:.1} ort_fps={:.1} ratio={:.3} preprocess_share={:.3} decode_ms={:.2}",
            self.pipeline_fps,
            self.ort_fps(),
            self.ratio(),
            self.preprocess_share(),
            self.decode_ms
        )
    }
}

/// Runs all measurements.
pub fn run(model: &Arc<Model>, cfg: &BenchConfig) -> Result<BenchReport, BenchError> {
    let sessions = cfg.sessions.max(1);
    let threads = cfg.detector.intra_threads.max(1);

    // Check every frame once up front: a bad file should fail the bench, not skew it.
    let mut decoder = FrameDecoder::new(cfg.detector.limits);
    let mut frame = RgbFrame::default();
    for (file, bytes) in cfg.frames.iter().rev() {
        decoder
            .decode(bytes, &mut frame)
            .map_err(|e| BenchError::Frame {
                file: file.clone(),
                source: e.into(),
            })?;
    }
    if cfg.frames.is_empty() {
        return Err(BenchError::NoFrames);
    }
    // `frame` now holds the first frame: the prepared tensor of the bare measurements.

    let mut ort = Vec::new();
    for spinning in [true, false] {
        let opts = DetectorOptions {
            intra_threads: sessions * threads,
            spinning,
            ..cfg.detector.clone()
        };
        let mut single = [Detector::new(model.clone(), &opts)?];
        let fps = bare_fps(&mut single, &frame, cfg.duration)?;
        ort.push(OrtFigure {
            sessions: 1,
            threads: sessions * threads,
            spinning,
            fps,
        });
    }

    let mut detectors = (0..sessions)
        .map(|_| Detector::new(model.clone(), &cfg.detector))
        .collect::<Result<Vec<_>, _>>()?;
    // With one session, the pipeline's shape is one of the single-session figures above.
    if sessions > 1 {
        ort.push(OrtFigure {
            sessions,
            threads,
            spinning: cfg.detector.spinning,
            fps: bare_fps(&mut detectors, &frame, cfg.duration)?,
        });
    }
    for d in &mut detectors {
        d.take_times();
    }

    let next = AtomicUsize::new(0);
    let n = cfg.frames.len();
    let (pipe_frames, pipe_elapsed) = parallel_for(&mut detectors, cfg.duration, |d| {
        let i = next.fetch_add(1, Ordering::Relaxed) % n;
        d.detect_bytes(&cfg.frames[i].1).map(drop)
    })?;
    let mut times = StageTimes::default();
    for d in &detectors {
        times.add(&d.times());
    }
    let per = |x: Duration| x.as_secs_f64() * 1000.0 / times.frames.max(1) as f64;
    Ok(BenchReport {
        sessions,
        threads,
        ort,
        pipeline_fps: pipe_frames as f64 / pipe_elapsed.as_secs_f64(),
        decode_ms: per(times.decode),
        preprocess_ms: per(times.preprocess),
        inference_ms: per(times.inference),
        postprocess_ms: per(times.postprocess),
    })
}

/// Bare `session.run` throughput of `detectors` running at once on a prepared tensor.
fn bare_fps(
    detectors: &mut [Detector],
    frame: &RgbFrame,
    duration: Duration,
) -> Result<f64, BenchError> {
    // Warm up: the first runs allocate arenas and pick kernels.
    for d in detectors.iter_mut() {
        d.prepare(frame)?;
        for _ in 0..3 {
            d.run_prepared()?;
        }
    }
    let (n, elapsed) = parallel_for(detectors, duration, Detector::run_prepared)?;
    Ok(n as f64 / elapsed.as_secs_f64())
}

/// Runs `step` on every detector in parallel until `duration` has passed; returns the number of
/// completed steps and the wall time until the last worker stopped.
fn parallel_for<F>(
    detectors: &mut [Detector],
    duration: Duration,
    step: F,
) -> Result<(u64, Duration), BenchError>
where
    F: Fn(&mut Detector) -> Result<(), DetectError> + Sync,
{
    let stop = AtomicBool::new(false);
    let start = Instant::now();
    let counts = std::thread::scope(|s| {
        let handles: Vec<_> = detectors
            .iter_mut()
            .map(|d| {
                let (stop, step) = (&stop, &step);
                s.spawn(move || -> Result<u64, DetectError> {
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        step(d)?;
                        n += 1;
                    }
                    Ok(n)
                })
            })
            .collect();
        std::thread::sleep(duration);
        stop.store(true, Ordering::Relaxed);
        handles
            .into_iter()
            .map(|h| h.join().map_err(|_| BenchError::WorkerPanicked))
            .collect::<Vec<_>>()
    });
    let elapsed = start.elapsed();
    let mut total = 0;
    for c in counts {
        total += c??;
    }
    Ok((total, elapsed))
}
