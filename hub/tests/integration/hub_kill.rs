//! Kill the hub with SIGKILL while 5,000 alerts stream in from an agent, each with its own
//! snapshot (so the kill falls while blob files are being written and synced), restart it:
//! every alert is stored exactly once and whole (its record and its snapshot's bytes as the
//! agent made them), no record names a missing blob, no file is left that no record names,
//! and every escalation deadline that passed while it was down fires.
//!
//! The hub runs as its own process (the `hub` binary); the agent is the real edge-agent outbox
//! and uplink (`edge_tools::emit`), in this process, connecting through the hub's
//! gateway with its site credential and resending whatever it did not see acknowledged.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::time::Duration;

use common::*;
use hub::case::{AuditAction, Case};
use hub::store::Store;
use tokio::process::Command;

const ALERTS: u64 = 5_000;
const SNAPSHOT_BYTES: usize = 2_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_loses_nothing_files_once_and_fires_owed_deadlines() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // Chaos alerts are major and carry no location: they file into the site's micro-grid.
    let dir = hub_dir(
        &format!("mode = \"embedded\"\nlisten = [\"127.0.0.1:{port}\"]"),
        r#"
[escalation.major]
ack = { micro_grid = "2s", grid = "2s", village = "2s", township = "2s", county = "60s" }
resolve = { micro_grid = "1h" }
"#,
    );
    let log = dir.dir.path().join("hub.log");
    let mut hub = spawn_hub(&dir.config_path, &log);
    wait_port(port).await;

    let agent_dir = dir.dir.path().join("agent");
    let agent_toml = format!(
        r#"
site = "{SITE}"
data_dir = "{}"
# `emit` starts no reader; a box needs one (or a camera) to be a valid config.
[[tag_readers]]
kind = "tcp"
listen = "127.0.0.1:0"
[uplink]
host = "127.0.0.1"
port = {port}
username = "{SITE}"
password = "{}"
reconnect_min_ms = 100
reconnect_max_ms = 500
"#,
        agent_dir.display(),
        token(SITE)
    );
    let agent_config =
        edge_agent::agent::AgentConfig::from_toml_str(&agent_toml, dir.dir.path()).unwrap();
    let base_ms = protocol::UtcMillis::now().0;
    let emit = tokio::spawn(async move {
        edge_tools::emit::run(&agent_config, ALERTS, SNAPSHOT_BYTES, base_ms, 2_000.0).await
    });

    // Mid-stream (about a third of the alerts sent), the hub dies without a word.
    tokio::time::sleep(Duration::from_millis(900)).await;
    hub.start_kill().unwrap();
    hub.wait().await.unwrap();
    let killed_at = protocol::UtcMillis::now().0;
    // Down for longer than two ack deadlines.
    tokio::time::sleep(Duration::from_millis(4_500)).await;
    let restarted_at = protocol::UtcMillis::now().0;
    let mut hub = spawn_hub(&dir.config_path, &log);
    wait_port(port).await;

    tokio::time::timeout(Duration::from_secs(90), emit)
        .await
        .expect("the agent delivered everything within 90 s")
        .unwrap()
        .unwrap();
    // Let the dispatcher file the last batch and the timers catch up, then stop it cleanly.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pid = hub.id().unwrap() as i32;
    // SAFETY-free: `kill` from the shell; std has no SIGTERM.
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), hub.wait())
        .await
        .expect("hub stops on SIGTERM")
        .unwrap();

    let store = Store::open(&dir.dir.path().join("state")).unwrap();
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        store.alerts().count() as u64,
        ALERTS,
        "every alert stored exactly once\n{log_text}"
    );
    assert!(store.pending_ids().unwrap().is_empty(), "every alert filed");
    // Whole: each alert as the agent made it, its snapshot's bytes from its blob file.
    for i in 0..ALERTS {
        let sent = testkit::emitted::make_alert(SITE, base_ms, i, SNAPSHOT_BYTES);
        let stored = store.alerts().get(&sent.id).unwrap().expect("stored");
        let jpeg = store
            .alerts()
            .snapshot_jpeg(&stored)
            .unwrap_or_else(|e| panic!("alert {i}: {e}"))
            .unwrap_or_else(|| panic!("alert {i} names a blob that is not there"));
        assert_eq!(
            Some(jpeg),
            sent.snapshot.as_ref().map(|s| s.jpeg.clone()),
            "alert {i}"
        );
        assert_eq!(
            protocol::Alert {
                snapshot: sent.snapshot.clone(),
                ..stored.alert
            },
            sent,
            "alert {i}"
        );
    }
    // Files written by batches the kill cut short are orphans: collected (at the restart, or
    // now), after which every file left is one a record names, one per alert.
    store.blobs().collect_all_orphans().unwrap();
    let files: usize = std::fs::read_dir(store.blobs().dir())
        .unwrap()
        .map(|d| d.unwrap().path())
        .filter(|p| p.file_name().unwrap() != "tmp")
        .map(|p| std::fs::read_dir(p).unwrap().count())
        .sum();
    assert_eq!(files as u64, ALERTS, "one blob file per alert, no orphan");
    assert_eq!(
        std::fs::read_dir(store.blobs().dir().join("tmp"))
            .unwrap()
            .count(),
        0,
        "no unfinished write left behind"
    );
    assert_eq!(
        store.blobs().bytes(hub::store::BlobKind::Snapshot),
        ALERTS * SNAPSHOT_BYTES as u64
    );
    // The chaos alerts share site, rule and camera: one case, which counts each alert once.
    let cases: Vec<Case> = store.cases().all().map(|c| c.unwrap().case).collect();
    assert_eq!(cases.len(), 1, "{cases:?}");
    let case = &cases[0];
    assert_eq!(
        case.count, ALERTS,
        "each alert filed into the case exactly once"
    );

    // The ack deadlines: every one due while the hub was down fired after the restart (late),
    // and the case climbed past each.
    let climbs: Vec<_> = case
        .audit
        .iter()
        .filter(|r| r.action == AuditAction::Escalate)
        .collect();
    let owed: Vec<_> = climbs
        .iter()
        .filter(|r| r.at.0 > killed_at && r.at.0 < restarted_at)
        .collect();
    assert!(
        !owed.is_empty(),
        "a deadline fell while the hub was down (killed {killed_at}, restarted {restarted_at}): {climbs:#?}"
    );
    for r in &owed {
        let fired = r.fired_at.expect("a late firing records when it fired").0;
        assert!(
            fired >= restarted_at,
            "owed deadline fired at {fired}, before the restart"
        );
    }
    // Nothing skipped: consecutive climbs are exactly one ack span (2 s) apart.
    for pair in climbs.windows(2) {
        assert_eq!(pair[1].at.0 - pair[0].at.0, 2_000, "{climbs:#?}");
    }
    let first_due = case.opened_at.0 + 2_000;
    assert_eq!(climbs[0].at.0, first_due);
}
