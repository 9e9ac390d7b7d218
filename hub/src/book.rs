//! The case book ([`CaseBook`]): what the API reads. A summary of every case, kept in memory
//! in newest-first order, and the live feed's event log.
//!
//! The dispatcher owns the cases and is their only writer; after each write to disk it hands
//! the changed cases here ([`CaseBook::put`]). The API never asks the dispatcher to list cases:
//! a list over 100,000 cases is a scan of this in-memory index under a read lock, so it never
//! waits behind alert filing, and filing never waits behind a list.
//!
//! Events: every change becomes one [`CaseEvent`] with a sequence number, kept in a ring of the
//! last [`EVENT_LOG`] (for clients catching up after a reconnect) and sent on a broadcast
//! channel (live). A subscriber that falls behind the channel is told to reload (`reset`),
//! counted in `hub_api_feed_resets_total`.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, RwLock};

use protocol::alert::Location;
use protocol::{AlertKind, AlertSource, Severity, UtcMillis};
use serde::Serialize;
use tokio::sync::broadcast;

use crate::case::{AuditAction, Case, CaseId, CaseState, CellRef, Deadline};
use crate::grid::Level;

/// Events kept for clients that reconnect.
pub const EVENT_LOG: usize = 10_000;

/// A deadline counts as near when less than this share of its span is left…
const NEAR_SHARE: f64 = 0.25;
/// …or less than this.
const NEAR_MS: i64 = 60_000;

/// What a list row, a map pin and a feed event show of a case.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CaseSummary {
    pub id: CaseId,
    pub state: CaseState,
    pub severity: Severity,
    pub kind: AlertKind,
    pub rule: String,
    pub site: String,
    pub source: AlertSource,
    pub count: u64,
    pub opened_at: UtcMillis,
    pub updated_at: UtcMillis,
    pub last_alert_at: UtcMillis,
    pub location: Option<Location>,
    pub level: Option<Level>,
    pub cell: Option<CellRef>,
    pub path: Vec<CellRef>,
    pub deadline: Option<Deadline>,
    /// When the running deadline was set (its span starts here); for "near".
    #[serde(skip)]
    pub deadline_since: Option<UtcMillis>,
    /// Overdue at the top level: the timer stopped but the case is late.
    #[serde(skip)]
    pub overdue_at_top: bool,
    /// The last audit record's number: tells a new record from a repeat.
    #[serde(skip)]
    pub audit_seq: u64,
    pub handler: Option<String>,
    pub step: u32,
    pub acked_at: Option<UtcMillis>,
    pub resolved_at: Option<UtcMillis>,
    /// How many times a deadline made it climb.
    pub escalations: u32,
    /// The codes of the departments (and assisting cells) working on it now: their people
    /// see it as they see their cells' cases.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub units: Vec<String>,
    /// The department leading it now, if any (routed or transferred).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub department: Option<CellRef>,
    /// Supervised (督办) and not yet resolved; `overdue` when its deadline passed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub supervised: Option<Supervised>,
    /// Archived (销号归档).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub archived: bool,
    /// For the statistics: transfers (交办) so far.
    #[serde(skip)]
    pub transfers: u32,
    /// For the statistics: ever supervised (督办).
    #[serde(skip)]
    pub was_supervised: bool,
    /// For the statistics: the reporter's satisfaction, once replied to.
    #[serde(skip)]
    pub satisfaction: Option<crate::case::Satisfaction>,
}

/// A supervision as the list shows it.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Supervised {
    /// By when the case must be resolved.
    pub due: UtcMillis,
    /// The deadline passed with the case unresolved.
    pub overdue: bool,
}

/// Deadline state of a case at a moment: how a pin is coloured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeadlineState {
    OnTime,
    Near,
    Overdue,
    None,
}

impl CaseSummary {
    pub fn of(case: &Case) -> Self {
        let first = |a: AuditAction| case.audit.iter().find(|r| r.action == a).map(|r| r.at);
        let last = |a: AuditAction| {
            case.audit
                .iter()
                .rev()
                .find(|r| r.action == a)
                .map(|r| r.at)
        };
        // The running deadline was set by the last record that moved the case (dispatch,
        // climb, acknowledge, extension…); notifications and comments do not reset it.
        let deadline_since = case
            .audit
            .iter()
            .rev()
            .find(|r| !matches!(r.action, AuditAction::Notify | AuditAction::Comment))
            .map(|r| r.fired_at.unwrap_or(r.at));
        Self {
            id: case.id.clone(),
            state: case.state,
            severity: case.severity,
            kind: case.kind,
            rule: case.rule.clone(),
            site: case.site.clone(),
            source: case.source.clone(),
            count: case.count,
            opened_at: case.opened_at,
            updated_at: case.updated_at,
            last_alert_at: case.last_alert_at,
            location: case.location,
            level: case.level(),
            cell: case.current_cell().cloned(),
            path: case.path.clone(),
            // While a department's time limit is the case's timer, it is the deadline shown.
            deadline: case.deadline.or_else(|| {
                let t = case.timed_lead().filter(|_| case.is_open())?;
                let at = t.due?;
                Some(Deadline {
                    at,
                    kind: crate::case::DeadlineKind::Resolve,
                })
                .filter(|_| {
                    matches!(
                        case.state,
                        CaseState::Dispatched | CaseState::Acknowledged | CaseState::Handling
                    )
                })
            }),
            deadline_since,
            overdue_at_top: case.overdue_at_top.is_some() && case.is_open(),
            audit_seq: case.audit.last().map_or(0, |r| r.seq),
            handler: case.handler.clone(),
            step: case.step,
            acked_at: first(AuditAction::Acknowledge),
            resolved_at: last(AuditAction::Resolve),
            escalations: case
                .audit
                .iter()
                .filter(|r| r.action == AuditAction::Escalate)
                .count() as u32,
            units: case
                .tasks
                .iter()
                .filter(|t| t.is_active())
                .map(|t| t.unit.code.clone())
                .collect(),
            department: case
                .tasks
                .iter()
                .rev()
                .find(|t| t.is_active_lead())
                .map(|t| t.unit.clone()),
            supervised: case
                .supervision
                .as_ref()
                .filter(|_| !matches!(case.state, CaseState::Resolved | CaseState::Closed))
                .map(|s| Supervised {
                    due: s.due,
                    overdue: s.overdue,
                }),
            archived: case.archived.is_some(),
            transfers: case
                .audit
                .iter()
                .filter(|r| r.action == AuditAction::Transfer)
                .count() as u32,
            was_supervised: case.supervision.is_some(),
            satisfaction: case.reply.as_ref().map(|r| r.satisfaction),
        }
    }

    pub fn is_open(&self) -> bool {
        !matches!(self.state, CaseState::Resolved | CaseState::Closed)
    }

    pub fn deadline_state(&self, now: UtcMillis) -> DeadlineState {
        if self.overdue_at_top {
            return DeadlineState::Overdue;
        }
        let Some(d) = self.deadline else {
            return DeadlineState::None;
        };
        let left = d.at.0 - now.0;
        if left <= 0 {
            return DeadlineState::Overdue;
        }
        let span = self.deadline_since.map_or(0, |s| d.at.0 - s.0).max(1);
        if left < NEAR_MS || (left as f64) < span as f64 * NEAR_SHARE {
            DeadlineState::Near
        } else {
            DeadlineState::OnTime
        }
    }

    /// Whether the case's path passes through `code` (the cell or anything under it holds it).
    pub fn under(&self, code: &str) -> bool {
        self.path.iter().any(|c| c.code == code)
    }
}

/// What kind of change an event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A new case.
    Opened,
    /// Another alert joined it.
    Alert,
    /// Someone acted on it (the action says what).
    Transition,
    /// A deadline passed and it climbed a level (or nobody was on duty).
    Escalated,
    /// Anything else (delivery outcomes).
    Updated,
}

/// One change, as the live feed sends it.
#[derive(Debug, Clone)]
pub struct CaseEvent {
    pub seq: u64,
    pub at: UtcMillis,
    pub kind: EventKind,
    pub action: Option<AuditAction>,
    pub case: Arc<CaseSummary>,
}

/// Most cells on a path (the five levels, county to micro-grid).
const MAX_PATH: usize = 5;

/// What the list's filters look at, packed so a scan over 100,000 rows stays in cache:
/// strings (cell codes, site ids) interned as numbers.
#[derive(Debug, Clone)]
pub struct Row {
    pub state: CaseState,
    pub severity: Severity,
    pub kind: AlertKind,
    pub level: Option<Level>,
    pub opened_at: i64,
    pub site: u32,
    path: [u32; MAX_PATH],
    path_len: u8,
    pub summary: Arc<CaseSummary>,
}

impl Row {
    pub fn is_open(&self) -> bool {
        !matches!(self.state, CaseState::Resolved | CaseState::Closed)
    }

    /// The interned codes of the path, top first.
    pub fn path(&self) -> &[u32] {
        &self.path[..usize::from(self.path_len)]
    }

    /// Whether the path passes through the interned cell `code`.
    pub fn under(&self, code: u32) -> bool {
        self.path().contains(&code)
    }
}

/// A set of cells as interned numbers: a user's cells, for scope checks in a scan.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// Everything (admins).
    pub all: bool,
    pub cells: Vec<u32>,
    /// The same codes as text, for the units (departments) working on a case, which are few
    /// and not interned.
    pub codes: Vec<String>,
}

impl Scope {
    pub fn sees(&self, row: &Row) -> bool {
        self.all
            || row.path().iter().any(|c| self.cells.contains(c))
            || row.summary.units.iter().any(|u| self.codes.contains(u))
    }
}

/// Interned number never given to a string: matches nothing.
pub const UNKNOWN: u32 = u32::MAX;

#[derive(Debug, Default)]
struct Inner {
    /// Newest first: (opened_at desc, id).
    order: BTreeMap<(Reverse<i64>, CaseId), Row>,
    /// id → opened_at, to find a row in `order`.
    opened: HashMap<CaseId, i64>,
    intern: HashMap<String, u32>,
    log: VecDeque<Arc<CaseEvent>>,
    seq: u64,
}

impl Inner {
    fn intern(&mut self, s: &str) -> u32 {
        if let Some(&n) = self.intern.get(s) {
            return n;
        }
        let n = self.intern.len() as u32;
        self.intern.insert(s.to_owned(), n);
        n
    }

    fn row(&mut self, s: Arc<CaseSummary>) -> Row {
        let mut path = [UNKNOWN; MAX_PATH];
        // Deepest cells kept if a path were ever longer than the five levels.
        let skip = s.path.len().saturating_sub(MAX_PATH);
        let mut len = 0u8;
        for (i, c) in s.path.iter().skip(skip).enumerate() {
            path[i] = self.intern(&c.code);
            len += 1;
        }
        Row {
            state: s.state,
            severity: s.severity,
            kind: s.kind,
            level: s.level,
            opened_at: s.opened_at.0,
            site: self.intern(&s.site),
            path,
            path_len: len,
            summary: s,
        }
    }

    fn insert(&mut self, s: Arc<CaseSummary>) -> Option<Arc<CaseSummary>> {
        let old = self
            .opened
            .insert(s.id.clone(), s.opened_at.0)
            .and_then(|at| self.order.remove(&(Reverse(at), s.id.clone())))
            .map(|r| r.summary);
        let key = (Reverse(s.opened_at.0), s.id.clone());
        let row = self.row(s);
        self.order.insert(key, row);
        old
    }
}

/// The API's read side of the cases, and the live feed. Shared (`Arc`); the dispatcher writes.
#[derive(Debug)]
pub struct CaseBook {
    inner: RwLock<Inner>,
    live: broadcast::Sender<Arc<CaseEvent>>,
}

impl Default for CaseBook {
    fn default() -> Self {
        let (live, _) = broadcast::channel(1024);
        Self {
            inner: RwLock::new(Inner::default()),
            live,
        }
    }
}

/// A page of the case list.
#[derive(Debug)]
pub struct Page {
    pub cases: Vec<Arc<CaseSummary>>,
    pub total: usize,
    /// Where the next page starts: (opened_at, id) of the last row.
    pub next: Option<(i64, CaseId)>,
}

/// What catching up from an event id found.
#[derive(Debug)]
pub enum CatchUp {
    /// Every event after the id, in order.
    Events(Vec<Arc<CaseEvent>>),
    /// The id is older than the log: the client must reload.
    TooOld,
}

impl CaseBook {
    /// Loads the summaries of stored cases (at start), without events.
    pub fn load<'a>(&self, cases: impl IntoIterator<Item = &'a Case>) {
        let mut g = self.inner.write().unwrap_or_else(|e| e.into_inner());
        for c in cases {
            g.insert(Arc::new(CaseSummary::of(c)));
        }
    }

    /// The interned number of a cell code or site id ([`UNKNOWN`] if no case has it).
    pub fn interned(&self, s: &str) -> u32 {
        let g = self.inner.read().unwrap_or_else(|e| e.into_inner());
        g.intern.get(s).copied().unwrap_or(UNKNOWN)
    }

    /// A user's cells as a [`Scope`].
    pub fn scope(&self, all: bool, cells: &[String]) -> Scope {
        Scope {
            all,
            cells: cells.iter().map(|c| self.interned(c)).collect(),
            codes: cells.to_vec(),
        }
    }

    /// Records a changed case (after it is on disk) and emits its event.
    pub fn put(&self, case: &Case, at: UtcMillis) {
        let new = Arc::new(CaseSummary::of(case));
        let last = case.audit.last();
        let event = {
            let mut g = self.inner.write().unwrap_or_else(|e| e.into_inner());
            let old = g.insert(new.clone());
            let person_acted = last.is_some_and(|r| {
                matches!(
                    r.action,
                    AuditAction::Acknowledge
                        | AuditAction::StartHandling
                        | AuditAction::Resolve
                        | AuditAction::Close
                        | AuditAction::Reopen
                        | AuditAction::Return
                        | AuditAction::Extend
                        | AuditAction::Comment
                )
            });
            let timer_acted = last.is_some_and(|r| {
                matches!(
                    r.action,
                    AuditAction::Escalate | AuditAction::NobodyOnDuty | AuditAction::OverdueAtTop
                )
            });
            let kind = match &old {
                None => EventKind::Opened,
                Some(o) if o.audit_seq != new.audit_seq && person_acted => EventKind::Transition,
                Some(o)
                    if o.level != new.level || (o.audit_seq != new.audit_seq && timer_acted) =>
                {
                    EventKind::Escalated
                }
                Some(o) if o.count != new.count => EventKind::Alert,
                Some(o) if **o == *new => return,
                Some(_) => EventKind::Updated,
            };
            g.seq += 1;
            let event = Arc::new(CaseEvent {
                seq: g.seq,
                at,
                kind,
                action: last.map(|r| r.action),
                case: new,
            });
            if g.log.len() == EVENT_LOG {
                g.log.pop_front();
            }
            g.log.push_back(event.clone());
            event
        };
        // No receivers is fine: nobody is watching.
        let _ = self.live.send(event);
    }

    /// Forgets cases removed from the store (retention), without an event: they are closed
    /// cases long past, and a client's list loses them at its next reload.
    pub fn remove(&self, ids: &[CaseId]) {
        if ids.is_empty() {
            return;
        }
        let mut g = self.inner.write().unwrap_or_else(|e| e.into_inner());
        for id in ids {
            if let Some(at) = g.opened.remove(id) {
                g.order.remove(&(Reverse(at), id.clone()));
            }
        }
    }

    /// The ids of every case not closed (resolved ones included: they may be reopened).
    pub fn unclosed_ids(&self) -> Vec<CaseId> {
        let g = self.inner.read().unwrap_or_else(|e| e.into_inner());
        g.order
            .values()
            .filter(|r| r.summary.state != CaseState::Closed)
            .map(|r| r.summary.id.clone())
            .collect()
    }

    pub fn get(&self, id: &str) -> Option<Arc<CaseSummary>> {
        let g = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let (id, &at) = g.opened.get_key_value(id)?;
        g.order
            .get(&(Reverse(at), id.clone()))
            .map(|r| r.summary.clone())
    }

    pub fn len(&self) -> usize {
        self.inner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .order
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Newest first, after `after`, matching `keep`; at most `limit` rows, and the count of
    /// all matches.
    /// Newest first, after `after`, matching `keep`; at most `limit` rows, and the count of
    /// all matches (the whole book is scanned for it: a few milliseconds at 100,000 cases).
    pub fn page(
        &self,
        keep: impl Fn(&Row) -> bool,
        after: Option<(i64, CaseId)>,
        limit: usize,
    ) -> Page {
        let g = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let mut cases: Vec<Arc<CaseSummary>> = Vec::with_capacity(limit);
        let mut total = 0;
        let mut more = false;
        let start = after.map(|(at, id)| (Reverse(at), id));
        for (k, row) in g.order.iter() {
            if !keep(row) {
                continue;
            }
            total += 1;
            let past_cursor = start.as_ref().is_none_or(|c| k > c);
            if past_cursor {
                if cases.len() < limit {
                    cases.push(row.summary.clone());
                } else {
                    more = true;
                }
            }
        }
        let next = if more {
            cases.last().map(|s| (s.opened_at.0, s.id.clone()))
        } else {
            None
        };
        Page { cases, total, next }
    }

    /// Every row (statistics).
    pub fn each(&self, mut f: impl FnMut(&Row)) {
        let g = self.inner.read().unwrap_or_else(|e| e.into_inner());
        for row in g.order.values() {
            f(row);
        }
    }

    /// Subscribes to live events; call before [`CaseBook::since`] so nothing falls between.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<CaseEvent>> {
        self.live.subscribe()
    }

    /// The last event's number.
    pub fn seq(&self) -> u64 {
        self.inner.read().unwrap_or_else(|e| e.into_inner()).seq
    }

    /// Every logged event after `seq`.
    pub fn since(&self, seq: u64) -> CatchUp {
        let g = self.inner.read().unwrap_or_else(|e| e.into_inner());
        if seq >= g.seq {
            return CatchUp::Events(Vec::new());
        }
        match g.log.front() {
            Some(first) if first.seq <= seq + 1 => {
                CatchUp::Events(g.log.iter().filter(|e| e.seq > seq).cloned().collect())
            }
            _ => CatchUp::TooOld,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(id: &str, opened: i64, path: &[&str]) -> Case {
        let alert = testkit::AlertBuilder::new("s1", 0)
            .severity(Severity::Critical)
            .at(UtcMillis(opened))
            .build();
        let path = path
            .iter()
            .map(|c| CellRef::new(*c, *c, Level::Grid))
            .collect();
        struct Nobody;
        impl crate::case::Duty for Nobody {
            fn on_duty(&self, _: &str, _: UtcMillis) -> Vec<String> {
                vec!["p1".into()]
            }
        }
        let (c, _) = Case::open(
            id.into(),
            &alert,
            path,
            UtcMillis(opened),
            &crate::case::Policy::default(),
            &Nobody,
        );
        c
    }

    #[test]
    fn pages_newest_first_with_cursor_and_filter() {
        let book = CaseBook::default();
        for i in 0..10 {
            let path: &[&str] = if i % 2 == 0 {
                &["top", "a"]
            } else {
                &["top", "b"]
            };
            book.put(&summary(&format!("C{i}"), 1000 + i, path), UtcMillis(0));
        }
        let a = book.interned("a");
        let p = book.page(|s| s.under(a), None, 3);
        let ids: Vec<_> = p.cases.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["C8", "C6", "C4"]);
        assert_eq!(p.total, 5);
        let p2 = book.page(|s| s.under(a), p.next.clone(), 3);
        let ids: Vec<_> = p2.cases.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["C2", "C0"]);
        assert!(p2.next.is_none());
        assert_eq!(book.page(|_| true, None, 100).cases.len(), 10);
    }

    #[test]
    fn removed_cases_leave_the_list_and_the_rest_stay() {
        let book = CaseBook::default();
        for i in 0..4 {
            book.put(&summary(&format!("C{i}"), 1000 + i, &["top"]), UtcMillis(0));
        }
        let seq = book.seq();
        book.remove(&["C1".into(), "C3".into(), "nope".into()]);
        assert!(book.get("C1").is_none() && book.get("C3").is_none());
        assert!(book.get("C0").is_some() && book.get("C2").is_some());
        let ids: Vec<CaseId> = book
            .page(|_| true, None, 10)
            .cases
            .iter()
            .map(|c| c.id.clone())
            .collect();
        assert_eq!(ids, ["C2", "C0"]);
        assert_eq!(book.seq(), seq, "no event");
    }

    #[test]
    fn events_catch_up_and_report_too_old() {
        let book = CaseBook::default();
        let mut rx = book.subscribe();
        let c = summary("C1", 1000, &["top"]);
        book.put(&c, UtcMillis(1));
        let e = rx.try_recv().unwrap();
        assert_eq!((e.seq, e.kind), (1, EventKind::Opened));
        // The same case unchanged: no event.
        book.put(&c, UtcMillis(2));
        assert!(rx.try_recv().is_err());
        for i in 0..EVENT_LOG + 5 {
            book.put(&summary(&format!("D{i}"), 2000, &["top"]), UtcMillis(3));
        }
        assert!(matches!(book.since(0), CatchUp::TooOld));
        match book.since(book.seq() - 2) {
            CatchUp::Events(ev) => assert_eq!(ev.len(), 2),
            CatchUp::TooOld => panic!("recent events must be there"),
        }
    }

    #[test]
    fn deadline_state_near_and_overdue() {
        let c = summary("C1", 0, &["top"]);
        let s = CaseSummary::of(&c);
        let d = s.deadline.expect("a critical case has an ack deadline");
        assert_eq!(s.deadline_state(UtcMillis(0)), DeadlineState::OnTime);
        assert_eq!(
            s.deadline_state(UtcMillis(d.at.0 - 1000)),
            DeadlineState::Near
        );
        assert_eq!(s.deadline_state(d.at), DeadlineState::Overdue);
    }
}
