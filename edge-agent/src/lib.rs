//! The edge agent: reads cameras and tag readers, detects objects with ONNX Runtime, applies
//! alert rules and forwards alerts to the hub.
//!
//! Module map (one owner type per stage), bottom layer first. Dependencies point one way, down
//! this list's layers, so a module never reaches up into one that uses it:
//! - [`frame`]: what camera sources produce and the detector consumes: [`frame::RgbFrame`],
//!   [`frame::Frame`], decoding within size limits ([`frame::FrameDecoder`]) and the per-camera
//!   latest-frame slot [`frame::LatestFrame`]. Depends on nothing of the agent.
//! - [`source`]: camera sources behind [`source::FrameSource`] (ffmpeg for RTSP and files, HTTP
//!   snapshots, MJPEG, a pushed-JPEG directory), and every camera kind behind one config enum
//!   and one runtime enum ([`source::SourceConfig`], [`source::AnySource`]): a new kind touches
//!   only `source/`. Depends on `frame`, `backoff`, `secret`.
//! - [`detect`]: the model manifest, the model's preprocessing (letterbox, tensor fill), the
//!   ORT session owner [`detect::Detector`], output decoders, NMS and the
//!   [`detect::DetectorPool`] over the cameras' slots. Depends on `frame`, never on `source`.
//! - [`track`]: stable ids for detections across frames, owned by [`track::Tracker`].
//! - [`rules`]: pure per-camera alert rules and their lifecycle, owned by [`rules::Engine`].
//! - [`tags`]: e-bike RFID tag readers (TCP/UDP/MQTT), sightings and tag rules
//!   ([`tags::TagRules`]).
//! - [`snapshot`]: alert snapshots (boxes drawn, size-bounded JPEG) and the per-camera
//!   [`snapshot::FrameRing`] of recent frames.
//! - [`command`]: signed hub commands: the checks ([`command::CommandGate`]), the persisted
//!   changes ([`command::CommandStore`]) and their re-application at start-up
//!   ([`command::Overrides`], handed the tag rules and cameras' rules, not the agent's config).
//! - [`outbox`]: alerts on disk until the broker acks them, [`outbox::Outbox`] (sled).
//! - [`pipeline`]: the messages and counters between the running stages: [`pipeline::Output`]
//!   (core → delivery), [`pipeline::ApplyCommand`] (uplink → core) and
//!   [`pipeline::AgentStats`] (read by the heartbeat and `/metrics`). Depends on `frame`,
//!   `detect`, `tags`.
//! - [`uplink`]: delivery to the hub's broker (outbox, status, sightings, hub commands).
//!   Depends on `pipeline`, `outbox`, `command`, `tags`; never on `agent`.
//! - [`agent`]: the configuration file ([`agent::AgentConfig`]) and the running pipeline
//!   ([`agent::Agent`], its decisions made in one core task) that wires sources, detector
//!   pool, rules and tag readers together, live or as a deterministic replay. The top of the
//!   library: it uses every module above, and none of them uses it.
//! - [`service`] (`edge-agent run`) and [`metrics`] sit beside `agent` and wire it to the
//!   uplink.
//! - `backoff` (jittered exponential reconnect delays) and [`secret`] (passwords that never
//!   print): shared by the camera sources and the MQTT reader.
//!
//! The test and measurement tools (bench, soak, emit, chaos, tail) are the `edge-tools` crate:
//! the daemon carries only what runs at the intersection.

pub mod agent;
mod backoff;
pub mod command;
pub mod detect;
pub mod frame;
pub mod metrics;
pub mod outbox;
pub mod pipeline;
pub mod rules;
pub mod secret;
pub mod service;
pub mod sled_open;
pub mod snapshot;
pub mod source;
pub mod tags;
pub mod track;
pub mod uplink;
