//! Shared set-up for the HTTP API tests (`api_openapi`, `api_auth`): an HTTP client that
//! validates every response against the OpenAPI document (generated from the handlers' types,
//! `hub::api::openapi_json`) as it goes, logins for the test users, and a hub filled with cases of several cells over real
//! MQTT.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::common::*;
use protocol::alert::{Snapshot, TagInfo};
use protocol::{AlertKind, AlertSource, Detection, Severity, UtcMillis};

// ---------------------------------------------------------------------------------------------
// Test users (the API author's test users file, `hub/tests/integration/common.rs`).

/// Logins of the test users (`common::USERS`; passwords `common::password(login)`).
pub const ADMIN: &str = "admin";
/// Operator of the county centre (532329).
pub const COUNTY_OP: &str = "op-county";
/// Operator of 狮山镇 (532329101), the township of M01 and M02.
pub const TOWNSHIP_OP: &str = "op-shishan";
/// Operator of 高桥镇 (532329102), another township.
pub const OTHER_OP: &str = "op-other";
/// Grid member of micro-grid A (532329101001-G01-M01).
pub const MEMBER_A: &str = "m-m01";
/// Grid member of micro-grid B (532329101001-G01-M02): added by [`start`].
pub const MEMBER_B: &str = "m-m02";
/// Grid member of a grid of the other township (532329102001-G01).
pub const MEMBER_OTHER: &str = "m-other";

/// Micro-grid B and a point inside it.
pub const M02: &str = "532329101001-G01-M02";
pub const M02_LON: f64 = 102.40397;
pub const M02_LAT: f64 = 25.5319;
/// The township of M01/M02, and another one.
pub const SHISHAN: &str = "532329101";
pub const GAOQIAO: &str = "532329102";
/// The cell `wd-other-002` is registered in (under 高桥镇).
pub const OTHER_SITE: &str = "wd-other-002";
pub const OTHER_CELL: &str = "532329102001-G01";

/// A real 16×16 JPEG.
pub const JPEG_B64: &str = "/9j/4AAQSkZJRgABAgAAAQABAAD//gAQTGF2YzU5LjM3LjEwMAD/2wBDAAgUFBcUFxsbGxsbGyAeICEhISAgICAhISEkJCQqKiokJCQhISQkKCgqKi4vLisrKisvLzIyMjw8OTlGRkhWVmf/xABMAAEBAAAAAAAAAAAAAAAAAAAABgEBAQAAAAAAAAAAAAAAAAAABgcQAQAAAAAAAAAAAAAAAAAAAAARAQAAAAAAAAAAAAAAAAAAAAD/wAARCAAQABADASIAAhEAAxEA/9oADAMBAAIRAxEAPwCLAFF/f//Z";

pub fn jpeg() -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(JPEG_B64)
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// The OpenAPI document as a validator.

/// The document the hub serves, generated from its types.
pub fn doc() -> &'static str {
    hub::api::openapi_json()
}

/// One response the tests saw: (path template, method, status).
pub type Seen = (String, String, u16);

/// The document, compiled validators per response, and what was seen.
pub struct Oas {
    pub doc: Value,
    validators: Mutex<HashMap<String, Arc<jsonschema::Validator>>>,
    pub seen: Mutex<BTreeSet<Seen>>,
    /// Responses that did not match the document, collected (not panicked on) so one run
    /// lists every difference; the test asserts it is empty at the end.
    pub violations: Mutex<BTreeSet<String>>,
}

fn escape_pointer(s: &str) -> String {
    s.replace('~', "~0")
        .replace('/', "~1")
        .replace('{', "%7B")
        .replace('}', "%7D")
}

impl Oas {
    pub fn load() -> Self {
        Self {
            doc: serde_json::from_str(doc()).expect("the document is JSON"),
            validators: Mutex::new(HashMap::new()),
            seen: Mutex::new(BTreeSet::new()),
            violations: Mutex::new(BTreeSet::new()),
        }
    }

    /// The documented path template a concrete path (without query) falls under.
    pub fn template_of(&self, path: &str) -> Option<String> {
        let segs: Vec<&str> = path.split('/').collect();
        let paths = self.doc["paths"].as_object().unwrap();
        // Literal templates win over ones with parameters.
        let mut best: Option<(usize, &String)> = None;
        for t in paths.keys() {
            let ts: Vec<&str> = t.split('/').collect();
            if ts.len() != segs.len() {
                continue;
            }
            let mut params = 0;
            let ok = ts.iter().zip(&segs).all(|(a, b)| {
                if a.starts_with('{') && a.ends_with('}') {
                    params += 1;
                    !b.is_empty()
                } else {
                    a == b
                }
            });
            if ok && best.is_none_or(|(p, _)| params < p) {
                best = Some((params, t));
            }
        }
        best.map(|(_, t)| t.clone())
    }

    /// The response object documented for (template, method, status), `$ref` resolved, and
    /// the key it was found under (the status or `default`).
    pub fn response(&self, template: &str, method: &str, status: u16) -> Option<(String, Value)> {
        let responses = self.doc["paths"][template][method]["responses"].as_object()?;
        let key = status.to_string();
        let (k, r) = match responses.get(&key) {
            Some(r) => (key, r),
            None => ("default".to_owned(), responses.get("default")?),
        };
        let r = match r.get("$ref").and_then(Value::as_str) {
            Some(p) => self
                .doc
                .pointer(p.trim_start_matches('#'))
                .unwrap_or_else(|| panic!("dangling {p}"))
                .clone(),
            None => r.clone(),
        };
        Some((k, r))
    }

    /// A validator for the schema at `pointer` (a JSON pointer into the document), with the
    /// whole document around it so `#/components/...` references resolve.
    pub fn validator(&self, pointer: &str) -> Arc<jsonschema::Validator> {
        let mut cache = self.validators.lock().unwrap();
        if let Some(v) = cache.get(pointer) {
            return v.clone();
        }
        let mut root = self.doc.clone();
        root["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
        root["$ref"] = json!(format!("#{pointer}"));
        let v = Arc::new(
            jsonschema::draft202012::options()
                .should_validate_formats(true)
                .build(&root)
                .unwrap_or_else(|e| panic!("schema at {pointer} does not compile: {e}")),
        );
        cache.insert(pointer.to_owned(), v.clone());
        v
    }

    /// The errors of `value` against the schema at `pointer` (`instance path: message`).
    pub fn errors_at(&self, pointer: &str, value: &Value) -> Vec<String> {
        let v = self.validator(pointer);
        v.iter_errors(value)
            .map(|e| {
                let mut m = e.to_string();
                if m.len() > 300 {
                    m.truncate(300);
                    m.push('…');
                }
                format!("{}: {m}", e.instance_path())
            })
            .collect()
    }

    /// Validates `value` against the schema at `pointer`; panics listing every error.
    pub fn validate_at(&self, pointer: &str, value: &Value, what: &str) {
        let errors = self.errors_at(pointer, value);
        assert!(
            errors.is_empty(),
            "{what}: does not match {pointer}:\n  {}\nbody: {}",
            errors.join("\n  "),
            serde_json::to_string_pretty(value).unwrap()
        );
    }

    /// Records a difference between a response and the document.
    pub fn violation(&self, msg: String) {
        self.violations.lock().unwrap().insert(msg);
    }

    /// Records the errors of `value` against a component schema (e.g. `Event`).
    pub fn record_component(&self, name: &str, value: &Value, what: &str) {
        for e in self.errors_at(&format!("/components/schemas/{name}"), value) {
            self.violation(format!("{what} ({name}) {e}"));
        }
    }

    /// Panics listing every recorded difference, if any.
    pub fn assert_no_violations(&self) {
        let v = self.violations.lock().unwrap();
        assert!(
            v.is_empty(),
            "{} difference(s) between the API and the document:\n  {}",
            v.len(),
            v.iter().cloned().collect::<Vec<_>>().join("\n  ")
        );
    }

    /// Validates a component schema by name (e.g. `Event`).
    pub fn validate_component(&self, name: &str, value: &Value, what: &str) {
        self.validate_at(&format!("/components/schemas/{name}"), value, what);
    }

    /// Checks one response against the document: the status is documented for the route
    /// (4xx explicitly; 5xx may fall under `default`), the content type is a documented one,
    /// and a JSON body matches the documented schema. Differences are recorded in
    /// `violations`.
    pub fn check(&self, method: &str, path: &str, resp: &Resp) {
        let Some(template) = self.template_of(path) else {
            self.violation(format!(
                "{method} {path}: not a documented path (status {})",
                resp.status
            ));
            return;
        };
        let m = method.to_ascii_lowercase();
        if self.doc["paths"][&template].get(&m).is_none() {
            self.violation(format!(
                "{method} {template}: method not documented (status {})",
                resp.status
            ));
            return;
        }
        self.seen
            .lock()
            .unwrap()
            .insert((template.clone(), m.clone(), resp.status));
        let what = format!("{method} {template} → {}", resp.status);
        let Some((key, r)) = self.response(&template, &m, resp.status) else {
            self.violation(format!("{what}: status not documented: {}", resp.text()));
            return;
        };
        if key == "default" && resp.status < 500 {
            self.violation(format!(
                "{what}: status not documented (only `default` matched): {}",
                resp.text()
            ));
        }
        let Some(content) = r.get("content").and_then(Value::as_object) else {
            if !resp.body.is_empty() {
                self.violation(format!(
                    "{what}: documented without content, got {} bytes",
                    resp.body.len()
                ));
            }
            return;
        };
        let ctype = resp.content_type();
        let media = ctype.split(';').next().unwrap_or("").trim().to_owned();
        let key = if content.contains_key(&media) {
            media.clone()
        } else if content.contains_key("*/*") {
            "*/*".to_owned()
        } else {
            self.violation(format!(
                "{what}: content type {ctype:?} not documented ({:?})",
                content.keys().collect::<Vec<_>>()
            ));
            return;
        };
        if media == "application/json" || media.ends_with("+json") {
            let Ok(body) = serde_json::from_slice::<Value>(&resp.body) else {
                self.violation(format!("{what}: body is not JSON"));
                return;
            };
            let (status_key, _) = self.response(&template, &m, resp.status).unwrap();
            // Point into the response object as written (it may be a `$ref`).
            let raw = &self.doc["paths"][&template][&m]["responses"][&status_key];
            let base = match raw.get("$ref").and_then(Value::as_str) {
                Some(p) => p.trim_start_matches('#').to_owned(),
                None => format!(
                    "/paths/{}/{m}/responses/{status_key}",
                    escape_pointer(&template)
                ),
            };
            let pointer = format!("{base}/content/{}/schema", escape_pointer(&key));
            // One line per schema location: array indices folded, so a field wrong in every
            // row of a list is reported once.
            for e in self.errors_at(&pointer, &body) {
                let (path, msg) = e.split_once(": ").unwrap_or((&e, ""));
                let folded: String = path
                    .split('/')
                    .map(|seg| {
                        if seg.parse::<usize>().is_ok() {
                            "*"
                        } else {
                            seg
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("/");
                let mut v = self.violations.lock().unwrap();
                let key = format!("{what} {folded}: ");
                if !v.iter().any(|x| x.starts_with(&key)) {
                    v.insert(format!("{key}{msg}"));
                }
            }
        } else if media == "image/jpeg" && !resp.body.starts_with(&[0xff, 0xd8]) {
            self.violation(format!("{what}: not a JPEG"));
        }
    }

    /// Every (template, method, status) the document lists (`default` excluded).
    pub fn documented(&self) -> BTreeSet<Seen> {
        let mut out = BTreeSet::new();
        for (t, item) in self.doc["paths"].as_object().unwrap() {
            for (m, op) in item.as_object().unwrap() {
                if !["get", "post", "put", "patch", "delete"].contains(&m.as_str()) {
                    continue;
                }
                for s in op["responses"].as_object().unwrap().keys() {
                    if let Ok(s) = s.parse() {
                        out.insert((t.clone(), m.clone(), s));
                    }
                }
            }
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP.

/// How a request authenticates.
#[derive(Debug, Clone)]
pub enum Auth {
    Anon,
    /// The session cookie, with this `X-CSRF-Token` header value (if any).
    Cookie {
        session: String,
        csrf: Option<String>,
    },
    Bearer(String),
}

/// A logged-in cookie session.
#[derive(Debug, Clone)]
pub struct Session {
    pub session: String,
    pub csrf: String,
    pub me: Value,
}

impl Session {
    /// The cookie with the right CSRF token.
    pub fn auth(&self) -> Auth {
        Auth::Cookie {
            session: self.session.clone(),
            csrf: Some(self.csrf.clone()),
        }
    }

    /// The cookie without any CSRF token.
    pub fn no_csrf(&self) -> Auth {
        Auth::Cookie {
            session: self.session.clone(),
            csrf: None,
        }
    }

    /// The cookie with a wrong CSRF token.
    pub fn bad_csrf(&self) -> Auth {
        Auth::Cookie {
            session: self.session.clone(),
            csrf: Some(format!("{}x", self.csrf)),
        }
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {}: body is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn content_type(&self) -> String {
        self.header("content-type").unwrap_or_default()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    }

    /// `error.code` of an error body.
    pub fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("not an error body: {}", String::from_utf8_lossy(&self.body)))
            .to_owned()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Records (in `oas`) a difference from the expected status and error code.
    #[track_caller]
    pub fn soft(&self, oas: &Oas, status: u16, code: Option<&str>) -> &Self {
        let at = std::panic::Location::caller();
        let got_code = if self.status >= 400 {
            serde_json::from_slice::<Value>(&self.body)
                .ok()
                .and_then(|v| v["error"]["code"].as_str().map(str::to_owned))
        } else {
            None
        };
        if self.status != status || (code.is_some() && got_code.as_deref() != code) {
            oas.violation(format!(
                "line {}: expected {status} {code:?}, got {} {got_code:?}: {}",
                at.line(),
                self.status,
                String::from_utf8_lossy(&self.body)
                    .chars()
                    .take(300)
                    .collect::<String>()
            ));
        }
        self
    }

    /// Asserts the status (and, for errors, the code), showing the body when it differs.
    #[track_caller]
    pub fn expect(&self, status: u16, code: Option<&str>) -> &Self {
        assert_eq!(self.status, status, "body: {}", self.text());
        if let Some(code) = code {
            assert_eq!(self.code(), code, "body: {}", self.text());
        }
        self
    }
}

/// A client of one hub's HTTP API that checks every response against the document.
pub struct HttpApi {
    pub base: String,
    pub http: reqwest::Client,
    pub oas: Arc<Oas>,
    /// Whether to check responses against the document.
    pub check: bool,
}

impl HttpApi {
    pub fn new(addr: SocketAddr, oas: Arc<Oas>) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        Self {
            base: format!("http://{addr}"),
            http,
            oas,
            check: true,
        }
    }

    /// `method path_and_query` with `auth` and an optional JSON body (or raw bytes).
    pub async fn send(
        &self,
        method: &str,
        path_and_query: &str,
        auth: &Auth,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut rb = self
            .http
            .request(m, format!("{}{path_and_query}", self.base));
        match auth {
            Auth::Anon => {}
            Auth::Cookie { session, csrf } => {
                rb = rb.header("cookie", format!("hub_session={session}"));
                if let Some(c) = csrf {
                    rb = rb.header("x-csrf-token", c);
                }
            }
            Auth::Bearer(t) => rb = rb.header("authorization", format!("Bearer {t}")),
        }
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        if let Some(b) = body {
            rb = rb
                .header("content-type", "application/json")
                .body(serde_json::to_vec(b).unwrap());
        }
        let r = rb
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path_and_query}: {e}"));
        let resp = Resp {
            status: r.status().as_u16(),
            headers: r.headers().clone(),
            body: r.bytes().await.unwrap().to_vec(),
        };
        if self.check {
            let path = path_and_query.split('?').next().unwrap();
            self.oas.check(method, path, &resp);
        }
        resp
    }

    pub async fn get(&self, path: &str, auth: &Auth) -> Resp {
        self.send("GET", path, auth, None, &[]).await
    }

    pub async fn post(&self, path: &str, auth: &Auth, body: &Value) -> Resp {
        self.send("POST", path, auth, Some(body), &[]).await
    }

    pub async fn delete(&self, path: &str, auth: &Auth) -> Resp {
        self.send("DELETE", path, auth, None, &[]).await
    }

    /// Logs in; panics unless it succeeds.
    pub async fn login(&self, user: &str) -> Session {
        let r = self
            .post(
                "/api/v1/auth/login",
                &Auth::Anon,
                &json!({"username": user, "password": password(user)}),
            )
            .await;
        r.expect(200, None);
        let cookie = r
            .headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .find(|c| c.starts_with("hub_session="))
            .expect("Set-Cookie hub_session");
        let session = cookie["hub_session=".len()..]
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let body = r.json();
        Session {
            session,
            csrf: body["csrf"].as_str().unwrap().to_owned(),
            me: body["user"].clone(),
        }
    }

    /// A bearer token for `user`.
    pub async fn token(&self, user: &str) -> String {
        let r = self
            .post(
                "/api/v1/auth/tokens",
                &Auth::Anon,
                &json!({"username": user, "password": password(user), "label": "test"}),
            )
            .await;
        r.expect(201, None);
        r.json()["token"].as_str().unwrap().to_owned()
    }

    /// `POST /api/v1/cases/{id}/actions`.
    pub async fn act(&self, case: &str, auth: &Auth, body: Value) -> Resp {
        self.post(&format!("/api/v1/cases/{case}/actions"), auth, &body)
            .await
    }

    /// The state of a case as `auth` sees it (200 expected).
    pub async fn state(&self, case: &str, auth: &Auth) -> String {
        let r = self.get(&format!("/api/v1/cases/{case}"), auth).await;
        r.expect(200, None);
        r.json()["case"]["state"].as_str().unwrap().to_owned()
    }

    /// Ids of the cases a list request returns (all pages).
    pub async fn list_ids(&self, query: &str, auth: &Auth) -> Vec<String> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut q = query.to_owned();
            if let Some(c) = &cursor {
                q.push_str(&format!("&cursor={c}"));
            }
            let r = self.get(&format!("/api/v1/cases?{q}"), auth).await;
            r.expect(200, None);
            let b = r.json();
            for c in b["cases"].as_array().unwrap() {
                out.push(c["id"].as_str().unwrap().to_owned());
            }
            match b["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return out,
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A hub with data.

/// The HTTP address of a running hub.
pub fn http_addr(hub: &hub::service::RunningHub) -> SocketAddr {
    hub.http_addr.expect("the test hub serves HTTP")
}

/// Cases made by [`fill`].
#[derive(Debug, Clone)]
pub struct Cases {
    /// M01, critical, with a snapshot (alert id in `a_alert`).
    pub a: String,
    pub a_alert: String,
    /// M01, minor, a second case of micro-grid A.
    pub a2: String,
    /// M02, major, no snapshot.
    pub b: String,
    pub b_alert: String,
    /// Under 高桥镇 (the other township), from the other site with no location.
    pub t2: String,
    /// A watchlisted tag heard at M01 (tag [`TAG`]).
    pub w: String,
}

pub const TAG: &str = "E0040000AABBCCDD";

/// A started hub with an MQTT site client.
pub struct Running {
    pub dir: HubDir,
    pub hub: hub::service::RunningHub,
    pub site: Client,
    pub other: Client,
    pub api: HttpApi,
}

pub async fn start(oas: Arc<Oas>, check: bool) -> Running {
    let dir = hub_dir(EMBEDDED, "");
    // A member of micro-grid B beside the common users.
    {
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.dir.path().join("users.toml"))
            .unwrap();
        write!(
            f,
            "\n[[user]]\nlogin = {MEMBER_B:?}\nname = {MEMBER_B:?}\nrole = \"member\"\ncells = [{M02:?}]\npassword = {:?}\n",
            hub::users::hash_password(&password(MEMBER_B)).unwrap()
        )
        .unwrap();
    }
    let hub = start_hub(&dir.config_path).await;
    let port = hub.mqtt[0].port();
    let site = client(port, "agent", SITE, &token(SITE)).await;
    let other = client(port, "agent2", OTHER_SITE, &token(OTHER_SITE)).await;
    let mut api = HttpApi::new(http_addr(&hub), oas);
    api.check = check;
    Running {
        dir,
        hub,
        site,
        other,
        api,
    }
}

/// Waits until alert `id` is filed; returns its case id.
pub async fn case_of(hub: &hub::service::RunningHub, id: &str) -> String {
    for _ in 0..200 {
        if let Some(c) = hub.dispatch.case_of_alert(id).await.unwrap() {
            return c.to_string();
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("alert {id} not filed");
}

/// Publishes the alerts behind [`Cases`], sightings of [`TAG`] and an `online` status, and
/// waits until everything is filed.
pub async fn fill(r: &Running) -> Cases {
    let mut a = alert(SITE, 1, Severity::Critical, Some((DEMO_LON, DEMO_LAT)));
    a.detections = vec![Detection {
        label: "person".into(),
        score: 0.91,
        box_xyxy: [1.0, 2.0, 10.0, 12.0],
    }];
    a.snapshot = Some(Snapshot {
        camera: "cam-1".into(),
        time: a.time,
        width: 16,
        height: 16,
        jpeg: jpeg(),
    });
    let a2 = alert(SITE, 2, Severity::Minor, Some((DEMO_LON, DEMO_LAT)));
    let b = alert(SITE, 3, Severity::Major, Some((M02_LON, M02_LAT)));
    let t2 = alert(OTHER_SITE, 4, Severity::Major, None);
    let mut w = alert(SITE, 5, Severity::Critical, Some((DEMO_LON, DEMO_LAT)));
    w.kind = AlertKind::Watchlist;
    w.source = AlertSource::Reader("r1".into());
    w.rule = "watchlist".into();
    w.label = None;
    w.score = None;
    w.track = None;
    w.tag = Some(TagInfo {
        id: TAG.into(),
        reader: "r1".into(),
        rssi: Some(-60),
        case_ref: Some("JJ-2026-001".into()),
        note: Some("被盗电动车".into()),
        keys: Vec::new(),
    });
    for x in [&a, &a2, &b, &w] {
        r.site.publish_alert(x).await;
    }
    r.other.publish_alert(&t2).await;
    // Sightings of TAG and the site's health.
    let t = UtcMillis::now().0;
    let batch = protocol::sighting::SightingBatch {
        schema: protocol::SCHEMA_VERSION,
        id: "01KAQ5X3MV0000000000000099".into(),
        site: SITE.into(),
        sightings: vec![
            protocol::sighting::TagSighting {
                reader: "r1".into(),
                tag: TAG.into(),
                kind: protocol::sighting::TagKind::Bike,
                first: UtcMillis(t - 60_000),
                last: UtcMillis(t - 55_000),
                reads: 7,
                rssi: -58,
            },
            protocol::sighting::TagSighting {
                reader: "r1".into(),
                tag: TAG.into(),
                kind: protocol::sighting::TagKind::Bike,
                first: UtcMillis(t - 30_000),
                last: UtcMillis(t - 29_000),
                reads: 2,
                rssi: -70,
            },
        ],
    };
    use rumqttc::v5::mqttbytes::QoS;
    r.site
        .client
        .publish(
            format!("se/v1/site/{SITE}/sighting"),
            QoS::AtLeastOnce,
            false,
            serde_json::to_vec(&batch).unwrap(),
        )
        .await
        .unwrap();
    r.site
        .client
        .publish(
            format!("se/v1/site/{SITE}/status"),
            QoS::AtLeastOnce,
            true,
            serde_json::to_vec(&status_online(SITE)).unwrap(),
        )
        .await
        .unwrap();
    r.site.wait_acks(6, Duration::from_secs(10)).await;
    r.other.wait_acks(1, Duration::from_secs(10)).await;
    let cases = Cases {
        a: case_of(&r.hub, &a.id).await,
        a_alert: a.id.clone(),
        a2: case_of(&r.hub, &a2.id).await,
        b: case_of(&r.hub, &b.id).await,
        b_alert: b.id.clone(),
        t2: case_of(&r.hub, &t2.id).await,
        w: case_of(&r.hub, &w.id).await,
    };
    let distinct: BTreeSet<&String> = [&cases.a, &cases.a2, &cases.b, &cases.t2, &cases.w]
        .into_iter()
        .collect();
    assert_eq!(
        distinct.len(),
        5,
        "each alert opens its own case: {cases:?}"
    );
    // Sightings are stored by the dispatcher too; give it a moment.
    for _ in 0..100 {
        if r.hub.store.sightings().len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    cases
}

/// Reads an SSE stream until `n` `case` events (or `reset`) arrived or `within` passed; returns
/// (event name, data) pairs.
pub async fn read_events(
    api: &HttpApi,
    query: &str,
    auth: &Auth,
    n: usize,
    within: Duration,
) -> (u16, String, Vec<(String, String)>) {
    let mut rb = api
        .http
        .get(format!("{}/api/v1/events{query}", api.base))
        .timeout(within + Duration::from_secs(5));
    match auth {
        Auth::Anon => {}
        Auth::Cookie { session, .. } => rb = rb.header("cookie", format!("hub_session={session}")),
        Auth::Bearer(t) => rb = rb.header("authorization", format!("Bearer {t}")),
    }
    let mut r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    let ctype = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let mut buf = String::new();
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    if status != 200 {
        let body = r.bytes().await.unwrap().to_vec();
        let resp = Resp {
            status,
            headers: reqwest::header::HeaderMap::new(),
            body,
        };
        let _ = resp;
        return (status, ctype, events);
    }
    while events.len() < n {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Ok(Ok(Some(chunk))) = tokio::time::timeout(left, r.chunk()).await else {
            break;
        };
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf[..end].to_owned();
            buf.drain(..end + 2);
            let mut name = "message".to_owned();
            let mut data = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    name = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            if block.lines().all(|l| l.starts_with(':')) {
                continue;
            }
            events.push((name, data));
        }
    }
    (status, ctype, events)
}

/// A time as milliseconds: an integer as the contract says, or (so one difference does not
/// hide the checks after it) an RFC 3339 string; -1 if neither.
pub fn ms_of(v: &Value) -> i64 {
    v.as_i64()
        .or_else(|| v.as_str().and_then(protocol::time::parse_rfc3339_ms))
        .unwrap_or(-1)
}

/// Counts of values, for messages.
pub fn tally<'a>(xs: impl IntoIterator<Item = &'a str>) -> BTreeMap<&'a str, usize> {
    let mut m = BTreeMap::new();
    for x in xs {
        *m.entry(x).or_insert(0) += 1;
    }
    m
}

/// An open live feed (`GET /api/v1/events`), its body not yet read.
pub async fn open_feed(api: &HttpApi, auth: &Auth) -> reqwest::Response {
    let mut rb = api
        .http
        .get(format!("{}/api/v1/events", api.base))
        .timeout(Duration::from_secs(60));
    match auth {
        Auth::Anon => {}
        Auth::Cookie { session, .. } => rb = rb.header("cookie", format!("hub_session={session}")),
        Auth::Bearer(t) => rb = rb.header("authorization", format!("Bearer {t}")),
    }
    let r = rb.send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    r
}

/// Whether the feed's stream ends (the server closes it) within `within`; events and pings
/// before the end are skipped.
pub async fn feed_ends_within(mut feed: reqwest::Response, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, feed.chunk()).await {
            Err(_) => return false,
            Ok(Ok(Some(_))) => continue,
            Ok(Ok(None)) | Ok(Err(_)) => return true,
        }
    }
}
