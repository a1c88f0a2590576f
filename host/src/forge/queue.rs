//! Runs the forge started, per repository: at most `limit` execute at once,
//! the rest wait first in, first out (each run's message says its
//! position); a run in a concurrency group supersedes the group's older
//! runs when the repository says `cancelInProgress` (a new push to a
//! branch or pull request cancels the run of the commit it replaced, as
//! GitHub Actions' `cancel-in-progress` does).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use super::report::{Reporter, State};
use crate::scheduler::{Prepared, Scheduler};
use crate::store::RunStatus;

/// The concurrency group of a run of pipeline file `path` with trigger
/// `context`: its pull request or branch (by file, so two files naming one
/// pipeline are two groups); a tag's or a schedule's run is a group of its
/// own.
pub fn group(path: &str, context: &BTreeMap<String, String>, run_id: &str) -> String {
    let get = |k: &str| context.get(k).map(String::as_str).unwrap_or("");
    let of = match get("event") {
        "pull_request" => format!("pr:{}", get("pr-number")),
        "push" if !get("branch").is_empty() => format!("branch:{}", get("branch")),
        _ => format!("run:{run_id}"),
    };
    format!("{path}@{of}")
}

/// A run to execute.
pub struct Job {
    pub run_id: String,
    /// `PIPELINE@branch` or `PIPELINE@pr-N`; a tag's own name.
    pub group: String,
    pub prepared: Prepared,
    pub reporter: Option<Reporter>,
}

#[derive(Default)]
struct Lane {
    running: Vec<(String, String)>,
    waiting: VecDeque<Job>,
}

/// The queues of every repository.
pub struct Queue {
    sched: Arc<Scheduler>,
    lanes: Mutex<HashMap<String, Lane>>,
}

impl Queue {
    pub fn new(sched: Arc<Scheduler>) -> Arc<Queue> {
        Arc::new(Queue {
            sched,
            lanes: Mutex::new(HashMap::new()),
        })
    }

    fn lanes(&self) -> std::sync::MutexGuard<'_, HashMap<String, Lane>> {
        self.lanes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queue `job` for `repo` (at most `limit` running); with `cancel`,
    /// cancel the older runs of its group first.
    pub fn submit(self: &Arc<Self>, repo: &str, limit: usize, cancel: bool, job: Job) {
        let mut superseded = Vec::new();
        let started = {
            let mut lanes = self.lanes();
            let lane = lanes.entry(repo.to_string()).or_default();
            if cancel {
                superseded.extend(
                    lane.running
                        .iter()
                        .filter(|(_, g)| *g == job.group)
                        .map(|(r, _)| (r.clone(), None)),
                );
                let (older, keep): (Vec<Job>, Vec<Job>) =
                    lane.waiting.drain(..).partition(|j| j.group == job.group);
                lane.waiting = keep.into();
                superseded.extend(older.into_iter().map(|j| (j.run_id.clone(), j.reporter)));
            }
            lane.waiting.push_back(job);
            self.start_ready(repo, lane, limit)
        };
        for (old, reporter) in superseded {
            self.supersede(&old, reporter);
        }
        self.launch(repo, limit, started);
    }

    /// Cancel a superseded run: a queued one ends here; a running one is
    /// stopped by the task executing it.
    fn supersede(&self, run_id: &str, reporter: Option<Reporter>) {
        let note = "superseded by a newer run of the same branch or pull request";
        match self.sched.stop_run(run_id, crate::store::StopMode::Cancel) {
            Ok(crate::scheduler::StopOutcome::Ended(RunStatus::Cancelled)) => {
                let _ = self
                    .sched
                    .store
                    .set_run_status(run_id, RunStatus::Cancelled, Some(note));
                if let Some(r) = reporter {
                    r.send(State::Canceled, note);
                }
            }
            Ok(_) => tracing::info!(run = run_id, "{note}: cancelling"),
            Err(e) => tracing::warn!(run = run_id, "cancelling a superseded run: {e:#}"),
        }
    }

    /// Move waiting jobs to running while there is room; the ones moved.
    fn start_ready(&self, repo: &str, lane: &mut Lane, limit: usize) -> Vec<Job> {
        let mut out = Vec::new();
        while lane.running.len() < limit.max(1) {
            let Some(job) = lane.waiting.pop_front() else {
                break;
            };
            lane.running.push((job.run_id.clone(), job.group.clone()));
            out.push(job);
        }
        for (i, j) in lane.waiting.iter().enumerate() {
            let msg = format!(
                "waiting: position {} of {} in the queue of repository {repo} (limit {limit})",
                i + 1,
                lane.waiting.len()
            );
            let _ = self
                .sched
                .store
                .set_run_status(&j.run_id, RunStatus::Queued, Some(&msg));
        }
        out
    }

    /// Execute `jobs`; when one ends, start the next of the repository.
    fn launch(self: &Arc<Self>, repo: &str, limit: usize, jobs: Vec<Job>) {
        for job in jobs {
            let queue = self.clone();
            let repo = repo.to_string();
            tokio::spawn(async move {
                if let Some(r) = &job.reporter {
                    r.send(State::Running, "running");
                }
                let status = queue.sched.execute(&job.run_id, &job.prepared, None).await;
                let (state, description) = match status {
                    Ok(s) => {
                        let msg = queue
                            .sched
                            .store
                            .run(&job.run_id)
                            .ok()
                            .and_then(|r| r.message)
                            .unwrap_or_else(|| s.as_str().to_string());
                        (State::of(s), msg)
                    }
                    Err(e) => {
                        tracing::warn!(run = %job.run_id, "executing: {e:#}");
                        (State::Error, format!("{e:#}"))
                    }
                };
                if let Some(r) = &job.reporter {
                    r.send(state, description);
                }
                let next = {
                    let mut lanes = queue.lanes();
                    let lane = lanes.entry(repo.clone()).or_default();
                    lane.running.retain(|(r, _)| *r != job.run_id);
                    queue.start_ready(&repo, lane, limit)
                };
                queue.launch(&repo, limit, next);
            });
        }
    }

    /// Whether a run is in a queue, waiting or executing.
    pub fn holds(&self, run_id: &str) -> bool {
        self.lanes().values().any(|l| {
            l.running.iter().any(|(r, _)| r == run_id)
                || l.waiting.iter().any(|j| j.run_id == run_id)
        })
    }

    /// `(running, waiting)` run ids of a repository.
    pub fn snapshot(&self, repo: &str) -> (Vec<String>, Vec<String>) {
        let lanes = self.lanes();
        lanes.get(repo).map_or((vec![], vec![]), |l| {
            (
                l.running.iter().map(|(r, _)| r.clone()).collect(),
                l.waiting.iter().map(|j| j.run_id.clone()).collect(),
            )
        })
    }
}
