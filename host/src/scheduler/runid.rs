//! Run ids and the per-run execution lock.

use super::*;
use std::fs::File;
use std::path::Path;

use anyhow::{Context as _, anyhow, bail};

/// Take the execution lock of a run (held while a process executes it;
/// released by the OS if that process dies).
pub(super) fn lock_run(state_dir: &Path, run_id: &str) -> Result<File> {
    let dir = state_dir.join("locks");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{run_id}.lock"));
    let f = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => {
            bail!("run {run_id} is being executed by another capstan process")
        }
        Err(std::fs::TryLockError::Error(e)) => {
            Err(anyhow!(e).context(format!("locking {}", path.display())))
        }
    }
}

/// Whether some process is executing the run right now.
pub fn run_is_active(state_dir: &Path, run_id: &str) -> bool {
    lock_run(state_dir, run_id).is_err()
}

/// Build a run id: `<name>-<10 random base32 chars>`; a name that ends
/// with `-` (a `generateName`) is used as the prefix as it is.
pub fn new_run_id(name: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.write_u32(std::process::id());
    let mut n = h.finish();
    const ALPHA: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut suffix = String::new();
    for _ in 0..10 {
        suffix.push(ALPHA[(n % 32) as usize] as char);
        n /= 32;
    }
    let base: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(40)
        .collect();
    let base = if base.trim_matches('-').is_empty() {
        "run-".to_string()
    } else if base.ends_with('-') {
        base.to_lowercase()
    } else {
        format!("{}-", base.to_lowercase())
    };
    format!("{base}{suffix}")
}
