//! The `secrets` capability and the local secret store.
//!
//! Secrets never enter a sandbox unless a task must see them: a pipeline
//! grants a task secret *names*; the plugin opens an opaque handle by name,
//! and reads the value only if the grant says `reveal: true`. Values a task
//! may see are redacted from every log line it writes. Secrets bound to an
//! HTTP authority (see [`super::http`]) are used by the host only.
//!
//! Local mode keeps secrets in `STATE/secrets/NAME` (mode 0600), managed
//! with `capstan secret set|list|rm`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
use wasmtime::component::Resource;

use super::{LogLevel, TaskSink};
use crate::runtime::bindings::capstan::plugin::secrets::{Host, HostSecret};
use crate::runtime::bindings::capstan::plugin::types::{Denial, GrantLayer, TaskError};

/// Secret names: what Kubernetes accepts for a Secret (DNS subdomain).
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a secret name (lowercase letters, digits, `-`, `.`)"
        ))
    }
}

/// Secrets in a directory, one file per secret.
#[derive(Debug, Clone)]
pub struct LocalSecrets {
    dir: PathBuf,
}

impl LocalSecrets {
    pub fn new(dir: &Path) -> LocalSecrets {
        LocalSecrets {
            dir: dir.to_path_buf(),
        }
    }

    pub fn get(&self, name: &str) -> Result<Option<Vec<u8>>> {
        check_name(name).map_err(anyhow::Error::msg)?;
        let path = self.dir.join(name);
        match std::fs::read(&path) {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading secret {}", path.display())),
        }
    }

    pub fn set(&self, name: &str, value: &[u8]) -> Result<()> {
        use std::io::Write;
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        check_name(name).map_err(anyhow::Error::msg)?;
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700))?;
        let tmp = self.dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("writing {}", tmp.display()))?;
        f.write_all(value)?;
        f.sync_all()?;
        std::fs::rename(&tmp, self.dir.join(name))?;
        Ok(())
    }

    pub fn remove(&self, name: &str) -> Result<bool> {
        check_name(name).map_err(anyhow::Error::msg)?;
        match std::fs::remove_file(self.dir.join(name)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    pub fn list(&self) -> Result<Vec<String>> {
        let mut names = Vec::new();
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(names),
            Err(e) => return Err(e.into()),
        };
        for e in entries {
            let name = e?.file_name().to_string_lossy().into_owned();
            if check_name(&name).is_ok() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    /// The value, or an error naming the secret and how to set it.
    pub fn require(&self, name: &str) -> Result<Vec<u8>> {
        match self.get(name)? {
            Some(v) => Ok(v),
            None => bail!("secret `{name}` is not set (set it with `capstan secret set {name}`)"),
        }
    }
}

/// A secret granted to a task.
#[derive(Clone)]
pub struct SecretGrant {
    pub name: String,
    /// Whether the plugin may read the value.
    pub reveal: bool,
    pub value: Arc<Vec<u8>>,
}

/// The guest's handle: only the name.
pub struct Secret {
    name: String,
}

/// Per-task state of the secrets interface.
pub struct SecretsState {
    pub granted: HashMap<String, SecretGrant>,
    pub sink: Arc<dyn TaskSink>,
}

fn denied(target: &str, why: &str) -> TaskError {
    TaskError::Denied(Denial {
        capability: "secrets".into(),
        target: format!("{target}: {why}"),
        layer: GrantLayer::Pipeline,
    })
}

impl SecretsState {
    fn table_get<'a>(
        table: &'a wasmtime::component::ResourceTable,
        r: &Resource<Secret>,
    ) -> wasmtime::Result<&'a Secret> {
        Ok(table.get(r)?)
    }
}

/// The view the generated `Host` traits are implemented on.
pub struct SecretsView<'a> {
    pub state: &'a mut SecretsState,
    pub table: &'a mut wasmtime::component::ResourceTable,
}

impl HostSecret for SecretsView<'_> {
    fn name(&mut self, s: Resource<Secret>) -> String {
        SecretsState::table_get(self.table, &s)
            .map(|s| s.name.clone())
            .unwrap_or_default()
    }

    fn drop(&mut self, s: Resource<Secret>) -> wasmtime::Result<()> {
        self.table.delete(s)?;
        Ok(())
    }
}

impl Host for SecretsView<'_> {
    fn open(&mut self, name: String) -> Result<Resource<Secret>, TaskError> {
        if !self.state.granted.contains_key(&name) {
            self.state.sink.log(
                LogLevel::Warn,
                &format!(
                    "denied: secrets open `{name}` (layer: pipeline; not in this task's grants.secrets)"
                ),
            );
            return Err(denied(&name, "not granted to this task"));
        }
        self.table
            .push(Secret { name })
            .map_err(|e| TaskError::Failed(format!("secret handle: {e}")))
    }

    fn reveal(&mut self, s: Resource<Secret>) -> Result<Vec<u8>, TaskError> {
        let name = SecretsState::table_get(self.table, &s)
            .map_err(|e| TaskError::Failed(format!("secret handle: {e}")))?
            .name
            .clone();
        match self.state.granted.get(&name) {
            Some(g) if g.reveal => Ok(g.value.to_vec()),
            _ => {
                self.state.sink.log(
                    LogLevel::Warn,
                    &format!(
                        "denied: secrets reveal `{name}` (layer: pipeline; the grant does not say `reveal: true`)"
                    ),
                );
                Err(denied(&name, "the grant does not allow reading the value"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_store_round_trip_and_modes() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let s = LocalSecrets::new(&dir.path().join("secrets"));
        assert!(s.get("git-token").unwrap().is_none());
        s.set("git-token", b"u:p").unwrap();
        assert_eq!(s.require("git-token").unwrap(), b"u:p");
        let mode = std::fs::metadata(dir.path().join("secrets/git-token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(s.list().unwrap(), vec!["git-token"]);
        assert!(s.remove("git-token").unwrap());
        let e = s.require("git-token").unwrap_err().to_string();
        assert!(e.contains("capstan secret set git-token"), "{e}");
        assert!(s.set("../x", b"").is_err());
    }
}
