//! One run's execution: the task states and the loop that drives them.

mod complete;
mod dispatch;
mod grants;
mod wait;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinSet;

use super::recorder::StartRecord;
use super::sink::StoreSink;
use super::{Event, Prepared, Scheduler, approval, disk};
use crate::caps::LogLevel;
use crate::caps::http::{Authority, HttpGrant};
use crate::caps::redact::Redactor;
use crate::caps::secrets::{LocalSecrets, SecretGrant, SecretSource};
use crate::caps::ssh::SshGrant;
use crate::caps::workspace::WorkspaceMount;
use crate::pipeline::subst::Scope;
use crate::pipeline::{PlannedTask, WhenOperator};
use crate::runtime::{AttemptReport, Call, FailureKind, Invocation, Outcome, Suspend};
use crate::store::{RunSpec, RunStatus, TaskStatus, now_us};

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

pub(super) struct Execution<'a> {
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
    pub(in crate::scheduler) fn new(
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

    pub(in crate::scheduler) async fn run(&mut self) -> Result<RunStatus> {
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
}

enum Readiness {
    Wait,
    Skip(String),
    Go,
}
