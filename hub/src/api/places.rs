//! Grid cells and their people, sites and their health, the watchlist, tag trajectories,
//! statistics and the dashboard's settings.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use protocol::UtcMillis;
use protocol::alert::Location;
use protocol::status::{CameraHealth, ReaderHealth};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::ApiState;
use super::auth::Caller;
use super::error::ApiError;
use super::params::{Limit, Params, TimeParam};
use crate::book::DeadlineState;
use crate::case::CellRef;
use crate::grid::{CellId, Level};
use crate::roster::Role;
use crate::store::{AuditQuery, WatchAction, WatchAudit, WatchEntry, WatchScope};
use crate::users::UserRole;
use crate::watchlist::{WatchAuthority, WatchBy};

fn path_of(state: &ApiState, id: CellId) -> Vec<CellRef> {
    CellRef::path_to(state.grid.hierarchy(), id)
}

fn cell_ref(state: &ApiState, id: CellId) -> Option<CellRef> {
    state
        .grid
        .hierarchy()
        .get(id)
        .map(|c| CellRef::new(c.code(), c.name(), c.level()))
}

/// Whether a cell is the caller's or an ancestor of one of theirs (shown for context).
fn on_map(state: &ApiState, caller: &Caller, id: CellId) -> bool {
    if caller.sees_path(&path_of(state, id)) {
        return true;
    }
    let g = state.grid.hierarchy();
    caller
        .user
        .cells
        .iter()
        .any(|c| g.find(c).is_some_and(|mine| g.path(mine).contains(&id)))
}

/// The cells in scope and their ancestors, as GeoJSON (RFC 7946, WGS-84).
// The body is the grid's GeoJSON as the import and export write it (`grid::geojson`), not a
// struct of this module, so the document describes it with `doc::Grid`.
#[utoipa::path(get, path = "/api/v1/grid", operation_id = "getGrid", tag = "grid",
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses(
        (status = 200, description = "A FeatureCollection.", body = super::doc::Grid,
            content_type = "application/geo+json"),
        super::doc::Authenticated,
    ))]
pub async fn grid(State(state): State<Arc<ApiState>>, caller: Caller) -> Response {
    let geojson = |doc: Value| {
        (
            [(axum::http::header::CONTENT_TYPE, "application/geo+json")],
            Json(doc),
        )
            .into_response()
    };
    if caller.is_admin() {
        return geojson(state.grid_geojson.clone());
    }
    let g = state.grid.hierarchy();
    let mut doc = state.grid_geojson.clone();
    if let Some(features) = doc.get_mut("features").and_then(Value::as_array_mut) {
        features.retain(|f| {
            f.pointer("/properties/code")
                .and_then(Value::as_str)
                .and_then(|c| g.find(c))
                .is_some_and(|id| on_map(&state, &caller, id))
        });
    }
    geojson(doc)
}

/// A person of a cell, as the roster has them.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Person {
    id: String,
    name: String,
    phone: String,
    roles: Vec<Role>,
    on_duty: bool,
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CellDetail {
    cell: CellRef,
    #[schema(required = true)]
    parent: Option<String>,
    children: Vec<CellRef>,
    people: Vec<Person>,
}

/// A cell, its children and its people.
#[utoipa::path(get, path = "/api/v1/cells/{code}", operation_id = "getCell", tag = "grid",
    params(("code" = String, Path, description = "Cell code.", min_length = 1)),
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses(
        (status = 200, description = "The cell.", body = CellDetail),
        (status = 403, response = super::doc::Forbidden),
        (status = 404, response = super::doc::NotFound),
        super::doc::Authenticated,
    ))]
pub async fn cell(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Path(code): Path<String>,
) -> Result<Json<CellDetail>, ApiError> {
    let g = state.grid.hierarchy();
    let id = g
        .find(&code)
        .ok_or_else(|| ApiError::not_found(format!("cell {code} not found")))?;
    if !caller.sees_path(&path_of(&state, id)) {
        return Err(ApiError::forbidden(format!(
            "cell {code} is outside your cells"
        )));
    }
    let now = state.clock.now();
    let roster = state.roster.current();
    let on_duty = roster.on_duty(&code, now).people;
    let people: Vec<Person> = roster
        .people_of(&code)
        .into_iter()
        .map(|p| Person {
            id: p.id().to_owned(),
            name: p.name().to_owned(),
            phone: p.phone().to_owned(),
            roles: p.roles().to_vec(),
            on_duty: on_duty.iter().any(|d| d == p.id()),
        })
        .collect();
    let children: Vec<CellRef> = g
        .cells()
        .iter()
        .filter(|c| c.parent() == Some(id))
        .map(|c| CellRef::new(c.code(), c.name(), c.level()))
        .collect();
    let cell = cell_ref(&state, id)
        .ok_or_else(|| ApiError::not_found(format!("cell {code} not found")))?;
    Ok(Json(CellDetail {
        cell,
        parent: g
            .parent(id)
            .and_then(|p| g.get(p))
            .map(|p| p.code().to_owned()),
        children,
        people,
    }))
}

/// A site's position: configured, else the centre of its cell.
fn site_location(state: &ApiState, site: &str) -> Option<Location> {
    let s = state.sites.get(site)?;
    if let Some(l) = s.location {
        return Some(l);
    }
    let g = state.grid.hierarchy();
    let b = g.get(g.find(&s.cell)?)?.bbox();
    Some(Location {
        lon: (b.min.lon + b.max.lon) / 2.0,
        lat: (b.min.lat + b.max.lat) / 2.0,
    })
}

fn site_cell(state: &ApiState, site: &str) -> Option<CellId> {
    state.grid.hierarchy().find(&state.sites.get(site)?.cell)
}

fn sees_site(state: &ApiState, caller: &Caller, site: &str) -> bool {
    caller.is_admin()
        || site_cell(state, site).is_some_and(|c| caller.sees_path(&path_of(state, c)))
}

/// A site and its health.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Site {
    id: String,
    name: String,
    #[schema(required = true)]
    cell: Option<CellRef>,
    #[schema(required = true)]
    location: Option<Location>,
    online: bool,
    #[schema(required = true)]
    last_seen: Option<UtcMillis>,
    #[schema(required = true)]
    since: Option<UtcMillis>,
    /// The box's clock minus the hub's, ms, as its last live status measured it; null before
    /// one came.
    #[schema(required = true)]
    clock_offset_ms: Option<i64>,
    /// Whether that offset is beyond `[registry] clock_tolerance_s` (its alerts are filed at
    /// their receipt time).
    clock_off: bool,
    cameras: Vec<CameraHealth>,
    readers: Vec<ReaderHealth>,
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SiteList {
    sites: Vec<Site>,
}

/// A department (职能部门) cases can be routed or transferred to.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DepartmentOut {
    /// Its code (e.g. `D-JJ`).
    code: String,
    /// Its name.
    name: String,
    /// Its kind in words (交警, 消防 …).
    kind: String,
    /// The grid cell it serves.
    cell: String,
    /// That cell's level.
    #[schema(required = true)]
    level: Option<Level>,
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DepartmentList {
    departments: Vec<DepartmentOut>,
}

/// The roster's departments, for transfers and assists.
#[utoipa::path(get, path = "/api/v1/departments", operation_id = "listDepartments", tag = "grid",
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses(
        (status = 200, description = "The departments, by code.", body = DepartmentList),
        super::doc::Authenticated,
    ))]
pub async fn departments(
    State(state): State<Arc<ApiState>>,
    _caller: Caller,
) -> Json<DepartmentList> {
    let h = state.grid.hierarchy();
    let roster = state.roster.current();
    let departments = roster
        .departments()
        .iter()
        .map(|d| DepartmentOut {
            code: d.code().to_owned(),
            name: d.name().to_owned(),
            kind: d.kind().to_owned(),
            cell: d.cell().to_owned(),
            level: state
                .grid
                .find(d.cell())
                .and_then(|c| h.get(c))
                .map(|c| c.level()),
        })
        .collect();
    Json(DepartmentList { departments })
}

/// Sites in scope (by the site's cell) with their health.
#[utoipa::path(get, path = "/api/v1/sites", operation_id = "listSites", tag = "sites",
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses(
        (status = 200, description = "The sites.", body = SiteList),
        super::doc::Authenticated,
    ))]
pub async fn sites(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
) -> Result<Json<SiteList>, ApiError> {
    let live: HashMap<String, crate::registry::SiteState> = state
        .dispatch
        .sites()
        .await?
        .into_iter()
        .map(|s| (s.id.clone(), s))
        .collect();
    let mut ids: Vec<&String> = state.sites.keys().chain(live.keys()).collect();
    ids.sort();
    ids.dedup();
    let mut out = Vec::new();
    for id in ids {
        if !sees_site(&state, &caller, id) {
            continue;
        }
        let st = live.get(id);
        let health = st.and_then(|s| s.health.as_ref());
        out.push(Site {
            id: id.clone(),
            name: state
                .sites
                .get(id)
                .map(|s| s.name.clone())
                .unwrap_or_default(),
            cell: site_cell(&state, id).and_then(|c| cell_ref(&state, c)),
            location: site_location(&state, id),
            online: st.is_some_and(|s| s.online),
            last_seen: st.and_then(|s| s.last_seen),
            since: st.and_then(|s| s.since),
            clock_offset_ms: st.and_then(|s| s.clock_offset_ms),
            clock_off: st
                .and_then(|s| s.clock_offset_ms)
                .is_some_and(|o| o.abs() > state.clock_tolerance_ms),
            cameras: health.map(|h| h.cameras.clone()).unwrap_or_default(),
            readers: health.map(|h| h.readers.clone()).unwrap_or_default(),
        });
    }
    Ok(Json(SiteList { sites: out }))
}

/// Longest police case number and note on a watchlist entry, and removal reason (in
/// characters): they are sent to the sites in signed commands and shown in alerts.
const MAX_CASE_REF_CHARS: usize = 64;
const MAX_WATCH_NOTE_CHARS: usize = 500;

fn watch_authority(caller: &Caller) -> WatchAuthority {
    if caller.is_admin() {
        WatchAuthority::Admin
    } else {
        WatchAuthority::Cells(caller.user.cells.clone())
    }
}

fn watch_by(caller: &Caller) -> WatchBy {
    WatchBy {
        login: caller.user.login.clone(),
        actor: caller.user.actor_id().to_owned(),
        authority: watch_authority(caller),
    }
}

/// The cell an entry applies in, with its name and level (null: every site; a cell since
/// removed from the grid has a null level).
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum ScopeRef {
    Cell(CellRef),
    /// A cell removed from the grid since: still shown, by its code.
    Removed(RemovedCell),
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RemovedCell {
    code: String,
    name: String,
    /// Always null: the grid no longer knows the cell.
    #[schema(value_type = super::doc::Null, inline)]
    level: (),
}

/// A scope as the API shows it: the cell's code, name and level, or null for hub-wide.
fn scope_ref(state: &ApiState, scope: &WatchScope) -> Option<ScopeRef> {
    match scope {
        WatchScope::Everywhere => None,
        WatchScope::Cell(code) => {
            let g = state.grid.hierarchy();
            Some(match g.find(code).and_then(|id| cell_ref(state, id)) {
                Some(c) => ScopeRef::Cell(c),
                None => ScopeRef::Removed(RemovedCell {
                    code: code.clone(),
                    name: code.clone(),
                    level: (),
                }),
            })
        }
    }
}

/// A watchlisted tag (布控). It is sent to the sites registered in its cell and the cells
/// under it; operators see and change the entries of their cells and below, admins every
/// entry (only they make hub-wide ones).
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = WatchEntry)]
pub struct WatchOut {
    tag: String,
    /// The police case number (报警回执号).
    case_ref: String,
    note: String,
    added_at: UtcMillis,
    /// Actor id of who added or last changed it.
    added_by: String,
    /// Code of the cell it applies in; null: every site.
    #[schema(required = true)]
    cell: Option<String>,
    #[schema(required = true)]
    scope: Option<ScopeRef>,
}

fn watch_out(state: &ApiState, e: &WatchEntry) -> WatchOut {
    WatchOut {
        tag: e.tag.clone(),
        case_ref: e.case_ref.clone(),
        note: e.note.clone(),
        added_at: e.added_at,
        added_by: e.added_by.clone(),
        cell: e.scope.clone().into(),
        scope: scope_ref(state, &e.scope),
    }
}

/// One change to the watchlist.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WatchAuditRecord {
    /// Record number; later changes have larger ones.
    #[schema(minimum = 1)]
    seq: u64,
    at: UtcMillis,
    /// `changed`: an existing entry was replaced (see `previous`); `migrated`: kept, hub-wide,
    /// from a hub before watchlist scopes.
    action: WatchAction,
    tag: String,
    /// The police case number the change was made under (a removal: the removed entry's).
    case_ref: String,
    /// The entry's cell after the change (a removal: before it); null: every site.
    #[schema(required = true)]
    cell: Option<String>,
    #[schema(required = true)]
    scope: Option<ScopeRef>,
    note: String,
    /// The dashboard login that made the change (empty for `migrated`).
    login: String,
    /// Their actor id (roster person, else the login).
    actor: String,
    /// Why (removals), when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    /// The entry before a change or removal.
    #[serde(skip_serializing_if = "Option::is_none")]
    previous: Option<WatchOut>,
    /// Sites the change was sent to.
    sites: usize,
}

fn audit_out(state: &ApiState, r: &WatchAudit) -> WatchAuditRecord {
    WatchAuditRecord {
        seq: r.seq,
        at: r.at,
        action: r.action,
        tag: r.tag.clone(),
        case_ref: r.case_ref.clone(),
        cell: r.scope.clone().into(),
        scope: scope_ref(state, &r.scope),
        note: r.note.clone(),
        login: r.login.clone(),
        actor: r.actor.clone(),
        reason: r.reason.clone(),
        previous: r.previous.as_ref().map(|p| watch_out(state, p)),
        sites: r.sites,
    }
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WatchList {
    entries: Vec<WatchOut>,
}

/// Watchlisted (布控) tags the caller may see: an operator's cells and below; all for an admin.
#[utoipa::path(get, path = "/api/v1/watchlist", operation_id = "getWatchlist", tag = "watchlist",
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses(
        (status = 200, description = "The entries.", body = WatchList),
        (status = 403, response = super::doc::Forbidden),
        super::doc::Authenticated,
    ))]
pub async fn watchlist(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
) -> Result<Json<WatchList>, ApiError> {
    caller.require(&[UserRole::Operator, UserRole::Admin], "read the watchlist")?;
    let authority = watch_authority(&caller);
    let g = state.grid.hierarchy();
    let entries = state
        .store
        .watchlist()
        .entries()?
        .iter()
        .filter(|e| authority.sees(g, &e.scope))
        .map(|e| watch_out(&state, e))
        .collect();
    Ok(Json(WatchList { entries }))
}

/// Adds a tag, or replaces the entry of a tag the caller may see (the audit log keeps the
/// previous one).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = WatchAddRequest)]
pub struct WatchBody {
    #[schema(min_length = 1)]
    tag: String,
    /// The police case number (报警回执号). Required (refused by name when empty).
    #[serde(default)]
    #[schema(min_length = 1, max_length = 64)]
    case_ref: String,
    #[serde(default)]
    #[schema(max_length = 500)]
    note: String,
    /// Code of the cell it applies in (and below): one of the caller's cells or under them.
    /// Absent or null: an operator's only cell (required when they have several); for an
    /// admin, every site.
    #[serde(default)]
    cell: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WatchAdded {
    entry: WatchOut,
    /// Sites of the entry's scope the listing was sent to.
    sites: usize,
    /// The change's record number in the audit log.
    #[schema(minimum = 1)]
    audit: u64,
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WatchRemoved {
    sites: usize,
    /// The change's record number in the audit log.
    #[schema(minimum = 1)]
    audit: u64,
}

/// The scope a request asks for, checked against the grid and the caller's cells.
fn requested_scope(
    state: &ApiState,
    caller: &Caller,
    cell: Option<String>,
) -> Result<WatchScope, ApiError> {
    let scope = match cell {
        Some(code) => {
            if state.grid.hierarchy().find(&code).is_none() {
                // Echoed only when it could be a cell code (the body may be megabytes).
                let shown = if code.len() <= 64 {
                    code.as_str()
                } else {
                    "…"
                };
                return Err(ApiError::invalid(
                    "cell",
                    format!("no cell {shown:?} in the grid"),
                ));
            }
            WatchScope::Cell(code)
        }
        None if caller.is_admin() => WatchScope::Everywhere,
        None => match caller.user.cells.as_slice() {
            [only] => WatchScope::Cell(only.clone()),
            _ => {
                return Err(ApiError::invalid(
                    "cell",
                    "required: which of your cells the entry applies in",
                ));
            }
        },
    };
    if !watch_authority(caller).sees(state.grid.hierarchy(), &scope) {
        return Err(ApiError::forbidden(
            "the cell is outside yours; an operator watchlists in their cells and below",
        ));
    }
    Ok(scope)
}

fn bounded(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    let n = value.chars().count();
    if n > max {
        return Err(ApiError::invalid(
            field,
            format!("{n} characters; at most {max}"),
        ));
    }
    Ok(())
}

/// Watchlists a tag in a cell (or replaces an entry the caller may see) and sends it to that
/// cell's sites (operator/admin).
#[utoipa::path(post, path = "/api/v1/watchlist", operation_id = "addWatch", tag = "watchlist",
    request_body = WatchBody,
    security(("cookieAuth" = [], "csrfToken" = []), ("bearerAuth" = [])),
    responses(
        (status = 200, description = "An existing entry of the tag was replaced.", body = WatchAdded),
        (status = 201, description = "Added.", body = WatchAdded),
        (status = 400, response = super::doc::Invalid),
        (status = 403, response = super::doc::Forbidden),
        (status = 409, response = super::doc::Conflict),
        super::doc::Authenticated,
    ))]
pub async fn watch_add(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    body: Result<Json<WatchBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(|e| ApiError::invalid("body", e.body_text()))?;
    caller.require(
        &[UserRole::Operator, UserRole::Admin],
        "change the watchlist",
    )?;
    protocol::validate_id("tag", &body.tag).map_err(|e| ApiError::invalid("tag", e.to_string()))?;
    let case_ref = body.case_ref.trim().to_owned();
    if case_ref.is_empty() {
        return Err(ApiError::invalid(
            "case_ref",
            "the police case number (报警回执号) is required",
        ));
    }
    bounded("case_ref", &case_ref, MAX_CASE_REF_CHARS)?;
    bounded("note", &body.note, MAX_WATCH_NOTE_CHARS)?;
    let scope = requested_scope(&state, &caller, body.cell)?;
    let entry = WatchEntry {
        tag: body.tag,
        case_ref,
        note: body.note,
        added_at: state.clock.now(),
        added_by: caller.user.actor_id().to_owned(),
        scope,
    };
    let record = state
        .dispatch
        .watch_add(entry.clone(), watch_by(&caller))
        .await?;
    let status = match record.action {
        WatchAction::Added => StatusCode::CREATED,
        _ => StatusCode::OK,
    };
    Ok((
        status,
        Json(WatchAdded {
            entry: watch_out(&state, &entry),
            sites: record.sites,
            audit: record.seq,
        }),
    )
        .into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RemoveQuery {
    /// Why (kept in the audit log), at most 500 characters.
    #[param(max_length = 500)]
    reason: Option<String>,
}

/// Removes a tag from the watchlist at the sites of its cell (operator/admin); an entry
/// outside the caller's cells is not found.
#[utoipa::path(delete, path = "/api/v1/watchlist/{tag}", operation_id = "removeWatch", tag = "watchlist",
    params(
        ("tag" = String, Path, description = "Tag id, upper-case hex.", min_length = 1),
        RemoveQuery,
    ),
    security(("cookieAuth" = [], "csrfToken" = []), ("bearerAuth" = [])),
    responses(
        (status = 200, description = "Removed.", body = WatchRemoved),
        (status = 400, response = super::doc::Invalid),
        (status = 403, response = super::doc::Forbidden),
        (status = 404, response = super::doc::NotFound),
        super::doc::Authenticated,
    ))]
pub async fn watch_remove(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Path(tag): Path<String>,
    Params(q): Params<RemoveQuery>,
) -> Result<Json<WatchRemoved>, ApiError> {
    caller.require(
        &[UserRole::Operator, UserRole::Admin],
        "change the watchlist",
    )?;
    let reason = q.reason.filter(|r| !r.trim().is_empty());
    if let Some(r) = &reason {
        bounded("reason", r, MAX_WATCH_NOTE_CHARS)?;
    }
    let record = state
        .dispatch
        .watch_remove(&tag, watch_by(&caller), reason)
        .await?;
    Ok(Json(WatchRemoved {
        sites: record.sites,
        audit: record.seq,
    }))
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WatchAuditList {
    records: Vec<WatchAuditRecord>,
    /// Pass as `before` for the next (older) page.
    #[schema(required = true)]
    next_before: Option<String>,
}

/// The audit log's query: a tag, and a page of the newest-first log.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WatchAuditQuery {
    /// Only this tag's changes.
    #[param(min_length = 1)]
    tag: Option<String>,
    /// Page size.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 500, default = 50)]
    #[serde(default)]
    limit: Limit,
    /// Only records older than this one (the previous page's `next_before`).
    before: Option<u64>,
}

/// Every change to the watchlist, newest first: who, when, the police case number (admin).
#[utoipa::path(get, path = "/api/v1/watchlist/audit", operation_id = "watchlistAudit", tag = "watchlist",
    params(WatchAuditQuery),
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses(
        (status = 200, description = "A page.", body = WatchAuditList),
        (status = 400, response = super::doc::Invalid),
        (status = 403, response = super::doc::Forbidden),
        super::doc::Authenticated,
    ))]
pub async fn watch_audit(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Params(q): Params<WatchAuditQuery>,
) -> Result<Json<WatchAuditList>, ApiError> {
    caller.require(&[UserRole::Admin], "read the watchlist's audit log")?;
    let (tag, before, limit) = (q.tag, q.before, q.limit.get());
    let st = state.clone();
    let (records, more) = tokio::task::spawn_blocking(move || {
        let query = AuditQuery {
            before,
            tag: tag.as_deref(),
            // One more than asked, to know whether there is a next page.
            limit: limit + 1,
        };
        st.store.watchlist().audit(&query).map(|mut r| {
            let more = r.len() > limit;
            r.truncate(limit);
            (r, more)
        })
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))??;
    let next_before = more
        .then(|| records.last().map(|r| r.seq.to_string()))
        .flatten();
    Ok(Json(WatchAuditList {
        records: records.iter().map(|r| audit_out(&state, r)).collect(),
        next_before,
    }))
}

/// Where and when a reader heard a tag.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Sighting {
    site: String,
    reader: String,
    first: UtcMillis,
    last: UtcMillis,
    reads: u32,
    /// dBm
    rssi: i16,
    #[schema(required = true)]
    location: Option<Location>,
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Trajectory {
    tag: String,
    /// Time order.
    sightings: Vec<Sighting>,
}

/// A time range; either end may be left open.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RangeQuery {
    /// From (inclusive): milliseconds since the Unix epoch, or an RFC 3339 time.
    #[param(value_type = Option<super::doc::MsOrTime>)]
    from: Option<TimeParam>,
    /// To (exclusive): milliseconds since the Unix epoch, or an RFC 3339 time.
    #[param(value_type = Option<super::doc::MsOrTime>)]
    to: Option<TimeParam>,
}

/// Where a tag was heard, in time order.
#[utoipa::path(get, path = "/api/v1/tags/{tag}/trajectory", operation_id = "getTrajectory", tag = "watchlist",
    params(
        ("tag" = String, Path, description = "Tag id, upper-case hex.", min_length = 1),
        RangeQuery,
    ),
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses(
        (status = 200, description = "The sightings.", body = Trajectory),
        (status = 400, response = super::doc::Invalid),
        (status = 403, response = super::doc::Forbidden),
        super::doc::Authenticated,
    ))]
pub async fn trajectory(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Path(tag): Path<String>,
    Params(q): Params<RangeQuery>,
) -> Result<Json<Trajectory>, ApiError> {
    caller.require(&[UserRole::Operator, UserRole::Admin], "trace a tag")?;
    let (from, to) = TimeParam::range(q.from, q.to);
    let all = crate::dispatch::trajectory(&state.store, &tag, UtcMillis(from), UtcMillis(to))?;
    let sightings = all
        .into_iter()
        .filter(|s| sees_site(&state, &caller, &s.site))
        .map(|s| Sighting {
            location: site_location(&state, &s.site),
            site: s.site,
            reader: s.reader,
            first: s.first,
            last: s.last,
            reads: s.reads,
            rssi: s.rssi,
        })
        .collect();
    Ok(Json(Trajectory { tag, sightings }))
}

#[derive(Default)]
struct CellStats {
    cases: u64,
    open: u64,
    overdue: u64,
    acknowledged: u64,
    resolved: u64,
    ack_ms: i64,
    resolve_ms: i64,
    /// Acknowledged without climbing.
    on_time: u64,
    supervised: u64,
    transferred: u64,
    replied: u64,
    /// Replies rated satisfied or basically satisfied.
    satisfied: u64,
}

impl CellStats {
    fn count(&mut self, s: &crate::book::CaseSummary, now: UtcMillis) {
        self.cases += 1;
        if s.is_open() {
            self.open += 1;
            if s.deadline_state(now) == DeadlineState::Overdue {
                self.overdue += 1;
            }
        }
        if let Some(a) = s.acked_at {
            self.acknowledged += 1;
            self.ack_ms += a.0 - s.opened_at.0;
            if s.escalations == 0 {
                self.on_time += 1;
            }
        }
        if let Some(r) = s.resolved_at {
            self.resolved += 1;
            self.resolve_ms += r.0 - s.opened_at.0;
        }
        self.supervised += u64::from(s.was_supervised);
        self.transferred += u64::from(s.transfers > 0);
        if let Some(sat) = s.satisfaction {
            self.replied += 1;
            self.satisfied += u64::from(matches!(
                sat,
                crate::case::Satisfaction::Satisfied
                    | crate::case::Satisfaction::BasicallySatisfied
            ));
        }
    }

    fn out(self, unit: CellRef, w: &crate::config::RankingSection) -> CellStatsOut {
        let share = |n: u64, of: u64| (of > 0).then(|| n as f64 / of as f64);
        let mean = |sum: i64, n: u64| (n > 0).then(|| sum / n as i64);
        let on_time_ratio = share(self.on_time, self.acknowledged);
        let satisfaction_ratio = share(self.satisfied, self.replied);
        let of = |n: u64| share(n, self.cases).unwrap_or(0.0);
        let score = w.on_time * on_time_ratio.unwrap_or(0.0)
            + w.resolved * of(self.resolved)
            + w.satisfied * satisfaction_ratio.unwrap_or(0.0)
            - w.overdue * of(self.overdue)
            - w.supervised * of(self.supervised);
        CellStatsOut {
            cell: unit,
            cases: self.cases,
            open: self.open,
            overdue: self.overdue,
            acknowledged: self.acknowledged,
            resolved: self.resolved,
            mean_ack_ms: mean(self.ack_ms, self.acknowledged),
            mean_resolve_ms: mean(self.resolve_ms, self.resolved),
            on_time_ratio,
            supervised: self.supervised,
            transferred: self.transferred,
            replied: self.replied,
            satisfied: self.satisfied,
            satisfaction_ratio,
            score,
        }
    }
}

/// One cell's (or department's) figures.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CellStats)]
pub struct CellStatsOut {
    /// The cell, or the department (as cases name units).
    cell: CellRef,
    cases: u64,
    open: u64,
    overdue: u64,
    acknowledged: u64,
    resolved: u64,
    #[schema(required = true, minimum = 0)]
    mean_ack_ms: Option<i64>,
    #[schema(required = true, minimum = 0)]
    mean_resolve_ms: Option<i64>,
    #[schema(required = true, minimum = 0, maximum = 1)]
    on_time_ratio: Option<f64>,
    /// Cases supervised (督办).
    supervised: u64,
    /// Cases transferred (交办) at least once.
    transferred: u64,
    /// Reports replied to (回复征询).
    replied: u64,
    /// Replies rated satisfied or basically satisfied.
    satisfied: u64,
    #[schema(required = true, minimum = 0, maximum = 1)]
    satisfaction_ratio: Option<f64>,
    /// The 红黑榜 score under `[ranking]`'s weights.
    score: f64,
}

/// 红黑榜.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Ranking {
    /// Codes, best first.
    red: Vec<String>,
    /// Codes, worst first.
    black: Vec<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Stats {
    from: UtcMillis,
    /// Null when not given (no upper bound).
    #[schema(required = true)]
    to: Option<UtcMillis>,
    level: Level,
    /// The cells of `level`, best score first.
    cells: Vec<CellStatsOut>,
    ranking: Ranking,
    /// The departments leading cases (routed or transferred), best score first.
    departments: Vec<CellStatsOut>,
    department_ranking: Ranking,
}

/// The statistics' query: a time range of `opened_at` and the level counted.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    /// From (inclusive): milliseconds since the Unix epoch, or an RFC 3339 time.
    #[param(value_type = Option<super::doc::MsOrTime>)]
    from: Option<TimeParam>,
    /// To (exclusive): milliseconds since the Unix epoch, or an RFC 3339 time.
    #[param(value_type = Option<super::doc::MsOrTime>)]
    to: Option<TimeParam>,
    /// Level of the cells counted (default `grid`).
    level: Option<Level>,
}

/// Rows sorted best score first (then by code), and the lists of the best and the worst.
fn ranked(
    rows: BTreeMap<String, (CellRef, CellStats)>,
    w: &crate::config::RankingSection,
) -> (Vec<CellStatsOut>, Ranking) {
    let mut rows: Vec<CellStatsOut> = rows.into_values().map(|(u, s)| s.out(u, w)).collect();
    rows.sort_by(|a, b| {
        b.score
            .partial_cmp(&a.score)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| a.cell.code.cmp(&b.cell.code))
    });
    let (red, black) = split_ranks(rows.len(), w.size);
    let red = rows.iter().take(red).map(|r| r.cell.code.clone()).collect();
    let black = rows
        .iter()
        .rev()
        .take(black)
        .map(|r| r.cell.code.clone())
        .collect();
    (rows, Ranking { red, black })
}

/// How many of `len` units (best first) go on the red and the black list, at most `size`
/// each. No unit is on both: with few units the better half is red and the worse half black
/// (one unit alone is red, not also the worst).
fn split_ranks(len: usize, size: usize) -> (usize, usize) {
    (len.div_ceil(2).min(size), (len / 2).min(size))
}

fn compute_stats(state: &ApiState, caller: &Caller, q: StatsQuery) -> Stats {
    let level = q.level.unwrap_or(Level::Grid);
    let (from, to) = TimeParam::range(q.from, q.to);
    let now = state.clock.now();
    let mut by_cell: BTreeMap<String, (CellRef, CellStats)> = BTreeMap::new();
    let mut by_department: BTreeMap<String, (CellRef, CellStats)> = BTreeMap::new();
    let scope = caller.scope(&state.book);
    state.book.each(|row| {
        if row.opened_at < from || row.opened_at >= to || !scope.sees(row) {
            return;
        }
        let s = &row.summary;
        if let Some(cell) = s.path.iter().find(|c| c.level == level) {
            by_cell
                .entry(cell.code.clone())
                .or_insert_with(|| (cell.clone(), CellStats::default()))
                .1
                .count(s, now);
        }
        if let Some(d) = &s.department {
            by_department
                .entry(d.code.clone())
                .or_insert_with(|| (d.clone(), CellStats::default()))
                .1
                .count(s, now);
        }
    });
    let (cells, ranking) = ranked(by_cell, &state.ranking);
    let (departments, department_ranking) = ranked(by_department, &state.ranking);
    Stats {
        from: UtcMillis(from),
        to: (to != i64::MAX).then_some(UtcMillis(to)),
        level,
        cells,
        ranking,
        departments,
        department_ranking,
    }
}

/// Per-cell and per-department case figures and the red/black rankings (红黑榜).
#[utoipa::path(get, path = "/api/v1/stats", operation_id = "getStats", tag = "stats",
    params(StatsQuery),
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses(
        (status = 200, description = "The figures.", body = Stats),
        (status = 400, response = super::doc::Invalid),
        (status = 403, response = super::doc::Forbidden),
        super::doc::Authenticated,
    ))]
pub async fn stats(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Params(q): Params<StatsQuery>,
) -> Result<Json<Stats>, ApiError> {
    caller.require(&[UserRole::Operator, UserRole::Admin], "read statistics")?;
    Ok(Json(compute_stats(&state, &caller, q)))
}

/// The export's columns, in order (CSV and spreadsheet alike).
const EXPORT_COLUMNS: [&str; 18] = [
    "unit",
    "code",
    "name",
    "level",
    "cases",
    "open",
    "overdue",
    "acknowledged",
    "resolved",
    "mean_ack_s",
    "mean_resolve_s",
    "on_time_ratio",
    "supervised",
    "transferred",
    "replied",
    "satisfied",
    "satisfaction_ratio",
    "score",
];

/// One value of an exported row: text, or a number (absent where there is nothing to average).
enum Field {
    Text(String),
    Number(Option<f64>),
}

/// The rows of the export for one kind of unit (`cell` or `department`), in
/// [`EXPORT_COLUMNS`] order.
fn export_rows(unit: &str, rows: &[CellStatsOut]) -> Vec<Vec<Field>> {
    // Counts are far below 2^53: exact as f64.
    #[allow(clippy::cast_precision_loss)]
    let n = |v: u64| Field::Number(Some(v as f64));
    #[allow(clippy::cast_precision_loss)]
    let secs = |v: Option<i64>| Field::Number(v.map(|ms| (ms / 1000) as f64));
    rows.iter()
        .map(|r| {
            vec![
                Field::Text(unit.to_owned()),
                Field::Text(r.cell.code.clone()),
                Field::Text(r.cell.name.clone()),
                Field::Text(r.cell.level.as_str().to_owned()),
                n(r.cases),
                n(r.open),
                n(r.overdue),
                n(r.acknowledged),
                n(r.resolved),
                secs(r.mean_ack_ms),
                secs(r.mean_resolve_ms),
                Field::Number(r.on_time_ratio),
                n(r.supervised),
                n(r.transferred),
                n(r.replied),
                n(r.satisfied),
                Field::Number(r.satisfaction_ratio),
                Field::Number(Some(r.score)),
            ]
        })
        .collect()
}

/// The same figures as a CSV file for a spreadsheet: one row per cell, then per department.
#[utoipa::path(get, path = "/api/v1/stats.csv", operation_id = "getStatsCsv", tag = "stats",
    params(StatsQuery),
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses(
        (status = 200, description = "The figures, UTF-8 CSV with a header line (and a byte-order mark, so spreadsheets read the Chinese names).", content_type = "text/csv", body = String),
        (status = 400, response = super::doc::Invalid),
        (status = 403, response = super::doc::Forbidden),
        super::doc::Authenticated,
    ))]
pub async fn stats_csv(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Params(q): Params<StatsQuery>,
) -> Result<Response, ApiError> {
    caller.require(&[UserRole::Operator, UserRole::Admin], "read statistics")?;
    let st = compute_stats(&state, &caller, q);
    let mut w = csv::Writer::from_writer(b"\xef\xbb\xbf".to_vec());
    let internal = |e: csv::Error| ApiError::internal(e.to_string());
    w.write_record(EXPORT_COLUMNS).map_err(internal)?;
    for (unit, rows) in [("cell", &st.cells), ("department", &st.departments)] {
        for row in export_rows(unit, rows) {
            w.write_record(row.iter().map(|f| match f {
                Field::Text(t) => t.clone(),
                Field::Number(None) => String::new(),
                // Whole numbers as such; ratios and scores to three places.
                Field::Number(Some(x)) if x.fract() == 0.0 => format!("{x:.0}"),
                Field::Number(Some(x)) => format!("{x:.3}"),
            }))
            .map_err(internal)?;
        }
    }
    let body = w
        .into_inner()
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                axum::http::header::CONTENT_DISPOSITION,
                "attachment; filename=\"stats.csv\"",
            ),
        ],
        body,
    )
        .into_response())
}

/// The XLSX media type.
const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

/// The same figures as an Excel workbook: a sheet of cells (网格) and one of departments (部门),
/// numbers as numbers, the header row frozen.
#[utoipa::path(get, path = "/api/v1/stats.xlsx", operation_id = "getStatsXlsx", tag = "stats",
    params(StatsQuery),
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses(
        (status = 200, description = "The figures as an Office Open XML workbook.", content_type = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", body = Vec<u8>),
        (status = 400, response = super::doc::Invalid),
        (status = 403, response = super::doc::Forbidden),
        super::doc::Authenticated,
    ))]
pub async fn stats_xlsx(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Params(q): Params<StatsQuery>,
) -> Result<Response, ApiError> {
    caller.require(&[UserRole::Operator, UserRole::Admin], "read statistics")?;
    let st = compute_stats(&state, &caller, q);
    let sheets = [
        ("网格", export_rows("cell", &st.cells)),
        ("部门", export_rows("department", &st.departments)),
    ];
    // Zipping is CPU work of a few ms per thousand rows: off the async threads.
    let body = tokio::task::spawn_blocking(move || workbook(&sheets))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::internal(format!("spreadsheet: {e}")))?;
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, XLSX),
            (
                axum::http::header::CONTENT_DISPOSITION,
                "attachment; filename=\"stats.xlsx\"",
            ),
        ],
        body,
    )
        .into_response())
}

/// The workbook's bytes: one sheet per `(name, rows)`, [`EXPORT_COLUMNS`] as a bold, frozen
/// header; an absent number is an empty cell.
fn workbook(sheets: &[(&str, Vec<Vec<Field>>)]) -> Result<Vec<u8>, rust_xlsxwriter::XlsxError> {
    let mut book = rust_xlsxwriter::Workbook::new();
    let bold = rust_xlsxwriter::Format::new().set_bold();
    let ratio = rust_xlsxwriter::Format::new().set_num_format("0.000");
    for (name, rows) in sheets {
        let sheet = book.add_worksheet();
        sheet.set_name(*name)?;
        for (c, title) in (0u16..).zip(EXPORT_COLUMNS) {
            sheet.write_string_with_format(0, c, title, &bold)?;
        }
        sheet.set_freeze_panes(1, 0)?;
        for (r, row) in (1u32..).zip(rows) {
            for (c, f) in (0u16..).zip(row) {
                match f {
                    Field::Text(t) => {
                        sheet.write_string(r, c, t)?;
                    }
                    Field::Number(Some(x)) if x.fract() == 0.0 => {
                        sheet.write_number(r, c, *x)?;
                    }
                    Field::Number(Some(x)) => {
                        sheet.write_number_with_format(r, c, *x, &ratio)?;
                    }
                    Field::Number(None) => {}
                }
            }
        }
        sheet.autofit();
    }
    book.save_to_buffer()
}

/// What the web pages need before they draw the map.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UiConfig {
    #[schema(required = true)]
    tile_url: Option<String>,
    /// [lon, lat]
    #[schema(min_items = 2, max_items = 2)]
    center: [f64; 2],
    title: String,
}

/// Map tiles, centre and title for the web pages.
#[utoipa::path(get, path = "/api/v1/config/ui", operation_id = "uiConfig", tag = "meta",
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses(
        (status = 200, description = "The UI configuration.", body = UiConfig),
        super::doc::Authenticated,
    ))]
pub async fn ui_config(State(state): State<Arc<ApiState>>, _caller: Caller) -> Json<UiConfig> {
    let b = state.grid.hierarchy().bbox();
    Json(UiConfig {
        tile_url: state.http.tile_url.clone(),
        center: [(b.min.lon + b.max.lon) / 2.0, (b.min.lat + b.max.lat) / 2.0],
        title: state.http.title.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::split_ranks;

    #[test]
    fn no_unit_is_on_both_lists_and_each_list_is_capped() {
        assert_eq!(split_ranks(0, 5), (0, 0));
        assert_eq!(split_ranks(1, 5), (1, 0));
        assert_eq!(split_ranks(2, 5), (1, 1));
        assert_eq!(split_ranks(3, 5), (2, 1));
        assert_eq!(split_ranks(10, 5), (5, 5));
        assert_eq!(split_ranks(40, 5), (5, 5));
        for len in 0..30 {
            let (r, b) = split_ranks(len, 5);
            assert!(r + b <= len && r <= 5 && b <= 5, "{len}: {r} {b}");
        }
    }
}
