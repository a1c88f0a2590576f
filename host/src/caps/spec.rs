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
    /// `{ url: …, secret: NAME, auth: basic|bearer, proxy: URL, caSecret: NAME }`
    /// to have the host send the secret as the `Authorization` header, go
    /// through an HTTP proxy, or trust a private CA.
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
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum HttpGrantSpec {
    Url(String),
    Bound(HttpGrantEntry),
}

/// A string or the long form, keeping the long form's own error (an
/// unknown field is named) rather than serde's "did not match any variant".
impl<'de> Deserialize<'de> for HttpGrantSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = HttpGrantSpec;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a URL or { url, secret, auth, proxy, caSecret }")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(HttpGrantSpec::Url(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                m: A,
            ) -> Result<Self::Value, A::Error> {
                HttpGrantEntry::deserialize(serde::de::value::MapAccessDeserializer::new(m))
                    .map(HttpGrantSpec::Bound)
            }
        }
        d.deserialize_any(V)
    }
}

/// The long form of a `grants.http` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpGrantEntry {
    pub url: String,
    /// A secret the host sends as `Authorization`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    #[serde(default)]
    pub auth: super::http::AuthScheme,
    /// An `http://host:port` proxy for this authority (else the proxy
    /// environment of the Capstan process applies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
    /// A secret holding PEM CA certificates: TLS to this authority trusts
    /// only those (as git's `http.sslCAInfo`), not the public roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret: Option<String>,
}

impl HttpGrantSpec {
    pub fn url(&self) -> &str {
        match self {
            HttpGrantSpec::Url(u) => u,
            HttpGrantSpec::Bound(e) => &e.url,
        }
    }

    pub fn secret(&self) -> Option<(&str, super::http::AuthScheme)> {
        match self {
            HttpGrantSpec::Url(_) => None,
            HttpGrantSpec::Bound(e) => e.secret.as_deref().map(|s| (s, e.auth)),
        }
    }

    pub fn proxy(&self) -> Option<&str> {
        match self {
            HttpGrantSpec::Url(_) => None,
            HttpGrantSpec::Bound(e) => e.proxy.as_deref(),
        }
    }

    pub fn ca_secret(&self) -> Option<&str> {
        match self {
            HttpGrantSpec::Url(_) => None,
            HttpGrantSpec::Bound(e) => e.ca_secret.as_deref(),
        }
    }

    /// Every secret this entry names (the credential, the CA bundle).
    pub fn secret_names(&self) -> impl Iterator<Item = &str> {
        self.secret()
            .map(|(n, _)| n)
            .into_iter()
            .chain(self.ca_secret())
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
