//! The workspace disk budget of a run: how much its own workspaces (under
//! `STATE/workspaces/RUN`, beside the run store) may hold, and the watch
//! that stops the run's tasks when they go over.
//!
//! WASI file writes go straight to the kernel through wasmtime-wasi, with
//! no hook to count them, so the budget is enforced by sampling: a thread
//! sums the allocated blocks of the run's workspaces every
//! [`SAMPLE_EVERY`] (never following a link a task left) and, once over,
//! fails every running attempt with a clear message and refuses new ones.
//! A fast writer can overshoot by what it writes in one interval; the
//! budget is therefore also kept below the disk's free space less a
//! reserve, so the store keeps room to record what happened.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use crate::pipeline::size::show;

/// Default budget when neither the pipeline nor the policy sets one.
pub const DEFAULT_BUDGET: u64 = 10 << 30;

/// How often usage is measured while the run executes.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(50);

/// The budget a run gets: the pipeline's (or the default), at most the
/// policy ceiling, and at most the free space less a reserve of a quarter
/// of it (up to 256 MiB) for the run store. Returns it with why it is that.
pub fn effective_budget(
    pipeline: Option<u64>,
    ceiling: Option<u64>,
    free: Option<u64>,
) -> (u64, String) {
    let (mut budget, mut why) = match pipeline {
        Some(b) => (b, "spec.workspaceBudget".to_string()),
        None => (DEFAULT_BUDGET, "the default".to_string()),
    };
    if let Some(c) = ceiling
        && c < budget
    {
        (budget, why) = (c, "the platform policy's limits.workspace-budget".into());
    }
    if let Some(free) = free {
        let spare = free - store_reserve(free);
        if spare < budget {
            (budget, why) = (
                spare,
                format!(
                    "the disk's free space ({}) less a reserve for the run store",
                    show(free)
                ),
            );
        }
    }
    (budget, why)
}

/// What the run store keeps of `free` bytes: a quarter, up to 256 MiB.
pub fn store_reserve(free: u64) -> u64 {
    (free / 4).min(256 << 20)
}

/// Free bytes for unprivileged writers on the file system of `path`.
pub fn free_space(path: &Path) -> Option<u64> {
    free_now(path).map(|(bytes, _)| bytes)
}

/// Deepest directory level walked; deeper is reported as over budget.
pub const MAX_DEPTH: usize = 128;

/// What a walk found: allocated bytes and entries.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub bytes: u64,
    pub entries: u64,
}

/// Allocated bytes and entries under `root` (files, directories, links
/// themselves), depth first with handles opened without following links:
/// at most one open directory per level, so a wide tree cannot make the
/// walk hold thousands of descriptors. Err when deeper than [`MAX_DEPTH`].
pub fn usage(root: &Path) -> io::Result<Usage> {
    let top = cap_primitives::fs::open_ambient_dir(root, cap_primitives::ambient_authority())?;
    let mut total = Usage::default();
    walk(&top, 0, &mut total)?;
    Ok(total)
}

fn walk(dir: &std::fs::File, depth: usize, total: &mut Usage) -> io::Result<()> {
    use cap_primitives::fs::{FollowSymlinks, MetadataExt as _};
    if depth > MAX_DEPTH {
        return Err(io::Error::other(format!(
            "directories nested deeper than {MAX_DEPTH} levels"
        )));
    }
    for entry in cap_primitives::fs::read_base_dir(dir)? {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name();
        let Ok(meta) = cap_primitives::fs::stat(dir, Path::new(&name), FollowSymlinks::No) else {
            continue; // removed meanwhile
        };
        total.bytes = total
            .bytes
            .saturating_add(meta.blocks().saturating_mul(512));
        total.entries += 1;
        if meta.is_dir()
            && let Ok(sub) = cap_primitives::fs::open_dir_nofollow(dir, Path::new(&name))
        {
            walk(&sub, depth + 1, total)?;
        }
    }
    Ok(())
}

/// Free bytes and inodes for unprivileged writers.
fn free_now(path: &Path) -> Option<(u64, u64)> {
    let s = rustix::fs::statvfs(path).ok()?;
    Some((s.f_bavail.saturating_mul(s.f_frsize), s.f_favail))
}

/// The budget check of one sample: Err(message) when over.
fn check(root: &Path, state: &Path, budget: u64, reserve: u64, why: &str) -> Result<(), String> {
    match usage(root) {
        Ok(u) if u.bytes > budget => {
            return Err(format!(
                "the run's workspaces hold {}, over the workspace budget of {} ({why})",
                show(u.bytes),
                show(budget)
            ));
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("the run's workspaces cannot be measured: {e}")),
    }
    // Whatever the walk cannot see (a file unlinked while still open,
    // other runs on the same disk, inodes): the disk itself must keep the
    // store's reserve.
    if let Some((bytes, inodes)) = free_now(state) {
        if bytes < reserve / 2 {
            return Err(format!(
                "the disk of the state directory is nearly full ({} free; the run store keeps {})",
                show(bytes),
                show(reserve / 2)
            ));
        }
        if inodes < 1024 {
            return Err(format!(
                "the disk of the state directory is out of inodes ({inodes} free)"
            ));
        }
    }
    Ok(())
}

/// The running watch of one run: `over` carries the failure message once
/// the budget is exceeded (every attempt of the run listens to it).
pub struct DiskWatch {
    pub over: watch::Receiver<Option<String>>,
    stop: Arc<AtomicBool>,
}

impl DiskWatch {
    /// Start sampling `root` against `budget` (`why` says where the budget
    /// comes from, for the message), and the disk of `state` against
    /// `reserve` ([`store_reserve`]).
    pub fn start(
        root: PathBuf,
        state: PathBuf,
        budget: u64,
        reserve: u64,
        why: String,
    ) -> DiskWatch {
        let (tx, over) = watch::channel(None);
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let spawned = std::thread::Builder::new()
            .name("capstan-disk-watch".into())
            .spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    let started = std::time::Instant::now();
                    if let Err(message) = check(&root, &state, budget, reserve, &why) {
                        let _ = tx.send(Some(message));
                        return;
                    }
                    // A big tree is walked less often: at most a fifth of
                    // the time goes to walking.
                    std::thread::sleep(SAMPLE_EVERY.max(started.elapsed() * 4));
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("cannot start the workspace disk watch: {e}");
        }
        DiskWatch { over, stop }
    }

    /// No watch (a run without workspaces of its own).
    pub fn none() -> DiskWatch {
        let (_tx, over) = watch::channel(None);
        DiskWatch {
            over,
            stop: Arc::new(AtomicBool::new(true)),
        }
    }

    /// The failure message, once over budget.
    pub fn exceeded(&self) -> Option<String> {
        self.over.borrow().clone()
    }
}

impl Drop for DiskWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_the_smallest_of_pipeline_policy_and_disk() {
        let (b, why) = effective_budget(None, None, None);
        assert_eq!((b, why.as_str()), (DEFAULT_BUDGET, "the default"));
        assert_eq!(effective_budget(Some(1 << 30), None, None).0, 1 << 30);
        let (b, why) = effective_budget(Some(8 << 30), Some(2 << 30), None);
        assert_eq!(b, 2 << 30);
        assert!(why.contains("policy"));
        // 40 MiB free: a quarter is kept for the store.
        let (b, why) = effective_budget(None, None, Some(40 << 20));
        assert_eq!(b, 30 << 20);
        assert!(why.contains("free space (40Mi)"), "{why}");
        // Plenty free: 256 MiB kept.
        assert_eq!(
            effective_budget(None, None, Some(100 << 30)).0,
            DEFAULT_BUDGET
        );
    }

    #[test]
    fn usage_counts_allocated_blocks_and_never_follows_links() {
        let t = tempfile::tempdir().unwrap();
        let ws = t.path().join("ws");
        std::fs::create_dir_all(ws.join("a/b")).unwrap();
        std::fs::write(ws.join("a/b/data"), vec![1u8; 1 << 20]).unwrap();
        std::os::unix::fs::symlink("/", ws.join("root")).unwrap();
        std::os::unix::fs::symlink("..", ws.join("a/up")).unwrap();
        // A sparse file counts what it allocates, not its length.
        let f = std::fs::File::create(ws.join("sparse")).unwrap();
        f.set_len(1 << 30).unwrap();
        let used = usage(&ws).unwrap();
        assert!(used.bytes >= 1 << 20 && used.bytes < 2 << 20, "{used:?}");
        assert_eq!(used.entries, 6); // a, b, data, root, up, sparse
        // Too deep: refused, not walked forever.
        let mut deep = ws.join("d");
        for _ in 0..=MAX_DEPTH + 1 {
            deep.push("d");
        }
        std::fs::create_dir_all(&deep).unwrap();
        assert!(usage(&ws).is_err());
    }
}
