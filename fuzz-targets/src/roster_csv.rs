//! Roster CSV import (`hub::roster::Roster::from_readers`): the input is the five files
//! `people.csv`, `duty.csv`, `overrides.csv`, `backups.csv`, `departments.csv` separated by
//! NUL bytes (fewer pieces: the missing files are empty; no third piece: no overrides file; no
//! fifth: no departments file).
//!
//! Beyond "does not panic": on an accepted roster, duty lookups at times across a week and
//! beyond the ends of the calendar name only people in the roster, sorted and without repeats,
//! and nobody only when the lookup says so.

use hub::roster::{Roster, RosterFiles};
use protocol::UtcMillis;

/// One input: panics if the code under test breaks a property above.
pub fn run(data: &[u8]) {
    let mut pieces = data.splitn(5, |&b| b == 0);
    let people = pieces.next().unwrap_or_default();
    let duty = pieces.next().unwrap_or_default();
    let overrides = pieces.next();
    let backups = pieces.next().unwrap_or_default();
    let departments = pieces.next();
    let files = RosterFiles {
        people,
        duty,
        overrides,
        backups,
        departments,
    };
    // Some cells unknown, so the "no such cell" checks run too.
    let Ok(roster) = Roster::from_readers(files, &|cell: &str| !cell.ends_with('X')) else {
        return;
    };
    let _ = roster.summary();
    for d in roster.departments() {
        assert_eq!(roster.department(d.code()), Some(d));
        // A department's code never shadows a grid cell's.
        assert!(d.code().ends_with('X'), "{} is a known cell", d.code());
    }
    let cells: Vec<String> = roster.cells().map(str::to_string).collect();
    // 2026-11-23 (a Monday) 00:00 UTC, then every 21 h 7 min through the week (a different
    // hour each day), and both ends of the range a timestamp can hold.
    let monday = 1_795_392_000_000_i64;
    let times = (0..8).map(|i| UtcMillis(monday + i * 76_020_000)).chain([
        UtcMillis(i64::MIN),
        UtcMillis(i64::MAX),
        UtcMillis(0),
    ]);
    let times: Vec<_> = times.collect();
    for cell in &cells {
        for &at in &times {
            let on = roster.on_duty(cell, at);
            assert_eq!(
                on.people.is_empty(),
                on.is_nobody(),
                "{cell} at {at:?}: {on:?}"
            );
            assert!(on.people.windows(2).all(|w| w[0] < w[1]), "{on:?}");
            for person in &on.people {
                assert!(
                    roster.person(person).is_some(),
                    "{person} is not in the roster"
                );
            }
        }
        for person in roster.people_of(cell) {
            assert!(roster.cells_of(person.id()).contains(&cell.as_str()));
        }
    }
}
