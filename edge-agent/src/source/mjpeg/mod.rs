//! [`MjpegSource`]: a camera's HTTP MJPEG stream (`multipart/x-mixed-replace`), one JPEG per
//! part, sampled down to the detection fps.
//!
//! The body is parsed incrementally as it arrives ([`MultipartParser`]): a part's
//! `Content-Length` is used when present (no scanning of JPEG data), otherwise the part ends at
//! the next boundary line. Parts are bounded by `max_part_bytes`: a larger one is refused by
//! number and size, and skipped without being buffered. Cameras send 10–30 parts a second while
//! the detector wants a few, so excess parts are dropped as soon as they are complete, *before*
//! decoding — decoding is the expensive step — and counted in
//! [`SourceStats::dropped`](super::SourceStats::dropped); the kept ones follow a fixed time
//! grid at `1/fps` so jitter does not halve the rate.
//!
//! Failures: connecting (refused, timeout, non-200, not multipart, authentication — the same
//! Basic/Digest handling as the snapshot source), the stream ending (cleanly or cut mid-part),
//! no complete part for `stall_after_ms`, or `failures_before_backoff` bad parts in a row each
//! end the connection with a [`SourceEvent::Failed`] and reconnect after a jittered
//! exponential back-off. A single bad part (not a JPEG, oversized) is skipped and counted.
//! Offline/online as for every source (`source/mod.rs`).
//!
//! Camera quirks handled: a `boundary` parameter that already starts with `--` (the body then
//! uses it as is), a quoted boundary, a missing `boundary` parameter (learned from the first
//! `--…` line of the body), bare `\n` line ends, and a missing final boundary.
//!
//! Files: `parser.rs` (the multipart parser, pure), `sampler.rs` (which parts are kept), and
//! this file, the config and the source.

mod parser;
mod sampler;

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;
use serde::Deserialize;
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until, timeout};
use tracing::info;

pub(crate) use parser::boundary;
pub use parser::{MultipartParser, Parsed, Part};
use sampler::Sampler;

use super::health::{
    CommonFields, FrameError, FrameMaker, Health, check_config, head, sleep_until_opt,
};
use super::http::{
    AuthMode, CameraClient, HttpError, Secret, describe, is_jpeg_type, validate_http,
};
use super::{FrameSource, SourceCounters, SourceError, SourceEvent};

/// What went wrong with an MJPEG stream or one of its parts.
#[derive(Debug, thiserror::Error)]
pub enum MjpegError {
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("content type {content_type:?} is not multipart/x-mixed-replace; body starts {head}")]
    NotMultipart { content_type: String, head: String },
    #[error("no multipart boundary line within the first {searched} bytes")]
    NoBoundary { searched: usize },
    #[error("part {index}: headers longer than {limit} bytes")]
    HeadersTooLong { index: u64, limit: usize },
    #[error("part {index}: Content-Length {size} is over max_part_bytes {limit}; skipped")]
    PartTooLarge { index: u64, size: u64, limit: u64 },
    #[error("part {index}: no boundary within max_part_bytes ({limit}); skipped")]
    PartUnbounded { index: u64, limit: u64 },
    #[error("part {index}: content type {content_type:?}, expected image/jpeg; starts {head}")]
    PartType {
        index: u64,
        content_type: String,
        head: String,
    },
    #[error("part {index}: not a usable JPEG ({error}); {len} bytes starting {head}")]
    Image {
        index: u64,
        error: FrameError,
        len: usize,
        head: String,
    },
    #[error("the camera ended the stream ({how})")]
    Ended { how: &'static str },
    #[error("no complete part for {ms} ms")]
    Stalled { ms: u64 },
    #[error("reading the stream failed: {0}")]
    Read(String),
}

impl MjpegError {
    /// Whether this spoils one part only, as opposed to the connection.
    pub fn is_bad_image(&self) -> bool {
        matches!(
            self,
            MjpegError::PartTooLarge { .. }
                | MjpegError::PartUnbounded { .. }
                | MjpegError::PartType { .. }
                | MjpegError::Image { .. }
        )
    }
}

/// One camera read from its HTTP MJPEG stream.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MjpegSourceConfig {
    /// The camera's id, used in events, errors and logs.
    pub camera: String,
    /// The stream URL, `http://` only, without credentials, e.g.
    /// `http://10.0.0.7/axis-cgi/mjpg/video.cgi` or
    /// `http://10.0.0.6/cgi-bin/mjpg/video.cgi?channel=1&subtype=1` (Dahua).
    pub url: String,
    /// User name; empty for a camera without authentication.
    pub username: String,
    /// Password; never logged or shown by `Debug`.
    pub password: Secret,
    /// How to authenticate when `username` is set.
    pub auth: AuthMode,
    /// Frames per second handed to the detector; parts arriving faster are dropped before
    /// decoding.
    pub fps: f64,
    /// Working width in pixels (even); wider frames are scaled down keeping the aspect ratio
    /// (even height), narrower ones are kept as they are.
    pub width: u32,
    /// Bound on connecting and receiving the response headers.
    pub connect_timeout_ms: u64,
    /// With no complete part for this long, the connection is dropped and reopened (a stream
    /// that stays connected but carries nothing).
    pub stall_after_ms: u64,
    /// Largest accepted part; a larger one is skipped without being buffered.
    pub max_part_bytes: u64,
    /// Bad parts in a row (not a JPEG, oversized) after which the connection is considered
    /// broken and reopened with back-off.
    pub failures_before_backoff: u32,
    /// With no frame for this long, [`SourceEvent::Offline`] is raised.
    pub offline_after_ms: u64,
    /// First retry delay after a failure; doubles per consecutive failure.
    pub backoff_min_ms: u64,
    /// Cap on the retry delay.
    pub backoff_max_ms: u64,
}

impl Default for MjpegSourceConfig {
    fn default() -> Self {
        Self {
            camera: String::new(),
            url: String::new(),
            username: String::new(),
            password: Secret::default(),
            auth: AuthMode::Auto,
            fps: 5.0,
            width: 640,
            connect_timeout_ms: 5_000,
            stall_after_ms: 5_000,
            max_part_bytes: 8 << 20,
            failures_before_backoff: 5,
            offline_after_ms: 10_000,
            backoff_min_ms: 500,
            backoff_max_ms: 30_000,
        }
    }
}

impl MjpegSourceConfig {
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
        validate_http(
            &self.url,
            &self.username,
            &self.password,
            self.auth,
            &mut errors,
        );
        for (field, v) in [
            ("connect_timeout_ms", self.connect_timeout_ms),
            ("stall_after_ms", self.stall_after_ms),
        ] {
            if v == 0 {
                errors.push(format!("{field}: must be at least 1"));
            }
        }
        if self.max_part_bytes < 1024 {
            errors.push(format!(
                "max_part_bytes: must be at least 1024, got {}",
                self.max_part_bytes
            ));
        }
        if self.failures_before_backoff == 0 {
            errors.push("failures_before_backoff: must be at least 1".to_string());
        }
        errors
    }
}

/// One open stream.
#[derive(Debug)]
struct Stream {
    response: reqwest::Response,
    parser: MultipartParser,
    /// When the stream opened or last completed a part (for stall detection).
    last_part_at: Instant,
}

impl Stream {
    /// The next parsed part. Cancel-safe: the only await is `chunk()`, and its bytes are
    /// pushed into the parser before anything else can happen.
    async fn next(&mut self) -> Result<Parsed, MjpegError> {
        loop {
            if let Some(parsed) = self.parser.next()? {
                return Ok(parsed);
            }
            if self.parser.is_closed() {
                return Err(MjpegError::Ended {
                    how: "final boundary",
                });
            }
            match self.response.chunk().await {
                Ok(Some(chunk)) => self.parser.push(&chunk),
                Ok(None) => {
                    return Err(MjpegError::Ended {
                        how: "connection closed",
                    });
                }
                Err(e) => return Err(MjpegError::Read(describe(&e))),
            }
        }
    }
}

/// Opens the stream: a 200 with a multipart content type.
async fn connect(client: &mut CameraClient, max_part: usize) -> Result<Stream, MjpegError> {
    let mut response = client.get().await?;
    let status = response.status();
    if status != StatusCode::OK {
        let head = head(&CameraClient::body_head(&mut response, 64).await);
        return Err(HttpError::Status {
            status: status.to_string(),
            head,
        }
        .into());
    }
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    if !content_type
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("multipart/")
    {
        let head = head(&CameraClient::body_head(&mut response, 64).await);
        return Err(MjpegError::NotMultipart { content_type, head });
    }
    let boundary = boundary(&content_type);
    Ok(Stream {
        response,
        parser: MultipartParser::new(boundary.as_deref(), max_part),
        last_part_at: Instant::now(),
    })
}

#[derive(Debug)]
enum Conn {
    /// Not connected; (re)connect at this instant.
    Waiting {
        until: Instant,
    },
    Open(Box<Stream>),
}

enum Wake {
    Shutdown,
    Offline,
    Connect,
    Stalled,
    Parsed(Result<Parsed, MjpegError>),
}

/// A camera's MJPEG stream, sampled down to the detection fps; see the module docs.
#[derive(Debug)]
pub struct MjpegSource {
    config: MjpegSourceConfig,
    client: CameraClient,
    health: Health,
    maker: FrameMaker,
    sampler: Sampler,
    shutdown: watch::Receiver<bool>,
    conn: Conn,
}

impl MjpegSource {
    /// A source for `config` that stops when `shutdown` becomes `true` (or its sender is
    /// dropped). Nothing is opened until the first [`FrameSource::next_event`].
    pub fn new(
        config: MjpegSourceConfig,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Self, SourceError> {
        check_config(&config.camera, config.validate())?;
        let client = CameraClient::for_camera(
            &config.camera,
            &config.url,
            &config.username,
            &config.password,
            config.auth,
            Duration::from_millis(config.connect_timeout_ms),
        )?;
        let (health, maker) = config.common().parts();
        Ok(Self {
            health,
            maker,
            sampler: Sampler::new(config.fps),
            client,
            shutdown,
            conn: Conn::Waiting {
                until: Instant::now(),
            },
            config,
        })
    }

    pub fn config(&self) -> &MjpegSourceConfig {
        &self.config
    }

    /// The source's counters, shared: read them while the source runs.
    pub fn counters(&self) -> Arc<SourceCounters> {
        self.health.counters().clone()
    }

    /// The last failure or bad part, as text, until a good frame arrives.
    pub fn last_error(&self) -> Option<&str> {
        self.health.last_error()
    }

    fn shutting_down(&self) -> bool {
        *self.shutdown.borrow() || self.shutdown.has_changed().is_err()
    }

    fn error(&self, error: MjpegError) -> SourceError {
        SourceError::Mjpeg {
            camera: self.health.camera().clone(),
            url: self.config.url.clone(),
            error: Box::new(error),
        }
    }

    fn quiet(&self) -> String {
        format!(
            "no frame for {} ms (stream still connected)",
            self.config.offline_after_ms
        )
    }

    /// Drops the connection and reports the failure.
    fn fail(&mut self, error: MjpegError) -> SourceEvent {
        let error = self.error(error);
        let (event, until) = self.health.fail(error);
        self.conn = Conn::Waiting { until };
        event
    }

    /// A bad part: skipped and counted, or the end of the connection if too many in a row.
    fn bad_part(&mut self, error: MjpegError) -> Option<SourceEvent> {
        let error = self.error(error);
        if self.health.skip_bad(&error) < self.config.failures_before_backoff {
            return None;
        }
        let (event, until) = self.health.fail(error);
        self.conn = Conn::Waiting { until };
        Some(event)
    }

    /// A complete part: dropped by the sampler, or decoded into a frame.
    fn on_part(&mut self, part: Part) -> Option<SourceEvent> {
        if !self.sampler.accept(Instant::now()) {
            self.health.counters().add_dropped();
            return None;
        }
        if let Some(ct) = &part.content_type
            && !is_jpeg_type(ct)
        {
            return self.bad_part(MjpegError::PartType {
                index: part.index,
                content_type: ct.clone(),
                head: head(&part.body),
            });
        }
        match self.maker.make(&part.body) {
            Ok(image) => Some(self.health.on_frame(image)),
            Err(error) => self.bad_part(MjpegError::Image {
                index: part.index,
                error,
                len: part.body.len(),
                head: head(&part.body),
            }),
        }
    }
}

impl FrameSource for MjpegSource {
    fn camera(&self) -> &str {
        self.health.camera()
    }

    async fn next_event(&mut self) -> Option<SourceEvent> {
        let stall_after = Duration::from_millis(self.config.stall_after_ms);
        let connect_timeout = Duration::from_millis(self.config.connect_timeout_ms);
        let max_part = usize::try_from(self.config.max_part_bytes).unwrap_or(usize::MAX);
        loop {
            if self.shutting_down() {
                self.conn = Conn::Waiting {
                    until: Instant::now(),
                };
                return None;
            }
            if let Some(event) = self.health.take_pending() {
                return Some(event);
            }
            let offline_at = self.health.offline_at();
            let wake = match &mut self.conn {
                Conn::Waiting { until } => {
                    let until = *until;
                    tokio::select! {
                        biased;
                        _ = self.shutdown.changed() => Wake::Shutdown,
                        () = sleep_until_opt(offline_at) => Wake::Offline,
                        () = sleep_until(until) => Wake::Connect,
                    }
                }
                Conn::Open(stream) => {
                    let stall_at = stream.last_part_at + stall_after;
                    tokio::select! {
                        biased;
                        _ = self.shutdown.changed() => Wake::Shutdown,
                        () = sleep_until_opt(offline_at) => Wake::Offline,
                        () = sleep_until(stall_at) => Wake::Stalled,
                        parsed = stream.next() => Wake::Parsed(parsed),
                    }
                }
            };
            match wake {
                // A changed-but-false value loops back to the check above.
                Wake::Shutdown => {}
                Wake::Offline => return Some(self.health.go_offline(&self.quiet())),
                Wake::Connect => {
                    // Offline is watched while connecting too; if it fires, the attempt is
                    // abandoned and the next call retries at once.
                    let opened = tokio::select! {
                        biased;
                        _ = self.shutdown.changed() => continue,
                        () = sleep_until_opt(offline_at) => None,
                        r = timeout(connect_timeout, connect(&mut self.client, max_part)) => Some(r),
                    };
                    match opened {
                        None => return Some(self.health.go_offline(&self.quiet())),
                        Some(Ok(Ok(stream))) => {
                            info!(
                                message = "MJPEG stream open.",
                                camera = %self.health.camera(),
                                url = %self.config.url
                            );
                            self.conn = Conn::Open(Box::new(stream));
                        }
                        Some(Ok(Err(error))) => return Some(self.fail(error)),
                        Some(Err(_)) => {
                            let error = HttpError::Timeout {
                                ms: self.config.connect_timeout_ms,
                            };
                            return Some(self.fail(error.into()));
                        }
                    }
                }
                Wake::Stalled => {
                    let error = MjpegError::Stalled {
                        ms: self.config.stall_after_ms,
                    };
                    return Some(self.fail(error));
                }
                Wake::Parsed(Err(error)) => return Some(self.fail(error)),
                Wake::Parsed(Ok(parsed)) => {
                    if let Conn::Open(stream) = &mut self.conn {
                        stream.last_part_at = Instant::now();
                    }
                    let event = match parsed {
                        Parsed::Part(part) => self.on_part(part),
                        Parsed::Oversized { index, declared } => {
                            let limit = self.config.max_part_bytes;
                            self.bad_part(match declared {
                                Some(size) => MjpegError::PartTooLarge { index, size, limit },
                                None => MjpegError::PartUnbounded { index, limit },
                            })
                        }
                    };
                    if let Some(event) = event {
                        return Some(event);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_lists_every_problem_with_its_path() {
        let c = MjpegSourceConfig {
            url: "https://cam/x".into(),
            stall_after_ms: 0,
            max_part_bytes: 10,
            ..MjpegSourceConfig::default()
        };
        let errors = c.validate();
        for path in ["camera:", "url:", "stall_after_ms:", "max_part_bytes:"] {
            assert!(
                errors.iter().any(|e| e.starts_with(path)),
                "no error for {path} in {errors:#?}"
            );
        }
        assert_eq!(errors.len(), 4, "{errors:#?}");
        let err =
            serde_json::from_str::<MjpegSourceConfig>(r#"{"camera": "c", "fsp": 5}"#).unwrap_err();
        assert!(err.to_string().contains("fsp"), "{err}");
    }
}
