//! Forge integration: GitHub and GitLab webhooks start runs of the
//! pipelines a repository keeps in itself (pipeline-as-code), and each
//! run's state is reported back on the commit.
//!
//! - [`repo`]: a repository's configuration; [`source`]: where a server's
//!   repositories and their secrets come from (a local file and
//!   `capstan repo add|list|rm`, or `Repository` resources).
//! - [`verify`]: a delivery's signature (GitHub) or token (GitLab).
//! - [`event`]: a payload, normalized ([`github`], [`gitlab`]).
//! - [`filter`]: which events a repository and each pipeline take.
//! - [`fetch`]: the pipeline files at the event's commit, over smart HTTP.
//! - [`intake`]: a delivery from receipt to runs; [`queue`]: concurrency
//!   limits and cancel-in-progress; [`report`]: commit statuses.
//! - [`schedule`]: runs at [`cron`] times; `approve`: `/ok-to-test`.

mod approve;
pub mod cron;
pub mod event;
pub mod fetch;
pub mod filter;
pub mod github;
pub mod gitlab;
pub mod intake;
mod pipelines;
pub mod queue;
mod recover;
pub mod repo;
pub mod report;
pub mod schedule;
pub mod source;
pub mod verify;

use serde::{Deserialize, Serialize};

/// Which forge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Github,
    Gitlab,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Github => "github",
            Provider::Gitlab => "gitlab",
        }
    }
}

impl std::str::FromStr for Provider {
    type Err = String;
    fn from_str(s: &str) -> Result<Provider, String> {
        match s {
            "github" => Ok(Provider::Github),
            "gitlab" => Ok(Provider::Gitlab),
            other => Err(format!("unknown provider `{other}` (github or gitlab)")),
        }
    }
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
