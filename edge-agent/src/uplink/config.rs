//! [`UplinkConfig`]: how the agent reaches the hub's broker (`[uplink]` in the agent config).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::secret::Secret;

/// Every default of `[uplink]`, in one place.
pub mod defaults {
    /// The MQTT port without TLS.
    pub fn port() -> u16 {
        1883
    }
    /// The topic prefix of the wire protocol.
    pub fn prefix() -> String {
        protocol::topics::DEFAULT_PREFIX.to_string()
    }
    /// Short enough that the broker notices a dead uplink (and publishes the last will) within
    /// a minute, long enough not to matter on a 2G-class link.
    pub fn keep_alive_s() -> u64 {
        30
    }
    /// Publishes awaiting their PUBACK. Loopback drains faster with more; a slow uplink gains
    /// nothing from more than fit in its bandwidth-delay product.
    pub fn inflight() -> u16 {
        200
    }
    /// The status heartbeat (issue: every 10 s).
    pub fn heartbeat_s() -> u64 {
        10
    }
    /// First reconnect delay.
    pub fn reconnect_min_ms() -> u64 {
        500
    }
    /// Longest reconnect delay: a broker back from maintenance is found within this.
    pub fn reconnect_max_ms() -> u64 {
        30_000
    }
    /// How long the first SIGTERM keeps delivering before the agent exits (what is left stays
    /// in the outbox for the next start). Below systemd's default stop timeout of 90 s.
    pub fn shutdown_drain_ms() -> u64 {
        5_000
    }
    /// Sighting batches held while the broker is unreachable (about 30 min at one batch per
    /// 10 s from each of 2 readers).
    pub fn sighting_queue() -> usize {
        400
    }
    /// A command older than this is refused as stale.
    pub fn command_max_age_s() -> u64 {
        300
    }
    /// A command this far ahead of the agent's clock is refused (clock skew allowance).
    pub fn command_max_future_s() -> u64 {
        30
    }
}

/// MQTT protocol version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum MqttVersion {
    /// MQTT 5 (reason codes in PUBACK, receive maximum).
    #[default]
    #[serde(rename = "5")]
    V5,
    /// MQTT 3.1.1, for brokers that do not speak 5.
    #[serde(rename = "3.1.1")]
    V311,
}

/// The uplink to the hub's broker.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UplinkConfig {
    /// Broker host name or address.
    pub host: String,
    /// Broker port (usually 1883, or 8883 with TLS).
    #[serde(default = "defaults::port")]
    pub port: u16,
    /// `"5"` (default) or `"3.1.1"`.
    #[serde(default)]
    pub mqtt_version: MqttVersion,
    /// MQTT client id; default `edge-{site}`. Must be unique on the broker: a second client
    /// with the same id disconnects the first.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Topic prefix (`se/v1`).
    #[serde(default = "defaults::prefix")]
    pub prefix: String,
    /// Login, if the broker requires one.
    #[serde(default)]
    pub username: Option<String>,
    /// Password for `username`.
    #[serde(default)]
    pub password: Option<Secret>,
    /// TLS; absent means plain TCP.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// MQTT keep-alive, seconds.
    #[serde(default = "defaults::keep_alive_s")]
    pub keep_alive_s: u64,
    /// Publishes in flight (awaiting PUBACK) at once.
    #[serde(default = "defaults::inflight")]
    pub inflight: u16,
    /// Status heartbeat period, seconds.
    #[serde(default = "defaults::heartbeat_s")]
    pub heartbeat_s: u64,
    /// Reconnect back-off: first delay, ms (doubling, jittered).
    #[serde(default = "defaults::reconnect_min_ms")]
    pub reconnect_min_ms: u64,
    /// Reconnect back-off: longest delay, ms.
    #[serde(default = "defaults::reconnect_max_ms")]
    pub reconnect_max_ms: u64,
    /// On the first SIGTERM, how long to keep delivering the outbox before exiting, ms.
    #[serde(default = "defaults::shutdown_drain_ms")]
    pub shutdown_drain_ms: u64,
    /// Sighting batches held in memory while disconnected; when full the oldest is dropped
    /// (counted). Sightings feed trajectories, not alerts, so they are not in the outbox.
    #[serde(default = "defaults::sighting_queue")]
    pub sighting_queue: usize,
    /// Signed commands from the hub; absent means the agent does not subscribe to them.
    #[serde(default)]
    pub commands: Option<CommandsConfig>,
}

/// TLS to the broker (rustls). The broker's certificate must name `host`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of the CA certificate(s) the broker's certificate must chain to.
    pub ca_file: PathBuf,
    /// PEM client certificate (chain), for brokers that require client authentication.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

/// Verification of hub commands.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandsConfig {
    /// The hub's Ed25519 public key, base64 of its 32 bytes.
    pub public_key: String,
    /// Commands older than this are refused as stale, seconds.
    #[serde(default = "defaults::command_max_age_s")]
    pub max_age_s: u64,
    /// Commands dated further ahead than this are refused, seconds.
    #[serde(default = "defaults::command_max_future_s")]
    pub max_future_s: u64,
}

impl UplinkConfig {
    /// A config for `host:port` with every default (tests, `emit`).
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
            mqtt_version: MqttVersion::default(),
            client_id: None,
            prefix: defaults::prefix(),
            username: None,
            password: None,
            tls: None,
            keep_alive_s: defaults::keep_alive_s(),
            inflight: defaults::inflight(),
            heartbeat_s: defaults::heartbeat_s(),
            reconnect_min_ms: defaults::reconnect_min_ms(),
            reconnect_max_ms: defaults::reconnect_max_ms(),
            shutdown_drain_ms: defaults::shutdown_drain_ms(),
            sighting_queue: defaults::sighting_queue(),
            commands: None,
        }
    }

    /// The client id: configured, else `edge-{site}`.
    pub fn client_id(&self, site: &str) -> String {
        self.client_id
            .clone()
            .unwrap_or_else(|| format!("edge-{site}"))
    }

    /// Relative TLS file paths become relative to the config file's directory.
    pub fn resolve_paths(&mut self, base: &Path) {
        if let Some(tls) = &mut self.tls {
            for p in [
                Some(&mut tls.ca_file),
                tls.cert_file.as_mut(),
                tls.key_file.as_mut(),
            ]
            .into_iter()
            .flatten()
            {
                if p.is_relative() {
                    *p = base.join(&*p);
                }
            }
        }
    }

    /// Every problem, each prefixed with its field (`tls.ca_file: ...`). Empty when usable.
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.host.trim().is_empty() {
            errors.push("host: must not be empty".into());
        } else if self.host.contains("://") || self.host.chars().any(char::is_whitespace) {
            errors.push(format!(
                "host: give a host name or address, not a URL, got {:?}",
                self.host
            ));
        }
        if self.port == 0 {
            errors.push("port: must be within 1..=65535".into());
        }
        if let Some(id) = &self.client_id
            && (id.is_empty() || id.len() > 128 || id.chars().any(|c| c.is_control() || c == ' '))
        {
            errors.push(format!(
                "client_id: 1..=128 characters without spaces or control characters, got {id:?}"
            ));
        }
        if let Err(e) = protocol::Topics::new(&self.prefix) {
            errors.push(format!("prefix: {e}"));
        }
        if self.password.is_some() && self.username.is_none() {
            errors.push("password: given without a username".into());
        }
        if !(5..=600).contains(&self.keep_alive_s) {
            errors.push(format!(
                "keep_alive_s: must be within [5, 600], got {}",
                self.keep_alive_s
            ));
        }
        if !(1..=10_000).contains(&self.inflight) {
            errors.push(format!(
                "inflight: must be within [1, 10000], got {}",
                self.inflight
            ));
        }
        if !(1..=3_600).contains(&self.heartbeat_s) {
            errors.push(format!(
                "heartbeat_s: must be within [1, 3600], got {}",
                self.heartbeat_s
            ));
        }
        if self.reconnect_min_ms < 10 || self.reconnect_max_ms < self.reconnect_min_ms {
            errors.push(format!(
                "reconnect_min_ms/reconnect_max_ms: need 10 <= min <= max, got {} and {}",
                self.reconnect_min_ms, self.reconnect_max_ms
            ));
        }
        if self.shutdown_drain_ms > 60_000 {
            errors.push(format!(
                "shutdown_drain_ms: at most 60000 (systemd stops the unit after 90 s), got {}",
                self.shutdown_drain_ms
            ));
        }
        if self.sighting_queue == 0 {
            errors.push("sighting_queue: must be at least 1".into());
        }
        if let Some(tls) = &self.tls {
            if !tls.ca_file.is_file() {
                errors.push(format!(
                    "tls.ca_file: {} is not a file",
                    tls.ca_file.display()
                ));
            }
            match (&tls.cert_file, &tls.key_file) {
                (Some(c), Some(k)) => {
                    for (field, p) in [("tls.cert_file", c), ("tls.key_file", k)] {
                        if !p.is_file() {
                            errors.push(format!("{field}: {} is not a file", p.display()));
                        }
                    }
                }
                (Some(_), None) => errors.push("tls.key_file: needed with tls.cert_file".into()),
                (None, Some(_)) => errors.push("tls.cert_file: needed with tls.key_file".into()),
                (None, None) => {}
            }
        }
        if let Some(c) = &self.commands {
            if let Err(e) = protocol::command::parse_verifying_key(&c.public_key) {
                errors.push(format!("commands.public_key: {e}"));
            }
            if c.max_age_s == 0 {
                errors.push("commands.max_age_s: must be at least 1".into());
            }
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_unknown_keys() {
        let c: UplinkConfig = toml::from_str("host = \"hub.local\"").unwrap();
        assert_eq!(c, UplinkConfig::new("hub.local", 1883));
        assert!(c.validate().is_empty(), "{:?}", c.validate());
        assert_eq!(c.client_id("s1"), "edge-s1");
        let v311: UplinkConfig = toml::from_str("host = \"h\"\nmqtt_version = \"3.1.1\"").unwrap();
        assert_eq!(v311.mqtt_version, MqttVersion::V311);
        let err = toml::from_str::<UplinkConfig>("host = \"h\"\nhots = 1").unwrap_err();
        assert!(err.to_string().contains("hots"), "{err}");
    }

    #[test]
    fn every_problem_is_listed() {
        let c: UplinkConfig = toml::from_str(
            r#"
            host = "mqtt://hub"
            port = 0
            prefix = "se/#"
            password = "x"
            inflight = 0
            [tls]
            ca_file = "/nonexistent/ca.pem"
            cert_file = "/nonexistent/c.pem"
            [commands]
            public_key = "not base64!"
            "#,
        )
        .unwrap();
        let errors = c.validate();
        for field in [
            "host:",
            "port:",
            "prefix:",
            "password:",
            "inflight:",
            "tls.ca_file:",
            "tls.key_file:",
            "commands.public_key:",
        ] {
            assert!(
                errors.iter().any(|e| e.starts_with(field)),
                "{field} missing in {errors:?}"
            );
        }
    }
}
