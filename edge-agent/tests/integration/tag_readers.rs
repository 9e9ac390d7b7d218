//! Tag readers over real sockets on 127.0.0.1: a scripted reader sends good, malformed and
//! over-long records over TCP and UDP; reads flow through dedup into the tag rules.

#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use edge_agent::tags::config::{TheftConfig, WatchlistConfig};
use edge_agent::tags::{
    CounterSnapshot, Deduplicator, Pairing, ReaderCounters, TagAlert, TagConfig, TagRead, TagRules,
    TcpReader, UdpReader, WatchEntry,
};
use edge_agent::track::Timestamp;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{mpsc, watch};
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);
const T0: Timestamp = 1_795_334_400_000; // 2026-11-22T08:00:00Z

fn line(reader: &str, tag: &str, kind: &str) -> String {
    format!(r#"{{"reader":"{reader}","tag":"{tag}","kind":"{kind}","rssi":-61}}"#)
}

fn oversized(len: usize) -> String {
    let pad = "x".repeat(len);
    format!(r#"{{"reader":"r1","tag":"AA","kind":"bike","rssi":-61,"pad":"{pad}"}}"#)
}

async fn recv_n(rx: &mut mpsc::Receiver<TagRead>, n: usize) -> Vec<TagRead> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(timeout(WAIT, rx.recv()).await.unwrap().unwrap());
    }
    out
}

async fn wait_for_counters(counters: &ReaderCounters, want: impl Fn(CounterSnapshot) -> bool) {
    timeout(WAIT, async {
        while !want(counters.snapshot()) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("counters stuck at {:?}", counters.snapshot()));
}

fn tags(reads: &[TagRead]) -> Vec<&str> {
    reads.iter().map(|r| r.tag.as_str()).collect()
}

#[tokio::test]
async fn tcp_reader_forwards_good_lines_in_order_and_survives_bad_ones() {
    let reader = TcpReader::bind("127.0.0.1:0").await.unwrap();
    let addr = reader.local_addr().unwrap();
    let counters = reader.counters();
    let (tx, mut rx) = mpsc::channel(16);
    let (stop, shutdown) = watch::channel(false);
    let task = tokio::spawn(reader.run(tx, shutdown));

    let mut conn = TcpStream::connect(addr).await.unwrap();
    let script = format!(
        "{}\n{}\r\n\n{{\"reader\":\"r1\",\"tag\":\n{}\n{}\n{}\n",
        line("r1", "a1", "bike"),
        line("r1", "A2", "key"),
        oversized(20_000), // longer than the adapter's read buffer too
        oversized(1_100),
        line("r1", "A3", "bike"),
    );
    conn.write_all(script.as_bytes()).await.unwrap();
    // A line split across writes is reassembled.
    let split = line("r1", "A4", "bike");
    conn.write_all(&split.as_bytes()[..10]).await.unwrap();
    conn.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    conn.write_all(&split.as_bytes()[10..]).await.unwrap();
    conn.write_all(b"\n").await.unwrap();

    let reads = recv_n(&mut rx, 4).await;
    assert_eq!(tags(&reads), ["A1", "A2", "A3", "A4"]);
    assert_eq!(reads[0].reader, "r1");
    wait_for_counters(&counters, |c| c.malformed == 1 && c.oversized == 2).await;

    // The connection survived: more good lines still arrive.
    conn.write_all(format!("{}\n", line("r1", "A5", "key")).as_bytes())
        .await
        .unwrap();
    assert_eq!(tags(&recv_n(&mut rx, 1).await), ["A5"]);
    let c = counters.snapshot();
    assert_eq!(
        c,
        CounterSnapshot {
            received: 5,
            malformed: 1,
            oversized: 2,
            dropped: 0
        }
    );

    // Shutdown ends the adapter even with the connection still open.
    stop.send(true).unwrap();
    timeout(WAIT, task).await.unwrap().unwrap();
}

#[tokio::test]
async fn tcp_reader_serves_several_readers_at_once() {
    let reader = TcpReader::bind("127.0.0.1:0").await.unwrap();
    let addr = reader.local_addr().unwrap();
    let (tx, mut rx) = mpsc::channel(16);
    let (stop, shutdown) = watch::channel(false);
    let task = tokio::spawn(reader.run(tx, shutdown));

    let mut a = TcpStream::connect(addr).await.unwrap();
    let mut b = TcpStream::connect(addr).await.unwrap();
    a.write_all(format!("{}\n", line("ra", "AA", "bike")).as_bytes())
        .await
        .unwrap();
    b.write_all(format!("{}\n", line("rb", "BB", "bike")).as_bytes())
        .await
        .unwrap();
    let mut readers: Vec<String> = recv_n(&mut rx, 2)
        .await
        .into_iter()
        .map(|r| r.reader)
        .collect();
    readers.sort();
    assert_eq!(readers, ["ra", "rb"]);
    stop.send(true).unwrap();
    timeout(WAIT, task).await.unwrap().unwrap();
}

#[tokio::test]
async fn udp_reader_forwards_good_datagrams_in_order_and_counts_bad_ones() {
    let reader = UdpReader::bind("127.0.0.1:0").await.unwrap();
    let addr = reader.local_addr().unwrap();
    let counters = reader.counters();
    let (tx, mut rx) = mpsc::channel(16);
    let (stop, shutdown) = watch::channel(false);
    let task = tokio::spawn(reader.run(tx, shutdown));

    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let script = [
        line("r1", "B1", "bike"),
        format!("{}\n", line("r1", "B2", "key")),
        "not json".to_string(),
        oversized(2_000),
        line("r1", "B3", "bike"),
        line("r1", "B4", "bike"),
    ];
    for datagram in &script {
        sock.send_to(datagram.as_bytes(), addr).await.unwrap();
    }
    let reads = recv_n(&mut rx, 4).await;
    assert_eq!(tags(&reads), ["B1", "B2", "B3", "B4"]);
    wait_for_counters(&counters, |c| c.malformed == 1 && c.oversized == 1).await;
    assert_eq!(counters.snapshot().received, 4);

    stop.send(true).unwrap();
    timeout(WAIT, task).await.unwrap().unwrap();
}

#[tokio::test]
async fn udp_reader_counts_reads_dropped_when_the_channel_is_full() {
    let reader = UdpReader::bind("127.0.0.1:0").await.unwrap();
    let addr = reader.local_addr().unwrap();
    let counters = reader.counters();
    let (tx, mut rx) = mpsc::channel(1);
    let (stop, shutdown) = watch::channel(false);
    let task = tokio::spawn(reader.run(tx, shutdown));

    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for tag in ["C1", "C2", "C3"] {
        sock.send_to(line("r1", tag, "bike").as_bytes(), addr)
            .await
            .unwrap();
    }
    wait_for_counters(&counters, |c| c.received == 3).await;
    assert_eq!(counters.snapshot().dropped, 2);
    assert_eq!(tags(&recv_n(&mut rx, 1).await), ["C1"]);

    stop.send(true).unwrap();
    timeout(WAIT, task).await.unwrap().unwrap();
}

// --- through dedup into the rules ---------------------------------------------------------

const WANTED: &str = "E2801160600002084A5B3C1D";
const BIKE: &str = "E28011606000020800000001";
const KEY: &str = "E28011606000020800000002";
const WINDOW: Timestamp = 30_000;

fn config() -> TagConfig {
    TagConfig {
        dedup_window_ms: 2_000,
        watchlist: WatchlistConfig {
            cooldown_ms: 300_000,
            tags: vec![WatchEntry {
                tag: WANTED.into(),
                case_ref: "WD-2026-1187".into(),
                note: "red Yadea".into(),
            }],
        },
        theft: TheftConfig {
            window_ms: WINDOW,
            cooldown_ms: 600_000,
            pairings: vec![Pairing {
                bike: BIKE.into(),
                keys: vec![KEY.into()],
                armed: true,
            }],
        },
    }
}

/// What the agent's tag stage does: reads → dedup → rules, then time runs out.
fn decide(reads: &[TagRead]) -> Vec<TagAlert> {
    let mut dedup = Deduplicator::new(config().dedup_window_ms);
    let mut rules = TagRules::new(&config()).unwrap();
    let mut alerts = Vec::new();
    for read in reads {
        for s in dedup
            .push(read)
            .into_iter()
            .chain(dedup.tick(read.received_ms))
        {
            alerts.extend(rules.observe(&s));
        }
        alerts.extend(rules.tick(read.received_ms));
    }
    let end = reads.last().map_or(0, |r| r.received_ms) + 3_600_000;
    for s in dedup.tick(end) {
        alerts.extend(rules.observe(&s));
    }
    alerts.extend(rules.tick(end));
    alerts
}

/// Starts a TCP adapter with `clock`; returns the address, the read channel and the stopper.
async fn tcp_with_clock(
    clock: fn() -> Timestamp,
) -> (
    std::net::SocketAddr,
    mpsc::Receiver<TagRead>,
    watch::Sender<bool>,
) {
    let reader = TcpReader::bind("127.0.0.1:0")
        .await
        .unwrap()
        .with_clock(clock);
    let addr = reader.local_addr().unwrap();
    let (tx, rx) = mpsc::channel(64);
    let (stop, shutdown) = watch::channel(false);
    tokio::spawn(reader.run(tx, shutdown));
    (addr, rx, stop)
}

#[tokio::test]
async fn a_watchlisted_tag_heard_over_tcp_alerts_with_its_reader_and_receive_time() {
    let (addr, mut rx, stop) = tcp_with_clock(|| T0).await;
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let script: String = (0..5)
        .map(|_| format!("{}\n", line("gate-3", &WANTED.to_lowercase(), "bike")))
        .collect();
    conn.write_all(script.as_bytes()).await.unwrap();
    let reads = recv_n(&mut rx, 5).await;
    let alerts = decide(&reads);
    assert_eq!(
        alerts,
        [TagAlert::Watchlist {
            tag: WANTED.into(),
            reader: "gate-3".into(),
            at_ms: T0,
            rssi: -61,
            case_ref: "WD-2026-1187".into(),
            note: "red Yadea".into(),
        }]
    );
    stop.send(true).unwrap();
}

static THEFT_NOW: AtomicI64 = AtomicI64::new(T0);

#[tokio::test]
async fn an_armed_bike_heard_over_udp_without_its_key_is_a_possible_theft() {
    let reader = UdpReader::bind("127.0.0.1:0")
        .await
        .unwrap()
        .with_clock(|| THEFT_NOW.load(Ordering::SeqCst));
    let addr = reader.local_addr().unwrap();
    let (tx, mut rx) = mpsc::channel(64);
    let (stop, shutdown) = watch::channel(false);
    tokio::spawn(reader.run(tx, shutdown));
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();

    // The bike rides past reader r1 with nobody carrying its key.
    for _ in 0..3 {
        sock.send_to(line("r1", BIKE, "bike").as_bytes(), addr)
            .await
            .unwrap();
    }
    let reads = recv_n(&mut rx, 3).await;
    let alerts = decide(&reads);
    assert_eq!(
        alerts,
        [TagAlert::PossibleTheft {
            bike: BIKE.into(),
            reader: "r1".into(),
            at_ms: T0,
            keys: vec![KEY.into()],
            window_ms: WINDOW,
        }]
    );
    stop.send(true).unwrap();
}

static BEFORE_NOW: AtomicI64 = AtomicI64::new(T0);

#[tokio::test]
async fn no_alarm_when_the_key_passed_a_reader_shortly_before_the_bike() {
    let (addr, mut rx, stop) = tcp_with_clock(|| BEFORE_NOW.load(Ordering::SeqCst)).await;
    let mut conn = TcpStream::connect(addr).await.unwrap();
    // The owner walks past r2 with the key, then rides the bike past r1 twenty seconds later.
    conn.write_all(format!("{}\n", line("r2", KEY, "key")).as_bytes())
        .await
        .unwrap();
    let mut reads = recv_n(&mut rx, 1).await;
    BEFORE_NOW.store(T0 + 20_000, Ordering::SeqCst);
    conn.write_all(format!("{}\n", line("r1", BIKE, "bike")).as_bytes())
        .await
        .unwrap();
    reads.extend(recv_n(&mut rx, 1).await);
    assert_eq!(reads[1].received_ms - reads[0].received_ms, 20_000);
    assert_eq!(decide(&reads), []);
    stop.send(true).unwrap();
}

static AFTER_NOW: AtomicI64 = AtomicI64::new(T0);

#[tokio::test]
async fn no_alarm_when_the_key_passes_within_the_window_after_the_bike() {
    let reader = UdpReader::bind("127.0.0.1:0")
        .await
        .unwrap()
        .with_clock(|| AFTER_NOW.load(Ordering::SeqCst));
    let addr = reader.local_addr().unwrap();
    let (tx, mut rx) = mpsc::channel(64);
    let (stop, shutdown) = watch::channel(false);
    tokio::spawn(reader.run(tx, shutdown));
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();

    sock.send_to(line("r1", BIKE, "bike").as_bytes(), addr)
        .await
        .unwrap();
    let mut reads = recv_n(&mut rx, 1).await;
    AFTER_NOW.store(T0 + 25_000, Ordering::SeqCst);
    sock.send_to(line("r1", KEY, "key").as_bytes(), addr)
        .await
        .unwrap();
    reads.extend(recv_n(&mut rx, 1).await);
    assert_eq!(decide(&reads), []);

    // The same bike, keyless, once the window has long passed: that one alarms.
    let later = TagRead {
        received_ms: T0 + 25_000 + 10 * WINDOW,
        ..reads[0].clone()
    };
    reads.push(later);
    assert_eq!(decide(&reads).len(), 1);
    stop.send(true).unwrap();
}
