//! One client over both storage backends.

use std::path::Path;

use crate::oci::{ComponentWorld, OciOptions, OciRegistry};
use crate::sign::Signature;
use crate::{Digest, Entry, LocalRegistry, Result};

/// A plugin registry: a local directory or an OCI registry. Every method
/// behaves the same on both (resolution rules, immutability, digest checks).
#[derive(Debug)]
pub enum Registry {
    Local(LocalRegistry),
    Oci(Box<OciRegistry>),
}

impl Registry {
    /// `oci://host[:port][/path]` or a directory.
    pub fn open(location: &str, oci: &OciOptions) -> Result<Registry> {
        if location.starts_with("oci://") {
            Ok(Registry::Oci(Box::new(OciRegistry::open(location, oci)?)))
        } else {
            Ok(Registry::Local(LocalRegistry::open(Path::new(location))?))
        }
    }

    /// [`Registry::open`], but a directory must already be a registry.
    pub fn open_existing(location: &str, oci: &OciOptions) -> Result<Registry> {
        if location.starts_with("oci://") {
            Self::open(location, oci)
        } else {
            Ok(Registry::Local(LocalRegistry::open_existing(Path::new(
                location,
            ))?))
        }
    }

    /// Where it is, as the lock file records it.
    pub fn location(&self) -> String {
        match self {
            Registry::Local(r) => r.root().display().to_string(),
            Registry::Oci(r) => r.location().to_string(),
        }
    }

    pub fn publish(
        &self,
        name: &str,
        version: &semver::Version,
        bytes: &[u8],
        manifest: serde_json::Value,
        world: &ComponentWorld,
    ) -> Result<Entry> {
        match self {
            Registry::Local(r) => r.publish(name, version, bytes, manifest),
            Registry::Oci(r) => r.publish(name, version, bytes, manifest, world),
        }
    }

    pub fn list(&self) -> Result<Vec<String>> {
        match self {
            Registry::Local(r) => r.list(),
            Registry::Oci(r) => r.list(),
        }
    }

    /// All versions, oldest first, yanked ones included.
    pub fn versions(&self, name: &str) -> Result<Vec<Entry>> {
        match self {
            Registry::Local(r) => r.versions(name),
            Registry::Oci(r) => r.versions(name),
        }
    }

    /// The highest non-yanked version matching `req` (prereleases only when
    /// `req` names one).
    pub fn resolve(&self, name: &str, req: &semver::VersionReq) -> Result<Entry> {
        match self {
            Registry::Local(r) => r.resolve(name, req),
            Registry::Oci(r) => crate::local::highest_match(name, req, r.versions(name)?),
        }
    }

    /// One exact version, yanked or not.
    pub fn get(&self, name: &str, version: &semver::Version) -> Result<Entry> {
        match self {
            Registry::Local(r) => r.get(name, version),
            Registry::Oci(r) => r.get(name, version),
        }
    }

    /// The version of `name` whose component has `digest`, yanked or not.
    pub fn get_digest(&self, name: &str, digest: &Digest) -> Result<Entry> {
        match self {
            Registry::Local(r) => r.get_digest(name, digest),
            Registry::Oci(r) => r.get_digest(name, digest),
        }
    }

    /// The component bytes, checked against the digest.
    pub fn fetch(&self, entry: &Entry) -> Result<Vec<u8>> {
        match self {
            Registry::Local(r) => r.fetch(&entry.digest),
            Registry::Oci(r) => r.fetch(&entry.name, &entry.digest),
        }
    }

    pub fn signatures(&self, entry: &Entry) -> Result<Vec<Signature>> {
        match self {
            Registry::Local(r) => r.signatures(&entry.digest),
            Registry::Oci(r) => r.signatures(entry),
        }
    }

    pub fn add_signature(&self, entry: &Entry, sig: Signature) -> Result<()> {
        match self {
            Registry::Local(r) => r.add_signature(&entry.digest, sig),
            Registry::Oci(r) => r.add_signature(entry, sig),
        }
    }

    pub fn set_yanked(&self, name: &str, version: &semver::Version, yanked: bool) -> Result<Entry> {
        match self {
            Registry::Local(r) => r.set_yanked(name, version, yanked),
            Registry::Oci(r) => r.set_yanked(name, version, yanked),
        }
    }

    pub fn set_deprecated(
        &self,
        name: &str,
        version: &semver::Version,
        message: Option<String>,
    ) -> Result<Entry> {
        match self {
            Registry::Local(r) => r.set_deprecated(name, version, message),
            Registry::Oci(r) => r.set_deprecated(name, version, message),
        }
    }
}
