//! Frames: the bottom layer that camera sources produce and the detector consumes.
//!
//! Holds what both sides need and nothing of either's job: the decoded picture ([`RgbFrame`]),
//! one camera frame with its times ([`Frame`]), decoding encoded JPEG/PNG bytes within size
//! limits ([`FrameDecoder`], [`ImageLimits`], [`ImageError`]) and the per-camera latest-frame
//! slot between a source and the detector pool ([`LatestFrame`]). `crate::source` and
//! `crate::detect` both depend on this module and not on each other, so a new camera kind or a
//! new model never reaches across.

mod decode;
mod latest;

use std::sync::Arc;

pub use decode::{FrameDecoder, ImageError, ImageLimits};
pub use latest::{LatestFrame, LatestFrameStats};

/// A decoded frame: tightly packed RGB8, `width * height * 3` bytes. Reused across frames.
#[derive(Debug, Default, Clone)]
pub struct RgbFrame {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

impl RgbFrame {
    /// Sets the frame's size and returns its pixel buffer, reallocating only when it grows.
    pub fn reshape(&mut self, width: u32, height: u32) -> &mut [u8] {
        self.width = width;
        self.height = height;
        let len = width as usize * height as usize * 3;
        self.data.resize(len, 0);
        &mut self.data[..len]
    }
}

/// One decoded frame from a camera, at the source's working resolution and sample rate.
#[derive(Debug, Clone)]
pub struct Frame {
    /// The camera's id from the config.
    pub camera: Arc<str>,
    /// 0 for the first frame the source emitted, then +1 per frame, across restarts.
    pub seq: u64,
    /// Media time of the sampled stream in milliseconds: `seq / fps`. Deterministic, so replays
    /// of the same file give the same times; use it for rules when replaying.
    pub pts_ms: i64,
    /// Wall-clock time the frame was read, in milliseconds since the Unix epoch (UTC). Use it
    /// for live cameras.
    pub wall_ms: i64,
    /// Tightly packed RGB8 pixels, the type the detector consumes.
    pub image: RgbFrame,
}
