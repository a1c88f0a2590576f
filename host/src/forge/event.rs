//! A forge event, normalized: what to build (`revision`), where it came
//! from (ref, branch, tag, pull request), who caused it, and whether its
//! pipeline files may be trusted.

use std::collections::BTreeMap;

use serde_json::Value;

use super::Provider;
use super::repo::EventKind;

/// What a payload asks for.
#[derive(Debug)]
pub enum Parsed {
    /// An event that may start runs.
    Event(Box<ForgeEvent>),
    /// A delivery that never starts a run (a deletion, a ping, a label
    /// change), and why.
    Ignored(String),
}

/// An event that may start runs.
#[derive(Debug, Clone)]
pub struct ForgeEvent {
    pub provider: Provider,
    pub kind: EventKind,
    /// The forge's event name (and action): `push`, `pull_request/opened`,
    /// `Merge Request Hook/update`.
    pub name: String,
    /// The commit to build.
    pub revision: String,
    /// The ref the commit is fetched by: `refs/heads/B`, `refs/tags/T`, or
    /// the pull request's head ref on the forge.
    pub git_ref: String,
    /// The branch pushed, or the pull request's source branch.
    pub branch: Option<String>,
    pub tag: Option<String>,
    /// A pull request's target branch.
    pub base_branch: Option<String>,
    pub pr_number: Option<u64>,
    /// Who wrote the change (the pull request's author; GitLab names only
    /// the actor, so there it is the actor).
    pub author: String,
    /// Who caused this event (GitHub's `sender`, GitLab's `user`): a push
    /// to a fork, a rebase clicked by a maintainer.
    pub actor: String,
    /// The owner of the repository the change comes from (a fork's).
    pub head_owner: Option<String>,
    /// A web page for the commit or pull request.
    pub url: String,
    /// A pull request from another repository (a fork).
    pub fork: bool,
    /// Files the payload says changed (pushes only; GitHub caps the list).
    pub changed: Option<Vec<String>>,
    /// Which pipeline files it runs (globs; a schedule's); empty: all.
    pub files: Vec<String>,
    /// The cron expression, when a schedule fired.
    pub schedule: Option<String>,
    /// Who approved an untrusted pull request's own pipelines (`POST
    /// /v1/runs/{id}/ok-to-test`); never from a payload.
    pub approved_by: Option<String>,
}

impl ForgeEvent {
    /// Whether the event's own pipeline files may run with what the
    /// repository grants: a change from the repository itself (its author
    /// could push there), or from a fork whose owner, author and the one
    /// who caused this event are all in `trusted`.
    pub fn trusted(&self, trusted: &[String]) -> bool {
        if !self.fork || self.approved_by.is_some() {
            return true;
        }
        let t = |u: &str| trusted.iter().any(|x| x == u);
        t(&self.author) && t(&self.actor) && self.head_owner.as_deref().is_some_and(t)
    }

    /// The branch the trigger filters see: a push's branch, a pull
    /// request's target branch.
    pub fn target_branch(&self) -> Option<&str> {
        match self.kind {
            EventKind::PullRequest => self.base_branch.as_deref(),
            _ => self.branch.as_deref(),
        }
    }

    /// `$(context.trigger.*)`: every key, empty where it does not apply.
    pub fn context(
        &self,
        delivery: &str,
        repository: &str,
        trusted: bool,
    ) -> BTreeMap<String, String> {
        let o = |v: &Option<String>| v.clone().unwrap_or_default();
        BTreeMap::from([
            ("event".into(), self.kind.as_str().to_string()),
            ("revision".into(), self.revision.clone()),
            ("ref".into(), self.git_ref.clone()),
            ("branch".into(), o(&self.branch)),
            ("tag".into(), o(&self.tag)),
            ("base-branch".into(), o(&self.base_branch)),
            ("url".into(), self.url.clone()),
            ("repository".into(), repository.to_string()),
            ("author".into(), self.author.clone()),
            (
                "pr-number".into(),
                self.pr_number.map(|n| n.to_string()).unwrap_or_default(),
            ),
            ("delivery".into(), delivery.to_string()),
            ("provider".into(), self.provider.as_str().to_string()),
            ("trusted".into(), trusted.to_string()),
        ])
    }
}

/// The repository a payload names, read before the payload is trusted:
/// only that field is kept (nothing else of a large body is allocated).
pub fn probe_project(provider: Provider, body: &[u8]) -> Result<String, String> {
    #[derive(serde::Deserialize)]
    struct Name {
        #[serde(default)]
        full_name: Option<String>,
        #[serde(default)]
        path_with_namespace: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(default)]
        repository: Option<Name>,
        #[serde(default)]
        project: Option<Name>,
    }
    let p: Probe = serde_json::from_slice(body)
        .map_err(|e| format!("the payload is not JSON naming a repository: {e}"))?;
    let name = match provider {
        Provider::Github => p.repository.and_then(|r| r.full_name),
        Provider::Gitlab => p.project.and_then(|r| r.path_with_namespace),
    };
    name.ok_or_else(|| match provider {
        Provider::Github => "payload field `repository.full_name` is missing".to_string(),
        Provider::Gitlab => "payload field `project.path_with_namespace` is missing".to_string(),
    })
}

/// A payload field by dotted path, for messages that name it.
pub struct Fields<'a>(pub &'a Value);

impl Fields<'_> {
    pub fn get(&self, path: &str) -> Option<&Value> {
        path.split('.').try_fold(self.0, |v, k| v.get(k))
    }
    /// A string field that must be there.
    pub fn str(&self, path: &str) -> Result<String, String> {
        self.get(path)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| format!("payload field `{path}` is missing or not a string"))
    }
    pub fn opt_str(&self, path: &str) -> Option<String> {
        self.get(path).and_then(Value::as_str).map(str::to_string)
    }
    pub fn u64(&self, path: &str) -> Result<u64, String> {
        self.get(path)
            .and_then(Value::as_u64)
            .ok_or_else(|| format!("payload field `{path}` is missing or not a number"))
    }
    pub fn bool(&self, path: &str) -> bool {
        self.get(path).and_then(Value::as_bool).unwrap_or(false)
    }
    /// A commit id: 40 (SHA-1) or 64 (SHA-256) hex digits.
    pub fn sha(&self, path: &str) -> Result<String, String> {
        let s = self.str(path)?;
        let hex = s.bytes().all(|b| b.is_ascii_hexdigit());
        if hex && (s.len() == 40 || s.len() == 64) {
            Ok(s.to_ascii_lowercase())
        } else {
            Err(format!("payload field `{path}` is not a commit id"))
        }
    }
    /// Paths added, modified and removed across `commits[]`.
    pub fn changed_files(&self) -> Option<Vec<String>> {
        let commits = self.get("commits")?.as_array()?;
        // Both forges list at most 20 commits: past that, the files are
        // not known.
        let total = self
            .get("total_commits_count")
            .or_else(|| self.get("size"))
            .and_then(Value::as_u64)
            .unwrap_or(commits.len() as u64);
        if commits.len() >= 20 || total > commits.len() as u64 {
            return None;
        }
        let mut out: Vec<String> = Vec::new();
        for c in commits {
            for k in ["added", "modified", "removed"] {
                for f in c.get(k).and_then(Value::as_array).into_iter().flatten() {
                    if let Some(f) = f.as_str() {
                        out.push(f.to_string());
                    }
                }
            }
        }
        out.sort();
        out.dedup();
        Some(out)
    }
}

/// The all-zero id a forge sends for "no commit" (a deletion).
pub fn is_zero(sha: &str) -> bool {
    !sha.is_empty() && sha.bytes().all(|b| b == b'0')
}

/// A branch or tag name git itself would accept (`git check-ref-format`'s
/// rules, minus the rare ones): what reaches git's command line and a
/// pipeline's params is never an option, a refspec or a control character.
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    let bad = name.is_empty()
        || name.len() > 255
        || name.starts_with('-')
        || name.starts_with('/')
        || name.ends_with('/')
        || name.ends_with('.')
        || name.ends_with(".lock")
        || name.contains("..")
        || name.contains("//")
        || name.contains("@{")
        || name.split('/').any(|c| c.starts_with('.'))
        || name
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || "~^:?*[\\".contains(c));
    if bad {
        Err(format!(
            "{what} `{}` is not a valid git ref name",
            name.escape_debug()
        ))
    } else {
        Ok(())
    }
}

/// A ref's branch or tag.
pub fn split_ref(git_ref: &str) -> (Option<String>, Option<String>) {
    if let Some(b) = git_ref.strip_prefix("refs/heads/") {
        (Some(b.to_string()), None)
    } else if let Some(t) = git_ref.strip_prefix("refs/tags/") {
        (None, Some(t.to_string()))
    } else {
        (None, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_reads_only_the_repository_name() {
        let gl = br#"{"object_kind":"push","repository":{"name":"x","url":"u"},"project":{"path_with_namespace":"g/s/p"}}"#;
        assert_eq!(probe_project(Provider::Gitlab, gl).unwrap(), "g/s/p");
        let gh = br#"{"zen":"z","repository":{"full_name":"o/r","owner":{"login":"o"}}}"#;
        assert_eq!(probe_project(Provider::Github, gh).unwrap(), "o/r");
        assert!(
            probe_project(Provider::Github, gl)
                .unwrap_err()
                .contains("repository.full_name")
        );
        assert!(probe_project(Provider::Gitlab, b"[1,2]").is_err());
    }

    #[test]
    fn a_fork_needs_its_owner_author_and_actor_trusted() {
        let mut e = ForgeEvent {
            provider: Provider::Github,
            kind: EventKind::PullRequest,
            name: "pull_request/synchronize".into(),
            revision: "a".repeat(40),
            git_ref: "refs/pull/1/head".into(),
            branch: Some("f".into()),
            tag: None,
            base_branch: Some("main".into()),
            pr_number: Some(1),
            author: "ann".into(),
            actor: "ann".into(),
            head_owner: Some("ann".into()),
            url: String::new(),
            fork: true,
            changed: None,
            files: vec![],
            schedule: None,
            approved_by: None,
        };
        let list = vec!["ann".to_string()];
        assert!(e.trusted(&list));
        // Someone else pushed to ann's fork, or clicked rebase on it.
        e.actor = "mallory".into();
        assert!(!e.trusted(&list));
        e.actor = "ann".into();
        e.head_owner = Some("mallory".into());
        assert!(!e.trusted(&list));
        e.fork = false;
        assert!(e.trusted(&[]));
    }

    #[test]
    fn ref_names_that_are_options_or_refspecs_are_refused() {
        for bad in [
            "-x", "a:b", "a b", "a..b", "a\u{1b}b", ".hidden", "a.lock", "a//b", "x@{1}",
        ] {
            assert!(check_name("ref", bad).is_err(), "{bad}");
        }
        for good in ["main", "release/1.2", "feature/x-y_z", "v1.0.0"] {
            check_name("ref", good).unwrap();
        }
    }
}
