//! The edge agent: reads cameras and tag readers, detects objects with ONNX Runtime, applies
//! alert rules and forwards alerts to the hub.
//!
//! Module map (one owner type per stage):
//! - [`agent`]: the configuration file ([`agent::AgentConfig`]) and the running pipeline
//!   ([`agent::Agent`]) that wires sources, detector pool, rules and tag readers together, live
//!   or as a deterministic replay.
//! - [`detect`]: the model manifest, preprocessing, the ORT session owner [`detect::Detector`],
//!   output decoders and NMS.
//!
//! The test and measurement tools (bench, soak, emit, chaos, tail) are the `edge-tools` crate:
//! the daemon carries only what runs at the intersection.
//! - [`track`]: stable ids for detections across frames, owned by [`track::Tracker`].
//! - [`snapshot`]: alert snapshots (boxes drawn, size-bounded JPEG) and the per-camera
//!   [`snapshot::FrameRing`] of recent frames.
//! - [`command`]: signed hub commands: the checks ([`command::CommandGate`]), the persisted
//!   changes ([`command::CommandStore`]) and their re-application at start-up
//!   ([`command::Overrides`]).
//! - [`outbox`]: alerts on disk until the broker acks them, [`outbox::Outbox`] (sled).
//! - [`rules`]: pure per-camera alert rules and their lifecycle, owned by [`rules::Engine`].
//! - [`source`]: camera sources behind [`source::FrameSource`] (ffmpeg for RTSP and files, HTTP
//!   snapshots, MJPEG, a pushed-JPEG directory) and the latest-frame slot
//!   [`source::LatestFrame`].
//! - [`tags`]: e-bike RFID tag readers (TCP/UDP/MQTT), sightings and tag rules
//!   ([`tags::TagRules`]).
//! - `backoff` (jittered exponential reconnect delays) and [`secret`] (passwords that never
//!   print): shared by the camera sources and the MQTT reader.

pub mod agent;
mod backoff;
pub mod command;
pub mod detect;
pub mod metrics;
pub mod outbox;
pub mod rules;
pub mod secret;
pub mod service;
pub mod sled_open;
pub mod snapshot;
pub mod source;
pub mod tags;
pub mod track;
pub mod uplink;
