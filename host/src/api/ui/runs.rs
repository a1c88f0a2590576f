//! The runs list: newest first, filtered by pipeline, status, repository,
//! branch and trigger, by page (the store's keyset pages, so page 500 costs
//! what page 1 does). The first page refreshes itself from `runs.json`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};

use super::layout::{self, Nav, text};
use super::{Signed, Viewer, error_page};
use crate::api::{ApiState, ListQuery, visible_runs};
use crate::store::RunRecord;

const STATUSES: &[&str] = &[
    "Queued",
    "Running",
    "Succeeded",
    "Failed",
    "Cancelled",
    "TimedOut",
];
const TRIGGERS: &[(&str, &str)] = &[
    ("cli", "capstan run"),
    ("pipeline-run", "PipelineRun"),
    ("webhook", "webhook"),
    ("schedule", "schedule"),
    ("rerun", "re-run"),
];

/// One row, as the page shows it and `runs.json` sends it.
#[derive(serde::Serialize)]
struct Row {
    id: String,
    number: Option<i64>,
    pipeline: String,
    status: &'static str,
    trigger: String,
    branch: Option<String>,
    created: String,
    duration: String,
}

fn row(r: &RunRecord) -> Row {
    let end = r
        .finished_at
        .or_else(|| r.started_at.map(|_| layout::now_us()));
    Row {
        id: r.id.clone(),
        number: r.number,
        pipeline: text(&r.pipeline),
        status: r.status.as_str(),
        trigger: r
            .spec
            .triggered_by
            .as_ref()
            .map(|t| text(&t.describe()))
            .unwrap_or_default(),
        branch: r.spec.trigger.get("branch").map(|b| text(b)),
        created: layout::when(r.created_at),
        duration: layout::duration(r.started_at, end),
    }
}

fn filters(q: &ListQuery) -> Markup {
    let val = |v: &Option<String>| v.clone().unwrap_or_default();
    html! {
        form.filters method="get" action="/ui/runs" role="search" {
            label { "Pipeline " input name="pipeline" value=(val(&q.pipeline)); }
            label { "Status "
                select name="status" {
                    option value="" { "any" }
                    @for s in STATUSES {
                        option value=(s) selected[q.status.as_deref() == Some(*s)] { (s) }
                    }
                }
            }
            label { "Repository " input name="repository" value=(val(&q.repository)); }
            label { "Branch " input name="branch" value=(val(&q.branch)); }
            label { "Trigger "
                select name="trigger" {
                    option value="" { "any" }
                    @for (k, name) in TRIGGERS {
                        option value=(k) selected[q.trigger.as_deref() == Some(*k)] { (name) }
                    }
                }
            }
            button type="submit" { "Filter" }
        }
    }
}

fn table(rows: &[Row], live: Option<&str>) -> Markup {
    html! {
        table.runs #runs data-live=[live] {
            caption.visually-hidden { "Runs, newest first" }
            thead { tr {
                th scope="col" { "#" } th scope="col" { "Pipeline" } th scope="col" { "Status" }
                th scope="col" { "Started by" } th scope="col" { "Branch" }
                th scope="col" { "Created (UTC)" } th scope="col" { "Duration" } th scope="col" { "Run" }
            } }
            tbody {
                @for r in rows {
                    tr data-run=(r.id) {
                        td { @if let Some(n) = r.number { (n) } }
                        td { (r.pipeline) }
                        td { (layout::status(r.status)) }
                        td { (r.trigger) }
                        td { @if let Some(b) = &r.branch { (b) } }
                        td { (r.created) }
                        td { (r.duration) }
                        td { a href={ "/ui/runs/" (r.id) } { (r.id) } }
                    }
                }
            }
        }
        @if rows.is_empty() { p.empty { "No runs match." } }
    }
}

fn query_of(q: &ListQuery, before: Option<&str>) -> String {
    layout::query(&[
        ("pipeline", q.pipeline.as_deref()),
        ("status", q.status.as_deref()),
        ("repository", q.repository.as_deref()),
        ("branch", q.branch.as_deref()),
        ("trigger", q.trigger.as_deref()),
        ("before", before),
    ])
}

/// `GET /ui/runs`.
pub(super) async fn page(
    State(state): State<Arc<ApiState>>,
    v: Viewer,
    Query(q): Query<ListQuery>,
) -> Response {
    let (runs, next) = match visible_runs(&state, &v.who, &q).await {
        Ok(x) => x,
        Err(e) => return error_page(Some(&v), e),
    };
    let rows: Vec<Row> = runs.iter().map(row).collect();
    // Only the first page refreshes itself: later pages stay as read.
    let live = q
        .before
        .is_none()
        .then(|| format!("/ui/runs.json{}", query_of(&q, None)));
    let body = html! {
        h1 { "Runs" }
        (filters(&q))
        (table(&rows, live.as_deref()))
        nav.pager aria-label="Pages" {
            @if q.before.is_some() { a href={ "/ui/runs" (query_of(&q, None)) } { "Newest" } }
            @if let Some(n) = &next { a rel="next" href={ "/ui/runs" (query_of(&q, Some(n))) } { "Older runs" } }
        }
    };
    layout::page("Runs", Some(&v), Nav::Runs, body).into_response()
}

/// `GET /ui/runs.json`: the rows of the first page, for the live refresh.
pub(super) async fn json(
    State(state): State<Arc<ApiState>>,
    Signed(v): Signed,
    Query(q): Query<ListQuery>,
) -> Response {
    match visible_runs(&state, &v.who, &q).await {
        Ok((runs, _)) => Json(runs.iter().map(row).collect::<Vec<_>>()).into_response(),
        Err(e) => e.into_response(),
    }
}
