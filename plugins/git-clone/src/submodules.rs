//! Submodules, as `git submodule update --init --recursive --force` does
//! them (Tekton's git-clone default, `submodules: true`): for each gitlink
//! of the checked-out tree, the URL from `.gitmodules` (relative URLs
//! resolved against the superproject's), a clone of that commit into the
//! gitlink's path with its git directory under `.git/modules/NAME`, a
//! `gitdir:` file, and `submodule.NAME.url`/`active` in the superproject's
//! config; recursively, at the clone's depth.
//!
//! `.gitmodules` comes from the repository, so: only gitlinks the tree
//! really holds are cloned (a `.gitmodules` entry alone does nothing), the
//! name that becomes a directory under `.git/modules` is checked (no `..`,
//! no `.git`, not absolute: git's CVE-2018-11235), only http(s) URLs are
//! fetched, and each goes through the task's `http` grant like the
//! superproject's — an authority not granted is denied.

use std::path::Path;

use gix_hash::ObjectId;

use crate::clone::{Options, Report};
use crate::gitmodules;
use crate::protocol::Connect;

/// Deepest submodule nesting followed.
const MAX_NESTING: u8 = 8;

fn safe_name(name: &str) -> bool {
    gix_validate::submodule::name(name.into()).is_ok()
        && !name.starts_with('/')
        && name
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != ".." && !c.eq_ignore_ascii_case(".git"))
}

/// The commit a git directory's HEAD names (detached, as submodules are).
fn head_of(git_dir: &Path) -> Option<ObjectId> {
    let text = std::fs::read_to_string(git_dir.join("HEAD")).ok()?;
    ObjectId::from_hex(text.trim().as_bytes()).ok()
}

/// Clone every gitlink of the checkout at `dir` (git directory `git_dir`).
pub fn update(
    net: &mut dyn Connect,
    dir: &Path,
    git_dir: &Path,
    gitlinks: &[(String, ObjectId)],
    opts: &Options,
    report: &mut dyn Report,
) -> Result<(), String> {
    if opts.nesting >= MAX_NESTING {
        return Err(format!(
            "submodules nested more than {MAX_NESTING} deep; set submodules to false"
        ));
    }
    let text = match std::fs::read_to_string(dir.join(".gitmodules")) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(format!("reading .gitmodules: {e}")),
    };
    let subs = gitmodules::parse(&text)?;
    let mut config = String::new();
    for (path, commit) in gitlinks {
        // git's own message for a gitlink without an entry.
        let no_url = || format!("No url found for submodule path '{path}' in .gitmodules");
        let sub = subs
            .iter()
            .rev()
            .find(|s| s.path.as_deref() == Some(path.as_str()))
            .ok_or_else(no_url)?;
        if !safe_name(&sub.name) {
            return Err(format!(
                "submodule {path}: the name `{}` in .gitmodules is refused (it would leave .git/modules)",
                sub.name.escape_debug()
            ));
        }
        let url = gitmodules::resolve_url(&opts.url, sub.url.as_deref().ok_or_else(no_url)?);
        if !(url.starts_with("http://")
            || url.starts_with("https://")
            || crate::ssh::SshUrl::parse(&url).is_some())
        {
            return Err(format!(
                "submodule {path}: `{url}` is not an http(s) or SSH URL (only those submodules are cloned)"
            ));
        }
        let module_git = git_dir.join("modules").join(&sub.name);
        let worktree = dir.join(path);
        if head_of(&module_git) == Some(*commit) && worktree.join(".git").is_file() {
            report.log(&format!("submodule {path}: already at {commit}"));
        } else {
            report.log(&format!("submodule {path}: cloning {url} at {commit}"));
            let sub_opts = Options {
                url: url.clone(),
                revision: commit.to_string(),
                depth: opts.depth,
                delete_existing: true,
                submodules: true,
                git_dir: Some(module_git),
                nesting: opts.nesting + 1,
                refspec: String::new(),
                sparse: None,
            };
            crate::clone::clone(net, &worktree, &sub_opts, report)
                .map_err(|e| format!("submodule {path}: {e}"))?;
        }
        let quoted = sub.name.replace('\\', "\\\\").replace('"', "\\\"");
        config.push_str(&format!(
            "[submodule \"{quoted}\"]\n\tactive = true\n\turl = {url}\n"
        ));
    }
    // The superproject's config gains what `git submodule init` writes.
    let path = git_dir.join("config");
    let mut current =
        std::fs::read_to_string(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    if !current.contains(&config) {
        current.push_str(&config);
        std::fs::write(&path, current).map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_that_would_leave_the_modules_directory_are_refused() {
        for bad in [
            "",
            "..",
            "../x",
            "a/../../b",
            "/abs",
            "a\\..\\b",
            ".git",
            "a//b",
        ] {
            assert!(!super::safe_name(bad), "{bad}");
        }
        assert!(super::safe_name("vendor/lib"));
        assert!(super::safe_name("we\"ird"));
    }
}
