//! Where a server's repositories and their secrets come from: locally
//! `STATE/repositories.yaml` and the local secret store ([`LocalRepos`]);
//! in Kubernetes mode `Repository` resources and the Secrets of their
//! namespaces (`crate::cluster::repository`). The forge sees only this.

use std::path::PathBuf;

use futures::future::BoxFuture;

use super::Provider;
use super::repo::{RepoFile, RepositorySpec};
use crate::caps::secrets::LocalSecrets;
use crate::store::KubeIdentity;

/// A configured repository.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its name: `NAME` locally, `NAMESPACE/NAME` in Kubernetes mode.
    pub name: String,
    pub spec: RepositorySpec,
    /// Kubernetes mode: the namespace and ServiceAccount its runs act as.
    pub kube: Option<KubeIdentity>,
}

impl Entry {
    /// Whether a payload of `provider` about `project` is this
    /// repository's.
    pub fn is_for(&self, provider: Provider, project: &str) -> bool {
        self.spec.is_for(provider, project)
    }
}

/// What a delivery did, for the repository's own record (Kubernetes mode:
/// its `status`).
#[derive(Debug, Clone)]
pub struct Finished {
    pub delivery: String,
    pub event: String,
    pub status: u16,
    pub outcome: String,
    /// The runs it started: (id, pipeline, number).
    pub runs: Vec<(String, String, Option<i64>)>,
}

/// The repositories of a server.
pub trait Repositories: Send + Sync {
    /// Every usable repository (an unusable one is reported where it is
    /// configured, and left out).
    fn list(&self) -> anyhow::Result<Vec<Entry>>;

    /// A secret of `repo`, by name; errors name the secret and why.
    /// `sent_to`: the hosts the server will send it to (none: it is only
    /// compared here, as a webhook secret is).
    fn secret<'a>(
        &'a self,
        repo: &'a Entry,
        name: &'a str,
        sent_to: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<u8>, String>>;

    /// A delivery of `repo` finished.
    fn finished(&self, _repo: &str, _what: Finished) {}

    /// Where they are configured (for messages).
    fn describe(&self) -> String;
}

/// Every repository a payload of `provider` about `project` may be for:
/// more than one when two namespaces (or two entries) claim one project;
/// the delivery's signature decides.
pub fn candidates(
    repos: &dyn Repositories,
    provider: Provider,
    project: &str,
) -> anyhow::Result<Vec<Entry>> {
    Ok(repos
        .list()?
        .into_iter()
        .filter(|e| e.is_for(provider, project))
        .collect())
}

/// The repository named `name`.
pub fn by_name(repos: &dyn Repositories, name: &str) -> anyhow::Result<Option<Entry>> {
    Ok(repos.list()?.into_iter().find(|e| e.name == name))
}

/// The hosts (`host` or `host:port`) a repository's token is sent to: its
/// clone URL's and its API's.
pub fn token_hosts(spec: &super::repo::RepositorySpec) -> Vec<String> {
    let mut out: Vec<String> = [spec.url.clone(), spec.api()]
        .iter()
        .filter_map(|u| u.parse::<http::Uri>().ok())
        .filter_map(|u| u.authority().map(|a| a.as_str().to_ascii_lowercase()))
        .collect();
    out.dedup();
    out
}

/// Local mode: the repositories file, read at each use (a change needs no
/// restart), and the local secret store.
pub struct LocalRepos {
    pub file: PathBuf,
    pub secrets: LocalSecrets,
}

impl Repositories for LocalRepos {
    fn list(&self) -> anyhow::Result<Vec<Entry>> {
        Ok(RepoFile::load(&self.file)?
            .repositories
            .into_iter()
            .map(|(name, spec)| Entry {
                name,
                spec,
                kube: None,
            })
            .collect())
    }

    /// The local server is one user's: its secrets go where its
    /// repositories say.
    fn secret<'a>(
        &'a self,
        _repo: &'a Entry,
        name: &'a str,
        _sent_to: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<u8>, String>> {
        let v = self.secrets.require(name).map_err(|e| format!("{e:#}"));
        Box::pin(async move { v })
    }

    fn describe(&self) -> String {
        self.file.display().to_string()
    }
}
