//! The hub's own health as cases: while the data disk is below `[storage] min_free_mb`
//! ([`crate::disk`]) the hub defers every new alert, which nobody sees on the dashboard unless
//! it says so. So the dispatcher opens one case for the episode, of kind
//! [`AlertKind::HubHealth`] and source `{"hub": "disk"}`, at the grid's top cell (the hub
//! belongs to no site): the escalation policy pages whoever is on duty there, and admins see
//! it like every case. When space returns the hub acknowledges (if nobody has) and resolves
//! it with a note; a person verifies and closes it. No site may raise this kind
//! ([`crate::trust`]).
//!
//! Writing the case needs a few KB, which the threshold leaves; on a disk filled to the last
//! byte by something else the guard released its reserve before reporting the episode. A
//! write that fails anyway is logged, counted (`hub_health_case_failures_total`) and retried.
//!
//! A site's clock far off the hub's (`[registry] clock_tolerance_s`, measured from its live
//! statuses: [`crate::registry`]) is a case the same way, of kind [`AlertKind::SiteHealth`]
//! and source `{"hub": "clock"}`, filed under the site (so at its cell, to its people): its
//! alerts are being filed at their receipt time, and whoever looks after the box should set
//! its clock (NTP). The hub resolves it when a status shows the clock back within the
//! tolerance. One per site at a time.
//!
//! This module builds the alerts and the texts; the dispatcher ([`crate::dispatch`]) files
//! them.

use std::path::Path;

use protocol::alert::IdGenerator;
use protocol::{Alert, AlertKind, AlertPhase, AlertSource, Severity, UtcMillis};

use crate::trust::HUB_SITE;

/// The part of the hub a disk case is about (its source: `{"hub": "disk"}`).
pub const DISK_PART: &str = "disk";
/// The rule of a disk case (what the dashboard shows as its title).
pub const DISK_RULE: &str = "disk_low";

/// The part of a site-health case about the site's clock (its source: `{"hub": "clock"}`).
pub const CLOCK_PART: &str = "clock";
/// The rule of a clock case.
pub const CLOCK_RULE: &str = "clock_off";

/// The key a site's clock case is remembered by.
pub fn clock_case_part(site: &str) -> String {
    format!("{CLOCK_PART}/{site}")
}

/// A span in words: `45 s`, `12 min 5 s`, `3 h 20 min`, `2 d 4 h`.
pub fn span_words(ms: i64) -> String {
    let s = ms.unsigned_abs() / 1000;
    match s {
        0..60 => format!("{s} s"),
        60..3_600 => format!("{} min {} s", s / 60, s % 60),
        3_600..86_400 => format!("{} h {} min", s / 3_600, s % 3_600 / 60),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3_600),
    }
}

/// The alert of a site whose clock is `offset_ms` off the hub's (beyond `tolerance_ms`), seen
/// at `now`. Major: the site's alerts still arrive, filed at receipt time, but their own times
/// are wrong until someone sets the clock.
pub fn clock_off_alert(now: UtcMillis, site: &str, offset_ms: i64, tolerance_ms: i64) -> Alert {
    let salt = crate::random::bytes32();
    let salt = u64::from_le_bytes([
        salt[0], salt[1], salt[2], salt[3], salt[4], salt[5], salt[6], salt[7],
    ]);
    let id = IdGenerator::with_salt(salt).make(now.0, &[site, CLOCK_PART, CLOCK_RULE]);
    let way = if offset_ms > 0 { "ahead of" } else { "behind" };
    let detail = format!(
        "The clock of site {site} is {} {way} the hub's (tolerance {}). Its alerts are filed at \
         the time the hub receives them, with the box's own time kept beside it. Set the box's \
         clock (enable NTP, check its time zone and its RTC battery); the hub resolves this case \
         when the site's next status shows the clock within the tolerance.",
        span_words(offset_ms),
        span_words(tolerance_ms),
    );
    Alert {
        schema: protocol::SCHEMA_VERSION,
        incident: id.clone(),
        id,
        phase: AlertPhase::Start,
        site: site.to_owned(),
        source: AlertSource::Hub(CLOCK_PART.to_owned()),
        kind: AlertKind::SiteHealth,
        severity: Severity::Major,
        rule: CLOCK_RULE.to_owned(),
        time: now,
        started_at: now,
        ended_at: None,
        location: None,
        track: None,
        label: None,
        score: None,
        direction: None,
        count: None,
        detections: Vec::new(),
        tag: None,
        model: None,
        detail: Some(detail),
        snapshot: None,
    }
}

/// The hub's resolution note when the site's clock is back within the tolerance.
pub fn clock_back_note(offset_ms: i64) -> String {
    format!(
        "Resolved by the hub: the site's clock is now {} off the hub's, within the tolerance; \
         its alerts are filed at their own times again.",
        span_words(offset_ms)
    )
}

/// `16.0 MiB`.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1u32 << 20))
}

/// The alert of a disk-low episode seen at `now`: `free` bytes left on the filesystem of
/// `dir`, below `min_free`. Critical: every site's alerts are waiting until someone acts.
pub fn disk_low_alert(now: UtcMillis, free: u64, min_free: u64, dir: &Path) -> Alert {
    // Random salt: two episodes in one millisecond (or two hubs) never share an id.
    let salt = crate::random::bytes32();
    let salt = u64::from_le_bytes([
        salt[0], salt[1], salt[2], salt[3], salt[4], salt[5], salt[6], salt[7],
    ]);
    let id = IdGenerator::with_salt(salt).make(now.0, &[HUB_SITE, DISK_PART, DISK_RULE]);
    let resume = min_free.saturating_add(min_free / 20);
    // Bounded like every alert's detail (a path may be long).
    let dir: String = dir.display().to_string().chars().take(512).collect();
    let detail = format!(
        "The hub's data disk is nearly full: {} free on the filesystem of {dir}, below the \
         threshold of {} ([storage] min_free_mb). New alerts are not acknowledged: the sites \
         keep them and send them again. The dashboard, timers, notifications and actions go \
         on. Free space on that disk or enlarge it; the hub takes alerts again by itself at {} \
         free and then resolves this case.",
        mib(free),
        mib(min_free),
        mib(resume),
    );
    Alert {
        schema: protocol::SCHEMA_VERSION,
        incident: id.clone(),
        id,
        phase: AlertPhase::Start,
        site: HUB_SITE.to_owned(),
        source: AlertSource::Hub(DISK_PART.to_owned()),
        kind: AlertKind::HubHealth,
        severity: Severity::Critical,
        rule: DISK_RULE.to_owned(),
        time: now,
        started_at: now,
        ended_at: None,
        location: None,
        track: None,
        label: None,
        score: None,
        direction: None,
        count: None,
        detections: Vec::new(),
        tag: None,
        model: None,
        detail: Some(detail),
        snapshot: None,
    }
}

/// The hub's resolution note when space is back.
pub fn disk_back_note(free: u64, min_free: u64) -> String {
    format!(
        "Resolved by the hub: disk space is back ({} free, threshold {}); new alerts are \
         acknowledged again and the sites are sending the ones they kept. Check what filled \
         the disk, then close this case.",
        mib(free),
        mib(min_free),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_disk_alert_is_a_valid_hub_health_alert_that_says_what_to_do() {
        let a = disk_low_alert(
            UtcMillis(1_700_000_000_000),
            16 << 20,
            24 << 20,
            Path::new("/var/lib/hub"),
        );
        a.validate().unwrap();
        crate::trust::check_text(&a).unwrap();
        assert_eq!(a.site, HUB_SITE);
        assert_eq!(a.kind, AlertKind::HubHealth);
        let detail = a.detail.unwrap();
        for part in [
            "16.0 MiB free",
            "/var/lib/hub",
            "threshold of 24.0 MiB",
            "25.2 MiB",
        ] {
            assert!(detail.contains(part), "{part}: {detail}");
        }
        let b = disk_low_alert(UtcMillis(1_700_000_000_000), 0, 1, Path::new("/"));
        assert_ne!(a.id, b.id, "two episodes, two ids");
    }

    #[test]
    fn the_clock_alert_is_a_valid_site_health_alert_of_that_site() {
        let a = clock_off_alert(
            UtcMillis(1_800_000_000_000),
            "wd-demo-001",
            -3_600_000,
            60_000,
        );
        a.validate().unwrap();
        assert_eq!(
            (a.kind, a.site.as_str()),
            (AlertKind::SiteHealth, "wd-demo-001")
        );
        let d = a.detail.unwrap();
        assert!(d.contains("1 h 0 min behind"), "{d}");
        assert_eq!(span_words(90_000), "1 min 30 s");
        assert_eq!(span_words(-2 * 86_400_000 - 3_600_000), "2 d 1 h");
    }
}
