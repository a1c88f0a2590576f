//! A delivery, from receipt to runs.
//!
//! 1. The payload is JSON naming a repository this server knows (else 400,
//!    404), and its signature or token is the repository's (else 401; an
//!    unauthenticated delivery is not recorded).
//! 2. The delivery id is recorded; a redelivery answers what the first
//!    delivery did and starts nothing.
//! 3. The event is normalized and filtered (202 with the reason when it
//!    starts nothing).
//! 4. The pipeline files are read at the commit — or, for an untrusted
//!    pull request, at the tip of its target branch — validated like
//!    `capstan run` validates them, and each valid one whose own trigger
//!    matches becomes a run in the repository's queue. A file that does
//!    not validate gets a failed commit status naming `file:line:column`,
//!    and is listed in the delivery's outcome.
//!
//! Untrusted pull requests: one from a fork whose author is not in the
//! repository's `trusted` list runs the pipelines as the target branch
//! defines them (it cannot change what runs, or grant itself anything),
//! with `$(context.trigger.trusted)` = `false`.

use std::sync::Arc;

use serde_json::json;

use super::event::{ForgeEvent, Parsed};
use super::pipelines::Outcome;
use super::queue::Queue;
use super::repo::RepositorySpec;
use super::report::{self, Reporter, Retry, State, Target};
use super::source::{Entry, Finished, Repositories};
use super::{Provider, filter, github, gitlab, verify};
use crate::scheduler::Scheduler;
use crate::store::{Begin, DeliveryKey};

/// The headers of a delivery that matter.
#[derive(Debug, Default, Clone)]
pub struct Headers {
    /// `X-GitHub-Event`, `X-Gitlab-Event`.
    pub event: Option<String>,
    /// `X-GitHub-Delivery`; GitLab's `Idempotency-Key` (stable across
    /// GitLab's retries), else `X-Gitlab-Event-UUID`.
    pub delivery: Option<String>,
    /// `X-Hub-Signature-256`, `X-Gitlab-Token`.
    pub signature: Option<String>,
}

/// The answer to a delivery.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: serde_json::Value,
}

impl Answer {
    pub(super) fn new(status: u16, body: serde_json::Value) -> Answer {
        Answer { status, body }
    }
    pub(super) fn error(status: u16, msg: impl Into<String>) -> Answer {
        Answer::new(status, json!({ "error": msg.into() }))
    }

    /// The first of the body's `keys` that is a string: what a delivery's
    /// record says it did.
    pub(super) fn text(&self, keys: &[&str]) -> String {
        keys.iter()
            .find_map(|k| self.body.get(*k).and_then(|v| v.as_str()))
            .unwrap_or("")
            .to_string()
    }
}

/// The most repositories whose secrets are checked for one delivery.
const MAX_CLAIMANTS: usize = 16;

/// The forge side of a server.
pub struct Forge {
    pub sched: Arc<Scheduler>,
    /// The repositories and their secrets.
    pub repos: Arc<dyn Repositories>,
    pub queue: Arc<Queue>,
    /// Deliveries handled at once (each may hold a 25 MiB body).
    hooks: tokio::sync::Semaphore,
    /// Repositories read at once (each a few git processes).
    fetches: Arc<tokio::sync::Semaphore>,
    /// Where people see runs (`target_url` of statuses).
    pub public_url: String,
    pub retry: Retry,
}

impl Forge {
    pub fn new(
        sched: Arc<Scheduler>,
        repos: Arc<dyn Repositories>,
        public_url: String,
        retry: Retry,
    ) -> Arc<Forge> {
        Arc::new(Forge {
            queue: Queue::new(sched.clone()),
            repos,
            sched,
            public_url: public_url.trim_end_matches('/').to_string(),
            retry,
            hooks: tokio::sync::Semaphore::new(32),
            fetches: Arc::new(tokio::sync::Semaphore::new(4)),
        })
    }

    /// Handle one delivery.
    pub async fn receive(
        self: &Arc<Self>,
        provider: Provider,
        h: Headers,
        body: bytes::Bytes,
    ) -> Answer {
        // Bounded: each delivery may hold a large body while it is parsed.
        let Ok(_permit) = self.hooks.acquire().await else {
            return Answer::error(503, "shutting down");
        };
        let repo = match self.whose(provider, &h, &body).await {
            Ok(r) => r,
            Err(answer) => return answer,
        };
        let name = repo.name.clone();
        let payload: serde_json::Value = match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => return Answer::error(400, format!("the payload is not JSON: {e}")),
        };
        let (Some(event), Some(delivery)) = (h.event.clone(), h.delivery.clone()) else {
            return Answer::error(400, "no event or delivery id header");
        };
        if delivery.is_empty() || delivery.len() > 200 {
            return Answer::error(400, "the delivery id is empty or longer than 200 bytes");
        }
        let key = DeliveryKey {
            provider: provider.as_str().to_string(),
            repository: name.clone(),
            id: delivery.clone(),
        };
        if let Err(answer) = self.begin(&key, &event) {
            return answer;
        }
        // The rest runs on its own task: a forge that gives up waiting (or
        // a dropped connection) does not interrupt it.
        let me = self.clone();
        let key2 = key.clone();
        let event2 = event.clone();
        let work =
            tokio::spawn(async move { me.process(provider, &repo, &key, &event, &payload).await });
        match tokio::time::timeout(std::time::Duration::from_secs(8), work).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => {
                // A panic: the delivery is done (a redelivery starts over
                // only after the takeover time otherwise).
                let answer = Answer::error(500, format!("processing the delivery: {e}"));
                self.finish(
                    &key2,
                    &event2,
                    &answer,
                    "failed: an internal error (see the server log)",
                );
                answer
            }
            Err(_) => Answer::new(
                202,
                json!({ "delivery": delivery, "outcome": "accepted; still being processed (see `capstan repo deliveries`)" }),
            ),
        }
    }

    /// The repository a delivery is for: the one it names whose secret
    /// signed it. When several claim the project (two namespaces, say),
    /// their secrets are checked at once (at most [`MAX_CLAIMANTS`]).
    async fn whose(&self, provider: Provider, h: &Headers, body: &[u8]) -> Result<Entry, Answer> {
        let project =
            super::event::probe_project(provider, body).map_err(|e| Answer::error(400, e))?;
        let mut candidates =
            super::source::candidates(&*self.repos, provider, &project).map_err(|e| {
                tracing::error!("webhook: {e:#}");
                Answer::error(
                    500,
                    "the server's repository configuration is broken (see its log)",
                )
            })?;
        if candidates.is_empty() {
            return Err(Answer::error(
                404,
                format!("no {provider} repository `{project}` is configured here"),
            ));
        }
        if candidates.len() > MAX_CLAIMANTS {
            tracing::warn!(
                "{} repositories claim {provider} project `{project}`; only the first {MAX_CLAIMANTS} are checked",
                candidates.len()
            );
            candidates.truncate(MAX_CLAIMANTS);
        }
        let checks = candidates
            .iter()
            .map(|c| self.authenticate(provider, c, h, body));
        let results = futures::future::join_all(checks).await;
        let found = results.iter().position(Result::is_ok);
        for (c, r) in candidates.iter().zip(&results) {
            // The details are for the server's log, not for the sender.
            if let Err(why) = r {
                if found.is_some() {
                    tracing::debug!(repository = %c.name, "not this repository's delivery: {why}");
                } else {
                    tracing::warn!(repository = %c.name, "webhook refused: {why}");
                }
            }
        }
        match found {
            Some(i) => Ok(candidates.swap_remove(i)),
            None => Err(Answer::error(
                401,
                "the signature or secret token does not match this repository's",
            )),
        }
    }

    async fn authenticate(
        &self,
        provider: Provider,
        repo: &Entry,
        h: &Headers,
        body: &[u8],
    ) -> Result<(), String> {
        let secret = self
            .repos
            .secret(repo, &repo.spec.webhook_secret, &[])
            .await
            .map_err(|e| format!("the repository's webhook secret: {e}"))?;
        match provider {
            Provider::Github => verify::github(&secret, body, h.signature.as_deref()),
            Provider::Gitlab => verify::gitlab(&secret, h.signature.as_deref()),
        }
    }

    /// Steps 3 and 4; the delivery's outcome is recorded whatever happens.
    async fn process(
        self: Arc<Self>,
        provider: Provider,
        repo: &Entry,
        key: &DeliveryKey,
        event: &str,
        payload: &serde_json::Value,
    ) -> Answer {
        let parsed = match provider {
            Provider::Github => github::parse(event, payload),
            Provider::Gitlab => gitlab::parse(event, payload),
        };
        let answer = match parsed {
            Err(e) => Answer::error(400, format!("malformed {event} payload: {e}")),
            Ok(Parsed::Ignored(why)) => Answer::new(202, json!({ "runs": [], "reason": why })),
            Ok(Parsed::Event(e)) => match filter::repository_refuses(&repo.spec, &e) {
                Some(why) => Answer::new(202, json!({ "runs": [], "reason": why })),
                None => self.start_runs(repo, key, &e).await,
            },
        };
        let outcome = answer.text(&["reason", "error", "outcome"]);
        self.finish(key, event, &answer, &outcome);
        answer
    }

    /// Record a delivery's receipt; a redelivery (or a second approval)
    /// gets the first one's answer instead.
    pub(super) fn begin(&self, key: &DeliveryKey, event: &str) -> Result<(), Answer> {
        match self.sched.store.begin_delivery(key, event) {
            Err(e) => Err(Answer::error(500, e.to_string())),
            Ok(Begin::Done(d)) => Err(Answer::new(
                200,
                json!({ "duplicate": true, "delivery": d.id, "outcome": d.outcome, "runs": d.runs }),
            )),
            Ok(Begin::InProgress(d)) => Err(Answer::new(
                202,
                json!({ "duplicate": true, "delivery": d.id, "outcome": "being processed", "runs": d.runs }),
            )),
            Ok(Begin::New) => Ok(()),
        }
    }

    /// Record a delivery's outcome (and tell the repository's source).
    pub(super) fn finish(&self, key: &DeliveryKey, event: &str, answer: &Answer, outcome: &str) {
        let runs = self.sched.store.delivery_runs(key).unwrap_or_default();
        if let Err(e) = self
            .sched
            .store
            .finish_delivery(key, answer.status, outcome, &runs)
        {
            tracing::warn!("recording delivery {}: {e}", key.id);
        }
        let runs = runs
            .iter()
            .filter_map(|id| self.sched.store.run(id).ok())
            .map(|r| (r.id, r.pipeline, r.number))
            .collect();
        self.repos.finished(
            &key.repository,
            Finished {
                delivery: key.id.clone(),
                event: event.to_string(),
                status: answer.status,
                outcome: outcome.to_string(),
                runs,
            },
        );
    }

    pub(super) async fn token(&self, repo: &Entry) -> Result<Option<Vec<u8>>, String> {
        match &repo.spec.token {
            None => Ok(None),
            Some(t) => self
                .repos
                .secret(repo, t, &super::source::token_hosts(&repo.spec))
                .await
                .map(Some)
                .map_err(|e| format!("the repository's token: {e}")),
        }
    }

    fn target(
        &self,
        repo: &RepositorySpec,
        e: &ForgeEvent,
        context: String,
        token: &Option<Vec<u8>>,
    ) -> Option<Target> {
        let token = token.as_ref()?;
        Some(Target {
            provider: repo.provider,
            api: repo.api(),
            project: repo.project(),
            sha: e.revision.clone(),
            context,
            git_ref: e.tag.clone().or_else(|| e.branch.clone()),
            token: Arc::new(secrecy::SecretBox::new(token.clone().into_boxed_slice())),
        })
    }

    pub(super) async fn start_runs(
        self: &Arc<Self>,
        entry: &Entry,
        key: &DeliveryKey,
        e: &ForgeEvent,
    ) -> Answer {
        let token = match self.token(entry).await {
            Ok(t) => t,
            Err(why) => return Answer::error(500, why),
        };
        let (name, repo) = (entry.name.as_str(), &entry.spec);
        let trusted = e.trusted(&repo.trusted);
        let me = self.clone();
        let (entry2, e2, key2, token2) = (entry.clone(), e.clone(), key.clone(), token.clone());
        let Ok(_fetch) = self.fetches.clone().acquire_owned().await else {
            return Answer::error(503, "shutting down");
        };
        let outcome = tokio::task::spawn_blocking(move || {
            me.prepare_runs(&entry2, &key2, &e2, trusted, token2)
        })
        .await
        .unwrap_or_else(|j| Err(j.to_string()));
        let outcome = match outcome {
            // A schedule's commit is known once its branch is read.
            Ok(o) if e.revision.is_empty() => {
                let mut with = e.clone();
                with.revision = o.commit.clone();
                return Box::pin(self.started(name, repo, key, &with, o, token, trusted)).await;
            }
            Ok(o) => o,
            Err(why) => {
                let why = format!("reading the pipelines: {why}");
                if let Some(t) = self.target(repo, e, "capstan".into(), &token) {
                    report::report(
                        &self.sched.store,
                        self.retry,
                        &t,
                        &key.id,
                        State::Error,
                        &why,
                        &self.public_url,
                    )
                    .await;
                }
                return Answer::error(502, why);
            }
        };
        self.started(name, repo, key, e, outcome, token, trusted)
            .await
    }

    /// Report the invalid files, queue the runs, answer.
    #[allow(clippy::too_many_arguments)]
    async fn started(
        self: &Arc<Self>,
        name: &str,
        repo: &RepositorySpec,
        key: &DeliveryKey,
        e: &ForgeEvent,
        outcome: Outcome,
        token: Option<Vec<u8>>,
        trusted: bool,
    ) -> Answer {
        for (file, why) in &outcome.invalid {
            if let Some(t) = self.target(repo, e, format!("capstan/{file}"), &token) {
                let url = self.public_url.clone();
                let (store, retry, why, id) = (
                    self.sched.store.clone(),
                    self.retry,
                    why.clone(),
                    key.id.clone(),
                );
                tokio::spawn(async move {
                    report::report(&store, retry, &t, &id, State::Failure, &why, &url).await
                });
            }
        }
        let mut runs = Vec::new();
        for (run_id, mut job, pipeline) in outcome.created {
            if let Some(t) = self.target(repo, e, format!("capstan/{pipeline}"), &token) {
                let url = format!("{}/v1/runs/{run_id}", self.public_url);
                let r =
                    Reporter::start(self.sched.store.clone(), self.retry, t, run_id.clone(), url);
                r.send(State::Pending, "queued");
                job.reporter = Some(r);
            }
            let limit = repo.concurrency.limit as usize;
            self.queue
                .submit(name, limit, repo.concurrency.cancel_in_progress, job);
            runs.push(run_id);
        }
        let invalid: Vec<_> = outcome
            .invalid
            .iter()
            .map(|(f, w)| json!({ "file": f, "error": w }))
            .collect();
        let status = if runs.is_empty() && !invalid.is_empty() {
            422
        } else if runs.is_empty() {
            202
        } else {
            201
        };
        let summary = if invalid.is_empty() {
            format!("{} run(s) started", runs.len())
        } else {
            format!(
                "{} run(s) started; invalid: {}",
                runs.len(),
                outcome
                    .invalid
                    .iter()
                    .map(|(_, w)| w.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        };
        let mut body = json!({ "runs": runs, "invalid": invalid, "skipped": outcome.notes, "outcome": summary, "trusted": trusted });
        if runs.is_empty() && invalid.is_empty() {
            body["reason"] = json!(format!(
                "no pipeline's trigger matches: {}",
                outcome.notes.join("; ")
            ));
        }
        Answer::new(status, body)
    }
}
