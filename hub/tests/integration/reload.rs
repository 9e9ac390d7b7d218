//! Reloading the roster and users while the hub runs: through the admin API with the real hub
//! over real MQTT (a duty change makes the next notification go to the new person, a user
//! added by `hub user add` can log in; a bad file is refused with every problem and nothing
//! changes; only admins may), and `hub reload` against the real `hub` binary (SIGHUP, its
//! log).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use hub::case::CaseId;
use protocol::Severity;
use serde_json::json;

use crate::common::*;

/// Who is notified about `case`, sorted (the next `n` notifications, 5 s at most).
async fn notified(watcher: &mut Client, case: &CaseId, n: usize) -> Vec<String> {
    let mut got = Vec::new();
    while got.len() < n {
        let Some((person, note)) = watcher.next_notification(Duration::from_secs(5)).await else {
            break;
        };
        if &note.case == case {
            got.push(person);
        }
    }
    got.sort();
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duty_change_reloaded_through_the_api_reaches_the_next_notification() {
    let dir = hub_dir(EMBEDDED, "");
    // Its own roster: M01 staffed all day by 周桂英 and 张伟.
    with_channels(&dir, &[]);
    let duty = dir.dir.path().join("roster/duty.csv");
    let hub = start_hub(&dir.config_path).await;
    let port = hub.mqtt[0].port();
    let mut watcher = client(port, "watcher", "svc", &token("svc")).await;
    watcher.subscribe("se/v1/person/+/notify").await;
    let site = client(port, "agent", SITE, &token(SITE)).await;
    let admin = Api::login(&hub, "admin").await;

    let a = alert(SITE, 1, Severity::Major, Some((DEMO_LON, DEMO_LAT)));
    site.publish_alert(&a).await;
    assert_eq!(
        notified(&mut watcher, &CaseId::for_alert(&a.id), 2).await,
        ["p-zhangwei", "p-zhouguiying"]
    );

    // 周桂英's shifts go to 毕秀兰.
    let text = std::fs::read_to_string(&duty).unwrap();
    assert!(text.contains(&format!("{M01},p-zhouguiying,daily,00:00,24:00")));
    std::fs::write(
        &duty,
        text.replace(
            &format!("{M01},p-zhouguiying,daily,00:00,24:00"),
            &format!("{M01},p-bixiulan,daily,00:00,24:00"),
        ),
    )
    .unwrap();
    // A new user, added with `hub user add` as an admin would: not known until the reload.
    let added = std::process::Command::new(env!("CARGO_BIN_EXE_hub"))
        .args(["user", "add", "-c"])
        .arg(&dir.config_path)
        .args(["--login", "op-new", "--role", "operator", "--cell", M01])
        .args(["--person", "p-bixiulan", "--password-env", "NEW_PW"])
        .env("NEW_PW", password("op-new"))
        .output()
        .unwrap();
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let anon = Api::anonymous(&hub);
    let before = anon
        .post(
            "/api/v1/auth/login",
            &json!({"username": "op-new", "password": password("op-new")}),
        )
        .await;
    assert_eq!(before.status, 401, "{:?}", before.json);
    // A member may not reload.
    let member = Api::login(&hub, "m-m01").await;
    let r = member.post("/api/v1/admin/reload", &json!({})).await;
    assert_eq!(r.status, 403, "{:?}", r.json);
    let r = admin.post("/api/v1/admin/reload", &json!({})).await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    assert_eq!(r.json["reloaded"], json!(["roster", "users"]));
    let op_new = Api::login(&hub, "op-new").await;
    let me = op_new.get("/api/v1/me").await.json;
    assert_eq!(
        (&me["id"], &me["person"]),
        (&json!("op-new"), &json!("p-bixiulan"))
    );

    let b = alert(SITE, 2, Severity::Major, Some((DEMO_LON, DEMO_LAT)));
    site.publish_alert(&b).await;
    assert_eq!(
        notified(&mut watcher, &CaseId::for_alert(&b.id), 2).await,
        ["p-bixiulan", "p-zhangwei"],
        "the new person on duty"
    );

    // A bad file (an unknown person, an unknown cell) is refused with both problems, and
    // the roster stays as it was.
    let good = std::fs::read_to_string(&duty).unwrap();
    std::fs::write(
        &duty,
        format!("{good}{M01},p-nobody,daily,00:00,24:00\nX-404,p-zhangwei,daily,00:00,24:00\n"),
    )
    .unwrap();
    let r = admin.post("/api/v1/admin/reload", &json!({})).await;
    assert_eq!(r.status, 400, "{:?}", r.json);
    let message = r.json["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("p-nobody") && message.contains("X-404"),
        "every problem: {message}"
    );
    assert_eq!(r.json["error"]["field"], "roster");
    let c = alert(SITE, 3, Severity::Major, Some((DEMO_LON, DEMO_LAT)));
    site.publish_alert(&c).await;
    assert_eq!(
        notified(&mut watcher, &CaseId::for_alert(&c.id), 2).await,
        ["p-bixiulan", "p-zhangwei"],
        "unchanged after the refused reload"
    );
    let text = hub.metrics.render();
    assert_eq!(metric(&text, "hub_reloads_total"), Some(1.0));
    assert_eq!(metric(&text, "hub_reloads_refused_total"), Some(1.0));
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_reload_checks_first_then_signals_the_running_hub() {
    let dir = hub_dir(EMBEDDED, "");
    with_channels(&dir, &[]);
    let log = dir.dir.path().join("hub.log");
    let mut child = spawn_hub(&dir.config_path, &log);
    wait_for_log(&log, "dispatcher loaded", Duration::from_secs(30)).await;
    // The pid file appears once the hub runs.
    let pid = dir.dir.path().join("state/hub.pid");
    let mut tries = 0;
    while !pid.exists() && tries < 100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        tries += 1;
    }

    let out = run_hub_to_exit(&[
        "reload".as_ref(),
        "-c".as_ref(),
        dir.config_path.as_os_str(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("reload sent"));
    wait_for_log(&log, "reloaded", Duration::from_secs(10)).await;

    // A bad duty file: `hub reload` lists the problem and sends nothing.
    let duty = dir.dir.path().join("roster/duty.csv");
    let text = std::fs::read_to_string(&duty).unwrap();
    std::fs::write(&duty, format!("{text}{M01},p-nobody,daily,00:00,24:00\n")).unwrap();
    let out = run_hub_to_exit(&[
        "reload".as_ref(),
        "-c".as_ref(),
        dir.config_path.as_os_str(),
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("p-nobody"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The hub itself, sent SIGHUP by hand, refuses it and runs on.
    let raw: i32 = std::fs::read_to_string(&pid)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(raw).unwrap(),
        rustix::process::Signal::HUP,
    )
    .unwrap();
    let logged = wait_for_log(&log, "reload refused", Duration::from_secs(10)).await;
    assert!(logged.contains("p-nobody"), "{logged}");
    assert!(child.try_wait().unwrap().is_none(), "the hub runs on");
    stop_hub(&mut child).await;
}
