//! Size limits of the wire messages, shared so that a sender never produces what the receiver
//! refuses and the MQTT client and broker are configured to carry the largest message.
//!
//! Receivers check the payload size before parsing, so a hostile or broken peer cannot make
//! them allocate more than these.

/// Largest alert payload (the whole JSON, snapshot included).
pub const MAX_ALERT_BYTES: usize = 1024 * 1024;
/// Largest snapshot JPEG, counted in decoded bytes (base64 adds a third on the wire, which
/// still fits [`MAX_ALERT_BYTES`] with room for the rest of the alert).
pub const MAX_SNAPSHOT_JPEG_BYTES: usize = 512 * 1024;
/// Most detections carried by one alert.
pub const MAX_DETECTIONS: usize = 256;
/// Largest status payload.
pub const MAX_STATUS_BYTES: usize = 64 * 1024;
/// Largest sighting batch payload.
pub const MAX_SIGHTING_BATCH_BYTES: usize = 512 * 1024;
/// Most sightings in one batch.
pub const MAX_SIGHTINGS_PER_BATCH: usize = 2000;
/// Largest signed command payload (and largest command text inside it).
pub const MAX_COMMAND_BYTES: usize = 64 * 1024;
/// MQTT packet size both sides must allow: the largest payload plus topic and header room.
pub const MAX_PACKET_BYTES: usize = MAX_ALERT_BYTES + 4096;

// The largest snapshot, base64-encoded, must fit in the largest alert with room to spare.
const _: () = assert!(MAX_SNAPSHOT_JPEG_BYTES.div_ceil(3) * 4 + 64 * 1024 <= MAX_ALERT_BYTES);
