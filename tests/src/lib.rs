//! Test helpers for Capstan: real components, a real runtime and run store
//! in a temp dir, and pipelines written from YAML with `{{component}}`
//! placeholders.
//!
//! ```no_run
//! # async fn demo() {
//! let env = capstan_tests::TestEnv::new();
//! let run = env.run(r#"
//! apiVersion: capstan.dev/v1alpha1
//! kind: Pipeline
//! metadata: { name: t }
//! spec:
//!   tasks:
//!     - name: a
//!       uses: "{{echo}}"
//!       params: [{ name: message, value: hi }]
//! "#, &[]).await;
//! assert_eq!(run.result("a", "message"), "hi");
//! # }
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use capstan::runtime::{Runtime, RuntimeConfig, TaskLimits};
use capstan::scheduler::{PrepareError, RunOptions, Scheduler};
use capstan::store::{
    AttemptRecord, LogLine, RunRecord, RunStatus, RunStore, TaskRecord, TaskStatus,
};

pub mod browser;
pub mod forge;
pub mod git;
pub mod httpd;
pub mod kube;
pub mod netfront;
pub mod node;
pub mod oci;
pub mod podman;
pub mod seed;
pub mod soak;
pub mod sshd;

/// Paths of the components built by `build.rs`.
pub mod components {
    include!(concat!(env!("OUT_DIR"), "/components.rs"));
}

/// Replace `{{name}}` with the path of component `name`.
pub fn expand(yaml: &str) -> String {
    let mut out = yaml.to_string();
    for (name, path) in components::ALL {
        out = out.replace(&format!("{{{{{name}}}}}"), path);
    }
    assert!(
        !out.contains("{{"),
        "unknown component placeholder in:\n{out}"
    );
    out
}

/// Compiled components are cached across tests (keyed by digest and engine
/// settings, so sharing is safe).
pub fn shared_cache_dir() -> PathBuf {
    Path::new(env!("OUT_DIR")).join("compiled-components")
}

/// A scheduler with its own state dir. Limits are the defaults unless a test
/// changes `sched.limits`.
pub struct TestEnv {
    pub dir: tempfile::TempDir,
    pub sched: Scheduler,
}

/// A finished run, with everything the store recorded about it.
#[derive(Debug)]
pub struct RunOutcome {
    pub id: String,
    pub status: RunStatus,
    pub run: RunRecord,
    pub tasks: HashMap<String, TaskRecord>,
    pub attempts: Vec<AttemptRecord>,
    pub logs: Vec<LogLine>,
}

impl RunOutcome {
    pub fn task(&self, name: &str) -> &TaskRecord {
        self.tasks
            .get(name)
            .unwrap_or_else(|| panic!("no task {name} in {:?}", self.tasks.keys()))
    }

    pub fn status_of(&self, name: &str) -> TaskStatus {
        self.task(name).status
    }

    pub fn result(&self, task: &str, name: &str) -> &str {
        self.task(task).results.get(name).unwrap_or_else(|| {
            panic!(
                "task {task} has no result {name}: {:?}\n{}",
                self.task(task),
                self.log_text()
            )
        })
    }

    pub fn message(&self, task: &str) -> &str {
        self.task(task).message.as_deref().unwrap_or("")
    }

    /// All log lines, for assertion messages.
    pub fn log_text(&self) -> String {
        self.logs
            .iter()
            .map(|l| format!("{}#{} {:?} {}\n", l.task, l.attempt, l.level, l.message))
            .collect()
    }

    pub fn task_log(&self, task: &str) -> Vec<&str> {
        self.logs
            .iter()
            .filter(|l| l.task == task)
            .map(|l| l.message.as_str())
            .collect()
    }
}

impl Default for TestEnv {
    fn default() -> Self {
        Self::new()
    }
}

impl TestEnv {
    pub fn new() -> TestEnv {
        Self::with_limits(TaskLimits::default())
    }

    pub fn with_limits(limits: TaskLimits) -> TestEnv {
        let dir = tempfile::tempdir().expect("temp dir");
        let state = dir.path().join("state");
        let store = Arc::new(RunStore::open(&state).expect("run store"));
        let runtime = Arc::new(
            Runtime::new(RuntimeConfig {
                max_instances: 16,
                cache_dir: Some(shared_cache_dir()),
                ..RuntimeConfig::default()
            })
            .expect("runtime"),
        );
        let mut sched = Scheduler::new(runtime, store, state).expect("scheduler");
        sched.limits = limits;
        TestEnv { dir, sched }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Write a pipeline file (placeholders expanded) and return its path.
    pub fn write_pipeline(&self, yaml: &str) -> PathBuf {
        let path = self.dir.path().join("pipeline.yaml");
        std::fs::write(&path, expand(yaml)).expect("write pipeline");
        path
    }

    /// Prepare a pipeline; Err carries the diagnostics text.
    pub fn prepare(
        &self,
        yaml: &str,
        params: &[(&str, &str)],
    ) -> Result<capstan::scheduler::Prepared, String> {
        let path = self.write_pipeline(yaml);
        let overrides: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.sched
            .prepare_file(&path, &overrides)
            .map_err(|e| match e {
                PrepareError::Invalid(d) => d.to_string(),
                PrepareError::Other(e) => format!("{e:#}"),
            })
    }

    /// Run a pipeline to the end with default options.
    pub async fn run(&self, yaml: &str, params: &[(&str, &str)]) -> RunOutcome {
        self.run_with(yaml, params, RunOptions::default()).await
    }

    pub async fn run_with(
        &self,
        yaml: &str,
        params: &[(&str, &str)],
        opts: RunOptions,
    ) -> RunOutcome {
        let prepared = self
            .prepare(yaml, params)
            .unwrap_or_else(|e| panic!("pipeline invalid:\n{e}"));
        let id = self.sched.create(&prepared, &opts).expect("create run");
        let status = self
            .sched
            .execute(&id, &prepared, None)
            .await
            .expect("execute");
        self.outcome(&id, status)
    }

    pub fn outcome(&self, id: &str, status: RunStatus) -> RunOutcome {
        let store = &self.sched.store;
        RunOutcome {
            id: id.to_string(),
            status,
            run: store.run(id).expect("run"),
            tasks: store
                .tasks(id)
                .expect("tasks")
                .into_iter()
                .map(|t| (t.name.clone(), t))
                .collect(),
            attempts: store.attempts(id).expect("attempts"),
            logs: store.logs(id, None, None, 0, 1_000_000).expect("logs"),
        }
    }
}

/// Run the capstan CLI `bin` (pass `env!("CARGO_BIN_EXE_capstan-cli")`, which
/// only integration tests can name) as `bin --state-dir STATE ARGS...`, with
/// no stdin.
pub fn cli(bin: &str, state: &Path, args: &[&str]) -> std::process::Output {
    cli_env(bin, state, args, &[])
}

/// [`cli`] with extra environment variables.
pub fn cli_env(
    bin: &str,
    state: &Path,
    args: &[&str],
    env: &[(&str, &std::ffi::OsStr)],
) -> std::process::Output {
    std::process::Command::new(bin)
        .envs(env.iter().copied())
        .arg("--state-dir")
        .arg(state)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("running capstan")
}

/// Start `bin serve --listen 127.0.0.1:0 EXTRA...` on `state`; returns the
/// child (the caller kills it) and the API's URL (`http://127.0.0.1:PORT`),
/// read from the first line the server prints.
pub fn serve(bin: &str, state: &Path, extra: &[&str]) -> (std::process::Child, String) {
    use std::io::BufRead as _;
    let mut child = std::process::Command::new(bin)
        .arg("--state-dir")
        .arg(state)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(extra)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starting capstan serve");
    let mut first = String::new();
    let mut reader = std::io::BufReader::new(child.stderr.take().unwrap());
    reader.read_line(&mut first).unwrap();
    // Keep reading what the server logs (a closed pipe would fail its
    // writes), shown with the test's output.
    std::thread::spawn(move || {
        for line in reader.lines().map_while(Result::ok) {
            eprintln!("serve: {line}");
        }
    });
    let url = first
        .split("API on ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in: {first}"))
        .to_string();
    (child, url)
}

/// Panic if `needle` appears in any file under the state directory `state`,
/// except the secret store (`STATE/secrets`), which is where it belongs.
pub fn assert_not_in_state(state: &Path, needle: &str) {
    let mut stack = vec![state.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("state dir").flatten() {
            let p = e.path();
            if p.ends_with("secrets") {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                assert!(
                    !String::from_utf8_lossy(&bytes).contains(needle),
                    "a secret leaked into {}",
                    p.display()
                );
            }
        }
    }
}
