//! Collapses repeat reads into sightings. Pure: time is passed in.
//!
//! A reader hears a tag in range many times a second. Reads of the same (reader, tag) whose
//! receive time falls within `window_ms` of the *first* read of the open sighting are merged;
//! the sighting closes, and is emitted, when the window has passed ([`Deduplicator::tick`]) or
//! when a later read of the pair opens the next one ([`Deduplicator::push`]).
//!
//! Why measured from the first read rather than the last: a bike parked next to a reader would
//! otherwise extend one sighting for hours, and neither trajectory search nor the theft rule
//! could see it until it left. Fixed windows bound the latency of every sighting to `window_ms`
//! and turn a lingering tag into one sighting per window (the rules' cooldowns keep that quiet).

use std::collections::BTreeMap;

use super::read::{TagKind, TagRead};
use crate::track::Timestamp;

/// Repeat reads of one tag at one reader, collapsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sighting {
    /// Reader id.
    pub reader: String,
    /// Tag id, upper-case hex.
    pub tag: String,
    /// Kind as reported by the first read.
    pub kind: TagKind,
    /// Receive time of the first read.
    pub first_ms: Timestamp,
    /// Receive time of the last read.
    pub last_ms: Timestamp,
    /// Number of reads merged.
    pub reads: u32,
    /// Strongest RSSI among them, dBm.
    pub best_rssi: i16,
}

impl Sighting {
    fn open(read: &TagRead) -> Self {
        Self {
            reader: read.reader.clone(),
            tag: read.tag.clone(),
            kind: read.kind,
            first_ms: read.received_ms,
            last_ms: read.received_ms,
            reads: 1,
            best_rssi: read.rssi,
        }
    }

    fn merge(&mut self, read: &TagRead) {
        self.first_ms = self.first_ms.min(read.received_ms);
        self.last_ms = self.last_ms.max(read.received_ms);
        self.reads = self.reads.saturating_add(1);
        self.best_rssi = self.best_rssi.max(read.rssi);
    }
}

/// Owner of the open sightings, keyed by (reader, tag).
#[derive(Debug)]
pub struct Deduplicator {
    window_ms: Timestamp,
    open: BTreeMap<(String, String), Sighting>,
}

impl Deduplicator {
    /// A deduplicator merging reads within `window_ms` (at least 1) of a sighting's first read.
    pub fn new(window_ms: Timestamp) -> Self {
        Self {
            window_ms: window_ms.max(1),
            open: BTreeMap::new(),
        }
    }

    /// Adds a read. Returns the previous sighting of the same (reader, tag) if this read falls
    /// after its window, so it closed.
    pub fn push(&mut self, read: &TagRead) -> Option<Sighting> {
        let key = (read.reader.clone(), read.tag.clone());
        match self.open.get_mut(&key) {
            Some(s) if read.received_ms < s.first_ms + self.window_ms => {
                s.merge(read);
                None
            }
            Some(s) => Some(std::mem::replace(s, Sighting::open(read))),
            None => {
                self.open.insert(key, Sighting::open(read));
                None
            }
        }
    }

    /// Closes and returns every sighting whose window has passed by `now_ms`, oldest first
    /// (ties by reader, then tag), so output is deterministic.
    pub fn tick(&mut self, now_ms: Timestamp) -> Vec<Sighting> {
        let window = self.window_ms;
        let mut due: Vec<Sighting> = Vec::new();
        self.open.retain(|_, s| {
            if now_ms >= s.first_ms + window {
                due.push(s.clone());
                false
            } else {
                true
            }
        });
        due.sort_by_key(|s| s.first_ms);
        due
    }

    /// Closes and returns every open sighting (at shutdown or the end of a replay).
    pub fn flush(&mut self) -> Vec<Sighting> {
        let mut all: Vec<Sighting> = std::mem::take(&mut self.open).into_values().collect();
        all.sort_by_key(|s| s.first_ms);
        all
    }

    /// Number of open sightings.
    pub fn open_len(&self) -> usize {
        self.open.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(reader: &str, tag: &str, at: Timestamp, rssi: i16) -> TagRead {
        TagRead {
            reader: reader.into(),
            tag: tag.into(),
            kind: TagKind::Bike,
            rssi,
            received_ms: at,
            reader_time_ms: None,
        }
    }

    #[test]
    fn repeats_within_the_window_collapse_into_one_sighting() {
        let mut d = Deduplicator::new(1000);
        for (at, rssi) in [(0, -70), (200, -55), (900, -60)] {
            assert_eq!(d.push(&read("r1", "AA", at, rssi)), None);
        }
        assert!(d.tick(999).is_empty());
        let out = d.tick(1000);
        assert_eq!(
            out,
            vec![Sighting {
                reader: "r1".into(),
                tag: "AA".into(),
                kind: TagKind::Bike,
                first_ms: 0,
                last_ms: 900,
                reads: 3,
                best_rssi: -55,
            }]
        );
        assert_eq!(d.open_len(), 0);
    }

    #[test]
    fn a_read_after_the_window_closes_the_sighting_and_opens_the_next() {
        let mut d = Deduplicator::new(1000);
        d.push(&read("r1", "AA", 0, -70));
        d.push(&read("r1", "AA", 500, -70));
        let closed = d.push(&read("r1", "AA", 1000, -70)).unwrap();
        assert_eq!((closed.first_ms, closed.last_ms, closed.reads), (0, 500, 2));
        let next = d.flush();
        assert_eq!(next.len(), 1);
        assert_eq!((next[0].first_ms, next[0].reads), (1000, 1));
    }

    #[test]
    fn different_readers_and_tags_are_separate_sightings() {
        let mut d = Deduplicator::new(1000);
        d.push(&read("r1", "AA", 10, -70));
        d.push(&read("r2", "AA", 0, -70));
        d.push(&read("r1", "BB", 5, -70));
        let out = d.tick(2000);
        let keys: Vec<_> = out
            .iter()
            .map(|s| (s.reader.as_str(), s.tag.as_str()))
            .collect();
        assert_eq!(keys, [("r2", "AA"), ("r1", "BB"), ("r1", "AA")]);
    }
}
