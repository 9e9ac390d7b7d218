//! The hub's own MQTT client ([`Link`]): to its embedded broker, or to an external one.
//!
//! - It subscribes to every site's `status`, `sighting` and `cmd/reply` and hands them to the
//!   hub as [`Inbound`] messages.
//! - Against an external broker it also takes the alerts, through an MQTT 5 shared subscription
//!   (`$share/{group}/…`) so several hubs split the load, with manual acknowledgements: a
//!   PUBACK goes back only after [`Ingest`] has the alert on disk. The session is persistent
//!   (`clean_start = false`), so the broker keeps what arrives while this hub is down.
//! - It publishes the hub's messages: notifications to people, signed commands to sites.
//!
//! With the embedded broker the gateway does the alert ingest itself (before rumqttd ever
//! acknowledges), so the link does not subscribe to alerts there.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use protocol::Topics;
use protocol::topics::TopicKind;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, Publish};
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use tokio::sync::{mpsc, watch};

use crate::ingest::Ingest;

/// A message from a site other than an alert.
#[derive(Debug, Clone)]
pub struct Inbound {
    pub site: String,
    pub kind: TopicKind,
    pub payload: Bytes,
    /// A retained copy the broker kept (sent on subscribing), not a message sent just now.
    pub retained: bool,
}

/// Where and how the link connects.
#[derive(Debug, Clone)]
pub struct LinkOptions {
    pub host: String,
    pub port: u16,
    pub client_id: String,
    pub username: String,
    pub password: String,
    /// Take alerts too, from this shared-subscription group (external broker only).
    pub alert_group: Option<String>,
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub max_packet: usize,
}

/// Handle for publishing; clone freely.
#[derive(Debug, Clone)]
pub struct Link {
    client: AsyncClient,
    /// True once the broker has acknowledged every subscription of the current connection.
    subscribed: watch::Receiver<bool>,
}

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("publish to {topic}: {detail}")]
    Publish { topic: String, detail: String },
}

impl Link {
    /// Connects (and keeps reconnecting) in a background task. Status, sighting and reply
    /// messages go to `inbound` (bounded; when full the link waits, which holds back the
    /// broker's delivery rather than dropping).
    pub fn start(
        opts: LinkOptions,
        topics: Topics,
        inbound: mpsc::Sender<Inbound>,
        ingest: Option<Ingest>,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let mut o = MqttOptions::new(&opts.client_id, &opts.host, opts.port);
        o.set_keep_alive(Duration::from_secs(30))
            .set_clean_start(opts.alert_group.is_none())
            .set_max_packet_size(Some(opts.max_packet as u32))
            .set_outgoing_inflight_upper_limit(1000)
            .set_request_channel_capacity(10_000)
            .set_manual_acks(true)
            .set_credentials(&opts.username, &opts.password);
        if opts.alert_group.is_some() {
            // A persistent session must outlive a restart of the hub.
            o.set_session_expiry_interval(Some(7 * 24 * 3600));
        }
        if let Some(tls) = &opts.tls {
            o.set_transport(rumqttc::Transport::tls_with_config(
                rumqttc::TlsConfiguration::Rustls(tls.clone()),
            ));
        }
        let (client, mut events) = AsyncClient::new(o, 10_000);
        let mut filters = vec![
            topics.all_status(),
            topics.all_sightings(),
            topics.all_cmd_replies(),
        ];
        if let Some(group) = &opts.alert_group {
            filters.push(format!("$share/{group}/{}", topics.all_alerts()));
        }
        let (alert_tx, alert_rx) = mpsc::channel::<Publish>(4096);
        if let Some(ingest) = ingest {
            tokio::spawn(alert_acker(
                client.clone(),
                alert_rx,
                ingest,
                topics.clone(),
            ));
        }
        let sub_client = client.clone();
        let (subscribed_tx, subscribed) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut backoff = Duration::from_millis(200);
            // SUBACKs still to come on this connection.
            let mut pending = 0usize;
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        backoff = Duration::from_millis(200);
                        pending = filters.len();
                        subscribed_tx.send_replace(false);
                        tracing::info!(host = %opts.host, port = opts.port, "hub link connected");
                        for f in &filters {
                            if let Err(e) = sub_client.subscribe(f.clone(), QoS::AtLeastOnce).await
                            {
                                tracing::warn!(filter = %f, error = %e, "subscribe failed");
                            }
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let topic = String::from_utf8_lossy(&p.topic).into_owned();
                        match topics.parse(&topic) {
                            Some((_, TopicKind::Alert)) => {
                                if alert_tx.send(p).await.is_err() {
                                    return;
                                }
                            }
                            Some((site, kind)) => {
                                let _ = sub_client.ack(&p).await;
                                let msg = Inbound {
                                    site,
                                    kind,
                                    payload: p.payload.clone(),
                                    retained: p.retain,
                                };
                                if inbound.send(msg).await.is_err() {
                                    return;
                                }
                            }
                            None => {
                                let _ = sub_client.ack(&p).await;
                            }
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(ack))) => {
                        pending = pending.saturating_sub(1);
                        if pending == 0 {
                            tracing::info!(filters = filters.len(), "hub link subscribed");
                            subscribed_tx.send_replace(true);
                        }
                        tracing::debug!(codes = ?ack.return_codes, "hub link SUBACK");
                    }
                    Ok(_) => {}
                    Err(e) => {
                        subscribed_tx.send_replace(false);
                        tracing::warn!(error = %e, retry_in = ?backoff, "hub link lost");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
        });
        (Self { client, subscribed }, task)
    }

    /// Waits until the broker has acknowledged every subscription, at most `wait`; false if
    /// it has not. The embedded broker's sites are let in only after this: a status or a
    /// sighting batch published before the link subscribed would be acknowledged to the site
    /// and delivered to nobody.
    pub async fn subscribed(&self, wait: Duration) -> bool {
        let mut rx = self.subscribed.clone();
        tokio::time::timeout(wait, rx.wait_for(|s| *s))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Publishes at QoS 1; `Ok` means queued to the broker.
    pub async fn publish(
        &self,
        topic: &str,
        payload: Vec<u8>,
        retain: bool,
    ) -> Result<(), LinkError> {
        self.client
            .publish(topic.to_owned(), QoS::AtLeastOnce, retain, payload)
            .await
            .map_err(|e| LinkError::Publish {
                topic: topic.to_owned(),
                detail: e.to_string(),
            })
    }

    pub async fn disconnect(&self) {
        let _ = self.client.disconnect().await;
    }
}

/// Stores alerts from the external broker in batches and acknowledges each only after its
/// batch is durable; a refused one is acknowledged too, once its quarantine record is durable
/// (the broker's PUBACK cannot carry our reason back to the site). A storage failure
/// acknowledges nothing: the broker redelivers.
async fn alert_acker(
    client: AsyncClient,
    mut rx: mpsc::Receiver<Publish>,
    ingest: Ingest,
    topics: Topics,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < 1024 {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        // Group by site, keeping each site's order.
        let mut by_site: Vec<(String, Vec<Publish>)> = Vec::new();
        for p in batch {
            let topic = String::from_utf8_lossy(&p.topic).into_owned();
            let site = topics.parse(&topic).map(|(s, _)| s).unwrap_or_default();
            match by_site.iter_mut().find(|(s, _)| *s == site) {
                Some((_, v)) => v.push(p),
                None => by_site.push((site, vec![p])),
            }
        }
        for (site, pubs) in by_site {
            let payloads: Vec<Bytes> = pubs.iter().map(|p| p.payload.clone()).collect();
            match ingest.submit(&site, &payloads).await {
                Ok(outcomes) => {
                    let mut deferred = 0;
                    for (p, o) in pubs.iter().zip(&outcomes) {
                        if *o == crate::ingest::Outcome::Deferred {
                            // Not acknowledged: the broker keeps it in the hub's persistent
                            // session and delivers it again when the link reconnects.
                            deferred += 1;
                        } else {
                            let _ = client.ack(p).await;
                        }
                    }
                    if deferred > 0 {
                        tracing::warn!(
                            site,
                            deferred,
                            "alerts from the broker not acknowledged: the disk is nearly full"
                        );
                    }
                }
                Err(e) => {
                    tracing::error!(site, error = %e, alerts = pubs.len(), "cannot store alerts from the broker; not acknowledged");
                    return;
                }
            }
        }
    }
}
