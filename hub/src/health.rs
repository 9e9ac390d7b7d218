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
//! This module builds the alert and the texts; the dispatcher ([`crate::dispatch`]) files
//! them.

use std::path::Path;

use protocol::alert::IdGenerator;
use protocol::{Alert, AlertKind, AlertPhase, AlertSource, Severity, UtcMillis};

use crate::trust::HUB_SITE;

/// The part of the hub a disk case is about (its source: `{"hub": "disk"}`).
pub const DISK_PART: &str = "disk";
/// The rule of a disk case (what the dashboard shows as its title).
pub const DISK_RULE: &str = "disk_low";

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
}
