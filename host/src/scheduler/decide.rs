//! The scheduler's decisions as functions of plain data — no store, no
//! wasm, no clock: whether a task may start (readiness and skip
//! propagation), `when`, retries, what a stop does to each task, and the
//! run's outcome. The execution loop only applies them.
//!
//! The rules are Tekton's (`pkg/reconciler/pipelinerun/resources`):
//! - once a task fails, the run is *stopping*: no new task starts (running
//!   ones finish, a task with retries left keeps retrying), then `finally`;
//! - a task skipped by its `when` does not skip the tasks after it, unless
//!   they use its results; a task skipped for any other reason skips every
//!   task after it;
//! - a task that ran keeps its real outcome, whatever stops the run.

use std::time::{Duration, Instant};

use crate::params::ParamValue;
use crate::pipeline::subst::Scope;
use crate::pipeline::{PlannedTask, WhenExpression, WhenOperator};
use crate::store::{RunStatus, SkipReason, StopMode, TaskStatus};

/// What the loop knows about one task when deciding about another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskFacts {
    pub status: TaskStatus,
    /// Why it was skipped (when `status` is Skipped).
    pub skip: Option<SkipReason>,
    /// `onError: continue`: its failure does not stop the run.
    pub continues: bool,
}

impl TaskFacts {
    pub fn new(status: TaskStatus) -> TaskFacts {
        TaskFacts {
            status,
            skip: None,
            continues: false,
        }
    }

    /// Whether this task's end stops the run (it failed, and it is not
    /// `onError: continue`).
    pub fn stops_run(&self) -> bool {
        failed(self.status) && !self.continues
    }
}

/// A task that ran and did not succeed.
pub fn failed(s: TaskStatus) -> bool {
    matches!(
        s,
        TaskStatus::Failed | TaskStatus::TimedOut | TaskStatus::Cancelled
    )
}

/// Whether a task may start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// A task it depends on has not ended.
    Wait,
    /// Evaluate its `when` and start it.
    Go,
    Skip(SkipReason, String),
}

/// Whether `t` may start, given the other tasks' facts and, if the run is
/// stopping, why. `finally` tasks start whatever stops the main phase.
pub fn readiness(
    t: &PlannedTask,
    facts: &dyn Fn(&str) -> TaskFacts,
    stopping: Option<&str>,
) -> Readiness {
    if let (false, Some(why)) = (t.finally, stopping) {
        return Readiness::Skip(SkipReason::Stopping, format!("not started: {why}"));
    }
    for dep in &t.deps {
        let f = facts(dep);
        if !f.status.is_terminal() {
            return Readiness::Wait;
        }
        let uses_results = t.result_deps.contains(dep);
        match f.status {
            TaskStatus::Skipped => match f.skip {
                Some(SkipReason::When) | None if !uses_results => {}
                Some(SkipReason::When) | None => {
                    return Readiness::Skip(
                        SkipReason::MissingResults,
                        format!("task `{dep}` was skipped, so its results are missing"),
                    );
                }
                Some(r) => {
                    return Readiness::Skip(
                        SkipReason::ParentSkipped,
                        format!("task `{dep}` was skipped ({})", r.as_str()),
                    );
                }
            },
            s if failed(s) && uses_results => {
                return Readiness::Skip(
                    SkipReason::MissingResults,
                    format!("task `{dep}` did not succeed ({s}), so its results are missing"),
                );
            }
            s if failed(s) && !f.continues => {
                // Not reached while the run is stopping (handled above);
                // kept for a run resumed from an older store.
                return Readiness::Skip(
                    SkipReason::Stopping,
                    format!("task `{dep}` did not succeed ({s})"),
                );
            }
            _ => {}
        }
    }
    if t.finally {
        for dep in &t.result_deps {
            let s = facts(dep).status;
            if s != TaskStatus::Succeeded {
                return Readiness::Skip(
                    SkipReason::MissingResults,
                    format!("task `{dep}` did not succeed ({s}), so its results are missing"),
                );
            }
        }
    }
    Readiness::Go
}

/// Evaluate `when` expressions: Ok(None) if all hold, Ok(Some(why)) for
/// the first that does not, Err if one cannot be evaluated (a missing
/// result, an index out of range): that fails the task, as in params.
/// `values` may splice an array param: `["$(params.arr[*])"]`.
pub fn evaluate_when(when: &[WhenExpression], scope: &Scope<'_>) -> Result<Option<String>, String> {
    for (i, w) in when.iter().enumerate() {
        let input = scope
            .resolve_str(&w.input)
            .map_err(|e| format!("when[{i}].input: {e}"))?;
        let values = match scope.resolve_value(&ParamValue::Array(w.values.clone())) {
            Ok(ParamValue::Array(v)) => v,
            Ok(_) => unreachable!("an array resolves to an array"),
            Err(e) => return Err(format!("when[{i}].values: {e}")),
        };
        let hit = values.contains(&input);
        let (holds, op) = match w.operator {
            WhenOperator::In => (hit, "in"),
            WhenOperator::Notin => (!hit, "notin"),
        };
        if !holds {
            return Ok(Some(format!(
                "when expression was false: `{input}` {op} {values:?}"
            )));
        }
    }
    Ok(None)
}

/// Delay before retry number `failures` (1-based): the backoff doubled per
/// earlier failure, at most 5 minutes.
pub fn retry_delay(backoff: Duration, failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    backoff
        .saturating_mul(1 << exp)
        .min(Duration::from_secs(300))
}

/// Whether a failed attempt gets another: the failure is of a retryable
/// kind, retries are left, and the attempt did not follow a wait (a retry
/// would ask the approvers again).
pub fn retries(retryable: bool, failures: u32, retries: u32, after_wait: bool) -> bool {
    retryable && failures <= retries && !after_wait
}

/// Which timeout passed (Tekton's `timeouts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    /// `timeout` / `timeouts.pipeline`: the whole run, `finally` included.
    Pipeline,
    /// `timeouts.tasks`: the main tasks; `finally` still runs.
    Tasks,
    /// `timeouts.finally`: the `finally` tasks.
    Finally,
}

/// The deadline of a phase and which timeout it is: the earlier of the
/// run's (`timeouts.pipeline`, from the run's start) and the phase's own
/// (`timeouts.tasks` from the run's start; `timeouts.finally` from when the
/// finally phase starts, `now`).
pub fn phase_deadline(
    t: &crate::pipeline::Timeouts,
    started: Instant,
    now: Instant,
    main: bool,
) -> Option<(Instant, Timeout)> {
    let pipeline = t.pipeline.map(|d| (started + d, Timeout::Pipeline));
    let phase = if main {
        t.tasks.map(|d| (started + d, Timeout::Tasks))
    } else {
        t.finally.map(|d| (now + d, Timeout::Finally))
    };
    [pipeline, phase]
        .into_iter()
        .flatten()
        .min_by_key(|(at, _)| *at)
}

/// What stops a phase early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Someone asked (`capstan runs cancel|stop`, the API, `spec.status`).
    Asked(StopMode),
    TimedOut(Timeout),
}

impl Stop {
    /// Whether `finally` tasks run after this stops the main phase.
    pub fn runs_finally(self) -> bool {
        !matches!(
            self,
            Stop::Asked(StopMode::Cancel) | Stop::TimedOut(Timeout::Pipeline)
        )
    }

    /// Whether attempts in flight are stopped (rather than finishing).
    pub fn kills_running(self) -> bool {
        !matches!(self, Stop::Asked(StopMode::Stop))
    }

    /// Whether this stop, arriving after `applied` (if any), changes
    /// anything: a graceful stop may be followed by a cancel or a timeout,
    /// nothing is followed by the same stop again. In `finally` only a
    /// plain cancel and the timeouts count.
    pub fn is_news(self, applied: Option<Stop>, main: bool) -> bool {
        let counts = main || matches!(self, Stop::Asked(StopMode::Cancel) | Stop::TimedOut(_));
        match applied {
            None => counts,
            Some(prev) => counts && prev != self && !prev.kills_running() && self.kills_running(),
        }
    }

    fn skip_reason(self) -> SkipReason {
        match self {
            Stop::Asked(StopMode::Stop) => SkipReason::GracefullyStopped,
            Stop::Asked(_) => SkipReason::GracefullyCancelled,
            Stop::TimedOut(Timeout::Pipeline) => SkipReason::PipelineTimedOut,
            Stop::TimedOut(Timeout::Tasks) => SkipReason::TasksTimedOut,
            Stop::TimedOut(Timeout::Finally) => SkipReason::FinallyTimedOut,
        }
    }

    fn message(self) -> &'static str {
        match self {
            Stop::Asked(StopMode::Stop) => "run stopped",
            Stop::Asked(_) => "run cancelled",
            Stop::TimedOut(Timeout::Pipeline) => "the run timed out",
            Stop::TimedOut(Timeout::Tasks) => "the run's tasks timed out (timeouts.tasks)",
            Stop::TimedOut(Timeout::Finally) => "the finally tasks timed out (timeouts.finally)",
        }
    }
}

/// What a stop does to a task that has not ended: its new status, a skip
/// reason, and the message. None: leave it (it finishes on its own).
/// `last_attempt` is the outcome of its latest attempt, if it ran.
pub fn on_stop(
    stop: Stop,
    status: TaskStatus,
    last_attempt: Option<TaskStatus>,
) -> Option<(TaskStatus, Option<SkipReason>, &'static str)> {
    let why = stop.message();
    let graceful = !stop.kills_running();
    match status {
        s if s.is_terminal() => None,
        // A graceful stop lets attempts in flight finish, retries included.
        TaskStatus::Running | TaskStatus::Retrying if graceful => None,
        TaskStatus::Running | TaskStatus::Waiting => Some(match stop {
            Stop::TimedOut(_) => (TaskStatus::TimedOut, None, why),
            Stop::Asked(_) => (TaskStatus::Cancelled, None, why),
        }),
        // It ran and failed; its retry will not start. It keeps the outcome
        // of the attempt it had.
        TaskStatus::Retrying => Some((
            last_attempt
                .filter(|s| failed(*s))
                .unwrap_or(TaskStatus::Failed),
            None,
            why,
        )),
        _ => Some(match stop {
            Stop::Asked(StopMode::Cancel) => (TaskStatus::Cancelled, None, why),
            s => (TaskStatus::Skipped, Some(s.skip_reason()), why),
        }),
    }
}

/// Tekton's `$(tasks.NAME.status)` word for a main task, as a finally task
/// sees it.
pub fn status_word(s: TaskStatus) -> &'static str {
    match s {
        TaskStatus::Succeeded => "Succeeded",
        s if failed(s) => "Failed",
        _ => "None",
    }
}

/// Tekton's `$(tasks.NAME.reason)` for a main task: its TaskRun's reason
/// (`Succeeded`, `Failed`, `FailureIgnored` for an `onError: continue`
/// failure, `TaskRunTimeout`, `TaskRunCancelled`), empty if it did not run.
pub fn reason_word(f: TaskFacts) -> &'static str {
    match f.status {
        TaskStatus::Succeeded => "Succeeded",
        TaskStatus::Failed | TaskStatus::TimedOut if f.continues => "FailureIgnored",
        TaskStatus::Failed => "Failed",
        TaskStatus::TimedOut => "TaskRunTimeout",
        TaskStatus::Cancelled => "TaskRunCancelled",
        _ => "",
    }
}

/// A matrix task's `$(tasks.NAME.status)`: `Succeeded` if every child
/// did, `Failed` if one failed, else `None`.
pub fn group_status(children: impl IntoIterator<Item = TaskStatus>) -> &'static str {
    let (mut any_failed, mut all_ok) = (false, true);
    for s in children {
        any_failed |= failed(s);
        all_ok &= s == TaskStatus::Succeeded;
    }
    if any_failed {
        "Failed"
    } else if all_ok {
        "Succeeded"
    } else {
        "None"
    }
}

/// Tekton's `$(tasks.status)`: `Failed` if a main task failed (even one
/// with `onError: continue`), `Succeeded` if all succeeded, otherwise
/// `Completed`.
pub fn aggregate_status(main: impl IntoIterator<Item = TaskFacts>) -> &'static str {
    let (mut failed_any, mut all_ok) = (false, true);
    for f in main {
        failed_any |= failed(f.status);
        all_ok &= f.status == TaskStatus::Succeeded;
    }
    if failed_any {
        "Failed"
    } else if all_ok {
        "Succeeded"
    } else {
        "Completed"
    }
}

/// The run's status and message once both phases are over. `tasks` are
/// every task (main and finally) with its facts. A task cancelled by a
/// stop is not a failure; one with `onError: continue` is an ignored one.
pub fn run_outcome<'t>(
    main_stop: Option<Stop>,
    finally_stop: Option<Stop>,
    tasks: impl IntoIterator<Item = (&'t str, TaskFacts)>,
) -> (RunStatus, String) {
    let (mut failed, mut ignored) = (Vec::new(), Vec::new());
    for (name, f) in tasks {
        if matches!(f.status, TaskStatus::Failed | TaskStatus::TimedOut) {
            if f.continues {
                ignored.push(name);
            } else {
                failed.push(name);
            }
        }
    }
    let failed_note = if failed.is_empty() {
        String::new()
    } else {
        format!("; failed tasks: {}", failed.join(", "))
    };
    let stops = [main_stop, finally_stop];
    if stops.contains(&Some(Stop::Asked(StopMode::Cancel))) {
        return (RunStatus::Cancelled, "cancelled".to_string());
    }
    if let Some(Stop::TimedOut(t)) = stops
        .iter()
        .flatten()
        .find(|s| matches!(s, Stop::TimedOut(_)))
    {
        let what = Stop::TimedOut(*t).message();
        return (RunStatus::TimedOut, format!("{what}{failed_note}"));
    }
    if !failed.is_empty() {
        return (
            RunStatus::Failed,
            format!("failed tasks: {}", failed.join(", ")),
        );
    }
    match main_stop {
        Some(Stop::Asked(StopMode::CancelRunFinally)) => (
            RunStatus::Cancelled,
            "cancelled; finally tasks ran".to_string(),
        ),
        Some(Stop::Asked(StopMode::Stop)) => (
            RunStatus::Cancelled,
            "stopped; running tasks finished and finally tasks ran".to_string(),
        ),
        _ if !ignored.is_empty() => (
            RunStatus::Succeeded,
            format!(
                "completed; failures ignored (onError: continue): {}",
                ignored.join(", ")
            ),
        ),
        _ => (RunStatus::Succeeded, "all tasks completed".to_string()),
    }
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
