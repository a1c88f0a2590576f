//! The run's two phases (main tasks, then `finally`) and the loop that
//! drives one: stops, dispatch of what is ready, and waiting for progress.
//! What to do is decided in [`decide`]; this file applies it.

use super::*;

/// What an idle turn (nothing running) found.
enum Idle {
    /// Every task of the phase has ended.
    Done,
    /// Something woke us (a retry, a decision, a deadline): turn again.
    Turn,
}

impl<'a> Execution<'a> {
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
        if let Some(s) = stop.filter(|s| !s.runs_finally()) {
            for t in &fin {
                let rt = &self.state[&t.spec.name];
                if let Some((status, skip, why)) = decide::on_stop(s, rt.status, rt.last_attempt) {
                    self.set_task_skipped(&t.spec.name, status, skip, Some(why))?;
                }
            }
        } else {
            // Finally tasks run whatever ended the main phase (a failure, a
            // timeout, a stop), except a plain cancel.
            self.stopping = None;
            let fin_stop = self.run_phase(&fin, false).await?;
            return self.finish(stop, fin_stop);
        }
        self.finish(stop, None)
    }

    /// Record the run's results and outcome.
    fn finish(&mut self, stop: Option<Stop>, fin_stop: Option<Stop>) -> Result<RunStatus> {
        let facts: Vec<(&str, TaskFacts)> = self
            .prepared
            .plan
            .tasks
            .iter()
            .map(|t| (t.spec.name.as_str(), self.facts(&t.spec.name)))
            .collect();
        let (status, msg) = decide::run_outcome(stop, fin_stop, facts);
        if status != RunStatus::Cancelled || stop.is_some_and(|s| s.runs_finally()) {
            let results = self.pipeline_results();
            self.sched.store.set_run_results(&self.run_id, &results)?;
        }
        self.set_run(status, Some(&msg))?;
        Ok(status)
    }

    /// The pipeline's results; an array or object one as JSON. One that
    /// cannot be resolved (its task did not run) is left out, as in Tekton.
    fn pipeline_results(&self) -> BTreeMap<String, String> {
        let scope = Scope {
            results: Some(&self.results),
            bound: Some(&self.workspaces),
            ..Scope::new(&self.params)
        };
        self.prepared
            .plan
            .results
            .iter()
            .filter_map(|r| {
                let v = scope
                    .resolve_value(&crate::params::ParamValue::String(r.value.clone()))
                    .ok()?;
                let text = match v {
                    crate::params::ParamValue::String(s) => s,
                    v => serde_json::to_string(&v).ok()?,
                };
                Some((r.name.clone(), text))
            })
            .collect()
    }

    /// What finally tasks see of the main tasks: each one's
    /// `$(tasks.NAME.status)` and `$(tasks.NAME.reason)`, and
    /// `$(tasks.status)`. A matrix task's are its children's together.
    pub(super) fn statuses(&self) -> (HashMap<String, String>, HashMap<String, String>, String) {
        let main = self.prepared.plan.tasks.iter().filter(|t| !t.finally);
        let mut status = HashMap::new();
        let mut reason = HashMap::new();
        for t in main.clone() {
            let f = self.facts(&t.spec.name);
            status.insert(
                t.spec.name.clone(),
                decide::status_word(f.status).to_string(),
            );
            reason.insert(t.spec.name.clone(), decide::reason_word(f).to_string());
        }
        let agg = decide::aggregate_status(main.map(|t| self.facts(&t.spec.name)));
        for (parent, g) in &self.prepared.plan.groups {
            let word = decide::group_status(g.children.iter().map(|c| self.state[c].status));
            status.insert(parent.clone(), word.to_string());
            let first_bad = g
                .children
                .iter()
                .map(|c| self.facts(c))
                .find(|f| f.status != TaskStatus::Succeeded)
                .map_or("Succeeded", decide::reason_word);
            reason.insert(parent.clone(), first_bad.to_string());
        }
        (status, reason, agg.to_string())
    }

    /// Run `tasks` until each has ended. Returns what stopped the phase
    /// early, if something did.
    async fn run_phase(&mut self, tasks: &[&'a PlannedTask], main: bool) -> Result<Option<Stop>> {
        let mut running: JoinSet<AttemptDone> = JoinSet::new();
        let mut stop: Option<Stop> = None;
        let mut last_check = Instant::now() - Duration::from_secs(1);
        self.deadline = self.phase_deadline(main);
        self.ready = ReadySet::new(tasks, |n| self.state[n].status.is_terminal());
        let mut swept = false;
        loop {
            if let Some(s) = self.stop_asked(main, stop, &mut last_check)? {
                stop = Some(s);
                self.apply_stop(tasks, s, &mut running).await?;
                if s.kills_running() {
                    return Ok(stop);
                }
            }
            // Resumes first: what they end (a gate that fails) is acted on
            // in the same turn.
            self.dispatch_resumes(&mut running)?;
            if main && !swept && self.stopping.is_some() {
                // Once, when the run starts stopping: nothing not yet
                // started will start.
                swept = true;
                self.sweep_pending(tasks)?;
            } else if swept && self.waiting > 0 {
                // A running task suspended after the run began stopping.
                self.close_waits(tasks, Stop::Asked(StopMode::Stop))?;
            }
            self.dispatch_ready(tasks, &mut running)?;
            if running.is_empty() {
                match self.idle().await? {
                    Idle::Done => return Ok(stop),
                    Idle::Turn => continue,
                }
            }
            self.await_progress(&mut running).await?;
        }
    }

    /// Skip every task of the phase that has not started (the run is
    /// stopping), and close the waits (nothing waits for a person once
    /// the run cannot succeed).
    fn sweep_pending(&mut self, tasks: &[&'a PlannedTask]) -> Result<()> {
        let why = format!(
            "not started: {}",
            self.stopping.as_deref().unwrap_or("the run is stopping")
        );
        for t in tasks {
            if self.state[&t.spec.name].status == TaskStatus::Pending {
                let reason = Some(SkipReason::Stopping);
                self.set_task_skipped(&t.spec.name, TaskStatus::Skipped, reason, Some(&why))?;
            }
        }
        if self.waiting > 0 {
            self.close_waits(tasks, Stop::Asked(StopMode::Stop))?;
        }
        Ok(())
    }

    /// The earliest timeout of a phase: the run's (`timeouts.pipeline`),
    /// and the main tasks' (from the run's start) or the finally tasks'
    /// (from now).
    fn phase_deadline(&self, main: bool) -> Option<(Instant, Timeout)> {
        let t = &self.prepared.plan.timeouts;
        decide::phase_deadline(t, self.started, Instant::now(), main)
    }

    /// A stop not yet applied: Ctrl-C, a request in the store (checked at
    /// most every 100 ms), or a deadline (see [`Stop::is_news`]).
    fn stop_asked(
        &self,
        main: bool,
        applied: Option<Stop>,
        last_check: &mut Instant,
    ) -> Result<Option<Stop>> {
        let cancel = self
            .sched
            .cancel
            .load(Ordering::Relaxed)
            .then_some(Stop::Asked(StopMode::Cancel));
        let mut requested = None;
        if last_check.elapsed() >= Duration::from_millis(100) {
            *last_check = Instant::now();
            requested = self
                .sched
                .store
                .stop_requested(&self.run_id)?
                .map(Stop::Asked);
        }
        let timed_out = self
            .deadline
            .filter(|(at, _)| Instant::now() >= *at)
            .map(|(_, which)| Stop::TimedOut(which));
        let asked = [cancel, requested, timed_out];
        Ok(asked
            .into_iter()
            .flatten()
            .find(|s| s.is_news(applied, main)))
    }

    /// Carry out a stop on the phase's tasks: a cancel or timeout stops the
    /// attempts in flight; a graceful stop lets them finish.
    async fn apply_stop(
        &mut self,
        tasks: &[&'a PlannedTask],
        stop: Stop,
        running: &mut JoinSet<AttemptDone>,
    ) -> Result<()> {
        if stop.kills_running() {
            running.abort_all();
            self.sched.recorder.flush()?;
            self.sched.store.abandon_running_attempts(&self.run_id)?;
        }
        self.close_waits(tasks, stop)?;
        for t in tasks {
            let rt = &self.state[&t.spec.name];
            if rt.resuming.is_some() && !stop.kills_running() {
                continue; // a gate being resumed: it ends on its own
            }
            if let Some((status, skip, why)) = decide::on_stop(stop, rt.status, rt.last_attempt) {
                self.set_task_skipped(&t.spec.name, status, skip, Some(why))?;
            }
        }
        if stop.kills_running() {
            while running.join_next().await.is_some() {}
        } else {
            self.stopping = Some("the run was stopped".to_string());
        }
        Ok(())
    }

    /// End the open waits of `tasks` as `stop` says.
    fn close_waits(&mut self, tasks: &[&'a PlannedTask], stop: Stop) -> Result<()> {
        for t in tasks {
            let rt = &self.state[&t.spec.name];
            // A gate whose resume is in flight finishes like a running task
            // under a graceful stop; a cancel or timeout aborted its call.
            if rt.status != TaskStatus::Waiting || (rt.resuming.is_some() && !stop.kills_running())
            {
                continue;
            }
            let Some((status, skip, why)) = decide::on_stop(stop, rt.status, rt.last_attempt)
            else {
                continue;
            };
            let phase = if status == TaskStatus::TimedOut {
                "timed-out"
            } else {
                "cancelled"
            };
            let why = match &self.stopping {
                Some(s) if stop == Stop::Asked(StopMode::Stop) => format!("{why}: {s}"),
                _ => why.to_string(),
            };
            self.sched
                .store
                .close_wait(&self.run_id, &t.spec.name, phase, &[])?;
            self.sched.metrics.waiting(-1);
            self.set_task_skipped(&t.spec.name, status, skip, Some(&why))?;
        }
        Ok(())
    }

    /// Start (or skip, or fail) the tasks that are due — retries whose time
    /// has come, then ready tasks in file order — up to the parallelism.
    /// A turn looks only at those.
    fn dispatch_ready(
        &mut self,
        tasks: &[&'a PlannedTask],
        running: &mut JoinSet<AttemptDone>,
    ) -> Result<()> {
        let now = Instant::now();
        while running.len() < self.parallelism {
            let Some(name) = self.pop_due_retry(now) else {
                break;
            };
            // A retry starts whatever the run is doing (as in Tekton, where
            // retries belong to the task): its `when` held.
            let t = self.planned(&name);
            if let Err(msg) = self.dispatch(t, running) {
                self.fail_before_start(&name, &msg)?;
            }
        }
        // As in Tekton, the tasks ready in one round all start: a failure
        // found while starting them (a set-up failure is immediate) stops
        // the *next* round, not its siblings.
        let stopping = self.stopping.clone();
        let mut deferred = Vec::new();
        while running.len() < self.parallelism {
            let Some(i) = self.ready.pop() else {
                break;
            };
            let t = tasks[i];
            if self.state[&t.spec.name].status != TaskStatus::Pending {
                continue;
            }
            if self.group_full(t) {
                deferred.push(i); // its matrix's maxParallel children run
                continue;
            }
            self.start_ready(t, stopping.as_deref(), running)?;
        }
        for i in deferred {
            self.ready.put_back(i);
        }
        Ok(())
    }

    /// A task whose dependencies have ended: skip it, fail it (a `when`
    /// that cannot be evaluated), or start it.
    fn start_ready(
        &mut self,
        t: &'a PlannedTask,
        stopping: Option<&str>,
        running: &mut JoinSet<AttemptDone>,
    ) -> Result<()> {
        let name = &t.spec.name;
        let facts = |n: &str| self.facts(n);
        match decide::readiness(t, &facts, stopping) {
            Readiness::Wait => return Ok(()), // re-queued when its dependency ends
            Readiness::Skip(reason, why) => {
                return self.set_task_skipped(name, TaskStatus::Skipped, Some(reason), Some(&why));
            }
            Readiness::Go => {}
        }
        if !t.spec.when.is_empty() {
            let attempts = self.state[name].attempts;
            match self.with_scope(t, attempts, |s| decide::evaluate_when(&t.spec.when, s)) {
                Ok(None) => {}
                Ok(Some(why)) => {
                    let reason = Some(SkipReason::When);
                    return self.set_task_skipped(name, TaskStatus::Skipped, reason, Some(&why));
                }
                Err(e) => return self.fail_before_start(name, &e),
            }
        }
        if let Err(msg) = self.dispatch(t, running) {
            self.fail_before_start(name, &msg)?;
        }
        Ok(())
    }

    /// When the last child of a matrix task ends: the matrix task's results,
    /// each an array of its children's values in combination order (a
    /// result some child lacks is missing, as in Tekton).
    pub(super) fn aggregate_group(&mut self, name: &str) {
        let Some(parent) = &self.planned(name).group else {
            return;
        };
        let children = &self.prepared.plan.groups[parent].children;
        if children.iter().any(|c| !self.state[c].status.is_terminal()) {
            return;
        }
        let mut names: Option<BTreeSet<&String>> = None;
        for c in children {
            let keys: BTreeSet<&String> = self.state[c].results.keys().collect();
            names = Some(match names {
                None => keys,
                Some(n) => n.intersection(&keys).copied().collect(),
            });
        }
        let mut out = BTreeMap::new();
        for r in names.unwrap_or_default() {
            let values: Vec<&String> = children.iter().map(|c| &self.state[c].results[r]).collect();
            out.insert(
                r.clone(),
                serde_json::to_string(&values).unwrap_or_default(),
            );
        }
        self.results.insert(parent.clone(), out);
    }

    /// Whether `t` is a matrix child whose matrix runs `maxParallel` now.
    fn group_full(&self, t: &PlannedTask) -> bool {
        let Some(g) = &t.group else { return false };
        let max = self
            .prepared
            .plan
            .groups
            .get(g)
            .and_then(|g| g.max_parallel);
        max.is_some_and(|m| self.group_running.get(g).copied().unwrap_or(0) >= m)
    }

    /// The planned task called `name` (O(1)).
    pub(super) fn planned(&self, name: &str) -> &'a PlannedTask {
        let plan: &'a crate::pipeline::Plan = &self.prepared.plan;
        &plan.tasks[self.index[name]]
    }

    /// The next retry of this phase that is due at `now` and may start
    /// (its matrix not at `maxParallel`), taken out of the queue; the
    /// others stay queued.
    fn pop_due_retry(&mut self, now: Instant) -> Option<String> {
        let mut keep = Vec::new();
        let mut found = None;
        while let Some((at, name)) = self.retry_queue.first().cloned() {
            if at > now {
                break;
            }
            self.retry_queue.pop_first();
            let rt = &self.state[&name];
            if rt.status != TaskStatus::Retrying || rt.retry_at != Some(at) {
                continue; // stale
            }
            if !self.ready.contains(&name) || self.group_full(self.planned(&name)) {
                keep.push((at, name));
                continue;
            }
            found = Some(name);
            break;
        }
        self.retry_queue.extend(keep);
        found
    }

    /// A task that could not start (a reference that does not resolve, a
    /// workspace that cannot be opened) fails with one recorded attempt.
    fn fail_before_start(&mut self, name: &str, msg: &str) -> Result<()> {
        let rt = self.state.get_mut(name).expect("task state");
        rt.retry_at = None;
        rt.attempts += 1;
        let attempt = rt.attempts;
        self.sched
            .store
            .start_attempt(&self.run_id, name, attempt, now_us())?;
        self.attempt_failed(name, attempt, msg)
    }

    /// Record `attempt` of `name` as Failed — the task too — and act on it.
    pub(super) fn attempt_failed(&mut self, name: &str, attempt: u32, msg: &str) -> Result<()> {
        self.sched.store.finish_attempt(
            &self.run_id,
            name,
            attempt,
            TaskStatus::Failed,
            TaskStatus::Failed,
            None,
            Some(msg),
            &BTreeMap::new(),
        )?;
        let rt = self.state.get_mut(name).expect("task state");
        track_waiting(&mut self.waiting, rt.status, TaskStatus::Failed);
        rt.status = TaskStatus::Failed;
        rt.last_attempt = Some(TaskStatus::Failed);
        rt.wait_deadline = None;
        self.emit(Event::Task {
            task: name.to_string(),
            status: TaskStatus::Failed,
            attempt,
            message: Some(msg.to_string()),
        });
        self.ended(name);
        Ok(())
    }

    /// A task ended: if its failure stops the run, nothing new starts.
    pub(super) fn ended(&mut self, name: &str) {
        self.ready.ended(name);
        self.aggregate_group(name);
        let t = self.facts(name);
        let is_main = !self.planned(name).finally;
        if is_main && t.stops_run() && self.stopping.is_none() {
            self.stopping = Some(format!("task `{name}` failed"));
        }
    }

    /// Nothing is running: finish the phase, or sleep until something is
    /// due (a retry, a decision, a wait's deadline, the run's deadline).
    async fn idle(&mut self) -> Result<Idle> {
        if self.ready.unfinished() == 0 {
            return Ok(Idle::Done);
        }
        if self.ready.has_queued() {
            return Ok(Idle::Turn); // became ready this turn (e.g. after a failed resume)
        }
        let retry = self.next_retry();
        if self.waiting > 0 {
            // Only waits (and maybe retries): also poll every second for
            // other processes' decisions and cancels.
            let poll = Instant::now() + Duration::from_secs(1);
            let mut wake = retry.map_or(poll, |r| r.min(poll));
            wake = self.next_wait_deadline().map_or(wake, |d| d.min(wake));
            wake = self.deadline.map_or(wake, |(d, _)| d.min(wake));
            tokio::select! {
                _ = self.wake.changed() => {}
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
            self.poll_decisions = true;
            return Ok(Idle::Turn);
        }
        match retry {
            Some(at) => {
                let at = self.deadline.map_or(at, |(d, _)| d.min(at));
                let tick = Instant::now() + Duration::from_millis(100);
                tokio::time::sleep_until(at.min(tick).into()).await;
                Ok(Idle::Turn)
            }
            // Nothing running, nothing ready: only if a dependency can never
            // finish, which validation rules out. Fail loudly, not hang.
            None => bail!("scheduler stalled: pending tasks have unsatisfiable dependencies"),
        }
    }

    /// Wait for an attempt to finish, a retry to come due, a decision, or a
    /// 100 ms tick (stop requests), and record what finished.
    async fn await_progress(&mut self, running: &mut JoinSet<AttemptDone>) -> Result<()> {
        let tick = Instant::now() + Duration::from_millis(100);
        let wake = self.next_retry().map_or(tick, |r| r.min(tick));
        let wake = self.deadline.map_or(wake, |(d, _)| d.min(wake));
        let wake = self.next_wait_deadline().map_or(wake, |d| d.min(wake));
        tokio::select! {
            _ = self.wake.changed() => {
                self.poll_decisions = true;
            }
            done = running.join_next() => match done {
                Some(Ok((name, attempt, dispatched_at, dispatched, report))) => {
                    self.complete(&name, attempt, dispatched_at, dispatched, report)?;
                }
                Some(Err(e)) if e.is_cancelled() => {}
                Some(Err(e)) => bail!("a task attempt panicked: {e}"),
                None => {}
            },
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
        Ok(())
    }

    /// When the earliest retry is due (stale queue entries dropped).
    fn next_retry(&mut self) -> Option<Instant> {
        while let Some((at, name)) = self.retry_queue.first() {
            let rt = &self.state[name];
            if rt.status == TaskStatus::Retrying && rt.retry_at == Some(*at) {
                return Some(*at);
            }
            self.retry_queue.pop_first();
        }
        None
    }
}
