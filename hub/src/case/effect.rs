//! [`Effect`]: what the caller must do after the case changed.
//!
//! The case itself is always changed in place and must be stored (it carries its audit trail);
//! effects are the *other* consequences. Order: climbs and notifications in the order they
//! happened, then at most one [`Effect::StateChanged`], then at most one
//! [`Effect::DeadlineSet`] holding the case's next deadline.

use protocol::UtcMillis;
use serde::{Deserialize, Serialize};

use super::model::{CaseState, CellRef, DeadlineKind};

/// Why people are notified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyReason {
    /// A new case for their cell.
    NewCase,
    /// Nobody below acknowledged in time; the case climbed to them.
    AckOverdue,
    /// The case was acknowledged below but not resolved in time; it climbed to them.
    ResolveOverdue,
    /// The case was returned from another cell as theirs.
    Returned,
    /// A resolution was rejected on verification; back to the handler.
    Reopened,
    /// A routing rule sent the new case to their department as well as to its cell.
    Routed,
    /// The case was transferred to their department (交办), with a time limit.
    Transferred,
    /// Their unit was asked to assist (协办).
    Assist,
    /// A level above supervises the case (督办): they are its handlers.
    Supervised,
    /// The supervision's deadline passed with the case unresolved.
    SupervisionOverdue,
    /// The department the case was transferred to missed its time limit: the cell holding
    /// the case is told.
    TaskOverdue,
    /// The case was taken up to their level by hand (提级).
    EscalatedByHand,
}

/// Why a case moved up its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClimbReason {
    /// Not acknowledged by the ack deadline.
    AckOverdue,
    /// Not resolved by the resolve deadline.
    ResolveOverdue,
    /// Nobody on duty at the cell: the case went straight on up.
    NobodyOnDuty,
    /// Someone acting for a higher cell acknowledged it, taking it up (提级).
    TakenUp,
    /// Someone escalated it by hand, with a reason ([`super::Action::Escalate`]).
    ByHand,
}

/// Why a case was recorded without being dispatched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordReason {
    /// The policy says this severity is record only.
    RecordOnly,
    /// The alert fell in no grid cell (the path was empty). Operators should route it by
    /// hand ([`super::Action::Return`] with a path) or fix the grid.
    NoCell,
}

/// One thing for the caller (the dispatcher) to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// Send a notification about the case to each person (their MQTT topic, and the webhooks
    /// configured for the cell), then report outcomes with
    /// [`Case::record_delivery`](super::Case::record_delivery) under this `step`. The case
    /// already lists them in `notified`; the list never repeats a person already notified for
    /// this step.
    Notify {
        /// Person ids, without duplicates.
        persons: Vec<String>,
        /// The cell they are on duty for (which now holds the case).
        cell: CellRef,
        /// The notification step.
        step: u32,
        /// Why.
        reason: NotifyReason,
    },
    /// The case moved up its path; show it at `to` from now on (it stays visible at the cells
    /// below). One per level climbed.
    Escalated {
        /// The cell that held it.
        from: CellRef,
        /// The cell that holds it now.
        to: CellRef,
        /// Why.
        reason: ClimbReason,
    },
    /// The case reached a cell where nobody is on duty and there is nowhere higher to go:
    /// nobody was notified. An operator must act (and the roster needs fixing).
    NobodyToNotify {
        /// The top cell.
        cell: CellRef,
        /// The step that went unsent.
        step: u32,
    },
    /// A deadline passed at the top level: raise it on the county dashboard. Happens once per
    /// deadline; the timer stops until someone acts.
    OverdueAtTop {
        /// The top cell.
        cell: CellRef,
        /// Which deadline.
        kind: DeadlineKind,
        /// When it was due.
        due: UtcMillis,
    },
    /// The case was opened but not dispatched.
    Recorded {
        /// Why not.
        reason: RecordReason,
    },
    /// The lifecycle state changed (for the live feed). `to: closed` means: drop the case from
    /// the key → open-case index.
    StateChanged {
        /// Before.
        from: CaseState,
        /// After.
        to: CaseState,
    },
    /// The case's next deadline changed: put it in the deadline index at this time (`None`:
    /// remove it). Always the last effect when present.
    DeadlineSet(Option<UtcMillis>),
}
