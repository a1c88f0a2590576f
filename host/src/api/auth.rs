//! Who is calling the API, and what they may read.
//!
//! - Locally (`capstan serve`): bearer tokens from `STATE/api-tokens.toml`,
//!   stored as SHA-256 digests (`capstan token add` makes one and prints it
//!   once). The file is read per request, so added tokens work at once.
//! - In Kubernetes (`capstan controller --listen`): the caller's bearer
//!   token is checked with a `TokenReview` (user and groups), and reading a
//!   run is authorized with a `SubjectAccessReview` for `get pipelineruns` in
//!   the run's namespace — so `kubectl`'s own credentials work, and the
//!   cluster's RBAC decides who sees which run.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::ApiError;

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Identity {
    pub user: String,
    pub groups: Vec<String>,
}

pub enum Auth {
    /// Tokens from a file (local mode).
    Tokens(PathBuf),
    /// TokenReview and SubjectAccessReview against the cluster.
    Kube {
        client: kube::Client,
        /// Token digest → identity, for [`Auth::CACHE_FOR`].
        cache: Mutex<HashMap<[u8; 32], (Instant, Identity)>>,
    },
}

/// `STATE/api-tokens.toml`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenFile {
    #[serde(default, rename = "token")]
    pub tokens: Vec<TokenEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    pub user: String,
    #[serde(default)]
    pub groups: Vec<String>,
    /// Hex SHA-256 of the token.
    pub sha256: String,
}

impl TokenFile {
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join("api-tokens.toml")
    }

    pub fn load(path: &Path) -> anyhow::Result<TokenFile> {
        use anyhow::Context as _;
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text).with_context(|| format!("{}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(TokenFile::default()),
            Err(e) => Err(anyhow::Error::new(e).context(format!("reading {}", path.display()))),
        }
    }

    /// Add a user's token (a new random one, returned) and save the file
    /// (mode 0600).
    pub fn add(path: &Path, user: &str, groups: &[String]) -> anyhow::Result<String> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        if user.is_empty() || user.chars().any(|c| c.is_control()) {
            anyhow::bail!("`{user}` is not a user name");
        }
        let mut file = TokenFile::load(path)?;
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw).map_err(|e| anyhow::anyhow!("random token: {e}"))?;
        let token = format!("capstan_{}", hex::encode(raw));
        file.tokens.push(TokenEntry {
            user: user.to_string(),
            groups: groups.to_vec(),
            sha256: digest_hex(&token),
        });
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(toml::to_string(&file)?.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        Ok(token)
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn digest_hex(token: &str) -> String {
    hex::encode(digest(token))
}

/// Compare without an early exit on the first differing byte.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Auth {
    const CACHE_FOR: Duration = Duration::from_secs(10);

    pub fn kube(client: kube::Client) -> Auth {
        Auth::Kube {
            client,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The caller behind a bearer token.
    pub async fn identify(&self, token: &str) -> Result<Identity, ApiError> {
        if token.is_empty() {
            return Err(ApiError::unauthorized("no bearer token"));
        }
        match self {
            Auth::Tokens(path) => {
                let file = TokenFile::load(path).map_err(ApiError::internal)?;
                let want = digest_hex(token);
                file.tokens
                    .iter()
                    .find(|t| same(t.sha256.as_bytes(), want.as_bytes()))
                    .map(|t| Identity {
                        user: t.user.clone(),
                        groups: t.groups.clone(),
                    })
                    .ok_or_else(|| ApiError::unauthorized("unknown token"))
            }
            Auth::Kube { client, cache } => {
                let key = digest(token);
                if let Some((at, id)) = cache.lock().unwrap().get(&key)
                    && at.elapsed() < Self::CACHE_FOR
                {
                    return Ok(id.clone());
                }
                let review = TokenReview {
                    spec: TokenReviewSpec {
                        token: Some(token.to_string()),
                        ..Default::default()
                    },
                    ..Default::default()
                };
                let api: Api<TokenReview> = Api::all(client.clone());
                let out = api
                    .create(&PostParams::default(), &review)
                    .await
                    .map_err(|e| ApiError::internal(format!("TokenReview: {e}")))?;
                let status = out.status.unwrap_or_default();
                if status.authenticated != Some(true) {
                    return Err(ApiError::unauthorized(
                        status
                            .error
                            .unwrap_or_else(|| "the cluster did not accept the token".into()),
                    ));
                }
                let user = status.user.unwrap_or_default();
                let id = Identity {
                    user: user.username.unwrap_or_default(),
                    groups: user.groups.unwrap_or_default(),
                };
                let mut c = cache.lock().unwrap();
                c.retain(|_, (at, _)| at.elapsed() < Self::CACHE_FOR);
                c.insert(key, (Instant::now(), id.clone()));
                Ok(id)
            }
        }
    }

    /// May `who` read runs of `namespace` (`None`: a local run)?
    pub async fn may_read(&self, who: &Identity, namespace: Option<&str>) -> Result<(), ApiError> {
        self.may(who, namespace, "get").await
    }

    /// May `who` cancel or stop runs of `namespace`? In the cluster, as
    /// for `kubectl patch` of the PipelineRun's `spec.status`.
    pub async fn may_stop(&self, who: &Identity, namespace: Option<&str>) -> Result<(), ApiError> {
        self.may(who, namespace, "patch").await
    }

    /// The local server is one user's: any known token may. In the
    /// cluster, whoever may `verb` the run's PipelineRun.
    async fn may(
        &self,
        who: &Identity,
        namespace: Option<&str>,
        verb: &str,
    ) -> Result<(), ApiError> {
        match self {
            Auth::Tokens(_) => Ok(()),
            Auth::Kube { client, .. } => {
                let Some(ns) = namespace else {
                    return Err(ApiError::forbidden(
                        "this run is not a PipelineRun of the cluster",
                    ));
                };
                self.check_access(client, who, ns, verb).await
            }
        }
    }

    async fn check_access(
        &self,
        client: &kube::Client,
        who: &Identity,
        ns: &str,
        verb: &str,
    ) -> Result<(), ApiError> {
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(who.user.clone()),
                groups: Some(who.groups.clone()),
                resource_attributes: Some(ResourceAttributes {
                    group: Some("capstan.dev".into()),
                    resource: Some("pipelineruns".into()),
                    verb: Some(verb.into()),
                    namespace: Some(ns.into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let api: Api<SubjectAccessReview> = Api::all(client.clone());
        let out = api
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| ApiError::internal(format!("SubjectAccessReview: {e}")))?;
        if out.status.is_some_and(|s| s.allowed) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "{} may not {verb} pipelineruns.capstan.dev in namespace `{ns}`",
                who.user
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_tokens_identify_by_digest() {
        let dir = tempfile::tempdir().unwrap();
        let path = TokenFile::path(dir.path());
        let t1 = TokenFile::add(&path, "alice", &["release".into()]).unwrap();
        let t2 = TokenFile::add(&path, "bob", &[]).unwrap();
        assert_ne!(t1, t2);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&t1), "the token itself is stored");
        let auth = Auth::Tokens(path);
        let id = auth.identify(&t1).await.unwrap();
        assert_eq!(id.user, "alice");
        assert_eq!(id.groups, vec!["release".to_string()]);
        assert_eq!(auth.identify(&t2).await.unwrap().user, "bob");
        assert_eq!(auth.identify("nope").await.unwrap_err().status, 401);
        assert_eq!(auth.identify("").await.unwrap_err().status, 401);
    }
}
