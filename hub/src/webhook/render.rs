//! [`render`]: a [`Message`] as the request one service documents. Pure: the time to sign
//! with is an argument.
//!
//! Every kind shows the same facts in the same order: severity label and title, grid cell,
//! case id, time (Beijing time, what the people reading it live by), the link, then the free
//! text. The free text goes last because it is what gets cut when a message exceeds the
//! service's size limit. Every message contains the words 网格 and 案件, so either works as a
//! DingTalk or Feishu "custom keyword" (自定义关键词) security setting.
//!
//! Choices per kind:
//!
//! - **WeCom**: `markdown` (bold title, coloured label) unless phones are to be mentioned;
//!   then `text` with `mentioned_mobile_list`, because WeCom markdown can only mention by
//!   userid (`<@userid>`), never by phone. A mention that rings someone's phone beats
//!   formatting.
//! - **DingTalk**: `markdown` with `at.atMobiles`; the `@phone` strings are written into the
//!   text as well, since DingTalk highlights a mention only where the text contains it. They
//!   sit right under the title so a cut never removes them. `isAtAll` is always false.
//! - **Feishu**: `text`. Cards would look better, but their schema has changed versions, and a
//!   text message shows the same everywhere, notifications included.
//! - **Generic**: the [`Message`] fields plus `schema_version`, `webhook_id` and `sent_at`,
//!   unformatted.
//!
//! Escaping: every value of a [`Message`] may come from a site or a person (a rule, a note),
//! and a site may be in an attacker's hands. In the markdown kinds every markdown and HTML
//! metacharacter of a value is replaced by its full-width form (`[` → `［`, `*` → `＊`, `<` →
//! `＜`, …), not backslash-escaped: WeCom's and DingTalk's markdown dialects do not document
//! backslash escapes, and a renderer that ignores them would still see `[text](url)` in
//! `\[text\]\(url\)`. Full-width punctuation reads naturally in Chinese text and no renderer
//! treats it as markup. In the plain-text kinds `<` and `>` are replaced likewise (Feishu text
//! parses `<at user_id="all">`). In both, control characters (newlines included) within a
//! value become spaces, so a value cannot forge a line of the message; the free text keeps
//! its lines, each escaped.

use std::fmt;

use protocol::Severity;
use protocol::time::{UtcMillis, format_rfc3339_ms};
use serde_json::{Value, json};

use super::config::{WebhookConfig, WebhookKind, redact_url};
use super::message::Message;
use super::sign;

/// Version of the `generic` kind's JSON; bumped on any incompatible change.
pub const GENERIC_SCHEMA_VERSION: u32 = 1;

/// WeCom: `text.content` at most 2048 bytes (UTF-8).
pub const WECOM_TEXT_MAX_BYTES: usize = 2048;
/// WeCom: `markdown.content` at most 4096 bytes (UTF-8).
pub const WECOM_MARKDOWN_MAX_BYTES: usize = 4096;
/// DingTalk: markdown text kept under the documented 5000 (counted here in bytes, which is
/// never more than characters, so it holds whichever DingTalk counts).
pub const DINGTALK_MAX_BYTES: usize = 5000;
/// Feishu: a request body may be at most 20 KB; the text is kept well under it.
pub const FEISHU_TEXT_MAX_BYTES: usize = 16_000;

/// One request, ready to POST as `application/json`.
#[derive(Clone, PartialEq)]
pub struct Rendered {
    /// Where to POST: the configured URL, plus DingTalk's signature query when signed.
    pub url: String,
    /// Extra headers (the `generic` kind's `X-Signature`).
    pub headers: Vec<(&'static str, String)>,
    /// The JSON body.
    pub body: Value,
}

impl Rendered {
    /// The exact bytes to send: compact JSON. The `generic` signature is computed over these,
    /// so the sender must send them and nothing else.
    pub fn body_bytes(&self) -> Vec<u8> {
        self.body.to_string().into_bytes()
    }
}

impl fmt::Debug for Rendered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rendered")
            .field("url", &redact_url(&self.url))
            .field("headers", &self.headers)
            .field("body", &self.body)
            .finish()
    }
}

/// `msg` as the request `cfg`'s service expects, signed with `now_ms` (ms since the epoch)
/// when `cfg` has a secret. `cfg` should have passed validation; a secret on a kind that does
/// not sign is ignored.
pub fn render(cfg: &WebhookConfig, msg: &Message, now_ms: i64) -> Rendered {
    let secret = cfg.secret.as_deref().filter(|s| !s.is_empty());
    let phones: &[String] = if cfg.mention_phones && cfg.kind.mentions_phones() {
        &msg.mention_phones
    } else {
        &[]
    };
    match cfg.kind {
        WebhookKind::WeCom => wecom(cfg, msg, phones),
        WebhookKind::DingTalk => dingtalk(cfg, msg, phones, secret, now_ms),
        WebhookKind::Feishu => feishu(cfg, msg, secret, now_ms),
        WebhookKind::Generic => generic(cfg, msg, phones, secret, now_ms),
    }
}

fn wecom(cfg: &WebhookConfig, msg: &Message, phones: &[String]) -> Rendered {
    let body = if phones.is_empty() {
        let label = match msg.severity {
            Severity::Major | Severity::Critical => "warning",
            Severity::Info | Severity::Minor => "comment",
        };
        let mut head = format!(
            "<font color=\"{label}\">{}</font> **{}**\n> 网格：{}\n> 案件：{}\n> 时间：{}（北京时间）",
            severity_label(msg.severity),
            markdown_value(&msg.title),
            markdown_value(&msg.cell_path),
            markdown_value(&msg.case_id),
            beijing_time(msg.at),
        );
        if let Some(url) = &msg.url {
            head.push_str(&format!("\n> [查看案件]({url})"));
        }
        json!({
            "msgtype": "markdown",
            "markdown": { "content": fit(head, &markdown_text(&msg.text), WECOM_MARKDOWN_MAX_BYTES) },
        })
    } else {
        json!({
            "msgtype": "text",
            "text": {
                "content": fit(plain_head(msg), &plain_text(&msg.text), WECOM_TEXT_MAX_BYTES),
                "mentioned_mobile_list": phones,
            },
        })
    };
    Rendered {
        url: cfg.url.clone(),
        headers: Vec::new(),
        body,
    }
}

fn dingtalk(
    cfg: &WebhookConfig,
    msg: &Message,
    phones: &[String],
    secret: Option<&str>,
    now_ms: i64,
) -> Rendered {
    let title = format!(
        "{}{}",
        severity_label(msg.severity),
        plain_value(&msg.title)
    );
    let mut head = format!(
        "#### {}{}",
        severity_label(msg.severity),
        markdown_value(&msg.title)
    );
    if !phones.is_empty() {
        head.push_str("\n\n");
        let mentions: Vec<String> = phones.iter().map(|p| format!("@{p}")).collect();
        head.push_str(&mentions.join(" "));
    }
    head.push_str(&format!(
        "\n\n- 网格：{}\n- 案件：{}\n- 时间：{}（北京时间）",
        markdown_value(&msg.cell_path),
        markdown_value(&msg.case_id),
        beijing_time(msg.at)
    ));
    if let Some(url) = &msg.url {
        head.push_str(&format!("\n- [查看案件]({url})"));
    }
    let body = json!({
        "msgtype": "markdown",
        "markdown": { "title": title, "text": fit(head, &markdown_text(&msg.text), DINGTALK_MAX_BYTES) },
        "at": { "atMobiles": phones, "isAtAll": false },
    });
    let url = match secret {
        Some(secret) => {
            let sep = if cfg.url.contains('?') { '&' } else { '?' };
            format!("{}{sep}{}", cfg.url, sign::dingtalk_query(now_ms, secret))
        }
        None => cfg.url.clone(),
    };
    Rendered {
        url,
        headers: Vec::new(),
        body,
    }
}

fn feishu(cfg: &WebhookConfig, msg: &Message, secret: Option<&str>, now_ms: i64) -> Rendered {
    let mut body = json!({
        "msg_type": "text",
        "content": { "text": fit(plain_head(msg), &plain_text(&msg.text), FEISHU_TEXT_MAX_BYTES) },
    });
    if let (Some(secret), Some(fields)) = (secret, body.as_object_mut()) {
        let seconds = now_ms.div_euclid(1000);
        // A string, as in Feishu's examples.
        fields.insert("timestamp".into(), Value::String(seconds.to_string()));
        fields.insert(
            "sign".into(),
            Value::String(sign::feishu_sign(seconds, secret)),
        );
    }
    Rendered {
        url: cfg.url.clone(),
        headers: Vec::new(),
        body,
    }
}

fn generic(
    cfg: &WebhookConfig,
    msg: &Message,
    phones: &[String],
    secret: Option<&str>,
    now_ms: i64,
) -> Rendered {
    let body = json!({
        "schema_version": GENERIC_SCHEMA_VERSION,
        "webhook_id": cfg.id,
        "case_id": msg.case_id,
        "title": msg.title,
        "text": msg.text,
        "severity": msg.severity,
        "cell_path": msg.cell_path,
        "url": msg.url,
        "mention_phones": phones,
        "at": msg.at,
        "sent_at": UtcMillis(now_ms),
    });
    let mut rendered = Rendered {
        url: cfg.url.clone(),
        headers: Vec::new(),
        body,
    };
    if let Some(secret) = secret {
        let signature = sign::generic_signature(secret, &rendered.body_bytes());
        rendered.headers.push((sign::SIGNATURE_HEADER, signature));
    }
    rendered
}

/// The header lines of the plain-text kinds (WeCom `text`, Feishu).
fn plain_head(msg: &Message) -> String {
    let mut head = format!(
        "{}{}\n网格：{}\n案件：{}\n时间：{}（北京时间）",
        severity_label(msg.severity),
        plain_value(&msg.title),
        plain_value(&msg.cell_path),
        plain_value(&msg.case_id),
        beijing_time(msg.at),
    );
    if let Some(url) = &msg.url {
        head.push_str(&format!("\n详情：{url}"));
    }
    head
}

/// One value for a markdown kind: markdown and HTML metacharacters as their full-width
/// forms, control characters (newlines included) as spaces.
pub fn markdown_value(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\\' => '＼',
            '`' => '｀',
            '*' => '＊',
            '_' => '＿',
            '[' => '［',
            ']' => '］',
            '(' => '（',
            ')' => '）',
            '#' => '＃',
            '!' => '！',
            '|' => '｜',
            '~' => '～',
            '<' => '＜',
            '>' => '＞',
            '&' => '＆',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect()
}

/// Free text for a markdown kind: its lines kept, each escaped as a value.
fn markdown_text(s: &str) -> String {
    s.split('\n')
        .map(markdown_value)
        .collect::<Vec<_>>()
        .join("\n")
}

/// One value for a plain-text kind: `<` and `>` as their full-width forms (Feishu parses
/// `<at …>` in text), control characters (newlines included) as spaces.
pub fn plain_value(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '<' => '＜',
            '>' => '＞',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect()
}

/// Free text for a plain-text kind: its lines kept, each escaped as a value.
fn plain_text(s: &str) -> String {
    s.split('\n')
        .map(plain_value)
        .collect::<Vec<_>>()
        .join("\n")
}

/// The label a reader scans for first.
fn severity_label(severity: Severity) -> &'static str {
    match severity {
        Severity::Info => "【提示】",
        Severity::Minor => "【一般】",
        Severity::Major => "【重要】",
        Severity::Critical => "【紧急】",
    }
}

/// `2026-11-22 16:00:00`: China Standard Time (UTC+8, no daylight saving).
fn beijing_time(at: UtcMillis) -> String {
    let text = format_rfc3339_ms(at.0.saturating_add(8 * 3_600_000));
    match (text.get(..10), text.get(11..19)) {
        (Some(date), Some(time)) => format!("{date} {time}"),
        _ => text,
    }
}

/// `head`, a blank line and `text`, cut to at most `max` bytes: the text first, ending in `…`.
fn fit(head: String, text: &str, max: usize) -> String {
    const ELLIPSIS: &str = "…";
    let mut out = head;
    if text.is_empty() {
        return cut(out, max, ELLIPSIS);
    }
    out.push_str("\n\n");
    let room = max.saturating_sub(out.len());
    if text.len() <= room {
        out.push_str(text);
    } else if room > ELLIPSIS.len() {
        out.push_str(&text[..floor_boundary(text, room - ELLIPSIS.len())]);
        out.push_str(ELLIPSIS);
    } else {
        // The head alone fills the limit (an absurd title): cut the head too.
        out = cut(out, max, ELLIPSIS);
    }
    out
}

fn cut(mut s: String, max: usize, ellipsis: &str) -> String {
    if s.len() > max {
        s.truncate(floor_boundary(&s, max.saturating_sub(ellipsis.len())));
        s.push_str(ellipsis);
    }
    s
}

/// The largest char boundary of `s` at or below `i`.
fn floor_boundary(s: &str, i: usize) -> usize {
    if i >= s.len() {
        return s.len();
    }
    (0..=i).rev().find(|&j| s.is_char_boundary(j)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> Message {
        Message {
            case_id: "AJ-20261122-0042".into(),
            title: "东门有人翻越围墙".into(),
            text: "摄像头 3 号在东门围墙处检测到人员翻越。".into(),
            severity: Severity::Critical,
            cell_path: "城关镇 / 东门社区 / 第三网格".into(),
            url: Some("https://hub.example/cases/AJ-20261122-0042".into()),
            mention_phones: vec!["13800000001".into(), "13900000002".into()],
            // 2026-11-22T08:00:00Z = 16:00 in Beijing.
            at: UtcMillis(1_795_334_400_000),
        }
    }

    const NOW_MS: i64 = 1_700_000_000_002;

    #[test]
    fn wecom_without_mentions_is_markdown_and_unsigned() {
        let cfg = WebhookConfig::new(
            "w",
            WebhookKind::WeCom,
            "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=K",
        );
        let r = render(&cfg, &message(), NOW_MS);
        assert_eq!(r.url, cfg.url);
        assert!(r.headers.is_empty());
        assert_eq!(
            r.body,
            json!({"msgtype": "markdown", "markdown": {"content":
                "<font color=\"warning\">【紧急】</font> **东门有人翻越围墙**\n\
                 > 网格：城关镇 / 东门社区 / 第三网格\n\
                 > 案件：AJ-20261122-0042\n\
                 > 时间：2026-11-22 16:00:00（北京时间）\n\
                 > [查看案件](https://hub.example/cases/AJ-20261122-0042)\n\n\
                 摄像头 3 号在东门围墙处检测到人员翻越。"}})
        );
    }

    #[test]
    fn wecom_with_phones_to_mention_switches_to_text() {
        let mut cfg = WebhookConfig::new("w", WebhookKind::WeCom, "https://q/send?key=K");
        cfg.mention_phones = true;
        let r = render(&cfg, &message(), NOW_MS);
        assert_eq!(r.body["msgtype"], "text");
        assert_eq!(
            r.body["text"]["mentioned_mobile_list"],
            json!(["13800000001", "13900000002"])
        );
        let content = r.body["text"]["content"].as_str().unwrap();
        assert!(
            content.starts_with("【紧急】东门有人翻越围墙\n网格："),
            "{content}"
        );
        assert!(!content.contains("**"), "{content}");
    }

    #[test]
    fn wecom_with_mentions_enabled_but_nobody_to_mention_stays_markdown() {
        let mut cfg = WebhookConfig::new("w", WebhookKind::WeCom, "https://q/send?key=K");
        cfg.mention_phones = true;
        let mut msg = message();
        msg.mention_phones.clear();
        assert_eq!(render(&cfg, &msg, NOW_MS).body["msgtype"], "markdown");
    }

    #[test]
    fn dingtalk_signed_appends_timestamp_and_sign_to_the_url() {
        let mut cfg = WebhookConfig::new(
            "d",
            WebhookKind::DingTalk,
            "https://oapi.dingtalk.com/robot/send?access_token=T",
        );
        cfg.secret = Some("SEC0123456789abcdef".into());
        cfg.mention_phones = true;
        let r = render(&cfg, &message(), NOW_MS);
        assert_eq!(
            r.url,
            "https://oapi.dingtalk.com/robot/send?access_token=T&timestamp=1700000000002\
             &sign=VGvd0brDJp%2FnMZtR%2BXnA3yBIlhowT%2BTwkRPua0q1%2Fjg%3D"
        );
        assert_eq!(r.body["msgtype"], "markdown");
        assert_eq!(r.body["markdown"]["title"], "【紧急】东门有人翻越围墙");
        assert_eq!(
            r.body["at"],
            json!({"atMobiles": ["13800000001", "13900000002"], "isAtAll": false})
        );
        let text = r.body["markdown"]["text"].as_str().unwrap();
        assert!(
            text.starts_with("#### 【紧急】东门有人翻越围墙\n\n@13800000001 @13900000002\n\n"),
            "{text}"
        );
        assert!(
            text.contains("- 时间：2026-11-22 16:00:00（北京时间）"),
            "{text}"
        );
    }

    #[test]
    fn dingtalk_unsigned_leaves_the_url_and_mentions_nobody_unless_asked() {
        let cfg = WebhookConfig::new("d", WebhookKind::DingTalk, "http://127.0.0.1:1/robot");
        let r = render(&cfg, &message(), NOW_MS);
        assert_eq!(r.url, "http://127.0.0.1:1/robot");
        assert_eq!(r.body["at"], json!({"atMobiles": [], "isAtAll": false}));
        assert!(!r.body["markdown"]["text"].as_str().unwrap().contains('@'));
    }

    #[test]
    fn dingtalk_signature_on_a_url_without_query_starts_one() {
        let mut cfg = WebhookConfig::new("d", WebhookKind::DingTalk, "http://h/robot");
        cfg.secret = Some("SEC0123456789abcdef".into());
        let r = render(&cfg, &message(), 1_700_000_000_000);
        assert_eq!(
            r.url,
            "http://h/robot?timestamp=1700000000000\
             &sign=TSZbRFUuvaSQaRKUpF970OPCb2%2FLcQAP3wOvwZIzBZk%3D"
        );
    }

    #[test]
    fn feishu_signed_carries_seconds_and_sign_in_the_body() {
        let mut cfg = WebhookConfig::new(
            "f",
            WebhookKind::Feishu,
            "https://open.feishu.cn/open-apis/bot/v2/hook/H",
        );
        cfg.secret = Some("feishu-secret".into());
        let r = render(&cfg, &message(), 1_700_000_000_999);
        assert_eq!(r.url, cfg.url);
        assert_eq!(r.body["msg_type"], "text");
        assert_eq!(r.body["timestamp"], "1700000000");
        assert_eq!(
            r.body["sign"],
            "OrBzY1Y01Gq+HgJsl+7OfWcMVwc7YocohQm5iiZwjhU="
        );
        let text = r.body["content"]["text"].as_str().unwrap();
        assert_eq!(
            text,
            "【紧急】东门有人翻越围墙\n网格：城关镇 / 东门社区 / 第三网格\n案件：AJ-20261122-0042\n\
             时间：2026-11-22 16:00:00（北京时间）\n\
             详情：https://hub.example/cases/AJ-20261122-0042\n\n\
             摄像头 3 号在东门围墙处检测到人员翻越。"
        );
    }

    #[test]
    fn feishu_unsigned_has_no_timestamp_or_sign() {
        let cfg = WebhookConfig::new("f", WebhookKind::Feishu, "https://open.feishu.cn/h/H");
        let r = render(&cfg, &message(), NOW_MS);
        let keys: Vec<&String> = r.body.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["content", "msg_type"]);
    }

    #[test]
    fn generic_is_our_documented_json_signed_over_the_exact_body() {
        let mut cfg = WebhookConfig::new("ops", WebhookKind::Generic, "http://h/hook");
        cfg.secret = Some("generic-secret".into());
        let r = render(&cfg, &message(), 1_700_000_000_000);
        assert_eq!(
            r.body,
            json!({
                "schema_version": 1,
                "webhook_id": "ops",
                "case_id": "AJ-20261122-0042",
                "title": "东门有人翻越围墙",
                "text": "摄像头 3 号在东门围墙处检测到人员翻越。",
                "severity": "critical",
                "cell_path": "城关镇 / 东门社区 / 第三网格",
                "url": "https://hub.example/cases/AJ-20261122-0042",
                "mention_phones": [],
                "at": "2026-11-22T08:00:00.000Z",
                "sent_at": "2023-11-14T22:13:20.000Z",
            })
        );
        let (name, value) = &r.headers[0];
        assert_eq!(*name, "X-Signature");
        assert_eq!(
            *value,
            sign::generic_signature("generic-secret", &r.body_bytes())
        );
        // The bytes are the compact serialisation the receiver will hash.
        assert_eq!(
            r.body_bytes(),
            serde_json::to_vec(&r.body).unwrap(),
            "Display and to_vec must agree"
        );
    }

    #[test]
    fn a_secret_on_wecom_is_ignored_by_render() {
        let mut cfg = WebhookConfig::new("w", WebhookKind::WeCom, "https://q/send?key=K");
        cfg.secret = Some("x".into());
        let r = render(&cfg, &message(), NOW_MS);
        assert_eq!(r.url, cfg.url);
        assert!(r.headers.is_empty());
    }

    #[test]
    fn long_text_is_cut_on_a_char_boundary_keeping_the_head() {
        let mut msg = message();
        msg.text = "很长的描述".repeat(2000);
        let cfg = WebhookConfig::new("w", WebhookKind::WeCom, "https://q/send?key=K");
        let r = render(&cfg, &msg, NOW_MS);
        let content = r.body["markdown"]["content"].as_str().unwrap();
        assert!(
            content.len() <= WECOM_MARKDOWN_MAX_BYTES,
            "{}",
            content.len()
        );
        assert!(content.len() > WECOM_MARKDOWN_MAX_BYTES - 8);
        assert!(content.contains("[查看案件]"));
        assert!(content.ends_with('…'));
    }

    #[test]
    fn fit_handles_short_long_and_absurd_heads() {
        assert_eq!(fit("h".into(), "", 10), "h");
        assert_eq!(fit("h".into(), "abc", 10), "h\n\nabc");
        assert_eq!(fit("h".into(), "abcdefghij", 10), "h\n\nabcd…");
        let cut = fit("标题".repeat(10), "text", 10);
        assert!(cut.len() <= 10 && cut.ends_with('…'), "{cut}");
    }

    fn hostile() -> Message {
        let mut m = message();
        m.title = "[点此处理](https://evil.example/x) **急** <img src=x onerror=alert(1)>".into();
        m.cell_path = "城关镇\n> 网格：伪造 # _x_ `c` ~~s~~ |t| ![i](u)".into();
        m.text = "规则 [链接](http://evil.example)\n#### 伪造标题\n> 引用 <at user_id=\"all\">所有人</at>\u{7}".into();
        m
    }

    /// Markdown (or HTML) from the hostile values that could act as markup in a rendered
    /// body. (The hub's own `[查看案件](url)` is counted by the callers.)
    fn assert_no_markup(s: &str) {
        for bad in [
            "[点", "**急", "<img", "<at", "`c`", "~~", "![", "_x_", "\u{7}",
        ] {
            assert!(!s.contains(bad), "{bad:?} survived in {s}");
        }
        for line in s.lines() {
            assert!(
                !line.contains("伪造")
                    || !(line.starts_with('#') || line.starts_with("> 网格：伪造")),
                "forged line {line:?} in {s}"
            );
        }
    }

    #[test]
    fn hostile_values_are_escaped_in_wecom_markdown() {
        let cfg = WebhookConfig::new("w", WebhookKind::WeCom, "https://q/send?key=K");
        let r = render(&cfg, &hostile(), NOW_MS);
        let content = r.body["markdown"]["content"].as_str().unwrap();
        assert_no_markup(content);
        assert!(
            content.contains("［点此处理］（https://evil.example/x）"),
            "{content}"
        );
        // The hub's own markup is intact: label colour, bold title, the case link.
        assert!(
            content.starts_with("<font color=\"warning\">【紧急】</font> **"),
            "{content}"
        );
        assert!(
            content.contains("> [查看案件](https://hub.example/cases/"),
            "{content}"
        );
        assert_eq!(content.matches("](").count(), 1, "{content}");
        // The free text keeps its lines, but none of them is a heading or a quote now.
        assert!(
            content.contains("\n＃＃＃＃ 伪造标题\n＞ 引用"),
            "{content}"
        );
    }

    #[test]
    fn hostile_values_are_escaped_in_dingtalk_markdown() {
        let cfg = WebhookConfig::new("d", WebhookKind::DingTalk, "http://h/robot");
        let r = render(&cfg, &hostile(), NOW_MS);
        let text = r.body["markdown"]["text"].as_str().unwrap();
        assert_no_markup(text);
        assert!(text.starts_with("#### 【紧急】［点此处理］"), "{text}");
        assert_eq!(text.matches("](").count(), 1, "{text}");
        assert!(text.contains("- 网格：城关镇 ＞ 网格：伪造"), "{text}");
        let title = r.body["markdown"]["title"].as_str().unwrap();
        assert!(!title.contains('<') && !title.contains('\n'), "{title}");
    }

    #[test]
    fn hostile_values_cannot_mention_everyone_or_forge_lines_in_plain_text() {
        for kind in [WebhookKind::Feishu, WebhookKind::WeCom] {
            let mut cfg = WebhookConfig::new("f", kind, "https://open.feishu.cn/h/H");
            cfg.mention_phones = true;
            let r = render(&cfg, &hostile(), NOW_MS);
            let text = r.body["content"]["text"]
                .as_str()
                .or(r.body["text"]["content"].as_str())
                .unwrap();
            assert!(!text.contains('<') && !text.contains('>'), "{text}");
            assert!(text.contains("＜at user_id=\"all\"＞"), "{text}");
            assert!(!text.contains('\u{7}'), "{text}");
            assert!(
                !text.lines().any(|l| l.starts_with("> 网格：伪造")),
                "forged line in {text}"
            );
        }
    }

    #[test]
    fn escaping_leaves_ordinary_text_alone() {
        for s in [
            "城关镇 / 东门社区 / 第三网格",
            "AJ-20261122-0042",
            "night-yard 3.5 m",
        ] {
            assert_eq!(markdown_value(s), s);
            assert_eq!(plain_value(s), s);
        }
    }

    #[test]
    fn debug_output_hides_the_url_query() {
        let cfg = WebhookConfig::new("w", WebhookKind::WeCom, "https://q/send?key=SECRETKEY");
        let text = format!("{:?}", render(&cfg, &message(), NOW_MS));
        assert!(!text.contains("SECRETKEY"), "{text}");
    }
}
