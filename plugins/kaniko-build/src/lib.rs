//! `kaniko-build`: build and push an image with the kaniko executor,
//! through the host's `container` capability. The plugin only describes
//! the run (the executor's flags); the host checks the executor image
//! against the task's grants, mounts the task's `source` workspace at
//! `/workspace/source` (in the cluster: a Pod in the run's namespace, as
//! the run's ServiceAccount, with the sub-path of the run's workspace
//! claim computed by the host: the plugin names no volume and no path on
//! it), puts the push credentials in a variable from the granted Secret,
//! and hands back the digest kaniko writes into the results directory.
//!
//! The executor image must be a `-debug` one: its busybox shell writes the
//! credentials to `/kaniko/.docker/config.json` before starting kaniko.

use capstan_plugin_sdk::capstan::plugin::container::{self, RunSpec, SecretEnv};
use capstan_plugin_sdk::capstan::plugin::log::{Level, log, progress};
use capstan_plugin_sdk::capstan::plugin::types::{TaskError, TaskInput, TaskResult};
use capstan_plugin_sdk::exports::capstan::plugin::task::Guest;
use capstan_plugin_sdk::{param_list, param_str, seconds};

struct KanikoBuild;

/// Where the host mounts the `source` workspace.
const SOURCE: &str = "/workspace/source";
/// The variable the credentials arrive in.
const CONFIG_VAR: &str = "KANIKO_DOCKER_CONFIG_JSON";

/// What the build needs.
#[derive(Debug, Clone)]
pub struct Build {
    pub destination: String,
    pub tag: String,
    pub dockerfile: String,
    pub context: String,
    pub extra_args: Vec<String>,
    pub with_credentials: bool,
}

/// A path param inside the workspace (no absolute paths, no `..`).
pub fn inside(what: &str, p: &str) -> Result<(), String> {
    if p.starts_with('/') || p.split('/').any(|s| s == "..") || p.contains('\0') {
        return Err(format!(
            "`{what}` must be a relative path inside the workspace, not `{p}`"
        ));
    }
    Ok(())
}

/// Flags the plugin sets itself: in `extra-args` they could point the
/// build at another directory than the workspace (`--context=dir:///kaniko`
/// would bake the credentials into the image) or the digest elsewhere.
const OWN_FLAGS: &[&str] = &[
    "--context",
    "-c",
    "--dockerfile",
    "-f",
    "--destination",
    "-d",
    "--digest-file",
    "--context-sub-path",
    "--image-name-with-digest-file",
    "--image-name-tag-with-digest-file",
    "--oci-layout-path",
    "--tar-path",
    "--kaniko-dir",
];

/// `extra-args` without the flags the plugin owns.
pub fn check_extra(args: &[String]) -> Result<(), String> {
    for a in args {
        let flag = a.split('=').next().unwrap_or(a);
        if OWN_FLAGS.contains(&flag) {
            return Err(format!(
                "`extra-args`: `{flag}` is set by kaniko-build itself (the context, Dockerfile, destination and digest come from its params)"
            ));
        }
    }
    Ok(())
}

/// A word for a POSIX shell, single-quoted.
fn quoted(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

impl Build {
    pub fn image_url(&self) -> String {
        format!("{}:{}", self.destination, self.tag)
    }

    /// The executor's flags: the context and Dockerfile in the workspace,
    /// the destination, the digest into the results directory.
    pub fn args(&self) -> Vec<String> {
        let ctx = if self.context == "." {
            SOURCE.to_string()
        } else {
            format!("{SOURCE}/{}", self.context.trim_end_matches('/'))
        };
        let mut args = vec![
            format!("--dockerfile={ctx}/{}", self.dockerfile),
            format!("--context=dir://{ctx}"),
            format!("--destination={}", self.image_url()),
            "--digest-file=/capstan/results/IMAGE_DIGEST".to_string(),
        ];
        args.extend(self.extra_args.iter().cloned());
        args
    }

    /// The script the debug image's shell runs: the credentials into
    /// kaniko's config, then the executor (every word quoted).
    pub fn script(&self) -> String {
        let mut s = String::from("#!/busybox/sh\nset -e\n");
        if self.with_credentials {
            s.push_str(&format!(
                "mkdir -p /kaniko/.docker\nprintf '%s' \"${CONFIG_VAR}\" > /kaniko/.docker/config.json\nunset {CONFIG_VAR}\n"
            ));
        }
        s.push_str("exec /kaniko/executor");
        for a in self.args() {
            s.push(' ');
            s.push_str(&quoted(&a));
        }
        s.push('\n');
        s
    }
}

fn invalid(m: impl Into<String>) -> TaskError {
    TaskError::InvalidParams(m.into())
}

fn build_of(input: &TaskInput) -> Result<Build, TaskError> {
    let context = param_str(input, "context", Some("."))?;
    let dockerfile = param_str(input, "dockerfile", Some("Dockerfile"))?;
    inside("context", &context).map_err(invalid)?;
    inside("dockerfile", &dockerfile).map_err(invalid)?;
    let extra_args = param_list(input, "extra-args")?;
    check_extra(&extra_args).map_err(invalid)?;
    let tag = param_str(input, "tag", None)?;
    if tag.is_empty() {
        return Err(invalid("`tag` is empty"));
    }
    Ok(Build {
        destination: param_str(input, "destination", None)?,
        tag,
        dockerfile,
        context,
        extra_args,
        with_credentials: !param_str(input, "docker-config-secret", Some(""))?.is_empty(),
    })
}

impl Guest for KanikoBuild {
    fn run(input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
        let build = build_of(&input)?;
        let secret = param_str(&input, "docker-config-secret", Some(""))?;
        let image = param_str(
            &input,
            "executor-image",
            Some("gcr.io/kaniko-project/executor:v1.23.2-debug"),
        )?;
        let timeout = seconds(&param_str(&input, "timeout", Some("30m"))?).map_err(invalid)?;
        let spec = RunSpec {
            image: image.clone(),
            script: Some(build.script()),
            command: Vec::new(),
            args: Vec::new(),
            env: Vec::new(),
            secret_env: if secret.is_empty() {
                Vec::new()
            } else {
                vec![SecretEnv {
                    name: CONFIG_VAR.into(),
                    secret,
                }]
            },
            caches: Vec::new(),
            working_dir: Some(SOURCE.into()),
            cpu_millis: None,
            memory_bytes: None,
            timeout_seconds: timeout,
        };
        log(
            Level::Info,
            &format!("building {} with {image}", build.image_url()),
        );
        progress("building", 0, None);
        let outcome = container::run(&spec)?;
        if outcome.timed_out {
            return Err(TaskError::Failed(format!(
                "the build of {} was killed: its timeout passed",
                build.image_url()
            )));
        }
        if outcome.exit_code != 0 {
            return Err(TaskError::Failed(format!(
                "the kaniko executor exited with {} building {} (its log is above)",
                outcome.exit_code,
                build.image_url()
            )));
        }
        let digest = outcome
            .results
            .iter()
            .find(|r| r.name == "IMAGE_DIGEST")
            .map(|r| r.value.trim().to_string())
            .filter(|d| d.starts_with("sha256:") && d.len() == 71)
            .ok_or_else(|| {
                TaskError::Failed("the executor succeeded but wrote no image digest".into())
            })?;
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
}

capstan_plugin_sdk::export!(KanikoBuild with_types_in capstan_plugin_sdk);

#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST: [u8; include_bytes!("../capstan.toml").len()] = *include_bytes!("../capstan.toml");

#[cfg(test)]
mod tests {
    use super::*;

    fn build() -> Build {
        Build {
            destination: "registry.example/team/app".into(),
            tag: "abc123".into(),
            dockerfile: "Dockerfile".into(),
            context: "app/".into(),
            extra_args: vec!["--build-arg=V=it's".into()],
            with_credentials: true,
        }
    }

    #[test]
    fn the_executor_builds_the_workspace_and_writes_the_digest_as_a_result() {
        let b = build();
        assert_eq!(
            b.args(),
            [
                "--dockerfile=/workspace/source/app/Dockerfile",
                "--context=dir:///workspace/source/app",
                "--destination=registry.example/team/app:abc123",
                "--digest-file=/capstan/results/IMAGE_DIGEST",
                "--build-arg=V=it's",
            ]
        );
        let s = b.script();
        assert!(s.starts_with("#!/busybox/sh\nset -e\n"), "{s}");
        assert!(s.contains("> /kaniko/.docker/config.json"), "{s}");
        // Every word quoted: a param cannot add shell syntax.
        assert!(s.contains(r"'--build-arg=V=it'\''s'"), "{s}");
        let bare = Build {
            with_credentials: false,
            ..b
        };
        assert!(!bare.script().contains("config.json"));
    }

    #[test]
    fn extra_args_cannot_move_the_context_or_the_digest() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(check_extra(&v(&["--build-arg=V=1", "--cache=true"])).is_ok());
        for bad in [
            "--context=dir:///kaniko/.docker",
            "-c",
            "--digest-file=/x",
            "--dockerfile=/etc/passwd",
        ] {
            assert!(check_extra(&v(&[bad])).is_err(), "{bad}");
        }
    }

    #[test]
    fn paths_stay_inside_the_workspace() {
        for bad in ["/etc", "../x", "a/../../b"] {
            assert!(inside("context", bad).is_err(), "{bad}");
        }
        assert!(inside("context", "app/sub").is_ok());
    }
}
