//! [`WorkAppChannel`]: the queue in front of the work app and the one task that sends.
//!
//! - Queue: bounded (`[work_app] queue`). When full, a new message is dropped at once (the
//!   dispatcher never waits on a slow API), counted in `hub_work_app_dropped` and recorded on
//!   the case as failed by the caller.
//! - Sending: one message at a time, one attempt (besides the token renewal): a request that
//!   timed out may have been delivered, and the app push went out anyway.
//! - Every outcome goes back to the dispatcher as a [`DeliveryReport`] (channel `work_app`,
//!   WeCom's `msgid` as its reference), which records it on the case.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::WeComClient;
use super::client::Card;
use crate::case::{CaseId, DeliveryOutcome, DeliveryTarget};
use crate::metrics::{HubMetrics, bump};
use crate::push::DeliveryReport;

/// The channel name on the case's deliveries (and the roster's channel).
pub const CHANNEL: &str = "work_app";

/// One message to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkJob {
    pub case: CaseId,
    pub person: String,
    pub step: u32,
    /// The roster's number, by which the member is found.
    pub phone: String,
    pub card: Card,
}

/// Handle to the work-app task. Dropping every handle ends the task.
#[derive(Clone, Debug)]
pub struct WorkAppChannel {
    tx: mpsc::Sender<WorkJob>,
    metrics: Arc<HubMetrics>,
}

impl WorkAppChannel {
    /// Starts the task; outcomes go to `results`.
    pub fn start(
        client: WeComClient,
        queue: usize,
        metrics: Arc<HubMetrics>,
        results: mpsc::Sender<DeliveryReport>,
    ) -> Self {
        let (tx, rx) = mpsc::channel(queue.max(1));
        tokio::spawn(run(client, rx, metrics.clone(), results));
        Self { tx, metrics }
    }

    /// Queues `job`; `false` when the queue is full (the job is dropped and counted).
    pub fn enqueue(&self, job: WorkJob) -> bool {
        match self.tx.try_send(job) {
            Ok(()) => true,
            Err(e) => {
                bump(&self.metrics.work_app_dropped);
                let job = match e {
                    mpsc::error::TrySendError::Full(j) | mpsc::error::TrySendError::Closed(j) => j,
                };
                tracing::warn!(case = %job.case, person = %job.person, "work app queue full; message dropped");
                false
            }
        }
    }
}

async fn run(
    client: WeComClient,
    mut jobs: mpsc::Receiver<WorkJob>,
    metrics: Arc<HubMetrics>,
    results: mpsc::Sender<DeliveryReport>,
) {
    while let Some(job) = jobs.recv().await {
        let sent = match client.userid(&job.phone).await {
            Ok(user) => client.send(&user, &job.card).await,
            Err(e) => Err(e),
        };
        let (outcome, reference) = match sent {
            Ok(msgid) => {
                bump(&metrics.work_app_sent);
                tracing::info!(case = %job.case, person = %job.person, %msgid, "work app message sent");
                (DeliveryOutcome::Delivered, Some(msgid))
            }
            Err(error) => {
                bump(&metrics.work_app_failed);
                tracing::warn!(case = %job.case, person = %job.person, %error, "work app message not sent");
                (
                    DeliveryOutcome::Failed {
                        error: error.to_string(),
                    },
                    None,
                )
            }
        };
        let report = DeliveryReport {
            case: job.case,
            target: DeliveryTarget::Person(job.person),
            channel: CHANNEL.to_owned(),
            step: job.step,
            outcome,
            attempts: 1,
            reference,
        };
        if results.send(report).await.is_err() {
            break;
        }
    }
}
