//! Suspended tasks: recording waits, notifications, and resuming them.

use super::*;

impl<'a> Execution<'a> {
    /// A call returned a suspend request: record the wait (first time) or
    /// its new state (after a resume), and start the notification.
    pub(super) fn suspended(
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
                if let Some(d) = self.state[name].wait_deadline {
                    self.wait_queue.insert((d, name.to_string()));
                }
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
                self.wait_queue.insert((deadline, name.to_string()));
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
    pub(super) fn notify(&self, t: &PlannedTask, attempt: u32, detail: &serde_json::Value) {
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
        let grants = match self.grants_of(&t.spec.grants, None) {
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

    /// Start `resume` calls for the Waiting tasks that are due: an accepted
    /// decision not yet applied (one per call, oldest first), or a passed
    /// deadline. Costs the decisions and deadlines that are due, not the
    /// number of waiting tasks.
    pub(super) fn dispatch_resumes(&mut self, running: &mut JoinSet<AttemptDone>) -> Result<()> {
        if self.waiting == 0 {
            return Ok(());
        }
        let due = self.last_decision_poll.elapsed() >= Duration::from_secs(1);
        let decisions = if std::mem::take(&mut self.poll_decisions) || due {
            self.last_decision_poll = Instant::now();
            self.sched.store.unapplied_decisions(&self.run_id)?
        } else {
            Vec::new()
        };
        let waiting = |s: &Self, name: &str| {
            s.state
                .get(name)
                .is_some_and(|rt| rt.status == TaskStatus::Waiting && rt.resuming.is_none())
                && s.ready.contains(name)
        };
        let mut resumes: Vec<(String, Outcome, Resuming)> = Vec::new();
        for d in &decisions {
            if waiting(self, &d.task) && resumes.iter().all(|(n, ..)| n != &d.task) {
                let r = Resuming {
                    decisions: vec![d.id],
                    timed_out: false,
                };
                resumes.push((d.task.clone(), Outcome::Event(approval::event_json(d)), r));
            }
        }
        let now = now_us();
        // Another phase's waits (a resumed run's finally gate) stay queued.
        let mut later = Vec::new();
        while let Some((deadline, name)) = self.wait_queue.first().cloned() {
            if deadline > now {
                break;
            }
            self.wait_queue.pop_first();
            if !self.ready.contains(&name) {
                later.push((deadline, name));
                continue;
            }
            let current = self.state.get(&name).and_then(|rt| rt.wait_deadline);
            if current == Some(deadline)
                && waiting(self, &name)
                && resumes.iter().all(|(n, ..)| n != &name)
            {
                let r = Resuming {
                    decisions: Vec::new(),
                    timed_out: true,
                };
                resumes.push((name, Outcome::TimedOut, r));
            }
        }
        self.wait_queue.extend(later);
        for (name, outcome, resuming) in resumes {
            let t = self.planned(&name);
            let Some(w) = self.sched.store.wait(&self.run_id, &name)? else {
                continue;
            };
            let call = Call::Resume {
                state: w.state,
                outcome,
            };
            if let Err(msg) = self.dispatch_call(t, running, Some((call, resuming))) {
                // It cannot run again (a secret deleted, the disk budget
                // spent): trying again every turn would spin. It fails.
                self.state.get_mut(&name).expect("task state").resuming = None;
                self.fail_waiting(&name, &format!("cannot resume: {msg}"))?;
            }
        }
        Ok(())
    }

    /// End a Waiting task as Failed: its wait closed, its attempt finished.
    pub(super) fn fail_waiting(&mut self, name: &str, msg: &str) -> Result<()> {
        self.sched
            .store
            .close_wait(&self.run_id, name, "failed", &[])?;
        self.sched.metrics.waiting(-1);
        let attempt = self.state[name].attempts;
        self.attempt_failed(name, attempt, msg)
    }

    /// The earliest deadline of a Waiting task (stale entries dropped).
    pub(super) fn next_wait_deadline(&mut self) -> Option<Instant> {
        if self.waiting == 0 {
            return None;
        }
        let us = loop {
            let (d, name) = self.wait_queue.first()?;
            let rt = &self.state[name];
            if rt.status == TaskStatus::Waiting && rt.wait_deadline == Some(*d) {
                break *d;
            }
            self.wait_queue.pop_first();
        };
        let left = (us - now_us()).max(0) as u64;
        Some(Instant::now() + Duration::from_micros(left))
    }
}
