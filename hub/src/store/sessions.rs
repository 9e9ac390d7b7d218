//! Dashboard sessions and app tokens ([`SessionStore`]), in the `sessions` tree:
//! `{SHA-256 of the token}` (32 bytes) → the session's JSON.
//!
//! The token itself is never stored: who reads the store (a backup, a stolen disk) can list
//! the sessions but not act as one. A session's public id ([`SessionKey::to_hex`], what admins
//! list and revoke) is the same digest in hex.

use protocol::UtcMillis;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{StoreError, io};

/// How a session's token travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    Cookie,
    Bearer,
}

/// A stored session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    pub login: String,
    pub via: Via,
    pub csrf: String,
    pub created: UtcMillis,
    pub expires: UtcMillis,
    #[serde(default)]
    pub label: String,
}

/// A session's key: the SHA-256 of its token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionKey([u8; 32]);

impl SessionKey {
    pub fn of_token(token: &str) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }

    /// From a public id: exactly 64 lower-case hex digits, else `None`.
    pub fn from_hex(id: &str) -> Option<Self> {
        if id.len() != 64 || !id.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(id.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(Self(out))
    }

    pub fn to_hex(&self) -> String {
        self.0.iter().map(|x| format!("{x:02x}")).collect()
    }

    fn from_stored(k: &[u8]) -> Option<Self> {
        k.try_into().ok().map(Self)
    }
}

/// What an expiry pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionSweep {
    pub sessions: u64,
    pub bytes: u64,
    pub more: bool,
}

/// Owner of the `sessions` tree.
#[derive(Debug, Clone)]
pub struct SessionStore {
    tree: sled::Tree,
}

fn corrupt(key: &SessionKey, why: impl ToString) -> StoreError {
    StoreError::Corrupt {
        tree: "sessions",
        key: key.to_hex(),
        why: why.to_string(),
    }
}

impl SessionStore {
    pub(super) fn new(tree: sled::Tree) -> Self {
        Self { tree }
    }

    pub fn put(&self, key: &SessionKey, s: &Session) -> Result<(), StoreError> {
        let v = serde_json::to_vec(s).map_err(|e| corrupt(key, e))?;
        self.tree.insert(key.0, v).map_err(io("store session"))?;
        Ok(())
    }

    /// The session stored under `key`; an unreadable record is an error (it opens nothing).
    pub fn get(&self, key: &SessionKey) -> Result<Option<Session>, StoreError> {
        self.tree
            .get(key.0)
            .map_err(io("read session"))?
            .map(|v| serde_json::from_slice(&v).map_err(|e| corrupt(key, e)))
            .transpose()
    }

    /// Removes the session; returns it if there was a readable one.
    pub fn remove(&self, key: &SessionKey) -> Result<Option<Session>, StoreError> {
        Ok(self
            .tree
            .remove(key.0)
            .map_err(io("remove session"))?
            .and_then(|v| serde_json::from_slice(&v).ok()))
    }

    /// Every readable session (an unreadable one is logged and left out).
    pub fn all(&self) -> Result<Vec<(SessionKey, Session)>, StoreError> {
        let mut out = Vec::new();
        for kv in self.tree.iter() {
            let (k, v) = kv.map_err(io("scan sessions"))?;
            let Some(key) = SessionKey::from_stored(&k) else {
                tracing::error!(len = k.len(), "session key of the wrong length skipped");
                continue;
            };
            match serde_json::from_slice(&v) {
                Ok(s) => out.push((key, s)),
                Err(e) => {
                    tracing::error!(session = %key.to_hex(), error = %e, "unreadable session skipped")
                }
            }
        }
        Ok(out)
    }

    /// Removes up to `max` sessions that expired before `cutoff`, and every unreadable record
    /// met on the way (it can open nothing). The tree is walked whole: it holds the live
    /// logins and tokens only (this sweep keeps it so), a few per user.
    pub fn expire_before(&self, cutoff: UtcMillis, max: usize) -> Result<SessionSweep, StoreError> {
        let mut swept = SessionSweep::default();
        for kv in self.tree.iter() {
            let (k, v) = kv.map_err(io("scan sessions"))?;
            let expired =
                serde_json::from_slice::<Session>(&v).map_or(true, |s| s.expires < cutoff);
            if !expired {
                continue;
            }
            if swept.sessions as usize == max {
                swept.more = true;
                break;
            }
            if let Some(old) = self.tree.remove(&k).map_err(io("remove session"))? {
                swept.sessions += 1;
                swept.bytes += (k.len() + old.len()) as u64;
            }
        }
        Ok(swept)
    }

    /// Bytes of keys and records, summed over the tree (a few hundred small records).
    pub fn bytes(&self) -> Result<u64, StoreError> {
        let mut n = 0u64;
        for kv in self.tree.iter() {
            let (k, v) = kv.map_err(io("scan sessions"))?;
            n += (k.len() + v.len()) as u64;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(login: &str, expires: i64) -> Session {
        Session {
            login: login.into(),
            via: Via::Cookie,
            csrf: "c".into(),
            created: UtcMillis(0),
            expires: UtcMillis(expires),
            label: String::new(),
        }
    }

    fn store() -> (tempfile::TempDir, SessionStore) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new()
            .temporary(true)
            .path(dir.path())
            .open()
            .unwrap();
        (dir, SessionStore::new(db.open_tree("sessions").unwrap()))
    }

    #[test]
    fn a_public_id_round_trips_and_anything_else_is_no_id() {
        let k = SessionKey::of_token("tok");
        assert_eq!(SessionKey::from_hex(&k.to_hex()), Some(k));
        for bad in [
            "",
            "AB",
            &k.to_hex().to_uppercase(),
            &format!("{}0", k.to_hex()),
        ] {
            assert_eq!(SessionKey::from_hex(bad), None, "{bad:?}");
        }
        assert_ne!(SessionKey::of_token("tok"), SessionKey::of_token("tok2"));
    }

    #[test]
    fn sweep_removes_expired_and_unreadable_records_within_max() {
        let (_d, s) = store();
        for (i, exp) in [10, 20, 30, 1_000].into_iter().enumerate() {
            s.put(&SessionKey::of_token(&format!("t{i}")), &session("u", exp))
                .unwrap();
        }
        let bad = SessionKey::of_token("garbage");
        s.tree.insert(bad.0, &b"not json"[..]).unwrap();
        assert!(
            s.get(&bad).is_err(),
            "an unreadable record is an error, not a session"
        );
        assert_eq!(
            s.all().unwrap().len(),
            4,
            "the unreadable record is left out"
        );

        let first = s.expire_before(UtcMillis(500), 2).unwrap();
        assert_eq!((first.sessions, first.more), (2, true));
        let rest = s.expire_before(UtcMillis(500), 10).unwrap();
        assert_eq!((rest.sessions, rest.more), (2, false));
        let left = s.all().unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].1.expires, UtcMillis(1_000));
        assert_eq!(s.get(&bad).unwrap().map(|x| x.login), None);
        assert!(s.bytes().unwrap() > 0);
    }
}
