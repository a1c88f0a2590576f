//! `kind: Repository` (`capstan.dev/v1alpha1`): a repository of Kubernetes
//! mode, generated from [`RepositorySpec`] like the other resources. Its
//! secrets are Secrets of its own namespace, read as its
//! `serviceAccountName` (as its runs read theirs), and its runs act in its
//! namespace as that ServiceAccount. The controller writes its status: is
//! the spec usable, the last delivery, the last run.

use std::sync::Arc;

use futures::StreamExt as _;
use futures::future::BoxFuture;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{WatchStreamExt as _, reflector, watcher};
use kube::{Client, CustomResource, ResourceExt as _};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::crd::Condition;
use crate::forge::repo::RepositorySpec;
use crate::forge::source::{Entry, Finished, Repositories};
use crate::store::{KubeIdentity, now_us};

/// The resource: [`RepositorySpec`] as its spec.
#[derive(CustomResource, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "capstan.dev",
    version = "v1alpha1",
    kind = "Repository",
    root = "RepositoryResource",
    namespaced,
    status = "RepositoryStatus",
    shortname = "repo",
    category = "capstan",
    printcolumn = r#"{"name":"Provider","type":"string","jsonPath":".spec.provider"}"#,
    printcolumn = r#"{"name":"Project","type":"string","jsonPath":".status.project"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Last delivery","type":"string","jsonPath":".status.lastDelivery.outcome","priority":1}"#,
    printcolumn = r#"{"name":"Last run","type":"string","jsonPath":".status.lastRun.id"}"#
)]
pub struct RepositoryResourceSpec {
    #[serde(flatten)]
    pub spec: RepositorySpec,
}

/// What the controller reports (merge patches of the status subresource:
/// `project` and `conditions` when the spec changes, `lastDelivery` and
/// `lastRun` as deliveries finish).
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RepositoryStatus {
    /// The forge's project name payloads are matched against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// `Ready`: `True`, or `False` with every problem of the spec.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_delivery: Option<LastDelivery>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<LastRun>,
}

/// The newest delivery (or schedule firing) the server finished.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LastDelivery {
    pub id: String,
    pub event: String,
    /// The HTTP status it was answered with.
    pub status: u16,
    pub outcome: String,
    pub time: String,
}

/// The newest run a delivery started.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LastRun {
    /// The run's id (`capstan runs show ID`, `GET /v1/runs/ID`).
    pub id: String,
    pub pipeline: String,
    /// Its number among the pipeline's runs (written as `null` when it has
    /// none, so a merge patch clears an older one).
    #[serde(default)]
    pub number: Option<i64>,
    pub time: String,
}

/// The ServiceAccount a Repository acts as.
fn service_account(spec: &RepositorySpec) -> String {
    spec.service_account_name
        .clone()
        .unwrap_or_else(|| "default".into())
}

/// Kubernetes mode's repositories: the `Repository` resources this
/// controller watches (one namespace or all), each named `NAMESPACE/NAME`.
pub struct KubeRepos {
    client: Client,
    store: reflector::Store<RepositoryResource>,
    /// Deliveries' records, written in order by one task.
    finished: tokio::sync::mpsc::UnboundedSender<(String, Finished)>,
}

impl KubeRepos {
    /// Watch the Repositories of `namespace` (None: all) and keep their
    /// status; fails at once when the resource is not installed.
    pub async fn start(client: Client, namespace: Option<&str>) -> anyhow::Result<Arc<KubeRepos>> {
        use anyhow::Context as _;
        let api: Api<RepositoryResource> = match namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        api.list(&kube::api::ListParams::default().limit(1))
            .await
            .context(
                "listing Repositories (are the CRDs installed? `capstan crds | kubectl apply -f -`)",
            )?;
        let (store, writer) = reflector::store();
        let stream = reflector(writer, watcher(api, watcher::Config::default()))
            .default_backoff()
            .applied_objects();
        let c = client.clone();
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(item) = stream.next().await {
                match item {
                    Ok(repo) => {
                        if let Err(e) = write_readiness(&c, &repo).await {
                            tracing::warn!(repository = %repo.name_any(), "writing its status: {e}");
                        }
                    }
                    Err(e) => tracing::warn!("watching Repositories: {e}"),
                }
            }
        });
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, Finished)>();
        let c = client.clone();
        tokio::spawn(async move {
            while let Some((name, what)) = rx.recv().await {
                if let Err(e) = write_delivery(&c, &name, &what).await {
                    tracing::warn!(repository = %name, "recording its last delivery: {e}");
                }
            }
        });
        tokio::time::timeout(std::time::Duration::from_secs(60), store.wait_until_ready())
            .await
            .context(
                "watching Repositories: no list within 60 s (RBAC: list and watch repositories)",
            )?
            .context("listing Repositories")?;
        Ok(Arc::new(KubeRepos {
            client,
            store,
            finished: tx,
        }))
    }
}

/// The annotation of a Secret the server sends to a forge: the hosts
/// (`host` or `host:port`, comma-separated) it may go to.
pub const HOSTS: &str = "capstan.dev/hosts";

/// Whether Secret `name` may be sent to every one of `hosts`.
fn allowed_hosts(
    name: &str,
    secret: &k8s_openapi::api::core::v1::Secret,
    hosts: &[String],
) -> Result<(), String> {
    let listed: Vec<String> = secret
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(HOSTS))
        .map(|v| {
            v.split(',')
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let missing: Vec<&String> = hosts.iter().filter(|h| !listed.contains(h)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(format!(
        "secret `{name}` may not be sent to {}: its annotation `{HOSTS}` lists {:?} \
         (annotate it with every host the Repository's url and apiUrl name)",
        missing
            .iter()
            .map(|h| format!("`{h}`"))
            .collect::<Vec<_>>()
            .join(", "),
        listed
    ))
}

/// `NAMESPACE/NAME` → the two.
fn split(name: &str) -> Option<(&str, &str)> {
    name.split_once('/')
}

impl Repositories for KubeRepos {
    fn list(&self) -> anyhow::Result<Vec<Entry>> {
        let mut out: Vec<Entry> = self
            .store
            .state()
            .iter()
            .filter(|r| r.spec.spec.problems().is_empty())
            .filter(|r| r.metadata.deletion_timestamp.is_none())
            .map(|r| {
                let ns = r.namespace().unwrap_or_default();
                Entry {
                    name: format!("{ns}/{}", r.name_any()),
                    spec: r.spec.spec.clone(),
                    kube: Some(KubeIdentity {
                        namespace: ns,
                        service_account: Some(service_account(&r.spec.spec)),
                    }),
                }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// A Secret of the Repository's namespace, read as its ServiceAccount:
    /// what that account may not read, the Repository does not get. One
    /// the server sends somewhere (the token) must also name those hosts
    /// in its [`HOSTS`] annotation: whoever may create a Repository cannot
    /// send a Secret to a host of their choosing.
    fn secret<'a>(
        &'a self,
        repo: &'a Entry,
        name: &'a str,
        sent_to: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<u8>, String>> {
        Box::pin(async move {
            let id = repo
                .kube
                .as_ref()
                .ok_or_else(|| "not a Repository resource".to_string())?;
            let sa = id.service_account.as_deref().unwrap_or("default");
            let who = format!("system:serviceaccount:{}:{sa}", id.namespace);
            let secret = crate::caps::secrets::get_cluster_secret(
                &self.client,
                &id.namespace,
                Some(&who),
                name,
            )
            .await?;
            if !sent_to.is_empty() {
                allowed_hosts(name, &secret, sent_to)?;
            }
            crate::caps::secrets::secret_value(name, &secret)
        })
    }

    fn finished(&self, repo: &str, what: Finished) {
        let _ = self.finished.send((repo.to_string(), what));
    }

    fn describe(&self) -> String {
        "Repository resources".into()
    }
}

async fn patch_status(
    client: &Client,
    ns: &str,
    name: &str,
    status: serde_json::Value,
) -> Result<(), kube::Error> {
    let api: Api<RepositoryResource> = Api::namespaced(client.clone(), ns);
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({ "status": status })),
    )
    .await
    .map(|_| ())
}

/// `project` and the `Ready` condition, when they changed.
async fn write_readiness(client: &Client, repo: &RepositoryResource) -> Result<(), kube::Error> {
    let spec = &repo.spec.spec;
    let problems = spec.problems();
    let (status, reason, message) = if problems.is_empty() {
        ("True", "Valid", "deliveries are taken".to_string())
    } else {
        ("False", "Invalid", problems.join("; "))
    };
    let old = repo.status.clone().unwrap_or_default();
    let same = old.project.as_deref() == Some(spec.project().as_str())
        && old
            .conditions
            .first()
            .is_some_and(|c| c.type_ == "Ready" && c.status == status && c.message == message);
    if same {
        return Ok(());
    }
    let mut cond = super::build::condition(status, reason, &message, now_us());
    cond.type_ = "Ready".into();
    let ns = repo.namespace().unwrap_or_default();
    patch_status(
        client,
        &ns,
        &repo.name_any(),
        serde_json::json!({ "project": spec.project(), "conditions": [cond] }),
    )
    .await
}

/// `lastDelivery` and, when it started runs, `lastRun`.
async fn write_delivery(client: &Client, name: &str, what: &Finished) -> Result<(), kube::Error> {
    let Some((ns, name)) = split(name) else {
        return Ok(());
    };
    let now = super::build::rfc3339(now_us());
    let mut status = serde_json::json!({
        "lastDelivery": LastDelivery {
            id: what.delivery.clone(),
            event: what.event.clone(),
            status: what.status,
            outcome: what.outcome.clone(),
            time: now.clone(),
        }
    });
    if let Some((id, pipeline, number)) = what.runs.last() {
        status["lastRun"] = serde_json::json!(LastRun {
            id: id.clone(),
            pipeline: pipeline.clone(),
            number: *number,
            time: now,
        });
    }
    patch_status(client, ns, name, status).await
}
