//! Point → deepest grid cell.
//!
//! One R-tree per level over the bounding boxes of the cells' polygons, queried from the
//! deepest level up: the first level where a polygon really contains the point (exact even-odd
//! test, holes respected) answers. A point in a micro-grid costs one descent of the largest
//! tree and a point-in-polygon test or two; only points outside every micro-grid look further
//! up, in trees a fraction of the size. (A single tree over all levels was tried and was slower
//! by half: county and township boxes spread over every node of the bulk-loaded tree, so each
//! descent visits far more nodes.)
//!
//! The answer is the same as scanning every cell: among the cells that contain the point, those
//! of the deepest level, and among those (overlapping siblings in a sloppy file) the smallest
//! [`CellId`], i.e. the one that comes first in the file. A point on a boundary shared by two
//! cells belongs to exactly one of them, by the rule of
//! [`ring_contains`](super::geometry::ring_contains).
//!
//! Lookups are bound by memory latency, not arithmetic, so the layout is about cache lines:
//! vertices live in one flat array; each tree entry carries its exterior ring's range and its
//! holes' range, so the exact test follows no further indirection; and the boxes in the tree
//! are `f32`, rounded outwards, which keeps nodes small. The rounding only ever widens a box (by
//! under a metre at these longitudes); the exact test runs on the `f64` vertices. (Laying the
//! vertices out in the trees' leaf order instead of file order was tried: no measurable gain.)

use std::fmt;
use std::ops::ControlFlow;

use rstar::{AABB, RStarInsertionStrategy, RTree, RTreeObject, RTreeParams};

use super::geometry::{BBox, Point, ring_contains};
use super::hierarchy::{Cell, CellId, Hierarchy};
use super::level::Level;

/// Node size of the R-trees: 12 measured best among 6 (rstar's default), 8, 12, 16 and 24 for a
/// read-only, bulk-loaded index of 100,000 cells (`cargo bench -p hub --bench grid`).
#[derive(Clone, Copy, Debug)]
struct Params;

impl RTreeParams for Params {
    const MIN_SIZE: usize = 4;
    const MAX_SIZE: usize = 12;
    const REINSERTION_COUNT: usize = 3;
    type DefaultInsertionStrategy = RStarInsertionStrategy;
}

/// One polygon of one cell in a level's R-tree, with where to find its rings.
#[derive(Clone, Debug)]
struct Entry {
    envelope: AABB<[f32; 2]>,
    cell: u32,
    /// `points[exterior.0..exterior.1]` is the closed exterior ring.
    exterior: (u32, u32),
    /// `holes[holes.0..holes.1]` are the ranges of its holes in `points`.
    holes: (u32, u32),
}

impl RTreeObject for Entry {
    type Envelope = AABB<[f32; 2]>;

    fn envelope(&self) -> Self::Envelope {
        self.envelope
    }
}

/// `x` as an `f32` no greater than it.
fn f32_down(x: f64) -> f32 {
    let y = x as f32;
    if f64::from(y) > x { y.next_down() } else { y }
}

/// `x` as an `f32` no less than it.
fn f32_up(x: f64) -> f32 {
    let y = x as f32;
    if f64::from(y) < x { y.next_up() } else { y }
}

/// The `f32` box containing `b`. A point in `b`, rounded to nearest `f32`, is in it too,
/// because rounding to nearest is monotonic and never goes below rounding down (or above
/// rounding up).
fn envelope(b: BBox) -> AABB<[f32; 2]> {
    AABB::from_corners(
        [f32_down(b.min.lon), f32_down(b.min.lat)],
        [f32_up(b.max.lon), f32_up(b.max.lat)],
    )
}

/// The grid lookup: a [`Hierarchy`] and the indexes over it. Immutable and `Sync`: share one
/// behind an `Arc` between threads, and swap in a new one on re-import.
pub struct GridIndex {
    hierarchy: Hierarchy,
    /// Deepest level first; only levels that have cells.
    levels: Vec<RTree<Entry, Params>>,
    /// `(start, end)` in `points` of every hole.
    holes: Vec<(u32, u32)>,
    points: Vec<Point>,
}

impl fmt::Debug for GridIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The trees and vertex arrays are too large to print usefully.
        f.debug_struct("GridIndex")
            .field("cells", &self.hierarchy.len())
            .field(
                "tree_sizes",
                &self.levels.iter().map(RTree::size).collect::<Vec<_>>(),
            )
            .field("holes", &self.holes.len())
            .field("points", &self.points.len())
            .finish()
    }
}

impl GridIndex {
    /// Indexes a validated hierarchy.
    pub fn new(hierarchy: Hierarchy) -> Self {
        let mut holes = Vec::new();
        let mut points = Vec::new();
        let mut per_level: Vec<Vec<Entry>> = vec![Vec::new(); Level::ALL.len()];
        // Validation caps the cell count at u32::MAX; vertex counts that large would not fit in
        // memory as `Point`s, so the casts below are exact.
        let push_ring = |points: &mut Vec<Point>, ring: &[Point]| {
            let start = points.len() as u32;
            points.extend_from_slice(ring);
            (start, points.len() as u32)
        };
        for cell in hierarchy.cells() {
            for poly in cell.area().polygons() {
                let exterior = push_ring(&mut points, poly.exterior());
                let first_hole = holes.len() as u32;
                for hole in poly.holes() {
                    let range = push_ring(&mut points, hole);
                    holes.push(range);
                }
                per_level[cell.level().depth()].push(Entry {
                    envelope: envelope(poly.bbox()),
                    cell: cell.id().0,
                    exterior,
                    holes: (first_hole, holes.len() as u32),
                });
            }
        }
        let levels = per_level
            .into_iter()
            .rev()
            .filter(|entries| !entries.is_empty())
            .map(RTree::bulk_load_with_params)
            .collect();
        Self {
            hierarchy,
            levels,
            holes,
            points,
        }
    }

    /// The deepest cell containing (`lon`, `lat`) in WGS-84 degrees, or `None` if no cell does
    /// (or a coordinate is not finite).
    pub fn locate(&self, lon: f64, lat: f64) -> Option<CellId> {
        self.locate_point(Point::new(lon, lat))
    }

    /// [`locate`](Self::locate) for a [`Point`].
    pub fn locate_point(&self, p: Point) -> Option<CellId> {
        if !p.lon.is_finite() || !p.lat.is_finite() {
            return None;
        }
        let query = AABB::from_point([p.lon as f32, p.lat as f32]);
        for tree in &self.levels {
            let mut best: Option<u32> = None;
            let _ = tree.locate_in_envelope_intersecting_int(query, |e| {
                // A smaller id at this level already won; no need to test this polygon.
                if best.is_none_or(|b| e.cell < b) && self.contains(e, p) {
                    best = Some(e.cell);
                }
                ControlFlow::<()>::Continue(())
            });
            if let Some(b) = best {
                return Some(CellId(b));
            }
        }
        None
    }

    /// The exact test for one polygon.
    fn contains(&self, e: &Entry, p: Point) -> bool {
        let ring = |(s, e): (u32, u32)| &self.points[s as usize..e as usize];
        ring_contains(ring(e.exterior), p)
            && !self.holes[e.holes.0 as usize..e.holes.1 as usize]
                .iter()
                .any(|&h| ring_contains(ring(h), p))
    }

    /// The hierarchy this index was built from.
    pub fn hierarchy(&self) -> &Hierarchy {
        &self.hierarchy
    }

    /// The cell behind `id`.
    pub fn cell(&self, id: CellId) -> Option<&Cell> {
        self.hierarchy.get(id)
    }

    /// The cell's parent; `None` at the top.
    pub fn parent(&self, id: CellId) -> Option<CellId> {
        self.hierarchy.parent(id)
    }

    /// From the top-level ancestor down to `id`.
    pub fn path(&self, id: CellId) -> Vec<CellId> {
        self.hierarchy.path(id)
    }

    /// The cell with this code.
    pub fn find(&self, code: &str) -> Option<CellId> {
        self.hierarchy.find(code)
    }

    /// Number of cells.
    pub fn len(&self) -> usize {
        self.hierarchy.len()
    }

    /// Whether there are no cells (every lookup answers `None`).
    pub fn is_empty(&self) -> bool {
        self.hierarchy.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grid::{CellSpec, CoordSystem, MultiPolygon, Polygon};

    fn square(x0: f64, y0: f64, x1: f64, y1: f64) -> Vec<Point> {
        [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]
            .iter()
            .map(|&(x, y)| Point::new(x, y))
            .collect()
    }

    fn spec(code: &str, level: Level, parent: Option<&str>, polys: Vec<Polygon>) -> CellSpec {
        CellSpec {
            code: code.to_owned(),
            name: code.to_owned(),
            level,
            parent: parent.map(str::to_owned),
            area: MultiPolygon::new(polys),
        }
    }

    /// County 0..10 × 0..10; township the west half; a grid in it with a hole; a micro-grid.
    fn sample() -> GridIndex {
        let specs = vec![
            spec(
                "c",
                Level::County,
                None,
                vec![Polygon::new(square(100.0, 20.0, 110.0, 30.0), vec![])],
            ),
            spec(
                "t",
                Level::Township,
                Some("c"),
                vec![Polygon::new(square(100.0, 20.0, 105.0, 30.0), vec![])],
            ),
            spec(
                "g",
                Level::Grid,
                Some("t"),
                vec![Polygon::new(
                    square(101.0, 21.0, 104.0, 24.0),
                    vec![square(102.0, 22.0, 103.0, 23.0)],
                )],
            ),
            spec(
                "m",
                Level::MicroGrid,
                Some("g"),
                vec![Polygon::new(square(101.0, 21.0, 102.0, 22.0), vec![])],
            ),
        ];
        GridIndex::new(Hierarchy::from_specs(specs, CoordSystem::Wgs84).expect("valid"))
    }

    fn code(index: &GridIndex, lon: f64, lat: f64) -> Option<&str> {
        index
            .locate(lon, lat)
            .and_then(|id| index.cell(id))
            .map(Cell::code)
    }

    #[test]
    fn a_point_resolves_to_the_deepest_cell_containing_it() {
        let index = sample();
        assert_eq!(code(&index, 101.5, 21.5), Some("m"));
        assert_eq!(code(&index, 103.5, 23.5), Some("g"));
        assert_eq!(code(&index, 104.5, 25.0), Some("t"));
        assert_eq!(code(&index, 108.0, 25.0), Some("c"));
        assert_eq!(code(&index, 120.0, 25.0), None);
    }

    #[test]
    fn a_point_in_a_hole_falls_back_to_the_parent() {
        assert_eq!(code(&sample(), 102.5, 22.5), Some("t"));
    }

    #[test]
    fn path_runs_from_the_top_down_and_skips_absent_levels() {
        let index = sample();
        let m = index.find("m").expect("m");
        let path: Vec<&str> = index
            .path(m)
            .into_iter()
            .filter_map(|id| index.cell(id).map(Cell::code))
            .collect();
        assert_eq!(path, ["c", "t", "g", "m"]);
        assert_eq!(index.parent(m), index.find("g"));
        assert_eq!(index.parent(index.find("c").expect("c")), None);
    }

    #[test]
    fn non_finite_coordinates_locate_nowhere() {
        assert_eq!(sample().locate(f64::NAN, 25.0), None);
    }
}
