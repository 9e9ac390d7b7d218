//! The snapshot source's configuration and the URL and credential checks both HTTP sources
//! (snapshot, MJPEG) share.

use serde::Deserialize;

use crate::secret::Secret;
use crate::source::health::CommonFields;

/// How a source authenticates to a camera that has a `username`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, strum::IntoStaticStr, strum::EnumIter,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum AuthMode {
    /// HTTP Basic on every request: the password crosses the network base64-encoded, i.e. in
    /// clear. Only for cameras that support nothing else.
    Basic,
    /// HTTP Digest only (MD5 or SHA-256, `qop=auth`): the password never crosses the network.
    Digest,
    /// Ask without credentials, then answer the camera's challenge, preferring Digest.
    #[default]
    Auto,
}

impl AuthMode {
    pub(super) fn as_str(self) -> &'static str {
        self.into()
    }
}

/// The URL and credential checks the HTTP sources share.
pub(crate) fn validate_http(
    url: &str,
    username: &str,
    password: &Secret,
    auth: AuthMode,
    errors: &mut Vec<String>,
) {
    let lower = url.trim().to_ascii_lowercase();
    if lower.starts_with("https://") {
        errors.push(
            "url: https is not supported (this build has no TLS; cameras are reached over plain HTTP)"
                .to_string(),
        );
    } else if !lower.starts_with("http://") {
        errors.push(format!("url: must start with http://, got {url:?}"));
    } else {
        match reqwest::Url::parse(url.trim()) {
            Err(e) => errors.push(format!("url: {e}")),
            Ok(u) => {
                if !u.username().is_empty() || u.password().is_some() {
                    // The URL is logged; a password in it would be too.
                    errors.push(
                        "url: must not contain credentials; use username and password".to_string(),
                    );
                }
                if u.host_str().is_none_or(str::is_empty) {
                    errors.push("url: has no host".to_string());
                }
            }
        }
    }
    if username.is_empty() {
        if !password.is_empty() {
            errors.push("password: set without a username".to_string());
        }
        if auth != AuthMode::Auto {
            errors.push(format!(
                "username: required with auth = \"{}\"",
                auth.as_str()
            ));
        }
    } else if username.contains(':') && auth != AuthMode::Digest {
        errors.push("username: must not contain ':' (Basic auth could not carry it)".to_string());
    }
}

/// One camera read by polling its JPEG snapshot URL.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSnapshotSourceConfig {
    /// The camera's id, used in events, errors and logs.
    pub camera: String,
    /// The snapshot URL, `http://` only, without credentials, e.g.
    /// `http://10.0.0.5/ISAPI/Streaming/channels/102/picture` (Hikvision sub-stream) or
    /// `http://10.0.0.6/cgi-bin/snapshot.cgi` (Dahua).
    pub url: String,
    /// User name; empty for a camera without authentication.
    pub username: String,
    /// Password; never logged or shown by `Debug`.
    pub password: Secret,
    /// How to authenticate when `username` is set.
    pub auth: AuthMode,
    /// Snapshots per second handed to the detector. Cameras render snapshots slowly (100–300
    /// ms each), so keep this low.
    pub fps: f64,
    /// Working width in pixels (even); wider snapshots are scaled down keeping the aspect ratio
    /// (even height), narrower ones are kept as they are.
    pub width: u32,
    /// Bound on one request, from connecting to the last byte of the body.
    pub timeout_ms: u64,
    /// Largest accepted snapshot body; a larger one is refused (a broken camera or a wrong URL
    /// serving a video) rather than buffered.
    pub max_body_bytes: u64,
    /// Bad responses in a row (error status, not a JPEG) after which the source reports a
    /// failure and backs off instead of polling at full rate.
    pub failures_before_backoff: u32,
    /// With no good snapshot for this long,
    /// [`SourceEvent::Offline`](crate::source::SourceEvent::Offline) is raised.
    pub offline_after_ms: u64,
    /// First retry delay after a failure; doubles per consecutive failure.
    pub backoff_min_ms: u64,
    /// Cap on the retry delay.
    pub backoff_max_ms: u64,
}

impl Default for HttpSnapshotSourceConfig {
    fn default() -> Self {
        Self {
            camera: String::new(),
            url: String::new(),
            username: String::new(),
            password: Secret::default(),
            auth: AuthMode::Auto,
            fps: 2.0,
            width: 640,
            timeout_ms: 5_000,
            max_body_bytes: 10 << 20,
            failures_before_backoff: 3,
            offline_after_ms: 10_000,
            backoff_min_ms: 500,
            backoff_max_ms: 30_000,
        }
    }
}

impl HttpSnapshotSourceConfig {
    /// The fields every source shares.
    pub(super) fn common(&self) -> CommonFields {
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
        if self.timeout_ms == 0 {
            errors.push("timeout_ms: must be at least 1".to_string());
        }
        if self.max_body_bytes < 1024 {
            errors.push(format!(
                "max_body_bytes: must be at least 1024, got {}",
                self.max_body_bytes
            ));
        }
        if self.failures_before_backoff == 0 {
            errors.push("failures_before_backoff: must be at least 1".to_string());
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_mode_names_are_their_serde_names() {
        use strum::IntoEnumIterator;
        for mode in AuthMode::iter() {
            let quoted = serde_json::Value::from(mode.as_str());
            assert_eq!(serde_json::from_value::<AuthMode>(quoted).ok(), Some(mode));
        }
    }

    #[test]
    fn validation_lists_every_problem_with_its_path() {
        let c = HttpSnapshotSourceConfig {
            url: "ftp://cam/x".into(),
            password: Secret::new("p"),
            auth: AuthMode::Digest,
            fps: 0.0,
            width: 641,
            timeout_ms: 0,
            ..HttpSnapshotSourceConfig::default()
        };
        let errors = c.validate();
        for path in [
            "camera:",
            "url:",
            "password:",
            "username:",
            "fps:",
            "width:",
            "timeout_ms:",
        ] {
            assert!(
                errors.iter().any(|e| e.starts_with(path)),
                "no error for {path} in {errors:#?}"
            );
        }
        assert_eq!(errors.len(), 7, "{errors:#?}");
        let with_creds = HttpSnapshotSourceConfig {
            camera: "c".into(),
            url: "http://admin:pw@cam/x".into(),
            ..HttpSnapshotSourceConfig::default()
        };
        assert_eq!(
            with_creds.validate(),
            ["url: must not contain credentials; use username and password"]
        );
        let ok = HttpSnapshotSourceConfig {
            camera: "c".into(),
            url: "http://10.0.0.5/ISAPI/Streaming/channels/102/picture".into(),
            ..HttpSnapshotSourceConfig::default()
        };
        assert_eq!(ok.validate(), Vec::<String>::new());
    }

    #[test]
    fn unknown_config_keys_are_rejected() {
        let err = serde_json::from_str::<HttpSnapshotSourceConfig>(
            r#"{"camera": "c", "url": "http://cam/x", "pasword": "x"}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("pasword"), "{err}");
        let ok: HttpSnapshotSourceConfig = serde_json::from_str(
            r#"{"camera": "c", "url": "http://cam/x", "username": "u", "password": "p",
                "auth": "digest"}"#,
        )
        .unwrap();
        assert_eq!(ok.auth, AuthMode::Digest);
        assert_eq!(ok.password.expose(), "p");
    }
}
