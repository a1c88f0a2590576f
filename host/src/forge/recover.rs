//! After a restart (or a leader's failover): the runs a forge started that
//! were executing when the server stopped, and those still waiting in a
//! repository's queue, are queued again, oldest first, with their commit
//! statuses. An executing one resumes where it was (its finished tasks do
//! not run again), unless another process is executing it.

use std::sync::Arc;

use super::intake::Forge;
use super::queue::{Job, group};
use super::report::{Reporter, State, Target};
use crate::store::{RunStatus, TriggeredBy};

impl Forge {
    /// `Running`, yet no process executes it (checked again after the
    /// lock: a run that just ended has its final status by then).
    fn orphaned(&self, run: &crate::store::RunRecord) -> bool {
        run.status == RunStatus::Running
            && !self.queue.holds(&run.id)
            && !crate::scheduler::run_is_active(&self.sched.state_dir, &run.id)
            && self
                .sched
                .store
                .run(&run.id)
                .is_ok_and(|r| r.status == RunStatus::Running)
    }

    /// At start: queue again the forge's runs left `Queued`, or `Running`
    /// with no process executing them; how many.
    pub async fn recover(self: &Arc<Self>) -> usize {
        self.requeue(true).await
    }

    /// Later, now and then: runs left `Running` by a process that died
    /// after this one started (a leader that lost its lease while a run
    /// was being taken over).
    pub async fn recover_orphans(self: &Arc<Self>) -> usize {
        self.requeue(false).await
    }

    async fn requeue(self: &Arc<Self>, queued_too: bool) -> usize {
        let repos = match self.repos.list() {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!("recovering queued runs: {e:#}");
                return 0;
            }
        };
        // Oldest first: the queue's order.
        let runs = match self.sched.store.unfinished_runs() {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("recovering queued runs: {e}");
                return 0;
            }
        };
        let mut queued = 0;
        for run in runs {
            let from_forge = matches!(
                run.spec.triggered_by,
                Some(TriggeredBy::Webhook { .. } | TriggeredBy::Schedule { .. })
            );
            if !from_forge
                || !(self.orphaned(&run) || queued_too && run.status == RunStatus::Queued)
            {
                continue;
            }
            let orphaned = run.status == RunStatus::Running;
            let name = run
                .spec
                .trigger
                .get("repository")
                .cloned()
                .unwrap_or_default();
            let Some(entry) = repos.iter().find(|e| e.name == name) else {
                let why = format!("repository `{name}` is no longer configured");
                let _ = self
                    .sched
                    .store
                    .set_run_status(&run.id, RunStatus::Cancelled, Some(&why));
                continue;
            };
            let prepared = match self.sched.reload(&run.id) {
                Ok(p) => p,
                Err(e) => {
                    let why = format!("could not be queued again after a restart: {e}");
                    let _ = self
                        .sched
                        .store
                        .set_run_status(&run.id, RunStatus::Failed, Some(&why));
                    continue;
                }
            };
            let t = &run.spec.trigger;
            let repo = &entry.spec;
            let reporter = self.token(entry).await.ok().flatten().map(|token| {
                let target = Target {
                    provider: repo.provider,
                    api: repo.api(),
                    project: repo.project(),
                    sha: t.get("revision").cloned().unwrap_or_default(),
                    context: format!("capstan/{}", run.pipeline),
                    git_ref: [t.get("tag"), t.get("branch")]
                        .into_iter()
                        .flatten()
                        .find(|v| !v.is_empty())
                        .cloned(),
                    token: Arc::new(secrecy::SecretBox::new(token.into_boxed_slice())),
                };
                let url = format!("{}/v1/runs/{}", self.public_url, run.id);
                let r = Reporter::start(
                    self.sched.store.clone(),
                    self.retry,
                    target,
                    run.id.clone(),
                    url,
                );
                if orphaned {
                    r.send(State::Pending, "resuming after a restart");
                } else {
                    r.send(State::Pending, "queued again after a restart");
                }
                r
            });
            let job = Job {
                group: group(&run.spec.file, t, &run.id),
                run_id: run.id.clone(),
                prepared,
                reporter,
            };
            self.queue
                .submit(&name, repo.concurrency.limit as usize, false, job);
            queued += 1;
        }
        queued
    }
}
