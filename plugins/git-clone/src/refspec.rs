//! The `refspec` param, as Tekton's git-init uses it: space-separated
//! refspecs fetched before `revision` is checked out (`git fetch origin
//! SPEC…`, then `git checkout -f REVISION`), e.g.
//! `refs/pull/42/head:refs/heads/pr` with `revision: pr`.
//!
//! Each is `[+]SRC[:DST]`: SRC a ref the remote has (full name, or a short
//! name git would complete under `refs/`, `refs/heads/`, `refs/tags/`), a
//! full commit id, or a pattern with one `*`; DST the local ref to write
//! (a pattern when SRC is). Names are validated as git validates them.

use gix_hash::ObjectId;

use crate::protocol::Ref;
use crate::refs::valid_name;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refspec {
    pub src: String,
    pub dst: Option<String>,
}

fn is_sha(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A name, or a pattern with one `*` standing for a valid name part.
fn valid_pattern(s: &str) -> bool {
    match s.matches('*').count() {
        0 => valid_name(s) || (!s.starts_with("refs/") && valid_name(&format!("refs/heads/{s}"))),
        1 => s.starts_with("refs/") && valid_name(&s.replacen('*', "x", 1)),
        _ => false,
    }
}

pub fn parse(text: &str) -> Result<Vec<Refspec>, String> {
    text.split_whitespace()
        .map(|spec| {
            let bad = |why: &str| format!("refspec `{}`: {why}", spec.escape_debug());
            let s = spec.strip_prefix('+').unwrap_or(spec);
            let (src, dst) = match s.split_once(':') {
                Some((a, b)) => (a, Some(b)),
                None => (s, None),
            };
            if src.is_empty() {
                return Err(bad("no source (deleting refs is not a fetch)"));
            }
            if !is_sha(src) && !valid_pattern(src) {
                return Err(bad("the source is not a valid ref name"));
            }
            if let Some(d) = dst {
                if !d.starts_with("refs/") || !valid_pattern(d) {
                    return Err(bad("the destination must be a full ref name (refs/…)"));
                }
                if src.contains('*') != d.contains('*') {
                    return Err(bad("a pattern needs a pattern on both sides"));
                }
            } else if src.contains('*') {
                return Err(bad("a pattern needs a destination"));
            }
            Ok(Refspec {
                src: src.to_string(),
                dst: dst.map(str::to_string),
            })
        })
        .collect()
}

/// The ref prefixes to ask the server to list (v2 lists only those).
pub fn prefixes(specs: &[Refspec]) -> Vec<String> {
    specs
        .iter()
        .filter(|s| s.src.starts_with("refs/"))
        .map(|s| s.src.split('*').next().unwrap_or(&s.src).to_string())
        .collect()
}

/// What each refspec fetches: (local ref to write, if any; object).
pub fn expand(
    specs: &[Refspec],
    remote: &[Ref],
) -> Result<Vec<(Option<String>, ObjectId)>, String> {
    let mut out = Vec::new();
    for s in specs {
        if is_sha(&s.src) {
            let id = ObjectId::from_hex(s.src.as_bytes()).map_err(|e| e.to_string())?;
            out.push((s.dst.clone(), id));
            continue;
        }
        if let Some((pre, post)) = s.src.split_once('*') {
            let (dpre, dpost) = s
                .dst
                .as_deref()
                .and_then(|d| d.split_once('*'))
                .unwrap_or(("", ""));
            for r in remote.iter().filter(|r| valid_name(&r.name)) {
                if let Some(mid) = r.name.strip_prefix(pre).and_then(|m| m.strip_suffix(post)) {
                    out.push((Some(format!("{dpre}{mid}{dpost}")), r.oid));
                }
            }
            continue;
        }
        let candidates = [
            s.src.clone(),
            format!("refs/{}", s.src),
            format!("refs/heads/{}", s.src),
            format!("refs/tags/{}", s.src),
        ];
        let found = candidates
            .iter()
            .find_map(|c| remote.iter().find(|r| &r.name == c))
            .ok_or_else(|| format!("refspec `{}`: the remote has no ref `{}`", s.src, s.src))?;
        out.push((s.dst.clone(), found.oid));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(name: &str, n: u8) -> Ref {
        Ref {
            name: name.into(),
            oid: ObjectId::from_hex(format!("{n:02x}").repeat(20).as_bytes()).unwrap(),
            peeled: None,
            symref_target: None,
        }
    }

    #[test]
    fn refspecs_parse_expand_and_refuse() {
        let specs =
            parse("+refs/pull/1/head:refs/heads/pr main refs/merge-requests/*/head:refs/mr/*")
                .unwrap();
        assert_eq!(specs.len(), 3);
        assert_eq!(
            prefixes(&specs),
            ["refs/pull/1/head", "refs/merge-requests/"]
        );
        let remote = [
            r("refs/heads/main", 1),
            r("refs/pull/1/head", 2),
            r("refs/merge-requests/7/head", 3),
            r("refs/merge-requests/9/head", 4),
        ];
        let got = expand(&specs, &remote).unwrap();
        assert_eq!(got[0], (Some("refs/heads/pr".into()), remote[1].oid));
        assert_eq!(got[1], (None, remote[0].oid));
        assert_eq!(got[2].0.as_deref(), Some("refs/mr/7"));
        assert_eq!(got[3].0.as_deref(), Some("refs/mr/9"));
        let e = expand(&parse("refs/pull/2/head").unwrap(), &remote).unwrap_err();
        assert!(e.contains("the remote has no ref"), "{e}");
        for bad in [
            ":refs/heads/x",
            "refs/heads/a..b:refs/heads/x",
            "main:heads/x",
            "refs/*/a/*:refs/x/*",
            "refs/heads/*",
            "refs/heads/x:refs/heads/*",
            "refs/heads/x:refs/heads/\u{7f}",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
