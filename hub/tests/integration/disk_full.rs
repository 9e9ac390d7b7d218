//! A full disk degrades the hub, never kills it. The data directory is a small tmpfs the test
//! mounts (the tests run as root) and fills with a ballast file: below `[storage] min_free_mb`
//! the hub stops storing new alerts — MQTT 5 agents are answered 0x97 quota exceeded, a 3.1.1
//! agent's connection is closed, nothing is written — while the dashboard's API keeps
//! answering and nothing acknowledged before is lost; once the ballast is gone the hub takes
//! the alerts again by itself, and the ones it deferred arrive when the agents resend them.
//! A hub whose disk is full to the last byte still starts: it releases its reserve file so
//! the store can open. Each low episode is one hub-health case at the top cell, which admins
//! see and the hub resolves when space is back; no site may raise that kind.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;
use std::time::Duration;

use common::*;
use protocol::{AlertKind, AlertSource, Severity};
use testkit::tmpfs::{Tmpfs, free_bytes};

const WAIT: Duration = Duration::from_secs(10);
/// The tmpfs and the threshold: a few MiB of sled files fit well above the line.
const TMPFS_BYTES: u64 = 64 << 20;
const MIN_FREE_MB: u64 = 24;

fn alert_payload(n: u64) -> (String, Vec<u8>) {
    let a = alert(SITE, n, Severity::Major, None);
    (a.id.clone(), serde_json::to_vec(&a).unwrap())
}

/// A hub directory whose data directory is a fresh tmpfs, with `[storage] min_free_mb` and
/// `more` storage keys; `None` when the test cannot mount (not root).
fn hub_on_tmpfs(more: &str) -> Option<(HubDir, std::path::PathBuf, Tmpfs)> {
    let dir = hub_dir(
        EMBEDDED,
        &format!("[storage]\nmin_free_mb = {MIN_FREE_MB}\n{more}"),
    );
    let state = dir.dir.path().join("state");
    let disk = Tmpfs::mount(&state, TMPFS_BYTES)?;
    Some((dir, state, disk))
}

/// The hub-health cases an admin sees.
async fn health_cases(api: &Api) -> Vec<serde_json::Value> {
    let r = api.get("/api/v1/cases?kind=hub_health").await;
    assert_eq!(r.status, 200, "{}", r.json);
    r.json["cases"].as_array().unwrap().clone()
}

/// Waits for the one hub-health case an admin sees to be in `state`; returns its detail.
async fn health_case_in(api: &Api, state: &str) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let cases = health_cases(api).await;
        assert!(cases.len() <= 1, "one case per episode: {cases:?}");
        if let Some(c) = cases.first()
            && c["state"] == state
        {
            let id = c["id"].as_str().unwrap();
            let r = api.get(&format!("/api/v1/cases/{id}")).await;
            assert_eq!(r.status, 200, "{}", r.json);
            return r.json;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no hub-health case {state}: {cases:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What an open disk case must show: the hub at the top cell, the numbers and the directory,
/// pushed to whoever is on duty there.
fn assert_disk_case(detail: &serde_json::Value, data_dir: &std::path::Path) {
    let case = &detail["case"];
    assert_eq!(case["site"], "hub", "{detail}");
    assert_eq!(case["source"], serde_json::json!({"hub": "disk"}));
    assert_eq!(case["severity"], "critical");
    assert_eq!(case["rule"], "disk_low");
    assert_eq!(
        case["cell"]["code"], "532329",
        "the grid's top cell: {detail}"
    );
    let text = detail["alerts"][0]["detail"].as_str().unwrap();
    assert!(text.contains("MiB free"), "{text}");
    assert!(text.contains(&data_dir.display().to_string()), "{text}");
    assert!(text.contains("threshold of 24.0 MiB"), "{text}");
    let pushed = detail["deliveries"].as_array().unwrap();
    assert!(
        pushed.iter().any(|d| d["target"].get("person").is_some()),
        "pushed to the people on duty at the top: {detail}"
    );
}

/// An MQTT 5 client logged in as the test site.
fn site_agent(port: u16, id: &str) -> Mqtt {
    Spec::new(Proto::V5, port, id)
        .login(SITE, &token(SITE))
        .start()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn below_min_free_alerts_are_deferred_the_api_serves_and_intake_resumes_by_itself() {
    let Some((dir, state, disk)) = hub_on_tmpfs("") else {
        return;
    };
    let hub = start_hub(&dir.config_path).await;
    let port = hub.mqtt[0].port();
    let topic = format!("se/v1/site/{SITE}/alert");
    let agent = site_agent(port, "agent");
    agent.connected(WAIT).await;
    let api = Api::login(&hub, "op-county").await;
    let admin = Api::login(&hub, "admin").await;

    // Room: stored and acknowledged.
    let (first, payload) = alert_payload(1);
    assert!(agent.publish(&topic, payload, false).await);
    agent.wait_acks(1, WAIT).await;
    assert_eq!(agent.puback_reasons(), [0]);
    assert!(hub.store.alerts().contains(&first).unwrap());
    // A site may not raise the hub's own health alert: refused as not authorized,
    // quarantined, no case.
    let mut fake = alert(SITE, 50, Severity::Critical, None);
    fake.kind = AlertKind::HubHealth;
    fake.source = AlertSource::Hub("disk".into());
    fake.track = None;
    assert!(agent.publish_alert(&fake).await);
    agent.wait_acks(2, WAIT).await;
    assert_eq!(agent.puback_reasons(), [0, 0x87]);
    assert!(!hub.store.alerts().contains(&fake.id).unwrap());
    assert_eq!(
        hub.metrics
            .quarantined_count(SITE, hub::ingest::RejectCode::NotAuthorized),
        1
    );
    assert!(health_cases(&admin).await.is_empty());

    // The disk fills past the threshold.
    let ballast = disk.fill_leaving("ballast", (MIN_FREE_MB - 8) << 20);
    assert!(
        eventually(WAIT, || !hub.metrics.render().contains("hub_disk_low 0")).await,
        "the hub did not notice its disk filling"
    );
    // The admins hear of it: one hub-health case at the top cell, pushed to the duty there.
    let low = health_case_in(&admin, "dispatched").await;
    assert_disk_case(&low, &state);
    let deferred: Vec<(String, Vec<u8>)> = (2..=21).map(alert_payload).collect();
    for (_, p) in &deferred {
        assert!(agent.publish(&topic, p.clone(), false).await);
    }
    agent.wait_acks(22, WAIT).await;
    assert_eq!(
        &agent.puback_reasons()[2..],
        [0x97; 20],
        "MQTT 5: quota exceeded, the agent keeps them"
    );
    for (id, _) in &deferred {
        assert!(!hub.store.alerts().contains(id).unwrap(), "{id} was stored");
    }
    assert!(
        hub.metrics
            .render()
            .contains("hub_alerts_deferred_total 20"),
        "{}",
        hub.metrics.render()
    );
    // A 3.1.1 agent cannot be told: its connection is closed, its alert not stored.
    let old = Spec::new(Proto::V311, port, "agent-311")
        .login(SITE, &token(SITE))
        .start();
    old.connected(WAIT).await;
    let (old_id, old_payload) = alert_payload(99);
    assert!(old.publish(&topic, old_payload.clone(), false).await);
    assert!(
        matches!(old.ended(WAIT).await, Some(ConnState::Closed(_))),
        "the 3.1.1 connection stays open: {:?}",
        old.state()
    );
    assert!(!hub.store.alerts().contains(&old_id).unwrap());
    // The hub stays up and serves what it has: the dashboard's lists, the stored alert.
    let cases = api.get("/api/v1/cases").await;
    assert_eq!(cases.status, 200, "{}", cases.json);
    assert!(hub.store.alerts().contains(&first).unwrap());
    // A patrol report through the API is refused for now, saying why.
    let report = api
        .post(
            "/api/v1/reports",
            &serde_json::json!({"kind": "patrol", "category": "other", "note": "x",
                                "location": {"lon": DEMO_LON, "lat": DEMO_LAT}}),
        )
        .await;
    assert_eq!(report.status, 503, "{}", report.json);
    assert!(
        report.json["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("disk")),
        "{}",
        report.json
    );

    // Space returns: the hub takes alerts again by itself; the agents' resends arrive.
    // Seconds of low disk (probed every second) are still one case.
    assert_eq!(health_cases(&admin).await.len(), 1);
    std::fs::remove_file(&ballast).unwrap();
    assert!(
        eventually(WAIT, || hub.metrics.render().contains("hub_disk_low 0")).await,
        "the hub did not notice the space coming back"
    );
    // The hub resolves the episode's case itself (someone closes it), opening no other.
    let back = health_case_in(&admin, "resolved").await;
    assert_eq!(back["case"]["id"], low["case"]["id"]);
    let last = back["audit"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["actor"]["id"], "hub", "{last}");
    assert_eq!(last["action"], "resolve", "{last}");
    assert!(
        last["note"]
            .as_str()
            .is_some_and(|n| n.contains("disk space is back")),
        "{last}"
    );
    for (_, p) in &deferred {
        assert!(agent.publish(&topic, p.clone(), false).await);
    }
    agent.wait_acks(42, WAIT).await;
    assert_eq!(&agent.puback_reasons()[22..], [0; 20]);
    let again = Spec::new(Proto::V311, port, "agent-311b")
        .login(SITE, &token(SITE))
        .start();
    again.connected(WAIT).await;
    assert!(again.publish(&topic, old_payload, false).await);
    again.wait_acks(1, WAIT).await;
    for id in deferred.iter().map(|(id, _)| id).chain([&first, &old_id]) {
        assert!(hub.store.alerts().contains(id).unwrap(), "{id} is missing");
    }
    // The 22 site alerts and the hub's own health alert.
    assert_eq!(hub.store.alerts().count(), 23);
    // The next episode is a new case, though the last one's waits to be closed.
    let _ballast = disk.fill_leaving("ballast", (MIN_FREE_MB - 8) << 20);
    let mut cases = Vec::new();
    for _ in 0..100 {
        cases = health_cases(&admin).await;
        if cases.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let states: Vec<&str> = cases.iter().map(|c| c["state"].as_str().unwrap()).collect();
    assert_eq!(states.len(), 2, "{cases:?}");
    assert!(
        states.contains(&"resolved") && states.contains(&"dispatched"),
        "{states:?}"
    );
    assert!(
        hub.metrics
            .render()
            .contains("hub_health_case_failures_total 0")
    );
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_starts_on_a_disk_full_to_the_last_byte_and_recovers_by_itself() {
    let Some((dir, state, disk)) = hub_on_tmpfs("reserve_mb = 8\n") else {
        return;
    };
    let reserve = state.join(hub::disk::RESERVE_FILE);
    let topic = format!("se/v1/site/{SITE}/alert");
    let (first, payload) = alert_payload(1);
    {
        let hub = start_hub(&dir.config_path).await;
        assert!(
            eventually(WAIT, || reserve.exists()).await,
            "the reserve is written while there is room"
        );
        let agent = site_agent(hub.mqtt[0].port(), "agent");
        agent.connected(WAIT).await;
        assert!(agent.publish(&topic, payload, false).await);
        agent.wait_acks(1, WAIT).await;
        hub.stop().await;
    }
    // Something else takes every byte while the hub is down.
    let full = disk.fill("ballast");
    assert!(free_bytes(&state) < 1 << 20);

    let hub = start_hub(&dir.config_path).await;
    assert!(
        !reserve.exists(),
        "the reserve was released so the store could open"
    );
    assert!(
        hub.store.alerts().contains(&first).unwrap(),
        "what was stored is kept"
    );
    let api = Api::login(&hub, "op-county").await;
    assert_eq!(api.get("/api/v1/cases").await.status, 200);
    // Even on a disk full to the last byte the health case is written (in the reserve's room).
    let admin = Api::login(&hub, "admin").await;
    let low = health_case_in(&admin, "dispatched").await;
    assert_disk_case(&low, &state);
    // A restart during the episode opens no second case. (The dispatcher answers requests
    // only once it has handled the disk state it started with.)
    hub.stop().await;
    let hub = start_hub(&dir.config_path).await;
    hub.dispatch.sites().await.unwrap();
    let admin = Api::login(&hub, "admin").await;
    let cases = health_cases(&admin).await;
    assert_eq!(cases.len(), 1, "{cases:?}");
    assert_eq!(cases[0]["id"], low["case"]["id"]);
    let agent = site_agent(hub.mqtt[0].port(), "agent");
    agent.connected(WAIT).await;
    let (second, payload) = alert_payload(2);
    assert!(agent.publish(&topic, payload.clone(), false).await);
    agent.wait_acks(1, WAIT).await;
    assert_eq!(agent.puback_reasons(), [0x97]);

    // Space returns: alerts are taken again and the reserve is put back.
    std::fs::remove_file(&full).unwrap();
    assert!(
        eventually(WAIT, || hub.metrics.render().contains("hub_disk_low 0")).await,
        "intake did not resume"
    );
    assert!(agent.publish(&topic, payload, false).await);
    agent.wait_acks(2, WAIT).await;
    assert_eq!(agent.puback_reasons(), [0x97, 0]);
    assert!(hub.store.alerts().contains(&second).unwrap());
    let back = health_case_in(&admin, "resolved").await;
    assert_eq!(back["case"]["id"], low["case"]["id"]);
    assert!(
        eventually(WAIT, || reserve.exists()).await,
        "the reserve is back"
    );
    hub.stop().await;
}

/// A snapshot file that cannot be written (here: `blobs/tmp` replaced by a plain file, a fault
/// a disk full faster than the guard looks, or out of inodes, gives the same way) defers the
/// alert (0x97, the agent keeps it) and stores nothing; the hub stays up and serves; alerts
/// without a snapshot are still stored; once the directory is back, the resend is stored
/// whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_that_cannot_be_written_defers_its_alert_and_the_hub_goes_on() {
    let dir = hub_dir(EMBEDDED, "");
    let hub = start_hub(&dir.config_path).await;
    let port = hub.mqtt[0].port();
    let topic = format!("se/v1/site/{SITE}/alert");
    let agent = site_agent(port, "agent");
    agent.connected(WAIT).await;
    let admin = Api::login(&hub, "admin").await;

    let tmp = hub.store.blobs().dir().join("tmp");
    std::fs::remove_dir_all(&tmp).unwrap();
    std::fs::write(&tmp, b"not a directory").unwrap();

    let mut snap = alert(SITE, 60, Severity::Major, None);
    let mut jpeg = sample_jpeg();
    jpeg.truncate(100_000);
    snap.snapshot = Some(protocol::alert::Snapshot {
        camera: "cam-1".into(),
        time: snap.time,
        width: 640,
        height: 480,
        jpeg: jpeg.clone(),
    });
    let payload = serde_json::to_vec(&snap).unwrap();
    assert!(agent.publish(&topic, payload.clone(), false).await);
    agent.wait_acks(1, WAIT).await;
    assert_eq!(agent.puback_reasons(), [0x97], "deferred, not refused");
    assert!(!hub.store.alerts().contains(&snap.id).unwrap());
    assert_eq!(agent.state(), ConnState::Connected);
    // The hub goes on: the API answers, an alert without a snapshot is stored.
    assert_eq!(admin.get("/api/v1/cases").await.status, 200);
    let (plain, plain_payload) = alert_payload(61);
    assert!(agent.publish(&topic, plain_payload, false).await);
    agent.wait_acks(2, WAIT).await;
    assert_eq!(agent.puback_reasons(), [0x97, 0]);
    assert!(hub.store.alerts().contains(&plain).unwrap());
    assert!(
        metric(&hub.metrics.render(), "hub_alerts_deferred_total").unwrap() >= 1.0,
        "counted"
    );

    // The directory is back: the agent's resend is stored, its snapshot whole.
    std::fs::remove_file(&tmp).unwrap();
    std::fs::create_dir(&tmp).unwrap();
    assert!(agent.publish(&topic, payload, false).await);
    agent.wait_acks(3, WAIT).await;
    assert_eq!(agent.puback_reasons(), [0x97, 0, 0]);
    let stored = hub.store.alerts().get(&snap.id).unwrap().unwrap();
    assert_eq!(
        hub.store.alerts().snapshot_jpeg(&stored).unwrap(),
        Some(jpeg)
    );
    hub.stop().await;
}
