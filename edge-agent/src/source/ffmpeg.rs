//! [`FfmpegSource`]: a camera (RTSP) or video file read through an `ffmpeg` child process.
//!
//! ffmpeg decodes, drops to the detection rate and scales in one pass
//! (`-vf fps=N,scale=W:-2`: keep the aspect ratio, even height), so the agent never decodes a
//! frame it will not analyse. Frames come back on stdout as a stream of binary PPM images
//! (`-f image2pipe -c:v ppm -pix_fmt rgb24`): RGB24 pixels, exactly like `-f rawvideo`, behind
//! a ~15-byte header `P6\n<w> <h>\n255\n`.
//!
//! Why PPM rather than headerless rawvideo plus an `ffprobe` for the height: every frame
//! carries its own size, so a camera that changes resolution, or a wrong guess about the
//! sample aspect ratio, cannot shift the frame boundaries; and there is no second connection
//! to the camera — many IP cameras allow only a handful of RTSP sessions, and a probe would
//! double the time to (re)connect. The price is parsing three numbers per frame.
//!
//! Lifecycle: the source starts ffmpeg on the first [`FrameSource::next_event`]. When ffmpeg
//! exits, fails to start, sends something that is not a frame, or sends nothing for
//! `stall_after_ms`, the source reports [`SourceEvent::Failed`] with the last 20 lines of
//! ffmpeg's stderr and retries after a jittered exponential back-off (reset by the next frame).
//! Independently, when no frame has arrived for `offline_after_ms` it reports
//! [`SourceEvent::Offline`] once, and [`SourceEvent::Online`] before the next frame. A file
//! that ends cleanly either finishes the source (replay) or starts again ([`AtEnd`]); for a
//! network stream an end is always a failure. The child is killed when the source is dropped
//! or shut down.

use std::collections::VecDeque;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::process::{Child, ChildStderr, ChildStdout, Command};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until, timeout};
use tracing::{debug, info};

use super::health::{CommonFields, Health, check_config, sleep_until_opt};
use super::{FrameSource, SourceCounters, SourceError, SourceEvent};
use crate::frame::RgbFrame;
use crate::secret::CameraUrl;

/// How many of ffmpeg's last stderr lines are kept for error messages.
const STDERR_LINES: usize = 20;
/// Largest frame height accepted from ffmpeg, so a garbled header cannot make us allocate
/// gigabytes.
const MAX_HEIGHT: u32 = 8192;

/// What a *file* source does when ffmpeg reaches the end of the file cleanly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AtEnd {
    /// The source ends (`next_event` returns `None`): replaying recorded footage.
    #[default]
    Finish,
    /// Start the file again at once: a file standing in for a live camera.
    Loop,
}

/// One ffmpeg-read camera.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FfmpegSourceConfig {
    /// The camera's id, used in events, errors and logs.
    pub camera: String,
    /// An `rtsp://` / `rtsps://` URL (read over TCP: interleaved RTP survives NAT and lossy
    /// links better than UDP), any other URL ffmpeg understands, or a file path. Prefer the
    /// camera's sub-stream: decoding is the main cost and the detector does not need 4K. A
    /// password in the URL (`rtsp://user:pass@host/…`) is shown redacted everywhere (logs,
    /// errors, alerts) and handed to ffmpeg only; ffmpeg's stderr is scrubbed of it.
    pub input: CameraUrl,
    /// Frames per second handed to the detector; ffmpeg drops the rest before scaling.
    pub fps: f64,
    /// Working width in pixels (even); the height follows the aspect ratio, rounded to even.
    /// Large enough for a useful snapshot, small enough to be cheap.
    pub width: u32,
    /// Read files at their native rate (`-re`), so a file behaves like a camera. `false` reads
    /// as fast as the machine allows (replay). Ignored for network streams.
    pub realtime: bool,
    /// What a file source does at its end.
    pub at_end: AtEnd,
    /// With no frame for this long, [`SourceEvent::Offline`] is raised (tampering detection).
    pub offline_after_ms: u64,
    /// With no frame from a running ffmpeg for this long, it is killed and restarted (a
    /// connection that stays up but carries nothing). Also bounds the first frame of each
    /// run, so it must exceed connect + stream probing time (a few seconds for RTSP), or the
    /// source would restart forever.
    pub stall_after_ms: u64,
    /// First retry delay after a failure; doubles per consecutive failure.
    pub backoff_min_ms: u64,
    /// Cap on the retry delay.
    pub backoff_max_ms: u64,
    /// The ffmpeg executable.
    pub ffmpeg: String,
}

impl Default for FfmpegSourceConfig {
    fn default() -> Self {
        Self {
            camera: String::new(),
            input: CameraUrl::default(),
            fps: 5.0,
            width: 640,
            realtime: true,
            at_end: AtEnd::Finish,
            offline_after_ms: 10_000,
            stall_after_ms: 15_000,
            backoff_min_ms: 500,
            backoff_max_ms: 30_000,
            ffmpeg: "ffmpeg".to_string(),
        }
    }
}

impl FfmpegSourceConfig {
    /// The fields every source shares.
    fn common(&self) -> CommonFields {
        CommonFields {
            camera: self.camera.clone(),
            fps: self.fps,
            width: self.width,
            offline_after_ms: self.offline_after_ms,
            backoff_min_ms: self.backoff_min_ms,
            backoff_max_ms: self.backoff_max_ms,
        }
    }

    /// Every problem with this configuration, each prefixed with its field path relative to
    /// the camera's table. Empty when usable.
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        self.common().validate(&mut errors);
        if self.input.expose().trim().is_empty() {
            errors.push("input: must not be empty".to_string());
        }
        if self.stall_after_ms == 0 {
            errors.push("stall_after_ms: must be at least 1".to_string());
        }
        if self.ffmpeg.trim().is_empty() {
            errors.push("ffmpeg: must not be empty".to_string());
        }
        errors
    }

    /// Whether `input` is a local file (an end of stream is then normal, and `-re` applies).
    pub fn is_file(&self) -> bool {
        let input = self.input.expose();
        input.starts_with("file:") || !input.contains("://")
    }

    fn is_rtsp(&self) -> bool {
        let lower = self.input.expose().to_ascii_lowercase();
        lower.starts_with("rtsp://") || lower.starts_with("rtsps://")
    }

    /// The ffmpeg command line, without the program name. It holds the input's password:
    /// never log it.
    pub fn args(&self) -> Vec<String> {
        let mut args: Vec<String> = ["-nostdin", "-hide_banner", "-loglevel", "error"]
            .map(String::from)
            .to_vec();
        if self.is_rtsp() {
            args.extend(["-rtsp_transport".into(), "tcp".into()]);
        }
        if self.is_file() && self.realtime {
            args.push("-re".into());
        }
        // The one place the password leaves the config: ffmpeg has no other way to take RTSP
        // credentials. Other users cannot read the command line (systemd ProtectProc=invisible).
        args.extend(["-i".into(), self.input.expose().to_owned()]);
        // Only video: no audio, subtitle or data decoding.
        args.extend(["-an", "-sn", "-dn"].map(String::from));
        args.extend([
            "-vf".into(),
            format!("fps={},scale={}:-2", self.fps, self.width),
        ]);
        args.extend(
            [
                "-f",
                "image2pipe",
                "-c:v",
                "ppm",
                "-pix_fmt",
                "rgb24",
                "pipe:1",
            ]
            .map(String::from),
        );
        args
    }
}

/// One running ffmpeg process and the tasks draining its pipes.
#[derive(Debug)]
struct Run {
    child: Child,
    frames: mpsc::Receiver<Result<RgbFrame, String>>,
    stderr: Arc<Mutex<VecDeque<String>>>,
    stderr_task: JoinHandle<()>,
    reader_task: JoinHandle<()>,
    /// When this run started or last delivered a frame (for stall detection).
    last_progress: Instant,
}

impl Run {
    fn stderr_tail(&self) -> String {
        let ring = self.stderr.lock().unwrap_or_else(|e| e.into_inner());
        if ring.is_empty() {
            "(none)".to_string()
        } else {
            ring.iter().cloned().collect::<Vec<_>>().join(" | ")
        }
    }

    /// Waits for the process to exit (killing it if it lingers) and for its stderr to drain;
    /// returns the exit status as text and the stderr tail.
    async fn finish(mut self: Box<Self>, kill: bool) -> (String, String) {
        if kill {
            // Already exited is fine: wait() below reports the status.
            let _ = self.child.start_kill();
        }
        let status = match timeout(Duration::from_secs(5), self.child.wait()).await {
            Ok(Ok(status)) => status.to_string(),
            Ok(Err(e)) => format!("status unknown ({e})"),
            Err(_) => {
                let _ = self.child.start_kill();
                let _ = self.child.wait().await;
                "did not exit within 5 s of closing its output; killed".to_string()
            }
        };
        // The last lines are the useful ones; give the drain a moment to catch them.
        let _ = timeout(Duration::from_secs(1), &mut self.stderr_task).await;
        let stderr = self.stderr_tail();
        (status, stderr)
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        // The child itself is killed by `kill_on_drop`.
        self.stderr_task.abort();
        self.reader_task.abort();
    }
}

#[derive(Debug)]
enum State {
    /// Not running; (re)start at this instant.
    Waiting {
        until: Instant,
    },
    Running(Box<Run>),
    Finished,
}

/// What woke the source up.
enum Wake {
    Shutdown,
    Offline,
    Start,
    Stalled,
    Frame(RgbFrame),
    BadFrame(String),
    Eof,
}

/// A camera or file read through an `ffmpeg` child process; see the module docs.
#[derive(Debug)]
pub struct FfmpegSource {
    config: FfmpegSourceConfig,
    camera: Arc<str>,
    shutdown: watch::Receiver<bool>,
    state: State,
    /// Frame numbering, back-off, offline/online bookkeeping and counters (shared with the
    /// HTTP and directory sources).
    health: Health,
}

impl FfmpegSource {
    /// A source for `config` that stops when `shutdown` becomes `true` (or its sender is
    /// dropped). Nothing is started until the first [`FrameSource::next_event`].
    pub fn new(
        config: FfmpegSourceConfig,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Self, SourceError> {
        check_config(&config.camera, config.validate())?;
        let health = config.common().health();
        Ok(Self {
            camera: health.camera().clone(),
            health,
            config,
            shutdown,
            state: State::Waiting {
                until: Instant::now(),
            },
        })
    }

    pub fn config(&self) -> &FfmpegSourceConfig {
        &self.config
    }

    /// The last failure, as text (with ffmpeg's stderr), until a frame arrives.
    pub fn last_error(&self) -> Option<&str> {
        self.health.last_error()
    }

    /// The source's counters, shared: read them while the source runs.
    pub fn counters(&self) -> Arc<SourceCounters> {
        self.health.counters().clone()
    }

    fn shutting_down(&self) -> bool {
        *self.shutdown.borrow() || self.shutdown.has_changed().is_err()
    }

    /// Kills ffmpeg, if running, and finishes the source.
    pub async fn stop(&mut self) {
        if let State::Running(run) = std::mem::replace(&mut self.state, State::Finished) {
            let _ = run.finish(true).await;
        }
    }

    fn spawn(&self) -> Result<Run, SourceError> {
        let spawn_error = |source: std::io::Error| SourceError::Spawn {
            camera: self.camera.clone(),
            program: self.config.ffmpeg.clone(),
            source,
        };
        let mut child = Command::new(&self.config.ffmpeg)
            .args(self.config.args())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(spawn_error)?;
        let (Some(stdout), Some(stderr_pipe)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(spawn_error(std::io::Error::other(
                "missing stdout/stderr pipe",
            )));
        };
        let stderr = Arc::new(Mutex::new(VecDeque::with_capacity(STDERR_LINES)));
        let stderr_task = tokio::spawn(keep_stderr(
            stderr_pipe,
            stderr.clone(),
            self.camera.clone(),
            self.config.input.clone(),
        ));
        // Capacity 1: ffmpeg gets back-pressure through its stdout pipe if we fall behind,
        // and frames are dropped downstream, in the latest-frame slot, not here.
        let (tx, frames) = mpsc::channel(1);
        let reader_task = tokio::spawn(read_frames(stdout, tx, self.config.width));
        info!(
            message = "Started ffmpeg.",
            camera = %self.camera,
            input = %self.config.input,
            pid = child.id()
        );
        Ok(Run {
            child,
            frames,
            stderr,
            stderr_task,
            reader_task,
            last_progress: Instant::now(),
        })
    }

    /// Records a failure and schedules the retry (jittered exponential back-off).
    fn fail(&mut self, error: SourceError) -> SourceEvent {
        let (event, until) = self.health.fail(error);
        self.state = State::Waiting { until };
        event
    }

    fn go_offline(&mut self) -> SourceEvent {
        let quiet = format!(
            "no frame for {} ms (source still connected)",
            self.config.offline_after_ms
        );
        self.health.go_offline(&quiet)
    }

    fn on_frame(&mut self, image: RgbFrame) -> SourceEvent {
        if let State::Running(run) = &mut self.state {
            run.last_progress = Instant::now();
        }
        self.health.on_frame(image)
    }

    async fn wait(&mut self) -> Option<Wake> {
        let offline_at = self.health.offline_at();
        let stall_after = Duration::from_millis(self.config.stall_after_ms);
        let shutdown = &mut self.shutdown;
        let wake = match &mut self.state {
            State::Finished => return None,
            State::Waiting { until } => {
                let until = *until;
                tokio::select! {
                    biased;
                    _ = shutdown.changed() => Wake::Shutdown,
                    () = sleep_until_opt(offline_at) => Wake::Offline,
                    () = sleep_until(until) => Wake::Start,
                }
            }
            State::Running(run) => {
                let stall_at = run.last_progress + stall_after;
                tokio::select! {
                    biased;
                    _ = shutdown.changed() => Wake::Shutdown,
                    () = sleep_until_opt(offline_at) => Wake::Offline,
                    () = sleep_until(stall_at) => Wake::Stalled,
                    msg = run.frames.recv() => match msg {
                        Some(Ok(image)) => Wake::Frame(image),
                        Some(Err(reason)) => Wake::BadFrame(reason),
                        None => Wake::Eof,
                    },
                }
            }
        };
        Some(wake)
    }

    fn take_run(&mut self) -> Option<Box<Run>> {
        match std::mem::replace(&mut self.state, State::Finished) {
            State::Running(run) => Some(run),
            other => {
                self.state = other;
                None
            }
        }
    }
}

impl FrameSource for FfmpegSource {
    fn camera(&self) -> &str {
        &self.camera
    }

    async fn next_event(&mut self) -> Option<SourceEvent> {
        loop {
            if self.shutting_down() {
                self.stop().await;
                return None;
            }
            if let Some(event) = self.health.take_pending() {
                return Some(event);
            }
            // A changed-but-false shutdown value just loops back to the check above.
            match self.wait().await? {
                Wake::Shutdown => {}
                Wake::Offline => return Some(self.go_offline()),
                Wake::Start => match self.spawn() {
                    Ok(run) => self.state = State::Running(Box::new(run)),
                    Err(error) => return Some(self.fail(error)),
                },
                Wake::Frame(image) => return Some(self.on_frame(image)),
                Wake::Stalled => {
                    if let Some(run) = self.take_run() {
                        let _ = run.finish(true).await;
                    }
                    let error = SourceError::Stalled {
                        camera: self.camera.clone(),
                        waited_ms: self.config.stall_after_ms,
                    };
                    return Some(self.fail(error));
                }
                Wake::BadFrame(reason) => {
                    let stderr = match self.take_run() {
                        Some(run) => run.finish(true).await.1,
                        None => "(none)".to_string(),
                    };
                    let error = SourceError::BadFrame {
                        camera: self.camera.clone(),
                        reason,
                        stderr,
                    };
                    return Some(self.fail(error));
                }
                Wake::Eof => {
                    let Some(run) = self.take_run() else {
                        continue;
                    };
                    let (status, stderr) = run.finish(false).await;
                    let clean = status == "exit status: 0";
                    if clean && self.config.is_file() {
                        match self.config.at_end {
                            AtEnd::Finish => {
                                info!(message = "File source finished.", camera = %self.camera);
                                self.state = State::Finished;
                                return None;
                            }
                            AtEnd::Loop => {
                                debug!(message = "File source looping.", camera = %self.camera);
                                self.state = State::Waiting {
                                    until: Instant::now(),
                                };
                                continue;
                            }
                        }
                    }
                    let error = SourceError::Exited {
                        camera: self.camera.clone(),
                        status,
                        stderr,
                    };
                    return Some(self.fail(error));
                }
            }
        }
    }
}

/// Drains ffmpeg's stderr into a ring of its last lines (a full pipe would block ffmpeg).
/// ffmpeg quotes its input URL in errors (`rtsp://user:pass@host/x: Connection refused`), so
/// each line is scrubbed of the password before it is logged or kept: the ring becomes the
/// source's error, and that the camera-offline alert's detail every operator reads.
async fn keep_stderr(
    pipe: ChildStderr,
    ring: Arc<Mutex<VecDeque<String>>>,
    camera: Arc<str>,
    input: CameraUrl,
) {
    let mut reader = BufReader::new(pipe);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let line = input.scrub(String::from_utf8_lossy(&buf).trim_end());
        if line.is_empty() {
            continue;
        }
        debug!(message = "ffmpeg stderr.", camera = %camera, %line);
        let mut ring = ring.lock().unwrap_or_else(|e| e.into_inner());
        if ring.len() == STDERR_LINES {
            ring.pop_front();
        }
        ring.push_back(line);
    }
}

/// Reads PPM frames from ffmpeg's stdout until it closes or sends something else.
async fn read_frames(stdout: ChildStdout, tx: mpsc::Sender<Result<RgbFrame, String>>, width: u32) {
    let mut reader = BufReader::with_capacity(1 << 16, stdout);
    loop {
        let msg = match read_ppm(&mut reader, width).await {
            Ok(Some(frame)) => Ok(frame),
            // A clean end, or a frame cut short because ffmpeg died: its exit status and
            // stderr say more than "truncated frame" would.
            Ok(None) => return,
            Err(reason) => Err(reason),
        };
        let last = msg.is_err();
        if tx.send(msg).await.is_err() || last {
            return;
        }
    }
}

/// Reads one binary PPM (`P6`) image of the expected `width`. `Ok(None)` at end of stream,
/// including a frame cut short; `Err` for anything that is not such an image.
async fn read_ppm<R: AsyncRead + Unpin>(
    r: &mut BufReader<R>,
    width: u32,
) -> Result<Option<RgbFrame>, String> {
    let mut magic = [0u8; 2];
    match r.read_exact(&mut magic).await {
        Ok(_) => {}
        Err(_) => return Ok(None),
    }
    if &magic != b"P6" {
        return Err(format!("expected a PPM header, got bytes {magic:02x?}"));
    }
    let mut fields = [0u32; 3];
    for field in &mut fields {
        match read_header_number(r).await? {
            Some(v) => *field = v,
            None => return Ok(None),
        }
    }
    let [w, h, maxval] = fields;
    if w != width || h == 0 || h > MAX_HEIGHT || maxval != 255 {
        return Err(format!(
            "unexpected frame header {w}x{h} maxval {maxval} (expected width {width}, \
             height 1..={MAX_HEIGHT}, maxval 255)"
        ));
    }
    let mut frame = RgbFrame::default();
    let buf = frame.reshape(w, h);
    match r.read_exact(buf).await {
        Ok(_) => Ok(Some(frame)),
        Err(_) => Ok(None),
    }
}

/// Reads a decimal header field, skipping whitespace and `#` comments before it, and the one
/// whitespace byte after it. `Ok(None)` at end of stream.
async fn read_header_number<R: AsyncRead + Unpin>(
    r: &mut BufReader<R>,
) -> Result<Option<u32>, String> {
    let mut value: Option<u32> = None;
    let mut in_comment = false;
    loop {
        let Ok(b) = r.read_u8().await else {
            return Ok(None);
        };
        if in_comment {
            in_comment = b != b'\n';
            continue;
        }
        match (b, value) {
            (b'0'..=b'9', v) => {
                let v = v
                    .unwrap_or(0)
                    .checked_mul(10)
                    .and_then(|v| v.checked_add(u32::from(b - b'0')))
                    .ok_or("PPM header number overflows")?;
                value = Some(v);
            }
            (b'#', None) => in_comment = true,
            (b' ' | b'\t' | b'\n' | b'\r', None) => {}
            (b' ' | b'\t' | b'\n' | b'\r', Some(v)) => return Ok(Some(v)),
            (other, _) => {
                return Err(format!("unexpected byte {other:#04x} in PPM header"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(input: &str) -> FfmpegSourceConfig {
        FfmpegSourceConfig {
            camera: "cam1".into(),
            input: input.into(),
            ..FfmpegSourceConfig::default()
        }
    }

    #[test]
    fn rtsp_is_read_over_tcp_and_never_with_re() {
        let args = config("rtsp://10.0.0.5:554/sub").args();
        let i = args.iter().position(|a| a == "-i").unwrap();
        let t = args.iter().position(|a| a == "-rtsp_transport").unwrap();
        assert!(t < i && args[t + 1] == "tcp", "{args:?}");
        assert!(!args.contains(&"-re".to_string()), "{args:?}");
    }

    #[test]
    fn a_realtime_file_is_read_at_native_rate_and_a_replay_is_not() {
        let mut c = config("/videos/a.avi");
        assert!(c.args().contains(&"-re".to_string()));
        c.realtime = false;
        let args = c.args();
        assert!(!args.contains(&"-re".to_string()));
        assert!(!args.contains(&"-rtsp_transport".to_string()));
        let vf = args.iter().position(|a| a == "-vf").unwrap();
        assert_eq!(args[vf + 1], "fps=5,scale=640:-2");
        for flag in ["-nostdin", "-hide_banner", "-loglevel"] {
            assert!(args.contains(&flag.to_string()), "{flag} missing: {args:?}");
        }
    }

    #[test]
    fn validation_lists_every_problem_with_its_path() {
        let c = FfmpegSourceConfig {
            fps: 0.0,
            width: 641,
            offline_after_ms: 0,
            backoff_min_ms: 1000,
            backoff_max_ms: 10,
            ..FfmpegSourceConfig::default()
        };
        let errors = c.validate();
        for path in [
            "camera:",
            "input:",
            "fps:",
            "width:",
            "offline_after_ms:",
            "backoff_max_ms:",
        ] {
            assert!(
                errors.iter().any(|e| e.starts_with(path)),
                "no error for {path} in {errors:#?}"
            );
        }
        assert_eq!(errors.len(), 6, "{errors:#?}");
        assert_eq!(config("a.avi").validate(), Vec::<String>::new());
    }

    #[test]
    fn unknown_config_keys_are_rejected() {
        let err = serde_json::from_str::<FfmpegSourceConfig>(
            r#"{"camera": "c", "input": "a.avi", "fsp": 5}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("fsp"), "{err}");
        let ok: FfmpegSourceConfig =
            serde_json::from_str(r#"{"camera": "c", "input": "a.avi", "at_end": "loop"}"#).unwrap();
        assert_eq!(ok.at_end, AtEnd::Loop);
    }

    #[tokio::test]
    async fn failures_back_off_exponentially_within_bounds() {
        let (_tx, rx) = watch::channel(false);
        let mut c = config("a.avi");
        c.backoff_min_ms = 100;
        c.backoff_max_ms = 1_000;
        let mut s = FfmpegSource::new(c, rx).unwrap();
        // The jitter itself is tested with the shared helper (health.rs).
        for base in [100, 200, 400, 800, 1000, 1000, 1000, 1000] {
            let error = SourceError::Stalled {
                camera: Arc::from("cam1"),
                waited_ms: 1,
            };
            let SourceEvent::Failed { retry_in_ms, .. } = s.fail(error) else {
                panic!("expected Failed");
            };
            assert!(
                retry_in_ms >= base / 2 && retry_in_ms <= base,
                "{retry_in_ms} for base {base}"
            );
        }
        assert_eq!(s.counters().stats().failures, 8);
    }

    #[tokio::test]
    async fn ppm_frames_are_parsed_and_garbage_is_refused() {
        let mut bytes = b"P6\n4 2\n255\n".to_vec();
        bytes.extend((0..24).map(|i| i as u8));
        bytes.extend(b"P6 # comment\n4 2 255\n");
        bytes.extend([7u8; 24]);
        bytes.extend(b"P6\n4 2\n255\n123"); // cut short
        let mut r = BufReader::new(&bytes[..]);
        let a = read_ppm(&mut r, 4).await.unwrap().unwrap();
        assert_eq!((a.width, a.height, a.data[23]), (4, 2, 23));
        let b = read_ppm(&mut r, 4).await.unwrap().unwrap();
        assert_eq!(b.data, vec![7u8; 24]);
        assert!(read_ppm(&mut r, 4).await.unwrap().is_none());

        let mut r = BufReader::new(&b"RIFFxxxx"[..]);
        assert!(read_ppm(&mut r, 4).await.is_err());
        let mut r = BufReader::new(&b"P6\n8 2\n255\n"[..]);
        let err = read_ppm(&mut r, 4).await.unwrap_err();
        assert!(err.contains("8x2"), "{err}");
        let mut r = BufReader::new(&b"P6\n4 99999999\n255\n"[..]);
        assert!(read_ppm(&mut r, 4).await.is_err());
    }
}
