//! Planar geometry on longitude/latitude degrees: points, boxes, polygons with holes,
//! point-in-polygon and the ring checks the importer runs.
//!
//! Cells are a few hundred metres to a few tens of kilometres across, so treating degrees as a
//! plane is exact enough for "which cell is this point in": no cell boundary is long enough for
//! the difference between a straight line in degrees and a geodesic to matter.
//!
//! Invariants of the types here, established by the importer and relied on by the index:
//! every ring is closed (first point equals last), has at least 4 points, no two consecutive
//! points are equal, and it does not cross or touch itself. Ring orientation is *not* required
//! (RFC 7946 asks for counter-clockwise exteriors, but consumer-map exports ignore that) because
//! the even-odd test below does not depend on it.

use std::fmt;

/// A position in degrees: longitude east, latitude north.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    /// Longitude in degrees, east positive.
    pub lon: f64,
    /// Latitude in degrees, north positive.
    pub lat: f64,
}

impl Point {
    /// A point at `lon`, `lat` (degrees).
    pub const fn new(lon: f64, lat: f64) -> Self {
        Self { lon, lat }
    }
}

impl fmt::Display for Point {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({}, {})", self.lon, self.lat)
    }
}

/// An axis-aligned bounding box, inclusive on every side.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BBox {
    /// South-west corner.
    pub min: Point,
    /// North-east corner.
    pub max: Point,
}

impl BBox {
    /// The box that contains nothing; `union` with it is the identity.
    pub const EMPTY: Self = Self {
        min: Point::new(f64::INFINITY, f64::INFINITY),
        max: Point::new(f64::NEG_INFINITY, f64::NEG_INFINITY),
    };

    /// The smallest box around `points` (`EMPTY` for none).
    pub fn of(points: &[Point]) -> Self {
        points.iter().fold(Self::EMPTY, |b, p| b.including(*p))
    }

    /// This box grown to include `p`.
    #[must_use]
    pub fn including(self, p: Point) -> Self {
        Self {
            min: Point::new(self.min.lon.min(p.lon), self.min.lat.min(p.lat)),
            max: Point::new(self.max.lon.max(p.lon), self.max.lat.max(p.lat)),
        }
    }

    /// The smallest box containing both.
    #[must_use]
    pub fn union(self, other: Self) -> Self {
        Self {
            min: Point::new(
                self.min.lon.min(other.min.lon),
                self.min.lat.min(other.min.lat),
            ),
            max: Point::new(
                self.max.lon.max(other.max.lon),
                self.max.lat.max(other.max.lat),
            ),
        }
    }

    /// This box grown by `by_lon` degrees east and west and `by_lat` north and south.
    #[must_use]
    pub fn expanded(self, by_lon: f64, by_lat: f64) -> Self {
        Self {
            min: Point::new(self.min.lon - by_lon, self.min.lat - by_lat),
            max: Point::new(self.max.lon + by_lon, self.max.lat + by_lat),
        }
    }

    /// Whether `p` lies in the box or on its edge.
    pub fn contains(&self, p: Point) -> bool {
        p.lon >= self.min.lon
            && p.lon <= self.max.lon
            && p.lat >= self.min.lat
            && p.lat <= self.max.lat
    }

    /// Width in degrees of longitude (negative for `EMPTY`).
    pub fn width(&self) -> f64 {
        self.max.lon - self.min.lon
    }

    /// Height in degrees of latitude (negative for `EMPTY`).
    pub fn height(&self) -> f64 {
        self.max.lat - self.min.lat
    }
}

/// One polygon: an exterior ring and zero or more holes, each ring closed.
#[derive(Clone, Debug, PartialEq)]
pub struct Polygon {
    exterior: Vec<Point>,
    holes: Vec<Vec<Point>>,
    bbox: BBox,
}

impl Polygon {
    /// A polygon from closed rings. The importer checks the rings first; code that builds
    /// polygons itself (the synthetic generator) goes through the same checks when its cells are
    /// validated, so an invalid polygon never reaches the index.
    pub fn new(exterior: Vec<Point>, holes: Vec<Vec<Point>>) -> Self {
        let bbox = BBox::of(&exterior);
        Self {
            exterior,
            holes,
            bbox,
        }
    }

    /// The exterior ring, closed.
    pub fn exterior(&self) -> &[Point] {
        &self.exterior
    }

    /// The holes, each closed.
    pub fn holes(&self) -> &[Vec<Point>] {
        &self.holes
    }

    /// Bounding box of the exterior ring.
    pub fn bbox(&self) -> BBox {
        self.bbox
    }

    /// Every ring, exterior first.
    pub fn rings(&self) -> impl Iterator<Item = &[Point]> {
        std::iter::once(self.exterior.as_slice()).chain(self.holes.iter().map(Vec::as_slice))
    }

    /// Whether `p` is inside: inside the exterior and in no hole, by the boundary rule of
    /// [`ring_contains`].
    pub fn contains(&self, p: Point) -> bool {
        self.bbox.contains(p)
            && ring_contains(&self.exterior, p)
            && !self.holes.iter().any(|h| ring_contains(h, p))
    }
}

/// A cell's area: one or more polygons (GeoJSON `Polygon` is a one-element `MultiPolygon`).
#[derive(Clone, Debug, PartialEq)]
pub struct MultiPolygon {
    polygons: Vec<Polygon>,
    bbox: BBox,
}

impl MultiPolygon {
    /// An area made of `polygons`.
    pub fn new(polygons: Vec<Polygon>) -> Self {
        let bbox = polygons.iter().fold(BBox::EMPTY, |b, p| b.union(p.bbox()));
        Self { polygons, bbox }
    }

    /// The polygons.
    pub fn polygons(&self) -> &[Polygon] {
        &self.polygons
    }

    /// Bounding box of all polygons.
    pub fn bbox(&self) -> BBox {
        self.bbox
    }

    /// Whether `p` is inside any of the polygons.
    pub fn contains(&self, p: Point) -> bool {
        self.bbox.contains(p) && self.polygons.iter().any(|poly| poly.contains(p))
    }

    /// Every point of every exterior ring, without the closing repeat of each ring.
    pub fn exterior_vertices(&self) -> impl Iterator<Item = Point> + '_ {
        self.polygons.iter().flat_map(|p| {
            p.exterior[..p.exterior.len().saturating_sub(1)]
                .iter()
                .copied()
        })
    }
}

/// Even-odd point-in-ring test for a closed ring.
///
/// Boundary rule: each edge is treated as half-open in latitude and a point exactly on an edge
/// counts as lying west of it. The effect is that a point on a boundary shared by two cells is
/// inside exactly one of them — the one to its east (for a north-south edge) or to its north
/// (for an east-west edge) — so every point of a partition belongs to one cell, never zero or
/// two. This holds only if both cells compute the same crossing, so the edge is always taken
/// from its southern end: a neighbour that lists the shared edge in the opposite direction gets
/// a bit-identical answer.
#[inline]
pub fn ring_contains(ring: &[Point], p: Point) -> bool {
    let mut inside = false;
    for w in ring.windows(2) {
        let (a, b) = (w[0], w[1]);
        if (a.lat > p.lat) != (b.lat > p.lat) {
            let (s, n) = if a.lat < b.lat { (a, b) } else { (b, a) };
            let x = s.lon + (p.lat - s.lat) * (n.lon - s.lon) / (n.lat - s.lat);
            if p.lon < x {
                inside = !inside;
            }
        }
    }
    inside
}

/// A place where a ring touches or crosses itself: the two edges, each named by the index of
/// its first point.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct SelfIntersection {
    /// Index of the first point of the earlier edge.
    pub first_edge: usize,
    /// Index of the first point of the later edge.
    pub second_edge: usize,
    /// Where they meet (a shared point when they touch or overlap).
    pub at: Point,
}

/// Drops consecutive repeated points, keeping for each survivor its index in `ring`.
/// Exports from drawing tools often repeat a point; that is harmless for the area, but it would
/// make two edges that are really neighbours look non-adjacent to the self-intersection test.
pub(crate) fn dedup_ring(ring: &[Point]) -> (Vec<Point>, Vec<usize>) {
    let mut points = Vec::with_capacity(ring.len());
    let mut index = Vec::with_capacity(ring.len());
    for (i, p) in ring.iter().enumerate() {
        if points.last() != Some(p) {
            points.push(*p);
            index.push(i);
        }
    }
    (points, index)
}

/// Counts the places a closed, de-duplicated ring touches or crosses itself and returns the
/// first (lowest pair of edge indices) with the count.
///
/// A sweep over edges sorted by west end: only edges whose longitude ranges overlap are tested,
/// so ordinary rings cost about n log n; a pathological ring is O(n²), which an import can
/// afford. Touching counts (a ring that meets itself at a point is two rings, and the even-odd
/// rule would then disagree with how the map draws it), and so does an edge that doubles back
/// along its neighbour (a spike of zero width).
pub(crate) fn self_intersections(ring: &[Point]) -> (usize, Option<SelfIntersection>) {
    let n = ring.len().saturating_sub(1); // edges; the ring is closed
    if n < 3 {
        return (0, None);
    }
    let edge = |i: usize| (ring[i], ring[i + 1]);
    let mut order: Vec<usize> = (0..n).collect();
    let west = |i: usize| ring[i].lon.min(ring[i + 1].lon);
    order.sort_by(|&a, &b| west(a).total_cmp(&west(b)));
    let mut count = 0;
    let mut first: Option<SelfIntersection> = None;
    for (k, &i) in order.iter().enumerate() {
        let (a, b) = edge(i);
        let east = a.lon.max(b.lon);
        for &j in &order[k + 1..] {
            if west(j) > east {
                break;
            }
            let (lo, hi) = (i.min(j), i.max(j));
            let (c, d) = edge(j);
            let hit = if hi == lo + 1 {
                // Neighbours share ring[hi]; they conflict only by doubling back.
                doubles_back(ring[lo], ring[hi], ring[hi + 1]).then_some(ring[hi])
            } else if lo == 0 && hi == n - 1 {
                // The closing edge and the first share ring[0].
                doubles_back(ring[hi], ring[0], ring[1]).then_some(ring[0])
            } else {
                segments_meet(a, b, c, d)
            };
            if let Some(at) = hit {
                count += 1;
                if first.is_none_or(|f| (lo, hi) < (f.first_edge, f.second_edge)) {
                    first = Some(SelfIntersection {
                        first_edge: lo,
                        second_edge: hi,
                        at,
                    });
                }
            }
        }
    }
    (count, first)
}

fn orient(a: Point, b: Point, c: Point) -> f64 {
    // Relative to `a`, so the products stay small and exact for nearby points.
    (b.lon - a.lon) * (c.lat - a.lat) - (b.lat - a.lat) * (c.lon - a.lon)
}

/// Edges a→b and b→c overlap beyond b: collinear with c pointing back towards a.
fn doubles_back(a: Point, b: Point, c: Point) -> bool {
    orient(a, b, c) == 0.0
        && (a.lon - b.lon) * (c.lon - b.lon) + (a.lat - b.lat) * (c.lat - b.lat) > 0.0
}

/// Whether p lies within the box of segment a–b (used once p is known to be collinear).
fn within(a: Point, b: Point, p: Point) -> bool {
    p.lon >= a.lon.min(b.lon)
        && p.lon <= a.lon.max(b.lon)
        && p.lat >= a.lat.min(b.lat)
        && p.lat <= a.lat.max(b.lat)
}

/// Where closed segments a–b and c–d meet, if they do.
fn segments_meet(a: Point, b: Point, c: Point, d: Point) -> Option<Point> {
    let d1 = orient(c, d, a);
    let d2 = orient(c, d, b);
    let d3 = orient(a, b, c);
    let d4 = orient(a, b, d);
    if ((d1 > 0.0 && d2 < 0.0) || (d1 < 0.0 && d2 > 0.0))
        && ((d3 > 0.0 && d4 < 0.0) || (d3 < 0.0 && d4 > 0.0))
    {
        let t = d1 / (d1 - d2);
        return Some(Point::new(
            a.lon + t * (b.lon - a.lon),
            a.lat + t * (b.lat - a.lat),
        ));
    }
    if d1 == 0.0 && within(c, d, a) {
        return Some(a);
    }
    if d2 == 0.0 && within(c, d, b) {
        return Some(b);
    }
    if d3 == 0.0 && within(a, b, c) {
        return Some(c);
    }
    if d4 == 0.0 && within(a, b, d) {
        return Some(d);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(points: &[(f64, f64)]) -> Vec<Point> {
        points.iter().map(|&(x, y)| Point::new(x, y)).collect()
    }

    fn square(x0: f64, y0: f64, x1: f64, y1: f64) -> Vec<Point> {
        ring(&[(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)])
    }

    #[test]
    fn point_in_a_hole_is_outside_the_polygon() {
        let poly = Polygon::new(
            square(0.0, 0.0, 10.0, 10.0),
            vec![square(4.0, 4.0, 6.0, 6.0)],
        );
        assert!(poly.contains(Point::new(2.0, 2.0)));
        assert!(!poly.contains(Point::new(5.0, 5.0)));
        assert!(!poly.contains(Point::new(11.0, 5.0)));
    }

    #[test]
    fn an_island_in_a_hole_is_inside_the_multipolygon() {
        let donut = Polygon::new(
            square(0.0, 0.0, 10.0, 10.0),
            vec![square(3.0, 3.0, 7.0, 7.0)],
        );
        let island = Polygon::new(square(4.0, 4.0, 6.0, 6.0), vec![]);
        let area = MultiPolygon::new(vec![donut, island]);
        assert!(area.contains(Point::new(1.0, 1.0)));
        assert!(!area.contains(Point::new(3.5, 5.0)));
        assert!(area.contains(Point::new(5.0, 5.0)));
    }

    #[test]
    fn a_point_on_a_shared_edge_belongs_to_exactly_one_neighbour() {
        // West and east halves share the edge lon = 5, listed in opposite directions.
        let west = square(0.0, 0.0, 5.0, 10.0);
        let east = ring(&[
            (5.0, 10.0),
            (5.0, 0.0),
            (10.0, 0.0),
            (10.0, 10.0),
            (5.0, 10.0),
        ]);
        // South and north halves share lat = 5.
        let south = square(0.0, 0.0, 10.0, 5.0);
        let north = square(0.0, 5.0, 10.0, 10.0);
        for p in [
            Point::new(5.0, 3.0),
            Point::new(5.0, 0.0),
            Point::new(5.0, 5.0),
        ] {
            let hits = usize::from(ring_contains(&west, p)) + usize::from(ring_contains(&east, p));
            assert_eq!(hits, 1, "{p}");
        }
        // The rule: east of a north-south edge wins, north of an east-west edge wins.
        assert!(ring_contains(&east, Point::new(5.0, 3.0)));
        let p = Point::new(3.0, 5.0);
        assert!(ring_contains(&north, p) && !ring_contains(&south, p));
    }

    #[test]
    fn a_slanted_shared_edge_gives_the_same_answer_from_both_sides() {
        let a = Point::new(102.123456789, 25.1);
        let b = Point::new(102.987654321, 25.9);
        let west = vec![
            Point::new(101.0, 25.1),
            a,
            b,
            Point::new(101.0, 25.9),
            Point::new(101.0, 25.1),
        ];
        let east = vec![b, a, Point::new(104.0, 25.1), Point::new(104.0, 25.9), b];
        for k in 0..1000 {
            let t = f64::from(k) / 1000.0;
            let p = Point::new(a.lon + t * (b.lon - a.lon), a.lat + t * (b.lat - a.lat));
            assert_eq!(
                usize::from(ring_contains(&west, p)) + usize::from(ring_contains(&east, p)),
                1,
                "{p}"
            );
        }
    }

    #[test]
    fn a_figure_eight_crosses_itself_once() {
        let bowtie = ring(&[(0.0, 0.0), (2.0, 2.0), (2.0, 0.0), (0.0, 2.0), (0.0, 0.0)]);
        let (count, first) = self_intersections(&bowtie);
        assert_eq!(count, 1);
        let first = first.expect("crossing");
        assert_eq!((first.first_edge, first.second_edge), (0, 2));
        assert!((first.at.lon - 1.0).abs() < 1e-12 && (first.at.lat - 1.0).abs() < 1e-12);
    }

    #[test]
    fn simple_rings_do_not_intersect_themselves() {
        assert_eq!(self_intersections(&square(0.0, 0.0, 1.0, 1.0)).0, 0);
        let l_shape = ring(&[
            (0.0, 0.0),
            (2.0, 0.0),
            (2.0, 1.0),
            (1.0, 1.0),
            (1.0, 2.0),
            (0.0, 2.0),
            (0.0, 0.0),
        ]);
        assert_eq!(self_intersections(&l_shape).0, 0);
    }

    #[test]
    fn a_ring_touching_itself_or_doubling_back_is_reported() {
        // Vertex (1, 1) touches the opposite edge's interior.
        let touch = ring(&[
            (0.0, 0.0),
            (2.0, 0.0),
            (1.0, 0.0001),
            (2.0, 2.0),
            (0.0, 2.0),
            (1.0, 0.0),
            (0.0, 0.0),
        ]);
        assert!(self_intersections(&touch).0 > 0);
        let spike = ring(&[
            (0.0, 0.0),
            (2.0, 0.0),
            (3.0, 0.0),
            (2.5, 0.0),
            (2.0, 2.0),
            (0.0, 0.0),
        ]);
        assert!(self_intersections(&spike).0 > 0);
    }

    #[test]
    fn repeated_points_are_dropped_with_their_original_indices_kept() {
        let r = ring(&[(0.0, 0.0), (1.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 0.0)]);
        let (points, index) = dedup_ring(&r);
        assert_eq!(points.len(), 4);
        assert_eq!(index, vec![0, 1, 3, 4]);
    }
}
