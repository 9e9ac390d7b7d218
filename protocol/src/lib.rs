//! Wire types shared by `edge-agent` and `hub`.
//!
//! Everything that crosses the MQTT link is defined here and nowhere else, so both daemons agree
//! on the format by construction:
//!
//! - [`topics`]: topic names under a configurable prefix ([`Topics`]), and [`validate_id`] for
//!   the ids that go into topic levels;
//! - [`alert`]: [`Alert`] and its parts, with [`Detection`];
//! - [`status`]: [`Status`] (retained; the last will is `offline` without [`Health`]);
//! - [`sighting`]: [`SightingBatch`] of tag sightings;
//! - [`command`]: hub → agent [`Command`]s, carried as an Ed25519-signed [`SignedCommand`], and
//!   the agent's [`CommandReply`];
//! - [`limits`]: payload size limits both sides enforce;
//! - [`validate`]: the checks beyond the types (every problem listed at once) and the
//!   `decode_*` functions receivers use: size limit, schema version, JSON with the path of any
//!   error, then validation;
//! - [`demo`]: the published demo signing key, so the daemons can refuse it;
//! - [`time`]: [`UtcMillis`] (RFC 3339 with milliseconds on the wire).
//!
//! Senders should call `validate` before publishing: what fails it is refused by the receiver
//! (and JSON cannot carry NaN or infinity, which serde_json writes as `null`).
//!
//! The exact JSON of each message is pinned by the golden files in `tests/golden/`.

use serde::{Deserialize, Serialize};

pub mod alert;
pub mod command;
pub mod demo;
pub mod limits;
pub mod sighting;
pub mod status;
pub mod time;
pub mod topics;
pub mod validate;

pub use alert::{Alert, AlertKind, AlertPhase, AlertSource, Severity};
pub use command::{
    Command, CommandBody, CommandError, CommandReply, ReplyOutcome, RuleParams, SignedCommand,
    encode_signing_key, encode_verifying_key, parse_verifying_key, signing_key_from_base64,
};
/// The key types of command signing, so users need not depend on `ed25519-dalek` themselves.
pub use ed25519_dalek::{SigningKey, VerifyingKey};
pub use limits::*;
pub use sighting::{SightingBatch, TagKind, TagSighting};
pub use status::{
    AgentState, CameraHealth, Health, OutboxHealth, ReaderHealth, SeverityCounts, Status,
    UplinkHealth,
};
pub use time::UtcMillis;
pub use topics::{DEFAULT_PREFIX, TopicError, TopicKind, Topics, validate_id};
pub use validate::{
    DecodeError, ValidationError, decode_alert, decode_command_reply, decode_sightings,
    decode_status,
};

/// Version of the wire schema. Bumped on any incompatible change; receivers refuse versions they
/// do not know.
pub const SCHEMA_VERSION: u32 = 1;

/// One object found in a frame, in the source image's pixel coordinates.
///
/// The JSON shape (`label`, `score`, `box_xyxy`) is the one of the model reference files, so a
/// detection can be compared with a reference implementation's output field for field.
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    /// Class label from the model's label file (`person`, `car`, ...).
    pub label: String,
    /// Confidence in `0..=1` (objectness times class probability for YOLOX/YOLOv5).
    #[cfg_attr(feature = "utoipa", schema(minimum = 0, maximum = 1))]
    pub score: f32,
    /// `[x1, y1, x2, y2]`, clipped to the image.
    #[cfg_attr(feature = "utoipa", schema(min_items = 4, max_items = 4))]
    pub box_xyxy: [f32; 4],
}

impl Detection {
    /// Area of the box in square pixels.
    pub fn area(&self) -> f32 {
        let [x1, y1, x2, y2] = self.box_xyxy;
        (x2 - x1).max(0.0) * (y2 - y1).max(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection_serialises_in_the_reference_shape() {
        let d = Detection {
            label: "person".into(),
            score: 0.5,
            box_xyxy: [1.0, 2.0, 3.0, 4.0],
        };
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(
            json,
            r#"{"label":"person","score":0.5,"box_xyxy":[1.0,2.0,3.0,4.0]}"#
        );
        assert_eq!(d.area(), 4.0);
    }
}
