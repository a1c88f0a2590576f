//! One task attempt: a fresh store with the task's WASI context and
//! capability states, the call under the attempt's timeout and abort, and
//! what it returned, checked against the limits and the manifest.

use super::*;

impl Runtime {
    /// Execute one task attempt. Never panics on guest misbehaviour: traps,
    /// limit violations and timeouts come back as a failed [`AttemptReport`].
    pub async fn run(&self, plugin: &Plugin, inv: Invocation) -> AttemptReport {
        self.call(plugin, inv, Call::Run).await
    }

    /// Call `run` or `resume`. A suspendable plugin may answer with a
    /// suspend request ([`AttemptReport::suspend`]); its instance is gone
    /// when this returns.
    pub async fn call(&self, plugin: &Plugin, inv: Invocation, call: Call) -> AttemptReport {
        let started = Instant::now();
        let mut entered = None;
        let redactor = inv.redactor.clone();
        let sink = inv.sink.clone();
        let outcome = self.run_inner(plugin, inv, call, &mut entered).await;
        // The one choke point for everything else a task hands back.
        let (outcome, suspend) = match outcome {
            Ok((r, s)) => (
                Ok(redactor.results(&*sink, r)),
                s.map(|mut s| {
                    // Stored with the run and shown to people (approval
                    // listings, notifications, refusal reasons).
                    redactor.suspend(&mut s.kind, &mut s.state, &mut s.detail);
                    s
                }),
            ),
            Err((kind, message)) => (Err((kind, redactor.string(message))), None),
        };
        AttemptReport {
            outcome,
            suspend,
            started,
            entered,
            finished: Instant::now(),
        }
    }

    /// Whether a plugin exports `suspendable-task`.
    pub fn is_suspendable(plugin: &Plugin) -> bool {
        matches!(plugin.pre, Pre::Suspendable(_))
    }

    async fn run_inner(
        &self,
        plugin: &Plugin,
        mut inv: Invocation,
        call: Call,
        entered: &mut Option<Instant>,
    ) -> Result<(Vec<(String, String)>, Option<Suspend>), (FailureKind, String)> {
        let param_bytes: usize = inv.params.iter().map(|(k, v)| k.len() + v.byte_len()).sum();
        if param_bytes > inv.limits.param_bytes {
            return Err((
                FailureKind::LimitExceeded,
                format!(
                    "params total {param_bytes} bytes; the limit is {} bytes",
                    inv.limits.param_bytes
                ),
            ));
        }
        let input = task_input(&inv);
        let limits = inv.limits.clone();
        let abort = inv.abort.clone();
        let report_sink = inv.sink.clone();
        let redactor = inv.redactor.clone();
        let task_results = std::mem::take(&mut inv.task_results);
        let (mut store, stdio, budget) = self.new_store(inv)?;
        let guest = guarded(
            call_guest(&plugin.pre, &mut store, &input, call),
            limits.timeout,
            abort,
        )
        .await;
        stdio.iter().for_each(StdioCapture::flush_partial);
        *entered = store.data().caps.log.entered;
        let results = match guest {
            Err(failure) => return Err(failure),
            Ok(Err(trap)) => return Err(trapped(&mut store, &trap, limits.handles)),
            Ok(Ok(Err(e))) => return Err(task_error(e)),
            Ok(Ok(Ok(Step::Done(results)))) => results,
            Ok(Ok(Ok(Step::Suspend(req)))) => {
                return check_suspend(req, limits.result_bytes).map(|s| (Vec::new(), Some(s)));
            }
        };
        let out = check_results(
            plugin,
            &task_results,
            results,
            limits.result_bytes,
            &*report_sink,
            &redactor,
        )?;
        if budget.truncated() {
            report_sink.log(
                LogLevel::Warn,
                "note: log output of this attempt was truncated at the log limit",
            );
        }
        Ok((out, None))
    }

    /// A fresh store for one attempt: WASI with the task's workspaces and
    /// its output captured, every capability's state, the memory limit and
    /// epoch yielding.
    #[allow(clippy::type_complexity)]
    fn new_store(
        &self,
        inv: Invocation,
    ) -> Result<(Store<TaskState>, [StdioCapture; 2], Arc<Budget>), (FailureKind, String)> {
        // Secret values are redacted from everything the task writes (see
        // `caps::redact`): its output here, the rest of its report in `call`.
        let sink: Arc<dyn TaskSink> = if inv.redactor.is_empty() {
            inv.sink.clone()
        } else {
            Arc::new(crate::caps::log::Redacting::new(
                inv.sink.clone(),
                inv.redactor.clone(),
            ))
        };
        let budget = Budget::new(inv.limits.log_bytes, inv.redactor.clone());
        let stdout = StdioCapture::new(sink.clone(), budget.clone(), LogLevel::Info);
        let stderr = StdioCapture::new(sink.clone(), budget.clone(), LogLevel::Warn);
        let mut builder = WasiCtxBuilder::new();
        builder.stdout(stdout.clone()).stderr(stderr.clone());
        network::deny_all(&mut builder, sink.clone());
        for ws in &inv.workspaces {
            ws.preopen(&mut builder)
                .map_err(|e| (FailureKind::Setup, format!("{e:#}")))?;
        }
        let memory_cap = inv.limits.memory_bytes.min(self.config.max_memory_bytes);
        let mut table = ResourceTable::new();
        table.set_max_capacity(inv.limits.handles);
        let task = TaskCtx {
            sink,
            budget: budget.clone(),
            mounts: inv.workspaces.into(),
            memory_cap,
        };
        let state = TaskState {
            wasi: builder.build(),
            limiter: Limiter::new(memory_cap, 100_000),
            caps: States::new(table, task, inv.grants),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|_| Ok(UpdateDeadline::Yield(1)));
        Ok((store, [stdout, stderr], budget))
    }
}

use bindings::suspendable::{Outcome as WitOutcome, Step};

/// What the guest's `run` or `resume` returned, or how it trapped.
type GuestResult = wasmtime::Result<Result<Step, bindings::TaskError>>;

/// The plugin's input: its params and workspaces as it sees them.
fn task_input(inv: &Invocation) -> bindings::TaskInput {
    bindings::TaskInput {
        info: bindings::TaskInfo {
            run_id: inv.run_id.clone(),
            task_name: inv.task_name.clone(),
            attempt: inv.attempt,
        },
        params: inv
            .params
            .iter()
            .map(|(n, v)| bindings::Param {
                name: n.clone(),
                value: to_wit(v),
            })
            .collect(),
        workspaces: inv
            .workspaces
            .iter()
            .map(|w| bindings::Workspace {
                name: w.name.clone(),
                path: w.guest_path(),
                read_only: w.read_only,
            })
            .collect(),
    }
}

/// Instantiate the plugin and call `run` (or `resume`).
async fn call_guest(
    pre: &Pre,
    store: &mut Store<TaskState>,
    input: &bindings::TaskInput,
    call: Call,
) -> GuestResult {
    match (pre, call) {
        (Pre::Task(pre), Call::Run) => {
            let instance = pre.instantiate_async(&mut *store).await?;
            instance
                .capstan_plugin_task()
                .call_run(&mut *store, input)
                .await
                .map(|r| r.map(Step::Done))
        }
        (Pre::Task(_), Call::Resume { .. }) => Ok(Err(bindings::TaskError::Failed(
            "this plugin cannot be resumed (it does not export suspendable-task)".into(),
        ))),
        (Pre::Suspendable(pre), call) => {
            let instance = pre.instantiate_async(&mut *store).await?;
            let task = instance.capstan_plugin_suspendable_task();
            match call {
                Call::Run => task.call_run(&mut *store, input).await,
                Call::Resume { state, outcome } => {
                    let outcome = match outcome {
                        Outcome::Event(e) => WitOutcome::Event(e),
                        Outcome::TimedOut => WitOutcome::TimedOut,
                    };
                    task.call_resume(&mut *store, input, &state, &outcome).await
                }
            }
        }
    }
}

/// Run the guest call under the attempt's timeout, and stop it when told
/// from outside (the run's disk budget): either way the instance is
/// dropped at its next yield.
async fn guarded(
    call: impl Future<Output = GuestResult>,
    timeout: Option<Duration>,
    mut abort: Option<tokio::sync::watch::Receiver<Option<String>>>,
) -> Result<GuestResult, (FailureKind, String)> {
    let aborted = async move {
        match abort.as_mut() {
            Some(rx) => {
                let got = rx
                    .wait_for(Option::is_some)
                    .await
                    .map(|m| m.clone().unwrap_or_default());
                match got {
                    Ok(m) => m,
                    Err(_) => std::future::pending().await,
                }
            }
            None => std::future::pending().await,
        }
    };
    let call = async {
        tokio::select! {
            r = call => Ok(r),
            m = aborted => Err((FailureKind::LimitExceeded, m)),
        }
    };
    match timeout {
        Some(t) => tokio::time::timeout(t, call).await.unwrap_or_else(|_| {
            Err((
                FailureKind::TimedOut,
                format!("timed out after {}", humantime(t)),
            ))
        }),
        None => call.await,
    }
}

/// Why a trap happened, in the task's terms: over a limit, or a trap.
fn trapped(
    store: &mut Store<TaskState>,
    trap: &wasmtime::Error,
    handles: usize,
) -> (FailureKind, String) {
    if let Some(msg) = store.data_mut().limiter.exceeded.take() {
        return (FailureKind::LimitExceeded, msg);
    }
    if trap.chain().any(|c| {
        matches!(
            c.downcast_ref::<wasmtime::component::ResourceTableError>(),
            Some(wasmtime::component::ResourceTableError::Full)
        )
    }) {
        return (
            FailureKind::LimitExceeded,
            format!(
                "the task held more than {handles} handles (open files, directories, streams) at once"
            ),
        );
    }
    (
        FailureKind::Trapped,
        format!("the plugin trapped: {}", trap_message(trap)),
    )
}

/// The results, within the size limit and declared by the manifest (or
/// by the task, for a plugin that passes a command's on: what the command
/// wrote beyond those is dropped with a warning, as Tekton reads only the
/// declared ones).
fn check_results(
    plugin: &Plugin,
    task_results: &[String],
    results: Vec<bindings::TaskResult>,
    limit: usize,
    sink: &dyn TaskSink,
    redactor: &Redactor,
) -> Result<Vec<(String, String)>, (FailureKind, String)> {
    let size: usize = results.iter().map(|r| r.name.len() + r.value.len()).sum();
    if size > limit {
        return Err((
            FailureKind::LimitExceeded,
            format!("results total {size} bytes; the limit is {limit} bytes"),
        ));
    }
    let manifest = &plugin.info.manifest;
    let mut out = Vec::with_capacity(results.len());
    for r in results {
        if manifest.results.iter().any(|d| d.name == r.name)
            || (manifest.task_results && task_results.contains(&r.name))
        {
            out.push((r.name, r.value));
        } else if manifest.task_results {
            sink.log(
                LogLevel::Warn,
                &format!(
                    "result `{}` was written but the task does not declare it (`results:`): dropped",
                    // A name is anything a script chose (a secret, too).
                    redactor.string(crate::caps::log::one_line(&r.name))
                ),
            );
        } else {
            return Err((
                FailureKind::Failed,
                format!(
                    "the plugin returned result `{}`, which its manifest does not declare",
                    r.name
                ),
            ));
        }
    }
    Ok(out)
}

/// Check a suspend request: a kind this host understands, JSON detail, and
/// state + detail within the results limit (they are stored with the run).
fn check_suspend(
    req: bindings::suspendable::SuspendRequest,
    limit: usize,
) -> Result<Suspend, (FailureKind, String)> {
    let bad = |m: String| Err((FailureKind::Failed, m));
    if !SUSPEND_KINDS.contains(&req.kind.as_str()) {
        return bad(format!(
            "the plugin asked to wait for `{}`; this host knows {SUSPEND_KINDS:?}",
            req.kind
        ));
    }
    let size = req.state.len() + req.detail.len();
    if size > limit {
        return Err((
            FailureKind::LimitExceeded,
            format!("suspend state and detail total {size} bytes; the limit is {limit} bytes"),
        ));
    }
    let detail: serde_json::Value = match serde_json::from_str(&req.detail) {
        Ok(v @ serde_json::Value::Object(_)) => v,
        Ok(_) => return bad("the suspend detail is not a JSON object".into()),
        Err(e) => return bad(format!("the suspend detail is not JSON: {e}")),
    };
    if req.timeout_seconds == 0 {
        return bad("a suspend request needs a timeout (timeout-seconds > 0)".into());
    }
    Ok(Suspend {
        kind: req.kind,
        state: req.state,
        detail,
        timeout: Duration::from_secs(req.timeout_seconds.min(366 * 24 * 3600)),
    })
}

fn to_wit(v: &ParamValue) -> bindings::WitParamValue {
    match v {
        ParamValue::String(s) => bindings::WitParamValue::String(s.clone()),
        ParamValue::Array(a) => bindings::WitParamValue::Array(a.clone()),
        ParamValue::Object(o) => {
            bindings::WitParamValue::Object(o.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        }
    }
}

fn task_error(e: bindings::TaskError) -> (FailureKind, String) {
    match e {
        bindings::TaskError::InvalidParams(m) => {
            (FailureKind::InvalidParams, format!("invalid params: {m}"))
        }
        bindings::TaskError::Failed(m) => (FailureKind::Failed, m),
        bindings::TaskError::Denied(d) => {
            let layer = match d.layer {
                bindings::GrantLayer::Manifest => "manifest",
                bindings::GrantLayer::Pipeline => "pipeline",
                bindings::GrantLayer::Policy => "policy",
            };
            (
                FailureKind::Denied,
                format!("denied: {} `{}` (layer: {layer})", d.capability, d.target),
            )
        }
    }
}

fn trap_message(e: &wasmtime::Error) -> String {
    let mut msg = format!("{e}");
    if let Some(trap) = e.downcast_ref::<wasmtime::Trap>() {
        msg = format!("{trap}");
    }
    let chain: Vec<String> = e.chain().skip(1).map(|c| c.to_string()).collect();
    if !chain.is_empty() {
        msg.push_str(": ");
        msg.push_str(&chain.join(": "));
    }
    msg
}
