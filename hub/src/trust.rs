//! What a site may file ([`SitePolicy`]): one roadside box may be in an attacker's hands, so
//! the hub believes a site only about its own cameras and readers, near where it stands.
//!
//! - **Who speaks**: on `site/{id}/alert` only a registered site (`[sites.<id>]`: a device
//!   credential alone does not say where the site is), only camera and reader sources, never
//!   a person or a patrol report (those come from logged-in people through the API) nor a
//!   hub-health alert (the hub raises those itself, [`crate::health`]), and only
//!   for the site of the topic. Refused as [`RejectCode::NotAuthorized`]; a site registered
//!   later can have its quarantined alerts re-ingested.
//! - **Free text**: `rule`, `label`, `detail` (and the few other free-text fields) are
//!   bounded in length and may not hold control or invisible formatting characters. Such an
//!   alert is malformed and refused ([`RejectCode::Malformed`]), not cleaned up: the agent
//!   never produces it, so it is a broken or hostile sender, and a quarantined original is
//!   worth more to whoever investigates than a silently edited copy. Markdown characters are
//!   allowed (a rule may be called `a*b`); every renderer escapes them.
//! - **Where**: a position farther than the site's radius from where the site is registered
//!   is not believed ([`Position::Untrusted`]): the dispatcher files the alert in the site's
//!   own cell and flags the case, keeping the claimed position for forensics.
//!
//! The dispatcher asks [`SitePolicy::position`] again for alerts it re-files after a restart,
//! so the decision depends only on the stored alert and the config.

use std::collections::BTreeMap;
use std::sync::Arc;

use protocol::alert::Location;
use protocol::{Alert, AlertKind, AlertSource, UtcMillis};

use crate::case::{UntrustedPosition, UntrustedTime};
use crate::config::{IngestSection, SiteSection};
use crate::grid::{BBox, GridIndex};
use crate::ingest::RejectCode;

/// The pseudo-site patrol reports from the API are filed under; no real site may be called
/// this (the config refuses it).
pub const PATROL_SITE: &str = "patrol";

/// The pseudo-site the hub's own health alerts ([`AlertKind::HubHealth`]) are filed under;
/// reserved like [`PATROL_SITE`].
pub const HUB_SITE: &str = "hub";

/// Longest `rule`, in characters (rule ids of the agent's config, or a patrol category).
pub const MAX_RULE_CHARS: usize = 64;
/// Longest `label` and detection label, in characters.
pub const MAX_LABEL_CHARS: usize = 64;
/// Longest `detail` (a camera's last error, a patrol note), in characters. Generous: a
/// camera-offline alert refused for a long error text would be worse than a long message.
pub const MAX_DETAIL_CHARS: usize = 4096;
/// Longest other short free-text field (`model.id`, `tag.case_ref`), in characters.
pub const MAX_SHORT_CHARS: usize = 128;

/// Why an alert is refused: the code and a reason naming the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: RejectCode,
    pub reason: String,
}

impl Refusal {
    fn malformed(reason: impl Into<String>) -> Self {
        Self {
            code: RejectCode::Malformed,
            reason: reason.into(),
        }
    }

    fn not_authorized(reason: impl Into<String>) -> Self {
        Self {
            code: RejectCode::NotAuthorized,
            reason: reason.into(),
        }
    }
}

/// Whether an alert's position is believed.
#[derive(Debug, Clone, PartialEq)]
pub enum Position {
    /// The alert carries none: it goes to its site's cell.
    Absent,
    /// Believed: the alert is located by it.
    Trusted(Location),
    /// Not believed: the alert goes to its site's cell and its case is flagged.
    Untrusted(UntrustedPosition),
}

/// The sites and how far their alerts' positions may stray. Shared by ingest and dispatcher.
#[derive(Debug)]
pub struct SitePolicy {
    sites: BTreeMap<String, SiteSection>,
    grid: Arc<GridIndex>,
    default_radius_m: f64,
}

impl SitePolicy {
    pub fn new(
        sites: BTreeMap<String, SiteSection>,
        grid: Arc<GridIndex>,
        ingest: &IngestSection,
    ) -> Self {
        Self {
            sites,
            grid,
            default_radius_m: ingest.max_site_distance_m,
        }
    }

    /// Decodes `raw` as an alert published on `site`'s alert topic and checks what the site
    /// may say: size, schema and fields (protocol crate), the site policy, the text bounds.
    pub fn decode_site_alert(&self, site: &str, raw: &[u8]) -> Result<Alert, Refusal> {
        let alert =
            protocol::validate::decode_alert(raw).map_err(|e| Refusal::malformed(e.to_string()))?;
        self.check_site_alert(site, &alert)?;
        Ok(alert)
    }

    /// The checks of [`Self::decode_site_alert`] after decoding.
    pub fn check_site_alert(&self, site: &str, alert: &Alert) -> Result<(), Refusal> {
        if site == PATROL_SITE {
            return Err(Refusal::not_authorized(format!(
                "site: {PATROL_SITE:?} is reserved for patrol reports from the API"
            )));
        }
        if site == HUB_SITE {
            return Err(Refusal::not_authorized(format!(
                "site: {HUB_SITE:?} is reserved for the hub's own health alerts"
            )));
        }
        if !self.sites.contains_key(site) {
            return Err(Refusal::not_authorized(format!(
                "site: {site:?} is not registered ([sites.{site}] with its cell); register it, then re-ingest"
            )));
        }
        if alert.site != site {
            return Err(Refusal::not_authorized(format!(
                "site: {:?} does not match the topic's site {site:?}; a site files only its own alerts",
                alert.site
            )));
        }
        if let AlertSource::Person(p) = &alert.source {
            return Err(Refusal::not_authorized(format!(
                "source: a site speaks for its cameras and readers, not for person {p:?}"
            )));
        }
        if alert.kind == AlertKind::Patrol {
            return Err(Refusal::not_authorized(
                "kind: patrol reports come from logged-in people through the API, not from a site",
            ));
        }
        // A site able to raise a hub-health case could page the county's duty officers about
        // a disk that is fine, or hide a real one among fakes.
        if matches!(alert.kind, AlertKind::HubHealth | AlertKind::SiteHealth)
            || matches!(alert.source, AlertSource::Hub(_))
        {
            return Err(Refusal::not_authorized(
                "kind: hub_health and site_health alerts are raised by the hub itself, never by \
                 a site",
            ));
        }
        check_text(alert).map_err(Refusal::malformed)
    }

    /// Whether `alert`'s position is believed. Patrol reports (a person's, through the API,
    /// which checked the position against the person's cells) are believed as they are.
    pub fn position(&self, alert: &Alert) -> Position {
        let Some(claimed) = alert.location else {
            return Position::Absent;
        };
        if matches!(alert.source, AlertSource::Person(_)) && alert.site == PATROL_SITE {
            return Position::Trusted(claimed);
        }
        let Some(site) = self.sites.get(&alert.site) else {
            // Ingest refuses unregistered sites; an alert stored before its site's
            // registration was removed has nothing to be near: none of its positions is
            // believed (it goes to the top cell, where someone sees the flag).
            return Position::Untrusted(UntrustedPosition {
                alert: alert.id.clone(),
                claimed,
                distance_m: None,
                limit_m: self.default_radius_m,
                reason: "the site is not registered: its positions are not trusted".into(),
            });
        };
        let limit_m = site.max_distance_m.unwrap_or(self.default_radius_m);
        // Measured from the registered location; a site without one is measured from its
        // registered cell's bounding box (a superset of the cell, so a little lenient, but a
        // site can then only file near its own cell, never in another township). A site whose
        // cell is not in the grid either has no reference: its positions are not believed.
        let (distance, from) = match (site.location, self.grid.find(&site.cell)) {
            (Some(l), _) => (Some(distance_m(claimed, l)), "registered location"),
            (None, Some(c)) => (
                self.grid
                    .cell(c)
                    .map(|cell| distance_to_bbox_m(claimed, cell.bbox())),
                "registered cell",
            ),
            (None, None) => (None, "registered cell"),
        };
        match distance {
            Some(d) if d <= limit_m => Position::Trusted(claimed),
            Some(d) => Position::Untrusted(UntrustedPosition {
                alert: alert.id.clone(),
                claimed,
                distance_m: Some(d.round()),
                limit_m,
                reason: format!(
                    "{:.0} m from the site's {from}, farther than {limit_m:.0} m",
                    d
                ),
            }),
            None => Position::Untrusted(UntrustedPosition {
                alert: alert.id.clone(),
                claimed,
                distance_m: None,
                limit_m,
                reason: "the site has neither a registered location nor a known cell".into(),
            }),
        }
    }
}

/// Length and character bounds of the free-text fields; every problem, `field: message`.
pub fn check_text(alert: &Alert) -> Result<(), String> {
    let mut problems = Vec::new();
    let mut field = |name: String, value: &str, max: usize, newlines: bool| {
        let n = value.chars().count();
        if n > max {
            problems.push(format!("{name}: {n} chars > {max}"));
        }
        if let Some(c) = value
            .chars()
            .find(|&c| forbidden(c) && !(newlines && matches!(c, '\n' | '\t')))
        {
            problems.push(format!("{name}: contains the control character {c:?}"));
        }
    };
    field("rule".into(), &alert.rule, MAX_RULE_CHARS, false);
    if let Some(l) = &alert.label {
        field("label".into(), l, MAX_LABEL_CHARS, false);
    }
    // A camera's last error may span lines (and hold tabs); the renderers escape each line.
    if let Some(d) = &alert.detail {
        field("detail".into(), d, MAX_DETAIL_CHARS, true);
    }
    for (i, d) in alert.detections.iter().enumerate() {
        field(
            format!("detections[{i}].label"),
            &d.label,
            MAX_LABEL_CHARS,
            false,
        );
    }
    if let Some(m) = &alert.model {
        field("model.id".into(), &m.id, MAX_SHORT_CHARS, false);
    }
    if let Some(t) = &alert.tag {
        field("tag.id".into(), &t.id, MAX_SHORT_CHARS, false);
        if let Some(c) = &t.case_ref {
            field("tag.case_ref".into(), c, MAX_SHORT_CHARS, false);
        }
        if let Some(n) = &t.note {
            field("tag.note".into(), n, MAX_DETAIL_CHARS, false);
        }
        for (i, k) in t.keys.iter().enumerate() {
            field(format!("tag.keys[{i}]"), k, MAX_SHORT_CHARS, false);
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("invalid: {}", problems.join("; ")))
    }
}

/// Control characters (C0, DEL, C1) and the invisible formatting characters that reorder or
/// hide text on screen (bidi overrides, zero-width characters, BOM).
fn forbidden(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// Great-circle distance between two WGS-84 positions, metres (haversine).
pub fn distance_m(a: Location, b: Location) -> f64 {
    let (la1, la2) = (a.lat.to_radians(), b.lat.to_radians());
    let dlat = la2 - la1;
    let dlon = (b.lon - a.lon).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + la1.cos() * la2.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * h.sqrt().min(1.0).asin()
}

/// Distance from `p` to the nearest point of `b` (0 inside), metres. Clamping in degrees is
/// exact enough at the size of a cell.
fn distance_to_bbox_m(p: Location, b: BBox) -> f64 {
    let nearest = Location {
        lon: p.lon.clamp(b.min.lon, b.max.lon),
        lat: p.lat.clamp(b.min.lat, b.max.lat),
    };
    distance_m(p, nearest)
}

/// Whether `alert`'s time is believed, received at `now` from a site whose clock was last
/// measured `site_offset_ms` off the hub's (`None`: not yet). Not believed, and filed at its
/// receipt time ([`retimed`]), when it is stamped more than `tolerance_ms`
///
/// - ahead of its receipt: no clock that keeps time stamps the future; or
/// - away from its receipt (either way) while the site's clock is known to be more than
///   `tolerance_ms` off.
///
/// An alert stamped long ago by a site whose clock keeps time is believed: the box kept it
/// through an outage (the outbox's whole point) and its time is when it happened. Alerts of
/// people and of the hub carry the hub's own time.
pub fn judge_time(
    alert: &Alert,
    now: UtcMillis,
    site_offset_ms: Option<i64>,
    tolerance_ms: i64,
) -> Option<UntrustedTime> {
    if matches!(alert.source, AlertSource::Person(_) | AlertSource::Hub(_)) {
        return None;
    }
    let off = alert.time.0.saturating_sub(now.0);
    let reason = if off > tolerance_ms {
        format!(
            "stamped {} ahead of the hub's clock",
            crate::health::span_words(off)
        )
    } else if let Some(clock) = site_offset_ms.filter(|o| o.abs() > tolerance_ms)
        && off.abs() > tolerance_ms
    {
        format!(
            "the site's clock is {} {} the hub's",
            crate::health::span_words(clock.abs()),
            if clock > 0 { "ahead of" } else { "behind" }
        )
    } else {
        return None;
    };
    Some(UntrustedTime {
        alert: alert.id.clone(),
        claimed: alert.time,
        received: now,
        site_offset_ms,
        reason,
    })
}

/// `alert` moved to `at`: its time, and its start and end by as much, so the incident keeps
/// its length.
pub fn retimed(alert: &Alert, at: UtcMillis) -> Alert {
    let shift = at.0.saturating_sub(alert.time.0);
    let by = |t: UtcMillis| UtcMillis(t.0.saturating_add(shift));
    Alert {
        time: at,
        started_at: by(alert.started_at),
        ended_at: alert.ended_at.map(by),
        ..alert.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::UtcMillis;

    const ID: &str = "01KAQ5X3MV0000000000000001";

    fn alert(site: &str) -> Alert {
        testkit::AlertBuilder::new(site, 1)
            .id(ID)
            .at(UtcMillis(1_000))
            .build()
    }

    fn grid() -> Arc<GridIndex> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/hub/wuding.geojson");
        let text = std::fs::read_to_string(path).unwrap();
        let h = crate::grid::geojson::import_str(&text, crate::grid::CoordSystem::Wgs84).unwrap();
        Arc::new(GridIndex::new(h))
    }

    const M01: &str = "532329101001-G01-M01";
    const HOME: Location = Location {
        lon: 102.4040,
        lat: 25.5300,
    };

    fn policy() -> SitePolicy {
        let mut sites = BTreeMap::new();
        sites.insert(
            "located".to_owned(),
            SiteSection {
                cell: M01.into(),
                name: String::new(),
                location: Some(HOME),
                max_distance_m: None,
            },
        );
        sites.insert(
            "cell-only".to_owned(),
            SiteSection {
                cell: M01.into(),
                name: String::new(),
                location: None,
                max_distance_m: Some(500.0),
            },
        );
        SitePolicy::new(sites, grid(), &IngestSection::default())
    }

    #[test]
    fn a_site_may_not_speak_for_a_person_a_patrol_or_another_site() {
        let p = policy();
        let mut a = alert("located");
        a.source = AlertSource::Person("p-huangtao".into());
        a.kind = AlertKind::Patrol;
        let r = p.check_site_alert("located", &a).unwrap_err();
        assert_eq!(r.code, RejectCode::NotAuthorized);
        assert!(r.reason.contains("p-huangtao"), "{}", r.reason);
        let mut a = alert("located");
        a.kind = AlertKind::Patrol;
        assert_eq!(
            p.check_site_alert("located", &a).unwrap_err().code,
            RejectCode::NotAuthorized
        );
        let a = alert("cell-only");
        let r = p.check_site_alert("located", &a).unwrap_err();
        assert_eq!(r.code, RejectCode::NotAuthorized);
        assert!(r.reason.starts_with("site:"), "{}", r.reason);
        let a = alert(PATROL_SITE);
        assert_eq!(
            p.check_site_alert(PATROL_SITE, &a).unwrap_err().code,
            RejectCode::NotAuthorized
        );
        let r = p
            .check_site_alert("unknown", &alert("unknown"))
            .unwrap_err();
        assert_eq!(r.code, RejectCode::NotAuthorized);
        assert!(r.reason.contains("not registered"), "{}", r.reason);
        assert_eq!(p.check_site_alert("located", &alert("located")), Ok(()));
    }

    #[test]
    fn a_site_may_not_raise_a_hub_health_alert() {
        let p = policy();
        let mut a = alert("located");
        a.kind = AlertKind::HubHealth;
        a.source = AlertSource::Hub("disk".into());
        let r = p.check_site_alert("located", &a).unwrap_err();
        assert_eq!(r.code, RejectCode::NotAuthorized);
        assert!(r.reason.contains("hub_health"), "{}", r.reason);
        let a = alert(HUB_SITE);
        let r = p.check_site_alert(HUB_SITE, &a).unwrap_err();
        assert_eq!(r.code, RejectCode::NotAuthorized);
        assert!(r.reason.contains("reserved"), "{}", r.reason);
    }

    #[test]
    fn free_text_is_bounded_and_free_of_control_characters_but_may_hold_markdown() {
        let p = policy();
        let mut a = alert("located");
        a.rule = "[点此](https://evil.example) **x** <b>".into();
        assert_eq!(p.check_site_alert("located", &a), Ok(()));
        for bad in [
            "x".repeat(MAX_RULE_CHARS + 1),
            "a\nb".into(),
            "a\u{1b}[31m".into(),
            "a\u{202E}b".into(),
        ] {
            let mut a = alert("located");
            a.rule = bad.clone();
            let r = p.check_site_alert("located", &a).unwrap_err();
            assert_eq!(r.code, RejectCode::Malformed, "{bad:?}");
            assert!(r.reason.contains("rule:"), "{}", r.reason);
        }
        let mut a = alert("located");
        a.detail = Some("line one\n\tline two".into());
        assert_eq!(p.check_site_alert("located", &a), Ok(()));
        a.detail = Some("x".repeat(MAX_DETAIL_CHARS + 1));
        a.label = Some("a\tb".into());
        let r = p.check_site_alert("located", &a).unwrap_err();
        assert!(
            r.reason.contains("detail:") && r.reason.contains("label:"),
            "{}",
            r.reason
        );
    }

    #[test]
    fn a_position_far_from_the_site_is_not_trusted() {
        let p = policy();
        let mut a = alert("located");
        a.location = Some(Location {
            lon: 102.4100,
            lat: 25.5300,
        }); // ~600 m east
        assert!(matches!(p.position(&a), Position::Trusted(_)));
        // 高桥社区第一网格 in 高桥镇, another township, ~14 km away.
        let far = Location {
            lon: 102.4199,
            lat: 25.4045,
        };
        a.location = Some(far);
        let Position::Untrusted(u) = p.position(&a) else {
            panic!("far position trusted");
        };
        assert_eq!(u.claimed, far);
        assert!(u.distance_m.unwrap() > 13_000.0, "{u:?}");
        assert_eq!(u.limit_m, 2000.0);
        assert_eq!(u.alert, ID);
        a.location = None;
        assert_eq!(p.position(&a), Position::Absent);
    }

    #[test]
    fn a_site_without_location_is_measured_from_its_cells_bounds_and_an_unknown_site_from_nothing()
    {
        let p = policy();
        let mut a = alert("cell-only");
        a.location = Some(HOME); // inside M01
        assert!(matches!(p.position(&a), Position::Trusted(_)));
        a.location = Some(Location {
            lon: 102.71,
            lat: 25.04,
        });
        assert!(matches!(p.position(&a), Position::Untrusted(_)));
        let mut a = alert("unknown");
        a.location = Some(HOME);
        let Position::Untrusted(u) = p.position(&a) else {
            panic!("an unregistered site's position trusted");
        };
        assert_eq!(u.distance_m, None);
    }

    #[test]
    fn patrol_reports_from_the_api_keep_their_position() {
        let p = policy();
        let mut a = alert(PATROL_SITE);
        a.source = AlertSource::Person("p-lina".into());
        a.kind = AlertKind::Patrol;
        a.location = Some(Location {
            lon: 102.50,
            lat: 25.55,
        });
        assert!(matches!(p.position(&a), Position::Trusted(_)));
    }

    #[test]
    fn haversine_is_right_at_this_latitude() {
        // 0.01° of longitude at 25.53° N is 1003.7 m.
        let d = distance_m(
            HOME,
            Location {
                lon: 102.4140,
                lat: 25.5300,
            },
        );
        assert!((d - 1003.7).abs() < 1.0, "{d}");
    }

    #[test]
    fn an_alert_time_is_believed_unless_the_future_or_a_known_bad_clock_says_otherwise() {
        let now = UtcMillis(1_800_000_000_000);
        let tol = 60_000;
        let hour = 3_600_000;
        let mut a = alert("s1");
        let at = |a: &mut Alert, t: i64| {
            a.time = UtcMillis(t);
            a.started_at = UtcMillis(t - 5_000);
        };
        // On time, or a little off: believed.
        at(&mut a, now.0 - 30_000);
        assert_eq!(judge_time(&a, now, Some(0), tol), None);
        // A year ahead: never believed, whatever the site's clock was.
        at(&mut a, now.0 + 365 * 24 * hour);
        let u = judge_time(&a, now, Some(0), tol).expect("from the future");
        assert_eq!((u.claimed, u.received), (a.time, now));
        assert!(
            u.reason.contains("ahead of the hub's clock"),
            "{}",
            u.reason
        );
        // Two days late from a box whose clock keeps time: kept through an outage, believed.
        at(&mut a, now.0 - 48 * hour);
        assert_eq!(judge_time(&a, now, Some(200), tol), None);
        assert_eq!(judge_time(&a, now, None, tol), None);
        // The same from a box known to be two days behind: not believed.
        let u = judge_time(&a, now, Some(-48 * hour), tol).expect("bad clock");
        assert!(u.reason.contains("behind"), "{}", u.reason);
        // A bad clock, but this alert lies within the tolerance of its receipt: believed.
        at(&mut a, now.0 - 1_000);
        assert_eq!(judge_time(&a, now, Some(-hour), tol), None);

        // Filed at receipt, keeping the incident's length.
        at(&mut a, now.0 - 48 * hour);
        let r = retimed(&a, now);
        assert_eq!((r.time, r.started_at), (now, UtcMillis(now.0 - 5_000)));
    }
}
