//! The `kube` capability: Kubernetes API requests checked against the
//! task's grant, then forwarded by the host.
//!
//! - Each request's verb, resource (`resource[.group][/subresource]`),
//!   namespace and name must be covered by one entry of the task's
//!   `grants.kube`; otherwise it is refused before anything is sent, with a
//!   log line naming what was asked. Subresources (`pods/exec`,
//!   `pods/log`, ...) must be granted by name; cluster-scoped requests are
//!   refused.
//! - The host builds the HTTP request itself from typed fields: the plugin
//!   cannot add headers (no `Impersonate-*` smuggling), query strings or
//!   path segments (names are checked as DNS names).
//! - In the cluster the request is sent impersonating the run's
//!   ServiceAccount, so the cluster's own RBAC applies as well: a grant can
//!   only narrow what the ServiceAccount may do. Locally the kubeconfig's
//!   identity is used.

use std::sync::Arc;

use wasmtime::component::Linker;

use super::capability::{Capability, Data, PrepareCtx, TaskCtx, TaskData, View, view};
use super::{LogLevel, TaskSink};
use crate::bindings::capstan::plugin::kube::Request;
use crate::bindings::capstan::plugin::types::{Denial, GrantLayer, TaskError};

mod host;

/// Largest response body a plugin gets (bytes).
pub const MAX_BODY: usize = 8 << 20;

/// One `grants.kube` entry: `{ verbs, resources, namespaces?, names? }`
/// (resources as `pods`, `deployments.apps`, `pods/log`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KubeGrant {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`.
    pub verbs: Vec<String>,
    /// `pods`, `deployments.apps`, `pods/log`, `deployments.apps/status`.
    pub resources: Vec<String>,
    /// Namespaces; default: the run's namespace only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// Object names; default: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
}

const VERBS: &[&str] = &[
    "get", "list", "watch", "create", "update", "patch", "delete",
];

impl KubeGrant {
    /// Check a grant entry as written (for validation).
    pub fn check(&self) -> Result<(), String> {
        if self.verbs.is_empty() || self.resources.is_empty() {
            return Err("a kube grant needs `verbs` and `resources`".into());
        }
        for v in &self.verbs {
            if !VERBS.contains(&v.as_str()) {
                return Err(format!("verb `{v}`: expected one of {}", VERBS.join(", ")));
            }
        }
        for r in &self.resources {
            if r.is_empty() || r.contains('*') {
                return Err(format!(
                    "resource `{r}`: name resources exactly (`pods`, `deployments.apps`, `pods/log`); no wildcards"
                ));
            }
        }
        Ok(())
    }
}

/// Who the requests are made as, and where "the run's namespace" is.
#[derive(Clone)]
pub struct KubeTarget {
    pub client: kube::Client,
    /// The run's namespace (the default for grants without `namespaces`).
    pub namespace: String,
    /// `system:serviceaccount:NS:NAME` to impersonate (cluster mode).
    pub impersonate: Option<String>,
}

/// Per-task state of the kube interface.
pub struct KubeState {
    pub grants: Vec<KubeGrant>,
    pub target: Option<KubeTarget>,
    pub sink: Arc<dyn TaskSink>,
}

/// An open watch: lines of JSON events.
pub struct Watch {
    lines: futures::io::Lines<std::pin::Pin<Box<dyn futures::AsyncBufRead + Send>>>,
}

/// The view the generated traits are implemented on.
pub type KubeView<'a> = View<'a, KubeState>;

/// The `kube` capability: Kubernetes API requests within the grant, as the
/// run's ServiceAccount in cluster mode.
pub struct KubeCap;

impl Capability for KubeCap {
    const NAME: &'static str = "kube";
    const INTERFACES: &'static [&'static str] = &["capstan:plugin/kube"];
    type Grant = KubeGrant;
    type Prepared = (Vec<KubeGrant>, Option<KubeTarget>);
    type State = KubeState;

    fn link<T: TaskData>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
        crate::bindings::capstan::plugin::kube::add_to_linker::<T, Data<Self>>(
            linker,
            view::<Self, T>,
        )
    }

    fn check(g: &KubeGrant, report: &mut dyn FnMut(&str, String)) {
        if let Err(e) = g.check() {
            report("", e);
        }
    }

    fn prepare(grants: &[KubeGrant], ctx: &PrepareCtx<'_>) -> Result<Self::Prepared, String> {
        if grants.is_empty() {
            return Ok((Vec::new(), None));
        }
        Ok((grants.to_vec(), (ctx.cluster)()))
    }

    fn instantiate((grants, target): Self::Prepared, task: &TaskCtx) -> KubeState {
        KubeState {
            grants,
            target,
            sink: task.sink.clone(),
        }
    }
}

fn failed(e: impl std::fmt::Display) -> TaskError {
    TaskError::Failed(e.to_string())
}

/// A DNS-1123 name (what Kubernetes accepts for object and namespace names).
fn dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !s.starts_with(['-', '.'])
        && !s.contains("..")
}

fn segment(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && !s.contains("..")
}

/// The grant key of a request: `resource[.group][/subresource]`.
fn resource_key(req: &Request) -> String {
    let mut k = req.resource.clone();
    if !req.group.is_empty() {
        k.push('.');
        k.push_str(&req.group);
    }
    if let Some(s) = &req.subresource {
        k.push('/');
        k.push_str(s);
    }
    k
}

/// The object name a request acts on: its `name`, or for `create` the
/// body's `metadata.name`.
fn object_name(req: &Request) -> Option<String> {
    if let Some(n) = &req.name {
        return Some(n.clone());
    }
    if req.verb == "create" {
        let body: serde_json::Value = serde_json::from_str(req.body.as_deref()?).ok()?;
        return body["metadata"]["name"].as_str().map(str::to_string);
    }
    None
}

/// Why `req` is not covered by any of `grants` (None: it is), with
/// `run_ns` the run's namespace (`None`: no API configured).
fn refusal(grants: &[KubeGrant], run_ns: Option<&str>, req: &Request) -> Option<String> {
    {
        let Some(run_ns) = run_ns else {
            return Some("no Kubernetes API is configured for this run".into());
        };
        let Some(ns) = &req.namespace else {
            return Some("cluster-scoped requests are not granted to tasks".into());
        };
        let key = resource_key(req);
        let name = object_name(req);
        let mut why = format!("no grant allows `{} {key}` in namespace `{ns}`", req.verb);
        for g in grants {
            let ns_ok = if g.namespaces.is_empty() {
                ns == run_ns
            } else {
                g.namespaces.iter().any(|n| n == ns)
            };
            if !(g.verbs.contains(&req.verb) && g.resources.contains(&key) && ns_ok) {
                continue;
            }
            if !g.names.is_empty() {
                match &name {
                    Some(n) if g.names.contains(n) => {}
                    Some(n) => {
                        why = format!("`{n}` is not among the granted names of `{key}`");
                        continue;
                    }
                    None => {
                        why = format!(
                            "`{} {key}` names no object, but the grant is limited to names",
                            req.verb
                        );
                        continue;
                    }
                }
            }
            return None;
        }
        Some(why)
    }
}

impl KubeState {
    fn deny(&self, req: &Request, why: &str) -> TaskError {
        let target = format!(
            "{} {} {}{}",
            req.verb,
            resource_key(req),
            req.namespace.as_deref().unwrap_or("(cluster)"),
            req.name
                .as_deref()
                .map(|n| format!("/{n}"))
                .unwrap_or_default()
        );
        // The fields are the plugin's: control characters are shown
        // escaped, so a denial cannot forge further log lines.
        let target = super::log::one_line(&target);
        self.sink.log(
            LogLevel::Warn,
            &super::log::one_line(&format!("denied: kube {target} (layer: pipeline; {why})")),
        );
        TaskError::Denied(Denial {
            capability: "kube".into(),
            target,
            layer: GrantLayer::Pipeline,
        })
    }

    /// The HTTP request for `req` (already checked against the grants).
    fn http_request(
        &self,
        req: &Request,
        watch: bool,
    ) -> Result<http::Request<Vec<u8>>, TaskError> {
        let invalid = |m: String| TaskError::InvalidParams(m);
        let ns = req.namespace.as_deref().unwrap_or_default();
        for (what, v) in [("namespace", Some(ns)), ("name", req.name.as_deref())] {
            if let Some(v) = v
                && !dns_name(v)
            {
                return Err(invalid(format!(
                    "{what} `{v}` is not a valid Kubernetes name"
                )));
            }
        }
        for (what, v) in [
            ("resource", Some(req.resource.as_str())),
            ("version", Some(req.version.as_str())),
            ("subresource", req.subresource.as_deref()),
        ] {
            if let Some(v) = v
                && !segment(v)
            {
                return Err(invalid(format!("{what} `{v}` is not a valid path segment")));
            }
        }
        if !req.group.is_empty() && !dns_name(&req.group) {
            return Err(invalid(format!(
                "group `{}` is not a valid API group",
                req.group
            )));
        }
        let (method, needs_name) = match req.verb.as_str() {
            "get" => ("GET", true),
            "list" | "watch" => ("GET", false),
            "create" => ("POST", false),
            "update" => ("PUT", true),
            "patch" => ("PATCH", true),
            "delete" => ("DELETE", true),
            v => return Err(invalid(format!("verb `{v}` is not supported"))),
        };
        if needs_name != req.name.is_some() {
            return Err(invalid(format!(
                "`{}` {} an object name",
                req.verb,
                if needs_name { "needs" } else { "takes no" }
            )));
        }
        let mut path = if req.group.is_empty() {
            format!("/api/{}", req.version)
        } else {
            format!("/apis/{}/{}", req.group, req.version)
        };
        path.push_str(&format!("/namespaces/{ns}/{}", req.resource));
        if let Some(n) = &req.name {
            path.push('/');
            path.push_str(n);
        }
        if let Some(s) = &req.subresource {
            path.push('/');
            path.push_str(s);
        }
        if watch {
            path.push_str("?watch=true");
        }
        let content_type = match (method, req.content_type.as_deref()) {
            (
                "PATCH",
                Some(
                    ct @ ("application/merge-patch+json"
                    | "application/strategic-merge-patch+json"
                    | "application/json-patch+json"
                    | "application/apply-patch+yaml"),
                ),
            ) => ct,
            ("PATCH", None) => "application/merge-patch+json",
            ("PATCH", Some(ct)) => {
                return Err(invalid(format!("content type `{ct}` is not a patch type")));
            }
            (_, None | Some("application/json")) => "application/json",
            (_, Some(ct)) => {
                return Err(invalid(format!(
                    "content type `{ct}`: only application/json"
                )));
            }
        };
        if req.verb == "patch" && content_type == "application/apply-patch+yaml" {
            path.push_str("?fieldManager=capstan-task");
        }
        let mut b = http::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::ACCEPT, "application/json")
            .header(http::header::CONTENT_TYPE, content_type);
        if let Some(who) = &self.target.as_ref().and_then(|t| t.impersonate.clone()) {
            b = b.header("Impersonate-User", who.as_str());
        }
        b.body(req.body.clone().unwrap_or_default().into_bytes())
            .map_err(failed)
    }

    fn check(&self, req: &Request) -> Result<(), TaskError> {
        let run_ns = self.target.as_ref().map(|t| t.namespace.as_str());
        match refusal(&self.grants, run_ns, req) {
            None => Ok(()),
            Some(why) => Err(self.deny(req, &why)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(verb: &str, resource: &str, group: &str, ns: &str, name: Option<&str>) -> Request {
        Request {
            verb: verb.into(),
            group: group.into(),
            version: "v1".into(),
            resource: resource.into(),
            subresource: None,
            namespace: Some(ns.into()),
            name: name.map(str::to_string),
            body: None,
            content_type: None,
        }
    }

    #[test]
    fn grants_cover_verb_resource_namespace_and_name() {
        let g: Vec<KubeGrant> = serde_yaml::from_str(
            "- {verbs: [create, get], resources: [pods, pods/log]}\n\
             - {verbs: [patch], resources: [deployments.apps], namespaces: [prod], names: [web]}",
        )
        .unwrap();
        for grant in &g {
            grant.check().unwrap();
        }
        let ok = |r: &Request| refusal(&g, Some("ci"), r).is_none();
        assert!(ok(&req("get", "pods", "", "ci", Some("a"))));
        let mut create = req("create", "pods", "", "ci", None);
        assert!(ok(&create));
        // Another namespace, verb, resource or subresource: refused.
        assert!(!ok(&req("get", "pods", "", "other", Some("a"))));
        assert!(!ok(&req("delete", "pods", "", "ci", Some("a"))));
        assert!(!ok(&req("get", "secrets", "", "ci", Some("a"))));
        let mut exec = req("create", "pods", "", "ci", Some("a"));
        exec.subresource = Some("exec".into());
        assert!(!ok(&exec));
        let mut log = req("get", "pods", "", "ci", Some("a"));
        log.subresource = Some("log".into());
        assert!(ok(&log));
        // Names: only the granted one, in the granted namespace.
        assert!(ok(&req(
            "patch",
            "deployments",
            "apps",
            "prod",
            Some("web")
        )));
        assert!(!ok(&req(
            "patch",
            "deployments",
            "apps",
            "prod",
            Some("db")
        )));
        assert!(!ok(&req("patch", "deployments", "apps", "ci", Some("web"))));
        // Cluster-scoped, or no API at all: refused.
        create.namespace = None;
        assert!(
            refusal(&g, Some("ci"), &create)
                .unwrap()
                .contains("cluster-scoped")
        );
        assert!(refusal(&g, None, &req("get", "pods", "", "ci", Some("a"))).is_some());
        let wild = KubeGrant {
            verbs: vec!["get".into()],
            resources: vec!["*".into()],
            namespaces: vec![],
            names: vec![],
        };
        assert!(wild.check().is_err());
    }

    #[test]
    fn names_and_segments_are_checked() {
        assert!(dns_name("web-1.prod"));
        for bad in ["", "../x", "a/b", "A", "a?b", ".x", "a..b"] {
            assert!(!dns_name(bad), "{bad}");
        }
        assert!(segment("v1beta1") && !segment("a/b") && !segment(".."));
    }
}
