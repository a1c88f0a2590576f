//! The clone itself: discover refs, pick the revision, fetch, index, check
//! out, write `.git`.

use std::path::Path;

use gix_hash::ObjectId;

use crate::gitdir::{GitDir, GitObjects};
use crate::pack::Pack;
use crate::protocol::{self, Connect};
use crate::refs::{self, Target};
use crate::update::{self, Existing, Tracked, Union};
use crate::worktree::{self, Checkout, Objects};
use std::collections::HashMap;

#[derive(Debug, Clone)]
pub struct Options {
    pub url: String,
    /// Branch, tag, full commit SHA, or empty for the remote HEAD.
    pub revision: String,
    /// 0 = full history.
    pub depth: u32,
    pub delete_existing: bool,
    /// Clone the submodules too (recursively), as Tekton's `submodules`.
    pub submodules: bool,
    /// Where the git directory goes when it is not `DIR/.git` (a
    /// submodule's, under the superproject's `.git/modules/`).
    pub git_dir: Option<std::path::PathBuf>,
    /// How deep in submodules this clone is (0: the repository itself).
    pub nesting: u8,
    /// Space-separated refspecs fetched as well (Tekton's `refspec`).
    pub refspec: String,
    /// Sparse checkout (Tekton's `sparseCheckoutDirectories`).
    pub sparse: Option<crate::sparse::Sparse>,
}

impl Options {
    /// The top-level clone of `url` at `revision`.
    pub fn new(url: &str, revision: &str, depth: u32) -> Options {
        Options {
            url: url.to_string(),
            revision: revision.to_string(),
            depth,
            delete_existing: true,
            submodules: false,
            git_dir: None,
            nesting: 0,
            refspec: String::new(),
            sparse: None,
        }
    }
}

#[derive(Debug)]
pub struct Outcome {
    pub commit: ObjectId,
    pub committer_date: i64,
    pub objects: usize,
    pub protocol: u8,
    pub checkout: Checkout,
}

/// Progress and log callbacks.
pub trait Report {
    fn progress(&mut self, step: &str, current: u64, total: Option<u64>);
    fn log(&mut self, message: &str);
    /// Make a checked-out file executable; `Ok(false)` if this environment
    /// cannot.
    fn set_executable(&mut self, _path: &Path) -> Result<bool, String> {
        Ok(false)
    }
    /// `lstat` of `paths` under `root` for the index (None: missing).
    fn stat(&mut self, root: &Path, paths: &[String]) -> Result<Vec<Option<FileStat>>, String> {
        native_stat(root, paths)
    }
    /// Write new files under `root` (parents made; 0755 when executable),
    /// many at once. Natively: one at a time.
    fn write_files(&mut self, root: &Path, files: &[NewFile]) -> Result<(), String> {
        for f in files {
            let path = root.join(&f.path);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| format!("creating {}: {e}", parent.display()))?;
            }
            std::fs::write(&path, f.contents.as_slice())
                .map_err(|e| format!("writing {}: {e}", path.display()))?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt as _;
                let mode = if f.executable { 0o755 } else { 0o644 };
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            }
        }
        Ok(())
    }
}

/// A file a checkout writes (relative to the work tree, `/`-separated).
pub struct NewFile {
    pub path: String,
    pub contents: std::rc::Rc<Vec<u8>>,
    pub executable: bool,
}

/// What git's index records of a checked-out file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStat {
    pub mtime_ns: u64,
    pub ctime_ns: u64,
    pub dev: u64,
    pub ino: u64,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
}

#[cfg(unix)]
fn native_stat(root: &Path, paths: &[String]) -> Result<Vec<Option<FileStat>>, String> {
    use std::os::unix::fs::MetadataExt;
    let ns = |s: i64, n: i64| (s.max(0) as u64) * 1_000_000_000 + n.max(0) as u64;
    paths
        .iter()
        .map(|p| match std::fs::symlink_metadata(root.join(p)) {
            Ok(m) => Ok(Some(FileStat {
                mtime_ns: ns(m.mtime(), m.mtime_nsec()),
                ctime_ns: ns(m.ctime(), m.ctime_nsec()),
                dev: m.dev(),
                ino: m.ino(),
                uid: m.uid(),
                gid: m.gid(),
                size: m.size(),
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("stat {p}: {e}")),
        })
        .collect()
}

#[cfg(not(unix))]
fn native_stat(_root: &Path, paths: &[String]) -> Result<Vec<Option<FileStat>>, String> {
    Ok(vec![None; paths.len()])
}

/// The object to fetch and what to check out, from the advertised refs.
fn select(url: &str, refs: &[protocol::Ref], revision: &str) -> Result<(ObjectId, Target), String> {
    if refs.is_empty() {
        return Err(format!(
            "{url}: the repository is empty (no commits to clone)"
        ));
    }
    let rev = revision.trim();
    let (want, target) = if rev.is_empty() || rev == "HEAD" {
        let head = refs
            .iter()
            .find(|r| r.name == "HEAD")
            .ok_or_else(|| format!("{url}: the remote has no HEAD; name a revision"))?;
        let target = match refs
            .iter()
            .find(|r| r.name == "HEAD")
            .and_then(|r| r.symref_target.as_deref())
        {
            Some(b) if b.starts_with("refs/heads/") && refs::valid_name(b) => {
                Target::Branch(b.to_string())
            }
            _ => Target::Detached,
        };
        (head.oid, target)
    } else if rev.len() == 40 && rev.bytes().all(|b| b.is_ascii_hexdigit()) {
        let id = ObjectId::from_hex(rev.as_bytes()).map_err(|e| e.to_string())?;
        (id, Target::Detached)
    } else {
        let candidates = if rev.starts_with("refs/") {
            vec![rev.to_string()]
        } else {
            vec![format!("refs/heads/{rev}"), format!("refs/tags/{rev}")]
        };
        let found = candidates
            .iter()
            .find_map(|c| refs.iter().find(|r| &r.name == c))
            .ok_or_else(|| {
                let mut names: Vec<&str> = refs
                    .iter()
                    .filter(|r| r.name != "HEAD")
                    .map(|r| {
                        r.name
                            .trim_start_matches("refs/heads/")
                            .trim_start_matches("refs/")
                    })
                    .collect();
                names.truncate(20);
                format!(
                    "{url}: revision `{rev}` not found (it has: {})",
                    names.join(", ")
                )
            })?;
        if !refs::valid_name(&found.name) {
            return Err(format!(
                "{url}: the server advertised `{}`, which is not a valid ref name",
                found.name.escape_debug()
            ));
        }
        let target = if let Some(tag) = found.name.strip_prefix("refs/tags/") {
            Target::Tag(tag.to_string(), found.oid)
        } else if found.name.starts_with("refs/heads/") {
            Target::Branch(found.name.clone())
        } else {
            Target::Detached
        };
        (found.oid, target)
    };
    Ok((want, target))
}

fn remove_dir(dir: &Path) -> Result<(), String> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(format!("removing {}: {e}", dir.display()))
        }
        _ => Ok(()),
    }
}

fn empty_dir(dir: &Path) -> Result<(), String> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("reading {}: {e}", dir.display())),
    };
    for e in entries {
        let e = e.map_err(|e| e.to_string())?;
        let p = e.path();
        let r = if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
        r.map_err(|e| format!("removing {}: {e}", p.display()))?;
    }
    Ok(())
}

pub fn clone(
    net: &mut dyn Connect,
    dir: &Path,
    opts: &Options,
    report: &mut dyn Report,
) -> Result<Outcome, String> {
    let url = opts.url.trim_end_matches('/');
    let existing = open_existing(dir, opts)?;
    let specs = crate::refspec::parse(&opts.refspec)?;
    report.progress("discovering refs", 0, None);
    let mut transport = net.open(url)?;
    let remote = protocol::discover_with(transport.as_mut(), &crate::refspec::prefixes(&specs))?;
    report.log(&format!(
        "{url}: protocol v{}, {} refs",
        remote.version,
        remote.refs.len()
    ));
    if remote.refs.is_empty() {
        return Err(format!(
            "{url}: the repository is empty (no commits to clone)"
        ));
    }
    // A refspec's refs are fetched too, and `revision` may name the local
    // refs they write (Tekton: fetch the refspec, then check out revision).
    let fetched_refs = crate::refspec::expand(&specs, &remote.refs)?;
    let mut known = remote.refs.clone();
    for (dst, id) in &fetched_refs {
        if let Some(d) = dst {
            known.retain(|r| &r.name != d);
            known.push(protocol::Ref {
                name: d.clone(),
                oid: *id,
                peeled: None,
                symref_target: None,
            });
        }
    }
    let (want, target) = select(url, &known, &opts.revision)?;

    let mut wants = refs::wants(&remote.refs, want, opts.depth);
    for (_, id) in &fetched_refs {
        if !wants.contains(id) {
            wants.push(*id);
        }
    }
    let have = existing
        .as_ref()
        .map(|e| e.have.clone())
        .unwrap_or_default();
    // Deepening a shallow checkout to full history: git's --unshallow.
    let unshallow = opts.depth == 0 && !have.shallow.is_empty();
    let (pack, shallow) = match &existing {
        Some(e) if !unshallow && e.holds_all(&wants) => {
            report.log("the checkout already holds the revision: nothing to fetch");
            (None, have.shallow.clone())
        }
        _ => {
            report.progress("fetching", 0, None);
            let depth = if unshallow {
                INFINITE_DEPTH
            } else {
                opts.depth
            };
            let fetched = protocol::fetch(transport.as_mut(), &remote, &wants, depth, &have)?;
            report.log(&format!("received a {}-byte pack", fetched.pack.len()));
            report.progress("resolving objects", 0, None);
            let pack = Pack::index(fetched.pack)?;
            report.progress(
                "resolving objects",
                pack.len() as u64,
                Some(pack.len() as u64),
            );
            let mut shallow = if unshallow {
                Vec::new()
            } else {
                have.shallow.clone()
            };
            if opts.depth > 0 {
                shallow.extend(fetched.shallow.iter().filter(|s| !have.shallow.contains(s)));
            }
            (Some(pack), shallow)
        }
    };
    // The conversation is over (a stateful transport's command ends here).
    drop(transport);
    let union;
    let (objects, store): (&dyn Objects, _) = match (&existing, &pack) {
        (Some(e), p) => {
            union = Union {
                new: p.as_ref(),
                old: &e.repo,
            };
            (&union, GitObjects::Add(p.as_ref()))
        }
        (None, Some(p)) => (p, GitObjects::Pack(p)),
        (None, None) => unreachable!("a fresh clone always fetches"),
    };
    // A branch the refspec made locally is not the remote's: no
    // single-branch refspec or remote-tracking ref for it.
    let layout_target = match &target {
        Target::Branch(b) if !remote.refs.iter().any(|r| &r.name == b) => Target::Detached,
        t => t.clone(),
    };
    let mut layout = refs::layout(&remote.refs, &layout_target, opts.depth, &|o| {
        objects.contains(o)
    });
    for (dst, id) in &fetched_refs {
        if let Some(d) = dst
            && objects.contains(id)
        {
            layout.refs.retain(|w| &w.name != d);
            layout.refs.push(refs::Written {
                name: d.clone(),
                oid: *id,
                peeled: None,
            });
        }
    }
    layout.refs.sort_by(|a, b| a.name.cmp(&b.name));
    if opts.nesting > 0 {
        // `git submodule update` clones the submodule (a local branch for
        // the remote's default) and then detaches at the gitlink.
        refs::add_default_branch(&mut layout, &remote.refs, &|o| objects.contains(o));
    }
    let (checkout, commit, committer_date) = check_out(
        objects,
        store,
        dir,
        opts,
        url,
        (&target, &layout),
        want,
        &shallow,
        existing.as_ref().map(|e| &e.index),
        report,
    )?;
    if opts.submodules && !checkout.submodules.is_empty() {
        let git_dir = opts.git_dir.clone().unwrap_or_else(|| dir.join(".git"));
        crate::submodules::update(net, dir, &git_dir, &checkout.submodules, opts, report)?;
    }
    Ok(Outcome {
        commit,
        committer_date,
        objects: pack.as_ref().map_or(0, Pack::len),
        protocol: remote.version,
        checkout,
    })
}

/// `deepen` with git's "infinite" depth, as `git fetch --unshallow`.
const INFINITE_DEPTH: u32 = 0x7fff_ffff;

/// The checkout to update in place, when `deleteExisting` is false and
/// `dir` holds one.
fn open_existing(dir: &Path, opts: &Options) -> Result<Option<Existing>, String> {
    if opts.delete_existing || !dir.join(".git").exists() {
        return Ok(None);
    }
    Existing::open(dir).map(Some).map_err(|e| {
        format!(
            "{} holds a checkout that cannot be updated ({e}); set deleteExisting to true to \
             clone afresh",
            dir.display()
        )
    })
}

/// Clone `file://PATH`: the path as the task sees it (a workspace).
pub fn clone_local(
    path: &Path,
    dir: &Path,
    opts: &Options,
    report: &mut dyn Report,
) -> Result<Outcome, String> {
    let url = opts.url.as_str();
    report.progress("reading the repository", 0, None);
    let repo = crate::local::LocalRepo::open(path)?;
    let mut refs = repo.refs()?;
    let (want, target) = select(url, &refs, &opts.revision)?;
    // packed-refs says "fully-peeled": every annotated tag needs its `^`.
    for r in refs.iter_mut().filter(|r| r.peeled.is_none()) {
        if r.name.starts_with("refs/tags/")
            && matches!(repo.find(&r.oid), Ok((gix_object::Kind::Tag, _)))
        {
            r.peeled = Some(worktree::peel(&repo, &r.oid)?);
        }
    }
    let layout = refs::layout(&refs, &target, 0, &|o| repo.contains(o));
    if opts.depth > 0 {
        report.log("file:// clone: the object store is copied whole, so `depth` does not apply (as with `git clone PATH`)");
    }
    let (checkout, commit, committer_date) = check_out(
        &repo,
        GitObjects::CopyOf(&repo.objects_dir()),
        dir,
        opts,
        url,
        (&target, &layout),
        want,
        &[],
        None,
        report,
    )?;
    if opts.submodules {
        for (path, id) in &checkout.submodules {
            report.log(&format!(
                "submodule {path} at {id} is not cloned (file:// clones do not fetch submodules)"
            ));
        }
    }
    Ok(Outcome {
        commit,
        committer_date,
        objects: 0,
        protocol: 0,
        checkout,
    })
}

#[allow(clippy::too_many_arguments)]
fn check_out(
    objects: &dyn Objects,
    store: GitObjects<'_>,
    dir: &Path,
    opts: &Options,
    url: &str,
    (target, layout): (&Target, &refs::Layout),
    want: ObjectId,
    shallow: &[ObjectId],
    old_index: Option<&HashMap<String, Tracked>>,
    report: &mut dyn Report,
) -> Result<(Checkout, ObjectId, i64), String> {
    let commit = worktree::peel(objects, &want)?;
    let (tree, committer_date) = worktree::commit_info(objects, &commit)?;
    let checkout = match old_index {
        Some(index) => {
            let u = update::update(objects, &tree, dir, index, opts.sparse.as_ref(), report)?;
            report.log(&format!(
                "updated the checkout in place: {} file(s) written, {} unchanged, {} removed",
                u.checkout.files, u.unchanged, u.removed
            ));
            u.checkout
        }
        None => {
            if opts.delete_existing {
                empty_dir(dir)?;
                if let Some(g) = &opts.git_dir {
                    remove_dir(g)?;
                }
            } else if dir.join(".git").exists() {
                return Err(format!(
                    "{} already holds a repository; set deleteExisting to true",
                    dir.display()
                ));
            }
            std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
            worktree::checkout(objects, &tree, dir, opts.sparse.as_ref(), report)?
        }
    };
    report.progress(
        "checkout",
        checkout.files as u64,
        Some(checkout.files as u64),
    );
    if !opts.submodules {
        for (path, id) in &checkout.submodules {
            report.log(&format!(
                "submodule {path} at {id} is not cloned (submodules: false)"
            ));
        }
    }
    let branch = match target {
        Target::Branch(b) => Some(b.as_str()),
        Target::Tag(..) | Target::Detached => None,
    };
    GitDir {
        url,
        git_dir: opts.git_dir.as_deref(),
        sparse: opts.sparse.as_ref(),
        branch,
        layout,
        commit,
        tree,
        shallow,
        no_filemode: !checkout.executables.is_empty(),
    }
    .write(dir, objects, store, report)?;
    Ok((checkout, commit, committer_date))
}
