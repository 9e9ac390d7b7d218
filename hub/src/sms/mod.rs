//! SMS: case notifications by text message, through Aliyun or Tencent Cloud, with delivery
//! receipts recorded on the case.
//!
//! ```text
//! dispatcher ──SmsJob (bounded queue; full: dropped, counted)──▶ SmsChannel task ──signed HTTP──▶ provider
//!     ▲                                                              │  every poll_interval_s: pull receipts
//!     └──────────── DeliveryReport (sms, pending + message id → delivered / failed) ◀──┘
//! ```
//!
//! - [`config`]: the `[sms]` section and the secret file.
//! - [`sign`]: the providers' request signatures (Aliyun V3 `ACS3-HMAC-SHA256`, Tencent
//!   `TC3-HMAC-SHA256`), pure.
//! - [`provider`]: [`SmsClient`], the two calls per provider (send, receipts).
//! - [`sender`]: [`SmsChannel`], the queue, the sending task and the receipt pull.
//!
//! Who gets an SMS is the dispatcher's decision (`dispatch::notify`): people whose roster
//! `channels` include `sms` with every notification; people notified by app only, once, when
//! a critical case is still unacknowledged `fallback_after_s` after it was dispatched.

pub mod config;
pub mod provider;
pub mod sender;
pub mod sign;

pub use config::{SmsConfig, SmsProvider, SmsSecret};
pub use provider::{Receipt, SmsClient};
pub use sender::{CHANNEL, Resumed, SmsChannel, SmsJob};

/// What went wrong talking to the provider. Never carries the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SmsError {
    /// The HTTP client or the request could not be built.
    #[error("sms client: {detail}")]
    Client { detail: String },
    /// No complete answer within the timeout.
    #[error("no answer within {after_ms} ms")]
    Timeout { after_ms: u64 },
    /// Connecting, sending or reading failed.
    #[error("transport: {detail}")]
    Transport { detail: String },
    /// A non-2xx status without the provider's JSON.
    #[error("HTTP {status}: {body}")]
    Http { status: u16, body: String },
    /// The provider answered with an error code (a bad signature, an unapproved template…).
    #[error("refused: {code}: {message}")]
    Refused { code: String, message: String },
    /// The answer lacked what the API documents.
    #[error("unexpected answer: {detail}")]
    Answer { detail: String },
}
