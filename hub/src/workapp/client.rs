//! [`WeComClient`]: WeCom's three calls for a personal app message.
//!
//! - `GET /cgi-bin/gettoken?corpid=…&corpsecret=…` → `access_token`, `expires_in` (7200 s).
//!   Kept until 5 minutes before it expires; a call refused for the token (40001 invalid
//!   credential, 40014 invalid token, 42001 expired) fetches a new one and is tried again, once.
//! - `POST /cgi-bin/user/getuserid?access_token=…` `{"mobile"}` → the member's `userid`, kept
//!   in memory (a member's id does not change; a failed lookup is not kept).
//! - `POST /cgi-bin/message/send?access_token=…` a `textcard` (plain `text` when the hub has no
//!   dashboard link) to `touser` from `agentid` →
//!   `msgid`; a member named in `invaliduser` did not get it.
//!
//! The Secret travels only in the token request's query; errors never carry a URL.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::{WorkAppConfig, WorkAppError, WorkAppSecret};

/// The most of an answer read.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// A token is renewed this long before WeCom says it expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(300);
/// errcodes that mean "get a new token".
const TOKEN_REFUSED: [i64; 3] = [40001, 40014, 42001];
/// WeCom's limits on a text card: title 128 bytes, description 512 bytes.
const TITLE_BYTES: usize = 128;
const DESCRIPTION_BYTES: usize = 512;

/// A text card (`textcard`): what the member sees in the app's conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Card {
    pub title: String,
    pub description: String,
    /// Opened when the card is tapped (the case on the dashboard). A text card needs one:
    /// without it the message goes as plain text.
    pub url: Option<String>,
}

#[derive(Debug)]
struct Token {
    value: String,
    renew_at: Instant,
}

/// Talks to one WeCom organisation's app.
#[derive(Debug)]
pub struct WeComClient {
    http: reqwest::Client,
    cfg: WorkAppConfig,
    secret: WorkAppSecret,
    timeout: Duration,
    token: Mutex<Option<Token>>,
    /// Mobile → userid.
    users: Mutex<HashMap<String, String>>,
}

impl WeComClient {
    /// A client (proxy from the environment unless `direct`).
    pub fn new(
        cfg: WorkAppConfig,
        secret: WorkAppSecret,
        direct: bool,
    ) -> Result<Self, WorkAppError> {
        let http =
            crate::outbound::client(direct).map_err(|detail| WorkAppError::Client { detail })?;
        Ok(Self {
            http,
            timeout: Duration::from_millis(cfg.timeout_ms),
            cfg,
            secret,
            token: Mutex::new(None),
            users: Mutex::new(HashMap::new()),
        })
    }

    /// The member's WeCom `userid` for a roster phone number.
    pub async fn userid(&self, phone: &str) -> Result<String, WorkAppError> {
        let mobile = phone.strip_prefix("+86").unwrap_or(phone);
        if let Some(id) = self.users.lock().await.get(mobile) {
            return Ok(id.clone());
        }
        let answer = self
            .call("/cgi-bin/user/getuserid", &json!({ "mobile": mobile }))
            .await?;
        let id = str_at(&answer, "userid")?;
        self.users
            .lock()
            .await
            .insert(mobile.to_owned(), id.clone());
        Ok(id)
    }

    /// Sends `card` to the member `userid`; WeCom's `msgid`.
    pub async fn send(&self, userid: &str, card: &Card) -> Result<String, WorkAppError> {
        let title = cut(&card.title, TITLE_BYTES);
        let description = cut(&card.description, DESCRIPTION_BYTES);
        let body = match &card.url {
            Some(url) => json!({
                "touser": userid,
                "msgtype": "textcard",
                "agentid": self.cfg.agent_id,
                "textcard": {
                    "title": title,
                    "description": description,
                    "url": url,
                    "btntxt": "查看",
                },
            }),
            None => json!({
                "touser": userid,
                "msgtype": "text",
                "agentid": self.cfg.agent_id,
                "text": { "content": format!("{title}\n{description}") },
            }),
        };
        let answer = self.call("/cgi-bin/message/send", &body).await?;
        let invalid = answer["invaliduser"].as_str().unwrap_or_default();
        if !invalid.is_empty() {
            return Err(WorkAppError::InvalidUser {
                user: invalid.to_owned(),
            });
        }
        str_at(&answer, "msgid")
    }

    /// POSTs `body` to `path` with the token; a token refused gets one renewal and retry.
    async fn call(&self, path: &str, body: &Value) -> Result<Value, WorkAppError> {
        let mut renewed = false;
        loop {
            let token = self.token(renewed).await?;
            let mut url = self.url(path)?;
            url.query_pairs_mut().append_pair("access_token", &token);
            let request = self
                .http
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string());
            let answer = self.exchange(request).await?;
            match errcode(&answer) {
                0 => return Ok(answer),
                code if TOKEN_REFUSED.contains(&code) && !renewed => {
                    tracing::info!(code, "work app token refused; fetching a new one");
                    renewed = true;
                }
                code => return Err(refused(code, &answer)),
            }
        }
    }

    /// The cached token, or a new one when `renew` or when it is due.
    async fn token(&self, renew: bool) -> Result<String, WorkAppError> {
        let mut slot = self.token.lock().await;
        if !renew
            && let Some(t) = slot.as_ref()
            && Instant::now() < t.renew_at
        {
            return Ok(t.value.clone());
        }
        let mut url = self.url("/cgi-bin/gettoken")?;
        url.query_pairs_mut()
            .append_pair("corpid", &self.cfg.corp_id)
            .append_pair("corpsecret", self.secret.expose());
        let answer = self.exchange(self.http.get(url)).await?;
        let code = errcode(&answer);
        if code != 0 {
            return Err(refused(code, &answer));
        }
        let value = str_at(&answer, "access_token")?;
        let lasts = Duration::from_secs(answer["expires_in"].as_u64().unwrap_or(7200));
        *slot = Some(Token {
            value: value.clone(),
            renew_at: Instant::now() + lasts.saturating_sub(TOKEN_MARGIN),
        });
        Ok(value)
    }

    fn url(&self, path: &str) -> Result<reqwest::Url, WorkAppError> {
        let base = self.cfg.endpoint().trim_end_matches('/');
        reqwest::Url::parse(&format!("{base}{path}")).map_err(|e| WorkAppError::Client {
            detail: format!("endpoint: {e}"),
        })
    }

    async fn exchange(&self, request: reqwest::RequestBuilder) -> Result<Value, WorkAppError> {
        let (status, body) = crate::outbound::exchange(request, self.timeout, MAX_ANSWER_BYTES)
            .await
            .map_err(|e| match e {
                crate::outbound::Failed::Timeout => WorkAppError::Timeout {
                    after_ms: self.cfg.timeout_ms,
                },
                crate::outbound::Failed::Transport(detail) => WorkAppError::Transport { detail },
            })?;
        match serde_json::from_slice::<Value>(&body) {
            Ok(v) if (200..300).contains(&status) && v.get("errcode").is_some() => Ok(v),
            _ => Err(WorkAppError::Http {
                status,
                body: String::from_utf8_lossy(&body).chars().take(200).collect(),
            }),
        }
    }
}

fn errcode(answer: &Value) -> i64 {
    answer["errcode"].as_i64().unwrap_or(-1)
}

fn refused(code: i64, answer: &Value) -> WorkAppError {
    WorkAppError::Refused {
        code,
        message: answer["errmsg"]
            .as_str()
            .unwrap_or_default()
            .chars()
            .take(200)
            .collect(),
    }
}

fn str_at(v: &Value, key: &str) -> Result<String, WorkAppError> {
    v[key]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| WorkAppError::Answer {
            detail: format!("no {key} in the answer"),
        })
}

/// At most `max` bytes of `s`, cut at a character boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::cut;

    #[test]
    fn cards_are_cut_at_a_character_boundary() {
        assert_eq!(cut("网格员", 7), "网格");
        assert_eq!(cut("网格员", 9), "网格员");
        assert_eq!(cut("ab", 1), "a");
    }
}
