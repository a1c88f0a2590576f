//! GitHub's payloads (`X-GitHub-Event`): `push` (branches and tags),
//! `pull_request` (opened, synchronize, reopened) and `ping`.

use serde_json::Value;

use super::Provider;
use super::event::{Fields, ForgeEvent, Parsed, is_zero, split_ref};
use super::repo::EventKind;

/// Normalize a payload of event `event`.
pub fn parse(event: &str, body: &Value) -> Result<Parsed, String> {
    let f = Fields(body);
    match event {
        "ping" => Ok(Parsed::Ignored("ping: the webhook reaches Capstan".into())),
        "push" => push(&f),
        "pull_request" => pull_request(&f),
        other => Ok(Parsed::Ignored(format!(
            "event `{other}` starts no run (push and pull_request do; a tag arrives as a push)"
        ))),
    }
}

fn push(f: &Fields<'_>) -> Result<Parsed, String> {
    let git_ref = f.str("ref")?;
    let after = f.str("after")?;
    if f.bool("deleted") || is_zero(&after) {
        return Ok(Parsed::Ignored(format!("{git_ref} was deleted")));
    }
    let revision = f.sha("after")?;
    let (branch, tag) = split_ref(&git_ref);
    if let Some(n) = branch.as_ref().or(tag.as_ref()) {
        super::event::check_name("ref", n)?;
    }
    let kind = if tag.is_some() {
        EventKind::Tag
    } else if branch.is_some() {
        EventKind::Push
    } else {
        return Ok(Parsed::Ignored(format!(
            "{git_ref} is neither a branch nor a tag"
        )));
    };
    let author = f
        .opt_str("sender.login")
        .or_else(|| f.opt_str("pusher.name"))
        .unwrap_or_default();
    let url = f
        .opt_str("head_commit.url")
        .or_else(|| f.opt_str("compare"))
        .unwrap_or_default();
    Ok(Parsed::Event(Box::new(ForgeEvent {
        provider: Provider::Github,
        kind,
        name: "push".into(),
        revision,
        git_ref,
        branch,
        tag,
        base_branch: None,
        pr_number: None,
        actor: author.clone(),
        author,
        head_owner: None,
        url,
        fork: false,
        changed: f.changed_files(),
        files: Vec::new(),
        schedule: None,
        approved_by: None,
    })))
}

fn pull_request(f: &Fields<'_>) -> Result<Parsed, String> {
    let action = f.str("action")?;
    if !matches!(action.as_str(), "opened" | "synchronize" | "reopened") {
        return Ok(Parsed::Ignored(format!(
            "pull_request `{action}` changes no code (opened, synchronize and reopened run)"
        )));
    }
    let number = f.u64("number")?;
    let (head_ref, base_ref) = (
        f.str("pull_request.head.ref")?,
        f.str("pull_request.base.ref")?,
    );
    super::event::check_name("pull_request.head.ref", &head_ref)?;
    super::event::check_name("pull_request.base.ref", &base_ref)?;
    let base_repo = f.str("pull_request.base.repo.full_name")?;
    // A deleted fork has `head.repo: null`: from elsewhere all the same.
    let head_repo = f.opt_str("pull_request.head.repo.full_name");
    Ok(Parsed::Event(Box::new(ForgeEvent {
        provider: Provider::Github,
        kind: EventKind::PullRequest,
        name: format!("pull_request/{action}"),
        revision: f.sha("pull_request.head.sha")?,
        git_ref: format!("refs/pull/{number}/head"),
        branch: Some(head_ref),
        tag: None,
        base_branch: Some(base_ref),
        pr_number: Some(number),
        author: f.str("pull_request.user.login")?,
        actor: f.opt_str("sender.login").unwrap_or_default(),
        head_owner: f.opt_str("pull_request.head.repo.owner.login"),
        url: f.opt_str("pull_request.html_url").unwrap_or_default(),
        fork: head_repo.is_none_or(|h| !h.eq_ignore_ascii_case(&base_repo)),
        changed: None,
        files: Vec::new(),
        schedule: None,
        approved_by: None,
    })))
}
