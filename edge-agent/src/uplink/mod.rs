//! The uplink: alerts from the outbox to the hub's broker, status, sightings, hub commands.
//! Owned by [`Uplink`], one task.
//!
//! # Delivery (at-least-once, the outbox is the truth)
//!
//! Every alert the agent raises is appended to the [`Outbox`] (flushed to disk) before anything
//! is published. The uplink publishes alerts read back from the outbox, QoS 1, oldest first, and
//! deletes one only when the broker's PUBACK for its packet has arrived.
//!
//! rumqttc's `publish()` returning `Ok` only means *queued*, and it forgets unacknowledged
//! publishes when the broker has no session for it. So each connection is a fresh client with
//! a clean session (nothing replayed by rumqttc), and the uplink keeps its own map of what each
//! packet carries: publishes are handed to the client in order and rumqttc reports
//! `Outgoing::Publish(pkid)` in the same order, so the n-th report is the n-th publish
//! ([`conn`]). After every reconnect the uplink starts again from the oldest unacknowledged
//! alert. A connection lost with publishes in flight therefore resends them: duplicates are
//! possible (the hub's insert is idempotent by alert id), losses are not.
//!
//! At most `inflight` publishes are unacknowledged at once. Reconnects wait a jittered
//! exponential back-off (rumqttc alone would retry in a hot loop).
//!
//! # Refusals
//!
//! An MQTT 5 PUBACK with a failure reason is one of two kinds:
//!
//! - For good ([`QUARANTINE_REASONS`]: 0x99 payload format invalid, 0x87 not authorised): the
//!   hub answers these for an alert it can never accept (not valid for its schema, a source the
//!   site may not claim) after keeping it in its own quarantine. Sending it again cannot help,
//!   so the alert moves to the outbox's quarantine ([`Outbox::quarantine`]): kept, counted
//!   (status `outbox.quarantined`, `/metrics`), logged at ERROR with seq, id and reason, never
//!   sent again until an installer requeues it (`edge-agent check --requeue-quarantined`).
//!   0x90 topic name invalid is not one of them: the alert topic is the same for every alert,
//!   so it means the agent's prefix or site (or the broker's config) is wrong, not this alert;
//!   quarantining would empty the whole queue into the quarantine for a config fix.
//! - Anything else (0x80 unspecified, 0x83 implementation specific, 0x97 quota exceeded, ...)
//!   is taken as passing: the alert stays in the outbox and is sent again after
//!   [`REJECT_RETRY`] (or the next reconnect), counted in `rejected`.
//!
//! A broker ACL that denies the alert topic answers 0x87 for every alert: they all end up in
//! the quarantine, none is lost, and a requeue after fixing the ACL sends them.
//!
//! # Status
//!
//! `{prefix}/site/{site}/status`, retained, QoS 1: `online` with [`protocol::Health`] on every
//! connect and every `heartbeat_s`; the last will (set at connect) is `offline` without health,
//! and a clean shutdown publishes `offline` itself before disconnecting.
//!
//! # Sightings
//!
//! Batches of tag sightings go to `{prefix}/site/{site}/sighting`, QoS 1, after the alerts that
//! are waiting. They feed e-bike trajectories, not alerts, so they are held in memory only:
//! `sighting_queue` batches while the broker is unreachable, then the **oldest is dropped and
//! counted**. A batch in flight when the connection drops is queued again.
//!
//! # Commands
//!
//! With `[uplink.commands]`, the uplink subscribes to `{prefix}/site/{site}/cmd`, checks each
//! command with the [`CommandGate`] (signature, site, sequence, age), hands a good one to the
//! agent core ([`ApplyCommand`]), persists it in the [`CommandStore`] once applied, and replies
//! on `.../cmd/reply`. Refusals are logged and replied too.
//!
//! # Queues
//!
//! - Input (alerts and sightings from the agent core): bounded channel, the core waits. The
//!   uplink appends even while disconnected, so the wait is one disk flush.
//! - Outbox: on disk, bounded by bytes and age, full-policy in [`crate::outbox`].
//! - Held alerts ([`Held`]): alerts whose append failed for the disk (full), in memory, bounded
//!   by `held_max_bytes` / `held_max_alerts` with the outbox's full-policy. While any is held a
//!   new alert goes behind them; on each new alert and every second (`RETRY_EVERY`) they are appended
//!   again, oldest first, stopping at the first failure, after reopening the outbox (sled's
//!   I/O error is sticky) when due: back-off 1 s doubling to 30 s, or at once when the
//!   filesystem has gained 1 MiB. Status `outbox.held`, `held_bytes`, `held_dropped`,
//!   `append_failures`; other outbox storage failures (an ack, an expiry) are logged and leave
//!   the alert stored, to be sent again, never stopping the uplink.
//! - Sightings: in memory, drop-oldest, counted in `sightings_dropped`.
//!
//! # Shutdown
//!
//! When the input channel closes (the agent stopped its intake), the uplink keeps delivering
//! until the outbox is empty or the drain limit passes, publishes `offline`, disconnects and
//! returns. What is left stays on disk for the next start.

mod config;
mod conn;
mod health;

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use protocol::Topics;
use protocol::alert::IdGenerator;
use protocol::command::{Command, CommandReply, ReplyOutcome};
use protocol::sighting::{SightingBatch, TagSighting};
use protocol::status::{AgentState, Status};
use protocol::time::UtcMillis;
use tokio::sync::mpsc;
use tokio::time::{Instant, interval, sleep_until};
use tracing::{debug, error, info, warn};

use crate::backoff::Backoff;
use crate::command::{CommandGate, CommandStore};
use crate::outbox::{Held, HeldStats, Outbox, OutboxError, OutboxStats};
use crate::pipeline::{Applied, ApplyCommand, Output};
use crate::tags::dedup::Sighting;
use crate::tags::read::TagKind;
pub use config::{CommandsConfig, MqttVersion, TlsConfig, UplinkConfig};
pub use conn::tls_config;
use conn::{Connection, Ev, Refusal, Will};
pub use health::{HealthReporter, disk_free};

/// A rejected alert (MQTT 5 PUBACK failure reason) is offered again after this long.
pub const REJECT_RETRY: Duration = Duration::from_secs(30);
/// MQTT 5 PUBACK reason codes that quarantine the alert, with their metric label (the index
/// is the one of [`UplinkStats::quarantined`]). See the module doc for why these.
pub const QUARANTINE_REASONS: [(u8, &str); 2] =
    [(0x99, "payload_format_invalid"), (0x87, "not_authorized")];
/// How often expired alerts are dropped from the outbox.
const EXPIRE_EVERY: Duration = Duration::from_secs(60);
/// How long a clean shutdown waits for the broker to take the `offline` status.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(2);
/// How often alerts held in memory (their append failed) are offered to the outbox again.
const RETRY_EVERY: Duration = Duration::from_secs(1);
/// Longest wait between two reopens of an outbox that keeps failing: a reopen re-reads the
/// whole index, too much to repeat every second for a disk that stays full.
const REOPEN_MAX_DELAY: Duration = Duration::from_secs(30);
/// Free space the outbox's filesystem must gain since the last failure for a reopen to be
/// tried at once, whatever the back-off: space has come back.
const SPACE_RETURNED: u64 = 1 << 20;

/// Everything that can go wrong in the uplink.
#[derive(Debug, thiserror::Error)]
pub enum UplinkError {
    /// `[uplink]` is unusable; every problem.
    #[error("uplink config: {}", .0.join("; "))]
    Config(Vec<String>),
    /// A TLS file could not be used (the error names the config field and the file).
    #[error("uplink {0}")]
    Tls(#[from] infra::tls::TlsError),
    /// The connection to the broker failed or was lost.
    #[error("uplink connection: {detail}")]
    Connection {
        /// rumqttc's description.
        detail: String,
    },
    /// The outbox failed.
    #[error(transparent)]
    Outbox(#[from] OutboxError),
}

/// Counters of the uplink, readable while it runs (status heartbeat, `/metrics`).
#[derive(Debug, Default)]
pub struct UplinkStats {
    /// Connected to the broker now.
    pub connected: AtomicBool,
    /// Connections after the first.
    pub reconnects: AtomicU64,
    /// Failed connection attempts and lost connections.
    pub connection_failures: AtomicU64,
    /// Alerts stored in the outbox.
    pub appended: AtomicU64,
    /// Alerts never stored: the outbox's full-policy dropped them, they could not be encoded,
    /// or the in-memory hold dropped them (its cap; see `held`).
    pub append_failed: AtomicU64,
    /// Appends that failed for the disk (full, I/O error), retries included; the alert is held
    /// in memory and appended again.
    pub append_errors: AtomicU64,
    /// The alerts held in memory because their append failed.
    pub held: Mutex<HeldStats>,
    /// Alert publishes sent (resends included).
    pub published: AtomicU64,
    /// Alerts acknowledged by the broker (and deleted from the outbox).
    pub acked: AtomicU64,
    /// Alerts the broker refused with a passing MQTT 5 reason code (kept, offered again).
    pub rejected: AtomicU64,
    /// Alerts moved to the outbox's quarantine, per reason of [`QUARANTINE_REASONS`].
    pub quarantined: [AtomicU64; QUARANTINE_REASONS.len()],
    /// Sighting batches acknowledged.
    pub sightings_sent: AtomicU64,
    /// Sighting batches dropped (queue full, or too large to send).
    pub sightings_dropped: AtomicU64,
    /// Status messages published.
    pub status_published: AtomicU64,
    /// Commands applied.
    pub commands_applied: AtomicU64,
    /// Commands refused (any reason).
    pub commands_refused: AtomicU64,
    /// The outbox's last known state.
    pub outbox: Mutex<OutboxStats>,
    /// The outbox's byte cap.
    pub outbox_max_bytes: AtomicU64,
}

impl UplinkStats {
    /// A copy of the outbox's last known state.
    pub fn outbox(&self) -> OutboxStats {
        self.outbox
            .lock()
            .map(|s| s.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    fn set_outbox(&self, s: OutboxStats) {
        match self.outbox.lock() {
            Ok(mut g) => *g = s,
            Err(p) => *p.into_inner() = s,
        }
    }

    /// A copy of the held alerts' last known state.
    pub fn held(&self) -> HeldStats {
        self.held
            .lock()
            .map(|s| s.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    fn set_held(&self, s: HeldStats) {
        match self.held.lock() {
            Ok(mut g) => *g = s,
            Err(p) => *p.into_inner() = s,
        }
    }
}

/// Hub commands: the gate, the store, and the way into the agent core.
#[derive(Debug)]
pub struct Commands {
    /// Signature, site, sequence and age checks.
    pub gate: CommandGate,
    /// Persisted changes.
    pub store: CommandStore,
    /// To the core.
    pub apply: mpsc::Sender<ApplyCommand>,
}

/// What a publish carries, to know what its PUBACK means.
#[derive(Debug)]
enum Pending {
    Alert(u64),
    /// The encoded batch, kept to queue it again if the connection drops.
    Sighting(Vec<u8>),
    /// Status, command replies: not resent (a fresh status follows every connect).
    Other,
}

/// One connection's delivery state.
#[derive(Debug, Default)]
struct Session {
    connected: bool,
    /// Publishes handed to the client whose packet id rumqttc has not reported yet, in order.
    queued: VecDeque<Pending>,
    /// Packet id → what it carries.
    inflight: HashMap<u16, Pending>,
    /// Outbox seqs queued or in flight (a rewind must not send them twice at once).
    alert_seqs: HashSet<u64>,
    /// Highest outbox seq handed to this connection.
    cursor: Option<u64>,
    /// When a rejected alert should be offered again.
    rewind_at: Option<Instant>,
    /// The `offline` goodbye was queued.
    goodbye: bool,
}

impl Session {
    fn window(&self) -> usize {
        self.queued.len() + self.inflight.len()
    }
}

/// How a connection ended.
#[derive(Debug)]
enum End {
    /// Delivered all there was after the input closed, or the drain limit passed.
    Finished,
    /// Lost or refused: back off, reconnect.
    Lost(String),
}

/// The uplink's owner. See the module doc.
#[derive(Debug)]
pub struct Uplink {
    config: UplinkConfig,
    site: String,
    client_id: String,
    topics: Topics,
    outbox: Outbox,
    /// Alerts whose append failed, oldest first, waiting for the disk (module doc, Queues).
    held: Held,
    /// A broken outbox is reopened no sooner than this (back-off), unless space came back.
    reopen_at: Instant,
    /// The next back-off step.
    reopen_delay: Duration,
    /// Free bytes on the outbox's filesystem at the last storage failure.
    free_at_failure: Option<u64>,
    /// The outbox was reopened: the session sends everything in it again from the oldest.
    reopened: bool,
    tls: Option<Arc<rustls::ClientConfig>>,
    stats: Arc<UplinkStats>,
    health: HealthReporter,
    commands: Option<Commands>,
    command_results: Option<(mpsc::Sender<Applied>, mpsc::Receiver<Applied>)>,
    sighting_ids: IdGenerator,
    sighting_count: u64,
    /// Encoded sighting batches waiting to be sent, oldest first.
    sightings: VecDeque<Vec<u8>>,
    /// After the input closes: keep delivering at most this long (`None`: until empty).
    drain_limit: Option<Duration>,
}

impl Uplink {
    /// An uplink for `site` delivering `outbox`. Checks the config and loads TLS files, so a
    /// bad certificate is reported before anything runs.
    pub fn new(
        config: UplinkConfig,
        site: &str,
        outbox: Outbox,
        outbox_max_bytes: u64,
        health: HealthReporter,
        commands: Option<Commands>,
    ) -> Result<Self, UplinkError> {
        let errors = config.validate();
        if !errors.is_empty() {
            return Err(UplinkError::Config(errors));
        }
        let topics = Topics::new(&config.prefix)
            .map_err(|e| UplinkError::Config(vec![format!("prefix: {e}")]))?;
        let tls = config.tls.as_ref().map(tls_config).transpose()?;
        let stats = Arc::new(UplinkStats::default());
        stats
            .outbox_max_bytes
            .store(outbox_max_bytes, Ordering::Relaxed);
        stats.set_outbox(outbox.stats());
        let held = Held::new(outbox.config());
        let drain_limit = Some(Duration::from_millis(config.shutdown_drain_ms));
        let command_results = commands.as_ref().map(|_| mpsc::channel(16));
        Ok(Self {
            client_id: config.client_id(site),
            site: site.to_string(),
            topics,
            outbox,
            held,
            reopen_at: Instant::now(),
            reopen_delay: RETRY_EVERY,
            free_at_failure: None,
            reopened: false,
            tls,
            stats,
            health,
            commands,
            command_results,
            sighting_ids: IdGenerator::with_salt(random_salt()),
            sighting_count: 0,
            sightings: VecDeque::new(),
            drain_limit,
            config,
        })
    }

    /// After the input closes, deliver until the outbox is empty however long it takes
    /// (`emit`), instead of for `shutdown_drain_ms`.
    pub fn drain_until_empty(&mut self) {
        self.drain_limit = None;
    }

    /// The counters.
    pub fn stats(&self) -> Arc<UplinkStats> {
        self.stats.clone()
    }

    /// Runs until `input` closes and the outbox is delivered (or the drain limit passes).
    /// Returns the outbox's final state.
    pub async fn run(
        mut self,
        mut input: mpsc::Receiver<Output>,
    ) -> Result<OutboxStats, UplinkError> {
        let mut backoff = Backoff::new(
            &self.client_id,
            self.config.reconnect_min_ms,
            self.config.reconnect_max_ms,
        );
        let mut intake = true;
        let mut deadline: Option<Instant> = None;
        let mut ever_connected = false;
        info!(
            message = "Uplink starting.",
            broker = %format!("{}:{}", self.config.host, self.config.port),
            client_id = %self.client_id,
            tls = self.tls.is_some(),
            mqtt = ?self.config.mqtt_version,
            pending = self.outbox.len(),
        );
        loop {
            let mut conn =
                Connection::new(&self.config, &self.client_id, self.will(), self.tls.clone());
            let mut s = Session::default();
            let end = self
                .serve(
                    &mut conn,
                    &mut s,
                    &mut input,
                    &mut intake,
                    &mut deadline,
                    &mut ever_connected,
                )
                .await;
            self.stats.connected.store(false, Ordering::Relaxed);
            // Sightings that were not acknowledged go back to the front, in their order.
            let mut unacked: Vec<_> = s
                .queued
                .into_iter()
                .chain(s.inflight.into_values())
                .collect();
            unacked.reverse();
            for p in unacked {
                if let Pending::Sighting(b) = p {
                    self.sightings.push_front(b);
                }
            }
            self.trim_sightings();
            match end? {
                End::Finished => break,
                End::Lost(reason) => {
                    self.stats
                        .connection_failures
                        .fetch_add(1, Ordering::Relaxed);
                    if s.connected {
                        backoff.reset();
                    }
                    let delay = backoff.next_delay();
                    warn!(
                        message = "Uplink disconnected; retrying.",
                        reason = %reason,
                        retry_in_ms = delay.as_millis() as u64,
                        failures = backoff.failures(),
                        pending = self.outbox.len(),
                    );
                    if self
                        .idle(delay, &mut input, &mut intake, &mut deadline)
                        .await?
                    {
                        break;
                    }
                }
            }
        }
        if let Err(e) = self.outbox.flush() {
            error!(message = "Outbox flush at shutdown failed; acknowledged alerts may be sent again.", error = %e);
        }
        if !self.held.is_empty() {
            // In memory only: nothing can keep them once the process ends.
            error!(
                message = "Uplink stopping with alerts held in memory (outbox append failing); they are lost.",
                held = self.held.len(),
                held_bytes = self.held.bytes(),
            );
        }
        let stats = self.outbox.stats();
        self.stats.set_outbox(stats.clone());
        self.stats.set_held(self.held.stats());
        info!(
            message = "Uplink stopped.",
            left_in_outbox = stats.depth,
            acked = self.stats.acked.load(Ordering::Relaxed),
        );
        Ok(stats)
    }

    /// One connection, from connect to loss (or to the end).
    async fn serve(
        &mut self,
        conn: &mut Connection,
        s: &mut Session,
        input: &mut mpsc::Receiver<Output>,
        intake: &mut bool,
        deadline: &mut Option<Instant>,
        ever_connected: &mut bool,
    ) -> Result<End, UplinkError> {
        let mut heartbeat = interval(Duration::from_secs(self.config.heartbeat_s));
        heartbeat.tick().await;
        let mut expire = interval(EXPIRE_EVERY);
        let mut retry = interval(RETRY_EVERY);
        let mut goodbye_at: Option<Instant> = None;
        loop {
            if std::mem::take(&mut self.reopened) {
                // What the reopened store holds may include alerts this session sent while
                // their deletion failed, or never sent: start again from the oldest.
                s.cursor = None;
            }
            self.fill(conn, s)?;
            self.stats.set_outbox(self.outbox.stats());
            self.stats.set_held(self.held.stats());
            if s.connected && !s.goodbye && self.done(*intake, s, *deadline) {
                // Delivered everything (or out of time): say goodbye, then disconnect.
                s.goodbye = true;
                self.publish_status(conn, s, false);
                goodbye_at = Some(Instant::now() + GOODBYE_TIMEOUT);
            }
            if s.goodbye && (s.window() == 0 || goodbye_at.is_some_and(|g| Instant::now() >= g)) {
                conn.try_disconnect();
                // Let the DISCONNECT go out; the loop ends when the client reports it.
                let _ = tokio::time::timeout(Duration::from_millis(500), async {
                    while conn.poll().await.is_ok() {}
                })
                .await;
                return Ok(End::Finished);
            }
            let far = Instant::now() + Duration::from_secs(86_400);
            let until = goodbye_at.or(*deadline).unwrap_or(far);
            let rewind = s.rewind_at.unwrap_or(far);
            tokio::select! {
                ev = conn.poll() => match ev {
                    Ok(ev) => {
                        if let Some(end) = self.on_event(ev, conn, s, ever_connected)? {
                            return Ok(end);
                        }
                    }
                    Err(e) => return Ok(End::Lost(e.to_string())),
                },
                o = input.recv(), if *intake => self.on_input(o, intake, deadline),
                r = recv_results(&mut self.command_results) => {
                    if let Some((command, result)) = r {
                        self.on_applied(conn, s, command, result);
                    }
                }
                _ = heartbeat.tick(), if s.connected && !s.goodbye => self.publish_status(conn, s, true),
                _ = expire.tick() => self.expire(),
                _ = retry.tick(), if self.must_retry() => self.retry_held(),
                _ = sleep_until(rewind), if s.rewind_at.is_some() => {
                    s.rewind_at = None;
                    s.cursor = None;
                }
                _ = sleep_until(until), if goodbye_at.is_some() || deadline.is_some() => {
                    if !s.connected {
                        return Ok(End::Finished);
                    }
                    // Connected: the top of the loop says goodbye (or gives up waiting for it).
                    if goodbye_at.is_none() {
                        *deadline = Some(Instant::now());
                    }
                }
            }
        }
    }

    /// Waits `delay` before reconnecting, still storing alerts. `true` when the uplink should
    /// stop (the drain limit passed while disconnected).
    async fn idle(
        &mut self,
        delay: Duration,
        input: &mut mpsc::Receiver<Output>,
        intake: &mut bool,
        deadline: &mut Option<Instant>,
    ) -> Result<bool, UplinkError> {
        let wake = Instant::now() + delay;
        let mut retry = interval(RETRY_EVERY);
        loop {
            let far = Instant::now() + Duration::from_secs(86_400);
            tokio::select! {
                _ = sleep_until(wake) => return Ok(false),
                o = input.recv(), if *intake => self.on_input(o, intake, deadline),
                _ = retry.tick(), if self.must_retry() => self.retry_held(),
                _ = sleep_until(deadline.unwrap_or(far)), if deadline.is_some() => {
                    warn!(
                        message = "Drain limit passed while disconnected; alerts stay in the outbox.",
                        left = self.outbox.len(),
                    );
                    return Ok(true);
                }
            }
            self.stats.set_outbox(self.outbox.stats());
            self.stats.set_held(self.held.stats());
        }
    }

    /// Whether everything has been delivered after the input closed, or the time is up.
    fn done(&self, intake: bool, s: &Session, deadline: Option<Instant>) -> bool {
        if intake {
            return false;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            warn!(
                message = "Drain limit passed; alerts stay in the outbox for the next start.",
                left = self.outbox.len(),
            );
            return true;
        }
        let stats = self.outbox.stats();
        stats.depth.saturating_sub(stats.corrupt) == 0
            && self.held.is_empty()
            && self.sightings.is_empty()
            && s.window() == 0
    }

    fn on_input(&mut self, o: Option<Output>, intake: &mut bool, deadline: &mut Option<Instant>) {
        match o {
            Some(Output::Alert(alert)) => self.store(*alert),
            Some(Output::Sightings(batch)) => self.queue_sightings(batch),
            None => {
                *intake = false;
                *deadline = self.drain_limit.map(|d| Instant::now() + d);
                info!(
                    message = "Uplink input closed; delivering what is left.",
                    pending = self.outbox.len(),
                    limit_ms = self.drain_limit.map(|d| d.as_millis() as u64),
                );
            }
        }
    }

    /// Appends an alert to the outbox (flushed before this returns). While alerts are held in
    /// memory it goes behind them and they are offered first, so the outbox keeps the order
    /// the alerts were raised in; if the disk fails it, it is held.
    fn store(&mut self, alert: protocol::Alert) {
        if self.held.is_empty() && !self.outbox.needs_reopen() {
            match self.outbox.append(&alert, UtcMillis::now().0) {
                Ok(seq) => {
                    self.stats.appended.fetch_add(1, Ordering::Relaxed);
                    debug!(message = "Alert stored.", id = %alert.id, seq);
                }
                Err(e) => {
                    if self.refused(&alert, e) {
                        self.hold(alert);
                    }
                }
            }
        } else {
            self.hold(alert);
            self.retry_held();
        }
        self.stats.set_held(self.held.stats());
    }

    /// Counts and logs a failed append of `alert`; `true` when it should be held and tried
    /// again (the disk failed), `false` when the outbox's policy refused it for good.
    fn refused(&mut self, alert: &protocol::Alert, e: OutboxError) -> bool {
        match e {
            // Logged by the outbox's full-policy; holding cannot make the outbox bigger.
            OutboxError::Full { .. } | OutboxError::Encode { .. } => {
                self.stats.append_failed.fetch_add(1, Ordering::Relaxed);
                error!(message = "Alert could not be stored.", id = %alert.id, error = %e);
                false
            }
            e => {
                self.stats.append_errors.fetch_add(1, Ordering::Relaxed);
                self.storage_failed();
                error!(
                    message = "Outbox append failed (disk full?); alert held in memory and retried.",
                    id = %alert.id,
                    held = self.held.len(),
                    held_bytes = self.held.bytes(),
                    disk_free_bytes = self.free_at_failure,
                    retry_in_ms = self.reopen_at.saturating_duration_since(Instant::now()).as_millis() as u64,
                    error = %e,
                );
                true
            }
        }
    }

    /// Holds `alert` behind the held ones (the hold's full-policy counts and logs any drop).
    fn hold(&mut self, alert: protocol::Alert) {
        let dropped = self.held.push(alert);
        self.stats
            .append_failed
            .fetch_add(dropped.len() as u64, Ordering::Relaxed);
    }

    /// Whether the retry timer has work: alerts held, or an outbox to reopen.
    fn must_retry(&self) -> bool {
        !self.held.is_empty() || self.outbox.needs_reopen()
    }

    /// A storage failure: back off the next reopen, and note the free space to see it return.
    fn storage_failed(&mut self) {
        self.free_at_failure = disk_free(self.outbox.path());
        self.reopen_at = Instant::now() + self.reopen_delay;
        self.reopen_delay = (self.reopen_delay * 2).min(REOPEN_MAX_DELAY);
    }

    /// Reopens a broken outbox when due, then appends the held alerts, oldest first, stopping
    /// at the first that fails (order is kept). Runs on each new alert and each retry tick.
    fn retry_held(&mut self) {
        if self.outbox.needs_reopen() {
            let space_back = disk_free(self.outbox.path())
                .zip(self.free_at_failure)
                .is_some_and(|(now, then)| now >= then.saturating_add(SPACE_RETURNED));
            if Instant::now() < self.reopen_at && !space_back {
                return;
            }
            if let Err(e) = self.outbox.reopen() {
                self.storage_failed();
                warn!(
                    message = "Outbox could not be reopened; alerts stay held in memory.",
                    held = self.held.len(),
                    retry_in_ms = self.reopen_delay.as_millis() as u64,
                    error = %e,
                );
                return;
            }
            self.reopened = true;
        }
        let before = self.held.len();
        while let Some(alert) = self.held.front() {
            match self.outbox.append(alert, UtcMillis::now().0) {
                Ok(seq) => {
                    self.stats.appended.fetch_add(1, Ordering::Relaxed);
                    debug!(message = "Held alert stored.", id = %alert.id, seq);
                    self.held.pop_front();
                    self.reopen_delay = RETRY_EVERY;
                }
                Err(e) => {
                    let alert = alert.clone();
                    if self.refused(&alert, e) {
                        // Still the oldest: it stays at the front for the next retry.
                        break;
                    }
                    self.held.pop_front();
                }
            }
        }
        if before > 0 && self.held.is_empty() {
            info!(
                message = "Alerts held in memory are stored in the outbox again.",
                stored = before
            );
        }
        self.stats.set_held(self.held.stats());
    }

    /// Drops expired alerts; a failure is logged and left for the retry timer's reopen.
    fn expire(&mut self) {
        if let Err(e) = self.outbox.expire(UtcMillis::now().0) {
            error!(message = "Outbox expiry failed.", error = %e);
        }
    }

    fn queue_sightings(&mut self, batch: Vec<Sighting>) {
        if batch.is_empty() {
            return;
        }
        let now = UtcMillis::now().0;
        self.sighting_count += 1;
        let wire = SightingBatch {
            schema: protocol::SCHEMA_VERSION,
            id: self
                .sighting_ids
                .make(now, &["sightings", &self.sighting_count.to_string()]),
            site: self.site.clone(),
            sightings: batch
                .iter()
                .map(|s| TagSighting {
                    reader: s.reader.clone(),
                    tag: s.tag.clone(),
                    kind: match s.kind {
                        TagKind::Bike => protocol::sighting::TagKind::Bike,
                        TagKind::Key => protocol::sighting::TagKind::Key,
                    },
                    first: UtcMillis(s.first_ms),
                    last: UtcMillis(s.last_ms),
                    reads: s.reads,
                    rssi: s.best_rssi,
                })
                .collect(),
        };
        match serde_json::to_vec(&wire) {
            Ok(b) if b.len() <= protocol::limits::MAX_SIGHTING_BATCH_BYTES => {
                self.sightings.push_back(b);
                self.trim_sightings();
            }
            Ok(b) => {
                self.stats.sightings_dropped.fetch_add(1, Ordering::Relaxed);
                error!(
                    message = "Sighting batch too large; dropped.",
                    bytes = b.len(),
                    sightings = batch.len()
                );
            }
            Err(e) => {
                self.stats.sightings_dropped.fetch_add(1, Ordering::Relaxed);
                error!(message = "Sighting batch could not be encoded; dropped.", error = %e);
            }
        }
    }

    /// Applies the sighting queue's drop-oldest policy.
    fn trim_sightings(&mut self) {
        while self.sightings.len() > self.config.sighting_queue {
            self.sightings.pop_front();
            self.stats.sightings_dropped.fetch_add(1, Ordering::Relaxed);
            warn!(
                message = "Sighting queue full; oldest batch dropped.",
                queue = self.config.sighting_queue
            );
        }
    }

    /// Hands the client as many publishes as the window allows: alerts first, then sightings.
    fn fill(&mut self, conn: &Connection, s: &mut Session) -> Result<(), UplinkError> {
        if !s.connected || s.goodbye {
            return Ok(());
        }
        let window = usize::from(self.config.inflight);
        let topic = self.topics.alert(&self.site);
        while s.window() < window {
            let free = window - s.window();
            let batch = match self.outbox.pending_payloads(s.cursor, free) {
                Ok(b) => b,
                // Closed until the retry timer's reopen: nothing to read, nothing to say.
                Err(OutboxError::Closed { .. }) => break,
                Err(e) => {
                    error!(message = "Outbox read failed; alerts not sent for now.", error = %e);
                    break;
                }
            };
            if batch.is_empty() {
                break;
            }
            for (seq, json) in batch {
                if s.alert_seqs.contains(&seq) {
                    // Still in flight from before a rewind.
                    s.cursor = Some(seq);
                    continue;
                }
                if !conn.try_publish(&topic, json, false) {
                    return Ok(());
                }
                s.queued.push_back(Pending::Alert(seq));
                s.alert_seqs.insert(seq);
                s.cursor = Some(seq);
                self.stats.published.fetch_add(1, Ordering::Relaxed);
            }
        }
        let topic = self.topics.sighting(&self.site);
        while s.window() < window {
            let Some(b) = self.sightings.pop_front() else {
                break;
            };
            if !conn.try_publish(&topic, b.clone(), false) {
                self.sightings.push_front(b);
                break;
            }
            s.queued.push_back(Pending::Sighting(b));
        }
        Ok(())
    }

    fn on_event(
        &mut self,
        ev: Ev,
        conn: &Connection,
        s: &mut Session,
        ever_connected: &mut bool,
    ) -> Result<Option<End>, UplinkError> {
        match ev {
            Ev::Connected => {
                s.connected = true;
                self.stats.connected.store(true, Ordering::Relaxed);
                if *ever_connected {
                    self.stats.reconnects.fetch_add(1, Ordering::Relaxed);
                }
                *ever_connected = true;
                info!(
                    message = "Uplink connected.",
                    broker = %format!("{}:{}", self.config.host, self.config.port),
                    pending = self.outbox.len(),
                );
                if self.commands.is_some() && !conn.try_subscribe(&self.topics.cmd(&self.site)) {
                    return Ok(Some(End::Lost("could not subscribe to commands".into())));
                }
                self.publish_status(conn, s, true);
            }
            Ev::Refused(code) => return Ok(Some(End::Lost(format!("broker refused: {code}")))),
            Ev::Sent(pkid) => match s.queued.pop_front() {
                Some(p) => {
                    if let Some(old) = s.inflight.insert(pkid, p) {
                        // rumqttc reuses a packet id only once it is acknowledged; if it ever
                        // did not, the old entry's alert stays in the outbox and is resent.
                        warn!(message = "Packet id reused while in flight.", pkid, old = ?old);
                    }
                }
                None => warn!(
                    message = "Publish reported that the uplink did not queue.",
                    pkid
                ),
            },
            Ev::Acked(pkid, result) => match s.inflight.remove(&pkid) {
                Some(Pending::Alert(seq)) => {
                    s.alert_seqs.remove(&seq);
                    match result {
                        Ok(()) => {
                            if let Err(e) = self.outbox.ack(seq) {
                                // At-least-once: it stays stored and is sent again.
                                error!(message = "Acknowledged alert could not be deleted; it will be sent again.", seq, error = %e);
                            }
                            self.stats.acked.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(refusal) => self.on_refused(s, seq, &refusal)?,
                    }
                }
                Some(Pending::Sighting(b)) => match result {
                    Ok(()) => {
                        self.stats.sightings_sent.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(reason) => {
                        self.stats.sightings_dropped.fetch_add(1, Ordering::Relaxed);
                        warn!(message = "Broker refused a sighting batch; dropped.", bytes = b.len(), reason = %reason);
                    }
                },
                Some(Pending::Other) => {}
                None => debug!(message = "PUBACK for a packet id not in flight.", pkid),
            },
            Ev::Message {
                topic,
                payload,
                retained,
            } => {
                if topic == self.topics.cmd(&self.site) {
                    self.on_command(conn, s, &payload, retained);
                } else {
                    debug!(message = "Message on an unexpected topic ignored.", topic = %topic);
                }
            }
            Ev::Other => {}
        }
        Ok(None)
    }

    /// The broker refused the alert `seq`: quarantine it or offer it again (module doc).
    fn on_refused(
        &mut self,
        s: &mut Session,
        seq: u64,
        refusal: &Refusal,
    ) -> Result<(), UplinkError> {
        let Some(reason) = QUARANTINE_REASONS
            .iter()
            .position(|&(code, _)| code == refusal.code)
        else {
            self.stats.rejected.fetch_add(1, Ordering::Relaxed);
            error!(message = "Broker refused an alert; kept, offered again later.", seq, reason = %refusal);
            s.rewind_at.get_or_insert(Instant::now() + REJECT_RETRY);
            return Ok(());
        };
        let moved = match self.outbox.quarantine(
            seq,
            refusal.code,
            &refusal.text,
            UtcMillis::now().0,
        ) {
            Ok(m) => m,
            Err(e) => {
                // Still in the sending queue: offered again, and refused again, later.
                error!(message = "Refused alert could not be quarantined; kept, offered again later.", seq, reason = %refusal, error = %e);
                s.rewind_at.get_or_insert(Instant::now() + REJECT_RETRY);
                return Ok(());
            }
        };
        match moved {
            Some(q) => {
                self.stats.quarantined[reason].fetch_add(1, Ordering::Relaxed);
                error!(
                    message = "Hub refused an alert for good; moved to the outbox quarantine, not sent again.",
                    seq,
                    id = %q.id,
                    severity = ?q.severity,
                    reason = %refusal,
                    quarantined = self.outbox.stats().quarantined,
                );
            }
            // Evicted or expired while in flight: nothing left to keep.
            None => warn!(
                message = "Hub refused an alert no longer in the outbox.",
                seq,
                reason = %refusal
            ),
        }
        Ok(())
    }

    /// A message on the command topic: check it, hand a good one to the core.
    fn on_command(&mut self, conn: &Connection, s: &mut Session, payload: &[u8], retained: bool) {
        let Some(commands) = self.commands.as_mut() else {
            return;
        };
        let now = UtcMillis::now().0;
        match commands.gate.check(payload, now) {
            Err(refusal) => {
                self.stats.commands_refused.fetch_add(1, Ordering::Relaxed);
                warn!(
                    message = "Hub command refused.",
                    seq = ?refusal.seq,
                    outcome = ?refusal.outcome,
                    detail = %refusal.detail,
                    retained,
                );
                let reply = refusal.reply(&self.site, now);
                self.publish_reply(conn, s, &reply);
            }
            Ok(command) => {
                // Consumed now, so a redelivery while the core applies it is a replay.
                commands.gate.accepted(command.seq);
                let Some((tx, _)) = &self.command_results else {
                    return;
                };
                let seq = command.seq;
                let apply = ApplyCommand {
                    command,
                    done: tx.clone(),
                };
                if let Err(e) = commands.apply.try_send(apply) {
                    let command = match e {
                        mpsc::error::TrySendError::Full(a)
                        | mpsc::error::TrySendError::Closed(a) => a.command,
                    };
                    self.on_applied(
                        conn,
                        s,
                        command,
                        Err("the agent core is busy or stopped; send it again".into()),
                    );
                } else {
                    debug!(message = "Hub command handed to the core.", seq);
                }
            }
        }
    }

    /// The core applied (or refused) a command: persist, reply.
    fn on_applied(
        &mut self,
        conn: &Connection,
        s: &mut Session,
        command: Command,
        result: Result<(), String>,
    ) {
        let Some(commands) = self.commands.as_mut() else {
            return;
        };
        let now = UtcMillis::now().0;
        let (outcome, detail) = match result {
            Ok(()) => match commands.store.record(&command) {
                Ok(()) => {
                    self.stats.commands_applied.fetch_add(1, Ordering::Relaxed);
                    info!(message = "Hub command applied.", seq = command.seq, body = ?command.body);
                    (ReplyOutcome::Applied, None)
                }
                Err(e) => {
                    self.stats.commands_refused.fetch_add(1, Ordering::Relaxed);
                    error!(message = "Hub command applied but not persisted; it will not survive a restart.", seq = command.seq, error = %e);
                    (
                        ReplyOutcome::Failed,
                        Some(format!("applied but not persisted: {e}")),
                    )
                }
            },
            Err(reason) => {
                self.stats.commands_refused.fetch_add(1, Ordering::Relaxed);
                warn!(message = "Hub command refused by the agent.", seq = command.seq, reason = %reason);
                // Used up all the same, so a restart does not let it through as new.
                if let Err(e) = commands.store.consume_seq(command.seq) {
                    error!(message = "Refused command's seq not persisted.", seq = command.seq, error = %e);
                }
                (ReplyOutcome::Invalid, Some(reason))
            }
        };
        let reply = CommandReply {
            schema: protocol::SCHEMA_VERSION,
            site: self.site.clone(),
            seq: Some(command.seq),
            outcome,
            detail,
            time: UtcMillis(now),
        };
        self.publish_reply(conn, s, &reply);
    }

    fn publish_reply(&self, conn: &Connection, s: &mut Session, reply: &CommandReply) {
        if !s.connected {
            return;
        }
        match serde_json::to_vec(reply) {
            Ok(b) => {
                if conn.try_publish(&self.topics.cmd_reply(&self.site), b, false) {
                    s.queued.push_back(Pending::Other);
                } else {
                    warn!(message = "Command reply not sent: client queue full.", seq = ?reply.seq);
                }
            }
            Err(e) => error!(message = "Command reply could not be encoded.", error = %e),
        }
    }

    /// Publishes the retained status: `online` with health, or the clean `offline`.
    fn publish_status(&mut self, conn: &Connection, s: &mut Session, online: bool) {
        let outbox = self.outbox.stats();
        let max = self.stats.outbox_max_bytes.load(Ordering::Relaxed);
        let status = Status {
            schema: protocol::SCHEMA_VERSION,
            site: self.site.clone(),
            state: if online {
                AgentState::Online
            } else {
                AgentState::Offline
            },
            time: UtcMillis::now(),
            health: online.then(|| self.health.health(&outbox, max, &self.stats)),
        };
        match serde_json::to_vec(&status) {
            Ok(b) => {
                if conn.try_publish(&self.topics.status(&self.site), b, true) {
                    s.queued.push_back(Pending::Other);
                    self.stats.status_published.fetch_add(1, Ordering::Relaxed);
                } else {
                    debug!(message = "Status skipped: client queue full.");
                }
            }
            Err(e) => error!(message = "Status could not be encoded.", error = %e),
        }
    }

    /// The last will: `offline`, no health, dated now (the connect that set it).
    fn will(&self) -> Will {
        let status = Status {
            schema: protocol::SCHEMA_VERSION,
            site: self.site.clone(),
            state: AgentState::Offline,
            time: UtcMillis::now(),
            health: None,
        };
        Will {
            topic: self.topics.status(&self.site),
            payload: serde_json::to_vec(&status).unwrap_or_default(),
        }
    }
}

async fn recv_results<T>(rx: &mut Option<(mpsc::Sender<T>, mpsc::Receiver<T>)>) -> Option<T> {
    match rx {
        Some((_, rx)) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// A salt that differs between runs (sighting batch ids must not repeat across restarts).
fn random_salt() -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(UtcMillis::now().0)
}

/// Where the agent keeps its state: `data_dir/outbox` and `data_dir/commands`.
pub fn outbox_dir(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("outbox")
}
