//! [`CommandStore`]: the hub's changes to this box and the last applied command seq, on disk,
//! so that both survive a restart (and a replayed command stays refused after one).
//!
//! # On-disk format (schema version [`SCHEMA_VERSION`])
//!
//! A `sled` database (a directory, by convention `data_dir/commands`, apart from the outbox so
//! that neither can damage the other) with two trees:
//!
//! - `meta`: key `schema` → the store's schema version, `u32` big-endian. Written on the first
//!   open of an empty store; another version is refused with a message naming the path, the
//!   version found and the version supported, and a store holding state but no version is
//!   refused too (nothing is guessed). Same rules as the outbox.
//! - `state`: key `seq` → the last applied command's seq, `u64` big-endian; and one key per
//!   overridden thing, `watch/<TAG>`, `pair/<BIKE>`, `arm/<BIKE>`, `rule/<camera>/<rule>`, →
//!   `serde_json` of a record naming its kind and carrying its whole key, so a record can be
//!   read without trusting its key.
//!
//! # Invariants
//!
//! - [`CommandStore::record`] writes the command's changes and its seq in one sled batch on the
//!   `state` tree (all or nothing, also across a crash) and flushes before it returns.
//! - The stored seq only grows: `record` refuses a seq not above it.
//! - A record that cannot be read fails [`CommandStore::open`] naming its key: silently dropping
//!   it would silently undo a hub change (a tag taken off the watchlist would be back).

use std::path::{Path, PathBuf};

use infra::sled_store::{self, Versioned};
use protocol::{Command, Severity};
use serde::{Deserialize, Serialize};
use tracing::{debug, info};

use super::overrides::{Change, Overrides};
use crate::rules::RuleUpdate;
use crate::tags::{Pairing, WatchEntry};

/// Version of the on-disk layout described in the module doc. Bumped on any incompatible
/// change, with an upgrade step for the old one.
pub const SCHEMA_VERSION: u32 = 1;

const META_TREE: &str = "meta";
const STATE_TREE: &str = "state";
/// Key of the last applied seq in [`STATE_TREE`].
const SEQ_KEY: &[u8] = b"seq";

/// Everything that can go wrong with the command store, with its path and, where there is one,
/// the command's seq or the record's key.
#[derive(Debug, thiserror::Error)]
pub enum CommandStoreError {
    #[error("command store {path}: cannot open: {source}")]
    Open { path: PathBuf, source: sled::Error },
    #[error(
        "command store {path}: schema version {found} is not supported (this agent reads \
         version {supported}); run an agent that knows it, or move the store aside (the hub's \
         changes then have to be sent again)"
    )]
    UnknownSchema {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    /// The schema version could not be read or written, is not a version, or is missing from
    /// a store that holds records (`infra::sled_store` says which).
    #[error("command store {path}: {source}")]
    Schema {
        path: PathBuf,
        source: sled_store::SchemaError,
    },
    #[error("command store {path}: {op} failed: {source}")]
    Storage {
        path: PathBuf,
        op: &'static str,
        source: sled::Error,
    },
    #[error("command store {path}: record {key:?} cannot be read: {detail}")]
    Corrupt {
        path: PathBuf,
        key: String,
        detail: String,
    },
    #[error("command store {path}: seq {seq}: {op} failed: {source}")]
    Record {
        path: PathBuf,
        seq: u64,
        op: &'static str,
        source: sled::Error,
    },
    #[error("command store {path}: seq {seq}: not above the last recorded seq {last}")]
    Replayed { path: PathBuf, seq: u64, last: u64 },
    #[error("command store {path}: seq {seq}: cannot be recorded: {detail}")]
    Invalid {
        path: PathBuf,
        seq: u64,
        detail: String,
    },
}

/// The persisted hub changes ([`Overrides`]) and last applied seq of one box.
///
/// Not shared: one owner (the uplink) records what the core applied.
pub struct CommandStore {
    path: PathBuf,
    db: sled::Db,
    state: sled::Tree,
    last_seq: Option<u64>,
    overrides: Overrides,
}

impl std::fmt::Debug for CommandStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandStore")
            .field("path", &self.path)
            .field("last_seq", &self.last_seq)
            .field("overrides", &self.overrides.len())
            .finish_non_exhaustive()
    }
}

impl CommandStore {
    /// Opens (or creates) the store at `path`, checks its schema version and reads its state.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, CommandStoreError> {
        let path = path.as_ref().to_path_buf();
        // Waits out the lock of a handle just dropped (a restart in the same process).
        let db =
            crate::sled_open::open_waiting(&path).map_err(|source| CommandStoreError::Open {
                path: path.clone(),
                source,
            })?;
        let storage = |op| {
            let path = path.clone();
            move |source| CommandStoreError::Storage { path, op, source }
        };
        let meta = db
            .open_tree(META_TREE)
            .map_err(storage("opening the meta tree"))?;
        let state = db
            .open_tree(STATE_TREE)
            .map_err(storage("opening the state tree"))?;
        match sled_store::open_version(&db, &meta, SCHEMA_VERSION, || state.len()).map_err(
            |source| CommandStoreError::Schema {
                path: path.clone(),
                source,
            },
        )? {
            Versioned::Created => {
                info!(message = "Command store created.", path = %path.display(), schema = SCHEMA_VERSION);
            }
            Versioned::Found(found) if found != SCHEMA_VERSION => {
                return Err(CommandStoreError::UnknownSchema {
                    path,
                    found,
                    supported: SCHEMA_VERSION,
                });
            }
            Versioned::Found(_) => {}
        }
        let mut store = Self {
            path,
            db,
            state,
            last_seq: None,
            overrides: Overrides::default(),
        };
        store.load()?;
        info!(
            message = "Command store opened.",
            path = %store.path.display(),
            last_seq = ?store.last_seq,
            overrides = store.overrides.len(),
        );
        Ok(store)
    }

    /// Where the store is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The seq of the last recorded command; `None` before the first.
    pub fn last_seq(&self) -> Option<u64> {
        self.last_seq
    }

    /// The hub's changes, latest per key.
    pub fn overrides(&self) -> &Overrides {
        &self.overrides
    }

    /// Records an applied command: its changes to the overrides and its seq, in one batch,
    /// flushed before returning. Refuses a seq not above the last recorded one and a body that
    /// cannot be stored (a tag id that is not one); the store is then unchanged.
    ///
    /// If the flush fails, the change is in sled's view (and in [`Self::overrides`]) but may not
    /// survive a crash.
    pub fn record(&mut self, command: &Command) -> Result<(), CommandStoreError> {
        let seq = command.seq;
        if let Some(last) = self.last_seq
            && seq <= last
        {
            return Err(CommandStoreError::Replayed {
                path: self.path.clone(),
                seq,
                last,
            });
        }
        let changes =
            self.overrides
                .changes(&command.body)
                .map_err(|detail| CommandStoreError::Invalid {
                    path: self.path.clone(),
                    seq,
                    detail,
                })?;
        let mut batch = sled::Batch::default();
        for change in &changes {
            let key = key_of(change);
            match Stored::of(change) {
                Some(record) => {
                    // Plain structs with string keys: serialising cannot fail, but stay total.
                    let value =
                        serde_json::to_vec(&record).map_err(|e| CommandStoreError::Invalid {
                            path: self.path.clone(),
                            seq,
                            detail: format!("cannot serialise {key}: {e}"),
                        })?;
                    batch.insert(key.as_bytes(), value);
                }
                None => batch.remove(key.as_bytes()),
            }
        }
        batch.insert(SEQ_KEY, &seq.to_be_bytes());
        self.state
            .apply_batch(batch)
            .map_err(|source| self.record_err(seq, "writing", source))?;
        for change in changes {
            self.overrides.commit(change);
        }
        self.last_seq = Some(seq);
        self.db
            .flush()
            .map_err(|source| self.record_err(seq, "flushing", source))?;
        debug!(message = "Hub command recorded.", path = %self.path.display(), seq);
        Ok(())
    }

    /// Records that `seq` is used up without a change: a signed command the agent refused as
    /// invalid. A restart then still refuses it as a replay. No-op for a seq not above the last.
    pub fn consume_seq(&mut self, seq: u64) -> Result<(), CommandStoreError> {
        if self.last_seq.is_some_and(|last| seq <= last) {
            return Ok(());
        }
        self.state
            .insert(SEQ_KEY, &seq.to_be_bytes())
            .map_err(|source| self.record_err(seq, "writing", source))?;
        self.last_seq = Some(seq);
        self.db
            .flush()
            .map_err(|source| self.record_err(seq, "flushing", source))?;
        Ok(())
    }

    /// Reads the last seq and every override.
    fn load(&mut self) -> Result<(), CommandStoreError> {
        for item in self.state.iter() {
            let (key, value) = item.map_err(|source| CommandStoreError::Storage {
                path: self.path.clone(),
                op: "reading the state",
                source,
            })?;
            let key_text = String::from_utf8_lossy(&key).into_owned();
            if key.as_ref() == SEQ_KEY {
                let bytes = <[u8; 8]>::try_from(value.as_ref()).map_err(|_| {
                    self.corrupt(&key_text, format!("{} bytes, expected 8", value.len()))
                })?;
                self.last_seq = Some(u64::from_be_bytes(bytes));
                continue;
            }
            let record: Stored = serde_json::from_slice(&value)
                .map_err(|e| self.corrupt(&key_text, e.to_string()))?;
            let change = record.into_change();
            let expected = key_of(&change);
            if expected != key_text {
                return Err(self.corrupt(&key_text, format!("holds the record of {expected:?}")));
            }
            self.overrides.commit(change);
        }
        Ok(())
    }

    fn corrupt(&self, key: &str, detail: String) -> CommandStoreError {
        CommandStoreError::Corrupt {
            path: self.path.clone(),
            key: key.to_string(),
            detail,
        }
    }

    fn record_err(&self, seq: u64, op: &'static str, source: sled::Error) -> CommandStoreError {
        CommandStoreError::Record {
            path: self.path.clone(),
            seq,
            op,
            source,
        }
    }
}

/// The `state` key of the thing a change is about.
fn key_of(change: &Change) -> String {
    match change {
        Change::Watch { tag, .. } => format!("watch/{tag}"),
        Change::Pair { bike, .. } => format!("pair/{bike}"),
        Change::Arm { bike, .. } => format!("arm/{bike}"),
        Change::Rule { camera, update } => format!("rule/{camera}/{}", update.rule),
    }
}

/// A watchlist entry as stored (its tag is the record's).
#[derive(Debug, Serialize, Deserialize)]
struct StoredWatch {
    case_ref: String,
    note: String,
}

/// A pairing as stored (its bike is the record's).
#[derive(Debug, Serialize, Deserialize)]
struct StoredPairing {
    keys: Vec<String>,
    armed: bool,
}

/// One `state` record. Its own types rather than the config structs, so that renaming a config
/// field cannot silently change what is on disk.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Stored {
    Watch {
        tag: String,
        entry: Option<StoredWatch>,
    },
    Pair {
        bike: String,
        pairing: Option<StoredPairing>,
    },
    Arm {
        bike: String,
        armed: bool,
    },
    Rule {
        camera: String,
        rule: String,
        severity: Option<Severity>,
        threshold: Option<f32>,
        cooldown_ms: Option<i64>,
        active_hours: Option<Vec<String>>,
    },
}

impl Stored {
    /// The record to write for a change; `None` for a change that removes its key.
    fn of(change: &Change) -> Option<Self> {
        Some(match change {
            Change::Watch { tag, entry } => Stored::Watch {
                tag: tag.clone(),
                entry: entry.as_ref().map(|e| StoredWatch {
                    case_ref: e.case_ref.clone(),
                    note: e.note.clone(),
                }),
            },
            Change::Pair { bike, pairing } => Stored::Pair {
                bike: bike.clone(),
                pairing: pairing.as_ref().map(|p| StoredPairing {
                    keys: p.keys.clone(),
                    armed: p.armed,
                }),
            },
            Change::Arm { bike, armed } => Stored::Arm {
                bike: bike.clone(),
                armed: (*armed)?,
            },
            Change::Rule { camera, update } => Stored::Rule {
                camera: camera.clone(),
                rule: update.rule.clone(),
                severity: update.severity,
                threshold: update.threshold,
                cooldown_ms: update.cooldown_ms,
                active_hours: update.active_hours.clone(),
            },
        })
    }

    fn into_change(self) -> Change {
        match self {
            Stored::Watch { tag, entry } => Change::Watch {
                entry: entry.map(|e| WatchEntry {
                    tag: tag.clone(),
                    case_ref: e.case_ref,
                    note: e.note,
                }),
                tag,
            },
            Stored::Pair { bike, pairing } => Change::Pair {
                pairing: pairing.map(|p| Pairing {
                    bike: bike.clone(),
                    keys: p.keys,
                    armed: p.armed,
                }),
                bike,
            },
            Stored::Arm { bike, armed } => Change::Arm {
                bike,
                armed: Some(armed),
            },
            Stored::Rule {
                camera,
                rule,
                severity,
                threshold,
                cooldown_ms,
                active_hours,
            } => Change::Rule {
                camera,
                update: RuleUpdate {
                    rule,
                    severity,
                    threshold,
                    cooldown_ms,
                    active_hours,
                },
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use protocol::{CommandBody, RuleParams, UtcMillis};

    use super::*;

    fn command(seq: u64, body: CommandBody) -> Command {
        Command {
            schema: protocol::SCHEMA_VERSION,
            site: "site-1".into(),
            seq,
            issued_at: UtcMillis(1_800_000_000_000),
            body,
        }
    }

    fn watch(tag: &str) -> CommandBody {
        CommandBody::WatchAdd {
            tag: tag.into(),
            case_ref: "WD-1".into(),
            note: "red".into(),
        }
    }

    #[test]
    fn recorded_commands_survive_a_reopen() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("commands");
        let before = {
            let mut store = CommandStore::open(&path).expect("opens");
            assert_eq!(store.last_seq(), None);
            assert!(store.overrides().is_empty());
            let bodies = [
                watch("aa01"),
                CommandBody::WatchRemove { tag: "BB02".into() },
                CommandBody::PairSet {
                    bike: "b1".into(),
                    keys: vec!["c1".into()],
                    armed: true,
                },
                CommandBody::PairArm {
                    bike: "b7".into(),
                    armed: false,
                },
                CommandBody::RuleParams(RuleParams {
                    camera: "plaza".into(),
                    rule: "cordon".into(),
                    severity: Some(Severity::Major),
                    threshold: Some(0.6),
                    cooldown_ms: None,
                    active_hours: Some(vec!["20:00-06:00".into()]),
                }),
            ];
            for (seq, body) in (10..).zip(bodies) {
                store.record(&command(seq, body)).expect("recorded");
            }
            store.overrides().clone()
        };
        assert_eq!(before.len(), 5);
        let store = CommandStore::open(&path).expect("reopens");
        assert_eq!(store.last_seq(), Some(14));
        assert_eq!(store.overrides(), &before);
        assert_eq!(
            store.overrides().watchlist().get("AA01").cloned().flatten(),
            Some(WatchEntry {
                tag: "AA01".into(),
                case_ref: "WD-1".into(),
                note: "red".into(),
            })
        );
        let rule = &store.overrides().rules()[&("plaza".to_string(), "cordon".to_string())];
        assert_eq!(rule.threshold, Some(0.6));
    }

    #[test]
    fn a_seq_not_above_the_last_is_refused_and_changes_nothing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut store = CommandStore::open(dir.path()).expect("opens");
        store.record(&command(5, watch("aa"))).expect("recorded");
        let err = store
            .record(&command(5, watch("bb")))
            .expect_err("replay recorded");
        assert!(
            matches!(
                err,
                CommandStoreError::Replayed {
                    seq: 5,
                    last: 5,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(store.overrides().len(), 1);
        let err = store
            .record(&command(6, watch("not hex")))
            .expect_err("bad tag recorded");
        assert!(err.to_string().contains("seq 6"), "{err}");
        assert_eq!(store.last_seq(), Some(5));
    }

    #[test]
    fn an_unknown_schema_version_is_refused_naming_the_path() {
        let dir = tempfile::tempdir().expect("temp dir");
        {
            let db = sled::Config::new()
                .path(dir.path())
                .open()
                .expect("sled opens");
            let meta = db.open_tree(META_TREE).expect("tree");
            meta.insert(sled_store::SCHEMA_KEY, &99u32.to_be_bytes())
                .expect("insert");
            db.flush().expect("flush");
        }
        let err = CommandStore::open(dir.path()).expect_err("opened");
        assert!(
            matches!(
                err,
                CommandStoreError::UnknownSchema {
                    found: 99,
                    supported: SCHEMA_VERSION,
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            err.to_string().contains(&dir.path().display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn a_record_that_cannot_be_read_is_refused_naming_its_key() {
        let dir = tempfile::tempdir().expect("temp dir");
        drop(CommandStore::open(dir.path()).expect("opens"));
        {
            let db = sled::Config::new()
                .path(dir.path())
                .open()
                .expect("sled opens");
            let state = db.open_tree(STATE_TREE).expect("tree");
            state
                .insert("watch/AA", b"{oops".as_slice())
                .expect("insert");
            db.flush().expect("flush");
        }
        let err = CommandStore::open(dir.path()).expect_err("opened");
        assert!(
            matches!(&err, CommandStoreError::Corrupt { key, .. } if key == "watch/AA"),
            "{err}"
        );
    }

    #[test]
    fn a_consumed_seq_survives_reopening_and_changes_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("commands");
        {
            let mut store = CommandStore::open(&path).unwrap();
            store.consume_seq(5).unwrap();
            store.consume_seq(3).unwrap();
            assert_eq!(store.last_seq(), Some(5));
            assert!(store.overrides().is_empty());
        }
        let store = CommandStore::open(&path).unwrap();
        assert_eq!(store.last_seq(), Some(5));
        assert!(store.overrides().is_empty());
    }
}
