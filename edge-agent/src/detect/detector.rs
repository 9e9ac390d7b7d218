//! [`Detector`]: owns one ONNX Runtime session and everything one inference needs, reused frame
//! after frame (decode buffer, resizer, input tensor, candidate list).
//!
//! A [`Model`] is loaded once (file read, sha256 checked against the manifest) and shared by any
//! number of detectors; each detector commits its own session from the model's bytes, so
//! several can run in parallel on different cores.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::{Tensor, TensorElementType, ValueType};
use protocol::Detection;
use sha2::{Digest, Sha256};

use super::decode::{self, Candidate};
use super::manifest::{Layout, ModelManifest};
use super::nms::nms_classwise;
use super::preprocess::{Letterbox, PreprocessError, Preprocessor};
use super::runtime::{self, RuntimeError};
use crate::frame::{FrameDecoder, ImageError, ImageLimits, RgbFrame};

#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("model file {path}: cannot read: {source}")]
    ModelRead {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "model file {path}: sha256 is {actual}, but manifest {manifest} pins {expected}; refusing a model the manifest does not describe"
    )]
    ModelHash {
        path: PathBuf,
        manifest: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("model file {path}: ONNX Runtime cannot load it (is it an ONNX model?): {reason}")]
    ModelLoad { path: PathBuf, reason: String },
    #[error("model file {path} disagrees with manifest {manifest}: {message}")]
    ManifestMismatch {
        path: PathBuf,
        manifest: PathBuf,
        message: String,
    },
    #[error("ONNX Runtime session options: {0}")]
    SessionOptions(String),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Preprocess(#[from] PreprocessError),
    #[error("inference failed: {0}")]
    Inference(String),
    #[error("decoding model output: {0}")]
    Decode(#[from] decode::DecodeError),
}

/// How detectors are built. Defaults suit a box dedicating its cores to detection.
#[derive(Debug, Clone)]
pub struct DetectorOptions {
    /// Explicit ONNX Runtime library; see [`runtime`] for the search order without one.
    pub ort_library: Option<PathBuf>,
    /// ONNX Runtime intra-op threads for this detector's session.
    pub intra_threads: usize,
    /// Let ONNX Runtime's worker threads spin while waiting for work. Spinning shaves latency
    /// when a session has the cores to itself, but burns CPU that other sessions or the
    /// decoder could use, so it is off unless asked for.
    pub spinning: bool,
    pub limits: ImageLimits,
    /// Overrides the manifest's score threshold.
    pub score_threshold: Option<f32>,
    /// Overrides the manifest's NMS IoU threshold.
    pub nms_iou: Option<f32>,
}

impl Default for DetectorOptions {
    fn default() -> Self {
        Self {
            ort_library: None,
            intra_threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            spinning: false,
            limits: ImageLimits::default(),
            score_threshold: None,
            nms_iou: None,
        }
    }
}

/// A model file, read and verified once, shared by detectors.
#[derive(Debug)]
pub struct Model {
    pub manifest: ModelManifest,
    /// Lower-case hex sha256 of the file (equal to the manifest's).
    pub sha256: String,
    bytes: Arc<[u8]>,
}

impl Model {
    pub fn load(manifest: ModelManifest) -> Result<Arc<Self>, DetectError> {
        let path = &manifest.model_path;
        let bytes = std::fs::read(path).map_err(|source| DetectError::ModelRead {
            path: path.clone(),
            source,
        })?;
        let sha256 = hex(&Sha256::digest(&bytes));
        if !sha256.eq_ignore_ascii_case(&manifest.spec.sha256) {
            return Err(DetectError::ModelHash {
                path: path.clone(),
                manifest: manifest.manifest_path.clone(),
                expected: manifest.spec.sha256.clone(),
                actual: sha256,
            });
        }
        Ok(Arc::new(Self {
            manifest,
            sha256,
            bytes: bytes.into(),
        }))
    }

    pub fn name(&self) -> &str {
        &self.manifest.spec.name
    }

    pub fn num_classes(&self) -> usize {
        self.manifest.labels.len()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Time spent in each stage, summed over the frames a detector has processed.
#[derive(Debug, Clone, Copy, Default)]
pub struct StageTimes {
    pub frames: u64,
    pub decode: Duration,
    pub preprocess: Duration,
    pub inference: Duration,
    pub postprocess: Duration,
}

impl StageTimes {
    pub fn add(&mut self, o: &StageTimes) {
        self.frames += o.frames;
        self.decode += o.decode;
        self.preprocess += o.preprocess;
        self.inference += o.inference;
        self.postprocess += o.postprocess;
    }
}

/// Detections found in one image, in source pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameDetections {
    pub width: u32,
    pub height: u32,
    pub detections: Vec<Detection>,
}

/// Owns one ORT session and the reusable buffers of the detection pipeline.
pub struct Detector {
    model: Arc<Model>,
    session: Session,
    input: Tensor<f32>,
    pre: Preprocessor,
    decoder: FrameDecoder,
    frame: RgbFrame,
    candidates: Vec<Candidate>,
    score_threshold: f32,
    nms_iou: f32,
    times: StageTimes,
}

impl std::fmt::Debug for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detector")
            .field("model", &self.model.name())
            .field("score_threshold", &self.score_threshold)
            .field("nms_iou", &self.nms_iou)
            .finish_non_exhaustive()
    }
}

impl Detector {
    /// Builds a session for `model` and checks the manifest against the model's real shapes.
    pub fn new(model: Arc<Model>, opts: &DetectorOptions) -> Result<Self, DetectError> {
        let env = runtime::environment(opts.ort_library.as_deref())?;
        let m = &model.manifest;
        let opt_err = |e: ort::Error<_>| DetectError::SessionOptions(e.to_string());
        let session = Session::builder(&env)
            .map_err(|e| DetectError::SessionOptions(e.to_string()))?
            .with_optimization_level(GraphOptimizationLevel::Level3)
            .map_err(opt_err)?
            .with_intra_threads(opts.intra_threads.max(1))
            .map_err(opt_err)?
            .with_inter_threads(1)
            .map_err(opt_err)?
            .with_intra_op_spinning(opts.spinning)
            .map_err(opt_err)?
            .commit_from_memory(&model.bytes)
            .map_err(|e| DetectError::ModelLoad {
                path: m.model_path.clone(),
                reason: e.to_string(),
            })?;
        check_shapes(&session, m)?;
        let input_shape = input_shape(m);
        let input = Tensor::<f32>::new(session.allocator(), input_shape.map(|d| d as usize))
            .map_err(|e| DetectError::SessionOptions(format!("allocating input tensor: {e}")))?;
        Ok(Self {
            pre: Preprocessor::new(&m.spec.input),
            decoder: FrameDecoder::new(opts.limits),
            frame: RgbFrame::default(),
            candidates: Vec::with_capacity(256),
            score_threshold: opts.score_threshold.unwrap_or(m.spec.thresholds.score),
            nms_iou: opts.nms_iou.unwrap_or(m.spec.thresholds.nms_iou),
            times: StageTimes::default(),
            input,
            session,
            model,
        })
    }

    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// Stage times accumulated since this detector was built (or last [`Self::take_times`]).
    pub fn times(&self) -> StageTimes {
        self.times
    }

    pub fn take_times(&mut self) -> StageTimes {
        std::mem::take(&mut self.times)
    }

    /// Decodes an encoded JPEG/PNG and detects objects in it.
    pub fn detect_bytes(&mut self, bytes: &[u8]) -> Result<FrameDetections, DetectError> {
        let t = Instant::now();
        let mut frame = std::mem::take(&mut self.frame);
        let decoded = self.decoder.decode(bytes, &mut frame);
        self.times.decode += t.elapsed();
        let result = decoded
            .map_err(DetectError::from)
            .and_then(|()| self.detect_frame(&frame));
        self.frame = frame;
        result
    }

    /// Detects objects in a decoded frame.
    pub fn detect_frame(&mut self, frame: &RgbFrame) -> Result<FrameDetections, DetectError> {
        let t = Instant::now();
        let (_, tensor) = self.input.extract_tensor_mut();
        let lb = self.pre.run(frame, tensor)?;
        self.times.preprocess += t.elapsed();
        let detections = self.infer(&lb)?;
        self.times.frames += 1;
        Ok(FrameDetections {
            width: frame.width,
            height: frame.height,
            detections,
        })
    }

    /// Runs the session on the current input tensor and decodes its output.
    fn infer(&mut self, lb: &Letterbox) -> Result<Vec<Detection>, DetectError> {
        let spec = &self.model.manifest.spec;
        let t = Instant::now();
        let outputs = self
            .session
            .run(ort::inputs![&self.input])
            .map_err(|e| DetectError::Inference(e.to_string()))?;
        let t_run = t.elapsed();
        let t = Instant::now();
        let output = outputs.get(spec.output.name.as_str()).ok_or_else(|| {
            DetectError::Inference(format!("no output named {}", spec.output.name))
        })?;
        let (shape, data) = output
            .try_extract_tensor::<f32>()
            .map_err(|e| DetectError::Inference(e.to_string()))?;
        self.candidates.clear();
        decode::decode(
            spec.output.decoder,
            data,
            shape,
            spec.input.width,
            spec.input.height,
            self.model.num_classes(),
            self.score_threshold,
            &mut self.candidates,
        )?;
        drop(outputs);
        nms_classwise(&mut self.candidates, self.nms_iou);
        let labels = &self.model.manifest.labels;
        let detections = self
            .candidates
            .iter()
            .map(|c| Detection {
                label: labels
                    .get(c.class as usize)
                    .cloned()
                    .unwrap_or_else(|| format!("class{}", c.class)),
                score: c.score,
                box_xyxy: lb.to_source(c.bbox),
            })
            .collect();
        self.times.inference += t_run;
        self.times.postprocess += t.elapsed();
        Ok(detections)
    }

    /// Letterboxes `frame` into the input tensor without running the model; with
    /// [`Self::run_prepared`] this measures bare inference.
    pub fn prepare(&mut self, frame: &RgbFrame) -> Result<Letterbox, DetectError> {
        let (_, tensor) = self.input.extract_tensor_mut();
        Ok(self.pre.run(frame, tensor)?)
    }

    /// Runs the session once on whatever the input tensor holds, discarding the output.
    pub fn run_prepared(&mut self) -> Result<(), DetectError> {
        self.session
            .run(ort::inputs![&self.input])
            .map(drop)
            .map_err(|e| DetectError::Inference(e.to_string()))
    }
}

fn input_shape(m: &ModelManifest) -> [i64; 4] {
    let (w, h) = (
        i64::from(m.spec.input.width),
        i64::from(m.spec.input.height),
    );
    match m.spec.input.layout {
        Layout::Nchw => [1, 3, h, w],
        Layout::Nhwc => [1, h, w, 3],
    }
}

/// Compares the manifest with the model's declared input and output; every disagreement is
/// reported with the manifest field it concerns.
fn check_shapes(session: &Session, m: &ModelManifest) -> Result<(), DetectError> {
    let spec = &m.spec;
    let mismatch = |message: String| DetectError::ManifestMismatch {
        path: m.model_path.clone(),
        manifest: m.manifest_path.clone(),
        message,
    };
    let describe = |outlets: &[ort::value::Outlet]| {
        outlets
            .iter()
            .map(|o| format!("`{}` {}", o.name(), shape_of(o.dtype())))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut errors = Vec::new();

    match session
        .inputs()
        .iter()
        .find(|o| o.name() == spec.input.name)
    {
        None => errors.push(format!(
            "input.name = {:?}, but the model's inputs are {}",
            spec.input.name,
            describe(session.inputs())
        )),
        Some(o) => {
            let actual = tensor_dims(o.dtype());
            let expected = input_shape(m);
            let fields: [&str; 4] = match spec.input.layout {
                Layout::Nchw => ["batch", "input.layout", "input.height", "input.width"],
                Layout::Nhwc => ["batch", "input.height", "input.width", "input.layout"],
            };
            check_element_type(o.dtype(), "input", &spec.input.name, &mut errors);
            match actual {
                Some(dims) if dims.len() == 4 => {
                    for ((field, &want), &got) in fields.iter().zip(&expected).zip(&dims) {
                        if got >= 0 && got != want {
                            errors.push(format!(
                                "{field} implies input `{}` dimension {want}, but the model's shape is {dims:?} (manifest expects {expected:?})",
                                spec.input.name
                            ));
                        }
                    }
                }
                other => errors.push(format!(
                    "input.layout = {:?} needs a 4-d input, but `{}` has shape {other:?}",
                    spec.input.layout, spec.input.name
                )),
            }
        }
    }

    match session
        .outputs()
        .iter()
        .find(|o| o.name() == spec.output.name)
    {
        None => errors.push(format!(
            "output.name = {:?}, but the model's outputs are {}",
            spec.output.name,
            describe(session.outputs())
        )),
        Some(o) => {
            check_element_type(o.dtype(), "output", &spec.output.name, &mut errors);
            let expected = spec.output.decoder.expected_output_shape(
                spec.input.width,
                spec.input.height,
                m.labels.len(),
            );
            let actual = tensor_dims(o.dtype()).unwrap_or_default();
            let agrees = actual.len() == expected.len()
                && actual.iter().zip(&expected).all(|(&a, &e)| a < 0 || a == e);
            if !agrees {
                errors.push(format!(
                    "output.decoder = {:?} with {} labels (labels = {:?}) and a {}x{} input expects output `{}` of shape {expected:?}, but the model's is {actual:?}",
                    spec.output.decoder,
                    m.labels.len(),
                    spec.labels,
                    spec.input.width,
                    spec.input.height,
                    spec.output.name
                ));
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(mismatch(errors.join("; ")))
    }
}

fn tensor_dims(t: &ValueType) -> Option<Vec<i64>> {
    t.tensor_shape().map(|s| s.iter().copied().collect())
}

fn shape_of(t: &ValueType) -> String {
    tensor_dims(t).map_or_else(|| "(not a tensor)".to_string(), |d| format!("{d:?}"))
}

fn check_element_type(t: &ValueType, what: &str, name: &str, errors: &mut Vec<String>) {
    if let Some(ty) = t.tensor_type()
        && ty != TensorElementType::Float32
    {
        errors.push(format!(
            "{what} `{name}` has element type {ty:?}; only float32 models are supported"
        ));
    }
}
