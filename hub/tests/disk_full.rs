//! A full disk degrades the hub, never kills it. The data directory is a small tmpfs the test
//! mounts (the tests run as root) and fills with a ballast file: below `[storage] min_free_mb`
//! the hub stops storing new alerts — MQTT 5 agents are answered 0x97 quota exceeded, a 3.1.1
//! agent's connection is closed, nothing is written — while the dashboard's API keeps
//! answering and nothing acknowledged before is lost; once the ballast is gone the hub takes
//! the alerts again by itself, and the ones it deferred arrive when the agents resend them.
//! A hub whose disk is full to the last byte still starts: it releases its reserve file so
//! the store can open.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "../../edge-agent/tests/common/tmpfs.rs"]
mod tmpfs;

use std::time::Duration;

use common::*;
use protocol::Severity;
use tmpfs::{Tmpfs, free_bytes};

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

/// An MQTT 5 client logged in as the test site.
fn site_agent(port: u16, id: &str) -> Mqtt {
    Spec::new(Proto::V5, port, id)
        .login(SITE, &token(SITE))
        .start()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn below_min_free_alerts_are_deferred_the_api_serves_and_intake_resumes_by_itself() {
    let Some((dir, _, disk)) = hub_on_tmpfs("") else {
        return;
    };
    let hub = start_hub(&dir.config_path).await;
    let port = hub.mqtt[0].port();
    let topic = format!("se/v1/site/{SITE}/alert");
    let agent = site_agent(port, "agent");
    agent.connected(WAIT).await;
    let api = Api::login(&hub, "op-county").await;

    // Room: stored and acknowledged.
    let (first, payload) = alert_payload(1);
    assert!(agent.publish(&topic, payload, false).await);
    agent.wait_acks(1, WAIT).await;
    assert_eq!(agent.puback_reasons(), [0]);
    assert!(hub.store.alerts().contains(&first).unwrap());

    // The disk fills past the threshold.
    let ballast = disk.fill_leaving("ballast", (MIN_FREE_MB - 8) << 20);
    assert!(
        eventually(WAIT, || !hub.metrics.render().contains("hub_disk_low 0")).await,
        "the hub did not notice its disk filling"
    );
    let deferred: Vec<(String, Vec<u8>)> = (2..=21).map(alert_payload).collect();
    for (_, p) in &deferred {
        assert!(agent.publish(&topic, p.clone(), false).await);
    }
    agent.wait_acks(21, WAIT).await;
    assert_eq!(
        &agent.puback_reasons()[1..],
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
    std::fs::remove_file(&ballast).unwrap();
    assert!(
        eventually(WAIT, || hub.metrics.render().contains("hub_disk_low 0")).await,
        "the hub did not notice the space coming back"
    );
    for (_, p) in &deferred {
        assert!(agent.publish(&topic, p.clone(), false).await);
    }
    agent.wait_acks(41, WAIT).await;
    assert_eq!(&agent.puback_reasons()[21..], [0; 20]);
    let again = Spec::new(Proto::V311, port, "agent-311b")
        .login(SITE, &token(SITE))
        .start();
    again.connected(WAIT).await;
    assert!(again.publish(&topic, old_payload, false).await);
    again.wait_acks(1, WAIT).await;
    for id in deferred.iter().map(|(id, _)| id).chain([&first, &old_id]) {
        assert!(hub.store.alerts().contains(id).unwrap(), "{id} is missing");
    }
    assert_eq!(hub.store.alerts().count(), 22);
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
    assert!(
        eventually(WAIT, || reserve.exists()).await,
        "the reserve is back"
    );
    hub.stop().await;
}
