//! Go durations (`300ms`, `1.5s`, `1h0m0.5s`), as Tekton writes them: the
//! grammar of Go's `time.ParseDuration` — a sequence of decimal numbers,
//! each with an optional fraction and a unit (`ns`, `us`/`µs`/`μs`, `ms`,
//! `s`, `m`, `h`); `0` alone needs no unit. Negative durations are refused
//! (no Tekton field takes one). Written by hand: `humantime` and the like
//! accept other spellings (`1 hour`, `2days`) and refuse some of Go's.

use std::time::Duration;

/// Parse a Go duration string.
pub fn parse(s: &str) -> Result<Duration, String> {
    let err =
        || format!("`{s}` is not a duration (Go syntax, e.g. `500ms`, `1.5s`, `5m`, `1h30m`, `0`)");
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    if rest.starts_with('-') {
        return Err(format!(
            "`{s}` is not a duration here: negative durations are not allowed"
        ));
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(err());
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int, after) = rest.split_at(int_len);
        let (frac, after) = match after.strip_prefix('.') {
            Some(a) => {
                let n = a.bytes().take_while(u8::is_ascii_digit).count();
                a.split_at(n)
            }
            None => ("", after),
        };
        if int.is_empty() && frac.is_empty() {
            return Err(err());
        }
        let unit_len = after
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let ns_per: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => {
                return Err(format!(
                    "`{s}` is not a duration: missing unit (ns, us, ms, s, m, h)"
                ));
            }
            u => {
                return Err(format!(
                    "`{s}` is not a duration: unknown unit `{u}` (ns, us, ms, s, m, h)"
                ));
            }
        };
        let whole: u128 = if int.is_empty() {
            0
        } else {
            int.parse().map_err(|_| err())?
        };
        let mut part = whole.checked_mul(ns_per).ok_or_else(err)?;
        // The fraction, exactly: digits beyond nanoseconds are dropped.
        let mut scale = ns_per;
        for d in frac.bytes() {
            scale /= 10;
            if scale == 0 {
                break;
            }
            part += u128::from(d - b'0') * scale;
        }
        total = total.checked_add(part).ok_or_else(err)?;
        rest = after;
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| err())?;
    Ok(Duration::new(secs, (total % 1_000_000_000) as u32))
}

/// A timeout field: Tekton's `0` means no timeout.
pub fn parse_timeout(s: &str) -> Result<Option<Duration>, String> {
    parse(s).map(|d| (!d.is_zero()).then_some(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        let ok = |s: &str| parse(s).unwrap();
        assert_eq!(ok("500ms"), Duration::from_millis(500));
        assert_eq!(ok("1h30m"), Duration::from_secs(5400));
        assert_eq!(ok("2m5s"), Duration::from_secs(125));
        // Fractions and every Go unit, as Go's time.ParseDuration reads them.
        assert_eq!(ok("1.5s"), Duration::from_millis(1500));
        assert_eq!(ok("1h0m0.5s"), Duration::from_millis(3_600_500));
        assert_eq!(ok(".5m"), Duration::from_secs(30));
        assert_eq!(ok("1.s"), Duration::from_secs(1));
        assert_eq!(ok("300us"), Duration::from_micros(300));
        assert_eq!(ok("300µs"), Duration::from_micros(300));
        assert_eq!(ok("7ns"), Duration::from_nanos(7));
        assert_eq!(ok("1.0000000001s"), Duration::from_secs(1));
        assert_eq!(ok("+5s"), Duration::from_secs(5));
        assert_eq!(ok("0"), Duration::ZERO);
        assert_eq!(ok("0s"), Duration::ZERO);
        for bad in ["5", "1d", "", ".s", "s", "1.5", "-5s", "1h 30m", "1e3s"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(parse("3s2").unwrap_err().contains("missing unit"));
    }

    #[test]
    fn zero_is_no_timeout() {
        assert_eq!(parse_timeout("0").unwrap(), None);
        assert_eq!(parse_timeout("0s").unwrap(), None);
        assert_eq!(parse_timeout("1m").unwrap(), Some(Duration::from_secs(60)));
    }
}
