//! `kube-deploy`: server-side apply of manifests from the workspace, or set
//! the image of one container of a Deployment (the seed's `kubectl set
//! image deployment …`), then wait for the rollout. Every request goes
//! through the host's `kube` capability: only what the task's grant lists,
//! as the run's ServiceAccount.

pub mod rollout;

use std::time::{Duration, Instant};

use capstan_plugin_sdk::capstan::plugin::kube::{Request, send};
use capstan_plugin_sdk::capstan::plugin::log::{Level, log, progress};
use capstan_plugin_sdk::capstan::plugin::types::{TaskError, TaskInput, TaskResult};
use capstan_plugin_sdk::exports::capstan::plugin::task::Guest;
use capstan_plugin_sdk::{param_str, workspace};

struct KubeDeploy;

fn invalid(m: impl Into<String>) -> TaskError {
    TaskError::InvalidParams(m.into())
}

fn failed(m: impl Into<String>) -> TaskError {
    TaskError::Failed(m.into())
}

fn request(verb: &str, group: &str, version: &str, resource: &str, ns: &str) -> Request {
    Request {
        verb: verb.into(),
        group: group.into(),
        version: version.into(),
        resource: resource.into(),
        subresource: None,
        namespace: Some(ns.into()),
        name: None,
        body: None,
        content_type: None,
    }
}

/// Send, and turn an HTTP error into a task failure naming what failed.
fn call(req: Request, what: &str) -> Result<serde_json::Value, TaskError> {
    let res = send(&req)?;
    if res.status >= 400 {
        let msg = serde_json::from_str::<serde_json::Value>(&res.body)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string))
            .unwrap_or(res.body);
        return Err(failed(format!("{what}: HTTP {}: {msg}", res.status)));
    }
    serde_json::from_str(&res.body).map_err(|e| failed(format!("{what}: bad response: {e}")))
}

fn get_deployment(ns: &str, name: &str) -> Result<serde_json::Value, TaskError> {
    let mut req = request("get", "apps", "v1", "deployments", ns);
    req.name = Some(name.into());
    call(req, &format!("reading deployment/{name}"))
}

impl Guest for KubeDeploy {
    fn run(input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
        let ns = param_str(&input, "namespace", None)?;
        let deployment = param_str(&input, "deployment", Some(""))?;
        let container = param_str(&input, "container", Some(""))?;
        let image = param_str(&input, "image", Some(""))?;
        let timeout: u64 = param_str(&input, "timeout", Some("300"))?
            .parse()
            .map_err(|_| invalid("`timeout` must be a number of seconds"))?;
        let manifests = capstan_plugin_sdk::param_list(&input, "manifests")?;
        let set_image = !image.is_empty() || !container.is_empty();
        if set_image && (deployment.is_empty() || container.is_empty() || image.is_empty()) {
            return Err(invalid(
                "setting an image needs `deployment`, `container` and `image`",
            ));
        }
        if !set_image && manifests.is_empty() {
            return Err(invalid(
                "give `manifests` to apply, or `deployment`, `container` and `image`",
            ));
        }
        let mut applied = Vec::new();
        if !manifests.is_empty() {
            let root = workspace(&input, "source")?;
            for file in &manifests {
                if file.starts_with('/') || file.split('/').any(|s| s == "..") {
                    return Err(invalid(format!(
                        "manifest `{file}` must be a path inside the workspace"
                    )));
                }
                let text = std::fs::read_to_string(format!("{root}/{file}"))
                    .map_err(|e| invalid(format!("manifest `{file}`: {e}")))?;
                for obj in rollout::objects(file, &text).map_err(invalid)? {
                    let kind = obj["kind"].as_str().unwrap_or_default().to_string();
                    let name = obj["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    if let Some(other) = obj["metadata"]["namespace"].as_str()
                        && other != ns
                    {
                        return Err(invalid(format!(
                            "{file}: {kind}/{name} is for namespace `{other}`, the task deploys to `{ns}`"
                        )));
                    }
                    let (group, version, resource) =
                        rollout::resource_of(obj["apiVersion"].as_str().unwrap_or_default(), &kind)
                            .map_err(|e| invalid(format!("{file}: {e}")))?;
                    let mut req = request("patch", &group, &version, &resource, &ns);
                    req.name = Some(name.clone());
                    req.content_type = Some("application/apply-patch+yaml".into());
                    req.body = Some(obj.to_string());
                    call(req, &format!("applying {kind}/{name}"))?;
                    log(Level::Info, &format!("applied {kind}/{name}"));
                    applied.push(format!("{kind}/{name}"));
                }
            }
        }
        if set_image {
            let mut req = request("patch", "apps", "v1", "deployments", &ns);
            req.name = Some(deployment.clone());
            req.content_type = Some("application/strategic-merge-patch+json".into());
            req.body = Some(rollout::image_patch(&container, &image).to_string());
            call(
                req,
                &format!("setting the image of deployment/{deployment}"),
            )?;
            log(
                Level::Info,
                &format!("deployment/{deployment}: container {container} image set to {image}"),
            );
            applied.push(format!("Deployment/{deployment}"));
        }
        let mut revision = String::new();
        if !deployment.is_empty() {
            if timeout > 0 {
                let deadline = Instant::now() + Duration::from_secs(timeout);
                progress("waiting for the rollout", 0, None);
                loop {
                    let d = get_deployment(&ns, &deployment)?;
                    if rollout::rollout_done(&d).map_err(failed)? {
                        revision = rollout::revision(&d);
                        log(
                            Level::Info,
                            &format!("deployment/{deployment}: rolled out (revision {revision})"),
                        );
                        break;
                    }
                    if Instant::now() > deadline {
                        let st = &d["status"];
                        return Err(failed(format!(
                            "deployment/{deployment}: rollout not complete after {timeout}s \
                             ({} of {} replicas updated, {} available)",
                            st["updatedReplicas"].as_i64().unwrap_or(0),
                            d["spec"]["replicas"].as_i64().unwrap_or(1),
                            st["availableReplicas"].as_i64().unwrap_or(0)
                        )));
                    }
                    std::thread::sleep(Duration::from_millis(500));
                }
            } else {
                revision = rollout::revision(&get_deployment(&ns, &deployment)?);
            }
        }
        Ok(vec![
            TaskResult {
                name: "applied".into(),
                value: applied.join(","),
            },
            TaskResult {
                name: "revision".into(),
                value: revision,
            },
        ])
    }
}

capstan_plugin_sdk::export!(KubeDeploy with_types_in capstan_plugin_sdk);

#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST_SECTION: [u8; include_bytes!("../capstan.toml").len()] =
    *include_bytes!("../capstan.toml");
