//! The persisted shape of a [`Case`] and its parts.

use std::collections::{BTreeSet, VecDeque};
use std::fmt;

use protocol::alert::Location;
use protocol::{AlertKind, AlertSource, Severity, UtcMillis};
use serde::{Deserialize, Serialize};

use super::workflow::{Archived, Reply, Supervision, Task};
use crate::grid::{CellId, Hierarchy, Level};

/// Version of the persisted case format. Bumped on any incompatible change;
/// [`Case::from_json`] refuses versions it does not know.
pub const CASE_SCHEMA: u32 = 1;

/// How many alert ids a case keeps (the most recent); [`Case::count`] counts them all.
pub const MAX_ALERT_IDS: usize = 100;

/// A grid cell as a case remembers it: by code (stable across re-imports of the grid), with
/// its name and level for people to read.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CellRef {
    /// The cell's code (its GeoJSON `id`).
    pub code: String,
    /// Its name, e.g. 近城一网格.
    pub name: String,
    /// Its level.
    pub level: Level,
}

impl CellRef {
    /// A cell reference.
    pub fn new(code: impl Into<String>, name: impl Into<String>, level: Level) -> Self {
        Self {
            code: code.into(),
            name: name.into(),
            level,
        }
    }

    /// The path from the top of `hierarchy` down to `cell`, as [`Case::open`] wants it (empty
    /// for a handle of another hierarchy).
    pub fn path_to(hierarchy: &Hierarchy, cell: CellId) -> Vec<Self> {
        hierarchy
            .path(cell)
            .into_iter()
            .filter_map(|id| hierarchy.get(id))
            .map(|c| Self::new(c.code(), c.name(), c.level()))
            .collect()
    }
}

impl fmt::Display for CellRef {
    /// `grid 近城一网格 (530329101001001)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} ({})", self.level, self.name, self.code)
    }
}

/// Where a case is in its life.
///
/// ```text
/// new ──(open: dispatch)──▶ dispatched ──acknowledge──▶ acknowledged ──start_handling──▶ handling
///                            │    ▲                        │                               │
///          timer: climbs one │    └──── return ────────────┘                               │
///          cell, same state ◀┘          (new cell)         └──resolve──▶ resolved ◀─resolve─┘
///                                                                        │    │
///                                      handling ◀──reopen────────────────┘    └─close─▶ closed
/// ```
///
/// The full table of actions is in [`super::Action`]'s module (`transition.rs`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
    strum::IntoStaticStr,
    strum::Display,
    strum::EnumIter,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
// The API document gets a sentence, not the diagram and the rustdoc link above.
#[schema(
    description = "Where a case is in its life: new → dispatched → acknowledged → \
    handling → resolved → closed; a deadline climbs a dispatched case one cell, reopen takes a \
    resolved case back to handling."
)]
pub enum CaseState {
    /// Recorded, nobody notified: record-only severities, or no grid cell to send it to.
    New,
    /// Sent to the on-duty people of its cell; waiting for someone to acknowledge.
    Dispatched,
    /// Someone took it (the [`Case::handler`]).
    Acknowledged,
    /// The handler is on it.
    Handling,
    /// The handler reported it done, with a note; waits for someone else to verify.
    Resolved,
    /// Verified by someone other than the resolver. Final: a closed case absorbs no alerts.
    Closed,
}

impl CaseState {
    /// The snake_case name (as in JSON and error messages).
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// What a deadline waits for.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
    strum::Display,
    strum::EnumIter,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum DeadlineKind {
    /// Someone must acknowledge (while dispatched).
    Ack,
    /// The handler must resolve (while acknowledged or handling).
    Resolve,
}

/// The one running timer of a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Deadline {
    /// When it is due.
    pub at: UtcMillis,
    /// What it waits for.
    pub kind: DeadlineKind,
}

/// Who did something. Authorisation (may this person act on this case?) is the API's job,
/// against the roster; the case only records who it was and refuses what the rules forbid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Actor {
    /// Person id from the roster, or `hub` for the hub's own timer.
    pub id: String,
    /// Their role as the API knows it (`grid_member`, `operator`, …), for the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The code of the cell they act for, when they act for one. Must be on the case's path;
    /// acknowledging for a cell above the one holding the case takes the case up to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cell: Option<String>,
}

impl Actor {
    /// The id of the hub's own actions (dispatch, timers).
    pub const HUB: &'static str = "hub";

    /// A person, without role or cell.
    pub fn person(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            role: None,
            cell: None,
        }
    }

    /// The hub itself.
    pub fn hub() -> Self {
        Self::person(Self::HUB)
    }

    /// The same actor acting for `cell` (a code).
    pub fn for_cell(mut self, cell: impl Into<String>) -> Self {
        self.cell = Some(cell.into());
        self
    }

    /// The same actor with `role`.
    pub fn with_role(mut self, role: impl Into<String>) -> Self {
        self.role = Some(role.into());
        self
    }
}

/// What an audit record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    /// The case was opened from its first alert.
    Open,
    /// The case was sent to a cell.
    Dispatch,
    /// People were notified (the detail names them and the step).
    Notify,
    /// Nobody on duty at the cell: the case climbed past it (or, at the top, stayed unread).
    NobodyOnDuty,
    /// A deadline passed: the case climbed one level.
    Escalate,
    /// A deadline passed at the top level: nowhere left to climb; the timer stops.
    OverdueAtTop,
    /// [`super::Action::Acknowledge`].
    Acknowledge,
    /// [`super::Action::StartHandling`].
    StartHandling,
    /// [`super::Action::Resolve`].
    Resolve,
    /// [`super::Action::Close`].
    Close,
    /// [`super::Action::Reopen`].
    Reopen,
    /// [`super::Action::Return`].
    Return,
    /// [`super::Action::Extend`].
    Extend,
    /// [`super::Action::Comment`].
    Comment,
    /// A routing rule sent the case to a department as well as its cell (分类交办).
    Route,
    /// [`super::Action::Transfer`] (交办/转派).
    Transfer,
    /// [`super::Action::Assist`] (协办).
    Assist,
    /// [`super::Action::Supervise`] (督办).
    Supervise,
    /// A supervision's deadline passed with the case unresolved: the handlers were reminded.
    SupervisionOverdue,
    /// A transferred department's time limit passed with the case unresolved.
    TaskOverdue,
    /// [`super::Action::Escalate`]: taken up a level by hand (提级).
    EscalateByHand,
    /// [`super::Action::Reply`] (回复征询).
    Reply,
    /// [`super::Action::Archive`] (销号归档).
    Archive,
}

/// One entry of a case's append-only audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditRecord {
    /// 1, 2, 3, … within the case, strictly increasing.
    pub seq: u64,
    /// When it happened; for timer events, when it was due.
    pub at: UtcMillis,
    /// Timer events only: when the hub actually acted (later than `at` after downtime).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fired_at: Option<UtcMillis>,
    /// Who.
    pub actor: Actor,
    /// What.
    pub action: AuditAction,
    /// State before.
    pub from_state: CaseState,
    /// State after.
    pub to_state: CaseState,
    /// Level of the cell holding the case afterwards (`None`: no cell).
    pub level: Option<Level>,
    /// Code of that cell.
    pub cell: Option<String>,
    /// The actor's own words (resolution note, reason for a return or extension, comment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// What the hub did, in words (`nobody on duty at grid … , climbed to village …`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// A photo attached by the actor (resolution evidence), by its id in the photo store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub photo: Option<String>,
}

/// Where a notification went.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryTarget {
    /// A person (their MQTT topic or app).
    Person(String),
    /// A configured webhook, by name (WeCom, DingTalk, Feishu, generic).
    Webhook(String),
}

/// How a notification fared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum DeliveryOutcome {
    /// Handed to the transport, not yet confirmed (an MQTT publish before its PUBACK).
    Pending,
    /// Confirmed by the other end. Final.
    Delivered,
    /// The attempt failed.
    Failed {
        /// Why.
        error: String,
    },
}

/// One notification of a case to one target over one channel for one step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Delivery {
    /// To whom or where.
    pub target: DeliveryTarget,
    /// Channel name (`mqtt`, `wecom`, …).
    pub channel: String,
    /// The notification step it belongs to.
    pub step: u32,
    /// The latest outcome.
    #[serde(flatten)]
    pub outcome: DeliveryOutcome,
    /// Attempts so far (each `Pending` after a failure starts one).
    pub attempts: u32,
    /// When the latest outcome was recorded.
    pub at: UtcMillis,
    /// The provider's id for the message (an SMS's `BizId` or `SerialNo`), by which its
    /// receipt finds this entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

/// One case (一案一码): every alert of one incident-like group, who holds it, what was done.
///
/// Invariants, kept by every method: `level_index < path.len()` unless `path` is empty (then
/// 0); `audit` is append-only with strictly increasing `seq`; `deadline` is an `Ack` deadline
/// only while `dispatched`, a `Resolve` one only while `acknowledged` or `handling`, and `None`
/// otherwise; `handler` is set from acknowledgement on (cleared by a return); `alert_ids` holds
/// at most [`MAX_ALERT_IDS`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Case {
    /// [`CASE_SCHEMA`].
    pub schema: u32,
    /// Given by the caller: [`CaseId::for_alert`](super::CaseId::for_alert) of its first
    /// alert.
    pub id: super::CaseId,
    /// [`GroupKey::of`](super::GroupKey::of) of its alerts.
    pub key: String,
    /// Site (edge box) id.
    pub site: String,
    /// Camera or reader of the first alert.
    pub source: AlertSource,
    /// Kind of the first alert.
    pub kind: AlertKind,
    /// Rule id.
    pub rule: String,
    /// Highest severity of the alerts absorbed so far.
    pub severity: Severity,
    /// Id of the alert that opened the case.
    pub first_alert: String,
    /// The most recent alert ids, oldest first, at most [`MAX_ALERT_IDS`].
    pub alert_ids: VecDeque<String>,
    /// Every alert absorbed, including the first.
    pub count: u64,
    /// Earliest alert time (the alert's own clock).
    pub first_alert_at: UtcMillis,
    /// Latest alert time.
    pub last_alert_at: UtcMillis,
    /// Where (of the first alert that had a location).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// When the hub opened the case.
    pub opened_at: UtcMillis,
    /// When anything last changed (hub time).
    pub updated_at: UtcMillis,
    /// From the top (county) down to the deepest cell the alert fell in.
    pub path: Vec<CellRef>,
    /// Which element of `path` holds the case now; starts at the deepest, only decreases
    /// (climbs) except on a return.
    pub level_index: usize,
    /// Lifecycle state.
    pub state: CaseState,
    /// The running timer, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<Deadline>,
    /// Set when a deadline passed at the top level (the timer then stops); cleared when a new
    /// deadline starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overdue_at_top: Option<Deadline>,
    /// Current notification step: 0 for the first dispatch, +1 for each climb on a deadline,
    /// return or reopen.
    pub step: u32,
    /// Who acknowledged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handler: Option<String>,
    /// Who resolved (may not close).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_by: Option<String>,
    /// `(person, step)` of every notification sent: nobody is notified twice for one step.
    pub notified: BTreeSet<(String, u32)>,
    /// Append-only trail.
    pub audit: Vec<AuditRecord>,
    /// Per notification, how it fared (recorded by the dispatcher).
    pub deliveries: Vec<Delivery>,
    /// How many times the deadline was extended.
    pub extensions: u32,
    /// Set when an alert of the case claimed a position its site is not trusted with (too
    /// far from where the site is registered): the case was located by the site's cell
    /// instead. The first such claim is kept, for whoever investigates the site.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position_untrusted: Option<UntrustedPosition>,
    /// Set when an alert of the case was stamped implausibly far from when the hub received
    /// it (the box's clock is off): it was filed at its receipt time. The first such alert is
    /// kept, with the box's time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_untrusted: Option<UntrustedTime>,
    /// The departments (and assisting cells) working on the case, in the order they joined
    /// (see [`super::workflow`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<Task>,
    /// The latest supervision (督办), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supervision: Option<Supervision>,
    /// The reply to the reporter of a patrol or citizen report (回复征询).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<Reply>,
    /// Set when the closed case was archived (销号归档); nothing changes it afterwards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archived: Option<Archived>,
}

/// A position an alert claimed and the hub did not believe: too far from where its site is
/// registered (the rule is in the `trust` module).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UntrustedPosition {
    /// The alert that claimed it.
    pub alert: String,
    /// The position as the site sent it.
    pub claimed: Location,
    /// How far it is from the site's reference, metres (rounded); absent when the site has
    /// no reference to measure from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distance_m: Option<f64>,
    /// The site's radius, metres.
    pub limit_m: f64,
    /// Why, in words.
    pub reason: String,
}

/// An alert's time the hub did not believe: too far from its receipt for a box whose clock
/// keeps time (the rule is in the `trust` module).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UntrustedTime {
    /// The alert stamped so.
    pub alert: String,
    /// The time as the box stamped it.
    pub claimed: UtcMillis,
    /// When the hub received it: the time it was filed at.
    pub received: UtcMillis,
    /// The box's clock minus the hub's as last measured, ms, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site_offset_ms: Option<i64>,
    /// Why, in words.
    pub reason: String,
}

/// A stored case that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum CaseDecodeError {
    /// Not JSON, or not a case.
    #[error("stored case is not valid: {0}")]
    Json(#[from] serde_json::Error),
    /// Written by a version of the hub that this one does not know.
    #[error(
        "stored case {id:?} has schema version {found}, this hub knows only {CASE_SCHEMA}; \
         upgrade the hub (or migrate the store)"
    )]
    UnknownSchema {
        /// The case id, when readable.
        id: String,
        /// The version found.
        found: u32,
    },
}

/// What the audit helper needs besides what the case knows.
pub(crate) struct Entry {
    pub at: UtcMillis,
    pub fired_at: Option<UtcMillis>,
    pub actor: Actor,
    pub action: AuditAction,
    pub from: CaseState,
    pub note: Option<String>,
    pub detail: Option<String>,
    pub photo: Option<String>,
}

impl Case {
    /// The cell holding the case now (`None` only for a case with an empty path).
    pub fn current_cell(&self) -> Option<&CellRef> {
        self.path.get(self.level_index)
    }

    /// The level holding the case now.
    pub fn level(&self) -> Option<Level> {
        self.current_cell().map(|c| c.level)
    }

    /// Whether the case is not closed (it still absorbs alerts and takes actions).
    pub fn is_open(&self) -> bool {
        self.state != CaseState::Closed
    }

    /// When the case was closed (the time of its close record; `updated_at` should the trail
    /// lack one), `None` while open. Comments on a closed case do not move it.
    pub fn closed_at(&self) -> Option<UtcMillis> {
        if self.is_open() {
            return None;
        }
        let close = self
            .audit
            .iter()
            .rev()
            .find(|r| r.to_state == CaseState::Closed && r.from_state != CaseState::Closed);
        Some(close.map_or(self.updated_at, |r| r.at))
    }

    /// When the caller's timer should next call [`Case::tick`]; `None`: no timer. The
    /// earliest of the grid deadline, a running lead task's time limit and a supervision's
    /// deadline, the last two only while the case is unresolved.
    pub fn next_deadline(&self) -> Option<UtcMillis> {
        let unresolved = matches!(
            self.state,
            CaseState::New | CaseState::Dispatched | CaseState::Acknowledged | CaseState::Handling
        );
        let task = self
            .tasks
            .iter()
            .filter(|t| unresolved && t.is_active_lead() && !t.overdue)
            .filter_map(|t| t.due);
        let supervision = self
            .supervision
            .iter()
            .filter(|s| unresolved && !s.overdue)
            .map(|s| s.due);
        self.deadline
            .map(|d| d.at)
            .into_iter()
            .chain(task)
            .chain(supervision)
            .min()
    }

    /// The running lead task with a time limit, if any: while there is one, its limit is the
    /// case's resolve timer and the grid's deadlines do not run.
    pub fn timed_lead(&self) -> Option<&Task> {
        self.tasks
            .iter()
            .find(|t| t.is_active_lead() && t.due.is_some())
    }

    /// Appends an audit record stamped with the case's current state and cell.
    pub(crate) fn log(&mut self, e: Entry) {
        let seq = self.audit.last().map_or(1, |r| r.seq + 1);
        let cell = self.current_cell();
        let record = AuditRecord {
            seq,
            at: e.at,
            fired_at: e.fired_at,
            actor: e.actor,
            action: e.action,
            from_state: e.from,
            to_state: self.state,
            level: cell.map(|c| c.level),
            cell: cell.map(|c| c.code.clone()),
            note: e.note,
            detail: e.detail,
            photo: e.photo,
        };
        self.audit.push(record);
    }

    /// Records how a notification fared; the dispatcher calls it as deliveries progress.
    ///
    /// One entry per `(target, channel, step)`. `Pending` on a new entry or after a failure
    /// starts an attempt (`attempts` + 1); `Delivered` and `Failed` conclude the current one.
    /// A delivered entry is final: later outcomes for it are ignored and `false` is returned.
    pub fn record_delivery(
        &mut self,
        target: DeliveryTarget,
        channel: &str,
        step: u32,
        outcome: DeliveryOutcome,
        at: UtcMillis,
    ) -> bool {
        let existing = self
            .deliveries
            .iter_mut()
            .find(|d| d.target == target && d.channel == channel && d.step == step);
        match existing {
            Some(d) if d.outcome == DeliveryOutcome::Delivered => false,
            Some(d) => {
                if outcome == DeliveryOutcome::Pending
                    && matches!(d.outcome, DeliveryOutcome::Failed { .. })
                {
                    d.attempts += 1;
                }
                d.outcome = outcome;
                d.at = at;
                true
            }
            None => {
                self.deliveries.push(Delivery {
                    target,
                    channel: channel.to_owned(),
                    step,
                    outcome,
                    attempts: 1,
                    at,
                    reference: None,
                });
                true
            }
        }
    }

    /// The stored form (JSON).
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }

    /// Reads a stored case, refusing a schema version this hub does not know.
    pub fn from_json(bytes: &[u8]) -> Result<Self, CaseDecodeError> {
        // Look at the version before the shape: a future version may have a shape this one
        // cannot parse, and "unknown version" is the message that says what to do.
        #[derive(Deserialize)]
        struct Probe {
            schema: u32,
            #[serde(default)]
            id: String,
        }
        let probe: Probe = serde_json::from_slice(bytes)?;
        if probe.schema != CASE_SCHEMA {
            return Err(CaseDecodeError::UnknownSchema {
                id: probe.id,
                found: probe.schema,
            });
        }
        Ok(serde_json::from_slice(bytes)?)
    }
}

#[cfg(test)]
mod tests {
    use strum::IntoEnumIterator;

    use super::super::testkit::*;
    use super::*;

    #[test]
    fn state_and_deadline_names_are_their_serde_names() {
        for state in CaseState::iter() {
            assert_eq!(
                serde_json::to_value(state).ok(),
                Some(state.as_str().into())
            );
            assert_eq!(state.to_string(), state.as_str());
        }
        for kind in DeadlineKind::iter() {
            assert_eq!(
                serde_json::to_value(kind).ok(),
                Some(kind.to_string().into())
            );
        }
    }

    #[test]
    fn case_round_trips_through_json_and_refuses_an_unknown_schema() {
        let (mut case, _) = open_critical(&duty_everywhere());
        case.record_delivery(
            DeliveryTarget::Person("li".into()),
            "mqtt",
            0,
            DeliveryOutcome::Pending,
            T0,
        );
        let bytes = case.to_json().unwrap();
        assert_eq!(Case::from_json(&bytes).unwrap(), case);

        let mut value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        value["schema"] = 2.into();
        let err = Case::from_json(&serde_json::to_vec(&value).unwrap()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "stored case \"C-1\" has schema version 2, this hub knows only 1; upgrade the hub \
             (or migrate the store)"
        );
    }

    #[test]
    fn deliveries_count_attempts_and_delivered_is_final() {
        let (mut case, _) = open_critical(&duty_everywhere());
        let li = || DeliveryTarget::Person("li".into());
        let failed = DeliveryOutcome::Failed {
            error: "broker down".into(),
        };
        assert!(case.record_delivery(li(), "mqtt", 0, DeliveryOutcome::Pending, T0));
        assert!(case.record_delivery(li(), "mqtt", 0, failed, at_min(1)));
        assert!(case.record_delivery(li(), "mqtt", 0, DeliveryOutcome::Pending, at_min(2)));
        assert!(case.record_delivery(li(), "mqtt", 0, DeliveryOutcome::Delivered, at_min(2)));
        assert!(!case.record_delivery(li(), "mqtt", 0, DeliveryOutcome::Pending, at_min(3)));
        assert!(case.record_delivery(li(), "wecom", 0, DeliveryOutcome::Pending, at_min(3)));
        assert_eq!(case.deliveries.len(), 2);
        assert_eq!(case.deliveries[0].attempts, 2);
        assert_eq!(case.deliveries[0].outcome, DeliveryOutcome::Delivered);
        assert_eq!(case.deliveries[0].at, at_min(2));
    }

    #[test]
    fn state_diagram_names_match_the_wire_names() {
        for s in [
            CaseState::New,
            CaseState::Dispatched,
            CaseState::Acknowledged,
            CaseState::Handling,
            CaseState::Resolved,
            CaseState::Closed,
        ] {
            assert_eq!(
                serde_json::to_value(s).unwrap(),
                serde_json::Value::from(s.as_str())
            );
        }
    }
}
