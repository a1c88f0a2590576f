//! The plugin's logic, native-testable: the build Pod, and what its status
//! says.

use serde_json::{Value, json};

/// What the build needs.
#[derive(Debug, Clone)]
pub struct Build {
    pub pod_name: String,
    pub executor_image: String,
    pub destination: String,
    pub tag: String,
    pub dockerfile: String,
    pub context: String,
    pub extra_args: Vec<String>,
    pub claim: String,
    pub sub_path: String,
    pub docker_config: String,
}

/// A path param inside the workspace (no absolute paths, no `..`).
pub fn inside(what: &str, p: &str) -> Result<(), String> {
    if p.starts_with('/') || p.split('/').any(|s| s == "..") {
        return Err(format!(
            "`{what}` must be a relative path inside the workspace, not `{p}`"
        ));
    }
    Ok(())
}

/// A Pod name from the run, task and attempt (DNS-1123, ≤ 63 chars).
pub fn pod_name(run: &str, task: &str, attempt: u32) -> String {
    let mut s: String = format!("kaniko-{run}-{task}-{attempt}")
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if s.len() > 63 {
        // Keep the attempt suffix distinct.
        let tail = format!("-{attempt}");
        s.truncate(63 - tail.len());
        s.push_str(&tail);
    }
    s.trim_end_matches('-').to_string()
}

impl Build {
    pub fn image_url(&self) -> String {
        format!("{}:{}", self.destination, self.tag)
    }

    /// The kaniko executor Pod: the workspace from the claim at
    /// `/workspace`, the docker config Secret as `/kaniko/.docker/config.json`,
    /// the digest written to the termination message.
    pub fn pod(&self) -> Value {
        let ctx = if self.context == "." {
            "/workspace".to_string()
        } else {
            format!("/workspace/{}", self.context.trim_end_matches('/'))
        };
        let mut args = vec![
            format!("--dockerfile={ctx}/{}", self.dockerfile),
            format!("--context=dir://{ctx}"),
            format!("--destination={}", self.image_url()),
            "--digest-file=/dev/termination-log".to_string(),
        ];
        args.extend(self.extra_args.iter().cloned());
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": self.pod_name,
                "labels": { "app.kubernetes.io/managed-by": "capstan", "capstan.dev/plugin": "kaniko-build" }
            },
            "spec": {
                "restartPolicy": "Never",
                "automountServiceAccountToken": false,
                "containers": [{
                    "name": "kaniko",
                    "image": self.executor_image,
                    "args": args,
                    "terminationMessagePolicy": "File",
                    "volumeMounts": [
                        { "name": "workspace", "mountPath": "/workspace", "subPath": self.sub_path },
                        { "name": "docker-config", "mountPath": "/kaniko/.docker", "readOnly": true }
                    ]
                }],
                "volumes": [
                    { "name": "workspace", "persistentVolumeClaim": { "claimName": self.claim } },
                    { "name": "docker-config", "secret": {
                        "secretName": self.docker_config,
                        "items": [{ "key": ".dockerconfigjson", "path": "config.json" }]
                    } }
                ]
            }
        })
    }
}

/// Where a build Pod is.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Running,
    /// The image digest from the termination message.
    Succeeded(String),
    Failed(String),
}

/// Read a Pod's phase and the executor's termination state.
pub fn outcome(pod: &Value) -> Outcome {
    let terminated = &pod["status"]["containerStatuses"][0]["state"]["terminated"];
    match pod["status"]["phase"].as_str() {
        Some("Succeeded") => {
            let msg = terminated["message"]
                .as_str()
                .unwrap_or("")
                .trim()
                .to_string();
            if msg.starts_with("sha256:") && msg.len() == 71 {
                Outcome::Succeeded(msg)
            } else {
                Outcome::Failed(format!(
                    "the build Pod succeeded but left no image digest in its termination message (got `{msg}`)"
                ))
            }
        }
        Some("Failed") => Outcome::Failed(format!(
            "the build failed (exit code {}, {})",
            terminated["exitCode"].as_i64().unwrap_or(-1),
            terminated["reason"].as_str().unwrap_or("no reason given")
        )),
        _ => Outcome::Running,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build() -> Build {
        Build {
            pod_name: pod_name("run-1", "image", 1),
            executor_image: "kaniko:x".into(),
            destination: "reg.example/app".into(),
            tag: "abc123".into(),
            dockerfile: "Dockerfile".into(),
            context: "svc".into(),
            extra_args: vec!["--cache=true".into()],
            claim: "capstan-state".into(),
            sub_path: "workspaces/run-1/source".into(),
            docker_config: "docker-config".into(),
        }
    }

    #[test]
    fn the_pod_mounts_the_workspace_and_config_and_writes_the_digest() {
        let p = build().pod();
        let args: Vec<&str> = p["spec"]["containers"][0]["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(
            args,
            [
                "--dockerfile=/workspace/svc/Dockerfile",
                "--context=dir:///workspace/svc",
                "--destination=reg.example/app:abc123",
                "--digest-file=/dev/termination-log",
                "--cache=true"
            ]
        );
        assert_eq!(
            p["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"],
            "capstan-state"
        );
        assert_eq!(
            p["spec"]["containers"][0]["volumeMounts"][0]["subPath"],
            "workspaces/run-1/source"
        );
        assert_eq!(p["spec"]["restartPolicy"], "Never");
    }

    #[test]
    fn pod_names_are_valid() {
        assert_eq!(pod_name("Run_1", "img", 2), "kaniko-run-1-img-2");
        let long = pod_name(&"r".repeat(80), "t", 3);
        assert!(long.len() <= 63 && long.ends_with("-3"), "{long}");
        assert!(inside("context", "../x").is_err() && inside("context", "/x").is_err());
        assert!(inside("context", "a/b").is_ok());
    }

    #[test]
    fn outcomes_come_from_the_phase_and_termination_message() {
        let digest = format!("sha256:{}", "a".repeat(64));
        let pod = |phase: &str, msg: &str| json!({"status": {"phase": phase, "containerStatuses": [{"state": {"terminated": {"message": msg, "exitCode": 1, "reason": "Error"}}}]}});
        assert_eq!(
            outcome(&pod("Succeeded", &digest)),
            Outcome::Succeeded(digest.clone())
        );
        assert!(matches!(outcome(&pod("Succeeded", "")), Outcome::Failed(_)));
        assert!(
            matches!(outcome(&pod("Failed", "")), Outcome::Failed(m) if m.contains("exit code 1"))
        );
        assert_eq!(
            outcome(&json!({"status": {"phase": "Pending"}})),
            Outcome::Running
        );
    }
}
