//! The platform policy's ceilings on containers (`[container]` in the
//! policy file): which registries images may come from, whether they must
//! be pinned by digest, whether a grant may give a container a network
//! or root,
//! and the most CPU and memory one may use. Checked twice: each grant when
//! the pipeline is validated (with the field that is over), and each run
//! when the plugin asks for it (the image and the resources it names).
//!
//! What no policy can allow, because no field asks for it: privileged
//! containers, the host's network, PID or IPC namespace, host paths, added
//! capabilities or devices (see `engine.rs`).

use super::spec::{self, ContainerGrant};

/// Ceilings on containers. Without a policy file there are none (the
/// pipeline's grants still decide); with one, an absent `[container]`
/// section is the default here: any registry, no digest required, no
/// network, no resource ceiling.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Limits {
    /// Registries (`localhost`, `registry.internal:5000`, `docker.io`)
    /// images may come from; empty: any.
    pub registries: Vec<String>,
    /// Every granted image must be pinned `@sha256:…`.
    pub require_digest: bool,
    /// Whether a grant may say `network: true`.
    pub network: bool,
    /// Whether a grant may say `root: true`.
    pub root: bool,
    /// The most CPU (thousandths of a core) and memory (bytes) a container
    /// may use; also its limit when the task sets none.
    pub max_cpu_millis: Option<u32>,
    pub max_memory: Option<u64>,
    /// The most a cache may hold after a run before it is emptied.
    pub cache_budget: Option<u64>,
}

/// The registry part of a normalized reference or pattern.
fn registry(normalized: &str) -> &str {
    normalized.split('/').next().unwrap_or("")
}

impl Limits {
    /// Problems with one grant when no policy file is loaded: none but
    /// root, which only a policy can allow (`container.root = true`).
    pub fn without_policy(g: &ContainerGrant) -> Vec<(&'static str, String)> {
        if g.root {
            return vec![(
                "root",
                "a root container needs a platform policy that allows it (`[container] root = true` in the --policy file); none is loaded".into(),
            )];
        }
        Vec::new()
    }

    /// Problems with one grant, as (field, message).
    pub fn check_grant(&self, g: &ContainerGrant) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let Ok(pattern) = spec::normalize_pattern(&g.image) else {
            return out; // the grant's own check reports it
        };
        if !self.registries.is_empty() {
            let reg = registry(&pattern);
            if reg.contains('*') {
                out.push((
                    "image",
                    format!(
                        "`{}`: the registry cannot be a wildcard under the platform policy's container.registries",
                        g.image
                    ),
                ));
            } else if !self.registries.iter().any(|r| r == reg) {
                out.push((
                    "image",
                    format!(
                        "registry `{reg}` is not one the platform policy allows (container.registries: {})",
                        self.registries.join(", ")
                    ),
                ));
            }
        }
        if self.require_digest && !pinned(&pattern) {
            out.push((
                "image",
                format!(
                    "`{}` is not pinned by digest; the platform policy requires `image@sha256:…` (container.require-digest)",
                    g.image
                ),
            ));
        }
        if g.network && !self.network {
            out.push((
                "network",
                "the platform policy gives containers no network (container.network = false)"
                    .into(),
            ));
        }
        if g.root && !self.root {
            out.push((
                "root",
                "the platform policy runs no container as root (container.root = false)".into(),
            ));
        }
        out
    }

    /// Whether a run of `image` (normalized) is within the ceilings (the
    /// grants already matched it: this holds even if a grant slipped by).
    pub fn check_image(&self, image: &str) -> Result<(), String> {
        let reg = registry(image);
        if !self.registries.is_empty() && !self.registries.iter().any(|r| r == reg) {
            return Err(format!(
                "image `{image}`: registry `{reg}` is not allowed by the platform policy"
            ));
        }
        if self.require_digest && !pinned(image) {
            return Err(format!(
                "image `{image}`: the platform policy requires a digest"
            ));
        }
        Ok(())
    }

    /// The CPU and memory limits a container gets: what it asked for, at
    /// most the ceiling; the ceiling when it asked for none.
    pub fn resources(
        &self,
        cpu_millis: Option<u32>,
        memory: Option<u64>,
    ) -> Result<(Option<u32>, Option<u64>), String> {
        if let (Some(want), Some(max)) = (cpu_millis, self.max_cpu_millis)
            && want > max
        {
            return Err(format!(
                "a CPU limit of {want}m is over the platform policy's container.max-cpu of {max}m"
            ));
        }
        if let (Some(want), Some(max)) = (memory, self.max_memory)
            && want > max
        {
            return Err(format!(
                "a memory limit of {want} bytes is over the platform policy's container.max-memory of {max} bytes"
            ));
        }
        Ok((
            cpu_millis.or(self.max_cpu_millis),
            memory.or(self.max_memory),
        ))
    }
}

fn pinned(reference: &str) -> bool {
    reference
        .rsplit_once('@')
        .is_some_and(|(_, d)| !d.contains('*') && d.starts_with("sha256:"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(image: &str, network: bool) -> ContainerGrant {
        ContainerGrant {
            image: image.into(),
            network,
            secrets: Vec::new(),
            caches: Vec::new(),
            root: network,
        }
    }

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn grants_over_the_ceiling_name_the_field() {
        let l = Limits {
            registries: vec!["localhost".into()],
            require_digest: true,
            ..Limits::default()
        };
        assert!(
            l.check_grant(&grant(&format!("localhost/go@{D}"), false))
                .is_empty()
        );
        let bad = l.check_grant(&grant("golang:1.22", true));
        let fields: Vec<&str> = bad.iter().map(|(f, _)| *f).collect();
        assert_eq!(fields, ["image", "image", "network", "root"], "{bad:?}");
        assert!(bad[0].1.contains("docker.io"));
        // A wildcard registry, or a wildcard digest, is not within them.
        assert!(!l.check_grant(&grant("*/go:1", false)).is_empty());
        // (A wildcard digest is not a pattern at all.)
        assert!(spec::normalize_pattern("localhost/go@sha256:*").is_err());
    }

    #[test]
    fn runs_are_checked_and_resources_capped() {
        let l = Limits {
            registries: vec!["localhost".into()],
            max_cpu_millis: Some(2000),
            max_memory: Some(1 << 30),
            ..Limits::default()
        };
        assert!(l.check_image("localhost/go:1").is_ok());
        assert!(l.check_image("docker.io/library/go:1").is_err());
        assert_eq!(l.resources(None, None), Ok((Some(2000), Some(1 << 30))));
        assert_eq!(l.resources(Some(500), None), Ok((Some(500), Some(1 << 30))));
        assert!(l.resources(Some(4000), None).is_err());
        assert!(l.resources(None, Some(2 << 30)).is_err());
        assert_eq!(Limits::default().resources(None, None), Ok((None, None)));
    }
}
