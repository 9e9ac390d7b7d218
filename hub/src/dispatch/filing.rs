//! Filing: alerts into cases (located, muted, grouped or opened), in one atomic write per
//! batch, and the alerts a previous run left pending.

use super::*;

impl Dispatcher {
    pub(super) async fn recover(&mut self) -> Result<(), DispatchError> {
        let ids = self.p.store.pending_ids()?;
        if ids.is_empty() {
            return Ok(());
        }
        tracing::info!(
            alerts = ids.len(),
            "filing alerts stored but not filed before the last stop"
        );
        for chunk in ids.chunks(MAX_FILE_BATCH) {
            let mut batch = Vec::with_capacity(chunk.len());
            for id in chunk {
                match self.p.store.alerts().get(id) {
                    Ok(Some(s)) => batch.push(Arc::new(s.alert)),
                    Ok(None) => self.p.store.cases().drop_pending(id)?,
                    Err(e) => {
                        tracing::error!(alert = %id, error = %e, "stored alert unreadable; left pending");
                    }
                }
            }
            self.file_batch(batch).await?;
        }
        Ok(())
    }

    /// Files a batch: one atomic write for the batch's alerts, one flush, then the pushes, and
    /// one write recording them.
    ///
    /// One sled batch for all the alerts rather than one per alert: every batch sled applies
    /// takes its global write lock and seals and writes out its log buffer twice (each write
    /// synced to disk), whatever the batch holds. Per alert that was four synced log writes
    /// (filing and recording the pushes), most of the hub's disk traffic and of its CPU. Each
    /// alert's changes stay atomic (now together with the rest of the batch), and durable
    /// before anyone is notified; a crash before the batch is applied leaves every alert of it
    /// pending, to be filed at the next start.
    pub(super) async fn file_batch(&mut self, batch: Vec<Arc<Alert>>) -> Result<(), DispatchError> {
        let now = self.now();
        let mut pushes: Vec<(Case, Vec<Effect>)> = Vec::new();
        let mut opened: HashMap<CaseId, usize> = HashMap::new();
        let mut filed = CaseWrites::default();
        let t = std::time::Instant::now();
        for alert in batch {
            let Some((case, effects)) = self.file(&alert, now, &mut filed)? else {
                continue;
            };
            match opened.get(&case.id) {
                // A later alert of the batch joined a case an earlier one opened: notify about,
                // and record the pushes on, the case as it is now, not as it was opened (saving
                // that copy would drop the alerts that joined).
                Some(&i) => pushes[i].0 = case,
                None if !effects.is_empty() => {
                    opened.insert(case.id.clone(), pushes.len());
                    pushes.push((case, effects));
                }
                None => {}
            }
        }
        let m = self.p.metrics.clone();
        m.stage_time(Stage::DispatchFile, t);
        let t = std::time::Instant::now();
        self.apply(filed, "file alerts")?;
        m.stage_time(Stage::DispatchWrite, t);
        let t = std::time::Instant::now();
        self.p.store.flush().await?;
        m.stage_time(Stage::DispatchFlush, t);
        let t = std::time::Instant::now();
        let mut records = CaseWrites::default();
        for (case, effects) in pushes {
            if let Some(case) = self.notify(case, effects, now).await? {
                let dl = case.next_deadline();
                self.stage_save(&mut records, &case, dl)?;
            }
        }
        self.apply(records, "save cases")?;
        m.stage_time(Stage::DispatchPush, t);
        Ok(())
    }

    /// Where an alert belongs: its position's deepest cell; without a position (or with one
    /// the site is not trusted with, which the caller has taken out) its site's registered
    /// cell; outside every cell, the top cell.
    pub(super) fn path_for(&self, alert: &Alert) -> Vec<CellRef> {
        let h = self.p.grid.hierarchy();
        let cell = match alert.location {
            Some(l) => self.p.grid.locate(l.lon, l.lat),
            None => self
                .p
                .sites
                .get(&alert.site)
                .and_then(|s| self.p.grid.find(&s.cell)),
        };
        match cell.or_else(|| h.roots().next().map(|c| c.id())) {
            Some(c) => CellRef::path_to(h, c),
            None => Vec::new(),
        }
    }

    /// A unit by code, as cases name it ([`unit_ref`]).
    pub(super) fn unit(&self, code: &str) -> Option<CellRef> {
        unit_ref(&self.p.grid, &self.p.roster.current(), code)
    }

    /// Files one alert into `staged`; returns its case as filed and what to do about it (no
    /// effects when the alert joined an open case), or `None` for an alert filed before or
    /// muted.
    pub(super) fn file(
        &mut self,
        alert: &Alert,
        now: UtcMillis,
        staged: &mut CaseWrites,
    ) -> Result<Option<(Case, Vec<Effect>)>, DispatchError> {
        let cases = self.p.store.cases().clone();
        if staged.filed(&cases, &alert.id)?.is_some() {
            staged.clear_pending(&alert.id);
            return Ok(None);
        }
        // A position the site is not trusted with is taken out before anything else sees it
        // (grouping, location, the case's map pin): the alert is filed as if it had none, in
        // its site's cell, and the claim is kept on the case.
        let untrusted = match self.p.trust.position(alert) {
            Position::Untrusted(u) => {
                tracing::warn!(alert = %alert.id, site = %alert.site, lon = u.claimed.lon, lat = u.claimed.lat, reason = %u.reason, "alert position not trusted; filed by its site's cell");
                Some(u)
            }
            Position::Absent | Position::Trusted(_) => None,
        };
        let relocated;
        let alert = match &untrusted {
            Some(_) => {
                relocated = Alert {
                    location: None,
                    ..alert.clone()
                };
                &relocated
            }
            None => alert,
        };
        // A patrol report comes from a person through the API, a health alert from the hub:
        // neither from a site.
        let from_site = !matches!(
            alert.source,
            protocol::AlertSource::Person(_) | protocol::AlertSource::Hub(_)
        );
        // A time the site's clock cannot vouch for is not believed either: the alert is filed
        // at its receipt (grouping, the case's times, its deadlines), the box's time kept on
        // the case.
        let mut time_untrusted = None;
        if from_site {
            self.registry.on_activity(&alert.site, now);
            let offset = self.registry.on_alert_time(&alert.site, alert.time, now);
            time_untrusted =
                crate::trust::judge_time(alert, now, offset, self.p.clock_tolerance_ms);
        }
        let retimed;
        let alert = match &time_untrusted {
            Some(u) => {
                bump(&self.p.metrics.alerts_retimed);
                tracing::warn!(alert = %alert.id, site = %alert.site, box_time = alert.time.0, reason = %u.reason, "alert time not believed; filed at its receipt");
                retimed = crate::trust::retimed(alert, now);
                &retimed
            }
            None => alert,
        };
        // The path is looked up before muting only when a silence in force matches on cells
        // (locating costs an R-tree search per alert); it is reused if the alert opens a case.
        let mut path = None;
        if self
            .silences
            .iter()
            .any(|s| s.needs_path() && s.active_at(now))
        {
            path = Some(self.path_for(alert));
        }
        let muted = if inhibited(alert, self.registry.is_online(&alert.site)) {
            bump(&self.p.metrics.inhibited);
            Some("inhibited: the site is offline".to_owned())
        } else {
            let on = path.as_deref().unwrap_or_default();
            match silenced_by(&self.silences, alert, on, now).map(|s| s.id.clone()) {
                Some(id) => {
                    bump(&self.p.metrics.silenced);
                    // The count goes in the batch that files the alert: counted once, and
                    // never for an alert whose filing was lost.
                    if let Some(s) = self.silences.iter_mut().find(|s| s.id == id) {
                        s.muted += 1;
                        staged.put_silence(s)?;
                    }
                    Some(format!("silenced by {id}"))
                }
                None => None,
            }
        };
        if let Some(why) = muted {
            tracing::info!(alert = %alert.id, site = %alert.site, why, "alert stored, not dispatched");
            staged.file(&alert.id, &Filed::Muted(why));
            return Ok(None);
        }
        let group = GroupKey::of(alert);
        let window = self.p.policy.group_window.as_ms();
        let open = match staged.group(&cases, &group)? {
            Some(id) => staged.case(&cases, &id)?,
            None => None,
        };
        let roster = self.p.roster.current();
        let duty = RosterDuty(&roster);
        let (mut case, effects, old_deadline) = match open {
            Some(mut case) if groups_with(&case, alert, window) => {
                let old = case.next_deadline();
                case.absorb(alert, now);
                (case, Vec::new(), old)
            }
            _ => {
                let path = path.take().unwrap_or_else(|| self.path_for(alert));
                let id = CaseId::for_alert(&alert.id);
                let (mut case, mut effects) =
                    Case::open(id, alert, path, now, &self.p.policy, &duty);
                for (code, rule) in crate::case::departments_for(&self.p.routing, alert) {
                    match self.unit(code) {
                        Some(unit) => {
                            let why = format!("routing rule {rule}");
                            effects.extend(case.route(&[unit], &why, now, &duty));
                        }
                        None => {
                            tracing::error!(case = %case.id, department = code, rule, "routing rule names a department the roster does not have");
                        }
                    }
                }
                bump(&self.p.metrics.cases_opened);
                (case, effects, None)
            }
        };
        if case.position_untrusted.is_none() {
            case.position_untrusted = untrusted;
        }
        if case.time_untrusted.is_none() {
            case.time_untrusted = time_untrusted;
        }
        staged.put_case(&case)?;
        self.touched.push(case.clone());
        staged.file(&alert.id, &Filed::Case(case.id.clone()));
        if case.is_open() {
            staged.set_group(&group, &case.id);
        }
        self.move_deadline(staged, &case.id, old_deadline, case.next_deadline());
        bump(&self.p.metrics.alerts_filed);
        Ok(Some((case, effects)))
    }
}
