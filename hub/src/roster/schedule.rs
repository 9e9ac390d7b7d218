//! When people are on duty: weekly shifts and one-off overrides, in local wall-clock time.
//!
//! Rosters are written by people in local time, so shifts and overrides are stored as written
//! (minutes on the local wall clock) and a query's UTC instant is moved onto that clock once,
//! with the roster's fixed UTC offset. A fixed offset rather than a time-zone database because
//! China has one zone and no daylight saving; a roster elsewhere sets its own offset.
//!
//! Intervals are half-open: a shift `08:00`–`18:00` covers 08:00:00.000 up to, not including,
//! 18:00:00.000, so back-to-back shifts never both cover the hand-over instant.

use std::fmt;

use protocol::time::{UtcMillis, format_rfc3339_ms, parse_rfc3339_ms};
use serde::{Serialize, Serializer};

const MS_PER_MINUTE: i64 = 60_000;
const MS_PER_DAY: i64 = 86_400_000;
const MINUTES_PER_DAY: u16 = 1440;

/// An instant on the roster's local wall clock: milliseconds since 1970-01-01 00:00 local.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct LocalInstant(pub(crate) i64);

impl LocalInstant {
    /// `at` on a clock `utc_offset_minutes` ahead of UTC.
    pub(crate) fn from_utc(at: UtcMillis, utc_offset_minutes: i32) -> Self {
        Self(at.0.saturating_add(i64::from(utc_offset_minutes) * MS_PER_MINUTE))
    }

    /// Local days since 1970-01-01.
    fn day(self) -> i64 {
        self.0.div_euclid(MS_PER_DAY)
    }

    /// Milliseconds since local midnight.
    fn ms_of_day(self) -> i64 {
        self.0.rem_euclid(MS_PER_DAY)
    }

    /// The weekday of the local date.
    pub(crate) fn weekday(self) -> Weekday {
        Weekday::of_day(self.day())
    }
}

/// A day of the week.
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
    strum::IntoStaticStr,
    strum::Display,
    strum::EnumString,
    strum::EnumIter,
)]
#[serde(rename_all = "lowercase")]
// Case-insensitive, so a spreadsheet's `Mon` is accepted.
#[strum(serialize_all = "lowercase", ascii_case_insensitive)]
pub enum Weekday {
    /// Monday.
    Mon,
    /// Tuesday.
    Tue,
    /// Wednesday.
    Wed,
    /// Thursday.
    Thu,
    /// Friday.
    Fri,
    /// Saturday.
    Sat,
    /// Sunday.
    Sun,
}

impl Weekday {
    /// Monday first, as Chinese calendars (and ISO 8601) order the week.
    pub const ALL: [Self; 7] = [
        Self::Mon,
        Self::Tue,
        Self::Wed,
        Self::Thu,
        Self::Fri,
        Self::Sat,
        Self::Sun,
    ];

    /// The three-letter name used in `duty.csv`.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// The weekday of a day count since 1970-01-01, which was a Thursday.
    fn of_day(day: i64) -> Self {
        // rem_euclid(7) is in 0..7, so the index is in range.
        Self::ALL[(day + 3).rem_euclid(7) as usize]
    }

    /// The day before.
    fn previous(self) -> Self {
        Self::ALL[(self as usize + 6) % 7]
    }

    fn parse(s: &str) -> Option<Self> {
        s.parse().ok()
    }
}

/// A set of weekdays, written in `duty.csv` as `daily` or a `;`-separated list of days
/// (`mon`…`sun`) and ranges (`mon-fri`; a range may wrap over the weekend, `fri-mon`).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Days(u8);

impl Days {
    /// Every day.
    pub const DAILY: Self = Self(0x7f);

    /// Whether `day` is in the set.
    pub fn contains(self, day: Weekday) -> bool {
        self.0 & (1 << day as u8) != 0
    }

    /// Whether the set is empty (never true of a parsed set).
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The days in the set, Monday first.
    pub fn iter(self) -> impl Iterator<Item = Weekday> {
        Weekday::ALL.into_iter().filter(move |d| self.contains(*d))
    }

    fn insert(&mut self, day: Weekday) {
        self.0 |= 1 << day as u8;
    }

    /// Parses a days field; the error says what is wrong, for the issue list.
    pub fn parse(s: &str) -> Result<Self, String> {
        const HELP: &str = "use daily, days mon…sun, or ranges like mon-fri, separated by ';'";
        let mut days = Self::default();
        for token in s.split(';').map(str::trim).filter(|t| !t.is_empty()) {
            if token.eq_ignore_ascii_case("daily") {
                days = Self::DAILY;
            } else if let Some((a, b)) = token.split_once('-') {
                let (Some(first), Some(last)) =
                    (Weekday::parse(a.trim()), Weekday::parse(b.trim()))
                else {
                    return Err(format!("{token:?} is not a range of days; {HELP}"));
                };
                let mut d = first;
                days.insert(d);
                while d != last {
                    d = Weekday::ALL[(d as usize + 1) % 7];
                    days.insert(d);
                }
            } else if let Some(d) = Weekday::parse(token) {
                days.insert(d);
            } else {
                return Err(format!("{token:?} is not a day; {HELP}"));
            }
        }
        if days.is_empty() {
            return Err(format!("no days; {HELP}"));
        }
        Ok(days)
    }
}

impl fmt::Display for Days {
    /// Canonical form: `daily`, else runs of three or more days as ranges (`mon-fri;sun`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Self::DAILY {
            return f.write_str("daily");
        }
        let mut parts = Vec::new();
        let mut i = 0;
        while i < 7 {
            if !self.contains(Weekday::ALL[i]) {
                i += 1;
                continue;
            }
            let start = i;
            while i + 1 < 7 && self.contains(Weekday::ALL[i + 1]) {
                i += 1;
            }
            if i - start >= 2 {
                parts.push(format!("{}-{}", Weekday::ALL[start], Weekday::ALL[i]));
            } else {
                parts.extend((start..=i).map(|k| Weekday::ALL[k].to_string()));
            }
            i += 1;
        }
        f.write_str(&parts.join(";"))
    }
}

impl fmt::Debug for Days {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Days({self})")
    }
}

impl Serialize for Days {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A local time of day, `00:00` to `24:00` (the last only as a shift's end).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimeOfDay(u16);

impl TimeOfDay {
    /// Midnight at the start of a day.
    pub const MIDNIGHT: Self = Self(0);
    /// Midnight at the end of a day, only meaningful as a shift's end.
    pub const END_OF_DAY: Self = Self(MINUTES_PER_DAY);

    /// From hours and minutes; `None` past `24:00`.
    pub fn from_hm(hour: u16, minute: u16) -> Option<Self> {
        (minute < 60 && hour * 60 + minute <= MINUTES_PER_DAY).then_some(Self(hour * 60 + minute))
    }

    /// Minutes since midnight, 0 to 1440.
    pub fn minutes(self) -> u16 {
        self.0
    }

    fn ms(self) -> i64 {
        i64::from(self.0) * MS_PER_MINUTE
    }

    /// Parses `HH:MM` (or `H:MM`, as spreadsheets write morning hours), `00:00` to `24:00`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        let Some((h, m)) = s.split_once(':') else {
            return Err("expected HH:MM".to_owned());
        };
        if !(digits(h) && h.len() <= 2 && digits(m) && m.len() == 2) {
            return Err("expected HH:MM".to_owned());
        }
        let (hour, minute): (u16, u16) = match (h.parse(), m.parse()) {
            (Ok(h), Ok(m)) => (h, m),
            _ => return Err("expected HH:MM".to_owned()),
        };
        if minute > 59 {
            return Err(format!("minute {minute} is past 59"));
        }
        Self::from_hm(hour, minute).ok_or_else(|| "past 24:00".to_owned())
    }
}

impl fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.0 / 60, self.0 % 60)
    }
}

impl Serialize for TimeOfDay {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A local date and time to the minute, written `YYYY-MM-DD HH:MM`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LocalDateTime(i64);

impl LocalDateTime {
    /// Parses `YYYY-MM-DD HH:MM` (a `T` in place of the space is accepted too); the date must
    /// exist and the time be 00:00 to 23:59.
    pub fn parse(s: &str) -> Result<Self, String> {
        let b = s.as_bytes();
        if b.len() != 16
            || b[4] != b'-'
            || b[7] != b'-'
            || !matches!(b[10], b' ' | b'T')
            || b[13] != b':'
        {
            return Err("expected YYYY-MM-DD HH:MM".to_owned());
        }
        // The shape check above makes these ASCII boundaries; reuse the protocol's calendar.
        let rfc3339 = format!("{}T{}:00Z", &s[..10], &s[11..]);
        parse_rfc3339_ms(&rfc3339)
            .map(|ms| Self(ms.div_euclid(MS_PER_MINUTE)))
            .ok_or_else(|| "no such date or time".to_owned())
    }

    /// Minutes since 1970-01-01 00:00 on the local clock.
    pub fn minutes(self) -> i64 {
        self.0
    }

    /// The UTC instant of this local time on a clock `utc_offset_minutes` ahead of UTC.
    pub fn to_utc(self, utc_offset_minutes: i32) -> UtcMillis {
        UtcMillis((self.0 - i64::from(utc_offset_minutes)) * MS_PER_MINUTE)
    }

    fn ms(self) -> i64 {
        self.0 * MS_PER_MINUTE
    }
}

impl fmt::Display for LocalDateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = format_rfc3339_ms(self.ms());
        // `YYYY-MM-DDTHH:MM:SS.mmmZ` → `YYYY-MM-DD HH:MM`.
        match (s.get(..10), s.get(11..16)) {
            (Some(date), Some(time)) => write!(f, "{date} {time}"),
            _ => f.write_str(&s),
        }
    }
}

impl Serialize for LocalDateTime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A weekly duty shift in one cell.
///
/// `start < end` covers `[start, end)` on each of `days`. `start > end` is an overnight shift:
/// it belongs to the day it starts, covering `[start, 24:00)` on each of `days` and
/// `[00:00, end)` on the day after — so `sun 22:00–06:00` runs into Monday morning, and a
/// Monday-only night shift does not cover early Monday.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Shift {
    pub(crate) cell: String,
    pub(crate) person: String,
    pub(crate) days: Days,
    pub(crate) start: TimeOfDay,
    pub(crate) end: TimeOfDay,
}

impl Shift {
    /// The cell's code.
    pub fn cell(&self) -> &str {
        &self.cell
    }

    /// The person's id.
    pub fn person(&self) -> &str {
        &self.person
    }

    /// The days it starts on.
    pub fn days(&self) -> Days {
        self.days
    }

    /// Local start time.
    pub fn start(&self) -> TimeOfDay {
        self.start
    }

    /// Local end time; before the start for an overnight shift.
    pub fn end(&self) -> TimeOfDay {
        self.end
    }

    /// Whether it runs past midnight into the next day.
    pub fn is_overnight(&self) -> bool {
        self.end < self.start
    }

    pub(crate) fn covers(&self, at: LocalInstant) -> bool {
        let (day, ms) = (at.weekday(), at.ms_of_day());
        if self.is_overnight() {
            (self.days.contains(day) && ms >= self.start.ms())
                || (self.days.contains(day.previous()) && ms < self.end.ms())
        } else {
            self.days.contains(day) && self.start.ms() <= ms && ms < self.end.ms()
        }
    }
}

/// What a one-off override does.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    strum::IntoStaticStr,
    strum::Display,
    strum::EnumString,
    strum::EnumIter,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase", ascii_case_insensitive)]
pub enum OverrideKind {
    /// Extra duty: on duty in the cell for the period, shift or not.
    On,
    /// Leave: not on duty in the cell for the period, whatever shifts, extra duty or backup say.
    Off,
}

impl OverrideKind {
    /// The name used in `overrides.csv`.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        s.parse().ok()
    }
}

/// A one-off change to who is on duty in a cell, from `from` up to (not including) `until`,
/// local time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Override {
    pub(crate) cell: String,
    pub(crate) person: String,
    pub(crate) from: LocalDateTime,
    pub(crate) until: LocalDateTime,
    pub(crate) kind: OverrideKind,
    pub(crate) reason: String,
}

impl Override {
    /// The cell's code.
    pub fn cell(&self) -> &str {
        &self.cell
    }

    /// The person's id.
    pub fn person(&self) -> &str {
        &self.person
    }

    /// Start, local time (inclusive).
    pub fn from(&self) -> LocalDateTime {
        self.from
    }

    /// End, local time (exclusive); always after [`from`](Self::from).
    pub fn until(&self) -> LocalDateTime {
        self.until
    }

    /// Extra duty or leave.
    pub fn kind(&self) -> OverrideKind {
        self.kind
    }

    /// Why, free text (may be empty).
    pub fn reason(&self) -> &str {
        &self.reason
    }

    pub(crate) fn covers(&self, at: LocalInstant) -> bool {
        self.from.ms() <= at.0 && at.0 < self.until.ms()
    }
}

#[cfg(test)]
mod tests {
    use strum::IntoEnumIterator;

    use super::*;

    #[test]
    fn weekday_and_override_names_are_their_serde_names_and_parse_back() {
        for d in Weekday::iter() {
            assert_eq!(serde_json::to_value(d).ok(), Some(d.as_str().into()));
            assert_eq!(Weekday::parse(&d.as_str().to_uppercase()), Some(d));
        }
        for k in OverrideKind::iter() {
            assert_eq!(serde_json::to_value(k).ok(), Some(k.as_str().into()));
            assert_eq!(OverrideKind::parse(&k.as_str().to_uppercase()), Some(k));
        }
    }

    fn days(s: &str) -> Days {
        Days::parse(s).expect("valid days")
    }

    fn list(d: Days) -> Vec<Weekday> {
        d.iter().collect()
    }

    #[test]
    fn day_specs_parse_to_the_days_they_name() {
        use Weekday::*;
        assert_eq!(list(days("mon-fri")), vec![Mon, Tue, Wed, Thu, Fri]);
        assert_eq!(list(days("sat;sun")), vec![Sat, Sun]);
        assert_eq!(list(days("mon;wed;fri")), vec![Mon, Wed, Fri]);
        assert_eq!(days("daily"), Days::DAILY);
        assert_eq!(list(days(" Mon - Wed ; SUN ")), vec![Mon, Tue, Wed, Sun]);
        assert_eq!(list(days("fri-mon")), vec![Mon, Fri, Sat, Sun]);
        assert_eq!(list(days("thu-thu")), vec![Thu]);
    }

    #[test]
    fn bad_day_specs_say_which_token_is_wrong() {
        for (spec, token) in [
            ("monday", "monday"),
            ("mon-fry", "mon-fry"),
            ("mon,tue", "mon,tue"),
            ("周一", "周一"),
        ] {
            let err = Days::parse(spec).expect_err(spec);
            assert!(err.contains(&format!("{token:?}")), "{spec}: {err}");
        }
        assert!(Days::parse("").expect_err("empty").starts_with("no days"));
        assert!(Days::parse(" ; ").is_err());
    }

    #[test]
    fn days_display_in_canonical_form() {
        assert_eq!(days("mon;tue;wed;thu;fri").to_string(), "mon-fri");
        assert_eq!(days("sun;sat").to_string(), "sat;sun");
        assert_eq!(days("mon-sun").to_string(), "daily");
        assert_eq!(days("fri-mon").to_string(), "mon;fri-sun");
        assert_eq!(days("mon;wed;fri").to_string(), "mon;wed;fri");
    }

    #[test]
    fn times_parse_from_midnight_to_end_of_day() {
        let t = |s| TimeOfDay::parse(s).map(TimeOfDay::minutes);
        assert_eq!(t("00:00"), Ok(0));
        assert_eq!(t("08:30"), Ok(510));
        assert_eq!(t("8:30"), Ok(510));
        assert_eq!(t("23:59"), Ok(1439));
        assert_eq!(t("24:00"), Ok(1440));
        for bad in [
            "24:01", "25:00", "12:60", "1200", "12:5", "", "ab:cd", "-1:00", "123:00",
        ] {
            assert!(TimeOfDay::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            TimeOfDay::parse("8:05").map(|t| t.to_string()),
            Ok("08:05".to_owned())
        );
    }

    #[test]
    fn local_date_times_must_be_real_dates() {
        let t = LocalDateTime::parse("2026-11-23 10:00").expect("valid");
        assert_eq!(t.to_string(), "2026-11-23 10:00");
        // 10:00 in China is 02:00 UTC.
        assert_eq!(t.to_utc(480).to_string(), "2026-11-23T02:00:00.000Z");
        assert_eq!(LocalDateTime::parse("2026-11-23T10:00"), Ok(t));
        assert!(LocalDateTime::parse("2028-02-29 00:00").is_ok());
        for bad in [
            "2026-02-29 10:00",
            "2026-13-01 10:00",
            "2026-11-23 24:00",
            "2026-11-23 10:60",
            "2026-11-23",
            "2026/11/23 10:00",
            "2026-11-23 10:00:00",
            "2026-11-23  10:0",
        ] {
            assert!(LocalDateTime::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn weekdays_follow_the_local_date_not_the_utc_date() {
        // 2026-11-22 20:00 UTC is Monday 2026-11-23 04:00 in China, still Sunday in UTC.
        let at = UtcMillis(parse_rfc3339_ms("2026-11-22T20:00:00Z").expect("valid"));
        assert_eq!(LocalInstant::from_utc(at, 0).weekday(), Weekday::Sun);
        assert_eq!(LocalInstant::from_utc(at, 480).weekday(), Weekday::Mon);
        // Before the epoch, too: 1969-12-31 was a Wednesday.
        assert_eq!(LocalInstant(-1).weekday(), Weekday::Wed);
    }
}
