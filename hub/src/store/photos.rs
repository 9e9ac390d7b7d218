//! Photos people attach (a resolution, a patrol report) ([`Photos`]): the JPEG is a blob
//! ([`super::Blobs`]); tree `photos` keeps `m/{photo id}` → [`PhotoRecord`] (JSON). A hub
//! before blobs kept the JPEG itself under `j/{photo id}`; such photos are still served. The
//! encoding is private to this module.

use protocol::UtcMillis;
use serde::{Deserialize, Serialize};
use sled::Transactional;
use sled::transaction::ConflictableTransactionError;

use super::StoreError;
use super::blobs::{Batch, BlobId, BlobKind, Blobs, Deltas};

/// Who attached a photo to which case, when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhotoMeta {
    pub case: String,
    pub by: String,
    pub at: UtcMillis,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct PhotoRecord {
    #[serde(flatten)]
    meta: PhotoMeta,
    /// Absent in a record of a hub before blobs (its JPEG is under `j/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    blob: Option<BlobId>,
}

fn meta_key(id: &str) -> Vec<u8> {
    [b"m/", id.as_bytes()].concat()
}

fn legacy_key(id: &str) -> Vec<u8> {
    [b"j/", id.as_bytes()].concat()
}

/// Owner of the photos.
#[derive(Debug, Clone)]
pub struct Photos {
    tree: sled::Tree,
    blobs: Blobs,
}

impl Photos {
    pub(super) fn new(tree: sled::Tree, blobs: Blobs) -> Self {
        Self { tree, blobs }
    }

    /// Writes the JPEG (synced) and then its record. Durable with the store's next flush.
    pub fn put(&self, id: &str, jpeg: &[u8], meta: &PhotoMeta) -> Result<(), StoreError> {
        let mut files = self.blobs.begin();
        let blob = files.put(jpeg)?;
        files.sync()?;
        let rec = serde_json::to_vec(&PhotoRecord {
            meta: meta.clone(),
            blob: Some(blob),
        })
        .map_err(|e| StoreError::Corrupt {
            tree: "photos",
            key: id.to_owned(),
            why: format!("cannot encode: {e}"),
        })?;
        let deltas = (&self.tree, self.blobs.tree())
            .transaction(|(photos, blobs)| {
                let mut deltas = Deltas::default();
                photos.insert(meta_key(id), rec.as_slice())?;
                Batch::record(
                    blobs,
                    blob,
                    BlobKind::Photo,
                    jpeg.len() as u64,
                    meta.at,
                    &mut deltas,
                )?;
                Ok::<_, ConflictableTransactionError<()>>(deltas)
            })
            .map_err(super::tx_err("store photo"))?;
        drop(files);
        self.blobs.committed(&deltas);
        Ok(())
    }

    /// How many photos are recorded (a scan: for tests and admin tools, not hot paths).
    pub fn count(&self) -> usize {
        self.tree.scan_prefix(b"m/").count()
    }

    pub fn meta(&self, id: &str) -> Result<Option<PhotoMeta>, StoreError> {
        Ok(self.record(id)?.map(|r| r.meta))
    }

    /// The blob holding a photo's JPEG (none for a schema-1 photo).
    pub fn blob(&self, id: &str) -> Result<Option<BlobId>, StoreError> {
        Ok(self.record(id)?.and_then(|r| r.blob))
    }

    fn record(&self, id: &str) -> Result<Option<PhotoRecord>, StoreError> {
        self.tree
            .get(meta_key(id))
            .map_err(super::io("read photo"))?
            .map(|v| {
                serde_json::from_slice(&v).map_err(|e| StoreError::Corrupt {
                    tree: "photos",
                    key: id.to_owned(),
                    why: e.to_string(),
                })
            })
            .transpose()
    }

    /// The photo's JPEG; `None` when there is no such photo or it expired (see
    /// [`Photos::meta`]).
    pub fn jpeg(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(rec) = self.record(id)? else {
            return Ok(None);
        };
        match rec.blob {
            Some(b) => self.blobs.get(b),
            None => Ok(self
                .tree
                .get(legacy_key(id))
                .map_err(super::io("read photo"))?
                .map(|v| v.to_vec())),
        }
    }

    /// Forgets a photo (one stored for an action then refused). Its blob stays until it
    /// expires: another record may name the same bytes.
    pub fn remove(&self, id: &str) -> Result<(), StoreError> {
        let mut b = sled::Batch::default();
        b.remove(meta_key(id));
        b.remove(legacy_key(id));
        self.tree.apply_batch(b).map_err(super::io("remove photo"))
    }
}
