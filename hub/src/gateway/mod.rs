//! The gateway: the hub's public MQTT listeners, in front of the embedded rumqttd.
//!
//! rumqttd routes messages well, but it acknowledges a PUBLISH as soon as it is in its
//! in-memory log, has no per-topic ACLs, and its TLS is its own. The issue we serve needs
//! "an alert the agent saw acknowledged is on the hub's disk" and "a site can publish only
//! under its own topics". So every client connects here; the gateway
//!
//! 1. reads the CONNECT, checks the username and token ([`auth::Credentials`]) and the will
//!    topic against the ACL, answering a refusal itself;
//! 2. opens a connection to rumqttd on loopback (its v4 or v5 listener, by the client's
//!    protocol level) and forwards the CONNECT unchanged;
//! 3. reads the client's packets in batches: a PUBLISH or SUBSCRIBE outside the principal's
//!    topics closes the connection (counted); a PUBLISH on an alert topic is handed to
//!    [`Ingest`], and only once it is durable is the PUBLISH forwarded, so rumqttd's PUBACK
//!    reaches the agent after the hub's flush. A malformed alert is counted and dropped, and
//!    acknowledged by the gateway itself so the agent does not resend it forever;
//! 4. passes everything else through byte for byte, both ways.
//!
//! Packets from rumqttd and the gateway's own PUBACKs share one writer task per client, so
//! they interleave only at packet boundaries.

pub mod auth;
pub mod frame;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use protocol::topics::TopicKind;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};

use crate::ingest::{Ingest, Outcome};
use crate::metrics::{HubMetrics, bump};
use auth::{Acl, AuthOutcome, Credentials, Principal};
use frame::{Frame, FrameError, Version, kind};

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("client {peer}: {source}")]
    Frame {
        peer: SocketAddr,
        source: FrameError,
    },
    #[error("client {peer}: {source}")]
    Io {
        peer: SocketAddr,
        source: std::io::Error,
    },
    #[error("client {peer}: no CONNECT within {0:?}", CONNECT_TIMEOUT)]
    ConnectTimeout { peer: SocketAddr },
    #[error("client {peer}: cannot reach the embedded broker at {upstream}: {source}")]
    Upstream {
        peer: SocketAddr,
        upstream: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS setup: {0}")]
    Tls(String),
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What every connection shares.
#[derive(Debug)]
pub struct Gateway {
    credentials: Credentials,
    acl: Acl,
    ingest: Ingest,
    metrics: Arc<HubMetrics>,
    upstream_v4: SocketAddr,
    upstream_v5: SocketAddr,
    max_packet: usize,
    connections: Arc<Semaphore>,
}

impl Gateway {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        credentials: Credentials,
        acl: Acl,
        ingest: Ingest,
        metrics: Arc<HubMetrics>,
        upstream_v4: SocketAddr,
        upstream_v5: SocketAddr,
        max_packet: usize,
        max_connections: usize,
    ) -> Arc<Self> {
        Arc::new(Self {
            credentials,
            acl,
            ingest,
            metrics,
            upstream_v4,
            upstream_v5,
            max_packet,
            connections: Arc::new(Semaphore::new(max_connections)),
        })
    }

    /// Accepts connections until `shutdown` turns true. With `tls`, each connection does the
    /// TLS handshake first (inside its own task, so a slow handshake holds up nobody).
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        tls: Option<tokio_rustls::TlsAcceptor>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let local = listener.local_addr().ok();
        tracing::info!(listen = ?local, tls = tls.is_some(), "gateway listening");
        loop {
            let permit = tokio::select! {
                _ = shutdown.changed() => break,
                p = self.connections.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            let accepted = tokio::select! {
                _ = shutdown.changed() => break,
                a = listener.accept() => a,
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait, don't spin.
                    tracing::warn!(error = %e, "accept failed; pausing");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let this = self.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let result = match tls {
                    None => this.handle(stream, peer).await,
                    // The handshake counts against the CONNECT timeout: a peer that opens a
                    // connection and says nothing must not hold a connection slot.
                    Some(acceptor) => {
                        match tokio::time::timeout(CONNECT_TIMEOUT, acceptor.accept(stream)).await {
                            Ok(Ok(s)) => this.handle(s, peer).await,
                            Ok(Err(source)) => Err(GatewayError::Io { peer, source }),
                            Err(_) => Err(GatewayError::ConnectTimeout { peer }),
                        }
                    }
                };
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "connection ended");
                }
                drop(permit);
            });
        }
    }

    async fn handle<S>(&self, stream: S, peer: SocketAddr) -> Result<(), GatewayError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let io_err = |source| GatewayError::Io { peer, source };
        let (mut cr, mut cw) = tokio::io::split(stream);
        let mut buf = BytesMut::with_capacity(16 * 1024);
        let first = tokio::time::timeout(
            CONNECT_TIMEOUT,
            read_frame(&mut cr, &mut buf, self.max_packet, peer),
        )
        .await
        .map_err(|_| GatewayError::ConnectTimeout { peer })??;
        let Some(first) = first else {
            return Ok(());
        };
        let connect = frame::parse_connect(&first).map_err(|source| {
            bump(&self.metrics.protocol_errors);
            GatewayError::Frame { peer, source }
        })?;
        let version = connect.version;
        let principal = match self
            .credentials
            .check(connect.username.as_deref(), connect.password.as_deref())
        {
            AuthOutcome::Accepted(p) => p,
            AuthOutcome::BadCredentials => {
                bump(&self.metrics.connections_refused_auth);
                tracing::warn!(%peer, username = ?connect.username, client_id = %connect.client_id, "connection refused: bad credentials");
                let _ = cw.write_all(&frame::connack_refused(version, true)).await;
                return Ok(());
            }
        };
        if let Some(will) = &connect.will_topic
            && !self.acl.may_publish(&principal, will)
        {
            bump(&self.metrics.acl_denied);
            tracing::warn!(%peer, who = %principal.label(), will, "connection refused: will topic outside its ACL");
            let _ = cw.write_all(&frame::connack_refused(version, false)).await;
            return Ok(());
        }
        let upstream_addr = match version {
            Version::V311 => self.upstream_v4,
            Version::V5 => self.upstream_v5,
        };
        let upstream =
            TcpStream::connect(upstream_addr)
                .await
                .map_err(|source| GatewayError::Upstream {
                    peer,
                    upstream: upstream_addr,
                    source,
                })?;
        let _ = upstream.set_nodelay(true);
        let (mut ur, mut uw) = upstream.into_split();
        // Each client in its principal's namespace (`site:s1:edge-s1`; ids have no ':' and
        // rumqttd refuses '/' in client ids): a device cannot evict another's session by
        // reusing its client id (nor the hub's own link, which connects to rumqttd directly).
        let namespaced = connect.with_client_id(
            &first,
            &format!("{}:{}", principal.label(), connect.client_id),
        );
        uw.write_all(&namespaced).await.map_err(io_err)?;
        bump(&self.metrics.connections_accepted);
        tracing::info!(%peer, who = %principal.label(), client_id = %connect.client_id, ?version, "client connected");

        // One writer to the client: rumqttd's packets and the gateway's own PUBACKs.
        let (wtx, mut wrx) = mpsc::channel::<Bytes>(512);
        let writer = async move {
            while let Some(b) = wrx.recv().await {
                cw.write_all(&b).await?;
                // Coalesce whatever else is ready before the next syscall wait.
                while let Ok(more) = wrx.try_recv() {
                    cw.write_all(&more).await?;
                }
                cw.flush().await?;
            }
            cw.shutdown().await
        };
        let max = self.max_packet + 16;
        let pump_tx = wtx.clone();
        let pump = async move {
            let mut ubuf = BytesMut::with_capacity(16 * 1024);
            loop {
                while let Some(f) = frame::split_frame(&mut ubuf, max)
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?
                {
                    if pump_tx.send(f.bytes).await.is_err() {
                        return Ok::<(), std::io::Error>(());
                    }
                }
                if ur.read_buf(&mut ubuf).await? == 0 {
                    return Ok(());
                }
            }
        };
        let client = self.client_loop(&mut cr, &mut uw, buf, &wtx, &principal, version, peer);
        let result = tokio::select! {
            r = client => r,
            r = pump => r.map_err(io_err),
            r = writer => r.map_err(io_err),
        };
        tracing::info!(%peer, who = %principal.label(), "client disconnected");
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn client_loop<R>(
        &self,
        cr: &mut R,
        uw: &mut tokio::net::tcp::OwnedWriteHalf,
        mut buf: BytesMut,
        wtx: &mpsc::Sender<Bytes>,
        who: &Principal,
        version: Version,
        peer: SocketAddr,
    ) -> Result<(), GatewayError>
    where
        R: AsyncRead + Unpin,
    {
        let io_err = |source| GatewayError::Io { peer, source };
        let mut frames: Vec<Frame> = Vec::new();
        loop {
            if cr.read_buf(&mut buf).await.map_err(io_err)? == 0 {
                return Ok(());
            }
            frames.clear();
            while let Some(f) = frame::split_frame(&mut buf, self.max_packet)
                .map_err(|source| self.protocol_error(peer, source))?
            {
                frames.push(f);
            }
            if frames.is_empty() {
                continue;
            }
            // Decide on each packet; alerts are collected for one ingest batch.
            let mut alert_payloads: Vec<Bytes> = Vec::new();
            let mut alert_site: Option<String> = None;
            let mut plan: Vec<Step> = Vec::with_capacity(frames.len());
            for f in &frames {
                match f.kind() {
                    kind::PUBLISH => {
                        let p = frame::parse_publish(f, version)
                            .map_err(|source| self.protocol_error(peer, source))?;
                        if p.topic.is_empty() {
                            // A topic alias: the gateway cannot check what it cannot see.
                            return self
                                .deny(
                                    wtx,
                                    version,
                                    peer,
                                    who,
                                    "topic alias",
                                    frame::reason::TOPIC_ALIAS_INVALID,
                                )
                                .await;
                        }
                        if !self.acl.may_publish(who, &p.topic) {
                            return self
                                .deny(
                                    wtx,
                                    version,
                                    peer,
                                    who,
                                    &p.topic,
                                    frame::reason::NOT_AUTHORIZED,
                                )
                                .await;
                        }
                        match self.acl.topics().parse(&p.topic) {
                            Some((_, TopicKind::Alert)) if p.qos != 1 => {
                                // Alerts are QoS 1: acknowledged once stored. QoS 0 could be
                                // lost silently and QoS 2's exchange is not what the store
                                // guarantees, so both are refused rather than half-honoured.
                                return self
                                    .deny(
                                        wtx,
                                        version,
                                        peer,
                                        who,
                                        &p.topic,
                                        frame::reason::QOS_NOT_SUPPORTED,
                                    )
                                    .await;
                            }
                            Some((site, TopicKind::Alert)) => {
                                if alert_site.as_deref().is_some_and(|s| s != site) {
                                    // A service publishing for several sites in one read:
                                    // settle the batch so far first, keeping order.
                                    self.settle(
                                        &mut plan,
                                        &mut alert_payloads,
                                        alert_site.take(),
                                        uw,
                                        wtx,
                                        version,
                                        peer,
                                    )
                                    .await?;
                                }
                                alert_site = Some(site);
                                plan.push(Step::Alert {
                                    index: alert_payloads.len(),
                                    frame: f.bytes.clone(),
                                    pkid: p.pkid,
                                });
                                alert_payloads.push(p.payload);
                            }
                            _ => plan.push(Step::Forward(f.bytes.clone())),
                        }
                    }
                    kind::SUBSCRIBE => {
                        let filters = frame::parse_subscribe(f, version)
                            .map_err(|source| self.protocol_error(peer, source))?;
                        if let Some(bad) = filters.iter().find(|t| !self.acl.may_subscribe(who, t))
                        {
                            return self
                                .deny(wtx, version, peer, who, bad, frame::reason::NOT_AUTHORIZED)
                                .await;
                        }
                        plan.push(Step::Forward(f.bytes.clone()));
                    }
                    kind::CONNECT => {
                        return Err(
                            self.protocol_error(peer, FrameError::NotConnect(kind::CONNECT))
                        );
                    }
                    _ => plan.push(Step::Forward(f.bytes.clone())),
                }
            }
            self.settle(
                &mut plan,
                &mut alert_payloads,
                alert_site.take(),
                uw,
                wtx,
                version,
                peer,
            )
            .await?;
        }
    }

    /// Stores the planned alerts, then forwards the planned packets in order; a rejected
    /// alert is acknowledged by the gateway instead of forwarded.
    #[allow(clippy::too_many_arguments)]
    async fn settle(
        &self,
        plan: &mut Vec<Step>,
        payloads: &mut Vec<Bytes>,
        site: Option<String>,
        uw: &mut tokio::net::tcp::OwnedWriteHalf,
        wtx: &mpsc::Sender<Bytes>,
        version: Version,
        peer: SocketAddr,
    ) -> Result<(), GatewayError> {
        let outcomes = match (&site, payloads.is_empty()) {
            (Some(site), false) => {
                self.ingest
                    .submit(site, payloads)
                    .await
                    .map_err(|e| GatewayError::Io {
                        peer,
                        source: std::io::Error::other(e),
                    })?
            }
            _ => Vec::new(),
        };
        let mut out = BytesMut::new();
        for step in plan.drain(..) {
            match step {
                Step::Forward(b) => out.extend_from_slice(&b),
                Step::Alert { index, frame, pkid } => match outcomes.get(index) {
                    Some(Outcome::Rejected(r)) => {
                        if let Some(pkid) = pkid {
                            // Quarantined (durably) by ingest: acknowledged so the agent
                            // stops resending; MQTT 5 says why (3.1.1 cannot).
                            let _ = wtx
                                .send(frame::puback(pkid, version, r.mqtt_reason()))
                                .await;
                        }
                    }
                    _ => out.extend_from_slice(&frame),
                },
            }
        }
        payloads.clear();
        if !out.is_empty() {
            uw.write_all(&out)
                .await
                .map_err(|source| GatewayError::Io { peer, source })?;
        }
        Ok(())
    }

    fn protocol_error(&self, peer: SocketAddr, source: FrameError) -> GatewayError {
        bump(&self.metrics.protocol_errors);
        GatewayError::Frame { peer, source }
    }

    async fn deny(
        &self,
        wtx: &mpsc::Sender<Bytes>,
        version: Version,
        peer: SocketAddr,
        who: &Principal,
        topic: &str,
        reason: u8,
    ) -> Result<(), GatewayError> {
        bump(&self.metrics.acl_denied);
        tracing::warn!(%peer, who = %who.label(), topic, "topic outside the client's ACL; disconnecting");
        if version == Version::V5 {
            let _ = wtx.send(frame::disconnect_v5(reason)).await;
            // Let the writer put the DISCONNECT on the wire before the connection drops.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }
}

enum Step {
    Forward(Bytes),
    Alert {
        index: usize,
        frame: Bytes,
        pkid: Option<u16>,
    },
}

async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut BytesMut,
    max: usize,
    peer: SocketAddr,
) -> Result<Option<Frame>, GatewayError> {
    loop {
        if let Some(f) =
            frame::split_frame(buf, max).map_err(|source| GatewayError::Frame { peer, source })?
        {
            return Ok(Some(f));
        }
        if r.read_buf(buf)
            .await
            .map_err(|source| GatewayError::Io { peer, source })?
            == 0
        {
            return Ok(None);
        }
    }
}

/// TLS for a gateway listener from PEM files; with `client_ca`, clients must present a
/// certificate it signed (in addition to their token).
pub fn tls_acceptor(
    cert_file: &std::path::Path,
    key_file: &std::path::Path,
    client_ca: Option<&std::path::Path>,
) -> Result<tokio_rustls::TlsAcceptor, GatewayError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| GatewayError::Tls(format!("{}: {e}", p.display())))
    };
    let bad = |p: &std::path::Path, e: String| GatewayError::Tls(format!("{}: {e}", p.display()));
    let pem = read(cert_file)?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(cert_file, e.to_string()))?;
    if chain.is_empty() {
        return Err(bad(cert_file, "no PEM certificate in it".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(&read(key_file)?)
        .map_err(|e| bad(key_file, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| GatewayError::Tls(e.to_string()))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(&read(ca)?) {
                roots
                    .add(c.map_err(|e| bad(ca, e.to_string()))?)
                    .map_err(|e| bad(ca, e.to_string()))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| bad(ca, e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder
        .with_single_cert(chain, key)
        .map_err(|e| bad(key_file, e.to_string()))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
