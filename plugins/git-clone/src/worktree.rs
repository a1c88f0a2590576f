//! Check a commit out into a directory (files, directories, links, gitlinks;
//! sparse when asked); `gitdir.rs` writes the `.git` beside it, so the
//! standard git sees a normal clone (`git log`, `git status`, `git fsck`).

use std::path::{Component, Path, PathBuf};

use gix_hash::ObjectId;
use gix_object::Kind;
use gix_object::tree::EntryKind;

use crate::pack::{Object, Pack};

/// Where a checkout reads objects from: a fetched pack, or a local
/// repository's object store.
pub trait Objects {
    fn find(&self, id: &gix_hash::oid) -> Result<Object, String>;
    /// Whether the object is here, without reading it.
    fn contains(&self, id: &gix_hash::oid) -> bool;
}

impl Objects for Pack {
    fn find(&self, id: &gix_hash::oid) -> Result<Object, String> {
        Pack::find(self, id)
    }

    fn contains(&self, id: &gix_hash::oid) -> bool {
        Pack::contains(self, id)
    }
}

const HASH: gix_hash::Kind = gix_hash::Kind::Sha1;

/// What a checkout wrote.
#[derive(Debug, Default)]
pub struct Checkout {
    pub files: usize,
    pub symlinks: usize,
    /// Executable files: WASI cannot set permission bits, so these are
    /// written as regular files and listed for the host (see the README).
    pub executables: Vec<String>,
    /// Gitlinks (submodules): path and commit; not fetched.
    pub submodules: Vec<(String, ObjectId)>,
}

/// The commit's tree id and committer time (seconds).
pub fn commit_info(pack: &dyn Objects, commit: &ObjectId) -> Result<(ObjectId, i64), String> {
    let (kind, data) = pack.find(commit)?;
    if kind != Kind::Commit {
        return Err(format!("{commit} is a {kind}, not a commit"));
    }
    let c = gix_object::CommitRef::from_bytes(&data, HASH)
        .map_err(|e| format!("commit {commit}: {e}"))?;
    let time = c
        .committer()
        .ok()
        .and_then(|s| s.time().ok())
        .map(|t| t.seconds)
        .unwrap_or(0);
    Ok((c.tree(), time))
}

/// Peel a tag object to the commit it points to.
pub fn peel(pack: &dyn Objects, id: &ObjectId) -> Result<ObjectId, String> {
    let mut id = *id;
    for _ in 0..16 {
        let (kind, data) = pack.find(&id)?;
        match kind {
            Kind::Commit => return Ok(id),
            Kind::Tag => {
                let t = gix_object::TagRef::from_bytes(&data, HASH)
                    .map_err(|e| format!("tag {id}: {e}"))?;
                id = t.target();
            }
            other => return Err(format!("{id} is a {other}, not a commit")),
        }
    }
    Err("tag chain too long".into())
}

/// Links may be chained, and a link may name another link as a directory
/// on its way (`esc -> l/../..` where `l` is itself a link), so a lexical
/// check of each target alone is not enough: this resolves `target`, the
/// target of the link at `link` (both relative to the root), the way the
/// kernel would in the tree being written, expanding every other link of
/// that tree met on the way. Err when a step leaves the root (or the chain
/// loops). A path the tree does not hold is looked up with `on_disk` (true:
/// a symlink already in the target directory, which is refused: the
/// checkout may go into a directory that is not empty).
pub(crate) fn link_stays_inside(
    links: &std::collections::HashMap<PathBuf, String>,
    on_disk: &dyn Fn(&Path) -> bool,
    link: &Path,
    target: &str,
) -> Result<(), String> {
    use std::collections::VecDeque;
    let outside = || {
        format!(
            "refusing the checkout: symlink {} points to `{target}`, which resolves outside the repository",
            link.display()
        )
    };
    let mut at: Vec<&std::ffi::OsStr> = link
        .parent()
        .map(|p| p.iter().collect())
        .unwrap_or_default();
    let mut todo: VecDeque<Component> = VecDeque::new();
    if target.starts_with('/') {
        return Err(outside());
    }
    todo.extend(Path::new(target).components());
    let mut hops = 0;
    while let Some(c) = todo.pop_front() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if at.pop().is_none() {
                    return Err(outside());
                }
            }
            Component::Normal(n) => {
                at.push(n);
                let here: PathBuf = at.iter().collect();
                if !links.contains_key(&here) && on_disk(&here) {
                    return Err(format!(
                        "refusing the checkout: symlink {} points through `{}`, a symlink already in \
                         the target directory (clone into an empty directory)",
                        link.display(),
                        here.display()
                    ));
                }
                if let Some(next) = links.get(&here) {
                    hops += 1;
                    if hops > 40 || next.starts_with('/') {
                        return Err(outside());
                    }
                    at.pop();
                    for c in Path::new(next.as_str()).components().rev() {
                        todo.push_front(c);
                    }
                }
            }
            Component::RootDir | Component::Prefix(_) => return Err(outside()),
        }
    }
    Ok(())
}

pub(crate) fn safe_name(name: &[u8]) -> Result<&str, String> {
    let n = std::str::from_utf8(name).map_err(|_| "a path in the tree is not UTF-8".to_string())?;
    if n.is_empty()
        || n == "."
        || n == ".."
        || n.contains('/')
        || n.contains('\0')
        || n.eq_ignore_ascii_case(".git")
    {
        return Err(format!("refusing the tree entry `{n}`"));
    }
    Ok(n)
}

/// Write `tree` under `root`.
/// Files waiting to be written, flushed every few MiB.
#[derive(Default)]
struct Batch {
    files: Vec<crate::clone::NewFile>,
    bytes: usize,
}

impl Batch {
    fn full(&self) -> bool {
        self.bytes >= 8 << 20 || self.files.len() >= 2048
    }

    fn flush(&mut self, root: &Path, report: &mut dyn crate::clone::Report) -> Result<(), String> {
        if !self.files.is_empty() {
            report.write_files(root, &self.files)?;
        }
        self.files.clear();
        self.bytes = 0;
        Ok(())
    }
}

pub fn checkout(
    pack: &dyn Objects,
    tree: &ObjectId,
    root: &Path,
    sparse: Option<&crate::sparse::Sparse>,
    report: &mut dyn crate::clone::Report,
) -> Result<Checkout, String> {
    let mut out = Checkout::default();
    let keep = |p: &Path| sparse.is_none_or(|s| s.selects(&p.to_string_lossy()));
    let mut skipped_links = std::collections::HashSet::new();
    let mut made = std::collections::HashSet::new();
    let mut links = std::collections::HashMap::new();
    let mut stack: Vec<(ObjectId, PathBuf)> = vec![(*tree, PathBuf::new())];
    let mut batch = Batch::default();
    while let Some((tid, rel)) = stack.pop() {
        let (kind, data) = pack.find(&tid)?;
        if kind != Kind::Tree {
            return Err(format!("{tid} is a {kind}, not a tree"));
        }
        let t =
            gix_object::TreeRef::from_bytes(&data, HASH).map_err(|e| format!("tree {tid}: {e}"))?;
        // A directory is made when something is written in it (a sparse
        // checkout leaves no empty directories, as git's does not): files'
        // parents by the host with the batch, links' and submodules' here.
        let dir = root.join(&rel);
        let mut ensure_dir = || -> Result<(), String> {
            if made.insert(dir.clone()) {
                std::fs::create_dir_all(&dir)
                    .map_err(|e| format!("creating {}: {e}", dir.display()))?;
            }
            Ok(())
        };
        for e in &t.entries {
            let name = safe_name(e.filename)?;
            let path_rel = rel.join(name);
            let path = root.join(&path_rel);
            let id = e.oid.to_owned();
            match e.mode.kind() {
                EntryKind::Tree => stack.push((id, path_rel)),
                EntryKind::Blob | EntryKind::BlobExecutable if !keep(&path_rel) => {}
                EntryKind::Blob | EntryKind::BlobExecutable => {
                    let (k, blob) = pack.find(&id)?;
                    if k != Kind::Blob {
                        return Err(format!("{} should be a blob", path_rel.display()));
                    }
                    // Written in batches: one host call for many files.
                    batch.bytes += blob.len();
                    batch.files.push(crate::clone::NewFile {
                        path: path_rel.to_string_lossy().into_owned(),
                        contents: blob,
                        executable: e.mode.kind() == EntryKind::BlobExecutable,
                    });
                    if batch.full() {
                        batch.flush(root, report)?;
                    }
                    out.files += 1;
                    if out.files % 500 == 0 {
                        report.progress("checkout", out.files as u64, None);
                    }
                }
                EntryKind::Link => {
                    let (_, target) = pack.find(&id)?;
                    let target = String::from_utf8(target.to_vec())
                        .map_err(|_| format!("symlink {} is not UTF-8", path_rel.display()))?;
                    // Written last, once every link of the tree is known.
                    if !keep(&path_rel) {
                        skipped_links.insert(path_rel.clone());
                    }
                    links.insert(path_rel, target);
                }
                EntryKind::Commit if !keep(&path_rel) => {}
                EntryKind::Commit => {
                    ensure_dir()?;
                    std::fs::create_dir_all(&path)
                        .map_err(|e| format!("creating {}: {e}", path.display()))?;
                    out.submodules.push((path_rel.display().to_string(), id));
                }
            }
        }
    }
    batch.flush(root, report)?;
    // Judge every link by where it really resolves in this tree, then
    // write them all (nothing was written through a link before this).
    let mut sorted: Vec<_> = links.iter().collect();
    sorted.sort();
    let on_disk = |p: &Path| {
        std::fs::symlink_metadata(root.join(p)).is_ok_and(|m| m.file_type().is_symlink())
    };
    for (rel, target) in &sorted {
        link_stays_inside(&links, &on_disk, rel, target)?;
    }
    for (rel, target) in sorted {
        if skipped_links.contains(rel) {
            continue;
        }
        if let Some(parent) = root.join(rel).parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("creating {}: {e}", parent.display()))?;
        }
        symlink(target, &root.join(rel))?;
        out.symlinks += 1;
    }
    Ok(out)
}

/// `symlink(2)` through wasi-libc (std's WASI symlink is still unstable).
#[cfg(target_os = "wasi")]
pub(crate) fn symlink(target: &str, path: &Path) -> Result<(), String> {
    use std::ffi::CString;
    let t = CString::new(target).map_err(|_| "symlink target holds NUL".to_string())?;
    let p = CString::new(path.to_str().ok_or("non-UTF-8 path")?)
        .map_err(|_| "path holds NUL".to_string())?;
    // SAFETY: both are valid NUL-terminated strings that outlive the call.
    let rc = unsafe { libc::symlink(t.as_ptr(), p.as_ptr()) };
    if rc != 0 {
        return Err(format!(
            "creating symlink {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

#[cfg(unix)]
pub(crate) fn symlink(target: &str, path: &Path) -> Result<(), String> {
    std::os::unix::fs::symlink(target, path)
        .map_err(|e| format!("creating symlink {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_may_not_leave_the_root() {
        let none = std::collections::HashMap::new();
        let ok =
            |link: &str, t: &str| link_stays_inside(&none, &|_| false, Path::new(link), t).is_ok();
        assert!(ok("a/link", "../b"));
        assert!(ok("link", "dir/file"));
        assert!(!ok("link", "../outside"));
        assert!(!ok("a/link", "../../x"));
        assert!(!ok("link", "/etc/passwd"));
    }

    #[test]
    fn chained_links_are_resolved_through_the_tree() {
        // Each target is lexically inside; together they climb out:
        // n/a/b/l -> .. (= n/a), esc -> n/a/b/l/../../.. which is really
        // n/a/../../.. = one above the root.
        let links: std::collections::HashMap<PathBuf, String> = [
            ("n/a/b/l", ".."),
            ("esc", "n/a/b/l/../../.."),
            ("fine", "n/a/b/l/x"),
            ("loop1", "loop2"),
            ("loop2", "loop1/x"),
            ("abs-in-chain", "n/abs/x"),
            ("n/abs", "/etc"),
        ]
        .into_iter()
        .map(|(a, b)| (PathBuf::from(a), b.to_string()))
        .collect();
        let check =
            |l: &str| link_stays_inside(&links, &|_| false, Path::new(l), &links[Path::new(l)]);
        assert!(check("n/a/b/l").is_ok());
        assert!(check("fine").is_ok());
        for bad in ["esc", "loop1", "abs-in-chain", "n/abs"] {
            let e = check(bad).unwrap_err();
            assert!(e.contains("resolves outside"), "{bad}: {e}");
        }
        // A link already on disk (not in the tree) is not walked through.
        let on_disk = |p: &Path| p == Path::new("old");
        let e = link_stays_inside(&links, &on_disk, Path::new("x"), "old/..").unwrap_err();
        assert!(
            e.contains("a symlink already in the target directory"),
            "{e}"
        );
    }

    #[test]
    fn dangerous_names_are_refused() {
        for n in [&b".."[..], b".git", b".GIT", b"a/b", b""] {
            assert!(safe_name(n).is_err());
        }
        assert_eq!(safe_name(b"ok.txt").unwrap(), "ok.txt");
    }
}
