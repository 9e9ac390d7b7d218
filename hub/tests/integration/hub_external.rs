//! Against an external broker (a real mosquitto), two hubs share the alert stream through an
//! MQTT 5 shared subscription: every alert is stored and dispatched by exactly one of them, and
//! both take part.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;
use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use protocol::Severity;
use testkit::mosquitto;

fn external(port: u16, client_id: &str, dir: &std::path::Path) -> String {
    std::fs::write(dir.join("broker.pass"), "unused-by-anonymous-mosquitto").unwrap();
    format!(
        "mode = \"external\"\n[broker.external]\nhost = \"127.0.0.1\"\nport = {port}\nusername = \"{client_id}\"\npassword_file = \"{}\"\nclient_id = \"{client_id}\"\ngroup = \"hubs\"",
        dir.join("broker.pass").display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hubs_split_the_alerts_of_a_shared_subscription_each_stored_once() {
    let broker = mosquitto::Mosquitto::start().await;
    let port = broker.port();
    let tmp = tempfile::tempdir().unwrap();
    let a_dir = hub_dir(&external(port, "hub-a", tmp.path()), "");
    let b_dir = hub_dir(&external(port, "hub-b", tmp.path()), "");
    let hub_a = start_hub(&a_dir.config_path).await;
    let hub_b = start_hub(&b_dir.config_path).await;
    // Both links subscribe on connect.
    tokio::time::sleep(Duration::from_millis(800)).await;

    let mut watcher = client(port, "watcher", "svc", "x").await;
    watcher.subscribe("se/v1/person/+/notify").await;
    let agent = client(port, "agent", SITE, "x").await;
    const N: u64 = 200;
    let alerts: Vec<_> = (0..N)
        .map(|n| alert(SITE, 1000 + n, Severity::Major, Some((DEMO_LON, DEMO_LAT))))
        .collect();
    for a in &alerts {
        agent.publish_alert(a).await;
    }
    agent.wait_acks(N, Duration::from_secs(10)).await;

    // Every alert's case is announced once (one round per case, maybe several people).
    let mut cases = BTreeSet::new();
    while (cases.len() as u64) < N {
        let (_, n) = watcher
            .next_notification(Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("only {} of {N} cases notified", cases.len()));
        assert_eq!(n.cell.code, M01, "filed in the deepest cell: {n:?}");
        cases.insert(n.case);
    }

    let (in_a, in_b) = (
        hub_a.store.alerts().count() as u64,
        hub_b.store.alerts().count() as u64,
    );
    assert_eq!(
        in_a + in_b,
        N,
        "each alert stored by exactly one hub (a={in_a}, b={in_b})"
    );
    assert!(
        in_a > 0 && in_b > 0,
        "both hubs took a share (a={in_a}, b={in_b})"
    );
    for a in &alerts {
        let (x, y) = (
            hub_a.dispatch.case_of_alert(&a.id).await.unwrap(),
            hub_b.dispatch.case_of_alert(&a.id).await.unwrap(),
        );
        assert!(
            x.is_some() != y.is_some(),
            "alert {} filed by exactly one hub",
            a.id
        );
    }
    hub_a.stop().await;
    hub_b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_queued_while_the_hub_is_down_arrive_after_its_restart() {
    // The broker keeps the hub's persistent session, and what it queues for it, while it runs.
    let broker = mosquitto::Mosquitto::start_with_config("persistence false\n").await;
    let port = broker.port();
    let tmp = tempfile::tempdir().unwrap();
    let dir = hub_dir(&external(port, "hub-solo", tmp.path()), "");
    let hub = start_hub(&dir.config_path).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    hub.stop().await;

    // While the hub is down the agent's alerts wait in the hub's persistent session.
    let agent = client(port, "agent", SITE, "x").await;
    let alerts: Vec<_> = (0..50)
        .map(|n| alert(SITE, 5000 + n, Severity::Major, None))
        .collect();
    for a in &alerts {
        agent.publish_alert(a).await;
    }
    agent.wait_acks(50, Duration::from_secs(10)).await;

    let hub = start_hub(&dir.config_path).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while hub.store.alerts().count() < 50 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of 50 queued alerts arrived after the restart",
            hub.store.alerts().count()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for a in &alerts {
        assert!(hub.store.alerts().contains(&a.id).unwrap());
    }
    hub.stop().await;
}
