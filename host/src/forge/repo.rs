//! The repositories a server takes events of. Locally they live in
//! `STATE/repositories.yaml` (`capstan repo add|list|rm` edit it; the
//! server reads it at each delivery, so a change needs no restart):
//!
//! ```yaml
//! repositories:
//!   shop-api:
//!     provider: github
//!     url: https://github.com/acme/shop-api.git
//!     webhookSecret: shop-api-hook     # secret names, never values
//!     token: shop-api-token
//! ```
//!
//! The spec is the one the `Repository` custom resource will carry.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};

use super::Provider;

/// Which events start runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A push of commits to a branch.
    Push,
    /// A pull request (GitHub) or merge request (GitLab) opened, reopened
    /// or given new commits.
    PullRequest,
    /// A tag pushed.
    Tag,
    /// A schedule of the repository fired (schedules run whatever
    /// `events` says; listing it there changes nothing).
    Schedule,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Push => "push",
            EventKind::PullRequest => "pull_request",
            EventKind::Tag => "tag",
            EventKind::Schedule => "schedule",
        }
    }
}

/// Concurrency of a repository's runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Concurrency {
    /// How many of the repository's runs execute at once; the rest wait in
    /// a FIFO queue (the seed platform's `executor-quota`).
    #[serde(default = "default_limit")]
    pub limit: u32,
    /// A new event on a branch or pull request cancels that pipeline's
    /// older runs of the same branch or pull request, queued or running.
    #[serde(default = "yes")]
    pub cancel_in_progress: bool,
}

fn default_limit() -> u32 {
    2
}
fn yes() -> bool {
    true
}

impl Default for Concurrency {
    fn default() -> Self {
        Concurrency {
            limit: default_limit(),
            cancel_in_progress: true,
        }
    }
}

/// A repository's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RepositorySpec {
    pub provider: Provider,
    /// The clone URL (http or https). Pipelines are read from here, never
    /// from a URL a payload names.
    pub url: String,
    /// The forge's name of the project (`owner/repo`, `group/sub/project`),
    /// as payloads carry it. Default: the URL's path without `.git`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// The forge's API (for commit statuses). Default:
    /// `https://api.github.com`, or the GitLab host's `/api/v4`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
    /// The secret holding the webhook secret (GitHub) or token (GitLab).
    pub webhook_secret: String,
    /// The secret holding the API token (reading the repository, reporting
    /// statuses). None: a public repository, and no statuses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Which events start runs.
    #[serde(default = "all_events")]
    pub events: Vec<EventKind>,
    /// Branch globs (`main`, `release/*`) a push or a pull request's
    /// target branch must match; empty: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub branches: Vec<String>,
    /// Tag globs (`v*`); empty: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Path globs (`src/**`): a push runs only if a changed file matches.
    /// Pull requests and pushes whose payload lists no files always run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// Where the pipelines are in the repository.
    #[serde(default = "default_pipelines")]
    pub pipelines: Vec<String>,
    /// Users whose pull requests from forks run their own pipeline files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted: Vec<String>,
    #[serde(default)]
    pub concurrency: Concurrency,
    /// Runs at fixed times, of the tip of a branch.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedules: Vec<Schedule>,
    /// Kubernetes mode: the ServiceAccount of the Repository's namespace
    /// that reads its secrets and that its runs act as (default
    /// `default`). Not used locally.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
}

/// A schedule: `cron` in `timeZone`, on the tip of `branch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Schedule {
    /// Unique within the repository (`nightly`).
    pub name: String,
    /// Five cron fields, or `@daily` and the like.
    pub cron: String,
    /// An IANA time zone (`Europe/Berlin`); default UTC.
    #[serde(default = "utc")]
    pub time_zone: String,
    /// The branch whose tip runs.
    #[serde(default = "main")]
    pub branch: String,
    /// Which pipeline files run (globs); empty: every file.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pipelines: Vec<String>,
    /// A time missed while the server was down still runs (once) if the
    /// server is back within this long of it; default 1h.
    #[serde(default = "one_hour")]
    pub starting_deadline: String,
}

fn utc() -> String {
    "UTC".into()
}
fn main() -> String {
    "main".into()
}
fn one_hour() -> String {
    "1h".into()
}

impl Schedule {
    pub fn deadline(&self) -> Result<std::time::Duration, String> {
        humantime::parse_duration(&self.starting_deadline)
            .map_err(|e| format!("startingDeadline `{}`: {e}", self.starting_deadline))
    }
}

fn all_events() -> Vec<EventKind> {
    vec![EventKind::Push, EventKind::PullRequest, EventKind::Tag]
}

fn default_pipelines() -> Vec<String> {
    vec![".capstan/*.yaml".to_string()]
}

impl RepositorySpec {
    /// The forge's project name: `project`, or the URL's path.
    pub fn project(&self) -> String {
        if let Some(p) = &self.project {
            return p.clone();
        }
        let path = self
            .url
            .split_once("://")
            .and_then(|(_, rest)| rest.split_once('/'))
            .map_or("", |(_, p)| p);
        path.trim_end_matches('/')
            .trim_end_matches(".git")
            .to_string()
    }

    /// Whether a payload of `provider` about `project` is this
    /// repository's. GitHub compares names without case, as GitHub does.
    pub fn is_for(&self, provider: Provider, project: &str) -> bool {
        self.provider == provider
            && match provider {
                Provider::Github => self.project().eq_ignore_ascii_case(project),
                Provider::Gitlab => self.project() == project,
            }
    }

    /// The API base URL, without a trailing slash.
    pub fn api(&self) -> String {
        if let Some(a) = &self.api_url {
            return a.trim_end_matches('/').to_string();
        }
        match self.provider {
            Provider::Github => "https://api.github.com".to_string(),
            Provider::Gitlab => {
                let (scheme, rest) = self.url.split_once("://").unwrap_or(("https", &self.url));
                let host = rest.split('/').next().unwrap_or("");
                format!("{scheme}://{host}/api/v4")
            }
        }
    }

    /// Everything wrong with it, each naming its field.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (field, url) in [("url", Some(&self.url)), ("apiUrl", self.api_url.as_ref())] {
            let Some(url) = url else { continue };
            match url.parse::<http::Uri>() {
                Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some() => {
                    if u.authority().is_some_and(|a| a.as_str().contains('@')) {
                        out.push(format!(
                            "{field}: `{url}` holds credentials; name a secret in `token` instead"
                        ));
                    }
                }
                _ => out.push(format!("{field}: `{url}` is not an http(s) URL")),
            }
        }
        // A token goes over TLS (plain http only to this machine).
        if self.token.is_some() {
            for (field, url) in [("url", Some(&self.url)), ("apiUrl", self.api_url.as_ref())] {
                let Some(url) = url else { continue };
                let host = url
                    .parse::<http::Uri>()
                    .ok()
                    .and_then(|u| u.host().map(str::to_string));
                let local = matches!(
                    host.as_deref(),
                    Some("127.0.0.1" | "localhost" | "[::1]" | "::1")
                );
                if url.starts_with("http://") && !local {
                    out.push(format!(
                        "{field}: `{url}` is plain http; a token is sent over https only"
                    ));
                }
            }
        }
        for (field, name) in [
            ("webhookSecret", Some(&self.webhook_secret)),
            ("token", self.token.as_ref()),
        ] {
            if let Some(n) = name
                && let Err(e) = crate::caps::secrets::check_name(n)
            {
                out.push(format!("{field}: {e}"));
            }
        }
        if self.project().is_empty() {
            out.push("project: empty (and the URL has no path)".into());
        }
        for (field, globs) in [
            ("branches", &self.branches),
            ("tags", &self.tags),
            ("paths", &self.paths),
            ("pipelines", &self.pipelines),
        ] {
            for g in globs {
                if let Err(e) = glob::Pattern::new(g) {
                    out.push(format!("{field}: `{g}`: {e}"));
                }
            }
        }
        for p in &self.pipelines {
            if p.starts_with('/') || p.split('/').any(|c| c == "..") {
                out.push(format!(
                    "pipelines: `{p}` must be a path inside the repository"
                ));
            }
        }
        if self.events.is_empty() {
            out.push("events: empty (nothing would start a run)".into());
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, s) in self.schedules.iter().enumerate() {
            let at = format!("schedules[{i}]");
            if !names.insert(&s.name) || check_repo_name(&s.name).is_err() {
                out.push(format!(
                    "{at}.name: `{}` must be a unique DNS label",
                    s.name
                ));
            }
            if let Err(e) = s.cron.parse::<super::cron::Cron>() {
                out.push(format!("{at}.cron: {e}"));
            }
            if let Err(e) = super::cron::zone(&s.time_zone) {
                out.push(format!("{at}.timeZone: {e}"));
            }
            if let Err(e) = super::event::check_name("branch", &s.branch) {
                out.push(format!("{at}.branch: {e}"));
            }
            if let Err(e) = s.deadline() {
                out.push(format!("{at}: {e}"));
            }
        }
        // A DNS subdomain: no `:` or `/` to name another user.
        if let Some(sa) = &self.service_account_name
            && crate::caps::secrets::check_name(sa).is_err()
        {
            out.push(format!(
                "serviceAccountName: `{sa}` is not a ServiceAccount name"
            ));
        }
        if !(1..=1000).contains(&self.concurrency.limit) {
            out.push("concurrency.limit: must be 1..=1000".into());
        }
        out
    }
}

/// A repository's name: a DNS label (as a Kubernetes object's).
pub fn check_repo_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "repository name `{name}`: lowercase letters, digits and `-`, at most 63"
        ))
    }
}

/// The local repositories file.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoFile {
    #[serde(default)]
    pub repositories: BTreeMap<String, RepositorySpec>,
}

impl RepoFile {
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join("repositories.yaml")
    }

    /// Read it (a missing file: no repositories). Errors name the file and
    /// the line.
    pub fn load(path: &Path) -> Result<RepoFile> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(RepoFile::default()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let file: RepoFile = serde_yaml::from_str(&text).map_err(|e| {
            let at = e
                .location()
                .map(|l| format!(":{}:{}", l.line(), l.column()))
                .unwrap_or_default();
            anyhow::anyhow!("{}{at}: {e}", path.display())
        })?;
        for (name, spec) in &file.repositories {
            check_repo_name(name).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            if spec.service_account_name.is_some() {
                bail!(
                    "{}: repository `{name}`: serviceAccountName is for Repository resources \
                     (Kubernetes mode); locally runs act as the server",
                    path.display()
                );
            }
            let problems = spec.problems();
            if !problems.is_empty() {
                bail!(
                    "{}: repository `{name}`: {}",
                    path.display(),
                    problems.join("; ")
                );
            }
        }
        Ok(file)
    }

    /// Write it atomically (a temp file renamed over it).
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_yaml::to_string(self)?;
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let tmp = tempfile::NamedTempFile::new_in(dir)?;
        std::fs::write(tmp.path(), text)?;
        tmp.persist(path)
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }

    /// The repository a payload of `provider` about `project` is for.
    pub fn find(&self, provider: Provider, project: &str) -> Option<(&String, &RepositorySpec)> {
        self.repositories
            .iter()
            .find(|(_, r)| r.is_for(provider, project))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(url: &str) -> RepositorySpec {
        serde_yaml::from_str(&format!(
            "provider: gitlab\nurl: {url}\nwebhookSecret: hook\n"
        ))
        .unwrap()
    }

    #[test]
    fn defaults_come_from_the_url() {
        let s = spec("https://gitlab.example/group/sub/app.git");
        assert_eq!(s.project(), "group/sub/app");
        assert_eq!(s.api(), "https://gitlab.example/api/v4");
        assert_eq!(s.concurrency.limit, 2);
        assert_eq!(s.pipelines, vec![".capstan/*.yaml"]);
        assert!(s.problems().is_empty(), "{:?}", s.problems());
    }

    #[test]
    fn bad_fields_are_named() {
        let mut s = spec("https://user:pw@gitlab.example/g/p.git");
        s.pipelines = vec!["../outside/*.yaml".into()];
        s.token = Some("bad name".into());
        s.service_account_name = Some("kube-system:admin".into());
        let p = s.problems().join("\n");
        assert!(p.contains("serviceAccountName: `kube-system:admin`"), "{p}");
        assert!(p.contains("url: `https://user:pw@"), "{p}");
        assert!(p.contains("pipelines: `../outside"), "{p}");
        assert!(p.contains("token:"), "{p}");
        assert!(check_repo_name("Team/App").is_err());
        let e = serde_yaml::from_str::<RepositorySpec>(
            "provider: gitlab\nurl: https://x/y\nwebhookSecret: h\nbranch: [main]\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown field `branch`"), "{e}");
    }
}
