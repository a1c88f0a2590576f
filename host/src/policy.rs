//! The platform policy file: which plugins may run at all (allow/deny by
//! name pattern and version range), the most each may be granted
//! (capability ceilings), whose signatures are trusted, and what component
//! files may do — the third layer of the grant model.
//!
//! ```toml
//! # If any [[allow]] rule exists, a plugin must match one.
//! [[allow]]
//! name = "git-*"              # `*` matches any run of characters
//! versions = ">=1.2"          # optional semver range
//!
//! [[deny]]                    # deny wins over allow
//! name = "word-count"
//! versions = "<0.2"
//! reason = "counts bytes wrong; use 0.2"
//!
//! [[ceiling]]                 # first matching rule applies
//! name = "git-clone"
//! capabilities = ["http", "secrets"]
//!
//! [[ceiling]]
//! name = "*"
//! capabilities = []           # everything else: no capabilities
//!
//! [paths]                     # `uses: ./x.wasm` / `file://…` (default: refused)
//! allow = true
//! capabilities = ["http"]     # their ceiling (default: none)
//!
//! [limits]
//! workspace-budget = "20Gi"   # the most spec.workspaceBudget may be
//!
//! [container]                 # ceilings on container steps (grants.container)
//! registries = ["localhost", "registry.internal:5000"]  # default: any
//! require-digest = true       # every granted image pinned @sha256:…
//! network = false             # may a grant give a network (default: no)
//! root = false                # may a grant say `root: true` (default, and without a policy file: no)
//! max-cpu = "2"               # per container; also the limit when none is set
//! max-memory = "4Gi"
//! cache-budget = "5Gi"        # a named cache over this after a run is emptied
//! ```
//!
//! **Names are identities, not claims.** Rules match where a plugin was
//! resolved from ([`PluginIdentity`]), never the name inside the component:
//! - a plugin from the configured registry is matched by its registry name
//!   and version (which must equal the component's embedded ones, or the
//!   resolver refuses it);
//! - a plugin from another registry (`uses: oci://host/repo/name:1.0.0`) is
//!   matched by `oci://host/repo/name` for `[[allow]]`, `[[ceiling]]` and
//!   trusted keys, so a rule for `git-clone` never lends its privileges to
//!   a copy hosted elsewhere; `[[deny]]` rules match any name it goes by
//!   (that, the bare repository name and the declared name);
//! - a component file has no name a registry vouches for: only `[[deny]]`
//!   rules (by its declared name) and the `[paths]` section apply. With a
//!   policy file in force, component files are refused unless
//!   `[paths] allow = true`, and then get only the capabilities
//!   `[paths] capabilities` lists. (Without a policy file — the local
//!   default — files run with the manifest and pipeline layers only.)
//!
//! A registry plugin no `[[ceiling]]` matches has no platform ceiling (the
//! manifest and the pipeline's grants still apply).

use std::path::Path;

use serde::Deserialize;

use crate::caps::grant::Policy;
use crate::identity::{PluginIdentity, PluginSource};
use crate::manifest::Capability;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    #[serde(default)]
    pub allow: Vec<Rule>,
    #[serde(default)]
    pub deny: Vec<Rule>,
    #[serde(default)]
    pub ceiling: Vec<Ceiling>,
    #[serde(default)]
    pub trust: Trust,
    #[serde(default)]
    pub paths: Paths,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub container: ContainerSection,
    /// `container`, checked and parsed by [`PolicyFile::load`].
    #[serde(skip)]
    container_limits: crate::caps::container::Limits,
}

/// `[container]`: ceilings on container steps, as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ContainerSection {
    #[serde(default)]
    pub registries: Vec<String>,
    #[serde(default)]
    pub require_digest: bool,
    #[serde(default)]
    pub network: bool,
    #[serde(default)]
    pub root: bool,
    #[serde(default)]
    pub max_cpu: Option<String>,
    #[serde(default)]
    pub max_memory: Option<String>,
    #[serde(default)]
    pub cache_budget: Option<String>,
}

impl ContainerSection {
    fn parse(&self) -> Result<crate::caps::container::Limits, String> {
        let max_cpu_millis = match &self.max_cpu {
            None => None,
            Some(c) => Some(
                crate::pipeline::size::cpu_millis(c)
                    .map_err(|e| format!("container.max-cpu: {e}"))?,
            ),
        };
        let max_memory = match &self.max_memory {
            None => None,
            Some(m) => Some(
                crate::pipeline::size::parse(m)
                    .map_err(|e| format!("container.max-memory: {e}"))?,
            ),
        };
        let cache_budget = match &self.cache_budget {
            None => None,
            Some(b) => Some(
                crate::pipeline::size::parse(b)
                    .map_err(|e| format!("container.cache-budget: {e}"))?,
            ),
        };
        for r in &self.registries {
            let ok = !r.is_empty()
                && r.chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-:".contains(c));
            if !ok {
                return Err(format!(
                    "container.registries: `{r}` is not a registry host (`localhost`, `registry.internal:5000`)"
                ));
            }
        }
        Ok(crate::caps::container::Limits {
            registries: self.registries.clone(),
            require_digest: self.require_digest,
            network: self.network,
            root: self.root,
            max_cpu_millis,
            max_memory,
            cache_budget,
        })
    }
}

/// Ceilings on what a pipeline may ask for.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Limits {
    /// The most `spec.workspaceBudget` may be (`10Gi`); also the default
    /// budget when it is lower than Capstan's own default.
    #[serde(default)]
    pub workspace_budget: Option<String>,
}

/// Component files (`uses: ./x.wasm`, `file://…`) under this policy.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Paths {
    /// Whether a pipeline may name a component file at all (default: no;
    /// only registry references run).
    #[serde(default)]
    pub allow: bool,
    /// The most a component file may be granted (default: nothing).
    #[serde(default)]
    pub capabilities: Vec<Capability>,
}

/// Signature trust: which public keys are trusted for which plugins.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Trust {
    /// Refuse unsigned or untrusted plugins at resolve time.
    #[serde(default)]
    pub require_signature: bool,
    #[serde(default)]
    pub key: Vec<TrustedKey>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TrustedKey {
    /// `ed25519:<hex>`, as in the `.pub` file `capstan plugin keygen` writes.
    pub public_key: String,
    /// Plugin name pattern this key is trusted for (default `*`).
    #[serde(default = "any")]
    pub plugins: String,
}

fn any() -> String {
    "*".to_string()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub name: String,
    #[serde(default)]
    pub versions: Option<semver::VersionReq>,
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ceiling {
    pub name: String,
    pub capabilities: Vec<Capability>,
}

/// `*` matches any run of characters; everything else literally.
pub(crate) fn glob(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first)
        || !name[first.len()..].ends_with(last)
        || name.len() < first.len() + last.len()
    {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

impl Rule {
    fn version_ok(&self, v: &semver::Version) -> bool {
        self.versions.as_ref().is_none_or(|r| r.matches(v))
    }

    /// Allow rules confer a privilege: the identity's policy name only.
    fn allows(&self, id: &PluginIdentity) -> bool {
        id.policy_name().is_some_and(|n| glob(&self.name, &n)) && self.version_ok(id.version())
    }

    /// Deny rules match any name the plugin goes by.
    fn denies(&self, id: &PluginIdentity) -> bool {
        id.all_names().iter().any(|n| glob(&self.name, n)) && self.version_ok(id.version())
    }
}

/// A policy file that cannot be read or parsed.
#[derive(Debug, thiserror::Error)]
#[error("policy file {path}: {message}")]
pub struct PolicyError {
    pub path: String,
    pub message: String,
}

impl PolicyFile {
    /// Read and check a policy file; errors name the file and the field.
    pub fn load(path: &Path) -> Result<PolicyFile, PolicyError> {
        let err = |message: String| PolicyError {
            path: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let mut policy: PolicyFile = toml::from_str(&text).map_err(|e| err(e.to_string()))?;
        policy.container_limits = policy.container.parse().map_err(err)?;
        if let Some(b) = &policy.limits.workspace_budget {
            crate::pipeline::size::parse(b)
                .map_err(|e| err(format!("limits.workspace-budget: {e}")))?;
        }
        for k in &policy.trust.key {
            capstan_registry::sign::PublicKey::parse(&k.public_key)
                .map_err(|e| err(format!("trust.key: {e}")))?;
        }
        Ok(policy)
    }
}

impl Policy for PolicyFile {
    fn admit(&self, plugin: &PluginIdentity) -> Result<(), String> {
        if let Some(rule) = self.deny.iter().find(|r| r.denies(plugin)) {
            return Err(format!(
                "plugin {plugin} is denied by the platform policy{} (rule `{}`)",
                rule.reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default(),
                rule.name,
            ));
        }
        if plugin.is_file() {
            if !self.paths.allow {
                return Err(format!(
                    "{plugin}: the platform policy runs registry plugins only \
                     (publish it, or set `[paths] allow = true` in the policy)"
                ));
            }
            return Ok(());
        }
        if !self.allow.is_empty() && !self.allow.iter().any(|r| r.allows(plugin)) {
            return Err(format!(
                "plugin {plugin} is not on the platform policy's allow list"
            ));
        }
        Ok(())
    }

    fn signer(
        &self,
        source: &PluginSource,
        digest: &crate::digest::Digest,
        signatures: &[capstan_registry::sign::Signature],
    ) -> Result<Option<String>, String> {
        let name = source.policy_name();
        let shown = match (source, &name) {
            (PluginSource::File { path }, _) => path.display().to_string(),
            (_, Some(n)) => n.clone(),
            (_, None) => String::new(),
        };
        let trusted: Vec<capstan_registry::sign::PublicKey> = self
            .trust
            .key
            .iter()
            .filter(|k| name.as_deref().is_some_and(|n| glob(&k.plugins, n)))
            .filter_map(|k| capstan_registry::sign::PublicKey::parse(&k.public_key).ok())
            .collect();
        if let Some(k) = trusted
            .iter()
            .find(|k| signatures.iter().any(|s| k.verifies(digest, s)))
        {
            return Ok(Some(k.id()));
        }
        if !self.trust.require_signature {
            return Ok(None);
        }
        let ids = |v: Vec<String>| {
            if v.is_empty() {
                "none".to_string()
            } else {
                v.join(", ")
            }
        };
        Err(format!(
            "plugin `{shown}` {digest} is not signed by a key trusted for it (trusted for `{shown}`: {}; signed by: {}); \
             sign it with `capstan plugin sign` or trust its key in the policy",
            ids(trusted.iter().map(|k| k.id()).collect()),
            ids(signatures.iter().map(|s| s.key_id.clone()).collect()),
        ))
    }

    fn container_limits(&self) -> Option<&crate::caps::container::Limits> {
        Some(&self.container_limits)
    }

    fn workspace_budget(&self) -> Option<u64> {
        self.limits
            .workspace_budget
            .as_deref()
            .and_then(|b| crate::pipeline::size::parse(b).ok())
    }

    fn ceiling(&self, plugin: &PluginIdentity, cap: Capability) -> Result<(), String> {
        let first = |name: &str| self.ceiling.iter().find(|c| glob(&c.name, name));
        let refuse = |name: &str, c: &Ceiling| {
            Err(format!(
                "the platform policy's ceiling for `{name}` (rule `{}`) does not include `{cap}`",
                c.name
            ))
        };
        match plugin.policy_name() {
            // Its own identity's rule decides (and lends privileges).
            Some(name) => {
                if let Some(c) = first(&name) {
                    return if c.capabilities.contains(&cap) {
                        Ok(())
                    } else {
                        refuse(&name, c)
                    };
                }
            }
            None => {
                if !self.paths.capabilities.contains(&cap) {
                    return Err(format!(
                        "the platform policy's ceiling for component files (`[paths] capabilities`) \
                         does not include `{cap}`"
                    ));
                }
            }
        }
        // No rule for its identity: rules matching any other name it goes
        // by (the bare repository name, the declared name) only restrict —
        // a copy of `hs-evil` hosted elsewhere stays as limited as
        // `hs-evil`, and a copy of `git-clone` gains nothing from it.
        for name in plugin.all_names() {
            if let Some(c) = first(&name)
                && !c.capabilities.contains(&cap)
            {
                return refuse(&name, c);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, version: &str) -> PluginIdentity {
        let version: semver::Version = version.parse().unwrap();
        PluginIdentity {
            source: PluginSource::Registry {
                name: name.into(),
                version: version.clone(),
            },
            digest: crate::digest::Digest::of(name.as_bytes()),
            declared: (name.into(), version),
        }
    }

    fn oci(location: &str, name: &str, declared: &str) -> PluginIdentity {
        PluginIdentity {
            source: PluginSource::Oci {
                location: location.into(),
                name: name.into(),
                version: semver::Version::new(1, 0, 0),
            },
            ..m(declared, "1.0.0")
        }
    }

    fn file(declared: &str) -> PluginIdentity {
        PluginIdentity {
            source: PluginSource::File {
                path: "/tmp/x.wasm".into(),
            },
            ..m(declared, "1.0.0")
        }
    }

    #[test]
    fn globs() {
        assert!(
            glob("git-*", "git-clone")
                && glob("*", "x")
                && glob("a*c*e", "abcde")
                && glob("x", "x")
        );
        assert!(!glob("git-*", "kaniko") && !glob("a*a", "a") && !glob("x", "xy"));
    }

    #[test]
    fn allow_deny_and_ceilings() {
        let p: PolicyFile = toml::from_str(
            r#"
[[allow]]
name = "git-*"
[[allow]]
name = "word-count"
[[deny]]
name = "word-count"
versions = "<0.2"
reason = "buggy"
[[ceiling]]
name = "git-clone"
capabilities = ["http"]
[[ceiling]]
name = "*"
capabilities = []
"#,
        )
        .unwrap();
        assert!(p.admit(&m("git-clone", "1.0.0")).is_ok());
        assert!(
            p.admit(&m("word-count", "0.1.0"))
                .unwrap_err()
                .contains("denied by the platform policy: buggy (rule `word-count`)")
        );
        assert!(p.admit(&m("word-count", "0.2.0")).is_ok());
        assert!(
            p.admit(&m("echo", "1.0.0"))
                .unwrap_err()
                .contains("allow list")
        );
        assert!(
            p.ceiling(&m("git-clone", "1.0.0"), Capability::Http)
                .is_ok()
        );
        assert!(
            p.ceiling(&m("git-clone", "1.0.0"), Capability::Ssh)
                .is_err()
        );
        assert!(
            p.ceiling(&m("git-pull", "1.0.0"), Capability::Http)
                .unwrap_err()
                .contains("rule `*`")
        );
        assert!(
            toml::from_str::<PolicyFile>("[[allow]]\nname = \"x\"\nversion = \"1\"\n").is_err()
        );
        // Another registry's copy of `git-clone` gets none of its privileges;
        // a deny rule catches any name it goes by.
        let copy = oci("evil.example/x", "git-clone", "git-clone");
        assert!(p.admit(&copy).unwrap_err().contains("allow list"));
        assert!(
            p.ceiling(&copy, Capability::Http)
                .unwrap_err()
                .contains("rule `*`")
        );
        // A restrictive rule for a name still restricts a copy hosted
        // elsewhere, or a file declaring that name.
        let r: PolicyFile =
            toml::from_str("[paths]\nallow = true\ncapabilities = [\"http\"]\n[[ceiling]]\nname = \"hs-*\"\ncapabilities = []\n").unwrap();
        assert!(
            r.ceiling(&oci("evil.example", "hs-evil", "hs-evil"), Capability::Http)
                .is_err()
        );
        assert!(r.ceiling(&file("hs-evil"), Capability::Http).is_err());
        assert!(
            r.ceiling(&oci("evil.example", "other", "other"), Capability::Http)
                .is_ok()
        );
        let d: PolicyFile = toml::from_str("[[deny]]\nname = \"hs-*\"\n").unwrap();
        assert!(d.admit(&oci("r.example", "hs-evil", "hs-evil")).is_err());
        assert!(d.admit(&file("hs-evil")).is_err());
        assert!(d.admit(&m("git-clone", "1.0.0")).is_ok());
    }

    #[test]
    fn component_files_are_refused_unless_the_policy_allows_them() {
        let p: PolicyFile =
            toml::from_str("[[ceiling]]\nname = \"*\"\ncapabilities = [\"http\"]\n").unwrap();
        // Even declaring a trusted name does not help a file.
        let f = file("git-clone");
        assert!(p.admit(&f).unwrap_err().contains("registry plugins only"));
        assert!(p.ceiling(&f, Capability::Http).is_err());
        let p: PolicyFile =
            toml::from_str("[paths]\nallow = true\ncapabilities = [\"http\"]\n").unwrap();
        assert!(p.admit(&f).is_ok());
        assert!(p.ceiling(&f, Capability::Http).is_ok());
        assert!(
            p.ceiling(&f, Capability::Secrets)
                .unwrap_err()
                .contains("[paths]")
        );
        // Trusted keys match identities too: a file is never "signed".
        let src = PluginSource::File {
            path: "/tmp/x.wasm".into(),
        };
        let strict: PolicyFile = toml::from_str("[trust]\nrequire-signature = true\n").unwrap();
        assert!(strict.signer(&src, &f.digest, &[]).is_err());
    }
}
