//! Retention: what the hub keeps, and for how long (`[retention]`), so a hub that runs for
//! months does not fill its disk.
//!
//! - The pure core: given `now` and the config, a cutoff per [`Kind`] ([`cutoff`]): records of
//!   that kind stored (a closed case: closed) before it are due to go. Sessions go when they
//!   expire, so their cutoff is `now`.
//! - [`Expiring`]: what an owner of a stored kind offers the sweeper. Only the owner knows its
//!   keys and encoding; it removes at most `max` records older than the cutoff per call, and
//!   says whether more are left.
//! - [`Sweeper`]: every `sweep_every_s` (and on [`Sweeper::sweep_now`]) calls each registered
//!   owner once with its kind's cutoff and `max_per_tick`, and records what went in
//!   `/metrics`. Work per sweep is bounded per kind; a backlog (the first sweep of an old
//!   store, a lowered retention) is worked off over several sweeps rather than in one long
//!   stall. Owners are called on a blocking thread, one after another.
//!
//! Registering an owner: `sweeper.register(Kind::Alerts, Arc::new(alerts_owner))` before
//! [`Sweeper::spawn`]; a kind without an owner is skipped (its cutoff is still computed).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use protocol::UtcMillis;
use tokio::sync::watch;

use crate::book::CaseBook;
use crate::config::RetentionSection;
use crate::dispatch::{Clock, DispatchError};
use crate::metrics::HubMetrics;
use crate::store::{BlobId, Store, StoreError};

const DAY_MS: i64 = 86_400_000;

/// A kind of stored record with its own retention.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, strum::IntoStaticStr, strum::Display,
)]
#[strum(serialize_all = "snake_case")]
pub enum Kind {
    /// Alert snapshots (JPEG).
    Snapshots,
    /// Photos people attached to cases.
    Photos,
    /// Alerts as sites sent them.
    Alerts,
    /// Closed cases (never an open one), with their alert → case markers.
    ClosedCases,
    /// Tag sightings.
    Sightings,
    /// Dashboard sessions and app tokens past their expiry.
    Sessions,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Snapshots,
        Kind::Photos,
        Kind::Alerts,
        Kind::ClosedCases,
        Kind::Sightings,
        Kind::Sessions,
    ];

    /// The name in `/metrics` (`kind` label) and logs.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// How many days records of `kind` are kept (`None`: until they expire on their own).
pub fn days(kind: Kind, cfg: &RetentionSection) -> Option<u32> {
    match kind {
        Kind::Snapshots => Some(cfg.snapshots_days),
        Kind::Photos => Some(cfg.photos_days),
        Kind::Alerts => Some(cfg.alerts_days),
        Kind::ClosedCases => Some(cfg.closed_cases_days),
        Kind::Sightings => Some(cfg.sightings_days),
        Kind::Sessions => None,
    }
}

/// Records of `kind` older than this (strictly) are due to go at `now`.
pub fn cutoff(kind: Kind, now: UtcMillis, cfg: &RetentionSection) -> UtcMillis {
    match days(kind, cfg) {
        Some(d) => UtcMillis(now.0.saturating_sub(i64::from(d).saturating_mul(DAY_MS))),
        None => now,
    }
}

/// What one call of [`Expiring::expire_before`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// Records removed (a record is what the kind counts: an alert, a case, a sighting, …).
    pub records: u64,
    /// Bytes those records held (keys and values, or file sizes), as the owner counts them.
    pub bytes: u64,
    /// The call stopped at `max`: more may be due; the next sweep goes on.
    pub more: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Dispatch(#[from] DispatchError),
    #[error("{kind}: {why}")]
    Owner { kind: Kind, why: String },
    #[error("the sweep's thread failed: {0}")]
    Join(String),
}

/// What retention must not remove however old: the alerts, snapshots and photos of cases
/// still open (a stolen e-bike's case may stay open for months; its evidence stays with it).
#[derive(Debug, Default)]
pub struct PinSet {
    pub alerts: HashSet<String>,
    pub blobs: HashSet<BlobId>,
}

/// Works out the [`PinSet`] from the book's cases not closed and their stored records, at
/// each call (each kind's sweep: a case closed or opened since is seen at once). Its cost is
/// the open cases' alerts, a few reads each.
#[derive(Debug)]
pub struct OpenCasePins {
    store: Store,
    book: Arc<CaseBook>,
}

impl OpenCasePins {
    pub fn new(store: Store, book: Arc<CaseBook>) -> Self {
        Self { store, book }
    }

    pub fn get(&self) -> Result<PinSet, RetentionError> {
        self.compute()
    }

    fn compute(&self) -> Result<PinSet, RetentionError> {
        let mut pins = PinSet::default();
        for id in self.book.unclosed_ids() {
            let Some(case) = crate::dispatch::load_case(&self.store, &id)? else {
                continue;
            };
            for a in case.alert_ids.iter() {
                if let Some(s) = self.store.alerts().get(a)?
                    && let Some(snap) = s.snapshot
                {
                    pins.blobs.insert(snap.blob);
                }
                pins.alerts.insert(a.clone());
            }
            // Photos: attached with an action, and a patrol report's under its first alert.
            let photos = case
                .audit
                .iter()
                .filter_map(|r| r.photo.clone())
                .chain(std::iter::once(case.first_alert.clone()));
            for p in photos {
                if let Some(b) = self.store.photos().blob(&p)? {
                    pins.blobs.insert(b);
                }
            }
        }
        Ok(pins)
    }
}

/// An owner of a stored kind, as the sweeper sees it. Implementations are called on a
/// blocking thread (they may do disk I/O, or wait for the dispatcher), never two calls at
/// once from the sweeper.
pub trait Expiring: Send + Sync + std::fmt::Debug {
    /// Removes up to `max` records older than `cutoff` (strictly), oldest first where the
    /// owner can tell; `more` when it stopped at `max`. Must not walk records that are not
    /// due (an index by time, not a scan), so a call costs about `max` records' work.
    fn expire_before(&self, cutoff: UtcMillis, max: usize) -> Result<Swept, RetentionError>;

    /// Bytes the kind holds now, for the `hub_store_bytes{kind}` gauge. Must be cheap
    /// (running totals or an estimate; each owner says which).
    fn bytes(&self) -> Result<u64, RetentionError>;
}

/// The outcome of one sweep, per kind swept.
#[derive(Debug, Clone)]
pub struct SweepReport {
    pub at: UtcMillis,
    pub swept: BTreeMap<Kind, Swept>,
    /// Kinds whose owner failed (logged, counted), with the error.
    pub failed: BTreeMap<Kind, String>,
}

impl SweepReport {
    fn new(at: UtcMillis) -> Self {
        Self {
            at,
            swept: BTreeMap::new(),
            failed: BTreeMap::new(),
        }
    }

    /// Whether any kind stopped at `max_per_tick`.
    pub fn more(&self) -> bool {
        self.swept.values().any(|s| s.more)
    }

    pub fn records(&self, kind: Kind) -> u64 {
        self.swept.get(&kind).map_or(0, |s| s.records)
    }
}

/// Calls each registered owner with its cutoff, every `sweep_every_s`.
#[derive(Debug)]
pub struct Sweeper {
    cfg: RetentionSection,
    clock: Arc<dyn Clock>,
    metrics: Arc<HubMetrics>,
    owners: BTreeMap<Kind, Arc<dyn Expiring>>,
    /// One sweep at a time (the timer and a test's `sweep_now`).
    running: tokio::sync::Mutex<()>,
}

impl Sweeper {
    pub fn new(cfg: RetentionSection, clock: Arc<dyn Clock>, metrics: Arc<HubMetrics>) -> Self {
        Self {
            cfg,
            clock,
            metrics,
            owners: BTreeMap::new(),
            running: tokio::sync::Mutex::new(()),
        }
    }

    /// Makes `owner` the one swept for `kind` (replacing any before it).
    pub fn register(&mut self, kind: Kind, owner: Arc<dyn Expiring>) {
        self.owners.insert(kind, owner);
    }

    /// The kinds with an owner.
    pub fn kinds(&self) -> Vec<Kind> {
        self.owners.keys().copied().collect()
    }

    /// One sweep now: each owner once, at most `max_per_tick` records each.
    pub async fn sweep_now(&self) -> SweepReport {
        let _one = self.running.lock().await;
        let now = self.clock.now();
        let owners: Vec<(Kind, Arc<dyn Expiring>, UtcMillis)> = self
            .owners
            .iter()
            .map(|(k, o)| (*k, o.clone(), cutoff(*k, now, &self.cfg)))
            .collect();
        let max = self.cfg.max_per_tick;
        let started = std::time::Instant::now();
        let done = tokio::task::spawn_blocking(move || {
            let mut report = SweepReport::new(now);
            let mut sizes = Vec::new();
            for (kind, owner, cut) in owners {
                match owner.expire_before(cut, max) {
                    Ok(s) => {
                        report.swept.insert(kind, s);
                    }
                    Err(e) => {
                        report.failed.insert(kind, e.to_string());
                    }
                }
                match owner.bytes() {
                    Ok(b) => sizes.push((kind, b)),
                    Err(e) => {
                        report.failed.entry(kind).or_insert_with(|| e.to_string());
                    }
                }
            }
            (report, sizes)
        })
        .await;
        let (report, sizes) = match done {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "retention sweep thread failed");
                let mut report = SweepReport::new(now);
                for k in self.owners.keys() {
                    report.failed.insert(*k, e.to_string());
                }
                (report, Vec::new())
            }
        };
        for (kind, s) in &report.swept {
            self.metrics
                .retention_swept(kind.as_str(), s.records, s.bytes);
            if s.records > 0 || s.more {
                tracing::info!(kind = %kind, records = s.records, bytes = s.bytes, more = s.more, "retention: expired records removed");
            }
        }
        for (kind, e) in &report.failed {
            self.metrics.retention_failed(kind.as_str());
            tracing::error!(kind = %kind, error = %e, "retention: sweep of this kind failed; tried again next sweep");
        }
        for (kind, b) in sizes {
            self.metrics.store_bytes(kind.as_str(), b);
        }
        self.metrics.retention_swept_at(now);
        tracing::debug!(
            took_ms = started.elapsed().as_millis() as u64,
            "retention sweep done"
        );
        report
    }

    /// Sweeps every `sweep_every_s` (the first at once: a hub that was down owes one) until
    /// `stop` turns true.
    pub fn spawn(self: Arc<Self>, mut stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        let every = Duration::from_secs(self.cfg.sweep_every_s.max(1));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                tokio::select! {
                    _ = self.sweep_now() => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicI64, Ordering};

    use super::*;

    #[test]
    fn each_kind_is_cut_at_its_own_days_and_sessions_at_now() {
        let cfg = RetentionSection::default();
        let now = UtcMillis(1_800_000_000_000);
        let day = DAY_MS;
        assert_eq!(cutoff(Kind::Snapshots, now, &cfg).0, now.0 - 90 * day);
        assert_eq!(cutoff(Kind::Photos, now, &cfg).0, now.0 - 90 * day);
        assert_eq!(cutoff(Kind::Alerts, now, &cfg).0, now.0 - 365 * day);
        assert_eq!(cutoff(Kind::ClosedCases, now, &cfg).0, now.0 - 1095 * day);
        assert_eq!(cutoff(Kind::Sightings, now, &cfg).0, now.0 - 30 * day);
        assert_eq!(cutoff(Kind::Sessions, now, &cfg), now);
        let short = RetentionSection {
            sightings_days: 1,
            ..cfg.clone()
        };
        assert_eq!(cutoff(Kind::Sightings, now, &short).0, now.0 - day);
        assert_eq!(cutoff(Kind::Alerts, now, &short).0, now.0 - 365 * day);
    }

    #[test]
    fn a_cutoff_before_the_epoch_does_not_wrap() {
        let cfg = RetentionSection {
            closed_cases_days: crate::config::MAX_RETENTION_DAYS,
            ..RetentionSection::default()
        };
        let c = cutoff(Kind::ClosedCases, UtcMillis(1_000), &cfg);
        assert!(c.0 < 0, "{c:?}");
        assert_eq!(
            cutoff(Kind::Alerts, UtcMillis(i64::MIN + 5), &cfg),
            UtcMillis(i64::MIN)
        );
    }

    #[test]
    fn every_kind_has_a_distinct_metric_name() {
        // Pinned: the names are `/metrics` labels that dashboards and alert rules select on.
        assert_eq!(
            Kind::ALL.map(Kind::as_str),
            [
                "snapshots",
                "photos",
                "alerts",
                "closed_cases",
                "sightings",
                "sessions"
            ]
        );
    }

    #[derive(Debug)]
    struct FixedClock(AtomicI64);
    impl Clock for FixedClock {
        fn now(&self) -> UtcMillis {
            UtcMillis(self.0.load(Ordering::SeqCst))
        }
    }

    /// Records at the given times; removes the oldest due ones, `max` at a time.
    #[derive(Debug, Default)]
    struct Fake {
        at: Mutex<Vec<i64>>,
        cutoffs: Mutex<Vec<i64>>,
    }
    impl Expiring for Fake {
        fn expire_before(&self, cutoff: UtcMillis, max: usize) -> Result<Swept, RetentionError> {
            self.cutoffs.lock().unwrap().push(cutoff.0);
            let mut at = self.at.lock().unwrap();
            at.sort_unstable();
            let due = at.iter().take_while(|t| **t < cutoff.0).count();
            let n = due.min(max);
            at.drain(..n);
            Ok(Swept {
                records: n as u64,
                bytes: 10 * n as u64,
                more: n == max,
            })
        }
        fn bytes(&self) -> Result<u64, RetentionError> {
            Ok(10 * self.at.lock().unwrap().len() as u64)
        }
    }

    #[derive(Debug)]
    struct Broken;
    impl Expiring for Broken {
        fn expire_before(&self, _: UtcMillis, _: usize) -> Result<Swept, RetentionError> {
            Err(RetentionError::Owner {
                kind: Kind::Photos,
                why: "disk on fire".into(),
            })
        }
        fn bytes(&self) -> Result<u64, RetentionError> {
            Ok(0)
        }
    }

    #[tokio::test]
    async fn a_sweep_is_bounded_per_kind_and_a_failing_owner_does_not_stop_the_others() {
        let now = 100 * DAY_MS;
        let clock = Arc::new(FixedClock(AtomicI64::new(now)));
        let metrics = Arc::new(HubMetrics::default());
        let cfg = RetentionSection {
            sightings_days: 30,
            max_per_tick: 2,
            ..RetentionSection::default()
        };
        let fake = Arc::new(Fake::default());
        // Five due (older than 30 days), one not.
        *fake.at.lock().unwrap() = vec![1, 2, 3, 4, 5, now - DAY_MS];
        let mut sweeper = Sweeper::new(cfg, clock.clone(), metrics.clone());
        sweeper.register(Kind::Sightings, fake.clone());
        sweeper.register(Kind::Photos, Arc::new(Broken));
        let r = sweeper.sweep_now().await;
        assert_eq!(r.records(Kind::Sightings), 2);
        assert!(r.more());
        assert!(r.failed.contains_key(&Kind::Photos), "{r:?}");
        assert_eq!(fake.cutoffs.lock().unwrap()[0], now - 30 * DAY_MS);
        let r = sweeper.sweep_now().await;
        assert_eq!(r.records(Kind::Sightings), 2);
        let r = sweeper.sweep_now().await;
        assert_eq!(r.records(Kind::Sightings), 1);
        assert!(!r.more(), "the backlog is worked off");
        assert_eq!(fake.at.lock().unwrap().len(), 1, "the record not due stays");
        let text = metrics.render();
        for line in [
            "hub_retention_swept_total{kind=\"sightings\"} 5",
            "hub_retention_swept_bytes_total{kind=\"sightings\"} 50",
            "hub_store_bytes{kind=\"sightings\"} 10",
            "hub_retention_errors_total{kind=\"photos\"} 3",
            "hub_retention_last_sweep_seconds 8640000",
        ] {
            assert!(text.contains(line), "{line} missing in {text}");
        }
    }
}
