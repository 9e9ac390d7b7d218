//! Grid cells (网格): the administrative hierarchy alerts are routed through, and the lookup
//! from a point to the deepest cell containing it.
//!
//! Pure code: no I/O except reading the GeoJSON text or reader it is handed.
//!
//! ```text
//! GeoJSON (wgs84 | gcj02) ──geojson::import_*──▶ Hierarchy ──GridIndex::new──▶ GridIndex
//!   validate: every problem      cells sorted by level,          locate(lon, lat) → CellId
//!   at once, per feature         WGS-84, checked rings           path(cell), parent(cell)
//! ```
//!
//! - [`Level`]: county → township → village/community → grid → micro-grid.
//! - [`Hierarchy`]: validated cells ([`Cell`], addressed by [`CellId`] handles and by their
//!   codes); invariants on the type. Built by [`geojson::import_str`] /
//!   [`geojson::import_reader`] or [`Hierarchy::from_specs`]; errors are a [`GridError`] listing
//!   every [`Issue`] (rules in [`validate`]).
//! - [`crs`]: GCJ-02 ↔ WGS-84.
//! - [`GridIndex`]: one R-tree per level plus exact point-in-polygon; the deepest containing
//!   cell wins.
//! - [`synthetic`]: seeded generator of realistic hierarchies for benchmarks and tests.

pub mod crs;
pub mod geojson;
pub mod geometry;
mod hierarchy;
mod index;
mod level;
pub mod synthetic;
pub mod validate;

pub use crs::CoordSystem;
pub use geometry::{BBox, MultiPolygon, Point, Polygon};
pub use hierarchy::{Cell, CellId, CellSpec, Hierarchy};
pub use index::GridIndex;
pub use level::{Level, UnknownLevel};
pub use validate::{GridError, Issue, Issues, Problem, RingRef};
