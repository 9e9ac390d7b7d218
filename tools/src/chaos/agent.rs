//! [`AgentProcess`]: the agent under test, `edge-tools emit` as a child process, and its
//! config.
//!
//! `emit` appends alerts `resume..count` (made by [`super::make_alert`]) to its outbox and
//! publishes them through the uplink; it keeps its progress on disk, so a run killed with
//! `SIGKILL` and started again resumes, and it exits 0 once all are appended and its outbox is
//! empty. Every run appends its stdout and stderr to `agent.log`.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};

use tokio::process::{Child, Command};
use tracing::{info, warn};

use super::broker::tail;
use super::{ChaosConfig, ChaosError, SITE};

/// The agent's MQTT client id.
const CLIENT_ID: &str = "chaos-agent";
/// Outbox cap: far above the largest run (10 000 alerts of 20 kB is ~270 MB), so no alert is
/// ever evicted and every loss is a delivery loss.
const OUTBOX_MAX_BYTES: i64 = 1 << 30;

/// Writes `<work>/agent.toml` for an agent publishing to the broker on `port`.
pub(super) fn write_config(work: &Path, port: u16) -> Result<PathBuf, ChaosError> {
    let path = work.join("agent.toml");
    std::fs::write(&path, config_text(&work.join("agent-data"), port)?).map_err(|source| {
        ChaosError::Io {
            what: "writing",
            path: path.clone(),
            source,
        }
    })?;
    Ok(path)
}

/// The agent config: no cameras, one (unused) tag reader, the uplink to the broker, a large
/// outbox. Built as a TOML
/// table so any path is quoted correctly.
fn config_text(data_dir: &Path, port: u16) -> Result<String, ChaosError> {
    let data_dir = data_dir.to_str().ok_or_else(|| {
        ChaosError::AgentConfig(format!("data_dir {} is not UTF-8", data_dir.display()))
    })?;
    let mut uplink = toml::Table::new();
    uplink.insert("host".into(), "127.0.0.1".into());
    uplink.insert("port".into(), i64::from(port).into());
    uplink.insert("client_id".into(), CLIENT_ID.into());
    let mut outbox = toml::Table::new();
    outbox.insert("max_bytes".into(), OUTBOX_MAX_BYTES.into());
    let mut config = toml::Table::new();
    config.insert("site".into(), SITE.into());
    config.insert("data_dir".into(), data_dir.into());
    config.insert("cameras".into(), toml::Value::Array(Vec::new()));
    // A box needs a camera or a tag reader to be a valid config; `emit` starts neither, so a
    // reader on an ephemeral loopback port satisfies the check without binding anything.
    let mut reader = toml::Table::new();
    reader.insert("kind".into(), "tcp".into());
    reader.insert("listen".into(), "127.0.0.1:0".into());
    config.insert(
        "tag_readers".into(),
        toml::Value::Array(vec![reader.into()]),
    );
    config.insert("uplink".into(), uplink.into());
    config.insert("outbox".into(), outbox.into());
    let text = toml::to_string(&config).map_err(|e| ChaosError::AgentConfig(e.to_string()))?;
    Ok(format!(
        "# Written by `edge-tools chaos` for `edge-tools emit`.\n{text}"
    ))
}

/// The agent child process across its restarts.
#[derive(Debug)]
pub(super) struct AgentProcess {
    program: PathBuf,
    args: Vec<String>,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    /// How the current run ended, once it did on its own.
    exit: Option<ExitStatus>,
    starts: u32,
}

impl AgentProcess {
    pub(super) fn new(cfg: &ChaosConfig, config: PathBuf, log: PathBuf) -> Self {
        Self {
            program: cfg.agent_program.clone(),
            args: [
                "--count".into(),
                cfg.count.to_string(),
                "--snapshot-bytes".into(),
                cfg.snapshot_bytes.to_string(),
                "--base-ms".into(),
                cfg.base_ms.to_string(),
            ]
            .into_iter()
            .chain(
                cfg.agent_rate
                    .into_iter()
                    .flat_map(|r| ["--rate".to_string(), r.to_string()]),
            )
            .collect(),
            config,
            log,
            child: None,
            exit: None,
            starts: 0,
        }
    }

    /// Starts a new run of `emit` (after the previous one ended or was killed).
    pub(super) fn spawn(&mut self) -> Result<(), ChaosError> {
        let open_log = || super::append_log(&self.log);
        let child = Command::new(&self.program)
            .arg("emit")
            .arg("--config")
            .arg(&self.config)
            .args(&self.args)
            // Plain text in agent.log, no colour escapes.
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(open_log()?)
            .stderr(open_log()?)
            // A harness that panics or is interrupted must not leave an agent publishing.
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| ChaosError::Spawn {
                program: self.program.clone(),
                source,
            })?;
        self.starts += 1;
        info!(
            message = "Agent started.",
            pid = child.id(),
            start = self.starts
        );
        self.child = Some(child);
        self.exit = None;
        Ok(())
    }

    /// SIGKILLs the current run (no chance to flush or say goodbye) and reaps it. Returns
    /// whether it was still running.
    pub(super) async fn kill(&mut self) -> bool {
        if let Err(e) = self.poll_exit() {
            warn!(message = "Could not check the agent.", error = %e);
        }
        let running = self.child.is_some();
        if let Some(mut child) = self.child.take() {
            let pid = child.id();
            // `kill` sends SIGKILL on Unix; an already exited child is just reaped.
            if let Err(e) = child.kill().await {
                warn!(message = "Could not kill the agent.", pid, error = %e);
            }
            info!(message = "Agent killed.", pid);
        }
        self.exit = None;
        running
    }

    /// The current run's exit status once it ended on its own.
    pub(super) fn poll_exit(&mut self) -> Result<Option<ExitStatus>, ChaosError> {
        if let Some(child) = self.child.as_mut()
            && let Some(status) = child.try_wait().map_err(|source| ChaosError::Io {
                what: "waiting for the agent",
                path: self.program.clone(),
                source,
            })?
        {
            info!(message = "Agent exited.", status = %status);
            self.child = None;
            self.exit = Some(status);
        }
        Ok(self.exit)
    }

    /// The current run ended on its own with status 0.
    pub(super) fn exited_ok(&self) -> bool {
        self.exit.is_some_and(|s| s.success())
    }

    /// For progress lines.
    pub(super) fn state(&self) -> String {
        match (&self.child, self.exit) {
            (Some(_), _) => format!("running(start {})", self.starts),
            (None, Some(s)) => format!("exited({s})"),
            (None, None) => "stopped".into(),
        }
    }

    /// Ends the run: an agent still running (time limit, harness failure) is killed. Returns
    /// how its last run ended, for the report.
    pub(super) async fn finish(&mut self) -> String {
        if let Err(e) = self.poll_exit() {
            warn!(message = "Could not check the agent.", error = %e);
        }
        if self.child.is_some() {
            self.kill().await;
            return "still running at the end; killed".into();
        }
        match self.exit {
            Some(s) if s.success() => format!("exited 0 after {} start(s)", self.starts),
            Some(s) => format!("exited with {s} on its own (see agent.log)"),
            None => "never started".into(),
        }
    }

    /// Agent processes started.
    pub(super) fn starts(&self) -> u32 {
        self.starts
    }

    /// The last `lines` lines of `agent.log`.
    pub(super) fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_config_names_the_broker_and_the_data_dir() {
        let text = config_text(Path::new("/w/agent \"data\""), 41883).unwrap();
        let table: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(table["site"].as_str(), Some("chaos"));
        assert_eq!(table["data_dir"].as_str(), Some("/w/agent \"data\""));
        assert_eq!(table["cameras"].as_array().map(Vec::len), Some(0));
        assert_eq!(table["uplink"]["host"].as_str(), Some("127.0.0.1"));
        assert_eq!(table["uplink"]["port"].as_integer(), Some(41883));
        assert_eq!(table["uplink"]["client_id"].as_str(), Some("chaos-agent"));
        assert_eq!(table["outbox"]["max_bytes"].as_integer(), Some(1 << 30));
    }
}
