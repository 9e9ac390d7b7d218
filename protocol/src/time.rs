//! UTC times on the wire: RFC 3339 with milliseconds (`2026-11-22T08:00:00.123Z`), held in
//! memory as milliseconds since the Unix epoch.
//!
//! Why a hand-written formatter and parser rather than `chrono` or `time`: the wire needs one
//! fixed shape, both directions are ~100 lines with the civil-date algorithms below, and the
//! cores deal only in integer milliseconds. Leap seconds (`:60`) are rejected.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A UTC instant with millisecond precision; serialised as RFC 3339 (`…T…Z`, 3 fraction digits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UtcMillis(pub i64);

impl UtcMillis {
    /// The wall clock now. A clock before 1970 (a box without RTC, before NTP) reads as the
    /// epoch rather than failing: times are data here, and the cores judge them.
    pub fn now() -> Self {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        Self(ms)
    }
}

/// Shape of [`UtcMillis`] on the wire: the schema says exactly what the serialiser writes
/// (one fixed RFC 3339 form), so a document generated from the types holds clients to it.
#[cfg(feature = "utoipa")]
impl utoipa::PartialSchema for UtcMillis {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .pattern(Some(RFC3339_MS_PATTERN))
            .description(Some("RFC 3339 time, UTC, with milliseconds."))
            .into()
    }
}

#[cfg(feature = "utoipa")]
impl utoipa::ToSchema for UtcMillis {
    fn name() -> std::borrow::Cow<'static, str> {
        "Millis".into()
    }
}

/// The form [`format_rfc3339_ms`] writes, as a regular expression (for schemas).
pub const RFC3339_MS_PATTERN: &str =
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$";

impl Serialize for UtcMillis {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_rfc3339_ms(self.0))
    }
}

impl<'de> Deserialize<'de> for UtcMillis {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_rfc3339_ms(&s).map(UtcMillis).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "invalid time {s:?}: expected RFC 3339 like 2026-11-22T08:00:00.123Z"
            ))
        })
    }
}

impl std::fmt::Display for UtcMillis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&format_rfc3339_ms(self.0))
    }
}

/// Formats ms since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC).
pub fn format_rfc3339_ms(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let in_day = ms.rem_euclid(86_400_000);
    let (year, month, day) = civil_from_days(days);
    let (h, m, s, milli) = (
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000,
    );
    if !(0..=9999).contains(&year) {
        return format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{milli:03}Z");
    }
    // Digits by hand: `format!` with widths was a few percent of the hub's CPU at full rate
    // (every case and alert record carries several times).
    let mut out = [0u8; 24];
    let mut put = |at: usize, v: i64, width: usize| {
        let mut v = v;
        for i in (0..width).rev() {
            out[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, year, 4);
    put(5, month, 2);
    put(8, day, 2);
    put(11, h, 2);
    put(14, m, 2);
    put(17, s, 2);
    put(20, milli, 3);
    for (at, c) in [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
        (23, b'Z'),
    ] {
        out[at] = c;
    }
    out.iter().map(|&b| char::from(b)).collect()
}

/// The civil date of a day count since 1970-01-01 (inverse of `days_from_civil`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Parses an RFC 3339 date-time (`YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`) to ms since the epoch.
/// Fractions beyond milliseconds are truncated. Returns `None` for anything else.
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |from: usize, to: usize| -> Option<i64> {
        let digits = b.get(from..to)?;
        digits.iter().try_fold(0i64, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
        })
    };
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, minute, second) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let mut i = 19;
    let mut millis = 0;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 3 {
                millis = millis * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        let digits = i - start;
        if digits == 0 {
            return None;
        }
        for _ in digits..3 {
            millis *= 10;
        }
    }
    let offset_min = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let (oh, om) = (num(i + 1, i + 3)?, num(i + 4, i + 6)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let m = oh * 60 + om;
            if *sign == b'-' { -m } else { m }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = ((days * 24 + hour) * 60 + minute) * 60 + second - offset_min * 60;
    Some(secs * 1000 + millis)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_parses_epoch_offsets_and_fractions() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339_ms("1970-01-01T08:00:00.5+08:00"), Some(500));
        assert_eq!(parse_rfc3339_ms("1969-12-31T23:59:59.999999Z"), Some(-1));
        assert_eq!(
            parse_rfc3339_ms("2024-02-29T12:00:00-01:30"),
            Some(1_709_213_400_000)
        );
    }

    #[test]
    fn rfc3339_rejects_malformed_times() {
        for bad in [
            "2026-11-22",
            "2026-11-22T08:00:00",
            "2026-13-01T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "2026-11-22T24:00:00Z",
            "2026-11-22T08:00:60Z",
            "2026-11-22T08:00:00.Z",
            "2026-11-22T08:00:00+0800",
            "2026-11-22T08:00:00Zjunk",
        ] {
            assert_eq!(parse_rfc3339_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn formatting_round_trips_through_parsing() {
        for ms in [
            0,
            -1,
            1_795_334_400_123,
            1_709_213_400_000,
            951_782_400_000,
            4_102_444_799_999,
        ] {
            let text = format_rfc3339_ms(ms);
            assert_eq!(parse_rfc3339_ms(&text), Some(ms), "{text}");
        }
        assert_eq!(
            format_rfc3339_ms(1_795_334_400_123),
            "2026-11-22T08:00:00.123Z"
        );
        assert_eq!(format_rfc3339_ms(-1), "1969-12-31T23:59:59.999Z");
        // Years outside 0..=9999 take the general path, and say so in full.
        assert_eq!(
            format_rfc3339_ms(253_402_300_800_000),
            "10000-01-01T00:00:00.000Z"
        );
        assert!(format_rfc3339_ms(-62_167_219_200_001).starts_with("-001-12-31T23:59:59.999Z"));
    }

    #[test]
    fn the_hand_written_digits_match_the_general_format_everywhere_in_range() {
        let general = |ms: i64| {
            let days = ms.div_euclid(86_400_000);
            let in_day = ms.rem_euclid(86_400_000);
            let (y, mo, d) = civil_from_days(days);
            format!(
                "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
                in_day / 3_600_000,
                in_day / 60_000 % 60,
                in_day / 1000 % 60,
                in_day % 1000
            )
        };
        // Year 0 to 9999 in uneven steps, hitting every field's carries.
        let (first, last) = (-62_167_219_200_000i64, 253_402_300_799_999i64);
        let mut ms = first;
        while ms <= last {
            assert_eq!(format_rfc3339_ms(ms), general(ms), "{ms}");
            ms += 7_777_777_777 + ms.rem_euclid(86_399_999);
        }
        assert_eq!(format_rfc3339_ms(last), "9999-12-31T23:59:59.999Z");
        assert_eq!(format_rfc3339_ms(first), "0000-01-01T00:00:00.000Z");
    }

    #[test]
    fn utc_millis_serialises_as_rfc3339_and_refuses_garbage() {
        let json = serde_json::to_string(&UtcMillis(500)).unwrap();
        assert_eq!(json, r#""1970-01-01T00:00:00.500Z""#);
        let back: UtcMillis = serde_json::from_str(&json).unwrap();
        assert_eq!(back, UtcMillis(500));
        let err = serde_json::from_str::<UtcMillis>(r#""yesterday""#).unwrap_err();
        assert!(err.to_string().contains("yesterday"), "{err}");
    }
}
