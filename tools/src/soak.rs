//! The `soak` subcommand: how many cameras this box sustains, and whether memory stays flat.
//!
//! Each camera is the sample clip played by its own `ffmpeg` in real time, looped, sampled to
//! the detection fps: the live path exactly (latest-frame slots, detector pool, tracker, rules,
//! snapshots), with the example config's rules. Every `sample` it prints the agent's resident
//! memory (VmRSS), CPU of the agent and of its ffmpeg children (from `/proc`), and each camera's
//! processed and skipped frames.
//!
//! - `--ramp N`: runs 1, 2, … N cameras for `--ramp-secs` each and reports the largest count
//!   with zero skipped frames (a frame replaced in its slot before the detector took it).
//! - then a soak of `--cameras` for `--minutes`, whose last line is
//!   `soak cameras=… fps=… minutes=… processed=… skipped=… cpu_per_camera_pct=… rss_first_mb=…
//!   rss_last_mb=… rss_max_mb=… rss_growth_mb=…`, where growth is the last sample minus the
//!   minimum over the second half (warm-up allocations excluded).
//!
//! This is a measurement, not a test: it runs for minutes and prints figures; nothing asserts.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use edge_agent::agent::config::{
    CameraConfig, ModelConfig, SightingsConfig, SnapshotConfig, defaults,
};
use edge_agent::agent::{Agent, AgentConfig, AgentError, Mode};
use edge_agent::detect::Model;
use edge_agent::pipeline::{AgentStats, Output};
use edge_agent::rules::EngineConfig;
use edge_agent::source::{AtEnd, FfmpegSourceConfig, SourceConfig};

/// What to soak.
#[derive(Debug, Clone)]
pub struct SoakConfig {
    /// The clip every camera plays.
    pub video: PathBuf,
    /// Rules each camera runs (the example config's).
    pub rules: EngineConfig,
    /// Detection fps per camera.
    pub fps: f64,
    /// Detector sessions.
    pub sessions: usize,
    /// Cameras in the soak.
    pub cameras: usize,
    /// Length of the soak.
    pub duration: Duration,
    /// Sampling interval.
    pub sample: Duration,
    /// Ramp 1..=N cameras first (0: no ramp).
    pub ramp: usize,
    /// Length of each ramp step.
    pub ramp_step: Duration,
}

/// One sample of a run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    /// Seconds since the run started.
    pub t_s: f64,
    pub rss_mb: f64,
    /// CPU of the agent process since the previous sample, percent of one core.
    pub agent_cpu_pct: f64,
    /// CPU of its ffmpeg children since the previous sample, percent of one core.
    pub ffmpeg_cpu_pct: f64,
    pub processed: u64,
    pub skipped: u64,
}

/// The outcome of one run.
#[derive(Debug, Clone, Default)]
pub struct RunFigures {
    pub cameras: usize,
    pub samples: Vec<Sample>,
}

impl RunFigures {
    fn last(&self) -> Sample {
        self.samples.last().copied().unwrap_or_default()
    }

    /// CPU (agent + ffmpeg) per camera over the whole run, percent of one core.
    pub fn cpu_per_camera_pct(&self) -> f64 {
        let n = self.samples.len().max(1) as f64;
        let total: f64 = self
            .samples
            .iter()
            .map(|s| s.agent_cpu_pct + s.ffmpeg_cpu_pct)
            .sum();
        total / n / self.cameras.max(1) as f64
    }

    /// The summary line of a soak.
    pub fn summary_line(&self, fps: f64, minutes: f64) -> String {
        let rss: Vec<f64> = self.samples.iter().map(|s| s.rss_mb).collect();
        let first = rss.first().copied().unwrap_or(0.0);
        let last = rss.last().copied().unwrap_or(0.0);
        let max = rss.iter().copied().fold(0.0, f64::max);
        let second_half_min = rss[rss.len() / 2..]
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min);
        let l = self.last();
        format!(
            "soak cameras={} fps={fps} minutes={minutes:.1} processed={} skipped={} \
             cpu_per_camera_pct={:.1} rss_first_mb={first:.1} rss_last_mb={last:.1} \
             rss_max_mb={max:.1} rss_growth_mb={:.1}",
            self.cameras,
            l.processed,
            l.skipped,
            self.cpu_per_camera_pct(),
            if second_half_min.is_finite() {
                last - second_half_min
            } else {
                0.0
            }
        )
    }
}

/// Runs the ramp (if asked) and the soak, printing as it goes.
pub async fn run(model: &Arc<Model>, cfg: &SoakConfig) -> Result<RunFigures, AgentError> {
    if cfg.ramp > 0 {
        let mut sustained = 0;
        for n in 1..=cfg.ramp {
            let figures = run_once(model, cfg, n, cfg.ramp_step, cfg.ramp_step).await?;
            let l = figures.last();
            println!(
                "ramp cameras={n} processed={} skipped={} cpu_per_camera_pct={:.1} rss_mb={:.1}",
                l.processed,
                l.skipped,
                figures.cpu_per_camera_pct(),
                l.rss_mb
            );
            if l.skipped > 0 {
                break;
            }
            sustained = n;
        }
        println!(
            "ramp_result max_cameras_zero_skipped={sustained} fps={}",
            cfg.fps
        );
    }
    let figures = run_once(model, cfg, cfg.cameras, cfg.duration, cfg.sample).await?;
    println!(
        "{}",
        figures.summary_line(cfg.fps, cfg.duration.as_secs_f64() / 60.0)
    );
    Ok(figures)
}

fn agent_config(cfg: &SoakConfig, cameras: usize) -> AgentConfig {
    let cameras = (0..cameras)
        .map(|i| {
            let id = format!("cam{i}");
            CameraConfig {
                id: id.clone(),
                location: None,
                readers: Vec::new(),
                source: SourceConfig::Ffmpeg(FfmpegSourceConfig {
                    camera: id,
                    input: cfg.video.display().to_string().into(),
                    fps: cfg.fps,
                    width: 640,
                    realtime: true,
                    at_end: AtEnd::Loop,
                    ..FfmpegSourceConfig::default()
                }),
                rules: cfg.rules.clone(),
            }
        })
        .collect();
    AgentConfig {
        site: "soak".into(),
        utc_offset_minutes: defaults::utc_offset_minutes(),
        location: None,
        model: ModelConfig {
            sessions: cfg.sessions,
            ..ModelConfig::default()
        },
        snapshot: SnapshotConfig::default(),
        cameras,
        tag_rules: None,
        tag_rules_file: None,
        tag_readers: Vec::new(),
        sightings: SightingsConfig::default(),
        // The soak runs the pipeline only: nothing is stored or sent.
        data_dir: std::env::temp_dir().join("edge-agent-soak"),
        outbox: Default::default(),
        uplink: None,
        metrics: None,
    }
}

async fn run_once(
    model: &Arc<Model>,
    cfg: &SoakConfig,
    cameras: usize,
    duration: Duration,
    every: Duration,
) -> Result<RunFigures, AgentError> {
    let (stop, shutdown) = watch::channel(false);
    let agent = Agent::new(
        agent_config(cfg, cameras),
        model.clone(),
        Mode::Live,
        shutdown,
    )
    .await?;
    let stats = agent.stats();
    let (tx, mut rx) = mpsc::channel(64);
    let run = tokio::spawn(agent.run(tx));
    // Alerts are counted and dropped: the soak measures the pipeline, not a sink.
    let drain = tokio::spawn(async move {
        let mut alerts = 0u64;
        while let Some(o) = rx.recv().await {
            if let Output::Alert(_) = o {
                alerts += 1;
            }
        }
        alerts
    });
    let began = Instant::now();
    let mut figures = RunFigures {
        cameras,
        samples: Vec::new(),
    };
    let mut cpu = CpuClock::now();
    // Frames and skips before the first sample belong to start-up (ffmpeg and ORT warming
    // up) and are not counted against the box.
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    let baseline = totals(&stats);
    while began.elapsed() < duration {
        tick.tick().await;
        let (agent_pct, ffmpeg_pct) = cpu.since();
        let (processed, skipped) = totals(&stats);
        let s = Sample {
            t_s: began.elapsed().as_secs_f64(),
            rss_mb: rss_mb(),
            agent_cpu_pct: agent_pct,
            ffmpeg_cpu_pct: ffmpeg_pct,
            processed: processed - baseline.0,
            skipped: skipped - baseline.1,
        };
        if every < duration {
            println!(
                "sample cameras={cameras} t_s={:.0} rss_mb={:.1} agent_cpu_pct={:.1} ffmpeg_cpu_pct={:.1} processed={} skipped={}",
                s.t_s, s.rss_mb, s.agent_cpu_pct, s.ffmpeg_cpu_pct, s.processed, s.skipped
            );
        }
        figures.samples.push(s);
    }
    let _ = stop.send(true);
    run.await.map_err(|e| AgentError::Task(e.to_string()))??;
    let _ = drain.await;
    Ok(figures)
}

fn totals(stats: &AgentStats) -> (u64, u64) {
    stats
        .cameras()
        .iter()
        .fold((0, 0), |(p, s), c| (p + c.processed, s + c.skipped))
}

/// Resident memory of this process, MB (VmRSS).
pub fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// CPU time of this process and of its child processes, from `/proc`.
#[derive(Debug)]
struct CpuClock {
    at: Instant,
    agent_ticks: u64,
    children: std::collections::HashMap<u32, u64>,
}

impl CpuClock {
    fn now() -> Self {
        Self {
            at: Instant::now(),
            agent_ticks: proc_ticks("/proc/self/stat").unwrap_or(0),
            children: child_ticks(),
        }
    }

    /// CPU percent of one core used by the agent and by its children since the last call.
    fn since(&mut self) -> (f64, f64) {
        let next = Self::now();
        let secs = next.at.duration_since(self.at).as_secs_f64().max(1e-9);
        // Linux reports CPU time in clock ticks of 1/100 s (USER_HZ) on every platform we run.
        let pct = |ticks: u64| ticks as f64 / 100.0 / secs * 100.0;
        let agent = pct(next.agent_ticks.saturating_sub(self.agent_ticks));
        let children: u64 = next
            .children
            .iter()
            .map(|(pid, t)| t.saturating_sub(*self.children.get(pid).unwrap_or(&0)))
            .sum();
        *self = next;
        (agent, pct(children))
    }
}

/// utime + stime of a `/proc/<pid>/stat` file, in clock ticks.
fn proc_ticks(path: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    // The command name (field 2) may contain spaces; fields after its closing ')' are fixed.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // After ')': state is field 3, so utime (14) and stime (15) are at 11 and 12 here.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// CPU ticks of every direct child of this process, by pid.
fn child_ticks() -> std::collections::HashMap<u32, u64> {
    let me = std::process::id();
    let mut out = std::collections::HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let path = format!("/proc/{pid}/stat");
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let Some(close) = text.rfind(')') else {
            continue;
        };
        let ppid = text[close + 2..]
            .split(' ')
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(me)
            && let Some(t) = proc_ticks(&path)
        {
            out.insert(pid, t);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_of_this_process_are_read_from_proc() {
        // Burn a little CPU so the count is above zero on any machine.
        let t = Instant::now();
        let mut x = 0u64;
        while t.elapsed() < Duration::from_millis(50) {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        assert!(x != 1);
        assert!(proc_ticks("/proc/self/stat").is_some_and(|t| t > 0));
        assert!(rss_mb() > 1.0);
    }

    #[test]
    fn the_summary_reports_growth_over_the_second_half_only() {
        let samples = [100.0, 140.0, 120.0, 121.0, 122.0]
            .iter()
            .enumerate()
            .map(|(i, &rss)| Sample {
                t_s: i as f64 * 10.0,
                rss_mb: rss,
                agent_cpu_pct: 80.0,
                ffmpeg_cpu_pct: 20.0,
                processed: 100,
                skipped: 0,
            })
            .collect();
        let f = RunFigures {
            cameras: 2,
            samples,
        };
        let line = f.summary_line(5.0, 1.0);
        assert!(line.contains("rss_growth_mb=2.0"), "{line}");
        assert!(line.contains("rss_max_mb=140.0"), "{line}");
        assert!(line.contains("cpu_per_camera_pct=50.0"), "{line}");
    }
}
