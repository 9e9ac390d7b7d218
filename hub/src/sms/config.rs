//! [`SmsConfig`]: the `[sms]` section of `hub.toml`.

use std::path::PathBuf;

use serde::Deserialize;

/// Which SMS provider the hub sends through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, strum::IntoStaticStr)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum SmsProvider {
    /// Aliyun Dysmsapi (2017-05-25): `SendSms`, receipts by `QuerySendDetails`; V3 signature.
    Aliyun,
    /// Tencent Cloud SMS (2021-01-11): `SendSms`, receipts by `PullSmsSendStatus`; TC3
    /// signature.
    Tencent,
}

impl SmsProvider {
    /// The name in the config and in logs.
    pub fn name(self) -> &'static str {
        self.into()
    }

    /// The provider's public endpoint.
    pub fn default_endpoint(self) -> &'static str {
        match self {
            Self::Aliyun => "https://dysmsapi.aliyuncs.com",
            Self::Tencent => "https://sms.tencentcloudapi.com",
        }
    }
}

/// Defaults, in one place.
pub mod defaults {
    /// A critical case unacknowledged this long goes by SMS to the people notified by app only.
    pub const FALLBACK_AFTER_S: u64 = 120;
    /// How often delivery receipts are pulled.
    pub const POLL_INTERVAL_S: u64 = 30;
    /// One HTTP exchange with the provider, connect to last byte.
    pub const TIMEOUT_MS: u64 = 5_000;
    /// Messages waiting to be sent; beyond, a message is dropped (counted, recorded failed).
    pub const QUEUE: usize = 256;
    /// Tencent's region header when none is given.
    pub const TENCENT_REGION: &str = "ap-guangzhou";
}

/// `[sms]`: text messages to people whose roster `channels` include `sms`, and the fallback
/// for critical cases nobody acknowledged.
///
/// No secret here: the AccessKey secret (Aliyun) or SecretKey (Tencent) is read from
/// `secret_file`, which must be readable by its owner only.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsConfig {
    /// `aliyun` or `tencent`.
    pub provider: SmsProvider,
    /// The API's base URL; default the provider's public endpoint. Tests point it at a local
    /// server; `http` or `https`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Tencent's `X-TC-Region` (default `ap-guangzhou`). Aliyun's SMS endpoint is global, so a
    /// region there is an error rather than silently ignored.
    #[serde(default)]
    pub region: Option<String>,
    /// The approved signature (短信签名), e.g. `武定网格`.
    pub sign_name: String,
    /// The approved template: Aliyun `SMS_…` with variables `${case}` and `${what}`; Tencent a
    /// numeric id with `{1}` (case) and `{2}` (what).
    pub template_id: String,
    /// AccessKey ID (Aliyun) or SecretId (Tencent).
    pub key_id: String,
    /// File holding the AccessKey secret or SecretKey (one line), mode 0600.
    pub secret_file: PathBuf,
    /// Tencent's `SmsSdkAppId`; required for Tencent, refused for Aliyun.
    #[serde(default)]
    pub sdk_app_id: Option<String>,
    /// Seconds a critical case may stay unacknowledged before the people notified only by
    /// app get an SMS (once per case).
    #[serde(default = "default_fallback_after_s")]
    pub fallback_after_s: u64,
    /// Seconds between two pulls of delivery receipts.
    #[serde(default = "default_poll_interval_s")]
    pub poll_interval_s: u64,
    /// Timeout of one request to the provider, in ms.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Messages that may wait to be sent.
    #[serde(default = "default_queue")]
    pub queue: usize,
}

fn default_fallback_after_s() -> u64 {
    defaults::FALLBACK_AFTER_S
}
fn default_poll_interval_s() -> u64 {
    defaults::POLL_INTERVAL_S
}
fn default_timeout_ms() -> u64 {
    defaults::TIMEOUT_MS
}
fn default_queue() -> usize {
    defaults::QUEUE
}

impl SmsConfig {
    /// The endpoint the hub sends to.
    pub fn endpoint(&self) -> &str {
        self.endpoint
            .as_deref()
            .unwrap_or(self.provider.default_endpoint())
    }

    /// Tencent's region header.
    pub fn region(&self) -> &str {
        self.region.as_deref().unwrap_or(defaults::TENCENT_REGION)
    }

    /// Every problem, each as `field: what is wrong`, in field order.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if let Some(e) = &self.endpoint {
            p.extend(crate::outbound::base_url_problems(e));
        }
        match (self.provider, &self.region) {
            (SmsProvider::Aliyun, Some(_)) => {
                p.push("region: Aliyun's SMS endpoint takes no region; remove it".into())
            }
            (SmsProvider::Tencent, Some(r)) if !is_token(r) => p.push(format!(
                "region: {r:?} is not a region name like ap-guangzhou"
            )),
            _ => {}
        }
        if self.sign_name.trim().is_empty() {
            p.push("sign_name: is empty".into());
        }
        if !is_token(&self.template_id) {
            p.push("template_id: must be letters, digits, '-' or '_'".into());
        }
        if !is_token(&self.key_id) {
            p.push("key_id: must be letters, digits, '-' or '_'".into());
        }
        if self.secret_file.as_os_str().is_empty() {
            p.push("secret_file: is empty".into());
        }
        match (self.provider, &self.sdk_app_id) {
            (SmsProvider::Tencent, None) => {
                p.push("sdk_app_id: Tencent needs the SmsSdkAppId".into())
            }
            (SmsProvider::Tencent, Some(id)) if !id.bytes().all(|b| b.is_ascii_digit()) => {
                p.push(format!("sdk_app_id: {id:?} is not numeric"))
            }
            (SmsProvider::Aliyun, Some(_)) => {
                p.push("sdk_app_id: only Tencent has one; remove it".into())
            }
            _ => {}
        }
        if !(1..=86_400).contains(&self.fallback_after_s) {
            p.push(format!(
                "fallback_after_s: {} is outside 1..=86400",
                self.fallback_after_s
            ));
        }
        if !(1..=3_600).contains(&self.poll_interval_s) {
            p.push(format!(
                "poll_interval_s: {} is outside 1..=3600",
                self.poll_interval_s
            ));
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

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
}

/// The provider secret, read from [`SmsConfig::secret_file`]. Its `Debug` never shows it.
pub type SmsSecret = crate::secret_file::LineSecret;

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<SmsConfig, toml::de::Error> {
        toml::from_str(text)
    }

    const ALIYUN: &str = r#"
provider = "aliyun"
sign_name = "武定网格"
template_id = "SMS_1"
key_id = "LTAIkey"
secret_file = "sms.secret"
"#;

    #[test]
    fn a_minimal_aliyun_config_gets_the_defaults_and_validates() {
        let c = parse(ALIYUN).unwrap();
        assert_eq!(c.fallback_after_s, 120);
        assert_eq!(c.poll_interval_s, 30);
        assert_eq!(c.endpoint(), "https://dysmsapi.aliyuncs.com");
        assert!(c.problems().is_empty(), "{:?}", c.problems());
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = parse(&format!("{ALIYUN}secret = \"x\"\n")).unwrap_err();
        assert!(e.to_string().contains("secret"), "{e}");
    }

    #[test]
    fn every_problem_is_listed_with_its_field() {
        let mut c = parse(ALIYUN).unwrap();
        c.provider = SmsProvider::Tencent;
        c.endpoint = Some("ftp://x/?q".into());
        c.template_id = "a b".into();
        c.fallback_after_s = 0;
        c.queue = 0;
        let fields: Vec<String> = c
            .problems()
            .iter()
            .map(|p| p.split(':').next().unwrap().to_owned())
            .collect();
        assert_eq!(
            fields,
            [
                "endpoint",
                "endpoint",
                "template_id",
                "sdk_app_id",
                "fallback_after_s",
                "queue"
            ]
        );
    }

    #[test]
    fn aliyun_refuses_tencent_only_keys() {
        let mut c = parse(ALIYUN).unwrap();
        c.region = Some("cn-hangzhou".into());
        c.sdk_app_id = Some("1400".into());
        let p = c.problems();
        assert!(
            p[0].starts_with("region:") && p[1].starts_with("sdk_app_id:"),
            "{p:?}"
        );
    }

    #[test]
    fn the_secret_file_must_be_private_and_the_secret_never_printed() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sms.secret");
        std::fs::write(&path, "s3cr3t-value\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = SmsSecret::load(&path, "sms.secret_file").unwrap_err();
        assert!(
            e.starts_with("sms.secret_file:") && e.contains("0644"),
            "{e}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let s = SmsSecret::load(&path, "sms.secret_file").unwrap();
        assert_eq!(s.expose(), "s3cr3t-value");
        assert!(!format!("{s:?}").contains("s3cr3t"));
    }
}
