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
//! | `GET /v1/registry`, `GET /v1/registry/{name}` | plugins; a plugin's versions, signatures and policy verdicts ([`catalog`]) |
//! | `GET /ui/…` | the web UI ([`ui`]; sessions, not bearer tokens) |
//!
//! Every `/v1` call needs `Authorization: Bearer TOKEN` ([`auth`]). Errors
//! are JSON `{"error": "..."}` with a meaningful status. The web UI acts
//! through the same functions ([`actions`], [`visible_runs`], …) with the
//! session's identity.

pub mod actions;
pub mod auth;
pub mod catalog;
pub mod client;
pub mod hooks;
pub mod listener;
pub mod ui;

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
    /// The web UI's browser sessions.
    pub ui: ui::Sessions,
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
        .route("/v1/runs/{id}/cancel", post(actions::cancel))
        .route("/v1/runs/{id}/stop", post(actions::stop))
        .route("/v1/runs/{id}/rerun", post(actions::rerun_handler))
        .route("/v1/approvals", get(approvals))
        .route(
            "/v1/runs/{id}/tasks/{task}/{decision}",
            post(actions::decide_handler),
        )
        .route("/v1/registry", get(registry_list))
        .route("/v1/registry/{name}", get(registry_versions))
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
        .merge(ui::router(state.clone()))
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
pub(crate) async fn caller(state: &ApiState, headers: &HeaderMap) -> ApiResult<Identity> {
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
    readable_run(state, &who, id).await?;
    Ok(who)
}

/// Run `id`, if `who` may read it.
pub(crate) async fn readable_run(
    state: &ApiState,
    who: &Identity,
    id: &str,
) -> ApiResult<crate::store::RunRecord> {
    let rec = state.sched.store.run(id)?;
    let ns = rec.spec.kube.as_ref().map(|k| k.namespace.as_str());
    state.auth.may_read(who, ns).await?;
    Ok(rec)
}

/// [`Auth::may_read`], asked once per namespace of a listing.
pub(crate) async fn may_read_cached(
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

#[derive(Deserialize, Default)]
pub(crate) struct ListQuery {
    pub(crate) limit: Option<usize>,
    pub(crate) status: Option<String>,
    pub(crate) pipeline: Option<String>,
    pub(crate) repository: Option<String>,
    pub(crate) branch: Option<String>,
    /// What started the runs: cli, pipeline-run, webhook, schedule, rerun.
    pub(crate) trigger: Option<String>,
    /// A run's `cursor`: the page after it.
    pub(crate) before: Option<String>,
}

impl ListQuery {
    /// The store's filter; an empty value (an HTML form's) is no filter.
    pub(crate) fn filter(&self) -> ApiResult<crate::store::RunFilter> {
        let bad = |e: String| ApiError::new(400, e);
        let some = |v: &Option<String>| v.clone().filter(|v| !v.is_empty());
        Ok(crate::store::RunFilter {
            status: self
                .status
                .as_deref()
                .map(str::parse)
                .transpose()
                .map_err(bad)?,
            pipeline: some(&self.pipeline),
            repository: some(&self.repository),
            branch: some(&self.branch),
            trigger: some(&self.trigger),
            before: self
                .before
                .as_deref()
                .map(str::parse)
                .transpose()
                .map_err(bad)?,
        })
    }
}

/// A page of the runs `who` may read, and the cursor of the next page.
pub(crate) async fn visible_runs(
    state: &ApiState,
    who: &Identity,
    q: &ListQuery,
) -> ApiResult<(Vec<crate::store::RunRecord>, Option<String>)> {
    let limit = q.limit.unwrap_or(50).clamp(1, 1000);
    let filter = q.filter()?;
    let store = state.sched.store.clone();
    let runs = tokio::task::spawn_blocking(move || store.list_runs_page(&filter, limit))
        .await
        .map_err(ApiError::internal)??;
    // The next page starts after the last run read, even when the caller
    // may not see it (a page filtered to nothing still has a next one).
    let next = (runs.len() == limit)
        .then(|| runs.last().map(|r| crate::store::Cursor::of(r).to_string()))
        .flatten();
    let mut out = Vec::new();
    let mut allowed: std::collections::HashMap<Option<String>, bool> = Default::default();
    for r in runs {
        let ns = r.spec.kube.as_ref().map(|k| k.namespace.clone());
        if may_read_cached(state, who, &mut allowed, &ns).await {
            out.push(r);
        }
    }
    Ok((out, next))
}

async fn list_runs(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> ApiResult<Response> {
    let who = caller(&state, &headers).await?;
    let (runs, next) = visible_runs(&state, &who, &q).await?;
    let out: Vec<_> = runs
        .iter()
        .map(|r| {
            serde_json::json!({
                "run_id": r.id, "pipeline": r.pipeline, "status": r.status.as_str(),
                "namespace": r.spec.kube.as_ref().map(|k| &k.namespace), "number": r.number,
                "triggered_by": r.spec.triggered_by,
                "cursor": crate::store::Cursor::of(r).to_string(),
                "created": crate::view::time(r.created_at),
                "start": r.started_at.map(crate::view::time),
                "end": r.finished_at.map(crate::view::time),
            })
        })
        .collect();
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
    /// Only this attempt's lines (with `task`).
    attempt: Option<u32>,
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
        .logs(&id, q.task.as_deref(), q.attempt, q.after, limit)?
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
    visible_waits(&state, &who).await.map(Json)
}

/// The gates waiting for a decision in runs `who` may read.
pub(crate) async fn visible_waits(
    state: &ApiState,
    who: &Identity,
) -> ApiResult<serde_json::Value> {
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
        if may_read_cached(state, who, &mut allowed, &ns).await {
            let decisions = store.decisions(&w.run_id)?;
            out.push(crate::scheduler::approval::pending_json(&w, &decisions));
        }
    }
    Ok(serde_json::Value::Array(out))
}

/// `GET /v1/registry`: the registry's plugins.
async fn registry_list(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
) -> ApiResult<Json<Vec<catalog::PluginRow>>> {
    caller(&state, &headers).await?;
    let sched = state.sched.clone();
    tokio::task::spawn_blocking(move || catalog::plugins(&sched))
        .await
        .map_err(ApiError::internal)?
        .map(Json)
        .map_err(|e| ApiError::internal(format!("{e:#}")))
}

/// `GET /v1/registry/{name}`: one plugin's versions.
async fn registry_versions(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<Json<Vec<catalog::VersionView>>> {
    caller(&state, &headers).await?;
    plugin_versions(&state, name).await.map(Json)
}

/// A plugin's versions, read off the async threads (components are read
/// and checked); 404 for a name the registry does not have.
pub(crate) async fn plugin_versions(
    state: &ApiState,
    name: String,
) -> ApiResult<Vec<catalog::VersionView>> {
    if !crate::manifest::is_name(&name) {
        return Err(ApiError::new(404, format!("no plugin `{name}`")));
    }
    let sched = state.sched.clone();
    let listed = {
        let sched = sched.clone();
        tokio::task::spawn_blocking(move || sched.registry.list())
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::internal)?
    };
    if !listed.contains(&name) {
        return Err(ApiError::new(404, format!("no plugin `{name}`")));
    }
    tokio::task::spawn_blocking(move || catalog::versions(&sched, &name))
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| ApiError::internal(format!("{e:#}")))
}
