//! Sightings batched for the hub's trajectory search (`se/v1/site/{site}/sighting`). Pure.
//!
//! A batch is sent when it holds `max_len` sightings or when its oldest sighting has waited
//! `max_age_ms`, whichever comes first: full batches keep the uplink cheap on a busy road, the
//! age bound keeps trajectories fresh on a quiet one. The batcher holds at most `max_len`
//! sightings; what happens to a batch afterwards (outbox, drop policy) is the uplink's concern.

use super::dedup::Sighting;
use crate::track::Timestamp;

/// Collects sightings into batches.
#[derive(Debug)]
pub struct SightingBatcher {
    max_len: usize,
    max_age_ms: Timestamp,
    batch: Vec<Sighting>,
    /// When the oldest sighting of the current batch was added.
    opened_ms: Option<Timestamp>,
}

impl SightingBatcher {
    /// A batcher of at most `max_len` (at least 1) sightings, each waiting at most `max_age_ms`.
    pub fn new(max_len: usize, max_age_ms: Timestamp) -> Self {
        let max_len = max_len.max(1);
        Self {
            max_len,
            max_age_ms,
            batch: Vec::with_capacity(max_len),
            opened_ms: None,
        }
    }

    /// Adds a sighting at `now_ms`; returns the batch if it is now full.
    pub fn push(&mut self, sighting: Sighting, now_ms: Timestamp) -> Option<Vec<Sighting>> {
        self.opened_ms.get_or_insert(now_ms);
        self.batch.push(sighting);
        (self.batch.len() >= self.max_len).then(|| self.take())
    }

    /// Returns the batch if its oldest sighting has waited `max_age_ms` by `now_ms`.
    pub fn tick(&mut self, now_ms: Timestamp) -> Option<Vec<Sighting>> {
        let opened = self.opened_ms?;
        (now_ms >= opened + self.max_age_ms).then(|| self.take())
    }

    /// Returns whatever is batched (at shutdown), if anything.
    pub fn flush(&mut self) -> Option<Vec<Sighting>> {
        (!self.batch.is_empty()).then(|| self.take())
    }

    fn take(&mut self) -> Vec<Sighting> {
        self.opened_ms = None;
        std::mem::replace(&mut self.batch, Vec::with_capacity(self.max_len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tags::read::TagKind;

    fn s(at: Timestamp) -> Sighting {
        Sighting {
            reader: "r1".into(),
            tag: "AA".into(),
            kind: TagKind::Bike,
            first_ms: at,
            last_ms: at,
            reads: 1,
            best_rssi: -50,
        }
    }

    #[test]
    fn a_full_batch_is_returned_at_once() {
        let mut b = SightingBatcher::new(2, 10_000);
        assert_eq!(b.push(s(0), 0), None);
        assert_eq!(b.push(s(1), 1), Some(vec![s(0), s(1)]));
        assert_eq!(b.flush(), None);
    }

    #[test]
    fn a_partial_batch_is_returned_when_its_oldest_sighting_is_old_enough() {
        let mut b = SightingBatcher::new(100, 5_000);
        assert_eq!(b.tick(1_000_000), None);
        b.push(s(0), 1_000);
        b.push(s(1), 4_000);
        assert_eq!(b.tick(5_999), None);
        assert_eq!(b.tick(6_000), Some(vec![s(0), s(1)]));
        assert_eq!(b.tick(100_000), None);
    }
}
