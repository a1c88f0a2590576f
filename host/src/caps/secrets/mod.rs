//! The `secrets` capability and the local secret store.
//!
//! Secrets never enter a sandbox unless a task must see them: a pipeline
//! grants a task secret *names*; the plugin opens an opaque handle by name,
//! and reads the value only if the grant says `reveal: true`. Values a task
//! may see are redacted from every log line it writes. Secrets bound to an
//! HTTP authority (see [`super::http`]) are used by the host only.
//!
//! Local mode keeps secrets in `STATE/secrets/NAME` (mode 0600), managed
//! with `capstan secret set|list|rm`. In Kubernetes mode a secret name is a
//! `Secret` in the run's namespace, read impersonating the run's
//! ServiceAccount (so the cluster's RBAC decides too), only for the names
//! the run's tasks are granted ([`SecretSource::cluster`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
use wasmtime::component::Linker;

mod host;
mod spec;

use super::capability::{Capability, Data, PrepareCtx, TaskCtx, TaskData, view};
pub use spec::SecretGrantSpec;

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

/// Where a run's secrets come from.
pub enum SecretSource {
    Local(LocalSecrets),
    /// Read from the cluster when the run (re)starts: name → value, or why
    /// it cannot be had (missing, forbidden, no usable key).
    Cluster(HashMap<String, Result<Arc<Vec<u8>>, String>>),
    /// None at all, and why (a run of an untrusted pull request).
    Withheld(String),
}

impl SecretSource {
    /// The value of a granted secret, or an error naming it.
    /// Values too short to redact are refused here, whatever their source
    /// ([`super::redact::check_length`]).
    pub fn require(&self, name: &str) -> Result<Vec<u8>, String> {
        let v = match self {
            SecretSource::Local(s) => s.require(name).map_err(|e| format!("{e:#}"))?,
            SecretSource::Cluster(m) => match m.get(name) {
                Some(Ok(v)) => v.as_ref().clone(),
                Some(Err(e)) => return Err(e.clone()),
                None => return Err(format!("secret `{name}` was not read for this run")),
            },
            SecretSource::Withheld(why) => return Err(format!("secret `{name}`: {why}")),
        };
        super::redact::check_length(name, &v)?;
        Ok(v)
    }

    /// Read `names` from Secrets in `namespace`, as `impersonate` (the run's
    /// ServiceAccount). The controller itself holds no right to read
    /// Secrets: what the run's ServiceAccount may not read, the run does
    /// not get.
    pub async fn cluster(
        client: &kube::Client,
        namespace: &str,
        impersonate: Option<&str>,
        names: impl IntoIterator<Item = String>,
    ) -> SecretSource {
        let mut map = HashMap::new();
        for name in names {
            if map.contains_key(&name) {
                continue;
            }
            let v = read_cluster_secret(client, namespace, impersonate, &name).await;
            map.insert(name, v.map(Arc::new));
        }
        SecretSource::Cluster(map)
    }
}

/// The value of Secret `name` of `namespace`, read as `impersonate`.
pub async fn read_cluster_secret(
    client: &kube::Client,
    namespace: &str,
    impersonate: Option<&str>,
    name: &str,
) -> Result<Vec<u8>, String> {
    let secret = get_cluster_secret(client, namespace, impersonate, name).await?;
    secret_value(name, &secret)
}

/// Secret `name` of `namespace`, read as `impersonate`; errors name the
/// Secret and why (missing, RBAC).
pub async fn get_cluster_secret(
    client: &kube::Client,
    namespace: &str,
    impersonate: Option<&str>,
    name: &str,
) -> Result<k8s_openapi::api::core::v1::Secret, String> {
    use http_body_util::BodyExt as _;
    check_name(name)?;
    check_name(namespace).map_err(|e| format!("namespace: {e}"))?;
    let mut b = http::Request::builder()
        .uri(format!("/api/v1/namespaces/{namespace}/secrets/{name}"))
        .header(http::header::ACCEPT, "application/json");
    if let Some(who) = impersonate {
        b = b.header("Impersonate-User", who);
    }
    let req = b
        .body(kube::client::Body::empty())
        .map_err(|e| e.to_string())?;
    let res = client
        .send(req)
        .await
        .map_err(|e| format!("secret `{name}`: Kubernetes API: {e}"))?;
    let status = res.status().as_u16();
    let body = http_body_util::Limited::new(res.into_body(), 2 << 20)
        .collect()
        .await
        .map_err(|e| format!("secret `{name}`: Kubernetes API response: {e}"))?
        .to_bytes();
    let who = impersonate.unwrap_or("the controller");
    match status {
        200 => {}
        404 => {
            return Err(format!(
                "secret `{name}`: no Secret `{name}` in namespace `{namespace}`"
            ));
        }
        403 => {
            return Err(format!(
                "secret `{name}`: {who} may not get Secret `{name}` in namespace `{namespace}` (RBAC)"
            ));
        }
        s => {
            return Err(format!(
                "secret `{name}`: Kubernetes API answered {s}: {}",
                String::from_utf8_lossy(&body[..body.len().min(300)])
            ));
        }
    }
    serde_json::from_slice(&body).map_err(|e| format!("secret `{name}`: unreadable Secret: {e}"))
}

/// The one value of a Secret a capstan secret name stands for: the key
/// `value`; else the only key; else the conventional key of its type
/// (`ssh-privatekey`, `token`, `password`).
pub fn secret_value(
    name: &str,
    secret: &k8s_openapi::api::core::v1::Secret,
) -> Result<Vec<u8>, String> {
    let key = secret_key(name, secret)?;
    let data = secret.data.as_ref();
    Ok(data
        .and_then(|d| d.get(&key))
        .map(|v| v.0.clone())
        .unwrap_or_default())
}

/// Which key of a Secret holds the secret's value: `value`, the only key,
/// or the key its type names (`ssh-privatekey`, `token`, `password`).
pub fn secret_key(
    name: &str,
    secret: &k8s_openapi::api::core::v1::Secret,
) -> Result<String, String> {
    let empty = Default::default();
    let data = secret.data.as_ref().unwrap_or(&empty);
    if data.contains_key("value") {
        return Ok("value".into());
    }
    if data.len() == 1 {
        return Ok(data.keys().next().unwrap().clone());
    }
    let by_type = match secret.type_.as_deref() {
        Some("kubernetes.io/ssh-auth") => Some("ssh-privatekey"),
        Some("kubernetes.io/service-account-token") => Some("token"),
        Some("kubernetes.io/basic-auth") => Some("password"),
        _ => None,
    };
    if let Some(k) = by_type.filter(|k| data.contains_key(*k)) {
        return Ok(k.to_string());
    }
    let keys: Vec<&String> = data.keys().collect();
    Err(format!(
        "secret `{name}`: the Secret has no key `value` and keys {keys:?}; put the value under `value`"
    ))
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
}

/// The `secrets` capability: opaque handles by name; values only where the
/// grant says `reveal: true`.
pub struct SecretsCap;

impl Capability for SecretsCap {
    const NAME: &'static str = "secrets";
    const INTERFACES: &'static [&'static str] = &["capstan:plugin/secrets"];
    type Grant = SecretGrantSpec;
    type Prepared = Vec<SecretGrant>;
    type State = SecretsState;

    fn link<T: TaskData>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
        crate::bindings::capstan::plugin::secrets::add_to_linker::<T, Data<Self>>(
            linker,
            view::<Self, T>,
        )
    }

    fn check(grant: &SecretGrantSpec, report: &mut dyn FnMut(&str, String)) {
        if let Err(e) = check_name(grant.name()) {
            report("", e);
        }
    }

    fn secret_names(grant: &SecretGrantSpec) -> Vec<&str> {
        vec![grant.name()]
    }

    fn prepare(
        grants: &[SecretGrantSpec],
        ctx: &PrepareCtx<'_>,
    ) -> Result<Vec<SecretGrant>, String> {
        grants
            .iter()
            .map(|g| {
                Ok(SecretGrant {
                    name: g.name().to_string(),
                    reveal: g.reveal(),
                    value: Arc::new((ctx.secret)(g.name())?),
                })
            })
            .collect()
    }

    fn instantiate(prepared: Vec<SecretGrant>, _: &TaskCtx) -> SecretsState {
        SecretsState {
            granted: prepared.into_iter().map(|g| (g.name.clone(), g)).collect(),
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
