//! Opening the agent's sled databases (the outbox, the command store): sled's own config, a
//! lock a dropped handle still holds waited out ([`infra::sled_store::open_waiting`]).

use std::path::Path;
use std::time::Duration;

/// How long a locked store is waited for.
pub const LOCK_WAIT: Duration = Duration::from_secs(1);

/// Opens the sled database at `path`, waiting out a lock a dropped handle still holds.
pub fn open_waiting(path: &Path) -> Result<sled::Db, sled::Error> {
    infra::sled_store::open_waiting(&sled::Config::new().path(path), LOCK_WAIT)
}
