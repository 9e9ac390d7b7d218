//! The dispatcher ([`Dispatcher`]): owner of cases, the deadline index, the site registry, the
//! watchlist and silences. One task, so every case changes in one place, in order.
//!
//! ```text
//! ingest ──new alerts──▶ ┌────────────┐ ──Notify──▶ push (MQTT per person, webhooks per cell)
//! link ──status/sightings▶│ Dispatcher │ ──cmd────▶ sites (signed watchlist commands)
//! requests (API/tests) ──▶└────────────┘ ◀─delivery outcomes── webhook tasks
//!                            │ timer: earliest deadline; auditor: none missed
//!                            ▼
//!                  the store's owners: cases, their indexes (group, filed, deadline,
//!                  closing time), silences and the hub-health case through `store::Cases`
//!                  (changes gathered in a `CaseWrites`, one atomic batch); sites through
//!                  `store::Sites`; the watchlist and its audit log through
//!                  `store::Watchlist`; sightings through `store::Sightings`
//! ```
//!
//! Filing one alert: located (its position → the deepest grid cell; no position → its site's
//! registered cell; nowhere → the top cell, never nowhere), muted if a silence or inhibition
//! covers it, grouped into the open case of its key, or a new case opened and dispatched. The
//! case goes to the case log (synced), then its indexes and the removal of the alert's pending
//! marker in one atomic sled batch, flushed before anyone is notified, so a crash re-files an
//! alert at most once and never loses one (see [`crate::store::Cases`]). Deadlines live in
//! sled: a restarted hub loads them and fires every one that passed while it was down, in
//! order.
//!
//! The disk guard's episodes ([`crate::disk::DiskGuard::subscribe`]) become hub-health cases
//! ([`crate::health`]): filed like an alert of the pseudo-site `hub` when the disk goes low,
//! resolved by the hub when space is back; a failed write of one is retried on the sweep
//! rather than stopping the dispatcher.
//!
//! One owner, one task, its work split by job (each an `impl Dispatcher` block): here the
//! loop, requests, transitions and the write path every change goes through (`save`,
//! `stage_save`, `apply`: the case log, one atomic sled batch, then the book); `filing` (alerts into cases, and
//! recovery of pending ones); `deadlines` (the timer, firing, the auditor); `notify`
//! (pushes and their records); `commands` (signed watchlist commands, silences); `sites`
//! (the registry, status, sightings, replies); `hub_health` (disk episodes as cases);
//! `expire` (retention of closed cases).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use protocol::command::{Command, CommandBody, SignedCommand};
use protocol::topics::TopicKind;
use protocol::{Alert, SigningKey, Topics, UtcMillis};
use tokio::sync::{mpsc, oneshot};

use crate::book::CaseBook;
use crate::case::{
    Action, Case, CaseId, CaseState, CellRef, DeliveryOutcome, DeliveryTarget, Duty, Effect,
    GroupKey, Policy, Silence, SilenceId, Transition, TransitionError, groups_with, inhibited,
    silenced_by,
};
use crate::config::SiteSection;
use crate::disk::DiskGuard;
use crate::grid::GridIndex;
use crate::link::Inbound;
use crate::metrics::{HubMetrics, Stage, bump};
use crate::push::{DeliveryReport, Pusher};
use crate::registry::{Change, Registry, SiteState};
use crate::retention::{Expiring, RetentionError, Swept};
use crate::roster::Roster;
use crate::store::{
    CaseWrites, Filed, Store, StoreError, StoredCase, WatchAction, WatchAudit, WatchEntry,
};
use crate::trust::{Position, SitePolicy};
use crate::watchlist::WatchBy;

mod commands;
mod deadlines;
mod expire;
mod filing;
mod hub_health;
mod notify;
mod sites;
mod sms;
mod workapp;

/// The hub's clock, a seam so tests can run escalation on their own time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> UtcMillis;
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UtcMillis {
        UtcMillis::now()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("case {0} not found")]
    NoSuchCase(CaseId),
    #[error(transparent)]
    Transition(#[from] TransitionError),
    #[error("case {id}: stored record is unreadable: {why}")]
    Corrupt { id: String, why: String },
    #[error("{0}")]
    Invalid(String),
    #[error("tag {0} is not on the watchlist")]
    NoSuchWatch(String),
    #[error("the watchlist entry's cell is outside the cells you may watchlist in")]
    OutsideScope,
    /// The tag is watchlisted in a scope the requester may not see; they are told no more.
    #[error(
        "tag {0} is already watchlisted outside your cells; ask the unit that added it or an admin"
    )]
    WatchTaken(String),
    #[error("silence {0} not found")]
    NoSuchSilence(SilenceId),
    #[error("silence {id} already ended at {at}")]
    SilenceOver { id: SilenceId, at: UtcMillis },
    #[error("the dispatcher has stopped")]
    Stopped,
}

pub use crate::store::SightingRecord;
use crate::store::{SilenceAction, SilenceAudit};

/// Who creates or ends a silence (for its audit record).
#[derive(Debug, Clone)]
pub struct SilenceBy {
    /// The dashboard login.
    pub login: String,
    /// Their actor id (roster person, else the login).
    pub actor: String,
}

/// Requests to the dispatcher (the API of issue 6 and the tests use these).
#[derive(Debug)]
pub enum Request {
    Transition {
        case: CaseId,
        transition: Transition,
        reply: oneshot::Sender<Result<Case, DispatchError>>,
    },
    Case {
        case: CaseId,
        reply: oneshot::Sender<Result<Option<Case>, DispatchError>>,
    },
    CaseOfAlert {
        alert: String,
        reply: oneshot::Sender<Result<Option<CaseId>, DispatchError>>,
    },
    WatchAdd {
        entry: WatchEntry,
        by: WatchBy,
        reply: oneshot::Sender<Result<WatchAudit, DispatchError>>,
    },
    WatchRemove {
        tag: String,
        by: WatchBy,
        reason: Option<String>,
        reply: oneshot::Sender<Result<WatchAudit, DispatchError>>,
    },
    SilenceAdd {
        silence: Silence,
        by: SilenceBy,
        reply: oneshot::Sender<Result<SilenceAudit, DispatchError>>,
    },
    SilenceEnd {
        id: SilenceId,
        by: SilenceBy,
        reply: oneshot::Sender<Result<SilenceAudit, DispatchError>>,
    },
    Sites {
        reply: oneshot::Sender<Vec<SiteState>>,
    },
    /// Retention: removes up to `max` closed cases closed before `cutoff`.
    ExpireClosed {
        cutoff: UtcMillis,
        max: usize,
        reply: oneshot::Sender<Result<Swept, DispatchError>>,
    },
}

/// Cloneable handle for sending requests.
#[derive(Debug, Clone)]
pub struct DispatchHandle {
    tx: mpsc::Sender<Request>,
}

impl DispatchHandle {
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Request,
    ) -> Result<T, DispatchError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| DispatchError::Stopped)?;
        rx.await.map_err(|_| DispatchError::Stopped)
    }

    pub async fn transition(&self, case: &CaseId, t: Transition) -> Result<Case, DispatchError> {
        self.ask(|reply| Request::Transition {
            case: case.clone(),
            transition: t,
            reply,
        })
        .await?
    }

    pub async fn case(&self, case: &CaseId) -> Result<Option<Case>, DispatchError> {
        self.ask(|reply| Request::Case {
            case: case.clone(),
            reply,
        })
        .await?
    }

    pub async fn case_of_alert(&self, alert: &str) -> Result<Option<CaseId>, DispatchError> {
        self.ask(|reply| Request::CaseOfAlert {
            alert: alert.to_owned(),
            reply,
        })
        .await?
    }

    /// Watchlists a tag (or replaces its entry) and sends the signed command to the sites of
    /// its scope; returns the audit record written (with how many sites were told). Refused
    /// when the tag has an entry `by` may not see ([`DispatchError::WatchTaken`]).
    pub async fn watch_add(
        &self,
        entry: WatchEntry,
        by: WatchBy,
    ) -> Result<WatchAudit, DispatchError> {
        self.ask(|reply| Request::WatchAdd { entry, by, reply })
            .await?
    }

    /// Clears a tag from the watchlist at the sites of its scope; an entry `by` may not see
    /// is as absent ([`DispatchError::NoSuchWatch`]).
    pub async fn watch_remove(
        &self,
        tag: &str,
        by: WatchBy,
        reason: Option<String>,
    ) -> Result<WatchAudit, DispatchError> {
        self.ask(|reply| Request::WatchRemove {
            tag: tag.to_owned(),
            by,
            reason,
            reply,
        })
        .await?
    }

    /// Puts a silence in force (checked again: [`Silence::problems`]); returns its audit
    /// record. Alerts filed after this returns are judged against it.
    pub async fn silence(
        &self,
        silence: Silence,
        by: SilenceBy,
    ) -> Result<SilenceAudit, DispatchError> {
        self.ask(|reply| Request::SilenceAdd { silence, by, reply })
            .await?
    }

    /// Ends a silence now (before its planned end); returns its audit record.
    pub async fn end_silence(
        &self,
        id: SilenceId,
        by: SilenceBy,
    ) -> Result<SilenceAudit, DispatchError> {
        self.ask(|reply| Request::SilenceEnd { id, by, reply })
            .await?
    }

    pub async fn sites(&self) -> Result<Vec<SiteState>, DispatchError> {
        self.ask(|reply| Request::Sites { reply }).await
    }

    /// Removes up to `max` closed cases closed before `cutoff` (oldest closed first), with
    /// their indexes and the alert → case markers of the alerts they list, from the store and
    /// the API's book in the same step. Never an open case.
    pub async fn expire_closed(
        &self,
        cutoff: UtcMillis,
        max: usize,
    ) -> Result<Swept, DispatchError> {
        self.ask(|reply| Request::ExpireClosed { cutoff, max, reply })
            .await?
    }
}

/// Closed cases as retention sees them: expiry goes through the dispatcher, which owns them.
#[derive(Debug, Clone)]
pub struct ClosedCases {
    handle: DispatchHandle,
    bytes: Arc<AtomicU64>,
}

/// Closed cases removed per request: the dispatcher files alerts between two requests, so a
/// backlog of expired cases never holds filing up for more than a few milliseconds.
const EXPIRE_CHUNK: usize = 256;

impl ClosedCases {
    fn expire_chunk(&self, cutoff: UtcMillis, max: usize) -> Result<Swept, DispatchError> {
        let (reply, rx) = oneshot::channel();
        self.handle
            .tx
            .blocking_send(Request::ExpireClosed { cutoff, max, reply })
            .map_err(|_| DispatchError::Stopped)?;
        rx.blocking_recv().map_err(|_| DispatchError::Stopped)?
    }
}

impl Expiring for ClosedCases {
    /// Called on the sweeper's blocking thread: waits for the dispatcher's answers there, in
    /// requests of at most `EXPIRE_CHUNK` cases.
    fn expire_before(&self, cutoff: UtcMillis, max: usize) -> Result<Swept, RetentionError> {
        let mut total = Swept::default();
        let mut left = max;
        while left > 0 {
            let n = left.min(EXPIRE_CHUNK);
            let s = self.expire_chunk(cutoff, n)?;
            total.records += s.records;
            total.bytes += s.bytes;
            total.more = s.more;
            if !s.more {
                break;
            }
            left -= n;
        }
        Ok(total)
    }

    /// A running total the dispatcher keeps: the JSON of every closed case (their index and
    /// marker keys left out), counted at start and changed with each write of a closed case.
    fn bytes(&self) -> Result<u64, RetentionError> {
        Ok(self.bytes.load(Ordering::Relaxed))
    }
}

/// The roster as the case core's duty seam.
struct RosterDuty<'a>(&'a Roster);

impl Duty for RosterDuty<'_> {
    fn on_duty(&self, cell_code: &str, at: UtcMillis) -> Vec<String> {
        self.0.on_duty(cell_code, at).people
    }
}

/// Everything the dispatcher is built from.
#[derive(Debug)]
pub struct DispatcherParts {
    pub store: Store,
    pub grid: Arc<GridIndex>,
    /// Replaced whole on `hub reload` ([`crate::live`]).
    pub roster: Arc<crate::live::Live<Roster>>,
    pub policy: Policy,
    pub sites: BTreeMap<String, SiteSection>,
    pub offline_after_ms: i64,
    /// A site's clock, or an alert's time, further than this off the hub's is not believed
    /// (`[registry] clock_tolerance_s`).
    pub clock_tolerance_ms: i64,
    pub topics: Topics,
    pub pusher: Pusher,
    pub signing_key: SigningKey,
    pub metrics: Arc<HubMetrics>,
    pub clock: Arc<dyn Clock>,
    /// How often the auditor checks that no deadline was missed.
    pub audit_every: Duration,
    /// The API's read side: every case written is handed to it after the write.
    pub book: Arc<CaseBook>,
    /// Which alert positions are believed (the same policy ingest applies).
    pub trust: Arc<SitePolicy>,
    /// The data disk: its low episodes become hub-health cases ([`crate::health`]).
    pub disk: Arc<DiskGuard>,
    /// Which alerts go to departments as well as their cell.
    pub routing: Vec<crate::case::RoutingRule>,
    /// Text messages (`[sms]`); `None`: no SMS.
    pub sms: Option<SmsSetup>,
    /// Personal work-app messages (`[work_app]`); `None`: none.
    pub work_app: Option<WorkAppSetup>,
}

/// What the dispatcher needs to send work-app messages ([`crate::workapp`]).
#[derive(Debug)]
pub struct WorkAppSetup {
    pub client: crate::workapp::WeComClient,
    /// Messages that may wait to be sent.
    pub queue: usize,
}

/// What the dispatcher needs to send SMS ([`crate::sms`]).
#[derive(Debug)]
pub struct SmsSetup {
    pub client: crate::sms::SmsClient,
    /// Messages that may wait to be sent.
    pub queue: usize,
    /// Between two receipt pulls.
    pub poll: Duration,
    /// A critical case unacknowledged this long after dispatch goes by SMS to the people
    /// notified by app only.
    pub fallback_after_ms: i64,
}

/// The hub-health case write still owed (retried on the sweep until it succeeds).
#[derive(Debug)]
enum HealthDue {
    /// The disk went low: file this alert (the same one on every retry: its insert and
    /// filing are idempotent).
    Open(Arc<Alert>),
    /// Space is back: resolve the episode's case.
    Resolve,
}

/// Owner of cases and everything that changes them.
#[derive(Debug)]
pub struct Dispatcher {
    p: DispatcherParts,
    registry: Registry,
    deadlines: BTreeSet<(i64, CaseId)>,
    silences: Vec<Silence>,
    last_seq: u64,
    deliveries_tx: mpsc::Sender<DeliveryReport>,
    deliveries_rx: mpsc::Receiver<DeliveryReport>,
    requests: mpsc::Receiver<Request>,
    /// Cases staged for the next write, handed to the book once it is applied.
    touched: Vec<Case>,
    /// Bytes of closed cases' JSON ([`ClosedCases::bytes`]).
    closed_bytes: Arc<AtomicU64>,
    health_due: Option<HealthDue>,
    /// The SMS task and the critical cases waiting for their SMS fallback ([`sms`]).
    sms: Option<sms::SmsState>,
    /// The work-app task ([`workapp`]).
    work_app: Option<crate::workapp::WorkAppChannel>,
}

/// Most alerts filed per flush.
const MAX_FILE_BATCH: usize = 1024;

impl Dispatcher {
    /// Loads the deadline index, silences and site registry from the store.
    pub fn new(mut p: DispatcherParts) -> Result<(Self, DispatchHandle), DispatchError> {
        let deadlines: BTreeSet<(i64, CaseId)> = p.store.cases().deadlines()?.into_iter().collect();
        let silences = p.store.cases().silences()?;
        let mut registry = Registry::new(p.offline_after_ms);
        for s in p.store.sites().all()? {
            registry.restore(s);
        }
        let mut cases = Vec::new();
        let mut closed_bytes = 0u64;
        // Closed cases of a store older than the closing-time index get their entry now.
        let mut unindexed = CaseWrites::default();
        let mut indexed = 0usize;
        for c in p.store.cases().all() {
            match c {
                Ok(StoredCase { case, bytes }) => {
                    if case.closed_at().is_some() {
                        closed_bytes += bytes;
                        if !p.store.cases().closed_indexed(&case)? {
                            unindexed.index_closed(&case);
                            indexed += 1;
                        }
                    }
                    cases.push(case)
                }
                Err(e) => {
                    tracing::error!(error = %e, "unreadable case left out of the API's book")
                }
            }
        }
        p.book.load(&cases);
        // Critical cases still waiting for someone: their SMS fallback is owed after a restart.
        let waiting = sms::waiting_critical(&cases);
        // And texts sent before it whose receipts are still to come.
        let resumed = if p.sms.is_some() {
            sms::awaiting_receipts(&cases, &p.roster.current())
        } else {
            Vec::new()
        };
        drop(cases);
        if indexed > 0 {
            p.store.cases().apply(unindexed, "index closed cases")?;
            tracing::info!(
                cases = indexed,
                "closed cases indexed by closing time for retention"
            );
        }
        let last_seq = p.store.command_seq()?;
        let (deliveries_tx, deliveries_rx) = mpsc::channel(4096);
        let sms = p
            .sms
            .take()
            .map(|setup| sms::SmsState::start(setup, waiting, resumed, &p.metrics, &deliveries_tx));
        let work_app = p.work_app.take().map(|setup| {
            crate::workapp::WorkAppChannel::start(
                setup.client,
                setup.queue,
                p.metrics.clone(),
                deliveries_tx.clone(),
            )
        });
        let (tx, requests) = mpsc::channel(1024);
        tracing::info!(
            deadlines = deadlines.len(),
            silences = silences.len(),
            sites = registry.sites().count(),
            "dispatcher loaded"
        );
        Ok((
            Self {
                p,
                registry,
                deadlines,
                silences,
                last_seq,
                deliveries_tx,
                deliveries_rx,
                requests,
                touched: Vec::new(),
                closed_bytes: Arc::new(AtomicU64::new(closed_bytes)),
                health_due: None,
                sms,
                work_app,
            },
            DispatchHandle { tx },
        ))
    }

    /// Closed cases for the retention sweeper (expiry goes through this dispatcher's
    /// requests; `handle` must be this dispatcher's).
    pub fn closed_cases(&self, handle: &DispatchHandle) -> ClosedCases {
        ClosedCases {
            handle: handle.clone(),
            bytes: self.closed_bytes.clone(),
        }
    }

    fn now(&self) -> UtcMillis {
        self.p.clock.now()
    }

    /// Files every alert left pending by the last run, then serves until `alerts` closes.
    pub async fn run(
        mut self,
        mut alerts: mpsc::Receiver<Arc<Alert>>,
        mut inbound: mpsc::Receiver<Inbound>,
    ) -> Result<(), DispatchError> {
        self.recover().await?;
        // Deadlines that passed while the hub was down are due now: they are fired here, in
        // order, before anything new is filed. (Not counted as missed: they were owed.)
        self.fire_due().await?;
        self.audit(true).await?;
        // Low at start: open (or keep) the episode's case; not low: resolve one a previous run
        // left open when it stopped before the space came back.
        let mut disk = self.p.disk.subscribe();
        let low = *disk.borrow_and_update();
        self.disk_changed(low).await;
        let mut audit = tokio::time::interval(self.p.audit_every);
        audit.tick().await;
        let mut sweep = tokio::time::interval(Duration::from_secs(5));
        loop {
            let sleep_for = match self.deadlines.first() {
                Some((at, _)) => Duration::from_millis((at - self.now().0).clamp(0, 60_000) as u64),
                None => Duration::from_secs(60),
            };
            tokio::select! {
                a = alerts.recv() => {
                    let Some(first) = a else { break };
                    let mut batch = vec![first];
                    while batch.len() < MAX_FILE_BATCH {
                        match alerts.try_recv() {
                            Ok(a) => batch.push(a),
                            Err(_) => break,
                        }
                    }
                    self.file_batch(batch).await?;
                }
                // A closed channel disables its branch (the pattern fails) instead of spinning.
                Some(m) = inbound.recv() => self.inbound(m).await?,
                Some(r) = self.requests.recv() => self.request(r).await?,
                Some(d) = self.deliveries_rx.recv() => self.delivery(d)?,
                _ = tokio::time::sleep(sleep_for) => self.fire_due().await?,
                _ = audit.tick() => self.audit(false).await?,
                _ = sweep.tick() => {
                    self.sweep()?;
                    self.health().await;
                    self.sms_fallback_due()?;
                }
                Ok(()) = disk.changed() => {
                    let low = *disk.borrow_and_update();
                    self.disk_changed(low).await;
                }
            }
        }
        Ok(())
    }

    fn load(&self, id: &CaseId) -> Result<Option<Case>, DispatchError> {
        Ok(self.p.store.cases().get(id)?)
    }

    /// Stores a changed case with its indexes (one atomic batch).
    fn save(&mut self, case: &Case, old_deadline: Option<UtcMillis>) -> Result<(), DispatchError> {
        let mut staged = CaseWrites::default();
        self.stage_save(&mut staged, case, old_deadline)?;
        self.apply(staged, "save case")
    }

    /// [`Dispatcher::save`] into `staged`.
    fn stage_save(
        &mut self,
        staged: &mut CaseWrites,
        case: &Case,
        old_deadline: Option<UtcMillis>,
    ) -> Result<(), DispatchError> {
        let cases = self.p.store.cases().clone();
        // A closed case's bytes are counted once, when its index entry is first written;
        // later saves (comments, delivery outcomes) change them by the difference.
        let old = if case.closed_at().is_some() && staged.closed_indexed(&cases, case)? {
            Some(staged.case_bytes(&cases, &case.id)?)
        } else {
            None
        };
        let new = staged.put_case(case)?;
        if case.closed_at().is_some() {
            let old = old.unwrap_or(0);
            if new >= old {
                self.closed_bytes.fetch_add(new - old, Ordering::Relaxed);
            } else {
                self.closed_bytes.fetch_sub(old - new, Ordering::Relaxed);
            }
            staged.index_closed(case);
        }
        self.touched.push(case.clone());
        if !case.is_open() {
            // Closed: the group key may open a new case. Only drop the key if it still
            // points at this case.
            staged.release_group(&cases, &case.key, &case.id)?;
        }
        self.move_deadline(staged, &case.id, old_deadline, case.next_deadline());
        Ok(())
    }

    /// Applies staged writes to `work` as one atomic batch. A single write (typically a case
    /// recording its pushes) goes in as it is, atomic by itself, without the two log-buffer
    /// writes a sled batch costs.
    fn apply(&mut self, staged: CaseWrites, op: &'static str) -> Result<(), DispatchError> {
        self.p.store.cases().apply(staged, op)?;
        let s = self.p.store.cases().log_stats();
        self.p
            .metrics
            .case_log(s.bytes, s.live, s.segments as u64, s.damaged);
        self.publish();
        Ok(())
    }

    /// Hands the cases just written to the book, once each (the last version of a case a
    /// batch touched several times).
    fn publish(&mut self) {
        let now = self.now();
        let touched = std::mem::take(&mut self.touched);
        let mut seen = BTreeSet::new();
        let last: Vec<&Case> = touched
            .iter()
            .rev()
            .filter(|c| seen.insert(c.id.as_str()))
            .collect();
        for c in last.into_iter().rev() {
            self.p.book.put(c, now);
        }
    }

    fn delivery(&mut self, d: DeliveryReport) -> Result<(), DispatchError> {
        let Some(mut case) = self.load(&d.case)? else {
            return Ok(());
        };
        let now = self.now();
        let (target, channel, step, attempts, reference) = (
            d.target.clone(),
            d.channel.clone(),
            d.step,
            d.attempts,
            d.reference.clone(),
        );
        case.record_delivery(d.target, &d.channel, d.step, d.outcome, now);
        // The sender retried on its own; the report's count is the truth.
        if let Some(entry) = case
            .deliveries
            .iter_mut()
            .find(|e| e.target == target && e.channel == channel && e.step == step)
        {
            entry.attempts = attempts;
            if reference.is_some() {
                entry.reference = reference;
            }
        }
        let dl = case.next_deadline();
        self.save(&case, dl)
    }

    async fn request(&mut self, r: Request) -> Result<(), DispatchError> {
        match r {
            Request::Transition {
                case,
                transition,
                reply,
            } => {
                let result = self.transition(&case, transition).await;
                let _ = reply.send(result);
            }
            Request::Case { case, reply } => {
                let _ = reply.send(self.load(&case));
            }
            Request::CaseOfAlert { alert, reply } => {
                // A muted alert has no case (the value was once its reason, answered as if
                // it were a case id).
                let r = self
                    .p
                    .store
                    .cases()
                    .case_of_alert(&alert)
                    .map_err(DispatchError::from);
                let _ = reply.send(r);
            }
            Request::WatchAdd { entry, by, reply } => {
                let r = self.watch_add(entry, by).await;
                let _ = reply.send(r);
            }
            Request::WatchRemove {
                tag,
                by,
                reason,
                reply,
            } => {
                let r = self.watch_remove(&tag, by, reason).await;
                let _ = reply.send(r);
            }
            Request::SilenceAdd { silence, by, reply } => {
                let r = self.add_silence(silence, by).await;
                let _ = reply.send(r);
            }
            Request::SilenceEnd { id, by, reply } => {
                let r = self.end_silence(id, by).await;
                let _ = reply.send(r);
            }
            Request::Sites { reply } => {
                let _ = reply.send(self.registry.sites().cloned().collect());
            }
            Request::ExpireClosed { cutoff, max, reply } => {
                let r = self.expire_closed(cutoff, max);
                let _ = reply.send(r);
            }
        }
        Ok(())
    }

    async fn transition(&mut self, id: &CaseId, t: Transition) -> Result<Case, DispatchError> {
        let mut case = self
            .load(id)?
            .ok_or_else(|| DispatchError::NoSuchCase(id.clone()))?;
        let old = case.next_deadline();
        let roster = self.p.roster.current();
        let duty = RosterDuty(&roster);
        let effects = case.apply(t, &self.p.policy, &duty)?;
        self.save(&case, old)?;
        self.p.store.flush().await?;
        let now = self.now();
        self.carry_out(case.clone(), effects, now).await?;
        Ok(self.load(id)?.unwrap_or(case))
    }
}

/// A unit by code, as cases name it: a department of the roster (at the level of the cell
/// it serves), or a grid cell; `None` for neither.
pub fn unit_ref(grid: &GridIndex, roster: &Roster, code: &str) -> Option<CellRef> {
    let h = grid.hierarchy();
    if let Some(d) = roster.department(code) {
        let level = grid
            .find(d.cell())
            .and_then(|c| h.get(c))
            .map_or(crate::grid::Level::County, |c| c.level());
        return Some(CellRef::new(d.code(), d.name(), level));
    }
    let cell = grid.find(code)?;
    h.get(cell)
        .map(|c| CellRef::new(c.code(), c.name(), c.level()))
}

/// Writes cases as the dispatcher files them, in one batch ([`crate::store::Cases::import`]),
/// flushed. For benchmarks that need a big store fast and for migrations; the hub must not be
/// running on this store.
pub fn import_cases(store: &Store, cases: &[Case]) -> Result<(), DispatchError> {
    store.cases().import(cases)?;
    store.flush_blocking()?;
    Ok(())
}

/// A stored case, read straight from the store (reads never wait behind the dispatcher).
pub fn load_case(store: &Store, id: &CaseId) -> Result<Option<Case>, DispatchError> {
    Ok(store.cases().get(id)?)
}

/// The case an alert was filed into (`None`: not filed, or muted).
pub fn case_of_alert(store: &Store, alert: &str) -> Result<Option<CaseId>, DispatchError> {
    Ok(store.cases().case_of_alert(alert)?)
}

/// A tag's trajectory: its sightings in time order (which readers, when), within `[from, to)`.
pub fn trajectory(
    store: &Store,
    tag: &str,
    from: UtcMillis,
    to: UtcMillis,
) -> Result<Vec<SightingRecord>, DispatchError> {
    Ok(store.sightings().trajectory(tag, from, to)?)
}
