//! [`Agent`]: the running pipeline of one box.
//!
//! ```text
//! camera source ─pump─▶ LatestFrame ─▶ DetectorPool ─Detected─▶ ┐
//!  (one task each)      (per camera)   (worker threads)          │ core task (one):
//! camera health ───────────────────────────────────────────────▶ │  Engine per camera → AlertFactory
//! tag readers ─TagRead─────────────────────────────────────────▶ │  Deduplicator → TagRules
//!                                                                 ┘        │
//!                                                                          ▼ Output (bounded)
//! ```
//!
//! Two modes share every stage:
//! - **live**: frames wait in the latest-frame slots (a stale frame is replaced and counted as
//!   skipped), rules run on wall-clock time, and the core handles results in arrival order
//!   (a result older than one already handled for its camera is counted as `late` and dropped:
//!   the tracker needs time to move forward);
//! - **replay**: sources read files as fast as the machine allows, the slots are lossless, the
//!   rules run on media time (`start + pts`), and the core handles frames and tag reads in one
//!   deterministic order, by (time, camera index), whatever order the detector workers finish
//!   in. Each camera may have at most [`REPLAY_IN_FLIGHT`] frames between its source and the
//!   core, so a fast camera cannot run ahead of a slow one without bound. The same footage
//!   therefore gives the same alerts, in the same order, with the same ids.
//!
//! Queue policies: frames: latest-frame slot (live) or lossless with bounded in-flight (replay);
//! detections: bounded channel, the pool waits; camera health: bounded channel, never dropped;
//! tag reads: bounded channel, backpressure (UDP counts what it cannot queue); output: bounded
//! channel, the core waits (alerts are never dropped).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use protocol::Alert;
use protocol::alert::{Location, ModelRef};
use protocol::command::CommandBody;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tracing::{debug, error, info, warn};

use super::alerts::AlertFactory;
use super::config::{AgentConfig, SourceConfig, TagReaderConfig};
use crate::detect::pool::{CameraCounters, Detected, DetectorPool, PoolCamera};
use crate::detect::preprocess::RgbFrame;
use crate::detect::{DetectError, DetectorOptions, Model};
use crate::rules::{Engine, RulesError};
use crate::snapshot::FrameRing;
use crate::source::{
    AtEnd, DirSource, FfmpegSource, Frame, FrameSource, HttpSnapshotSource, LatestFrame,
    MjpegSource, SourceError, SourceEvent,
};
use crate::tags::reader::system_clock;
use crate::tags::{
    Deduplicator, MqttReader, ReaderCounters, Sighting, SightingBatcher, TagRead, TagRules,
    TcpReader, UdpReader,
};
use crate::track::Timestamp;
use crate::uplink::ApplyCommand;

/// Replay: frames of one camera allowed between its source and the core.
pub const REPLAY_IN_FLIGHT: usize = 4;
/// Replay: offline and stall timeouts, long enough never to fire (a day).
const REPLAY_NO_WATCHDOG_MS: u64 = 86_400_000;
/// Capacity of the tag-read channel.
const TAG_CAPACITY: usize = 1024;
/// Live: how often tag rules and sighting batches are ticked.
const TICK: Duration = Duration::from_millis(500);

/// How the agent runs.
#[derive(Debug, Clone)]
pub enum Mode {
    /// Cameras and readers as configured, wall-clock time.
    Live,
    /// Recorded footage as fast as possible, deterministically.
    Replay {
        /// The wall-clock time of the first frame (pts 0), Unix ms.
        start_ms: Timestamp,
        /// Recorded tag reads, stamped with their own time (`received_ms`).
        tag_reads: Vec<TagRead>,
    },
}

/// What the agent hands on.
#[derive(Debug, Clone)]
pub enum Output {
    /// An alert, to be kept until delivered.
    Alert(Box<Alert>),
    /// A batch of tag sightings for the hub's trajectory search.
    Sightings(Vec<Sighting>),
}

/// Why the agent could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A camera's rules do not compile (the config should have been validated first).
    #[error("camera {camera}: {source}")]
    Rules {
        camera: String,
        #[source]
        source: RulesError,
    },
    /// A camera source could not be made.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The detector pool could not start (library, model, threads).
    #[error("detector pool: {0}")]
    Detector(#[from] DetectError),
    /// A tag reader could not bind its socket.
    #[error("tag_readers[{index}]: cannot listen on {listen}: {source}")]
    Bind {
        index: usize,
        listen: String,
        #[source]
        source: std::io::Error,
    },
    /// An MQTT tag reader's config is invalid.
    #[error("tag_readers[{index}]: {message}")]
    MqttReader { index: usize, message: String },
    /// The tag rules are invalid.
    #[error("tag rules: {}", .0.join("; "))]
    TagRules(Vec<String>),
    /// Replay: a camera's recording failed (the replay does not retry a broken file).
    #[error("replay: {0}")]
    ReplaySource(String),
    /// The agent's task ended abnormally (a panic inside a stage).
    #[error("agent task failed: {0}")]
    Task(String),
}

/// Counters of one camera, readable while the agent runs.
#[derive(Debug)]
pub struct CameraStats {
    /// The camera's id.
    pub id: Arc<str>,
    slot: LatestFrame,
    pool: Arc<CameraCounters>,
    /// Frames whose detections went through the rules.
    pub processed: AtomicU64,
    /// Live: results dropped because a newer frame of the camera had been handled.
    pub late: AtomicU64,
    /// Total detector time, microseconds.
    pub detect_us: AtomicU64,
    /// Alerts raised for this camera (rules and health).
    pub alerts: AtomicU64,
    /// Source failures (ffmpeg exits, stalls, HTTP errors).
    pub failures: AtomicU64,
    /// Whether the camera is delivering (false between its offline and online events).
    pub online: AtomicBool,
}

/// A copy of one camera's counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CameraSnapshot {
    pub id: String,
    /// Frames the source delivered.
    pub frames: u64,
    /// Frames replaced in the slot before the detector took them.
    pub skipped: u64,
    /// Frames the detector failed on.
    pub detect_failed: u64,
    /// See [`CameraStats::processed`].
    pub processed: u64,
    /// See [`CameraStats::late`].
    pub late: u64,
    /// Mean detector time per processed frame, ms.
    pub detect_ms: f64,
    pub alerts: u64,
    pub failures: u64,
}

/// Counters of the whole agent.
#[derive(Debug, Default)]
pub struct AgentStats {
    pub cameras: Vec<Arc<CameraStats>>,
    pub readers: Vec<Arc<ReaderCounters>>,
    /// A name per entry of `readers` (see `TagReaderConfig::name`), unique.
    pub reader_names: Vec<String>,
    /// Tag alerts raised.
    pub tag_alerts: AtomicU64,
    /// Sightings handed on in batches.
    pub sightings: AtomicU64,
    /// Snapshots that could not be encoded.
    pub snapshot_failures: AtomicU64,
}

impl AgentStats {
    /// Every camera's counters now.
    pub fn cameras(&self) -> Vec<CameraSnapshot> {
        self.cameras
            .iter()
            .map(|c| {
                let slot = c.slot.stats();
                let processed = c.processed.load(Ordering::Relaxed);
                CameraSnapshot {
                    id: c.id.to_string(),
                    frames: slot.put,
                    skipped: slot.skipped,
                    detect_failed: c.pool.failed.load(Ordering::Relaxed),
                    processed,
                    late: c.late.load(Ordering::Relaxed),
                    detect_ms: c.detect_us.load(Ordering::Relaxed) as f64
                        / 1000.0
                        / processed.max(1) as f64,
                    alerts: c.alerts.load(Ordering::Relaxed),
                    failures: c.failures.load(Ordering::Relaxed),
                }
            })
            .collect()
    }
}

/// One camera source, whatever its kind. An enum rather than a boxed trait object because
/// [`FrameSource::next_event`] returns `impl Future`.
#[derive(Debug)]
enum CameraSource {
    Ffmpeg(FfmpegSource),
    Http(HttpSnapshotSource),
    Mjpeg(MjpegSource),
    Dir(DirSource),
}

impl CameraSource {
    fn new(
        config: &SourceConfig,
        mode: &Mode,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Self, SourceError> {
        let replay = matches!(mode, Mode::Replay { .. });
        let camera = match config {
            SourceConfig::Ffmpeg(c) => c.camera.as_str(),
            SourceConfig::Http(c) => c.camera.as_str(),
            SourceConfig::Mjpeg(c) => c.camera.as_str(),
            SourceConfig::Dir(c) => c.camera.as_str(),
        };
        let is_file = matches!(config, SourceConfig::Ffmpeg(c) if c.is_file());
        if replay && !is_file {
            // A live camera has no end and no fixed timeline, and a pushed-JPEG directory is
            // consumed (deleted or moved) as it is read: neither can be replayed.
            return Err(SourceError::Config {
                camera: Arc::from(camera),
                problems: "replay reads recorded video files only (an ffmpeg source whose \
                           input is a file)"
                    .into(),
            });
        }
        Ok(match config {
            SourceConfig::Ffmpeg(c) => {
                let mut c = c.clone();
                if replay {
                    // As fast as the machine allows, once. The source is paused whenever the
                    // detector falls behind (lossless slots), so silence says nothing about the
                    // camera: no offline or stall detection in a replay.
                    c.realtime = false;
                    c.at_end = AtEnd::Finish;
                    c.offline_after_ms = REPLAY_NO_WATCHDOG_MS;
                    c.stall_after_ms = REPLAY_NO_WATCHDOG_MS;
                }
                Self::Ffmpeg(FfmpegSource::new(c, shutdown)?)
            }
            SourceConfig::Http(c) => Self::Http(HttpSnapshotSource::new(c.clone(), shutdown)?),
            SourceConfig::Mjpeg(c) => Self::Mjpeg(MjpegSource::new(c.clone(), shutdown)?),
            SourceConfig::Dir(c) => Self::Dir(DirSource::new(c.clone(), shutdown)?),
        })
    }

    async fn next_event(&mut self) -> Option<SourceEvent> {
        match self {
            Self::Ffmpeg(s) => s.next_event().await,
            Self::Http(s) => s.next_event().await,
            Self::Mjpeg(s) => s.next_event().await,
            Self::Dir(s) => s.next_event().await,
        }
    }
}

/// What a camera's pump tells the core besides frames.
#[derive(Debug)]
enum Health {
    Event(usize, SourceEvent),
    /// The source finished after delivering this many frames.
    Ended(usize, u64),
}

/// The pipeline of one box, built and ready to run. See the module docs.
#[derive(Debug)]
pub struct Agent {
    config: AgentConfig,
    model: Arc<Model>,
    mode: Mode,
    stats: Arc<AgentStats>,
    cameras: Vec<CameraState>,
    sources: Vec<CameraSource>,
    pool_cameras: Vec<PoolCamera>,
    readers: Vec<BoundReader>,
    tag_rules: TagRules,
    shutdown: watch::Receiver<bool>,
    /// Verified hub commands to apply (live only).
    commands: Option<mpsc::Receiver<ApplyCommand>>,
}

/// A tag reader with its socket bound.
#[derive(Debug)]
enum BoundReader {
    Tcp(TcpReader),
    Udp(UdpReader),
    Mqtt(MqttReader),
}

impl Agent {
    /// Builds every stage and binds the readers' sockets, so that every configuration or
    /// resource problem is reported before anything runs. Nothing is started yet.
    pub async fn new(
        config: AgentConfig,
        model: Arc<Model>,
        mode: Mode,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Self, AgentError> {
        let replay = matches!(mode, Mode::Replay { .. });
        let mut stats = AgentStats::default();
        let mut cameras = Vec::with_capacity(config.cameras.len());
        let mut sources = Vec::with_capacity(config.cameras.len());
        let mut pool_cameras = Vec::with_capacity(config.cameras.len());
        for camera in &config.cameras {
            let engine = Engine::new(&camera.rules).map_err(|source| AgentError::Rules {
                camera: camera.id.clone(),
                source,
            })?;
            sources.push(CameraSource::new(&camera.source, &mode, shutdown.clone())?);
            let id: Arc<str> = Arc::from(camera.id.as_str());
            let slot = LatestFrame::new();
            let pool_camera = PoolCamera::new(id.clone(), slot.clone());
            let camera_stats = Arc::new(CameraStats {
                id: id.clone(),
                slot,
                pool: pool_camera.counters.clone(),
                processed: AtomicU64::new(0),
                late: AtomicU64::new(0),
                detect_us: AtomicU64::new(0),
                alerts: AtomicU64::new(0),
                failures: AtomicU64::new(0),
                online: AtomicBool::new(true),
            });
            stats.cameras.push(camera_stats.clone());
            pool_cameras.push(pool_camera);
            cameras.push(CameraState {
                id,
                fps: camera.source.fps(),
                readers: camera.readers.clone(),
                engine,
                ring: (!camera.readers.is_empty())
                    .then(|| FrameRing::new(config.snapshot.ring_frames)),
                stats: camera_stats,
                next_seq: 0,
                pending: BTreeMap::new(),
                ended: None,
                permit: replay.then(|| Arc::new(Semaphore::new(REPLAY_IN_FLIGHT))),
            });
        }
        let mut readers = Vec::new();
        if !replay {
            for (index, reader) in config.tag_readers.iter().enumerate() {
                let bound = bind_reader(index, reader).await?;
                let mut name = reader.name();
                if stats.reader_names.contains(&name) {
                    name = format!("{name}_{index}");
                }
                stats.reader_names.push(name);
                stats.readers.push(match &bound {
                    BoundReader::Tcp(r) => r.counters(),
                    BoundReader::Udp(r) => r.counters(),
                    BoundReader::Mqtt(r) => r.counters(),
                });
                readers.push(bound);
            }
        }
        let tag_rules = TagRules::new(&config.tag_rules.clone().unwrap_or_default())
            .map_err(AgentError::TagRules)?;
        Ok(Self {
            config,
            model,
            mode,
            stats: Arc::new(stats),
            cameras,
            sources,
            pool_cameras,
            readers,
            tag_rules,
            shutdown,
            commands: None,
        })
    }

    /// The counters, readable while the agent runs.
    pub fn stats(&self) -> Arc<AgentStats> {
        self.stats.clone()
    }

    /// Hub commands (already verified by the uplink's gate) arrive on `rx`; the core applies
    /// each to the tag rules or a camera's rule engine, atomically (a refused change leaves
    /// everything as it was), and answers on the command's `done` channel.
    pub fn accept_commands(&mut self, rx: mpsc::Receiver<ApplyCommand>) {
        self.commands = Some(rx);
    }

    /// Where each tag reader listens (after binding; port 0 in the config becomes a real port).
    pub fn reader_addrs(&self) -> Vec<std::net::SocketAddr> {
        self.readers
            .iter()
            .filter_map(|r| match r {
                BoundReader::Tcp(r) => r.local_addr().ok(),
                BoundReader::Udp(r) => r.local_addr().ok(),
                BoundReader::Mqtt(_) => None,
            })
            .collect()
    }

    /// Runs until shutdown (live) or the end of the footage (replay), sending alerts and
    /// sighting batches to `out`.
    pub async fn run(self, out: mpsc::Sender<Output>) -> Result<Arc<AgentStats>, AgentError> {
        let Self {
            config,
            model,
            mode,
            stats,
            cameras,
            sources,
            pool_cameras,
            readers,
            tag_rules,
            shutdown,
            commands,
        } = self;
        let replay = matches!(mode, Mode::Replay { .. });
        let mut tasks = JoinSet::new();
        let (health_tx, health_rx) = mpsc::channel(64);
        for (index, mut source) in sources.into_iter().enumerate() {
            let slot = pool_cameras[index].slot.clone();
            let permit = cameras[index].permit.clone();
            let health = health_tx.clone();
            tasks.spawn(async move {
                let mut delivered = 0u64;
                while let Some(event) = source.next_event().await {
                    match event {
                        SourceEvent::Frame(frame) => {
                            delivered += 1;
                            match &permit {
                                Some(permits) => {
                                    // Returned by the core once it has handled the frame.
                                    let Ok(p) = permits.acquire().await else {
                                        break;
                                    };
                                    p.forget();
                                    slot.put_lossless(frame).await;
                                }
                                None => slot.put(frame),
                            }
                        }
                        other => {
                            // A broken recording is not retried in a replay: it would never end.
                            let fatal = replay && matches!(other, SourceEvent::Failed { .. });
                            if health.send(Health::Event(index, other)).await.is_err() || fatal {
                                break;
                            }
                        }
                    }
                }
                slot.close();
                let _ = health.send(Health::Ended(index, delivered)).await;
            });
        }
        drop(health_tx);

        let (detected_tx, detected_rx) = mpsc::channel(8);
        let pool = if pool_cameras.is_empty() {
            None
        } else {
            let opts = DetectorOptions {
                ort_library: config.model.ort_library.clone(),
                intra_threads: config.model.threads_per_session,
                ..DetectorOptions::default()
            };
            Some(DetectorPool::start(
                &model,
                &opts,
                config.model.sessions,
                pool_cameras,
                detected_tx,
            )?)
        };

        let (tag_tx, tag_rx) = mpsc::channel(TAG_CAPACITY);
        for reader in readers {
            let (tx, shutdown) = (tag_tx.clone(), shutdown.clone());
            match reader {
                BoundReader::Tcp(r) => tasks.spawn(r.run(tx, shutdown)),
                BoundReader::Udp(r) => tasks.spawn(r.run(tx, shutdown)),
                BoundReader::Mqtt(r) => tasks.spawn(r.run(tx, shutdown)),
            };
        }
        drop(tag_tx);

        let tag_config = config.tag_rules.clone().unwrap_or_default();
        let mut factory = AlertFactory::new(
            &config.site,
            if replay { 0 } else { random_salt() },
            Some(ModelRef {
                id: model.name().to_string(),
                sha256: model.sha256.clone(),
            }),
            config.snapshot.max_bytes,
        );
        for (i, c) in config.cameras.iter().enumerate() {
            if let Some(l) = config.camera_location(i) {
                factory.set_location(
                    Arc::from(c.id.as_str()),
                    Location {
                        lon: l.lon,
                        lat: l.lat,
                    },
                );
            }
        }
        let mut core = Core {
            config: &config,
            cameras,
            factory,
            dedup: Deduplicator::new(tag_config.dedup_window_ms),
            tag_rules,
            batcher: SightingBatcher::new(
                config.sightings.batch_max,
                config.sightings.batch_max_age_ms,
            ),
            out,
            stats: stats.clone(),
            replay_start: 0,
            held: HashMap::new(),
            hold_ms: 2 * tag_config.theft.window_ms
                + 2 * tag_config.dedup_window_ms
                + config.snapshot.tag_frame_tolerance_ms,
            decision_ms: tag_config.theft.window_ms + tag_config.dedup_window_ms,
        };
        let result = match mode {
            Mode::Live => {
                core.live(detected_rx, health_rx, tag_rx, commands, shutdown)
                    .await;
                Ok(())
            }
            Mode::Replay {
                start_ms,
                tag_reads,
            } => {
                core.replay_start = start_ms;
                core.replay(detected_rx, health_rx, tag_reads).await
            }
        };
        if let Some(pool) = pool {
            pool.stop();
            // Joining blocks; the workers finish their current frame within milliseconds.
            let _ = tokio::task::spawn_blocking(move || pool.join()).await;
        }
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        result.map(|()| stats)
    }
}

async fn bind_reader(index: usize, reader: &TagReaderConfig) -> Result<BoundReader, AgentError> {
    let bind_error = |listen: &str, source| AgentError::Bind {
        index,
        listen: listen.to_string(),
        source,
    };
    Ok(match reader {
        TagReaderConfig::Tcp(l) => {
            let r = TcpReader::bind(&l.listen)
                .await
                .map_err(|e| bind_error(&l.listen, e))?;
            info!(message = "Tag reader listening.", transport = "tcp", listen = %l.listen);
            BoundReader::Tcp(r)
        }
        TagReaderConfig::Udp(l) => {
            let r = UdpReader::bind(&l.listen)
                .await
                .map_err(|e| bind_error(&l.listen, e))?;
            info!(message = "Tag reader listening.", transport = "udp", listen = %l.listen);
            BoundReader::Udp(r)
        }
        TagReaderConfig::Mqtt(c) => {
            // Connects when run; a broker that is down is retried with back-off, not fatal.
            let r = MqttReader::new(c.clone()).map_err(|e| AgentError::MqttReader {
                index,
                message: e.to_string(),
            })?;
            BoundReader::Mqtt(r)
        }
    })
}

/// The next command, or never when there is no command channel.
async fn recv_command(rx: &mut Option<mpsc::Receiver<ApplyCommand>>) -> Option<ApplyCommand> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Completes when shutdown is requested or its sender is gone.
async fn shutdown_requested(shutdown: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`; drop it here, inside this future.
    let _ = shutdown.wait_for(|&stop| stop).await;
}

fn random_salt() -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(system_clock())
}

/// The core's view of one camera.
#[derive(Debug)]
struct CameraState {
    id: Arc<str>,
    fps: f64,
    readers: Vec<String>,
    engine: Engine,
    ring: Option<FrameRing>,
    stats: Arc<CameraStats>,
    /// The next frame to handle (replay) or the lowest acceptable (live).
    next_seq: u64,
    /// Replay: results that arrived before their turn.
    pending: BTreeMap<u64, Detected>,
    /// The source finished after this many frames.
    ended: Option<u64>,
    permit: Option<Arc<Semaphore>>,
}

impl CameraState {
    fn finished(&self) -> bool {
        self.ended.is_some_and(|n| self.next_seq >= n)
    }

    /// Media time of frame `seq`, as the sources compute `pts_ms`.
    fn pts(&self, seq: u64) -> Timestamp {
        (seq as f64 * 1000.0 / self.fps).round() as Timestamp
    }
}

/// The single task where every decision is made.
struct Core<'a> {
    config: &'a AgentConfig,
    cameras: Vec<CameraState>,
    factory: AlertFactory,
    dedup: Deduplicator,
    tag_rules: TagRules,
    batcher: SightingBatcher,
    out: mpsc::Sender<Output>,
    stats: Arc<AgentStats>,
    replay_start: Timestamp,
    /// Armed bikes' first-sighting frames, kept until their theft decision (by bike tag).
    held: HashMap<String, HeldFrame>,
    /// How long a held frame may wait for its decision.
    hold_ms: Timestamp,
    /// How long one theft decision can last after the bike's first sighting.
    decision_ms: Timestamp,
}

/// A camera frame kept for a tag alert: camera, capture time, image.
type HeldFrame = (Arc<str>, Timestamp, Arc<RgbFrame>);

impl Core<'_> {
    async fn live(
        &mut self,
        mut detected: mpsc::Receiver<Detected>,
        mut health: mpsc::Receiver<Health>,
        mut tags: mpsc::Receiver<TagRead>,
        mut commands: Option<mpsc::Receiver<ApplyCommand>>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (mut frames_open, mut health_open, mut tags_open) = (true, true, true);
        loop {
            tokio::select! {
                biased;
                () = shutdown_requested(&mut shutdown) => break,
                h = health.recv(), if health_open => match h {
                    Some(h) => self.on_health(h).await,
                    None => health_open = false,
                },
                d = detected.recv(), if frames_open => match d {
                    Some(d) => {
                        let Some(i) = self.camera_index(&d.frame.camera) else { continue };
                        if d.frame.seq < self.cameras[i].next_seq {
                            self.cameras[i].stats.late.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        self.cameras[i].next_seq = d.frame.seq + 1;
                        let at = d.frame.wall_ms;
                        self.on_detected(i, d, at).await;
                    }
                    None => frames_open = false,
                },
                r = tags.recv(), if tags_open => match r {
                    Some(read) => self.on_read(&read).await,
                    None => tags_open = false,
                },
                c = recv_command(&mut commands) => match c {
                    Some(apply) => {
                        let result = self.apply_command(&apply.command.body);
                        // The uplink may be gone at shutdown; then nobody waits for the answer.
                        let _ = apply.done.send((apply.command, result)).await;
                    }
                    None => commands = None,
                },
                _ = tick.tick() => self.tick(system_clock()).await,
            }
            if !frames_open && !tags_open && !health_open {
                break;
            }
        }
        self.finish_tags(system_clock(), false).await;
    }

    async fn replay(
        &mut self,
        mut detected: mpsc::Receiver<Detected>,
        mut health: mpsc::Receiver<Health>,
        mut reads: Vec<TagRead>,
    ) -> Result<(), AgentError> {
        reads.sort_by_key(|r| r.received_ms);
        let mut reads = reads.into_iter().peekable();
        let mut failure = None;
        let (mut health_open, mut detected_open) = (true, true);
        loop {
            // The next thing in the deterministic order: the camera frame or tag read with the
            // earliest time; cameras before reads at equal times, lower index first.
            let next_camera = self
                .cameras
                .iter()
                .enumerate()
                .filter(|(_, c)| !c.finished())
                .min_by_key(|(i, c)| (c.pts(c.next_seq), *i))
                .map(|(i, c)| (i, self.replay_start + c.pts(c.next_seq)));
            // A read goes first when it is strictly earlier than the next frame (or no camera
            // is left).
            let read_first = reads
                .peek()
                .is_some_and(|r| next_camera.is_none_or(|(_, at)| r.received_ms < at));
            if read_first && let Some(read) = reads.next() {
                self.tick(read.received_ms).await;
                self.on_read(&read).await;
                continue;
            }
            let Some((i, at)) = next_camera else { break };
            let seq = self.cameras[i].next_seq;
            if let Some(d) = self.cameras[i].pending.remove(&seq) {
                self.cameras[i].next_seq += 1;
                self.tick(at).await;
                self.on_detected(i, d, at).await;
                if let Some(p) = &self.cameras[i].permit {
                    p.add_permits(1);
                }
                continue;
            }
            // Wait for the frame whose turn it is (or learn that its camera ended).
            tokio::select! {
                h = health.recv(), if health_open => match h {
                    Some(Health::Event(i, SourceEvent::Failed { error, .. })) => {
                        self.cameras[i].stats.failures.fetch_add(1, Ordering::Relaxed);
                        error!(message = "Replay source failed; its camera stops here.", camera = %self.cameras[i].id, %error);
                        failure.get_or_insert_with(|| error.to_string());
                    }
                    Some(h) => self.on_health(h).await,
                    None => health_open = false,
                },
                d = detected.recv(), if detected_open => match d {
                    Some(d) => {
                        if let Some(i) = self.camera_index(&d.frame.camera) {
                            self.cameras[i].pending.insert(d.frame.seq, d);
                        }
                    }
                    None => detected_open = false,
                },
                else => {
                    // Every source and worker is done: what has not arrived never will. Only
                    // reachable if a worker died; end the cameras where they are.
                    for c in &mut self.cameras {
                        if !c.pending.contains_key(&c.next_seq) {
                            c.ended = Some(c.next_seq);
                        }
                    }
                }
            }
        }
        let end = self
            .cameras
            .iter()
            .map(|c| self.replay_start + c.pts(c.next_seq))
            .max()
            .unwrap_or(self.replay_start);
        self.finish_tags(end, true).await;
        match failure {
            Some(e) => Err(AgentError::ReplaySource(e)),
            None => Ok(()),
        }
    }

    /// Applies a hub command's change; `Err` (with the reason) leaves everything unchanged.
    fn apply_command(&mut self, body: &CommandBody) -> Result<(), String> {
        if let Some(update) = crate::command::tag_update(body) {
            return self.tag_rules.apply(update).map_err(|e| e.to_string());
        }
        if let CommandBody::RuleParams(p) = body {
            let (camera, update) = crate::command::rule_update(p);
            let i = self
                .camera_index(&camera)
                .ok_or_else(|| format!("camera: no camera {camera:?} on this box"))?;
            return self.cameras[i]
                .engine
                .update_params(&update)
                .map_err(|e| e.to_string());
        }
        Err(format!("{body:?}: not a change this agent knows"))
    }

    fn camera_index(&self, id: &str) -> Option<usize> {
        self.cameras.iter().position(|c| &*c.id == id)
    }

    async fn emit(&mut self, output: Output) {
        if self.out.send(output).await.is_err() {
            debug!(message = "Output closed; dropping the rest of this run's output.");
        }
    }

    async fn emit_alert(&mut self, alert: Alert) {
        info!(
            message = "Alert.",
            id = %alert.id,
            kind = ?alert.kind,
            phase = ?alert.phase,
            rule = %alert.rule,
            source = ?alert.source,
            time = %alert.time,
            track = ?alert.track,
            snapshot_bytes = alert.snapshot.as_ref().map_or(0, |s| s.jpeg.len()),
        );
        self.stats
            .snapshot_failures
            .store(self.factory.counters().snapshot_failures, Ordering::Relaxed);
        self.emit(Output::Alert(Box::new(alert))).await;
    }

    async fn on_detected(&mut self, i: usize, d: Detected, at: Timestamp) {
        let camera = &mut self.cameras[i];
        if let Some(error) = &d.error {
            debug!(message = "Frame without detections (detector failed).", camera = %camera.id, seq = d.frame.seq, %error);
            return;
        }
        camera
            .stats
            .detect_us
            .fetch_add((d.detect_ms * 1000.0) as u64, Ordering::Relaxed);
        camera.stats.processed.fetch_add(1, Ordering::Relaxed);
        let Frame { seq, image, .. } = d.frame;
        let image = Arc::new(image);
        let events = camera
            .engine
            .process(seq, at, self.config.time_of_day(at), &d.detections);
        if let Some(ring) = &mut camera.ring {
            ring.push(at, image.clone());
        }
        if events.is_empty() {
            return;
        }
        let id = camera.id.clone();
        let alerts = self.factory.on_frame(&id, &image, at, events);
        self.cameras[i]
            .stats
            .alerts
            .fetch_add(alerts.len() as u64, Ordering::Relaxed);
        for a in alerts {
            self.emit_alert(a).await;
        }
    }

    async fn on_health(&mut self, h: Health) {
        match h {
            Health::Ended(i, n) => {
                let c = &mut self.cameras[i];
                c.ended = Some(c.ended.map_or(n, |e| e.min(n)));
                info!(message = "Camera source finished.", camera = %c.id, frames = n);
            }
            Health::Event(i, event) => {
                let id = self.cameras[i].id.clone();
                let alert = match event {
                    SourceEvent::Offline {
                        since_ms, reason, ..
                    } => {
                        self.cameras[i].stats.online.store(false, Ordering::Relaxed);
                        self.factory
                            .camera_offline(&id, since_ms, system_clock(), &reason)
                    }
                    SourceEvent::Online { offline_for_ms, .. } => {
                        self.cameras[i].stats.online.store(true, Ordering::Relaxed);
                        self.factory
                            .camera_online(&id, system_clock(), offline_for_ms)
                    }
                    SourceEvent::Failed { .. } => {
                        // Logged by the source with its stderr; counted here for status.
                        self.cameras[i]
                            .stats
                            .failures
                            .fetch_add(1, Ordering::Relaxed);
                        None
                    }
                    SourceEvent::Frame(_) => None,
                };
                if let Some(a) = alert {
                    self.cameras[i].stats.alerts.fetch_add(1, Ordering::Relaxed);
                    self.emit_alert(a).await;
                }
            }
        }
    }

    async fn on_read(&mut self, read: &TagRead) {
        if let Some(sighting) = self.dedup.push(read) {
            self.on_sighting(sighting).await;
        }
    }

    async fn on_sighting(&mut self, s: Sighting) {
        // A possible theft is decided up to a window after the bike was heard, when the ring
        // no longer holds that moment: keep the frame of the bike's first sighting now.
        // A frame already held for this bike belongs to the same pending decision unless it is
        // older than one decision can last.
        let fresh = |(_, at, _): &HeldFrame| s.first_ms - at <= self.decision_ms;
        if self.tag_rules.pairing(&s.tag).is_some_and(|p| p.armed)
            && !self.held.get(&s.tag).is_some_and(fresh)
            && let Some(frame) = self.frame_near(&s.reader, s.first_ms)
        {
            self.held.insert(s.tag.clone(), frame);
        }
        let alerts = self.tag_rules.observe(&s);
        let now = s.last_ms;
        self.stats.sightings.fetch_add(1, Ordering::Relaxed);
        if let Some(batch) = self.batcher.push(s, now) {
            self.emit(Output::Sightings(batch)).await;
        }
        for a in alerts {
            self.on_tag_alert(&a).await;
        }
    }

    /// The frame of a camera covering `reader` captured nearest `at`, within the tolerance.
    fn frame_near(&self, reader: &str, at: Timestamp) -> Option<HeldFrame> {
        let tolerance = self.config.snapshot.tag_frame_tolerance_ms;
        self.cameras
            .iter()
            .filter(|c| c.readers.iter().any(|r| r == reader))
            .filter_map(|c| {
                let f = c.ring.as_ref()?.nearest(at, tolerance)?;
                Some((c.id.clone(), f.at_ms, f.frame.clone()))
            })
            .min_by_key(|(_, t, _)| (t - at).abs())
    }

    async fn on_tag_alert(&mut self, a: &crate::tags::TagAlert) {
        let (reader, held) = match a {
            crate::tags::TagAlert::Watchlist { reader, .. } => (reader.clone(), None),
            crate::tags::TagAlert::PossibleTheft { reader, bike, .. } => {
                (reader.clone(), self.held.remove(bike))
            }
        };
        // A held frame is of the bike's first sighting, which is the alert's time.
        let frame = held
            .filter(|(_, at, _)| {
                (at - a.at_ms()).abs() <= self.config.snapshot.tag_frame_tolerance_ms
            })
            .or_else(|| self.frame_near(&reader, a.at_ms()));
        let alert = self
            .factory
            .tag_alert(a, frame.as_ref().map(|(c, at, f)| (c, *at, f)));
        if frame.is_none() {
            warn!(message = "Tag alert without a snapshot: no covering camera frame near its time.", reader = %reader, tag = %a.tag());
        }
        self.stats.tag_alerts.fetch_add(1, Ordering::Relaxed);
        self.emit_alert(alert).await;
    }

    async fn tick(&mut self, now: Timestamp) {
        // A held frame outlives its decision by at most the theft window, the dedup window and
        // a tolerance; anything older belongs to a decision that was cancelled by a key.
        let keep = self.hold_ms;
        self.held.retain(|_, (_, at, _)| now - *at <= keep);
        for s in self.dedup.tick(now) {
            self.on_sighting(s).await;
        }
        for a in self.tag_rules.tick(now) {
            self.on_tag_alert(&a).await;
        }
        if let Some(batch) = self.batcher.tick(now) {
            self.emit(Output::Sightings(batch)).await;
        }
    }

    /// Closes every open sighting and hands on the last batch. With `decide`, pending theft
    /// decisions whose window has passed by `now` are made (the end of a replay); at a live
    /// shutdown they are not, since a key may still have been on its way.
    async fn finish_tags(&mut self, now: Timestamp, decide: bool) {
        for s in self.dedup.flush() {
            self.on_sighting(s).await;
        }
        if decide {
            for a in self.tag_rules.tick(now) {
                self.on_tag_alert(&a).await;
            }
        }
        if let Some(batch) = self.batcher.flush() {
            self.emit(Output::Sightings(batch)).await;
        }
    }
}
