//! Ingest: every alert payload is size-checked, decoded and validated, then stored by id before
//! anyone acknowledges it. Owner: [`Ingest`], a handle to one writer task that group-commits:
//! alerts submitted while a flush is running go into the next batch, so a slow disk costs
//! latency, not throughput, and every caller is answered only after its batch is durable.
//!
//! ```text
//! gateway (embedded broker) ─┐                       ┌─▶ Outcome per payload (caller acks)
//!                            ├─ submit ─▶ writer ────┤
//! link (external broker) ────┘  decode,   txn+flush  └─▶ new alerts ─▶ dispatcher (bounded)
//! API (patrol reports) ── submit_report   │
//! admins ── reingest / discard ───────────┴─▶ quarantine (in the same flush as the alerts)
//! ```
//!
//! Whatever a site sends that the hub refuses (not an alert, or not the site's to file: see
//! [`crate::trust`]) is kept in the quarantine ([`crate::store::Quarantine`]), written in the
//! same flushed batch as the alerts, so a caller hears [`Outcome::Rejected`] only once the
//! record is durable, and only then acknowledges it (under MQTT 5 with
//! [`Rejection::mqtt_reason`]). Nothing refused is lost in silence.

use std::sync::Arc;

use bytes::Bytes;
use protocol::{Alert, AlertKind, AlertSource, UtcMillis};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::disk::DiskGuard;
use crate::dispatch::{Clock, SystemClock};
use crate::metrics::{HubMetrics, Stage, bump};
use crate::store::{Inserted, NewQuarantined, QuarantineId, Store, StoreError};
use crate::trust::{PATROL_SITE, Refusal, SitePolicy};

/// What became of one submitted payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Stored for the first time and handed to the dispatcher.
    Stored,
    /// Already stored (a resend); nothing changed.
    Duplicate,
    /// Refused; from a site, quarantined (durably, before this answer).
    Rejected(Rejection),
    /// Not stored, nothing written: the data disk is below its threshold ([`crate::disk`]).
    /// The sender keeps it and sends it again later.
    Deferred,
}

/// Why the hub refused an alert, as the MQTT 5 PUBACK reason tells the sender.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
    strum::IntoStaticStr,
    strum::EnumIter,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum RejectCode {
    /// Not a valid alert: size, JSON, schema version, a field, a text bound.
    Malformed,
    /// A valid alert the site may not file: for a person, a patrol, or another site.
    NotAuthorized,
}

impl RejectCode {
    /// MQTT 5 PUBACK reason code: 0x99 payload format invalid, 0x87 not authorized.
    pub fn mqtt_reason(self) -> u8 {
        match self {
            Self::Malformed => 0x99,
            Self::NotAuthorized => 0x87,
        }
    }

    /// The name in metrics, the API and the store.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// A refused alert: why, and where the payload was kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: RejectCode,
    /// What is wrong, naming the field.
    pub reason: String,
    /// The quarantine record holding the payload (none for a patrol report, whose author is
    /// told at once by the API).
    pub quarantine_id: Option<QuarantineId>,
}

impl Rejection {
    /// MQTT 5 PUBACK reason code for the sender.
    pub fn mqtt_reason(&self) -> u8 {
        self.code.mqtt_reason()
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.reason)
    }
}

/// What a re-ingest of a quarantined payload came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reingested {
    /// No such record.
    Gone,
    /// Valid now: stored (or found already stored) and out of the quarantine.
    Stored { alert: String, duplicate: bool },
    /// Still refused; the record stays, with this reason.
    Refused(Rejection),
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("storing alerts failed: {0}")]
    Store(#[from] StoreError),
    #[error("the ingest writer has stopped")]
    Stopped,
    #[error("the hub's disk is nearly full; nothing is stored until space returns")]
    DiskLow,
}

/// One caller's share of a batch: alerts to store, refused payloads to quarantine, and a
/// quarantine record to release once its (re-ingested) alert is stored.
struct Job {
    alerts: Vec<Arc<Alert>>,
    quarantine: Vec<NewQuarantined>,
    release: Option<QuarantineId>,
    reply: oneshot::Sender<Result<Done, IngestError>>,
}

/// Per job: whether each alert was new, and the ids of its quarantine records.
struct Done {
    fresh: Vec<bool>,
    quarantined: Vec<QuarantineId>,
}

/// Handle to the ingest writer; clone freely.
#[derive(Debug, Clone)]
pub struct Ingest {
    tx: mpsc::Sender<Job>,
    metrics: Arc<HubMetrics>,
    policy: Arc<SitePolicy>,
    disk: Arc<DiskGuard>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("alerts", &self.alerts.len())
            .field("quarantine", &self.quarantine.len())
            .finish()
    }
}

/// Most alerts one flush covers; bounds how long one batch holds its callers.
const MAX_BATCH: usize = 2048;

fn now() -> UtcMillis {
    SystemClock.now()
}

impl Ingest {
    /// Starts the writer. New alerts go to `out` after they are durable; when `out` is full the
    /// writer waits (back-pressure reaches the agents through unacknowledged publishes; the
    /// alerts themselves are already safe on disk, marked pending).
    pub fn start(
        store: Store,
        policy: Arc<SitePolicy>,
        out: mpsc::Sender<Arc<Alert>>,
        metrics: Arc<HubMetrics>,
        disk: Arc<DiskGuard>,
        clock: Arc<dyn Clock>,
    ) -> (Self, tokio::task::JoinHandle<Result<(), IngestError>>) {
        let (tx, rx) = mpsc::channel(256);
        metrics.quarantine_size(store.quarantine().len(), store.quarantine().bytes());
        let task = tokio::spawn(writer(store.clone(), rx, out, metrics.clone(), clock));
        (
            // No store handle here: every gateway connection and the link hold an `Ingest`,
            // and the hub's stop waits only for the tasks that own the store (sled locks it).
            Self {
                tx,
                metrics,
                policy,
                disk,
            },
            task,
        )
    }

    /// The site policy this ingest applies.
    pub fn policy(&self) -> &Arc<SitePolicy> {
        &self.policy
    }

    async fn run(
        &self,
        alerts: Vec<Arc<Alert>>,
        quarantine: Vec<NewQuarantined>,
        release: Option<QuarantineId>,
    ) -> Result<Done, IngestError> {
        // Checked per batch, before anything is written: a disk below its threshold takes
        // nothing new (what is stored already stays served).
        if !self.disk.accepting() {
            return Err(IngestError::DiskLow);
        }
        if alerts.is_empty() && quarantine.is_empty() && release.is_none() {
            return Ok(Done {
                fresh: Vec::new(),
                quarantined: Vec::new(),
            });
        }
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job {
                alerts,
                quarantine,
                release,
                reply,
            })
            .await
            .map_err(|_| IngestError::Stopped)?;
        rx.await.map_err(|_| IngestError::Stopped)?
    }

    /// Decodes and stores the alert payloads published under `site`'s alert topic; what the
    /// site may not file ([`SitePolicy`]) or what is not an alert goes to the quarantine.
    /// Answers once every stored alert and every quarantine record is durable. An error
    /// means nothing can be acknowledged.
    pub async fn submit(
        &self,
        site: &str,
        payloads: &[Bytes],
    ) -> Result<Vec<Outcome>, IngestError> {
        if !self.disk.accepting() {
            return Ok(self.deferred(site, payloads.len()));
        }
        let mut outcomes: Vec<Result<(), (RejectCode, String)>> =
            Vec::with_capacity(payloads.len());
        let mut valid = Vec::new();
        let mut quarantine = Vec::new();
        let at = now();
        for raw in payloads {
            match self.policy.decode_site_alert(site, raw) {
                Ok(alert) => {
                    valid.push(Arc::new(alert));
                    outcomes.push(Ok(()));
                }
                Err(Refusal { code, reason }) => {
                    self.metrics.reject(site, "alert");
                    self.metrics.quarantined(site, code);
                    tracing::warn!(site, code = code.as_str(), reason = %reason, bytes = raw.len(), "alert payload refused; quarantined");
                    quarantine.push(NewQuarantined {
                        site: site.to_owned(),
                        at,
                        code,
                        reason: reason.clone(),
                        raw: raw.clone(),
                    });
                    outcomes.push(Err((code, reason)));
                }
            }
        }
        let done = match self.run(valid, quarantine, None).await {
            Ok(done) => done,
            // The disk crossed its threshold since the check above.
            Err(IngestError::DiskLow) => return Ok(self.deferred(site, payloads.len())),
            Err(e) => return Err(e),
        };
        let mut fresh = done.fresh.into_iter();
        let mut ids = done.quarantined.into_iter();
        Ok(outcomes
            .into_iter()
            .map(|o| match o {
                Ok(()) => match fresh.next() {
                    Some(true) => Outcome::Stored,
                    _ => Outcome::Duplicate,
                },
                Err((code, reason)) => Outcome::Rejected(Rejection {
                    code,
                    reason,
                    quarantine_id: ids.next(),
                }),
            })
            .collect())
    }

    /// `n` payloads answered [`Outcome::Deferred`], counted.
    fn deferred(&self, site: &str, n: usize) -> Vec<Outcome> {
        self.metrics
            .alerts_deferred
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        tracing::debug!(site, alerts = n, "alerts deferred: the disk is nearly full");
        vec![Outcome::Deferred; n]
    }

    fn count_deferred(&self, e: &IngestError) {
        if matches!(e, IngestError::DiskLow) {
            bump(&self.metrics.alerts_deferred);
        }
    }

    /// Stores a patrol report the API built for a logged-in person (the one path a `person`
    /// source or `patrol` kind may take). A refusal is not quarantined: the API answers the
    /// person with it.
    pub async fn submit_report(&self, raw: Bytes) -> Result<Outcome, IngestError> {
        let alert = match decode_report(&raw) {
            Ok(a) => a,
            Err(r) => {
                self.metrics.reject(PATROL_SITE, "alert");
                return Ok(Outcome::Rejected(Rejection {
                    code: r.code,
                    reason: r.reason,
                    quarantine_id: None,
                }));
            }
        };
        let done = self
            .run(vec![Arc::new(alert)], Vec::new(), None)
            .await
            .inspect_err(|e| self.count_deferred(e))?;
        Ok(match done.fresh.first() {
            Some(true) => Outcome::Stored,
            _ => Outcome::Duplicate,
        })
    }

    /// Runs a quarantined payload through today's decoding and site policy again: valid now,
    /// it is stored and dispatched like a fresh alert and its record removed in the same
    /// flush; still refused, the record stays with the new reason.
    pub async fn reingest(
        &self,
        store: &Store,
        id: QuarantineId,
    ) -> Result<Reingested, IngestError> {
        let q = store.quarantine();
        let Some(rec) = q.get(id)? else {
            return Ok(Reingested::Gone);
        };
        let checked = if rec.entry.truncated() {
            Err(Refusal {
                code: RejectCode::Malformed,
                reason: format!(
                    "only the first {} of its {} bytes were kept: it can never be an alert",
                    rec.entry.kept, rec.entry.len
                ),
            })
        } else {
            self.policy.decode_site_alert(&rec.entry.site, &rec.raw)
        };
        match checked {
            Ok(alert) => {
                let alert_id = alert.id.clone();
                let done = self
                    .run(vec![Arc::new(alert)], Vec::new(), Some(id))
                    .await
                    .inspect_err(|e| self.count_deferred(e))?;
                tracing::info!(quarantine = %id, site = %rec.entry.site, alert = %alert_id, "quarantined alert re-ingested");
                Ok(Reingested::Stored {
                    alert: alert_id,
                    duplicate: done.fresh.first() != Some(&true),
                })
            }
            Err(Refusal { code, reason }) => {
                q.refused_again(id, now(), code, &reason)?;
                store.flush().await?;
                tracing::info!(quarantine = %id, site = %rec.entry.site, code = code.as_str(), reason = %reason, "re-ingest refused; stays quarantined");
                Ok(Reingested::Refused(Rejection {
                    code,
                    reason,
                    quarantine_id: Some(id),
                }))
            }
        }
    }

    /// Deletes a quarantine record for good; false if it was not there.
    pub async fn discard(&self, store: &Store, id: QuarantineId) -> Result<bool, IngestError> {
        let q = store.quarantine();
        let gone = q.remove(id)?;
        store.flush().await?;
        self.metrics.quarantine_size(q.len(), q.bytes());
        if gone {
            tracing::info!(quarantine = %id, "quarantine record deleted");
        }
        Ok(gone)
    }
}

/// A patrol report as the API builds it: a valid alert of the patrol pseudo-site, from a
/// person, of kind patrol, within the text bounds.
fn decode_report(raw: &[u8]) -> Result<Alert, Refusal> {
    let malformed = |reason: String| Refusal {
        code: RejectCode::Malformed,
        reason,
    };
    let alert = protocol::validate::decode_alert(raw).map_err(|e| malformed(e.to_string()))?;
    if alert.site != PATROL_SITE
        || alert.kind != AlertKind::Patrol
        || !matches!(alert.source, AlertSource::Person(_))
    {
        return Err(malformed(
            "a patrol report is a person's patrol alert of the patrol site".into(),
        ));
    }
    crate::trust::check_text(&alert).map_err(malformed)?;
    Ok(alert)
}

/// A stored batch whose flush is under way: acknowledged, and its new alerts handed on, once
/// the flush is done.
struct Flushing {
    flush: tokio::task::JoinHandle<Result<(), StoreError>>,
    jobs: Vec<Job>,
    fresh: Vec<bool>,
    inserted: Inserted,
    n: usize,
}

/// The writer: one task, batches of jobs, stored in order. A batch is stored while the one
/// before it flushes (one flush in flight): storing is CPU and sled's lock, flushing is the
/// disk, and a writer that waited for each flush before storing the next batch left the one
/// idle while the other worked. A batch is still answered only after its own flush, and
/// batches are answered in order.
async fn writer(
    store: Store,
    mut rx: mpsc::Receiver<Job>,
    out: mpsc::Sender<Arc<Alert>>,
    metrics: Arc<HubMetrics>,
    clock: Arc<dyn Clock>,
) -> Result<(), IngestError> {
    let mut flushing: Option<Flushing> = None;
    loop {
        // With a flush under way, only what is already queued is stored now; with nothing
        // queued the flush is seen through first (its callers are waiting).
        let first = match &flushing {
            None => match rx.recv().await {
                Some(j) => j,
                None => break,
            },
            Some(_) => match rx.try_recv() {
                Ok(j) => j,
                Err(e) => {
                    if let Some(f) = flushing.take() {
                        answer(f, &store, &out, &metrics).await?;
                    }
                    if matches!(e, mpsc::error::TryRecvError::Disconnected) {
                        break;
                    }
                    continue;
                }
            },
        };
        let mut jobs = vec![first];
        let mut n = jobs[0].alerts.len() + jobs[0].quarantine.len();
        while n < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => {
                    n += j.alerts.len() + j.quarantine.len();
                    jobs.push(j);
                }
                Err(_) => break,
            }
        }
        let batch: Vec<Arc<Alert>> = jobs.iter().flat_map(|j| j.alerts.iter().cloned()).collect();
        let refused: Vec<NewQuarantined> = jobs
            .iter()
            .flat_map(|j| j.quarantine.iter().cloned())
            .collect();
        let release: Vec<QuarantineId> = jobs.iter().filter_map(|j| j.release).collect();
        let started = std::time::Instant::now();
        let written = {
            let store = store.clone();
            // The hub's time (retention counts from it; tests drive it).
            let received = clock.now();
            tokio::task::spawn_blocking(move || {
                let fresh = store.alerts().insert(&batch, received)?;
                let q = store.quarantine();
                let inserted = q.insert(&refused)?;
                for id in release {
                    q.remove(id)?;
                }
                Ok::<_, StoreError>((fresh, inserted))
            })
            .await
            .map_err(|_| IngestError::Stopped)?
        };
        metrics.stage_time(Stage::IngestStore, started);
        bump(&metrics.ingest_batches);
        metrics
            .ingest_batched
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        let (fresh, inserted) = match written {
            Ok(f) => f,
            // A snapshot's file could not be written or synced (the disk filled faster than
            // the guard looks, or ran out of inodes): nothing of the batch reached sled, so
            // it is deferred like an alert arriving below the threshold — the agents keep it
            // and send it again — and the hub goes on. (A sled error, below, is sticky.)
            Err(e @ StoreError::File { .. }) => {
                tracing::warn!(error = %e, alerts = n, "cannot write snapshots; batch deferred");
                for j in jobs {
                    let _ = j.reply.send(Err(IngestError::DiskLow));
                }
                continue;
            }
            Err(e) => {
                tracing::error!(error = %e, alerts = n, "cannot store alerts; none acknowledged");
                for j in jobs {
                    let _ = j.reply.send(Err(IngestError::Stopped));
                }
                // The batch before was stored whole: it is still answered if its flush holds.
                if let Some(f) = flushing.take() {
                    answer(f, &store, &out, &metrics).await?;
                }
                return Err(e.into());
            }
        };
        // The flush started for this batch covers the one before too; that one is answered
        // first, in order.
        if let Some(f) = flushing.take() {
            answer(f, &store, &out, &metrics).await?;
        }
        let s = store.clone();
        flushing = Some(Flushing {
            flush: tokio::spawn(async move { s.flush_alerts().await }),
            jobs,
            fresh,
            inserted,
            n,
        });
    }
    if let Some(f) = flushing.take() {
        answer(f, &store, &out, &metrics).await?;
    }
    Ok(())
}

/// Waits for a batch's flush, then acknowledges its jobs and hands its new alerts on. A
/// failed flush answers none of them and stops the writer (sled's error is sticky).
async fn answer(
    f: Flushing,
    store: &Store,
    out: &mpsc::Sender<Arc<Alert>>,
    metrics: &HubMetrics,
) -> Result<(), IngestError> {
    let Flushing {
        flush,
        jobs,
        fresh,
        inserted,
        n,
    } = f;
    let waiting = std::time::Instant::now();
    let flushed = flush.await.map_err(|_| IngestError::Stopped)?;
    metrics.stage_time(Stage::IngestFlush, waiting);
    if let Err(e) = flushed {
        tracing::error!(error = %e, alerts = n, "cannot flush alerts; none acknowledged");
        for j in jobs {
            let _ = j.reply.send(Err(IngestError::Stopped));
        }
        return Err(e.into());
    }
    if inserted.evicted > 0 {
        tracing::warn!(
            evicted = inserted.evicted,
            "quarantine full: oldest records dropped"
        );
    }
    metrics.quarantine_evicted(inserted.evicted);
    metrics.quarantine_size(store.quarantine().len(), store.quarantine().bytes());
    let mut fresh = fresh.into_iter();
    let mut ids = inserted.ids.into_iter();
    for job in jobs {
        let flags: Vec<bool> = job
            .alerts
            .iter()
            .map(|_| fresh.next().unwrap_or(false))
            .collect();
        let quarantined: Vec<QuarantineId> =
            job.quarantine.iter().filter_map(|_| ids.next()).collect();
        for (alert, &is_new) in job.alerts.iter().zip(&flags) {
            if is_new {
                bump(&metrics.alerts_stored);
                // A closed dispatcher means the hub is stopping: the alert stays pending
                // on disk and is filed at the next start.
                // The dispatcher has no use for the JPEG (stored as a blob): up to 8,192
                // queued alerts must not each hold one.
                let filed = match &alert.snapshot {
                    Some(_) => Arc::new(Alert {
                        snapshot: None,
                        ..Alert::clone(alert)
                    }),
                    None => alert.clone(),
                };
                let _ = out.send(filed).await;
            } else {
                bump(&metrics.alerts_duplicate);
            }
        }
        let _ = job.reply.send(Ok(Done {
            fresh: flags,
            quarantined,
        }));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use strum::IntoEnumIterator;

    use super::*;

    #[test]
    fn reject_code_names_are_their_serde_names() {
        for code in RejectCode::iter() {
            assert_eq!(serde_json::to_value(code).ok(), Some(code.as_str().into()));
        }
    }
}
