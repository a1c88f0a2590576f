//! Logs in the browser: per task and attempt, the lines so far in the page,
//! then the rest as server-sent events on the store's log cursor while the
//! run is live; searchable in the page; downloadable as text.
//!
//! The event stream ends after [`STREAM_FOR`] with `retry: 500`, and the
//! browser's EventSource reconnects with `Last-Event-ID` (the cursor), so no
//! response outlives the listener's I/O timeout and no line is lost or
//! repeated across reconnects. When the run has ended and every line was
//! sent, an `end` event tells the page to stop.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::Deserialize;

use super::layout::{self, Nav, text};
use super::{Signed, Viewer, error_page};
use crate::api::{ApiError, ApiState, readable_run};
use crate::store::LogLine;

/// How long one event-stream response lasts before the browser reconnects.
const STREAM_FOR: Duration = Duration::from_secs(20);
/// Lines shown in the page itself, and at most [`IN_PAGE_BYTES`] of them;
/// the stream sends the rest.
const IN_PAGE: usize = 5000;
const IN_PAGE_BYTES: usize = 1 << 20;

#[derive(Deserialize, Default)]
pub(super) struct LogsQuery {
    task: Option<String>,
    attempt: Option<u32>,
    #[serde(default)]
    after: i64,
}

impl LogsQuery {
    fn task(&self) -> Option<&str> {
        self.task.as_deref().filter(|t| !t.is_empty())
    }
}

/// A line as shown: `time level [task#attempt] message`, made inert.
fn line_text(l: &LogLine, with_task: bool) -> String {
    let time = crate::view::time(l.ts);
    let time = time.get(11..23).unwrap_or(&time);
    if with_task {
        format!(
            "{time} {:5} [{}#{}] {}",
            l.level.as_str(),
            l.task,
            l.attempt,
            text(&l.message)
        )
    } else {
        format!("{time} {:5} {}", l.level.as_str(), text(&l.message))
    }
}

/// `GET /ui/runs/{id}/logs?task=&attempt=`.
pub(super) async fn page(
    State(state): State<Arc<ApiState>>,
    v: Viewer,
    Path(id): Path<String>,
    Query(q): Query<LogsQuery>,
) -> Response {
    let run = match readable_run(&state, &v.who, &id).await {
        Ok(r) => r,
        Err(e) => return error_page(Some(&v), e),
    };
    let store = &state.sched.store;
    let (tasks, mut lines) = match store
        .tasks(&id)
        .and_then(|t| Ok((t, store.logs(&id, q.task(), q.attempt, 0, IN_PAGE)?)))
    {
        Ok(x) => x,
        Err(e) => return error_page(Some(&v), e.into()),
    };
    let full = lines.len() == IN_PAGE;
    let mut bytes = 0;
    let fits = lines
        .iter()
        .take_while(|l| {
            bytes += l.message.len();
            bytes <= IN_PAGE_BYTES
        })
        .count();
    let cut = full || fits < lines.len();
    lines.truncate(fits.max(1).min(lines.len()));
    let cursor = lines.last().map_or(0, |l| l.id);
    let scope = |task: Option<&str>, attempt: Option<u32>| {
        let a = attempt.map(|a| a.to_string());
        layout::query(&[("task", task), ("attempt", a.as_deref())])
    };
    let here = scope(q.task(), q.attempt);
    let live = !run.status.is_terminal() || cut;
    let stream = format!(
        "/ui/runs/{id}/logs/stream{}{}after={cursor}",
        here,
        if here.is_empty() { "?" } else { "&" }
    );
    let body = html! {
        h1 { "Logs of " a href={ "/ui/runs/" (id) } { (text(&run.pipeline)) @if let Some(n) = run.number { " #" (n) } }
            @if let Some(t) = q.task() { ": " (t) @if let Some(a) = q.attempt { " attempt " (a) } } }
        nav.tabs aria-label="Tasks and attempts" {
            a href={ "/ui/runs/" (id) "/logs" } aria-current=[q.task().is_none().then_some("page")] { "All tasks" }
            @for t in &tasks {
                a href={ "/ui/runs/" (id) "/logs" (scope(Some(&t.name), None)) }
                    aria-current=[(q.task() == Some(t.name.as_str()) && q.attempt.is_none()).then_some("page")] { (t.name) }
                @if t.attempts > 1 {
                    @for a in 1..=t.attempts {
                        a.attempt href={ "/ui/runs/" (id) "/logs" (scope(Some(&t.name), Some(a))) }
                            aria-current=[(q.task() == Some(t.name.as_str()) && q.attempt == Some(a)).then_some("page")] { "#" (a) }
                    }
                }
            }
        }
        div.logbar {
            label { "Search " input #log-search type="search" autocomplete="off"; }
            span #log-count aria-live="polite" {}
            a href={ "/ui/runs/" (id) "/logs.txt" (here) } download { "Download" }
            span #log-state data-status=(run.status.as_str()) { @if live { "following live…" } @else { "complete" } }
        }
        pre #log tabindex="0" aria-label="Log" data-stream=[live.then_some(stream)] data-with-task=[q.task().is_none().then_some("1")] {
            @for l in &lines { span.line data-id=(l.id) class={ "lv-" (l.level.as_str()) } { (line_text(l, q.task().is_none())) "\n" } }
        }
    };
    layout::page("Logs", Some(&v), Nav::Runs, body).into_response()
}

/// `GET /ui/runs/{id}/logs/stream?task=&attempt=&after=`: server-sent
/// events, one per line (`id:` the cursor), for [`STREAM_FOR`].
pub(super) async fn stream(
    State(state): State<Arc<ApiState>>,
    Signed(v): Signed,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<LogsQuery>,
) -> Response {
    if let Err(e) = readable_run(&state, &v.who, &id).await {
        return e.into_response();
    }
    let Some(slot) = state.ui.stream_slot(&v.who.user) else {
        return ApiError::new(
            429,
            format!(
                "{} live log streams are open already; close a log page",
                super::session::MAX_STREAMS_PER_USER
            ),
        )
        .into_response();
    };
    // A reconnect continues from the last line the browser saw.
    let after = headers
        .get("last-event-id")
        .and_then(|h| h.to_str().ok())
        .and_then(|s| s.parse::<i64>().ok())
        .unwrap_or(q.after);
    let with_task = q.task().is_none();
    let store = state.sched.store.clone();
    let s = futures::stream::unfold(
        (after, tokio::time::Instant::now() + STREAM_FOR, false),
        move |(cursor, until, done)| {
            let (store, id, task, attempt) = (store.clone(), id.clone(), q.task.clone(), q.attempt);
            // Held as long as the stream is: dropped with the response.
            let _slot = &slot;
            async move {
                if done {
                    return None;
                }
                loop {
                    // Checked before every read, so a busy log cannot keep
                    // one response open past STREAM_FOR either.
                    if tokio::time::Instant::now() >= until {
                        let again = vec![Ok(Event::default()
                            .retry(Duration::from_millis(500))
                            .comment("reconnect"))];
                        return Some((futures::stream::iter(again), (cursor, until, true)));
                    }
                    let (store, id, task) = (store.clone(), id.clone(), task.clone());
                    let read = tokio::task::spawn_blocking(move || {
                        // Status first: a terminal status is written after the run's last line.
                        let status = store.run(&id)?.status;
                        let lines = store.logs(
                            &id,
                            task.as_deref().filter(|t| !t.is_empty()),
                            attempt,
                            cursor,
                            500,
                        )?;
                        Ok::<_, crate::store::StoreError>((status.is_terminal(), lines))
                    })
                    .await;
                    let (terminal, lines) = match read {
                        Ok(Ok(x)) => x,
                        _ => return None,
                    };
                    if !lines.is_empty() {
                        let next = lines.last().map_or(cursor, |l| l.id);
                        let events: Vec<Result<Event, Infallible>> = lines
                            .iter()
                            .map(|l| {
                                Ok(Event::default()
                                    .id(l.id.to_string())
                                    .event(l.level.as_str())
                                    .data(line_text(l, with_task)))
                            })
                            .collect();
                        return Some((futures::stream::iter(events), (next, until, false)));
                    }
                    if terminal {
                        let end = vec![Ok(Event::default().event("end").data("complete"))];
                        return Some((futures::stream::iter(end), (cursor, until, true)));
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        },
    );
    use futures::StreamExt as _;
    Sse::new(s.flatten())
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(10)))
        .into_response()
}

/// `GET /ui/runs/{id}/logs.txt?task=&attempt=`: every line, as text.
pub(super) async fn download(
    State(state): State<Arc<ApiState>>,
    v: Viewer,
    Path(id): Path<String>,
    Query(q): Query<LogsQuery>,
) -> Response {
    if let Err(e) = readable_run(&state, &v.who, &id).await {
        return error_page(Some(&v), e);
    }
    // Read and sent 2,000 lines at a time: a run's whole log never sits
    // in memory at once.
    let store = state.sched.store.clone();
    let (rid, task, attempt) = (id.clone(), q.task.clone(), q.attempt);
    let chunks = futures::stream::unfold(Some(0i64), move |cursor| {
        let (store, rid, task) = (store.clone(), rid.clone(), task.clone());
        async move {
            let after = cursor?;
            let read = tokio::task::spawn_blocking(move || {
                let task = task.as_deref().filter(|t| !t.is_empty());
                store.logs(&rid, task, attempt, after, 2000)
            })
            .await;
            match read {
                Ok(Ok(lines)) if !lines.is_empty() => {
                    let next = lines.last().map(|l| l.id);
                    let mut out = String::new();
                    for l in &lines {
                        out.push_str(&line_text(l, true));
                        out.push('\n');
                    }
                    Some((Ok::<_, std::io::Error>(bytes::Bytes::from(out)), next))
                }
                Ok(Ok(_)) => None,
                Ok(Err(e)) => Some((Err(std::io::Error::other(e.to_string())), None)),
                Err(e) => Some((Err(std::io::Error::other(e.to_string())), None)),
            }
        }
    });
    let name = match &q.task {
        Some(t) if crate::manifest::is_name(t) => format!("{id}-{t}.log"),
        _ => format!("{id}.log"),
    };
    (
        [
            (
                header::CONTENT_TYPE,
                "text/plain; charset=utf-8".to_string(),
            ),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        axum::body::Body::from_stream(chunks),
    )
        .into_response()
}
