//! The registry as the API and the web UI show it: its plugins, each
//! version with what its component declares (read from the component, not
//! the listing), its signatures and trusted signer, yanked and deprecated
//! marks, and what the platform policy allows of it.
//!
//! `GET /v1/registry` lists the plugins, `GET /v1/registry/{name}` one
//! plugin's versions. Any authenticated caller may read them: the registry
//! is the platform's catalogue, the same for every team.

use serde::Serialize;

use crate::identity::{PluginIdentity, PluginSource};
use crate::scheduler::Scheduler;

/// One plugin of the registry.
#[derive(Debug, Clone, Serialize)]
pub struct PluginRow {
    pub name: String,
    /// The newest version that is not yanked.
    pub latest: Option<String>,
    pub versions: usize,
    /// From the newest version's listing.
    pub description: String,
}

/// One version of a plugin.
#[derive(Debug, Clone, Serialize)]
pub struct VersionView {
    pub name: String,
    pub version: String,
    pub digest: String,
    pub size: u64,
    pub published_at: String,
    pub yanked: bool,
    pub deprecated: Option<String>,
    pub description: String,
    pub world: String,
    /// Why resolution would refuse this version's component (it does not
    /// match its listing, or cannot be read); then nothing below is from
    /// the component.
    pub refused: Option<String>,
    /// Each declared capability, and whether the policy's ceiling allows it.
    pub capabilities: Vec<CapabilityView>,
    /// Why the policy does not admit the plugin at all.
    pub not_admitted: Option<String>,
    pub signatures: Vec<SignatureView>,
    /// The trusted key that signed it (the policy's `[[trust.key]]`).
    pub signer: Option<String>,
    /// Why the policy's signature requirement is not met.
    pub unsigned: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CapabilityView {
    pub name: &'static str,
    /// Why the policy's ceiling refuses it (None: allowed).
    pub denied: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SignatureView {
    pub key_id: String,
    pub public_key: String,
}

/// The registry's plugins, by name (from the listings alone: cheap).
pub fn plugins(sched: &Scheduler) -> anyhow::Result<Vec<PluginRow>> {
    let registry = &sched.registry;
    let mut out = Vec::new();
    for name in registry.list()? {
        let versions = registry.versions(&name)?;
        let latest = versions
            .iter()
            .rev()
            .find(|e| !e.yanked)
            .map(|e| e.version.to_string());
        let description = versions
            .last()
            .and_then(|e| e.manifest.get("description"))
            .and_then(|d| d.as_str())
            .unwrap_or_default()
            .to_string();
        out.push(PluginRow {
            name,
            latest,
            versions: versions.len(),
            description,
        });
    }
    Ok(out)
}

/// One plugin's versions, oldest first, each read from its component and
/// judged by the policy as resolution would.
pub fn versions(sched: &Scheduler, name: &str) -> anyhow::Result<Vec<VersionView>> {
    let registry = &sched.registry;
    let mut out = Vec::new();
    for e in registry.versions(name)? {
        let mut v = VersionView {
            name: e.name.clone(),
            version: e.version.to_string(),
            digest: e.digest.to_string(),
            size: e.size,
            published_at: e.published_at.clone(),
            yanked: e.yanked,
            deprecated: e.deprecated.clone(),
            description: String::new(),
            world: String::new(),
            refused: None,
            capabilities: Vec::new(),
            not_admitted: None,
            signatures: Vec::new(),
            signer: None,
            unsigned: None,
        };
        let source = PluginSource::Registry {
            name: e.name.clone(),
            version: e.version.clone(),
        };
        match registry.signatures(&e) {
            Ok(sigs) => {
                match sched.policy.signer(&source, &e.digest, &sigs) {
                    Ok(s) => v.signer = s,
                    Err(why) => v.unsigned = Some(why),
                }
                v.signatures = sigs
                    .into_iter()
                    .map(|s| SignatureView {
                        key_id: s.key_id,
                        public_key: s.public_key,
                    })
                    .collect();
            }
            Err(err) => v.unsigned = Some(format!("signatures unreadable: {err}")),
        }
        match crate::identity::verified_manifest(registry, &e) {
            Ok(m) => {
                let identity = PluginIdentity {
                    source,
                    digest: e.digest.clone(),
                    declared: (m.name.clone(), m.version.clone()),
                };
                v.not_admitted = sched.policy.admit(&identity).err();
                v.capabilities = m
                    .capabilities
                    .iter()
                    .map(|&cap| CapabilityView {
                        name: cap.as_str(),
                        denied: sched.policy.ceiling(&identity, cap).err(),
                    })
                    .collect();
                v.description = m.description;
                v.world = m.world;
            }
            Err(why) => v.refused = Some(why),
        }
        out.push(v);
    }
    Ok(out)
}
