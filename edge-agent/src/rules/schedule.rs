//! Active hours: the local times of day at which a rule applies.
//!
//! The engine never looks at a clock or a time zone. The caller converts the frame's time to the
//! camera site's local wall-clock time and passes the time of day; daylight-saving and time-zone
//! rules stay at the edge of the program where the clock is.

/// Seconds since local midnight, by the wall clock (`hours * 3600 + minutes * 60 + seconds`), in
/// `0..86_400`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TimeOfDay(u32);

const DAY_S: u32 = 86_400;

impl TimeOfDay {
    /// Midnight.
    pub const MIDNIGHT: Self = Self(0);

    /// From seconds since local midnight; values of a day or more wrap around (so a caller that
    /// computes it from a duration cannot produce an invalid time).
    pub fn from_seconds(seconds: u32) -> Self {
        Self(seconds % DAY_S)
    }

    /// From hours, minutes and seconds, wrapping like [`TimeOfDay::from_seconds`].
    pub fn from_hms(hours: u32, minutes: u32, seconds: u32) -> Self {
        Self::from_seconds(
            hours
                .saturating_mul(3600)
                .saturating_add(minutes.saturating_mul(60))
                .saturating_add(seconds),
        )
    }

    /// Seconds since local midnight.
    pub fn seconds(self) -> u32 {
        self.0
    }
}

/// A daily window `[start, end)`; when `end` is before `start` it wraps over midnight, so
/// `20:00-06:00` is the night.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindow {
    start: TimeOfDay,
    end: TimeOfDay,
}

impl TimeWindow {
    /// Parses `HH:MM-HH:MM` (24-hour clock). The two times must differ: an empty window is
    /// pointless and "all day" is said by having no active hours at all.
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not HH:MM-HH:MM (e.g. \"20:00-06:00\")");
        let (a, b) = s.split_once('-').ok_or_else(bad)?;
        let start = parse_hh_mm(a.trim()).ok_or_else(bad)?;
        let end = parse_hh_mm(b.trim()).ok_or_else(bad)?;
        if start == end {
            return Err(format!(
                "{s:?} starts and ends at the same time; leave active_hours empty for all day"
            ));
        }
        Ok(Self { start, end })
    }

    /// Whether `t` falls in the window (start inclusive, end exclusive).
    pub fn contains(&self, t: TimeOfDay) -> bool {
        if self.start < self.end {
            self.start <= t && t < self.end
        } else {
            t >= self.start || t < self.end
        }
    }
}

fn parse_hh_mm(s: &str) -> Option<TimeOfDay> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then(|| TimeOfDay::from_hms(h, m, 0))
}

/// The union of a rule's windows; no windows means always active.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActiveHours {
    windows: Vec<TimeWindow>,
}

impl ActiveHours {
    /// Active within any of `windows`, or always if there are none.
    pub fn new(windows: Vec<TimeWindow>) -> Self {
        Self { windows }
    }

    /// Whether the rule applies at `t`.
    pub fn contains(&self, t: TimeOfDay) -> bool {
        self.windows.is_empty() || self.windows.iter().any(|w| w.contains(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(h: u32, m: u32) -> TimeOfDay {
        TimeOfDay::from_hms(h, m, 0)
    }

    #[test]
    fn a_night_window_wraps_over_midnight() {
        let w = TimeWindow::parse("20:00-06:00").expect("valid");
        assert!(w.contains(at(20, 0)), "start is inclusive");
        assert!(w.contains(at(23, 59)));
        assert!(w.contains(TimeOfDay::MIDNIGHT));
        assert!(w.contains(TimeOfDay::from_hms(5, 59, 59)));
        assert!(!w.contains(at(6, 0)), "end is exclusive");
        assert!(!w.contains(at(12, 0)));
        assert!(!w.contains(TimeOfDay::from_hms(19, 59, 59)));
    }

    #[test]
    fn a_day_window_does_not_wrap() {
        let w = TimeWindow::parse("08:30-17:00").expect("valid");
        assert!(w.contains(at(8, 30)));
        assert!(w.contains(at(12, 0)));
        assert!(!w.contains(at(17, 0)));
        assert!(!w.contains(at(2, 0)));
    }

    #[test]
    fn a_window_ending_at_midnight_covers_the_late_evening() {
        let w = TimeWindow::parse("22:00-00:00").expect("valid");
        assert!(w.contains(at(23, 0)));
        assert!(!w.contains(TimeOfDay::MIDNIGHT));
        assert!(!w.contains(at(21, 0)));
    }

    #[test]
    fn malformed_or_empty_windows_are_rejected() {
        for s in [
            "20:00",
            "24:00-06:00",
            "20:60-06:00",
            "8:00-9:00",
            "x-y",
            "06:00-06:00",
        ] {
            assert!(TimeWindow::parse(s).is_err(), "{s} accepted");
        }
    }

    #[test]
    fn no_windows_means_always_active_and_several_windows_are_a_union() {
        assert!(ActiveHours::default().contains(at(3, 0)));
        let h = ActiveHours::new(vec![
            TimeWindow::parse("06:00-08:00").expect("valid"),
            TimeWindow::parse("18:00-20:00").expect("valid"),
        ]);
        assert!(h.contains(at(7, 0)) && h.contains(at(19, 0)));
        assert!(!h.contains(at(12, 0)));
    }

    #[test]
    fn time_of_day_wraps_at_a_day() {
        assert_eq!(TimeOfDay::from_seconds(86_400 + 5).seconds(), 5);
        assert_eq!(TimeOfDay::from_hms(25, 0, 0), at(1, 0));
    }
}
