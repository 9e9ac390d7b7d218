//! The two coordinate systems grid polygons arrive in, and the conversion between them.
//!
//! Everything the hub stores and compares is WGS-84 (what GNSS receivers and the edge agents
//! report). Chinese consumer maps (AutoNavi/Amap, Tencent, and most hand-drawn grid maps exported
//! from them) use GCJ-02, WGS-84 shifted by a published non-linear offset of a few hundred
//! metres. The forward transform is the one every open implementation uses (Krasovsky
//! ellipsoid constants, the same two trigonometric series); there is no closed-form inverse,
//! so [`gcj02_to_wgs84`] solves `forward(w) = g` by fixed-point iteration, which converges
//! because the offset changes by less than 1 % per degree.
//!
//! Outside mainland China the offset is not applied: the usual rectangle test (72.004–137.8347°E,
//! 0.8293–55.8271°N) decides, as in the map vendors' SDKs, so a point near the border is treated
//! exactly as the map that drew it treated it.

use std::f64::consts::PI;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use strum::VariantArray as _;

use super::geometry::Point;

/// The coordinate system a grid file declares.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::Display,
    strum::VariantArray,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum CoordSystem {
    /// WGS-84 longitude/latitude (GNSS, OpenStreetMap, the hub's own system).
    Wgs84,
    /// GCJ-02 longitude/latitude (Chinese consumer maps); converted to WGS-84 on import.
    Gcj02,
}

impl CoordSystem {
    /// The name used in config files and on the command line.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Converts a point in this system to WGS-84.
    pub fn to_wgs84(self, p: Point) -> Point {
        match self {
            Self::Wgs84 => p,
            Self::Gcj02 => gcj02_to_wgs84(p),
        }
    }
}

/// The error for a coordinate system name that is neither `wgs84` nor `gcj02`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown coordinate system {0:?} (expected wgs84 or gcj02)")]
pub struct UnknownCoordSystem(pub String);

impl FromStr for CoordSystem {
    type Err = UnknownCoordSystem;

    /// Ignores case and `-`/`_` anywhere (`GCJ-02`, `wgs_84`): hand-written, not strum's
    /// `EnumString`, because that matches whole names and cannot drop separators.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let name = s.to_ascii_lowercase().replace(['-', '_'], "");
        Self::VARIANTS
            .iter()
            .copied()
            .find(|c| c.as_str() == name)
            .ok_or_else(|| UnknownCoordSystem(s.to_owned()))
    }
}

/// Semi-major axis of the Krasovsky 1940 ellipsoid, as used by GCJ-02 (metres).
const A: f64 = 6_378_245.0;
/// Its first eccentricity squared.
const EE: f64 = 0.006_693_421_622_965_943;

/// Whether the offset applies: the rectangle the map vendors use for "in China".
pub fn in_china(p: Point) -> bool {
    (72.004..=137.8347).contains(&p.lon) && (0.8293..=55.8271).contains(&p.lat)
}

/// WGS-84 → GCJ-02. Points outside China are returned unchanged.
pub fn wgs84_to_gcj02(p: Point) -> Point {
    if !in_china(p) {
        return p;
    }
    let (dlon, dlat) = offset(p);
    Point::new(p.lon + dlon, p.lat + dlat)
}

/// GCJ-02 → WGS-84 by iteration, to about 1e-10° (0.01 mm) — far inside the 0.5 m the hub
/// needs. Points outside China are returned unchanged.
pub fn gcj02_to_wgs84(g: Point) -> Point {
    if !in_china(g) {
        return g;
    }
    // Start from the one-step estimate most libraries stop at (good to a few metres), then
    // correct by the residual until it vanishes; 3–4 rounds suffice, 20 is a safe cap.
    let (dlon, dlat) = offset(g);
    let mut w = Point::new(g.lon - dlon, g.lat - dlat);
    for _ in 0..20 {
        let (dlon, dlat) = offset(w);
        let (rlon, rlat) = (w.lon + dlon - g.lon, w.lat + dlat - g.lat);
        w = Point::new(w.lon - rlon, w.lat - rlat);
        if rlon.abs() < 1e-11 && rlat.abs() < 1e-11 {
            break;
        }
    }
    w
}

/// The GCJ-02 offset (degrees of longitude, latitude) at WGS-84 point `p`, without the
/// in-China test (the inverse iterates on it near the border too).
fn offset(p: Point) -> (f64, f64) {
    let (x, y) = (p.lon - 105.0, p.lat - 35.0);
    let dlat = series_lat(x, y);
    let dlon = series_lon(x, y);
    let rad_lat = p.lat / 180.0 * PI;
    let magic = 1.0 - EE * rad_lat.sin() * rad_lat.sin();
    let sqrt_magic = magic.sqrt();
    let dlat = (dlat * 180.0) / ((A * (1.0 - EE)) / (magic * sqrt_magic) * PI);
    let dlon = (dlon * 180.0) / (A / sqrt_magic * rad_lat.cos() * PI);
    (dlon, dlat)
}

fn series_lat(x: f64, y: f64) -> f64 {
    let mut r = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * x.abs().sqrt();
    r += (20.0 * (6.0 * x * PI).sin() + 20.0 * (2.0 * x * PI).sin()) * 2.0 / 3.0;
    r += (20.0 * (y * PI).sin() + 40.0 * (y / 3.0 * PI).sin()) * 2.0 / 3.0;
    r += (160.0 * (y / 12.0 * PI).sin() + 320.0 * (y * PI / 30.0).sin()) * 2.0 / 3.0;
    r
}

fn series_lon(x: f64, y: f64) -> f64 {
    let mut r = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * x.abs().sqrt();
    r += (20.0 * (6.0 * x * PI).sin() + 20.0 * (2.0 * x * PI).sin()) * 2.0 / 3.0;
    r += (20.0 * (x * PI).sin() + 40.0 * (x / 3.0 * PI).sin()) * 2.0 / 3.0;
    r += (150.0 * (x / 12.0 * PI).sin() + 300.0 * (x / 30.0 * PI).sin()) * 2.0 / 3.0;
    r
}

/// Distance in metres between two nearby points (equirectangular; exact enough under 10 km).
pub fn metres_between(a: Point, b: Point) -> f64 {
    const EARTH_RADIUS_M: f64 = 6_371_008.8;
    let mean_lat = ((a.lat + b.lat) / 2.0).to_radians();
    let dx = (b.lon - a.lon).to_radians() * mean_lat.cos();
    let dy = (b.lat - a.lat).to_radians();
    EARTH_RADIUS_M * dx.hypot(dy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_their_serde_names_and_parse_back() {
        for &c in CoordSystem::VARIANTS {
            assert_eq!(serde_json::to_value(c).ok(), Some(c.as_str().into()));
            assert_eq!(c.as_str().parse::<CoordSystem>(), Ok(c));
        }
        assert_eq!("WGS_84".parse::<CoordSystem>(), Ok(CoordSystem::Wgs84));
        assert_eq!(
            "bd09".parse::<CoordSystem>(),
            Err(UnknownCoordSystem("bd09".to_owned()))
        );
    }
}
