//! The registry of sites: online or not, when last heard, their last health. Pure: the
//! dispatcher feeds it status messages and the clock and persists what it returns.
//!
//! A site is online after an `online` status and offline after an `offline` one (its last will
//! or a clean stop), or when nothing at all was heard from it for `offline_after` (a box whose
//! broker connection hangs half-open never gets its will published).
//!
//! Its clock: boxes at intersections often run without NTP. Each live status (not a retained
//! copy the broker kept, which may be hours old) is stamped by the box just before it is sent,
//! so its time minus the hub's receipt time is the box's clock offset (plus the transit, well
//! under a second). Alerts cannot measure it: the box keeps them through an outage and sends
//! them late. But an alert stamped ahead of the hub's clock proves the box's clock is at least
//! that far ahead, so such an alert raises the estimate until the next status.

use std::collections::BTreeMap;

use protocol::UtcMillis;
use protocol::status::{AgentState, Health, Status};
use serde::{Deserialize, Serialize};

/// What the hub knows about one site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiteState {
    pub id: String,
    pub online: bool,
    /// Last time anything came from the site (status, alert, sighting, reply).
    pub last_seen: Option<UtcMillis>,
    /// Last status message's time as the agent stamped it.
    pub last_status: Option<UtcMillis>,
    /// When `online` last changed.
    pub since: Option<UtcMillis>,
    pub health: Option<Health>,
    /// The box's clock minus the hub's, ms, as last measured (see the module docs); `None`
    /// before the first live status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_offset_ms: Option<i64>,
}

/// A change of a site's online state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    None,
    CameOnline,
    WentOffline,
}

#[derive(Debug, Clone)]
pub struct Registry {
    sites: BTreeMap<String, SiteState>,
    offline_after_ms: i64,
}

impl Registry {
    pub fn new(offline_after_ms: i64) -> Self {
        Self {
            sites: BTreeMap::new(),
            offline_after_ms,
        }
    }

    /// Restores a persisted record (at start); the next sweep re-judges its silence.
    pub fn restore(&mut self, state: SiteState) {
        self.sites.insert(state.id.clone(), state);
    }

    fn entry(&mut self, site: &str) -> &mut SiteState {
        self.sites
            .entry(site.to_owned())
            .or_insert_with(|| SiteState {
                id: site.to_owned(),
                online: false,
                last_seen: None,
                last_status: None,
                since: None,
                health: None,
                clock_offset_ms: None,
            })
    }

    /// A status received at `now`; `live` unless it is a retained copy. Only a live `online`
    /// status measures the clock.
    pub fn on_status(&mut self, status: &Status, now: UtcMillis, live: bool) -> Change {
        let s = self.entry(&status.site);
        let online = status.state == AgentState::Online;
        s.last_status = Some(status.time);
        // An `offline` status is the last will, stamped when the box connected.
        if live && online {
            s.clock_offset_ms = Some(status.time.0.saturating_sub(now.0));
        }
        if online {
            s.last_seen = Some(now);
        }
        if let Some(h) = &status.health {
            s.health = Some(h.clone());
        }
        set_online(s, online, now)
    }

    /// An alert stamped `time` came at `now`: stamped ahead of the hub, it proves the box's
    /// clock at least that far ahead (a late alert proves nothing: it may have waited out an
    /// outage). Returns the site's offset estimate after it.
    pub fn on_alert_time(&mut self, site: &str, time: UtcMillis, now: UtcMillis) -> Option<i64> {
        let s = self.entry(site);
        let ahead = time.0.saturating_sub(now.0);
        if ahead > 0 && s.clock_offset_ms.is_none_or(|o| o < ahead) {
            s.clock_offset_ms = Some(ahead);
        }
        s.clock_offset_ms
    }

    /// Anything else from the site proves it is alive.
    pub fn on_activity(&mut self, site: &str, now: UtcMillis) -> Change {
        let s = self.entry(site);
        s.last_seen = Some(now);
        set_online(s, true, now)
    }

    /// Sites silent for longer than the limit go offline; returns them.
    pub fn sweep(&mut self, now: UtcMillis) -> Vec<String> {
        let limit = self.offline_after_ms;
        let mut gone = Vec::new();
        for s in self.sites.values_mut() {
            let silent = s.last_seen.is_none_or(|t| now.0 - t.0 > limit);
            if s.online && silent {
                set_online(s, false, now);
                gone.push(s.id.clone());
            }
        }
        gone
    }

    pub fn is_online(&self, site: &str) -> bool {
        self.sites.get(site).is_some_and(|s| s.online)
    }

    pub fn get(&self, site: &str) -> Option<&SiteState> {
        self.sites.get(site)
    }

    pub fn sites(&self) -> impl Iterator<Item = &SiteState> {
        self.sites.values()
    }
}

fn set_online(s: &mut SiteState, online: bool, now: UtcMillis) -> Change {
    if s.online == online && s.since.is_some() {
        return Change::None;
    }
    s.online = online;
    s.since = Some(now);
    if online {
        Change::CameOnline
    } else {
        Change::WentOffline
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(site: &str, state: AgentState, t: i64) -> Status {
        Status {
            schema: protocol::SCHEMA_VERSION,
            site: site.into(),
            state,
            time: UtcMillis(t),
            health: None,
        }
    }

    #[test]
    fn a_site_silent_for_180_s_goes_offline_and_a_status_brings_it_back() {
        let mut r = Registry::new(180_000);
        assert_eq!(
            r.on_status(&status("s1", AgentState::Online, 0), UtcMillis(0), true),
            Change::CameOnline
        );
        assert!(
            r.sweep(UtcMillis(180_000)).is_empty(),
            "exactly 180 s is not yet silent"
        );
        assert_eq!(r.sweep(UtcMillis(180_001)), ["s1"]);
        assert!(!r.is_online("s1"));
        assert!(r.sweep(UtcMillis(999_999)).is_empty(), "reported once");
        assert_eq!(
            r.on_status(
                &status("s1", AgentState::Online, 1),
                UtcMillis(200_000),
                true
            ),
            Change::CameOnline
        );
        assert!(r.is_online("s1"));
    }

    #[test]
    fn the_last_will_takes_a_site_offline_at_once() {
        let mut r = Registry::new(180_000);
        r.on_status(&status("s1", AgentState::Online, 0), UtcMillis(0), true);
        assert_eq!(
            r.on_status(&status("s1", AgentState::Offline, 5), UtcMillis(10), true),
            Change::WentOffline
        );
        assert!(!r.is_online("s1"));
    }

    #[test]
    fn heartbeats_keep_a_site_online_without_reporting_changes() {
        let mut r = Registry::new(180_000);
        r.on_status(&status("s1", AgentState::Online, 0), UtcMillis(0), true);
        for t in (10_000..1_000_000).step_by(10_000) {
            assert_eq!(
                r.on_status(&status("s1", AgentState::Online, t), UtcMillis(t), true),
                Change::None
            );
            assert!(r.sweep(UtcMillis(t + 5_000)).is_empty());
        }
    }

    #[test]
    fn live_statuses_measure_the_clock_and_an_alert_from_the_future_raises_it() {
        let mut r = Registry::new(180_000);
        let hour = 3_600_000;
        // A retained copy (hours old) measures nothing; the last will neither.
        r.on_status(
            &status("s1", AgentState::Online, 0),
            UtcMillis(5 * hour),
            false,
        );
        r.on_status(
            &status("s1", AgentState::Offline, 0),
            UtcMillis(5 * hour),
            true,
        );
        assert_eq!(r.get("s1").unwrap().clock_offset_ms, None);
        // A box an hour behind.
        r.on_status(
            &status("s1", AgentState::Online, 4 * hour),
            UtcMillis(5 * hour),
            true,
        );
        assert_eq!(r.get("s1").unwrap().clock_offset_ms, Some(-hour));
        // A late alert proves nothing; one from the future sets at least its lead.
        assert_eq!(
            r.on_alert_time("s1", UtcMillis(hour), UtcMillis(5 * hour)),
            Some(-hour)
        );
        assert_eq!(
            r.on_alert_time("s1", UtcMillis(5 * hour + 90_000), UtcMillis(5 * hour)),
            Some(90_000)
        );
        // The next live status measures afresh.
        r.on_status(
            &status("s1", AgentState::Online, 6 * hour + 200),
            UtcMillis(6 * hour),
            true,
        );
        assert_eq!(r.get("s1").unwrap().clock_offset_ms, Some(200));
    }
}
