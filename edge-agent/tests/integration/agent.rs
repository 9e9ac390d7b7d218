//! The whole agent on real parts: ffmpeg decoding vtest.avi (as a file and as an RTSP camera),
//! ONNX Runtime running YOLOX-Nano, the rules, snapshots, and tag readers on real sockets.
//! The rules and zones are those of the example config `configs/vtest.toml`. A camera's
//! password in its RTSP URL reaches no log, alert or status.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use edge_agent::agent::config::{CameraConfig, ListenConfig, TagReaderConfig};
use edge_agent::agent::{Agent, AgentConfig, Mode};
use edge_agent::detect::{Model, ModelManifest, manifest};
use edge_agent::pipeline::Output;
use edge_agent::rules::{Point, Polygon};
use edge_agent::source::{AtEnd, FfmpegSourceConfig, SourceConfig};
use edge_agent::tags::{TagKind, TagRead};
use protocol::{Alert, AlertKind, AlertPhase};
use testkit::{logs, repo as root, rtsp, vtest};
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, watch};
use tokio::time::timeout;

fn example_config() -> AgentConfig {
    AgentConfig::load(&root().join("configs/vtest.toml")).unwrap()
}

/// The model, loaded once per test binary (ONNX Runtime allows one environment per process).
fn model() -> Arc<Model> {
    static MODEL: OnceLock<Arc<Model>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            Model::load(ModelManifest::load(&manifest::default_manifest_path()).unwrap()).unwrap()
        })
        .clone()
}

const START: &str = "2026-11-22T08:00:00Z";

fn start_ms() -> i64 {
    protocol::time::parse_rfc3339_ms(START).unwrap()
}

/// Replays `config` to the end and returns its alerts, in output order.
async fn replay(config: AgentConfig, tag_reads: Vec<TagRead>) -> Vec<Alert> {
    let (_stop, shutdown) = watch::channel(false);
    let mode = Mode::Replay {
        start_ms: start_ms(),
        tag_reads,
    };
    let agent = Agent::new(config, model(), mode, shutdown).await.unwrap();
    let (tx, mut rx) = mpsc::channel(16);
    let run = tokio::spawn(agent.run(tx));
    let mut alerts = Vec::new();
    while let Some(o) = rx.recv().await {
        if let Output::Alert(a) = o {
            alerts.push(*a);
        }
    }
    run.await.unwrap().unwrap();
    alerts
}

/// The example config replayed once, shared by the tests that only read its alerts.
async fn example_alerts() -> &'static [Alert] {
    static ALERTS: tokio::sync::OnceCell<Vec<Alert>> = tokio::sync::OnceCell::const_new();
    ALERTS
        .get_or_init(|| async {
            let mut config = example_config();
            config.tag_readers.clear();
            replay(config, Vec::new()).await
        })
        .await
}

fn polygon_of(config: &AgentConfig, rule: &str) -> Polygon {
    let zone = config.cameras[0]
        .rules
        .zones
        .iter()
        .find(|z| z.id == rule)
        .unwrap();
    Polygon::new(zone.polygon.iter().map(|p| (*p).into()).collect())
}

fn bottom_centre(b: [f32; 4]) -> (f32, f32) {
    ((b[0] + b[2]) / 2.0, b[3])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_entering_the_cordon_raise_zone_alerts_with_snapshots_of_them() {
    let alerts = example_alerts().await;
    let config = example_config();
    let cordon = polygon_of(&config, "cordon");
    let starts: Vec<&Alert> = alerts
        .iter()
        .filter(|a| a.rule == "cordon" && a.phase == AlertPhase::Start)
        .collect();
    assert!(!starts.is_empty(), "nobody entered the cordon: {alerts:#?}");
    for a in &starts {
        assert_eq!(a.kind, AlertKind::Zone);
        assert_eq!(a.label.as_deref(), Some("person"));
        assert_eq!(a.site, "wd-demo-001");
        let d = &a.detections[0];
        let (x, y) = bottom_centre(d.box_xyxy);
        assert!(
            cordon.contains(Point::new(x, y)),
            "{x},{y} is outside the cordon"
        );
        let snap = a.snapshot.as_ref().expect("a start alert has a snapshot");
        assert!(snap.jpeg.len() <= config.snapshot.max_bytes);
        let img = image::load_from_memory(&snap.jpeg).unwrap().to_rgb8();
        assert_eq!((img.width(), img.height()), (snap.width, snap.height));
        assert_eq!(snap.time, a.time, "the snapshot is of the alert's frame");
        // The box is drawn: the outline pixel at the box's top-left corner is the person
        // colour (JPEG shifts colours a little).
        let px = img
            .get_pixel(d.box_xyxy[0] as u32 + 1, d.box_xyxy[1] as u32 + 1)
            .0;
        assert!(
            px[0] > 180 && px[1] < 140 && px[2] < 140,
            "box not drawn: {px:?}"
        );
        assert!(a.model.as_ref().is_some_and(|m| m.sha256.len() == 64));
    }
    // Every incident that started also ended (the person left the zone before the clip ends),
    // and its end names the start.
    let ends: BTreeSet<&str> = alerts
        .iter()
        .filter(|a| a.rule == "cordon" && a.phase == AlertPhase::End)
        .map(|a| a.incident.as_str())
        .collect();
    for a in &starts {
        assert!(
            ends.contains(a.id.as_str()),
            "incident {} never ended",
            a.id
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_path_line_counts_crossings_in_both_directions_once_per_track() {
    let alerts = example_alerts().await;
    let lines: Vec<&Alert> = alerts.iter().filter(|a| a.rule == "path-west").collect();
    let count = |dir: &str| {
        lines
            .iter()
            .filter(|a| a.direction.as_deref() == Some(dir))
            .count()
    };
    assert!(count("a_to_b") >= 2, "{lines:#?}");
    assert!(count("b_to_a") >= 2, "{lines:#?}");
    assert!(
        lines.iter().all(|a| a.phase == AlertPhase::Start),
        "a crossing is a moment: no end alerts"
    );
    let tracks: BTreeSet<u64> = lines.iter().map(|a| a.track.unwrap()).collect();
    assert_eq!(
        tracks.len(),
        lines.len(),
        "a track alerted twice: {lines:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_alert_repeats_within_cooldown_and_parked_vehicles_do_not_re_alert() {
    let alerts = example_alerts().await;
    let config = example_config();
    // One start per (rule, track): the lifecycle latches a track per rule.
    let mut seen = BTreeSet::new();
    for a in alerts.iter().filter(|a| a.phase == AlertPhase::Start) {
        if let Some(t) = a.track {
            assert!(
                seen.insert((a.rule.clone(), t)),
                "{} track {t} re-alerted",
                a.rule
            );
        }
    }
    // Crowd incidents (keyed by zone) respect the rule's cooldown between an end and the next
    // start.
    let cooldown = config.cameras[0].rules.crowds[0].cooldown_ms;
    let crowd: Vec<&Alert> = alerts.iter().filter(|a| a.rule == "path-crowd").collect();
    for pair in crowd.windows(2) {
        if pair[0].phase == AlertPhase::End && pair[1].phase == AlertPhase::Start {
            assert!(pair[1].time.0 - pair[0].time.0 >= cooldown, "{pair:#?}");
        }
    }
    // The van and the cars parked in the car park for the whole clip: each alerts once when
    // the camera first sees it, and the incident ends when the tracker marks it stationary;
    // nothing after that.
    let park: Vec<&Alert> = alerts.iter().filter(|a| a.rule == "car-park").collect();
    let starts: Vec<&&Alert> = park
        .iter()
        .filter(|a| a.phase == AlertPhase::Start)
        .collect();
    assert!(!starts.is_empty() && starts.len() <= 3, "{park:#?}");
    assert!(
        starts.iter().all(|a| a.time.0 - start_ms() < 2_000),
        "a parked vehicle alerted again later: {park:#?}"
    );
    let ended: BTreeSet<&str> = park
        .iter()
        .filter(|a| a.phase == AlertPhase::End)
        .map(|a| a.incident.as_str())
        .collect();
    assert_eq!(ended.len(), starts.len(), "{park:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_is_deterministic_ids_and_order_included() {
    let first = example_alerts().await;
    let mut config = example_config();
    config.tag_readers.clear();
    let second = replay(config, Vec::new()).await;
    let json = |a: &[Alert]| {
        a.iter()
            .map(|a| serde_json::to_string(a).unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(json(first), json(&second));
}

fn read(tag: &str, kind: TagKind, at_ms: i64) -> TagRead {
    TagRead {
        reader: "gate-reader".into(),
        tag: tag.into(),
        kind,
        rssi: -60,
        received_ms: at_ms,
        reader_time_ms: Some(at_ms),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_tag_reads_raise_watchlist_and_theft_alerts_with_the_frame_of_their_time() {
    let mut config = example_config();
    config.tag_readers.clear();
    // Only the first 20 s of video: enough, and quicker.
    config.cameras[0].rules = Default::default();
    let watched = "E2801160600002084A5B3C1D";
    let bike = "E28011606000020800000001";
    let key = "E28011606000020800000002";
    let t0 = start_ms();
    let reads = vec![
        // The watchlisted bike passes at 12.3 s; the reader hears it three times.
        read(watched, TagKind::Bike, t0 + 12_300),
        read(watched, TagKind::Bike, t0 + 12_500),
        read(watched, TagKind::Bike, t0 + 12_900),
        // The armed bike passes with its owner's key at 20 s: no alarm…
        read(bike, TagKind::Bike, t0 + 20_000),
        read(key, TagKind::Key, t0 + 20_400),
        // …and alone at 45 s, long after the key was last heard: possible theft, decided
        // once the 5 s window has passed without the key.
        read(bike, TagKind::Bike, t0 + 45_000),
    ];
    let mut tags = config.tag_rules.clone().unwrap();
    tags.theft.window_ms = 5_000;
    tags.theft.cooldown_ms = 1_000;
    config.tag_rules = Some(tags);
    let alerts = replay(config, reads).await;
    let watch: Vec<&Alert> = alerts
        .iter()
        .filter(|a| a.kind == AlertKind::Watchlist)
        .collect();
    assert_eq!(watch.len(), 1, "{watch:#?}");
    let w = watch[0];
    assert_eq!(w.tag.as_ref().unwrap().id, watched);
    assert_eq!(
        w.tag.as_ref().unwrap().case_ref.as_deref(),
        Some("WD-2026-1187")
    );
    assert_eq!(w.time.0, t0 + 12_300);
    let snap = w.snapshot.as_ref().expect("the covering camera's frame");
    assert_eq!(snap.camera, "plaza");
    // Frames are 200 ms apart (5 fps): the nearest to 12.3 s is at 12.2 or 12.4 s.
    assert!(
        (snap.time.0 - (t0 + 12_300)).abs() <= 100,
        "{:?}",
        snap.time
    );
    assert!(image::load_from_memory(&snap.jpeg).is_ok());

    let theft: Vec<&Alert> = alerts
        .iter()
        .filter(|a| a.kind == AlertKind::PossibleTheft)
        .collect();
    assert_eq!(theft.len(), 1, "only the keyless pass alarms: {theft:#?}");
    assert_eq!(theft[0].time.0, t0 + 45_000);
    assert_eq!(theft[0].tag.as_ref().unwrap().keys, vec![key.to_string()]);
    // Decided seconds later, but with the frame of the moment the bike passed.
    let snap = theft[0]
        .snapshot
        .as_ref()
        .expect("the frame of the bike's pass");
    assert!(
        (snap.time.0 - (t0 + 45_000)).abs() <= 100,
        "{:?}",
        snap.time
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_tag_reader_over_tcp_gets_the_camera_frame_nearest_the_read() {
    let mut config = example_config();
    config.tag_readers = vec![TagReaderConfig::Tcp(ListenConfig {
        listen: "127.0.0.1:0".into(),
    })];
    config.cameras[0].rules = Default::default();
    let (stop, shutdown) = watch::channel(false);
    let agent = Agent::new(config, model(), Mode::Live, shutdown)
        .await
        .unwrap();
    let addr = agent.reader_addrs()[0];
    let stats = agent.stats();
    let (tx, mut rx) = mpsc::channel(16);
    let run = tokio::spawn(agent.run(tx));
    // Let the camera deliver a few frames so the ring has history.
    timeout(Duration::from_secs(20), async {
        while stats.cameras()[0].processed < 5 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap();
    let mut reader = tokio::net::TcpStream::connect(addr).await.unwrap();
    let sent_at = edge_agent::tags::reader::system_clock();
    reader
        .write_all(
            b"{\"reader\":\"gate-reader\",\"tag\":\"e2801160600002084a5b3c1d\",\"kind\":\"bike\",\"rssi\":-55}\n\
              this is not a read\n",
        )
        .await
        .unwrap();
    let alert = timeout(Duration::from_secs(15), async {
        loop {
            match rx.recv().await {
                Some(Output::Alert(a)) if a.kind == AlertKind::Watchlist => break a,
                Some(_) => {}
                None => panic!("agent stopped"),
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(alert.tag.as_ref().unwrap().id, "E2801160600002084A5B3C1D");
    assert!(
        (alert.time.0 - sent_at).abs() < 1_000,
        "read stamped on receipt"
    );
    let snap = alert.snapshot.as_ref().expect("frame attached");
    // At 5 fps the nearest frame is at most 100 ms away (plus scheduling slack).
    assert!(
        (snap.time.0 - alert.time.0).abs() <= 150,
        "{} vs {}",
        snap.time,
        alert.time
    );
    assert_eq!(
        stats.readers[0].snapshot().malformed,
        1,
        "the bad line was counted"
    );
    stop.send(true).unwrap();
    timeout(Duration::from_secs(10), run)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_udp_reader_alarms_for_a_bike_without_its_key_and_not_for_one_with_it() {
    let mut config = example_config();
    config.cameras.clear();
    config.tag_readers = vec![TagReaderConfig::Udp(ListenConfig {
        listen: "127.0.0.1:0".into(),
    })];
    let mut tags = config.tag_rules.clone().unwrap();
    tags.dedup_window_ms = 300;
    tags.theft.window_ms = 1_000;
    config.tag_rules = Some(tags);
    let (stop, shutdown) = watch::channel(false);
    let agent = Agent::new(config, model(), Mode::Live, shutdown)
        .await
        .unwrap();
    let addr = agent.reader_addrs()[0];
    let (tx, mut rx) = mpsc::channel(16);
    let run = tokio::spawn(agent.run(tx));
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let send = async |tag: &str, kind: &str| {
        let line = format!(
            "{{\"reader\":\"gate-reader\",\"tag\":\"{tag}\",\"kind\":\"{kind}\",\"rssi\":-60}}"
        );
        socket.send_to(line.as_bytes(), addr).await.unwrap();
    };
    // Bike 1 rides past with its owner's key; bike 3 rides past alone.
    send("E28011606000020800000001", "bike").await;
    send("E28011606000020800000002", "key").await;
    send("E28011606000020800000003", "bike").await;
    let mut theft = Vec::new();
    // Window 1 s + dedup 0.3 s + the tick: decided within a few seconds; wait a little longer
    // to be sure bike 1 does not alarm late.
    let _ = timeout(Duration::from_secs(5), async {
        while let Some(o) = rx.recv().await {
            if let Output::Alert(a) = o {
                theft.push(*a);
            }
        }
    })
    .await;
    assert_eq!(theft.len(), 1, "{theft:#?}");
    assert_eq!(theft[0].kind, AlertKind::PossibleTheft);
    let tag = theft[0].tag.as_ref().unwrap();
    assert_eq!(tag.id, "E28011606000020800000003");
    assert_eq!(tag.keys, vec!["E28011606000020800000004".to_string()]);
    assert!(
        theft[0].snapshot.is_none(),
        "no camera covers this box's reader here"
    );
    stop.send(true).unwrap();
    timeout(Duration::from_secs(10), run)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rtsp_camera_alerts_goes_offline_when_its_encoder_dies_and_comes_back() {
    let mut camera = rtsp::RtspCamera::start(vtest()).await;
    let mut config = example_config();
    config.tag_readers.clear();
    let rules = config.cameras[0].rules.clone();
    config.cameras = vec![CameraConfig {
        id: "rtsp-cam".into(),
        location: None,
        readers: Vec::new(),
        source: SourceConfig::Ffmpeg(FfmpegSourceConfig {
            camera: "rtsp-cam".into(),
            input: camera.url.clone().into(),
            fps: 5.0,
            width: 640,
            at_end: AtEnd::Finish,
            offline_after_ms: 3_000,
            // Above RTSP connect and stream probing, or the source would restart forever.
            stall_after_ms: 8_000,
            backoff_min_ms: 200,
            backoff_max_ms: 1_000,
            ..FfmpegSourceConfig::default()
        }),
        rules,
    }];
    let (stop, shutdown) = watch::channel(false);
    let agent = Agent::new(config, model(), Mode::Live, shutdown)
        .await
        .unwrap();
    let (tx, mut rx) = mpsc::channel(64);
    let run = tokio::spawn(agent.run(tx));
    let mut next = async |what: &str, secs: u64, want: &dyn Fn(&Alert) -> bool| {
        timeout(Duration::from_secs(secs), async {
            loop {
                match rx.recv().await {
                    Some(Output::Alert(a)) if want(&a) => break *a,
                    Some(_) => {}
                    None => panic!("agent stopped"),
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no {what} within {secs} s"))
    };
    // The parked vehicles are in the car park from the first frames.
    let park = next("car-park alert", 20, &|a| a.rule == "car-park").await;
    assert!(park.snapshot.is_some());
    // People cross the path line about 9 s into the clip.
    let line = next("line crossing", 30, &|a| a.rule == "path-west").await;
    assert!(line.direction.is_some());

    camera.kill_encoder().await;
    let offline = next("camera-offline alert", 15, &|a| {
        a.kind == AlertKind::CameraOffline
    })
    .await;
    assert_eq!(offline.phase, AlertPhase::Start);
    assert_eq!(
        offline.source,
        protocol::AlertSource::Camera("rtsp-cam".into())
    );
    assert!(offline.detail.is_some());
    camera.start_encoder();
    let online = next("camera back", 30, &|a| a.kind == AlertKind::CameraOffline).await;
    assert_eq!(online.phase, AlertPhase::End);
    assert_eq!(online.incident, offline.id);
    stop.send(true).unwrap();
    let stats = timeout(Duration::from_secs(10), run)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    // The RTSP session stayed up while the encoder was dead, so the source never restarted:
    // the outage was seen by silence alone, as a cut cable or covered lens would be.
    assert!(stats.cameras()[0].processed > 10);
}

#[test]
fn validate_accepts_the_example_and_lists_every_problem_of_a_bad_config() {
    let bin = env!("CARGO_BIN_EXE_edge-agent");
    let ok = std::process::Command::new(bin)
        .args(["validate", "--config"])
        .arg(root().join("configs/vtest.toml"))
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("is valid"));

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        r#"
site = "s1"
[[cameras]]
id = "a"
source = { kind = "ffmpeg", input = "x.avi", fps = 500 }
[[cameras.rules.zones]]
id = "z"
polygon = [[0, 0], [10, 10]]
[[cameras.rules.lines]]
id = "z"
start = [0, 0]
end = [0, 0]
"#,
    )
    .unwrap();
    let out = std::process::Command::new(bin)
        .args(["validate", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "bad.toml",
        "cameras[0].source.fps",
        "cameras[0].rules.zones[0].polygon",
        "cameras[0].rules.lines[0]",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
    let counts: BTreeMap<&str, usize> = [("problems", err.matches("\n  ").count())].into();
    assert!(counts["problems"] >= 4, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_camera_password_never_reaches_logs_alerts_or_status() {
    let capture = logs::capture();
    // Nothing listens there: ffmpeg's refusal quotes the URL, password and all
    // (`rtsp://cam:…@127.0.0.1:PORT/stream: Connection refused`).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // Percent-encoded in the URL; ffmpeg decodes it (`S3cr@t-pw`) before use.
    let url = format!("rtsp://cam:S3cr%40t-pw@127.0.0.1:{port}/stream");
    let leaked = |text: &str| text.contains("S3cr");
    let mut config = example_config();
    config.tag_readers.clear();
    let rules = config.cameras[0].rules.clone();
    config.cameras = vec![CameraConfig {
        id: "locked-cam".into(),
        location: None,
        readers: Vec::new(),
        source: SourceConfig::Ffmpeg(FfmpegSourceConfig {
            camera: "locked-cam".into(),
            input: url.clone().into(),
            offline_after_ms: 1_500,
            stall_after_ms: 5_000,
            backoff_min_ms: 200,
            backoff_max_ms: 500,
            ..FfmpegSourceConfig::default()
        }),
        rules,
    }];
    let shown = format!("{config:?}");
    assert!(
        !leaked(&shown) && shown.contains("rtsp://cam:***@127.0.0.1"),
        "{shown}"
    );
    let (stop, shutdown) = watch::channel(false);
    let agent = Agent::new(config, model(), Mode::Live, shutdown)
        .await
        .unwrap();
    let stats = agent.stats();
    let (tx, mut rx) = mpsc::channel(64);
    let run = tokio::spawn(agent.run(tx));
    let offline = timeout(Duration::from_secs(30), async {
        loop {
            match rx.recv().await {
                Some(Output::Alert(a)) if a.kind == AlertKind::CameraOffline => break *a,
                Some(_) => {}
                None => panic!("agent stopped"),
            }
        }
    })
    .await
    .expect("a camera-offline alert");
    let detail = offline.detail.clone().unwrap_or_default();
    // ffmpeg's own message is there, scrubbed: operators still see what failed.
    assert!(
        detail.contains(&format!("rtsp://cam:***@127.0.0.1:{port}/stream"))
            && detail.contains("Connection refused"),
        "{detail}"
    );
    let alert = serde_json::to_string(&offline).unwrap();
    assert!(!leaked(&alert), "{alert}");
    let status = format!("{:?}", stats.cameras());
    assert!(!leaked(&status), "{status}");
    stop.send(true).unwrap();
    timeout(Duration::from_secs(10), run)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let log = capture.text();
    // The log did see the camera (the start line and ffmpeg's stderr), only never its password.
    assert!(log.contains("rtsp://cam:***@127.0.0.1"), "{log}");
    assert!(log.contains("Connection refused"), "{log}");
    let lines: Vec<&str> = log.lines().filter(|l| leaked(l)).collect();
    assert!(lines.is_empty(), "password in the log: {lines:#?}");
}
