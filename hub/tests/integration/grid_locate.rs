//! `GridIndex::locate` against a brute-force scan of every cell, on random synthetic hierarchies.

use hub::grid::synthetic::{Synthetic, XorShift};
use hub::grid::{
    CellId, CellSpec, CoordSystem, GridIndex, Hierarchy, Level, MultiPolygon, Point, Polygon,
};
use proptest::prelude::*;

/// The deepest cell containing `p`, the first in the hierarchy among equals: the definition
/// `locate` must meet, with no index.
fn brute_force(h: &Hierarchy, p: Point) -> Option<CellId> {
    h.cells()
        .iter()
        .filter(|c| c.area().contains(p))
        .max_by_key(|c| (c.level(), std::cmp::Reverse(c.id())))
        .map(|c| c.id())
}

/// Winding number, written independently of the library's even-odd test, for points off the
/// boundary.
fn winding_inside(ring: &[Point], p: Point) -> bool {
    let mut wn = 0i32;
    for w in ring.windows(2) {
        let (a, b) = (w[0], w[1]);
        let side = (b.lon - a.lon) * (p.lat - a.lat) - (p.lon - a.lon) * (b.lat - a.lat);
        if a.lat <= p.lat {
            if b.lat > p.lat && side > 0.0 {
                wn += 1;
            }
        } else if b.lat <= p.lat && side < 0.0 {
            wn -= 1;
        }
    }
    wn != 0
}

fn independent_contains(area: &MultiPolygon, p: Point) -> bool {
    area.polygons().iter().any(|poly| {
        winding_inside(poly.exterior(), p) && !poly.holes().iter().any(|h| winding_inside(h, p))
    })
}

/// Random points over the hierarchy's box widened by 10 % (so some miss every cell), plus
/// vertices and edge midpoints of random cells (boundary points, shared by neighbours).
fn probe_points(h: &Hierarchy, seed: u64, n: usize) -> Vec<Point> {
    let mut rng = XorShift::new(seed);
    let b = h.bbox();
    let (mx, my) = (b.width() * 0.1, b.height() * 0.1);
    let mut points = Vec::with_capacity(n);
    for k in 0..n {
        let p = match k % 4 {
            0 | 1 => Point::new(
                rng.range(b.min.lon - mx, b.max.lon + mx),
                rng.range(b.min.lat - my, b.max.lat + my),
            ),
            m => {
                let cell = &h.cells()[rng.below(h.len())];
                let poly = &cell.area().polygons()[rng.below(cell.area().polygons().len())];
                let ring = poly.exterior();
                let i = rng.below(ring.len() - 1);
                if m == 2 {
                    ring[i]
                } else {
                    Point::new(
                        (ring[i].lon + ring[i + 1].lon) / 2.0,
                        (ring[i].lat + ring[i + 1].lat) / 2.0,
                    )
                }
            }
        };
        points.push(p);
    }
    points
}

/// Adds `n` sloppy cells: random rectangles inside a random cell's box, one or more levels
/// below it, overlapping whatever is there — so deepest-level and tie-break rules are exercised
/// beyond the tidy synthetic partition.
fn with_overlaps(mut specs: Vec<CellSpec>, n: usize, seed: u64) -> Vec<CellSpec> {
    let mut rng = XorShift::new(seed);
    for k in 0..n {
        let parent = &specs[rng.below(specs.len())];
        let deeper: Vec<Level> = Level::ALL
            .into_iter()
            .filter(|l| *l > parent.level)
            .collect();
        if deeper.is_empty() {
            continue;
        }
        let level = deeper[rng.below(deeper.len())];
        let b = parent.area.bbox();
        let (x0, x1) = (
            rng.range(b.min.lon, b.max.lon),
            rng.range(b.min.lon, b.max.lon),
        );
        let (y0, y1) = (
            rng.range(b.min.lat, b.max.lat),
            rng.range(b.min.lat, b.max.lat),
        );
        if x0 == x1 || y0 == y1 {
            continue;
        }
        let ring = square(x0.min(x1), y0.min(y1), x0.max(x1), y0.max(y1));
        let extra = CellSpec {
            code: format!("overlap-{k}"),
            name: format!("overlap {k}"),
            level,
            parent: Some(parent.code.clone()),
            area: MultiPolygon::new(vec![Polygon::new(ring, vec![])]),
        };
        // Somewhere in the later half of the file, so file order (the tie-break) mixes too;
        // validation accepts children before their parents.
        let at = specs.len() - rng.below(specs.len() / 2 + 1);
        specs.insert(at, extra);
    }
    specs
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn locate_equals_a_brute_force_scan_of_every_cell(
        cells in 1usize..2500,
        seed in any::<u64>(),
        edge_points in 0usize..6,
        overlaps in 0usize..40,
    ) {
        let specs = Synthetic { edge_points, ..Synthetic::new(cells, seed) }.specs();
        let specs = with_overlaps(specs, overlaps, seed.rotate_left(17));
        let h = Hierarchy::from_specs(specs, CoordSystem::Wgs84).expect("valid");
        let points = probe_points(&h, seed ^ 0x5eed, 400);
        let expected: Vec<_> = points.iter().map(|&p| brute_force(&h, p)).collect();
        let index = GridIndex::new(h);
        for (p, want) in points.iter().zip(expected) {
            prop_assert_eq!(index.locate(p.lon, p.lat), want, "at {}", p);
        }
    }

    #[test]
    fn point_in_polygon_agrees_with_an_independent_winding_number(
        cells in 1usize..800,
        seed in any::<u64>(),
    ) {
        let h = Synthetic::new(cells, seed).hierarchy().expect("valid");
        let b = h.bbox();
        let mut rng = XorShift::new(seed);
        for _ in 0..300 {
            let p = Point::new(rng.range(b.min.lon, b.max.lon), rng.range(b.min.lat, b.max.lat));
            for c in h.cells() {
                prop_assert_eq!(c.area().contains(p), independent_contains(c.area(), p), "{} at {}", c.code(), p);
            }
        }
    }
}

fn square(x0: f64, y0: f64, x1: f64, y1: f64) -> Vec<Point> {
    [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]
        .iter()
        .map(|&(x, y)| Point::new(x, y))
        .collect()
}

fn cell(code: &str, level: Level, parent: Option<&str>, ring: Vec<Point>) -> CellSpec {
    CellSpec {
        code: code.to_owned(),
        name: code.to_owned(),
        level,
        parent: parent.map(str::to_owned),
        area: MultiPolygon::new(vec![Polygon::new(ring, vec![])]),
    }
}

#[test]
fn overlapping_siblings_resolve_to_the_one_first_in_the_file() {
    let specs = vec![
        cell("v", Level::Village, None, square(102.0, 25.0, 102.1, 25.1)),
        cell(
            "g2",
            Level::Grid,
            Some("v"),
            square(102.04, 25.0, 102.1, 25.1),
        ),
        cell(
            "g1",
            Level::Grid,
            Some("v"),
            square(102.0, 25.0, 102.06, 25.1),
        ),
    ];
    let index = GridIndex::new(Hierarchy::from_specs(specs, CoordSystem::Wgs84).expect("valid"));
    let hit = index
        .locate(102.05, 25.05)
        .and_then(|id| index.cell(id))
        .map(|c| c.code().to_owned());
    assert_eq!(hit.as_deref(), Some("g2"));
}

#[test]
fn every_point_of_a_shared_boundary_lands_in_exactly_one_neighbour() {
    // A village split into two grids along a zig-zag; sample points exactly on the shared
    // vertices and assert each is located in a grid, never falling through to the village.
    let zig = [
        (102.05, 25.0),
        (102.03, 25.03),
        (102.07, 25.06),
        (102.05, 25.1),
    ];
    let to_points = |v: &[(f64, f64)]| v.iter().map(|&(x, y)| Point::new(x, y)).collect::<Vec<_>>();
    let mut west = vec![(102.0, 25.0)];
    west.extend(zig);
    west.extend([(102.0, 25.1), (102.0, 25.0)]);
    let mut east: Vec<(f64, f64)> = zig.iter().rev().copied().collect();
    east.extend([(102.1, 25.0), (102.1, 25.1)]);
    east.rotate_right(2);
    east.push(east[0]);
    let specs = vec![
        cell("v", Level::Village, None, square(102.0, 25.0, 102.1, 25.1)),
        cell("w", Level::Grid, Some("v"), to_points(&west)),
        cell("e", Level::Grid, Some("v"), to_points(&east)),
    ];
    let index = GridIndex::new(Hierarchy::from_specs(specs, CoordSystem::Wgs84).expect("valid"));
    for &(x, y) in &zig[1..3] {
        let got = index
            .locate(x, y)
            .and_then(|id| index.cell(id))
            .map(|c| c.level());
        assert_eq!(got, Some(Level::Grid), "({x}, {y})");
    }
    for k in 1..100 {
        let t = f64::from(k) / 100.0;
        let (a, b) = (zig[1], zig[2]);
        let (x, y) = (a.0 + t * (b.0 - a.0), a.1 + t * (b.1 - a.1));
        let got = index
            .locate(x, y)
            .and_then(|id| index.cell(id))
            .map(|c| c.level());
        assert_eq!(got, Some(Level::Grid), "({x}, {y})");
    }
}
