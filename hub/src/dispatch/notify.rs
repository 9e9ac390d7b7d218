//! Notifications: pushing what the case core's effects ask for, and recording each push on
//! its case.

use super::*;

impl Dispatcher {
    /// Pushes the notifications the effects ask for and records them on the case.
    pub(super) async fn carry_out(
        &mut self,
        case: Case,
        effects: Vec<Effect>,
        now: UtcMillis,
    ) -> Result<(), DispatchError> {
        if let Some(case) = self.notify(case, effects, now).await? {
            let dl = case.next_deadline();
            self.save(&case, dl)?;
        }
        Ok(())
    }

    /// Pushes the notifications the effects ask for and records them on the case; returns the
    /// case when that changed it (the caller saves it).
    pub(super) async fn notify(
        &mut self,
        mut case: Case,
        effects: Vec<Effect>,
        now: UtcMillis,
    ) -> Result<Option<Case>, DispatchError> {
        let mut changed = false;
        for e in &effects {
            match e {
                Effect::Notify {
                    persons,
                    cell,
                    step,
                    reason,
                } => {
                    let n = self.p.pusher.notification(&case, cell, *step, *reason, now);
                    for person in persons {
                        let outcome = self.p.pusher.person(person, &n).await;
                        case.record_delivery(
                            DeliveryTarget::Person(person.clone()),
                            "mqtt",
                            *step,
                            outcome,
                            now,
                        );
                        changed = true;
                    }
                    changed |= self.sms_round(&mut case, persons, *step, now);
                    changed |= self.work_app_round(&mut case, persons, &n, now);
                    let roster = self.p.roster.current();
                    let phones = persons
                        .iter()
                        .filter_map(|p| roster.person(p).map(|p| p.phone().to_owned()))
                        .collect();
                    let (_, dropped) = self.p.pusher.webhooks(&n, phones, &self.deliveries_tx);
                    for id in dropped {
                        case.record_delivery(
                            DeliveryTarget::Webhook(id),
                            "webhook",
                            *step,
                            DeliveryOutcome::Failed {
                                error: "push queue full; dropped".into(),
                            },
                            now,
                        );
                        changed = true;
                    }
                    tracing::info!(
                        case = %case.id, cell = %cell.code, level = %cell.level.as_str(), step, ?reason,
                        persons = %persons.join(","), path = %n.path, "dispatched"
                    );
                }
                Effect::Escalated { from, to, reason } => {
                    bump(&self.p.metrics.escalations);
                    tracing::warn!(case = %case.id, from = %from.code, to = %to.code, ?reason, "case climbed");
                }
                Effect::NobodyToNotify { cell, step } => {
                    tracing::error!(case = %case.id, cell = %cell.code, step, "nobody on duty even at the top; the case waits in the top queue");
                }
                Effect::OverdueAtTop { cell, kind, due } => {
                    tracing::error!(case = %case.id, cell = %cell.code, ?kind, %due, "case overdue at the top level");
                }
                _ => {}
            }
        }
        Ok(changed.then_some(case))
    }
}
