//! The watchlist ([`Watchlist`]): watchlisted tags (布控) with the cell they apply in, and the
//! audit log of every change to them.
//!
//! Tree `watchlist`:
//! - `e/{tag}` → the entry's JSON ([`WatchEntry`]);
//! - `a/{seq u64 BE}` → one audit record's JSON ([`WatchAudit`]), key order = change order.
//!
//! An entry and its audit record are written in one atomic batch, so there is no change
//! without its record and no record of a change that did not happen. The log is append-only:
//! nothing here removes a record (a change is made by people, a few a day, so it stays small;
//! its retention is the store's, not the API's).
//!
//! Entries of hubs before the watchlist had scopes lived in the dispatcher's `work` tree as
//! `w/{tag}`; [`Watchlist::open`] moves them here, hub-wide, with an audit record saying so.

use protocol::UtcMillis;
use serde::{Deserialize, Serialize};

use super::StoreError;

/// Where an entry applies: which sites are told to watch for the tag, and who may see and
/// change it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(from = "Option<String>", into = "Option<String>")]
pub enum WatchScope {
    /// Every site of the hub; only admins see and change it. Entries from before scopes
    /// existed are hub-wide.
    #[default]
    Everywhere,
    /// The sites registered in this grid cell or any cell under it; operators of the cell or
    /// of a cell above it see and change it.
    Cell(String),
}

impl From<Option<String>> for WatchScope {
    fn from(cell: Option<String>) -> Self {
        cell.map_or(Self::Everywhere, Self::Cell)
    }
}

impl From<WatchScope> for Option<String> {
    fn from(scope: WatchScope) -> Self {
        match scope {
            WatchScope::Everywhere => None,
            WatchScope::Cell(c) => Some(c),
        }
    }
}

/// A watchlisted tag (布控): a stolen e-bike's tag and the police case it belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WatchEntry {
    pub tag: String,
    /// The police case number (报警回执号 / 立案号).
    pub case_ref: String,
    pub note: String,
    pub added_at: UtcMillis,
    /// The actor id of who added (or last changed) it.
    pub added_by: String,
    /// `cell` in JSON: the cell's code, or null for hub-wide.
    #[serde(rename = "cell", default)]
    pub scope: WatchScope,
}

/// What a change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WatchAction {
    Added,
    /// An entry for the tag existed and was replaced (its previous state is in the record).
    Changed,
    Removed,
    /// Moved from the store of a hub before scopes (hub-wide).
    Migrated,
}

/// One line of the audit log: who changed which entry, when, under which police case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WatchAudit {
    /// Position in the log (assigned when written; later changes have larger ones).
    #[serde(default)]
    pub seq: u64,
    pub at: UtcMillis,
    pub action: WatchAction,
    pub tag: String,
    /// The police case number the change was made under (for a removal, the removed
    /// entry's).
    pub case_ref: String,
    /// The entry's scope after the change (for a removal, before it).
    #[serde(rename = "cell")]
    pub scope: WatchScope,
    pub note: String,
    /// The dashboard login that made the change.
    pub login: String,
    /// Their actor id (roster person, else the login).
    pub actor: String,
    /// Why, when given (removals).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The entry before a change or removal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<WatchEntry>,
    /// How many sites were sent the change.
    pub sites: usize,
}

/// A page of the audit log, newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery<'a> {
    /// Only records with a smaller seq (the previous page's last).
    pub before: Option<u64>,
    /// Only this tag's records.
    pub tag: Option<&'a str>,
    pub limit: usize,
}

const ENTRY: &[u8] = b"e/";
const AUDIT: &[u8] = b"a/";
/// Where the dispatcher kept entries before scopes (tree `work`).
const LEGACY: &[u8] = b"w/";

fn io(op: &'static str) -> impl FnOnce(sled::Error) -> StoreError {
    move |source| StoreError::Io { op, source }
}

fn entry_key(tag: &str) -> Vec<u8> {
    [ENTRY, tag.as_bytes()].concat()
}

fn audit_key(seq: u64) -> Vec<u8> {
    [AUDIT, &seq.to_be_bytes()[..]].concat()
}

fn corrupt(key: &[u8], why: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        tree: "watchlist",
        key: String::from_utf8_lossy(key).into_owned(),
        why: why.to_string(),
    }
}

/// Owner of the `watchlist` tree. Changes are serialized by the dispatcher (one task), which
/// is the only writer; the API reads.
#[derive(Debug, Clone)]
pub struct Watchlist {
    tree: sled::Tree,
}

impl Watchlist {
    /// Opens the tree and moves the entries of a pre-scope store (in `work`) into it.
    pub(super) fn open(
        db: &sled::Db,
        work: &sled::Tree,
        now: UtcMillis,
    ) -> Result<Self, StoreError> {
        let tree = db.open_tree("watchlist").map_err(io("open watchlist"))?;
        let list = Self { tree };
        for kv in work.scan_prefix(LEGACY) {
            let (k, v) = kv.map_err(io("scan old watchlist"))?;
            let entry: WatchEntry = serde_json::from_slice(&v).map_err(|e| corrupt(&k, e))?;
            let record = WatchAudit {
                seq: 0,
                at: now,
                action: WatchAction::Migrated,
                tag: entry.tag.clone(),
                case_ref: entry.case_ref.clone(),
                scope: entry.scope.clone(),
                note: entry.note.clone(),
                login: String::new(),
                actor: entry.added_by.clone(),
                reason: Some("kept from before watchlist scopes: hub-wide".into()),
                previous: None,
                sites: 0,
            };
            // Written here before it goes from `work`: a crash in between leaves it in both,
            // and the next open moves it again (an entry put twice is the same entry).
            list.put(&entry, record)?;
            work.remove(&k).map_err(io("remove old watchlist entry"))?;
            tracing::info!(tag = %entry.tag, "watchlist entry moved to its own tree, hub-wide");
        }
        Ok(list)
    }

    pub fn get(&self, tag: &str) -> Result<Option<WatchEntry>, StoreError> {
        let key = entry_key(tag);
        self.tree
            .get(&key)
            .map_err(io("read watchlist entry"))?
            .map(|v| serde_json::from_slice(&v).map_err(|e| corrupt(&key, e)))
            .transpose()
    }

    /// Every entry, in tag order. An unreadable one is an error, not skipped: a watchlist that
    /// silently lost a stolen bike's tag is worse than one that says it is damaged.
    pub fn entries(&self) -> Result<Vec<WatchEntry>, StoreError> {
        self.tree
            .scan_prefix(ENTRY)
            .map(|kv| {
                let (k, v) = kv.map_err(io("scan watchlist"))?;
                serde_json::from_slice(&v).map_err(|e| corrupt(&k, e))
            })
            .collect()
    }

    /// Stores `entry` (added or replacing the tag's) and its audit record in one batch;
    /// returns the record as written (with its seq). Durable once the store is flushed.
    pub fn put(&self, entry: &WatchEntry, record: WatchAudit) -> Result<WatchAudit, StoreError> {
        let value = serde_json::to_vec(entry).map_err(|e| corrupt(b"e/", e))?;
        self.write(Some((entry_key(&entry.tag), value)), None, record)
    }

    /// Removes the tag's entry and writes its audit record in one batch.
    pub fn remove(&self, tag: &str, record: WatchAudit) -> Result<WatchAudit, StoreError> {
        self.write(None, Some(entry_key(tag)), record)
    }

    fn write(
        &self,
        insert: Option<(Vec<u8>, Vec<u8>)>,
        remove: Option<Vec<u8>>,
        mut record: WatchAudit,
    ) -> Result<WatchAudit, StoreError> {
        // One writer (the dispatcher), so the next seq is the last key's plus one.
        record.seq = self.last_seq()? + 1;
        let value = serde_json::to_vec(&record).map_err(|e| corrupt(b"a/", e))?;
        let mut batch = sled::Batch::default();
        if let Some((k, v)) = insert {
            batch.insert(k, v);
        }
        if let Some(k) = remove {
            batch.remove(k);
        }
        batch.insert(audit_key(record.seq), value);
        self.tree
            .apply_batch(batch)
            .map_err(io("write watchlist change"))?;
        Ok(record)
    }

    fn last_seq(&self) -> Result<u64, StoreError> {
        let last = self
            .tree
            .scan_prefix(AUDIT)
            .keys()
            .next_back()
            .transpose()
            .map_err(io("read last watchlist audit"))?;
        Ok(last
            .and_then(|k| k.get(AUDIT.len()..).and_then(|b| b.try_into().ok()))
            .map(u64::from_be_bytes)
            .unwrap_or(0))
    }

    /// Audit records, newest first, at most `q.limit`.
    pub fn audit(&self, q: &AuditQuery<'_>) -> Result<Vec<WatchAudit>, StoreError> {
        let end = audit_key(q.before.unwrap_or(u64::MAX));
        let mut out = Vec::new();
        for kv in self.tree.range(AUDIT.to_vec()..end).rev() {
            if out.len() >= q.limit {
                break;
            }
            let (k, v) = kv.map_err(io("scan watchlist audit"))?;
            let record: WatchAudit = serde_json::from_slice(&v).map_err(|e| corrupt(&k, e))?;
            if q.tag.is_none_or(|t| t == record.tag) {
                out.push(record);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(tag: &str, scope: WatchScope) -> WatchEntry {
        WatchEntry {
            tag: tag.into(),
            case_ref: format!("case of {tag}"),
            note: String::new(),
            added_at: UtcMillis(1),
            added_by: "p-1".into(),
            scope,
        }
    }

    fn record(action: WatchAction, e: &WatchEntry) -> WatchAudit {
        WatchAudit {
            seq: 0,
            at: UtcMillis(2),
            action,
            tag: e.tag.clone(),
            case_ref: e.case_ref.clone(),
            scope: e.scope.clone(),
            note: e.note.clone(),
            login: "op".into(),
            actor: "p-1".into(),
            reason: None,
            previous: None,
            sites: 1,
        }
    }

    #[test]
    fn changes_are_logged_in_order_and_paged_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = super::super::Store::open(dir.path()).unwrap();
        let list = store.watchlist();
        let a = entry("A1", WatchScope::Cell("532329101".into()));
        let b = entry("B2", WatchScope::Everywhere);
        assert_eq!(list.put(&a, record(WatchAction::Added, &a)).unwrap().seq, 1);
        assert_eq!(list.put(&b, record(WatchAction::Added, &b)).unwrap().seq, 2);
        assert_eq!(
            list.remove("A1", record(WatchAction::Removed, &a))
                .unwrap()
                .seq,
            3
        );
        assert_eq!(list.entries().unwrap(), std::slice::from_ref(&b));
        assert_eq!(list.get("A1").unwrap(), None);

        let all = list
            .audit(&AuditQuery {
                limit: 10,
                ..Default::default()
            })
            .unwrap();
        let seqs: Vec<u64> = all.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [3, 2, 1]);
        let page = list
            .audit(&AuditQuery {
                before: Some(3),
                limit: 1,
                tag: None,
            })
            .unwrap();
        assert_eq!(page[0].seq, 2);
        let of_a = list
            .audit(&AuditQuery {
                tag: Some("A1"),
                limit: 10,
                before: None,
            })
            .unwrap();
        assert_eq!(
            of_a.iter().map(|r| r.action).collect::<Vec<_>>(),
            [WatchAction::Removed, WatchAction::Added]
        );
        // The scope's JSON is the cell's code, or null for hub-wide.
        let json = serde_json::to_value(&a).unwrap();
        assert_eq!(json["cell"], "532329101");
        assert_eq!(
            serde_json::to_value(&b).unwrap()["cell"],
            serde_json::Value::Null
        );
    }

    #[test]
    fn entries_of_a_store_before_scopes_move_hub_wide_with_a_record() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = super::super::Store::open(dir.path()).unwrap();
            // As the dispatcher stored it then: no `cell` field, in `work` under `w/`.
            let old = r#"{"tag":"E1","case_ref":"WD-1","note":"n","added_at":"2026-11-01T00:00:00.000Z","added_by":"p-9"}"#;
            store
                .db
                .open_tree("work")
                .unwrap()
                .insert(b"w/E1", old.as_bytes())
                .unwrap();
            store.flush_blocking().unwrap();
        }
        let store = super::super::Store::open(dir.path()).unwrap();
        let list = store.watchlist();
        let entries = list.entries().unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].scope, WatchScope::Everywhere);
        assert_eq!(entries[0].case_ref, "WD-1");
        assert!(
            store
                .db
                .open_tree("work")
                .unwrap()
                .scan_prefix(b"w/")
                .next()
                .is_none()
        );
        let log = list
            .audit(&AuditQuery {
                limit: 10,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].action, WatchAction::Migrated);
        assert_eq!(log[0].actor, "p-9");
    }
}
