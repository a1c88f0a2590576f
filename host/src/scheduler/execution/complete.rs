//! Recording an attempt's outcome.

use super::*;

impl<'a> Execution<'a> {
    pub(super) fn complete(
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
        let t = self.planned(name);
        if self.state[name].status.is_terminal() {
            // Ended meanwhile (a stop): the call's outcome comes too late.
            tracing::debug!(run = %self.run_id, task = %name, "an attempt ended after its task");
            return Ok(());
        }
        let resumed = self.state.get_mut(name).unwrap().resuming.take();
        if let (None, Some(g)) = (&resumed, &t.group)
            && let Some(n) = self.group_running.get_mut(g)
        {
            *n = n.saturating_sub(1);
        }
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
        if let Ok(results) = &report.outcome
            && let Err(e) = self.check_result_types(t, results)
        {
            report.outcome = Err((FailureKind::Failed, e));
        }
        let (attempt_status, task_status, message, results) = match report.outcome {
            Ok(results) => (
                TaskStatus::Succeeded,
                TaskStatus::Succeeded,
                None,
                results.into_iter().collect(),
            ),
            Err((kind, msg)) => {
                let (attempt_status, task_status, msg) =
                    self.failed_attempt(t, kind, msg, resumed.is_some());
                (attempt_status, task_status, Some(msg), BTreeMap::new())
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
        rt.last_attempt = Some(attempt_status);
        rt.results = results;
        self.emit(Event::Task {
            task: name.to_string(),
            status: task_status,
            attempt,
            message,
        });
        if task_status.is_terminal() {
            self.ended(name);
        }
        Ok(())
    }

    /// A failed attempt: its status, and the task's — Retrying (the retry
    /// queued, the message saying when) if [`decide::retries`] allows.
    fn failed_attempt(
        &mut self,
        t: &PlannedTask,
        kind: FailureKind,
        msg: String,
        after_wait: bool,
    ) -> (TaskStatus, TaskStatus, String) {
        let name = t.spec.name.as_str();
        let attempt_status = if kind == FailureKind::TimedOut {
            TaskStatus::TimedOut
        } else {
            TaskStatus::Failed
        };
        let rt = self.state.get_mut(name).expect("task state");
        rt.failures += 1;
        let failures = rt.failures;
        if !decide::retries(kind.retryable(), failures, t.spec.retries, after_wait) {
            return (attempt_status, attempt_status, msg);
        }
        let delay = decide::retry_delay(t.backoff, failures);
        let at = Instant::now() + delay;
        rt.retry_at = Some(at);
        self.retry_queue.insert((at, name.to_string()));
        let msg = format!(
            "{msg} (retry {failures} of {} in {})",
            t.spec.retries,
            crate::runtime::humantime(delay)
        );
        (attempt_status, TaskStatus::Retrying, msg)
    }

    /// An `array` or `object` result must hold a JSON array / object of
    /// strings (what `[*]`, `[i]` and `.key` read).
    fn check_result_types(
        &self,
        t: &PlannedTask,
        results: &[(String, String)],
    ) -> Result<(), String> {
        let Some(plugin) = self.prepared.plugins.get(&t.spec.uses) else {
            return Ok(());
        };
        for (name, value) in results {
            let Some(spec) = plugin
                .info
                .manifest
                .results
                .iter()
                .find(|r| &r.name == name)
            else {
                continue;
            };
            let ok = match spec.ty {
                crate::params::ParamType::String => true,
                ty => crate::pipeline::subst::parse_structured(value).is_some_and(|v| v.ty() == ty),
            };
            if !ok {
                return Err(format!(
                    "result `{name}` is declared {} but its value is not a JSON {} of strings",
                    spec.ty, spec.ty
                ));
            }
        }
        Ok(())
    }
}
