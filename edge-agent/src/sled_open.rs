//! Opening the agent's sled databases (the outbox, the command store).
//!
//! sled holds an exclusive file lock until every handle is gone, and its background threads
//! let go of the file a moment after the last one is dropped, so a locked store is tried again
//! for up to [`LOCK_WAIT`] (a store reopened at once: after a disk failure, a restart in the
//! same process); another live process holding it still gets the error, only later.

use std::path::Path;
use std::time::{Duration, Instant};

/// How long a locked store is waited for.
pub const LOCK_WAIT: Duration = Duration::from_secs(1);

/// Opens the sled database at `path`, waiting out a lock a dropped handle still holds.
pub fn open_waiting(path: &Path) -> Result<sled::Db, sled::Error> {
    let give_up = Instant::now() + LOCK_WAIT;
    loop {
        match sled::Config::new().path(path).open() {
            // sled 0.34 reports the lock as an `Other` I/O error with this text; the version
            // is pinned, and a changed text only makes the error come sooner.
            Err(e)
                if e.to_string().contains("could not acquire lock") && Instant::now() < give_up =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            r => return r,
        }
    }
}
