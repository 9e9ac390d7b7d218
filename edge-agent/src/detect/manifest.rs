//! Model manifests: what a model file is and how to feed and read it.
//!
//! A manifest is a small TOML file next to (or naming) the model. It pins the file by sha256 and
//! states the input layout, colour order, scaling, letterbox and output decoder, so that swapping
//! in another YOLO export is a config change, not a code change. At load, [`crate::detect::Detector`]
//! checks the manifest against the real input and output shapes of the model.
//!
//! Example (`models/yolox_nano.toml`):
//! ```toml
//! name = "yolox_nano"
//! file = "yolox_nano.onnx"
//! sha256 = "695e750a…"
//! labels = "coco_classes.txt"
//! [input]
//! name = "images"
//! layout = "nchw"
//! width = 416
//! height = 416
//! color_order = "bgr"
//! scale = 1.0
//! letterbox = "top-left"
//! pad_value = 114
//! [output]
//! name = "output"
//! decoder = "yolox"
//! [thresholds]
//! score = 0.3
//! nms_iou = 0.45
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::decode::DecoderKind;
use super::runtime::workspace_path;

/// Where `cargo xtask setup` places model files, relative to the workspace root.
pub const SETUP_MODEL_DIR: &str = ".cache/models";

/// Where the `edge-agent` Debian package installs the model, its manifest and labels.
pub const SYSTEM_MANIFEST: &str = "/usr/share/edge-agent/models/yolox_nano.toml";

/// The manifest used when none is given: YOLOX-Nano as shipped in the build's `models/` when
/// that checkout exists (a developer's machine), else the packaged one.
pub fn default_manifest_path() -> PathBuf {
    let workspace = workspace_path("models/yolox_nano.toml");
    if workspace.is_file() {
        workspace
    } else {
        PathBuf::from(SYSTEM_MANIFEST)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("model manifest {path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("model manifest {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("model manifest {path} is invalid:\n  {}", .errors.join("\n  "))]
    Invalid { path: PathBuf, errors: Vec<String> },
    #[error("model manifest {path}: labels file {labels}: cannot read: {source}")]
    Labels {
        path: PathBuf,
        labels: PathBuf,
        source: std::io::Error,
    },
    #[error("model manifest {path}: model file `{file}` not found; looked at: {}. Run `cargo xtask setup` to fetch it", .searched.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    ModelNotFound {
        path: PathBuf,
        file: String,
        searched: Vec<PathBuf>,
    },
}

/// Memory layout of the input tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// `[1, 3, H, W]`: planar, the usual ONNX export.
    Nchw,
    /// `[1, H, W, 3]`: interleaved.
    Nhwc,
}

/// Channel order the model was trained on. YOLOX weights expect OpenCV's BGR; Ultralytics RGB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColorOrder {
    Rgb,
    Bgr,
}

/// Where the resized image sits on the padded square canvas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LetterboxMode {
    /// Pasted at the top-left, padding right and bottom (YOLOX).
    TopLeft,
    /// Centred, padding split on both sides (Ultralytics).
    Center,
}

/// The `[input]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// Name of the model's input tensor.
    pub name: String,
    pub layout: Layout,
    /// Canvas width in pixels.
    pub width: u32,
    /// Canvas height in pixels.
    pub height: u32,
    pub color_order: ColorOrder,
    /// Pixel values 0..255 are multiplied by this: 1.0 for YOLOX, 1/255 for Ultralytics.
    pub scale: f32,
    pub letterbox: LetterboxMode,
    /// Value (0..255, before scaling) of the padding around the resized image.
    pub pad_value: u8,
}

/// The `[output]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    /// Name of the model's output tensor.
    pub name: String,
    pub decoder: DecoderKind,
}

/// The `[thresholds]` table: defaults that a camera's config may override.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    /// Minimum score for a detection to be reported.
    pub score: f32,
    /// IoU above which a lower-scoring box of the same class is suppressed.
    pub nms_iou: f32,
}

/// A model manifest as written in TOML.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestFile {
    /// Short model id, reported with every detection's alert.
    pub name: String,
    /// Model file name; relative paths are looked up next to the manifest, then in the set-up
    /// cache.
    pub file: String,
    /// Lower-case hex sha256 of the model file; a different file is refused.
    pub sha256: String,
    /// Labels file, one label per line in output order, relative to the manifest.
    pub labels: String,
    /// Where the model is published, for the set-up and for people.
    #[serde(default)]
    pub source: Option<String>,
    pub input: InputSpec,
    pub output: OutputSpec,
    pub thresholds: Thresholds,
}

/// A loaded and checked manifest, with its labels read and its model file located.
#[derive(Debug, Clone)]
pub struct ModelManifest {
    pub manifest_path: PathBuf,
    pub model_path: PathBuf,
    pub labels: Vec<String>,
    pub spec: ManifestFile,
}

impl ModelManifest {
    /// Reads, validates (every error at once) and resolves a manifest.
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let spec: ManifestFile = toml::from_str(&text).map_err(|e| ManifestError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let errors = validate(&spec);
        if !errors.is_empty() {
            return Err(ManifestError::Invalid {
                path: path.to_path_buf(),
                errors,
            });
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        let labels_path = dir.join(&spec.labels);
        let labels_text =
            std::fs::read_to_string(&labels_path).map_err(|source| ManifestError::Labels {
                path: path.to_path_buf(),
                labels: labels_path.clone(),
                source,
            })?;
        let labels: Vec<String> = labels_text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect();
        let model_path = locate_model(path, dir, &spec.file)?;
        Ok(Self {
            manifest_path: path.to_path_buf(),
            model_path,
            labels,
            spec,
        })
    }
}

fn locate_model(manifest: &Path, dir: &Path, file: &str) -> Result<PathBuf, ManifestError> {
    let given = Path::new(file);
    let searched = if given.is_absolute() {
        vec![given.to_path_buf()]
    } else {
        vec![dir.join(given), workspace_path(SETUP_MODEL_DIR).join(given)]
    };
    searched
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| ManifestError::ModelNotFound {
            path: manifest.to_path_buf(),
            file: file.to_string(),
            searched,
        })
}

/// Every problem with a parsed manifest, each naming its field.
fn validate(m: &ManifestFile) -> Vec<String> {
    let mut errors = Vec::new();
    if m.name.trim().is_empty() {
        errors.push("name: must not be empty".to_string());
    }
    if m.file.trim().is_empty() {
        errors.push("file: must not be empty".to_string());
    }
    if m.sha256.len() != 64 || !m.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        errors.push(format!(
            "sha256: must be 64 hex digits, got {:?} ({} characters)",
            m.sha256,
            m.sha256.len()
        ));
    }
    for (field, v) in [
        ("input.width", m.input.width),
        ("input.height", m.input.height),
    ] {
        if !(32..=4096).contains(&v) {
            errors.push(format!("{field}: must be within 32..=4096, got {v}"));
        } else if v % 32 != 0 {
            errors.push(format!(
                "{field}: must be a multiple of 32 (the largest detection stride), got {v}"
            ));
        }
    }
    if !(m.input.scale.is_finite() && m.input.scale > 0.0) {
        errors.push(format!(
            "input.scale: must be a positive number, got {}",
            m.input.scale
        ));
    }
    if !(m.thresholds.score > 0.0 && m.thresholds.score < 1.0) {
        errors.push(format!(
            "thresholds.score: must be within (0, 1), got {}",
            m.thresholds.score
        ));
    }
    if !(m.thresholds.nms_iou > 0.0 && m.thresholds.nms_iou <= 1.0) {
        errors.push(format!(
            "thresholds.nms_iou: must be within (0, 1], got {}",
            m.thresholds.nms_iou
        ));
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "m"
file = "m.onnx"
sha256 = "695e750a5d5754bb5a8d5325643b59282191a7e7a564e435a415fd3c578eab14"
labels = "labels.txt"
[input]
name = "images"
layout = "nchw"
width = 416
height = 416
color_order = "bgr"
scale = 1.0
letterbox = "top-left"
pad_value = 114
[output]
name = "output"
decoder = "yolox"
[thresholds]
score = 0.3
nms_iou = 0.45
"#;

    fn write(dir: &Path, manifest: &str) -> PathBuf {
        std::fs::write(dir.join("labels.txt"), "person\ncar\n").unwrap();
        std::fs::write(dir.join("m.onnx"), b"x").unwrap();
        let p = dir.join("m.toml");
        std::fs::write(&p, manifest).unwrap();
        p
    }

    #[test]
    fn a_good_manifest_loads_with_its_labels_and_model_path() {
        let dir = tempfile::tempdir().unwrap();
        let m = ModelManifest::load(&write(dir.path(), GOOD)).unwrap();
        assert_eq!(m.labels, vec!["person", "car"]);
        assert_eq!(m.model_path, dir.path().join("m.onnx"));
        assert_eq!(m.spec.output.decoder, DecoderKind::Yolox);
        assert_eq!(m.spec.input.letterbox, LetterboxMode::TopLeft);
    }

    #[test]
    fn every_invalid_field_is_reported_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let bad = GOOD
            .replace("width = 416", "width = 400")
            .replace("sha256 = \"695e", "sha256 = \"zz5e")
            .replace("score = 0.3", "score = 1.5");
        let err = ModelManifest::load(&write(dir.path(), &bad))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("input.width: must be a multiple of 32"),
            "{err}"
        );
        assert!(err.contains("sha256: must be 64 hex digits"), "{err}");
        assert!(err.contains("thresholds.score"), "{err}");
    }

    #[test]
    fn unknown_keys_are_refused_with_their_name() {
        let dir = tempfile::tempdir().unwrap();
        let bad = GOOD.replace("pad_value = 114", "pad_value = 114\npadding = 3");
        let err = ModelManifest::load(&write(dir.path(), &bad))
            .unwrap_err()
            .to_string();
        assert!(err.contains("padding"), "{err}");
    }

    #[test]
    fn a_missing_model_file_names_every_place_searched() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), &GOOD.replace("m.onnx", "absent.onnx"));
        let err = ModelManifest::load(&p).unwrap_err().to_string();
        assert!(err.contains("absent.onnx"), "{err}");
        assert!(err.contains(".cache/models"), "{err}");
    }
}
