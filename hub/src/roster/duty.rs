//! The validated roster and the question it answers: who is on duty in a cell at an instant.

use std::collections::BTreeMap;
use std::fmt;

use protocol::time::UtcMillis;
use serde::Serialize;

use super::department::Department;
use super::person::Person;
use super::schedule::{LocalInstant, Override, OverrideKind, Shift};
use super::validate::RosterError;

/// Default offset of the roster's local time from UTC: China Standard Time, UTC+08:00.
pub const DEFAULT_UTC_OFFSET_MINUTES: i32 = 480;

/// Largest offset accepted, ±18:00 (what ISO 8601 and RFC 3339 allow; real zones stay within
/// −12:00 … +14:00).
pub const MAX_UTC_OFFSET_MINUTES: i32 = 18 * 60;

/// People, their weekly shifts, one-off overrides and per-cell backups, validated.
///
/// Invariants (established by the importers): person ids are unique and valid; every shift,
/// override and backup names a known person and a cell the grid knew at import; a cell has at
/// most one backup; shifts have a length and overrides end after they start.
#[derive(Clone, Debug)]
pub struct Roster {
    /// Sorted by id, for binary search and stable listings.
    people: Vec<Person>,
    /// In file order.
    shifts: Vec<Shift>,
    /// In file order.
    overrides: Vec<Override>,
    /// Every cell anything refers to, with indexes into `shifts` and `overrides`.
    cells: BTreeMap<String, CellDuty>,
    warnings: Vec<Warning>,
    utc_offset_minutes: i32,
    /// Sorted by code.
    departments: Vec<Department>,
}

/// What the roster holds about one cell.
#[derive(Clone, Debug, Default)]
struct CellDuty {
    shifts: Vec<usize>,
    overrides: Vec<usize>,
    backup: Option<String>,
}

/// Who is on duty, and how they were found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OnDuty {
    /// Person ids, sorted and without repeats; empty only when `found_by` is `Nobody`.
    pub people: Vec<String>,
    /// How.
    pub found_by: FoundBy,
}

impl OnDuty {
    fn nobody() -> Self {
        Self {
            people: Vec::new(),
            found_by: FoundBy::Nobody,
        }
    }

    /// Whether nobody is on duty (escalation then goes straight to the parent cell).
    pub fn is_nobody(&self) -> bool {
        self.found_by == FoundBy::Nobody
    }
}

/// How the people on duty were found, in the order they are tried.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FoundBy {
    /// At least one of them by a weekly shift (others may be there by extra duty).
    Shift,
    /// All of them by extra-duty (`on`) overrides; no shift covers the instant.
    Override,
    /// Nobody by shift or override, so the cell's backup, who is not on leave.
    Backup,
    /// Nobody: no shift or extra duty, and no backup or the backup is on leave.
    Nobody,
}

/// Something legal but probably unintended, for the operator to review.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Warning {
    /// A cell with shifts but no backup: outside its shifts nobody in it is notified.
    NoBackup {
        /// The cell's code.
        cell: String,
    },
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoBackup { cell } => write!(
                f,
                "cell {cell:?} has shifts but no backup; outside its shifts nobody there is \
                 notified"
            ),
        }
    }
}

/// Counts for a log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// People.
    pub people: usize,
    /// Grid cells with at least one shift, override or backup (departments apart).
    pub cells: usize,
    /// Weekly shifts.
    pub shifts: usize,
    /// One-off overrides.
    pub overrides: usize,
    /// Grid cells with a backup.
    pub backups: usize,
    /// Departments (`departments.csv`); their duty is counted with the cells'.
    pub departments: usize,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} people, {} cells, {} departments, {} shifts, {} overrides, {} backups",
            self.people, self.cells, self.departments, self.shifts, self.overrides, self.backups
        )
    }
}

impl Roster {
    /// Assembles validated parts; the importers have checked every reference.
    pub(crate) fn new(
        mut people: Vec<Person>,
        shifts: Vec<Shift>,
        overrides: Vec<Override>,
        backups: Vec<(String, String)>,
    ) -> Self {
        people.sort_by(|a, b| a.id.cmp(&b.id));
        let mut cells: BTreeMap<String, CellDuty> = BTreeMap::new();
        for (i, s) in shifts.iter().enumerate() {
            cells.entry(s.cell.clone()).or_default().shifts.push(i);
        }
        for (i, o) in overrides.iter().enumerate() {
            cells.entry(o.cell.clone()).or_default().overrides.push(i);
        }
        for (cell, person) in backups {
            cells.entry(cell).or_default().backup = Some(person);
        }
        let warnings = cells
            .iter()
            .filter(|(_, d)| !d.shifts.is_empty() && d.backup.is_none())
            .map(|(cell, _)| Warning::NoBackup { cell: cell.clone() })
            .collect();
        Self {
            people,
            shifts,
            overrides,
            cells,
            warnings,
            utc_offset_minutes: DEFAULT_UTC_OFFSET_MINUTES,
            departments: Vec::new(),
        }
    }

    /// The same roster with `departments` (their codes may already be in the shifts).
    pub(crate) fn with_departments(mut self, mut departments: Vec<Department>) -> Self {
        departments.sort_by(|a, b| a.code.cmp(&b.code));
        self.departments = departments;
        self
    }

    /// The departments, by code.
    pub fn departments(&self) -> &[Department] {
        &self.departments
    }

    /// The department with `code`.
    pub fn department(&self, code: &str) -> Option<&Department> {
        self.departments
            .binary_search_by(|d| d.code.as_str().cmp(code))
            .ok()
            .map(|i| &self.departments[i])
    }

    /// The same roster read on a clock `minutes` ahead of UTC (negative: behind). Shift and
    /// override times stay as written; only their meaning in UTC moves.
    pub fn with_utc_offset_minutes(mut self, minutes: i32) -> Result<Self, RosterError> {
        if minutes.abs() > MAX_UTC_OFFSET_MINUTES {
            return Err(RosterError::UtcOffset(minutes));
        }
        self.utc_offset_minutes = minutes;
        Ok(self)
    }

    /// Offset of the roster's local time from UTC, in minutes.
    pub fn utc_offset_minutes(&self) -> i32 {
        self.utc_offset_minutes
    }

    /// Who is on duty in `cell` at `at`.
    ///
    /// Leave (`off` overrides) is checked first and wins over everything in that cell: a person
    /// on leave is not on duty by shift, by extra duty, or as the backup. Then the people
    /// covered by a shift or an extra-duty override; only if there are none, the backup. A
    /// cell the roster does not mention has nobody. Nothing here climbs to a parent cell:
    /// escalation does that with the grid.
    pub fn on_duty(&self, cell: &str, at: UtcMillis) -> OnDuty {
        let Some(duty) = self.cells.get(cell) else {
            return OnDuty::nobody();
        };
        let at = LocalInstant::from_utc(at, self.utc_offset_minutes);
        let active = duty
            .overrides
            .iter()
            .map(|&i| &self.overrides[i])
            .filter(|o| o.covers(at));
        let on_leave = |person: &str| {
            active
                .clone()
                .any(|o| o.kind == OverrideKind::Off && o.person == person)
        };

        let mut people: Vec<&str> = duty
            .shifts
            .iter()
            .map(|&i| &self.shifts[i])
            .filter(|s| s.covers(at) && !on_leave(&s.person))
            .map(|s| s.person.as_str())
            .collect();
        let by_shift = !people.is_empty();
        people.extend(
            active
                .clone()
                .filter(|o| o.kind == OverrideKind::On && !on_leave(&o.person))
                .map(|o| o.person.as_str()),
        );
        let found_by = if by_shift {
            FoundBy::Shift
        } else if !people.is_empty() {
            FoundBy::Override
        } else {
            match duty.backup.as_deref() {
                Some(backup) if !on_leave(backup) => {
                    people.push(backup);
                    FoundBy::Backup
                }
                _ => return OnDuty::nobody(),
            }
        };
        people.sort_unstable();
        people.dedup();
        OnDuty {
            people: people.into_iter().map(str::to_owned).collect(),
            found_by,
        }
    }

    /// Everybody assigned to `cell` in any way — a shift, an override (extra duty or leave), or
    /// as its backup — sorted by id.
    pub fn people_of(&self, cell: &str) -> Vec<&Person> {
        let Some(duty) = self.cells.get(cell) else {
            return Vec::new();
        };
        let mut ids: Vec<&str> = duty
            .shifts
            .iter()
            .map(|&i| self.shifts[i].person.as_str())
            .chain(
                duty.overrides
                    .iter()
                    .map(|&i| self.overrides[i].person.as_str()),
            )
            .chain(duty.backup.as_deref())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids.into_iter().filter_map(|id| self.person(id)).collect()
    }

    /// The cells `person` is assigned to in any way (as in [`people_of`](Self::people_of)),
    /// sorted by code.
    pub fn cells_of(&self, person: &str) -> Vec<&str> {
        self.cells
            .iter()
            .filter(|(_, d)| {
                d.shifts.iter().any(|&i| self.shifts[i].person == person)
                    || d.overrides
                        .iter()
                        .any(|&i| self.overrides[i].person == person)
                    || d.backup.as_deref() == Some(person)
            })
            .map(|(cell, _)| cell.as_str())
            .collect()
    }

    /// The person with this id.
    pub fn person(&self, id: &str) -> Option<&Person> {
        self.people
            .binary_search_by(|p| p.id.as_str().cmp(id))
            .ok()
            .map(|i| &self.people[i])
    }

    /// Everybody, sorted by id.
    pub fn people(&self) -> &[Person] {
        &self.people
    }

    /// The weekly shifts, in file order.
    pub fn shifts(&self) -> &[Shift] {
        &self.shifts
    }

    /// The one-off overrides, in file order.
    pub fn overrides(&self) -> &[Override] {
        &self.overrides
    }

    /// The backup of `cell`, if it has one.
    pub fn backup(&self, cell: &str) -> Option<&str> {
        self.cells.get(cell)?.backup.as_deref()
    }

    /// Every cell with a shift, override or backup, sorted by code.
    pub fn cells(&self) -> impl Iterator<Item = &str> {
        self.cells.keys().map(String::as_str)
    }

    /// Legal but suspicious things (cells without backup), sorted by cell.
    pub fn warnings(&self) -> &[Warning] {
        &self.warnings
    }

    /// Counts for a log line.
    pub fn summary(&self) -> Summary {
        let is_department = |code: &str| self.department(code).is_some();
        Summary {
            people: self.people.len(),
            cells: self.cells.keys().filter(|c| !is_department(c)).count(),
            shifts: self.shifts.len(),
            overrides: self.overrides.len(),
            backups: self
                .cells
                .iter()
                .filter(|(c, d)| d.backup.is_some() && !is_department(c))
                .count(),
            departments: self.departments.len(),
        }
    }
}
