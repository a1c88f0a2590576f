//! Workspaces: host directories mounted into the sandbox at
//! `/workspace/<name>`, read-write or read-only per binding. Nothing else of
//! the host file system is visible.
//!
//! A workspace's content is written by tasks, and tasks are not trusted: a
//! task (or a repository it cloned) may leave symlinks that climb out of the
//! workspace. So the host never opens a path *inside* a workspace by joining
//! strings and asking the kernel to follow them. A mount is an open
//! directory handle ([`WorkspaceMount::dir`]) reached from the workspace root
//! one component at a time with `O_NOFOLLOW` ([`open_beneath`]); the
//! sandbox's preopen, the `files` interface and `ssh exec-files` all start
//! from that handle, and cap-std keeps every later lookup beneath it.

use std::io;
use std::os::fd::AsRawFd as _;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use cap_primitives::fs::{DirOptions, FollowSymlinks};
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

/// A workspace bound for one task attempt.
#[derive(Debug, Clone)]
pub struct WorkspaceMount {
    /// The plugin's workspace name.
    pub name: String,
    /// The directory, opened beneath the workspace root without following
    /// links (see [`open_beneath`]).
    pub dir: Arc<cap_std::fs::Dir>,
    /// Where it is on the host, for messages only (never opened again).
    pub shown: PathBuf,
    pub read_only: bool,
}

/// Why a workspace directory could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum BeneathError {
    #[error("subPath `{sub}`: `{at}` is a symbolic link; a subPath may not be or cross a link")]
    Link { sub: String, at: String },
    #[error("subPath `{sub}`: `{at}` is not a directory")]
    NotDir { sub: String, at: String },
    #[error(
        "subPath `{sub}` must be a relative path of plain names (no `..`, `.`, or leading `/`)"
    )]
    BadPath { sub: String },
    #[error("subPath `{sub}`: `{at}`: {source}")]
    Io {
        sub: String,
        at: String,
        source: io::Error,
    },
    #[error("opening workspace directory {}: {source}", root.display())]
    Root { root: PathBuf, source: io::Error },
}

/// Open the workspace `root` (a host-chosen directory) and, when `sub` is
/// given, the directory `sub` beneath it, one component at a time without
/// following symlinks. Missing components are created when `create` is set
/// (Tekton creates a binding's subPath). A component that is a symlink is
/// refused even when it points inside: whatever a task left in a workspace
/// is only ever looked at, never followed, by the host.
pub fn open_beneath(
    root: &Path,
    sub: Option<&str>,
    create: bool,
) -> Result<cap_std::fs::Dir, BeneathError> {
    let mut dir = cap_primitives::fs::open_ambient_dir(root, cap_primitives::ambient_authority())
        .map_err(|source| BeneathError::Root {
        root: root.to_path_buf(),
        source,
    })?;
    let Some(sub) = sub.filter(|s| !s.is_empty()) else {
        return Ok(cap_std::fs::Dir::from_std_file(dir));
    };
    let bad = || BeneathError::BadPath { sub: sub.into() };
    let mut at = PathBuf::new();
    for c in Path::new(sub).components() {
        let Component::Normal(name) = c else {
            return Err(bad());
        };
        at.push(name);
        let io = |source| BeneathError::Io {
            sub: sub.into(),
            at: at.display().to_string(),
            source,
        };
        let name = Path::new(name);
        match cap_primitives::fs::stat(&dir, name, FollowSymlinks::No) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(BeneathError::Link {
                    sub: sub.into(),
                    at: at.display().to_string(),
                });
            }
            Ok(m) if !m.is_dir() => {
                return Err(BeneathError::NotDir {
                    sub: sub.into(),
                    at: at.display().to_string(),
                });
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                match cap_primitives::fs::create_dir(&dir, name, &DirOptions::new()) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(io(e)),
                }
            }
            Err(e) => return Err(io(e)),
        }
        // O_NOFOLLOW: a link swapped in since the check fails here.
        dir = cap_primitives::fs::open_dir_nofollow(&dir, name).map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                BeneathError::Link {
                    sub: sub.into(),
                    at: at.display().to_string(),
                }
            } else {
                io(e)
            }
        })?;
    }
    Ok(cap_std::fs::Dir::from_std_file(dir))
}

impl WorkspaceMount {
    /// Where the guest sees it.
    pub fn guest_path(&self) -> String {
        format!("/workspace/{}", self.name)
    }

    /// A second handle on the same directory.
    pub fn open(&self) -> io::Result<cap_std::fs::Dir> {
        self.dir.try_clone()
    }

    pub(crate) fn preopen(&self, builder: &mut WasiCtxBuilder) -> anyhow::Result<()> {
        let perms = if self.read_only {
            FsPerms::ReadOnly
        } else {
            FsPerms::ReadWrite
        };
        // wasmtime-wasi opens preopens by path. The magic link of our own
        // descriptor names exactly the directory already opened beneath the
        // workspace root, whatever the path to it holds now.
        let by_fd = format!("/proc/self/fd/{}", self.dir.as_raw_fd());
        builder
            .preopened_dir(&by_fd, self.guest_path(), perms)
            .map_err(anyhow::Error::from)
            .map_err(|e| {
                e.context(format!(
                    "mounting workspace `{}` from {}",
                    self.name,
                    self.shown.display()
                ))
            })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn sub_paths_are_opened_beneath_without_following_links() {
        let t = tempfile::tempdir().unwrap();
        let ws = t.path().join("ws");
        std::fs::create_dir_all(ws.join("a/b")).unwrap();
        std::os::unix::fs::symlink("../..", ws.join("up")).unwrap();
        std::os::unix::fs::symlink("a", ws.join("inside")).unwrap();
        std::os::unix::fs::symlink("/", ws.join("a/root")).unwrap();
        std::fs::write(ws.join("file"), "").unwrap();

        let d = open_beneath(&ws, Some("a/b"), false).unwrap();
        assert!(d.entries().unwrap().next().is_none());
        for (sub, want) in [
            ("up", "is a symbolic link"),
            ("up/x", "`up` is a symbolic link"),
            ("inside", "is a symbolic link"),
            ("a/root/etc", "`a/root` is a symbolic link"),
            ("file", "is not a directory"),
            ("../x", "relative path of plain names"),
            ("/etc", "relative path of plain names"),
        ] {
            let e = open_beneath(&ws, Some(sub), true).unwrap_err().to_string();
            assert!(e.contains(want), "{sub}: {e}");
        }
        // Nothing was created outside (`up/x` would be t/x).
        assert!(!t.path().join("x").exists());
        // Missing components are created beneath.
        open_beneath(&ws, Some("new/deeper"), true).unwrap();
        assert!(ws.join("new/deeper").is_dir());
        assert!(open_beneath(&ws, Some("missing"), false).is_err());
    }

    #[test]
    fn a_preopen_by_descriptor_sees_the_opened_directory() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("ws/sub")).unwrap();
        std::fs::write(t.path().join("ws/sub/mark"), "x").unwrap();
        let dir = open_beneath(&t.path().join("ws"), Some("sub"), false).unwrap();
        let m = WorkspaceMount {
            name: "w".into(),
            dir: Arc::new(dir),
            shown: t.path().join("ws/sub"),
            read_only: true,
        };
        // Rename the directory away and put a link in its place: the mount
        // still names the directory it opened.
        std::fs::rename(t.path().join("ws/sub"), t.path().join("moved")).unwrap();
        std::os::unix::fs::symlink("/", t.path().join("ws/sub")).unwrap();
        let by_fd = format!("/proc/self/fd/{}", m.dir.as_raw_fd());
        assert!(Path::new(&by_fd).join("mark").exists());
        let mut b = WasiCtxBuilder::new();
        m.preopen(&mut b).unwrap();
    }
}
