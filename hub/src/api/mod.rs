//! The dashboard and its HTTP API (`/api/v1`), served by [`serve`].
//!
//! ```text
//! browser / app ──HTTP──▶ router ──▶ Caller (session cookie + CSRF, or bearer) ──▶ handler
//!                                                                   │ reads: CaseBook (memory), Store
//!                                                                   │ writes: DispatchHandle (transitions,
//!                                                                   │   watchlist, silences), Ingest (patrol reports,
//!                                                                   │   quarantine re-ingest / delete)
//!                          /api/v1/events ◀── CaseBook's broadcast (SSE, catch-up by Last-Event-ID)
//! ```
//!
//! Every route but login, token and the OpenAPI document needs a caller, and every case,
//! cell, site and photo is checked against the caller's cells.
//!
//! The OpenAPI document is generated (utoipa, `doc.rs`) from the handlers' `#[utoipa::path]`
//! attributes and the request and response types they use, so it cannot drift from the code;
//! [`openapi_json`] renders it once, `/api/v1/openapi.json` serves it, and
//! the tests validate real responses against it.

mod admin;
mod auth;
mod cases;
mod doc;
mod error;
mod feed;
mod params;
mod places;
mod quarantine;
mod silences;
mod web;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use auth::{COOKIE, CSRF_HEADER, Limiter, Logins, Sessions, client_ip};
pub use doc::openapi_json;
pub use error::ApiError;

/// Rows per page of a list when `limit=` is absent, and the most it may ask for.
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 500;

use crate::book::CaseBook;
use crate::config::{HttpSection, SiteSection};
use crate::dispatch::{Clock, DispatchHandle};
use crate::grid::GridIndex;
use crate::ingest::Ingest;
use crate::metrics::HubMetrics;
use crate::roster::Roster;
use crate::store::Store;
use crate::users::Users;

/// Largest request body: a 2 MB photo as base64 plus the rest.
const MAX_BODY: usize = 3 * 1024 * 1024;

/// Counters the API adds to `/metrics`.
#[derive(Debug, Default)]
pub struct ApiMetrics {
    pub requests: AtomicU64,
    pub csrf_refused: AtomicU64,
    pub feed_resets: AtomicU64,
    pub feed_clients: AtomicU64,
    pub login_rate_limited: AtomicU64,
    pub login_busy: AtomicU64,
    /// The limiter's evictions, read from it at render time.
    pub login_limiter_evicted: AtomicU64,
}

impl infra::metrics::Collector for ApiMetrics {
    fn encode(&self, enc: infra::metrics::DescriptorEncoder<'_>) -> std::fmt::Result {
        let mut f = infra::metrics::Families::new(enc);
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        for (name, help, v) in [
            (
                "hub_api_csrf_refused",
                "Unsafe requests refused for a missing or wrong CSRF token.",
                &self.csrf_refused,
            ),
            (
                "hub_api_feed_resets",
                "Live-feed clients told to reload because they fell behind.",
                &self.feed_resets,
            ),
            (
                "hub_api_login_rate_limited",
                "Logins refused: too many wrong passwords from that address for that login.",
                &self.login_rate_limited,
            ),
            (
                "hub_api_login_busy",
                "Logins refused because every password-check slot stayed busy.",
                &self.login_busy,
            ),
            (
                "hub_api_login_limiter_evicted",
                "Login limiter entries forgotten to bound its memory.",
                &self.login_limiter_evicted,
            ),
        ] {
            f.counter(name, help, g(v))?;
        }
        f.gauge(
            "hub_api_feed_clients",
            "Live-feed connections open.",
            g(&self.feed_clients),
        )
    }
}

/// Everything the handlers share.
#[derive(Debug)]
pub struct ApiState {
    pub book: Arc<CaseBook>,
    pub dispatch: DispatchHandle,
    pub store: Store,
    pub grid: Arc<GridIndex>,
    /// Replaced whole on `hub reload` ([`crate::live`]).
    pub roster: Arc<crate::live::Live<Roster>>,
    /// Replaced whole on `hub reload` ([`crate::live`]).
    pub users: Arc<crate::live::Live<Users>>,
    pub sites: BTreeMap<String, SiteSection>,
    pub ingest: Ingest,
    pub sessions: Sessions,
    pub logins: Logins,
    pub clock: Arc<dyn Clock>,
    pub http: HttpSection,
    pub metrics: Arc<HubMetrics>,
    pub api_metrics: Arc<ApiMetrics>,
    /// The grid as GeoJSON, built once.
    pub grid_geojson: serde_json::Value,
    /// Ids for patrol reports.
    pub ids: protocol::alert::IdGenerator,
    /// Turns true when the hub stops: live feeds end so the server can drain.
    pub stop: watch::Receiver<bool>,
    /// The 红黑榜's weights.
    pub ranking: crate::config::RankingSection,
    /// `[registry] clock_tolerance_s`, in ms: a site's clock further off is flagged.
    pub clock_tolerance_ms: i64,
    /// `POST /api/v1/admin/reload`.
    pub reloader: Arc<crate::reload::Reloader>,
}

/// The grid as the API serves it: the import format (`properties.id`, `name`, `level`,
/// `parent`) plus `properties.code`, the name the rest of the API uses for a cell's id.
pub fn grid_geojson(h: &crate::grid::Hierarchy) -> serde_json::Value {
    let mut doc = crate::grid::geojson::to_value(h);
    if let Some(features) = doc.get_mut("features").and_then(|f| f.as_array_mut()) {
        for f in features {
            if let Some(id) = f.pointer("/properties/id").cloned()
                && let Some(p) = f.get_mut("properties").and_then(|p| p.as_object_mut())
            {
                p.insert("code".into(), id);
            }
        }
    }
    doc
}

pub(crate) fn bump_csrf(state: &ApiState) {
    state
        .api_metrics
        .csrf_refused
        .fetch_add(1, Ordering::Relaxed);
}

/// Every route. (The OpenAPI test checks this list against the document.)
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/auth/logout"),
    ("POST", "/api/v1/auth/tokens"),
    ("GET", "/api/v1/me"),
    ("GET", "/api/v1/sessions"),
    ("DELETE", "/api/v1/sessions/{id}"),
    ("GET", "/api/v1/cases"),
    ("GET", "/api/v1/cases/{id}"),
    ("POST", "/api/v1/cases/{id}/actions"),
    ("GET", "/api/v1/alerts/{id}/snapshot"),
    ("GET", "/api/v1/photos/{id}"),
    ("POST", "/api/v1/reports"),
    ("GET", "/api/v1/grid"),
    ("GET", "/api/v1/cells/{code}"),
    ("GET", "/api/v1/sites"),
    ("GET", "/api/v1/departments"),
    ("GET", "/api/v1/watchlist"),
    ("POST", "/api/v1/watchlist"),
    ("DELETE", "/api/v1/watchlist/{tag}"),
    ("GET", "/api/v1/watchlist/audit"),
    ("GET", "/api/v1/silences"),
    ("POST", "/api/v1/silences"),
    ("POST", "/api/v1/silences/{id}/end"),
    ("GET", "/api/v1/silences/audit"),
    ("GET", "/api/v1/tags/{tag}/trajectory"),
    ("GET", "/api/v1/stats"),
    ("GET", "/api/v1/stats.csv"),
    ("GET", "/api/v1/stats.xlsx"),
    ("GET", "/api/v1/quarantine"),
    ("GET", "/api/v1/quarantine/{id}/raw"),
    ("POST", "/api/v1/quarantine/{id}/reingest"),
    ("DELETE", "/api/v1/quarantine/{id}"),
    ("POST", "/api/v1/admin/reload"),
    ("GET", "/api/v1/events"),
    ("GET", "/api/v1/config/ui"),
    ("GET", "/api/v1/openapi.json"),
];

pub fn router(state: Arc<ApiState>) -> Router {
    let api = Router::new()
        .route("/auth/login", post(auth::login))
        .route("/auth/logout", post(auth::logout))
        .route("/auth/tokens", post(auth::token))
        .route("/me", get(auth::me))
        .route("/sessions", get(auth::sessions_list))
        .route("/sessions/{id}", delete(auth::session_revoke))
        .route("/cases", get(cases::list))
        .route("/cases/{id}", get(cases::detail))
        .route("/cases/{id}/actions", post(cases::act))
        .route("/alerts/{id}/snapshot", get(cases::snapshot))
        .route("/photos/{id}", get(cases::photo))
        .route("/reports", post(cases::report))
        .route("/grid", get(places::grid))
        .route("/cells/{code}", get(places::cell))
        .route("/sites", get(places::sites))
        .route("/departments", get(places::departments))
        .route("/watchlist", get(places::watchlist).post(places::watch_add))
        .route("/watchlist/audit", get(places::watch_audit))
        .route("/watchlist/{tag}", delete(places::watch_remove))
        .route("/silences", get(silences::list).post(silences::create))
        .route("/silences/audit", get(silences::audit))
        .route("/silences/{id}/end", post(silences::end))
        .route("/tags/{tag}/trajectory", get(places::trajectory))
        .route("/stats", get(places::stats))
        .route("/stats.csv", get(places::stats_csv))
        .route("/stats.xlsx", get(places::stats_xlsx))
        .route("/quarantine", get(quarantine::list))
        .route("/quarantine/{id}/raw", get(quarantine::raw))
        .route("/quarantine/{id}/reingest", post(quarantine::reingest))
        .route("/quarantine/{id}", delete(quarantine::remove))
        .route("/admin/reload", post(admin::reload))
        .route("/events", get(feed::events))
        .route("/config/ui", get(places::ui_config))
        .route("/openapi.json", get(web::openapi))
        .fallback(web::api_not_found);
    Router::new()
        .nest("/api/v1", api)
        .route("/", get(web::index))
        .route("/m", get(web::member))
        .route("/assets/{*path}", get(web::asset))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            web::headers,
        ))
        .with_state(state)
}

/// Binds the listener and serves until `state.stop` turns true. Returns the bound address
/// and the task serving it, which ends once open requests (and live feeds) have drained, so
/// a caller that waits for it knows the store is no longer held.
pub async fn serve(
    state: Arc<ApiState>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(state.http.listen).await?;
    let addr = listener.local_addr()?;
    let mut stop = state.stop.clone();
    let app = router(state);
    let server = async move {
        let served = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "HTTP server stopped");
        }
    };
    // Expired sessions are dropped by the retention sweeper (they are refused on use anyway).
    let task = tokio::spawn(server);
    tracing::info!(%addr, "http listening");
    Ok((addr, task))
}
