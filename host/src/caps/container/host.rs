//! Generated `Host` impl for `capstan:plugin/container`: checks a run
//! against the grants, lays out its scratch directory (script, results),
//! runs it on the engine with its output in the task log, and reads the
//! results back.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Waker};

use tokio::io::AsyncWrite;

use super::engine::{Job, SecretVar, Stream, bind_source};
use super::{Allowed, ContainerState, spec};
use crate::bindings::capstan::plugin::container::{Host, RunOutcome, RunSpec};
use crate::bindings::capstan::plugin::types::{Denial, GrantLayer, TaskError, TaskResult};
use crate::caps::LogLevel;
use crate::caps::capability::View;
use crate::caps::log::StdioCapture;

/// Most bytes of results a container hands back (as the task's own).
const MAX_RESULTS: usize = 1 << 20;
/// Where the results directory is in the container.
const RESULTS: &str = "/capstan/results";
/// The results directory in a call's scratch directory.
pub(super) const RESULTS_DIR: &str = "results";
/// Most entries read from the results directory.
const MAX_RESULT_FILES: usize = 1000;
const SCRIPTS: &str = "/capstan/scripts";

fn invalid(m: String) -> TaskError {
    TaskError::InvalidParams(m)
}

impl Host for View<'_, ContainerState> {
    async fn run(&mut self, spec: RunSpec) -> Result<RunOutcome, TaskError> {
        let image = spec::normalize(&spec.image).map_err(invalid)?;
        check_spec(&spec)?;
        let prepared = &self.state.prepared;
        let matching: Vec<&Allowed> = prepared
            .allowed
            .iter()
            .filter(|a| spec::matches(&a.pattern, &image))
            .collect();
        let Some(backend) = prepared.backend.clone().filter(|_| !matching.is_empty()) else {
            return Err(self.deny(
                GrantLayer::Pipeline,
                "image",
                image,
                "not in this task's grants.container",
            ));
        };
        let grant = match choose(&matching, &spec) {
            Ok(g) => g,
            Err((kind, missing)) => {
                return Err(self.deny(
                    GrantLayer::Pipeline,
                    kind,
                    missing,
                    &format!("not given by one grants.container entry allowing {image}"),
                ));
            }
        };
        // Root only where a policy allows it (validation said so already).
        let (mut network, mut root) = (grant.network, grant.root && prepared.limits.is_some());
        let (mut cpu, mut memory) = (spec.cpu_millis, spec.memory_bytes);
        if let Some(limits) = &prepared.limits {
            let checked = limits
                .check_image(&image)
                .and_then(|()| limits.resources(cpu, memory));
            match checked {
                Ok(r) => (cpu, memory) = r,
                Err(why) => return Err(self.deny(GrantLayer::Policy, "image", image, &why)),
            }
            // A grant over the ceiling is refused at validation; this
            // holds even if one slipped by.
            network &= limits.network;
            root &= limits.root;
        }
        let secret_vars = secret_env(grant, &spec)?;
        let call = backend.call().map_err(TaskError::Failed)?;
        let mut job = self.job(&spec, image, network, call.scratch())?;
        if root {
            // Root writes only its results: files it left in a workspace
            // (owned by root, maybe unreadable) are more than the
            // controller could clean up.
            job.root = true;
            for (_, path, read_only) in &mut job.binds {
                *read_only |= path != RESULTS;
            }
        }
        let caches = self.cache_binds(&spec)?;
        job.binds.extend(
            caches
                .iter()
                .map(|(_, dir, path)| (dir.clone(), path.clone(), false)),
        );
        job.secret_vars = secret_vars;
        job.nano_cpus = cpu.map(|m| i64::from(m) * 1_000_000);
        job.memory = memory.map(|b| b.min(i64::MAX as u64) as i64);
        let out = StdioCapture::new(
            self.task.sink.clone(),
            self.task.budget.clone(),
            LogLevel::Info,
        );
        let err = StdioCapture::new(
            self.task.sink.clone(),
            self.task.budget.clone(),
            LogLevel::Warn,
        );
        let (mut to_out, mut to_err) = (out.clone(), err.clone());
        let mut emit = |stream: Stream, bytes: &[u8]| {
            let w = match stream {
                Stream::Out => &mut to_out,
                Stream::Err => &mut to_err,
            };
            // Always ready: the capture writes lines into the task log.
            let _ = Pin::new(w).poll_write(&mut Context::from_waker(Waker::noop()), bytes);
        };
        let ended = call.run(job, &mut emit).await;
        out.flush_partial();
        err.flush_partial();
        self.keep_caches_in_budget(&caches);
        let ended = ended.map_err(TaskError::Failed)?;
        let results = read_results(&call.scratch().join(RESULTS_DIR))?;
        Ok(RunOutcome {
            exit_code: i32::try_from(ended.exit_code).unwrap_or(i32::MAX),
            results,
            timed_out: ended.timed_out,
        })
    }
}

/// One grant decides a run: the first that allows the image and gives
/// every secret and cache asked for (with its own network; grants are not
/// pooled). Else what is missing: (kind, name).
fn choose<'g>(
    matching: &[&'g Allowed],
    spec: &RunSpec,
) -> Result<&'g Allowed, (&'static str, String)> {
    let has = |a: &Allowed, s: &str| a.secrets.iter().any(|(n, _)| n == s);
    let has_cache = |a: &Allowed, c: &str| a.caches.iter().any(|n| n == c);
    if let Some(g) = matching.iter().copied().find(|a| {
        spec.secret_env.iter().all(|e| has(a, &e.secret))
            && spec.caches.iter().all(|c| has_cache(a, &c.name))
    }) {
        return Ok(g);
    }
    let secret = spec
        .secret_env
        .iter()
        .find(|e| !matching.iter().any(|a| has(a, &e.secret)))
        .map(|e| ("secret", &e.secret));
    let cache = spec
        .caches
        .iter()
        .find(|c| !matching.iter().any(|a| has_cache(a, &c.name)))
        .map(|c| ("cache", &c.name));
    Err(secret.or(cache).map_or(
        ("secrets and caches", "(not all from one grant)".to_string()),
        |(k, n)| (k, crate::caps::log::one_line(n)),
    ))
}

/// Each secret variable with its value, from the chosen grant.
fn secret_env(grant: &Allowed, spec: &RunSpec) -> Result<Vec<SecretVar>, TaskError> {
    let mut out = Vec::new();
    for e in &spec.secret_env {
        let Some((_, value)) = grant.secrets.iter().find(|(n, _)| *n == e.secret) else {
            return Err(TaskError::Failed(format!(
                "secret `{}` is not granted",
                e.secret
            )));
        };
        let value = std::str::from_utf8(value)
            .ok()
            .filter(|v| !v.contains('\0'))
            .ok_or_else(|| {
                TaskError::Failed(format!(
                    "secret `{}` cannot be an environment variable: it is not UTF-8 text without NUL bytes",
                    e.secret
                ))
            })?;
        out.push(SecretVar {
            name: e.name.clone(),
            secret: e.secret.clone(),
            value: value.to_string(),
        });
    }
    Ok(out)
}

impl View<'_, ContainerState> {
    /// The caches asked for: (name, host directory, path in the container).
    fn cache_binds(&self, spec: &RunSpec) -> Result<Vec<(String, PathBuf, String)>, TaskError> {
        if spec.caches.is_empty() {
            return Ok(Vec::new());
        }
        let Some((state, pipeline)) = &self.state.prepared.caches else {
            return Err(TaskError::Failed(
                "caches are not kept here (no state directory)".into(),
            ));
        };
        let mut out = Vec::new();
        for c in &spec.caches {
            let p = &c.path;
            let reserved = [RESULTS, SCRIPTS, "/workspace"].iter().any(|r| {
                p == r || p.starts_with(&format!("{r}/")) || r.starts_with(&format!("{p}/"))
            });
            if !p.starts_with('/')
                || p == "/"
                || p.split('/').any(|s| s == ".." || s == ".")
                || reserved
            {
                return Err(invalid(format!(
                    "cache `{}` path `{}`: an absolute path of its own (not /, not under /workspace or /capstan)",
                    c.name,
                    crate::caps::log::one_line(p)
                )));
            }
            if out.iter().any(|(n, _, q)| n == &c.name || q == p) {
                return Err(invalid(format!("cache `{}` mounted twice", c.name)));
            }
            let dir = super::cache::open(state, pipeline, &c.name).map_err(TaskError::Failed)?;
            out.push((c.name.clone(), dir, p.clone()));
        }
        Ok(out)
    }

    /// Empty any cache the run left over its budget (with a warning).
    fn keep_caches_in_budget(&self, caches: &[(String, PathBuf, String)]) {
        let budget = self
            .state
            .prepared
            .limits
            .as_ref()
            .and_then(|l| l.cache_budget)
            .unwrap_or(super::cache::DEFAULT_BUDGET);
        for (name, dir, _) in caches {
            let size = super::cache::size(dir);
            if size > budget {
                let done = match super::cache::empty(dir) {
                    Ok(()) => "emptied".to_string(),
                    Err(e) => format!("emptying it failed: {e}"),
                };
                self.task.sink.log(
                    LogLevel::Warn,
                    &format!(
                        "cache `{name}` holds {size} bytes, over its budget of {budget}: {done}"
                    ),
                );
            }
        }
    }

    /// Log a denial and the error the plugin gets.
    fn deny(&self, layer: GrantLayer, kind: &str, target: String, why: &str) -> TaskError {
        let name = match layer {
            GrantLayer::Policy => "policy",
            _ => "pipeline",
        };
        self.task.sink.log(
            LogLevel::Warn,
            &format!("denied: container {kind} `{target}` (layer: {name}; {why})"),
        );
        TaskError::Denied(Denial {
            capability: "container".into(),
            target,
            layer,
        })
    }

    /// The engine job for `spec`: the task's workspaces and the scratch
    /// directory mounted, the script written.
    fn job(
        &self,
        spec: &RunSpec,
        image: String,
        network: bool,
        scratch: &Path,
    ) -> Result<Job, TaskError> {
        let io = |e: std::io::Error| TaskError::Failed(format!("container scratch directory: {e}"));
        let results = scratch.join(RESULTS_DIR);
        let scripts = scratch.join("scripts");
        std::fs::create_dir_all(&results).map_err(io)?;
        std::fs::create_dir_all(&scripts).map_err(io)?;
        let mut binds = Vec::new();
        for m in self.task.mounts.iter() {
            let source = bind_source(&m.dir).map_err(TaskError::Failed)?;
            binds.push((source, m.guest_path(), m.read_only));
        }
        binds.push((results.clone(), RESULTS.to_string(), false));
        binds.push((scripts.clone(), SCRIPTS.to_string(), true));
        // Kubernetes' rules: `command` replaces the image's entrypoint,
        // `args` its arguments; a script is the command.
        let entrypoint = match &spec.script {
            Some(script) => {
                write_script(&scripts.join("script"), script).map_err(io)?;
                Some(vec![format!("{SCRIPTS}/script")])
            }
            None => (!spec.command.is_empty()).then(|| spec.command.clone()),
        };
        let cmd = spec.args.clone();
        let mut env: Vec<String> = spec
            .env
            .iter()
            .map(|v| format!("{}={}", v.name, v.value))
            .collect();
        env.push(format!("CAPSTAN_RESULTS={RESULTS}"));
        Ok(Job {
            image,
            entrypoint,
            cmd,
            env,
            secret_vars: Vec::new(),
            working_dir: spec.working_dir.clone(),
            binds,
            network,
            root: false,
            nano_cpus: None,
            memory: None,
            timeout: spec
                .timeout_seconds
                .map(|s| std::time::Duration::from_secs(s.into())),
        })
    }
}

/// Names and strings the engine would misread: refused, not passed on.
fn check_spec(spec: &RunSpec) -> Result<(), TaskError> {
    let mut names = std::collections::BTreeSet::new();
    let all_names = spec
        .env
        .iter()
        .map(|v| &v.name)
        .chain(spec.secret_env.iter().map(|v| &v.name));
    for name in all_names {
        spec::check_env_name(name).map_err(invalid)?;
        if !names.insert(name) {
            return Err(invalid(format!(
                "environment variable `{name}` is set twice"
            )));
        }
    }
    if spec.script.is_some() && !spec.command.is_empty() {
        return Err(invalid(
            "`command` and `script` cannot both be set (as in Tekton)".into(),
        ));
    }
    let strings = spec
        .env
        .iter()
        .map(|v| v.value.as_str())
        .chain(spec.args.iter().map(String::as_str))
        .chain(spec.command.iter().map(String::as_str))
        .chain(spec.working_dir.as_deref())
        .chain(spec.script.as_deref());
    for s in strings {
        if s.contains('\0') {
            return Err(invalid("a NUL byte in an argument, value or script".into()));
        }
    }
    if let Some(w) = &spec.working_dir
        && !w.starts_with('/')
    {
        return Err(invalid(format!("workingDir `{w}` must be absolute")));
    }
    if spec.cpu_millis == Some(0) || spec.memory_bytes == Some(0) {
        return Err(invalid("a CPU or memory limit of 0".into()));
    }
    Ok(())
}

/// A Tekton-style script: without a `#!` line it runs under `/bin/sh`
/// with `set -e` (what Tekton prepends).
fn write_script(path: &Path, script: &str) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let body = if script.starts_with("#!") {
        script.to_string()
    } else {
        format!("#!/bin/sh\nset -e\n{script}")
    };
    // A Pod re-attached to may be running it: the same script is not
    // written again (a rewrite truncates it under the running shell).
    if std::fs::read(path).is_ok_and(|b| b == body.as_bytes()) {
        return Ok(());
    }
    std::fs::write(path, body)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
}

/// The regular files the command left in the results directory, as
/// results named by file; a link or anything else is skipped (never
/// followed), and more than [`MAX_RESULTS`] bytes in all is an error.
fn read_results(dir: &Path) -> Result<Vec<TaskResult>, TaskError> {
    use std::os::unix::fs::OpenOptionsExt;
    let io = |e: std::io::Error| TaskError::Failed(format!("reading the container's results: {e}"));
    let mut out = Vec::new();
    let mut total = 0usize;
    let mut entries = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io)? {
        let e = e.map_err(io)?;
        total += e.file_name().len();
        if entries.len() >= MAX_RESULT_FILES || total > MAX_RESULTS {
            return Err(TaskError::Failed(format!(
                "the container left more than {MAX_RESULT_FILES} entries or {MAX_RESULTS} bytes of names in its results directory"
            )));
        }
        entries.push(e);
    }
    entries.sort_by_key(|e| e.file_name());
    total = 0;
    for e in entries {
        let Ok(name) = e.file_name().into_string() else {
            continue;
        };
        if !e.file_type().map_err(io)?.is_file() {
            continue;
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(e.path())
            .map_err(io)?;
        let mut value = Vec::new();
        file.take((MAX_RESULTS - total + 1) as u64)
            .read_to_end(&mut value)
            .map_err(io)?;
        total += name.len() + value.len();
        if total > MAX_RESULTS {
            return Err(TaskError::Failed(format!(
                "the container's results are over {MAX_RESULTS} bytes"
            )));
        }
        out.push(TaskResult {
            name,
            value: String::from_utf8_lossy(&value).into_owned(),
        });
    }
    Ok(out)
}
