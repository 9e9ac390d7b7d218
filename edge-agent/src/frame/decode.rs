//! Decoding encoded camera images: [`FrameDecoder`] turns JPEG/PNG bytes into a reused
//! [`RgbFrame`], after checking the header against [`ImageLimits`] so a hostile or broken file
//! cannot make us allocate gigabytes (a 30000×30000 PNG header is refused before any pixel is
//! read).
//!
//! Every camera source decodes with it, and so does the detector for files; the model's own
//! preprocessing (letterbox, tensor layout) is `crate::detect::preprocess`.

use std::io::Cursor;

use image::{ColorType, ImageDecoder, ImageFormat};

use super::RgbFrame;

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

#[cfg(test)]
mod tests {
    use super::*;

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
