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
use wasmtime::component::{Resource, ResourceTable};

use super::{LogLevel, TaskSink};
use crate::runtime::bindings::capstan::plugin::ssh::{ExecResult, Host, HostSession};
use crate::runtime::bindings::capstan::plugin::types::{Denial, GrantLayer, TaskError};

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

/// The view the generated traits are implemented on.
pub struct SshView<'a> {
    pub state: &'a mut SshState,
    /// The task's workspaces, for `exec-files`.
    pub files: &'a mut super::files::FilesState,
    pub table: &'a mut ResourceTable,
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

impl Host for SshView<'_> {
    async fn connect(
        &mut self,
        host: String,
        port: u16,
        user: String,
    ) -> Result<Resource<Session>, TaskError> {
        let Some(grant) = self
            .state
            .grants
            .iter()
            .find(|g| g.host.eq_ignore_ascii_case(&host) && g.port == port)
        else {
            self.state.sink.log(
                LogLevel::Warn,
                &super::log::one_line(&format!(
                    "denied: ssh {host}:{port} (layer: pipeline; not in this task's grants.ssh)"
                )),
            );
            return Err(denied(format!("{host}:{port}")));
        };
        let user = match (user.as_str(), &grant.user) {
            ("", Some(only)) => only.clone(),
            ("", None) => {
                return Err(failed(format!(
                    "ssh {host}:{port}: no user to log in as: name one (user@host) or set \
                     `user` on the grant"
                )));
            }
            _ => user,
        };
        let target = format!("{user}@{host}:{port}");
        if let Some(only) = &grant.user
            && *only != user
        {
            self.state.sink.log(
                LogLevel::Warn,
                &super::log::one_line(&format!(
                    "denied: ssh {target} (layer: pipeline; the grant allows user `{only}` only)"
                )),
            );
            return Err(denied(target));
        }
        let offered = Arc::new(Mutex::new(None));
        // AES-GCM first: hardware-accelerated, several times faster than
        // ChaCha20 for bulk transfers (sync up/back).
        let preferred = russh::Preferred {
            cipher: std::borrow::Cow::Owned(vec![
                russh::cipher::AES_256_GCM,
                russh::cipher::AES_128_GCM,
                russh::cipher::CHACHA20_POLY1305,
            ]),
            ..Default::default()
        };
        let config = Arc::new(client::Config {
            inactivity_timeout: None,
            keepalive_interval: Some(Duration::from_secs(5)),
            keepalive_max: 3,
            preferred,
            ..Default::default()
        });
        let verifier = Verifier {
            expected: grant.host_key.clone(),
            offered: offered.clone(),
        };
        let connecting = client::connect(config, (host.as_str(), port), verifier);
        let mut handle = match tokio::time::timeout(self.state.connect_timeout, connecting).await {
            Err(_) => {
                return Err(failed(format!(
                    "ssh {target}: no connection within {}s",
                    self.state.connect_timeout.as_secs()
                )));
            }
            Ok(Err(russh::Error::UnknownKey)) => {
                let fp = offered.lock().unwrap().clone().unwrap_or_default();
                let msg = format!(
                    "ssh {host}:{port}: host key {fp} is not the one the grant trusts; refusing to connect \
                     (if this key is right, pin it with `hostKey: {fp}`)"
                );
                self.state.sink.log(LogLevel::Error, &msg);
                return Err(failed(msg));
            }
            Ok(Err(e)) => return Err(failed(format!("ssh {target}: {e}"))),
            Ok(Ok(h)) => h,
        };
        let auth = match &grant.credential {
            Credential::Key(key) => {
                let hash = handle
                    .best_supported_rsa_hash()
                    .await
                    .map_err(|e| failed(format!("ssh {target}: {e}")))?
                    .flatten();
                handle
                    .authenticate_publickey(&user, PrivateKeyWithHashAlg::new(key.clone(), hash))
                    .await
            }
            Credential::Password(p) => handle.authenticate_password(&user, p).await,
        }
        .map_err(|e| failed(format!("ssh {target}: authentication: {e}")))?;
        if !auth.success() {
            return Err(failed(format!(
                "ssh {target}: authentication refused by the server (check the grant's secret)"
            )));
        }
        let fp = offered.lock().unwrap().clone().unwrap_or_default();
        self.state.sink.log(
            LogLevel::Info,
            &format!("ssh: connected to {target} (host key {fp})"),
        );
        self.table
            .push(Session {
                handle,
                label: target,
            })
            .map_err(failed)
    }
}

impl SshView<'_> {
    async fn exec_with(
        &mut self,
        s: Resource<Session>,
        command: String,
        env: Vec<(String, String)>,
        input: Stdin<'_>,
    ) -> Result<ExecResult, TaskError> {
        let session = self.table.get(&s).map_err(failed)?;
        let mut full = String::new();
        for (k, v) in &env {
            valid_env_name(k)?;
            full.push_str(&format!("export {k}={}; ", quote(v)));
        }
        full.push_str(&command);
        let (code, out, err) = run(
            session,
            (&*self.state.sink, &self.state.budget),
            &full,
            input,
            None,
        )
        .await?;
        Ok(ExecResult {
            exit_code: code,
            stdout_tail: String::from_utf8_lossy(&out).into_owned(),
            stderr_tail: String::from_utf8_lossy(&err).into_owned(),
        })
    }
}

impl HostSession for SshView<'_> {
    async fn start(
        &mut self,
        s: Resource<Session>,
        command: String,
        env: Vec<(String, String)>,
    ) -> Result<Resource<Process>, TaskError> {
        self.start_process(s, command, env).await
    }

    async fn exec(
        &mut self,
        s: Resource<Session>,
        command: String,
        env: Vec<(String, String)>,
    ) -> Result<ExecResult, TaskError> {
        self.exec_with(s, command, env, Stdin::None).await
    }

    async fn exec_input(
        &mut self,
        s: Resource<Session>,
        command: String,
        env: Vec<(String, String)>,
        input: Vec<u8>,
    ) -> Result<ExecResult, TaskError> {
        self.exec_with(s, command, env, Stdin::Bytes(&input)).await
    }

    async fn exec_files(
        &mut self,
        s: Resource<Session>,
        command: String,
        env: Vec<(String, String)>,
        dir: String,
        paths: Vec<String>,
    ) -> Result<ExecResult, TaskError> {
        // Confined like `files.pack`: a directory of the task's workspaces.
        let root = self.files.open_dir(&dir)?;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let sink = self.state.sink.clone();
        let packer = tokio::task::spawn_blocking(move || {
            let w = ChunkWriter {
                tx,
                buf: Vec::with_capacity(CHUNK),
            };
            // Files are counted as they go into the stream (which runs at
            // the pace the remote side reads it).
            let total = paths.len();
            let mut last = std::time::Instant::now();
            let mut report = |done: usize| {
                if done == total || last.elapsed() >= PROGRESS_EVERY {
                    last = std::time::Instant::now();
                    sink.progress("sending files", done as u64, Some(total as u64));
                }
            };
            super::files::write_tar(&root, &paths, w, &mut report)?
                .finish()
                .map_err(|e| failed(format!("packing: {e}")))
        });
        let result = self.exec_with(s, command, env, Stdin::Stream(rx)).await;
        packer
            .await
            .map_err(|e| failed(format!("packing: {e}")))??;
        result
    }

    async fn put(
        &mut self,
        s: Resource<Session>,
        remote_path: String,
        contents: Vec<u8>,
        mode: u32,
    ) -> Result<(), TaskError> {
        let session = self.table.get(&s).map_err(failed)?;
        let p = quote(&remote_path);
        let cmd = format!(
            "mkdir -p \"$(dirname {p})\" && cat > {p}.capstan-tmp && chmod {:o} {p}.capstan-tmp && mv -f {p}.capstan-tmp {p}",
            mode & 0o7777
        );
        let (code, _, err) = run(
            session,
            (&*self.state.sink, &self.state.budget),
            &cmd,
            Stdin::Bytes(&contents),
            Some(self.state.max_collect_bytes),
        )
        .await?;
        if code != 0 {
            return Err(failed(format!(
                "ssh {}: writing {remote_path}: {}",
                session.label,
                String::from_utf8_lossy(&err).trim()
            )));
        }
        Ok(())
    }

    async fn get(
        &mut self,
        s: Resource<Session>,
        remote_path: String,
    ) -> Result<Vec<u8>, TaskError> {
        let session = self.table.get(&s).map_err(failed)?;
        let cmd = format!("cat {}", quote(&remote_path));
        let (code, out, err) = run(
            session,
            (&*self.state.sink, &self.state.budget),
            &cmd,
            Stdin::None,
            Some(self.state.max_collect_bytes),
        )
        .await?;
        if code != 0 {
            return Err(failed(format!(
                "ssh {}: reading {remote_path}: {}",
                session.label,
                String::from_utf8_lossy(&err).trim()
            )));
        }
        Ok(out)
    }

    fn drop(&mut self, s: Resource<Session>) -> wasmtime::Result<()> {
        self.table.delete(s)?;
        Ok(())
    }
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
