//! `POST /v1/hooks/github`, `POST /v1/hooks/gitlab`: forge webhooks (no
//! bearer token: the signature or secret token of the repository
//! authenticates them; see [`crate::forge::intake`]). `GET /v1/repos` and
//! `GET /v1/repos/{name}/deliveries` (a Repository resource's:
//! `/v1/repos/{namespace}/{name}/deliveries`) show the repositories and
//! what their deliveries did.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{ApiError, ApiResult, ApiState, caller};
use crate::forge::Provider;
use crate::forge::intake::Headers;

/// The largest payload taken (GitHub caps its deliveries at 25 MB).
pub const MAX_PAYLOAD: usize = 25 << 20;

fn header(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

pub(crate) fn forge(state: &ApiState) -> ApiResult<&Arc<crate::forge::intake::Forge>> {
    state
        .forge
        .as_ref()
        .ok_or_else(|| ApiError::new(404, "this server takes no webhooks"))
}

async fn receive(
    state: &ApiState,
    provider: Provider,
    headers: Headers,
    body: bytes::Bytes,
) -> ApiResult<Response> {
    let answer = forge(state)?.receive(provider, headers, body).await;
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    Ok((status, Json(answer.body)).into_response())
}

pub async fn github(
    State(state): State<Arc<ApiState>>,
    h: HeaderMap,
    body: bytes::Bytes,
) -> ApiResult<Response> {
    let headers = Headers {
        event: header(&h, "x-github-event"),
        delivery: header(&h, "x-github-delivery"),
        signature: header(&h, "x-hub-signature-256"),
    };
    receive(&state, Provider::Github, headers, body).await
}

pub async fn gitlab(
    State(state): State<Arc<ApiState>>,
    h: HeaderMap,
    body: bytes::Bytes,
) -> ApiResult<Response> {
    let headers = Headers {
        event: header(&h, "x-gitlab-event"),
        delivery: header(&h, "idempotency-key").or_else(|| header(&h, "x-gitlab-event-uuid")),
        signature: header(&h, "x-gitlab-token"),
    };
    receive(&state, Provider::Gitlab, headers, body).await
}

/// `POST /v1/runs/{id}/ok-to-test`: approve a run of an untrusted pull
/// request (whoever may stop the run may): the pull request's own
/// pipelines run at that run's commit, trusted.
pub async fn ok_to_test(
    State(state): State<Arc<ApiState>>,
    h: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let who = caller(&state, &h).await?;
    let f = forge(&state)?;
    let run = state.sched.store.run(&id)?;
    let ns = run.spec.kube.as_ref().map(|k| k.namespace.as_str());
    state.auth.may_stop(&who, ns).await?;
    let answer = f.ok_to_test(&run, &who.user).await;
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    Ok((status, Json(answer.body)).into_response())
}

/// `GET /v1/repos`: names and specs (secret names, never values).
pub async fn repos(
    State(state): State<Arc<ApiState>>,
    h: HeaderMap,
) -> ApiResult<Json<serde_json::Value>> {
    let who = caller(&state, &h).await?;
    visible_repos(&state, &who)
        .await
        .map(|r| Json(serde_json::Value::Array(r)))
}

/// The repositories whose runs `who` may read: name, namespace, spec, and
/// the runs running and waiting for each.
pub(crate) async fn visible_repos(
    state: &ApiState,
    who: &super::Identity,
) -> ApiResult<Vec<serde_json::Value>> {
    let f = forge(state)?;
    let repos = f.repos.list().map_err(ApiError::internal)?;
    let mut out = Vec::new();
    // Each repository only to whoever may read runs where it runs (asked
    // once per namespace).
    let mut allowed: std::collections::HashMap<Option<String>, bool> = Default::default();
    for e in &repos {
        let ns = e.kube.as_ref().map(|k| k.namespace.clone());
        if !super::may_read_cached(state, who, &mut allowed, &ns).await {
            continue;
        }
        let (running, waiting) = f.queue.snapshot(&e.name);
        out.push(serde_json::json!({
            "name": e.name, "namespace": ns, "spec": e.spec, "running": running, "waiting": waiting,
        }));
    }
    Ok(out)
}

#[derive(serde::Deserialize)]
pub struct DeliveriesQuery {
    limit: Option<usize>,
}

/// `GET /v1/repos/{name}/deliveries?limit=N`: newest first.
pub async fn deliveries(
    State(state): State<Arc<ApiState>>,
    h: HeaderMap,
    Path(name): Path<String>,
    Query(q): Query<DeliveriesQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    list_deliveries(&state, &h, None, name, q).await
}

/// `GET /v1/repos/{namespace}/{name}/deliveries?limit=N`: a Repository
/// resource's, for whoever may get PipelineRuns in its namespace.
pub async fn namespaced_deliveries(
    State(state): State<Arc<ApiState>>,
    h: HeaderMap,
    Path((ns, name)): Path<(String, String)>,
    Query(q): Query<DeliveriesQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    for part in [&ns, &name] {
        crate::caps::secrets::check_name(part).map_err(|e| ApiError::new(400, e))?;
    }
    let full = format!("{ns}/{name}");
    list_deliveries(&state, &h, Some(&ns), full, q).await
}

async fn list_deliveries(
    state: &ApiState,
    h: &HeaderMap,
    ns: Option<&str>,
    name: String,
    q: DeliveriesQuery,
) -> ApiResult<Json<serde_json::Value>> {
    let who = caller(state, h).await?;
    state.auth.may_read(&who, ns).await?;
    forge(state)?;
    let list = state
        .sched
        .store
        .deliveries(Some(&name), q.limit.unwrap_or(50).min(1000))?;
    Ok(Json(
        serde_json::to_value(list).map_err(ApiError::internal)?,
    ))
}
