//! The OCI distribution backend: plugins stored in any OCI registry (Harbor,
//! Zot, GHCR, Debian's `docker-registry`) through the `oci-client` crate.
//!
//! Layout, for a registry `oci://HOST[:PORT][/PREFIX]` and a plugin NAME:
//!
//! ```text
//! repository PREFIX/NAME
//!   tag <version>            CNCF wasm artifact: image manifest
//!                            (application/vnd.oci.image.manifest.v1+json), config
//!                            application/vnd.wasm.config.v0+json (architecture wasm,
//!                            os wasip2, the component's imports/exports), one layer
//!                            application/wasm (the component). The Capstan plugin
//!                            manifest (capstan.toml as JSON) is the manifest
//!                            annotation `dev.capstan.plugin.manifest`.
//!   tag sha256-<hex>.sig     signatures of the version whose image manifest has
//!                            digest sha256:<hex> (the cosign tag convention, so they
//!                            travel with the artifact when a repository is copied)
//!   tag capstan-status       yanked versions and deprecation messages
//! ```
//!
//! Tags are semver versions (`+` build metadata is written `_`, tags cannot
//! hold `+`); other tags are ignored when listing versions. The component's
//! digest (the layer digest) is what Capstan pins, signs and caches; every
//! pulled blob is checked against it and cached by digest on local disk, so a
//! pinned version is loaded without the network.
//!
//! `oci-client` is async; this backend keeps the registry API synchronous by
//! driving it on a process-wide Tokio runtime (from a scoped thread when
//! called from inside another runtime).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::manifest::{OciDescriptor, OciImageManifest};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference as OciRef};
use serde::{Deserialize, Serialize};

use crate::local::LocalRegistry;
use crate::sign::Signature;
use crate::{Digest, Entry, Error, Result};

pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const WASM_CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/wasm";
pub const STATUS_MEDIA_TYPE: &str = "application/vnd.capstan.status.v1+json";
pub const SIGNATURES_MEDIA_TYPE: &str = "application/vnd.capstan.signatures.v1+json";
/// Manifest annotation holding the Capstan plugin manifest as JSON.
pub const MANIFEST_ANNOTATION: &str = "dev.capstan.plugin.manifest";
const CREATED_ANNOTATION: &str = "org.opencontainers.image.created";
const STATUS_TAG: &str = "capstan-status";

/// How to reach an OCI registry.
#[derive(Debug, Clone)]
pub struct OciOptions {
    /// Connect and read timeout of each request.
    pub timeout: Duration,
    /// Where pulled components are cached by digest.
    pub cache_dir: std::path::PathBuf,
}

/// Parsed `oci://HOST[:PORT][/PREFIX]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciLocation {
    pub host: String,
    pub prefix: String,
}

impl OciLocation {
    pub fn parse(url: &str) -> Result<OciLocation> {
        let bad = |message: &str| Error::BadReference {
            reference: url.to_string(),
            message: message.to_string(),
        };
        let rest = url
            .strip_prefix("oci://")
            .ok_or_else(|| bad("an OCI registry is written oci://host[:port][/path]"))?;
        let rest = rest.trim_end_matches('/');
        let (host, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if host.is_empty()
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        {
            return Err(bad("expected oci://host[:port][/path]"));
        }
        if !prefix.split('/').all(|seg| {
            prefix.is_empty()
                || (!seg.is_empty()
                    && seg.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b)
                    }))
        }) {
            return Err(bad(
                "repository paths use lowercase letters, digits, `.`, `_`, `-` and `/`",
            ));
        }
        Ok(OciLocation {
            host: host.to_string(),
            prefix: prefix.to_string(),
        })
    }

    fn repository(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}/{name}", self.prefix)
        }
    }

    /// Loopback registries speak plain HTTP (as Docker treats them); others
    /// HTTPS unless listed in `CAPSTAN_INSECURE_REGISTRIES` (comma-separated
    /// `host:port`).
    fn plain_http(&self) -> bool {
        let hostname = self
            .host
            .rsplit_once(':')
            .filter(|(h, p)| !h.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            .map_or(self.host.as_str(), |(h, _)| h);
        matches!(hostname, "localhost" | "127.0.0.1" | "[::1]")
            || std::env::var("CAPSTAN_INSECURE_REGISTRIES").is_ok_and(|v| {
                v.split(',')
                    .any(|h| h.trim() == self.host || h.trim() == hostname)
            })
    }
}

impl std::fmt::Display for OciLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.prefix.is_empty() {
            write!(f, "oci://{}", self.host)
        } else {
            write!(f, "oci://{}/{}", self.host, self.prefix)
        }
    }
}

/// Split `oci://HOST[:PORT]/PATH/NAME:VERSION` into the registry, the plugin
/// name and the version.
pub fn split_reference(reference: &str) -> Result<(OciLocation, String, semver::Version)> {
    let bad = |message: String| Error::BadReference {
        reference: reference.to_string(),
        message,
    };
    let (base, last) = reference
        .rsplit_once('/')
        .filter(|(b, _)| b.len() > "oci:/".len())
        .ok_or_else(|| bad("expected oci://host[:port]/path/name:version".into()))?;
    let (name, tag) = last
        .rsplit_once(':')
        .ok_or_else(|| bad("expected oci://host[:port]/path/name:version".into()))?;
    let version = tag_version(tag).ok_or_else(|| {
        bad(format!(
            "tag `{tag}` is not a semver version; Capstan plugin tags are versions (e.g. 1.2.0)"
        ))
    })?;
    Ok((OciLocation::parse(base)?, name.to_string(), version))
}

fn version_tag(v: &semver::Version) -> String {
    v.to_string().replace('+', "_")
}

fn tag_version(tag: &str) -> Option<semver::Version> {
    semver::Version::parse(&tag.replace('_', "+")).ok()
}

fn signature_tag(manifest_digest: &str) -> String {
    format!("{}.sig", manifest_digest.replace(':', "-"))
}

/// An OCI image manifest, as served.
fn parse_manifest(bytes: &[u8]) -> std::result::Result<OciImageManifest, String> {
    let m: OciImageManifest =
        serde_json::from_slice(bytes).map_err(|e| format!("image manifest: {e}"))?;
    if m.schema_version != 2 {
        return Err(format!(
            "image manifest: schemaVersion {}, expected 2",
            m.schema_version
        ));
    }
    Ok(m)
}

/// The `capstan-status` document.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Status {
    #[serde(default)]
    yanked: Vec<semver::Version>,
    #[serde(default)]
    deprecated: BTreeMap<semver::Version, String>,
}

/// What was last resolved for a version (`STATE/cache/oci/entries/…`).
#[derive(Debug, Serialize, Deserialize)]
struct Remembered {
    entry: Entry,
    signatures: Vec<Signature>,
}

/// What the host knows about a component it publishes, for the wasm config.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ComponentWorld {
    pub imports: Vec<String>,
    pub exports: Vec<String>,
}

/// A registry behind the OCI distribution API.
pub struct OciRegistry {
    location: OciLocation,
    client: Client,
    auth: RegistryAuth,
    timeout: Duration,
    cache: LocalRegistry,
}

impl std::fmt::Debug for OciRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OciRegistry({})", self.location)
    }
}

/// Credentials for `host` from the docker `config.json` (`$DOCKER_CONFIG` or
/// `~/.docker`), including credential helpers; anonymous if there is no
/// config file or it has no entry for the host.
fn credentials(host: &str) -> Result<RegistryAuth> {
    use docker_credential::{CredentialRetrievalError as E, DockerCredential};
    let Some(dir) = std::env::var_os("DOCKER_CONFIG")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".docker")))
    else {
        return Ok(RegistryAuth::Anonymous);
    };
    let path = dir.join("config.json");
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(RegistryAuth::Anonymous),
        Err(e) => return Err(crate::io(&path)(e)),
    };
    match docker_credential::get_credential_from_reader(std::io::BufReader::new(file), host) {
        Ok(DockerCredential::UsernamePassword(user, pass)) => Ok(RegistryAuth::Basic(user, pass)),
        Ok(DockerCredential::IdentityToken(token)) => Ok(RegistryAuth::Bearer(token)),
        Err(E::NoCredentialConfigured) => Ok(RegistryAuth::Anonymous),
        Err(e) => Err(Error::Corrupt {
            path: path.display().to_string(),
            message: format!("credentials for {host}: {e:?}"),
        }),
    }
}

/// The process-wide runtime that drives registry I/O. It lives as long as
/// the process: a runtime may not be dropped inside another one, and
/// registries are opened and dropped from async code.
fn io_runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("capstan-registry-io")
            .enable_all()
            .build()
            .expect("starting the registry I/O runtime")
    })
}

impl OciRegistry {
    pub fn open(url: &str, options: &OciOptions) -> Result<OciRegistry> {
        Self::open_location(OciLocation::parse(url)?, options)
    }

    pub fn open_location(location: OciLocation, options: &OciOptions) -> Result<OciRegistry> {
        // reqwest is built without a default crypto provider (ring, not
        // aws-lc, to keep the build light); install it once per process.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = ClientConfig {
            protocol: if location.plain_http() {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            read_timeout: Some(options.timeout),
            connect_timeout: Some(options.timeout.min(Duration::from_secs(10))),
            user_agent: concat!("capstan/", env!("CARGO_PKG_VERSION")),
            ..Default::default()
        };
        Ok(OciRegistry {
            auth: credentials(&location.host)?,
            client: Client::new(config),
            timeout: options.timeout,
            cache: LocalRegistry::open(&options.cache_dir)?,
            location,
        })
    }

    pub fn location(&self) -> &OciLocation {
        &self.location
    }

    /// Run one registry operation to completion, bounded by the timeout
    /// (a little over it: each request is already bounded by it).
    fn block<T: Send>(
        &self,
        what: &str,
        fut: impl std::future::Future<Output = Result<T, oci_client::errors::OciDistributionError>>
        + Send,
    ) -> Result<T> {
        let limit = self.timeout * 3;
        let run = || io_runtime().block_on(async { tokio::time::timeout(limit, fut).await });
        let out = if tokio::runtime::Handle::try_current().is_ok() {
            std::thread::scope(|s| s.spawn(run).join().expect("registry I/O thread panicked"))
        } else {
            run()
        };
        match out {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.error(what, e)),
            Err(_) => Err(Error::Oci {
                registry: self.location.to_string(),
                message: format!("{what}: timed out after {}s", limit.as_secs()),
            }),
        }
    }

    fn error(&self, what: &str, e: oci_client::errors::OciDistributionError) -> Error {
        use std::error::Error as _;
        let mut message = format!("{what}: {e}");
        let mut source = e.source();
        while let Some(s) = source {
            message.push_str(&format!(": {s}"));
            source = s.source();
        }
        if matches!(self.auth, RegistryAuth::Anonymous)
            && (message.contains("Not authorized") || message.contains("401"))
        {
            message.push_str(&format!(
                " (no credentials for {} in the docker config.json: `docker login {}`, or point \
                 DOCKER_CONFIG at a directory whose config.json has them)",
                self.location.host, self.location.host
            ));
        }
        Error::Oci {
            registry: self.location.to_string(),
            message,
        }
    }

    fn tag_ref(&self, name: &str, tag: &str) -> OciRef {
        OciRef::with_tag(
            self.location.host.clone(),
            self.location.repository(name),
            tag.to_string(),
        )
    }

    /// The raw image manifest at `tag`, with its digest; `None` if the tag
    /// does not exist.
    fn manifest_at(&self, name: &str, tag: &str) -> Result<Option<(OciImageManifest, String)>> {
        let reference = self.tag_ref(name, tag);
        let out = self.block(&format!("{}:{tag}: pulling manifest", name), async {
            match self
                .client
                .pull_manifest_raw(&reference, &self.auth, &[MANIFEST_MEDIA_TYPE])
                .await
            {
                Ok(v) => Ok(Some(v)),
                Err(oci_client::errors::OciDistributionError::ImageManifestNotFoundError(_)) => {
                    Ok(None)
                }
                Err(oci_client::errors::OciDistributionError::RegistryError {
                    envelope, ..
                }) if envelope.errors.iter().any(|e| {
                    matches!(
                        e.code,
                        oci_client::errors::OciErrorCode::ManifestUnknown
                            | oci_client::errors::OciErrorCode::NameUnknown
                    )
                }) =>
                {
                    Ok(None)
                }
                Err(e) => Err(e),
            }
        })?;
        let Some((bytes, digest)) = out else {
            return Ok(None);
        };
        let actual = Digest::of(&bytes).to_string();
        if actual != digest {
            return Err(Error::DigestMismatch { digest, actual });
        }
        let manifest = parse_manifest(&bytes).map_err(|message| Error::Corrupt {
            path: format!("{}/{}:{tag}", self.location, self.location.repository(name)),
            message,
        })?;
        Ok(Some((manifest, digest)))
    }

    fn entry_from(
        &self,
        name: &str,
        version: &semver::Version,
        manifest: &OciImageManifest,
        manifest_digest: String,
        status: &Status,
    ) -> Result<Entry> {
        let corrupt = |message: String| Error::Corrupt {
            path: format!(
                "{}/{}:{}",
                self.location,
                self.location.repository(name),
                version_tag(version)
            ),
            message,
        };
        if manifest.config.media_type != WASM_CONFIG_MEDIA_TYPE {
            return Err(corrupt(format!(
                "config media type is `{}`, not {WASM_CONFIG_MEDIA_TYPE}: not a wasm component artifact",
                manifest.config.media_type
            )));
        }
        let [layer] = manifest.layers.as_slice() else {
            return Err(corrupt(format!(
                "expected exactly one {WASM_LAYER_MEDIA_TYPE} layer, found {}",
                manifest.layers.len()
            )));
        };
        if layer.media_type != WASM_LAYER_MEDIA_TYPE {
            return Err(corrupt(format!(
                "layer media type is `{}`, not {WASM_LAYER_MEDIA_TYPE}",
                layer.media_type
            )));
        }
        let digest = Digest::try_from(layer.digest.clone()).map_err(corrupt)?;
        let annotations = manifest.annotations.clone().unwrap_or_default();
        let plugin_manifest = match annotations.get(MANIFEST_ANNOTATION) {
            Some(text) => serde_json::from_str(text)
                .map_err(|e| corrupt(format!("annotation {MANIFEST_ANNOTATION}: {e}")))?,
            None => serde_json::json!({}),
        };
        Ok(Entry {
            name: name.to_string(),
            version: version.clone(),
            digest,
            size: u64::try_from(layer.size).unwrap_or(0),
            published_at: annotations
                .get(CREATED_ANNOTATION)
                .cloned()
                .unwrap_or_default(),
            yanked: status.yanked.contains(version),
            deprecated: status.deprecated.get(version).cloned(),
            manifest: plugin_manifest,
            artifact: Some(manifest_digest),
        })
    }

    /// A small JSON document stored as the config of a tagged artifact.
    fn get_doc<T: serde::de::DeserializeOwned + Default>(
        &self,
        name: &str,
        tag: &str,
        media_type: &str,
    ) -> Result<T> {
        let Some((manifest, _)) = self.manifest_at(name, tag)? else {
            return Ok(T::default());
        };
        let where_ = format!("{}/{}:{tag}", self.location, self.location.repository(name));
        if manifest.config.media_type != media_type {
            return Err(Error::Corrupt {
                path: where_,
                message: format!(
                    "config media type is `{}`, expected {media_type}",
                    manifest.config.media_type
                ),
            });
        }
        let bytes = self.pull_blob(name, &manifest.config)?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
            path: where_,
            message: e.to_string(),
        })
    }

    fn put_doc(&self, name: &str, tag: &str, media_type: &str, doc: &impl Serialize) -> Result<()> {
        let data = serde_json::to_vec(doc).expect("serializes");
        let config = OciDescriptor {
            media_type: media_type.to_string(),
            digest: Digest::of(&data).to_string(),
            size: data.len() as i64,
            ..Default::default()
        };
        let manifest = OciImageManifest {
            schema_version: 2,
            media_type: Some(MANIFEST_MEDIA_TYPE.to_string()),
            config,
            layers: vec![],
            ..Default::default()
        };
        self.push(name, tag, &manifest, &[&data])?;
        Ok(())
    }

    /// Upload blobs (missing ones only) then the manifest; returns the
    /// manifest digest.
    fn push(
        &self,
        name: &str,
        tag: &str,
        manifest: &OciImageManifest,
        blobs: &[&[u8]],
    ) -> Result<String> {
        let reference = self.tag_ref(name, tag);
        let body = serde_json::to_vec(manifest).expect("manifest serializes");
        let digest = Digest::of(&body).to_string();
        self.block(&format!("{name}:{tag}: pushing"), async {
            self.client
                .store_auth_if_needed(reference.resolve_registry(), &self.auth)
                .await;
            for blob in blobs {
                let d = Digest::of(blob).to_string();
                if !self.client.blob_exists(&reference, &d).await? {
                    self.client.push_blob(&reference, blob.to_vec(), &d).await?;
                }
            }
            self.client
                .push_manifest_raw(&reference, body, MANIFEST_MEDIA_TYPE.parse().unwrap())
                .await
        })?;
        Ok(digest)
    }

    fn pull_blob(&self, name: &str, descriptor: &OciDescriptor) -> Result<Vec<u8>> {
        let reference = OciRef::with_digest(
            self.location.host.clone(),
            self.location.repository(name),
            descriptor.digest.clone(),
        );
        let mut out = Vec::with_capacity(usize::try_from(descriptor.size).unwrap_or(0));
        self.block(
            &format!("{name}: pulling blob {}", descriptor.digest),
            async {
                self.client
                    .store_auth_if_needed(reference.resolve_registry(), &self.auth)
                    .await;
                self.client
                    .pull_blob(&reference, descriptor, &mut out)
                    .await
            },
        )?;
        let actual = Digest::of(&out).to_string();
        if actual != descriptor.digest {
            return Err(Error::DigestMismatch {
                digest: descriptor.digest.clone(),
                actual,
            });
        }
        Ok(out)
    }

    fn status(&self, name: &str) -> Result<Status> {
        self.get_doc(name, STATUS_TAG, STATUS_MEDIA_TYPE)
    }

    /// Publish a component. Versions are immutable: the same bytes again
    /// is a no-op, different bytes an error. (The distribution API has no
    /// conditional write, so two publishers racing on one version is not
    /// detected; the tag check runs just before the push.)
    pub fn publish(
        &self,
        name: &str,
        version: &semver::Version,
        bytes: &[u8],
        manifest: serde_json::Value,
        world: &ComponentWorld,
    ) -> Result<Entry> {
        let tag = version_tag(version);
        let digest = Digest::of(bytes);
        let status = self.status(name)?;
        if let Some((m, mdigest)) = self.manifest_at(name, &tag)? {
            let existing = self.entry_from(name, version, &m, mdigest, &status)?;
            if existing.digest == digest {
                return Ok(existing);
            }
            return Err(Error::AlreadyPublished {
                name: name.to_string(),
                version: version.to_string(),
                existing: existing.digest.to_string(),
            });
        }
        let created = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        let config = serde_json::json!({
            "created": created,
            "architecture": "wasm",
            "os": "wasip2",
            "layerDigests": [digest.to_string()],
            "component": { "imports": world.imports, "exports": world.exports },
        });
        let config = serde_json::to_vec(&config).expect("serializes");
        let annotations = BTreeMap::from([
            (CREATED_ANNOTATION.to_string(), created),
            (
                "org.opencontainers.image.title".to_string(),
                name.to_string(),
            ),
            (
                "org.opencontainers.image.version".to_string(),
                version.to_string(),
            ),
            (MANIFEST_ANNOTATION.to_string(), manifest.to_string()),
        ]);
        let image = OciImageManifest {
            schema_version: 2,
            media_type: Some(MANIFEST_MEDIA_TYPE.to_string()),
            config: OciDescriptor {
                media_type: WASM_CONFIG_MEDIA_TYPE.to_string(),
                digest: Digest::of(&config).to_string(),
                size: config.len() as i64,
                ..Default::default()
            },
            layers: vec![OciDescriptor {
                media_type: WASM_LAYER_MEDIA_TYPE.to_string(),
                digest: digest.to_string(),
                size: bytes.len() as i64,
                ..Default::default()
            }],
            annotations: Some(annotations),
            ..Default::default()
        };
        let mdigest = self.push(name, &tag, &image, &[bytes, &config])?;
        self.cache.put_blob(bytes)?;
        self.entry_from(name, version, &image, mdigest, &status)
    }

    /// Copy one version's artifact exactly (same manifest bytes, so the same
    /// manifest digest and signature tag) from another OCI registry.
    pub fn copy_from(&self, from: &OciRegistry, entry: &Entry) -> Result<()> {
        let tag = version_tag(&entry.version);
        let (manifest, _) =
            from.manifest_at(&entry.name, &tag)?
                .ok_or_else(|| Error::NoSuchVersion {
                    name: entry.name.clone(),
                    version: entry.version.to_string(),
                })?;
        let config = from.pull_blob(&entry.name, &manifest.config)?;
        let layer = from.fetch(&entry.name, &entry.digest)?;
        self.push(&entry.name, &tag, &manifest, &[&layer, &config])?;
        Ok(())
    }

    /// Plugin names under this registry's path (the catalog API; registries
    /// that do not offer it, such as GHCR, cannot list).
    pub fn list(&self) -> Result<Vec<String>> {
        let reference = self.tag_ref("x", "latest");
        let catalog = self.block("listing repositories (catalog)", async {
            self.client
                .catalog(&reference, &self.auth, None, None)
                .await
        })?;
        let prefix = if self.location.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.location.prefix)
        };
        let mut names: Vec<String> = catalog
            .repositories
            .iter()
            .filter_map(|r| r.strip_prefix(&prefix))
            .filter(|n| !n.contains('/'))
            .map(str::to_string)
            .collect();
        names.sort();
        Ok(names)
    }

    /// All versions (semver tags) of a plugin, oldest first.
    pub fn versions(&self, name: &str) -> Result<Vec<Entry>> {
        let reference = self.tag_ref(name, "latest");
        let tags = self.block(&format!("{name}: listing tags"), async {
            match self
                .client
                .list_tags(&reference, &self.auth, None, None)
                .await
            {
                Ok(t) => Ok(Some(t.tags)),
                Err(oci_client::errors::OciDistributionError::RegistryError {
                    envelope, ..
                }) if envelope
                    .errors
                    .iter()
                    .any(|e| e.code == oci_client::errors::OciErrorCode::NameUnknown) =>
                {
                    Ok(None)
                }
                Err(e) => Err(e),
            }
        })?;
        let Some(tags) = tags else {
            return Err(Error::NoSuchPlugin(name.to_string()));
        };
        let mut versions: Vec<semver::Version> =
            tags.iter().filter_map(|t| tag_version(t)).collect();
        if versions.is_empty() {
            return Err(Error::NoSuchPlugin(name.to_string()));
        }
        versions.sort();
        let status = self.status(name)?;
        versions
            .iter()
            .map(|v| {
                let (m, d) = self.manifest_at(name, &version_tag(v))?.ok_or_else(|| {
                    Error::NoSuchVersion {
                        name: name.to_string(),
                        version: v.to_string(),
                    }
                })?;
                self.entry_from(name, v, &m, d, &status)
            })
            .collect()
    }

    /// One exact version. If the registry cannot be reached, the metadata
    /// remembered when this version was last resolved here is used (with a
    /// warning), so locked and resumed runs survive a registry outage.
    pub fn get(&self, name: &str, version: &semver::Version) -> Result<Entry> {
        let online = (|| {
            let (m, d) = self
                .manifest_at(name, &version_tag(version))?
                .ok_or_else(|| Error::NoSuchVersion {
                    name: name.to_string(),
                    version: version.to_string(),
                })?;
            let status = self.status(name)?;
            self.entry_from(name, version, &m, d, &status)
        })();
        self.offline(online, || self.recall(name, version).map(|r| r.entry))
    }

    /// The version of `name` whose component has `digest` (falls back to
    /// remembered metadata like [`OciRegistry::get`]).
    pub fn get_digest(&self, name: &str, digest: &Digest) -> Result<Entry> {
        let online = self.versions(name).and_then(|versions| {
            versions
                .into_iter()
                .find(|e| &e.digest == digest)
                .ok_or_else(|| Error::NoSuchDigest {
                    name: name.to_string(),
                    digest: digest.to_string(),
                })
        });
        self.offline(online, || {
            let dir = self.remembered_dir(name);
            std::fs::read_dir(dir)
                .ok()?
                .filter_map(|e| e.ok())
                .filter_map(|e| std::fs::read(e.path()).ok())
                .filter_map(|b| serde_json::from_slice::<Remembered>(&b).ok())
                .map(|r| r.entry)
                .find(|e| &e.digest == digest)
        })
    }

    /// On a network failure, use `fallback` if it has something.
    fn offline<T>(&self, result: Result<T>, fallback: impl FnOnce() -> Option<T>) -> Result<T> {
        match result {
            Err(e @ Error::Oci { .. }) => match fallback() {
                Some(v) => {
                    tracing::warn!(
                        "{e}; using the metadata remembered from the last successful resolution"
                    );
                    Ok(v)
                }
                None => Err(e),
            },
            other => other,
        }
    }

    fn remembered_dir(&self, name: &str) -> std::path::PathBuf {
        self.cache
            .root()
            .join("entries")
            .join(self.location.host.replace([':', '[', ']'], "_"))
            .join(self.location.repository(name))
    }

    fn recall(&self, name: &str, version: &semver::Version) -> Option<Remembered> {
        let path = self
            .remembered_dir(name)
            .join(format!("{}.json", version_tag(version)));
        let r: Remembered = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
        (r.entry.name == name && &r.entry.version == version).then_some(r)
    }

    fn remember(&self, entry: &Entry, signatures: &[Signature]) -> Result<()> {
        let dir = self.remembered_dir(&entry.name);
        std::fs::create_dir_all(&dir).map_err(crate::io(&dir))?;
        let record = Remembered {
            entry: entry.clone(),
            signatures: signatures.to_vec(),
        };
        self.cache.write_atomic(
            &dir.join(format!("{}.json", version_tag(&entry.version))),
            &serde_json::to_vec_pretty(&record).expect("serializes"),
        )
    }

    /// The component bytes: from the local cache when present (checked),
    /// else pulled, checked and cached.
    pub fn fetch(&self, name: &str, digest: &Digest) -> Result<Vec<u8>> {
        if let Some(bytes) = self.cache.cached_blob(digest)? {
            return Ok(bytes);
        }
        let descriptor = OciDescriptor {
            media_type: WASM_LAYER_MEDIA_TYPE.to_string(),
            digest: digest.to_string(),
            ..Default::default()
        };
        let bytes = self.pull_blob(name, &descriptor)?;
        self.cache.put_blob(&bytes)?;
        Ok(bytes)
    }

    /// The version's signatures. A successful read is remembered with the
    /// entry (see [`OciRegistry::get`]).
    pub fn signatures(&self, entry: &Entry) -> Result<Vec<Signature>> {
        let online = match &entry.artifact {
            Some(d) => self.get_doc(&entry.name, &signature_tag(d), SIGNATURES_MEDIA_TYPE),
            None => Ok(Vec::new()),
        };
        if let Ok(sigs) = &online {
            self.remember(entry, sigs)?;
        }
        self.offline(online, || {
            self.recall(&entry.name, &entry.version)
                .filter(|r| r.entry.digest == entry.digest)
                .map(|r| r.signatures)
        })
    }

    /// Add a signature (idempotent per key) under the version's
    /// `sha256-<manifest>.sig` tag.
    pub fn add_signature(&self, entry: &Entry, sig: Signature) -> Result<()> {
        let manifest_digest = entry.artifact.as_deref().ok_or_else(|| Error::Corrupt {
            path: format!("{} {}", entry.name, entry.version),
            message: "no OCI manifest digest recorded".into(),
        })?;
        let tag = signature_tag(manifest_digest);
        let mut sigs: Vec<Signature> = self.get_doc(&entry.name, &tag, SIGNATURES_MEDIA_TYPE)?;
        sigs.retain(|s| s.key_id != sig.key_id);
        sigs.push(sig);
        self.put_doc(&entry.name, &tag, SIGNATURES_MEDIA_TYPE, &sigs)
    }

    fn modify_status(
        &self,
        name: &str,
        version: &semver::Version,
        f: impl FnOnce(&mut Status),
    ) -> Result<Entry> {
        self.get(name, version)?;
        let mut status = self.status(name)?;
        f(&mut status);
        status.yanked.sort();
        status.yanked.dedup();
        self.put_doc(name, STATUS_TAG, STATUS_MEDIA_TYPE, &status)?;
        self.get(name, version)
    }

    pub fn set_yanked(&self, name: &str, version: &semver::Version, yanked: bool) -> Result<Entry> {
        self.modify_status(name, version, |s| {
            s.yanked.retain(|v| v != version);
            if yanked {
                s.yanked.push(version.clone());
            }
        })
    }

    pub fn set_deprecated(
        &self,
        name: &str,
        version: &semver::Version,
        message: Option<String>,
    ) -> Result<Entry> {
        self.modify_status(name, version, |s| match message {
            Some(m) => {
                s.deprecated.insert(version.clone(), m);
            }
            None => {
                s.deprecated.remove(version);
            }
        })
    }

    /// The cache directory in use.
    pub fn cache_dir(&self) -> &Path {
        self.cache.root()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_and_references_parse() {
        let l = OciLocation::parse("oci://127.0.0.1:5000/capstan/plugins").unwrap();
        assert_eq!(l.host, "127.0.0.1:5000");
        assert_eq!(l.repository("git-clone"), "capstan/plugins/git-clone");
        assert!(l.plain_http());
        assert!(
            !OciLocation::parse("oci://ghcr.io/acme")
                .unwrap()
                .plain_http()
        );
        assert!(OciLocation::parse("oci://").is_err());
        assert!(OciLocation::parse("oci://h/Upper").is_err());
        let (loc, name, v) = split_reference("oci://localhost:5000/p/echo:1.2.0_build.5").unwrap();
        assert_eq!(
            (loc.to_string(), name.as_str(), v.to_string()),
            (
                "oci://localhost:5000/p".to_string(),
                "echo",
                "1.2.0+build.5".to_string()
            )
        );
        let e = split_reference("oci://localhost:5000/p/echo:latest")
            .unwrap_err()
            .to_string();
        assert!(e.contains("tag `latest` is not a semver version"), "{e}");
        assert_eq!(signature_tag("sha256:ab"), "sha256-ab.sig");
    }

    #[test]
    fn truncated_or_foreign_manifests_are_errors() {
        let good = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.wasm.config.v0+json","digest":"sha256:aa","size":2},"layers":[]}"#;
        assert!(parse_manifest(good).is_ok());
        let e = parse_manifest(&good[..good.len() / 2]).unwrap_err();
        assert!(e.contains("image manifest: EOF"), "{e}");
        let e = parse_manifest(br#"{"schemaVersion":1,"config":{"mediaType":"x","digest":"sha256:aa","size":2},"layers":[]}"#)
            .unwrap_err();
        assert!(e.contains("schemaVersion 1"), "{e}");
    }
}
