//! The test kit: what the tests of every crate in the workspace share, kept once.
//!
//! | module | what |
//! |---|---|
//! | [`alert`] | [`AlertBuilder`]: a valid alert in one line, changed where the test cares |
//! | [`emitted`] | the deterministic alerts `edge-tools emit` sends, known before they are sent |
//! | [`certs`] | a CA and the leaves it signs (rcgen) |
//! | [`mosquitto`] | a real mosquitto on a free port, killable and restartable |
//! | [`fake_mqtt5`] | a minimal MQTT 5 broker whose PUBACK reason codes the test chooses |
//! | [`mqtt_wire`] | hand-made MQTT packets, written apart from the hub's codec |
//! | [`rtsp`] | an RTSP camera (ffmpeg and a small relay) serving a real clip |
//! | [`tmpfs`] | a small tmpfs to fill, for disk-full tests |
//! | [`logs`] | every log line of the test process, to check what must never be logged |
//! | here | [`free_port`], [`wait_port`], [`eventually`]; paths: [`repo`], [`shared`], [`vtest`], [`sample_frames`] |
//!
//! A kit for tests panics on a broken environment (a missing mosquitto, an unbindable port)
//! with a message that says what is missing: a test must fail loudly, never skip quietly.

// Panicking is how a test kit reports; the workspace denies these lints for the daemons.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod alert;
pub mod certs;
pub mod emitted;
pub mod fake_mqtt5;
pub mod logs;
pub mod mosquitto;
pub mod mqtt_wire;
pub mod rtsp;
pub mod tmpfs;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use alert::AlertBuilder;

/// A TCP port nobody listens on right now on 127.0.0.1 (the OS picks it; a tiny window for a
/// race remains until the caller binds it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind a free port")
        .local_addr()
        .expect("local address")
        .port()
}

/// Waits (up to 10 s) until something accepts connections on 127.0.0.1:`port`; panics
/// otherwise.
pub async fn wait_port(port: u16) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing listens on 127.0.0.1:{port} after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `f` holds, polling every 20 ms, at most `within`; false on timeout (the
/// caller asserts, with what it saw).
pub async fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if f() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit lies in the repository")
        .to_path_buf()
}

/// The sample clip: the copy `cargo xtask setup` keeps in `.cache/samples`, else the shared one.
pub fn vtest() -> PathBuf {
    let local = repo().join(".cache/samples/vtest.avi");
    if local.is_file() {
        local
    } else {
        shared("samples/video/vtest.avi")
    }
}

/// The sample frames: the shared COCO stills, else the stills `cargo xtask setup` cut from
/// the clip into `.cache/samples/frames`.
pub fn sample_frames() -> PathBuf {
    let dir = shared("samples/frames");
    if dir.is_dir() {
        dir
    } else {
        repo().join(".cache/samples/frames")
    }
}

/// The `shared` directory beside the repository (model, sample frames, video), joined with
/// `relative`.
pub fn shared(relative: impl AsRef<Path>) -> PathBuf {
    repo()
        .parent()
        .expect("the repository has a parent directory")
        .join("shared")
        .join(relative)
}

/// The bytes of a file under [`shared`]; panics naming the file when it cannot be read.
pub fn shared_bytes(relative: impl AsRef<Path>) -> Vec<u8> {
    let path = shared(relative);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_free_port_can_be_bound_and_wait_port_sees_the_listener() {
        let port = free_port();
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        wait_port(port).await;
        drop(listener);
    }

    #[tokio::test]
    async fn eventually_is_false_when_the_condition_never_holds() {
        assert!(!eventually(Duration::from_millis(60), || false).await);
        let mut n = 0;
        assert!(
            eventually(Duration::from_secs(5), || {
                n += 1;
                n == 3
            })
            .await
        );
    }

    #[test]
    fn the_sample_paths_exist() {
        assert!(sample_frames().is_dir(), "{}", sample_frames().display());
        assert!(vtest().is_file(), "{}", vtest().display());
        assert!(repo().join("Cargo.toml").is_file());
    }
}
