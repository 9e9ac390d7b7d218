//! [`Agent`]: the running pipeline of one box, built from the config and run; the decisions are
//! made in one task, the core (`core.rs`).
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

use protocol::alert::{Location, ModelRef};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tracing::info;

use super::alerts::AlertFactory;
use super::config::{AgentConfig, TagReaderConfig};
use super::core::{CameraState, Core, Health};
use crate::detect::pool::{DetectorPool, PoolCamera};
use crate::detect::{DetectError, DetectorOptions, Model};
use crate::frame::LatestFrame;
use crate::pipeline::{AgentStats, ApplyCommand, CameraStats, Output};
use crate::rules::{Engine, RulesError};
use crate::snapshot::FrameRing;
use crate::source::{AnySource, FrameSource, SourceError, SourceEvent};
use crate::tags::reader::system_clock;
use crate::tags::{
    Deduplicator, MqttReader, SightingBatcher, TagRead, TagRules, TcpReader, UdpReader,
};
use crate::track::Timestamp;

/// Replay: frames of one camera allowed between its source and the core.
pub const REPLAY_IN_FLIGHT: usize = 4;
/// Capacity of the tag-read channel.
const TAG_CAPACITY: usize = 1024;

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

/// The pipeline of one box, built and ready to run. See the module docs.
#[derive(Debug)]
pub struct Agent {
    config: AgentConfig,
    model: Arc<Model>,
    mode: Mode,
    stats: Arc<AgentStats>,
    cameras: Vec<CameraState>,
    sources: Vec<AnySource>,
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
            let source = if replay {
                camera.source.for_replay()?
            } else {
                camera.source.clone()
            };
            sources.push(AnySource::new(&source, shutdown.clone())?);
            let id: Arc<str> = Arc::from(camera.id.as_str());
            let slot = LatestFrame::new();
            let pool_camera = PoolCamera::new(id.clone(), slot.clone());
            let camera_stats = Arc::new(CameraStats::new(
                id.clone(),
                slot,
                pool_camera.counters.clone(),
            ));
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

fn random_salt() -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(system_clock())
}
