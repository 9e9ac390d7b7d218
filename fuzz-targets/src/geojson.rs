//! GeoJSON grid import (`hub::grid::geojson`), as an operator's file (or a tampered one)
//! reaches the hub.
//!
//! Beyond "does not panic": an accepted WGS-84 hierarchy exports and imports back equal (the
//! documented round trip of `to_value`), and the spatial index built from it answers a lookup
//! at every cell's bounding-box centre without panicking.

use hub::grid::geojson::{import_str, import_value, to_value};
use hub::grid::{CoordSystem, GridIndex};

/// One input: panics if the code under test breaks a property above.
pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // GCJ-02 only moves points inside China; it must not panic on any of them.
    let _ = import_str(text, CoordSystem::Gcj02);
    let Ok(hierarchy) = import_str(text, CoordSystem::Wgs84) else {
        return;
    };
    let exported = to_value(&hierarchy);
    let again = import_value(&exported, CoordSystem::Wgs84)
        .unwrap_or_else(|e| panic!("an exported hierarchy is refused on import: {e}"));
    assert_eq!(hierarchy, again, "export/import changed the hierarchy");
    let index = GridIndex::new(hierarchy);
    let centres: Vec<_> = index
        .hierarchy()
        .cells()
        .iter()
        .map(|c| c.bbox())
        .map(|b| ((b.min.lon + b.max.lon) / 2.0, (b.min.lat + b.max.lat) / 2.0))
        .collect();
    for (lon, lat) in centres {
        if let Some(id) = index.locate(lon, lat) {
            assert!(index.cell(id).is_some());
        }
    }
}
