//! GCJ-02 ↔ WGS-84 on published coordinate pairs, and the inverse's round trip.
//!
//! Reference values:
//! - Beijing, forward: the example in the README/tests of wandergis/coordtransform (the JS
//!   library most Chinese web maps use): wgs84togcj02(116.404, 39.915) =
//!   [116.41024449916938, 39.91640428150164].
//! - Every other pair: the independent Python library `prcoords` 1.0.2 (PyPI; `wgs_gcj` forward,
//!   `gcj_wgs_bored` iterative inverse), whose inverses were checked to re-project to their
//!   input within 1e-8°.

use hub::grid::Point;
use hub::grid::crs::{self, gcj02_to_wgs84, metres_between, wgs84_to_gcj02};
use proptest::prelude::*;

/// (longitude, latitude).
type LonLat = (f64, f64);

/// (WGS-84, GCJ-02), forward direction.
const FORWARD: &[(LonLat, LonLat)] = &[
    // Beijing, Tiananmen area (coordtransform's published example).
    ((116.404, 39.915), (116.41024449916938, 39.91640428150164)),
    // Beijing, Tiananmen gate.
    (
        (116.3912757, 39.906217),
        (116.39751670534572, 39.907618208506655),
    ),
    // Wuding county seat, Yunnan.
    (
        (102.4037, 25.5317),
        (102.40531220338087, 25.528895382182387),
    ),
    // Kunming.
    ((102.7123, 25.0406), (102.71374162516912, 25.03762735249865)),
    // Shanghai, People's Square.
    ((121.4737, 31.2304), (121.47822305927693, 31.22845773757727)),
];

/// (GCJ-02, WGS-84), inverse direction.
const INVERSE: &[(LonLat, LonLat)] = &[
    ((116.404, 39.915), (116.3977557546871, 39.91359623568433)),
    (
        (116.3912757, 39.906217),
        (116.38503912858303, 39.904819629285505),
    ),
    (
        (102.4037, 25.5317),
        (102.40208767578743, 25.534505578995244),
    ),
    (
        (102.7123, 25.0406),
        (102.71086104891894, 25.043574228815125),
    ),
    (
        (121.4737, 31.2304),
        (121.46916226346737, 31.232329239140196),
    ),
];

fn p((lon, lat): (f64, f64)) -> Point {
    Point::new(lon, lat)
}

#[test]
fn forward_matches_published_pairs() {
    for &(wgs, gcj) in FORWARD {
        let got = wgs84_to_gcj02(p(wgs));
        assert!(
            (got.lon - gcj.0).abs() < 1e-9 && (got.lat - gcj.1).abs() < 1e-9,
            "{wgs:?} → {got}, expected {gcj:?}"
        );
    }
}

#[test]
fn inverse_matches_reference_pairs_to_a_centimetre() {
    for &(gcj, wgs) in INVERSE {
        let got = gcj02_to_wgs84(p(gcj));
        let off = metres_between(got, p(wgs));
        assert!(
            off < 0.01,
            "{gcj:?} → {got}, expected {wgs:?} ({off} m off)"
        );
    }
}

#[test]
fn wuding_offset_is_a_few_hundred_metres() {
    // Sanity on the size of the shift the importer corrects: ignoring it would put an alert in
    // a neighbouring micro-grid.
    let wgs = p((102.4037, 25.5317));
    let shift = metres_between(wgs, wgs84_to_gcj02(wgs));
    assert!((200.0..700.0).contains(&shift), "{shift} m");
}

#[test]
fn points_outside_china_are_unchanged_both_ways() {
    for q in [
        p((2.3522, 48.8566)),
        p((139.6917, 35.6895)),
        p((-74.006, 40.7128)),
        p((100.5018, -0.5)),
    ] {
        assert_eq!(wgs84_to_gcj02(q), q);
        assert_eq!(gcj02_to_wgs84(q), q);
        assert!(!crs::in_china(q));
    }
}

#[test]
fn coordinate_system_names_parse() {
    use hub::grid::CoordSystem;
    assert_eq!("wgs84".parse::<CoordSystem>(), Ok(CoordSystem::Wgs84));
    assert_eq!("GCJ-02".parse::<CoordSystem>(), Ok(CoordSystem::Gcj02));
    assert!("bd09".parse::<CoordSystem>().is_err());
}

proptest! {
    #[test]
    fn inverse_of_forward_is_within_half_a_metre(lon in 73.0f64..135.0, lat in 3.0f64..53.5) {
        let wgs = Point::new(lon, lat);
        let back = gcj02_to_wgs84(wgs84_to_gcj02(wgs));
        let err = metres_between(wgs, back);
        prop_assert!(err < 0.5, "{} → {} ({} m)", wgs, back, err);
        // In fact far better: the iteration runs to 1e-10°.
        prop_assert!(err < 0.001, "{} → {} ({} m)", wgs, back, err);
    }
}
