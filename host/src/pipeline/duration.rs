//! Go-style durations (`300ms`, `30s`, `5m`, `1h30m`), as Tekton uses.

use std::time::Duration;

/// Parse a Go duration string. Units: `ms`, `s`, `m`, `h`; integers only.
pub fn parse(s: &str) -> Result<Duration, String> {
    let err = || format!("`{s}` is not a duration (use e.g. `500ms`, `30s`, `5m`, `1h30m`)");
    if s.is_empty() {
        return Err(err());
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(err());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| err())?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (Duration::from_millis(1), 2)
        } else if rest.starts_with('s') {
            (Duration::from_secs(1), 1)
        } else if rest.starts_with('m') {
            (Duration::from_secs(60), 1)
        } else if rest.starts_with('h') {
            (Duration::from_secs(3600), 1)
        } else {
            return Err(err());
        };
        rest = &rest[len..];
        total = total
            .checked_add(
                unit.checked_mul(u32::try_from(n).map_err(|_| err())?)
                    .ok_or_else(err)?,
            )
            .ok_or_else(err)?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        assert_eq!(parse("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("2m5s").unwrap(), Duration::from_secs(125));
        assert!(parse("5").is_err());
        assert!(parse("1d").is_err());
        assert!(parse("").is_err());
    }
}
