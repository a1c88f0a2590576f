//! The scheduler's HTTP API: served by `capstan serve` (local) and
//! `capstan controller --listen` (Kubernetes), with axum.
//!
//! | method, path                     | what                              |
//! |----------------------------------|-----------------------------------|
//! | `GET /healthz`                   | liveness (no auth)                |
//! | `GET /readyz`                    | ready: serves `/v1` (a controller standby: 503) |
//! | `GET /metrics`                   | Prometheus metrics (no auth)      |
//! | `GET /v1/runs?limit=N&status=&pipeline=&repository=&before=CURSOR` | runs, newest first, by page (`X-Next-Cursor`) |
//! | `GET /v1/runs/{id}`              | a run, its tasks and attempts     |
//! | `GET /v1/runs/{id}/logs?task=&after=&limit=` | log lines after id `after`, and the run's status read before them |
//! | `GET /v1/approvals`              | tasks waiting for approval        |
//! | `POST /v1/runs/{id}/tasks/{task}/approve` (`/reject`), body `{"comment": …}` | decide (the caller must be a listed approver) |
//! | `POST /v1/hooks/github`, `POST /v1/hooks/gitlab` | forge webhooks (signed, no bearer token) |
//! | `GET /v1/repos`, `GET /v1/repos/{name}/deliveries` | repositories, their deliveries |
//! | `GET /v1/repos/{namespace}/{name}/deliveries` | a Repository resource's deliveries |
//! | `POST /v1/runs/{id}/ok-to-test` | run an untrusted pull request's own pipelines at that run's commit |
//!
//! Every `/v1` call needs `Authorization: Bearer TOKEN` ([`auth`]). Errors
//! are JSON `{"error": "..."}` with a meaningful status. This is the API the
//! web UI and remote workers will use as well.

pub mod auth;
pub mod client;
pub mod hooks;
pub mod listener;

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use crate::scheduler::Scheduler;
use crate::store::StoreError;
pub use auth::{Auth, Identity};

/// What the handlers share.
pub struct ApiState {
    pub sched: Arc<Scheduler>,
    pub auth: Auth,
    /// Webhooks and repositories (None: this server takes no webhooks).
    pub forge: Option<Arc<crate::forge::intake::Forge>>,
}

/// An error answer: status and message.
#[derive(Debug)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }
    pub fn unauthorized(m: impl Into<String>) -> ApiError {
        Self::new(401, m)
    }
    pub fn forbidden(m: impl Into<String>) -> ApiError {
        Self::new(403, m)
    }
    pub fn bad_request(m: impl Into<String>) -> ApiError {
        Self::new(400, m)
    }
    pub fn internal(m: impl std::fmt::Display) -> ApiError {
        tracing::error!("api: {m}");
        Self::new(500, m.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::NoSuchRun(id) => ApiError::new(404, format!("no run `{id}`")),
            e => ApiError::internal(e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut r = (status, Json(serde_json::json!({ "error": self.message }))).into_response();
        if self.status == 401 {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, "Bearer".parse().unwrap());
        }
        r
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// The routes.
pub fn router(state: Arc<ApiState>) -> axum::Router {
    axum::Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .route("/v1/runs", get(list_runs))
        .route("/v1/runs/{id}", get(show_run))
        .route("/v1/runs/{id}/logs", get(logs))
        .route("/v1/runs/{id}/cancel", post(cancel))
        .route("/v1/runs/{id}/stop", post(stop))
        .route("/v1/runs/{id}/rerun", post(rerun))
        .route("/v1/approvals", get(approvals))
        .route("/v1/runs/{id}/tasks/{task}/{decision}", post(decide))
        .route(
            "/v1/hooks/github",
            post(hooks::github).layer(axum::extract::DefaultBodyLimit::max(hooks::MAX_PAYLOAD)),
        )
        .route(
            "/v1/hooks/gitlab",
            post(hooks::gitlab).layer(axum::extract::DefaultBodyLimit::max(hooks::MAX_PAYLOAD)),
        )
        .route("/v1/repos", get(hooks::repos))
        .route("/v1/runs/{id}/ok-to-test", post(hooks::ok_to_test))
        .route("/v1/repos/{name}/deliveries", get(hooks::deliveries))
        .route(
            "/v1/repos/{ns}/{name}/deliveries",
            get(hooks::namespaced_deliveries),
        )
        .with_state(state)
}

/// Serve until the future is dropped, under `limits` (see [`listener`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<ApiState>,
    limits: listener::ConnLimits,
) -> anyhow::Result<()> {
    serve_router(listener, router(state), limits).await
}

/// Serve any router of this API under `limits`.
pub async fn serve_router(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    limits: listener::ConnLimits,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    tracing::info!("API listening on http://{addr}");
    listener::serve_limited(listener, app, limits).await
}

/// Where the leader's router goes once this replica holds the lease.
pub type LeaderSlot = Arc<std::sync::OnceLock<axum::Router>>;

/// The API of a controller replica that may be a standby: `/healthz` always
/// answers (liveness); `/readyz` and every other path answer 503 until
/// `leader` holds the full router, which only the leader builds (only the
/// leader opens the run store, which SQLite must not share across hosts).
pub fn until_leader(leader: LeaderSlot) -> axum::Router {
    async fn ready(State(leader): State<LeaderSlot>) -> Response {
        match leader.get() {
            Some(_) => "ok\n".into_response(),
            None => (StatusCode::SERVICE_UNAVAILABLE, "standby\n").into_response(),
        }
    }
    async fn delegate(State(leader): State<LeaderSlot>, req: axum::extract::Request) -> Response {
        use tower::ServiceExt as _;
        match leader.get() {
            Some(app) => match app.clone().oneshot(req).await {
                Ok(r) => r,
                Err(never) => match never {},
            },
            None => (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "5")],
                Json(serde_json::json!({
                    "error": "this replica is a standby; the leader serves the API (retry, or go through the Service)"
                })),
            )
                .into_response(),
        }
    }
    axum::Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .fallback(delegate)
        .with_state(leader)
}

/// The caller, from the `Authorization: Bearer` header.
async fn caller(state: &ApiState, headers: &HeaderMap) -> ApiResult<Identity> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or("");
    state.auth.identify(token).await
}

/// The caller, if they may read run `id` (404 before 403 would leak which
/// runs exist, so existence is checked after authentication only).
async fn reader_of(state: &ApiState, headers: &HeaderMap, id: &str) -> ApiResult<Identity> {
    let who = caller(state, headers).await?;
    let rec = state.sched.store.run(id)?;
    let ns = rec.spec.kube.as_ref().map(|k| k.namespace.as_str());
    state.auth.may_read(&who, ns).await?;
    Ok(who)
}

/// [`Auth::may_read`], asked once per namespace of a listing.
async fn may_read_cached(
    state: &ApiState,
    who: &Identity,
    cache: &mut std::collections::HashMap<Option<String>, bool>,
    ns: &Option<String>,
) -> bool {
    if let Some(ok) = cache.get(ns) {
        return *ok;
    }
    let ok = state.auth.may_read(who, ns.as_deref()).await.is_ok();
    cache.insert(ns.clone(), ok);
    ok
}

async fn metrics(State(state): State<Arc<ApiState>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.sched.metrics.encode(),
    )
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<usize>,
    status: Option<String>,
    pipeline: Option<String>,
    repository: Option<String>,
    /// A run's `cursor`: the page after it.
    before: Option<String>,
}

impl ListQuery {
    fn filter(&self) -> ApiResult<crate::store::RunFilter> {
        let bad = |e: String| ApiError::new(400, e);
        Ok(crate::store::RunFilter {
            status: self
                .status
                .as_deref()
                .map(str::parse)
                .transpose()
                .map_err(bad)?,
            pipeline: self.pipeline.clone(),
            repository: self.repository.clone(),
            before: self
                .before
                .as_deref()
                .map(str::parse)
                .transpose()
                .map_err(bad)?,
        })
    }
}

async fn list_runs(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> ApiResult<Response> {
    let who = caller(&state, &headers).await?;
    let limit = q.limit.unwrap_or(50).clamp(1, 1000);
    let runs = state.sched.store.list_runs_page(&q.filter()?, limit)?;
    // The next page starts after the last run read, even when the caller
    // may not see it (a page filtered to nothing still has a next one).
    let next = (runs.len() == limit)
        .then(|| runs.last().map(|r| crate::store::Cursor::of(r).to_string()))
        .flatten();
    let mut out = Vec::new();
    let mut allowed: std::collections::HashMap<Option<String>, bool> = Default::default();
    for r in runs {
        let ns = r.spec.kube.as_ref().map(|k| k.namespace.clone());
        let ok = may_read_cached(&state, &who, &mut allowed, &ns).await;
        if ok {
            out.push(serde_json::json!({
                "run_id": r.id, "pipeline": r.pipeline, "status": r.status.as_str(),
                "namespace": ns, "number": r.number,
                "triggered_by": r.spec.triggered_by,
                "cursor": crate::store::Cursor::of(&r).to_string(),
                "created": crate::view::time(r.created_at),
                "start": r.started_at.map(crate::view::time),
                "end": r.finished_at.map(crate::view::time),
            }));
        }
    }
    let mut response = Json(serde_json::Value::Array(out)).into_response();
    if let Some(next) = next.and_then(|n| header::HeaderValue::from_str(&n).ok()) {
        response.headers_mut().insert("x-next-cursor", next);
    }
    Ok(response)
}

async fn show_run(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    reader_of(&state, &headers, &id).await?;
    let store = &state.sched.store;
    let run = store.run(&id)?;
    let tasks = store.tasks(&id)?;
    let mut v =
        serde_json::to_value(crate::view::run_json(&run, &tasks)).map_err(ApiError::internal)?;
    let attempts = store.attempts(&id)?;
    v["attempts"] =
        serde_json::to_value(crate::view::attempts_json(&attempts)).map_err(ApiError::internal)?;
    // Commit statuses reported to a forge, every attempt.
    v["reports"] = serde_json::to_value(store.reports(&id)?).map_err(ApiError::internal)?;
    Ok(Json(v))
}

#[derive(Deserialize)]
struct LogsQuery {
    task: Option<String>,
    #[serde(default)]
    after: i64,
    limit: Option<usize>,
}

async fn logs(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<LogsQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    reader_of(&state, &headers, &id).await?;
    let store = &state.sched.store;
    // The status is read before the lines: a terminal status is written
    // after a run's last line, so a client that sees it has every line.
    let status = store.run(&id)?.status;
    let limit = q.limit.unwrap_or(1000).clamp(1, 10_000);
    let lines: Vec<crate::view::LogLineJson> = store
        .logs(&id, q.task.as_deref(), q.after, limit)?
        .iter()
        .map(Into::into)
        .collect();
    Ok(Json(serde_json::json!({
        "status": status.as_str(),
        "terminal": status.is_terminal(),
        "lines": lines,
    })))
}

async fn approvals(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
) -> ApiResult<Json<serde_json::Value>> {
    let who = caller(&state, &headers).await?;
    let store = &state.sched.store;
    let mut out = Vec::new();
    let mut allowed: std::collections::HashMap<Option<String>, bool> = Default::default();
    for w in store.open_waits()? {
        let ns = store
            .run(&w.run_id)?
            .spec
            .kube
            .as_ref()
            .map(|k| k.namespace.clone());
        let ok = may_read_cached(&state, &who, &mut allowed, &ns).await;
        if ok {
            let decisions = store.decisions(&w.run_id)?;
            out.push(crate::scheduler::approval::pending_json(&w, &decisions));
        }
    }
    Ok(Json(serde_json::Value::Array(out)))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DecideBody {
    #[serde(default)]
    comment: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CancelBody {
    /// Run the `finally` tasks after stopping the running ones.
    #[serde(default)]
    run_finally: bool,
}

/// `POST /v1/runs/{id}/cancel` (`{"run_finally": true}` for Tekton's
/// `CancelledRunFinally`).
async fn cancel(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Option<Json<CancelBody>>,
) -> ApiResult<Response> {
    let mode = if body.is_some_and(|b| b.0.run_finally) {
        crate::store::StopMode::CancelRunFinally
    } else {
        crate::store::StopMode::Cancel
    };
    stop_run(&state, &headers, &id, mode).await
}

/// `POST /v1/runs/{id}/stop`: Tekton's `StoppedRunFinally`.
async fn stop(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    stop_run(&state, &headers, &id, crate::store::StopMode::Stop).await
}

async fn stop_run(
    state: &ApiState,
    headers: &HeaderMap,
    id: &str,
    mode: crate::store::StopMode,
) -> ApiResult<Response> {
    use crate::scheduler::StopOutcome;
    let who = caller(state, headers).await?;
    let rec = state.sched.store.run(id)?;
    let ns = rec.spec.kube.as_ref().map(|k| k.namespace.as_str());
    state.auth.may_stop(&who, ns).await?;
    let outcome = state.sched.stop_run(id, mode).map_err(ApiError::internal)?;
    tracing::info!(run = %id, user = %who.user, mode = mode.as_str(), "stop asked");
    let (code, note) = match outcome {
        StopOutcome::Ended(s) => (StatusCode::OK, format!("the run has ended: {s}")),
        StopOutcome::Requested => (
            StatusCode::ACCEPTED,
            "the process executing the run carries it out".to_string(),
        ),
        StopOutcome::NeedsExecution => (
            StatusCode::ACCEPTED,
            format!(
                "recorded; no process executes the run: `capstan runs resume {id}` runs its finally tasks"
            ),
        ),
    };
    let run = state.sched.store.run(id)?;
    let body = serde_json::json!({
        "run_id": id, "requested": mode.as_str(), "status": run.status.as_str(), "note": note,
    });
    Ok((code, Json(body)).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RerunBody {
    /// Reuse the results of the tasks that succeeded.
    #[serde(default)]
    failed: bool,
}

/// `POST /v1/runs/{id}/rerun` (`{"failed": true}`): a new run of the same
/// pipeline, params and plugins, executed by this server. Runs of
/// PipelineRun objects are re-run in Kubernetes, by creating one.
async fn rerun(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Option<Json<RerunBody>>,
) -> ApiResult<Response> {
    let who = caller(&state, &headers).await?;
    let rec = state.sched.store.run(&id)?;
    if rec.spec.kube.is_some() {
        return Err(ApiError::new(
            409,
            "this run is a PipelineRun's: re-run it by creating the PipelineRun again (kubectl create)",
        ));
    }
    state.auth.may_stop(&who, None).await?;
    let failed = body.is_some_and(|b| b.0.failed);
    let sched = state.sched.clone();
    let (new_id, prepared) = {
        let (sched, id, user) = (sched.clone(), id.clone(), who.user.clone());
        tokio::task::spawn_blocking(move || sched.rerun(&id, failed, &user))
            .await
            .map_err(ApiError::internal)?
            .map_err(|e| ApiError::new(409, format!("{e:#}")))?
    };
    tracing::info!(run = %id, new = %new_id, user = %who.user, failed, "re-run");
    let run_id = new_id.clone();
    tokio::spawn(async move {
        if let Err(e) = sched.execute(&run_id, &prepared, None).await {
            tracing::warn!(run = %run_id, "re-run failed to execute: {e:#}");
        }
    });
    let body = serde_json::json!({ "run_id": new_id, "rerun_of": id, "failed_only": failed });
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

async fn decide(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path((id, task, decision)): Path<(String, String, String)>,
    body: Option<Json<DecideBody>>,
) -> ApiResult<Json<serde_json::Value>> {
    use crate::scheduler::approval::{self, DecideError};
    let approve = match decision.as_str() {
        "approve" => true,
        "reject" => false,
        other => {
            return Err(ApiError::new(
                404,
                format!("no action `{other}` (approve or reject)"),
            ));
        }
    };
    let who = caller(&state, &headers).await?;
    let comment = body.map(|b| b.0.comment).unwrap_or_default();
    if comment.len() > 4096 {
        return Err(ApiError::bad_request("comment longer than 4096 bytes"));
    }
    let store = &state.sched.store;
    store.run(&id)?;
    match approval::decide(store, &id, &task, &who.user, &who.groups, approve, &comment) {
        Ok(d) => {
            state.sched.wake.send_modify(|v| *v += 1);
            tracing::info!(run = %id, task = %task, user = %who.user, "{}", d.decision);
            Ok(Json(serde_json::json!({
                "run_id": id, "task": task, "user": who.user, "decision": d.decision,
                "accepted": true, "at": crate::view::time(d.at),
            })))
        }
        Err(DecideError::Refused(why)) => Err(ApiError::forbidden(why)),
        Err(DecideError::NotWaiting(why)) => Err(ApiError::new(409, why)),
        Err(DecideError::Store(e)) => Err(e.into()),
    }
}
