//! The platform policy file: which plugins may run at all (allow/deny by
//! name pattern and version range) and the most each may be granted
//! (capability ceilings) — the third layer of the grant model.
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
//! ```
//!
//! A plugin no `[[ceiling]]` matches has no platform ceiling (the manifest
//! and the pipeline's grants still apply).

use std::path::Path;

use serde::Deserialize;

use crate::caps::grant::Policy;
use crate::manifest::{Capability, Manifest};

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
    fn matches(&self, m: &Manifest) -> bool {
        glob(&self.name, &m.name) && self.versions.as_ref().is_none_or(|r| r.matches(&m.version))
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
        let policy: PolicyFile = toml::from_str(&text).map_err(|e| err(e.to_string()))?;
        for k in &policy.trust.key {
            capstan_registry::sign::PublicKey::parse(&k.public_key)
                .map_err(|e| err(format!("trust.key: {e}")))?;
        }
        Ok(policy)
    }
}

impl Policy for PolicyFile {
    fn admit(&self, plugin: &Manifest) -> Result<(), String> {
        if let Some(rule) = self.deny.iter().find(|r| r.matches(plugin)) {
            return Err(format!(
                "plugin `{}` {} is denied by the platform policy{}",
                plugin.name,
                plugin.version,
                rule.reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            ));
        }
        if !self.allow.is_empty() && !self.allow.iter().any(|r| r.matches(plugin)) {
            return Err(format!(
                "plugin `{}` {} is not on the platform policy's allow list",
                plugin.name, plugin.version
            ));
        }
        Ok(())
    }

    fn signer(
        &self,
        name: &str,
        digest: &crate::digest::Digest,
        signatures: &[capstan_registry::sign::Signature],
    ) -> Result<Option<String>, String> {
        let trusted: Vec<capstan_registry::sign::PublicKey> = self
            .trust
            .key
            .iter()
            .filter(|k| glob(&k.plugins, name))
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
            "plugin `{name}` {digest} is not signed by a key trusted for it (trusted for `{name}`: {}; signed by: {}); \
             sign it with `capstan plugin sign` or trust its key in the policy",
            ids(trusted.iter().map(|k| k.id()).collect()),
            ids(signatures.iter().map(|s| s.key_id.clone()).collect()),
        ))
    }

    fn ceiling(&self, plugin: &Manifest, cap: Capability) -> Result<(), String> {
        match self.ceiling.iter().find(|c| glob(&c.name, &plugin.name)) {
            Some(c) if !c.capabilities.contains(&cap) => Err(format!(
                "the platform policy's ceiling for `{}` (rule `{}`) does not include `{cap}`",
                plugin.name, c.name
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, version: &str) -> Manifest {
        Manifest::parse(&format!("name = \"{name}\"\nversion = \"{version}\"\n")).unwrap()
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
                .contains("denied by the platform policy: buggy")
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
    }
}
