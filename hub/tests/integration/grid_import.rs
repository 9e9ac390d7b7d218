//! GeoJSON import: a good file imports, a bad one reports every problem with its feature.

use hub::grid::synthetic::Synthetic;
use hub::grid::{CoordSystem, GridError, GridIndex, Level, Problem, crs, geojson};
use serde_json::json;

fn feature(
    id: serde_json::Value,
    level: &str,
    parent: serde_json::Value,
    rings: serde_json::Value,
) -> serde_json::Value {
    json!({
        "type": "Feature",
        "properties": { "id": id, "name": format!("cell {id}"), "level": level, "parent": parent },
        "geometry": { "type": "Polygon", "coordinates": rings },
    })
}

fn square(x0: f64, y0: f64, x1: f64, y1: f64) -> serde_json::Value {
    json!([[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]])
}

/// Part of Wuding county seat (狮山镇), roughly: a township, a community, two grids.
fn wuding() -> serde_json::Value {
    json!({
        "type": "FeatureCollection",
        "features": [
            feature(json!("532329"), "county", json!(null), json!([square(102.10, 25.30, 102.70, 25.80)])),
            feature(json!("532329100"), "township", json!("532329"), json!([square(102.35, 25.48, 102.45, 25.58)])),
            feature(json!(532329100001u64), "community", json!("532329100"), json!([square(102.39, 25.52, 102.42, 25.55)])),
            {
                "type": "Feature",
                "properties": { "id": "532329100001-01", "name": "网格一", "level": "grid", "parent": "532329100001" },
                "geometry": { "type": "MultiPolygon", "coordinates": [
                    [square(102.39, 25.52, 102.405, 25.55), square(102.392, 25.53, 102.395, 25.535)],
                    [square(102.40, 25.56, 102.41, 25.57)]
                ]}
            },
            feature(json!("532329100001-02"), "grid", json!("532329100001"), json!([square(102.405, 25.52, 102.42, 25.55)])),
        ]
    })
}

#[test]
fn a_valid_hierarchy_imports_with_ids_levels_parents_and_holes() {
    let h = geojson::import_str(&wuding().to_string(), CoordSystem::Wgs84).expect("valid");
    assert_eq!(h.len(), 5);
    let index = GridIndex::new(h);
    let community = index
        .find("532329100001")
        .expect("integer id accepted as text");
    assert_eq!(
        index.cell(community).map(|c| c.level()),
        Some(Level::Village)
    );
    let g1 = index.locate(102.395, 25.525).expect("in grid 1");
    let path: Vec<_> = index
        .path(g1)
        .iter()
        .filter_map(|&c| index.cell(c))
        .map(|c| c.code())
        .collect();
    assert_eq!(
        path,
        ["532329", "532329100", "532329100001", "532329100001-01"]
    );
    // In grid 1's hole: the community.
    assert_eq!(index.locate(102.3935, 25.5325), Some(community));
    // In grid 1's second polygon, which lies outside the community: still grid 1.
    assert_eq!(index.locate(102.405, 25.565), Some(g1));
}

#[test]
fn a_gcj02_file_is_converted_to_wgs84_on_import() {
    let h = geojson::import_str(&wuding().to_string(), CoordSystem::Gcj02).expect("valid");
    let index = GridIndex::new(h);
    let g2 = index.find("532329100001-02").expect("g2");
    // The file's corner is GCJ-02; the stored corner is that corner converted to WGS-84.
    let stored = index.cell(g2).expect("g2").area().polygons()[0].exterior()[0];
    let expected = crs::gcj02_to_wgs84(hub::grid::Point::new(102.405, 25.52));
    assert_eq!(stored, expected);
    assert!(crs::metres_between(stored, hub::grid::Point::new(102.405, 25.52)) > 100.0);
    // A point inside g2 in WGS-84 (the centre, converted) locates there.
    let centre = crs::gcj02_to_wgs84(hub::grid::Point::new(102.4125, 25.535));
    assert_eq!(index.locate(centre.lon, centre.lat), Some(g2));
}

#[test]
fn an_exported_synthetic_hierarchy_imports_back_identical() {
    let h = Synthetic::new(3_000, 11).hierarchy().expect("valid");
    let text = geojson::to_value(&h).to_string();
    let back = geojson::import_str(&text, CoordSystem::Wgs84).expect("valid");
    assert_eq!(back.len(), h.len());
    for (a, b) in back.cells().iter().zip(h.cells()) {
        assert_eq!(a, b, "cell {}", b.code());
    }
    assert_eq!(back, h);
    let via_reader = geojson::import_reader(text.as_bytes(), CoordSystem::Wgs84).expect("valid");
    assert_eq!(via_reader, h);
}

#[test]
fn every_problem_in_a_bad_file_is_reported_naming_its_feature() {
    let doc = json!({
        "type": "FeatureCollection",
        "features": [
            // 0: fine, the top.
            feature(json!("C"), "county", json!(null), json!([square(102.0, 25.0, 103.0, 26.0)])),
            // 1: ring not closed.
            feature(json!("T1"), "township", json!("C"), json!([[[102.1, 25.1], [102.4, 25.1], [102.4, 25.4], [102.1, 25.4]]])),
            // 2: self-intersecting (bow tie).
            feature(json!("T2"), "township", json!("C"), json!([[[102.5, 25.1], [102.9, 25.5], [102.9, 25.1], [102.5, 25.5], [102.5, 25.1]]])),
            // 3: unknown parent.
            feature(json!("V1"), "village", json!("T9"), json!([square(102.1, 25.1, 102.2, 25.2)])),
            // 4: duplicate id (of 0).
            feature(json!("C"), "township", json!("C"), json!([square(102.6, 25.6, 102.7, 25.7)])),
            // 5: far outside its parent (Kunming's coordinates under a Wuding county).
            feature(json!("T3"), "township", json!("C"), json!([square(104.7, 27.0, 104.8, 27.1)])),
            // 6: level not deeper than its parent (grid under a grid below).
            feature(json!("G1"), "grid", json!("C"), json!([square(102.1, 25.6, 102.2, 25.7)])),
            // 7: a grid under a grid.
            feature(json!("G2"), "grid", json!("G1"), json!([square(102.1, 25.6, 102.15, 25.65)])),
            // 8: missing name and parent, unknown level; id still named.
            { "type": "Feature", "properties": { "id": "X", "level": "street" },
              "geometry": { "type": "Polygon", "coordinates": [square(102.3, 25.3, 102.4, 25.4)] } },
            // 9: no id, a ring of 3 points.
            { "type": "Feature", "properties": { "name": "nameless", "level": "grid", "parent": "C" },
              "geometry": { "type": "Polygon", "coordinates": [[[102.1, 25.1], [102.2, 25.1], [102.1, 25.1]]] } },
            // 10 and 11: a cycle.
            feature(json!("A"), "micro_grid", json!("B"), json!([square(102.3, 25.3, 102.31, 25.31)])),
            feature(json!("B"), "micro_grid", json!("A"), json!([square(102.3, 25.3, 102.31, 25.31)])),
            // 12: top-level null parent below the top.
            feature(json!("R"), "village", json!(null), json!([square(102.3, 25.3, 102.4, 25.4)])),
            // 13: wrong geometry type.
            { "type": "Feature", "properties": { "id": "P", "name": "p", "level": "grid", "parent": "C" },
              "geometry": { "type": "Point", "coordinates": [102.3, 25.3] } },
            // 14: latitude out of range.
            feature(json!("L"), "grid", json!("C"), json!([[[102.3, 25.3], [102.4, 95.0], [102.4, 25.4], [102.3, 25.3]]])),
        ]
    });
    let err = geojson::import_str(&doc.to_string(), CoordSystem::Wgs84).expect_err("invalid");
    let issues = err.issues();
    let text = err.to_string();
    println!("{text}");

    let has = |feature: usize, pred: &dyn Fn(&Problem) -> bool| {
        issues
            .iter()
            .any(|i| i.feature == Some(feature) && pred(&i.problem))
    };
    assert!(has(1, &|p| matches!(p, Problem::RingNotClosed { .. })));
    assert!(has(2, &|p| matches!(
        p,
        Problem::RingSelfIntersects { count: 1, .. }
    )));
    assert!(has(
        3,
        &|p| matches!(p, Problem::UnknownParent(parent) if parent == "T9")
    ));
    assert!(has(4, &|p| matches!(
        p,
        Problem::DuplicateId { first: 0, .. }
    )));
    assert!(has(5, &|p| matches!(p, Problem::FarOutsideParent { .. })));
    assert!(has(7, &|p| matches!(p, Problem::LevelNotDeeper { .. })));
    assert!(has(8, &|p| matches!(
        p,
        Problem::MissingProperty { name: "name", .. }
    )));
    assert!(has(8, &|p| matches!(
        p,
        Problem::MissingProperty { name: "parent", .. }
    )));
    assert!(has(8, &|p| matches!(p, Problem::UnknownLevel(_))));
    assert!(has(9, &|p| matches!(
        p,
        Problem::MissingProperty { name: "id", .. }
    )));
    assert!(has(9, &|p| matches!(
        p,
        Problem::RingTooShort { points: 3, .. }
    )));
    assert!(has(
        10,
        &|p| matches!(p, Problem::Cycle { members } if members == &["A", "B", "A"])
    ));
    assert!(has(12, &|p| matches!(
        p,
        Problem::RootBelowTop {
            level: Level::Village,
            top: Level::County
        }
    )));
    assert!(has(13, &|p| matches!(p, Problem::Geometry { .. })));
    assert!(has(14, &|p| matches!(
        p,
        Problem::BadPosition { point: 1, .. }
    )));
    // Feature 0 and 6 are fine; nothing is said about them.
    assert!(!issues.iter().any(|i| matches!(i.feature, Some(0 | 6))));

    // The message names each feature by index and id, and the JSON path of the problem.
    assert!(text.contains("features[1] (id \"T1\"): geometry.coordinates[0]: ring is not closed"));
    assert!(
        text.contains("features[4] (id \"C\"): properties.id: \"C\" is also the id of features[0]")
    );
    assert!(text.contains("features[9]: properties.id: missing"));
    assert!(
        text.contains("features[14] (id \"L\"): geometry.coordinates[0][1]: latitude out of range")
    );
    assert!(text.starts_with(&format!("{} problems in the grid hierarchy:", issues.len())));
}

#[test]
fn a_document_that_is_not_a_feature_collection_says_so() {
    let err =
        geojson::import_str(r#"{"type": "Feature"}"#, CoordSystem::Wgs84).expect_err("invalid");
    assert!(
        err.to_string()
            .contains("document: type: expected \"FeatureCollection\""),
        "{err}"
    );
    let err = geojson::import_str("{not json", CoordSystem::Wgs84).expect_err("invalid");
    assert!(matches!(err, GridError::Json(_)), "{err}");
}
