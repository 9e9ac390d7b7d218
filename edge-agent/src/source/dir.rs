//! [`DirSource`]: a watched directory a camera pushes JPEGs into (FTP upload is common).
//!
//! The directory is *polled* every `poll_ms` rather than watched with inotify: no extra
//! dependency; inotify sees nothing on network and FUSE mounts, where an FTP server's storage
//! often lives; and deciding that an upload is complete needs a periodic size check anyway
//! (`IN_CLOSE_WRITE` never comes for an upload whose client died, and some servers write in
//! several opens). A poll costs one `readdir` and a `stat` per file: nothing at this size.
//!
//! Readiness: a `*.jpg` / `*.jpeg` file (any case; dot-files, which FTP servers and clients use
//! for uploads in progress, are ignored) is read only once its size and mtime have stayed the
//! same across two consecutive polls, so an upload still being written is never read half
//! done. An empty file must stay empty for [`EMPTY_STABLE_POLLS`] polls (an upload whose first
//! bytes are slow to come), then is rejected like any corrupt file. Ready files are taken in
//! (mtime, name) order and handed on at most `fps` a second; if more than `max_backlog` wait,
//! the oldest are dropped undecoded (counted), since a detector that has fallen behind wants
//! the freshest image.
//!
//! After reading, every file leaves the directory so it never grows forever and nothing is
//! read twice: `after_read = "delete"`, or `"move"` into `done/` (good files) and `rejected/`
//! (corrupt ones) — something else must then prune those. A corrupt or oversized file skips
//! that one frame (counted, logged with its name). A file that cannot be removed is logged as
//! an error and not read again while it stays unchanged.
//!
//! Health: a directory that cannot be listed is a [`SourceEvent::Failed`] with back-off; with
//! no new good file for `offline_after_ms`, [`SourceEvent::Offline`]; `Online` before the next
//! one. Set `offline_after_ms` above the camera's upload interval: a camera that uploads only on
//! motion needs a periodic upload too, or it will look offline whenever nothing moves.

use std::collections::{HashMap, HashSet, VecDeque};
use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until};
use tracing::{debug, error, warn};

use super::health::{
    CommonFields, FrameError, FrameMaker, Health, check_config, head, sleep_until_opt,
};
use super::{FrameSource, SourceCounters, SourceError, SourceEvent};

/// Polls an empty file must stay empty before it is treated as complete (and rejected).
pub(crate) const EMPTY_STABLE_POLLS: u32 = 10;
/// Subfolder for files read successfully, with `after_read = "move"`.
pub(crate) const DONE_DIR: &str = "done";
/// Subfolder for corrupt files, with `after_read = "move"`.
pub(crate) const REJECTED_DIR: &str = "rejected";

/// What happens to a file once it has been read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AfterRead {
    /// Delete it (corrupt files too): nothing accumulates on the box.
    #[default]
    Delete,
    /// Move it into `done/`, or `rejected/` if corrupt, for inspection; a file of the same
    /// name already there is replaced.
    Move,
}

/// What went wrong with the directory or one of its files.
#[derive(Debug, thiserror::Error)]
pub enum DirError {
    #[error("cannot list the directory: {0}")]
    List(#[source] io::Error),
    #[error("cannot read the file: {0}")]
    Read(#[source] io::Error),
    #[error("file of {size} bytes is over max_file_bytes {limit}; refused without decoding")]
    TooLarge { size: u64, limit: u64 },
    #[error("not a usable JPEG ({error}); {len} bytes starting {head}")]
    Image {
        error: FrameError,
        len: usize,
        head: String,
    },
    #[error(
        "cannot {action} after reading it: {source}; it stays in the directory (not read again while unchanged)"
    )]
    AfterRead {
        action: &'static str,
        #[source]
        source: io::Error,
    },
}

/// One camera read from a directory it uploads JPEGs into.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DirSourceConfig {
    /// The camera's id, used in events, errors and logs.
    pub camera: String,
    /// The directory the camera uploads into (one directory per camera).
    pub path: PathBuf,
    /// Most files handed to the detector per second; a burst of uploads is paced at this rate.
    /// Also the rate `pts_ms` assumes (`seq · 1000 / fps`).
    pub fps: f64,
    /// Working width in pixels (even); wider images are scaled down keeping the aspect ratio
    /// (even height), narrower ones are kept as they are.
    pub width: u32,
    /// How often the directory is listed. A file is read after its size has stayed the same
    /// for two listings, so this also sets the delay before a new upload is seen.
    pub poll_ms: u64,
    /// What happens to a file after it is read.
    pub after_read: AfterRead,
    /// Largest accepted file; a larger one is rejected without being read.
    pub max_file_bytes: u64,
    /// Most ready files kept waiting; beyond this the oldest are dropped undecoded.
    pub max_backlog: usize,
    /// With no new good file for this long, [`SourceEvent::Offline`] is raised. Must exceed
    /// the camera's upload interval.
    pub offline_after_ms: u64,
    /// First retry delay after the directory could not be listed; doubles per failure.
    pub backoff_min_ms: u64,
    /// Cap on the retry delay.
    pub backoff_max_ms: u64,
}

impl Default for DirSourceConfig {
    fn default() -> Self {
        Self {
            camera: String::new(),
            path: PathBuf::new(),
            fps: 5.0,
            width: 640,
            poll_ms: 500,
            after_read: AfterRead::Delete,
            max_file_bytes: 20 << 20,
            max_backlog: 50,
            offline_after_ms: 60_000,
            backoff_min_ms: 500,
            backoff_max_ms: 30_000,
        }
    }
}

impl DirSourceConfig {
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
        if self.path.as_os_str().is_empty() {
            errors.push("path: must not be empty".to_string());
        }
        if self.poll_ms < 10 {
            errors.push(format!(
                "poll_ms: must be at least 10, got {}",
                self.poll_ms
            ));
        } else if self.offline_after_ms > 0 && self.offline_after_ms <= 2 * self.poll_ms {
            // A file needs two polls to be read: anything shorter reports every camera offline.
            errors.push(format!(
                "offline_after_ms: must exceed two polls ({} ms), got {}",
                2 * self.poll_ms,
                self.offline_after_ms
            ));
        }
        if self.max_file_bytes < 1024 {
            errors.push(format!(
                "max_file_bytes: must be at least 1024, got {}",
                self.max_file_bytes
            ));
        }
        if self.max_backlog == 0 {
            errors.push("max_backlog: must be at least 1".to_string());
        }
        errors
    }
}

// ---------------------------------------------------------------------------------------------
// Readiness (pure)

/// A file as one listing saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Listed {
    pub name: OsString,
    pub size: u64,
    pub mtime: SystemTime,
}

#[derive(Debug)]
struct Seen {
    size: u64,
    mtime: SystemTime,
    /// Consecutive polls that saw the same size and mtime.
    stable_polls: u32,
    /// Already returned as ready; not again while unchanged.
    handed: bool,
}

/// Decides, from consecutive listings, which files are complete.
#[derive(Debug, Default)]
pub(crate) struct Readiness {
    seen: HashMap<OsString, Seen>,
}

impl Readiness {
    /// Takes one poll's listing; returns the files that became ready, in (mtime, name) order.
    pub(crate) fn observe(&mut self, listing: Vec<Listed>) -> Vec<Listed> {
        let mut present = HashSet::with_capacity(listing.len());
        let mut ready = Vec::new();
        for file in listing {
            let seen = self
                .seen
                .entry(file.name.clone())
                .and_modify(|s| {
                    if s.size == file.size && s.mtime == file.mtime {
                        s.stable_polls = s.stable_polls.saturating_add(1);
                    } else {
                        // Still being written, or replaced after being read: start over.
                        *s = Seen {
                            size: file.size,
                            mtime: file.mtime,
                            stable_polls: 0,
                            handed: false,
                        };
                    }
                })
                .or_insert(Seen {
                    size: file.size,
                    mtime: file.mtime,
                    stable_polls: 0,
                    handed: false,
                });
            let needed = if file.size == 0 {
                EMPTY_STABLE_POLLS
            } else {
                1
            };
            if !seen.handed && seen.stable_polls >= needed {
                seen.handed = true;
                ready.push(file.clone());
            }
            present.insert(file.name);
        }
        // Forget files that are gone, so the map is bounded by the directory.
        self.seen.retain(|name, _| present.contains(name));
        ready.sort_by(|a, b| (a.mtime, &a.name).cmp(&(b.mtime, &b.name)));
        ready
    }
}

/// Whether a directory entry name is an upload to consider.
fn is_jpeg_name(name: &OsStr) -> bool {
    let Some(name) = name.to_str() else {
        return false;
    };
    let lower = name.to_ascii_lowercase();
    !name.starts_with('.') && (lower.ends_with(".jpg") || lower.ends_with(".jpeg"))
}

/// Lists the candidate files (blocking; run on the blocking pool).
fn list(dir: &Path) -> io::Result<Vec<Listed>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if !is_jpeg_name(&name) {
            continue;
        }
        // Gone between readdir and stat (just read by someone else): skip it.
        let Ok(meta) = entry.metadata() else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        out.push(Listed {
            name,
            size: meta.len(),
            mtime: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        });
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// The source

/// A directory a camera uploads JPEGs into; see the module docs.
#[derive(Debug)]
pub struct DirSource {
    config: DirSourceConfig,
    health: Health,
    maker: FrameMaker,
    shutdown: watch::Receiver<bool>,
    readiness: Readiness,
    /// Ready files not yet read, oldest first.
    queue: VecDeque<Listed>,
    next_poll: Instant,
    /// Earliest time the next file may be handed on (pacing at `fps`).
    next_emit: Instant,
    /// Whether the last listing failed, so a good one clears the back-off.
    listing_failed: bool,
}

impl DirSource {
    /// A source for `config` that stops when `shutdown` becomes `true` (or its sender is
    /// dropped). The directory is first listed on the first [`FrameSource::next_event`].
    pub fn new(
        config: DirSourceConfig,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Self, SourceError> {
        check_config(&config.camera, config.validate())?;
        let now = Instant::now();
        let (health, maker) = config.common().parts();
        Ok(Self {
            health,
            maker,
            shutdown,
            readiness: Readiness::default(),
            queue: VecDeque::new(),
            next_poll: now,
            next_emit: now,
            listing_failed: false,
            config,
        })
    }

    pub fn config(&self) -> &DirSourceConfig {
        &self.config
    }

    /// The source's counters, shared: read them while the source runs.
    pub fn counters(&self) -> Arc<SourceCounters> {
        self.health.counters().clone()
    }

    /// The last failure or bad file, as text, until a good file arrives.
    pub fn last_error(&self) -> Option<&str> {
        self.health.last_error()
    }

    fn shutting_down(&self) -> bool {
        *self.shutdown.borrow() || self.shutdown.has_changed().is_err()
    }

    fn error(&self, path: PathBuf, error: DirError) -> SourceError {
        SourceError::Dir {
            camera: self.health.camera().clone(),
            path,
            error: Box::new(error),
        }
    }

    /// Lists the directory and queues the files that became ready.
    async fn poll(&mut self) -> io::Result<()> {
        let dir = self.config.path.clone();
        let listing = tokio::task::spawn_blocking(move || list(&dir))
            .await
            .map_err(io::Error::other)??;
        let ready = self.readiness.observe(listing);
        if !ready.is_empty() {
            debug!(message = "Files ready.", camera = %self.health.camera(), count = ready.len());
        }
        self.queue.extend(ready);
        let excess = self.queue.len().saturating_sub(self.config.max_backlog);
        if excess > 0 {
            warn!(
                message = "Uploads arrive faster than fps; dropping the oldest undecoded.",
                camera = %self.health.camera(),
                dropped = excess,
                fps = self.config.fps
            );
        }
        for file in self.queue.drain(..excess).collect::<Vec<_>>() {
            self.health.counters().add_dropped();
            // Dropped files are fine, just late: they go where good files go.
            self.dispose(&file.name, true).await;
        }
        Ok(())
    }

    /// Removes a read file from the directory as `after_read` says; logs when it cannot.
    async fn dispose(&self, name: &OsStr, good: bool) {
        let path = self.config.path.join(name);
        let (action, result) = match self.config.after_read {
            AfterRead::Delete => ("delete it", tokio::fs::remove_file(&path).await),
            AfterRead::Move => {
                let (action, sub) = if good {
                    ("move it to done/", DONE_DIR)
                } else {
                    ("move it to rejected/", REJECTED_DIR)
                };
                let dir = self.config.path.join(sub);
                let result = match tokio::fs::create_dir_all(&dir).await {
                    Ok(()) => tokio::fs::rename(&path, dir.join(name)).await,
                    Err(e) => Err(e),
                };
                (action, result)
            }
        };
        match result {
            Ok(()) => {}
            // Someone else removed it: the goal is met.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                let error = self.error(path, DirError::AfterRead { action, source });
                // An operator must act: the directory will fill up.
                error!(message = "Cannot clear a read file.", camera = %self.health.camera(), %error);
            }
        }
    }

    /// A bad file: counted, logged with its name, moved out of the way. Never a failure of
    /// the source: the next upload may be fine.
    async fn reject(&mut self, file: &Listed, error: DirError) {
        let error = self.error(self.config.path.join(&file.name), error);
        self.health.skip_bad(&error);
        self.dispose(&file.name, false).await;
    }

    /// Reads and decodes the oldest ready file; a frame event if it was good.
    async fn read_next(&mut self) -> Option<SourceEvent> {
        let file = self.queue.pop_front()?;
        let limit = self.config.max_file_bytes;
        if file.size > limit {
            let error = DirError::TooLarge {
                size: file.size,
                limit,
            };
            self.reject(&file, error).await;
            return None;
        }
        let path = self.config.path.join(&file.name);
        let bytes = match read_bounded(&path, limit).await {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                debug!(message = "Ready file vanished before reading.", camera = %self.health.camera(), path = %path.display());
                return None;
            }
            Err(e) => {
                self.reject(&file, DirError::Read(e)).await;
                return None;
            }
        };
        if bytes.len() as u64 > limit {
            let error = DirError::TooLarge {
                size: bytes.len() as u64,
                limit,
            };
            self.reject(&file, error).await;
            return None;
        }
        match self.maker.make(&bytes) {
            Ok(image) => {
                self.dispose(&file.name, true).await;
                self.next_emit = Instant::now() + Duration::from_secs_f64(1.0 / self.config.fps);
                Some(self.health.on_frame(image))
            }
            Err(error) => {
                let error = DirError::Image {
                    error,
                    len: bytes.len(),
                    head: head(&bytes),
                };
                self.reject(&file, error).await;
                None
            }
        }
    }
}

/// Reads at most `limit + 1` bytes of `path`: the listed size may be stale, and a file that
/// kept growing must not be read into memory whole.
async fn read_bounded(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let file = tokio::fs::File::open(path).await?;
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .await?;
    Ok(bytes)
}

enum Wake {
    Shutdown,
    Offline,
    Work,
}

impl FrameSource for DirSource {
    fn camera(&self) -> &str {
        self.health.camera()
    }

    async fn next_event(&mut self) -> Option<SourceEvent> {
        let poll_every = Duration::from_millis(self.config.poll_ms);
        loop {
            if self.shutting_down() {
                return None;
            }
            if let Some(event) = self.health.take_pending() {
                return Some(event);
            }
            let offline_at = self.health.offline_at();
            let wake_at = if self.queue.is_empty() {
                self.next_poll
            } else {
                self.next_poll.min(self.next_emit)
            };
            let wake = tokio::select! {
                biased;
                _ = self.shutdown.changed() => Wake::Shutdown,
                () = sleep_until_opt(offline_at) => Wake::Offline,
                () = sleep_until(wake_at) => Wake::Work,
            };
            match wake {
                // A changed-but-false value loops back to the check above.
                Wake::Shutdown => continue,
                Wake::Offline => {
                    let quiet = format!("no new file for {} ms", self.config.offline_after_ms);
                    return Some(self.health.go_offline(&quiet));
                }
                Wake::Work => {}
            }
            let now = Instant::now();
            if now >= self.next_poll {
                match self.poll().await {
                    Ok(()) => {
                        self.next_poll = now + poll_every;
                        if std::mem::take(&mut self.listing_failed) {
                            self.health.clear_failures();
                        }
                    }
                    Err(e) => {
                        let error = self.error(self.config.path.clone(), DirError::List(e));
                        let (event, retry_at) = self.health.fail(error);
                        self.next_poll = retry_at;
                        self.listing_failed = true;
                        return Some(event);
                    }
                }
            }
            if !self.queue.is_empty()
                && Instant::now() >= self.next_emit
                && let Some(event) = self.read_next().await
            {
                return Some(event);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, size: u64, mtime_s: u64) -> Listed {
        Listed {
            name: name.into(),
            size,
            mtime: SystemTime::UNIX_EPOCH + Duration::from_secs(mtime_s),
        }
    }

    fn names(files: &[Listed]) -> Vec<&str> {
        files.iter().map(|f| f.name.to_str().unwrap()).collect()
    }

    #[test]
    fn a_file_is_ready_once_its_size_is_unchanged_across_two_polls() {
        let mut r = Readiness::default();
        assert!(r.observe(vec![file("a.jpg", 100, 1)]).is_empty());
        // Still growing.
        assert!(r.observe(vec![file("a.jpg", 200, 2)]).is_empty());
        assert!(r.observe(vec![file("a.jpg", 300, 3)]).is_empty());
        // Settled.
        assert_eq!(names(&r.observe(vec![file("a.jpg", 300, 3)])), ["a.jpg"]);
        // Handed out once only, however long it stays.
        assert!(r.observe(vec![file("a.jpg", 300, 3)]).is_empty());
        // Replaced by a new upload of the same name: read again once settled.
        assert!(r.observe(vec![file("a.jpg", 50, 9)]).is_empty());
        assert_eq!(names(&r.observe(vec![file("a.jpg", 50, 9)])), ["a.jpg"]);
    }

    #[test]
    fn a_touched_file_of_the_same_size_is_not_ready_until_its_mtime_settles() {
        let mut r = Readiness::default();
        r.observe(vec![file("a.jpg", 100, 1)]);
        assert!(r.observe(vec![file("a.jpg", 100, 2)]).is_empty());
        assert_eq!(r.observe(vec![file("a.jpg", 100, 2)]).len(), 1);
    }

    #[test]
    fn ready_files_come_in_mtime_then_name_order() {
        let mut r = Readiness::default();
        let listing = vec![
            file("c.jpg", 1, 5),
            file("b.jpg", 1, 5),
            file("a.jpg", 1, 9),
            file("z.jpg", 1, 1),
        ];
        r.observe(listing.clone());
        assert_eq!(
            names(&r.observe(listing)),
            ["z.jpg", "b.jpg", "c.jpg", "a.jpg"]
        );
    }

    #[test]
    fn an_empty_file_waits_longer_and_gone_files_are_forgotten() {
        let mut r = Readiness::default();
        for _ in 0..EMPTY_STABLE_POLLS {
            assert!(r.observe(vec![file("e.jpg", 0, 1)]).is_empty());
        }
        assert_eq!(r.observe(vec![file("e.jpg", 0, 1)]).len(), 1);
        r.observe(vec![file("x.jpg", 5, 1)]);
        assert_eq!(r.seen.len(), 1, "e.jpg forgotten once gone");
    }

    #[test]
    fn only_visible_jpeg_names_are_considered() {
        for (name, ok) in [
            ("a.jpg", true),
            ("B.JPEG", true),
            ("c.Jpg", true),
            (".a.jpg", false),
            ("a.jpg.part", false),
            ("a.png", false),
            ("jpg", false),
        ] {
            assert_eq!(is_jpeg_name(OsStr::new(name)), ok, "{name}");
        }
    }

    #[test]
    fn validation_lists_every_problem_with_its_path() {
        let c = DirSourceConfig {
            poll_ms: 400,
            offline_after_ms: 500,
            max_backlog: 0,
            width: 3,
            ..DirSourceConfig::default()
        };
        let errors = c.validate();
        for path in [
            "camera:",
            "path:",
            "offline_after_ms:",
            "max_backlog:",
            "width:",
        ] {
            assert!(
                errors.iter().any(|e| e.starts_with(path)),
                "no error for {path} in {errors:#?}"
            );
        }
        assert_eq!(errors.len(), 5, "{errors:#?}");
        let ok: DirSourceConfig = serde_json::from_str(
            r#"{"camera": "c", "path": "/srv/ftp/cam1", "after_read": "move"}"#,
        )
        .unwrap();
        assert_eq!(ok.after_read, AfterRead::Move);
        assert!(ok.validate().is_empty());
        let err = serde_json::from_str::<DirSourceConfig>(r#"{"camera": "c", "after": "x"}"#)
            .unwrap_err();
        assert!(err.to_string().contains("after"), "{err}");
    }
}
