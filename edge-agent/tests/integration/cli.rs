//! `edge-agent detect` on bad input: every bad file, model or manifest gets a clear error naming
//! it and the problem, nothing panics, and the good files of the same call are still processed.

// Test helpers panic on a failed set-up step, like the tests themselves.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::path::{Path, PathBuf};

use common::{edge_agent, text};
use testkit::shared;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A PNG signature and a valid IHDR chunk declaring `w`x`h` RGB8, and no pixel data.
fn png_header(w: u32, h: u32) -> Vec<u8> {
    let mut chunk = b"IHDR".to_vec();
    chunk.extend_from_slice(&w.to_be_bytes());
    chunk.extend_from_slice(&h.to_be_bytes());
    chunk.extend_from_slice(&[8, 2, 0, 0, 0]);
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

/// A manifest in `dir` derived from the shipped one, with `edit` applied to its text. The labels
/// file is copied alongside; `file` is rewritten to `model`.
fn manifest_with(dir: &Path, model: &Path, edit: impl Fn(String) -> String) -> PathBuf {
    let shipped = std::fs::read_to_string(workspace().join("models/yolox_nano.toml")).unwrap();
    std::fs::copy(
        workspace().join("models/coco_classes.txt"),
        dir.join("coco_classes.txt"),
    )
    .unwrap();
    let text = shipped.replace(
        "file = \"yolox_nano.onnx\"",
        &format!("file = {:?}", model.display().to_string()),
    );
    let path = dir.join("model.toml");
    std::fs::write(&path, edit(text)).unwrap();
    path
}

/// Runs `detect --model manifest` on a good frame, expects exit code 1, returns stderr.
fn detect_fails_with(manifest: &Path) -> String {
    let good = shared("samples/frames/000000001000.jpg");
    let out = edge_agent(&[
        "detect",
        "--model",
        manifest.to_str().unwrap(),
        good.to_str().unwrap(),
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    stderr
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn real_model() -> PathBuf {
    workspace().join(".cache/models/yolox_nano.onnx")
}

#[test]
fn bad_images_are_reported_by_name_and_the_good_ones_still_processed() {
    let dir = tempfile::tempdir().unwrap();
    let good = shared("samples/frames/000000001000.jpg");
    let jpeg = std::fs::read(&good).unwrap();
    let empty = dir.path().join("empty.jpg");
    let truncated = dir.path().join("truncated.jpg");
    let text_file = dir.path().join("notes.jpg");
    let huge = dir.path().join("huge.png");
    std::fs::write(&empty, b"").unwrap();
    std::fs::write(&truncated, &jpeg[..jpeg.len() / 3]).unwrap();
    std::fs::write(&text_file, b"camera 12 maintenance log\n").unwrap();
    std::fs::write(&huge, png_header(30000, 30000)).unwrap();
    let good2 = shared("samples/frames/000000008762.jpg");

    let args: Vec<String> = [&empty, &good, &truncated, &text_file, &huge, &good2]
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let mut argv = vec!["detect"];
    argv.extend(args.iter().map(String::as_str));
    let out = edge_agent(&argv);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));

    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let expect = [
        (&empty, "empty file"),
        (&truncated, "truncated"),
        (&text_file, "not a JPEG or PNG image"),
        (&huge, "30000x30000"),
    ];
    for (path, problem) in expect {
        let line = stderr
            .lines()
            .find(|l| l.contains(&path.display().to_string()))
            .unwrap_or_else(|| panic!("no error line for {}: {stderr}", path.display()));
        assert!(line.contains(problem), "expected {problem:?} in {line:?}");
    }
    assert!(stderr.contains("4 of 6 images failed"), "{stderr}");

    let json: serde_json::Value = serde_json::from_str(&stdout).expect("stdout is JSON");
    let obj = json.as_object().unwrap();
    assert_eq!(
        obj.len(),
        2,
        "only the good frames are in the output: {stdout}"
    );
    let frame = &obj["000000001000.jpg"];
    assert_eq!(frame["width"], 640);
    assert_eq!(frame["height"], 480);
    let persons = frame["detections"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["label"] == "person")
        .count();
    assert!(persons >= 8, "{stdout}");
    assert!(obj.contains_key("000000008762.jpg"));
}

#[test]
fn a_model_that_is_not_onnx_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("bogus.onnx");
    let bytes = b"this is not a protobuf-encoded ONNX graph".repeat(20);
    std::fs::write(&bogus, &bytes).unwrap();
    let hash = sha256_hex(&bytes);
    let manifest = manifest_with(dir.path(), &bogus, |t| {
        t.replace(
            "695e750a5d5754bb5a8d5325643b59282191a7e7a564e435a415fd3c578eab14",
            &hash,
        )
    });
    let stderr = detect_fails_with(&manifest);
    assert!(stderr.contains(&bogus.display().to_string()), "{stderr}");
    assert!(stderr.contains("is it an ONNX model?"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_model_other_than_the_one_the_manifest_pins_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other.onnx");
    let mut bytes = std::fs::read(real_model()).unwrap();
    bytes.push(0);
    std::fs::write(&other, &bytes).unwrap();
    let manifest = manifest_with(dir.path(), &other, |t| t);
    let stderr = detect_fails_with(&manifest);
    assert!(stderr.contains("sha256"), "{stderr}");
    assert!(stderr.contains(&sha256_hex(&bytes)), "{stderr}");
}

#[test]
fn a_manifest_whose_input_size_disagrees_with_the_model_names_the_field_and_shape() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = manifest_with(dir.path(), &real_model(), |t| {
        t.replace("width = 416", "width = 320")
    });
    let stderr = detect_fails_with(&manifest);
    assert!(stderr.contains("input.width"), "{stderr}");
    assert!(stderr.contains("[1, 3, 416, 416]"), "{stderr}");
    assert!(stderr.contains(&manifest.display().to_string()), "{stderr}");
}

#[test]
fn a_manifest_whose_labels_disagree_with_the_output_names_the_labels_file() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = manifest_with(dir.path(), &real_model(), |t| t);
    // Drop the last label: the model still has 80 classes.
    let labels = std::fs::read_to_string(dir.path().join("coco_classes.txt")).unwrap();
    let fewer: Vec<&str> = labels.lines().take(79).collect();
    std::fs::write(dir.path().join("coco_classes.txt"), fewer.join("\n")).unwrap();
    let stderr = detect_fails_with(&manifest);
    assert!(stderr.contains("79 labels"), "{stderr}");
    assert!(
        stderr.contains("[1, 3549, 84]") && stderr.contains("[1, 3549, 85]"),
        "{stderr}"
    );
}

#[test]
fn a_missing_onnx_runtime_library_says_how_to_get_one() {
    let good = shared("samples/frames/000000001000.jpg");
    let out = edge_agent(&[
        "detect",
        "--ort-lib",
        "/nonexistent/libonnxruntime.so",
        good.to_str().unwrap(),
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("/nonexistent/libonnxruntime.so"),
        "{stderr}"
    );
    assert!(stderr.contains("cargo xtask setup"), "{stderr}");
}
