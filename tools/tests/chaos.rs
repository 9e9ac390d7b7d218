//! The delivery chaos harness, small: a real mosquitto, the built `edge-tools emit` publishing
//! 600 alerts with 5 kB snapshots while the broker is stopped twice (once together with an agent
//! SIGKILL, so the restarted agent starts up and resends while the broker is down); every id
//! must arrive. `cargo xtask chaos` runs the same harness with 10 000 alerts.
//!
//! Needs mosquitto (`cargo xtask setup`) and the `emit` subcommand.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use edge_tools::chaos::{BASE_MS, ChaosConfig, execute};

#[tokio::test(flavor = "multi_thread")]
async fn no_alert_is_lost_through_broker_outages_and_agent_kills() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = ChaosConfig {
        count: 600,
        broker_outages: 2,
        agent_kills: 1,
        snapshot_bytes: 5_000,
        timeout: Duration::from_secs(180),
        work_dir: Some(dir.path().join("work")),
        agent_program: env!("CARGO_BIN_EXE_edge-tools").into(),
        base_ms: BASE_MS,
        outage_min: Duration::from_secs(2),
        outage_max: Duration::from_secs(3),
        agent_rate: None,
    };
    let report = execute(&cfg).await.unwrap();
    let why = report.failures();
    assert_eq!(
        report.lost, 0,
        "lost ids, first {:?}; {why:?}",
        report.lost_sample
    );
    assert_eq!(report.distinct, 600, "every id received: {why:?}");
    assert_eq!(
        (report.malformed, report.unexpected, report.corrupt),
        (0, 0, 0),
        "{why:?}"
    );
    assert!(report.agent_exit_ok, "{}", report.agent_exit);
    assert_eq!(report.events.len(), 2, "both disruptions happened: {why:?}");
    assert_eq!(
        report.kills_missed(),
        0,
        "the kill hit a running agent: {why:?}"
    );
    assert!(report.passed(), "{why:?}");
    assert_eq!(
        report.summary_line(),
        format!(
            "sent=600 received={} lost=0 duplicated={}",
            report.received, report.duplicated
        )
    );
    assert_eq!(report.received, 600 + report.duplicated);
}
