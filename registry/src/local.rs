//! The local-directory registry, the embedded default.
//!
//! ```text
//! ROOT/blobs/sha256/<hex>    component bytes, content-addressed, immutable
//! ROOT/plugins/<name>.json   the plugin's versions (digest, yank, deprecation, manifest)
//! ROOT/.lock                 writers hold it (flock) while changing an index
//! ```
//!
//! Every write goes to a temporary file renamed into place, so a crash never
//! leaves a half-written index or blob; every read of a blob is checked
//! against its digest.

use std::fs::File;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Digest, Error, Result, io};

/// One published version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub name: String,
    pub version: semver::Version,
    pub digest: Digest,
    pub size: u64,
    /// RFC 3339.
    pub published_at: String,
    /// Yanked versions are never chosen by resolution, but stay usable
    /// through an existing lock file.
    #[serde(default)]
    pub yanked: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deprecated: Option<String>,
    /// The plugin's manifest (capstan.toml) as JSON.
    pub manifest: serde_json::Value,
    /// OCI registries: the digest of the version's image manifest (its
    /// signatures live under the `sha256-<hex>.sig` tag).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Index {
    name: String,
    versions: Vec<Entry>,
}

/// A registry in a local directory.
#[derive(Debug, Clone)]
pub struct LocalRegistry {
    root: PathBuf,
}

impl LocalRegistry {
    /// Open (creating if needed) a registry rooted at `root`.
    pub fn open(root: &Path) -> Result<LocalRegistry> {
        for dir in [root.join("blobs/sha256"), root.join("plugins")] {
            std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        }
        Ok(LocalRegistry {
            root: root.to_path_buf(),
        })
    }

    /// Open an existing registry for reading: a directory that is not one
    /// (a mistyped path) is an error, not silently created and empty.
    pub fn open_existing(root: &Path) -> Result<LocalRegistry> {
        if !root.join("plugins").is_dir() {
            return Err(Error::NotARegistry(root.display().to_string()));
        }
        Self::open(root)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn index_path(&self, name: &str) -> PathBuf {
        self.root.join("plugins").join(format!("{name}.json"))
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    fn read_index(&self, name: &str) -> Result<Option<Index>> {
        let path = self.index_path(name);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&path)(e)),
        };
        let index: Index = serde_json::from_str(&text).map_err(|e| Error::Corrupt {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        if index.name != name {
            return Err(Error::Corrupt {
                path: path.display().to_string(),
                message: format!("holds plugin `{}`, expected `{name}`", index.name),
            });
        }
        Ok(Some(index))
    }

    pub(crate) fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
        std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
        File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(io(&tmp))?;
        std::fs::rename(&tmp, path).map_err(io(path))
    }

    /// Run `f` on a plugin's index under the registry's write lock.
    fn update<T>(&self, name: &str, f: impl FnOnce(&mut Index) -> Result<T>) -> Result<T> {
        let lock_path = self.root.join(".lock");
        let lock = File::create(&lock_path).map_err(io(&lock_path))?;
        lock.lock().map_err(io(&lock_path))?;
        let mut index = self.read_index(name)?.unwrap_or_else(|| Index {
            name: name.to_string(),
            versions: vec![],
        });
        let out = f(&mut index)?;
        index.versions.sort_by(|a, b| a.version.cmp(&b.version));
        let json = serde_json::to_vec_pretty(&index).expect("index serializes");
        self.write_atomic(&self.index_path(name), &json)?;
        Ok(out)
    }

    /// Publish `bytes` as `name` `version`. Versions are immutable:
    /// publishing the same bytes again is a no-op, different bytes an error.
    pub fn publish(
        &self,
        name: &str,
        version: &semver::Version,
        bytes: &[u8],
        manifest: serde_json::Value,
    ) -> Result<Entry> {
        let digest = self.put_blob(bytes)?;
        self.update(name, |index| {
            if let Some(existing) = index.versions.iter().find(|e| &e.version == version) {
                if existing.digest == digest {
                    return Ok(existing.clone());
                }
                return Err(Error::AlreadyPublished {
                    name: name.to_string(),
                    version: version.to_string(),
                    existing: existing.digest.to_string(),
                });
            }
            let entry = Entry {
                name: name.to_string(),
                version: version.clone(),
                digest: digest.clone(),
                size: bytes.len() as u64,
                published_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now())
                    .to_string(),
                yanked: false,
                deprecated: None,
                manifest,
                artifact: None,
            };
            index.versions.push(entry.clone());
            Ok(entry)
        })
    }

    /// Store a blob by its digest (a cache for remote registries).
    pub(crate) fn put_blob(&self, bytes: &[u8]) -> Result<Digest> {
        let digest = Digest::of(bytes);
        let blob = self.blob_path(&digest);
        if !blob.exists() {
            self.write_atomic(&blob, bytes)?;
        }
        Ok(digest)
    }

    /// A stored blob, checked; `None` if absent. A blob that fails its check
    /// is removed (it is a cache entry) and reported as absent.
    pub(crate) fn cached_blob(&self, digest: &Digest) -> Result<Option<Vec<u8>>> {
        let path = self.blob_path(digest);
        match std::fs::read(&path) {
            Ok(bytes) if &Digest::of(&bytes) == digest => Ok(Some(bytes)),
            Ok(_) => {
                tracing::warn!(path = %path.display(), "cached blob does not match its digest; refetching");
                std::fs::remove_file(&path).map_err(io(&path))?;
                Ok(None)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// Names of all plugins, sorted.
    pub fn list(&self) -> Result<Vec<String>> {
        let dir = self.root.join("plugins");
        let mut names = Vec::new();
        for e in std::fs::read_dir(&dir).map_err(io(&dir))? {
            let e = e.map_err(io(&dir))?;
            if let Some(n) = e.file_name().to_str().and_then(|n| n.strip_suffix(".json")) {
                names.push(n.to_string());
            }
        }
        names.sort();
        Ok(names)
    }

    /// All versions of a plugin, oldest first (yanked ones included).
    pub fn versions(&self, name: &str) -> Result<Vec<Entry>> {
        Ok(self
            .read_index(name)?
            .ok_or_else(|| Error::NoSuchPlugin(name.to_string()))?
            .versions)
    }

    /// The highest non-yanked version matching `req`.
    pub fn resolve(&self, name: &str, req: &semver::VersionReq) -> Result<Entry> {
        highest_match(name, req, self.versions(name)?)
    }

    /// One exact version (yanked or not).
    pub fn get(&self, name: &str, version: &semver::Version) -> Result<Entry> {
        self.versions(name)?
            .into_iter()
            .find(|e| &e.version == version)
            .ok_or_else(|| Error::NoSuchVersion {
                name: name.to_string(),
                version: version.to_string(),
            })
    }

    /// The version of `name` with `digest` (yanked or not).
    pub fn get_digest(&self, name: &str, digest: &Digest) -> Result<Entry> {
        self.versions(name)?
            .into_iter()
            .find(|e| &e.digest == digest)
            .ok_or_else(|| Error::NoSuchDigest {
                name: name.to_string(),
                digest: digest.to_string(),
            })
    }

    /// The component bytes, checked against the digest.
    pub fn fetch(&self, digest: &Digest) -> Result<Vec<u8>> {
        let path = self.blob_path(digest);
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        let actual = Digest::of(&bytes);
        if &actual != digest {
            return Err(Error::DigestMismatch {
                digest: digest.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(bytes)
    }

    fn signatures_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("signatures")
            .join(format!("sha256-{}.json", digest.hex()))
    }

    /// Signatures stored for a digest (stored next to the content, by
    /// digest, so they travel with it when mirrored).
    pub fn signatures(&self, digest: &Digest) -> Result<Vec<crate::sign::Signature>> {
        let path = self.signatures_path(digest);
        match std::fs::read_to_string(&path) {
            Ok(t) => serde_json::from_str(&t).map_err(|e| Error::Corrupt {
                path: path.display().to_string(),
                message: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// Add a signature of a stored digest (idempotent per key).
    pub fn add_signature(&self, digest: &Digest, sig: crate::sign::Signature) -> Result<()> {
        let dir = self.root.join("signatures");
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let lock_path = self.root.join(".lock");
        let lock = File::create(&lock_path).map_err(io(&lock_path))?;
        lock.lock().map_err(io(&lock_path))?;
        let mut sigs = self.signatures(digest)?;
        sigs.retain(|s| s.key_id != sig.key_id);
        sigs.push(sig);
        self.write_atomic(
            &self.signatures_path(digest),
            &serde_json::to_vec_pretty(&sigs).expect("serializes"),
        )
    }

    /// Change one version's metadata under the write lock.
    fn modify(
        &self,
        name: &str,
        version: &semver::Version,
        f: impl FnOnce(&mut Entry),
    ) -> Result<Entry> {
        self.update(name, |index| {
            let e = index
                .versions
                .iter_mut()
                .find(|e| &e.version == version)
                .ok_or_else(|| Error::NoSuchVersion {
                    name: name.to_string(),
                    version: version.to_string(),
                })?;
            f(e);
            Ok(e.clone())
        })
    }

    /// Yank (or un-yank) a version.
    pub fn set_yanked(&self, name: &str, version: &semver::Version, yanked: bool) -> Result<Entry> {
        self.modify(name, version, |e| e.yanked = yanked)
    }

    /// Mark a version deprecated with a message (shown when it is used), or
    /// clear it with `None`.
    pub fn set_deprecated(
        &self,
        name: &str,
        version: &semver::Version,
        message: Option<String>,
    ) -> Result<Entry> {
        self.modify(name, version, |e| e.deprecated = message)
    }
}

/// The highest non-yanked version in `versions` matching `req`, or an error
/// listing what there is.
pub(crate) fn highest_match(
    name: &str,
    req: &semver::VersionReq,
    versions: Vec<Entry>,
) -> Result<Entry> {
    if let Some(e) = versions
        .iter()
        .filter(|e| !e.yanked && req.matches(&e.version))
        .max_by(|a, b| a.version.cmp(&b.version))
    {
        return Ok(e.clone());
    }
    let available: Vec<String> = versions
        .iter()
        .map(|e| {
            if e.yanked {
                format!("{} (yanked)", e.version)
            } else {
                e.version.to_string()
            }
        })
        .collect();
    Err(Error::NoMatchingVersion {
        name: name.to_string(),
        req: req.to_string(),
        available: if available.is_empty() {
            "none".into()
        } else {
            available.join(", ")
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> semver::Version {
        s.parse().unwrap()
    }
    fn req(s: &str) -> semver::VersionReq {
        s.parse().unwrap()
    }

    #[test]
    fn resolution_follows_semver_and_yanks() {
        let dir = tempfile::tempdir().unwrap();
        let reg = LocalRegistry::open(dir.path()).unwrap();
        for ver in ["1.0.0", "1.2.0", "1.3.0-rc.1", "2.0.0"] {
            reg.publish("p", &v(ver), ver.as_bytes(), serde_json::json!({}))
                .unwrap();
        }
        assert_eq!(
            reg.resolve("p", &req("1")).unwrap().version,
            v("1.2.0"),
            "no prerelease unless asked"
        );
        assert_eq!(
            reg.resolve("p", &req("^1.3.0-rc.1")).unwrap().version,
            v("1.3.0-rc.1")
        );
        assert_eq!(
            reg.resolve("p", &req("=1.0.0")).unwrap().version,
            v("1.0.0")
        );
        assert_eq!(reg.resolve("p", &req("*")).unwrap().version, v("2.0.0"));
        reg.set_yanked("p", &v("1.2.0"), true).unwrap();
        assert_eq!(reg.resolve("p", &req("1")).unwrap().version, v("1.0.0"));
        let e = reg.resolve("p", &req("^3")).unwrap_err().to_string();
        assert!(
            e.contains("no version matches `^3`") && e.contains("1.2.0 (yanked)"),
            "{e}"
        );
        // A yanked version is still there to fetch by exact version/digest.
        let y = reg.get("p", &v("1.2.0")).unwrap();
        assert!(y.yanked);
        assert_eq!(reg.fetch(&y.digest).unwrap(), b"1.2.0");
        assert!(matches!(
            reg.resolve("q", &req("1")),
            Err(Error::NoSuchPlugin(_))
        ));
    }

    #[test]
    fn versions_are_immutable() {
        let dir = tempfile::tempdir().unwrap();
        let reg = LocalRegistry::open(dir.path()).unwrap();
        let a = reg
            .publish("p", &v("1.0.0"), b"a", serde_json::json!({}))
            .unwrap();
        assert_eq!(
            reg.publish("p", &v("1.0.0"), b"a", serde_json::json!({}))
                .unwrap(),
            a,
            "same bytes: no-op"
        );
        let e = reg
            .publish("p", &v("1.0.0"), b"b", serde_json::json!({}))
            .unwrap_err();
        assert!(matches!(e, Error::AlreadyPublished { .. }));
        assert_eq!(reg.fetch(&a.digest).unwrap(), b"a");
    }

    #[test]
    fn corruption_is_detected_not_propagated() {
        let dir = tempfile::tempdir().unwrap();
        let reg = LocalRegistry::open(dir.path()).unwrap();
        let e = reg
            .publish("p", &v("1.0.0"), b"good", serde_json::json!({}))
            .unwrap();
        std::fs::write(
            dir.path().join("blobs/sha256").join(e.digest.hex()),
            b"evil",
        )
        .unwrap();
        assert!(matches!(
            reg.fetch(&e.digest),
            Err(Error::DigestMismatch { .. })
        ));
        std::fs::write(dir.path().join("plugins/p.json"), b"{ truncated").unwrap();
        let err = reg.versions("p").unwrap_err().to_string();
        assert!(err.contains("plugins/p.json"), "{err}");
    }
}
