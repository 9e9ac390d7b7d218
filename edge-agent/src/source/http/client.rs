//! [`CameraClient`]: an HTTP client for one camera URL that answers the camera's Basic or
//! Digest challenges, and [`HttpError`], what can go wrong in one exchange. Shared by the
//! snapshot source and the MJPEG source.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, HeaderValue, WWW_AUTHENTICATE};
use tracing::debug;

use super::config::AuthMode;
use super::digest::{
    Challenge, DigestChallenge, describe_offered, digest_authorization, parse_challenges,
};
use crate::secret::Secret;
use crate::source::SourceError;
use crate::source::health::FrameError;

/// What went wrong with one HTTP exchange with a camera.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("request failed: {0}")]
    Transport(String),
    #[error("no complete response within {ms} ms")]
    Timeout { ms: u64 },
    #[error("status {status}; body starts {head}")]
    Status { status: String, head: String },
    #[error("content type {content_type:?}, expected image/jpeg; body starts {head}")]
    ContentType { content_type: String, head: String },
    #[error("body of {size} bytes is over the limit of {limit}; refused")]
    TooLarge {
        /// The declared or (at least) received size.
        size: u64,
        limit: u64,
    },
    #[error("not a usable JPEG ({error}); {len} bytes starting {head}")]
    Image {
        error: FrameError,
        len: usize,
        head: String,
    },
    #[error(
        "the camera wants credentials (it offers {offered}); set username and password in the config"
    )]
    AuthRequired { offered: String },
    #[error("{scheme} credentials rejected (401); check username and password")]
    AuthRejected { scheme: &'static str },
    #[error("no usable authentication for auth = \"{mode}\": the camera offers {offered}")]
    AuthUnsupported { mode: &'static str, offered: String },
}

impl HttpError {
    /// Whether this spoils one image only (the camera answered, with something unusable), as
    /// opposed to the connection or the credentials failing.
    pub fn is_bad_image(&self) -> bool {
        matches!(
            self,
            HttpError::Status { .. }
                | HttpError::ContentType { .. }
                | HttpError::TooLarge { .. }
                | HttpError::Image { .. }
        )
    }

    pub(crate) fn transport(error: &reqwest::Error) -> Self {
        HttpError::Transport(describe(error))
    }
}

/// A reqwest error with its causes: reqwest's own message is "error sending request for url
/// (…)"; the causes say what actually happened (connection refused, reset, …).
pub(crate) fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// What the client learned from the camera's last challenge.
#[derive(Debug)]
enum Learned {
    Nothing,
    Basic,
    Digest { challenge: DigestChallenge, nc: u32 },
}

impl Learned {
    fn scheme(&self) -> &'static str {
        match self {
            Learned::Nothing => "no",
            Learned::Basic => "Basic",
            Learned::Digest { .. } => "Digest",
        }
    }
}

/// An HTTP client for one camera URL that answers the camera's authentication challenges.
#[derive(Debug)]
pub(crate) struct CameraClient {
    url: reqwest::Url,
    /// The request-target (path and query), which Digest signs.
    uri: String,
    client: reqwest::Client,
    username: String,
    password: Secret,
    mode: AuthMode,
    learned: Learned,
    rng: u64,
}

impl CameraClient {
    /// [`Self::new`] for an HTTP source's camera (URL trimmed): a URL or client that cannot be
    /// built is a config error of `camera`, like the problems `validate` finds.
    pub(crate) fn for_camera(
        camera: &str,
        url: &str,
        username: &str,
        password: &Secret,
        mode: AuthMode,
        connect_timeout: Duration,
    ) -> Result<Self, SourceError> {
        Self::new(url.trim(), username, password, mode, connect_timeout).map_err(|problems| {
            SourceError::Config {
                camera: Arc::from(camera),
                problems,
            }
        })
    }

    /// `connect_timeout` bounds the TCP connect only; callers bound the rest.
    pub(crate) fn new(
        url: &str,
        username: &str,
        password: &Secret,
        mode: AuthMode,
        connect_timeout: Duration,
    ) -> Result<Self, String> {
        let url = reqwest::Url::parse(url).map_err(|e| format!("url: {e}"))?;
        let mut uri = url.path().to_string();
        if let Some(q) = url.query() {
            uri.push('?');
            uri.push_str(q);
        }
        // reqwest is built without TLS for the agent, but in a workspace build another crate
        // (the hub's webhooks) turns on its rustls feature, and then every `Client` needs a
        // process-wide crypto provider even for plain http. Install ring's if none is set.
        infra::tls::install_default_provider();
        let client = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(connect_timeout)
            .user_agent(concat!("edge-agent/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Self {
            url,
            uri,
            client,
            username: username.to_string(),
            password: password.clone(),
            mode,
            learned: if mode == AuthMode::Basic {
                Learned::Basic
            } else {
                Learned::Nothing
            },
            rng: RandomState::new().hash_one(username) | 1,
        })
    }

    fn cnonce(&mut self) -> String {
        let mut word = || {
            self.rng ^= self.rng >> 12;
            self.rng ^= self.rng << 25;
            self.rng ^= self.rng >> 27;
            self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
        };
        format!("{:016x}{:016x}", word(), word())
    }

    /// The next `GET`, with the `Authorization` the camera is known to want, if any.
    fn request(&mut self) -> Result<reqwest::Request, HttpError> {
        let mut request = self.client.get(self.url.clone());
        if !self.username.is_empty() {
            match &self.learned {
                Learned::Nothing => {}
                // reqwest encodes it and marks the header sensitive.
                Learned::Basic => {
                    request = request.basic_auth(&self.username, Some(self.password.expose()));
                }
                Learned::Digest { .. } => {
                    let cnonce = self.cnonce();
                    if let Learned::Digest { challenge, nc } = &mut self.learned {
                        *nc += 1;
                        let value = digest_authorization(
                            challenge,
                            &self.username,
                            self.password.expose(),
                            "GET",
                            &self.uri,
                            *nc,
                            &cnonce,
                        );
                        let mut value = HeaderValue::from_str(&value).map_err(|_| {
                            HttpError::Transport(
                                "username contains characters an HTTP header cannot carry"
                                    .to_string(),
                            )
                        })?;
                        value.set_sensitive(true);
                        request = request.header(AUTHORIZATION, value);
                    }
                }
            }
        }
        request.build().map_err(|e| HttpError::transport(&e))
    }

    /// `GET`s the URL, answering one authentication challenge if needed. Returns the response
    /// whatever its status, except a 401 that authentication could not get past.
    pub(crate) async fn get(&mut self) -> Result<reqwest::Response, HttpError> {
        let mut answered = false;
        loop {
            let request = self.request()?;
            let response = self
                .client
                .execute(request)
                .await
                .map_err(|e| HttpError::transport(&e))?;
            if response.status() != StatusCode::UNAUTHORIZED {
                return Ok(response);
            }
            let challenges: Vec<Challenge> = response
                .headers()
                .get_all(WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(parse_challenges)
                .collect();
            if self.username.is_empty() {
                return Err(HttpError::AuthRequired {
                    offered: describe_offered(&challenges),
                });
            }
            if answered || self.mode == AuthMode::Basic {
                if self.mode == AuthMode::Basic && !challenges.iter().any(|c| c.scheme == "basic") {
                    return Err(HttpError::AuthUnsupported {
                        mode: self.mode.as_str(),
                        offered: describe_offered(&challenges),
                    });
                }
                return Err(HttpError::AuthRejected {
                    scheme: self.learned.scheme(),
                });
            }
            self.learned = self.choose(&challenges)?;
            debug!(
                message = "Answering the camera's challenge.",
                url = %self.url,
                scheme = self.learned.scheme()
            );
            answered = true;
        }
    }

    /// The best challenge this mode may answer: Digest (strongest algorithm first), then, in
    /// `auto` only, Basic.
    fn choose(&self, challenges: &[Challenge]) -> Result<Learned, HttpError> {
        let digest = challenges
            .iter()
            .filter_map(|c| DigestChallenge::from_challenge(c).ok())
            .max_by_key(|d| d.algorithm.strength());
        if let Some(challenge) = digest {
            return Ok(Learned::Digest { challenge, nc: 0 });
        }
        if self.mode == AuthMode::Auto && challenges.iter().any(|c| c.scheme == "basic") {
            return Ok(Learned::Basic);
        }
        Err(HttpError::AuthUnsupported {
            mode: self.mode.as_str(),
            offered: describe_offered(challenges),
        })
    }

    /// Up to `max` bytes of a response body, for an error message; errors end it early.
    pub(crate) async fn body_head(response: &mut reqwest::Response, max: usize) -> Vec<u8> {
        let mut out = Vec::new();
        while out.len() < max {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    out.extend_from_slice(&chunk[..chunk.len().min(max - out.len())])
                }
                _ => break,
            }
        }
        out
    }
}

/// Whether a `Content-Type` names JPEG (cameras also send the non-standard `image/jpg` and the
/// old `image/pjpeg`).
pub(crate) fn is_jpeg_type(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    matches!(essence.as_str(), "image/jpeg" | "image/jpg" | "image/pjpeg")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::HttpSnapshotSourceConfig;
    use crate::source::http::Algorithm;

    #[test]
    fn several_challenges_in_one_header_are_split_and_sha256_preferred() {
        let cs = parse_challenges(
            "Digest realm=\"cam\", nonce=\"n1\", algorithm=MD5, qop=\"auth\", \
             Digest realm=\"cam\", nonce=\"n2\", algorithm=SHA-256, qop=\"auth\", \
             Basic realm=\"cam\", Negotiate abc==",
        );
        let schemes: Vec<_> = cs.iter().map(|c| c.scheme.as_str()).collect();
        assert_eq!(schemes, ["digest", "digest", "basic", "negotiate"]);
        assert_eq!(cs[1].param("nonce"), Some("n2"));
        assert_eq!(cs[2].param("realm"), Some("cam"));
        let client = CameraClient::new(
            "http://127.0.0.1/x",
            "u",
            &Secret::new("p"),
            AuthMode::Digest,
            Duration::from_secs(1),
        )
        .unwrap();
        let Ok(Learned::Digest { challenge, .. }) = client.choose(&cs) else {
            panic!("digest expected");
        };
        assert_eq!(challenge.algorithm, Algorithm::Sha256);
        assert_eq!(challenge.nonce, "n2");
        // Digest mode never falls back to Basic; auto does.
        let basic_only = parse_challenges("Basic realm=\"cam\"");
        let err = client.choose(&basic_only).unwrap_err();
        assert!(err.to_string().contains("basic"), "{err}");
    }

    #[test]
    fn basic_header_is_standard_base64_and_the_password_never_shows_in_debug() {
        let mut c = CameraClient::new(
            "http://127.0.0.1/x",
            "Aladdin",
            &Secret::new("open sesame"),
            AuthMode::Basic,
            Duration::from_secs(1),
        )
        .unwrap();
        let request = c.request().unwrap();
        let v = request.headers().get(AUTHORIZATION).unwrap();
        assert_eq!(v.to_str().unwrap(), "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
        assert!(v.is_sensitive());
        let debug = format!("{c:?}");
        assert!(!debug.contains("open sesame"), "{debug}");
        let config = HttpSnapshotSourceConfig {
            password: Secret::new("hunter2"),
            ..HttpSnapshotSourceConfig::default()
        };
        assert!(!format!("{config:?}").contains("hunter2"));
    }

    #[test]
    fn jpeg_content_types_are_recognised() {
        assert!(is_jpeg_type("image/jpeg"));
        assert!(is_jpeg_type("Image/JPEG; charset=binary"));
        assert!(is_jpeg_type("image/jpg"));
        assert!(!is_jpeg_type("text/html; charset=utf-8"));
        assert!(!is_jpeg_type(""));
    }
}
