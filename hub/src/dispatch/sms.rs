//! SMS: the people who want every case by text message, and the fallback that texts the
//! people told by app only when a critical case stays unacknowledged.
//!
//! Fallback: a critical case dispatched at `t` is due at `t + fallback_after_s`; the sweep
//! (every 5 s) sends what is due. Sent only while the case is still `dispatched`, only to
//! people with an app delivery and no SMS delivery on the case, so it happens once per person
//! and case, also across restarts (the due list is rebuilt from the stored cases at start).

use protocol::Severity;

use super::*;
use crate::roster::Channel;
use crate::roster::Roster;
use crate::sms::{CHANNEL, Resumed, SmsChannel, SmsJob};

/// The SMS task's handle and the fallbacks owed.
#[derive(Debug)]
pub(super) struct SmsState {
    channel: SmsChannel,
    fallback_after_ms: i64,
    /// Critical cases → when their fallback is due (ms since the epoch).
    due: BTreeMap<CaseId, i64>,
}

impl SmsState {
    pub(super) fn start(
        setup: SmsSetup,
        waiting: Vec<(CaseId, UtcMillis)>,
        resumed: Vec<Resumed>,
        metrics: &Arc<HubMetrics>,
        results: &mpsc::Sender<DeliveryReport>,
    ) -> Self {
        let channel = SmsChannel::start(
            setup.client,
            setup.queue,
            setup.poll,
            metrics.clone(),
            results.clone(),
            resumed,
        );
        let due = waiting
            .into_iter()
            .map(|(id, opened)| (id, opened.0.saturating_add(setup.fallback_after_ms)))
            .collect();
        Self {
            channel,
            fallback_after_ms: setup.fallback_after_ms,
            due,
        }
    }
}

/// Critical cases nobody has acknowledged yet, with when they were opened.
pub(super) fn waiting_critical(cases: &[Case]) -> Vec<(CaseId, UtcMillis)> {
    cases
        .iter()
        .filter(|c| c.severity == Severity::Critical && c.state == CaseState::Dispatched)
        .map(|c| (c.id.clone(), c.opened_at))
        .collect()
}

/// Messages sent before a restart whose receipts have not come: the cases' `sms` deliveries
/// still pending with the provider's message id, to the person's number on the roster (a
/// person gone from it is left pending: Aliyun's query needs the number).
pub(super) fn awaiting_receipts(cases: &[Case], roster: &Roster) -> Vec<Resumed> {
    cases
        .iter()
        .flat_map(|c| c.deliveries.iter().map(move |d| (c, d)))
        .filter(|(_, d)| d.channel == CHANNEL && d.outcome == DeliveryOutcome::Pending)
        .filter_map(|(c, d)| {
            let DeliveryTarget::Person(person) = &d.target else {
                return None;
            };
            Some(Resumed {
                case: c.id.clone(),
                person: person.clone(),
                step: d.step,
                id: d.reference.clone()?,
                phone: roster.person(person)?.phone().to_owned(),
                at_ms: d.at.0,
            })
        })
        .collect()
}

impl Dispatcher {
    /// After a notification round: SMS to the notified people who want it, and the fallback
    /// timer of a critical case started (once). Returns whether the case changed.
    pub(super) fn sms_round(
        &mut self,
        case: &mut Case,
        persons: &[String],
        step: u32,
        now: UtcMillis,
    ) -> bool {
        let Some(sms) = &mut self.sms else {
            return false;
        };
        if case.severity == Severity::Critical && case.state == CaseState::Dispatched {
            sms.due
                .entry(case.id.clone())
                .or_insert(now.0.saturating_add(sms.fallback_after_ms));
        }
        let mut changed = false;
        for person in persons {
            let wants = self
                .p
                .roster
                .current()
                .person(person)
                .is_some_and(|p| p.wants(Channel::Sms));
            if wants {
                changed |= self.text(case, person, step, now);
            }
        }
        changed
    }

    /// Queues one SMS and records it on the case: pending, or failed when the queue is full.
    fn text(&self, case: &mut Case, person: &str, step: u32, now: UtcMillis) -> bool {
        let roster = self.p.roster.current();
        let (Some(sms), Some(p)) = (&self.sms, roster.person(person)) else {
            return false;
        };
        let job = SmsJob {
            case: case.id.clone(),
            person: person.to_owned(),
            step,
            phone: p.phone().to_owned(),
            what: format!("{} {}", case.rule, case.site),
        };
        let outcome = if sms.channel.enqueue(job) {
            DeliveryOutcome::Pending
        } else {
            DeliveryOutcome::Failed {
                error: "sms queue full; dropped".into(),
            }
        };
        case.record_delivery(
            DeliveryTarget::Person(person.to_owned()),
            CHANNEL,
            step,
            outcome,
            now,
        )
    }

    /// Sends the fallbacks that are due (see the module docs).
    pub(super) fn sms_fallback_due(&mut self) -> Result<(), DispatchError> {
        let now = self.now();
        let Some(sms) = &mut self.sms else {
            return Ok(());
        };
        let due: Vec<CaseId> = sms
            .due
            .iter()
            .filter(|(_, at)| **at <= now.0)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &due {
            sms.due.remove(id);
        }
        for id in due {
            let Some(mut case) = self.load(&id)? else {
                continue;
            };
            if case.state != CaseState::Dispatched {
                continue;
            }
            let texted: std::collections::HashSet<&DeliveryTarget> = case
                .deliveries
                .iter()
                .filter(|d| d.channel == CHANNEL)
                .map(|d| &d.target)
                .collect();
            // Each app-only person once, at the latest round they were told in.
            let mut app_only: BTreeMap<String, u32> = BTreeMap::new();
            for d in &case.deliveries {
                if let DeliveryTarget::Person(p) = &d.target
                    && d.channel == "mqtt"
                    && !texted.contains(&d.target)
                {
                    let step = app_only.entry(p.clone()).or_insert(d.step);
                    *step = (*step).max(d.step);
                }
            }
            if app_only.is_empty() {
                continue;
            }
            let mut changed = false;
            for (person, step) in &app_only {
                changed |= self.text(&mut case, person, *step, now);
            }
            tracing::warn!(
                case = %case.id,
                persons = %app_only.keys().cloned().collect::<Vec<_>>().join(","),
                "critical case unacknowledged; SMS fallback sent"
            );
            if changed {
                let dl = case.next_deadline();
                self.save(&case, dl)?;
            }
        }
        Ok(())
    }
}
