//! The grant model: what a task may use is the intersection of three layers,
//! checked in order, and a refusal names the layer that refused.
//!
//! 1. the plugin's manifest declares what it may ask for;
//! 2. the pipeline grants concrete scopes to the task;
//! 3. the platform policy sets ceilings per plugin.
//!
//! Scopes (hosts, secret names, verbs) are checked per use by each
//! capability's host code; this module checks, before anything runs, that
//! each granted capability is allowed at all.

use super::set::Grants;
use crate::identity::{PluginIdentity, PluginSource};
use crate::manifest::{Capability, Manifest};

/// Which layer refused a capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    Manifest,
    Pipeline,
    Policy,
}

impl Layer {
    pub fn as_str(self) -> &'static str {
        match self {
            Layer::Manifest => "manifest",
            Layer::Pipeline => "pipeline",
            Layer::Policy => "policy",
        }
    }
}

/// The platform policy (the third layer): which plugins may run at all, and
/// the most each may be granted. Every decision takes the plugin's
/// [`PluginIdentity`] — where it was resolved from — never the name its
/// component declares.
pub trait Policy: Send + Sync {
    /// `Err(reason)` if `plugin` may not run at all.
    fn admit(&self, _plugin: &PluginIdentity) -> Result<(), String> {
        Ok(())
    }

    /// `Err(reason)` if `plugin` may not be granted `cap` at all.
    fn ceiling(&self, plugin: &PluginIdentity, cap: Capability) -> Result<(), String>;

    /// The most disk a run's workspaces may be given
    /// (`spec.workspaceBudget`); None: no ceiling.
    fn workspace_budget(&self) -> Option<u64> {
        None
    }

    /// Ceilings on containers (`[container]`); None: none.
    fn container_limits(&self) -> Option<&super::container::Limits> {
        None
    }

    /// Which trusted key signed the component from `source` with `digest`,
    /// given its stored signatures. `Err` if the policy requires a trusted
    /// signature and there is none. Default: no trust requirement.
    fn signer(
        &self,
        _source: &PluginSource,
        _digest: &crate::digest::Digest,
        _signatures: &[capstan_registry::sign::Signature],
    ) -> Result<Option<String>, String> {
        Ok(None)
    }
}

/// No platform ceilings: the local default until a registry policy is
/// configured. The manifest and pipeline layers still apply, and nothing is
/// granted that the pipeline does not grant.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoCeilings;

impl Policy for NoCeilings {
    fn ceiling(&self, _plugin: &PluginIdentity, _cap: Capability) -> Result<(), String> {
        Ok(())
    }
}

/// A refused grant: the YAML field under `grants`, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub field: &'static str,
    pub capability: Capability,
    pub layer: Option<Layer>,
    pub message: String,
}

/// The policy's ceiling for one plugin (see [`Policy::ceiling`]).
pub type CeilingOf<'a> = &'a dyn Fn(Capability) -> Result<(), String>;

/// Check a task's grants against its plugin's manifest, the policy's
/// ceiling for it. Returns every refusal.
pub fn check(manifest: &Manifest, grants: &Grants, ceiling: CeilingOf) -> Vec<Refusal> {
    let mut out = Vec::new();
    for (cap, field) in grants.granted() {
        // `secrets` asked for at another capability's field: its secrets
        // can reach the plugin (a container's).
        let why = if field != cap.as_str() {
            " (secrets given to what it runs can reach it)"
        } else {
            ""
        };
        let refusal = if !manifest.capabilities.contains(&cap) {
            Some((
                Some(Layer::Manifest),
                format!(
                    "denied by layer `manifest`: plugin `{}` does not declare capability `{cap}`{why}",
                    manifest.name
                ),
            ))
        } else if let Err(reason) = ceiling(cap) {
            Some((
                Some(Layer::Policy),
                format!("denied by layer `policy`: {reason}"),
            ))
        } else {
            None
        };
        if let Some((layer, message)) = refusal {
            out.push(Refusal {
                field,
                capability: cap,
                layer,
                message,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_ssh(cap: Capability) -> Result<(), String> {
        if cap == Capability::Ssh {
            Err("`p` may not use ssh here".into())
        } else {
            Ok(())
        }
    }

    fn any(_: Capability) -> Result<(), String> {
        Ok(())
    }

    fn manifest(caps: &str) -> Manifest {
        Manifest::parse(&format!(
            "name = \"p\"\nversion = \"1.0.0\"\ncapabilities = [{caps}]\n"
        ))
        .unwrap()
    }

    #[test]
    fn layers_are_checked_in_order() {
        let grants: Grants = serde_yaml::from_str(
            "ssh: [{host: a, secret: k, hostKey: \"SHA256:abcdefghijklmnopqrstuvwxyz\"}]\nhttp: [\"https://x\"]",
        )
        .unwrap();
        let r = check(&manifest("\"ssh\""), &grants, &no_ssh);
        assert_eq!(r.len(), 2);
        let http = r.iter().find(|r| r.field == "http").unwrap();
        assert_eq!(http.layer, Some(Layer::Manifest));
        let ssh = r.iter().find(|r| r.field == "ssh").unwrap();
        assert_eq!(ssh.layer, Some(Layer::Policy));
        assert!(ssh.message.contains("may not use ssh"));
        // Declared and allowed by policy: granted.
        let r = check(&manifest("\"ssh\""), &grants, &any);
        assert!(!r.iter().any(|r| r.field == "ssh"));
        // kube: granted when declared, refused by the manifest layer when not.
        let kube: Grants =
            serde_yaml::from_str("kube: [{verbs: [get], resources: [pods]}]").unwrap();
        assert!(check(&manifest("\"kube\""), &kube, &any).is_empty());
        let r = check(&manifest(""), &kube, &any);
        assert!(
            r.iter()
                .any(|r| r.field == "kube" && r.layer == Some(Layer::Manifest))
        );
        // Nothing granted: nothing to refuse.
        assert!(check(&manifest(""), &Grants::default(), &no_ssh).is_empty());
    }

    /// A container given secrets can hand them to the plugin that wrote
    /// its script: that grant also needs `secrets`, at both layers.
    #[test]
    fn secrets_for_containers_need_the_secrets_capability() {
        let g: Grants =
            serde_yaml::from_str("container: [{image: \"localhost/go:1\", secrets: [tok]}]")
                .unwrap();
        let r = check(&manifest("\"container\""), &g, &any);
        assert_eq!(r.len(), 1, "{r:?}");
        assert_eq!(
            (r[0].field, r[0].capability),
            ("container", Capability::Secrets)
        );
        assert!(r[0].message.contains("can reach it"), "{}", r[0].message);
        let no_secrets = |c: Capability| {
            if c == Capability::Secrets {
                Err("no secrets".to_string())
            } else {
                Ok(())
            }
        };
        let r = check(&manifest("\"container\", \"secrets\""), &g, &no_secrets);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].layer, Some(Layer::Policy));
        assert!(check(&manifest("\"container\", \"secrets\""), &g, &any).is_empty());
        // Without secrets, `container` alone is enough.
        let g: Grants = serde_yaml::from_str("container: [{image: \"localhost/go:1\"}]").unwrap();
        assert!(check(&manifest("\"container\""), &g, &any).is_empty());
    }
}
