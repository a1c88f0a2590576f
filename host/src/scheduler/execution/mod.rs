//! One run's execution: the task states and the loop that drives them.

mod complete;
mod dispatch;
mod grants;
mod phase;
mod wait;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinSet;

use super::decide::{self, Readiness, Stop, TaskFacts, Timeout};
use super::ready::ReadySet;
use super::recorder::StartRecord;
use super::sink::StoreSink;
use super::{Event, Prepared, Scheduler, approval, disk};
use crate::caps::LogLevel;
use crate::caps::redact::Redactor;
use crate::caps::secrets::{LocalSecrets, SecretSource};
use crate::caps::workspace::WorkspaceMount;
use crate::pipeline::subst::Scope;
use crate::pipeline::{OnError, PlannedTask};
use crate::runtime::{AttemptReport, Call, FailureKind, Invocation, Outcome, Suspend};
use crate::store::{RunSpec, RunStatus, SkipReason, StopMode, TaskStatus, now_us};

struct TaskRt {
    status: TaskStatus,
    /// Why it was skipped (Skipped only).
    skip: Option<SkipReason>,
    /// The outcome of its latest attempt that ended.
    last_attempt: Option<TaskStatus>,
    /// `onError: continue`.
    continues: bool,
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

pub(super) struct Execution<'a> {
    sched: &'a Scheduler,
    run_id: String,
    prepared: &'a Prepared,
    workspaces: BTreeMap<String, String>,
    parallelism: usize,
    kube: Option<crate::store::KubeIdentity>,
    /// `$(context.trigger.KEY)` values (KEY without `trigger.`).
    trigger: BTreeMap<String, String>,
    /// Where granted secrets are read (the local store, or the run's
    /// namespace in cluster mode).
    secrets: SecretSource,
    state: HashMap<String, TaskRt>,
    events: Option<UnboundedSender<Event>>,
    /// When the run started (before a crash, if resumed).
    started: Instant,
    /// The current phase's deadline, and which timeout it is.
    deadline: Option<(Instant, Timeout)>,
    /// The pipeline's params for this run, `$(context…)` in defaults
    /// substituted.
    params: BTreeMap<String, crate::params::ParamValue>,
    /// Results of the tasks that succeeded (what `$(tasks.X.results.Y)` reads).
    results: HashMap<String, BTreeMap<String, String>>,
    /// Retries by when they are due (entries checked against `retry_at`
    /// when taken: a stale one is dropped).
    retry_queue: BTreeSet<(Instant, String)>,
    /// Waiting tasks by deadline (µs; checked against `wait_deadline`).
    wait_queue: BTreeSet<(i64, String)>,
    /// The current phase's ready set.
    ready: ReadySet,
    /// Task name → its position in the plan.
    index: HashMap<String, usize>,
    /// Matrix task → how many of its children run now.
    group_running: HashMap<String, usize>,
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
    /// Why the run starts no new main task (a task failed, or a stop was
    /// asked); None while it may.
    stopping: Option<String>,
}

/// Where the run's granted secrets come from. A run of an untrusted pull
/// request (a fork's, `$(context.trigger.trusted)` = false) gets none:
/// it builds code nobody trusted yet, with the target branch's pipeline.
fn secret_source(sched: &Scheduler, spec: &RunSpec) -> SecretSource {
    if spec.trigger.get("trusted").is_some_and(|t| t == "false") {
        return SecretSource::Withheld(
            "withheld from a run of an untrusted pull request (a fork's; trust its author with `capstan repo add --trusted`)"
                .into(),
        );
    }
    SecretSource::Local(LocalSecrets::new(&sched.state_dir.join("secrets")))
}

/// Keep `count` (tasks in Waiting) right across a status change.
fn track_waiting(count: &mut usize, was: TaskStatus, now: TaskStatus) {
    match (was == TaskStatus::Waiting, now == TaskStatus::Waiting) {
        (true, false) => *count -= 1,
        (false, true) => *count += 1,
        _ => {}
    }
}

/// The run's task states as the store has them (a resumed run: attempts
/// that were running start again; a pending retry is due now).
fn load_state(
    sched: &Scheduler,
    run_id: &str,
    prepared: &Prepared,
) -> Result<HashMap<String, TaskRt>> {
    let mut state = HashMap::new();
    let mut failed: HashMap<String, u32> = HashMap::new();
    let mut last: HashMap<String, TaskStatus> = HashMap::new();
    for a in sched.store.attempts(run_id)? {
        if matches!(a.status, TaskStatus::Failed | TaskStatus::TimedOut) {
            *failed.entry(a.task.clone()).or_default() += 1;
        }
        if a.status.is_terminal() {
            last.insert(a.task, a.status);
        }
    }
    let continues: HashMap<&str, bool> = prepared
        .plan
        .tasks
        .iter()
        .map(|t| (t.spec.name.as_str(), t.spec.on_error == OnError::Continue))
        .collect();
    for t in sched.store.tasks(run_id)? {
        // An interrupted attempt runs again; a retry that was due or
        // pending is due now.
        let status = match t.status {
            TaskStatus::Running => TaskStatus::Pending,
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
                skip: t.skip_reason,
                last_attempt: last.get(&t.name).copied(),
                continues: continues.get(t.name.as_str()).copied().unwrap_or(false),
                attempts: t.attempts,
                failures,
                results: t.results,
                retry_at: (status == TaskStatus::Retrying).then(Instant::now),
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
    // Waiting with no open wait: the process stopped between closing the
    // wait and recording the outcome. The attempt runs again.
    for (name, rt) in &mut state {
        if rt.status == TaskStatus::Waiting && rt.wait_deadline.is_none() {
            rt.status = TaskStatus::Pending;
            sched.store.set_task_status(
                run_id,
                name,
                TaskStatus::Pending,
                Some("resumed: its wait had ended when the scheduler stopped"),
            )?;
        }
    }
    Ok(state)
}

type AttemptDone = (String, u32, i64, Instant, AttemptReport);

impl<'a> Execution<'a> {
    pub(in crate::scheduler) fn new(
        sched: &'a Scheduler,
        run_id: &str,
        prepared: &'a Prepared,
        spec: &RunSpec,
        events: Option<UnboundedSender<Event>>,
    ) -> Result<Self> {
        let state = load_state(sched, run_id, prepared)?;
        let rec = sched.store.run(run_id)?;
        let elapsed = rec.started_at.map_or(0, |s| (now_us() - s).max(0) as u64);
        let started = Instant::now()
            .checked_sub(Duration::from_micros(elapsed))
            .unwrap_or_else(Instant::now);
        let results = state
            .iter()
            .filter(|(_, s)| s.status == TaskStatus::Succeeded)
            .map(|(n, s)| (n.clone(), s.results.clone()))
            .collect();
        Ok(Execution {
            wake: sched.wake.subscribe(),
            poll_decisions: true,
            last_decision_poll: Instant::now(),
            retry_queue: BTreeSet::new(),
            wait_queue: BTreeSet::new(),
            ready: ReadySet::default(),
            group_running: HashMap::new(),
            index: prepared
                .plan
                .tasks
                .iter()
                .enumerate()
                .map(|(i, t)| (t.spec.name.clone(), i))
                .collect(),
            results,
            sched,
            run_id: run_id.to_string(),
            prepared,
            workspaces: spec.workspaces.clone(),
            parallelism: spec.parallelism.max(1),
            kube: spec.kube.clone(),
            trigger: spec.trigger.clone(),
            secrets: secret_source(sched, spec),
            state,
            events,
            started,
            deadline: None,
            redactor: None,
            disk: Self::watch_disk(sched, run_id, prepared, spec),
            waiting: 0,
            stopping: None,
            params: BTreeMap::new(),
        }
        .with_params_resolved()
        .with_queues_filled()
        .with_groups_collected()
        .with_waiting_counted()
        .with_stopping_found())
    }

    /// `context.trigger.KEY`'s value: the event's, or empty.
    fn trigger_value(&self, key: &str) -> String {
        key.strip_prefix("trigger.")
            .and_then(|k| self.trigger.get(k))
            .cloned()
            .unwrap_or_default()
    }

    /// Pipeline param values with the run's context substituted (a default
    /// such as `$(context.pipelineRun.name)`); a value with any other
    /// reference stays as written.
    fn with_params_resolved(mut self) -> Self {
        let none = BTreeMap::new();
        let mut scope = Scope::new(&none);
        let namespace = self
            .kube
            .as_ref()
            .map_or("default", |k| k.namespace.as_str());
        for key in crate::pipeline::RUN_CONTEXT {
            let v = match key {
                "pipeline.name" => self.prepared.plan.name.clone(),
                "pipelineRun.namespace" => namespace.to_string(),
                _ => self.run_id.clone(), // the run's id is its name and uid
            };
            scope.context.insert(key, v);
        }
        for key in crate::pipeline::subst::trigger_keys() {
            scope.context.insert(key, self.trigger_value(key));
        }
        self.params = self
            .prepared
            .plan
            .params
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    scope.resolve_value(v).unwrap_or_else(|_| v.clone()),
                )
            })
            .collect();
        self
    }

    /// The results of matrix tasks whose children all ended before this
    /// process took the run (resumed, or reused by a re-run).
    fn with_groups_collected(mut self) -> Self {
        let firsts: Vec<String> = self
            .prepared
            .plan
            .groups
            .values()
            .filter_map(|g| g.children.first().cloned())
            .collect();
        for c in firsts {
            self.aggregate_group(&c);
        }
        self
    }

    /// A resumed run's due retries and open waits, queued.
    fn with_queues_filled(mut self) -> Self {
        for (name, rt) in &self.state {
            if let Some(at) = rt.retry_at {
                self.retry_queue.insert((at, name.clone()));
            }
            if let (TaskStatus::Waiting, Some(d)) = (rt.status, rt.wait_deadline) {
                self.wait_queue.insert((d, name.clone()));
            }
        }
        self
    }

    /// A resumed run that had a failure is still stopping.
    fn with_stopping_found(mut self) -> Self {
        self.stopping = self
            .prepared
            .plan
            .tasks
            .iter()
            .find(|t| !t.finally && self.facts(&t.spec.name).stops_run())
            .map(|t| format!("task `{}` failed", t.spec.name));
        self
    }

    /// What decisions about other tasks need to know about `name`.
    fn facts(&self, name: &str) -> TaskFacts {
        let rt = &self.state[name];
        TaskFacts {
            status: rt.status,
            skip: rt.skip,
            continues: rt.continues,
        }
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
    fn watch_disk(
        sched: &Scheduler,
        run_id: &str,
        prepared: &Prepared,
        spec: &RunSpec,
    ) -> disk::DiskWatch {
        if prepared.plan.workspaces.is_empty() {
            return disk::DiskWatch::none();
        }
        // The run's own directories — or, for a `rerun --failed`, the ones
        // it reuses (`STATE/workspaces/FIRST_RUN`).
        let managed = sched.workspaces_root(spec.kube.as_ref());
        let root = spec
            .workspaces
            .values()
            .map(PathBuf::from)
            .find(|d| d.starts_with(&managed))
            .and_then(|d| d.parent().map(PathBuf::from))
            .unwrap_or_else(|| managed.join(run_id));
        let free = disk::free_space(&sched.state_dir);
        let (budget, why) = disk::effective_budget(
            prepared.plan.workspace_budget,
            sched.policy.workspace_budget(),
            free,
        );
        let reserve = free.map_or(256 << 20, disk::store_reserve);
        disk::DiskWatch::start(root, sched.state_dir.clone(), budget, reserve, why)
    }

    fn emit(&self, e: Event) {
        if let Some(tx) = &self.events {
            let _ = tx.send(e);
        }
    }

    pub(in crate::scheduler) fn set_run(
        &self,
        status: RunStatus,
        message: Option<&str>,
    ) -> Result<()> {
        self.sched
            .store
            .set_run_status(&self.run_id, status, message)?;
        self.emit(Event::Run { status });
        Ok(())
    }

    /// Set a task's status, with why it was skipped (Skipped only).
    fn set_task_skipped(
        &mut self,
        name: &str,
        status: TaskStatus,
        skip: Option<SkipReason>,
        message: Option<&str>,
    ) -> Result<()> {
        self.sched
            .store
            .set_task_skipped(&self.run_id, name, status, skip, message)?;
        let rt = self.state.get_mut(name).expect("task state");
        track_waiting(&mut self.waiting, rt.status, status);
        if rt.status == TaskStatus::Retrying {
            rt.retry_at = None;
        }
        rt.status = status;
        rt.skip = skip;
        if status.is_terminal() {
            self.ready.ended(name);
        }
        let attempt = rt.attempts;
        self.emit(Event::Task {
            task: name.to_string(),
            status,
            attempt,
            message: message.map(str::to_string),
        });
        Ok(())
    }
}
