//! Sites: the registry (online, offline, last status) and what they send besides alerts
//! (status, sightings, command replies).

use super::*;

impl Dispatcher {
    pub(super) fn sweep(&mut self) -> Result<(), DispatchError> {
        let now = self.now();
        for site in self.registry.sweep(now) {
            tracing::warn!(site, "site silent too long; offline");
            self.persist_site(&site)?;
        }
        Ok(())
    }

    pub(super) fn persist_site(&self, site: &str) -> Result<(), DispatchError> {
        if let Some(s) = self.registry.get(site) {
            self.p.store.sites().put(s)?;
        }
        Ok(())
    }

    pub(super) async fn inbound(&mut self, m: Inbound) -> Result<(), DispatchError> {
        let now = self.now();
        match m.kind {
            TopicKind::Status => match protocol::validate::decode_status(&m.payload) {
                Ok(st) if st.site == m.site => {
                    bump(&self.p.metrics.status_received);
                    let change = self.registry.on_status(&st, now, !m.retained);
                    self.persist_site(&m.site)?;
                    if !m.retained && st.state == protocol::status::AgentState::Online {
                        self.check_clock(&m.site).await;
                    }
                    match change {
                        Change::CameOnline => {
                            tracing::info!(site = %m.site, "site online");
                            self.sync_watchlist(&m.site).await?;
                        }
                        Change::WentOffline => tracing::warn!(site = %m.site, "site offline"),
                        Change::None => {}
                    }
                }
                Ok(st) => self.reject(
                    &m.site,
                    "status",
                    &format!("site: {:?} does not match the topic", st.site),
                ),
                Err(e) => self.reject(&m.site, "status", &e.to_string()),
            },
            TopicKind::Sighting => match protocol::validate::decode_sightings(&m.payload) {
                Ok(batch) if batch.site == m.site => {
                    self.registry.on_activity(&m.site, now);
                    let records: Vec<SightingRecord> = batch
                        .sightings
                        .iter()
                        .map(|s| SightingRecord {
                            tag: s.tag.clone(),
                            site: m.site.clone(),
                            reader: s.reader.clone(),
                            first: s.first,
                            last: s.last,
                            reads: s.reads,
                            rssi: s.rssi,
                        })
                        .collect();
                    self.p.store.sightings().insert(&records, now)?;
                    self.p.metrics.sightings_stored.fetch_add(
                        batch.sightings.len() as u64,
                        std::sync::atomic::Ordering::Relaxed,
                    );
                }
                Ok(_) => self.reject(&m.site, "sighting", "site: does not match the topic"),
                Err(e) => self.reject(&m.site, "sighting", &e.to_string()),
            },
            TopicKind::CmdReply => match protocol::validate::decode_command_reply(&m.payload) {
                Ok(r) => {
                    self.registry.on_activity(&m.site, now);
                    tracing::info!(site = %m.site, seq = ?r.seq, outcome = ?r.outcome, detail = ?r.detail, "command reply");
                }
                Err(e) => self.reject(&m.site, "cmd_reply", &e.to_string()),
            },
            TopicKind::Alert | TopicKind::Cmd => {}
        }
        Ok(())
    }

    pub(super) fn reject(&self, site: &str, kind: &'static str, why: &str) {
        self.p.metrics.reject(site, kind);
        tracing::warn!(
            site,
            topic = kind,
            reason = why,
            "payload rejected and dropped"
        );
    }

    /// Known sites: configured plus any heard from.
    pub(super) fn known_sites(&self) -> BTreeSet<String> {
        let mut s: BTreeSet<String> = self.p.sites.keys().cloned().collect();
        s.extend(self.registry.sites().map(|s| s.id.clone()));
        s
    }
}
