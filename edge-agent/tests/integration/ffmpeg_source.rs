//! `FfmpegSource` through real `ffmpeg`: vtest.avi replayed as a file; as an RTSP camera (an
//! ffmpeg RTP encoder behind a minimal RTSP relay, see [`RtspCamera`]) whose encoder dies and
//! comes back; as a live MPEG-TS stream served by a second ffmpeg that is killed and
//! restarted; a corrupt file; shutdown; and `pump` over a scripted `FrameSource`.
#![allow(clippy::unwrap_used)]

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use edge_agent::frame::{Frame, LatestFrame, RgbFrame};
use edge_agent::source::{AtEnd, FfmpegSource, FfmpegSourceConfig, FrameSource, SourceEvent, pump};
use testkit::{free_port, rtsp};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, watch};
use tokio::time::timeout;

fn config(camera: &str, input: &str) -> FfmpegSourceConfig {
    FfmpegSourceConfig {
        camera: camera.into(),
        input: input.into(),
        fps: 5.0,
        width: 640,
        realtime: false,
        backoff_min_ms: 100,
        backoff_max_ms: 500,
        ..FfmpegSourceConfig::default()
    }
}

/// The next event, failing the test if none comes within `secs`.
async fn next(source: &mut FfmpegSource, secs: u64) -> Option<SourceEvent> {
    timeout(Duration::from_secs(secs), source.next_event())
        .await
        .expect("source produced no event in time")
}

/// A second ffmpeg playing vtest.avi in a loop, in real time, as an MPEG-TS stream for one
/// TCP client on `port`.
fn serve(port: u16) -> Child {
    Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-re"])
        .args(["-stream_loop", "-1", "-i"])
        .arg(testkit::vtest())
        .args([
            "-an", "-c:v", "mpeg4", "-q:v", "5", "-g", "10", "-f", "mpegts",
        ])
        .arg(format!("tcp://127.0.0.1:{port}?listen=1"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

#[tokio::test]
async fn a_replayed_file_gives_every_sampled_frame_at_the_working_size_then_ends() {
    let (_shutdown_tx, shutdown) = watch::channel(false);
    let input = testkit::vtest().to_string_lossy().into_owned();
    let mut source = FfmpegSource::new(config("file", &input), shutdown).unwrap();
    let mut frames = 0u64;
    while let Some(event) = next(&mut source, 30).await {
        let SourceEvent::Frame(frame) = event else {
            panic!("unexpected event from a healthy file: {event:?}");
        };
        assert_eq!(frame.seq, frames);
        assert_eq!(&*frame.camera, "file");
        assert_eq!(frame.pts_ms, frames as i64 * 200);
        assert_eq!((frame.image.width, frame.image.height), (640, 480));
        assert_eq!(frame.image.data.len(), 640 * 480 * 3);
        frames += 1;
    }
    // 795 frames at 10 fps is 79.5 s; sampled at 5 fps that is ~397 frames.
    assert!((395..=400).contains(&frames), "got {frames} frames");
    assert!(
        source.next_event().await.is_none(),
        "a finished source stays finished"
    );
}

#[tokio::test]
async fn a_live_stream_goes_offline_when_its_server_dies_and_online_when_it_returns() {
    let port = free_port();
    let mut server = serve(port);
    let (_shutdown_tx, shutdown) = watch::channel(false);
    let cfg = FfmpegSourceConfig {
        offline_after_ms: 2_000,
        ..config("live", &format!("tcp://127.0.0.1:{port}"))
    };
    assert!(!cfg.is_file());
    let mut source = FfmpegSource::new(cfg, shutdown).unwrap();

    // Frames arrive. The first connection may race the server's listen and be retried, and
    // the first frame waits for ffmpeg to probe the stream, which on a loaded machine can take
    // longer than `offline_after`: any health event is fine here.
    let mut got = 0;
    let mut last_seq = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    while got < 5 {
        assert!(
            Instant::now() < deadline,
            "no frames: {:?}",
            source.last_error()
        );
        if let SourceEvent::Frame(f) = next(&mut source, 15).await.unwrap() {
            assert_eq!((f.image.width, f.image.height), (640, 480));
            if let Some(prev) = last_seq {
                assert_eq!(f.seq, prev + 1);
            }
            last_seq = Some(f.seq);
            got += 1;
        }
    }

    // The server dies: the source fails, retries with back-off, and after 2 s without a frame
    // reports the camera offline, once.
    server.kill().await.unwrap();
    let killed = Instant::now();
    let mut failures = 0;
    let mut last_failure = String::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    let reason = loop {
        assert!(Instant::now() < deadline, "never offline");
        match next(&mut source, 10).await.unwrap() {
            SourceEvent::Frame(f) => last_seq = Some(f.seq),
            SourceEvent::Failed { error, retry_in_ms } => {
                assert!(retry_in_ms <= 500, "{retry_in_ms}");
                assert!(error.to_string().contains("camera live"), "{error}");
                failures += 1;
                last_failure = error.to_string();
            }
            SourceEvent::Offline { camera, reason, .. } => {
                assert_eq!(&*camera, "live");
                break reason;
            }
            SourceEvent::Online { .. } => panic!("online before offline"),
        }
    };
    let waited = killed.elapsed();
    assert!(
        waited >= Duration::from_millis(1_500) && waited < Duration::from_secs(6),
        "offline after {waited:?}"
    );
    assert!(failures >= 2, "only {failures} restart attempts");
    // The reason is the last failure, with ffmpeg's own words (the first restart may still
    // see the dying stream; later ones are refused by the closed port).
    assert_eq!(reason, last_failure);
    assert!(
        reason.contains("Connection refused") || reason.contains("exit status"),
        "{reason}"
    );

    // The server comes back: Online, then frames again with seq continuing.
    let _server = serve(port);
    let mut online = false;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(
            Instant::now() < deadline,
            "no recovery: {:?}",
            source.last_error()
        );
        match next(&mut source, 15).await.unwrap() {
            SourceEvent::Failed { .. } => {}
            SourceEvent::Online { offline_for_ms, .. } => {
                assert!(offline_for_ms >= 2_000, "{offline_for_ms}");
                online = true;
            }
            SourceEvent::Frame(f) => {
                assert!(online, "a frame came back before Online");
                assert_eq!(
                    f.seq,
                    last_seq.unwrap() + 1,
                    "seq continues across restarts"
                );
                break;
            }
            SourceEvent::Offline { .. } => panic!("offline twice in one outage"),
        }
    }
}

#[tokio::test]
async fn a_corrupt_file_reports_ffmpegs_error_and_keeps_retrying_without_panicking() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.avi");
    // Deterministic noise, no RNG dependency.
    let mut x: u32 = 0x1234_5678;
    let bytes: Vec<u8> = (0..200_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    std::fs::write(&path, bytes).unwrap();
    let (_shutdown_tx, shutdown) = watch::channel(false);
    let cfg = FfmpegSourceConfig {
        // Longer than a few failed starts even on a loaded machine, so the offline reason is
        // ffmpeg's error rather than "no frame yet".
        offline_after_ms: 3_000,
        ..config("broken", &path.to_string_lossy())
    };
    let mut source = FfmpegSource::new(cfg, shutdown).unwrap();

    let mut failures = Vec::new();
    let mut offline_reason = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    while failures.len() < 3 || offline_reason.is_none() {
        assert!(Instant::now() < deadline, "{failures:?}");
        match next(&mut source, 10).await.unwrap() {
            SourceEvent::Failed { error, .. } => failures.push(error.to_string()),
            SourceEvent::Offline { reason, .. } => {
                assert_eq!(
                    Some(&reason),
                    failures.last(),
                    "the reason is the last failure"
                );
                offline_reason = Some(reason);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    for message in &failures {
        assert!(message.contains("camera broken"), "{message}");
        assert!(
            message.contains("Invalid data found when processing input"),
            "ffmpeg's stderr is missing from {message}"
        );
    }
    assert!(offline_reason.unwrap().contains("Invalid data"));
    assert!(source.last_error().is_some());
}

#[tokio::test]
async fn shutdown_stops_a_running_source_promptly() {
    let (shutdown_tx, shutdown) = watch::channel(false);
    let cfg = FfmpegSourceConfig {
        realtime: true,
        at_end: AtEnd::Loop,
        ..config("rt", &testkit::vtest().to_string_lossy())
    };
    let mut source = FfmpegSource::new(cfg, shutdown).unwrap();
    let first = Instant::now();
    for _ in 0..3 {
        assert!(matches!(
            next(&mut source, 10).await,
            Some(SourceEvent::Frame(_))
        ));
    }
    // Real time: three frames at 5 fps take about 0.4 s, not the few ms of a replay.
    assert!(first.elapsed() >= Duration::from_millis(300));
    shutdown_tx.send(true).unwrap();
    let stopped = Instant::now();
    assert!(next(&mut source, 5).await.is_none());
    assert!(stopped.elapsed() < Duration::from_secs(3));
}

/// A scripted source through the `FrameSource` seam, as other stages' tests use it.
#[derive(Debug)]
struct Scripted(Vec<SourceEvent>);

impl FrameSource for Scripted {
    fn camera(&self) -> &str {
        "scripted"
    }

    async fn next_event(&mut self) -> Option<SourceEvent> {
        if self.0.is_empty() {
            None
        } else {
            Some(self.0.remove(0))
        }
    }
}

fn frame(seq: u64) -> Frame {
    Frame {
        camera: Arc::from("scripted"),
        seq,
        pts_ms: 0,
        wall_ms: 0,
        image: RgbFrame::default(),
    }
}

#[tokio::test]
async fn pump_keeps_only_the_newest_frame_but_every_health_event() {
    let camera: Arc<str> = Arc::from("scripted");
    let mut source = Scripted(vec![
        SourceEvent::Frame(frame(0)),
        SourceEvent::Offline {
            camera: camera.clone(),
            since_ms: 0,
            reason: "cable cut".into(),
        },
        SourceEvent::Online {
            camera,
            offline_for_ms: 10_000,
        },
        SourceEvent::Frame(frame(1)),
        SourceEvent::Frame(frame(2)),
    ]);
    let slot = LatestFrame::new();
    let (tx, mut rx) = mpsc::channel(8);
    pump(&mut source, &slot, &tx).await;
    assert_eq!(slot.next().await.map(|f| f.seq), Some(2));
    assert!(
        slot.next().await.is_none(),
        "pump closes the slot at the end"
    );
    assert_eq!(slot.stats().skipped, 2);
    assert!(matches!(rx.recv().await, Some(SourceEvent::Offline { .. })));
    assert!(matches!(rx.recv().await, Some(SourceEvent::Online { .. })));
}

#[tokio::test]
async fn an_rtsp_camera_streams_frames_goes_offline_when_silent_and_recovers() {
    let mut camera = rtsp::RtspCamera::start(testkit::vtest()).await;
    let (_shutdown_tx, shutdown) = watch::channel(false);
    let cfg = FfmpegSourceConfig {
        offline_after_ms: 2_000,
        // Longer than connecting and probing the stream takes on a loaded 2-core machine.
        stall_after_ms: 6_000,
        ..config("rtsp", &camera.url)
    };
    assert!(cfg.args().contains(&"-rtsp_transport".to_string()));
    let mut source = FfmpegSource::new(cfg, shutdown).unwrap();

    let mut last_seq = None;
    let mut got = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while got < 5 {
        assert!(
            Instant::now() < deadline,
            "no frames: {:?}",
            source.last_error()
        );
        if let SourceEvent::Frame(f) = next(&mut source, 15).await.unwrap() {
            assert_eq!((f.image.width, f.image.height), (640, 480));
            last_seq = Some(f.seq);
            got += 1;
        }
    }

    // The encoder dies but the connection stays up: a silent stream. Offline comes first
    // (2 s), then the source notices the stall (6 s) and restarts ffmpeg.
    camera.kill_encoder().await;
    let mut offline = false;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        assert!(
            Instant::now() < deadline,
            "offline {offline}, never stalled"
        );
        match next(&mut source, 10).await.unwrap() {
            SourceEvent::Frame(f) => {
                assert!(!offline, "a frame while offline");
                last_seq = Some(f.seq);
            }
            SourceEvent::Failed { error, .. } => {
                if error.to_string().contains("no frame from ffmpeg") {
                    break;
                }
            }
            SourceEvent::Offline { camera, reason, .. } => {
                assert_eq!(&*camera, "rtsp");
                assert!(reason.contains("still connected"), "{reason}");
                offline = true;
            }
            SourceEvent::Online { .. } => panic!("online before offline"),
        }
    }
    assert!(offline, "stalled before going offline");

    camera.start_encoder();
    let mut online = false;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(
            Instant::now() < deadline,
            "no recovery: {:?}",
            source.last_error()
        );
        match next(&mut source, 20).await.unwrap() {
            SourceEvent::Failed { .. } => {}
            SourceEvent::Online { .. } => online = true,
            SourceEvent::Frame(f) => {
                assert!(online, "a frame came back before Online");
                assert_eq!(f.seq, last_seq.unwrap() + 1);
                break;
            }
            SourceEvent::Offline { .. } => panic!("offline twice in one outage"),
        }
    }
}
