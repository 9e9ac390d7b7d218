//! `hub tail`: what the hub pushes, as people receive it. Subscribes (as a service) to every
//! person's notification topic and prints one line per notification — case, cell path, the
//! person notified by name — so an operator (or the demo) can watch dispatch and escalation
//! happen. With `--alerts` it also prints each alert as sites publish it.

use std::time::Duration;

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};

use crate::push::Notification;
use crate::roster::Roster;

#[derive(Debug, Clone)]
pub struct TailOptions {
    pub host: String,
    pub port: u16,
    pub username: String,
    pub password: String,
    pub prefix: String,
    /// Print alerts as they arrive too.
    pub alerts: bool,
    /// Exit after this long without a message (0: never).
    pub idle_exit_ms: u64,
}

/// Runs until idle (or Ctrl-C); returns how many notifications it printed.
pub async fn run(opts: TailOptions, roster: Option<Roster>) -> Result<u64, String> {
    let mut o = MqttOptions::new(
        format!("hub-tail-{}", std::process::id()),
        &opts.host,
        opts.port,
    );
    o.set_keep_alive(Duration::from_secs(30))
        .set_credentials(&opts.username, &opts.password)
        .set_max_packet_size(Some(crate::service::MAX_PACKET as u32));
    let (client, mut events) = AsyncClient::new(o, 64);
    let idle = Duration::from_millis(if opts.idle_exit_ms == 0 {
        u64::MAX / 4
    } else {
        opts.idle_exit_ms
    });
    let mut quiet_until = tokio::time::Instant::now() + idle;
    let mut printed = 0u64;
    let topics = protocol::Topics::new(&opts.prefix).map_err(|e| e.to_string())?;
    loop {
        let ev = tokio::select! {
            ev = events.poll() => ev,
            _ = tokio::time::sleep_until(quiet_until) => break,
            _ = tokio::signal::ctrl_c() => break,
        };
        match ev {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                let mut filters = vec![format!("{}/person/+/notify", opts.prefix)];
                if opts.alerts {
                    filters.push(topics.all_alerts());
                }
                for f in filters {
                    client
                        .subscribe(f, QoS::AtLeastOnce)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                eprintln!("hub tail: subscribed on {}:{}", opts.host, opts.port);
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                quiet_until = tokio::time::Instant::now() + idle;
                let topic = String::from_utf8_lossy(&p.topic).into_owned();
                if let Some(person) = topic
                    .strip_prefix(&format!("{}/person/", opts.prefix))
                    .and_then(|r| r.strip_suffix("/notify"))
                {
                    match serde_json::from_slice::<Notification>(&p.payload) {
                        Ok(n) => {
                            printed += 1;
                            let who = roster
                                .as_ref()
                                .and_then(|r| r.person(person))
                                .map(|p| format!("{} {}", p.name(), p.id()))
                                .unwrap_or_else(|| person.to_owned());
                            println!(
                                "notify {} step {} {:?}: {} → {} | {}",
                                n.case, n.step, n.reason, n.path, who, n.title
                            );
                        }
                        Err(e) => println!("notify to {person}: unreadable ({e})"),
                    }
                } else if let Some((site, _)) = topics.parse(&topic) {
                    match protocol::validate::decode_alert(&p.payload) {
                        Ok(a) => println!(
                            "alert {site} {} {:?} rule={} severity={:?} id={}",
                            a.time, a.kind, a.rule, a.severity, a.id
                        ),
                        Err(e) => println!("alert {site} REJECTED: {e}"),
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                eprintln!("hub tail: connection: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    Ok(printed)
}
