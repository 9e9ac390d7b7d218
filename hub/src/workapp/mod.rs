//! Work-app messages (企业微信 / 政务微信 应用消息): each notification to a person whose roster
//! `channels` include `work_app` also goes to them personally, from the county's own WeCom
//! app, as a text card linking to the case.
//!
//! ```text
//! dispatcher ──WorkJob (bounded queue; full: dropped, counted, recorded failed)──▶ WorkAppChannel task
//!     ▲     gettoken (cached until 5 min before it expires; a token refused as expired is
//!     │     fetched again, once) · user/getuserid by mobile (cached) · message/send (textcard)
//!     └──────── DeliveryReport (work_app: delivered + msgid, or failed + errcode) ◀──┘
//! ```
//!
//! - [`config`]: the `[work_app]` section (the Secret is in a file of its own).
//! - [`client`]: [`WeComClient`], the three calls.
//! - [`channel`]: [`WorkAppChannel`], the queue and the sending task.
//!
//! WeCom gives no delivery receipt for app messages: accepted (errcode 0, no `invaliduser`)
//! is recorded `delivered`. One attempt per message, as for SMS: the app push went out anyway.
//! 政务微信 is WeCom's government edition with the same API at another host (`endpoint`).

pub mod channel;
pub mod client;
pub mod config;

pub use channel::{CHANNEL, WorkAppChannel, WorkJob};
pub use client::{Card, WeComClient};
pub use config::{WorkAppConfig, WorkAppKind, WorkAppSecret};

/// What went wrong talking to the work app. Never carries the Secret or a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkAppError {
    /// The HTTP client could not be built.
    #[error("work app client: {detail}")]
    Client { detail: String },
    /// No complete answer within the timeout.
    #[error("no answer within {after_ms} ms")]
    Timeout { after_ms: u64 },
    /// Connecting, sending or reading failed.
    #[error("transport: {detail}")]
    Transport { detail: String },
    /// Not the API's JSON.
    #[error("HTTP {status}: {body}")]
    Http { status: u16, body: String },
    /// The API answered with an error code (`errcode`), e.g. 46004: no such member.
    #[error("refused: {code}: {message}")]
    Refused { code: i64, message: String },
    /// Sent, but WeCom named the member invalid (`invaliduser`): not in the app's visible
    /// range.
    #[error("not delivered to {user}: not a member the app may reach")]
    InvalidUser { user: String },
    /// The answer lacked what the API documents.
    #[error("unexpected answer: {detail}")]
    Answer { detail: String },
}
