//! Validation of a cell hierarchy, reporting every problem at once.
//!
//! Each problem names its feature (`features[3] (id "530329101")`) and, within it, the JSON path
//! of what is wrong (`geometry.coordinates[0][1]`), so an operator can fix the whole file in one
//! pass. The checks, per feature:
//!
//! - properties: `id`, `name`, `level` present and well-typed, `parent` present (null or an id);
//! - rings: positions finite and in range; at least 4 points; closed; at least 3 distinct
//!   corners once consecutive repeats are dropped; not crossing, touching or doubling back on
//!   itself. Rings are checked as drawn, before any GCJ-02 conversion, so the coordinates in a
//!   message are the ones in the file. Holes are not checked against their exterior;
//! - hierarchy: ids unique; the parent exists; its level is strictly higher (a file may skip a
//!   level, e.g. micro-grids directly under a village); only the top level — the highest level
//!   present — has a null parent; no parent chain is a cycle (impossible when levels are right,
//!   but reported on its own so a file with bad levels still says where the loop is);
//! - **far outside its parent**: the child's vertices are compared with its parent's bounding
//!   box widened on every side by 10 % of the box's larger side (at least 0.001°, about 100 m).
//!   The child is far outside when the centroid of its exterior vertices lies outside that box,
//!   or fewer than half of its vertices lie inside it. A box rather than the parent's polygon,
//!   and a generous margin, because hand-drawn neighbours routinely overhang their parent's
//!   boundary by metres; the rule is there for gross errors — a wrong parent id, swapped
//!   longitude and latitude, a polygon from another county — not for digitising slivers.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;

use super::crs::CoordSystem;
use super::geometry::{self, BBox, MultiPolygon, Point, Polygon};
use super::hierarchy::{CellSpec, Hierarchy, ValidCell};
use super::level::{Level, UnknownLevel};

/// Everything that can go wrong turning input into a [`Hierarchy`].
#[derive(Debug, thiserror::Error)]
pub enum GridError {
    /// The reader failed.
    #[error("cannot read the grid file: {0}")]
    Read(#[from] std::io::Error),
    /// The input is not JSON at all (serde_json's message includes line and column).
    #[error("the grid file is not valid JSON: {0}")]
    Json(#[source] serde_json::Error),
    /// The input is JSON but describes an invalid hierarchy; every problem found is listed.
    #[error("{0}")]
    Invalid(Issues),
}

impl GridError {
    /// The problems, if the input was readable JSON.
    pub fn issues(&self) -> &[Issue] {
        match self {
            Self::Invalid(issues) => &issues.0,
            Self::Read(_) | Self::Json(_) => &[],
        }
    }
}

/// Every problem found in one input, in feature order; document-level problems first.
#[derive(Clone, Debug, PartialEq)]
pub struct Issues(pub Vec<Issue>);

impl fmt::Display for Issues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(
            f,
            "{n} problem{} in the grid hierarchy:",
            if n == 1 { "" } else { "s" }
        )?;
        for issue in &self.0 {
            write!(f, "\n  {issue}")?;
        }
        Ok(())
    }
}

/// One problem, and the feature it is in.
#[derive(Clone, Debug, PartialEq)]
pub struct Issue {
    /// Index of the feature in the `features` array (or in the specs); `None` for the document.
    pub feature: Option<usize>,
    /// The feature's id, when it has a usable one.
    pub id: Option<String>,
    /// What is wrong.
    pub problem: Problem,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.feature, &self.id) {
            (Some(i), Some(id)) => write!(f, "features[{i}] (id {id:?}): {}", self.problem),
            (Some(i), None) => write!(f, "features[{i}]: {}", self.problem),
            (None, _) => write!(f, "document: {}", self.problem),
        }
    }
}

/// Which ring of a feature's geometry, as its JSON path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingRef {
    /// Polygon index within a `MultiPolygon`; `None` for a `Polygon` geometry.
    pub polygon: Option<usize>,
    /// Ring index within the polygon; 0 is the exterior.
    pub ring: usize,
}

impl fmt::Display for RingRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.polygon {
            Some(p) => write!(f, "geometry.coordinates[{p}][{}]", self.ring),
            None => write!(f, "geometry.coordinates[{}]", self.ring),
        }
    }
}

/// What is wrong with a feature (or the document).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    /// The document is not a FeatureCollection, or has too many features.
    #[error("{0}")]
    Document(String),
    /// A `features` entry that is not a GeoJSON Feature object.
    #[error("not a GeoJSON Feature: {0}")]
    NotAFeature(String),
    /// A required property is absent.
    #[error("properties.{name}: missing{hint}")]
    MissingProperty {
        /// Property name.
        name: &'static str,
        /// Extra advice, e.g. how to say "no parent".
        hint: &'static str,
    },
    /// A property has the wrong type or an empty value.
    #[error("properties.{name}: expected {expected}, found {found}")]
    InvalidProperty {
        /// Property name.
        name: &'static str,
        /// What it should be.
        expected: &'static str,
        /// What it is (JSON).
        found: String,
    },
    /// The `level` is not one of the five.
    #[error("properties.level: {0}")]
    UnknownLevel(UnknownLevel),
    /// The geometry is missing, null, not a Polygon/MultiPolygon, or not nested arrays.
    #[error("{path}: {reason}")]
    Geometry {
        /// JSON path, e.g. `geometry.coordinates[1]`.
        path: String,
        /// What is wrong there.
        reason: String,
    },
    /// A position that is not two finite numbers in range.
    #[error("{ring}[{point}]: {reason}")]
    BadPosition {
        /// The ring.
        ring: RingRef,
        /// Index of the position within it.
        point: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// Fewer than 4 positions.
    #[error("{ring}: ring has {points} points; a ring needs at least 4 (a closed triangle)")]
    RingTooShort {
        /// The ring.
        ring: RingRef,
        /// Its length.
        points: usize,
    },
    /// First position differs from the last.
    #[error("{ring}: ring is not closed: first point {first} differs from last point {last}")]
    RingNotClosed {
        /// The ring.
        ring: RingRef,
        /// First position.
        first: Point,
        /// Last position.
        last: Point,
    },
    /// Fewer than 3 distinct corners once repeats are dropped.
    #[error("{ring}: ring has only {distinct} distinct points; it encloses no area")]
    RingDegenerate {
        /// The ring.
        ring: RingRef,
        /// Distinct corners.
        distinct: usize,
    },
    /// The ring crosses, touches or doubles back on itself.
    #[error(
        "{ring}: ring crosses or touches itself at {count} place{}; first: the edges from point \
         {first_edge} and from point {second_edge} meet at {at}",
        if *count == 1 { "" } else { "s" }
    )]
    RingSelfIntersects {
        /// The ring.
        ring: RingRef,
        /// How many pairs of edges meet.
        count: usize,
        /// Index (in the file's ring) of the first point of one edge.
        first_edge: usize,
        /// Index of the first point of the other edge.
        second_edge: usize,
        /// Where they meet.
        at: Point,
    },
    /// Another feature has the same id.
    #[error("properties.id: {id:?} is also the id of features[{first}]")]
    DuplicateId {
        /// The id.
        id: String,
        /// Index of the first feature with it (the one children resolve to).
        first: usize,
    },
    /// `parent` names no feature.
    #[error("properties.parent: no feature has id {0:?}")]
    UnknownParent(String),
    /// A null parent below the top level.
    #[error(
        "properties.parent: null, but only the top level ({top}) may have no parent and this is \
         a {level}"
    )]
    RootBelowTop {
        /// This feature's level.
        level: Level,
        /// The highest level in the file.
        top: Level,
    },
    /// The parent's level is not higher than the child's.
    #[error(
        "properties.level: a {level} cannot be under {parent:?}, which is a {parent_level}; a \
         parent must be of a higher level"
    )]
    LevelNotDeeper {
        /// This feature's level.
        level: Level,
        /// Parent id.
        parent: String,
        /// Parent's level.
        parent_level: Level,
    },
    /// Following parents from this feature comes back to it.
    #[error("properties.parent: the parent chain is a cycle: {}", .members.join(" → "))]
    Cycle {
        /// Ids along the loop, starting and ending with this feature.
        members: Vec<String>,
    },
    /// The feature lies far outside its parent (rule in the module docs).
    #[error(
        "geometry: lies far outside its parent {parent:?}: the centroid of its vertices {centroid} \
         is {} and {inside} of its {vertices} vertices are inside the parent's bounding box \
         widened by {margin_deg:.4}°",
        if *centroid_inside { "inside" } else { "outside" }
    )]
    FarOutsideParent {
        /// Parent id.
        parent: String,
        /// Mean of the child's exterior vertices.
        centroid: Point,
        /// Whether that mean is in the widened box.
        centroid_inside: bool,
        /// Vertices in the widened box.
        inside: usize,
        /// All exterior vertices.
        vertices: usize,
        /// The margin the box was widened by, in degrees.
        margin_deg: f64,
    },
}

/// What the `parent` property said.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum ParentRef {
    /// Missing or malformed (already reported).
    Invalid,
    /// `null`: a top-level cell.
    Root,
    /// Another feature's id.
    Code(String),
}

/// One feature as parsed: what was readable, with problems found so far already reported.
#[derive(Clone, Debug)]
pub(crate) struct Record {
    pub(crate) index: usize,
    pub(crate) code: Option<String>,
    pub(crate) name: Option<String>,
    pub(crate) level: Option<Level>,
    pub(crate) parent: ParentRef,
    /// As drawn, unchecked; `None` when the geometry could not be read (already reported).
    pub(crate) area: Option<MultiPolygon>,
    /// The geometry was a `Polygon`, so ring paths have no polygon index.
    pub(crate) single_polygon: bool,
}

impl Record {
    pub(crate) fn from_spec(index: usize, s: CellSpec) -> Self {
        Self {
            index,
            code: Some(s.code),
            name: Some(s.name),
            level: Some(s.level),
            parent: s.parent.map_or(ParentRef::Root, ParentRef::Code),
            area: Some(s.area),
            single_polygon: false,
        }
    }

    pub(crate) fn issue(&self, problem: Problem) -> Issue {
        Issue {
            feature: Some(self.index),
            id: self.code.clone(),
            problem,
        }
    }
}

/// Validates `records` (in input order) and builds the hierarchy, or returns `issues` plus
/// everything found here.
pub(crate) fn validate(
    mut records: Vec<Record>,
    mut issues: Vec<Issue>,
    crs: CoordSystem,
) -> Result<Hierarchy, GridError> {
    let n = records.len();
    if u32::try_from(n).is_err() {
        issues.push(Issue {
            feature: None,
            id: None,
            problem: Problem::Document(format!("{n} features; at most {} are supported", u32::MAX)),
        });
        return Err(GridError::Invalid(Issues(issues)));
    }

    let mut areas: Vec<Option<MultiPolygon>> = records
        .iter()
        .map(|r| {
            r.area
                .as_ref()
                .and_then(|a| checked_area(r, a, crs, &mut issues))
        })
        .collect();

    let mut by_code: HashMap<&str, usize> = HashMap::with_capacity(n);
    for (i, r) in records.iter().enumerate() {
        let Some(code) = r.code.as_deref() else {
            continue;
        };
        match by_code.entry(code) {
            Entry::Vacant(v) => {
                v.insert(i);
            }
            Entry::Occupied(o) => issues.push(r.issue(Problem::DuplicateId {
                id: code.to_owned(),
                first: records[*o.get()].index,
            })),
        }
    }

    let top = records.iter().filter_map(|r| r.level).min();
    let mut parent_of: Vec<Option<usize>> = vec![None; n];
    for (i, r) in records.iter().enumerate() {
        match &r.parent {
            ParentRef::Invalid => {}
            ParentRef::Root => {
                if let (Some(level), Some(top)) = (r.level, top)
                    && level != top
                {
                    issues.push(r.issue(Problem::RootBelowTop { level, top }));
                }
            }
            ParentRef::Code(p) => match by_code.get(p.as_str()) {
                None => issues.push(r.issue(Problem::UnknownParent(p.clone()))),
                Some(&pi) => {
                    parent_of[i] = Some(pi);
                    if pi != i
                        && let (Some(level), Some(parent_level)) = (r.level, records[pi].level)
                        && level <= parent_level
                    {
                        issues.push(r.issue(Problem::LevelNotDeeper {
                            level,
                            parent: p.clone(),
                            parent_level,
                        }));
                    }
                }
            },
        }
    }

    report_cycles(&records, &parent_of, &mut issues);

    for (i, r) in records.iter().enumerate() {
        if let Some(pi) = parent_of[i]
            && pi != i
            && let (Some(child), Some(parent)) = (&areas[i], &areas[pi])
            && let Some(problem) = far_outside(child, parent, &records[pi])
        {
            issues.push(r.issue(problem));
        }
    }

    if !issues.is_empty() {
        issues.sort_by_key(|i| i.feature.map_or(0, |f| f + 1));
        return Err(GridError::Invalid(Issues(issues)));
    }

    // Parents before children: levels strictly increase down every chain.
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| (records[i].level, i));
    let mut position = vec![0; n];
    for (pos, &i) in order.iter().enumerate() {
        position[i] = pos;
    }
    let mut cells = Vec::with_capacity(n);
    for &i in &order {
        let r = &mut records[i];
        match (r.code.take(), r.name.take(), r.level, areas[i].take()) {
            (Some(code), Some(name), Some(level), Some(area)) => cells.push(ValidCell {
                code,
                name,
                level,
                parent: parent_of[i].map(|p| position[p]),
                area,
            }),
            // Every path that leaves a field unset also reports an issue, so this is a bug in
            // the parser; say so rather than drop the cell.
            _ => {
                return Err(GridError::Invalid(Issues(vec![Issue {
                    feature: Some(r.index),
                    id: None,
                    problem: Problem::Document(
                        "internal error: feature incomplete but no problem reported".to_owned(),
                    ),
                }])));
            }
        }
    }
    Ok(Hierarchy::from_validated(cells))
}

/// Checks every ring of `area`; if all are sound, returns the area with repeats dropped,
/// converted to WGS-84.
fn checked_area(
    r: &Record,
    area: &MultiPolygon,
    crs: CoordSystem,
    issues: &mut Vec<Issue>,
) -> Option<MultiPolygon> {
    if area.polygons().is_empty() {
        issues.push(r.issue(Problem::Geometry {
            path: "geometry.coordinates".to_owned(),
            reason: "has no polygons".to_owned(),
        }));
        return None;
    }
    let mut ok = true;
    let mut polygons = Vec::with_capacity(area.polygons().len());
    for (pi, poly) in area.polygons().iter().enumerate() {
        let mut rings = Vec::with_capacity(1 + poly.holes().len());
        for (ri, ring) in poly.rings().enumerate() {
            let at = RingRef {
                polygon: (!r.single_polygon).then_some(pi),
                ring: ri,
            };
            match check_ring(ring, at) {
                Err(problem) => {
                    issues.push(r.issue(problem));
                    ok = false;
                }
                Ok(clean) => rings.push(clean.into_iter().map(|p| crs.to_wgs84(p)).collect()),
            }
        }
        if ok {
            let mut rings = rings.into_iter();
            let exterior = rings.next().unwrap_or_default();
            polygons.push(Polygon::new(exterior, rings.collect()));
        }
    }
    ok.then(|| MultiPolygon::new(polygons))
}

/// The first problem with a ring, or the ring with consecutive repeats dropped.
fn check_ring(ring: &[Point], at: RingRef) -> Result<Vec<Point>, Problem> {
    for (k, p) in ring.iter().enumerate() {
        let reason = if !p.lon.is_finite() || !p.lat.is_finite() {
            "coordinates must be finite numbers"
        } else if !(-180.0..=180.0).contains(&p.lon) {
            "longitude out of range [-180, 180]"
        } else if !(-90.0..=90.0).contains(&p.lat) {
            "latitude out of range [-90, 90]"
        } else {
            continue;
        };
        return Err(Problem::BadPosition {
            ring: at,
            point: k,
            reason: format!("{reason}: {p}"),
        });
    }
    if ring.len() < 4 {
        return Err(Problem::RingTooShort {
            ring: at,
            points: ring.len(),
        });
    }
    let (first, last) = (ring[0], ring[ring.len() - 1]);
    if first != last {
        return Err(Problem::RingNotClosed {
            ring: at,
            first,
            last,
        });
    }
    let (clean, original) = geometry::dedup_ring(ring);
    if clean.len() < 4 {
        return Err(Problem::RingDegenerate {
            ring: at,
            distinct: clean.len() - 1,
        });
    }
    let (count, first) = geometry::self_intersections(&clean);
    if let Some(x) = first {
        return Err(Problem::RingSelfIntersects {
            ring: at,
            count,
            first_edge: original[x.first_edge],
            second_edge: original[x.second_edge],
            at: x.at,
        });
    }
    Ok(clean)
}

/// Margin of the far-outside rule: 10 % of the parent's larger side, at least about 100 m.
fn far_margin(parent: BBox) -> f64 {
    (0.1 * parent.width().max(parent.height())).max(0.001)
}

fn far_outside(
    child: &MultiPolygon,
    parent: &MultiPolygon,
    parent_rec: &Record,
) -> Option<Problem> {
    let margin = far_margin(parent.bbox());
    let zone = parent.bbox().expanded(margin, margin);
    let (mut vertices, mut inside, mut sum_lon, mut sum_lat) = (0usize, 0usize, 0.0, 0.0);
    for v in child.exterior_vertices() {
        vertices += 1;
        inside += usize::from(zone.contains(v));
        sum_lon += v.lon;
        sum_lat += v.lat;
    }
    if vertices == 0 {
        return None;
    }
    let centroid = Point::new(sum_lon / vertices as f64, sum_lat / vertices as f64);
    let centroid_inside = zone.contains(centroid);
    (!centroid_inside || inside * 2 < vertices).then(|| Problem::FarOutsideParent {
        parent: parent_rec.code.clone().unwrap_or_default(),
        centroid,
        centroid_inside,
        inside,
        vertices,
        margin_deg: margin,
    })
}

/// Reports each parent cycle once, on its member that comes first in the input.
fn report_cycles(records: &[Record], parent_of: &[Option<usize>], issues: &mut Vec<Issue>) {
    const NEW: u8 = 0;
    const ON_PATH: u8 = 1;
    const DONE: u8 = 2;
    let mut state = vec![NEW; records.len()];
    let mut path = Vec::new();
    for start in 0..records.len() {
        path.clear();
        let mut at = Some(start);
        while let Some(i) = at {
            match state[i] {
                NEW => {
                    state[i] = ON_PATH;
                    path.push(i);
                    at = parent_of[i];
                }
                ON_PATH => {
                    let from = path.iter().position(|&x| x == i).unwrap_or(0);
                    let cycle = &path[from..];
                    let first = cycle
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, x)| **x)
                        .map_or(0, |(k, _)| k);
                    let code = |x: usize| records[x].code.clone().unwrap_or_default();
                    let mut members: Vec<String> = cycle[first..]
                        .iter()
                        .chain(&cycle[..first])
                        .map(|&x| code(x))
                        .collect();
                    members.push(code(cycle[first]));
                    issues.push(records[cycle[first]].issue(Problem::Cycle { members }));
                    break;
                }
                _ => break,
            }
        }
        for &i in &path {
            state[i] = DONE;
        }
    }
}
