//! The edge agent: reads cameras and tag readers, detects objects with ONNX Runtime, applies
//! alert rules and forwards alerts to the hub.
//!
//! Module map (one owner type per stage):
//! - [`detect`]: the model manifest, preprocessing, the ORT session owner [`detect::Detector`],
//!   output decoders and NMS.
//! - [`bench`]: the `bench` subcommand's measurement loops.

pub mod bench;
pub mod detect;
