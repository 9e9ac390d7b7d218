//! Test and measurement tools around the edge agent, kept out of the daemon that runs at the
//! intersection. One binary, `edge-tools`:
//!
//! - [`bench`](mod@bench): bare ONNX Runtime and whole-pipeline throughput on real frames.
//! - [`soak`]: N cameras playing the sample clip live for minutes: CPU per camera, memory.
//! - [`emit`]: synthetic alerts ([`testkit::emitted`]) through the agent's real outbox and
//!   uplink, resuming after a kill; the agent under test in [`chaos`].
//! - [`chaos`]: no alert lost through broker restarts and agent kills, against mosquitto.
//! - [`tail`]: what agents publish on a broker, one line each, as the hub will see it.

pub mod bench;
pub mod chaos;
pub mod emit;
pub mod soak;
pub mod tail;
