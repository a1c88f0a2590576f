//! The Kubernetes backend: one Pod per container a task runs, in the run's
//! namespace, created as the run's ServiceAccount (impersonated: the
//! controller holds no right to create Pods for a team).
//!
//! The Pod gets no API token (`automountServiceAccountToken: false`), the
//! restricted security context (non-root as the controller's own uid, so
//! what it writes in the workspace stays the controller's; no privilege
//! escalation; every capability dropped; the runtime's seccomp profile),
//! no host namespaces, no service links, `activeDeadlineSeconds` from the
//! timeout. Its volumes are sub-paths of the run's workspace claim computed
//! here from the directories the host opened (the plugin names none): the
//! task's workspaces, its caches, and a scratch directory for the script
//! and the results. Its log is followed into the task log; its exit code
//! and termination reason are read from the container status; it is
//! deleted afterwards and when the call is dropped (cancel, task timeout).
//!
//! Failover: a Pod is labelled with its step (run, task and which call of
//! the attempt, hashed) and attempt, and annotated with a hash of its spec.
//! A leader that finds a Pod of the same step and spec left by an attempt
//! that a crash interrupted re-attaches to it (follows it to the end and
//! takes its exit code and results) instead of starting a second one; a
//! left Pod with another spec is deleted.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::engine::{Ended, Job, Stream};
use api::{Api, Deletion};

mod api;

/// The file in a step's scratch directory naming the Pod an attempt
/// created (`NAME\nUID\n`), for a successor to re-attach to.
const POD_RECORD: &str = "pod";
/// The container's name inside every step Pod.
const CONTAINER: &str = "step";
/// How often a Pod's status is read while it starts and ends.
const POLL: Duration = Duration::from_millis(250);
/// How long past its deadline a Pod is given to be ended by Kubernetes
/// before it is deleted here.
const DEADLINE_GRACE: Duration = Duration::from_secs(15);
/// The deadline of a step Pod without a timeout: none outlives this, even
/// if the controller that should delete it is gone.
const MAX_DEADLINE: Duration = Duration::from_secs(24 * 3600);
/// Waiting reasons after which a container will not start by itself.
const STUCK: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "ErrImageNeverPull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// How the controller runs container steps as Pods: the claim in each
/// run's namespace, which holds that namespace's directory of the
/// controller's state volume (`root/tenants/NS`: its runs' workspaces, its
/// steps' scratch directories, its caches), the same storage.
#[derive(Debug, Clone)]
pub struct PodSettings {
    /// The PersistentVolumeClaim's name in the run's namespace.
    pub claim: String,
    /// The controller's state directory (the namespaces' directories are
    /// `tenants/NS` in it).
    pub root: PathBuf,
}

/// Which task attempt a backend serves.
#[derive(Debug, Clone)]
pub struct StepOf {
    pub run: String,
    pub task: String,
    pub attempt: u32,
}

/// One attempt's Pod backend.
pub struct Pods {
    client: kube::Client,
    namespace: String,
    /// `system:serviceaccount:NS:NAME` (cluster mode).
    impersonate: Option<String>,
    settings: PodSettings,
    /// The namespace's directory (the claim's root), resolved: bind
    /// sources are resolved paths.
    root: PathBuf,
    step: StepOf,
    /// Calls made by this attempt (a plugin may run several containers).
    calls: AtomicU32,
}

/// One call's Pod: its names and where its scratch directory is (removed
/// when the call is done; a crash leaves it for a re-attaching leader).
pub struct PodCall {
    hash: String,
    name: String,
    /// `STATE/tenants/NS/steps/RUN/HASH`: the script and results.
    pub scratch: PathBuf,
}

impl Drop for PodCall {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

impl Pods {
    pub fn new(
        target: crate::caps::kube::KubeTarget,
        settings: &PodSettings,
        step: StepOf,
    ) -> Result<Pods, String> {
        if settings.claim.is_empty() {
            return Err(
                "container steps run as Pods in the cluster and need the run's workspace claim: \
                 start the controller with --workspace-claim CLAIM (CAPSTAN_WORKSPACE_CLAIM)"
                    .into(),
            );
        }
        // The namespace's claim is its own directory, nothing above it.
        let tenant = crate::scheduler::tenant_root(&settings.root, &target.namespace);
        let root = std::fs::create_dir_all(&tenant)
            .and_then(|()| std::fs::canonicalize(&tenant))
            .map_err(|e| {
                format!(
                    "the namespace's workspace directory {}: {e}",
                    tenant.display()
                )
            })?;
        Ok(Pods {
            client: target.client,
            namespace: target.namespace,
            impersonate: target.impersonate,
            settings: settings.clone(),
            root,
            step,
            calls: AtomicU32::new(0),
        })
    }

    /// The next call of this attempt: its Pod name and scratch directory
    /// (emptied later, unless a left Pod is re-attached to).
    pub fn next_call(&self) -> PodCall {
        let n = self.calls.fetch_add(1, Ordering::Relaxed);
        let mut h = Sha256::new();
        for part in [self.step.run.as_bytes(), self.step.task.as_bytes()] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
        h.update(n.to_le_bytes());
        let hash: String = hex::encode(h.finalize())[..20].to_string();
        let scratch = self.root.join("steps").join(&self.step.run).join(&hash);
        PodCall {
            name: format!("capstan-{hash}-{}", self.step.attempt),
            hash,
            scratch,
        }
    }

    /// A path on the claim as a sub-path of it.
    fn sub_path(&self, p: &Path) -> Result<String, String> {
        let resolved = std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
        resolved
            .strip_prefix(&self.root)
            .ok()
            .and_then(Path::to_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .ok_or_else(|| {
                format!(
                    "{} is not on the workspace claim `{}` of namespace `{}` ({}): a container step in a Pod can only see its namespace's workspaces and caches",
                    p.display(),
                    self.settings.claim,
                    self.namespace,
                    self.root.display()
                )
            })
    }

    /// The Pod for `job` (without its name): the whole spec is hashed.
    fn pod_spec(
        &self,
        job: &Job,
        secret_keys: &[(String, String, String)],
    ) -> Result<Value, String> {
        let mut mounts = Vec::new();
        for (source, target, ro) in &job.binds {
            let sub = self.sub_path(source)?;
            mounts.push(json!({
                "name": "claim", "mountPath": target, "subPath": sub, "readOnly": ro
            }));
        }
        let mut env: Vec<Value> = job
            .env
            .iter()
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                json!({ "name": k, "value": v })
            })
            .collect();
        for (var, secret, key) in secret_keys {
            env.push(json!({
                "name": var,
                "valueFrom": { "secretKeyRef": { "name": secret, "key": key } }
            }));
        }
        let mut limits = serde_json::Map::new();
        if let Some(m) = job.memory {
            limits.insert("memory".into(), json!(m.to_string()));
        }
        if let Some(n) = job.nano_cpus {
            limits.insert("cpu".into(), json!(format!("{}m", (n / 1_000_000).max(1))));
        }
        // Granted root: uid 0 keeping only what writing files as their
        // owners needs (kaniko unpacks base layers); never privileged.
        let (uid, gid) = if job.root { (0, 0) } else { own_ids() };
        let mut container = json!({
            "name": CONTAINER,
            "image": job.image,
            "env": env,
            "volumeMounts": mounts,
            "resources": { "limits": limits.clone(), "requests": limits },
            "securityContext": {
                "allowPrivilegeEscalation": false,
                "privileged": false,
                "runAsNonRoot": uid != 0,
            },
        });
        container["securityContext"]["capabilities"] = if job.root {
            json!({ "drop": ["ALL"], "add": super::engine::ROOT_CAPABILITIES })
        } else {
            json!({ "drop": ["ALL"] })
        };
        if let Some(cmd) = &job.entrypoint {
            container["command"] = json!(cmd);
        }
        if !job.cmd.is_empty() {
            container["args"] = json!(job.cmd);
        }
        if let Some(w) = &job.working_dir {
            container["workingDir"] = json!(w);
        }
        let mut spec = json!({
            "restartPolicy": "Never",
            "automountServiceAccountToken": false,
            "enableServiceLinks": false,
            "hostNetwork": false,
            "hostPID": false,
            "hostIPC": false,
            "securityContext": {
                "runAsUser": uid,
                "runAsGroup": gid,
                "runAsNonRoot": uid != 0,
                "seccompProfile": { "type": "RuntimeDefault" },
            },
            "containers": [container],
            "volumes": [{
                "name": "claim",
                "persistentVolumeClaim": { "claimName": self.settings.claim }
            }],
        });
        if let Some(sa) = self.service_account() {
            spec["serviceAccountName"] = json!(sa);
        }
        let deadline = job.timeout.unwrap_or(MAX_DEADLINE).min(MAX_DEADLINE);
        spec["activeDeadlineSeconds"] = json!(deadline.as_secs().max(1));
        Ok(spec)
    }

    fn service_account(&self) -> Option<&str> {
        let prefix = format!("system:serviceaccount:{}:", self.namespace);
        self.impersonate.as_deref()?.strip_prefix(&prefix)
    }

    /// Run `job` in its Pod (or re-attach to the one a crashed leader left),
    /// handing its log to `out`.
    pub async fn run(
        &self,
        call: &PodCall,
        job: Job,
        out: &mut (dyn FnMut(Stream, &[u8]) + Send),
    ) -> Result<Ended, String> {
        let secret_keys = self.secret_keys(&job).await?;
        let spec = self.pod_spec(&job, &secret_keys)?;
        // The script is a file the spec only names: it is hashed too.
        let mut h = Sha256::new();
        h.update(spec.to_string().as_bytes());
        h.update(std::fs::read(call.scratch.join("scripts/script")).unwrap_or_default());
        let spec_hash = hex::encode(h.finalize());
        tracing::debug!(
            pod = call.name,
            "step Pod: looking for one left by an interrupted attempt"
        );
        let left = self.left_behind(call, &spec_hash).await?;
        // The guard exists before the create: a call dropped mid-create
        // still deletes what the API server made.
        let guard = Deletion {
            api: Some(self.api()),
            name: left.clone().unwrap_or_else(|| call.name.clone()),
        };
        let name = match left {
            Some(name) => {
                out(
                    Stream::Err,
                    format!("capstan: re-attaching to Pod {name}, left running by an interrupted attempt\n")
                        .as_bytes(),
                );
                name
            }
            None => {
                // Results of an earlier attempt are not this one's.
                let results = call.scratch.join(super::host::RESULTS_DIR);
                let _ = std::fs::remove_dir_all(&results);
                std::fs::create_dir_all(&results)
                    .map_err(|e| format!("the step's results directory: {e}"))?;
                self.create(call, &job, spec, &spec_hash).await?;
                tracing::debug!(pod = call.name, "step Pod created");
                call.name.clone()
            }
        };
        let limit = job.timeout.map(|t| t + DEADLINE_GRACE);
        let followed = self.follow(&name, out);
        let ended = match limit {
            Some(l) => match tokio::time::timeout(l, followed).await {
                Ok(r) => r,
                Err(_) => Ok(Ended {
                    exit_code: 137,
                    timed_out: true,
                }),
            },
            None => followed.await,
        };
        guard.now().await;
        ended
    }

    fn api(&self) -> Api {
        Api {
            client: self.client.clone(),
            namespace: self.namespace.clone(),
            impersonate: self.impersonate.clone(),
        }
    }

    /// Secret variables as (variable, Secret, key): the value stays in the
    /// Secret (a Pod spec is readable by more people than its Secrets).
    async fn secret_keys(&self, job: &Job) -> Result<Vec<(String, String, String)>, String> {
        let mut out = Vec::new();
        for v in &job.secret_vars {
            let (status, body) = self
                .api()
                .send(
                    http::Method::GET,
                    &format!("/api/v1/namespaces/{}/secrets/{}", self.namespace, v.secret),
                    None,
                )
                .await?;
            if status != 200 {
                return Err(format!(
                    "secret `{}`: Kubernetes API answered {status} reading its keys",
                    v.secret
                ));
            }
            let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_slice(&body)
                .map_err(|e| format!("secret `{}`: unreadable Secret: {e}", v.secret))?;
            let key = crate::caps::secrets::secret_key(&v.secret, &secret)?;
            // The value the Pod will read must be the one the log redacts
            // (read when the run started): a Secret changed since is not
            // passed on.
            let now = secret.data.as_ref().and_then(|d| d.get(&key));
            if now.is_none_or(|b| b.0 != v.value.as_bytes()) {
                return Err(format!(
                    "secret `{}` changed since the run started; run it again to use the new value",
                    v.secret
                ));
            }
            out.push((v.name.clone(), v.secret.clone(), key));
        }
        Ok(out)
    }

    /// A Pod of this step left by an interrupted attempt with the same
    /// spec, to re-attach to; others of the step are deleted. Only the Pod
    /// an attempt recorded (name and uid, in the step's scratch directory
    /// on the claim, right after creating it) qualifies: labels and
    /// annotations can be forged by anyone who may create Pods in the
    /// namespace, a uid cannot.
    async fn left_behind(&self, call: &PodCall, spec_hash: &str) -> Result<Option<String>, String> {
        let api = self.api();
        let (status, body) = api
            .send(
                http::Method::GET,
                &format!(
                    "/api/v1/namespaces/{}/pods?labelSelector=capstan.dev%2Fstep%3D{}",
                    self.namespace, call.hash
                ),
                None,
            )
            .await?;
        if status != 200 {
            return Err(api.refused(status, &body, "list Pods"));
        }
        let recorded = std::fs::read_to_string(call.scratch.join(POD_RECORD)).unwrap_or_default();
        let list: Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        let mut adopt = None;
        for p in list["items"].as_array().into_iter().flatten() {
            let Some(name) = p["metadata"]["name"].as_str() else {
                continue;
            };
            let uid = p["metadata"]["uid"].as_str().unwrap_or("");
            let ours = !uid.is_empty() && recorded == format!("{name}\n{uid}\n");
            let same = p["metadata"]["annotations"]["capstan.dev/spec"].as_str() == Some(spec_hash);
            let gone = !p["metadata"]["deletionTimestamp"].is_null();
            if adopt.is_none() && ours && same && !gone {
                adopt = Some(name.to_string());
            } else if !gone {
                api.delete(name).await;
            }
        }
        Ok(adopt)
    }

    async fn create(
        &self,
        call: &PodCall,
        job: &Job,
        spec: Value,
        spec_hash: &str,
    ) -> Result<(), String> {
        let network = if job.network { "granted" } else { "none" };
        let pod = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": call.name,
                "labels": {
                    "app.kubernetes.io/managed-by": "capstan",
                    "capstan.dev/step": call.hash,
                    "capstan.dev/attempt": self.step.attempt.to_string(),
                    "capstan.dev/network": network,
                },
                "annotations": {
                    "capstan.dev/run": self.step.run,
                    "capstan.dev/task": self.step.task,
                    "capstan.dev/spec": spec_hash,
                },
            },
            "spec": spec,
        });
        let api = self.api();
        let (status, body) = api
            .send(
                http::Method::POST,
                &format!("/api/v1/namespaces/{}/pods", self.namespace),
                Some(pod.to_string().into_bytes()),
            )
            .await?;
        if status >= 300 {
            return Err(api.refused(status, &body, "create Pods"));
        }
        let created: Value = serde_json::from_slice(&body).unwrap_or_default();
        let uid = created["metadata"]["uid"].as_str().unwrap_or("");
        std::fs::write(
            call.scratch.join(POD_RECORD),
            format!("{}\n{uid}\n", call.name),
        )
        .map_err(|e| format!("recording the step Pod: {e}"))?;
        Ok(())
    }

    /// Wait for the container to start, follow its log to the end, and
    /// read how it ended.
    async fn follow(
        &self,
        name: &str,
        out: &mut (dyn FnMut(Stream, &[u8]) + Send),
    ) -> Result<Ended, String> {
        let api = self.api();
        let mut said = String::new();
        loop {
            let pod = api.pod(name).await?;
            match state(&pod) {
                State::Waiting => {
                    // Why it waits (unschedulable, pulling…), once each.
                    let why = waiting_for(&pod);
                    if !why.is_empty() && why != said {
                        out(
                            Stream::Err,
                            format!("capstan: Pod {name}: {why}\n").as_bytes(),
                        );
                        said = why;
                    }
                    tokio::time::sleep(POLL).await
                }
                State::Started => break,
                State::Ended(e) => {
                    // Ended before we looked: its log is still there.
                    api.log(name, false, out).await;
                    return Ok(e);
                }
                State::Stuck(why) => return Err(format!("Pod {name}: {why}")),
            }
        }
        api.log(name, true, out).await;
        loop {
            let pod = api.pod(name).await?;
            match state(&pod) {
                State::Ended(e) => return Ok(e),
                State::Stuck(why) => return Err(format!("Pod {name}: {why}")),
                _ => tokio::time::sleep(POLL).await,
            }
        }
    }
}

/// Where a step Pod is.
enum State {
    Waiting,
    Started,
    Ended(Ended),
    Stuck(String),
}

fn state(pod: &Value) -> State {
    let status = &pod["status"];
    let c = &status["containerStatuses"][0]["state"];
    let deadline = status["reason"].as_str() == Some("DeadlineExceeded");
    if let Some(t) = c.get("terminated").filter(|t| t.is_object()) {
        return State::Ended(Ended {
            exit_code: t["exitCode"].as_i64().unwrap_or(-1),
            timed_out: deadline,
        });
    }
    if deadline {
        return State::Ended(Ended {
            exit_code: 137,
            timed_out: true,
        });
    }
    if c.get("running").is_some_and(Value::is_object) {
        return State::Started;
    }
    if let Some(reason) = c["waiting"]["reason"]
        .as_str()
        .filter(|r| STUCK.contains(r))
    {
        let msg = c["waiting"]["message"].as_str().unwrap_or("");
        return State::Stuck(format!(
            "the container cannot start: {reason}: {}",
            crate::caps::log::one_line(msg)
        ));
    }
    match status["phase"].as_str() {
        Some("Failed") => State::Stuck(format!(
            "failed before its container ran: {} {}",
            status["reason"].as_str().unwrap_or(""),
            crate::caps::log::one_line(status["message"].as_str().unwrap_or(""))
        )),
        _ => State::Waiting,
    }
}

/// Why a Pod has not started yet, from its conditions and container
/// status ("" when there is nothing to say).
fn waiting_for(pod: &Value) -> String {
    let status = &pod["status"];
    let unscheduled = status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "PodScheduled" && c["status"] == "False");
    let (reason, msg) = match unscheduled {
        Some(c) => (&c["reason"], &c["message"]),
        None => {
            let w = &status["containerStatuses"][0]["state"]["waiting"];
            (&w["reason"], &w["message"])
        }
    };
    match reason.as_str() {
        Some(r) => format!(
            "waiting: {r} {}",
            crate::caps::log::one_line(msg.as_str().unwrap_or(""))
        )
        .trim_end()
        .to_string(),
        None => String::new(),
    }
}

/// The controller's own uid and gid (whose `/proc/self` this is).
fn own_ids() -> (u32, u32) {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self").map_or((65532, 65532), |m| (m.uid(), m.gid()))
}

#[cfg(test)]
mod tests;
