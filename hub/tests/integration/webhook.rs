//! The webhook sender against a real local HTTP server that plays WeCom, DingTalk, Feishu and a
//! generic receiver: it checks signatures the way the services do (recomputing them from the
//! secret, refusing timestamps more than an hour off), answers HTTP 200 with an error code when
//! it refuses, and injects faults (500s, rate-limit codes, answers later than the timeout).
//!
//! The signatures are recomputed here with hmac/sha2/base64 directly, not with
//! `hub::webhook::sign`, so a mistake there cannot hide in both places.

// The server and helpers outside #[test] fns are test code too; a failed unwrap is a failed
// test.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use hub::webhook::{
    DeliveryError, Message, Outcome, ProxyPolicy, Refusal, WebhookConfig, WebhookKind,
    WebhookSender,
};
use protocol::Severity;
use protocol::time::UtcMillis;
use serde_json::{Value, json};
use sha2::Sha256;

const WECOM_KEY: &str = "wecom-key-123";
const DINGTALK_TOKEN: &str = "ding-token-456";
const DINGTALK_SECRET: &str = "SECdingtalk-secret-0123456789";
const FEISHU_SECRET: &str = "feishu-secret-abc";
const GENERIC_SECRET: &str = "generic-secret-xyz";
const HOUR_MS: i64 = 3_600_000;

// ---------------------------------------------------------------------------------------------
// The fake services

/// Faults the server injects, by request number (1-based, all routes together).
#[derive(Clone, Debug, Default)]
struct Faults {
    /// The first N requests answer HTTP 500 (after the signature check).
    fail_first: u32,
    /// The first N requests get the service's rate-limit code (after any 500s).
    throttle_first: u32,
    /// The first N requests are answered only after `delay`.
    delay_first: u32,
    delay: Duration,
    /// DingTalk's custom keyword (自定义关键词); the message must contain it.
    keyword: &'static str,
}

#[derive(Debug)]
struct Received {
    query: String,
    headers: HeaderMap,
    body: Bytes,
}

#[derive(Debug)]
struct Shared {
    faults: Faults,
    hits: AtomicU32,
    received: Mutex<Vec<Received>>,
}

impl Shared {
    /// Counts and records a request, waits if it is to be late; its number.
    async fn arrive(&self, uri: &Uri, headers: &HeaderMap, body: &Bytes) -> u32 {
        let n = self.hits.fetch_add(1, Ordering::SeqCst) + 1;
        self.received.lock().unwrap().push(Received {
            query: uri.query().unwrap_or_default().to_string(),
            headers: headers.clone(),
            body: body.clone(),
        });
        if n <= self.faults.delay_first {
            tokio::time::sleep(self.faults.delay).await;
        }
        n
    }

    /// The injected 500 or rate-limit answer for request `n`, if any.
    fn fault(&self, n: u32, rate_limited: Value) -> Option<Response> {
        if n <= self.faults.fail_first {
            return Some((StatusCode::INTERNAL_SERVER_ERROR, "upstream exploded").into_response());
        }
        if n <= self.faults.fail_first + self.faults.throttle_first {
            return Some(answer(rate_limited));
        }
        None
    }
}

fn answer(body: Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap();
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| percent_decode(v))
    })
}

/// What a server does to a query value (`+` is a space in a query, `%2B` a plus).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// 企业微信群机器人: `?key=`, no signature, `errcode` answers; 45009 when throttled.
async fn wecom(
    State(s): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let n = s.arrive(&uri, &headers, &body).await;
    if query_param(uri.query().unwrap_or_default(), "key").as_deref() != Some(WECOM_KEY) {
        return answer(json!({"errcode": 93000, "errmsg": "invalid webhook url"}));
    }
    if let Some(fault) = s.fault(
        n,
        json!({"errcode": 45009, "errmsg": "api freq out of limit"}),
    ) {
        return fault;
    }
    let Ok(msg) = serde_json::from_slice::<Value>(&body) else {
        return answer(json!({"errcode": 40058, "errmsg": "invalid json"}));
    };
    let content = match msg["msgtype"].as_str() {
        Some("markdown") => msg["markdown"]["content"].as_str(),
        Some("text") => msg["text"]["content"].as_str(),
        _ => return answer(json!({"errcode": 40008, "errmsg": "invalid message type"})),
    };
    if !is_json(&headers) || content.is_none_or(str::is_empty) {
        return answer(json!({"errcode": 44004, "errmsg": "empty content"}));
    }
    answer(json!({"errcode": 0, "errmsg": "ok"}))
}

/// 钉钉自定义机器人 with 加签 and a custom keyword.
async fn dingtalk(
    State(s): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let n = s.arrive(&uri, &headers, &body).await;
    let query = uri.query().unwrap_or_default();
    if query_param(query, "access_token").as_deref() != Some(DINGTALK_TOKEN) {
        return answer(json!({"errcode": 300001, "errmsg": "token is not exist"}));
    }
    let refuse = |m: &str| answer(json!({"errcode": 310000, "errmsg": m}));
    let (Some(timestamp), Some(sign)) =
        (query_param(query, "timestamp"), query_param(query, "sign"))
    else {
        return refuse(
            "sign not match, more: [https://ding-doc.dingtalk.com/doc#/serverapi2/qf2nxq]",
        );
    };
    let Ok(ts) = timestamp.parse::<i64>() else {
        return refuse("invalid timestamp");
    };
    if (UtcMillis::now().0 - ts).abs() > HOUR_MS {
        return refuse("invalid timestamp");
    }
    let expected = STANDARD.encode(hmac_sha256(
        DINGTALK_SECRET.as_bytes(),
        format!("{ts}\n{DINGTALK_SECRET}").as_bytes(),
    ));
    if sign != expected {
        return refuse(
            "sign not match, more: [https://ding-doc.dingtalk.com/doc#/serverapi2/qf2nxq]",
        );
    }
    if let Some(fault) = s.fault(
        n,
        json!({"errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute"}),
    ) {
        return fault;
    }
    let Ok(msg) = serde_json::from_slice::<Value>(&body) else {
        return answer(json!({"errcode": 40035, "errmsg": "缺少参数 json"}));
    };
    let (Some("markdown"), Some(title), Some(text)) = (
        msg["msgtype"].as_str(),
        msg["markdown"]["title"].as_str(),
        msg["markdown"]["text"].as_str(),
    ) else {
        return answer(json!({"errcode": 40035, "errmsg": "缺少参数 markdown"}));
    };
    if !is_json(&headers) || title.is_empty() || text.is_empty() {
        return answer(json!({"errcode": 40035, "errmsg": "缺少参数"}));
    }
    if !(title.contains(s.faults.keyword) || text.contains(s.faults.keyword)) {
        return refuse("keywords not in content, more: [https://ding-doc.dingtalk.com/doc]");
    }
    answer(json!({"errcode": 0, "errmsg": "ok"}))
}

/// 飞书自定义机器人 with 签名校验: `timestamp` and `sign` in the body.
async fn feishu(
    State(s): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let n = s.arrive(&uri, &headers, &body).await;
    let Ok(msg) = serde_json::from_slice::<Value>(&body) else {
        return answer(json!({"code": 9499, "msg": "Bad Request", "data": {}}));
    };
    let sign_fail = || {
        answer(json!({
            "code": 19021,
            "msg": "sign match fail or timestamp is not within one hour from current time",
            "data": {},
        }))
    };
    let (Some(timestamp), Some(sign)) = (msg["timestamp"].as_str(), msg["sign"].as_str()) else {
        return sign_fail();
    };
    let Ok(ts) = timestamp.parse::<i64>() else {
        return sign_fail();
    };
    if (UtcMillis::now().0 / 1000 - ts).abs() > HOUR_MS / 1000 {
        return sign_fail();
    }
    let key = format!("{ts}\n{FEISHU_SECRET}");
    if sign != STANDARD.encode(hmac_sha256(key.as_bytes(), b"")) {
        return sign_fail();
    }
    if let Some(fault) = s.fault(n, json!({"code": 11232, "msg": "frequency limited psm"})) {
        return fault;
    }
    if msg["msg_type"] != "text" || msg["content"]["text"].as_str().is_none_or(str::is_empty) {
        return answer(json!({"code": 9499, "msg": "Bad Request", "data": {}}));
    }
    answer(json!({
        "StatusCode": 0, "StatusMessage": "success", "code": 0, "data": {}, "msg": "success",
    }))
}

/// Our own receiver: `X-Signature: sha256=<hex>` over the raw body; 204 when accepted.
async fn generic(
    State(s): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let n = s.arrive(&uri, &headers, &body).await;
    let expected: String = hmac_sha256(GENERIC_SECRET.as_bytes(), &body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let given = headers.get("x-signature").and_then(|v| v.to_str().ok());
    if given != Some(format!("sha256={expected}").as_str()) {
        return (StatusCode::UNAUTHORIZED, "bad signature").into_response();
    }
    if let Some(fault) = s.fault(n, json!({})) {
        return fault;
    }
    match serde_json::from_slice::<Value>(&body) {
        Ok(msg) if msg["schema_version"] == 1 => StatusCode::NO_CONTENT.into_response(),
        _ => (StatusCode::BAD_REQUEST, "not our schema").into_response(),
    }
}

/// A running fake server on 127.0.0.1; stops with the test's runtime.
struct Server {
    base: String,
    shared: Arc<Shared>,
}

impl Server {
    async fn start(faults: Faults) -> Self {
        let shared = Arc::new(Shared {
            faults: Faults {
                keyword: if faults.keyword.is_empty() {
                    "网格"
                } else {
                    faults.keyword
                },
                ..faults
            },
            hits: AtomicU32::new(0),
            received: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route("/cgi-bin/webhook/send", post(wecom))
            .route("/robot/send", post(dingtalk))
            .route("/open-apis/bot/v2/hook/{id}", post(feishu))
            .route("/generic", post(generic))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { base, shared }
    }

    fn hits(&self) -> u32 {
        self.shared.hits.load(Ordering::SeqCst)
    }

    fn bodies(&self) -> Vec<Value> {
        let received = self.shared.received.lock().unwrap();
        received
            .iter()
            .map(|r| serde_json::from_slice(&r.body).unwrap())
            .collect()
    }

    fn headers(&self) -> Vec<HeaderMap> {
        let received = self.shared.received.lock().unwrap();
        received.iter().map(|r| r.headers.clone()).collect()
    }

    fn queries(&self) -> Vec<String> {
        let received = self.shared.received.lock().unwrap();
        received.iter().map(|r| r.query.clone()).collect()
    }

    fn wecom(&self) -> WebhookConfig {
        let url = format!("{}/cgi-bin/webhook/send?key={WECOM_KEY}", self.base);
        config(WebhookKind::WeCom, url, None)
    }

    fn dingtalk(&self, secret: &str) -> WebhookConfig {
        let url = format!("{}/robot/send?access_token={DINGTALK_TOKEN}", self.base);
        config(WebhookKind::DingTalk, url, Some(secret))
    }

    fn feishu(&self, secret: &str) -> WebhookConfig {
        let url = format!("{}/open-apis/bot/v2/hook/0f8e-hook", self.base);
        config(WebhookKind::Feishu, url, Some(secret))
    }

    fn generic(&self, secret: &str) -> WebhookConfig {
        config(
            WebhookKind::Generic,
            format!("{}/generic", self.base),
            Some(secret),
        )
    }
}

/// A validated config with short timeouts and back-offs, so the tests run in milliseconds.
fn config(kind: WebhookKind, url: String, secret: Option<&str>) -> WebhookConfig {
    let mut cfg = WebhookConfig::new("test-bot", kind, url);
    cfg.secret = secret.map(str::to_string);
    cfg.timeout_ms = 2_000;
    cfg.max_attempts = 4;
    cfg.backoff_base_ms = 10;
    cfg.backoff_cap_ms = 40;
    cfg.validate().unwrap();
    cfg
}

fn message() -> Message {
    Message {
        case_id: "AJ-20261122-0042".into(),
        title: "东门有人翻越围墙".into(),
        text: "摄像头 3 号在东门围墙处检测到人员翻越，请网格员到场核实。".into(),
        severity: Severity::Major,
        cell_path: "城关镇 / 东门社区 / 第三网格".into(),
        url: Some("https://hub.example/cases/AJ-20261122-0042".into()),
        mention_phones: vec!["13800000001".into()],
        at: UtcMillis::now(),
    }
}

fn sender() -> WebhookSender {
    WebhookSender::new(ProxyPolicy::Direct).unwrap()
}

fn refusal(outcome: &Outcome) -> Option<Refusal> {
    match outcome {
        Outcome::Failed {
            error: DeliveryError::Refused { reason, .. },
            ..
        } => Some(*reason),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Signatures and bodies, checked by the fake services

#[tokio::test]
async fn dingtalk_webhook_accepts_a_correctly_signed_markdown_message_with_mentions() {
    let server = Server::start(Faults::default()).await;
    let mut cfg = server.dingtalk(DINGTALK_SECRET);
    cfg.mention_phones = true;
    let report = sender().send(&cfg, &message()).await;
    assert_eq!(report.outcome, Outcome::Delivered, "{report:?}");
    assert_eq!((report.attempts, report.last_status), (1, Some(200)));
    let body = &server.bodies()[0];
    assert_eq!(
        body["at"],
        json!({"atMobiles": ["13800000001"], "isAtAll": false})
    );
    assert!(
        body["markdown"]["text"]
            .as_str()
            .unwrap()
            .contains("@13800000001")
    );
}

#[tokio::test]
async fn dingtalk_webhook_with_a_wrong_secret_is_refused_once_and_not_retried() {
    let server = Server::start(Faults::default()).await;
    let cfg = server.dingtalk("SECnot-the-right-one");
    let report = sender().send(&cfg, &message()).await;
    assert_eq!(refusal(&report.outcome), Some(Refusal::BadSignature));
    assert!(matches!(
        report.outcome,
        Outcome::Failed {
            retryable: false,
            ..
        }
    ));
    // HTTP 200 and still a failure: the code in the body decides.
    assert_eq!((report.attempts, report.last_status), (1, Some(200)));
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn dingtalk_webhook_without_the_custom_keyword_is_a_permanent_failure() {
    let server = Server::start(Faults {
        keyword: "消防",
        ..Faults::default()
    })
    .await;
    let report = sender()
        .send(&server.dingtalk(DINGTALK_SECRET), &message())
        .await;
    assert_eq!(refusal(&report.outcome), Some(Refusal::Keyword));
    assert_eq!(report.attempts, 1);
}

#[tokio::test]
async fn feishu_webhook_accepts_a_correctly_signed_text_message() {
    let server = Server::start(Faults::default()).await;
    let report = sender()
        .send(&server.feishu(FEISHU_SECRET), &message())
        .await;
    assert_eq!(report.outcome, Outcome::Delivered, "{report:?}");
    assert_eq!(report.attempts, 1);
    let body = &server.bodies()[0];
    assert_eq!(body["msg_type"], "text");
    assert!(body["timestamp"].is_string());
}

#[tokio::test]
async fn feishu_webhook_refuses_a_signature_from_a_clock_two_hours_behind() {
    fn two_hours_ago() -> i64 {
        UtcMillis::now().0 - 2 * HOUR_MS
    }
    let server = Server::start(Faults::default()).await;
    let report = sender()
        .with_clock(two_hours_ago)
        .send(&server.feishu(FEISHU_SECRET), &message())
        .await;
    assert_eq!(refusal(&report.outcome), Some(Refusal::BadSignature));
    assert_eq!(report.attempts, 1);
}

#[tokio::test]
async fn feishu_webhook_with_a_wrong_secret_is_refused() {
    let server = Server::start(Faults::default()).await;
    let report = sender()
        .send(&server.feishu("not-the-secret"), &message())
        .await;
    let Outcome::Failed { error, retryable } = &report.outcome else {
        panic!("delivered with a wrong secret");
    };
    assert!(!retryable);
    assert!(
        matches!(error, DeliveryError::Refused { code: 19021, .. }),
        "{error}"
    );
}

#[tokio::test]
async fn wecom_webhook_mentions_by_phone_in_a_text_message() {
    let server = Server::start(Faults::default()).await;
    let mut cfg = server.wecom();
    cfg.mention_phones = true;
    let report = sender().send(&cfg, &message()).await;
    assert_eq!(report.outcome, Outcome::Delivered, "{report:?}");
    let body = &server.bodies()[0];
    assert_eq!(body["msgtype"], "text");
    assert_eq!(
        body["text"]["mentioned_mobile_list"],
        json!(["13800000001"])
    );
}

#[tokio::test]
async fn wecom_webhook_with_a_wrong_key_is_a_permanent_failure() {
    let server = Server::start(Faults::default()).await;
    let mut cfg = server.wecom();
    cfg.url = cfg.url.replace(WECOM_KEY, "revoked");
    let report = sender().send(&cfg, &message()).await;
    assert_eq!(refusal(&report.outcome), Some(Refusal::BadToken));
    assert_eq!(report.attempts, 1);
}

#[tokio::test]
async fn generic_webhook_is_signed_over_the_exact_bytes_sent() {
    let server = Server::start(Faults::default()).await;
    let report = sender()
        .send(&server.generic(GENERIC_SECRET), &message())
        .await;
    assert_eq!(report.outcome, Outcome::Delivered, "{report:?}");
    assert_eq!(report.last_status, Some(204));
    let body = &server.bodies()[0];
    assert_eq!(body["case_id"], "AJ-20261122-0042");
    assert_eq!(body["severity"], "major");
    let headers = &server.headers()[0];
    assert_eq!(
        headers[header::CONTENT_TYPE],
        "application/json; charset=utf-8"
    );
    assert!(
        headers[header::USER_AGENT]
            .to_str()
            .unwrap()
            .starts_with("hub/")
    );
}

#[tokio::test]
async fn generic_webhook_rejecting_the_signature_with_401_is_not_retried() {
    let server = Server::start(Faults::default()).await;
    let report = sender().send(&server.generic("wrong"), &message()).await;
    assert_eq!(report.attempts, 1);
    assert_eq!(report.last_status, Some(401));
    assert!(matches!(
        report.outcome,
        Outcome::Failed {
            error: DeliveryError::Status { status: 401, .. },
            retryable: false
        }
    ));
}

#[tokio::test]
async fn webhook_to_a_missing_path_is_a_permanent_404() {
    let server = Server::start(Faults::default()).await;
    let mut cfg = server.generic(GENERIC_SECRET);
    cfg.url = format!("{}/nowhere", server.base);
    let report = sender().send(&cfg, &message()).await;
    assert_eq!((report.attempts, report.last_status), (1, Some(404)));
    assert!(!report.is_delivered());
}

// ---------------------------------------------------------------------------------------------
// Retries

#[tokio::test]
async fn webhook_retries_server_errors_and_reports_n_plus_one_attempts() {
    let server = Server::start(Faults {
        fail_first: 2,
        ..Faults::default()
    })
    .await;
    let report = sender()
        .send(&server.dingtalk(DINGTALK_SECRET), &message())
        .await;
    assert_eq!(report.outcome, Outcome::Delivered, "{report:?}");
    assert_eq!((report.attempts, report.last_status), (3, Some(200)));
    assert_eq!(server.hits(), 3);
    // Every attempt was signed afresh (the server checked each signature before failing it).
    let stamps: Vec<i64> = server
        .queries()
        .iter()
        .map(|q| query_param(q, "timestamp").unwrap().parse().unwrap())
        .collect();
    assert!(stamps.windows(2).all(|w| w[0] <= w[1]), "{stamps:?}");
}

#[tokio::test]
async fn webhook_gives_up_after_max_attempts_of_server_errors_and_says_retryable() {
    let server = Server::start(Faults {
        fail_first: 100,
        ..Faults::default()
    })
    .await;
    let mut cfg = server.wecom();
    cfg.max_attempts = 3;
    let report = sender().send(&cfg, &message()).await;
    assert_eq!((report.attempts, report.last_status), (3, Some(500)));
    assert_eq!(
        report.outcome,
        Outcome::Failed {
            error: DeliveryError::Status {
                status: 500,
                body: "upstream exploded".into()
            },
            retryable: true
        }
    );
    assert_eq!(server.hits(), 3);
}

#[tokio::test]
async fn webhook_retries_a_rate_limit_errcode_in_an_http_200() {
    let server = Server::start(Faults {
        throttle_first: 1,
        ..Faults::default()
    })
    .await;
    let report = sender().send(&server.wecom(), &message()).await;
    assert_eq!(report.outcome, Outcome::Delivered, "{report:?}");
    assert_eq!(report.attempts, 2);
}

#[tokio::test]
async fn feishu_webhook_retries_its_frequency_limit_code() {
    let server = Server::start(Faults {
        throttle_first: 2,
        ..Faults::default()
    })
    .await;
    let report = sender()
        .send(&server.feishu(FEISHU_SECRET), &message())
        .await;
    assert_eq!(report.outcome, Outcome::Delivered, "{report:?}");
    assert_eq!(report.attempts, 3);
}

#[tokio::test]
async fn webhook_attempt_that_times_out_is_counted_and_retried() {
    let server = Server::start(Faults {
        delay_first: 1,
        delay: Duration::from_secs(10),
        ..Faults::default()
    })
    .await;
    let mut cfg = server.dingtalk(DINGTALK_SECRET);
    // Long enough that the second, prompt answer fits even on a loaded machine.
    cfg.timeout_ms = 1_000;
    let report = sender().send(&cfg, &message()).await;
    assert_eq!(report.outcome, Outcome::Delivered, "{report:?}");
    assert_eq!((report.attempts, report.last_status), (2, Some(200)));
    assert!(report.elapsed_ms >= 1_000, "{report:?}");
    assert!(
        report.elapsed_ms < 10_000,
        "waited for the late answer: {report:?}"
    );
}

#[tokio::test]
async fn webhook_that_never_answers_in_time_fails_retryably_after_max_attempts() {
    let server = Server::start(Faults {
        delay_first: 100,
        delay: Duration::from_secs(3),
        ..Faults::default()
    })
    .await;
    let mut cfg = server.wecom();
    cfg.timeout_ms = 200;
    cfg.max_attempts = 2;
    let report = sender().send(&cfg, &message()).await;
    assert_eq!(
        report.outcome,
        Outcome::Failed {
            error: DeliveryError::Timeout { after_ms: 200 },
            retryable: true
        }
    );
    assert_eq!((report.attempts, report.last_status), (2, None));
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn webhook_with_nobody_listening_is_a_retryable_transport_error() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let mut cfg = config(
        WebhookKind::Generic,
        format!("http://{addr}/generic?token=SECRET-IN-URL"),
        None,
    );
    cfg.max_attempts = 2;
    let report = sender().send(&cfg, &message()).await;
    let Outcome::Failed { error, retryable } = &report.outcome else {
        panic!("delivered to nobody");
    };
    assert!(retryable);
    assert!(
        matches!(error, DeliveryError::Transport { .. }),
        "{error:?}"
    );
    // The URL's query (a bot's key, in real use) stays out of the error.
    assert!(!error.to_string().contains("SECRET-IN-URL"), "{error}");
    assert_eq!((report.attempts, report.last_status), (2, None));
}

// ---------------------------------------------------------------------------------------------
// TLS

#[tokio::test]
async fn https_webhook_speaks_tls_through_ring_and_refuses_an_untrusted_certificate() {
    // A TLS server with a self-signed certificate: the handshake runs (rustls with the ring
    // provider the sender installed), and the system's trust store rejects the certificate.
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], key)
            .unwrap(),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // What the server's handshakes ended with: the client's alert, when it spoke TLS.
    let ends = Arc::new(Mutex::new(Vec::new()));
    let seen = ends.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut sock) = stream else { break };
            sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut conn = rustls::ServerConnection::new(tls.clone()).unwrap();
            let end = match conn.complete_io(&mut sock) {
                Ok(_) => "handshake completed".to_string(),
                Err(e) => e.to_string(),
            };
            seen.lock().unwrap().push(end);
        }
    });

    let mut cfg = config(
        WebhookKind::Generic,
        format!("https://{addr}/generic"),
        Some(GENERIC_SECRET),
    );
    cfg.max_attempts = 1;
    let report = sender().send(&cfg, &message()).await;
    let Outcome::Failed {
        error: DeliveryError::Transport { detail },
        ..
    } = &report.outcome
    else {
        panic!("expected a TLS failure: {report:?}");
    };
    assert!(
        detail.to_ascii_lowercase().contains("certificate"),
        "{detail}"
    );
    // The client refused the certificate with a TLS alert, so the handshake really ran. The
    // server thread may read that alert a moment after the client gave up.
    for _ in 0..200 {
        if !ends.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let ends = ends.lock().unwrap().clone();
    assert!(ends.iter().any(|e| e.contains("alert")), "{ends:?}");
}
