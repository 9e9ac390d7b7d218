//! The hub's own health cases: a disk episode opens one, space coming back resolves it
//! ([`crate::health`]).

use super::*;

impl Dispatcher {
    /// The disk guard's episode changed: a case to open (low) or to resolve (space back).
    pub(super) async fn disk_changed(&mut self, low: bool) {
        self.health_due = Some(if low {
            let d = &self.p.disk;
            HealthDue::Open(Arc::new(crate::health::disk_low_alert(
                self.p.clock.now(),
                d.free_bytes(),
                d.min_free_bytes(),
                d.dir(),
            )))
        } else {
            HealthDue::Resolve
        });
        self.health().await;
    }

    /// Writes the hub-health case owed, if any. A failure (a disk that is full after all) does
    /// not stop the dispatcher: it is logged, counted, and retried on the next sweep.
    pub(super) async fn health(&mut self) {
        let result = match &self.health_due {
            None => return,
            Some(HealthDue::Open(alert)) => self.open_disk_case(alert.clone()).await,
            Some(HealthDue::Resolve) => self.resolve_disk_case().await,
        };
        match result {
            Ok(()) => self.health_due = None,
            Err(e) => {
                // Staged cases of the failed write were never stored: not for the book.
                self.touched.clear();
                bump(&self.p.metrics.health_case_failures);
                tracing::error!(error = %e, due = ?self.health_due, "cannot write the hub-health case; retried in 5 s");
            }
        }
    }

    /// The latest disk case, unless it is resolved or closed.
    pub(super) fn active_disk_case(&self) -> Result<Option<Case>, DispatchError> {
        self.active_health_case(crate::health::DISK_PART)
    }

    /// The latest health case of `part`, unless it is resolved or closed.
    pub(super) fn active_health_case(&self, part: &str) -> Result<Option<Case>, DispatchError> {
        let Some(id) = self.p.store.cases().health_case(part)? else {
            return Ok(None);
        };
        Ok(self
            .load(&id)?
            .filter(|c| !matches!(c.state, CaseState::Resolved | CaseState::Closed)))
    }

    pub(super) async fn open_disk_case(&mut self, alert: Arc<Alert>) -> Result<(), DispatchError> {
        if let Some(case) = self.active_disk_case()? {
            // A restart during the episode: its case is still being handled.
            tracing::warn!(case = %case.id, "the disk is still low; its hub-health case is open");
            return Ok(());
        }
        if let Some(case) = self
            .open_health_case(crate::health::DISK_PART, alert)
            .await?
        {
            tracing::error!(case = %case, "hub-health case opened: the disk is nearly full");
        }
        Ok(())
    }

    /// Stores `alert` like every alert (the case's detail shows it), files it, and remembers
    /// its case as `part`'s health case. Returns the case.
    pub(super) async fn open_health_case(
        &mut self,
        part: &str,
        alert: Arc<Alert>,
    ) -> Result<Option<CaseId>, DispatchError> {
        let store = self.p.store.clone();
        let stored = alert.clone();
        let now = self.now();
        tokio::task::spawn_blocking(move || store.alerts().insert(&[stored], now))
            .await
            .map_err(|e| DispatchError::Invalid(format!("storing the health alert: {e}")))??;
        self.file_batch(vec![alert.clone()]).await?;
        let case = self.p.store.cases().case_of_alert(&alert.id)?;
        if let Some(case) = &case {
            self.p.store.cases().set_health_case(part, case)?;
            self.p.store.flush().await?;
        }
        Ok(case)
    }

    /// Acknowledges (if nobody has) and resolves `case` as the hub, with `note`.
    pub(super) async fn resolve_by_hub(
        &mut self,
        case: &Case,
        note: String,
    ) -> Result<(), DispatchError> {
        let now = self.now();
        let hub = |action| Transition {
            action,
            actor: crate::case::Actor::hub(),
            note: None,
            photo: None,
            at: now,
            authority: None,
        };
        if matches!(case.state, CaseState::New | CaseState::Dispatched) {
            self.transition(&case.id, hub(Action::Acknowledge)).await?;
        }
        let mut resolve = hub(Action::Resolve);
        resolve.note = Some(note);
        self.transition(&case.id, resolve).await?;
        Ok(())
    }

    pub(super) async fn resolve_disk_case(&mut self) -> Result<(), DispatchError> {
        let Some(case) = self.active_disk_case()? else {
            return Ok(());
        };
        let note =
            crate::health::disk_back_note(self.p.disk.free_bytes(), self.p.disk.min_free_bytes());
        self.resolve_by_hub(&case, note).await?;
        tracing::warn!(case = %case.id, "hub-health case resolved by the hub: disk space is back");
        Ok(())
    }

    /// After a live status of `site`: a clock further off than the tolerance opens the site's
    /// clock case (one at a time); a clock back within it resolves that case. A failed write
    /// is logged and counted; the next status tries again.
    pub(super) async fn check_clock(&mut self, site: &str) {
        let Some(offset) = self.registry.get(site).and_then(|s| s.clock_offset_ms) else {
            return;
        };
        self.p.metrics.set_clock_offset(site, offset);
        let part = crate::health::clock_case_part(site);
        let tolerance = self.p.clock_tolerance_ms;
        let result = async {
            let active = self.active_health_case(&part)?;
            match active {
                None if offset.abs() > tolerance => {
                    let alert = Arc::new(crate::health::clock_off_alert(
                        self.now(),
                        site,
                        offset,
                        tolerance,
                    ));
                    if let Some(case) = self.open_health_case(&part, alert).await? {
                        tracing::warn!(site, offset_ms = offset, case = %case, "site clock off; site-health case opened");
                    }
                }
                Some(case) if offset.abs() <= tolerance => {
                    let note = crate::health::clock_back_note(offset);
                    self.resolve_by_hub(&case, note).await?;
                    tracing::info!(site, offset_ms = offset, case = %case.id, "site clock back; site-health case resolved");
                }
                _ => {}
            }
            Ok::<_, DispatchError>(())
        }
        .await;
        if let Err(e) = result {
            self.touched.clear();
            bump(&self.p.metrics.health_case_failures);
            tracing::error!(site, error = %e, "cannot write the site's clock case; tried again at its next status");
        }
    }
}
