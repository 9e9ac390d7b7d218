//! Group-chat bots (群机器人): telling a WeCom, DingTalk or Feishu group, or our own HTTP
//! endpoint, about a case, alongside the per-person MQTT notices.
//!
//! ```text
//! WebhookConfig (validate: every problem at once)      Message (one case, one notice)
//!        └───────────────┬──────────────────────────────────┘
//!                        ▼
//!   render(cfg, msg, now_ms) → Rendered { url, headers, body }     pure: no I/O, no clock
//!     wecom    markdown, or text with mentioned_mobile_list; never signed
//!     dingtalk markdown + at.atMobiles; 加签: &timestamp=<ms>&sign=<urlencoded base64>
//!     feishu   text; 签名校验: "timestamp" (seconds) and "sign" in the body
//!     generic  our JSON (schema_version 1); X-Signature: sha256=<hex HMAC of the body>
//!                        ▼
//!   WebhookSender::send: POST, per-attempt timeout, classify(kind, status, body),
//!     jittered exponential back-off between retryable failures → DeliveryReport
//! ```
//!
//! Invariants:
//!
//! - Every attempt is rendered afresh with the clock's current time, so a retry after a long
//!   back-off still carries a timestamp the service accepts (DingTalk and Feishu refuse
//!   signatures more than an hour old).
//! - The bots answer HTTP 200 with an error code in the body; [`classify()`] reads the code, so
//!   "200" is never taken for "delivered" on its own.
//! - Delivery is at least once: an attempt that times out after the service received it is
//!   retried, and the group may see the notice twice. A duplicate is better than silence.
//! - Secrets and webhook URLs (whose query carries the bot's key or token) never appear in
//!   `Debug` output, log events or error messages; logs name the webhook by its `id`.
//!
//! Files: [`config`] (kinds, config, validation), [`message`], [`sign`] (the signatures),
//! [`render`](mod@render), [`classify`](mod@classify) (responses → [`DeliveryError`]), [`sender`].

pub mod classify;
pub mod config;
pub mod message;
pub mod render;
pub mod sender;
pub mod sign;

pub use classify::{DeliveryError, Refusal, classify};
pub use config::{ConfigError, ConfigIssue, WebhookConfig, WebhookKind, validate_all};
pub use message::Message;
pub use render::{Rendered, render};
pub use sender::{DeliveryReport, Outcome, ProxyPolicy, SenderError, WebhookSender};
