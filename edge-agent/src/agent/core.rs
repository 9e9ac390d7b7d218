//! The core: the single task where every decision is made. It takes the detector pool's
//! results, the cameras' health events, tag reads and hub commands, runs each camera's rule
//! engine and the tag rules, and hands alerts and sighting batches on as [`Output`]. Live, it
//! handles them in arrival order on wall-clock time; in a replay, in one deterministic order
//! by (time, camera index). See `runtime.rs` for the whole pipeline.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use protocol::Alert;
use protocol::command::CommandBody;
use tokio::sync::{Semaphore, mpsc, watch};
use tracing::{debug, error, info, warn};

use super::alerts::AlertFactory;
use super::config::AgentConfig;
use super::runtime::AgentError;
use crate::detect::pool::Detected;
use crate::frame::{Frame, RgbFrame};
use crate::pipeline::{AgentStats, ApplyCommand, CameraStats, Output};
use crate::rules::Engine;
use crate::snapshot::FrameRing;
use crate::source::SourceEvent;
use crate::tags::reader::system_clock;
use crate::tags::{Deduplicator, Sighting, SightingBatcher, TagRead, TagRules};
use crate::track::Timestamp;

/// Live: how often tag rules and sighting batches are ticked.
const TICK: Duration = Duration::from_millis(500);

/// What a camera's pump tells the core besides frames.
#[derive(Debug)]
pub(super) enum Health {
    Event(usize, SourceEvent),
    /// The source finished after delivering this many frames.
    Ended(usize, u64),
}

/// The core's view of one camera.
#[derive(Debug)]
pub(super) struct CameraState {
    pub(super) id: Arc<str>,
    pub(super) fps: f64,
    pub(super) readers: Vec<String>,
    pub(super) engine: Engine,
    pub(super) ring: Option<FrameRing>,
    pub(super) stats: Arc<CameraStats>,
    /// The next frame to handle (replay) or the lowest acceptable (live).
    pub(super) next_seq: u64,
    /// Replay: results that arrived before their turn.
    pub(super) pending: BTreeMap<u64, Detected>,
    /// The source finished after this many frames.
    pub(super) ended: Option<u64>,
    pub(super) permit: Option<Arc<Semaphore>>,
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
pub(super) struct Core<'a> {
    pub(super) config: &'a AgentConfig,
    pub(super) cameras: Vec<CameraState>,
    pub(super) factory: AlertFactory,
    pub(super) dedup: Deduplicator,
    pub(super) tag_rules: TagRules,
    pub(super) batcher: SightingBatcher,
    pub(super) out: mpsc::Sender<Output>,
    pub(super) stats: Arc<AgentStats>,
    pub(super) replay_start: Timestamp,
    /// Armed bikes' first-sighting frames, kept until their theft decision (by bike tag).
    pub(super) held: HashMap<String, HeldFrame>,
    /// How long a held frame may wait for its decision.
    pub(super) hold_ms: Timestamp,
    /// How long one theft decision can last after the bike's first sighting.
    pub(super) decision_ms: Timestamp,
}

/// A camera frame kept for a tag alert: camera, capture time, image.
type HeldFrame = (Arc<str>, Timestamp, Arc<RgbFrame>);

impl Core<'_> {
    pub(super) async fn live(
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

    pub(super) async fn replay(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::LatestFrame;
    use crate::rules::EngineConfig;

    fn camera(fps: f64) -> CameraState {
        let id: Arc<str> = Arc::from("cam");
        CameraState {
            id: id.clone(),
            fps,
            readers: Vec::new(),
            engine: Engine::new(&EngineConfig::default()).expect("default rules"),
            ring: None,
            stats: Arc::new(CameraStats::new(id, LatestFrame::new(), Arc::default())),
            next_seq: 0,
            pending: BTreeMap::new(),
            ended: None,
            permit: None,
        }
    }

    #[test]
    fn a_frames_media_time_is_the_one_its_source_stamped() {
        // The replay orders cameras by this time, so it must round as the sources' `pts_ms`
        // does (`seq · 1000 / fps`, to the nearest ms).
        let c = camera(5.0);
        assert_eq!([c.pts(0), c.pts(1), c.pts(7)], [0, 200, 1400]);
        let c = camera(3.0);
        assert_eq!([c.pts(1), c.pts(2), c.pts(3)], [333, 667, 1000]);
    }

    #[test]
    fn a_camera_is_finished_once_every_frame_its_source_delivered_is_handled() {
        let mut c = camera(5.0);
        c.next_seq = 10;
        assert!(
            !c.finished(),
            "a source that has not ended is never finished"
        );
        c.ended = Some(12);
        assert!(!c.finished(), "frames 10 and 11 are still to come");
        c.next_seq = 12;
        assert!(c.finished());
        c.ended = Some(0);
        c.next_seq = 0;
        assert!(
            c.finished(),
            "a source that delivered nothing is finished at once"
        );
    }
}
