//! Retention of closed cases: removed with their indexes and markers, through the
//! dispatcher that owns them.

use super::*;

impl Dispatcher {
    /// [`DispatchHandle::expire_closed`]: walks the closing-time index up to `cutoff`, at
    /// most `max` entries, so a call costs about `max` cases whatever the store holds.
    pub(super) fn expire_closed(
        &mut self,
        cutoff: UtcMillis,
        max: usize,
    ) -> Result<Swept, DispatchError> {
        let cases = self.p.store.cases().clone();
        let mut b = CaseWrites::default();
        let mut gone = Vec::new();
        let mut swept = Swept::default();
        let mut seen = 0usize;
        for entry in cases.closed_before(cutoff, max)? {
            seen += 1;
            b.unindex_closed(&entry);
            let id = entry.id;
            let raw_len = b.case_bytes(&cases, &id)?;
            let case = match cases.get(&id) {
                Ok(Some(c)) => c,
                Ok(None) => continue,
                Err(e) => {
                    // Left in place (only its index entry goes): someone should look at it.
                    tracing::error!(case = %id, error = %e, "retention: unreadable case kept; its closing-time entry dropped");
                    continue;
                }
            };
            if case.is_open() {
                tracing::error!(case = %id, "retention: an open case in the closing-time index; kept, entry dropped");
                continue;
            }
            b.remove_case(&id);
            swept.bytes += raw_len;
            for a in &case.alert_ids {
                // Only a marker that still points at this case (a resent alert filed later
                // elsewhere keeps its own).
                if b.filed(&cases, a)?.as_ref().and_then(Filed::case) == Some(&case.id) {
                    swept.bytes += (a.len() + case.id.len() + 2) as u64;
                    b.unfile(a);
                }
            }
            b.release_group(&cases, &case.key, &case.id)?;
            self.move_deadline(&mut b, &case.id, case.next_deadline(), None);
            self.closed_bytes.fetch_sub(
                raw_len.min(self.closed_bytes.load(Ordering::Relaxed)),
                Ordering::Relaxed,
            );
            gone.push(case.id);
        }
        cases.apply(b, "expire closed cases")?;
        self.p.book.remove(&gone);
        swept.records = gone.len() as u64;
        swept.more = seen == max;
        if !gone.is_empty() {
            // Their bytes in the case log come back when its segments are rewritten.
            cases.compact_soon();
            tracing::info!(cases = gone.len(), %cutoff, "retention: closed cases removed");
        }
        Ok(swept)
    }
}
