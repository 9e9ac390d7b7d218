//! Cases and escalation: the pure core of "one case, one code" (一案一码) and "what the lower
//! level cannot settle climbs" (提级管理).
//!
//! No I/O, no clock, no async: time is always an argument, and every decision is returned as
//! data ([`Effect`]) for the dispatcher around it, which stores cases, pushes notifications
//! and keeps the deadline index.
//!
//! ```text
//! Alert ──silenced_by / inhibited?──▶ (stored, no case)
//!   │ no
//!   ▼ GroupKey::of → caller's key → open-case index
//! groups_with(open case)? ──yes──▶ Case::absorb
//!   │ no
//!   ▼
//! Case::open(id, alert, path, now, policy, duty) ──▶ Notify the deepest cell's on-duty people,
//!   │                                                 ack deadline (DeadlineSet)
//!   ├── Case::tick(now): each passed deadline climbs one cell (Escalated + Notify), the next
//!   │   deadline counted from the missed one; at the top: OverdueAtTop, timer stops
//!   └── Case::apply(Transition): acknowledge → start handling → resolve (note) → close (by
//!       someone else); return (reason, new path), extend (reason, later), reopen, comment
//! ```
//!
//! Invariants (on [`Case`]): the audit trail is append-only with strictly increasing `seq`,
//! one record per accepted transition and per timer event; a refused transition changes
//! nothing; at most one deadline runs, and only in a state it fits (ack while dispatched,
//! resolve while acknowledged or handling); nobody is notified twice for one step.
//!
//! Stored form: the [`Case`] as JSON with `schema` = [`CASE_SCHEMA`]; [`Case::from_json`]
//! refuses other versions.
//!
//! - [`model`](Case): the case and its parts;
//! - [`GroupKey`], [`groups_with`], [`Case::absorb`]: grouping;
//! - [`Case::open`], [`Case::tick`]: dispatch and escalation;
//! - [`Transition`], [`Case::apply`]: the lifecycle;
//! - [`Policy`]: deadlines per severity and level (TOML `[escalation]`);
//! - [`Silence`] (matchers: site, camera, rule, kind, cell), [`silenced_by`], [`inhibited`]:
//!   muting.

mod effect;
mod escalate;
mod group;
mod id;
mod model;
mod policy;
mod routing;
mod silence;
#[cfg(test)]
pub(crate) mod testkit;
mod transition;
mod workflow;

use protocol::UtcMillis;

pub use effect::{ClimbReason, Effect, NotifyReason, RecordReason};
pub use group::{GroupKey, groups_with};
pub use id::CaseId;
pub use model::{
    Actor, AuditAction, AuditRecord, CASE_SCHEMA, Case, CaseDecodeError, CaseState, CellRef,
    Deadline, DeadlineKind, Delivery, DeliveryOutcome, DeliveryTarget, MAX_ALERT_IDS,
    UntrustedPosition, UntrustedTime,
};
pub use policy::{LevelSpans, Policy, PolicyError, SeverityPolicy, Span, SpanError};
pub use routing::{RoutingRule, departments_for};
pub use silence::{MAX_REASON_CHARS, Silence, SilenceId, inhibited, silenced_by};
pub use transition::{Action, Authority, Transition, TransitionError, check_path};
pub use workflow::{
    ActionKind, Archived, Reply, Satisfaction, Standing, Supervision, Task, TaskRole, permitted,
};

/// Who is on duty: the roster and duty schedule, behind a seam so the core stays pure.
pub trait Duty {
    /// Person ids on duty for the cell with code `cell_code` at `at`; empty when nobody is
    /// (the case then climbs on to the next cell up).
    fn on_duty(&self, cell_code: &str, at: UtcMillis) -> Vec<String>;
}
