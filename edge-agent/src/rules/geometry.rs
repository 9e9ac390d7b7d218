//! Plane geometry for rules, in **pixel coordinates of the frame the detector saw**: x grows to
//! the right from the left edge, y grows downwards from the top edge, the same space as
//! [`protocol::Detection::box_xyxy`]. Zones and lines in a camera's config are therefore drawn on
//! a frame at the camera's working resolution; changing that resolution means redrawing them.
//!
//! Products of coordinates are computed in `f64`: at a few thousand pixels, `f32` cross products
//! lose the precision needed to tell which side of a line a point is on when it is close to it.

use serde::{Deserialize, Serialize};

/// A point in frame pixels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// Pixels from the left edge.
    pub x: f32,
    /// Pixels from the top edge.
    pub y: f32,
}

impl Point {
    /// The point `(x, y)`.
    pub fn new(x: f32, y: f32) -> Self {
        Self { x, y }
    }
}

impl From<[f32; 2]> for Point {
    fn from([x, y]: [f32; 2]) -> Self {
        Self { x, y }
    }
}

/// `(a - o) x (b - o)`: positive when `b` lies clockwise of `a` as seen on screen (y down).
fn cross(o: Point, a: Point, b: Point) -> f64 {
    let (ox, oy) = (f64::from(o.x), f64::from(o.y));
    (f64::from(a.x) - ox) * (f64::from(b.y) - oy) - (f64::from(a.y) - oy) * (f64::from(b.x) - ox)
}

/// A simple polygon (no holes). Self-intersecting outlines are accepted and interpreted with the
/// even-odd rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Polygon {
    vertices: Vec<Point>,
}

impl Polygon {
    /// A polygon with these vertices, in order (either winding). Does not check anything; see
    /// [`polygon_problems`].
    pub fn new(vertices: Vec<Point>) -> Self {
        Self { vertices }
    }

    /// The vertices, in order.
    pub fn vertices(&self) -> &[Point] {
        &self.vertices
    }

    /// Whether `p` is inside (even-odd ray casting). A point exactly on an edge may be reported
    /// either way; zones use inertia, so that cannot make an alert flicker.
    pub fn contains(&self, p: Point) -> bool {
        let v = &self.vertices;
        let (px, py) = (f64::from(p.x), f64::from(p.y));
        let mut inside = false;
        let mut j = v.len().wrapping_sub(1);
        for i in 0..v.len() {
            let (xi, yi) = (f64::from(v[i].x), f64::from(v[i].y));
            let (xj, yj) = (f64::from(v[j].x), f64::from(v[j].y));
            // Half-open in y so a ray through a vertex counts the two edges meeting there once.
            if (yi > py) != (yj > py) {
                let x_at = xi + (py - yi) * (xj - xi) / (yj - yi);
                if px < x_at {
                    inside = !inside;
                }
            }
            j = i;
        }
        inside
    }

    /// Area in square pixels (shoelace formula; absolute value, so either winding works).
    pub fn area(&self) -> f64 {
        let v = &self.vertices;
        let n = v.len();
        let twice: f64 = (0..n)
            .map(|i| {
                let (a, b) = (v[i], v[(i + 1) % n]);
                f64::from(a.x) * f64::from(b.y) - f64::from(b.x) * f64::from(a.y)
            })
            .sum();
        twice.abs() / 2.0
    }
}

/// What is wrong with a polygon given as config, if anything, as messages without a path.
pub fn polygon_problems(points: &[[f32; 2]]) -> Vec<String> {
    let mut problems = Vec::new();
    if points.len() < 3 {
        problems.push(format!("needs at least 3 points, got {}", points.len()));
        return problems;
    }
    if let Some(i) = points.iter().position(|p| !p.iter().all(|c| c.is_finite())) {
        problems.push(format!("point {i} is not a finite number"));
        return problems;
    }
    let poly = Polygon::new(points.iter().copied().map(Point::from).collect());
    if poly.area() < 1.0 {
        problems.push("encloses no area (all points on one line?)".to_string());
    }
    problems
}

/// The two sides of a [`Line`].
///
/// Standing on screen at the line's `start` and facing its `end`, side **A** is on your left and
/// side **B** on your right. For a line drawn left to right across the screen, A is above it and
/// B below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// Left of `start -> end`.
    A,
    /// Right of `start -> end`.
    B,
}

/// The direction of a line crossing: from which side to which.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Crossing {
    /// From side A to side B.
    AToB,
    /// From side B to side A.
    BToA,
}

/// A line segment from `start` to `end`, which objects may cross.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Line {
    /// One end; with `end`, fixes which side is A (see [`Side`]).
    pub start: Point,
    /// The other end.
    pub end: Point,
}

impl Line {
    /// Which side of the line's infinite extension `p` is on, or `None` when it is within
    /// `dead_band` pixels of it (touching the line is not being across it).
    pub fn side_of(&self, p: Point, dead_band: f32) -> Option<Side> {
        let c = cross(self.start, self.end, p);
        let len = f64::from(self.end.x - self.start.x).hypot(f64::from(self.end.y - self.start.y));
        let distance = c.abs() / len;
        if distance <= f64::from(dead_band) || c == 0.0 {
            None
        } else if c < 0.0 {
            // Negative cross product = counter-clockwise on a y-down screen = the left hand.
            Some(Side::A)
        } else {
            Some(Side::B)
        }
    }

    /// Whether a path straight from `from` to `to` passes between `start` and `end` (inclusive),
    /// i.e. crosses the segment rather than its extension. Only meaningful when `from` and `to`
    /// are on opposite sides of the line.
    pub fn passes_between_ends(&self, from: Point, to: Point) -> bool {
        let s = cross(from, to, self.start);
        let e = cross(from, to, self.end);
        s * e <= 0.0
    }

    /// The crossing made by moving from `from` to `to`, if the move goes from one side strictly
    /// to the other, through the segment. Points within `dead_band` of the line are on neither
    /// side, so a move that merely touches the line is no crossing.
    pub fn crossing(&self, from: Point, to: Point, dead_band: f32) -> Option<Crossing> {
        let (a, b) = (self.side_of(from, dead_band)?, self.side_of(to, dead_band)?);
        if a == b || !self.passes_between_ends(from, to) {
            return None;
        }
        Some(match a {
            Side::A => Crossing::AToB,
            Side::B => Crossing::BToA,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square() -> Polygon {
        Polygon::new(
            [[0.0, 0.0], [10.0, 0.0], [10.0, 10.0], [0.0, 10.0]]
                .map(Point::from)
                .to_vec(),
        )
    }

    #[test]
    fn points_inside_a_square_are_inside_and_outside_are_not() {
        let sq = square();
        assert!(sq.contains(Point::new(5.0, 5.0)));
        assert!(sq.contains(Point::new(0.5, 9.5)));
        assert!(!sq.contains(Point::new(-0.5, 5.0)));
        assert!(!sq.contains(Point::new(5.0, 10.5)));
        assert!(!sq.contains(Point::new(15.0, 5.0)));
    }

    #[test]
    fn the_notch_of_a_concave_polygon_is_outside() {
        // A "U": the notch between x 4..6 above y 5 is outside.
        let u = Polygon::new(
            [
                [0.0, 0.0],
                [4.0, 0.0],
                [4.0, 5.0],
                [6.0, 5.0],
                [6.0, 0.0],
                [10.0, 0.0],
                [10.0, 10.0],
                [0.0, 10.0],
            ]
            .map(Point::from)
            .to_vec(),
        );
        assert!(!u.contains(Point::new(5.0, 2.0)));
        assert!(u.contains(Point::new(2.0, 2.0)));
        assert!(u.contains(Point::new(5.0, 8.0)));
    }

    #[test]
    fn a_ray_through_a_vertex_is_counted_once() {
        // A diamond; the horizontal ray from (0, 5) passes exactly through vertex (10, 5).
        let d = Polygon::new(
            [[5.0, 0.0], [10.0, 5.0], [5.0, 10.0], [0.0, 5.0]]
                .map(Point::from)
                .to_vec(),
        );
        assert!(d.contains(Point::new(5.0, 5.0)));
        assert!(!d.contains(Point::new(11.0, 5.0)));
    }

    #[test]
    fn polygon_problems_catch_too_few_points_and_no_area() {
        assert_eq!(
            polygon_problems(&[[0.0, 0.0], [1.0, 1.0]]),
            ["needs at least 3 points, got 2"]
        );
        assert_eq!(
            polygon_problems(&[[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]]).len(),
            1
        );
        assert!(polygon_problems(&[[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]]).is_empty());
    }

    /// Left to right across the screen at y = 100.
    fn horizontal() -> Line {
        Line {
            start: Point::new(0.0, 100.0),
            end: Point::new(200.0, 100.0),
        }
    }

    #[test]
    fn side_a_is_above_a_line_drawn_left_to_right() {
        let l = horizontal();
        assert_eq!(l.side_of(Point::new(50.0, 90.0), 0.0), Some(Side::A));
        assert_eq!(l.side_of(Point::new(50.0, 110.0), 0.0), Some(Side::B));
        assert_eq!(l.side_of(Point::new(50.0, 100.0), 0.0), None);
        assert_eq!(
            l.side_of(Point::new(50.0, 101.5), 2.0),
            None,
            "in the dead band"
        );
    }

    #[test]
    fn reversing_the_line_swaps_the_sides() {
        let l = Line {
            start: horizontal().end,
            end: horizontal().start,
        };
        assert_eq!(l.side_of(Point::new(50.0, 90.0), 0.0), Some(Side::B));
    }

    #[test]
    fn moving_down_through_the_line_is_a_to_b_and_up_is_b_to_a() {
        let l = horizontal();
        let (above, below) = (Point::new(50.0, 90.0), Point::new(60.0, 110.0));
        assert_eq!(l.crossing(above, below, 0.0), Some(Crossing::AToB));
        assert_eq!(l.crossing(below, above, 0.0), Some(Crossing::BToA));
    }

    #[test]
    fn touching_the_line_or_passing_beside_its_ends_is_no_crossing() {
        let l = horizontal();
        let above = Point::new(50.0, 90.0);
        assert_eq!(l.crossing(above, Point::new(50.0, 100.0), 0.0), None);
        assert_eq!(l.crossing(above, Point::new(55.0, 95.0), 0.0), None);
        // Beyond the right end.
        assert_eq!(
            l.crossing(Point::new(250.0, 90.0), Point::new(250.0, 110.0), 0.0),
            None
        );
    }
}
