//! [`WebhookConfig`]: one group-chat bot, as the operator writes it; [`validate_all`] and
//! [`WebhookConfig::validate`] report every problem at once, each with its path.
//!
//! ```toml
//! [[webhooks]]
//! id = "jiedao-duty"            # names the bot in logs and reports
//! kind = "dingtalk"             # wecom | dingtalk | feishu | generic
//! url = "https://oapi.dingtalk.com/robot/send?access_token=…"
//! secret = "SEC…"               # 加签; dingtalk, feishu and generic only
//! mention_phones = true         # @ the responsible people by phone (not feishu)
//! timeout_ms = 5000             # per attempt
//! max_attempts = 4
//! backoff_base_ms = 1000
//! backoff_cap_ms = 30000
//! ```

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Which service a webhook URL belongs to; decides the body, the signature and how answers
/// are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookKind {
    /// WeCom group robot (企业微信群机器人). No signatures: the key in the URL is the only
    /// credential.
    WeCom,
    /// DingTalk custom robot (钉钉自定义机器人); optional 加签 in the URL's query.
    DingTalk,
    /// Feishu / Lark custom bot (飞书自定义机器人); optional 签名校验 in the body.
    Feishu,
    /// Our own JSON for any HTTP endpoint; optional `X-Signature` header.
    Generic,
}

impl WebhookKind {
    /// The config spelling (`wecom`, `dingtalk`, `feishu`, `generic`), also used in logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::WeCom => "wecom",
            Self::DingTalk => "dingtalk",
            Self::Feishu => "feishu",
            Self::Generic => "generic",
        }
    }

    /// Whether requests to this kind can carry a signature made with a secret.
    pub fn signs(self) -> bool {
        !matches!(self, Self::WeCom)
    }

    /// Whether this kind can @ people by their phone number. Feishu custom bots mention only
    /// by open_id / user_id, which the roster does not have.
    pub fn mentions_phones(self) -> bool {
        !matches!(self, Self::Feishu)
    }
}

impl fmt::Display for WebhookKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Defaults, in one place.
pub mod defaults {
    /// Per attempt: connect, send and read the answer. The bots answer in well under a second;
    /// five leaves room for a slow uplink without holding a case's notice for long.
    pub const TIMEOUT_MS: u64 = 5_000;
    /// One try and three retries.
    pub const MAX_ATTEMPTS: u32 = 4;
    /// First pause between attempts, before jitter.
    pub const BACKOFF_BASE_MS: u64 = 1_000;
    /// Longest pause between attempts. DingTalk throttles a robot for ten minutes after 20
    /// messages in a minute; waiting that out is the caller's business, not one send's.
    pub const BACKOFF_CAP_MS: u64 = 30_000;
}

/// Bounds the validation enforces.
pub mod limits {
    /// `timeout_ms` range.
    pub const TIMEOUT_MS: std::ops::RangeInclusive<u64> = 100..=60_000;
    /// `max_attempts` range.
    pub const MAX_ATTEMPTS: std::ops::RangeInclusive<u32> = 1..=10;
    /// `backoff_base_ms` range.
    pub const BACKOFF_BASE_MS: std::ops::RangeInclusive<u64> = 1..=60_000;
    /// Upper bound of `backoff_cap_ms` (its lower bound is `backoff_base_ms`).
    pub const BACKOFF_CAP_MS_MAX: u64 = 600_000;
    /// Longest `id`.
    pub const ID_LEN: usize = 64;
}

/// One group-chat bot. Unknown keys are rejected, so a misspelt `secert` is an error rather
/// than an unsigned bot.
///
/// `Debug` hides the secret and the URL's query (the bot's key or access token).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Names the bot in logs, reports and config errors; letters, digits, `-`, `_`, `.`.
    pub id: String,
    /// The service.
    pub kind: WebhookKind,
    /// The webhook URL as the service shows it, key or access token included; `http` or
    /// `https`.
    pub url: String,
    /// The signing secret (DingTalk 加签 `SEC…`, Feishu 签名校验, or ours for `generic`).
    /// `None` sends unsigned requests. WeCom robots do not sign, so a secret there is an error
    /// rather than silently ignored.
    #[serde(default)]
    pub secret: Option<String>,
    /// @ the message's responsible people by phone number. Not available for Feishu.
    #[serde(default)]
    pub mention_phones: bool,
    /// Timeout of one attempt, in ms.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Attempts in all, the first included.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// First back-off between attempts, in ms; doubles per retry, jittered down by up to half.
    #[serde(default = "default_backoff_base_ms")]
    pub backoff_base_ms: u64,
    /// Longest back-off between attempts, in ms.
    #[serde(default = "default_backoff_cap_ms")]
    pub backoff_cap_ms: u64,
}

fn default_timeout_ms() -> u64 {
    defaults::TIMEOUT_MS
}
fn default_max_attempts() -> u32 {
    defaults::MAX_ATTEMPTS
}
fn default_backoff_base_ms() -> u64 {
    defaults::BACKOFF_BASE_MS
}
fn default_backoff_cap_ms() -> u64 {
    defaults::BACKOFF_CAP_MS
}

impl WebhookConfig {
    /// A config with the defaults: no secret, no mentions.
    pub fn new(id: impl Into<String>, kind: WebhookKind, url: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            kind,
            url: url.into(),
            secret: None,
            mention_phones: false,
            timeout_ms: defaults::TIMEOUT_MS,
            max_attempts: defaults::MAX_ATTEMPTS,
            backoff_base_ms: defaults::BACKOFF_BASE_MS,
            backoff_cap_ms: defaults::BACKOFF_CAP_MS,
        }
    }

    /// Every problem with this config; paths are its field names (`url`, `secret`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let issues = self.issues("");
        if issues.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { issues })
        }
    }

    /// The problems, each path prefixed with `prefix` (`webhooks[2].`).
    fn issues(&self, prefix: &str) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        let mut problem = |field: &str, message: String| {
            issues.push(ConfigIssue {
                path: format!("{prefix}{field}"),
                message,
            });
        };

        if self.id.is_empty() {
            problem("id", "is empty".into());
        } else if self.id.len() > limits::ID_LEN {
            problem("id", format!("is longer than {} bytes", limits::ID_LEN));
        } else if let Some(c) = self
            .id
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        {
            problem(
                "id",
                format!("has {c:?}; use letters, digits, '-', '_' and '.' (it goes into logs)"),
            );
        }

        // Parsed only to check it: render() appends the DingTalk signature to the text as the
        // operator wrote it, and that must not depend on how a URL library re-serialises it.
        match reqwest::Url::parse(&self.url) {
            Err(e) => problem("url", format!("is not a URL: {e}")),
            Ok(url) => {
                if !matches!(url.scheme(), "http" | "https") {
                    problem(
                        "url",
                        format!("has scheme {:?}; use https (or http)", url.scheme()),
                    );
                }
                if url.host_str().is_none_or(str::is_empty) {
                    problem("url", "has no host".into());
                }
                if url.fragment().is_some() {
                    // A signature appended after `#…` would never reach the server.
                    problem("url", "has a '#' fragment; remove it".into());
                }
                if self.kind == WebhookKind::DingTalk && self.secret.is_some() {
                    let signed = url
                        .query_pairs()
                        .any(|(k, _)| k == "timestamp" || k == "sign");
                    if signed {
                        problem(
                            "url",
                            "already has a timestamp or sign parameter; give the URL without \
                             them, the hub signs every request"
                                .into(),
                        );
                    }
                }
            }
        }

        match &self.secret {
            Some(_) if !self.kind.signs() => problem(
                "secret",
                format!(
                    "{} robots do not sign requests (the key in the URL is the only \
                     credential); remove it",
                    self.kind
                ),
            ),
            Some(s) if s.trim().is_empty() => {
                problem(
                    "secret",
                    "is empty; give the secret or remove the key".into(),
                );
            }
            Some(s) if s.trim() != s => {
                problem("secret", "has leading or trailing spaces".into());
            }
            _ => {}
        }

        if self.mention_phones && !self.kind.mentions_phones() {
            problem(
                "mention_phones",
                format!(
                    "{} bots cannot mention people by phone number (only by open_id); set it \
                     to false",
                    self.kind
                ),
            );
        }

        if !limits::TIMEOUT_MS.contains(&self.timeout_ms) {
            problem(
                "timeout_ms",
                format!(
                    "is {}; must be {}..={}",
                    self.timeout_ms,
                    limits::TIMEOUT_MS.start(),
                    limits::TIMEOUT_MS.end()
                ),
            );
        }
        if !limits::MAX_ATTEMPTS.contains(&self.max_attempts) {
            problem(
                "max_attempts",
                format!(
                    "is {}; must be {}..={}",
                    self.max_attempts,
                    limits::MAX_ATTEMPTS.start(),
                    limits::MAX_ATTEMPTS.end()
                ),
            );
        }
        if !limits::BACKOFF_BASE_MS.contains(&self.backoff_base_ms) {
            problem(
                "backoff_base_ms",
                format!(
                    "is {}; must be {}..={}",
                    self.backoff_base_ms,
                    limits::BACKOFF_BASE_MS.start(),
                    limits::BACKOFF_BASE_MS.end()
                ),
            );
        }
        if self.backoff_cap_ms < self.backoff_base_ms
            || self.backoff_cap_ms > limits::BACKOFF_CAP_MS_MAX
        {
            problem(
                "backoff_cap_ms",
                format!(
                    "is {}; must be backoff_base_ms ({})..={}",
                    self.backoff_cap_ms,
                    self.backoff_base_ms,
                    limits::BACKOFF_CAP_MS_MAX
                ),
            );
        }
        issues
    }
}

impl fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("url", &redact_url(&self.url))
            .field("secret", &self.secret.as_ref().map(|_| "***"))
            .field("mention_phones", &self.mention_phones)
            .field("timeout_ms", &self.timeout_ms)
            .field("max_attempts", &self.max_attempts)
            .field("backoff_base_ms", &self.backoff_base_ms)
            .field("backoff_cap_ms", &self.backoff_cap_ms)
            .finish()
    }
}

/// A URL with its query replaced by `***`: the bots' keys and tokens live in the query.
pub(crate) fn redact_url(url: &str) -> String {
    match url.split_once('?') {
        Some((base, _)) => format!("{base}?***"),
        None => url.to_string(),
    }
}

/// Every problem of a list of webhooks (paths `webhooks[i].field`), duplicate ids included.
pub fn validate_all(configs: &[WebhookConfig]) -> Result<(), ConfigError> {
    let mut issues = Vec::new();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, cfg) in configs.iter().enumerate() {
        issues.extend(cfg.issues(&format!("webhooks[{i}].")));
        if cfg.id.is_empty() {
            continue;
        }
        if let Some(first) = seen.insert(&cfg.id, i) {
            issues.push(ConfigIssue {
                path: format!("webhooks[{i}].id"),
                message: format!("{:?} is already the id of webhooks[{first}]", cfg.id),
            });
        }
    }
    if issues.is_empty() {
        Ok(())
    } else {
        Err(ConfigError { issues })
    }
}

/// One problem in a webhook config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigIssue {
    /// Where: `url`, or `webhooks[2].url` from [`validate_all`].
    pub path: String,
    /// What is wrong and, where it helps, what to do.
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every problem found in webhook configs, in field order.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The problems; never empty.
    pub issues: Vec<ConfigIssue>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.issues.len();
        write!(
            f,
            "{n} problem{} in the webhook config:",
            if n == 1 { "" } else { "s" }
        )?;
        for issue in &self.issues {
            write!(f, "\n  {issue}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(e: &ConfigError) -> Vec<&str> {
        e.issues.iter().map(|i| i.path.as_str()).collect()
    }

    #[test]
    fn a_config_with_only_the_required_keys_gets_the_defaults() {
        let cfg: WebhookConfig = serde_json::from_str(
            r#"{"id":"duty","kind":"dingtalk","url":"https://oapi.dingtalk.com/robot/send?access_token=t"}"#,
        )
        .unwrap();
        assert_eq!(
            cfg,
            WebhookConfig::new(
                "duty",
                WebhookKind::DingTalk,
                "https://oapi.dingtalk.com/robot/send?access_token=t"
            )
        );
        cfg.validate().unwrap();
    }

    #[test]
    fn kinds_are_spelt_in_lower_case() {
        for (text, kind) in [
            ("wecom", WebhookKind::WeCom),
            ("dingtalk", WebhookKind::DingTalk),
            ("feishu", WebhookKind::Feishu),
            ("generic", WebhookKind::Generic),
        ] {
            let parsed: WebhookKind = serde_json::from_str(&format!("{text:?}")).unwrap();
            assert_eq!(parsed, kind);
            assert_eq!(kind.name(), text);
        }
        assert!(serde_json::from_str::<WebhookKind>(r#""DingTalk""#).is_err());
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let e = serde_json::from_str::<WebhookConfig>(
            r#"{"id":"a","kind":"feishu","url":"https://x","secert":"s"}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("secert"), "{e}");
    }

    #[test]
    fn validation_lists_every_problem_at_once() {
        let mut cfg = WebhookConfig::new("bad id", WebhookKind::WeCom, "ftp://example.com/x#y");
        cfg.secret = Some("s".into());
        cfg.timeout_ms = 0;
        cfg.max_attempts = 0;
        cfg.backoff_base_ms = 0;
        cfg.backoff_cap_ms = 10_000_000;
        let e = cfg.validate().unwrap_err();
        assert_eq!(
            paths(&e),
            [
                "id",
                "url",
                "url",
                "secret",
                "timeout_ms",
                "max_attempts",
                "backoff_base_ms",
                "backoff_cap_ms"
            ],
            "{e}"
        );
        let text = e.to_string();
        assert!(
            text.starts_with("8 problems in the webhook config:"),
            "{text}"
        );
        assert!(text.contains("secret: wecom robots do not sign"), "{text}");
    }

    #[test]
    fn feishu_cannot_mention_by_phone() {
        let mut cfg = WebhookConfig::new("f", WebhookKind::Feishu, "https://open.feishu.cn/h/x");
        cfg.mention_phones = true;
        let e = cfg.validate().unwrap_err();
        assert_eq!(paths(&e), ["mention_phones"]);
    }

    #[test]
    fn a_signed_dingtalk_url_must_not_carry_an_old_signature() {
        let mut cfg = WebhookConfig::new(
            "d",
            WebhookKind::DingTalk,
            "https://oapi.dingtalk.com/robot/send?access_token=t&timestamp=1&sign=x",
        );
        cfg.validate().unwrap();
        cfg.secret = Some("SECabc".into());
        assert_eq!(paths(&cfg.validate().unwrap_err()), ["url"]);
    }

    #[test]
    fn an_empty_secret_is_an_error_not_an_unsigned_bot() {
        let mut cfg = WebhookConfig::new("g", WebhookKind::Generic, "http://127.0.0.1:9/x");
        cfg.secret = Some(String::new());
        assert_eq!(paths(&cfg.validate().unwrap_err()), ["secret"]);
        cfg.secret = Some(" s".into());
        assert_eq!(paths(&cfg.validate().unwrap_err()), ["secret"]);
    }

    #[test]
    fn validate_all_prefixes_paths_and_finds_duplicate_ids() {
        let a = WebhookConfig::new("a", WebhookKind::WeCom, "https://qyapi.weixin.qq.com/x");
        let mut b = a.clone();
        b.url = "nonsense".into();
        let e = validate_all(&[a, b]).unwrap_err();
        assert_eq!(paths(&e), ["webhooks[1].url", "webhooks[1].id"], "{e}");
        assert!(
            e.to_string().contains("already the id of webhooks[0]"),
            "{e}"
        );
    }

    #[test]
    fn debug_output_hides_the_secret_and_the_key_in_the_url() {
        let mut cfg = WebhookConfig::new(
            "d",
            WebhookKind::DingTalk,
            "https://oapi.dingtalk.com/robot/send?access_token=TOKEN123",
        );
        cfg.secret = Some("SECsecret".into());
        let text = format!("{cfg:?}");
        assert!(
            !text.contains("TOKEN123") && !text.contains("SECsecret"),
            "{text}"
        );
        assert!(text.contains("robot/send?***"), "{text}");
    }
}
