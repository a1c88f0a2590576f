//! The `files` interface: file operations WASI lacks (today: the executable
//! bits), confined to the task's writable workspaces. Paths are resolved
//! with cap-std inside the workspace directory, so `..` and symlinks cannot
//! reach anything outside it.

use std::sync::Arc;

use cap_std::fs::PermissionsExt as _;

use wasmtime::component::Linker;

use super::capability::{Capability, Data, NoGrant, PrepareCtx, TaskCtx, TaskData, view};
use super::workspace::WorkspaceMount;
use super::{LogLevel, TaskSink};
use crate::bindings::capstan::plugin::files::{FileInfo, FileStat};

mod host;
mod write;
use crate::bindings::capstan::plugin::types::{Denial, GrantLayer, TaskError};

/// The files capability: every task has it, confined to its workspaces.
pub struct FilesCap;

impl Capability for FilesCap {
    const NAME: &'static str = "files";
    const INTERFACES: &'static [&'static str] = &["capstan:plugin/files"];
    type Grant = NoGrant;
    type Prepared = ();
    type State = FilesState;

    fn link<T: TaskData>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
        crate::bindings::capstan::plugin::files::add_to_linker::<T, Data<Self>>(
            linker,
            view::<Self, T>,
        )
    }

    fn prepare(_: &[NoGrant], _: &PrepareCtx<'_>) -> Result<(), String> {
        Ok(())
    }

    fn instantiate(_: (), task: &TaskCtx) -> FilesState {
        FilesState::of(task)
    }
}

/// Per-task state: the task's workspaces.
pub struct FilesState {
    pub mounts: Arc<[WorkspaceMount]>,
    pub sink: Arc<dyn TaskSink>,
    /// Most bytes `pack` builds in host memory (the task's memory limit:
    /// the guest could not hold more anyway).
    pub max_pack_bytes: usize,
}

impl FilesState {
    /// The files state of a task (also what `ssh exec-files` reads from).
    pub fn of(task: &TaskCtx) -> FilesState {
        FilesState {
            mounts: task.mounts.clone(),
            sink: task.sink.clone(),
            max_pack_bytes: task.memory_cap,
        }
    }
}

fn deny(sink: &dyn TaskSink, path: &str, why: &str) -> TaskError {
    // The path is the plugin's: shown with control characters escaped.
    let path = super::log::one_line(path);
    sink.log(LogLevel::Warn, &format!("denied: files {path} ({why})"));
    TaskError::Denied(Denial {
        capability: "files".into(),
        target: format!("{path}: {why}"),
        layer: GrantLayer::Pipeline,
    })
}

impl FilesState {
    fn deny(&self, path: &str, why: &str) -> TaskError {
        deny(&*self.sink, path, why)
    }

    /// The workspace directory and the path inside it.
    fn resolve<'p>(
        &mut self,
        path: &'p str,
        write: bool,
    ) -> Result<(&cap_std::fs::Dir, &'p str), TaskError> {
        self.resolve_in(path, write, false)
    }

    /// A directory inside a workspace, opened (confined) as a `Dir`.
    pub(crate) fn open_dir(&mut self, path: &str) -> Result<cap_std::fs::Dir, TaskError> {
        self.open_dir_for(path, false)
    }

    /// [`FilesState::open_dir`] in a workspace the task may write.
    fn open_dir_writable(&mut self, path: &str) -> Result<cap_std::fs::Dir, TaskError> {
        self.open_dir_for(path, true)
    }

    fn open_dir_for(&mut self, path: &str, write: bool) -> Result<cap_std::fs::Dir, TaskError> {
        let trimmed = match path.trim_end_matches('/') {
            "" => path,
            t => t,
        };
        let (root, rel) = self.resolve_in(trimmed, write, true)?;
        if rel.is_empty() || rel == "." {
            return root
                .try_clone()
                .map_err(|e| TaskError::Failed(format!("{path}: {e}")));
        }
        root.open_dir(rel)
            .map_err(|e| TaskError::Failed(format!("{path}: {e}")))
    }

    fn resolve_in<'p>(
        &self,
        path: &'p str,
        write: bool,
        dir_ok: bool,
    ) -> Result<(&cap_std::fs::Dir, &'p str), TaskError> {
        let Some(rest) = path.strip_prefix("/workspace/") else {
            return Err(self.deny(path, "not in a workspace"));
        };
        let (name, rel) = rest.split_once('/').unwrap_or((rest, ""));
        let Some(mount) = self.mounts.iter().find(|m| m.name == name) else {
            return Err(self.deny(path, "no such workspace"));
        };
        if write && mount.read_only {
            return Err(self.deny(path, "the workspace is read-only"));
        }
        if rel.is_empty() && !dir_ok {
            return Err(TaskError::InvalidParams(format!("{path}: not a file")));
        }
        Ok((&*mount.dir, rel))
    }
}

fn mtime_ns(meta: &cap_std::fs::Metadata) -> u64 {
    meta.modified()
        .ok()
        .map(|t| t.into_std())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Write a tar of `paths` (relative to `root`, regular files only, modes
/// 0644/0755, modification times kept) to `out` as the files are read: `files.pack` collects it, the
/// ssh capability streams it into a remote command's stdin.
pub(crate) fn write_tar<W: std::io::Write>(
    root: &cap_std::fs::Dir,
    paths: &[String],
    out: W,
    progress: &mut dyn FnMut(usize),
) -> Result<W, TaskError> {
    let mut tar = tar::Builder::new(out);
    for (i, p) in paths.iter().enumerate() {
        let failed = |e: std::io::Error| TaskError::Failed(format!("packing {p}: {e}"));
        let meta = root.symlink_metadata(p).map_err(failed)?;
        if !meta.is_file() {
            return Err(TaskError::InvalidParams(format!("{p}: not a regular file")));
        }
        let file = root.open(p).map_err(failed)?;
        // The modification time travels too, to the nanosecond (a PAX
        // record; the header holds whole seconds for readers without PAX):
        // make and ninja on the other side compare it, and a file arriving
        // with the epoch as its time is never seen as newer than its target.
        let mtime = mtime_ns(&meta);
        let (secs, nanos) = (mtime / 1_000_000_000, mtime % 1_000_000_000);
        let pax = format!("{secs}.{nanos:09}");
        tar.append_pax_extensions([("mtime", pax.as_bytes())])
            .map_err(failed)?;
        let mut h = tar::Header::new_gnu();
        h.set_mtime(secs);
        h.set_size(meta.len());
        h.set_mode(if meta.permissions().mode() & 0o111 != 0 {
            0o755
        } else {
            0o644
        });
        h.set_cksum();
        // A file that changes size while it is read would corrupt the
        // stream: read exactly the size in the header or fail.
        let mut body = Exact {
            inner: std::io::Read::take(file.into_std(), meta.len()),
            left: meta.len(),
        };
        tar.append_data(&mut h, p, &mut body).map_err(failed)?;
        progress(i + 1);
    }
    tar.into_inner()
        .map_err(|e| TaskError::Failed(format!("packing: {e}")))
}

/// A reader of exactly `left` bytes: ending early is an error (the file
/// shrank while it was packed), so the archive never holds a short entry.
struct Exact<R> {
    inner: R,
    left: u64,
}

impl<R: std::io::Read> std::io::Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && self.left > 0 && !buf.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the file shrank while it was being packed",
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Deepest directory level `scan` descends.
const MAX_SCAN_DEPTH: usize = 128;

/// Regular files under `dir` into `out`, depth first: one open directory
/// per level (a wide tree cannot make the host hold thousands of
/// descriptors), at most `max` files and [`MAX_SCAN_DEPTH`] levels.
fn scan_into(
    dir: &cap_std::fs::Dir,
    prefix: &str,
    depth: usize,
    max: usize,
    out: &mut Vec<FileInfo>,
) -> std::io::Result<()> {
    if depth > MAX_SCAN_DEPTH {
        return Err(std::io::Error::other(format!(
            "directories nested deeper than {MAX_SCAN_DEPTH} levels"
        )));
    }
    for e in dir.entries()? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        let path = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        let ft = e.file_type()?;
        if ft.is_dir() {
            scan_into(&e.open_dir()?, &path, depth + 1, max, out)?;
        } else if ft.is_file() {
            if out.len() >= max {
                return Err(std::io::Error::other(format!(
                    "more than {max} files (the task's memory limit); scan a sub-directory"
                )));
            }
            let meta = e.metadata()?;
            out.push(FileInfo {
                path,
                size: meta.len(),
                mtime_ns: mtime_ns(&meta),
                executable: meta.permissions().mode() & 0o111 != 0,
            });
        }
    }
    Ok(())
}

const CAPPED: &str = "archive size limit reached";

/// A buffer that refuses to grow past `limit` (host memory per call is
/// bounded, whatever the files hold — a sparse file reads as gigabytes).
struct Capped {
    buf: Vec<u8>,
    limit: usize,
}

impl std::io::Write for Capped {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + data.len() > self.limit {
            return Err(std::io::Error::other(CAPPED));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl FilesState {
    /// Entries one `scan` or `stat` call handles: host memory is bounded
    /// like `pack`'s (about 64 bytes an entry).
    fn max_entries(&self) -> usize {
        (self.max_pack_bytes / 64).max(1)
    }
}

/// The `files` calls (the generated `Host` impl in `host.rs` delegates
/// here).
impl FilesState {
    pub(crate) fn scan(&mut self, dir: String) -> Result<Vec<FileInfo>, TaskError> {
        let root = self.open_dir(&dir)?;
        let mut out = Vec::new();
        let max = self.max_entries();
        scan_into(&root, "", 0, max, &mut out)
            .map_err(|e| TaskError::Failed(format!("scanning {dir}: {e}")))?;
        Ok(out)
    }

    pub(crate) fn stat(
        &mut self,
        dir: String,
        paths: Vec<String>,
    ) -> Result<Vec<Option<FileStat>>, TaskError> {
        use cap_std::fs::MetadataExt as _;
        // Bounded like `scan`: one call cannot keep the host busy forever.
        let max = self.max_entries();
        if paths.len() > max {
            return Err(TaskError::InvalidParams(format!(
                "files.stat: {} paths in one call; at most {max}",
                paths.len()
            )));
        }
        let root = self.open_dir(&dir)?;
        let ns =
            |s: i64, n: i64| (s.max(0) as u64) * 1_000_000_000 + n.clamp(0, 999_999_999) as u64;
        paths
            .iter()
            .map(|p| match root.symlink_metadata(p) {
                Ok(m) => Ok(Some(FileStat {
                    mtime_ns: ns(m.mtime(), m.mtime_nsec()),
                    ctime_ns: ns(m.ctime(), m.ctime_nsec()),
                    dev: m.dev(),
                    ino: m.ino(),
                    uid: m.uid(),
                    gid: m.gid(),
                    size: m.len(),
                })),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                // Escapes (`..`, absolute, through a link) are refused by
                // cap-std like everywhere else in the workspace.
                Err(e) => Err(TaskError::Failed(format!("stat {p}: {e}"))),
            })
            .collect()
    }

    pub(crate) fn pack(&mut self, dir: String, paths: Vec<String>) -> Result<Vec<u8>, TaskError> {
        let root = self.open_dir(&dir)?;
        let limit = self.max_pack_bytes;
        write_tar(
            &root,
            &paths,
            Capped {
                buf: Vec::new(),
                limit,
            },
            &mut |_| {},
        )
        .map(|c| c.buf)
        .map_err(|e| match e {
            TaskError::Failed(m) if m.contains(CAPPED) => TaskError::Failed(format!(
                "files.pack: the archive is over {limit} bytes (the task's memory limit); \
                     pack fewer files, or use ssh exec-files, which streams"
            )),
            e => e,
        })
    }

    pub(crate) fn is_executable(&mut self, path: String) -> Result<bool, TaskError> {
        let (dir, rel) = self.resolve(&path, false)?;
        let meta = dir
            .metadata(rel)
            .map_err(|e| TaskError::Failed(format!("{path}: {e}")))?;
        Ok(meta.is_file() && meta.permissions().mode() & 0o111 != 0)
    }

    pub(crate) fn set_executable(
        &mut self,
        path: String,
        executable: bool,
    ) -> Result<(), TaskError> {
        let sink = self.sink.clone();
        let (dir, rel) = self.resolve(&path, true)?;
        let failed = |e: std::io::Error| TaskError::Failed(format!("{path}: {e}"));
        let meta = dir.symlink_metadata(rel).map_err(|e| {
            if e.kind() == std::io::ErrorKind::PermissionDenied {
                deny(&*sink, &path, "outside the workspace")
            } else {
                failed(e)
            }
        })?;
        if !meta.is_file() {
            return Err(TaskError::InvalidParams(format!(
                "{path}: not a regular file"
            )));
        }
        let mode = meta.permissions().mode();
        let mode = if executable {
            mode | ((mode & 0o444) >> 2)
        } else {
            mode & !0o111
        };
        dir.set_permissions(rel, cap_std::fs::Permissions::from_mode(mode))
            .map_err(failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    struct Quiet;
    impl TaskSink for Quiet {
        fn log(&self, _: LogLevel, _: &str) {}
        fn progress(&self, _: &str, _: u64, _: Option<u64>) {}
    }

    #[test]
    fn executable_bits_stay_inside_writable_workspaces() {
        let root = tempfile::tempdir().unwrap();
        let ws = root.path().join("ws");
        let ro = root.path().join("ro");
        std::fs::create_dir_all(&ws).unwrap();
        std::fs::create_dir_all(&ro).unwrap();
        std::fs::write(ws.join("run.sh"), "#!/bin/sh\n").unwrap();
        std::fs::write(ro.join("x"), "").unwrap();
        std::fs::write(root.path().join("outside"), "").unwrap();
        std::os::unix::fs::symlink("../outside", ws.join("link")).unwrap();
        let mut f = FilesState {
            mounts: vec![
                WorkspaceMount {
                    name: "out".into(),
                    dir: Arc::new(super::super::workspace::open_beneath(&ws, None, false).unwrap()),
                    shown: ws.clone(),
                    read_only: false,
                },
                WorkspaceMount {
                    name: "src".into(),
                    dir: Arc::new(super::super::workspace::open_beneath(&ro, None, false).unwrap()),
                    shown: ro.clone(),
                    read_only: true,
                },
            ]
            .into(),
            sink: Arc::new(Quiet),
            max_pack_bytes: 1 << 20,
        };
        f.set_executable("/workspace/out/run.sh".into(), true)
            .unwrap();
        let mode = std::fs::metadata(ws.join("run.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o111, 0o111 & ((mode & 0o444) >> 2));
        assert_ne!(mode & 0o100, 0);
        f.set_executable("/workspace/out/run.sh".into(), false)
            .unwrap();
        let mode = std::fs::metadata(ws.join("run.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o111, 0);
        for bad in [
            "/workspace/src/x",
            "/workspace/out/../outside",
            "/workspace/out/link",
            "/etc/passwd",
            "/workspace/nope/x",
        ] {
            assert!(f.set_executable(bad.into(), true).is_err(), "{bad}");
        }
        // scan and pack stay inside too.
        let listed = f.scan("/workspace/out".into()).unwrap();
        assert_eq!(
            listed.len(),
            1,
            "the symlink is not followed: {:?}",
            listed.iter().map(|f| &f.path).collect::<Vec<_>>()
        );
        assert_eq!(listed[0].path, "run.sh");
        assert!(
            !f.pack("/workspace/out".into(), vec!["run.sh".into()])
                .unwrap()
                .is_empty()
        );
        for bad in ["link", "../outside", "/etc/passwd"] {
            assert!(
                f.pack("/workspace/out".into(), vec![bad.into()]).is_err(),
                "{bad}"
            );
        }
        assert!(f.scan("/workspace/out/..".into()).is_err());
        assert!(f.scan("/etc".into()).is_err());
        let outside = std::fs::metadata(root.path().join("outside"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(outside & 0o111, 0, "nothing outside changed");
    }
}

#[cfg(test)]
mod tar_tests {
    use std::time::{Duration, UNIX_EPOCH};

    /// What `write_tar` writes, GNU tar unpacks with the same contents,
    /// modes and modification times to the nanosecond, long paths included.
    #[test]
    fn gnu_tar_restores_contents_modes_and_nanosecond_mtimes() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let src = tempfile::tempdir().unwrap();
        let long = format!("{}/deep.c", "d".repeat(120));
        let paths = vec!["a.c".to_string(), "bin/run".to_string(), long.clone()];
        let when = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        for (i, p) in paths.iter().enumerate() {
            let path = src.path().join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, format!("file {i}\n")).unwrap();
            let f = std::fs::File::options().write(true).open(&path).unwrap();
            f.set_modified(when + Duration::from_secs(i as u64))
                .unwrap();
        }
        std::fs::set_permissions(
            src.path().join("bin/run"),
            std::fs::Permissions::from_mode(0o750),
        )
        .unwrap();
        let dir =
            cap_std::fs::Dir::open_ambient_dir(src.path(), cap_std::ambient_authority()).unwrap();
        let mut seen = Vec::new();
        let bytes = super::write_tar(&dir, &paths, Vec::new(), &mut |n| seen.push(n)).unwrap();
        assert_eq!(seen, vec![1, 2, 3]);

        let dst = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("tar")
            .args(["-xf", "-", "-C"])
            .arg(dst.path())
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("GNU tar must be installed");
        std::io::Write::write_all(child.stdin.as_mut().unwrap(), &bytes).unwrap();
        drop(child.stdin.take());
        assert!(child.wait().unwrap().success());
        for (i, p) in paths.iter().enumerate() {
            let meta = std::fs::metadata(dst.path().join(p)).unwrap();
            assert_eq!(
                std::fs::read_to_string(dst.path().join(p)).unwrap(),
                format!("file {i}\n")
            );
            assert_eq!(
                (meta.mtime(), meta.mtime_nsec()),
                (1_700_000_000 + i as i64, 123_456_789),
                "{p}"
            );
        }
        let mode = std::fs::metadata(dst.path().join("bin/run"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        assert!(std::fs::metadata(dst.path().join(&long)).is_ok());
    }
}
