//! Signed commands to the sites: the watchlist (added, removed, synced when a site comes
//! online) and their sequence numbers; silences.

use super::*;

impl Dispatcher {
    pub(super) fn next_seq(&mut self) -> Result<u64, DispatchError> {
        // Time-based so that a store restored from an old backup still issues seqs the agents
        // have not seen.
        self.last_seq = (self.last_seq + 1).max(self.now().0 as u64);
        self.p.store.set_command_seq(self.last_seq)?;
        Ok(self.last_seq)
    }

    pub(super) async fn send_command(
        &mut self,
        site: &str,
        body: CommandBody,
    ) -> Result<(), DispatchError> {
        let cmd = Command {
            schema: protocol::SCHEMA_VERSION,
            site: site.to_owned(),
            seq: self.next_seq()?,
            issued_at: self.now(),
            body,
        };
        let signed = SignedCommand::sign(&cmd, &self.p.signing_key);
        let payload =
            serde_json::to_vec(&signed).map_err(|e| DispatchError::Invalid(e.to_string()))?;
        if let Err(e) = self
            .p
            .pusher
            .link()
            .publish(&self.p.topics.cmd(site), payload, false)
            .await
        {
            tracing::warn!(site, error = %e, "command not sent; it goes again when the site comes online");
        } else {
            tracing::info!(site, seq = cmd.seq, "command sent");
        }
        Ok(())
    }

    /// Sends a site that just came online every entry that applies to it (it may have missed
    /// changes).
    pub(super) async fn sync_watchlist(&mut self, site: &str) -> Result<(), DispatchError> {
        let cell = self.p.sites.get(site).map(|s| s.cell.clone());
        let entries = self.p.store.watchlist().entries()?;
        for e in entries {
            if !crate::watchlist::covers(self.p.grid.hierarchy(), &e.scope, cell.as_deref()) {
                continue;
            }
            self.send_command(
                site,
                CommandBody::WatchAdd {
                    tag: e.tag,
                    case_ref: e.case_ref,
                    note: e.note,
                },
            )
            .await?;
        }
        Ok(())
    }

    /// The known sites an entry of `scope` applies to.
    pub(super) fn sites_of(&self, scope: &crate::store::WatchScope) -> BTreeSet<String> {
        let grid = self.p.grid.hierarchy();
        self.known_sites()
            .into_iter()
            .filter(|site| {
                let cell = self.p.sites.get(site).map(|s| s.cell.as_str());
                crate::watchlist::covers(grid, scope, cell)
            })
            .collect()
    }

    pub(super) async fn watch_add(
        &mut self,
        entry: WatchEntry,
        by: WatchBy,
    ) -> Result<WatchAudit, DispatchError> {
        protocol::validate_id("tag", &entry.tag)
            .map_err(|e| DispatchError::Invalid(e.to_string()))?;
        let grid = self.p.grid.hierarchy();
        if !by.authority.sees(grid, &entry.scope) {
            return Err(DispatchError::OutsideScope);
        }
        let previous = self.p.store.watchlist().get(&entry.tag)?;
        if let Some(p) = &previous
            && !by.authority.sees(grid, &p.scope)
        {
            return Err(DispatchError::WatchTaken(entry.tag));
        }
        let sites = self.sites_of(&entry.scope);
        // Sites of the old scope the new one leaves out stop watching.
        let dropped: BTreeSet<String> = previous
            .as_ref()
            .map(|p| self.sites_of(&p.scope))
            .unwrap_or_default()
            .difference(&sites)
            .cloned()
            .collect();
        let record = WatchAudit {
            seq: 0,
            at: entry.added_at,
            action: if previous.is_some() {
                WatchAction::Changed
            } else {
                WatchAction::Added
            },
            tag: entry.tag.clone(),
            case_ref: entry.case_ref.clone(),
            scope: entry.scope.clone(),
            note: entry.note.clone(),
            login: by.login,
            actor: by.actor,
            reason: None,
            previous,
            sites: sites.len(),
        };
        let record = self.p.store.watchlist().put(&entry, record)?;
        self.p.store.flush().await?;
        for site in &sites {
            self.send_command(
                site,
                CommandBody::WatchAdd {
                    tag: entry.tag.clone(),
                    case_ref: entry.case_ref.clone(),
                    note: entry.note.clone(),
                },
            )
            .await?;
        }
        for site in &dropped {
            self.send_command(
                site,
                CommandBody::WatchRemove {
                    tag: entry.tag.clone(),
                },
            )
            .await?;
        }
        tracing::info!(
            tag = %entry.tag,
            case_ref = %entry.case_ref,
            login = %record.login,
            action = ?record.action,
            sites = sites.len(),
            dropped = dropped.len(),
            "tag watchlisted"
        );
        Ok(record)
    }

    pub(super) async fn watch_remove(
        &mut self,
        tag: &str,
        by: WatchBy,
        reason: Option<String>,
    ) -> Result<WatchAudit, DispatchError> {
        let entry = self
            .p
            .store
            .watchlist()
            .get(tag)?
            .filter(|e| by.authority.sees(self.p.grid.hierarchy(), &e.scope))
            .ok_or_else(|| DispatchError::NoSuchWatch(tag.to_owned()))?;
        let sites = self.sites_of(&entry.scope);
        let record = WatchAudit {
            seq: 0,
            at: self.now(),
            action: WatchAction::Removed,
            tag: tag.to_owned(),
            case_ref: entry.case_ref.clone(),
            scope: entry.scope.clone(),
            note: entry.note.clone(),
            login: by.login,
            actor: by.actor,
            reason,
            previous: Some(entry),
            sites: sites.len(),
        };
        let record = self.p.store.watchlist().remove(tag, record)?;
        self.p.store.flush().await?;
        for site in &sites {
            self.send_command(
                site,
                CommandBody::WatchRemove {
                    tag: tag.to_owned(),
                },
            )
            .await?;
        }
        tracing::info!(tag, login = %record.login, sites = sites.len(), "tag cleared from the watchlist");
        Ok(record)
    }

    pub(super) async fn add_silence(
        &mut self,
        s: Silence,
        by: SilenceBy,
    ) -> Result<SilenceAudit, DispatchError> {
        let problems = s.problems();
        if !problems.is_empty() {
            let text: Vec<String> = problems.iter().map(|(f, p)| format!("{f}: {p}")).collect();
            return Err(DispatchError::Invalid(text.join("; ")));
        }
        let record = self.record_silence(&s, SilenceAction::Created, by).await?;
        tracing::info!(silence = %s.id, site = ?s.site, camera = ?s.camera, rule = ?s.rule, kind = ?s.kind, cell = ?s.cell, from = %s.from, until = %s.until, by = %record.login, "silence created");
        self.silences.retain(|x| x.id != s.id);
        self.silences.push(s);
        Ok(record)
    }

    /// Ends a silence now. One already past its end is refused (nothing to end).
    pub(super) async fn end_silence(
        &mut self,
        id: SilenceId,
        by: SilenceBy,
    ) -> Result<SilenceAudit, DispatchError> {
        let now = self.now();
        let Some(i) = self.silences.iter().position(|s| s.id == id) else {
            return Err(DispatchError::NoSuchSilence(id));
        };
        let mut s = self.silences[i].clone();
        if s.end() <= now {
            return Err(DispatchError::SilenceOver { id, at: s.end() });
        }
        // A silence that has not started yet ends before it begins: `from` is kept, so the
        // record still says what was planned, and `end() <= from` keeps it inactive.
        s.ended_at = Some(now);
        s.ended_by = Some(by.actor.clone());
        let record = self.record_silence(&s, SilenceAction::Ended, by).await?;
        tracing::info!(silence = %s.id, by = %record.login, muted = s.muted, "silence ended early");
        self.silences[i] = s;
        Ok(record)
    }

    /// Writes the silence with its audit record and flushes, before it takes effect.
    async fn record_silence(
        &mut self,
        s: &Silence,
        action: SilenceAction,
        by: SilenceBy,
    ) -> Result<SilenceAudit, DispatchError> {
        let record = SilenceAudit {
            seq: 0,
            at: self.now(),
            action,
            login: by.login,
            actor: by.actor,
            silence: s.clone(),
        };
        let record = self.p.store.cases().put_silence(s, record)?;
        self.p.store.flush().await?;
        Ok(record)
    }
}
