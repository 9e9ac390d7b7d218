//! [`HealthReporter`]: the `health` part of the status heartbeat, from the agent's counters.
//!
//! Counters are cumulative; rates (fps, skipped fps, inference ms) are over the interval since
//! the previous report, so a camera that stopped shows 0 fps at the next heartbeat rather than
//! a slowly decaying average.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use protocol::status::{CameraHealth, Health, OutboxHealth, ReaderHealth, UplinkHealth};
use protocol::time::UtcMillis;

use super::UplinkStats;
use crate::outbox::{HeldStats, OutboxStats};
use crate::pipeline::{AgentStats, CameraSnapshot};

/// Builds [`Health`] values; keeps the previous camera counters for rates.
#[derive(Debug)]
pub struct HealthReporter {
    started_ms: i64,
    started: Instant,
    agent: Option<Arc<AgentStats>>,
    /// Where the outbox lives: the filesystem whose free space is reported.
    disk: PathBuf,
    previous: Option<(Instant, Vec<CameraSnapshot>)>,
}

impl HealthReporter {
    /// A reporter for an agent started at `started_ms` (`agent` is `None` for `emit`).
    pub fn new(started_ms: i64, agent: Option<Arc<AgentStats>>, disk: PathBuf) -> Self {
        Self {
            started_ms,
            started: Instant::now(),
            agent,
            disk,
            previous: None,
        }
    }

    /// The health now.
    pub fn health(&mut self, outbox: &OutboxStats, max_bytes: u64, uplink: &UplinkStats) -> Health {
        let now = Instant::now();
        let cameras = self.agent.as_ref().map(|a| a.cameras()).unwrap_or_default();
        let online = self
            .agent
            .as_ref()
            .map(|a| {
                a.cameras
                    .iter()
                    .map(|c| c.online.load(Ordering::Relaxed))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        let camera_health = cameras
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let prev = self
                    .previous
                    .as_ref()
                    .and_then(|(at, p)| p.iter().find(|p| p.id == c.id).map(|p| (*at, p)));
                let (fps, skipped_fps, inference_ms) = match prev {
                    Some((at, p)) => {
                        let dt = now.duration_since(at).as_secs_f64().max(1e-3);
                        let processed = c.processed.saturating_sub(p.processed);
                        let total_ms = |s: &CameraSnapshot| s.detect_ms * s.processed as f64;
                        let ms = if processed > 0 {
                            (total_ms(c) - total_ms(p)) / processed as f64
                        } else {
                            0.0
                        };
                        (
                            processed as f64 / dt,
                            c.skipped.saturating_sub(p.skipped) as f64 / dt,
                            ms,
                        )
                    }
                    // First report: since start.
                    None => {
                        let dt = now.duration_since(self.started).as_secs_f64().max(1e-3);
                        (c.processed as f64 / dt, c.skipped as f64 / dt, c.detect_ms)
                    }
                };
                CameraHealth {
                    id: c.id.clone(),
                    online: online.get(i).copied().unwrap_or(true),
                    fps: round2(fps),
                    skipped_fps: round2(skipped_fps),
                    inference_ms: round2(inference_ms),
                    alerts: c.alerts,
                    failures: c.failures,
                }
            })
            .collect();
        let readers = self
            .agent
            .as_ref()
            .map(|a| {
                a.readers
                    .iter()
                    .zip(&a.reader_names)
                    .map(|(r, name)| {
                        let s = r.snapshot();
                        ReaderHealth {
                            id: name.clone(),
                            reads: s.received,
                            bad: s.malformed + s.oversized,
                            dropped: s.dropped,
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        self.previous = Some((now, cameras));
        Health {
            version: env!("CARGO_PKG_VERSION").to_string(),
            started_at: UtcMillis(self.started_ms),
            uptime_s: now.duration_since(self.started).as_secs(),
            cameras: camera_health,
            readers,
            outbox: outbox_health(
                outbox,
                max_bytes,
                &uplink.held(),
                uplink.append_errors.load(Ordering::Relaxed),
            ),
            uplink: uplink.health(),
            disk_free_bytes: disk_free(&self.disk),
        }
    }
}

/// The outbox part of the status, with the alerts held in memory while appends fail and the
/// count of failed appends (disk pressure).
pub fn outbox_health(
    s: &OutboxStats,
    max_bytes: u64,
    held: &HeldStats,
    append_failures: u64,
) -> OutboxHealth {
    OutboxHealth {
        depth: s.depth as u64,
        bytes: s.bytes,
        max_bytes,
        oldest: s.oldest_ms.map(UtcMillis),
        evicted: s.evicted,
        dropped: s.dropped,
        expired: s.expired,
        corrupt: s.corrupt as u64,
        quarantined: s.quarantined as u64,
        held: held.len as u64,
        held_bytes: held.bytes,
        held_dropped: held.dropped,
        append_failures,
    }
}

impl UplinkStats {
    /// The uplink part of the status.
    pub fn health(&self) -> UplinkHealth {
        UplinkHealth {
            connected: self.connected.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            published: self.published.load(Ordering::Relaxed),
            acked: self.acked.load(Ordering::Relaxed),
            sightings_dropped: self.sightings_dropped.load(Ordering::Relaxed),
        }
    }
}

/// Free bytes for unprivileged users on the filesystem holding `path` (or its nearest existing
/// parent); `None` if it cannot be read.
pub fn disk_free(path: &std::path::Path) -> Option<u64> {
    let existing = path.ancestors().find(|p| p.exists())?;
    let s = rustix::fs::statvfs(existing).ok()?;
    Some(s.f_bavail.saturating_mul(s.f_frsize))
}

fn round2(x: f64) -> f32 {
    ((x * 100.0).round() / 100.0) as f32
}
