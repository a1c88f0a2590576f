//! What started a run (`triggeredBy`), recorded with it.

use serde::{Deserialize, Serialize};

/// What started a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum TriggeredBy {
    /// `capstan run` (the local user).
    Cli { user: String },
    /// A PipelineRun object in Kubernetes.
    PipelineRun { namespace: String, name: String },
    /// A forge's webhook delivery.
    Webhook {
        provider: String,
        repository: String,
        delivery: String,
        event: String,
    },
    /// A schedule of a repository.
    Schedule { repository: String, cron: String },
    /// A re-run of an earlier run (`runs rerun`, the API).
    Rerun { run: String, user: String },
}

impl TriggeredBy {
    /// One line for people: `webhook github team/app push (delivery d-1)`.
    pub fn describe(&self) -> String {
        match self {
            TriggeredBy::Cli { user } => format!("cli ({user})"),
            TriggeredBy::PipelineRun { namespace, name } => {
                format!("PipelineRun {namespace}/{name}")
            }
            TriggeredBy::Webhook {
                provider,
                repository,
                delivery,
                event,
            } => format!("{provider} {event} of {repository} (delivery {delivery})"),
            TriggeredBy::Schedule { repository, cron } => {
                format!("schedule `{cron}` of {repository}")
            }
            TriggeredBy::Rerun { run, user } => format!("re-run of {run} by {user}"),
        }
    }
}
