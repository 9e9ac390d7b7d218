//! Opening a sled database, and the schema version a store keeps in its `meta` tree.
//!
//! sled holds an exclusive file lock until every handle is gone, and its background threads let
//! go of the file a moment after the last one is dropped, so a store reopened at once (after a
//! disk failure, a restart in the same process, a command run right after the daemon stopped)
//! can find it still locked: [`open_waiting`] tries again for a while. Another live process
//! holding the store still gets the error, only later.
//!
//! The schema version is 4 bytes, big-endian, under the key `schema`. Hubs before this module
//! wrote it as ASCII digits (one to three); [`read_version`] reads both, and a store keeps the encoding it has
//! until its version changes, so a daemon of the previous release still opens it.

use std::time::{Duration, Instant};

/// The key of the schema version in a store's `meta` tree.
pub const SCHEMA_KEY: &[u8] = b"schema";

/// A problem with a store's schema version. The caller adds which store (its path).
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("reading the schema version: {0}")]
    Read(sled::Error),
    #[error("writing the schema version: {0}")]
    Write(sled::Error),
    #[error("the schema version is {len} bytes that are not a version (expected 4 bytes)")]
    BadValue { len: usize },
    #[error("holds {records} records but no schema version; refusing to guess")]
    Missing { records: usize },
}

/// What [`open_version`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Versioned {
    /// The store was empty; `current` has been written (and flushed).
    Created,
    /// The store says this version; the caller decides whether it reads it.
    Found(u32),
}

/// Opens the database `config` describes, retrying for up to `wait` while another handle of
/// this process that was just dropped still holds the lock.
pub fn open_waiting(config: &sled::Config, wait: Duration) -> Result<sled::Db, sled::Error> {
    let give_up = Instant::now() + wait;
    loop {
        match config.clone().open() {
            // sled 0.34 reports the lock as an I/O error with this text (config.rs); the
            // version is pinned, and a changed text only makes the error come sooner.
            Err(e)
                if e.to_string().contains("could not acquire lock") && Instant::now() < give_up =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

/// The schema version in `meta`, if any.
pub fn read_version(meta: &sled::Tree) -> Result<Option<u32>, SchemaError> {
    let Some(v) = meta.get(SCHEMA_KEY).map_err(SchemaError::Read)? else {
        return Ok(None);
    };
    if let Ok(bytes) = <[u8; 4]>::try_from(v.as_ref()) {
        return Ok(Some(u32::from_be_bytes(bytes)));
    }
    // Earlier hubs: ASCII digits ("1" to "3"). Up to three, so they never meet the 4-byte form.
    std::str::from_utf8(&v)
        .ok()
        .filter(|s| (1..=3).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse().ok())
        .map(Some)
        .ok_or(SchemaError::BadValue { len: v.len() })
}

/// Writes `version` into `meta` and flushes `db`: after a migration, or for a new store.
pub fn write_version(db: &sled::Db, meta: &sled::Tree, version: u32) -> Result<(), SchemaError> {
    meta.insert(SCHEMA_KEY, &version.to_be_bytes())
        .map_err(SchemaError::Write)?;
    db.flush().map_err(SchemaError::Write)?;
    Ok(())
}

/// The schema step of opening a store: a store without a version and without records gets
/// `current`; one without a version but with records is refused (it was not made by us, or
/// its meta was lost: guessing could misread every record). `records` counts them; it is
/// called only for a store without a version (sled counts by scanning).
pub fn open_version(
    db: &sled::Db,
    meta: &sled::Tree,
    current: u32,
    records: impl FnOnce() -> usize,
) -> Result<Versioned, SchemaError> {
    match read_version(meta)? {
        Some(v) => Ok(Versioned::Found(v)),
        None => match records() {
            0 => {
                write_version(db, meta, current)?;
                Ok(Versioned::Created)
            }
            records => Err(SchemaError::Missing { records }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &std::path::Path) -> sled::Db {
        open_waiting(&sled::Config::new().path(dir), Duration::from_secs(1)).unwrap()
    }

    #[test]
    fn a_new_store_is_marked_and_found_again_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = open(dir.path());
            let meta = db.open_tree("meta").unwrap();
            assert_eq!(
                open_version(&db, &meta, 7, || 0).unwrap(),
                Versioned::Created
            );
            assert_eq!(
                meta.get(SCHEMA_KEY).unwrap().unwrap().as_ref(),
                &7u32.to_be_bytes()
            );
        }
        // Reopened at once: the dropped handle's lock is waited out.
        let db = open(dir.path());
        let meta = db.open_tree("meta").unwrap();
        assert_eq!(
            open_version(&db, &meta, 8, || unreachable!(
                "a versioned store is not counted"
            ))
            .unwrap(),
            Versioned::Found(7)
        );
    }

    #[test]
    fn records_without_a_version_are_refused_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path());
        let meta = db.open_tree("meta").unwrap();
        let err = open_version(&db, &meta, 1, || 3).unwrap_err();
        assert!(matches!(err, SchemaError::Missing { records: 3 }), "{err}");
        assert!(meta.get(SCHEMA_KEY).unwrap().is_none());
    }

    #[test]
    fn ascii_versions_of_earlier_hubs_are_read_and_garbage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path());
        let meta = db.open_tree("meta").unwrap();
        meta.insert(SCHEMA_KEY, &b"3"[..]).unwrap();
        assert_eq!(read_version(&meta).unwrap(), Some(3));
        meta.insert(SCHEMA_KEY, &b"12"[..]).unwrap();
        assert_eq!(read_version(&meta).unwrap(), Some(12));
        for bad in [&b""[..], b"3a", b"\xff\xfe", b"123456"] {
            meta.insert(SCHEMA_KEY, bad).unwrap();
            let err = read_version(&meta).unwrap_err();
            assert!(
                matches!(err, SchemaError::BadValue { len } if len == bad.len()),
                "{bad:?}: {err}"
            );
        }
        write_version(&db, &meta, 4).unwrap();
        assert_eq!(read_version(&meta).unwrap(), Some(4));
    }

    #[test]
    fn a_store_held_by_a_live_handle_is_refused_after_the_wait() {
        let dir = tempfile::tempdir().unwrap();
        let _held = open(dir.path());
        let began = Instant::now();
        let err = open_waiting(
            &sled::Config::new().path(dir.path()),
            Duration::from_millis(200),
        )
        .unwrap_err();
        assert!(err.to_string().contains("could not acquire lock"), "{err}");
        assert!(began.elapsed() >= Duration::from_millis(200));
    }
}
