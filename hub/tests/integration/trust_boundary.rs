//! The MQTT trust boundary against the real `hub` binary, with hand-made bytes over real
//! sockets: what a stolen site token, a phone's token or an anonymous socket can do.
//!
//! Each test is an attack that worked against the gateway when it forwarded the client's own
//! CONNECT bytes to rumqttd and let any socket hold a connection slot.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const OTHER: &str = "wd-other-002";

struct Hub {
    dir: HubDir,
    port: u16,
    _child: tokio::process::Child,
}

async fn hub() -> Hub {
    hub_with("").await
}

/// A hub whose `[broker]` table also has `broker_extra`.
async fn hub_with(broker_extra: &str) -> Hub {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = hub_dir(
        &format!("mode = \"embedded\"\nlisten = [\"127.0.0.1:{port}\"]\n{broker_extra}"),
        "",
    );
    let child = spawn_hub(&dir.config_path, &dir.dir.path().join("hub.log"));
    wait_port(port).await;
    Hub {
        dir,
        port,
        _child: child,
    }
}

impl Hub {
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.dir.path().join("hub.log")).unwrap_or_default()
    }
}

// ---- hand-made MQTT (the shared wire kit) ---------------------------------------------------

use testkit::mqtt_wire::*;

/// A well-formed v5 CONNECT of `site` with its own token.
fn site_connect(site: &str, client_id: &str) -> Vec<u8> {
    connect_v5(client_id, site, &token(site))
}

async fn open(port: u16) -> TcpStream {
    TcpStream::connect(("127.0.0.1", port)).await.unwrap()
}

/// Reads one packet (first byte, body), or `None` when the hub closes the connection first.
async fn read_within(c: &mut TcpStream, within: Duration) -> Option<(u8, Vec<u8>)> {
    tokio::time::timeout(within, read_packet(c, 1 << 20))
        .await
        .ok()
        .flatten()
}

/// Whether the hub closed the connection within `within` (EOF or reset), reading past
/// whatever packets it sent first.
async fn closed(c: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 256];
    tokio::time::timeout(within, async {
        loop {
            match c.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            }
        }
    })
    .await
    .unwrap_or(false)
}

/// CONNACK reason (v5) or return code (3.1.1) the hub answered, or `None` if it closed.
async fn connack(c: &mut TcpStream) -> Option<u8> {
    let (first, body) = read_within(c, Duration::from_secs(5)).await?;
    assert_eq!(first, 0x20, "expected CONNACK, got {first:#x}");
    Some(body[1])
}

/// A retained message on `topic`, as a service subscriber sees it within `within`.
async fn retained_on(port: u16, topic: &str, within: Duration) -> Option<Vec<u8>> {
    let mut m = Spec::new(Proto::V5, port, "svc-watch")
        .login("svc", &token("svc"))
        .start();
    m.connected(Duration::from_secs(5)).await;
    m.subscribe(topic).await;
    m.next_publish(within).await.map(|(_, p)| p)
}

// ---- the attacks ----------------------------------------------------------------------------

/// With its own token, a site sent a CONNECT whose 65,535-byte client id, once the gateway
/// prefixed it (`site:wd-demo-001:…`), no longer fitted its u16 length: rumqttd read a short
/// client id and then took the rest of the id as a will on **another site's** status topic,
/// retained. Now the id is refused (MQTT 5: 0x85) and nothing reaches the broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_id_that_wraps_its_length_cannot_plant_a_will_on_another_sites_topic() {
    let hub = hub().await;
    let prefix = format!("site:{SITE}:");
    // What rumqttd would read after the wrapped id: the rest of the prefix (":", read as a
    // will property length of 58), 58 bytes of user property, then the forged will and login.
    let forged_topic = format!("se/v1/site/{OTHER}/status");
    let mut id = vec![0x26];
    id.extend(string([b'k'; 26]));
    id.extend(string([b'v'; 27]));
    assert_eq!(id.len(), 58);
    id.extend(string(forged_topic.as_bytes()));
    id.extend(string(b"pwned"));
    id.extend(string(SITE.as_bytes()));
    id.extend(string(token(SITE).as_bytes()));
    id.resize(65_535, b'x');
    assert_eq!((prefix.len() + id.len()) % 65_536, prefix.len() - 1);
    // What the gateway reads after the id: an honest will on the site's own status topic.
    let own_topic = format!("se/v1/site/{SITE}/status");
    let mut b = connect_head(5, USER | PASS | WILL | WILL_RETAIN | CLEAN);
    b.push(0);
    b.extend(string(&id));
    b.push(0);
    b.extend(string(own_topic.as_bytes()));
    b.extend(string(b"offline"));
    b.extend(string(SITE.as_bytes()));
    b.extend(string(token(SITE).as_bytes()));
    let mut c = open(hub.port).await;
    c.write_all(&packet(0x10, &b)).await.unwrap();
    // Refused: larger than a CONNECT may be before login (closed from its header), and its
    // client id is not valid (0x85) either way.
    assert_ne!(connack(&mut c).await, Some(0), "refused");
    drop(c); // an abrupt close is what publishes a will
    assert_eq!(
        retained_on(hub.port, &forged_topic, Duration::from_secs(1)).await,
        None,
        "nothing retained on another site's status topic"
    );
}

/// A property block that declares fewer bytes than its properties take (rumqttd read on past
/// the block, the gateway skipped by the declared length), trailing bytes after the password,
/// duplicate properties and a non-UTF-8 username: each refused with CONNACK 0x81 before any
/// byte reaches the broker, and the hub goes on serving an honest site.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connects_the_broker_would_read_differently_are_refused_as_malformed() {
    let hub = hub().await;
    let tok = token(SITE);
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    // Declares 1 byte; session expiry (0x11) takes 5.
    let mut b = connect_head(5, USER | PASS | CLEAN);
    b.extend_from_slice(&[1, 0x11, 0, 2, b'z', b'z']);
    b.extend(string(b"hub-internal"));
    b.extend(string(SITE.as_bytes()));
    b.extend(string(tok.as_bytes()));
    cases.push(("property overrun", packet(0x10, &b)));
    let mut trailing = site_connect(SITE, "edge-1");
    trailing.extend_from_slice(&[0, 4, b'j', b'u', b'n', b'k']);
    trailing[1] += 6;
    cases.push(("bytes after the password", trailing));
    let mut b = connect_head(5, USER | PASS | CLEAN);
    b.extend_from_slice(&[10, 0x11, 0, 0, 0, 1, 0x11, 0, 0, 0, 9]);
    b.extend(string(b"edge-1"));
    b.extend(string(SITE.as_bytes()));
    b.extend(string(tok.as_bytes()));
    cases.push(("duplicate property", packet(0x10, &b)));
    let mut b = connect_head(5, USER | PASS | CLEAN);
    b.push(0);
    b.extend(string(b"edge-1"));
    b.extend(string([0xff, 0xfe]));
    b.extend(string(tok.as_bytes()));
    cases.push(("username not UTF-8", packet(0x10, &b)));
    for (what, bytes) in cases {
        let mut c = open(hub.port).await;
        c.write_all(&bytes).await.unwrap();
        assert_eq!(connack(&mut c).await, Some(0x81), "{what}");
        assert!(
            closed(&mut c, Duration::from_secs(2)).await,
            "{what}: closed"
        );
    }
    // The hub's own link to rumqttd was not taken over: an alert still opens a case.
    let site = Spec::new(Proto::V5, hub.port, "edge-ok")
        .login(SITE, &tok)
        .start();
    site.connected(Duration::from_secs(5)).await;
    assert!(
        site.publish_alert(&alert(SITE, 1, protocol::Severity::Major, None))
            .await
    );
    site.wait_acks(1, Duration::from_secs(5)).await;
    assert!(
        !hub.log().contains("hub link lost"),
        "the hub's link survived:\n{}",
        hub.log()
    );
}

/// A phone's token with a client id that, namespaced by the old gateway, collided with
/// nothing, but that rumqttd read as the hub's own client id: now every id is `[A-Za-z0-9_.-]`
/// (no ':' can be forged into the namespace) and a person cannot end the hub's link or a
/// site's session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_token_cannot_take_over_the_hubs_link_or_a_sites_session() {
    let hub = hub().await;
    let site = Spec::new(Proto::V5, hub.port, "edge-1")
        .login(SITE, &token(SITE))
        .start();
    site.connected(Duration::from_secs(5)).await;
    for id in [
        "hub-internal".to_owned(),
        format!("site:{SITE}:edge-1"),
        "site:x".to_owned(),
    ] {
        let mut b = connect_head(5, USER | PASS | CLEAN);
        b.push(0);
        b.extend(string(id.as_bytes()));
        b.extend(string(b"p-lina"));
        b.extend(string(token("p-lina").as_bytes()));
        let mut c = open(hub.port).await;
        c.write_all(&packet(0x10, &b)).await.unwrap();
        let code = connack(&mut c).await;
        if id == "hub-internal" {
            // A plain id: accepted, in the person's namespace, evicting nobody.
            assert_eq!(code, Some(0), "{id}");
        } else {
            assert_eq!(code, Some(0x85), "{id}");
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        site.state(),
        ConnState::Connected,
        "the site's session is intact"
    );
    assert!(
        site.publish_alert(&alert(SITE, 2, protocol::Severity::Major, None))
            .await
    );
    site.wait_acks(1, Duration::from_secs(5)).await;
    assert!(!hub.log().contains("hub link lost"), "{}", hub.log());
}

/// After CONNECT the same strictness: a PUBLISH with a topic alias, one whose property block
/// overruns, a SUBSCRIBE with reserved option bits, an AUTH packet: each ends the connection
/// with the MQTT 5 reason, and nothing is forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_packets_after_connect_end_the_connection_with_their_reason() {
    let hub = hub().await;
    let topic = format!("se/v1/site/{SITE}/status");
    let cases: Vec<(&str, Vec<u8>, u8)> = vec![
        (
            "topic alias",
            packet(
                0x30,
                &[
                    string(topic.as_bytes()),
                    vec![3, 0x23, 0, 1],
                    b"{}".to_vec(),
                ]
                .concat(),
            ),
            0x94,
        ),
        (
            "publish property overrun",
            packet(
                0x30,
                &[string(topic.as_bytes()), vec![1, 0x02, 0, 0]].concat(),
            ),
            0x81,
        ),
        (
            "subscribe reserved bits",
            packet(
                0x82,
                &[
                    vec![0, 1, 0],
                    string(format!("se/v1/site/{SITE}/cmd").as_bytes()),
                    vec![0xC1],
                ]
                .concat(),
            ),
            0x81,
        ),
        ("auth", vec![0xF0, 0], 0x82),
    ];
    for (what, bytes, reason) in cases {
        let mut c = open(hub.port).await;
        c.write_all(&site_connect(SITE, "edge-raw")).await.unwrap();
        assert_eq!(connack(&mut c).await, Some(0), "{what}: connected");
        c.write_all(&bytes).await.unwrap();
        let (first, body) = read_within(&mut c, Duration::from_secs(3))
            .await
            .unwrap_or_else(|| panic!("{what}: no DISCONNECT"));
        assert_eq!(
            (first, body.first().copied()),
            (0xE0, Some(reason)),
            "{what}"
        );
        assert!(closed(&mut c, Duration::from_secs(2)).await, "{what}");
    }
    // Nothing of the above was retained on the site's status topic.
    assert_eq!(
        retained_on(hub.port, &topic, Duration::from_millis(500)).await,
        None
    );
}

/// 2,000 idle unauthenticated sockets used to hold every connection slot; a real site could
/// not connect. Now they wait in a small pre-auth pool, each for at most 3 s, and a site
/// connecting in the middle of them is served at once: the slots (here 1,000) are for
/// authenticated connections only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_idle_sockets_do_not_keep_a_site_out() {
    let hub = hub_with("max_connections = 1000").await;
    let target: SocketAddr = ([127, 0, 0, 1], hub.port).into();
    let mut idle = Vec::new();
    // From eight other loopback addresses, as a botnet would come from many.
    for i in 0..2_000u32 {
        let sock = TcpSocket::new_v4().unwrap();
        sock.bind(([127, 0, 0, 2 + (i % 8) as u8], 0).into())
            .unwrap();
        idle.push(sock.connect(target).await.unwrap());
    }
    let start = Instant::now();
    let mut c = open(hub.port).await;
    c.write_all(&site_connect(SITE, "edge-1")).await.unwrap();
    assert_eq!(connack(&mut c).await, Some(0), "the site is in");
    let took = start.elapsed();
    assert!(took < Duration::from_secs(1), "connected in {took:?}");
    // And the idle ones are gone within the CONNECT deadline (3 s), or were evicted sooner.
    let mut still_open = 0;
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    for s in &mut idle {
        if !closed(s, Duration::from_millis(5)).await {
            still_open += 1;
        }
    }
    assert_eq!(still_open, 0, "idle sockets outlived the deadline");
    // Same-address flood: a site sharing the attacker's address still gets in.
    let mut flood = Vec::new();
    for _ in 0..500 {
        let sock = TcpSocket::new_v4().unwrap();
        sock.bind(([127, 0, 0, 1], 0).into()).unwrap();
        flood.push(sock.connect(target).await.unwrap());
    }
    let mut c2 = open(hub.port).await;
    c2.write_all(&site_connect(SITE, "edge-2")).await.unwrap();
    assert_eq!(connack(&mut c2).await, Some(0));
    let log = hub.log();
    assert!(!log.contains("panicked"), "{log}");
}

/// Before authentication little is free: a socket that says nothing is closed after 3 s, and
/// a CONNECT larger than 16 KiB is refused from its header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn before_login_a_silent_socket_is_closed_in_3_s_and_a_large_connect_at_once() {
    let hub = hub().await;
    let start = Instant::now();
    let mut silent = open(hub.port).await;
    assert!(closed(&mut silent, Duration::from_secs(5)).await);
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(2_500) && took < Duration::from_millis(4_500),
        "closed after {took:?}"
    );
    // A CONNECT header announcing 20 KiB: the hub does not wait for the body.
    let mut big = open(hub.port).await;
    let mut header = vec![0x10];
    header.extend(varint(20 * 1024));
    big.write_all(&header).await.unwrap();
    let start = Instant::now();
    assert!(closed(&mut big, Duration::from_secs(2)).await);
    assert!(start.elapsed() < Duration::from_secs(1));
    // A CONNECT dribbled one byte at a time past the deadline is cut at the deadline too.
    let mut slow = open(hub.port).await;
    let bytes = site_connect(SITE, "edge-slow");
    let start = Instant::now();
    for b in bytes {
        if slow.write_all(&[b]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        if start.elapsed() > Duration::from_secs(6) {
            break;
        }
    }
    assert!(closed(&mut slow, Duration::from_secs(1)).await);
    assert!(
        start.elapsed() < Duration::from_millis(4_500),
        "{:?}",
        start.elapsed()
    );
}

/// Failed logins are logged, but at most ten per ten seconds, and a long username is cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_login_logs_are_rate_limited_and_truncated() {
    let hub = hub().await;
    let long = "u".repeat(5_000);
    for _ in 0..50 {
        let mut b = connect_head(5, USER | PASS | CLEAN);
        b.push(0);
        b.extend(string(b"edge-x"));
        b.extend(string(long.as_bytes()));
        b.extend(string(b"wrong"));
        let mut c = open(hub.port).await;
        c.write_all(&packet(0x10, &b)).await.unwrap();
        assert_eq!(connack(&mut c).await, Some(0x86));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = hub.log();
    let lines = log.matches("bad credentials").count();
    assert!((1..=10).contains(&lines), "{lines} lines logged");
    assert!(
        !log.contains(&"u".repeat(65)),
        "username cut to 64 characters"
    );
}
