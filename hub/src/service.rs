//! `hub run`: builds every stage from the config and runs them until a signal.
//!
//! ```text
//! sites ──MQTT──▶ gateway ──alerts──▶ ingest ──▶ dispatcher ──▶ push (MQTT, webhooks)
//!          (TLS, auth, ACL)  └─▶ rumqttd (embedded) ◀── link (hub's client) ◀──┘
//! ```
//!
//! With an external broker the gateway and rumqttd are not started; the link takes the alerts
//! through a shared subscription with manual acks instead.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use protocol::{SigningKey, Topics};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::api::{ApiMetrics, ApiState, Logins, Sessions};
use crate::book::CaseBook;
use crate::config::HubConfig;
use crate::disk::DiskGuard;
use crate::dispatch::{Clock, DispatchHandle, Dispatcher, DispatcherParts, SystemClock};
use crate::gateway::admission::Limits;
use crate::gateway::auth::{Acl, CredentialKind, Credentials};
use crate::gateway::{Gateway, GatewayLimits, tls_acceptor};
use crate::grid::{GridIndex, geojson};
use crate::ingest::Ingest;
use crate::link::{Link, LinkOptions};
use crate::metrics::HubMetrics;
use crate::push::Pusher;
use crate::retention::{Kind, Sweeper};
use crate::roster::Roster;
use crate::store::Store;
use crate::trust::SitePolicy;
use crate::users::Users;

/// How long start-up waits for the link's subscriptions on the embedded broker (loopback, in
/// process: milliseconds normally).
const LINK_SUBSCRIBE_WAIT: Duration = Duration::from_secs(30);

/// Largest MQTT packet accepted: the largest alert plus headroom for topic and properties.
pub const MAX_PACKET: usize = protocol::MAX_ALERT_BYTES + 4096;

/// The config plus everything it points at, all checked.
#[derive(Debug)]
pub struct Loaded {
    pub config: HubConfig,
    pub grid: GridIndex,
    pub roster: Roster,
    pub credentials: Credentials,
    pub signing_key: SigningKey,
    /// Dashboard users (with `[http]`).
    pub users: Option<Users>,
    /// The SMS provider's secret (with `[sms]`).
    pub sms_secret: Option<crate::sms::SmsSecret>,
    /// The work app's Secret (with `[work_app]`).
    pub work_app_secret: Option<crate::workapp::WorkAppSecret>,
}

impl Loaded {
    /// Loads the grid, roster, credentials and signing key; every problem is returned.
    pub fn load(config: HubConfig) -> Result<Self, Vec<String>> {
        let mut errors = Vec::new();
        let (grid_file, crs) = config.grid_source();
        let grid = match std::fs::File::open(&grid_file) {
            Ok(f) => match geojson::import_reader(std::io::BufReader::new(f), crs) {
                Ok(h) => Some(GridIndex::new(h)),
                Err(e) => {
                    errors.push(format!("grid {}: {e}", grid_file.display()));
                    None
                }
            },
            Err(e) => {
                errors.push(format!("grid.file {}: {e}", grid_file.display()));
                None
            }
        };
        let roster_dir = config.roster_source();
        let roster = match &grid {
            Some(g) => {
                let known = |code: &str| g.find(code).is_some();
                match Roster::load_dir(&roster_dir, &known)
                    .and_then(|r| r.with_utc_offset_minutes(config.roster.utc_offset_minutes))
                {
                    Ok(r) => Some(r),
                    Err(e) => {
                        errors.push(format!("roster {}: {e}", roster_dir.display()));
                        None
                    }
                }
            }
            None => None,
        };
        if let Some(g) = &grid {
            for (id, s) in &config.sites {
                if g.find(&s.cell).is_none() {
                    errors.push(format!(
                        "sites.{id}.cell: {:?} is not a cell of the grid",
                        s.cell
                    ));
                }
            }
        }
        if let (Some(g), Some(r)) = (&grid, &roster) {
            errors.extend(crate::reload::fit_problems(&config, g, r));
        }
        let users = match (&config.http, &grid, &roster) {
            (Some(h), Some(g), Some(r)) => {
                // A department's people sign in for it as a grid member does for a cell.
                let known_cell = |c: &str| g.find(c).is_some() || r.department(c).is_some();
                let known_person = |p: &str| r.person(p).is_some();
                match Users::load(&h.users, &known_cell, &known_person) {
                    Ok(u) => Some(u),
                    Err(e) => {
                        errors.push(format!("http.users: {e}"));
                        None
                    }
                }
            }
            _ => None,
        };
        let credentials = match Credentials::load(&config.broker.credentials) {
            Ok(c) => Some(c),
            Err(e) => {
                errors.push(e.to_string());
                None
            }
        };
        let signing_key = match read_signing_key(&config.commands.signing_key_file) {
            Ok(k) => Some(k),
            Err(e) => {
                errors.push(e);
                None
            }
        };
        let sms_secret = match &config.sms {
            Some(c) => match crate::sms::SmsSecret::load(&c.secret_file, "sms.secret_file") {
                Ok(s) => Some(s),
                Err(e) => {
                    errors.push(e);
                    None
                }
            },
            None => None,
        };
        let work_app_secret = match &config.work_app {
            Some(c) => {
                match crate::workapp::WorkAppSecret::load(&c.secret_file, "work_app.secret_file") {
                    Ok(s) => Some(s),
                    Err(e) => {
                        errors.push(e);
                        None
                    }
                }
            }
            None => None,
        };
        match (grid, roster, credentials, signing_key) {
            (Some(grid), Some(roster), Some(credentials), Some(signing_key))
                if errors.is_empty() =>
            {
                Ok(Self {
                    config,
                    grid,
                    roster,
                    credentials,
                    signing_key,
                    users,
                    sms_secret,
                    work_app_secret,
                })
            }
            _ => Err(errors),
        }
    }
}

pub fn read_signing_key(path: &Path) -> Result<SigningKey, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "commands.signing_key_file {}: {e} (make one with `hub keygen --out {}`)",
            path.display(),
            path.display()
        )
    })?;
    let key = protocol::command::signing_key_from_base64(text.trim())
        .map_err(|e| format!("commands.signing_key_file {}: {e}", path.display()))?;
    // The demo key is public anyway (and refused by `hub run` without --demo); a git checkout
    // cannot make it 0600. Every other key must be the owner's alone.
    if !protocol::demo::is_demo_key(&key.verifying_key()) {
        crate::secret_file::check_private(path)
            .map_err(|e| format!("commands.signing_key_file: {e}"))?;
    }
    Ok(key)
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    Setup(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Broker(#[from] crate::broker::BrokerError),
    #[error(transparent)]
    Dispatch(#[from] crate::dispatch::DispatchError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A running hub.
#[derive(Debug)]
pub struct RunningHub {
    pub dispatch: DispatchHandle,
    /// The gateway's plain listeners as bound (port 0 in the config becomes a real port).
    pub mqtt: Vec<SocketAddr>,
    pub mqtts: Vec<SocketAddr>,
    pub metrics_addr: Option<SocketAddr>,
    pub metrics: Arc<HubMetrics>,
    pub store: Store,
    pub link: Link,
    /// The dashboard and API as bound (with `[http]`).
    pub http_addr: Option<SocketAddr>,
    /// The API's read side of the cases.
    pub book: Arc<CaseBook>,
    /// Retention (`[retention]`): sweeps on its own; `sweep_now` for tests.
    pub retention: Arc<Sweeper>,
    /// `hub reload` (SIGHUP) and the admin API's reload.
    pub reloader: Arc<crate::reload::Reloader>,
    shutdown: watch::Sender<bool>,
    dispatcher: tokio::task::JoinHandle<Result<(), crate::dispatch::DispatchError>>,
    ingest: tokio::task::JoinHandle<Result<(), crate::ingest::IngestError>>,
    /// Servers that end on `shutdown` (HTTP, metrics).
    servers: Vec<tokio::task::JoinHandle<()>>,
}

impl RunningHub {
    /// Stops accepting, disconnects the link. Alerts already stored stay stored. Returns once
    /// every task that held the store has ended, so the same data directory can be opened
    /// again at once (sled locks it while any handle lives).
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        self.link.disconnect().await;
        // An aborted task's future is dropped by the runtime later; waiting makes it now. A
        // finished task (its result maybe taken by `failed`) holds nothing and must not be
        // polled again.
        if !self.dispatcher.is_finished() {
            self.dispatcher.abort();
            let _ = self.dispatcher.await;
        }
        if !self.ingest.is_finished() {
            self.ingest.abort();
            let _ = self.ingest.await;
        }
        for mut server in self.servers {
            // Graceful shutdown drains open requests; one that hangs does not hold the hub.
            if tokio::time::timeout(Duration::from_secs(5), &mut server)
                .await
                .is_err()
            {
                tracing::warn!("a server did not drain within 5 s; aborted");
                server.abort();
                let _ = server.await;
            }
        }
        let _ = self.store.flush().await;
    }

    /// Resolves when a core task ends (which only happens on an error).
    pub async fn failed(&mut self) -> String {
        tokio::select! {
            r = &mut self.dispatcher => format!("dispatcher stopped: {r:?}"),
            r = &mut self.ingest => format!("ingest stopped: {r:?}"),
        }
    }
}

/// Starts every stage. `clock` is the dispatcher's time (tests may pass their own).
pub async fn start(loaded: Loaded, clock: Arc<dyn Clock>) -> Result<RunningHub, ServiceError> {
    let Loaded {
        config,
        grid,
        roster,
        mut credentials,
        signing_key,
        users,
        sms_secret,
        work_app_secret,
    } = loaded;
    let grid = Arc::new(grid);
    let roster = Arc::new(crate::live::Live::new(roster));
    let book = Arc::new(CaseBook::default());
    let topics =
        Topics::new(&config.topic_prefix).map_err(|e| ServiceError::Setup(e.to_string()))?;
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| ServiceError::Setup(format!("data_dir {}: {e}", config.data_dir.display())))?;
    let metrics = Arc::new(HubMetrics::default());
    let users = users.map(|u| Arc::new(crate::live::Live::new(u)));
    let reloader = Arc::new(crate::reload::Reloader::new(
        config.clone(),
        grid.clone(),
        roster.clone(),
        users.clone(),
        metrics.clone(),
    ));
    // Before the store: a hub starting on a nearly full disk defers alerts from the first, and
    // on a full one releases its reserve so the store can open.
    let disk = DiskGuard::new(
        &config.data_dir,
        config.storage.min_free_bytes(),
        config.storage.reserve_bytes(),
        &metrics,
    );
    let store = Store::open(&config.data_dir)?;
    {
        // Files a crash left without metadata (see `store::blobs`): looked for once over
        // every directory at start, in the background (a large store has many), and then a
        // directory per retention sweep.
        let store = store.clone();
        tokio::task::spawn_blocking(move || match store.blobs().collect_all_orphans() {
            Ok(s) => tracing::info!(
                blobs = s.blobs,
                bytes = s.bytes,
                "orphan blobs collected at start"
            ),
            Err(e) => tracing::error!(error = %e, "cannot collect orphan blobs"),
        });
    }
    let (alerts_tx, alerts_rx) = mpsc::channel(8192);
    let (inbound_tx, inbound_rx) = mpsc::channel(4096);
    let trust = Arc::new(SitePolicy::new(
        config.sites.clone(),
        grid.clone(),
        &config.ingest,
    ));
    let (ingest, ingest_task) = Ingest::start(
        store.clone(),
        trust.clone(),
        alerts_tx,
        metrics.clone(),
        disk.clone(),
        clock.clone(),
    );
    let api_ingest = ingest.clone();
    let (shutdown, shutdown_rx) = watch::channel(false);
    // Ends with the hub; holds no store handle.
    disk.clone()
        .spawn_monitor(metrics.clone(), shutdown_rx.clone());
    let mut mqtt = Vec::new();
    let mut mqtts = Vec::new();

    let link = if config.broker.mode == "external" {
        let ext = config
            .broker
            .external
            .clone()
            .ok_or_else(|| ServiceError::Setup("broker.external missing".into()))?;
        let password = std::fs::read_to_string(&ext.password_file).map_err(|e| {
            ServiceError::Setup(format!(
                "broker.external.password_file {}: {e}",
                ext.password_file.display()
            ))
        })?;
        let tls = match &ext.ca_file {
            Some(ca) => Some(client_tls(ca)?),
            None => None,
        };
        let opts = LinkOptions {
            host: ext.host.clone(),
            port: ext.port,
            client_id: ext.client_id.clone(),
            username: ext.username.clone(),
            password: password.trim().to_owned(),
            alert_group: Some(ext.group.clone()),
            tls,
            max_packet: MAX_PACKET,
        };
        Link::start(opts, topics.clone(), inbound_tx, Some(ingest.clone())).0
    } else {
        // The hub's own client authenticates to rumqttd like anyone else, with a token made
        // fresh at every start and never written down.
        let internal_token = crate::random::token();
        credentials.insert(
            CredentialKind::Service,
            "hub-internal",
            internal_token.as_bytes(),
        );
        let creds = Arc::new(credentials.clone());
        let embedded = tokio::task::spawn_blocking(move || crate::broker::start(MAX_PACKET, creds))
            .await
            .map_err(|e| ServiceError::Setup(e.to_string()))??;
        let opts = LinkOptions {
            host: embedded.v5.ip().to_string(),
            port: embedded.v5.port(),
            client_id: "hub-internal".into(),
            username: "hub-internal".into(),
            password: internal_token,
            alert_group: None,
            tls: None,
            max_packet: MAX_PACKET,
        };
        let link = Link::start(opts, topics.clone(), inbound_tx, None).0;
        // Sites come in only once the link listens: rumqttd drops a message nobody has
        // subscribed to, after the gateway has acknowledged it to the site.
        if !link.subscribed(LINK_SUBSCRIBE_WAIT).await {
            return Err(ServiceError::Setup(format!(
                "the hub's link to its embedded broker did not subscribe within {}s",
                LINK_SUBSCRIBE_WAIT.as_secs()
            )));
        }
        let gateway = Gateway::new(
            credentials,
            Acl::new(topics.clone()),
            ingest.clone(),
            metrics.clone(),
            (embedded.v4, embedded.v5),
            GatewayLimits {
                max_packet: MAX_PACKET,
                max_connections: config.broker.max_connections,
                preauth: Limits {
                    pool: config.broker.preauth_pool,
                    per_address: config.broker.preauth_per_address,
                },
            },
        );
        for addr in &config.broker.listen {
            let l = TcpListener::bind(addr)
                .await
                .map_err(|source| ServiceError::Listen {
                    addr: *addr,
                    source,
                })?;
            mqtt.push(l.local_addr().map_err(|source| ServiceError::Listen {
                addr: *addr,
                source,
            })?);
            tokio::spawn(gateway.clone().serve(l, None, shutdown_rx.clone()));
        }
        if !config.broker.tls_listen.is_empty() {
            let tls = config
                .broker
                .tls
                .as_ref()
                .ok_or_else(|| ServiceError::Setup("broker.tls missing".into()))?;
            let acceptor =
                tls_acceptor(&tls.cert_file, &tls.key_file, tls.client_ca_file.as_deref())
                    .map_err(|e| ServiceError::Setup(e.to_string()))?;
            for addr in &config.broker.tls_listen {
                let l = TcpListener::bind(addr)
                    .await
                    .map_err(|source| ServiceError::Listen {
                        addr: *addr,
                        source,
                    })?;
                mqtts.push(l.local_addr().map_err(|source| ServiceError::Listen {
                    addr: *addr,
                    source,
                })?);
                tokio::spawn(
                    gateway
                        .clone()
                        .serve(l, Some(acceptor.clone()), shutdown_rx.clone()),
                );
            }
        }
        link
    };

    let pusher = Pusher::new(
        link.clone(),
        topics.clone(),
        config.push.webhooks.clone(),
        config.push.dashboard_url.clone(),
        metrics.clone(),
    )
    .map_err(ServiceError::Setup)?;
    let sms = match (&config.sms, sms_secret) {
        (Some(c), Some(secret)) => Some(crate::dispatch::SmsSetup {
            client: crate::sms::SmsClient::new(c.clone(), secret, false)
                .map_err(|e| ServiceError::Setup(e.to_string()))?,
            queue: c.queue,
            poll: Duration::from_secs(c.poll_interval_s),
            fallback_after_ms: i64::try_from(c.fallback_after_s * 1000).unwrap_or(i64::MAX),
        }),
        _ => None,
    };
    let work_app = match (&config.work_app, work_app_secret) {
        (Some(c), Some(secret)) => Some(crate::dispatch::WorkAppSetup {
            client: crate::workapp::WeComClient::new(c.clone(), secret, false)
                .map_err(|e| ServiceError::Setup(e.to_string()))?,
            queue: c.queue,
        }),
        _ => None,
    };
    let (dispatcher, handle) = Dispatcher::new(DispatcherParts {
        store: store.clone(),
        grid: grid.clone(),
        roster: roster.clone(),
        policy: config.escalation.clone(),
        sites: config.sites.clone(),
        offline_after_ms: (config.registry.offline_after_s * 1000) as i64,
        clock_tolerance_ms: i64::try_from(config.registry.clock_tolerance_s * 1000)
            .unwrap_or(i64::MAX),
        topics,
        pusher,
        signing_key,
        metrics: metrics.clone(),
        clock: clock.clone(),
        audit_every: Duration::from_secs(30),
        book: book.clone(),
        trust,
        disk: disk.clone(),
        routing: config.routing.clone(),
        sms,
        work_app,
    })?;
    let mut sweeper = Sweeper::new(config.retention.clone(), clock.clone(), metrics.clone());
    sweeper.register(
        Kind::ClosedCases,
        Arc::new(dispatcher.closed_cases(&handle)),
    );
    sweeper.register(Kind::Sightings, Arc::new(store.sightings().clone()));
    // Alerts, snapshots and photos of open cases stay, however old.
    let pins = Arc::new(crate::retention::OpenCasePins::new(
        store.clone(),
        book.clone(),
    ));
    sweeper.register(
        Kind::Alerts,
        Arc::new(crate::store::AlertsRetention {
            alerts: store.alerts().clone(),
            pins: pins.clone(),
        }),
    );
    for (kind, blob_kind) in [
        (Kind::Snapshots, crate::store::BlobKind::Snapshot),
        (Kind::Photos, crate::store::BlobKind::Photo),
    ] {
        sweeper.register(
            kind,
            Arc::new(crate::store::BlobsOfKind {
                blobs: store.blobs().clone(),
                kind: blob_kind,
                pins: pins.clone(),
            }),
        );
    }
    // Registered with or without [http]: sessions of an earlier run still expire.
    let sessions = Sessions::new(
        store.clone(),
        config.http.as_ref().map_or(12, |h| h.session_hours),
    );
    sweeper.register(Kind::Sessions, Arc::new(sessions.clone()));
    let dispatcher = tokio::spawn(dispatcher.run(alerts_rx, inbound_rx));

    let api_metrics = Arc::new(ApiMetrics::default());
    let mut servers = Vec::new();
    let http_addr = match (&config.http, users) {
        (Some(h), Some(users)) => {
            let state = Arc::new(ApiState {
                book: book.clone(),
                dispatch: handle.clone(),
                store: store.clone(),
                grid: grid.clone(),
                roster: roster.clone(),
                users,
                sites: config.sites.clone(),
                ingest: api_ingest,
                sessions,
                logins: Logins::default(),
                clock: clock.clone(),
                http: h.clone(),
                metrics: metrics.clone(),
                api_metrics: api_metrics.clone(),
                grid_geojson: crate::api::grid_geojson(grid.hierarchy()),
                ids: protocol::alert::IdGenerator::with_salt({
                    let b = crate::random::bytes32();
                    u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
                }),
                stop: shutdown_rx.clone(),
                ranking: config.ranking.clone(),
                reloader: reloader.clone(),
                clock_tolerance_ms: i64::try_from(config.registry.clock_tolerance_s * 1000)
                    .unwrap_or(i64::MAX),
            });
            let (addr, task) =
                crate::api::serve(state)
                    .await
                    .map_err(|source| ServiceError::Listen {
                        addr: h.listen,
                        source,
                    })?;
            servers.push(task);
            Some(addr)
        }
        (Some(_), None) => return Err(ServiceError::Setup("http.users: not loaded".into())),
        _ => None,
    };
    let metrics_addr = match &config.metrics {
        Some(m) => {
            let l = TcpListener::bind(m.listen)
                .await
                .map_err(|source| ServiceError::Listen {
                    addr: m.listen,
                    source,
                })?;
            let addr = l.local_addr().ok();
            let registry = Arc::new(crate::metrics::registry(
                metrics.clone(),
                api_metrics.clone(),
            ));
            let app = axum::Router::new().route(
                "/metrics",
                axum::routing::get(move || {
                    let registry = registry.clone();
                    async move {
                        (
                            [(
                                axum::http::header::CONTENT_TYPE,
                                infra::metrics::CONTENT_TYPE,
                            )],
                            infra::metrics::encode(&registry),
                        )
                    }
                }),
            );
            let mut stop = shutdown_rx.clone();
            servers.push(tokio::spawn(async move {
                let _ = axum::serve(l, app)
                    .with_graceful_shutdown(async move {
                        let _ = stop.wait_for(|s| *s).await;
                    })
                    .await;
            }));
            addr
        }
        None => None,
    };
    let retention = Arc::new(sweeper);
    servers.push(retention.clone().spawn(shutdown_rx.clone()));
    count_plaintext_listeners(&mqtt, http_addr, &metrics);
    tracing::info!(mqtt = ?mqtt, mqtts = ?mqtts, metrics = ?metrics_addr, http = ?http_addr, mode = %config.broker.mode, "hub running");
    Ok(RunningHub {
        dispatch: handle,
        mqtt,
        mqtts,
        metrics_addr,
        metrics,
        store,
        link,
        http_addr,
        book,
        retention,
        reloader,
        shutdown,
        dispatcher,
        ingest: ingest_task,
        servers,
    })
}

/// Warns about each plaintext listener other hosts can reach (device tokens, passwords and
/// session cookies would cross the network in clear) and shows their number in `/metrics`.
/// Loopback is fine: a TLS proxy or tunnel on the same box is the usual front.
fn count_plaintext_listeners(mqtt: &[SocketAddr], http: Option<SocketAddr>, metrics: &HubMetrics) {
    let exposed = |a: &&SocketAddr| !a.ip().is_loopback();
    let mqtt: Vec<&SocketAddr> = mqtt.iter().filter(exposed).collect();
    let http: Vec<&SocketAddr> = http.iter().filter(exposed).collect();
    for addr in &mqtt {
        tracing::warn!(message = "Plaintext MQTT listener on a non-loopback address: device tokens cross the network in clear; use broker.tls_listen.", %addr);
    }
    for addr in &http {
        tracing::warn!(message = "Plaintext HTTP listener on a non-loopback address: passwords and session cookies cross the network in clear; put a TLS proxy in front and listen on loopback.", %addr);
    }
    metrics.plaintext_listeners(mqtt.len() as u64, http.len() as u64);
}

/// Refuses the published demo secrets unless `demo`; with it, warns about each.
fn check_demo_secrets(loaded: &Loaded, demo: bool) -> Result<(), String> {
    if demo {
        tracing::warn!(
            message = "Running the demo: published demo secrets are accepted (--demo).",
            signing_key = %loaded.config.commands.signing_key_file.display()
        );
        return Ok(());
    }
    let found = crate::demo::find(loaded);
    if found.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = found.iter().map(ToString::to_string).collect();
    Err(format!(
        "refusing to start with {} published demo secret(s); anyone who has read the \
         repository holds them (make your own with `hub keygen`, `hub credential-add` and \
         `hub user add`, or pass --demo to run the demo):\n  {}",
        found.len(),
        lines.join("\n  ")
    ))
}

/// TLS to an external broker: trusting `broker.external.ca_file`.
fn client_tls(ca: &Path) -> Result<Arc<rustls::ClientConfig>, ServiceError> {
    infra::tls::client_config(
        infra::tls::PemFile::new("broker.external.ca_file", ca),
        None,
    )
    .map_err(|e| ServiceError::Setup(e.to_string()))
}

/// `hub run`: start, then wait for SIGTERM/SIGINT or a failed core task. Without `demo`, a
/// configuration holding any of the repository's published demo secrets is refused, listing
/// each ([`crate::demo`]).
pub async fn run(
    config_path: &Path,
    listen: Vec<SocketAddr>,
    metrics: Option<SocketAddr>,
    http: Option<SocketAddr>,
    demo: bool,
) -> Result<(), String> {
    let mut config = HubConfig::load(config_path).map_err(|e| e.to_string())?;
    if let Some(addr) = http {
        match &mut config.http {
            Some(h) => h.listen = addr,
            None => return Err("--http: the config has no [http] section (users file)".into()),
        }
    }
    if !listen.is_empty() {
        config.broker.listen = listen;
    }
    if let Some(m) = metrics {
        config.metrics = Some(crate::config::MetricsSection { listen: m });
    }
    let data_dir = config.data_dir.clone();
    let loaded = Loaded::load(config)
        .map_err(|errors| format!("{} problem(s):\n  {}", errors.len(), errors.join("\n  ")))?;
    check_demo_secrets(&loaded, demo)?;
    let mut hub = start(loaded, Arc::new(SystemClock))
        .await
        .map_err(|e| e.to_string())?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;
    // systemd `Type=notify`: ready once the listeners are bound; a no-op outside systemd.
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|e| e.to_string())?;
    // For `hub reload`: which process to signal.
    let pid_path = pid_file(&data_dir);
    if let Err(e) = std::fs::write(&pid_path, format!("{}\n", std::process::id())) {
        tracing::warn!(path = %pid_path.display(), error = %e, "cannot write the pid file; `hub reload` will not find this hub (SIGHUP still works)");
    }
    let outcome = loop {
        tokio::select! {
            _ = term.recv() => break Ok(()),
            _ = tokio::signal::ctrl_c() => break Ok(()),
            why = hub.failed() => break Err(why),
            // `hub reload` / `systemctl reload`: a refused reload is logged with every
            // problem and changes nothing; the hub runs on either way.
            _ = hup.recv() => {
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Reloading]);
                let reloader = hub.reloader.clone();
                let _ = tokio::task::spawn_blocking(move || reloader.reload()).await;
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
            }
        }
    };
    tracing::info!("hub stopping");
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    let _ = std::fs::remove_file(&pid_path);
    hub.stop().await;
    outcome
}

/// Where a running hub writes its process id (for `hub reload`).
pub fn pid_file(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("hub.pid")
}
