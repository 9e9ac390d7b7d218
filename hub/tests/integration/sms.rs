//! SMS end to end: local servers standing in for Aliyun and Tencent Cloud that recompute each
//! provider's signature from the secret (independently of the hub's code, with the hmac and
//! sha2 crates, following the documented steps), refuse a wrong one, answer with the
//! provider's response shapes and message ids, and serve the receipt pulls; and the real hub
//! over real MQTT: a person whose roster channels include `sms` gets the case by SMS and the
//! receipt shows on the case in the API; a receipt that comes while the hub is down reaches the
//! case after its restart; a critical case nobody acknowledges goes by SMS to the people told by
//! app only, once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use common::*;
use hmac::{Hmac, KeyInit, Mac};
use hub::case::CaseId;
use hub::sms::{SmsClient, SmsConfig, SmsError, SmsProvider, SmsSecret};
use protocol::Severity;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const SECRET: &str = "provider-secret-for-tests";
const KEY_ID: &str = "LTAItestkey";
const SDK_APP_ID: &str = "1400000001";

fn hmac(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap();
    m.update(msg);
    m.finalize().into_bytes().to_vec()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// One message the fake provider accepted.
#[derive(Clone, Debug)]
struct Texted {
    id: String,
    phone: String,
    params: Value,
}

/// The fake provider: what it accepted, how many requests it refused, which ids were
/// reported.
#[derive(Default)]
struct Provider {
    texted: Mutex<Vec<Texted>>,
    refused: Mutex<u32>,
    pulled: Mutex<Vec<String>>,
    /// While set, Aliyun's receipt query finds nothing yet (the carrier has not reported).
    hold_receipts: std::sync::atomic::AtomicBool,
}

impl Provider {
    fn texted(&self) -> Vec<Texted> {
        self.texted.lock().unwrap().clone()
    }
}

/// Aliyun V3 server side: `Authorization: ACS3-HMAC-SHA256 Credential=…,SignedHeaders=…,
/// Signature=…` over method, `/`, the sorted query, the signed headers, their names and the
/// body's hash.
fn aliyun_signature_ok(method: &str, query: &str, headers: &HeaderMap, body: &[u8]) -> bool {
    let auth = header(headers, "authorization");
    let Some(rest) = auth.strip_prefix("ACS3-HMAC-SHA256 ") else {
        return false;
    };
    let fields: HashMap<&str, &str> = rest.split(',').filter_map(|f| f.split_once('=')).collect();
    if fields.get("Credential") != Some(&KEY_ID) {
        return false;
    }
    let signed = fields.get("SignedHeaders").copied().unwrap_or("");
    let names: Vec<&str> = signed.split(';').collect();
    for required in [
        "host",
        "x-acs-action",
        "x-acs-content-sha256",
        "x-acs-date",
        "x-acs-version",
    ] {
        if !names.contains(&required) {
            return false;
        }
    }
    let body_hash = hex(&Sha256::digest(body));
    if header(headers, "x-acs-content-sha256") != body_hash {
        return false;
    }
    let mut pairs: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
    pairs.sort();
    let canonical_headers: String = names
        .iter()
        .map(|n| format!("{n}:{}\n", header(headers, n).trim()))
        .collect();
    let canonical = format!(
        "{method}\n/\n{}\n{canonical_headers}\n{signed}\n{body_hash}",
        pairs.join("&")
    );
    let to_sign = format!(
        "ACS3-HMAC-SHA256\n{}",
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    fields.get("Signature") == Some(&hex(&hmac(SECRET.as_bytes(), to_sign.as_bytes())).as_str())
}

async fn aliyun_server(p: Arc<Provider>) -> std::net::SocketAddr {
    let app = axum::Router::new().route(
        "/",
        axum::routing::post(
            move |axum::extract::RawQuery(q): axum::extract::RawQuery,
                  headers: HeaderMap,
                  body: axum::body::Bytes| {
                let p = p.clone();
                async move {
                    let q = q.unwrap_or_default();
                    if !aliyun_signature_ok("POST", &q, &headers, &body) {
                        *p.refused.lock().unwrap() += 1;
                        return (
                            StatusCode::BAD_REQUEST,
                            json!({"Code": "SignatureDoesNotMatch", "Message": "Specified signature does not match our calculation.", "RequestId": "r-0"}).to_string(),
                        );
                    }
                    let params: HashMap<String, String> =
                        form_urlencoded::parse(q.as_bytes()).into_owned().collect();
                    let answer = match header(&headers, "x-acs-action") {
                        "SendSms" => {
                            let mut texted = p.texted.lock().unwrap();
                            let id = format!("900619746936498{}^0", texted.len());
                            texted.push(Texted {
                                id: id.clone(),
                                phone: params["PhoneNumbers"].clone(),
                                params: serde_json::from_str(&params["TemplateParam"]).unwrap(),
                            });
                            json!({"Code": "OK", "Message": "OK", "BizId": id, "RequestId": "r-1"})
                        }
                        "QuerySendDetails" => {
                            let id = &params["BizId"];
                            p.pulled.lock().unwrap().push(id.clone());
                            let held = p.hold_receipts.load(std::sync::atomic::Ordering::SeqCst);
                            let known = !held && p.texted.lock().unwrap().iter().any(|t| &t.id == id && t.phone == params["PhoneNumber"]);
                            assert_eq!(params["SendDate"].len(), 8, "yyyyMMdd");
                            let dtos = if known {
                                json!([{"SendStatus": 3, "ErrCode": "DELIVERED", "PhoneNum": params["PhoneNumber"], "TemplateCode": params.get("TemplateCode")}])
                            } else {
                                json!([])
                            };
                            json!({"Code": "OK", "Message": "OK", "TotalCount": dtos.as_array().unwrap().len(), "SmsSendDetailDTOs": {"SmsSendDetailDTO": dtos}, "RequestId": "r-2"})
                        }
                        other => json!({"Code": "InvalidAction.NotFound", "Message": other}),
                    };
                    (StatusCode::OK, answer.to_string())
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// Tencent TC3 server side: the key derived from `TC3`+SecretKey through the credential's
/// date (which must be the timestamp's UTC day), `sms` and `tc3_request`.
fn tencent_signature_ok(headers: &HeaderMap, body: &[u8]) -> bool {
    let auth = header(headers, "authorization");
    let Some(rest) = auth.strip_prefix("TC3-HMAC-SHA256 ") else {
        return false;
    };
    let fields: HashMap<&str, &str> = rest.split(", ").filter_map(|f| f.split_once('=')).collect();
    let cred: Vec<&str> = fields.get("Credential").unwrap_or(&"").split('/').collect();
    if cred.len() != 4 || cred[0] != KEY_ID || cred[2] != "sms" || cred[3] != "tc3_request" {
        return false;
    }
    if fields.get("SignedHeaders") != Some(&"content-type;host") {
        return false;
    }
    let ts: i64 = header(headers, "x-tc-timestamp").parse().unwrap_or(0);
    let date = chrono_free_date(ts);
    if cred[1] != date || (ts - protocol::UtcMillis::now().0 / 1000).abs() > 300 {
        return false;
    }
    let canonical = format!(
        "POST\n/\n\ncontent-type:{}\nhost:{}\n\ncontent-type;host\n{}",
        header(headers, "content-type"),
        header(headers, "host"),
        hex(&Sha256::digest(body))
    );
    let to_sign = format!(
        "TC3-HMAC-SHA256\n{ts}\n{date}/sms/tc3_request\n{}",
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    let k = hmac(format!("TC3{SECRET}").as_bytes(), date.as_bytes());
    let k = hmac(&k, b"sms");
    let k = hmac(&k, b"tc3_request");
    fields.get("Signature") == Some(&hex(&hmac(&k, to_sign.as_bytes())).as_str())
}

/// The UTC date of `ts` seconds, by counting days (no date crate in the tests either).
fn chrono_free_date(ts: i64) -> String {
    let mut days = ts.div_euclid(86_400);
    let mut year = 1970;
    loop {
        let len = if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 {
            366
        } else {
            365
        };
        if days < len {
            break;
        }
        days -= len;
        year += 1;
    }
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let months = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    let mut month = 0;
    while days >= months[month] {
        days -= months[month];
        month += 1;
    }
    format!("{year:04}-{:02}-{:02}", month + 1, days + 1)
}

async fn tencent_server(p: Arc<Provider>) -> std::net::SocketAddr {
    let app = axum::Router::new().route(
        "/",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let p = p.clone();
            async move {
                if !tencent_signature_ok(&headers, &body) {
                    *p.refused.lock().unwrap() += 1;
                    return json!({"Response": {"Error": {"Code": "AuthFailure.SignatureFailure", "Message": "The provided credentials could not be validated."}, "RequestId": "r-0"}}).to_string();
                }
                assert_eq!(header(&headers, "x-tc-version"), "2021-01-11");
                assert!(!header(&headers, "x-tc-region").is_empty());
                let req: Value = serde_json::from_slice(&body).unwrap();
                assert_eq!(req["SmsSdkAppId"], SDK_APP_ID);
                match header(&headers, "x-tc-action") {
                    "SendSms" => {
                        let mut texted = p.texted.lock().unwrap();
                        let id = format!("5000:10457106691570536578494996{:02}", texted.len());
                        let phone = req["PhoneNumberSet"][0].as_str().unwrap().to_owned();
                        texted.push(Texted {
                            id: id.clone(),
                            phone: phone.clone(),
                            params: req["TemplateParamSet"].clone(),
                        });
                        json!({"Response": {"SendStatusSet": [{"SerialNo": id, "PhoneNumber": phone, "Fee": 1, "SessionContext": "", "Code": "Ok", "Message": "send success", "IsoCode": "CN"}], "RequestId": "r-1"}}).to_string()
                    }
                    "PullSmsSendStatus" => {
                        // Each report once, as Tencent's pull does.
                        let mut pulled = p.pulled.lock().unwrap();
                        let set: Vec<Value> = p
                            .texted
                            .lock()
                            .unwrap()
                            .iter()
                            .filter(|t| !pulled.contains(&t.id))
                            .map(|t| json!({"SerialNo": t.id, "PhoneNumber": t.phone, "ReportStatus": "SUCCESS", "Description": "DELIVRD", "UserReceiveTime": "2026-12-07 12:00:00", "SessionContext": ""}))
                            .collect();
                        pulled.extend(set.iter().map(|s| s["SerialNo"].as_str().unwrap().to_owned()));
                        json!({"Response": {"PullSmsSendStatusSet": set, "RequestId": "r-2"}}).to_string()
                    }
                    other => json!({"Response": {"Error": {"Code": "InvalidAction", "Message": other}}}).to_string(),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn config(provider: SmsProvider, addr: std::net::SocketAddr) -> SmsConfig {
    let mut text = format!(
        "provider = \"{}\"\nendpoint = \"http://{addr}\"\nsign_name = \"武定网格\"\ntemplate_id = \"SMS_1\"\nkey_id = \"{KEY_ID}\"\nsecret_file = \"x\"\ntimeout_ms = 2000\n",
        provider.name()
    );
    if provider == SmsProvider::Tencent {
        text.push_str(&format!("sdk_app_id = \"{SDK_APP_ID}\"\n"));
    }
    toml::from_str(&text).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_provider_accepts_the_right_signature_and_refuses_a_wrong_one() {
    for provider in [SmsProvider::Aliyun, SmsProvider::Tencent] {
        let p = Arc::new(Provider::default());
        let addr = match provider {
            SmsProvider::Aliyun => aliyun_server(p.clone()).await,
            SmsProvider::Tencent => tencent_server(p.clone()).await,
        };
        let good = SmsClient::new(config(provider, addr), SmsSecret::new(SECRET), true).unwrap();
        let id = good
            .send("+8613800000071", "C-20261207-0001", "fall site")
            .await
            .unwrap();
        let texted = p.texted();
        assert_eq!(texted.len(), 1, "{provider:?}");
        assert_eq!(texted[0].id, id);
        match provider {
            SmsProvider::Aliyun => {
                assert_eq!(texted[0].phone, "13800000071");
                assert_eq!(
                    texted[0].params,
                    json!({"case": "C-20261207-0001", "what": "fall site"})
                );
            }
            SmsProvider::Tencent => {
                assert_eq!(texted[0].phone, "+8613800000071");
                assert_eq!(texted[0].params, json!(["C-20261207-0001", "fall site"]));
            }
        }

        let bad =
            SmsClient::new(config(provider, addr), SmsSecret::new("wrong-secret"), true).unwrap();
        let e = bad.send("13800000071", "C-1", "x").await.unwrap_err();
        let expected = match provider {
            SmsProvider::Aliyun => "SignatureDoesNotMatch",
            SmsProvider::Tencent => "AuthFailure.SignatureFailure",
        };
        assert!(
            matches!(&e, SmsError::Refused { code, .. } if code == expected),
            "{provider:?}: {e}"
        );
        assert!(!e.to_string().contains("wrong-secret"), "{e}");
        assert_eq!(*p.refused.lock().unwrap(), 1);
        assert_eq!(p.texted().len(), 1, "nothing sent on a bad signature");
    }
}

/// A hub directory whose roster is the example one with M01 staffed all day by 周桂英 and
/// 张伟, a `channels` column (`sms_people` get `sms`), and `[sms]` pointing at `addr`
/// ([`with_channels`]).
fn sms_hub(
    provider: SmsProvider,
    addr: std::net::SocketAddr,
    sms_people: &[&str],
    extra: &str,
) -> HubDir {
    let sdk = if provider == SmsProvider::Tencent {
        format!("sdk_app_id = \"{SDK_APP_ID}\"\n")
    } else {
        String::new()
    };
    let dir = hub_dir(
        EMBEDDED,
        &format!(
            "[sms]\nprovider = \"{}\"\nendpoint = \"http://{addr}\"\nsign_name = \"武定网格\"\ntemplate_id = \"SMS_1\"\nkey_id = \"{KEY_ID}\"\nsecret_file = \"sms.secret\"\n{sdk}poll_interval_s = 1\n{extra}",
            provider.name()
        ),
    );
    write_key(&dir.dir.path().join("sms.secret"), &format!("{SECRET}\n"));
    let channels: Vec<(&str, &str)> = sms_people.iter().map(|p| (*p, "sms")).collect();
    with_channels(&dir, &channels);
    dir
}

fn sms_of<'a>(ds: &'a [Value], person: &str) -> Vec<&'a Value> {
    deliveries_by(ds, "sms", person)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_who_wants_sms_gets_the_case_by_aliyun_and_the_receipt_is_on_the_case() {
    let p = Arc::new(Provider::default());
    let addr = aliyun_server(p.clone()).await;
    let dir = sms_hub(SmsProvider::Aliyun, addr, &["p-zhouguiying"], "");
    let hub = start_hub(&dir.config_path).await;
    let api = Api::login(&hub, "admin").await;
    let site = client(hub.mqtt[0].port(), "agent", SITE, &token(SITE)).await;
    let a = alert(SITE, 81, Severity::Major, Some((DEMO_LON, DEMO_LAT)));
    site.publish_alert(&a).await;
    let case = CaseId::for_alert(&a.id);

    let mut delivered = None;
    for _ in 0..200 {
        let ds = deliveries(&api, &case).await;
        if let Some(d) = sms_of(&ds, "p-zhouguiying").first()
            && d["outcome"] == "delivered"
        {
            delivered = Some(((*d).clone(), ds.clone()));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (d, ds) = delivered.expect("the SMS receipt is recorded on the case as delivered");
    let texted = p.texted();
    assert_eq!(
        texted.len(),
        1,
        "one SMS, to the one person who wants it: {texted:?}"
    );
    assert_eq!(
        texted[0].phone, "13800000071",
        "周桂英's number, national form"
    );
    assert_eq!(texted[0].params["case"], case.as_str());
    assert_eq!(
        d["reference"],
        texted[0].id.as_str(),
        "the BizId is kept: {d}"
    );
    assert!(
        p.pulled.lock().unwrap().contains(&texted[0].id),
        "found by QuerySendDetails"
    );
    // 张伟 is on duty too but left the column blank: the app only.
    assert!(sms_of(&ds, "p-zhangwei").is_empty(), "{ds:?}");
    assert!(
        ds.iter()
            .any(|d| d["channel"] == "mqtt" && d["target"]["person"] == "p-zhangwei"),
        "{ds:?}"
    );
    let count = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        (
            count(&hub.metrics.sms_sent),
            count(&hub.metrics.sms_delivered)
        ),
        (1, 1)
    );
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unacknowledged_critical_case_goes_by_tencent_sms_to_app_only_people_once() {
    let p = Arc::new(Provider::default());
    let addr = tencent_server(p.clone()).await;
    // Nobody wants SMS; the fallback comes 30 s into the case, before the 2 min ack deadline.
    let dir = sms_hub(SmsProvider::Tencent, addr, &[], "fallback_after_s = 30\n");
    let clock = TestClock::starting_now();
    let hub = start_hub_on(&dir.config_path, clock.clone()).await;
    let api = Api::login(&hub, "admin").await;
    let site = client(hub.mqtt[0].port(), "agent", SITE, &token(SITE)).await;
    let a = alert(SITE, 82, Severity::Critical, Some((DEMO_LON, DEMO_LAT)));
    site.publish_alert(&a).await;
    let case = CaseId::for_alert(&a.id);
    let mut opened = false;
    for _ in 0..100 {
        if hub.dispatch.case(&case).await.unwrap().is_some() {
            opened = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(opened, "the case opened");

    // Not yet due: two sweeps go by without an SMS.
    clock.advance(25_000);
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(p.texted().is_empty(), "{:?}", p.texted());

    clock.advance(6_000);
    let mut both = Vec::new();
    for _ in 0..200 {
        let ds = deliveries(&api, &case).await;
        let delivered = |who| sms_of(&ds, who).iter().any(|d| d["outcome"] == "delivered");
        if delivered("p-zhouguiying") && delivered("p-zhangwei") {
            both = ds;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !both.is_empty(),
        "both app-only people got the fallback SMS, receipts recorded"
    );
    let mut phones: Vec<String> = p.texted().iter().map(|t| t.phone.clone()).collect();
    phones.sort();
    assert_eq!(phones, ["+8613800000051", "+8613800000071"]);

    // Once: later sweeps, still unacknowledged, send nothing more.
    clock.advance(20_000);
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(p.texted().len(), 2, "{:?}", p.texted());
    for who in ["p-zhouguiying", "p-zhangwei"] {
        assert_eq!(sms_of(&both, who).len(), 1, "{both:?}");
    }
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_that_comes_after_a_restart_still_reaches_its_case() {
    let p = Arc::new(Provider::default());
    p.hold_receipts
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let addr = aliyun_server(p.clone()).await;
    let dir = sms_hub(SmsProvider::Aliyun, addr, &["p-zhouguiying"], "");
    let hub = start_hub(&dir.config_path).await;
    let api = Api::login(&hub, "admin").await;
    let site = client(hub.mqtt[0].port(), "agent", SITE, &token(SITE)).await;
    let a = alert(SITE, 83, Severity::Major, Some((DEMO_LON, DEMO_LAT)));
    site.publish_alert(&a).await;
    let case = CaseId::for_alert(&a.id);
    // Sent, and asked after at least once while the carrier has nothing to say.
    let mut sent = None;
    for _ in 0..200 {
        let ds = deliveries(&api, &case).await;
        if let Some(d) = sms_of(&ds, "p-zhouguiying").first()
            && d["reference"].is_string()
            && !p.pulled.lock().unwrap().is_empty()
        {
            sent = Some((*d).clone());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sent = sent.expect("the SMS is sent and its receipt asked for");
    assert_eq!(sent["outcome"], "pending", "{sent}");
    drop(site);
    hub.stop().await;

    // The carrier reports while the hub is down; the restarted hub asks again.
    p.hold_receipts
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let hub = start_hub(&dir.config_path).await;
    let api = Api::login(&hub, "admin").await;
    let mut after = None;
    for _ in 0..200 {
        let ds = deliveries(&api, &case).await;
        if let Some(d) = sms_of(&ds, "p-zhouguiying").first()
            && d["outcome"] == "delivered"
        {
            after = Some((*d).clone());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = after.expect("the receipt pulled after the restart is recorded on the case");
    assert_eq!(after["reference"], sent["reference"], "{after}");
    assert_eq!(p.texted().len(), 1, "not sent again: {:?}", p.texted());
    hub.stop().await;
}
