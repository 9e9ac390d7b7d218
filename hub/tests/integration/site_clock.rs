//! Boxes without NTP: the real hub over real MQTT measures a site's clock from its live
//! status, shows the offset on the sites page and in `/metrics`, opens a site-health case at
//! the site's cell past `[registry] clock_tolerance_s` and resolves it when the clock is set;
//! alerts stamped by the bad clock (or from the future) are filed at their receipt with the
//! box's time kept; an alert that waited out an outage on a good clock keeps its own time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use hub::case::CaseId;
use protocol::{Severity, UtcMillis};
use rumqttc::v5::mqttbytes::QoS;
use serde_json::Value;

use crate::common::*;

const HOUR: i64 = 3_600_000;

/// A time as the API writes it (RFC 3339), in ms.
fn ms(v: &Value) -> i64 {
    serde_json::from_value::<UtcMillis>(v.clone())
        .unwrap_or_else(|e| panic!("{v}: {e}"))
        .0
}

/// Publishes `site`'s `online` status stamped `offset_ms` off the hub's clock, retained as the
/// agent does.
async fn status(site: &Client, offset_ms: i64) {
    let mut st = status_online(SITE);
    st.time = UtcMillis(UtcMillis::now().0 + offset_ms);
    let acks = site.acks.load(std::sync::atomic::Ordering::SeqCst);
    site.client
        .publish(
            format!("se/v1/site/{SITE}/status"),
            QoS::AtLeastOnce,
            true,
            serde_json::to_vec(&st).unwrap(),
        )
        .await
        .unwrap();
    site.wait_acks(acks + 1, Duration::from_secs(5)).await;
}

async fn site_row(api: &Api) -> Value {
    let r = api.get("/api/v1/sites").await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    r.json["sites"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == SITE)
        .cloned()
        .unwrap_or(Value::Null)
}

async fn clock_cases(api: &Api) -> Vec<Value> {
    let r = api.get("/api/v1/cases?kind=site_health").await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    r.json["cases"].as_array().cloned().unwrap_or_default()
}

/// Publishes `a` and waits for its case's detail.
async fn filed(site: &Client, api: &Api, a: &protocol::Alert) -> Value {
    let acks = site.acks.load(std::sync::atomic::Ordering::SeqCst);
    site.publish_alert(a).await;
    site.wait_acks(acks + 1, Duration::from_secs(5)).await;
    let case = CaseId::for_alert(&a.id);
    for _ in 0..100 {
        let r = api.get(&format!("/api/v1/cases/{case}")).await;
        if r.status == 200 {
            return r.json;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("case {case} not filed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_an_hour_behind_is_flagged_its_alerts_filed_at_receipt_until_its_clock_is_set() {
    let dir = hub_dir(EMBEDDED, "");
    let hub = start_hub(&dir.config_path).await;
    let api = Api::login(&hub, "admin").await;
    let site = client(hub.mqtt[0].port(), "agent", SITE, &token(SITE)).await;

    status(&site, -HOUR).await;
    let mut row = Value::Null;
    for _ in 0..100 {
        row = site_row(&api).await;
        if row["clock_off"] == true {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let offset = row["clock_offset_ms"].as_i64().expect("measured");
    assert!((offset + HOUR).abs() < 5_000, "about an hour behind: {row}");
    assert_eq!(row["clock_off"], true, "{row}");
    let gauge = metric(
        &hub.metrics.render(),
        &format!("hub_site_clock_offset_seconds{{site=\"{SITE}\"}}"),
    )
    .expect("the gauge");
    assert!((gauge + 3600.0).abs() < 5.0, "{gauge}");

    // One site-health case, at the site's cell.
    let mut cases = Vec::new();
    for _ in 0..100 {
        cases = clock_cases(&api).await;
        if !cases.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(cases.len(), 1, "{cases:?}");
    let clock_case = cases[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(cases[0]["cell"]["code"], M01, "{:?}", cases[0]);
    assert_eq!(cases[0]["site"], SITE);
    // Another status as far off opens no second one.
    status(&site, -HOUR).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(clock_cases(&api).await.len(), 1);

    // An alert stamped by that clock is filed at its receipt, its own time kept.
    let mut a = alert(SITE, 1, Severity::Major, Some((DEMO_LON, DEMO_LAT)));
    let received = UtcMillis::now().0;
    a.time = UtcMillis(received - HOUR);
    a.started_at = UtcMillis(a.time.0 - 2_000);
    let d = filed(&site, &api, &a).await;
    let last = ms(&d["case"]["last_alert_at"]);
    assert!((last - received).abs() < 5_000, "filed at receipt: {d}");
    assert_eq!(ms(&d["time_untrusted"]["claimed"]), a.time.0, "{d}");
    assert!(
        d["time_untrusted"]["reason"]
            .as_str()
            .unwrap()
            .contains("behind the hub's"),
        "{d}"
    );
    assert_eq!(
        metric(&hub.metrics.render(), "hub_alerts_retimed_total"),
        Some(1.0)
    );

    // The clock is set: the next status resolves the case, the site is no longer flagged.
    status(&site, 0).await;
    let mut state = Value::Null;
    for _ in 0..100 {
        let r = api.get(&format!("/api/v1/cases/{clock_case}")).await;
        state = r.json["case"]["state"].clone();
        if state == "resolved" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(state, "resolved");
    assert_eq!(site_row(&api).await["clock_off"], false);

    // With a good clock: an alert that waited two days in the box's outbox keeps its time;
    // one stamped a year ahead is still not believed.
    let mut late = alert(SITE, 3, Severity::Major, Some((DEMO_LON, DEMO_LAT)));
    late.time = UtcMillis(UtcMillis::now().0 - 48 * HOUR);
    late.started_at = late.time;
    let d = filed(&site, &api, &late).await;
    assert!(d["time_untrusted"].is_null(), "{d}");
    assert_eq!(ms(&d["case"]["last_alert_at"]), late.time.0, "{d}");
    let mut ahead = alert(SITE, 2, Severity::Major, Some((DEMO_LON, DEMO_LAT)));
    ahead.time = UtcMillis(UtcMillis::now().0 + 365 * 24 * HOUR);
    ahead.started_at = ahead.time;
    let d = filed(&site, &api, &ahead).await;
    assert!(
        d["time_untrusted"]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("ahead of the hub's clock"),
        "{d}"
    );
    hub.stop().await;
}
