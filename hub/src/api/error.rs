//! The API's one error type: every refusal is `{"error": {"code", "message", "field"?}}` with
//! the status that goes with its code.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::dispatch::DispatchError;

#[derive(Debug, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    pub retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
            retry_after: None,
        }
    }

    pub fn unauthenticated(m: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", m)
    }

    pub fn forbidden(m: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", m)
    }

    pub fn csrf() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "csrf",
            "missing or wrong X-CSRF-Token header (the token comes with the login and /api/v1/me)",
        )
    }

    pub fn not_found(m: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", m)
    }

    /// Something that was kept and is now deleted by retention.
    pub fn gone(m: impl Into<String>) -> Self {
        Self::new(StatusCode::GONE, "gone", m)
    }

    /// A bad parameter or body field, named.
    pub fn invalid(field: &str, m: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::BAD_REQUEST, "invalid", m);
        e.field = Some(field.to_owned());
        e
    }

    pub fn conflict(m: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", m)
    }

    pub fn rate_limited(retry_after_s: u64) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many failed logins; try again in {retry_after_s} s"),
        );
        e.retry_after = Some(retry_after_s);
        e
    }

    /// Too many password checks at once: try again shortly.
    pub fn busy(retry_after_s: u64) -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("too many logins at once; try again in {retry_after_s} s"),
        );
        e.retry_after = Some(retry_after_s);
        e
    }

    pub fn internal(m: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", m)
    }

    pub fn unavailable(m: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", m)
    }

    /// An alert the hub still refuses: 422 when it is malformed, 409 when it is valid but
    /// not the site's to file (a config change may fix that); the code is the reason code.
    pub fn refused(code: crate::ingest::RejectCode, m: impl Into<String>) -> Self {
        let status = match code {
            crate::ingest::RejectCode::Malformed => StatusCode::UNPROCESSABLE_ENTITY,
            crate::ingest::RejectCode::NotAuthorized => StatusCode::CONFLICT,
        };
        Self::new(status, code.as_str(), m)
    }
}

impl From<crate::ingest::IngestError> for ApiError {
    fn from(e: crate::ingest::IngestError) -> Self {
        match e {
            crate::ingest::IngestError::Stopped | crate::ingest::IngestError::DiskLow => {
                Self::unavailable(e.to_string())
            }
            crate::ingest::IngestError::Store(s) => s.into(),
        }
    }
}

impl From<DispatchError> for ApiError {
    fn from(e: DispatchError) -> Self {
        use crate::case::TransitionError as T;
        match e {
            DispatchError::NoSuchCase(id) => Self::not_found(format!("case {id} not found")),
            DispatchError::Transition(t) => {
                let msg = t.to_string();
                match t {
                    T::NoteRequired { .. } => Self::invalid("note", msg),
                    T::InvalidPath { .. } => Self::invalid("cell", msg),
                    _ => Self::conflict(msg),
                }
            }
            DispatchError::Invalid(m) => Self::invalid("body", m),
            DispatchError::NoSuchWatch(_) => Self::not_found(e.to_string()),
            DispatchError::WatchTaken(_) => Self::conflict(e.to_string()),
            DispatchError::OutsideScope => Self::forbidden(e.to_string()),
            DispatchError::Stopped => Self::unavailable("the dispatcher has stopped"),
            other => {
                tracing::error!(error = %other, "API request failed");
                Self::internal(other.to_string())
            }
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        tracing::error!(error = %e, "API store access failed");
        Self::internal(e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"code": self.code, "message": self.message});
        if let Some(f) = &self.field {
            body["field"] = json!(f);
        }
        let mut r = (self.status, Json(json!({ "error": body }))).into_response();
        if let Some(s) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&s.to_string())
        {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        r
    }
}
