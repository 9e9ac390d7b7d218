//! [`Message`]: what a group is told about one case, before it is shaped for a service.

use protocol::Severity;
use protocol::time::UtcMillis;
use serde::{Deserialize, Serialize};

/// One notice about a case. Plain text throughout: [`render`](super::render()) adds the
/// service's formatting. Serialised as-is (plus a schema version) for `generic` webhooks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// The case (工单) the notice is about.
    pub case_id: String,
    /// One line: what happened (`东门有人翻越围墙`).
    pub title: String,
    /// The details; may run to several lines. Cut to fit the service's limit (the header
    /// lines, link and mentions are kept).
    pub text: String,
    /// How urgent; shown as a label (`【紧急】`).
    pub severity: Severity,
    /// The grid cell's names from the top (`城关镇 / 东门社区 / 第三网格`).
    pub cell_path: String,
    /// A link to the case on the dashboard, if it has one.
    pub url: Option<String>,
    /// Phone numbers of the people to @, used when the webhook has `mention_phones`.
    pub mention_phones: Vec<String>,
    /// When the case happened.
    pub at: UtcMillis,
}
