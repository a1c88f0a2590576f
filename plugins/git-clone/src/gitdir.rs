//! The `.git` directory of a clone: objects (the fetched pack, a copy of a
//! local store, or what an updated checkout already holds), `HEAD`, refs,
//! `config`, `shallow`, the sparse-checkout file, and an index whose stat
//! data matches the files written (see `worktree.rs` for the files).

use std::path::{Path, PathBuf};

use gix_hash::ObjectId;

use crate::pack::Pack;
use crate::worktree::Objects;

const HASH: gix_hash::Kind = gix_hash::Kind::Sha1;

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
