//! The gateway: the hub's public MQTT listeners, in front of the embedded rumqttd.
//!
//! rumqttd routes messages well, but it acknowledges a PUBLISH as soon as it is in its
//! in-memory log, has no per-topic ACLs, and its TLS is its own. The hub needs "an alert the
//! agent saw acknowledged is on the hub's disk" and "a site can publish only under its own
//! topics", and a box at a street corner may be in an attacker's hands. So every client
//! connects here; the gateway
//!
//! 1. admits the socket into a small pre-auth pool ([`admission`]): TLS handshake and CONNECT
//!    within [`CONNECT_TIMEOUT`], at most [`PREAUTH_MAX_BYTES`] read before authentication;
//! 2. decodes the CONNECT strictly ([`codec`]), checks the username and token
//!    ([`auth::Credentials`]) and the will topic against the ACL, answering a refusal itself;
//! 3. takes a place among the authenticated connections (`broker.max_connections`) and opens a
//!    connection to rumqttd on loopback, sending it a CONNECT **it encodes** from the checked
//!    fields, the client id in the principal's namespace;
//! 4. decodes every packet the client sends; a PUBLISH or SUBSCRIBE outside the principal's
//!    topics, or any malformed packet, closes the connection (counted, with an MQTT 5 reason);
//!    a PUBLISH on an alert topic is handed to [`Ingest`], and only once it is durable is the
//!    PUBLISH forwarded, so rumqttd's PUBACK reaches the agent after the hub's flush. An alert
//!    the hub refuses is answered by the gateway itself. Everything forwarded is re-encoded
//!    from the decoded fields with an allowlist of properties: the broker never sees a byte
//!    the gateway did not check;
//! 5. passes the broker's packets to the client as they are (the broker is trusted).
//!
//! Packets from rumqttd and the gateway's own PUBACKs share one writer task per client, so
//! they interleave only at packet boundaries.

pub mod admission;
pub mod auth;
pub mod codec;
pub mod frame;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use protocol::topics::TopicKind;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};

use crate::ingest::{Ingest, Outcome};
use crate::metrics::{HubMetrics, bump};
use admission::{Admission, Limits};
use auth::{Acl, AuthOutcome, Credentials, Principal};
use codec::{CodecError, Packet, Version};
use frame::{Frame, FrameError};

/// Most bytes of complete packets a session gathers from what a client already sent before
/// acting on them (one ingest batch for their alerts).
const GATHER_BYTES: usize = 1 << 20;
/// Room made in a session's buffer for each read while gathering.
const GATHER_READ: usize = 64 * 1024;
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("client {peer}: {source}")]
    Frame {
        peer: SocketAddr,
        source: FrameError,
    },
    #[error("client {peer}: {source}")]
    Codec {
        peer: SocketAddr,
        source: CodecError,
    },
    #[error("client {peer}: {source}")]
    Io {
        peer: SocketAddr,
        source: std::io::Error,
    },
    #[error("client {peer}: no CONNECT within {0:?}", CONNECT_TIMEOUT)]
    ConnectTimeout { peer: SocketAddr },
    #[error("client {peer}: ended before authenticating to make room for newer connections")]
    Evicted { peer: SocketAddr },
    #[error("client {peer}: cannot reach the embedded broker at {upstream}: {source}")]
    Upstream {
        peer: SocketAddr,
        upstream: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS setup: {0}")]
    Tls(#[from] infra::tls::TlsError),
    #[error(
        "client {peer}: closed: the hub's disk is nearly full and MQTT 3.1.1 cannot refuse an \
         alert (the agent keeps it and resends after reconnecting)"
    )]
    DiskLow { peer: SocketAddr },
}

/// From accept to a complete CONNECT, TLS handshake included.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Most bytes read from a client before it has authenticated: the CONNECT's limit.
pub const PREAUTH_MAX_BYTES: usize = 16 * 1024;
/// Failed logins logged per [`LOGIN_LOG_WINDOW`]; the rest are counted and summed up in the
/// next line logged, so a flood of bad logins cannot flood the journal.
const LOGIN_LOGS_PER_WINDOW: u64 = 10;
const LOGIN_LOG_WINDOW: Duration = Duration::from_secs(10);
/// Longest username quoted in a log line.
const LOGGED_USERNAME: usize = 64;

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
    admission: Admission,
    login_log: LoginLog,
}

/// Gateway limits from the config.
#[derive(Debug, Clone, Copy)]
pub struct GatewayLimits {
    pub max_packet: usize,
    /// Authenticated connections.
    pub max_connections: usize,
    /// The pre-auth pool.
    pub preauth: Limits,
}

impl Gateway {
    pub fn new(
        credentials: Credentials,
        acl: Acl,
        ingest: Ingest,
        metrics: Arc<HubMetrics>,
        upstream: (SocketAddr, SocketAddr),
        limits: GatewayLimits,
    ) -> Arc<Self> {
        Arc::new(Self {
            credentials,
            acl,
            ingest,
            metrics,
            upstream_v4: upstream.0,
            upstream_v5: upstream.1,
            max_packet: limits.max_packet,
            connections: Arc::new(Semaphore::new(limits.max_connections)),
            admission: Admission::new(limits.preauth),
            login_log: LoginLog::default(),
        })
    }

    /// Connections waiting to authenticate now.
    pub fn preauth_pending(&self) -> usize {
        self.admission.pending()
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
            // Accepting never waits for a free place: a place is found (or made) per socket.
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
                let ticket = this.admission.admit(peer.ip());
                let result = this.handle(stream, peer, tls, ticket).await;
                match &result {
                    Err(GatewayError::ConnectTimeout { .. }) => {
                        bump(&this.metrics.preauth_timeouts)
                    }
                    Err(GatewayError::Evicted { .. }) => bump(&this.metrics.preauth_evicted),
                    _ => {}
                }
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "connection ended");
                }
            });
        }
    }

    /// The pre-auth phase (TLS, CONNECT, credentials) under one deadline and the ticket's
    /// eviction, then the session.
    async fn handle(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        tls: Option<tokio_rustls::TlsAcceptor>,
        mut ticket: admission::Ticket,
    ) -> Result<(), GatewayError> {
        let deadline = tokio::time::sleep(CONNECT_TIMEOUT);
        tokio::pin!(deadline);
        match tls {
            None => {
                let pre = tokio::select! {
                    r = self.preauth(stream, peer) => r?,
                    _ = &mut deadline => return Err(GatewayError::ConnectTimeout { peer }),
                    _ = &mut ticket.evicted => return Err(GatewayError::Evicted { peer }),
                };
                let Some(pre) = pre else { return Ok(()) };
                drop(ticket);
                self.session(pre, peer).await
            }
            Some(acceptor) => {
                let pre = tokio::select! {
                    r = async {
                        let s = acceptor
                            .accept(stream)
                            .await
                            .map_err(|source| GatewayError::Io { peer, source })?;
                        self.preauth(s, peer).await
                    } => r?,
                    _ = &mut deadline => return Err(GatewayError::ConnectTimeout { peer }),
                    _ = &mut ticket.evicted => return Err(GatewayError::Evicted { peer }),
                };
                let Some(pre) = pre else { return Ok(()) };
                drop(ticket);
                self.session(pre, peer).await
            }
        }
    }

    /// Reads and checks the CONNECT. `None` when the client was refused (answered) or left.
    async fn preauth<S>(
        &self,
        stream: S,
        peer: SocketAddr,
    ) -> Result<Option<PreAuth<S>>, GatewayError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (mut cr, mut cw) = tokio::io::split(stream);
        let mut buf = BytesMut::with_capacity(4 * 1024);
        let Some(first) = read_frame(&mut cr, &mut buf, PREAUTH_MAX_BYTES, peer).await? else {
            return Ok(None);
        };
        let connect = match codec::decode_connect(&first) {
            Ok(c) => c,
            Err(source) => {
                bump(&self.metrics.protocol_errors);
                // Answer with a reason where the protocol has one for it; a malformed CONNECT
                // is just closed (MQTT-3.1.4-1).
                let reply = match (frame::connect_level(&first), &source) {
                    (Some(5), _) => Some(frame::connack_refused_v5(source.reason_code())),
                    (_, CodecError::ClientId { .. }) => Some(frame::connack_refused_v311(2)),
                    (_, CodecError::UnsupportedProtocol { .. }) => {
                        Some(frame::connack_refused_v311(1))
                    }
                    _ => None,
                };
                if let Some(reply) = reply {
                    let _ = cw.write_all(&reply).await;
                }
                return Err(GatewayError::Codec { peer, source });
            }
        };
        let version = connect.version;
        let principal = match self
            .credentials
            .check(connect.username.as_deref(), connect.password.as_deref())
        {
            AuthOutcome::Accepted(p) => p,
            AuthOutcome::BadCredentials => {
                bump(&self.metrics.connections_refused_auth);
                self.login_log
                    .refused(peer, connect.username.as_deref(), &self.metrics);
                let _ = cw.write_all(&frame::connack_refused(version, true)).await;
                return Ok(None);
            }
        };
        if let Some(will) = &connect.will
            && !self.acl.may_publish(&principal, &will.topic)
        {
            bump(&self.metrics.acl_denied);
            tracing::warn!(%peer, who = %principal.label(), will = %will.topic, "connection refused: will topic outside its ACL");
            let _ = cw.write_all(&frame::connack_refused(version, false)).await;
            return Ok(None);
        }
        Ok(Some(PreAuth {
            cr,
            cw,
            buf,
            connect,
            principal,
        }))
    }

    async fn session<S>(&self, pre: PreAuth<S>, peer: SocketAddr) -> Result<(), GatewayError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let PreAuth {
            mut cr,
            mut cw,
            buf,
            mut connect,
            principal,
        } = pre;
        let version = connect.version;
        let io_err = |source| GatewayError::Io { peer, source };
        let Ok(_permit) = self.connections.clone().try_acquire_owned() else {
            bump(&self.metrics.connections_over_capacity);
            tracing::warn!(%peer, who = %principal.label(), "connection refused: broker.max_connections reached");
            let _ = cw.write_all(&frame::connack_busy(version)).await;
            return Ok(());
        };
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
        // Each client in its principal's namespace (`site:s1:edge-s1`; client ids are
        // `[A-Za-z0-9_.-]`, so the ':' cannot be forged, and the hub's own link, which connects
        // to rumqttd directly, has none): a device cannot evict another's session.
        let client_id = std::mem::take(&mut connect.client_id);
        connect.client_id = format!("{}:{client_id}", principal.label());
        let mut out = BytesMut::new();
        codec::encode(&Packet::Connect(Box::new(connect)), version, &mut out);
        uw.write_all(&out).await.map_err(io_err)?;
        bump(&self.metrics.connections_accepted);
        tracing::info!(%peer, who = %principal.label(), client_id, ?version, "client connected");

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
        let mut closed = false;
        loop {
            if closed {
                return Ok(());
            }
            frames.clear();
            let mut gathered = 0usize;
            loop {
                while let Some(f) = frame::split_frame(&mut buf, self.max_packet)
                    .map_err(|source| self.frame_error(peer, source))?
                {
                    gathered += f.bytes.len();
                    frames.push(f);
                }
                if frames.is_empty() {
                    if cr.read_buf(&mut buf).await.map_err(io_err)? == 0 {
                        return Ok(());
                    }
                    continue;
                }
                // Whatever more the client has already sent is taken too, without waiting
                // (up to `GATHER_BYTES`): its alerts go in the same ingest batch, one store
                // and one flush. Large alerts (snapshots) otherwise came one per read, and
                // each paid a flush of its own.
                if gathered >= GATHER_BYTES {
                    break;
                }
                buf.reserve(GATHER_READ);
                match futures_util::FutureExt::now_or_never(cr.read_buf(&mut buf)) {
                    Some(Ok(0)) => {
                        // Closed after these: they are settled, then the loop ends.
                        closed = true;
                        break;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(io_err(e)),
                    None => break,
                }
            }
            // Decide on each packet; alerts are collected for one ingest batch.
            let mut alert_payloads: Vec<Bytes> = Vec::new();
            let mut alert_site: Option<String> = None;
            let mut plan: Vec<Step> = Vec::with_capacity(frames.len());
            for f in &frames {
                let packet = match codec::decode(f, version) {
                    Ok(p) => p,
                    Err(source) => return self.malformed(wtx, version, peer, who, source).await,
                };
                match &packet {
                    Packet::Publish(p) => {
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
                                    packet: encoded(&packet, version),
                                    pkid: p.pkid,
                                });
                                alert_payloads.push(p.payload.clone());
                                continue;
                            }
                            _ => {}
                        }
                    }
                    Packet::Subscribe(s) => {
                        if let Some((bad, _)) = s
                            .filters
                            .iter()
                            .find(|(t, _)| !self.acl.may_subscribe(who, t))
                        {
                            return self
                                .deny(wtx, version, peer, who, bad, frame::reason::NOT_AUTHORIZED)
                                .await;
                        }
                    }
                    Packet::Connect(_) => {
                        return self
                            .malformed(wtx, version, peer, who, CodecError::SecondConnect)
                            .await;
                    }
                    _ => {}
                }
                plan.push(Step::Forward(encoded(&packet, version)));
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

    /// Stores the planned alerts, then forwards the planned packets in order; an alert the hub
    /// refused is answered by the gateway instead of forwarded.
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
        // Set at the first alert a 3.1.1 client sent that was deferred: nothing after it is
        // forwarded, so the agent's resend after reconnecting keeps its order.
        let mut deferred_v311 = false;
        for step in plan.drain(..) {
            match step {
                Step::Forward(_) if deferred_v311 => {}
                Step::Forward(b) => out.extend_from_slice(&b),
                Step::Alert {
                    index,
                    packet,
                    pkid,
                } => match outcomes.get(index) {
                    Some(Outcome::Rejected(r)) => {
                        if let Some(pkid) = pkid {
                            // Quarantined (durably) by ingest: acknowledged so the agent
                            // stops resending; MQTT 5 says why (3.1.1 cannot).
                            let _ = wtx
                                .send(frame::puback(pkid, version, r.mqtt_reason()))
                                .await;
                        }
                    }
                    Some(Outcome::Deferred) => match (version, pkid) {
                        // Not stored: MQTT 5 says "quota exceeded", which agents take as
                        // "keep it, send it again later".
                        (Version::V5, Some(pkid)) => {
                            let _ = wtx
                                .send(frame::puback(pkid, version, frame::reason::QUOTA_EXCEEDED))
                                .await;
                        }
                        // MQTT 3.1.1 has no negative PUBACK and a missing one is only resent
                        // after a reconnect: the connection is closed (after what was planned
                        // before it), and the agent resends on its next.
                        _ => deferred_v311 = true,
                    },
                    _ if deferred_v311 => {}
                    _ => out.extend_from_slice(&packet),
                },
            }
        }
        payloads.clear();
        if !out.is_empty() {
            uw.write_all(&out)
                .await
                .map_err(|source| GatewayError::Io { peer, source })?;
        }
        if deferred_v311 {
            return Err(GatewayError::DiskLow { peer });
        }
        Ok(())
    }

    fn frame_error(&self, peer: SocketAddr, source: FrameError) -> GatewayError {
        bump(&self.metrics.protocol_errors);
        GatewayError::Frame { peer, source }
    }

    /// A malformed packet after CONNECT: counted, answered with its MQTT 5 reason, closed.
    async fn malformed(
        &self,
        wtx: &mpsc::Sender<Bytes>,
        version: Version,
        peer: SocketAddr,
        who: &Principal,
        source: CodecError,
    ) -> Result<(), GatewayError> {
        bump(&self.metrics.protocol_errors);
        tracing::warn!(%peer, who = %who.label(), error = %source, "malformed packet; disconnecting");
        if version == Version::V5 {
            let _ = wtx.send(frame::disconnect_v5(source.reason_code())).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(GatewayError::Codec { peer, source })
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

fn encoded(packet: &Packet, version: Version) -> Bytes {
    let mut out = BytesMut::new();
    codec::encode(packet, version, &mut out);
    out.freeze()
}

/// An authenticated client between its CONNECT and its session upstream.
struct PreAuth<S> {
    cr: tokio::io::ReadHalf<S>,
    cw: tokio::io::WriteHalf<S>,
    buf: BytesMut,
    connect: codec::Connect,
    principal: Principal,
}

enum Step {
    Forward(Bytes),
    Alert {
        index: usize,
        packet: Bytes,
        pkid: Option<u16>,
    },
}

/// Rate-limited logging of refused logins.
#[derive(Debug)]
struct LoginLog {
    window: std::sync::Mutex<(Instant, u64)>,
    suppressed: AtomicU64,
}

impl Default for LoginLog {
    fn default() -> Self {
        Self {
            window: std::sync::Mutex::new((Instant::now(), 0)),
            suppressed: AtomicU64::new(0),
        }
    }
}

impl LoginLog {
    fn refused(&self, peer: SocketAddr, username: Option<&str>, metrics: &HubMetrics) {
        let allowed = {
            let mut w = self.window.lock().unwrap_or_else(|e| e.into_inner());
            if w.0.elapsed() >= LOGIN_LOG_WINDOW {
                *w = (Instant::now(), 0);
            }
            w.1 += 1;
            w.1 <= LOGIN_LOGS_PER_WINDOW
        };
        if !allowed {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            bump(&metrics.login_logs_suppressed);
            return;
        }
        let suppressed = self.suppressed.swap(0, Ordering::Relaxed);
        // Quoted and cut: a username is whatever the client sent.
        let username = username.map(|u| {
            let cut: String = u.chars().take(LOGGED_USERNAME).collect();
            let more = u.chars().count() > LOGGED_USERNAME;
            format!("{}{}", cut.escape_debug(), if more { "…" } else { "" })
        });
        tracing::warn!(%peer, username = ?username, suppressed_since_last = suppressed, "connection refused: bad credentials");
    }
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

/// TLS for the gateway's TLS listeners from the PEM files of `[broker.tls]`; with
/// `client_ca`, clients must present a certificate it signed (in addition to their token).
pub fn tls_acceptor(
    cert_file: &std::path::Path,
    key_file: &std::path::Path,
    client_ca: Option<&std::path::Path>,
) -> Result<tokio_rustls::TlsAcceptor, GatewayError> {
    use infra::tls::PemFile;
    let config = infra::tls::server_config(
        PemFile::new("broker.tls.cert_file", cert_file),
        PemFile::new("broker.tls.key_file", key_file),
        client_ca.map(|ca| PemFile::new("broker.tls.client_ca_file", ca)),
    )?;
    Ok(tokio_rustls::TlsAcceptor::from(config))
}
