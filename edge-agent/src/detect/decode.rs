//! Model output decoders: from a raw output tensor to scored boxes.
//!
//! Three YOLO export layouts are supported, selected by `output.decoder` in the model manifest.
//! All of them assume the usual three detection heads at strides 8, 16 and 32, so a `W`x`H`
//! input has `cells = (W/8)(H/8) + (W/16)(H/16) + (W/32)(H/32)` grid cells (3549 at 416x416);
//! `C` is the number of classes.
//!
//! | decoder  | shape              | per anchor                                      | score         |
//! |----------|--------------------|-------------------------------------------------|---------------|
//! | `yolox`  | `[1, cells, 5+C]`  | raw `cx, cy, w, h` (grid units, log size), obj, C probs | obj × prob |
//! | `yolov5` | `[1, 3·cells, 5+C]`| `cx, cy, w, h` in input pixels, obj, C probs     | obj × prob    |
//! | `yolov8` | `[1, 4+C, cells]`  | channel-major: `cx, cy, w, h`, C scores          | class score   |
//!
//! Decoding is multi-label, as the reference YOLOX post-processing is: every class of an anchor
//! whose score reaches the threshold becomes its own [`Candidate`], and class-wise NMS
//! ([`super::nms::nms_classwise`]) then removes duplicates within each class.
//!
//! This runs on every frame over ~300k floats, so the loops walk the tensor sequentially in
//! memory order, reject anchors as early as possible and never allocate: candidates are appended
//! to a vector that the caller reuses.

/// Strides of the three detection heads, in the order their anchors appear in the output.
const STRIDES: [u32; 3] = [8, 16, 32];

/// YOLOv5 predicts this many anchor boxes per grid cell.
const YOLOV5_ANCHORS_PER_CELL: u64 = 3;

/// Values before the class scores in a YOLOX / YOLOv5 row: `cx, cy, w, h, objectness`.
const ROW_HEAD: usize = 5;

/// Box channels before the class channels in a YOLOv8 output: `cx, cy, w, h`.
const V8_BOX_CHANNELS: usize = 4;

/// Scores screened per block by [`decode_yolov8`]: 16 f32 = one AVX-512 or two AVX2 vectors.
const V8_BLOCK: usize = 16;

/// Output layout of a detection model, selected by the model manifest.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    serde::Deserialize,
    serde::Serialize,
    strum::IntoStaticStr,
    strum::Display,
    strum::EnumIter,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum DecoderKind {
    /// YOLOX (Megvii) exported without decoding: box offsets relative to the anchor's grid cell
    /// and log sizes, followed by objectness and per-class probabilities.
    Yolox,
    /// YOLOv5 (Ultralytics): three anchors per cell, boxes already in input pixels, followed by
    /// objectness and per-class probabilities.
    Yolov5,
    /// YOLOv8 and later (Ultralytics): channel-major, boxes in input pixels, class scores and no
    /// objectness.
    Yolov8,
}

impl DecoderKind {
    /// The name used in manifests (`output.decoder`) and in error messages.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// The output shape this decoder expects for a model with this input size and class count,
    /// e.g. YOLOX 416x416, 80 classes -> `[1, 3549, 85]`.
    ///
    /// Used at model load to check a manifest against the model's real output shape (whose dims
    /// may be dynamic there: -1). Input sizes should be multiples of 32, as the models require;
    /// other sizes give the grid that integer division gives, which a real model will not match.
    pub fn expected_output_shape(self, input_w: u32, input_h: u32, num_classes: usize) -> Vec<i64> {
        self.shape(input_w, input_h, num_classes).to_vec()
    }

    /// [`Self::expected_output_shape`] without the allocation, for the per-frame check.
    fn shape(self, input_w: u32, input_h: u32, num_classes: usize) -> [i64; 3] {
        // Saturating arithmetic: absurd sizes must yield a shape no tensor matches, not a panic
        // or a wrapped value that might.
        let cells = grid_cells(input_w, input_h);
        let classes = i64::try_from(num_classes).unwrap_or(i64::MAX);
        let row = classes.saturating_add(ROW_HEAD as i64);
        match self {
            Self::Yolox => [1, to_i64(cells), row],
            Self::Yolov5 => [
                1,
                to_i64(cells.saturating_mul(YOLOV5_ANCHORS_PER_CELL)),
                row,
            ],
            Self::Yolov8 => [
                1,
                classes.saturating_add(V8_BOX_CHANNELS as i64),
                to_i64(cells),
            ],
        }
    }
}

/// Total grid cells over the three detection heads. Cannot overflow: each term is below 2^58.
fn grid_cells(input_w: u32, input_h: u32) -> u64 {
    STRIDES
        .iter()
        .map(|&s| u64::from(input_w / s) * u64::from(input_h / s))
        .sum()
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// One detection candidate in model-input pixel coordinates (the 416x416 canvas for YOLOX).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// Class index: the line number (from 0) in the model's labels file.
    pub class: u32,
    /// Confidence in `[0, 1]`: objectness × class probability, or the class score (YOLOv8).
    pub score: f32,
    /// `[x1, y1, x2, y2]`, top-left and bottom-right corners.
    pub bbox: [f32; 4],
}

/// Why a model output could not be decoded. Both variants mean the manifest does not describe
/// the model (wrong decoder, input size or labels file), so they name all of them.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error(
        "{kind} decoder expects output shape {expected:?} for a {input_w}x{input_h} input with \
         {num_classes} classes, but the model's output has shape {actual:?}"
    )]
    ShapeMismatch {
        kind: DecoderKind,
        input_w: u32,
        input_h: u32,
        num_classes: usize,
        expected: Vec<i64>,
        actual: Vec<i64>,
    },
    #[error(
        "{kind} decoder: an output of shape {shape:?} holds {expected} values, but the tensor \
         has {actual}"
    )]
    LengthMismatch {
        kind: DecoderKind,
        shape: Vec<i64>,
        expected: usize,
        actual: usize,
    },
}

/// Decodes a raw output tensor into candidates whose score >= `score_threshold`, appending to
/// `out` (the caller clears and reuses it: no per-frame allocation once warm).
///
/// `shape` and `output.len()` are checked against [`DecoderKind::expected_output_shape`] before
/// anything is read. NaN scores never produce a candidate (every comparison with NaN is false),
/// nor do boxes with a non-finite coordinate (e.g. `exp` overflowing), which would poison NMS.
/// The order of the appended candidates is layout-dependent; NMS sorts them.
#[allow(
    clippy::too_many_arguments,
    reason = "mirrors the manifest fields one to one; a parameter struct would only be \
              rebuilt on every frame by the one caller"
)]
pub fn decode(
    kind: DecoderKind,
    output: &[f32],
    shape: &[i64],
    input_w: u32,
    input_h: u32,
    num_classes: usize,
    score_threshold: f32,
    out: &mut Vec<Candidate>,
) -> Result<(), DecodeError> {
    let expected = kind.shape(input_w, input_h, num_classes);
    if shape != expected.as_slice() {
        return Err(DecodeError::ShapeMismatch {
            kind,
            input_w,
            input_h,
            num_classes,
            expected: expected.to_vec(),
            actual: shape.to_vec(),
        });
    }
    // The dims equal `expected`, so they are non-negative; saturation only matters for shapes no
    // real tensor can have, and then the length check below fails as it should.
    let expected_len = expected.iter().fold(1usize, |acc, &d| {
        acc.saturating_mul(usize::try_from(d).unwrap_or(usize::MAX))
    });
    if output.len() != expected_len {
        return Err(DecodeError::LengthMismatch {
            kind,
            shape: shape.to_vec(),
            expected: expected_len,
            actual: output.len(),
        });
    }

    match kind {
        DecoderKind::Yolox => decode_yolox(
            output,
            input_w,
            input_h,
            ROW_HEAD + num_classes,
            score_threshold,
            out,
        ),
        DecoderKind::Yolov5 => {
            decode_yolov5(output, ROW_HEAD + num_classes, score_threshold, out);
        }
        DecoderKind::Yolov8 => {
            // Validated above: the length is (4 + C) × cells, so this division is exact.
            let cells = output.len() / (V8_BOX_CHANNELS + num_classes);
            decode_yolov8(output, cells, score_threshold, out);
        }
    }
    Ok(())
}

/// YOLOX: rows of `cx, cy, w, h, obj, probs…`, anchors row-major per head, heads by stride.
/// The box is relative to the anchor's grid cell, so each row's grid position is tracked by
/// walking the heads in the same nested order the model flattened them.
fn decode_yolox(
    output: &[f32],
    input_w: u32,
    input_h: u32,
    row_len: usize,
    threshold: f32,
    out: &mut Vec<Candidate>,
) {
    let mut rest = output;
    for stride in STRIDES {
        let grid_w = (input_w / stride) as usize;
        let grid_h = (input_h / stride) as usize;
        let Some((level, tail)) = rest.split_at_checked(grid_w * grid_h * row_len) else {
            // Unreachable after the length check; stop rather than read misaligned rows.
            return;
        };
        rest = tail;
        if grid_w == 0 {
            // An empty head (input narrower than the stride); chunks_exact(0) would panic.
            continue;
        }
        let s = stride as f32;
        for (gy, grid_row) in level.chunks_exact(grid_w * row_len).enumerate() {
            let gy = gy as f32;
            for (gx, row) in grid_row.chunks_exact(row_len).enumerate() {
                let Some((&[cx, cy, w, h, obj], probs)) = row.split_first_chunk::<ROW_HEAD>()
                else {
                    continue; // unreachable: row_len >= ROW_HEAD
                };
                // Most anchors are background: reject them on objectness alone, before
                // touching the class probabilities or computing exp().
                if obj < threshold {
                    continue;
                }
                let gx = gx as f32;
                push_classes(obj, probs, threshold, out, || {
                    xyxy((cx + gx) * s, (cy + gy) * s, w.exp() * s, h.exp() * s)
                });
            }
        }
    }
}

/// YOLOv5: rows of `cx, cy, w, h, obj, probs…`, boxes already in input pixels.
fn decode_yolov5(output: &[f32], row_len: usize, threshold: f32, out: &mut Vec<Candidate>) {
    for row in output.chunks_exact(row_len) {
        let Some((&[cx, cy, w, h, obj], probs)) = row.split_first_chunk::<ROW_HEAD>() else {
            continue; // unreachable: row_len >= ROW_HEAD
        };
        if obj < threshold {
            continue;
        }
        push_classes(obj, probs, threshold, out, || xyxy(cx, cy, w, h));
    }
}

/// YOLOv8: `4 + C` channels of `cells` values each. Reading it anchor by anchor would stride
/// across all channels for every anchor; instead each class channel is scanned sequentially,
/// and the box channels are only indexed for the few anchors that pass. Candidates therefore
/// come out grouped by class rather than by anchor.
fn decode_yolov8(output: &[f32], cells: usize, threshold: f32, out: &mut Vec<Candidate>) {
    if cells == 0 {
        return; // chunks_exact(0) would panic, and there is nothing to decode
    }
    let mut channels = output.chunks_exact(cells);
    let (Some(cxs), Some(cys), Some(ws), Some(hs)) = (
        channels.next(),
        channels.next(),
        channels.next(),
        channels.next(),
    ) else {
        return; // unreachable after the shape check
    };
    for (class, scores) in channels.enumerate() {
        let class = class as u32;
        // Nearly every score is background. A branch-free "does any score in this block pass?"
        // compiles to a few SIMD compares, so blocks are screened at a fraction of the cost of a
        // branch per score; only blocks with a hit are walked score by score.
        let mut blocks = scores.chunks_exact(V8_BLOCK);
        let mut start = 0;
        for block in blocks.by_ref() {
            if block.iter().fold(false, |any, &s| any | (s >= threshold)) {
                push_v8_block(block, start, class, [cxs, cys, ws, hs], threshold, out);
            }
            start += V8_BLOCK;
        }
        push_v8_block(
            blocks.remainder(),
            start,
            class,
            [cxs, cys, ws, hs],
            threshold,
            out,
        );
    }
}

/// Appends a candidate for every score of `block` (anchors `start..`) that reaches `threshold`.
#[inline]
fn push_v8_block(
    block: &[f32],
    start: usize,
    class: u32,
    [cxs, cys, ws, hs]: [&[f32]; 4],
    threshold: f32,
    out: &mut Vec<Candidate>,
) {
    for (i, &score) in (start..).zip(block) {
        // NaN fails this comparison, so it never yields a candidate.
        if score >= threshold {
            let bbox = xyxy(cxs[i], cys[i], ws[i], hs[i]);
            if is_finite(&bbox) {
                out.push(Candidate { class, score, bbox });
            }
        }
    }
}

/// Appends a candidate for every class whose `obj × prob` reaches `threshold` (multi-label).
/// The box is computed once, and only if some class passes, since most rows that clear the
/// objectness test still have no class above the threshold.
#[inline]
fn push_classes(
    obj: f32,
    probs: &[f32],
    threshold: f32,
    out: &mut Vec<Candidate>,
    bbox: impl FnOnce() -> [f32; 4],
) {
    // A NaN objectness or probability makes the product NaN, which fails `>=`.
    let Some(first) = probs.iter().position(|&p| obj * p >= threshold) else {
        return;
    };
    let bbox = bbox();
    if !is_finite(&bbox) {
        return;
    }
    for (class, &p) in probs.iter().enumerate().skip(first) {
        let score = obj * p;
        if score >= threshold {
            out.push(Candidate {
                class: class as u32,
                score,
                bbox,
            });
        }
    }
}

/// Centre and size to corners.
#[inline]
fn xyxy(cx: f32, cy: f32, w: f32, h: f32) -> [f32; 4] {
    let (hw, hh) = (w * 0.5, h * 0.5);
    [cx - hw, cy - hh, cx + hw, cy + hh]
}

#[inline]
fn is_finite(bbox: &[f32; 4]) -> bool {
    bbox.iter().all(|v| v.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoder_names_are_their_serde_names() {
        use strum::IntoEnumIterator;
        for kind in DecoderKind::iter() {
            assert_eq!(serde_json::to_value(kind).ok(), Some(kind.as_str().into()));
        }
    }

    /// A small input keeps hand-built tensors readable: 64x64 gives grids of 8x8, 4x4 and 2x2,
    /// so 84 cells; YOLOX rows start at 0 (stride 8), 64 (stride 16) and 80 (stride 32).
    const W: u32 = 64;
    const H: u32 = 64;
    const CELLS: usize = 84;
    const C: usize = 2;
    const ROW: usize = ROW_HEAD + C;

    fn zeros(kind: DecoderKind, w: u32, h: u32) -> (Vec<f32>, Vec<i64>) {
        let shape = kind.expected_output_shape(w, h, C);
        let len = shape.iter().product::<i64>() as usize;
        (vec![0.0; len], shape)
    }

    fn set_row(t: &mut [f32], row: usize, values: [f32; ROW]) {
        t[row * ROW..(row + 1) * ROW].copy_from_slice(&values);
    }

    fn run(kind: DecoderKind, t: &[f32], shape: &[i64], w: u32, h: u32) -> Vec<Candidate> {
        let mut out = Vec::new();
        decode(kind, t, shape, w, h, C, 0.3, &mut out).unwrap();
        out
    }

    fn assert_box_close(actual: [f32; 4], expected: [f32; 4]) {
        let close = actual
            .iter()
            .zip(&expected)
            .all(|(a, e)| (a - e).abs() <= 1e-4);
        assert!(close, "box {actual:?} != {expected:?}");
    }

    #[test]
    fn yolox_row_at_stride_16_decodes_relative_to_its_grid_cell() {
        let (mut t, shape) = zeros(DecoderKind::Yolox, W, H);
        // Stride 16, gx = 2, gy = 1: row 64 + 1*4 + 2.
        let ln2 = 2f32.ln();
        set_row(&mut t, 70, [0.5, 0.5, ln2, 0.0, 0.8, 0.0, 0.9]);
        let out = run(DecoderKind::Yolox, &t, &shape, W, H);
        assert_eq!(out.len(), 1, "{out:?}");
        // Centre ((0.5+2)*16, (0.5+1)*16) = (40, 24), size (2*16, 1*16) = (32, 16).
        assert_eq!(out[0].class, 1);
        assert_eq!(out[0].score, 0.8 * 0.9);
        assert_box_close(out[0].bbox, [24.0, 16.0, 56.0, 32.0]);
    }

    #[test]
    fn yolox_row_at_stride_32_is_found_after_both_finer_levels() {
        let (mut t, shape) = zeros(DecoderKind::Yolox, W, H);
        // Stride 32, gx = 1, gy = 1: the last row, 64 + 16 + 1*2 + 1.
        set_row(&mut t, 83, [0.0, 0.0, 0.0, 0.0, 1.0, 0.7, 0.0]);
        let out = run(DecoderKind::Yolox, &t, &shape, W, H);
        assert_eq!(
            out,
            [Candidate {
                class: 0,
                score: 0.7,
                // Centre (32, 32), size 32x32; exp(0) = 1 exactly, so exact equality holds.
                bbox: [16.0, 16.0, 48.0, 48.0],
            }]
        );
    }

    #[test]
    fn yolox_rows_run_along_the_width_on_a_non_square_input() {
        // 96x64: the stride-8 grid is 12 wide and 8 tall, so (gx 5, gy 3) is row 3*12 + 5.
        // Swapping width and height would put that row at a different cell.
        let (mut t, shape) = zeros(DecoderKind::Yolox, 96, 64);
        set_row(&mut t, 41, [0.0, 0.0, 0.0, 0.0, 1.0, 0.5, 0.0]);
        let out = run(DecoderKind::Yolox, &t, &shape, 96, 64);
        assert_eq!(out.len(), 1);
        // Centre (5*8, 3*8) = (40, 24), size 8x8.
        assert_eq!(out[0].bbox, [36.0, 20.0, 44.0, 28.0]);
    }

    #[test]
    fn one_anchor_yields_a_candidate_per_class_above_the_threshold() {
        let (mut t, shape) = zeros(DecoderKind::Yolox, W, H);
        set_row(&mut t, 0, [0.0, 0.0, 0.0, 0.0, 1.0, 0.36, 0.32]);
        let out = run(DecoderKind::Yolox, &t, &shape, W, H);
        let got: Vec<_> = out.iter().map(|c| (c.class, c.score)).collect();
        assert_eq!(got, [(0, 0.36), (1, 0.32)]);
        assert_eq!(out[0].bbox, out[1].bbox);
    }

    #[test]
    fn score_is_objectness_times_class_probability() {
        let (mut t, shape) = zeros(DecoderKind::Yolox, W, H);
        // Both factors clear 0.3 alone, but 0.5 * 0.5 = 0.25 does not.
        set_row(&mut t, 0, [0.0, 0.0, 0.0, 0.0, 0.5, 0.5, 0.0]);
        assert!(run(DecoderKind::Yolox, &t, &shape, W, H).is_empty());
    }

    #[test]
    fn a_score_equal_to_the_threshold_is_kept() {
        let (mut t, shape) = zeros(DecoderKind::Yolox, W, H);
        set_row(&mut t, 0, [0.0, 0.0, 0.0, 0.0, 1.0, 0.3, 0.0]);
        assert_eq!(run(DecoderKind::Yolox, &t, &shape, W, H).len(), 1);
    }

    #[test]
    fn below_threshold_and_nan_rows_produce_nothing() {
        let (mut t, shape) = zeros(DecoderKind::Yolox, W, H);
        let nan = f32::NAN;
        set_row(&mut t, 0, [0.0, 0.0, 0.0, 0.0, 0.29, 1.0, 1.0]); // objectness too low
        set_row(&mut t, 1, [0.0, 0.0, 0.0, 0.0, 0.9, 0.1, 0.2]); // classes too low
        set_row(&mut t, 2, [0.0, 0.0, 0.0, 0.0, nan, 1.0, 1.0]); // NaN objectness
        set_row(&mut t, 3, [0.0, 0.0, 0.0, 0.0, 1.0, nan, nan]); // NaN class probs
        set_row(&mut t, 4, [nan, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0]); // NaN box
        set_row(&mut t, 5, [0.0, 0.0, 100.0, 0.0, 1.0, 1.0, 0.0]); // exp overflows to inf
        assert_eq!(run(DecoderKind::Yolox, &t, &shape, W, H), []);
    }

    #[test]
    fn a_nan_threshold_accepts_nothing() {
        let (mut t, shape) = zeros(DecoderKind::Yolox, W, H);
        set_row(&mut t, 0, [0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0]);
        let mut out = Vec::new();
        decode(DecoderKind::Yolox, &t, &shape, W, H, C, f32::NAN, &mut out).unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn decode_appends_to_what_the_caller_left_in_the_vector() {
        let (mut t, shape) = zeros(DecoderKind::Yolox, W, H);
        set_row(&mut t, 0, [0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0]);
        let earlier = Candidate {
            class: 7,
            score: 0.5,
            bbox: [0.0; 4],
        };
        let mut out = vec![earlier];
        decode(DecoderKind::Yolox, &t, &shape, W, H, C, 0.3, &mut out).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0], earlier);
    }

    #[test]
    fn yolov5_rows_are_already_in_pixels_with_three_anchors_per_cell() {
        let (mut t, shape) = zeros(DecoderKind::Yolov5, W, H);
        assert_eq!(shape, [1, 3 * CELLS as i64, ROW as i64]);
        // The very last row, to prove all 3 * 84 rows are read.
        set_row(
            &mut t,
            3 * CELLS - 1,
            [30.0, 20.0, 10.0, 8.0, 0.9, 0.1, 0.8],
        );
        let out = run(DecoderKind::Yolov5, &t, &shape, W, H);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].class, 1);
        assert_eq!(out[0].score, 0.9 * 0.8);
        assert_eq!(out[0].bbox, [25.0, 16.0, 35.0, 24.0]);
    }

    #[test]
    fn yolov8_output_is_read_channel_major() {
        let (mut t, shape) = zeros(DecoderKind::Yolov8, W, H);
        // [1, 6, 84]: reading it as 84 rows of 6 (ignoring the transpose) would find other
        // values everywhere, since every box value is distinct: channel * 1000 + anchor.
        assert_eq!(shape, [1, (4 + C) as i64, CELLS as i64]);
        for ch in 0..4 {
            for i in 0..CELLS {
                t[ch * CELLS + i] = (ch * 1000 + i) as f32;
            }
        }
        t[4 * CELLS + 10] = 0.7; // class 0, anchor 10
        t[4 * CELLS + 83] = 0.5; // class 0, the last anchor: past the last full block of 16
        t[5 * CELLS + 50] = 0.4; // class 1, anchor 50
        t[5 * CELLS + 51] = 0.2; // class 1, anchor 51: below the threshold
        let out = run(DecoderKind::Yolov8, &t, &shape, W, H);
        let expected = |class, score, i: f32| {
            let (cx, cy, w, h) = (i, 1000.0 + i, 2000.0 + i, 3000.0 + i);
            Candidate {
                class,
                score,
                bbox: [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0],
            }
        };
        assert_eq!(
            out,
            [
                expected(0, 0.7, 10.0),
                expected(0, 0.5, 83.0),
                expected(1, 0.4, 50.0)
            ]
        );
    }

    #[test]
    fn yolov8_has_no_objectness_and_skips_nan_scores() {
        let (mut t, shape) = zeros(DecoderKind::Yolov8, W, H);
        t[4 * CELLS] = f32::NAN;
        t[5 * CELLS] = 0.3;
        let out = run(DecoderKind::Yolov8, &t, &shape, W, H);
        let got: Vec<_> = out.iter().map(|c| (c.class, c.score)).collect();
        assert_eq!(got, [(1, 0.3)]);
    }

    #[test]
    fn a_wrong_shape_is_rejected_naming_the_decoder_and_both_shapes() {
        let (t, _) = zeros(DecoderKind::Yolov8, W, H);
        // The transposed shape has the same length, so only the shape check can catch it.
        let wrong = [1, CELLS as i64, (4 + C) as i64];
        let mut out = Vec::new();
        let err = decode(DecoderKind::Yolov8, &t, &wrong, W, H, C, 0.3, &mut out).unwrap_err();
        assert!(
            matches!(&err, DecodeError::ShapeMismatch { kind: DecoderKind::Yolov8, expected, actual, .. }
                if expected == &[1, 6, 84] && actual == &wrong),
            "{err:?}"
        );
        let msg = err.to_string();
        for part in ["yolov8", "[1, 6, 84]", "[1, 84, 6]", "64x64", "2 classes"] {
            assert!(msg.contains(part), "{part:?} missing from {msg:?}");
        }
        assert!(out.is_empty());
    }

    #[test]
    fn a_wrong_class_count_is_a_shape_mismatch() {
        let (t, shape) = zeros(DecoderKind::Yolox, W, H);
        let mut out = Vec::new();
        let err = decode(DecoderKind::Yolox, &t, &shape, W, H, 3, 0.3, &mut out).unwrap_err();
        assert!(matches!(err, DecodeError::ShapeMismatch { .. }), "{err:?}");
    }

    #[test]
    fn a_tensor_of_the_wrong_length_is_rejected() {
        let (t, shape) = zeros(DecoderKind::Yolov5, W, H);
        let mut out = Vec::new();
        let short = &t[..t.len() - 1];
        let err = decode(DecoderKind::Yolov5, short, &shape, W, H, C, 0.3, &mut out).unwrap_err();
        let full = 3 * CELLS * ROW;
        assert!(
            matches!(&err, DecodeError::LengthMismatch { kind: DecoderKind::Yolov5, expected, actual, .. }
                if *expected == full && *actual == full - 1),
            "{err:?}"
        );
        let msg = err.to_string();
        for part in [
            "yolov5".to_string(),
            "[1, 252, 7]".to_string(),
            full.to_string(),
            (full - 1).to_string(),
        ] {
            assert!(msg.contains(&part), "{part:?} missing from {msg:?}");
        }
    }

    #[test]
    fn expected_output_shapes_at_416_with_80_classes() {
        assert_eq!(
            DecoderKind::Yolox.expected_output_shape(416, 416, 80),
            [1, 3549, 85]
        );
        assert_eq!(
            DecoderKind::Yolov5.expected_output_shape(416, 416, 80),
            [1, 10647, 85]
        );
        assert_eq!(
            DecoderKind::Yolov8.expected_output_shape(416, 416, 80),
            [1, 84, 3549]
        );
    }

    #[test]
    fn expected_output_shape_of_a_non_square_input() {
        // 640x480: 80*60 + 40*30 + 20*15.
        assert_eq!(
            DecoderKind::Yolox.expected_output_shape(640, 480, 80),
            [1, 6300, 85]
        );
    }

    #[test]
    fn an_empty_grid_decodes_to_nothing_without_panicking() {
        for kind in [DecoderKind::Yolox, DecoderKind::Yolov5, DecoderKind::Yolov8] {
            // 16x16 has no stride-32 cell; 0x0 has no cells at all.
            for (w, h) in [(16, 16), (0, 0)] {
                let (t, shape) = zeros(kind, w, h);
                assert!(run(kind, &t, &shape, w, h).is_empty(), "{kind} {w}x{h}");
            }
        }
    }

    #[test]
    fn decoder_names_match_the_manifest_spelling() {
        for (kind, name) in [
            (DecoderKind::Yolox, "yolox"),
            (DecoderKind::Yolov5, "yolov5"),
            (DecoderKind::Yolov8, "yolov8"),
        ] {
            assert_eq!(kind.to_string(), name);
            let json = format!("\"{name}\"");
            assert_eq!(serde_json::from_str::<DecoderKind>(&json).unwrap(), kind);
            assert_eq!(serde_json::to_string(&kind).unwrap(), json);
        }
    }
}
