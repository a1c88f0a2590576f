//! Where a task's `uses:` points: a component file, or a registry reference
//! resolved through the pipeline's lock file (if any) and the registry.
//!
//! Every registry byte is checked against its digest by the registry; a
//! recorded digest (on resume, or from the lock file) is fetched exactly,
//! even if that version was yanked since.

use std::path::{Path, PathBuf};

use capstan_registry::{Entry, LockFile, OciOptions, OciRegistry, Reference, Registry};

use crate::digest::Digest;
use crate::identity::{PluginIdentity, PluginSource, check_embedded};

/// How the lock file is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LockMode {
    /// Use `capstan.lock` beside the pipeline when it pins a reference;
    /// resolve the others from the registry.
    #[default]
    Prefer,
    /// `--locked`: every registry reference must be pinned by the lock file.
    Require,
}

/// The lock file that belongs to a pipeline file in `dir`.
pub fn lock_path(dir: &Path) -> PathBuf {
    dir.join("capstan.lock")
}

/// Default network timeout of registry requests.
pub const DEFAULT_REGISTRY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// OCI access for a state directory: pulled components are cached by digest
/// in `STATE/cache/oci`.
pub fn oci_options(state_dir: &Path, timeout: Option<std::time::Duration>) -> OciOptions {
    OciOptions {
        timeout: timeout.unwrap_or(DEFAULT_REGISTRY_TIMEOUT),
        cache_dir: state_dir.join("cache/oci"),
    }
}

/// A component to load.
pub struct Resolved {
    pub bytes: Vec<u8>,
    /// For messages: the file, or `name version (digest)`.
    pub origin: String,
    /// The registry entry, for registry references.
    pub entry: Option<Entry>,
    /// Id of the trusted key whose signature was verified, if any.
    pub signer: Option<String>,
    /// The registry it came from (for the lock file).
    pub registry: Option<String>,
    /// Who it is for policy and trust: where it was resolved from.
    pub identity: PluginIdentity,
}

/// The manifest embedded in `bytes` (the loader checks the rest).
fn embedded(bytes: &[u8], origin: &str) -> Result<crate::manifest::Manifest, String> {
    crate::manifest::inspect(bytes, origin)
        .map(|i| i.manifest)
        .map_err(|e| e.to_string())
}

pub struct Resolver<'a> {
    /// The configured registry (`name@…` references).
    pub registry: &'a Registry,
    /// How `oci://` references reach their registry.
    pub oci: &'a OciOptions,
    pub base_dir: &'a Path,
    pub lock: Option<LockFile>,
    pub mode: LockMode,
    /// Signature trust (the platform policy).
    pub policy: &'a dyn crate::caps::grant::Policy,
}

impl Resolver<'_> {
    /// Parse a `uses:` value; file paths are made absolute against the
    /// pipeline's directory.
    pub fn reference(&self, uses: &str) -> Result<Reference, String> {
        match uses.parse::<Reference>().map_err(|e| e.to_string())? {
            Reference::File(p) if p.is_relative() => Ok(Reference::File(self.base_dir.join(p))),
            r => Ok(r),
        }
    }

    /// Fetch the component for `uses`. `pinned` is a digest recorded earlier
    /// (resume): the same bytes are fetched again, or the call fails.
    pub fn resolve(&self, uses: &str, pinned: Option<&Digest>) -> Result<Resolved, String> {
        let reference = self.reference(uses)?;
        let owned;
        let mut registry = self.registry;
        let mut oci_location = None;
        let (name, entry) = match &reference {
            Reference::File(path) => {
                let bytes = std::fs::read(path)
                    .map_err(|e| format!("reading plugin {}: {e}", path.display()))?;
                if let Some(want) = pinned
                    && *want != Digest::of(&bytes)
                {
                    return Err(format!(
                        "{} changed since the run started (was {want}, now {}); start a new run",
                        path.display(),
                        Digest::of(&bytes)
                    ));
                }
                // A file has no registry signatures: refused if the policy
                // requires one.
                let source = PluginSource::File { path: path.clone() };
                let digest = Digest::of(&bytes);
                let signer = self.policy.signer(&source, &digest, &[])?;
                let origin = path.display().to_string();
                let m = embedded(&bytes, &origin)?;
                return Ok(Resolved {
                    identity: PluginIdentity {
                        source,
                        digest,
                        declared: (m.name, m.version),
                    },
                    bytes,
                    origin,
                    entry: None,
                    signer,
                    registry: None,
                });
            }
            Reference::Oci(url) => {
                let (location, name, version) =
                    capstan_registry::oci::split_reference(url).map_err(|e| e.to_string())?;
                // `host[:port]/prefix` (the identity adds the scheme).
                oci_location = Some(
                    location
                        .to_string()
                        .trim_start_matches("oci://")
                        .to_string(),
                );
                owned = Registry::Oci(Box::new(
                    OciRegistry::open_location(location, self.oci).map_err(|e| e.to_string())?,
                ));
                registry = &owned;
                let entry = registry.get(&name, &version).map_err(|e| e.to_string())?;
                let want = match (pinned, self.lock.as_ref().and_then(|l| l.get(uses))) {
                    (Some(d), _) => Some((d.clone(), "when the run started")),
                    (None, Some(l)) => Some((l.digest.clone(), "in capstan.lock")),
                    (None, None) if self.mode == LockMode::Require => {
                        return Err(format!(
                            "--locked: `{uses}` is not pinned by capstan.lock; run `capstan lock` first"
                        ));
                    }
                    (None, None) => None,
                };
                if let Some((d, when)) = want
                    && d != entry.digest
                {
                    return Err(format!(
                        "`{uses}` now points to {}, not {d} as {when}; the tag was moved \
                         (run `capstan lock` to accept the new content)",
                        entry.digest
                    ));
                }
                (name, entry)
            }
            Reference::Digest { name, digest } => (
                name.clone(),
                self.registry
                    .get_digest(name, digest)
                    .map_err(|e| e.to_string())?,
            ),
            Reference::Range { name, req } => {
                let locked = self.lock.as_ref().and_then(|l| l.get(uses));
                let entry = match (pinned, locked) {
                    (Some(d), _) => self.registry.get_digest(name, d),
                    (None, Some(l)) => {
                        if l.name != *name || !req.matches(&l.version) {
                            return Err(format!(
                                "capstan.lock pins `{uses}` to {} {}, which does not match the reference; \
                                 run `capstan lock`",
                                l.name, l.version
                            ));
                        }
                        self.registry.get_digest(name, &l.digest)
                    }
                    (None, None) if self.mode == LockMode::Require => {
                        return Err(format!(
                            "--locked: `{uses}` is not pinned by {}; run `capstan lock` first",
                            if self.lock.is_some() {
                                "capstan.lock"
                            } else {
                                "a capstan.lock (there is none)"
                            }
                        ));
                    }
                    (None, None) => self.registry.resolve(name, req),
                };
                (name.clone(), entry.map_err(|e| e.to_string())?)
            }
        };
        // `oci://` spelling of the configured registry: the same identity
        // as `name@version` (its rules apply, no other spelling escapes them).
        let configured = self.registry.location();
        let oci_location =
            oci_location.filter(|l| configured.trim_start_matches("oci://") != l.as_str());
        let source = match oci_location {
            Some(location) => PluginSource::Oci {
                location,
                name: name.clone(),
                version: entry.version.clone(),
            },
            None => PluginSource::Registry {
                name: name.clone(),
                version: entry.version.clone(),
            },
        };
        let signatures = registry.signatures(&entry).map_err(|e| e.to_string())?;
        let signer = self.policy.signer(&source, &entry.digest, &signatures)?;
        let bytes = registry.fetch(&entry).map_err(|e| e.to_string())?;
        let origin = format!("{name} {} ({})", entry.version, entry.digest);
        // The registry's name and tag are the identity; a component that
        // claims to be something else is refused, not believed.
        let m = embedded(&bytes, &origin)?;
        check_embedded(
            &m,
            &name,
            &entry.version,
            &entry.manifest,
            &format!("`{uses}`"),
        )?;
        Ok(Resolved {
            identity: PluginIdentity {
                source,
                digest: entry.digest.clone(),
                declared: (m.name, m.version),
            },
            bytes,
            origin,
            entry: Some(entry),
            signer,
            registry: Some(registry.location()),
        })
    }
}
