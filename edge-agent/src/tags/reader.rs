//! Tag-reader adapters: the network edge where reads come in.
//!
//! - [`TcpReader`] listens; each reader connects and sends JSON lines ([`super::read`]). A line
//!   longer than [`MAX_LINE_BYTES`] is counted as oversized and skipped up to its newline; the
//!   connection is kept, because a reader that garbles one line usually sends good ones next.
//! - [`UdpReader`] takes one read per datagram.
//!
//! Both push [`TagRead`]s into a bounded `tokio::sync::mpsc` channel. Policy when it is full:
//! **backpressure**. TCP awaits the send, so a slow pipeline slows the readers down through TCP
//! flow control and nothing is lost. UDP cannot push back: a read that does not fit is dropped
//! and counted in [`ReaderCounters::dropped`].
//!
//! Malformed and oversized records are counted (per adapter in [`ReaderCounters`], and per
//! connection or peer in the `warn!` events) and never end a connection. Shutdown: the
//! `watch<bool>` turning `true` (or its sender going away) is checked first in every `select!`.
//!
//! The MQTT adapter lives in [`super::mqtt`]; it parses each publish's payload with the same
//! [`super::read::parse_read`] and shares these counters and the backpressure policy.
//!
//! Not done yet: a cap on concurrent TCP connections (one reader per box is the norm).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs, UdpSocket};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use super::read::{MAX_LINE_BYTES, ReadError, TagRead, parse_read};
use crate::track::Timestamp;

/// The agent's receive clock: ms since the epoch. A seam so tests can pin receive times.
pub type Clock = fn() -> Timestamp;

/// Wall-clock time, ms since the Unix epoch.
pub fn system_clock() -> Timestamp {
    protocol::UtcMillis::now().0
}

/// What an adapter has seen since it started. Shared (`Arc`) so status reporting can read it
/// while the adapter runs.
#[derive(Debug, Default)]
pub struct ReaderCounters {
    /// Well-formed reads (forwarded or, for UDP, dropped).
    pub received: AtomicU64,
    /// Records that did not parse or validate.
    pub malformed: AtomicU64,
    /// Records longer than [`MAX_LINE_BYTES`].
    pub oversized: AtomicU64,
    /// Well-formed reads lost because the channel was full (UDP only).
    pub dropped: AtomicU64,
}

/// A copy of [`ReaderCounters`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CounterSnapshot {
    /// See [`ReaderCounters::received`].
    pub received: u64,
    /// See [`ReaderCounters::malformed`].
    pub malformed: u64,
    /// See [`ReaderCounters::oversized`].
    pub oversized: u64,
    /// See [`ReaderCounters::dropped`].
    pub dropped: u64,
}

impl ReaderCounters {
    /// Reads every counter.
    pub fn snapshot(&self) -> CounterSnapshot {
        CounterSnapshot {
            received: self.received.load(Ordering::Relaxed),
            malformed: self.malformed.load(Ordering::Relaxed),
            oversized: self.oversized.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }

    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Completes when shutdown is requested or the sender is gone.
async fn shutdown_requested(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|&stop| stop).await;
}

/// Listens for reader connections that send JSON lines.
#[derive(Debug)]
pub struct TcpReader {
    listener: TcpListener,
    counters: Arc<ReaderCounters>,
    clock: Clock,
}

impl TcpReader {
    /// Binds the listening socket.
    pub async fn bind(addr: impl ToSocketAddrs) -> io::Result<Self> {
        Ok(Self {
            listener: TcpListener::bind(addr).await?,
            counters: Arc::default(),
            clock: system_clock,
        })
    }

    /// Replaces the receive clock.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The bound address (useful after binding port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The adapter's counters.
    pub fn counters(&self) -> Arc<ReaderCounters> {
        Arc::clone(&self.counters)
    }

    /// Accepts connections and forwards their reads until shutdown, then waits for every
    /// connection task to finish. Returns early if the receiver of `tx` is gone.
    pub async fn run(self, tx: mpsc::Sender<TagRead>, mut shutdown: watch::Receiver<bool>) {
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                biased;
                () = shutdown_requested(&mut shutdown) => break,
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        info!(message = "Tag reader connected.", %peer);
                        let conn = Connection {
                            peer,
                            counters: Arc::clone(&self.counters),
                            clock: self.clock,
                            tx: tx.clone(),
                            shutdown: shutdown.clone(),
                            malformed: 0,
                            oversized: 0,
                        };
                        connections.spawn(conn.run(stream));
                    }
                    Err(error) => {
                        // Usually EMFILE: back off instead of spinning.
                        warn!(message = "Accept failed.", %error);
                        tokio::select! {
                            biased;
                            () = shutdown_requested(&mut shutdown) => break,
                            () = tokio::time::sleep(Duration::from_millis(100)) => {}
                        }
                    }
                },
            }
            if tx.is_closed() {
                break;
            }
        }
        while connections.join_next().await.is_some() {}
    }
}

/// One reader's TCP connection.
#[derive(Debug)]
struct Connection {
    peer: SocketAddr,
    counters: Arc<ReaderCounters>,
    clock: Clock,
    tx: mpsc::Sender<TagRead>,
    shutdown: watch::Receiver<bool>,
    malformed: u64,
    oversized: u64,
}

/// What to do after one record.
enum Flow {
    Continue,
    Stop,
}

impl Connection {
    async fn run(mut self, mut stream: TcpStream) {
        let mut chunk = vec![0u8; 8 * 1024];
        let mut line: Vec<u8> = Vec::with_capacity(MAX_LINE_BYTES);
        // Inside an over-long line: skip bytes up to its newline.
        let mut skipping = false;
        let mut line_no: u64 = 0;
        loop {
            let n = tokio::select! {
                biased;
                () = shutdown_requested(&mut self.shutdown) => return,
                read = stream.read(&mut chunk) => match read {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(error) => {
                        warn!(message = "Tag reader connection failed.", peer = %self.peer, %error);
                        return;
                    }
                },
            };
            let mut rest = &chunk[..n];
            while !rest.is_empty() {
                let (segment, complete) = match rest.iter().position(|&b| b == b'\n') {
                    Some(i) => (&rest[..i], true),
                    None => (rest, false),
                };
                rest = if complete {
                    &rest[segment.len() + 1..]
                } else {
                    &[]
                };
                if !skipping {
                    if line.len() + segment.len() > MAX_LINE_BYTES + usize::from(complete) {
                        // Over the limit (a trailing '\r' may still be stripped when complete).
                        let len = line.len() + segment.len();
                        line.clear();
                        skipping = !complete;
                        line_no += 1;
                        self.oversized(line_no, len);
                        continue;
                    }
                    line.extend_from_slice(segment);
                }
                if complete {
                    if skipping {
                        skipping = false;
                        continue;
                    }
                    line_no += 1;
                    let record = std::mem::take(&mut line);
                    if let Flow::Stop = self.record(&record, line_no).await {
                        return;
                    }
                    line = record;
                    line.clear();
                }
            }
        }
        // End of stream: a last line without a newline still counts.
        if !skipping && !line.is_empty() {
            line_no += 1;
            let _ = self.record(&line, line_no).await;
        }
        info!(
            message = "Tag reader disconnected.",
            peer = %self.peer,
            lines = line_no,
            malformed = self.malformed,
            oversized = self.oversized,
        );
    }

    fn oversized(&mut self, line: u64, len: usize) {
        self.oversized += 1;
        ReaderCounters::bump(&self.counters.oversized);
        warn!(
            message = "Over-long tag line skipped.",
            peer = %self.peer,
            line,
            len,
            max = MAX_LINE_BYTES,
            oversized = self.oversized,
        );
    }

    async fn record(&mut self, raw: &[u8], line: u64) -> Flow {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.iter().all(u8::is_ascii_whitespace) {
            return Flow::Continue;
        }
        match parse_read(raw, line, (self.clock)()) {
            Ok(read) => {
                ReaderCounters::bump(&self.counters.received);
                // Backpressure: wait for room, but never past shutdown.
                tokio::select! {
                    biased;
                    () = shutdown_requested(&mut self.shutdown) => Flow::Stop,
                    sent = self.tx.send(read) => match sent {
                        Ok(()) => Flow::Continue,
                        Err(_) => Flow::Stop,
                    },
                }
            }
            Err(ReadError::Oversized { len, .. }) => {
                self.oversized(line, len);
                Flow::Continue
            }
            Err(error) => {
                self.malformed += 1;
                ReaderCounters::bump(&self.counters.malformed);
                warn!(
                    message = "Malformed tag line skipped.",
                    peer = %self.peer,
                    line,
                    malformed = self.malformed,
                    %error,
                );
                Flow::Continue
            }
        }
    }
}

/// Per-peer bookkeeping of the UDP adapter.
#[derive(Debug, Default)]
struct Peer {
    datagrams: u64,
    malformed: u64,
}

/// Peers remembered for per-peer counts; beyond this the table is reset (counts restart).
const MAX_UDP_PEERS: usize = 1024;

/// Receives one JSON read per datagram.
#[derive(Debug)]
pub struct UdpReader {
    socket: UdpSocket,
    counters: Arc<ReaderCounters>,
    clock: Clock,
}

impl UdpReader {
    /// Binds the socket.
    pub async fn bind(addr: impl ToSocketAddrs) -> io::Result<Self> {
        Ok(Self {
            socket: UdpSocket::bind(addr).await?,
            counters: Arc::default(),
            clock: system_clock,
        })
    }

    /// Replaces the receive clock.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// The adapter's counters.
    pub fn counters(&self) -> Arc<ReaderCounters> {
        Arc::clone(&self.counters)
    }

    /// Receives and forwards reads until shutdown or until the receiver of `tx` is gone.
    pub async fn run(self, tx: mpsc::Sender<TagRead>, mut shutdown: watch::Receiver<bool>) {
        // One byte more than the limit tells an over-long datagram from one exactly at it.
        let mut buf = vec![0u8; MAX_LINE_BYTES + 2];
        let mut peers: HashMap<SocketAddr, Peer> = HashMap::new();
        loop {
            let (n, addr) = tokio::select! {
                biased;
                () = shutdown_requested(&mut shutdown) => return,
                got = self.socket.recv_from(&mut buf) => match got {
                    Ok(got) => got,
                    Err(error) => {
                        // E.g. ICMP port unreachable surfacing on Linux; not fatal.
                        debug!(message = "UDP receive failed.", %error);
                        continue;
                    }
                },
            };
            if peers.len() >= MAX_UDP_PEERS && !peers.contains_key(&addr) {
                peers.clear();
            }
            let peer = peers.entry(addr).or_default();
            peer.datagrams += 1;
            let datagram = buf[..n].trim_ascii_end();
            // Datagrams are truncated to the buffer, so a full buffer means "at least this".
            let result = if n == buf.len() {
                Err(ReadError::Oversized {
                    line: peer.datagrams,
                    len: n,
                    max: MAX_LINE_BYTES,
                })
            } else {
                parse_read(datagram, peer.datagrams, (self.clock)())
            };
            match result {
                Ok(read) => {
                    ReaderCounters::bump(&self.counters.received);
                    match tx.try_send(read) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(read)) => {
                            ReaderCounters::bump(&self.counters.dropped);
                            let dropped = self.counters.dropped.load(Ordering::Relaxed);
                            // Log the first drop and then every 1000th, not every one.
                            if dropped % 1000 == 1 {
                                warn!(
                                    message = "Tag read dropped: channel full.",
                                    peer = %addr,
                                    tag = %read.tag,
                                    dropped,
                                );
                            }
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => return,
                    }
                }
                Err(ReadError::Oversized { line, len, .. }) => {
                    ReaderCounters::bump(&self.counters.oversized);
                    warn!(
                        message = "Over-long tag datagram skipped.",
                        peer = %addr,
                        datagram = line,
                        len,
                        max = MAX_LINE_BYTES,
                    );
                }
                Err(error) => {
                    peer.malformed += 1;
                    ReaderCounters::bump(&self.counters.malformed);
                    warn!(
                        message = "Malformed tag datagram skipped.",
                        peer = %addr,
                        malformed = peer.malformed,
                        %error,
                    );
                }
            }
        }
    }
}
