//! Wire types shared by `edge-agent` and `hub`.
//!
//! Everything that crosses the MQTT link is defined here and nowhere else, so both daemons agree
//! on the format by construction: [`Detection`], [`alert::Alert`] and its parts, and
//! [`time::UtcMillis`] (RFC 3339 with milliseconds on the wire). Status, sighting batches,
//! commands and topic names come with the uplink.

use serde::{Deserialize, Serialize};

pub mod alert;
pub mod time;

pub use alert::{Alert, AlertKind, AlertPhase, AlertSource, Severity};
pub use time::UtcMillis;

/// Version of the wire schema. Bumped on any incompatible change; receivers refuse versions they
/// do not know.
pub const SCHEMA_VERSION: u32 = 1;

/// One object found in a frame, in the source image's pixel coordinates.
///
/// The JSON shape (`label`, `score`, `box_xyxy`) is the one of the model reference files, so a
/// detection can be compared with a reference implementation's output field for field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    /// Class label from the model's label file (`person`, `car`, ...).
    pub label: String,
    /// Confidence in `0..=1` (objectness times class probability for YOLOX/YOLOv5).
    pub score: f32,
    /// `[x1, y1, x2, y2]`, clipped to the image.
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
