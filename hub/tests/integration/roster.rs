//! The roster: who is on duty where and when, and CSV import that reports every problem.

use std::path::{Path, PathBuf};

use hub::roster::{
    FoundBy, Issue, OnDuty, Problem, Role, Roster, RosterError, RosterFile, RosterFiles, Warning,
};
use protocol::time::{UtcMillis, parse_rfc3339_ms};

const G1: &str = "532329101001-G01";
const G2: &str = "532329101001-G02";
const G3: &str = "532329101001-G01-M01";

const PEOPLE: &str = "id,name,phone,roles
p-a,张伟,13800000051,member
p-b,李娜,+8613800000052,member
p-c,王芳,13800000053,member;leader
p-boss,杨桂兰,13800000041,leader
";

fn known_cell(code: &str) -> bool {
    [G1, G2, G3].contains(&code)
}

/// A roster from the test people and the given records (headers added here).
fn roster(duty: &str, overrides: &str, backups: &str) -> Roster {
    let duty = format!("cell,person,days,start,end\n{duty}");
    let overrides = format!("cell,person,from,until,kind,reason\n{overrides}");
    let backups = format!("cell,person\n{backups}");
    Roster::from_strs(
        RosterFiles {
            people: PEOPLE,
            duty: &duty,
            overrides: Some(&overrides),
            backups: &backups,
            departments: None,
        },
        &known_cell,
    )
    .unwrap_or_else(|e| panic!("test roster is valid: {e}"))
}

/// An RFC 3339 instant.
fn utc(s: &str) -> UtcMillis {
    UtcMillis(parse_rfc3339_ms(s).unwrap_or_else(|| panic!("bad test time {s}")))
}

/// `YYYY-MM-DD HH:MM[:SS.mmm]` in China (UTC+08:00), independently of the roster's own parser.
fn local(s: &str) -> UtcMillis {
    let (date, time) = s.split_at(10);
    let time = time.trim();
    let time = if time.len() == 5 {
        format!("{time}:00")
    } else {
        time.to_owned()
    };
    utc(&format!("{date}T{time}+08:00"))
}

fn on(people: &[&str], found_by: FoundBy) -> OnDuty {
    OnDuty {
        people: people.iter().map(|p| (*p).to_owned()).collect(),
        found_by,
    }
}

fn nobody() -> OnDuty {
    on(&[], FoundBy::Nobody)
}

// 2026-11-22 is a Sunday, 2026-11-23 a Monday.

#[test]
fn a_day_shift_in_local_time_is_eight_hours_earlier_in_utc() {
    let r = roster(&format!("{G1},p-a,mon,08:00,18:00"), "", "");
    // 08:00–18:00 in China is 00:00–10:00 UTC, the end exclusive.
    assert_eq!(r.on_duty(G1, utc("2026-11-22T23:59:59.999Z")), nobody());
    assert_eq!(
        r.on_duty(G1, utc("2026-11-23T00:00:00.000Z")),
        on(&["p-a"], FoundBy::Shift)
    );
    assert_eq!(
        r.on_duty(G1, utc("2026-11-23T09:59:59.999Z")),
        on(&["p-a"], FoundBy::Shift)
    );
    assert_eq!(r.on_duty(G1, utc("2026-11-23T10:00:00.000Z")), nobody());
    // Monday 09:00 in UTC is Monday 17:00 in China, still on; Sunday 17:00 UTC is 01:00 Monday.
    assert_eq!(r.on_duty(G1, utc("2026-11-22T17:00:00Z")), nobody());
    assert_eq!(r.on_duty(G1, utc("2026-11-23T09:00:00Z")).people, ["p-a"]);
}

#[test]
fn another_utc_offset_moves_the_shift_but_not_its_local_times() {
    let r = roster(&format!("{G1},p-a,mon,08:00,18:00"), "", "")
        .with_utc_offset_minutes(0)
        .expect("UTC is a valid offset");
    assert_eq!(r.utc_offset_minutes(), 0);
    assert_eq!(r.on_duty(G1, utc("2026-11-23T00:00:00Z")), nobody());
    assert_eq!(r.on_duty(G1, utc("2026-11-23T08:00:00Z")).people, ["p-a"]);
    assert_eq!(r.on_duty(G1, utc("2026-11-23T17:59:59Z")).people, ["p-a"]);
    assert!(r.on_duty(G1, utc("2026-11-23T18:00:00Z")).is_nobody());

    let west = roster(&format!("{G1},p-a,mon,08:00,18:00"), "", "")
        .with_utc_offset_minutes(-300)
        .expect("UTC-05:00 is valid");
    assert_eq!(
        west.on_duty(G1, utc("2026-11-23T13:00:00Z")).people,
        ["p-a"]
    );
    assert!(west.on_duty(G1, utc("2026-11-23T12:59:59Z")).is_nobody());

    let too_far = roster("", "", "").with_utc_offset_minutes(19 * 60);
    assert!(matches!(too_far, Err(RosterError::UtcOffset(1140))));
    assert!(roster("", "", "").with_utc_offset_minutes(-18 * 60).is_ok());
}

#[test]
fn overnight_shift_belongs_to_the_day_it_starts() {
    let r = roster(&format!("{G1},p-a,mon,22:00,06:00"), "", "");
    let duty = |t| r.on_duty(G1, local(t)).people;
    assert_eq!(duty("2026-11-23 21:59"), Vec::<String>::new());
    assert_eq!(duty("2026-11-23 22:00"), ["p-a"]);
    assert_eq!(duty("2026-11-23 23:59"), ["p-a"]);
    assert_eq!(duty("2026-11-24 00:00"), ["p-a"]); // Tuesday morning, Monday's shift
    assert_eq!(duty("2026-11-24 05:59:59.999"), ["p-a"]);
    assert_eq!(duty("2026-11-24 06:00"), Vec::<String>::new());
    // Early Monday belongs to Sunday's night, and Tuesday night to Tuesday: neither is Monday.
    assert_eq!(duty("2026-11-23 03:00"), Vec::<String>::new());
    assert_eq!(duty("2026-11-24 23:00"), Vec::<String>::new());
}

#[test]
fn sunday_night_shift_runs_across_the_week_boundary_into_monday() {
    let r = roster(&format!("{G1},p-a,sun,22:00,06:00"), "", "");
    let duty = |t| r.on_duty(G1, local(t)).people;
    assert_eq!(duty("2026-11-22 23:30"), ["p-a"]); // Sunday night
    assert_eq!(duty("2026-11-23 03:00"), ["p-a"]); // Monday morning
    assert_eq!(duty("2026-11-22 03:00"), Vec::<String>::new()); // Sunday morning is Saturday's
    assert_eq!(duty("2026-11-23 06:00"), Vec::<String>::new());
    // The same in UTC: Monday 03:00 in China is Sunday 19:00 UTC.
    assert_eq!(r.on_duty(G1, utc("2026-11-22T19:00:00Z")).people, ["p-a"]);
}

#[test]
fn a_whole_day_shift_runs_from_midnight_to_midnight() {
    let r = roster(&format!("{G1},p-a,sat,00:00,24:00"), "", "");
    let duty = |t| r.on_duty(G1, local(t)).people;
    assert_eq!(duty("2026-11-27 23:59:59.999"), Vec::<String>::new()); // Friday
    assert_eq!(duty("2026-11-28 00:00"), ["p-a"]);
    assert_eq!(duty("2026-11-28 12:00"), ["p-a"]);
    assert_eq!(duty("2026-11-28 23:59:59.999"), ["p-a"]);
    assert_eq!(duty("2026-11-29 00:00"), Vec::<String>::new()); // Sunday
}

#[test]
fn day_lists_and_ranges_select_their_days() {
    let r = roster(
        &format!("{G1},p-a,mon;wed;fri,08:00,18:00\n{G1},p-b,sat-mon,08:00,18:00"),
        "",
        "",
    );
    let who = |day: &str| r.on_duty(G1, local(&format!("{day} 12:00"))).people;
    assert_eq!(who("2026-11-23"), ["p-a", "p-b"]); // Monday: both
    assert_eq!(who("2026-11-24"), Vec::<String>::new()); // Tuesday
    assert_eq!(who("2026-11-25"), ["p-a"]); // Wednesday
    assert_eq!(who("2026-11-27"), ["p-a"]); // Friday
    assert_eq!(who("2026-11-28"), ["p-b"]); // Saturday
    assert_eq!(who("2026-11-29"), ["p-b"]); // Sunday
}

#[test]
fn back_to_back_shifts_hand_over_without_overlap() {
    let r = roster(
        &format!("{G1},p-a,daily,08:00,16:00\n{G1},p-b,daily,16:00,24:00"),
        "",
        "",
    );
    assert_eq!(
        r.on_duty(G1, local("2026-11-23 15:59:59.999")).people,
        ["p-a"]
    );
    assert_eq!(r.on_duty(G1, local("2026-11-23 16:00")).people, ["p-b"]);
}

#[test]
fn people_on_duty_are_sorted_and_deduplicated() {
    let r = roster(
        &format!(
            "{G1},p-c,daily,08:00,18:00\n{G1},p-a,daily,07:00,12:00\n{G1},p-a,mon-fri,09:00,17:00"
        ),
        &format!(
            "{G1},p-b,2026-11-23 10:00,2026-11-23 11:00,on,\n{G1},p-c,2026-11-23 10:00,2026-11-23 11:00,on,"
        ),
        "",
    );
    assert_eq!(
        r.on_duty(G1, local("2026-11-23 10:30")),
        on(&["p-a", "p-b", "p-c"], FoundBy::Shift)
    );
}

#[test]
fn extra_duty_override_puts_someone_on_duty_outside_shifts() {
    let r = roster(
        &format!("{G1},p-a,mon-fri,08:00,18:00"),
        &format!("{G1},p-b,2026-11-28 09:00,2026-11-28 17:00,on,周末集市巡查"),
        &format!("{G1},p-boss"),
    );
    assert_eq!(
        r.on_duty(G1, local("2026-11-28 08:59")),
        on(&["p-boss"], FoundBy::Backup)
    );
    assert_eq!(
        r.on_duty(G1, local("2026-11-28 09:00")),
        on(&["p-b"], FoundBy::Override)
    );
    assert_eq!(
        r.on_duty(G1, local("2026-11-28 16:59:59.999")),
        on(&["p-b"], FoundBy::Override)
    );
    assert_eq!(
        r.on_duty(G1, local("2026-11-28 17:00")),
        on(&["p-boss"], FoundBy::Backup)
    );
    // Only in its own cell.
    assert!(r.on_duty(G2, local("2026-11-28 10:00")).is_nobody());
}

#[test]
fn leave_override_hides_a_shift_and_falls_back_to_backup() {
    let r = roster(
        &format!("{G1},p-a,daily,08:00,18:00"),
        &format!("{G1},p-a,2026-11-23 00:00,2026-11-25 12:00,off,病假"),
        &format!("{G1},p-boss"),
    );
    assert_eq!(
        r.on_duty(G1, local("2026-11-22 17:59")),
        on(&["p-a"], FoundBy::Shift)
    );
    assert_eq!(
        r.on_duty(G1, local("2026-11-23 10:00")),
        on(&["p-boss"], FoundBy::Backup)
    );
    assert_eq!(
        r.on_duty(G1, local("2026-11-25 11:59")),
        on(&["p-boss"], FoundBy::Backup)
    );
    assert_eq!(
        r.on_duty(G1, local("2026-11-25 12:00")),
        on(&["p-a"], FoundBy::Shift)
    );
}

#[test]
fn leave_of_one_person_leaves_the_others_on_their_shifts() {
    let r = roster(
        &format!("{G1},p-a,daily,08:00,18:00\n{G1},p-b,daily,08:00,18:00"),
        &format!("{G1},p-a,2026-11-23 00:00,2026-11-24 00:00,off,"),
        &format!("{G1},p-boss"),
    );
    assert_eq!(
        r.on_duty(G1, local("2026-11-23 10:00")),
        on(&["p-b"], FoundBy::Shift)
    );
}

#[test]
fn leave_hides_a_person_only_in_its_own_cell() {
    let r = roster(
        &format!("{G1},p-a,daily,08:00,18:00\n{G2},p-a,daily,08:00,18:00"),
        &format!("{G1},p-a,2026-11-23 00:00,2026-11-24 00:00,off,"),
        "",
    );
    assert!(r.on_duty(G1, local("2026-11-23 10:00")).is_nobody());
    assert_eq!(
        r.on_duty(G2, local("2026-11-23 10:00")),
        on(&["p-a"], FoundBy::Shift)
    );
}

#[test]
fn leave_also_cancels_extra_duty_in_the_same_cell() {
    let r = roster(
        "",
        &format!(
            "{G1},p-b,2026-11-23 08:00,2026-11-23 20:00,on,加班\n\
             {G1},p-b,2026-11-23 12:00,2026-11-23 14:00,off,午休外出"
        ),
        &format!("{G1},p-boss"),
    );
    assert_eq!(
        r.on_duty(G1, local("2026-11-23 11:00")),
        on(&["p-b"], FoundBy::Override)
    );
    assert_eq!(
        r.on_duty(G1, local("2026-11-23 13:00")),
        on(&["p-boss"], FoundBy::Backup)
    );
}

#[test]
fn backup_on_leave_means_nobody() {
    let r = roster(
        &format!("{G1},p-a,mon-fri,08:00,18:00"),
        &format!("{G1},p-boss,2026-11-28 00:00,2026-11-30 00:00,off,出差"),
        &format!("{G1},p-boss"),
    );
    assert_eq!(
        r.on_duty(G1, local("2026-11-27 20:00")),
        on(&["p-boss"], FoundBy::Backup)
    );
    assert_eq!(r.on_duty(G1, local("2026-11-28 20:00")), nobody());
    // The backup's leave does not touch the shift.
    assert_eq!(
        r.on_duty(G1, local("2026-11-27 10:00")),
        on(&["p-a"], FoundBy::Shift)
    );
}

#[test]
fn a_cell_the_roster_does_not_mention_has_nobody() {
    let r = roster(
        &format!("{G1},p-a,daily,00:00,24:00"),
        "",
        &format!("{G1},p-boss"),
    );
    assert_eq!(r.on_duty("532329", local("2026-11-23 10:00")), nobody());
    assert_eq!(r.on_duty(G3, local("2026-11-23 10:00")), nobody());
}

#[test]
fn people_of_and_cells_of_list_every_kind_of_assignment() {
    let r = roster(
        &format!(
            "{G1},p-a,daily,08:00,18:00\n{G1},p-a,sat,20:00,22:00\n{G2},p-b,daily,08:00,18:00"
        ),
        &format!("{G1},p-c,2026-11-23 00:00,2026-11-24 00:00,on,"),
        &format!("{G1},p-boss\n{G2},p-a"),
    );
    let ids = |people: Vec<&hub::roster::Person>| -> Vec<String> {
        people.iter().map(|p| p.id().to_owned()).collect()
    };
    assert_eq!(ids(r.people_of(G1)), ["p-a", "p-boss", "p-c"]);
    assert_eq!(ids(r.people_of(G2)), ["p-a", "p-b"]);
    assert!(r.people_of(G3).is_empty());
    assert_eq!(r.cells_of("p-a"), [G1, G2]);
    assert_eq!(r.cells_of("p-b"), [G2]);
    assert_eq!(r.cells_of("p-c"), [G1]);
    assert_eq!(r.cells_of("p-boss"), [G1]);
    assert!(r.cells_of("p-nobody").is_empty());
    assert_eq!(r.backup(G2), Some("p-a"));
    assert_eq!(r.backup(G3), None);
    assert_eq!(r.cells().collect::<Vec<_>>(), [G1, G2]);
}

#[test]
fn people_are_found_by_id_with_their_phone_and_roles() {
    let r = roster("", "", "");
    let ids: Vec<&str> = r.people().iter().map(|p| p.id()).collect();
    assert_eq!(ids, ["p-a", "p-b", "p-boss", "p-c"]);
    let c = r.person("p-c").expect("p-c is on the roster");
    assert_eq!(c.name(), "王芳");
    assert_eq!(c.phone(), "13800000053");
    assert_eq!(c.roles(), [Role::Member, Role::Leader]);
    assert!(c.has_role(Role::Leader) && !c.has_role(Role::Operator));
    assert_eq!(r.person("p-b").map(|p| p.phone()), Some("+8613800000052"));
    assert!(r.person("p-z").is_none());
    assert!(r.person("").is_none());
}

#[test]
fn summary_counts_what_was_loaded() {
    let r = roster(
        &format!(
            "{G1},p-a,daily,08:00,18:00\n{G1},p-b,daily,18:00,22:00\n{G2},p-b,mon,08:00,18:00"
        ),
        &format!("{G3},p-c,2026-11-23 00:00,2026-11-24 00:00,on,"),
        &format!("{G1},p-boss"),
    );
    let s = r.summary();
    assert_eq!(
        (s.people, s.cells, s.shifts, s.overrides, s.backups),
        (4, 3, 3, 1, 1)
    );
    assert_eq!(
        s.to_string(),
        "4 people, 3 cells, 0 departments, 3 shifts, 1 overrides, 1 backups"
    );
    assert_eq!(r.shifts().len(), 3);
    assert_eq!(r.shifts()[1].person(), "p-b");
    assert_eq!(r.overrides()[0].cell(), G3);
}

#[test]
fn a_cell_with_shifts_but_no_backup_is_a_warning_not_an_error() {
    let r = roster(
        &format!(
            "{G2},p-a,daily,08:00,18:00\n{G1},p-a,daily,08:00,18:00\n{G3},p-b,daily,08:00,18:00"
        ),
        "",
        &format!("{G3},p-boss"),
    );
    assert_eq!(
        r.warnings(),
        [
            Warning::NoBackup {
                cell: G1.to_owned()
            },
            Warning::NoBackup {
                cell: G2.to_owned()
            },
        ]
    );
    assert!(r.warnings()[0].to_string().contains(G1));
    let covered = roster(
        &format!("{G1},p-a,daily,08:00,18:00"),
        "",
        &format!("{G1},p-boss"),
    );
    assert!(covered.warnings().is_empty());
}

#[test]
fn on_duty_and_people_serialize_for_the_api() {
    let r = roster(&format!("{G1},p-a,mon-fri,22:00,06:00"), "", "");
    let json = serde_json::to_value(r.on_duty(G1, local("2026-11-24 01:00"))).expect("serialize");
    assert_eq!(
        json,
        serde_json::json!({ "people": ["p-a"], "found_by": "shift" })
    );
    let person = serde_json::to_value(r.person("p-c")).expect("serialize");
    assert_eq!(
        person,
        serde_json::json!({
            "id": "p-c", "name": "王芳", "phone": "13800000053", "roles": ["member", "leader"]
        })
    );
    let shift = serde_json::to_value(&r.shifts()[0]).expect("serialize");
    assert_eq!(
        shift,
        serde_json::json!({
            "cell": G1, "person": "p-a", "days": "mon-fri", "start": "22:00", "end": "06:00"
        })
    );
}

// ---- import ----

fn import(people: &str, duty: &str, overrides: Option<&str>, backups: &str) -> RosterError {
    match Roster::from_strs(
        RosterFiles {
            people,
            duty,
            overrides,
            backups,
            departments: None,
        },
        &known_cell,
    ) {
        Ok(_) => panic!("expected the roster to be refused"),
        Err(e) => e,
    }
}

/// `(file, line, column)` of each issue, in order.
fn places(e: &RosterError) -> Vec<(RosterFile, Option<u64>, Option<&'static str>)> {
    e.issues()
        .iter()
        .map(|i| (i.file, i.line, i.column))
        .collect()
}

#[test]
fn invalid_csv_lists_every_error_with_file_and_line() {
    let people = "id,name,phone,roles
p-a,甲,13800000001,member
p-b,乙,1380000,member
p.c,丙,13800000003,member
p-d,丁,13800000004,boss;leader
p-a,甲二,13800000005,leader
p-e,,13800000006,member
";
    let duty = format!(
        "cell,person,days,start,end
{G1},p-a,mon-fri,08:00,18:00
532329999999-G09,p-a,mon-fri,08:00,18:00
{G1},p-zz,mon-fri,08:00,18:00
{G1},p-a,mon-fry,08:00,18:00
{G1},p-a,daily,25:00,18:00
{G1},p-a,daily,08:00,08:00
{G1},p-a,daily,24:00,06:00
{G1},p-a,mon
"
    );
    let overrides = format!(
        "cell,person,from,until,kind,reason
{G1},p-a,2026-11-23 10:00,2026-11-23 09:00,off,x
{G1},p-a,2026-02-30 10:00,2026-03-01 09:00,off,x
{G1},p-a,2026-11-23 10:00,2026-11-24 10:00,maybe,x
"
    );
    let backups = format!(
        "cell,person
{G1},p-a
{G1},p-b
{G2},p-c
"
    );
    let e = import(people, &duty, Some(&overrides), &backups);
    use RosterFile::*;
    assert_eq!(
        places(&e),
        [
            (People, Some(3), Some("phone")),
            (People, Some(4), Some("id")),
            (People, Some(5), Some("roles")),
            (People, Some(6), Some("id")),
            (People, Some(7), Some("name")),
            (Duty, Some(3), Some("cell")),
            (Duty, Some(4), Some("person")),
            (Duty, Some(5), Some("days")),
            (Duty, Some(6), Some("start")),
            (Duty, Some(7), Some("end")),
            (Duty, Some(8), Some("start")),
            (Duty, Some(9), None),
            (Overrides, Some(2), Some("until")),
            (Overrides, Some(3), Some("from")),
            (Overrides, Some(4), Some("kind")),
            (Backups, Some(3), Some("cell")),
            (Backups, Some(4), Some("person")),
        ]
    );
    let problems: Vec<&Problem> = e.issues().iter().map(|i| &i.problem).collect();
    assert!(matches!(problems[0], Problem::BadPhone(v) if v == "1380000"));
    assert!(matches!(problems[1], Problem::BadId { value, .. } if value == "p.c"));
    assert_eq!(problems[2], &Problem::UnknownRole("boss".to_owned()));
    assert_eq!(
        problems[3],
        &Problem::DuplicatePerson {
            id: "p-a".to_owned(),
            first_line: 2
        }
    );
    assert_eq!(problems[4], &Problem::Empty);
    assert_eq!(
        problems[5],
        &Problem::UnknownCell("532329999999-G09".to_owned())
    );
    assert_eq!(problems[6], &Problem::UnknownPerson("p-zz".to_owned()));
    assert!(matches!(problems[7], Problem::BadDays { value, .. } if value == "mon-fry"));
    assert!(matches!(problems[8], Problem::BadTime { value, .. } if value == "25:00"));
    assert_eq!(problems[9], &Problem::StartEqualsEnd("08:00".to_owned()));
    assert!(matches!(problems[10], Problem::BadTime { value, .. } if value == "24:00"));
    assert_eq!(
        problems[11],
        &Problem::FieldCount {
            found: 3,
            expected: 5
        }
    );
    assert_eq!(
        problems[12],
        &Problem::UntilNotAfterFrom {
            from: "2026-11-23 10:00".to_owned(),
            until: "2026-11-23 09:00".to_owned()
        }
    );
    assert!(
        matches!(problems[13], Problem::BadDateTime { value, .. } if value == "2026-02-30 10:00")
    );
    assert_eq!(problems[14], &Problem::UnknownKind("maybe".to_owned()));
    assert_eq!(
        problems[15],
        &Problem::DuplicateBackup {
            cell: G1.to_owned(),
            first_line: 2
        }
    );
    // p.c had a bad id, so p-c is unknown; p-b (bad phone) is known and not reported again.
    assert_eq!(problems[16], &Problem::UnknownPerson("p-c".to_owned()));

    // The message: a count, then one issue per line with file, line, column and value.
    let message = e.to_string();
    let lines: Vec<&str> = message.lines().collect();
    assert_eq!(lines[0], "17 problems in the roster:");
    assert_eq!(lines.len(), 18);
    assert!(
        lines[1].starts_with("  people.csv line 3, column phone: bad phone \"1380000\""),
        "{}",
        lines[1]
    );
    assert_eq!(
        lines[6],
        "  duty.csv line 3, column cell: unknown cell \"532329999999-G09\": not in the grid"
    );
    assert!(
        lines[9].starts_with("  duty.csv line 6, column start: bad time \"25:00\""),
        "{}",
        lines[9]
    );
    assert_eq!(
        lines[12],
        "  duty.csv line 9: 3 fields, but the header has 5"
    );
    assert_eq!(
        lines[17],
        "  backups.csv line 4, column person: unknown person \"p-c\": not in people.csv"
    );
}

#[test]
fn headers_name_unknown_missing_and_repeated_columns() {
    let e = import(
        "id,name,phone,role\np-a,甲,13800000001,member\n",
        &format!("cell,person,days,start,end,notes\n{G1},p-nobody,someday,08:00,18:00,x\n"),
        Some(""),
        "cell,cell,person\n",
    );
    use RosterFile::*;
    assert_eq!(
        places(&e),
        [
            (People, Some(1), None),
            (People, Some(1), None),
            (Duty, Some(1), None),
            (Duty, Some(2), Some("days")),
            (Overrides, None, None),
            (Backups, Some(1), None),
        ]
    );
    let problems: Vec<&Problem> = e.issues().iter().map(|i| &i.problem).collect();
    assert!(matches!(problems[0], Problem::UnknownColumn { name, .. } if name == "role"));
    assert_eq!(problems[1], &Problem::MissingColumn("roles"));
    assert!(matches!(problems[2], Problem::UnknownColumn { name, .. } if name == "notes"));
    // An extra column does not stop the rows being checked; an unreadable people.csv stops
    // person references being checked (p-nobody is not reported).
    assert!(matches!(problems[3], Problem::BadDays { value, .. } if value == "someday"));
    assert!(matches!(problems[4], Problem::NoHeader { .. }));
    assert_eq!(problems[5], &Problem::DuplicateColumn("cell".to_owned()));
    assert!(
        e.to_string().contains(
            "people.csv line 1: unknown column \"role\"; expected the columns id,name,phone,roles"
        ),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("people.csv line 1: missing column \"roles\"")
    );
}

#[test]
fn columns_may_come_in_any_order_and_case() {
    let r = Roster::from_strs(
        RosterFiles {
            people: "Roles,Phone,Name,ID\nmember,13800000001,甲,p-a\n",
            duty: &format!("end,start,days,person,cell\n18:00,08:00,daily,p-a,{G1}\n"),
            overrides: None,
            backups: &format!("person,cell\np-a,{G1}\n"),
            departments: None,
        },
        &known_cell,
    )
    .expect("valid");
    assert_eq!(r.person("p-a").map(|p| p.name()), Some("甲"));
    assert_eq!(r.on_duty(G1, local("2026-11-23 10:00")).people, ["p-a"]);
    assert_eq!(r.backup(G1), Some("p-a"));
}

#[test]
fn a_person_with_a_bad_phone_is_reported_once_not_at_every_reference() {
    let e = import(
        "id,name,phone,roles\np-a,甲,0878-7123456,member\n",
        &format!("cell,person,days,start,end\n{G1},p-a,daily,08:00,18:00\n"),
        None,
        &format!("cell,person\n{G1},p-a\n"),
    );
    assert_eq!(places(&e), [(RosterFile::People, Some(2), Some("phone"))]);
}

#[test]
fn the_cell_check_is_the_callers() {
    let files = RosterFiles {
        people: PEOPLE,
        duty: "cell,person,days,start,end\nanything-goes,p-a,daily,08:00,18:00\n",
        overrides: None,
        backups: "cell,person\n",
        departments: None,
    };
    assert!(Roster::from_strs(files, &|_| true).is_ok());
    let e = Roster::from_strs(files, &|c| c == G1).expect_err("unknown cell");
    assert_eq!(
        e.issues().iter().map(|i| &i.problem).collect::<Vec<_>>(),
        [&Problem::UnknownCell("anything-goes".to_owned())]
    );
}

#[test]
fn spreadsheet_csv_with_bom_comments_quotes_and_spaces_is_accepted() {
    let people = "\u{feff}# 人员名单\nid , name , phone , roles\n\n  \t\n\
                  p-a ,\"张, 伟\", +8613800000001 ,\"member; leader\"\n\
                  \x20 # 离职: p-old\n";
    let r = Roster::from_strs(
        RosterFiles {
            people,
            duty: &format!("cell,person,days,start,end\r\n{G1},p-a,Mon-Fri,8:00,18:00\r\n"),
            overrides: Some("cell,person,from,until,kind,reason\n"),
            backups: "cell,person\n",
            departments: None,
        },
        &known_cell,
    )
    .unwrap_or_else(|e| panic!("spreadsheet export accepted: {e}"));
    let a = r.person("p-a").expect("p-a");
    assert_eq!(a.name(), "张, 伟");
    assert_eq!(a.roles(), [Role::Member, Role::Leader]);
    assert_eq!(r.on_duty(G1, local("2026-11-23 08:00")).people, ["p-a"]);
    assert_eq!(r.people().len(), 1);
}

#[test]
fn line_numbers_count_comment_and_blank_lines() {
    let e = import(
        "# people\r\nid,name,phone,roles\r\n# comment\r\n\r\n   \r\n\
         p-a,甲,123,member\r\n\
         p-b,\"两行\n# 不是注释\",13800000002,member\n\
         \n\
         p-c,丙,456,member\n",
        "cell,person,days,start,end\n",
        None,
        "cell,person\n",
    );
    assert_eq!(
        places(&e),
        [
            (RosterFile::People, Some(6), Some("phone")),
            (RosterFile::People, Some(10), Some("phone")),
        ]
    );
    let header_after_comments = import(
        "# people\n\nid,name,phone,role\n",
        "cell,person,days,start,end\n",
        None,
        "cell,person\n",
    );
    assert_eq!(
        places(&header_after_comments),
        [
            (RosterFile::People, Some(3), None),
            (RosterFile::People, Some(3), None)
        ]
    );
}

#[test]
fn a_file_not_in_utf8_is_reported_with_its_line() {
    // 张伟 in GBK, as a spreadsheet might save it.
    let mut people = b"id,name,phone,roles\np-a,".to_vec();
    people.extend_from_slice(&[0xd5, 0xc5, 0xce, 0xb0]);
    people.extend_from_slice(b",13800000001,member\n");
    let e = Roster::from_readers(
        RosterFiles {
            people: &people[..],
            duty: &b"cell,person,days,start,end\n"[..],
            overrides: None,
            backups: &b"cell,person\n"[..],
            departments: None,
        },
        &known_cell,
    )
    .expect_err("GBK refused");
    assert_eq!(places(&e), [(RosterFile::People, Some(2), Some("name"))]);
    assert_eq!(e.issues()[0].problem, Problem::NotUtf8);
}

#[test]
fn from_readers_reads_the_same_roster_as_from_strs() {
    let duty = format!("cell,person,days,start,end\n{G1},p-a,daily,08:00,18:00\n");
    let backups = format!("cell,person\n{G1},p-boss\n");
    let r = Roster::from_readers(
        RosterFiles {
            people: PEOPLE.as_bytes(),
            duty: duty.as_bytes(),
            overrides: None,
            backups: backups.as_bytes(),
            departments: None,
        },
        &known_cell,
    )
    .expect("valid");
    assert_eq!(r.people().len(), 4);
    assert_eq!(r.on_duty(G1, local("2026-11-23 10:00")).people, ["p-a"]);
    assert_eq!(
        r.on_duty(G1, local("2026-11-23 20:00")),
        on(&["p-boss"], FoundBy::Backup)
    );
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("roster-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

#[test]
fn load_dir_reads_a_directory_without_overrides() {
    let dir = temp_dir("no-overrides");
    std::fs::write(dir.join("people.csv"), PEOPLE).expect("write");
    std::fs::write(
        dir.join("duty.csv"),
        format!("cell,person,days,start,end\n{G1},p-a,daily,08:00,18:00\n"),
    )
    .expect("write");
    std::fs::write(dir.join("backups.csv"), "cell,person\n").expect("write");
    let r = Roster::load_dir(&dir, &known_cell).expect("valid directory");
    assert_eq!(r.summary().overrides, 0);
    assert_eq!(r.on_duty(G1, local("2026-11-23 10:00")).people, ["p-a"]);
}

#[test]
fn load_dir_reports_every_missing_required_file_with_the_other_problems() {
    let dir = temp_dir("missing");
    std::fs::write(
        dir.join("people.csv"),
        "id,name,phone,roles\np-a,甲,1,member\n",
    )
    .expect("write");
    let e = Roster::load_dir(&dir, &known_cell).expect_err("incomplete directory");
    use RosterFile::*;
    assert_eq!(
        places(&e),
        [
            (People, Some(2), Some("phone")),
            (Duty, None, None),
            (Backups, None, None),
        ]
    );
    assert!(
        e.issues()
            .iter()
            .skip(1)
            .all(|i: &Issue| i.problem == Problem::MissingFile)
    );
    assert!(
        e.to_string()
            .contains("\n  duty.csv: required file is missing")
    );
}

#[test]
fn load_dir_of_a_file_is_a_read_error_naming_the_path() {
    let dir = temp_dir("not-a-dir");
    let file = dir.join("plain-file");
    std::fs::write(&file, "x").expect("write");
    match Roster::load_dir(&file, &known_cell) {
        Err(RosterError::Read { path, .. }) => assert!(path.starts_with(&file)),
        other => panic!("expected a read error, got {other:?}"),
    }
}

// ---- the example roster in configs/hub/roster ----

const EXAMPLE_CELLS: [&str; 16] = [
    "532329",
    "532329101",
    "532329102",
    "532329103",
    "532329101001",
    "532329101002",
    "532329102001",
    "532329103001",
    "532329101001-G01",
    "532329101001-G02",
    "532329101002-G01",
    "532329101002-G02",
    "532329102001-G01",
    "532329103001-G01",
    "532329101001-G01-M01",
    "532329101001-G01-M02",
];

fn example() -> Roster {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/hub/roster");
    Roster::load_dir(dir, &|c| EXAMPLE_CELLS.contains(&c))
        .unwrap_or_else(|e| panic!("the example roster is valid: {e}"))
}

#[test]
fn the_example_roster_loads_without_errors_or_warnings() {
    let r = example();
    assert!(r.warnings().is_empty(), "{:?}", r.warnings());
    let s = r.summary();
    assert_eq!(s.cells, EXAMPLE_CELLS.len());
    assert_eq!(s.backups, EXAMPLE_CELLS.len());
    assert_eq!(s.departments, r.departments().len());
    assert!(
        r.departments().iter().any(|d| d.kind() == "交警"),
        "{:?}",
        r.departments()
    );
    assert!(s.people >= 30 && s.shifts >= 40 && s.overrides >= 1, "{s}");
    assert!(
        r.overrides()
            .iter()
            .any(|o| o.kind() == hub::roster::OverrideKind::Off)
    );
}

#[test]
fn the_example_roster_has_someone_on_grid_duty_on_a_monday_morning() {
    let r = example();
    let duty = r.on_duty("532329101001-G01", local("2026-11-23 10:00"));
    assert_eq!(duty.found_by, FoundBy::Shift);
    assert!(!duty.people.is_empty());
    for id in &duty.people {
        let p = r.person(id).expect("on-duty people are on the roster");
        assert!(p.has_role(Role::Member), "{id} is not a grid member");
    }
}

#[test]
fn in_the_example_every_cell_always_has_somebody_and_the_county_and_townships_a_shift() {
    let r = example();
    // Two weeks in quarter hours, the first with the example leave in it.
    let start = local("2026-11-23 00:00").0;
    for step in 0..(14 * 24 * 4) {
        let at = UtcMillis(start + step * 15 * 60_000);
        for cell in EXAMPLE_CELLS {
            let duty = r.on_duty(cell, at);
            assert!(!duty.is_nobody(), "nobody in {cell} at {at}");
            if cell.len() <= 9 {
                assert_eq!(duty.found_by, FoundBy::Shift, "{cell} at {at}");
            }
        }
        let county = r.on_duty("532329", at);
        for id in &county.people {
            assert!(r.person(id).is_some_and(|p| p.has_role(Role::Operator)));
        }
        assert_eq!(county.people.len(), 1, "one county operator at {at}");
    }
}

#[test]
fn in_the_example_the_grid_member_on_leave_is_replaced_by_the_backup() {
    let r = example();
    let g01 = "532329101001-G01";
    let leave = r
        .overrides()
        .iter()
        .find(|o| o.cell() == g01 && o.kind() == hub::roster::OverrideKind::Off)
        .expect("the example has a leave in G01");
    let on_leave = leave.person();
    // A weekday evening during the leave and the same evening a week later.
    let during = r.on_duty(g01, local("2026-11-24 19:00"));
    assert!(!during.people.iter().any(|p| p == on_leave));
    assert_eq!(during.found_by, FoundBy::Backup);
    assert_eq!(during.people, [r.backup(g01).expect("G01 has a backup")]);
    let after = r.on_duty(g01, local("2026-12-01 19:00"));
    assert_eq!(after, on(&[on_leave], FoundBy::Shift));
}
