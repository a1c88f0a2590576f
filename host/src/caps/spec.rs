//! The `grants:` of a pipeline task: what the pipeline (the second grant
//! layer) gives each capability. The capabilities own these types; the
//! pipeline model uses them.

use serde::{Deserialize, Serialize};

/// Capability grants. Each list names concrete scopes; nothing is granted
/// that is not listed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Grants {
    /// Outbound HTTP authorities: `https://git.example.com`, or
    /// `{ url: …, secret: NAME, auth: basic|bearer }` to have the host send
    /// the secret as the `Authorization` header.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http: Vec<HttpGrantSpec>,
    /// Secrets the plugin may open by name: `NAME`, or
    /// `{ name: NAME, reveal: true }` to let it read the value.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<SecretGrantSpec>,
    /// SSH endpoints: `{ host, port, user?, secret, auth: key|password,
    /// hostKey: SHA256:… | knownHosts: "…" }`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ssh: Vec<SshGrantSpec>,
    /// Kubernetes requests: `{ verbs, resources, namespaces?, names? }`
    /// (resources as `pods`, `deployments.apps`, `pods/log`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kube: Vec<super::kube::KubeGrant>,
}

/// One `grants.http` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum HttpGrantSpec {
    Url(String),
    Bound {
        url: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        secret: Option<String>,
        #[serde(default)]
        auth: super::http::AuthScheme,
    },
}

impl HttpGrantSpec {
    pub fn url(&self) -> &str {
        match self {
            HttpGrantSpec::Url(u) | HttpGrantSpec::Bound { url: u, .. } => u,
        }
    }

    pub fn secret(&self) -> Option<(&str, super::http::AuthScheme)> {
        match self {
            HttpGrantSpec::Url(_) => None,
            HttpGrantSpec::Bound { secret, auth, .. } => secret.as_deref().map(|s| (s, *auth)),
        }
    }
}

/// One `grants.ssh` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SshGrantSpec {
    pub host: String,
    #[serde(default = "default_ssh_port")]
    pub port: u16,
    /// If set, the only user the plugin may log in as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The secret holding the private key (OpenSSH format) or password.
    pub secret: String,
    #[serde(default)]
    pub auth: SshAuth,
    /// Pinned host key fingerprint, `SHA256:…`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_key: Option<String>,
    /// known_hosts lines for the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_hosts: Option<String>,
}

fn default_ssh_port() -> u16 {
    22
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SshAuth {
    #[default]
    Key,
    Password,
}

/// One `grants.secrets` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SecretGrantSpec {
    Name(String),
    Full {
        name: String,
        #[serde(default)]
        reveal: bool,
    },
}

impl SecretGrantSpec {
    pub fn name(&self) -> &str {
        match self {
            SecretGrantSpec::Name(n) | SecretGrantSpec::Full { name: n, .. } => n,
        }
    }

    pub fn reveal(&self) -> bool {
        matches!(self, SecretGrantSpec::Full { reveal: true, .. })
    }
}

impl Grants {
    pub fn is_empty(&self) -> bool {
        self.http.is_empty()
            && self.secrets.is_empty()
            && self.ssh.is_empty()
            && self.kube.is_empty()
    }

    /// Capabilities this grant gives something to, with the YAML field name.
    pub fn granted(&self) -> Vec<(crate::manifest::Capability, &'static str)> {
        use crate::manifest::Capability::*;
        let mut out = Vec::new();
        if !self.http.is_empty() {
            out.push((Http, "http"));
        }
        if !self.secrets.is_empty() {
            out.push((Secrets, "secrets"));
        }
        if !self.ssh.is_empty() {
            out.push((Ssh, "ssh"));
        }
        if !self.kube.is_empty() {
            out.push((Kube, "kube"));
        }
        out
    }
}
