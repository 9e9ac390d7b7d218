//! From a decoded frame to the model's input tensor, with no per-frame allocation once warm.
//!
//! [`Preprocessor`] letterboxes an [`RgbFrame`] with a SIMD resizer and writes the pixels
//! straight into the input tensor's buffer in the layout, channel order and scale the model
//! manifest states. [`Letterbox`] records the geometry so boxes can be mapped back. Decoding
//! the encoded bytes into an [`RgbFrame`] is not the model's job: see [`crate::frame`].

use fast_image_resize as fr;

use super::manifest::{ColorOrder, InputSpec, Layout, LetterboxMode};
use crate::frame::RgbFrame;

/// Where a source image landed on the model's canvas, and how to map boxes back.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Letterbox {
    /// Canvas pixels per source pixel.
    pub scale: f32,
    pub pad_x: u32,
    pub pad_y: u32,
    pub resized_w: u32,
    pub resized_h: u32,
    pub src_w: u32,
    pub src_h: u32,
}

impl Letterbox {
    /// Fits `src` into `dst` keeping the aspect ratio. Sizes are truncated, as the reference
    /// preprocessing (`int(w * r)`) does, so boxes line up with it.
    pub fn new(src_w: u32, src_h: u32, dst_w: u32, dst_h: u32, mode: LetterboxMode) -> Self {
        let scale = (dst_w as f32 / src_w as f32).min(dst_h as f32 / src_h as f32);
        let resized_w = ((src_w as f32 * scale) as u32).clamp(1, dst_w);
        let resized_h = ((src_h as f32 * scale) as u32).clamp(1, dst_h);
        let (pad_x, pad_y) = match mode {
            LetterboxMode::TopLeft => (0, 0),
            LetterboxMode::Center => ((dst_w - resized_w) / 2, (dst_h - resized_h) / 2),
        };
        Self {
            scale,
            pad_x,
            pad_y,
            resized_w,
            resized_h,
            src_w,
            src_h,
        }
    }

    /// Maps a canvas box `[x1, y1, x2, y2]` to source pixels, clipped to the image.
    pub fn to_source(&self, b: [f32; 4]) -> [f32; 4] {
        let (w, h) = (self.src_w as f32, self.src_h as f32);
        let x = |v: f32| ((v - self.pad_x as f32) / self.scale).clamp(0.0, w);
        let y = |v: f32| ((v - self.pad_y as f32) / self.scale).clamp(0.0, h);
        [x(b[0]), y(b[1]), x(b[2]), y(b[3])]
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PreprocessError {
    #[error("input tensor buffer holds {actual} values, model input needs {expected}")]
    TensorSize { expected: usize, actual: usize },
    #[error("resize failed: {0}")]
    Resize(String),
}

/// Letterboxes frames into a model input tensor. Owns the resizer and its output buffer.
pub struct Preprocessor {
    spec: InputSpec,
    resizer: fr::Resizer,
    options: fr::ResizeOptions,
    resized: fr::images::Image<'static>,
}

impl std::fmt::Debug for Preprocessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Preprocessor")
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

impl Preprocessor {
    pub fn new(spec: &InputSpec) -> Self {
        Self {
            spec: spec.clone(),
            resizer: fr::Resizer::new(),
            // Bilinear convolution, which for downscaling widens its support like Pillow's
            // BILINEAR does; the reference detections were made with Pillow.
            options: fr::ResizeOptions::new()
                .resize_alg(fr::ResizeAlg::Convolution(fr::FilterType::Bilinear)),
            resized: fr::images::Image::new(1, 1, fr::PixelType::U8x3),
        }
    }

    /// Number of `f32` values in the input tensor.
    pub fn tensor_len(&self) -> usize {
        self.spec.width as usize * self.spec.height as usize * 3
    }

    /// Letterboxes `frame` into `tensor` (the whole tensor is written, padding included).
    pub fn run(
        &mut self,
        frame: &RgbFrame,
        tensor: &mut [f32],
    ) -> Result<Letterbox, PreprocessError> {
        let (cw, ch) = (self.spec.width, self.spec.height);
        if tensor.len() != self.tensor_len() {
            return Err(PreprocessError::TensorSize {
                expected: self.tensor_len(),
                actual: tensor.len(),
            });
        }
        let lb = Letterbox::new(frame.width, frame.height, cw, ch, self.spec.letterbox);
        if self.resized.width() != lb.resized_w || self.resized.height() != lb.resized_h {
            // Only when the source size changes, i.e. once per camera in practice.
            self.resized = fr::images::Image::new(lb.resized_w, lb.resized_h, fr::PixelType::U8x3);
        }
        let resized: &[u8] = if (lb.resized_w, lb.resized_h) == (frame.width, frame.height) {
            &frame.data
        } else {
            let src = fr::images::ImageRef::new(
                frame.width,
                frame.height,
                &frame.data,
                fr::PixelType::U8x3,
            )
            .map_err(|e| PreprocessError::Resize(e.to_string()))?;
            self.resizer
                .resize(&src, &mut self.resized, &self.options)
                .map_err(|e| PreprocessError::Resize(e.to_string()))?;
            self.resized.buffer()
        };
        self.write_tensor(resized, &lb, tensor);
        Ok(lb)
    }

    /// Writes the resized pixels and the padding around them in the model's layout.
    fn write_tensor(&self, resized: &[u8], lb: &Letterbox, tensor: &mut [f32]) {
        let (cw, ch) = (self.spec.width as usize, self.spec.height as usize);
        let (rw, rh) = (lb.resized_w as usize, lb.resized_h as usize);
        let (px, py) = (lb.pad_x as usize, lb.pad_y as usize);
        let scale = self.spec.scale;
        let pad = f32::from(self.spec.pad_value) * scale;
        // Source channel feeding output channel 0, 1, 2.
        let order: [usize; 3] = match self.spec.color_order {
            ColorOrder::Rgb => [0, 1, 2],
            ColorOrder::Bgr => [2, 1, 0],
        };
        match self.spec.layout {
            Layout::Nchw => {
                let plane = cw * ch;
                let (p0, rest) = tensor.split_at_mut(plane);
                let (p1, p2) = rest.split_at_mut(plane);
                for y in 0..ch {
                    let row = y * cw;
                    let (r0, r1, r2) = (
                        &mut p0[row..row + cw],
                        &mut p1[row..row + cw],
                        &mut p2[row..row + cw],
                    );
                    if y < py || y >= py + rh {
                        r0.fill(pad);
                        r1.fill(pad);
                        r2.fill(pad);
                        continue;
                    }
                    let src = &resized[(y - py) * rw * 3..(y - py + 1) * rw * 3];
                    for r in [&mut *r0, &mut *r1, &mut *r2] {
                        r[..px].fill(pad);
                        r[px + rw..].fill(pad);
                    }
                    let (d0, d1, d2) = (
                        &mut r0[px..px + rw],
                        &mut r1[px..px + rw],
                        &mut r2[px..px + rw],
                    );
                    // Zipped iterators rather than indexing: no bounds checks in the hot loop.
                    let [o0, o1, o2] = order;
                    for (((s, a), b), c) in src
                        .chunks_exact(3)
                        .zip(d0.iter_mut())
                        .zip(d1.iter_mut())
                        .zip(d2.iter_mut())
                    {
                        *a = f32::from(s[o0]) * scale;
                        *b = f32::from(s[o1]) * scale;
                        *c = f32::from(s[o2]) * scale;
                    }
                }
            }
            Layout::Nhwc => {
                for y in 0..ch {
                    let row = &mut tensor[y * cw * 3..(y + 1) * cw * 3];
                    if y < py || y >= py + rh {
                        row.fill(pad);
                        continue;
                    }
                    let src = &resized[(y - py) * rw * 3..(y - py + 1) * rw * 3];
                    row[..px * 3].fill(pad);
                    row[(px + rw) * 3..].fill(pad);
                    for (d, s) in row[px * 3..(px + rw) * 3]
                        .chunks_exact_mut(3)
                        .zip(src.chunks_exact(3))
                    {
                        d[0] = f32::from(s[order[0]]) * scale;
                        d[1] = f32::from(s[order[1]]) * scale;
                        d[2] = f32::from(s[order[2]]) * scale;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(layout: Layout, order: ColorOrder, mode: LetterboxMode) -> InputSpec {
        InputSpec {
            name: "images".into(),
            layout,
            width: 8,
            height: 8,
            color_order: order,
            scale: 1.0,
            letterbox: mode,
            pad_value: 114,
        }
    }

    /// A 4x2 frame whose pixel (x, y) is (10x + y, 100, 200). On the 8x8 canvas the scale is
    /// min(8/4, 8/2) = 2, so it fills 8x4.
    fn frame() -> RgbFrame {
        let mut f = RgbFrame::default();
        let buf = f.reshape(4, 2);
        for y in 0..2 {
            for x in 0..4 {
                let i = (y * 4 + x) * 3;
                buf[i] = (10 * x + y) as u8;
                buf[i + 1] = 100;
                buf[i + 2] = 200;
            }
        }
        f
    }

    #[test]
    fn top_left_letterbox_pads_right_and_bottom_and_maps_boxes_back() {
        let lb = Letterbox::new(640, 480, 416, 416, LetterboxMode::TopLeft);
        assert_eq!(
            (lb.resized_w, lb.resized_h, lb.pad_x, lb.pad_y),
            (416, 312, 0, 0)
        );
        assert_eq!(
            lb.to_source([0.0, 0.0, 416.0, 312.0]),
            [0.0, 0.0, 640.0, 480.0]
        );
        // Boxes reaching into the padding are clipped to the image.
        let b = lb.to_source([-5.0, 300.0, 500.0, 416.0]);
        assert_eq!([b[0], b[2], b[3]], [0.0, 640.0, 480.0]);
        assert!((b[1] - 300.0 / 0.65).abs() < 1e-3, "{b:?}");
    }

    #[test]
    fn centred_letterbox_splits_the_padding() {
        let lb = Letterbox::new(640, 480, 416, 416, LetterboxMode::Center);
        assert_eq!((lb.pad_x, lb.pad_y), (0, 52));
        assert_eq!(
            lb.to_source([0.0, 52.0, 416.0, 364.0]),
            [0.0, 0.0, 640.0, 480.0]
        );
    }

    #[test]
    fn nchw_bgr_tensor_has_swapped_planes_and_padding_below_the_image() {
        let mut p = Preprocessor::new(&spec(Layout::Nchw, ColorOrder::Bgr, LetterboxMode::TopLeft));
        let mut t = vec![0.0; p.tensor_len()];
        let lb = p.run(&frame(), &mut t).unwrap();
        assert_eq!((lb.resized_w, lb.resized_h), (8, 4));
        let at = |c: usize, y: usize, x: usize| t[c * 64 + y * 8 + x];
        // Plane 0 is blue (source channel 2), plane 2 red.
        assert_eq!(at(0, 0, 0), 200.0);
        assert_eq!(at(1, 1, 3), 100.0);
        // Red varies along x in the source: the left edge is darker than the right.
        assert!(at(2, 0, 0) < at(2, 0, 7));
        // Rows 4..8 are padding in every plane.
        for c in 0..3 {
            for y in 4..8 {
                assert_eq!(at(c, y, 5), 114.0);
            }
        }
    }

    #[test]
    fn nhwc_rgb_centred_tensor_pads_top_and_bottom() {
        let mut s = spec(Layout::Nhwc, ColorOrder::Rgb, LetterboxMode::Center);
        s.scale = 1.0 / 255.0;
        let mut p = Preprocessor::new(&s);
        let mut t = vec![0.0; p.tensor_len()];
        p.run(&frame(), &mut t).unwrap();
        // Values are scaled to 0..1: compare back in 0..255 units.
        let at = |y: usize, x: usize, c: usize| (t[(y * 8 + x) * 3 + c] * 255.0).round();
        assert_eq!(at(0, 0, 0), 114.0);
        assert_eq!(at(1, 7, 2), 114.0);
        assert_eq!(at(2, 4, 1), 100.0);
        assert_eq!(at(2, 4, 2), 200.0);
        assert_eq!(at(5, 0, 1), 100.0);
        assert_eq!(at(6, 0, 1), 114.0);
        assert_eq!(at(7, 7, 2), 114.0);
    }

    #[test]
    fn a_wrong_sized_tensor_is_refused() {
        let mut p = Preprocessor::new(&spec(Layout::Nchw, ColorOrder::Rgb, LetterboxMode::TopLeft));
        let mut t = vec![0.0; 5];
        assert!(matches!(
            p.run(&frame(), &mut t),
            Err(PreprocessError::TensorSize {
                expected: 192,
                actual: 5
            })
        ));
    }
}
