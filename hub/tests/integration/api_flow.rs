//! The dashboard API end to end with a real hub: an alert published over MQTT becomes a case
//! the operator lists, reads (with its snapshot) and follows live; the cell's grid member
//! acknowledges it; the live feed carries each change and replays what a reconnecting client
//! missed, and ends when the hub stops; a grid member's patrol report becomes a case of its own; `hub user add` writes a
//! user who can log in.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use hub::case::CaseId;
use std::time::Duration;

use common::*;
use protocol::{Severity, UtcMillis};
use serde_json::{Value, json};

fn with_snapshot(mut a: protocol::Alert) -> protocol::Alert {
    a.snapshot = Some(protocol::alert::Snapshot {
        camera: "cam-1".into(),
        time: a.time,
        width: 640,
        height: 480,
        jpeg: sample_jpeg(),
    });
    a.detections = vec![protocol::Detection {
        label: "person".into(),
        score: 0.91,
        box_xyxy: [100.0, 120.0, 180.0, 300.0],
    }];
    a
}

/// Reads SSE events (`id`, `event`, `data`) from a streaming response until `want` of them.
async fn read_events(resp: &mut reqwest::Response, want: usize, within: Duration) -> Vec<Value> {
    let end = tokio::time::Instant::now() + within;
    let mut buf = String::new();
    let mut out = Vec::new();
    while out.len() < want {
        let chunk = tokio::time::timeout_at(end, resp.chunk())
            .await
            .unwrap_or_else(|_| panic!("only {} of {want} events: {out:?}", out.len()))
            .unwrap()
            .expect("the feed stays open");
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(i) = buf.find("\n\n") {
            let block: String = buf.drain(..i + 2).collect();
            let mut ev = json!({});
            for line in block.lines() {
                if let Some((k, v)) = line.split_once(": ").or(line.split_once(':')) {
                    match k {
                        "id" => ev["id"] = json!(v),
                        "event" => ev["event"] = json!(v),
                        "data" => ev["data"] = serde_json::from_str(v).unwrap_or(json!(v)),
                        _ => {}
                    }
                }
            }
            if ev.get("event").is_some() {
                out.push(ev);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_to_case_to_acknowledgement_with_live_feed_and_catch_up() {
    let dir = hub_dir(EMBEDDED, "");
    let hub = start_hub(&dir.config_path).await;
    let op = Api::login(&hub, "op-county").await;
    let member = Api::login(&hub, "m-m01").await;
    let other = Api::login(&hub, "m-other").await;

    // The operator's live feed, open before the alert.
    let mut feed = op
        .request(reqwest::Method::GET, "/api/v1/events")
        .send()
        .await
        .unwrap();
    assert_eq!(feed.status(), 200);
    assert!(
        feed.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );

    let port = hub.mqtt[0].port();
    let site = client(port, "agent", SITE, &token(SITE)).await;
    let a = with_snapshot(alert(
        SITE,
        1,
        Severity::Critical,
        Some((DEMO_LON, DEMO_LAT)),
    ));
    site.publish_alert(&a).await;
    site.wait_acks(1, Duration::from_secs(5)).await;
    let case_id = CaseId::for_alert(&a.id);

    let opened = read_events(&mut feed, 1, Duration::from_secs(5)).await;
    assert_eq!(opened[0]["event"], "case");
    assert_eq!(opened[0]["data"]["kind"], "opened");
    assert_eq!(opened[0]["data"]["case"]["id"], case_id.as_str());
    assert_eq!(opened[0]["data"]["case"]["cell"]["code"], M01);
    assert_eq!(opened[0]["data"]["case"]["deadline_state"], "on_time");
    let opened_seq: u64 = opened[0]["id"].as_str().unwrap().parse().unwrap();

    // Listed for the county operator and the M01 member; not for another township's member.
    let list = op.get("/api/v1/cases?state=open").await;
    assert_eq!(list.status, 200);
    assert_eq!(list.json["total"], 1);
    assert_eq!(list.json["cases"][0]["id"], case_id.as_str());
    assert_eq!(list.json["cases"][0]["level"], "micro_grid");
    let mine = member.get("/api/v1/cases?state=open").await;
    assert_eq!(mine.json["total"], 1);
    let theirs = other.get("/api/v1/cases").await;
    assert_eq!(theirs.status, 200);
    assert_eq!(theirs.json["total"], 0, "{:?}", theirs.json);
    assert_eq!(
        other.get(&format!("/api/v1/cases/{case_id}")).await.status,
        403
    );

    // Detail with the snapshot and its boxes; the snapshot is the JPEG the agent sent.
    let d = op.get(&format!("/api/v1/cases/{case_id}")).await;
    assert_eq!(d.status, 200, "{:?}", d.json);
    assert_eq!(d.json["snapshot"]["alert"], a.id.as_str());
    assert_eq!(
        d.json["snapshot"]["detections"][0]["box_xyxy"],
        json!([100.0, 120.0, 180.0, 300.0])
    );
    assert!(
        d.json["audit"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["action"] == "dispatch")
    );
    let url = d.json["snapshot"]["url"].as_str().unwrap();
    let jpeg = op.get(url).await;
    assert_eq!(jpeg.status, 200);
    assert_eq!(jpeg.headers["content-type"], "image/jpeg");
    assert_eq!(jpeg.bytes, sample_jpeg());
    assert_eq!(other.get(url).await.status, 403);

    // The member acknowledges: the case is theirs, and the operator's feed says so.
    let ack = member
        .post(
            &format!("/api/v1/cases/{case_id}/actions"),
            &json!({"action": "acknowledge"}),
        )
        .await;
    assert_eq!(ack.status, 200, "{:?}", ack.json);
    assert_eq!(ack.json["case"]["state"], "acknowledged");
    assert_eq!(ack.json["case"]["handler"], "p-zhouguiying");
    let acked = read_events(&mut feed, 1, Duration::from_secs(5)).await;
    assert_eq!(acked[0]["data"]["kind"], "transition");
    assert_eq!(acked[0]["data"]["action"], "acknowledge");
    assert_eq!(acked[0]["data"]["case"]["state"], "acknowledged");
    // A second acknowledgement is refused by the lifecycle, with the reason.
    let again = member
        .post(
            &format!("/api/v1/cases/{case_id}/actions"),
            &json!({"action": "acknowledge"}),
        )
        .await;
    assert_eq!(again.status, 409, "{:?}", again.json);
    assert_eq!(again.json["error"]["code"], "conflict");
    // Resolving needs a note, and the error names the field.
    let no_note = member
        .post(
            &format!("/api/v1/cases/{case_id}/actions"),
            &json!({"action": "resolve"}),
        )
        .await;
    assert_eq!(no_note.status, 400);
    assert_eq!(no_note.json["error"]["field"], "note");
    drop(feed);

    // Resolve with a note and a photo while the operator is disconnected…
    use base64::Engine as _;
    let photo = base64::engine::general_purpose::STANDARD.encode(sample_jpeg());
    let resolved = member
        .post(
            &format!("/api/v1/cases/{case_id}/actions"),
            &json!({"action": "resolve", "note": "现场查看：无人，已劝离", "photo": photo}),
        )
        .await;
    assert_eq!(resolved.status, 200, "{:?}", resolved.json);
    let photo_url = resolved.json["photos"][0]["url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(op.get(&photo_url).await.bytes, sample_jpeg());
    assert_eq!(other.get(&photo_url).await.status, 403);

    // …and the reconnecting client catches up from its last event id.
    let mut back = op
        .request(reqwest::Method::GET, "/api/v1/events")
        .header("last-event-id", (opened_seq + 1).to_string())
        .send()
        .await
        .unwrap();
    let missed = read_events(&mut back, 1, Duration::from_secs(5)).await;
    assert_eq!(missed[0]["data"]["action"], "resolve");
    assert_eq!(missed[0]["data"]["case"]["state"], "resolved");
    // A client older than the log is told to reload.
    let mut stale = op
        .request(reqwest::Method::GET, "/api/v1/events?since=0")
        .send()
        .await
        .unwrap();
    let got = read_events(&mut stale, 1, Duration::from_secs(5)).await;
    assert_eq!(got[0]["event"], "case", "log still holds event 1: replayed");

    // The member may not close (an operator verifies); the operator does.
    let close = member
        .post(
            &format!("/api/v1/cases/{case_id}/actions"),
            &json!({"action": "close"}),
        )
        .await;
    assert_eq!(close.status, 403);
    let close = op
        .post(
            &format!("/api/v1/cases/{case_id}/actions"),
            &json!({"action": "close"}),
        )
        .await;
    assert_eq!(close.status, 200, "{:?}", close.json);
    assert_eq!(close.json["case"]["state"], "closed");
    assert_eq!(op.get("/api/v1/cases?state=open").await.json["total"], 0);

    // Statistics count it for G01's micro-grid's grid, acknowledged without climbing.
    let stats = op.get("/api/v1/stats?level=micro_grid").await;
    assert_eq!(stats.status, 200, "{:?}", stats.json);
    let row = &stats.json["cells"][0];
    assert_eq!(row["cell"]["code"], M01);
    assert_eq!(
        (row["cases"].as_u64(), row["resolved"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(row["on_time_ratio"], 1.0);
    hub.stop().await;
}

/// A browser keeps its live feed open; stopping the hub must still end at once and let go of
/// the data directory (sled locks it while any handle lives), so a restart can open it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_with_a_live_feed_open_ends_it_and_releases_the_store() {
    let dir = hub_dir(EMBEDDED, "");
    let hub = start_hub(&dir.config_path).await;
    let op = Api::login(&hub, "op-county").await;
    let mut feed = op
        .request(reqwest::Method::GET, "/api/v1/events")
        .send()
        .await
        .unwrap();
    assert_eq!(feed.status(), 200);

    let started = std::time::Instant::now();
    hub.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "stop took {:?} with a feed open",
        started.elapsed()
    );
    let ended = tokio::time::timeout(Duration::from_secs(2), async {
        while let Ok(Some(_)) = feed.chunk().await {}
    })
    .await;
    assert!(
        ended.is_ok(),
        "the live feed is still open after the hub stopped"
    );

    let hub = start_hub(&dir.config_path).await;
    let op = Api::login(&hub, "op-county").await;
    assert_eq!(op.get("/api/v1/cases").await.status, 200);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patrol_report_becomes_a_case_of_the_members_cell() {
    let dir = hub_dir(EMBEDDED, "");
    let hub = start_hub(&dir.config_path).await;
    let member = Api::bearer(&hub, "m-m01").await;
    use base64::Engine as _;
    let photo = base64::engine::general_purpose::STANDARD.encode(sample_jpeg());
    let r = member
        .post(
            "/api/v1/reports",
            &json!({"category": "fire_hazard", "note": "楼道堆放杂物", "location": {"lon": DEMO_LON, "lat": DEMO_LAT}, "photo": photo}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.json);
    let case = &r.json["case"];
    assert_eq!(case["kind"], "patrol");
    assert_eq!(case["cell"]["code"], M01);
    assert_eq!(case["source"]["person"], "p-zhouguiying");
    let id = case["id"].as_str().unwrap();
    let d = member.get(&format!("/api/v1/cases/{id}")).await;
    assert_eq!(d.status, 200);
    let url = d.json["photos"][0]["url"].as_str().unwrap();
    assert_eq!(member.get(url).await.bytes, sample_jpeg());
    // Outside the member's cells: refused.
    let far = member
        .post(
            "/api/v1/reports",
            &json!({"category": "other", "location": {"lon": 102.30, "lat": 25.45}}),
        )
        .await;
    assert_eq!(far.status, 403, "{:?}", far.json);
    // A bad category is named.
    let bad = member
        .post(
            "/api/v1/reports",
            &json!({"category": "ufo", "location": {"lon": DEMO_LON, "lat": DEMO_LAT}}),
        )
        .await;
    assert_eq!(bad.json["error"]["field"], "category");

    // The dashboard's files: served with an ETag, revalidated to a bodiless 304.
    let anon = Api::anonymous(&hub);
    let page = anon.get("/").await;
    assert_eq!(page.status, 200);
    assert!(String::from_utf8_lossy(&page.bytes).contains("/assets/"));
    assert!(
        page.headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("script-src 'self'")
    );
    let js = anon.get("/assets/app.js").await;
    assert_eq!(js.status, 200);
    assert!(
        js.headers["content-type"]
            .to_str()
            .unwrap()
            .contains("javascript")
    );
    let etag = js.headers["etag"].to_str().unwrap().to_owned();
    let again = Api::send(
        anon.request(reqwest::Method::GET, "/assets/app.js")
            .header("if-none-match", &etag),
    )
    .await;
    assert_eq!(again.status, 304);
    assert!(again.bytes.is_empty());
    assert_eq!(anon.get("/assets/../Cargo.toml").await.status, 404);
    let _ = UtcMillis(0);
    hub.stop().await;
}

#[test]
fn user_add_writes_a_user_who_can_log_in() {
    let dir = hub_dir(EMBEDDED, "");
    let bin = env!("CARGO_BIN_EXE_hub");
    let out = std::process::Command::new(bin)
        .args(["user", "add", "-c"])
        .arg(&dir.config_path)
        .args([
            "--login",
            "op-new",
            "--role",
            "operator",
            "--cell",
            "532329101",
            "--name",
            "新值班员",
            "--password-env",
            "NEW_PW",
        ])
        .env("NEW_PW", "a-long-password")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(dir.dir.path().join("users.toml")).unwrap();
    assert!(text.contains("op-new") && !text.contains("a-long-password"));
    let users = hub::users::Users::parse(&text, &|_| true, &|_| true).unwrap();
    assert!(users.check("op-new", "a-long-password").is_some());
    assert!(
        users.check("admin", &password("admin")).is_some(),
        "others kept"
    );
    // Every problem at once: bad role, unknown cell.
    let out = std::process::Command::new(bin)
        .args(["user", "add", "-c"])
        .arg(&dir.config_path)
        .args([
            "--login",
            "x",
            "--role",
            "boss",
            "--cell",
            "nowhere",
            "--password-env",
            "NEW_PW",
        ])
        .env("NEW_PW", "a-long-password")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--role") && err.contains("--cell"), "{err}");
}
