//! [`Held`]: alerts whose append to the outbox failed (disk full, I/O error), kept in memory,
//! bounded, in arrival order, until the disk takes them again.
//!
//! The uplink owns one next to its [`super::Outbox`]: it appends the held alerts again, oldest
//! first, before any newer alert, so the outbox's order stays the order the alerts were raised.
//! The bounds (`held_max_bytes`, `held_max_alerts` of [`super::OutboxConfig`]) use the
//! outbox's full-policy: the lowest severity goes first, oldest first within a severity, never
//! an alert more severe than the new one; if that cannot make room the new alert is dropped.
//! Every drop is counted per severity and logged at ERROR: it is lost data.

use std::collections::VecDeque;

use protocol::{Alert, Severity};
use serde::Serialize;
use tracing::error;

use super::{OutboxConfig, SeverityCounts};

/// The held queue's state for the status heartbeat and `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HeldStats {
    /// Alerts held in memory now.
    pub len: usize,
    /// Their JSON bytes.
    pub bytes: u64,
    /// Alerts the held queue's full-policy dropped, since start.
    pub dropped: SeverityCounts,
}

/// One held alert and its JSON size (what the byte cap counts).
#[derive(Debug)]
struct Entry {
    alert: Alert,
    size: u64,
}

/// The bounded in-memory queue of alerts waiting for the disk. See the module doc.
#[derive(Debug)]
pub struct Held {
    max_bytes: u64,
    max_alerts: usize,
    queue: VecDeque<Entry>,
    bytes: u64,
    dropped: SeverityCounts,
}

impl Held {
    /// An empty queue with the bounds of `config` (validated by [`super::Outbox::open`]).
    pub fn new(config: &OutboxConfig) -> Self {
        Self {
            max_bytes: config.held_max_bytes,
            max_alerts: config.held_max_alerts.max(1),
            queue: VecDeque::new(),
            bytes: 0,
            dropped: SeverityCounts::default(),
        }
    }

    /// Holds `alert` behind every alert held already, applying the full-policy if the queue is
    /// full. Returns the alerts dropped for it (or `alert` itself), already counted and logged.
    pub fn push(&mut self, alert: Alert) -> Vec<Alert> {
        // The JSON is what the disk would have taken; an alert that cannot even be encoded is
        // counted at the size of its id so it still takes a slot.
        let size = serde_json::to_vec(&alert).map_or(alert.id.len() as u64, |j| j.len() as u64);
        let need_bytes = (self.bytes + size).saturating_sub(self.max_bytes);
        let need_count = (self.queue.len() + 1).saturating_sub(self.max_alerts);
        if need_bytes == 0 && need_count == 0 {
            self.bytes += size;
            self.queue.push_back(Entry { alert, size });
            return Vec::new();
        }
        // Plan first: nothing is dropped unless the new alert then fits.
        let mut victims = Vec::new();
        let (mut freed, mut count) = (0u64, 0usize);
        'plan: for sev in [
            Severity::Info,
            Severity::Minor,
            Severity::Major,
            Severity::Critical,
        ] {
            if sev > alert.severity {
                break;
            }
            for (i, e) in self.queue.iter().enumerate() {
                if freed >= need_bytes && count >= need_count {
                    break 'plan;
                }
                if e.alert.severity == sev {
                    victims.push(i);
                    freed += e.size;
                    count += 1;
                }
            }
        }
        if freed < need_bytes || count < need_count {
            self.count_drop(&alert, size, "new alert dropped");
            return vec![alert];
        }
        victims.sort_unstable();
        let mut out = Vec::with_capacity(victims.len());
        for i in victims.into_iter().rev() {
            if let Some(e) = self.queue.remove(i) {
                self.bytes = self.bytes.saturating_sub(e.size);
                self.count_drop(&e.alert, e.size, "older alert dropped for a new one");
                out.push(e.alert);
            }
        }
        out.reverse();
        self.bytes += size;
        self.queue.push_back(Entry { alert, size });
        out
    }

    fn count_drop(&mut self, alert: &Alert, size: u64, what: &'static str) {
        self.dropped.add(alert.severity, 1);
        error!(
            message = "Alerts held in memory (outbox append failing) are at their cap; alert lost.",
            what,
            alert = %alert.id,
            severity = ?alert.severity,
            size,
            held = self.queue.len(),
            held_bytes = self.bytes,
            max_alerts = self.max_alerts,
            max_bytes = self.max_bytes,
        );
    }

    /// The oldest held alert.
    pub fn front(&self) -> Option<&Alert> {
        self.queue.front().map(|e| &e.alert)
    }

    /// Removes the oldest held alert (it reached the disk, or the outbox's policy refused it).
    pub fn pop_front(&mut self) -> Option<Alert> {
        let e = self.queue.pop_front()?;
        self.bytes = self.bytes.saturating_sub(e.size);
        Some(e.alert)
    }

    /// Alerts held.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Their JSON bytes.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Length, bytes and drops since start.
    pub fn stats(&self) -> HeldStats {
        HeldStats {
            len: self.queue.len(),
            bytes: self.bytes,
            dropped: self.dropped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(i: u64, severity: Severity) -> Alert {
        let mut a = testkit::emitted::make_alert("held", testkit::emitted::BASE_MS, i, 100);
        a.severity = severity;
        a
    }

    fn held(max_alerts: usize, max_bytes: u64) -> Held {
        Held::new(&OutboxConfig {
            held_max_alerts: max_alerts,
            held_max_bytes: max_bytes,
            ..OutboxConfig::default()
        })
    }

    fn ids(h: &Held) -> Vec<String> {
        h.queue.iter().map(|e| e.alert.id.clone()).collect()
    }

    #[test]
    fn keeps_arrival_order_and_counts_bytes() {
        let mut h = held(10, 1 << 20);
        let a: Vec<Alert> = (0..3).map(|i| alert(i, Severity::Minor)).collect();
        for x in &a {
            assert!(h.push(x.clone()).is_empty());
        }
        let size: u64 = a
            .iter()
            .map(|x| serde_json::to_vec(x).unwrap().len() as u64)
            .sum();
        assert_eq!((h.len(), h.bytes()), (3, size));
        assert_eq!(h.pop_front().unwrap(), a[0]);
        assert_eq!(h.front().unwrap(), &a[1]);
        assert_eq!(h.pop_front().unwrap(), a[1]);
        assert_eq!(h.pop_front().unwrap(), a[2]);
        assert!(h.is_empty());
        assert_eq!(h.bytes(), 0);
    }

    #[test]
    fn count_cap_drops_lowest_severity_oldest_first() {
        let mut h = held(3, 1 << 20);
        let a0 = alert(0, Severity::Major);
        let a1 = alert(1, Severity::Info);
        let a2 = alert(2, Severity::Info);
        for x in [&a0, &a1, &a2] {
            h.push(x.clone());
        }
        // A minor one makes room by dropping the oldest info.
        let a3 = alert(3, Severity::Minor);
        assert_eq!(h.push(a3.clone()), vec![a1.clone()]);
        assert_eq!(ids(&h), vec![a0.id.clone(), a2.id.clone(), a3.id.clone()]);
        // Another info one: the remaining info (older) goes, never the minor or major.
        let a4 = alert(4, Severity::Info);
        assert_eq!(h.push(a4.clone()), vec![a2.clone()]);
        assert_eq!(ids(&h), vec![a0.id.clone(), a3.id.clone(), a4.id.clone()]);
        assert_eq!(h.stats().dropped.info, 2);
    }

    #[test]
    fn never_drops_a_more_severe_alert_for_a_less_severe_one() {
        let mut h = held(2, 1 << 20);
        let a0 = alert(0, Severity::Critical);
        let a1 = alert(1, Severity::Major);
        h.push(a0.clone());
        h.push(a1.clone());
        let a2 = alert(2, Severity::Minor);
        assert_eq!(
            h.push(a2.clone()),
            vec![a2],
            "the new, least severe one is dropped"
        );
        assert_eq!(ids(&h), vec![a0.id.clone(), a1.id.clone()]);
        assert_eq!(h.stats().dropped.minor, 1);
        assert_eq!(h.stats().dropped.total(), 1);
    }

    #[test]
    fn byte_cap_drops_enough_and_only_when_the_new_alert_then_fits() {
        let one = serde_json::to_vec(&alert(0, Severity::Info)).unwrap().len() as u64;
        // Room for two alerts by bytes, many by count.
        let mut h = held(100, 2 * one + one / 2);
        let a0 = alert(0, Severity::Info);
        let a1 = alert(1, Severity::Major);
        h.push(a0.clone());
        h.push(a1.clone());
        let a2 = alert(2, Severity::Major);
        assert_eq!(h.push(a2.clone()), vec![a0]);
        assert_eq!(ids(&h), vec![a1.id.clone(), a2.id.clone()]);
        assert!(h.bytes() <= 2 * one + one / 2);
        // An info one cannot evict majors: dropped, nothing else touched.
        let a3 = alert(3, Severity::Info);
        assert_eq!(h.push(a3.clone()), vec![a3]);
        assert_eq!(ids(&h), vec![a1.id.clone(), a2.id.clone()]);
        assert_eq!(h.stats().dropped.info, 2);
    }
}
