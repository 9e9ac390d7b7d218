//! The live feed: Server-Sent Events of case changes, filtered to the caller's cells.
//!
//! A reconnecting browser sends `Last-Event-ID` by itself; the feed replays every logged event
//! after it, then goes live. The subscription is taken before the replay is read, and live
//! events at or below the replay's last number are skipped, so nothing falls in between and
//! nothing comes twice. A client too far behind (beyond the log, or lagging the broadcast) gets
//! `event: reset` and reloads the list; each reset is counted.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream, StreamExt};
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use protocol::UtcMillis;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::ApiState;
use super::auth::Caller;
use super::cases::CaseOut;
use super::error::ApiError;
use super::params::Params;
use crate::book::{CaseEvent, CatchUp, EventKind};
use crate::case::AuditAction;

/// The `data` of an SSE `case` event (the event's `id` is `seq`).
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Event)]
pub struct EventData<'a> {
    #[schema(minimum = 1)]
    seq: u64,
    at: UtcMillis,
    kind: EventKind,
    /// The audit action behind the event (`acknowledge`, `escalate`, …).
    #[schema(required = true)]
    action: Option<AuditAction>,
    case: CaseOut<'a>,
}

fn event(e: &CaseEvent, state: &ApiState) -> Event {
    let data = EventData {
        seq: e.seq,
        at: e.at,
        kind: e.kind,
        action: e.action,
        case: CaseOut::new(&e.case, state.clock.now()),
    };
    let data = serde_json::to_string(&data).unwrap_or_else(|_| "{}".to_owned());
    Event::default()
        .id(e.seq.to_string())
        .event("case")
        .data(data)
}

fn reset() -> Event {
    Event::default().event("reset").data("{}")
}

/// Decrements the open-connections gauge when the stream is dropped.
struct Gauge(Arc<ApiState>);

impl Drop for Gauge {
    fn drop(&mut self) {
        self.0
            .api_metrics
            .feed_clients
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// The feed's query (`Last-Event-ID`, when sent, wins).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Replay events after this seq (for clients that cannot set headers).
    since: Option<u64>,
}

/// Live feed of case events in scope (Server-Sent Events).
///
/// Each event: `id: <seq>`, `event: case`, `data: <Event JSON>` (schema
/// `#/components/schemas/Event`). If the requested replay point is older than the in-memory
/// log: `event: reset`, `data: {}`. A `: ping` comment every 15 s.
#[utoipa::path(get, path = "/api/v1/events", operation_id = "events", tag = "events",
    params(
        ("Last-Event-ID" = Option<u64>, Header, description = "Replay events after this seq."),
        EventsQuery,
    ),
    security(("cookieAuth" = []), ("bearerAuth" = [])),
    responses(
        (status = 200, description = "The event stream; the data of `case` events is an `Event`.",
            content_type = "text/event-stream", body = String),
        (status = 400, response = super::doc::Invalid),
        super::doc::Authenticated,
    ))]
pub async fn events(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    headers: HeaderMap,
    Params(q): Params<EventsQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let since = match headers.get("last-event-id") {
        None => q.since,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError::invalid("Last-Event-ID", format!("{v:?} is not an event id"))
                })?,
        ),
    };
    let (token, expires) = (caller.token.clone(), caller.expires);
    let rx = state.book.subscribe();
    let mut first = Vec::new();
    let mut floor = state.book.seq();
    if let Some(since) = since {
        match state.book.since(since) {
            CatchUp::Events(evs) => {
                for e in evs.iter().filter(|e| caller.sees(&e.case)) {
                    first.push(Ok(event(e, &state)));
                }
                floor = evs.last().map_or(since.max(floor), |e| e.seq);
            }
            CatchUp::TooOld => {
                state
                    .api_metrics
                    .feed_resets
                    .fetch_add(1, Ordering::Relaxed);
                first.push(Ok(reset()));
            }
        }
    }
    state
        .api_metrics
        .feed_clients
        .fetch_add(1, Ordering::Relaxed);
    let gauge = Arc::new(Gauge(state.clone()));
    let st = state.clone();
    let live = BroadcastStream::new(rx).filter_map(move |r| {
        let _keep = gauge.clone();
        let out = match r {
            Ok(e) if e.seq > floor && caller.sees(&e.case) => Some(Ok(event(&e, &st))),
            Ok(_) => None,
            Err(BroadcastStreamRecvError::Lagged(n)) => {
                st.api_metrics.feed_resets.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(missed = n, login = %caller.user.login, "live feed client fell behind; told to reload");
                Some(Ok(reset()))
            }
        };
        futures_util::future::ready(out)
    });
    // The feed ends when the hub stops (otherwise the server's graceful shutdown would wait
    // on it forever: a browser keeps it open), when its session ends (logout, revocation: it
    // is re-checked whenever any session ends) and when the session expires.
    let mut stop = state.stop.clone();
    let mut ended = state.sessions.watch_ended();
    let sessions = state.sessions.clone();
    let clock = state.clock.clone();
    let left = Duration::from_millis(u64::try_from(expires.0 - clock.now().0).unwrap_or(0));
    let stopped = async move {
        let expiry = tokio::time::sleep(left);
        tokio::pin!(expiry);
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                () = &mut expiry => return,
                changed = ended.changed() => {
                    if changed.is_err() || sessions.get(&token, clock.now()).is_none() {
                        return;
                    }
                }
            }
        }
    };
    let live = live.take_until(stopped);
    Ok(Sse::new(stream::iter(first).chain(live)).keep_alive(
        KeepAlive::new()
            .interval(Duration::from_secs(15))
            .text("ping"),
    ))
}
