//! Alert snapshots: the frame an alert is about, with the boxes drawn, as a JPEG no larger than
//! a configured size; and [`FrameRing`], the short per-camera history that lets an alert raised
//! by something other than the camera (a tag read) pick the frame nearest in time.
//!
//! Size bound: the uplink carries snapshots inside MQTT publishes, and the hub stores them, so a
//! snapshot that does not fit is re-encoded at lower quality, then at a smaller size, until it
//! does. Quality first, because grid members need the scene more than its full resolution.

use std::collections::VecDeque;
use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
use image::{ExtendedColorType, ImageEncoder};
use protocol::Detection;

use crate::frame::RgbFrame;

/// Qualities tried in order before shrinking the image.
const QUALITIES: [u8; 4] = [85, 70, 55, 40];
/// Each shrink step scales both sides by this much.
const SHRINK: f32 = 0.75;
/// Below this width the snapshot stops being useful; an image that still does not fit is an
/// error rather than a smudge.
const MIN_WIDTH: u32 = 160;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("frame is {width}x{height} with {len} bytes; expected {expected} bytes of RGB8")]
    BadFrame {
        width: u32,
        height: u32,
        len: usize,
        expected: usize,
    },
    #[error(
        "snapshot cannot be made to fit {max_bytes} bytes (smallest try: {smallest} bytes at {width} px wide)"
    )]
    TooLarge {
        max_bytes: usize,
        smallest: usize,
        width: u32,
    },
    #[error("JPEG encoding failed: {0}")]
    Encode(String),
}

/// An encoded snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub jpeg: Vec<u8>,
    pub width: u32,
    pub height: u32,
    /// JPEG quality it was encoded at.
    pub quality: u8,
}

/// Box colour per label, so the same kind of object looks the same in every snapshot.
fn colour(label: &str) -> [u8; 3] {
    match label {
        "person" => [255, 64, 64],
        "bicycle" | "motorbike" | "motorcycle" => [255, 200, 0],
        "car" | "bus" | "truck" => [64, 160, 255],
        _ => {
            // Stable colour from the label's bytes for everything else.
            let h = label.bytes().fold(2166136261u32, |h, b| {
                (h ^ u32::from(b)).wrapping_mul(16777619)
            });
            [
                (h >> 16) as u8 | 0x40,
                (h >> 8) as u8 | 0x40,
                h as u8 | 0x40,
            ]
        }
    }
}

/// Draws each detection's box outline, `thickness` pixels wide, into `frame`.
pub fn draw_boxes(frame: &mut RgbFrame, detections: &[Detection], thickness: u32) {
    let (w, h) = (frame.width, frame.height);
    if w == 0 || h == 0 {
        return;
    }
    for d in detections {
        let c = colour(&d.label);
        let clamp_x = |v: f32| (v.max(0.0) as u32).min(w - 1);
        let clamp_y = |v: f32| (v.max(0.0) as u32).min(h - 1);
        let [x1, y1, x2, y2] = d.box_xyxy;
        let (x1, y1, x2, y2) = (clamp_x(x1), clamp_y(y1), clamp_x(x2), clamp_y(y2));
        for t in 0..thickness {
            for x in x1..=x2 {
                put(frame, x, (y1 + t).min(y2), c);
                put(frame, x, y2.saturating_sub(t).max(y1), c);
            }
            for y in y1..=y2 {
                put(frame, (x1 + t).min(x2), y, c);
                put(frame, x2.saturating_sub(t).max(x1), y, c);
            }
        }
    }
}

fn put(frame: &mut RgbFrame, x: u32, y: u32, c: [u8; 3]) {
    let i = (y as usize * frame.width as usize + x as usize) * 3;
    if let Some(px) = frame.data.get_mut(i..i + 3) {
        px.copy_from_slice(&c);
    }
}

/// Encodes `frame` as a JPEG of at most `max_bytes`, lowering quality and then size as needed.
pub fn encode_bounded(frame: &RgbFrame, max_bytes: usize) -> Result<Snapshot, SnapshotError> {
    let expected = frame.width as usize * frame.height as usize * 3;
    if frame.data.len() < expected || frame.width == 0 || frame.height == 0 {
        return Err(SnapshotError::BadFrame {
            width: frame.width,
            height: frame.height,
            len: frame.data.len(),
            expected,
        });
    }
    let mut current = std::borrow::Cow::Borrowed(frame);
    let mut smallest = usize::MAX;
    loop {
        for quality in QUALITIES {
            let jpeg = encode(&current, quality)?;
            smallest = smallest.min(jpeg.len());
            if jpeg.len() <= max_bytes {
                return Ok(Snapshot {
                    jpeg,
                    width: current.width,
                    height: current.height,
                    quality,
                });
            }
        }
        let nw = (current.width as f32 * SHRINK) as u32;
        let nh = ((current.height as f32 * SHRINK) as u32).max(1);
        if nw < MIN_WIDTH {
            return Err(SnapshotError::TooLarge {
                max_bytes,
                smallest,
                width: current.width,
            });
        }
        current = std::borrow::Cow::Owned(shrink(&current, nw, nh)?);
    }
}

fn encode(frame: &RgbFrame, quality: u8) -> Result<Vec<u8>, SnapshotError> {
    let mut out = Vec::with_capacity(frame.data.len() / 8);
    JpegEncoder::new_with_quality(Cursor::new(&mut out), quality)
        .write_image(
            &frame.data[..frame.width as usize * frame.height as usize * 3],
            frame.width,
            frame.height,
            ExtendedColorType::Rgb8,
        )
        .map_err(|e| SnapshotError::Encode(e.to_string()))?;
    Ok(out)
}

fn shrink(frame: &RgbFrame, w: u32, h: u32) -> Result<RgbFrame, SnapshotError> {
    use fast_image_resize as fr;
    let src =
        fr::images::ImageRef::new(frame.width, frame.height, &frame.data, fr::PixelType::U8x3)
            .map_err(|e| SnapshotError::Encode(e.to_string()))?;
    let mut dst = fr::images::Image::new(w, h, fr::PixelType::U8x3);
    fr::Resizer::new()
        .resize(&src, &mut dst, None)
        .map_err(|e| SnapshotError::Encode(e.to_string()))?;
    Ok(RgbFrame {
        width: w,
        height: h,
        data: dst.into_vec(),
    })
}

/// A frame kept for later lookup by time.
#[derive(Debug, Clone)]
pub struct TimedFrame {
    /// Milliseconds since the epoch (UTC), when the frame was captured.
    pub at_ms: i64,
    pub frame: std::sync::Arc<RgbFrame>,
}

/// The last few frames of one camera, oldest first. Bounded by count: when full, the oldest is
/// dropped (that is the point of a ring, so it is not counted as a loss).
#[derive(Debug)]
pub struct FrameRing {
    capacity: usize,
    frames: VecDeque<TimedFrame>,
}

impl FrameRing {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            frames: VecDeque::with_capacity(capacity.max(1)),
        }
    }

    pub fn push(&mut self, at_ms: i64, frame: std::sync::Arc<RgbFrame>) {
        if self.frames.len() == self.capacity {
            self.frames.pop_front();
        }
        self.frames.push_back(TimedFrame { at_ms, frame });
    }

    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// The frame captured nearest to `at_ms`, if one is within `tolerance_ms` of it.
    pub fn nearest(&self, at_ms: i64, tolerance_ms: i64) -> Option<&TimedFrame> {
        self.frames
            .iter()
            .min_by_key(|f| (f.at_ms - at_ms).abs())
            .filter(|f| (f.at_ms - at_ms).abs() <= tolerance_ms)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// A frame of smooth gradients plus noise-like texture, so JPEG size depends on quality.
    fn textured(w: u32, h: u32) -> RgbFrame {
        let mut f = RgbFrame::default();
        let buf = f.reshape(w, h);
        for y in 0..h {
            for x in 0..w {
                let i = ((y * w + x) * 3) as usize;
                let n = (x.wrapping_mul(2654435761) ^ y.wrapping_mul(40503)) as u8;
                buf[i] = (x % 256) as u8 ^ (n & 0x3f);
                buf[i + 1] = (y % 256) as u8 ^ (n >> 2);
                buf[i + 2] = n;
            }
        }
        f
    }

    #[test]
    fn boxes_are_drawn_on_the_outline_only() {
        let mut f = RgbFrame::default();
        f.reshape(20, 20);
        let d = Detection {
            label: "person".into(),
            score: 0.9,
            box_xyxy: [2.0, 3.0, 12.0, 15.0],
        };
        draw_boxes(&mut f, &[d], 1);
        let at = |x: usize, y: usize| &f.data[(y * 20 + x) * 3..(y * 20 + x) * 3 + 3];
        assert_eq!(at(2, 3), &[255, 64, 64]);
        assert_eq!(at(12, 15), &[255, 64, 64]);
        assert_eq!(at(7, 3), &[255, 64, 64]);
        assert_eq!(at(7, 9), &[0, 0, 0], "inside stays untouched");
        assert_eq!(at(15, 9), &[0, 0, 0], "outside stays untouched");
    }

    #[test]
    fn a_box_partly_outside_the_frame_is_clipped_not_a_panic() {
        let mut f = RgbFrame::default();
        f.reshape(10, 10);
        let d = Detection {
            label: "car".into(),
            score: 0.5,
            box_xyxy: [-5.0, 4.0, 40.0, 30.0],
        };
        draw_boxes(&mut f, &[d], 3);
        assert_eq!(
            &f.data[(4 * 10 + 5) * 3..(4 * 10 + 5) * 3 + 3],
            &[64, 160, 255]
        );
    }

    #[test]
    fn a_snapshot_that_fits_keeps_full_size_and_high_quality() {
        let s = encode_bounded(&textured(320, 240), 1_000_000).unwrap();
        assert_eq!((s.width, s.height, s.quality), (320, 240, 85));
        let back = image::load_from_memory(&s.jpeg).unwrap();
        assert_eq!((back.width(), back.height()), (320, 240));
    }

    #[test]
    fn a_tight_bound_lowers_quality_then_size_and_is_always_met() {
        let frame = textured(768, 576);
        let full = encode_bounded(&frame, usize::MAX).unwrap();
        let bound = full.jpeg.len() / 5;
        let s = encode_bounded(&frame, bound).unwrap();
        assert!(s.jpeg.len() <= bound, "{} > {bound}", s.jpeg.len());
        assert!(s.quality < 85 || s.width < 768, "{s:?}");
        let back = image::load_from_memory(&s.jpeg).unwrap();
        assert_eq!(back.width(), s.width);
    }

    #[test]
    fn an_impossible_bound_is_an_error_naming_it() {
        let e = encode_bounded(&textured(320, 240), 100)
            .unwrap_err()
            .to_string();
        assert!(e.contains("100 bytes"), "{e}");
    }

    #[test]
    fn the_ring_returns_the_frame_nearest_in_time_within_tolerance() {
        let mut ring = FrameRing::new(3);
        for t in [1000, 1200, 1400, 1600] {
            let mut f = RgbFrame::default();
            f.reshape(1, 1)[0] = (t / 100) as u8;
            ring.push(t, Arc::new(f));
        }
        assert_eq!(ring.len(), 3, "the oldest was dropped");
        assert_eq!(ring.nearest(1290, 150).unwrap().at_ms, 1200);
        assert_eq!(ring.nearest(1550, 150).unwrap().frame.data[0], 16);
        assert!(
            ring.nearest(1000, 150).is_none(),
            "1000 fell out of the ring"
        );
        assert!(ring.nearest(5000, 150).is_none());
    }
}
