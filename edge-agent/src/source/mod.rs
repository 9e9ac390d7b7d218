//! Camera sources: where frames come from, and how they are handed to the slot where they wait
//! for the detector ([`LatestFrame`], in `crate::frame`, which both sides share).
//!
//! Every camera is read through the [`FrameSource`] seam, so the pipeline does not know whether
//! frames come from an `ffmpeg` child ([`FfmpegSource`]: RTSP, files), a camera's JPEG snapshot
//! URL polled over HTTP ([`HttpSnapshotSource`]), an HTTP MJPEG stream ([`MjpegSource`]), a
//! directory the camera uploads JPEGs into, often by FTP ([`DirSource`]), or a test double that
//! injects faults. A source is *pulled*: [`FrameSource::next_event`] returns the next
//! [`SourceEvent`] — a frame, or a change in the camera's health ([`SourceEvent::Offline`] once
//! when nothing has arrived for the configured time, [`SourceEvent::Online`] on recovery, and
//! [`SourceEvent::Failed`] each time the source gives up on a connection and backs off).
//!
//! All sources deliver frames at the camera's detection `fps` (at most) and working `width`
//! (keeping the aspect ratio, even height; never upscaled), so snapshots and memory do not
//! depend on how a camera is read. The HTTP and directory sources share their back-off,
//! offline/online bookkeeping and JPEG-to-frame step (`health.rs`), and count what they do in
//! [`SourceCounters`], which the agent reads while the source runs. A single bad image (an
//! HTML error page, a truncated JPEG, a corrupt upload) is skipped and counted, not a failure;
//! several in a row are.
//!
//! [`pump`] connects a source to the rest of the agent with the policy the design asks for:
//! frames go into a [`LatestFrame`] slot, where a frame nobody has taken yet is *replaced* by a
//! newer one (and counted as skipped), never queued; health events go into a bounded channel
//! and are never dropped, because a camera-offline alert is the one a tamperer wants lost.
//!
//! Every camera kind is one variant of [`SourceConfig`] (the `[cameras.source]` table, `kind`
//! chooses) and of [`AnySource`] (the running source), both in `any.rs`; the agent holds and
//! forwards them without matching on kinds, so a new kind touches only this module.
//!
//! Invariants: `Frame::seq` increases by one for every frame a source emits, across restarts;
//! `Offline` and `Online` alternate, starting with `Offline`. Camera passwords never appear in
//! logs, errors, alerts or `Debug` output ([`Secret`]; [`CameraUrl`] for the RTSP URLs that
//! carry them, whose only unredacted use is ffmpeg's command line, and ffmpeg's stderr is
//! scrubbed of them).

mod any;
mod dir;
mod ffmpeg;
mod health;
mod http;
mod mjpeg;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;

use crate::frame::{Frame, LatestFrame};

pub use crate::secret::CameraUrl;
pub use any::{AnySource, SourceConfig};
pub use dir::{AfterRead, DirError, DirSource, DirSourceConfig};
pub use ffmpeg::{AtEnd, FfmpegSource, FfmpegSourceConfig};
pub use health::FrameError;
pub use http::{AuthMode, HttpError, HttpSnapshotSource, HttpSnapshotSourceConfig, Secret};
// The pure parsers are public for the fuzz targets (`fuzz/`), which can reach only the
// crate's public API.
pub use http::{Algorithm, Challenge, DigestChallenge, digest_authorization, parse_challenges};
pub use mjpeg::{MjpegError, MjpegSource, MjpegSourceConfig, MultipartParser, Parsed, Part};

/// What a source reports: a frame, or a change in the camera's health.
#[derive(Debug)]
pub enum SourceEvent {
    Frame(Frame),
    /// No frame has arrived for the configured `offline_after` (or the source could not start).
    /// Emitted once per outage; this is what raises the camera-offline alert.
    Offline {
        camera: Arc<str>,
        /// When the last frame arrived (or the source started, if none ever did), Unix ms.
        since_ms: i64,
        /// The last error seen, with ffmpeg's stderr, or why the source went quiet.
        reason: String,
    },
    /// A frame arrived again after [`SourceEvent::Offline`]; that frame is the next event.
    Online {
        camera: Arc<str>,
        /// How long the camera was silent, from its last frame to this recovery.
        offline_for_ms: i64,
    },
    /// The source failed (the process would not start, exited, or stalled) and will retry
    /// after `retry_in_ms`. Not an alert by itself: a flapping camera raises `Offline` only if
    /// the retries do not bring frames back in time.
    Failed {
        error: SourceError,
        retry_in_ms: u64,
    },
}

/// Why a source could not deliver frames. Every variant names its camera.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("camera {camera}: invalid source config: {problems}")]
    Config { camera: Arc<str>, problems: String },
    #[error("camera {camera}: could not start {program}: {source}")]
    Spawn {
        camera: Arc<str>,
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("camera {camera}: ffmpeg {status}; last stderr lines: {stderr}")]
    Exited {
        camera: Arc<str>,
        /// The exit status as text (`exit status: 1`, `signal: 9`).
        status: String,
        /// The last lines ffmpeg wrote to stderr, joined with ` | `; `(none)` if it wrote none.
        stderr: String,
    },
    #[error("camera {camera}: no frame from ffmpeg for {waited_ms} ms; killed it")]
    Stalled { camera: Arc<str>, waited_ms: u64 },
    #[error("camera {camera}: bad frame from ffmpeg: {reason}; last stderr lines: {stderr}")]
    BadFrame {
        camera: Arc<str>,
        reason: String,
        stderr: String,
    },
    /// A snapshot request failed or its response was not a usable JPEG. (The module errors are
    /// boxed to keep every `Result<_, SourceError>` small.)
    #[error("camera {camera}: GET {url}: {error}")]
    Http {
        camera: Arc<str>,
        /// The snapshot URL (credentials are never part of it: config validation refuses them).
        url: String,
        #[source]
        error: Box<HttpError>,
    },
    /// An MJPEG stream could not be opened, broke, stalled, or carried a bad part.
    #[error("camera {camera}: MJPEG stream {url}: {error}")]
    Mjpeg {
        camera: Arc<str>,
        url: String,
        #[source]
        error: Box<MjpegError>,
    },
    /// The watched directory could not be listed, or one of its files was bad.
    #[error("camera {camera}: {}: {error}", path.display())]
    Dir {
        camera: Arc<str>,
        /// The directory, or the file concerned.
        path: PathBuf,
        #[source]
        error: Box<DirError>,
    },
}

/// What one source has done since it was made. Shared (`Arc`) between the source, which counts,
/// and the agent, which reports the numbers in the camera's health status while the source is
/// busy in [`pump`].
#[derive(Debug, Default)]
pub struct SourceCounters {
    frames: AtomicU64,
    skipped_bad: AtomicU64,
    failures: AtomicU64,
    dropped: AtomicU64,
}

/// A copy of [`SourceCounters`] at one moment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SourceStats {
    /// Frames emitted.
    pub frames: u64,
    /// Images skipped because they were bad: an HTTP error status, a wrong content type, a body
    /// that is not a decodable JPEG, an oversized part or file.
    pub skipped_bad: u64,
    /// [`SourceEvent::Failed`] events: connections given up, with a back-off.
    pub failures: u64,
    /// Good images not decoded because they came faster than the camera's `fps` (MJPEG parts
    /// sampled out, uploaded files beyond the backlog cap).
    pub dropped: u64,
}

impl SourceCounters {
    pub fn stats(&self) -> SourceStats {
        // Relaxed: the counters are independent statistics, read for display.
        SourceStats {
            frames: self.frames.load(Ordering::Relaxed),
            skipped_bad: self.skipped_bad.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn add_frame(&self) {
        self.frames.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add_skipped_bad(&self) {
        self.skipped_bad.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add_failure(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add_dropped(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }
}

/// The seam between a camera and the pipeline; implemented by [`FfmpegSource`],
/// [`HttpSnapshotSource`], [`MjpegSource`], [`DirSource`] and by test doubles.
pub trait FrameSource: Send {
    /// The camera's id.
    fn camera(&self) -> &str;

    /// The next event, or `None` when the source has finished for good (a replayed file ended,
    /// or shutdown was signalled). Sources own their shutdown signal and check it first in
    /// every wait, so callers need not race this future against shutdown; dropping it mid-way
    /// is allowed but may lose a frame.
    fn next_event(&mut self) -> impl Future<Output = Option<SourceEvent>> + Send;
}

/// Drives `source` until it finishes: frames replace the content of `frames`, every other
/// event is sent to `events` (waiting for room: health events are never dropped). Closes
/// `frames` when the source ends so the consumer sees the end. Returns early if `events` is
/// closed.
pub async fn pump<S: FrameSource>(
    source: &mut S,
    frames: &LatestFrame,
    events: &mpsc::Sender<SourceEvent>,
) {
    while let Some(event) = source.next_event().await {
        match event {
            SourceEvent::Frame(frame) => frames.put(frame),
            other => {
                if events.send(other).await.is_err() {
                    break;
                }
            }
        }
    }
    frames.close();
}
