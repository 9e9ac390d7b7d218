//! [`OutboxConfig`]: the outbox's bounds.

use serde::Deserialize;

/// Smallest accepted `max_bytes`: below this not even a few snapshot alerts fit.
const MIN_MAX_BYTES: u64 = 64 << 10;
/// Smallest accepted `ttl_ms`.
const MIN_TTL_MS: u64 = 1_000;

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
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            max_bytes: 256 << 20,
            ttl_ms: 7 * 24 * 3_600_000,
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
        let err = toml::from_str::<OutboxConfig>("max_byte = 1").unwrap_err();
        assert!(err.to_string().contains("max_byte"), "{err}");
    }

    #[test]
    fn every_bad_field_is_reported() {
        let c = OutboxConfig {
            max_bytes: 10,
            ttl_ms: 0,
        };
        let errors = c.validate();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].starts_with("max_bytes:"));
        assert!(errors[1].starts_with("ttl_ms:"));
    }
}
