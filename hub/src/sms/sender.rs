//! [`SmsChannel`]: the queue in front of the provider, the one task that sends, and the
//! receipt pull.
//!
//! - Queue: bounded (`[sms] queue`). When full, a new message is dropped at once (never
//!   waited for: the dispatcher must not stall behind a slow provider), counted in
//!   `hub_sms_dropped` and recorded on the case as failed by the caller.
//! - Sending: one message at a time, one attempt. No retry: a request that timed out may have
//!   been sent, and an older grid member getting the same alarm twice is worse than an
//!   operator seeing `failed` on the case (the app push went out anyway).
//! - Receipts: every `poll_interval_s` the task pulls reports for messages still waiting,
//!   bounded per pull (Aliyun: the 50 oldest, one query each; Tencent: one pull of up to 100).
//!   A message without a final report after a day is recorded as failed. The waiting set is
//!   kept on the cases themselves (an `sms` delivery, pending, with the provider's message id):
//!   at start the dispatcher hands it back ([`Resumed`]), so receipts due across a restart
//!   still reach their case.
//!
//! Every outcome goes back to the dispatcher as a [`DeliveryReport`] (channel `sms`, the
//! provider's message id as its reference), which records it on the case.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::provider::{Receipt, Sent, SmsClient};
use crate::case::{CaseId, DeliveryOutcome, DeliveryTarget};
use crate::metrics::{HubMetrics, bump};
use crate::push::DeliveryReport;

/// The channel name on the case's deliveries.
pub const CHANNEL: &str = "sms";
/// Aliyun receipt queries per pull.
const ALIYUN_QUERIES_PER_PULL: usize = 50;
/// A message still without a final report after this long is given up.
const RECEIPT_WAIT_MS: i64 = 24 * 3600 * 1000;
/// Most messages waiting for a receipt; beyond, the oldest is given up (recorded failed).
const MAX_WAITING: usize = 10_000;

/// One message to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmsJob {
    pub case: CaseId,
    pub person: String,
    pub step: u32,
    pub phone: String,
    /// The template's second variable: what happened and where, short.
    pub what: String,
}

/// A message sent and waiting for its receipt.
#[derive(Debug)]
struct Waiting {
    job: SmsJob,
    sent: Sent,
}

/// A message sent before a restart and still waiting for its receipt, as its case records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resumed {
    pub case: CaseId,
    pub person: String,
    pub step: u32,
    /// The provider's message id.
    pub id: String,
    /// The number it went to (the roster's, for Aliyun's query).
    pub phone: String,
    /// When it was recorded as sent, ms since the epoch.
    pub at_ms: i64,
}

/// Handle to the SMS task. Dropping every handle ends the task.
#[derive(Clone, Debug)]
pub struct SmsChannel {
    tx: mpsc::Sender<SmsJob>,
    metrics: Arc<HubMetrics>,
}

impl SmsChannel {
    /// Starts the task, waiting for the receipts of `resumed` as of its own; outcomes go to
    /// `results`.
    pub fn start(
        client: SmsClient,
        queue: usize,
        poll: Duration,
        metrics: Arc<HubMetrics>,
        results: mpsc::Sender<DeliveryReport>,
        resumed: Vec<Resumed>,
    ) -> Self {
        let (tx, rx) = mpsc::channel(queue.max(1));
        let waiting = resumed
            .into_iter()
            .map(|r| {
                let w = Waiting {
                    job: SmsJob {
                        case: r.case,
                        person: r.person,
                        step: r.step,
                        phone: r.phone.clone(),
                        what: String::new(),
                    },
                    sent: Sent {
                        id: r.id.clone(),
                        phone: r.phone,
                        at_ms: r.at_ms,
                    },
                };
                (r.id, w)
            })
            .collect();
        tokio::spawn(run(client, rx, poll, metrics.clone(), results, waiting));
        Self { tx, metrics }
    }

    /// Queues `job`; `false` when the queue is full (the job is dropped and counted).
    pub fn enqueue(&self, job: SmsJob) -> bool {
        match self.tx.try_send(job) {
            Ok(()) => true,
            Err(e) => {
                bump(&self.metrics.sms_dropped);
                let job = match e {
                    mpsc::error::TrySendError::Full(j) | mpsc::error::TrySendError::Closed(j) => j,
                };
                tracing::warn!(case = %job.case, person = %job.person, "sms queue full; message dropped");
                false
            }
        }
    }
}

fn report(job: &SmsJob, outcome: DeliveryOutcome, reference: Option<String>) -> DeliveryReport {
    DeliveryReport {
        case: job.case.clone(),
        target: DeliveryTarget::Person(job.person.clone()),
        channel: CHANNEL.to_owned(),
        step: job.step,
        outcome,
        attempts: 1,
        reference,
    }
}

async fn run(
    client: SmsClient,
    mut jobs: mpsc::Receiver<SmsJob>,
    poll: Duration,
    metrics: Arc<HubMetrics>,
    results: mpsc::Sender<DeliveryReport>,
    mut waiting: BTreeMap<String, Waiting>,
) {
    let provider = client.provider().name();
    if !waiting.is_empty() {
        tracing::info!(
            provider,
            waiting = waiting.len(),
            "sms receipts still owed from before the restart"
        );
    }
    let mut tick = tokio::time::interval(poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            job = jobs.recv() => {
                let Some(job) = job else { break };
                let at_ms = protocol::UtcMillis::now().0;
                match client.send(&job.phone, job.case.as_str(), &job.what).await {
                    Ok(id) => {
                        bump(&metrics.sms_sent);
                        tracing::info!(provider, case = %job.case, person = %job.person, message_id = %id, "sms sent");
                        let _ = results.send(report(&job, DeliveryOutcome::Pending, Some(id.clone()))).await;
                        let sent = Sent { id: id.clone(), phone: job.phone.clone(), at_ms };
                        waiting.insert(id, Waiting { job, sent });
                        if waiting.len() > MAX_WAITING {
                            let oldest = waiting.iter().min_by_key(|(_, w)| w.sent.at_ms).map(|(k, _)| k.clone());
                            if let Some(w) = oldest.and_then(|k| waiting.remove(&k)) {
                                give_up(&w, "too many messages waiting for receipts", &metrics, &results).await;
                            }
                        }
                    }
                    Err(error) => {
                        bump(&metrics.sms_failed);
                        tracing::warn!(provider, case = %job.case, person = %job.person, %error, "sms not sent");
                        let outcome = DeliveryOutcome::Failed { error: error.to_string() };
                        let _ = results.send(report(&job, outcome, None)).await;
                    }
                }
            }
            _ = tick.tick(), if !waiting.is_empty() => {
                pull(&client, &mut waiting, &metrics, &results).await;
            }
        }
    }
}

async fn pull(
    client: &SmsClient,
    waiting: &mut BTreeMap<String, Waiting>,
    metrics: &HubMetrics,
    results: &mpsc::Sender<DeliveryReport>,
) {
    let mut oldest: Vec<&Waiting> = waiting.values().collect();
    oldest.sort_by_key(|w| w.sent.at_ms);
    let ask: Vec<Sent> = oldest
        .iter()
        .take(ALIYUN_QUERIES_PER_PULL)
        .map(|w| w.sent.clone())
        .collect();
    match client.receipts(&ask).await {
        Err(error) => {
            tracing::warn!(provider = client.provider().name(), %error, waiting = waiting.len(), "sms receipts not pulled; next interval");
        }
        Ok(receipts) => {
            for (id, receipt) in receipts {
                let outcome = match receipt {
                    Receipt::Waiting => continue,
                    Receipt::Delivered => DeliveryOutcome::Delivered,
                    Receipt::Failed(code) => DeliveryOutcome::Failed {
                        error: format!("carrier report {code}"),
                    },
                };
                // Tencent's pull returns every new report of the app, ours or not.
                let Some(w) = waiting.remove(&id) else {
                    continue;
                };
                if outcome == DeliveryOutcome::Delivered {
                    bump(&metrics.sms_delivered);
                } else {
                    bump(&metrics.sms_failed);
                }
                tracing::info!(case = %w.job.case, person = %w.job.person, message_id = %id, ?outcome, "sms receipt");
                let _ = results.send(report(&w.job, outcome, Some(id))).await;
            }
        }
    }
    let now = protocol::UtcMillis::now().0;
    let stale: Vec<String> = waiting
        .iter()
        .filter(|(_, w)| now - w.sent.at_ms > RECEIPT_WAIT_MS)
        .map(|(k, _)| k.clone())
        .collect();
    for k in stale {
        if let Some(w) = waiting.remove(&k) {
            give_up(&w, "no delivery receipt within a day", metrics, results).await;
        }
    }
}

async fn give_up(
    w: &Waiting,
    why: &str,
    metrics: &HubMetrics,
    results: &mpsc::Sender<DeliveryReport>,
) {
    bump(&metrics.sms_failed);
    tracing::warn!(case = %w.job.case, person = %w.job.person, message_id = %w.sent.id, why, "sms receipt given up");
    let outcome = DeliveryOutcome::Failed {
        error: why.to_owned(),
    };
    let _ = results
        .send(report(&w.job, outcome, Some(w.sent.id.clone())))
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sms::{SmsConfig, SmsSecret};

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_instead_of_waiting() {
        // A provider that accepts the connection and never answers: the one message in flight
        // holds the task, so the queue (1) fills.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cfg: SmsConfig = toml::from_str(&format!(
            "provider = \"aliyun\"\nendpoint = \"http://{addr}\"\nsign_name = \"s\"\n\
             template_id = \"SMS_1\"\nkey_id = \"k\"\nsecret_file = \"x\"\ntimeout_ms = 60000\n"
        ))
        .unwrap();
        let client = SmsClient::new(cfg, SmsSecret::new("s"), true).unwrap();
        let metrics = Arc::new(HubMetrics::default());
        let (results, _rx) = mpsc::channel(16);
        let channel = SmsChannel::start(
            client,
            1,
            Duration::from_secs(60),
            metrics.clone(),
            results,
            vec![],
        );
        let job = |n: u32| SmsJob {
            case: CaseId::for_alert(&format!("a{n}")),
            person: "p".into(),
            step: 0,
            phone: "13800000001".into(),
            what: "x".into(),
        };
        let accepted = (0..5).filter(|&n| channel.enqueue(job(n))).count();
        // At most one in flight and one waiting; the rest dropped at once, each counted.
        assert!((1..=2).contains(&accepted), "{accepted}");
        let dropped = metrics
            .sms_dropped
            .load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(dropped as usize, 5 - accepted);
        drop(listener);
    }
}
