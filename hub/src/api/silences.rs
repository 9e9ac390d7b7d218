//! Silences and maintenance windows (静默): list, create, end early. The dispatcher keeps
//! them and judges every alert it files against them ([`crate::case::silenced_by`]); a muted
//! alert is stored and counted on its silence but opens no case and notifies nobody.
//!
//! Who: operators and admins. A silence's scope is its `cell` matcher, else the registered
//! cell of its `site`; without either it is hub-wide. Operators see, create and end the
//! silences whose scope is one of their cells or under it (the watchlist's rule,
//! [`WatchAuthority`]); only admins see and make hub-wide ones. Every create and end is
//! written with an audit record (who, when, the silence as it became) in the same batch;
//! admins read the log (`GET /api/v1/silences/audit`).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use protocol::{AlertKind, UtcMillis};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::ApiState;
use super::auth::Caller;
use super::error::ApiError;
use super::params::{Limit, Params};
use crate::case::{Silence, SilenceId};
use crate::dispatch::SilenceBy;
use crate::store::{SilenceAction, SilenceAudit, WatchScope};
use crate::users::UserRole;
use crate::watchlist::WatchAuthority;

/// How long an ended silence stays in the list.
const RECENT_MS: i64 = 7 * 24 * 3_600_000;
/// Longest silence: a maintenance window, not a way to switch a site off for good.
const MAX_SPAN_MS: i64 = 90 * 24 * 3_600_000;

fn authority(caller: &Caller) -> WatchAuthority {
    if caller.is_admin() {
        WatchAuthority::Admin
    } else {
        WatchAuthority::Cells(caller.user.cells.clone())
    }
}

fn by(caller: &Caller) -> SilenceBy {
    SilenceBy {
        login: caller.user.login.clone(),
        actor: caller.user.actor_id().to_owned(),
    }
}

/// Where a silence applies, for who may see it: its cell, else its site's registered cell,
/// else everywhere.
fn scope(state: &ApiState, s: &Silence) -> WatchScope {
    let site_cell = || {
        s.site
            .as_ref()
            .and_then(|site| state.sites.get(site))
            .map(|x| x.cell.clone())
    };
    s.cell
        .clone()
        .or_else(site_cell)
        .map_or(WatchScope::Everywhere, WatchScope::Cell)
}

fn sees(state: &ApiState, caller: &Caller, s: &Silence) -> bool {
    authority(caller).sees(state.grid.hierarchy(), &scope(state, s))
}

/// A silence as the API shows it.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Silence)]
pub struct SilenceOut {
    #[schema(value_type = String, pattern = "^S-")]
    id: SilenceId,
    #[schema(required = true)]
    site: Option<String>,
    #[schema(required = true)]
    camera: Option<String>,
    #[schema(required = true)]
    rule: Option<String>,
    #[schema(required = true)]
    kind: Option<AlertKind>,
    /// Code of the cell whose alerts (located in it or below) it mutes.
    #[schema(required = true)]
    cell: Option<String>,
    from: UtcMillis,
    /// Planned end (exclusive).
    until: UtcMillis,
    /// When it was ended early.
    #[schema(required = true)]
    ended_at: Option<UtcMillis>,
    #[schema(required = true)]
    ended_by: Option<String>,
    reason: String,
    /// Actor id of who set it.
    created_by: String,
    /// Alerts it muted so far.
    muted: u64,
    /// In force now.
    active: bool,
}

fn out(s: &Silence, now: UtcMillis) -> SilenceOut {
    SilenceOut {
        id: s.id.clone(),
        site: s.site.clone(),
        camera: s.camera.clone(),
        rule: s.rule.clone(),
        kind: s.kind,
        cell: s.cell.clone(),
        from: s.from,
        until: s.until,
        ended_at: s.ended_at,
        ended_by: s.ended_by.clone(),
        reason: s.reason.clone(),
        created_by: s.created_by.clone(),
        muted: s.muted,
        active: s.active_at(now),
    }
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SilenceList {
    silences: Vec<SilenceOut>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SilenceQuery {
    /// `true`: only those in force now; otherwise also planned ones and those ended in the
    /// last 7 days.
    active: Option<bool>,
    /// Most to return (latest start first).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 500, default = 50)]
    #[serde(default)]
    limit: Limit,
}

/// Silences the caller may see, latest start first: in force, planned, and ended in the last
/// 7 days (operator/admin).
#[utoipa::path(get, path = "/api/v1/silences", operation_id = "getSilences", tag = "silences",
    params(SilenceQuery),
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses(
        (status = 200, description = "The silences.", body = SilenceList),
        (status = 400, response = super::doc::Invalid),
        (status = 403, response = super::doc::Forbidden),
        super::doc::Authenticated,
    ))]
pub async fn list(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Params(q): Params<SilenceQuery>,
) -> Result<Json<SilenceList>, ApiError> {
    caller.require(&[UserRole::Operator, UserRole::Admin], "read silences")?;
    let now = state.clock.now();
    let st = state.clone();
    let mut all = tokio::task::spawn_blocking(move || st.store.cases().silences())
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
    let active_only = q.active == Some(true);
    all.retain(|s| {
        let shown = if active_only {
            s.active_at(now)
        } else {
            s.end().0 > now.0.saturating_sub(RECENT_MS)
        };
        shown && sees(&state, &caller, s)
    });
    all.sort_by(|a, b| b.from.cmp(&a.from).then_with(|| b.id.cmp(&a.id)));
    all.truncate(q.limit.get());
    Ok(Json(SilenceList {
        silences: all.iter().map(|s| out(s, now)).collect(),
    }))
}

/// A new silence: at least one matcher; `from` defaults to now.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SilenceBody {
    /// Only this site's alerts.
    site: Option<String>,
    /// Only this camera's alerts.
    camera: Option<String>,
    /// Only alerts of this rule.
    rule: Option<String>,
    /// Only alerts of this kind.
    kind: Option<AlertKind>,
    /// Only alerts located in this cell (code) or below it.
    cell: Option<String>,
    /// Start; default now.
    from: Option<UtcMillis>,
    /// End (exclusive), after `from`, at most 90 days after it.
    until: UtcMillis,
    /// Why (shown with every muted alert), at most 500 characters.
    #[schema(min_length = 1, max_length = 500)]
    reason: String,
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SilenceChanged {
    silence: SilenceOut,
    /// Its audit record's number.
    #[schema(minimum = 1)]
    audit: u64,
}

/// Puts a silence in force (operator/admin). Every problem of the body is listed with its
/// field (`error.problems`).
#[utoipa::path(post, path = "/api/v1/silences", operation_id = "addSilence", tag = "silences",
    request_body = SilenceBody,
    security(("cookieAuth" = [], "csrfToken" = []), ("bearerAuth" = [])),
    responses(
        (status = 201, description = "Created.", body = SilenceChanged),
        (status = 400, response = super::doc::Invalid),
        (status = 403, response = super::doc::Forbidden),
        super::doc::Authenticated,
    ))]
pub async fn create(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    body: Result<Json<SilenceBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    caller.require(&[UserRole::Operator, UserRole::Admin], "silence alerts")?;
    let Json(body) = body.map_err(|e| ApiError::invalid("body", e.body_text()))?;
    let now = state.clock.now();
    let trim = |v: Option<String>| v.map(|v| v.trim().to_owned());
    let ulid = state.ids.make(
        now.0,
        &[&caller.user.login, &body.reason, &body.until.0.to_string()],
    );
    let silence = Silence {
        id: SilenceId::new(&ulid),
        site: trim(body.site),
        camera: trim(body.camera),
        rule: trim(body.rule),
        kind: body.kind,
        cell: trim(body.cell),
        from: body.from.unwrap_or(now),
        until: body.until,
        reason: body.reason.trim().to_owned(),
        created_by: caller.user.actor_id().to_owned(),
        ended_at: None,
        ended_by: None,
        muted: 0,
    };
    let mut problems = silence.problems();
    if let Some(code) = &silence.cell
        && !code.is_empty()
        && state.grid.hierarchy().find(code).is_none()
    {
        problems.push(("cell", "no such cell in the grid".to_owned()));
    }
    if let Some(site) = &silence.site
        && !site.is_empty()
        && !state.sites.contains_key(site)
    {
        problems.push(("site", "no such site".to_owned()));
    }
    if silence.until <= now {
        problems.push((
            "until",
            "in the past: a silence must end after now".to_owned(),
        ));
    }
    if silence.until.0.saturating_sub(silence.from.0) > MAX_SPAN_MS {
        problems.push(("until", "more than 90 days after from".to_owned()));
    }
    if !problems.is_empty() {
        return Err(ApiError::invalid_all(problems));
    }
    if !sees(&state, &caller, &silence) {
        return Err(ApiError::forbidden(
            "outside your cells: an operator silences alerts of their cells (a cell or a site \
             of theirs); only an admin silences hub-wide",
        ));
    }
    let record = state.dispatch.silence(silence, by(&caller)).await?;
    Ok((
        StatusCode::CREATED,
        Json(SilenceChanged {
            silence: out(&record.silence, now),
            audit: record.seq,
        }),
    )
        .into_response())
}

/// Ends a silence now, before its planned end (operator/admin); one outside the caller's
/// cells is not found.
#[utoipa::path(post, path = "/api/v1/silences/{id}/end", operation_id = "endSilence", tag = "silences",
    params(("id" = String, Path, description = "Silence id.", pattern = "^S-")),
    security(("cookieAuth" = [], "csrfToken" = []), ("bearerAuth" = [])),
    responses(
        (status = 200, description = "Ended.", body = SilenceChanged),
        (status = 403, response = super::doc::Forbidden),
        (status = 404, response = super::doc::NotFound),
        (status = 409, response = super::doc::Conflict),
        super::doc::Authenticated,
    ))]
pub async fn end(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<SilenceChanged>, ApiError> {
    caller.require(&[UserRole::Operator, UserRole::Admin], "end silences")?;
    let not_found = || ApiError::not_found("no such silence in your cells");
    let id = SilenceId::parse(&id).ok_or_else(not_found)?;
    let st = state.clone();
    let lookup = id.clone();
    let stored = tokio::task::spawn_blocking(move || st.store.cases().silence(&lookup))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
    // Out of scope reads as absent: an operator learns nothing of other cells' silences.
    match stored {
        Some(s) if sees(&state, &caller, &s) => {}
        _ => return Err(not_found()),
    }
    let record = state.dispatch.end_silence(id, by(&caller)).await?;
    Ok(Json(SilenceChanged {
        silence: out(&record.silence, state.clock.now()),
        audit: record.seq,
    }))
}

/// One change to a silence.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SilenceAuditRecord {
    /// Record number; later changes have larger ones.
    #[schema(minimum = 1)]
    seq: u64,
    at: UtcMillis,
    action: SilenceAction,
    /// The dashboard login that made the change.
    login: String,
    /// Their actor id (roster person, else the login).
    actor: String,
    /// The silence as the change left it (its muted count as of then).
    silence: SilenceOut,
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SilenceAuditList {
    records: Vec<SilenceAuditRecord>,
    /// Pass as `before` for the next (older) page.
    #[schema(required = true)]
    next_before: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SilenceAuditQuery {
    /// Page size.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 500, default = 50)]
    #[serde(default)]
    limit: Limit,
    /// Only records older than this one (the previous page's `next_before`).
    before: Option<u64>,
}

fn audit_out(r: &SilenceAudit) -> SilenceAuditRecord {
    SilenceAuditRecord {
        seq: r.seq,
        at: r.at,
        action: r.action,
        login: r.login.clone(),
        actor: r.actor.clone(),
        silence: out(&r.silence, r.at),
    }
}

/// Every creation and early end of a silence, newest first: who, when, what (admin).
#[utoipa::path(get, path = "/api/v1/silences/audit", operation_id = "silencesAudit", tag = "silences",
    params(SilenceAuditQuery),
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses(
        (status = 200, description = "A page.", body = SilenceAuditList),
        (status = 400, response = super::doc::Invalid),
        (status = 403, response = super::doc::Forbidden),
        super::doc::Authenticated,
    ))]
pub async fn audit(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Params(q): Params<SilenceAuditQuery>,
) -> Result<Json<SilenceAuditList>, ApiError> {
    caller.require(&[UserRole::Admin], "read the silences' audit log")?;
    let (before, limit) = (q.before, q.limit.get());
    let st = state.clone();
    // One more than asked, to know whether there is a next page.
    let mut records =
        tokio::task::spawn_blocking(move || st.store.cases().silence_audit(before, limit + 1))
            .await
            .map_err(|e| ApiError::internal(e.to_string()))??;
    let more = records.len() > limit;
    records.truncate(limit);
    let next_before = more
        .then(|| records.last().map(|r| r.seq.to_string()))
        .flatten();
    Ok(Json(SilenceAuditList {
        records: records.iter().map(audit_out).collect(),
        next_before,
    }))
}
