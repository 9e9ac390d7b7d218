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

    pub(super) fn add_silence(&mut self, s: Silence) -> Result<(), DispatchError> {
        let problems = s.problems();
        if !problems.is_empty() {
            return Err(DispatchError::Invalid(problems.join("; ")));
        }
        self.p.store.cases().put_silence(&s)?;
        self.silences.retain(|x| x.id != s.id);
        self.silences.push(s);
        Ok(())
    }
}
