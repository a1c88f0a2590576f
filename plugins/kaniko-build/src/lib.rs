//! `kaniko-build`: build and push an image with the kaniko executor. The
//! plugin creates a Pod (through the host's `kube` capability, as the run's
//! ServiceAccount) that mounts the run's workspace from the controller's
//! volume and a docker-config Secret, follows its log into the task log,
//! reads the image digest from the termination message, and deletes the
//! Pod. A failed build fails the task with the Pod's last log lines.

pub mod pod;

use std::time::{Duration, Instant};

use capstan_plugin_sdk::capstan::plugin::kube::{Request, send};
use capstan_plugin_sdk::capstan::plugin::log::{Level, log, progress};
use capstan_plugin_sdk::capstan::plugin::types::{TaskError, TaskInput, TaskResult};
use capstan_plugin_sdk::exports::capstan::plugin::task::Guest;
use capstan_plugin_sdk::param_str;

use pod::{Build, Outcome};

struct KanikoBuild;

fn invalid(m: impl Into<String>) -> TaskError {
    TaskError::InvalidParams(m.into())
}

fn failed(m: impl Into<String>) -> TaskError {
    TaskError::Failed(m.into())
}

fn pods(verb: &str, ns: &str, name: Option<&str>, sub: Option<&str>) -> Request {
    Request {
        verb: verb.into(),
        group: String::new(),
        version: "v1".into(),
        resource: "pods".into(),
        subresource: sub.map(str::to_string),
        namespace: Some(ns.into()),
        name: name.map(str::to_string),
        body: None,
        content_type: None,
    }
}

/// New log lines since the last call (the whole log is fetched each time:
/// the capability takes no query strings). Log errors are not fatal: a
/// Pod that has not started has no log yet.
struct LogFollower {
    seen: usize,
    tail: Vec<String>,
}

impl LogFollower {
    fn poll(&mut self, ns: &str, name: &str) {
        let Ok(res) = send(&pods("get", ns, Some(name), Some("log"))) else {
            return;
        };
        if res.status != 200 {
            return;
        }
        if res.body.len() > self.seen {
            for line in res.body[self.seen..].lines() {
                log(Level::Info, line);
                self.tail.push(line.to_string());
            }
            let n = self.tail.len();
            if n > 20 {
                self.tail.drain(..n - 20);
            }
            self.seen = res.body.len();
        }
    }
}

impl Guest for KanikoBuild {
    fn run(input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
        let ns = param_str(&input, "namespace", None)?;
        let context = param_str(&input, "context", Some("."))?;
        let dockerfile = param_str(&input, "dockerfile", Some("Dockerfile"))?;
        pod::inside("context", &context).map_err(invalid)?;
        pod::inside("dockerfile", &dockerfile).map_err(invalid)?;
        let sub_path = param_str(&input, "workspace-sub-path", None)?;
        pod::inside("workspace-sub-path", &sub_path).map_err(invalid)?;
        let extra_args = capstan_plugin_sdk::param_list(&input, "extra-args")?;
        let timeout: u64 = param_str(&input, "timeout", Some("1800"))?
            .parse()
            .map_err(|_| invalid("`timeout` must be a number of seconds"))?;
        let tag = param_str(&input, "tag", None)?;
        if tag.is_empty() {
            return Err(invalid("`tag` is empty"));
        }
        let build = Build {
            pod_name: pod::pod_name(
                &input.info.run_id,
                &input.info.task_name,
                input.info.attempt,
            ),
            executor_image: param_str(
                &input,
                "executor-image",
                Some("gcr.io/kaniko-project/executor:v1.23.2"),
            )?,
            destination: param_str(&input, "destination", None)?,
            tag,
            dockerfile,
            context,
            extra_args,
            claim: param_str(&input, "workspace-claim", None)?,
            sub_path,
            docker_config: param_str(&input, "docker-config-secret", Some("docker-config"))?,
        };
        let mut create = pods("create", &ns, None, None);
        create.body = Some(build.pod().to_string());
        let res = send(&create)?;
        if res.status >= 300 {
            return Err(failed(format!(
                "creating the build Pod: HTTP {}: {}",
                res.status, res.body
            )));
        }
        log(
            Level::Info,
            &format!(
                "build Pod {} created ({})",
                build.pod_name,
                build.image_url()
            ),
        );
        progress("building", 0, None);
        let deadline = Instant::now() + Duration::from_secs(timeout);
        let mut logs = LogFollower {
            seen: 0,
            tail: vec![],
        };
        let outcome = loop {
            let res = send(&pods("get", &ns, Some(&build.pod_name), None))?;
            if res.status != 200 {
                break Outcome::Failed(format!(
                    "reading the build Pod: HTTP {}: {}",
                    res.status, res.body
                ));
            }
            let p: serde_json::Value = serde_json::from_str(&res.body)
                .map_err(|e| failed(format!("the build Pod: {e}")))?;
            logs.poll(&ns, &build.pod_name);
            match pod::outcome(&p) {
                Outcome::Running if Instant::now() > deadline => {
                    break Outcome::Failed(format!("the build did not finish within {timeout}s"));
                }
                Outcome::Running => std::thread::sleep(Duration::from_millis(500)),
                done => break done,
            }
        };
        // The Pod is ours: delete it whatever happened.
        match send(&pods("delete", &ns, Some(&build.pod_name), None)) {
            Ok(r) if r.status < 300 || r.status == 404 => {}
            Ok(r) => log(
                Level::Warn,
                &format!("deleting the build Pod: HTTP {}", r.status),
            ),
            Err(e) => log(Level::Warn, &format!("deleting the build Pod: {e:?}")),
        }
        match outcome {
            Outcome::Succeeded(digest) => {
                log(
                    Level::Info,
                    &format!("pushed {}@{digest}", build.image_url()),
                );
                Ok(vec![
                    TaskResult {
                        name: "IMAGE_URL".into(),
                        value: build.image_url(),
                    },
                    TaskResult {
                        name: "IMAGE_DIGEST".into(),
                        value: digest,
                    },
                ])
            }
            Outcome::Failed(why) => {
                let tail = if logs.tail.is_empty() {
                    "(no log lines)".to_string()
                } else {
                    logs.tail.join("\n")
                };
                Err(failed(format!("{why}; last log lines:\n{tail}")))
            }
            Outcome::Running => unreachable!("the loop only ends with an outcome"),
        }
    }
}

capstan_plugin_sdk::export!(KanikoBuild with_types_in capstan_plugin_sdk);

#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST_SECTION: [u8; include_bytes!("../capstan.toml").len()] =
    *include_bytes!("../capstan.toml");
