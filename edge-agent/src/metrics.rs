//! Prometheus `GET /metrics`: the agent's counters in the text exposition format (0.0.4).
//!
//! Rendered on each scrape from the same counters the status heartbeat reads ([`AgentStats`],
//! [`UplinkStats`]), so the two never disagree. Every drop the agent makes (skipped frames,
//! reader reads it could not queue, evicted / dropped / expired alerts, sighting batches) has a
//! counter here.

use std::fmt::Write as _;
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

use crate::agent::AgentStats;
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
    let app = Router::new()
        .route("/metrics", get(scrape))
        .with_state(Arc::new(source));
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

async fn scrape(State(source): State<Arc<MetricsSource>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(&source),
    )
}

/// The exposition text for `source` now.
pub fn render(source: &MetricsSource) -> String {
    let mut out = String::with_capacity(4096);
    let mut m = Metrics { out: &mut out };
    if let Some(agent) = &source.agent {
        let cameras = agent.cameras();
        let online: Vec<bool> = agent
            .cameras
            .iter()
            .map(|c| c.online.load(Ordering::Relaxed))
            .collect();
        type CameraValue = fn(&crate::agent::CameraSnapshot) -> f64;
        let per_camera: [(&str, &str, &str, CameraValue); 8] = [
            (
                "edge_camera_frames_total",
                "counter",
                "Frames the source delivered.",
                |c| c.frames as f64,
            ),
            (
                "edge_camera_skipped_total",
                "counter",
                "Frames replaced in the latest-frame slot before the detector took them (dropped by policy).",
                |c| c.skipped as f64,
            ),
            (
                "edge_camera_processed_total",
                "counter",
                "Frames whose detections went through the rules.",
                |c| c.processed as f64,
            ),
            (
                "edge_camera_detect_failed_total",
                "counter",
                "Frames the detector failed on.",
                |c| c.detect_failed as f64,
            ),
            (
                "edge_camera_late_total",
                "counter",
                "Results dropped because a newer frame had been handled.",
                |c| c.late as f64,
            ),
            (
                "edge_camera_alerts_total",
                "counter",
                "Alerts raised for the camera.",
                |c| c.alerts as f64,
            ),
            (
                "edge_camera_source_failures_total",
                "counter",
                "Source failures (ffmpeg exits, stalls, HTTP errors).",
                |c| c.failures as f64,
            ),
            (
                "edge_camera_inference_ms_mean",
                "gauge",
                "Mean detector time per processed frame since start, ms.",
                |c| c.detect_ms,
            ),
        ];
        for (name, kind, help, value) in per_camera {
            m.head(name, kind, help);
            for c in &cameras {
                m.sample(name, &[("camera", &c.id)], value(c));
            }
        }
        m.head(
            "edge_camera_online",
            "gauge",
            "1 while the camera delivers frames.",
        );
        for (c, on) in cameras.iter().zip(&online) {
            m.sample(
                "edge_camera_online",
                &[("camera", &c.id)],
                f64::from(u8::from(*on)),
            );
        }
        let readers: Vec<_> = agent
            .readers
            .iter()
            .zip(&agent.reader_names)
            .map(|(r, n)| (n, r.snapshot()))
            .collect();
        type ReaderValue = fn(&crate::tags::CounterSnapshot) -> u64;
        let per_reader: [(&str, &str, ReaderValue); 4] = [
            ("edge_reader_reads_total", "Tag reads received.", |s| {
                s.received
            }),
            (
                "edge_reader_malformed_total",
                "Tag reads that did not parse (skipped).",
                |s| s.malformed,
            ),
            (
                "edge_reader_oversized_total",
                "Tag reads over the size limit (skipped).",
                |s| s.oversized,
            ),
            (
                "edge_reader_dropped_total",
                "Tag reads that could not be queued (UDP).",
                |s| s.dropped,
            ),
        ];
        for (name, help, value) in per_reader {
            m.head(name, "counter", help);
            for (reader, s) in &readers {
                m.sample(name, &[("reader", reader)], value(s) as f64);
            }
        }
        m.single(
            "edge_tag_alerts_total",
            "counter",
            "Tag alerts raised.",
            agent.tag_alerts.load(Ordering::Relaxed) as f64,
        );
        m.single(
            "edge_sightings_total",
            "counter",
            "Tag sightings handed on in batches.",
            agent.sightings.load(Ordering::Relaxed) as f64,
        );
        m.single(
            "edge_snapshot_failures_total",
            "counter",
            "Alert snapshots that could not be encoded.",
            agent.snapshot_failures.load(Ordering::Relaxed) as f64,
        );
    }
    let u = &source.uplink;
    let outbox = u.outbox();
    m.single(
        "edge_outbox_depth",
        "gauge",
        "Alerts stored, waiting for the broker's PUBACK.",
        outbox.depth as f64,
    );
    m.single(
        "edge_outbox_bytes",
        "gauge",
        "Bytes stored in the outbox.",
        outbox.bytes as f64,
    );
    m.single(
        "edge_outbox_max_bytes",
        "gauge",
        "The outbox's byte cap.",
        u.outbox_max_bytes.load(Ordering::Relaxed) as f64,
    );
    m.single(
        "edge_outbox_corrupt",
        "gauge",
        "Corrupt outbox records (kept, never sent).",
        outbox.corrupt as f64,
    );
    m.single(
        "edge_outbox_quarantined",
        "gauge",
        "Alerts the hub refused for good, kept in the outbox's quarantine (never sent).",
        outbox.quarantined as f64,
    );
    let held = u.held();
    m.single(
        "edge_outbox_held",
        "gauge",
        "Alerts held in memory because the outbox could not store them (disk full); retried.",
        held.len as f64,
    );
    m.single(
        "edge_outbox_held_bytes",
        "gauge",
        "JSON bytes of the alerts held in memory.",
        held.bytes as f64,
    );
    let name = "edge_outbox_quarantine_removed_total";
    m.head(
        name,
        "counter",
        "Quarantined alerts removed by the full-policy or the time-to-live (also in \
         edge_outbox_evicted_total and edge_outbox_expired_total).",
    );
    m.sample(
        name,
        &[("cause", "evicted")],
        outbox.quarantine_evicted as f64,
    );
    m.sample(
        name,
        &[("cause", "expired")],
        outbox.quarantine_expired as f64,
    );
    let name = "edge_uplink_quarantined_total";
    m.head(
        name,
        "counter",
        "Alerts moved to the outbox's quarantine, by the broker's PUBACK reason.",
    );
    for ((_, reason), c) in QUARANTINE_REASONS.iter().zip(&u.quarantined) {
        m.sample(
            name,
            &[("reason", reason)],
            c.load(Ordering::Relaxed) as f64,
        );
    }
    m.single(
        "edge_outbox_expired_total",
        "counter",
        "Alerts dropped unacknowledged after the time-to-live.",
        outbox.expired as f64,
    );
    let oldest_age = outbox.oldest_ms.map_or(0.0, |o| {
        (protocol::UtcMillis::now().0 - o).max(0) as f64 / 1000.0
    });
    m.single(
        "edge_outbox_oldest_age_seconds",
        "gauge",
        "Age of the oldest undelivered alert.",
        oldest_age,
    );
    for (name, help, counts) in [
        (
            "edge_outbox_evicted_total",
            "Alerts evicted by the full-policy (lowest severity first).",
            outbox.evicted,
        ),
        (
            "edge_outbox_dropped_total",
            "New alerts refused by the full-policy.",
            outbox.dropped,
        ),
        (
            "edge_outbox_held_dropped_total",
            "Alerts lost because the in-memory hold (outbox appends failing) was full.",
            held.dropped,
        ),
    ] {
        m.head(name, "counter", help);
        for (sev, n) in [
            ("info", counts.info),
            ("minor", counts.minor),
            ("major", counts.major),
            ("critical", counts.critical),
        ] {
            m.sample(name, &[("severity", sev)], n as f64);
        }
    }
    let counters = [
        (
            "edge_uplink_reconnects_total",
            "Connections after the first.",
            &u.reconnects,
        ),
        (
            "edge_uplink_connection_failures_total",
            "Failed connection attempts and lost connections.",
            &u.connection_failures,
        ),
        (
            "edge_uplink_appended_total",
            "Alerts stored in the outbox.",
            &u.appended,
        ),
        (
            "edge_uplink_append_failed_total",
            "Alerts that could not be stored.",
            &u.append_failed,
        ),
        (
            "edge_uplink_append_errors_total",
            "Outbox appends that failed for the disk, retries included (the alert is held).",
            &u.append_errors,
        ),
        (
            "edge_uplink_published_total",
            "Alert publishes sent, resends included.",
            &u.published,
        ),
        (
            "edge_uplink_acked_total",
            "Alerts acknowledged by the broker.",
            &u.acked,
        ),
        (
            "edge_uplink_rejected_total",
            "Alerts the broker refused for a passing reason (kept, offered again).",
            &u.rejected,
        ),
        (
            "edge_uplink_sightings_sent_total",
            "Sighting batches acknowledged.",
            &u.sightings_sent,
        ),
        (
            "edge_uplink_sightings_dropped_total",
            "Sighting batches dropped (queue full or too large).",
            &u.sightings_dropped,
        ),
        (
            "edge_uplink_status_published_total",
            "Status messages published.",
            &u.status_published,
        ),
        (
            "edge_commands_applied_total",
            "Hub commands applied.",
            &u.commands_applied,
        ),
        (
            "edge_commands_refused_total",
            "Hub commands refused.",
            &u.commands_refused,
        ),
    ];
    for (name, help, c) in counters {
        m.single(name, "counter", help, c.load(Ordering::Relaxed) as f64);
    }
    m.single(
        "edge_uplink_connected",
        "gauge",
        "1 while connected to the broker.",
        f64::from(u8::from(u.connected.load(Ordering::Relaxed))),
    );
    if let Some(free) = disk_free(&source.data_dir) {
        m.single(
            "edge_disk_free_bytes",
            "gauge",
            "Free bytes on the filesystem of the data directory.",
            free as f64,
        );
    }
    m.single(
        "edge_uptime_seconds",
        "gauge",
        "Seconds since the agent started.",
        source.started.elapsed().as_secs_f64(),
    );
    out
}

struct Metrics<'a> {
    out: &'a mut String,
}

impl Metrics<'_> {
    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    fn single(&mut self, name: &str, kind: &str, help: &str, value: f64) {
        self.head(name, kind, help);
        self.sample(name, &[], value);
    }
}

/// Label values escape backslash, double quote and newline.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_uplink_counters_and_escapes_labels() {
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
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
