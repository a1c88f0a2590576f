//! Check a commit out into a directory and write the `.git` beside it, so
//! the standard git sees a normal clone (`git log`, `git status`,
//! `git rev-parse HEAD`, `git fsck`).

use std::path::{Component, Path, PathBuf};

use gix_hash::ObjectId;
use gix_object::Kind;
use gix_object::tree::EntryKind;

use crate::pack::{Object, Pack};

/// Where a checkout reads objects from: a fetched pack, or a local
/// repository's object store.
pub trait Objects {
    fn find(&self, id: &gix_hash::oid) -> Result<Object, String>;
}

impl Objects for Pack {
    fn find(&self, id: &gix_hash::oid) -> Result<Object, String> {
        Pack::find(self, id)
    }
}

/// `gix_object::Find` over [`Objects`], for `gix-index`.
struct FindAdapter<'a>(&'a dyn Objects);

impl gix_object::Find for FindAdapter<'_> {
    fn try_find<'a>(
        &self,
        id: &gix_hash::oid,
        buffer: &'a mut Vec<u8>,
    ) -> Result<Option<gix_object::Data<'a>>, gix_error::Error> {
        let (kind, data) = self
            .0
            .find(id)
            .map_err(|e| gix_error::Error::from_error(std::io::Error::other(e)))?;
        buffer.clear();
        buffer.extend_from_slice(&data);
        Ok(Some(gix_object::Data::new(buffer, kind, HASH)))
    }
}

/// What goes into `.git/objects`.
pub enum GitObjects<'a> {
    /// The fetched pack and its index.
    Pack(&'a Pack),
    /// A copy of a local repository's `objects` directory.
    CopyOf(&'a Path),
    /// The objects already there (an updated checkout), plus a new pack
    /// when one was fetched.
    Add(Option<&'a Pack>),
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
    while let Some((tid, rel)) = stack.pop() {
        let (kind, data) = pack.find(&tid)?;
        if kind != Kind::Tree {
            return Err(format!("{tid} is a {kind}, not a tree"));
        }
        let t =
            gix_object::TreeRef::from_bytes(&data, HASH).map_err(|e| format!("tree {tid}: {e}"))?;
        // A directory is made when something is written in it (a sparse
        // checkout leaves no empty directories, as git's does not).
        let dir = root.join(&rel);
        let mut ensure_dir = || -> Result<(), String> {
            if made.insert(dir.clone()) {
                std::fs::create_dir_all(&dir)
                    .map_err(|e| format!("creating {}: {e}", dir.display()))?;
            }
            Ok(())
        };
        if sparse.is_none() {
            ensure_dir()?;
        }
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
                    ensure_dir()?;
                    std::fs::write(&path, blob.as_slice())
                        .map_err(|e| format!("writing {}: {e}", path.display()))?;
                    if e.mode.kind() == EntryKind::BlobExecutable
                        && !report.set_executable(&path)?
                    {
                        out.executables.push(path_rel.display().to_string());
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

/// The `.git` directory of a fresh clone.
pub struct GitDir<'a> {
    pub url: &'a str,
    /// The git directory when it is not `ROOT/.git` (a submodule's): then
    /// `ROOT/.git` is a `gitdir:` file pointing to it, and its config names
    /// the work tree.
    pub git_dir: Option<&'a Path>,
    /// `refs/heads/X` when a branch was cloned, else None (detached).
    pub branch: Option<&'a str>,
    /// The remote-tracking refs, tags and refspec (see [`crate::refs`]).
    pub layout: &'a crate::refs::Layout,
    pub commit: ObjectId,
    pub tree: ObjectId,
    pub shallow: &'a [ObjectId],
    /// Sparse checkout patterns, when the clone is sparse.
    pub sparse: Option<&'a crate::sparse::Sparse>,
    /// Executable files were written without the bit (WASI): record
    /// `core.filemode = false` so git does not report them as changed.
    pub no_filemode: bool,
}

/// Write `data` at `path`, unless the file already holds exactly that (an
/// updated checkout keeps the times of `.git` files that did not change).
fn write(path: &Path, data: &[u8]) -> Result<(), String> {
    // A link planted where a `.git` file goes is replaced, not written
    // through (an updated checkout's `.git` is the workspace's).
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        std::fs::remove_file(path).map_err(|e| format!("removing {}: {e}", path.display()))?;
    }
    if std::fs::metadata(path).is_ok_and(|m| m.len() == data.len() as u64)
        && std::fs::read(path).is_ok_and(|old| old == data)
    {
        return Ok(());
    }
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).map_err(|e| format!("creating {}: {e}", p.display()))?;
    }
    std::fs::write(path, data).map_err(|e| format!("writing {}: {e}", path.display()))
}

impl GitDir<'_> {
    pub fn write(
        &self,
        root: &Path,
        objects: &dyn Objects,
        store: GitObjects<'_>,
        report: &mut dyn crate::clone::Report,
    ) -> Result<(), String> {
        let git = self
            .git_dir
            .map(Path::to_path_buf)
            .unwrap_or_else(|| root.join(".git"));
        // Nor are directories reached through links.
        for d in [
            "",
            "objects",
            "objects/pack",
            "refs",
            "refs/heads",
            "refs/tags",
            "refs/remotes",
            "refs/remotes/origin",
            "info",
            "hooks",
            "modules",
        ] {
            if std::fs::symlink_metadata(git.join(d)).is_ok_and(|m| m.file_type().is_symlink()) {
                return Err(format!(
                    "{} is a symbolic link; set deleteExisting to true to clone afresh",
                    git.join(d).display()
                ));
            }
        }
        for d in [
            "objects/info",
            "objects/pack",
            "refs/heads",
            "refs/tags",
            "info",
            "hooks",
        ] {
            std::fs::create_dir_all(git.join(d)).map_err(|e| format!("creating .git/{d}: {e}"))?;
        }
        match store {
            GitObjects::Pack(pack) | GitObjects::Add(Some(pack)) => {
                let name = format!("pack-{}", pack.checksum);
                write(
                    &git.join(format!("objects/pack/{name}.pack")),
                    pack.pack_bytes(),
                )?;
                write(
                    &git.join(format!("objects/pack/{name}.idx")),
                    pack.idx_bytes(),
                )?;
            }
            GitObjects::CopyOf(src) => copy_tree(src, &git.join("objects"))?,
            GitObjects::Add(None) => {}
        }
        let mut config = format!(
            "[core]\n\trepositoryformatversion = 0\n\tfilemode = {}\n\tbare = false\n\tlogallrefupdates = true\n",
            !self.no_filemode
        );
        if self.git_dir.is_some() {
            write(
                &root.join(".git"),
                format!("gitdir: {}\n", relative(root, &git).display()).as_bytes(),
            )?;
            config.push_str(&format!(
                "\tworktree = {}\n",
                relative(&git, root).display()
            ));
        }
        if self.sparse.is_some() {
            config.push_str("\tsparseCheckout = true\n");
        }
        config.push_str(&format!(
            "[remote \"origin\"]\n\turl = {}\n\tfetch = {}\n",
            self.url, self.layout.refspec
        ));
        match self.branch {
            Some(b) => {
                let short = b.trim_start_matches("refs/heads/");
                write(&git.join("HEAD"), format!("ref: {b}\n").as_bytes())?;
                write(&git.join(b), format!("{}\n", self.commit).as_bytes())?;
                config.push_str(&format!(
                    "[branch \"{short}\"]\n\tremote = origin\n\tmerge = {b}\n"
                ));
            }
            None => write(&git.join("HEAD"), format!("{}\n", self.commit).as_bytes())?,
        }
        let mut packed = String::from("# pack-refs with: peeled fully-peeled sorted \n");
        for r in &self.layout.refs {
            packed.push_str(&format!("{} {}\n", r.oid, r.name));
            if let Some(p) = r.peeled.filter(|p| *p != r.oid) {
                packed.push_str(&format!("^{p}\n"));
            }
        }
        let origin_head = git.join("refs/remotes/origin/HEAD");
        match &self.layout.origin_head {
            Some(target) => write(&origin_head, format!("ref: {target}\n").as_bytes())?,
            None => {
                let _ = std::fs::remove_file(&origin_head);
            }
        }
        // A loose ref (from an earlier checkout, or git run in it) would
        // hide the packed one: update it in place.
        for r in &self.layout.refs {
            let loose = git.join(&r.name);
            if loose.is_file() {
                write(&loose, format!("{}\n", r.oid).as_bytes())?;
            }
        }
        write(&git.join("packed-refs"), packed.as_bytes())?;
        write(&git.join("config"), config.as_bytes())?;
        write(
            &git.join("description"),
            b"Unnamed repository; edit this file 'description' to name the repository.\n",
        )?;
        if self.shallow.is_empty() {
            let _ = std::fs::remove_file(git.join("shallow"));
        } else {
            let mut s: Vec<String> = self.shallow.iter().map(|o| o.to_string()).collect();
            s.sort();
            write(
                &git.join("shallow"),
                format!("{}\n", s.join("\n")).as_bytes(),
            )?;
        }
        // The index, with each file's stat data as git's own checkout
        // records it, so `git diff-files` and `git diff-index HEAD` see a
        // clean tree without reading every file.
        let mut state =
            gix_index::State::from_tree(&self.tree, FindAdapter(objects), Default::default())
                .map_err(|e| format!("building .git/index: {e}"))?;
        fill_stat(&mut state, root, report)?;
        if let Some(sp) = self.sparse {
            crate::sparse::mark(&mut state, sp);
            write(&git.join("info/sparse-checkout"), sp.file().as_bytes())?;
        }
        let file = gix_index::File::from_state(state, git.join("index"));
        let mut bytes = Vec::new();
        file.write_to(&mut bytes, gix_index::write::Options::default())
            .map_err(|e| format!("writing .git/index: {e}"))?;
        write(&git.join("index"), &bytes)
    }
}

/// The path from directory `from` to `to` (both absolute, without `..`),
/// as git writes `gitdir:` files and `core.worktree`.
pub(crate) fn relative(from: &Path, to: &Path) -> PathBuf {
    let a: Vec<_> = from.components().collect();
    let b: Vec<_> = to.components().collect();
    let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut out = PathBuf::new();
    for _ in common..a.len() {
        out.push("..");
    }
    for c in &b[common..] {
        out.push(c);
    }
    out
}

/// Set each index entry's stat data from the file on disk (git keeps the
/// low 32 bits of each number, as here).
fn fill_stat(
    state: &mut gix_index::State,
    root: &Path,
    report: &mut dyn crate::clone::Report,
) -> Result<(), String> {
    let paths: Vec<String> = state
        .entries()
        .iter()
        .map(|e| e.path(state).to_string())
        .collect();
    let stats = report.stat(root, &paths)?;
    for (entry, stat) in state.entries_mut().iter_mut().zip(stats) {
        let Some(s) = stat else { continue };
        let time = |ns: u64| gix_index::entry::stat::Time {
            secs: (ns / 1_000_000_000) as u32,
            nsecs: (ns % 1_000_000_000) as u32,
        };
        entry.stat = gix_index::entry::Stat {
            mtime: time(s.mtime_ns),
            ctime: time(s.ctime_ns),
            dev: s.dev as u32,
            ino: s.ino as u32,
            uid: s.uid,
            gid: s.gid,
            size: s.size as u32,
        };
    }
    Ok(())
}

/// Copy a directory tree of regular files (an object store).
fn copy_tree(src: &Path, dst: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dst).map_err(|e| format!("creating {}: {e}", dst.display()))?;
    for e in std::fs::read_dir(src).map_err(|e| format!("reading {}: {e}", src.display()))? {
        let e = e.map_err(|e| e.to_string())?;
        let ft = e.file_type().map_err(|e| e.to_string())?;
        let to = dst.join(e.file_name());
        if ft.is_dir() {
            copy_tree(&e.path(), &to)?;
        } else if ft.is_file() {
            if e.file_name() == "alternates" {
                continue; // the copy is self-contained
            }
            std::fs::copy(e.path(), &to)
                .map_err(|err| format!("copying {}: {err}", e.path().display()))?;
        }
    }
    Ok(())
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
