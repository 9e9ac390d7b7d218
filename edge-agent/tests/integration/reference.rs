//! The detector, on real ONNX Runtime with the real model, finds what an independent reference
//! implementation finds in the sample frames (`../shared/models/yolox_nano.reference.json`):
//! same labels, scores within 0.03, boxes with IoU ≥ 0.9; nothing missing, nothing extra.

// Test helpers panic on a failed set-up step, like the tests themselves.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use edge_agent::detect::nms::iou;
use edge_agent::detect::{Detector, DetectorOptions, Model, ModelManifest, manifest};
use protocol::Detection;
use serde::Deserialize;

const SCORE_TOLERANCE: f32 = 0.03;
const MIN_IOU: f32 = 0.9;

#[derive(Debug, Deserialize)]
struct RefFrame {
    width: u32,
    height: u32,
    detections: Vec<Detection>,
}

/// Pairs reference and found detections one to one (same label, best IoU) and returns every
/// disagreement as a sentence.
fn compare(file: &str, reference: &[Detection], found: &[Detection]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut used = vec![false; found.len()];
    for r in reference {
        let best = found
            .iter()
            .enumerate()
            .filter(|(i, f)| !used[*i] && f.label == r.label)
            .map(|(i, f)| (i, iou(&r.box_xyxy, &f.box_xyxy)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        match best {
            Some((i, overlap)) if overlap >= MIN_IOU => {
                used[i] = true;
                let f = &found[i];
                if (f.score - r.score).abs() > SCORE_TOLERANCE {
                    problems.push(format!(
                        "{file}: {} at {:?}: score {:.4}, reference {:.4}",
                        r.label, r.box_xyxy, f.score, r.score
                    ));
                }
            }
            other => problems.push(format!(
                "{file}: missing {} {:.4} at {:?} (best same-label IoU {:?})",
                r.label,
                r.score,
                r.box_xyxy,
                other.map(|o| o.1)
            )),
        }
    }
    for (f, _) in found.iter().zip(&used).filter(|(_, u)| !**u) {
        problems.push(format!(
            "{file}: extra {} {:.4} at {:?}",
            f.label, f.score, f.box_xyxy
        ));
    }
    problems
}

#[test]
fn detections_on_the_sample_frames_match_the_reference_implementation() {
    let reference_path = testkit::shared("models/yolox_nano.reference.json");
    let text = std::fs::read_to_string(&reference_path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", reference_path.display()));
    let reference: BTreeMap<String, RefFrame> = serde_json::from_str(&text).unwrap();
    assert_eq!(reference.len(), 10, "the reference covers ten frames");

    let manifest = ModelManifest::load(&manifest::default_manifest_path())
        .expect("model manifest (run `cargo xtask setup` first)");
    let model = Model::load(manifest).unwrap();
    let mut detector = Detector::new(model, &DetectorOptions::default()).unwrap();

    let mut problems = Vec::new();
    let mut matched = 0;
    for (file, r) in &reference {
        let bytes = std::fs::read(testkit::shared("samples/frames").join(file)).unwrap();
        let found = detector.detect_bytes(&bytes).unwrap();
        assert_eq!((found.width, found.height), (r.width, r.height), "{file}");
        let p = compare(file, &r.detections, &found.detections);
        matched += r.detections.len() - p.iter().filter(|p| p.contains("missing")).count();
        problems.extend(p);
    }
    assert!(
        problems.is_empty(),
        "{} disagreements with the reference ({matched} matched):\n{}",
        problems.len(),
        problems.join("\n")
    );
    assert!(matched > 50, "only {matched} reference detections matched");
}

#[test]
fn the_comparison_itself_catches_missing_extra_and_misplaced_boxes() {
    let d = |label: &str, score: f32, b: [f32; 4]| Detection {
        label: label.into(),
        score,
        box_xyxy: b,
    };
    let reference = [
        d("person", 0.8, [0.0, 0.0, 10.0, 20.0]),
        d("car", 0.5, [50.0, 50.0, 90.0, 80.0]),
    ];
    assert!(compare("f", &reference, &reference).is_empty());
    let shifted = [
        d("person", 0.8, [3.0, 0.0, 13.0, 20.0]),
        reference[1].clone(),
    ];
    assert!(compare("f", &reference, &shifted)[0].contains("missing person"));
    let rescored = [
        d("person", 0.7, [0.0, 0.0, 10.0, 20.0]),
        reference[1].clone(),
    ];
    assert!(compare("f", &reference, &rescored)[0].contains("score 0.7000"));
    let more = [
        reference[0].clone(),
        reference[1].clone(),
        d("dog", 0.4, [0.0, 0.0, 5.0, 5.0]),
    ];
    assert!(compare("f", &reference, &more)[0].contains("extra dog"));
    let relabelled = [
        reference[0].clone(),
        d("truck", 0.5, [50.0, 50.0, 90.0, 80.0]),
    ];
    assert_eq!(compare("f", &reference, &relabelled).len(), 2);
}
