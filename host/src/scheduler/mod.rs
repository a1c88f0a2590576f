//! The scheduler: prepares a run (load, validate, record) and executes its
//! DAG on tokio — a ready set, bounded parallelism, retries with backoff,
//! `when` skips, `finally` tasks, timeouts, cancellation, and resume after a
//! crash. Every state transition is written to the [`RunStore`] before the
//! scheduler acts on it.

pub mod approval;
pub mod disk;
mod sink;

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinSet;

use crate::caps::LogLevel;
use crate::caps::http::{Authority, HttpGrant};
use crate::caps::redact::Redactor;
use crate::caps::secrets::{LocalSecrets, SecretGrant, SecretSource};
use crate::caps::ssh::SshGrant;
use crate::caps::workspace::WorkspaceMount;
use crate::digest::Digest;
use crate::pipeline::subst::Scope;
use crate::pipeline::{Diagnostic, Diagnostics, Document, Plan, PlannedTask, WhenOperator};
use crate::runtime::{
    AttemptReport, Call, FailureKind, Invocation, Outcome, Plugin, Runtime, Suspend, TaskLimits,
};
use crate::store::{RunSpec, RunStatus, RunStore, TaskStatus, now_us};
use sink::StoreSink;

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
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            parallelism: 16,
            workspaces: BTreeMap::new(),
            limits: TaskLimits::default(),
            kube: None,
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

/// Group commit of "attempt started" records, so that starting a task costs
/// no store write and no thread wake-up: dispatch appends to a pending list;
/// a background thread writes the list every [`Recorder::INTERVAL`] in one
/// transaction, and an attempt's completion flushes first, so a start record
/// is always stored before its finish. A crash can lose only start records
/// younger than the interval; resume then runs those tasks again under the
/// same attempt number (they would run again anyway).
struct Recorder {
    pending: Arc<std::sync::Mutex<Vec<StartRecord>>>,
    store: Arc<RunStore>,
    stop: Arc<AtomicBool>,
}

struct StartRecord {
    run_id: String,
    task: String,
    attempt: u32,
    dispatched_at: i64,
}

impl Recorder {
    const INTERVAL: Duration = Duration::from_millis(5);

    fn new(store: Arc<RunStore>) -> Recorder {
        let pending: Arc<std::sync::Mutex<Vec<StartRecord>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (p, st, s) = (pending.clone(), store.clone(), stop.clone());
        std::thread::Builder::new()
            .name("capstan-recorder".into())
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    std::thread::sleep(Self::INTERVAL);
                    if let Err(e) = flush(&p, &st) {
                        tracing::error!("cannot record attempt starts: {e}");
                    }
                }
            })
            .expect("spawning the recorder thread");
        Recorder {
            pending,
            store,
            stop,
        }
    }

    fn push(&self, rec: StartRecord) {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(rec);
    }

    fn flush(&self) -> Result<(), crate::store::StoreError> {
        flush(&self.pending, &self.store)
    }
}

fn flush(
    pending: &std::sync::Mutex<Vec<StartRecord>>,
    store: &RunStore,
) -> Result<(), crate::store::StoreError> {
    // Hold the list while writing, so that a finish written after a flush
    // never overtakes a start record still being written by another flush.
    let mut list = pending.lock().unwrap_or_else(|p| p.into_inner());
    if list.is_empty() {
        return Ok(());
    }
    let batch: Vec<(&str, &str, u32, i64)> = list
        .iter()
        .map(|r| {
            (
                r.run_id.as_str(),
                r.task.as_str(),
                r.attempt,
                r.dispatched_at,
            )
        })
        .collect();
    store.start_attempts(&batch)?;
    list.clear();
    Ok(())
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.flush();
    }
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

    /// Load, check and plan a pipeline file.
    pub fn prepare_file(
        &self,
        path: &Path,
        overrides: &[(String, String)],
    ) -> Result<Prepared, PrepareError> {
        let doc = Document::load(path)?;
        self.prepare(doc, overrides, None)
    }

    /// Check and plan a parsed document. With `expect_digests` (on resume),
    /// each plugin must still have the digest recorded when the run began.
    pub fn prepare(
        &self,
        doc: Document,
        overrides: &[(String, String)],
        expect_digests: Option<&BTreeMap<String, String>>,
    ) -> Result<Prepared, PrepareError> {
        let mut plugins = HashMap::new();
        let mut identities = HashMap::new();
        let mut diags: Vec<Diagnostic> = Vec::new();
        let mut warnings = Vec::new();
        let lock_file = crate::resolve::lock_path(&doc.base_dir);
        let lock = match (expect_digests, capstan_registry::LockFile::read(&lock_file)) {
            (Some(_), _) => None, // resume: the recorded digests decide
            (None, Ok(lock)) => lock,
            (None, Err(e)) => return Err(PrepareError::Other(e.into())),
        };
        let resolver = crate::resolve::Resolver {
            registry: &self.registry,
            oci: &self.oci,
            base_dir: &doc.base_dir,
            lock,
            mode: self.lock_mode,
            policy: &*self.policy,
        };
        for (at, t) in doc.all_tasks() {
            if plugins.contains_key(&t.uses) {
                continue;
            }
            let pinned = match expect_digests.and_then(|m| m.get(&t.uses)) {
                Some(d) => {
                    Some(Digest::try_from(d.clone()).map_err(|e| PrepareError::Other(anyhow!(e)))?)
                }
                None => None,
            };
            let resolved = match resolver.resolve(&t.uses, pinned.as_ref()) {
                Ok(r) => r,
                Err(e) => {
                    diags.push(doc.diag(&format!("{at}.uses"), e));
                    continue;
                }
            };
            if let Some(e) = resolved.entry.as_ref().filter(|e| e.yanked) {
                warnings.push(format!(
                    "`{}` runs {} {} ({}), which has been yanked (pinned by capstan.lock or the run); \
                     run `capstan lock` to move to a version that is not",
                    t.uses, e.name, e.version, e.digest
                ));
            }
            if let Some(msg) = resolved.entry.as_ref().and_then(|e| e.deprecated.as_ref()) {
                warnings.push(format!(
                    "`{}` resolved to {}, which is deprecated: {msg}",
                    t.uses, resolved.origin
                ));
            }
            if let Err(why) = self.policy.admit(&resolved.identity) {
                diags.push(doc.diag(
                    &format!("{at}.uses"),
                    format!("denied by layer `policy`: {why}"),
                ));
                continue;
            }
            match self.runtime.load_bytes(&resolved.bytes, &resolved.origin) {
                Ok(p) => {
                    plugins.insert(t.uses.clone(), p);
                    identities.insert(t.uses.clone(), resolved.identity);
                }
                Err(e) => diags.push(doc.diag(&format!("{at}.uses"), format!("{e:#}"))),
            }
        }
        let manifest_of = |uses: &str| plugins.get(uses).map(|p| p.info.manifest.clone());
        // Ceilings key off where each plugin came from, not its manifest.
        let ceiling_of = |uses: &str, cap| match identities.get(uses) {
            Some(id) => self.policy.ceiling(id, cap),
            None => Err(format!("`{uses}` was not resolved")),
        };
        let plan = match crate::pipeline::validate(&doc, &manifest_of, overrides, &ceiling_of) {
            Ok(plan)
                if let (Some(b), Some(max)) =
                    (plan.workspace_budget, self.policy.workspace_budget())
                    && b > max =>
            {
                use crate::pipeline::size::show;
                diags.push(doc.diag(
                    "workspaceBudget",
                    format!(
                        "{} is over the platform policy's ceiling of {} (limits.workspace-budget)",
                        show(b),
                        show(max)
                    ),
                ));
                return Err(Diagnostics(diags).into());
            }
            Ok(plan) if diags.is_empty() => plan,
            Ok(_) => return Err(Diagnostics(diags).into()),
            Err(Diagnostics(more)) => {
                diags.extend(more);
                return Err(Diagnostics(diags).into());
            }
        };
        warnings.extend(plan.warnings.iter().cloned());
        Ok(Prepared {
            warnings,
            doc,
            plan,
            plugins,
            overrides: overrides.to_vec(),
        })
    }

    /// Record a new run (Queued) and return its id.
    pub fn create(&self, prepared: &Prepared, opts: &RunOptions) -> Result<String> {
        let mut workspaces = BTreeMap::new();
        for (name, dir) in &opts.workspaces {
            if !prepared.plan.workspaces.iter().any(|w| &w.name == name) {
                return Err(PrepareError::Invalid(Diagnostics(vec![Diagnostic {
                    file: "<command line>".into(),
                    line: 0,
                    column: 0,
                    path: String::new(),
                    message: format!(
                        "--workspace {name}: the pipeline declares no workspace `{name}`"
                    ),
                }]))
                .into());
            }
            let dir = std::fs::canonicalize(dir).with_context(|| {
                format!(
                    "--workspace {name}={}: the directory must exist",
                    dir.display()
                )
            })?;
            workspaces.insert(name.clone(), dir.display().to_string());
        }
        if let Some((run, _)) = &prepared.doc.run {
            for w in &run.workspaces {
                if let (Some(p), false) = (&w.host_path, workspaces.contains_key(&w.name)) {
                    let p = prepared.doc.base_dir.join(p);
                    let dir = std::fs::canonicalize(&p).with_context(|| {
                        format!("workspace {}: hostPath {} must exist", w.name, p.display())
                    })?;
                    workspaces.insert(w.name.clone(), dir.display().to_string());
                }
            }
        }
        let id = new_run_id(
            prepared
                .doc
                .run_name
                .as_deref()
                .unwrap_or(&prepared.plan.name),
        );
        for w in &prepared.plan.workspaces {
            if !workspaces.contains_key(&w.name) {
                let dir = self.state_dir.join("workspaces").join(&id).join(&w.name);
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                workspaces.insert(w.name.clone(), dir.display().to_string());
            }
        }
        let spec = RunSpec {
            file: prepared.doc.source.file.clone(),
            source: prepared.doc.source.text.clone(),
            base_dir: prepared.doc.base_dir.display().to_string(),
            overrides: prepared.overrides.clone(),
            workspaces,
            plugins: prepared
                .plugins
                .iter()
                .map(|(u, p)| (u.clone(), p.digest().to_string()))
                .collect(),
            plugin_versions: prepared
                .plugins
                .iter()
                .map(|(u, p)| {
                    let m = &p.info.manifest;
                    (u.clone(), (m.name.clone(), m.version.to_string()))
                })
                .collect(),
            parallelism: opts.parallelism.max(1),
            kube: opts.kube.clone(),
        };
        let tasks: Vec<(String, bool)> = prepared
            .plan
            .tasks
            .iter()
            .map(|t| (t.spec.name.clone(), t.finally))
            .collect();
        self.store
            .create_run(&id, &prepared.plan.name, &spec, &tasks)?;
        Ok(id)
    }

    /// Re-prepare a recorded run from the pipeline text stored with it.
    pub fn reload(&self, run_id: &str) -> Result<Prepared, PrepareError> {
        let rec = self.store.run(run_id).map_err(anyhow::Error::from)?;
        let mut doc = Document::parse(&rec.spec.file, &rec.spec.source)?;
        doc.base_dir = PathBuf::from(&rec.spec.base_dir);
        self.prepare(doc, &rec.spec.overrides, Some(&rec.spec.plugins))
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

    fn lock_run(&self, run_id: &str) -> Result<File> {
        lock_run(&self.state_dir, run_id)
    }

    /// Cancel a run: if a process is executing it, it stops its tasks;
    /// otherwise the run is marked Cancelled here.
    pub fn cancel_run(&self, run_id: &str) -> Result<RunStatus> {
        let rec = self.store.run(run_id)?;
        if rec.status.is_terminal() {
            return Ok(rec.status);
        }
        self.store.request_cancel(run_id)?;
        match self.lock_run(run_id) {
            Ok(_lock) => {
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
                self.store.set_run_status(
                    run_id,
                    RunStatus::Cancelled,
                    Some("cancelled by user"),
                )?;
                Ok(RunStatus::Cancelled)
            }
            Err(_) => Ok(RunStatus::Running),
        }
    }
}

/// Take the execution lock of a run (held while a process executes it;
/// released by the OS if that process dies).
fn lock_run(state_dir: &Path, run_id: &str) -> Result<File> {
    let dir = state_dir.join("locks");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{run_id}.lock"));
    let f = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => {
            bail!("run {run_id} is being executed by another capstan process")
        }
        Err(std::fs::TryLockError::Error(e)) => {
            Err(anyhow!(e).context(format!("locking {}", path.display())))
        }
    }
}

/// Whether some process is executing the run right now.
pub fn run_is_active(state_dir: &Path, run_id: &str) -> bool {
    lock_run(state_dir, run_id).is_err()
}

/// Build a run id: `<name>-<10 random base32 chars>`.
pub fn new_run_id(name: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.write_u32(std::process::id());
    let mut n = h.finish();
    const ALPHA: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut suffix = String::new();
    for _ in 0..10 {
        suffix.push(ALPHA[(n % 32) as usize] as char);
        n /= 32;
    }
    let base: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(40)
        .collect();
    let base = if base.is_empty() {
        "run".to_string()
    } else {
        base.to_lowercase()
    };
    format!("{base}-{suffix}")
}

struct TaskRt {
    status: TaskStatus,
    attempts: u32,
    failures: u32,
    results: BTreeMap<String, String>,
    retry_at: Option<Instant>,
    /// A suspended task's deadline (µs since the epoch).
    wait_deadline: Option<i64>,
    /// Set while a `resume` call of this (Waiting) task is in flight.
    resuming: Option<Resuming>,
}

/// What a `resume` in flight was called with.
struct Resuming {
    /// The decisions it delivers (marked applied with its outcome).
    decisions: Vec<i64>,
    timed_out: bool,
}

struct Execution<'a> {
    sched: &'a Scheduler,
    run_id: String,
    prepared: &'a Prepared,
    workspaces: BTreeMap<String, String>,
    parallelism: usize,
    kube: Option<crate::store::KubeIdentity>,
    /// Where granted secrets are read (the local store, or the run's
    /// namespace in cluster mode).
    secrets: SecretSource,
    state: HashMap<String, TaskRt>,
    events: Option<UnboundedSender<Event>>,
    deadline: Option<Instant>,
    /// Results of the tasks that succeeded (what `$(tasks.X.results.Y)` reads).
    results: HashMap<String, BTreeMap<String, String>>,
    /// How many tasks wait for a retry (`retry_at` set).
    retrying: usize,
    /// Bumped when a decision is recorded in this process.
    wake: tokio::sync::watch::Receiver<u64>,
    /// Look for decisions in the store at the next turn of the loop.
    poll_decisions: bool,
    /// When the store was last asked for decisions.
    last_decision_poll: Instant,
    /// Redacts every secret the run's tasks are granted (built at the
    /// first dispatch, and again after the secrets are re-read).
    redactor: Option<Arc<Redactor>>,
    /// The run's workspace disk budget, watched while it executes.
    disk: disk::DiskWatch,
    /// How many tasks are Waiting (so a turn need not scan for them).
    waiting: usize,
}

/// Keep `count` (tasks in Waiting) right across a status change.
fn track_waiting(count: &mut usize, was: TaskStatus, now: TaskStatus) {
    match (was == TaskStatus::Waiting, now == TaskStatus::Waiting) {
        (true, false) => *count -= 1,
        (false, true) => *count += 1,
        _ => {}
    }
}

type AttemptDone = (String, u32, i64, Instant, AttemptReport);

/// A task's grants with their secrets read.
struct ResolvedGrants {
    http: Vec<HttpGrant>,
    secrets: Vec<SecretGrant>,
    ssh: Vec<SshGrant>,
}

impl<'a> Execution<'a> {
    /// A task's grants with their secrets read from the secret store. A
    /// missing secret fails the task before it starts, naming the secret.
    fn grants_of(&self, grants: &crate::pipeline::Grants) -> Result<ResolvedGrants, String> {
        let read = |name: &str| self.secrets.require(name);
        let mut http = Vec::new();
        for g in &grants.http {
            let authority = Authority::parse(g.url())?;
            let grant = match g.secret() {
                None => HttpGrant::new(authority, None)?,
                Some((name, auth)) => {
                    let value = read(name)?;
                    HttpGrant::new(authority, Some((&value, auth)))
                        .map_err(|e| format!("secret `{name}`: {e}"))?
                }
            };
            http.push(grant);
        }
        let mut secrets = Vec::new();
        for g in &grants.secrets {
            secrets.push(SecretGrant {
                name: g.name().to_string(),
                reveal: g.reveal(),
                value: Arc::new(read(g.name())?),
            });
        }
        let mut ssh = Vec::new();
        for g in &grants.ssh {
            let value = read(&g.secret)?;
            ssh.push(SshGrant {
                host: g.host.clone(),
                port: g.port,
                user: g.user.clone(),
                credential: SshGrant::credential(
                    &value,
                    g.auth == crate::pipeline::SshAuth::Password,
                )
                .map_err(|e| format!("secret `{}`: {e}", g.secret))?,
                host_key: SshGrant::host_key(g.host_key.as_deref(), g.known_hosts.as_deref())?,
            });
        }
        Ok(ResolvedGrants { http, secrets, ssh })
    }

    /// In cluster mode, read the Secrets the run's tasks are granted (as
    /// the run's ServiceAccount). Read at each (re)start, so a resumed run
    /// sees the Secrets as they are then.
    async fn read_cluster_secrets(&mut self) {
        let Some(target) = self.kube.as_ref().and(self.kube_target()) else {
            return;
        };
        let names = self.granted_secret_names();
        self.redactor = None;
        self.secrets = SecretSource::cluster(
            &target.client,
            &target.namespace,
            target.impersonate.as_deref(),
            names,
        )
        .await;
    }

    /// Where this run's kube requests go, and as whom.
    fn kube_target(&self) -> Option<crate::caps::kube::KubeTarget> {
        let client = self.sched.kube_client.clone()?;
        let (namespace, impersonate) = match &self.kube {
            Some(id) => (
                id.namespace.clone(),
                id.service_account
                    .as_ref()
                    .map(|sa| format!("system:serviceaccount:{}:{sa}", id.namespace)),
            ),
            None => (client.default_namespace().to_string(), None),
        };
        Some(crate::caps::kube::KubeTarget {
            client,
            namespace,
            impersonate,
        })
    }

    fn new(
        sched: &'a Scheduler,
        run_id: &str,
        prepared: &'a Prepared,
        spec: &RunSpec,
        events: Option<UnboundedSender<Event>>,
    ) -> Result<Self> {
        let mut state = HashMap::new();
        let failures = sched
            .store
            .attempts(run_id)?
            .into_iter()
            .filter(|a| matches!(a.status, TaskStatus::Failed | TaskStatus::TimedOut));
        let mut failed: HashMap<String, u32> = HashMap::new();
        for a in failures {
            *failed.entry(a.task).or_default() += 1;
        }
        for t in sched.store.tasks(run_id)? {
            let status = match t.status {
                TaskStatus::Running | TaskStatus::Retrying => TaskStatus::Pending,
                s => s,
            };
            if status != t.status {
                sched.store.set_task_status(
                    run_id,
                    &t.name,
                    status,
                    Some("resumed after the scheduler stopped"),
                )?;
            }
            let failures = failed.get(&t.name).copied().unwrap_or(0);
            state.insert(
                t.name.clone(),
                TaskRt {
                    status,
                    attempts: t.attempts,
                    failures,
                    results: t.results,
                    retry_at: None,
                    wait_deadline: None,
                    resuming: None,
                },
            );
        }
        for w in sched.store.waits_of_run(run_id)? {
            if let Some(rt) = state.get_mut(&w.task)
                && rt.status == TaskStatus::Waiting
                && w.open
            {
                rt.wait_deadline = Some(w.deadline);
                sched.metrics.waiting(1);
            }
        }
        let rec = sched.store.run(run_id)?;
        let deadline = prepared.plan.timeout.map(|t| {
            let started = rec.started_at.unwrap_or_else(now_us);
            let elapsed = Duration::from_micros((now_us() - started).max(0) as u64);
            Instant::now() + t.saturating_sub(elapsed)
        });
        let results = state
            .iter()
            .filter(|(_, s)| s.status == TaskStatus::Succeeded)
            .map(|(n, s)| (n.clone(), s.results.clone()))
            .collect();
        Ok(Execution {
            wake: sched.wake.subscribe(),
            poll_decisions: true,
            last_decision_poll: Instant::now(),
            retrying: 0,
            results,
            sched,
            run_id: run_id.to_string(),
            prepared,
            workspaces: spec.workspaces.clone(),
            parallelism: spec.parallelism.max(1),
            kube: spec.kube.clone(),
            secrets: SecretSource::Local(LocalSecrets::new(&sched.state_dir.join("secrets"))),
            state,
            events,
            deadline,
            redactor: None,
            disk: Self::watch_disk(sched, run_id, prepared),
            waiting: 0,
        }
        .with_waiting_counted())
    }

    fn with_waiting_counted(mut self) -> Self {
        self.waiting = self
            .state
            .values()
            .filter(|rt| rt.status == TaskStatus::Waiting)
            .count();
        self
    }

    /// Start watching the run's own workspaces (`STATE/workspaces/RUN`)
    /// against its budget (see [`disk`]).
    fn watch_disk(sched: &Scheduler, run_id: &str, prepared: &Prepared) -> disk::DiskWatch {
        if prepared.plan.workspaces.is_empty() {
            return disk::DiskWatch::none();
        }
        let root = sched.state_dir.join("workspaces").join(run_id);
        let free = disk::free_space(&sched.state_dir);
        let (budget, why) = disk::effective_budget(
            prepared.plan.workspace_budget,
            sched.policy.workspace_budget(),
            free,
        );
        let reserve = free.map_or(256 << 20, disk::store_reserve);
        disk::DiskWatch::start(root, sched.state_dir.clone(), budget, reserve, why)
    }

    /// The names of every secret any task of the run is granted.
    fn granted_secret_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        for t in &self.prepared.plan.tasks {
            let g = &t.spec.grants;
            names.extend(
                g.http
                    .iter()
                    .filter_map(|h| h.secret())
                    .map(|(n, _)| n.to_string()),
            );
            names.extend(g.secrets.iter().map(|s| s.name().to_string()));
            names.extend(g.ssh.iter().map(|s| s.secret.clone()));
        }
        names.sort();
        names.dedup();
        names
    }

    /// The run's redactor: every granted secret value that can be read
    /// (one that cannot fails its task at dispatch anyway).
    fn redactor(&mut self) -> Arc<Redactor> {
        if let Some(r) = &self.redactor {
            return r.clone();
        }
        let values: Vec<Vec<u8>> = self
            .granted_secret_names()
            .iter()
            .filter_map(|n| self.secrets.require(n).ok())
            .collect();
        let r = Redactor::shared(values.iter().map(Vec::as_slice));
        self.redactor = Some(r.clone());
        r
    }

    fn emit(&self, e: Event) {
        if let Some(tx) = &self.events {
            let _ = tx.send(e);
        }
    }

    fn set_run(&self, status: RunStatus, message: Option<&str>) -> Result<()> {
        self.sched
            .store
            .set_run_status(&self.run_id, status, message)?;
        self.emit(Event::Run { status });
        Ok(())
    }

    fn set_task(&mut self, name: &str, status: TaskStatus, message: Option<&str>) -> Result<()> {
        self.sched
            .store
            .set_task_status(&self.run_id, name, status, message)?;
        let rt = self.state.get_mut(name).expect("task state");
        track_waiting(&mut self.waiting, rt.status, status);
        rt.status = status;
        let attempt = rt.attempts;
        self.emit(Event::Task {
            task: name.to_string(),
            status,
            attempt,
            message: message.map(str::to_string),
        });
        Ok(())
    }

    async fn run(&mut self) -> Result<RunStatus> {
        let main: Vec<&'a PlannedTask> = self
            .prepared
            .plan
            .tasks
            .iter()
            .filter(|t| !t.finally)
            .collect();
        let fin: Vec<&'a PlannedTask> = self
            .prepared
            .plan
            .tasks
            .iter()
            .filter(|t| t.finally)
            .collect();
        let stop = self.run_phase(&main, true).await?;
        if stop == Some(RunStatus::Cancelled) {
            for t in &fin {
                if !self.state[&t.spec.name].status.is_terminal() {
                    self.set_task(&t.spec.name, TaskStatus::Cancelled, Some("run cancelled"))?;
                }
            }
            self.set_run(RunStatus::Cancelled, Some("cancelled"))?;
            return Ok(RunStatus::Cancelled);
        }
        // Finally tasks run whatever happened (also after a run timeout).
        self.deadline = None;
        let fin_stop = self.run_phase(&fin, false).await?;
        let any_failed = self.prepared.plan.tasks.iter().any(|t| {
            matches!(
                self.state[&t.spec.name].status,
                TaskStatus::Failed | TaskStatus::TimedOut | TaskStatus::Cancelled
            )
        });
        let (status, msg) = match (stop, fin_stop) {
            (_, Some(RunStatus::Cancelled)) => (RunStatus::Cancelled, "cancelled".to_string()),
            (Some(RunStatus::TimedOut), _) => {
                (RunStatus::TimedOut, "the run timed out".to_string())
            }
            _ if any_failed => {
                let failed: Vec<&str> = self
                    .prepared
                    .plan
                    .tasks
                    .iter()
                    .filter(|t| {
                        matches!(
                            self.state[&t.spec.name].status,
                            TaskStatus::Failed | TaskStatus::TimedOut
                        )
                    })
                    .map(|t| t.spec.name.as_str())
                    .collect();
                (
                    RunStatus::Failed,
                    format!("failed tasks: {}", failed.join(", ")),
                )
            }
            _ => (RunStatus::Succeeded, "all tasks completed".to_string()),
        };
        let results = self.pipeline_results();
        self.sched.store.set_run_results(&self.run_id, &results)?;
        self.set_run(status, Some(&msg))?;
        Ok(status)
    }

    fn pipeline_results(&self) -> BTreeMap<String, String> {
        let scope = Scope {
            results: Some(&self.results),
            ..Scope::new(&self.prepared.plan.params)
        };
        self.prepared
            .plan
            .results
            .iter()
            .filter_map(|r| {
                scope
                    .resolve_str(&r.value)
                    .ok()
                    .map(|v| (r.name.clone(), v))
            })
            .collect()
    }

    fn statuses(&self) -> (HashMap<String, String>, String) {
        let mut map = HashMap::new();
        let (mut failed, mut all_ok) = (false, true);
        for t in self.prepared.plan.tasks.iter().filter(|t| !t.finally) {
            let s = self.state[&t.spec.name].status;
            let word = match s {
                TaskStatus::Succeeded => "Succeeded",
                TaskStatus::Failed | TaskStatus::TimedOut | TaskStatus::Cancelled => {
                    failed = true;
                    "Failed"
                }
                _ => {
                    all_ok = false;
                    "None"
                }
            };
            map.insert(t.spec.name.clone(), word.to_string());
        }
        let agg = if failed {
            "Failed"
        } else if all_ok {
            "Succeeded"
        } else {
            "Completed"
        };
        (map, agg.to_string())
    }

    /// Run `tasks` to completion. Returns Some(Cancelled/TimedOut) if the
    /// phase was stopped.
    async fn run_phase(
        &mut self,
        tasks: &[&'a PlannedTask],
        main: bool,
    ) -> Result<Option<RunStatus>> {
        let mut running: JoinSet<AttemptDone> = JoinSet::new();
        let mut stop: Option<RunStatus> = None;
        let mut last_cancel_check = Instant::now();
        let mut open = 0;
        loop {
            // Stop conditions.
            if stop.is_none() {
                let cancelled = self.sched.cancel.load(Ordering::Relaxed)
                    || (last_cancel_check.elapsed() >= Duration::from_millis(100) && {
                        last_cancel_check = Instant::now();
                        self.sched.store.cancel_requested(&self.run_id)?
                    });
                if cancelled {
                    stop = Some(RunStatus::Cancelled);
                } else if main && self.deadline.is_some_and(|d| Instant::now() >= d) {
                    stop = Some(RunStatus::TimedOut);
                }
                if let Some(s) = stop {
                    running.abort_all();
                    self.sched.recorder.flush()?;
                    let (status, why) = if s == RunStatus::Cancelled {
                        (TaskStatus::Cancelled, "run cancelled")
                    } else {
                        (TaskStatus::TimedOut, "the run timed out")
                    };
                    self.sched.store.abandon_running_attempts(&self.run_id)?;
                    for t in tasks {
                        let st = self.state[&t.spec.name].status;
                        if st == TaskStatus::Waiting {
                            let phase = if s == RunStatus::Cancelled {
                                "cancelled"
                            } else {
                                "timed-out"
                            };
                            self.sched
                                .store
                                .close_wait(&self.run_id, &t.spec.name, phase, &[])?;
                            self.sched.metrics.waiting(-1);
                        }
                        if st == TaskStatus::Running || st == TaskStatus::Waiting {
                            self.set_task(&t.spec.name, status, Some(why))?;
                        } else if !st.is_terminal() {
                            let s = if status == TaskStatus::TimedOut {
                                TaskStatus::Skipped
                            } else {
                                status
                            };
                            self.set_task(&t.spec.name, s, Some(why))?;
                        }
                    }
                    while running.join_next().await.is_some() {}
                    return Ok(stop);
                }
            }

            // Dispatch what is ready. Tasks before `open` have all ended:
            // a turn does not look at them again.
            while open < tasks.len() && self.state[&tasks[open].spec.name].status.is_terminal() {
                open += 1;
            }
            let now = Instant::now();
            for t in &tasks[open..] {
                if running.len() >= self.parallelism {
                    break;
                }
                let name = &t.spec.name;
                let rt = &self.state[name];
                match rt.status {
                    TaskStatus::Pending => {}
                    TaskStatus::Retrying if rt.retry_at.is_some_and(|at| at <= now) => {}
                    _ => continue,
                }
                match self.readiness(t) {
                    Readiness::Wait => continue,
                    Readiness::Skip(why) => {
                        self.set_task(name, TaskStatus::Skipped, Some(&why))?;
                        continue;
                    }
                    Readiness::Go => {}
                }
                match self.dispatch(t, &mut running) {
                    Ok(()) => {}
                    Err(msg) => {
                        let rt = self.state.get_mut(name).unwrap();
                        rt.attempts += 1;
                        let attempt = rt.attempts;
                        let at = now_us();
                        self.sched
                            .store
                            .start_attempt(&self.run_id, name, attempt, at)?;
                        self.sched.store.finish_attempt(
                            &self.run_id,
                            name,
                            attempt,
                            TaskStatus::Failed,
                            TaskStatus::Failed,
                            None,
                            Some(&msg),
                            &BTreeMap::new(),
                        )?;
                        self.state.get_mut(name).unwrap().status = TaskStatus::Failed;
                        self.emit(Event::Task {
                            task: name.clone(),
                            status: TaskStatus::Failed,
                            attempt,
                            message: Some(msg),
                        });
                    }
                }
            }

            // Resume suspended tasks that have a decision or timed out.
            self.dispatch_resumes(tasks, &mut running)?;

            if running.is_empty() {
                let waiting_retry = self.next_retry(tasks);
                let pending = tasks[open..]
                    .iter()
                    .any(|t| !self.state[&t.spec.name].status.is_terminal());
                let waits = self.waiting > 0;
                match (pending, waiting_retry) {
                    (false, _) => return Ok(None),
                    (true, _) if waits => {
                        // Only waits (and maybe retries): sleep until a
                        // decision here, a deadline, a retry, the run's
                        // timeout, or the 1 s poll for other processes'
                        // decisions and cancels.
                        let poll = Instant::now() + Duration::from_secs(1);
                        let mut wake = waiting_retry.map_or(poll, |r| r.min(poll));
                        wake = self.next_wait_deadline(tasks).map_or(wake, |d| d.min(wake));
                        wake = self.deadline.map_or(wake, |d| d.min(wake));
                        tokio::select! {
                            _ = self.wake.changed() => {}
                            _ = tokio::time::sleep_until(wake.into()) => {}
                        }
                        self.poll_decisions = true;
                        continue;
                    }
                    (true, Some(at)) => {
                        tokio::time::sleep_until(at.into()).await;
                        continue;
                    }
                    (true, None) => {
                        // Nothing running, nothing ready: only possible if a
                        // dependency can never finish. Should not happen after
                        // validation; fail loudly rather than hang.
                        bail!("scheduler stalled: pending tasks have unsatisfiable dependencies");
                    }
                }
            }

            // Wait for an attempt to finish, a retry to come due, or a tick.
            let next_retry = self.next_retry(tasks);
            let tick = Instant::now() + Duration::from_millis(100);
            let wake = next_retry.map_or(tick, |r| r.min(tick));
            let wake = self.deadline.map_or(wake, |d| d.min(wake));
            let wake = self.next_wait_deadline(tasks).map_or(wake, |d| d.min(wake));
            tokio::select! {
                _ = self.wake.changed() => {
                    self.poll_decisions = true;
                }
                done = running.join_next() => {
                    if let Some(done) = done {
                        match done {
                            Ok((name, attempt, dispatched_at, dispatched, report)) => {
                                self.complete(&name, attempt, dispatched_at, dispatched, report)?;
                            }
                            Err(e) if e.is_cancelled() => {}
                            Err(e) => bail!("a task attempt panicked: {e}"),
                        }
                    }
                }
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
        }
    }

    /// When the earliest retry among `tasks` is due (O(1) when none waits).
    fn next_retry(&self, tasks: &[&PlannedTask]) -> Option<Instant> {
        if self.retrying == 0 {
            return None;
        }
        tasks
            .iter()
            .filter_map(|t| self.state[&t.spec.name].retry_at)
            .min()
    }

    fn readiness(&self, t: &PlannedTask) -> Readiness {
        for dep in &t.deps {
            let s = self.state[dep].status;
            if !s.is_terminal() {
                return Readiness::Wait;
            }
            match s {
                TaskStatus::Failed | TaskStatus::TimedOut | TaskStatus::Cancelled => {
                    return Readiness::Skip(format!("task `{dep}` did not succeed ({s})"));
                }
                TaskStatus::Skipped if t.result_deps.contains(dep) => {
                    return Readiness::Skip(format!(
                        "task `{dep}` was skipped, so its results are missing"
                    ));
                }
                _ => {}
            }
        }
        if t.finally {
            for dep in &t.result_deps {
                if self.state[dep].status != TaskStatus::Succeeded {
                    return Readiness::Skip(format!(
                        "task `{dep}` did not succeed, so its results are missing"
                    ));
                }
            }
        }
        if t.spec.when.is_empty() {
            return Readiness::Go;
        }
        self.with_scope(t, self.state[&t.spec.name].attempts, |scope| {
            Self::when_holds(t, scope)
        })
    }

    /// Evaluate a task's `when` expressions.
    fn when_holds(t: &PlannedTask, scope: &Scope<'_>) -> Readiness {
        for w in &t.spec.when {
            let input = match scope.resolve_str(&w.input) {
                Ok(v) => v,
                Err(e) => return Readiness::Skip(format!("when: {e}")),
            };
            let mut values = Vec::new();
            for v in &w.values {
                match scope.resolve_str(v) {
                    Ok(v) => values.push(v),
                    Err(e) => return Readiness::Skip(format!("when: {e}")),
                }
            }
            let hit = values.contains(&input);
            let holds = match w.operator {
                WhenOperator::In => hit,
                WhenOperator::Notin => !hit,
            };
            if !holds {
                let op = if w.operator == WhenOperator::In {
                    "in"
                } else {
                    "notin"
                };
                return Readiness::Skip(format!(
                    "when expression was false: `{input}` {op} {values:?}"
                ));
            }
        }
        Readiness::Go
    }

    fn context(&self, t: &PlannedTask, attempts: u32) -> BTreeMap<&'static str, String> {
        let namespace = self
            .kube
            .as_ref()
            .map_or("default", |k| k.namespace.as_str());
        BTreeMap::from([
            ("run.id", self.run_id.clone()),
            ("run.name", self.run_id.clone()),
            ("pipeline.name", self.prepared.plan.name.clone()),
            ("task.name", t.spec.name.clone()),
            ("task.retry-count", attempts.to_string()),
            ("pipelineRun.name", self.run_id.clone()),
            ("pipelineRun.namespace", namespace.to_string()),
            ("pipelineRun.uid", self.run_id.clone()),
            ("pipelineTask.retries", t.spec.retries.to_string()),
        ])
    }

    /// The substitution scope for `t`: pipeline params, results of the
    /// tasks that succeeded, run context, and (for finally tasks) statuses.
    fn with_scope<R>(
        &self,
        t: &PlannedTask,
        retry_count: u32,
        f: impl FnOnce(&Scope<'_>) -> R,
    ) -> R {
        let (statuses, agg) = if t.finally {
            self.statuses()
        } else {
            Default::default()
        };
        let mut scope = Scope {
            results: Some(&self.results),
            ..Scope::new(&self.prepared.plan.params)
        };
        if t.finally {
            scope.statuses = Some(&statuses);
            scope.tasks_status = Some(&agg);
        }
        scope.context = self.context(t, retry_count);
        f(&scope)
    }

    /// The plugin's params for one attempt: the task's values with
    /// references substituted, manifest defaults for the rest.
    fn resolve_params(
        t: &PlannedTask,
        manifest: &crate::manifest::Manifest,
        scope: &Scope<'_>,
    ) -> Result<Vec<(String, crate::params::ParamValue)>, String> {
        let mut params = Vec::with_capacity(manifest.params.len());
        for spec in &manifest.params {
            let value = match t.spec.params.iter().find(|p| p.name == spec.name) {
                Some(p) => scope
                    .resolve_value(&p.value)
                    .map_err(|e| format!("param `{}`: {e}", spec.name))?,
                None => match &spec.default {
                    Some(d) => d.clone(),
                    None => return Err(format!("param `{}` is required", spec.name)),
                },
            };
            if value.ty() != spec.ty {
                return Err(format!(
                    "param `{}` resolved to {} but the plugin expects {}",
                    spec.name,
                    value.ty(),
                    spec.ty
                ));
            }
            params.push((spec.name.clone(), value));
        }
        Ok(params)
    }

    /// Start an attempt. Errors are set-up failures of the task itself
    /// (a reference that cannot be resolved, a workspace that cannot be made).
    fn dispatch(
        &mut self,
        t: &PlannedTask,
        running: &mut JoinSet<AttemptDone>,
    ) -> Result<(), String> {
        self.dispatch_call(t, running, None)
    }

    /// Start `run` of a new attempt, or (`resume` set) `resume` of the
    /// current attempt of a Waiting task — which stays Waiting in the store
    /// until the call's outcome is recorded, so a crash meanwhile loses
    /// nothing (the decision is delivered again).
    fn dispatch_call(
        &mut self,
        t: &PlannedTask,
        running: &mut JoinSet<AttemptDone>,
        resume: Option<(Call, Resuming)>,
    ) -> Result<(), String> {
        let dispatched = Instant::now();
        let dispatched_at = now_us();
        let name = t.spec.name.clone();
        // Over the disk budget, tasks that would write the run's
        // workspaces do not start (the others, e.g. `finally` notifiers, do).
        if !t.spec.workspaces.is_empty()
            && let Some(over) = self.disk.exceeded()
        {
            return Err(over);
        }
        let plugin = self
            .prepared
            .plugins
            .get(&t.spec.uses)
            .cloned()
            .ok_or("plugin not loaded")?;
        let manifest = &plugin.info.manifest;
        let attempt = self.state[&name].attempts + u32::from(resume.is_none());

        let params = self.with_scope(t, attempt - 1, |scope| {
            Self::resolve_params(t, manifest, scope)
        })?;
        let mut workspaces = Vec::new();
        for b in &t.spec.workspaces {
            let root = self
                .workspaces
                .get(b.pipeline_workspace())
                .ok_or_else(|| format!("workspace `{}` is not bound", b.pipeline_workspace()))?;
            let dir =
                crate::caps::workspace::open_beneath(Path::new(root), b.sub_path.as_deref(), true)
                    .map_err(|e| format!("task `{name}`: workspace `{}`: {e}", b.name))?;
            let mut shown = PathBuf::from(root);
            shown.extend(b.sub_path.as_deref());
            let decl_ro = self
                .prepared
                .plan
                .workspaces
                .iter()
                .any(|w| w.name == b.pipeline_workspace() && w.read_only);
            let read_only =
                b.read_only || decl_ro || manifest.workspace(&b.name).is_some_and(|w| w.read_only);
            workspaces.push(WorkspaceMount {
                name: b.name.clone(),
                dir: Arc::new(dir),
                shown,
                read_only,
            });
        }
        let mut limits = self.sched.limits.clone();
        limits.timeout = t.timeout;
        let ResolvedGrants { http, secrets, ssh } = self.grants_of(&t.spec.grants)?;

        let rt = self.state.get_mut(&name).unwrap();
        let call = match resume {
            Some((call, resuming)) => {
                rt.resuming = Some(resuming);
                call
            }
            None => {
                rt.attempts = attempt;
                rt.status = TaskStatus::Running;
                if rt.retry_at.take().is_some() {
                    self.retrying -= 1;
                }
                // The Running record is group-committed (see `Recorder`).
                self.sched.recorder.push(StartRecord {
                    run_id: self.run_id.clone(),
                    task: name.clone(),
                    attempt,
                    dispatched_at,
                });
                self.emit(Event::Task {
                    task: name.clone(),
                    status: TaskStatus::Running,
                    attempt,
                    message: None,
                });
                Call::Run
            }
        };

        let sink = Arc::new(StoreSink {
            store: self.sched.store.clone(),
            run_id: self.run_id.clone(),
            task: name.clone(),
            attempt,
            events: self.events.clone(),
        });
        let inv = Invocation {
            run_id: self.run_id.clone(),
            task_name: name.clone(),
            attempt,
            params,
            workspaces,
            limits,
            sink,
            http,
            secrets,
            ssh,
            kube: t.spec.grants.kube.clone(),
            kube_target: if t.spec.grants.kube.is_empty() {
                None
            } else {
                self.kube_target()
            },
            redactor: self.redactor(),
            abort: (!t.spec.workspaces.is_empty()).then(|| self.disk.over.clone()),
        };
        let runtime = self.sched.runtime.clone();
        running.spawn(async move {
            let report = runtime.call(&plugin, inv, call).await;
            (name, attempt, dispatched_at, dispatched, report)
        });
        Ok(())
    }

    /// A call returned a suspend request: record the wait (first time) or
    /// its new state (after a resume), and start the notification.
    fn suspended(
        &mut self,
        t: &PlannedTask,
        attempt: u32,
        entered_at: Option<i64>,
        req: Suspend,
        resumed: Option<Resuming>,
    ) -> Result<()> {
        let name = t.spec.name.as_str();
        match resumed {
            Some(r) => {
                self.sched
                    .store
                    .resuspend(&self.run_id, name, &req.state, &r.decisions)?;
            }
            None => {
                self.sched.recorder.flush()?;
                let deadline = now_us() + req.timeout.as_micros() as i64;
                self.sched.store.suspend_task(
                    &self.run_id,
                    name,
                    attempt,
                    &req.kind,
                    &req.state,
                    &req.detail,
                    deadline,
                    entered_at,
                )?;
                let rt = self.state.get_mut(name).unwrap();
                track_waiting(&mut self.waiting, rt.status, TaskStatus::Waiting);
                rt.status = TaskStatus::Waiting;
                rt.wait_deadline = Some(deadline);
                self.sched.metrics.waiting(1);
                self.emit(Event::Task {
                    task: name.to_string(),
                    status: TaskStatus::Waiting,
                    attempt,
                    message: Some(format!(
                        "waiting for {} (capstan approve {} --task {name})",
                        req.kind, self.run_id
                    )),
                });
                self.notify(t, attempt, &req.detail);
            }
        }
        Ok(())
    }

    /// Deliver an approval's notification (`detail.notify-url`) in the
    /// background, through the task's `http` grants: phase `notifying`,
    /// then `notified`, or `notify-failed` (logged in the task log) after
    /// four tries. The approval does not wait for it.
    fn notify(&self, t: &PlannedTask, attempt: u32, detail: &serde_json::Value) {
        let Some(url) = detail["notify-url"].as_str().filter(|u| !u.is_empty()) else {
            return;
        };
        let store = self.sched.store.clone();
        let (run_id, task) = (self.run_id.clone(), t.spec.name.clone());
        let log = {
            let (store, run_id, task) = (store.clone(), run_id.clone(), task.clone());
            move |level: LogLevel, msg: &str| {
                let _ = store.append_log(&run_id, &task, attempt, level, msg);
            }
        };
        let grants = match self.grants_of(&t.spec.grants) {
            Ok(g) => g.http,
            Err(e) => {
                log(
                    LogLevel::Warn,
                    &format!("approval notification not sent: {e}"),
                );
                return;
            }
        };
        let body = approval::notification(
            detail,
            &run_id,
            &task,
            &self.prepared.plan.name,
            self.sched.public_url.as_deref(),
        );
        let url = url.to_string();
        tokio::spawn(async move {
            let _ = store.set_wait_phase(&run_id, &task, "notifying", Some(&url));
            let mut last = String::new();
            for (i, delay) in [0u64, 1, 2, 4].into_iter().enumerate() {
                tokio::time::sleep(Duration::from_secs(delay)).await;
                match crate::caps::http::host_post_json(&grants, &url, &body).await {
                    Ok(status) if (200..300).contains(&status) => {
                        let _ = store.set_wait_phase(&run_id, &task, "notified", Some(&url));
                        log(
                            LogLevel::Info,
                            &format!("approval notification delivered to {url} ({status})"),
                        );
                        return;
                    }
                    Ok(status) => last = format!("HTTP {status}"),
                    Err(e) if e.starts_with("denied:") => {
                        last = e;
                        break;
                    }
                    Err(e) => last = e,
                }
                log(
                    LogLevel::Warn,
                    &format!(
                        "approval notification to {url}: try {} failed: {last}",
                        i + 1
                    ),
                );
            }
            let note = format!("{url}: {last}");
            let _ = store.set_wait_phase(&run_id, &task, "notify-failed", Some(&note));
            log(
                LogLevel::Warn,
                &format!("approval notification not delivered ({note}); the approval still waits"),
            );
        });
    }

    /// Start `resume` calls for Waiting tasks of `tasks` that are due: an
    /// accepted decision not yet applied (one per call, oldest first), or a
    /// passed deadline.
    fn dispatch_resumes(
        &mut self,
        tasks: &[&'a PlannedTask],
        running: &mut JoinSet<AttemptDone>,
    ) -> Result<()> {
        let now = now_us();
        let waiting = |s: &Self, t: &PlannedTask| {
            let rt = &s.state[&t.spec.name];
            rt.status == TaskStatus::Waiting && rt.resuming.is_none()
        };
        if self.waiting == 0 || !tasks.iter().any(|t| waiting(self, t)) {
            return Ok(());
        }
        let due = self.last_decision_poll.elapsed() >= Duration::from_secs(1);
        let decisions = if std::mem::take(&mut self.poll_decisions) || due {
            self.last_decision_poll = Instant::now();
            self.sched.store.unapplied_decisions(&self.run_id)?
        } else {
            Vec::new()
        };
        for t in tasks {
            if !waiting(self, t) {
                continue;
            }
            let name = &t.spec.name;
            let event = decisions.iter().find(|d| &d.task == name);
            let timed_out = self.state[name].wait_deadline.is_some_and(|d| d <= now);
            let (outcome, resuming) = match event {
                Some(d) => (
                    Outcome::Event(approval::event_json(d)),
                    Resuming {
                        decisions: vec![d.id],
                        timed_out: false,
                    },
                ),
                None if timed_out => (
                    Outcome::TimedOut,
                    Resuming {
                        decisions: Vec::new(),
                        timed_out: true,
                    },
                ),
                None => continue,
            };
            let Some(w) = self.sched.store.wait(&self.run_id, name)? else {
                continue;
            };
            let call = Call::Resume {
                state: w.state,
                outcome,
            };
            if let Err(msg) = self.dispatch_call(t, running, Some((call, resuming))) {
                self.state.get_mut(name).unwrap().resuming = None;
                tracing::warn!(run = %self.run_id, task = %name, "cannot resume: {msg}");
            }
        }
        Ok(())
    }

    /// The earliest deadline of a Waiting task of `tasks`.
    fn next_wait_deadline(&self, tasks: &[&'a PlannedTask]) -> Option<Instant> {
        if self.waiting == 0 {
            return None;
        }
        let us = tasks
            .iter()
            .filter_map(|t| {
                let rt = &self.state[&t.spec.name];
                (rt.status == TaskStatus::Waiting && rt.resuming.is_none())
                    .then_some(rt.wait_deadline)
                    .flatten()
            })
            .min()?;
        let left = (us - now_us()).max(0) as u64;
        Some(Instant::now() + Duration::from_micros(left))
    }

    fn complete(
        &mut self,
        name: &str,
        attempt: u32,
        dispatched_at: i64,
        dispatched: Instant,
        mut report: AttemptReport,
    ) -> Result<()> {
        let entered_at = report
            .entered
            .map(|e| dispatched_at + e.saturating_duration_since(dispatched).as_micros() as i64);
        let t = self
            .prepared
            .plan
            .tasks
            .iter()
            .find(|t| t.spec.name == name)
            .expect("planned task");
        let resumed = self.state.get_mut(name).unwrap().resuming.take();
        // The wait is over after this call unless the task suspends (again);
        // a failure after a wait is never retried (retrying would ask the
        // approvers again).
        self.poll_decisions = true;
        if let Some(req) = report.suspend.take() {
            return self.suspended(t, attempt, entered_at, req, resumed);
        }
        if let Some(r) = &resumed {
            let phase = if r.timed_out {
                "timed-out"
            } else if report.outcome.is_ok() {
                "approved"
            } else {
                "rejected"
            };
            self.sched
                .store
                .close_wait(&self.run_id, name, phase, &r.decisions)?;
            self.state.get_mut(name).unwrap().wait_deadline = None;
            self.sched.metrics.waiting(-1);
        }
        let (attempt_status, task_status, message, results) = match report.outcome {
            Ok(results) => (
                TaskStatus::Succeeded,
                TaskStatus::Succeeded,
                None,
                results.into_iter().collect(),
            ),
            Err((kind, msg)) => {
                let attempt_status = if kind == FailureKind::TimedOut {
                    TaskStatus::TimedOut
                } else {
                    TaskStatus::Failed
                };
                let failures = self.state[name].failures + 1;
                self.state.get_mut(name).unwrap().failures = failures;
                if kind.retryable() && failures <= t.spec.retries && resumed.is_none() {
                    let exp = (failures - 1).min(16);
                    let delay = t
                        .backoff
                        .saturating_mul(1 << exp)
                        .min(Duration::from_secs(300));
                    self.state.get_mut(name).unwrap().retry_at = Some(Instant::now() + delay);
                    self.retrying += 1;
                    let msg = format!(
                        "{msg} (retry {failures} of {} in {})",
                        t.spec.retries,
                        crate::runtime::humantime(delay)
                    );
                    (
                        attempt_status,
                        TaskStatus::Retrying,
                        Some(msg),
                        BTreeMap::new(),
                    )
                } else {
                    (attempt_status, attempt_status, Some(msg), BTreeMap::new())
                }
            }
        };
        self.sched
            .metrics
            .attempt_finished(attempt_status, dispatched.elapsed().as_secs_f64());
        self.sched.recorder.flush()?;
        self.sched.store.finish_attempt(
            &self.run_id,
            name,
            attempt,
            attempt_status,
            task_status,
            entered_at,
            message.as_deref(),
            &results,
        )?;
        if task_status == TaskStatus::Succeeded {
            self.results.insert(name.to_string(), results.clone());
        }
        let rt = self.state.get_mut(name).unwrap();
        track_waiting(&mut self.waiting, rt.status, task_status);
        rt.status = task_status;
        rt.results = results;
        self.emit(Event::Task {
            task: name.to_string(),
            status: task_status,
            attempt,
            message,
        });
        Ok(())
    }
}

enum Readiness {
    Wait,
    Skip(String),
    Go,
}
