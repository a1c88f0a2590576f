//! `files.write-files`: many new files in one host call (a checkout), so a
//! tree of small files costs one call instead of several WASI calls per
//! file, each a hop to a blocking thread.
//!
//! Confinement is the workspace's, as for every `files` call: the directory
//! is a writable workspace's (cap-std, no escape), paths are relative with
//! no `.`/`..`/empty components, and every component is opened on its own,
//! relative to its parent's handle, without following links
//! (`open_dir_nofollow`, and `FollowSymlinks::No` with `O_NONBLOCK` for the
//! file): a link — planted before the call or swapped in during it, by a
//! task sharing the workspace — is refused, never followed, even inside
//! the workspace, and a FIFO at a path cannot hang the host. The writes run
//! on a blocking thread, not on the runtime's workers.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write as _;
use std::path::Path;

use cap_primitives::fs::{DirOptions, FollowSymlinks, OpenOptions, OpenOptionsExt as _};

use super::FilesState;
use crate::bindings::capstan::plugin::files::NewFile;
use crate::bindings::capstan::plugin::types::TaskError;

impl FilesState {
    /// `files.write-files`: checks, then the writes on a blocking thread.
    pub(super) async fn write_new_files(
        &mut self,
        dir: String,
        files: Vec<NewFile>,
    ) -> Result<(), TaskError> {
        let max = self.max_entries();
        if files.len() > max {
            return Err(TaskError::InvalidParams(format!(
                "files.write-files: {} files in one call; at most {max}",
                files.len()
            )));
        }
        let root = self.open_dir_writable(&dir)?.into_std_file();
        tokio::task::spawn_blocking(move || write_all(root, &dir, &files))
            .await
            .map_err(|e| TaskError::Failed(format!("files.write-files: {e}")))?
    }
}

fn write_all(root: File, dir: &str, files: &[NewFile]) -> Result<(), TaskError> {
    // Directories opened so far, by `/`-joined prefix ("" is the root).
    let mut dirs: HashMap<String, File> = HashMap::new();
    dirs.insert(String::new(), root);
    for f in files {
        write_one(f, &mut dirs).map_err(|e| {
            let path = crate::caps::log::one_line(&f.path);
            TaskError::Failed(format!("writing {dir}/{path}: {e}"))
        })?;
    }
    Ok(())
}

fn refuse(why: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, why)
}

/// Open (making it if missing) directory `name` in `parent`, never through
/// a link.
fn subdir(parent: &File, name: &str, shown: &str) -> std::io::Result<File> {
    let open = |p: &File| cap_primitives::fs::open_dir_nofollow(p, Path::new(name));
    let linkish = |e: std::io::Error| {
        if matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENOTDIR)) {
            refuse(format!(
                "{shown} is not a directory (a link is never followed)"
            ))
        } else {
            e
        }
    };
    match open(parent) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            match cap_primitives::fs::create_dir(parent, Path::new(name), &DirOptions::new()) {
                Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e),
                _ => {}
            }
            open(parent).map_err(linkish)
        }
        r => r.map_err(linkish),
    }
}

/// Write `f`, opening its parents one component at a time.
fn write_one(f: &NewFile, dirs: &mut HashMap<String, File>) -> std::io::Result<()> {
    let parts: Vec<&str> = f.path.split('/').collect();
    if parts
        .iter()
        .any(|c| c.is_empty() || *c == "." || *c == "..")
    {
        return Err(refuse("not a plain relative path".into()));
    }
    let (name, parents) = parts.split_last().expect("split yields one part");
    let mut prefix = String::new();
    for part in parents {
        let parent_key = prefix.clone();
        if !prefix.is_empty() {
            prefix.push('/');
        }
        prefix.push_str(part);
        if !dirs.contains_key(&prefix) {
            let d = subdir(&dirs[&parent_key], part, &prefix)?;
            dirs.insert(prefix.clone(), d);
        }
    }
    let mode = if f.executable { 0o755 } else { 0o644 };
    let mut opts = OpenOptions::new();
    opts.write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .custom_flags(libc::O_NONBLOCK);
    // What cap-fs-ext's `OpenOptionsFollowExt::follow` sets.
    opts._cap_fs_ext_follow(FollowSymlinks::No);
    let mut file =
        cap_primitives::fs::open(&dirs[&prefix], Path::new(name), &opts).map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                refuse("a symbolic link is there (never followed)".into())
            } else {
                e
            }
        })?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(refuse("something other than a file is there".into()));
    }
    file.write_all(&f.contents)?;
    // `mode` applies to new files only; a replaced one gets it too.
    use std::os::unix::fs::PermissionsExt as _;
    if meta.permissions().mode() & 0o777 != mode {
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;
    use std::sync::Arc;

    use super::*;
    use crate::caps::workspace::{WorkspaceMount, open_beneath};
    use crate::caps::{LogLevel, TaskSink};

    struct Quiet;
    impl TaskSink for Quiet {
        fn log(&self, _: LogLevel, _: &str) {}
        fn progress(&self, _: &str, _: u64, _: Option<u64>) {}
    }

    fn new(path: &str, contents: &str, executable: bool) -> NewFile {
        NewFile {
            path: path.into(),
            contents: contents.as_bytes().to_vec(),
            executable,
        }
    }

    /// Files land inside the writable workspace only, with their modes;
    /// links, escapes and a FIFO are refused, and nothing outside changes.
    #[tokio::test]
    async fn new_files_stay_inside_and_never_follow_links() {
        let root = tempfile::tempdir().unwrap();
        let (ws, ro) = (root.path().join("ws"), root.path().join("ro"));
        std::fs::create_dir_all(&ws).unwrap();
        std::fs::create_dir_all(&ro).unwrap();
        let outside = root.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, ws.join("out-link")).unwrap();
        std::os::unix::fs::symlink(outside.join("f"), ws.join("file-link")).unwrap();
        let fifo = ws.join("fifo");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        let mount = |name: &str, dir: &std::path::Path, read_only| WorkspaceMount {
            name: name.into(),
            dir: Arc::new(open_beneath(dir, None, false).unwrap()),
            shown: dir.to_path_buf(),
            read_only,
        };
        let mut f = FilesState {
            mounts: vec![mount("out", &ws, false), mount("src", &ro, true)].into(),
            sink: Arc::new(Quiet),
            max_pack_bytes: 1 << 20,
        };
        f.write_new_files(
            "/workspace/out".into(),
            vec![
                new("a/b/c.txt", "c\n", false),
                new("a/run.sh", "#!/bin/sh\n", true),
                new("top", "t\n", false),
            ],
        )
        .await
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(ws.join("a/b/c.txt")).unwrap(),
            "c\n"
        );
        let mode = |p: &str| std::fs::metadata(ws.join(p)).unwrap().permissions().mode() & 0o777;
        assert_eq!((mode("a/run.sh"), mode("top")), (0o755, 0o644));
        // Replacing a file takes the new mode and contents.
        f.write_new_files("/workspace/out".into(), vec![new("top", "new\n", true)])
            .await
            .unwrap();
        assert_eq!(
            (
                mode("top"),
                std::fs::read_to_string(ws.join("top")).unwrap().as_str()
            ),
            (0o755, "new\n")
        );
        for bad in [
            "out-link/x",
            "file-link",
            "fifo",
            "../outside/x",
            "a/../../outside/x",
            "/etc/x",
            "a//b",
            "",
        ] {
            assert!(
                f.write_new_files("/workspace/out".into(), vec![new(bad, "x", false)])
                    .await
                    .is_err(),
                "{bad:?}"
            );
        }
        assert!(
            f.write_new_files("/workspace/src".into(), vec![new("x", "x", false)])
                .await
                .is_err()
        );
        assert!(
            f.write_new_files("/workspace/out/..".into(), vec![new("x", "x", false)])
                .await
                .is_err()
        );
        assert_eq!(
            std::fs::read_dir(&outside).unwrap().count(),
            0,
            "nothing written outside"
        );
        assert_eq!(std::fs::read_dir(&ro).unwrap().count(), 0);
    }
}
