//! CSV import: a roster directory (or four texts) to a validated [`Roster`].
//!
//! Every file is UTF-8 CSV with a header line naming its columns (any order, any case).
//! Fields are trimmed; blank lines and lines starting with `#` are skipped, so a file can carry
//! comments; a UTF-8 byte-order mark (as spreadsheets write) is ignored. Line numbers in
//! problems are the file's own, comments and blank lines included.
//!
//! Why comments and line numbers are handled here rather than by the csv crate: its comment
//! option and its record positions do not count skipped comment and blank lines, so its line
//! numbers drift from what an editor shows. Instead, comment lines are emptied before parsing
//! (their newline kept) and a record's line is counted from its byte offset.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{self, Read};
use std::path::Path;

use super::Roster;
use super::department::Department;
use super::person::{Channel, Person, check_id, check_phone, parse_channels, parse_roles};
use super::schedule::{Days, LocalDateTime, Override, OverrideKind, Shift, TimeOfDay};
use super::validate::{Issue, Issues, Problem, RosterError, RosterFile};

/// The four roster files' contents; `overrides` is optional.
///
/// Named fields rather than four positional arguments, so people and duty cannot be swapped
/// silently.
#[derive(Clone, Copy, Debug, Default)]
pub struct RosterFiles<T> {
    /// `people.csv`: `id,name,phone,roles`.
    pub people: T,
    /// `duty.csv`: `cell,person,days,start,end`.
    pub duty: T,
    /// `overrides.csv`: `cell,person,from,until,kind,reason`; `None` when there is none.
    pub overrides: Option<T>,
    /// `backups.csv`: `cell,person`.
    pub backups: T,
    /// `departments.csv`: `code,name,kind,cell`; `None` when there is none.
    pub departments: Option<T>,
}

impl Roster {
    /// Reads `people.csv`, `duty.csv`, `backups.csv` and, if present, `overrides.csv` from
    /// `dir`. `is_known_cell` says whether a cell code is in the grid; pass `&|_| true` to skip
    /// that check. A missing required file is reported with the other problems.
    pub fn load_dir(
        dir: impl AsRef<Path>,
        is_known_cell: &dyn Fn(&str) -> bool,
    ) -> Result<Self, RosterError> {
        let dir = dir.as_ref();
        let read = |file: RosterFile| -> Result<Option<Vec<u8>>, RosterError> {
            let path = dir.join(file.file_name());
            match fs::read(&path) {
                Ok(bytes) => Ok(Some(bytes)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(source) => Err(RosterError::Read { path, source }),
            }
        };
        let (people, duty, overrides, backups, departments) = (
            read(RosterFile::People)?,
            read(RosterFile::Duty)?,
            read(RosterFile::Overrides)?,
            read(RosterFile::Backups)?,
            read(RosterFile::Departments)?,
        );
        import(
            [
                people.as_deref(),
                duty.as_deref(),
                overrides.as_deref(),
                backups.as_deref(),
                departments.as_deref(),
            ],
            is_known_cell,
        )
    }

    /// Builds a roster from the files' texts (tests, and rosters kept elsewhere than a
    /// directory).
    pub fn from_strs(
        files: RosterFiles<&str>,
        is_known_cell: &dyn Fn(&str) -> bool,
    ) -> Result<Self, RosterError> {
        import(
            [
                Some(files.people.as_bytes()),
                Some(files.duty.as_bytes()),
                files.overrides.map(str::as_bytes),
                Some(files.backups.as_bytes()),
                files.departments.map(str::as_bytes),
            ],
            is_known_cell,
        )
    }

    /// Builds a roster from readers, read to the end (rosters are small).
    pub fn from_readers<R: Read>(
        files: RosterFiles<R>,
        is_known_cell: &dyn Fn(&str) -> bool,
    ) -> Result<Self, RosterError> {
        fn read_all(file: RosterFile, mut r: impl Read) -> Result<Vec<u8>, RosterError> {
            let mut bytes = Vec::new();
            r.read_to_end(&mut bytes)
                .map_err(|source| RosterError::Read {
                    path: file.file_name().into(),
                    source,
                })?;
            Ok(bytes)
        }
        let people = read_all(RosterFile::People, files.people)?;
        let duty = read_all(RosterFile::Duty, files.duty)?;
        let overrides = files
            .overrides
            .map(|r| read_all(RosterFile::Overrides, r))
            .transpose()?;
        let backups = read_all(RosterFile::Backups, files.backups)?;
        let departments = files
            .departments
            .map(|r| read_all(RosterFile::Departments, r))
            .transpose()?;
        import(
            [
                Some(&people[..]),
                Some(&duty[..]),
                overrides.as_deref(),
                Some(&backups[..]),
                departments.as_deref(),
            ],
            is_known_cell,
        )
    }
}

/// One data record, its fields in [`RosterFile::columns`] order; `None` for a field that is
/// absent (short record) or unreadable, already reported.
struct Row {
    line: u64,
    fields: Vec<Option<String>>,
}

/// Collects issues for one file.
struct Report<'a> {
    file: RosterFile,
    issues: &'a mut Vec<Issue>,
}

impl Report<'_> {
    fn push(&mut self, line: Option<u64>, column: Option<&'static str>, problem: Problem) {
        self.issues.push(Issue {
            file: self.file,
            line,
            column,
            problem,
        });
    }
}

/// Reads one file into rows, reporting CSV and header problems. `None` when the header is
/// unusable (absent, or missing a column), so the rows cannot be interpreted.
fn read_table(file: RosterFile, bytes: &[u8], issues: &mut Vec<Issue>) -> Option<Vec<Row>> {
    let mut report = Report { file, issues };
    let expected = file.known_columns();
    let required = file.columns().len();
    let text = empty_comment_lines(bytes);
    let lines = Lines::new(&text);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(&text[..]);
    let mut records = reader.byte_records();

    // The header: the first record. Map each expected column to its position in the file.
    let header = loop {
        match records.next() {
            None => {
                report.push(
                    None,
                    None,
                    Problem::NoHeader {
                        expected: file.columns(),
                    },
                );
                return None;
            }
            Some(Err(e)) => report.push(lines.of_error(&e), None, Problem::Csv(e.to_string())),
            Some(Ok(h)) => break h,
        }
    };
    let header_line = header.position().map(|p| lines.of(p));
    let mut position: Vec<Option<usize>> = vec![None; expected.len()];
    for (i, raw) in header.iter().enumerate() {
        let Ok(name) = std::str::from_utf8(raw) else {
            report.push(header_line, None, Problem::NotUtf8);
            continue;
        };
        match expected.iter().position(|c| c.eq_ignore_ascii_case(name)) {
            None => report.push(
                header_line,
                None,
                Problem::UnknownColumn {
                    name: name.to_owned(),
                    expected,
                },
            ),
            Some(k) if position[k].is_some() => {
                report.push(header_line, None, Problem::DuplicateColumn(name.to_owned()));
            }
            Some(k) => position[k] = Some(i),
        }
    }
    let mut complete = true;
    for (k, column) in expected.iter().enumerate().take(required) {
        if position[k].is_none() {
            report.push(header_line, None, Problem::MissingColumn(column));
            complete = false;
        }
    }
    if !complete {
        return None;
    }

    let mut rows = Vec::new();
    for record in records {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                report.push(lines.of_error(&e), None, Problem::Csv(e.to_string()));
                continue;
            }
        };
        let line = record.position().map_or(0, |p| lines.of(p));
        if record.len() != header.len() {
            report.push(
                Some(line),
                None,
                Problem::FieldCount {
                    found: record.len(),
                    expected: header.len(),
                },
            );
        }
        let fields = expected
            .iter()
            .zip(&position)
            .map(|(column, pos)| {
                let raw = record.get((*pos)?)?;
                match std::str::from_utf8(raw) {
                    Ok(s) => Some(s.to_owned()),
                    Err(_) => {
                        report.push(Some(line), Some(column), Problem::NotUtf8);
                        None
                    }
                }
            })
            .collect();
        rows.push(Row { line, fields });
    }
    Some(rows)
}

/// `bytes` without a leading UTF-8 byte-order mark, and with every comment line (first
/// non-blank character `#`) and whitespace-only line emptied, its newline kept, so the csv
/// reader skips them as blank lines and line numbers still match the file. Lines inside a
/// quoted field are left alone (tracked by the parity of quotes; `""` escapes count twice).
fn empty_comment_lines(bytes: &[u8]) -> Vec<u8> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let mut out = Vec::with_capacity(bytes.len());
    let mut in_quotes = false;
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        let first = line.iter().find(|b| !b.is_ascii_whitespace());
        if !in_quotes && matches!(first, None | Some(b'#')) {
            if line.ends_with(b"\n") {
                out.push(b'\n');
            }
            continue;
        }
        in_quotes ^= line.iter().filter(|&&b| b == b'"').count() % 2 == 1;
        out.extend_from_slice(line);
    }
    out
}

/// Line numbers from byte offsets in the text given to the csv reader.
struct Lines<'a> {
    text: &'a [u8],
    /// Byte offset of the start of each line.
    starts: Vec<usize>,
}

impl<'a> Lines<'a> {
    fn new(text: &'a [u8]) -> Self {
        let starts = std::iter::once(0)
            .chain(
                text.iter()
                    .enumerate()
                    .filter(|(_, b)| **b == b'\n')
                    .map(|(i, _)| i + 1),
            )
            .collect();
        Self { text, starts }
    }

    /// The 1-based line a record starts on. The reader reports a record's position as the end
    /// of the previous one, before any blank lines it skipped; skip them here too.
    fn of(&self, position: &csv::Position) -> u64 {
        let mut at = usize::try_from(position.byte()).unwrap_or(usize::MAX);
        while matches!(self.text.get(at), Some(b'\n' | b'\r')) {
            at += 1;
        }
        // `starts[0]` is 0, so the partition point is at least 1.
        self.starts.partition_point(|&s| s <= at) as u64
    }

    fn of_error(&self, e: &csv::Error) -> Option<u64> {
        e.position().map(|p| self.of(p))
    }
}

/// Reads one row's fields by column, reporting empty required fields.
struct Fields<'r, 'i> {
    file: RosterFile,
    row: &'r Row,
    issues: &'i mut Vec<Issue>,
}

impl Fields<'_, '_> {
    fn index(&self, column: &str) -> usize {
        // Callers pass names from `self.file.known_columns()`; a typo is a bug caught by the
        // tests.
        self.file
            .known_columns()
            .iter()
            .position(|c| *c == column)
            .unwrap_or(usize::MAX)
    }

    /// The field's text, empty or not; `None` if absent (already reported).
    fn optional(&self, column: &'static str) -> Option<&str> {
        self.row.fields.get(self.index(column))?.as_deref()
    }

    /// The field's text; `None` (reported as empty) if it is empty.
    fn required(&mut self, column: &'static str) -> Option<String> {
        let value = self.optional(column)?.to_owned();
        if value.is_empty() {
            self.report(column, Problem::Empty);
            return None;
        }
        Some(value)
    }

    fn report(&mut self, column: &'static str, problem: Problem) {
        self.issues.push(Issue {
            file: self.file,
            line: Some(self.row.line),
            column: Some(column),
            problem,
        });
    }
}

/// What the later files check their references against.
struct Context<'a> {
    is_known_cell: &'a dyn Fn(&str) -> bool,
    /// Every code `departments.csv` names: they stand where cell codes do.
    department_codes: HashSet<String>,
    /// Every id `people.csv` names, valid or not, so a person with a bad phone is reported once
    /// rather than again at every reference; `None` when `people.csv` was unreadable, in which
    /// case references are not checked at all.
    person_ids: Option<HashSet<String>>,
}

impl Context<'_> {
    fn cell(&self, f: &mut Fields<'_, '_>) -> Option<String> {
        let cell = f.required("cell")?;
        if !(self.is_known_cell)(&cell) && !self.department_codes.contains(&cell) {
            f.report("cell", Problem::UnknownCell(cell));
            return None;
        }
        Some(cell)
    }

    fn person(&self, f: &mut Fields<'_, '_>) -> Option<String> {
        let person = f.required("person")?;
        if let Some(ids) = &self.person_ids
            && !ids.contains(&person)
        {
            f.report("person", Problem::UnknownPerson(person));
            return None;
        }
        Some(person)
    }
}

/// Validates the files (indexed as [`RosterFile::ALL`]) and builds the roster, or lists every
/// problem.
fn import(
    files: [Option<&[u8]>; 5],
    is_known_cell: &dyn Fn(&str) -> bool,
) -> Result<Roster, RosterError> {
    let mut issues = Vec::new();
    let mut tables: [Option<Vec<Row>>; 5] = Default::default();
    for (k, file) in RosterFile::ALL.into_iter().enumerate() {
        match files[k] {
            Some(bytes) => tables[k] = read_table(file, bytes, &mut issues),
            None if matches!(file, RosterFile::Overrides | RosterFile::Departments) => {
                tables[k] = Some(Vec::new());
            }
            None => issues.push(Issue {
                file,
                line: None,
                column: None,
                problem: Problem::MissingFile,
            }),
        }
    }
    let [
        people_rows,
        duty_rows,
        override_rows,
        backup_rows,
        department_rows,
    ] = tables;

    let (people, person_ids) = match &people_rows {
        Some(rows) => {
            let (people, ids) = people(rows, &mut issues);
            (people, Some(ids))
        }
        None => (Vec::new(), None),
    };
    let departments = department_rows.map_or_else(Vec::new, |rows| {
        departments(&rows, is_known_cell, &mut issues)
    });
    let cx = Context {
        is_known_cell,
        department_codes: departments.iter().map(|d| d.code.clone()).collect(),
        person_ids,
    };
    let shifts = duty_rows.map_or_else(Vec::new, |rows| shifts(&rows, &cx, &mut issues));
    let overrides = override_rows.map_or_else(Vec::new, |rows| overrides(&rows, &cx, &mut issues));
    let backups = backup_rows.map_or_else(Vec::new, |rows| backups(&rows, &cx, &mut issues));

    if !issues.is_empty() {
        // Stable: within a line, problems stay in column order.
        issues.sort_by_key(|i| (i.file, i.line));
        return Err(RosterError::Invalid(Issues(issues)));
    }
    Ok(Roster::new(people, shifts, overrides, backups).with_departments(departments))
}

fn departments(
    rows: &[Row],
    is_known_cell: &dyn Fn(&str) -> bool,
    issues: &mut Vec<Issue>,
) -> Vec<Department> {
    let mut out = Vec::with_capacity(rows.len());
    let mut first_line: HashMap<String, u64> = HashMap::with_capacity(rows.len());
    for row in rows {
        let mut f = Fields {
            file: RosterFile::Departments,
            row,
            issues,
        };
        let code = f.required("code").and_then(|code| {
            if let Some(&first) = first_line.get(&code) {
                f.report(
                    "code",
                    Problem::DuplicateDepartment {
                        code,
                        first_line: first,
                    },
                );
                return None;
            }
            first_line.insert(code.clone(), row.line);
            if let Err(reason) = check_id(&code) {
                f.report(
                    "code",
                    Problem::BadId {
                        value: code,
                        reason,
                    },
                );
                return None;
            }
            if is_known_cell(&code) {
                f.report("code", Problem::DepartmentIsACell(code));
                return None;
            }
            Some(code)
        });
        let name = f.required("name");
        let kind = f.required("kind");
        let cell = f.required("cell").and_then(|cell| {
            if is_known_cell(&cell) {
                Some(cell)
            } else {
                f.report("cell", Problem::UnknownCell(cell));
                None
            }
        });
        if let (Some(code), Some(name), Some(kind), Some(cell)) = (code, name, kind, cell) {
            out.push(Department {
                code,
                name,
                kind,
                cell,
            });
        }
    }
    out
}

fn people(rows: &[Row], issues: &mut Vec<Issue>) -> (Vec<Person>, HashSet<String>) {
    let mut people = Vec::with_capacity(rows.len());
    let mut first_line: HashMap<String, u64> = HashMap::with_capacity(rows.len());
    for row in rows {
        let mut f = Fields {
            file: RosterFile::People,
            row,
            issues,
        };
        let id = f.required("id").and_then(|id| {
            if let Some(&first) = first_line.get(&id) {
                f.report(
                    "id",
                    Problem::DuplicatePerson {
                        id,
                        first_line: first,
                    },
                );
                return None;
            }
            first_line.insert(id.clone(), row.line);
            if let Err(reason) = check_id(&id) {
                f.report("id", Problem::BadId { value: id, reason });
                return None;
            }
            Some(id)
        });
        let name = f.required("name");
        let phone = f.required("phone").and_then(|phone| {
            if check_phone(&phone) {
                Some(phone)
            } else {
                f.report("phone", Problem::BadPhone(phone));
                None
            }
        });
        let roles = f.required("roles").and_then(|field| {
            let (roles, unknown) = parse_roles(&field);
            let ok = unknown.is_empty();
            for name in unknown {
                f.report("roles", Problem::UnknownRole(name));
            }
            if roles.is_empty() && ok {
                // Only separators, e.g. `;`.
                f.report("roles", Problem::Empty);
            }
            (ok && !roles.is_empty()).then_some(roles)
        });
        // Optional column: absent or blank means the app alone.
        let channels = match f.optional("channels").filter(|c| !c.is_empty()) {
            None => Some(vec![Channel::App]),
            Some(field) => {
                let (channels, unknown) = parse_channels(field);
                let ok = unknown.is_empty();
                for name in unknown {
                    f.report("channels", Problem::UnknownChannel(name));
                }
                if channels.is_empty() && ok {
                    f.report("channels", Problem::Empty);
                }
                (ok && !channels.is_empty()).then_some(channels)
            }
        };
        if let (Some(id), Some(name), Some(phone), Some(roles), Some(channels)) =
            (id, name, phone, roles, channels)
        {
            people.push(Person {
                id,
                name,
                phone,
                roles,
                channels,
            });
        }
    }
    (people, first_line.into_keys().collect())
}

fn shifts(rows: &[Row], cx: &Context<'_>, issues: &mut Vec<Issue>) -> Vec<Shift> {
    let mut shifts = Vec::with_capacity(rows.len());
    for row in rows {
        let mut f = Fields {
            file: RosterFile::Duty,
            row,
            issues,
        };
        let cell = cx.cell(&mut f);
        let person = cx.person(&mut f);
        let days = f
            .required("days")
            .and_then(|value| match Days::parse(&value) {
                Ok(days) => Some(days),
                Err(reason) => {
                    f.report("days", Problem::BadDays { value, reason });
                    None
                }
            });
        let mut time = |column: &'static str| {
            let value = f.required(column)?;
            let parsed = TimeOfDay::parse(&value).and_then(|t| {
                if column == "start" && t == TimeOfDay::END_OF_DAY {
                    Err("a shift cannot start at the end of a day; use 00:00".to_owned())
                } else {
                    Ok(t)
                }
            });
            match parsed {
                Ok(t) => Some(t),
                Err(reason) => {
                    f.report(column, Problem::BadTime { value, reason });
                    None
                }
            }
        };
        let (start, end) = (time("start"), time("end"));
        if let (Some(start), Some(end)) = (start, end)
            && start == end
        {
            f.report("end", Problem::StartEqualsEnd(start.to_string()));
            continue;
        }
        if let (Some(cell), Some(person), Some(days), Some(start), Some(end)) =
            (cell, person, days, start, end)
        {
            shifts.push(Shift {
                cell,
                person,
                days,
                start,
                end,
            });
        }
    }
    shifts
}

fn overrides(rows: &[Row], cx: &Context<'_>, issues: &mut Vec<Issue>) -> Vec<Override> {
    let mut overrides = Vec::with_capacity(rows.len());
    for row in rows {
        let mut f = Fields {
            file: RosterFile::Overrides,
            row,
            issues,
        };
        let cell = cx.cell(&mut f);
        let person = cx.person(&mut f);
        let mut when = |column: &'static str| {
            let value = f.required(column)?;
            match LocalDateTime::parse(&value) {
                Ok(t) => Some(t),
                Err(reason) => {
                    f.report(column, Problem::BadDateTime { value, reason });
                    None
                }
            }
        };
        let (from, until) = (when("from"), when("until"));
        if let (Some(from), Some(until)) = (from, until)
            && until <= from
        {
            f.report(
                "until",
                Problem::UntilNotAfterFrom {
                    from: from.to_string(),
                    until: until.to_string(),
                },
            );
            continue;
        }
        let kind = f
            .required("kind")
            .and_then(|value| match OverrideKind::parse(&value) {
                Some(kind) => Some(kind),
                None => {
                    f.report("kind", Problem::UnknownKind(value));
                    None
                }
            });
        let reason = f.optional("reason").unwrap_or_default().to_owned();
        if let (Some(cell), Some(person), Some(from), Some(until), Some(kind)) =
            (cell, person, from, until, kind)
        {
            overrides.push(Override {
                cell,
                person,
                from,
                until,
                kind,
                reason,
            });
        }
    }
    overrides
}

fn backups(rows: &[Row], cx: &Context<'_>, issues: &mut Vec<Issue>) -> Vec<(String, String)> {
    let mut backups = Vec::with_capacity(rows.len());
    let mut first_line: HashMap<String, u64> = HashMap::new();
    for row in rows {
        let mut f = Fields {
            file: RosterFile::Backups,
            row,
            issues,
        };
        let cell = cx.cell(&mut f).and_then(|cell| {
            if let Some(&first) = first_line.get(&cell) {
                f.report(
                    "cell",
                    Problem::DuplicateBackup {
                        cell,
                        first_line: first,
                    },
                );
                return None;
            }
            first_line.insert(cell.clone(), row.line);
            Some(cell)
        });
        let person = cx.person(&mut f);
        if let (Some(cell), Some(person)) = (cell, person) {
            backups.push((cell, person));
        }
    }
    backups
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roster::Channel;

    fn load(people: &str) -> Result<Roster, RosterError> {
        Roster::from_strs(
            RosterFiles {
                people,
                duty: "cell,person,days,start,end\n",
                overrides: None,
                backups: "cell,person\n",
                departments: None,
            },
            &|_| true,
        )
    }

    #[test]
    fn the_channels_column_is_optional_and_defaults_to_the_app() {
        let r = load("id,name,phone,roles\np-a,A,13800000001,member\n").unwrap();
        assert_eq!(r.person("p-a").unwrap().channels(), [Channel::App]);
        let r = load(
            "id,name,phone,roles,Channels\n\
             p-a,A,13800000001,member,sms\n\
             p-b,B,13800000002,member,\n",
        )
        .unwrap();
        assert!(r.person("p-a").unwrap().wants(Channel::Sms));
        assert!(r.person("p-a").unwrap().wants(Channel::App));
        assert_eq!(r.person("p-b").unwrap().channels(), [Channel::App]);
    }

    #[test]
    fn a_bad_channel_is_reported_with_its_line_and_column() {
        let e = load(
            "id,name,phone,roles,channels\n\
             # a comment line still counts\n\
             p-a,A,13800000001,member,sms;pager\n\
             p-b,B,13800000002,member,;\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("people.csv line 3, column channels: unknown channel \"pager\""),
            "{e}"
        );
        assert!(e.contains("people.csv line 4, column channels:"), "{e}");
    }
}
