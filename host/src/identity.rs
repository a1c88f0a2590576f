//! Who a plugin is, for policy and trust: where it was resolved from, never
//! what the component says about itself.
//!
//! A component embeds a manifest with a `name`, and anyone can write any
//! name there. So the platform policy (allow/deny, ceilings) and signature
//! trust key off a [`PluginIdentity`] built by the resolver from the
//! reference it followed: the configured registry and the name/version it
//! listed, another OCI registry's location and repository, or a file path;
//! plus the verified digest and the trusted signer. A component whose
//! embedded name/version disagrees with the registry's name/tag, or with
//! the manifest the registry stores beside it, is refused
//! ([`check_embedded`]) at publish, mirror and resolve.

use std::fmt;
use std::path::PathBuf;

use crate::digest::Digest;
use crate::manifest::Manifest;

/// Where a plugin was resolved from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginSource {
    /// The configured registry (`name@range`, `name@sha256:…`): its name is
    /// the registry's.
    Registry {
        name: String,
        version: semver::Version,
    },
    /// An `oci://` reference to a registry other than the configured one.
    Oci {
        /// `host[:port]/prefix` of the repository.
        location: String,
        name: String,
        version: semver::Version,
    },
    /// A component file (`./x.wasm`, `file://`): no registry vouches for
    /// its name.
    File { path: PathBuf },
}

impl PluginSource {
    /// See [`PluginIdentity::policy_name`].
    pub fn policy_name(&self) -> Option<String> {
        match self {
            PluginSource::Registry { name, .. } => Some(name.clone()),
            PluginSource::Oci { location, name, .. } => Some(format!("oci://{location}/{name}")),
            PluginSource::File { .. } => None,
        }
    }
}

/// A plugin's identity for policy and trust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginIdentity {
    pub source: PluginSource,
    /// The verified digest of the component bytes.
    pub digest: Digest,
    /// The name and version the component's manifest declares (equal to
    /// the registry's for registry sources; unverified for files).
    pub declared: (String, semver::Version),
}

impl PluginIdentity {
    /// The name privileges (allow rules, ceilings, trusted keys) match: the
    /// plugin name in the configured registry, `oci://location/name` for
    /// any other registry, and nothing for a file.
    pub fn policy_name(&self) -> Option<String> {
        self.source.policy_name()
    }

    /// Every name it goes by, for deny rules (a denial matches any of
    /// them, so a renamed copy is still denied): the policy name, the bare
    /// repository name and the declared name.
    pub fn all_names(&self) -> Vec<String> {
        let mut out: Vec<String> = self.policy_name().into_iter().collect();
        if let PluginSource::Oci { name, .. } = &self.source {
            out.push(name.clone());
        }
        out.push(self.declared.0.clone());
        out.dedup();
        out
    }

    /// The version privileges are matched against (registry tag/version;
    /// for a file, the declared one).
    pub fn version(&self) -> &semver::Version {
        match &self.source {
            PluginSource::Registry { version, .. } | PluginSource::Oci { version, .. } => version,
            PluginSource::File { .. } => &self.declared.1,
        }
    }

    pub fn is_file(&self) -> bool {
        matches!(self.source, PluginSource::File { .. })
    }
}

impl fmt::Display for PluginIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            PluginSource::Registry { name, version } => write!(f, "`{name}` {version}"),
            PluginSource::Oci {
                location,
                name,
                version,
            } => write!(f, "`oci://{location}/{name}` {version}"),
            PluginSource::File { path } => write!(
                f,
                "component file {} (declares `{}` {})",
                path.display(),
                self.declared.0,
                self.declared.1
            ),
        }
    }
}

/// Refuse a component whose embedded manifest disagrees with the name and
/// version a registry lists it under, or with the manifest the registry
/// stores beside it (`stored`, e.g. an OCI annotation; `null` when none).
/// `what` names the registry entry in the error.
pub fn check_embedded(
    embedded: &Manifest,
    name: &str,
    version: &semver::Version,
    stored: &serde_json::Value,
    what: &str,
) -> Result<(), String> {
    if embedded.name != name || embedded.version != *version {
        return Err(format!(
            "{what}: the component declares itself `{}` {} but is listed as `{name}` {version}; \
             a component must be published under its own name and version (refused)",
            embedded.name, embedded.version
        ));
    }
    if stored.is_null() {
        return Ok(());
    }
    let field = |k: &str| stored.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let stored_caps: Option<Vec<String>> = stored
        .get("capabilities")
        .and_then(|v| serde_json::from_value(v.clone()).ok());
    let embedded_caps: Vec<String> = embedded
        .capabilities
        .iter()
        .map(|c| c.as_str().to_string())
        .collect();
    let mismatch = if field("name").as_deref() != Some(name) {
        Some(format!("name {:?}", field("name")))
    } else if field("version").as_deref() != Some(&version.to_string()) {
        Some(format!("version {:?}", field("version")))
    } else if stored_caps.as_ref().is_some_and(|c| *c != embedded_caps) {
        Some(format!("capabilities {stored_caps:?}"))
    } else {
        None
    };
    match mismatch {
        Some(m) => Err(format!(
            "{what}: the manifest stored with it ({m}) disagrees with the component's own \
             (`{}` {}, capabilities {embedded_caps:?}); refused",
            embedded.name, embedded.version
        )),
        None => Ok(()),
    }
}

/// The manifest a registry version's component embeds, checked against its
/// listing (what resolution would refuse is refused here too).
pub fn verified_manifest(
    registry: &capstan_registry::Registry,
    e: &capstan_registry::Entry,
) -> Result<Manifest, String> {
    let what = format!("{} {}", e.name, e.version);
    let bytes = registry.fetch(e).map_err(|err| err.to_string())?;
    let info = crate::manifest::inspect(&bytes, &what).map_err(|err| err.to_string())?;
    check_embedded(&info.manifest, &e.name, &e.version, &e.manifest, &what)?;
    Ok(info.manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, version: &str) -> Manifest {
        Manifest::parse(&format!(
            "name = \"{name}\"\nversion = \"{version}\"\ncapabilities = [\"http\"]\n"
        ))
        .unwrap()
    }

    #[test]
    fn embedded_names_must_match_the_listing() {
        let v = semver::Version::new(1, 0, 0);
        let good = serde_json::to_value(m("git-clone", "1.0.0")).unwrap();
        assert!(check_embedded(&m("git-clone", "1.0.0"), "git-clone", &v, &good, "x").is_ok());
        assert!(
            check_embedded(
                &m("git-clone", "1.0.0"),
                "git-clone",
                &v,
                &serde_json::Value::Null,
                "x"
            )
            .is_ok()
        );
        let e = check_embedded(
            &m("git-clone", "1.0.0"),
            "hs-evil",
            &v,
            &good,
            "oci://r/hs-evil:1.0.0",
        )
        .unwrap_err();
        assert!(
            e.contains("declares itself `git-clone`") && e.contains("hs-evil"),
            "{e}"
        );
        assert!(check_embedded(&m("git-clone", "1.0.1"), "git-clone", &v, &good, "x").is_err());
        let mut lying = good.clone();
        lying["capabilities"] = serde_json::json!([]);
        assert!(
            check_embedded(&m("git-clone", "1.0.0"), "git-clone", &v, &lying, "x")
                .unwrap_err()
                .contains("stored with it")
        );
        lying["name"] = serde_json::json!("other");
        assert!(check_embedded(&m("git-clone", "1.0.0"), "git-clone", &v, &lying, "x").is_err());
    }

    #[test]
    fn privileges_match_where_it_came_from() {
        let d = Digest::of(b"x");
        let id = |source| PluginIdentity {
            source,
            digest: d.clone(),
            declared: ("git-clone".into(), semver::Version::new(1, 0, 0)),
        };
        let v = semver::Version::new(1, 0, 0);
        let reg = id(PluginSource::Registry {
            name: "git-clone".into(),
            version: v.clone(),
        });
        assert_eq!(reg.policy_name().as_deref(), Some("git-clone"));
        let oci = id(PluginSource::Oci {
            location: "evil.example/x".into(),
            name: "git-clone".into(),
            version: v,
        });
        assert_eq!(
            oci.policy_name().as_deref(),
            Some("oci://evil.example/x/git-clone")
        );
        assert!(oci.all_names().contains(&"git-clone".to_string()));
        let file = id(PluginSource::File {
            path: "/tmp/evil.wasm".into(),
        });
        assert_eq!(file.policy_name(), None);
        assert_eq!(file.all_names(), ["git-clone"]);
    }
}
