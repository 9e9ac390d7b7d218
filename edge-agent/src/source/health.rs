//! What the camera sources share: jittered exponential back-off (`crate::backoff::Backoff`),
//! the offline/online bookkeeping and frame numbering ([`Health`]), and turning
//! JPEG bytes into a frame at the working width ([`FrameMaker`]).
//!
//! The semantics are those of [`super::FfmpegSource`], documented in `source/mod.rs`:
//! `Frame::seq` counts every emitted frame across reconnects and `pts_ms = seq·1000/fps`;
//! with no frame for `offline_after_ms`, one [`SourceEvent::Offline`]; the next frame is
//! preceded by one [`SourceEvent::Online`]; every [`SourceEvent::Failed`] carries the back-off
//! delay, which doubles per consecutive failure and resets on the next good frame.

use std::sync::Arc;
use std::time::Duration;

use fast_image_resize as fr;
use tokio::time::Instant;
use tracing::{info, warn};

use super::{SourceCounters, SourceError, SourceEvent};
use crate::backoff::Backoff;
use crate::frame::{Frame, FrameDecoder, ImageError, ImageLimits, RgbFrame};

/// Offline/online bookkeeping, frame numbering, back-off and counters of one source.
#[derive(Debug)]
pub(crate) struct Health {
    camera: Arc<str>,
    fps: f64,
    offline_after: Duration,
    counters: Arc<SourceCounters>,
    backoff: Backoff,
    next_seq: u64,
    /// Bad images since the last good frame or failure.
    bad_in_row: u32,
    last_frame_at: Instant,
    last_frame_wall_ms: i64,
    offline: bool,
    last_error: Option<String>,
    /// A frame held back while `Online` is reported first.
    pending: Option<Frame>,
}

impl Health {
    pub(crate) fn new(
        camera: Arc<str>,
        fps: f64,
        offline_after_ms: u64,
        backoff_min_ms: u64,
        backoff_max_ms: u64,
    ) -> Self {
        Self {
            backoff: Backoff::new(&camera, backoff_min_ms, backoff_max_ms),
            camera,
            fps,
            offline_after: Duration::from_millis(offline_after_ms),
            counters: Arc::default(),
            next_seq: 0,
            bad_in_row: 0,
            last_frame_at: Instant::now(),
            last_frame_wall_ms: protocol::UtcMillis::now().0,
            offline: false,
            last_error: None,
            pending: None,
        }
    }

    pub(crate) fn camera(&self) -> &Arc<str> {
        &self.camera
    }

    pub(crate) fn counters(&self) -> &Arc<SourceCounters> {
        &self.counters
    }

    pub(crate) fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// When to report `Offline`, or `None` while already offline (reported once per outage).
    pub(crate) fn offline_at(&self) -> Option<Instant> {
        (!self.offline).then(|| self.last_frame_at + self.offline_after)
    }

    /// The frame held back behind an `Online` event, if any.
    pub(crate) fn take_pending(&mut self) -> Option<SourceEvent> {
        self.pending.take().map(SourceEvent::Frame)
    }

    /// Marks the camera offline. `quiet` is the reason when no error explains the silence.
    pub(crate) fn go_offline(&mut self, quiet: &str) -> SourceEvent {
        self.offline = true;
        let reason = self.last_error.clone().unwrap_or_else(|| quiet.to_string());
        warn!(message = "Camera offline.", camera = %self.camera, %reason);
        SourceEvent::Offline {
            camera: self.camera.clone(),
            since_ms: self.last_frame_wall_ms,
            reason,
        }
    }

    /// Records a failure; returns the event and when to retry.
    pub(crate) fn fail(&mut self, error: SourceError) -> (SourceEvent, Instant) {
        let delay = self.backoff.next_delay();
        self.bad_in_row = 0;
        self.counters.add_failure();
        let retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        warn!(
            message = "Camera source failed; retrying.",
            camera = %self.camera,
            %error,
            retry_in_ms
        );
        self.last_error = Some(error.to_string());
        (
            SourceEvent::Failed { error, retry_in_ms },
            Instant::now() + delay,
        )
    }

    /// Records one skipped bad image; returns how many came in a row, so the caller can turn a
    /// run of them into a failure.
    pub(crate) fn skip_bad(&mut self, error: &SourceError) -> u32 {
        self.counters.add_skipped_bad();
        self.bad_in_row = self.bad_in_row.saturating_add(1);
        warn!(message = "Skipped a bad image.", camera = %self.camera, %error, in_row = self.bad_in_row);
        self.last_error = Some(error.to_string());
        self.bad_in_row
    }

    /// The source works again without having delivered a frame yet (a directory listed fine):
    /// the next failure starts the back-off from the beginning.
    pub(crate) fn clear_failures(&mut self) {
        self.backoff.reset();
        self.last_error = None;
    }

    /// Numbers a good image as the next frame. Returns `Online` (holding the frame back for
    /// [`take_pending`](Self::take_pending)) after an outage, else the frame.
    pub(crate) fn on_frame(&mut self, image: RgbFrame) -> SourceEvent {
        let now = Instant::now();
        let wall_ms = protocol::UtcMillis::now().0;
        let seq = self.next_seq;
        self.next_seq += 1;
        self.backoff.reset();
        self.bad_in_row = 0;
        self.last_error = None;
        self.counters.add_frame();
        let frame = Frame {
            camera: self.camera.clone(),
            seq,
            pts_ms: (seq as f64 * 1000.0 / self.fps).round() as i64,
            wall_ms,
            image,
        };
        let silent_ms = wall_ms - self.last_frame_wall_ms;
        self.last_frame_at = now;
        self.last_frame_wall_ms = wall_ms;
        if self.offline {
            self.offline = false;
            info!(message = "Camera back online.", camera = %self.camera, silent_ms);
            self.pending = Some(frame);
            return SourceEvent::Online {
                camera: self.camera.clone(),
                offline_for_ms: silent_ms,
            };
        }
        SourceEvent::Frame(frame)
    }
}

/// Sleeps until `at`, or forever when there is nothing to wait for (a disabled `select!` arm
/// that still type-checks).
pub(crate) async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Refuses a config with problems (a source's `validate`): one [`SourceError::Config`] for
/// `camera` listing them all.
pub(crate) fn check_config(camera: &str, problems: Vec<String>) -> Result<(), SourceError> {
    if problems.is_empty() {
        return Ok(());
    }
    Err(SourceError::Config {
        camera: Arc::from(camera),
        problems: problems.join("; "),
    })
}

/// The fields every source config shares: their checks (each error prefixed with its field)
/// and what they build.
#[derive(Debug, Clone)]
pub(crate) struct CommonFields {
    pub camera: String,
    pub fps: f64,
    pub width: u32,
    pub offline_after_ms: u64,
    pub backoff_min_ms: u64,
    pub backoff_max_ms: u64,
}

impl CommonFields {
    /// The health bookkeeping and the frame maker of a source with these fields.
    pub(crate) fn parts(&self) -> (Health, FrameMaker) {
        (self.health(), FrameMaker::new(self.width))
    }

    /// The health bookkeeping alone, for a source that does not decode JPEGs itself (ffmpeg).
    pub(crate) fn health(&self) -> Health {
        Health::new(
            Arc::from(self.camera.as_str()),
            self.fps,
            self.offline_after_ms,
            self.backoff_min_ms,
            self.backoff_max_ms,
        )
    }

    pub(crate) fn validate(&self, errors: &mut Vec<String>) {
        if self.camera.trim().is_empty() {
            errors.push("camera: must not be empty".to_string());
        }
        if !(self.fps.is_finite() && self.fps > 0.0 && self.fps <= 60.0) {
            errors.push(format!("fps: must be within (0, 60], got {}", self.fps));
        }
        if !(16..=7680).contains(&self.width) || !self.width.is_multiple_of(2) {
            errors.push(format!(
                "width: must be an even number within [16, 7680], got {}",
                self.width
            ));
        }
        for (field, v) in [
            ("offline_after_ms", self.offline_after_ms),
            ("backoff_min_ms", self.backoff_min_ms),
        ] {
            if v == 0 {
                errors.push(format!("{field}: must be at least 1"));
            }
        }
        if self.backoff_max_ms < self.backoff_min_ms {
            errors.push(format!(
                "backoff_max_ms: must be at least backoff_min_ms ({}), got {}",
                self.backoff_min_ms, self.backoff_max_ms
            ));
        }
    }
}

/// Why an image could not become a frame.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("resizing {from_width}x{from_height} to {to_width}x{to_height} failed: {reason}")]
    Resize {
        from_width: u32,
        from_height: u32,
        to_width: u32,
        to_height: u32,
        reason: String,
    },
}

/// Decodes JPEG bytes (through [`FrameDecoder`]: magic bytes, size limits and truncation are
/// checked before any pixel is trusted) and scales the result down to the working width, so
/// frames match what `ffmpeg -vf scale=W:-2` gives the ffmpeg path.
pub(crate) struct FrameMaker {
    width: u32,
    decoder: FrameDecoder,
    /// The decoded full-size image; reused, since only the scaled copy leaves.
    decoded: RgbFrame,
    resizer: fr::Resizer,
    options: fr::ResizeOptions,
}

impl std::fmt::Debug for FrameMaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameMaker")
            .field("width", &self.width)
            .finish_non_exhaustive()
    }
}

impl FrameMaker {
    pub(crate) fn new(width: u32) -> Self {
        Self {
            width,
            decoder: FrameDecoder::new(ImageLimits::default()),
            decoded: RgbFrame::default(),
            resizer: fr::Resizer::new(),
            // Bilinear convolution, as the detector's preprocessor uses.
            options: fr::ResizeOptions::new()
                .resize_alg(fr::ResizeAlg::Convolution(fr::FilterType::Bilinear)),
        }
    }

    /// A frame of `bytes` at most `width` wide. A narrower image is kept as it is: upscaling
    /// would cost memory and give the detector nothing.
    pub(crate) fn make(&mut self, bytes: &[u8]) -> Result<RgbFrame, FrameError> {
        self.decoder.decode(bytes, &mut self.decoded)?;
        let (w, h) = (self.decoded.width, self.decoded.height);
        let Some((tw, th)) = working_size(w, h, self.width) else {
            // The frame leaves as it is; the decoder allocates afresh next time.
            return Ok(std::mem::take(&mut self.decoded));
        };
        let resize_error = |e: &dyn std::fmt::Display| FrameError::Resize {
            from_width: w,
            from_height: h,
            to_width: tw,
            to_height: th,
            reason: e.to_string(),
        };
        let src = fr::images::ImageRef::new(w, h, &self.decoded.data, fr::PixelType::U8x3)
            .map_err(|e| resize_error(&e))?;
        let mut dst = fr::images::Image::new(tw, th, fr::PixelType::U8x3);
        self.resizer
            .resize(&src, &mut dst, &self.options)
            .map_err(|e| resize_error(&e))?;
        Ok(RgbFrame {
            width: tw,
            height: th,
            data: dst.into_vec(),
        })
    }
}

/// The size an image of `w`×`h` is scaled to for working width `target`: the height follows
/// the aspect ratio, rounded to the nearest even number (at least 2), like ffmpeg's
/// `scale=W:-2`. `None` when the image is not wider than `target` (kept as it is).
pub(crate) fn working_size(w: u32, h: u32, target: u32) -> Option<(u32, u32)> {
    if w <= target || w == 0 {
        return None;
    }
    let half = (f64::from(h) * f64::from(target) / f64::from(w) / 2.0).round() as u32;
    Some((target, (half * 2).max(2)))
}

/// The first bytes of a body, for error messages: hex, then the printable ASCII in quotes (so
/// an HTML error page reads as `<html>…`).
pub(crate) fn head(bytes: &[u8]) -> String {
    const N: usize = 16;
    if bytes.is_empty() {
        return "(empty)".to_string();
    }
    let shown = &bytes[..bytes.len().min(N)];
    let hex = shown
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ");
    let text: String = shown
        .iter()
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                char::from(b)
            } else {
                '.'
            }
        })
        .collect();
    let more = if bytes.len() > N { " …" } else { "" };
    format!("{hex}{more} (\"{text}\")")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn working_size_keeps_aspect_with_even_height_and_never_upscales() {
        assert_eq!(working_size(640, 480, 320), Some((320, 240)));
        // 427 · 320 / 640 = 213.5 → 214, as ffmpeg's scale=320:-2 gives.
        assert_eq!(working_size(640, 427, 320), Some((320, 214)));
        assert_eq!(working_size(1920, 1080, 640), Some((640, 360)));
        assert_eq!(working_size(4000, 1, 640), Some((640, 2)));
        assert_eq!(working_size(621, 640, 640), None);
        assert_eq!(working_size(640, 480, 640), None);
    }

    #[tokio::test]
    async fn health_numbers_frames_and_reports_online_once_after_offline() {
        let mut h = Health::new(Arc::from("cam"), 4.0, 10_000, 100, 1_000);
        let img = || RgbFrame {
            width: 2,
            height: 2,
            data: vec![0; 12],
        };
        let SourceEvent::Frame(f) = h.on_frame(img()) else {
            panic!("expected a frame");
        };
        assert_eq!((f.seq, f.pts_ms), (0, 0));
        assert!(h.offline_at().is_some());
        let SourceEvent::Offline { reason, .. } = h.go_offline("quiet") else {
            panic!("expected offline");
        };
        assert_eq!(reason, "quiet");
        assert!(h.offline_at().is_none(), "offline is reported once");
        assert!(matches!(h.on_frame(img()), SourceEvent::Online { .. }));
        let Some(SourceEvent::Frame(f)) = h.take_pending() else {
            panic!("the frame follows Online");
        };
        assert_eq!((f.seq, f.pts_ms), (1, 250));
        assert_eq!(h.counters().stats().frames, 2);
    }

    #[test]
    fn head_shows_hex_and_text() {
        assert_eq!(head(b"<html>\n"), "3c 68 74 6d 6c 3e 0a (\"<html>.\")");
        assert!(head(&[0u8; 40]).ends_with("… (\"................\")"));
        assert_eq!(head(b""), "(empty)");
    }
}
