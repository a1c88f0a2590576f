//! Commit statuses: each run's state on its commit, as the forge shows it
//! beside the pull request or branch.
//!
//! | run          | GitHub (`/repos/P/statuses/SHA`) | GitLab (`/projects/P/statuses/SHA`) |
//! |--------------|---------|----------|
//! | queued       | pending | pending  |
//! | running      | pending | running  |
//! | succeeded    | success | success  |
//! | failed       | failure | failed   |
//! | error        | error   | failed   |
//! | cancelled    | error   | canceled |
//!
//! The token is used here, host-side only. A report that fails is retried
//! with backoff and every attempt is recorded (`reports`); it never fails
//! the run. One run's reports go out in order, from one task.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::Provider;
use crate::store::RunStore;

/// A run's state, as reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Pending,
    Running,
    Success,
    Failure,
    Error,
    Canceled,
}

impl State {
    fn wire(self, provider: Provider) -> &'static str {
        use State::*;
        match (provider, self) {
            (_, Pending) => "pending",
            (Provider::Github, Running) => "pending",
            (Provider::Gitlab, Running) => "running",
            (_, Success) => "success",
            (Provider::Github, Failure) => "failure",
            (Provider::Github, Error | Canceled) => "error",
            (Provider::Gitlab, Failure | Error) => "failed",
            (Provider::Gitlab, Canceled) => "canceled",
        }
    }

    /// The state a run's final status reports.
    pub fn of(status: crate::store::RunStatus) -> State {
        use crate::store::RunStatus as R;
        match status {
            R::Succeeded => State::Success,
            R::Failed => State::Failure,
            R::Cancelled => State::Canceled,
            R::Running => State::Running,
            R::Queued => State::Pending,
            _ => State::Error,
        }
    }
}

/// Where a run's statuses go.
#[derive(Clone)]
pub struct Target {
    pub provider: Provider,
    /// API base URL.
    pub api: String,
    pub project: String,
    pub sha: String,
    /// GitHub's `context`, GitLab's `name`: `capstan/PIPELINE`.
    pub context: String,
    /// The branch or tag (GitLab's `ref`), if any.
    pub git_ref: Option<String>,
    pub token: Arc<secrecy::SecretBox<[u8]>>,
}

/// How reports are retried.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub attempts: u32,
    /// The first wait; each next one doubles.
    pub backoff: Duration,
    pub timeout: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 5,
            backoff: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
        }
    }
}

/// GitHub's description limit is 140 characters.
fn short(s: &str) -> String {
    let one_line = s.lines().next().unwrap_or("");
    one_line.chars().take(140).collect()
}

/// The request for one status: URL, headers, body.
fn request(
    t: &Target,
    state: State,
    description: &str,
    target_url: &str,
) -> (String, Vec<(&'static str, String)>, serde_json::Value) {
    use secrecy::ExposeSecret as _;
    let token = String::from_utf8_lossy(t.token.expose_secret())
        .trim()
        .to_string();
    match t.provider {
        Provider::Github => (
            format!("{}/repos/{}/statuses/{}", t.api, t.project, t.sha),
            vec![
                ("authorization", format!("Bearer {token}")),
                ("accept", "application/vnd.github+json".into()),
                ("x-github-api-version", "2022-11-28".into()),
            ],
            serde_json::json!({
                "state": state.wire(t.provider),
                "target_url": target_url,
                "description": short(description),
                "context": t.context,
            }),
        ),
        Provider::Gitlab => {
            let project: String = form_urlencoded::byte_serialize(t.project.as_bytes()).collect();
            let mut body = serde_json::json!({
                "state": state.wire(t.provider),
                "target_url": target_url,
                "description": short(description),
                "name": t.context,
            });
            if let Some(r) = &t.git_ref {
                body["ref"] = r.clone().into();
            }
            (
                format!("{}/projects/{project}/statuses/{}", t.api, t.sha),
                vec![("private-token", token)],
                body,
            )
        }
    }
}

/// GitLab refuses a status its commit status cannot move to from the one
/// it has (`running` again, `pending` after `running`: "Cannot transition
/// status via :run from :running"); that happens when an earlier attempt
/// did arrive, or a resumed run says `pending` again. Retrying cannot
/// change it, and the next state (the run's end) is taken.
fn settled(provider: Provider, status: u16, body: &str) -> bool {
    provider == Provider::Gitlab && status == 400 && body.contains("Cannot transition status")
}

/// Report one state, retrying; every attempt is recorded under `run_id`
/// (or the delivery's label for reports no run has).
pub async fn report(
    store: &RunStore,
    retry: Retry,
    t: &Target,
    run_id: &str,
    state: State,
    description: &str,
    target_url: &str,
) -> bool {
    let (url, headers, body) = request(t, state, description, target_url);
    let headers: Vec<(&str, String)> = headers.into_iter().collect();
    let wire = state.wire(t.provider);
    let mut wait = retry.backoff;
    for attempt in 1..=retry.attempts.max(1) {
        let r = crate::caps::http::host_json_request("POST", &url, &headers, &body, retry.timeout)
            .await;
        let (ok, detail) = match r {
            Ok((s, _)) if (200..300).contains(&s) => (true, format!("HTTP {s}")),
            Ok((s, b)) if settled(t.provider, s, &b) => (
                true,
                format!(
                    "HTTP {s}: {} (GitLab keeps the state it has; not retried)",
                    short(&b)
                ),
            ),
            Ok((s, b)) => (false, format!("HTTP {s}: {}", short(&b))),
            Err(e) => (false, e),
        };
        let detail = crate::escape::for_terminal(&detail).into_owned();
        if let Err(e) = store.record_report(run_id, wire, attempt, ok, &detail) {
            tracing::warn!(run = run_id, "recording a status report: {e}");
        }
        if ok {
            return true;
        }
        tracing::warn!(
            run = run_id,
            state = wire,
            attempt,
            "commit status not reported: {detail}"
        );
        if attempt < retry.attempts {
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(60));
        }
    }
    false
}

/// A run's reporter: states sent here go out in order.
#[derive(Clone)]
pub struct Reporter {
    tx: mpsc::UnboundedSender<(State, String)>,
}

impl Reporter {
    /// Start the task reporting `run_id`'s states to `target`.
    pub fn start(
        store: Arc<RunStore>,
        retry: Retry,
        target: Target,
        run_id: String,
        url: String,
    ) -> Reporter {
        let (tx, mut rx) = mpsc::unbounded_channel::<(State, String)>();
        tokio::spawn(async move {
            while let Some((state, description)) = rx.recv().await {
                report(&store, retry, &target, &run_id, state, &description, &url).await;
            }
        });
        Reporter { tx }
    }

    pub fn send(&self, state: State, description: impl Into<String>) {
        let _ = self.tx.send((state, description.into()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(provider: Provider) -> Target {
        Target {
            provider,
            api: "https://forge.example/api/v4".into(),
            project: "group/sub/app".into(),
            sha: "a".repeat(40),
            context: "capstan/ci".into(),
            git_ref: Some("main".into()),
            token: Arc::new(secrecy::SecretBox::new(Box::from(&b"tok"[..]))),
        }
    }

    #[test]
    fn gitlab_transitions_it_refuses_are_not_retried() {
        // As GitLab answers (quoted in jenkinsci/gitlab-plugin#885 and
        // ovh/cds#4042).
        let enqueue = r#"{"message":"Cannot transition status via :enqueue from :pending (Reason(s): Status cannot transition via \"enqueue\")"}"#;
        let run = r#"{"message":"Cannot transition status via :run from :running (Reason(s): Status cannot transition via \"run\")"}"#;
        assert!(settled(Provider::Gitlab, 400, enqueue));
        assert!(settled(Provider::Gitlab, 400, run));
        assert!(!settled(
            Provider::Gitlab,
            400,
            r#"{"message":"ref is missing"}"#
        ));
        assert!(!settled(Provider::Github, 400, run));
        assert!(!settled(Provider::Gitlab, 500, run));
    }

    #[test]
    fn requests_as_the_forges_document_them() {
        let (url, headers, body) = request(
            &target(Provider::Gitlab),
            State::Running,
            "running",
            "http://x/r",
        );
        assert_eq!(
            url,
            format!(
                "https://forge.example/api/v4/projects/group%2Fsub%2Fapp/statuses/{}",
                "a".repeat(40)
            )
        );
        assert_eq!(headers, vec![("private-token", "tok".to_string())]);
        assert_eq!(body["state"], "running");
        assert_eq!(body["name"], "capstan/ci");
        assert_eq!(body["ref"], "main");
        let (url, headers, body) = request(
            &target(Provider::Github),
            State::Canceled,
            &"x".repeat(300),
            "http://x/r",
        );
        assert!(url.ends_with(&format!("/repos/group/sub/app/statuses/{}", "a".repeat(40))));
        assert!(headers.contains(&("authorization", "Bearer tok".to_string())));
        assert_eq!(body["state"], "error");
        assert_eq!(body["description"].as_str().unwrap().len(), 140);
        assert_eq!(body["context"], "capstan/ci");
    }
}
