//! A real mosquitto broker for integration tests, on a free loopback port, started by the test.
//!
//! `Mosquitto::start()` (anonymous), `Mosquitto::start_with_user(user, password)` (password
//! file made with `mosquitto_passwd`) or `Mosquitto::start_with_config(extra_lines)` (anonymous,
//! with more config lines: a TLS listener on another [`crate::free_port`], persistence, limits) write
//! a config into a temporary directory, spawn
//! `mosquitto -c <config>` and return once the port accepts connections. `kill()` stops it
//! (SIGKILL: an outage, not a clean shutdown); `restart()` starts it again on the same port.
//! The broker is killed when the value is dropped. Its log (stdout and stderr) is kept in the
//! temporary directory and included in panics.
//!
//! mosquitto is a set-up requirement (Debian package `mosquitto`): a missing binary fails the
//! test with a message saying so, rather than skipping it.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tempfile::TempDir;
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::time::{Instant, sleep};

use crate::free_port;

/// How long a broker may take to accept connections after being spawned.
const START_TIMEOUT: Duration = Duration::from_secs(5);

/// A running (or killed, restartable) mosquitto.
#[derive(Debug)]
pub struct Mosquitto {
    port: u16,
    dir: TempDir,
    config: PathBuf,
    child: Option<Child>,
}

impl Mosquitto {
    /// A broker allowing anonymous clients.
    pub async fn start() -> Self {
        Self::start_with("allow_anonymous true\n", None, "").await
    }

    /// A broker that accepts only `user` with `password`.
    pub async fn start_with_user(user: &str, password: &str) -> Self {
        Self::start_with("allow_anonymous false\n", Some((user, password)), "").await
    }

    /// A broker allowing anonymous clients, with `extra_lines` appended to its config: more
    /// listeners (each with its own port, e.g. a TLS one with `cafile`, `certfile`, `keyfile`),
    /// `persistence true` with a `persistence_location`, queue limits. mosquitto takes the last
    /// value of a repeated boolean option, so `persistence true` overrides the default `false`.
    /// Only the main [`Mosquitto::port`] is waited for; mosquitto opens every listener before it
    /// serves any, so the others are up too.
    pub async fn start_with_config(extra_lines: &str) -> Self {
        Self::start_with("allow_anonymous true\n", None, extra_lines).await
    }

    async fn start_with(auth: &str, login: Option<(&str, &str)>, extra_lines: &str) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory for mosquitto");
        let port = free_port();
        let log = dir.path().join("mosquitto.log");
        // Logged to the file, not stdout: mosquitto's stdout is block-buffered in a file, so
        // tests could not wait for a line to appear.
        let mut config = format!(
            "listener {port} 127.0.0.1\n\
             {auth}\
             persistence false\n\
             log_dest file {log}\n\
             log_type all\n\
             # As root, mosquitto would switch to the `mosquitto` user, which cannot read this\n\
             # temporary directory; as anyone else this line has no effect.\n\
             user root\n",
            log = log.display(),
        );
        if let Some((user, password)) = login {
            let file = dir.path().join("passwd");
            make_password_file(&file, user, password);
            config.push_str(&format!("password_file {}\n", file.display()));
        }
        config.push_str(extra_lines);
        if !extra_lines.is_empty() && !extra_lines.ends_with('\n') {
            config.push('\n');
        }
        let config_path = dir.path().join("mosquitto.conf");
        std::fs::write(&config_path, config).expect("write mosquitto.conf");
        let mut broker = Self {
            port,
            dir,
            config: config_path,
            child: None,
        };
        broker.restart().await;
        broker
    }

    /// The port it listens on, on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Everything the broker has logged so far (all runs).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }

    /// Kills the broker (SIGKILL) and waits until it is gone. Clients see their connections
    /// reset.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("kill mosquitto");
        }
    }

    /// Starts the broker (again) on the same port and waits until it accepts connections.
    pub async fn restart(&mut self) {
        self.kill().await;
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join("mosquitto.log"))
            .expect("open mosquitto.log");
        let program = mosquitto_program();
        let child = Command::new(&program)
            .arg("-c")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        self.child = Some(child);
        self.wait_until_listening().await;
    }

    async fn wait_until_listening(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if TcpStream::connect(("127.0.0.1", self.port)).await.is_ok() {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "mosquitto exited with {status} before listening on port {}; log:\n{}",
                    self.port,
                    self.log()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "mosquitto not listening on port {} after {START_TIMEOUT:?}; log:\n{}",
                    self.port,
                    self.log()
                );
            }
            sleep(Duration::from_millis(10)).await;
        }
    }
}

/// `$MOSQUITTO`, else `mosquitto` on `PATH`, else the Debian package's `/usr/sbin/mosquitto`
/// (`/usr/sbin` is often not on a normal user's `PATH`).
fn mosquitto_program() -> PathBuf {
    if let Some(p) = std::env::var_os("MOSQUITTO") {
        return PathBuf::from(p);
    }
    find_program("mosquitto", &["/usr/sbin", "/usr/local/sbin"]).unwrap_or_else(|| {
        panic!(
            "mosquitto not found on PATH or in /usr/sbin: the MQTT tests need a real broker; \
             install the Debian package `mosquitto` (or set MOSQUITTO=/path/to/mosquitto)"
        )
    })
}

fn find_program(name: &str, extra_dirs: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(extra_dirs.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

fn make_password_file(file: &Path, user: &str, password: &str) {
    let program =
        find_program("mosquitto_passwd", &["/usr/bin", "/usr/sbin"]).unwrap_or_else(|| {
            panic!("mosquitto_passwd not found: install the Debian package `mosquitto`")
        });
    let out = std::process::Command::new(&program)
        .args(["-c", "-b"])
        .arg(file)
        .args([user, password])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    assert!(
        out.status.success(),
        "mosquitto_passwd failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // mosquitto warns about (and later versions refuse) password files others can read.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600))
            .expect("chmod password file");
    }
}
