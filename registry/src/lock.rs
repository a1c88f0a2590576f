//! `capstan.lock`: each registry reference of a pipeline pinned to the
//! version and digest it resolved to, so later runs use exactly those bytes.
//!
//! ```toml
//! version = 1
//!
//! [[plugin]]
//! reference = "git-clone@^1.2"     # as written in `uses:`
//! name = "git-clone"
//! version = "1.2.4"
//! digest = "sha256:…"
//! registry = "/home/me/.capstan/registry"
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{Digest, Error, Result};

pub const LOCK_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Locked {
    /// The reference exactly as the pipeline writes it.
    pub reference: String,
    pub name: String,
    pub version: semver::Version,
    pub digest: Digest,
    /// Where it was resolved (a directory or an OCI registry).
    pub registry: String,
    /// Key id of the signature checked at lock time (signing is not built yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockFile {
    pub version: u32,
    #[serde(default, rename = "plugin")]
    pub plugins: Vec<Locked>,
}

impl Default for LockFile {
    fn default() -> Self {
        LockFile {
            version: LOCK_VERSION,
            plugins: Vec::new(),
        }
    }
}

impl LockFile {
    /// Read a lock file; `Ok(None)` if it does not exist.
    pub fn read(path: &Path) -> Result<Option<LockFile>> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(crate::io(path)(e)),
        };
        Self::parse(&text, &path.display().to_string()).map(Some)
    }

    /// Parse lock file text (`origin` names it in errors).
    pub fn parse(text: &str, origin: &str) -> Result<LockFile> {
        let lock: LockFile = toml::from_str(text).map_err(|e| Error::Lock {
            path: origin.to_string(),
            message: e.to_string(),
        })?;
        if lock.version != LOCK_VERSION {
            return Err(Error::Lock {
                path: origin.to_string(),
                message: format!(
                    "lock version {} is not supported (expected {LOCK_VERSION})",
                    lock.version
                ),
            });
        }
        Ok(lock)
    }

    /// Write atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        let mut text =
            String::from("# Written by `capstan lock`. Pins each plugin reference to a digest.\n");
        text.push_str(&toml::to_string_pretty(self).expect("lock serializes"));
        let tmp = path.with_extension("lock.tmp");
        std::fs::write(&tmp, text).map_err(crate::io(&tmp))?;
        std::fs::rename(&tmp, path).map_err(crate::io(path))
    }

    pub fn get(&self, reference: &str) -> Option<&Locked> {
        self.plugins.iter().find(|l| l.reference == reference)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("capstan.lock");
        assert_eq!(LockFile::read(&path).unwrap(), None);
        let lock = LockFile {
            version: LOCK_VERSION,
            plugins: vec![Locked {
                reference: "p@1".into(),
                name: "p".into(),
                version: "1.0.0".parse().unwrap(),
                digest: Digest::of(b"x"),
                registry: "/r".into(),
                signer: None,
            }],
        };
        lock.write(&path).unwrap();
        assert_eq!(LockFile::read(&path).unwrap().unwrap(), lock);
        std::fs::write(&path, "version = 1\n[[plugin]]\nreference = 3\n").unwrap();
        let e = LockFile::read(&path).unwrap_err().to_string();
        assert!(e.contains("capstan.lock"), "{e}");
        std::fs::write(&path, "version = 9\n").unwrap();
        assert!(
            LockFile::read(&path)
                .unwrap_err()
                .to_string()
                .contains("not supported")
        );
    }
}
