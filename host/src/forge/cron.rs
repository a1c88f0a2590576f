//! Cron expressions (the five fields of Vixie cron, as Kubernetes CronJobs
//! and GitHub Actions' `schedule` take them) evaluated in a time zone.
//!
//! `minute hour day-of-month month day-of-week`, each `*`, `N`, `A-B`,
//! `*/S`, `A-B/S`, `A/S` or a list of those; months `JAN`–`DEC` and days
//! `SUN`–`SAT` by name; day-of-week 0 or 7 is Sunday; when both day fields
//! are restricted a day matching either runs (Vixie's rule). `@hourly`,
//! `@daily`/`@midnight`, `@weekly`, `@monthly`, `@yearly`/`@annually`.
//!
//! Daylight saving time: a time that does not exist that day (skipped by
//! the clock change) does not run; one that happens twice runs once, the
//! first time.
//!
//! Written here because the cron crates (cron, croner) work on chrono and
//! need chrono-tz, a second copy of the time zone database; jiff, already
//! in the tree, reads the system's (`/usr/share/zoneinfo`).

use jiff::civil::{DateTime, date};
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{Timestamp, ToSpan as _, Zoned};

/// A parsed expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    /// Both day fields restricted: either may match.
    either_day: bool,
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

fn value(s: &str, names: &[&str], base: u32) -> Option<u32> {
    if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
        return Some(i as u32 + base);
    }
    s.parse().ok()
}

/// One field as a bit set; `restricted` is false for `*` alone.
fn field(
    text: &str,
    min: u32,
    max: u32,
    names: &[&str],
    name: &str,
) -> Result<(u64, bool), String> {
    let mut bits = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let s: u32 = s
                    .parse()
                    .map_err(|_| format!("{name}: step `{s}` is not a number"))?;
                if s == 0 {
                    return Err(format!("{name}: step 0"));
                }
                (r, s)
            }
            None => (part, 1),
        };
        let (lo, hi) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            let a = value(a, names, min).ok_or_else(|| format!("{name}: `{a}`"))?;
            let b = value(b, names, min).ok_or_else(|| format!("{name}: `{b}`"))?;
            (a, b)
        } else {
            let a = value(range, names, min).ok_or_else(|| format!("{name}: `{range}`"))?;
            // `A/S` runs from A to the end.
            (a, if part.contains('/') { max } else { a })
        };
        if lo < min || hi > max || lo > hi {
            return Err(format!("{name}: `{part}` is outside {min}-{max}"));
        }
        let mut v = lo;
        while v <= hi {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok((bits, text != "*" && !text.starts_with("*/")))
}

impl std::str::FromStr for Cron {
    type Err = String;
    fn from_str(s: &str) -> Result<Cron, String> {
        let expanded = match s.trim() {
            "@hourly" => "0 * * * *",
            "@daily" | "@midnight" => "0 0 * * *",
            "@weekly" => "0 0 * * 0",
            "@monthly" => "0 0 1 * *",
            "@yearly" | "@annually" => "0 0 1 1 *",
            other => other,
        };
        let f: Vec<&str> = expanded.split_whitespace().collect();
        let [mi, h, dom, mon, dow] = f[..] else {
            return Err(format!(
                "`{s}`: five fields (minute hour day-of-month month day-of-week)"
            ));
        };
        let (minutes, _) = field(mi, 0, 59, &[], "minute")?;
        let (hours, _) = field(h, 0, 23, &[], "hour")?;
        let (days, dom_r) = field(dom, 1, 31, &[], "day-of-month")?;
        let (months, _) = field(mon, 1, 12, &MONTHS, "month")?;
        let (mut weekdays, dow_r) = field(dow, 0, 7, &DAYS, "day-of-week")?;
        if weekdays & (1 << 7) != 0 {
            weekdays |= 1;
        }
        let star_dom = dom == "*" || dom.starts_with("*/");
        let star_dow = dow == "*" || dow.starts_with("*/");
        Ok(Cron {
            minutes,
            hours,
            days,
            months,
            weekdays,
            either_day: dom_r && dow_r && !star_dom && !star_dow,
        })
    }
}

impl Cron {
    fn day_matches(&self, d: jiff::civil::Date) -> bool {
        let dom = self.days & (1 << d.day()) != 0;
        let dow = self.weekdays & (1 << d.weekday().to_sunday_zero_offset()) != 0;
        if self.either_day {
            dom || dow
        } else {
            dom && dow
        }
    }

    /// The first time after `after` (strictly) that the expression names
    /// in `tz`; None if none in the next five years (`30 2 31 2 *`).
    pub fn next_after(&self, after: Timestamp, tz: &TimeZone) -> Option<Zoned> {
        let start = after.to_zoned(tz.clone()).datetime();
        // The next whole minute.
        let mut dt: DateTime = start
            .with()
            .second(0)
            .subsec_nanosecond(0)
            .build()
            .ok()?
            .checked_add(1.minute())
            .ok()?;
        let limit = start.year() + 5;
        while dt.year() <= limit {
            let d = dt.date();
            if self.months & (1 << d.month()) == 0 {
                let (y, m) = if d.month() == 12 {
                    (d.year() + 1, 1)
                } else {
                    (d.year(), d.month() + 1)
                };
                dt = date(y, m, 1).at(0, 0, 0, 0);
                continue;
            }
            if !self.day_matches(d) {
                dt = d.tomorrow().ok()?.at(0, 0, 0, 0);
                continue;
            }
            if self.hours & (1 << dt.hour()) == 0 {
                dt = d.at(dt.hour(), 0, 0, 0).checked_add(1.hour()).ok()?;
                continue;
            }
            if self.minutes & (1 << dt.minute()) == 0 {
                dt = dt.checked_add(1.minute()).ok()?;
                continue;
            }
            let amb = tz.to_ambiguous_zoned(dt);
            let z = match amb.offset() {
                AmbiguousOffset::Gap { .. } => None,
                _ => amb.earlier().ok(),
            };
            if let Some(z) = z.filter(|z| z.timestamp() > after) {
                return Some(z);
            }
            dt = dt.checked_add(1.minute()).ok()?;
        }
        None
    }
}

/// A time zone by IANA name (`Europe/Berlin`, `UTC`).
pub fn zone(name: &str) -> Result<TimeZone, String> {
    TimeZone::get(name).map_err(|e| format!("time zone `{name}`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn next(expr: &str, after: &str, tz: &str) -> String {
        let c: Cron = expr.parse().unwrap();
        let tz = zone(tz).unwrap();
        let t: Timestamp = after.parse().unwrap();
        c.next_after(t, &tz).unwrap().to_string()
    }

    #[test]
    fn next_times() {
        assert_eq!(
            next("0 3 * * *", "2026-12-03T02:00:00Z", "UTC"),
            "2026-12-03T03:00:00+00:00[UTC]"
        );
        assert_eq!(
            next("0 3 * * *", "2026-12-03T03:00:00Z", "UTC"),
            "2026-12-04T03:00:00+00:00[UTC]"
        );
        assert_eq!(
            next("*/15 * * * *", "2026-12-03T02:07:30Z", "UTC"),
            "2026-12-03T02:15:00+00:00[UTC]"
        );
        assert_eq!(
            next("0 9 * * MON-FRI", "2026-12-04T10:00:00Z", "UTC"),
            "2026-12-07T09:00:00+00:00[UTC]"
        );
        assert_eq!(
            next("0 0 1 JAN *", "2026-12-03T00:00:00Z", "UTC"),
            "2027-01-01T00:00:00+00:00[UTC]"
        );
        // Vixie: either day field.
        assert_eq!(
            next("0 0 13 * 5", "2026-12-03T00:00:00Z", "UTC"),
            "2026-12-04T00:00:00+00:00[UTC]"
        );
        // In a zone: 03:00 Berlin is 02:00 UTC in winter.
        assert_eq!(
            next("0 3 * * *", "2026-12-03T00:00:00Z", "Europe/Berlin"),
            "2026-12-03T03:00:00+01:00[Europe/Berlin]"
        );
        // 02:30 does not exist in Berlin on 2027-03-28: that day is skipped.
        assert_eq!(
            next("30 2 * * *", "2027-03-27T12:00:00Z", "Europe/Berlin"),
            "2027-03-29T02:30:00+02:00[Europe/Berlin]"
        );
        // 02:30 happens twice on 2026-10-25: once, the first time.
        assert_eq!(
            next("30 2 * * *", "2026-10-24T12:00:00Z", "Europe/Berlin"),
            "2026-10-25T02:30:00+02:00[Europe/Berlin]"
        );
        assert_eq!(
            next("30 2 * * *", "2026-10-25T00:30:00Z", "Europe/Berlin"),
            "2026-10-26T02:30:00+01:00[Europe/Berlin]"
        );
        assert_eq!(
            next("@weekly", "2026-12-03T00:00:00Z", "UTC"),
            "2026-12-06T00:00:00+00:00[UTC]"
        );
    }

    #[test]
    fn bad_expressions_say_which_field() {
        for (e, want) in [
            ("0 3 * *", "five fields"),
            ("60 * * * *", "minute"),
            ("0 24 * * *", "hour"),
            ("0 0 0 * *", "day-of-month"),
            ("0 0 * FOO *", "month"),
            ("0 0 * * 8", "day-of-week"),
            ("*/0 * * * *", "step 0"),
        ] {
            let err = e.parse::<Cron>().unwrap_err();
            assert!(err.contains(want), "{e}: {err}");
        }
        assert!(
            "30 2 31 2 *"
                .parse::<Cron>()
                .unwrap()
                .next_after(Timestamp::UNIX_EPOCH, &TimeZone::UTC)
                .is_none()
        );
        assert!(zone("Mars/Olympus").is_err());
    }
}
