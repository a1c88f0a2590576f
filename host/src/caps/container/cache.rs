//! Named caches for container steps (`caches: [{name: gomod, path: …}]`):
//! a directory per pipeline and name, `STATE/caches/PIPELINE/NAME`, mounted
//! read-write at the path the step gives, kept across runs of the same
//! pipeline (what Tekton has no word for; GitHub Actions' `actions/cache`).
//! Runs of the same pipeline at the same time share it, as they would a
//! volume (Go's and npm's caches lock for themselves).
//!
//! A cache holds whatever a container wrote, links included: the host
//! never follows a link in it — sizes are summed and caches cleared with
//! `lstat` and `remove_dir_all` (which removes a link, not its target).
//! Over its budget after a run, a cache is emptied (with a warning in the
//! task log) rather than trimmed: what to keep is the tool's business.

use std::path::{Path, PathBuf};

/// Where caches live under the state directory.
pub const DIR: &str = "caches";

/// A budget when the policy sets none.
pub const DEFAULT_BUDGET: u64 = 5 << 30;

/// One cache on disk.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CacheInfo {
    pub pipeline: String,
    pub name: String,
    pub bytes: u64,
    /// When a run last used it (its directory's mtime), RFC 3339.
    pub last_used: String,
    pub path: PathBuf,
}

/// A name that is safe as one path component and a cache key: lowercase
/// letters, digits, `-`, `_` and `.` (not starting with `.`).
pub fn check_key(what: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} `{name}`: lowercase letters, digits, `-`, `_` and `.`, not starting with `.`"
        ))
    }
}

/// The directory of cache `name` of `pipeline`, created if missing (0700,
/// never through a link).
pub fn open(state: &Path, pipeline: &str, name: &str) -> Result<PathBuf, String> {
    use std::os::unix::fs::DirBuilderExt;
    check_key("pipeline name (for its caches)", pipeline)?;
    check_key("cache", name)?;
    std::fs::create_dir_all(state)
        .map_err(|e| format!("state directory {}: {e}", state.display()))?;
    let mut dir = state.join(DIR);
    for part in [None, Some(pipeline), Some(name)] {
        if let Some(p) = part {
            dir.push(p);
        }
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("cache directory {}: {e}", dir.display())),
        }
        let meta = std::fs::symlink_metadata(&dir)
            .map_err(|e| format!("cache directory {}: {e}", dir.display()))?;
        if !meta.is_dir() {
            return Err(format!(
                "cache directory {} is not a directory",
                dir.display()
            ));
        }
    }
    // Touch it: `last used`.
    let _ = filetime_now(&dir);
    Ok(dir)
}

fn filetime_now(dir: &Path) -> std::io::Result<()> {
    let f = std::fs::File::open(dir)?;
    f.set_modified(std::time::SystemTime::now())
}

/// Bytes on disk under `dir`, never following a link.
pub fn size(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(meta) = std::fs::symlink_metadata(e.path()) else {
                continue;
            };
            total += meta.blocks() * 512;
            if meta.is_dir() {
                stack.push(e.path());
            }
        }
    }
    total
}

/// Empty `dir` (the cache stays, empty); links inside are removed, never
/// followed.
pub fn empty(dir: &Path) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let path = e.path();
        if std::fs::symlink_metadata(&path)?.is_dir() {
            std::fs::remove_dir_all(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

/// Every cache under `state`, by pipeline and name.
pub fn list(state: &Path) -> std::io::Result<Vec<CacheInfo>> {
    let root = state.join(DIR);
    let mut out = Vec::new();
    let Ok(pipelines) = std::fs::read_dir(&root) else {
        return Ok(out);
    };
    for p in pipelines.flatten() {
        if !p.file_type()?.is_dir() {
            continue;
        }
        for c in std::fs::read_dir(p.path())?.flatten() {
            let meta = std::fs::symlink_metadata(c.path())?;
            if !meta.is_dir() {
                continue;
            }
            let last_used = meta
                .modified()
                .map(|t| humantime::format_rfc3339_seconds(t).to_string())
                .unwrap_or_default();
            out.push(CacheInfo {
                pipeline: p.file_name().to_string_lossy().into_owned(),
                name: c.file_name().to_string_lossy().into_owned(),
                bytes: size(&c.path()),
                last_used,
                path: c.path(),
            });
        }
    }
    out.sort_by(|a, b| (&a.pipeline, &a.name).cmp(&(&b.pipeline, &b.name)));
    Ok(out)
}

/// Remove the caches `pipeline` (all if None) and `name` (all if None)
/// select; what was removed.
pub fn clear(
    state: &Path,
    pipeline: Option<&str>,
    name: Option<&str>,
) -> std::io::Result<Vec<CacheInfo>> {
    let chosen: Vec<CacheInfo> = list(state)?
        .into_iter()
        .filter(|c| pipeline.is_none_or(|p| p == c.pipeline))
        .filter(|c| name.is_none_or(|n| n == c.name))
        .collect();
    for c in &chosen {
        std::fs::remove_dir_all(&c.path)?;
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A link a container left in a cache is removed, its target kept; its
    /// target's size is not counted.
    #[test]
    fn links_in_a_cache_are_never_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), vec![7u8; 1 << 20]).unwrap();
        let state = tmp.path().join("state");
        let dir = open(&state, "build", "gomod").unwrap();
        std::fs::write(dir.join("mod.txt"), "x").unwrap();
        std::os::unix::fs::symlink(&outside, dir.join("escape")).unwrap();
        assert!(size(&dir) < 1 << 20, "{}", size(&dir));
        let l = list(&state).unwrap();
        assert_eq!(
            (l[0].pipeline.as_str(), l[0].name.as_str()),
            ("build", "gomod")
        );
        empty(&dir).unwrap();
        assert!(outside.join("keep").exists());
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        std::os::unix::fs::symlink(&outside, dir.join("escape")).unwrap();
        assert_eq!(clear(&state, Some("build"), None).unwrap().len(), 1);
        assert!(outside.join("keep").exists() && !dir.exists());
        assert!(open(&state, "../x", "gomod").is_err());
        assert!(open(&state, "build", "..").is_err());
    }
}
