//! The governance centre's workflow over real MQTT and HTTP with the real hub: an alert routed
//! to a department and its cell at once; a transfer (交办) handled by the department's member
//! and closed and archived by the operator; a supervision (督办) reminding the handler and
//! shown on the list; an escalation by hand (提级) notifying the next level at once; and the
//! permission table's refusals.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use crate::common::*;
use hub::case::{CaseId, NotifyReason};
use hub::push::Notification;
use protocol::{Severity, UtcMillis};
use serde_json::json;

/// Vehicles in zones go to the traffic police as well as their cell.
const ROUTING: &str = r#"
[[routing]]
name = "vehicles to traffic police"
kinds = ["zone"]
labels = ["car", "truck"]
departments = ["D-JJ"]
"#;
const JJ: &str = "D-JJ";
const G01: &str = "532329101001-G01";

/// Notifications until `n` have come (or 5 s passed), as (person, cell, reason, case).
async fn notifications(
    watcher: &mut Client,
    n: usize,
) -> Vec<(String, String, NotifyReason, CaseId)> {
    let mut got = Vec::new();
    while got.len() < n {
        let Some((
            person,
            Notification {
                cell, reason, case, ..
            },
        )) = watcher.next_notification(Duration::from_secs(5)).await
        else {
            break;
        };
        got.push((person, cell.code, reason, case));
    }
    got.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    got
}

fn on_duty(unit: &str) -> Vec<String> {
    let people = example_roster().on_duty(unit, UtcMillis::now()).people;
    assert!(
        !people.is_empty(),
        "the example roster has someone at {unit}"
    );
    people
}

/// What `who` gets for `case` at `unit` for `reason`, sorted by person.
fn expect(
    who: &[String],
    unit: &str,
    reason: NotifyReason,
    case: &CaseId,
) -> Vec<(String, String, NotifyReason, CaseId)> {
    who.iter()
        .map(|p| (p.clone(), unit.to_owned(), reason, case.clone()))
        .collect()
}

struct Setup {
    hub: hub::service::RunningHub,
    _dir: HubDir,
    watcher: Client,
    site: Client,
}

async fn setup() -> Setup {
    let dir = hub_dir(EMBEDDED, ROUTING);
    let hub = start_hub(&dir.config_path).await;
    let port = hub.mqtt[0].port();
    let watcher = client(port, "watcher", "svc", &token("svc")).await;
    watcher.subscribe("se/v1/person/+/notify").await;
    let site = client(port, "agent", SITE, &token(SITE)).await;
    Setup {
        hub,
        _dir: dir,
        watcher,
        site,
    }
}

impl Setup {
    /// Publishes a major zone alert at the demo position with `label`; its case id.
    async fn raise(&self, n: u64, label: &str) -> CaseId {
        let mut a = alert(SITE, n, Severity::Major, Some((DEMO_LON, DEMO_LAT)));
        a.label = Some(label.into());
        let acks = self.site.acks.load(std::sync::atomic::Ordering::SeqCst);
        self.site.publish_alert(&a).await;
        self.site.wait_acks(acks + 1, Duration::from_secs(5)).await;
        CaseId::for_alert(&a.id)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_routed_alert_reaches_its_cell_and_the_department_at_once() {
    let mut s = setup().await;
    let case = s.raise(1, "car").await;
    let cell = on_duty(M01);
    let jj = on_duty(JJ);
    let mut want = expect(&cell, M01, NotifyReason::NewCase, &case);
    want.extend(expect(&jj, JJ, NotifyReason::Routed, &case));
    want.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    assert_eq!(notifications(&mut s.watcher, want.len()).await, want);

    let op = Api::login(&s.hub, "op-county").await;
    let d = op.get(&format!("/api/v1/cases/{case}")).await;
    assert_eq!(d.status, 200, "{:?}", d.json);
    assert_eq!(d.json["case"]["department"]["code"], JJ);
    assert_eq!(d.json["tasks"][0]["role"], "lead");
    assert_eq!(d.json["tasks"][0]["by"], "hub");

    // The department's member sees it and may acknowledge it for the department.
    let m_jj = Api::login(&s.hub, "m-jj").await;
    let list = m_jj.get("/api/v1/cases").await;
    let ids: Vec<&str> = list.json["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["id"].as_str())
        .collect();
    assert_eq!(ids, [case.as_str()]);
    let r = m_jj
        .post(
            &format!("/api/v1/cases/{case}/actions"),
            &json!({"action": "acknowledge"}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    assert_eq!(r.json["case"]["state"], "acknowledged");

    // A person's case (not routed) is not the department's to see.
    let other = s.raise(2, "person").await;
    let r = m_jj.get(&format!("/api/v1/cases/{other}")).await;
    assert_eq!(r.status, 403, "{:?}", r.json);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_is_handled_by_the_department_then_closed_and_archived() {
    let mut s = setup().await;
    let case = s.raise(1, "person").await;
    let cell = on_duty(M01);
    notifications(&mut s.watcher, cell.len()).await;
    let path = format!("/api/v1/cases/{case}/actions");
    let transfer =
        json!({"action": "transfer", "unit": JJ, "within_minutes": 60, "note": "占道，请交警处置"});

    // A grid member may not transfer; the refusal says who may.
    let member = Api::login(&s.hub, "m-m01").await;
    let r = member.post(&path, &transfer).await;
    assert_eq!(r.status, 403, "{:?}", r.json);
    let msg = r.json["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("may not transfer")
            && msg.contains("an operator of the cell holding the case or above it"),
        "{msg}"
    );
    // Bad requests name their field.
    let op = Api::login(&s.hub, "op-county").await;
    for (body, field) in [
        (json!({"action": "transfer", "within_minutes": 60}), "unit"),
        (
            json!({"action": "transfer", "unit": "D-NONE", "within_minutes": 60}),
            "unit",
        ),
        (json!({"action": "transfer", "unit": JJ}), "within_minutes"),
        (
            json!({"action": "transfer", "unit": JJ, "within_minutes": 0}),
            "within_minutes",
        ),
    ] {
        let r = op.post(&path, &body).await;
        assert_eq!(
            (r.status, r.json["error"]["field"].as_str()),
            (400, Some(field)),
            "{body}"
        );
    }

    let r = op.post(&path, &transfer).await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    assert_eq!(r.json["case"]["department"]["code"], JJ);
    assert_eq!(r.json["case"]["state"], "dispatched");
    // The time limit is the deadline the list shows.
    let due = r.json["tasks"][0]["due"].as_str().unwrap();
    assert_eq!(r.json["case"]["deadline"]["at"].as_str(), Some(due));
    assert_eq!(r.json["case"]["deadline"]["kind"], "resolve");
    let jj = on_duty(JJ);
    assert_eq!(
        notifications(&mut s.watcher, jj.len()).await,
        expect(&jj, JJ, NotifyReason::Transferred, &case)
    );

    // The department's member handles it; the operator closes and archives it.
    let m_jj = Api::login(&s.hub, "m-jj").await;
    for body in [
        json!({"action": "acknowledge"}),
        json!({"action": "start_handling"}),
        json!({"action": "resolve", "note": "车辆已挪走"}),
    ] {
        let r = m_jj.post(&path, &body).await;
        assert_eq!(r.status, 200, "{body}: {:?}", r.json);
    }
    // A department's member may not close (verify) or archive.
    let r = m_jj.post(&path, &json!({"action": "close"})).await;
    assert_eq!(r.status, 403, "{:?}", r.json);
    for body in [json!({"action": "close"}), json!({"action": "archive"})] {
        let r = op.post(&path, &body).await;
        assert_eq!(r.status, 200, "{body}: {:?}", r.json);
    }
    let d = op.get(&format!("/api/v1/cases/{case}")).await;
    assert_eq!(d.json["case"]["archived"], true);
    assert_eq!(d.json["archived"]["by"], "p-huangtao");
    let actions: Vec<&str> = d.json["audit"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["action"].as_str())
        .collect();
    for a in ["transfer", "acknowledge", "resolve", "close", "archive"] {
        assert!(actions.contains(&a), "{a} not in {actions:?}");
    }
    // The statistics follow the flow: the department's row counts the transferred case.
    let st = op.get("/api/v1/stats?level=micro_grid").await;
    assert_eq!(st.status, 200, "{:?}", st.json);
    let dep = st.json["departments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["cell"]["code"] == JJ)
        .cloned()
        .unwrap_or_else(|| panic!("no row for {JJ}: {:?}", st.json));
    assert_eq!(
        (&dep["cases"], &dep["transferred"], &dep["resolved"]),
        (&json!(1), &json!(1), &json!(1)),
        "{dep}"
    );
    assert_eq!(st.json["department_ranking"]["red"][0], JJ);
    let csv = op.get("/api/v1/stats.csv?level=micro_grid").await;
    let text = String::from_utf8_lossy(&csv.bytes).into_owned();
    assert!(
        text.lines()
            .any(|l| l.starts_with("department,D-JJ,武定县公安局交通警察大队,county,1,")),
        "{text}"
    );
    // And as a workbook: the departments' sheet holds the row, its counts as numbers.
    let xlsx = op.get("/api/v1/stats.xlsx?level=micro_grid").await;
    assert_eq!(xlsx.status, 200);
    let (names, sheet) = xlsx_sheet(&xlsx.bytes, "部门");
    let row = sheet
        .iter()
        .find(|r| r.first().map(String::as_str) == Some("department"))
        .unwrap_or_else(|| panic!("no department row: {sheet:?} {names:?}"));
    assert_eq!(
        row[1..5],
        ["D-JJ", "武定县公安局交通警察大队", "county", "1"],
        "{row:?}"
    );
    assert_eq!(row[13], "1", "transferred: {row:?}");
    let r = op
        .post(&path, &json!({"action": "comment", "note": "late remark"}))
        .await;
    assert_eq!(r.status, 409, "{:?}", r.json);
    assert!(
        r.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("it is archived"),
        "{:?}",
        r.json
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supervision_reminds_the_handler_and_escalation_notifies_the_next_level_at_once() {
    let mut s = setup().await;
    let case = s.raise(1, "person").await;
    let cell = on_duty(M01);
    notifications(&mut s.watcher, cell.len()).await;
    let path = format!("/api/v1/cases/{case}/actions");
    let member = Api::login(&s.hub, "m-m01").await;
    let r = member.post(&path, &json!({"action": "acknowledge"})).await;
    assert_eq!(r.status, 200, "{:?}", r.json);

    // Supervision comes from above: not from the cell holding the case.
    let supervise = json!({"action": "supervise", "within_minutes": 30, "note": "今天内办结"});
    let r = member.post(&path, &supervise).await;
    assert_eq!(r.status, 403, "{:?}", r.json);
    let op = Api::login(&s.hub, "op-shishan").await;
    let r = op.post(&path, &supervise).await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    assert_eq!(r.json["supervision"]["by"], "p-luozhengyu");
    // The handler (who acknowledged) is reminded at once.
    assert_eq!(
        notifications(&mut s.watcher, 1).await,
        expect(
            &["p-zhouguiying".to_owned()],
            M01,
            NotifyReason::Supervised,
            &case
        )
    );
    // The list shows it supervised.
    let list = op.get("/api/v1/cases").await;
    let row = list.json["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == case.as_str())
        .unwrap()
        .clone();
    assert_eq!(row["supervised"]["overdue"], false);
    assert_eq!(row["supervised"]["due"], r.json["supervision"]["due"]);

    // The member takes it up a level now (提级), with a reason: the grid's people are
    // notified at once, and the case is theirs to acknowledge.
    let r = member.post(&path, &json!({"action": "escalate"})).await;
    assert_eq!(
        (r.status, r.json["error"]["field"].as_str()),
        (400, Some("note"))
    );
    let r = member
        .post(
            &path,
            &json!({"action": "escalate", "note": "需要网格长协调"}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    assert_eq!(r.json["case"]["cell"]["code"], G01);
    assert_eq!(r.json["case"]["state"], "dispatched");
    let grid = on_duty(G01);
    assert_eq!(
        notifications(&mut s.watcher, grid.len()).await,
        expect(&grid, G01, NotifyReason::EscalatedByHand, &case)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_departments_group_chat_hears_the_cases_routed_to_it() {
    let bodies: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>> = Default::default();
    let b = bodies.clone();
    let app = axum::Router::new().route(
        "/jj",
        axum::routing::post(move |body: String| {
            let b = b.clone();
            async move {
                b.lock().unwrap().push(serde_json::from_str(&body).unwrap());
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let hook = format!(
        "{ROUTING}\n[[push.webhooks]]\ncell = \"{JJ}\"\n[push.webhooks.webhook]\nid = \"jj-group\"\n\
         kind = \"generic\"\nurl = \"http://{addr}/jj\"\n"
    );

    // A code that is neither a cell nor a department is refused, by field.
    let bad = hub_dir(
        EMBEDDED,
        &hook.replace(&format!("cell = \"{JJ}\""), "cell = \"D-XX\""),
    );
    let config = hub::config::HubConfig::load(&bad.config_path).unwrap();
    let Err(errors) = hub::service::Loaded::load(config) else {
        panic!("a webhook on an unknown code is refused")
    };
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("push.webhooks[0].cell: \"D-XX\"")),
        "{errors:?}"
    );

    let dir = hub_dir(EMBEDDED, &hook);
    let hub = start_hub(&dir.config_path).await;
    let site = client(hub.mqtt[0].port(), "agent", SITE, &token(SITE)).await;
    let mut a = alert(SITE, 9, Severity::Major, Some((DEMO_LON, DEMO_LAT)));
    a.label = Some("truck".into());
    site.publish_alert(&a).await;
    let case = CaseId::for_alert(&a.id);
    let mut delivered = false;
    for _ in 0..100 {
        if let Some(c) = hub.dispatch.case(&case).await.unwrap()
            && c.deliveries.iter().any(|d| {
                d.target == hub::case::DeliveryTarget::Webhook("jj-group".into())
                    && d.outcome == hub::case::DeliveryOutcome::Delivered
            })
        {
            delivered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        delivered,
        "the department's webhook delivery is on the case"
    );
    let got = bodies.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "once, for the department's notice: {got:?}");
    assert_eq!(got[0]["case_id"], case.as_str(), "{}", got[0]);

    // A person's case is not routed: the department's group hears nothing of it.
    let mut p = alert(SITE, 10, Severity::Major, Some((DEMO_LON, DEMO_LAT)));
    p.label = Some("person".into());
    site.publish_alert(&p).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(bodies.lock().unwrap().len(), 1);
    hub.stop().await;
}

/// The sheet called `name` of an XLSX workbook as rows of cell texts (shared strings looked
/// up, numbers as written), read from the zip's XML parts; and the workbook's sheet names.
fn xlsx_sheet(bytes: &[u8], name: &str) -> (Vec<String>, Vec<Vec<String>>) {
    use std::io::Read as _;
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("a zip");
    let mut part = |path: &str| {
        let mut s = String::new();
        zip.by_name(path)
            .unwrap_or_else(|e| panic!("{path}: {e}"))
            .read_to_string(&mut s)
            .unwrap();
        s
    };
    // Values between `<tag…>` and `</tag>`, in order, unescaped enough for these texts.
    fn texts<'a>(xml: &'a str, open: &str, close: &str) -> Vec<&'a str> {
        xml.split(open)
            .skip(1)
            .filter_map(|t| Some(t.split_once('>')?.1.split_once(close)?.0))
            .collect()
    }
    let workbook = part("xl/workbook.xml");
    let names: Vec<String> = workbook
        .split("<sheet ")
        .skip(1)
        .filter_map(|s| Some(s.split_once("name=\"")?.1.split_once('"')?.0.to_owned()))
        .collect();
    let index = names.iter().position(|n| n == name).expect("the sheet") + 1;
    let shared: Vec<String> = texts(&part("xl/sharedStrings.xml"), "<t", "</t>")
        .into_iter()
        .map(str::to_owned)
        .collect();
    let sheet = part(&format!("xl/worksheets/sheet{index}.xml"));
    let rows = sheet
        .split("<row ")
        .skip(1)
        .map(|row| {
            row.split("<c ")
                .skip(1)
                .map(|c| {
                    let v = texts(c, "<v", "</v>")
                        .first()
                        .copied()
                        .unwrap_or("")
                        .to_owned();
                    if c.split_once('>')
                        .is_some_and(|(attrs, _)| attrs.contains("t=\"s\""))
                    {
                        shared[v.parse::<usize>().unwrap()].clone()
                    } else {
                        v
                    }
                })
                .collect()
        })
        .collect();
    (names, rows)
}
