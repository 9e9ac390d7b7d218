//! The HTTP snapshot, MJPEG and directory sources against real I/O: a fake camera (a small
//! HTTP/1.1 server on 127.0.0.1 serving the sample JPEGs, checking Basic and Digest
//! credentials for real, and misbehaving on cue) and a temporary upload directory.
#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use edge_agent::frame::Frame;
use edge_agent::source::{
    AfterRead, AuthMode, DirSource, DirSourceConfig, FrameSource, HttpSnapshotSource,
    HttpSnapshotSourceConfig, MjpegSource, MjpegSourceConfig, Secret, SourceEvent,
};
use md5::Md5;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::timeout;

/// The sample JPEGs by name, e.g. `sample("000000001000")` (640×480).
fn sample(name: &str) -> Vec<u8> {
    std::fs::read(testkit::sample_frames().join(format!("{name}.jpg"))).unwrap()
}

const JPEG_640X480: &str = "000000001000";
const JPEG_621X640: &str = "000000000872";
const JPEG_640X427: &str = "000000001268";

// ---------------------------------------------------------------------------------------------
// The fake camera

/// One answer to a snapshot request.
#[derive(Debug, Clone)]
enum Reply {
    Jpeg(&'static str),
    Html,
    /// The first half of a sample, served as a complete `image/jpeg` body.
    Truncated,
    Status500,
}

#[derive(Debug, Clone)]
enum Auth {
    Open,
    Basic,
    /// Digest challenges offered, in this order, one `WWW-Authenticate` header each.
    Digest(Vec<&'static str>),
}

#[derive(Debug, Clone, Copy)]
struct MjpegPlan {
    interval: Duration,
    /// Cut the first connection in the middle of this part (1-based).
    cut_first_at: Option<u64>,
}

#[derive(Debug)]
struct CameraState {
    auth: Auth,
    user: &'static str,
    password: &'static str,
    /// Scripted snapshot replies; when empty, `Jpeg(JPEG_640X480)`.
    script: VecDeque<Reply>,
    mjpeg: MjpegPlan,
    snapshots: u64,
    unauthorized: u64,
    mjpeg_connections: u64,
    parts_sent: u64,
    /// Digest: the algorithm of each accepted answer.
    digest_algorithms: Vec<String>,
    /// Digest: issued nonces and the last `nc` seen for each (a replayed nc is refused).
    nonces: HashMap<String, u32>,
}

impl CameraState {
    fn new(auth: Auth) -> Self {
        Self {
            auth,
            user: "admin",
            password: "s3cret",
            script: VecDeque::new(),
            mjpeg: MjpegPlan {
                interval: Duration::from_millis(40),
                cut_first_at: None,
            },
            snapshots: 0,
            unauthorized: 0,
            mjpeg_connections: 0,
            parts_sent: 0,
            digest_algorithms: Vec::new(),
            nonces: HashMap::new(),
        }
    }
}

type Shared = Arc<Mutex<CameraState>>;

struct FakeCamera {
    addr: SocketAddr,
    state: Shared,
    task: Option<JoinHandle<()>>,
}

impl FakeCamera {
    async fn start(auth: Auth) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(CameraState::new(auth)));
        let task = Some(tokio::spawn(serve(listener, state.clone())));
        Self { addr, state, task }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, CameraState> {
        self.state.lock().unwrap()
    }

    /// Closes the listener and every open connection: connecting is refused until restart.
    fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    async fn restart(&mut self) {
        // Tokio listeners set SO_REUSEADDR, so the port is free again at once.
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.task = Some(tokio::spawn(serve(listener, self.state.clone())));
    }
}

impl Drop for FakeCamera {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn serve(listener: TcpListener, state: Shared) {
    // Dropping the set (when this task is aborted) aborts every connection.
    let mut connections = JoinSet::new();
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            continue;
        };
        connections.spawn(handle(socket, state.clone()));
        while connections.try_join_next().is_some() {}
    }
}

/// Serves keep-alive HTTP/1.1 requests on one connection.
async fn handle(socket: TcpStream, state: Shared) {
    let mut socket = BufReader::new(socket);
    loop {
        let mut request_line = String::new();
        if socket.read_line(&mut request_line).await.unwrap_or(0) == 0 {
            return;
        }
        let mut headers = HashMap::new();
        loop {
            let mut line = String::new();
            if socket.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
            }
        }
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or("/")
            .to_string();
        let challenge = check_auth(&state, &path, headers.get("authorization"));
        if let Some(challenges) = challenge {
            let mut head = "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n".to_string();
            for c in challenges {
                head.push_str(&format!("WWW-Authenticate: {c}\r\n"));
            }
            head.push_str("\r\n");
            if socket.get_mut().write_all(head.as_bytes()).await.is_err() {
                return;
            }
            continue;
        }
        if path.starts_with("/mjpeg") {
            stream_mjpeg(socket.into_inner(), state).await;
            return;
        }
        let reply = {
            let mut s = state.lock().unwrap();
            s.snapshots += 1;
            s.script.pop_front().unwrap_or(Reply::Jpeg(JPEG_640X480))
        };
        let (status, content_type, body) = match reply {
            Reply::Jpeg(name) => ("200 OK", "image/jpeg", sample(name)),
            Reply::Html => (
                "200 OK",
                "text/html; charset=utf-8",
                b"<!DOCTYPE html><html><body>Login expired</body></html>".to_vec(),
            ),
            Reply::Truncated => {
                let mut jpeg = sample(JPEG_640X480);
                jpeg.truncate(jpeg.len() / 2);
                ("200 OK", "image/jpeg", jpeg)
            }
            Reply::Status500 => (
                "500 Internal Server Error",
                "text/plain",
                b"encoder busy".to_vec(),
            ),
        };
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let out = socket.get_mut();
        if out.write_all(head.as_bytes()).await.is_err() || out.write_all(&body).await.is_err() {
            return;
        }
    }
}

/// `None` when the request may proceed, else the challenges for a 401.
fn check_auth(state: &Shared, path: &str, authorization: Option<&String>) -> Option<Vec<String>> {
    let mut s = state.lock().unwrap();
    let ok = match (&s.auth, authorization) {
        (Auth::Open, _) => true,
        (Auth::Basic, Some(value)) => {
            // base64("admin:s3cret")
            value == "Basic YWRtaW46czNjcmV0"
        }
        (Auth::Digest(_), Some(value)) => check_digest(&mut s, path, value),
        (_, None) => false,
    };
    if ok {
        return None;
    }
    s.unauthorized += 1;
    let challenges = match s.auth.clone() {
        Auth::Open => Vec::new(),
        Auth::Basic => vec!["Basic realm=\"fake camera\"".to_string()],
        Auth::Digest(algorithms) => algorithms
            .iter()
            .map(|alg| {
                let nonce = format!("nonce{}{alg}", s.unauthorized);
                s.nonces.insert(nonce.clone(), 0);
                format!(
                    "Digest realm=\"fake camera\", qop=\"auth\", algorithm={alg}, \
                     nonce=\"{nonce}\", opaque=\"op4que\""
                )
            })
            .collect(),
    };
    Some(challenges)
}

/// Checks a Digest answer the way a camera does: recomputes the response from the password,
/// and refuses unknown nonces and replayed `nc` values.
fn check_digest(s: &mut CameraState, path: &str, value: &str) -> bool {
    let Some(params) = value.strip_prefix("Digest ") else {
        return false;
    };
    let mut p = HashMap::new();
    for item in split_params(params) {
        if let Some((k, v)) = item.split_once('=') {
            p.insert(k.trim().to_string(), v.trim().trim_matches('"').to_string());
        }
    }
    let get = |k: &str| p.get(k).cloned().unwrap_or_default();
    let alg = p.get("algorithm").cloned().unwrap_or_else(|| "MD5".into());
    let h = |data: String| -> String {
        let bytes: Vec<u8> = match alg.as_str() {
            "SHA-256" => Sha256::digest(data.as_bytes()).to_vec(),
            _ => Md5::digest(data.as_bytes()).to_vec(),
        };
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    };
    let nonce = get("nonce");
    let Ok(nc) = u32::from_str_radix(&get("nc"), 16) else {
        return false;
    };
    let Some(last_nc) = s.nonces.get(&nonce).copied() else {
        return false;
    };
    if get("username") != s.user
        || get("uri") != path
        || get("qop") != "auth"
        || get("opaque") != "op4que"
        || nc <= last_nc
    {
        return false;
    }
    let ha1 = h(format!("{}:fake camera:{}", s.user, s.password));
    let ha2 = h(format!("GET:{path}"));
    let expected = h(format!(
        "{ha1}:{nonce}:{}:{}:auth:{ha2}",
        get("nc"),
        get("cnonce")
    ));
    if get("response") != expected {
        return false;
    }
    s.nonces.insert(nonce, nc);
    s.digest_algorithms.push(alg);
    true
}

/// Splits `a="x, y", b=z` at the commas outside quotes.
fn split_params(s: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut quoted = false;
    for c in s.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                out.last_mut().unwrap().push(c);
            }
            ',' if !quoted => out.push(String::new()),
            _ => out.last_mut().unwrap().push(c),
        }
    }
    out
}

/// An endless MJPEG stream (until the plan cuts it), alternating parts with and without
/// `Content-Length`.
async fn stream_mjpeg(mut socket: TcpStream, state: Shared) {
    let (plan, connection) = {
        let mut s = state.lock().unwrap();
        s.mjpeg_connections += 1;
        (s.mjpeg, s.mjpeg_connections)
    };
    let head = "HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=camframe\r\n\
                Cache-Control: no-cache\r\nConnection: close\r\n\r\n";
    if socket.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    let body = &sample(JPEG_640X480);
    for index in 1u64.. {
        let mut part = b"--camframe\r\nContent-Type: image/jpeg\r\n".to_vec();
        if index % 2 == 0 {
            part.extend(format!("Content-Length: {}\r\n", body.len()).bytes());
        }
        part.extend(b"\r\n");
        if connection == 1 && plan.cut_first_at == Some(index) {
            part.extend(&body[..body.len() / 2]);
            let _ = socket.write_all(&part).await;
            return;
        }
        part.extend(body);
        part.extend(b"\r\n");
        if socket.write_all(&part).await.is_err() {
            return;
        }
        state.lock().unwrap().parts_sent += 1;
        tokio::time::sleep(plan.interval).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// The next event, failing the test if none comes within `ms`.
async fn next<S: FrameSource>(source: &mut S, ms: u64) -> SourceEvent {
    timeout(Duration::from_millis(ms), source.next_event())
        .await
        .expect("source produced no event in time")
        .expect("source ended")
}

/// The next `n` events, which must all be frames.
async fn frames<S: FrameSource>(source: &mut S, n: usize) -> Vec<Frame> {
    let mut out = Vec::new();
    while out.len() < n {
        match next(source, 5_000).await {
            SourceEvent::Frame(frame) => out.push(frame),
            other => panic!("expected a frame, got {other:?}"),
        }
    }
    out
}

/// Events until the first that `stop` accepts, which is returned with those before it.
async fn until<S: FrameSource>(
    source: &mut S,
    ms: u64,
    stop: impl Fn(&SourceEvent) -> bool,
) -> (Vec<SourceEvent>, SourceEvent) {
    let deadline = Instant::now() + Duration::from_millis(ms);
    let mut before = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = next(source, left.as_millis() as u64).await;
        if stop(&event) {
            return (before, event);
        }
        before.push(event);
    }
}

fn snapshot_config(camera: &str, url: String) -> HttpSnapshotSourceConfig {
    HttpSnapshotSourceConfig {
        camera: camera.into(),
        url,
        fps: 20.0,
        width: 320,
        timeout_ms: 2_000,
        backoff_min_ms: 50,
        backoff_max_ms: 200,
        ..HttpSnapshotSourceConfig::default()
    }
}

fn with_login(
    config: HttpSnapshotSourceConfig,
    auth: AuthMode,
    password: &str,
) -> HttpSnapshotSourceConfig {
    HttpSnapshotSourceConfig {
        username: "admin".into(),
        password: Secret::new(password),
        auth,
        ..config
    }
}

fn failed_error(event: &SourceEvent) -> String {
    match event {
        SourceEvent::Failed { error, .. } => error.to_string(),
        other => panic!("expected Failed, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Snapshot polling

#[tokio::test]
async fn snapshots_are_polled_at_the_fps_and_scaled_to_the_working_width() {
    let camera = FakeCamera::start(Auth::Open).await;
    camera.state().script.extend([
        Reply::Jpeg(JPEG_640X480),
        Reply::Jpeg(JPEG_621X640),
        Reply::Jpeg(JPEG_640X427),
    ]);
    let (_tx, shutdown) = watch::channel(false);
    let mut source =
        HttpSnapshotSource::new(snapshot_config("snap", camera.url("/snap")), shutdown).unwrap();
    let started = Instant::now();
    let got = frames(&mut source, 4).await;
    let sizes: Vec<_> = got
        .iter()
        .map(|f| (f.image.width, f.image.height))
        .collect();
    // 621x640 → 320x330 and 640x427 → 320x214, as ffmpeg's scale=320:-2 would give.
    assert_eq!(sizes, [(320, 240), (320, 330), (320, 214), (320, 240)]);
    for (i, f) in got.iter().enumerate() {
        assert_eq!(f.seq, i as u64);
        assert_eq!(f.pts_ms, i as i64 * 50);
        assert_eq!(&*f.camera, "snap");
        assert_eq!(
            f.image.data.len(),
            (f.image.width * f.image.height * 3) as usize
        );
    }
    // Four polls at 20 fps: the last starts 150 ms after the first.
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert_eq!(source.counters().stats().frames, 4);
    assert_eq!(camera.state().snapshots, 4);
}

#[tokio::test]
async fn basic_auth_is_sent_and_a_wrong_password_is_a_failure_that_never_shows_it() {
    let camera = FakeCamera::start(Auth::Basic).await;
    let (_tx, shutdown) = watch::channel(false);
    let base = snapshot_config("basic", camera.url("/snap"));

    let mut source = HttpSnapshotSource::new(
        with_login(base.clone(), AuthMode::Basic, "s3cret"),
        shutdown.clone(),
    )
    .unwrap();
    frames(&mut source, 2).await;
    assert_eq!(camera.state().unauthorized, 0, "basic is sent up front");

    // auto asks first, then answers the Basic challenge.
    let mut source = HttpSnapshotSource::new(
        with_login(base.clone(), AuthMode::Auto, "s3cret"),
        shutdown.clone(),
    )
    .unwrap();
    frames(&mut source, 2).await;
    assert_eq!(camera.state().unauthorized, 1);

    let mut source =
        HttpSnapshotSource::new(with_login(base, AuthMode::Basic, "wrong-pw"), shutdown).unwrap();
    let error = failed_error(&next(&mut source, 5_000).await);
    assert!(error.contains("camera basic"), "{error}");
    assert!(error.contains("Basic credentials rejected"), "{error}");
    assert!(!error.contains("wrong-pw"), "{error}");
    assert!(!format!("{source:?}").contains("wrong-pw"));
    assert_eq!(source.counters().stats().failures, 1);
}

#[tokio::test]
async fn digest_auth_answers_the_challenge_prefers_sha256_and_a_wrong_password_is_rejected() {
    let camera = FakeCamera::start(Auth::Digest(vec!["MD5", "SHA-256"])).await;
    let (_tx, shutdown) = watch::channel(false);
    let base = snapshot_config("digest", camera.url("/snap?channel=1"));

    let mut source = HttpSnapshotSource::new(
        with_login(base.clone(), AuthMode::Digest, "s3cret"),
        shutdown.clone(),
    )
    .unwrap();
    frames(&mut source, 3).await;
    {
        let s = camera.state();
        // One challenge; then the nonce is reused with nc 1, 2, 3 (the server refuses replays).
        assert_eq!(s.unauthorized, 1);
        assert_eq!(s.digest_algorithms, ["SHA-256"; 3]);
    }

    let mut source =
        HttpSnapshotSource::new(with_login(base, AuthMode::Auto, "not-it"), shutdown).unwrap();
    let error = failed_error(&next(&mut source, 5_000).await);
    assert!(error.contains("Digest credentials rejected"), "{error}");
    assert!(!error.contains("not-it"), "{error}");
}

#[tokio::test]
async fn md5_digest_is_answered_in_auto_mode() {
    let camera = FakeCamera::start(Auth::Digest(vec!["MD5"])).await;
    let (_tx, shutdown) = watch::channel(false);
    let config = with_login(
        snapshot_config("md5", camera.url("/snap")),
        AuthMode::Auto,
        "s3cret",
    );
    let mut source = HttpSnapshotSource::new(config, shutdown).unwrap();
    frames(&mut source, 2).await;
    assert_eq!(camera.state().digest_algorithms, ["MD5"; 2]);
}

#[tokio::test]
async fn garbage_responses_are_skipped_and_counted_and_a_run_of_them_backs_off() {
    let camera = FakeCamera::start(Auth::Open).await;
    camera.state().script.extend([
        Reply::Jpeg(JPEG_640X480),
        Reply::Html,
        Reply::Jpeg(JPEG_640X480),
        Reply::Truncated,
        Reply::Jpeg(JPEG_640X480),
        Reply::Status500,
        Reply::Jpeg(JPEG_640X480),
        Reply::Status500,
        Reply::Status500,
        Reply::Status500,
    ]);
    let (_tx, shutdown) = watch::channel(false);
    let config = snapshot_config("garbage", camera.url("/snap"));
    let url = config.url.clone();
    let mut source = HttpSnapshotSource::new(config, shutdown).unwrap();
    let counters = source.counters();

    // Single bad snapshots cost only their frame; numbering has no gaps.
    let got = frames(&mut source, 4).await;
    assert_eq!(got.iter().map(|f| f.seq).collect::<Vec<_>>(), [0, 1, 2, 3]);
    let stats = counters.stats();
    assert_eq!((stats.frames, stats.skipped_bad, stats.failures), (4, 3, 0));

    // Three in a row are a failure naming the camera, the URL, the status and the body.
    let error = failed_error(&next(&mut source, 5_000).await);
    for part in [
        "camera garbage",
        url.as_str(),
        "500 Internal Server Error",
        "encoder busy",
    ] {
        assert!(error.contains(part), "{part:?} missing from {error}");
    }
    assert_eq!(counters.stats().failures, 1);
    // ...and after the back-off the camera is polled again and recovers.
    let got = frames(&mut source, 1).await;
    assert_eq!(got[0].seq, 4);
    assert_eq!(counters.stats().skipped_bad, 6);
}

#[tokio::test]
async fn a_camera_that_goes_down_fails_then_goes_offline_and_comes_back_online() {
    let mut camera = FakeCamera::start(Auth::Open).await;
    let (_tx, shutdown) = watch::channel(false);
    let config = HttpSnapshotSourceConfig {
        offline_after_ms: 700,
        ..snapshot_config("flaky", camera.url("/snap"))
    };
    let mut source = HttpSnapshotSource::new(config, shutdown).unwrap();
    frames(&mut source, 1).await;

    camera.stop();
    let (before, offline) = until(&mut source, 5_000, |e| {
        matches!(e, SourceEvent::Offline { .. })
    })
    .await;
    assert!(!before.is_empty(), "failures are reported before Offline");
    for event in &before {
        let error = failed_error(event);
        assert!(error.contains("camera flaky"), "{error}");
        assert!(error.contains("request failed"), "{error}");
    }
    let SourceEvent::Offline {
        camera: id, reason, ..
    } = offline
    else {
        unreachable!()
    };
    assert_eq!(&*id, "flaky");
    assert!(reason.contains("request failed"), "{reason}");

    camera.restart().await;
    let (_, online) = until(&mut source, 5_000, |e| {
        matches!(e, SourceEvent::Online { .. })
    })
    .await;
    let SourceEvent::Online { offline_for_ms, .. } = online else {
        unreachable!()
    };
    assert!(offline_for_ms >= 700, "{offline_for_ms}");
    // The frame that brought it back follows at once, numbered on.
    let SourceEvent::Frame(frame) = next(&mut source, 100).await else {
        panic!("a frame follows Online");
    };
    assert_eq!(frame.seq, 1);
}

// ---------------------------------------------------------------------------------------------
// MJPEG

fn mjpeg_config(camera: &str, url: String) -> MjpegSourceConfig {
    MjpegSourceConfig {
        camera: camera.into(),
        url,
        fps: 5.0,
        width: 320,
        backoff_min_ms: 50,
        backoff_max_ms: 200,
        ..MjpegSourceConfig::default()
    }
}

#[tokio::test]
async fn an_mjpeg_stream_is_parsed_and_sampled_down_before_decoding() {
    // 25 parts a second, Digest-protected; the detector wants 5.
    let camera = FakeCamera::start(Auth::Digest(vec!["MD5"])).await;
    let (_tx, shutdown) = watch::channel(false);
    let config = MjpegSourceConfig {
        username: "admin".into(),
        password: Secret::new("s3cret"),
        auth: AuthMode::Digest,
        ..mjpeg_config("mjpeg", camera.url("/mjpeg"))
    };
    let mut source = MjpegSource::new(config, shutdown).unwrap();
    let counters = source.counters();
    let started = Instant::now();
    let got = frames(&mut source, 6).await;
    let elapsed = started.elapsed();
    for (i, f) in got.iter().enumerate() {
        assert_eq!((f.seq, f.pts_ms), (i as u64, i as i64 * 200));
        assert_eq!((f.image.width, f.image.height), (320, 240));
    }
    let stats = counters.stats();
    let sent = camera.state().parts_sent;
    // Six kept at 5 fps span at least a second; the rest were dropped undecoded.
    assert!(elapsed >= Duration::from_millis(900), "{elapsed:?}");
    assert_eq!(stats.frames, 6);
    assert_eq!(stats.skipped_bad, 0);
    assert!(stats.dropped >= 12, "{stats:?}, sent {sent}");
    assert!(
        stats.frames + stats.dropped <= sent,
        "{stats:?}, sent {sent}"
    );
    assert_eq!(camera.state().mjpeg_connections, 1);
}

#[tokio::test]
async fn an_mjpeg_stream_cut_mid_part_is_a_failure_and_reconnects() {
    let camera = FakeCamera::start(Auth::Open).await;
    camera.state().mjpeg.cut_first_at = Some(4);
    camera.state().mjpeg.interval = Duration::from_millis(100);
    let (_tx, shutdown) = watch::channel(false);
    let mut source = MjpegSource::new(mjpeg_config("cut", camera.url("/mjpeg")), shutdown).unwrap();
    let (before, failed) = until(&mut source, 5_000, |e| {
        matches!(e, SourceEvent::Failed { .. })
    })
    .await;
    assert!(!before.is_empty(), "frames before the cut");
    let error = failed_error(&failed);
    assert!(error.contains("camera cut"), "{error}");
    assert!(error.contains("ended the stream"), "{error}");
    // Reconnects after the back-off and numbering carries on.
    let got = frames(&mut source, 2).await;
    assert_eq!(got[0].seq, before.len() as u64);
    assert_eq!(camera.state().mjpeg_connections, 2);
    assert_eq!(source.counters().stats().failures, 1);
}

#[tokio::test]
async fn an_mjpeg_url_serving_a_single_jpeg_is_refused_naming_the_content_type() {
    let camera = FakeCamera::start(Auth::Open).await;
    let (_tx, shutdown) = watch::channel(false);
    let mut source =
        MjpegSource::new(mjpeg_config("notmjpeg", camera.url("/snap")), shutdown).unwrap();
    let error = failed_error(&next(&mut source, 5_000).await);
    assert!(error.contains("\"image/jpeg\" is not multipart"), "{error}");
    assert!(error.contains("ff d8 ff"), "first bytes shown: {error}");
}

// ---------------------------------------------------------------------------------------------
// Upload directory

fn dir_config(camera: &str, path: &Path) -> DirSourceConfig {
    DirSourceConfig {
        camera: camera.into(),
        path: path.to_path_buf(),
        fps: 20.0,
        poll_ms: 50,
        offline_after_ms: 5_000,
        backoff_min_ms: 50,
        backoff_max_ms: 200,
        ..DirSourceConfig::default()
    }
}

/// Writes `bytes` to `dir/name` with its mtime `age_s` seconds in the past.
fn upload(dir: &Path, name: &str, bytes: &[u8], age_s: u64) {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    let file = std::fs::File::options().write(true).open(&path).unwrap();
    file.set_modified(SystemTime::now() - Duration::from_secs(age_s))
        .unwrap();
}

fn jpgs_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".jpg"))
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn uploaded_files_are_read_oldest_first_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    // Name order and mtime order disagree: mtime wins.
    upload(dir.path(), "a.jpg", &sample(JPEG_640X427), 10);
    upload(dir.path(), "b.jpg", &sample(JPEG_621X640), 20);
    upload(dir.path(), "c.jpg", &sample(JPEG_640X480), 5);
    let (_tx, shutdown) = watch::channel(false);
    let mut source = DirSource::new(dir_config("ftp", dir.path()), shutdown).unwrap();
    let got = frames(&mut source, 3).await;
    let sizes: Vec<_> = got
        .iter()
        .map(|f| (f.image.width, f.image.height))
        .collect();
    assert_eq!(sizes, [(621, 640), (640, 427), (640, 480)], "b, a, c");
    assert_eq!(got.iter().map(|f| f.seq).collect::<Vec<_>>(), [0, 1, 2]);
    assert!(jpgs_in(dir.path()).is_empty(), "{:?}", jpgs_in(dir.path()));
    assert!(!dir.path().join("done").exists());
}

#[tokio::test]
async fn a_file_still_being_uploaded_is_not_read_until_its_size_settles() {
    let dir = tempfile::tempdir().unwrap();
    let jpeg = sample(JPEG_640X480);
    let path = dir.path().join("upload.jpg");
    let (_tx, shutdown) = watch::channel(false);
    let config = DirSourceConfig {
        poll_ms: 150,
        ..dir_config("slow-ftp", dir.path())
    };
    let mut source = DirSource::new(config, shutdown).unwrap();
    // An FTP upload: the file grows in pieces, well within one poll of each other.
    let writer = tokio::spawn(async move {
        use std::io::Write;
        let mut file = std::fs::File::create(&path).unwrap();
        for piece in jpeg.chunks(jpeg.len() / 16 + 1) {
            file.write_all(piece).unwrap();
            file.flush().unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Instant::now()
    });
    let got = frames(&mut source, 1).await;
    let received = Instant::now();
    let finished = writer.await.unwrap();
    assert!(received > finished, "read before the upload finished");
    assert_eq!((got[0].image.width, got[0].image.height), (640, 480));
    assert_eq!(
        source.counters().stats().skipped_bad,
        0,
        "never read half-written"
    );
}

#[tokio::test]
async fn move_mode_files_good_uploads_in_done_and_corrupt_ones_in_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let mut truncated = sample(JPEG_640X480);
    truncated.truncate(truncated.len() / 3);
    upload(dir.path(), "1.jpg", &sample(JPEG_640X480), 30);
    upload(dir.path(), "2.jpg", &truncated, 20);
    upload(dir.path(), "3.jpg", b"<html>not an image</html>", 15);
    upload(dir.path(), "4.jpg", &sample(JPEG_640X427), 10);
    let (_tx, shutdown) = watch::channel(false);
    let config = DirSourceConfig {
        after_read: AfterRead::Move,
        ..dir_config("ftp-move", dir.path())
    };
    let mut source = DirSource::new(config, shutdown).unwrap();
    let got = frames(&mut source, 2).await;
    assert_eq!(
        got[1].image.height, 427,
        "the source carried on past the corrupt files"
    );
    assert_eq!(got[1].seq, 1, "skipped files take no sequence number");
    assert!(jpgs_in(dir.path()).is_empty());
    assert_eq!(jpgs_in(&dir.path().join("done")), ["1.jpg", "4.jpg"]);
    assert_eq!(jpgs_in(&dir.path().join("rejected")), ["2.jpg", "3.jpg"]);
    let stats = source.counters().stats();
    assert_eq!((stats.frames, stats.skipped_bad, stats.failures), (2, 2, 0));
}

#[tokio::test]
async fn a_quiet_directory_goes_offline_and_the_next_upload_brings_it_online() {
    let dir = tempfile::tempdir().unwrap();
    let (_tx, shutdown) = watch::channel(false);
    let config = DirSourceConfig {
        offline_after_ms: 400,
        ..dir_config("quiet", dir.path())
    };
    let mut source = DirSource::new(config, shutdown).unwrap();
    let SourceEvent::Offline { reason, .. } = next(&mut source, 3_000).await else {
        panic!("expected Offline");
    };
    assert!(reason.contains("no new file for 400 ms"), "{reason}");
    upload(dir.path(), "x.jpg", &sample(JPEG_640X480), 0);
    assert!(matches!(
        next(&mut source, 3_000).await,
        SourceEvent::Online { .. }
    ));
    let got = frames(&mut source, 1).await;
    assert_eq!(got[0].seq, 0);
}

#[tokio::test]
async fn a_missing_directory_fails_with_back_off_and_recovers_when_it_appears() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("cam7");
    let (_tx, shutdown) = watch::channel(false);
    let mut source = DirSource::new(dir_config("cam7", &dir), shutdown).unwrap();
    let error = failed_error(&next(&mut source, 3_000).await);
    assert!(error.contains("camera cam7"), "{error}");
    assert!(error.contains("cannot list the directory"), "{error}");
    std::fs::create_dir(&dir).unwrap();
    upload(&dir, "x.jpg", &sample(JPEG_640X480), 0);
    let (_, frame) = until(&mut source, 5_000, |e| matches!(e, SourceEvent::Frame(_))).await;
    let SourceEvent::Frame(frame) = frame else {
        unreachable!()
    };
    assert_eq!(frame.seq, 0);
}

#[tokio::test]
async fn shutdown_ends_every_source_promptly() {
    let camera = FakeCamera::start(Auth::Open).await;
    let dir = tempfile::tempdir().unwrap();
    let (tx, shutdown) = watch::channel(false);
    let mut snap =
        HttpSnapshotSource::new(snapshot_config("s", camera.url("/snap")), shutdown.clone())
            .unwrap();
    let mut mjpeg =
        MjpegSource::new(mjpeg_config("m", camera.url("/mjpeg")), shutdown.clone()).unwrap();
    let mut ftp = DirSource::new(dir_config("d", dir.path()), shutdown).unwrap();
    frames(&mut snap, 1).await;
    frames(&mut mjpeg, 1).await;
    tx.send(true).unwrap();
    for ended in [
        timeout(Duration::from_secs(1), snap.next_event()).await,
        timeout(Duration::from_secs(1), mjpeg.next_event()).await,
        timeout(Duration::from_secs(1), ftp.next_event()).await,
    ] {
        assert!(ended.unwrap().is_none());
    }
}
