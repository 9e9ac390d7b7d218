//! Who is asking ([`Caller`]) and what they may see.
//!
//! Browsers log in for a session cookie (`hub_session`, HttpOnly, SameSite=Strict) plus a CSRF
//! token they must echo in `X-CSRF-Token` on every unsafe request; apps log in for a bearer
//! token (no cookie, so no CSRF). Both are random 256-bit tokens stored only as SHA-256 in the
//! `sessions` tree, with an expiry. Wrong passwords are limited per (login, source address),
//! and password checks run a bounded number at a time ([`Logins`]).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{ConnectInfo, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use protocol::UtcMillis;
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, watch};
use utoipa::ToSchema;

use super::ApiState;
use super::error::ApiError;
use crate::book::CaseSummary;
use crate::case::CellRef;
use crate::config::{Cidr, MAX_TOKEN_DAYS};
use crate::store::{SessionKey, Store};
use crate::users::{User, UserRole};

pub const COOKIE: &str = "hub_session";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Wrong passwords allowed per (login, source address) within [`WINDOW`]. Keyed by the pair,
/// so a guesser throttles only itself: the account's owner elsewhere still logs in.
pub const MAX_FAILS: usize = 5;
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Longest username accepted; longer ones are refused before any lookup (logins are short
/// ids, and the limiter keys on them).
pub const MAX_USERNAME_BYTES: usize = 64;
/// Longest password accepted (argon2 reads all of it).
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// (login, address) pairs the limiter remembers; the least recently used goes first.
pub const LIMITER_CAPACITY: usize = 10_000;
/// How long a login waits for an argon2 slot before it is answered 503.
const ARGON_WAIT: Duration = Duration::from_secs(5);

pub use crate::store::{Session, Via};

/// Sessions: tokens made and checked here, kept by the store's [`crate::store::SessionStore`]. A session's
/// id (what admins list and revoke) is the hex SHA-256 of its token: it names the session
/// without being able to act as it.
#[derive(Debug, Clone)]
pub struct Sessions {
    store: Store,
    ttl_ms: i64,
    /// Bumped whenever a session ends before its expiry (logout, revocation), so live feeds
    /// re-check theirs at once.
    ended: Arc<watch::Sender<u64>>,
}

const DAY_MS: i64 = 86_400_000;

impl Sessions {
    pub fn new(store: Store, hours: u64) -> Self {
        Self {
            store,
            ttl_ms: (hours * 3_600_000) as i64,
            ended: Arc::new(watch::Sender::new(0)),
        }
    }

    /// The id of the session `token` opens.
    pub fn id_of(token: &str) -> String {
        SessionKey::of_token(token).to_hex()
    }

    /// Tells live feeds that some session ended.
    fn bump(&self) {
        self.ended.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Changes whenever a session ends before its expiry.
    pub fn watch_ended(&self) -> watch::Receiver<u64> {
        self.ended.subscribe()
    }

    /// A new session; returns its token (shown once) and the session. A browser session
    /// lasts `http.session_hours`; an app token `days` days.
    pub fn create(
        &self,
        login: &str,
        via: Via,
        label: &str,
        days: Option<u32>,
        now: UtcMillis,
    ) -> Result<(String, Session), ApiError> {
        let token = crate::random::token();
        let ttl = days.map_or(self.ttl_ms, |d| i64::from(d) * DAY_MS);
        let s = Session {
            login: login.to_owned(),
            via,
            csrf: crate::random::token(),
            created: now,
            expires: UtcMillis(now.0 + ttl),
            label: label.to_owned(),
        };
        self.store
            .sessions()
            .put(&SessionKey::of_token(&token), &s)
            .map_err(|e| ApiError::internal(format!("store session: {e}")))?;
        Ok((token, s))
    }

    /// The live session `token` opens. An unreadable record opens nothing (logged), an
    /// expired one is removed.
    pub fn get(&self, token: &str, now: UtcMillis) -> Option<Session> {
        let key = SessionKey::of_token(token);
        let s = match self.store.sessions().get(&key) {
            Ok(s) => s?,
            Err(e) => {
                tracing::error!(error = %e, "session unreadable; refused");
                return None;
            }
        };
        if s.expires <= now {
            let _ = self.store.sessions().remove(&key);
            return None;
        }
        Some(s)
    }

    pub fn remove(&self, token: &str) {
        let _ = self.store.sessions().remove(&SessionKey::of_token(token));
        self.bump();
    }

    /// Live sessions and app tokens, by id, oldest first.
    pub fn list(&self, now: UtcMillis) -> Vec<(String, Session)> {
        let all = match self.store.sessions().all() {
            Ok(all) => all,
            Err(e) => {
                tracing::error!(error = %e, "cannot list sessions");
                Vec::new()
            }
        };
        let mut out: Vec<(String, Session)> = all
            .into_iter()
            .filter(|(_, s)| s.expires > now)
            .map(|(k, s)| (k.to_hex(), s))
            .collect();
        out.sort_by_key(|(id, s)| (s.created, id.clone()));
        out
    }

    /// Ends the session with this id; false if there is none.
    pub fn revoke(&self, id: &str) -> Result<Option<Session>, ApiError> {
        let Some(key) = SessionKey::from_hex(id) else {
            return Ok(None);
        };
        let gone = self
            .store
            .sessions()
            .remove(&key)
            .map_err(|e| ApiError::internal(format!("remove session: {e}")))?;
        self.bump();
        Ok(gone)
    }
}

impl crate::retention::Expiring for Sessions {
    /// Sessions expired before `cutoff` (the sweeper passes now), and unreadable records.
    fn expire_before(
        &self,
        cutoff: UtcMillis,
        max: usize,
    ) -> Result<crate::retention::Swept, crate::retention::RetentionError> {
        let s = self.store.sessions().expire_before(cutoff, max)?;
        Ok(crate::retention::Swept {
            records: s.sessions,
            bytes: s.bytes,
            more: s.more,
        })
    }

    fn bytes(&self) -> Result<u64, crate::retention::RetentionError> {
        Ok(self.store.sessions().bytes()?)
    }
}

/// The limiter's key: the login and where the attempt came from. IPv6 sources count per /64
/// (one host commonly holds a whole /64).
type Key = (String, IpAddr);

fn source_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(std::net::Ipv6Addr::from(
            u128::from(v6) & !((1u128 << 64) - 1),
        )),
        v4 => v4,
    }
}

#[derive(Debug, Default)]
struct Entry {
    /// Failures and attempts in flight, oldest first.
    fails: VecDeque<Instant>,
    /// Its position in [`LimiterMap::order`].
    tick: u64,
}

#[derive(Debug, Default)]
struct LimiterMap {
    entries: HashMap<Key, Entry>,
    /// Least recently used first.
    order: BTreeMap<u64, Key>,
    tick: u64,
}

/// Wrong passwords per (login, source address), bounded in memory. An attempt takes its slot
/// ([`Limiter::reserve`]) before the password is checked, under one lock, so concurrent
/// guesses cannot all pass the check before any is counted.
#[derive(Debug)]
pub struct Limiter {
    map: Mutex<LimiterMap>,
    capacity: usize,
    evicted: AtomicU64,
}

impl Default for Limiter {
    fn default() -> Self {
        Self::new(LIMITER_CAPACITY)
    }
}

impl Limiter {
    pub fn new(capacity: usize) -> Self {
        Self {
            map: Mutex::new(LimiterMap::default()),
            capacity: capacity.max(1),
            evicted: AtomicU64::new(0),
        }
    }

    /// Pairs forgotten to stay within capacity.
    pub fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LimiterMap> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a slot for one attempt, or says how many seconds until one frees up. The slot
    /// counts as a failure until the attempt says otherwise.
    pub fn reserve(&self, login: &str, ip: IpAddr) -> Result<Attempt<'_>, u64> {
        self.reserve_at(login, ip, Instant::now())
    }

    fn reserve_at(&self, login: &str, ip: IpAddr, now: Instant) -> Result<Attempt<'_>, u64> {
        let key = (login.to_owned(), source_key(ip));
        let mut g = self.lock();
        let m = &mut *g;
        m.tick += 1;
        let tick = m.tick;
        if !m.entries.contains_key(&key) {
            while m.entries.len() >= self.capacity {
                let Some((_, old)) = m.order.pop_first() else {
                    break;
                };
                m.entries.remove(&old);
                self.evicted.fetch_add(1, Ordering::Relaxed);
            }
        }
        let e = m.entries.entry(key.clone()).or_default();
        m.order.remove(&e.tick);
        e.tick = tick;
        m.order.insert(tick, key.clone());
        while e
            .fails
            .front()
            .is_some_and(|t| now.duration_since(*t) >= WINDOW)
        {
            e.fails.pop_front();
        }
        if e.fails.len() >= MAX_FAILS {
            let first = e.fails.front().copied().unwrap_or(now);
            let left = WINDOW.saturating_sub(now.duration_since(first));
            return Err((left.as_millis().div_ceil(1000) as u64).max(1));
        }
        e.fails.push_back(now);
        Ok(Attempt {
            limiter: self,
            key,
            at: now,
            outcome: None,
        })
    }

    /// Takes the attempt's slot back (it succeeded or was never evaluated).
    fn release(&self, key: &Key, at: Instant, clear: bool) {
        let mut g = self.lock();
        let m = &mut *g;
        let Some(e) = m.entries.get_mut(key) else {
            return;
        };
        if clear {
            e.fails.clear();
        } else if let Some(i) = e.fails.iter().position(|t| *t == at) {
            e.fails.remove(i);
        }
        if e.fails.is_empty() {
            let tick = e.tick;
            m.entries.remove(key);
            m.order.remove(&tick);
        }
    }
}

/// One login attempt holding its limiter slot. A failure keeps the slot; a success clears the
/// pair's failures; an attempt dropped unevaluated (busy, cancelled) gives its slot back.
#[derive(Debug)]
pub struct Attempt<'a> {
    limiter: &'a Limiter,
    key: Key,
    at: Instant,
    outcome: Option<bool>,
}

impl Attempt<'_> {
    pub fn failed(mut self) {
        self.outcome = Some(false);
    }

    pub fn succeeded(mut self) {
        self.outcome = Some(true);
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        match self.outcome {
            Some(false) => {}
            Some(true) => self.limiter.release(&self.key, self.at, true),
            None => self.limiter.release(&self.key, self.at, false),
        }
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// Password checks: the limiter, and argon2 on a fixed set of threads. Each check takes
/// 19 MiB and a core for tens of milliseconds; run on ever-changing blocking-pool threads, the
/// allocator kept that much per thread it ever ran on (hundreds of MB under a flood of
/// logins), so the checks run on their own threads, as many as there are cores, and a login
/// waits for one of them (`ARGON_WAIT` at most) or is answered 503.
#[derive(Debug)]
pub struct Logins {
    pub limiter: Limiter,
    argon: Arc<Semaphore>,
    jobs: Mutex<std::sync::mpsc::Sender<Job>>,
    slots: usize,
}

impl Default for Logins {
    fn default() -> Self {
        Self::new(
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
            LIMITER_CAPACITY,
        )
    }
}

impl Logins {
    pub fn new(argon_slots: usize, limiter_capacity: usize) -> Self {
        let slots = argon_slots.max(1);
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..slots {
            let rx = rx.clone();
            // The threads end when `Logins` is dropped (the channel closes).
            let spawned = std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || {
                    loop {
                        let job = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a password-check thread");
            }
        }
        Self {
            limiter: Limiter::new(limiter_capacity),
            argon: Arc::new(Semaphore::new(slots)),
            jobs: Mutex::new(tx),
            slots,
        }
    }

    /// argon2 checks allowed at once.
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// Runs `f` on a password-check thread once one is free; `None` if none frees up within
    /// [`ARGON_WAIT`] (or the threads are gone).
    async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        let permit = tokio::time::timeout(ARGON_WAIT, self.argon.clone().acquire_owned())
            .await
            .ok()?
            .ok()?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _permit = permit;
            let _ = tx.send(f());
        });
        self.jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(job)
            .ok()?;
        rx.await.ok()
    }
}

/// Where a request comes from: the socket peer, unless the peer is a trusted proxy, in which
/// case `X-Forwarded-For` is read from the right (nearest hop first) for as long as each hop
/// is itself trusted. A hop that does not parse ends the walk: only trusted hops are believed.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[Cidr]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    let mut ip = peer.to_canonical();
    if !is_trusted(ip) {
        return ip;
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    for hop in hops.into_iter().rev() {
        if !is_trusted(ip) {
            break;
        }
        match hop.parse::<IpAddr>() {
            Ok(h) => ip = h.to_canonical(),
            Err(_) => break,
        }
    }
    ip
}

/// The authenticated user of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: Arc<User>,
    pub via: Via,
    pub csrf: Option<String>,
    pub token: String,
    /// When the session ends by itself.
    pub expires: UtcMillis,
}

impl Caller {
    pub fn is_admin(&self) -> bool {
        self.user.role == UserRole::Admin
    }

    pub fn role(&self) -> UserRole {
        self.user.role
    }

    /// Whether the case's path passes through one of the user's cells.
    pub fn sees_path(&self, path: &[CellRef]) -> bool {
        self.is_admin() || path.iter().any(|c| self.user.cells.contains(&c.code))
    }

    /// Whether the case is the user's to see: its path passes through one of their cells, or
    /// a department (or cell) of theirs works on it.
    pub fn sees(&self, case: &CaseSummary) -> bool {
        self.sees_path(&case.path) || case.units.iter().any(|u| self.user.cells.contains(u))
    }

    /// The user's cell and department codes (what [`crate::case::Standing::of`] weighs).
    pub fn units(&self) -> impl Iterator<Item = &str> {
        self.user.cells.iter().map(String::as_str)
    }

    /// The user's cells for scanning the book.
    pub fn scope(&self, book: &crate::book::CaseBook) -> crate::book::Scope {
        book.scope(self.is_admin(), &self.user.cells)
    }

    /// The deepest of the user's cells on `path` (the cell they act for).
    pub fn acting_cell(&self, path: &[CellRef]) -> Option<String> {
        path.iter()
            .rev()
            .find(|c| self.user.cells.contains(&c.code))
            .map(|c| c.code.clone())
    }

    pub fn require(&self, roles: &[UserRole], what: &str) -> Result<(), ApiError> {
        if roles.contains(&self.user.role) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "a {} may not {what}",
                self.user.role.as_str()
            )))
        }
    }
}

fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_owned())
}

fn bearer_token(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

/// Byte-wise comparison that takes the same time wherever the first difference is.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl FromRequestParts<Arc<ApiState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<ApiState>,
    ) -> Result<Self, Self::Rejection> {
        let now = state.clock.now();
        let (token, via) = match (bearer_token(&parts.headers), cookie_token(&parts.headers)) {
            (Some(t), _) => (t, Via::Bearer),
            (None, Some(t)) => (t, Via::Cookie),
            (None, None) => {
                return Err(ApiError::unauthenticated(
                    "log in first (session cookie or Authorization: Bearer)",
                ));
            }
        };
        let session = state
            .sessions
            .get(&token, now)
            .filter(|s| s.via == via)
            .ok_or_else(|| ApiError::unauthenticated("session expired or unknown; log in again"))?;
        let users = state.users.current();
        let user = users
            .get(&session.login)
            .ok_or_else(|| ApiError::unauthenticated("user no longer exists"))?;
        let unsafe_method = !matches!(
            parts.method,
            Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
        );
        if via == Via::Cookie && unsafe_method {
            let sent = parts
                .headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !same(sent, &session.csrf) {
                super::bump_csrf(state);
                return Err(ApiError::csrf());
            }
        }
        Ok(Caller {
            user: Arc::new(user.clone()),
            via,
            csrf: (via == Via::Cookie).then_some(session.csrf),
            token,
            expires: session.expires,
        })
    }
}

/// A login (`/auth/login`) or an app token's request (`/auth/tokens`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = LoginRequest)]
pub struct LoginBody {
    #[schema(min_length = 1)]
    pub username: String,
    pub password: String,
    /// App tokens: a name to tell it by in the session list.
    #[serde(default)]
    pub label: String,
    /// App tokens only: how long the token lasts, days (default `http.token_days`, 30).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 365)]
    pub expires_in_days: Option<u32>,
}

/// The caller as `/me` and login show them.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Me<'a> {
    id: &'a str,
    name: &'a str,
    role: UserRole,
    /// Roster person id.
    #[schema(required = true)]
    person: Option<&'a str>,
    cells: Vec<CellRef>,
    /// CSRF token of the cookie session; null for bearer auth.
    #[schema(required = true)]
    csrf: Option<&'a str>,
}

impl<'a> Me<'a> {
    pub fn new(state: &ApiState, user: &'a User, csrf: Option<&'a str>) -> Self {
        // Cells, and departments (which the roster knows, not the grid), as cases name them.
        let roster = state.roster.current();
        let cells: Vec<CellRef> = user
            .cells
            .iter()
            .filter_map(|c| crate::dispatch::unit_ref(&state.grid, &roster, c))
            .collect();
        Self {
            id: &user.login,
            name: &user.name,
            role: user.role,
            person: user.person.as_deref(),
            cells,
            csrf,
        }
    }
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginResponse<'a> {
    user: Me<'a>,
    #[schema(min_length = 1)]
    csrf: &'a str,
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenResponse {
    #[schema(min_length = 1)]
    token: String,
    expires_at: UtcMillis,
}

/// A live browser session or app token, as admins see it.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionInfo {
    /// SHA-256 of the token, hex: names the session, cannot act as it.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    id: String,
    login: String,
    via: Via,
    label: String,
    created: UtcMillis,
    expires: UtcMillis,
    /// The session of this request.
    current: bool,
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionList {
    sessions: Vec<SessionInfo>,
}

/// Checks a login: bounded username, a limiter slot for (login, source), an argon2 slot, then
/// the password off the async workers.
async fn authenticate(
    state: &Arc<ApiState>,
    peer: SocketAddr,
    headers: &HeaderMap,
    body: LoginBody,
) -> Result<Arc<User>, ApiError> {
    if body.username.len() > MAX_USERNAME_BYTES {
        return Err(ApiError::invalid(
            "username",
            format!("at most {MAX_USERNAME_BYTES} bytes"),
        ));
    }
    if body.password.len() > MAX_PASSWORD_BYTES {
        return Err(ApiError::invalid(
            "password",
            format!("at most {MAX_PASSWORD_BYTES} bytes"),
        ));
    }
    let ip = client_ip(peer.ip(), headers, &state.http.trusted_proxies);
    let logins = &state.logins;
    let reserved = logins.limiter.reserve(&body.username, ip);
    // The limiter counts its own evictions; /metrics shows the latest figure.
    state
        .api_metrics
        .login_limiter_evicted
        .store(logins.limiter.evicted(), Ordering::Relaxed);
    let attempt = match reserved {
        Ok(a) => a,
        Err(wait) => {
            state
                .api_metrics
                .login_rate_limited
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(login = %body.username, %ip, "login refused: too many failures");
            return Err(ApiError::rate_limited(wait));
        }
    };
    let users = state.users.current();
    let login = body.username.clone();
    let checked = logins
        .run(move || {
            users
                .check(&login, &body.password)
                .map(|u| Arc::new(u.clone()))
        })
        .await;
    let Some(user) = checked else {
        state.api_metrics.login_busy.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(%ip, "login refused: password checks busy");
        return Err(ApiError::busy(1));
    };
    match user {
        Some(u) => {
            attempt.succeeded();
            Ok(u)
        }
        None => {
            attempt.failed();
            tracing::warn!(login = %body.username, %ip, "login failed");
            Err(ApiError::unauthenticated("wrong login or password"))
        }
    }
}

/// Log in with a password; sets the session cookie.
#[utoipa::path(post, path = "/api/v1/auth/login", operation_id = "login", tag = "auth",
    request_body = LoginBody,
    security(()),
    responses(
        (status = 200, description = "Logged in.", body = LoginResponse,
            headers(("Set-Cookie" = String, description = "`hub_session=<opaque>; HttpOnly; SameSite=Strict; Path=/`"))),
        (status = 400, response = super::doc::Invalid),
        (status = 401, response = super::doc::Unauthenticated),
        (status = 429, response = super::doc::RateLimited),
        (status = 503, response = super::doc::Busy),
        (status = "default", response = super::doc::Failure),
    ))]
pub async fn login(
    State(state): State<Arc<ApiState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Json<LoginBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(|e| ApiError::invalid("body", e.body_text()))?;
    if body.expires_in_days.is_some() {
        return Err(ApiError::invalid(
            "expires_in_days",
            "only app tokens (POST /api/v1/auth/tokens) choose their expiry",
        ));
    }
    let user = authenticate(&state, peer, &headers, body).await?;
    let now = state.clock.now();
    let (token, session) = state
        .sessions
        .create(&user.login, Via::Cookie, "", None, now)?;
    tracing::info!(login = %user.login, role = user.role.as_str(), "logged in");
    let secure = if state.http.secure_cookie {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}",
        state.http.session_hours * 3600
    );
    let mut r = Json(LoginResponse {
        user: Me::new(&state, &user, Some(&session.csrf)),
        csrf: &session.csrf,
    })
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(r)
}

/// A bearer token for an app (`Authorization: Bearer <token>`).
#[utoipa::path(post, path = "/api/v1/auth/tokens", operation_id = "createToken", tag = "auth",
    request_body = LoginBody,
    security(()),
    responses(
        (status = 201, description = "Token issued.", body = TokenResponse),
        (status = 400, response = super::doc::Invalid),
        (status = 401, response = super::doc::Unauthenticated),
        (status = 429, response = super::doc::RateLimited),
        (status = 503, response = super::doc::Busy),
        (status = "default", response = super::doc::Failure),
    ))]
pub async fn token(
    State(state): State<Arc<ApiState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Json<LoginBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(|e| ApiError::invalid("body", e.body_text()))?;
    let label = body.label.clone();
    let days = body.expires_in_days.unwrap_or(state.http.token_days);
    if !(1..=MAX_TOKEN_DAYS).contains(&days) {
        return Err(ApiError::invalid(
            "expires_in_days",
            format!("{days} is outside 1..={MAX_TOKEN_DAYS}"),
        ));
    }
    let user = authenticate(&state, peer, &headers, body).await?;
    let now = state.clock.now();
    let (token, session) =
        state
            .sessions
            .create(&user.login, Via::Bearer, &label, Some(days), now)?;
    tracing::info!(login = %user.login, label, days, "app token issued");
    Ok((
        StatusCode::CREATED,
        Json(TokenResponse {
            token,
            expires_at: session.expires,
        }),
    )
        .into_response())
}

/// Deletes the session and clears the cookie.
#[utoipa::path(post, path = "/api/v1/auth/logout", operation_id = "logout", tag = "auth",
    security(("cookieAuth" = [], "csrfToken" = []), ("bearerAuth" = [])),
    responses(
        (status = 204, description = "Logged out.",
            headers(("Set-Cookie" = String, description = "Clears `hub_session`."))),
        (status = 403, response = super::doc::Forbidden),
        super::doc::Authenticated,
    ))]
pub async fn logout(State(state): State<Arc<ApiState>>, caller: Caller) -> Response {
    state.sessions.remove(&caller.token);
    tracing::info!(login = %caller.user.login, "logged out");
    let mut r = StatusCode::NO_CONTENT.into_response();
    if caller.via == Via::Cookie
        && let Ok(v) = HeaderValue::from_str(&format!(
            "{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"
        ))
    {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// Every live browser session and app token (admin).
#[utoipa::path(get, path = "/api/v1/sessions", operation_id = "listSessions", tag = "auth",
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses(
        (status = 200, description = "Sessions, oldest first.", body = SessionList),
        (status = 403, response = super::doc::Forbidden),
        super::doc::Authenticated,
    ))]
pub async fn sessions_list(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
) -> Result<Json<SessionList>, ApiError> {
    caller.require(&[UserRole::Admin], "list sessions")?;
    let own = Sessions::id_of(&caller.token);
    let sessions = state
        .sessions
        .list(state.clock.now())
        .into_iter()
        .map(|(id, s)| SessionInfo {
            current: id == own,
            id,
            login: s.login,
            via: s.via,
            label: s.label,
            created: s.created,
            expires: s.expires,
        })
        .collect();
    Ok(Json(SessionList { sessions }))
}

/// Ends a session or app token now; its live feeds close within a second (admin).
#[utoipa::path(delete, path = "/api/v1/sessions/{id}", operation_id = "revokeSession", tag = "auth",
    params(("id" = String, Path, description = "Session id from the list.", min_length = 1)),
    security(("cookieAuth" = [], "csrfToken" = []), ("bearerAuth" = [])),
    responses(
        (status = 204, description = "Revoked."),
        (status = 400, response = super::doc::Invalid),
        (status = 403, response = super::doc::Forbidden),
        (status = 404, response = super::doc::NotFound),
        super::doc::Authenticated,
    ))]
pub async fn session_revoke(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(&[UserRole::Admin], "revoke sessions")?;
    if SessionKey::from_hex(&id).is_none() {
        return Err(ApiError::invalid(
            "id",
            "a session id is 64 lower-case hex digits",
        ));
    }
    match state.sessions.revoke(&id)? {
        Some(s) => {
            tracing::info!(by = %caller.user.login, login = %s.login, via = ?s.via, "session revoked");
            Ok(StatusCode::NO_CONTENT)
        }
        None => Err(ApiError::not_found("no such session")),
    }
}

/// The caller.
#[utoipa::path(get, path = "/api/v1/me", operation_id = "me", tag = "auth",
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses(
        (status = 200, description = "The caller.", body = Me),
        super::doc::Authenticated,
    ))]
pub async fn me(State(state): State<Arc<ApiState>>, caller: Caller) -> Response {
    Json(Me::new(&state, &caller.user, caller.csrf.as_deref())).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn slots_are_taken_before_the_check_and_a_success_from_elsewhere_is_unaffected() {
        let l = Limiter::default();
        let t0 = Instant::now();
        // Five attempts in flight at once already fill the pair's slots.
        let held: Vec<_> = (0..MAX_FAILS)
            .map(|_| l.reserve_at("admin", ip("10.0.0.1"), t0).unwrap())
            .collect();
        let wait = l.reserve_at("admin", ip("10.0.0.1"), t0).unwrap_err();
        assert_eq!(wait, WINDOW.as_secs());
        // Another address, same login: its own slots.
        l.reserve_at("admin", ip("10.0.0.2"), t0)
            .unwrap()
            .succeeded();
        held.into_iter().for_each(Attempt::failed);
        l.reserve_at("admin", ip("10.0.0.1"), t0).unwrap_err();
        // The window passes.
        l.reserve_at("admin", ip("10.0.0.1"), t0 + WINDOW)
            .unwrap()
            .failed();
    }

    #[test]
    fn an_unevaluated_attempt_gives_its_slot_back_and_a_success_clears_the_pair() {
        let l = Limiter::default();
        let a = ip("10.0.0.1");
        for _ in 0..MAX_FAILS - 1 {
            l.reserve("u", a).unwrap().failed();
        }
        drop(l.reserve("u", a).unwrap());
        l.reserve("u", a).unwrap().succeeded();
        assert!(l.is_empty());
        for _ in 0..MAX_FAILS {
            l.reserve("u", a).unwrap().failed();
        }
        assert!(l.reserve("u", a).is_err());
    }

    #[test]
    fn memory_is_bounded_by_evicting_the_least_recently_used_pair() {
        let l = Limiter::new(3);
        for n in 0..10 {
            l.reserve(&format!("u{n}"), ip("10.0.0.1"))
                .unwrap()
                .failed();
        }
        assert_eq!((l.len(), l.evicted()), (3, 7));
        // An IPv6 source counts per /64.
        let l = Limiter::default();
        for n in 0..MAX_FAILS {
            l.reserve("u", ip(&format!("2001:db8::{n:x}")))
                .unwrap()
                .failed();
        }
        assert!(l.reserve("u", ip("2001:db8::ffff:1")).is_err());
        assert!(l.reserve("u", ip("2001:db8:0:1::1")).is_ok());
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_hops() {
        let trusted: Vec<Cidr> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "6.6.6.6, 203.0.113.9".parse().unwrap());
        // An untrusted peer: its header is ignored.
        assert_eq!(
            client_ip(ip("198.51.100.1"), &h, &trusted),
            ip("198.51.100.1")
        );
        // A trusted proxy: the nearest untrusted hop (the client may prepend anything).
        assert_eq!(client_ip(ip("10.0.0.5"), &h, &trusted), ip("203.0.113.9"));
        h.insert("x-forwarded-for", "6.6.6.6, 10.1.1.1".parse().unwrap());
        assert_eq!(client_ip(ip("10.0.0.5"), &h, &trusted), ip("6.6.6.6"));
        h.insert("x-forwarded-for", "junk".parse().unwrap());
        assert_eq!(client_ip(ip("10.0.0.5"), &h, &trusted), ip("10.0.0.5"));
        assert_eq!(
            client_ip(ip("10.0.0.5"), &HeaderMap::new(), &[]),
            ip("10.0.0.5")
        );
    }
}
