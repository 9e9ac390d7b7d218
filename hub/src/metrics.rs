//! Counters of everything the hub receives, refuses and drops, shown on `/metrics` and in logs.
//! Nothing is dropped silently: each drop has a counter here, per site where a site is known.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use infra::metrics::{Collector, DescriptorEncoder, Families, Registry};

/// Shared counters. Cheap to bump from any task.
#[derive(Debug, Default)]
pub struct HubMetrics {
    pub alerts_stored: AtomicU64,
    pub alerts_duplicate: AtomicU64,
    pub alerts_filed: AtomicU64,
    pub cases_opened: AtomicU64,
    pub escalations: AtomicU64,
    pub notifications_sent: AtomicU64,
    pub notifications_failed: AtomicU64,
    pub notifications_dropped: AtomicU64,
    /// SMS messages the provider accepted, refused or lost, dropped on a full queue, and
    /// confirmed delivered by a receipt ([`crate::sms`]).
    pub sms_sent: AtomicU64,
    pub sms_failed: AtomicU64,
    pub sms_dropped: AtomicU64,
    pub sms_delivered: AtomicU64,
    /// Work-app messages ([`crate::workapp`]): accepted by the API, not sent or refused, dropped
    /// because the queue was full.
    pub work_app_sent: AtomicU64,
    pub work_app_failed: AtomicU64,
    pub work_app_dropped: AtomicU64,
    pub connections_accepted: AtomicU64,
    pub connections_refused_auth: AtomicU64,
    pub acl_denied: AtomicU64,
    pub protocol_errors: AtomicU64,
    /// Batches ingest's writer stored, and the alerts and refused payloads in them (their
    /// ratio is the mean batch: one store and one flush each).
    pub ingest_batches: AtomicU64,
    pub ingest_batched: AtomicU64,
    /// Unauthenticated connections that sent no CONNECT within the deadline.
    pub preauth_timeouts: AtomicU64,
    /// Unauthenticated connections ended to make room for newer ones.
    pub preauth_evicted: AtomicU64,
    /// Authenticated connections refused because `broker.max_connections` were open.
    pub connections_over_capacity: AtomicU64,
    /// Failed-login log lines left out by the rate limit.
    pub login_logs_suppressed: AtomicU64,
    pub status_received: AtomicU64,
    pub sightings_stored: AtomicU64,
    pub silenced: AtomicU64,
    pub inhibited: AtomicU64,
    pub deadlines_missed: AtomicU64,
    /// Malformed payloads dropped, by (site, topic kind).
    rejected: Mutex<BTreeMap<(String, &'static str), u64>>,
    /// Each site's clock minus the hub's, ms, as last measured (gauge, by site).
    clock_offsets: Mutex<BTreeMap<String, i64>>,
    /// Site alerts filed at their receipt time because their own was not believed.
    pub alerts_retimed: AtomicU64,
    /// Reloads applied, and refused (a bad file: nothing changed).
    pub reloads: AtomicU64,
    pub reloads_refused: AtomicU64,
    /// Alert payloads quarantined, by (site, reason code).
    quarantined: Mutex<BTreeMap<(String, &'static str), u64>>,
    /// Quarantine records dropped (oldest first) because the quarantine was full.
    pub quarantine_evicted: AtomicU64,
    /// Quarantine records and kept bytes now (gauges).
    quarantine_records: AtomicU64,
    quarantine_bytes: AtomicU64,
    /// Plaintext listeners on a non-loopback address, set at start (gauges): MQTT without
    /// TLS, and the dashboard's HTTP (the hub has no TLS of its own for it).
    plaintext_mqtt: AtomicU64,
    plaintext_http: AtomicU64,
    /// Alerts answered "deferred" (not stored, the agent keeps them) because the data disk was
    /// below `[storage] min_free_mb`.
    pub alerts_deferred: AtomicU64,
    /// Failed writes of the hub-health case (opened while the disk is low, resolved when
    /// space is back); each is retried.
    pub health_case_failures: AtomicU64,
    /// Microseconds each serial stage spent, by [`Stage`].
    stages: [AtomicU64; Stage::ALL.len()],
    /// The data directory's free bytes, its threshold, and 1 while below it (gauges).
    disk_free: AtomicU64,
    /// The case log's sizes (`store::LogStats`), as of the dispatcher's last write.
    case_log: [AtomicU64; 4],
    disk_min_free: AtomicU64,
    disk_low: AtomicU64,
    /// Retention, by kind (`retention::Kind::as_str`).
    retention: Mutex<BTreeMap<&'static str, RetentionCounts>>,
    /// The hub clock's time of the last sweep, ms (0: none yet).
    retention_last_sweep_ms: std::sync::atomic::AtomicI64,
}

/// One kind's retention counters and size.
#[derive(Debug, Default, Clone, Copy)]
struct RetentionCounts {
    swept: u64,
    swept_bytes: u64,
    errors: u64,
    /// The owner's size as last reported (gauge); `None` until it is.
    bytes: Option<u64>,
}

impl HubMetrics {
    pub fn reject(&self, site: &str, kind: &'static str) {
        if let Ok(mut m) = self.rejected.lock() {
            *m.entry((site.to_owned(), kind)).or_default() += 1;
        }
    }

    /// Sets `site`'s measured clock offset.
    pub fn set_clock_offset(&self, site: &str, ms: i64) {
        if let Ok(mut m) = self.clock_offsets.lock() {
            m.insert(site.to_owned(), ms);
        }
    }

    pub fn rejected(&self, site: &str, kind: &'static str) -> u64 {
        self.rejected
            .lock()
            .ok()
            .and_then(|m| m.get(&(site.to_owned(), kind)).copied())
            .unwrap_or(0)
    }

    pub fn quarantined(&self, site: &str, code: crate::ingest::RejectCode) {
        if let Ok(mut m) = self.quarantined.lock() {
            *m.entry((site.to_owned(), code.as_str())).or_default() += 1;
        }
    }

    pub fn quarantined_count(&self, site: &str, code: crate::ingest::RejectCode) -> u64 {
        self.quarantined
            .lock()
            .ok()
            .and_then(|m| m.get(&(site.to_owned(), code.as_str())).copied())
            .unwrap_or(0)
    }

    pub fn quarantine_evicted(&self, n: u64) {
        self.quarantine_evicted.fetch_add(n, Relaxed);
    }

    pub fn quarantine_size(&self, records: u64, bytes: u64) {
        self.quarantine_records.store(records, Relaxed);
        self.quarantine_bytes.store(bytes, Relaxed);
    }

    /// How many plaintext listeners are reachable from other hosts, by kind.
    pub fn plaintext_listeners(&self, mqtt: u64, http: u64) {
        self.plaintext_mqtt.store(mqtt, Relaxed);
        self.plaintext_http.store(http, Relaxed);
    }

    /// The case log's sizes: bytes on disk, live bytes, segments, damaged segments.
    pub fn case_log(&self, bytes: u64, live: u64, segments: u64, damaged: u64) {
        for (m, v) in self.case_log.iter().zip([bytes, live, segments, damaged]) {
            m.store(v, Relaxed);
        }
    }

    /// The data directory's free space as last read.
    pub fn disk(&self, free: u64, min_free: u64, low: bool) {
        self.disk_free.store(free, Relaxed);
        self.disk_min_free.store(min_free, Relaxed);
        self.disk_low.store(u64::from(low), Relaxed);
    }

    fn retention_entry(&self, kind: &'static str, f: impl FnOnce(&mut RetentionCounts)) {
        if let Ok(mut m) = self.retention.lock() {
            f(m.entry(kind).or_default());
        }
    }

    /// Records (and their bytes) a sweep removed.
    pub fn retention_swept(&self, kind: &'static str, records: u64, bytes: u64) {
        self.retention_entry(kind, |c| {
            c.swept += records;
            c.swept_bytes += bytes;
        });
    }

    /// A sweep of `kind` failed.
    pub fn retention_failed(&self, kind: &'static str) {
        self.retention_entry(kind, |c| c.errors += 1);
    }

    /// What `kind` holds now.
    pub fn store_bytes(&self, kind: &'static str, bytes: u64) {
        self.retention_entry(kind, |c| c.bytes = Some(bytes));
    }

    /// A sweep finished at `at` (the hub's clock).
    pub fn retention_swept_at(&self, at: protocol::UtcMillis) {
        self.retention_last_sweep_ms.store(at.0, Relaxed);
    }

    /// Records of `kind` removed by retention so far.
    pub fn retention_swept_total(&self, kind: &str) -> u64 {
        self.retention
            .lock()
            .ok()
            .and_then(|m| m.get(kind).map(|c| c.swept))
            .unwrap_or(0)
    }

    pub fn rejected_total(&self) -> u64 {
        self.rejected.lock().map(|m| m.values().sum()).unwrap_or(0)
    }

    /// The exposition text of these counters alone (the hub's `/metrics` serves them with the
    /// API's from one registry, [`registry`]).
    pub fn render(self: &Arc<Self>) -> String {
        infra::metrics::encode_one(self.clone())
    }
}

/// The hub's one registry: its counters and the API's, read on each scrape.
pub fn registry(hub: Arc<HubMetrics>, api: Arc<crate::api::ApiMetrics>) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(hub));
    registry.register_collector(Box::new(api));
    registry
}

impl Collector for HubMetrics {
    fn encode(&self, enc: DescriptorEncoder<'_>) -> fmt::Result {
        let mut f = Families::new(enc);
        let counters: [(&str, &str, &AtomicU64); 36] = [
            (
                "hub_alerts_stored",
                "Alerts stored for the first time.",
                &self.alerts_stored,
            ),
            (
                "hub_ingest_batches",
                "Batches ingest stored (one store and one flush each).",
                &self.ingest_batches,
            ),
            (
                "hub_ingest_batched",
                "Alerts and refused payloads in those batches.",
                &self.ingest_batched,
            ),
            (
                "hub_alerts_duplicate",
                "Alerts received again (resends) and not stored twice.",
                &self.alerts_duplicate,
            ),
            (
                "hub_alerts_filed",
                "Alerts filed into a case.",
                &self.alerts_filed,
            ),
            ("hub_cases_opened", "Cases opened.", &self.cases_opened),
            (
                "hub_escalations",
                "Cases that climbed a level.",
                &self.escalations,
            ),
            (
                "hub_notifications_sent",
                "Notifications delivered.",
                &self.notifications_sent,
            ),
            (
                "hub_notifications_failed",
                "Notifications that failed after every retry.",
                &self.notifications_failed,
            ),
            (
                "hub_notifications_dropped",
                "Notifications dropped because the push queue was full.",
                &self.notifications_dropped,
            ),
            (
                "hub_sms_sent",
                "SMS messages the provider accepted.",
                &self.sms_sent,
            ),
            (
                "hub_sms_failed",
                "SMS messages refused, not sent, or reported undelivered.",
                &self.sms_failed,
            ),
            (
                "hub_sms_dropped",
                "SMS messages dropped because the SMS queue was full.",
                &self.sms_dropped,
            ),
            (
                "hub_sms_delivered",
                "SMS messages a delivery receipt confirmed.",
                &self.sms_delivered,
            ),
            (
                "hub_work_app_sent",
                "Work-app messages the work app accepted.",
                &self.work_app_sent,
            ),
            (
                "hub_work_app_failed",
                "Work-app messages not sent or refused.",
                &self.work_app_failed,
            ),
            (
                "hub_work_app_dropped",
                "Work-app messages dropped because the work-app queue was full.",
                &self.work_app_dropped,
            ),
            (
                "hub_reloads",
                "Reloads applied (hub reload, SIGHUP or the admin API).",
                &self.reloads,
            ),
            (
                "hub_reloads_refused",
                "Reloads refused for a problem in what they read; nothing changed.",
                &self.reloads_refused,
            ),
            (
                "hub_alerts_retimed",
                "Site alerts filed at their receipt time: stamped too far from it by a clock that is off.",
                &self.alerts_retimed,
            ),
            (
                "hub_connections_accepted",
                "MQTT connections accepted by the gateway.",
                &self.connections_accepted,
            ),
            (
                "hub_connections_refused_auth",
                "MQTT connections refused for bad credentials.",
                &self.connections_refused_auth,
            ),
            (
                "hub_acl_denied",
                "Publishes or subscriptions refused by topic ACL (connection closed).",
                &self.acl_denied,
            ),
            (
                "hub_protocol_errors",
                "Connections closed for malformed MQTT.",
                &self.protocol_errors,
            ),
            (
                "hub_gateway_preauth_timeouts",
                "Connections closed for sending no CONNECT in time (TLS handshake included).",
                &self.preauth_timeouts,
            ),
            (
                "hub_gateway_preauth_evicted",
                "Unauthenticated connections ended to make room for newer ones.",
                &self.preauth_evicted,
            ),
            (
                "hub_gateway_over_capacity",
                "Authenticated connections refused at broker.max_connections.",
                &self.connections_over_capacity,
            ),
            (
                "hub_gateway_login_logs_suppressed",
                "Failed-login log lines left out by the rate limit.",
                &self.login_logs_suppressed,
            ),
            (
                "hub_status_received",
                "Site status messages received.",
                &self.status_received,
            ),
            (
                "hub_sightings_stored",
                "Tag sightings stored.",
                &self.sightings_stored,
            ),
            (
                "hub_alerts_silenced",
                "Alerts stored but not dispatched: a silence covered them.",
                &self.silenced,
            ),
            (
                "hub_alerts_inhibited",
                "Camera-offline alerts of an offline site, stored but not dispatched.",
                &self.inhibited,
            ),
            (
                "hub_deadlines_missed",
                "Deadlines the auditor found missed and fired late; should stay 0.",
                &self.deadlines_missed,
            ),
            (
                "hub_alerts_deferred",
                "Alerts not stored because the data disk was below min_free (the agents keep and resend them).",
                &self.alerts_deferred,
            ),
            (
                "hub_health_case_failures",
                "Failed writes of the hub-health case (disk low / space back), each retried; should stay 0.",
                &self.health_case_failures,
            ),
            (
                "hub_quarantine_evicted",
                "Quarantine records dropped, oldest first, because the quarantine was full.",
                &self.quarantine_evicted,
            ),
        ];
        for (name, help, v) in counters {
            f.counter(name, help, v.load(Relaxed))?;
        }
        if let Ok(m) = self.rejected.lock() {
            f.counters(
                "hub_payloads_rejected",
                "Malformed payloads counted and dropped, by site and topic.",
                ["site", "topic"],
                m.iter()
                    .map(|((site, kind), n)| ([site.as_str(), *kind], *n)),
            )?;
        }
        if let Ok(m) = self.quarantined.lock() {
            f.counters(
                "hub_alerts_quarantined",
                "Alert payloads refused and kept in the quarantine, by site and reason code.",
                ["site", "code"],
                m.iter()
                    .map(|((site, code), n)| ([site.as_str(), *code], *n)),
            )?;
        }
        let gauges: [(&str, &str, &AtomicU64); 9] = [
            (
                "hub_quarantine_records",
                "Records in the quarantine.",
                &self.quarantine_records,
            ),
            (
                "hub_quarantine_bytes",
                "Payload bytes kept in the quarantine.",
                &self.quarantine_bytes,
            ),
            (
                "hub_disk_free_bytes",
                "Free bytes on the data directory's filesystem.",
                &self.disk_free,
            ),
            (
                "hub_disk_min_free_bytes",
                "Below this, new alerts are deferred.",
                &self.disk_min_free,
            ),
            (
                "hub_disk_low",
                "1 while new alerts are deferred for lack of disk space.",
                &self.disk_low,
            ),
            (
                "hub_case_log_bytes",
                "Bytes of the case log's segment files.",
                &self.case_log[0],
            ),
            (
                "hub_case_log_live_bytes",
                "Of those, the latest version of each case (the rest is given back by compaction).",
                &self.case_log[1],
            ),
            (
                "hub_case_log_segments",
                "Segment files of the case log.",
                &self.case_log[2],
            ),
            (
                "hub_case_log_damaged_segments",
                "Segments whose rest was skipped at start because a record in them did not check out.",
                &self.case_log[3],
            ),
        ];
        for (name, help, v) in gauges {
            f.gauge(name, help, v.load(Relaxed))?;
        }
        f.gauges(
            "hub_plaintext_listeners",
            "Listeners without TLS on a non-loopback address (credentials and sessions cross the network in clear).",
            ["kind"],
            [
                (["mqtt"], self.plaintext_mqtt.load(Relaxed)),
                (["http"], self.plaintext_http.load(Relaxed)),
            ],
        )?;
        if let Ok(m) = self.clock_offsets.lock() {
            #[allow(clippy::cast_precision_loss)]
            f.gauges(
                "hub_site_clock_offset_seconds",
                "Each site's clock minus the hub's, as its last live status measured it.",
                ["site"],
                m.iter()
                    .map(|(site, ms)| ([site.as_str()], *ms as f64 / 1000.0)),
            )?;
        }
        self.encode_retention(&mut f)?;
        f.counters(
            "hub_stage_busy_seconds",
            "Time each serial stage of alert handling spent working or waiting on its store flush; one near 1 s per second is the bottleneck.",
            ["stage"],
            Stage::ALL.map(|s| ([s.as_str()], self.stage_seconds(s))),
        )
    }
}

impl HubMetrics {
    fn encode_retention(&self, f: &mut Families<'_>) -> fmt::Result {
        let Ok(m) = self.retention.lock() else {
            return Ok(());
        };
        let per_kind =
            |value: fn(&RetentionCounts) -> u64| m.iter().map(move |(k, c)| ([*k], value(c)));
        f.counters(
            "hub_retention_swept",
            "Records removed by retention, by kind.",
            ["kind"],
            per_kind(|c| c.swept),
        )?;
        f.counters(
            "hub_retention_swept_bytes",
            "Bytes those records held, by kind.",
            ["kind"],
            per_kind(|c| c.swept_bytes),
        )?;
        f.counters(
            "hub_retention_errors",
            "Sweeps of a kind that failed (tried again at the next sweep).",
            ["kind"],
            per_kind(|c| c.errors),
        )?;
        f.gauges(
            "hub_store_bytes",
            "Bytes each kind of record holds (as its owner counts them).",
            ["kind"],
            m.iter().filter_map(|(k, c)| Some(([*k], c.bytes?))),
        )?;
        f.gauge(
            "hub_retention_last_sweep_seconds",
            "When the last retention sweep ran (Unix time, hub clock; 0: none yet).",
            self.retention_last_sweep_ms.load(Relaxed).max(0) / 1000,
        )
    }
}

/// The serial stages an alert goes through, each one task: a stage whose time grows by
/// nearly a second per second is the one holding throughput down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum Stage {
    /// Ingest's writer storing a batch (snapshot files, then one sled transaction).
    IngestStore,
    /// Ingest's writer waiting for the store's flush before acknowledging.
    IngestFlush,
    /// The dispatcher filing a batch in memory (locating, grouping, staging writes).
    DispatchFile,
    /// The dispatcher applying a batch of case writes to the store.
    DispatchWrite,
    /// The dispatcher waiting for the store's flush before pushing.
    DispatchFlush,
    /// The dispatcher pushing a batch's notifications and writing their records.
    DispatchPush,
}

impl Stage {
    pub const ALL: [Stage; 6] = [
        Stage::IngestStore,
        Stage::IngestFlush,
        Stage::DispatchFile,
        Stage::DispatchWrite,
        Stage::DispatchFlush,
        Stage::DispatchPush,
    ];

    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

impl HubMetrics {
    /// Adds the time since `since` to `stage`.
    pub fn stage_time(&self, stage: Stage, since: std::time::Instant) {
        self.stages[stage as usize].fetch_add(since.elapsed().as_micros() as u64, Relaxed);
    }

    /// Seconds `stage` has spent so far.
    pub fn stage_seconds(&self, stage: Stage) -> f64 {
        self.stages[stage as usize].load(Relaxed) as f64 / 1e6
    }
}

pub fn bump(c: &AtomicU64) {
    c.fetch_add(1, Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_names_are_the_metric_labels() {
        // Pinned: the `stage` label values that dashboards select on.
        assert_eq!(
            Stage::ALL.map(Stage::as_str),
            [
                "ingest_store",
                "ingest_flush",
                "dispatch_file",
                "dispatch_write",
                "dispatch_flush",
                "dispatch_push"
            ]
        );
    }

    #[test]
    fn rejections_are_counted_per_site_and_rendered() {
        let m = Arc::new(HubMetrics::default());
        m.reject("s1", "alert");
        m.reject("s1", "alert");
        m.reject("s2", "status");
        assert_eq!(m.rejected("s1", "alert"), 2);
        assert_eq!(m.rejected_total(), 3);
        let text = m.render();
        assert!(
            text.contains("hub_payloads_rejected_total{site=\"s1\",topic=\"alert\"} 2"),
            "{text}"
        );
        assert!(text.contains("hub_alerts_stored_total 0"));
    }

    #[test]
    fn quarantine_counts_by_site_and_code_and_its_size_are_rendered() {
        use crate::ingest::RejectCode;
        let m = Arc::new(HubMetrics::default());
        m.quarantined("s1", RejectCode::NotAuthorized);
        m.quarantined("s1", RejectCode::Malformed);
        m.quarantined("s1", RejectCode::Malformed);
        m.quarantine_size(3, 1200);
        m.quarantine_evicted(2);
        let text = m.render();
        for line in [
            "hub_alerts_quarantined_total{site=\"s1\",code=\"malformed\"} 2",
            "hub_alerts_quarantined_total{site=\"s1\",code=\"not_authorized\"} 1",
            "hub_quarantine_records 3",
            "hub_quarantine_bytes 1200",
            "hub_quarantine_evicted_total 2",
        ] {
            assert!(text.contains(line), "{line} missing in {text}");
        }
    }
}
