//! `edge-tools tail`: subscribe to a broker and print what agents publish, one line per
//! message — what the hub will see. For installers checking a box end to end, and for the demo.
//!
//! Every payload is decoded with the protocol's `decode_*` (size limit, schema version,
//! validation); a bad one is printed as such with the reason, never skipped silently.

use std::collections::HashSet;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::time::{Instant, sleep_until};

/// What to watch.
#[derive(Debug, Clone, clap::Args)]
pub struct TailArgs {
    /// The broker, `host:port`.
    #[arg(long, default_value = "127.0.0.1:1883")]
    pub broker: String,
    /// Topic prefix.
    #[arg(long, default_value = protocol::topics::DEFAULT_PREFIX)]
    pub prefix: String,
    /// Exit after this many distinct alerts (0: never).
    #[arg(long, default_value_t = 0)]
    pub count: u64,
    /// Exit when nothing arrived for this long, ms (0: never).
    #[arg(long, default_value_t = 0)]
    pub idle_exit_ms: u64,
    /// Print status heartbeats too (connects and disconnects are always printed).
    #[arg(long)]
    pub heartbeats: bool,
}

/// Runs until `count` distinct alerts, `idle_exit_ms` of silence, or Ctrl-C. Returns the
/// distinct alerts seen.
pub async fn run(args: TailArgs) -> anyhow::Result<u64> {
    let (host, port) = args
        .broker
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
        .ok_or_else(|| anyhow::anyhow!("--broker {:?}: expected host:port", args.broker))?;
    let topics = protocol::Topics::new(&args.prefix)?;
    let mut o = MqttOptions::new(
        format!("edge-tools-tail-{}", std::process::id()),
        host,
        port,
    );
    o.set_max_packet_size(protocol::MAX_PACKET_BYTES, protocol::MAX_PACKET_BYTES)
        .set_keep_alive(Duration::from_secs(30));
    let (client, mut events) = AsyncClient::new(o, 16);
    let mut ids = HashSet::new();
    let mut duplicates = 0u64;
    let idle = (args.idle_exit_ms > 0).then(|| Duration::from_millis(args.idle_exit_ms));
    let far = Duration::from_secs(86_400 * 365);
    let mut quiet_until = Instant::now() + idle.unwrap_or(far);
    loop {
        let ev = tokio::select! {
            ev = events.poll() => ev,
            _ = sleep_until(quiet_until) => break,
            _ = tokio::signal::ctrl_c() => break,
        };
        match ev {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                for filter in [
                    topics.all_alerts(),
                    topics.all_status(),
                    topics.all_sightings(),
                ] {
                    client.subscribe(filter, QoS::AtLeastOnce).await?;
                }
                eprintln!("tail: subscribed on {}", args.broker);
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                quiet_until = Instant::now() + idle.unwrap_or(far);
                let Some((site, kind)) = topics.parse(&p.topic) else {
                    continue;
                };
                match kind {
                    protocol::topics::TopicKind::Alert => {
                        match protocol::decode_alert(&p.payload) {
                            Ok(a) => {
                                if !ids.insert(a.id.clone()) {
                                    duplicates += 1;
                                    continue;
                                }
                                println!(
                                    "{site} alert {} {:?}/{:?} rule={} severity={:?} source={:?} snapshot={}B id={}",
                                    a.time,
                                    a.kind,
                                    a.phase,
                                    a.rule,
                                    a.severity,
                                    a.source,
                                    a.snapshot.as_ref().map_or(0, |s| s.jpeg.len()),
                                    a.id
                                );
                                if args.count > 0 && ids.len() as u64 >= args.count {
                                    break;
                                }
                            }
                            Err(e) => {
                                println!("{site} alert REJECTED ({} bytes): {e}", p.payload.len())
                            }
                        }
                    }
                    protocol::topics::TopicKind::Status => {
                        match protocol::decode_status(&p.payload) {
                            Ok(s) => {
                                if s.health.is_none() || args.heartbeats {
                                    let outbox = s.health.as_ref().map(|h| h.outbox.depth);
                                    println!(
                                        "{site} status {:?} at {} outbox={outbox:?}",
                                        s.state, s.time
                                    );
                                }
                            }
                            Err(e) => println!("{site} status REJECTED: {e}"),
                        }
                    }
                    protocol::topics::TopicKind::Sighting => {
                        match protocol::decode_sightings(&p.payload) {
                            Ok(b) => {
                                println!("{site} sightings {} in batch {}", b.sightings.len(), b.id)
                            }
                            Err(e) => println!("{site} sightings REJECTED: {e}"),
                        }
                    }
                    _ => {}
                }
            }
            Ok(_) => {}
            Err(e) => {
                eprintln!("tail: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    eprintln!(
        "tail: {} distinct alerts, {duplicates} duplicates",
        ids.len()
    );
    Ok(ids.len() as u64)
}
