//! The example hierarchy `configs/hub/wuding.geojson` (Wuding county, Chuxiong, Yunnan): it
//! imports cleanly, has the cells other code and docs refer to, locates the demo site in its
//! micro-grid, and imports the same when its coordinates arrive as GCJ-02.

use std::fs::File;

use hub::grid::crs::{self, metres_between, wgs84_to_gcj02};
use hub::grid::{Cell, CellId, CoordSystem, GridIndex, Hierarchy, Level, Point, geojson};
use serde_json::Value;

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/hub/wuding.geojson");

/// The demo site, in WGS-84.
const DEMO: Point = Point::new(102.4040, 25.5300);
const DEMO_CELL: &str = "532329101001-G01-M01";

/// Every cell of the example: (id, level, parent).
const CELLS: [(&str, Level, Option<&str>); 16] = [
    ("532329", Level::County, None),
    ("532329101", Level::Township, Some("532329")),
    ("532329102", Level::Township, Some("532329")),
    ("532329103", Level::Township, Some("532329")),
    ("532329101001", Level::Village, Some("532329101")),
    ("532329101002", Level::Village, Some("532329101")),
    ("532329102001", Level::Village, Some("532329102")),
    ("532329103001", Level::Village, Some("532329103")),
    ("532329101001-G01", Level::Grid, Some("532329101001")),
    ("532329101001-G02", Level::Grid, Some("532329101001")),
    ("532329101002-G01", Level::Grid, Some("532329101002")),
    ("532329101002-G02", Level::Grid, Some("532329101002")),
    ("532329102001-G01", Level::Grid, Some("532329102001")),
    ("532329103001-G01", Level::Grid, Some("532329103001")),
    (
        "532329101001-G01-M01",
        Level::MicroGrid,
        Some("532329101001-G01"),
    ),
    (
        "532329101001-G01-M02",
        Level::MicroGrid,
        Some("532329101001-G01"),
    ),
];

fn import(crs: CoordSystem, doc: &Value) -> Hierarchy {
    match geojson::import_value(doc, crs) {
        Ok(h) => h,
        Err(e) => panic!("{PATH} does not import as {crs}: {e}"),
    }
}

fn document() -> Value {
    let file = File::open(PATH).unwrap_or_else(|e| panic!("cannot open {PATH}: {e}"));
    serde_json::from_reader(std::io::BufReader::new(file)).expect("the example is JSON")
}

fn wgs84_index() -> GridIndex {
    let file = File::open(PATH).unwrap_or_else(|e| panic!("cannot open {PATH}: {e}"));
    match geojson::import_reader(file, CoordSystem::Wgs84) {
        Ok(h) => GridIndex::new(h),
        Err(e) => panic!("{PATH} does not import as WGS-84: {e}"),
    }
}

fn cell<'a>(index: &'a GridIndex, code: &str) -> &'a Cell {
    index
        .find(code)
        .and_then(|id| index.cell(id))
        .unwrap_or_else(|| panic!("no cell {code}"))
}

fn code_of(index: &GridIndex, id: CellId) -> &str {
    index
        .cell(id)
        .map(Cell::code)
        .expect("a cell of this index")
}

fn path_codes(index: &GridIndex, id: CellId) -> Vec<&str> {
    index
        .path(id)
        .into_iter()
        .map(|c| code_of(index, c))
        .collect()
}

/// The located cell's code, if any.
fn locate(index: &GridIndex, p: Point) -> Option<&str> {
    index.locate(p.lon, p.lat).map(|id| code_of(index, id))
}

/// The only ring of a cell drawn as a single polygon without holes, closed.
fn ring(c: &Cell) -> &[Point] {
    let polygons = c.area().polygons();
    assert_eq!(polygons.len(), 1, "{} is one polygon", c.code());
    assert!(polygons[0].holes().is_empty(), "{} has no holes", c.code());
    polygons[0].exterior()
}

/// Twice the signed area (shoelace, in square degrees); positive when counter-clockwise.
fn signed_area2(ring: &[Point]) -> f64 {
    ring.windows(2)
        .map(|w| w[0].lon * w[1].lat - w[1].lon * w[0].lat)
        .sum()
}

/// The area centroid of a closed ring.
fn centroid(ring: &[Point]) -> Point {
    let a2 = signed_area2(ring);
    let (mut x, mut y) = (0.0, 0.0);
    for w in ring.windows(2) {
        let cross = w[0].lon * w[1].lat - w[1].lon * w[0].lat;
        x += (w[0].lon + w[1].lon) * cross;
        y += (w[0].lat + w[1].lat) * cross;
    }
    Point::new(x / (3.0 * a2), y / (3.0 * a2))
}

/// Distance in metres from `p` to the segment `a`–`b` (local plane; fine at these sizes).
fn metres_to_segment(p: Point, a: Point, b: Point) -> f64 {
    let (dx, dy) = (b.lon - a.lon, b.lat - a.lat);
    let k = p.lat.to_radians().cos();
    let len2 = (dx * k).powi(2) + dy.powi(2);
    let t = if len2 == 0.0 {
        0.0
    } else {
        (((p.lon - a.lon) * k * dx * k + (p.lat - a.lat) * dy) / len2).clamp(0.0, 1.0)
    };
    metres_between(p, Point::new(a.lon + t * dx, a.lat + t * dy))
}

/// `n` × `n` points spread over a cell's bounding box, off any round coordinate so that none
/// falls exactly on a drawn edge.
fn samples(c: &Cell, n: usize) -> impl Iterator<Item = Point> + '_ {
    let b = c.bbox();
    (0..n * n).map(move |k| {
        let (i, j) = ((k % n) as f64, (k / n) as f64);
        let n = n as f64;
        Point::new(
            b.min.lon + b.width() * (i + 0.381_966) / n,
            b.min.lat + b.height() * (j + 0.618_034) / n,
        )
    })
}

#[test]
fn the_example_imports_with_exactly_the_documented_cells() {
    let index = wgs84_index();
    assert_eq!(index.len(), CELLS.len());
    for (code, level, parent) in CELLS {
        let c = cell(&index, code);
        assert_eq!(c.level(), level, "level of {code}");
        let p = c.parent().map(|p| code_of(&index, p));
        assert_eq!(p, parent, "parent of {code}");
        assert!(!c.name().trim().is_empty(), "name of {code}");
    }
    assert_eq!(index.hierarchy().top_level(), Some(Level::County));
    assert_eq!(
        index
            .hierarchy()
            .roots()
            .map(Cell::code)
            .collect::<Vec<_>>(),
        ["532329"]
    );
}

#[test]
fn every_cell_is_one_counter_clockwise_ring_of_4_to_12_corners() {
    let index = wgs84_index();
    for c in index.hierarchy().cells() {
        let r = ring(c);
        let corners = r.len() - 1;
        assert!(
            (4..=12).contains(&corners),
            "{}: {corners} corners",
            c.code()
        );
        assert!(signed_area2(r) > 0.0, "{} is clockwise", c.code());
    }
}

#[test]
fn the_demo_site_is_in_micro_grid_m01_well_inside_its_edges() {
    let index = wgs84_index();
    let id = index
        .locate(DEMO.lon, DEMO.lat)
        .expect("the demo site is covered");
    assert_eq!(
        path_codes(&index, id),
        [
            "532329",
            "532329101",
            "532329101001",
            "532329101001-G01",
            DEMO_CELL
        ]
    );
    // Far enough from every edge that a GNSS fix a few metres off, or a GCJ-02 round trip,
    // cannot put the site in a neighbour.
    let r = ring(cell(&index, DEMO_CELL));
    let nearest = r
        .windows(2)
        .map(|w| metres_to_segment(DEMO, w[0], w[1]))
        .fold(f64::INFINITY, f64::min);
    assert!(
        nearest >= 30.0,
        "the demo site is {nearest:.1} m from an edge"
    );
}

#[test]
fn a_point_inside_each_grid_locates_to_the_grid_or_one_of_its_micro_grids() {
    let index = wgs84_index();
    let grids: Vec<&Cell> = index
        .hierarchy()
        .cells()
        .iter()
        .filter(|c| c.level() == Level::Grid)
        .collect();
    assert_eq!(grids.len(), 6);
    for g in grids {
        let p = centroid(ring(g));
        assert!(
            g.area().contains(p),
            "centroid {p} of {} is outside it",
            g.code()
        );
        let found = index
            .locate(p.lon, p.lat)
            .unwrap_or_else(|| panic!("{p} in {} locates nowhere", g.code()));
        assert!(
            path_codes(&index, found).contains(&g.code()),
            "{p} in {} located to {}",
            g.code(),
            code_of(&index, found)
        );
    }
}

#[test]
fn the_centroid_of_every_cell_locates_within_it() {
    let index = wgs84_index();
    for c in index.hierarchy().cells() {
        let p = centroid(ring(c));
        let found = index.locate(p.lon, p.lat).expect("covered");
        assert!(
            path_codes(&index, found).contains(&c.code()),
            "centroid {p} of {} located to {}",
            c.code(),
            code_of(&index, found)
        );
    }
}

#[test]
fn points_outside_the_county_locate_nowhere() {
    let index = wgs84_index();
    // Kunming, 60 km south-east.
    assert_eq!(locate(&index, Point::new(102.71, 25.04)), None);
    // Luquan county seat, just across the eastern border.
    assert_eq!(locate(&index, Point::new(102.52, 25.56)), None);
}

#[test]
fn children_lie_inside_their_parents_and_siblings_do_not_overlap() {
    let index = wgs84_index();
    let cells = index.hierarchy().cells();
    for c in cells {
        let siblings: Vec<&Cell> = cells
            .iter()
            .filter(|s| s.id() != c.id() && s.parent() == c.parent())
            .collect();
        let parent = c.parent().and_then(|p| index.cell(p));
        let mut inside = 0;
        for p in samples(c, 60).filter(|&p| c.area().contains(p)) {
            inside += 1;
            if let Some(parent) = parent {
                assert!(
                    parent.area().contains(p),
                    "{p} is in {} but not in its parent {}",
                    c.code(),
                    parent.code()
                );
            }
            if let Some(s) = siblings.iter().find(|s| s.area().contains(p)) {
                panic!("{p} is in both {} and {}", c.code(), s.code());
            }
        }
        assert!(inside > 500, "{}: only {inside} samples inside", c.code());
    }
}

#[test]
fn the_town_centre_grids_tile_their_communities() {
    let index = wgs84_index();
    for community in ["532329101001", "532329101002"] {
        let c = cell(&index, community);
        let grids: Vec<&Cell> = index
            .hierarchy()
            .cells()
            .iter()
            .filter(|g| g.parent() == Some(c.id()))
            .collect();
        assert_eq!(grids.len(), 2, "{community}");
        for p in samples(c, 80).filter(|&p| c.area().contains(p)) {
            let n = grids.iter().filter(|g| g.area().contains(p)).count();
            assert_eq!(n, 1, "{p} in {community} is in {n} of its grids");
        }
    }
    // And the two communities meet along one street with no gap: just north of the shared
    // edge is 近城, just south is 南门.
    assert_eq!(
        locate(&index, Point::new(102.4030, 25.52680)),
        Some("532329101001-G01")
    );
    assert_eq!(
        locate(&index, Point::new(102.4030, 25.52660)),
        Some("532329101002-G01")
    );
}

/// The document with every position converted by `f`.
fn map_positions(v: &mut Value, f: &impl Fn(Point) -> Point) {
    match v {
        Value::Array(items) => {
            if let [Value::Number(lon), Value::Number(lat)] = items.as_slice() {
                let (lon, lat) = (lon.as_f64().expect("lon"), lat.as_f64().expect("lat"));
                let q = f(Point::new(lon, lat));
                *v = serde_json::json!([q.lon, q.lat]);
            } else {
                for item in items {
                    map_positions(item, f);
                }
            }
        }
        Value::Object(members) => {
            if let Some(g) = members.get_mut("geometry") {
                map_positions(g, f);
            }
            if let Some(c) = members.get_mut("coordinates") {
                map_positions(c, f);
            }
            if let Some(fs) = members.get_mut("features") {
                map_positions(fs, f);
            }
        }
        _ => {}
    }
}

#[test]
fn the_example_converted_to_gcj02_imports_back_to_the_same_cells() {
    let wgs_doc = document();
    let mut gcj_doc = wgs_doc.clone();
    map_positions(&mut gcj_doc, &wgs84_to_gcj02);
    assert_ne!(gcj_doc, wgs_doc, "the conversion moved the coordinates");

    let wgs = GridIndex::new(import(CoordSystem::Wgs84, &wgs_doc));
    let gcj = GridIndex::new(import(CoordSystem::Gcj02, &gcj_doc));
    assert_eq!(gcj.len(), wgs.len());
    for (a, b) in wgs.hierarchy().cells().iter().zip(gcj.hierarchy().cells()) {
        assert_eq!(
            (a.code(), a.name(), a.level()),
            (b.code(), b.name(), b.level())
        );
        assert_eq!(a.parent(), b.parent(), "parent of {}", a.code());
        let (ra, rb) = (ring(a), ring(b));
        assert_eq!(ra.len(), rb.len(), "{}", a.code());
        for (p, q) in ra.iter().zip(rb) {
            let off = metres_between(*p, *q);
            assert!(off < 1.0, "{}: {p} came back as {q}, {off} m off", a.code());
        }
    }

    let id = gcj.locate(DEMO.lon, DEMO.lat).expect("covered");
    assert_eq!(code_of(&gcj, id), DEMO_CELL);
    assert_eq!(
        path_codes(&gcj, id),
        path_codes(&wgs, wgs.find(DEMO_CELL).expect("M01"))
    );

    // Declaring the GCJ-02 file as WGS-84 (the usual mistake with consumer-map exports) shifts
    // every cell by a few hundred metres, and the demo site falls out of its micro-grid.
    let shift = metres_between(DEMO, wgs84_to_gcj02(DEMO));
    assert!((200.0..700.0).contains(&shift), "{shift} m");
    let wrong = GridIndex::new(import(CoordSystem::Wgs84, &gcj_doc));
    assert_ne!(locate(&wrong, DEMO), Some(DEMO_CELL));
    assert!(crs::in_china(DEMO));
}
