//! The watchlist's rules, pure functions of the grid (no I/O): who may see and change an
//! entry, and which sites are told to watch for its tag.
//!
//! An entry applies in one cell and everything under it ([`WatchScope::Cell`]), or at every
//! site ([`WatchScope::Everywhere`]). An operator sees and changes the entries of their cells
//! and of cells under them, and nothing else: a township's police cases are not another
//! township's business, and a stolen bike's tag is not sent to sites that were not asked to
//! look for it. Admins see and change everything, and only they may make an entry hub-wide.

use crate::grid::Hierarchy;
use crate::store::WatchScope;

/// Whose change: recorded in the audit log, and checked against the entry's scope by the
/// dispatcher in the same step as the write (so a check and a concurrent change cannot
/// interleave).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchBy {
    pub login: String,
    pub actor: String,
    pub authority: WatchAuthority,
}

/// What a user's role and cells allow on the watchlist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchAuthority {
    /// Every entry, every scope.
    Admin,
    /// Entries scoped to one of these cells or a cell under one of them.
    Cells(Vec<String>),
}

impl WatchAuthority {
    /// Whether an entry of `scope` is visible to (and changeable by) this authority. A cell
    /// the grid does not know (it was removed from the grid since) is an admin's only.
    pub fn sees(&self, grid: &Hierarchy, scope: &WatchScope) -> bool {
        match (self, scope) {
            (Self::Admin, _) => true,
            (Self::Cells(_), WatchScope::Everywhere) => false,
            (Self::Cells(mine), WatchScope::Cell(code)) => {
                within(grid, code, |c| mine.iter().any(|m| m == c))
            }
        }
    }
}

/// Whether a site registered in `site_cell` is told to watch for an entry of `scope`. A site
/// with no registered cell, or one the grid does not know, gets hub-wide entries only.
pub fn covers(grid: &Hierarchy, scope: &WatchScope, site_cell: Option<&str>) -> bool {
    match scope {
        WatchScope::Everywhere => true,
        WatchScope::Cell(code) => site_cell.is_some_and(|site| within(grid, site, |c| c == code)),
    }
}

/// Whether `code` or one of the cells above it satisfies `is`.
fn within(grid: &Hierarchy, code: &str, is: impl Fn(&str) -> bool) -> bool {
    let Some(id) = grid.find(code) else {
        return false;
    };
    grid.path(id)
        .into_iter()
        .filter_map(|c| grid.get(c))
        .any(|c| is(c.code()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grid::{CellSpec, CoordSystem, Level, MultiPolygon, Point, Polygon};

    fn rect(x0: f64, x1: f64) -> MultiPolygon {
        let p = |a: f64, b: f64| Point { lon: a, lat: b };
        MultiPolygon::new(vec![Polygon::new(
            vec![p(x0, 0.0), p(x1, 0.0), p(x1, 1.0), p(x0, 1.0), p(x0, 0.0)],
            vec![],
        )])
    }

    /// County C with townships T1 and T2; T1 has grid G1.
    fn grid() -> Hierarchy {
        let spec = |code: &str, level, parent: Option<&str>, x0, x1| CellSpec {
            code: code.into(),
            name: code.into(),
            level,
            parent: parent.map(Into::into),
            area: rect(x0, x1),
        };
        Hierarchy::from_specs(
            vec![
                spec("C", Level::County, None, 100.0, 100.4),
                spec("T1", Level::Township, Some("C"), 100.0, 100.2),
                spec("T2", Level::Township, Some("C"), 100.2, 100.4),
                spec("G1", Level::Grid, Some("T1"), 100.0, 100.1),
            ],
            CoordSystem::Wgs84,
        )
        .unwrap()
    }

    fn cell(c: &str) -> WatchScope {
        WatchScope::Cell(c.into())
    }

    #[test]
    fn operators_see_their_cells_and_below_only() {
        let g = grid();
        let t1 = WatchAuthority::Cells(vec!["T1".into()]);
        assert!(t1.sees(&g, &cell("T1")));
        assert!(t1.sees(&g, &cell("G1")));
        assert!(!t1.sees(&g, &cell("T2")), "a neighbour township");
        assert!(!t1.sees(&g, &cell("C")), "the county above");
        assert!(!t1.sees(&g, &WatchScope::Everywhere));
        assert!(!t1.sees(&g, &cell("GONE")), "a cell no longer in the grid");
        let county = WatchAuthority::Cells(vec!["C".into()]);
        assert!(county.sees(&g, &cell("G1")));
        assert!(!county.sees(&g, &WatchScope::Everywhere));
        assert!(WatchAuthority::Admin.sees(&g, &WatchScope::Everywhere));
        assert!(WatchAuthority::Admin.sees(&g, &cell("GONE")));
        assert!(!WatchAuthority::Cells(vec![]).sees(&g, &cell("G1")));
    }

    #[test]
    fn an_entry_reaches_the_sites_of_its_cell_and_below() {
        let g = grid();
        assert!(covers(&g, &cell("T1"), Some("G1")));
        assert!(covers(&g, &cell("T1"), Some("T1")));
        assert!(!covers(&g, &cell("T1"), Some("T2")));
        assert!(!covers(&g, &cell("G1"), Some("T1")), "not the cell above");
        assert!(!covers(&g, &cell("T1"), None), "a site with no cell");
        assert!(covers(&g, &WatchScope::Everywhere, None));
        assert!(covers(&g, &WatchScope::Everywhere, Some("T2")));
    }
}
