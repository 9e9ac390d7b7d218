//! The dashboard's files, embedded in the binary (`hub/web/`), and the headers every response
//! carries.

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiState;
use super::error::ApiError;

#[derive(rust_embed::Embed)]
#[folder = "web/"]
struct Web;

fn file(path: &str, headers: &HeaderMap) -> Response {
    let Some(f) = Web::get(path) else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let etag = format!("\"{}\"", hex(&f.metadata.sha256_hash()[..12]));
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == etag)
    {
        return StatusCode::NOT_MODIFIED.into_response();
    }
    let mime = f.metadata.mimetype().to_owned();
    let mut r = f.data.into_owned().into_response();
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&mime) {
        h.insert(header::CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    // Revalidated every time (cheap: a 304 by ETag), so a new hub never serves stale files.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Operator dashboard (HTML).
#[utoipa::path(get, path = "/", operation_id = "dashboard", tag = "pages", security(()),
    responses((status = 200, description = "The page.", content_type = "text/html", body = String)))]
pub async fn index(headers: HeaderMap) -> Response {
    file("index.html", &headers)
}

/// Grid-member page (HTML).
#[utoipa::path(get, path = "/m", operation_id = "memberPage", tag = "pages", security(()),
    responses((status = 200, description = "The page.", content_type = "text/html", body = String)))]
pub async fn member(headers: HeaderMap) -> Response {
    file("m.html", &headers)
}

/// Embedded static file (revalidated by ETag).
#[utoipa::path(get, path = "/assets/{file}", operation_id = "asset", tag = "pages", security(()),
    params(("file" = String, Path, description = "File name.", min_length = 1)),
    responses(
        (status = 200, description = "The file.", content_type = "*/*", body = String,
            headers(("Cache-Control" = String), ("ETag" = String))),
        (status = 404, description = "No such file.", content_type = "text/plain", body = String),
    ))]
pub async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    if path.contains("..") {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    }
    file(&format!("assets/{path}"), &headers)
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", operation_id = "openapi", tag = "meta", security(()),
    responses((status = 200, description = "OpenAPI 3.1.", body = Object)))]
pub async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        super::openapi_json(),
    )
        .into_response()
}

pub async fn api_not_found() -> ApiError {
    ApiError::not_found("no such API route")
}

/// Security headers on every response: no framing, no sniffing, no referrer, and a content
/// policy that allows only the hub's own scripts (and a configured tile server's images).
pub async fn headers(State(state): State<Arc<ApiState>>, req: Request, next: Next) -> Response {
    state
        .api_metrics
        .requests
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut r = next.run(req).await;
    let tiles = state
        .http
        .tile_url
        .as_deref()
        .and_then(origin)
        .unwrap_or_default();
    let csp = format!(
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
         img-src 'self' data: blob: {tiles}; connect-src 'self'; frame-ancestors 'none'; \
         base-uri 'none'; form-action 'self'"
    );
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

/// `http://tiles.lan:8080/{z}/…` → `http://tiles.lan:8080`.
fn origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let host = rest.split('/').next()?;
    Some(format!("{scheme}://{host}"))
}
