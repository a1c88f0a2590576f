//! Fetch into an existing checkout (`deleteExisting: false`), as Tekton's
//! git-init fetches into its directory: the server is told what the
//! checkout has (`have`, `shallow`), sends only what is new, and the work
//! tree changes only where the new commit differs. An unchanged file keeps
//! its bytes and its modification time, so a make-style build (here, or
//! remote-shell's sync) sees only what the commit changed.
//!
//! The existing `.git` is the workspace's, so not trusted: paths from its
//! index are checked like tree entries, a path is never written or removed
//! through a symlink on disk, its packs are read through verified reads
//! (`idx.rs`), and anything unreadable is an error asking for
//! `deleteExisting: true` rather than a guess.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use gix_hash::{ObjectId, oid};
use gix_object::Kind;
use gix_object::tree::EntryKind;

use crate::clone::Report;
use crate::local::LocalRepo;
use crate::pack::{Object, Pack};
use crate::protocol::Have;
use crate::worktree::{self, Checkout, Objects};

const HASH: gix_hash::Kind = gix_hash::Kind::Sha1;
/// At most this many `have` lines (the branch tips; one round, no
/// negotiation).
const MAX_HAVES: usize = 256;

/// What the index said of a file at the last checkout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracked {
    pub id: ObjectId,
    pub executable: bool,
    pub link: bool,
    pub size: u32,
    pub mtime: (u32, u32),
}

/// A checkout to update.
pub struct Existing {
    pub repo: LocalRepo,
    pub have: Have,
    pub index: HashMap<String, Tracked>,
}

/// A path from the old index, checked like a tree entry's (no `..`, no
/// `.git`, no empty or absolute component).
fn safe_path(p: &str) -> bool {
    !p.is_empty()
        && p.split('/')
            .all(|c| !c.is_empty() && c != "." && c != ".." && !c.eq_ignore_ascii_case(".git"))
}

impl Existing {
    pub fn open(dir: &Path) -> Result<Existing, String> {
        let repo = LocalRepo::open(dir)?;
        let mut commits: Vec<ObjectId> = Vec::new();
        for r in repo.refs()? {
            if commits.len() >= MAX_HAVES {
                break;
            }
            let commit = r.peeled.unwrap_or(r.oid);
            if !commits.contains(&commit) && matches!(repo.find(&commit), Ok((Kind::Commit, _))) {
                commits.push(commit);
            }
        }
        let shallow = match std::fs::read_to_string(repo.git_dir.join("shallow")) {
            Ok(text) => text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| {
                    ObjectId::from_hex(l.trim().as_bytes())
                        .map_err(|_| format!(".git/shallow: `{l}` is not an object id"))
                })
                .collect::<Result<Vec<_>, _>>()?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(format!("reading .git/shallow: {e}")),
        };
        let index = read_index(&repo.git_dir.join("index"))?;
        Ok(Existing {
            repo,
            have: Have { commits, shallow },
            index,
        })
    }

    /// Whether every object in `ids` is already here (then nothing is
    /// fetched).
    pub fn holds_all(&self, ids: &[ObjectId]) -> bool {
        // Read, not just looked up: a damaged object means fetching again.
        ids.iter().all(|id| self.repo.find(id).is_ok())
    }
}

fn read_index(path: &Path) -> Result<HashMap<String, Tracked>, String> {
    let data = match std::fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(e) => return Err(format!("reading .git/index: {e}")),
    };
    // Read, not mapped (WASI has no mmap); one thread; allocations bounded
    // by the file's own size, whatever its header claims.
    let options = gix_index::decode::Options {
        thread_limit: Some(1),
        alloc_limit_bytes: Some(data.len().saturating_mul(4).max(1 << 20)),
        ..Default::default()
    };
    let (state, _) = gix_index::State::from_bytes(&data, filetime::FileTime::zero(), HASH, options)
        .map_err(|e| format!("reading .git/index: {e}"))?;
    let mut out = HashMap::new();
    for e in state.entries() {
        let path = e.path(&state).to_string();
        if !safe_path(&path) {
            return Err(format!(
                ".git/index holds the path `{}`",
                path.escape_debug()
            ));
        }
        let mode = e.mode;
        out.insert(
            path,
            Tracked {
                id: e.id,
                executable: mode == gix_index::entry::Mode::FILE_EXECUTABLE,
                link: mode == gix_index::entry::Mode::SYMLINK,
                size: e.stat.size,
                mtime: (e.stat.mtime.secs, e.stat.mtime.nsecs),
            },
        );
    }
    Ok(out)
}

/// The old checkout's objects, then the new pack's.
pub struct Union<'a> {
    pub new: Option<&'a Pack>,
    pub old: &'a LocalRepo,
}

impl Objects for Union<'_> {
    fn find(&self, id: &oid) -> Result<Object, String> {
        match self.new {
            Some(p) if p.contains(id) => p.find(id),
            _ => self.old.find(id),
        }
    }

    fn contains(&self, id: &oid) -> bool {
        self.new.is_some_and(|p| p.contains(id)) || self.old.contains(id)
    }
}

/// Every entry of `tree`, flattened: path, kind, object.
fn flatten(
    objects: &dyn Objects,
    tree: &ObjectId,
) -> Result<Vec<(String, EntryKind, ObjectId)>, String> {
    let mut out = Vec::new();
    let mut stack: Vec<(ObjectId, String)> = vec![(*tree, String::new())];
    while let Some((tid, prefix)) = stack.pop() {
        let (kind, data) = objects.find(&tid)?;
        if kind != Kind::Tree {
            return Err(format!("{tid} is a {kind}, not a tree"));
        }
        let t =
            gix_object::TreeRef::from_bytes(&data, HASH).map_err(|e| format!("tree {tid}: {e}"))?;
        for e in &t.entries {
            let name = worktree::safe_name(e.filename)?;
            let path = if prefix.is_empty() {
                name.to_string()
            } else {
                format!("{prefix}/{name}")
            };
            match e.mode.kind() {
                EntryKind::Tree => stack.push((e.oid.to_owned(), path)),
                kind => out.push((path, kind, e.oid.to_owned())),
            }
        }
    }
    Ok(out)
}

/// Whether a directory on the way to `rel` is a symlink on disk.
fn through_link(root: &Path, rel: &str) -> bool {
    let mut at = root.to_path_buf();
    let parts: Vec<&str> = rel.split('/').collect();
    for part in &parts[..parts.len() - 1] {
        at.push(part);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => return true,
            Ok(_) => {}
            Err(_) => return false,
        }
    }
    false
}

/// Make `rel`'s directories real directories (a file or link in the way
/// is replaced, as git's checkout does) and clear the path itself.
fn make_room(root: &Path, rel: &str) -> Result<PathBuf, String> {
    let mut at = root.to_path_buf();
    let parts: Vec<&str> = rel.split('/').collect();
    let err = |p: &Path, e: std::io::Error| format!("{}: {e}", p.display());
    for part in &parts[..parts.len() - 1] {
        at.push(part);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.is_dir() => continue,
            Ok(_) => std::fs::remove_file(&at).map_err(|e| err(&at, e))?,
            Err(_) => {}
        }
        std::fs::create_dir(&at).map_err(|e| err(&at, e))?;
    }
    at.push(parts[parts.len() - 1]);
    match std::fs::symlink_metadata(&at) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(&at).map_err(|e| err(&at, e))?,
        Ok(_) => std::fs::remove_file(&at).map_err(|e| err(&at, e))?,
        Err(_) => {}
    }
    Ok(at)
}

/// Remove `rel` (when not reached through a link) and the directories it
/// leaves empty.
fn remove(root: &Path, rel: &str) -> Result<bool, String> {
    if through_link(root, rel) {
        return Ok(false);
    }
    let path = root.join(rel);
    match std::fs::symlink_metadata(&path) {
        Ok(m) if !m.is_dir() => {
            std::fs::remove_file(&path).map_err(|e| format!("removing {rel}: {e}"))?
        }
        _ => return Ok(false),
    }
    let mut dir = path.parent();
    while let Some(d) = dir.filter(|d| *d != root) {
        if std::fs::remove_dir(d).is_err() {
            break; // not empty
        }
        dir = d.parent();
    }
    Ok(true)
}

/// What an update did besides what it wrote.
#[derive(Debug, Default)]
pub struct Updated {
    pub checkout: Checkout,
    pub unchanged: usize,
    pub removed: usize,
}

/// Bring the work tree at `root` from the old index to `tree`.
pub fn update(
    objects: &dyn Objects,
    tree: &ObjectId,
    root: &Path,
    old: &HashMap<String, Tracked>,
    sparse: Option<&crate::sparse::Sparse>,
    report: &mut dyn Report,
) -> Result<Updated, String> {
    // Paths a sparse checkout leaves out are treated as absent (and
    // removed if an earlier checkout wrote them).
    let mut entries = flatten(objects, tree)?;
    entries.retain(|(p, ..)| sparse.is_none_or(|s| s.selects(p)));
    let keep: HashSet<&str> = entries.iter().map(|(p, ..)| p.as_str()).collect();
    let mut out = Updated::default();
    let mut gone: Vec<&String> = old.keys().filter(|p| !keep.contains(p.as_str())).collect();
    gone.sort();
    for p in gone {
        out.removed += usize::from(remove(root, p)?);
    }
    // Unchanged: same object and mode as at the last checkout, and the
    // file on disk still as the index recorded it.
    let same: Vec<&(String, EntryKind, ObjectId)> = entries
        .iter()
        .filter(|(p, kind, id)| {
            old.get(p).is_some_and(|t| {
                t.id == *id
                    && t.link == (*kind == EntryKind::Link)
                    && t.executable == (*kind == EntryKind::BlobExecutable)
            })
        })
        .collect();
    let paths: Vec<String> = same.iter().map(|(p, ..)| p.clone()).collect();
    let stats = report.stat(root, &paths)?;
    let mut untouched: HashSet<&str> = HashSet::new();
    for ((p, ..), stat) in same.iter().zip(stats) {
        let t = &old[p];
        let on_disk = stat.map(|s| {
            (
                s.size as u32,
                (
                    (s.mtime_ns / 1_000_000_000) as u32,
                    (s.mtime_ns % 1_000_000_000) as u32,
                ),
            )
        });
        if on_disk == Some((t.size, t.mtime)) && !through_link(root, p) {
            untouched.insert(p.as_str());
        }
    }
    out.unchanged = untouched.len();
    let mut links = HashMap::new();
    for (rel, kind, id) in &entries {
        if *kind == EntryKind::Link {
            let (_, target) = objects.find(id)?;
            let target = String::from_utf8(target.to_vec())
                .map_err(|_| format!("symlink {rel} is not UTF-8"))?;
            links.insert(PathBuf::from(rel), target);
        }
        if untouched.contains(rel.as_str()) {
            continue;
        }
        match kind {
            EntryKind::Blob | EntryKind::BlobExecutable => {
                let (k, blob) = objects.find(id)?;
                if k != Kind::Blob {
                    return Err(format!("{rel} should be a blob"));
                }
                let path = make_room(root, rel)?;
                std::fs::write(&path, blob.as_slice())
                    .map_err(|e| format!("writing {rel}: {e}"))?;
                if *kind == EntryKind::BlobExecutable && !report.set_executable(&path)? {
                    out.checkout.executables.push(rel.clone());
                }
                out.checkout.files += 1;
            }
            EntryKind::Commit => {
                let path = root.join(rel);
                if !std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
                    make_room(root, rel)?;
                    std::fs::create_dir(&path).map_err(|e| format!("creating {rel}: {e}"))?;
                }
                out.checkout.submodules.push((rel.clone(), *id));
            }
            EntryKind::Link | EntryKind::Tree => {}
        }
    }
    // Links last, judged by where they resolve in the new tree.
    let on_disk = |p: &Path| {
        std::fs::symlink_metadata(root.join(p)).is_ok_and(|m| m.file_type().is_symlink())
    };
    let mut sorted: Vec<_> = links.iter().collect();
    sorted.sort();
    for (rel, target) in &sorted {
        worktree::link_stays_inside(&links, &on_disk, rel, target)?;
    }
    for (rel, target) in sorted {
        let r = rel.to_string_lossy();
        if untouched.contains(r.as_ref()) {
            continue;
        }
        let path = make_room(root, &r)?;
        worktree::symlink(target, &path)?;
        out.checkout.symlinks += 1;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_paths_are_checked_like_tree_entries() {
        for bad in [
            "",
            "../x",
            "a/../b",
            "/abs",
            "a//b",
            ".git/config",
            "a/.GIT/x",
            "./a",
        ] {
            assert!(!safe_path(bad), "{bad}");
        }
        assert!(safe_path("src/main.rs"));
        assert!(safe_path(".github/workflows/ci.yml"));
    }
}
