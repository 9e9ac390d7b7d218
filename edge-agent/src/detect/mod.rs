//! Object detection: from encoded image bytes to [`protocol::Detection`]s.
//!
//! Stages, each with one owner: [`manifest`] says what the model is; [`runtime`] loads ONNX
//! Runtime; [`preprocess`] letterboxes a decoded frame into the input tensor; [`Detector`] owns
//! the session and runs it; [`decode`] turns raw output into candidates; [`nms`] removes
//! duplicates; [`DetectorPool`] runs several detectors over several cameras' latest-frame slots.
//!
//! Frames, their decoding from JPEG/PNG and the latest-frame slots come from `crate::frame`,
//! which the camera sources share; this module never uses `crate::source`.

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
