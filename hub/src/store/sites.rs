//! The site registry's records ([`Sites`]): tree `sites`, site id → [`SiteState`] as JSON (the
//! encoding is private to this module). Written by the dispatcher when a site's state
//! changes; read at start to restore the registry.

use super::StoreError;
use crate::registry::SiteState;

/// Owner of the registry's records.
#[derive(Debug, Clone)]
pub struct Sites {
    tree: sled::Tree,
}

impl Sites {
    pub(super) fn new(tree: sled::Tree) -> Self {
        Self { tree }
    }

    /// Every stored site; an unreadable record is logged and left out (the site is learnt
    /// again from its next message).
    pub fn all(&self) -> Result<Vec<SiteState>, StoreError> {
        let mut out = Vec::new();
        for kv in self.tree.iter() {
            let (k, v) = kv.map_err(super::io("scan sites"))?;
            match serde_json::from_slice::<SiteState>(&v) {
                Ok(s) => out.push(s),
                Err(e) => {
                    tracing::error!(site = %String::from_utf8_lossy(&k), error = %e, "unreadable site record skipped")
                }
            }
        }
        Ok(out)
    }

    pub fn put(&self, s: &SiteState) -> Result<(), StoreError> {
        let v = serde_json::to_vec(s).map_err(|e| StoreError::Corrupt {
            tree: "sites",
            key: s.id.clone(),
            why: e.to_string(),
        })?;
        self.tree
            .insert(s.id.as_bytes(), v)
            .map_err(super::io("save site"))?;
        Ok(())
    }
}
