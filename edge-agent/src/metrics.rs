//! Prometheus `GET /metrics`: the agent's counters as OpenMetrics text, through the agent's one
//! prometheus-client registry ([`infra::metrics`]).
//!
//! Collected on each scrape from the same counters the status heartbeat reads ([`AgentStats`],
//! [`UplinkStats`]), so the two never disagree. Every drop the agent makes (skipped frames,
//! reader reads it could not queue, evicted / dropped / expired alerts, sighting batches) has a
//! counter here.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::sync::watch;

use infra::metrics::{self, Collector, DescriptorEncoder, Families, Registry};

use crate::pipeline::{AgentStats, CameraSnapshot};
use crate::tags::CounterSnapshot;
use crate::uplink::{QUARANTINE_REASONS, UplinkStats, disk_free};

/// Serving `/metrics` failed.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The listen address could not be bound.
    #[error("metrics.listen {addr}: cannot listen: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// What a scrape reads.
#[derive(Debug, Clone)]
pub struct MetricsSource {
    /// The pipeline's counters (`None` when only the uplink runs).
    pub agent: Option<Arc<AgentStats>>,
    /// The uplink's and outbox's counters.
    pub uplink: Arc<UplinkStats>,
    /// The directory whose filesystem's free space is reported.
    pub data_dir: PathBuf,
    /// When the agent started.
    pub started: Instant,
}

/// Binds `addr` and serves `/metrics` until `shutdown` turns true. Returns the bound address
/// (useful with port 0) once listening.
pub async fn serve(
    addr: SocketAddr,
    source: MetricsSource,
    mut shutdown: watch::Receiver<bool>,
) -> Result<SocketAddr, MetricsError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| MetricsError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| MetricsError::Bind { addr, source })?;
    // The agent's one registry: everything it counts, read on each scrape.
    let mut registry = Registry::default();
    registry.register_collector(Box::new(source));
    let app = Router::new()
        .route("/metrics", get(scrape))
        .with_state(Arc::new(registry));
    tokio::spawn(async move {
        let stop = async move {
            while !*shutdown.borrow_and_update() {
                if shutdown.changed().await.is_err() {
                    break;
                }
            }
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::error!(message = "Metrics server failed.", error = %e);
        }
    });
    tracing::info!(message = "Serving metrics.", addr = %bound);
    Ok(bound)
}

async fn scrape(State(registry): State<Arc<Registry>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        metrics::encode(&registry),
    )
}

/// The exposition text for `source` now.
pub fn render(source: &MetricsSource) -> String {
    metrics::encode_one(source.clone())
}

impl Collector for MetricsSource {
    fn encode(&self, enc: DescriptorEncoder<'_>) -> fmt::Result {
        let mut f = Families::new(enc);
        if let Some(agent) = &self.agent {
            encode_agent(&mut f, agent)?;
        }
        encode_uplink(&mut f, &self.uplink)?;
        if let Some(free) = disk_free(&self.data_dir) {
            f.gauge(
                "edge_disk_free_bytes",
                "Free bytes on the filesystem of the data directory.",
                free,
            )?;
        }
        f.gauge(
            "edge_uptime_seconds",
            "Seconds since the agent started.",
            self.started.elapsed().as_secs_f64(),
        )
    }
}

fn encode_agent(f: &mut Families<'_>, agent: &AgentStats) -> fmt::Result {
    let cameras = agent.cameras();
    let per_camera = |value: fn(&CameraSnapshot) -> u64| {
        cameras.iter().map(move |c| ([c.id.as_str()], value(c)))
    };
    f.counters(
        "edge_camera_frames",
        "Frames the source delivered.",
        ["camera"],
        per_camera(|c| c.frames),
    )?;
    f.counters(
        "edge_camera_skipped",
        "Frames replaced in the latest-frame slot before the detector took them (dropped by policy).",
        ["camera"],
        per_camera(|c| c.skipped),
    )?;
    f.counters(
        "edge_camera_processed",
        "Frames whose detections went through the rules.",
        ["camera"],
        per_camera(|c| c.processed),
    )?;
    f.counters(
        "edge_camera_detect_failed",
        "Frames the detector failed on.",
        ["camera"],
        per_camera(|c| c.detect_failed),
    )?;
    f.counters(
        "edge_camera_late",
        "Results dropped because a newer frame had been handled.",
        ["camera"],
        per_camera(|c| c.late),
    )?;
    f.counters(
        "edge_camera_alerts",
        "Alerts raised for the camera.",
        ["camera"],
        per_camera(|c| c.alerts),
    )?;
    f.counters(
        "edge_camera_source_failures",
        "Source failures (ffmpeg exits, stalls, HTTP errors).",
        ["camera"],
        per_camera(|c| c.failures),
    )?;
    f.gauges(
        "edge_camera_inference_ms_mean",
        "Mean detector time per processed frame since start, ms.",
        ["camera"],
        cameras.iter().map(|c| ([c.id.as_str()], c.detect_ms)),
    )?;
    f.gauges(
        "edge_camera_online",
        "1 while the camera delivers frames.",
        ["camera"],
        cameras.iter().zip(&agent.cameras).map(|(c, live)| {
            (
                [c.id.as_str()],
                i64::from(live.online.load(Ordering::Relaxed)),
            )
        }),
    )?;
    let readers: Vec<(&str, CounterSnapshot)> = agent
        .readers
        .iter()
        .zip(&agent.reader_names)
        .map(|(r, n)| (n.as_str(), r.snapshot()))
        .collect();
    let per_reader =
        |value: fn(&CounterSnapshot) -> u64| readers.iter().map(move |(n, s)| ([*n], value(s)));
    f.counters(
        "edge_reader_reads",
        "Tag reads received.",
        ["reader"],
        per_reader(|s| s.received),
    )?;
    f.counters(
        "edge_reader_malformed",
        "Tag reads that did not parse (skipped).",
        ["reader"],
        per_reader(|s| s.malformed),
    )?;
    f.counters(
        "edge_reader_oversized",
        "Tag reads over the size limit (skipped).",
        ["reader"],
        per_reader(|s| s.oversized),
    )?;
    f.counters(
        "edge_reader_dropped",
        "Tag reads that could not be queued (UDP).",
        ["reader"],
        per_reader(|s| s.dropped),
    )?;
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    f.counter(
        "edge_tag_alerts",
        "Tag alerts raised.",
        load(&agent.tag_alerts),
    )?;
    f.counter(
        "edge_sightings",
        "Tag sightings handed on in batches.",
        load(&agent.sightings),
    )?;
    f.counter(
        "edge_snapshot_failures",
        "Alert snapshots that could not be encoded.",
        load(&agent.snapshot_failures),
    )
}

fn encode_uplink(f: &mut Families<'_>, u: &UplinkStats) -> fmt::Result {
    let outbox = u.outbox();
    let held = u.held();
    f.gauge(
        "edge_outbox_depth",
        "Alerts stored, waiting for the broker's PUBACK.",
        outbox.depth,
    )?;
    f.gauge(
        "edge_outbox_bytes",
        "Bytes stored in the outbox.",
        outbox.bytes,
    )?;
    f.gauge(
        "edge_outbox_max_bytes",
        "The outbox's byte cap.",
        u.outbox_max_bytes.load(Ordering::Relaxed),
    )?;
    f.gauge(
        "edge_outbox_corrupt",
        "Corrupt outbox records (kept, never sent).",
        outbox.corrupt,
    )?;
    f.gauge(
        "edge_outbox_quarantined",
        "Alerts the hub refused for good, kept in the outbox's quarantine (never sent).",
        outbox.quarantined,
    )?;
    f.gauge(
        "edge_outbox_held",
        "Alerts held in memory because the outbox could not store them (disk full); retried.",
        held.len,
    )?;
    f.gauge(
        "edge_outbox_held_bytes",
        "JSON bytes of the alerts held in memory.",
        held.bytes,
    )?;
    f.counters(
        "edge_outbox_quarantine_removed",
        "Quarantined alerts removed by the full-policy or the time-to-live (also in \
         edge_outbox_evicted_total and edge_outbox_expired_total).",
        ["cause"],
        [
            (["evicted"], outbox.quarantine_evicted),
            (["expired"], outbox.quarantine_expired),
        ],
    )?;
    f.counters(
        "edge_uplink_quarantined",
        "Alerts moved to the outbox's quarantine, by the broker's PUBACK reason.",
        ["reason"],
        QUARANTINE_REASONS
            .iter()
            .zip(&u.quarantined)
            .map(|((_, reason), c)| ([*reason], c.load(Ordering::Relaxed))),
    )?;
    f.counter(
        "edge_outbox_expired",
        "Alerts dropped unacknowledged after the time-to-live.",
        outbox.expired,
    )?;
    let oldest_age = outbox.oldest_ms.map_or(0.0, |o| {
        (protocol::UtcMillis::now().0 - o).max(0) as f64 / 1000.0
    });
    f.gauge(
        "edge_outbox_oldest_age_seconds",
        "Age of the oldest undelivered alert.",
        oldest_age,
    )?;
    for (name, help, counts) in [
        (
            "edge_outbox_evicted",
            "Alerts evicted by the full-policy (lowest severity first).",
            outbox.evicted,
        ),
        (
            "edge_outbox_dropped",
            "New alerts refused by the full-policy.",
            outbox.dropped,
        ),
        (
            "edge_outbox_held_dropped",
            "Alerts lost because the in-memory hold (outbox appends failing) was full.",
            held.dropped,
        ),
    ] {
        f.counters(
            name,
            help,
            ["severity"],
            [
                (["info"], counts.info),
                (["minor"], counts.minor),
                (["major"], counts.major),
                (["critical"], counts.critical),
            ],
        )?;
    }
    for (name, help, c) in [
        (
            "edge_uplink_reconnects",
            "Connections after the first.",
            &u.reconnects,
        ),
        (
            "edge_uplink_connection_failures",
            "Failed connection attempts and lost connections.",
            &u.connection_failures,
        ),
        (
            "edge_uplink_appended",
            "Alerts stored in the outbox.",
            &u.appended,
        ),
        (
            "edge_uplink_append_failed",
            "Alerts that could not be stored.",
            &u.append_failed,
        ),
        (
            "edge_uplink_append_errors",
            "Outbox appends that failed for the disk, retries included (the alert is held).",
            &u.append_errors,
        ),
        (
            "edge_uplink_published",
            "Alert publishes sent, resends included.",
            &u.published,
        ),
        (
            "edge_uplink_acked",
            "Alerts acknowledged by the broker.",
            &u.acked,
        ),
        (
            "edge_uplink_rejected",
            "Alerts the broker refused for a passing reason (kept, offered again).",
            &u.rejected,
        ),
        (
            "edge_uplink_sightings_sent",
            "Sighting batches acknowledged.",
            &u.sightings_sent,
        ),
        (
            "edge_uplink_sightings_dropped",
            "Sighting batches dropped (queue full or too large).",
            &u.sightings_dropped,
        ),
        (
            "edge_uplink_status_published",
            "Status messages published.",
            &u.status_published,
        ),
        (
            "edge_commands_applied",
            "Hub commands applied.",
            &u.commands_applied,
        ),
        (
            "edge_commands_refused",
            "Hub commands refused.",
            &u.commands_refused,
        ),
    ] {
        f.counter(name, help, c.load(Ordering::Relaxed))?;
    }
    f.gauge(
        "edge_uplink_connected",
        "1 while connected to the broker.",
        i64::from(u.connected.load(Ordering::Relaxed)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_uplink_counters() {
        let uplink = Arc::new(UplinkStats::default());
        uplink.acked.store(7, Ordering::Relaxed);
        let mut outbox = uplink.outbox();
        outbox.depth = 3;
        outbox.evicted.add(protocol::Severity::Info, 2);
        outbox.quarantined = 2;
        outbox.quarantine_expired = 1;
        *uplink.outbox.lock().unwrap() = outbox;
        uplink.quarantined[1].store(5, Ordering::Relaxed);
        let text = render(&MetricsSource {
            agent: None,
            uplink,
            data_dir: std::env::temp_dir(),
            started: Instant::now(),
        });
        assert!(text.contains("\nedge_uplink_acked_total 7\n"), "{text}");
        assert!(text.contains("\nedge_outbox_depth 3\n"), "{text}");
        assert!(
            text.contains("edge_outbox_evicted_total{severity=\"info\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE edge_outbox_depth gauge\n"), "{text}");
        assert!(
            text.contains("# TYPE edge_uplink_acked counter\n"),
            "{text}"
        );
        assert!(text.contains("\nedge_outbox_quarantined 2\n"), "{text}");
        assert!(
            text.contains("edge_outbox_quarantine_removed_total{cause=\"expired\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("edge_uplink_quarantined_total{reason=\"not_authorized\"} 5\n"),
            "{text}"
        );
        assert!(
            text.contains("edge_uplink_quarantined_total{reason=\"payload_format_invalid\"} 0\n"),
            "{text}"
        );
        assert!(text.contains("\nedge_disk_free_bytes "), "{text}");
    }
}
