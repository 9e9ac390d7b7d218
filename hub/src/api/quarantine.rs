//! The quarantine for admins: alert payloads the hub refused, listed newest first, their raw
//! bytes, re-ingest after a fix, delete. Admins only: a refused payload is whatever a
//! (possibly hostile) site sent, so nobody else gets to read it.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::ApiState;
use super::auth::Caller;
use super::error::ApiError;
use crate::ingest::Reingested;
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

fn entry_json(e: &QuarantineEntry, preview: String) -> Value {
    json!({
        "id": e.id.to_string(),
        "site": e.site,
        "at": e.at,
        "code": e.code,
        "reason": e.reason,
        "bytes": e.len,
        "kept": e.kept,
        "truncated": e.truncated(),
        "sha256": e.sha256,
        "preview": preview,
    })
}

/// `GET /api/v1/quarantine?limit=&before=`: newest first.
pub async fn list(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[UserRole::Admin], "read the quarantine")?;
    let page = super::Page::parse(&q, &[])?;
    let (limit, before) = (page.limit, page.before.map(QuarantineId));
    let st = state.clone();
    let v = tokio::task::spawn_blocking(move || -> Result<Value, ApiError> {
        let q = st.store.quarantine();
        // One more than asked, to know whether there is a next page.
        let mut entries = q.list(before, limit + 1)?;
        let more = entries.len() > limit;
        entries.truncate(limit);
        let mut records = Vec::with_capacity(entries.len());
        for e in &entries {
            let raw = q.get(e.id)?.map(|r| r.raw).unwrap_or_default();
            records.push(entry_json(e, preview(&raw)));
        }
        Ok(json!({
            "records": records,
            "total": q.len(),
            "bytes": q.bytes(),
            "next_before": if more { entries.last().map(|e| e.id.to_string()) } else { None },
        }))
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))??;
    Ok(Json(v))
}

/// `GET /api/v1/quarantine/{id}/raw`: the kept bytes, as they arrived.
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

/// `POST /api/v1/quarantine/{id}/reingest`: today's decoding and site policy again.
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
                Json(json!({
                    "outcome": if duplicate { "duplicate" } else { "stored" },
                    "alert": alert,
                    "case": format!("C-{alert}"),
                })),
            )
                .into_response())
        }
        Reingested::Refused(r) => Err(ApiError::refused(r.code, r.reason)),
    }
}

/// `DELETE /api/v1/quarantine/{id}`.
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
