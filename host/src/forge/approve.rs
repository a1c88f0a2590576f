//! `/ok-to-test`: an untrusted pull request's run (the target branch's
//! pipelines, no secrets) is approved by someone who may stop it, and the
//! pull request's **own** pipeline files then run at **that run's commit**,
//! trusted. The approval names a run, so it names a commit: a push to the
//! pull request after it is not approved (its untrusted run is approved in
//! turn). Approving one run twice starts nothing more.

use std::sync::Arc;

use super::event::ForgeEvent;
use super::intake::{Answer, Forge};
use super::repo::EventKind;
use crate::store::{DeliveryKey, RunRecord, TriggeredBy};

impl Forge {
    /// Approve `run` as `user`.
    pub async fn ok_to_test(self: &Arc<Self>, run: &RunRecord, user: &str) -> Answer {
        let t = &run.spec.trigger;
        let get = |k: &str| t.get(k).cloned().unwrap_or_default();
        let from_webhook = matches!(run.spec.triggered_by, Some(TriggeredBy::Webhook { .. }));
        if !from_webhook || get("event") != "pull_request" || get("trusted") != "false" {
            return Answer::error(
                409,
                format!(
                    "run {} is not a run of an untrusted pull request: nothing to approve",
                    run.id
                ),
            );
        }
        let name = get("repository");
        let entry = match super::source::by_name(&*self.repos, &name) {
            Ok(Some(e)) => e,
            Ok(None) => {
                return Answer::error(404, format!("repository `{name}` is not configured here"));
            }
            Err(e) => return Answer::error(500, format!("{e:#}")),
        };
        let Ok(provider) = get("provider").parse::<super::Provider>() else {
            return Answer::error(409, format!("run {} names no forge", run.id));
        };
        let key = DeliveryKey {
            provider: provider.as_str().to_string(),
            repository: name.clone(),
            id: format!("ok-to-test/{}", run.id),
        };
        let label = format!("ok-to-test by {user}");
        if let Err(answer) = self.begin(&key, &label) {
            return answer;
        }
        let opt = |v: String| (!v.is_empty()).then_some(v);
        let event = ForgeEvent {
            provider,
            kind: EventKind::PullRequest,
            name: label.clone(),
            revision: get("revision"),
            git_ref: get("ref"),
            branch: opt(get("branch")),
            tag: None,
            base_branch: opt(get("base-branch")),
            pr_number: get("pr-number").parse().ok(),
            author: get("author"),
            actor: user.to_string(),
            head_owner: None,
            url: get("url"),
            fork: true,
            changed: None,
            files: Vec::new(),
            schedule: None,
            approved_by: Some(user.to_string()),
        };
        let answer = self.start_runs(&entry, &key, &event).await;
        let outcome = answer.text(&["outcome", "reason", "error"]);
        tracing::info!(run = %run.id, user, "ok-to-test: {outcome}");
        self.finish(&key, &label, &answer, &outcome);
        answer
    }
}
