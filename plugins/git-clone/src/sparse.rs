//! Sparse checkout, as Tekton's git-init does it for
//! `sparseCheckoutDirectories`: the comma-separated patterns go to
//! `.git/info/sparse-checkout` with `core.sparseCheckout = true`
//! (git's non-cone mode), and only the paths they select are written; the
//! others stay in the index with the skip-worktree bit.
//!
//! The patterns are gitignore-style; which paths they select follows git's
//! `path_in_sparse_checkout` (dir.c): the last pattern matching the path
//! decides; when none does, the path's parent directory is tried (as a
//! directory), and so on up; nothing matching means not selected. Tested
//! side by side with `git sparse-checkout set --no-cone`.

/// One pattern line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    negated: bool,
    dir_only: bool,
    /// Matched against the whole path (the pattern had a `/` before its
    /// end), else against the last component.
    anchored: bool,
    glob: String,
}

/// The patterns, as `.git/info/sparse-checkout` holds them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sparse {
    lines: Vec<String>,
    patterns: Vec<Pattern>,
}

impl Sparse {
    /// From Tekton's comma-separated list; None when empty.
    pub fn parse(list: &str) -> Result<Option<Sparse>, String> {
        let lines: Vec<String> = list
            .split(',')
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect();
        if lines.is_empty() {
            return Ok(None);
        }
        let mut patterns = Vec::new();
        for l in &lines {
            if l.contains('\n') || l.contains('\0') {
                return Err(format!(
                    "sparseCheckoutDirectories: bad pattern `{}`",
                    l.escape_debug()
                ));
            }
            let (negated, rest) = match l.strip_prefix('!') {
                Some(r) => (true, r),
                None => (false, l.as_str()),
            };
            let (dir_only, rest) = match rest.strip_suffix('/') {
                Some(r) => (true, r),
                None => (false, rest),
            };
            let anchored = rest.contains('/');
            let glob = rest.strip_prefix('/').unwrap_or(rest).to_string();
            patterns.push(Pattern {
                negated,
                dir_only,
                anchored,
                glob,
            });
        }
        Ok(Some(Sparse { lines, patterns }))
    }

    /// The file `.git/info/sparse-checkout`.
    pub fn file(&self) -> String {
        self.lines.iter().map(|l| format!("{l}\n")).collect()
    }

    /// The last pattern matching `path` (a directory when `dir`): Some(true)
    /// selected, Some(false) excluded, None undecided.
    fn decide(&self, path: &str, dir: bool) -> Option<bool> {
        let base = path.rsplit('/').next().unwrap_or(path);
        self.patterns.iter().rev().find_map(|p| {
            if p.dir_only && !dir {
                return None;
            }
            let hit = if p.anchored {
                wildmatch(p.glob.as_bytes(), path.as_bytes())
            } else {
                wildmatch(p.glob.as_bytes(), base.as_bytes())
            };
            hit.then_some(!p.negated)
        })
    }

    /// Whether the file at `path` is checked out.
    pub fn selects(&self, path: &str) -> bool {
        let mut at = path;
        let mut dir = false;
        loop {
            if let Some(d) = self.decide(at, dir) {
                return d;
            }
            match at.rfind('/') {
                Some(i) => {
                    at = &at[..i];
                    dir = true;
                }
                None => return false,
            }
        }
    }
}

/// Set the skip-worktree bit on the index entries the patterns leave out
/// (git's index v3 extended flag).
pub fn mark(state: &mut gix_index::State, sparse: &Sparse) {
    use gix_index::entry::Flags;
    let skip: Vec<bool> = state
        .entries()
        .iter()
        .map(|e| !sparse.selects(&e.path(state).to_string()))
        .collect();
    for (e, skip) in state.entries_mut().iter_mut().zip(skip) {
        if skip {
            e.flags |= Flags::SKIP_WORKTREE | Flags::EXTENDED;
        }
    }
}

/// git's wildmatch with `WM_PATHNAME`: `*` and `?` stop at `/`, `**`
/// crosses it, `[...]` classes (with `!`/`^` and ranges), `\` escapes.
/// Dynamic programming over (pattern, text) positions: no backtracking blowup.
fn wildmatch(p: &[u8], t: &[u8]) -> bool {
    // memo[i][j]: does p[i..] match t[j..]
    let mut memo = vec![vec![None; t.len() + 1]; p.len() + 1];
    fn go(p: &[u8], t: &[u8], i: usize, j: usize, memo: &mut Vec<Vec<Option<bool>>>) -> bool {
        if let Some(v) = memo[i][j] {
            return v;
        }
        let r = if i == p.len() {
            j == t.len()
        } else if p[i] == b'*' {
            let double = p.get(i + 1) == Some(&b'*');
            if double {
                // `**/` also matches nothing; `**` anything.
                let next = i + 2;
                let skip_slash = if p.get(next) == Some(&b'/') {
                    next + 1
                } else {
                    next
                };
                (skip_slash != next && go(p, t, skip_slash, j, memo))
                    || (j..=t.len()).any(|k| go(p, t, next, k, memo))
            } else {
                let mut k = j;
                loop {
                    if go(p, t, i + 1, k, memo) {
                        break true;
                    }
                    if k == t.len() || t[k] == b'/' {
                        break false;
                    }
                    k += 1;
                }
            }
        } else if j == t.len() {
            false
        } else if p[i] == b'?' {
            t[j] != b'/' && go(p, t, i + 1, j + 1, memo)
        } else if p[i] == b'[' {
            match class(&p[i + 1..], t[j]) {
                Some((hit, used)) => hit && t[j] != b'/' && go(p, t, i + 1 + used, j + 1, memo),
                None => p[i] == t[j] && go(p, t, i + 1, j + 1, memo),
            }
        } else if p[i] == b'\\' && i + 1 < p.len() {
            p[i + 1] == t[j] && go(p, t, i + 2, j + 1, memo)
        } else {
            p[i] == t[j] && go(p, t, i + 1, j + 1, memo)
        };
        memo[i][j] = Some(r);
        r
    }
    go(p, t, 0, 0, &mut memo)
}

/// A `[...]` class after its `[`: whether `c` is in it and the bytes used
/// (through the `]`); None when unterminated (then `[` is literal).
fn class(p: &[u8], c: u8) -> Option<(bool, usize)> {
    let mut i = 0;
    let negate = matches!(p.first(), Some(b'!' | b'^'));
    if negate {
        i += 1;
    }
    let mut hit = false;
    let mut first = true;
    while i < p.len() {
        if p[i] == b']' && !first {
            return Some((hit != negate, i + 1));
        }
        first = false;
        if i + 2 < p.len() && p[i + 1] == b'-' && p[i + 2] != b']' {
            hit |= p[i] <= c && c <= p[i + 2];
            i += 3;
        } else {
            hit |= p[i] == c;
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildmatch_basics() {
        assert!(wildmatch(b"*.md", b"README.md"));
        assert!(!wildmatch(b"*", b"a/b"));
        assert!(wildmatch(b"a/**/z", b"a/b/c/z"));
        assert!(wildmatch(b"a/**/z", b"a/z"));
        assert!(wildmatch(b"**/x.yaml", b"p/q/x.yaml"));
        assert!(wildmatch(b"t[a-c]sk", b"tbsk"));
        assert!(!wildmatch(b"t[!a-c]sk", b"tbsk"));
        assert!(wildmatch(b"a?c", b"abc"));
        assert!(!wildmatch(b"a?c", b"a/c"));
        // No exponential blowup.
        let p = "*a".repeat(30) + "b";
        assert!(!wildmatch(p.as_bytes(), "a".repeat(60).as_bytes()));
    }

    #[test]
    fn git_rules_for_directories_and_negation() {
        let s = Sparse::parse("/*,!/*/,/docs/").unwrap().unwrap();
        assert!(s.selects("README.md"));
        assert!(s.selects("docs/a/b.md"));
        assert!(!s.selects("src/main.rs"));
        assert_eq!(s.file(), "/*\n!/*/\n/docs/\n");
        let s = Sparse::parse("task/git-clone").unwrap().unwrap();
        assert!(s.selects("task/git-clone/0.9/README.md"));
        assert!(!s.selects("task/kaniko/README.md"));
        assert_eq!(Sparse::parse(" , ").unwrap(), None);
    }
}
