//! Outbox append latency and drain rate from disk, with realistic 20 KB snapshots.
//!
//! `cargo bench -p edge-agent --bench outbox` (set `OUTBOX_BENCH_N` to change the count).
//! Every append is flushed to disk before it returns, so its latency is the disk's sync
//! latency plus serialisation; the drain reads alerts back in order and acks them, which is
//! the outbox's side of replay after an outage (the network's side is measured elsewhere).
//! The last line is machine-readable.

use std::time::{Duration, Instant};

use edge_agent::outbox::{Outbox, OutboxConfig};
use protocol::{Alert, UtcMillis};
use testkit::AlertBuilder;

const DEFAULT_N: usize = 2_000;
const SNAPSHOT_BYTES: usize = 20_000;
/// Alerts read back per `pending` call while draining, like an uplink's in-flight window.
const DRAIN_BATCH: usize = 100;

fn alert(n: usize) -> Alert {
    AlertBuilder::new("bench", n as u64)
        .at(UtcMillis(1_700_000_000_000 + n as i64))
        .rule("zone-1")
        // Varied bytes, as a JPEG's are.
        .snapshot(
            (0..SNAPSHOT_BYTES)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8 ^ n as u8)
                .collect(),
        )
        .build()
}

fn percentile_us(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

fn main() {
    let n: usize = std::env::var("OUTBOX_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_N);
    let dir = tempfile::tempdir().expect("temporary directory");
    // Sized so nothing is evicted: eviction is measured by the tests, not here (the default
    // 256 MiB cap holds fewer than 10,000 of these alerts).
    let config = OutboxConfig {
        max_bytes: (n as u64 * 64 * 1024).max(OutboxConfig::default().max_bytes),
        ..OutboxConfig::default()
    };
    let mut outbox = Outbox::open(dir.path().join("outbox"), config).expect("open outbox");

    let mut latencies = Vec::with_capacity(n);
    let started = Instant::now();
    for i in 0..n {
        let a = alert(i);
        let t = Instant::now();
        outbox.append(&a, 1_700_000_000_000).expect("append");
        latencies.push(t.elapsed());
    }
    let append_total = started.elapsed();
    let bytes = outbox.bytes();

    let started = Instant::now();
    let mut after = None;
    let mut drained = 0usize;
    loop {
        let batch = outbox.pending(after, DRAIN_BATCH).expect("pending");
        let Some(&(last, _)) = batch.last() else {
            break;
        };
        for (seq, _) in &batch {
            outbox.ack(*seq).expect("ack");
        }
        drained += batch.len();
        after = Some(last);
    }
    outbox.flush().expect("flush");
    let drain_total = started.elapsed();
    assert_eq!(drained, n, "every alert read back");
    assert!(outbox.is_empty());

    latencies.sort();
    let p50 = percentile_us(&latencies, 0.50);
    let p99 = percentile_us(&latencies, 0.99);
    let max = latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1e6);
    let appends_per_s = n as f64 / append_total.as_secs_f64();
    let drain_per_s = n as f64 / drain_total.as_secs_f64();
    println!(
        "{n} appends of {} KB records ({:.1} MB): p50 {p50:.0} µs, p99 {p99:.0} µs, max {max:.0} µs, {appends_per_s:.0} appends/s",
        bytes / n.max(1) as u64 / 1024,
        bytes as f64 / 1e6
    );
    println!(
        "drain (read back in batches of {DRAIN_BATCH} + ack): {:.1} ms, {drain_per_s:.0} alerts/s",
        drain_total.as_secs_f64() * 1e3
    );
    println!(
        "outbox append_p50_us={p50:.0} append_p99_us={p99:.0} appends_per_s={appends_per_s:.0} drain_per_s={drain_per_s:.0}"
    );
}
