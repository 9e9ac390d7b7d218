//! The edge agent: reads cameras and tag readers, detects objects with ONNX Runtime, applies
//! alert rules and forwards alerts to the hub.
//!
//! Module map (one owner type per stage):
//! - [`detect`]: the model manifest, preprocessing, the ORT session owner [`detect::Detector`],
//!   output decoders and NMS.
//! - [`bench`](mod@bench): the `bench` subcommand's measurement loops.
//! - [`track`]: stable ids for detections across frames, owned by [`track::Tracker`].
//! - [`rules`]: pure per-camera alert rules and their lifecycle, owned by [`rules::Engine`].

pub mod bench;
pub mod detect;
pub mod rules;
pub mod track;
