//! The web front end end to end in real headless Chromium: a real hub (embedded broker, HTTP
//! API, the embedded `hub/web/` files) and `hub/e2e/dashboard.mjs` (Playwright driving
//! Debian's Chromium). The script logs in as an operator and as a grid member on a phone and
//! asks this test, over a line protocol, to publish alerts over MQTT as a site's agent would:
//!
//! - script → test (stdout): `STEP publish snapshot`, `STEP publish escalate`,
//!   `STEP publish info` (a record-only line crossing), `STEP publish replayed` (an alert
//!   whose own time is 346 h behind the hub's), `STEP publish silenced` (from the camera the
//!   operator silenced in the browser; the test checks it was muted) or
//!   `STEP publish sightings <tag>`;
//! - test → script (stdin): `published <case-id> <epoch-ms>` (for sightings, the tag instead of
//!   a case id), the time taken just before the publish, so the script can measure
//!   publish → visible.
//!
//! Before it publishes the sightings, the test checks that the watchlist entry the operator
//! added in the browser reached the site's agent as a command signed with the hub's key.
//!
//! The hub is configured with a tile server (`[http] tile_url`), which this test runs on
//! loopback, and checks that the map asked it for the tiles under the demo site.
//!
//! Screenshots of each step land in `$SHOT_DIR` (default `target/e2e-shots/`). Chromium and
//! the npm packages come from `cargo xtask setup`; without them this test fails saying so.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use protocol::alert::Snapshot;
use protocol::{Detection, Severity, UtcMillis};

/// Every level gets 2 s to acknowledge a critical case, so the unacknowledged one climbs
/// from the micro-grid to the grid while the browser watches. The first (major) case keeps
/// the default deadlines, so it is still the micro-grid's when the member acknowledges it.
const FAST: &str = r#"
[escalation.critical]
ack = { micro_grid = "2s", grid = "2s", village = "2s", township = "2s", county = "2s" }
resolve = { micro_grid = "1h" }
"#;

/// The operator (county governance centre) and the grid member of the demo site's
/// micro-grid, from the test users (`common::USERS`).
const OPERATOR: &str = "op-county";
const MEMBER: &str = "m-m01";

/// The other site of the test hub and its cell (a grid of another township).
const OTHER_SITE: &str = "wd-other-002";
const OTHER_CELL: &str = "532329102001-G01";

/// The camera the operator silences in the browser.
const SILENCED_CAMERA: &str = "cam-9";

/// How far behind the hub's clock a replayed clip's alert time is (the demo's "346 小时前").
const REPLAY_AGE_MS: i64 = 346 * 3_600_000;

/// The stolen e-bike's tag.
const TAG: &str = "E28011606000020849ABCDEF";

/// The whole scenario's time limit (the script itself waits at most seconds per step).
const SCENARIO_LIMIT: Duration = Duration::from_secs(240);

fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

/// Panics, naming the set-up step, when something the browser test needs is missing.
fn require_tools(e2e: &Path) {
    let browser = chromium();
    assert!(
        browser.is_file(),
        "Chromium not found at {}: the dashboard's browser tests need Debian's chromium \
         package; run `cargo xtask setup` (it installs it), or set CHROMIUM to a Chromium binary",
        browser.display()
    );
    assert!(
        e2e.join("node_modules/playwright-core/package.json")
            .is_file(),
        "{} is missing: run `cargo xtask setup` (it runs `npm ci` in hub/e2e)",
        e2e.join("node_modules/playwright-core").display()
    );
    assert!(
        Command::new("node")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success()),
        "node not found on PATH: the browser tests run hub/e2e/dashboard.mjs with Node.js"
    );
}

/// A real camera frame (the shared samples, as the edge agent's tests use) and its size.
fn frame_jpeg() -> (Vec<u8>, u32, u32) {
    let jpeg = sample_jpeg();
    let (w, h) = jpeg_size(&jpeg).expect("sample frame is a baseline/progressive JPEG");
    (jpeg, w, h)
}

/// Width and height from a JPEG's SOF marker.
fn jpeg_size(b: &[u8]) -> Option<(u32, u32)> {
    let mut i = 2;
    while i + 9 < b.len() {
        if b[i] != 0xFF {
            return None;
        }
        let marker = b[i + 1];
        let len = usize::from(u16::from_be_bytes([b[i + 2], b[i + 3]]));
        if matches!(marker, 0xC0..=0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF) {
            let h = u16::from_be_bytes([b[i + 5], b[i + 6]]);
            let w = u16::from_be_bytes([b[i + 7], b[i + 8]]);
            return Some((u32::from(w), u32::from(h)));
        }
        i += 2 + len;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_live_cases_and_follows_ack_and_escalation_in_chromium() {
    let e2e = repo().join("hub/e2e");
    require_tools(&e2e);
    let shots = std::env::var_os("SHOT_DIR").map_or_else(
        || {
            std::env::var_os("CARGO_TARGET_DIR")
                .map_or_else(|| repo().join("target"), |d| repo().join(d))
                .join("e2e-shots")
        },
        PathBuf::from,
    );

    let (tile_addr, tile_requests) = tile_server().await;
    let dir = hub_dir(
        EMBEDDED,
        &format!("tile_url = \"http://{tile_addr}/{{z}}/{{x}}/{{y}}.svg\"\n{FAST}"),
    );
    let hub = start_hub(&dir.config_path).await;
    let http = hub.http_addr.expect("the test config serves HTTP");
    let port = hub.mqtt[0].port();
    let mut agent = client(port, "agent", SITE, &token(SITE)).await;
    agent.subscribe(&format!("se/v1/site/{SITE}/cmd")).await;
    let other = client(port, "agent2", OTHER_SITE, &token(OTHER_SITE)).await;
    let (jpeg, width, height) = frame_jpeg();
    let photo = shots.join("e2e-photo.jpg");
    std::fs::create_dir_all(&shots).unwrap();
    std::fs::write(&photo, &jpeg).unwrap();

    let mut child = Command::new("node")
        .arg(e2e.join("dashboard.mjs"))
        .current_dir(&e2e)
        .env("HUB_URL", format!("http://{http}"))
        .env("SHOT_DIR", &shots)
        .env("CHROMIUM", chromium())
        .env("OP_USER", OPERATOR)
        .env("OP_PASS", password(OPERATOR))
        .env("MEMBER_USER", MEMBER)
        .env("MEMBER_PASS", password(MEMBER))
        .env("PHOTO", &photo)
        // The phone stands next to the demo site, in M01.
        .env("GPS", format!("{DEMO_LON},{DEMO_LAT}"))
        .env("SITE", SITE)
        .env("OTHER_SITE", OTHER_SITE)
        .env("M01", M01)
        .env("M01_NAME", "近城一网格第1微网格")
        .env("OTHER_CELL", OTHER_CELL)
        .env("TAG", TAG)
        .env("SILENCED_CAMERA", SILENCED_CAMERA)
        // The traffic police's duty officer (a department of the example roster).
        .env("DEPT", "D-JJ")
        .env("DEPT_USER", "m-jj")
        .env("DEPT_PASS", password("m-jj"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start node");
    let mut stdin = child.stdin.take().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let stderr_text = Arc::new(Mutex::new(String::new()));
    let mut stderr = child.stderr.take().unwrap();
    let sink = stderr_text.clone();
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        sink.lock().unwrap().push_str(&s);
    });

    let mut output = Vec::new();
    let mut latency = None;
    let deadline = tokio::time::Instant::now() + SCENARIO_LIMIT;
    let mut n = 0;
    loop {
        let line = match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(line)) => line,
            Ok(None) => break,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "the browser scenario took longer than {SCENARIO_LIMIT:?}; its output:\n{}\n{}",
                    output.join("\n"),
                    stderr_text.lock().unwrap()
                );
            }
        };
        println!("{line}");
        if let Some(tag) = line.strip_prefix("STEP publish sightings ") {
            let tag = tag.trim();
            watch_command_reached_the_site(&mut agent, tag).await;
            let at = UtcMillis::now().0;
            publish_sightings(&other, OTHER_SITE, tag, at - 20 * 60_000).await;
            publish_sightings(&agent, SITE, tag, at - 5 * 60_000).await;
            assert!(
                eventually(Duration::from_secs(10), || hub.store.sightings().len() >= 2).await,
                "the hub stored {} sighting(s), not 2",
                hub.store.sightings().len()
            );
            writeln!(stdin, "published {tag} {at}").unwrap();
            stdin.flush().unwrap();
        } else if let Some(what) = line.strip_prefix("STEP publish ") {
            n += 1;
            let what = what.trim();
            let mut a = match what {
                "snapshot" | "replayed" => {
                    alert(SITE, n, Severity::Major, Some((DEMO_LON, DEMO_LAT)))
                }
                "escalate" => alert(SITE, n, Severity::Critical, Some((DEMO_LON, DEMO_LAT))),
                // An info-level line crossing: recorded only (a case in state `new`).
                "info" => {
                    let mut a = alert(SITE, n, Severity::Info, Some((DEMO_LON, DEMO_LAT)));
                    a.kind = protocol::AlertKind::Line;
                    a.rule = "line-crossing".into();
                    a
                }
                // From the camera the operator silenced in the browser.
                "silenced" => {
                    let mut a = alert(SITE, n, Severity::Major, Some((DEMO_LON, DEMO_LAT)));
                    a.source = protocol::AlertSource::Camera(SILENCED_CAMERA.into());
                    a
                }
                other => panic!("unknown step `publish {other}`"),
            };
            if what == "snapshot" {
                a.detections = vec![Detection {
                    label: "person".into(),
                    score: 0.91,
                    box_xyxy: [
                        width as f32 * 0.30,
                        height as f32 * 0.20,
                        width as f32 * 0.60,
                        height as f32 * 0.90,
                    ],
                }];
                a.snapshot = Some(Snapshot {
                    camera: "cam-1".into(),
                    time: a.time,
                    width,
                    height,
                    jpeg: jpeg.clone(),
                });
            }
            let at = UtcMillis::now().0;
            // A replayed clip's alert carries the video's time, long before the hub's now
            // (as in the demo): the pages must still show the case's own time, the hub's.
            let time = if what == "replayed" {
                at - REPLAY_AGE_MS
            } else {
                at
            };
            a.time = UtcMillis(time);
            a.started_at = UtcMillis(time);
            agent.publish_alert(&a).await;
            match what {
                "silenced" => muted_by_the_browser_silence(&hub, &a.id).await,
                "info" => recorded_only(&hub, &a.id).await,
                _ => {}
            }
            writeln!(stdin, "published C-{} {at}", a.id).unwrap();
            stdin.flush().unwrap();
        } else if let Some(ms) = line.strip_prefix("METRIC publish_to_visible_ms ") {
            latency = ms.trim().parse::<i64>().ok();
        }
        output.push(line);
    }
    drop(stdin);
    let status = child.wait().unwrap();
    let stderr = stderr_text.lock().unwrap().clone();
    assert!(
        status.success(),
        "hub/e2e/dashboard.mjs failed ({status}); screenshots in {}; its output:\n{}\n{stderr}",
        shots.display(),
        output.join("\n"),
    );
    let latency = latency.expect("the script reports publish→visible");
    println!(
        "publish→visible: {latency} ms; screenshots in {}",
        shots.display()
    );
    assert!(latency <= 1000, "publish→visible {latency} ms");

    // The map drew tiles from the configured server, at a street-level zoom, including the
    // one under the demo site (wrong tile arithmetic would ask for somewhere else).
    let asked = tile_requests.lock().unwrap().clone();
    assert!(
        !asked.is_empty(),
        "the map asked the tile server for nothing"
    );
    let zooms: std::collections::BTreeSet<u32> = asked.iter().map(|t| t.0).collect();
    assert!(
        zooms.iter().all(|z| (10..=19).contains(z)),
        "tile zooms {zooms:?} are not a town's"
    );
    assert!(
        zooms
            .iter()
            .any(|&z| asked.contains(&tile_of(DEMO_LON, DEMO_LAT, z))),
        "no tile under the demo site ({DEMO_LON}, {DEMO_LAT}) among {asked:?}"
    );
    hub.stop().await;
}

/// The alert from the camera the operator silenced in the browser was stored, not filed
/// into a case.
async fn muted_by_the_browser_silence(hub: &hub::service::RunningHub, alert: &str) {
    assert!(
        eventually(Duration::from_secs(5), || hub
            .store
            .cases()
            .filed(alert)
            .unwrap()
            .is_some())
        .await,
        "the silenced camera's alert was not filed within 5 s"
    );
    let filed = hub.store.cases().filed(alert).unwrap().unwrap();
    assert!(
        matches!(&filed, hub::store::Filed::Muted(why) if why.starts_with("silenced by S-")),
        "the silenced camera's alert: {filed:?}"
    );
    assert!(hub.store.alerts().contains(alert).unwrap(), "still stored");
}

/// The info-level alert opened a case that is recorded only (state `new`, nobody notified).
async fn recorded_only(hub: &hub::service::RunningHub, alert: &str) {
    let id = hub::case::CaseId::for_alert(alert);
    assert!(
        eventually(Duration::from_secs(5), || hub.book.get(&id).is_some()).await,
        "the info alert opened no case within 5 s"
    );
    let case = hub.dispatch.case(&id).await.unwrap().unwrap();
    assert_eq!(case.state, hub::case::CaseState::New, "info: recorded only");
}

/// The watchlist entry the operator added in the browser reached the site's agent as a
/// command signed with the hub's key, with what was typed (Chinese included).
async fn watch_command_reached_the_site(agent: &mut Client, tag: &str) {
    use protocol::command::CommandBody;
    let (topic, cmd) = agent
        .next_command(Duration::from_secs(5))
        .await
        .expect("the site got no command within 5 s of the watchlist entry");
    assert_eq!(topic, format!("se/v1/site/{SITE}/cmd"));
    assert_eq!(cmd.site, SITE);
    assert_eq!(
        cmd.body,
        CommandBody::WatchAdd {
            tag: tag.to_owned(),
            case_ref: "武公(刑)立字[2026]88号".to_owned(),
            note: "被盗电动车".to_owned(),
        }
    );
}

/// The XYZ (Web Mercator) tile holding a point at zoom `z`.
fn tile_of(lon: f64, lat: f64, z: u32) -> (u32, u32, u32) {
    let n = f64::from(1u32 << z);
    let x = ((lon + 180.0) / 360.0 * n).floor() as u32;
    let a = lat.to_radians();
    let y =
        ((1.0 - (a.tan() + 1.0 / a.cos()).ln() / std::f64::consts::PI) / 2.0 * n).floor() as u32;
    (z, x, y)
}

/// A tile server on loopback, as a centre's LAN one would be: each tile is a small SVG (a
/// pale square with its border and name, so the screenshots show the tiles line up). Returns
/// its address and the (z, x, y) asked for.
async fn tile_server() -> (std::net::SocketAddr, Arc<Mutex<Vec<(u32, u32, u32)>>>) {
    use axum::extract::Path as UrlPath;
    let asked = Arc::new(Mutex::new(Vec::new()));
    let log = asked.clone();
    let app = axum::Router::new().route(
        "/{z}/{x}/{file}",
        axum::routing::get(move |UrlPath((z, x, file)): UrlPath<(u32, u32, String)>| {
            let log = log.clone();
            async move {
                let Some(y) = file.strip_suffix(".svg").and_then(|y| y.parse::<u32>().ok()) else {
                    return (axum::http::StatusCode::NOT_FOUND, [("content-type", "text/plain")], String::new());
                };
                log.lock().unwrap().push((z, x, y));
                let svg = format!(
                    "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"256\" height=\"256\">\
                     <rect width=\"256\" height=\"256\" fill=\"#eef2e6\" stroke=\"#b9c4a8\"/>\
                     <text x=\"8\" y=\"20\" font-size=\"12\" fill=\"#8a9579\">{z}/{x}/{y}</text></svg>"
                );
                (axum::http::StatusCode::OK, [("content-type", "image/svg+xml")], svg)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, asked)
}
