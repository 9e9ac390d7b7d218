//! Uplink drain rate after an outage: how fast a full outbox empties into a real mosquitto.
//!
//! `cargo bench -p edge-agent --bench drain` (set `DRAIN_ALERTS` to change the count, default
//! 20,000; the goal is at least 5,000 alerts/s).
//!
//! 1. The outage: `N` alerts with 20 KB snapshots (`edge-tools emit`'s alerts) are appended to a
//!    sled outbox in a temporary directory while nothing listens on the broker's port. Each
//!    append is flushed to disk, as the uplink does it; their latency is reported.
//! 2. For MQTT 5 and then 3.1.1, on its own copy of that outbox: mosquitto is started, then the
//!    [`Uplink`] (defaults: `inflight` 200) with its input already closed and
//!    `drain_until_empty`, as `edge-tools emit` runs it. Timed from the uplink's start to the
//!    outbox being empty (acked and deleted); `total_s` also counts its goodbye and disconnect.
//!
//! The broker has no subscriber (it acknowledges and drops), so this is the agent's side of a
//! replay: outbox reads, MQTT encoding, loopback TCP, mosquitto's PUBACKs, outbox deletes. The
//! agent, the broker and this harness share the machine's cores.
//!
//! Output: `outbox fill alerts=N append_p50_us=… append_p99_us=…`, then per MQTT version
//! `drain mqtt=V alerts=N snapshot_bytes=20000 seconds=… alerts_per_s=… mb_per_s=…` (MB of
//! stored alert records, 10^6 bytes).

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use edge_agent::outbox::{Outbox, OutboxConfig};
use edge_agent::uplink::{HealthReporter, MqttVersion, Uplink, UplinkConfig};
use testkit::emitted::{BASE_MS, make_alert};
use testkit::mosquitto::Mosquitto;
use tokio::sync::mpsc;

const DEFAULT_N: u64 = 20_000;
const SNAPSHOT_BYTES: usize = 20_000;
const SITE: &str = "bench";
/// Room for 20,000 alerts of ~27 KB (the default cap, 256 MiB, holds ~9,800).
const MAX_BYTES: u64 = 4 << 30;
/// Give up on a drain after this long.
const DRAIN_LIMIT: Duration = Duration::from_secs(600);

fn outbox_config() -> OutboxConfig {
    OutboxConfig {
        max_bytes: MAX_BYTES,
        ..OutboxConfig::default()
    }
}

fn percentile_us(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

/// Copies the (closed) sled directory `from` to `to`, so each run drains the same outbox.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create copy");
    for entry in std::fs::read_dir(from).expect("read outbox dir") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy outbox file");
        }
    }
}

/// Fills `dir` with `n` alerts while no broker is reachable; returns the append latencies.
fn fill(dir: &Path, n: u64) -> Vec<Duration> {
    let mut outbox = Outbox::open(dir, outbox_config()).expect("open outbox");
    let mut latencies = Vec::with_capacity(n as usize);
    for i in 0..n {
        let alert = make_alert(SITE, BASE_MS, i, SNAPSHOT_BYTES);
        let t = Instant::now();
        outbox
            .append(&alert, protocol::UtcMillis::now().0)
            .expect("append");
        latencies.push(t.elapsed());
    }
    assert_eq!(outbox.len() as u64, n);
    latencies
}

/// One drain of the outbox at `dir` into a fresh broker; prints its line.
async fn drain(dir: &Path, n: u64, version: MqttVersion) {
    let outbox = Outbox::open(dir, outbox_config()).expect("reopen outbox");
    assert_eq!(outbox.len() as u64, n, "the copy holds every alert");
    let bytes = outbox.bytes();
    let broker = Mosquitto::start().await;
    let mut config = UplinkConfig::new("127.0.0.1", broker.port());
    config.mqtt_version = version;
    let health = HealthReporter::new(protocol::UtcMillis::now().0, None, dir.to_path_buf());
    let mut uplink =
        Uplink::new(config, SITE, outbox, MAX_BYTES, health, None).expect("uplink config");
    uplink.drain_until_empty();
    let stats = uplink.stats();
    // Nothing new comes in: the input is closed from the start.
    let (_, rx) = mpsc::channel(1);

    let started = Instant::now();
    let task = tokio::spawn(uplink.run(rx));
    let mut emptied = None;
    while !task.is_finished() {
        if emptied.is_none() && stats.outbox().depth == 0 {
            emptied = Some(started.elapsed());
        }
        assert!(
            started.elapsed() < DRAIN_LIMIT,
            "drain not done after {DRAIN_LIMIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let left = task.await.expect("uplink task").expect("uplink run");
    let total = started.elapsed();
    assert_eq!(left.depth, 0, "outbox empty after the drain");
    let acked = stats.acked.load(Ordering::Relaxed);
    assert!(acked >= n, "acked {acked} of {n}");
    let seconds = emptied.unwrap_or(total).as_secs_f64();
    let name = match version {
        MqttVersion::V5 => "5",
        MqttVersion::V311 => "3.1.1",
    };
    println!(
        "drain mqtt={name} alerts={n} snapshot_bytes={SNAPSHOT_BYTES} seconds={seconds:.3} \
         alerts_per_s={:.0} mb_per_s={:.1} total_s={:.3} published={} reconnects={}",
        n as f64 / seconds,
        bytes as f64 / 1e6 / seconds,
        total.as_secs_f64(),
        stats.published.load(Ordering::Relaxed),
        stats.reconnects.load(Ordering::Relaxed),
    );
}

fn main() {
    let n: u64 = std::env::var("DRAIN_ALERTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_N);
    let work = tempfile::tempdir().expect("temporary directory");
    let filled = work.path().join("filled");

    let mut latencies = fill(&filled, n);
    latencies.sort();
    println!(
        "outbox fill alerts={n} append_p50_us={:.0} append_p99_us={:.0}",
        percentile_us(&latencies, 0.50),
        percentile_us(&latencies, 0.99),
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    for (version, name) in [(MqttVersion::V5, "v5"), (MqttVersion::V311, "v311")] {
        let dir = work.path().join(name);
        copy_dir(&filled, &dir);
        runtime.block_on(drain(&dir, n, version));
        std::fs::remove_dir_all(&dir).expect("remove drained copy");
    }
}
