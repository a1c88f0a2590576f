//! Capstan's plugin registry: how pipelines name plugins, how a name and a
//! version range become one exact, digest-pinned component, and where
//! published components are stored.
//!
//! - [`Reference`]: `name@range`, `name@sha256:…`, `file://…/x.wasm`,
//!   `oci://host/path/name:version`.
//! - [`Registry`]: one client over both backends: [`LocalRegistry`], a
//!   content-addressed directory (the embedded default), and [`OciRegistry`],
//!   any OCI distribution registry.
//! - [`LockFile`]: `capstan.lock`, pinning each reference to a version and
//!   digest.
//!
//! The registry does not look inside components: the host inspects and
//! checks a component before publishing it and hands over its manifest as
//! JSON, which is stored with the version.
//!
//! ```
//! # let dir = tempfile::tempdir().unwrap();
//! use capstan_registry::{LocalRegistry, Reference};
//! let reg = LocalRegistry::open(dir.path()).unwrap();
//! let v: semver::Version = "1.2.0".parse().unwrap();
//! reg.publish("git-clone", &v, b"component bytes", serde_json::json!({})).unwrap();
//! let r: Reference = "git-clone@1".parse().unwrap();
//! let Reference::Range { name, req } = r else { unreachable!() };
//! assert_eq!(reg.resolve(&name, &req).unwrap().version, v);
//! ```

pub mod digest;
mod local;
mod lock;
pub mod oci;
mod reference;
mod registry;
pub mod sign;

pub use digest::Digest;
pub use local::{Entry, LocalRegistry};
pub use lock::{LockFile, Locked};
pub use oci::{ComponentWorld, OciOptions, OciRegistry};
pub use reference::Reference;
pub use registry::Registry;

/// Registry errors. Each names the plugin, version or file concerned.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("`{reference}`: {message}")]
    BadReference { reference: String, message: String },
    #[error("no plugin `{0}` in the registry (see `capstan plugin list`)")]
    NoSuchPlugin(String),
    #[error("plugin `{name}`: no version matches `{req}` (available: {available})")]
    NoMatchingVersion {
        name: String,
        req: String,
        available: String,
    },
    #[error("plugin `{name}`: no version {version}")]
    NoSuchVersion { name: String, version: String },
    #[error("plugin `{name}`: no version with digest {digest}")]
    NoSuchDigest { name: String, digest: String },
    #[error(
        "plugin `{name}` {version} is already published with digest {existing}; versions are immutable \
         (publish a new version)"
    )]
    AlreadyPublished {
        name: String,
        version: String,
        existing: String,
    },
    #[error(
        "registry blob {digest}: content does not match its digest (got {actual}); the store is corrupt"
    )]
    DigestMismatch { digest: String, actual: String },
    #[error("registry data {path}: {message}")]
    Corrupt { path: String, message: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("lock file {path}: {message}")]
    Lock { path: String, message: String },
    #[error("registry {registry}: {message}")]
    Oci { registry: String, message: String },
    #[error("{0}")]
    Unsupported(String),
    #[error(
        "{0} is not a Capstan registry (no plugins/ directory); check the path, or publish to it \
         to create one"
    )]
    NotARegistry(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.display().to_string(),
        source,
    }
}
