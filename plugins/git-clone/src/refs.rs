//! Which refs a clone asks for and which it writes, as `git clone` does
//! (checked side by side with git in `tests/git_clone.rs`):
//!
//! - a full clone (`depth` 0) fetches every branch and tag; branches become
//!   `refs/remotes/origin/*`, tags `refs/tags/*`, the fetch refspec is
//!   `+refs/heads/*:refs/remotes/origin/*`, and `origin/HEAD` points at the
//!   remote's default branch;
//! - a shallow clone is single-branch (as `git clone --depth`): the refspec
//!   names the one branch (or tag), and only the tags pointing at fetched
//!   commits come along (`include-tag`);
//! - a commit SHA is checked out detached, with the wildcard refspec (as
//!   Tekton's git-init leaves it).

use gix_hash::{ObjectId, oid};

use crate::protocol::Ref;

/// What the clone checks out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `refs/heads/NAME`.
    Branch(String),
    /// A tag's short name and the tag ref's object.
    Tag(String, ObjectId),
    /// A commit named by its id.
    Detached,
}

const WILDCARD: &str = "+refs/heads/*:refs/remotes/origin/*";

/// Whether a ref name from the server is one git would accept (no `..`,
/// control characters, `~^:?*[\\`, …): a name that is not is never
/// written, since it becomes a path under `.git` and a line of
/// `packed-refs`.
pub fn valid_name(name: &str) -> bool {
    name.starts_with("refs/") && gix_validate::reference::name(name.into()).is_ok()
}

/// The objects to ask the server for.
pub fn wants(refs: &[Ref], want: ObjectId, depth: u32) -> Vec<ObjectId> {
    let mut out = vec![want];
    if depth == 0 {
        for r in refs {
            if (r.name.starts_with("refs/heads/") || r.name.starts_with("refs/tags/"))
                && !out.contains(&r.oid)
            {
                out.push(r.oid);
            }
        }
    }
    out
}

/// A ref to write: name, object, and for an annotated tag the commit it
/// peels to (packed-refs' `^` line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub name: String,
    pub oid: ObjectId,
    pub peeled: Option<ObjectId>,
}

/// The refs and remote configuration of the new clone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub refspec: String,
    /// Sorted by name (packed-refs order).
    pub refs: Vec<Written>,
    /// `refs/remotes/origin/HEAD`'s target, when the remote's default
    /// branch was fetched.
    pub origin_head: Option<String>,
}

/// What to write, given what the remote advertised and which objects the
/// clone holds (`has`): a ref is only written when its object is there.
pub fn layout(refs: &[Ref], target: &Target, depth: u32, has: &dyn Fn(&oid) -> bool) -> Layout {
    let full = depth == 0;
    let refspec = match target {
        Target::Branch(b) if !full => {
            let short = b.trim_start_matches("refs/heads/");
            format!("+{b}:refs/remotes/origin/{short}")
        }
        Target::Tag(t, _) if !full => format!("+refs/tags/{t}:refs/tags/{t}"),
        _ => WILDCARD.to_string(),
    };
    let mut out = Vec::new();
    for r in refs.iter().filter(|r| valid_name(&r.name)) {
        if let Some(short) = r.name.strip_prefix("refs/heads/") {
            let wanted = full || matches!(target, Target::Branch(b) if *b == r.name);
            if wanted && has(&r.oid) {
                out.push(Written {
                    name: format!("refs/remotes/origin/{short}"),
                    oid: r.oid,
                    peeled: None,
                });
            }
        } else if let Some(short) = r.name.strip_prefix("refs/tags/") {
            let commit = r.peeled.unwrap_or(r.oid);
            let wanted = full || matches!(target, Target::Tag(t, _) if t == short) || has(&commit);
            if wanted && has(&r.oid) {
                out.push(Written {
                    name: r.name.clone(),
                    oid: r.oid,
                    peeled: r.peeled,
                });
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out.dedup_by(|a, b| a.name == b.name);
    let origin_head = refs
        .iter()
        .find(|r| r.name == "HEAD")
        .and_then(|r| r.symref_target.as_deref())
        .and_then(|t| t.strip_prefix("refs/heads/"))
        .map(|short| format!("refs/remotes/origin/{short}"))
        .filter(|name| out.iter().any(|w| &w.name == name));
    Layout {
        refspec,
        refs: out,
        origin_head,
    }
}

/// The local branch `git clone` makes for the remote's default branch
/// (when its commit is held), as a submodule's clone has it.
pub fn add_default_branch(layout: &mut Layout, refs: &[Ref], has: &dyn Fn(&oid) -> bool) {
    let Some(head) = refs.iter().find(|r| r.name == "HEAD") else {
        return;
    };
    let Some(target) = head.symref_target.as_deref() else {
        return;
    };
    if !target.starts_with("refs/heads/") || !valid_name(target) || !has(&head.oid) {
        return;
    }
    if layout.refs.iter().all(|w| w.name != target) {
        layout.refs.push(Written {
            name: target.to_string(),
            oid: head.oid,
            peeled: None,
        });
        layout.refs.sort_by(|a, b| a.name.cmp(&b.name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> ObjectId {
        ObjectId::from_hex(format!("{n:02x}").repeat(20).as_bytes()).unwrap()
    }

    fn r(name: &str, oid: u8, peeled: Option<u8>) -> Ref {
        Ref {
            name: name.into(),
            oid: id(oid),
            peeled: peeled.map(id),
            symref_target: None,
        }
    }

    /// main at 1 (tagged v2 → tag object 5, and `light`), other at 2
    /// (tagged v1 → tag object 6), HEAD → main.
    fn remote() -> Vec<Ref> {
        let mut head = r("HEAD", 1, None);
        head.symref_target = Some("refs/heads/main".into());
        vec![
            head,
            r("refs/heads/main", 1, None),
            r("refs/heads/other", 2, None),
            r("refs/tags/light", 1, None),
            r("refs/tags/v1", 6, Some(2)),
            r("refs/tags/v2", 5, Some(1)),
        ]
    }

    fn names(l: &Layout) -> Vec<&str> {
        l.refs.iter().map(|w| w.name.as_str()).collect()
    }

    #[test]
    fn a_full_clone_takes_every_branch_and_tag() {
        let refs = remote();
        let w = wants(&refs, id(1), 0);
        assert_eq!(w, vec![id(1), id(2), id(6), id(5)]);
        let l = layout(&refs, &Target::Branch("refs/heads/main".into()), 0, &|_| {
            true
        });
        assert_eq!(l.refspec, WILDCARD);
        assert_eq!(
            names(&l),
            [
                "refs/remotes/origin/main",
                "refs/remotes/origin/other",
                "refs/tags/light",
                "refs/tags/v1",
                "refs/tags/v2"
            ]
        );
        assert_eq!(l.origin_head.as_deref(), Some("refs/remotes/origin/main"));
        assert_eq!(l.refs[3].peeled, Some(id(2)));
    }

    #[test]
    fn a_shallow_clone_is_single_branch_with_the_tags_on_what_it_fetched() {
        let refs = remote();
        assert_eq!(wants(&refs, id(1), 1), vec![id(1)]);
        // The pack holds commit 1 and (include-tag) tag object 5.
        let has = |o: &oid| o == id(1).as_ref() || o == id(5).as_ref();
        let l = layout(&refs, &Target::Branch("refs/heads/main".into()), 1, &has);
        assert_eq!(l.refspec, "+refs/heads/main:refs/remotes/origin/main");
        assert_eq!(
            names(&l),
            [
                "refs/remotes/origin/main",
                "refs/tags/light",
                "refs/tags/v2"
            ]
        );
        assert_eq!(l.origin_head.as_deref(), Some("refs/remotes/origin/main"));

        // Another branch: no origin/HEAD (git's behaviour too).
        let has = |o: &oid| o == id(2).as_ref() || o == id(6).as_ref();
        let l = layout(&refs, &Target::Branch("refs/heads/other".into()), 1, &has);
        assert_eq!(l.refspec, "+refs/heads/other:refs/remotes/origin/other");
        assert_eq!(names(&l), ["refs/remotes/origin/other", "refs/tags/v1"]);
        assert_eq!(l.origin_head, None);
    }

    #[test]
    fn a_shallow_tag_clone_names_the_tag_and_a_sha_is_detached() {
        let refs = remote();
        let has = |o: &oid| o == id(2).as_ref() || o == id(6).as_ref();
        let l = layout(&refs, &Target::Tag("v1".into(), id(6)), 1, &has);
        assert_eq!(l.refspec, "+refs/tags/v1:refs/tags/v1");
        assert_eq!(names(&l), ["refs/tags/v1"]);
        assert_eq!(l.origin_head, None);
        let l = layout(&refs, &Target::Detached, 1, &has);
        assert_eq!(l.refspec, WILDCARD);
        assert_eq!(names(&l), ["refs/tags/v1"]);
    }

    #[test]
    fn hostile_ref_names_are_never_written() {
        let mut refs = remote();
        for bad in [
            "refs/heads/../../Makefile",
            "refs/heads/a\nb",
            "refs/tags/x^{}",
            "refs/heads/x.lock",
            "refs/heads/a..b",
            "refs/tags/sp ace",
        ] {
            assert!(!valid_name(bad), "{bad}");
            refs.push(r(bad, 1, None));
        }
        let l = layout(&refs, &Target::Branch("refs/heads/main".into()), 0, &|_| {
            true
        });
        assert_eq!(l.refs.len(), 5, "{:?}", names(&l));
        assert!(valid_name("refs/heads/feature/x-1.2"));
    }

    #[test]
    fn refs_whose_objects_are_missing_are_not_written() {
        let refs = remote();
        let l = layout(&refs, &Target::Branch("refs/heads/main".into()), 0, &|o| {
            o != id(2).as_ref()
        });
        assert!(!names(&l).contains(&"refs/remotes/origin/other"));
    }
}
