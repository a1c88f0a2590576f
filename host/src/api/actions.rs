//! What a caller may do to a run: cancel or stop it, re-run it, decide an
//! approval gate. Each action takes the caller's [`Identity`], so the API
//! (bearer tokens) and the web UI (sessions) check the same rights the same
//! way; the `/v1` handlers here are thin wrappers.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{ApiError, ApiResult, ApiState, Identity, caller};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct DecideBody {
    #[serde(default)]
    comment: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct CancelBody {
    /// Run the `finally` tasks after stopping the running ones.
    #[serde(default)]
    run_finally: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RerunBody {
    /// Reuse the results of the tasks that succeeded.
    #[serde(default)]
    failed: bool,
}

/// `POST /v1/runs/{id}/cancel` (`{"run_finally": true}` for Tekton's
/// `CancelledRunFinally`).
pub(super) async fn cancel(
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
    let who = caller(&state, &headers).await?;
    let (code, body) = stop_run(&state, &who, &id, mode).await?;
    Ok((code, Json(body)).into_response())
}

/// `POST /v1/runs/{id}/stop`: Tekton's `StoppedRunFinally`.
pub(super) async fn stop(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let who = caller(&state, &headers).await?;
    let (code, body) = stop_run(&state, &who, &id, crate::store::StopMode::Stop).await?;
    Ok((code, Json(body)).into_response())
}

/// Cancel or stop run `id` as `who`: the answer's status and body.
pub async fn stop_run(
    state: &ApiState,
    who: &Identity,
    id: &str,
    mode: crate::store::StopMode,
) -> ApiResult<(StatusCode, serde_json::Value)> {
    use crate::scheduler::StopOutcome;
    let rec = state.sched.store.run(id)?;
    let ns = rec.spec.kube.as_ref().map(|k| k.namespace.as_str());
    state.auth.may_stop(who, ns).await?;
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
    Ok((code, body))
}

/// `POST /v1/runs/{id}/rerun` (`{"failed": true}`): a new run of the same
/// pipeline, params and plugins, executed by this server. Runs of
/// PipelineRun objects are re-run in Kubernetes, by creating one.
pub(super) async fn rerun_handler(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Option<Json<RerunBody>>,
) -> ApiResult<Response> {
    let who = caller(&state, &headers).await?;
    let failed = body.is_some_and(|b| b.0.failed);
    let new_id = rerun(&state, &who, &id, failed).await?;
    let body = serde_json::json!({ "run_id": new_id, "rerun_of": id, "failed_only": failed });
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

/// Re-run `id` as `who` (only the failed tasks when `failed`), executed by
/// this server: the new run's id.
pub async fn rerun(state: &ApiState, who: &Identity, id: &str, failed: bool) -> ApiResult<String> {
    let rec = state.sched.store.run(id)?;
    if rec.spec.kube.is_some() {
        return Err(ApiError::new(
            409,
            "this run is a PipelineRun's: re-run it by creating the PipelineRun again (kubectl create)",
        ));
    }
    state.auth.may_stop(who, None).await?;
    let sched = state.sched.clone();
    let (new_id, prepared) = {
        let (sched, id, user) = (sched.clone(), id.to_string(), who.user.clone());
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
    Ok(new_id)
}

pub(super) async fn decide_handler(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Path((id, task, decision)): Path<(String, String, String)>,
    body: Option<Json<DecideBody>>,
) -> ApiResult<Json<serde_json::Value>> {
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
    decide(&state, &who, &id, &task, approve, &comment)
        .await
        .map(Json)
}

/// Approve or reject the gate of `task` in run `id` as `who`, who must be
/// one of its approvers. Someone who is neither an approver nor may read
/// the run is refused without a trace: nothing is recorded (no refusals
/// piling up in the approvers' inbox) and the answer says no more than
/// the read check does.
pub async fn decide(
    state: &ApiState,
    who: &Identity,
    id: &str,
    task: &str,
    approve: bool,
    comment: &str,
) -> ApiResult<serde_json::Value> {
    use crate::scheduler::approval::{self, DecideError};
    if comment.len() > 4096 {
        return Err(ApiError::bad_request("comment longer than 4096 bytes"));
    }
    let store = &state.sched.store;
    if let Err(e) = super::readable_run(state, who, id).await {
        let listed = store
            .wait(id, task)?
            .map(|w| approval::approvers(&w.detail))
            .unwrap_or_default();
        if !approval::may_decide(&listed, &who.user, &who.groups) {
            return Err(e);
        }
    }
    match approval::decide(store, id, task, &who.user, &who.groups, approve, comment) {
        Ok(d) => {
            state.sched.wake.send_modify(|v| *v += 1);
            tracing::info!(run = %id, task = %task, user = %who.user, "{}", d.decision);
            Ok(serde_json::json!({
                "run_id": id, "task": task, "user": who.user, "decision": d.decision,
                "accepted": true, "at": crate::view::time(d.at),
            }))
        }
        Err(DecideError::Refused(why)) => Err(ApiError::forbidden(why)),
        Err(DecideError::NotWaiting(why)) => Err(ApiError::new(409, why)),
        Err(DecideError::Store(e)) => Err(e.into()),
    }
}
