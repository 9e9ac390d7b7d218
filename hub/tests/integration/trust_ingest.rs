//! What a site may file, and the quarantine for what the hub refuses, against the real `hub`
//! binary over real sockets: MQTT 5 and 3.1.1 clients through the gateway, the admin API,
//! `/metrics`, and a local webhook standing in for a WeCom group bot.
//!
//! - A site speaking for a person (a patrol report in another township) is refused: no case,
//!   the payload is quarantined, MQTT 5 PUBACK 0x87.
//! - A position far from the site is not believed: the case opens in the site's own cell,
//!   flagged, the claimed position kept.
//! - Malformed payloads (bad JSON, another schema) get PUBACK 0x99, another site's alert
//!   0x87; all are quarantined and listed for admins, their raw bytes intact; re-ingesting
//!   them is refused with the reason. An alert refused for a reason a config change fixes (an
//!   unregistered site) is re-ingested into a case after the fix and a restart.
//! - Under MQTT 3.1.1 a refused alert is quarantined and acknowledged all the same.
//! - A markdown link in `rule` reaches the WeCom body escaped.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use hub::case::CaseId;
use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use protocol::{AlertKind, AlertSource, Severity};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);
/// 高桥社区第一网格, in 高桥镇: another township, ~14 km from the demo site.
const GAOQIAO_LON: f64 = 102.4199;
const GAOQIAO_LAT: f64 = 25.4045;
/// A site with a credential but no `[sites.…]` entry until the test registers it.
const NEW_SITE: &str = "wd-new-003";

/// MQTT 5 PUBACK reasons the gateway gives a refused alert.
const NOT_AUTHORIZED: u8 = 0x87;
const PAYLOAD_FORMAT_INVALID: u8 = 0x99;

struct Ports {
    mqtt: u16,
    http: u16,
    metrics: u16,
}

/// The test hub's directory: the demo site registered with its location, a WeCom webhook on
/// its micro-grid, fixed ports, and a credential for [`NEW_SITE`] (not registered).
fn hub_dir_for(ports: &Ports, hook: SocketAddr) -> HubDir {
    let dir = hub_dir(
        &format!(
            "mode = \"embedded\"\nlisten = [\"127.0.0.1:{}\"]",
            ports.mqtt
        ),
        &format!(
            r#"
[metrics]
listen = "127.0.0.1:{}"

[[push.webhooks]]
cell = "{M01}"
[push.webhooks.webhook]
id = "m01-wecom"
kind = "wecom"
url = "http://{hook}/hook"
backoff_base_ms = 50
backoff_cap_ms = 100
"#,
            ports.metrics
        ),
    );
    add_credential(&dir, "site", NEW_SITE);
    edit_config(
        &dir,
        &format!("[sites.{SITE}]\ncell = \"{M01}\"\n"),
        &format!(
            "[sites.{SITE}]\ncell = \"{M01}\"\nlocation = {{ lon = {DEMO_LON}, lat = {DEMO_LAT} }}\n"
        ),
    );
    edit_config(
        &dir,
        "listen = \"127.0.0.1:0\"\nusers",
        &format!("listen = \"127.0.0.1:{}\"\nusers", ports.http),
    );
    dir
}

fn edit_config(dir: &HubDir, from: &str, to: &str) {
    let text = std::fs::read_to_string(&dir.config_path).unwrap();
    assert!(text.contains(from), "{from:?} not in the config:\n{text}");
    std::fs::write(&dir.config_path, text.replacen(from, to, 1)).unwrap();
}

fn site_v5(port: u16, site: &str, client_id: &str) -> Mqtt {
    Spec::new(Proto::V5, port, client_id)
        .login(site, &token(site))
        .start()
}

/// Publishes `payload` on `site`'s alert topic and waits for its PUBACK; returns its reason.
async fn publish_and_reason(c: &Mqtt, site: &str, payload: Vec<u8>) -> u8 {
    let before = c.acks();
    assert!(
        c.publish(&format!("se/v1/site/{site}/alert"), payload, false)
            .await
    );
    c.wait_acks(before + 1, WAIT).await;
    *c.puback_reasons().last().unwrap()
}

async fn quarantine(admin: &Api) -> Vec<Value> {
    let r = admin.get("/api/v1/quarantine?limit=500").await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    r.json["records"].as_array().unwrap().clone()
}

/// The quarantine record whose raw bytes are `raw` (found by SHA-256).
fn record_of<'a>(records: &'a [Value], raw: &[u8]) -> &'a Value {
    let sha = hub::gateway::auth::sha256_hex(raw);
    records
        .iter()
        .find(|r| r["sha256"] == sha.as_str())
        .unwrap_or_else(|| panic!("no quarantine record for {sha}: {records:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_files_only_its_own_alerts_near_itself_and_nothing_refused_is_lost() {
    let hook = webhook_receiver().await;
    let ports = Ports {
        mqtt: free_port(),
        http: free_port(),
        metrics: free_port(),
    };
    let dir = hub_dir_for(&ports, hook.addr);
    let log = dir.dir.path().join("hub.log");
    let mut hub = spawn_hub(&dir.config_path, &log);
    wait_port(ports.mqtt).await;
    wait_port(ports.http).await;
    let http: SocketAddr = ([127, 0, 0, 1], ports.http).into();
    let admin = Api::anonymous_at(http).logged_in("admin").await;
    let site = site_v5(ports.mqtt, SITE, "agent-v5");
    site.connected(WAIT).await;

    // (1) The site speaks for a person: a critical "patrol report" by p-huangtao in 高桥镇.
    let mut forged = alert(
        SITE,
        1,
        Severity::Critical,
        Some((GAOQIAO_LON, GAOQIAO_LAT)),
    );
    forged.kind = AlertKind::Patrol;
    forged.source = AlertSource::Person("p-huangtao".into());
    forged.rule = "[点此处理](https://evil.example/x)".into();
    forged.label = None;
    forged.score = None;
    forged.track = None;
    let forged_raw = serde_json::to_vec(&forged).unwrap();
    assert_eq!(
        publish_and_reason(&site, SITE, forged_raw.clone()).await,
        NOT_AUTHORIZED,
        "a site speaking for a person is refused as not authorized"
    );
    let q = quarantine(&admin).await;
    let rec = record_of(&q, &forged_raw);
    assert_eq!(rec["site"], SITE);
    assert_eq!(rec["code"], "not_authorized");
    assert!(
        rec["reason"].as_str().unwrap().contains("p-huangtao"),
        "{rec}"
    );

    // (2) A far position: filed in the site's own cell, flagged, the claim kept.
    let far = alert(SITE, 2, Severity::Major, Some((GAOQIAO_LON, GAOQIAO_LAT)));
    assert_eq!(
        publish_and_reason(&site, SITE, serde_json::to_vec(&far).unwrap()).await,
        0
    );
    let case = admin
        .wait_for(&format!("/api/v1/cases/C-{}", far.id), WAIT, |_| true)
        .await;
    assert_eq!(case["case"]["cell"]["code"], M01, "{case}");
    let flag = &case["position_untrusted"];
    assert_eq!(flag["alert"], far.id.as_str(), "{case}");
    assert_eq!(
        flag["claimed"],
        json!({"lon": GAOQIAO_LON, "lat": GAOQIAO_LAT})
    );
    assert_eq!(flag["limit_m"], 2000.0);
    assert!(flag["distance_m"].as_f64().unwrap() > 13_000.0, "{flag}");
    // The forged patrol report opened nothing, anywhere.
    let r = admin.get(&format!("/api/v1/cases/C-{}", forged.id)).await;
    assert_eq!(r.status, 404, "{:?}", r.json);
    let all = admin.get("/api/v1/cases?kind=patrol").await;
    assert_eq!(all.json["total"], 0, "{:?}", all.json);
    // A near position is believed and not flagged.
    let near = alert(SITE, 3, Severity::Major, Some((DEMO_LON, DEMO_LAT)));
    assert_eq!(
        publish_and_reason(&site, SITE, serde_json::to_vec(&near).unwrap()).await,
        0
    );
    let case = admin
        .wait_for(&format!("/api/v1/cases/C-{}", near.id), WAIT, |_| true)
        .await;
    assert!(case["position_untrusted"].is_null(), "{case}");

    // (3) Malformed payloads and another site's alert.
    let bad_json = b"{\"schema\":1,\"id\":".to_vec();
    let mut other_schema = serde_json::to_value(alert(SITE, 4, Severity::Major, None)).unwrap();
    other_schema["schema"] = json!(99);
    let other_schema = serde_json::to_vec(&other_schema).unwrap();
    let mut not_mine = alert("wd-other-002", 5, Severity::Major, None);
    not_mine.rule = "someone-elses".into();
    let not_mine = serde_json::to_vec(&not_mine).unwrap();
    assert_eq!(
        publish_and_reason(&site, SITE, bad_json.clone()).await,
        PAYLOAD_FORMAT_INVALID
    );
    assert_eq!(
        publish_and_reason(&site, SITE, other_schema.clone()).await,
        PAYLOAD_FORMAT_INVALID
    );
    assert_eq!(
        publish_and_reason(&site, SITE, not_mine.clone()).await,
        NOT_AUTHORIZED
    );
    let q = quarantine(&admin).await;
    for (raw, code, needle) in [
        (&bad_json, "malformed", "bad JSON"),
        (&other_schema, "malformed", "schema"),
        (&not_mine, "not_authorized", "wd-other-002"),
    ] {
        let rec = record_of(&q, raw);
        assert_eq!(rec["code"], code, "{rec}");
        assert!(rec["reason"].as_str().unwrap().contains(needle), "{rec}");
        assert_eq!(rec["bytes"], raw.len());
        // The raw bytes come back exactly as they arrived.
        let id = rec["id"].as_str().unwrap();
        let got = admin.get(&format!("/api/v1/quarantine/{id}/raw")).await;
        assert_eq!(got.status, 200);
        assert_eq!(
            got.headers["content-type"], "application/octet-stream",
            "{:?}",
            got.headers
        );
        assert_eq!(&got.bytes, raw);
    }
    // Newest first.
    let ids: Vec<u64> = q
        .iter()
        .map(|r| r["id"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "{ids:?}");
    // Re-ingest runs today's checks: still refused, with the reason, and kept.
    let bad_id = record_of(&q, &bad_json)["id"].as_str().unwrap().to_owned();
    let r = admin
        .post(&format!("/api/v1/quarantine/{bad_id}/reingest"), &json!({}))
        .await;
    assert_eq!(r.status, 422, "{:?}", r.json);
    assert_eq!(r.json["error"]["code"], "malformed");
    assert!(
        r.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("bad JSON")
    );
    let mine_id = record_of(&q, &not_mine)["id"].as_str().unwrap().to_owned();
    let r = admin
        .post(
            &format!("/api/v1/quarantine/{mine_id}/reingest"),
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 409, "{:?}", r.json);
    assert_eq!(r.json["error"]["code"], "not_authorized");
    let forged_id = record_of(&q, &forged_raw)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = admin
        .post(
            &format!("/api/v1/quarantine/{forged_id}/reingest"),
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 409, "{:?}", r.json);
    let q = quarantine(&admin).await;
    record_of(&q, &bad_json);
    record_of(&q, &forged_raw);
    // Delete is for good.
    let r = admin.delete(&format!("/api/v1/quarantine/{bad_id}")).await;
    assert_eq!(r.status, 204);
    let r = admin.delete(&format!("/api/v1/quarantine/{bad_id}")).await;
    assert_eq!(r.status, 404);

    // Under MQTT 3.1.1 there is no reason to give: quarantined and acknowledged.
    let v311 = Spec::new(Proto::V311, ports.mqtt, "agent-v311")
        .login(SITE, &token(SITE))
        .start();
    v311.connected(WAIT).await;
    let garbage = b"not an alert at all \x00\x01".to_vec();
    assert_eq!(publish_and_reason(&v311, SITE, garbage.clone()).await, 0);
    let q = quarantine(&admin).await;
    let rec = record_of(&q, &garbage);
    assert_eq!(rec["code"], "malformed");
    assert!(
        !rec["preview"].as_str().unwrap().contains('\u{0}'),
        "the preview is printable: {rec}"
    );

    // (4) A markdown link in the rule reaches the WeCom group escaped.
    let mut linky = alert(SITE, 6, Severity::Critical, Some((DEMO_LON, DEMO_LAT)));
    linky.rule = "[点此处理](https://evil.example/x)".into();
    assert_eq!(
        publish_and_reason(&site, SITE, serde_json::to_vec(&linky).unwrap()).await,
        0
    );
    let case_id = CaseId::for_alert(&linky.id);
    let body = hook
        .wait_for(WAIT, |b| b.to_string().contains(case_id.as_str()))
        .await
        .expect("the WeCom webhook heard the case");
    let content = body["markdown"]["content"].as_str().unwrap();
    assert!(
        !content.contains("[点此处理]") && !content.contains("](https://evil"),
        "{content}"
    );
    assert!(
        content.contains("［点此处理］（https://evil.example/x）"),
        "{content}"
    );

    // A site with a credential but no registration: refused, fixable.
    let newbie = site_v5(ports.mqtt, NEW_SITE, "agent-new");
    newbie.connected(WAIT).await;
    let fresh = alert(NEW_SITE, 7, Severity::Major, None);
    let fresh_raw = serde_json::to_vec(&fresh).unwrap();
    assert_eq!(
        publish_and_reason(&newbie, NEW_SITE, fresh_raw.clone()).await,
        NOT_AUTHORIZED
    );
    let q = quarantine(&admin).await;
    let fresh_id = record_of(&q, &fresh_raw)["id"].as_str().unwrap().to_owned();
    assert!(
        record_of(&q, &fresh_raw)["reason"]
            .as_str()
            .unwrap()
            .contains("not registered")
    );

    // Counted in /metrics.
    let metrics = reqwest::get(format!("http://127.0.0.1:{}/metrics", ports.metrics))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        format!("hub_alerts_quarantined_total{{site=\"{SITE}\",code=\"not_authorized\"}} 2"),
        format!("hub_alerts_quarantined_total{{site=\"{SITE}\",code=\"malformed\"}} 3"),
        format!("hub_alerts_quarantined_total{{site=\"{NEW_SITE}\",code=\"not_authorized\"}} 1"),
        // forged, other schema, not mine, garbage, fresh (bad JSON was deleted).
        "hub_quarantine_records 5".to_owned(),
    ] {
        assert!(metrics.contains(&line), "{line} missing in\n{metrics}");
    }
    drop((site, v311, newbie));

    // The fix: register the site, restart; the quarantine survived, and the alert now files.
    stop_hub(&mut hub).await;
    edit_config(
        &dir,
        "[commands]",
        &format!("[sites.{NEW_SITE}]\ncell = \"{M01}\"\n\n[commands]"),
    );
    let mut hub = spawn_hub(&dir.config_path, &log);
    wait_port(ports.http).await;
    let admin = Api::anonymous_at(http).logged_in("admin").await;
    let r = admin
        .post(
            &format!("/api/v1/quarantine/{fresh_id}/reingest"),
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    assert_eq!(r.json["outcome"], "stored");
    assert_eq!(r.json["alert"], fresh.id.as_str());
    let case = admin
        .wait_for(&format!("/api/v1/cases/C-{}", fresh.id), WAIT, |_| true)
        .await;
    assert_eq!(case["case"]["site"], NEW_SITE);
    assert_eq!(case["case"]["cell"]["code"], M01);
    let q = quarantine(&admin).await;
    assert!(
        !q.iter().any(|r| r["id"] == fresh_id.as_str()),
        "re-ingested, so out of the quarantine: {q:#?}"
    );
    assert_eq!(q.len(), 4, "{q:#?}");
    let r = admin
        .post(
            &format!("/api/v1/quarantine/{fresh_id}/reingest"),
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 404);
    stop_hub(&mut hub).await;
}
