//! The sync planner: which files to send up, which to delete remotely.
//! Plain code, unit-tested natively.
//!
//! The remote workspace keeps a manifest (`.capstan-sync`: path, size,
//! modification time, executable) of what was last sent; a file is sent
//! when it is new or its size, mtime or mode differs (rsync's quick check),
//! and removed remotely when it is gone locally (with `delete`).

use std::collections::BTreeMap;

pub const MANIFEST: &str = ".capstan-sync";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileState {
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime: u64,
    pub executable: bool,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub upload: Vec<String>,
    pub delete: Vec<String>,
}

pub fn plan(
    local: &BTreeMap<String, FileState>,
    remote: &BTreeMap<String, FileState>,
    delete: bool,
) -> Plan {
    let mut p = Plan::default();
    for (path, l) in local {
        if remote.get(path) != Some(l) {
            p.upload.push(path.clone());
        }
    }
    if delete {
        for path in remote.keys() {
            if !local.contains_key(path) {
                p.delete.push(path.clone());
            }
        }
    }
    p
}

/// `path\tsize\tmtime\tx|-` per line.
pub fn render_manifest(files: &BTreeMap<String, FileState>) -> String {
    let mut out = String::new();
    for (p, f) in files {
        out.push_str(&format!(
            "{p}\t{}\t{}\t{}\n",
            f.size,
            f.mtime,
            if f.executable { "x" } else { "-" }
        ));
    }
    out
}

/// A missing or damaged manifest means "send everything".
pub fn parse_manifest(text: &str) -> BTreeMap<String, FileState> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        if let [p, size, mtime, x] = f[..]
            && let (Ok(size), Ok(mtime)) = (size.parse(), mtime.parse())
        {
            out.insert(
                p.to_string(),
                FileState {
                    size,
                    mtime,
                    executable: x == "x",
                },
            );
        }
    }
    out
}

/// A PAX time (`SECONDS[.FRACTION]`, non-negative) as seconds and
/// nanoseconds; None when malformed.
pub fn parse_pax_time(v: &str) -> Option<(u64, u32)> {
    let (secs, frac) = v.split_once('.').unwrap_or((v, ""));
    let secs = secs.parse().ok()?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = &frac[..frac.len().min(9)];
    let nanos = format!("{digits:0<9}").parse().ok()?;
    Some((secs, nanos))
}

/// `*` matches within a path segment, `**` across segments; a pattern
/// without `/` matches a file name anywhere.
///
/// Dynamic programming over (pattern position, path position), one row at
/// a time: O(pattern × path) whatever the pattern (a backtracking matcher
/// is exponential on patterns like `*a*a*a*…b`, which the fuzzer found).
pub fn glob(pattern: &str, path: &str) -> bool {
    fn m(p: &[u8], s: &[u8]) -> bool {
        // next[j]: does p[i+1..] match s[j..]; rows[r][j] for the row a
        // `**` jumps to are kept, as `**` skips two pattern bytes.
        let n = s.len();
        let mut rows: Vec<Vec<bool>> = vec![Vec::new(); p.len() + 1];
        let mut last = vec![false; n + 1];
        last[n] = true;
        rows[p.len()] = last;
        for i in (0..p.len()).rev() {
            let mut row = vec![false; n + 1];
            for j in (0..=n).rev() {
                row[j] = if p[i] == b'*' && p.get(i + 1) == Some(&b'*') {
                    let r = if p.get(i + 2) == Some(&b'/') {
                        i + 3
                    } else {
                        i + 2
                    };
                    rows[r][j] || (j < n && row[j + 1])
                } else if p[i] == b'*' {
                    rows[i + 1][j] || (j < n && s[j] != b'/' && row[j + 1])
                } else {
                    j < n && p[i] == s[j] && rows[i + 1][j + 1]
                };
            }
            rows[i] = row;
        }
        rows[0][0]
    }
    if !pattern.contains('/') {
        let name = path.rsplit('/').next().unwrap_or(path);
        return m(pattern.as_bytes(), name.as_bytes()) || m(pattern.as_bytes(), path.as_bytes());
    }
    m(pattern.as_bytes(), path.as_bytes())
}

/// A `sync-back` path must stay inside the remote workspace.
pub fn check_back_path(p: &str) -> Result<(), String> {
    if p.starts_with('/') || p.split('/').any(|s| s == "..") || p.is_empty() {
        return Err(format!(
            "sync-back path `{p}` is outside the workspace (use a relative path without `..`)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The backtracking matcher the DP replaced: the reference semantics.
    fn reference(p: &[u8], s: &[u8]) -> bool {
        match (p.first(), s.first()) {
            (None, None) => true,
            (Some(b'*'), _) if p.get(1) == Some(&b'*') => {
                let rest = p[2..].strip_prefix(b"/").unwrap_or(&p[2..]);
                (0..=s.len()).any(|i| reference(rest, &s[i..]))
            }
            (Some(b'*'), _) => (0..=s.len())
                .take_while(|&i| i == 0 || s[i - 1] != b'/')
                .any(|i| reference(&p[1..], &s[i..])),
            (Some(a), Some(b)) if a == b => reference(&p[1..], &s[1..]),
            _ => false,
        }
    }

    #[test]
    fn the_dp_matches_the_reference_on_small_inputs() {
        let mut x: u64 = 0x9e3779b97f4a7c15;
        let mut next = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let mut make = |alphabet: &[u8]| -> String {
            let len = next(8) as usize;
            (0..len)
                .map(|_| alphabet[next(alphabet.len() as u64) as usize] as char)
                .collect()
        };
        for _ in 0..20_000 {
            let p = make(b"ab/**");
            let s = make(b"ab/");
            let want = if !p.contains('/') {
                let name = s.rsplit('/').next().unwrap_or(&s);
                reference(p.as_bytes(), name.as_bytes()) || reference(p.as_bytes(), s.as_bytes())
            } else {
                reference(p.as_bytes(), s.as_bytes())
            };
            assert_eq!(glob(&p, &s), want, "pattern {p:?} path {s:?}");
        }
    }

    /// Fuzzing finding: backtracking made this exponential.
    #[test]
    fn pathological_globs_are_fast() {
        let pattern = "*a".repeat(30) + "*b";
        let path = "a".repeat(200);
        let t = std::time::Instant::now();
        assert!(!glob(&pattern, &path));
        assert!(glob(&("*a".repeat(30) + "*"), &path));
        assert!(
            t.elapsed() < std::time::Duration::from_secs(1),
            "{:?}",
            t.elapsed()
        );
    }

    fn f(size: u64, mtime: u64) -> FileState {
        FileState {
            size,
            mtime,
            executable: false,
        }
    }

    #[test]
    fn only_changes_are_sent_and_deletions_mirrored() {
        let remote: BTreeMap<_, _> =
            [("a".to_string(), f(1, 10)), ("gone".to_string(), f(1, 11))].into();
        let local: BTreeMap<_, _> =
            [("a".to_string(), f(1, 10)), ("b".to_string(), f(2, 12))].into();
        let p = plan(&local, &remote, true);
        assert_eq!(p.upload, vec!["b"]);
        assert_eq!(p.delete, vec!["gone"]);
        assert!(plan(&local, &remote, false).delete.is_empty());
        let changed: BTreeMap<_, _> = [("a".to_string(), f(1, 99))].into();
        assert_eq!(plan(&changed, &remote, false).upload, vec!["a"]);
        assert_eq!(plan(&local, &local, true), Plan::default());
    }

    #[test]
    fn manifests_round_trip_and_damage_means_resend() {
        let m: BTreeMap<_, _> = [("dir/a b".to_string(), f(3, 13))].into();
        assert_eq!(parse_manifest(&render_manifest(&m)), m);
        assert!(parse_manifest("garbage\nmore").is_empty());
    }

    #[test]
    fn pax_times() {
        assert_eq!(parse_pax_time("1700000000"), Some((1_700_000_000, 0)));
        assert_eq!(
            parse_pax_time("1700000000.5"),
            Some((1_700_000_000, 500_000_000))
        );
        assert_eq!(
            parse_pax_time("1700000000.1234567891"),
            Some((1_700_000_000, 123_456_789))
        );
        for bad in ["", "-1", "1.x", "abc", "1.-2"] {
            assert_eq!(parse_pax_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn globs() {
        assert!(glob("*.o", "src/x.o"));
        assert!(glob("target/**", "target/debug/x"));
        assert!(glob("src/*.c", "src/a.c"));
        assert!(!glob("src/*.c", "src/sub/a.c"));
        assert!(glob("**/*.tmp", "a/b/c.tmp"));
        assert!(!glob("*.o", "src/x.c"));
    }

    #[test]
    fn back_paths_stay_inside() {
        assert!(check_back_path("out/app").is_ok());
        assert!(check_back_path(".").is_ok());
        for bad in ["/etc", "../x", "a/../../b", ""] {
            assert!(check_back_path(bad).is_err(), "{bad}");
        }
    }
}
