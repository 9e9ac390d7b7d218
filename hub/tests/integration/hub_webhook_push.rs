//! A webhook attached to a cell hears the cell's notifications, and the delivery outcome is
//! recorded on the case: the hub's push path end to end, with a local HTTP server standing in
//! for a generic JSON webhook.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use hub::case::CaseId;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use hub::case::{DeliveryOutcome, DeliveryTarget};
use protocol::Severity;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cells_webhook_hears_its_notifications_and_the_outcome_is_recorded_on_the_case() {
    // The webhook server: fails the first request with 500 (the sender retries), then accepts.
    let bodies: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let hits = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let (b, h) = (bodies.clone(), hits.clone());
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: String| {
            let (b, h) = (b.clone(), h.clone());
            async move {
                if h.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                    return (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "busy");
                }
                b.lock().unwrap().push(serde_json::from_str(&body).unwrap());
                (axum::http::StatusCode::OK, "ok")
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = hub_dir(
        EMBEDDED,
        &format!(
            r#"
[[push.webhooks]]
cell = "{M01}"
[push.webhooks.webhook]
id = "m01-group"
kind = "generic"
url = "http://{addr}/hook"
backoff_base_ms = 50
backoff_cap_ms = 100
"#
        ),
    );
    let hub = start_hub(&dir.config_path).await;
    let site = client(hub.mqtt[0].port(), "agent", SITE, &token(SITE)).await;
    let a = alert(SITE, 77, Severity::Major, Some((DEMO_LON, DEMO_LAT)));
    site.publish_alert(&a).await;

    let case_id = CaseId::for_alert(&a.id);
    let mut recorded = None;
    for _ in 0..100 {
        if let Some(c) = hub.dispatch.case(&case_id).await.unwrap()
            && let Some(d) = c
                .deliveries
                .iter()
                .find(|d| d.target == DeliveryTarget::Webhook("m01-group".into()))
                .cloned()
            && d.outcome == DeliveryOutcome::Delivered
        {
            recorded = Some(d);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let d = recorded.expect("the webhook delivery is recorded on the case as delivered");
    assert_eq!(d.attempts, 2, "one 500, then accepted: {d:?}");
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 2);
    let body = bodies.lock().unwrap()[0].clone();
    assert!(body.to_string().contains(case_id.as_str()), "{body}");
    // The people on duty got their MQTT notification too.
    let case = hub.dispatch.case(&case_id).await.unwrap().unwrap();
    assert!(
        case.deliveries
            .iter()
            .any(|d| matches!(d.target, DeliveryTarget::Person(_)) && d.channel == "mqtt"),
        "{:?}",
        case.deliveries
    );
    hub.stop().await;
}
