//! Opening a case and the timer: dispatch to the deepest cell, climb on overdue deadlines
//! (提级管理).
//!
//! Deadlines chain: after a climb, the next deadline is the *previous deadline* plus the new
//! level's span, not "now" plus it. So when the hub was down for an hour, one [`Case::tick`]
//! fires every step it owed, in order, each audited at the time it was due (with `fired_at`
//! saying when it really happened), and the schedule afterwards is the one it would have had.
//! Who is notified is decided when the notice actually goes out: the people on duty at
//! `now`, since they are the ones who can act on it.

use protocol::{Alert, UtcMillis};

use super::Duty;
use super::effect::{ClimbReason, Effect, NotifyReason, RecordReason};
use super::group::GroupKey;
use super::model::{
    Actor, AuditAction, CASE_SCHEMA, Case, CaseState, CellRef, Deadline, DeadlineKind, Entry,
};
use super::policy::Policy;

/// When and how a round of notifications happens.
#[derive(Clone, Copy)]
pub(crate) struct Round {
    /// Audit time: the transition's time, or the deadline's due time.
    pub at: UtcMillis,
    /// Timer events: when the hub acted.
    pub fired_at: Option<UtcMillis>,
    /// Who is on duty is asked for this time.
    pub duty_at: UtcMillis,
    pub reason: NotifyReason,
}

impl Case {
    /// Opens a case from its first alert and dispatches it.
    ///
    /// `path` runs from the top (county) down to the deepest cell the alert fell in (see
    /// [`CellRef::path_to`]); an empty path opens a case that is recorded but not dispatched.
    /// The case goes to the on-duty people of the deepest cell; where nobody is on duty it
    /// climbs straight on to the next cell up, audited. The ack deadline is `now` plus the span
    /// of the level that received it. A severity the policy records only is not dispatched.
    pub fn open(
        id: super::CaseId,
        alert: &Alert,
        path: Vec<CellRef>,
        now: UtcMillis,
        policy: &Policy,
        duty: &dyn Duty,
    ) -> (Case, Vec<Effect>) {
        let mut case = Case {
            schema: CASE_SCHEMA,
            id,
            key: GroupKey::of(alert),
            site: alert.site.clone(),
            source: alert.source.clone(),
            kind: alert.kind,
            rule: alert.rule.clone(),
            severity: alert.severity,
            first_alert: alert.id.clone(),
            alert_ids: [alert.id.clone()].into(),
            count: 1,
            first_alert_at: alert.time,
            last_alert_at: alert.time,
            location: alert.location,
            opened_at: now,
            updated_at: now,
            level_index: path.len().saturating_sub(1),
            path,
            state: CaseState::New,
            deadline: None,
            overdue_at_top: None,
            step: 0,
            handler: None,
            resolved_by: None,
            notified: Default::default(),
            audit: Vec::new(),
            deliveries: Vec::new(),
            extensions: 0,
            position_untrusted: None,
            time_untrusted: None,
            tasks: Vec::new(),
            supervision: None,
            reply: None,
            archived: None,
        };
        let record = if !policy.for_severity(alert.severity).dispatch {
            Some((
                RecordReason::RecordOnly,
                format!(
                    "record only: the policy does not dispatch {} alerts",
                    serde_name(&alert.severity)
                ),
            ))
        } else if case.path.is_empty() {
            Some((
                RecordReason::NoCell,
                "the alert is in no grid cell: not dispatched".to_owned(),
            ))
        } else {
            None
        };
        let opened = format!(
            "alert {} ({} {}, rule {}) from {}",
            alert.id,
            serde_name(&alert.severity),
            serde_name(&alert.kind),
            alert.rule,
            source_name(&alert.source),
        );
        case.log(Entry {
            at: now,
            fired_at: None,
            actor: Actor::hub(),
            action: AuditAction::Open,
            from: CaseState::New,
            note: None,
            detail: Some(match &record {
                Some((_, why)) => format!("{opened}; {why}"),
                None => opened,
            }),
            photo: None,
        });
        let mut effects = Vec::new();
        match record {
            Some((reason, _)) => effects.push(Effect::Recorded { reason }),
            None => {
                let round = Round {
                    at: now,
                    fired_at: None,
                    duty_at: now,
                    reason: NotifyReason::NewCase,
                };
                let entry = Entry {
                    at: now,
                    fired_at: None,
                    actor: Actor::hub(),
                    action: AuditAction::Dispatch,
                    from: CaseState::New,
                    note: None,
                    detail: case.current_cell().map(|c| format!("dispatched to {c}")),
                    photo: None,
                };
                case.dispatch(round, entry, policy, duty, &mut effects);
                effects.push(Effect::StateChanged {
                    from: CaseState::New,
                    to: CaseState::Dispatched,
                });
            }
        }
        effects.push(Effect::DeadlineSet(case.next_deadline()));
        (case, effects)
    }

    /// Fires every deadline that has passed by `now`, in order, and returns what to do.
    ///
    /// - Ack deadline passed while dispatched: climb one cell up the path, notify its on-duty
    ///   people (`AckOverdue`), new ack deadline = the old one + that level's span.
    /// - Resolve deadline passed while acknowledged or handling: climb likewise
    ///   (`ResolveOverdue`), new resolve deadline.
    /// - At the top cell: mark [`Case::overdue_at_top`] once, emit [`Effect::OverdueAtTop`]
    ///   and stop the timer.
    ///
    /// A deadline that does not fit the state (an ack deadline on an acknowledged case, which
    /// the methods never leave behind) is dropped without climbing. Returns nothing, and
    /// changes nothing, when no deadline is due.
    pub fn tick(&mut self, now: UtcMillis, policy: &Policy, duty: &dyn Duty) -> Vec<Effect> {
        let mut effects = Vec::new();
        let mut fired = false;
        while let Some(due) = self.deadline.filter(|d| d.at <= now) {
            fired = true;
            let (climb, notify) = match due.kind {
                DeadlineKind::Ack => (ClimbReason::AckOverdue, NotifyReason::AckOverdue),
                DeadlineKind::Resolve => {
                    (ClimbReason::ResolveOverdue, NotifyReason::ResolveOverdue)
                }
            };
            let fits = match due.kind {
                DeadlineKind::Ack => self.state == CaseState::Dispatched,
                DeadlineKind::Resolve => {
                    matches!(self.state, CaseState::Acknowledged | CaseState::Handling)
                }
            };
            if !fits {
                self.deadline = None;
                break;
            }
            let Some(from) = self.current_cell().cloned() else {
                self.deadline = None;
                break;
            };
            let missed = match due.kind {
                DeadlineKind::Ack => "not acknowledged",
                DeadlineKind::Resolve => "not resolved",
            };
            if self.level_index == 0 {
                self.deadline = None;
                self.overdue_at_top = Some(due);
                self.log(Entry {
                    at: due.at,
                    fired_at: Some(now),
                    actor: Actor::hub(),
                    action: AuditAction::OverdueAtTop,
                    from: self.state,
                    note: None,
                    detail: Some(format!(
                        "{missed} by {} at {from}, the top: nowhere higher to climb; timer stopped",
                        due.at
                    )),
                    photo: None,
                });
                effects.push(Effect::OverdueAtTop {
                    cell: from,
                    kind: due.kind,
                    due: due.at,
                });
                break;
            }
            self.level_index -= 1;
            self.step += 1;
            let to = self.path[self.level_index].clone();
            self.log(Entry {
                at: due.at,
                fired_at: Some(now),
                actor: Actor::hub(),
                action: AuditAction::Escalate,
                from: self.state,
                note: None,
                detail: Some(format!(
                    "{missed} by {} at {from}: climbed to {to} (step {})",
                    due.at, self.step
                )),
                photo: None,
            });
            effects.push(Effect::Escalated {
                from,
                to,
                reason: climb,
            });
            let round = Round {
                at: due.at,
                fired_at: Some(now),
                duty_at: now,
                reason: notify,
            };
            self.reach(round, duty, &mut effects);
            self.deadline = self.deadline_after(due.at, due.kind, policy);
        }
        fired |= self.tick_workflow(now, duty, &mut effects);
        if fired {
            self.updated_at = now;
            effects.push(Effect::DeadlineSet(self.next_deadline()));
        }
        effects
    }

    /// A deadline of `kind` for the current level, counted from `from`; `None` when the policy
    /// sets none.
    pub(crate) fn deadline_after(
        &self,
        from: UtcMillis,
        kind: DeadlineKind,
        policy: &Policy,
    ) -> Option<Deadline> {
        let span = policy.span(self.severity, kind, self.level()?)?;
        Some(Deadline {
            at: UtcMillis(from.0.saturating_add(span.as_ms())),
            kind,
        })
    }

    /// [`Case::deadline_after`], except while a department's time limit is the case's timer
    /// ([`Case::timed_lead`]): then no grid deadline runs.
    pub(crate) fn grid_deadline_after(
        &self,
        from: UtcMillis,
        kind: DeadlineKind,
        policy: &Policy,
    ) -> Option<Deadline> {
        if self.timed_lead().is_some() {
            return None;
        }
        self.deadline_after(from, kind, policy)
    }

    /// Sends the case to the cell at `level_index` (climbing past cells with nobody on duty)
    /// and starts the ack deadline. `entry` is the audit record of the dispatch itself (its
    /// `to_state` is `dispatched`); the notifications and climbs are recorded after it.
    pub(crate) fn dispatch(
        &mut self,
        round: Round,
        entry: Entry,
        policy: &Policy,
        duty: &dyn Duty,
        effects: &mut Vec<Effect>,
    ) {
        self.state = CaseState::Dispatched;
        self.log(entry);
        self.reach(round, duty, effects);
        self.overdue_at_top = None;
        self.deadline = self.deadline_after(round.at, DeadlineKind::Ack, policy);
    }

    /// Notifies the on-duty people of the cell holding the case, for the current step. Where
    /// nobody is on duty, climbs on up (same step) until someone is or the top is reached.
    pub(crate) fn reach(&mut self, round: Round, duty: &dyn Duty, effects: &mut Vec<Effect>) {
        while let Some(cell) = self.current_cell().cloned() {
            let people = duty.on_duty(&cell.code, round.duty_at);
            if people.is_empty() && self.level_index > 0 {
                self.level_index -= 1;
                let to = self.path[self.level_index].clone();
                self.log(Entry {
                    at: round.at,
                    fired_at: round.fired_at,
                    actor: Actor::hub(),
                    action: AuditAction::NobodyOnDuty,
                    from: self.state,
                    note: None,
                    detail: Some(format!("nobody on duty at {cell}, climbed to {to}")),
                    photo: None,
                });
                effects.push(Effect::Escalated {
                    from: cell,
                    to,
                    reason: ClimbReason::NobodyOnDuty,
                });
                continue;
            }
            // Someone on duty is notified; at the top with nobody, that is recorded and the
            // case waits there.
            self.tell(people, cell, round, effects);
            return;
        }
    }

    /// Notifies `people` for the current step, skipping anyone already notified for it.
    pub(crate) fn notify(
        &mut self,
        people: Vec<String>,
        cell: CellRef,
        round: Round,
        effects: &mut Vec<Effect>,
    ) {
        let step = self.step;
        let mut persons = Vec::with_capacity(people.len());
        for p in people {
            // `insert` is false for a person already notified for this step, including a
            // duplicate within this very list.
            if self.notified.insert((p.clone(), step)) {
                persons.push(p);
            }
        }
        if persons.is_empty() {
            return;
        }
        self.log(Entry {
            at: round.at,
            fired_at: round.fired_at,
            actor: Actor::hub(),
            action: AuditAction::Notify,
            from: self.state,
            note: None,
            detail: Some(format!(
                "notified {} at {cell} (step {step}, {})",
                persons.join(", "),
                serde_name(&round.reason)
            )),
            photo: None,
        });
        effects.push(Effect::Notify {
            persons,
            cell,
            step,
            reason: round.reason,
        });
    }
}

/// The snake_case wire name of a unit enum variant, for audit text.
pub(crate) fn serde_name<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => "?".to_owned(),
    }
}

/// `camera gate-east` / `reader north`.
pub(crate) fn source_name(source: &protocol::AlertSource) -> String {
    match source {
        protocol::AlertSource::Camera(c) => format!("camera {c}"),
        protocol::AlertSource::Reader(r) => format!("reader {r}"),
        protocol::AlertSource::Person(p) => format!("patrol report by {p}"),
        protocol::AlertSource::Hub(part) => format!("the hub's {part}"),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::super::{Action, Transition};
    use super::*;
    use crate::grid::Level;
    use protocol::Severity;

    fn escalations(effects: &[Effect]) -> Vec<(Level, Level, ClimbReason)> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Escalated { from, to, reason } => Some((from.level, to.level, *reason)),
                _ => None,
            })
            .collect()
    }

    fn notifies(effects: &[Effect]) -> Vec<(Vec<String>, Level, u32, NotifyReason)> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Notify {
                    persons,
                    cell,
                    step,
                    reason,
                } => Some((persons.clone(), cell.level, *step, *reason)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn new_case_goes_to_the_deepest_cells_people_with_an_ack_deadline() {
        let (case, effects) = open_critical(&duty_everywhere());
        assert_eq!(case.state, CaseState::Dispatched);
        assert_eq!(case.level(), Some(Level::MicroGrid));
        assert_eq!(
            notifies(&effects),
            vec![(
                vec!["micro-li".to_owned()],
                Level::MicroGrid,
                0,
                NotifyReason::NewCase
            )]
        );
        let ack = Some(Deadline {
            at: at_min(2),
            kind: DeadlineKind::Ack,
        });
        assert_eq!(case.deadline, ack);
        assert_eq!(effects.last(), Some(&Effect::DeadlineSet(Some(at_min(2)))));
        assert!(case.notified.contains(&("micro-li".to_owned(), 0)));
        let actions: Vec<_> = case.audit.iter().map(|r| r.action).collect();
        assert_eq!(
            actions,
            [
                AuditAction::Open,
                AuditAction::Dispatch,
                AuditAction::Notify
            ]
        );
    }

    #[test]
    fn nothing_happens_before_the_deadline() {
        let (mut case, _) = open_critical(&duty_everywhere());
        let before = case.clone();
        let effects = case.tick(
            UtcMillis(at_min(2).0 - 1),
            &Policy::default(),
            &duty_everywhere(),
        );
        assert_eq!(effects, []);
        assert_eq!(case, before);
    }

    #[test]
    fn unacknowledged_alert_climbs_to_parent_cell_after_deadline() {
        let duty = duty_everywhere();
        let (mut case, _) = open_critical(&duty);
        let effects = case.tick(at_min(2), &Policy::default(), &duty);
        assert_eq!(
            escalations(&effects),
            [(Level::MicroGrid, Level::Grid, ClimbReason::AckOverdue)]
        );
        assert_eq!(
            notifies(&effects),
            [(
                vec!["grid-wang".to_owned()],
                Level::Grid,
                1,
                NotifyReason::AckOverdue
            )]
        );
        assert_eq!(case.level(), Some(Level::Grid));
        assert_eq!(case.state, CaseState::Dispatched);
        // Grid ack span (2m) counted from the missed deadline.
        assert_eq!(case.next_deadline(), Some(at_min(4)));
        assert_eq!(effects.last(), Some(&Effect::DeadlineSet(Some(at_min(4)))));
        let last = case
            .audit
            .iter()
            .rev()
            .find(|r| r.action == AuditAction::Escalate);
        let last = last.unwrap();
        assert_eq!((last.at, last.fired_at), (at_min(2), Some(at_min(2))));
        assert_eq!(last.cell.as_deref(), Some(GRID));
    }

    #[test]
    fn acknowledged_case_stops_climbing_on_ack_deadline() {
        let duty = duty_everywhere();
        let policy = Policy::default();
        let (mut case, _) = open_critical(&duty);
        case.apply(
            Transition::new(Action::Acknowledge, "micro-li", at_min(1)),
            &policy,
            &duty,
        )
        .unwrap();
        let effects = case.tick(at_min(30), &policy, &duty);
        assert_eq!(effects, []);
        assert_eq!(case.level(), Some(Level::MicroGrid));
        assert_eq!(
            case.deadline,
            Some(Deadline {
                at: at_min(61),
                kind: DeadlineKind::Resolve
            })
        );
    }

    #[test]
    fn unresolved_case_climbs_after_resolve_deadline() {
        let duty = duty_everywhere();
        let policy = Policy::default();
        let (mut case, _) = open_critical(&duty);
        case.apply(
            Transition::new(Action::Acknowledge, "micro-li", at_min(1)),
            &policy,
            &duty,
        )
        .unwrap();
        case.apply(
            Transition::new(Action::StartHandling, "micro-li", at_min(5)),
            &policy,
            &duty,
        )
        .unwrap();
        let effects = case.tick(at_min(61), &policy, &duty);
        assert_eq!(
            escalations(&effects),
            [(Level::MicroGrid, Level::Grid, ClimbReason::ResolveOverdue)]
        );
        assert_eq!(
            notifies(&effects),
            [(
                vec!["grid-wang".to_owned()],
                Level::Grid,
                1,
                NotifyReason::ResolveOverdue
            )]
        );
        assert_eq!(case.state, CaseState::Handling, "still the handler's case");
        assert_eq!(case.handler.as_deref(), Some("micro-li"));
        assert_eq!(
            case.deadline,
            Some(Deadline {
                at: at_min(121),
                kind: DeadlineKind::Resolve
            })
        );
    }

    #[test]
    fn nobody_on_duty_skips_straight_to_next_level() {
        let duty = FakeDuty::of(&[(VILLAGE, &["village-zhao"])]);
        let (case, effects) = open_critical(&duty);
        assert_eq!(
            escalations(&effects),
            [
                (Level::MicroGrid, Level::Grid, ClimbReason::NobodyOnDuty),
                (Level::Grid, Level::Village, ClimbReason::NobodyOnDuty),
            ]
        );
        assert_eq!(
            notifies(&effects),
            [(
                vec!["village-zhao".to_owned()],
                Level::Village,
                0,
                NotifyReason::NewCase
            )]
        );
        // The village's own ack span (5m), not the micro-grid's.
        assert_eq!(case.next_deadline(), Some(at_min(5)));
        let details: Vec<_> = case
            .audit
            .iter()
            .filter(|r| r.action == AuditAction::NobodyOnDuty)
            .filter_map(|r| r.detail.clone())
            .collect();
        assert_eq!(
            details,
            [
                format!(
                    "nobody on duty at micro_grid 近城一网格第一组 ({MICRO}), climbed to grid \
                     近城一网格 ({GRID})"
                ),
                format!(
                    "nobody on duty at grid 近城一网格 ({GRID}), climbed to village 近城社区 \
                     ({VILLAGE})"
                ),
            ]
        );
    }

    #[test]
    fn nobody_on_duty_anywhere_leaves_the_case_at_the_top_and_says_so() {
        let duty = FakeDuty::of(&[]);
        let (case, effects) = open_critical(&duty);
        assert_eq!(case.level(), Some(Level::County));
        assert_eq!(escalations(&effects).len(), 4);
        assert!(notifies(&effects).is_empty());
        assert!(effects.contains(&Effect::NobodyToNotify {
            cell: path()[0].clone(),
            step: 0
        }));
        assert_eq!(case.next_deadline(), Some(at_min(15)));
    }

    #[test]
    fn hub_down_for_an_hour_fires_every_owed_step_in_order() {
        let duty = duty_everywhere();
        let policy = Policy::default();
        let (mut case, _) = open_critical(&duty);
        let effects = case.tick(at_min(60), &policy, &duty);
        assert_eq!(
            escalations(&effects),
            [
                (Level::MicroGrid, Level::Grid, ClimbReason::AckOverdue),
                (Level::Grid, Level::Village, ClimbReason::AckOverdue),
                (Level::Village, Level::Township, ClimbReason::AckOverdue),
                (Level::Township, Level::County, ClimbReason::AckOverdue),
            ]
        );
        let steps: Vec<_> = notifies(&effects).iter().map(|n| (n.1, n.2)).collect();
        assert_eq!(
            steps,
            [
                (Level::Grid, 1),
                (Level::Village, 2),
                (Level::Township, 3),
                (Level::County, 4)
            ]
        );
        // Due 2m (micro-grid), then +2m grid, +5m village, +10m township, +15m county.
        let escalated: Vec<_> = case
            .audit
            .iter()
            .filter(|r| matches!(r.action, AuditAction::Escalate | AuditAction::OverdueAtTop))
            .map(|r| (r.at, r.fired_at))
            .collect();
        let fired = Some(at_min(60));
        assert_eq!(
            escalated,
            [
                (at_min(2), fired),
                (at_min(4), fired),
                (at_min(9), fired),
                (at_min(19), fired),
                (at_min(34), fired),
            ]
        );
        assert!(effects.contains(&Effect::OverdueAtTop {
            cell: path()[0].clone(),
            kind: DeadlineKind::Ack,
            due: at_min(34),
        }));
        assert_eq!(effects.last(), Some(&Effect::DeadlineSet(None)));
        assert_eq!(case.next_deadline(), None);
        assert_eq!(
            case.overdue_at_top.map(|d| d.at),
            Some(at_min(34)),
            "marked at the top"
        );
        let seqs: Vec<u64> = case.audit.iter().map(|r| r.seq).collect();
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    }

    #[test]
    fn catch_up_stops_at_the_first_deadline_still_ahead() {
        let duty = duty_everywhere();
        let (mut case, _) = open_critical(&duty);
        let effects = case.tick(at_min(5), &Policy::default(), &duty);
        assert_eq!(escalations(&effects).len(), 2);
        assert_eq!(case.level(), Some(Level::Village));
        assert_eq!(case.next_deadline(), Some(at_min(9)));
    }

    #[test]
    fn overdue_at_top_is_marked_once_and_the_timer_stops() {
        let duty = duty_everywhere();
        let policy = Policy::default();
        let (mut case, _) = open_critical(&duty);
        case.tick(at_min(60), &policy, &duty);
        let before = case.clone();
        assert_eq!(case.tick(at_min(600), &policy, &duty), []);
        assert_eq!(case, before);
        let tops = case
            .audit
            .iter()
            .filter(|r| r.action == AuditAction::OverdueAtTop)
            .count();
        assert_eq!(tops, 1);
    }

    #[test]
    fn person_is_not_notified_twice_for_the_same_step() {
        let duty = FakeDuty::of(&[(MICRO, &["li", "li", "wang"]), (GRID, &["li"])]);
        let policy = Policy::default();
        let (mut case, effects) = open_critical(&duty);
        assert_eq!(
            notifies(&effects),
            [(
                vec!["li".to_owned(), "wang".to_owned()],
                Level::MicroGrid,
                0,
                NotifyReason::NewCase
            )]
        );
        // A round at the same step (as a retried round would be) reaches nobody new.
        let mut again = Vec::new();
        let round = Round {
            at: at_min(1),
            fired_at: None,
            duty_at: at_min(1),
            reason: NotifyReason::NewCase,
        };
        case.reach(round, &duty, &mut again);
        assert_eq!(again, []);
        // A new step notifies again, even the same person.
        let effects = case.tick(at_min(2), &policy, &duty);
        assert_eq!(
            notifies(&effects),
            [(
                vec!["li".to_owned()],
                Level::Grid,
                1,
                NotifyReason::AckOverdue
            )]
        );
    }

    #[test]
    fn info_alerts_are_recorded_without_dispatch() {
        let duty = duty_everywhere();
        let (case, effects) = Case::open(
            "C-2".into(),
            &alert(Severity::Info),
            path(),
            T0,
            &Policy::default(),
            &duty,
        );
        assert_eq!(case.state, CaseState::New);
        assert_eq!(
            effects,
            [
                Effect::Recorded {
                    reason: RecordReason::RecordOnly
                },
                Effect::DeadlineSet(None)
            ]
        );
        assert!(case.notified.is_empty());
        let detail = case.audit[0].detail.as_deref().unwrap();
        assert!(
            detail.ends_with("record only: the policy does not dispatch info alerts"),
            "{detail}"
        );
    }

    #[test]
    fn alert_in_no_cell_is_recorded_for_an_operator_to_route() {
        let duty = duty_everywhere();
        let (case, effects) = Case::open(
            "C-3".into(),
            &alert(Severity::Critical),
            Vec::new(),
            T0,
            &Policy::default(),
            &duty,
        );
        assert_eq!(case.state, CaseState::New);
        assert_eq!(case.current_cell(), None);
        assert_eq!(
            effects[0],
            Effect::Recorded {
                reason: RecordReason::NoCell
            }
        );
    }

    #[test]
    fn major_cases_get_the_major_deadlines() {
        let duty = duty_everywhere();
        let (case, _) = Case::open(
            "C-4".into(),
            &alert(Severity::Major),
            path(),
            T0,
            &Policy::default(),
            &duty,
        );
        assert_eq!(case.next_deadline(), Some(at_min(10)));
    }
}
