//! [`SmsClient`]: one provider's two calls, send and pull receipts, signed and parsed.
//!
//! | provider | send | receipts |
//! | --- | --- | --- |
//! | Aliyun | `SendSms` (query `PhoneNumbers`, `SignName`, `TemplateCode`, `TemplateParam` JSON) → `BizId` | `QuerySendDetails` per message (`PhoneNumber`, `BizId`, `SendDate`): `SendStatus` 1 waiting, 2 failed (`ErrCode`), 3 delivered |
//! | Tencent | `SendSms` (JSON `PhoneNumberSet`, `SmsSdkAppId`, `SignName`, `TemplateId`, `TemplateParamSet`) → `SerialNo` | `PullSmsSendStatus` (up to 100 new reports for the app): `ReportStatus` `SUCCESS` / `FAIL` (`Description`) |
//!
//! Every exchange has the config's timeout, connect to last byte; answers are read up to
//! 64 KiB. Errors carry the provider's code and message but never the secret, and reqwest's
//! errors lose their URL (it holds no secret here, but the phone number is in Aliyun's query).

use std::time::Duration;

use serde_json::{Value, json};

use super::SmsError;
use super::config::{SmsConfig, SmsProvider, SmsSecret};
use super::sign;

const ALIYUN_VERSION: &str = "2017-05-25";
const TENCENT_VERSION: &str = "2021-01-11";
const TENCENT_CONTENT_TYPE: &str = "application/json; charset=utf-8";
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Aliyun caps each template variable's value at 35 characters.
const ALIYUN_VARIABLE_CHARS: usize = 35;

/// What the receipt said about one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Receipt {
    /// The handset has it.
    Delivered,
    /// The carrier gave up; the provider's error code.
    Failed(String),
    /// No final report yet.
    Waiting,
}

/// A message sent, as the receipt pull needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    /// The provider's id: Aliyun's `BizId`, Tencent's `SerialNo`.
    pub id: String,
    /// The number as written in the roster.
    pub phone: String,
    /// When it was sent, ms since the epoch (Aliyun's query wants the day, Beijing time).
    pub at_ms: i64,
}

/// Talks to one provider.
#[derive(Clone, Debug)]
pub struct SmsClient {
    http: reqwest::Client,
    cfg: SmsConfig,
    secret: SmsSecret,
    timeout: Duration,
    /// Milliseconds since the epoch, for signatures. A seam for tests.
    clock: fn() -> i64,
}

impl SmsClient {
    /// A client on the hub's HTTP client library (reqwest, as the webhooks), proxy from the
    /// environment unless `direct`.
    pub fn new(cfg: SmsConfig, secret: SmsSecret, direct: bool) -> Result<Self, SmsError> {
        let http = crate::outbound::client(direct).map_err(|detail| SmsError::Client { detail })?;
        let timeout = Duration::from_millis(cfg.timeout_ms);
        Ok(Self {
            http,
            cfg,
            secret,
            timeout,
            clock: || protocol::UtcMillis::now().0,
        })
    }

    pub fn provider(&self) -> SmsProvider {
        self.cfg.provider
    }

    /// Sends the template with `case` and `what` to `phone`; the provider's message id.
    pub async fn send(&self, phone: &str, case: &str, what: &str) -> Result<String, SmsError> {
        match self.cfg.provider {
            SmsProvider::Aliyun => {
                let param = json!({
                    "case": truncate(case, ALIYUN_VARIABLE_CHARS),
                    "what": truncate(what, ALIYUN_VARIABLE_CHARS),
                })
                .to_string();
                let answer = self
                    .aliyun(
                        "SendSms",
                        &[
                            ("PhoneNumbers", national(phone)),
                            ("SignName", &self.cfg.sign_name),
                            ("TemplateCode", &self.cfg.template_id),
                            ("TemplateParam", &param),
                        ],
                    )
                    .await?;
                aliyun_ok(&answer)?;
                str_at(&answer, "/BizId")
            }
            SmsProvider::Tencent => {
                let body = json!({
                    "PhoneNumberSet": [e164(phone)],
                    "SmsSdkAppId": self.cfg.sdk_app_id.as_deref().unwrap_or_default(),
                    "SignName": self.cfg.sign_name,
                    "TemplateId": self.cfg.template_id,
                    "TemplateParamSet": [case, what],
                });
                let answer = self.tencent("SendSms", &body).await?;
                let status = answer.pointer("/Response/SendStatusSet/0").ok_or_else(|| {
                    SmsError::Answer {
                        detail: "no SendStatusSet[0]".into(),
                    }
                })?;
                let code = status["Code"].as_str().unwrap_or_default();
                if code != "Ok" {
                    return Err(SmsError::Refused {
                        code: code.to_owned(),
                        message: status["Message"].as_str().unwrap_or_default().to_owned(),
                    });
                }
                str_at(status, "/SerialNo")
            }
        }
    }

    /// Final receipts for some of `sent`, by message id. Aliyun is asked per message (at most
    /// `sent.len()` requests; the caller bounds it); Tencent returns up to 100 new reports at
    /// once, which may include messages the caller no longer waits for.
    pub async fn receipts(&self, sent: &[Sent]) -> Result<Vec<(String, Receipt)>, SmsError> {
        match self.cfg.provider {
            SmsProvider::Aliyun => {
                let mut out = Vec::with_capacity(sent.len());
                for s in sent {
                    let date = beijing_yyyymmdd(s.at_ms);
                    let answer = self
                        .aliyun(
                            "QuerySendDetails",
                            &[
                                ("PhoneNumber", national(&s.phone)),
                                ("BizId", &s.id),
                                ("SendDate", &date),
                                ("PageSize", "10"),
                                ("CurrentPage", "1"),
                            ],
                        )
                        .await?;
                    aliyun_ok(&answer)?;
                    let detail = answer.pointer("/SmsSendDetailDTOs/SmsSendDetailDTO/0");
                    let receipt = match detail.and_then(|d| d["SendStatus"].as_i64()) {
                        Some(3) => Receipt::Delivered,
                        Some(2) => Receipt::Failed(
                            detail
                                .and_then(|d| d["ErrCode"].as_str())
                                .unwrap_or("unknown")
                                .to_owned(),
                        ),
                        _ => Receipt::Waiting,
                    };
                    out.push((s.id.clone(), receipt));
                }
                Ok(out)
            }
            SmsProvider::Tencent => {
                let body = json!({
                    "Limit": 100,
                    "SmsSdkAppId": self.cfg.sdk_app_id.as_deref().unwrap_or_default(),
                });
                let answer = self.tencent("PullSmsSendStatus", &body).await?;
                let set = answer
                    .pointer("/Response/PullSmsSendStatusSet")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                Ok(set
                    .iter()
                    .filter_map(|r| {
                        let id = r["SerialNo"].as_str()?.to_owned();
                        let receipt = match r["ReportStatus"].as_str()? {
                            "SUCCESS" => Receipt::Delivered,
                            "FAIL" => Receipt::Failed(
                                r["Description"].as_str().unwrap_or("FAIL").to_owned(),
                            ),
                            _ => Receipt::Waiting,
                        };
                        Some((id, receipt))
                    })
                    .collect())
            }
        }
    }

    /// One Aliyun RPC call, V3-signed: parameters in the query, empty body, POST.
    async fn aliyun(&self, action: &str, params: &[(&str, &str)]) -> Result<Value, SmsError> {
        let query = sign::aliyun_canonical_query(params);
        let url = self.url(Some(&query))?;
        let host = host_of(&url);
        let now_ms = (self.clock)();
        let date = iso8601(now_ms);
        let nonce = crate::random::token();
        let empty = sign::sha256_hex(b"");
        let headers = [
            ("host", host.as_str()),
            ("x-acs-action", action),
            ("x-acs-content-sha256", empty.as_str()),
            ("x-acs-date", date.as_str()),
            ("x-acs-signature-nonce", nonce.as_str()),
            ("x-acs-version", ALIYUN_VERSION),
        ];
        let (signed, signature) = sign::aliyun_v3_signature(
            &sign::AliyunRequest {
                method: "POST",
                query: &query,
                headers: &headers,
                body: b"",
            },
            self.secret.expose(),
        );
        let mut request = self.http.post(url).header(
            "authorization",
            sign::aliyun_authorization(&self.cfg.key_id, &signed, &signature),
        );
        // `host` is set by reqwest from the URL, exactly as signed.
        for (name, value) in &headers[1..] {
            request = request.header(*name, *value);
        }
        self.exchange(request).await
    }

    /// One Tencent call, TC3-signed JSON.
    async fn tencent(&self, action: &str, body: &Value) -> Result<Value, SmsError> {
        let url = self.url(None)?;
        let host = host_of(&url);
        let body = body.to_string().into_bytes();
        let timestamp = (self.clock)().div_euclid(1000);
        let (scope, signature) = sign::tencent_tc3_signature(
            &sign::TencentRequest {
                host: &host,
                content_type: TENCENT_CONTENT_TYPE,
                body: &body,
                timestamp,
                service: "sms",
            },
            self.secret.expose(),
        );
        let request = self
            .http
            .post(url)
            .header(
                "authorization",
                sign::tencent_authorization(&self.cfg.key_id, &scope, &signature),
            )
            .header("content-type", TENCENT_CONTENT_TYPE)
            .header("x-tc-action", action)
            .header("x-tc-timestamp", timestamp.to_string())
            .header("x-tc-version", TENCENT_VERSION)
            .header("x-tc-region", self.cfg.region())
            .body(body);
        let answer = self.exchange(request).await?;
        if let Some(e) = answer.pointer("/Response/Error") {
            return Err(SmsError::Refused {
                code: e["Code"].as_str().unwrap_or_default().to_owned(),
                message: e["Message"].as_str().unwrap_or_default().to_owned(),
            });
        }
        Ok(answer)
    }

    fn url(&self, query: Option<&str>) -> Result<reqwest::Url, SmsError> {
        let base = self.cfg.endpoint().trim_end_matches('/');
        let text = match query {
            Some(q) => format!("{base}/?{q}"),
            None => format!("{base}/"),
        };
        reqwest::Url::parse(&text).map_err(|e| SmsError::Client {
            detail: format!("endpoint does not parse: {e}"),
        })
    }

    /// Sends, reads at most [`MAX_ANSWER_BYTES`] within the timeout, parses JSON.
    async fn exchange(&self, request: reqwest::RequestBuilder) -> Result<Value, SmsError> {
        let (status, body) = crate::outbound::exchange(request, self.timeout, MAX_ANSWER_BYTES)
            .await
            .map_err(|e| match e {
                crate::outbound::Failed::Timeout => SmsError::Timeout {
                    after_ms: self.cfg.timeout_ms,
                },
                crate::outbound::Failed::Transport(detail) => SmsError::Transport { detail },
            })?;
        let parsed: Option<Value> = serde_json::from_slice(&body).ok();
        match parsed {
            // Aliyun answers errors with a 4xx and its usual JSON; let the caller read the code.
            Some(v) if (200..300).contains(&status) || v.get("Code").is_some() => Ok(v),
            _ => Err(SmsError::Http {
                status,
                body: truncate(&String::from_utf8_lossy(&body), 200),
            }),
        }
    }
}

fn aliyun_ok(answer: &Value) -> Result<(), SmsError> {
    match answer["Code"].as_str() {
        Some("OK") => Ok(()),
        code => Err(SmsError::Refused {
            code: code.unwrap_or("missing").to_owned(),
            message: answer["Message"].as_str().unwrap_or_default().to_owned(),
        }),
    }
}

fn str_at(v: &Value, pointer: &str) -> Result<String, SmsError> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| SmsError::Answer {
            detail: format!("no {pointer} in the answer"),
        })
}

/// `host[:port]` as reqwest sends it in `Host` (the port only when not the scheme's default).
fn host_of(url: &reqwest::Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_owned(),
    }
}

/// The 11-digit national number Aliyun wants.
fn national(phone: &str) -> &str {
    phone.strip_prefix("+86").unwrap_or(phone)
}

/// The `+86…` form Tencent wants.
fn e164(phone: &str) -> String {
    format!("+86{}", national(phone))
}

fn truncate(s: &str, chars: usize) -> String {
    s.chars().take(chars).collect()
}

/// `YYYY-MM-DDThh:mm:ssZ`, Aliyun's `x-acs-date`.
fn iso8601(ms: i64) -> String {
    let s = ms.div_euclid(1000);
    let secs = s.rem_euclid(86_400);
    format!(
        "{}T{:02}:{:02}:{:02}Z",
        sign::utc_date(s),
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// `yyyyMMdd` in Beijing time, the day Aliyun files a message under.
fn beijing_yyyymmdd(ms: i64) -> String {
    sign::utc_date(ms.div_euclid(1000) + 8 * 3600).replace('-', "")
}

/// A reqwest error with its causes, without the URL (Aliyun's query holds the phone number).
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_formatted_as_each_provider_wants() {
        // 2026-12-07 17:30:05 UTC is already the 8th in Beijing.
        let ms = 1_796_664_605_000;
        assert_eq!(iso8601(ms), "2026-12-07T17:30:05Z");
        assert_eq!(beijing_yyyymmdd(ms), "20261208");
    }

    #[test]
    fn numbers_are_national_for_aliyun_and_e164_for_tencent() {
        assert_eq!(national("+8613800000001"), "13800000001");
        assert_eq!(national("13800000001"), "13800000001");
        assert_eq!(e164("13800000001"), "+8613800000001");
        assert_eq!(e164("+8613800000001"), "+8613800000001");
    }
}
