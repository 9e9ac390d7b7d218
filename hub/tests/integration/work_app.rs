//! Work-app messages end to end: a local server standing in for WeCom (企业微信) that hands out
//! access tokens for the right corpid and Secret only, finds members by mobile, takes
//! `message/send` only with a live token and the app's agentid, and once answers 42001 (token
//! expired); and the real hub over real MQTT: a person whose roster channels include
//! `work_app` gets a text card linking to the case, recorded on the case as delivered with
//! WeCom's msgid; one who is not a member of the organisation is recorded failed with WeCom's
//! code; people without the channel get none.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use hub::case::CaseId;
use protocol::Severity;
use serde_json::{Value, json};

use crate::common::*;

const CORP: &str = "ww0a1b2c3d4e";
const SECRET: &str = "wecom-app-secret-for-tests";
const AGENT: u64 = 1_000_002;

/// What the fake WeCom saw and holds.
#[derive(Default)]
struct WeCom {
    /// Tokens handed out, in order; only the last one is live.
    tokens: Mutex<Vec<String>>,
    /// Refuse the next `message/send` with 42001 (token expired), once.
    expire_next_send: std::sync::atomic::AtomicBool,
    /// Mobiles asked for.
    lookups: Mutex<Vec<String>>,
    /// Messages accepted.
    sent: Mutex<Vec<Value>>,
    /// Requests refused for a bad Secret or token.
    refused: Mutex<u32>,
}

impl WeCom {
    fn live(&self, token: Option<&String>) -> bool {
        token.is_some() && self.tokens.lock().unwrap().last() == token
    }
}

async fn wecom(w: Arc<WeCom>) -> std::net::SocketAddr {
    let app = axum::Router::new()
        .route(
            "/cgi-bin/gettoken",
            axum::routing::get(
                |State(w): State<Arc<WeCom>>, Query(q): Query<HashMap<String, String>>| async move {
                    if q.get("corpid").map(String::as_str) != Some(CORP)
                        || q.get("corpsecret").map(String::as_str) != Some(SECRET)
                    {
                        *w.refused.lock().unwrap() += 1;
                        return axum::Json(json!({"errcode": 40001, "errmsg": "invalid credential"}));
                    }
                    let mut tokens = w.tokens.lock().unwrap();
                    let t = format!("tok-{}", tokens.len());
                    tokens.push(t.clone());
                    axum::Json(json!({"errcode": 0, "errmsg": "ok", "access_token": t, "expires_in": 7200}))
                },
            ),
        )
        .route(
            "/cgi-bin/user/getuserid",
            axum::routing::post(
                |State(w): State<Arc<WeCom>>,
                 Query(q): Query<HashMap<String, String>>,
                 axum::Json(body): axum::Json<Value>| async move {
                    if !w.live(q.get("access_token")) {
                        *w.refused.lock().unwrap() += 1;
                        return axum::Json(json!({"errcode": 40014, "errmsg": "invalid access_token"}));
                    }
                    let mobile = body["mobile"].as_str().unwrap_or_default().to_owned();
                    w.lookups.lock().unwrap().push(mobile.clone());
                    // 周桂英 is a member; 张伟 is not in the organisation.
                    if mobile == "13800000071" {
                        axum::Json(json!({"errcode": 0, "errmsg": "ok", "userid": "ZhouGuiYing"}))
                    } else {
                        axum::Json(json!({"errcode": 46004, "errmsg": "user no exist"}))
                    }
                },
            ),
        )
        .route(
            "/cgi-bin/message/send",
            axum::routing::post(
                |State(w): State<Arc<WeCom>>,
                 Query(q): Query<HashMap<String, String>>,
                 axum::Json(body): axum::Json<Value>| async move {
                    if w.expire_next_send.swap(false, std::sync::atomic::Ordering::SeqCst) {
                        return axum::Json(json!({"errcode": 42001, "errmsg": "access_token expired"}));
                    }
                    if !w.live(q.get("access_token")) {
                        *w.refused.lock().unwrap() += 1;
                        return axum::Json(json!({"errcode": 40014, "errmsg": "invalid access_token"}));
                    }
                    assert_eq!(body["agentid"], AGENT, "{body}");
                    let mut sent = w.sent.lock().unwrap();
                    sent.push(body);
                    axum::Json(json!({"errcode": 0, "errmsg": "ok", "invaliduser": "", "msgid": format!("msg-{}", sent.len())}))
                },
            ),
        )
        .with_state(w);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_who_wants_the_work_app_gets_a_card_and_its_outcome_is_on_the_case() {
    let w = Arc::new(WeCom::default());
    w.expire_next_send
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let addr = wecom(w.clone()).await;
    let dir = hub_dir(
        EMBEDDED,
        &format!(
            "[push]\ndashboard_url = \"https://grid.example.cn\"\n\
             [work_app]\nkind = \"wecom\"\nendpoint = \"http://{addr}\"\ncorp_id = \"{CORP}\"\n\
             agent_id = {AGENT}\nsecret_file = \"wecom.secret\"\n"
        ),
    );
    write_key(&dir.dir.path().join("wecom.secret"), &format!("{SECRET}\n"));
    // 周桂英 and 张伟 both want the work app; 张伟 is not in the organisation.
    with_channels(
        &dir,
        &[("p-zhouguiying", "work_app"), ("p-zhangwei", "work_app")],
    );
    let hub = start_hub(&dir.config_path).await;
    let api = Api::login(&hub, "admin").await;
    let site = client(hub.mqtt[0].port(), "agent", SITE, &token(SITE)).await;
    let a = alert(SITE, 91, Severity::Major, Some((DEMO_LON, DEMO_LAT)));
    site.publish_alert(&a).await;
    let case = CaseId::for_alert(&a.id);

    let mut settled = Vec::new();
    for _ in 0..200 {
        let ds = deliveries(&api, &case).await;
        let done = |who| {
            deliveries_by(&ds, "work_app", who)
                .first()
                .is_some_and(|d| d["outcome"] != "pending")
        };
        if done("p-zhouguiying") && done("p-zhangwei") {
            settled = ds;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!settled.is_empty(), "both work-app outcomes are recorded");
    let zhou = deliveries_by(&settled, "work_app", "p-zhouguiying")[0];
    assert_eq!(zhou["outcome"], "delivered", "{zhou}");
    assert_eq!(zhou["reference"], "msg-1", "WeCom's msgid is kept: {zhou}");
    let zhang = deliveries_by(&settled, "work_app", "p-zhangwei")[0];
    assert_eq!(zhang["outcome"], "failed", "{zhang}");
    assert!(
        zhang["error"]
            .as_str()
            .unwrap_or_default()
            .contains("46004"),
        "WeCom's code is on the case: {zhang}"
    );

    let sent = w.sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 1, "one card, to the one member: {sent:?}");
    assert_eq!(sent[0]["touser"], "ZhouGuiYing");
    assert_eq!(sent[0]["msgtype"], "textcard");
    let card = &sent[0]["textcard"];
    assert!(
        card["description"]
            .as_str()
            .unwrap()
            .contains("近城一网格第1微网格"),
        "the card names the cell's path: {card}"
    );
    assert_eq!(
        card["url"],
        format!("https://grid.example.cn/m#case={case}"),
        "the card opens the case on the phone page: {card}"
    );
    // The expired token was replaced once: two tokens, the send retried on the new one.
    assert_eq!(w.tokens.lock().unwrap().len(), 2);
    assert_eq!(
        *w.refused.lock().unwrap(),
        0,
        "no request with a bad Secret or token"
    );
    let mut lookups = w.lookups.lock().unwrap().clone();
    lookups.sort();
    assert_eq!(lookups, ["13800000051", "13800000071"], "found by mobile");
    // The Secret is nowhere in what the API shows.
    let detail = api.get(&format!("/api/v1/cases/{case}")).await;
    assert!(!detail.json.to_string().contains(SECRET));
    let count = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        (
            count(&hub.metrics.work_app_sent),
            count(&hub.metrics.work_app_failed)
        ),
        (1, 1)
    );
    hub.stop().await;
}
