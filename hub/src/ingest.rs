//! Ingest: every alert payload is size-checked, decoded and validated, then stored by id before
//! anyone acknowledges it. Owner: [`Ingest`], a handle to one writer task that group-commits:
//! alerts submitted while a flush is running go into the next batch, so a slow disk costs
//! latency, not throughput, and every caller is answered only after its batch is durable.
//!
//! ```text
//! gateway (embedded broker) ─┐                       ┌─▶ Outcome per payload (caller acks)
//!                            ├─ submit ─▶ writer ────┤
//! link (external broker) ────┘   decode    txn+flush └─▶ new alerts ─▶ dispatcher (bounded)
//! ```

use std::sync::Arc;

use bytes::Bytes;
use protocol::Alert;
use tokio::sync::{mpsc, oneshot};

use crate::metrics::{HubMetrics, bump};
use crate::store::{Store, StoreError};

/// What became of one submitted payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Stored for the first time and handed to the dispatcher.
    Stored,
    /// Already stored (a resend); nothing changed.
    Duplicate,
    /// Not a valid alert for this site: counted and dropped. The reason names the field.
    Rejected(String),
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("storing alerts failed: {0}")]
    Store(#[from] StoreError),
    #[error("the ingest writer has stopped")]
    Stopped,
}

struct Job {
    alerts: Vec<(String, Bytes, Arc<Alert>)>,
    reply: oneshot::Sender<Result<Vec<bool>, IngestError>>,
}

/// Handle to the ingest writer; clone freely.
#[derive(Debug, Clone)]
pub struct Ingest {
    tx: mpsc::Sender<Job>,
    metrics: Arc<HubMetrics>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("alerts", &self.alerts.len())
            .finish()
    }
}

/// Most alerts one flush covers; bounds how long one batch holds its callers.
const MAX_BATCH: usize = 2048;

impl Ingest {
    /// Starts the writer. New alerts go to `out` after they are durable; when `out` is full the
    /// writer waits (back-pressure reaches the agents through unacknowledged publishes; the
    /// alerts themselves are already safe on disk, marked pending).
    pub fn start(
        store: Store,
        out: mpsc::Sender<Arc<Alert>>,
        metrics: Arc<HubMetrics>,
    ) -> (Self, tokio::task::JoinHandle<Result<(), IngestError>>) {
        let (tx, rx) = mpsc::channel(256);
        let task = tokio::spawn(writer(store, rx, out, metrics.clone()));
        (Self { tx, metrics }, task)
    }

    /// Decodes and stores the alert payloads published under `site`'s alert topic. Answers
    /// once every valid one is durable. An error means nothing can be acknowledged.
    pub async fn submit(
        &self,
        site: &str,
        payloads: &[Bytes],
    ) -> Result<Vec<Outcome>, IngestError> {
        let mut outcomes: Vec<Option<Outcome>> = Vec::with_capacity(payloads.len());
        let mut valid = Vec::new();
        for raw in payloads {
            match decode_for_site(site, raw) {
                Ok(alert) => {
                    valid.push((alert.id.clone(), raw.clone(), Arc::new(alert)));
                    outcomes.push(None);
                }
                Err(why) => {
                    self.metrics.reject(site, "alert");
                    tracing::warn!(site, reason = %why, bytes = raw.len(), "alert payload rejected and dropped");
                    outcomes.push(Some(Outcome::Rejected(why)));
                }
            }
        }
        let fresh = if valid.is_empty() {
            Vec::new()
        } else {
            let (reply, rx) = oneshot::channel();
            self.tx
                .send(Job {
                    alerts: valid,
                    reply,
                })
                .await
                .map_err(|_| IngestError::Stopped)?;
            rx.await.map_err(|_| IngestError::Stopped)??
        };
        let mut fresh = fresh.into_iter();
        Ok(outcomes
            .into_iter()
            .map(|o| {
                o.unwrap_or_else(|| match fresh.next() {
                    Some(true) => Outcome::Stored,
                    _ => Outcome::Duplicate,
                })
            })
            .collect())
    }
}

/// A payload is an alert of this site: decoded and validated by the protocol crate (size,
/// schema, fields), and its `site` field agrees with the topic it came on, so one site cannot
/// file alerts under another.
pub fn decode_for_site(site: &str, raw: &[u8]) -> Result<Alert, String> {
    let alert = protocol::validate::decode_alert(raw).map_err(|e| e.to_string())?;
    if alert.site != site {
        return Err(format!(
            "site: {:?} does not match the topic's site {site:?}",
            alert.site
        ));
    }
    Ok(alert)
}

async fn writer(
    store: Store,
    mut rx: mpsc::Receiver<Job>,
    out: mpsc::Sender<Arc<Alert>>,
    metrics: Arc<HubMetrics>,
) -> Result<(), IngestError> {
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        let mut n = jobs[0].alerts.len();
        while n < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => {
                    n += j.alerts.len();
                    jobs.push(j);
                }
                Err(_) => break,
            }
        }
        let batch: Vec<(String, Bytes)> = jobs
            .iter()
            .flat_map(|j| {
                j.alerts
                    .iter()
                    .map(|(id, raw, _)| (id.clone(), raw.clone()))
            })
            .collect();
        let stored = {
            let store = store.clone();
            tokio::task::spawn_blocking(move || store.insert_alerts(&batch))
                .await
                .map_err(|_| IngestError::Stopped)?
        };
        let fresh = match stored {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(error = %e, alerts = n, "cannot store alerts; none acknowledged");
                for j in jobs {
                    let _ = j.reply.send(Err(IngestError::Stopped));
                }
                return Err(e.into());
            }
        };
        if let Err(e) = store.flush().await {
            tracing::error!(error = %e, alerts = n, "cannot flush alerts; none acknowledged");
            for j in jobs {
                let _ = j.reply.send(Err(IngestError::Stopped));
            }
            return Err(e.into());
        }
        let mut fresh = fresh.into_iter();
        for job in jobs {
            let flags: Vec<bool> = job
                .alerts
                .iter()
                .map(|_| fresh.next().unwrap_or(false))
                .collect();
            for ((_, _, alert), &is_new) in job.alerts.iter().zip(&flags) {
                if is_new {
                    bump(&metrics.alerts_stored);
                    // A closed dispatcher means the hub is stopping: the alert stays pending
                    // on disk and is filed at the next start.
                    let _ = out.send(alert.clone()).await;
                } else {
                    bump(&metrics.alerts_duplicate);
                }
            }
            let _ = job.reply.send(Ok(flags));
        }
    }
    Ok(())
}
