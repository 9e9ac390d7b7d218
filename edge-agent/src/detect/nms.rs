//! Class-wise non-maximum suppression.
//!
//! The decoders emit many overlapping candidates per object (neighbouring anchors and heads all
//! fire). Greedy NMS keeps the best-scoring box and drops lower-scoring boxes of the *same
//! class* that overlap it by more than a threshold. Boxes of different classes never suppress
//! each other, so a person holding a baseball glove keeps both detections.

use std::cmp::Ordering;

use super::decode::Candidate;

/// Class-wise (per-class) greedy NMS in place: sorts by score descending, keeps a box unless it
/// overlaps a kept box *of the same class* with IoU > `iou_threshold`. Result sorted by score
/// descending.
///
/// Deterministic regardless of input order: ties in score are broken by class, then by box
/// coordinates, so only bit-identical candidates can compare equal, and their relative order is
/// unobservable. Candidates with a NaN score have no rank and are dropped. Allocation-free: the
/// survivors are compacted to the front of `cands`.
pub fn nms_classwise(cands: &mut Vec<Candidate>, iou_threshold: f32) {
    cands.retain(|c| !c.score.is_nan());
    // An unstable sort never allocates; the total order above makes it as deterministic as a
    // stable one.
    cands.sort_unstable_by(rank);

    // Survivors are compacted into cands[..kept]. Each candidate is only compared with earlier
    // survivors (suppressed boxes suppress nothing, as in greedy NMS), and since kept <= i the
    // write never clobbers a candidate not yet visited.
    let mut kept = 0;
    for i in 0..cands.len() {
        let c = cands[i];
        let suppressed = cands[..kept]
            .iter()
            .any(|k| k.class == c.class && iou(&k.bbox, &c.bbox) > iou_threshold);
        if !suppressed {
            cands[kept] = c;
            kept += 1;
        }
    }
    cands.truncate(kept);
}

/// Score descending, then class and box ascending: a total order on non-NaN candidates.
fn rank(a: &Candidate, b: &Candidate) -> Ordering {
    b.score
        .total_cmp(&a.score)
        .then(a.class.cmp(&b.class))
        .then_with(|| {
            a.bbox
                .iter()
                .zip(&b.bbox)
                .map(|(x, y)| x.total_cmp(y))
                .find(|o| o.is_ne())
                .unwrap_or(Ordering::Equal)
        })
}

/// Intersection over union of two `[x1, y1, x2, y2]` boxes, in `[0, 1]`.
///
/// Continuous coordinates (no "+1 pixel" convention). A box with zero or negative width or
/// height has zero area and overlaps nothing: IoU 0, even with an identical box.
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let union = area(a) + area(b) - inter;
    // Also false for NaN, so degenerate input yields 0 rather than NaN.
    if union > 0.0 { inter / union } else { 0.0 }
}

/// Area of a box, treating inverted boxes as empty.
fn area(b: &[f32; 4]) -> f32 {
    (b[2] - b[0]).max(0.0) * (b[3] - b[1]).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(class: u32, score: f32, bbox: [f32; 4]) -> Candidate {
        Candidate { class, score, bbox }
    }

    fn scores(cands: &[Candidate]) -> Vec<f32> {
        cands.iter().map(|c| c.score).collect()
    }

    #[test]
    fn iou_of_identical_boxes_is_one() {
        let a = [10.0, 20.0, 30.0, 50.0];
        assert_eq!(iou(&a, &a), 1.0);
    }

    #[test]
    fn iou_of_disjoint_or_touching_boxes_is_zero() {
        let a = [0.0, 0.0, 2.0, 2.0];
        assert_eq!(iou(&a, &[5.0, 5.0, 7.0, 7.0]), 0.0);
        assert_eq!(iou(&a, &[2.0, 0.0, 4.0, 2.0]), 0.0); // shares an edge only
    }

    #[test]
    fn iou_of_a_box_shifted_by_half_its_width_is_one_third() {
        // Intersection 1x2 = 2, union 4 + 4 - 2 = 6.
        let a = [0.0, 0.0, 2.0, 2.0];
        let b = [1.0, 0.0, 3.0, 2.0];
        assert_eq!(iou(&a, &b), 2.0 / 6.0);
        assert_eq!(iou(&b, &a), iou(&a, &b));
    }

    #[test]
    fn iou_of_a_box_inside_another_is_the_area_ratio() {
        assert_eq!(iou(&[0.0, 0.0, 4.0, 4.0], &[1.0, 1.0, 3.0, 3.0]), 0.25);
    }

    #[test]
    fn iou_with_a_zero_area_box_is_zero() {
        let point = [1.0, 1.0, 1.0, 1.0];
        let line = [0.0, 1.0, 4.0, 1.0];
        assert_eq!(iou(&point, &point), 0.0);
        assert_eq!(iou(&line, &line), 0.0);
        assert_eq!(iou(&point, &[0.0, 0.0, 2.0, 2.0]), 0.0);
    }

    #[test]
    fn the_lower_of_two_overlapping_same_class_boxes_is_removed() {
        let mut c = vec![
            cand(0, 0.6, [0.0, 0.0, 10.0, 10.0]),
            cand(0, 0.9, [1.0, 1.0, 11.0, 11.0]),
        ];
        nms_classwise(&mut c, 0.45);
        assert_eq!(c, [cand(0, 0.9, [1.0, 1.0, 11.0, 11.0])]);
    }

    #[test]
    fn overlapping_boxes_of_different_classes_are_both_kept() {
        let mut c = vec![
            cand(0, 0.9, [0.0, 0.0, 10.0, 10.0]),
            cand(1, 0.8, [0.0, 0.0, 10.0, 10.0]),
        ];
        nms_classwise(&mut c, 0.45);
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn iou_exactly_at_the_threshold_is_kept_and_above_it_suppressed() {
        // IoU is exactly 0.5: intersection 2, union 4.
        let boxes = [
            cand(0, 0.9, [0.0, 0.0, 4.0, 1.0]),
            cand(0, 0.8, [0.0, 0.0, 2.0, 1.0]),
        ];
        let mut c = boxes.to_vec();
        nms_classwise(&mut c, 0.5);
        assert_eq!(c.len(), 2);
        let mut c = boxes.to_vec();
        nms_classwise(&mut c, 0.49);
        assert_eq!(scores(&c), [0.9]);
    }

    #[test]
    fn result_is_sorted_by_score_descending() {
        let mut c = vec![
            cand(0, 0.3, [0.0, 0.0, 1.0, 1.0]),
            cand(1, 0.9, [10.0, 0.0, 11.0, 1.0]),
            cand(2, 0.5, [20.0, 0.0, 21.0, 1.0]),
            cand(0, 0.7, [30.0, 0.0, 31.0, 1.0]),
        ];
        nms_classwise(&mut c, 0.45);
        assert_eq!(scores(&c), [0.9, 0.7, 0.5, 0.3]);
    }

    #[test]
    fn a_suppressed_box_does_not_suppress_others() {
        // A overlaps B and B overlaps C, but A and C are disjoint: greedy NMS keeps A and C.
        let a = cand(0, 0.9, [0.0, 0.0, 2.0, 2.0]);
        let b = cand(0, 0.8, [1.0, 0.0, 3.0, 2.0]);
        let c = cand(0, 0.7, [2.0, 0.0, 4.0, 2.0]);
        let mut v = vec![c, b, a];
        nms_classwise(&mut v, 0.3);
        assert_eq!(v, [a, c]);
    }

    #[test]
    fn result_does_not_depend_on_input_order() {
        let base = [
            cand(0, 0.5, [0.0, 0.0, 10.0, 10.0]),
            cand(0, 0.5, [1.0, 0.0, 11.0, 10.0]),
            cand(1, 0.5, [0.0, 0.0, 10.0, 10.0]),
            cand(0, 0.4, [50.0, 0.0, 60.0, 10.0]),
        ];
        let mut expected = base.to_vec();
        nms_classwise(&mut expected, 0.45);
        // The two tied, overlapping class-0 boxes: the one with the smaller x1 wins.
        assert_eq!(expected, [base[0], base[2], base[3]]);
        for rotation in 1..base.len() {
            let mut v = base.to_vec();
            v.rotate_left(rotation);
            nms_classwise(&mut v, 0.45);
            assert_eq!(v, expected, "rotation {rotation}");
            let mut v = base.to_vec();
            v.reverse();
            v.rotate_left(rotation);
            nms_classwise(&mut v, 0.45);
            assert_eq!(v, expected, "reversed, rotation {rotation}");
        }
    }

    #[test]
    fn nan_scores_are_dropped() {
        let mut c = vec![
            cand(0, f32::NAN, [0.0, 0.0, 10.0, 10.0]),
            cand(0, 0.5, [0.0, 0.0, 10.0, 10.0]),
        ];
        nms_classwise(&mut c, 0.45);
        assert_eq!(scores(&c), [0.5]);
    }

    #[test]
    fn an_empty_list_stays_empty() {
        let mut c = Vec::new();
        nms_classwise(&mut c, 0.45);
        assert!(c.is_empty());
    }
}
