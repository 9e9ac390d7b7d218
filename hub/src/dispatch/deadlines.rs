//! Deadlines: the in-memory timer set and its index on disk, firing what is due, and the
//! auditor that checks none was missed.

use super::*;

impl Dispatcher {
    pub(super) fn move_deadline(
        &mut self,
        b: &mut CaseWrites,
        case: &CaseId,
        old: Option<UtcMillis>,
        new: Option<UtcMillis>,
    ) {
        if old == new {
            return;
        }
        if let Some(o) = old {
            b.remove_deadline(o, case);
            self.deadlines.remove(&(o.0, case.clone()));
        }
        if let Some(n) = new {
            b.put_deadline(n, case);
            self.deadlines.insert((n.0, case.clone()));
        }
    }

    /// Fires every deadline due by now, oldest first.
    pub(super) async fn fire_due(&mut self) -> Result<(), DispatchError> {
        let now = self.now();
        while let Some((at, id)) = self.deadlines.first().cloned() {
            if at > now.0 {
                break;
            }
            let Some(mut case) = self.load(&id)? else {
                let mut b = CaseWrites::default();
                self.move_deadline(&mut b, &id, Some(UtcMillis(at)), None);
                self.p.store.cases().apply(b, "drop deadline")?;
                continue;
            };
            let old = Some(UtcMillis(at));
            let roster = self.p.roster.current();
            let duty = RosterDuty(&roster);
            let effects = case.tick(now, &self.p.policy, &duty);
            if case.next_deadline() == old {
                // The core did not move it (should not happen): drop it rather than spin.
                tracing::error!(case = %id, at, "deadline did not advance on tick; dropped");
                let mut b = CaseWrites::default();
                self.move_deadline(&mut b, &id, old, None);
                self.p.store.cases().apply(b, "drop deadline")?;
                continue;
            }
            self.save(&case, old)?;
            self.p.store.flush().await?;
            self.carry_out(case, effects, now).await?;
        }
        Ok(())
    }

    /// The auditor. `full` (at start): every case's deadline must be in the index — a case
    /// whose deadline is missing would never climb. Periodically (cheap): the in-memory timer
    /// set must match the index on disk, and nothing in it may be overdue. Every miss is logged
    /// as an error, counted in `hub_deadlines_missed_total`, repaired and fired.
    pub(super) async fn audit(&mut self, full: bool) -> Result<(), DispatchError> {
        let now = self.now();
        let mut missed = 0u64;
        if full {
            let store = self.p.store.clone();
            for c in store.cases().all() {
                let Ok(StoredCase { case, .. }) = c else {
                    continue;
                };
                if let Some(d) = case.next_deadline()
                    && !self.deadlines.contains(&(d.0, case.id.clone()))
                {
                    missed += 1;
                    tracing::error!(case = %case.id, deadline = %d, "auditor: deadline missing from the index; restored");
                    let mut b = CaseWrites::default();
                    self.move_deadline(&mut b, &case.id, None, Some(d));
                    self.p.store.cases().apply(b, "restore deadline")?;
                }
            }
        } else {
            let mut on_disk = 0usize;
            for entry in self.p.store.cases().deadlines()? {
                on_disk += 1;
                if !self.deadlines.contains(&entry) {
                    missed += 1;
                    tracing::error!(case = %entry.1, at = entry.0, "auditor: deadline on disk but not in the timer; restored");
                    self.deadlines.insert(entry);
                }
            }
            if on_disk < self.deadlines.len() {
                tracing::error!(
                    on_disk,
                    in_memory = self.deadlines.len(),
                    "auditor: timer holds deadlines the disk does not"
                );
            }
        }
        let overdue = self
            .deadlines
            .iter()
            .filter(|(at, _)| *at + 5_000 < now.0)
            .count() as u64;
        if overdue > 0 {
            tracing::error!(
                overdue,
                "auditor: deadlines overdue by more than 5 s; firing"
            );
        }
        self.p
            .metrics
            .deadlines_missed
            .fetch_add(missed + overdue, std::sync::atomic::Ordering::Relaxed);
        self.fire_due().await
    }
}
