//! Admin operations on the running hub: reloading what changes weekly ([`crate::reload`]).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use super::ApiState;
use super::auth::Caller;
use super::error::ApiError;
use crate::users::UserRole;

/// What a reload applied.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReloadedOut {
    /// What was replaced (`roster`, and `users` with the dashboard).
    reloaded: Vec<&'static str>,
    /// What was loaded, in numbers, as the log says it.
    summary: String,
}

/// Reloads the roster (people, duty, overrides, backups, departments) and the users from the
/// files the hub's config names, as `hub reload` (SIGHUP) does. Everything is checked first: with any
/// problem nothing changes and every problem is listed (400, one per `problems` entry);
/// otherwise the next notification uses the new roster (admin).
#[utoipa::path(post, path = "/api/v1/admin/reload", operation_id = "reload", tag = "admin",
    security(("cookieAuth" = [], "csrfToken" = []), ("bearerAuth" = [])),
    responses(
        (status = 200, description = "Applied.", body = ReloadedOut),
        (status = 400, response = super::doc::Invalid),
        (status = 403, response = super::doc::Forbidden),
        super::doc::Authenticated,
    ))]
pub async fn reload(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
) -> Result<Json<ReloadedOut>, ApiError> {
    caller.require(&[UserRole::Admin], "reload the roster and users")?;
    let reloader = state.reloader.clone();
    let result = tokio::task::spawn_blocking(move || reloader.reload())
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    match result {
        Ok(summary) => {
            tracing::info!(login = %caller.user.login, "reloaded through the API");
            Ok(Json(ReloadedOut {
                reloaded: vec!["roster", "users"],
                summary,
            }))
        }
        Err(problems) => Err(ApiError::invalid_all(
            problems.into_iter().map(|p| ("roster", p)).collect(),
        )),
    }
}
