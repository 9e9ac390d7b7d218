//! [`OutboxConfig`]: the outbox's bounds.

use serde::Deserialize;

/// Smallest accepted `max_bytes`: below this not even a few snapshot alerts fit.
const MIN_MAX_BYTES: u64 = 64 << 10;
/// Smallest accepted `ttl_ms`.
const MIN_TTL_MS: u64 = 1_000;
/// Smallest accepted `held_max_bytes`: room for a few snapshot alerts while the disk is full.
const MIN_HELD_MAX_BYTES: u64 = 64 << 10;
/// Largest accepted `held_max_bytes`: held alerts live in RAM on a small edge box.
const MAX_HELD_MAX_BYTES: u64 = 1 << 30;

/// Bounds of the durable alert outbox. Unknown keys are rejected.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutboxConfig {
    /// Cap on the stored alerts, in bytes of key plus record (header and JSON; sled's own
    /// overhead is not counted). When a new alert does not fit, the full-policy evicts the
    /// lowest severity first, oldest first within a severity; an alert of lower severity than
    /// everything stored is itself dropped. Both are counted.
    pub max_bytes: u64,
    /// An alert not acknowledged by the broker this long after it was stored is dropped and
    /// counted as expired: after a week the hub's people cannot act on it any more.
    pub ttl_ms: u64,
    /// Cap on the alerts held in memory because appending them failed (disk full, I/O error),
    /// in bytes of their JSON. They are appended again, oldest first, once the disk takes them;
    /// when this (or `held_max_alerts`) is reached the same full-policy applies as on disk.
    pub held_max_bytes: u64,
    /// Cap on the number of alerts held in memory (see `held_max_bytes`).
    pub held_max_alerts: usize,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            max_bytes: 256 << 20,
            ttl_ms: 7 * 24 * 3_600_000,
            held_max_bytes: 16 << 20,
            held_max_alerts: 10_000,
        }
    }
}

impl OutboxConfig {
    /// Every problem with this configuration, each prefixed with its field name. Empty when
    /// usable.
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.max_bytes < MIN_MAX_BYTES {
            errors.push(format!(
                "max_bytes: must be at least {MIN_MAX_BYTES}, got {}",
                self.max_bytes
            ));
        }
        if self.ttl_ms < MIN_TTL_MS {
            errors.push(format!(
                "ttl_ms: must be at least {MIN_TTL_MS}, got {}",
                self.ttl_ms
            ));
        }
        if !(MIN_HELD_MAX_BYTES..=MAX_HELD_MAX_BYTES).contains(&self.held_max_bytes) {
            errors.push(format!(
                "held_max_bytes: must be between {MIN_HELD_MAX_BYTES} and {MAX_HELD_MAX_BYTES}, \
                 got {}",
                self.held_max_bytes
            ));
        }
        if self.held_max_alerts == 0 {
            errors.push("held_max_alerts: must be at least 1, got 0".to_string());
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_unknown_keys_are_rejected() {
        assert!(OutboxConfig::default().validate().is_empty());
        let c: OutboxConfig = toml::from_str("ttl_ms = 60000").unwrap();
        assert_eq!(c.max_bytes, 256 << 20);
        assert_eq!(c.ttl_ms, 60_000);
        assert_eq!(c.held_max_bytes, 16 << 20);
        assert_eq!(c.held_max_alerts, 10_000);
        let c: OutboxConfig =
            toml::from_str("held_max_bytes = 1048576\nheld_max_alerts = 5").unwrap();
        assert_eq!((c.held_max_bytes, c.held_max_alerts), (1 << 20, 5));
        let err = toml::from_str::<OutboxConfig>("max_byte = 1").unwrap_err();
        assert!(err.to_string().contains("max_byte"), "{err}");
    }

    #[test]
    fn every_bad_field_is_reported() {
        let c = OutboxConfig {
            max_bytes: 10,
            ttl_ms: 0,
            held_max_bytes: 2 << 30,
            held_max_alerts: 0,
        };
        let errors = c.validate();
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(errors[0].starts_with("max_bytes:"));
        assert!(errors[1].starts_with("ttl_ms:"));
        assert!(errors[2].starts_with("held_max_bytes:"));
        assert!(errors[3].starts_with("held_max_alerts:"));
    }
}
