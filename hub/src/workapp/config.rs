//! [`WorkAppConfig`]: the `[work_app]` section of `hub.toml`.

use std::path::PathBuf;

use serde::Deserialize;

/// Which work app the hub sends through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, strum::IntoStaticStr)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum WorkAppKind {
    /// WeCom (企业微信) or its government edition (政务微信): a self-built app's messages.
    Wecom,
}

/// Defaults, in one place.
pub mod defaults {
    /// WeCom's public API host.
    pub const WECOM_ENDPOINT: &str = "https://qyapi.weixin.qq.com";
    /// One HTTP exchange, connect to last byte.
    pub const TIMEOUT_MS: u64 = 5_000;
    /// Messages waiting to be sent; beyond, a message is dropped (counted, recorded failed).
    pub const QUEUE: usize = 256;
}

/// `[work_app]`: personal messages to people whose roster `channels` include `work_app`.
///
/// No secret here: the app's Secret is read from `secret_file` (mode 0600).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkAppConfig {
    /// `wecom`.
    pub kind: WorkAppKind,
    /// The API's base URL; default WeCom's public one. 政务微信 and tests set their own.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The organisation's id (企业ID, `corpid`).
    pub corp_id: String,
    /// The self-built app's id (`agentid`); its visible range must include the people.
    pub agent_id: u64,
    /// File holding the app's Secret (one line), mode 0600.
    pub secret_file: PathBuf,
    /// Timeout of one request, in ms.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Messages that may wait to be sent.
    #[serde(default = "default_queue")]
    pub queue: usize,
}

fn default_timeout_ms() -> u64 {
    defaults::TIMEOUT_MS
}
fn default_queue() -> usize {
    defaults::QUEUE
}

impl WorkAppConfig {
    /// The base URL the hub calls.
    pub fn endpoint(&self) -> &str {
        self.endpoint.as_deref().unwrap_or(match self.kind {
            WorkAppKind::Wecom => defaults::WECOM_ENDPOINT,
        })
    }

    /// Every problem, each as `field: what is wrong`, in field order.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if let Some(e) = &self.endpoint {
            p.extend(crate::outbound::base_url_problems(e));
        }
        let id_ok = |s: &str| {
            !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric())
        };
        if !id_ok(&self.corp_id) {
            p.push("corp_id: must be 1–64 letters or digits (企业ID, like ww…)".into());
        }
        if self.agent_id == 0 {
            p.push("agent_id: must be the app's AgentId (a positive number)".into());
        }
        if self.secret_file.as_os_str().is_empty() {
            p.push("secret_file: is empty".into());
        }
        if !(100..=60_000).contains(&self.timeout_ms) {
            p.push(format!(
                "timeout_ms: {} is outside 100..=60000",
                self.timeout_ms
            ));
        }
        if !(1..=65_536).contains(&self.queue) {
            p.push(format!("queue: {} is outside 1..=65536", self.queue));
        }
        p
    }
}

/// The app's Secret, read from [`WorkAppConfig::secret_file`]. Its `Debug` never shows it.
pub type WorkAppSecret = crate::secret_file::LineSecret;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minimal_config_gets_the_defaults_and_bad_fields_are_all_named() {
        let c: WorkAppConfig = toml::from_str(
            "kind = \"wecom\"\ncorp_id = \"ww0123abcd\"\nagent_id = 1000002\nsecret_file = \"w.secret\"\n",
        )
        .unwrap();
        assert_eq!(c.endpoint(), "https://qyapi.weixin.qq.com");
        assert_eq!((c.timeout_ms, c.queue), (5_000, 256));
        assert!(c.problems().is_empty(), "{:?}", c.problems());

        let bad: WorkAppConfig = toml::from_str(
            "kind = \"wecom\"\nendpoint = \"ftp://x\"\ncorp_id = \"ww 1\"\nagent_id = 0\n\
             secret_file = \"\"\ntimeout_ms = 5\nqueue = 0\n",
        )
        .unwrap();
        let problems = bad.problems();
        let fields: Vec<&str> = problems
            .iter()
            .map(|p| p.split(':').next().unwrap_or_default())
            .collect();
        assert_eq!(
            fields,
            [
                "endpoint",
                "corp_id",
                "agent_id",
                "secret_file",
                "timeout_ms",
                "queue"
            ]
        );
        assert!(
            toml::from_str::<WorkAppConfig>(
                "kind = \"dingtalk\"\ncorp_id = \"a\"\nagent_id = 1\nsecret_file = \"s\"\n"
            )
            .is_err(),
            "an unknown kind is refused"
        );
        assert!(
            toml::from_str::<WorkAppConfig>(
                "kind = \"wecom\"\ncorp_id = \"a\"\nagent_id = 1\nsecret_file = \"s\"\nsecret = \"x\"\n"
            )
            .is_err(),
            "an unknown key (a secret in the config) is refused"
        );
    }
}
