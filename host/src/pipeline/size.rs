//! Byte sizes as Kubernetes writes quantities: `512Mi`, `2Gi`, `1G`,
//! `1500000` (bytes). Binary suffixes `Ki Mi Gi Ti`, decimal `k M G T`.
//! Written by hand: the Kubernetes quantity type in k8s-openapi is a
//! string without a parser, and byte-size crates use other spellings.

/// Parse a size; the error says what is accepted.
pub fn parse(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let mult: u64 = match unit {
        "" => 1,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        _ => u64::MAX,
    };
    let n: Option<u64> = num.parse().ok();
    match (n, mult) {
        (Some(n), m) if m != u64::MAX => n
            .checked_mul(m)
            .ok_or_else(|| format!("`{text}` is too large")),
        _ => Err(format!(
            "`{text}` is not a size (a whole number with an optional unit: Ki, Mi, Gi, Ti, k, M, G, T; e.g. 2Gi)"
        )),
    }
}

/// CPU as Kubernetes writes it: `500m`, `2`, `0.5` (cores), in thousandths
/// of a core.
pub fn cpu_millis(text: &str) -> Result<u32, String> {
    let bad = || format!("cpu `{text}`: `500m`, `2` or `0.5` (cores)");
    let millis = match text.strip_suffix('m') {
        Some(m) => m.parse::<u32>().map_err(|_| bad())?,
        None => {
            let cores: f64 = text.parse().map_err(|_| bad())?;
            if !(cores.is_finite() && cores > 0.0 && cores <= 1024.0) {
                return Err(bad());
            }
            (cores * 1000.0).round() as u32
        }
    };
    if millis == 0 {
        return Err(bad());
    }
    Ok(millis)
}

/// `2Gi`-style text for messages (the largest binary unit that divides).
pub fn show(bytes: u64) -> String {
    for (unit, m) in [
        ("Ti", 1u64 << 40),
        ("Gi", 1 << 30),
        ("Mi", 1 << 20),
        ("Ki", 1 << 10),
    ] {
        if bytes >= m && bytes.is_multiple_of(m) {
            return format!("{}{unit}", bytes / m);
        }
    }
    if bytes >= 1 << 20 {
        return format!("{:.1}Mi", bytes as f64 / (1u64 << 20) as f64);
    }
    format!("{bytes} bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_like_kubernetes_quantities() {
        assert_eq!(parse("2Gi").unwrap(), 2 << 30);
        assert_eq!(parse("512Mi").unwrap(), 512 << 20);
        assert_eq!(parse("1G").unwrap(), 1_000_000_000);
        assert_eq!(parse("1500").unwrap(), 1500);
        for bad in ["", "Gi", "2GB", "-1Gi", "1.5Gi", "2 Gi", "99999999999Ti"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert_eq!(show(2 << 30), "2Gi");
        assert_eq!(show(1536 << 10), "1536Ki");
        assert_eq!(show(100), "100 bytes");
    }
}
