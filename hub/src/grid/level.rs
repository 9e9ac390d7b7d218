//! The administrative levels of grid management, from the county down to the micro-grid.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A level of the grid hierarchy. Ordered from the top: `County < Township < … < MicroGrid`,
/// so "deeper" is "greater". An alert nobody acknowledges climbs from a level to its parent's.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
    strum::IntoStaticStr,
    strum::Display,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Level {
    /// County or county-level district (县/区); its comprehensive-governance centre is the top.
    County,
    /// Township, town or sub-district (乡/镇/街道).
    Township,
    /// Administrative village or urban community (村/社区).
    #[serde(alias = "community")]
    Village,
    /// Grid (网格), one or more grid members responsible.
    Grid,
    /// Micro-grid (微网格): a villager group, a building, a few streets.
    MicroGrid,
}

impl Level {
    /// Every level, top first.
    pub const ALL: [Self; 5] = [
        Self::County,
        Self::Township,
        Self::Village,
        Self::Grid,
        Self::MicroGrid,
    ];

    /// 0 for the county, 4 for the micro-grid.
    pub fn depth(self) -> usize {
        self as usize
    }

    /// The level above, `None` at the county.
    pub fn parent(self) -> Option<Self> {
        self.depth().checked_sub(1).map(|d| Self::ALL[d])
    }

    /// The level below, `None` at the micro-grid.
    pub fn child(self) -> Option<Self> {
        Self::ALL.get(self.depth() + 1).copied()
    }

    /// The name used in GeoJSON `level` properties and config files.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// The error for a level name that is none of the five (or their aliases).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown level {0:?} (expected county, township, village or community, grid, micro_grid)")]
pub struct UnknownLevel(pub String);

impl FromStr for Level {
    type Err = UnknownLevel;

    /// Accepts the names of [`Level::as_str`], `community` for a village, and `-`/no separator
    /// in `micro_grid`, ignoring case and surrounding blanks: files come from many hands.
    /// Hand-written, not strum's `EnumString`, because that cannot trim.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let name = s.trim().to_ascii_lowercase().replace('-', "_");
        match name.as_str() {
            "community" => Ok(Self::Village),
            "microgrid" => Ok(Self::MicroGrid),
            _ => Self::ALL
                .into_iter()
                .find(|l| l.as_str() == name)
                .ok_or_else(|| UnknownLevel(s.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_ordered_from_the_county_down() {
        assert!(Level::County < Level::Township && Level::Grid < Level::MicroGrid);
        assert_eq!(Level::MicroGrid.parent(), Some(Level::Grid));
        assert_eq!(Level::County.parent(), None);
        assert_eq!(Level::Village.child(), Some(Level::Grid));
        assert_eq!(Level::MicroGrid.child(), None);
    }

    #[test]
    fn names_round_trip_and_aliases_parse() {
        for l in Level::ALL {
            assert_eq!(l.as_str().parse::<Level>(), Ok(l));
            assert_eq!(serde_json::to_value(l).ok(), Some(l.as_str().into()));
        }
        assert_eq!(" Micro_Grid ".parse::<Level>(), Ok(Level::MicroGrid));
        assert_eq!("Community".parse::<Level>(), Ok(Level::Village));
        assert_eq!("micro-grid".parse::<Level>(), Ok(Level::MicroGrid));
        assert!("street".parse::<Level>().is_err());
        let l: Level = serde_json::from_str("\"community\"").expect("alias");
        assert_eq!(l, Level::Village);
    }
}
