//! Cases: the list (from the in-memory book), detail (from the store), actions (through the
//! dispatcher), snapshots, photos and patrol reports.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use protocol::{
    Alert, AlertKind, AlertPhase, AlertSource, Severity, UtcMillis, alert::Location, validate_id,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use strum::IntoEnumIterator as _;
use utoipa::{IntoParams, ToSchema};

use super::ApiState;
use super::auth::Caller;
use super::error::ApiError;
use super::params::{CommaList, Limit, Params, TimeParam};
use crate::book::{CaseSummary, DeadlineState, Row};
use crate::case::{
    Action, ActionKind, Actor, Archived, AuditRecord, Authority, Case, CaseState, CellRef,
    Deadline, Delivery, Reply, Span, Supervision, Task, Transition, UntrustedPosition,
};
use crate::dispatch::unit_ref;
use crate::grid::Level;
use crate::store::PhotoMeta;
use crate::users::UserRole;

/// Largest photo people attach (decoded).
pub const MAX_PHOTO_BYTES: usize = 2 * 1024 * 1024;
/// Longest note on an action or a patrol report, in characters: a paragraph from a phone, not
/// a document (and every operator of the cell reads it).
pub const MAX_NOTE_CHARS: usize = 4096;

/// Refuses a note over [`MAX_NOTE_CHARS`], naming the field.
fn check_note(note: &str) -> Result<(), ApiError> {
    let n = note.chars().count();
    if n > MAX_NOTE_CHARS {
        return Err(ApiError::invalid(
            "note",
            format!("{n} characters; at most {MAX_NOTE_CHARS}"),
        ));
    }
    Ok(())
}
/// The pseudo-site patrol reports are filed under.
pub use crate::trust::PATROL_SITE;

/// A case as lists, the feed and the detail show it: the book's summary with its deadline
/// state at this moment, borrowed so a page of 500 rows is serialised without copies.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CaseSummary)]
pub struct CaseOut<'a> {
    #[schema(value_type = String, pattern = "^C-")]
    pub id: &'a crate::case::CaseId,
    pub state: CaseState,
    pub severity: Severity,
    pub kind: AlertKind,
    pub rule: &'a str,
    pub site: &'a str,
    /// The camera or reader of the first alert, the person who filed a patrol report, or the
    /// part of the hub a hub-health case is about (`disk`).
    pub source: &'a AlertSource,
    #[schema(minimum = 1)]
    pub count: u64,
    pub opened_at: UtcMillis,
    pub updated_at: UtcMillis,
    pub last_alert_at: UtcMillis,
    #[schema(required = true)]
    pub location: Option<Location>,
    /// Level of the cell holding the case now (null only for a case with an empty path).
    #[schema(required = true)]
    pub level: Option<Level>,
    /// The cell holding the case now (null only for a case with an empty path).
    #[schema(required = true)]
    pub cell: Option<&'a CellRef>,
    /// From the top (county) down to the deepest cell.
    pub path: &'a [CellRef],
    #[schema(required = true)]
    pub deadline: Option<Deadline>,
    /// near = less than 25% of the span or < 60 s left.
    pub deadline_state: DeadlineState,
    #[schema(required = true)]
    pub handler: Option<&'a str>,
    pub step: u32,
    #[schema(required = true)]
    pub acked_at: Option<UtcMillis>,
    #[schema(required = true)]
    pub resolved_at: Option<UtcMillis>,
    /// How many times a deadline made it climb.
    pub escalations: u32,
    /// The department leading the case now (routed to it, or transferred: 交办), if any.
    #[schema(required = true)]
    pub department: Option<&'a CellRef>,
    /// Supervised by a level above (督办) and not yet resolved.
    #[schema(required = true)]
    pub supervised: Option<crate::book::Supervised>,
    /// Archived (销号归档): final.
    pub archived: bool,
}

impl<'a> CaseOut<'a> {
    pub fn new(s: &'a CaseSummary, now: UtcMillis) -> Self {
        Self {
            id: &s.id,
            state: s.state,
            severity: s.severity,
            kind: s.kind,
            rule: &s.rule,
            site: &s.site,
            source: &s.source,
            count: s.count,
            opened_at: s.opened_at,
            updated_at: s.updated_at,
            last_alert_at: s.last_alert_at,
            location: s.location,
            level: s.level,
            cell: s.cell.as_ref(),
            path: &s.path,
            deadline: s.deadline,
            deadline_state: s.deadline_state(now),
            handler: s.handler.as_deref(),
            step: s.step,
            acked_at: s.acked_at,
            resolved_at: s.resolved_at,
            escalations: s.escalations,
            department: s.department.as_ref(),
            supervised: s.supervised,
            archived: s.archived,
        }
    }
}

/// The list's filters, parsed with every parameter named in its error.
#[derive(Debug, Default)]
struct Filter {
    states: Option<BTreeSet<CaseState>>,
    open_only: bool,
    severities: Option<Vec<Severity>>,
    levels: Option<Vec<Level>>,
    kinds: Option<Vec<AlertKind>>,
    cell: Option<u32>,
    site: Option<u32>,
    from: Option<i64>,
    to: Option<i64>,
}

impl Filter {
    fn keep(&self, s: &Row) -> bool {
        if self.open_only && !s.is_open() {
            return false;
        }
        if let Some(st) = &self.states
            && !st.contains(&s.state)
        {
            return false;
        }
        if let Some(v) = &self.severities
            && !v.contains(&s.severity)
        {
            return false;
        }
        if let Some(v) = &self.levels
            && !s.level.is_some_and(|l| v.contains(&l))
        {
            return false;
        }
        if let Some(v) = &self.kinds
            && !v.contains(&s.kind)
        {
            return false;
        }
        if let Some(c) = self.cell
            && !s.under(c)
        {
            return false;
        }
        if let Some(site) = self.site
            && s.site != site
        {
            return false;
        }
        if self.from.is_some_and(|f| s.opened_at < f) || self.to.is_some_and(|t| s.opened_at >= t) {
            return false;
        }
        true
    }
}

/// A `state=` item: a case state, or `open` (neither resolved nor closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateParam {
    Open,
    Is(CaseState),
}

impl<'de> Deserialize<'de> for StateParam {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s == "open" {
            return Ok(Self::Open);
        }
        serde_json::from_value(Value::String(s.clone()))
            .map(Self::Is)
            .map_err(|_| serde::de::Error::custom(format!("{s:?} is not a case state or open")))
    }
}

impl utoipa::PartialSchema for StateParam {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
        OneOfBuilder::new()
            .item(utoipa::openapi::Ref::from_schema_name(CaseState::name()))
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(["open"]))
                    .description(Some("Neither resolved nor closed.")),
            )
            .into()
    }
}

impl ToSchema for StateParam {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        schemas.push((
            CaseState::name().into(),
            <CaseState as utoipa::PartialSchema>::schema(),
        ));
    }
}

/// The list's query.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// States, comma-separated; `open` = neither resolved nor closed.
    #[param(value_type = Option<Vec<StateParam>>, inline, style = Form, explode = false)]
    state: Option<CommaList<StateParam>>,
    /// Severities, comma-separated.
    #[param(value_type = Option<Vec<Severity>>, style = Form, explode = false)]
    severity: Option<CommaList<Severity>>,
    /// Levels of the cell holding the case, comma-separated.
    #[param(value_type = Option<Vec<Level>>, style = Form, explode = false)]
    level: Option<CommaList<Level>>,
    /// A cell code: cases whose path contains it (its subtree). Out of the caller's scope → 403.
    #[param(min_length = 1)]
    cell: Option<String>,
    /// Site id.
    #[param(min_length = 1)]
    site: Option<String>,
    /// Kinds, comma-separated.
    #[param(value_type = Option<Vec<AlertKind>>, style = Form, explode = false)]
    kind: Option<CommaList<AlertKind>>,
    /// `opened_at` ≥ from: milliseconds since the Unix epoch, or an RFC 3339 time.
    #[param(value_type = Option<super::doc::MsOrTime>)]
    from: Option<TimeParam>,
    /// `opened_at` < to: milliseconds since the Unix epoch, or an RFC 3339 time.
    #[param(value_type = Option<super::doc::MsOrTime>)]
    to: Option<TimeParam>,
    /// Page size.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 500, default = 50)]
    #[serde(default)]
    limit: Limit,
    /// `next_cursor` of the previous page.
    #[param(value_type = Option<String>, min_length = 1)]
    cursor: Option<Cursor>,
}

/// Where the previous page ended: `opened_at:case id`, as `next_cursor` gives it out.
#[derive(Debug, Clone)]
pub struct Cursor(i64, crate::case::CaseId);

impl<'de> Deserialize<'de> for Cursor {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = String::deserialize(d)?;
        v.split_once(':')
            .and_then(|(at, id)| Some(Cursor(at.parse().ok()?, crate::case::CaseId::parse(id)?)))
            .ok_or_else(|| serde::de::Error::custom("not a cursor this API gave out"))
    }
}

/// Cases in the caller's scope, newest first (`opened_at` desc, then id).
#[utoipa::path(get, path = "/api/v1/cases", operation_id = "listCases", tag = "cases",
    params(ListQuery),
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses(
        (status = 200, description = "A page of cases.", body = CaseList),
        (status = 400, response = super::doc::Invalid),
        (status = 403, response = super::doc::Forbidden),
        super::doc::Authenticated,
    ))]
pub async fn list(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Params(q): Params<ListQuery>,
) -> Result<Response, ApiError> {
    let mut f = Filter {
        severities: q.severity.map(|l| l.0),
        levels: q.level.map(|l| l.0),
        kinds: q.kind.map(|l| l.0),
        site: q.site.map(|v| state.book.interned(&v)),
        from: q.from.map(|t| t.0),
        to: q.to.map(|t| t.0),
        ..Filter::default()
    };
    for item in q.state.map(|l| l.0).unwrap_or_default() {
        match item {
            StateParam::Open => f.open_only = true,
            StateParam::Is(s) => {
                f.states.get_or_insert_with(BTreeSet::new).insert(s);
            }
        }
    }
    if let Some(v) = q.cell {
        let g = state.grid.hierarchy();
        let Some(id) = g.find(&v) else {
            return Err(ApiError::invalid("cell", format!("{v:?} is not a cell")));
        };
        let path: Vec<CellRef> = CellRef::path_to(g, id);
        if !caller.sees_path(&path) {
            return Err(ApiError::forbidden(format!(
                "cell {v} is outside your cells"
            )));
        }
        f.cell = Some(state.book.interned(&v));
    }
    let (cursor, limit) = (q.cursor.map(|c| (c.0, c.1)), q.limit.get());
    let scope = caller.scope(&state.book);
    let page = state
        .book
        .page(|r| scope.sees(r) && f.keep(r), cursor, limit);
    let now = state.clock.now();
    let cases: Vec<CaseOut<'_>> = page.cases.iter().map(|s| CaseOut::new(s, now)).collect();
    Ok(Json(CaseList {
        cases,
        total: page.total,
        next_cursor: page.next.map(|(at, id)| format!("{at}:{id}")),
    })
    .into_response())
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CaseList<'a> {
    cases: Vec<CaseOut<'a>>,
    total: usize,
    /// Opaque; pass as `cursor` for the next page.
    #[schema(required = true)]
    next_cursor: Option<String>,
}

/// The case if the caller may see it: 404 if there is none, 403 if it is not theirs.
fn visible(state: &ApiState, caller: &Caller, id: &str) -> Result<Arc<CaseSummary>, ApiError> {
    let s = state
        .book
        .get(id)
        .ok_or_else(|| ApiError::not_found(format!("case {id} not found")))?;
    if !caller.sees(&s) {
        return Err(ApiError::forbidden(format!(
            "case {id} is outside your cells"
        )));
    }
    Ok(s)
}

/// The latest snapshot of a case, with the boxes drawn on it.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = SnapshotRef)]
pub struct SnapshotOut {
    alert: String,
    camera: String,
    time: UtcMillis,
    width: u32,
    height: u32,
    #[schema(pattern = "^/api/v1/alerts/[^/]+/snapshot$")]
    url: String,
    detections: Vec<protocol::Detection>,
}

/// One alert of a case, without its snapshot.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertBrief {
    id: String,
    time: UtcMillis,
    phase: AlertPhase,
    rule: String,
    #[schema(required = true)]
    label: Option<String>,
    #[schema(required = true, minimum = 0, maximum = 1)]
    score: Option<f32>,
    /// The alert's human-readable detail (camera offline: the last error; patrol report: the
    /// note).
    #[schema(required = true)]
    detail: Option<String>,
    has_snapshot: bool,
}

/// A photo attached to a case action or a patrol report.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PhotoRef {
    id: String,
    #[schema(pattern = "^/api/v1/photos/[^/]+$")]
    url: String,
    at: UtcMillis,
    by: String,
}

impl PhotoRef {
    fn new(id: &str, at: UtcMillis, by: &str) -> Self {
        Self {
            id: id.to_owned(),
            url: format!("/api/v1/photos/{id}"),
            at,
            by: by.to_owned(),
        }
    }
}

/// One case with everything the detail view shows.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CaseDetail<'a> {
    case: CaseOut<'a>,
    audit: &'a [AuditRecord],
    deliveries: &'a [Delivery],
    alerts: Vec<AlertBrief>,
    /// Set when an alert of the case claimed a position its site is not trusted with (farther
    /// than the site's radius from where the site is registered): the case was filed in the
    /// site's cell instead; the claim is kept for forensics.
    #[schema(required = true)]
    position_untrusted: Option<&'a UntrustedPosition>,
    /// Set when an alert of the case was stamped implausibly far from its receipt (its box's
    /// clock is off): the case was filed at the receipt time; the box's time is kept.
    #[schema(required = true)]
    time_untrusted: Option<&'a crate::case::UntrustedTime>,
    #[schema(required = true)]
    snapshot: Option<SnapshotOut>,
    photos: Vec<PhotoRef>,
    /// The departments and cells that worked or work on the case (routed, transferred,
    /// assisting), in the order they joined.
    tasks: &'a [Task],
    /// The latest supervision (督办).
    #[schema(required = true)]
    supervision: Option<&'a Supervision>,
    /// The reply to the reporter (回复征询).
    #[schema(required = true)]
    reply: Option<&'a Reply>,
    /// When and by whom it was archived.
    #[schema(required = true)]
    archived: Option<&'a Archived>,
}

/// The detail of `case` as JSON bytes (built off the async threads: decoding up to 100
/// alerts with their snapshots is CPU work).
fn detail_json(state: &ApiState, case: &Case) -> Result<Json<Value>, ApiError> {
    let now = state.clock.now();
    let mut alerts = Vec::new();
    let mut snapshot = None;
    for id in case.alert_ids.iter() {
        let Some(stored) = state.store.alerts().get(id)? else {
            continue;
        };
        let a = &stored.alert;
        if let Some(s) = &stored.snapshot {
            // The latest snapshot is the one shown.
            snapshot = Some(SnapshotOut {
                alert: a.id.clone(),
                camera: s.camera.clone(),
                time: s.time,
                width: s.width,
                height: s.height,
                url: format!("/api/v1/alerts/{}/snapshot", a.id),
                detections: a.detections.clone(),
            });
        }
        alerts.push(AlertBrief {
            id: a.id.clone(),
            time: a.time,
            phase: a.phase,
            rule: a.rule.clone(),
            label: a.label.clone(),
            score: a.score,
            detail: a.detail.clone(),
            has_snapshot: stored.snapshot.is_some(),
        });
    }
    let mut photos = Vec::new();
    for r in &case.audit {
        if let Some(p) = &r.photo {
            photos.push(PhotoRef::new(p, r.at, &r.actor.id));
        }
    }
    // A patrol report's photo belongs to the case from its first alert.
    if case.kind == AlertKind::Patrol
        && let Some(m) = state.store.photos().meta(&case.first_alert)?
    {
        photos.insert(0, PhotoRef::new(&case.first_alert, m.at, &m.by));
    }
    let summary = CaseSummary::of(case);
    let detail = CaseDetail {
        case: CaseOut::new(&summary, now),
        audit: &case.audit,
        deliveries: &case.deliveries,
        alerts,
        position_untrusted: case.position_untrusted.as_ref(),
        time_untrusted: case.time_untrusted.as_ref(),
        snapshot,
        photos,
        tasks: &case.tasks,
        supervision: case.supervision.as_ref(),
        reply: case.reply.as_ref(),
        archived: case.archived.as_ref(),
    };
    // A value (not the borrowed struct) crosses back from the blocking thread.
    serde_json::to_value(&detail)
        .map(Json)
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// One case with its audit trail, deliveries, alerts, snapshot and photos.
#[utoipa::path(get, path = "/api/v1/cases/{id}", operation_id = "getCase", tag = "cases",
    params(("id" = String, Path, description = "Case id, `C-…`.", min_length = 1)),
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses(
        (status = 200, description = "The case.", body = CaseDetail),
        (status = 403, response = super::doc::Forbidden),
        (status = 404, response = super::doc::NotFound),
        super::doc::Authenticated,
    ))]
pub async fn detail(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = visible(&state, &caller, &id)?.id.clone();
    let case = crate::dispatch::load_case(&state.store, &id)?
        .ok_or_else(|| ApiError::not_found(format!("case {id} not found")))?;
    let st = state.clone();
    // Decoding up to 100 alerts with their snapshots is CPU work.
    tokio::task::spawn_blocking(move || detail_json(&st, &case))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
}

fn jpeg(bytes: Vec<u8>) -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/jpeg"),
            (header::CACHE_CONTROL, "private, max-age=86400"),
        ],
        bytes,
    )
        .into_response()
}

/// The alert's snapshot JPEG.
#[utoipa::path(get, path = "/api/v1/alerts/{id}/snapshot", operation_id = "getSnapshot", tag = "cases",
    params(("id" = String, Path, description = "Alert id.", min_length = 1)),
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses(
        (status = 200, description = "The JPEG.", content_type = "image/jpeg", body = String),
        (status = 403, response = super::doc::Forbidden),
        (status = 404, response = super::doc::NotFound),
        (status = 410, response = super::doc::Gone),
        super::doc::Authenticated,
    ))]
pub async fn snapshot(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let case = crate::dispatch::case_of_alert(&state.store, &id)?
        .ok_or_else(|| ApiError::not_found(format!("alert {id} is not filed in a case")))?;
    visible(&state, &caller, &case)?;
    let store = state.store.clone();
    let bytes = tokio::task::spawn_blocking(move || {
        let stored = store
            .alerts()
            .get(&id)?
            .ok_or_else(|| ApiError::not_found(format!("alert {id} not found")))?;
        if stored.snapshot.is_none() {
            return Err(ApiError::not_found(format!("alert {id} has no snapshot")));
        }
        store.alerts().snapshot_jpeg(&stored)?.ok_or_else(|| {
            ApiError::gone(format!(
                "the snapshot of alert {id} is past its retention and was deleted"
            ))
        })
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))??;
    Ok(jpeg(bytes))
}

/// A photo attached to a case action or report.
#[utoipa::path(get, path = "/api/v1/photos/{id}", operation_id = "getPhoto", tag = "cases",
    params(("id" = String, Path, description = "Photo id.", min_length = 1)),
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses(
        (status = 200, description = "The JPEG.", content_type = "image/jpeg", body = String),
        (status = 403, response = super::doc::Forbidden),
        (status = 404, response = super::doc::NotFound),
        (status = 410, response = super::doc::Gone),
        super::doc::Authenticated,
    ))]
pub async fn photo(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let nf = || ApiError::not_found(format!("photo {id} not found"));
    let meta = state.store.photos().meta(&id)?.ok_or_else(nf)?;
    visible(&state, &caller, &meta.case)?;
    let store = state.store.clone();
    let pid = id.clone();
    let bytes = tokio::task::spawn_blocking(move || store.photos().jpeg(&pid))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??
        .ok_or_else(|| ApiError::gone("the photo is past its retention and was deleted"))?;
    Ok(jpeg(bytes))
}

/// Decodes and checks a base64 JPEG from a request body.
fn decode_photo(b64: &str) -> Result<Vec<u8>, ApiError> {
    let b64 = b64
        .split_once("base64,")
        .map_or(b64, |(_, data)| data)
        .trim();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| ApiError::invalid("photo", format!("not base64: {e}")))?;
    if bytes.len() > MAX_PHOTO_BYTES {
        return Err(ApiError::invalid(
            "photo",
            format!("{} bytes; at most {MAX_PHOTO_BYTES}", bytes.len()),
        ));
    }
    if !bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Err(ApiError::invalid(
            "photo",
            "not a JPEG (it must start with FF D8 FF)",
        ));
    }
    Ok(bytes)
}

/// Removes a photo stored for an action the dispatcher then refused.
fn remove_photo(state: &ApiState, id: &str) {
    if let Err(e) = state.store.photos().remove(id) {
        tracing::error!(photo = id, error = %e, "cannot remove the photo of a refused action");
    }
}

/// Writes a photo's file (synced) and its record, off the async threads.
async fn store_photo(
    state: &ApiState,
    id: &str,
    bytes: Vec<u8>,
    meta: PhotoMeta,
) -> Result<(), ApiError> {
    let store = state.store.clone();
    let id = id.to_owned();
    tokio::task::spawn_blocking(move || store.photos().put(&id, &bytes, &meta))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
    Ok(())
}

/// The most minutes a transfer's or supervision's time limit may be (90 days).
const MAX_LIMIT_MINUTES: u32 = 90 * 24 * 60;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ActionRequest)]
pub struct ActionBody {
    /// Read as text so an unknown action is refused by name, with the list.
    #[schema(value_type = crate::case::ActionKind)]
    action: String,
    #[serde(default)]
    note: Option<String>,
    /// A JPEG, base64, at most 2 MB decoded.
    #[serde(default)]
    #[schema(content_encoding = "base64", content_media_type = "image/jpeg")]
    photo: Option<String>,
    /// extend: the new deadline, ms since the epoch or RFC 3339.
    #[serde(default)]
    #[schema(value_type = Option<super::doc::MsOrTime>)]
    until: Option<Value>,
    /// return: the code of the cell to send the case to.
    #[serde(default)]
    cell: Option<String>,
    /// transfer: the department's code; assist: the department's or cell's code.
    #[serde(default)]
    unit: Option<String>,
    /// transfer and supervise: the time limit in minutes from now.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 129600)]
    within_minutes: Option<u32>,
    /// escalate: the level to take the case to (default: the next one up).
    #[serde(default)]
    level: Option<Level>,
    /// reply: what the reporter thought of the handling.
    #[serde(default)]
    satisfaction: Option<crate::case::Satisfaction>,
}

/// A time limit for `action` from the body, in 1..=[`MAX_LIMIT_MINUTES`].
fn within(body: &ActionBody, action: &str) -> Result<Span, ApiError> {
    match body.within_minutes {
        None => Err(ApiError::invalid(
            "within_minutes",
            format!("{action} needs within_minutes (the time limit)"),
        )),
        Some(m) if m == 0 || m > MAX_LIMIT_MINUTES => Err(ApiError::invalid(
            "within_minutes",
            format!("{m} is outside 1..={MAX_LIMIT_MINUTES}"),
        )),
        Some(m) => Ok(Span::from_mins(i64::from(m))),
    }
}

fn json_body<T>(
    body: Result<Json<T>, axum::extract::rejection::JsonRejection>,
) -> Result<T, ApiError> {
    body.map(|Json(b)| b)
        .map_err(|e| ApiError::invalid("body", e.body_text()))
}

/// Acknowledge, start handling, resolve, close, reopen, return, extend, comment, transfer,
/// assist, supervise, escalate, reply or archive.
///
/// Who may do what, by role and by where the caller's cells and departments stand on the case
/// (holding it, above or below it on its path, leading or assisting it), is one table
/// (ARCHITECTURE.md, "Case workflow"); a refusal says who may.
#[utoipa::path(post, path = "/api/v1/cases/{id}/actions", operation_id = "actOnCase", tag = "cases",
    params(("id" = String, Path, description = "Case id.", min_length = 1)),
    request_body = ActionBody,
    security(("cookieAuth" = [], "csrfToken" = []), ("bearerAuth" = [])),
    responses(
        (status = 200, description = "The case after the action.", body = CaseDetail),
        (status = 400, response = super::doc::Invalid),
        (status = 403, response = super::doc::Forbidden),
        (status = 404, response = super::doc::NotFound),
        (status = 409, response = super::doc::Conflict),
        super::doc::Authenticated,
    ))]
pub async fn act(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Json<ActionBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let body = json_body(body)?;
    let summary = visible(&state, &caller, &id)?;
    let kind: ActionKind = body.action.parse().map_err(|_| {
        let names: Vec<&str> = ActionKind::iter().map(<&str>::from).collect();
        ApiError::invalid(
            "action",
            format!("{:?} is not one of {}", body.action, names.join(", ")),
        )
    })?;
    let action = match kind {
        ActionKind::Acknowledge => Action::Acknowledge,
        ActionKind::StartHandling => Action::StartHandling,
        ActionKind::Resolve => Action::Resolve,
        ActionKind::Close => Action::Close,
        ActionKind::Reopen => Action::Reopen,
        ActionKind::Comment => Action::Comment,
        ActionKind::Extend => {
            let until = match &body.until {
                Some(Value::Number(n)) => n
                    .as_i64()
                    .ok_or_else(|| ApiError::invalid("until", "not a whole number of ms"))?,
                Some(Value::String(s)) => {
                    TimeParam::parse(s)
                        .map_err(|m| ApiError::invalid("until", m))?
                        .0
                }
                _ => return Err(ApiError::invalid("until", "extend needs until (a time)")),
            };
            Action::Extend {
                until: UtcMillis(until),
            }
        }
        ActionKind::Return => {
            let code = body
                .cell
                .as_deref()
                .ok_or_else(|| ApiError::invalid("cell", "return needs the cell to send it to"))?;
            let g = state.grid.hierarchy();
            let cell = g
                .find(code)
                .ok_or_else(|| ApiError::invalid("cell", format!("{code:?} is not a cell")))?;
            Action::Return {
                path: CellRef::path_to(g, cell),
            }
        }
        ActionKind::Transfer => {
            let code = body
                .unit
                .as_deref()
                .ok_or_else(|| ApiError::invalid("unit", "transfer needs the department's code"))?;
            if state.roster.current().department(code).is_none() {
                return Err(ApiError::invalid(
                    "unit",
                    format!("{code:?} is not a department of the roster"),
                ));
            }
            Action::Transfer {
                department: unit_ref(&state.grid, &state.roster.current(), code)
                    .ok_or_else(|| ApiError::invalid("unit", format!("{code:?} is unknown")))?,
                within: within(&body, "transfer")?,
            }
        }
        ActionKind::Assist => {
            let code = body.unit.as_deref().ok_or_else(|| {
                ApiError::invalid("unit", "assist needs the department's or cell's code")
            })?;
            Action::Assist {
                unit: unit_ref(&state.grid, &state.roster.current(), code).ok_or_else(|| {
                    ApiError::invalid("unit", format!("{code:?} is not a department or a cell"))
                })?,
            }
        }
        ActionKind::Supervise => Action::Supervise {
            within: within(&body, "supervise")?,
        },
        ActionKind::Escalate => Action::Escalate { to: body.level },
        ActionKind::Reply => Action::Reply {
            satisfaction: body.satisfaction.ok_or_else(|| {
                ApiError::invalid("satisfaction", "reply needs the reporter's satisfaction")
            })?,
        },
        ActionKind::Archive => Action::Archive,
    };
    if let Some(note) = &body.note {
        check_note(note)?;
    }
    let now = state.clock.now();
    // The photo is checked now, written only once the caller may act on this case (above),
    // and taken back if the dispatcher refuses the action (wrong state, stale deadline): a
    // case never names a photo that is not stored, and a refused action leaves none behind.
    let photo = match &body.photo {
        Some(b64) => {
            let bytes = decode_photo(b64)?;
            let pid = state.ids.make(
                now.0,
                &[&id, caller.user.actor_id(), &bytes.len().to_string()],
            );
            store_photo(
                &state,
                &pid,
                bytes,
                PhotoMeta {
                    case: id.clone(),
                    by: caller.user.actor_id().to_owned(),
                    at: now,
                },
            )
            .await?;
            Some(pid)
        }
        None => None,
    };
    let mut actor = Actor::person(caller.user.actor_id()).with_role(caller.role().as_str());
    // The cell of the path they act for, else the department of theirs working on the case.
    let acting = caller.acting_cell(&summary.path).or_else(|| {
        summary
            .units
            .iter()
            .find(|u| caller.units().any(|c| c == u.as_str()))
            .cloned()
    });
    if let Some(unit) = acting {
        actor = actor.for_cell(unit);
    }
    let t = Transition {
        action,
        actor,
        note: body.note.filter(|n| !n.trim().is_empty()),
        photo,
        at: now,
        // Who may do what is decided on the case as it is when the action applies.
        authority: Some(Authority {
            role: caller.role(),
            units: caller.units().map(str::to_owned).collect(),
        }),
    };
    tracing::info!(case = %id, login = %caller.user.login, action = t.action.verb(), "case action");
    let stored_photo = t.photo.clone();
    let case = match state.dispatch.transition(&summary.id, t).await {
        Ok(case) => case,
        Err(e) => {
            if let Some(pid) = stored_photo {
                remove_photo(&state, &pid);
            }
            return Err(e.into());
        }
    };
    let st = state.clone();
    tokio::task::spawn_blocking(move || detail_json(&st, &case))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
}

/// What a patrol report is about.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    FireHazard,
    RoadDamage,
    Dispute,
    IllegalParking,
    Suspicious,
    Other,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ReportRequest)]
pub struct ReportBody {
    /// Optional; the only kind.
    #[serde(default)]
    #[schema(pattern = "^patrol$")]
    kind: Option<String>,
    /// Read as text so an unknown category is refused by name, with the list.
    #[schema(value_type = Category)]
    category: String,
    #[serde(default)]
    note: String,
    location: Location,
    /// A JPEG, base64, at most 2 MB decoded.
    #[serde(default)]
    #[schema(content_encoding = "base64", content_media_type = "image/jpeg")]
    photo: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportResponse<'a> {
    case: CaseOut<'a>,
}

const CATEGORIES: &[&str] = &[
    "fire_hazard",
    "road_damage",
    "dispute",
    "illegal_parking",
    "suspicious",
    "other",
];

/// A patrol report, filed as a `patrol` alert through the dispatcher.
///
/// Filed like an alert (stored, located by its position, dispatched, with deadlines and
/// escalation), from the member as its source.
#[utoipa::path(post, path = "/api/v1/reports", operation_id = "fileReport", tag = "cases",
    request_body = ReportBody,
    security(("cookieAuth" = [], "csrfToken" = []), ("bearerAuth" = [])),
    responses(
        (status = 201, description = "The case the report opened or joined.", body = ReportResponse),
        (status = 400, response = super::doc::Invalid),
        (status = 403, response = super::doc::Forbidden),
        super::doc::Authenticated,
    ))]
pub async fn report(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    body: Result<Json<ReportBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let body = json_body(body)?;
    caller.require(
        &[UserRole::Member, UserRole::Operator, UserRole::Admin],
        "report",
    )?;
    if body.kind.as_deref().is_some_and(|k| k != "patrol") {
        return Err(ApiError::invalid("kind", "only \"patrol\" reports exist"));
    }
    if !CATEGORIES.contains(&body.category.as_str()) {
        return Err(ApiError::invalid(
            "category",
            format!(
                "{:?} is not one of {}",
                body.category,
                CATEGORIES.join(", ")
            ),
        ));
    }
    let Location { lon, lat } = body.location;
    if !(-180.0..=180.0).contains(&lon) || !(-90.0..=90.0).contains(&lat) {
        return Err(ApiError::invalid("location", "lon/lat out of range"));
    }
    // A member reports within their cells.
    if caller.role() != UserRole::Admin {
        let g = state.grid.hierarchy();
        let inside = state
            .grid
            .locate(lon, lat)
            .is_some_and(|c| caller.sees_path(&CellRef::path_to(g, c)));
        if !inside {
            return Err(ApiError::forbidden(
                "the location is outside your cells".to_owned(),
            ));
        }
    }
    let person = caller.user.actor_id().to_owned();
    validate_id("source.person", &person)
        .map_err(|e| ApiError::invalid("person", e.to_string()))?;
    check_note(&body.note)?;
    let now = state.clock.now();
    let photo = body.photo.as_deref().map(decode_photo).transpose()?;
    let id = state.ids.make(
        now.0,
        &[
            &person,
            &body.category,
            &body.note,
            &lon.to_string(),
            &lat.to_string(),
        ],
    );
    let alert = Alert {
        schema: protocol::SCHEMA_VERSION,
        id: id.clone(),
        incident: id.clone(),
        phase: AlertPhase::Start,
        site: PATROL_SITE.to_owned(),
        source: AlertSource::Person(person.clone()),
        kind: AlertKind::Patrol,
        severity: Severity::Major,
        rule: body.category.clone(),
        time: now,
        started_at: now,
        ended_at: None,
        location: Some(body.location),
        track: None,
        label: None,
        score: None,
        direction: None,
        count: None,
        detections: Vec::new(),
        tag: None,
        model: None,
        detail: (!body.note.trim().is_empty()).then(|| body.note.trim().to_owned()),
        snapshot: None,
    };
    if let Some(bytes) = photo.clone() {
        store_photo(
            &state,
            &id,
            bytes,
            PhotoMeta {
                case: format!("C-{id}"),
                by: person.clone(),
                at: now,
            },
        )
        .await?;
    }
    let raw = serde_json::to_vec(&alert).map_err(|e| ApiError::internal(e.to_string()))?;
    // As for actions: a report the hub refuses leaves no photo behind.
    let outcome = match state.ingest.submit_report(Bytes::from(raw)).await {
        Ok(crate::ingest::Outcome::Rejected(why)) => Err(ApiError::invalid("body", why.reason)),
        Ok(o) => Ok(o),
        Err(e) => Err(ApiError::unavailable(e.to_string())),
    };
    if let Err(e) = outcome {
        if photo.is_some() {
            remove_photo(&state, &id);
        }
        return Err(e);
    }
    // Stored; the dispatcher files it within milliseconds. Wait for the case (bounded).
    let case_id = format!("C-{id}");
    for _ in 0..100 {
        if let Some(s) = state.book.get(&case_id) {
            tracing::info!(case = %case_id, login = %caller.user.login, category = %body.category, "patrol report filed");
            let body = ReportResponse {
                case: CaseOut::new(&s, state.clock.now()),
            };
            return Ok((StatusCode::CREATED, Json(body)).into_response());
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    Err(ApiError::unavailable(format!(
        "report {id} is stored but not yet filed; it will appear as case {case_id}"
    )))
}
