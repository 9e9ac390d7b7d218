//! Silences over real MQTT and HTTP with the real hub: an operator silences one camera of the
//! demo site through the API; that camera's alert is stored but opens no case and notifies
//! nobody, while another camera's alert does; ended early, the camera's next alert opens a
//! case again. A cell silence mutes the alerts located in that cell, of its kind, and holds
//! across a restart. Bad bodies are refused naming every field; roles and cells are enforced;
//! each create and end is audited.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::api_util::{ADMIN, COUNTY_OP, M02, M02_LAT, M02_LON, MEMBER_A, OTHER_OP, TOWNSHIP_OP};
use crate::common;

use std::time::Duration;

use common::*;
use hub::case::CaseId;
use hub::store::{Filed, SilenceAction};
use protocol::{AlertSource, Severity, UtcMillis};
use serde_json::json;

/// An alert of the demo site from `camera`, at the site (so its case would be M01's).
fn from_camera(n: u64, camera: &str) -> protocol::Alert {
    let mut a = alert(SITE, n, Severity::Major, Some((DEMO_LON, DEMO_LAT)));
    a.source = AlertSource::Camera(camera.into());
    a
}

/// Notifications that arrive within `within`, as (person, case).
async fn notifications(watcher: &mut Client, within: Duration) -> Vec<(String, CaseId)> {
    let mut out = Vec::new();
    let end = tokio::time::Instant::now() + within;
    loop {
        let left = end.saturating_duration_since(tokio::time::Instant::now());
        match watcher.next_notification(left).await {
            Some((person, n)) => out.push((person, n.case)),
            None => return out,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silence_mutes_one_camera_until_it_is_ended() {
    let dir = hub_dir(EMBEDDED, "");
    let hub = start_hub(&dir.config_path).await;
    let op = Api::login(&hub, COUNTY_OP).await;
    let port = hub.mqtt[0].port();
    let mut watcher = client(port, "watcher", "svc", &token("svc")).await;
    watcher.subscribe("se/v1/person/+/notify").await;
    let site = client(port, "agent", SITE, &token(SITE)).await;

    let until = UtcMillis(UtcMillis::now().0 + 3_600_000);
    let r = op
        .post(
            "/api/v1/silences",
            &json!({"site": SITE, "camera": "cam-a", "until": until.to_string(), "reason": "更换摄像头支架"}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.json);
    let id = r.json["silence"]["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("S-"), "{id}");
    assert_eq!(r.json["silence"]["active"], true);
    assert_eq!(r.json["silence"]["created_by"], "p-huangtao");

    // The silenced camera first, then another camera of the same site.
    let muted = from_camera(1, "cam-a");
    let heard = from_camera(2, "cam-b");
    site.publish_alert(&muted).await;
    site.publish_alert(&heard).await;
    site.wait_acks(2, Duration::from_secs(5)).await;
    let heard_case = CaseId::for_alert(&heard.id);
    assert!(
        eventually(Duration::from_secs(5), || hub
            .store
            .cases()
            .case_of_alert(&heard.id)
            .unwrap()
            .is_some())
        .await,
        "the other camera's alert opened no case"
    );
    // Filed in order: the silenced alert was filed before the other one.
    assert!(hub.store.alerts().contains(&muted.id).unwrap(), "stored");
    assert_eq!(
        hub.store.cases().filed(&muted.id).unwrap(),
        Some(Filed::Muted(format!("silenced by {id}")))
    );
    assert_eq!(hub.store.cases().case_of_alert(&muted.id).unwrap(), None);
    let told = notifications(&mut watcher, Duration::from_secs(1)).await;
    assert!(!told.is_empty(), "the other camera's case notified nobody");
    assert!(
        told.iter().all(|(_, c)| *c == heard_case),
        "only the other camera's case is notified: {told:?}"
    );

    // Listed, in force, with the alert it muted counted.
    let list = op.get("/api/v1/silences?active=true").await;
    assert_eq!(list.status, 200, "{:?}", list.json);
    let s = &list.json["silences"][0];
    assert_eq!(s["id"], id.as_str());
    assert_eq!(s["camera"], "cam-a");
    assert_eq!(s["muted"], 1);
    assert_eq!(
        metric(&hub.metrics.render(), "hub_alerts_silenced_total"),
        Some(1.0)
    );

    // Ended early: no longer in force, and the camera's next alert opens a case.
    let ended = op
        .post(&format!("/api/v1/silences/{id}/end"), &json!({}))
        .await;
    assert_eq!(ended.status, 200, "{:?}", ended.json);
    assert_eq!(ended.json["silence"]["active"], false);
    assert_eq!(ended.json["silence"]["ended_by"], "p-huangtao");
    assert!(ended.json["silence"]["ended_at"].is_string());
    let again = op
        .post(&format!("/api/v1/silences/{id}/end"), &json!({}))
        .await;
    assert_eq!(again.status, 409, "ending twice: {:?}", again.json);
    let active = op.get("/api/v1/silences?active=true").await;
    assert_eq!(active.json["silences"], json!([]));
    let recent = op.get("/api/v1/silences").await;
    assert_eq!(
        recent.json["silences"][0]["id"],
        id.as_str(),
        "recently ended: still listed"
    );

    let next = from_camera(3, "cam-a");
    site.publish_alert(&next).await;
    site.wait_acks(3, Duration::from_secs(5)).await;
    let next_case = CaseId::for_alert(&next.id);
    let told = notifications(&mut watcher, Duration::from_secs(2)).await;
    assert!(
        told.iter().any(|(_, c)| *c == next_case),
        "the camera's alert after the end notified nobody: {told:?}"
    );
    assert_eq!(
        hub.store.cases().case_of_alert(&next.id).unwrap(),
        Some(next_case)
    );

    // Both changes audited: who, what, newest first.
    let audit = hub.store.cases().silence_audit(None, 10).unwrap();
    let seen: Vec<(SilenceAction, &str, &str)> = audit
        .iter()
        .map(|r| (r.action, r.login.as_str(), r.silence.id.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            (SilenceAction::Ended, COUNTY_OP, id.as_str()),
            (SilenceAction::Created, COUNTY_OP, id.as_str()),
        ]
    );
    hub.stop().await;
}

/// Waits until `alert` is filed (into a case or muted) and returns what became of it.
async fn filed(hub: &hub::service::RunningHub, alert: &str) -> Filed {
    assert!(
        eventually(Duration::from_secs(5), || hub
            .store
            .cases()
            .filed(alert)
            .unwrap()
            .is_some())
        .await,
        "alert {alert} not filed within 5 s"
    );
    hub.store.cases().filed(alert).unwrap().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cell_silence_mutes_alerts_located_there_and_outlives_a_restart() {
    let dir = hub_dir(EMBEDDED, "");
    let hub = start_hub(&dir.config_path).await;
    let op = Api::login(&hub, COUNTY_OP).await;
    let until = UtcMillis(UtcMillis::now().0 + 3_600_000);
    // The neighbouring micro-grid M02, zone alerts only.
    let r = op
        .post(
            "/api/v1/silences",
            &json!({"cell": M02, "kind": "zone", "until": until.to_string(), "reason": "M02 演练"}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.json);
    let id = r.json["silence"]["id"].as_str().unwrap().to_owned();
    let muted_why = Filed::Muted(format!("silenced by {id}"));

    let port = hub.mqtt[0].port();
    let site = client(port, "agent", SITE, &token(SITE)).await;
    // The same site's camera sees into both micro-grids: located by position.
    let in_m02 = alert(SITE, 1, Severity::Major, Some((M02_LON, M02_LAT)));
    let in_m01 = alert(SITE, 2, Severity::Major, Some((DEMO_LON, DEMO_LAT)));
    let mut line_in_m02 = alert(SITE, 3, Severity::Major, Some((M02_LON, M02_LAT)));
    line_in_m02.kind = protocol::AlertKind::Line;
    for a in [&in_m02, &in_m01, &line_in_m02] {
        site.publish_alert(a).await;
    }
    site.wait_acks(3, Duration::from_secs(5)).await;
    assert_eq!(filed(&hub, &in_m02.id).await, muted_why);
    let m01_case = CaseId::for_alert(&in_m01.id);
    assert_eq!(filed(&hub, &in_m01.id).await, Filed::Case(m01_case));
    let line_case = CaseId::for_alert(&line_in_m02.id);
    assert_eq!(
        filed(&hub, &line_in_m02.id).await,
        Filed::Case(line_case.clone()),
        "another kind in M02 is not silenced"
    );
    let line = hub.dispatch.case(&line_case).await.unwrap().unwrap();
    assert_eq!(line.path.last().unwrap().code, M02, "located in M02");
    drop(site);
    hub.stop().await;

    // After a restart the silence is still in force (read back from the store).
    let hub = start_hub(&dir.config_path).await;
    let port = hub.mqtt[0].port();
    let site = client(port, "agent", SITE, &token(SITE)).await;
    let later = alert(SITE, 4, Severity::Major, Some((M02_LON, M02_LAT)));
    site.publish_alert(&later).await;
    site.wait_acks(1, Duration::from_secs(5)).await;
    assert_eq!(filed(&hub, &later.id).await, muted_why);
    let op = Api::login(&hub, COUNTY_OP).await;
    let list = op.get("/api/v1/silences?active=true").await;
    assert_eq!(list.json["silences"][0]["muted"], 2, "{:?}", list.json);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silences_refuse_bad_bodies_and_callers_outside_their_cells() {
    let dir = hub_dir(EMBEDDED, "");
    let hub = start_hub(&dir.config_path).await;
    let op = Api::login(&hub, COUNTY_OP).await;
    let past = UtcMillis(UtcMillis::now().0 - 60_000).to_string();
    let later = UtcMillis(UtcMillis::now().0 + 3_600_000).to_string();

    // Every problem named with its field.
    let r = op
        .post(
            "/api/v1/silences",
            &json!({"site": "no-such-site", "camera": " ", "cell": "nowhere", "until": past, "reason": ""}),
        )
        .await;
    assert_eq!(r.status, 400, "{:?}", r.json);
    assert_eq!(r.json["error"]["code"], "invalid");
    let fields: Vec<&str> = r.json["error"]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["field"].as_str().unwrap())
        .collect();
    for f in ["site", "camera", "cell", "reason", "until"] {
        assert!(fields.contains(&f), "{f} not named: {:?}", r.json);
    }
    let r = op
        .post("/api/v1/silences", &json!({"until": later, "reason": "x"}))
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json["error"]["field"], "matchers", "{:?}", r.json);
    let r = op
        .post(
            "/api/v1/silences",
            &json!({"kind": "sideways", "until": later, "reason": "x"}),
        )
        .await;
    assert_eq!(r.status, 400, "an unknown kind: {:?}", r.json);
    assert!(
        r.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("kind"),
        "{:?}",
        r.json
    );

    // A member may not silence; an operator of another township may not silence this site.
    let member = Api::login(&hub, MEMBER_A).await;
    let body = json!({"site": SITE, "until": later, "reason": "检修"});
    assert_eq!(member.post("/api/v1/silences", &body).await.status, 403);
    assert_eq!(member.get("/api/v1/silences").await.status, 403);
    let other = Api::login(&hub, OTHER_OP).await;
    assert_eq!(other.post("/api/v1/silences", &body).await.status, 403);
    // Hub-wide (a kind alone): admins only.
    let wide = json!({"kind": "line", "until": later, "reason": "演示回放"});
    let township = Api::login(&hub, TOWNSHIP_OP).await;
    assert_eq!(township.post("/api/v1/silences", &wide).await.status, 403);
    let admin = Api::login(&hub, ADMIN).await;
    let r = admin.post("/api/v1/silences", &wide).await;
    assert_eq!(r.status, 201, "{:?}", r.json);
    let wide_id = r.json["silence"]["id"].as_str().unwrap().to_owned();

    // The township operator silences its site; the other township neither sees nor ends it.
    let r = township.post("/api/v1/silences", &body).await;
    assert_eq!(r.status, 201, "{:?}", r.json);
    let id = r.json["silence"]["id"].as_str().unwrap().to_owned();
    let ids = |v: &serde_json::Value| -> Vec<String> {
        v["silences"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        ids(&township.get("/api/v1/silences").await.json),
        std::slice::from_ref(&id)
    );
    assert!(ids(&other.get("/api/v1/silences").await.json).is_empty());
    let mut all = ids(&admin.get("/api/v1/silences").await.json);
    all.sort();
    let mut want = vec![id.clone(), wide_id];
    want.sort();
    assert_eq!(all, want);
    let r = other
        .post(&format!("/api/v1/silences/{id}/end"), &json!({}))
        .await;
    assert_eq!(r.status, 404, "{:?}", r.json);
    let r = township
        .post("/api/v1/silences/not-an-id/end", &json!({}))
        .await;
    assert_eq!(r.status, 404);
    assert!(
        hub.store
            .cases()
            .silence(&hub::case::SilenceId::parse(&id).unwrap())
            .unwrap()
            .unwrap()
            .ended_at
            .is_none(),
        "refused end changed nothing"
    );
    hub.stop().await;
}
