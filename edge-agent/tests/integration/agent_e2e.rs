//! `edge-agent run` as a process, against a real mosquitto: hub commands (signed, refused when
//! forged, replayed or stale, persisted across a restart), the retained status with health and
//! its last will, Prometheus `/metrics`, systemd notifications and the graceful shutdown.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use protocol::command::{Command, CommandBody, CommandReply, ReplyOutcome, SignedCommand};
use protocol::status::{AgentState, Status};
use protocol::{Alert, AlertKind, SigningKey, UtcMillis};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use testkit::{free_port, mosquitto};
use tokio::io::AsyncWriteExt;
use tokio::net::UnixDatagram;
use tokio::process::{Child, Command as Process};
use tokio::sync::mpsc;
use tokio::time::timeout;

const SITE: &str = "e2e";
const TAG: &str = "E2801160600002084A5B3C1D";

fn now_ms() -> i64 {
    UtcMillis::now().0
}

/// What the test's subscriber saw.
#[derive(Debug)]
enum Seen {
    Status(Box<Status>),
    Alert(Box<Alert>),
    Reply(CommandReply),
}

/// A subscriber on the site's status, alert and reply topics, and a client to send commands.
async fn hub_client(port: u16) -> (AsyncClient, mpsc::Receiver<Seen>) {
    let mut o = MqttOptions::new(format!("test-hub-{}", now_ms()), "127.0.0.1", port);
    o.set_max_packet_size(2 << 20, 2 << 20);
    let (client, mut events) = AsyncClient::new(o, 32);
    let (tx, rx) = mpsc::channel(256);
    let c = client.clone();
    tokio::spawn(async move {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    for t in ["status", "alert", "cmd/reply"] {
                        c.subscribe(format!("se/v1/site/{SITE}/{t}"), QoS::AtLeastOnce)
                            .await
                            .unwrap();
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let seen = if p.topic.ends_with("/status") {
                        Seen::Status(Box::new(protocol::decode_status(&p.payload).unwrap()))
                    } else if p.topic.ends_with("/alert") {
                        Seen::Alert(Box::new(protocol::decode_alert(&p.payload).unwrap()))
                    } else {
                        Seen::Reply(serde_json::from_slice(&p.payload).unwrap())
                    };
                    if tx.send(seen).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    (client, rx)
}

/// Waits for the first message `f` accepts.
async fn expect<T>(rx: &mut mpsc::Receiver<Seen>, what: &str, f: impl Fn(Seen) -> Option<T>) -> T {
    timeout(Duration::from_secs(20), async {
        loop {
            let seen = rx.recv().await.expect("subscriber alive");
            if let Some(t) = f(seen) {
                return t;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

fn signed(key: &SigningKey, seq: u64, issued_at: i64, body: CommandBody) -> Vec<u8> {
    let command = Command {
        schema: protocol::SCHEMA_VERSION,
        site: SITE.into(),
        seq,
        issued_at: UtcMillis(issued_at),
        body,
    };
    serde_json::to_vec(&SignedCommand::sign(&command, key)).unwrap()
}

fn watch_add() -> CommandBody {
    CommandBody::WatchAdd {
        tag: TAG.into(),
        case_ref: "case-7".into(),
        note: "stolen".into(),
    }
}

struct Box_ {
    dir: tempfile::TempDir,
    config: std::path::PathBuf,
    reader: u16,
    metrics: u16,
    notify: std::path::PathBuf,
}

fn write_config(broker: u16, key: &SigningKey) -> Box_ {
    let dir = tempfile::tempdir().unwrap();
    let reader = free_port();
    let metrics = free_port();
    let public = protocol::command::encode_verifying_key(&key.verifying_key());
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            r#"site = "{SITE}"
data_dir = "data"

[[tag_readers]]
kind = "tcp"
listen = "127.0.0.1:{reader}"

[uplink]
host = "127.0.0.1"
port = {broker}
heartbeat_s = 1
reconnect_min_ms = 100
reconnect_max_ms = 1000

[uplink.commands]
public_key = "{public}"

[metrics]
listen = "127.0.0.1:{metrics}"
"#
        ),
    )
    .unwrap();
    let notify = dir.path().join("notify.sock");
    Box_ {
        dir,
        config,
        reader,
        metrics,
        notify,
    }
}

fn start(b: &Box_) -> (Child, UnixDatagram) {
    start_with(b, &[])
}

/// `edge-agent run --config … ARGS`.
fn start_with(b: &Box_, args: &[&str]) -> (Child, UnixDatagram) {
    let _ = std::fs::remove_file(&b.notify);
    let socket = UnixDatagram::bind(&b.notify).unwrap();
    let child = Process::new(env!("CARGO_BIN_EXE_edge-agent"))
        .args(["run", "--config"])
        .arg(&b.config)
        .args(args)
        .env("NOTIFY_SOCKET", &b.notify)
        .env("RUST_LOG", "warn,edge_agent=info")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    (child, socket)
}

/// Waits for a systemd notification containing `state`.
async fn notified(socket: &UnixDatagram, state: &str) {
    let mut buf = vec![0u8; 4096];
    timeout(Duration::from_secs(30), async {
        loop {
            let n = socket.recv(&mut buf).await.unwrap();
            if String::from_utf8_lossy(&buf[..n])
                .lines()
                .any(|l| l == state)
            {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {state} from the agent"));
}

async fn send_read(port: u16) {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(
        format!("{{\"reader\":\"gate\",\"tag\":\"{TAG}\",\"kind\":\"bike\",\"rssi\":-50}}\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    s.flush().await.unwrap();
}

async fn metrics(port: u16) -> HashMap<String, f64> {
    // In a workspace build the hub's webhooks turn on reqwest's rustls feature, and then any
    // client needs a process-wide crypto provider, even for plain http.
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

fn sigterm(child: &Child) {
    let pid = child.id().expect("running") as i32;
    // `kill` from procps is in every Debian base image; it avoids unsafe libc calls here.
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn reply(seen: Seen, seq: u64) -> Option<CommandReply> {
    match seen {
        Seen::Reply(r) if r.seq == Some(seq) => Some(r),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_commands_status_metrics_and_shutdown_of_a_running_agent() {
    let broker = mosquitto::Mosquitto::start().await;
    let key = SigningKey::from_bytes(&[7; 32]);
    let forger = SigningKey::from_bytes(&[8; 32]);
    let b = write_config(broker.port(), &key);
    let (hub, mut seen) = hub_client(broker.port()).await;
    let (mut agent, notify) = start(&b);
    notified(&notify, "READY=1").await;

    // The retained status: online, with health.
    let status = expect(&mut seen, "online status", |s| match s {
        Seen::Status(s) if s.state == AgentState::Online => Some(s),
        _ => None,
    })
    .await;
    let health = status.health.expect("online status carries health");
    assert!(health.uplink.connected);
    assert_eq!(health.readers.len(), 1);
    assert!(health.disk_free_bytes.is_some_and(|f| f > 0));

    // Before any command the tag is not watched: a read raises nothing (checked below by
    // the first alert being the one after the command).
    send_read(b.reader).await;

    let cmd_topic = format!("se/v1/site/{SITE}/cmd");
    let publish = |payload: Vec<u8>| {
        let hub = hub.clone();
        let topic = cmd_topic.clone();
        async move {
            hub.publish(topic, QoS::AtLeastOnce, false, payload)
                .await
                .unwrap()
        }
    };
    // Forged: signed by another key.
    publish(signed(&forger, 1, now_ms(), watch_add())).await;
    // An unverified seq could be anything, so the refusal does not repeat it.
    let r = expect(&mut seen, "reply to forged", |s| match s {
        Seen::Reply(r) => Some(r),
        _ => None,
    })
    .await;
    assert_eq!(r.outcome, ReplyOutcome::BadSignature, "{r:?}");
    assert_eq!(r.seq, None);
    // Stale: an hour old.
    publish(signed(&key, 1, now_ms() - 3_600_000, watch_add())).await;
    let r = expect(&mut seen, "reply to stale", |s| reply(s, 1)).await;
    assert_eq!(r.outcome, ReplyOutcome::Stale, "{r:?}");
    // Good.
    publish(signed(&key, 1, now_ms(), watch_add())).await;
    let r = expect(&mut seen, "reply to good", |s| reply(s, 1)).await;
    assert_eq!(r.outcome, ReplyOutcome::Applied, "{r:?}");
    // Replayed: the same seq again, correctly signed.
    publish(signed(&key, 1, now_ms(), watch_add())).await;
    let r = expect(&mut seen, "reply to replay", |s| reply(s, 1)).await;
    assert_eq!(r.outcome, ReplyOutcome::Replayed, "{r:?}");

    // Signed and fresh but not applicable (no such camera): refused by the core, seq used up.
    let nowhere = CommandBody::RuleParams(protocol::command::RuleParams {
        camera: "nowhere".into(),
        rule: "zone-1".into(),
        severity: None,
        threshold: Some(0.5),
        cooldown_ms: None,
        active_hours: None,
    });
    publish(signed(&key, 2, now_ms(), nowhere.clone())).await;
    let r = expect(&mut seen, "reply to invalid", |s| reply(s, 2)).await;
    assert_eq!(r.outcome, ReplyOutcome::Invalid, "{r:?}");
    assert!(
        r.detail.as_deref().is_some_and(|d| d.contains("nowhere")),
        "{r:?}"
    );

    // The watchlist changed: the read now raises a watchlist alert, delivered to the hub.
    send_read(b.reader).await;
    let alert = expect(&mut seen, "watchlist alert", |s| match s {
        Seen::Alert(a) => Some(a),
        _ => None,
    })
    .await;
    assert_eq!(
        alert.kind,
        AlertKind::Watchlist,
        "first alert is the watched tag"
    );
    assert_eq!(alert.tag.as_ref().unwrap().id, TAG);
    assert_eq!(
        alert.tag.as_ref().unwrap().case_ref.as_deref(),
        Some("case-7")
    );

    // Metrics agree.
    let m = timeout(Duration::from_secs(10), async {
        loop {
            let m = metrics(b.metrics).await;
            if m.get("edge_uplink_acked_total").copied().unwrap_or(0.0) >= 1.0 {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("the alert acked in /metrics");
    assert_eq!(m["edge_commands_applied_total"], 1.0);
    assert_eq!(m["edge_commands_refused_total"], 4.0);
    assert_eq!(m["edge_uplink_connected"], 1.0);
    assert_eq!(m["edge_outbox_depth"], 0.0);
    assert!(
        m.keys()
            .any(|k| k.starts_with("edge_reader_reads_total{reader=\"tcp_127.0.0.1_"))
    );

    // Graceful shutdown: STOPPING, exit 0, a clean retained `offline`.
    sigterm(&agent);
    notified(&notify, "STOPPING=1").await;
    let code = timeout(Duration::from_secs(20), agent.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(code.success(), "{code:?}");
    let status = expect(&mut seen, "offline status", |s| match s {
        Seen::Status(s) if s.state == AgentState::Offline => Some(s),
        _ => None,
    })
    .await;
    assert!(status.health.is_none());

    // Restart: the command survived (the read alerts again), and its seq is still used up.
    let (mut agent, notify) = start(&b);
    notified(&notify, "READY=1").await;
    expect(&mut seen, "online again", |s| match s {
        Seen::Status(s) if s.state == AgentState::Online => Some(()),
        _ => None,
    })
    .await;
    send_read(b.reader).await;
    let alert = expect(&mut seen, "watchlist alert after restart", |s| match s {
        Seen::Alert(a) => Some(a),
        _ => None,
    })
    .await;
    assert_eq!(alert.kind, AlertKind::Watchlist);
    publish(signed(
        &key,
        1,
        now_ms(),
        CommandBody::WatchRemove { tag: TAG.into() },
    ))
    .await;
    let r = expect(&mut seen, "replay after restart", |s| reply(s, 1)).await;
    assert_eq!(
        r.outcome,
        ReplyOutcome::Replayed,
        "last seq persisted: {r:?}"
    );

    // SIGKILL: the broker publishes the last will, `offline`.
    agent.start_kill().unwrap();
    agent.wait().await.unwrap();
    let status = expect(&mut seen, "last will", |s| match s {
        Seen::Status(s) if s.state == AgentState::Offline => Some(s),
        _ => None,
    })
    .await;
    assert!(status.health.is_none());
    assert!(Path::new(&b.dir.path().join("data/outbox")).is_dir());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_hubs_public_key_is_refused_without_demo() {
    // The demo key under a config of our own: recognised by value, not by the file it is in.
    let demo = protocol::signing_key_from_base64(protocol::demo::DEMO_SIGNING_KEY.trim()).unwrap();
    let b = write_config(free_port(), &demo);
    let (mut agent, _notify) = start(&b);
    let status = timeout(Duration::from_secs(30), agent.wait())
        .await
        .expect("the agent exits at once")
        .unwrap();
    assert!(!status.success());
    // stderr is inherited (shown on failure); the message itself is checked with `output()`.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .args(["run", "--config"])
        .arg(&b.config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("agent.toml: uplink.commands.public_key: the demo hub's public key")
            && err.contains("--demo"),
        "{err}"
    );

    // With --demo it starts (systemd READY), and stops on SIGTERM.
    let (mut agent, notify) = start_with(&b, &["--demo"]);
    notified(&notify, "READY=1").await;
    sigterm(&agent);
    let status = timeout(Duration::from_secs(30), agent.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
}
