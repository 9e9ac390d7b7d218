//! The roster's error type and the problems validation reports, every one at once.
//!
//! Each problem names its file, the line its record starts on (the header is line 1, comment
//! lines count), the column, and the bad value, so an operator can fix a whole roster in one
//! pass: `duty.csv line 7, column start: bad time "25:00": the hour must be 0 to 24`.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

/// Everything that can go wrong building a [`Roster`](super::Roster).
#[derive(Debug, thiserror::Error)]
pub enum RosterError {
    /// A file could not be read (a missing required file is an [`Issue`] instead, so it is
    /// reported together with the problems in the other files).
    #[error("cannot read the roster file {}: {source}", path.display())]
    Read {
        /// The file (for readers, its name in the roster directory).
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The files were read but describe an invalid roster; every problem found is listed.
    #[error("{0}")]
    Invalid(Issues),
    /// A UTC offset no place on Earth uses.
    #[error(
        "UTC offset {0} minutes is out of range; it must be within ±{max} minutes (±18:00)",
        max = super::MAX_UTC_OFFSET_MINUTES
    )]
    UtcOffset(i32),
}

impl RosterError {
    /// The problems, if the files were readable.
    pub fn issues(&self) -> &[Issue] {
        match self {
            Self::Invalid(issues) => &issues.0,
            Self::Read { .. } | Self::UtcOffset(_) => &[],
        }
    }
}

/// Every problem found in one roster, in file order (people, duty, overrides, backups), then by
/// line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issues(pub Vec<Issue>);

impl fmt::Display for Issues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(
            f,
            "{n} problem{} in the roster:",
            if n == 1 { "" } else { "s" }
        )?;
        for issue in &self.0 {
            write!(f, "\n  {issue}")?;
        }
        Ok(())
    }
}

/// The files of a roster directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RosterFile {
    /// `people.csv`: `id,name,phone,roles`, optionally `channels`.
    People,
    /// `duty.csv`: `cell,person,days,start,end`.
    Duty,
    /// `overrides.csv` (optional): `cell,person,from,until,kind,reason`.
    Overrides,
    /// `backups.csv`: `cell,person`.
    Backups,
    /// `departments.csv` (optional): `code,name,kind,cell`.
    Departments,
}

impl RosterFile {
    /// All of them, in the order they are read and reported.
    pub const ALL: [Self; 5] = [
        Self::People,
        Self::Duty,
        Self::Overrides,
        Self::Backups,
        Self::Departments,
    ];

    /// The file's name in a roster directory.
    pub fn file_name(self) -> &'static str {
        match self {
            Self::People => "people.csv",
            Self::Duty => "duty.csv",
            Self::Overrides => "overrides.csv",
            Self::Backups => "backups.csv",
            Self::Departments => "departments.csv",
        }
    }

    /// The columns its header must have, in the documented order (any order is accepted).
    pub fn columns(self) -> &'static [&'static str] {
        match self {
            Self::People => &["id", "name", "phone", "roles"],
            Self::Duty => &["cell", "person", "days", "start", "end"],
            Self::Overrides => &["cell", "person", "from", "until", "kind", "reason"],
            Self::Backups => &["cell", "person"],
            Self::Departments => &["code", "name", "kind", "cell"],
        }
    }

    /// Every column the header may name: the required [`RosterFile::columns`] first, then the
    /// optional ones (people's `channels`), whose fields are `None` when the file lacks them.
    pub fn known_columns(self) -> &'static [&'static str] {
        match self {
            Self::People => &["id", "name", "phone", "roles", "channels"],
            other => other.columns(),
        }
    }
}

impl fmt::Display for RosterFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.file_name())
    }
}

/// One problem and where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issue {
    /// The file.
    pub file: RosterFile,
    /// The line the record starts on (1 is the header); `None` for the file as a whole.
    pub line: Option<u64>,
    /// The column, when the problem is in one field.
    pub column: Option<&'static str>,
    /// What is wrong.
    pub problem: Problem,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        match (self.line, self.column) {
            (Some(line), Some(column)) => write!(f, " line {line}, column {column}")?,
            (Some(line), None) => write!(f, " line {line}")?,
            (None, Some(column)) => write!(f, ", column {column}")?,
            (None, None) => {}
        }
        write!(f, ": {}", self.problem)
    }
}

/// What is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    /// A required file is absent from the roster directory.
    #[error("required file is missing")]
    MissingFile,
    /// The text is not CSV the reader can parse (the csv crate's message).
    #[error("not valid CSV: {0}")]
    Csv(String),
    /// The file has no header line.
    #[error("no header line; expected the columns {}", .expected.join(","))]
    NoHeader {
        /// The columns the file needs.
        expected: &'static [&'static str],
    },
    /// A header names a column this file does not have.
    #[error("unknown column {name:?}; expected the columns {}", .expected.join(","))]
    UnknownColumn {
        /// The header's text.
        name: String,
        /// The columns the file needs.
        expected: &'static [&'static str],
    },
    /// A header lacks a column.
    #[error("missing column {0:?}")]
    MissingColumn(&'static str),
    /// A header names a column twice.
    #[error("column {0:?} appears twice in the header")]
    DuplicateColumn(String),
    /// A record has more or fewer fields than the header.
    #[error("{found} fields, but the header has {expected}")]
    FieldCount {
        /// Fields in the record.
        found: usize,
        /// Columns in the header.
        expected: usize,
    },
    /// A field's bytes are not UTF-8 (a spreadsheet saved as GBK, typically).
    #[error("not valid UTF-8; save the file as UTF-8")]
    NotUtf8,
    /// A required field is empty.
    #[error("empty; a value is required")]
    Empty,
    /// A person id that cannot go into an MQTT topic level.
    #[error("bad person id {value:?}: {reason}")]
    BadId {
        /// The id.
        value: String,
        /// Which rule it breaks.
        reason: String,
    },
    /// Not a mainland mobile number.
    #[error(
        "bad phone {0:?}: expected a mainland mobile number, 11 digits starting 13 to 19, \
         optionally prefixed +86"
    )]
    BadPhone(String),
    /// A role other than member, leader, operator, admin.
    #[error("unknown role {0:?}; roles are member, leader, operator, admin, separated by ';'")]
    UnknownRole(String),
    /// A notification channel other than app, work_app, sms.
    #[error("unknown channel {0:?}; channels are app, work_app, sms, separated by ';'")]
    UnknownChannel(String),
    /// The second person with an id.
    #[error("duplicate person id {id:?}; it is first defined on line {first_line}")]
    DuplicatePerson {
        /// The id.
        id: String,
        /// Where the first one is in `people.csv`.
        first_line: u64,
    },
    /// A reference to an id `people.csv` does not define.
    #[error("unknown person {0:?}: not in people.csv")]
    UnknownPerson(String),
    /// The second department with a code.
    #[error("duplicate department code {code:?}; it is first defined on line {first_line}")]
    DuplicateDepartment {
        /// The code.
        code: String,
        /// Where the first one is in `departments.csv`.
        first_line: u64,
    },
    /// A department code that is also a grid cell's: references to it would be ambiguous.
    #[error("department code {0:?} is a grid cell's code; choose another (e.g. D-{0})")]
    DepartmentIsACell(String),
    /// A cell code the grid does not know.
    #[error("unknown cell {0:?}: not in the grid")]
    UnknownCell(String),
    /// A days field that is not a list of weekdays.
    #[error("bad days {value:?}: {reason}")]
    BadDays {
        /// The field.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A time of day that is not `HH:MM`.
    #[error("bad time {value:?}: {reason}")]
    BadTime {
        /// The field.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A shift that starts when it ends (neither empty nor 24 hours is meant clearly).
    #[error(
        "shift starts and ends at {0}; a shift needs a length (use 00:00 to 24:00 for a whole \
         day)"
    )]
    StartEqualsEnd(String),
    /// A date and time that is not `YYYY-MM-DD HH:MM` or not a real date.
    #[error("bad date and time {value:?}: {reason}")]
    BadDateTime {
        /// The field.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An override that ends before it starts, or when it starts.
    #[error("until {until} is not after from {from}")]
    UntilNotAfterFrom {
        /// The start, as written.
        from: String,
        /// The end, as written.
        until: String,
    },
    /// An override kind other than `on` and `off`.
    #[error("unknown kind {0:?}; expected on (extra duty) or off (leave)")]
    UnknownKind(String),
    /// A second backup for a cell.
    #[error(
        "cell {cell:?} already has a backup on line {first_line}; a cell has at most one backup"
    )]
    DuplicateBackup {
        /// The cell.
        cell: String,
        /// Where the first backup is in `backups.csv`.
        first_line: u64,
    },
}
