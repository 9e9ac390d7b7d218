//! Grid cells and their people, sites and their health, the watchlist, tag trajectories,
//! statistics and the dashboard's settings.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use protocol::UtcMillis;
use protocol::alert::Location;
use serde::Deserialize;
use serde_json::{Value, json};

use super::ApiState;
use super::auth::Caller;
use super::error::ApiError;
use crate::book::DeadlineState;
use crate::case::CellRef;
use crate::grid::{CellId, Level};
use crate::store::{AuditQuery, WatchAudit, WatchEntry, WatchScope};
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

pub async fn grid(State(state): State<Arc<ApiState>>, caller: Caller) -> Json<Value> {
    if caller.is_admin() {
        return Json(state.grid_geojson.clone());
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
    Json(doc)
}

pub async fn cell(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Path(code): Path<String>,
) -> Result<Json<Value>, ApiError> {
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
    let on_duty = state.roster.on_duty(&code, now).people;
    let people: Vec<Value> = state
        .roster
        .people_of(&code)
        .into_iter()
        .map(|p| {
            json!({
                "id": p.id(),
                "name": p.name(),
                "phone": p.phone(),
                "roles": p.roles().iter().map(|r| r.as_str()).collect::<Vec<_>>(),
                "on_duty": on_duty.iter().any(|d| d == p.id()),
            })
        })
        .collect();
    let children: Vec<CellRef> = g
        .cells()
        .iter()
        .filter(|c| c.parent() == Some(id))
        .map(|c| CellRef::new(c.code(), c.name(), c.level()))
        .collect();
    Ok(Json(json!({
        "cell": cell_ref(&state, id),
        "parent": g.parent(id).and_then(|p| g.get(p)).map(|p| p.code().to_owned()),
        "children": children,
        "people": people,
    })))
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

pub async fn sites(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
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
        out.push(json!({
            "id": id,
            "name": state.sites.get(id).map(|s| s.name.clone()).unwrap_or_default(),
            "cell": site_cell(&state, id).and_then(|c| cell_ref(&state, c)),
            "location": site_location(&state, id),
            "online": st.is_some_and(|s| s.online),
            "last_seen": st.and_then(|s| s.last_seen),
            "since": st.and_then(|s| s.since),
            "cameras": health.map(|h| json!(h.cameras)).unwrap_or(json!([])),
            "readers": health.map(|h| json!(h.readers)).unwrap_or(json!([])),
        }));
    }
    Ok(Json(json!({ "sites": out })))
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

/// A scope as the API shows it: the cell's code, name and level, or null for hub-wide.
fn scope_ref(state: &ApiState, scope: &WatchScope) -> Value {
    match scope {
        WatchScope::Everywhere => Value::Null,
        WatchScope::Cell(code) => {
            let g = state.grid.hierarchy();
            match g.find(code).and_then(|id| cell_ref(state, id)) {
                Some(c) => json!(c),
                // Removed from the grid since: still shown, by its code.
                None => json!({ "code": code, "name": code, "level": Value::Null }),
            }
        }
    }
}

fn watch_json(state: &ApiState, e: &WatchEntry) -> Value {
    let mut v = json!(e);
    v["scope"] = scope_ref(state, &e.scope);
    v
}

fn audit_json(state: &ApiState, r: &WatchAudit) -> Value {
    let mut v = json!(r);
    v["scope"] = scope_ref(state, &r.scope);
    if let (Some(prev), Some(p)) = (&r.previous, v.get_mut("previous")) {
        *p = watch_json(state, prev);
    }
    v
}

/// `GET /api/v1/watchlist`: the entries the caller may see (an operator: those of their cells
/// and below; an admin: all).
pub async fn watchlist(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[UserRole::Operator, UserRole::Admin], "read the watchlist")?;
    let authority = watch_authority(&caller);
    let g = state.grid.hierarchy();
    let entries: Vec<Value> = state
        .store
        .watchlist()
        .entries()?
        .iter()
        .filter(|e| authority.sees(g, &e.scope))
        .map(|e| watch_json(&state, e))
        .collect();
    Ok(Json(json!({ "entries": entries })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchBody {
    tag: String,
    #[serde(default)]
    case_ref: String,
    #[serde(default)]
    note: String,
    /// The cell it applies in (and below). Absent: an operator's only cell; for an admin,
    /// every site.
    #[serde(default)]
    cell: Option<String>,
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

/// `POST /api/v1/watchlist`: adds a tag, or replaces the entry of a tag the caller may see.
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
        crate::store::WatchAction::Added => StatusCode::CREATED,
        _ => StatusCode::OK,
    };
    Ok((
        status,
        Json(json!({
            "entry": watch_json(&state, &entry),
            "sites": record.sites,
            "audit": record.seq,
        })),
    )
        .into_response())
}

/// `DELETE /api/v1/watchlist/{tag}?reason=`: an entry the caller may not see is not found.
pub async fn watch_remove(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Path(tag): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    caller.require(
        &[UserRole::Operator, UserRole::Admin],
        "change the watchlist",
    )?;
    let mut reason = None;
    for (k, v) in q {
        match k.as_str() {
            "reason" => {
                bounded("reason", &v, MAX_WATCH_NOTE_CHARS)?;
                reason = Some(v).filter(|r| !r.trim().is_empty());
            }
            other => {
                return Err(ApiError::invalid(
                    other,
                    format!("unknown parameter {other:?}"),
                ));
            }
        }
    }
    let record = state
        .dispatch
        .watch_remove(&tag, watch_by(&caller), reason)
        .await?;
    Ok(Json(json!({ "sites": record.sites, "audit": record.seq })))
}

/// `GET /api/v1/watchlist/audit?tag=&limit=&before=` (admins): every change to the watchlist,
/// newest first, with who, when and the police case number.
pub async fn watch_audit(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[UserRole::Admin], "read the watchlist's audit log")?;
    let page = super::Page::parse(&q, &["tag"])?;
    let tag = q.get("tag").cloned();
    let st = state.clone();
    let (records, more) = tokio::task::spawn_blocking(move || {
        let query = AuditQuery {
            before: page.before,
            tag: tag.as_deref(),
            // One more than asked, to know whether there is a next page.
            limit: page.limit + 1,
        };
        st.store.watchlist().audit(&query).map(|mut r| {
            let more = r.len() > page.limit;
            r.truncate(page.limit);
            (r, more)
        })
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))??;
    let next_before = more
        .then(|| records.last().map(|r| r.seq.to_string()))
        .flatten();
    Ok(Json(json!({
        "records": records.iter().map(|r| audit_json(&state, r)).collect::<Vec<_>>(),
        "next_before": next_before,
    })))
}

fn range(q: &HashMap<String, String>, allowed: &[&str]) -> Result<(i64, i64), ApiError> {
    for k in q.keys() {
        if !allowed.contains(&k.as_str()) {
            return Err(ApiError::invalid(k, format!("unknown parameter {k:?}")));
        }
    }
    let get = |k: &str, default: i64| -> Result<i64, ApiError> {
        match q.get(k) {
            None => Ok(default),
            Some(v) => super::cases::ms(k, v),
        }
    };
    Ok((get("from", 0)?, get("to", i64::MAX)?))
}

pub async fn trajectory(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Path(tag): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[UserRole::Operator, UserRole::Admin], "trace a tag")?;
    let (from, to) = range(&q, &["from", "to"])?;
    let all = crate::dispatch::trajectory(&state.store, &tag, UtcMillis(from), UtcMillis(to))?;
    let sightings: Vec<Value> = all
        .into_iter()
        .filter(|s| sees_site(&state, &caller, &s.site))
        .map(|s| {
            json!({
                "site": s.site, "reader": s.reader, "first": s.first, "last": s.last,
                "reads": s.reads, "rssi": s.rssi, "location": site_location(&state, &s.site),
            })
        })
        .collect();
    Ok(Json(json!({ "tag": tag, "sightings": sightings })))
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
}

pub async fn stats(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[UserRole::Operator, UserRole::Admin], "read statistics")?;
    let mut rest = q.clone();
    let level = match rest.remove("level") {
        None => Level::Grid,
        Some(l) => serde_json::from_value::<Level>(Value::String(l.clone()))
            .map_err(|_| ApiError::invalid("level", format!("{l:?} is not a level")))?,
    };
    let (from, to) = range(&rest, &["from", "to"])?;
    let now = state.clock.now();
    let mut by_cell: BTreeMap<String, (CellRef, CellStats)> = BTreeMap::new();
    let scope = caller.scope(&state.book);
    state.book.each(|row| {
        if row.opened_at < from || row.opened_at >= to || !scope.sees(row) {
            return;
        }
        let s = &row.summary;
        let Some(cell) = s.path.iter().find(|c| c.level == level) else {
            return;
        };
        let e = by_cell
            .entry(cell.code.clone())
            .or_insert_with(|| (cell.clone(), CellStats::default()));
        let st = &mut e.1;
        st.cases += 1;
        if s.is_open() {
            st.open += 1;
            if s.deadline_state(now) == DeadlineState::Overdue {
                st.overdue += 1;
            }
        }
        if let Some(a) = s.acked_at {
            st.acknowledged += 1;
            st.ack_ms += a.0 - s.opened_at.0;
            if s.escalations == 0 {
                st.on_time += 1;
            }
        }
        if let Some(r) = s.resolved_at {
            st.resolved += 1;
            st.resolve_ms += r.0 - s.opened_at.0;
        }
    });
    let mean = |sum: i64, n: u64| (n > 0).then(|| sum / n as i64);
    let mut rows: Vec<(String, f64, u64, Value)> = by_cell
        .into_values()
        .map(|(cell, s)| {
            let ratio = (s.acknowledged > 0).then(|| s.on_time as f64 / s.acknowledged as f64);
            let code = cell.code.clone();
            let v = json!({
                "cell": cell,
                "cases": s.cases,
                "open": s.open,
                "overdue": s.overdue,
                "acknowledged": s.acknowledged,
                "resolved": s.resolved,
                "mean_ack_ms": mean(s.ack_ms, s.acknowledged),
                "mean_resolve_ms": mean(s.resolve_ms, s.resolved),
                "on_time_ratio": ratio,
            });
            (code, ratio.unwrap_or(0.0), s.overdue, v)
        })
        .collect();
    // 红黑榜: best first by the share acknowledged without climbing, then fewest overdue.
    rows.sort_by(|a, b| {
        b.1.partial_cmp(&a.1)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.2.cmp(&b.2))
            .then(a.0.cmp(&b.0))
    });
    let n = rows.len().min(5);
    let red: Vec<&str> = rows.iter().take(n).map(|r| r.0.as_str()).collect();
    let black: Vec<&str> = rows.iter().rev().take(n).map(|r| r.0.as_str()).collect();
    Ok(Json(json!({
        "from": UtcMillis(from),
        "to": (to != i64::MAX).then_some(UtcMillis(to)),
        "level": level,
        "cells": rows.iter().map(|r| r.3.clone()).collect::<Vec<_>>(),
        "ranking": {"red": red, "black": black},
    })))
}

pub async fn ui_config(State(state): State<Arc<ApiState>>, _caller: Caller) -> Json<Value> {
    let b = state.grid.hierarchy().bbox();
    Json(json!({
        "tile_url": state.http.tile_url,
        "center": [(b.min.lon + b.max.lon) / 2.0, (b.min.lat + b.max.lat) / 2.0],
        "title": state.http.title,
    }))
}
