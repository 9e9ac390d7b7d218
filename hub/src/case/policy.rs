//! [`Policy`]: how long each level has to acknowledge and to resolve a case, per severity.
//!
//! Embedded in the hub's TOML config as the `[escalation]` table:
//!
//! ```toml
//! [escalation]
//! group_window = "10m"    # alerts with the same key this close together make one case
//! max_extensions = 2      # how many times a case's deadline may be extended
//!
//! [escalation.critical]
//! ack = { micro_grid = "2m", grid = "2m", village = "5m", township = "10m", county = "15m" }
//! resolve = { grid = "1h", village = "2h", township = "4h", county = "8h" }
//!
//! [escalation.info]
//! dispatch = false        # record only
//! ```
//!
//! Durations are strings of whole numbers with a unit, largest unit first: `"90s"`, `"2m"`,
//! `"1h30m"`, `"3d"` (units `d`, `h`, `m`, `s`). A bare number is refused: seconds or minutes
//! would both be plausible, and a wrong guess moves a deadline by a factor of 60.
//!
//! **Inheritance.** A level missing from an `ack` or `resolve` table takes the value of the
//! nearest deeper level that is configured (a village without its own value uses the grid's);
//! a level deeper than every configured one takes the deepest configured value (a micro-grid
//! uses the grid's when only `grid` and above are set). An empty table means no deadline of
//! that kind: an empty `resolve` lets acknowledged cases wait without climbing; an empty `ack`
//! is refused by [`Policy::validate`] for a severity that is dispatched.
//!
//! **Defaults.** A severity table left out of the file takes its built-in default (see
//! [`Policy::default`]); a severity table written in the file replaces that default whole, so
//! what the file says is all there is for that severity.

use std::fmt;
use std::str::FromStr;

use protocol::Severity;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::model::DeadlineKind;
use crate::grid::Level;

/// A length of time with second precision, written `"2m"`, `"1h30m"`, `"90s"`, `"3d"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span {
    secs: i64,
}

const UNITS: [(char, i64); 4] = [('d', 86_400), ('h', 3_600), ('m', 60), ('s', 1)];

impl Span {
    /// `secs` seconds (negative values are clamped to zero).
    pub const fn from_secs(secs: i64) -> Self {
        Self {
            secs: if secs < 0 { 0 } else { secs },
        }
    }

    /// `mins` minutes.
    pub const fn from_mins(mins: i64) -> Self {
        Self::from_secs(mins.saturating_mul(60))
    }

    /// `hours` hours.
    pub const fn from_hours(hours: i64) -> Self {
        Self::from_secs(hours.saturating_mul(3_600))
    }

    /// Whole seconds.
    pub fn as_secs(self) -> i64 {
        self.secs
    }

    /// Milliseconds, the unit of [`protocol::UtcMillis`].
    pub fn as_ms(self) -> i64 {
        self.secs.saturating_mul(1000)
    }
}

/// A duration string that is not whole numbers with units `d`, `h`, `m`, `s`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid duration {0:?}: expected whole numbers with a unit (d, h, m or s), largest unit \
     first and each at most once, like \"90s\", \"2m\" or \"1h30m\""
)]
pub struct SpanError(pub String);

impl FromStr for Span {
    type Err = SpanError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || SpanError(s.to_owned());
        if s.is_empty() {
            return Err(err());
        }
        let mut rest = s;
        let mut secs: i64 = 0;
        // Index into UNITS of the last unit seen: units must strictly shrink ("1h30m", not
        // "30m1h" or "1m1m"), which catches most typos.
        let mut last: Option<usize> = None;
        while !rest.is_empty() {
            let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
            if digits == 0 {
                return Err(err());
            }
            let n: i64 = rest[..digits].parse().map_err(|_| err())?;
            let unit = rest[digits..].chars().next().ok_or_else(err)?;
            let rank = UNITS.iter().position(|&(u, _)| u == unit).ok_or_else(err)?;
            if last.is_some_and(|l| rank <= l) {
                return Err(err());
            }
            last = Some(rank);
            secs = n
                .checked_mul(UNITS[rank].1)
                .and_then(|v| secs.checked_add(v))
                .ok_or_else(err)?;
            rest = &rest[digits + unit.len_utf8()..];
        }
        Ok(Self { secs })
    }
}

impl fmt::Display for Span {
    /// The shortest canonical form: `"1h30m"`, `"2m"`, `"0s"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.secs == 0 {
            return f.write_str("0s");
        }
        let mut left = self.secs;
        for (unit, size) in UNITS {
            let n = left / size;
            if n > 0 {
                write!(f, "{n}{unit}")?;
                left %= size;
            }
        }
        Ok(())
    }
}

impl Serialize for Span {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// One duration per level; `None` where the file says nothing (see the module doc for
/// inheritance).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LevelSpans {
    /// Micro-grid (微网格).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub micro_grid: Option<Span>,
    /// Grid (网格).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grid: Option<Span>,
    /// Village or community (村/社区); `community` is accepted as the key too.
    #[serde(default, skip_serializing_if = "Option::is_none", alias = "community")]
    pub village: Option<Span>,
    /// Township, town or sub-district (乡/镇/街道).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub township: Option<Span>,
    /// County (县/区).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub county: Option<Span>,
}

impl LevelSpans {
    /// Built from `(level, span)` pairs; later pairs win.
    pub fn of(pairs: &[(Level, Span)]) -> Self {
        let mut spans = Self::default();
        for &(level, span) in pairs {
            *spans.slot(level) = Some(span);
        }
        spans
    }

    /// What the file says for exactly this level.
    pub fn configured(&self, level: Level) -> Option<Span> {
        match level {
            Level::County => self.county,
            Level::Township => self.township,
            Level::Village => self.village,
            Level::Grid => self.grid,
            Level::MicroGrid => self.micro_grid,
        }
    }

    fn slot(&mut self, level: Level) -> &mut Option<Span> {
        match level {
            Level::County => &mut self.county,
            Level::Township => &mut self.township,
            Level::Village => &mut self.village,
            Level::Grid => &mut self.grid,
            Level::MicroGrid => &mut self.micro_grid,
        }
    }

    /// The span that applies at `level`, with inheritance: this level, else the nearest deeper
    /// configured level, else the nearest higher one. `None` only when nothing is configured.
    pub fn at(&self, level: Level) -> Option<Span> {
        let deeper = std::iter::successors(Some(level), |l| l.child());
        let higher = std::iter::successors(level.parent(), |l| l.parent());
        deeper.chain(higher).find_map(|l| self.configured(l))
    }

    /// Whether no level is configured.
    pub fn is_empty(&self) -> bool {
        Level::ALL.iter().all(|&l| self.configured(l).is_none())
    }
}

/// What happens to cases of one severity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeverityPolicy {
    /// Whether cases are dispatched to people at all. `false`: record only — the case is kept
    /// (state `new`, no deadline) and shows in the feed, but nobody is notified.
    #[serde(default = "yes")]
    pub dispatch: bool,
    /// Time to acknowledge, per level, counted from the dispatch (or from the previous
    /// deadline, after a climb).
    #[serde(default)]
    pub ack: LevelSpans,
    /// Time from acknowledgement to resolution, per level.
    #[serde(default)]
    pub resolve: LevelSpans,
}

fn yes() -> bool {
    true
}

impl SeverityPolicy {
    /// Built-in default for critical alerts: 2 min to acknowledge at a grid, 1 h to resolve.
    pub fn default_critical() -> Self {
        Self::ladder([2, 2, 5, 10, 15], [60, 60, 120, 240, 480])
    }

    /// Built-in default for major alerts: 10 min to acknowledge at a grid, 4 h to resolve.
    pub fn default_major() -> Self {
        Self::ladder([10, 10, 20, 30, 60], [240, 240, 480, 720, 1_440])
    }

    /// Built-in default for minor alerts: 30 min to acknowledge at a grid, 1 day to resolve.
    pub fn default_minor() -> Self {
        Self::ladder([30, 30, 60, 120, 240], [1_440, 1_440, 2_880, 4_320, 7_200])
    }

    /// Built-in default for info alerts: record only.
    pub fn default_info() -> Self {
        Self {
            dispatch: false,
            ack: LevelSpans::default(),
            resolve: LevelSpans::default(),
        }
    }

    /// Minutes per level, micro-grid first.
    fn ladder(ack: [i64; 5], resolve: [i64; 5]) -> Self {
        let spans = |mins: [i64; 5]| {
            let mut s = LevelSpans::default();
            for (level, m) in Level::ALL.iter().rev().zip(mins) {
                *s.slot(*level) = Some(Span::from_mins(m));
            }
            s
        };
        Self {
            dispatch: true,
            ack: spans(ack),
            resolve: spans(resolve),
        }
    }

    /// The table of one deadline kind.
    pub fn spans(&self, kind: DeadlineKind) -> &LevelSpans {
        match kind {
            DeadlineKind::Ack => &self.ack,
            DeadlineKind::Resolve => &self.resolve,
        }
    }
}

/// The escalation policy. `Policy::default()` is the built-in one; the TOML shape is in the
/// module doc.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Alerts with the same [`GroupKey`](super::GroupKey) whose times fall within this span of
    /// an open case's alerts join that case instead of opening a new one.
    #[serde(default = "default_group_window")]
    pub group_window: Span,
    /// How many times one case's deadline may be extended.
    #[serde(default = "default_max_extensions")]
    pub max_extensions: u32,
    /// Critical alerts.
    #[serde(default = "SeverityPolicy::default_critical")]
    pub critical: SeverityPolicy,
    /// Major alerts.
    #[serde(default = "SeverityPolicy::default_major")]
    pub major: SeverityPolicy,
    /// Minor alerts.
    #[serde(default = "SeverityPolicy::default_minor")]
    pub minor: SeverityPolicy,
    /// Info alerts (by default record only).
    #[serde(default = "SeverityPolicy::default_info")]
    pub info: SeverityPolicy,
}

fn default_group_window() -> Span {
    Span::from_mins(10)
}

fn default_max_extensions() -> u32 {
    2
}

/// The longest deadline or window accepted: longer is almost surely a typo.
const MAX_SPAN: Span = Span::from_secs(30 * 86_400);

impl Default for Policy {
    /// | severity | ack: micro-grid, grid / village / township / county | resolve |
    /// | --- | --- | --- |
    /// | critical | 2m, 2m / 5m / 10m / 15m | 1h, 1h / 2h / 4h / 8h |
    /// | major | 10m, 10m / 20m / 30m / 1h | 4h, 4h / 8h / 12h / 1d |
    /// | minor | 30m, 30m / 1h / 2h / 4h | 1d, 1d / 2d / 3d / 5d |
    /// | info | record only | — |
    ///
    /// Grouping window 10 min; at most 2 extensions per case.
    fn default() -> Self {
        Self {
            group_window: default_group_window(),
            max_extensions: default_max_extensions(),
            critical: SeverityPolicy::default_critical(),
            major: SeverityPolicy::default_major(),
            minor: SeverityPolicy::default_minor(),
            info: SeverityPolicy::default_info(),
        }
    }
}

/// A policy with problems; every one, each `path: problem` with the path relative to the
/// policy table (the hub's config prefixes `escalation.`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("escalation policy is invalid ({} problem{}):\n  {}", .0.len(), if .0.len() == 1 { "" } else { "s" }, .0.join("\n  "))]
pub struct PolicyError(pub Vec<String>);

impl Policy {
    /// The table for one severity.
    pub fn for_severity(&self, severity: Severity) -> &SeverityPolicy {
        match severity {
            Severity::Critical => &self.critical,
            Severity::Major => &self.major,
            Severity::Minor => &self.minor,
            Severity::Info => &self.info,
        }
    }

    /// How long a case of `severity` held at `level` has for a deadline of `kind`, with
    /// inheritance; `None` for no deadline.
    pub fn span(&self, severity: Severity, kind: DeadlineKind, level: Level) -> Option<Span> {
        self.for_severity(severity).spans(kind).at(level)
    }

    /// Every problem at once, or `Ok`.
    pub fn validate(&self) -> Result<(), PolicyError> {
        let problems = self.problems();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(PolicyError(problems))
        }
    }

    /// Every problem, `path: problem`, in file order.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.group_window.as_secs() == 0 || self.group_window > MAX_SPAN {
            out.push(format!(
                "group_window: {} is out of range; it must be between 1s and {MAX_SPAN}",
                self.group_window
            ));
        }
        let tables = [
            ("critical", &self.critical),
            ("major", &self.major),
            ("minor", &self.minor),
            ("info", &self.info),
        ];
        for (name, table) in tables {
            if table.dispatch && table.ack.is_empty() {
                out.push(format!(
                    "{name}.ack: no level has a deadline, so nothing would ever climb; \
                     configure at least one level (or set dispatch = false)"
                ));
            }
            for kind in [DeadlineKind::Ack, DeadlineKind::Resolve] {
                // Deepest first is file order for the example config; top first reads better
                // in a list of errors, matching `Level::ALL`.
                for level in Level::ALL {
                    let Some(span) = table.spans(kind).configured(level) else {
                        continue;
                    };
                    if span.as_secs() == 0 {
                        out.push(format!("{name}.{kind}.{level}: must be longer than 0s"));
                    } else if span > MAX_SPAN {
                        out.push(format!(
                            "{name}.{kind}.{level}: {span} is longer than the maximum {MAX_SPAN}"
                        ));
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mins(m: i64) -> Option<Span> {
        Some(Span::from_mins(m))
    }

    #[test]
    fn durations_parse_with_units_and_print_canonically() {
        for (text, secs, canonical) in [
            ("90s", 90, "1m30s"),
            ("2m", 120, "2m"),
            ("1h30m", 5_400, "1h30m"),
            ("3d", 259_200, "3d"),
            ("1d2h3m4s", 93_784, "1d2h3m4s"),
            ("0s", 0, "0s"),
        ] {
            let span: Span = text.parse().unwrap();
            assert_eq!(span.as_secs(), secs, "{text}");
            assert_eq!(span.to_string(), canonical, "{text}");
            assert_eq!(canonical.parse::<Span>().unwrap(), span);
        }
    }

    #[test]
    fn bare_numbers_unknown_units_and_reversed_units_are_refused() {
        for bad in [
            "",
            "120",
            "2x",
            "m",
            "2 m",
            "30m1h",
            "1m1m",
            "-2m",
            "2M",
            "99999999999999999d",
        ] {
            let err = bad.parse::<Span>().unwrap_err();
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn default_policy_is_valid_and_has_the_documented_deadlines() {
        let p = Policy::default();
        assert_eq!(p.validate(), Ok(()));
        let ack = |s, l| p.span(s, DeadlineKind::Ack, l);
        assert_eq!(ack(Severity::Critical, Level::Grid), mins(2));
        assert_eq!(ack(Severity::Major, Level::Grid), mins(10));
        assert_eq!(ack(Severity::Minor, Level::Grid), mins(30));
        assert_eq!(ack(Severity::Critical, Level::County), mins(15));
        assert_eq!(
            p.span(Severity::Critical, DeadlineKind::Resolve, Level::Grid),
            mins(60)
        );
        assert!(!p.info.dispatch);
        assert_eq!(ack(Severity::Info, Level::Grid), None);
    }

    #[test]
    fn missing_level_inherits_the_nearest_deeper_configured_level() {
        let spans = LevelSpans::of(&[
            (Level::Grid, Span::from_mins(2)),
            (Level::Township, Span::from_mins(10)),
        ]);
        assert_eq!(
            spans.at(Level::Village),
            mins(2),
            "village takes the grid's"
        );
        assert_eq!(
            spans.at(Level::County),
            mins(10),
            "county takes the township's"
        );
        assert_eq!(spans.at(Level::MicroGrid), mins(2), "deepest configured");
        assert_eq!(spans.at(Level::Township), mins(10));
        assert_eq!(LevelSpans::default().at(Level::Grid), None);
    }

    #[test]
    fn policy_reads_from_toml_and_omitted_severities_keep_their_defaults() {
        #[derive(Deserialize)]
        struct HubConfig {
            escalation: Policy,
        }
        let text = r#"
            [escalation]
            group_window = "5m"

            [escalation.critical]
            ack = { micro_grid = "2m", grid = "2m", village = "5m", township = "10m", county = "15m" }
            resolve = { grid = "30m", community = "1h" }

            [escalation.info]
            dispatch = false
        "#;
        let p = toml::from_str::<HubConfig>(text).unwrap().escalation;
        assert_eq!(p.validate(), Ok(()));
        assert_eq!(p.group_window, Span::from_mins(5));
        assert_eq!(
            p.span(Severity::Critical, DeadlineKind::Ack, Level::Village),
            mins(5)
        );
        assert_eq!(
            p.span(Severity::Critical, DeadlineKind::Resolve, Level::MicroGrid),
            mins(30)
        );
        assert_eq!(
            p.span(Severity::Critical, DeadlineKind::Resolve, Level::County),
            mins(60)
        );
        assert_eq!(p.major, SeverityPolicy::default_major());
        assert_eq!(p.max_extensions, 2);
        // What the policy writes, it reads back.
        let again: Policy = toml::from_str(&toml::to_string(&p).unwrap()).unwrap();
        assert_eq!(again, p);
    }

    #[test]
    fn unknown_keys_and_bad_durations_are_refused_with_their_place() {
        let err = toml::from_str::<Policy>("[critical]\nack = { gird = \"2m\" }\n").unwrap_err();
        assert!(err.to_string().contains("gird"), "{err}");
        let err = toml::from_str::<Policy>("[major]\nack = { grid = \"10\" }\n").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("invalid duration \"10\"") && msg.contains("line 2"),
            "{msg}"
        );
        let err = toml::from_str::<Policy>("windows = \"5m\"\n").unwrap_err();
        assert!(err.to_string().contains("windows"), "{err}");
    }

    #[test]
    fn policy_lists_every_error() {
        let mut p = Policy {
            group_window: Span::from_secs(0),
            ..Policy::default()
        };
        p.critical.ack = LevelSpans::default();
        p.major.resolve.grid = Some(Span::from_secs(0));
        p.minor.ack.county = Some(Span::from_hours(24 * 40));
        let err = p.validate().unwrap_err();
        assert_eq!(
            err.0,
            vec![
                "group_window: 0s is out of range; it must be between 1s and 30d",
                "critical.ack: no level has a deadline, so nothing would ever climb; configure \
                 at least one level (or set dispatch = false)",
                "major.resolve.grid: must be longer than 0s",
                "minor.ack.county: 40d is longer than the maximum 30d",
            ]
        );
        assert!(
            err.to_string()
                .starts_with("escalation policy is invalid (4 problems):")
        );
        // Record-only severities need no ack deadline.
        p.critical.dispatch = false;
        assert_eq!(p.problems().len(), 3);
    }
}
