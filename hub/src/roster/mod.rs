//! The roster (值班表): who is on duty in which grid cell, when, and who stands in when nobody
//! is.
//!
//! Pure code: no I/O except reading the CSV files or texts it is handed. The roster does not
//! know the grid; importers take an "is this a known cell code" function so references to
//! cells that do not exist are reported, and cells are referred to by their codes
//! (`532329101001-G01`).
//!
//! ```text
//! people.csv  duty.csv  overrides.csv  backups.csv
//!      └──────────┴───────────┴──────────────┘
//!          Roster::load_dir / from_strs / from_readers
//!            validate: every problem at once, with file, line, column and value
//!                          ▼
//!                       Roster ── on_duty(cell, UtcMillis) → OnDuty { people, found_by }
//!                                 people_of(cell), cells_of(person), person(id), warnings()
//! ```
//!
//! Files (UTF-8 CSV, header required; `#` comment lines allowed; details in [`import`]):
//!
//! - `people.csv`: `id,name,phone,roles` — ids are 1–64 of `[A-Za-z0-9_-]` (they become MQTT
//!   topic levels, `se/v1/person/{id}/notify`); phones are mainland mobiles, optionally `+86`;
//!   roles are `;`-separated from `member` (网格员), `leader` (网格长), `operator` (综治中心值班员),
//!   `admin`; an optional `channels` column adds `sms` and `work_app` to the app push everyone
//!   gets (`;`-separated, blank: the app alone).
//! - `duty.csv`: `cell,person,days,start,end` — weekly shifts in local time; days like
//!   `mon-fri`, `sat;sun`, `daily`; an overnight shift (`22:00`,`06:00`) belongs to the day it
//!   starts; `00:00`–`24:00` is a whole day.
//! - `overrides.csv` (optional): `cell,person,from,until,kind,reason` — local
//!   `YYYY-MM-DD HH:MM`, `until` exclusive; kind `on` (extra duty) or `off` (leave in that
//!   cell).
//! - `backups.csv`: `cell,person` — at most one per cell; notified when nobody is on duty there.
//! - `departments.csv` (optional): `code,name,kind,cell` — functional departments (交警, 消防
//!   …); a department's code stands where a cell code does in the other files, so its people
//!   have shifts, overrides and a backup like a cell's (see [`Department`]).
//!
//! Times are local on a fixed offset from UTC ([`DEFAULT_UTC_OFFSET_MINUTES`], China), so
//! [`Roster::on_duty`] is a pure function of the roster and a [`UtcMillis`](protocol::UtcMillis).

mod department;
mod duty;
pub mod import;
mod person;
mod schedule;
pub mod validate;

pub use department::Department;
pub use duty::{
    DEFAULT_UTC_OFFSET_MINUTES, FoundBy, MAX_UTC_OFFSET_MINUTES, OnDuty, Roster, Summary, Warning,
};
pub use import::RosterFiles;
pub use person::{Channel, MAX_PERSON_ID_CHARS, Person, Role, UnknownRole, check_id, check_phone};
pub use schedule::{Days, LocalDateTime, Override, OverrideKind, Shift, TimeOfDay, Weekday};
pub use validate::{Issue, Issues, Problem, RosterError, RosterFile};
