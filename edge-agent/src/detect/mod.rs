//! Object detection: from encoded image bytes to [`protocol::Detection`]s.
//!
//! Stages, each with one owner: [`manifest`] says what the model is; [`runtime`] loads ONNX
//! Runtime; [`preprocess`] decodes and letterboxes into the input tensor; [`Detector`] owns the
//! session and runs it; [`decode`] turns raw output into candidates; [`nms`] removes duplicates;
//! [`DetectorPool`] runs several detectors over several cameras' latest-frame slots.

pub mod args;
pub mod decode;
pub mod detector;
pub mod manifest;
pub mod nms;
pub mod pool;
pub mod preprocess;
pub mod runtime;

pub use args::ModelArgs;
pub use detector::{DetectError, Detector, DetectorOptions, FrameDetections, Model, StageTimes};
pub use manifest::ModelManifest;
pub use pool::{Detected, DetectorPool, PoolCamera};
