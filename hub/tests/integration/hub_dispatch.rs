//! The hub end to end over real MQTT through its embedded broker: an alert from a site lands
//! in the right deepest cell and notifies that cell's on-duty person; unacknowledged, it
//! climbs level by level on schedule; acknowledged, it stops climbing. Alerts stored but not
//! filed before a stop are filed at the next start.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use hub::case::CaseId;
use std::time::{Duration, Instant};

use common::*;
use hub::case::{Action, CaseState, NotifyReason, Transition};
use protocol::{Severity, UtcMillis};

/// Every level gets 2 s to acknowledge, so a climb through all five takes ~8 s.
const FAST: &str = r#"
[escalation.critical]
ack = { micro_grid = "2s", grid = "2s", village = "2s", township = "2s", county = "2s" }
resolve = { micro_grid = "1h" }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_lands_in_the_deepest_cell_and_notifies_its_on_duty_person() {
    let dir = hub_dir(EMBEDDED, "");
    let hub = start_hub(&dir.config_path).await;
    let port = hub.mqtt[0].port();
    let mut watcher = client(port, "watcher", "svc", &token("svc")).await;
    watcher.subscribe("se/v1/person/+/notify").await;
    let site = client(port, "agent", SITE, &token(SITE)).await;

    let a = alert(SITE, 1, Severity::Major, Some((DEMO_LON, DEMO_LAT)));
    site.publish_alert(&a).await;
    site.wait_acks(1, Duration::from_secs(5)).await;
    // Acknowledged means stored: the alert is on the hub's disk already.
    assert!(hub.store.alerts().contains(&a.id).unwrap());

    let expected = example_roster().on_duty(M01, UtcMillis::now()).people;
    assert!(
        !expected.is_empty(),
        "the example roster always has someone for M01"
    );
    let mut got = Vec::new();
    while got.len() < expected.len() {
        let (person, n) = watcher
            .next_notification(Duration::from_secs(5))
            .await
            .expect("a notification for the on-duty person");
        assert_eq!(n.cell.code, M01);
        assert_eq!(n.reason, NotifyReason::NewCase);
        assert_eq!(n.case, CaseId::for_alert(&a.id));
        assert!(
            n.path.starts_with("武定县 / 狮山镇 / 近城社区"),
            "{}",
            n.path
        );
        got.push(person);
    }
    got.sort();
    assert_eq!(got, expected);

    let case = hub
        .dispatch
        .case(&CaseId::for_alert(&a.id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(case.path.last().unwrap().code, M01);
    assert_eq!(
        case.path.len(),
        5,
        "county → township → village → grid → micro-grid"
    );
    assert_eq!(case.state, CaseState::Dispatched);
    // Every serial stage the alert went through took some time, and /metrics says so.
    for st in hub::metrics::Stage::ALL {
        assert!(hub.metrics.stage_seconds(st) > 0.0, "{st:?} not timed");
    }
    let text = hub.metrics.render();
    assert!(
        text.contains("hub_stage_busy_seconds_total{stage=\"dispatch_write\"}"),
        "{text}"
    );
    // The case is in the case log, whose size /metrics gives (as of the dispatcher's last
    // write: its delivery records may land after the text was made, and only add).
    let log = hub.store.cases().log_stats();
    assert_eq!(log.cases, 1);
    assert!(log.live > 0 && log.bytes >= log.live, "{log:?}");
    let gauge = |name: &str| -> u64 {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .expect(name);
        line[name.len() + 1..].parse().unwrap()
    };
    let shown = gauge("hub_case_log_bytes");
    assert!(shown > 0 && shown <= log.bytes, "{shown} {log:?}");
    assert_eq!(gauge("hub_case_log_segments"), 1);
    assert_eq!(gauge("hub_case_log_damaged_segments"), 0);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_without_location_or_with_one_far_from_its_site_goes_to_its_sites_registered_cell()
{
    let dir = hub_dir(EMBEDDED, "");
    let hub = start_hub(&dir.config_path).await;
    let port = hub.mqtt[0].port();
    let site = client(port, "agent", SITE, &token(SITE)).await;
    let no_loc = alert(SITE, 2, Severity::Major, None);
    let far = alert(SITE, 3, Severity::Major, Some((102.71, 25.04))); // Kunming
    site.publish_alert(&no_loc).await;
    site.publish_alert(&far).await;
    site.wait_acks(2, Duration::from_secs(5)).await;
    let case_of = |id: String| {
        let d = hub.dispatch.clone();
        async move {
            for _ in 0..100 {
                if let Some(c) = d.case(&CaseId::for_alert(&id)).await.unwrap() {
                    return c;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("no case for {id}");
        }
    };
    assert_eq!(
        case_of(no_loc.id.clone()).await.path.last().unwrap().code,
        M01
    );
    // Kunming is outside every cell, and tens of kilometres from the site's cell: the site
    // is not trusted with it (see `hub::trust`), so the case is its site's, flagged.
    let relocated = case_of(far.id.clone()).await;
    assert_eq!(relocated.path.last().unwrap().code, M01);
    let flag = relocated.position_untrusted.expect("the case is flagged");
    assert_eq!((flag.claimed.lon, flag.claimed.lat), (102.71, 25.04));
    assert_eq!(flag.alert, far.id);
    assert_eq!(
        relocated.location, None,
        "the claimed position is not the case's"
    );
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacknowledged_case_climbs_level_by_level_on_schedule() {
    let dir = hub_dir(EMBEDDED, FAST);
    let hub = start_hub(&dir.config_path).await;
    let port = hub.mqtt[0].port();
    let mut watcher = client(port, "watcher", "svc", &token("svc")).await;
    watcher.subscribe("se/v1/person/+/notify").await;
    let site = client(port, "agent", SITE, &token(SITE)).await;
    let a = alert(SITE, 10, Severity::Critical, Some((DEMO_LON, DEMO_LAT)));
    let t0 = Instant::now();
    site.publish_alert(&a).await;

    // One round of notifications per cell, from the micro-grid up to the county.
    let levels = ["micro_grid", "grid", "village", "township", "county"];
    let mut seen: Vec<(u32, String, Duration)> = Vec::new();
    while seen.len() < levels.len() {
        let (_, n) = watcher
            .next_notification(Duration::from_secs(6))
            .await
            .unwrap_or_else(|| panic!("stalled after {seen:?}"));
        if seen.last().is_none_or(|(step, _, _)| *step != n.step) {
            seen.push((n.step, n.cell.level.as_str().to_owned(), t0.elapsed()));
        }
    }
    let got: Vec<&str> = seen.iter().map(|(_, l, _)| l.as_str()).collect();
    assert_eq!(got, levels);
    for (i, (_, level, at)) in seen.iter().enumerate() {
        let due = Duration::from_secs(2 * i as u64);
        assert!(
            *at + Duration::from_millis(300) >= due && *at <= due + Duration::from_millis(1500),
            "{level} notified at {at:?}, due at {due:?}"
        );
    }
    let case = hub
        .dispatch
        .case(&CaseId::for_alert(&a.id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(case.current_cell().unwrap().code, "532329");
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_case_stops_climbing() {
    let dir = hub_dir(EMBEDDED, FAST);
    let hub = start_hub(&dir.config_path).await;
    let port = hub.mqtt[0].port();
    let mut watcher = client(port, "watcher", "svc", &token("svc")).await;
    watcher.subscribe("se/v1/person/+/notify").await;
    let site = client(port, "agent", SITE, &token(SITE)).await;
    let a = alert(SITE, 11, Severity::Critical, Some((DEMO_LON, DEMO_LAT)));
    site.publish_alert(&a).await;
    let (person, first) = watcher
        .next_notification(Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(first.cell.code, M01);
    let t = Transition::new(Action::Acknowledge, &person, UtcMillis::now());
    let case = hub.dispatch.transition(&first.case, t).await.unwrap();
    assert_eq!(case.state, CaseState::Acknowledged);
    assert_eq!(case.handler.as_deref(), Some(person.as_str()));

    // Three ack deadlines' worth of time: nothing climbs.
    let deadline = Instant::now() + Duration::from_secs(6);
    while Instant::now() < deadline {
        if let Some((_, n)) = watcher.next_notification(Duration::from_millis(200)).await {
            assert_eq!(n.step, first.step, "climbed after acknowledgement: {n:?}");
        }
    }
    let case = hub.dispatch.case(&first.case).await.unwrap().unwrap();
    assert_eq!(case.current_cell().unwrap().code, M01);
    assert_eq!(case.state, CaseState::Acknowledged);
    hub.stop().await;
}

/// Alerts stored but not yet filed when the hub stopped are filed at the next start, all in
/// one batch: a later alert of the batch joins the case an earlier one opened (the batch's
/// writes are visible to it before they are applied), and each is filed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_left_pending_are_filed_at_start_grouped_within_one_batch() {
    let dir = hub_dir(EMBEDDED, "");
    let loaded = load(&dir.config_path);
    let first = alert(SITE, 21, Severity::Major, Some((DEMO_LON, DEMO_LAT)));
    let mut same_track = alert(SITE, 22, Severity::Major, Some((DEMO_LON, DEMO_LAT)));
    same_track.track = first.track;
    let other = alert(SITE, 23, Severity::Major, Some((DEMO_LON, DEMO_LAT)));
    {
        std::fs::create_dir_all(&loaded.config.data_dir).unwrap();
        let store = hub::store::Store::open(&loaded.config.data_dir).unwrap();
        let batch: Vec<_> = [&first, &same_track, &other]
            .iter()
            .map(|a| std::sync::Arc::new((*a).clone()))
            .collect();
        assert_eq!(
            store
                .alerts()
                .insert(&batch, protocol::UtcMillis(first.time.0))
                .unwrap(),
            [true, true, true]
        );
        store.flush_blocking().unwrap();
    }
    let hub = hub::service::start(loaded, std::sync::Arc::new(hub::dispatch::SystemClock))
        .await
        .unwrap();
    let case_of = |id: String| {
        let d = hub.dispatch.clone();
        async move {
            for _ in 0..100 {
                if let Some(c) = d.case_of_alert(&id).await.unwrap() {
                    return c;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("alert {id} not filed");
        }
    };
    let opened = CaseId::for_alert(&first.id);
    assert_eq!(case_of(first.id.clone()).await, opened);
    assert_eq!(case_of(same_track.id.clone()).await, opened);
    assert_eq!(
        case_of(other.id.clone()).await,
        CaseId::for_alert(&other.id)
    );
    let case = hub.dispatch.case(&opened).await.unwrap().unwrap();
    assert_eq!(case.count, 2);
    assert!(hub.store.pending_ids().unwrap().is_empty());
    assert_eq!(
        hub.metrics
            .cases_opened
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );
    hub.stop().await;
}
