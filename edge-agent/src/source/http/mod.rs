//! [`HttpSnapshotSource`]: a camera's JPEG snapshot URL polled over HTTP at the detection fps,
//! and the HTTP plumbing it shares with [`super::MjpegSource`]: authentication (Basic, and
//! Digest per RFC 7616 / 2617 with MD5 or SHA-256, `qop=auth`), the [`Secret`] password type
//! and [`HttpError`].
//!
//! Files: `digest.rs` (challenges and Digest answers, pure), `client.rs` (the authenticating
//! client, [`HttpError`]), `config.rs` (the snapshot source's config and the checks both HTTP
//! sources share), and this file, the source itself.
//!
//! Polling: one `GET` per `1/fps`, each bounded by `timeout_ms` (connect, headers and body). A
//! poll that takes longer than the period is followed at once by the next, never by a burst.
//! A response that is not a usable JPEG (non-200 status, a content type other than JPEG, an
//! oversized or undecodable body) skips that one frame: it is counted in
//! [`SourceStats::skipped_bad`](super::SourceStats::skipped_bad) and logged with the camera,
//! URL, status and first bytes. `failures_before_backoff` of them in a row, or any transport
//! error (refused, timed out, reset) or authentication failure, is a [`SourceEvent::Failed`]
//! with jittered exponential back-off. Offline/online as for every source (`source/mod.rs`).
//!
//! Authentication (`auth`): `basic` sends the password with every request; `digest` answers
//! the camera's Digest challenge and never sends the password itself (it refuses a camera that
//! offers only Basic); `auto` first asks without credentials and answers whatever the 401
//! offers, preferring Digest (SHA-256 over MD5) to Basic. The chosen scheme and the Digest
//! nonce are kept, so later requests answer at once (`nc` counts up); a 401 to a kept nonce
//! (expired, `stale=true`) is answered once more with the new challenge before the password is
//! declared wrong. Many Hikvision and Dahua cameras accept only Digest.
//!
//! No TLS: the cameras sit on plain-HTTP site networks, so `https://` URLs are refused by
//! config validation until a TLS feature is enabled. Proxies from the environment are ignored:
//! a camera is always reached directly.

mod client;
mod config;
mod digest;

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until, timeout};

pub use client::HttpError;
pub(crate) use client::{CameraClient, describe, is_jpeg_type};
pub(crate) use config::validate_http;
pub use config::{AuthMode, HttpSnapshotSourceConfig};
pub use digest::{Algorithm, Challenge, DigestChallenge, digest_authorization, parse_challenges};

use super::health::{FrameMaker, Health, check_config, head, sleep_until_opt};
use super::{FrameSource, SourceCounters, SourceError, SourceEvent};
pub use crate::secret::Secret;

enum Wake {
    Shutdown,
    Offline,
    Poll,
}

/// A camera's snapshot URL polled at the detection fps; see the module docs.
#[derive(Debug)]
pub struct HttpSnapshotSource {
    config: HttpSnapshotSourceConfig,
    client: CameraClient,
    health: Health,
    maker: FrameMaker,
    shutdown: watch::Receiver<bool>,
    next_poll: Instant,
}

impl HttpSnapshotSource {
    /// A source for `config` that stops when `shutdown` becomes `true` (or its sender is
    /// dropped). Nothing is requested until the first [`FrameSource::next_event`].
    pub fn new(
        config: HttpSnapshotSourceConfig,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Self, SourceError> {
        check_config(&config.camera, config.validate())?;
        let client = CameraClient::for_camera(
            &config.camera,
            &config.url,
            &config.username,
            &config.password,
            config.auth,
            Duration::from_millis(config.timeout_ms),
        )?;
        let (health, maker) = config.common().parts();
        Ok(Self {
            health,
            maker,
            client,
            shutdown,
            next_poll: Instant::now(),
            config,
        })
    }

    pub fn config(&self) -> &HttpSnapshotSourceConfig {
        &self.config
    }

    /// The source's counters, shared: read them while the source runs.
    pub fn counters(&self) -> Arc<SourceCounters> {
        self.health.counters().clone()
    }

    /// The last failure or bad snapshot, as text, until a good snapshot arrives.
    pub fn last_error(&self) -> Option<&str> {
        self.health.last_error()
    }

    fn shutting_down(&self) -> bool {
        *self.shutdown.borrow() || self.shutdown.has_changed().is_err()
    }

    fn error(&self, error: HttpError) -> SourceError {
        SourceError::Http {
            camera: self.health.camera().clone(),
            url: self.config.url.clone(),
            error: Box::new(error),
        }
    }

    fn quiet(&self) -> String {
        format!("no snapshot for {} ms", self.config.offline_after_ms)
    }
}

/// One snapshot's body, checked to be a 200 with a JPEG content type within the size limit.
async fn fetch(client: &mut CameraClient, max_body: u64) -> Result<Vec<u8>, HttpError> {
    let mut response = client.get().await?;
    let status = response.status();
    if status != StatusCode::OK {
        let head = head(&CameraClient::body_head(&mut response, 64).await);
        return Err(HttpError::Status {
            status: status.to_string(),
            head,
        });
    }
    // A missing content type is let through: the decoder sniffs the magic bytes anyway.
    if let Some(ct) = response.headers().get(CONTENT_TYPE) {
        let content_type = String::from_utf8_lossy(ct.as_bytes()).into_owned();
        if !is_jpeg_type(&content_type) {
            let head = head(&CameraClient::body_head(&mut response, 64).await);
            return Err(HttpError::ContentType { content_type, head });
        }
    }
    if let Some(len) = response.content_length()
        && len > max_body
    {
        return Err(HttpError::TooLarge {
            size: len,
            limit: max_body,
        });
    }
    let capacity = response.content_length().unwrap_or(1 << 16).min(max_body);
    let mut body = Vec::with_capacity(usize::try_from(capacity).unwrap_or(1 << 16));
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| HttpError::transport(&e))?
    {
        if (body.len() + chunk.len()) as u64 > max_body {
            return Err(HttpError::TooLarge {
                size: (body.len() + chunk.len()) as u64,
                limit: max_body,
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

impl FrameSource for HttpSnapshotSource {
    fn camera(&self) -> &str {
        self.health.camera()
    }

    async fn next_event(&mut self) -> Option<SourceEvent> {
        let period = Duration::from_secs_f64(1.0 / self.config.fps);
        let request_timeout = Duration::from_millis(self.config.timeout_ms);
        loop {
            if self.shutting_down() {
                return None;
            }
            if let Some(event) = self.health.take_pending() {
                return Some(event);
            }
            let offline_at = self.health.offline_at();
            let wake = tokio::select! {
                biased;
                _ = self.shutdown.changed() => Wake::Shutdown,
                () = sleep_until_opt(offline_at) => Wake::Offline,
                () = sleep_until(self.next_poll) => Wake::Poll,
            };
            match wake {
                // A changed-but-false value loops back to the check above.
                Wake::Shutdown => continue,
                Wake::Offline => return Some(self.health.go_offline(&self.quiet())),
                Wake::Poll => {}
            }
            let started = Instant::now();
            let max_body = self.config.max_body_bytes;
            // The offline deadline is watched during the request too; if it fires, the request
            // is abandoned (the camera has been silent for offline_after_ms anyway) and the
            // next call polls at once.
            let result = tokio::select! {
                biased;
                _ = self.shutdown.changed() => continue,
                () = sleep_until_opt(offline_at) => None,
                r = timeout(request_timeout, fetch(&mut self.client, max_body)) => Some(r),
            };
            let Some(result) = result else {
                return Some(self.health.go_offline(&self.quiet()));
            };
            self.next_poll = started + period;
            let error = match result {
                Err(_) => HttpError::Timeout {
                    ms: self.config.timeout_ms,
                },
                Ok(Err(e)) => e,
                Ok(Ok(body)) => match self.maker.make(&body) {
                    Ok(image) => return Some(self.health.on_frame(image)),
                    Err(error) => HttpError::Image {
                        error,
                        len: body.len(),
                        head: head(&body),
                    },
                },
            };
            let bad_image = error.is_bad_image();
            let error = self.error(error);
            if bad_image && self.health.skip_bad(&error) < self.config.failures_before_backoff {
                continue;
            }
            let (event, retry_at) = self.health.fail(error);
            self.next_poll = retry_at;
            return Some(event);
        }
    }
}
