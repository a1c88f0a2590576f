//! The `grants.ssh` entry a pipeline writes.

use serde::{Deserialize, Serialize};

/// One `grants.ssh` entry: `{ host, port, user?, secret, auth: key|password,
/// hostKey: SHA256:… | knownHosts: "…" }`.
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
