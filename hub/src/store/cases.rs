//! Cases ([`Cases`]): the cases themselves in the case log ([`CaseLog`], `{data_dir}/cases/`),
//! their indexes in sled's `work` tree. Only this module knows the keys and encodings; the
//! dispatcher, the one writer, gathers its changes in a [`CaseWrites`] and applies them; the
//! API and retention read through [`Cases`].
//!
//! Applying a [`CaseWrites`]: the case versions are appended to the log; if there are index
//! changes, the log is synced first and then they go to sled in one atomic batch, so that no
//! index entry on disk names a case version the log could still lose. A change of cases alone
//! (a case recording its pushes) is only appended, durable at the next [`super::Store::flush`]
//! (which syncs the log before sled).
//!
//! The case's JSON, in the log, by case id (a store of an older hub kept it under `c/{case}`
//! in `work`: moved to the log when opened, see [`Cases::open`]).
//!
//! Keys in `work`:
//! - `k/{group key}` → the open case of that group (alerts of the group join it);
//! - `x/{alert}` → what became of the alert ([`Filed`]): the case id, or `0x00` and why it was
//!   muted (a record of an older hub holds the reason text alone; a case id starts `C-`);
//! - `d/{at ms BE}{case}` → empty: the deadline index;
//! - `z/{closed at ms BE}{case}` → empty: closed cases by closing time (retention);
//! - `s/{silence id}` → the silence's JSON (with its muted count, changed in the batch that
//!   files the muted alert);
//! - `sa/{seq u64 BE}` → one silence audit record's JSON ([`SilenceAudit`]: created or ended,
//!   who, when, the silence as it became), written in one batch with the silence it records;
//!   append-only (people's changes, a few a day);
//! - `h/{part}` → the id of the latest hub-health case of that part (`disk`);
//! - `p/{alert}` pending marker (written by [`super::Alerts`] with the alert; removed here
//!   when the alert is filed).
//!
//! Also in `work`, owned elsewhere: the watchlist's pre-scope `w/` entries (moved at open).

use std::collections::HashMap;

use protocol::UtcMillis;
use serde::{Deserialize, Serialize};

use super::case_log::{CaseLog, LogStats};
use super::{PENDING, StoreError, pending_key};
use crate::case::{Case, CaseId, Silence, SilenceId};

const CASE: &[u8] = b"c/";
const GROUP: &[u8] = b"k/";
const FILED: &[u8] = b"x/";
const DEADLINE: &[u8] = b"d/";
const CLOSED: &[u8] = b"z/";
const SILENCE: &[u8] = b"s/";
const SILENCE_AUDIT: &[u8] = b"sa/";
const HEALTH: &[u8] = b"h/";
/// First byte of a muted alert's `x/` value (a case id never starts with it).
const MUTED: u8 = 0;

fn key(prefix: &[u8], rest: &str) -> Vec<u8> {
    [prefix, rest.as_bytes()].concat()
}

/// The key of an alert's [`Filed`] marker (for [`super::Alerts`], whose expiry drops the
/// markers of muted alerts).
pub(super) fn filed_key(alert: &[u8]) -> Vec<u8> {
    [FILED, alert].concat()
}

fn timed_key(prefix: &[u8], at: UtcMillis, case: &str) -> Vec<u8> {
    [prefix, &(at.0.max(0) as u64).to_be_bytes(), case.as_bytes()].concat()
}

fn io(op: &'static str) -> impl FnOnce(sled::Error) -> StoreError {
    move |source| StoreError::Io { op, source }
}

fn corrupt(id: &str, why: impl ToString) -> StoreError {
    StoreError::Corrupt {
        tree: "work",
        key: id.to_owned(),
        why: why.to_string(),
    }
}

fn decode_case(id: &str, v: &[u8]) -> Result<Case, StoreError> {
    Case::from_json(v).map_err(|e| corrupt(id, e))
}

/// What a change to a silence was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SilenceAction {
    Created,
    /// Ended before its planned end.
    Ended,
}

/// One line of the silences' audit log: who created or ended which silence, when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SilenceAudit {
    /// Position in the log (assigned when written; later changes have larger ones).
    #[serde(default)]
    pub seq: u64,
    pub at: UtcMillis,
    pub action: SilenceAction,
    /// The dashboard login that made the change.
    pub login: String,
    /// Their actor id (roster person, else the login).
    pub actor: String,
    /// The silence as the change left it.
    pub silence: Silence,
}

/// What became of a filed alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filed {
    /// Filed into this case.
    Case(CaseId),
    /// Stored, not dispatched: why (silenced by …, inhibited: …).
    Muted(String),
}

impl Filed {
    fn encode(&self) -> Vec<u8> {
        match self {
            Self::Case(id) => id.as_bytes().to_vec(),
            Self::Muted(why) => [&[MUTED][..], why.as_bytes()].concat(),
        }
    }

    pub(super) fn decode(v: &[u8]) -> Self {
        match v.split_first() {
            Some((&MUTED, why)) => Self::Muted(String::from_utf8_lossy(why).into_owned()),
            // Before the tag byte, a muted alert's value was its reason text alone.
            _ if !v.starts_with(b"C-") => Self::Muted(String::from_utf8_lossy(v).into_owned()),
            _ => Self::Case(CaseId::from_stored(String::from_utf8_lossy(v).into_owned())),
        }
    }

    pub fn case(&self) -> Option<&CaseId> {
        match self {
            Self::Case(id) => Some(id),
            Self::Muted(_) => None,
        }
    }
}

/// A case as stored with the length of its record (for retention's byte counts).
#[derive(Debug)]
pub struct StoredCase {
    pub case: Case,
    pub bytes: u64,
}

/// Owner of the cases and their indexes.
#[derive(Debug, Clone)]
pub struct Cases {
    work: sled::Tree,
    log: CaseLog,
}

/// How many cases of an older hub's `c/` keys are moved to the log per sled batch.
const MOVE_BATCH: usize = 1_000;

impl Cases {
    /// Opens the case log in `log_dir`. Cases an older hub kept in `work` (`c/`) are appended
    /// to the log, synced, and only then removed from `work`; a crash in between moves them
    /// again at the next open (the same versions, appended twice, the last one standing).
    pub(super) fn open(work: sled::Tree, log_dir: &std::path::Path) -> Result<Self, StoreError> {
        let log = CaseLog::open(log_dir)?;
        let mut moved = 0usize;
        loop {
            let mut ops = Vec::new();
            for kv in work.scan_prefix(CASE).take(MOVE_BATCH) {
                let (k, v) = kv.map_err(io("scan cases to move"))?;
                let id =
                    CaseId::from_stored(String::from_utf8_lossy(&k[CASE.len()..]).into_owned());
                ops.push((k, id, v));
            }
            if ops.is_empty() {
                break;
            }
            let appends: Vec<(CaseId, Option<&[u8]>)> = ops
                .iter()
                .map(|(_, id, v)| (id.clone(), Some(v.as_ref())))
                .collect();
            log.append(&appends)?;
            log.sync()?;
            let mut batch = sled::Batch::default();
            for (k, _, _) in &ops {
                batch.remove(k.clone());
            }
            work.apply_batch(batch)
                .map_err(io("move cases to the log"))?;
            moved += ops.len();
        }
        if moved > 0 {
            work.flush().map_err(io("move cases to the log"))?;
            tracing::info!(cases = moved, log = %log_dir.display(), "cases moved from sled to the case log");
        }
        Ok(Self { work, log })
    }

    /// A stored case, read straight from the log (reads never wait behind the dispatcher).
    pub fn get(&self, id: &CaseId) -> Result<Option<Case>, StoreError> {
        self.log.get(id)?.map(|v| decode_case(id, &v)).transpose()
    }

    /// The case log's sizes.
    pub fn log_stats(&self) -> LogStats {
        self.log.stats()
    }

    /// Makes the case versions appended so far durable.
    pub fn sync(&self) -> Result<(), StoreError> {
        self.log.sync()
    }

    /// Compacts the case log now (after retention removed cases, so their space comes back);
    /// returns how many segments were rewritten.
    pub fn compact(&self) -> Result<usize, StoreError> {
        self.log.compact()
    }

    /// Has the case log compacted soon, off the caller's thread.
    pub fn compact_soon(&self) {
        self.log.compact_soon();
    }

    /// What became of an alert (`None`: not filed).
    pub fn filed(&self, alert: &str) -> Result<Option<Filed>, StoreError> {
        Ok(self
            .work
            .get(key(FILED, alert))
            .map_err(io("read filed"))?
            .map(|v| Filed::decode(&v)))
    }

    /// The case an alert was filed into (`None`: not filed, or muted).
    pub fn case_of_alert(&self, alert: &str) -> Result<Option<CaseId>, StoreError> {
        Ok(self.filed(alert)?.and_then(|f| match f {
            Filed::Case(id) => Some(id),
            Filed::Muted(_) => None,
        }))
    }

    /// Every stored case, in id order; an unreadable one is an error item (the caller logs it
    /// and goes on).
    pub fn all(&self) -> impl Iterator<Item = Result<StoredCase, StoreError>> + '_ {
        self.log
            .ids()
            .into_iter()
            .filter_map(|id| match self.log.get(&id) {
                Ok(Some(v)) => Some(decode_case(&id, &v).map(|case| StoredCase {
                    case,
                    bytes: v.len() as u64,
                })),
                // Removed since the ids were taken.
                Ok(None) => None,
                Err(e) => Some(Err(e)),
            })
    }

    /// The deadline index: (due ms, case id).
    pub fn deadlines(&self) -> Result<Vec<(i64, CaseId)>, StoreError> {
        let mut out = Vec::new();
        for k in self.work.scan_prefix(DEADLINE).keys() {
            let k = k.map_err(io("scan deadlines"))?;
            if let Some(entry) = split_timed(&k, DEADLINE) {
                out.push(entry);
            }
        }
        Ok(out)
    }

    /// Whether a closed case has its closing-time index entry.
    pub fn closed_indexed(&self, case: &Case) -> Result<bool, StoreError> {
        match case.closed_at() {
            Some(at) => self
                .work
                .contains_key(timed_key(CLOSED, at, &case.id))
                .map_err(io("read closed index")),
            None => Ok(true),
        }
    }

    /// Up to `max` ids of cases closed before `cutoff`, oldest first, with their index keys
    /// (for [`CaseWrites::unindex_closed`]).
    pub fn closed_before(
        &self,
        cutoff: UtcMillis,
        max: usize,
    ) -> Result<Vec<ClosedEntry>, StoreError> {
        let end = timed_key(CLOSED, cutoff, "");
        let mut out = Vec::new();
        for k in self.work.range(CLOSED.to_vec()..end).keys().take(max) {
            let k = k.map_err(io("scan closed index"))?;
            let id = CaseId::from_stored(
                String::from_utf8_lossy(k.get(CLOSED.len() + 8..).unwrap_or_default()).into_owned(),
            );
            out.push(ClosedEntry {
                key: k.to_vec(),
                id,
            });
        }
        Ok(out)
    }

    /// The stored silences; an unreadable one is logged and left out.
    pub fn silences(&self) -> Result<Vec<Silence>, StoreError> {
        let mut out = Vec::new();
        for kv in self.work.scan_prefix(SILENCE) {
            let (k, v) = kv.map_err(io("scan silences"))?;
            match serde_json::from_slice::<Silence>(&v) {
                Ok(s) => out.push(s),
                Err(e) => {
                    tracing::error!(key = %String::from_utf8_lossy(&k), error = %e, "unreadable silence skipped")
                }
            }
        }
        Ok(out)
    }

    /// One stored silence.
    pub fn silence(&self, id: &SilenceId) -> Result<Option<Silence>, StoreError> {
        self.work
            .get(key(SILENCE, id.as_str()))
            .map_err(io("read silence"))?
            .map(|v| serde_json::from_slice(&v).map_err(|e| corrupt(id.as_str(), e)))
            .transpose()
    }

    /// Stores `s` (new, or ended early) and its audit record in one batch; returns the
    /// record as written (with its seq). Durable once the store is flushed. Only the
    /// dispatcher writes (one task), so the next seq is the last key's plus one.
    pub fn put_silence(
        &self,
        s: &Silence,
        mut record: SilenceAudit,
    ) -> Result<SilenceAudit, StoreError> {
        let last = self
            .work
            .scan_prefix(SILENCE_AUDIT)
            .keys()
            .next_back()
            .transpose()
            .map_err(io("read last silence audit"))?;
        record.seq = last
            .and_then(|k| k.get(SILENCE_AUDIT.len()..).and_then(|b| b.try_into().ok()))
            .map(u64::from_be_bytes)
            .unwrap_or(0)
            + 1;
        let mut batch = sled::Batch::default();
        batch.insert(
            key(SILENCE, s.id.as_str()),
            serde_json::to_vec(s).map_err(|e| corrupt(s.id.as_str(), e))?,
        );
        batch.insert(
            [SILENCE_AUDIT, &record.seq.to_be_bytes()[..]].concat(),
            serde_json::to_vec(&record).map_err(|e| corrupt("sa/", e))?,
        );
        self.work.apply_batch(batch).map_err(io("save silence"))?;
        Ok(record)
    }

    /// The silences' audit log, newest first: at most `limit` records with a seq below
    /// `before`.
    pub fn silence_audit(
        &self,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<SilenceAudit>, StoreError> {
        let end = [SILENCE_AUDIT, &before.unwrap_or(u64::MAX).to_be_bytes()[..]].concat();
        self.work
            .range(SILENCE_AUDIT.to_vec()..end)
            .rev()
            .take(limit)
            .map(|kv| {
                let (k, v) = kv.map_err(io("scan silence audit"))?;
                serde_json::from_slice(&v).map_err(|e| corrupt(&String::from_utf8_lossy(&k), e))
            })
            .collect()
    }

    /// The latest hub-health case of `part`.
    pub fn health_case(&self, part: &str) -> Result<Option<CaseId>, StoreError> {
        Ok(self
            .work
            .get(key(HEALTH, part))
            .map_err(io("read health case"))?
            .map(|v| CaseId::from_stored(String::from_utf8_lossy(&v).into_owned())))
    }

    pub fn set_health_case(&self, part: &str, case: &CaseId) -> Result<(), StoreError> {
        self.work
            .insert(key(HEALTH, part), case.as_bytes())
            .map_err(io("save health case"))?;
        Ok(())
    }

    /// Forgets the pending marker of an alert that is not stored.
    pub fn drop_pending(&self, alert: &str) -> Result<(), StoreError> {
        self.work
            .remove(pending_key(alert))
            .map_err(io("drop pending"))?;
        Ok(())
    }

    /// Ids of alerts stored but not yet filed into a case, in key order.
    pub fn pending_ids(&self) -> Result<Vec<String>, StoreError> {
        self.work
            .scan_prefix(PENDING)
            .keys()
            .map(|k| {
                let k = k.map_err(io("scan pending"))?;
                Ok(String::from_utf8_lossy(&k[PENDING.len()..]).into_owned())
            })
            .collect()
    }

    /// Applies `w` as one atomic batch. A single write (typically a case recording its
    /// pushes) goes in as it is, atomic by itself, without the two log-buffer writes a sled
    /// batch costs.
    pub fn apply(&self, w: CaseWrites, op: &'static str) -> Result<(), StoreError> {
        let cases: Vec<(CaseId, Option<&[u8]>)> = w
            .cases
            .iter()
            .map(|(id, v)| (id.clone(), v.as_deref()))
            .collect();
        self.log.append(&cases)?;
        if w.view.is_empty() {
            return Ok(());
        }
        // The versions the index entries below may name, durable before the entries are.
        self.log.sync()?;
        if w.view.len() > 1 {
            let mut batch = sled::Batch::default();
            for (k, v) in w.view {
                match v {
                    Some(v) => batch.insert(k, v),
                    None => batch.remove(k),
                }
            }
            self.work.apply_batch(batch).map_err(io(op))?;
        } else {
            match w.view.into_iter().next() {
                None => {}
                Some((k, Some(v))) => self.work.insert(k, v).map(drop).map_err(io(op))?,
                Some((k, None)) => self.work.remove(k).map(drop).map_err(io(op))?,
            }
        }
        Ok(())
    }

    /// Writes cases as the dispatcher files them (case, group key while open, alert index,
    /// deadline and closing-time indexes), in one batch. For benchmarks that need a big store
    /// fast and for migrations; the hub must not be running on this store.
    pub fn import(&self, cases: &[Case]) -> Result<(), StoreError> {
        let mut w = CaseWrites::default();
        for case in cases {
            w.put_case(case)?;
            for a in &case.alert_ids {
                w.file(a, &Filed::Case(case.id.clone()));
            }
            if case.is_open() {
                w.set_group(&case.key, &case.id);
            }
            w.index_closed(case);
            if let Some(d) = case.next_deadline() {
                w.put_deadline(d, &case.id);
            }
        }
        self.apply(w, "import cases")
    }
}

/// A closing-time index entry ([`Cases::closed_before`]).
#[derive(Debug, Clone)]
pub struct ClosedEntry {
    key: Vec<u8>,
    pub id: CaseId,
}

fn split_timed(k: &[u8], prefix: &[u8]) -> Option<(i64, CaseId)> {
    let at: [u8; 8] = k.get(prefix.len()..prefix.len() + 8)?.try_into().ok()?;
    let case = String::from_utf8_lossy(k.get(prefix.len() + 8..)?).into_owned();
    Some((u64::from_be_bytes(at) as i64, CaseId::from_stored(case)))
}

/// Changes to cases and their indexes gathered for one atomic batch, and readable before it
/// is applied (through `cases`), so a later alert of a batch sees the case an earlier one
/// opened.
///
/// Only the last value of each key (and of each case) is kept: what lands of a batch is the
/// last write of each.
#[derive(Default)]
pub struct CaseWrites {
    /// Case versions (`None`: removed), for the log.
    cases: HashMap<CaseId, Option<Vec<u8>>>,
    /// Index entries, for sled.
    view: HashMap<Vec<u8>, Option<sled::IVec>>,
}

impl std::fmt::Debug for CaseWrites {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaseWrites")
            .field("cases", &self.cases.len())
            .field("index", &self.view.len())
            .finish()
    }
}

impl CaseWrites {
    fn insert(&mut self, k: Vec<u8>, v: &[u8]) {
        self.view.insert(k, Some(sled::IVec::from(v)));
    }

    fn remove(&mut self, k: Vec<u8>) {
        self.view.insert(k, None);
    }

    /// The value under `k` once the batch is applied.
    fn get(&self, cases: &Cases, k: &[u8]) -> Result<Option<sled::IVec>, StoreError> {
        match self.view.get(k) {
            Some(v) => Ok(v.clone()),
            None => cases.work.get(k).map_err(io("read work")),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.view.is_empty() && self.cases.is_empty()
    }

    /// Stages a silence's new state (its muted count) with the alerts it muted.
    pub fn put_silence(&mut self, s: &Silence) -> Result<(), StoreError> {
        let v = serde_json::to_vec(s).map_err(|e| corrupt(s.id.as_str(), e))?;
        self.insert(key(SILENCE, s.id.as_str()), &v);
        Ok(())
    }

    /// A case as it will be once applied.
    pub fn case(&self, cases: &Cases, id: &CaseId) -> Result<Option<Case>, StoreError> {
        match self.cases.get(id) {
            Some(Some(v)) => decode_case(id, v).map(Some),
            Some(None) => Ok(None),
            None => cases.get(id),
        }
    }

    /// A case's record length as it will be once applied (0: none).
    pub fn case_bytes(&self, cases: &Cases, id: &CaseId) -> Result<u64, StoreError> {
        Ok(match self.cases.get(id) {
            Some(v) => v.as_ref().map_or(0, |v| v.len() as u64),
            None => cases.log.len_of(id),
        })
    }

    /// The open case of a group, as it will be once applied.
    pub fn group(&self, cases: &Cases, group: &str) -> Result<Option<CaseId>, StoreError> {
        Ok(self
            .get(cases, &key(GROUP, group))?
            .map(|v| CaseId::from_stored(String::from_utf8_lossy(&v).into_owned())))
    }

    pub fn filed(&self, cases: &Cases, alert: &str) -> Result<Option<Filed>, StoreError> {
        Ok(self
            .get(cases, &key(FILED, alert))?
            .map(|v| Filed::decode(&v)))
    }

    /// Whether a closed case's closing-time entry is (will be) there.
    pub fn closed_indexed(&self, cases: &Cases, case: &Case) -> Result<bool, StoreError> {
        match case.closed_at() {
            Some(at) => Ok(self.get(cases, &timed_key(CLOSED, at, &case.id))?.is_some()),
            None => Ok(false),
        }
    }

    /// Stores the case; returns its record's length.
    pub fn put_case(&mut self, case: &Case) -> Result<u64, StoreError> {
        let json = case.to_json().map_err(|e| corrupt(&case.id, e))?;
        let n = json.len() as u64;
        self.cases.insert(case.id.clone(), Some(json));
        Ok(n)
    }

    pub fn remove_case(&mut self, id: &CaseId) {
        self.cases.insert(id.clone(), None);
    }

    /// Records what became of an alert and clears its pending marker.
    pub fn file(&mut self, alert: &str, filed: &Filed) {
        self.insert(key(FILED, alert), &filed.encode());
        self.remove(pending_key(alert));
    }

    /// An alert filed before (a resend): only its pending marker goes.
    pub fn clear_pending(&mut self, alert: &str) {
        self.remove(pending_key(alert));
    }

    pub fn unfile(&mut self, alert: &str) {
        self.remove(key(FILED, alert));
    }

    pub fn set_group(&mut self, group: &str, case: &CaseId) {
        self.insert(key(GROUP, group), case.as_bytes());
    }

    /// Drops a group's open-case entry if it still names `case`.
    pub fn release_group(
        &mut self,
        cases: &Cases,
        group: &str,
        case: &CaseId,
    ) -> Result<(), StoreError> {
        if self.group(cases, group)?.as_deref() == Some(case) {
            self.remove(key(GROUP, group));
        }
        Ok(())
    }

    pub fn put_deadline(&mut self, at: UtcMillis, case: &CaseId) {
        self.insert(timed_key(DEADLINE, at, case), &[]);
    }

    pub fn remove_deadline(&mut self, at: UtcMillis, case: &CaseId) {
        self.remove(timed_key(DEADLINE, at, case));
    }

    /// Adds a closed case's closing-time entry (nothing for a case not closed).
    pub fn index_closed(&mut self, case: &Case) {
        if let Some(at) = case.closed_at() {
            self.insert(timed_key(CLOSED, at, &case.id), &[]);
        }
    }

    pub fn unindex_closed(&mut self, entry: &ClosedEntry) {
        self.remove(entry.key.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filed_values_of_both_kinds_and_of_an_older_hub_decode_to_what_they_mean() {
        for f in [
            Filed::Case("C-01A".into()),
            Filed::Muted("silenced by S-1".into()),
            // A reason that happens to start like a case id is still a reason.
            Filed::Muted("C-looking reason".into()),
        ] {
            assert_eq!(Filed::decode(&f.encode()), f);
        }
        assert_eq!(
            Filed::decode(b"inhibited: the site is offline"),
            Filed::Muted("inhibited: the site is offline".into())
        );
        assert_eq!(Filed::decode(b"C-01B"), Filed::Case("C-01B".into()));
    }

    #[test]
    fn cases_an_older_hub_kept_in_sled_are_moved_to_the_log_once_and_their_indexes_stay() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new()
            .path(dir.path().join("store"))
            .open()
            .unwrap();
        let work = db.open_tree("work").unwrap();
        let n = MOVE_BATCH + 5;
        for i in 0..n {
            work.insert(
                key(CASE, &format!("C-{i}")),
                format!("{{\"v\":{i}}}").as_bytes(),
            )
            .unwrap();
        }
        work.insert(key(FILED, "a1"), &b"C-1"[..]).unwrap();
        let log_dir = dir.path().join("cases");
        let cases = Cases::open(work.clone(), &log_dir).unwrap();
        assert_eq!(work.scan_prefix(CASE).count(), 0, "no case left in sled");
        assert_eq!(cases.log_stats().cases, n);
        let c7 = CaseId::parse("C-7").unwrap();
        assert_eq!(cases.log.get(&c7).unwrap().unwrap(), br#"{"v":7}"#);
        assert_eq!(
            cases.case_of_alert("a1").unwrap(),
            Some(CaseId::parse("C-1").unwrap())
        );
        drop(cases);
        // Opened again: nothing to move, nothing lost.
        let cases = Cases::open(work, &log_dir).unwrap();
        assert_eq!(cases.log_stats().cases, n);
        assert_eq!(cases.log.get(&c7).unwrap().unwrap(), br#"{"v":7}"#);
    }

    #[test]
    fn silences_of_an_older_hub_read_and_changes_are_audited_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new()
            .path(dir.path().join("store"))
            .open()
            .unwrap();
        let work = db.open_tree("work").unwrap();
        // As an earlier hub wrote it: site required, no other matchers, no end, no count.
        work.insert(
            key(SILENCE, "S1"),
            &br#"{"id":"S1","site":"wuding-0001","from":"2026-11-22T08:00:00.000Z","until":"2026-11-22T09:00:00.000Z","reason":"road works","created_by":"operator-chen"}"#[..],
        )
        .unwrap();
        let cases = Cases::open(work, &dir.path().join("cases")).unwrap();
        let old = cases.silence(&SilenceId::from("S1")).unwrap().unwrap();
        assert_eq!(old.site.as_deref(), Some("wuding-0001"));
        assert_eq!((old.muted, old.ended_at), (0, None));

        let record = |action, s: &Silence| SilenceAudit {
            seq: 0,
            at: s.from,
            action,
            login: "op-county".into(),
            actor: "p-huangtao".into(),
            silence: s.clone(),
        };
        let mut s = old.clone();
        s.id = SilenceId::from("S-2");
        let created = cases
            .put_silence(&s, record(SilenceAction::Created, &s))
            .unwrap();
        s.ended_at = Some(s.from);
        let ended = cases
            .put_silence(&s, record(SilenceAction::Ended, &s))
            .unwrap();
        assert_eq!((created.seq, ended.seq), (1, 2));
        assert_eq!(
            cases.silences().unwrap().len(),
            2,
            "the old one and the new one"
        );
        let log = cases.silence_audit(None, 10).unwrap();
        let actions: Vec<_> = log.iter().map(|r| (r.seq, r.action)).collect();
        assert_eq!(
            actions,
            [(2, SilenceAction::Ended), (1, SilenceAction::Created)]
        );
        let page = cases.silence_audit(Some(2), 10).unwrap();
        assert_eq!(page.len(), 1, "before 2: only the first");
        assert_eq!(page[0].seq, 1);

        // A muted alert's count goes in the batch that files it.
        s.muted = 1;
        let mut w = CaseWrites::default();
        w.put_silence(&s).unwrap();
        w.file("a1", &Filed::Muted("silenced by S-2".into()));
        cases.apply(w, "test").unwrap();
        assert_eq!(cases.silence(&s.id).unwrap().unwrap().muted, 1);
        assert_eq!(
            cases.filed("a1").unwrap(),
            Some(Filed::Muted("silenced by S-2".into()))
        );
    }
}
