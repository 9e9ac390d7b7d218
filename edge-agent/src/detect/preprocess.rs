//! From encoded image bytes to the model's input tensor, with no per-frame allocation once warm.
//!
//! Two owners, both meant to live as long as a camera or detector worker does:
//! - [`FrameDecoder`] decodes JPEG/PNG into a reused RGB buffer ([`RgbFrame`]), after checking the
//!   header against [`ImageLimits`] so a hostile or broken file cannot make us allocate gigabytes
//!   (a 30000×30000 PNG header is refused before any pixel is read).
//! - [`Preprocessor`] letterboxes an [`RgbFrame`] with a SIMD resizer and writes the pixels
//!   straight into the input tensor's buffer in the layout, channel order and scale the model
//!   manifest states. [`Letterbox`] records the geometry so boxes can be mapped back.

use std::io::Cursor;

use fast_image_resize as fr;
use image::{ColorType, ImageDecoder, ImageFormat};

use super::manifest::{ColorOrder, InputSpec, Layout, LetterboxMode};

/// Upper bounds on an image accepted for decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageLimits {
    pub max_width: u32,
    pub max_height: u32,
    /// Width × height; bounds the decode buffer at 3 bytes a pixel.
    pub max_pixels: u64,
}

impl Default for ImageLimits {
    /// Large enough for an 8K camera still (7680×4320 = 33 MP), small enough that one frame
    /// cannot take more than ~120 MB.
    fn default() -> Self {
        Self {
            max_width: 8192,
            max_height: 8192,
            max_pixels: 40_000_000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("empty file (0 bytes)")]
    Empty,
    #[error("not a JPEG or PNG image: first bytes are {head}")]
    UnknownFormat { head: String },
    #[error(
        "image is {width}x{height}, over the limit of {max_width}x{max_height} and {max_pixels} pixels; refused before decoding"
    )]
    TooLarge {
        width: u32,
        height: u32,
        max_width: u32,
        max_height: u32,
        max_pixels: u64,
    },
    #[error("corrupt or truncated {format} data: {reason}")]
    Decode {
        format: &'static str,
        reason: String,
    },
    #[error("unsupported {format} pixel format {color:?}")]
    UnsupportedColor {
        format: &'static str,
        color: ColorType,
    },
}

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

/// Decodes JPEG and PNG into a reused [`RgbFrame`].
#[derive(Debug, Default)]
pub struct FrameDecoder {
    limits: ImageLimits,
    /// Holds the decoder's native pixels when they are not RGB8 (grey, RGBA), before expansion.
    scratch: Vec<u8>,
}

impl FrameDecoder {
    pub fn new(limits: ImageLimits) -> Self {
        Self {
            limits,
            scratch: Vec::new(),
        }
    }

    /// Decodes `bytes` into `out`. On error `out` is left with unspecified contents.
    pub fn decode(&mut self, bytes: &[u8], out: &mut RgbFrame) -> Result<(), ImageError> {
        let format = sniff(bytes)?;
        let fmt_name = match format {
            ImageFormat::Png => "PNG",
            _ => "JPEG",
        };
        if format == ImageFormat::Jpeg && !ends_with_eoi(bytes) {
            // The JPEG decoder fills a cut-off scan with grey and reports success; a
            // half-grey frame would be analysed as if real, so it is refused here instead.
            return Err(ImageError::Decode {
                format: fmt_name,
                reason: format!(
                    "truncated: no end-of-image marker (FF D9) at the end of the {} bytes",
                    bytes.len()
                ),
            });
        }
        let decode_err = |e: image::ImageError| ImageError::Decode {
            format: fmt_name,
            reason: e.to_string(),
        };
        let mut reader = image::ImageReader::with_format(Cursor::new(bytes), format);
        // The image crate's own limits are a second line of defence; ours below give the
        // clearer message and also bound the pixel count.
        let mut limits = image::Limits::default();
        limits.max_image_width = Some(self.limits.max_width);
        limits.max_image_height = Some(self.limits.max_height);
        limits.max_alloc = Some(self.limits.max_pixels * 4 + (1 << 20));
        reader.limits(limits);
        let decoder = match reader.into_decoder() {
            Ok(d) => d,
            Err(image::ImageError::Limits(_)) => {
                let (width, height) = header_dimensions(bytes, format).unwrap_or((0, 0));
                return Err(self.too_large(width, height));
            }
            Err(e) => return Err(decode_err(e)),
        };
        let (width, height) = decoder.dimensions();
        if width > self.limits.max_width
            || height > self.limits.max_height
            || u64::from(width) * u64::from(height) > self.limits.max_pixels
        {
            return Err(self.too_large(width, height));
        }
        if width == 0 || height == 0 {
            return Err(ImageError::Decode {
                format: fmt_name,
                reason: format!("image has no pixels ({width}x{height})"),
            });
        }
        let color = decoder.color_type();
        match color {
            ColorType::Rgb8 => {
                let buf = out.reshape(width, height);
                decoder.read_image(buf).map_err(decode_err)?;
            }
            ColorType::L8 | ColorType::La8 | ColorType::Rgba8 => {
                let n = usize::try_from(decoder.total_bytes()).unwrap_or(usize::MAX);
                self.scratch.resize(n, 0);
                decoder.read_image(&mut self.scratch).map_err(decode_err)?;
                let channels = usize::from(color.channel_count());
                let dst = out.reshape(width, height);
                for (d, s) in dst
                    .chunks_exact_mut(3)
                    .zip(self.scratch.chunks_exact(channels))
                {
                    if channels >= 3 {
                        d.copy_from_slice(&s[..3]);
                    } else {
                        d.fill(s[0]);
                    }
                }
            }
            // 16-bit PNGs are rare from cameras: convert through the image crate, paying one
            // allocation, rather than carry a second fast path.
            ColorType::L16 | ColorType::La16 | ColorType::Rgb16 | ColorType::Rgba16 => {
                let img = image::DynamicImage::from_decoder(decoder).map_err(decode_err)?;
                let rgb = img.into_rgb8();
                out.reshape(width, height).copy_from_slice(rgb.as_raw());
            }
            other => {
                return Err(ImageError::UnsupportedColor {
                    format: fmt_name,
                    color: other,
                });
            }
        }
        Ok(())
    }

    fn too_large(&self, width: u32, height: u32) -> ImageError {
        ImageError::TooLarge {
            width,
            height,
            max_width: self.limits.max_width,
            max_height: self.limits.max_height,
            max_pixels: self.limits.max_pixels,
        }
    }
}

/// Identifies the format from the magic bytes; the file name's extension is not trusted.
fn sniff(bytes: &[u8]) -> Result<ImageFormat, ImageError> {
    if bytes.is_empty() {
        return Err(ImageError::Empty);
    }
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Ok(ImageFormat::Jpeg);
    }
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Ok(ImageFormat::Png);
    }
    let head = bytes
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ");
    Err(ImageError::UnknownFormat { head })
}

/// Trailing bytes tolerated after a JPEG's end-of-image marker: some cameras pad uploads.
const JPEG_TRAILER_SLACK: usize = 1024;

/// Whether a JPEG ends with its EOI marker, allowing a little padding after it. Entropy-coded
/// data byte-stuffs every 0xFF, so FF D9 near the end can only be the real marker.
fn ends_with_eoi(bytes: &[u8]) -> bool {
    let tail = &bytes[bytes.len().saturating_sub(JPEG_TRAILER_SLACK + 2)..];
    tail.windows(2).any(|w| w == [0xFF, 0xD9])
}

/// Reads the declared size from a PNG IHDR, for the error message when the decoder refuses it.
fn header_dimensions(bytes: &[u8], format: ImageFormat) -> Option<(u32, u32)> {
    if format != ImageFormat::Png || bytes.len() < 24 || &bytes[12..16] != b"IHDR" {
        return None;
    }
    let w = u32::from_be_bytes(bytes[16..20].try_into().ok()?);
    let h = u32::from_be_bytes(bytes[20..24].try_into().ok()?);
    Some((w, h))
}

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

    #[test]
    fn empty_text_and_truncated_inputs_get_distinct_errors() {
        let mut d = FrameDecoder::default();
        let mut f = RgbFrame::default();
        assert!(matches!(d.decode(b"", &mut f), Err(ImageError::Empty)));
        let e = d.decode(b"hello, world", &mut f).unwrap_err().to_string();
        assert!(
            e.contains("not a JPEG or PNG") && e.contains("68 65 6c 6c"),
            "{e}"
        );
        let e = d
            .decode(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10], &mut f)
            .unwrap_err();
        assert!(
            matches!(e, ImageError::Decode { format: "JPEG", .. }),
            "{e}"
        );
    }

    fn small_jpeg() -> Vec<u8> {
        let mut jpeg = Vec::new();
        image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8 * 4, y as u8 * 5, 90]))
            .write_to(&mut Cursor::new(&mut jpeg), ImageFormat::Jpeg)
            .unwrap();
        jpeg
    }

    #[test]
    fn a_jpeg_cut_short_is_refused_as_truncated_but_trailing_padding_is_accepted() {
        let jpeg = small_jpeg();
        let mut d = FrameDecoder::default();
        let mut f = RgbFrame::default();
        d.decode(&jpeg, &mut f).unwrap();
        assert_eq!((f.width, f.height), (64, 48));
        let e = d
            .decode(&jpeg[..jpeg.len() - 40], &mut f)
            .unwrap_err()
            .to_string();
        assert!(e.contains("truncated"), "{e}");
        let mut padded = jpeg.clone();
        padded.extend_from_slice(&[0; 200]);
        d.decode(&padded, &mut f).unwrap();
    }

    /// A PNG signature and a valid IHDR chunk declaring `w`x`h` RGB8, and nothing else.
    pub(crate) fn png_header(w: u32, h: u32) -> Vec<u8> {
        let mut chunk = b"IHDR".to_vec();
        chunk.extend_from_slice(&w.to_be_bytes());
        chunk.extend_from_slice(&h.to_be_bytes());
        chunk.extend_from_slice(&[8, 2, 0, 0, 0]);
        // CRC-32 (IEEE, reflected) over type and data, as PNG requires.
        let mut crc = !0u32;
        for &b in &chunk {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        let mut png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0d".to_vec();
        png.extend_from_slice(&chunk);
        png.extend_from_slice(&(!crc).to_be_bytes());
        png
    }

    #[test]
    fn a_huge_png_header_is_refused_before_decoding() {
        let png = png_header(30000, 30000);
        let mut d = FrameDecoder::default();
        let e = d
            .decode(&png, &mut RgbFrame::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("30000x30000"), "{e}");
    }

    #[test]
    fn grey_png_is_expanded_to_rgb() {
        let mut png = Vec::new();
        image::GrayImage::from_fn(3, 2, |x, y| image::Luma([(x * 10 + y) as u8]))
            .write_to(&mut Cursor::new(&mut png), ImageFormat::Png)
            .unwrap();
        let mut f = RgbFrame::default();
        FrameDecoder::default().decode(&png, &mut f).unwrap();
        assert_eq!((f.width, f.height), (3, 2));
        assert_eq!(&f.data[3 * 5..3 * 6], &[21, 21, 21]);
    }
}
