//! The scheduler: prepares a run (load, validate, record) and executes its
//! DAG on tokio — a ready set, bounded parallelism, retries with backoff,
//! `when` skips, `finally` tasks, timeouts, cancellation, and resume after a
//! crash. Every state transition is written to the [`RunStore`] before the
//! scheduler acts on it.

pub mod approval;
pub mod decide;
pub mod disk;
mod execution;
mod prepare;
pub mod ready;
mod recorder;
mod rerun;
mod runid;
mod sink;

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Result;
use tokio::sync::mpsc::UnboundedSender;

use crate::caps::LogLevel;
use crate::pipeline::{Diagnostics, Document, Plan};
use crate::runtime::{Plugin, Runtime, TaskLimits};
use crate::store::{RunStatus, RunStore, StopMode, TaskStatus};

/// What the scheduler reports while a run executes.
#[derive(Debug, Clone)]
pub enum Event {
    Run {
        status: RunStatus,
    },
    Task {
        task: String,
        status: TaskStatus,
        attempt: u32,
        message: Option<String>,
    },
    Log {
        task: String,
        level: LogLevel,
        message: String,
    },
    Progress {
        task: String,
        step: String,
        current: u64,
        total: Option<u64>,
    },
}

/// Why a run could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// The pipeline or its inputs are invalid (exit code 2).
    #[error("{0}")]
    Invalid(#[from] Diagnostics),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// A validated pipeline with its plugins loaded.
pub struct Prepared {
    /// Things to tell the user (deprecated plugin versions, ...).
    pub warnings: Vec<String>,
    pub doc: Document,
    pub plan: Plan,
    pub plugins: HashMap<String, Arc<Plugin>>,
    pub overrides: Vec<(String, String)>,
}

/// Options for a new run. Defaults: parallelism 16, no workspace bindings
/// (every workspace gets a fresh directory under the state dir).
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub parallelism: usize,
    pub workspaces: BTreeMap<String, PathBuf>,
    pub limits: TaskLimits,
    /// The run's namespace and ServiceAccount for the kube capability.
    pub kube: Option<crate::store::KubeIdentity>,
    /// The run this one re-runs.
    pub rerun_of: Option<String>,
    /// What started it.
    pub triggered_by: Option<crate::store::TriggeredBy>,
    /// `$(context.trigger.KEY)` values.
    pub trigger: BTreeMap<String, String>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            parallelism: 16,
            workspaces: BTreeMap::new(),
            limits: TaskLimits::default(),
            kube: None,
            rerun_of: None,
            triggered_by: None,
            trigger: BTreeMap::new(),
        }
    }
}

pub struct Scheduler {
    pub runtime: Arc<Runtime>,
    pub store: Arc<RunStore>,
    pub state_dir: PathBuf,
    /// Set to cancel every run this scheduler executes (Ctrl-C).
    pub cancel: Arc<AtomicBool>,
    pub limits: TaskLimits,
    /// Platform capability ceilings (the third grant layer).
    pub policy: Arc<dyn crate::caps::grant::Policy>,
    /// Where `name@range` references resolve (default `STATE/registry`).
    pub registry: capstan_registry::Registry,
    /// How `oci://` references (and an OCI `registry`) are reached.
    pub oci: capstan_registry::OciOptions,
    /// How `capstan.lock` is used.
    pub lock_mode: crate::resolve::LockMode,
    /// The Kubernetes API for the kube capability (none: kube grants fail
    /// their requests with a clear denial).
    pub kube_client: Option<kube::Client>,
    /// Run container steps as Pods on this claim (the controller); None:
    /// on the local engine.
    pub pods: Option<crate::caps::container::PodSettings>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Bumped whenever a decision on a waiting task is recorded in this
    /// process, so the run applies it at once (other processes' decisions
    /// are found by polling the store every second).
    pub wake: tokio::sync::watch::Sender<u64>,
    /// Where this scheduler's API is reached from outside (for the approve
    /// and reject links of approval notifications).
    pub public_url: Option<String>,
    recorder: Recorder,
}

impl Scheduler {
    /// A scheduler over `store`, with the local registry in
    /// `STATE/registry` (change `registry` to use another).
    pub fn new(
        runtime: Arc<Runtime>,
        store: Arc<RunStore>,
        state_dir: PathBuf,
    ) -> Result<Scheduler> {
        let registry = capstan_registry::Registry::Local(capstan_registry::LocalRegistry::open(
            &state_dir.join("registry"),
        )?);
        Ok(Scheduler {
            registry,
            oci: crate::resolve::oci_options(&state_dir, None),
            lock_mode: crate::resolve::LockMode::default(),
            kube_client: None,
            pods: None,
            metrics: Arc::default(),
            wake: tokio::sync::watch::Sender::new(0),
            public_url: None,
            runtime,
            recorder: Recorder::new(store.clone()),
            store,
            state_dir,
            cancel: Arc::new(AtomicBool::new(false)),
            limits: TaskLimits::default(),
            policy: Arc::new(crate::caps::grant::NoCeilings),
        })
    }
    /// Execute a recorded run until it reaches a terminal state. Works for a
    /// new run and for one interrupted by a crash (resume): tasks that
    /// succeeded are not run again; tasks that were running get a new attempt.
    pub async fn execute(
        &self,
        run_id: &str,
        prepared: &Prepared,
        events: Option<UnboundedSender<Event>>,
    ) -> Result<RunStatus> {
        let _lock = self.lock_run(run_id)?;
        let rec = self.store.run(run_id)?;
        if rec.status.is_terminal() {
            return Ok(rec.status);
        }
        let abandoned = self.store.abandon_running_attempts(run_id)?;
        let mut exec = Execution::new(self, run_id, prepared, &rec.spec, events)?;
        exec.read_cluster_secrets().await;
        if abandoned > 0 {
            tracing::info!(
                run = run_id,
                "resuming: {abandoned} interrupted attempt(s) will run again"
            );
        }
        exec.set_run(RunStatus::Running, None)?;
        self.metrics.run_started();
        let status = exec.run().await;
        self.metrics.run_ended(status.as_ref().ok().copied());
        status
    }

    /// Where the directories Capstan makes for a run's workspaces live:
    /// `STATE/workspaces`, or for a run of a namespace when containers run
    /// as Pods `STATE/tenants/NS/workspaces` — under the namespace's root,
    /// which is all its workspace claim exposes.
    pub fn workspaces_root(&self, kube: Option<&crate::store::KubeIdentity>) -> PathBuf {
        match kube {
            Some(id) if self.tenanted() => {
                tenant_root(&self.state_dir, &id.namespace).join("workspaces")
            }
            _ => self.state_dir.join("workspaces"),
        }
    }

    /// Whether namespaces have directories of their own: containers run as
    /// Pods on a workspace claim.
    pub fn tenanted(&self) -> bool {
        self.pods.as_ref().is_some_and(|p| !p.claim.is_empty())
    }

    fn lock_run(&self, run_id: &str) -> Result<File> {
        lock_run(&self.state_dir, run_id)
    }

    /// Cancel a run (stop every task now; `finally` does not run).
    pub fn cancel_run(&self, run_id: &str) -> Result<StopOutcome> {
        self.stop_run(run_id, StopMode::Cancel)
    }

    /// Ask a run to stop (`mode`). The process executing it carries it out
    /// within 100 ms. If none is, a cancel is carried out here; a stop that
    /// runs `finally` needs the run executed (`runs resume` does it).
    pub fn stop_run(&self, run_id: &str, mode: StopMode) -> Result<StopOutcome> {
        let rec = self.store.run(run_id)?;
        if rec.status.is_terminal() {
            return Ok(StopOutcome::Ended(rec.status));
        }
        self.store.request_stop(run_id, mode)?;
        let Ok(_lock) = self.lock_run(run_id) else {
            return Ok(StopOutcome::Requested);
        };
        if mode != StopMode::Cancel {
            return Ok(StopOutcome::NeedsExecution);
        }
        for t in self.store.tasks(run_id)? {
            if !t.status.is_terminal() {
                self.store.set_task_status(
                    run_id,
                    &t.name,
                    TaskStatus::Cancelled,
                    Some("run cancelled"),
                )?;
            }
        }
        self.store.abandon_running_attempts(run_id)?;
        self.store
            .set_run_status(run_id, RunStatus::Cancelled, Some("cancelled by user"))?;
        Ok(StopOutcome::Ended(RunStatus::Cancelled))
    }
}

/// A namespace's own directory in cluster mode (`STATE/tenants/NS`): its
/// runs' workspaces, its step scratch directories and its caches. The
/// namespace's workspace claim is this directory, nothing above it.
pub fn tenant_root(state_dir: &std::path::Path, namespace: &str) -> PathBuf {
    state_dir.join("tenants").join(namespace)
}

/// What asking a run to stop did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopOutcome {
    /// The run has ended (already, or now) with this status.
    Ended(RunStatus),
    /// The process executing the run will carry it out.
    Requested,
    /// Recorded; no process executes the run, and its `finally` tasks must
    /// run: execute it (`capstan runs resume`).
    NeedsExecution,
}

use execution::Execution;
use recorder::Recorder;
use runid::lock_run;
pub use runid::{new_run_id, run_is_active};
