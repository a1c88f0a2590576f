//! The sandboxed Wasm host: one [`Runtime`] per process.
//!
//! - One wasmtime `Engine` with the pooling allocator and epoch interruption.
//! - One `Linker` with the base world (WASI + `capstan:plugin/log`).
//! - One `InstancePre` cached per component digest; compiled artifacts are
//!   cached on disk keyed by digest and engine settings.
//! - Per task attempt: a fresh `Store` whose WASI context grants only the
//!   task's workspaces, clocks and random (no env, no args, no stdin, no
//!   network), a memory cap, a log budget, a result-size cap and a timeout.

pub use crate::bindings;
mod limits;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, UpdateDeadline,
};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtxView, WasiHttpView};

use self::limits::Limiter;
pub use self::limits::TaskLimits;
use crate::caps::capability::{TaskCtx, TaskData};
use crate::caps::log::{Budget, StdioCapture};
use crate::caps::network;
use crate::caps::redact::Redactor;
use crate::caps::set::{Prepared, States};
use crate::caps::workspace::WorkspaceMount;
use crate::caps::{LogLevel, TaskSink};
use crate::digest::Digest;
use crate::manifest::{self, ComponentInfo};
use crate::params::ParamValue;

/// Engine-wide settings. Defaults: 256 MiB memory per instance, 128
/// concurrently live instances in the pool, compiled-artifact cache off,
/// 10 ms epoch tick (the granularity of timeouts and of yielding).
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    pub max_memory_bytes: usize,
    pub max_instances: u32,
    pub cache_dir: Option<PathBuf>,
    pub epoch_tick: Duration,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            max_memory_bytes: 256 << 20,
            max_instances: 128,
            cache_dir: None,
            epoch_tick: Duration::from_millis(10),
        }
    }
}

/// A loaded, type-checked plugin ready to instantiate.
pub struct Plugin {
    pub info: ComponentInfo,
    /// Where it was loaded from (for messages).
    pub origin: String,
    pre: Pre,
}

enum Pre {
    /// Exports `task`.
    Task(bindings::TaskPre<TaskState>),
    /// Exports `suspendable-task` (world `approval-task`).
    Suspendable(bindings::suspendable::SuspendablePre<TaskState>),
}

/// Which export to call.
#[derive(Debug, Clone)]
pub enum Call {
    /// `run` (every plugin).
    Run,
    /// `resume` of a suspended task (suspendable plugins).
    Resume { state: String, outcome: Outcome },
}

/// What a suspended task is resumed with.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// JSON describing the event (an approval decision).
    Event(String),
    TimedOut,
}

/// A task's request to be suspended (it holds no instance while it waits).
#[derive(Debug, Clone)]
pub struct Suspend {
    pub kind: String,
    pub state: String,
    pub detail: serde_json::Value,
    pub timeout: Duration,
}

/// The kinds of suspension this host understands.
pub const SUSPEND_KINDS: &[&str] = &["approval"];

impl Plugin {
    pub fn digest(&self) -> &Digest {
        &self.info.digest
    }
}

/// Store data for one task attempt: WASI, the memory limiter, and every
/// capability's state ([`crate::caps::set::States`]).
pub struct TaskState {
    wasi: WasiCtx,
    limiter: Limiter,
    pub(crate) caps: States,
}

impl WasiView for TaskState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.caps.table,
        }
    }
}

impl WasiHttpView for TaskState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        self.caps.http_view()
    }
}

impl TaskData for TaskState {
    fn caps(&mut self) -> &mut States {
        &mut self.caps
    }
}

/// One task attempt to execute.
pub struct Invocation {
    pub run_id: String,
    pub task_name: String,
    pub attempt: u32,
    pub params: Vec<(String, ParamValue)>,
    pub workspaces: Vec<WorkspaceMount>,
    pub limits: TaskLimits,
    pub sink: Arc<dyn TaskSink>,
    /// The task's grants, resolved for this attempt (secrets read).
    pub grants: Prepared,
    /// Redacts the run's secret values from everything the task writes.
    pub redactor: Arc<Redactor>,
    /// Carries a message when the attempt must stop now (the run went over
    /// its workspace disk budget); it then fails as over a limit.
    pub abort: Option<tokio::sync::watch::Receiver<Option<String>>>,
}

/// Why an attempt did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureKind {
    /// The plugin rejected its params (not retried).
    InvalidParams,
    /// A capability use was denied (not retried).
    Denied,
    /// The plugin returned a failure.
    Failed,
    /// The guest trapped (panic, out-of-bounds, stack overflow, ...).
    Trapped,
    /// Memory, log or result limits were exceeded.
    LimitExceeded,
    /// The task's timeout elapsed.
    TimedOut,
    /// The host could not set the task up (workspace missing, ...).
    Setup,
}

impl FailureKind {
    /// Whether the pipeline's `retries` apply.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            FailureKind::Failed | FailureKind::Trapped | FailureKind::TimedOut
        )
    }
}

/// What one attempt produced.
#[derive(Debug)]
pub struct AttemptReport {
    pub outcome: Result<Vec<(String, String)>, (FailureKind, String)>,
    /// Set when a suspendable task asked to wait (then `outcome` is
    /// `Ok(vec![])`).
    pub suspend: Option<Suspend>,
    /// When the Store was being created.
    pub started: Instant,
    /// When the guest first called the host, if it did.
    pub entered: Option<Instant>,
    pub finished: Instant,
}

/// The process-wide Wasm host.
pub struct Runtime {
    engine: Engine,
    linker: Linker<TaskState>,
    plugins: Mutex<HashMap<Digest, Arc<Plugin>>>,
    config: RuntimeConfig,
    _ticker: EpochTicker,
}

struct EpochTicker {
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Runtime {
    pub fn new(config: RuntimeConfig) -> Result<Runtime> {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(config.max_instances)
            .total_core_instances(config.max_instances * 4)
            .total_memories(config.max_instances * 2)
            .total_tables(config.max_instances * 4)
            .total_stacks(config.max_instances)
            .max_memories_per_component(4)
            .max_memory_size(config.max_memory_bytes);
        let mut wcfg = Config::new();
        wcfg.epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .max_wasm_stack(1 << 20)
            .async_stack_size(2 << 20)
            .memory_reservation(4 << 30);
        let engine = Engine::new(&wcfg)
            .map_err(anyhow::Error::from)
            .context("creating the Wasm engine")?;

        let mut linker = Linker::<TaskState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(anyhow::Error::from)?;
        crate::caps::set::link_all(&mut linker).map_err(anyhow::Error::from)?;

        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        {
            let engine = engine.clone();
            let stop = stop.clone();
            let tick = config.epoch_tick;
            std::thread::Builder::new()
                .name("capstan-epoch".into())
                .spawn(move || {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        std::thread::sleep(tick);
                        engine.increment_epoch();
                    }
                })?;
        }
        Ok(Runtime {
            engine,
            linker,
            plugins: Mutex::new(HashMap::new()),
            config,
            _ticker: EpochTicker { stop },
        })
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// Load a plugin from a `.wasm` file.
    pub fn load_file(&self, path: &Path) -> Result<Arc<Plugin>> {
        let bytes =
            std::fs::read(path).with_context(|| format!("reading plugin {}", path.display()))?;
        self.load_bytes(&bytes, &path.display().to_string())
    }

    /// Load a plugin from its bytes: inspect, check imports against the
    /// manifest and this build's capabilities, compile (or reuse the cached
    /// artifact) and pre-instantiate. Cached per digest.
    pub fn load_bytes(&self, bytes: &[u8], origin: &str) -> Result<Arc<Plugin>> {
        let digest = Digest::of(bytes);
        if let Some(p) = self.plugins.lock().unwrap().get(&digest) {
            return Ok(p.clone());
        }
        let info = manifest::inspect(bytes, origin)?;
        let component = self.compile(bytes, &digest, origin)?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)
            .with_context(|| {
                format!("{origin}: the component's imports cannot be satisfied by this host")
            })?;
        let suspendable = info
            .exports
            .iter()
            .any(|e| e.split('@').next() == Some("capstan:plugin/suspendable-task"));
        check_export_types(&self.engine, &component, suspendable, origin)?;
        let pre = if suspendable {
            Pre::Suspendable(
                bindings::suspendable::SuspendablePre::new(pre)
                    .map_err(anyhow::Error::from)
                    .with_context(|| {
                        format!("{origin}: the component does not export `capstan:plugin/suspendable-task` as expected")
                    })?,
            )
        } else {
            Pre::Task(bindings::TaskPre::new(pre)
                .map_err(anyhow::Error::from)
                .with_context(|| {
                    format!("{origin}: the component does not export `capstan:plugin/task` as expected")
                })?)
        };
        let plugin = Arc::new(Plugin {
            info,
            origin: origin.to_string(),
            pre,
        });
        self.plugins.lock().unwrap().insert(digest, plugin.clone());
        Ok(plugin)
    }

    fn compile(&self, bytes: &[u8], digest: &Digest, origin: &str) -> Result<Component> {
        let Some(dir) = &self.config.cache_dir else {
            return Component::new(&self.engine, bytes)
                .map_err(anyhow::Error::from)
                .with_context(|| format!("{origin}: invalid component"));
        };
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut h);
        let path = dir.join(format!("{}-{:016x}.cwasm", digest.hex(), h.finish()));
        if path.exists() {
            match deserialize_cached(&self.engine, &path) {
                Ok(c) => return Ok(c),
                Err(e) => {
                    tracing::warn!("ignoring unusable compiled cache {}: {e:#}", path.display())
                }
            }
        }
        let component = Component::new(&self.engine, bytes)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("{origin}: invalid component"))?;
        // The cache only saves compile time: failing to write it is logged,
        // not fatal. Each writer has its own temp file (several threads or
        // processes may compile the same component at once; the last rename
        // wins, and every one of them wrote the same bytes).
        let write = || -> Result<()> {
            use std::io::Write as _;
            let serialized = component.serialize().map_err(anyhow::Error::from)?;
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating cache dir {}", dir.display()))?;
            let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
            tmp.write_all(&serialized)?;
            tmp.persist(&path)?;
            Ok(())
        };
        if let Err(e) = write() {
            tracing::warn!("cannot write compiled cache {}: {e:#}", path.display());
        }
        Ok(component)
    }

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
        inv: Invocation,
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
            mounts: inv.workspaces.clone(),
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

        let input = bindings::TaskInput {
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
        };

        use bindings::suspendable::{Outcome as WitOutcome, Step};
        let call = async {
            match (&plugin.pre, call) {
                (Pre::Task(pre), Call::Run) => {
                    let instance = pre.instantiate_async(&mut store).await?;
                    instance
                        .capstan_plugin_task()
                        .call_run(&mut store, &input)
                        .await
                        .map(|r| r.map(Step::Done))
                }
                (Pre::Task(_), Call::Resume { .. }) => Ok(Err(bindings::TaskError::Failed(
                    "this plugin cannot be resumed (it does not export suspendable-task)".into(),
                ))),
                (Pre::Suspendable(pre), call) => {
                    let instance = pre.instantiate_async(&mut store).await?;
                    let task = instance.capstan_plugin_suspendable_task();
                    match call {
                        Call::Run => task.call_run(&mut store, &input).await,
                        Call::Resume { state, outcome } => {
                            let outcome = match outcome {
                                Outcome::Event(e) => WitOutcome::Event(e),
                                Outcome::TimedOut => WitOutcome::TimedOut,
                            };
                            task.call_resume(&mut store, &input, &state, &outcome).await
                        }
                    }
                }
            }
        };
        // Stopped from outside (the run's disk budget): the instance is
        // dropped at its next yield, like on a timeout.
        let mut abort = inv.abort.clone();
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
                m = aborted => Err(m),
            }
        };
        let result = match inv.limits.timeout {
            Some(t) => match tokio::time::timeout(t, call).await {
                Ok(r) => r,
                Err(_) => {
                    *entered = store.data().caps.log.entered;
                    return Err((
                        FailureKind::TimedOut,
                        format!("timed out after {}", humantime(t)),
                    ));
                }
            },
            None => call.await,
        };
        let result = match result {
            Ok(r) => r,
            Err(message) => {
                *entered = store.data().caps.log.entered;
                return Err((FailureKind::LimitExceeded, message));
            }
        };
        stdout.flush_partial();
        stderr.flush_partial();
        *entered = store.data().caps.log.entered;
        let results = match result {
            Err(trap) => {
                if let Some(msg) = store.data_mut().limiter.exceeded.take() {
                    return Err((FailureKind::LimitExceeded, msg));
                }
                if trap.chain().any(|c| {
                    matches!(
                        c.downcast_ref::<wasmtime::component::ResourceTableError>(),
                        Some(wasmtime::component::ResourceTableError::Full)
                    )
                }) {
                    return Err((
                        FailureKind::LimitExceeded,
                        format!(
                            "the task held more than {} handles (open files, directories, streams) at once",
                            inv.limits.handles
                        ),
                    ));
                }
                return Err((
                    FailureKind::Trapped,
                    format!("the plugin trapped: {}", trap_message(&trap)),
                ));
            }
            Ok(Err(e)) => return Err(task_error(e)),
            Ok(Ok(Step::Done(results))) => results,
            Ok(Ok(Step::Suspend(req))) => {
                return check_suspend(req, inv.limits.result_bytes).map(|s| (Vec::new(), Some(s)));
            }
        };
        let size: usize = results.iter().map(|r| r.name.len() + r.value.len()).sum();
        if size > inv.limits.result_bytes {
            return Err((
                FailureKind::LimitExceeded,
                format!(
                    "results total {size} bytes; the limit is {} bytes",
                    inv.limits.result_bytes
                ),
            ));
        }
        let mut out = Vec::with_capacity(results.len());
        for r in results {
            if plugin
                .info
                .manifest
                .results
                .iter()
                .all(|d| d.name != r.name)
            {
                return Err((
                    FailureKind::Failed,
                    format!(
                        "the plugin returned result `{}`, which its manifest does not declare",
                        r.name
                    ),
                ));
            }
            out.push((r.name, r.value));
        }
        if budget.truncated() {
            inv.sink.log(
                LogLevel::Warn,
                "note: log output of this attempt was truncated at the log limit",
            );
        }
        Ok((out, None))
    }
}

/// Check at load time that the exported functions have the types of this
/// host's contract (wasmtime would otherwise only notice at the first call):
/// a plugin built against another `capstan:plugin` is refused by name.
fn check_export_types(
    engine: &Engine,
    component: &Component,
    suspendable: bool,
    origin: &str,
) -> Result<()> {
    use bindings::suspendable::{Outcome, Step};
    use wasmtime::component::types::ComponentItem;
    let ty = component.component_type();
    let cx = ty.instance_type();
    let iface = if suspendable {
        "capstan:plugin/suspendable-task@0.1.0"
    } else {
        "capstan:plugin/task@0.1.0"
    };
    // A missing export is reported by the bindings' own lookup.
    let Some(ComponentItem::ComponentInstance(inst)) = ty.get_export(engine, iface).map(|e| e.ty)
    else {
        return Ok(());
    };
    let func = |name: &str| match inst.get_export(engine, name).map(|e| e.ty) {
        Some(ComponentItem::ComponentFunc(f)) => Ok(f),
        _ => Err(anyhow::anyhow!(
            "{origin}: the component's `{iface}` has no function `{name}`"
        )),
    };
    let wrong = |name: &str, e: wasmtime::Error| {
        anyhow::anyhow!(
            "{origin}: the component's `{iface}` function `{name}` has the wrong type ({e}); \
             rebuild the plugin against this host's wit/ (capstan:plugin@0.1.0)"
        )
    };
    if suspendable {
        func("run")?
            .typecheck::<(bindings::TaskInput,), (Result<Step, bindings::TaskError>,)>(&cx)
            .map_err(|e| wrong("run", e))?;
        func("resume")?
            .typecheck::<(bindings::TaskInput, String, Outcome), (Result<Step, bindings::TaskError>,)>(
                &cx,
            )
            .map_err(|e| wrong("resume", e))?;
    } else {
        func("run")?
            .typecheck::<(bindings::TaskInput,), (Result<Vec<bindings::TaskResult>, bindings::TaskError>,)>(
                &cx,
            )
            .map_err(|e| wrong("run", e))?;
    }
    Ok(())
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

/// Compile `bytes` once with a plain engine to check that it is a valid
/// component (used when publishing; nothing is instantiated).
pub fn check_compiles(bytes: &[u8], origin: &str) -> Result<()> {
    let engine = Engine::default();
    Component::new(&engine, bytes)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("{origin}: invalid component"))?;
    Ok(())
}

#[allow(unsafe_code)]
fn deserialize_cached(engine: &Engine, path: &Path) -> Result<Component> {
    // SAFETY: the file was written by `Component::serialize` of this engine
    // configuration into the cache dir under the state directory, which no
    // task can reach (tasks see only their workspaces). wasmtime checks the
    // engine/version header before using it.
    unsafe { Component::deserialize_file(engine, path) }.map_err(anyhow::Error::from)
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

/// Format a duration like `1m30s` / `250ms`.
pub fn humantime(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let s = d.as_secs();
    let (h, m, s) = (s / 3600, (s / 60) % 60, s % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}
