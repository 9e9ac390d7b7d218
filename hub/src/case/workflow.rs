//! The governance centre's workflow around a case (分类交办, 协办, 督办, 提级, 回复征询,
//! 销号归档): the parts of a [`Case`] it adds, and who may do what.
//!
//! A **department** (公安, 交警, 消防, 城管 …) is a unit with people and an on-duty roster like a
//! cell, but it is not on the case's grid path: a case reaches it by a routing rule when the
//! case opens, or by a transfer. A case remembers every unit that worked on it as a [`Task`]:
//!
//! - a **lead** task (routed, or transferred with a time limit) lets the unit's people handle
//!   the case as the cell holding it can (acknowledge, start, resolve, comment); while a
//!   transferred task with a time limit runs, that limit is the case's resolve timer, not the
//!   grid's; past it the task is marked overdue and the cell holding the case is told, once;
//! - an **assist** task lets the unit's people see the case and comment.
//!
//! A **supervision** (督办) marks the case, reminds its handlers at once, and has its own
//! deadline: past it, unresolved, the handlers are reminded again and it is marked overdue.
//!
//! Who may do what: [`permitted`], one table, by the actor's role and where they stand on the
//! case ([`Standing`]):
//!
//! | action | member | operator | admin |
//! | --- | --- | --- | --- |
//! | acknowledge, start handling, resolve, escalate | holding, below, above, lead unit | holding, below, above, lead unit | any |
//! | return | holding, below, above | holding, below, above | any |
//! | comment | holding, below, above, lead unit, assisting | holding, below, above, lead unit, assisting | any |
//! | close, reopen, extend | — | holding, above | any |
//! | transfer, assist, reply, archive | — | holding, above | any |
//! | supervise | — | above | any |
//!
//! "Holding": the actor acts for the cell that holds the case now; "below"/"above": for a cell
//! of the case's path below or above it; "lead unit"/"assisting": for a unit with such a task
//! on the case. An admin acts for the whole county.

use protocol::UtcMillis;
use serde::{Deserialize, Serialize};

use super::model::{Case, CellRef};
use crate::users::UserRole;

/// What a unit does on a case.
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
    strum::IntoStaticStr,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum TaskRole {
    /// Handles the case (routed to it, or transferred to it: 交办).
    Lead,
    /// Helps (协办): sees the case, is notified, may comment.
    Assist,
}

/// One unit's part in a case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Task {
    /// The unit: a department (or, for an assist, a cell), as cases name cells.
    pub unit: CellRef,
    /// Lead or assist.
    pub role: TaskRole,
    /// Who gave it (`hub` for a routing rule).
    pub by: String,
    /// When.
    pub at: UtcMillis,
    /// The time limit (交办时限), when one was set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due: Option<UtcMillis>,
    /// Set when the time limit passed with the case unresolved.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub overdue: bool,
    /// When the task ended (the case was transferred on, or taken up a level).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<UtcMillis>,
}

impl Task {
    /// Whether the task still runs.
    pub fn is_active(&self) -> bool {
        self.ended_at.is_none()
    }

    /// Whether it is a running lead task.
    pub fn is_active_lead(&self) -> bool {
        self.is_active() && self.role == TaskRole::Lead
    }
}

/// A supervision (督办) of the case by a level above it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Supervision {
    /// Who.
    pub by: String,
    /// For which cell (above the case), by code, when they said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cell: Option<String>,
    /// When.
    pub at: UtcMillis,
    /// By when the case must be resolved.
    pub due: UtcMillis,
    /// Set when `due` passed with the case unresolved (the handlers were reminded again).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub overdue: bool,
}

/// How the reporter rated the handling (满意度).
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
    strum::IntoStaticStr,
    strum::EnumString,
    strum::EnumIter,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Satisfaction {
    /// 满意.
    Satisfied,
    /// 基本满意.
    BasicallySatisfied,
    /// 不满意.
    Unsatisfied,
    /// The reporter could not be reached or did not say.
    NoAnswer,
}

/// The reply to the reporter of a patrol or citizen report (回复征询).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Reply {
    /// Who replied.
    pub by: String,
    /// When.
    pub at: UtcMillis,
    /// What the reporter was told.
    pub text: String,
    /// What they thought of it.
    pub satisfaction: Satisfaction,
}

/// When and by whom a closed case was archived (销号归档).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Archived {
    /// Who.
    pub by: String,
    /// When.
    pub at: UtcMillis,
}

/// Where an actor stands on a case, for [`permitted`]; the best of their units counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum Standing {
    /// None of the below.
    Outside,
    /// A unit assisting the case.
    Assisting,
    /// A unit leading the case (routed or transferred).
    LeadUnit,
    /// A cell of the path below the one holding the case.
    Below,
    /// The cell holding the case.
    Holding,
    /// A cell of the path above the one holding the case.
    Above,
}

impl Standing {
    /// Where someone acting for `units` (cell and department codes) stands on `case`: the
    /// strongest of their units' standings (above > holding > below > lead > assisting).
    pub fn of<'a>(case: &Case, units: impl IntoIterator<Item = &'a str>) -> Self {
        units
            .into_iter()
            .map(|u| Self::of_unit(case, u))
            .max()
            .unwrap_or(Self::Outside)
    }

    /// Where one unit stands.
    pub fn of_unit(case: &Case, unit: &str) -> Self {
        if let Some(i) = case.path.iter().position(|c| c.code == unit) {
            return match i.cmp(&case.level_index) {
                std::cmp::Ordering::Less => Self::Above,
                std::cmp::Ordering::Equal => Self::Holding,
                std::cmp::Ordering::Greater => Self::Below,
            };
        }
        let task = |role| {
            case.tasks
                .iter()
                .any(|t| t.is_active() && t.role == role && t.unit.code == unit)
        };
        if task(TaskRole::Lead) {
            Self::LeadUnit
        } else if task(TaskRole::Assist) {
            Self::Assisting
        } else {
            Self::Outside
        }
    }

    /// The name in messages.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Where they stand, in words, for a refusal (`a member of a cell below the case's`).
    pub fn in_words(self) -> &'static str {
        match self {
            Self::Outside => "outside the case's cells and departments",
            Self::Assisting => "of a unit assisting the case",
            Self::LeadUnit => "of the department leading the case",
            Self::Below => "of a cell below the one holding the case",
            Self::Holding => "of the cell holding the case",
            Self::Above => "of a level above the case",
        }
    }
}

// Also the kinds of action `permitted` decides on (an `Action` without its data); the API
// takes them by these names. The doc line below is the API document's description.
/// What a person does to a case.
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
    strum::IntoStaticStr,
    strum::EnumString,
    strum::EnumIter,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
#[schema(as = ActionName)]
pub enum ActionKind {
    Acknowledge,
    StartHandling,
    Resolve,
    Close,
    Reopen,
    Return,
    Extend,
    Comment,
    Transfer,
    Assist,
    Supervise,
    Escalate,
    Reply,
    Archive,
}

/// Whether a user of `role` standing at `standing` may do `action` on a case: the table in
/// the module's documentation. `Err` says who may, for the refusal.
pub fn permitted(
    action: ActionKind,
    role: UserRole,
    standing: Standing,
) -> Result<(), &'static str> {
    use ActionKind as A;
    use Standing as S;
    if role == UserRole::Admin {
        return Ok(());
    }
    let member = role == UserRole::Member;
    let (ok, who) = match action {
        // Anyone of the path may take the case on: acting for a cell above the one holding it
        // takes it up (提级), as a grid member over a micro-grid does.
        A::Acknowledge | A::StartHandling | A::Resolve | A::Escalate => (
            matches!(standing, S::Holding | S::Below | S::Above | S::LeadUnit),
            "the cells on the case's path and its lead department",
        ),
        A::Return => (
            matches!(standing, S::Holding | S::Below | S::Above),
            "the cells on the case's path",
        ),
        A::Comment => (
            standing != S::Outside,
            "the cells on the case's path and the departments working on it",
        ),
        A::Close | A::Reopen | A::Extend | A::Transfer | A::Assist | A::Reply | A::Archive => (
            !member && matches!(standing, S::Holding | S::Above),
            "an operator of the cell holding the case or above it",
        ),
        A::Supervise => (
            !member && standing == S::Above,
            "an operator of a level above the cell holding the case",
        ),
    };
    if ok { Ok(()) } else { Err(who) }
}

#[cfg(test)]
mod tests {
    use strum::IntoEnumIterator;

    use super::super::testkit::*;
    use super::*;
    use crate::grid::Level;

    fn dept(code: &str) -> CellRef {
        CellRef::new(code, "县交警大队", Level::County)
    }

    #[test]
    fn standing_follows_the_path_and_the_tasks() {
        let (mut case, _) = open_critical(&duty_everywhere());
        // Held by the micro-grid (the deepest cell).
        assert_eq!(Standing::of_unit(&case, MICRO), Standing::Holding);
        assert_eq!(Standing::of_unit(&case, GRID), Standing::Above);
        assert_eq!(Standing::of_unit(&case, "elsewhere"), Standing::Outside);
        case.level_index = 3;
        assert_eq!(Standing::of_unit(&case, MICRO), Standing::Below);
        assert_eq!(Standing::of_unit(&case, GRID), Standing::Holding);
        case.tasks.push(Task {
            unit: dept("D-JJ"),
            role: TaskRole::Lead,
            by: "op".into(),
            at: T0,
            due: None,
            overdue: false,
            ended_at: None,
        });
        case.tasks.push(Task {
            unit: dept("D-CG"),
            role: TaskRole::Assist,
            by: "op".into(),
            at: T0,
            due: None,
            overdue: false,
            ended_at: None,
        });
        assert_eq!(Standing::of_unit(&case, "D-JJ"), Standing::LeadUnit);
        assert_eq!(Standing::of_unit(&case, "D-CG"), Standing::Assisting);
        // The strongest unit counts.
        assert_eq!(Standing::of(&case, ["D-CG", COUNTY]), Standing::Above);
        assert_eq!(Standing::of(&case, ["D-CG", "D-JJ"]), Standing::LeadUnit);
        assert_eq!(Standing::of(&case, []), Standing::Outside);
        // An ended task no longer counts.
        case.tasks[0].ended_at = Some(at_min(5));
        assert_eq!(Standing::of_unit(&case, "D-JJ"), Standing::Outside);
    }

    #[test]
    fn the_permission_table() {
        use ActionKind as A;
        use Standing as S;
        use UserRole::{Admin, Member, Operator};
        let all_standings = [
            S::Outside,
            S::Assisting,
            S::LeadUnit,
            S::Below,
            S::Holding,
            S::Above,
        ];
        // An admin may do everything from anywhere.
        for a in A::iter() {
            for s in all_standings {
                assert_eq!(permitted(a, Admin, s), Ok(()), "{a:?} {s:?}");
            }
        }
        let may = |a, r, s| permitted(a, r, s).is_ok();
        // Supervise: only from above, only operators.
        assert!(may(A::Supervise, Operator, S::Above));
        for s in [S::Holding, S::Below, S::LeadUnit, S::Assisting, S::Outside] {
            assert!(!may(A::Supervise, Operator, s), "{s:?}");
        }
        assert!(!may(A::Supervise, Member, S::Above));
        // Transfer, assist, reply, archive, close: operators holding or above.
        for a in [
            A::Transfer,
            A::Assist,
            A::Reply,
            A::Archive,
            A::Close,
            A::Reopen,
            A::Extend,
        ] {
            assert!(may(a, Operator, S::Holding), "{a:?}");
            assert!(may(a, Operator, S::Above), "{a:?}");
            assert!(!may(a, Operator, S::Below), "{a:?}");
            assert!(!may(a, Operator, S::LeadUnit), "{a:?}");
            assert!(!may(a, Member, S::Holding), "{a:?}");
            assert!(!may(a, Member, S::Above), "{a:?}");
        }
        // Handling: the lead department's members and the whole path (a member above takes
        // the case up), not an assisting unit, nobody outside.
        for a in [A::Acknowledge, A::StartHandling, A::Resolve, A::Escalate] {
            for r in [Member, Operator] {
                for s in [S::LeadUnit, S::Holding, S::Below, S::Above] {
                    assert!(may(a, r, s), "{a:?} {r:?} {s:?}");
                }
                assert!(!may(a, r, S::Assisting), "{a:?} {r:?}");
                assert!(!may(a, r, S::Outside), "{a:?} {r:?}");
            }
        }
        // Return: the path's cells, not a department.
        assert!(!may(A::Return, Member, S::LeadUnit));
        assert!(may(A::Return, Member, S::Holding));
        assert!(may(A::Return, Member, S::Above));
        // Comment: anyone working on it, nobody outside.
        for s in [S::Assisting, S::LeadUnit, S::Below, S::Holding, S::Above] {
            assert!(may(A::Comment, Member, s), "{s:?}");
        }
        assert!(!may(A::Comment, Member, S::Outside));
        assert!(!may(A::Comment, Operator, S::Outside));
        // A refusal says who may.
        assert_eq!(
            permitted(A::Supervise, Operator, S::Holding),
            Err("an operator of a level above the cell holding the case")
        );
    }

    mod transitions {
        use protocol::{AlertSource, Severity};

        use super::super::super::testkit::*;
        use super::super::super::{
            Action, AuditAction, Case, CaseState, ClimbReason, Effect, NotifyReason, Policy, Span,
            Transition, TransitionError,
        };
        use super::*;

        const JJ: &str = "D-JJ";
        const XF: &str = "D-XF";

        fn jj() -> CellRef {
            CellRef::new(JJ, "县交警大队", Level::County)
        }

        fn xf() -> CellRef {
            CellRef::new(XF, "县消防救援大队", Level::County)
        }

        /// Everyone of `duty_everywhere`, and one person on duty at each department.
        fn duty() -> FakeDuty {
            FakeDuty::of(&[
                (MICRO, &["micro-li"]),
                (GRID, &["grid-wang"]),
                (VILLAGE, &["village-zhao"]),
                (TOWNSHIP, &["township-sun"]),
                (COUNTY, &["county-zhou"]),
                (JJ, &["jj-liu"]),
                (XF, &["xf-ma"]),
            ])
        }

        fn act(case: &mut Case, t: Transition) -> Result<Vec<Effect>, TransitionError> {
            case.apply(t, &Policy::default(), &duty())
        }

        fn by(action: Action, who: &str, unit: &str, m: i64) -> Transition {
            let mut t = Transition::new(action, who, at_min(m));
            t.actor = t.actor.for_cell(unit);
            t
        }

        fn notified(effects: &[Effect]) -> Vec<(Vec<String>, String, NotifyReason)> {
            effects
                .iter()
                .filter_map(|e| match e {
                    Effect::Notify {
                        persons,
                        cell,
                        reason,
                        ..
                    } => Some((persons.clone(), cell.code.clone(), *reason)),
                    _ => None,
                })
                .collect()
        }

        fn transfer(m_limit: i64) -> Action {
            Action::Transfer {
                department: jj(),
                within: Span::from_mins(m_limit),
            }
        }

        fn open() -> Case {
            open_critical(&duty()).0
        }

        #[test]
        fn a_transfer_hands_the_case_to_the_department_with_its_time_limit() {
            let mut case = open();
            let step = case.step;
            let fx = act(&mut case, by(transfer(120), "op-chen", COUNTY, 2)).unwrap();
            assert_eq!(
                notified(&fx),
                [(
                    vec!["jj-liu".to_owned()],
                    JJ.to_owned(),
                    NotifyReason::Transferred
                )]
            );
            assert_eq!(case.state, CaseState::Dispatched);
            assert_eq!(case.step, step + 1);
            // The department's limit is the case's timer; the grid's ack deadline stopped.
            assert_eq!(case.deadline, None);
            assert_eq!(case.next_deadline(), Some(at_min(122)));
            assert!(fx.contains(&Effect::DeadlineSet(Some(at_min(122)))));
            let task = case.timed_lead().unwrap();
            assert_eq!((task.unit.code.as_str(), task.by.as_str()), (JJ, "op-chen"));
            assert_eq!(Standing::of_unit(&case, JJ), Standing::LeadUnit);
            assert_eq!(case.audit.last().unwrap().action, AuditAction::Notify);
            assert!(case.audit.iter().any(|r| r.action == AuditAction::Transfer));

            // The department's member acknowledges for the department: no grid timer starts.
            act(&mut case, by(Action::Acknowledge, "jj-liu", JJ, 10)).unwrap();
            assert_eq!(case.state, CaseState::Acknowledged);
            assert_eq!(case.handler.as_deref(), Some("jj-liu"));
            assert_eq!(case.deadline, None);
            assert_eq!(case.next_deadline(), Some(at_min(122)));
            // The level holding the case did not change.
            assert_eq!(case.level_index, 4);
        }

        #[test]
        fn a_missed_time_limit_tells_the_cell_holding_the_case_once() {
            let mut case = open();
            act(&mut case, by(transfer(60), "op-chen", COUNTY, 0)).unwrap();
            assert!(
                case.tick(at_min(59), &Policy::default(), &duty())
                    .is_empty()
            );
            let fx = case.tick(at_min(61), &Policy::default(), &duty());
            assert_eq!(
                notified(&fx),
                [(
                    vec!["micro-li".to_owned()],
                    MICRO.to_owned(),
                    NotifyReason::TaskOverdue
                )]
            );
            assert!(case.tasks[0].overdue);
            let rec = case
                .audit
                .iter()
                .find(|r| r.action == AuditAction::TaskOverdue)
                .unwrap();
            assert_eq!((rec.at, rec.fired_at), (at_min(60), Some(at_min(61))));
            assert_eq!(case.next_deadline(), None);
            assert!(
                case.tick(at_min(500), &Policy::default(), &duty())
                    .is_empty()
            );
        }

        #[test]
        fn a_resolved_transfer_fires_nothing() {
            let mut case = open();
            act(&mut case, by(transfer(60), "op-chen", COUNTY, 0)).unwrap();
            act(&mut case, by(Action::Acknowledge, "jj-liu", JJ, 5)).unwrap();
            act(
                &mut case,
                by(Action::Resolve, "jj-liu", JJ, 30).with_note("cleared the junction"),
            )
            .unwrap();
            assert_eq!(case.next_deadline(), None);
            assert!(
                case.tick(at_min(61), &Policy::default(), &duty())
                    .is_empty()
            );
        }

        #[test]
        fn transfers_are_checked_before_anything_changes() {
            let mut case = open();
            let zero = Action::Transfer {
                department: jj(),
                within: Span::from_mins(0),
            };
            let err = act(&mut case, by(zero, "op", COUNTY, 1)).unwrap_err();
            assert!(matches!(err, TransitionError::NoTimeLimit { .. }), "{err}");
            act(&mut case, by(transfer(60), "op", COUNTY, 1)).unwrap();
            let before = case.clone();
            let err = act(&mut case, by(transfer(30), "op", COUNTY, 2)).unwrap_err();
            assert_eq!(
                err.to_string(),
                "cannot transfer case C-1: county 县交警大队 (D-JJ) is already on it"
            );
            assert_eq!(case, before);
            // Transferred on (转派): the first department's task ends.
            let on = Action::Transfer {
                department: xf(),
                within: Span::from_mins(30),
            };
            act(&mut case, by(on, "op", COUNTY, 3)).unwrap();
            assert_eq!(case.tasks[0].ended_at, Some(at_min(3)));
            assert_eq!(Standing::of_unit(&case, JJ), Standing::Outside);
            assert_eq!(Standing::of_unit(&case, XF), Standing::LeadUnit);
            assert_eq!(case.next_deadline(), Some(at_min(33)));
        }

        #[test]
        fn assist_notifies_the_unit_which_may_then_comment() {
            let mut case = open();
            let fx = act(
                &mut case,
                by(Action::Assist { unit: xf() }, "op", COUNTY, 1),
            )
            .unwrap();
            assert_eq!(
                notified(&fx),
                [(
                    vec!["xf-ma".to_owned()],
                    XF.to_owned(),
                    NotifyReason::Assist
                )]
            );
            assert_eq!(Standing::of_unit(&case, XF), Standing::Assisting);
            // No state or deadline change.
            assert_eq!(case.state, CaseState::Dispatched);
            assert!(!fx.iter().any(|e| matches!(e, Effect::DeadlineSet(_))));
            act(
                &mut case,
                by(Action::Comment, "xf-ma", XF, 2).with_note("hydrant 30 m east"),
            )
            .unwrap();
            let err = act(
                &mut case,
                by(Action::Assist { unit: xf() }, "op", COUNTY, 3),
            )
            .unwrap_err();
            assert!(
                matches!(err, TransitionError::AlreadyOnCase { .. }),
                "{err}"
            );
            // The cell holding the case does not assist itself.
            let own = CellRef::new(MICRO, "近城一网格第一组", Level::MicroGrid);
            let err =
                act(&mut case, by(Action::Assist { unit: own }, "op", COUNTY, 3)).unwrap_err();
            assert!(
                matches!(err, TransitionError::AlreadyOnCase { .. }),
                "{err}"
            );
        }

        #[test]
        fn supervision_reminds_the_handler_now_and_at_its_deadline() {
            let mut case = open();
            act(&mut case, by(Action::Acknowledge, "micro-li", MICRO, 1)).unwrap();
            let sup = || Action::Supervise {
                within: Span::from_mins(30),
            };
            let err = act(&mut case, by(sup(), "op-sun", TOWNSHIP, 2)).unwrap_err();
            assert!(matches!(err, TransitionError::NoteRequired { .. }), "{err}");
            let fx = act(
                &mut case,
                by(sup(), "op-sun", TOWNSHIP, 2).with_note("resolve before the market opens"),
            )
            .unwrap();
            assert_eq!(
                notified(&fx),
                [(
                    vec!["micro-li".to_owned()],
                    MICRO.to_owned(),
                    NotifyReason::Supervised
                )]
            );
            let s = case.supervision.clone().unwrap();
            assert_eq!(
                (s.by.as_str(), s.cell.as_deref()),
                ("op-sun", Some(TOWNSHIP))
            );
            assert_eq!(s.due, at_min(32));
            // The grid's resolve deadline (critical, micro-grid) is later than 32 min? Either
            // way the timer wakes at the earlier of the two.
            let grid = case.deadline.unwrap().at;
            assert_eq!(case.next_deadline(), Some(grid.min(at_min(32))));
            let fx = case.tick(at_min(33), &Policy::default(), &duty());
            let reminders: Vec<_> = notified(&fx)
                .into_iter()
                .filter(|n| n.2 == NotifyReason::SupervisionOverdue)
                .collect();
            assert_eq!(
                reminders,
                [(
                    vec!["micro-li".to_owned()],
                    MICRO.to_owned(),
                    NotifyReason::SupervisionOverdue
                )]
            );
            assert!(case.supervision.as_ref().unwrap().overdue);
            assert!(
                case.audit
                    .iter()
                    .any(|r| r.action == AuditAction::SupervisionOverdue)
            );
            // Once.
            let again = case.tick(at_min(34), &Policy::default(), &duty());
            assert!(
                !notified(&again)
                    .iter()
                    .any(|n| n.2 == NotifyReason::SupervisionOverdue)
            );
        }

        #[test]
        fn supervision_of_an_unacknowledged_case_reminds_the_people_on_duty() {
            let mut case = open();
            let fx = act(
                &mut case,
                by(
                    Action::Supervise {
                        within: Span::from_mins(10),
                    },
                    "op-zhou",
                    COUNTY,
                    1,
                )
                .with_note("督办"),
            )
            .unwrap();
            assert_eq!(
                notified(&fx),
                [(
                    vec!["micro-li".to_owned()],
                    MICRO.to_owned(),
                    NotifyReason::Supervised
                )]
            );
        }

        #[test]
        fn escalation_by_hand_notifies_the_next_level_at_once() {
            let mut case = open();
            act(&mut case, by(Action::Acknowledge, "micro-li", MICRO, 1)).unwrap();
            let up = |to| Action::Escalate { to };
            let err = act(&mut case, by(up(None), "micro-li", MICRO, 2)).unwrap_err();
            assert!(matches!(err, TransitionError::NoteRequired { .. }), "{err}");
            let fx = act(
                &mut case,
                by(up(None), "micro-li", MICRO, 2).with_note("needs the police"),
            )
            .unwrap();
            assert_eq!(
                notified(&fx),
                [(
                    vec!["grid-wang".to_owned()],
                    GRID.to_owned(),
                    NotifyReason::EscalatedByHand
                )]
            );
            assert!(fx.iter().any(|e| matches!(
                e,
                Effect::Escalated {
                    reason: ClimbReason::ByHand,
                    ..
                }
            )));
            assert_eq!(case.state, CaseState::Dispatched);
            assert_eq!(case.handler, None);
            assert_eq!(case.level(), Some(Level::Grid));
            // The new level's ack deadline.
            let ack = Policy::default()
                .span(
                    Severity::Critical,
                    super::super::super::DeadlineKind::Ack,
                    Level::Grid,
                )
                .unwrap();
            assert_eq!(
                case.deadline.map(|d| d.at),
                Some(protocol::UtcMillis(at_min(2).0 + ack.as_ms()))
            );
            // To a named level.
            let fx = act(
                &mut case,
                by(up(Some(Level::County)), "op", TOWNSHIP, 3).with_note("major"),
            )
            .unwrap();
            assert_eq!(
                notified(&fx),
                [(
                    vec!["county-zhou".to_owned()],
                    COUNTY.to_owned(),
                    NotifyReason::EscalatedByHand
                )]
            );
            let err = act(&mut case, by(up(None), "op", COUNTY, 4).with_note("x")).unwrap_err();
            assert_eq!(
                err.to_string(),
                "cannot escalate case C-1: it is already at the top, county 武定县 (530329)"
            );
            let mut low = open();
            low.level_index = 2;
            let err = act(
                &mut low,
                by(up(Some(Level::Grid)), "op", VILLAGE, 4).with_note("x"),
            )
            .unwrap_err();
            assert_eq!(
                err.to_string(),
                "cannot escalate case C-1: no grid cell above village 近城社区 (530329101001) on its path"
            );
        }

        fn report_case() -> Case {
            let mut a = alert(Severity::Major);
            a.source = AlertSource::Person("p-zhou".into());
            let (mut case, _) =
                Case::open("C-1".into(), &a, path(), T0, &Policy::default(), &duty());
            act(&mut case, by(Action::Acknowledge, "micro-li", MICRO, 1)).unwrap();
            act(
                &mut case,
                by(Action::Resolve, "micro-li", MICRO, 9).with_note("bins emptied"),
            )
            .unwrap();
            case
        }

        #[test]
        fn a_report_is_replied_to_before_it_is_archived() {
            let mut case = report_case();
            let reply = |s| Action::Reply { satisfaction: s };
            act(&mut case, by(Action::Close, "op", GRID, 10)).unwrap();
            let err = act(&mut case, by(Action::Archive, "op", GRID, 11)).unwrap_err();
            assert!(matches!(err, TransitionError::ReplyFirst { .. }), "{err}");
            let err = act(
                &mut case,
                by(reply(Satisfaction::Satisfied), "op", GRID, 11),
            )
            .unwrap_err();
            assert!(matches!(err, TransitionError::NoteRequired { .. }), "{err}");
            act(
                &mut case,
                by(reply(Satisfaction::BasicallySatisfied), "op", GRID, 12)
                    .with_note("已清理，感谢反映"),
            )
            .unwrap();
            let r = case.reply.clone().unwrap();
            assert_eq!(
                (r.text.as_str(), r.satisfaction),
                ("已清理，感谢反映", Satisfaction::BasicallySatisfied)
            );
            act(&mut case, by(Action::Archive, "op", GRID, 13)).unwrap();
            assert_eq!(case.archived.as_ref().map(|a| a.at), Some(at_min(13)));
            let before = case.clone();
            let err = act(
                &mut case,
                by(Action::Comment, "op", GRID, 14).with_note("x"),
            )
            .unwrap_err();
            assert_eq!(
                err.to_string(),
                "cannot comment on case C-1 in state closed: it is archived"
            );
            assert_eq!(case, before);
        }

        #[test]
        fn only_reports_get_replies_and_only_closed_cases_are_archived() {
            let mut case = open();
            act(&mut case, by(Action::Acknowledge, "micro-li", MICRO, 1)).unwrap();
            let err = act(&mut case, by(Action::Archive, "op", GRID, 2)).unwrap_err();
            assert!(matches!(err, TransitionError::NotAllowed { .. }), "{err}");
            act(
                &mut case,
                by(Action::Resolve, "micro-li", MICRO, 3).with_note("gone"),
            )
            .unwrap();
            let err = act(
                &mut case,
                by(
                    Action::Reply {
                        satisfaction: Satisfaction::Satisfied,
                    },
                    "op",
                    GRID,
                    4,
                )
                .with_note("x"),
            )
            .unwrap_err();
            assert_eq!(
                err.to_string(),
                "cannot reply on case C-1: it was raised by a camera, not reported by a person"
            );
            act(&mut case, by(Action::Close, "op", GRID, 5)).unwrap();
            // A camera's case needs no reply to be archived.
            act(&mut case, by(Action::Archive, "op", GRID, 6)).unwrap();
        }

        #[test]
        fn routing_makes_a_department_a_lead_unit_of_a_dispatched_case() {
            let mut case = open();
            let fx = case.route(&[xf()], "rule fire", T0, &duty());
            assert_eq!(
                notified(&fx),
                [(
                    vec!["xf-ma".to_owned()],
                    XF.to_owned(),
                    NotifyReason::Routed
                )]
            );
            assert_eq!(Standing::of_unit(&case, XF), Standing::LeadUnit);
            // The grid's deadline keeps running (no time limit on a routed task).
            assert!(case.deadline.is_some());
            // The department's member may acknowledge.
            act(&mut case, by(Action::Acknowledge, "xf-ma", XF, 1)).unwrap();
            assert_eq!(case.handler.as_deref(), Some("xf-ma"));
            // Routed twice: once.
            let mut again = open();
            again.route(&[xf()], "a", T0, &duty());
            assert!(again.route(&[xf()], "b", T0, &duty()).is_empty());
            assert_eq!(again.tasks.len(), 1);
            // A record-only case is not routed.
            let (mut info, _) = Case::open(
                "C-2".into(),
                &alert(Severity::Info),
                path(),
                T0,
                &Policy::default(),
                &duty(),
            );
            assert!(info.route(&[xf()], "a", T0, &duty()).is_empty());
            assert!(info.tasks.is_empty());
        }

        #[test]
        fn a_department_with_nobody_on_duty_is_recorded_not_skipped() {
            let mut case = open();
            let nobody = CellRef::new("D-SJ", "市场监管所", Level::Township);
            let fx = act(
                &mut case,
                by(
                    Action::Transfer {
                        department: nobody,
                        within: Span::from_mins(60),
                    },
                    "op",
                    COUNTY,
                    1,
                ),
            )
            .unwrap();
            assert!(fx.iter().any(|e| matches!(
                e,
                Effect::NobodyToNotify { cell, .. } if cell.code == "D-SJ"
            )));
            assert_eq!(case.audit.last().unwrap().action, AuditAction::NobodyOnDuty);
        }
    }
}
