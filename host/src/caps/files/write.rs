//! `files.write-files`: many new files in one host call (a checkout), so a
//! tree of small files costs one call instead of several WASI calls per
//! file, each a hop to a blocking thread.
//!
//! Confinement is the workspace's, as for every `files` call: the directory
//! is a writable workspace's (cap-std, no escape), paths are relative with
//! no `.`/`..`/empty components, no existing component may be a symbolic
//! link (a parent that is one, or a link at the file's path, is refused,
//! never followed), and the file is opened `O_NOFOLLOW | O_NONBLOCK`, so a
//! link swapped in after the check fails and a FIFO planted at a path
//! cannot hang the host.

use std::collections::HashSet;
use std::io::Write as _;

use cap_std::fs::{Dir, OpenOptions, OpenOptionsExt as _, Permissions, PermissionsExt as _};

use super::FilesState;
use crate::runtime::bindings::capstan::plugin::files::NewFile;
use crate::runtime::bindings::capstan::plugin::types::TaskError;

impl FilesState {
    /// `files.write-files`.
    pub(super) fn write_new_files(
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
        let root = self.open_dir_writable(&dir)?;
        let mut dirs = HashSet::new();
        for f in &files {
            write_one(&root, f, &mut dirs).map_err(|e| {
                let path = crate::caps::log::one_line(&f.path);
                TaskError::Failed(format!("writing {dir}/{path}: {e}"))
            })?;
        }
        Ok(())
    }
}

fn refuse(why: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, why)
}

/// Write `f` under `root`; `dirs` holds the parents already checked.
fn write_one(root: &Dir, f: &NewFile, dirs: &mut HashSet<String>) -> std::io::Result<()> {
    let parts: Vec<&str> = f.path.split('/').collect();
    if parts
        .iter()
        .any(|c| c.is_empty() || *c == "." || *c == "..")
    {
        return Err(refuse("not a plain relative path".into()));
    }
    let mut prefix = String::new();
    for part in &parts[..parts.len() - 1] {
        if !prefix.is_empty() {
            prefix.push('/');
        }
        prefix.push_str(part);
        if dirs.contains(&prefix) {
            continue;
        }
        match root.symlink_metadata(&prefix) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(refuse(format!("{prefix} is not a directory"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => root.create_dir(&prefix)?,
            Err(e) => return Err(e),
        }
        dirs.insert(prefix.clone());
    }
    match root.symlink_metadata(&f.path) {
        Ok(m) if !m.is_file() => return Err(refuse("something other than a file is there".into())),
        _ => {}
    }
    let mode = if f.executable { 0o755 } else { 0o644 };
    let mut opts = OpenOptions::new();
    opts.write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    let mut file = root.open_with(&f.path, &opts)?;
    file.write_all(&f.contents)?;
    // `mode` applies to new files only; a replaced one gets it too.
    if file.metadata()?.permissions().mode() & 0o777 != mode {
        file.set_permissions(Permissions::from_mode(mode))?;
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
    #[test]
    fn new_files_stay_inside_and_never_follow_links() {
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
            mounts: vec![mount("out", &ws, false), mount("src", &ro, true)],
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
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(ws.join("a/b/c.txt")).unwrap(),
            "c\n"
        );
        let mode = |p: &str| std::fs::metadata(ws.join(p)).unwrap().permissions().mode() & 0o777;
        assert_eq!((mode("a/run.sh"), mode("top")), (0o755, 0o644));
        // Replacing a file takes the new mode and contents.
        f.write_new_files("/workspace/out".into(), vec![new("top", "new\n", true)])
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
                    .is_err(),
                "{bad:?}"
            );
        }
        assert!(
            f.write_new_files("/workspace/src".into(), vec![new("x", "x", false)])
                .is_err()
        );
        assert!(
            f.write_new_files("/workspace/out/..".into(), vec![new("x", "x", false)])
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
