//! The sign-in page, the approval inbox, and the forge repositories.

use std::sync::Arc;

use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::layout::{self, Nav, text};
use super::{Viewer, error_page, session};
use crate::api::{ApiError, ApiState, actions};

/// The sign-in form, with why the last attempt failed.
pub(super) fn login_form(problem: Option<&str>) -> Markup {
    let body = html! {
        h1 { "Sign in" }
        @if let Some(p) = problem { p.error role="alert" { (p) } }
        form.login method="post" action="/ui/login" {
            label for="token" { "API token" }
            input #token name="token" type="password" autocomplete="current-password" required autofocus;
            p.hint {
                "Locally, a token from " code { "capstan token add USER" } ". "
                "In Kubernetes, a bearer token the cluster accepts (" code { "kubectl create token NAME" } ")."
            }
            button type="submit" { "Sign in" }
        }
    };
    layout::page("Sign in", None, Nav::None, body)
}

/// The page of a one-time sign-in link: one button that posts its code.
pub(super) fn code_form(code: &str) -> Markup {
    let body = html! {
        h1 { "Sign in" }
        form.login method="post" action="/ui/login" {
            input type="hidden" name="code" value=(code);
            p { "This link signs you in once, as the user who started the server." }
            button #use-link type="submit" { "Sign in with this link" }
        }
    };
    layout::page("Sign in", None, Nav::None, body)
}

/// `GET /ui/approvals`: gates waiting for the signed-in person first, then
/// the others the person may see.
pub(super) async fn approvals(State(state): State<Arc<ApiState>>, v: Viewer) -> Response {
    inbox(&state, &v, None, StatusCode::OK).await
}

async fn inbox(
    state: &ApiState,
    v: &Viewer,
    problem: Option<(&str, &str, String)>,
    status: StatusCode,
) -> Response {
    let waits = match crate::api::visible_waits(state, &v.who).await {
        Ok(serde_json::Value::Array(w)) => w,
        Ok(_) => Vec::new(),
        Err(e) => return error_page(Some(v), e),
    };
    let mine = |w: &serde_json::Value| {
        let approvers: Vec<String> = crate::scheduler::approval::approvers(w);
        crate::scheduler::approval::may_decide(&approvers, &v.who.user, &v.who.groups)
    };
    let (for_me, others): (Vec<_>, Vec<_>) = waits.iter().partition(|w| mine(w));
    let body = html! {
        h1 { "Approvals" }
        @if let Some((run, task, why)) = &problem {
            p.error role="alert" #decision-error { "Your decision on " (task) " of run " (run) " was not taken: " (text(why)) }
        }
        h2 { "Waiting for you" }
        @if for_me.is_empty() { p.empty { "Nothing waits for you." } }
        @for w in &for_me { (gate(v, w, true)) }
        h2 { "Waiting for others" }
        @if others.is_empty() { p.empty { "Nothing else waits." } }
        @for w in &others { (gate(v, w, false)) }
    };
    (
        status,
        layout::page("Approvals", Some(v), Nav::Approvals, body),
    )
        .into_response()
}

fn gate(v: &Viewer, w: &serde_json::Value, mine: bool) -> Markup {
    let s = |k: &str| w[k].as_str().unwrap_or_default().to_string();
    let (run, task) = (s("run_id"), s("task"));
    let decisions = w["decisions"].as_array().cloned().unwrap_or_default();
    let approved = decisions
        .iter()
        .filter(|d| d["accepted"] == true && d["decision"] == "approve")
        .count();
    let required = w["required"].as_u64().unwrap_or(1);
    let approvers = crate::scheduler::approval::approvers(w);
    html! {
        article.gate data-run=(run) data-task=(task) {
            h3 { a href={ "/ui/runs/" (run) } { (run) } " · " (task) }
            @if let Some(m) = w["message"].as_str() { p.message { (text(m)) } }
            dl.summary {
                dt { "Approvals" } dd { (approved) " of " (required) " needed" }
                dt { "Approvers" } dd { (text(&approvers.join(", "))) }
                dt { "Waiting since" } dd { (s("since")) }
                dt { "Deadline" } dd { (s("deadline")) }
            }
            @if !decisions.is_empty() {
                ul.decisions {
                    @for d in &decisions {
                        li {
                            (text(d["user"].as_str().unwrap_or_default())) ": " (d["decision"].as_str().unwrap_or_default())
                            @if d["accepted"] != true { " (not accepted: " (text(d["reason"].as_str().unwrap_or_default())) ")" }
                            @if let Some(c) = d["comment"].as_str().filter(|c| !c.is_empty()) { " — " (text(c)) }
                        }
                    }
                }
            }
            @if approved as u64 >= required {
                p.notice.decided { "Approved: the run goes on as soon as its scheduler applies the decision." }
            } @else if decisions.iter().any(|d| d["accepted"] == true && d["decision"] == "reject") {
                p.notice.decided { "Rejected: the gate fails as soon as its scheduler applies the decision." }
            } @else {
            form.decide method="post" action={ "/ui/runs/" (run) "/tasks/" (task) "/decide" } {
                (layout::csrf(v))
                label { "Comment " textarea name="comment" rows="2" maxlength="4096" {} }
                @if !mine { p.hint { "You are not an approver of this gate; a decision will be refused." } }
                button type="submit" name="decision" value="approve" { "Approve" }
                button type="submit" name="decision" value="reject" { "Reject" }
            }
            }
        }
    }
}

#[derive(Deserialize)]
pub(super) struct DecideForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    decision: String,
    #[serde(default)]
    comment: String,
}

/// `POST /ui/runs/{id}/tasks/{task}/decide`: back to the inbox, or the
/// inbox with why the decision was refused.
pub(super) async fn decide(
    State(state): State<Arc<ApiState>>,
    v: Viewer,
    headers: HeaderMap,
    Path((id, task)): Path<(String, String)>,
    Form(form): Form<DecideForm>,
) -> Response {
    if let Err(e) = session::check_csrf(&v, &headers, &form.csrf) {
        return error_page(Some(&v), e);
    }
    let approve = match form.decision.as_str() {
        "approve" => true,
        "reject" => false,
        _ => {
            return error_page(
                Some(&v),
                ApiError::bad_request("decision must be approve or reject"),
            );
        }
    };
    match actions::decide(&state, &v.who, &id, &task, approve, &form.comment).await {
        Ok(_) => Redirect::to("/ui/approvals").into_response(),
        Err(e) => {
            let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::FORBIDDEN);
            inbox(&state, &v, Some((&id, &task, e.message)), status).await
        }
    }
}

/// `GET /ui/repos`: the forge repositories and their recent deliveries.
pub(super) async fn repos(State(state): State<Arc<ApiState>>, v: Viewer) -> Response {
    if state.forge.is_none() {
        let body = html! { h1 { "Repositories" } p { "This server takes no webhooks." } };
        return layout::page("Repositories", Some(&v), Nav::Repos, body).into_response();
    }
    let repos = match crate::api::hooks::visible_repos(&state, &v.who).await {
        Ok(r) => r,
        Err(e) => return error_page(Some(&v), e),
    };
    let mut shown = Vec::new();
    for r in &repos {
        let name = r["name"].as_str().unwrap_or_default().to_string();
        let deliveries = state
            .sched
            .store
            .deliveries(Some(&name), 10)
            .unwrap_or_default();
        shown.push((r, name, deliveries));
    }
    let body = html! {
        h1 { "Repositories" }
        @if shown.is_empty() { p.empty { "No repository you may see is configured." } }
        @for (r, name, deliveries) in &shown {
            section.repo {
                h2 { (text(name)) }
                dl.summary {
                    dt { "Provider" } dd { (r["spec"]["provider"].as_str().unwrap_or_default()) }
                    dt { "Project" } dd { (text(r["spec"]["project"].as_str().unwrap_or_default())) }
                    dt { "Runs" } dd { (r["running"]) " running, " (r["waiting"]) " waiting" }
                    dt { "All its runs" } dd { a href={ "/ui/runs" (layout::query(&[("repository", Some(name))])) } { "open" } }
                }
                @if deliveries.is_empty() { p { "No delivery yet." } } @else {
                    table {
                        caption { "Recent deliveries" }
                        thead { tr { th scope="col" { "Received (UTC)" } th scope="col" { "Event" } th scope="col" { "Answer" } th scope="col" { "Outcome" } th scope="col" { "Runs" } } }
                        tbody {
                            @for d in deliveries {
                                tr {
                                    td { (layout::when(d.received_at)) } td { (text(&d.event)) }
                                    td { @if let Some(s) = d.status { (s) } }
                                    td { @if let Some(o) = &d.outcome { (text(o)) } }
                                    td { @for id in &d.runs { a href={ "/ui/runs/" (id) } { (id) } " " } }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    layout::page("Repositories", Some(&v), Nav::Repos, body).into_response()
}
