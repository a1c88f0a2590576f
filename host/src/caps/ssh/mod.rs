//! The `ssh` capability (russh): sessions to granted `host:port` pairs only,
//! authenticated by the host with a secret the plugin never sees, host keys
//! always verified.
//!
//! - Not granted: refused before any connection, with a log line.
//! - Host keys: the grant pins a fingerprint (`hostKey: SHA256:…`) or
//!   carries known_hosts lines (`knownHosts`); an unknown or changed key
//!   refuses the connection and the error shows the offered key's SHA256
//!   fingerprint so an operator can pin it. There is no switch to turn
//!   verification off.
//! - `exec` streams stdout/stderr into the task log as they arrive and
//!   returns the exit status with the tails; `put`/`get` move files over an
//!   exec channel (`cat`), which needs nothing but a POSIX shell remotely.
//! - Keepalives every 5 s (3 missed = dropped), connect timeout 30 s.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client;
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey};
use wasmtime::component::Linker;

use super::capability::{Capability, Data, PrepareCtx, TaskCtx, TaskData, View, view};
use super::{LogLevel, TaskSink};
use crate::bindings::capstan::plugin::types::{Denial, GrantLayer, TaskError};

mod host;
mod spec;
pub use spec::{SshAuth, SshGrantSpec};

/// How the host proves who it is.
pub enum Credential {
    Key(Arc<PrivateKey>),
    Password(String),
}

/// How the server's host key is checked.
#[derive(Debug, Clone)]
pub enum HostKeyCheck {
    /// `SHA256:<base64>` as `ssh-keygen -lf` prints it.
    Fingerprint(String),
    /// Keys from known_hosts lines for this host.
    Known(Vec<PublicKey>),
}

/// One granted SSH endpoint, with its credential resolved.
pub struct SshGrant {
    pub host: String,
    pub port: u16,
    /// If set, the only user the plugin may connect as.
    pub user: Option<String>,
    pub credential: Credential,
    pub host_key: HostKeyCheck,
}

impl SshGrant {
    /// Parse the credential from a secret: an OpenSSH private key, or a
    /// password.
    pub fn credential(secret: &[u8], password: bool) -> Result<Credential, String> {
        let text = std::str::from_utf8(secret).map_err(|_| "the secret is not UTF-8 text")?;
        if password {
            return Ok(Credential::Password(
                text.trim_end_matches(['\r', '\n']).to_string(),
            ));
        }
        let key = russh::keys::decode_secret_key(text, None)
            .map_err(|e| format!("the secret is not an unencrypted OpenSSH private key: {e}"))?;
        Ok(Credential::Key(Arc::new(key)))
    }

    /// Parse `hostKey` / `knownHosts` from a grant.
    pub fn host_key(
        fingerprint: Option<&str>,
        known_hosts: Option<&str>,
    ) -> Result<HostKeyCheck, String> {
        match (fingerprint, known_hosts) {
            (Some(f), None) => {
                if !f.starts_with("SHA256:") || f.len() < 20 {
                    return Err(format!(
                        "hostKey `{f}`: expected a SHA256 fingerprint as `ssh-keygen -lf` prints it (SHA256:…)"
                    ));
                }
                Ok(HostKeyCheck::Fingerprint(f.to_string()))
            }
            (None, Some(lines)) => {
                let mut keys = Vec::new();
                for line in lines
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                {
                    // `[host]:port keytype base64 [comment]` or `keytype base64`.
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    let at = fields
                        .iter()
                        .position(|f| f.starts_with("ssh-") || f.starts_with("ecdsa-"))
                        .ok_or_else(|| format!("knownHosts: no key type in `{line}`"))?;
                    let text = fields[at..].join(" ");
                    keys.push(
                        PublicKey::from_openssh(&text)
                            .map_err(|e| format!("knownHosts: `{line}`: {e}"))?,
                    );
                }
                if keys.is_empty() {
                    return Err("knownHosts holds no key".into());
                }
                Ok(HostKeyCheck::Known(keys))
            }
            (None, None) => Err(
                "SSH host keys are always verified: give `hostKey: SHA256:…` or `knownHosts`"
                    .into(),
            ),
            (Some(_), Some(_)) => Err("give either `hostKey` or `knownHosts`, not both".into()),
        }
    }
}

fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// russh's handler: the host-key check.
struct Verifier {
    expected: HostKeyCheck,
    offered: Arc<Mutex<Option<String>>>,
}

impl client::Handler for Verifier {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            return Ok(false);
        };
        let fp = fingerprint(key);
        *self.offered.lock().unwrap() = Some(fp.clone());
        Ok(match &self.expected {
            HostKeyCheck::Fingerprint(want) => *want == fp,
            HostKeyCheck::Known(keys) => keys.iter().any(|k| k.key_data() == key.key_data()),
        })
    }
}

/// An open session (the guest holds a handle to it).
pub struct Session {
    handle: client::Handle<Verifier>,
    label: String,
}

/// Per-task state of the ssh interface.
pub struct SshState {
    pub grants: Vec<SshGrant>,
    pub sink: Arc<dyn TaskSink>,
    pub connect_timeout: Duration,
    /// Most bytes `get` collects in host memory (the task's memory limit:
    /// the guest could not hold more anyway).
    pub max_collect_bytes: usize,
    /// The task's log budget (with its redactor): remote output is task
    /// output like stdout.
    pub(crate) budget: Arc<super::log::Budget>,
}

/// The view the generated traits are implemented on (`exec-files` reads
/// the task's workspaces from its context).
pub type SshView<'a> = View<'a, SshState>;

/// The `ssh` capability: sessions to granted hosts, host keys verified,
/// credentials held by the host.
pub struct SshCap;

impl Capability for SshCap {
    const NAME: &'static str = "ssh";
    const INTERFACES: &'static [&'static str] = &["capstan:plugin/ssh"];
    type Grant = SshGrantSpec;
    type Prepared = Vec<SshGrant>;
    type State = SshState;

    fn link<T: TaskData>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
        crate::bindings::capstan::plugin::ssh::add_to_linker::<T, Data<Self>>(
            linker,
            view::<Self, T>,
        )
    }

    fn check(g: &SshGrantSpec, report: &mut dyn FnMut(&str, String)) {
        if let Err(e) = SshGrant::host_key(g.host_key.as_deref(), g.known_hosts.as_deref()) {
            report("", e);
        }
        if let Err(e) = super::secrets::check_name(&g.secret) {
            report("secret", e);
        }
    }

    fn secret_names(g: &SshGrantSpec) -> Vec<&str> {
        vec![&g.secret]
    }

    fn prepare(grants: &[SshGrantSpec], ctx: &PrepareCtx<'_>) -> Result<Vec<SshGrant>, String> {
        let mut out = Vec::with_capacity(grants.len());
        for g in grants {
            let value = (ctx.secret)(&g.secret)?;
            out.push(SshGrant {
                host: g.host.clone(),
                port: g.port,
                user: g.user.clone(),
                credential: SshGrant::credential(&value, g.auth == SshAuth::Password)
                    .map_err(|e| format!("secret `{}`: {e}", g.secret))?,
                host_key: SshGrant::host_key(g.host_key.as_deref(), g.known_hosts.as_deref())?,
            });
        }
        Ok(out)
    }

    fn instantiate(grants: Vec<SshGrant>, task: &TaskCtx) -> SshState {
        SshState {
            grants,
            sink: task.sink.clone(),
            connect_timeout: Duration::from_secs(30),
            max_collect_bytes: task.memory_cap,
            budget: task.budget.clone(),
        }
    }
}

fn denied(target: String) -> TaskError {
    TaskError::Denied(Denial {
        capability: "ssh".into(),
        target,
        layer: GrantLayer::Pipeline,
    })
}

mod exec;
mod process;
use exec::{CHUNK, ChunkWriter, PROGRESS_EVERY, Stdin, run};
pub use process::Process;

fn failed(e: impl std::fmt::Display) -> TaskError {
    TaskError::Failed(e.to_string())
}

fn valid_env_name(k: &str) -> Result<(), TaskError> {
    if k.is_empty() || !k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(TaskError::InvalidParams(format!(
            "`{k}` is not an environment variable name"
        )));
    }
    Ok(())
}

/// POSIX shell single-quoting.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_key_settings_are_required_and_checked() {
        assert!(
            SshGrant::host_key(None, None)
                .unwrap_err()
                .contains("always verified")
        );
        assert!(SshGrant::host_key(Some("md5:aa"), None).is_err());
        assert!(SshGrant::host_key(Some("SHA256:abcdefghijklmnopqrstuvwxyz"), None).is_ok());
        let line = "[127.0.0.1]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
        assert!(matches!(
            SshGrant::host_key(None, Some(line)).unwrap(),
            HostKeyCheck::Known(k) if k.len() == 1
        ));
        assert!(SshGrant::host_key(None, Some("garbage")).is_err());
    }

    #[test]
    fn quoting_survives_quotes() {
        assert_eq!(quote("a'b"), "'a'\\''b'");
    }
}
