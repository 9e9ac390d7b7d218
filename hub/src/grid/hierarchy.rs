//! The validated cell hierarchy: cells, their levels and parents, and their areas in WGS-84.

use std::collections::HashMap;
use std::fmt;

use super::crs::CoordSystem;
use super::geometry::{BBox, MultiPolygon};
use super::level::Level;
use super::validate::{self, GridError, Record};

/// A cell's handle in the [`Hierarchy`] (and the [`GridIndex`](super::GridIndex) built from it)
/// that issued it: a dense index, cheap to copy and compare. Handles are ordered by level, then
/// by the order of the features in the imported file, so a smaller handle is never deeper.
/// A handle means nothing to another hierarchy (for instance after a re-import): keep
/// [`Cell::code`] where it must outlive one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CellId(pub(crate) u32);

impl CellId {
    /// Position in [`Hierarchy::cells`].
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for CellId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// One grid cell.
#[derive(Clone, Debug, PartialEq)]
pub struct Cell {
    id: CellId,
    code: String,
    name: String,
    level: Level,
    parent: Option<CellId>,
    area: MultiPolygon,
}

impl Cell {
    /// This cell's handle.
    pub fn id(&self) -> CellId {
        self.id
    }

    /// The cell's code: the `id` property of its GeoJSON feature, unique in the hierarchy and
    /// stable across imports (rosters refer to cells by it).
    pub fn code(&self) -> &str {
        &self.code
    }

    /// Display name, e.g. 狮山镇.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its level.
    pub fn level(&self) -> Level {
        self.level
    }

    /// The cell one level up (or more, if the file skips a level); `None` at the top.
    pub fn parent(&self) -> Option<CellId> {
        self.parent
    }

    /// Its area in WGS-84.
    pub fn area(&self) -> &MultiPolygon {
        &self.area
    }

    /// Bounding box of its area.
    pub fn bbox(&self) -> BBox {
        self.area.bbox()
    }
}

/// A cell as a caller describes it, before validation: what one GeoJSON feature says.
#[derive(Clone, Debug, PartialEq)]
pub struct CellSpec {
    /// Unique code (the feature's `id` property).
    pub code: String,
    /// Display name.
    pub name: String,
    /// Level.
    pub level: Level,
    /// Code of the parent cell; `None` only at the top level.
    pub parent: Option<String>,
    /// Area, in the coordinate system passed to [`Hierarchy::from_specs`]; rings closed.
    pub area: MultiPolygon,
}

/// A cell that passed validation, waiting for its handle.
#[derive(Debug)]
pub(crate) struct ValidCell {
    pub(crate) code: String,
    pub(crate) name: String,
    pub(crate) level: Level,
    /// Position of the parent in the sorted output.
    pub(crate) parent: Option<usize>,
    /// In WGS-84, repeated points dropped.
    pub(crate) area: MultiPolygon,
}

/// A validated hierarchy of cells.
///
/// Invariants: codes are unique; every cell but those of the top level has a parent whose level
/// is strictly higher (so there are no cycles); roots are all of the top level; every ring is
/// closed, has at least 3 distinct corners, does not touch itself, and is in WGS-84; no cell lies
/// far outside its parent (see [`validate`](super::validate) for the rule); `cells()[i].id()`
/// is `i`, and cells are sorted by level then by input order, so parents come before children.
#[derive(Clone, Debug, PartialEq)]
pub struct Hierarchy {
    cells: Vec<Cell>,
    by_code: HashMap<String, CellId>,
}

impl Hierarchy {
    /// Validates `specs`, whose areas are in `crs`, reporting every problem at once (each names
    /// the spec by its index as `features[i]`).
    pub fn from_specs(specs: Vec<CellSpec>, crs: CoordSystem) -> Result<Self, GridError> {
        let records = specs
            .into_iter()
            .enumerate()
            .map(|(index, s)| Record::from_spec(index, s))
            .collect();
        validate::validate(records, Vec::new(), crs)
    }

    /// Builds the hierarchy from cells that passed validation, sorted by level then input
    /// order, with parents given as positions in that order. Validation has refused more than
    /// `u32::MAX` cells, so the casts below are exact.
    pub(crate) fn from_validated(cells: Vec<ValidCell>) -> Self {
        let mut by_code = HashMap::with_capacity(cells.len());
        let cells: Vec<Cell> = cells
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                let id = CellId(i as u32);
                by_code.insert(c.code.clone(), id);
                Cell {
                    id,
                    code: c.code,
                    name: c.name,
                    level: c.level,
                    parent: c.parent.map(|p| CellId(p as u32)),
                    area: c.area,
                }
            })
            .collect();
        Self { cells, by_code }
    }

    /// Number of cells.
    pub fn len(&self) -> usize {
        self.cells.len()
    }

    /// Whether there are no cells.
    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    /// Every cell; `cells()[id.index()].id() == id`.
    pub fn cells(&self) -> &[Cell] {
        &self.cells
    }

    /// The cell behind `id`, if `id` belongs to this hierarchy's range.
    pub fn get(&self, id: CellId) -> Option<&Cell> {
        self.cells.get(id.index())
    }

    /// The cell with this code.
    pub fn find(&self, code: &str) -> Option<CellId> {
        self.by_code.get(code).copied()
    }

    /// The parent of `id`; `None` at the top or for a foreign handle.
    pub fn parent(&self, id: CellId) -> Option<CellId> {
        self.get(id).and_then(Cell::parent)
    }

    /// From the top-level ancestor down to `id` itself (empty for a foreign handle).
    pub fn path(&self, id: CellId) -> Vec<CellId> {
        let mut path = Vec::with_capacity(Level::ALL.len());
        let mut at = self.get(id).map(Cell::id);
        while let Some(c) = at {
            path.push(c);
            at = self.parent(c);
        }
        path.reverse();
        path
    }

    /// The level of the roots (`None` when empty).
    pub fn top_level(&self) -> Option<Level> {
        self.cells.first().map(Cell::level)
    }

    /// The cells without a parent.
    pub fn roots(&self) -> impl Iterator<Item = &Cell> {
        self.cells.iter().filter(|c| c.parent.is_none())
    }

    /// The bounding box of every cell.
    pub fn bbox(&self) -> BBox {
        self.cells
            .iter()
            .fold(BBox::EMPTY, |b, c| b.union(c.bbox()))
    }
}
