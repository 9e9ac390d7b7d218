//! What people do to a case: [`Transition`]s, checked against the lifecycle and applied by
//! [`Case::apply`].
//!
//! | action | allowed from | to | needs |
//! | --- | --- | --- | --- |
//! | acknowledge | new, dispatched | acknowledged | — (acting for a higher cell takes the case up) |
//! | start_handling | acknowledged | handling | — |
//! | resolve | acknowledged, handling | resolved | a note |
//! | close | resolved | closed | someone other than the resolver |
//! | reopen | resolved | handling | a reason |
//! | return | new, dispatched, acknowledged | dispatched (new cell) | a reason, a valid new path |
//! | extend | dispatched, acknowledged, handling | same | a reason, a later deadline, extensions left |
//! | comment | any | same | the text |
//! | transfer | new, dispatched, acknowledged, handling | dispatched (to the department) | a department not already leading, a time limit |
//! | assist | new … resolved | same | a unit not already on the case |
//! | supervise | new, dispatched, acknowledged, handling | same | a note, a time limit |
//! | escalate | new, dispatched, acknowledged, handling | dispatched (a higher cell) | a reason, a level above |
//! | reply | resolved, closed | same | a patrol or citizen report, the reply's text, the satisfaction |
//! | archive | closed | closed, archived | a reply first, for a report |
//!
//! An archived case takes no action at all. Who may do what is [`super::permitted`]'s table
//! (the API applies it); here only the lifecycle is checked.
//!
//! Every check runs before anything changes, so a refused transition changes nothing.

use protocol::UtcMillis;
use serde::{Deserialize, Serialize};

use super::CaseId;
use super::Duty;
use super::effect::{ClimbReason, Effect, NotifyReason};
use super::escalate::Round;
use super::model::{Actor, AuditAction, Case, CaseState, CellRef, Deadline, DeadlineKind, Entry};
use super::policy::{Policy, Span};
use super::workflow::{ActionKind, Archived, Reply, Satisfaction, Supervision, Task, TaskRole};
use crate::grid::Level;

/// What someone does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    /// "Mine": stops the ack timer, starts the resolve timer.
    Acknowledge,
    /// On site / working on it.
    StartHandling,
    /// Done; the note says what was found and done.
    Resolve,
    /// Verified (by someone other than the resolver).
    Close,
    /// The resolution did not hold up: back to the handler.
    Reopen,
    /// Wrong cell (退回): send the case to the cell at the end of `path` instead.
    Return {
        /// The new path, top first, as for [`Case::open`].
        path: Vec<CellRef>,
    },
    /// More time: the running deadline moves to `until`.
    Extend {
        /// The new deadline.
        until: UtcMillis,
    },
    /// A remark for the record.
    Comment,
    /// Hand the case to a department (交办/转派) that must resolve it within `within`; its
    /// on-duty people are notified, and its time limit replaces the grid's deadlines.
    Transfer {
        /// The department, as cases name units.
        department: CellRef,
        /// The time limit, from now.
        within: Span,
    },
    /// Ask a department or another cell to help (协办): notified, may comment.
    Assist {
        /// The unit.
        unit: CellRef,
    },
    /// Supervise the case from a level above (督办): its handlers are reminded now and again
    /// if it is not resolved `within`.
    Supervise {
        /// The supervision's deadline, from now.
        within: Span,
    },
    /// Take the case up now (提级): one level, or to the cell of `to` on its path.
    Escalate {
        /// The level to take it to; `None`: the next one up.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<Level>,
    },
    /// Reply to the reporter of a patrol or citizen report (回复征询); the note is the reply.
    Reply {
        /// What the reporter thought of the handling.
        satisfaction: Satisfaction,
    },
    /// Archive a closed case (销号归档): final.
    Archive,
}

impl Action {
    /// The verb, as in error messages (`resolve`, `start handling`).
    pub fn verb(&self) -> &'static str {
        match self {
            Self::Acknowledge => "acknowledge",
            Self::StartHandling => "start handling",
            Self::Resolve => "resolve",
            Self::Close => "close",
            Self::Reopen => "reopen",
            Self::Return { .. } => "return",
            Self::Extend { .. } => "extend",
            Self::Comment => "comment on",
            Self::Transfer { .. } => "transfer",
            Self::Assist { .. } => "ask for assistance on",
            Self::Supervise { .. } => "supervise",
            Self::Escalate { .. } => "escalate",
            Self::Reply { .. } => "reply on",
            Self::Archive => "archive",
        }
    }

    /// The action without its data, for [`super::permitted`].
    pub fn kind(&self) -> ActionKind {
        match self {
            Self::Acknowledge => ActionKind::Acknowledge,
            Self::StartHandling => ActionKind::StartHandling,
            Self::Resolve => ActionKind::Resolve,
            Self::Close => ActionKind::Close,
            Self::Reopen => ActionKind::Reopen,
            Self::Return { .. } => ActionKind::Return,
            Self::Extend { .. } => ActionKind::Extend,
            Self::Comment => ActionKind::Comment,
            Self::Transfer { .. } => ActionKind::Transfer,
            Self::Assist { .. } => ActionKind::Assist,
            Self::Supervise { .. } => ActionKind::Supervise,
            Self::Escalate { .. } => ActionKind::Escalate,
            Self::Reply { .. } => ActionKind::Reply,
            Self::Archive => ActionKind::Archive,
        }
    }

    /// What the note is called when this action requires one.
    fn required_note(&self) -> Option<&'static str> {
        match self {
            Self::Resolve => Some("a note saying what was found and done"),
            Self::Reopen => Some("a reason saying why the resolution does not hold"),
            Self::Return { .. } => Some("a reason saying why the cell is wrong"),
            Self::Extend { .. } => Some("a reason for the extension"),
            Self::Comment => Some("the comment's text"),
            Self::Supervise { .. } => Some("a note saying what the supervision asks for"),
            Self::Escalate { .. } => Some("a reason for taking the case up"),
            Self::Reply { .. } => Some("the reply's text"),
            Self::Acknowledge
            | Self::StartHandling
            | Self::Close
            | Self::Transfer { .. }
            | Self::Assist { .. }
            | Self::Archive => None,
        }
    }
}

/// One command on a case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    /// What.
    pub action: Action,
    /// Who.
    pub actor: Actor,
    /// The resolution note, reason or comment (required by some actions; see the module doc).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// A photo taken on site (its id in the hub's photo store), kept on the audit record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub photo: Option<String>,
    /// When (hub time of the request).
    pub at: UtcMillis,
    /// The caller's role and units, when a person asks through the API: checked against
    /// [`super::permitted`] on the case as it is when the transition applies. `None`: not
    /// checked (the hub itself, tests of the lifecycle).
    #[serde(skip)]
    pub authority: Option<Authority>,
}

/// What [`super::permitted`] weighs about the person asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authority {
    /// Their role.
    pub role: crate::users::UserRole,
    /// Their cell and department codes.
    pub units: Vec<String>,
}

impl Transition {
    /// `action` by person `actor` at `at`, without a note.
    pub fn new(action: Action, actor: &str, at: UtcMillis) -> Self {
        Self {
            action,
            actor: Actor::person(actor),
            note: None,
            photo: None,
            at,
            authority: None,
        }
    }

    /// The same transition with `note`.
    pub fn with_note(mut self, note: &str) -> Self {
        self.note = Some(note.to_owned());
        self
    }
}

/// A refused transition. The case is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    /// The action does not fit the case's state.
    #[error("cannot {action} case {case} in state {state}: {hint}")]
    NotAllowed {
        /// Case id.
        case: CaseId,
        /// The verb.
        action: &'static str,
        /// The state the case is in.
        state: CaseState,
        /// What would make it possible.
        hint: &'static str,
    },
    /// No actor id.
    #[error("cannot {action} case {case}: the actor has no id")]
    NoActor {
        /// Case id.
        case: CaseId,
        /// The verb.
        action: &'static str,
    },
    /// A required note or reason is missing or blank.
    #[error("cannot {action} case {case}: {what} is required")]
    NoteRequired {
        /// Case id.
        case: CaseId,
        /// The verb.
        action: &'static str,
        /// What is missing.
        what: &'static str,
    },
    /// The resolver tried to close (verify) their own resolution.
    #[error(
        "cannot close case {case}: {actor} resolved it, so someone else must verify and close it"
    )]
    SelfVerification {
        /// Case id.
        case: CaseId,
        /// The resolver.
        actor: String,
    },
    /// The actor acts for a cell that is not on the case's path.
    #[error("cannot {action} case {case}: cell {cell} is not on its path ({path})")]
    CellNotOnPath {
        /// Case id.
        case: CaseId,
        /// The verb.
        action: &'static str,
        /// The actor's cell.
        cell: String,
        /// The path's codes, top first.
        path: String,
    },
    /// A return with a path that is not a path.
    #[error("cannot return case {case}: {problem}")]
    InvalidPath {
        /// Case id.
        case: CaseId,
        /// What is wrong with it.
        problem: String,
    },
    /// A return to the cell that already holds the case.
    #[error("cannot return case {case}: it is already at {cell}")]
    SameCell {
        /// Case id.
        case: CaseId,
        /// That cell.
        cell: String,
    },
    /// Nothing to extend (the timer stopped, or the policy sets none).
    #[error("cannot extend case {case}: it has no running deadline")]
    NoDeadline {
        /// Case id.
        case: CaseId,
    },
    /// The new deadline is not later than the current one, or than now.
    #[error("cannot extend case {case}: the new deadline {until} is not later than {than}")]
    NotLater {
        /// Case id.
        case: CaseId,
        /// Asked for.
        until: UtcMillis,
        /// The current deadline, or the transition's time if later.
        than: UtcMillis,
    },
    /// The unit already has a running task of that kind on the case.
    #[error("cannot {action} case {case}: {unit} is already on it")]
    AlreadyOnCase {
        /// Case id.
        case: CaseId,
        /// The verb.
        action: &'static str,
        /// The unit.
        unit: String,
    },
    /// A time limit of zero or less.
    #[error("cannot {action} case {case}: the time limit must be positive")]
    NoTimeLimit {
        /// Case id.
        case: CaseId,
        /// The verb.
        action: &'static str,
    },
    /// An escalation with nowhere to go.
    #[error("cannot escalate case {case}: {problem}")]
    NoHigherLevel {
        /// Case id.
        case: CaseId,
        /// Why.
        problem: String,
    },
    /// A reply on a case no person reported.
    #[error(
        "cannot reply on case {case}: it was raised by {source_kind}, not reported by a person"
    )]
    NotAReport {
        /// Case id.
        case: CaseId,
        /// What raised it.
        source_kind: &'static str,
    },
    /// An archive of a report nobody replied to.
    #[error("cannot archive case {case}: reply to its reporter first (回复征询)")]
    ReplyFirst {
        /// Case id.
        case: CaseId,
    },
    /// The person may not do this on this case ([`super::permitted`]).
    #[error("a {role} {standing} may not {action} case {case}; {who} may")]
    Forbidden {
        /// Case id.
        case: CaseId,
        /// The verb.
        action: &'static str,
        /// Their role.
        role: &'static str,
        /// Where they stand, in words.
        standing: &'static str,
        /// Who may.
        who: &'static str,
    },
    /// The policy's limit on extensions is reached.
    #[error("cannot extend case {case}: it was extended {count} times, the policy allows {max}")]
    TooManyExtensions {
        /// Case id.
        case: CaseId,
        /// Extensions so far.
        count: u32,
        /// The policy's `max_extensions`.
        max: u32,
    },
}

/// Why `action` is refused in `state`, or `None` when the lifecycle allows it.
fn refusal(state: CaseState, action: &Action) -> Option<&'static str> {
    use Action as A;
    use CaseState as S;
    match (action, state) {
        (A::Comment, _) => None,
        (A::Archive, S::Closed) => None,
        (A::Archive, _) => Some("close it first"),
        (A::Reply { .. }, S::Resolved | S::Closed) => None,
        (A::Reply { .. }, _) => Some("resolve it first"),
        (_, S::Closed) => Some("it is closed"),
        (A::Assist { .. }, _) => None,
        (
            A::Transfer { .. } | A::Supervise { .. } | A::Escalate { .. },
            S::New | S::Dispatched | S::Acknowledged | S::Handling,
        ) => None,
        (A::Acknowledge, S::New | S::Dispatched) => None,
        (A::Acknowledge, S::Acknowledged | S::Handling) => Some("it is already acknowledged"),
        (A::StartHandling, S::Acknowledged) => None,
        (A::StartHandling, S::New | S::Dispatched) => Some("acknowledge it first"),
        (A::StartHandling, S::Handling) => Some("it is already being handled"),
        (A::Resolve, S::Acknowledged | S::Handling) => None,
        (A::Resolve, S::New | S::Dispatched) => Some("acknowledge it first"),
        (A::Close | A::Reopen, S::Resolved) => None,
        (A::Close, _) => Some("resolve it first"),
        (A::Reopen, _) => Some("only a resolved case can be reopened"),
        (A::Return { .. }, S::New | S::Dispatched | S::Acknowledged) => None,
        (A::Return { .. }, S::Handling) => Some("it is already being handled"),
        (A::Extend { .. }, S::Dispatched | S::Acknowledged | S::Handling) => None,
        (A::Extend { .. }, S::New) => Some("it was never dispatched, so it has no deadline"),
        (_, S::Resolved) => Some("it is already resolved"),
    }
}

/// Checks a path as [`Action::Return`] needs it: not empty, codes present, each cell on a
/// strictly deeper level than the one before.
pub fn check_path(path: &[CellRef]) -> Result<(), String> {
    if path.is_empty() {
        return Err("the new path is empty".to_owned());
    }
    for (i, cell) in path.iter().enumerate() {
        if cell.code.trim().is_empty() {
            return Err(format!("path[{i}] has an empty code"));
        }
        if let Some(above) = i.checked_sub(1).map(|j| &path[j])
            && cell.level <= above.level
        {
            return Err(format!(
                "path[{i}] ({cell}) is not below path[{}] ({above})",
                i - 1
            ));
        }
    }
    Ok(())
}

impl Case {
    /// Applies `t`: checks it against the lifecycle, then changes the case, appends audit
    /// records and returns the effects. On `Err`, the case is unchanged.
    ///
    /// `duty` is needed by [`Action::Return`] (the new cell's people); the caller should
    /// [`tick`](Case::tick) up to `t.at` first, so that escalations owed before the request
    /// happen before it.
    pub fn apply(
        &mut self,
        t: Transition,
        policy: &Policy,
        duty: &dyn Duty,
    ) -> Result<Vec<Effect>, TransitionError> {
        let actor_cell = self.check(&t, policy)?;
        let from = self.state;
        let mut effects = Vec::new();
        let deadline_before = self.next_deadline();
        let Transition {
            action,
            actor,
            note,
            photo,
            at,
            authority: _,
        } = t;
        let mut entry = Entry {
            at,
            fired_at: None,
            actor: actor.clone(),
            action: AuditAction::Comment,
            from,
            note,
            detail: None,
            photo,
        };
        match action {
            Action::Acknowledge => {
                self.state = CaseState::Acknowledged;
                self.handler = Some(actor.id.clone());
                entry.action = AuditAction::Acknowledge;
                if let Some(i) = actor_cell.filter(|&i| i < self.level_index)
                    && let Some(old) = self.current_cell().cloned()
                {
                    // A higher level took the case up (提级): it holds it from now on, with
                    // that level's resolve time.
                    self.level_index = i;
                    let to = self.path[i].clone();
                    entry.detail = Some(format!("taken up from {old} by {to}"));
                    effects.push(Effect::Escalated {
                        from: old,
                        to,
                        reason: ClimbReason::TakenUp,
                    });
                }
                self.overdue_at_top = None;
                self.deadline = self.grid_deadline_after(at, DeadlineKind::Resolve, policy);
                self.log(entry);
            }
            Action::StartHandling => {
                self.state = CaseState::Handling;
                entry.action = AuditAction::StartHandling;
                self.log(entry);
            }
            Action::Resolve => {
                self.state = CaseState::Resolved;
                self.resolved_by = Some(actor.id.clone());
                self.deadline = None;
                self.overdue_at_top = None;
                entry.action = AuditAction::Resolve;
                self.log(entry);
            }
            Action::Close => {
                self.state = CaseState::Closed;
                entry.action = AuditAction::Close;
                entry.detail = self
                    .resolved_by
                    .as_ref()
                    .map(|r| format!("verified the resolution by {r}"));
                self.log(entry);
            }
            Action::Reopen => {
                self.state = CaseState::Handling;
                self.resolved_by = None;
                self.step += 1;
                self.deadline = self.grid_deadline_after(at, DeadlineKind::Resolve, policy);
                entry.action = AuditAction::Reopen;
                self.log(entry);
                if let (Some(handler), Some(cell)) =
                    (self.handler.clone(), self.current_cell().cloned())
                {
                    let round = Round {
                        at,
                        fired_at: None,
                        duty_at: at,
                        reason: NotifyReason::Reopened,
                    };
                    self.notify(vec![handler], cell, round, &mut effects);
                }
            }
            Action::Return { path } => {
                let old = self.current_cell().map(ToString::to_string);
                self.level_index = path.len() - 1;
                self.path = path;
                self.handler = None;
                self.step += 1;
                let new = self
                    .current_cell()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                entry.action = AuditAction::Return;
                entry.detail = Some(match old {
                    Some(old) => format!("returned from {old} to {new}"),
                    None => format!("routed to {new}"),
                });
                let round = Round {
                    at,
                    fired_at: None,
                    duty_at: at,
                    reason: if from == CaseState::New {
                        NotifyReason::NewCase
                    } else {
                        NotifyReason::Returned
                    },
                };
                self.dispatch(round, entry, policy, duty, &mut effects);
            }
            Action::Extend { until } => {
                if let Some(d) = self.deadline.as_mut() {
                    entry.detail = Some(format!(
                        "{} deadline moved from {} to {until}",
                        d.kind, d.at
                    ));
                    d.at = until;
                }
                self.extensions += 1;
                entry.action = AuditAction::Extend;
                self.log(entry);
            }
            Action::Comment => self.log(entry),
            Action::Transfer { department, within } => {
                for k in self.tasks.iter_mut().filter(|k| k.is_active_lead()) {
                    k.ended_at = Some(at);
                }
                let due = UtcMillis(at.0.saturating_add(within.as_ms()));
                self.tasks.push(Task {
                    unit: department.clone(),
                    role: TaskRole::Lead,
                    by: actor.id.clone(),
                    at,
                    due: Some(due),
                    overdue: false,
                    ended_at: None,
                });
                self.state = CaseState::Dispatched;
                self.handler = None;
                self.step += 1;
                // The department's time limit is the case's timer now (see `timed_lead`).
                self.deadline = None;
                self.overdue_at_top = None;
                entry.action = AuditAction::Transfer;
                entry.detail = Some(format!("transferred to {department}, to resolve by {due}"));
                self.log(entry);
                let round = Round {
                    at,
                    fired_at: None,
                    duty_at: at,
                    reason: NotifyReason::Transferred,
                };
                let people = duty.on_duty(&department.code, at);
                self.tell(people, department, round, &mut effects);
            }
            Action::Assist { unit } => {
                self.tasks.push(Task {
                    unit: unit.clone(),
                    role: TaskRole::Assist,
                    by: actor.id.clone(),
                    at,
                    due: None,
                    overdue: false,
                    ended_at: None,
                });
                entry.action = AuditAction::Assist;
                entry.detail = Some(format!("{unit} asked to assist"));
                self.log(entry);
                let round = Round {
                    at,
                    fired_at: None,
                    duty_at: at,
                    reason: NotifyReason::Assist,
                };
                let people = duty.on_duty(&unit.code, at);
                self.tell(people, unit, round, &mut effects);
            }
            Action::Supervise { within } => {
                let due = UtcMillis(at.0.saturating_add(within.as_ms()));
                self.supervision = Some(Supervision {
                    by: actor.id.clone(),
                    cell: actor.cell.clone(),
                    at,
                    due,
                    overdue: false,
                });
                self.step += 1;
                entry.action = AuditAction::Supervise;
                entry.detail = Some(format!("supervised: to be resolved by {due}"));
                self.log(entry);
                if let Some((people, unit)) = self.handlers(duty, at) {
                    let round = Round {
                        at,
                        fired_at: None,
                        duty_at: at,
                        reason: NotifyReason::Supervised,
                    };
                    self.tell(people, unit, round, &mut effects);
                }
            }
            Action::Escalate { to } => {
                // Checked in `check`; the fallback keeps the case where it is.
                let target = self.escalation_target(to).unwrap_or(self.level_index);
                let old = self.current_cell().cloned();
                for k in self.tasks.iter_mut().filter(|k| k.is_active_lead()) {
                    k.ended_at = Some(at);
                }
                self.level_index = target;
                self.handler = None;
                self.step += 1;
                let new = self.path[target].clone();
                if let Some(old) = old {
                    entry.detail = Some(format!("taken up from {old} to {new}"));
                    effects.push(Effect::Escalated {
                        from: old,
                        to: new,
                        reason: ClimbReason::ByHand,
                    });
                }
                entry.action = AuditAction::EscalateByHand;
                let round = Round {
                    at,
                    fired_at: None,
                    duty_at: at,
                    reason: NotifyReason::EscalatedByHand,
                };
                self.dispatch(round, entry, policy, duty, &mut effects);
            }
            Action::Reply { satisfaction } => {
                self.reply = Some(Reply {
                    by: actor.id.clone(),
                    at,
                    text: entry.note.clone().unwrap_or_default(),
                    satisfaction,
                });
                entry.action = AuditAction::Reply;
                entry.detail = Some(format!(
                    "replied to the reporter; satisfaction: {}",
                    <&str>::from(satisfaction)
                ));
                self.log(entry);
            }
            Action::Archive => {
                self.archived = Some(Archived {
                    by: actor.id.clone(),
                    at,
                });
                entry.action = AuditAction::Archive;
                entry.detail = Some("archived (销号归档)".to_owned());
                self.log(entry);
            }
        }
        self.updated_at = at;
        if self.state != from {
            effects.push(Effect::StateChanged {
                from,
                to: self.state,
            });
        }
        if self.next_deadline() != deadline_before {
            effects.push(Effect::DeadlineSet(self.next_deadline()));
        }
        Ok(effects)
    }

    /// The index on the path an escalation to `to` (or one level up) takes the case to.
    fn escalation_target(&self, to: Option<Level>) -> Result<usize, String> {
        let Some(here) = self.current_cell() else {
            return Err("it is in no grid cell".to_owned());
        };
        match to {
            None if self.level_index == 0 => Err(format!("it is already at the top, {here}")),
            None => Ok(self.level_index - 1),
            Some(level) => match self.path[..self.level_index]
                .iter()
                .position(|c| c.level == level)
            {
                Some(i) => Ok(i),
                None => Err(format!("no {level} cell above {here} on its path")),
            },
        }
    }

    /// Who to remind of the case, and for which unit: its handler if it has one, else the
    /// on-duty people of its lead department, else of the cell holding it.
    fn handlers(&self, duty: &dyn Duty, at: UtcMillis) -> Option<(Vec<String>, CellRef)> {
        let unit = match self.tasks.iter().rev().find(|k| k.is_active_lead()) {
            Some(k) => k.unit.clone(),
            None => self.current_cell()?.clone(),
        };
        let people = match &self.handler {
            Some(h) => vec![h.clone()],
            None => duty.on_duty(&unit.code, at),
        };
        Some((people, unit))
    }

    /// Notifies `people` of `unit` for the current step, or records that nobody is on duty
    /// there (a unit off the path: nothing to climb to).
    pub(crate) fn tell(
        &mut self,
        people: Vec<String>,
        unit: CellRef,
        round: Round,
        effects: &mut Vec<Effect>,
    ) {
        if !people.is_empty() {
            self.notify(people, unit, round, effects);
            return;
        }
        self.log(Entry {
            at: round.at,
            fired_at: round.fired_at,
            actor: Actor::hub(),
            action: AuditAction::NobodyOnDuty,
            from: self.state,
            note: None,
            detail: Some(format!(
                "nobody on duty at {unit}: nobody notified (step {})",
                self.step
            )),
            photo: None,
        });
        effects.push(Effect::NobodyToNotify {
            cell: unit,
            step: self.step,
        });
    }

    /// Sends a dispatched case to `units` as well as its cell (分类交办 by a routing rule):
    /// each becomes a lead unit (no time limit: the grid's deadlines keep running) and its
    /// on-duty people are notified. A case that was not dispatched (record only, no cell) is
    /// not routed. Returns the effects (notifications; no deadline changes).
    pub fn route(
        &mut self,
        units: &[CellRef],
        why: &str,
        now: UtcMillis,
        duty: &dyn Duty,
    ) -> Vec<Effect> {
        let mut effects = Vec::new();
        if self.state != CaseState::Dispatched {
            return effects;
        }
        for unit in units {
            if self
                .tasks
                .iter()
                .any(|k| k.is_active() && k.unit.code == unit.code)
            {
                continue;
            }
            self.tasks.push(Task {
                unit: unit.clone(),
                role: TaskRole::Lead,
                by: Actor::HUB.to_owned(),
                at: now,
                due: None,
                overdue: false,
                ended_at: None,
            });
            self.log(Entry {
                at: now,
                fired_at: None,
                actor: Actor::hub(),
                action: AuditAction::Route,
                from: self.state,
                note: None,
                detail: Some(format!("routed to {unit} as well ({why})")),
                photo: None,
            });
            let round = Round {
                at: now,
                fired_at: None,
                duty_at: now,
                reason: NotifyReason::Routed,
            };
            let people = duty.on_duty(&unit.code, now);
            self.tell(people, unit.clone(), round, &mut effects);
        }
        effects
    }

    /// Fires a lead task's time limit and a supervision's deadline that passed by `now`
    /// while the case is unresolved ([`Case::tick`] calls it after the grid deadline).
    /// Returns whether anything fired.
    pub(crate) fn tick_workflow(
        &mut self,
        now: UtcMillis,
        duty: &dyn Duty,
        effects: &mut Vec<Effect>,
    ) -> bool {
        if !matches!(
            self.state,
            CaseState::New | CaseState::Dispatched | CaseState::Acknowledged | CaseState::Handling
        ) {
            return false;
        }
        let mut fired = false;
        let late = self
            .tasks
            .iter()
            .position(|k| k.is_active_lead() && !k.overdue && k.due.is_some_and(|d| d <= now));
        if let Some(i) = late {
            fired = true;
            self.tasks[i].overdue = true;
            let (unit, due) = (self.tasks[i].unit.clone(), self.tasks[i].due.unwrap_or(now));
            self.step += 1;
            self.log(Entry {
                at: due,
                fired_at: Some(now),
                actor: Actor::hub(),
                action: AuditAction::TaskOverdue,
                from: self.state,
                note: None,
                detail: Some(format!("{unit} did not resolve it by its time limit {due}")),
                photo: None,
            });
            if let Some(cell) = self.current_cell().cloned() {
                let round = Round {
                    at: due,
                    fired_at: Some(now),
                    duty_at: now,
                    reason: NotifyReason::TaskOverdue,
                };
                let people = duty.on_duty(&cell.code, now);
                self.tell(people, cell, round, effects);
            }
        }
        if let Some(due) = self
            .supervision
            .as_ref()
            .filter(|s| !s.overdue && s.due <= now)
            .map(|s| s.due)
        {
            fired = true;
            if let Some(s) = self.supervision.as_mut() {
                s.overdue = true;
            }
            self.step += 1;
            self.log(Entry {
                at: due,
                fired_at: Some(now),
                actor: Actor::hub(),
                action: AuditAction::SupervisionOverdue,
                from: self.state,
                note: None,
                detail: Some(format!("not resolved by the supervision's deadline {due}")),
                photo: None,
            });
            if let Some((people, unit)) = self.handlers(duty, now) {
                let round = Round {
                    at: due,
                    fired_at: Some(now),
                    duty_at: now,
                    reason: NotifyReason::SupervisionOverdue,
                };
                self.tell(people, unit, round, effects);
            }
        }
        fired
    }

    /// Every check of [`Case::apply`], before anything changes. Returns the index on the path
    /// of the cell the actor acts for, if they said.
    fn check(&self, t: &Transition, policy: &Policy) -> Result<Option<usize>, TransitionError> {
        let case = || self.id.clone();
        let action = t.action.verb();
        if t.actor.id.trim().is_empty() {
            return Err(TransitionError::NoActor {
                case: case(),
                action,
            });
        }
        if let Some(a) = &t.authority {
            let standing = super::Standing::of(self, a.units.iter().map(String::as_str));
            super::permitted(t.action.kind(), a.role, standing).map_err(|who| {
                TransitionError::Forbidden {
                    case: case(),
                    action,
                    role: a.role.as_str(),
                    standing: standing.in_words(),
                    who,
                }
            })?;
        }
        if self.archived.is_some() {
            return Err(TransitionError::NotAllowed {
                case: case(),
                action,
                state: self.state,
                hint: "it is archived",
            });
        }
        if let Some(hint) = refusal(self.state, &t.action) {
            return Err(TransitionError::NotAllowed {
                case: case(),
                action,
                state: self.state,
                hint,
            });
        }
        if let Some(what) = t.action.required_note()
            && t.note.as_deref().is_none_or(|n| n.trim().is_empty())
        {
            return Err(TransitionError::NoteRequired {
                case: case(),
                action,
                what,
            });
        }
        let actor_cell = match (&t.actor.cell, &t.action) {
            // A department working on the case acts for itself, not for a cell of the path.
            (Some(code), _)
                if self
                    .tasks
                    .iter()
                    .any(|k| k.is_active() && &k.unit.code == code) =>
            {
                None
            }
            (Some(code), action) if !matches!(action, Action::Comment) => {
                let i = self.path.iter().position(|c| &c.code == code);
                Some(i.ok_or_else(|| {
                    TransitionError::CellNotOnPath {
                        case: case(),
                        action: t.action.verb(),
                        cell: code.clone(),
                        path: self
                            .path
                            .iter()
                            .map(|c| c.code.as_str())
                            .collect::<Vec<_>>()
                            .join(" > "),
                    }
                })?)
            }
            _ => None,
        };
        match &t.action {
            Action::Close => {
                if let Some(r) = self.resolved_by.as_ref().filter(|r| **r == t.actor.id) {
                    return Err(TransitionError::SelfVerification {
                        case: case(),
                        actor: r.clone(),
                    });
                }
            }
            Action::Return { path } => {
                check_path(path).map_err(|problem| TransitionError::InvalidPath {
                    case: case(),
                    problem,
                })?;
                let new = path.last().map(|c| &c.code);
                if let Some(cur) = self.current_cell().filter(|c| Some(&c.code) == new) {
                    return Err(TransitionError::SameCell {
                        case: case(),
                        cell: cur.to_string(),
                    });
                }
            }
            Action::Extend { until } => {
                let Some(Deadline { at: current, .. }) = self.deadline else {
                    return Err(TransitionError::NoDeadline { case: case() });
                };
                let than = current.max(t.at);
                if *until <= than {
                    return Err(TransitionError::NotLater {
                        case: case(),
                        until: *until,
                        than,
                    });
                }
                if self.extensions >= policy.max_extensions {
                    return Err(TransitionError::TooManyExtensions {
                        case: case(),
                        count: self.extensions,
                        max: policy.max_extensions,
                    });
                }
            }
            Action::Transfer { department, within } => {
                if within.as_ms() <= 0 {
                    return Err(TransitionError::NoTimeLimit {
                        case: case(),
                        action,
                    });
                }
                if self
                    .tasks
                    .iter()
                    .any(|k| k.is_active_lead() && k.unit.code == department.code)
                {
                    return Err(TransitionError::AlreadyOnCase {
                        case: case(),
                        action,
                        unit: department.to_string(),
                    });
                }
            }
            Action::Assist { unit } => {
                let held = self.current_cell().is_some_and(|c| c.code == unit.code);
                if held
                    || self
                        .tasks
                        .iter()
                        .any(|k| k.is_active() && k.unit.code == unit.code)
                {
                    return Err(TransitionError::AlreadyOnCase {
                        case: case(),
                        action,
                        unit: unit.to_string(),
                    });
                }
            }
            Action::Supervise { within } if within.as_ms() <= 0 => {
                return Err(TransitionError::NoTimeLimit {
                    case: case(),
                    action,
                });
            }
            Action::Escalate { to } => {
                self.escalation_target(*to)
                    .map_err(|problem| TransitionError::NoHigherLevel {
                        case: case(),
                        problem,
                    })?;
            }
            Action::Reply { .. } => {
                let source_kind = match &self.source {
                    protocol::AlertSource::Person(_) => None,
                    protocol::AlertSource::Camera(_) => Some("a camera"),
                    protocol::AlertSource::Reader(_) => Some("a tag reader"),
                    protocol::AlertSource::Hub(_) => Some("the hub"),
                };
                if let Some(source_kind) = source_kind {
                    return Err(TransitionError::NotAReport {
                        case: case(),
                        source_kind,
                    });
                }
            }
            // 回复征询 before 销号归档: a person's report is not archived unanswered.
            Action::Archive
                if matches!(self.source, protocol::AlertSource::Person(_))
                    && self.reply.is_none() =>
            {
                return Err(TransitionError::ReplyFirst { case: case() });
            }
            _ => {}
        }
        Ok(actor_cell)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;
    use crate::grid::Level;

    fn policy() -> Policy {
        Policy::default()
    }

    fn act(case: &mut Case, t: Transition) -> Result<Vec<Effect>, TransitionError> {
        case.apply(t, &policy(), &duty_everywhere())
    }

    fn ack(case: &mut Case, who: &str, m: i64) {
        act(case, Transition::new(Action::Acknowledge, who, at_min(m))).unwrap();
    }

    fn resolved_case() -> Case {
        let (mut case, _) = open_critical(&duty_everywhere());
        ack(&mut case, "micro-li", 1);
        act(
            &mut case,
            Transition::new(Action::Resolve, "micro-li", at_min(20)).with_note("chased off"),
        )
        .unwrap();
        case
    }

    #[test]
    fn resolving_before_acknowledging_names_the_state_and_the_action() {
        let (mut case, _) = open_critical(&duty_everywhere());
        let err = act(
            &mut case,
            Transition::new(Action::Resolve, "micro-li", at_min(1)).with_note("done"),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot resolve case C-1 in state dispatched: acknowledge it first"
        );
    }

    #[test]
    fn the_whole_lifecycle_is_audited_with_increasing_seq() {
        let mut case = resolved_case();
        act(
            &mut case,
            Transition::new(Action::Close, "operator-chen", at_min(30)),
        )
        .unwrap();
        assert_eq!(case.state, CaseState::Closed);
        assert_eq!(case.deadline, None);
        let trail: Vec<_> = case
            .audit
            .iter()
            .map(|r| (r.action, r.from_state, r.to_state))
            .collect();
        use AuditAction as A;
        use CaseState as S;
        assert_eq!(
            trail,
            [
                (A::Open, S::New, S::New),
                (A::Dispatch, S::New, S::Dispatched),
                (A::Notify, S::Dispatched, S::Dispatched),
                (A::Acknowledge, S::Dispatched, S::Acknowledged),
                (A::Resolve, S::Acknowledged, S::Resolved),
                (A::Close, S::Resolved, S::Closed),
            ]
        );
        assert!(case.audit.windows(2).all(|w| w[1].seq > w[0].seq));
        let resolve = &case.audit[4];
        assert_eq!(resolve.note.as_deref(), Some("chased off"));
        assert_eq!(resolve.actor.id, "micro-li");
        assert_eq!(
            (resolve.level, resolve.cell.as_deref()),
            (Some(Level::MicroGrid), Some(MICRO))
        );
    }

    #[test]
    fn acknowledging_starts_the_resolve_deadline_and_reports_the_change() {
        let (mut case, _) = open_critical(&duty_everywhere());
        let effects = act(
            &mut case,
            Transition::new(Action::Acknowledge, "micro-li", at_min(1)),
        )
        .unwrap();
        assert_eq!(
            effects,
            [
                Effect::StateChanged {
                    from: CaseState::Dispatched,
                    to: CaseState::Acknowledged
                },
                Effect::DeadlineSet(Some(at_min(61))),
            ]
        );
        assert_eq!(case.handler.as_deref(), Some("micro-li"));
    }

    #[test]
    fn close_by_the_resolver_is_refused() {
        let mut case = resolved_case();
        let err = act(
            &mut case,
            Transition::new(Action::Close, "micro-li", at_min(30)),
        )
        .unwrap_err();
        assert_eq!(
            err,
            TransitionError::SelfVerification {
                case: "C-1".into(),
                actor: "micro-li".into()
            }
        );
        assert_eq!(case.state, CaseState::Resolved);
    }

    #[test]
    fn refused_transition_changes_nothing() {
        let mut case = resolved_case();
        let before = case.to_json().unwrap();
        let refused = [
            Transition::new(Action::Close, "micro-li", at_min(30)),
            Transition::new(Action::Acknowledge, "grid-wang", at_min(30)),
            Transition::new(Action::Reopen, "operator-chen", at_min(30)),
            Transition::new(
                Action::Extend { until: at_min(600) },
                "micro-li",
                at_min(30),
            )
            .with_note("more time"),
            Transition::new(Action::Comment, "", at_min(30)).with_note("who am I"),
            Transition::new(Action::Close, "operator-chen", at_min(30))
                .with_note("ok")
                .tap(|t| t.actor.cell = Some("nowhere".into())),
        ];
        for t in refused {
            assert!(act(&mut case, t.clone()).is_err(), "{t:?}");
            assert_eq!(case.to_json().unwrap(), before, "{t:?}");
        }
    }

    #[test]
    fn resolve_return_extend_and_reopen_need_their_words() {
        let (mut case, _) = open_critical(&duty_everywhere());
        ack(&mut case, "micro-li", 1);
        let err = act(
            &mut case,
            Transition::new(Action::Resolve, "micro-li", at_min(2)).with_note("  "),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot resolve case C-1: a note saying what was found and done is required"
        );
        let err = act(
            &mut case,
            Transition::new(Action::Return { path: other_path() }, "micro-li", at_min(2)),
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                TransitionError::NoteRequired {
                    action: "return",
                    ..
                }
            ),
            "{err}"
        );
        let err = act(
            &mut case,
            Transition::new(Action::Extend { until: at_min(90) }, "micro-li", at_min(2)),
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                TransitionError::NoteRequired {
                    action: "extend",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn return_redispatches_to_the_new_cell() {
        let (mut case, _) = open_critical(&duty_everywhere());
        ack(&mut case, "micro-li", 1);
        let effects = act(
            &mut case,
            Transition::new(Action::Return { path: other_path() }, "micro-li", at_min(3))
                .with_note("the yard belongs to grid 2"),
        )
        .unwrap();
        assert_eq!(case.state, CaseState::Dispatched);
        assert_eq!(
            case.current_cell().map(|c| c.code.as_str()),
            Some("530329101001002")
        );
        assert_eq!(case.level_index, 3);
        assert_eq!(case.handler, None);
        assert_eq!(case.step, 1);
        // Grid ack span (2m) from the return, not from the original dispatch.
        assert_eq!(
            case.deadline,
            Some(Deadline {
                at: at_min(5),
                kind: DeadlineKind::Ack
            })
        );
        assert_eq!(
            effects,
            [
                Effect::Notify {
                    persons: vec!["grid2-qian".into()],
                    cell: other_path()[3].clone(),
                    step: 1,
                    reason: NotifyReason::Returned,
                },
                Effect::StateChanged {
                    from: CaseState::Acknowledged,
                    to: CaseState::Dispatched
                },
                Effect::DeadlineSet(Some(at_min(5))),
            ]
        );
        assert!(
            case.notified.contains(&("micro-li".into(), 0)),
            "history kept"
        );
        let ret = case
            .audit
            .iter()
            .find(|r| r.action == AuditAction::Return)
            .unwrap();
        assert_eq!(ret.note.as_deref(), Some("the yard belongs to grid 2"));
        assert_eq!(
            (ret.from_state, ret.to_state, ret.cell.as_deref()),
            (
                CaseState::Acknowledged,
                CaseState::Dispatched,
                Some("530329101001002")
            )
        );
        // The new cell's timer then climbs the new path.
        let effects = case.tick(at_min(5), &policy(), &duty_everywhere());
        assert!(effects.contains(&Effect::Escalated {
            from: other_path()[3].clone(),
            to: path()[2].clone(),
            reason: ClimbReason::AckOverdue
        }));
    }

    #[test]
    fn return_to_the_same_cell_or_along_a_broken_path_is_refused() {
        let (mut case, _) = open_critical(&duty_everywhere());
        let err = act(
            &mut case,
            Transition::new(Action::Return { path: path() }, "micro-li", at_min(1)).with_note("x"),
        )
        .unwrap_err();
        assert!(matches!(err, TransitionError::SameCell { .. }), "{err}");
        let mut upside_down = path();
        upside_down.swap(0, 1);
        let err = act(
            &mut case,
            Transition::new(Action::Return { path: upside_down }, "micro-li", at_min(1))
                .with_note("x"),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot return case C-1: path[1] (county 武定县 (530329)) is not below path[0] \
             (township 狮山镇 (530329101))"
        );
        let err = act(
            &mut case,
            Transition::new(Action::Return { path: vec![] }, "micro-li", at_min(1)).with_note("x"),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot return case C-1: the new path is empty"
        );
    }

    #[test]
    fn a_case_being_handled_cannot_be_returned() {
        let (mut case, _) = open_critical(&duty_everywhere());
        ack(&mut case, "micro-li", 1);
        act(
            &mut case,
            Transition::new(Action::StartHandling, "micro-li", at_min(2)),
        )
        .unwrap();
        let err = act(
            &mut case,
            Transition::new(Action::Return { path: other_path() }, "micro-li", at_min(3))
                .with_note("not ours"),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot return case C-1 in state handling: it is already being handled"
        );
    }

    #[test]
    fn extension_moves_the_deadline_must_be_later_and_is_limited() {
        let (mut case, _) = open_critical(&duty_everywhere());
        ack(&mut case, "micro-li", 1);
        let extend = |m: i64| {
            Transition::new(Action::Extend { until: at_min(m) }, "micro-li", at_min(10))
                .with_note("waiting for the owner")
        };
        let err = act(&mut case, extend(61)).unwrap_err();
        assert_eq!(
            err,
            TransitionError::NotLater {
                case: "C-1".into(),
                until: at_min(61),
                than: at_min(61)
            }
        );
        let effects = act(&mut case, extend(90)).unwrap();
        assert_eq!(effects, [Effect::DeadlineSet(Some(at_min(90)))]);
        assert_eq!(case.extensions, 1);
        assert_eq!(case.deadline.map(|d| d.kind), Some(DeadlineKind::Resolve));
        act(&mut case, extend(120)).unwrap();
        let err = act(&mut case, extend(150)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot extend case C-1: it was extended 2 times, the policy allows 2"
        );
        assert_eq!(case.next_deadline(), Some(at_min(120)));
        // Climbing after an extension counts from the extended deadline.
        case.tick(at_min(120), &policy(), &duty_everywhere());
        assert_eq!(case.next_deadline(), Some(at_min(180)));
    }

    #[test]
    fn a_dispatched_case_can_have_its_ack_deadline_extended() {
        let (mut case, _) = open_critical(&duty_everywhere());
        act(
            &mut case,
            Transition::new(Action::Extend { until: at_min(10) }, "micro-li", at_min(1))
                .with_note("on the way, 8 minutes out"),
        )
        .unwrap();
        assert_eq!(case.tick(at_min(9), &policy(), &duty_everywhere()), []);
        assert_eq!(case.level(), Some(Level::MicroGrid));
    }

    #[test]
    fn parent_level_can_acknowledge_and_takes_the_case_up() {
        let (mut case, _) = open_critical(&duty_everywhere());
        let t = Transition::new(Action::Acknowledge, "village-zhao", at_min(1)).tap(|t| {
            t.actor = Actor::person("village-zhao")
                .for_cell(VILLAGE)
                .with_role("cadre")
        });
        let effects = act(&mut case, t).unwrap();
        assert_eq!(case.level(), Some(Level::Village));
        assert_eq!(case.handler.as_deref(), Some("village-zhao"));
        assert_eq!(
            effects[0],
            Effect::Escalated {
                from: path()[4].clone(),
                to: path()[2].clone(),
                reason: ClimbReason::TakenUp
            }
        );
        // The village's resolve time (2h), from the acknowledgement.
        assert_eq!(case.next_deadline(), Some(at_min(121)));
        let rec = case.audit.last().unwrap();
        assert_eq!(rec.actor.cell.as_deref(), Some(VILLAGE));
        assert_eq!(rec.cell.as_deref(), Some(VILLAGE));
    }

    #[test]
    fn the_original_cell_can_still_acknowledge_after_the_case_climbed() {
        let (mut case, _) = open_critical(&duty_everywhere());
        case.tick(at_min(2), &policy(), &duty_everywhere());
        let t = Transition::new(Action::Acknowledge, "micro-li", at_min(3))
            .tap(|t| t.actor.cell = Some(MICRO.into()));
        act(&mut case, t).unwrap();
        assert_eq!(
            case.level(),
            Some(Level::Grid),
            "the case does not climb back down"
        );
        assert_eq!(case.handler.as_deref(), Some("micro-li"));
    }

    #[test]
    fn acknowledging_for_a_cell_off_the_path_is_refused() {
        let (mut case, _) = open_critical(&duty_everywhere());
        let t = Transition::new(Action::Acknowledge, "grid2-qian", at_min(1))
            .tap(|t| t.actor.cell = Some("530329101001002".into()));
        let err = act(&mut case, t).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "cannot acknowledge case C-1: cell 530329101001002 is not on its path \
                 ({COUNTY} > {TOWNSHIP} > {VILLAGE} > {GRID} > {MICRO})"
            )
        );
    }

    #[test]
    fn reopen_sends_the_case_back_to_its_handler_at_a_new_step() {
        let mut case = resolved_case();
        let effects = act(
            &mut case,
            Transition::new(Action::Reopen, "operator-chen", at_min(30))
                .with_note("the gate is still open"),
        )
        .unwrap();
        assert_eq!(case.state, CaseState::Handling);
        assert_eq!(case.resolved_by, None);
        assert_eq!(
            effects[0],
            Effect::Notify {
                persons: vec!["micro-li".into()],
                cell: path()[4].clone(),
                step: 1,
                reason: NotifyReason::Reopened
            }
        );
        assert_eq!(case.next_deadline(), Some(at_min(90)));
        // And the one who resolved it before may now resolve it again; another verifies.
        act(
            &mut case,
            Transition::new(Action::Resolve, "micro-li", at_min(40)).with_note("gate locked"),
        )
        .unwrap();
        act(
            &mut case,
            Transition::new(Action::Close, "operator-chen", at_min(41)),
        )
        .unwrap();
    }

    #[test]
    fn comments_are_recorded_in_any_state_even_closed() {
        let mut case = resolved_case();
        assert_eq!(case.closed_at(), None);
        act(
            &mut case,
            Transition::new(Action::Close, "operator-chen", at_min(30)),
        )
        .unwrap();
        assert_eq!(case.closed_at(), Some(at_min(30)));
        let effects = act(
            &mut case,
            Transition::new(Action::Comment, "operator-chen", at_min(31)).with_note("owner called"),
        )
        .unwrap();
        assert_eq!(effects, []);
        assert_eq!(
            case.audit.last().map(|r| r.action),
            Some(AuditAction::Comment)
        );
        assert_eq!(
            case.closed_at(),
            Some(at_min(30)),
            "a later comment does not move the closing time"
        );
        let err = act(
            &mut case,
            Transition::new(Action::Reopen, "x", at_min(32)).with_note("y"),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot reopen case C-1 in state closed: it is closed"
        );
    }

    #[test]
    fn a_record_only_case_can_be_acknowledged_or_routed_by_hand() {
        let duty = duty_everywhere();
        let (mut case, _) = Case::open(
            "C-9".into(),
            &alert(protocol::Severity::Info),
            Vec::new(),
            T0,
            &policy(),
            &duty,
        );
        let err = act(
            &mut case,
            Transition::new(Action::Extend { until: at_min(9) }, "op", at_min(1)).with_note("x"),
        )
        .unwrap_err();
        assert!(matches!(err, TransitionError::NotAllowed { .. }), "{err}");
        let effects = act(
            &mut case,
            Transition::new(Action::Return { path: path() }, "op", at_min(1))
                .with_note("it is the yard of group 1"),
        )
        .unwrap();
        assert_eq!(case.state, CaseState::Dispatched);
        assert!(matches!(
            &effects[0],
            Effect::Notify {
                reason: NotifyReason::NewCase,
                step: 1,
                ..
            }
        ));
        // Info has no deadlines in the default policy.
        assert_eq!(case.next_deadline(), None);
    }

    #[test]
    fn transitions_travel_as_json() {
        let t = Transition::new(Action::Extend { until: at_min(90) }, "micro-li", at_min(10))
            .with_note("waiting");
        let json = serde_json::to_value(&t).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "action": { "kind": "extend", "until": "2026-11-22T09:30:00.000Z" },
                "actor": { "id": "micro-li" },
                "note": "waiting",
                "at": "2026-11-22T08:10:00.000Z"
            })
        );
        assert_eq!(serde_json::from_value::<Transition>(json).unwrap(), t);
    }

    trait Tap: Sized {
        fn tap(self, f: impl FnOnce(&mut Self)) -> Self;
    }

    impl Tap for Transition {
        fn tap(mut self, f: impl FnOnce(&mut Self)) -> Self {
            f(&mut self);
            self
        }
    }
}
