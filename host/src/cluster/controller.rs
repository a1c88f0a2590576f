//! `capstan controller`: watches `PipelineRun`s and executes them in this
//! process as Wasm tasks (no Pod per task), writing their status with
//! server-side apply.
//!
//! Shape (as in kube-rs `controller-rs` and Stackable's operators): the
//! finalizer is the only top-level action; `apply` goes dereference (the
//! `Pipeline` a run names) → validate (the same parser and validator as
//! `capstan run`) → build (pure, [`super::build`]) → apply (create the run in
//! the store, start it) → update status. Invalid runs get a `Succeeded=False`
//! condition with reason `Invalid` and wait for a change; transient errors
//! requeue.
//!
//! The run store and the workspaces live in the state directory (a volume
//! shared by the replicas): a standby that takes over resumes the runs the
//! status names from the store, so succeeded tasks do not run again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt as _;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::{Controller, watcher};
use kube::{Client, Resource as _, ResourceExt as _};

use super::build::{self, Invalid, Waiting};
use super::crd::{PipelineResource, PipelineRunResource, PipelineRunStatus};
use crate::scheduler::{PrepareError, RunOptions, Scheduler};
use crate::store::now_us;

/// The finalizer the controller puts on every run it executes.
pub const FINALIZER: &str = "capstan.dev/run";
/// The field manager of the status the controller applies.
pub const MANAGER: &str = "capstan-controller";

/// How the controller behaves.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Watch one namespace (`None`: all).
    pub namespace: Option<String>,
    /// Concurrent runs per namespace; later runs wait `Queued`, FIFO.
    pub quota: Option<usize>,
    /// Keep a finished run's workspaces this long, then delete them.
    pub workspace_retention: Duration,
    /// Parallel tasks per run.
    pub parallelism: usize,
}

/// Shared state of the reconcilers.
pub struct Context {
    pub client: Client,
    pub sched: Arc<Scheduler>,
    pub settings: Settings,
    /// Runs executing in this process: object uid → (namespace, run id).
    running: Mutex<HashMap<String, (String, String)>>,
    /// Every PipelineRun the controller sees (for the FIFO queue).
    store: kube::runtime::reflector::Store<PipelineRunResource>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0:#}")]
    Other(#[from] anyhow::Error),
}

/// Run the controller until it fails (or its future is dropped, as when the
/// leader lease is lost).
pub async fn run(client: Client, sched: Arc<Scheduler>, settings: Settings) -> anyhow::Result<()> {
    let runs: Api<PipelineRunResource> = match &settings.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    // Fail early, with a clear message, if the CRDs are missing.
    runs.list(&kube::api::ListParams::default().limit(1))
        .await
        .context(
            "listing PipelineRuns (are the CRDs installed? `capstan crds | kubectl apply -f -`)",
        )?;
    let controller = Controller::new(runs, watcher::Config::default());
    let ctx = Arc::new(Context {
        client,
        sched,
        running: Mutex::new(HashMap::new()),
        store: controller.store(),
        settings,
    });
    tokio::spawn(sweep_workspaces(ctx.clone()));
    controller
        .run(reconcile, error_policy, ctx)
        .for_each(|r| async move {
            match r {
                Ok((obj, _)) => tracing::debug!(run = %obj.name, "reconciled"),
                Err(e) => tracing::debug!("reconcile: {e}"),
            }
        })
        .await;
    Ok(())
}

fn error_policy(obj: Arc<PipelineRunResource>, e: &Error, _: Arc<Context>) -> Action {
    tracing::warn!(run = %obj.name_any(), "{e}; retrying in 5 s");
    Action::requeue(Duration::from_secs(5))
}

async fn reconcile(pr: Arc<PipelineRunResource>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = pr.namespace().unwrap_or_else(|| "default".into());
    let api: Api<PipelineRunResource> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer(&api, FINALIZER, pr, |event| async {
        match event {
            Finalizer::Apply(pr) => apply(&pr, &ctx).await,
            Finalizer::Cleanup(pr) => cleanup(&pr, &ctx).await,
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e)
        | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        other => Error::Other(anyhow::anyhow!("{other}")),
    })
}

async fn apply(pr: &PipelineRunResource, ctx: &Arc<Context>) -> Result<Action, Error> {
    let uid = pr.uid().unwrap_or_default();
    let status = pr.status.clone().unwrap_or_default();
    if is_terminal_phase(status.phase.as_deref()) {
        return Ok(Action::await_change());
    }
    if let Some(action) = spec_status(pr, &status, ctx).await? {
        return Ok(action);
    }
    if ctx.running.lock().unwrap().contains_key(&uid) {
        return Ok(Action::await_change());
    }
    // A run the status names: resume it (another replica started it).
    if let Some(id) = &status.run_id {
        return resume(pr, id, ctx).await;
    }
    // Dereference → validate → build. A run already `Queued` was valid
    // when it queued: while it waits, only the (cheap) quota check runs,
    // and it is prepared again when its turn comes.
    let queued = status.phase.as_deref() == Some("Queued");
    let prepared = if queued {
        None
    } else {
        let Some(p) = validated(pr, ctx).await? else {
            return Ok(Action::await_change());
        };
        Some(p)
    };
    // Quota: FIFO per namespace.
    let ns = pr.namespace().unwrap_or_default();
    let me = waiting_entry(pr);
    let waiting: Vec<Waiting> = ctx
        .store
        .state()
        .iter()
        .filter(|o| o.namespace().unwrap_or_default() == ns)
        .filter(|o| {
            let st = o.status.as_ref();
            st.and_then(|s| s.run_id.as_ref()).is_none()
                && !is_terminal_phase(st.and_then(|s| s.phase.as_deref()))
                && o.meta().deletion_timestamp.is_none()
        })
        .map(|o| waiting_entry(o))
        .collect();
    let running_here = ctx
        .running
        .lock()
        .unwrap()
        .values()
        .filter(|(n, _)| *n == ns)
        .count();
    if let Err(ahead) = build::may_start(&me, &waiting, running_here, ctx.settings.quota) {
        let msg = format!(
            "waiting for the namespace quota ({} concurrent runs): {running_here} running, {ahead} queued ahead",
            ctx.settings.quota.unwrap_or(0)
        );
        if status.phase.as_deref() != Some("Queued")
            || status.conditions.first().map(|c| &c.message) != Some(&msg)
        {
            let st = phase_status(pr, "Queued", "Unknown", &msg);
            write_status(ctx, pr, &st).await?;
        }
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let prepared = match prepared {
        Some(p) => p,
        None => {
            let Some(p) = validated(pr, ctx).await? else {
                return Ok(Action::await_change());
            };
            p
        }
    };
    // Apply: record the run, name it in the status, then start it — so a
    // replica that takes over resumes this run rather than starting another.
    let opts = RunOptions {
        parallelism: ctx.settings.parallelism,
        kube: Some(crate::store::KubeIdentity {
            namespace: ns.clone(),
            service_account: Some(
                pr.spec
                    .service_account_name
                    .clone()
                    .unwrap_or_else(|| "default".into()),
            ),
        }),
        triggered_by: Some(crate::store::TriggeredBy::PipelineRun {
            namespace: ns.clone(),
            name: pr.name_any(),
        }),
        ..Default::default()
    };
    let id = match ctx.sched.create(&prepared, &opts) {
        Ok(id) => id,
        // As written it cannot run (a required workspace not bound): the
        // object is Invalid until it changes, not retried.
        Err(e)
            if matches!(
                e.downcast_ref(),
                Some(crate::scheduler::PrepareError::Invalid(_))
            ) =>
        {
            let msg = format!("{e:#}");
            tracing::info!(run = %pr.name_any(), "invalid: {msg}");
            write_status(ctx, pr, &phase_status(pr, "Invalid", "False", &msg)).await?;
            return Ok(Action::await_change());
        }
        Err(e) => return Err(e.into()),
    };
    let rec = ctx.sched.store.run(&id).map_err(anyhow::Error::from)?;
    let tasks = ctx.sched.store.tasks(&id).map_err(anyhow::Error::from)?;
    let mut st = build::status_from_store(&id, &rec, &tasks, pr.metadata.generation, now_us());
    st.phase = Some("Running".into());
    st.start_time = Some(build::rfc3339(now_us()));
    st.conditions = vec![build::condition("Unknown", "Running", "started", now_us())];
    write_status(ctx, pr, &st).await?;
    tracing::info!(run = %pr.name_any(), id, "started");
    start(pr, id, prepared, ctx);
    Ok(Action::await_change())
}

/// Carry out `spec.status` (Tekton's): a stop for a run that has started
/// (the executing task applies it within 100 ms; a run no replica executes
/// is resumed, and stops at once), `Cancelled` for one that has not,
/// `PipelineRunPending` holds a run that has not started. None: go on.
async fn spec_status(
    pr: &PipelineRunResource,
    status: &PipelineRunStatus,
    ctx: &Arc<Context>,
) -> Result<Option<Action>, Error> {
    let Some(asked) = pr.spec.status.as_deref() else {
        return Ok(None);
    };
    if asked == "PipelineRunPending" {
        if status.run_id.is_some() {
            return Ok(None); // Tekton: only before the run starts.
        }
        if status.phase.as_deref() != Some("Pending") {
            let st = phase_status(
                pr,
                "Pending",
                "Unknown",
                "spec.status is PipelineRunPending",
            );
            write_status(ctx, pr, &st).await?;
        }
        return Ok(Some(Action::await_change()));
    }
    let Some(mode) = crate::store::StopMode::parse(asked) else {
        let msg = format!(
            "spec.status: `{asked}` is not one of Cancelled, CancelledRunFinally, \
             StoppedRunFinally, PipelineRunPending"
        );
        write_status(ctx, pr, &phase_status(pr, "Invalid", "False", &msg)).await?;
        return Ok(Some(Action::await_change()));
    };
    let Some(id) = &status.run_id else {
        let msg = format!("cancelled before it started (spec.status: {asked})");
        write_status(ctx, pr, &phase_status(pr, "Cancelled", "False", &msg)).await?;
        return Ok(Some(Action::await_change()));
    };
    let sched = ctx.sched.clone();
    let rid = id.clone();
    let outcome = tokio::task::spawn_blocking(move || sched.stop_run(&rid, mode))
        .await
        .map_err(|e| anyhow::anyhow!("stopping: {e}"))??;
    tracing::info!(run = %pr.name_any(), id, ?outcome, "spec.status: {asked}");
    match outcome {
        crate::scheduler::StopOutcome::Ended(_) => {
            publish(ctx, pr, id).await?;
            Ok(Some(Action::await_change()))
        }
        // Executing here (it stops itself), or to be resumed below (and it
        // stops at its first turn).
        _ => Ok(None),
    }
}

/// A status that is only a phase and its `Succeeded` condition (the phase
/// is also the condition's reason).
fn phase_status(pr: &PipelineRunResource, phase: &str, cond: &str, msg: &str) -> PipelineRunStatus {
    PipelineRunStatus {
        phase: Some(phase.into()),
        conditions: vec![build::condition(cond, phase, msg, now_us())],
        observed_generation: pr.metadata.generation,
        ..Default::default()
    }
}

fn waiting_entry(pr: &PipelineRunResource) -> Waiting {
    Waiting {
        created: pr
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.to_string())
            .unwrap_or_default(),
        name: pr.name_any(),
    }
}

fn is_terminal_phase(p: Option<&str>) -> bool {
    matches!(
        p,
        Some("Succeeded" | "Failed" | "Cancelled" | "TimedOut" | "Invalid")
    )
}

/// [`prepare`], writing the `Invalid` status when the run cannot run as
/// written (`None`).
async fn validated(
    pr: &PipelineRunResource,
    ctx: &Context,
) -> Result<Option<crate::scheduler::Prepared>, Error> {
    match prepare(pr, ctx).await? {
        Ok(p) => Ok(Some(p)),
        Err(Invalid(msg)) => {
            tracing::info!(run = %pr.name_any(), "invalid: {msg}");
            write_status(ctx, pr, &phase_status(pr, "Invalid", "False", &msg)).await?;
            Ok(None)
        }
    }
}

/// Dereference, parse and validate (plugins resolved and loaded).
async fn prepare(
    pr: &PipelineRunResource,
    ctx: &Context,
) -> Result<Result<crate::scheduler::Prepared, Invalid>, Error> {
    let ns = pr.namespace().unwrap_or_else(|| "default".into());
    let pipeline = match &pr.spec.pipeline_ref {
        Some(r) => {
            let api: Api<PipelineResource> = Api::namespaced(ctx.client.clone(), &ns);
            api.get_opt(&r.name).await?
        }
        None => None,
    };
    let text = match build::document_text(pr, pipeline.as_ref()) {
        Ok(t) => t,
        Err(e) => return Ok(Err(e)),
    };
    let mut doc = match crate::pipeline::Document::parse(&build::source_name(pr), &text) {
        Ok(d) => d,
        Err(d) => return Ok(Err(Invalid(d.to_string()))),
    };
    if let Err(e) = build::check_uses(&doc) {
        return Ok(Err(e));
    }
    doc.base_dir = ctx.sched.state_dir.join("runs-base");
    let sched = ctx.sched.clone();
    let prepared = tokio::task::spawn_blocking(move || sched.prepare(doc, &[], None))
        .await
        .map_err(|e| anyhow::anyhow!("preparing: {e}"))?;
    match prepared {
        Ok(p) => Ok(Ok(p)),
        Err(PrepareError::Invalid(d)) => Ok(Err(Invalid(d.to_string()))),
        Err(PrepareError::Other(e)) => Err(Error::Other(e)),
    }
}

/// Resume a run the status names, unless it already finished (then only
/// its final status is written again).
async fn resume(pr: &PipelineRunResource, id: &str, ctx: &Arc<Context>) -> Result<Action, Error> {
    let rec = match ctx.sched.store.run(id) {
        Ok(r) => r,
        Err(crate::store::StoreError::NoSuchRun(_)) => {
            let msg = format!(
                "run {id} is not in the run store at {} (was the volume replaced?)",
                ctx.sched.state_dir.display()
            );
            let st = PipelineRunStatus {
                phase: Some("Failed".into()),
                conditions: vec![build::condition("False", "RunLost", &msg, now_us())],
                run_id: Some(id.to_string()),
                ..Default::default()
            };
            write_status(ctx, pr, &st).await?;
            return Ok(Action::await_change());
        }
        Err(e) => return Err(Error::Other(e.into())),
    };
    if rec.status.is_terminal() {
        publish(ctx, pr, id).await?;
        return Ok(Action::await_change());
    }
    let sched = ctx.sched.clone();
    let rid = id.to_string();
    let prepared = tokio::task::spawn_blocking(move || sched.reload(&rid))
        .await
        .map_err(|e| anyhow::anyhow!("reloading: {e}"))?
        .map_err(|e| anyhow::anyhow!("reloading run {id}: {e}"))?;
    tracing::info!(run = %pr.name_any(), id, "resuming a run started by another replica");
    start(pr, id.to_string(), prepared, ctx);
    Ok(Action::await_change())
}

/// Execute a recorded run in the background, publishing its status as
/// tasks change state.
fn start(
    pr: &PipelineRunResource,
    id: String,
    prepared: crate::scheduler::Prepared,
    ctx: &Arc<Context>,
) {
    let uid = pr.uid().unwrap_or_default();
    let ns = pr.namespace().unwrap_or_default();
    ctx.running
        .lock()
        .unwrap()
        .insert(uid.clone(), (ns, id.clone()));
    let ctx = ctx.clone();
    let pr = pr.clone();
    tokio::spawn(async move {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let sched = ctx.sched.clone();
        let rid = id.clone();
        let exec = tokio::spawn(async move { sched.execute(&rid, &prepared, Some(tx)).await });
        // Publish on task state changes, at most every 250 ms.
        let mut dirty = false;
        loop {
            tokio::select! {
                ev = rx.recv() => match ev {
                    Some(crate::scheduler::Event::Task { .. }) => dirty = true,
                    Some(_) => {}
                    None => break,
                },
                _ = tokio::time::sleep(Duration::from_millis(250)), if dirty => {
                    dirty = false;
                    if let Err(e) = publish(&ctx, &pr, &id).await {
                        tracing::warn!(id, "publishing status: {e}");
                    }
                }
            }
        }
        match exec.await {
            Ok(Ok(status)) => tracing::info!(id, "finished: {status:?}"),
            Ok(Err(e)) => tracing::error!(id, "run failed to execute: {e:#}"),
            Err(e) => tracing::error!(id, "run task panicked: {e}"),
        }
        // The final status, retried until the API server takes it.
        for attempt in 0.. {
            match publish(&ctx, &pr, &id).await {
                Ok(()) => break,
                Err(Error::Kube(kube::Error::Api(e))) if e.code == 422 => {
                    // The API server refuses this status: retrying cannot help.
                    tracing::error!(id, "the API server refused the final status: {}", e.message);
                    break;
                }
                Err(e) if attempt < 60 => {
                    tracing::warn!(id, "publishing the final status: {e}; retrying");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
                Err(e) => {
                    tracing::error!(id, "giving up publishing the final status: {e}");
                    break;
                }
            }
        }
        ctx.running.lock().unwrap().remove(&uid);
    });
}

/// Write the run's status from the store.
async fn publish(ctx: &Context, pr: &PipelineRunResource, id: &str) -> Result<(), Error> {
    let store = ctx.sched.store.clone();
    let rid = id.to_string();
    let (rec, tasks) = tokio::task::spawn_blocking(move || {
        Ok::<_, crate::store::StoreError>((store.run(&rid)?, store.tasks(&rid)?))
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?
    .map_err(anyhow::Error::from)?;
    let st = build::status_from_store(id, &rec, &tasks, pr.metadata.generation, now_us());
    write_status(ctx, pr, &st).await
}

/// Server-side apply of the status subresource.
async fn write_status(
    ctx: &Context,
    pr: &PipelineRunResource,
    status: &PipelineRunStatus,
) -> Result<(), Error> {
    let ns = pr.namespace().unwrap_or_else(|| "default".into());
    let api: Api<PipelineRunResource> = Api::namespaced(ctx.client.clone(), &ns);
    let body = serde_json::json!({
        "apiVersion": PipelineRunResource::api_version(&()),
        "kind": PipelineRunResource::kind(&()),
        "status": status,
    });
    api.patch_status(
        &pr.name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await?;
    Ok(())
}

/// The run object is being deleted: cancel its run and remove its
/// workspaces.
async fn cleanup(pr: &PipelineRunResource, ctx: &Arc<Context>) -> Result<Action, Error> {
    let Some(id) = pr.status.as_ref().and_then(|s| s.run_id.clone()) else {
        return Ok(Action::await_change());
    };
    let sched = ctx.sched.clone();
    let rid = id.clone();
    let ns = pr.namespace().unwrap_or_default();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        if let Err(e) = sched.cancel_run(&rid) {
            tracing::warn!(
                id = rid,
                "cancelling the run of a deleted PipelineRun: {e:#}"
            );
        }
        // Wait (bounded) for the executing task to stop before deleting.
        for _ in 0..100 {
            if !crate::scheduler::run_is_active(&sched.state_dir, &rid) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        remove_workspaces(&sched.state_dir, &rid)?;
        let tenant = crate::scheduler::tenant_root(&sched.state_dir, &ns);
        remove_workspaces(&tenant, &rid)?;
        remove_dir(&tenant.join("steps").join(&rid))
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))??;
    tracing::info!(run = %pr.name_any(), id, "deleted: run cancelled, workspaces removed");
    Ok(Action::await_change())
}

/// `ROOT/workspaces/RUN` (ROOT: the state directory or a namespace's).
fn remove_workspaces(root: &std::path::Path, run_id: &str) -> anyhow::Result<()> {
    remove_dir(&root.join("workspaces").join(run_id))
}

fn remove_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", dir.display())),
    }
}

/// Every minute: delete the workspaces of runs that finished longer ago
/// than the retention setting.
async fn sweep_workspaces(ctx: Arc<Context>) {
    loop {
        let sched = ctx.sched.clone();
        let keep = ctx.settings.workspace_retention;
        let _ = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            // Runs' own directories: `STATE/workspaces/RUN` and, per
            // namespace, `STATE/tenants/NS/{workspaces,steps}/RUN`.
            let mut roots = vec![sched.state_dir.clone()];
            if let Ok(tenants) = std::fs::read_dir(sched.state_dir.join("tenants")) {
                roots.extend(tenants.flatten().map(|e| e.path()));
            }
            let cutoff = now_us() - keep.as_micros() as i64;
            for root in roots {
                for kind in ["workspaces", "steps"] {
                    let Ok(entries) = std::fs::read_dir(root.join(kind)) else {
                        continue;
                    };
                    for e in entries.flatten() {
                        let id = e.file_name().to_string_lossy().into_owned();
                        if let Ok(rec) = sched.store.run(&id)
                            && rec.status.is_terminal()
                            && rec.finished_at.is_some_and(|f| f < cutoff)
                        {
                            remove_dir(&e.path())?;
                            tracing::info!(id, kind, "removed (retention)");
                        }
                    }
                }
            }
            Ok(())
        })
        .await;
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
}
