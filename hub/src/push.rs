//! Push: telling people about a case. Owner: [`Pusher`].
//!
//! - Every person notified gets a [`Notification`] on `{prefix}/person/{id}/notify` (QoS 1), read
//!   by the grid member's phone app. Recorded on the case as `pending` (handed to the broker;
//!   the phone's own receipt is the app's business, issue 6).
//! - Every webhook attached to the notified cell ([`WebhookRoute`]) gets the same news in its
//!   service's format (WeCom, DingTalk, Feishu, generic JSON), sent with retries in a task of
//!   its own; the outcome comes back to the dispatcher as a [`DeliveryReport`] and is recorded
//!   on the case (`delivered` or `failed` with the reason and attempts).
//! - Queue policy: webhook sends in flight are capped; beyond the cap a send is dropped,
//!   counted (`hub_notifications_dropped_total`) and recorded on the case as failed.

use std::sync::Arc;

use protocol::{Severity, Topics, UtcMillis};
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, mpsc};

use crate::case::{Case, CaseId, CellRef, DeliveryOutcome, DeliveryTarget, NotifyReason};
use crate::link::Link;
use crate::metrics::{HubMetrics, bump};
use crate::webhook::{self, WebhookConfig, WebhookSender};

/// A webhook and the cell or department whose notifications it hears.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookRoute {
    /// A cell's or a department's code: the webhook hears every notification made there.
    pub cell: String,
    pub webhook: WebhookConfig,
}

impl WebhookRoute {
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.cell.is_empty() {
            p.push("cell: empty".to_owned());
        }
        if let Err(e) = self.webhook.validate() {
            for i in e.issues {
                p.push(format!("webhook.{}: {}", i.path, i.message));
            }
        }
        p
    }
}

/// What a person's app receives (JSON on `{prefix}/person/{id}/notify`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Notification {
    pub schema: u32,
    /// The case (一案一码).
    pub case: CaseId,
    /// The notification round: 0 at dispatch, one more per climb, return or reopen.
    pub step: u32,
    pub reason: NotifyReason,
    pub severity: Severity,
    pub kind: protocol::AlertKind,
    pub rule: String,
    pub site: String,
    /// The cell the person is notified for.
    pub cell: CellRef,
    /// Names from the top down: `武定县 / 狮山镇 / 近城社区 / …`.
    pub path: String,
    pub title: String,
    /// Alerts in the case so far.
    pub count: u64,
    pub opened_at: UtcMillis,
    /// When the current deadline falls, if one runs.
    pub deadline: Option<UtcMillis>,
    pub time: UtcMillis,
    /// Link to the case on the dashboard, when configured.
    pub url: Option<String>,
}

impl Notification {
    /// Below the title, for group chats and work-app cards: the cell's path, then site, rule
    /// and the deadline if one runs.
    pub fn details(&self) -> String {
        format!(
            "{}\n{} · {} · {}",
            self.path,
            self.site,
            self.rule,
            self.deadline
                .map(|d| format!("deadline {d}"))
                .unwrap_or_default()
        )
    }
}

pub const NOTIFICATION_SCHEMA: u32 = 1;

/// The outcome of one webhook send, for the case's record.
#[derive(Debug, Clone)]
pub struct DeliveryReport {
    pub case: CaseId,
    pub target: DeliveryTarget,
    pub channel: String,
    pub step: u32,
    pub outcome: DeliveryOutcome,
    pub attempts: u32,
    /// The provider's id for the message (an SMS's `BizId` / `SerialNo`), kept on the case.
    pub reference: Option<String>,
}

/// Owner of the push channels.
#[derive(Debug, Clone)]
pub struct Pusher {
    link: Link,
    topics: Topics,
    routes: Arc<Vec<WebhookRoute>>,
    sender: Option<WebhookSender>,
    dashboard_url: Option<String>,
    metrics: Arc<HubMetrics>,
    in_flight: Arc<Semaphore>,
}

/// Most webhook sends at once (each may wait through retries).
const MAX_WEBHOOKS_IN_FLIGHT: usize = 256;

impl Pusher {
    pub fn new(
        link: Link,
        topics: Topics,
        routes: Vec<WebhookRoute>,
        dashboard_url: Option<String>,
        metrics: Arc<HubMetrics>,
    ) -> Result<Self, String> {
        let sender = if routes.is_empty() {
            None
        } else {
            Some(
                WebhookSender::new(webhook::ProxyPolicy::FromEnvironment)
                    .map_err(|e| e.to_string())?,
            )
        };
        Ok(Self {
            link,
            topics,
            routes: Arc::new(routes),
            sender,
            dashboard_url,
            metrics,
            in_flight: Arc::new(Semaphore::new(MAX_WEBHOOKS_IN_FLIGHT)),
        })
    }

    pub fn link(&self) -> &Link {
        &self.link
    }

    pub fn notification(
        &self,
        case: &Case,
        cell: &CellRef,
        step: u32,
        reason: NotifyReason,
        now: UtcMillis,
    ) -> Notification {
        let path = case
            .path
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(" / ");
        Notification {
            schema: NOTIFICATION_SCHEMA,
            case: case.id.clone(),
            step,
            reason,
            severity: case.severity,
            kind: case.kind,
            rule: case.rule.clone(),
            site: case.site.clone(),
            cell: cell.clone(),
            title: title(case, reason),
            path,
            count: case.count,
            opened_at: case.opened_at,
            deadline: case.deadline.as_ref().map(|d| d.at),
            time: now,
            url: self
                .dashboard_url
                .as_ref()
                .map(|u| format!("{}/m#case={}", u.trim_end_matches('/'), case.id)),
        }
    }

    /// Publishes to one person's topic. `Pending` on success: the broker has it queued.
    pub async fn person(&self, person: &str, n: &Notification) -> DeliveryOutcome {
        let payload = match serde_json::to_vec(n) {
            Ok(p) => p,
            Err(e) => {
                return DeliveryOutcome::Failed {
                    error: e.to_string(),
                };
            }
        };
        match self
            .link
            .publish(&self.topics.notify(person), payload, false)
            .await
        {
            Ok(()) => {
                bump(&self.metrics.notifications_sent);
                DeliveryOutcome::Pending
            }
            Err(e) => {
                bump(&self.metrics.notifications_failed);
                DeliveryOutcome::Failed {
                    error: e.to_string(),
                }
            }
        }
    }

    /// Starts the webhook sends for a notification at `n.cell`; each outcome arrives on
    /// `results`. Returns the webhooks started and those dropped (queue full).
    pub fn webhooks(
        &self,
        n: &Notification,
        phones: Vec<String>,
        results: &mpsc::Sender<DeliveryReport>,
    ) -> (Vec<String>, Vec<String>) {
        let Some(sender) = &self.sender else {
            return (Vec::new(), Vec::new());
        };
        let (mut started, mut dropped) = (Vec::new(), Vec::new());
        for route in self.routes.iter().filter(|r| r.cell == n.cell.code) {
            let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
                bump(&self.metrics.notifications_dropped);
                dropped.push(route.webhook.id.clone());
                continue;
            };
            started.push(route.webhook.id.clone());
            let msg = webhook::Message {
                case_id: n.case.to_string(),
                title: n.title.clone(),
                text: format!("{}\n{}", n.title, n.details()),
                severity: n.severity,
                cell_path: n.path.clone(),
                url: n.url.clone(),
                mention_phones: phones.clone(),
                at: n.time,
            };
            let (sender, cfg, results, metrics) = (
                sender.clone(),
                route.webhook.clone(),
                results.clone(),
                self.metrics.clone(),
            );
            let (case, step) = (n.case.clone(), n.step);
            tokio::spawn(async move {
                let report = sender.send(&cfg, &msg).await;
                let outcome = match &report.outcome {
                    webhook::Outcome::Delivered => {
                        bump(&metrics.notifications_sent);
                        DeliveryOutcome::Delivered
                    }
                    webhook::Outcome::Failed { error, .. } => {
                        bump(&metrics.notifications_failed);
                        DeliveryOutcome::Failed {
                            error: error.to_string(),
                        }
                    }
                };
                let _ = results
                    .send(DeliveryReport {
                        case,
                        target: DeliveryTarget::Webhook(cfg.id.clone()),
                        channel: cfg.kind.name().to_owned(),
                        step,
                        outcome,
                        attempts: report.attempts,
                        reference: None,
                    })
                    .await;
                drop(permit);
            });
        }
        (started, dropped)
    }
}

fn title(case: &Case, reason: NotifyReason) -> String {
    let what = match reason {
        NotifyReason::NewCase => "新案件",
        NotifyReason::AckOverdue => "超时未签收，已提级",
        NotifyReason::ResolveOverdue => "超时未办结，已提级",
        NotifyReason::Returned => "案件退回改派",
        NotifyReason::Reopened => "案件重新打开",
        NotifyReason::Routed => "分类交办",
        NotifyReason::Transferred => "案件交办，请按时办结",
        NotifyReason::Assist => "请协助办理",
        NotifyReason::Supervised => "上级督办",
        NotifyReason::SupervisionOverdue => "督办超时，请尽快办结",
        NotifyReason::TaskOverdue => "交办部门超时未办结",
        NotifyReason::EscalatedByHand => "案件提级",
    };
    format!(
        "[{}] {what}: {} {}",
        severity_zh(case.severity),
        case.rule,
        case.id
    )
}

fn severity_zh(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "紧急",
        Severity::Major => "重要",
        Severity::Minor => "一般",
        Severity::Info => "提示",
    }
}
