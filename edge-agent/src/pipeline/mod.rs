//! The messages and counters that pass between the pipeline's stages, so that the stages need
//! not know each other.
//!
//! The agent core sends [`Output`] (alerts, sighting batches) to whoever delivers them (the
//! uplink, a replay's writer, a tool); the uplink hands verified hub commands back to the core
//! as [`ApplyCommand`]; the core's counters ([`AgentStats`]) are read by the status heartbeat
//! and `/metrics`. With these types here, `agent` (which builds and runs the core) and
//! `uplink` (which delivers) depend on this module, and `uplink` does not depend on `agent`.

mod stats;

use protocol::Alert;
use protocol::command::Command;
use tokio::sync::mpsc;

pub use stats::{AgentStats, CameraSnapshot, CameraStats};

use crate::tags::Sighting;

/// What the agent hands on.
#[derive(Debug, Clone)]
pub enum Output {
    /// An alert, to be kept until delivered.
    Alert(Box<Alert>),
    /// A batch of tag sightings for the hub's trajectory search.
    Sightings(Vec<Sighting>),
}

/// A command and what the core made of it: `Err` with the reason when it refused the change.
pub type Applied = (Command, Result<(), String>);

/// A verified hub command for the agent core to apply; the core answers on `done`.
#[derive(Debug)]
pub struct ApplyCommand {
    /// The command (already checked by the gate).
    pub command: Command,
    /// Where the core sends the outcome: `Err` with the reason when it refused the change (the
    /// core's state is then unchanged).
    pub done: mpsc::Sender<Applied>,
}
