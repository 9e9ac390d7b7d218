//! Authorisation of the HTTP API, route by route: anonymous requests are refused on every
//! route but login, tokens and the document; grid members and township operators see and touch
//! only the cases of their own cells; members may not close, reopen, extend or change the
//! watchlist (silences: `silences.rs`); operators see and change only the watchlist entries of their cells, and every
//! change is in an audit log only admins read; cookie-authenticated unsafe requests need the
//! CSRF token (and change nothing without it) while bearer requests do not; failed logins are rate-limited; logout ends the
//! session. Every response is also checked against the OpenAPI document.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::api_util;
use crate::common;

use std::sync::Arc;
use std::time::Duration;

use api_util::*;
use common::*;
use serde_json::json;

fn oas() -> Arc<Oas> {
    Arc::new(Oas::load())
}

/// Every route but login, tokens and openapi.json, with a plausible request.
fn protected_routes(c: &Cases) -> Vec<(&'static str, String, Option<serde_json::Value>)> {
    vec![
        ("POST", "/api/v1/auth/logout".into(), None),
        ("GET", "/api/v1/me".into(), None),
        ("GET", "/api/v1/cases".into(), None),
        ("GET", "/api/v1/cases?state=open".into(), None),
        ("GET", format!("/api/v1/cases/{}", c.a), None),
        (
            "POST",
            format!("/api/v1/cases/{}/actions", c.a),
            Some(json!({"action": "acknowledge"})),
        ),
        (
            "GET",
            format!("/api/v1/alerts/{}/snapshot", c.a_alert),
            None,
        ),
        ("GET", "/api/v1/photos/P-0000".into(), None),
        (
            "POST",
            "/api/v1/reports".into(),
            Some(json!({"kind": "patrol", "category": "other", "note": "x",
                        "location": {"lon": DEMO_LON, "lat": DEMO_LAT}})),
        ),
        ("GET", "/api/v1/grid".into(), None),
        ("GET", format!("/api/v1/cells/{M01}"), None),
        ("GET", "/api/v1/sites".into(), None),
        ("GET", "/api/v1/departments".into(), None),
        ("GET", "/api/v1/watchlist".into(), None),
        (
            "POST",
            "/api/v1/watchlist".into(),
            Some(json!({"tag": "E004000011112222", "case_ref": "X", "note": "n"})),
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
        ("GET", "/api/v1/events".into(), None),
        ("GET", "/api/v1/config/ui".into(), None),
        ("GET", "/api/v1/quarantine".into(), None),
        ("GET", "/api/v1/quarantine/1/raw".into(), None),
        ("POST", "/api/v1/quarantine/1/reingest".into(), None),
        ("DELETE", "/api/v1/quarantine/1".into(), None),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_admins_read_re_ingest_or_delete_the_quarantine() {
    let r = start(oas(), true).await;
    let _ = fill(&r).await;
    let api = &r.api;
    // A refused payload to guard.
    use rumqttc::v5::mqttbytes::QoS;
    r.site
        .client
        .publish(
            format!("se/v1/site/{SITE}/alert"),
            QoS::AtLeastOnce,
            false,
            b"{\"schema\": 1, broken".to_vec(),
        )
        .await
        .unwrap();
    r.site.wait_acks(7, Duration::from_secs(10)).await;
    let admin = api.login(ADMIN).await;
    let list = api.get("/api/v1/quarantine", &admin.auth()).await;
    list.expect(200, None);
    let id = list.json()["records"][0]["id"]
        .as_str()
        .expect("the refused payload is listed")
        .to_owned();
    let county = api.login(COUNTY_OP).await;
    let member = api.login(MEMBER_A).await;
    let bearer = Auth::Bearer(api.token(COUNTY_OP).await);
    for who in [county.auth(), member.auth(), bearer] {
        for (method, path) in [
            ("GET", "/api/v1/quarantine".to_owned()),
            ("GET", format!("/api/v1/quarantine/{id}/raw")),
            ("POST", format!("/api/v1/quarantine/{id}/reingest")),
            ("DELETE", format!("/api/v1/quarantine/{id}")),
        ] {
            let resp = api.send(method, &path, &who, None, &[]).await;
            assert_eq!(
                (resp.status, resp.code().as_str()),
                (403, "forbidden"),
                "{method} {path} as {who:?}: {}",
                resp.text()
            );
        }
    }
    // Nothing changed: the record is still there, whole.
    let raw = api
        .get(&format!("/api/v1/quarantine/{id}/raw"), &admin.auth())
        .await;
    raw.expect(200, None);
    assert_eq!(raw.body, b"{\"schema\": 1, broken");
    r.hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_and_bogus_credentials_are_refused_on_every_protected_route() {
    let r = start(oas(), false).await;
    let c = fill(&r).await;
    let api = &r.api;
    let bogus = [
        Auth::Anon,
        Auth::Cookie {
            session: "not-a-session".into(),
            csrf: Some("nope".into()),
        },
        Auth::Bearer("not-a-token".into()),
    ];
    for (method, path, body) in protected_routes(&c) {
        for auth in &bogus {
            let resp = api.send(method, &path, auth, body.as_ref(), &[]).await;
            assert_eq!(
                (resp.status, resp.code().as_str()),
                (401, "unauthenticated"),
                "{method} {path} as {auth:?}: {}",
                resp.text()
            );
        }
    }
    // Nothing changed: the case is still waiting for acknowledgement, no report opened a case,
    // the watchlist is as it was.
    let admin = api.login(ADMIN).await;
    assert_eq!(api.state(&c.a, &admin.auth()).await, "dispatched");
    let all = api.list_ids("limit=500", &admin.auth()).await;
    assert_eq!(all.len(), 5, "{all:?}");
    let wl = api.get("/api/v1/watchlist", &admin.auth()).await.json();
    assert!(wl["entries"].as_array().unwrap().is_empty(), "{wl}");
    let silences = api.get("/api/v1/silences", &admin.auth()).await.json();
    assert_eq!(silences["silences"], json!([]), "no silence was made");
    // The public ones answer anonymously.
    api.get("/api/v1/openapi.json", &Auth::Anon)
        .await
        .expect(200, None);
    api.post(
        "/api/v1/auth/login",
        &Auth::Anon,
        &json!({"username": ADMIN, "password": password(ADMIN)}),
    )
    .await
    .expect(200, None);
    api.post(
        "/api/v1/auth/tokens",
        &Auth::Anon,
        &json!({"username": ADMIN, "password": password(ADMIN), "label": "t"}),
    )
    .await
    .expect(201, None);
    r.hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grid_member_sees_and_touches_only_the_cases_of_their_own_micro_grid() {
    let r = start(oas(), false).await;
    let c = fill(&r).await;
    let api = &r.api;
    let a = api.login(MEMBER_A).await;
    let b = api.login(MEMBER_B).await;

    // A puts a photo on its own case (so there is a photo of micro-grid A to ask for).
    let resp = api
        .act(
            &c.a,
            &a.auth(),
            json!({"action": "comment", "note": "现场照片", "photo": JPEG_B64}),
        )
        .await;
    resp.expect(200, None);
    let photo = resp.json()["photos"][0]["id"]
        .as_str()
        .expect("the comment's photo is listed")
        .to_owned();
    api.get(&format!("/api/v1/photos/{photo}"), &a.auth())
        .await
        .expect(200, None);
    api.get(&format!("/api/v1/alerts/{}/snapshot", c.a_alert), &a.auth())
        .await
        .expect(200, None);

    // Lists: each member sees its own micro-grid's cases and no other.
    let seen_a = api.list_ids("limit=500", &a.auth()).await;
    let seen_b = api.list_ids("limit=500", &b.auth()).await;
    assert!(
        seen_a.contains(&c.a) && seen_a.contains(&c.a2),
        "{seen_a:?}"
    );
    assert!(
        !seen_a.contains(&c.b) && !seen_a.contains(&c.t2),
        "{seen_a:?}"
    );
    assert_eq!(seen_b, vec![c.b.clone()]);
    let total_b = api.get("/api/v1/cases", &b.auth()).await.json()["total"].clone();
    assert_eq!(total_b, json!(1), "total counts only matches in scope");
    // Filtering on a cell out of scope is refused, not silently empty.
    api.get(&format!("/api/v1/cases?cell={M01}"), &b.auth())
        .await
        .expect(403, Some("forbidden"));
    api.get(&format!("/api/v1/cases?cell={M02}"), &b.auth())
        .await
        .expect(200, None);

    // B can read, snapshot, photo or act on nothing of A's.
    api.get(&format!("/api/v1/cases/{}", c.a), &b.auth())
        .await
        .expect(403, Some("forbidden"));
    api.get(&format!("/api/v1/alerts/{}/snapshot", c.a_alert), &b.auth())
        .await
        .expect(403, Some("forbidden"));
    api.get(&format!("/api/v1/photos/{photo}"), &b.auth())
        .await
        .expect(403, Some("forbidden"));
    for action in [
        json!({"action": "acknowledge"}),
        json!({"action": "comment", "note": "not mine"}),
        json!({"action": "resolve", "note": "not mine"}),
    ] {
        api.act(&c.a, &b.auth(), action)
            .await
            .expect(403, Some("forbidden"));
    }
    let detail = api
        .get(&format!("/api/v1/cases/{}", c.a), &a.auth())
        .await
        .json();
    assert_eq!(detail["case"]["state"], "dispatched");
    assert!(
        detail["audit"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["note"] != "not mine"),
        "B's refused comment left no trace: {}",
        detail["audit"]
    );
    // And the reverse: A cannot read B's.
    api.get(&format!("/api/v1/cases/{}", c.b), &a.auth())
        .await
        .expect(403, Some("forbidden"));
    // Unknown ids are 404 even for admins, never a leak of 403 vs 404 to members of the scope.
    let admin = api.login(ADMIN).await;
    api.get("/api/v1/cases/C-doesnotexist", &admin.auth())
        .await
        .expect(404, Some("not_found"));
    r.hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_township_operator_sees_its_township_and_not_another() {
    let r = start(oas(), false).await;
    let c = fill(&r).await;
    let api = &r.api;
    let op = api.login(TOWNSHIP_OP).await;
    let county = api.login(COUNTY_OP).await;

    let seen = api.list_ids("limit=500", &op.auth()).await;
    for id in [&c.a, &c.a2, &c.b, &c.w] {
        assert!(seen.contains(id), "{id} missing from {seen:?}");
    }
    assert!(!seen.contains(&c.t2), "{seen:?}");
    let county_seen = api.list_ids("limit=500", &county.auth()).await;
    assert!(county_seen.contains(&c.t2), "{county_seen:?}");
    assert_eq!(county_seen.len(), 5);

    api.get(&format!("/api/v1/cases/{}", c.t2), &op.auth())
        .await
        .expect(403, Some("forbidden"));
    api.act(&c.t2, &op.auth(), json!({"action": "acknowledge"}))
        .await
        .expect(403, Some("forbidden"));
    api.get(&format!("/api/v1/cases?cell={GAOQIAO}"), &op.auth())
        .await
        .expect(403, Some("forbidden"));
    api.get(&format!("/api/v1/cases?cell={SHISHAN}"), &op.auth())
        .await
        .expect(200, None);
    assert_eq!(api.state(&c.t2, &county.auth()).await, "dispatched");
    // The other township's operator and grid member see it, and nothing of 狮山镇.
    let other = api.login(OTHER_OP).await;
    let member = api.login(MEMBER_OTHER).await;
    for s in [&other, &member] {
        assert_eq!(
            api.list_ids("limit=500", &s.auth()).await,
            vec![c.t2.clone()]
        );
        api.get(&format!("/api/v1/cases/{}", c.a), &s.auth())
            .await
            .expect(403, Some("forbidden"));
        api.get(&format!("/api/v1/alerts/{}/snapshot", c.a_alert), &s.auth())
            .await
            .expect(403, Some("forbidden"));
        api.act(&c.b, &s.auth(), json!({"action": "acknowledge"}))
            .await
            .expect(403, Some("forbidden"));
    }
    assert_eq!(api.state(&c.b, &op.auth()).await, "dispatched");
    // The county operator may act on it.
    api.act(&c.t2, &county.auth(), json!({"action": "acknowledge"}))
        .await
        .expect(200, None);
    r.hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_may_not_close_reopen_extend_or_change_the_watchlist() {
    let r = start(oas(), false).await;
    let c = fill(&r).await;
    let api = &r.api;
    let m = api.login(MEMBER_A).await;
    let op = api.login(TOWNSHIP_OP).await;

    // A member works its case up to resolved.
    api.act(&c.a, &m.auth(), json!({"action": "acknowledge"}))
        .await
        .expect(200, None);
    let until = protocol::UtcMillis::now().0 + 3_600_000;
    api.act(
        &c.a,
        &m.auth(),
        json!({"action": "extend", "until": until, "note": "需要更多时间"}),
    )
    .await
    .expect(403, Some("forbidden"));
    api.act(&c.a, &m.auth(), json!({"action": "start_handling"}))
        .await
        .expect(200, None);
    api.act(
        &c.a,
        &m.auth(),
        json!({"action": "resolve", "note": "已处理"}),
    )
    .await
    .expect(200, None);
    // Closing and reopening are not a member's.
    api.act(&c.a, &m.auth(), json!({"action": "close", "note": "ok"}))
        .await
        .expect(403, Some("forbidden"));
    api.act(
        &c.a,
        &m.auth(),
        json!({"action": "reopen", "note": "again"}),
    )
    .await
    .expect(403, Some("forbidden"));
    assert_eq!(api.state(&c.a, &m.auth()).await, "resolved");
    // An operator of the township may.
    let d = api
        .act(
            &c.a,
            &op.auth(),
            json!({"action": "reopen", "note": "复查未完成"}),
        )
        .await;
    d.expect(200, None);
    assert_eq!(api.state(&c.a, &m.auth()).await, "handling");
    let until = ms_of(&d.json()["case"]["deadline"]["at"]) + 3_600_000;
    let d = api
        .act(
            &c.a,
            &op.auth(),
            json!({"action": "extend", "until": until, "note": "延期"}),
        )
        .await;
    d.expect(200, None);
    assert_eq!(ms_of(&d.json()["case"]["deadline"]["at"]), until);

    // Watchlist changes.
    let add = json!({"tag": "E004000011112222", "case_ref": "JJ-1", "note": "n"});
    api.post("/api/v1/watchlist", &m.auth(), &add)
        .await
        .expect(403, Some("forbidden"));
    api.post("/api/v1/watchlist", &op.auth(), &add)
        .await
        .expect(201, None);
    api.delete("/api/v1/watchlist/E004000011112222", &m.auth())
        .await
        .expect(403, Some("forbidden"));
    let wl = api.get("/api/v1/watchlist", &op.auth()).await.json();
    assert_eq!(
        wl["entries"].as_array().unwrap().len(),
        1,
        "the member's delete removed nothing: {wl}"
    );
    api.delete("/api/v1/watchlist/E004000011112222", &op.auth())
        .await
        .expect(200, None);
    let wl = api.get("/api/v1/watchlist", &op.auth()).await.json();
    assert!(wl["entries"].as_array().unwrap().is_empty(), "{wl}");
    // A member may file a patrol report.
    api.post(
        "/api/v1/reports",
        &m.auth(),
        &json!({"kind": "patrol", "category": "fire_hazard", "note": "楼道堆放杂物",
                "location": {"lon": DEMO_LON, "lat": DEMO_LAT}}),
    )
    .await
    .expect(201, None);
    r.hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_requests_that_change_things_need_the_csrf_token_and_bearer_ones_do_not() {
    let r = start(oas(), false).await;
    let c = fill(&r).await;
    let api = &r.api;
    let op = api.login(COUNTY_OP).await;

    // Actions.
    for auth in [op.no_csrf(), op.bad_csrf()] {
        api.act(&c.a, &auth, json!({"action": "acknowledge"}))
            .await
            .expect(403, Some("csrf"));
    }
    assert_eq!(api.state(&c.a, &op.auth()).await, "dispatched");
    let d = api
        .get(&format!("/api/v1/cases/{}", c.a), &op.auth())
        .await
        .json();
    assert!(
        d["audit"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["action"] != "acknowledge"),
        "{}",
        d["audit"]
    );
    api.act(&c.a, &op.auth(), json!({"action": "acknowledge"}))
        .await
        .expect(200, None);
    assert_eq!(api.state(&c.a, &op.auth()).await, "acknowledged");

    // Reports.
    let before = api.get("/api/v1/cases", &op.auth()).await.json()["total"]
        .as_u64()
        .unwrap();
    let report = json!({"kind": "patrol", "category": "dispute", "note": "邻里纠纷",
                        "location": {"lon": DEMO_LON, "lat": DEMO_LAT}});
    for auth in [op.no_csrf(), op.bad_csrf()] {
        api.post("/api/v1/reports", &auth, &report)
            .await
            .expect(403, Some("csrf"));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = api.get("/api/v1/cases", &op.auth()).await.json()["total"]
        .as_u64()
        .unwrap();
    assert_eq!(after, before, "a refused report opened no case");

    // Watchlist add and delete.
    let add = json!({"tag": "E004000033334444", "case_ref": "JJ-2", "note": "n"});
    for auth in [op.no_csrf(), op.bad_csrf()] {
        api.post("/api/v1/watchlist", &auth, &add)
            .await
            .expect(403, Some("csrf"));
    }
    let wl = api.get("/api/v1/watchlist", &op.auth()).await.json();
    assert!(wl["entries"].as_array().unwrap().is_empty(), "{wl}");
    api.post("/api/v1/watchlist", &op.auth(), &add)
        .await
        .expect(201, None);
    for auth in [op.no_csrf(), op.bad_csrf()] {
        api.delete("/api/v1/watchlist/E004000033334444", &auth)
            .await
            .expect(403, Some("csrf"));
    }
    let wl = api.get("/api/v1/watchlist", &op.auth()).await.json();
    assert_eq!(wl["entries"].as_array().unwrap().len(), 1, "{wl}");

    // Logout without the token does not log out.
    for auth in [op.no_csrf(), op.bad_csrf()] {
        api.send("POST", "/api/v1/auth/logout", &auth, None, &[])
            .await
            .expect(403, Some("csrf"));
    }
    api.get("/api/v1/me", &op.auth()).await.expect(200, None);

    // Another session's token is not this session's.
    let op2 = api.login(COUNTY_OP).await;
    assert_ne!(op2.csrf, op.csrf, "each session has its own CSRF token");
    let mixed = Auth::Cookie {
        session: op.session.clone(),
        csrf: Some(op2.csrf.clone()),
    };
    api.act(&c.a2, &mixed, json!({"action": "acknowledge"}))
        .await
        .expect(403, Some("csrf"));
    assert_eq!(api.state(&c.a2, &op.auth()).await, "dispatched");

    // /me tells the CSRF token of the cookie session, and null for bearer.
    let me = api.get("/api/v1/me", &op.auth()).await.json();
    assert_eq!(me["csrf"], json!(op.csrf));
    let bearer = Auth::Bearer(api.token(COUNTY_OP).await);
    let me = api.get("/api/v1/me", &bearer).await.json();
    assert_eq!(me["csrf"], serde_json::Value::Null);
    assert_eq!(me["role"], "operator");

    // Bearer: no CSRF token needed.
    api.act(&c.a2, &bearer, json!({"action": "acknowledge"}))
        .await
        .expect(200, None);
    assert_eq!(api.state(&c.a2, &op.auth()).await, "acknowledged");
    api.delete("/api/v1/watchlist/E004000033334444", &bearer)
        .await
        .expect(200, None);
    api.post("/api/v1/reports", &bearer, &report)
        .await
        .expect(201, None);
    // Login needs no CSRF token (it has no session yet): covered by every login above.
    r.hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sixth_wrong_password_is_rate_limited_and_logout_ends_the_session() {
    let r = start(oas(), false).await;
    let api = &r.api;
    let wrong = json!({"username": MEMBER_A, "password": "wrong"});
    for i in 1..=5 {
        let resp = api.post("/api/v1/auth/login", &Auth::Anon, &wrong).await;
        assert_eq!(
            (resp.status, resp.code().as_str()),
            (401, "unauthenticated"),
            "failure {i}: {}",
            resp.text()
        );
        assert!(resp.header("set-cookie").is_none());
    }
    let resp = api.post("/api/v1/auth/login", &Auth::Anon, &wrong).await;
    resp.expect(429, Some("rate_limited"));
    let retry: u64 = resp
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("Retry-After in seconds");
    assert!((1..=900).contains(&retry), "Retry-After {retry}");
    // Until the window passes, even the right password is refused for that username…
    let right = json!({"username": MEMBER_A, "password": password(MEMBER_A)});
    api.post("/api/v1/auth/login", &Auth::Anon, &right)
        .await
        .expect(429, Some("rate_limited"));
    // …and for tokens too.
    api.post(
        "/api/v1/auth/tokens",
        &Auth::Anon,
        &json!({"username": MEMBER_A, "password": password(MEMBER_A), "label": "x"}),
    )
    .await
    .expect(429, Some("rate_limited"));
    // Other usernames are unaffected (and so is this one from another address: see
    // api_logins.rs).
    let s = api.login(MEMBER_B).await;

    // Logout ends the session and clears the cookie.
    api.get("/api/v1/me", &s.auth()).await.expect(200, None);
    let out = api
        .send("POST", "/api/v1/auth/logout", &s.auth(), None, &[])
        .await;
    out.expect(204, None);
    let cleared = out
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("hub_session="))
        .expect("logout clears the cookie");
    assert!(
        cleared.contains("Max-Age=0") || cleared.to_ascii_lowercase().contains("expires="),
        "{cleared}"
    );
    api.get("/api/v1/me", &s.auth())
        .await
        .expect(401, Some("unauthenticated"));
    api.send("POST", "/api/v1/auth/logout", &s.auth(), None, &[])
        .await
        .expect(401, Some("unauthenticated"));
    r.hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_cookie_is_http_only_and_same_site_strict() {
    let r = start(oas(), false).await;
    let resp = r
        .api
        .post(
            "/api/v1/auth/login",
            &Auth::Anon,
            &json!({"username": ADMIN, "password": password(ADMIN)}),
        )
        .await;
    resp.expect(200, None);
    let cookie = resp.header("set-cookie").unwrap();
    assert!(cookie.starts_with("hub_session="), "{cookie}");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attr), "{attr} missing: {cookie}");
    }
    // A wrong password gives no session.
    let resp = r
        .api
        .post(
            "/api/v1/auth/login",
            &Auth::Anon,
            &json!({"username": ADMIN, "password": "nope"}),
        )
        .await;
    resp.expect(401, Some("unauthenticated"));
    let resp = r
        .api
        .post(
            "/api/v1/auth/login",
            &Auth::Anon,
            &json!({"username": "nobody", "password": "nope"}),
        )
        .await;
    resp.expect(401, Some("unauthenticated"));
    r.hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_ends_an_open_live_feed_within_a_second() {
    let r = start(oas(), true).await;
    let s = r.api.login(COUNTY_OP).await;
    let feed = open_feed(&r.api, &s.auth()).await;
    // Another session of the same user keeps its feed.
    let other = r.api.login(COUNTY_OP).await;
    let other_feed = open_feed(&r.api, &other.auth()).await;
    r.api
        .send("POST", "/api/v1/auth/logout", &s.auth(), None, &[])
        .await
        .expect(204, None);
    assert!(
        feed_ends_within(feed, Duration::from_secs(1)).await,
        "the logged-out session's feed is still open after 1 s"
    );
    assert!(!feed_ends_within(other_feed, Duration::from_millis(300)).await);
    r.hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_list_and_revoke_sessions_and_app_tokens_which_expire() {
    let r = start(oas(), true).await;
    let api = &r.api;
    let admin = api.login(ADMIN).await;
    let token = |days: Option<u64>| {
        let mut body =
            json!({"username": MEMBER_A, "password": password(MEMBER_A), "label": "phone"});
        if let Some(d) = days {
            body["expires_in_days"] = json!(d);
        }
        body
    };
    // App tokens expire: 30 days by default, as asked up to 365, no more.
    let day = 86_400_000i64;
    let t = api
        .post("/api/v1/auth/tokens", &Auth::Anon, &token(None))
        .await;
    t.expect(201, None);
    let left = ms_of(&t.json()["expires_at"]) - protocol::UtcMillis::now().0;
    assert!((29 * day..=30 * day).contains(&left), "{left}");
    let t = api
        .post("/api/v1/auth/tokens", &Auth::Anon, &token(Some(2)))
        .await;
    t.expect(201, None);
    let left = ms_of(&t.json()["expires_at"]) - protocol::UtcMillis::now().0;
    assert!((day..=2 * day).contains(&left), "{left}");
    let bearer = t.json()["token"].as_str().unwrap().to_owned();
    let r400 = api
        .post("/api/v1/auth/tokens", &Auth::Anon, &token(Some(366)))
        .await;
    r400.expect(400, Some("invalid"));
    assert_eq!(r400.json()["error"]["field"], "expires_in_days");
    api.post(
        "/api/v1/auth/login",
        &Auth::Anon,
        &json!({"username": MEMBER_A, "password": password(MEMBER_A), "expires_in_days": 3}),
    )
    .await
    .expect(400, Some("invalid"));

    // Only admins list and revoke.
    let member = Auth::Bearer(bearer.clone());
    api.get("/api/v1/sessions", &member)
        .await
        .expect(403, Some("forbidden"));
    let list = api.get("/api/v1/sessions", &admin.auth()).await;
    list.expect(200, None);
    let sessions = list.json()["sessions"].as_array().unwrap().clone();
    let mine: Vec<_> = sessions.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(mine.len(), 1, "{sessions:?}");
    assert_eq!(
        (mine[0]["login"].as_str(), mine[0]["via"].as_str()),
        (Some(ADMIN), Some("cookie"))
    );
    let phone = sessions
        .iter()
        .find(|s| {
            s["via"] == "bearer"
                && s["label"] == "phone"
                && ms_of(&s["expires"]) - protocol::UtcMillis::now().0 <= 2 * day
        })
        .expect("the 2-day app token is listed");
    let id = phone["id"].as_str().unwrap();
    assert!(
        !sessions.iter().any(|s| s["id"] == bearer.as_str()),
        "ids are not tokens"
    );
    api.delete(&format!("/api/v1/sessions/{id}"), &member)
        .await
        .expect(403, Some("forbidden"));

    // Revoking ends the token and its live feed.
    let feed = open_feed(api, &member).await;
    api.delete(&format!("/api/v1/sessions/{id}"), &admin.auth())
        .await
        .expect(204, None);
    assert!(feed_ends_within(feed, Duration::from_secs(1)).await);
    api.get("/api/v1/me", &member)
        .await
        .expect(401, Some("unauthenticated"));
    api.delete(&format!("/api/v1/sessions/{id}"), &admin.auth())
        .await
        .expect(404, Some("not_found"));
    api.delete("/api/v1/sessions/not-an-id", &admin.auth())
        .await
        .expect(400, Some("invalid"));
    r.api.oas.assert_no_violations();
    r.hub.stop().await;
}

/// A photo is stored only with an action the hub accepts: one the lifecycle refuses (409) or
/// whose note is too long (400) leaves nothing in the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_action_stores_no_photo_and_notes_are_bounded() {
    let r = start(oas(), false).await;
    let c = fill(&r).await;
    let api = &r.api;
    let op = api.login(TOWNSHIP_OP).await;
    let photos = || r.hub.store.photos().count();
    let before = photos();

    // Reopening a case that is not resolved is refused by the lifecycle, after the caller's
    // scope and role were found fine.
    api.act(
        &c.a,
        &op.auth(),
        json!({"action": "reopen", "note": "复查", "photo": JPEG_B64}),
    )
    .await
    .expect(409, Some("conflict"));
    assert_eq!(photos(), before, "a refused action left its photo behind");

    let long = "长".repeat(4097);
    api.act(
        &c.a,
        &op.auth(),
        json!({"action": "comment", "note": long, "photo": JPEG_B64}),
    )
    .await
    .expect(400, Some("invalid"));
    assert_eq!(photos(), before, "an invalid note's photo was stored");

    // Accepted: the photo is there, and the case names it.
    let ok = api
        .act(
            &c.a,
            &op.auth(),
            json!({"action": "comment", "note": "长".repeat(4096), "photo": JPEG_B64}),
        )
        .await;
    ok.expect(200, None);
    assert_eq!(photos(), before + 1, "the photo is recorded");
    assert!(
        r.hub.store.blobs().bytes(hub::store::BlobKind::Photo) > 0,
        "its JPEG is a blob"
    );
    let pid = ok.json()["photos"][0]["id"].as_str().unwrap().to_owned();
    api.get(&format!("/api/v1/photos/{pid}"), &op.auth())
        .await
        .expect(200, None);
    r.hub.stop().await;
}

/// The watchlist commands a site's client got within `within`: (op, tag) pairs.
async fn commands_for(site: &mut Client, within: Duration) -> Vec<(String, String)> {
    use protocol::command::CommandBody;
    let mut got = Vec::new();
    while let Some((_, cmd)) = site.next_command(within).await {
        got.push(match cmd.body {
            CommandBody::WatchAdd { tag, .. } => ("add".to_owned(), tag),
            CommandBody::WatchRemove { tag } => ("remove".to_owned(), tag),
            other => panic!("an unexpected command {other:?}"),
        });
    }
    got
}

fn tags_of(list: &serde_json::Value) -> Vec<String> {
    list["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["tag"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_see_and_change_only_their_cells_watchlist_and_every_change_is_audited() {
    const T1: &str = "E0040000000000A1";
    const T2: &str = "E0040000000000B2";
    const T3: &str = "E0040000000000C3";
    let mut r = start(oas(), true).await;
    r.site.subscribe(&format!("se/v1/site/{SITE}/cmd")).await;
    r.other
        .subscribe(&format!("se/v1/site/{OTHER_SITE}/cmd"))
        .await;
    let api = &r.api;
    let shishan = api.login(TOWNSHIP_OP).await;
    let gaoqiao = api.login(OTHER_OP).await;
    let county = api.login(COUNTY_OP).await;
    let admin = api.login(ADMIN).await;
    let wait = Duration::from_millis(1500);

    // 狮山镇's operator watchlists a bike (their only cell by default): only their site is told.
    let added = api
        .post(
            "/api/v1/watchlist",
            &shishan.auth(),
            &json!({"tag": T1, "case_ref": "狮公(刑)[2026]1号", "note": "红色电动车"}),
        )
        .await;
    added.expect(201, None);
    assert_eq!(added.json()["sites"], 1, "{}", added.text());
    assert_eq!(added.json()["entry"]["cell"], SHISHAN);
    assert_eq!(
        commands_for(&mut r.site, wait).await,
        [("add".into(), T1.into())]
    );
    assert_eq!(commands_for(&mut r.other, wait).await, []);

    // 高桥镇's operator neither sees it nor can touch it, and learns nothing of its case.
    assert!(tags_of(&api.get("/api/v1/watchlist", &gaoqiao.auth()).await.json()).is_empty());
    api.delete(&format!("/api/v1/watchlist/{T1}"), &gaoqiao.auth())
        .await
        .expect(404, Some("not_found"));
    let taken = api
        .post(
            "/api/v1/watchlist",
            &gaoqiao.auth(),
            &json!({"tag": T1, "case_ref": "高公[2026]9号", "cell": GAOQIAO}),
        )
        .await;
    taken.expect(409, Some("conflict"));
    assert!(!taken.text().contains("狮公"), "{}", taken.text());
    api.post(
        "/api/v1/watchlist",
        &gaoqiao.auth(),
        &json!({"tag": T2, "case_ref": "高公[2026]9号", "cell": SHISHAN}),
    )
    .await
    .expect(403, Some("forbidden"));
    api.post(
        "/api/v1/watchlist",
        &gaoqiao.auth(),
        &json!({"tag": T2, "case_ref": "高公[2026]9号", "cell": "NO-SUCH-CELL"}),
    )
    .await
    .expect(400, Some("invalid"));
    // In their own township it goes to their site.
    api.post(
        "/api/v1/watchlist",
        &gaoqiao.auth(),
        &json!({"tag": T2, "case_ref": "高公[2026]9号", "cell": OTHER_CELL}),
    )
    .await
    .expect(201, None);
    assert_eq!(
        commands_for(&mut r.other, wait).await,
        [("add".into(), T2.into())]
    );
    assert_eq!(commands_for(&mut r.site, wait).await, []);

    // The admin's entry without a cell is hub-wide: every site, only admins see it.
    let everywhere = api
        .post(
            "/api/v1/watchlist",
            &admin.auth(),
            &json!({"tag": T3, "case_ref": "州公[2026]3号"}),
        )
        .await;
    everywhere.expect(201, None);
    assert_eq!(everywhere.json()["sites"], 2);
    assert!(everywhere.json()["entry"]["cell"].is_null());
    assert_eq!(
        commands_for(&mut r.site, wait).await,
        [("add".into(), T3.into())]
    );
    assert_eq!(
        commands_for(&mut r.other, wait).await,
        [("add".into(), T3.into())]
    );

    assert_eq!(
        tags_of(&api.get("/api/v1/watchlist", &shishan.auth()).await.json()),
        [T1]
    );
    assert_eq!(
        tags_of(&api.get("/api/v1/watchlist", &gaoqiao.auth()).await.json()),
        [T2]
    );
    assert_eq!(
        tags_of(&api.get("/api/v1/watchlist", &county.auth()).await.json()),
        [T1, T2],
        "the county sees its townships' entries, not the hub-wide one"
    );
    assert_eq!(
        tags_of(&api.get("/api/v1/watchlist", &admin.auth()).await.json()),
        [T1, T2, T3]
    );

    // 狮山镇 narrows its entry to micro-grid B (no site registered there): its site stops
    // watching. Then it removes the entry, saying why.
    let changed = api
        .post(
            "/api/v1/watchlist",
            &shishan.auth(),
            &json!({"tag": T1, "case_ref": "狮公(刑)[2026]1号", "note": "红色电动车", "cell": M02}),
        )
        .await;
    changed.expect(200, None);
    assert_eq!(changed.json()["sites"], 0);
    assert_eq!(
        commands_for(&mut r.site, wait).await,
        [("remove".into(), T1.into())]
    );
    api.delete(
        &format!("/api/v1/watchlist/{T1}?reason=车辆已找回"),
        &shishan.auth(),
    )
    .await
    .expect(200, None);
    // Bounded texts.
    api.post(
        "/api/v1/watchlist",
        &shishan.auth(),
        &json!({"tag": T1, "case_ref": "x".repeat(65)}),
    )
    .await
    .expect(400, Some("invalid"));
    api.delete(
        &format!("/api/v1/watchlist/{T2}?reason={}", "x".repeat(501)),
        &gaoqiao.auth(),
    )
    .await
    .expect(400, Some("invalid"));

    // The audit log: admins only; every change, newest first, with who, when, the case number;
    // refused attempts changed nothing and left nothing.
    for who in [&shishan, &county] {
        api.get("/api/v1/watchlist/audit", &who.auth())
            .await
            .expect(403, Some("forbidden"));
    }
    let log = api.get("/api/v1/watchlist/audit", &admin.auth()).await;
    log.expect(200, None);
    let records = log.json()["records"].as_array().unwrap().clone();
    let summary: Vec<(String, String, String)> = records
        .iter()
        .map(|r| {
            (
                r["action"].as_str().unwrap().to_owned(),
                r["tag"].as_str().unwrap().to_owned(),
                r["login"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let row = |a: &str, t: &str, l: &str| (a.to_owned(), t.to_owned(), l.to_owned());
    assert_eq!(
        summary,
        [
            row("removed", T1, TOWNSHIP_OP),
            row("changed", T1, TOWNSHIP_OP),
            row("added", T3, ADMIN),
            row("added", T2, OTHER_OP),
            row("added", T1, TOWNSHIP_OP),
        ]
    );
    assert_eq!(records[0]["case_ref"], "狮公(刑)[2026]1号");
    assert_eq!(records[0]["reason"], "车辆已找回");
    assert_eq!(records[1]["previous"]["cell"], SHISHAN);
    assert_eq!(records[1]["cell"], M02);
    assert!(records.iter().all(|r| r["at"].is_string()));
    // Paged, and by tag.
    let first = api
        .get("/api/v1/watchlist/audit?limit=2", &admin.auth())
        .await
        .json();
    assert_eq!(first["records"].as_array().unwrap().len(), 2);
    let before = first["next_before"].as_str().unwrap();
    let rest = api
        .get(
            &format!("/api/v1/watchlist/audit?limit=10&before={before}"),
            &admin.auth(),
        )
        .await
        .json();
    assert_eq!(rest["records"].as_array().unwrap().len(), 3);
    assert!(rest["next_before"].is_null());
    let of_t2 = api
        .get(&format!("/api/v1/watchlist/audit?tag={T2}"), &admin.auth())
        .await
        .json();
    assert_eq!(of_t2["records"].as_array().unwrap().len(), 1);
    r.hub.stop().await;
}
