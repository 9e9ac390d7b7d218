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

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;
use serde::Deserialize;
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until, timeout};
use tracing::info;

use super::health::{CommonFields, FrameError, FrameMaker, Health, head, sleep_until_opt};
use super::http::{
    AuthMode, CameraClient, HttpError, Secret, describe, is_jpeg_type, validate_http,
};
use super::{FrameSource, SourceCounters, SourceError, SourceEvent};

/// Longest header block of one part.
const MAX_HEADER_BYTES: usize = 8 * 1024;
/// How far into the body the first boundary line must appear.
const MAX_PREAMBLE_BYTES: usize = 64 * 1024;

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

// ---------------------------------------------------------------------------------------------
// Multipart parsing (pure)

/// One complete part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// 1 for the first part of the connection.
    pub index: u64,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

/// What the parser found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Part(Part),
    /// A part over the limit, being skipped: `declared` is its `Content-Length`, or `None`
    /// when no boundary came within the limit.
    Oversized {
        index: u64,
        declared: Option<u64>,
    },
}

#[derive(Debug)]
enum State {
    /// Looking for the next delimiter line; `scanned` bytes from `pos` are known not to hold
    /// its start.
    Seek {
        scanned: usize,
    },
    /// Just past `--boundary`: the rest of that line, or `--` for the end of the stream.
    DelimiterLine,
    Headers,
    Body {
        len: Option<usize>,
        content_type: Option<String>,
        scanned: usize,
    },
    /// Discarding an oversized part.
    Skip {
        remaining: Option<usize>,
    },
    /// The final boundary was seen.
    Closed,
}

/// An incremental `multipart/x-mixed-replace` parser: [`push`](Self::push) bytes as they come,
/// then take parts with [`next`](Self::next) until it returns `Ok(None)`.
#[derive(Debug)]
pub struct MultipartParser {
    /// `--boundary`; `None` until learned from the body when the header had none.
    delimiter: Option<Vec<u8>>,
    buf: Vec<u8>,
    /// Start of the unconsumed bytes in `buf`.
    pos: usize,
    state: State,
    max_part: usize,
    parts: u64,
}

impl MultipartParser {
    /// `boundary` as given in the `Content-Type` (with or without leading `--`).
    pub fn new(boundary: Option<&str>, max_part: usize) -> Self {
        Self {
            delimiter: boundary
                .map(|b| format!("--{}", b.trim_start_matches("--")).into_bytes())
                .filter(|d| d.len() > 2),
            buf: Vec::new(),
            pos: 0,
            state: State::Seek { scanned: 0 },
            max_part,
            parts: 0,
        }
    }

    pub fn push(&mut self, chunk: &[u8]) {
        if self.pos > 0 {
            // Offsets in `state` are relative to `pos`, so compaction needs no fix-up.
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(chunk);
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    fn avail(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// The next part, `Ok(None)` when more bytes are needed (or the stream is closed), or a
    /// fatal error after which the stream cannot be followed.
    // Not an `Iterator`: "no part yet" is not the end, and errors are fatal.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Parsed>, MjpegError> {
        loop {
            match &mut self.state {
                State::Closed => return Ok(None),
                State::Seek { scanned } => {
                    let Some(delim) = self.delimiter.clone() else {
                        if !self.learn_delimiter()? {
                            return Ok(None);
                        }
                        continue;
                    };
                    let from = *scanned;
                    let avail = &self.buf[self.pos..];
                    match find(&avail[from.min(avail.len())..], &delim) {
                        Some(i) => {
                            self.pos += from + i + delim.len();
                            self.state = State::DelimiterLine;
                        }
                        None => {
                            if self.parts == 0 && avail.len() > MAX_PREAMBLE_BYTES {
                                return Err(MjpegError::NoBoundary {
                                    searched: avail.len(),
                                });
                            }
                            // Junk between parts is dropped; keep only a possible start of
                            // the delimiter.
                            let keep = delim.len() - 1;
                            if self.parts > 0 && avail.len() > keep {
                                self.pos += avail.len() - keep;
                                *scanned = 0;
                            } else {
                                *scanned = avail.len().saturating_sub(keep);
                            }
                            return Ok(None);
                        }
                    }
                }
                State::DelimiterLine => {
                    let avail = self.avail();
                    match find(avail, b"\n") {
                        Some(nl) => {
                            let closing = avail.starts_with(b"--");
                            self.pos += nl + 1;
                            self.state = if closing {
                                State::Closed
                            } else {
                                State::Headers
                            };
                        }
                        None if avail.starts_with(b"--") => self.state = State::Closed,
                        None if avail.len() > MAX_HEADER_BYTES => {
                            return Err(MjpegError::HeadersTooLong {
                                index: self.parts + 1,
                                limit: MAX_HEADER_BYTES,
                            });
                        }
                        None => return Ok(None),
                    }
                }
                State::Headers => {
                    let Some((len, content_type, used)) = self.headers()? else {
                        return Ok(None);
                    };
                    self.pos += used;
                    self.parts += 1;
                    let index = self.parts;
                    if let Some(n) = len
                        && n > self.max_part as u64
                    {
                        self.state = State::Skip {
                            remaining: Some(usize::try_from(n).unwrap_or(usize::MAX)),
                        };
                        return Ok(Some(Parsed::Oversized {
                            index,
                            declared: Some(n),
                        }));
                    }
                    self.state = State::Body {
                        len: len.map(|n| n as usize),
                        content_type,
                        scanned: 0,
                    };
                }
                State::Body {
                    len: Some(n),
                    content_type,
                    ..
                } => {
                    let n = *n;
                    if self.buf.len() - self.pos < n {
                        return Ok(None);
                    }
                    let part = Part {
                        index: self.parts,
                        content_type: content_type.take(),
                        body: self.buf[self.pos..self.pos + n].to_vec(),
                    };
                    self.pos += n;
                    self.state = State::Seek { scanned: 0 };
                    return Ok(Some(Parsed::Part(part)));
                }
                State::Body {
                    len: None,
                    content_type,
                    scanned,
                } => {
                    let Some(delim) = &self.delimiter else {
                        return Ok(None);
                    };
                    let mut needle = Vec::with_capacity(delim.len() + 1);
                    needle.push(b'\n');
                    needle.extend_from_slice(delim);
                    let avail = &self.buf[self.pos..];
                    let from = (*scanned).min(avail.len());
                    match find(&avail[from..], &needle) {
                        Some(i) => {
                            let nl = from + i;
                            let end = if nl > 0 && avail[nl - 1] == b'\r' {
                                nl - 1
                            } else {
                                nl
                            };
                            if end > self.max_part {
                                // The rest of an oversized part and its boundary came in one
                                // read: refused as it is when the boundary comes later, so the
                                // limit does not depend on how the network split the stream.
                                let index = self.parts;
                                self.pos += nl + 1;
                                self.state = State::Seek { scanned: 0 };
                                return Ok(Some(Parsed::Oversized {
                                    index,
                                    declared: None,
                                }));
                            }
                            let part = Part {
                                index: self.parts,
                                content_type: content_type.take(),
                                body: avail[..end].to_vec(),
                            };
                            // Leave the delimiter for Seek.
                            self.pos += nl + 1;
                            self.state = State::Seek { scanned: 0 };
                            return Ok(Some(Parsed::Part(part)));
                        }
                        None if avail.len() > self.max_part + needle.len() => {
                            let index = self.parts;
                            self.state = State::Skip { remaining: None };
                            return Ok(Some(Parsed::Oversized {
                                index,
                                declared: None,
                            }));
                        }
                        None => {
                            *scanned = avail.len().saturating_sub(needle.len() - 1);
                            return Ok(None);
                        }
                    }
                }
                State::Skip {
                    remaining: Some(remaining),
                } => {
                    let take = (*remaining).min(self.buf.len() - self.pos);
                    self.pos += take;
                    *remaining -= take;
                    if *remaining > 0 {
                        return Ok(None);
                    }
                    self.state = State::Seek { scanned: 0 };
                }
                State::Skip { remaining: None } => {
                    // Until the next delimiter line; Seek drops what precedes it.
                    self.state = State::Seek { scanned: 0 };
                }
            }
        }
    }

    /// Finds the first `--…` line to use as the delimiter when the header named none.
    /// `Ok(false)` when more bytes are needed.
    fn learn_delimiter(&mut self) -> Result<bool, MjpegError> {
        let avail = self.avail();
        let mut start = 0;
        while let Some(nl) = find(&avail[start..], b"\n") {
            let line = trim_cr(&avail[start..start + nl]);
            if line.len() > 2 && line.starts_with(b"--") {
                self.delimiter = Some(line.to_vec());
                self.pos += start;
                return Ok(true);
            }
            start += nl + 1;
        }
        if avail.len() > MAX_PREAMBLE_BYTES {
            return Err(MjpegError::NoBoundary {
                searched: avail.len(),
            });
        }
        Ok(false)
    }

    /// Parses a complete header block at `pos`: `(Content-Length, Content-Type, bytes used)`,
    /// or `None` when it is not complete yet.
    #[allow(clippy::type_complexity)]
    fn headers(&self) -> Result<Option<(Option<u64>, Option<String>, usize)>, MjpegError> {
        let avail = self.avail();
        let mut len = None;
        let mut content_type = None;
        let mut start = 0;
        while let Some(nl) = find(&avail[start..], b"\n") {
            let line = trim_cr(&avail[start..start + nl]);
            start += nl + 1;
            if line.is_empty() {
                return Ok(Some((len, content_type, start)));
            }
            let line = String::from_utf8_lossy(line);
            if let Some((name, value)) = line.split_once(':') {
                let value = value.trim();
                if name.trim().eq_ignore_ascii_case("content-length") {
                    // An unparsable length is ignored: the boundary still ends the part.
                    len = value.parse::<u64>().ok();
                } else if name.trim().eq_ignore_ascii_case("content-type") {
                    content_type = Some(value.to_string());
                }
            }
        }
        if avail.len() > MAX_HEADER_BYTES {
            return Err(MjpegError::HeadersTooLong {
                index: self.parts + 1,
                limit: MAX_HEADER_BYTES,
            });
        }
        Ok(None)
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    // The first byte is rare in JPEG data (`\n` or `-`), so a memchr-style skip is enough.
    let first = needle[0];
    let last_start = haystack.len() - needle.len();
    let mut i = 0;
    while i <= last_start {
        match haystack[i..=last_start].iter().position(|&b| b == first) {
            None => return None,
            Some(j) => {
                i += j;
                if &haystack[i..i + needle.len()] == needle {
                    return Some(i);
                }
                i += 1;
            }
        }
    }
    None
}

/// The `boundary` parameter of a multipart `Content-Type`, unquoted; `None` when absent.
pub(crate) fn boundary(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| value.trim().trim_matches('"').to_string())
            .filter(|b| !b.is_empty())
    })
}

/// Keeps parts on a `1/fps` time grid: a part is kept when it arrives no earlier than a
/// quarter period before the next slot. The tolerance keeps a camera sending exactly at (or at
/// twice) the detection rate from losing half its kept parts to jitter; the grid keeps the
/// long-run rate at `fps`.
#[derive(Debug)]
pub(crate) struct Sampler {
    period: Duration,
    due: Option<Instant>,
}

impl Sampler {
    pub(crate) fn new(fps: f64) -> Self {
        Self {
            period: Duration::from_secs_f64(1.0 / fps),
            due: None,
        }
    }

    /// Whether a part arriving at `now` is kept.
    pub(crate) fn accept(&mut self, now: Instant) -> bool {
        let due = match self.due {
            None => now,
            Some(due) => due,
        };
        if now + self.period / 4 < due {
            return false;
        }
        // After a gap (a reconnect, a slow camera), restart the grid instead of letting a
        // burst through to catch up.
        let next = if now > due + self.period {
            now + self.period
        } else {
            due + self.period
        };
        self.due = Some(next);
        true
    }
}

// ---------------------------------------------------------------------------------------------
// The source

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
        let camera: Arc<str> = Arc::from(config.camera.as_str());
        let config_error = |problems: String| SourceError::Config {
            camera: camera.clone(),
            problems,
        };
        let problems = config.validate();
        if !problems.is_empty() {
            return Err(config_error(problems.join("; ")));
        }
        let client = CameraClient::new(
            config.url.trim(),
            &config.username,
            &config.password,
            config.auth,
            Duration::from_millis(config.connect_timeout_ms),
        )
        .map_err(config_error)?;
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

    /// A stream of `bodies` as parts, with a `Content-Length` on every other one.
    fn stream(boundary: &str, bodies: &[Vec<u8>]) -> Vec<u8> {
        let mut out = b"preamble to ignore\r\n".to_vec();
        for (i, body) in bodies.iter().enumerate() {
            out.extend(format!("--{boundary}\r\nContent-Type: image/jpeg\r\n").bytes());
            if i % 2 == 0 {
                out.extend(format!("Content-Length: {}\r\n", body.len()).bytes());
            }
            out.extend(b"\r\n");
            out.extend(body);
            out.extend(b"\r\n");
        }
        out.extend(format!("--{boundary}--\r\n").bytes());
        out
    }

    fn bodies() -> Vec<Vec<u8>> {
        vec![
            // Bytes that look like line ends and half delimiters inside the data.
            b"\xff\xd8one\r\n--fra\r\n-\n\xff\xd9".to_vec(),
            b"\xff\xd8two\xff\xd9".to_vec(),
            Vec::new(),
            (0..=255u8).collect(),
        ]
    }

    fn parse_all(p: &mut MultipartParser, out: &mut Vec<Parsed>) {
        while let Some(parsed) = p.next().unwrap() {
            out.push(parsed);
        }
    }

    fn bodies_of(parsed: &[Parsed]) -> Vec<Vec<u8>> {
        parsed
            .iter()
            .map(|p| match p {
                Parsed::Part(part) => part.body.clone(),
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    #[test]
    fn parts_are_the_same_however_the_stream_is_split_into_two_chunks() {
        let bytes = stream("frame", &bodies());
        for cut in 0..=bytes.len() {
            let mut p = MultipartParser::new(Some("frame"), 1 << 20);
            let mut out = Vec::new();
            p.push(&bytes[..cut]);
            parse_all(&mut p, &mut out);
            p.push(&bytes[cut..]);
            parse_all(&mut p, &mut out);
            assert_eq!(bodies_of(&out), bodies(), "cut at {cut}");
            assert!(p.is_closed(), "cut at {cut}");
        }
    }

    #[test]
    fn parts_are_the_same_when_fed_byte_by_byte_or_in_odd_chunks() {
        let bytes = stream("frame", &bodies());
        for size in [1, 2, 3, 7, 13, 64] {
            let mut p = MultipartParser::new(Some("--frame"), 1 << 20);
            let mut out = Vec::new();
            for chunk in bytes.chunks(size) {
                p.push(chunk);
                parse_all(&mut p, &mut out);
            }
            assert_eq!(bodies_of(&out), bodies(), "chunks of {size}");
            let Parsed::Part(first) = &out[0] else {
                unreachable!()
            };
            assert_eq!(
                (first.index, first.content_type.as_deref()),
                (1, Some("image/jpeg"))
            );
        }
    }

    #[test]
    fn a_missing_boundary_parameter_is_learned_and_bare_newlines_work() {
        let bytes =
            b"--myboundary\nContent-Type: image/jpeg\n\nAAA\n--myboundary\n\nBBB\n--myboundary\n";
        let mut p = MultipartParser::new(None, 1024);
        let mut out = Vec::new();
        for chunk in bytes.chunks(5) {
            p.push(chunk);
            parse_all(&mut p, &mut out);
        }
        assert_eq!(bodies_of(&out), vec![b"AAA".to_vec(), b"BBB".to_vec()]);
        assert!(!p.is_closed());
    }

    #[test]
    fn oversized_parts_are_named_and_skipped_and_the_next_part_still_parses() {
        let big = vec![7u8; 5000];
        // Content-Length on parts 1, 3 and 5 only: part 1 is refused by its declared size,
        // part 4 for having no boundary within the limit.
        let bytes = stream(
            "b",
            &[
                big.clone(),
                b"ok".to_vec(),
                b"x".to_vec(),
                big,
                b"ok2".to_vec(),
            ],
        );
        let mut p = MultipartParser::new(Some("b"), 1024);
        let mut out = Vec::new();
        for chunk in bytes.chunks(100) {
            p.push(chunk);
            parse_all(&mut p, &mut out);
            assert!(p.buf.len() < 1024 + 300, "buffered {}", p.buf.len());
        }
        assert_eq!(
            out,
            vec![
                Parsed::Oversized {
                    index: 1,
                    declared: Some(5000)
                },
                Parsed::Part(Part {
                    index: 2,
                    content_type: Some("image/jpeg".into()),
                    body: b"ok".to_vec()
                }),
                Parsed::Part(Part {
                    index: 3,
                    content_type: Some("image/jpeg".into()),
                    body: b"x".to_vec()
                }),
                Parsed::Oversized {
                    index: 4,
                    declared: None
                },
                Parsed::Part(Part {
                    index: 5,
                    content_type: Some("image/jpeg".into()),
                    body: b"ok2".to_vec()
                }),
            ]
        );
    }

    #[test]
    fn a_part_over_the_limit_is_refused_even_when_its_boundary_arrives_in_the_same_read() {
        // Found by the `mjpeg` fuzz target: fed in one piece, a part without Content-Length
        // whose boundary was already buffered came out at any size. (`stream` gives part 2 no
        // Content-Length.)
        let bytes = stream("b", &[b"ok".to_vec(), b"0123456789abcdef".to_vec()]);
        for size in [bytes.len(), 7, 1] {
            let mut p = MultipartParser::new(Some("b"), 9);
            let mut out = Vec::new();
            for chunk in bytes.chunks(size) {
                p.push(chunk);
                parse_all(&mut p, &mut out);
            }
            assert_eq!(
                out,
                vec![
                    Parsed::Part(Part {
                        index: 1,
                        content_type: Some("image/jpeg".into()),
                        body: b"ok".to_vec()
                    }),
                    Parsed::Oversized {
                        index: 2,
                        declared: None
                    },
                ],
                "chunks of {size}"
            );
            assert!(p.is_closed(), "chunks of {size}");
        }
    }

    #[test]
    fn a_body_without_boundary_or_with_endless_headers_is_refused() {
        let mut p = MultipartParser::new(Some("b"), 1024);
        p.push(&vec![b'x'; MAX_PREAMBLE_BYTES + 1]);
        assert!(matches!(p.next(), Err(MjpegError::NoBoundary { .. })));
        let mut p = MultipartParser::new(Some("b"), 1024);
        p.push(b"--b\r\nX-Junk: ");
        p.push(&vec![b'x'; MAX_HEADER_BYTES + 1]);
        assert!(matches!(
            p.next(),
            Err(MjpegError::HeadersTooLong { index: 1, .. })
        ));
    }

    #[test]
    fn boundary_is_read_from_the_content_type() {
        assert_eq!(
            boundary("multipart/x-mixed-replace; boundary=myboundary").as_deref(),
            Some("myboundary")
        );
        assert_eq!(
            boundary("multipart/x-mixed-replace;boundary=\"--a b\"").as_deref(),
            Some("--a b")
        );
        assert_eq!(boundary("multipart/x-mixed-replace"), None);
    }

    #[test]
    fn sampler_keeps_the_detection_rate_from_a_faster_jittery_camera() {
        let start = Instant::now();
        let mut s = Sampler::new(5.0);
        // 25 fps for 10 s, each part up to ±8 ms late or early.
        let kept = (0..250u64)
            .filter(|i| {
                let jitter = (i * 7919 % 17) as i64 - 8;
                let at = start + Duration::from_millis(i * 40 + 8);
                let at = if jitter >= 0 {
                    at + Duration::from_millis(jitter as u64)
                } else {
                    at - Duration::from_millis(jitter.unsigned_abs())
                };
                s.accept(at)
            })
            .count();
        assert!((49..=51).contains(&kept), "kept {kept} of 250");
        // A camera at exactly the detection rate keeps every part despite jitter.
        let mut s = Sampler::new(5.0);
        let kept = (0..50u64)
            .filter(|i| s.accept(start + Duration::from_millis(i * 200 + (i % 3) * 15)))
            .count();
        assert_eq!(kept, 50);
    }

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
