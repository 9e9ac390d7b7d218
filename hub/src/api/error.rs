//! The API's one error type: every refusal is `{"error": {"code", "message", "field"?}}` with
//! the status that goes with its code.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::dispatch::DispatchError;

/// What went wrong, for programs: each code goes with one status (but `malformed` 422 and
/// `not_authorized` 409 come from a quarantine re-ingest only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    Unauthenticated,
    Forbidden,
    Csrf,
    NotFound,
    Gone,
    Invalid,
    Conflict,
    RateLimited,
    Internal,
    Unavailable,
    Malformed,
    NotAuthorized,
}

impl ErrorCode {
    /// The wire name, so logs and bodies say the same.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unauthenticated => "unauthenticated",
            Self::Forbidden => "forbidden",
            Self::Csrf => "csrf",
            Self::NotFound => "not_found",
            Self::Gone => "gone",
            Self::Invalid => "invalid",
            Self::Conflict => "conflict",
            Self::RateLimited => "rate_limited",
            Self::Internal => "internal",
            Self::Unavailable => "unavailable",
            Self::Malformed => "malformed",
            Self::NotAuthorized => "not_authorized",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every non-2xx JSON response.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Error)]
pub struct ErrorBody<'a> {
    pub error: ErrorDetail<'a>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorDetail<'a> {
    pub code: ErrorCode,
    /// Human-readable text.
    pub message: &'a str,
    /// The offending field or parameter (`invalid`; with several, the first).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<&'a str>,
    /// Every problem of a body checked as a whole (`invalid`), each with its field.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub problems: &'a [FieldProblem],
}

/// One problem of a request body and the field it is in.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldProblem {
    pub field: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
    pub field: Option<String>,
    pub problems: Vec<FieldProblem>,
    pub retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
            problems: Vec::new(),
            retry_after: None,
        }
    }

    pub fn unauthenticated(m: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthenticated, m)
    }

    pub fn forbidden(m: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, ErrorCode::Forbidden, m)
    }

    pub fn csrf() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Csrf,
            "missing or wrong X-CSRF-Token header (the token comes with the login and /api/v1/me)",
        )
    }

    pub fn not_found(m: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, m)
    }

    /// Something that was kept and is now deleted by retention.
    pub fn gone(m: impl Into<String>) -> Self {
        Self::new(StatusCode::GONE, ErrorCode::Gone, m)
    }

    /// A bad parameter or body field, named.
    pub fn invalid(field: &str, m: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::BAD_REQUEST, ErrorCode::Invalid, m);
        e.field = Some(field.to_owned());
        e
    }

    /// A body with several problems: every one listed with its field (`problems`), the
    /// first also as `field`, all of them in the message.
    pub fn invalid_all(problems: Vec<(&str, String)>) -> Self {
        let message: Vec<String> = problems.iter().map(|(f, p)| format!("{f}: {p}")).collect();
        let mut e = Self::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::Invalid,
            message.join("; "),
        );
        e.field = problems.first().map(|(f, _)| (*f).to_owned());
        e.problems = problems
            .into_iter()
            .map(|(field, message)| FieldProblem {
                field: field.to_owned(),
                message,
            })
            .collect();
        e
    }

    pub fn conflict(m: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, ErrorCode::Conflict, m)
    }

    pub fn rate_limited(retry_after_s: u64) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::RateLimited,
            format!("too many failed logins; try again in {retry_after_s} s"),
        );
        e.retry_after = Some(retry_after_s);
        e
    }

    /// Too many password checks at once: try again shortly.
    pub fn busy(retry_after_s: u64) -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            format!("too many logins at once; try again in {retry_after_s} s"),
        );
        e.retry_after = Some(retry_after_s);
        e
    }

    pub fn internal(m: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal, m)
    }

    pub fn unavailable(m: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable, m)
    }

    /// An alert the hub still refuses: 422 when it is malformed, 409 when it is valid but
    /// not the site's to file (a config change may fix that); the code is the reason code.
    pub fn refused(code: crate::ingest::RejectCode, m: impl Into<String>) -> Self {
        let status = match code {
            crate::ingest::RejectCode::Malformed => StatusCode::UNPROCESSABLE_ENTITY,
            crate::ingest::RejectCode::NotAuthorized => StatusCode::CONFLICT,
        };
        let code = match code {
            crate::ingest::RejectCode::Malformed => ErrorCode::Malformed,
            crate::ingest::RejectCode::NotAuthorized => ErrorCode::NotAuthorized,
        };
        Self::new(status, code, m)
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
                    T::Forbidden { .. } => Self::forbidden(msg),
                    T::NoTimeLimit { .. } => Self::invalid("within_minutes", msg),
                    _ => Self::conflict(msg),
                }
            }
            DispatchError::Invalid(m) => Self::invalid("body", m),
            DispatchError::NoSuchWatch(_) => Self::not_found(e.to_string()),
            DispatchError::WatchTaken(_) => Self::conflict(e.to_string()),
            DispatchError::OutsideScope => Self::forbidden(e.to_string()),
            DispatchError::NoSuchSilence(_) => Self::not_found(e.to_string()),
            DispatchError::SilenceOver { .. } => Self::conflict(e.to_string()),
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
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: &self.message,
                field: self.field.as_deref(),
                problems: &self.problems,
            },
        };
        let mut r = (self.status, Json(body)).into_response();
        if let Some(s) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&s.to_string())
        {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        r
    }
}
