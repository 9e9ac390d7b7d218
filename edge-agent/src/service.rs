//! The daemon around the pipeline: what `edge-agent run` starts (and the uplink
//! the tools deliver through: `replay --deliver`, `edge-tools emit`).
//!
//! ```text
//! Agent (cameras, tag readers, rules) ──Output──▶ Uplink ──▶ Outbox (sled) ──▶ broker
//!        ▲                                           │
//!        └──────────── ApplyCommand ◀── hub commands ┘ (gate, store)
//! metrics (/metrics) reads AgentStats + UplinkStats; systemd gets READY / WATCHDOG / STOPPING
//! ```
//!
//! Shutdown: the first SIGTERM (or SIGINT) stops intake (sources and readers end, the core
//! finishes what it holds), so the agent's output closes; the uplink then delivers what is in
//! the outbox for up to `uplink.shutdown_drain_ms`, says `offline` and disconnects, and the
//! process exits 0. Whatever is not delivered stays on disk for the next start. A second signal
//! exits at once (code 130); the outbox is consistent at every point, so nothing is lost then
//! either, only not yet sent.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::agent::{Agent, AgentConfig, Mode};
use crate::command::{CommandGate, CommandStore};
use crate::detect::Model;
use crate::metrics::{self, MetricsSource};
use crate::outbox::Outbox;
use crate::pipeline::Output;
use crate::uplink::{Commands, HealthReporter, Uplink, UplinkConfig, outbox_dir};

/// Output channel depth between the core and the uplink: the core waits when it is full.
const OUTPUT_QUEUE: usize = 64;
/// Commands waiting for the core.
const COMMAND_QUEUE: usize = 16;

/// Where the hub's persisted commands live.
pub fn commands_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("commands")
}

/// `edge-agent run`: the whole box until a signal.
pub async fn run(
    mut config: AgentConfig,
    model: Arc<Model>,
    alerts_out: Option<&Path>,
) -> anyhow::Result<()> {
    let started_ms = protocol::UtcMillis::now().0;
    let started = Instant::now();
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("data_dir {}: cannot create", config.data_dir.display()))?;

    // Hub commands persisted by earlier runs apply before anything is built from the config.
    let commands_config = config.uplink.as_ref().and_then(|u| u.commands.clone());
    let store = match &commands_config {
        Some(_) => {
            let store = CommandStore::open(commands_dir(&config.data_dir))?;
            let cameras = config
                .cameras
                .iter_mut()
                .map(|c| (c.id.as_str(), &mut c.rules));
            for warning in store.overrides().apply_to(&mut config.tag_rules, cameras) {
                warn!(message = "A persisted hub command no longer applies.", detail = %warning);
            }
            Some(store)
        }
        None => None,
    };
    let outbox = Outbox::open(outbox_dir(&config.data_dir), config.outbox.clone())?;

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut agent = Agent::new(config.clone(), model, Mode::Live, shutdown_rx.clone()).await?;
    let stats = agent.stats();
    let health = HealthReporter::new(started_ms, Some(stats.clone()), config.data_dir.clone());

    let (out_tx, out_rx) = mpsc::channel(OUTPUT_QUEUE);
    let uplink = match &config.uplink {
        Some(u) => {
            let commands = match (&u.commands, store) {
                (Some(c), Some(store)) => {
                    let key = protocol::command::parse_verifying_key(&c.public_key)?;
                    let gate = CommandGate::new(
                        config.site.clone(),
                        key,
                        i64::try_from(c.max_age_s.saturating_mul(1000)).unwrap_or(i64::MAX),
                        i64::try_from(c.max_future_s.saturating_mul(1000)).unwrap_or(i64::MAX),
                        store.last_seq(),
                    );
                    let (apply_tx, apply_rx) = mpsc::channel(COMMAND_QUEUE);
                    agent.accept_commands(apply_rx);
                    Some(Commands {
                        gate,
                        store,
                        apply: apply_tx,
                    })
                }
                _ => None,
            };
            Uplink::new(
                u.clone(),
                &config.site,
                outbox,
                config.outbox.max_bytes,
                health,
                commands,
            )?
        }
        None => {
            warn!(
                message = "No [uplink] configured: alerts are kept in the outbox and not sent.",
                outbox = %outbox_dir(&config.data_dir).display(),
            );
            // An uplink to nowhere would retry forever; store only.
            return run_without_uplink(agent, outbox, alerts_out, shutdown_tx).await;
        }
    };
    let uplink_stats = uplink.stats();

    if let Some(m) = &config.metrics {
        let addr = m.listen.parse().context("metrics.listen")?;
        metrics::serve(
            addr,
            MetricsSource {
                agent: Some(stats.clone()),
                uplink: uplink_stats.clone(),
                data_dir: config.data_dir.clone(),
                started,
            },
            shutdown_rx.clone(),
        )
        .await?;
    }

    let agent_task = tokio::spawn(agent.run(tee(out_tx, alerts_out)?));
    let uplink_task = tokio::spawn(uplink.run(out_rx));
    systemd_ready(shutdown_rx.clone());
    spawn_signal_handler(shutdown_tx);
    // The uplink ends after the agent's output closes, or first on a storage failure: then the
    // process exits non-zero (and systemd restarts it) instead of a core blocked on a dead
    // uplink.
    let outbox = uplink_task.await.context("uplink task")??;
    systemd_notify(&[sd_notify::NotifyState::Stopping]);
    agent_task.await.context("agent task")??;
    info!(
        message = "Agent stopped.",
        outbox_left = outbox.depth,
        acked = uplink_stats
            .acked
            .load(std::sync::atomic::Ordering::Relaxed),
    );
    Ok(())
}

/// Without an uplink: alerts go to the outbox (and `--alerts-out`) only.
async fn run_without_uplink(
    agent: Agent,
    mut outbox: Outbox,
    alerts_out: Option<&Path>,
    shutdown_tx: watch::Sender<bool>,
) -> anyhow::Result<()> {
    let (tx, mut rx) = mpsc::channel(OUTPUT_QUEUE);
    let agent_task = tokio::spawn(agent.run(tee(tx, alerts_out)?));
    systemd_ready(shutdown_tx.subscribe());
    spawn_signal_handler(shutdown_tx);
    while let Some(o) = rx.recv().await {
        if let Output::Alert(a) = o
            && let Err(e) = outbox.append(&a, protocol::UtcMillis::now().0)
        {
            tracing::error!(message = "Alert could not be stored.", id = %a.id, error = %e);
        }
    }
    outbox.flush()?;
    systemd_notify(&[sd_notify::NotifyState::Stopping]);
    agent_task.await.context("agent task")??;
    Ok(())
}

/// With `--alerts-out`, a task between the core and the uplink that also appends every alert
/// to the file as a JSON line; otherwise the uplink's sender itself.
fn tee(
    to: mpsc::Sender<Output>,
    alerts_out: Option<&Path>,
) -> anyhow::Result<mpsc::Sender<Output>> {
    let Some(path) = alerts_out else {
        return Ok(to);
    };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let path = path.to_path_buf();
    let (tx, mut rx) = mpsc::channel::<Output>(OUTPUT_QUEUE);
    tokio::spawn(async move {
        while let Some(o) = rx.recv().await {
            if let Output::Alert(a) = &o {
                let line = serde_json::to_string(a).unwrap_or_default();
                if let Err(e) = writeln!(file, "{line}") {
                    warn!(message = "Could not append to --alerts-out.", path = %path.display(), error = %e);
                }
            }
            if to.send(o).await.is_err() {
                break;
            }
        }
    });
    Ok(tx)
}

/// First signal: shutdown. Second: exit at once.
fn spawn_signal_handler(shutdown_tx: watch::Sender<bool>) {
    tokio::spawn(async move {
        wait_for_signal().await;
        info!(message = "Shutting down: intake stopped, delivering the outbox.");
        systemd_notify(&[sd_notify::NotifyState::Stopping]);
        let _ = shutdown_tx.send(true);
        wait_for_signal().await;
        warn!(message = "Second signal: exiting now; undelivered alerts stay in the outbox.");
        std::process::exit(130);
    });
}

/// SIGINT or SIGTERM.
pub async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async {
            match term.as_mut() {
                Some(t) => { t.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => {}
    }
}

/// Tells systemd we are ready, and keeps its watchdog fed while the runtime is alive (a stuck
/// runtime stops the pings and systemd restarts the unit).
fn systemd_ready(mut shutdown: watch::Receiver<bool>) {
    systemd_notify(&[sd_notify::NotifyState::Ready]);
    if let Some(period) = sd_notify::watchdog_enabled() {
        let every = period / 2;
        info!(
            message = "systemd watchdog enabled.",
            ping_every_ms = every.as_millis() as u64
        );
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every.max(Duration::from_millis(100)));
            loop {
                tokio::select! {
                    _ = tick.tick() => systemd_notify(&[sd_notify::NotifyState::Watchdog]),
                    () = stopping(&mut shutdown) => {
                        // Keep feeding it while draining; the stop timeout bounds the drain.
                        loop {
                            tick.tick().await;
                            systemd_notify(&[sd_notify::NotifyState::Watchdog]);
                        }
                    }
                }
            }
        });
    }
}

/// Completes when shutdown is requested (the guard `wait_for` returns is not `Send`, so it is
/// dropped inside this future).
async fn stopping(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

/// Sends `state` to systemd's notify socket; a no-op outside systemd.
fn systemd_notify(state: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(state) {
        warn!(message = "systemd notification failed.", error = %e);
    }
}

/// An uplink for the tools (`replay --deliver`, `edge-tools emit`): the config's site and outbox bounds,
/// the outbox in `data_dir`, no commands, delivering until the outbox is empty.
pub fn tool_uplink(
    config: &AgentConfig,
    uplink: UplinkConfig,
    data_dir: &Path,
) -> anyhow::Result<Uplink> {
    let outbox = Outbox::open(outbox_dir(data_dir), config.outbox.clone())?;
    let health = HealthReporter::new(protocol::UtcMillis::now().0, None, data_dir.to_path_buf());
    let mut uplink = Uplink::new(
        uplink,
        &config.site,
        outbox,
        config.outbox.max_bytes,
        health,
        None,
    )?;
    uplink.drain_until_empty();
    Ok(uplink)
}
