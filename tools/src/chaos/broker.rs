//! [`Broker`]: the real mosquitto the chaos run publishes through, on a free loopback port,
//! with a persistent database in the work dir, stopped gracefully and restarted on the same
//! port.
//!
//! Why each config line (mosquitto.conf(5), mosquitto 2.0):
//!
//! - `persistence true` + `persistence_location`: the database (sessions, subscriptions,
//!   queued and in-flight messages) is written when mosquitto exits and reloaded at start, so
//!   the subscriber's persistent session and what was queued for it survive an outage.
//! - `autosave_interval 1` with `autosave_on_changes false`: also saved every second, which
//!   narrows what a stop that has to be forced (SIGKILL) can lose. A graceful stop saves anyway.
//! - `max_queued_messages 0`, `max_queued_bytes 0`: no per-client queue limit. Over the limit
//!   mosquitto drops QoS 1 messages for the subscriber silently, which would show up as loss
//!   that is not the agent's.
//! - `max_inflight_messages 100`: QoS 1 messages in flight to the subscriber at once (default
//!   20), so delivery keeps up with the agent; ordering does not matter here.
//! - `max_packet_size` 4 MiB bounds packets: an oversized packet disconnects its sender, which
//!   is visible. Not `message_size_limit`: an oversized payload is PUBACKed and then dropped
//!   (silent loss again), and mosquitto 2 deprecates it in favour of `max_packet_size`.
//! - `user root`: as root, mosquitto would otherwise switch to the `mosquitto` user, which
//!   cannot write the work dir; as anyone else the line has no effect.
//!
//! Stopping: `SIGTERM` (graceful: the database is written) through the `kill` program, since
//! the standard library and tokio can only send `SIGKILL` and `unsafe` is denied here. A broker
//! that has not exited [`STOP_TIMEOUT`] later is killed, and the stop reported as forced.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::time::{Instant, sleep, timeout};
use tracing::{info, warn};

use super::ChaosError;

/// How long mosquitto may take to listen after being started (it loads its database first).
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a graceful stop (writing the database) may take before it is forced.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest MQTT packet the broker accepts: a 1 MiB snapshot is 1.4 MB of base64.
const MAX_PACKET_BYTES: usize = 4 << 20;

/// How a stop went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StopKind {
    /// Exited after SIGTERM (database written), or was not running.
    Graceful,
    /// Had to be killed: what it acknowledged since its last autosave may be gone.
    Forced,
}

/// A mosquitto child process and its files.
#[derive(Debug)]
pub(super) struct Broker {
    program: PathBuf,
    kill_program: PathBuf,
    port: u16,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Broker {
    /// Writes the config into `work`, starts mosquitto and waits until it listens.
    pub(super) async fn start(work: &Path) -> Result<Self, ChaosError> {
        let program = find_program("mosquitto", &["/usr/sbin", "/usr/local/sbin"], "MOSQUITTO")
            .ok_or(ChaosError::MosquittoMissing)?;
        let kill_program =
            find_program("kill", &["/bin", "/usr/bin"], "").ok_or(ChaosError::KillMissing)?;
        let port = free_port().map_err(|source| ChaosError::Io {
            what: "finding a free port on",
            path: PathBuf::from("127.0.0.1"),
            source,
        })?;
        let data = work.join("mosquitto");
        std::fs::create_dir_all(&data).map_err(|source| ChaosError::Io {
            what: "creating",
            path: data.clone(),
            source,
        })?;
        let log = work.join("mosquitto.log");
        let config = work.join("mosquitto.conf");
        std::fs::write(&config, config_text(port, &data, &log)).map_err(|source| {
            ChaosError::Io {
                what: "writing",
                path: config.clone(),
                source,
            }
        })?;
        let mut broker = Self {
            program,
            kill_program,
            port,
            config,
            log,
            child: None,
        };
        broker.restart().await?;
        Ok(broker)
    }

    /// The port it listens on, on 127.0.0.1.
    pub(super) fn port(&self) -> u16 {
        self.port
    }

    /// Whether a broker process is running (started and not stopped).
    pub(super) fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Starts mosquitto (again) on the same port and waits until it accepts connections.
    pub(super) async fn restart(&mut self) -> Result<(), ChaosError> {
        if self.child.is_some() {
            self.stop().await?;
        }
        let open_log = || super::append_log(&self.log);
        // Its stdout and stderr too: a config error is printed there before logging starts.
        let child = Command::new(&self.program)
            .arg("-c")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(open_log()?)
            .stderr(open_log()?)
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| ChaosError::Spawn {
                program: self.program.clone(),
                source,
            })?;
        info!(
            message = "Broker started.",
            pid = child.id(),
            port = self.port
        );
        self.child = Some(child);
        self.wait_until_listening().await
    }

    async fn wait_until_listening(&mut self) -> Result<(), ChaosError> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if TcpStream::connect(("127.0.0.1", self.port)).await.is_ok() {
                return Ok(());
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(self.error(format!("exited with {status} before listening")));
            }
            if Instant::now() > deadline {
                return Err(self.error(format!("not listening after {START_TIMEOUT:?}")));
            }
            sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the broker gracefully (SIGTERM: it writes its database and exits), forcing it
    /// after [`STOP_TIMEOUT`].
    pub(super) async fn stop(&mut self) -> Result<StopKind, ChaosError> {
        let Some(mut child) = self.child.take() else {
            return Ok(StopKind::Graceful);
        };
        let Some(pid) = child.id() else {
            // Already reaped: nothing left to stop.
            return Ok(StopKind::Graceful);
        };
        let signalled = Command::new(&self.kill_program)
            .args(["-TERM", &pid.to_string()])
            .stdin(Stdio::null())
            .status()
            .await
            .map_err(|source| ChaosError::Spawn {
                program: self.kill_program.clone(),
                source,
            })?;
        if !signalled.success() {
            warn!(message = "kill -TERM failed; the broker may have exited already.", pid, status = %signalled);
        }
        match timeout(STOP_TIMEOUT, child.wait()).await {
            Ok(Ok(status)) => {
                info!(message = "Broker stopped.", pid, status = %status);
                Ok(StopKind::Graceful)
            }
            Ok(Err(e)) => Err(self.error(format!("waiting for it to stop: {e}"))),
            Err(_) => {
                warn!(
                    message = "Broker ignored SIGTERM; killing it.",
                    pid,
                    timeout_s = STOP_TIMEOUT.as_secs()
                );
                if let Err(e) = child.kill().await {
                    return Err(self.error(format!("cannot kill it: {e}")));
                }
                Ok(StopKind::Forced)
            }
        }
    }

    /// The last `lines` lines of its log.
    pub(super) fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }

    fn error(&self, problem: String) -> ChaosError {
        ChaosError::Broker {
            port: self.port,
            problem,
            log_tail: self.log_tail(20),
        }
    }
}

fn config_text(port: u16, data: &Path, log: &Path) -> String {
    format!(
        "# Written by `edge-tools chaos`; why each line: tools/src/chaos/broker.rs.\n\
         listener {port} 127.0.0.1\n\
         allow_anonymous true\n\
         persistence true\n\
         persistence_location {data}/\n\
         persistence_file mosquitto.db\n\
         autosave_interval 1\n\
         autosave_on_changes false\n\
         max_queued_messages 0\n\
         max_queued_bytes 0\n\
         max_inflight_messages 100\n\
         max_packet_size {MAX_PACKET_BYTES}\n\
         log_dest file {log}\n\
         log_type error\n\
         log_type warning\n\
         log_type notice\n\
         log_type information\n\
         log_timestamp_format %Y-%m-%dT%H:%M:%S\n\
         user root\n",
        data = data.display(),
        log = log.display(),
    )
}

/// A port nobody listens on right now (the OS picks it; a small window for a race remains).
fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// `$env_var` if set, else `name` on `PATH`, else in `extra_dirs` (`/usr/sbin` is often not on
/// a normal user's `PATH`).
fn find_program(name: &str, extra_dirs: &[&str], env_var: &str) -> Option<PathBuf> {
    if !env_var.is_empty()
        && let Some(p) = std::env::var_os(env_var)
    {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(extra_dirs.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The last `lines` lines of a text file (empty if unreadable).
pub(super) fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_keeps_everything_for_the_persistent_subscriber() {
        let text = config_text(1883, Path::new("/w/mosquitto"), Path::new("/w/m.log"));
        for line in [
            "listener 1883 127.0.0.1",
            "persistence true",
            "persistence_location /w/mosquitto/",
            "max_queued_messages 0",
            "max_queued_bytes 0",
            "max_packet_size 4194304",
            "log_dest file /w/m.log",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} missing:\n{text}");
        }
    }
}
