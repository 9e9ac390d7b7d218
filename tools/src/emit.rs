//! `edge-tools emit`: the agent under test in the chaos harness and the hub's kill test.
//!
//! Appends the deterministic alerts of [`testkit::emitted`] to the config's outbox and
//! delivers them through the agent's own uplink, exactly as `edge-agent run` delivers, and
//! keeps a progress file so that a run killed with SIGKILL resumes where it stopped.

use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use edge_agent::agent::AgentConfig;
use edge_agent::pipeline::Output;
use edge_agent::uplink::UplinkConfig;
use tokio::sync::mpsc;
use tracing::info;

/// Alerts between the loop and the uplink; the loop waits when it is full.
const QUEUE: usize = 64;

/// `edge-tools emit`: synthetic alerts through the real outbox and uplink (the chaos test's
/// agent). Appends alerts `next..count` (resuming where a killed run stopped), then delivers
/// until the outbox is empty.
pub async fn run(
    config: &AgentConfig,
    count: u64,
    snapshot_bytes: usize,
    base_ms: i64,
    rate: f64,
) -> anyhow::Result<()> {
    let uplink_config: UplinkConfig = config
        .uplink
        .clone()
        .context("emit needs an [uplink] section in the config")?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("data_dir {}: cannot create", config.data_dir.display()))?;
    let progress = config.data_dir.join("emit.next");
    let next = match std::fs::read_to_string(&progress) {
        Ok(t) => t
            .trim()
            .parse::<u64>()
            .with_context(|| format!("{}: not a number", progress.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(e).with_context(|| format!("reading {}", progress.display())),
    };
    // The uplink logs the outbox's depth when it opens it.
    let uplink = edge_agent::service::tool_uplink(config, uplink_config, &config.data_dir)?;
    info!(message = "Emit starting.", next, count);
    let (tx, rx) = mpsc::channel(QUEUE);
    let uplink_task = tokio::spawn(uplink.run(rx));
    let site = config.site.clone();
    let interval = (rate > 0.0).then(|| Duration::from_secs_f64(1.0 / rate));
    for i in next..count {
        let alert = testkit::emitted::make_alert(&site, base_ms, i, snapshot_bytes);
        if tx.send(Output::Alert(Box::new(alert))).await.is_err() {
            anyhow::bail!("uplink stopped early");
        }
        // The uplink appends (and flushes) in order; progress may run ahead of the outbox by
        // the channel's depth, so it is written as "appended up to here" only after the
        // channel has room again — a crash re-emits a few (duplicates), never skips one.
        let done = i + 1;
        if done % 50 == 0 || done == count {
            write_progress(&progress, done.saturating_sub(QUEUE as u64 + 1).max(next))?;
        }
        if let Some(d) = interval {
            tokio::time::sleep(d).await;
        }
    }
    drop(tx);
    let left = uplink_task.await.context("uplink task")??;
    write_progress(&progress, count)?;
    println!("emit: count={count} left_in_outbox={}", left.depth);
    if left.depth > 0 {
        anyhow::bail!("{} alerts left in the outbox", left.depth);
    }
    Ok(())
}

/// Writes the emit progress atomically (temp file, fsync, rename).
fn write_progress(path: &Path, next: u64) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f =
        std::fs::File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
    writeln!(f, "{next}")?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}
