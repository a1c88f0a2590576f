//! Generated `Host` impls for `capstan:plugin/ssh` (sessions; processes
//! are in `process.rs`).

use std::sync::{Arc, Mutex};

use russh::client;
use wasmtime::component::Resource;

use super::*;
use crate::bindings::capstan::plugin::ssh::{ExecResult, Host, HostSession};
use crate::caps::files::FilesState;

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
                &crate::caps::log::one_line(&format!(
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
                &crate::caps::log::one_line(&format!(
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
        let root = FilesState::of(self.task).open_dir(&dir)?;
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
            crate::caps::files::write_tar(&root, &paths, w, &mut report)?
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
