//! Who is asking ([`Caller`]) and what they may see.
//!
//! Browsers log in for a session cookie (`hub_session`, HttpOnly, SameSite=Strict) plus a CSRF
//! token they must echo in `X-CSRF-Token` on every unsafe request; apps log in for a bearer
//! token (no cookie, so no CSRF). Both are random 256-bit tokens stored only as SHA-256 in the
//! `sessions` tree, with an expiry. Failed logins are limited per login and per address.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use protocol::UtcMillis;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::ApiState;
use super::error::ApiError;
use crate::book::CaseSummary;
use crate::case::CellRef;
use crate::store::Store;
use crate::users::{User, UserRole};

pub const COOKIE: &str = "hub_session";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Failed logins allowed per login within [`WINDOW`]…
const PER_LOGIN: usize = 5;
/// …and per client address (many logins from one place).
const PER_ADDR: usize = 20;
const WINDOW: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    Cookie,
    Bearer,
}

/// A stored session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    pub login: String,
    pub via: Via,
    pub csrf: String,
    pub created: UtcMillis,
    pub expires: UtcMillis,
    #[serde(default)]
    pub label: String,
}

fn digest(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Sessions in the store.
#[derive(Debug, Clone)]
pub struct Sessions {
    store: Store,
    ttl_ms: i64,
}

impl Sessions {
    pub fn new(store: Store, hours: u64) -> Self {
        Self {
            store,
            ttl_ms: (hours * 3_600_000) as i64,
        }
    }

    /// A new session; returns its token (shown once) and the session.
    pub fn create(
        &self,
        login: &str,
        via: Via,
        label: &str,
        now: UtcMillis,
    ) -> Result<(String, Session), ApiError> {
        let token = crate::random::token();
        let s = Session {
            login: login.to_owned(),
            via,
            csrf: crate::random::token(),
            created: now,
            expires: UtcMillis(now.0 + self.ttl_ms),
            label: label.to_owned(),
        };
        let v = serde_json::to_vec(&s).map_err(|e| ApiError::internal(e.to_string()))?;
        self.store
            .sessions
            .insert(digest(&token), v)
            .map_err(|e| ApiError::internal(format!("store session: {e}")))?;
        Ok((token, s))
    }

    pub fn get(&self, token: &str, now: UtcMillis) -> Option<Session> {
        let v = self.store.sessions.get(digest(token)).ok()??;
        let s: Session = serde_json::from_slice(&v).ok()?;
        if s.expires <= now {
            let _ = self.store.sessions.remove(digest(token));
            return None;
        }
        Some(s)
    }

    pub fn remove(&self, token: &str) {
        let _ = self.store.sessions.remove(digest(token));
    }

    /// Drops expired sessions (called now and then).
    pub fn sweep(&self, now: UtcMillis) -> usize {
        let mut gone = 0;
        for (k, v) in self.store.sessions.iter().flatten() {
            let expired = serde_json::from_slice::<Session>(&v).map_or(true, |s| s.expires <= now);
            if expired && self.store.sessions.remove(k).is_ok() {
                gone += 1;
            }
        }
        gone
    }
}

/// Failed-login counter per login and per address.
#[derive(Debug, Default)]
pub struct Limiter {
    fails: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl Limiter {
    fn keys(login: &str, addr: IpAddr) -> [(String, usize); 2] {
        [
            (format!("login:{login}"), PER_LOGIN),
            (format!("addr:{addr}"), PER_ADDR),
        ]
    }

    /// Seconds until another attempt is allowed, if the limit is reached.
    pub fn blocked(&self, login: &str, addr: IpAddr) -> Option<u64> {
        let now = Instant::now();
        let mut g = self.fails.lock().unwrap_or_else(|e| e.into_inner());
        let mut wait = None;
        for (k, max) in Self::keys(login, addr) {
            if let Some(q) = g.get_mut(&k) {
                while q.front().is_some_and(|t| now.duration_since(*t) >= WINDOW) {
                    q.pop_front();
                }
                if q.len() >= max
                    && let Some(first) = q.front()
                {
                    let left = WINDOW.saturating_sub(now.duration_since(*first)).as_secs() + 1;
                    wait = Some(wait.map_or(left, |w: u64| w.max(left)));
                }
            }
        }
        wait
    }

    pub fn failed(&self, login: &str, addr: IpAddr) {
        let mut g = self.fails.lock().unwrap_or_else(|e| e.into_inner());
        for (k, _) in Self::keys(login, addr) {
            g.entry(k).or_default().push_back(Instant::now());
        }
    }

    pub fn succeeded(&self, login: &str) {
        let mut g = self.fails.lock().unwrap_or_else(|e| e.into_inner());
        g.remove(&format!("login:{login}"));
    }
}

/// The authenticated user of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: Arc<User>,
    pub via: Via,
    pub csrf: Option<String>,
    pub token: String,
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

    pub fn sees(&self, case: &CaseSummary) -> bool {
        self.sees_path(&case.path)
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
        let user = state
            .users
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
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    pub username: String,
    pub password: String,
    #[serde(default)]
    pub label: String,
}

/// The caller as `/me` and login show them.
pub fn me_json(state: &ApiState, user: &User, csrf: Option<&str>) -> serde_json::Value {
    let g = state.grid.hierarchy();
    let cells: Vec<CellRef> = user
        .cells
        .iter()
        .filter_map(|c| g.find(c).and_then(|id| g.get(id)))
        .map(|c| CellRef::new(c.code(), c.name(), c.level()))
        .collect();
    json!({
        "id": user.login,
        "name": user.name,
        "role": user.role,
        "person": user.person,
        "cells": cells,
        "csrf": csrf,
    })
}

fn check_login(state: &ApiState, addr: IpAddr, body: &LoginBody) -> Result<Arc<User>, ApiError> {
    if let Some(wait) = state.limiter.blocked(&body.username, addr) {
        tracing::warn!(login = %body.username, %addr, "login refused: too many failures");
        return Err(ApiError::rate_limited(wait));
    }
    match state.users.check(&body.username, &body.password) {
        Some(u) => {
            state.limiter.succeeded(&body.username);
            Ok(Arc::new(u.clone()))
        }
        None => {
            state.limiter.failed(&body.username, addr);
            tracing::warn!(login = %body.username, %addr, "login failed");
            Err(ApiError::unauthenticated("wrong login or password"))
        }
    }
}

pub async fn login(
    State(state): State<Arc<ApiState>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    body: Result<Json<LoginBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(|e| ApiError::invalid("body", e.body_text()))?;
    let st = state.clone();
    let ip = addr.ip();
    // argon2 takes tens of milliseconds of CPU: off the async workers.
    let user = tokio::task::spawn_blocking(move || check_login(&st, ip, &body))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
    let now = state.clock.now();
    let (token, session) = state.sessions.create(&user.login, Via::Cookie, "", now)?;
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
    let mut r = Json(json!({
        "user": me_json(&state, &user, Some(&session.csrf)),
        "csrf": session.csrf,
    }))
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(r)
}

pub async fn token(
    State(state): State<Arc<ApiState>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    body: Result<Json<LoginBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(|e| ApiError::invalid("body", e.body_text()))?;
    let label = body.label.clone();
    let st = state.clone();
    let ip = addr.ip();
    let user = tokio::task::spawn_blocking(move || check_login(&st, ip, &body))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
    let now = state.clock.now();
    let (token, session) = state
        .sessions
        .create(&user.login, Via::Bearer, &label, now)?;
    tracing::info!(login = %user.login, label, "app token issued");
    Ok((
        StatusCode::CREATED,
        Json(json!({"token": token, "expires_at": session.expires})),
    )
        .into_response())
}

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

pub async fn me(State(state): State<Arc<ApiState>>, caller: Caller) -> Json<serde_json::Value> {
    Json(me_json(&state, &caller.user, caller.csrf.as_deref()))
}
