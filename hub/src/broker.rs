//! The embedded broker: rumqttd on loopback, behind the gateway.
//!
//! rumqttd runs its router and one server per protocol version in threads of its own (each with
//! its own single-threaded runtime), so it neither shares nor blocks the hub's runtime. It
//! listens only on 127.0.0.1 ports chosen at start; clients reach it through the gateway, and
//! anything that connects to the loopback ports directly must still present a valid credential
//! (rumqttd's external auth calls the same check).

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttd::{Config, ConnectionSettings, RouterConfig, ServerSettings};

use crate::gateway::auth::{AuthOutcome, Credentials};

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot find a free loopback port for the embedded broker: {0}")]
    Port(std::io::Error),
    #[error("cannot start the embedded broker thread: {0}")]
    Thread(std::io::Error),
    #[error("the embedded broker did not start listening on {0} within 10 s")]
    NotListening(SocketAddr),
}

/// Addresses of the running embedded broker.
#[derive(Debug, Clone, Copy)]
pub struct Embedded {
    pub v4: SocketAddr,
    pub v5: SocketAddr,
}

fn free_port() -> Result<SocketAddr, BrokerError> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(BrokerError::Port)?;
    l.local_addr().map_err(BrokerError::Port)
}

fn server(
    name: &str,
    listen: SocketAddr,
    max_packet: usize,
    creds: Arc<Credentials>,
) -> ServerSettings {
    let mut connections = ConnectionSettings {
        connection_timeout_ms: 10_000,
        max_payload_size: max_packet,
        // Agents keep up to 200 publishes in flight; the hub's own link more.
        max_inflight_count: 1000,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    connections.set_auth_handler(move |_client_id, user: String, pass: String| {
        let ok = matches!(
            creds.check(Some(&user), Some(pass.as_bytes())),
            AuthOutcome::Accepted(_)
        );
        async move { ok }
    });
    ServerSettings {
        name: name.to_owned(),
        listen,
        tls: None,
        next_connection_delay_ms: 0,
        connections,
    }
}

/// Starts rumqttd and waits until both listeners accept connections.
pub fn start(max_packet: usize, credentials: Arc<Credentials>) -> Result<Embedded, BrokerError> {
    let v4 = free_port()?;
    let v5 = free_port()?;
    let config = Config {
        id: 0,
        router: RouterConfig {
            max_connections: 100_000,
            max_outgoing_packet_count: 1000,
            // Per-topic in-memory logs. Alerts are durable in the hub's store before they get
            // here, so these only bound what a slow live subscriber can catch up on.
            max_segment_size: 16 * 1024 * 1024,
            max_segment_count: 2,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some(HashMap::from([(
            "v4".to_owned(),
            server("hub-broker-v4", v4, max_packet, credentials.clone()),
        )])),
        v5: Some(HashMap::from([(
            "v5".to_owned(),
            server("hub-broker-v5", v5, max_packet, credentials),
        )])),
        ws: None,
        cluster: None,
        console: None,
        bridge: None,
        prometheus: None,
        metrics: None,
    };
    std::thread::Builder::new()
        .name("rumqttd".into())
        .spawn(move || {
            let mut broker = rumqttd::Broker::new(config);
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "embedded broker stopped");
            }
        })
        .map_err(BrokerError::Thread)?;
    for addr in [v4, v5] {
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if Instant::now() > deadline {
                return Err(BrokerError::NotListening(addr));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    tracing::info!(%v4, %v5, "embedded broker listening on loopback");
    Ok(Embedded { v4, v5 })
}
