//! The OpenAPI document (generated from the handlers' types, `hub::api::openapi_json`) against
//! the real API: the document is well formed and lists exactly the routes the router serves, and every response of a hub
//! filled over real MQTT (alerts with and without snapshots, tag sightings, transitions,
//! watchlist, patrol reports, statistics, the live feed, errors) matches the schema documented
//! for its path, method and status. At the end, every documented status was seen or is an
//! error response.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::api_util;
use crate::common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use api_util::*;
use common::*;
use serde_json::{Value, json};

/// Every `$ref` in `v`, with where it is.
fn refs(v: &Value, at: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == "$ref"
                    && let Some(s) = x.as_str()
                {
                    out.push((at.to_owned(), s.to_owned()));
                }
                refs(x, &format!("{at}/{k}"), out);
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                refs(x, &format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// Records a failed check instead of panicking, so one run lists every difference.
macro_rules! soft {
    ($oas:expr, $cond:expr $(,)?) => {
        if !$cond {
            $oas.violation(format!("line {}: {}", line!(), stringify!($cond)));
        }
    };
    ($oas:expr, $cond:expr, $($fmt:tt)+) => {
        if !$cond {
            $oas.violation(format!("line {}: {}: {}", line!(), stringify!($cond), format!($($fmt)+)));
        }
    };
}

/// `soft!` for equality, showing both sides.
macro_rules! soft_eq {
    ($oas:expr, $a:expr, $b:expr $(,)?) => {
        if !($a == $b) {
            $oas.violation(format!(
                "line {}: {} is {:?}, expected {:?}",
                line!(), stringify!($a), $a, $b
            ));
        }
    };
    ($oas:expr, $a:expr, $b:expr, $($fmt:tt)+) => {
        if !($a == $b) {
            $oas.violation(format!(
                "line {}: {} is {:?}, expected {:?}: {}",
                line!(), stringify!($a), $a, $b, format!($($fmt)+)
            ));
        }
    };
}

const UNSAFE: [&str; 4] = ["post", "put", "patch", "delete"];

#[test]
fn the_document_is_well_formed_and_lists_exactly_the_routes_served() {
    let oas = Oas::load();
    let doc = &oas.doc;
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(
        doc["jsonSchemaDialect"],
        "https://json-schema.org/draft/2020-12/schema"
    );

    // Every reference resolves, inside the document.
    let mut all = Vec::new();
    refs(doc, "", &mut all);
    assert!(all.len() > 50, "{} refs", all.len());
    for (at, r) in &all {
        let p = r
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("{at}: external $ref {r}"));
        assert!(doc.pointer(p).is_some(), "{at}: dangling $ref {r}");
    }

    // The routes: the router's list (`hub::api::ROUTES`) and the document's `/api/v1` paths
    // are the same set.
    let served: BTreeSet<(String, String)> = hub::api::ROUTES
        .iter()
        .map(|(m, p)| (m.to_ascii_lowercase(), (*p).to_owned()))
        .collect();
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for m in item.as_object().unwrap().keys() {
            if ["get", "post", "put", "patch", "delete"].contains(&m.as_str())
                && path.starts_with("/api/")
            {
                documented.insert((m.clone(), path.clone()));
            }
        }
    }
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(&served).collect();
    assert!(
        undocumented.is_empty() && unserved.is_empty(),
        "served but not documented: {undocumented:?}; documented but not served: {unserved:?}"
    );
    // The router's own source registers the same paths (ROUTES is a list kept by hand).
    let src = std::fs::read_to_string(repo().join("hub/src/api/mod.rs")).unwrap();
    for (_, p) in &served {
        let rel = p.strip_prefix("/api/v1").unwrap();
        assert!(
            src.contains(&format!(".route(\"{rel}\"")),
            "{p} is in ROUTES but the router does not register {rel:?}"
        );
    }
    let registered = src.matches(".route(\"").count();
    assert_eq!(
        registered,
        served.iter().map(|(_, p)| p).collect::<BTreeSet<_>>().len() + 3,
        "the router registers a path that neither ROUTES nor the pages (/, /m, /assets) list"
    );

    // Operations: unique ids; security as the contract says; error statuses that go with it.
    let mut ids = BTreeSet::new();
    let public = [
        ("post", "/api/v1/auth/login"),
        ("post", "/api/v1/auth/tokens"),
        ("get", "/api/v1/openapi.json"),
    ];
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (m, op) in item.as_object().unwrap() {
            let id = op["operationId"].as_str().expect("operationId");
            assert!(ids.insert(id.to_owned()), "duplicate operationId {id}");
            // Path parameters are declared.
            for seg in path.split('/') {
                if let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    let declared = op["parameters"].as_array().is_some_and(|ps| {
                        ps.iter().any(|p| {
                            p["in"] == "path" && p["name"] == name && p["required"] == true
                        })
                    });
                    assert!(declared, "{m} {path}: path parameter {name} not declared");
                }
            }
            if !path.starts_with("/api/") {
                continue;
            }
            let responses = op["responses"].as_object().unwrap();
            let sec = op["security"].as_array().expect("explicit security");
            if public.contains(&(m.as_str(), path.as_str())) {
                assert!(sec.is_empty(), "{m} {path} is public");
                continue;
            }
            assert!(
                sec.iter().any(|s| s.get("cookieAuth").is_some())
                    && sec.iter().any(|s| s.get("bearerAuth").is_some()),
                "{m} {path}: cookie or bearer"
            );
            assert!(responses.contains_key("401"), "{m} {path}: no 401");
            if UNSAFE.contains(&m.as_str()) {
                assert!(
                    sec.iter()
                        .filter(|s| s.get("cookieAuth").is_some())
                        .all(|s| s.get("csrfToken").is_some()),
                    "{m} {path}: the cookie needs the CSRF token"
                );
                assert!(responses.contains_key("403"), "{m} {path}: no 403 (csrf)");
            }
            assert!(
                responses.contains_key("default"),
                "{m} {path}: no default (500/503)"
            );
        }
    }

    // Every JSON response schema compiles, and every error response is the shared Error.
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (m, op) in item.as_object().unwrap() {
            for (status, r) in op["responses"].as_object().unwrap() {
                let r = match r.get("$ref").and_then(Value::as_str) {
                    Some(p) => doc.pointer(p.trim_start_matches('#')).unwrap(),
                    None => r,
                };
                let Some(content) = r.get("content") else {
                    continue;
                };
                let is_error =
                    status == "default" || status.starts_with('4') || status.starts_with('5');
                if is_error && path.starts_with("/api/") {
                    assert_eq!(
                        content["application/json"]["schema"]["$ref"], "#/components/schemas/Error",
                        "{m} {path} {status}"
                    );
                }
                if let Some(s) = content.get("application/json") {
                    let _ = s;
                    let (_, _) = oas
                        .response(path, m, status.parse().unwrap_or(599))
                        .unwrap();
                }
            }
        }
    }
    for name in doc["components"]["schemas"].as_object().unwrap().keys() {
        oas.validator(&format!("/components/schemas/{name}"));
    }
}

/// Checks the schemas reject what they should: they are strict, not decorative.
#[test]
fn the_schemas_are_strict() {
    let oas = Oas::load();
    let ok = json!({"code": "532329101001-G01-M01", "name": "x", "level": "micro_grid"});
    oas.validate_component("CellRef", &ok, "good CellRef");
    for bad in [
        json!({"code": "x", "name": "x", "level": "hamlet"}),
        json!({"code": "x", "name": "x"}),
        json!({"code": "x", "name": "x", "level": "grid", "extra": 1}),
    ] {
        let v = oas.validator("/components/schemas/CellRef");
        assert!(!v.is_valid(&bad), "CellRef accepted {bad}");
    }
    let err = json!({"error": {"code": "csrf", "message": "m"}});
    oas.validate_component("Error", &err, "Error");
    let v = oas.validator("/components/schemas/Error");
    assert!(!v.is_valid(&json!({"error": {"code": "oops", "message": "m"}})));
    assert!(!v.is_valid(&json!({"error": {"code": "csrf"}})));
    // Times are integers.
    let v = oas.validator("/components/schemas/WatchEntry");
    let mut w = json!({"tag": "T", "case_ref": "c", "note": "n", "added_at": "2026-11-22T08:00:00.000Z", "added_by": "p",
                       "cell": null, "scope": null});
    assert!(v.is_valid(&w));
    let mut scoped = w.clone();
    scoped["cell"] = json!("532329101");
    scoped["scope"] = json!({"code": "532329101", "name": "狮山镇", "level": "township"});
    assert!(v.is_valid(&scoped));
    scoped["scope"] = json!({"code": "532329101", "name": "狮山镇"});
    assert!(
        !v.is_valid(&scoped),
        "a scope names its level (null only for a removed cell)"
    );
    w["added_at"] = json!(1);
    assert!(
        !v.is_valid(&w),
        "times are RFC 3339 strings, not ms integers"
    );
    w["added_at"] = json!("2026-11-22 08:00");
    assert!(!v.is_valid(&w), "times are RFC 3339 UTC with milliseconds");
    // A delivery flattens its outcome into itself (`allOf`): closed as a whole, so a field
    // neither part names is refused, while each outcome's own fields are accepted.
    let v = oas.validator("/components/schemas/Delivery");
    let mut d = json!({"outcome": "failed", "error": "timeout", "target": {"person": "p1"},
                       "channel": "mqtt", "step": 0, "attempts": 1,
                       "at": "2026-11-22T08:00:00.000Z"});
    assert!(v.is_valid(&d), "{d}");
    d["extra"] = json!(1);
    assert!(!v.is_valid(&d), "a delivery with a field nobody names");
    // Bodies that are not JSON say what they are; the event stream names its events' schema.
    let doc = &oas.doc;
    assert_eq!(
        doc["paths"]["/api/v1/alerts/{id}/snapshot"]["get"]["responses"]["200"]["content"]["image/jpeg"]
            ["schema"]["contentMediaType"],
        "image/jpeg"
    );
    assert_eq!(
        doc["paths"]["/api/v1/events"]["get"]["responses"]["200"]["content"]["text/event-stream"]["x-event-schema"]
            ["$ref"],
        "#/components/schemas/Event"
    );
    // Descriptions are for API users: no rustdoc links or crate paths.
    let text = doc.to_string();
    for leak in ["crate::", "super::", "[`"] {
        assert!(!text.contains(leak), "the document says {leak:?}");
    }
}

/// (template, method, status) that the scenario below cannot produce without breaking the
/// hub (or that only a broken request to a healthy hub would), with why.
fn cannot_see() -> Vec<(&'static str, &'static str, u16)> {
    // Every argon2 worker busy for 5 s: a load the scenario cannot make without slowing
    // every other test (`api_logins` floods the limiter instead).
    // A snapshot or photo deleted by retention while its record stays (410): the scenario
    // keeps everything it stores.
    // A roster that does not check out (400): this scenario's hub reads the repository's
    // example roster, which it must not break; `reload.rs` refuses a bad one.
    vec![
        ("/api/v1/admin/reload", "post", 400),
        ("/api/v1/auth/login", "post", 503),
        ("/api/v1/auth/tokens", "post", 503),
        ("/api/v1/alerts/{id}/snapshot", "get", 410),
        ("/api/v1/photos/{id}", "get", 410),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_matches_the_document() {
    let oas = Arc::new(Oas::load());
    let r = start(oas.clone(), true).await;
    let c = fill(&r).await;
    let api = &r.api;

    // --- The document is served as it is in the tree, anonymously.
    let served = api.get("/api/v1/openapi.json", &Auth::Anon).await;
    served.soft(&oas, 200, None);
    soft_eq!(
        oas,
        served.json(),
        oas.doc,
        "the served document is the generated one"
    );

    // --- Auth.
    let admin = api.login(ADMIN).await;
    let county = api.login(COUNTY_OP).await;
    let town = api.login(TOWNSHIP_OP).await;
    let ma = api.login(MEMBER_A).await;
    let mb = api.login(MEMBER_B).await;
    let bearer = Auth::Bearer(api.token(COUNTY_OP).await);
    for (s, role) in [
        (&admin, "admin"),
        (&county, "operator"),
        (&town, "operator"),
        (&ma, "member"),
        (&mb, "member"),
    ] {
        soft_eq!(oas, s.me["role"], role, "{}", s.me);
        let me = api.get("/api/v1/me", &s.auth()).await.json();
        soft_eq!(oas, me["csrf"], json!(s.csrf));
    }
    soft_eq!(oas, ma.me["cells"][0]["code"], M01);
    let me = api.get("/api/v1/me", &bearer).await.json();
    soft!(oas, me["csrf"].is_null());
    api.post(
        "/api/v1/auth/login",
        &Auth::Anon,
        &json!({"username": "admin"}),
    )
    .await
    .soft(&oas, 400, Some("invalid"));
    api.post(
        "/api/v1/auth/tokens",
        &Auth::Anon,
        &json!({"username": ADMIN, "password": "wrong", "label": "x"}),
    )
    .await
    .soft(&oas, 401, Some("unauthenticated"));
    api.post("/api/v1/auth/tokens", &Auth::Anon, &json!({"label": "x"}))
        .await
        .soft(&oas, 400, Some("invalid"));

    // --- Lists and filters.
    let all = api
        .get("/api/v1/cases?limit=500", &admin.auth())
        .await
        .json();
    soft_eq!(oas, all["total"], 5, "{all}");
    let listed: Vec<&Value> = all["cases"].as_array().unwrap().iter().collect();
    let opened: Vec<i64> = listed.iter().map(|c| ms_of(&c["opened_at"])).collect();
    soft!(
        oas,
        opened.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {opened:?}"
    );
    let a_sum = listed.iter().find(|x| x["id"] == c.a.as_str()).unwrap();
    soft_eq!(oas, a_sum["cell"]["code"], M01);
    soft_eq!(oas, a_sum["path"].as_array().unwrap().len(), 5);
    soft_eq!(oas, a_sum["source"], json!({"camera": "cam-1"}));
    let b_sum = listed.iter().find(|x| x["id"] == c.b.as_str()).unwrap();
    soft_eq!(oas, b_sum["cell"]["code"], M02);
    let w_sum = listed.iter().find(|x| x["id"] == c.w.as_str()).unwrap();
    soft_eq!(oas, w_sum["kind"], "watchlist");
    soft_eq!(oas, w_sum["source"], json!({"reader": "r1"}));
    // Pages of one walk the same list.
    let mut paged = Vec::new();
    let mut q = "/api/v1/cases?limit=2".to_owned();
    loop {
        let p = api.get(&q, &admin.auth()).await.json();
        soft!(oas, p["cases"].as_array().unwrap().len() <= 2);
        soft_eq!(oas, p["total"], 5);
        paged.extend(
            p["cases"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["id"].clone()),
        );
        match p["next_cursor"].as_str() {
            Some(cur) => q = format!("/api/v1/cases?limit=2&cursor={cur}"),
            None => break,
        }
    }
    let ids: Vec<Value> = listed.iter().map(|c| c["id"].clone()).collect();
    soft_eq!(oas, paged, ids);
    for (query, expect) in [
        ("state=open", 5),
        ("state=dispatched,acknowledged", 5),
        ("state=closed", 0),
        ("severity=critical", 2),
        ("severity=critical,major", 4),
        ("level=micro_grid", 4),
        ("level=grid", 1),
        ("kind=watchlist", 1),
        ("kind=zone,line", 4),
        (&format!("cell={M01}") as &str, 3),
        (&format!("cell={SHISHAN}"), 4),
        (&format!("site={OTHER_SITE}"), 1),
        ("from=0&to=1", 0),
        (
            &format!("from=0&to={}", protocol::UtcMillis::now().0 + 60_000),
            5,
        ),
    ] {
        let l = api
            .get(&format!("/api/v1/cases?{query}"), &admin.auth())
            .await
            .json();
        soft_eq!(oas, l["total"], expect, "{query}: {l}");
        soft_eq!(oas, l["cases"].as_array().unwrap().len(), expect, "{query}");
    }
    for (query, field) in [
        ("state=bogus", "state"),
        ("severity=urgent", "severity"),
        ("level=hamlet", "level"),
        ("kind=fire", "kind"),
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=x", "limit"),
        ("from=yesterday", "from"),
        ("to=1.5", "to"),
        ("cursor=garbage", "cursor"),
        ("cell=000000", "cell"),
        ("colour=red", "colour"),
        ("state=open&state=closed", "state"),
    ] {
        let e = api
            .get(&format!("/api/v1/cases?{query}"), &admin.auth())
            .await;
        e.soft(&oas, 400, Some("invalid"));
        soft_eq!(oas, e.json()["error"]["field"], field, "{query}");
    }
    api.get(&format!("/api/v1/cases?cell={M01}"), &mb.auth())
        .await
        .soft(&oas, 403, Some("forbidden"));

    // --- Detail, snapshot.
    let d = api
        .get(&format!("/api/v1/cases/{}", c.a), &ma.auth())
        .await
        .json();
    soft_eq!(oas, d["case"]["id"], c.a.as_str());
    let snap = &d["snapshot"];
    soft_eq!(oas, snap["alert"], c.a_alert.as_str());
    soft_eq!(
        oas,
        snap["url"],
        format!("/api/v1/alerts/{}/snapshot", c.a_alert)
    );
    soft_eq!(
        oas,
        (snap["width"].as_u64(), snap["height"].as_u64()),
        (Some(16), Some(16))
    );
    soft_eq!(oas, snap["detections"][0]["label"], "person");
    soft_eq!(oas, d["alerts"][0]["has_snapshot"], true);
    soft!(oas, !d["audit"].as_array().unwrap().is_empty());
    let jpg = api
        .get(
            &format!("/api/v1/alerts/{}/snapshot", c.a_alert),
            &ma.auth(),
        )
        .await;
    jpg.soft(&oas, 200, None);
    soft_eq!(oas, jpg.body, jpeg());
    let d = api
        .get(&format!("/api/v1/cases/{}", c.b), &admin.auth())
        .await
        .json();
    soft!(oas, d["snapshot"].is_null());
    soft_eq!(oas, d["alerts"][0]["has_snapshot"], false);
    api.get(
        &format!("/api/v1/alerts/{}/snapshot", c.b_alert),
        &admin.auth(),
    )
    .await
    .soft(&oas, 404, Some("not_found"));
    api.get(
        "/api/v1/alerts/01KAQ5X3MV0000000000009999/snapshot",
        &admin.auth(),
    )
    .await
    .soft(&oas, 404, Some("not_found"));
    api.get("/api/v1/cases/C-nope", &admin.auth())
        .await
        .soft(&oas, 404, Some("not_found"));
    api.get(&format!("/api/v1/cases/{}", c.a), &mb.auth())
        .await
        .soft(&oas, 403, Some("forbidden"));
    api.get(
        &format!("/api/v1/alerts/{}/snapshot", c.a_alert),
        &mb.auth(),
    )
    .await
    .soft(&oas, 403, Some("forbidden"));

    // --- Actions through the whole life of case A.
    let act = |case: &str, auth: &Auth, body: Value| {
        let (case, auth) = (case.to_owned(), auth.clone());
        async move { api.act(&case, &auth, body).await }
    };
    act(&c.a, &ma.auth(), json!({"action": "resolve", "note": "x"}))
        .await
        .soft(&oas, 409, Some("conflict"));
    act(&c.a, &ma.auth(), json!({"action": "fly"}))
        .await
        .soft(&oas, 400, Some("invalid"));
    let d = act(&c.a, &ma.auth(), json!({"action": "acknowledge"})).await;
    d.soft(&oas, 200, None);
    soft_eq!(oas, d.json()["case"]["state"], "acknowledged");
    soft!(oas, d.json()["case"]["acked_at"].is_string());
    act(&c.a, &ma.auth(), json!({"action": "acknowledge"}))
        .await
        .soft(&oas, 409, Some("conflict"));
    act(&c.a, &ma.auth(), json!({"action": "start_handling"}))
        .await
        .soft(&oas, 200, None);
    let e = act(&c.a, &ma.auth(), json!({"action": "resolve"})).await;
    e.soft(&oas, 400, Some("invalid"));
    soft_eq!(oas, e.json()["error"]["field"], "note");
    let e = act(
        &c.a,
        &ma.auth(),
        json!({"action": "comment", "note": "x", "photo": "not base64!"}),
    )
    .await;
    e.soft(&oas, 400, Some("invalid"));
    soft_eq!(oas, e.json()["error"]["field"], "photo");
    let d = act(
        &c.a,
        &ma.auth(),
        json!({"action": "comment", "note": "现场照片", "photo": JPEG_B64}),
    )
    .await;
    d.soft(&oas, 200, None);
    let photo = d.json()["photos"][0].clone();
    let photo_id = photo["id"].as_str().unwrap_or("missing").to_owned();
    soft_eq!(oas, photo["url"], format!("/api/v1/photos/{photo_id}"));
    let p = api
        .get(&format!("/api/v1/photos/{photo_id}"), &ma.auth())
        .await;
    p.soft(&oas, 200, None);
    soft_eq!(oas, p.body, jpeg());
    api.get(&format!("/api/v1/photos/{photo_id}"), &mb.auth())
        .await
        .soft(&oas, 403, Some("forbidden"));
    api.get("/api/v1/photos/nope", &ma.auth())
        .await
        .soft(&oas, 404, Some("not_found"));
    let d = act(
        &c.a,
        &ma.auth(),
        json!({"action": "resolve", "note": "已处理"}),
    )
    .await;
    d.soft(&oas, 200, None);
    soft!(oas, d.json()["case"]["resolved_at"].is_string());
    act(&c.a, &ma.auth(), json!({"action": "close", "note": "ok"}))
        .await
        .soft(&oas, 403, Some("forbidden"));
    let d = act(
        &c.a,
        &town.auth(),
        json!({"action": "close", "note": "核实"}),
    )
    .await;
    d.soft(&oas, 200, None);
    soft_eq!(oas, d.json()["case"]["state"], "closed");
    act(&c.a, &town.auth(), json!({"action": "acknowledge"}))
        .await
        .soft(&oas, 409, Some("conflict"));
    act(&c.a, &mb.auth(), json!({"action": "comment", "note": "x"}))
        .await
        .soft(&oas, 403, Some("forbidden"));
    act(
        "C-nope",
        &admin.auth(),
        json!({"action": "comment", "note": "x"}),
    )
    .await
    .soft(&oas, 404, Some("not_found"));
    // Case A2: acknowledged, extended, returned to its micro-grid.
    act(&c.a2, &county.auth(), json!({"action": "acknowledge"}))
        .await
        .soft(&oas, 200, None);
    let d = api
        .get(&format!("/api/v1/cases/{}", c.a2), &county.auth())
        .await
        .json();
    let until = ms_of(&d["case"]["deadline"]["at"]) + 3_600_000;
    let d = act(
        &c.a2,
        &county.auth(),
        json!({"action": "extend", "until": until, "note": "等待配合"}),
    )
    .await;
    d.soft(&oas, 200, None);
    soft_eq!(
        oas,
        d.json()["case"]["deadline"]["at"],
        json!(protocol::time::format_rfc3339_ms(until))
    );
    let e = act(
        &c.a2,
        &county.auth(),
        json!({"action": "extend", "note": "x"}),
    )
    .await;
    e.soft(&oas, 400, Some("invalid"));
    soft_eq!(oas, e.json()["error"]["field"], "until");
    let d = act(
        &c.a2,
        &county.auth(),
        json!({"action": "return", "cell": M01, "note": "请网格员处理"}),
    )
    .await;
    d.soft(&oas, 200, None);
    soft_eq!(oas, d.json()["case"]["state"], "dispatched");
    soft_eq!(oas, d.json()["case"]["cell"]["code"], M01);
    // Case B: resolved, reopened by bearer (no CSRF), commented.
    for (auth, body) in [
        (mb.auth(), json!({"action": "acknowledge"})),
        (mb.auth(), json!({"action": "start_handling"})),
        (mb.auth(), json!({"action": "resolve", "note": "done"})),
        (
            bearer.clone(),
            json!({"action": "reopen", "note": "not done"}),
        ),
    ] {
        act(&c.b, &auth, body).await.soft(&oas, 200, None);
    }
    let d = api
        .get(&format!("/api/v1/cases/{}", c.b), &admin.auth())
        .await
        .json();
    soft_eq!(oas, d["case"]["state"], "handling");
    let actions: Vec<&str> = d["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    for a in ["open", "acknowledge", "start_handling", "resolve", "reopen"] {
        soft!(oas, actions.contains(&a), "{a} not in {actions:?}");
    }

    // --- Patrol reports.
    let rep = api
        .post(
            "/api/v1/reports",
            &ma.auth(),
            &json!({"kind": "patrol", "category": "fire_hazard", "note": "楼道堆放杂物",
                    "location": {"lon": DEMO_LON, "lat": DEMO_LAT}, "photo": JPEG_B64}),
        )
        .await;
    rep.soft(&oas, 201, None);
    let rc = rep.json()["case"].clone();
    soft_eq!(oas, rc["kind"], "patrol");
    soft_eq!(oas, rc["cell"]["code"], M01);
    soft!(oas, rc["source"]["person"].is_string(), "{rc}");
    let d = api
        .get(
            &format!("/api/v1/cases/{}", rc["id"].as_str().unwrap()),
            &ma.auth(),
        )
        .await
        .json();
    let pid = d["photos"][0]["id"]
        .as_str()
        .unwrap_or("missing")
        .to_owned();
    soft!(oas, pid != "missing", "the report's photo is listed: {d}");
    api.get(&format!("/api/v1/photos/{pid}"), &ma.auth())
        .await
        .soft(&oas, 200, None);
    let e = api
        .post(
            "/api/v1/reports",
            &ma.auth(),
            &json!({"kind": "patrol", "category": "alien_landing", "note": "x",
                    "location": {"lon": DEMO_LON, "lat": DEMO_LAT}}),
        )
        .await;
    e.soft(&oas, 400, Some("invalid"));
    soft_eq!(oas, e.json()["error"]["field"], "category");
    api.post(
        "/api/v1/reports",
        &ma.auth(),
        &json!({"kind": "patrol", "category": "other", "note": "x",
                "location": {"lon": M02_LON, "lat": M02_LAT}}),
    )
    .await
    .soft(&oas, 403, Some("forbidden"));

    // --- Grid, cells.
    let g = api.get("/api/v1/grid", &ma.auth()).await;
    g.soft(&oas, 200, None);
    let codes: BTreeSet<String> = g.json()["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["properties"]["code"].as_str().unwrap().to_owned())
        .collect();
    soft!(
        oas,
        codes.contains(M01) && codes.contains("532329"),
        "{codes:?}"
    );
    soft!(
        oas,
        !codes.contains(M02),
        "a member's grid has no other micro-grid: {codes:?}"
    );
    let g = api.get("/api/v1/grid", &admin.auth()).await.json();
    soft_eq!(oas, g["features"].as_array().unwrap().len(), 16);
    let cell = api.get(&format!("/api/v1/cells/{M01}"), &ma.auth()).await;
    cell.soft(&oas, 200, None);
    soft_eq!(oas, cell.json()["parent"], "532329101001-G01");
    let cell = api.get("/api/v1/cells/532329", &admin.auth()).await.json();
    soft!(oas, cell["parent"].is_null());
    soft_eq!(oas, cell["children"].as_array().unwrap().len(), 3);
    soft!(oas, !cell["people"].as_array().unwrap().is_empty());
    api.get("/api/v1/cells/000000", &admin.auth())
        .await
        .soft(&oas, 404, Some("not_found"));
    api.get(&format!("/api/v1/cells/{GAOQIAO}"), &town.auth())
        .await
        .soft(&oas, 403, Some("forbidden"));

    // --- Departments (the example roster's departments.csv).
    let deps = api.get("/api/v1/departments", &mb.auth()).await.json();
    let jj = deps["departments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["code"] == "D-JJ")
        .expect("the traffic police")
        .clone();
    soft_eq!(oas, jj["kind"], "交警", "{jj}");
    soft_eq!(oas, jj["level"], "county", "{jj}");

    // --- Sites.
    let sites = api.get("/api/v1/sites", &admin.auth()).await.json();
    let s = sites["sites"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == SITE)
        .expect("the demo site")
        .clone();
    soft_eq!(oas, s["online"], true, "{s}");
    soft_eq!(oas, s["cell"]["code"], M01);
    soft!(oas, !s["cameras"].as_array().unwrap().is_empty(), "{s}");
    let sites = api.get("/api/v1/sites", &mb.auth()).await.json();
    soft!(
        oas,
        sites["sites"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["id"] != OTHER_SITE),
        "{sites}"
    );

    // --- Watchlist, trajectory.
    let wl = api.get("/api/v1/watchlist", &county.auth()).await.json();
    soft!(oas, wl["entries"].as_array().unwrap().is_empty());
    let add = api
        .post(
            "/api/v1/watchlist",
            &county.auth(),
            &json!({"tag": TAG, "case_ref": "JJ-2026-001", "note": "被盗电动车"}),
        )
        .await;
    add.soft(&oas, 201, None);
    soft_eq!(oas, add.json()["entry"]["tag"], TAG);
    let wl = api.get("/api/v1/watchlist", &county.auth()).await.json();
    soft_eq!(oas, wl["entries"][0]["case_ref"], "JJ-2026-001");
    // The same tag again replaces the entry (200); another township's operator cannot take it.
    let again = api
        .post(
            "/api/v1/watchlist",
            &county.auth(),
            &json!({"tag": TAG, "case_ref": "JJ-2026-001", "note": "被盗电动车（红色）"}),
        )
        .await;
    again.soft(&oas, 200, None);
    let other_op = api.login(OTHER_OP).await;
    api.post(
        "/api/v1/watchlist",
        &other_op.auth(),
        &json!({"tag": TAG, "case_ref": "GQ-1"}),
    )
    .await
    .soft(&oas, 409, Some("conflict"));
    api.delete(
        &format!("/api/v1/watchlist/{TAG}?reason={}", "长".repeat(501)),
        &county.auth(),
    )
    .await
    .soft(&oas, 400, Some("invalid"));
    let e = api
        .post(
            "/api/v1/watchlist",
            &county.auth(),
            &json!({"case_ref": "x", "note": "y"}),
        )
        .await;
    e.soft(&oas, 400, Some("invalid"));
    api.delete(&format!("/api/v1/watchlist/{TAG}"), &county.auth())
        .await
        .soft(&oas, 200, None);
    api.delete(&format!("/api/v1/watchlist/{TAG}"), &county.auth())
        .await
        .soft(&oas, 404, Some("not_found"));
    api.post(
        "/api/v1/watchlist",
        &ma.auth(),
        &json!({"tag": TAG, "case_ref": "x", "note": "y"}),
    )
    .await
    .soft(&oas, 403, Some("forbidden"));
    // --- Silences.
    let until = protocol::UtcMillis(protocol::UtcMillis::now().0 + 3_600_000).to_string();
    let made = api
        .post(
            "/api/v1/silences",
            &county.auth(),
            &json!({"site": SITE, "camera": "cam-9", "until": until, "reason": "检修"}),
        )
        .await;
    made.soft(&oas, 201, None);
    let sid = made.json()["silence"]["id"]
        .as_str()
        .unwrap_or("S-x")
        .to_owned();
    api.post(
        "/api/v1/silences",
        &county.auth(),
        &json!({"camera": " ", "until": until, "reason": ""}),
    )
    .await
    .soft(&oas, 400, Some("invalid"));
    api.post(
        "/api/v1/silences",
        &ma.auth(),
        &json!({"site": SITE, "until": until, "reason": "x"}),
    )
    .await
    .soft(&oas, 403, Some("forbidden"));
    let listed = api
        .get("/api/v1/silences?active=true", &county.auth())
        .await;
    listed.soft(&oas, 200, None);
    soft_eq!(oas, listed.json()["silences"][0]["id"], sid.as_str());
    api.get("/api/v1/silences?active=maybe", &county.auth())
        .await
        .soft(&oas, 400, Some("invalid"));
    api.get("/api/v1/silences", &ma.auth())
        .await
        .soft(&oas, 403, Some("forbidden"));
    api.post(
        &format!("/api/v1/silences/{sid}/end"),
        &ma.auth(),
        &json!({}),
    )
    .await
    .soft(&oas, 403, Some("forbidden"));
    api.post(
        &format!("/api/v1/silences/{sid}/end"),
        &other_op.auth(),
        &json!({}),
    )
    .await
    .soft(&oas, 404, Some("not_found"));
    api.post(
        &format!("/api/v1/silences/{sid}/end"),
        &county.auth(),
        &json!({}),
    )
    .await
    .soft(&oas, 200, None);
    api.post(
        &format!("/api/v1/silences/{sid}/end"),
        &county.auth(),
        &json!({}),
    )
    .await
    .soft(&oas, 409, Some("conflict"));
    let log = api
        .get("/api/v1/silences/audit?limit=1", &admin.auth())
        .await;
    log.soft(&oas, 200, None);
    soft_eq!(oas, log.json()["records"][0]["action"], "ended");
    soft_eq!(oas, log.json()["records"][0]["silence"]["id"], sid.as_str());
    soft_eq!(
        oas,
        log.json()["next_before"],
        "2",
        "an older record: the creation"
    );
    api.get("/api/v1/silences/audit?before=x", &admin.auth())
        .await
        .soft(&oas, 400, Some("invalid"));
    api.get("/api/v1/silences/audit", &county.auth())
        .await
        .soft(&oas, 403, Some("forbidden"));

    // The audit log: admins only.
    let log = api.get("/api/v1/watchlist/audit", &admin.auth()).await;
    log.soft(&oas, 200, None);
    soft_eq!(oas, log.json()["records"][0]["action"], "removed");
    api.get("/api/v1/watchlist/audit?limit=0", &admin.auth())
        .await
        .soft(&oas, 400, Some("invalid"));
    api.get("/api/v1/watchlist/audit", &county.auth())
        .await
        .soft(&oas, 403, Some("forbidden"));
    let t = api
        .get(&format!("/api/v1/tags/{TAG}/trajectory"), &county.auth())
        .await
        .json();
    soft_eq!(oas, t["tag"], TAG);
    let firsts: Vec<i64> = t["sightings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| ms_of(&s["first"]))
        .collect();
    soft_eq!(oas, firsts.len(), 2, "{t}");
    soft!(oas, firsts[0] < firsts[1], "time order: {firsts:?}");
    soft_eq!(oas, t["sightings"][0]["reads"], 7);
    let t = api
        .get(
            &format!("/api/v1/tags/{TAG}/trajectory?from={}", firsts[1]),
            &county.auth(),
        )
        .await
        .json();
    soft_eq!(oas, t["sightings"].as_array().unwrap().len(), 1, "{t}");
    let e = api
        .get(
            &format!("/api/v1/tags/{TAG}/trajectory?from=x"),
            &county.auth(),
        )
        .await;
    e.soft(&oas, 400, Some("invalid"));
    soft_eq!(oas, e.json()["error"]["field"], "from");

    // --- Statistics.
    let st = api.get("/api/v1/stats", &admin.auth()).await.json();
    soft!(oas, !st["cells"].as_array().unwrap().is_empty(), "{st}");
    soft!(
        oas,
        st["cells"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["cell"]["level"] == "grid"),
        "default level grid: {st}"
    );
    let st = api
        .get(
            &format!(
                "/api/v1/stats?level=township&from=0&to={}",
                protocol::UtcMillis::now().0 + 60_000
            ),
            &county.auth(),
        )
        .await
        .json();
    let shishan = st["cells"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["cell"]["code"] == SHISHAN)
        .cloned()
        .unwrap_or(json!({}))
        .clone();
    soft!(
        oas,
        shishan["cases"].as_u64().unwrap_or(0) >= 5,
        "{shishan}"
    );
    soft!(oas, st["departments"].is_array(), "{st}");
    let csv = api
        .get("/api/v1/stats.csv?level=township", &county.auth())
        .await;
    csv.soft(&oas, 200, None);
    let text = String::from_utf8_lossy(&csv.body).into_owned();
    soft!(
        oas,
        text.starts_with("\u{feff}unit,code,name,level,cases,"),
        "{text}"
    );
    soft!(oas, text.contains(&format!("cell,{SHISHAN},")), "{text}");
    let xlsx = api
        .get("/api/v1/stats.xlsx?level=township", &county.auth())
        .await;
    xlsx.soft(&oas, 200, None);
    soft!(oas, xlsx.body.starts_with(b"PK\x03\x04"), "a zip");
    api.get("/api/v1/stats.xlsx", &ma.auth())
        .await
        .soft(&oas, 403, Some("forbidden"));
    api.get("/api/v1/stats.xlsx?level=hamlet", &county.auth())
        .await
        .soft(&oas, 400, Some("invalid"));
    // Reloading the (unchanged) roster: admins only.
    let reloaded = api
        .send("POST", "/api/v1/admin/reload", &admin.auth(), None, &[])
        .await;
    reloaded.soft(&oas, 200, None);
    soft_eq!(oas, reloaded.json()["reloaded"], json!(["roster", "users"]));
    api.send("POST", "/api/v1/admin/reload", &county.auth(), None, &[])
        .await
        .soft(&oas, 403, Some("forbidden"));
    api.get("/api/v1/stats.csv?level=hamlet", &county.auth())
        .await
        .soft(&oas, 400, Some("invalid"));
    api.get("/api/v1/stats.csv", &ma.auth())
        .await
        .soft(&oas, 403, Some("forbidden"));
    let e = api.get("/api/v1/stats?level=hamlet", &admin.auth()).await;
    e.soft(&oas, 400, Some("invalid"));
    soft_eq!(oas, e.json()["error"]["field"], "level");
    let e = api.get("/api/v1/stats?from=x", &admin.auth()).await;
    e.soft(&oas, 400, Some("invalid"));

    // --- UI config, pages, assets.
    let ui = api.get("/api/v1/config/ui", &ma.auth()).await.json();
    soft!(oas, ui["title"].is_string());
    for page in ["/", "/m"] {
        let p = api.get(page, &Auth::Anon).await;
        p.soft(&oas, 200, None);
        soft!(oas, p.content_type().starts_with("text/html"), "{page}");
    }
    // An embedded asset: the first file of hub/web/assets.
    let asset = std::fs::read_dir(repo().join("hub/web/assets"))
        .ok()
        .and_then(|mut d| d.next())
        .and_then(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned());
    match asset {
        Some(asset) => {
            let a = api.get(&format!("/assets/{asset}"), &Auth::Anon).await;
            a.soft(&oas, 200, None);
            // Revalidated by ETag on every load (no-cache), so a new hub never serves a
            // stale file.
            let etag = a.header("etag").unwrap_or_default();
            soft!(oas, !etag.is_empty(), "assets carry an ETag");
            soft!(
                oas,
                a.header("cache-control").unwrap_or_default() == "no-cache",
                "Cache-Control is {:?}",
                a.header("cache-control")
            );
        }
        None => oas.violation("hub/web/assets is empty: no asset to fetch".into()),
    }
    api.get("/assets/no-such-file.js", &Auth::Anon)
        .await
        .soft(&oas, 404, None);

    // --- Live feed: replay from the start, each event's data is an Event.
    let (status, ctype, events) = read_events(
        api,
        "?since=0",
        &admin.auth(),
        10_000,
        Duration::from_secs(3),
    )
    .await;
    soft_eq!(oas, status, 200);
    soft!(oas, ctype.starts_with("text/event-stream"), "{ctype}");
    soft!(oas, events.len() >= 5, "{events:?}");
    for (name, data) in &events {
        match name.as_str() {
            "case" => oas.record_component(
                "Event",
                &serde_json::from_str(data).unwrap(),
                "GET /api/v1/events data",
            ),
            "reset" => soft_eq!(oas, data, "{}"),
            other => panic!("unexpected event {other}: {data}"),
        }
    }
    // A member's feed has only its own cases.
    let (_, _, evs) = read_events(api, "?since=0", &mb.auth(), 50, Duration::from_secs(2)).await;
    for (name, data) in &evs {
        if name == "case" {
            let v: Value = serde_json::from_str(data).unwrap();
            soft_eq!(oas, v["case"]["id"], c.b.as_str(), "{data}");
        }
    }
    soft!(oas, !evs.is_empty());
    oas.seen
        .lock()
        .unwrap()
        .insert(("/api/v1/events".into(), "get".into(), 200));
    api.get("/api/v1/events", &Auth::Anon)
        .await
        .soft(&oas, 401, Some("unauthenticated"));
    let e = api.get("/api/v1/events?since=x", &admin.auth()).await;
    e.soft(&oas, 400, Some("invalid"));

    // --- Operator-only reads refuse members.
    for p in [
        "/api/v1/watchlist".to_owned(),
        format!("/api/v1/tags/{TAG}/trajectory"),
        "/api/v1/stats".to_owned(),
    ] {
        api.get(&p, &ma.auth())
            .await
            .soft(&oas, 403, Some("forbidden"));
    }

    // --- 401 and 403 csrf on every protected route.
    let routes: Vec<(&str, String, Option<Value>)> = vec![
        ("POST", "/api/v1/auth/logout".into(), None),
        ("GET", "/api/v1/me".into(), None),
        ("GET", "/api/v1/cases".into(), None),
        ("GET", format!("/api/v1/cases/{}", c.a), None),
        (
            "POST",
            format!("/api/v1/cases/{}/actions", c.a2),
            Some(json!({"action": "acknowledge"})),
        ),
        (
            "GET",
            format!("/api/v1/alerts/{}/snapshot", c.a_alert),
            None,
        ),
        ("GET", format!("/api/v1/photos/{photo_id}"), None),
        (
            "POST",
            "/api/v1/reports".into(),
            Some(
                json!({"kind": "patrol", "category": "other", "note": "x", "location": {"lon": DEMO_LON, "lat": DEMO_LAT}}),
            ),
        ),
        ("GET", "/api/v1/grid".into(), None),
        ("GET", format!("/api/v1/cells/{M01}"), None),
        ("GET", "/api/v1/sites".into(), None),
        ("GET", "/api/v1/departments".into(), None),
        ("GET", "/api/v1/watchlist".into(), None),
        (
            "POST",
            "/api/v1/watchlist".into(),
            Some(json!({"tag": TAG, "case_ref": "x", "note": "y"})),
        ),
        ("DELETE", format!("/api/v1/watchlist/{TAG}"), None),
        ("GET", "/api/v1/watchlist/audit".into(), None),
        ("GET", "/api/v1/silences".into(), None),
        (
            "POST",
            "/api/v1/silences".into(),
            Some(json!({"site": SITE, "until": "2099-01-01T00:00:00.000Z", "reason": "x"})),
        ),
        ("POST", "/api/v1/silences/S-1/end".into(), None),
        ("GET", "/api/v1/silences/audit".into(), None),
        ("GET", format!("/api/v1/tags/{TAG}/trajectory"), None),
        ("GET", "/api/v1/stats".into(), None),
        ("GET", "/api/v1/stats.csv".into(), None),
        ("GET", "/api/v1/stats.xlsx".into(), None),
        ("POST", "/api/v1/admin/reload".into(), None),
        ("GET", "/api/v1/config/ui".into(), None),
        ("GET", "/api/v1/quarantine".into(), None),
        ("GET", "/api/v1/quarantine/1/raw".into(), None),
        ("POST", "/api/v1/quarantine/1/reingest".into(), None),
        ("DELETE", "/api/v1/quarantine/1".into(), None),
    ];
    for (m, p, b) in &routes {
        api.send(m, p, &Auth::Anon, b.as_ref(), &[])
            .await
            .soft(&oas, 401, Some("unauthenticated"));
        if *m != "GET" {
            api.send(m, p, &admin.no_csrf(), b.as_ref(), &[])
                .await
                .soft(&oas, 403, Some("csrf"));
        }
    }

    // --- The quarantine (admins only).
    {
        use rumqttc::v5::mqttbytes::QoS;
        // A malformed payload, and a valid one of a site that the hub refuses: the hub's own
        // policy never refuses a valid alert of a registered site, so this stands for one
        // refused under an earlier policy (or config) and fixed since.
        let acked = r.site.acks.load(std::sync::atomic::Ordering::SeqCst);
        r.site
            .client
            .publish(
                format!("se/v1/site/{SITE}/alert"),
                QoS::AtLeastOnce,
                false,
                b"{\"schema\":1,".to_vec(),
            )
            .await
            .unwrap();
        // Another site's id in the payload: not authorized.
        let mut not_mine = alert(SITE, 78, protocol::Severity::Major, None);
        not_mine.site = OTHER_SITE.into();
        r.site
            .client
            .publish(
                format!("se/v1/site/{SITE}/alert"),
                QoS::AtLeastOnce,
                false,
                serde_json::to_vec(&not_mine).unwrap(),
            )
            .await
            .unwrap();
        r.site.wait_acks(acked + 2, Duration::from_secs(10)).await;
        let fixed = alert(SITE, 79, protocol::Severity::Minor, None);
        let fixed_id = r
            .hub
            .store
            .quarantine()
            .insert(&[hub::store::NewQuarantined {
                site: SITE.into(),
                at: protocol::UtcMillis::now(),
                code: hub::ingest::RejectCode::NotAuthorized,
                reason: "refused by an earlier policy".into(),
                raw: serde_json::to_vec(&fixed).unwrap().into(),
            }])
            .unwrap()
            .ids[0]
            .to_string();
        let l = api.get("/api/v1/quarantine?limit=2", &admin.auth()).await;
        l.soft(&oas, 200, None);
        let l = l.json();
        soft_eq!(oas, l["total"], 3, "{l}");
        soft_eq!(oas, l["records"][0]["id"], fixed_id.as_str());
        let next = l["next_before"].as_str().unwrap_or("0").to_owned();
        let l2 = api
            .get(&format!("/api/v1/quarantine?before={next}"), &admin.auth())
            .await;
        l2.soft(&oas, 200, None);
        let l2 = l2.json();
        soft_eq!(oas, l2["records"].as_array().map(Vec::len), Some(1), "{l2}");
        soft_eq!(oas, l2["records"][0]["code"], "malformed");
        let malformed = l2["records"][0]["id"].as_str().unwrap_or("0").to_owned();
        let not_mine = l["records"][1]["id"].as_str().unwrap_or("0").to_owned();
        soft_eq!(oas, l["records"][1]["code"], "not_authorized");
        api.get("/api/v1/quarantine?limit=0", &admin.auth())
            .await
            .soft(&oas, 400, Some("invalid"));
        api.get("/api/v1/quarantine", &county.auth())
            .await
            .soft(&oas, 403, Some("forbidden"));
        let raw = api
            .get(
                &format!("/api/v1/quarantine/{malformed}/raw"),
                &admin.auth(),
            )
            .await;
        raw.soft(&oas, 200, None);
        soft_eq!(oas, raw.body, b"{\"schema\":1,".to_vec());
        api.get(&format!("/api/v1/quarantine/{malformed}/raw"), &ma.auth())
            .await
            .soft(&oas, 403, Some("forbidden"));
        api.get("/api/v1/quarantine/999999999/raw", &admin.auth())
            .await
            .soft(&oas, 404, Some("not_found"));
        // A record id that is not a number, on each route that takes one.
        for (m, p) in [
            ("GET", "/api/v1/quarantine/x/raw"),
            ("POST", "/api/v1/quarantine/x/reingest"),
            ("DELETE", "/api/v1/quarantine/x"),
        ] {
            api.send(m, p, &admin.auth(), None, &[])
                .await
                .soft(&oas, 400, Some("invalid"));
        }
        let reingest = |id: String, auth: Auth| async move {
            api.send(
                "POST",
                &format!("/api/v1/quarantine/{id}/reingest"),
                &auth,
                None,
                &[],
            )
            .await
        };
        reingest(malformed.clone(), admin.auth())
            .await
            .soft(&oas, 422, Some("malformed"));
        reingest(not_mine.clone(), admin.auth())
            .await
            .soft(&oas, 409, Some("not_authorized"));
        reingest(fixed_id.clone(), county.auth())
            .await
            .soft(&oas, 403, Some("forbidden"));
        let d = reingest(fixed_id.clone(), admin.auth()).await;
        d.soft(&oas, 200, None);
        soft_eq!(oas, d.json()["outcome"], "stored");
        soft_eq!(oas, d.json()["alert"], fixed.id.as_str());
        reingest(fixed_id.clone(), admin.auth())
            .await
            .soft(&oas, 404, Some("not_found"));
        api.delete(&format!("/api/v1/quarantine/{malformed}"), &ma.auth())
            .await
            .soft(&oas, 403, Some("forbidden"));
        api.delete(&format!("/api/v1/quarantine/{malformed}"), &admin.auth())
            .await
            .soft(&oas, 204, None);
        api.delete(&format!("/api/v1/quarantine/{malformed}"), &admin.auth())
            .await
            .soft(&oas, 404, Some("not_found"));
        // The re-ingested alert is a case now, its detail with the (absent) position flag.
        let case = case_of(&r.hub, &fixed.id).await;
        let d = api
            .get(&format!("/api/v1/cases/{case}"), &admin.auth())
            .await;
        d.soft(&oas, 200, None);
        soft!(oas, d.json()["position_untrusted"].is_null());
    }

    // --- Login rate limit (429) and logout (204).
    for _ in 0..5 {
        api.post(
            "/api/v1/auth/login",
            &Auth::Anon,
            &json!({"username": MEMBER_B, "password": "wrong"}),
        )
        .await
        .soft(&oas, 401, Some("unauthenticated"));
    }
    api.post(
        "/api/v1/auth/login",
        &Auth::Anon,
        &json!({"username": MEMBER_B, "password": "wrong"}),
    )
    .await
    .soft(&oas, 429, Some("rate_limited"));
    api.post(
        "/api/v1/auth/tokens",
        &Auth::Anon,
        &json!({"username": MEMBER_B, "password": password(MEMBER_B), "label": "x"}),
    )
    .await
    .soft(&oas, 429, Some("rate_limited"));
    // --- Sessions: admins list and revoke them; nobody else may.
    let spare = api.token(COUNTY_OP).await;
    let spare_id = hub::gateway::auth::sha256_hex(spare.as_bytes());
    let list = api.get("/api/v1/sessions", &admin.auth()).await;
    list.soft(&oas, 200, None);
    soft_eq!(
        oas,
        list.json()["sessions"]
            .as_array()
            .is_some_and(|a| a.iter().any(|s| s["id"] == spare_id.as_str())),
        true,
        "a new app token is listed"
    );
    api.get("/api/v1/sessions", &Auth::Anon)
        .await
        .soft(&oas, 401, Some("unauthenticated"));
    api.get("/api/v1/sessions", &county.auth())
        .await
        .soft(&oas, 403, Some("forbidden"));
    let spare_path = format!("/api/v1/sessions/{spare_id}");
    api.delete(&spare_path, &county.auth())
        .await
        .soft(&oas, 403, Some("forbidden"));
    api.delete(&spare_path, &Auth::Anon)
        .await
        .soft(&oas, 401, Some("unauthenticated"));
    api.delete("/api/v1/sessions/not-hex", &admin.auth())
        .await
        .soft(&oas, 400, Some("invalid"));
    api.delete(&spare_path, &admin.auth())
        .await
        .soft(&oas, 204, None);
    api.delete(&spare_path, &admin.auth())
        .await
        .soft(&oas, 404, Some("not_found"));
    // The revoked token no longer works.
    api.get("/api/v1/me", &Auth::Bearer(spare))
        .await
        .soft(&oas, 401, Some("unauthenticated"));

    api.send("POST", "/api/v1/auth/logout", &ma.auth(), None, &[])
        .await
        .soft(&oas, 204, None);

    // --- Coverage: every documented status was seen, or is an error response that the
    // scenario cannot provoke (5xx), and every 2xx was seen.
    let seen = oas.seen.lock().unwrap().clone();
    let documented = oas.documented();
    let mut unseen = Vec::new();
    for (t, m, s) in documented.difference(&seen) {
        if cannot_see().contains(&(t.as_str(), m.as_str(), *s)) {
            continue;
        }
        unseen.push(format!("{} {t} {s}", m.to_uppercase()));
    }
    for u in unseen {
        oas.violation(format!("documented but never seen: {u}"));
    }
    r.hub.stop().await;
    oas.assert_no_violations();
}
