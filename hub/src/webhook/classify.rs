//! [`classify`]: what an answer means. The bots answer HTTP 200 with an error code in the body,
//! so the status alone says little:
//!
//! - WeCom and DingTalk: `{"errcode":0,"errmsg":"ok"}`; anything but 0 is a refusal.
//! - Feishu: `{"code":0,"msg":"success"}` (older servers: `"StatusCode"`/`"StatusMessage"`);
//!   rate limits may come with HTTP 400 or 429 and a code.
//! - generic: our own receivers; any 2xx is delivered and the body is not read.
//!
//! Retryable: timeouts, connection errors, HTTP 408, 429 and 5xx, and the services' rate-limit
//! and busy codes. Permanent: everything else — a bad signature, a missing keyword, an IP not
//! on the allow-list, an unknown token, a malformed message, other 4xx — because sending the
//! same request again gets the same answer; an operator has to act.
//!
//! The code tables are the codes the services document for their custom bots; an unknown
//! non-zero code is a permanent [`Refusal::Other`], so a new code fails loudly rather than
//! looping.

use std::fmt;

use serde_json::Value;

use super::config::WebhookKind;

/// How much of an unexpected body an error keeps.
const BODY_HEAD_BYTES: usize = 256;

/// Why one attempt did not deliver. `Display` never contains the webhook URL or secret.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// No complete answer within the attempt's timeout. The service may still have received
    /// the message; retrying risks a duplicate, which beats silence.
    #[error("no answer within {after_ms} ms")]
    Timeout {
        /// The attempt's timeout.
        after_ms: u64,
    },
    /// Connecting, sending or reading failed (refused, reset, DNS, TLS).
    #[error("transport error: {detail}")]
    Transport {
        /// The error and its causes.
        detail: String,
    },
    /// An HTTP status that is not success, without a service code that says more.
    #[error("HTTP {status}: {body}")]
    Status {
        /// The status code.
        status: u16,
        /// The start of the body, lossily decoded.
        body: String,
    },
    /// The service answered with a non-zero error code.
    #[error("refused: {reason} (code {code}: {message})")]
    Refused {
        /// What the code means for us.
        reason: Refusal,
        /// The service's code (`errcode` / `code`).
        code: i64,
        /// The service's message (`errmsg` / `msg`).
        message: String,
    },
    /// A success status but a body that is not the service's answer (a proxy's page, an
    /// empty body): whether the group saw the message is unknown.
    #[error("unexpected answer (HTTP {status}): {body:?}")]
    UnexpectedBody {
        /// The status code.
        status: u16,
        /// The start of the body, lossily decoded.
        body: String,
    },
    /// The request could not be built (an invalid URL in an unvalidated config).
    #[error("invalid request: {detail}")]
    InvalidRequest {
        /// What is wrong.
        detail: String,
    },
}

impl DeliveryError {
    /// Whether the same request may succeed later.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Timeout { .. } | Self::Transport { .. } => true,
            Self::Status { status, .. } => status_is_retryable(*status),
            Self::Refused { reason, .. } => reason.is_retryable(),
            Self::UnexpectedBody { .. } | Self::InvalidRequest { .. } => false,
        }
    }
}

/// What a service's error code means, grouped by what someone has to do about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Refusal {
    /// Too many messages (WeCom 45009: 20 a minute per robot; DingTalk 130101 / 410100: 20 a
    /// minute, then ten minutes' throttle; Feishu 11232 / 99991400: 100 a minute, 5 a
    /// second). Retryable.
    RateLimited,
    /// The service is busy (-1, WeCom and DingTalk). Retryable.
    Busy,
    /// The signature or its timestamp was refused (DingTalk 310000 "sign not match" /
    /// "invalid timestamp", Feishu 19021): wrong secret, or the hub's clock is off by more
    /// than an hour.
    BadSignature,
    /// The message lacks the bot's custom keyword (DingTalk 310000 "keywords not in
    /// content", Feishu 19024).
    Keyword,
    /// The hub's address is not on the bot's IP allow-list (DingTalk 310000 "… not in
    /// whitelist", Feishu 19022).
    IpNotAllowed,
    /// The URL's key or token names no working bot (WeCom 93000; DingTalk 300001, 400101,
    /// 400102 stopped, 400106, 400013 group dissolved; Feishu 19001).
    BadToken,
    /// The service could not take the message itself (WeCom 40008, 40058, 44004, 45002;
    /// DingTalk 400105, 4301xx content checks; Feishu 9499).
    BadMessage,
    /// Any other non-zero code.
    Other,
}

impl Refusal {
    /// Whether waiting may help.
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::RateLimited | Self::Busy)
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::RateLimited => "rate limited",
            Self::Busy => "service busy",
            Self::BadSignature => "bad signature or timestamp; check the secret and the clock",
            Self::Keyword => "message lacks the bot's keyword",
            Self::IpNotAllowed => "address not on the bot's IP allow-list",
            Self::BadToken => "no such bot; check the webhook URL",
            Self::BadMessage => "message not accepted",
            Self::Other => "error",
        })
    }
}

/// What `status` and `body` (the whole body, or its start) of one answer from a `kind`
/// webhook mean: `Ok` when the message was delivered.
pub fn classify(kind: WebhookKind, status: u16, body: &[u8]) -> Result<(), DeliveryError> {
    let answer = match kind {
        WebhookKind::Generic => None,
        _ => service_answer(kind, body),
    };
    if let Some((code, message)) = &answer
        && *code != 0
    {
        let reason = refusal(kind, *code, message);
        // A rate-limit code is retryable whatever the status; a permanent code under a 5xx
        // is the status's business (a gateway's error page may carry any JSON).
        if reason.is_retryable() || !status_is_retryable(status) {
            return Err(DeliveryError::Refused {
                reason,
                code: *code,
                message: message.clone(),
            });
        }
    }
    if !(200..300).contains(&status) {
        return Err(DeliveryError::Status {
            status,
            body: body_head(body),
        });
    }
    match (kind, answer) {
        (WebhookKind::Generic, _) | (_, Some((0, _))) => Ok(()),
        _ => Err(DeliveryError::UnexpectedBody {
            status,
            body: body_head(body),
        }),
    }
}

fn status_is_retryable(status: u16) -> bool {
    matches!(status, 408 | 429 | 500..=599)
}

/// The service's code and message, if the body is its JSON answer.
fn service_answer(kind: WebhookKind, body: &[u8]) -> Option<(i64, String)> {
    let json: Value = serde_json::from_slice(body).ok()?;
    let (code_keys, message_keys): (&[&str], &[&str]) = match kind {
        WebhookKind::Feishu => (&["code", "StatusCode"], &["msg", "StatusMessage"]),
        _ => (&["errcode"], &["errmsg"]),
    };
    let code = code_keys
        .iter()
        .find_map(|k| json.get(k).and_then(Value::as_i64))?;
    let message = message_keys
        .iter()
        .find_map(|k| json.get(k).and_then(Value::as_str))
        .unwrap_or_default()
        .to_string();
    Some((code, message))
}

fn refusal(kind: WebhookKind, code: i64, message: &str) -> Refusal {
    match kind {
        WebhookKind::WeCom => match code {
            45009 => Refusal::RateLimited,
            -1 => Refusal::Busy,
            93000 => Refusal::BadToken,
            40008 | 40058 | 44004 | 45002 => Refusal::BadMessage,
            _ => Refusal::Other,
        },
        WebhookKind::DingTalk => match code {
            130101 | 410100 => Refusal::RateLimited,
            -1 => Refusal::Busy,
            // One code for every security setting; only the message tells them apart.
            310000 => {
                let m = message.to_ascii_lowercase();
                if m.contains("keyword") {
                    Refusal::Keyword
                } else if m.contains("whitelist") || m.contains("ip ") {
                    Refusal::IpNotAllowed
                } else if m.contains("sign") || m.contains("timestamp") {
                    Refusal::BadSignature
                } else {
                    Refusal::Other
                }
            }
            300001 | 400013 | 400101 | 400102 | 400106 => Refusal::BadToken,
            400105 | 430101..=430104 => Refusal::BadMessage,
            _ => Refusal::Other,
        },
        WebhookKind::Feishu => match code {
            11232 | 99991400 => Refusal::RateLimited,
            19021 => Refusal::BadSignature,
            19022 => Refusal::IpNotAllowed,
            19024 => Refusal::Keyword,
            19001 => Refusal::BadToken,
            9499 => Refusal::BadMessage,
            _ => Refusal::Other,
        },
        WebhookKind::Generic => Refusal::Other,
    }
}

/// The start of a body for an error message.
fn body_head(body: &[u8]) -> String {
    let head = &body[..body.len().min(BODY_HEAD_BYTES)];
    let mut text = String::from_utf8_lossy(head).into_owned();
    if body.len() > BODY_HEAD_BYTES {
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use WebhookKind::*;

    fn reason(kind: WebhookKind, status: u16, body: &str) -> Option<Refusal> {
        match classify(kind, status, body.as_bytes()) {
            Err(DeliveryError::Refused { reason, .. }) => Some(reason),
            _ => None,
        }
    }

    #[test]
    fn errcode_zero_is_delivered() {
        classify(WeCom, 200, br#"{"errcode":0,"errmsg":"ok"}"#).unwrap();
        classify(DingTalk, 200, br#"{"errcode":0,"errmsg":"ok"}"#).unwrap();
        classify(Feishu, 200, br#"{"code":0,"msg":"success","data":{}}"#).unwrap();
        classify(
            Feishu,
            200,
            br#"{"StatusCode":0,"StatusMessage":"success"}"#,
        )
        .unwrap();
    }

    #[test]
    fn http_200_with_an_error_code_is_not_delivered() {
        let e = classify(
            DingTalk,
            200,
            br#"{"errcode":310000,"errmsg":"sign not match, more: [https://ding-doc]"}"#,
        )
        .unwrap_err();
        assert_eq!(
            e,
            DeliveryError::Refused {
                reason: Refusal::BadSignature,
                code: 310000,
                message: "sign not match, more: [https://ding-doc]".into()
            }
        );
        assert!(!e.is_retryable());
        assert_eq!(
            reason(Feishu, 200, r#"{"code":19021,"msg":"sign match fail"}"#),
            Some(Refusal::BadSignature)
        );
    }

    #[test]
    fn dingtalk_310000_is_told_apart_by_its_message() {
        let r = |m: &str| {
            reason(
                DingTalk,
                200,
                &format!(r#"{{"errcode":310000,"errmsg":"{m}"}}"#),
            )
        };
        assert_eq!(
            r("keywords not in content, more: [x]"),
            Some(Refusal::Keyword)
        );
        assert_eq!(
            r("ip 1.2.3.4 not in whitelist"),
            Some(Refusal::IpNotAllowed)
        );
        assert_eq!(r("invalid timestamp"), Some(Refusal::BadSignature));
        assert_eq!(r("something new"), Some(Refusal::Other));
    }

    #[test]
    fn rate_limit_codes_are_retryable_and_other_codes_are_not() {
        for (kind, body) in [
            (
                WeCom,
                r#"{"errcode":45009,"errmsg":"api freq out of limit"}"#,
            ),
            (WeCom, r#"{"errcode":-1,"errmsg":"system busy"}"#),
            (DingTalk, r#"{"errcode":130101,"errmsg":"send too fast"}"#),
            (DingTalk, r#"{"errcode":410100,"errmsg":"send too fast"}"#),
            (Feishu, r#"{"code":11232,"msg":"frequency limited psm"}"#),
        ] {
            let e = classify(kind, 200, body.as_bytes()).unwrap_err();
            assert!(e.is_retryable(), "{kind}: {e}");
        }
        for (kind, body, expected) in [
            (
                WeCom,
                r#"{"errcode":93000,"errmsg":"invalid webhook url"}"#,
                Refusal::BadToken,
            ),
            (
                WeCom,
                r#"{"errcode":44004,"errmsg":"empty content"}"#,
                Refusal::BadMessage,
            ),
            (
                DingTalk,
                r#"{"errcode":300001,"errmsg":"token is not exist"}"#,
                Refusal::BadToken,
            ),
            (
                Feishu,
                r#"{"code":19024,"msg":"Key Words Not Found"}"#,
                Refusal::Keyword,
            ),
            (
                Feishu,
                r#"{"code":19022,"msg":"Ip Not Allowed"}"#,
                Refusal::IpNotAllowed,
            ),
            (
                Feishu,
                r#"{"code":9499,"msg":"Bad Request"}"#,
                Refusal::BadMessage,
            ),
            (Feishu, r#"{"code":12345,"msg":"new"}"#, Refusal::Other),
        ] {
            assert_eq!(reason(kind, 200, body), Some(expected), "{body}");
            assert!(
                !classify(kind, 200, body.as_bytes())
                    .unwrap_err()
                    .is_retryable()
            );
        }
    }

    #[test]
    fn feishu_rate_limit_under_http_400_is_still_retryable() {
        let e = classify(
            Feishu,
            400,
            br#"{"code":99991400,"msg":"request trigger frequency limit"}"#,
        )
        .unwrap_err();
        assert!(e.is_retryable(), "{e}");
    }

    #[test]
    fn server_errors_and_429_are_retryable_other_4xx_are_not() {
        for status in [408, 429, 500, 502, 503, 504] {
            let e = classify(Generic, status, b"oops").unwrap_err();
            assert_eq!(
                e,
                DeliveryError::Status {
                    status,
                    body: "oops".into()
                }
            );
            assert!(e.is_retryable(), "{status}");
        }
        for status in [301, 400, 401, 403, 404, 413] {
            assert!(!classify(Generic, status, b"").unwrap_err().is_retryable());
        }
        // A permanent code under a 5xx: the 5xx decides.
        let e = classify(WeCom, 502, br#"{"errcode":93000,"errmsg":"x"}"#).unwrap_err();
        assert!(e.is_retryable(), "{e}");
        // A permanent code under a 4xx: the code says more than the status.
        assert_eq!(
            reason(Feishu, 400, r#"{"code":19021,"msg":"sign match fail"}"#),
            Some(Refusal::BadSignature)
        );
    }

    #[test]
    fn a_bot_answering_200_without_its_json_is_not_counted_as_delivered() {
        for body in ["", "<html>portal</html>", r#"{"ok":true}"#] {
            let e = classify(DingTalk, 200, body.as_bytes()).unwrap_err();
            assert!(
                matches!(e, DeliveryError::UnexpectedBody { status: 200, .. }),
                "{e}"
            );
            assert!(!e.is_retryable());
        }
    }

    #[test]
    fn generic_accepts_any_2xx_and_ignores_the_body() {
        classify(Generic, 200, b"").unwrap();
        classify(Generic, 204, b"").unwrap();
        classify(Generic, 202, br#"{"errcode":45009}"#).unwrap();
    }

    #[test]
    fn long_bodies_are_cut_in_errors() {
        let body = "x".repeat(1000);
        let DeliveryError::Status { body: head, .. } =
            classify(Generic, 500, body.as_bytes()).unwrap_err()
        else {
            panic!("not a status error");
        };
        assert_eq!(head.len(), BODY_HEAD_BYTES + '…'.len_utf8());
    }
}
