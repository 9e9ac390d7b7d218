//! The gateway in front of the embedded broker, over real MQTT 5 and 3.1.1 (and TLS): who may
//! connect, what each may publish and subscribe to, that an acknowledged alert is on the hub's
//! disk and a malformed one is acknowledged and dropped, size limits, and the other traffic
//! that crosses it (status and last will, sightings, signed commands).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;
use hub::case::CaseId;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use common::*;
use hub::push::Notification;
use hub::registry::SiteState;
use hub::service::RunningHub;
use hub::store::{WatchEntry, WatchScope};
use hub::watchlist::{WatchAuthority, WatchBy};
use protocol::alert::Snapshot;
use protocol::command::{CommandBody, SignedCommand};
use protocol::{
    MAX_ALERT_BYTES, MAX_SNAPSHOT_JPEG_BYTES, Severity, SightingBatch, SigningKey, TagKind,
    TagSighting, Topics, UtcMillis,
};
use testkit::mqtt_wire;

/// Every wait in these tests is bounded by this (or less).
const WAIT: Duration = Duration::from_secs(5);
const OTHER: &str = "wd-other-002";
const PROTOS: [Proto; 2] = [Proto::V5, Proto::V311];

fn topics() -> Topics {
    Topics::default()
}

fn json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

fn site_client(proto: Proto, port: u16, id: &str, site: &str) -> Mqtt {
    Spec::new(proto, port, id).login(site, &token(site)).start()
}

async fn embedded_hub(extra: &str) -> (HubDir, RunningHub) {
    let dir = hub_dir(EMBEDDED, extra);
    let hub = start_hub(&dir.config_path).await;
    (dir, hub)
}

/// Asks the dispatcher until `site`'s record satisfies `ok`; panics after [`WAIT`].
async fn wait_site(hub: &RunningHub, site: &str, what: &str, ok: impl Fn(&SiteState) -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let sites = hub.dispatch.sites().await.unwrap();
        let state = sites.iter().find(|s| s.id == site);
        if state.is_some_and(&ok) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{site} never {what}; last: {state:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A closed connection that the gateway ended for a topic outside the client's ACL. Under
/// MQTT 5 the gateway says why (DISCONNECT 0x87); under 3.1.1 it can only close.
fn assert_denied(proto: Proto, ended: Option<ConnState>, what: &str) {
    match ended {
        Some(ConnState::Closed(why)) => {
            if proto == Proto::V5 {
                assert!(why.contains("NotAuthorized"), "{what} ({proto:?}): {why}");
            }
        }
        other => panic!("{what} ({proto:?}): not disconnected: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_an_unknown_user_or_no_credentials_are_refused_under_mqtt_5_and_3_1_1() {
    let (_dir, hub) = embedded_hub("").await;
    let port = hub.mqtt[0].port();
    for proto in PROTOS {
        let attempts = [
            (
                "wrong token",
                Spec::new(proto, port, "c-wrong").login(SITE, &token("svc")),
            ),
            (
                "unknown user",
                Spec::new(proto, port, "c-unknown").login("nobody", &token("nobody")),
            ),
            ("no credentials", Spec::new(proto, port, "c-none")),
        ];
        for (what, spec) in attempts {
            match spec.start().settled(WAIT).await {
                ConnState::Refused(why) => {
                    assert!(
                        why.contains("BadUserNamePassword"),
                        "{proto:?} {what}: {why}"
                    )
                }
                other => panic!("{proto:?} {what}: {other:?}"),
            }
        }
        // The right token gets in, so the refusals were about the credentials.
        site_client(proto, port, &format!("c-ok-{proto:?}"), SITE)
            .connected(WAIT)
            .await;
    }
    assert_eq!(hub.metrics.connections_refused_auth.load(SeqCst), 6);
    assert_eq!(hub.metrics.connections_accepted.load(SeqCst), 2);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_publishing_an_alert_under_another_sites_topic_is_disconnected_and_nothing_is_stored()
 {
    let (_dir, hub) = embedded_hub("").await;
    let port = hub.mqtt[0].port();
    for (i, proto) in PROTOS.into_iter().enumerate() {
        let c = site_client(proto, port, &format!("agent-{i}"), SITE);
        c.connected(WAIT).await;
        let denied = hub.metrics.acl_denied.load(SeqCst);
        // A valid alert of the other site: only the topic ACL can stop it.
        let a = alert(OTHER, 100 + i as u64, Severity::Major, None);
        c.publish_alert(&a).await;
        assert_denied(proto, c.ended(WAIT).await, "alert under another site");
        assert_eq!(hub.metrics.acl_denied.load(SeqCst), denied + 1);
        assert_eq!(c.acks(), 0, "a refused alert is not acknowledged");
        assert_eq!(hub.store.alerts().count(), 0);
        assert!(!hub.store.alerts().contains(&a.id).unwrap());
    }
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_subscribing_to_another_sites_commands_or_to_everything_is_disconnected() {
    let (_dir, hub) = embedded_hub("").await;
    let port = hub.mqtt[0].port();
    let t = topics();
    let mut n = 0;
    for proto in PROTOS {
        for filter in [t.cmd(OTHER), "#".to_owned(), "se/v1/site/+/cmd".to_owned()] {
            n += 1;
            let c = site_client(proto, port, &format!("agent-{n}"), SITE);
            c.connected(WAIT).await;
            let denied = hub.metrics.acl_denied.load(SeqCst);
            c.subscribe(&filter).await;
            assert_denied(proto, c.ended(WAIT).await, &filter);
            assert_eq!(c.subacks.load(SeqCst), 0, "{filter}: no SUBACK");
            assert_eq!(hub.metrics.acl_denied.load(SeqCst), denied + 1);
        }
        // Its own command topic is fine, and the connection stays up.
        n += 1;
        let c = site_client(proto, port, &format!("agent-{n}"), SITE);
        c.connected(WAIT).await;
        c.subscribe(&t.cmd(SITE)).await;
        c.wait_subacks(1, WAIT).await;
        assert_eq!(c.state(), ConnState::Connected);
    }
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_whose_last_will_is_another_sites_status_is_refused() {
    let (_dir, hub) = embedded_hub("").await;
    let port = hub.mqtt[0].port();
    let t = topics();
    for proto in PROTOS {
        let denied = hub.metrics.acl_denied.load(SeqCst);
        let accepted = hub.metrics.connections_accepted.load(SeqCst);
        let forged = Spec::new(proto, port, &format!("forger-{proto:?}"))
            .login(SITE, &token(SITE))
            .will(&t.status(OTHER), json(&status_offline(OTHER)))
            .start();
        match forged.settled(WAIT).await {
            ConnState::Refused(why) => assert!(why.contains("NotAuthorized"), "{proto:?}: {why}"),
            other => panic!("{proto:?}: {other:?}"),
        }
        assert_eq!(hub.metrics.acl_denied.load(SeqCst), denied + 1);
        assert_eq!(hub.metrics.connections_accepted.load(SeqCst), accepted);
        // Its own status as the will is what an agent does: accepted.
        Spec::new(proto, port, &format!("honest-{proto:?}"))
            .login(SITE, &token(SITE))
            .will(&t.status(SITE), json(&status_offline(SITE)))
            .start()
            .connected(WAIT)
            .await;
    }
    assert_eq!(hub.metrics.connections_refused_auth.load(SeqCst), 0);
    hub.stop().await;
}

fn on_duty_now(cell: &str) -> Vec<String> {
    let grid = hub::grid::geojson::import_str(
        &std::fs::read_to_string(repo().join("configs/hub/wuding.geojson")).unwrap(),
        hub::grid::CoordSystem::Wgs84,
    )
    .unwrap();
    let index = hub::grid::GridIndex::new(grid);
    hub::roster::Roster::load_dir(repo().join("configs/hub/roster"), &|c| {
        index.find(c).is_some()
    })
    .unwrap()
    .on_duty(cell, UtcMillis::now())
    .people
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_receives_notifications_on_its_own_topic_and_may_not_subscribe_to_anothers() {
    let people = on_duty_now(M01);
    let person = people
        .first()
        .expect("the example roster always has someone for M01")
        .clone();
    let dir = hub_dir(EMBEDDED, "");
    if person != "p-lina" {
        add_credential(&dir, "person", &person);
    }
    let hub = start_hub(&dir.config_path).await;
    let port = hub.mqtt[0].port();
    let t = topics();

    let mut phone = Spec::new(Proto::V5, port, "phone")
        .login(&person, &token(&person))
        .start();
    phone.connected(WAIT).await;
    phone.subscribe(&t.notify(&person)).await;
    phone.wait_subacks(1, WAIT).await;
    let site = site_client(Proto::V5, port, "agent", SITE);
    let a = alert(SITE, 200, Severity::Major, Some((DEMO_LON, DEMO_LAT)));
    site.publish_alert(&a).await;
    let (topic, payload) = phone
        .next_publish(WAIT)
        .await
        .expect("a notification on the person's own topic");
    assert_eq!(topic, t.notify(&person));
    let n: Notification = serde_json::from_slice(&payload).unwrap();
    assert_eq!(n.case, CaseId::for_alert(&a.id));
    assert_eq!(n.cell.code, M01);

    // Another person's topic, by name or by wildcard: disconnected.
    let someone_else = if person == "p-lina" {
        "p-zhangwei"
    } else {
        "p-lina"
    };
    for (i, filter) in [t.notify(someone_else), "se/v1/person/+/notify".to_owned()]
        .into_iter()
        .enumerate()
    {
        let snoop = Spec::new(Proto::V5, port, &format!("snoop-{i}"))
            .login(&person, &token(&person))
            .start();
        snoop.connected(WAIT).await;
        let denied = hub.metrics.acl_denied.load(SeqCst);
        snoop.subscribe(&filter).await;
        assert_denied(Proto::V5, snoop.ended(WAIT).await, &filter);
        assert_eq!(hub.metrics.acl_denied.load(SeqCst), denied + 1);
    }
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_alerts_are_quarantined_acknowledged_with_a_reason_counted_per_site_and_the_connection_goes_on()
 {
    let (_dir, hub) = embedded_hub("").await;
    let port = hub.mqtt[0].port();
    let topic = topics().alert(SITE);
    // A tail on every alert: what the gateway drops must not reach the broker either.
    let mut tail = Spec::new(Proto::V5, port, "tail")
        .login("svc", &token("svc"))
        .start();
    tail.connected(WAIT).await;
    tail.subscribe("se/v1/site/+/alert").await;
    tail.wait_subacks(1, WAIT).await;
    for (i, proto) in PROTOS.into_iter().enumerate() {
        let n = 300 + 10 * i as u64;
        let c = site_client(proto, port, &format!("agent-{i}"), SITE);
        c.connected(WAIT).await;
        let stored = hub.store.alerts().count();
        let rejected = hub.metrics.rejected(SITE, "alert");

        let mut missing_rule = serde_json::to_value(alert(SITE, n, Severity::Major, None)).unwrap();
        missing_rule
            .as_object_mut()
            .unwrap()
            .remove("rule")
            .unwrap();
        // Valid in itself, but it names the other site while coming on this site's topic.
        let foreign = alert(OTHER, n + 1, Severity::Major, None);
        // (what, payload, MQTT 5 PUBACK reason: 0x99 payload format invalid, 0x87 not
        // authorized; 3.1.1 has no reasons, every PUBACK is a plain success).
        let bad: [(&str, Vec<u8>, u8); 3] = [
            ("not JSON", b"\x00this is not JSON{".to_vec(), 0x99),
            ("no rule", json(&missing_rule), 0x99),
            ("another site's alert", json(&foreign), 0x87),
        ];
        for (k, (what, payload, reason)) in bad.into_iter().enumerate() {
            let quarantined = hub.store.quarantine().len();
            c.publish(&topic, payload.clone(), false).await;
            c.wait_acks(k as u64 + 1, WAIT).await;
            assert_eq!(
                hub.metrics.rejected(SITE, "alert"),
                rejected + k as u64 + 1,
                "{what} ({proto:?})"
            );
            assert_eq!(hub.store.alerts().count(), stored, "{what} ({proto:?})");
            let expected = if proto == Proto::V5 { reason } else { 0 };
            assert_eq!(
                c.puback_reasons().last().copied(),
                Some(expected),
                "{what} ({proto:?})"
            );
            // Not dropped: quarantined (durably, before the PUBACK), bytes intact.
            assert_eq!(hub.store.quarantine().len(), quarantined + 1, "{what}");
            let newest = hub.store.quarantine().list(None, 1).unwrap().remove(0);
            assert_eq!(newest.site, SITE, "{what}");
            let kept = hub.store.quarantine().get(newest.id).unwrap().unwrap();
            assert_eq!(kept.raw.as_ref(), payload.as_slice(), "{what}");
        }
        assert_eq!(hub.metrics.rejected(OTHER, "alert"), 0, "counted by topic");
        assert!(!hub.store.alerts().contains(&foreign.id).unwrap());

        // The same connection then delivers a valid alert as usual.
        let good = alert(SITE, n + 2, Severity::Major, None);
        c.publish_alert(&good).await;
        c.wait_acks(4, WAIT).await;
        assert_eq!(c.state(), ConnState::Connected);
        assert_eq!(hub.store.alerts().count(), stored + 1);
        assert_eq!(
            hub.store.alerts().get(&good.id).unwrap().unwrap().alert,
            good
        );
        let (t, payload) = tail.next_publish(WAIT).await.expect("the valid alert");
        assert_eq!(
            (t.as_str(), payload),
            (topic.as_str(), json(&good)),
            "only the valid alert is forwarded"
        );
    }
    assert!(
        tail.next_publish(Duration::from_millis(200))
            .await
            .is_none()
    );
    assert_eq!(hub.metrics.protocol_errors.load(SeqCst), 0);
    assert_eq!(hub.metrics.acl_denied.load(SeqCst), 0);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_alert_sent_three_times_is_stored_once_and_opens_one_case() {
    let (_dir, hub) = embedded_hub("").await;
    let port = hub.mqtt[0].port();
    let c = site_client(Proto::V5, port, "agent", SITE);
    c.connected(WAIT).await;
    let a = alert(SITE, 400, Severity::Major, Some((DEMO_LON, DEMO_LAT)));
    // Once, then twice more (a resend after a lost PUBACK), back to back.
    c.publish_alert(&a).await;
    c.wait_acks(1, WAIT).await;
    c.publish_alert(&a).await;
    c.publish_alert(&a).await;
    c.wait_acks(3, WAIT).await;
    assert_eq!(hub.store.alerts().count(), 1);
    assert_eq!(hub.metrics.alerts_stored.load(SeqCst), 1);
    assert_eq!(hub.metrics.alerts_duplicate.load(SeqCst), 2);

    let id = CaseId::for_alert(&a.id);
    let deadline = tokio::time::Instant::now() + WAIT;
    let case = loop {
        if let Some(c) = hub.dispatch.case(&id).await.unwrap() {
            break c;
        }
        assert!(tokio::time::Instant::now() < deadline, "no case {id}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Give a wrongly re-filed duplicate the time to show up.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let case = hub.dispatch.case(&case.id).await.unwrap().unwrap();
    assert_eq!(case.count, 1);
    assert_eq!(case.alert_ids.iter().collect::<Vec<_>>(), [&a.id]);
    assert_eq!(hub.metrics.cases_opened.load(SeqCst), 1);
    assert_eq!(hub.metrics.alerts_filed.load(SeqCst), 1);
    hub.stop().await;
}

/// Alert `n` of [`SITE`] with a `jpeg_bytes` snapshot (an SOI marker, then filler: what the
/// hub checks of a JPEG).
fn alert_with_snapshot(n: u64, jpeg_bytes: usize) -> protocol::Alert {
    let mut a = alert(SITE, n, Severity::Major, None);
    let mut jpeg = vec![0x5a; jpeg_bytes];
    jpeg[..2].copy_from_slice(&[0xff, 0xd8]);
    a.snapshot = Some(Snapshot {
        camera: "cam-1".into(),
        time: a.time,
        width: 1920,
        height: 1080,
        jpeg,
    });
    a
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_publish_closes_the_connection_while_a_900_kb_alert_is_stored() {
    let (_dir, hub) = embedded_hub("").await;
    let port = hub.mqtt[0].port();
    let topic = topics().alert(SITE);

    let big = site_client(Proto::V5, port, "agent-big", SITE);
    big.connected(WAIT).await;
    let payload = vec![b' '; hub::service::MAX_PACKET + 1];
    big.publish(&topic, payload, false).await;
    match big.ended(WAIT).await {
        Some(ConnState::Closed(_)) => {}
        other => panic!("an oversized PUBLISH left the connection {other:?}"),
    }
    assert_eq!(big.acks(), 0);
    assert_eq!(hub.metrics.protocol_errors.load(SeqCst), 1);
    assert_eq!(hub.store.alerts().count(), 0);

    // The largest snapshot allowed, and JSON whitespace to bring the alert past 900 KB (the
    // hub bounds `detail` and the other free text, so they cannot pad it).
    let a = alert_with_snapshot(500, MAX_SNAPSHOT_JPEG_BYTES);
    let mut payload = json(&a);
    payload.resize(910_000, b' ');
    assert!(
        (900_000..=MAX_ALERT_BYTES).contains(&payload.len()),
        "{}",
        payload.len()
    );
    protocol::validate::decode_alert(&payload).expect("a valid alert");

    let ok = site_client(Proto::V5, port, "agent-ok", SITE);
    ok.connected(WAIT).await;
    ok.publish(&topic, payload.clone(), false).await;
    ok.wait_acks(1, Duration::from_secs(8)).await;
    assert_eq!(ok.state(), ConnState::Connected);
    assert_eq!(hub.store.alerts().count(), 1);
    let sent = protocol::validate::decode_alert(&payload).unwrap();
    let stored = hub.store.alerts().get(&a.id).unwrap().unwrap();
    assert_eq!(
        protocol::Alert {
            snapshot: sent.snapshot.clone(),
            ..stored.alert.clone()
        },
        sent
    );
    assert_eq!(
        hub.store.alerts().snapshot_jpeg(&stored).unwrap(),
        sent.snapshot.map(|s| s.jpeg)
    );
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_1_1_clients_deliver_alerts_and_receive_notifications_end_to_end() {
    let (_dir, hub) = embedded_hub("").await;
    let port = hub.mqtt[0].port();
    let mut watcher = Spec::new(Proto::V311, port, "watcher")
        .login("svc", &token("svc"))
        .start();
    watcher.connected(WAIT).await;
    watcher.subscribe("se/v1/person/+/notify").await;
    watcher.wait_subacks(1, WAIT).await;

    let site = site_client(Proto::V311, port, "agent", SITE);
    site.connected(WAIT).await;
    let a = alert(SITE, 600, Severity::Major, Some((DEMO_LON, DEMO_LAT)));
    site.publish_alert(&a).await;
    site.wait_acks(1, WAIT).await;
    assert!(
        hub.store.alerts().contains(&a.id).unwrap(),
        "acked = stored"
    );

    let (topic, payload) = watcher
        .next_publish(WAIT)
        .await
        .expect("a notification through a 3.1.1 subscription");
    let person = topic
        .strip_prefix("se/v1/person/")
        .and_then(|r| r.strip_suffix("/notify"))
        .unwrap_or_else(|| panic!("{topic}"));
    let n: Notification = serde_json::from_slice(&payload).unwrap();
    assert_eq!(n.case, CaseId::for_alert(&a.id));
    assert_eq!(n.cell.code, M01);
    assert!(on_duty_now(M01).iter().any(|p| p == person), "{person}");
    hub.stop().await;
}

fn tls_extra(pki: &Pki, client_ca: bool) -> String {
    let mut s = format!(
        "[broker.tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        pki.server_cert.display(),
        pki.server_key.display()
    );
    if client_ca {
        s.push_str(&format!("client_ca_file = \"{}\"\n", pki.ca.display()));
    }
    s
}

const EMBEDDED_TLS: &str =
    "mode = \"embedded\"\nlisten = [\"127.0.0.1:0\"]\ntls_listen = [\"127.0.0.1:0\"]";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mqtt_5_client_over_tls_delivers_an_alert_and_plain_mqtt_on_the_tls_port_does_not_connect()
 {
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = make_pki(pki_dir.path());
    let dir = hub_dir(EMBEDDED_TLS, &tls_extra(&pki, false));
    let hub = start_hub(&dir.config_path).await;
    let tls_port = hub.mqtts[0].port();

    let c = Spec::new(Proto::V5, tls_port, "agent-tls")
        .login(SITE, &token(SITE))
        .tls(client_tls(&pki.ca, None))
        .start();
    c.connected(WAIT).await;
    let a = alert(SITE, 700, Severity::Major, None);
    c.publish_alert(&a).await;
    c.wait_acks(1, WAIT).await;
    assert!(hub.store.alerts().contains(&a.id).unwrap());

    let plain = site_client(Proto::V5, tls_port, "agent-plain", SITE);
    assert!(
        matches!(plain.settled(WAIT).await, ConnState::Refused(_)),
        "{:?}",
        plain.state()
    );
    assert_eq!(hub.metrics.connections_accepted.load(SeqCst), 1);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_client_ca_only_a_client_with_a_certificate_it_signed_connects() {
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = make_pki(pki_dir.path());
    let dir = hub_dir(EMBEDDED_TLS, &tls_extra(&pki, true));
    let hub = start_hub(&dir.config_path).await;
    let tls_port = hub.mqtts[0].port();
    let login = |id: &str| Spec::new(Proto::V5, tls_port, id).login(SITE, &token(SITE));

    let anonymous = login("agent-nocert").tls(client_tls(&pki.ca, None)).start();
    let a = alert(SITE, 800, Severity::Major, None);
    anonymous.publish_alert(&a).await;
    match anonymous.settled(WAIT).await {
        ConnState::Refused(_) => {}
        other => panic!("a client without a certificate: {other:?}"),
    }
    assert_eq!(hub.metrics.connections_accepted.load(SeqCst), 0);
    assert_eq!(anonymous.acks(), 0);

    let with_cert = login("agent-cert")
        .tls(client_tls(
            &pki.ca,
            Some((&pki.client_cert, &pki.client_key)),
        ))
        .start();
    with_cert.connected(WAIT).await;
    with_cert.publish_alert(&a).await;
    with_cert.wait_acks(1, WAIT).await;
    assert!(hub.store.alerts().contains(&a.id).unwrap());
    assert_eq!(hub.metrics.connections_accepted.load(SeqCst), 1);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retained_online_status_brings_a_site_online_and_its_last_will_takes_it_offline() {
    let (_dir, hub) = embedded_hub("").await;
    let port = hub.mqtt[0].port();
    let t = topics();
    for (proto, site) in [(Proto::V5, SITE), (Proto::V311, OTHER)] {
        let agent = Spec::new(proto, port, &format!("agent-{site}"))
            .login(site, &token(site))
            .will(&t.status(site), json(&status_offline(site)))
            .start();
        agent.connected(WAIT).await;
        let online = status_online(site);
        assert!(online.health.is_some());
        agent.publish(&t.status(site), json(&online), true).await;
        agent.wait_acks(1, WAIT).await;
        wait_site(&hub, site, "online with its health", |s| {
            s.online && s.health == online.health && s.last_status == Some(online.time)
        })
        .await;

        // Power cut: no DISCONNECT, the socket just closes; rumqttd publishes the will.
        agent.kill().await;
        wait_site(&hub, site, "offline after its last will", |s| !s.online).await;
    }
    assert_eq!(hub.metrics.rejected_total(), 0);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sightings_are_stored_and_a_tags_trajectory_comes_back_in_time_order() {
    let (_dir, hub) = embedded_hub("").await;
    let port = hub.mqtt[0].port();
    let bike = "E2000017221101441890ABCD";
    let t0 = UtcMillis::now().0 - 60_000;
    let sighting = |tag: &str, reader: &str, at: i64| TagSighting {
        reader: reader.into(),
        tag: tag.into(),
        kind: TagKind::Bike,
        first: UtcMillis(at),
        last: UtcMillis(at + 500),
        reads: 3,
        rssi: -60,
    };
    let batch = SightingBatch {
        schema: protocol::SCHEMA_VERSION,
        id: "01KAQ5X3MV0000000000000003".into(),
        site: SITE.into(),
        // Not in time order on the wire; two outside the window asked for; another tag.
        sightings: vec![
            sighting(bike, "reader-b", t0 + 2_000),
            sighting(bike, "reader-a", t0),
            sighting(bike, "reader-late", t0 + 10_000),
            sighting(bike, "reader-c", t0 + 1_000),
            sighting(bike, "reader-early", t0 - 5_000),
            sighting("E20000172211014418900001", "reader-a", t0 + 500),
        ],
    };
    batch.validate().unwrap();
    let c = site_client(Proto::V5, port, "agent", SITE);
    c.connected(WAIT).await;
    c.publish(&topics().sighting(SITE), json(&batch), false)
        .await;
    c.wait_acks(1, WAIT).await;

    // The whole batch is applied at once: when the trajectory is complete, all of it is in.
    let everything =
        || hub::dispatch::trajectory(&hub.store, bike, UtcMillis(0), UtcMillis(i64::MAX)).unwrap();
    let stored = eventually(WAIT, || everything().len() == 5).await;
    assert!(stored, "{:?}", everything());
    assert_eq!(hub.metrics.sightings_stored.load(SeqCst), 6);
    let (from, to) = (UtcMillis(t0), UtcMillis(t0 + 10_000));
    let trail = hub::dispatch::trajectory(&hub.store, bike, from, to).unwrap();
    let got: Vec<(&str, i64)> = trail
        .iter()
        .map(|r| (r.reader.as_str(), r.first.0 - t0))
        .collect();
    assert_eq!(
        got,
        [("reader-a", 0), ("reader-c", 1_000), ("reader-b", 2_000)],
        "[from, to): in order, the late and early ones left out"
    );
    assert!(trail.iter().all(|r| r.site == SITE && r.tag == bike));
    assert_eq!(trail[0].last, UtcMillis(t0 + 500));
    assert_eq!((trail[0].reads, trail[0].rssi), (3, -60));
    let all = everything();
    let readers: Vec<&str> = all.iter().map(|r| r.reader.as_str()).collect();
    assert_eq!(
        readers,
        [
            "reader-early",
            "reader-a",
            "reader-c",
            "reader-b",
            "reader-late"
        ]
    );
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watchlisted_tag_reaches_each_site_as_a_signed_command_with_increasing_seq() {
    let (_dir, hub) = embedded_hub("").await;
    let port = hub.mqtt[0].port();
    let t = topics();
    let mut agent = site_client(Proto::V5, port, "agent", SITE);
    agent.connected(WAIT).await;
    agent.subscribe(&t.cmd(SITE)).await;
    agent.wait_subacks(1, WAIT).await;

    let key = SigningKey::from_bytes(&[7u8; 32]).verifying_key();
    let mut seqs = Vec::new();
    for tag in ["E2000017221101441890ABCD", "E2000017221101441890BEEF"] {
        let sent = hub
            .dispatch
            .watch_add(
                WatchEntry {
                    tag: tag.into(),
                    case_ref: "武公(刑)立字[2026]123号".into(),
                    note: "stolen e-bike".into(),
                    added_at: UtcMillis::now(),
                    added_by: "p-wangjianguo".into(),
                    scope: WatchScope::Everywhere,
                },
                WatchBy {
                    login: "admin".into(),
                    actor: "p-wangjianguo".into(),
                    authority: WatchAuthority::Admin,
                },
            )
            .await
            .unwrap()
            .sites;
        assert_eq!(sent, 2, "both configured sites");
        let (topic, payload) = agent.next_publish(WAIT).await.expect("a command");
        assert_eq!(topic, t.cmd(SITE));
        let signed = SignedCommand::from_slice(&payload).unwrap();
        let cmd = signed.verify(&key).expect("signed with the hub's key");
        assert!(
            signed
                .verify(&SigningKey::from_bytes(&[8u8; 32]).verifying_key())
                .is_err(),
            "another key does not verify it"
        );
        assert_eq!(cmd.site, SITE);
        match &cmd.body {
            CommandBody::WatchAdd {
                tag: got,
                case_ref,
                note,
            } => {
                assert_eq!(got, tag);
                assert_eq!(case_ref, "武公(刑)立字[2026]123号");
                assert_eq!(note, "stolen e-bike");
            }
            other => panic!("{other:?}"),
        }
        seqs.push(cmd.seq);
    }
    assert!(seqs[1] > seqs[0], "{seqs:?}");
    // Only its own commands reach the site.
    assert!(
        agent
            .next_publish(Duration::from_millis(300))
            .await
            .is_none()
    );
    hub.stop().await;
}

/// MQTT lets a new connection with a client id evict the session holding it. Through the
/// gateway each principal has its own namespace of client ids, so another device using a site's
/// client id (or the hub's own `hub-internal`) evicts nobody.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_reusing_another_devices_client_id_evicts_nobody() {
    let (_dir, hub) = embedded_hub("").await;
    let port = hub.mqtt[0].port();
    let site = site_client(Proto::V5, port, "edge-wd-demo-001", SITE);
    site.connected(WAIT).await;
    let other = site_client(Proto::V5, port, "edge-wd-demo-001", "wd-other-002");
    other.connected(WAIT).await;
    let squatter = Spec::new(Proto::V5, port, "hub-internal")
        .login("svc", &token("svc"))
        .start();
    squatter.connected(WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(site.state(), ConnState::Connected, "the site was evicted");
    assert_eq!(other.state(), ConnState::Connected);
    // The hub's own link still works: an alert is still filed and dispatched.
    let a = alert(SITE, 4242, Severity::Major, Some((DEMO_LON, DEMO_LAT)));
    assert!(site.publish_alert(&a).await);
    let case = CaseId::for_alert(&a.id);
    let mut filed = false;
    for _ in 0..100 {
        if hub.dispatch.case(&case).await.unwrap().is_some() {
            filed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        filed,
        "the alert was not filed: the hub's link was disturbed"
    );
    hub.stop().await;
}

/// Alerts a site sent back to back, each larger than one socket read (snapshots), are all
/// stored and acknowledged in order while the gateway gathers what the client already sent
/// into one ingest batch. How many batches it takes depends on how much had arrived when the
/// gateway looked (under a loaded machine, less), so only the bench's "alerts each" measures
/// the gathering; here the batches are only counted and shown in /metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_sent_back_to_back_are_all_stored_and_acknowledged_in_order() {
    use tokio::io::AsyncWriteExt;
    let (_dir, hub) = embedded_hub("").await;
    let port = hub.mqtt[0].port();
    let mut c = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    c.write_all(&mqtt_wire::connect_v5("agent-burst", SITE, &token(SITE)))
        .await
        .unwrap();
    let (first, body) = mqtt_wire::read_packet(&mut c, 1 << 20).await.unwrap();
    assert_eq!((first, body[1]), (0x20, 0), "CONNACK, success");
    let topic = topics().alert(SITE);
    let mut burst = Vec::new();
    let mut ids = Vec::new();
    for n in 1..=6u16 {
        let a = alert_with_snapshot(600 + u64::from(n), 100_000);
        ids.push(a.id.clone());
        // PUBLISH, QoS 1: topic, packet id, no properties, the alert.
        let body = [
            mqtt_wire::string(&topic),
            n.to_be_bytes().to_vec(),
            vec![0],
            json(&a),
        ]
        .concat();
        burst.extend(mqtt_wire::packet(0x32, &body));
    }
    let batches = hub.metrics.ingest_batches.load(SeqCst);
    c.write_all(&burst).await.unwrap();
    for n in 1..=6u16 {
        let (first, body) = tokio::time::timeout(WAIT, mqtt_wire::read_packet(&mut c, 1 << 20))
            .await
            .expect("a PUBACK in time")
            .expect("the connection stays open");
        assert_eq!(first, 0x40, "PUBACK");
        assert_eq!(&body[..2], &n.to_be_bytes(), "in the order sent");
        assert!(body.len() == 2 || body[2] == 0, "success: {body:?}");
    }
    for id in &ids {
        assert!(hub.store.alerts().contains(id).unwrap(), "{id} stored");
    }
    let used = hub.metrics.ingest_batches.load(SeqCst) - batches;
    assert!((1..=6).contains(&used), "{used} batches for 6 alerts");
    assert!(
        hub.metrics.render().contains("hub_ingest_batches_total "),
        "the batch counter is in /metrics"
    );
    hub.stop().await;
}
