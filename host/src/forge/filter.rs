//! Which events start runs: first the repository's filters (events,
//! branches, tags, paths), then each pipeline file's own, written as
//! Pipelines-as-Code writes them on a PipelineRun or Pipeline:
//!
//! ```yaml
//! metadata:
//!   annotations:
//!     pipelinesascode.tekton.dev/on-event: "[pull_request, push]"
//!     pipelinesascode.tekton.dev/on-target-branch: "[main, release-*]"
//! ```
//!
//! `on-target-branch` matches a push's branch or a pull request's target
//! branch; a tag push matches `refs/tags/T` (PaC's spelling), and
//! `on-event` may also say `tag`. A file without them runs on every event
//! the repository takes.

use glob::{MatchOptions, Pattern};

use super::event::ForgeEvent;
use super::repo::{EventKind, RepositorySpec};

const ON_EVENT: &str = "pipelinesascode.tekton.dev/on-event";
const ON_TARGET_BRANCH: &str = "pipelinesascode.tekton.dev/on-target-branch";

/// `*` does not cross `/`; `**` does. The one matcher of the forge
/// (repository filters, pipeline files, schedules).
pub(super) fn matches(pattern: &str, text: &str) -> bool {
    let opts = MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: false,
    };
    // `dir/**` means everything under dir (as GitHub's `paths` reads it);
    // the glob crate wants `dir/**/*` for that.
    let pattern = match pattern.strip_suffix("**") {
        Some(dir) if dir.is_empty() || dir.ends_with('/') => format!("{pattern}/*"),
        _ => pattern.to_string(),
    };
    Pattern::new(&pattern).is_ok_and(|p| p.matches_with(text, opts))
}

fn any(patterns: &[String], text: &str) -> bool {
    patterns.iter().any(|p| matches(p, text))
}

/// Why the repository does not take `e`, if it does not.
pub fn repository_refuses(r: &RepositorySpec, e: &ForgeEvent) -> Option<String> {
    if e.kind == EventKind::Schedule {
        return None;
    }
    if !r.events.contains(&e.kind) {
        let took: Vec<_> = r.events.iter().map(|k| k.as_str()).collect();
        return Some(format!(
            "the repository takes {} events, not {}",
            took.join(", "),
            e.kind.as_str()
        ));
    }
    if let Some(tag) = &e.tag
        && !r.tags.is_empty()
        && !any(&r.tags, tag)
    {
        return Some(format!("tag `{tag}` matches none of tags {:?}", r.tags));
    }
    if let Some(branch) = e.target_branch()
        && !r.branches.is_empty()
        && !any(&r.branches, branch)
    {
        return Some(format!(
            "branch `{branch}` matches none of branches {:?}",
            r.branches
        ));
    }
    if let Some(files) = &e.changed
        && !r.paths.is_empty()
        && !files.is_empty()
        && !files.iter().any(|f| any(&r.paths, f))
    {
        return Some(format!(
            "none of the {} changed files matches paths {:?}",
            files.len(),
            r.paths
        ));
    }
    None
}

/// `"[a, b]"`, `"a, b"` or `"a"` as a list.
fn list(v: &str) -> Vec<String> {
    v.trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .split(',')
        .map(|s| s.trim().trim_matches(|c| c == '"' || c == '\'').to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// The trigger annotations of a pipeline file (of any of its documents).
pub fn annotations(text: &str) -> (Option<Vec<String>>, Option<Vec<String>>) {
    let (mut on_event, mut on_branch) = (None, None);
    for doc in serde_yaml::Deserializer::from_str(text) {
        let Ok(v) = <serde_yaml::Value as serde::Deserialize>::deserialize(doc) else {
            continue;
        };
        let Some(a) = v.get("metadata").and_then(|m| m.get("annotations")) else {
            continue;
        };
        if let Some(s) = a.get(ON_EVENT).and_then(|s| s.as_str()) {
            on_event = Some(list(s));
        }
        if let Some(s) = a.get(ON_TARGET_BRANCH).and_then(|s| s.as_str()) {
            on_branch = Some(list(s));
        }
    }
    (on_event, on_branch)
}

/// Why a pipeline file with `text` does not run for `e`, if it does not.
pub fn pipeline_refuses(text: &str, e: &ForgeEvent) -> Option<String> {
    let (on_event, on_branch) = annotations(text);
    if let Some(events) = on_event {
        let name = e.kind.as_str();
        let ok = events
            .iter()
            .any(|x| x == name || (x == "push" && e.kind == EventKind::Tag));
        if !ok {
            return Some(format!("{ON_EVENT} is {events:?}, not {name}"));
        }
    }
    if let Some(branches) = on_branch {
        let target = match (&e.tag, e.target_branch()) {
            (Some(t), _) => format!("refs/tags/{t}"),
            (None, Some(b)) => b.to_string(),
            (None, None) => String::new(),
        };
        let ok = branches.iter().any(|p| {
            let p = p.strip_prefix("refs/heads/").unwrap_or(p);
            matches(p, &target)
        });
        if !ok {
            return Some(format!(
                "{ON_TARGET_BRANCH} is {branches:?}, not `{target}`"
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forge::Provider;

    fn event(
        kind: EventKind,
        branch: Option<&str>,
        base: Option<&str>,
        tag: Option<&str>,
    ) -> ForgeEvent {
        ForgeEvent {
            provider: Provider::Github,
            kind,
            name: "push".into(),
            revision: "a".repeat(40),
            git_ref: "refs/heads/x".into(),
            branch: branch.map(Into::into),
            tag: tag.map(Into::into),
            base_branch: base.map(Into::into),
            pr_number: None,
            author: "me".into(),
            actor: "me".into(),
            head_owner: None,
            url: String::new(),
            fork: false,
            changed: Some(vec!["docs/readme.md".into()]),
            files: Vec::new(),
            schedule: None,
            approved_by: None,
        }
    }

    fn repo(yaml: &str) -> RepositorySpec {
        serde_yaml::from_str(&format!(
            "provider: github\nurl: https://github.com/a/b.git\nwebhookSecret: h\n{yaml}"
        ))
        .unwrap()
    }

    #[test]
    fn repository_filters() {
        let r = repo("branches: [main, 'release/*']\ntags: ['v*']\npaths: ['src/**']\n");
        let push_main = event(EventKind::Push, Some("main"), None, None);
        assert!(
            repository_refuses(&r, &push_main)
                .unwrap()
                .contains("paths")
        );
        let mut src = push_main.clone();
        src.changed = Some(vec!["src/a/b.rs".into()]);
        assert_eq!(repository_refuses(&r, &src), None);
        let mut rel = src.clone();
        rel.branch = Some("release/1/x".into());
        assert!(repository_refuses(&r, &rel).unwrap().contains("branch"));
        let mut pr = event(EventKind::PullRequest, Some("feature"), Some("main"), None);
        pr.changed = None; // pull request payloads list no files
        assert_eq!(repository_refuses(&r, &pr), None);
        let tag = event(EventKind::Tag, None, None, Some("x1"));
        assert!(repository_refuses(&r, &tag).unwrap().contains("tag `x1`"));
        let only_push = repo("events: [push]\n");
        assert!(repository_refuses(&only_push, &pr).is_some());
    }

    #[test]
    fn pipelines_as_code_annotations() {
        let file = "apiVersion: tekton.dev/v1\nkind: PipelineRun\nmetadata:\n  annotations:\n    \
                    pipelinesascode.tekton.dev/on-event: \"[pull_request]\"\n    \
                    pipelinesascode.tekton.dev/on-target-branch: \"[main]\"\n";
        let pr = event(EventKind::PullRequest, Some("f"), Some("main"), None);
        assert_eq!(pipeline_refuses(file, &pr), None);
        let push = event(EventKind::Push, Some("main"), None, None);
        assert!(pipeline_refuses(file, &push).unwrap().contains("on-event"));
        let other = event(EventKind::PullRequest, Some("f"), Some("dev"), None);
        assert!(
            pipeline_refuses(file, &other)
                .unwrap()
                .contains("on-target-branch")
        );
        let tags = "metadata:\n  annotations:\n    pipelinesascode.tekton.dev/on-event: push\n    \
                    pipelinesascode.tekton.dev/on-target-branch: refs/tags/*\n";
        let tag = event(EventKind::Tag, None, None, Some("v1"));
        assert_eq!(pipeline_refuses(tags, &tag), None);
        assert!(pipeline_refuses(tags, &push).is_some());
        assert_eq!(pipeline_refuses("kind: Pipeline\n", &push), None);
    }
}
