//! Sustained alert ingest through the hub's embedded broker, end to end: published by sites
//! over MQTT 5 (QoS 1) → gateway → stored (group commit, before the PUBACK) → located in the
//! Wuding grid → case opened → notification pushed on `se/v1/person/{id}/notify`, received by a
//! service subscriber. Latency is push received − publish call, for the first push of each alert.
//!
//! `cargo bench -p hub --bench ingest [-- --alerts N --rate R --seconds S --publishers P
//!  --snapshot-bytes B --inflight I --only paced|max --dir PATH --progress --sites N
//!  --heartbeat-s H]`
//!
//! Two kinds of scenario, each run on a fresh hub (its own temp dir and store):
//!
//! - **paced**: `--rate` alerts/s for `--seconds` (default 10), spread over the publishers;
//!   p50/p90/p99/max latency and loss.
//! - **max**: `--alerts` (default 40,000) split over `--publishers` (default 4), each publishing
//!   as fast as its window allows (`--inflight`, default 500 unacknowledged publishes);
//!   throughput in alerts stored (PUBACKed) and fully processed (pushed) per second, over the
//!   whole run and over its middle 80 % (no ramp-up, no drain), and latency under that load.
//!
//! The default run (none of `--only`, `--rate`, `--snapshot-bytes`) is the issue's three
//! figures: **max** without snapshots, **max** with a 40,000-byte JPEG snapshot in every alert
//! (`--alerts` / 4 of them, default 10,000: 400 MB of snapshots), and **paced** at 5,000
//! alerts/s without; each prints its detail lines, and the run ends with
//!
//! ```text
//! alerts_per_s=… with_snapshots_per_s=… p99_ms_at_5000=…
//! ```
//!
//! (pushed per second over the middle 80 % of each max run — stored, located, assigned and
//! pushed — and the paced run's publish-to-push p99; check its `achieved=` rate and `lost=`).
//! With any of those three options the run is as before: paced at `--rate` (default 1,000)
//! and max, both with `--snapshot-bytes` (default 0), `--only` choosing one.
//!
//! A snapshot is a real baseline JPEG (16 × 16 grey) padded to its size with a comment
//! segment: it decodes, and it passes the hub's checks (SOI marker, size bound). Each alert's
//! number is written into the comment, so every snapshot is a new file to write and sync, as a
//! camera's are.
//!
//! With `--sites N`, N more sites (each its own credential, as in a county) connect through the
//! gateway before the alerts start and stay connected, each publishing a QoS 1 status
//! heartbeat every `--heartbeat-s` (default 10) seconds, staggered; a `sites:` line gives how
//! many connected, their connect times, the heartbeats sent, acknowledged and received by the
//! hub, and the heartbeat acknowledgement latency. These sites speak hand-made MQTT 5 over
//! plain sockets (the shared test kit's `mqtt_wire`), so thousands of them cost this process
//! little and the figures are the hub's.
//!
//! Every alert has its own id and track, so each opens its own case and yields a push to each
//! person on duty at micro-grid M01 (the alerts carry a position inside it). Payloads are made
//! from a per-site template with the id and track patched in, so the publishers spend little of
//! the two cores the hub needs. The machine's load average is printed with every figure.
//!
//! Under each scenario's line, `hub:` gives the process's CPU time (hub and bench clients
//! together) and bytes written to storage (`/proc/self`), per alert, and the hub's counters.
//!
//! A plain `main` rather than a harness: the figures wanted are a throughput and a latency
//! distribution, printed once per scenario.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/integration/common.rs"]
mod common;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use testkit::mqtt_wire;

use hub::gateway::auth::sha256_hex;
use hub::service::RunningHub;
use protocol::Severity;
use protocol::alert::Snapshot;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use tempfile::TempDir;
use tokio::io::AsyncWriteExt;

/// Alert `i` of a run has number `N0 + i`: always 16 digits, so the id (`01KAQ5X3MV{n:016}`),
/// the incident and the track can be patched into a template in place.
const N0: u64 = 1_000_000_000_000_000;
const ID_PREFIX: &str = "01KAQ5X3MV";

#[derive(Debug, Clone)]
struct Args {
    alerts: usize,
    rate: u64,
    seconds: f64,
    publishers: usize,
    snapshot_bytes: usize,
    inflight: u16,
    paced: bool,
    max: bool,
    dir: Option<PathBuf>,
    progress: bool,
    /// Extra connected sites sending heartbeats during the run.
    sites: usize,
    heartbeat: Duration,
    /// Give up waiting for the last pushes after this long without progress.
    settle: Duration,
    /// The issue's three scenarios and the summary line (no `--only`, `--rate`,
    /// `--snapshot-bytes`).
    summary: bool,
}

fn args() -> Args {
    let mut a = Args {
        alerts: 40_000,
        rate: 1_000,
        seconds: 10.0,
        publishers: 4,
        snapshot_bytes: 0,
        inflight: 500,
        paced: true,
        max: true,
        dir: None,
        progress: false,
        sites: 0,
        heartbeat: Duration::from_secs(10),
        settle: Duration::from_secs(10),
        summary: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        // `cargo bench` adds `--bench`; ignore what we do not know.
        let mut value = || it.next().unwrap_or_default();
        match arg.as_str() {
            "--alerts" => a.alerts = value().parse().unwrap_or(a.alerts),
            "--rate" => {
                a.rate = value().parse().unwrap_or(a.rate).max(1);
                a.summary = false;
            }
            "--seconds" => a.seconds = value().parse().unwrap_or(a.seconds),
            "--publishers" => a.publishers = value().parse().unwrap_or(a.publishers).max(1),
            "--snapshot-bytes" => {
                a.snapshot_bytes = value().parse().unwrap_or(a.snapshot_bytes);
                a.summary = false;
            }
            "--inflight" => a.inflight = value().parse().unwrap_or(a.inflight).max(1),
            "--settle" => {
                a.settle =
                    Duration::from_secs_f64(value().parse().unwrap_or(a.settle.as_secs_f64()))
            }
            "--dir" => a.dir = Some(PathBuf::from(value())),
            "--progress" => a.progress = true,
            "--sites" => a.sites = value().parse().unwrap_or(a.sites),
            "--heartbeat-s" => {
                a.heartbeat =
                    Duration::from_secs_f64(value().parse().unwrap_or(a.heartbeat.as_secs_f64()))
            }
            "--only" => {
                a.summary = false;
                match value().as_str() {
                    "paced" => a.max = false,
                    "max" => a.paced = false,
                    other => {
                        eprintln!("--only paced|max, not {other:?}");
                        std::process::exit(2);
                    }
                }
            }
            _ => {}
        }
    }
    a
}

/// The hub binary's allocator (`hub/src/main.rs`), so the figures are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args = args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    println!(
        "ingest benchmark: {} publishers (QoS 1, inflight {}), snapshot {} bytes, {} cores, load {}",
        args.publishers,
        args.inflight,
        if args.summary {
            format!("0 / {SUMMARY_SNAPSHOT_BYTES}")
        } else {
            args.snapshot_bytes.to_string()
        },
        std::thread::available_parallelism().map_or(1, usize::from),
        loadavg()
    );
    rt.block_on(async {
        if args.summary {
            // The issue's figures: each scenario on its own fresh hub.
            let max = run(&args, args.alerts, None).await;
            print_max("max, no snapshot", &max);
            let with = Args {
                snapshot_bytes: SUMMARY_SNAPSHOT_BYTES,
                ..args.clone()
            };
            let snap = run(&with, (args.alerts / 4).max(1), None).await;
            print_max(
                &format!("max, {SUMMARY_SNAPSHOT_BYTES}-byte snapshots"),
                &snap,
            );
            let paced = Args {
                rate: SUMMARY_RATE,
                ..args.clone()
            };
            let n = (SUMMARY_RATE as f64 * args.seconds).round().max(1.0) as usize;
            let p = run(&paced, n, Some(SUMMARY_RATE)).await;
            print_paced(SUMMARY_RATE, &p);
            println!(
                "alerts_per_s={:.0} with_snapshots_per_s={:.0} p99_ms_at_{SUMMARY_RATE}={:.1}",
                max.pushed_rate_mid,
                snap.pushed_rate_mid,
                p.push.p99 as f64 / 1e6
            );
            return;
        }
        if args.paced {
            let n = (args.rate as f64 * args.seconds).round().max(1.0) as usize;
            let r = run(&args, n, Some(args.rate)).await;
            print_paced(args.rate, &r);
        }
        if args.max {
            let r = run(&args, args.alerts, None).await;
            print_max("max", &r);
        }
    });
    // rumqttd's threads and sled's flusher do not stop on their own.
    std::process::exit(0);
}

/// The default run's snapshot size and paced rate (the issue's figures).
const SUMMARY_SNAPSHOT_BYTES: usize = 40_000;
const SUMMARY_RATE: u64 = 5_000;

fn print_paced(rate: u64, r: &Report) {
    println!(
        "paced {rate}/s: n={} p50={} p90={} p99={} max={} lost={} | ack p50={} p99={} | \
         published={} acked={} stored={} pushed={} (pushes={}) achieved={:.0}/s | load {}",
        r.published,
        ms(r.push.p50),
        ms(r.push.p90),
        ms(r.push.p99),
        ms(r.push.max),
        r.published.saturating_sub(r.pushed),
        ms(r.ack.p50),
        ms(r.ack.p99),
        r.published,
        r.acked,
        r.stored,
        r.pushed,
        r.pushes,
        r.publish_rate,
        r.load
    );
    r.hub_counters();
}

fn print_max(label: &str, r: &Report) {
    println!(
        "{label}: alerts={} stored={:.0}/s pushed={:.0}/s (middle 80%: stored={:.0}/s \
         pushed={:.0}/s) p50={} p99={} max={} lost={} | ack p50={} p99={} | \
         acked={} stored={} pushed={} (pushes={}) in {:.2} s | load {}",
        r.published,
        r.stored_rate,
        r.pushed_rate,
        r.stored_rate_mid,
        r.pushed_rate_mid,
        ms(r.push.p50),
        ms(r.push.p99),
        ms(r.push.max),
        r.published.saturating_sub(r.pushed),
        ms(r.ack.p50),
        ms(r.ack.p99),
        r.acked,
        r.stored,
        r.pushed,
        r.pushes,
        r.elapsed.as_secs_f64(),
        r.load
    );
    r.hub_counters();
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// This process's CPU time (user + system, all threads) and bytes it has caused to be written
/// to storage, from `/proc/self`; zeros where unavailable.
fn usage() -> (Duration, u64) {
    let cpu = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the `(comm)`: state is field 3, utime 14, stime 15, in clock ticks
            // (100 per second on Linux).
            let rest = s.get(s.rfind(')')? + 2..)?.to_owned();
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
            Some(Duration::from_millis(ticks * 10))
        })
        .unwrap_or_default();
    let written = std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("write_bytes: "))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0);
    (cpu, written)
}

fn ms(ns: u64) -> String {
    format!("{:.1}ms", ns as f64 / 1e6)
}

/// When each alert was published, acknowledged and first pushed: nanoseconds since `base`,
/// plus one (0 = not yet).
struct Timeline {
    base: Instant,
    published: Vec<AtomicU64>,
    acked: Vec<AtomicU64>,
    pushed: Vec<AtomicU64>,
    /// Alerts with at least one push, and pushes in all.
    first_pushes: AtomicU64,
    pushes: AtomicU64,
    /// Pushes for cases this run did not publish.
    strays: AtomicU64,
    acks: AtomicU64,
}

impl Timeline {
    fn new(n: usize) -> Self {
        let v = || (0..n).map(|_| AtomicU64::new(0)).collect();
        Self {
            base: Instant::now(),
            published: v(),
            acked: v(),
            pushed: v(),
            first_pushes: AtomicU64::new(0),
            pushes: AtomicU64::new(0),
            strays: AtomicU64::new(0),
            acks: AtomicU64::new(0),
        }
    }

    fn now(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64 + 1
    }
}

/// A temp hub directory like the tests' (`common::hub_dir`), with one site credential per
/// publisher, each site registered at micro-grid M01.
fn hub_dir(sites: &[String], parent: Option<&Path>) -> (TempDir, PathBuf) {
    let dir = match parent {
        Some(p) => tempfile::tempdir_in(p),
        None => tempfile::tempdir(),
    }
    .expect("temp dir");
    let mut creds = String::new();
    let mut site_tables = String::new();
    let kinds = sites
        .iter()
        .map(|s| ("site", s.as_str()))
        .chain([("service", "svc")]);
    for (kind, id) in kinds {
        creds.push_str(&format!(
            "[[credential]]\nkind = \"{kind}\"\nid = \"{id}\"\ntoken_sha256 = \"{}\"\n",
            sha256_hex(common::token(id).as_bytes())
        ));
        if kind == "site" {
            site_tables.push_str(&format!("[sites.{id}]\ncell = \"{}\"\n", common::M01));
        }
    }
    std::fs::write(dir.path().join("credentials.toml"), creds).unwrap();
    let key = protocol::SigningKey::from_bytes(&[7u8; 32]);
    common::write_key(
        &dir.path().join("signing.key"),
        &protocol::command::encode_signing_key(&key),
    );
    let config = format!(
        r#"
data_dir = "state"
[grid]
file = "{}"
[roster]
dir = "{}"
[broker]
{}
credentials = "credentials.toml"
{site_tables}
[commands]
signing_key_file = "signing.key"
# The default threshold is 5 % of the filesystem, which a big, busy build disk may be under:
# the bench measures ingest, not the disk guard (1 GiB still stops a runaway run).
[storage]
min_free_mb = 1024
"#,
        common::repo().join("configs/hub/wuding.geojson").display(),
        common::repo().join("configs/hub/roster").display(),
        common::EMBEDDED,
    );
    let path = dir.path().join("hub.toml");
    std::fs::write(&path, config).unwrap();
    (dir, path)
}

/// A site's alert JSON with `N0` as its number, and where that number's 16 digits sit (id,
/// incident, track).
struct Template {
    json: Vec<u8>,
    at: Vec<usize>,
    /// Where, in `json`, the base64 of the snapshot's 12 bytes from [`SNAPSHOT_TAG_AT`] sits:
    /// each alert's number goes there, so that every snapshot is its own file, as a camera's
    /// are (identical ones would be stored once and only read back after).
    tag_at: Option<usize>,
}

/// The offset in the padded JPEG of the 12 bytes that make each snapshot unique: inside the
/// first comment segment's zeros, and a multiple of 3, so their base64 is 16 characters of
/// their own.
const SNAPSHOT_TAG_AT: usize = 6;

impl Template {
    fn new(site: &str, snapshot_bytes: usize) -> Self {
        let mut a = common::alert(
            site,
            N0,
            Severity::Major,
            Some((common::DEMO_LON, common::DEMO_LAT)),
        );
        if snapshot_bytes > 0 {
            a.snapshot = Some(Snapshot {
                camera: "cam-1".into(),
                time: a.time,
                width: 16,
                height: 16,
                jpeg: padded_jpeg(snapshot_bytes),
            });
        }
        let json = serde_json::to_vec(&a).unwrap();
        let marker = N0.to_string();
        let at: Vec<usize> = json
            .windows(marker.len())
            .enumerate()
            .filter(|(_, w)| *w == marker.as_bytes())
            .map(|(i, _)| i)
            .collect();
        assert_eq!(at.len(), 3, "the number appears in id, incident and track");
        let tag_at = (snapshot_bytes > 0).then(|| {
            let key = br#""jpeg":""#;
            let start = json.windows(key.len()).position(|w| w == key).unwrap() + key.len();
            let at = start + SNAPSHOT_TAG_AT / 3 * 4;
            assert_eq!(
                &json[at..at + 16],
                b"AAAAAAAAAAAAAAAA",
                "the tag goes over zeros"
            );
            at
        });
        Self { json, at, tag_at }
    }

    fn payload(&self, i: usize) -> Vec<u8> {
        use base64::Engine as _;
        let digits = format!("{:016}", N0 + i as u64);
        let mut p = self.json.clone();
        for &at in &self.at {
            p[at..at + 16].copy_from_slice(digits.as_bytes());
        }
        if let Some(at) = self.tag_at {
            let tag = base64::engine::general_purpose::STANDARD.encode(&digits.as_bytes()[4..]);
            p[at..at + 16].copy_from_slice(tag.as_bytes());
        }
        p
    }
}

/// A 16 × 16 grey baseline JPEG (ffmpeg's encoder, its comment segment dropped): 202 bytes
/// that decode.
const TINY_JPEG: &[u8] = &[
    0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 0x4a, 0x46, 0x49, 0x46, 0x00, 0x01, 0x02, 0x00, 0x00, 0x01,
    0x00, 0x01, 0x00, 0x00, 0xff, 0xdb, 0x00, 0x43, 0x00, 0x08, 0x14, 0x14, 0x17, 0x14, 0x17, 0x1b,
    0x1b, 0x1b, 0x1b, 0x1b, 0x1b, 0x20, 0x1e, 0x20, 0x21, 0x21, 0x21, 0x20, 0x20, 0x20, 0x20, 0x21,
    0x21, 0x21, 0x24, 0x24, 0x24, 0x2a, 0x2a, 0x2a, 0x24, 0x24, 0x24, 0x21, 0x21, 0x24, 0x24, 0x28,
    0x28, 0x2a, 0x2a, 0x2e, 0x2f, 0x2e, 0x2b, 0x2b, 0x2a, 0x2b, 0x2f, 0x2f, 0x32, 0x32, 0x32, 0x3c,
    0x3c, 0x39, 0x39, 0x46, 0x46, 0x48, 0x56, 0x56, 0x67, 0xff, 0xc4, 0x00, 0x4a, 0x00, 0x01, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
    0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x10, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x11, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xc0, 0x00, 0x11, 0x08, 0x00, 0x10, 0x00, 0x10, 0x03, 0x01,
    0x22, 0x00, 0x02, 0x11, 0x00, 0x03, 0x11, 0x00, 0xff, 0xda, 0x00, 0x0c, 0x03, 0x01, 0x00, 0x02,
    0x11, 0x03, 0x11, 0x00, 0x3f, 0x00, 0x00, 0x0f, 0xff, 0xd9,
];

/// [`TINY_JPEG`] grown to `bytes` (when larger) by comment (COM) segments of zeros after its
/// SOI marker, as big as a camera frame and still a JPEG a decoder reads; the zeros' base64
/// (`AAAA`) holds no digits, so the template's number is found only where it belongs.
fn padded_jpeg(bytes: usize) -> Vec<u8> {
    let mut pad = bytes.saturating_sub(TINY_JPEG.len());
    let mut out = TINY_JPEG[..2].to_vec();
    // A segment is its marker (2 bytes), its length (2, counting itself) and ≤ 65,533 bytes;
    // one shorter than 4 bytes cannot exist, so a remainder under 4 is left out.
    while pad >= 4 {
        let body = (pad - 4).min(65_533);
        out.extend([0xff, 0xfe]);
        out.extend(((body + 2) as u16).to_be_bytes());
        out.resize(out.len() + body, 0);
        pad -= body + 4;
    }
    out.extend_from_slice(&TINY_JPEG[2..]);
    out
}

/// A site's MQTT 5 client. Its event loop stamps each PUBACK on the alert it answers: the
/// gateway answers a connection's publishes in order, so the k-th PUBACK is for the k-th
/// publish.
struct Publisher {
    client: AsyncClient,
    topic: String,
    template: Template,
    order: Arc<Mutex<VecDeque<usize>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Publisher {
    async fn connect(port: u16, site: &str, args: &Args, tl: Arc<Timeline>) -> Self {
        let mut o = MqttOptions::new(format!("bench-{site}"), "127.0.0.1", port);
        o.set_keep_alive(Duration::from_secs(30))
            .set_credentials(site, common::token(site))
            .set_max_packet_size(Some(2 * 1024 * 1024))
            .set_outgoing_inflight_upper_limit(args.inflight);
        // A short request queue: a publish call waits for the window rather than queueing
        // out of sight, so its time stamp is close to when it goes on the wire.
        let (client, mut events) = AsyncClient::new(o, 16);
        let order: Arc<Mutex<VecDeque<usize>>> = Arc::default();
        let (connected_tx, connected_rx) = tokio::sync::oneshot::channel();
        let acks = order.clone();
        let site_name = site.to_owned();
        let task = tokio::spawn(async move {
            let mut connected = Some(connected_tx);
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        let now = tl.now();
                        if let Some(i) = acks.lock().unwrap().pop_front() {
                            tl.acked[i].store(now, Relaxed);
                        }
                        tl.acks.fetch_add(1, Relaxed);
                    }
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        if let Some(tx) = connected.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        eprintln!("publisher {site_name}: {e}");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), connected_rx)
            .await
            .expect("publisher connected within 10 s")
            .unwrap();
        Self {
            client,
            topic: format!("se/v1/site/{site}/alert"),
            template: Template::new(site, args.snapshot_bytes),
            order,
            task,
        }
    }

    async fn publish(&self, i: usize, tl: &Timeline) {
        let payload = self.template.payload(i);
        self.order.lock().unwrap().push_back(i);
        tl.published[i].store(tl.now(), Relaxed);
        self.client
            .publish(self.topic.as_str(), QoS::AtLeastOnce, false, payload)
            .await
            .expect("publish queued");
    }
}

/// The service subscriber on every person's notify topic.
struct Subscriber {
    _client: AsyncClient,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Subscriber {
    async fn connect(port: u16, tl: Arc<Timeline>) -> Self {
        let mut o = MqttOptions::new("bench-watcher", "127.0.0.1", port);
        o.set_keep_alive(Duration::from_secs(30))
            .set_credentials("svc", common::token("svc"))
            .set_max_packet_size(Some(2 * 1024 * 1024));
        let (client, mut events) = AsyncClient::new(o, 64);
        client
            .subscribe("se/v1/person/+/notify", QoS::AtLeastOnce)
            .await
            .unwrap();
        let (subscribed_tx, subscribed_rx) = tokio::sync::oneshot::channel();
        let pattern = format!("\"case\":\"C-{ID_PREFIX}").into_bytes();
        let task = tokio::spawn(async move {
            let mut subscribed = Some(subscribed_tx);
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let now = tl.now();
                        tl.pushes.fetch_add(1, Relaxed);
                        match alert_index(&p.payload, &pattern) {
                            Some(i) if i < tl.pushed.len() => {
                                if tl.pushed[i]
                                    .compare_exchange(0, now, Relaxed, Relaxed)
                                    .is_ok()
                                {
                                    tl.first_pushes.fetch_add(1, Relaxed);
                                }
                            }
                            _ => {
                                tl.strays.fetch_add(1, Relaxed);
                            }
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(tx) = subscribed.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        eprintln!("subscriber: {e}");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), subscribed_rx)
            .await
            .expect("subscribed within 10 s")
            .unwrap();
        Self {
            _client: client,
            task,
        }
    }
}

/// The alert number in a notification's case id (`C-{alert id}`), without parsing the JSON.
fn alert_index(payload: &[u8], pattern: &[u8]) -> Option<usize> {
    let at = payload.windows(pattern.len()).position(|w| w == pattern)? + pattern.len();
    let digits = std::str::from_utf8(payload.get(at..at + 16)?).ok()?;
    let n: u64 = digits.parse().ok()?;
    n.checked_sub(N0).map(|i| i as usize)
}

#[derive(Debug, Default, Clone, Copy)]
struct Quantiles {
    p50: u64,
    p90: u64,
    p99: u64,
    max: u64,
}

fn quantiles(mut v: Vec<u64>) -> Quantiles {
    if v.is_empty() {
        return Quantiles::default();
    }
    v.sort_unstable();
    let q = |p: f64| v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1];
    Quantiles {
        p50: q(0.50),
        p90: q(0.90),
        p99: q(0.99),
        max: v[v.len() - 1],
    }
}

struct Report {
    published: usize,
    acked: usize,
    stored: usize,
    pushed: usize,
    pushes: u64,
    push: Quantiles,
    ack: Quantiles,
    publish_rate: f64,
    stored_rate: f64,
    pushed_rate: f64,
    stored_rate_mid: f64,
    pushed_rate_mid: f64,
    elapsed: Duration,
    load: String,
    counters: String,
}

impl Report {
    fn hub_counters(&self) {
        println!("    hub: {}", self.counters);
    }
}

/// Rate over the whole run (first publish to last completion) and over the middle 80 % of
/// completions.
fn rates(start: u64, mut done: Vec<u64>) -> (f64, f64) {
    if done.len() < 2 {
        return (0.0, 0.0);
    }
    done.sort_unstable();
    let n = done.len();
    let whole = n as f64 / ((done[n - 1] - start) as f64 / 1e9);
    let (a, b) = (n / 10, n - 1 - n / 10);
    let mid = if b > a && done[b] > done[a] {
        (b - a) as f64 / ((done[b] - done[a]) as f64 / 1e9)
    } else {
        whole
    };
    (whole, mid)
}

/// One scenario on a fresh hub: `n` alerts, paced at `rate` per second or as fast as possible.
async fn run(args: &Args, n: usize, rate: Option<u64>) -> Report {
    let sites: Vec<String> = (0..args.publishers)
        .map(|i| format!("wd-bench-{i:03}"))
        .collect();
    let beating: Vec<String> = (0..args.sites).map(|i| format!("wd-hb-{i:05}")).collect();
    let all: Vec<String> = sites.iter().chain(&beating).cloned().collect();
    let (dir, config) = hub_dir(&all, args.dir.as_deref());
    let hub: RunningHub = common::start_hub(&config).await;
    let port = hub.mqtt[0].port();
    let tl = Arc::new(Timeline::new(n));
    let _watcher = Subscriber::connect(port, tl.clone()).await;
    let mut publishers = Vec::new();
    for s in &sites {
        publishers.push(Arc::new(
            Publisher::connect(port, s, args, tl.clone()).await,
        ));
    }
    let heartbeats = if beating.is_empty() {
        None
    } else {
        Some(Heartbeats::start(port, &beating, args.heartbeat).await)
    };
    let metrics = hub.metrics.clone();
    let progress = args.progress.then(|| {
        let (tl, metrics) = (tl.clone(), metrics.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tick.tick().await;
                eprintln!(
                    "  {:5.1}s acked={} stored={} filed={} sent={} pushed={} load {}",
                    tl.base.elapsed().as_secs_f64(),
                    tl.acks.load(Relaxed),
                    metrics.alerts_stored.load(Relaxed),
                    metrics.alerts_filed.load(Relaxed),
                    metrics.notifications_sent.load(Relaxed),
                    tl.first_pushes.load(Relaxed),
                    loadavg()
                );
            }
        })
    });

    let usage_before = usage();
    let start = tl.now();
    let begin = Instant::now();
    match rate {
        Some(rate) => {
            // One pacer over all the publishers: alert i is due at i / rate.
            let period = Duration::from_secs_f64(1.0 / rate as f64);
            for i in 0..n {
                tokio::time::sleep_until((begin + period * i as u32).into()).await;
                publishers[i % publishers.len()].publish(i, &tl).await;
            }
        }
        None => {
            let p = publishers.len();
            let tasks: Vec<_> = publishers
                .iter()
                .enumerate()
                .map(|(k, publisher)| {
                    let (publisher, tl) = (publisher.clone(), tl.clone());
                    tokio::spawn(async move {
                        for i in (k..n).step_by(p) {
                            publisher.publish(i, &tl).await;
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
        }
    }
    let publish_secs = begin.elapsed().as_secs_f64();

    // Wait for every push (and PUBACK), giving up after `settle` without progress.
    let mut last = (0, 0);
    let mut since = Instant::now();
    loop {
        let now = (
            tl.first_pushes.load(Relaxed) as usize,
            tl.acks.load(Relaxed) as usize,
        );
        if now.0 >= n && now.1 >= n {
            break;
        }
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() > args.settle {
            eprintln!(
                "gave up after {:?} without progress: {} of {n} alerts pushed, {} acked",
                args.settle, now.0, now.1
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = begin.elapsed();
    let usage_after = usage();
    let load = loadavg();
    if let Some(p) = progress {
        p.abort();
    }

    let get = |v: &[AtomicU64]| v.iter().map(|a| a.load(Relaxed)).collect::<Vec<u64>>();
    let (published, acked, pushed) = (get(&tl.published), get(&tl.acked), get(&tl.pushed));
    let lat = |done: &[u64]| {
        published
            .iter()
            .zip(done)
            .filter(|(p, d)| **p > 0 && **d > 0)
            .map(|(p, d)| d.saturating_sub(*p))
            .collect::<Vec<u64>>()
    };
    let done = |v: &[u64]| v.iter().copied().filter(|&t| t > 0).collect::<Vec<u64>>();
    let (stored_rate, stored_rate_mid) = rates(start, done(&acked));
    let (pushed_rate, pushed_rate_mid) = rates(start, done(&pushed));
    let m = &hub.metrics;
    let cpu = usage_after.0.saturating_sub(usage_before.0);
    let written = usage_after.1.saturating_sub(usage_before.1);
    let counters = format!(
        "process cpu={:.2}s ({:.0}% of one core, {:.0}us/alert) disk written={:.1}MB ({:.1}KB/alert) \
         stored={} duplicate={} rejected={} filed={} cases={} notifications sent={} failed={} \
         dropped={} stray pushes={} ingest batches={} ({:.1} alerts each)\n    \
         stages (busy s over the run's {:.2} s): {}",
        cpu.as_secs_f64(),
        100.0 * cpu.as_secs_f64() / elapsed.as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / n as f64,
        written as f64 / 1e6,
        written as f64 / 1e3 / n as f64,
        m.alerts_stored.load(Relaxed),
        m.alerts_duplicate.load(Relaxed),
        m.rejected_total(),
        m.alerts_filed.load(Relaxed),
        m.cases_opened.load(Relaxed),
        m.notifications_sent.load(Relaxed),
        m.notifications_failed.load(Relaxed),
        m.notifications_dropped.load(Relaxed),
        tl.strays.load(Relaxed),
        m.ingest_batches.load(Relaxed),
        m.ingest_batched.load(Relaxed) as f64 / m.ingest_batches.load(Relaxed).max(1) as f64,
        elapsed.as_secs_f64(),
        hub::metrics::Stage::ALL
            .iter()
            .map(|&st| format!("{}={:.2}", st.as_str(), m.stage_seconds(st)))
            .collect::<Vec<_>>()
            .join(" "),
    );
    let report = Report {
        published: published.iter().filter(|&&t| t > 0).count(),
        acked: tl.acks.load(Relaxed) as usize,
        stored: hub.store.alerts().count(),
        pushed: tl.first_pushes.load(Relaxed) as usize,
        pushes: tl.pushes.load(Relaxed),
        push: quantiles(lat(&pushed)),
        ack: quantiles(lat(&acked)),
        publish_rate: n as f64 / publish_secs,
        stored_rate,
        pushed_rate,
        stored_rate_mid,
        pushed_rate_mid,
        elapsed,
        load,
        counters,
    };
    if let Some(h) = heartbeats {
        h.report(&hub.metrics).await;
    }
    drop(publishers);
    hub.stop().await;
    drop(dir);
    report
}

/// Sites that stay connected and send a status heartbeat every period, as a county's boxes
/// do while the alerts flow.
struct Heartbeats {
    sites: usize,
    connect: Vec<u64>,
    sent: Arc<AtomicU64>,
    acked: Arc<AtomicU64>,
    ack_ns: Arc<Mutex<Vec<u64>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Heartbeats {
    async fn start(port: u16, sites: &[String], period: Duration) -> Self {
        let sent = Arc::new(AtomicU64::new(0));
        let acked = Arc::new(AtomicU64::new(0));
        let ack_ns: Arc<Mutex<Vec<u64>>> = Arc::default();
        let mut connect = Vec::new();
        let mut tasks = Vec::new();
        let begin = Instant::now();
        // In waves of 100, as a county's boxes come back after a hub restart.
        for (w, wave) in sites.chunks(100).enumerate() {
            let mut joins = Vec::new();
            for (k, site) in wave.iter().enumerate() {
                let (sent, acked, ack_ns) = (sent.clone(), acked.clone(), ack_ns.clone());
                let site = site.clone();
                // Stagger the heartbeats over the period.
                let offset =
                    period.mul_f64(((w * 100 + k) % sites.len()) as f64 / sites.len() as f64);
                let (tx, rx) = tokio::sync::oneshot::channel::<u64>();
                tasks.push(tokio::spawn(async move {
                    // Hand-made MQTT 5 over a plain socket: a county's boxes are separate
                    // processes, and a full client library per site in this one process
                    // would measure the library (rumqttc takes megabytes per client), not
                    // the hub.
                    let t0 = Instant::now();
                    let Ok(stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await
                    else {
                        return;
                    };
                    let (mut rd, mut wr) = stream.into_split();
                    let hello = mqtt_wire::connect_v5(
                        &format!("edge-{site}"),
                        &site,
                        &common::token(&site),
                    );
                    if wr.write_all(&hello).await.is_err() {
                        return;
                    }
                    match mqtt_wire::read_packet(&mut rd, 1024).await {
                        Some((0x20, body)) if body.get(1) == Some(&0) => {
                            let _ = tx.send(t0.elapsed().as_nanos() as u64);
                        }
                        _ => return,
                    }
                    let payload = serde_json::to_vec(&common::status_online(&site)).unwrap();
                    let topic = format!("se/v1/site/{site}/status");
                    let pending: Arc<Mutex<VecDeque<Instant>>> = Arc::default();
                    let p2 = pending.clone();
                    let beat = tokio::spawn(async move {
                        tokio::time::sleep(offset).await;
                        let mut tick = tokio::time::interval(period);
                        // CONNECT asked for a 30 s keep alive; a long period needs pings.
                        let mut ping = tokio::time::interval(Duration::from_secs(20));
                        let mut pkid: u16 = 0;
                        loop {
                            let bytes = tokio::select! {
                                _ = tick.tick() => {
                                    pkid = pkid % u16::MAX + 1;
                                    let mut body = mqtt_wire::string(&topic);
                                    body.extend(pkid.to_be_bytes());
                                    body.push(0); // no properties
                                    body.extend_from_slice(&payload);
                                    p2.lock().unwrap().push_back(Instant::now());
                                    sent.fetch_add(1, Relaxed);
                                    mqtt_wire::packet(0x32, &body)
                                }
                                _ = ping.tick() => vec![0xC0, 0x00],
                            };
                            if wr.write_all(&bytes).await.is_err() {
                                return;
                            }
                        }
                    });
                    while let Some((first, _)) = mqtt_wire::read_packet(&mut rd, 1 << 16).await {
                        if first >> 4 == 4 {
                            if let Some(at) = pending.lock().unwrap().pop_front() {
                                ack_ns.lock().unwrap().push(at.elapsed().as_nanos() as u64);
                            }
                            acked.fetch_add(1, Relaxed);
                        }
                    }
                    beat.abort();
                }));
                joins.push(rx);
            }
            for rx in joins {
                if let Ok(Ok(ns)) = tokio::time::timeout(Duration::from_secs(10), rx).await {
                    connect.push(ns);
                }
            }
        }
        println!(
            "sites: {} of {} connected in {:.2} s",
            connect.len(),
            sites.len(),
            begin.elapsed().as_secs_f64()
        );
        Self {
            sites: sites.len(),
            connect,
            sent,
            acked,
            ack_ns,
            tasks,
        }
    }

    async fn report(self, metrics: &hub::metrics::HubMetrics) {
        // Only these sites publish status in a run.
        let received = metrics.status_received.load(Relaxed);
        let c = quantiles(self.connect.clone());
        let a = quantiles(self.ack_ns.lock().unwrap().clone());
        println!(
            "sites: connected={}/{} connect p50={} p99={} max={} | heartbeats sent={} acked={} \
             received_by_hub={} ack p50={} p99={} max={}",
            self.connect.len(),
            self.sites,
            ms(c.p50),
            ms(c.p99),
            ms(c.max),
            self.sent.load(Relaxed),
            self.acked.load(Relaxed),
            received,
            ms(a.p50),
            ms(a.p99),
            ms(a.max),
        );
        for t in self.tasks {
            t.abort();
        }
    }
}
