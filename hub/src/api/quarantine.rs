//! The quarantine for admins: alert payloads the hub refused, listed newest first, their raw
//! bytes, re-ingest after a fix, delete. Admins only: a refused payload is whatever a
//! (possibly hostile) site sent, so nobody else gets to read it.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use protocol::UtcMillis;
use serde::Serialize;
use utoipa::ToSchema;

use super::ApiState;
use super::auth::Caller;
use super::error::ApiError;
use super::params::{PageQuery, Params};
use crate::ingest::{Reingested, RejectCode};
use crate::store::{QuarantineEntry, QuarantineId};
use crate::users::UserRole;

/// Characters of a payload shown in the list.
const PREVIEW_CHARS: usize = 120;

fn id_of(v: &str) -> Result<QuarantineId, ApiError> {
    v.parse()
        .map_err(|_| ApiError::invalid("id", format!("{v:?} is not a quarantine id")))
}

/// The payload's start as printable text: invalid UTF-8 as U+FFFD, control and invisible
/// formatting characters as `·`. Shown with `textContent` in the dashboard; never markup.
pub fn preview(raw: &[u8]) -> String {
    let head = &raw[..raw.len().min(PREVIEW_CHARS * 4)];
    String::from_utf8_lossy(head)
        .chars()
        .take(PREVIEW_CHARS)
        .map(|c| {
            if c.is_control()
                || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
            {
                '·'
            } else {
                c
            }
        })
        .collect()
}

/// A refused payload, as the list shows it.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuarantineRecord {
    #[schema(pattern = "^[0-9]+$")]
    id: String,
    /// The site of the topic it came on.
    site: String,
    at: UtcMillis,
    /// `malformed`: not a valid alert (MQTT 5 PUBACK 0x99); `not_authorized`: a valid alert
    /// the site may not file (0x87).
    code: RejectCode,
    reason: String,
    /// The payload's full length.
    bytes: u64,
    /// Bytes kept (less than `bytes` only for a payload larger than any alert).
    kept: u64,
    truncated: bool,
    /// Of the full payload.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    sha256: String,
    /// The payload's start as printable text (control characters as ·); for display with
    /// textContent only.
    #[schema(max_length = 120)]
    preview: String,
}

fn record_out(e: &QuarantineEntry, preview: String) -> QuarantineRecord {
    QuarantineRecord {
        id: e.id.to_string(),
        site: e.site.clone(),
        at: e.at,
        code: e.code,
        reason: e.reason.clone(),
        bytes: e.len,
        kept: e.kept,
        truncated: e.truncated(),
        sha256: e.sha256.clone(),
        preview,
    }
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuarantineList {
    records: Vec<QuarantineRecord>,
    total: u64,
    /// Payload bytes kept over all records.
    bytes: u64,
    /// Pass as `before` for the next (older) page.
    #[schema(required = true)]
    next_before: Option<String>,
}

/// What a re-ingest did.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReingestOutcome {
    Stored,
    Duplicate,
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Reingested)]
pub struct ReingestedOut {
    outcome: ReingestOutcome,
    alert: String,
    /// The case the alert is filed into (`C-<alert>` unless it joined an open case).
    case: String,
}

/// Alert payloads the hub refused, newest first (admin).
#[utoipa::path(get, path = "/api/v1/quarantine", operation_id = "listQuarantine", tag = "quarantine",
    params(PageQuery),
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses(
        (status = 200, description = "A page.", body = QuarantineList),
        (status = 400, response = super::doc::Invalid),
        (status = 403, response = super::doc::Forbidden),
        super::doc::Authenticated,
    ))]
pub async fn list(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Params(q): Params<PageQuery>,
) -> Result<Json<QuarantineList>, ApiError> {
    caller.require(&[UserRole::Admin], "read the quarantine")?;
    let (limit, before) = (q.limit.get(), q.before.map(QuarantineId));
    let st = state.clone();
    let v = tokio::task::spawn_blocking(move || -> Result<QuarantineList, ApiError> {
        let q = st.store.quarantine();
        // One more than asked, to know whether there is a next page.
        let mut entries = q.list(before, limit + 1)?;
        let more = entries.len() > limit;
        entries.truncate(limit);
        let mut records = Vec::with_capacity(entries.len());
        for e in &entries {
            let raw = q.get(e.id)?.map(|r| r.raw).unwrap_or_default();
            records.push(record_out(e, preview(&raw)));
        }
        Ok(QuarantineList {
            records,
            total: q.len(),
            bytes: q.bytes(),
            next_before: if more {
                entries.last().map(|e| e.id.to_string())
            } else {
                None
            },
        })
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))??;
    Ok(Json(v))
}

/// The kept bytes of a refused payload, as they arrived (admin).
#[utoipa::path(get, path = "/api/v1/quarantine/{id}/raw", operation_id = "getQuarantineRaw", tag = "quarantine",
    params(("id" = String, Path, description = "Quarantine record id.", min_length = 1)),
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses(
        (status = 200, description = "The bytes.", content_type = "application/octet-stream", body = String),
        (status = 400, response = super::doc::Invalid),
        (status = 403, response = super::doc::Forbidden),
        (status = 404, response = super::doc::NotFound),
        super::doc::Authenticated,
    ))]
pub async fn raw(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(&[UserRole::Admin], "read the quarantine")?;
    let id = id_of(&id)?;
    let rec = state
        .store
        .quarantine()
        .get(id)?
        .ok_or_else(|| ApiError::not_found(format!("quarantine record {id} not found")))?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"quarantine-{id}.bin\""),
            ),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        rec.raw,
    )
        .into_response())
}

/// Runs today's decoding and site policy on the payload again: valid now, it is stored and
/// dispatched like a fresh alert and leaves the quarantine (admin).
#[utoipa::path(post, path = "/api/v1/quarantine/{id}/reingest", operation_id = "reingestQuarantined", tag = "quarantine",
    params(("id" = String, Path, description = "Quarantine record id.", min_length = 1)),
    security(("cookieAuth" = [], "csrfToken" = []), ("bearerAuth" = [])),
    responses(
        (status = 200, description = "Stored.", body = ReingestedOut),
        (status = 400, response = super::doc::Invalid),
        (status = 403, response = super::doc::Forbidden),
        (status = 404, response = super::doc::NotFound),
        (status = 409, response = super::doc::StillRefused),
        (status = 422, response = super::doc::StillRefused),
        super::doc::Authenticated,
    ))]
pub async fn reingest(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(&[UserRole::Admin], "re-ingest quarantined alerts")?;
    let id = id_of(&id)?;
    match state.ingest.reingest(&state.store, id).await? {
        Reingested::Gone => Err(ApiError::not_found(format!(
            "quarantine record {id} not found"
        ))),
        Reingested::Stored { alert, duplicate } => {
            tracing::info!(quarantine = %id, %alert, login = %caller.user.login, "quarantined alert re-ingested by an admin");
            Ok((
                StatusCode::OK,
                Json(ReingestedOut {
                    outcome: if duplicate {
                        ReingestOutcome::Duplicate
                    } else {
                        ReingestOutcome::Stored
                    },
                    case: format!("C-{alert}"),
                    alert,
                }),
            )
                .into_response())
        }
        Reingested::Refused(r) => Err(ApiError::refused(r.code, r.reason)),
    }
}

/// Deletes a refused payload for good (admin).
#[utoipa::path(delete, path = "/api/v1/quarantine/{id}", operation_id = "deleteQuarantined", tag = "quarantine",
    params(("id" = String, Path, description = "Quarantine record id.", min_length = 1)),
    security(("cookieAuth" = [], "csrfToken" = []), ("bearerAuth" = [])),
    responses(
        (status = 204, description = "Deleted."),
        (status = 400, response = super::doc::Invalid),
        (status = 403, response = super::doc::Forbidden),
        (status = 404, response = super::doc::NotFound),
        super::doc::Authenticated,
    ))]
pub async fn remove(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(&[UserRole::Admin], "delete quarantined alerts")?;
    let id = id_of(&id)?;
    if state.ingest.discard(&state.store, id).await? {
        tracing::info!(quarantine = %id, login = %caller.user.login, "quarantine record deleted by an admin");
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::not_found(format!(
            "quarantine record {id} not found"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_preview_is_short_printable_text() {
        assert_eq!(preview(b"{\"a\":\n1}\x1b[31m"), "{\"a\":·1}·[31m");
        assert_eq!(preview(&[0xff, b'a']), "\u{FFFD}a");
        assert_eq!(preview("x\u{202E}y".as_bytes()), "x·y");
        assert_eq!(preview(&[b'x'; 1000]).chars().count(), PREVIEW_CHARS);
    }
}
