//! Fixtures for the case tests: a five-cell path, a map-backed [`Duty`], alerts.

use std::collections::BTreeMap;

use protocol::{Alert, Severity, UtcMillis};

use super::{Case, CellRef, Duty, Effect, Policy};
use crate::grid::Level;

/// 2026-11-22T08:00:00.000Z.
pub const T0: UtcMillis = UtcMillis(1_795_334_400_000);
pub const MIN: i64 = 60_000;
pub const SITE: &str = "wuding-0001";
pub const ALERT_ID: &str = "01KAQ5X3MV0000000000000001";

pub const COUNTY: &str = "530329";
pub const TOWNSHIP: &str = "530329101";
pub const VILLAGE: &str = "530329101001";
pub const GRID: &str = "530329101001001";
pub const MICRO: &str = "530329101001001001";

/// `T0` plus `m` minutes.
pub fn at_min(m: i64) -> UtcMillis {
    UtcMillis(T0.0 + m * MIN)
}

/// 武定县 > 狮山镇 > 近城社区 > 近城一网格 > 近城一网格第一组.
pub fn path() -> Vec<CellRef> {
    vec![
        CellRef::new(COUNTY, "武定县", Level::County),
        CellRef::new(TOWNSHIP, "狮山镇", Level::Township),
        CellRef::new(VILLAGE, "近城社区", Level::Village),
        CellRef::new(GRID, "近城一网格", Level::Grid),
        CellRef::new(MICRO, "近城一网格第一组", Level::MicroGrid),
    ]
}

/// Another grid of the same village, for returns.
pub fn other_path() -> Vec<CellRef> {
    let mut p = path();
    p.truncate(3);
    p.push(CellRef::new("530329101001002", "近城二网格", Level::Grid));
    p
}

/// Who is on duty, by cell code, at any time.
#[derive(Debug, Default)]
pub struct FakeDuty(BTreeMap<String, Vec<String>>);

impl FakeDuty {
    pub fn of(entries: &[(&str, &[&str])]) -> Self {
        Self(
            entries
                .iter()
                .map(|(cell, people)| {
                    (
                        (*cell).to_owned(),
                        people.iter().map(|p| (*p).to_owned()).collect(),
                    )
                })
                .collect(),
        )
    }
}

impl Duty for FakeDuty {
    fn on_duty(&self, cell_code: &str, _at: UtcMillis) -> Vec<String> {
        self.0.get(cell_code).cloned().unwrap_or_default()
    }
}

/// One person per cell: `micro-li`, `grid-wang`, `village-zhao`, `township-sun`, `county-zhou`,
/// and `grid2-qian` on the other grid.
pub fn duty_everywhere() -> FakeDuty {
    FakeDuty::of(&[
        (MICRO, &["micro-li"]),
        (GRID, &["grid-wang"]),
        (VILLAGE, &["village-zhao"]),
        (TOWNSHIP, &["township-sun"]),
        (COUNTY, &["county-zhou"]),
        ("530329101001002", &["grid2-qian"]),
    ])
}

/// A zone alert from camera `gate-east`, track 17, at `T0`.
pub fn alert(severity: Severity) -> Alert {
    alert_at(ALERT_ID, severity, T0)
}

pub fn alert_at(id: &str, severity: Severity, time: UtcMillis) -> Alert {
    let mut a = testkit::AlertBuilder::new(SITE, 17)
        .id(id)
        .severity(severity)
        .at(time)
        .camera("gate-east")
        .location(102.40325, 25.5321)
        .build();
    a.score = Some(0.875);
    a
}

/// Case `C-1` opened at `T0` from a critical alert in the micro-grid, default policy.
pub fn open_critical(duty: &FakeDuty) -> (Case, Vec<Effect>) {
    Case::open(
        "C-1".into(),
        &alert(Severity::Critical),
        path(),
        T0,
        &Policy::default(),
        duty,
    )
}
