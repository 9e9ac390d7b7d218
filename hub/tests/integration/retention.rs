//! Retention on a real hub (embedded broker, real sled, the API) on the test's own clock:
//! records past their `[retention]` time are removed by the sweeper, a bounded number per
//! sweep, snapshot files with them (their disk space back), and what is not due, or belongs to
//! an open case however old, stays and is still served.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use hub::case::CaseId;
use std::time::Duration;

use common::*;
use hub::case::{Action, CaseState, Transition};
use hub::retention::Kind;
use protocol::{Severity, UtcMillis};

const DAY: i64 = 86_400_000;
const TAG: &str = "E2000017221101441890BEEF";
/// Two per kind per sweep, so three closed cases take two sweeps. The timer's own sweeps are
/// a day apart: only `sweep_now` sweeps during the test.
const RETENTION: &str = "[retention]\nmax_per_tick = 2\nsweep_every_s = 86400\n";

async fn case_of(hub: &hub::service::RunningHub, alert: &str) -> CaseId {
    let id = CaseId::for_alert(alert);
    for _ in 0..200 {
        if hub.dispatch.case(&id).await.unwrap().is_some() {
            return id;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no case for alert {alert}");
}

async fn close(hub: &hub::service::RunningHub, clock: &TestClock, case: &CaseId) {
    for (action, who) in [
        (Action::Acknowledge, "p-a"),
        (Action::Resolve, "p-a"),
        // Someone other than the resolver closes.
        (Action::Close, "p-b"),
    ] {
        let t = Transition::new(action, who, UtcMillis(clock.ms())).with_note("checked on site");
        hub.dispatch.transition(case, t).await.unwrap();
    }
}

fn swept(text: &str, kind: Kind) -> f64 {
    metric(
        text,
        &format!("hub_retention_swept_total{{kind=\"{}\"}}", kind.as_str()),
    )
    .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_records_are_swept_in_bounded_steps_and_open_cases_stay() {
    let clock = TestClock::starting_now();
    let dir = hub_dir(EMBEDDED, RETENTION);
    let hub = start_hub_on(&dir.config_path, clock.clone()).await;
    let port = hub.mqtt[0].port();
    let site = client(port, "agent", SITE, &token(SITE)).await;

    // Four alerts, four cases (each its own track), each with its own snapshot (a real JPEG
    // with the alert's number after its end: four files); three get closed, one stays open.
    let alerts: Vec<_> = (1..=4)
        .map(|n| {
            let mut a = alert(SITE, 700 + n, Severity::Major, Some((DEMO_LON, DEMO_LAT)));
            let mut jpeg = sample_jpeg();
            jpeg.extend_from_slice(format!("#{n}").as_bytes());
            a.snapshot = Some(protocol::alert::Snapshot {
                camera: "cam-1".into(),
                time: a.time,
                width: 640,
                height: 480,
                jpeg,
            });
            a
        })
        .collect();
    let jpeg_len = alerts[0].snapshot.as_ref().unwrap().jpeg.len() as u64;
    for a in &alerts {
        site.publish_alert(a).await;
    }
    site.wait_acks(4, Duration::from_secs(10)).await;
    let mut cases = Vec::new();
    for a in &alerts {
        cases.push(case_of(&hub, &a.id).await);
    }
    let (closed, open) = (&cases[..3], &cases[3]);
    for c in closed {
        close(&hub, &clock, c).await;
    }
    publish_sightings(&site, SITE, TAG, clock.ms() - 60_000).await;
    publish_sightings(&site, SITE, TAG, clock.ms() - 30_000).await;
    assert!(
        eventually(Duration::from_secs(10), || hub.store.sightings().len() == 2).await,
        "{} sightings stored",
        hub.store.sightings().len()
    );
    let trajectory = format!("/api/v1/tags/{TAG}/trajectory");
    let admin = Api::login(&hub, "admin").await;
    let r = admin.get(&trajectory).await;
    assert_eq!(
        r.json["sightings"].as_array().unwrap().len(),
        2,
        "{:?}",
        r.json
    );

    // Nothing is due yet.
    let r = hub.retention.sweep_now().await;
    assert!(r.failed.is_empty(), "{:?}", r.failed);
    assert!(r.swept.values().all(|s| s.records == 0), "{r:?}");
    let text = hub.metrics.render();
    let sightings_bytes = metric(&text, "hub_store_bytes{kind=\"sightings\"}").unwrap();
    let closed_bytes = metric(&text, "hub_store_bytes{kind=\"closed_cases\"}").unwrap();
    assert!(sightings_bytes > 0.0 && closed_bytes > 0.0, "{text}");

    // 31 days on: the sightings (30 days) and the 12-hour session are due; cases are not.
    clock.advance(31 * DAY);
    let r = hub.retention.sweep_now().await;
    assert!(r.failed.is_empty(), "{:?}", r.failed);
    assert_eq!(r.records(Kind::Sightings), 2, "{r:?}");
    assert_eq!(r.records(Kind::Sessions), 1, "{r:?}");
    assert_eq!(r.records(Kind::ClosedCases), 0, "{r:?}");
    assert_eq!(admin.get("/api/v1/me").await.status, 401);
    let admin = Api::login(&hub, "admin").await;
    let r = admin.get(&trajectory).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json["sightings"], serde_json::json!([]), "{:?}", r.json);
    assert!(hub.store.sightings().is_empty());
    for c in &cases {
        assert_eq!(admin.get(&format!("/api/v1/cases/{c}")).await.status, 200);
    }
    let text = hub.metrics.render();
    assert!(
        metric(&text, "hub_store_bytes{kind=\"sightings\"}").unwrap() < sightings_bytes,
        "{text}"
    );

    // 91 days on: the snapshots (90 days) of the closed cases' alerts are due, two per sweep;
    // their files go, and the disk space with them. The open case's snapshot stays.
    let blobs = hub.store.blobs().dir().to_path_buf();
    let on_disk = || -> u64 {
        std::fs::read_dir(&blobs)
            .unwrap()
            .map(|d| d.unwrap().path())
            .filter(|p| p.file_name().unwrap() != "tmp")
            .flat_map(|p| std::fs::read_dir(p).unwrap())
            .map(|f| f.unwrap().metadata().unwrap().len())
            .sum()
    };
    assert_eq!(on_disk(), 4 * jpeg_len);
    clock.advance(60 * DAY);
    let first = hub.retention.sweep_now().await;
    assert_eq!(first.records(Kind::Snapshots), 2, "{first:?}");
    let second = hub.retention.sweep_now().await;
    assert_eq!(second.records(Kind::Snapshots), 1, "{second:?}");
    assert_eq!(second.records(Kind::Alerts), 0, "{second:?}");
    assert_eq!(on_disk(), jpeg_len, "the three expired files are gone");
    let admin = Api::login(&hub, "admin").await;
    for a in &alerts[..3] {
        let r = admin
            .get(&format!("/api/v1/alerts/{}/snapshot", a.id))
            .await;
        assert_eq!(r.status, 410, "{:?}", r.json);
    }
    let r = admin
        .get(&format!("/api/v1/alerts/{}/snapshot", alerts[3].id))
        .await;
    assert_eq!(r.status, 200, "the open case's snapshot is kept");
    let text = hub.metrics.render();
    assert_eq!(
        metric(&text, "hub_store_bytes{kind=\"snapshots\"}").unwrap(),
        jpeg_len as f64,
        "{text}"
    );
    assert_eq!(
        metric(&text, "hub_retention_swept_bytes_total{kind=\"snapshots\"}").unwrap(),
        (3 * jpeg_len) as f64,
        "{text}"
    );

    // Three years after the closing: the closed cases are due, two per sweep, and the alerts
    // (a year) of the closed ones; the open case's alert stays.
    clock.advance(1095 * DAY);
    let first = hub.retention.sweep_now().await;
    assert_eq!(first.records(Kind::ClosedCases), 2, "{first:?}");
    assert!(first.swept[&Kind::ClosedCases].more);
    let second = hub.retention.sweep_now().await;
    assert_eq!(second.records(Kind::ClosedCases), 1, "{second:?}");
    assert!(!second.swept[&Kind::ClosedCases].more);
    let third = hub.retention.sweep_now().await;
    assert_eq!(third.records(Kind::ClosedCases), 0, "{third:?}");
    let alerts_swept: u64 = [&first, &second, &third]
        .iter()
        .map(|r| r.records(Kind::Alerts))
        .sum();
    assert_eq!(alerts_swept, 3);
    for a in &alerts[..3] {
        assert!(!hub.store.alerts().contains(&a.id).unwrap());
    }
    assert!(hub.store.alerts().contains(&alerts[3].id).unwrap());
    assert_eq!(
        on_disk(),
        jpeg_len,
        "the open case's snapshot is still there"
    );

    let admin = Api::login(&hub, "admin").await;
    for (c, a) in closed.iter().zip(&alerts) {
        assert_eq!(admin.get(&format!("/api/v1/cases/{c}")).await.status, 404);
        assert!(hub.dispatch.case(c).await.unwrap().is_none());
        assert!(hub.book.get(c).is_none());
        assert_eq!(hub.dispatch.case_of_alert(&a.id).await.unwrap(), None);
    }
    // The open case, three years overdue, is untouched and still served.
    let r = admin.get(&format!("/api/v1/cases/{open}")).await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    let kept = hub.dispatch.case(open).await.unwrap().unwrap();
    assert_ne!(kept.state, CaseState::Closed);
    assert_eq!(
        hub.dispatch.case_of_alert(&alerts[3].id).await.unwrap(),
        Some(open.clone())
    );
    let list = admin.get("/api/v1/cases").await;
    assert_eq!(list.json["total"], 1, "{:?}", list.json);

    let text = hub.metrics.render();
    assert_eq!(swept(&text, Kind::ClosedCases), 3.0, "{text}");
    assert_eq!(swept(&text, Kind::Sightings), 2.0, "{text}");
    assert!(swept(&text, Kind::Sessions) >= 2.0, "{text}");
    assert!(
        metric(
            &text,
            "hub_retention_swept_bytes_total{kind=\"closed_cases\"}"
        )
        .unwrap()
            > 0.0,
        "{text}"
    );
    assert_eq!(
        metric(&text, "hub_store_bytes{kind=\"closed_cases\"}").unwrap(),
        0.0,
        "{text}"
    );
    assert_eq!(
        metric(&text, "hub_retention_last_sweep_seconds").unwrap(),
        (clock.ms() / 1000) as f64
    );

    // Gone from the disk, not only from memory: a restarted hub loads the open case alone.
    hub.stop().await;
    let hub = start_hub_on(&dir.config_path, clock.clone()).await;
    for c in closed {
        assert!(hub.book.get(c).is_none(), "{c} came back");
        assert!(
            hub.dispatch.case(c).await.unwrap().is_none(),
            "{c} came back"
        );
    }
    assert!(hub.book.get(open).is_some());
    assert!(hub.store.sightings().is_empty());
    let r = hub.retention.sweep_now().await;
    assert!(r.swept.values().all(|s| s.records == 0), "{r:?}");
    let text = hub.metrics.render();
    assert_eq!(
        metric(&text, "hub_store_bytes{kind=\"closed_cases\"}").unwrap(),
        0.0,
        "counted again at start: {text}"
    );
    hub.stop().await;
}
