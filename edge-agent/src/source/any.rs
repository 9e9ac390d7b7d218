//! [`SourceConfig`] and [`AnySource`]: every camera kind behind one config enum and one
//! runtime enum, so that the agent holds and forwards a camera's source without knowing its
//! kinds. Adding a kind is a module of `source/` plus a variant in each enum here.

use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use tokio::sync::watch;

use super::{
    AtEnd, DirSource, DirSourceConfig, FfmpegSource, FfmpegSourceConfig, FrameSource,
    HttpSnapshotSource, HttpSnapshotSourceConfig, MjpegSource, MjpegSourceConfig, SourceError,
    SourceEvent,
};

/// Replay: offline and stall timeouts, long enough never to fire (a day).
const REPLAY_NO_WATCHDOG_MS: u64 = 86_400_000;

/// Where a camera's frames come from; `kind` chooses.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SourceConfig {
    /// RTSP or a video file, through an ffmpeg child process.
    Ffmpeg(FfmpegSourceConfig),
    /// A JPEG snapshot URL polled at the camera's fps.
    Http(HttpSnapshotSourceConfig),
    /// An HTTP MJPEG stream.
    Mjpeg(MjpegSourceConfig),
    /// A directory the camera uploads JPEGs into (FTP push).
    Dir(DirSourceConfig),
}

impl SourceConfig {
    /// Problems of the source's own fields, paths relative to the source table.
    pub fn validate(&self) -> Vec<String> {
        match self {
            Self::Ffmpeg(c) => c.validate(),
            Self::Http(c) => c.validate(),
            Self::Mjpeg(c) => c.validate(),
            Self::Dir(c) => c.validate(),
        }
    }

    /// The `camera` field every source config carries, which the agent fills in.
    pub fn camera_field(&mut self) -> &mut String {
        match self {
            Self::Ffmpeg(c) => &mut c.camera,
            Self::Http(c) => &mut c.camera,
            Self::Mjpeg(c) => &mut c.camera,
            Self::Dir(c) => &mut c.camera,
        }
    }

    /// The camera's id.
    pub fn camera(&self) -> &str {
        match self {
            Self::Ffmpeg(c) => &c.camera,
            Self::Http(c) => &c.camera,
            Self::Mjpeg(c) => &c.camera,
            Self::Dir(c) => &c.camera,
        }
    }

    /// Makes the source's relative paths (a video file, a pushed-JPEG directory) relative to
    /// `base`, the config file's directory. URLs are not paths and stay as they are.
    pub fn resolve_paths(&mut self, base: &Path) {
        // `Path::join` keeps an absolute path as it is.
        match self {
            Self::Ffmpeg(c) => {
                if c.is_file() && !c.input.expose().starts_with("file:") {
                    c.input = base
                        .join(Path::new(c.input.expose()))
                        .display()
                        .to_string()
                        .into();
                }
            }
            Self::Dir(c) => c.path = base.join(&c.path),
            Self::Http(_) | Self::Mjpeg(_) => {}
        }
    }

    /// Frames per second the source delivers.
    pub fn fps(&self) -> f64 {
        match self {
            Self::Ffmpeg(c) => c.fps,
            Self::Http(c) => c.fps,
            Self::Mjpeg(c) => c.fps,
            Self::Dir(c) => c.fps,
        }
    }

    /// This source set up for a replay: a recorded video file read once, as fast as the
    /// machine allows. Refused for every other kind and for a live ffmpeg input.
    pub fn for_replay(&self) -> Result<Self, SourceError> {
        match self {
            Self::Ffmpeg(c) if c.is_file() => {
                let mut c = c.clone();
                // The source is paused whenever the detector falls behind (lossless slots), so
                // silence says nothing about the camera: no offline or stall detection.
                c.realtime = false;
                c.at_end = AtEnd::Finish;
                c.offline_after_ms = REPLAY_NO_WATCHDOG_MS;
                c.stall_after_ms = REPLAY_NO_WATCHDOG_MS;
                Ok(Self::Ffmpeg(c))
            }
            // A live camera has no end and no fixed timeline, and a pushed-JPEG directory is
            // consumed (deleted or moved) as it is read: neither can be replayed.
            _ => Err(SourceError::Config {
                camera: Arc::from(self.camera()),
                problems: "replay reads recorded video files only (an ffmpeg source whose \
                           input is a file)"
                    .into(),
            }),
        }
    }
}

/// One camera source, whatever its kind. An enum rather than a boxed trait object because
/// [`FrameSource::next_event`] returns `impl Future`.
#[derive(Debug)]
pub enum AnySource {
    Ffmpeg(FfmpegSource),
    Http(HttpSnapshotSource),
    Mjpeg(MjpegSource),
    Dir(DirSource),
}

impl AnySource {
    /// The source `config` describes; it stops when `shutdown` turns true.
    pub fn new(
        config: &SourceConfig,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Self, SourceError> {
        Ok(match config {
            SourceConfig::Ffmpeg(c) => Self::Ffmpeg(FfmpegSource::new(c.clone(), shutdown)?),
            SourceConfig::Http(c) => Self::Http(HttpSnapshotSource::new(c.clone(), shutdown)?),
            SourceConfig::Mjpeg(c) => Self::Mjpeg(MjpegSource::new(c.clone(), shutdown)?),
            SourceConfig::Dir(c) => Self::Dir(DirSource::new(c.clone(), shutdown)?),
        })
    }
}

impl FrameSource for AnySource {
    fn camera(&self) -> &str {
        match self {
            Self::Ffmpeg(s) => s.camera(),
            Self::Http(s) => s.camera(),
            Self::Mjpeg(s) => s.camera(),
            Self::Dir(s) => s.camera(),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ffmpeg(input: &str) -> SourceConfig {
        let mut c: SourceConfig =
            toml::from_str(&format!("kind = \"ffmpeg\"\ninput = {input:?}\n")).unwrap();
        *c.camera_field() = "cam".into();
        c
    }

    #[test]
    fn a_replayed_file_runs_once_flat_out_without_watchdogs() {
        let SourceConfig::Ffmpeg(c) = ffmpeg("video/vtest.avi").for_replay().unwrap() else {
            panic!("ffmpeg")
        };
        assert!(!c.realtime);
        assert_eq!(c.at_end, AtEnd::Finish);
        assert_eq!(
            (c.offline_after_ms, c.stall_after_ms),
            (REPLAY_NO_WATCHDOG_MS, REPLAY_NO_WATCHDOG_MS)
        );
    }

    #[test]
    fn only_video_files_can_be_replayed() {
        let e = ffmpeg("rtsp://10.0.0.7/sub").for_replay().unwrap_err();
        assert!(
            matches!(&e, SourceError::Config { camera, problems } if &**camera == "cam" && problems.contains("video files only")),
            "{e}"
        );
    }

    #[test]
    fn relative_file_and_directory_paths_follow_the_config_file_and_urls_do_not() {
        let base = Path::new("/etc/edge-agent");
        let mut f = ffmpeg("video/vtest.avi");
        f.resolve_paths(base);
        let SourceConfig::Ffmpeg(c) = &f else {
            panic!("ffmpeg")
        };
        assert_eq!(c.input.expose(), "/etc/edge-agent/video/vtest.avi");
        let mut u = ffmpeg("rtsp://10.0.0.7/sub");
        u.resolve_paths(base);
        let SourceConfig::Ffmpeg(c) = &u else {
            panic!("ffmpeg")
        };
        assert_eq!(c.input.expose(), "rtsp://10.0.0.7/sub");
        let mut d: SourceConfig = toml::from_str("kind = \"dir\"\npath = \"/srv/ftp\"\n").unwrap();
        d.resolve_paths(base);
        let SourceConfig::Dir(c) = &d else {
            panic!("dir")
        };
        assert_eq!(c.path, Path::new("/srv/ftp"), "absolute paths are kept");
    }
}
