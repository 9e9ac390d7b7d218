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
//! case, its indexes and the removal of the alert's pending marker go in one atomic batch,
//! flushed before anyone is notified, so a crash re-files an alert at most once and never
//! loses one. Deadlines live in sled too: a restarted hub loads them and fires every one that
//! passed while it was down, in order.
//!
//! The disk guard's episodes ([`crate::disk::DiskGuard::subscribe`]) become hub-health cases
//! ([`crate::health`]): filed like an alert of the pseudo-site `hub` when the disk goes low,
//! resolved by the hub when space is back; a failed write of one is retried on the sweep
//! rather than stopping the dispatcher.

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
    Action, Case, CaseState, CellRef, DeliveryOutcome, DeliveryTarget, Duty, Effect, GroupKey,
    Policy, Silence, Transition, TransitionError, groups_with, inhibited, silenced_by,
};
use crate::config::SiteSection;
use crate::disk::DiskGuard;
use crate::grid::GridIndex;
use crate::link::Inbound;
use crate::metrics::{HubMetrics, bump};
use crate::push::{DeliveryReport, Pusher};
use crate::registry::{Change, Registry, SiteState};
use crate::retention::{Expiring, RetentionError, Swept};
use crate::roster::Roster;
use crate::store::{
    CaseWrites, Filed, Store, StoreError, StoredCase, WatchAction, WatchAudit, WatchEntry,
};
use crate::trust::{Position, SitePolicy};
use crate::watchlist::WatchBy;

/// The hub's clock, a seam so tests can run escalation on their own time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> UtcMillis;
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UtcMillis {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        UtcMillis(ms)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("case {0} not found")]
    NoSuchCase(String),
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
    #[error("the dispatcher has stopped")]
    Stopped,
}

pub use crate::store::SightingRecord;

/// Requests to the dispatcher (the API of issue 6 and the tests use these).
#[derive(Debug)]
pub enum Request {
    Transition {
        case: String,
        transition: Transition,
        reply: oneshot::Sender<Result<Case, DispatchError>>,
    },
    Case {
        case: String,
        reply: oneshot::Sender<Result<Option<Case>, DispatchError>>,
    },
    CaseOfAlert {
        alert: String,
        reply: oneshot::Sender<Result<Option<String>, DispatchError>>,
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
    Silence {
        silence: Silence,
        reply: oneshot::Sender<Result<(), DispatchError>>,
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

    pub async fn transition(&self, case: &str, t: Transition) -> Result<Case, DispatchError> {
        self.ask(|reply| Request::Transition {
            case: case.to_owned(),
            transition: t,
            reply,
        })
        .await?
    }

    pub async fn case(&self, case: &str) -> Result<Option<Case>, DispatchError> {
        self.ask(|reply| Request::Case {
            case: case.to_owned(),
            reply,
        })
        .await?
    }

    pub async fn case_of_alert(&self, alert: &str) -> Result<Option<String>, DispatchError> {
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

    pub async fn silence(&self, silence: Silence) -> Result<(), DispatchError> {
        self.ask(|reply| Request::Silence { silence, reply })
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
    /// requests of at most [`EXPIRE_CHUNK`] cases.
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
    pub roster: Arc<Roster>,
    pub policy: Policy,
    pub sites: BTreeMap<String, SiteSection>,
    pub offline_after_ms: i64,
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
    deadlines: BTreeSet<(i64, String)>,
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
}

/// Most alerts filed per flush.
const MAX_FILE_BATCH: usize = 1024;

impl Dispatcher {
    /// Loads the deadline index, silences and site registry from the store.
    pub fn new(p: DispatcherParts) -> Result<(Self, DispatchHandle), DispatchError> {
        let deadlines: BTreeSet<(i64, String)> = p.store.cases().deadlines()?.into_iter().collect();
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
                }
                Ok(()) = disk.changed() => {
                    let low = *disk.borrow_and_update();
                    self.disk_changed(low).await;
                }
            }
        }
        Ok(())
    }

    async fn recover(&mut self) -> Result<(), DispatchError> {
        let ids = self.p.store.pending_ids()?;
        if ids.is_empty() {
            return Ok(());
        }
        tracing::info!(
            alerts = ids.len(),
            "filing alerts stored but not filed before the last stop"
        );
        for chunk in ids.chunks(MAX_FILE_BATCH) {
            let mut batch = Vec::with_capacity(chunk.len());
            for id in chunk {
                match self.p.store.alerts().get(id) {
                    Ok(Some(s)) => batch.push(Arc::new(s.alert)),
                    Ok(None) => self.p.store.cases().drop_pending(id)?,
                    Err(e) => {
                        tracing::error!(alert = %id, error = %e, "stored alert unreadable; left pending");
                    }
                }
            }
            self.file_batch(batch).await?;
        }
        Ok(())
    }

    /// Files a batch: one atomic write for the batch's alerts, one flush, then the pushes, and
    /// one write recording them.
    ///
    /// One sled batch for all the alerts rather than one per alert: every batch sled applies
    /// takes its global write lock and seals and writes out its log buffer twice (each write
    /// synced to disk), whatever the batch holds. Per alert that was four synced log writes
    /// (filing and recording the pushes), most of the hub's disk traffic and of its CPU. Each
    /// alert's changes stay atomic (now together with the rest of the batch), and durable
    /// before anyone is notified; a crash before the batch is applied leaves every alert of it
    /// pending, to be filed at the next start.
    async fn file_batch(&mut self, batch: Vec<Arc<Alert>>) -> Result<(), DispatchError> {
        let now = self.now();
        let mut pushes: Vec<(Case, Vec<Effect>)> = Vec::new();
        let mut opened: HashMap<String, usize> = HashMap::new();
        let mut filed = CaseWrites::default();
        for alert in batch {
            let Some((case, effects)) = self.file(&alert, now, &mut filed)? else {
                continue;
            };
            match opened.get(&case.id) {
                // A later alert of the batch joined a case an earlier one opened: notify about,
                // and record the pushes on, the case as it is now, not as it was opened (saving
                // that copy would drop the alerts that joined).
                Some(&i) => pushes[i].0 = case,
                None if !effects.is_empty() => {
                    opened.insert(case.id.clone(), pushes.len());
                    pushes.push((case, effects));
                }
                None => {}
            }
        }
        self.apply(filed, "file alerts")?;
        self.p.store.flush().await?;
        let mut records = CaseWrites::default();
        for (case, effects) in pushes {
            if let Some(case) = self.notify(case, effects, now).await? {
                let dl = case.next_deadline();
                self.stage_save(&mut records, &case, dl)?;
            }
        }
        self.apply(records, "save cases")?;
        Ok(())
    }

    /// Where an alert belongs: its position's deepest cell; without a position (or with one
    /// the site is not trusted with, which the caller has taken out) its site's registered
    /// cell; outside every cell, the top cell.
    fn path_for(&self, alert: &Alert) -> Vec<CellRef> {
        let h = self.p.grid.hierarchy();
        let cell = match alert.location {
            Some(l) => self.p.grid.locate(l.lon, l.lat),
            None => self
                .p
                .sites
                .get(&alert.site)
                .and_then(|s| self.p.grid.find(&s.cell)),
        };
        match cell.or_else(|| h.roots().next().map(|c| c.id())) {
            Some(c) => CellRef::path_to(h, c),
            None => Vec::new(),
        }
    }

    /// Files one alert into `staged`; returns its case as filed and what to do about it (no
    /// effects when the alert joined an open case), or `None` for an alert filed before or
    /// muted.
    fn file(
        &mut self,
        alert: &Alert,
        now: UtcMillis,
        staged: &mut CaseWrites,
    ) -> Result<Option<(Case, Vec<Effect>)>, DispatchError> {
        let cases = self.p.store.cases().clone();
        if staged.filed(&cases, &alert.id)?.is_some() {
            staged.clear_pending(&alert.id);
            return Ok(None);
        }
        // A position the site is not trusted with is taken out before anything else sees it
        // (grouping, location, the case's map pin): the alert is filed as if it had none, in
        // its site's cell, and the claim is kept on the case.
        let untrusted = match self.p.trust.position(alert) {
            Position::Untrusted(u) => {
                tracing::warn!(alert = %alert.id, site = %alert.site, lon = u.claimed.lon, lat = u.claimed.lat, reason = %u.reason, "alert position not trusted; filed by its site's cell");
                Some(u)
            }
            Position::Absent | Position::Trusted(_) => None,
        };
        let relocated;
        let alert = match &untrusted {
            Some(_) => {
                relocated = Alert {
                    location: None,
                    ..alert.clone()
                };
                &relocated
            }
            None => alert,
        };
        // A patrol report comes from a person through the API, a health alert from the hub:
        // neither from a site.
        if !matches!(
            alert.source,
            protocol::AlertSource::Person(_) | protocol::AlertSource::Hub(_)
        ) {
            self.registry.on_activity(&alert.site, now);
        }
        let muted = if inhibited(alert, self.registry.is_online(&alert.site)) {
            bump(&self.p.metrics.inhibited);
            Some("inhibited: the site is offline".to_owned())
        } else {
            silenced_by(&self.silences, alert, now).map(|s| {
                bump(&self.p.metrics.silenced);
                format!("silenced by {}", s.id)
            })
        };
        if let Some(why) = muted {
            tracing::info!(alert = %alert.id, site = %alert.site, why, "alert stored, not dispatched");
            staged.file(&alert.id, &Filed::Muted(why));
            return Ok(None);
        }
        let group = GroupKey::of(alert);
        let window = self.p.policy.group_window.as_ms();
        let open = match staged.group(&cases, &group)? {
            Some(id) => staged.case(&cases, &id)?,
            None => None,
        };
        let duty = RosterDuty(&self.p.roster);
        let (mut case, effects, old_deadline) = match open {
            Some(mut case) if groups_with(&case, alert, window) => {
                let old = case.next_deadline();
                case.absorb(alert, now);
                (case, Vec::new(), old)
            }
            _ => {
                let path = self.path_for(alert);
                let id = format!("C-{}", alert.id);
                let (case, effects) = Case::open(id, alert, path, now, &self.p.policy, &duty);
                bump(&self.p.metrics.cases_opened);
                (case, effects, None)
            }
        };
        if case.position_untrusted.is_none() {
            case.position_untrusted = untrusted;
        }
        staged.put_case(&case)?;
        self.touched.push(case.clone());
        staged.file(&alert.id, &Filed::Case(case.id.clone()));
        if case.is_open() {
            staged.set_group(&group, &case.id);
        }
        self.move_deadline(staged, &case.id, old_deadline, case.next_deadline());
        bump(&self.p.metrics.alerts_filed);
        Ok(Some((case, effects)))
    }

    fn move_deadline(
        &mut self,
        b: &mut CaseWrites,
        case: &str,
        old: Option<UtcMillis>,
        new: Option<UtcMillis>,
    ) {
        if old == new {
            return;
        }
        if let Some(o) = old {
            b.remove_deadline(o, case);
            self.deadlines.remove(&(o.0, case.to_owned()));
        }
        if let Some(n) = new {
            b.put_deadline(n, case);
            self.deadlines.insert((n.0, case.to_owned()));
        }
    }

    fn load(&self, id: &str) -> Result<Option<Case>, DispatchError> {
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

    /// Pushes the notifications the effects ask for and records them on the case.
    async fn carry_out(
        &mut self,
        case: Case,
        effects: Vec<Effect>,
        now: UtcMillis,
    ) -> Result<(), DispatchError> {
        if let Some(case) = self.notify(case, effects, now).await? {
            let dl = case.next_deadline();
            self.save(&case, dl)?;
        }
        Ok(())
    }

    /// Pushes the notifications the effects ask for and records them on the case; returns the
    /// case when that changed it (the caller saves it).
    async fn notify(
        &mut self,
        mut case: Case,
        effects: Vec<Effect>,
        now: UtcMillis,
    ) -> Result<Option<Case>, DispatchError> {
        let mut changed = false;
        for e in &effects {
            match e {
                Effect::Notify {
                    persons,
                    cell,
                    step,
                    reason,
                } => {
                    let n = self.p.pusher.notification(&case, cell, *step, *reason, now);
                    for person in persons {
                        let outcome = self.p.pusher.person(person, &n).await;
                        case.record_delivery(
                            DeliveryTarget::Person(person.clone()),
                            "mqtt",
                            *step,
                            outcome,
                            now,
                        );
                        changed = true;
                    }
                    let phones = persons
                        .iter()
                        .filter_map(|p| self.p.roster.person(p).map(|p| p.phone().to_owned()))
                        .collect();
                    let (_, dropped) = self.p.pusher.webhooks(&n, phones, &self.deliveries_tx);
                    for id in dropped {
                        case.record_delivery(
                            DeliveryTarget::Webhook(id),
                            "webhook",
                            *step,
                            DeliveryOutcome::Failed {
                                error: "push queue full; dropped".into(),
                            },
                            now,
                        );
                        changed = true;
                    }
                    tracing::info!(
                        case = %case.id, cell = %cell.code, level = %cell.level.as_str(), step, ?reason,
                        persons = %persons.join(","), path = %n.path, "dispatched"
                    );
                }
                Effect::Escalated { from, to, reason } => {
                    bump(&self.p.metrics.escalations);
                    tracing::warn!(case = %case.id, from = %from.code, to = %to.code, ?reason, "case climbed");
                }
                Effect::NobodyToNotify { cell, step } => {
                    tracing::error!(case = %case.id, cell = %cell.code, step, "nobody on duty even at the top; the case waits in the top queue");
                }
                Effect::OverdueAtTop { cell, kind, due } => {
                    tracing::error!(case = %case.id, cell = %cell.code, ?kind, %due, "case overdue at the top level");
                }
                _ => {}
            }
        }
        Ok(changed.then_some(case))
    }

    /// Fires every deadline due by now, oldest first.
    async fn fire_due(&mut self) -> Result<(), DispatchError> {
        let now = self.now();
        while let Some((at, id)) = self.deadlines.first().cloned() {
            if at > now.0 {
                break;
            }
            let Some(mut case) = self.load(&id)? else {
                let mut b = CaseWrites::default();
                self.move_deadline(&mut b, &id, Some(UtcMillis(at)), None);
                self.p.store.cases().apply(b, "drop deadline")?;
                continue;
            };
            let old = Some(UtcMillis(at));
            let duty = RosterDuty(&self.p.roster);
            let effects = case.tick(now, &self.p.policy, &duty);
            if case.next_deadline() == old {
                // The core did not move it (should not happen): drop it rather than spin.
                tracing::error!(case = %id, at, "deadline did not advance on tick; dropped");
                let mut b = CaseWrites::default();
                self.move_deadline(&mut b, &id, old, None);
                self.p.store.cases().apply(b, "drop deadline")?;
                continue;
            }
            self.save(&case, old)?;
            self.p.store.flush().await?;
            self.carry_out(case, effects, now).await?;
        }
        Ok(())
    }

    /// The auditor. `full` (at start): every case's deadline must be in the index — a case
    /// whose deadline is missing would never climb. Periodically (cheap): the in-memory timer
    /// set must match the index on disk, and nothing in it may be overdue. Every miss is logged
    /// as an error, counted in `hub_deadlines_missed_total`, repaired and fired.
    async fn audit(&mut self, full: bool) -> Result<(), DispatchError> {
        let now = self.now();
        let mut missed = 0u64;
        if full {
            let store = self.p.store.clone();
            for c in store.cases().all() {
                let Ok(StoredCase { case, .. }) = c else {
                    continue;
                };
                if let Some(d) = case.next_deadline()
                    && !self.deadlines.contains(&(d.0, case.id.clone()))
                {
                    missed += 1;
                    tracing::error!(case = %case.id, deadline = %d, "auditor: deadline missing from the index; restored");
                    let mut b = CaseWrites::default();
                    self.move_deadline(&mut b, &case.id, None, Some(d));
                    self.p.store.cases().apply(b, "restore deadline")?;
                }
            }
        } else {
            let mut on_disk = 0usize;
            for entry in self.p.store.cases().deadlines()? {
                on_disk += 1;
                if !self.deadlines.contains(&entry) {
                    missed += 1;
                    tracing::error!(case = %entry.1, at = entry.0, "auditor: deadline on disk but not in the timer; restored");
                    self.deadlines.insert(entry);
                }
            }
            if on_disk < self.deadlines.len() {
                tracing::error!(
                    on_disk,
                    in_memory = self.deadlines.len(),
                    "auditor: timer holds deadlines the disk does not"
                );
            }
        }
        let overdue = self
            .deadlines
            .iter()
            .filter(|(at, _)| *at + 5_000 < now.0)
            .count() as u64;
        if overdue > 0 {
            tracing::error!(
                overdue,
                "auditor: deadlines overdue by more than 5 s; firing"
            );
        }
        self.p
            .metrics
            .deadlines_missed
            .fetch_add(missed + overdue, std::sync::atomic::Ordering::Relaxed);
        self.fire_due().await
    }

    /// The disk guard's episode changed: a case to open (low) or to resolve (space back).
    async fn disk_changed(&mut self, low: bool) {
        self.health_due = Some(if low {
            let d = &self.p.disk;
            HealthDue::Open(Arc::new(crate::health::disk_low_alert(
                self.p.clock.now(),
                d.free_bytes(),
                d.min_free_bytes(),
                d.dir(),
            )))
        } else {
            HealthDue::Resolve
        });
        self.health().await;
    }

    /// Writes the hub-health case owed, if any. A failure (a disk that is full after all) does
    /// not stop the dispatcher: it is logged, counted, and retried on the next sweep.
    async fn health(&mut self) {
        let result = match &self.health_due {
            None => return,
            Some(HealthDue::Open(alert)) => self.open_disk_case(alert.clone()).await,
            Some(HealthDue::Resolve) => self.resolve_disk_case().await,
        };
        match result {
            Ok(()) => self.health_due = None,
            Err(e) => {
                // Staged cases of the failed write were never stored: not for the book.
                self.touched.clear();
                bump(&self.p.metrics.health_case_failures);
                tracing::error!(error = %e, due = ?self.health_due, "cannot write the hub-health case; retried in 5 s");
            }
        }
    }

    /// The latest disk case, unless it is resolved or closed.
    fn active_disk_case(&self) -> Result<Option<Case>, DispatchError> {
        let Some(id) = self.p.store.cases().health_case(crate::health::DISK_PART)? else {
            return Ok(None);
        };
        Ok(self
            .load(&id)?
            .filter(|c| !matches!(c.state, CaseState::Resolved | CaseState::Closed)))
    }

    async fn open_disk_case(&mut self, alert: Arc<Alert>) -> Result<(), DispatchError> {
        if let Some(case) = self.active_disk_case()? {
            // A restart during the episode: its case is still being handled.
            tracing::warn!(case = %case.id, "the disk is still low; its hub-health case is open");
            return Ok(());
        }
        // Stored like every alert (the case's detail shows it), pending until filed.
        let store = self.p.store.clone();
        let stored = alert.clone();
        let now = self.now();
        tokio::task::spawn_blocking(move || store.alerts().insert(&[stored], now))
            .await
            .map_err(|e| DispatchError::Invalid(format!("storing the health alert: {e}")))??;
        self.file_batch(vec![alert.clone()]).await?;
        if let Some(case) = self.p.store.cases().case_of_alert(&alert.id)? {
            self.p
                .store
                .cases()
                .set_health_case(crate::health::DISK_PART, &case)?;
            self.p.store.flush().await?;
            tracing::error!(case = %case, "hub-health case opened: the disk is nearly full");
        }
        Ok(())
    }

    async fn resolve_disk_case(&mut self) -> Result<(), DispatchError> {
        let Some(case) = self.active_disk_case()? else {
            return Ok(());
        };
        let now = self.now();
        let hub = |action| Transition {
            action,
            actor: crate::case::Actor::hub(),
            note: None,
            photo: None,
            at: now,
        };
        if matches!(case.state, CaseState::New | CaseState::Dispatched) {
            self.transition(&case.id, hub(Action::Acknowledge)).await?;
        }
        let note =
            crate::health::disk_back_note(self.p.disk.free_bytes(), self.p.disk.min_free_bytes());
        let mut resolve = hub(Action::Resolve);
        resolve.note = Some(note);
        self.transition(&case.id, resolve).await?;
        tracing::warn!(case = %case.id, "hub-health case resolved by the hub: disk space is back");
        Ok(())
    }

    fn sweep(&mut self) -> Result<(), DispatchError> {
        let now = self.now();
        for site in self.registry.sweep(now) {
            tracing::warn!(site, "site silent too long; offline");
            self.persist_site(&site)?;
        }
        Ok(())
    }

    fn persist_site(&self, site: &str) -> Result<(), DispatchError> {
        if let Some(s) = self.registry.get(site) {
            self.p.store.sites().put(s)?;
        }
        Ok(())
    }

    async fn inbound(&mut self, m: Inbound) -> Result<(), DispatchError> {
        let now = self.now();
        match m.kind {
            TopicKind::Status => match protocol::validate::decode_status(&m.payload) {
                Ok(st) if st.site == m.site => {
                    bump(&self.p.metrics.status_received);
                    let change = self.registry.on_status(&st, now);
                    self.persist_site(&m.site)?;
                    match change {
                        Change::CameOnline => {
                            tracing::info!(site = %m.site, "site online");
                            self.sync_watchlist(&m.site).await?;
                        }
                        Change::WentOffline => tracing::warn!(site = %m.site, "site offline"),
                        Change::None => {}
                    }
                }
                Ok(st) => self.reject(
                    &m.site,
                    "status",
                    &format!("site: {:?} does not match the topic", st.site),
                ),
                Err(e) => self.reject(&m.site, "status", &e.to_string()),
            },
            TopicKind::Sighting => match protocol::validate::decode_sightings(&m.payload) {
                Ok(batch) if batch.site == m.site => {
                    self.registry.on_activity(&m.site, now);
                    let records: Vec<SightingRecord> = batch
                        .sightings
                        .iter()
                        .map(|s| SightingRecord {
                            tag: s.tag.clone(),
                            site: m.site.clone(),
                            reader: s.reader.clone(),
                            first: s.first,
                            last: s.last,
                            reads: s.reads,
                            rssi: s.rssi,
                        })
                        .collect();
                    self.p.store.sightings().insert(&records, now)?;
                    self.p.metrics.sightings_stored.fetch_add(
                        batch.sightings.len() as u64,
                        std::sync::atomic::Ordering::Relaxed,
                    );
                }
                Ok(_) => self.reject(&m.site, "sighting", "site: does not match the topic"),
                Err(e) => self.reject(&m.site, "sighting", &e.to_string()),
            },
            TopicKind::CmdReply => match protocol::validate::decode_command_reply(&m.payload) {
                Ok(r) => {
                    self.registry.on_activity(&m.site, now);
                    tracing::info!(site = %m.site, seq = ?r.seq, outcome = ?r.outcome, detail = ?r.detail, "command reply");
                }
                Err(e) => self.reject(&m.site, "cmd_reply", &e.to_string()),
            },
            TopicKind::Alert | TopicKind::Cmd => {}
        }
        Ok(())
    }

    fn reject(&self, site: &str, kind: &'static str, why: &str) {
        self.p.metrics.reject(site, kind);
        tracing::warn!(
            site,
            topic = kind,
            reason = why,
            "payload rejected and dropped"
        );
    }

    fn delivery(&mut self, d: DeliveryReport) -> Result<(), DispatchError> {
        let Some(mut case) = self.load(&d.case)? else {
            return Ok(());
        };
        let now = self.now();
        let (target, channel, step, attempts) =
            (d.target.clone(), d.channel.clone(), d.step, d.attempts);
        case.record_delivery(d.target, &d.channel, d.step, d.outcome, now);
        // The sender retried on its own; the report's count is the truth.
        if let Some(entry) = case
            .deliveries
            .iter_mut()
            .find(|e| e.target == target && e.channel == channel && e.step == step)
        {
            entry.attempts = attempts;
        }
        let dl = case.next_deadline();
        self.save(&case, dl)
    }

    /// Known sites: configured plus any heard from.
    fn known_sites(&self) -> BTreeSet<String> {
        let mut s: BTreeSet<String> = self.p.sites.keys().cloned().collect();
        s.extend(self.registry.sites().map(|s| s.id.clone()));
        s
    }

    fn next_seq(&mut self) -> Result<u64, DispatchError> {
        // Time-based so that a store restored from an old backup still issues seqs the agents
        // have not seen.
        self.last_seq = (self.last_seq + 1).max(self.now().0 as u64);
        self.p.store.set_command_seq(self.last_seq)?;
        Ok(self.last_seq)
    }

    async fn send_command(&mut self, site: &str, body: CommandBody) -> Result<(), DispatchError> {
        let cmd = Command {
            schema: protocol::SCHEMA_VERSION,
            site: site.to_owned(),
            seq: self.next_seq()?,
            issued_at: self.now(),
            body,
        };
        let signed = SignedCommand::sign(&cmd, &self.p.signing_key);
        let payload =
            serde_json::to_vec(&signed).map_err(|e| DispatchError::Invalid(e.to_string()))?;
        if let Err(e) = self
            .p
            .pusher
            .link()
            .publish(&self.p.topics.cmd(site), payload, false)
            .await
        {
            tracing::warn!(site, error = %e, "command not sent; it goes again when the site comes online");
        } else {
            tracing::info!(site, seq = cmd.seq, "command sent");
        }
        Ok(())
    }

    /// Sends a site that just came online every entry that applies to it (it may have missed
    /// changes).
    async fn sync_watchlist(&mut self, site: &str) -> Result<(), DispatchError> {
        let cell = self.p.sites.get(site).map(|s| s.cell.clone());
        let entries = self.p.store.watchlist().entries()?;
        for e in entries {
            if !crate::watchlist::covers(self.p.grid.hierarchy(), &e.scope, cell.as_deref()) {
                continue;
            }
            self.send_command(
                site,
                CommandBody::WatchAdd {
                    tag: e.tag,
                    case_ref: e.case_ref,
                    note: e.note,
                },
            )
            .await?;
        }
        Ok(())
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
            Request::Silence { silence, reply } => {
                let r = self.add_silence(silence);
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

    /// [`DispatchHandle::expire_closed`]: walks the closing-time index up to `cutoff`, at
    /// most `max` entries, so a call costs about `max` cases whatever the store holds.
    fn expire_closed(&mut self, cutoff: UtcMillis, max: usize) -> Result<Swept, DispatchError> {
        let cases = self.p.store.cases().clone();
        let mut b = CaseWrites::default();
        let mut gone = Vec::new();
        let mut swept = Swept::default();
        let mut seen = 0usize;
        for entry in cases.closed_before(cutoff, max)? {
            seen += 1;
            b.unindex_closed(&entry);
            let id = entry.id;
            let raw_len = b.case_bytes(&cases, &id)?;
            let case = match cases.get(&id) {
                Ok(Some(c)) => c,
                Ok(None) => continue,
                Err(e) => {
                    // Left in place (only its index entry goes): someone should look at it.
                    tracing::error!(case = %id, error = %e, "retention: unreadable case kept; its closing-time entry dropped");
                    continue;
                }
            };
            if case.is_open() {
                tracing::error!(case = %id, "retention: an open case in the closing-time index; kept, entry dropped");
                continue;
            }
            b.remove_case(&id);
            swept.bytes += raw_len;
            for a in &case.alert_ids {
                // Only a marker that still points at this case (a resent alert filed later
                // elsewhere keeps its own).
                if b.filed(&cases, a)?.as_ref().and_then(Filed::case) == Some(case.id.as_str()) {
                    swept.bytes += (a.len() + case.id.len() + 2) as u64;
                    b.unfile(a);
                }
            }
            b.release_group(&cases, &case.key, &case.id)?;
            self.move_deadline(&mut b, &case.id, case.next_deadline(), None);
            self.closed_bytes.fetch_sub(
                raw_len.min(self.closed_bytes.load(Ordering::Relaxed)),
                Ordering::Relaxed,
            );
            gone.push(case.id);
        }
        cases.apply(b, "expire closed cases")?;
        self.p.book.remove(&gone);
        swept.records = gone.len() as u64;
        swept.more = seen == max;
        if !gone.is_empty() {
            tracing::info!(cases = gone.len(), %cutoff, "retention: closed cases removed");
        }
        Ok(swept)
    }

    async fn transition(&mut self, id: &str, t: Transition) -> Result<Case, DispatchError> {
        let mut case = self
            .load(id)?
            .ok_or_else(|| DispatchError::NoSuchCase(id.to_owned()))?;
        let old = case.next_deadline();
        let duty = RosterDuty(&self.p.roster);
        let effects = case.apply(t, &self.p.policy, &duty)?;
        self.save(&case, old)?;
        self.p.store.flush().await?;
        let now = self.now();
        self.carry_out(case.clone(), effects, now).await?;
        Ok(self.load(id)?.unwrap_or(case))
    }

    /// The known sites an entry of `scope` applies to.
    fn sites_of(&self, scope: &crate::store::WatchScope) -> BTreeSet<String> {
        let grid = self.p.grid.hierarchy();
        self.known_sites()
            .into_iter()
            .filter(|site| {
                let cell = self.p.sites.get(site).map(|s| s.cell.as_str());
                crate::watchlist::covers(grid, scope, cell)
            })
            .collect()
    }

    async fn watch_add(
        &mut self,
        entry: WatchEntry,
        by: WatchBy,
    ) -> Result<WatchAudit, DispatchError> {
        protocol::validate_id("tag", &entry.tag)
            .map_err(|e| DispatchError::Invalid(e.to_string()))?;
        let grid = self.p.grid.hierarchy();
        if !by.authority.sees(grid, &entry.scope) {
            return Err(DispatchError::OutsideScope);
        }
        let previous = self.p.store.watchlist().get(&entry.tag)?;
        if let Some(p) = &previous
            && !by.authority.sees(grid, &p.scope)
        {
            return Err(DispatchError::WatchTaken(entry.tag));
        }
        let sites = self.sites_of(&entry.scope);
        // Sites of the old scope the new one leaves out stop watching.
        let dropped: BTreeSet<String> = previous
            .as_ref()
            .map(|p| self.sites_of(&p.scope))
            .unwrap_or_default()
            .difference(&sites)
            .cloned()
            .collect();
        let record = WatchAudit {
            seq: 0,
            at: entry.added_at,
            action: if previous.is_some() {
                WatchAction::Changed
            } else {
                WatchAction::Added
            },
            tag: entry.tag.clone(),
            case_ref: entry.case_ref.clone(),
            scope: entry.scope.clone(),
            note: entry.note.clone(),
            login: by.login,
            actor: by.actor,
            reason: None,
            previous,
            sites: sites.len(),
        };
        let record = self.p.store.watchlist().put(&entry, record)?;
        self.p.store.flush().await?;
        for site in &sites {
            self.send_command(
                site,
                CommandBody::WatchAdd {
                    tag: entry.tag.clone(),
                    case_ref: entry.case_ref.clone(),
                    note: entry.note.clone(),
                },
            )
            .await?;
        }
        for site in &dropped {
            self.send_command(
                site,
                CommandBody::WatchRemove {
                    tag: entry.tag.clone(),
                },
            )
            .await?;
        }
        tracing::info!(
            tag = %entry.tag,
            case_ref = %entry.case_ref,
            login = %record.login,
            action = ?record.action,
            sites = sites.len(),
            dropped = dropped.len(),
            "tag watchlisted"
        );
        Ok(record)
    }

    async fn watch_remove(
        &mut self,
        tag: &str,
        by: WatchBy,
        reason: Option<String>,
    ) -> Result<WatchAudit, DispatchError> {
        let entry = self
            .p
            .store
            .watchlist()
            .get(tag)?
            .filter(|e| by.authority.sees(self.p.grid.hierarchy(), &e.scope))
            .ok_or_else(|| DispatchError::NoSuchWatch(tag.to_owned()))?;
        let sites = self.sites_of(&entry.scope);
        let record = WatchAudit {
            seq: 0,
            at: self.now(),
            action: WatchAction::Removed,
            tag: tag.to_owned(),
            case_ref: entry.case_ref.clone(),
            scope: entry.scope.clone(),
            note: entry.note.clone(),
            login: by.login,
            actor: by.actor,
            reason,
            previous: Some(entry),
            sites: sites.len(),
        };
        let record = self.p.store.watchlist().remove(tag, record)?;
        self.p.store.flush().await?;
        for site in &sites {
            self.send_command(
                site,
                CommandBody::WatchRemove {
                    tag: tag.to_owned(),
                },
            )
            .await?;
        }
        tracing::info!(tag, login = %record.login, sites = sites.len(), "tag cleared from the watchlist");
        Ok(record)
    }

    fn add_silence(&mut self, s: Silence) -> Result<(), DispatchError> {
        let problems = s.problems();
        if !problems.is_empty() {
            return Err(DispatchError::Invalid(problems.join("; ")));
        }
        self.p.store.cases().put_silence(&s)?;
        self.silences.retain(|x| x.id != s.id);
        self.silences.push(s);
        Ok(())
    }
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
pub fn load_case(store: &Store, id: &str) -> Result<Option<Case>, DispatchError> {
    Ok(store.cases().get(id)?)
}

/// The case an alert was filed into (`None`: not filed, or muted).
pub fn case_of_alert(store: &Store, alert: &str) -> Result<Option<String>, DispatchError> {
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
