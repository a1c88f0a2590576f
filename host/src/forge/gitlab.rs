//! GitLab's payloads (`X-Gitlab-Event`): `Push Hook`, `Tag Push Hook` and
//! `Merge Request Hook` (open, reopen, and update with new commits).

use serde_json::Value;

use super::Provider;
use super::event::{Fields, ForgeEvent, Parsed, is_zero, split_ref};
use super::repo::EventKind;

/// Normalize a payload of event `event` (the `X-Gitlab-Event` header).
pub fn parse(event: &str, body: &Value) -> Result<Parsed, String> {
    let f = Fields(body);
    match event {
        "Push Hook" | "Tag Push Hook" => push(&f),
        "Merge Request Hook" => merge_request(&f),
        other => Ok(Parsed::Ignored(format!(
            "event `{other}` starts no run (Push Hook, Tag Push Hook and Merge Request Hook do)"
        ))),
    }
}

fn push(f: &Fields<'_>) -> Result<Parsed, String> {
    let git_ref = f.str("ref")?;
    let after = f.str("after")?;
    let checkout = f.opt_str("checkout_sha");
    if is_zero(&after) || checkout.is_none() {
        return Ok(Parsed::Ignored(format!("{git_ref} was deleted")));
    }
    let revision = f.sha("checkout_sha")?;
    let (branch, tag) = split_ref(&git_ref);
    if let Some(n) = branch.as_ref().or(tag.as_ref()) {
        super::event::check_name("ref", n)?;
    }
    let kind = match (&branch, &tag) {
        (_, Some(_)) => EventKind::Tag,
        (Some(_), None) => EventKind::Push,
        _ => {
            return Ok(Parsed::Ignored(format!(
                "{git_ref} is neither a branch nor a tag"
            )));
        }
    };
    let web = f.opt_str("project.web_url").unwrap_or_default();
    Ok(Parsed::Event(Box::new(ForgeEvent {
        provider: Provider::Gitlab,
        kind,
        name: f.str("object_kind")?,
        url: format!("{web}/-/commit/{revision}"),
        revision,
        git_ref,
        branch,
        tag,
        base_branch: None,
        pr_number: None,
        author: f.opt_str("user_username").unwrap_or_default(),
        actor: f.opt_str("user_username").unwrap_or_default(),
        head_owner: None,
        fork: false,
        changed: f.changed_files(),
        files: Vec::new(),
        schedule: None,
        approved_by: None,
    })))
}

fn merge_request(f: &Fields<'_>) -> Result<Parsed, String> {
    let action = f.str("object_attributes.action")?;
    let runs = match action.as_str() {
        "open" | "reopen" => true,
        // `oldrev` is there only when the update pushed commits.
        "update" => f.get("object_attributes.oldrev").is_some(),
        _ => false,
    };
    if !runs {
        return Ok(Parsed::Ignored(format!(
            "merge request `{action}` changes no code (open, reopen and update with new commits run)"
        )));
    }
    let iid = f.u64("object_attributes.iid")?;
    let source_branch = f.str("object_attributes.source_branch")?;
    let target_branch = f.str("object_attributes.target_branch")?;
    super::event::check_name("object_attributes.source_branch", &source_branch)?;
    super::event::check_name("object_attributes.target_branch", &target_branch)?;
    let source = f.u64("object_attributes.source_project_id")?;
    let target = f.u64("object_attributes.target_project_id")?;
    Ok(Parsed::Event(Box::new(ForgeEvent {
        provider: Provider::Gitlab,
        kind: EventKind::PullRequest,
        name: format!("merge_request/{action}"),
        revision: f.sha("object_attributes.last_commit.id")?,
        git_ref: format!("refs/merge-requests/{iid}/head"),
        branch: Some(source_branch),
        tag: None,
        base_branch: Some(target_branch),
        pr_number: Some(iid),
        author: f.str("user.username")?,
        actor: f.str("user.username")?,
        // The namespace of the source project (a fork's owner).
        head_owner: f
            .opt_str("object_attributes.source.path_with_namespace")
            .and_then(|p| p.rsplit_once('/').map(|(ns, _)| ns.to_string())),
        url: f.opt_str("object_attributes.url").unwrap_or_default(),
        fork: source != target,
        changed: None,
        files: Vec::new(),
        schedule: None,
        approved_by: None,
    })))
}
