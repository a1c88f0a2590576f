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

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::json;

use super::event::{ForgeEvent, Parsed};
use super::queue::{Job, Queue};
use super::repo::{RepoFile, RepositorySpec};
use super::report::{self, Reporter, Retry, State, Target};
use super::{Provider, fetch, filter, github, gitlab, verify};
use crate::caps::secrets::LocalSecrets;
use crate::pipeline::Document;
use crate::scheduler::{PrepareError, Prepared, RunOptions, Scheduler};
use crate::store::{Begin, DeliveryKey, TriggeredBy};

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
    fn new(status: u16, body: serde_json::Value) -> Answer {
        Answer { status, body }
    }
    fn error(status: u16, msg: impl Into<String>) -> Answer {
        Answer::new(status, json!({ "error": msg.into() }))
    }
}

/// The forge side of a server.
pub struct Forge {
    pub sched: Arc<Scheduler>,
    /// `STATE/repositories.yaml`.
    pub repos: std::path::PathBuf,
    pub secrets: LocalSecrets,
    pub queue: Arc<Queue>,
    /// Where people see runs (`target_url` of statuses).
    pub public_url: String,
    pub retry: Retry,
}

/// A pipeline file that became a run, or did not.
struct Outcome {
    /// The commit the files were read at.
    commit: String,
    created: Vec<(String, Job, String)>,
    notes: Vec<String>,
    invalid: Vec<(String, String)>,
}

impl Forge {
    pub fn new(sched: Arc<Scheduler>, public_url: String, retry: Retry) -> Arc<Forge> {
        let state = sched.state_dir.clone();
        Arc::new(Forge {
            queue: Queue::new(sched.clone()),
            repos: RepoFile::path(&state),
            secrets: LocalSecrets::new(&state.join("secrets")),
            sched,
            public_url: public_url.trim_end_matches('/').to_string(),
            retry,
        })
    }

    /// Handle one delivery.
    pub async fn receive(
        self: &Arc<Self>,
        provider: Provider,
        h: Headers,
        body: bytes::Bytes,
    ) -> Answer {
        let payload: serde_json::Value = match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => return Answer::error(400, format!("the payload is not JSON: {e}")),
        };
        let project = match provider {
            Provider::Github => github::project(&payload),
            Provider::Gitlab => gitlab::project(&payload),
        };
        let project = match project {
            Ok(p) => p,
            Err(e) => return Answer::error(400, e),
        };
        let file = match RepoFile::load(&self.repos) {
            Ok(f) => f,
            Err(e) => return Answer::error(500, format!("{e:#}")),
        };
        let Some((name, repo)) = file.find(provider, &project) else {
            return Answer::error(
                404,
                format!("no {provider} repository `{project}` is configured here"),
            );
        };
        let (name, repo) = (name.clone(), repo.clone());
        if let Err(why) = self.authenticate(provider, &repo, &h, &body) {
            tracing::warn!(repository = %name, "webhook refused: {why}");
            return Answer::error(401, why);
        }
        let (Some(event), Some(delivery)) = (h.event.clone(), h.delivery.clone()) else {
            return Answer::error(400, "no event or delivery id header");
        };
        if delivery.is_empty() || delivery.len() > 200 {
            return Answer::error(400, "the delivery id is empty or longer than 200 bytes");
        }
        let key = DeliveryKey {
            provider: provider.as_str().to_string(),
            id: delivery.clone(),
        };
        match self.sched.store.begin_delivery(&key, &name, &event) {
            Err(e) => return Answer::error(500, e.to_string()),
            Ok(Begin::Done(d)) => {
                return Answer::new(
                    200,
                    json!({ "duplicate": true, "delivery": d.id, "outcome": d.outcome, "runs": d.runs }),
                );
            }
            Ok(Begin::InProgress(d)) => {
                return Answer::new(
                    202,
                    json!({ "duplicate": true, "delivery": d.id, "outcome": "being processed", "runs": d.runs }),
                );
            }
            Ok(Begin::New) => {}
        }
        // The rest runs on its own task: a forge that gives up waiting (or
        // a dropped connection) does not interrupt it.
        let me = self.clone();
        let work = tokio::spawn(async move {
            me.process(provider, &name, &repo, &key, &event, &payload)
                .await
        });
        match tokio::time::timeout(std::time::Duration::from_secs(8), work).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => Answer::error(500, format!("processing the delivery: {e}")),
            Err(_) => Answer::new(
                202,
                json!({ "delivery": delivery, "outcome": "accepted; still being processed (see `capstan repo deliveries`)" }),
            ),
        }
    }

    fn authenticate(
        &self,
        provider: Provider,
        repo: &RepositorySpec,
        h: &Headers,
        body: &[u8],
    ) -> Result<(), String> {
        let secret = self
            .secrets
            .require(&repo.webhook_secret)
            .map_err(|e| format!("the repository's webhook secret: {e:#}"))?;
        match provider {
            Provider::Github => verify::github(&secret, body, h.signature.as_deref()),
            Provider::Gitlab => verify::gitlab(&secret, h.signature.as_deref()),
        }
    }

    /// Steps 3 and 4; the delivery's outcome is recorded whatever happens.
    async fn process(
        self: Arc<Self>,
        provider: Provider,
        name: &str,
        repo: &RepositorySpec,
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
            Ok(Parsed::Event(e)) => match filter::repository_refuses(repo, &e) {
                Some(why) => Answer::new(202, json!({ "runs": [], "reason": why })),
                None => self.start_runs(name, repo, key, &e).await,
            },
        };
        let outcome = answer
            .body
            .get("reason")
            .or_else(|| answer.body.get("error"))
            .or_else(|| answer.body.get("outcome"))
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string();
        self.finish(key, &answer, &outcome);
        answer
    }

    /// Record a delivery's outcome.
    pub(super) fn finish(&self, key: &DeliveryKey, answer: &Answer, outcome: &str) {
        let runs = self.sched.store.delivery_runs(key).unwrap_or_default();
        if let Err(e) = self
            .sched
            .store
            .finish_delivery(key, answer.status, outcome, &runs)
        {
            tracing::warn!("recording delivery {}: {e}", key.id);
        }
    }

    fn token(&self, repo: &RepositorySpec) -> Result<Option<Vec<u8>>, String> {
        match &repo.token {
            None => Ok(None),
            Some(t) => self
                .secrets
                .require(t)
                .map(Some)
                .map_err(|e| format!("the repository's token: {e:#}")),
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
        name: &str,
        repo: &RepositorySpec,
        key: &DeliveryKey,
        e: &ForgeEvent,
    ) -> Answer {
        let token = match self.token(repo) {
            Ok(t) => t,
            Err(why) => return Answer::error(500, why),
        };
        let trusted = !e.fork || repo.trusted.contains(&e.author);
        let me = self.clone();
        let (repo2, e2, name2, key2, token2) = (
            repo.clone(),
            e.clone(),
            name.to_string(),
            key.clone(),
            token.clone(),
        );
        let outcome = tokio::task::spawn_blocking(move || {
            me.prepare_runs(&name2, &repo2, &key2, &e2, trusted, token2)
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

    /// Read, validate and record the runs (blocking: git, the registry).
    fn prepare_runs(
        &self,
        name: &str,
        repo: &RepositorySpec,
        key: &DeliveryKey,
        e: &ForgeEvent,
        trusted: bool,
        token: Option<Vec<u8>>,
    ) -> Result<Outcome, String> {
        let work = tempfile::tempdir().map_err(|e| e.to_string())?;
        let git_dir = work.path().join("git");
        std::fs::create_dir(&git_dir).map_err(|e| e.to_string())?;
        let src = fetch::Source {
            url: &repo.url,
            provider: repo.provider,
            token: token.as_deref(),
        };
        let fetched = if e.revision.is_empty() {
            fetch::pipelines(&src, None, &e.git_ref, &repo.pipelines, &git_dir)?
        } else if trusted {
            fetch::pipelines(
                &src,
                Some(&e.revision),
                &e.git_ref,
                &repo.pipelines,
                &git_dir,
            )?
        } else {
            let base = format!("refs/heads/{}", e.base_branch.as_deref().unwrap_or("main"));
            fetch::pipelines(&src, None, &base, &repo.pipelines, &git_dir)?
        };
        if fetched.files.is_empty() {
            return Err(format!(
                "no file at {} matches {:?}",
                fetched.commit, repo.pipelines
            ));
        }
        // Files already made runs of (a delivery taken over after a crash).
        let done: Vec<String> = self
            .sched
            .store
            .delivery_runs(key)
            .unwrap_or_default()
            .iter()
            .filter_map(|r| self.sched.store.run(r).ok().map(|r| r.spec.file))
            .collect();
        let mut out = Outcome {
            commit: fetched.commit.clone(),
            created: vec![],
            notes: vec![],
            invalid: vec![],
        };
        let mut e = e.clone();
        if e.revision.is_empty() {
            e.revision = fetched.commit.clone();
        }
        let e = &e;
        let context = e.context(&key.id, name, trusted);
        for (path, text) in &fetched.files {
            if done.contains(path) {
                continue;
            }
            if !e.files.is_empty()
                && !e
                    .files
                    .iter()
                    .any(|g| glob::Pattern::new(g).is_ok_and(|g| g.matches(path)))
            {
                out.notes.push(format!("{path}: not one of {:?}", e.files));
                continue;
            }
            if let Some(why) = filter::pipeline_refuses(text, e) {
                out.notes.push(format!("{path}: {why}"));
                continue;
            }
            let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
            let base = work.path().join("src").join(dir);
            std::fs::create_dir_all(&base).map_err(|e| e.to_string())?;
            if let Some((_, lock)) = fetched.locks.iter().find(|(d, _)| d == dir) {
                std::fs::write(crate::resolve::lock_path(&base), lock)
                    .map_err(|e| e.to_string())?;
            }
            match self.prepare_one(path, text, &base) {
                Ok(prepared) => {
                    let run_id = self
                        .record(name, key, e, &prepared, &context)
                        .map_err(|e| format!("{e:#}"))?;
                    let branch = match (e.pr_number, &e.branch, &e.tag) {
                        _ if e.kind == super::repo::EventKind::Schedule => {
                            format!("{}-{run_id}", e.name)
                        }
                        (Some(n), _, _) => format!("pr-{n}"),
                        (None, _, Some(t)) => format!("tag-{t}-{run_id}"),
                        (None, Some(b), None) => b.clone(),
                        _ => run_id.clone(),
                    };
                    let pipeline = prepared.plan.name.clone();
                    let group = format!("{pipeline}@{branch}");
                    out.created.push((
                        run_id.clone(),
                        Job {
                            run_id,
                            group,
                            prepared,
                            reporter: None,
                        },
                        pipeline,
                    ));
                }
                Err(why) => out.invalid.push((path.clone(), why)),
            }
        }
        Ok(out)
    }

    /// Validate one file as `capstan run` would; repository pipelines may
    /// use registry plugins only (a path would name a file of this server).
    fn prepare_one(
        &self,
        path: &str,
        text: &str,
        base: &std::path::Path,
    ) -> Result<Prepared, String> {
        let mut doc = Document::parse(path, text).map_err(|d| one_line(&d))?;
        doc.base_dir = base.to_path_buf();
        let mut diags = Vec::new();
        for (at, t) in doc.all_tasks() {
            if let Ok(capstan_registry::Reference::File(_)) =
                t.uses.parse::<capstan_registry::Reference>()
            {
                diags.push(doc.diag(
                    &format!("{at}.uses"),
                    format!(
                        "`{}`: a pipeline from a repository may use registry plugins only",
                        t.uses
                    ),
                ));
            }
        }
        if !diags.is_empty() {
            return Err(one_line(&crate::pipeline::Diagnostics(diags)));
        }
        match self.sched.prepare(doc, &[], None) {
            Ok(p) => Ok(p),
            Err(PrepareError::Invalid(d)) => Err(one_line(&d)),
            Err(PrepareError::Other(e)) => Err(format!("{path}: {e:#}")),
        }
    }

    fn record(
        &self,
        name: &str,
        key: &DeliveryKey,
        e: &ForgeEvent,
        prepared: &Prepared,
        context: &BTreeMap<String, String>,
    ) -> anyhow::Result<String> {
        let by = match &e.schedule {
            Some(cron) => TriggeredBy::Schedule {
                repository: name.to_string(),
                cron: cron.clone(),
            },
            None => TriggeredBy::Webhook {
                provider: e.provider.as_str().to_string(),
                repository: name.to_string(),
                delivery: key.id.clone(),
                event: e.name.clone(),
            },
        };
        let opts = RunOptions {
            triggered_by: Some(by),
            trigger: context.clone(),
            ..RunOptions::default()
        };
        let id = self.sched.create(prepared, &opts)?;
        self.sched.store.add_delivery_run(key, &id)?;
        Ok(id)
    }
}

/// Diagnostics as one line each, `file:line:column: message`, joined.
fn one_line(d: &crate::pipeline::Diagnostics) -> String {
    d.0.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}
