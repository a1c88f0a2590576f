//! A run's page: its DAG, tasks, attempts on a timeline, params, results,
//! plugins (versions and digests), what started it (with a commit link for
//! forge runs), and the cancel, stop and re-run buttons where the signed-in
//! person may use them. While the run is live the page follows
//! `state.json` (statuses only) and reloads once when the run ends.

use std::sync::Arc;

use axum::Form;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::layout::{self, Nav, text};
use super::{Signed, Viewer, error_page, session};
use crate::api::{ApiError, ApiState, actions, readable_run};
use crate::store::{AttemptRecord, RunRecord, StopMode, TaskRecord};

/// `GET /ui/runs/{id}`.
pub(super) async fn page(
    State(state): State<Arc<ApiState>>,
    v: Viewer,
    Path(id): Path<String>,
) -> Response {
    match render(&state, &v, &id).await {
        Ok(m) => m.into_response(),
        Err(e) => error_page(Some(&v), e),
    }
}

async fn render(state: &ApiState, v: &Viewer, id: &str) -> Result<Markup, ApiError> {
    let run = readable_run(state, &v.who, id).await?;
    let store = &state.sched.store;
    let tasks = store.tasks(id)?;
    let attempts = store.attempts(id)?;
    let waits = store.waits_of_run(id)?;
    let ns = run.spec.kube.as_ref().map(|k| k.namespace.as_str());
    let may_act = state.auth.may_stop(&v.who, ns).await.is_ok();
    let title = format!("{} #{}", run.pipeline, run.number.unwrap_or_default());
    let body = html! {
        div #run data-run=(run.id) data-status=(run.status.as_str())
            data-live=[(!run.status.is_terminal()).then(|| format!("/ui/runs/{}/state.json", run.id))] {
            h1 { (text(&run.pipeline)) @if let Some(n) = run.number { " #" (n) } " " (layout::status(run.status.as_str())) }
            @if let Some(m) = &run.message { p.message { (text(m)) } }
            (summary(&run))
            @if may_act { (buttons(v, &run)) }
            @if waits.iter().any(|w| w.phase != "approved" && w.phase != "rejected" && w.phase != "timed-out" && w.phase != "cancelled") {
                p.notice { "A task waits for approval: " a href="/ui/approvals" { "open the approvals" } "." }
            }
            section aria-labelledby="dag-h" {
                h2 #dag-h { "Tasks" }
                div.dag-scroll { (super::dag::svg(&tasks)) }
                (task_table(&run, &tasks))
            }
            section aria-labelledby="timeline-h" {
                h2 #timeline-h { "Attempts" }
                (timeline(&run, &attempts))
            }
            (values(&run))
        }
    };
    Ok(layout::page(&title, Some(v), Nav::Runs, body))
}

/// What a forge run built, as a link to the forge's page of it (the
/// event's own `url`: the commit, compare or pull request page), only for
/// an http(s) URL; labelled with the revision when it is a commit id.
fn commit_link(run: &RunRecord) -> Option<(String, String)> {
    let t = &run.spec.trigger;
    let url = t.get("url")?;
    if !(url.starts_with("https://") || url.starts_with("http://"))
        || url.chars().any(crate::escape::is_unsafe)
    {
        return None;
    }
    let label = match t.get("revision") {
        Some(rev) if rev.len() >= 7 && rev.chars().all(|c| c.is_ascii_hexdigit()) => {
            rev.chars().take(12).collect()
        }
        _ => "on the forge".to_string(),
    };
    Some((url.clone(), label))
}

fn summary(run: &RunRecord) -> Markup {
    let end = run
        .finished_at
        .or_else(|| run.started_at.map(|_| layout::now_us()));
    html! {
        dl.summary {
            dt { "Run" } dd { code { (run.id) } }
            dt { "Started by" } dd {
                @if let Some(t) = &run.spec.triggered_by { (text(&t.describe())) } @else { "unknown (an older run)" }
            }
            @if let Some((href, short)) = commit_link(run) {
                dt { "Commit" } dd { a href=(href) rel="noreferrer" { code { (short) } } }
            }
            @if let Some(b) = run.spec.trigger.get("branch") { dt { "Branch" } dd { (text(b)) } }
            @if let Some(of) = &run.spec.rerun_of { dt { "Re-run of" } dd { a href={ "/ui/runs/" (of) } { (of) } } }
            dt { "Created" } dd { (layout::when(run.created_at)) " UTC" }
            dt { "Duration" } dd { (layout::duration(run.started_at, end)) }
            @if let Some(k) = &run.spec.kube { dt { "Namespace" } dd { (text(&k.namespace)) } }
        }
    }
}

fn buttons(v: &Viewer, run: &RunRecord) -> Markup {
    let live = !run.status.is_terminal();
    let form = |action: &str, label: &str, title: &str| {
        html! {
            form.inline method="post" action={ "/ui/runs/" (run.id) "/" (action) } {
                (layout::csrf(v))
                button type="submit" name="go" value=(action) title=(title) { (label) }
            }
        }
    };
    html! {
        div.actions role="group" aria-label="Run actions" {
            @if live {
                (form("cancel", "Cancel", "Stop every task now; finally tasks do not run"))
                (form("stop", "Stop", "Start no new task; let running ones finish; run finally tasks"))
            } @else if run.spec.kube.is_none() {
                (form("rerun", "Re-run", "A new run of the same pipeline, params and plugins"))
                @if run.status.as_str() != "Succeeded" {
                    (form("rerun-failed", "Re-run failed", "Reuse the results of the tasks that succeeded"))
                }
            }
        }
    }
}

fn task_table(run: &RunRecord, tasks: &[TaskRecord]) -> Markup {
    let now = layout::now_us();
    html! {
        table.tasks {
            caption.visually-hidden { "Tasks and their status" }
            thead { tr {
                th scope="col" { "Task" } th scope="col" { "Status" } th scope="col" { "Depends on" }
                th scope="col" { "Attempts" } th scope="col" { "Duration" } th scope="col" { "Message" } th scope="col" { "Logs" }
            } }
            tbody {
                @for t in tasks {
                    tr #{ "task-" (t.name) } data-task=(t.name) {
                        th scope="row" {
                            (t.name)
                            @if t.finally { " " span.tag { "finally" } }
                            @if let Some(m) = &t.matrix_of { " " span.tag { "matrix " (m) } }
                        }
                        td.status { (layout::status(t.status.as_str())) }
                        td { (t.deps.join(", ")) }
                        td.attempts { (t.attempts) }
                        td { (layout::duration(t.started_at, t.finished_at.or(t.started_at.map(|_| now)))) }
                        td {
                            @if let Some(m) = &t.message { (text(m)) }
                            @if let Some(r) = t.skip_reason { (r.as_str()) }
                            @if let Some(from) = &t.reused_from { "result reused from " a href={ "/ui/runs/" (from) } { (from) } }
                        }
                        td { a href={ "/ui/runs/" (run.id) "/logs" (layout::query(&[("task", Some(&t.name))])) } { "logs" } }
                    }
                }
            }
        }
    }
}

/// Attempts as bars on one time axis (SVG), with a table of the same.
fn timeline(run: &RunRecord, attempts: &[AttemptRecord]) -> Markup {
    let start = attempts
        .iter()
        .map(|a| a.dispatched_at)
        .min()
        .or(run.started_at)
        .unwrap_or(run.created_at);
    let now = layout::now_us();
    let end = attempts
        .iter()
        .map(|a| a.finished_at.unwrap_or(now))
        .max()
        .unwrap_or(now)
        .max(start + 1);
    let span = (end - start) as f64;
    const W: f64 = 600.0;
    let shown = &attempts[..attempts.len().min(200)];
    let height = shown.len() as i64 * 16 + 4;
    html! {
        @if attempts.is_empty() { p { "No task has started." } } @else {
            svg.timeline xmlns="http://www.w3.org/2000/svg" width="800" height=(height)
                viewBox={ "0 0 800 " (height) } role="img" aria-label="Attempts over time" {
                @for (i, a) in shown.iter().enumerate() {
                    @let x = 190.0 + (a.dispatched_at - start) as f64 / span * W;
                    @let w = ((a.finished_at.unwrap_or(now) - a.dispatched_at) as f64 / span * W).max(2.0);
                    text x="0" y=(i as i64 * 16 + 13) { (a.task) " #" (a.attempt) }
                    rect class={ "bar st-" (a.status.as_str()) } x=(format!("{x:.1}")) y=(i as i64 * 16 + 3)
                        width=(format!("{w:.1}")) height="12" rx="2" {
                        title { (a.task) " attempt " (a.attempt) ": " (a.status.as_str()) ", "
                            (layout::duration(Some(a.dispatched_at), Some(a.finished_at.unwrap_or(now)))) }
                    }
                }
            }
            details {
                summary { "Attempts as a table" }
                table {
                    thead { tr { th scope="col" { "Task" } th scope="col" { "Attempt" } th scope="col" { "Status" } th scope="col" { "Started" } th scope="col" { "Duration" } th scope="col" { "Message" } } }
                    tbody {
                        @for a in attempts {
                            tr {
                                td { (a.task) } td { (a.attempt) } td { (layout::status(a.status.as_str())) }
                                td { (layout::when(a.dispatched_at)) }
                                td { (layout::duration(Some(a.dispatched_at), a.finished_at)) }
                                td { @if let Some(m) = &a.message { (text(m)) } }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn values(run: &RunRecord) -> Markup {
    html! {
        section aria-labelledby="values-h" {
            h2 #values-h { "Params, results and plugins" }
            h3 { "Params given" }
            @if run.spec.overrides.is_empty() { p { "None (the pipeline's defaults)." } } @else {
                table { tbody { @for (k, val) in &run.spec.overrides { tr { th scope="row" { (text(k)) } td { code { (text(val)) } } } } } }
            }
            h3 { "Results" }
            @if run.results.is_empty() { p { "None." } } @else {
                table { tbody { @for (k, val) in &run.results { tr { th scope="row" { (text(k)) } td { code { (text(val)) } } } } } }
            }
            h3 { "Plugins" }
            table.plugins {
                thead { tr { th scope="col" { "uses" } th scope="col" { "Plugin" } th scope="col" { "Version" } th scope="col" { "Digest" } } }
                tbody {
                    @for p in crate::view::plugins_json(run) {
                        tr {
                            td { code { (text(p.uses)) } }
                            td { @if let Some(n) = p.name { a href={ "/ui/registry/" (n) } { (n) } } }
                            td { @if let Some(v) = p.version { (v) } }
                            td { code.digest { (p.digest) } }
                        }
                    }
                }
            }
        }
    }
}

/// `GET /ui/runs/{id}/state.json`: the run's and its tasks' statuses.
pub(super) async fn state(
    State(state): State<Arc<ApiState>>,
    Signed(v): Signed,
    Path(id): Path<String>,
) -> Response {
    let run = match readable_run(&state, &v.who, &id).await {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    match state.sched.store.tasks(&id) {
        Ok(tasks) => Json(serde_json::json!({
            "status": run.status.as_str(),
            "terminal": run.status.is_terminal(),
            "tasks": tasks.iter().map(|t| serde_json::json!({
                "name": t.name, "status": t.status.as_str(), "attempts": t.attempts,
            })).collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

#[derive(Deserialize)]
pub(super) struct ActForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /ui/runs/{id}/{cancel,stop,rerun,rerun-failed}`.
pub(super) async fn act(
    State(state): State<Arc<ApiState>>,
    v: Viewer,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    Form(form): Form<ActForm>,
) -> Response {
    if let Err(e) = session::check_csrf(&v, &headers, &form.csrf) {
        return error_page(Some(&v), e);
    }
    let result = match action.as_str() {
        "cancel" => actions::stop_run(&state, &v.who, &id, StopMode::Cancel)
            .await
            .map(|_| id.clone()),
        "stop" => actions::stop_run(&state, &v.who, &id, StopMode::Stop)
            .await
            .map(|_| id.clone()),
        "rerun" => actions::rerun(&state, &v.who, &id, false).await,
        "rerun-failed" => actions::rerun(&state, &v.who, &id, true).await,
        other => Err(ApiError::new(404, format!("no action `{other}`"))),
    };
    match result {
        Ok(go) => Redirect::to(&format!("/ui/runs/{go}")).into_response(),
        Err(e) => error_page(Some(&v), e),
    }
}
